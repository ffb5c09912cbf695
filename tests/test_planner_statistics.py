"""A large file leaves PostgreSQL's planner statistics up to date for the file that follows it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.bulk import refresh_statistics
from harvester.core.settings import Settings
from harvester.jobs.ingest import ingest_files

FIVE = Path(__file__).parent / "fixtures" / "bulk_five_records.xml"


def believed_articles(engine: Engine) -> float | None:
    """What PostgreSQL's planner believes the articles table holds (-1: never analyzed); None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    query = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('articles')")
    with engine.connect() as conn:
        return float(conn.execute(query).scalar_one())


def test_a_file_that_doubles_the_articles_refreshes_the_statistics(engine: Engine) -> None:
    before = believed_articles(engine)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    [applied] = ingest_files([FIVE], settings=settings, services=None, engine=engine).files
    assert (applied.outcome, applied.created) == ("applied", 5)
    if engine.dialect.name == "postgresql":
        assert before == -1  # a new database: never analyzed
        assert believed_articles(engine) == 5  # the file's articles are counted now
    else:
        assert before is None and believed_articles(engine) is None  # SQLite plans by its indexes


def test_small_growth_or_another_database_leaves_the_statistics_alone(engine: Engine) -> None:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    ingest_files([FIVE], settings=settings, services=None, engine=engine)
    assert refresh_statistics(engine, 0) is False  # nothing added
    if engine.dialect.name == "postgresql":
        assert refresh_statistics(engine, 4) is False  # 4 more than 5: not doubled, autovacuum's business
        assert refresh_statistics(engine, 5) is True
        with engine.begin() as conn:  # as if the planner believed in 1,000 articles
            conn.exec_driver_sql("UPDATE pg_class SET reltuples = 1000 WHERE oid = to_regclass('articles')")
        assert refresh_statistics(engine, 999) is False
        assert refresh_statistics(engine, 1000) is True
        assert believed_articles(engine) == 5
    else:
        assert refresh_statistics(engine, 10**6) is False

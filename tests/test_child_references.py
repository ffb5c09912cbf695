"""The PubMed child tables stay tied to their article on both dialects.

SQLite holds the ties as foreign keys with ON DELETE CASCADE; PostgreSQL (migration 0014) as statement
triggers that delete a deleted article's, author's or heading's rows, while the store writes child rows only
for articles of its own transaction. Whatever deletes an article, or rewrites it, leaves no child row behind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import begin_write
from db.models import PUBMED_CHILD_TABLES, metadata
from db.pubmed_rows import CHILD_TABLES
from db.store import store_articles
from harvester.core.records import Author
from tests.db_helpers import make_article, row_counts

FETCHED = datetime(2026, 12, 6, tzinfo=UTC)
CHILD_NAMES = sorted(table.name for table in CHILD_TABLES)
# Rows whose parent is an author or a MeSH heading rather than the article.
PARENTS: dict[str, tuple[str, tuple[str, str], tuple[str, str]]] = {
    "author_affiliations": ("authors", ("article_id", "author_position"), ("article_id", "position")),
    "mesh_qualifiers": ("mesh_headings", ("article_id", "heading_position"), ("article_id", "position")),
}


def orphans(engine: Engine) -> dict[str, int]:
    """Child rows whose article (or author, or heading) does not exist, per table; only tables with any."""
    found: dict[str, int] = {}
    with engine.connect() as conn:
        for name in CHILD_NAMES:
            table = metadata.tables[name]
            parent, columns, keys = PARENTS.get(name, ("articles", ("article_id",), ("id",)))
            p = metadata.tables[parent]
            linked = sa.and_(*(p.c[key] == table.c[col] for col, key in zip(columns, keys, strict=True)))
            count = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(~sa.exists().where(linked))
            ).scalar_one()
            if count:
                found[name] = count
    return found


def child_counts(engine: Engine) -> dict[str, int]:
    counts = row_counts(engine)
    return {name: counts.get(name, 0) for name in CHILD_NAMES}


def store(engine: Engine, *pmids: str, **changes: Any) -> None:
    store_articles(engine, [make_article(pmid, **changes) for pmid in pmids], url=None, fetched_at=FETCHED)


def test_only_the_child_tables_lose_their_foreign_keys_and_only_on_postgresql(engine: Engine) -> None:
    """The migrated schema itself: the 14 tables have no foreign key on PostgreSQL and all of theirs on
    SQLite; every other table keeps its foreign keys on both."""
    inspector = sa.inspect(engine)
    names = {table: {fk["name"] for fk in inspector.get_foreign_keys(table)} for table in metadata.tables}
    modelled = {t.name: {fk.name for fk in t.foreign_key_constraints} for t in metadata.tables.values()}
    for table, declared in modelled.items():
        if table in PUBMED_CHILD_TABLES and engine.dialect.name == "postgresql":
            assert names[table] == set(), table
        else:
            assert names[table] == declared, table
    assert len([t for t in CHILD_NAMES if modelled[t]]) == 14  # each had at least one to drop


def test_deleting_an_article_deletes_its_rows_in_every_child_table(engine: Engine) -> None:
    store(engine, "101", "102")
    before = child_counts(engine)
    assert all(before.values()), f"make_article fills every child table: {before}"
    with begin_write(engine) as conn:
        conn.execute(
            sa.delete(metadata.tables["articles"]).where(metadata.tables["articles"].c.pmid == "101")
        )
    after = child_counts(engine)
    assert after == {name: count // 2 for name, count in before.items()}  # the other article's rows stay
    assert orphans(engine) == {}


def test_deleting_an_author_or_a_heading_deletes_its_own_rows_only(engine: Engine) -> None:
    store(engine, "101", "102")  # the same authors and headings in both: only 101's go
    authors, headings = metadata.tables["authors"], metadata.tables["mesh_headings"]
    affiliations, qualifiers = metadata.tables["author_affiliations"], metadata.tables["mesh_qualifiers"]
    a = metadata.tables["articles"]
    before = child_counts(engine)
    with engine.connect() as conn:  # an author with affiliations, a heading with qualifiers, and their rows
        article = conn.execute(sa.select(a.c.id).where(a.c.pmid == "101")).scalar_one()
        author = conn.execute(sa.select(sa.func.min(affiliations.c.author_position))).scalar_one()
        heading = conn.execute(sa.select(sa.func.min(qualifiers.c.heading_position))).scalar_one()
        author_rows, heading_rows = (
            conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.article_id == article, column == value)
            ).scalar_one()
            for t, column, value in (
                (affiliations, affiliations.c.author_position, author),
                (qualifiers, qualifiers.c.heading_position, heading),
            )
        )
    assert author_rows and heading_rows
    with begin_write(engine) as conn:
        conn.execute(sa.delete(authors).where(authors.c.article_id == article, authors.c.position == author))
        conn.execute(
            sa.delete(headings).where(headings.c.article_id == article, headings.c.position == heading)
        )
    after = child_counts(engine)
    assert after["author_affiliations"] == before["author_affiliations"] - author_rows
    assert after["mesh_qualifiers"] == before["mesh_qualifiers"] - heading_rows
    assert after["authors"] == before["authors"] - 1 and after["mesh_headings"] == before["mesh_headings"] - 1
    assert orphans(engine) == {}


def test_a_rewritten_article_leaves_no_rows_of_its_earlier_version(engine: Engine) -> None:
    store(engine, "101", "102")
    first = child_counts(engine)
    fewer = make_article("101").authors[:1]
    store_articles(
        engine,
        [make_article("101", title="A corrected title", authors=(*fewer, Author(2, last_name="New")))],
        url=None,
        fetched_at=FETCHED,
    )
    assert orphans(engine) == {}
    assert child_counts(engine)["authors"] == first["authors"] - len(make_article("101").authors) + 2


def test_truncating_the_articles_empties_the_child_tables(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    store(engine, "101")
    with begin_write(engine) as conn:
        conn.exec_driver_sql("TRUNCATE articles CASCADE")
    assert set(child_counts(engine).values()) == {0}

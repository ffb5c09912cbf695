"""Test helpers for the storage layer: fresh databases on each dialect, full records, table snapshots.

PostgreSQL runs when HARVEST_TEST_POSTGRES_URL names a server (e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test); each test gets its own schema there, dropped after.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from db.models import metadata
from harvester.records import (
    Abstract,
    AbstractSection,
    Article,
    ArticleId,
    Author,
    Chemical,
    CommentCorrection,
    DatedEvent,
    ELocationId,
    Grant,
    Journal,
    Keyword,
    MeshHeading,
    MeshQualifier,
    PartialDate,
    PublicationType,
    Reference,
)

POSTGRES_ENV = "HARVEST_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def database_params() -> list[Any]:
    """pytest params "sqlite" and "postgresql", the latter skipped (with the reason) without a server."""
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(postgres_url() is None, reason=f"{POSTGRES_ENV} is not set"),
            ],
        ),
    ]


@contextmanager
def fresh_database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new schema on the PostgreSQL test server."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'harvest.sqlite'}"
        return
    base = postgres_url()
    if base is None:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    server = make_url(base)
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")  # the driver the project installs
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '20s'")
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def database_urls(tmp_path: Path) -> Iterator[str]:
    """A fresh URL for every dialect available to this run (SQLite always, PostgreSQL when configured)."""
    for dialect in ("sqlite", "postgresql"):
        if dialect == "postgresql" and postgres_url() is None:
            continue
        with fresh_database_url(dialect, tmp_path / dialect) as url:
            yield url


def with_raw(article: Article) -> Article:
    """The record with a raw_xml that changes exactly when its content does, as a real fragment would."""
    raw = f"<PubmedArticle><!-- {escape(repr(article))} --></PubmedArticle>".encode()
    return dataclasses.replace(article, raw_xml=raw)


def make_article(pmid: str = "35350566", **changes: Any) -> Article:
    """A record with every collection filled, so each child table gets rows."""
    doi = changes.pop("doi", f"10.3389/fonc.2022.{pmid}")
    pmcid = changes.pop("pmcid", f"PMC{int(pmid) * 3}")
    ids = [ArticleId("pubmed", pmid), ArticleId("pii", f"S0000-{pmid}")]
    ids += [ArticleId("doi", doi)] if doi else []
    ids += [ArticleId("pmc", pmcid)] if pmcid else []
    article = Article(
        pmid=pmid,
        pmid_version=1,
        record_type="journal-article",
        ids=tuple(ids),
        doi=doi,
        pmcid=pmcid,
        title=f"Outcomes of therapy {pmid}: a cohort study",
        vernacular_title="Résultats du traitement",
        abstract=Abstract(
            sections=(
                AbstractSection("Why we looked.", label="BACKGROUND", nlm_category="BACKGROUND"),
                AbstractSection("What we found.", label="RESULTS", nlm_category="RESULTS"),
            ),
            copyright="© 2022 The Authors.",
        ),
        other_abstracts=(
            Abstract(sections=(AbstractSection("Resumen en español."),), kind="Publisher", language="spa"),
        ),
        authors=(
            Author(
                1,
                last_name="Smith",
                fore_name="Jane A",
                initials="JA",
                orcid="0000-0002-1825-0097",
                affiliations=("Dept of Oncology, University X, Lyon, France.", "Institute Y."),
                equal_contrib=True,
            ),
            Author(2, last_name="Doe", fore_name="John", initials="J", suffix="Jr", valid=False),
            Author(3, collective_name="The ONCO Study Group"),
        ),
        journal=Journal(
            title="Frontiers in oncology",
            iso_abbrev="Front Oncol",
            medline_ta="Front Oncol",
            nlm_unique_id="101568867",
            issn_electronic="2234-943X",
            issn_linking="2234-943X",
            country="Switzerland",
        ),
        volume="12",
        issue="3",
        pages="836548",
        elocation_ids=(ELocationId("doi", (doi or "10.1000/none").upper()), ELocationId("pii", "836548")),
        pub_date=PartialDate(2022, 3, 8),
        events=(
            DatedEvent("Electronic", PartialDate(2022, 3, 8)),
            DatedEvent("received", PartialDate(2021, 12, 1)),
            DatedEvent("pubmed", PartialDate(2022, 3, 30)),
        ),
        languages=("eng", "fre"),
        publication_types=(
            PublicationType("Journal Article", "D016428"),
            PublicationType("Research Support, Non-U.S. Gov't", "D013485"),
        ),
        mesh=(
            MeshHeading("Humans", "D006801"),
            MeshHeading(
                "Neoplasms",
                "D009369",
                major=False,
                qualifiers=(
                    MeshQualifier("therapy", "Q000628", major=True),
                    MeshQualifier("diagnosis", "Q000175"),
                ),
            ),
            MeshHeading("France", "D005602", descriptor_type="Geographic"),
        ),
        keywords=(Keyword("cancer", owner="NOTNLM"), Keyword("cohort", owner="NOTNLM", major=True)),
        chemicals=(Chemical("Antineoplastic Agents", "0", "D000970"),),
        grants=(Grant("R01 CA000001", "CA", "NCI NIH HHS", "United States"),),
        comments_corrections=(CommentCorrection("CommentIn", "Front Oncol. 2022;12:1", "35000001"),),
        references=(
            Reference("First reference.", pmid="1000001"),
            Reference("Second reference.", doi="10.1000/ref2"),
            Reference("Third reference.", pmcid="PMC123"),
        ),
        coi_statement="The authors declare no competing interests.",
        medline_status="MEDLINE",
        publication_status="epublish",
        date_completed=PartialDate(2022, 4, 1),
        date_revised=PartialDate(2022, 4, 5),
    )
    return with_raw(dataclasses.replace(article, **changes))


def table_names(engine: Engine) -> list[str]:
    return sorted(sa.inspect(engine).get_table_names())


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal snapshots mean nothing was written in between."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name in [*metadata.tables, "alembic_version"]:
            query = sa.text(f"SELECT * FROM {name}")  # noqa: S608 - names from our own metadata
            result[name] = sorted((tuple(row) for row in conn.execute(query)), key=repr)
    return result


def row_counts(engine: Engine) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(engine).items()}


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@contextmanager
def failing_statement(engine: Engine, prefix: str, message: str = "disk I/O error") -> Iterator[None]:
    """Make the first statement that starts with ``prefix`` fail as the driver would fail it."""

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix.upper()):
            raise engine.dialect.loaded_dbapi.OperationalError(message)

    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)

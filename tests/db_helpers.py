"""Test helpers for the storage layer: fresh databases on each dialect, full records, table snapshots.

PostgreSQL runs when HARVEST_TEST_POSTGRES_URL names a server (e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test); each test gets its own schema there, dropped after.

Records for reconciliation (:func:`pubmed_record`, :func:`pmc_front`, :func:`crossref_work`) are the
seed's fixtures with ids and a few fields changed, parsed by the real parsers: their raw bytes are real
XML and JSON, so a merge that re-parses the stored payloads sees what the test meant.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from html import escape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from db.engine import open_database
from db.models import metadata
from enrich.crossref_json import parse_crossref_work
from enrich.pmc_jats import parse_pmc_articles
from enrich.records import CrossrefWork, PmcFront
from harvester.core.records import (
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
from harvester.sources.pubmed_xml import parse_pubmed

POSTGRES_ENV = "HARVEST_TEST_POSTGRES_URL"
DIALECTS_ENV = "HARVEST_TEST_DIALECTS"
DIALECTS = ("sqlite", "postgresql")


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def selected_dialects() -> tuple[str, ...]:
    """The dialects this run tests: HARVEST_TEST_DIALECTS (comma-separated), default both.

    .ci/run runs the suite twice, once per dialect, so each run's count shows in the CI log.
    """
    raw = os.environ.get(DIALECTS_ENV, "").strip()
    chosen = tuple(d.strip() for d in raw.split(",") if d.strip()) if raw else DIALECTS
    unknown = sorted(set(chosen) - set(DIALECTS))
    if unknown:
        raise pytest.UsageError(
            f"{DIALECTS_ENV}: unknown dialect(s) {', '.join(unknown)}; use {', '.join(DIALECTS)}"
        )
    return chosen


def _dialect_skip(dialect: str) -> str | None:
    """Why this run does not test ``dialect``, or None when it does."""
    if dialect not in selected_dialects():
        return f"{DIALECTS_ENV}={os.environ.get(DIALECTS_ENV, '')} leaves {dialect} out of this run"
    if dialect == "postgresql" and postgres_url() is None:
        return f"{POSTGRES_ENV} is not set"
    return None


def database_params() -> list[Any]:
    """pytest params "sqlite" and "postgresql", each skipped (with the reason) when this run leaves it out."""
    params = []
    for dialect in DIALECTS:
        reason = _dialect_skip(dialect)
        marks = [pytest.mark.postgres] if dialect == "postgresql" else []
        if reason is not None:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(dialect, id=dialect, marks=marks))
    return params


@contextmanager
def fresh_database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new schema on the PostgreSQL test server."""
    reason = _dialect_skip(dialect)
    if reason is not None:
        pytest.skip(reason)
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'harvest.sqlite'}"
        return
    base = postgres_url()
    assert base is not None
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
    for dialect in DIALECTS:
        if _dialect_skip(dialect) is not None:
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


# The request budget's send times and salt (PostgreSQL): every request writes them, by design, so a test
# that compares what a run stored leaves them out, as it leaves out the run log.
BUDGET_TABLES = frozenset({"request_budgets", "request_budget_salt"})


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
    """Rows per table, for the tables that have any: a table a later migration adds shows up only once a
    test writes to it, so an exact comparison still catches every table written by mistake."""
    return {name: len(rows) for name, rows in snapshot(engine).items() if rows}


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
def failing_statement(
    engine: Engine, prefix: str | tuple[str, ...], message: str = "disk I/O error"
) -> Iterator[None]:
    """Make the first statement that starts with ``prefix`` (or one of them) fail as the driver would fail
    it. PostgreSQL takes bulk rows by COPY (db/pg_copy.py): name ``COPY "table"`` beside ``INSERT INTO
    table``."""
    prefixes = tuple(p.upper() for p in ((prefix,) if isinstance(prefix, str) else prefix))

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(prefixes):
            raise engine.dialect.loaded_dbapi.OperationalError(message)

    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)


FIXTURES = Path(__file__).parent / "fixtures"
SEED_PMID = "35350566"
SEED_PMCID = "PMC8958025"
SEED_DOI = "10.3389/fonc.2022.836548"
SEED_TITLE = "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
KEEP: Any = object()  # "as in the seed", where None means "leave it out"


def pubmed_record(
    pmid: str = SEED_PMID,
    *,
    doi: str | None = SEED_DOI,
    pmcid: str | None = SEED_PMCID,
    title: str | None = SEED_TITLE,
    pages: str | None = None,
    retracted: bool = False,
    retraction_in: tuple[str, str] | None = None,  # (RefSource, PMID) of a RetractionIn
) -> Article:
    """The seed's PubmedArticle (tests/fixtures/efetch_pubmed_35350566.xml) with these changes, parsed."""
    text = (FIXTURES / "efetch_pubmed_35350566.xml").read_text(encoding="utf-8")
    text = text.replace(f'<PMID Version="1">{SEED_PMID}</PMID>', f'<PMID Version="1">{pmid}</PMID>')
    text = text.replace(f'<ArticleId IdType="pubmed">{SEED_PMID}<', f'<ArticleId IdType="pubmed">{pmid}<')
    text = _replace_or_drop(
        text,
        rf'\s*<ELocationID EIdType="doi"[^>]*>{re.escape(SEED_DOI)}</ELocationID>',
        doi,
        f'<ELocationID EIdType="doi" ValidYN="Y">{doi}</ELocationID>',
    )
    text = _replace_or_drop(
        text,
        rf'\s*<ArticleId IdType="doi">{re.escape(SEED_DOI)}</ArticleId>',
        doi,
        f'<ArticleId IdType="doi">{doi}</ArticleId>',
    )
    text = _replace_or_drop(
        text,
        rf'\s*<ArticleId IdType="pmc">{SEED_PMCID}</ArticleId>',
        pmcid,
        f'<ArticleId IdType="pmc">{pmcid}</ArticleId>',
    )
    text = _replace_or_drop(
        text,
        r"\s*<ArticleTitle>[^<]*</ArticleTitle>",
        title,
        f"<ArticleTitle>{escape(title or '')}</ArticleTitle>",
    )
    if pages is not None:
        text = text.replace(
            "</ArticleTitle>", f"</ArticleTitle><Pagination><MedlinePgn>{pages}</MedlinePgn></Pagination>"
        )
    if retracted:
        text = text.replace(
            "</PublicationTypeList>",
            '<PublicationType UI="D016441">Retracted Publication</PublicationType></PublicationTypeList>',
        )
    if retraction_in is not None:
        ref_source, ref_pmid = retraction_in
        text = text.replace(
            "</MedlineJournalInfo>",
            '</MedlineJournalInfo><CommentsCorrectionsList><CommentsCorrections RefType="RetractionIn">'
            f'<RefSource>{escape(ref_source)}</RefSource><PMID Version="1">{ref_pmid}</PMID>'
            "</CommentsCorrections></CommentsCorrectionsList>",
        )
    [record] = [r for r in parse_pubmed(text.encode("utf-8"), keep_raw=True) if isinstance(r, Article)]
    return record


def pmc_front(
    pmcid: str = SEED_PMCID,
    *,
    pmid: str | None = SEED_PMID,
    doi: str | None = SEED_DOI,
    title: str | None = SEED_TITLE,
    license_url: str | None = "https://creativecommons.org/licenses/by/4.0/",
    license_type: str = "open-access",
    copyright: str | None = KEEP,
    subjects: tuple[str, ...] | None = None,
    publisher: str | None = KEEP,
    pages: tuple[str, str] | None = None,  # (fpage, lpage)
) -> PmcFront:
    """The seed's PMC article (tests/fixtures/efetch_pmc_PMC8958025.xml) with these changes, parsed.

    None leaves an element out (``license_url=None``: no licence at all); KEEP keeps the seed's.
    """
    text = (FIXTURES / "efetch_pmc_PMC8958025.xml").read_text(encoding="utf-8")
    digits = pmcid.removeprefix("PMC")
    text = text.replace('<article-id pub-id-type="pmc">8958025<', f'<article-id pub-id-type="pmc">{digits}<')
    text = _replace_or_drop(
        text,
        rf'\s*<article-id pub-id-type="pmid">{SEED_PMID}</article-id>',
        pmid,
        f'<article-id pub-id-type="pmid">{pmid}</article-id>',
    )
    text = _replace_or_drop(
        text,
        rf'\s*<article-id pub-id-type="doi">{re.escape(SEED_DOI)}</article-id>',
        doi,
        f'<article-id pub-id-type="doi">{doi}</article-id>',
    )
    text = _replace_or_drop(
        text,
        r"\s*<title-group>.*?</title-group>",
        title,
        f"<title-group><article-title>{escape(title or '')}</article-title></title-group>",
    )
    if license_url is None:
        text = re.sub(r"\s*<license .*?</license>", "", text, flags=re.DOTALL)
    else:
        text = text.replace("https://creativecommons.org/licenses/by/4.0/", escape(license_url))
        text = text.replace('license-type="open-access"', f'license-type="{escape(license_type)}"')
    if copyright is not KEEP:
        text = _replace_or_drop(
            text,
            r"\s*<copyright-statement>.*?</copyright-statement>",
            copyright,
            f"<copyright-statement>{escape(copyright or '')}</copyright-statement>",
        )
    if subjects is not None:
        groups = "".join(f"<subject>{escape(s)}</subject>" for s in subjects)
        text = re.sub(
            r"<article-categories>.*?</article-categories>",
            f'<article-categories><subj-group subj-group-type="heading">{groups}</subj-group>'
            "</article-categories>",
            text,
            flags=re.DOTALL,
        )
    if publisher is not KEEP:
        text = _replace_or_drop(
            text,
            r"\s*<publisher>.*?</publisher>",
            publisher,
            f"<publisher><publisher-name>{escape(publisher or '')}</publisher-name></publisher>",
        )
    if pages is not None:
        text = text.replace(
            "<elocation-id>", f"<fpage>{pages[0]}</fpage><lpage>{pages[1]}</lpage><elocation-id>"
        )
    [front] = parse_pmc_articles(text.encode("utf-8"), keep_raw=True)
    return front


def crossref_message(doi: str = SEED_DOI, **changes: Any) -> dict[str, Any]:
    """The seed's Crossref work (its ``message``) with these keys changed; a None value removes a key."""
    envelope = json.loads((FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json").read_text("utf-8"))
    message: dict[str, Any] = copy.deepcopy(envelope["message"])
    message["DOI"] = doi
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    return message


def crossref_work(doi: str = SEED_DOI, **changes: Any) -> CrossrefWork:
    """:func:`crossref_message` parsed, as a client would hand it over (keys given with "_" for "-")."""
    renamed = {key.replace("_", "-"): value for key, value in changes.items()}
    return parse_crossref_work(crossref_message(doi, **renamed))


def _replace_or_drop(text: str, pattern: str, value: Any, replacement: str) -> str:
    """Replace what ``pattern`` matches with ``replacement``, or drop it when ``value`` is None."""
    found = re.search(pattern, text, flags=re.DOTALL)
    assert found is not None, f"the fixture has no match for {pattern!r}"
    if value is None:
        return text[: found.start()] + text[found.end() :]
    lead = found.group(0)[: len(found.group(0)) - len(found.group(0).lstrip())]
    return text[: found.start()] + lead + replacement + text[found.end() :]


# ------------------------------------------------------------------------------- migrated from a template
#
# Migrating a fresh database runs every migration (SQLite's batch operations copy whole tables): about a
# second a database, hundreds of times a run. Tests that just want a migrated database get a copy of one
# this process migrated once: the SQLite file copied, or, on PostgreSQL, the migrated schema's own
# pg_dump replayed into the test's schema. The template itself is made by the real migrations, so a copy
# is what open_database would have made; tests of migrating itself (test_migrations, first use through the
# CLI) still start from an empty database.

_templates: dict[str, Any] = {}


def _sqlite_template() -> Path:
    if "sqlite" not in _templates:
        folder = Path(tempfile.mkdtemp(prefix="harvest-template-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.sqlite"
        open_database(f"sqlite:///{path}").dispose()
        with closing(sqlite3.connect(path)) as conn:  # the WAL folded in: the file alone is the database
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _templates["sqlite"] = path
    template: Path = _templates["sqlite"]
    return template


_PG_DUMP_SKIP = re.compile(r"^(\\|SET |SELECT pg_catalog\.set_config|CREATE SCHEMA |ALTER SCHEMA |--)")


def _postgres_template(server: sa.engine.URL) -> tuple[str, str] | None:
    """(template schema, its dump as SQL) made once per process; None where pg_dump is not installed."""
    if "postgresql" not in _templates:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            _templates["postgresql"] = None
            return None
        schema = f"tmpl_{uuid.uuid4().hex[:16]}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        atexit.register(_drop_schema, server, schema)
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        open_database(url.render_as_string(hide_password=False)).dispose()
        admin.dispose()
        env = {**os.environ, "PGPASSWORD": server.password or ""}
        command = [pg_dump, "--no-owner", "--no-privileges", "--inserts", "--schema", schema,
                   "--host", server.host or "127.0.0.1", "--port", str(server.port or 5432),
                   "--username", server.username or "postgres", server.database or "postgres"]  # fmt: skip
        dump = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        lines = [line for line in dump.splitlines() if not _PG_DUMP_SKIP.match(line)]
        _templates["postgresql"] = (schema, "\n".join(lines))
    template: tuple[str, str] | None = _templates["postgresql"]
    return template


def _drop_schema(server: sa.engine.URL, schema: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except sa.exc.SQLAlchemyError:
        pass  # the server went away first: the schema goes with the test database's next clean-up
    finally:
        admin.dispose()


def open_migrated(url: str) -> Engine:
    """An engine on ``url`` (a fresh database of :func:`fresh_database_url`) at the head revision, made
    from this process's template rather than by migrating again; a database already holding tables is
    opened as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = Path(parsed.database or "")
        if parsed.database and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_sqlite_template(), target)
        return open_database(url)
    options = parsed.query.get("options", "")
    schema = options.removeprefix("-csearch_path=") if isinstance(options, str) else ""
    server = parsed.difference_update_query(["options"])
    template = _postgres_template(server) if schema else None
    if template is not None:
        name, dump = template
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                empty = not sa.inspect(conn).get_table_names()
                if empty:  # the DB-API cursor, with no parameters: the views' '%' stay as they are
                    sql = dump.replace(f"{name}.", f'"{schema}".').replace(f'"{name}"', f'"{schema}"')
                    with closing(conn.connection.dbapi_connection.cursor()) as cursor:  # type: ignore[union-attr]
                        cursor.execute(sql)
        finally:
            engine.dispose()
    return open_database(url)


# Tables that log runs rather than hold data: left out when two loads of the same data are compared.
RUN_LOG_TABLES = frozenset(
    {"harvest_runs", "run_searches", "run_locks", "search_states", "ingest_queue", *BUDGET_TABLES}
)


def comparable_tables(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table but the run logs, as sorted JSON lines that do not depend on the order the
    data came in: surrogate ids are replaced by natural keys (an article by its PMID, a journal by its key,
    a raw payload by source and SHA-256, a bulk file by its SHA-256, a conflict by its record), and times
    and run ids are left out. Two databases loaded with the same files, by one process or by several
    workers in another order, give equal results; compare them table by table to see which one differs.
    """
    natural_sql = {
        "articles": "SELECT id, COALESCE(pmid, 'doi:' || doi) FROM articles",
        "journals": "SELECT id, journal_key FROM journals",
        "raw_payloads": "SELECT id, source || ':' || sha256 FROM raw_payloads",
        "bulk_files": "SELECT id, sha256 FROM bulk_files",
        "conflicts": "SELECT id, source || ':' || source_id FROM conflicts",
    }
    result: dict[str, list[str]] = {}
    with engine.connect() as conn:
        natural = {
            table: {int(i): str(key) for i, key in conn.execute(sa.text(query))}
            for table, query in natural_sql.items()
        }
        for table in metadata.sorted_tables:
            if table.name in RUN_LOG_TABLES:
                continue
            rows = conn.execute(sa.select(table)).mappings().all()
            lines = []
            for row in rows:
                kept: dict[str, Any] = {}
                for column in table.columns:
                    value = row[column.name]
                    if _is_time(column.type):
                        continue
                    references = {fk.column.table.name for fk in column.foreign_keys}
                    if "harvest_runs" in references:
                        continue
                    mapped = [t for t in references if t in natural]  # a surrogate id of another table
                    if mapped:
                        value = natural[mapped[0]].get(value, value) if value is not None else None
                    elif references:
                        pass  # part of a composite natural key (funder_awards -> article_funders)
                    elif column.primary_key and column.name == "id":
                        continue
                    elif table.name == "conflicts" and column.name == "article_ids" and value:
                        value = ",".join(sorted(natural["articles"].get(int(i), i) for i in value.split(",")))
                    elif table.name == "conflicts" and column.name == "claims" and value:
                        claims = json.loads(value)
                        for claim in claims:
                            claim["article_id"] = natural["articles"].get(claim.get("article_id"), None)
                        value = sorted(json.dumps(c, sort_keys=True) for c in claims)
                    if isinstance(value, bytes | memoryview):
                        value = "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
                    kept[column.name] = value
                lines.append(json.dumps(kept, sort_keys=True, default=str))
            result[table.name] = sorted(lines)
    return result


def _is_time(kind: Any) -> bool:
    return isinstance(kind, sa.DateTime) or isinstance(getattr(kind, "impl", None), sa.DateTime)

"""A short start for ``harvest show`` (issue 14, item 8): what its path may import, and proof that the
shortcuts it takes (a SQLite file read with the standard library, URLs read without SQLAlchemy, typer's
values taken as parsed) give what the long way gives. Speed itself is measured by bench/bench_startup.py,
never here."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, strategies as st
from sqlalchemy.engine import Engine, make_url

import db.documents
from db.columns import COLUMN_KINDS, METRIC_FIELDS
from db.documents import export_documents, load_documents, resolve_identifiers
from db.engine import downgrade, open_database, open_existing_database
from db.models import UtcDateTime, metadata
from db.reading import Snapshot, SqliteReader, open_sqlite_reader, read_snapshot
from db.store import store_articles
from harvester.core.dburl import plain_sqlite_path, url_display, url_password
from harvester.core.errors import StorageError
from harvester.core.records import Article
from harvester.core.settings import normalize_database_url
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import database_params, fresh_database_url, make_article
from tests.test_documents import add_enrichment, only_id, store_35350566_with_enrichment
from tests.test_reporting import build as build_reporting_content

SEED = Path(__file__).parent / "fixtures" / "efetch_pubmed_35350566.xml"
HEAVY = ("sqlalchemy", "pydantic", "requests", "urllib3", "lxml", "alembic", "rich", "tenacity", "psycopg")

# Every table db.documents reads.
DOCUMENT_TABLES = (
    "articles",
    "journals",
    "source_records",
    "article_references",
    "article_metrics",
    "citation_edges",
    *db.documents._CHILD_ORDER,
)


def rich_content(engine: Engine) -> None:
    """Articles with every kind of value a document holds: the reporting tests' content (iCite metrics and
    edges, retractions, a deleted article, disagreements), the real 35350566 enriched from PMC and
    Crossref, and one article with the documents tests' enrichment rows."""
    build_reporting_content(engine)
    store_35350566_with_enrichment(engine)
    store_articles(engine, [make_article("35350567")], url=None, fetched_at=datetime(2024, 5, 1, tzinfo=UTC))
    add_enrichment(engine, only_id(engine, "35350567"))


@pytest.fixture(scope="module", params=database_params())
def rich(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    with fresh_database_url(str(request.param), tmp_path_factory.mktemp("startup")) as url:
        engine = open_database(url)
        rich_content(engine)
        yield url, engine
        engine.dispose()


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    """A SQLite file holding the real 35350566, as ``harvest pmid`` stores it."""
    url = f"sqlite:///{tmp_path / 'db' / 'harvest.sqlite'}"
    engine = open_database(url)
    records = [r for r in parse_pubmed(SEED.read_bytes(), keep_raw=True) if isinstance(r, Article)]
    store_articles(engine, records, url=None, fetched_at=datetime(2024, 5, 1, tzinfo=UTC))
    engine.dispose()
    return url


def loaded_by(*argv: str) -> tuple[int, list[str], str]:
    """Run the CLI with ``argv`` in a fresh interpreter: its exit code, the heavy libraries it imported, and
    its standard output."""
    code = (
        "import json, sys\n"
        "from harvester.cli import run\n"
        "code = run(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('LOADED', json.dumps([code, heavy]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("LOADED "), done.stderr
    exit_code, heavy = json.loads(last.removeprefix("LOADED "))
    return exit_code, heavy, done.stdout


# ------------------------------------------------------------------------------------ what show imports


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["show", "35350566"], 0),
        (["-v", "show", "-f", "json", "PMC8958025"], 0),
        (["--json", "show", "10.3389/fonc.2022.836548", "999"], 3),  # the error line too
        (["show", "--from", "-"], 2),  # a usage error: standard input is empty
    ],
)
def test_show_on_a_sqlite_file_imports_no_heavy_library(seeded: str, argv: list[str], exit_code: int) -> None:
    code, heavy, out = loaded_by("--db", seeded, *argv)
    assert code == exit_code
    assert heavy == []
    if exit_code == 0:
        assert "35350566" in out


def test_help_imports_no_heavy_library() -> None:
    code, heavy, out = loaded_by("--help")
    assert (code, heavy) == (0, [])
    assert "Global options go before the command" in out


def test_show_on_a_config_file_takes_typers_own_way_for_the_path(seeded: str, tmp_path: Path) -> None:
    """A value the parser does not give in its final type (a path) still goes through typer's adapter."""
    config = tmp_path / "harvest.toml"
    config.write_text(f'[database]\nurl = "{seeded}"\n', encoding="utf-8")
    code, heavy, out = loaded_by("--config", str(config), "show", "35350566")
    assert code == 0 and "35350566" in out
    assert heavy == ["pydantic"]


# ------------------------------------------------------------------------- URLs without SQLAlchemy


URLS = [
    "sqlite:////tmp/a/harvest.sqlite",
    "sqlite:///relative/harvest.db",
    "sqlite:////tmp/with space/and+plus_-.db",
    "sqlite:////tmp/caf\u00e9.db",  # not plain: quoted when rendered
    "sqlite:////tmp/x%20y.db",  # not plain: unquoted when parsed
    "sqlite:////tmp/a.db?timeout=5",
    "sqlite:///file:/tmp/a.db?mode=ro&uri=true",
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite+pysqlite:////tmp/a.db",
    "sqlite:////tmp/~user/a.db",
    "sqlite:////tmp/a@b/c.db",
    "postgresql+psycopg://user:s3cret@localhost:5432/db",
    "postgresql+psycopg://user@localhost/db?options=-csearch_path%3Dx",
]


@pytest.mark.parametrize("url", URLS)
def test_a_url_reads_as_sqlalchemy_reads_it(url: str) -> None:
    parsed = make_url(url)
    plain = plain_sqlite_path(url)
    if plain is not None:
        assert (plain, parsed.password) == (parsed.database, None)
        assert parsed.render_as_string(hide_password=False) == url
    assert url_display(url) == parsed.render_as_string(hide_password=True)
    assert url_password(url) == (str(parsed.password) if parsed.password else None)


def test_plain_urls_are_the_ones_expected() -> None:
    assert [url for url in URLS if plain_sqlite_path(url) is not None] == URLS[:3]
    assert url_password("/not/a/url.sqlite") is None  # make_url refuses it: no password to hide


@given(st.text(alphabet="abAB09_.-+/ ~@:%?#\u00e9", min_size=1, max_size=30))
def test_any_plain_path_reads_back_as_sqlalchemy_reads_it(path: str) -> None:
    url = "sqlite:///" + path
    if plain_sqlite_path(url) is not None:
        parsed = make_url(url)
        assert (parsed.database, parsed.password) == (path, None)
        assert parsed.render_as_string(hide_password=True) == url


@pytest.mark.parametrize("name", ["harvest.sqlite", "with space/h+1.db", "caf\u00e9/h.db", "a@b/h.db"])
def test_a_file_path_normalises_as_sqlalchemy_renders_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    expected = make_url("sqlite:///" + str(path.resolve())).render_as_string(hide_password=False)
    assert normalize_database_url(str(path)) == expected


# --------------------------------------------------------------------- the columns without the models


def _kind(column: sa.Column[Any]) -> str:
    if isinstance(column.type, UtcDateTime):
        return "datetime"
    if isinstance(column.type, sa.Boolean):
        return "bool"
    if isinstance(column.type, sa.Date) and not isinstance(column.type, sa.DateTime):
        return "date"
    assert isinstance(column.type, sa.Text | sa.Integer | sa.Float | sa.LargeBinary), (column, column.type)
    return ""


def test_the_column_kinds_are_the_models_types() -> None:
    for table in DOCUMENT_TABLES:
        for column in metadata.tables[table].c:
            assert COLUMN_KINDS.get(column.name, "") == _kind(column), f"{table}.{column.name}"
    named = {column.name for table in DOCUMENT_TABLES for column in metadata.tables[table].c}
    assert set(COLUMN_KINDS) <= named


def test_the_metric_fields_and_journal_columns_are_the_tables_columns() -> None:
    metrics = [c.name for c in metadata.tables["article_metrics"].c]
    assert set(METRIC_FIELDS) <= set(metrics)
    others = {"id", "article_id", "source", "valid_on", "fetched_at", "run_id", "last_modified"}
    assert set(metrics) - set(METRIC_FIELDS) == others
    journals = [c.name for c in metadata.tables["journals"].c if c.name not in {"id", "journal_key"}]
    assert sorted(db.documents._JOURNAL_COLUMNS) == sorted(journals)


# ------------------------------------------------------------------------- what the reader gives back


def _typed(row: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    # the type as well as the value: True == 1, and JSON would print one as true and the other as 1
    return {name: (type(value).__name__, value) for name, value in row.items()}


def _all_rows_read_by_models(engine: Engine, table: str) -> list[dict[str, tuple[str, Any]]]:
    t = metadata.tables[table]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings().all()
    return [_typed(dict(row)) for row in rows]


def _all_rows_read_by(snapshot: Snapshot, table: str) -> list[dict[str, tuple[str, Any]]]:
    keys = ", ".join(c.name for c in metadata.tables[table].primary_key.columns)
    rows = snapshot.rows(f"SELECT * FROM {table} ORDER BY {keys}")  # noqa: S608 - our own names
    return [_typed(row._asdict()) for row in rows]


def _databases(url: str, engine: Engine) -> Iterator[Any]:
    yield engine
    reader = open_sqlite_reader(url)
    assert (reader is None) == (not url.startswith("sqlite"))
    if reader is not None:
        yield reader
        reader.close()


def test_every_value_reads_back_with_the_type_the_models_give(rich: tuple[str, Engine]) -> None:
    url, engine = rich
    expected = {table: _all_rows_read_by_models(engine, table) for table in DOCUMENT_TABLES}
    assert all(expected[t] for t in ("articles", "authors", "article_metrics", "field_disagreements"))
    for database in _databases(url, engine):
        with read_snapshot(database, "cannot read") as snapshot:
            for table in DOCUMENT_TABLES:
                assert _all_rows_read_by(snapshot, table) == expected[table], (type(database), table)


def test_the_sqlite_reader_gives_the_documents_the_engine_gives(rich: tuple[str, Engine]) -> None:
    url, engine = rich
    reader = open_sqlite_reader(url)
    if reader is None:
        pytest.skip("the reader is for SQLite files")
    try:
        asked = ["101", "PMC303", "10.3389/FONC.2022.104", "35350566", "doi:10.5555/105", "999", "107"]
        assert resolve_identifiers(reader, asked) == resolve_identifiers(engine, asked)
        ids = [i for i in resolve_identifiers(engine, asked).values() if i is not None]
        for deleted in (False, True):
            from_engine = json.dumps(list(load_documents(engine, ids, include_deleted=deleted)))
            assert json.dumps(list(load_documents(reader, ids, include_deleted=deleted))) == from_engine
            from_engine = json.dumps(list(load_documents(engine, include_deleted=deleted)))
            assert json.dumps(list(load_documents(reader, include_deleted=deleted))) == from_engine
        for fmt in ("jsonl", "csv"):
            ours, theirs = io.StringIO(), io.StringIO()
            assert export_documents(reader, fmt, ours) == export_documents(engine, fmt, theirs) > 0
            assert ours.getvalue() == theirs.getvalue()
    finally:
        reader.close()


# ------------------------------------------------------------------ opening a SQLite file for reading


def _refusals(url: str) -> tuple[str, str]:
    """The message of open_sqlite_reader and of open_existing_database for the same database."""
    with pytest.raises(StorageError) as ours:
        open_sqlite_reader(url)
    with pytest.raises(StorageError) as theirs:
        open_existing_database(url).dispose()
    return str(ours.value), str(theirs.value)


def test_a_missing_file_is_refused_as_the_engine_refuses_it_and_nothing_is_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such.sqlite'}"
    ours, theirs = _refusals(url)
    assert ours == theirs and ours.startswith("no database at ")
    assert not (tmp_path / "no").exists()


def test_a_directory_is_refused_as_the_engine_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    ours, theirs = _refusals(f"sqlite:///{tmp_path / 'dir.sqlite'}")
    assert ours == theirs and ours.endswith("it is a directory")


def test_a_file_that_is_not_a_database_is_refused_as_the_engine_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "notes.sqlite").write_text("not a database, " * 100, encoding="utf-8")
    ours, theirs = _refusals(f"sqlite:///{tmp_path / 'notes.sqlite'}")
    assert ours == theirs and ours.endswith("the file is not a SQLite database")


def test_a_database_without_the_schema_is_refused_as_the_engine_refuses_it(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    ours, theirs = _refusals(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert ours == theirs and ours.endswith("it holds no harvest schema")


def test_a_schema_behind_head_or_an_unusual_url_is_left_to_the_engine(seeded: str) -> None:
    reader = open_sqlite_reader(seeded)
    assert isinstance(reader, SqliteReader)
    reader.close()
    assert open_sqlite_reader(seeded + "?timeout=5") is None
    downgrade(seeded, "0007")
    assert open_sqlite_reader(seeded) is None
    with pytest.raises(StorageError, match="older than this version's"):
        open_existing_database(seeded)


def test_a_read_failure_names_the_action_and_the_database(seeded: str) -> None:
    reader = open_sqlite_reader(seeded)
    assert reader is not None
    try:
        with pytest.raises(StorageError) as caught, read_snapshot(reader, "cannot read") as snapshot:
            snapshot.rows("SELECT x FROM nowhere")
        assert str(caught.value) == f"cannot read {seeded}: no such table: nowhere"
        with read_snapshot(reader, "cannot read") as snapshot:  # the connection is usable again
            assert snapshot.rows("SELECT count(*) FROM articles")[0][0] == 1
    finally:
        reader.close()


def test_placeholders_and_parameters_must_match(seeded: str) -> None:
    reader = open_sqlite_reader(seeded)
    assert reader is not None
    try:
        with read_snapshot(reader, "cannot read") as snapshot:
            assert [r.id for r in snapshot.rows("SELECT id FROM articles WHERE id IN ?", [(1, 2, 3)])] == [1]
            with pytest.raises(ValueError, match="placeholders"):
                snapshot.rows("SELECT id FROM articles WHERE id = ?", [])
            with pytest.raises(ValueError, match="empty list"):
                snapshot.rows("SELECT id FROM articles WHERE id IN ?", [[]])
    finally:
        reader.close()

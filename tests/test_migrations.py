"""Engine set-up and migrations: first use, round trips, models in step with migrations, refusals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from db.engine import (
    begin_write,
    current_revision,
    downgrade,
    head_revision,
    open_database,
    upgrade,
)
from db.models import PUBMED_CHILD_TABLES, metadata
from harvester.core.errors import SchemaVersionError, StorageError
from tests.db_helpers import database_params, failing_statement, fresh_database_url, table_names

SCHEMA_TABLES = sorted([*metadata.tables, "alembic_version"])


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


def differences(engine: Engine) -> list[object]:
    """What the migrated database lacks or has beyond the models, but the foreign keys that PostgreSQL
    leaves to the store and its triggers (migration 0014; test_child_references checks what they do)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        found = list(compare_metadata(context, metadata))
    if engine.dialect.name != "postgresql":
        return found
    return [
        diff
        for diff in found
        if not (isinstance(diff, tuple) and diff[0] == "add_fk" and diff[1].table.name in PUBMED_CHILD_TABLES)
    ]


def test_a_fresh_database_gets_the_whole_schema_on_first_use(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        assert table_names(engine) == SCHEMA_TABLES
        assert current_revision(engine) == head_revision() == "0014"
    finally:
        engine.dispose()


def test_migrate_false_leaves_a_fresh_database_empty(db_url: str) -> None:
    engine = open_database(db_url, migrate=False)
    try:
        assert table_names(engine) == []
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_differ(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(db_url: str) -> None:
    engine = open_database(db_url, migrate=False)
    try:
        upgrade(engine)
        assert table_names(engine) == SCHEMA_TABLES
        downgrade(engine, "base")
        assert table_names(engine) == ["alembic_version"]
        assert current_revision(engine) is None
        upgrade(engine, "head")
        assert current_revision(engine) == head_revision()
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_upgrade_and_downgrade_accept_a_url(db_url: str) -> None:
    upgrade(db_url)
    engine = open_database(db_url, migrate=False)
    try:
        assert current_revision(engine) == head_revision()
        downgrade(db_url, "base")
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_a_failed_migration_leaves_no_half_created_schema(db_url: str) -> None:
    engine = open_database(db_url, migrate=False)
    try:
        with failing_statement(engine, "CREATE TABLE mesh_qualifiers"), pytest.raises(StorageError) as caught:
            upgrade(engine)
        assert "disk I/O error" in str(caught.value)
        assert table_names(engine) == []
        assert current_revision(engine) is None
    finally:
        engine.dispose()
    engine = open_database(db_url)  # and the next start migrates cleanly
    try:
        assert table_names(engine) == SCHEMA_TABLES
    finally:
        engine.dispose()


def test_a_revision_from_a_newer_tool_is_refused(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff0002'"))
    engine.dispose()
    for migrate in (True, False):
        with pytest.raises(SchemaVersionError) as caught:
            open_database(db_url, migrate=migrate)
        assert str(caught.value) == (
            "database schema revision ffff0002 is newer than this version of pubmed-harvester knows; "
            "upgrade the tool"
        )
    with pytest.raises(SchemaVersionError):
        upgrade(db_url)


def test_two_processes_opening_a_fresh_database_at_once_both_succeed(db_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def open_and_close() -> None:
        try:
            start.wait()
            open_database(db_url).dispose()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = open_database(db_url, migrate=False)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrating_waits_for_a_writer_then_gives_up_with_storage_error(db_url: str) -> None:
    holder = open_database(db_url, migrate=False)
    try:
        with begin_write(holder), pytest.raises(StorageError) as caught:
            open_database(db_url, busy_timeout=0.3)
        assert "locked by another writer" in str(caught.value)
        assert "\n" not in str(caught.value)
        assert table_names(holder) == []
        open_database(db_url, busy_timeout=0.3).dispose()  # the writer is done: now it migrates
        assert current_revision(holder) == head_revision()
    finally:
        holder.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_normal_sync(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'h.sqlite'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_sqlite_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "harvest.sqlite"
    open_database(f"sqlite:///{path}").dispose()
    assert path.is_file()


def test_sqlite_path_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "somefile"
    blocker.write_text("a regular file, so nothing can be created under it")
    with pytest.raises(StorageError) as caught:
        open_database(f"sqlite:///{blocker / 'sub' / 'harvest.sqlite'}")
    assert "cannot create the directory" in str(caught.value)
    assert str(blocker) in str(caught.value)


def test_sqlite_read_only_url_to_a_missing_file_is_a_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(StorageError) as caught:
        open_database(f"sqlite:///file:{missing}?mode=ro&uri=true")
    assert "cannot be opened" in str(caught.value)
    assert not missing.exists()


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StorageError) as caught:
        open_database(f"sqlite:///{path}")
    assert (
        str(caught.value) == f"cannot open the database sqlite:///{path}: the file is not a SQLite database"
    )
    assert path.read_bytes().startswith(b"these are my notes")


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="it is a directory"):
        open_database(f"sqlite:///{tmp_path}")


def test_an_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = "postgresql+psycopg://harvester:s3cret-pw@127.0.0.1:1/harvest?connect_timeout=2"
    with pytest.raises(StorageError) as caught:
        open_database(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "harvester:***@127.0.0.1:1/harvest" in message
    assert "\n" not in message


def test_an_unsupported_or_malformed_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="unsupported database 'mysql'"):
        open_database("mysql://u@localhost/x")
    with pytest.raises(StorageError, match="not a valid SQLAlchemy URL"):
        open_database("not a url")


def test_0006_shares_identifiers_keeps_every_child_row_and_downgrades_to_unique_again(db_url: str) -> None:
    """Migration 0006 up and down with data: SQLite rebuilds articles without cascading to its children."""
    from datetime import UTC, datetime

    from db.store import store_articles
    from harvester.core.records import Article
    from harvester.sources.pubmed_xml import parse_pubmed

    fixture = Path(__file__).parent / "fixtures" / "efetch_pubmed_cochrane_versions_shared_doi.xml"
    records = [r for r in parse_pubmed(fixture.read_bytes(), keep_raw=True) if isinstance(r, Article)]
    doi = "10.1002/14651858.cd002020"
    engine = open_database(db_url)
    try:
        store_articles(engine, records, url=None, fetched_at=datetime(2026, 12, 1, tzinfo=UTC))

        def count(sql: str) -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(sql)).scalar_one())

        children = count("SELECT count(*) FROM authors") + count("SELECT count(*) FROM article_identifiers")
        assert count(f"SELECT count(*) FROM articles WHERE doi = '{doi}'") == 2  # noqa: S608 - a constant
        downgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        assert count(f"SELECT count(*) FROM articles WHERE doi = '{doi}'") == 1  # noqa: S608
        with engine.connect() as conn:  # unique again
            conn.execute(sa.text("UPDATE articles SET doi = NULL"))
            conn.commit()
        with pytest.raises(sa.exc.IntegrityError), engine.connect() as conn:
            conn.execute(sa.text(f"UPDATE articles SET doi = '{doi}'"))  # noqa: S608
        with engine.connect() as conn:
            conn.execute(sa.text(f"UPDATE articles SET doi = '{doi}' WHERE pmid = '11034741'"))  # noqa: S608
            conn.commit()
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        # the second version's own DOI is filled back from its ArticleIds
        assert count(f"SELECT count(*) FROM articles WHERE doi = '{doi}'") == 2  # noqa: S608
        assert (
            count("SELECT count(*) FROM authors") + count("SELECT count(*) FROM article_identifiers")
            == children
        )
        assert count("SELECT count(*) FROM report_shared_identifiers") == 2
        assert differences(engine) == []
    finally:
        engine.dispose()

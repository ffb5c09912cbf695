"""Engine set-up and the migration entry points; every other db module gets its connections from here.

Both dialects behave alike: writers are serialised (SQLite by ``BEGIN IMMEDIATE``, PostgreSQL by a
transaction-level advisory lock; on PostgreSQL, writers that name what they write by keys run side by side
when their keys differ: :func:`begin_keyed_write`), a writer waits at most ``busy_timeout`` seconds for
another one, and
every database failure surfaces as a one-line :class:`StorageError` that names the database without
its password.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from db.driver import DEFAULT_BUSY_TIMEOUT, error_reason, setup_sqlite_connection
from db.revisions import MIGRATIONS_DIR, fast_head_revision
from harvester.core.errors import SchemaVersionError, StorageError, UsageError

if TYPE_CHECKING:  # Alembic is imported where it is used: a reading process of harvest ingest never needs it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

PG_CONNECT_TIMEOUT = 10  # seconds to reach a PostgreSQL server


_BEGIN_MODE = "harvester_sqlite_begin"  # execution option read by the SQLite "begin" listener
_WRITER_LOCK_KEY = 0x50_4D_48_56  # "PMHV": first half of the PostgreSQL advisory lock key


def open_database(url: str, *, migrate: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """Create an engine for ``url`` and, when ``migrate``, bring the schema to the head revision.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        migrate: upgrade the schema to head (a fresh database gets the whole schema, in one transaction).
        busy_timeout: seconds to wait for another writer (SQLite busy timeout, PostgreSQL lock_timeout).

    Raises:
        SchemaVersionError: the database was migrated by a newer version of pubmed-harvester.
        StorageError: the database cannot be created, opened, reached or migrated.
    """
    engine = connect(url, busy_timeout=busy_timeout)
    try:
        _check_and_migrate(engine, migrate=migrate)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_existing_database(
    url: str, *, at_head: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> Engine:
    """An engine on a database that exists, for commands that only read: nothing is created or migrated.

    Args:
        url: as :func:`open_database`.
        at_head: also refuse a database whose schema is behind this version's head (``harvest db
            current`` and the migration commands look at any revision).

    Raises:
        StorageError: "no database at ...": the SQLite file does not exist (no file or folder is made), or
            the database holds no harvest schema; or the schema is behind head (``at_head``).
        SchemaVersionError: the database was migrated by a newer version of pubmed-harvester.
    """
    engine = connect(url, busy_timeout=busy_timeout, create=False)
    try:
        revisions = _stored_revisions(engine)
        if not revisions:
            raise StorageError(f"no database at {_where(engine)}: it holds no harvest schema")
        if revisions != (fast_head_revision(),):
            script = _script_directory()
            with begin_read(engine) as conn:
                heads = _known_heads(conn, script)
            if at_head and heads != (script.get_current_head(),):
                raise StorageError(
                    f"the database {_where(engine)} is at revision {', '.join(heads)}, older than this "
                    f"version's {script.get_current_head()}: run 'harvest db upgrade'"
                )
    except DBAPIError as exc:
        engine.dispose()
        raise storage_error(exc, "cannot open the database", engine) from exc
    except BaseException:
        engine.dispose()
        raise
    return engine


def connect(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, create: bool = True) -> Engine:
    """An engine for ``url`` set up as :func:`open_database` sets it up, without looking at the schema:
    for a second process working on a database its first process opened (``harvest ingest``'s reader).
    Unless ``create``, a SQLite file that does not exist is refused (and no folder is made for it).

    Raises:
        StorageError: the URL is not valid, or names a database other than SQLite or PostgreSQL; or
            (not ``create``) "no database at PATH".
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError("the database URL is not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout, create=create)
    if backend == "postgresql":
        return _postgresql_engine(parsed, busy_timeout)
    if backend.startswith(("postgres", "pg", "psql")):
        raise StorageError(f"unsupported database {backend!r}: did you mean postgresql://USER@HOST/DB?")
    raise StorageError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``, in one transaction.

    Raises:
        UsageError: ``revision`` is unknown or not above the current one (exit 2).
        SchemaVersionError, StorageError: as :func:`open_database`.
    """
    _run_command(engine_or_url, "upgrade", revision)


def downgrade(engine_or_url: Engine | str, revision: str) -> None:
    """Downgrade the schema to ``revision`` ("base" drops every table), in one transaction.

    Raises:
        UsageError: ``revision`` is unknown or not below the current one (exit 2).
        SchemaVersionError, StorageError: as :func:`open_database`.
    """
    _run_command(engine_or_url, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, None for a database without the schema."""
    from alembic.runtime.migration import MigrationContext

    try:
        with begin_read(engine) as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the schema revision of", engine) from exc


def head_revision() -> str:
    """The newest revision this version of the code knows."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction that holds the writers' lock; commits on success, rolls back on error."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Scoped to the schema so that separate schemas on one server do not wait for each other.
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
                {"key": _WRITER_LOCK_KEY},
            )
        yield conn


@contextmanager
def begin_keyed_write(engine: Engine, keys: Collection[int]) -> Iterator[Connection]:
    """A write transaction that may run beside other keyed writers whose ``keys`` differ.

    On PostgreSQL it takes the writers' lock *shared* and one transaction-level advisory lock per key
    (ascending, so two keyed writers never wait for each other in a circle): the workers of the ingest
    queue store different files at once. A writer of the whole lock (:func:`begin_write`) waits for every
    keyed writer, and they for it. What the keys stand for is the caller's (db.store: ranges of PMIDs);
    a caller writes only rows its keys cover, or rows that are safe to write concurrently (inserts with
    ON CONFLICT, updates in a fixed order). SQLite has one writer: this is :func:`begin_write` there.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The same statement shape and parameter as begin_write's, so the queue's fence sees it too.
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock_shared(:key, hashtext(current_schema()))"),
                {"key": _WRITER_LOCK_KEY},
            )
            if keys:
                # unnest yields the sorted array in order: the locks are taken in ascending order.
                conn.execute(
                    sa.text(
                        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/keyed'), k)"
                        " FROM unnest(CAST(:keys AS integer[])) AS k"
                    ),
                    {"keys": sorted(set(keys))},
                )
        yield conn


@contextmanager
def begin_read(engine: Engine) -> Iterator[Connection]:
    """A read transaction: one consistent snapshot that does not wait for, or block, a writer."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot, as SQLite's WAL read
        else:
            conn.execution_options(**{_BEGIN_MODE: "DEFERRED"})
        with conn.begin():
            yield conn


def storage_error(exc: BaseException, action: str, engine: Engine) -> StorageError:
    """Turn a database failure into a one-line StorageError: "<action> <url>: <reason>"."""
    url = engine.url
    reason = error_reason(exc)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return StorageError(f"{action} {url.render_as_string(hide_password=True)}: {reason}")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code, so migrations run the same from a checkout or an installed package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _sqlite_engine(url: URL, busy_timeout: float, *, create: bool = True) -> Engine:
    database = url.database or ""
    uri = str(url.query.get("uri", "")).lower() in {"true", "1"}
    memory = database in {"", ":memory:"} or (uri and "mode=memory" in database)
    kwargs: dict[str, Any] = {}
    connect_args: dict[str, Any] = {"timeout": busy_timeout}
    if memory:
        # One shared connection: every new connection to ":memory:" would be a new, empty database.
        kwargs["poolclass"] = StaticPool
        connect_args["check_same_thread"] = False
    elif not uri:
        path = Path(database).expanduser()
        if not create and not path.exists():
            raise StorageError(
                f"no database at {path}: a command that stores, or 'harvest db upgrade', creates it"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise StorageError(f"cannot create the directory of the database {path}: {reason}") from None
        if path.is_dir():
            raise StorageError(f"cannot open the database {path}: it is a directory")
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    sa.event.listen(engine, "connect", partial(_on_sqlite_connect, busy_timeout=busy_timeout))
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: object, *, busy_timeout: float) -> None:
    setup_sqlite_connection(dbapi_connection, busy_timeout=busy_timeout)


def _on_sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN: two writers that both read first would otherwise deadlock
    # when each tries to upgrade its read lock. Readers ask for DEFERRED through begin_read().
    mode = conn.get_execution_options().get(_BEGIN_MODE, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _postgresql_engine(url: URL, busy_timeout: float) -> Engine:
    if url.get_driver_name() in {"", "psycopg2"}:
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    timeout_ms = max(1, round(busy_timeout * 1000))

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        # lock_timeout bounds the wait for the writers' advisory lock, like SQLite's busy timeout.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {timeout_ms}")
        dbapi_connection.commit()

    sa.event.listen(engine, "connect", on_connect)
    return engine


def _check_and_migrate(engine: Engine, *, migrate: bool) -> None:
    from alembic import command
    from alembic.util import CommandError

    try:
        if _stored_revisions(engine) == (fast_head_revision(),):
            return  # at head: no need to load Alembic and every migration script
    except DBAPIError as exc:
        raise storage_error(exc, "cannot open the database", engine) from exc
    script = _script_directory()
    head = script.get_current_head()
    try:
        with begin_read(engine) as conn:
            heads = _known_heads(conn, script)
        if not migrate or heads == (head,):
            return
        with _begin_migration(engine) as conn:
            # Checked again under the lock: another process may have upgraded meanwhile.
            if _known_heads(conn, script) != (head,):
                command.upgrade(alembic_config(conn), "head")
    except DBAPIError as exc:  # also what a failing connect listener's PRAGMA becomes
        raise storage_error(exc, "cannot open the database", engine) from exc
    except CommandError as exc:
        raise storage_error(exc, "cannot migrate the database", engine) from exc


def _where(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database:
        return str(Path(url.database).expanduser())
    return url.render_as_string(hide_password=True)


def _stored_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions in the database's alembic_version table, read with plain SQL; () without the table."""
    with begin_read(engine) as conn:
        names = sa.inspect(conn).get_table_names()
        if "alembic_version" not in names:
            return ()
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        return tuple(sorted(str(r) for r in rows))


@contextmanager
def _begin_migration(engine: Engine) -> Iterator[Connection]:
    """A write transaction for migrations; on SQLite with foreign keys off and legacy_alter_table on.

    SQLite changes a constraint by rebuilding the table: with foreign keys on, dropping the old table
    would delete (cascade) every row that references it, and renaming the new one would check the views
    that read it. Foreign keys can only be switched off outside a transaction, so it is done on the
    driver's connection before BEGIN, and the keys are checked before commit.
    """
    if engine.dialect.name != "sqlite":
        with begin_write(engine) as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                conn.exec_driver_sql("PRAGMA legacy_alter_table=ON")
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StorageError(f"the migration left {len(broken)} broken foreign keys: rolled back")
                conn.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
        finally:
            raw.execute("PRAGMA legacy_alter_table=OFF")
            raw.execute("PRAGMA foreign_keys=ON")


def _known_heads(conn: Connection, script: ScriptDirectory) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    known = {rev.revision for rev in script.walk_revisions()}
    for rev in heads:
        if rev not in known:
            raise SchemaVersionError(
                f"database schema revision {rev} is newer than this version of pubmed-harvester knows; "
                "upgrade the tool"
            )
    return tuple(heads)


def _run_command(engine_or_url: Engine | str, name: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    owned = isinstance(engine_or_url, str)
    engine = open_database(engine_or_url, migrate=False) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with _begin_migration(engine) as conn:
            _known_heads(conn, _script_directory())
            getattr(command, name)(alembic_config(conn), revision)
    except CommandError as exc:
        from alembic.script.revision import RevisionError

        if isinstance(exc.__cause__, RevisionError) or "revision" in str(exc).lower():
            known = ", ".join(sorted(rev.revision for rev in _script_directory().walk_revisions()))
            raise UsageError(
                f"cannot {name} the database to {revision!r}: {error_reason(exc)} (known revisions: {known}, "
                "head, base)"
            ) from None
        raise storage_error(exc, f"cannot {name} the database", engine) from exc
    except DBAPIError as exc:
        raise storage_error(exc, f"cannot {name} the database", engine) from exc
    finally:
        if owned:
            engine.dispose()

"""Reading with plain SQL through the driver, and a SQLite file opened for reading without SQLAlchemy.

Importing SQLAlchemy and building the table models costs more CPU than ``harvest show`` may take in all
(README, "Performance", Start-up), so the documents (:mod:`db.documents`) are read with plain SQL in a
:class:`Snapshot`, one read transaction, which either kind of database gives:

- :class:`SqliteReader`: a SQLite file at this version's head revision, opened with the standard
  library's sqlite3 and set up as :mod:`db.engine` sets up its own connections (:func:`open_sqlite_reader`);
- an SQLAlchemy :class:`~sqlalchemy.engine.Engine` (PostgreSQL, and SQLite wherever an engine is open
  already), read through :func:`db.engine.begin_read`.

The SQL uses ``?`` placeholders (``IN ?`` takes a list) and no literal ``?`` or ``%``; rows come back as
named tuples whose values have the types SQLAlchemy's models give (:data:`db.columns.COLUMN_KINDS`).
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from db.columns import COLUMN_KINDS
from db.driver import DEFAULT_BUSY_TIMEOUT, error_reason, setup_sqlite_connection
from db.revisions import fast_head_revision
from harvester.core.dburl import plain_sqlite_path
from harvester.core.errors import StorageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    Database: TypeAlias = "SqliteReader | Engine"

Runner = Callable[[str, tuple[Any, ...]], tuple[Sequence[str], Iterable[Sequence[Any]]]]


def _utc(value: datetime) -> datetime:
    # as db.models.UtcDateTime reads a value back: SQLite keeps no offset, PostgreSQL's is the session's
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# What SQLAlchemy's result processors do with each kind of column, by dialect (SQLAlchemy 2 reads SQLite
# dates and timestamps with fromisoformat, and booleans as "true if the value is").
_CONVERTERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sqlite": {
        "bool": bool,
        "datetime": lambda value: _utc(datetime.fromisoformat(value)),
        "date": date.fromisoformat,
    },
    "postgresql": {"datetime": _utc},
}


@functools.cache
def _row_type(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names, rename=True)  # "count(*)" becomes _1


class Snapshot:
    """One read transaction: SQL with ``?`` placeholders in, typed named rows out.

    A list or tuple among the parameters fills ``IN ?`` with as many placeholders as it has items (as
    SQLAlchemy's ``in_`` does); it must not be empty.
    """

    __slots__ = ("_converters", "_run", "dialect")

    def __init__(self, dialect: str, run: Runner) -> None:
        self.dialect = dialect
        self._run = run
        self._converters = _CONVERTERS.get(dialect, {})

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of the query, each a named tuple (``row.pmid``; unnamed columns by position)."""
        mark = "?" if self.dialect == "sqlite" else "%s"  # psycopg's placeholder
        pieces = sql.split("?")
        if len(pieces) != len(params) + 1:
            raise ValueError(f"{len(pieces) - 1} placeholders for {len(params)} parameters: {sql}")
        text = [pieces[0]]
        flat: list[Any] = []
        for param, piece in zip(params, pieces[1:], strict=True):
            if isinstance(param, list | tuple):
                if not param:
                    raise ValueError(f"an empty list for IN: {sql}")
                text.append(f"({', '.join([mark] * len(param))})")
                flat.extend(param)
            else:
                text.append(mark)
                flat.append(param)
            text.append(piece)
        names, raw = self._run("".join(text), tuple(flat))
        make = _row_type(tuple(names))._make
        convert = [
            (index, function)
            for index, name in enumerate(names)
            if (function := self._converters.get(COLUMN_KINDS.get(name, "")))
        ]
        if not convert:
            return [make(values) for values in raw]
        rows = []
        for values in raw:
            typed = list(values)
            for index, function in convert:
                if typed[index] is not None:
                    typed[index] = function(typed[index])
            rows.append(make(typed))
        return rows


class SqliteReader:
    """A SQLite file at head, opened for reading with the standard library (one connection)."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, url: str) -> None:
        self._connection = connection
        self.url = url

    def close(self) -> None:
        self._connection.close()

    @contextmanager
    def snapshot(self, action: str) -> Iterator[Snapshot]:
        """A read transaction (``BEGIN DEFERRED``, as :func:`db.engine.begin_read` starts one).

        Raises:
            StorageError: "<action> <url>: <reason>", as :func:`db.engine.storage_error` words it.
        """
        try:
            self._connection.execute("BEGIN DEFERRED")
            try:
                yield Snapshot("sqlite", self._run)
            except BaseException:
                if self._connection.in_transaction:  # SQLite ends it itself after some errors
                    with suppress(sqlite3.Error):  # the error that got here is the one to report
                        self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{action} {self.url}: {error_reason(exc)}") from exc

    def _run(self, sql: str, params: tuple[Any, ...]) -> tuple[Sequence[str], Iterable[Sequence[Any]]]:
        cursor = self._connection.execute(sql, params)
        try:
            return [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            cursor.close()


def open_sqlite_reader(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> SqliteReader | None:
    """The SQLite database at a plain ``sqlite:///PATH`` URL (:mod:`harvester.core.dburl`) opened for
    reading, when its schema is at the head revision the migration files name; nothing is created.

    Returns None when the URL is not plain or the schema is not plainly at head: the caller then opens
    the database with :func:`db.engine.open_existing_database`, which knows every case and words it.

    Raises:
        StorageError: as :func:`db.engine.open_existing_database`: "no database at PATH", a directory, a
            file that is not a database, a database that holds no harvest schema.
    """
    database = plain_sqlite_path(url)
    head = fast_head_revision()
    if database is None or head is None:
        return None
    path = Path(database).expanduser()
    if not path.exists():
        raise StorageError(
            f"no database at {path}: a command that stores, or 'harvest db upgrade', creates it"
        )
    if path.is_dir():
        raise StorageError(f"cannot open the database {path}: it is a directory")
    action = "cannot open the database"
    try:
        # the file name and options SQLAlchemy's pysqlite dialect gives sqlite3.connect for a file
        connection = sqlite3.connect(os.path.abspath(database), timeout=busy_timeout, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StorageError(f"{action} {url}: {error_reason(exc)}") from exc
    reader = SqliteReader(connection, url)
    try:
        try:
            setup_sqlite_connection(connection, busy_timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StorageError(f"{action} {url}: {error_reason(exc)}") from exc
        with reader.snapshot(action) as snapshot:
            has_table = snapshot.rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            )
            stored = snapshot.rows("SELECT version_num FROM alembic_version") if has_table else []
        revisions = tuple(sorted(str(row[0]) for row in stored))
        if not revisions:
            raise StorageError(f"no database at {path}: it holds no harvest schema")
    except BaseException:
        reader.close()
        raise
    if revisions != (head,):
        reader.close()
        return None
    return reader


@contextmanager
def read_snapshot(database: Database, action: str) -> Iterator[Snapshot]:
    """A read snapshot of either kind of database.

    Raises:
        StorageError: "<action> <url>: <reason>" for a failure of the database.
    """
    if isinstance(database, SqliteReader):
        with database.snapshot(action) as snapshot:
            yield snapshot
        return
    from sqlalchemy.exc import DBAPIError

    from db.engine import begin_read, storage_error

    try:
        with begin_read(database) as conn:

            def run(sql: str, params: tuple[Any, ...]) -> tuple[Sequence[str], Iterable[Sequence[Any]]]:
                result = conn.exec_driver_sql(sql, params)
                return list(result.keys()), result.fetchall()

            yield Snapshot(conn.dialect.name, run)
    except DBAPIError as exc:
        raise storage_error(exc, action, database) from exc

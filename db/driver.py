"""What the database layer does with the driver itself, without SQLAlchemy: how every SQLite connection
is set up, and the one line a driver error becomes.

:mod:`db.engine` runs :func:`setup_sqlite_connection` on each connection its engine makes, and
:mod:`db.reading` on the one connection it opens with the standard library alone (``harvest show``), so
both see the same database the same way.
"""

from __future__ import annotations

import sqlite3

DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another writer before giving up


def setup_sqlite_connection(dbapi_connection: sqlite3.Connection, *, busy_timeout: float) -> None:
    """Foreign keys on, the file in WAL mode, synchronous NORMAL, a 64 MB page cache; and transaction
    control taken from pysqlite, so that the caller's own ``BEGIN`` decides how a transaction starts."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA cache_size=-65536")
    finally:
        cursor.close()


def _use_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """Switch the file to WAL once (it stays WAL); retried while another connection holds the lock.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without its busy
    handler, when another connection is using the file: so processes that create the same fresh database
    at the same moment wait their turn here, up to the busy timeout.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

    for attempt in Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)),
        wait=wait_random(0.01, 0.1),
        stop=stop_after_delay(busy_timeout),
        reraise=True,
    ):
        with attempt:
            cursor.execute("PRAGMA journal_mode=WAL")


_REASONS = (
    # (substring of the driver's message, lower-case) -> the one line users see
    ("database is locked", "the database is locked by another writer (gave up waiting)"),
    ("lock timeout", "the database is locked by another writer (gave up waiting)"),
    ("disk i/o error", "disk I/O error"),
    ("readonly database", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("file is not a database", "the file is not a SQLite database"),
    ("unable to open database file", "the database file cannot be opened or created"),
    ("database or disk is full", "the disk is full"),
)


def error_reason(exc: BaseException) -> str:
    """The one line a database failure shows: a known driver message in plain words, else its first line.

    ``exc`` may be SQLAlchemy's wrapper (its ``orig`` is the driver's exception) or the driver's own.
    """
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    lowered = text.lower()
    for needle, reason in _REASONS:
        if needle in lowered:
            return reason
    return text

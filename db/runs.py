"""Run state: the run lock, harvest_runs rows (started, finished), per-search watermarks and run detail.

The run lock (:func:`exclusive_run`) lets one long run (``harvest nightly``, ``harvest ingest``) work on a
database at a time; a second one raises :class:`BusyError` at once. It is held by something the operating
system or the server releases when the holder dies, so a killed run never leaves a stale lock:

- PostgreSQL: a session-level ``pg_try_advisory_lock`` (scoped to the current schema) on a connection
  kept open for the run. It holds across machines; the server drops it when the session ends.
- SQLite: ``flock`` (exclusive, non-blocking) on ``<database file>.lock`` beside the database. It holds
  across processes on one machine; the kernel drops it when the process exits, even on SIGKILL. The file
  stays after the run; its existence means nothing. Keep the database on a local disk (flock over NFS
  is not reliable). An in-memory database is locked within its process.

The workers of the PostgreSQL ingest queue (:mod:`db.queue`) share the lock: each holds it in shared mode
(:func:`try_shared_run_lock`, ``pg_try_advisory_lock_shared`` on the same key) while it applies a file, so
any number of them apply files together while a ``nightly`` or a ``harvest ingest`` without workers (which
take it exclusively) waits for none of them and is refused (BusyError) while any of them applies one.
Between files a worker holds nothing, so a nightly can start; the workers then wait for it to end.

``run_locks`` holds who took the lock (purpose, pid, host, since), only to name the holder in the busy
message; a stale row never blocks anyone and the next holder overwrites it. Shared holders have a row
each (name ``harvest:shared:<who>``), removed when they let go and by the next exclusive holder.

Runs recorded with :func:`start_locked_run` have ``locked`` true. Such a row still "running" when its
lock is free was left by a killed process: taking the lock marks it "abandoned" (:data:`ABANDONED`).

Watermarks (search_states): a search's ``watermark`` is the last day of its last verified window; it is
written by :func:`record_search` in the same transaction as the run_searches row, and only for a verified
window, so an unverified run leaves it where it was and the next run redoes the window.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, begin_write, storage_error
from db.inserts import dialect_insert
from db.models import metadata
from harvester.core.errors import BusyError, ExitCode, StorageError, exit_code_for

logger = logging.getLogger(__name__)

RUNS = metadata.tables["harvest_runs"]
SEARCH_STATES = metadata.tables["search_states"]
RUN_SEARCHES = metadata.tables["run_searches"]
RUN_LOCKS = metadata.tables["run_locks"]

# The one vocabulary of harvest_runs.status, for every command (README, "Run records"):
RUNNING = "running"  # started and not finished (or still going: see ABANDONED)
OK = "ok"  # finished, everything done (exit 0)
NOT_FOUND = "not_found"  # finished; every id that exists was stored, some ids are unknown upstream (exit 3)
PARTIAL = "partial"  # finished, but some of the work was not done: ids not fetched, a window unverified
FAILED = "failed"  # an error stopped the run (its exit code and message are in the summary)
INTERRUPTED = "interrupted"  # Ctrl-C / SIGINT (exit 130): the batches stored before it stay stored
ABANDONED = "abandoned"  # left "running" by a process that was killed; marked by the next locked run
RUN_STATUSES = (RUNNING, OK, NOT_FOUND, PARTIAL, FAILED, INTERRUPTED, ABANDONED)
FINISHED_STATUSES = (OK, NOT_FOUND, PARTIAL, FAILED, INTERRUPTED)  # what a run may close itself with
LOCK_NAME = "harvest"
SHARED_LOCK_PREFIX = f"{LOCK_NAME}:shared:"  # run_locks rows of shared holders (queue workers)
_RUN_LOCK_KEY = 0x50_4D_52_4C  # "PMRL": first half of the PostgreSQL advisory lock key (db.engine uses PMHV)
_MEMORY_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_MEMORY_LOCKS_GUARD = threading.Lock()


# ---------------------------------------------------------------------------------------------- the lock


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who took the run lock, as its ``run_locks`` row says."""

    purpose: str
    pid: int
    host: str
    acquired_at: datetime

    def describe(self) -> str:
        return (
            f"{self.purpose} (pid {self.pid} on {self.host}, since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


def run_status(exit_code: int) -> str:
    """The status of a run that finished (no error stopped it) and exits with ``exit_code``."""
    if exit_code == ExitCode.OK:
        return OK
    if exit_code == ExitCode.NOT_FOUND:
        return NOT_FOUND
    if exit_code == ExitCode.INTERRUPTED:
        return INTERRUPTED
    return PARTIAL  # finished with some of the work not done: ids not fetched, a file refused, ...


def failure_summary(exc: BaseException, summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What to store for a run that ``exc`` stopped: ``summary`` so far, the error, the exit code the
    process ends with, and the status (interrupted for Ctrl-C, else failed)."""
    code = exit_code_for(exc)
    interrupted = code == ExitCode.INTERRUPTED
    error = "interrupted" if interrupted else str(exc) or type(exc).__name__
    return {
        **(summary or {}),
        "error": error,
        "exit_code": int(code),
        "status": INTERRUPTED if interrupted else FAILED,
    }


@contextmanager
def exclusive_run(engine: Engine, purpose: str) -> Iterator[None]:
    """Hold the database's run lock for the block, or raise BusyError at once if another run holds it.

    Args:
        engine: from :func:`db.engine.open_database` (the schema must be at head).
        purpose: what the run is, shown to a run that finds the lock taken (e.g. "harvest nightly").

    Raises:
        BusyError: another run holds the lock; nothing was done.
        StorageError: the lock or its holder row could not be taken or written.
    """
    with _os_lock(engine) as acquired:
        if not acquired:
            holder = read_lock_holder(engine)
            who = holder.describe() if holder is not None else "another run"
            raise BusyError(
                f"another run is active: {who} holds the run lock on {_display(engine)}; this run did nothing"
            )
        _write_holder(engine, purpose)
        _clear_shared_holders(engine)  # no shared holder can exist now: their rows are stale
        try:
            abandoned = abandon_orphaned_runs(engine)
            if abandoned:
                logger.warning(
                    "marked %d run(s) left running by a killed process as abandoned", len(abandoned)
                )
            yield
        finally:
            _clear_holder(engine)


def read_lock_holder(engine: Engine) -> LockHolder | None:
    """Who holds the run lock as ``run_locks`` says: the exclusive holder's row, else the longest-standing
    shared holder's (a row may be stale: only the lock itself says whether a run is active)."""
    locks = RUN_LOCKS
    query = (
        sa.select(locks)
        .where(sa.or_(locks.c.name == LOCK_NAME, locks.c.name.startswith(SHARED_LOCK_PREFIX)))
        .order_by((locks.c.name == LOCK_NAME).desc(), locks.c.acquired_at)
        .limit(1)
    )
    try:
        with begin_read(engine) as conn:
            row = conn.execute(query).first()
    except DBAPIError:
        return None  # only used to word a message
    if row is None:
        return None
    return LockHolder(row.purpose, row.pid, row.host, row.acquired_at)


def try_shared_run_lock(engine: Engine, conn: Connection) -> bool:
    """Take the run lock in shared mode on ``conn``, a PostgreSQL session kept open by the caller (in
    autocommit), without waiting: True when taken (held until :func:`release_shared_run_lock` or the end
    of the session), False while a run holds it exclusively. :func:`note_shared_holder` names the holder.

    Raises:
        StorageError: the lock could not be asked for.
    """
    query = sa.text("SELECT pg_try_advisory_lock_shared(:key, hashtext(current_schema()))")
    try:
        return bool(conn.execute(query, {"key": _RUN_LOCK_KEY}).scalar_one())
    except DBAPIError as exc:
        raise storage_error(exc, "cannot take the run lock on", engine) from exc


def note_shared_holder(engine: Engine, purpose: str, holder: str) -> None:
    """Name a shared holder of the run lock for the busy message of a run refused meanwhile.

    Args:
        purpose: what holds it ("harvest worker").
        holder: a name unique to the holder (its run_locks row).

    Raises:
        StorageError: the database could not be written.
    """
    _write_holder(engine, purpose, name=SHARED_LOCK_PREFIX + holder, serialised=False)


def release_shared_run_lock(engine: Engine, conn: Connection, holder: str | None) -> None:
    """Let go of the shared run lock taken by :func:`try_shared_run_lock` on ``conn``, and remove the
    holder's row when one was noted (``holder``)."""
    try:
        conn.execute(
            sa.text("SELECT pg_advisory_unlock_shared(:key, hashtext(current_schema()))"),
            {"key": _RUN_LOCK_KEY},
        )
    except DBAPIError:
        conn.invalidate()  # ending the session releases it
    if holder is None:
        return
    try:
        with engine.begin() as rows:
            rows.execute(sa.delete(RUN_LOCKS).where(RUN_LOCKS.c.name == SHARED_LOCK_PREFIX + holder))
    except DBAPIError as exc:
        logger.warning("could not clear the run lock holder: %s", storage_error(exc, "in", engine))


def run_lock_taken_exclusively(engine: Engine) -> LockHolder | None:
    """On PostgreSQL: who holds the run lock exclusively right now (a nightly, an ingest without
    workers), else None. Asked without taking anything.

    Raises:
        StorageError: the server could not be asked.
    """
    if engine.dialect.name != "postgresql":
        return None
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = CAST(:key AS oid) AND objid = CAST(hashtext(current_schema()) AS oid)"
        " AND objsubid = 2"
    )
    try:
        with engine.connect() as conn:
            held = int(conn.execute(query, {"key": _RUN_LOCK_KEY}).scalar_one())
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the run lock on", engine) from exc
    if not held:
        return None
    return read_lock_holder(engine) or LockHolder("another run", 0, "?", datetime.now(UTC))


def lock_file_path(engine: Engine) -> Path | None:
    """The SQLite lock file beside the database file; None for PostgreSQL and in-memory databases."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if str(engine.url.query.get("uri", "")).lower() in {"true", "1"}:
        if "mode=memory" in database:
            return None
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in {"", ":memory:"}:
        return None
    path = Path(database).expanduser().resolve()
    return path.with_name(path.name + ".lock")


def _os_lock(engine: Engine) -> AbstractContextManager[bool]:
    if engine.dialect.name == "postgresql":
        return _advisory_lock(engine)
    path = lock_file_path(engine)
    return _memory_lock(engine) if path is None else _file_lock(path)


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[bool]:
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot take the run lock on", engine) from exc
    try:
        # Autocommit: the session holds the lock, and must not sit "idle in transaction" for the run.
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        query = sa.text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))")
        try:
            acquired = bool(conn.execute(query, {"key": _RUN_LOCK_KEY}).scalar_one())
        except DBAPIError as exc:
            raise storage_error(exc, "cannot take the run lock on", engine) from exc
        try:
            yield acquired
        finally:
            if acquired:
                _advisory_unlock(conn)
    finally:
        conn.close()


def _advisory_unlock(conn: Connection) -> None:
    try:
        conn.execute(
            sa.text("SELECT pg_advisory_unlock(:key, hashtext(current_schema()))"), {"key": _RUN_LOCK_KEY}
        )
    except DBAPIError:
        # Ending the session releases the lock: never hand a connection that may still hold it to the pool.
        conn.invalidate()


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the run lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
                yield False
                return
            raise StorageError(f"cannot lock the run lock file {path}: {exc.strerror or exc}") from None
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _memory_lock(engine: Engine) -> Iterator[bool]:
    with _MEMORY_LOCKS_GUARD:
        lock = _MEMORY_LOCKS.setdefault(engine, threading.Lock())
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


def _write_holder(engine: Engine, purpose: str, *, name: str = LOCK_NAME, serialised: bool = True) -> None:
    values = {
        "name": name,
        "purpose": purpose,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "acquired_at": datetime.now(UTC),
    }
    try:
        # A shared holder writes its row beside the stores of the other holders, not behind them.
        with begin_write(engine) if serialised else engine.begin() as conn:
            insert = dialect_insert(conn, RUN_LOCKS).values(values)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[RUN_LOCKS.c.name],
                    set_={key: insert.excluded[key] for key in values if key != "name"},
                )
            )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record the run lock in", engine) from exc


def _clear_holder(engine: Engine) -> None:
    try:
        with begin_write(engine) as conn:
            conn.execute(sa.delete(RUN_LOCKS).where(RUN_LOCKS.c.name == LOCK_NAME))
    except DBAPIError as exc:
        # Harmless: the row is informational and the next holder overwrites it.
        logger.warning("could not clear the run lock holder: %s", storage_error(exc, "in", engine))


def _clear_shared_holders(engine: Engine) -> None:
    try:
        with begin_write(engine) as conn:
            conn.execute(sa.delete(RUN_LOCKS).where(RUN_LOCKS.c.name.startswith(SHARED_LOCK_PREFIX)))
    except DBAPIError as exc:
        logger.warning("could not clear stale run lock holders: %s", storage_error(exc, "in", engine))


def _display(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------- run rows


def start_run(engine: Engine, command: str) -> int:
    """Record the start of a run (status "running"); returns its id for history and conflict rows.

    Raises:
        StorageError: the database could not be written.
    """
    try:
        with begin_write(engine) as conn:
            query = sa.insert(RUNS).returning(RUNS.c.id)
            return int(conn.execute(query, _run_values(command)).scalar_one())
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc


def finish_run(
    engine: Engine, run_id: int, status: str, summary: Mapping[str, Any], *, exit_code: int | None = None
) -> None:
    """Record the end of a run: a status of :data:`FINISHED_STATUSES`, a JSON summary and the
    process's exit code.

    Raises:
        StorageError: the database could not be written.
        ValueError: an unknown status.
    """
    values = _finish_values(status, summary, exit_code)
    try:
        with begin_write(engine) as conn:
            conn.execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(**values))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc


def start_locked_run(engine: Engine, command: str) -> int:
    """Record the start of a run that holds the run lock (status "running"); returns its id.

    Raises:
        StorageError: the database could not be written.
    """
    values = {**_run_values(command), "locked": True}
    try:
        with begin_write(engine) as conn:
            return int(conn.execute(sa.insert(RUNS).returning(RUNS.c.id), values).scalar_one())
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc


def _run_values(command: str) -> dict[str, Any]:
    """The columns of a new "running" harvest_runs row: command, start, and who runs it (pid, host)."""
    return {
        "command": command,
        "started_at": datetime.now(UTC),
        "status": RUNNING,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def _finish_values(status: str, summary: Mapping[str, Any], exit_code: int | None) -> dict[str, Any]:
    """The columns that close a run; ``exit_code`` (the process's) is stored in the summary.

    Raises:
        ValueError: a status outside :data:`FINISHED_STATUSES`.
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"unknown run status {status!r}: use {', '.join(FINISHED_STATUSES)}")
    stored = dict(summary)
    if exit_code is not None:
        stored["exit_code"] = int(exit_code)
    return {"finished_at": datetime.now(UTC), "status": status, "summary": _json(stored)}


def abandon_orphaned_runs(engine: Engine) -> list[int]:
    """Mark locked runs still "running" as "abandoned"; call only while holding the run lock.

    Returns:
        The ids of the rows marked.
    """
    try:
        with begin_write(engine) as conn:
            ids = list(
                conn.execute(
                    sa.select(RUNS.c.id).where(RUNS.c.status == RUNNING, RUNS.c.locked.is_(True))
                ).scalars()
            )
            if ids:
                conn.execute(
                    sa.update(RUNS)
                    .where(RUNS.c.id.in_(ids))
                    .values(status=ABANDONED, finished_at=datetime.now(UTC))
                )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc
    return ids


@dataclass(frozen=True, slots=True)
class SearchRun:
    """One run_searches row: what a run did for one search."""

    search: str
    query: str
    datetype: str
    window_start: date
    window_end: date
    expected: int
    fetched: int
    created: int
    updated: int
    unchanged: int
    verified: bool
    watermark_before: date | None
    watermark_after: date | None
    failed_ids: tuple[str, ...]
    errors: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "search": self.search,
            "query": self.query,
            "datetype": self.datetype,
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "expected": self.expected,
            "fetched": self.fetched,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "verified": self.verified,
            "watermark_before": _iso(self.watermark_before),
            "watermark_after": _iso(self.watermark_after),
            "failed_ids": list(self.failed_ids),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class RunRow:
    """A harvest_runs row with its per-search detail (empty for commands without searches)."""

    id: int
    command: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    pid: int | None
    host: str | None
    summary: dict[str, Any]
    searches: tuple[SearchRun, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": _iso(self.finished_at),
            "pid": self.pid,
            "host": self.host,
            "summary": self.summary,
            "searches": [search.as_dict() for search in self.searches],
        }


def list_runs(engine: Engine, *, limit: int = 20, status: str | None = None) -> list[RunRow]:
    """The newest runs first, with their per-search rows.

    Raises:
        StorageError: the database could not be read.
    """
    query = sa.select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(RUNS.c.status == status)
    try:
        with begin_read(engine) as conn:
            runs = list(conn.execute(query))
            ids = [row.id for row in runs]
            detail: dict[int, list[SearchRun]] = {}
            if ids:
                rows = conn.execute(
                    sa.select(RUN_SEARCHES)
                    .where(RUN_SEARCHES.c.run_id.in_(ids))
                    .order_by(RUN_SEARCHES.c.run_id, RUN_SEARCHES.c.search)
                )
                for row in rows:
                    detail.setdefault(row.run_id, []).append(_search_run(row))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read runs from", engine) from exc
    return [
        RunRow(
            id=row.id,
            command=row.command,
            status=row.status,
            started_at=row.started_at,
            finished_at=row.finished_at,
            pid=row.pid,
            host=row.host,
            summary=_loads(row.summary, {}),
            searches=tuple(detail.get(row.id, ())),
        )
        for row in runs
    ]


def _search_run(row: Any) -> SearchRun:
    return SearchRun(
        search=row.search,
        query=row.query,
        datetype=row.datetype,
        window_start=row.window_start,
        window_end=row.window_end,
        expected=row.expected,
        fetched=row.fetched,
        created=row.created,
        updated=row.updated,
        unchanged=row.unchanged,
        verified=bool(row.verified),
        watermark_before=row.watermark_before,
        watermark_after=row.watermark_after,
        failed_ids=tuple(_loads(row.failed_ids, [])),
        errors=tuple(_loads(row.errors, [])),
    )


# ---------------------------------------------------------------------------------------------- watermarks


@dataclass(frozen=True, slots=True)
class SearchState:
    """A search as last recorded: its query, datetype and watermark (None: never verified)."""

    name: str
    query: str
    datetype: str
    watermark: date | None
    last_verified_run_id: int | None
    updated_at: datetime


def read_search_states(engine: Engine) -> dict[str, SearchState]:
    """Every recorded search by name.

    Raises:
        StorageError: the database could not be read.
    """
    try:
        with begin_read(engine) as conn:
            rows = list(conn.execute(sa.select(SEARCH_STATES)))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read search watermarks from", engine) from exc
    return {
        row.name: SearchState(
            row.name, row.query, row.datetype, row.watermark, row.last_verified_run_id, row.updated_at
        )
        for row in rows
    }


def record_search(engine: Engine, run_id: int, result: SearchRun) -> None:
    """Record what a run did for a search and, when its window was verified, move its watermark there.

    One transaction: the run_searches row and the watermark are written together, after the articles
    were stored (run_search stores each batch before it returns), so a watermark never covers data that
    is not in the database. An unverified window leaves the watermark (and the recorded query) as it was.

    Raises:
        StorageError: the database could not be written; nothing of it was.
    """
    now = datetime.now(UTC)
    row = result.as_dict()
    values: dict[str, Any] = {
        "run_id": run_id,
        **{key: row[key] for key in ("search", "query", "datetype", "expected", "fetched", "verified")},
        **{key: row[key] for key in ("created", "updated", "unchanged")},
        "window_start": result.window_start,
        "window_end": result.window_end,
        "watermark_before": result.watermark_before,
        "watermark_after": result.watermark_after,
        "failed_ids": _json(list(result.failed_ids)),
        "errors": _json(list(result.errors)),
        "finished_at": now,
    }
    try:
        with begin_write(engine) as conn:
            insert = dialect_insert(conn, RUN_SEARCHES).values(values)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[RUN_SEARCHES.c.run_id, RUN_SEARCHES.c.search],
                    set_={key: insert.excluded[key] for key in values if key not in {"run_id", "search"}},
                )
            )
            if result.verified:
                state = {
                    "name": result.search,
                    "query": result.query,
                    "datetype": result.datetype,
                    "watermark": result.watermark_after,
                    "last_verified_run_id": run_id,
                    "updated_at": now,
                }
                upsert = dialect_insert(conn, SEARCH_STATES).values(state)
                conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[SEARCH_STATES.c.name],
                        set_={key: upsert.excluded[key] for key in state if key != "name"},
                    )
                )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a search run in", engine) from exc


def forget_searches(engine: Engine, names: Sequence[str]) -> int:
    """Drop the watermarks of these searches (their next run starts from the first-run window).

    Raises:
        StorageError: the database could not be written.
    """
    try:
        with begin_write(engine) as conn:
            result = conn.execute(sa.delete(SEARCH_STATES).where(SEARCH_STATES.c.name.in_(list(names))))
            return int(result.rowcount or 0)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot forget search watermarks in", engine) from exc


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()

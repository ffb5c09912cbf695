"""The work queue of bulk files on PostgreSQL (table ``ingest_queue``, migration 0013), in plain SQL.

``harvest ingest FILE... --workers N`` and ``harvest ingest --join`` enqueue files (:func:`enqueue`);
``harvest worker`` processes on any number of hosts, all on one database, claim them one at a time and
apply them (:mod:`harvester.jobs.workers`). Plain SQL rather than a queue library: the rules that decide
which file may be taken next are NLM's ordering rules, written below as one query, and the claim must be
fenced against the very transactions that store the file's records, which only this code can do.

How a file is claimed, kept and lost:

- **Claim** (:meth:`WorkerSession.claim`): one transaction selects the first eligible row ``FOR UPDATE SKIP
  LOCKED`` (so two workers never take the same row, and neither waits for the other), marks it claimed
  with the worker's name, host, pid, a fresh ``claim_token`` and ``lease_until`` (the server's clock plus
  the lease), and commits.
- **Alive**: each worker holds, for its whole life, a session advisory lock on its own connection (key:
  this schema, its ``worker_key``). PostgreSQL releases it the moment that connection ends: a worker killed
  with SIGKILL (its kernel closes the socket) loses its claim at once, and any worker's next claim takes the
  file over. A host that dies without closing its sockets is found by TCP keepalives (set on the worker's
  sessions: about a minute) and, whatever happens, by the lease: a live worker renews it every few
  seconds (:meth:`WorkerSession.renew`), and a claim whose lease ran out is taken over too.
- **Fenced**: a worker may be taken over while it still runs (stopped for longer than its lease). Every
  write transaction of a worker (those that take the writers' lock, :func:`db.engine.begin_write`, or share
  it, :func:`db.engine.begin_keyed_write`) first checks that the claim is still its own
  (:meth:`WorkerSession.fenced`): a worker that lost its claim writes nothing more. A takeover that commits
  between that check and the commit of the old worker's transaction is harmless: the new worker writes
  nothing before it gets the writers' lock, or the key locks of the same PMIDs (the same file), so the old
  batch lands before any of its writes, and no later file starts before the new worker records this one. The
  file's record (db.bulk) and its ``applied`` mark commit in one transaction, and the mark needs the claim's
  token.
- **Order** (NLM's rules, the same as one process applying the files in order): baseline files are taken in
  any order, in parallel; an update file only once every earlier file of the sequence that is queued has
  been applied (or skipped, refused, failed: then the order check of :mod:`harvester.jobs.ingest` refuses
  it as a gap, as it always did); a file without NLM's number once every numbered file and every earlier
  unnumbered one is done. The order check against ``bulk_files`` still runs for every file, so a gap is
  refused even when the missing file was never queued.
- A file whose workers died :data:`MAX_ATTEMPTS` times is marked failed instead of being taken again.

Status values: :data:`WAITING`, :data:`CLAIMED`, then :data:`APPLIED`, :data:`SKIPPED` (the same bytes
were applied before), :data:`REFUSED`, :data:`FAILED`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import _WRITER_LOCK_KEY, storage_error
from db.models import metadata
from db.runs import note_shared_holder, release_shared_run_lock, try_shared_run_lock
from harvester.core.errors import StorageError, UsageError

log = logging.getLogger(__name__)

QUEUE = metadata.tables["ingest_queue"]
WAITING, CLAIMED = "waiting", "claimed"
APPLIED, SKIPPED, REFUSED, FAILED = "applied", "skipped", "refused", "failed"
PENDING = (WAITING, CLAIMED)
FINISHED = (APPLIED, SKIPPED, REFUSED, FAILED)
MAX_ATTEMPTS = 3  # claims of one file whose worker died: the next marks it failed
DEFAULT_LEASE = 60.0  # seconds; a live worker renews its claim well within it
_WORKER_LOCK = ":harvest-worker"  # with the schema name: first key of each worker's advisory lock
# The keepalives of a worker's sessions: a host that vanishes (power, network) is found dead by the server
# in about idle + interval x count = 60 s, which ends its sessions and so releases its locks; a session
# left idle inside a transaction (a stopped process) is ended after 5 minutes.
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
    "SET idle_in_transaction_session_timeout = '5min'",
)


class ClaimLostError(StorageError):
    """This worker's claim on a file was taken over (its lease ran out while it was stopped or cut off):
    it must write nothing more of the file; another worker applies it."""


@dataclass(frozen=True, slots=True)
class NewQueueFile:
    """A file to enqueue: its absolute path (every worker host must see it there) and what its name says."""

    path: str
    name: str
    kind: str
    release_year: int | None
    sequence: int | None
    size: int
    force: bool = False
    enrich: bool = False


@dataclass(frozen=True, slots=True)
class QueuedFile:
    """One row of ingest_queue."""

    id: int
    path: str
    name: str
    kind: str
    release_year: int | None
    sequence: int | None
    size: int
    force: bool
    enrich: bool
    status: str
    message: str | None
    enqueued_at: datetime
    worker: str | None
    host: str | None
    pid: int | None
    attempts: int
    claimed_at: datetime | None
    lease_until: datetime | None
    finished_at: datetime | None
    bytes_done: int
    records_done: int
    result: dict[str, Any] | None
    claim_token: str | None = None
    worker_key: int | None = None
    run_id: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> QueuedFile:
        values = {name: row[name] for name in cls.__slots__ if name in row}
        values["result"] = json.loads(row["result"]) if row["result"] else None
        values["force"], values["enrich"] = bool(row["force"]), bool(row["enrich"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Claim:
    """A file this worker claimed, and from whom it took it over (None: it was waiting)."""

    file: QueuedFile
    token: str
    took_over: str | None = None


def require_postgresql(engine: Engine, what: str) -> None:
    """The queue lives in PostgreSQL.

    Raises:
        UsageError: ``engine`` is another database.
    """
    if engine.dialect.name != "postgresql":
        raise postgresql_needed(what)


def postgresql_needed(what: str) -> UsageError:
    """The error for a queue command given another database than PostgreSQL."""
    return UsageError(
        f"{what} needs a PostgreSQL database: the work queue lives there, shared by every host "
        "(on SQLite, 'harvest ingest --workers N FILE...' parses in N processes and one process writes)"
    )


def enqueue(engine: Engine, files: Sequence[NewQueueFile], *, run_id: int | None) -> list[tuple[int, bool]]:
    """Put files in the queue; returns each one's row id, in the order given, and whether it was left
    as applied (True) rather than queued.

    A path already queued keeps its row: waiting or claimed, it stays as it is (this run waits for it
    too); applied or skipped with the same size on disk, it stays done and is not read again (a folder of
    update files can be named every day); refused, failed, or of another size, it is put back to waiting
    with the options given, and a worker checks it again (the same bytes are then skipped, as ever).

    Raises:
        StorageError: the database could not be written.
    """
    require_postgresql(engine, "the ingest queue")
    now = sa.func.now()
    done: list[tuple[int, bool]] = []
    try:
        with engine.begin() as conn:
            for new in files:
                values = {
                    "path": new.path,
                    "name": new.name,
                    "kind": new.kind,
                    "release_year": new.release_year,
                    "sequence": new.sequence,
                    "size": new.size,
                    "force": new.force,
                    "enrich": new.enrich,
                    "status": WAITING,
                    "enqueued_at": now,
                    "enqueued_run_id": run_id,
                }
                insert = postgresql.insert(QUEUE).values(values)
                again = {
                    **{key: insert.excluded[key] for key in values if key != "path"},
                    "message": None,
                    "result": None,
                    "attempts": 0,
                    "bytes_done": 0,
                    "records_done": 0,
                    "finished_at": None,
                }
                upsert = insert.on_conflict_do_update(
                    index_elements=[QUEUE.c.path],
                    set_=again,
                    where=sa.or_(
                        QUEUE.c.status.in_((REFUSED, FAILED)),
                        sa.and_(QUEUE.c.status.in_((APPLIED, SKIPPED)), QUEUE.c.size != new.size),
                    ),
                ).returning(QUEUE.c.id)
                row = conn.execute(upsert).first()
                if row is not None:
                    done.append((int(row[0]), False))
                    continue
                kept = conn.execute(
                    sa.select(QUEUE.c.id, QUEUE.c.status).where(QUEUE.c.path == new.path)
                ).one()
                done.append((int(kept.id), kept.status in (APPLIED, SKIPPED)))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot enqueue files in", engine) from exc
    return done


def queued_files(engine: Engine, ids: Sequence[int] | None = None) -> list[QueuedFile]:
    """The rows of the queue (of ``ids`` only, when given), in NLM's order.

    Raises:
        StorageError: the database could not be read.
    """
    q = QUEUE
    query = sa.select(q).order_by(q.c.release_year.nulls_last(), q.c.sequence.nulls_last(), q.c.id)
    if ids is not None:
        query = query.where(q.c.id.in_(list(ids)))
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the ingest queue of", engine) from exc
    return [QueuedFile.from_row(row) for row in rows]


def anything_pending(engine: Engine) -> bool:
    """Whether any file is waiting or claimed.

    Raises:
        StorageError: the database could not be read.
    """
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.select(QUEUE.c.id).where(QUEUE.c.status.in_(PENDING)).limit(1)).first()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the ingest queue of", engine) from exc
    return found is not None


def first_held_update(engine: Engine) -> tuple[str, QueuedFile] | None:
    """The first waiting update file that an earlier pending file holds back: its name, and that file.

    Raises:
        StorageError: the database could not be read.
    """
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(_FIRST_HELD)).mappings().first()
            if row is None:
                return None
            held = conn.execute(sa.select(QUEUE).where(QUEUE.c.id == row["blocker"])).mappings().one()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the ingest queue of", engine) from exc
    return str(row["name"]), QueuedFile.from_row(held)


def live_workers(engine: Engine) -> int:
    """How many worker sessions hold their advisory lock on this schema now.

    Raises:
        StorageError: the server could not be asked.
    """
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(_LIVE_WORKERS), {"worker_lock": _WORKER_LOCK}).scalar_one())
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the workers of", engine) from exc


def server_now(engine: Engine) -> datetime:
    """The database server's clock: leases and rates are read against it, whatever the host's says."""
    try:
        with engine.connect() as conn:
            value: datetime = conn.execute(sa.select(sa.func.now())).scalar_one()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the clock of", engine) from exc
    return value


# A row may be taken when it waits, or when its claim is dead: the lease ran out, or no session holds the
# advisory lock of the worker that claimed it. Among those, the first (NLM's order) that no earlier pending
# file holds back (module docstring, "Order"). One statement, evaluated by the server.
_CANDIDATES = """
SELECT q.*, EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = CAST(hashtext(current_schema() || :worker_lock) AS oid)
      AND l.objid = CAST(q.worker_key AS oid)) AS worker_alive
FROM ingest_queue q
WHERE (q.status = 'waiting'
       OR (q.status = 'claimed' AND q.worker_key IS DISTINCT FROM :mine
           AND (q.lease_until < now() OR NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid = CAST(hashtext(current_schema() || :worker_lock) AS oid)
                 AND l.objid = CAST(q.worker_key AS oid)))))
  AND NOT EXISTS (
      SELECT 1 FROM ingest_queue e
      WHERE e.id <> q.id AND e.status IN ('waiting', 'claimed')
        AND (
          (q.sequence IS NOT NULL AND e.sequence IS NOT NULL
           AND ((e.release_year, e.sequence) < (q.release_year, q.sequence)
                AND (q.kind = 'update' OR e.kind = 'update' OR e.release_year < q.release_year)
                OR (e.release_year = q.release_year AND e.sequence = q.sequence AND e.status = 'claimed')))
          OR (q.sequence IS NULL AND (e.sequence IS NOT NULL OR e.id < q.id))))
ORDER BY q.release_year NULLS LAST, q.sequence NULLS LAST, q.id
LIMIT 8
FOR UPDATE OF q SKIP LOCKED
"""

# Worker runs still "running" whose worker lock no session holds: their process was killed.
_ABANDON_DEAD_WORKERS = """
UPDATE harvest_runs SET status = 'abandoned', finished_at = now()
WHERE status = 'running' AND summary LIKE '{"worker_key": %'
  AND NOT EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = CAST(hashtext(current_schema() || :worker_lock) AS oid)
        AND l.objid = CAST(CAST(CAST(summary AS json) ->> 'worker_key' AS bigint) AS oid))
RETURNING id
"""

_FIRST_HELD = """
SELECT q.name AS name, e.id AS blocker
FROM ingest_queue q
JOIN ingest_queue e ON e.id <> q.id AND e.status IN ('waiting', 'claimed') AND e.sequence IS NOT NULL
     AND (e.release_year, e.sequence) < (q.release_year, q.sequence)
WHERE q.status = 'waiting' AND q.kind = 'update' AND q.sequence IS NOT NULL
ORDER BY q.release_year, q.sequence, e.release_year DESC, e.sequence DESC
LIMIT 1
"""

_LIVE_WORKERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = CAST(hashtext(current_schema() || :worker_lock) AS oid)
"""

_TAKE_WORKER_LOCK = "SELECT pg_try_advisory_lock(hashtext(current_schema() || :worker_lock), :key)"

_FENCE = "SELECT 1 FROM ingest_queue WHERE id = %s AND claim_token = %s AND status = 'claimed'"


class WorkerSession:
    """One worker's place in the queue: its own PostgreSQL session, which holds the worker's advisory
    lock for as long as the worker lives (and, while it applies a file, the shared run lock).

    Use as a context manager. Claims, renewals and results go through other connections of the engine,
    so that a renewal never waits behind this worker's own writes.
    """

    def __init__(self, engine: Engine, *, run_id: int | None, lease: float = DEFAULT_LEASE) -> None:
        require_postgresql(engine, "a worker of the ingest queue")
        if lease <= 0:
            raise ValueError("the lease must be positive")
        self.engine = engine
        self.run_id = run_id
        self.lease = lease
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.label = f"{self.host}:{self.pid}"
        self.key = 0
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # the session connection is used by one thread at a time
        self._listening = False
        self._noted = False
        self._fence_listener = self._fence_check  # one bound method, to remove what was listened with

    def __enter__(self) -> WorkerSession:
        if not sa.event.contains(self.engine, "connect", _session_settings):  # kept for the engine's life
            sa.event.listen(self.engine, "connect", _session_settings)
            self.engine.dispose()  # connections opened before get the settings on reconnecting
        sa.event.listen(self.engine, "after_cursor_execute", self._fence_listener)
        self._listening = True
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            self._unlisten()
            raise storage_error(exc, "cannot join the ingest queue of", self.engine) from exc
        self._conn = conn
        try:
            for _ in range(100):
                key = random.randint(1, 2**31 - 1)  # a name, not a secret
                taken = conn.execute(sa.text(_TAKE_WORKER_LOCK), {"worker_lock": _WORKER_LOCK, "key": key})
                if taken.scalar_one():
                    self.key = key
                    break
            else:  # pragma: no cover - 100 random keys all taken
                raise StorageError("could not find a free worker lock key")
        except DBAPIError as exc:
            self.close()
            raise storage_error(exc, "cannot join the ingest queue of", self.engine) from exc
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave: closing the session releases the worker's lock (and the run lock, if held)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never back to the pool with the locks held
                conn.close()
            except DBAPIError:
                pass
        self._unlisten()

    def _unlisten(self) -> None:
        if self._listening:
            sa.event.remove(self.engine, "after_cursor_execute", self._fence_listener)
            self._listening = False

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the worker session is not open")
        return self._conn

    # ---- the run lock, shared by the workers

    def take_run_lock(self) -> bool:
        """The shared run lock, taken without waiting (False: a nightly or an ingest holds it)."""
        with self._lock:
            return try_shared_run_lock(self.engine, self.conn)

    def note_run_lock(self) -> None:
        """Name this worker in run_locks while it applies a file (for a run refused meanwhile)."""
        note_shared_holder(self.engine, f"harvest worker {self.label}", self.label)
        self._noted = True

    def release_run_lock(self) -> None:
        with self._lock:
            release_shared_run_lock(self.engine, self.conn, self.label if self._noted else None)
            self._noted = False

    # ---- claims

    def claim(self) -> Claim | None:
        """The next file this worker may apply, claimed; None when none may be taken now.

        Raises:
            StorageError: the database could not be read or written.
        """
        try:
            with self.engine.begin() as conn:
                rows = (
                    conn.execute(sa.text(_CANDIDATES), {"mine": self.key, "worker_lock": _WORKER_LOCK})
                    .mappings()
                    .all()
                )
                for row in rows:
                    took_over = None
                    if row["status"] == CLAIMED:
                        why = "its lease ran out" if row["worker_alive"] else "its worker ended"
                        took_over = f"{row['worker']} ({why})"
                        if not row["worker_alive"]:
                            conn.execute(sa.text(_ABANDON_DEAD_WORKERS), {"worker_lock": _WORKER_LOCK})
                        if row["attempts"] >= MAX_ATTEMPTS:
                            message = (
                                f"its worker ended {row['attempts']} times while applying it (killed, out of "
                                "memory?); not applied: enqueue it again to retry"
                            )
                            conn.execute(
                                sa.update(QUEUE)
                                .where(QUEUE.c.id == row["id"])
                                .values(status=FAILED, message=message, finished_at=sa.func.now())
                            )
                            log.warning("%s: %s", row["name"], message)
                            continue
                    token = uuid.uuid4().hex
                    claimed = (
                        conn.execute(
                            sa.update(QUEUE)
                            .where(QUEUE.c.id == row["id"])
                            .values(
                                status=CLAIMED,
                                worker=self.label,
                                host=self.host,
                                pid=self.pid,
                                worker_key=self.key,
                                claim_token=token,
                                claimed_at=sa.func.now(),
                                lease_until=sa.func.now() + _seconds(self.lease),
                                attempts=QUEUE.c.attempts + 1,
                                bytes_done=0,
                                records_done=0,
                                message=f"taken over from {took_over}" if took_over else None,
                                run_id=self.run_id,
                            )
                            .returning(*QUEUE.c)
                        )
                        .mappings()
                        .one()
                    )
                    return Claim(QueuedFile.from_row(claimed), token, took_over)
        except DBAPIError as exc:
            raise storage_error(exc, "cannot claim a file in the ingest queue of", self.engine) from exc
        return None

    def renew(self, claim: Claim, *, bytes_done: int, records_done: int) -> bool:
        """Extend the claim's lease and record its progress; False when the claim is no longer this
        worker's (taken over).

        Raises:
            StorageError: the database could not be written.
        """
        query = (
            sa.update(QUEUE)
            .where(QUEUE.c.id == claim.file.id, QUEUE.c.claim_token == claim.token, QUEUE.c.status == CLAIMED)
            .values(
                lease_until=sa.func.now() + _seconds(self.lease),
                bytes_done=bytes_done,
                records_done=records_done,
            )
        )
        try:
            # One statement in autocommit: the server takes and releases the row lock within it, so a
            # worker stopped at any moment (SIGSTOP, a frozen VM) never leaves its row locked.
            with self.engine.connect() as conn:
                return bool(conn.execution_options(isolation_level="AUTOCOMMIT").execute(query).rowcount)
        except DBAPIError as exc:
            raise storage_error(exc, "cannot renew a claim in the ingest queue of", self.engine) from exc

    def mark_applied(self, conn: Connection, claim: Claim, *, records: int) -> None:
        """In the transaction that records the file (db.bulk.record_applied): mark its row applied.

        Raises:
            ClaimLostError: the claim was taken over; the transaction must roll back.
        """
        done = conn.execute(
            sa.update(QUEUE)
            .where(QUEUE.c.id == claim.file.id, QUEUE.c.claim_token == claim.token, QUEUE.c.status == CLAIMED)
            .values(
                status=APPLIED,
                finished_at=sa.func.now(),
                records_done=records,
                bytes_done=claim.file.size,
                message=None,
            )
        )
        if not done.rowcount:
            raise ClaimLostError(f"the claim on {claim.file.name} was taken over by another worker")

    def finish(self, claim: Claim, status: str, *, message: str | None, result: Mapping[str, Any]) -> bool:
        """Close a claim: ``status`` skipped, refused or failed with its reason, or (applied already) only
        the file's report. False when the claim was no longer this worker's.

        Raises:
            StorageError: the database could not be written.
        """
        if status not in FINISHED:
            raise ValueError(f"not a finished status: {status!r}")
        values: dict[str, Any] = {
            "result": json.dumps(result, default=str),
            "lease_until": None,
            "message": message,
        }
        if status != APPLIED:
            values.update(status=status, finished_at=sa.func.now())
        query = (
            sa.update(QUEUE)
            .where(
                QUEUE.c.id == claim.file.id,
                QUEUE.c.claim_token == claim.token,
                QUEUE.c.status == (APPLIED if status == APPLIED else CLAIMED),
            )
            .values(**values)
        )
        try:
            with self.engine.begin() as conn:
                return bool(conn.execute(query).rowcount)
        except DBAPIError as exc:
            raise storage_error(exc, "cannot record a result in the ingest queue of", self.engine) from exc

    def release(self, claim: Claim, reason: str) -> None:
        """Give a claim back (the worker stops before the file is applied): the file waits again, and
        the attempt does not count against it. Never raises: the lease and the lock free it anyway."""
        query = (
            sa.update(QUEUE)
            .where(QUEUE.c.id == claim.file.id, QUEUE.c.claim_token == claim.token, QUEUE.c.status == CLAIMED)
            .values(
                status=WAITING,
                message=reason,
                claim_token=None,
                lease_until=None,
                attempts=sa.func.greatest(QUEUE.c.attempts - 1, 0),
            )
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(query)
        except DBAPIError as exc:
            log.warning("could not give back %s: %s", claim.file.name, storage_error(exc, "in", self.engine))

    # ---- the fence

    @contextmanager
    def fenced(self, claim: Claim) -> Iterator[None]:
        """While the block runs, every write transaction of this process checks first that ``claim`` is
        still this worker's (module docstring, "Fenced"), and raises ClaimLostError if not."""
        self._fence = claim
        try:
            yield
        finally:
            self._fence = None

    _fence: Claim | None = None

    def _fence_check(
        self, conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        claim = self._fence
        if claim is None or "pg_advisory_xact_lock" not in statement:  # begin_write's, or keyed (shared)
            return
        if not isinstance(parameters, Mapping) or parameters.get("key") != _WRITER_LOCK_KEY:
            return
        check = cursor.connection.cursor()  # the same transaction, a cursor of its own
        try:
            check.execute(_FENCE, (claim.file.id, claim.token))
            mine = check.fetchone() is not None
        finally:
            check.close()
        if not mine:
            raise ClaimLostError(f"the claim on {claim.file.name} was taken over by another worker")


def _session_settings(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for statement in SESSION_SETTINGS:
            cursor.execute(statement)
    finally:
        cursor.close()
    dbapi_connection.commit()


def _seconds(value: float) -> sa.ColumnElement[Any]:
    return sa.func.make_interval(0, 0, 0, 0, 0, 0, value)


def mark_worker_run(engine: Engine, run_id: int, key: int) -> None:
    """Note in a ``harvest worker`` run's row which worker lock it holds, so that once the worker is
    gone (killed) its row can be marked abandoned (:func:`abandon_dead_worker_runs`).

    Raises:
        StorageError: the database could not be written.
    """
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE harvest_runs SET summary = :summary WHERE id = :id"),
                {"summary": json.dumps({"worker_key": key}), "id": run_id},
            )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc


def abandon_dead_worker_runs(engine: Engine) -> list[int]:
    """Mark "abandoned" the ``harvest worker`` runs left "running" by workers that were killed.

    Raises:
        StorageError: the database could not be written.
    """
    try:
        with engine.begin() as conn:
            found = conn.execute(sa.text(_ABANDON_DEAD_WORKERS), {"worker_lock": _WORKER_LOCK})
            return [int(i) for i in found.scalars()]
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record a run in", engine) from exc

"""Bulk files applied by several workers: the PostgreSQL work queue, and parallel reading on SQLite.

On PostgreSQL (:mod:`db.queue`):

- :func:`ingest_with_workers` is ``harvest ingest FILE|DIR... --workers N``: it enqueues the files, starts N
  ``harvest worker --until-done`` processes on this host, follows the files until each is applied,
  skipped, refused or failed (one progress bar for the whole set), stops the workers and reports the files
  as ``harvest ingest`` always did.
- :func:`run_worker` is one worker (``harvest worker`` on any host, ``harvest ingest --join``): it claims
  one file at a time, applies it exactly as :mod:`harvester.jobs.ingest` applies a file (checksum, order
  check, batches, deletions and the record in one transaction), renews its lease meanwhile, and records the
  outcome in the queue. Between files it holds nothing, so a nightly can take the run lock; while one
  holds it, the workers wait.

On SQLite (one writer): :func:`ingest_files_parallel` reads and parses up to N files at once, each in a
process of its own, and stores their batches from this one process, in NLM's order rules: baseline files
side by side, an update file only once every file before it is recorded.

:func:`queue_status` is ``harvest queue``: each file's state, who holds the claimed ones since when, the
rate of the last 15 minutes and the time left at that rate.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine

from db.queue import (
    APPLIED,
    CLAIMED,
    DEFAULT_LEASE,
    FAILED,
    FINISHED,
    REFUSED,
    SKIPPED,
    WAITING,
    Claim,
    ClaimLostError,
    NewQueueFile,
    QueuedFile,
    WorkerSession,
    abandon_dead_worker_runs,
    anything_pending,
    enqueue,
    first_held_update,
    live_workers,
    mark_worker_run,
    queued_files,
    server_now,
)
from db.runs import read_lock_holder
from harvester.core.errors import BulkFileError, FileOrderError, StorageError
from harvester.core.gcpolicy import fewer_collections
from harvester.core.settings import Settings
from harvester.jobs.bulk_reader import Reader
from harvester.jobs.ingest import (
    INGEST_BATCH,
    BulkFileName,
    FileApplier,
    FileOutcome,
    FileReport,
    IngestReport,
    check_paths,
    parse_file_name,
    sequence_order,
)
from harvester.jobs.services import Services

log = logging.getLogger(__name__)

MAX_WORKERS = 64
RATE_WINDOW = timedelta(minutes=15)  # harvest queue's rate: files finished in this window, and those claimed
FOLLOW_EVERY = 0.5  # seconds between looks at the queue while a --workers run waits for its files
STOP_WAIT = 60.0  # seconds a worker asked to stop gets before it is killed


class WorkerStopped(BaseException):  # a stop request, like KeyboardInterrupt, not an error
    """Raised in a worker's main thread when it is asked to stop (SIGTERM): the file it holds is given
    back to the queue, and it ends."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker works.

    Args:
        lease: seconds a claim lasts unless renewed (renewed every lease/3 seconds, at most every 2 s).
        until_done: end once no file is waiting or claimed (``harvest ingest --join``, the workers of
            ``--workers N``); else wait for files until stopped (``harvest worker``).
        batch_size: records per store transaction.
        after_batch: called with the file's name after each batch is stored (the tests hold a worker
            there; see the CLI's HARVEST_TEST_INGEST_HOLD).
    """

    lease: float = DEFAULT_LEASE
    until_done: bool = False
    batch_size: int = INGEST_BATCH
    after_batch: Callable[[str], None] | None = None

    @property
    def renew_every(self) -> float:
        return min(self.lease / 3, 2.0)

    @property
    def poll_every(self) -> float:
        return min(self.lease / 4, 1.0)


def queue_entries(
    paths: Sequence[Path], *, baseline: bool, force: bool, enrich: bool
) -> tuple[list[NewQueueFile], list[str]]:
    """What to enqueue for these files (in NLM's order), and each one's path as given."""
    names = sequence_order([parse_file_name(p, baseline=baseline) for p in paths])
    entries = [
        NewQueueFile(
            str(n.path.resolve()),
            n.name,
            n.kind,
            n.release_year,
            n.sequence,
            n.path.stat().st_size,
            force=force,
            enrich=enrich,
        )
        for n in names
    ]
    return entries, [str(n.path) for n in names]


# ---- one worker ----------------------------------------------------------------------------------


@fewer_collections()  # as ingest_files (harvester.core.gcpolicy)
def run_worker(
    engine: Engine,
    settings: Settings,
    *,
    run_id: int | None,
    options: WorkerOptions,
    services: Callable[[], Services] | None = None,
    own_run: bool = True,
    on_file: Callable[[FileReport], None] | None = None,
    stop: threading.Event | None = None,
) -> IngestReport:
    """Apply files of the queue, one at a time, until stopped (or, ``until_done``, until none is left).

    Args:
        engine: a migrated PostgreSQL database.
        settings: the run's settings (the merge policy).
        run_id: the harvest_runs row the files are applied under.
        options: lease, when to end, batch size.
        services: builds the remote clients for files enqueued with ``--enrich``.
        own_run: ``run_id`` is this worker's own run (``harvest worker``, ``--join``), marked abandoned
            if the worker is killed; else the run of the ``--workers`` command that started it.
        on_file: called with each file's report as it is finished.
        stop: set to end the worker between two files.

    Returns:
        The files this worker finished (applied, skipped, refused, failed), in the order it took them.

    Raises:
        StorageError: the database could not be reached or written (a file held is given back).
        WorkerStopped: asked to stop while applying a file (the file is given back).
    """
    stop = stop or threading.Event()
    report = IngestReport(enriched=False)
    built: list[Services] = []

    def remote() -> Services | None:
        if services is None:
            return None
        if not built:
            built.append(services())
        return built[0]

    with WorkerSession(engine, run_id=run_id, lease=options.lease) as session:
        if run_id is not None and own_run:
            mark_worker_run(engine, run_id, session.key)
        abandoned = abandon_dead_worker_runs(engine)
        if abandoned:
            log.warning("marked %d run(s) of killed workers as abandoned", len(abandoned))
        log.info("worker %s joined the ingest queue (lease %g s)", session.label, options.lease)
        said_busy = False
        said_held: str | None = None
        try:
            while not stop.is_set():
                if not session.take_run_lock():
                    if not said_busy:
                        holder = read_lock_holder(engine)
                        who = holder.describe() if holder is not None else "another run"
                        log.warning("waiting: %s holds the run lock", who)
                        said_busy = True
                    stop.wait(options.poll_every)
                    continue
                said_busy = False
                try:
                    claim = session.claim()
                    if claim is not None:
                        session.note_run_lock()
                        finished = _apply_claim(engine, session, claim, settings, options, remote)
                        if finished is not None:
                            report.enriched = report.enriched or claim.file.enrich
                            report.files.append(finished)
                            if on_file is not None:
                                on_file(finished)
                        continue
                finally:
                    session.release_run_lock()
                if options.until_done and not anything_pending(engine):
                    break
                held = first_held_update(engine)
                said_held = _say_held(held, said_held)
                stop.wait(options.poll_every)
        except WorkerStopped:  # asked to stop (SIGTERM): the file it held was given back
            log.info("worker %s stopped", session.label)
    return report


def _say_held(held: tuple[str, QueuedFile] | None, said: str | None) -> str | None:
    """Log (once while it lasts) which update file waits for which earlier one."""
    if held is None:
        return None
    name, blocker = held
    by = f" by {blocker.worker}" if blocker.status == CLAIMED and blocker.worker else ""
    line = f"waiting: {name} waits for {blocker.name} ({blocker.status}{by}) to be applied first"
    if line != said:
        log.info("%s", line)
    return line


class _Heartbeat:
    """Renews a claim's lease, with the file's progress, on a thread of its own."""

    def __init__(self, session: WorkerSession, claim: Claim, every: float) -> None:
        self.session = session
        self.claim = claim
        self.every = every
        self.bytes_done = 0
        self.records_done = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                mine = self.session.renew(
                    self.claim, bytes_done=self.bytes_done, records_done=self.records_done
                )
            except StorageError as exc:  # the lease may run out; the fence keeps the file safe
                log.warning("%s: could not renew the claim: %s", self.claim.file.name, exc)
                continue
            if not mine:
                self.lost = True
                return


def _apply_claim(
    engine: Engine,
    session: WorkerSession,
    claim: Claim,
    settings: Settings,
    options: WorkerOptions,
    services: Callable[[], Services | None],
) -> FileReport | None:
    """Apply one claimed file and record the outcome in the queue; None when the claim was lost."""
    queued = claim.file
    if claim.took_over:
        log.warning("%s: taken over from %s", queued.name, claim.took_over)
    name = BulkFileName(Path(queued.path), queued.name, queued.kind, queued.release_year, queued.sequence)
    report = FileReport(queued.path, queued.name, queued.kind, queued.release_year, queued.sequence)
    with _Heartbeat(session, claim, options.renew_every) as beat:

        def after_batch(file_report: FileReport, position: int) -> None:
            beat.bytes_done, beat.records_done = position, file_report.records
            if beat.lost:
                raise ClaimLostError(f"the claim on {queued.name} was taken over by another worker")
            if options.after_batch is not None:
                options.after_batch(queued.name)

        applier = FileApplier(
            name,
            report,
            engine=engine,
            services=services() if queued.enrich else None,
            policy=settings.merge_policy,
            run_id=session.run_id,
            progress=None,
            batch_size=options.batch_size,
            # A host runs about one worker per core: each reads its files in a thread, since a reading
            # process apiece would ask for twice the cores and add the sending of every record.
            read_in_process=False,
            after_batch=after_batch,
        )
        try:
            with session.fenced(claim):
                _apply(applier, claim, session, force=queued.force)
        except ClaimLostError as exc:
            log.warning(
                "%s: %s (this worker was stopped or cut off longer than its lease): it stops here and "
                "writes nothing more of the file",
                queued.name,
                exc,
            )
            return None
        except BaseException as exc:  # interrupted, stopped, or the database failed: give the file back
            why = "interrupted" if isinstance(exc, KeyboardInterrupt | WorkerStopped) else str(exc)
            session.release(claim, f"given back by {session.label}: {why}")
            raise
    status = {"applied": APPLIED, "skipped": SKIPPED, "refused": REFUSED, "failed": FAILED}[report.outcome]
    if not session.finish(claim, status, message=report.message, result=report.as_dict()):
        log.warning("%s: the claim was taken over before its outcome was recorded", queued.name)
    if report.outcome in {"refused", "failed"}:
        log.info("%s: %s", queued.name, report.message)
    return report


def _apply(applier: FileApplier, claim: Claim, session: WorkerSession, *, force: bool) -> None:
    """FileApplier.apply, with the queue row marked applied in the transaction that records the file."""
    report = applier.report
    try:
        applier.apply(
            force=force, also=lambda conn: session.mark_applied(conn, claim, records=report.records)
        )
    except FileOrderError as exc:
        report.outcome, report.message = "refused", exc.message
    except BulkFileError as exc:
        report.outcome, report.message = "failed", exc.message


# ---- N workers on this host (PostgreSQL) ---------------------------------------------------------


class _WorkerProcess:
    """A ``harvest worker`` process started by :func:`ingest_with_workers`; its stderr kept aside."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.errors: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
            env=dict(env),
        )

    def last_error(self) -> str:
        self.errors.seek(0)
        lines = [line.strip() for line in self.errors.read().decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        return last.removeprefix("harvest: error: ")[:300]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: a worker gives back the file it holds and ends

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.errors.close()


def ingest_with_workers(
    paths: Sequence[Path],
    *,
    engine: Engine,
    workers: int,
    worker_command: Sequence[str],
    worker_env: Mapping[str, str],
    force: bool = False,
    enrich: bool = False,
    baseline: bool = False,
    run_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Enqueue the files and apply them with ``workers`` worker processes on this host.

    Args:
        paths: checked local files (:func:`harvester.jobs.ingest.check_paths`).
        engine: a migrated PostgreSQL database.
        workers: how many worker processes to start.
        worker_command: the command line of one worker (``harvest -q worker --until-done ...``).
        worker_env: its environment (the database URL travels here, never on a command line).
        force, enrich, baseline: as :func:`harvester.jobs.ingest.ingest_files`, for these files.
        run_id: this run; the files are recorded under it.
        progress: called with the bytes of the set applied since the last call.

    Returns:
        The files' reports in NLM's order, as the workers recorded them (files other hosts' workers
        applied meanwhile included).

    Raises:
        StorageError: the database could not be read or written, or every worker ended while files were
            still to do (with the last worker's error).
    """
    entries, given = queue_entries(paths, baseline=baseline, force=force, enrich=enrich)
    queued = enqueue(engine, entries, run_id=run_id)
    ids = [row_id for row_id, _kept in queued]
    kept = {row_id for row_id, was_done in queued if was_done}
    wanted = list(dict.fromkeys(ids))
    given_path = dict(zip(ids, given, strict=True))
    total = sum(e.size for e in entries)
    started: list[_WorkerProcess] = []  # once a file is to do
    shown = 0
    try:
        while True:
            rows = queued_files(engine, wanted)
            done = sum(r.size if r.status in FINISHED else min(r.bytes_done, r.size) for r in rows)
            if progress is not None and done > shown:
                progress(min(done, total) - shown)
                shown = min(done, total)
            if all(r.status in FINISHED for r in rows):
                break
            if not started:
                started = [_WorkerProcess(worker_command, worker_env) for _ in range(workers)]
            elif all(w.process.poll() is not None for w in started):
                why = next((w.last_error() for w in started if w.process.returncode), "")
                left = sum(1 for r in rows if r.status not in FINISHED)
                raise StorageError(
                    f"every worker ended with {left} file(s) still to do"
                    + (f": {why}" if why else "")
                    + " (see 'harvest queue'; run the same command again to go on)"
                )
            time.sleep(FOLLOW_EVERY)
    finally:
        for worker in started:
            worker.stop()
        for worker in started:
            worker.wait()
    report = IngestReport(enriched=enrich)
    for row in queued_files(engine, wanted):
        file_report = _report_of(row, kept=row.id in kept)
        file_report.path = given_path.get(row.id, file_report.path)
        report.files.append(file_report)
    return report


def _report_of(row: QueuedFile, *, kept: bool = False) -> FileReport:
    """A queue row's file report: the one its worker recorded, else one made of the row; for a row left
    done by :func:`db.queue.enqueue` (``kept``), that it was skipped."""
    report = FileReport(row.path, row.name, row.kind, row.release_year, row.sequence)
    if kept:
        report.outcome = "skipped"
        when = f" on {row.finished_at:%Y-%m-%d %H:%M} UTC" if row.finished_at else ""
        report.message = f"already applied{when} (done in the work queue, not read again)"
        if row.result is not None:
            report.sha256, report.size = row.result.get("sha256"), row.result.get("size")
        return report
    if row.result is not None:
        return FileReport.from_dict(row.result)
    outcomes: dict[str, FileOutcome] = {
        APPLIED: "applied",
        SKIPPED: "skipped",
        REFUSED: "refused",
        FAILED: "failed",
    }
    report.outcome = outcomes.get(row.status, "failed")
    report.message = row.message or f"still {row.status}"
    return report


# ---- N reading processes, one writer (SQLite) ----------------------------------------------------


class _Order:
    """Which of the files may be opened now: the rules of :mod:`db.queue` ("Order"), for one process."""

    def __init__(self, names: Sequence[BulkFileName]) -> None:
        self.names = list(names)
        self.state = ["waiting"] * len(names)  # -> "open" -> "done"

    def next(self) -> int | None:
        for index, state in enumerate(self.state):
            if state == "waiting" and not self._held(index):
                return index
        return None

    def _held(self, index: int) -> bool:
        q = self.names[index]
        for other, state in enumerate(self.state):
            if other == index or state == "done":
                continue
            e = self.names[other]
            if q.key is None:
                if e.key is not None or other < index:
                    return True
            elif e.key is not None:
                if e.key < q.key and (
                    q.kind == "update" or e.kind == "update" or (e.release_year or 0) < (q.release_year or 0)
                ):
                    return True
                if e.key == q.key and state == "open":
                    return True
        return False


class _Pump:
    """Drives one file's reader on a thread of its own, handing each batch to the writer and waiting
    until it is stored."""

    def __init__(self, index: int, applier: FileApplier, reader: Reader, handoff: queue.Queue[Any]) -> None:
        self.index = index
        self.applier = applier
        self.reader = reader
        self.handoff = handoff
        self._go = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ingest-file-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batches = iter(self.reader.batches())
        try:
            for item in batches:
                self.handoff.put((self, "batch", item))
                self._go.wait()
                self._go.clear()
                if self._stop.is_set():
                    return
                self.reader.stored(item[0])
            self.handoff.put((self, "done", self.reader.deleted))
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
            self.handoff.put((self, "error", exc))
        finally:
            close = getattr(batches, "close", None)  # a generator: its own clean-up runs on this thread
            if close is not None:
                close()

    def stored(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        self._thread.join()


@fewer_collections()  # as ingest_files (harvester.core.gcpolicy)
def ingest_files_parallel(
    paths: Sequence[str | os.PathLike[str]],
    *,
    settings: Settings,
    services: Services | None,
    engine: Engine,
    workers: int,
    force: bool = False,
    enrich: bool = False,
    baseline: bool = False,
    run_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = INGEST_BATCH,
) -> IngestReport:
    """:func:`harvester.jobs.ingest.ingest_files` with up to ``workers`` files read and parsed at once,
    each in a process of its own, and every batch stored by this process (SQLite has one writer).

    The same files end up stored, deleted and recorded as ingest_files leaves them: baseline files side by
    side (their batches interleave), an update file opened only once every file before it in NLM's order is
    recorded, files without NLM's number last, one at a time. Arguments, result and errors as
    ingest_files.
    """
    if enrich and services is None:
        raise ValueError("enrich needs the remote services")
    if workers < 1 or batch_size < 1:
        raise ValueError("workers and batch_size must be at least 1")
    names = sequence_order([parse_file_name(p, baseline=baseline) for p in check_paths(paths)])
    reports = [FileReport(str(n.path), n.name, n.kind, n.release_year, n.sequence) for n in names]
    report = IngestReport(files=list(reports), enriched=enrich)
    order = _Order(names)
    handoff: queue.Queue[tuple[_Pump, str, Any]] = queue.Queue()
    pumps: dict[int, _Pump] = {}
    try:
        while True:
            while len(pumps) < workers and (index := order.next()) is not None:
                order.state[index] = "open"
                applier = FileApplier(
                    names[index],
                    reports[index],
                    engine=engine,
                    services=services if enrich else None,
                    policy=settings.merge_policy,
                    run_id=run_id,
                    progress=progress,
                    batch_size=batch_size,
                    read_in_process=True,
                )
                pump = _open(applier, force=force, index=index, handoff=handoff)
                if pump is None:
                    order.state[index] = "done"
                else:
                    pumps[index] = pump
            if not pumps:
                break
            pump, kind, value = handoff.get()
            if kind == "batch":
                batch, position = value
                pump.applier.store_batch(batch, position)
                pump.stored()
                continue
            del pumps[pump.index]
            pump.stop()
            _finish(pump.applier, kind, value)
            order.state[pump.index] = "done"
    finally:
        for pump in pumps.values():
            pump.stop()
            pump.applier.close()
    return report


def _open(applier: FileApplier, *, force: bool, index: int, handoff: queue.Queue[Any]) -> _Pump | None:
    """Steps 1 to 3 of a file, and its reader started; None when the file is done with already."""
    report = applier.report
    try:
        applier.open()
        if applier.check(force=force):
            return _Pump(index, applier, applier.reader(), handoff)
    except FileOrderError as exc:
        report.outcome, report.message = "refused", exc.message
    except BulkFileError as exc:
        report.outcome, report.message = "failed", exc.message
    except BaseException:
        applier.close()
        raise
    applier.close()
    if report.outcome in {"refused", "failed"}:
        log.info("%s: %s", report.name, report.message)
    return None


def _finish(applier: FileApplier, kind: str, value: Any) -> None:
    """A file whose reader ended: recorded when it was read whole, else failed as ingest_files fails it."""
    report = applier.report
    try:
        try:
            if kind == "error":
                with applier.reading():
                    raise value
            deleted: list[tuple[str, int]] = value
            applier.read_to_end()
        finally:
            applier.close()
        applier.record(deleted)
    except BulkFileError as exc:
        report.outcome, report.message = "failed", exc.message
        log.info("%s: %s", report.name, report.message)


# ---- what the queue holds ------------------------------------------------------------------------


@dataclass(slots=True)
class QueueStatus:
    """The queue as ``harvest queue`` shows it."""

    database: str
    now: datetime
    workers: int  # worker sessions alive
    files: list[QueuedFile] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def _recent(self) -> list[QueuedFile]:
        since = self.now - RATE_WINDOW
        return [
            f
            for f in self.files
            if f.claimed_at is not None
            and (f.status == CLAIMED or (f.status == APPLIED and f.finished_at and f.finished_at >= since))
        ]

    def rates(self) -> tuple[float | None, float | None]:
        """Records and bytes per second: the files applied in the last 15 minutes and the claimed ones,
        from the first of their claims to now (None: nothing to measure yet)."""
        recent = self._recent()
        if not recent:
            return None, None
        start = min(f.claimed_at for f in recent if f.claimed_at is not None)
        seconds = (self.now - start).total_seconds()
        if seconds <= 0:
            return None, None
        records = sum(f.records_done for f in recent)
        size = sum(f.size if f.status == APPLIED else min(f.bytes_done, f.size) for f in recent)
        return records / seconds, size / seconds

    def bytes_left(self) -> int:
        return sum(
            f.size if f.status == WAITING else max(0, f.size - f.bytes_done)
            for f in self.files
            if f.status in {WAITING, CLAIMED}
        )

    def seconds_left(self) -> float | None:
        _records, per_second = self.rates()
        left = self.bytes_left()
        if left == 0:
            return 0.0
        return left / per_second if per_second else None

    def held_by(self, row: QueuedFile) -> QueuedFile | None:
        """The earlier file a waiting update waits for (the first still pending before it)."""
        if row.status != WAITING or row.kind != "update" or row.sequence is None:
            return None
        key = (row.release_year or 0, row.sequence)
        for other in self.files:
            if other.id != row.id and other.status in {WAITING, CLAIMED} and other.sequence is not None:
                if (other.release_year or 0, other.sequence) < key:
                    return other
        return None

    def as_dict(self) -> dict[str, Any]:
        records, size = self.rates()
        left = self.seconds_left()
        return {
            "database": self.database,
            "now": self.now.isoformat(),
            "counts": {s: self.count(s) for s in (WAITING, CLAIMED, APPLIED, SKIPPED, REFUSED, FAILED)},
            "workers_alive": self.workers,
            "records_per_second": None if records is None else round(records, 1),
            "bytes_per_second": None if size is None else round(size),
            "bytes_left": self.bytes_left(),
            "seconds_left": None if left is None else round(left),
            "files": [_file_dict(f, self) for f in self.files],
        }

    def lines(self, *, waiting_shown: int = 10) -> list[str]:
        counts = ", ".join(
            f"{self.count(s)} {s}" for s in (APPLIED, SKIPPED, CLAIMED, WAITING, REFUSED, FAILED)
        )
        out = [f"ingest queue on {self.database}: {len(self.files)} files: {counts}; {self.workers} workers"]
        for f in self.files:
            if f.status == CLAIMED and f.claimed_at is not None:
                share = f" ({f.records_done:,} records, {_percent(f.bytes_done, f.size)})"
                lease = "" if f.lease_until is None or f.lease_until >= self.now else "; its lease ran out"
                out.append(f"claimed  {f.name} by {f.worker} since {_utc(f.claimed_at)}{share}{lease}")
        for f in self.files:
            if f.status in {FAILED, REFUSED}:
                at = f" at {_utc(f.finished_at)}" if f.finished_at else ""
                out.append(f"{f.status:<8} {f.name}{at}: {f.message}")
        waiting = [f for f in self.files if f.status == WAITING]
        for f in waiting[:waiting_shown]:
            held = self.held_by(f)
            why = f" (waits for {held.name}, {held.status})" if held is not None else ""
            out.append(f"waiting  {f.name}{why}")
        if len(waiting) > waiting_shown:
            out.append(f"waiting  ... and {len(waiting) - waiting_shown} more")
        records, size = self.rates()
        left = self.seconds_left()
        if records is None or size is None:
            rate = "rate: not measured yet (no file claimed or applied in the last 15 min)"
        else:
            rate = f"rate: {records:,.0f} records/s ({size / 1e6:.1f} MB/s) over the last 15 min"
        if self.bytes_left() == 0:
            rate += "; nothing left to apply"
        elif left is not None:
            rate += f"; about {_duration(left)} left for {self.bytes_left() / 1e6:,.0f} MB"
        out.append(rate)
        return out


def queue_status(engine: Engine, database: str) -> QueueStatus:
    """The queue now (killed workers' runs marked abandoned on the way).

    Raises:
        UsageError: the database is not PostgreSQL.
        StorageError: the database could not be read.
    """
    from db.queue import require_postgresql

    require_postgresql(engine, "harvest queue")
    abandon_dead_worker_runs(engine)
    return QueueStatus(database, server_now(engine), live_workers(engine), queued_files(engine))


def _file_dict(f: QueuedFile, status: QueueStatus) -> dict[str, Any]:
    held = status.held_by(f)
    return {
        "id": f.id,
        "path": f.path,
        "name": f.name,
        "kind": f.kind,
        "release_year": f.release_year,
        "sequence": f.sequence,
        "size": f.size,
        "status": f.status,
        "message": f.message,
        "worker": f.worker,
        "host": f.host,
        "pid": f.pid,
        "claimed_at": f.claimed_at.isoformat() if f.claimed_at else None,
        "lease_until": f.lease_until.isoformat() if f.lease_until else None,
        "finished_at": f.finished_at.isoformat() if f.finished_at else None,
        "attempts": f.attempts,
        "bytes_done": f.bytes_done,
        "records_done": f.records_done,
        "waits_for": held.name if held is not None else None,
    }


def _utc(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"

"""Reading a bulk file into batches for ``harvest ingest``: scan, skip what is stored, parse.

:class:`BatchReading` is the work itself: it streams a file through
:func:`harvester.sources.pubmed_xml.scan_pubmed`, asks the database which records are already stored byte for
byte (:func:`db.store.unchanged_pmids`), parses only the others, and hands over whole batches. It runs
beside the thread that stores, in one of two ways:

- :class:`ThreadReader`, a thread of the same process, for small files and in-memory databases;
- :class:`ProcessReader`, a process of its own (``spawn``), for large files: parsing is Python work
  that holds the GIL, and in a thread it takes turns with the storing thread's own Python work, so
  on a machine with two cores or more a separate process nearly halves the time of a large file.

Each record parsed is turned into the rows the store writes (:func:`db.pubmed_rows.store_rows`) by the
reader, so that this work, too, is done beside the storing; from a reading process the rows travel back
pickled, as plain tuples that unpickle in C (a record's objects would each be rebuilt through their
constructors, at five times the cost).

Either way: a batch is handed over only once it is complete, so a file that breaks part-way never yields
the records of its last, partial batch; at most one batch waits to be stored while the next is being
read; a PMID also in a batch handed over but not yet stored is never taken as unchanged (the database
does not show that batch yet, and the file's last word wins); the reader's error is raised where the
batches are consumed; and a consumer that stops early (an error, Ctrl-C) stops the reader at its next
record.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from sqlalchemy.engine import Engine

from db.engine import connect
from db.pubmed_rows import StoreRows, store_rows
from db.store import unchanged_pmids
from harvester.core.errors import BulkFileError, ParseError
from harvester.core.gcpolicy import BULK_THRESHOLDS
from harvester.core.records import DeletedCitation, RejectedRecord
from harvester.sources.pubmed_xml import PendingArticle, scan_pubmed

log = logging.getLogger(__name__)

PARSE_CHUNK = 250  # records read but not yet parsed (each holds its lxml tree): bounds the reader's memory
POLL = 0.05  # seconds between checks for a stop while waiting on a queue
_FRAME = struct.Struct("<Q")  # the length of each message the reading process writes
CHILD_EXIT_WAIT = 10.0  # seconds a stopped reading process gets to end before it is terminated

Lookup = Callable[[Mapping[str, tuple[int, str]]], tuple[set[str], set[str]]]


@dataclass(slots=True)
class Batch:
    """One batch of a file: the records to store (parsed, as their rows), and those already stored byte for
    byte."""

    articles: list[StoreRows]
    unchanged: list[str]  # PMIDs stored before with the same raw XML: not parsed, nothing to write
    conflicted: list[str]  # of those, the ones with a conflict still open
    records: int  # PubmedArticle/PubmedBookArticle records read, all of them
    pmids: frozenset[str]
    number: int = 0  # 1, 2, ... in file order
    rejected: list[RejectedRecord] = field(default_factory=list)  # records that do not parse, kept raw


class Reader(Protocol):
    """What :mod:`harvester.jobs.ingest` consumes: batches with the file position after each, and the
    DeleteCitation (PMID, version) pairs once the batches are exhausted."""

    deleted: list[tuple[str, int]]

    def batches(self) -> Iterator[tuple[Batch, int]]: ...

    def stored(self, batch: Batch) -> None: ...


class BatchReading:
    """Scan, look up and parse one file into batches, whichever thread or process runs it.

    Args:
        batch_size: records per batch.
        lookup: :func:`db.store.unchanged_pmids` bound to an engine.
        unsettled: the PMIDs of batches handed over and not yet stored.
        hand_over: takes each complete batch with the file position after it.
        hand_over_parsed: when given, takes the records parsed as soon as each chunk of PARSE_CHUNK is
            parsed, and the batch handed over holds none (the process reader sends them ahead in smaller
            messages, so that neither side holds a whole batch twice).
        stopped: true once the consumer has stopped; reading ends at the next record.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        lookup: Lookup,
        unsettled: Callable[[], frozenset[str]],
        hand_over: Callable[[Batch], None],
        stopped: Callable[[], bool],
        hand_over_parsed: Callable[[list[StoreRows]], None] | None = None,
    ) -> None:
        self._batch_size = batch_size
        self._lookup = lookup
        self._unsettled = unsettled
        self._hand_over = hand_over
        self._hand_over_parsed = hand_over_parsed
        self._stopped = stopped
        self._number = 0
        self.deleted: list[tuple[str, int]] = []

    def read(self, handle: BinaryIO) -> bool:
        """Read the whole file; False when stopped before its end."""
        building = self._new_batch()
        scanned: list[PendingArticle] = []
        for record in scan_pubmed(handle):
            if self._stopped():
                return False
            if isinstance(record, DeletedCitation):
                self.deleted.append((record.pmid, record.pmid_version))
                continue
            if isinstance(record, RejectedRecord):
                building.rejected.append(record)
                continue
            scanned.append(record)
            if len(scanned) >= min(PARSE_CHUNK, self._batch_size):
                self._add(building, scanned)
                scanned = []
                if building.records >= self._batch_size:
                    self._hand_over(building)
                    building = self._new_batch()
        if scanned:
            self._add(building, scanned)
        if building.records:
            self._hand_over(building)
        return True

    def _new_batch(self) -> Batch:
        self._number += 1
        return Batch([], [], [], 0, frozenset(), self._number)

    def _add(self, building: Batch, scanned: list[PendingArticle]) -> None:
        """Look the scanned records up, parse those not stored byte for byte, and add them to the batch.

        A PMID seen earlier in this batch, or in a batch handed over but not stored yet, is parsed whatever
        the database says: the database does not show those records yet, and the file's last word wins.
        """
        counts = Counter(r.pmid for r in scanned)
        unsettled = building.pmids | self._unsettled()
        hashes = [r.sha256 for r in scanned]  # a property that hashes each time: once a record
        single = {
            r.pmid: (r.pmid_version, digest)
            for r, digest in zip(scanned, hashes, strict=True)
            if counts[r.pmid] == 1 and r.pmid not in unsettled and r.problem is None
        }
        known, conflicted = self._lookup(single)
        parsed: list[StoreRows] = []
        for record, digest in zip(scanned, hashes, strict=True):
            if record.pmid in known:
                continue
            try:
                article = record.parse()
            except ParseError as exc:  # this record is bad; the others of the file are not
                building.rejected.append(RejectedRecord(record.pmid, exc.message, record.raw_xml))
                continue
            if article is not None:
                parsed.append(store_rows(article, digest))
        if self._hand_over_parsed is not None:
            self._hand_over_parsed(parsed)
        else:
            building.articles.extend(parsed)
        building.unchanged.extend(sorted(known))
        building.conflicted.extend(sorted(conflicted))
        building.records += len(scanned)
        building.pmids = building.pmids | frozenset(counts)


class ThreadReader:
    """Reads a file on a thread of this process, handing over batches through a queue of one."""

    def __init__(
        self, handle: BinaryIO, batch_size: int, engine: Engine, *, revive_deleted: bool = True
    ) -> None:
        self._handle = handle
        self._queue: queue.Queue[tuple[Batch, int] | BaseException | None] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._pending: dict[int, frozenset[str]] = {}  # batches handed over, not yet stored
        self._pending_lock = threading.Lock()
        self._reading = BatchReading(
            batch_size,
            lookup=lambda records: unchanged_pmids(engine, records, revive_deleted=revive_deleted),
            unsettled=self._unsettled,
            hand_over=self._hand_over,
            stopped=self._stop.is_set,
        )
        self.deleted = self._reading.deleted  # complete once batches() is exhausted

    def batches(self) -> Iterator[tuple[Batch, int]]:
        """Each batch with the file position after it; raises what the reader raised."""
        thread = threading.Thread(target=self._read, name="ingest-read", daemon=True)
        thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            while thread.is_alive():  # unblock a reader waiting to hand over a batch
                try:
                    self._queue.get(timeout=POLL)
                except queue.Empty:
                    pass
            thread.join()

    def stored(self, batch: Batch) -> None:
        """The consumer has stored ``batch``: its PMIDs may be looked up in the database again."""
        with self._pending_lock:
            del self._pending[batch.number]

    def _unsettled(self) -> frozenset[str]:
        with self._pending_lock:
            return frozenset().union(*self._pending.values())

    def _hand_over(self, batch: Batch) -> None:
        with self._pending_lock:
            self._pending[batch.number] = batch.pmids
        self._put((batch, self._handle.tell()))

    def _read(self) -> None:
        try:
            if self._reading.read(self._handle):
                self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            self._put(exc)

    def _put(self, item: tuple[Batch, int] | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue


class ProcessReader:
    """Reads a file in a process of its own (see the module docstring).

    The process is ``python -m harvester.jobs.bulk_reader``, talking pickles over its standard streams (so it
    works whatever the caller's main module is, and the database URL never appears on a command line):

    - on its stdin, first the job (path, identity of the open file, batch size, database URL, log level),
      then the number of each batch once it is stored; the end of stdin tells it to stop;
    - on its stdout, ``("parsed", [StoreRows, ...])`` for each chunk of records parsed, then
      ``("batch", Batch, position)`` once the batch they belong to is complete; ``("log", LogRecord)``
      for what it logs (handled here by this process's loggers, so it reaches the console and the log
      file like any other record); and finally ``("done", deleted)`` or ``("error", exception)``.

    A receiving thread here reads the messages as they come and hands over each complete batch through a
    queue of one; it waits while that queue is full, and the reading process, its pipe then full, waits
    too. So this process holds at most the batch it stores, one waiting, and one being received; the
    reading process at most PARSE_CHUNK records in each of three places (being parsed, waiting to be
    written, being written). The process opens the file by its path and checks that it is the very file
    the caller opened (same device and inode); it reads the database
    through its own connection. Its stderr goes to a temporary file, shown only if it ends unexpectedly.
    """

    def __init__(
        self,
        handle: BinaryIO,
        path: Path,
        batch_size: int,
        engine: Engine,
        *,
        revive_deleted: bool = True,
    ) -> None:
        stat = os.fstat(handle.fileno())
        self._job = {
            "path": str(path),
            "identity": (stat.st_dev, stat.st_ino),
            "batch_size": batch_size,
            "revive_deleted": revive_deleted,
            "url": engine.url.render_as_string(hide_password=False),
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        self._path = path
        self._process: subprocess.Popen[bytes] | None = None
        self.deleted: list[tuple[str, int]] = []

    def batches(self) -> Iterator[tuple[Batch, int]]:
        """Each batch with the file position after it; raises what the reading process raised."""
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "harvester.jobs.bulk_reader"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=_child_environment(),
            )
            self._process = process
            received: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
            stop = threading.Event()
            receiver = threading.Thread(
                target=self._receive_all,
                args=(process, errors, received, stop),
                name="ingest-receive",
                daemon=True,
            )
            finished = False
            try:
                self._send(self._job)
                receiver.start()
                while True:
                    kind, value = received.get()
                    if kind == "batch":
                        yield value
                        continue
                    finished = True
                    if kind == "done":
                        self.deleted = value
                        return
                    raise value
            finally:
                stop.set()
                self._process = None
                _end(process, finished=finished)
                if receiver.is_alive():
                    receiver.join()
                if process.stdout is not None:
                    process.stdout.close()

    def _receive_all(
        self,
        process: subprocess.Popen[bytes],
        errors: IO[bytes],
        received: queue.Queue[tuple[str, Any]],
        stop: threading.Event,
    ) -> None:
        """The receiving thread: reads the process's messages as they come, so that it never waits to
        write while this process stores; hands over each complete batch through a queue of one."""

        def put(item: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    received.put(item, timeout=POLL)
                    return True
                except queue.Full:
                    continue
            return False

        assert process.stdout is not None
        parsed: list[StoreRows] = []  # of the batch to come
        try:
            while True:
                try:
                    message = _receive(process.stdout)
                except (EOFError, pickle.UnpicklingError, OSError, ValueError):
                    if not stop.is_set():
                        put(("error", self._ended(process, errors)))
                    return
                kind = message[0]
                if kind == "log":
                    logging.getLogger(message[1].name).handle(message[1])
                elif kind == "parsed":
                    parsed.extend(message[1])
                elif kind == "batch":
                    batch: Batch = message[1]
                    batch.articles, parsed = parsed, []
                    if not put(("batch", (batch, message[2]))):
                        return
                else:
                    put((kind, message[1]))  # "done" or "error"
                    return
        except BaseException as exc:  # noqa: BLE001 - the consumer must hear of it, not wait forever
            put(("error", exc))

    def stored(self, batch: Batch) -> None:
        """The consumer has stored ``batch``: the reading process may look its PMIDs up again."""
        self._send(batch.number)

    def _send(self, item: object) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        try:
            pickle.dump(item, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except OSError:  # it has ended: reading its stdout says how
            pass

    def _ended(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> BulkFileError:
        """The error for a reading process that ended without saying why."""
        code = process.wait()
        errors.seek(0)
        lines = [line.strip() for line in errors.read().decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        said = f": {last[:300]}" if last else ""
        return BulkFileError(
            f"the process reading {self._path} ended unexpectedly (exit code {code}){said}; "
            "not recorded as applied",
            path=str(self._path),
        )


def _child_environment() -> dict[str, str]:
    """This environment, with the directory holding this package first on the import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _receive(stream: IO[bytes]) -> tuple[Any, ...]:
    """One message of the reading process: its length, then its pickle."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("the reading process ended")
    (size,) = _FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the reading process ended mid-message")
    message: tuple[Any, ...] = pickle.loads(data)  # our own child's pickles
    return message


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def can_read_in_process(engine: Engine) -> bool:
    """Whether a reading process can reach this engine's database: not one that lives in memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return True
    database = url.database or ""
    return database not in {"", ":memory:"} and "mode=memory" not in database


def _end(process: subprocess.Popen[bytes], *, finished: bool) -> None:
    """Wait for the reading process. One that has said its last word ends by itself; one stopped early
    may be blocked writing a batch nobody will read, and is killed (it only ever read)."""
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:
            pass
    if not finished:
        process.kill()
    try:
        process.wait(timeout=CHILD_EXIT_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _child_main() -> int:
    """``python -m harvester.jobs.bulk_reader``: read one file as :class:`ProcessReader` asks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the storing process's to handle
    gc.set_threshold(*BULK_THRESHOLDS)  # this process does nothing but read the file (see gcpolicy)
    stop = threading.Event()
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the channel
    sys.stdout = sys.stderr
    # A thread of its own writes to the pipe (without the GIL), so reading goes on while the storing
    # process is busy: one message is written, one waits, and the next batch is read meanwhile.
    outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=1)

    def write() -> None:
        broken = False
        while (data := outbox.get()) is not None:
            if broken:
                continue  # keep taking messages, so that nothing waits to hand one over
            try:
                channel.write(_FRAME.pack(len(data)))
                channel.write(data)
            except OSError:  # the storing process has gone
                broken = True
                stop.set()

    def send(message: tuple[Any, ...]) -> None:
        outbox.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            try:
                send(("log", record))
            except OSError:
                pass

    inbox = sys.stdin.buffer
    job = pickle.load(inbox)
    root = logging.getLogger()
    root.handlers[:] = [Forward()]
    root.setLevel(job["log_level"])
    stored: queue.SimpleQueue[int] = queue.SimpleQueue()

    def listen() -> None:
        try:
            while True:
                stored.put(pickle.load(inbox))
        except (EOFError, OSError, pickle.UnpicklingError):
            stop.set()

    threading.Thread(target=listen, name="ingest-read-acks", daemon=True).start()
    writer = threading.Thread(target=write, name="ingest-read-write", daemon=True)
    writer.start()
    pending: dict[int, frozenset[str]] = {}

    def unsettled() -> frozenset[str]:
        while True:
            try:
                del pending[stored.get_nowait()]
            except queue.Empty:
                return frozenset().union(*pending.values())

    path: str = job["path"]
    engine: Engine | None = None
    try:
        with open(path, "rb") as handle:

            def hand_over(batch: Batch) -> None:
                pending[batch.number] = batch.pmids
                send(("batch", batch, handle.tell()))

            def hand_over_parsed(articles: list[StoreRows]) -> None:
                if articles:
                    send(("parsed", articles))

            stat = os.fstat(handle.fileno())
            if (stat.st_dev, stat.st_ino) != tuple(job["identity"]):
                raise BulkFileError(
                    f"{path} was replaced while it was being read; not recorded as applied", path=path
                )
            engine = connect(job["url"])
            revive: bool = job["revive_deleted"]
            reading = BatchReading(
                job["batch_size"],
                lookup=lambda records: unchanged_pmids(engine, records, revive_deleted=revive),
                unsettled=unsettled,
                hand_over=hand_over,
                stopped=stop.is_set,
                hand_over_parsed=hand_over_parsed,
            )
            if reading.read(handle):
                send(("done", reading.deleted))
    except BaseException as exc:  # noqa: BLE001 - sent to the storing process, which raises it
        send(("error", _portable(exc)))
    finally:
        if engine is not None:
            engine.dispose()
    outbox.put(None)
    writer.join()
    return 0


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling unchanged in kind and message, else a stand-in."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to pickle means: send a stand-in
        copy = None
    if isinstance(copy, BaseException) and type(copy) is type(exc) and str(copy) == str(exc):
        return copy
    return RuntimeError(f"{type(exc).__name__} in the process reading the file: {exc}")


if __name__ == "__main__":
    # Run from the module under its own name, so that what is pickled names harvester.jobs.bulk_reader.Batch,
    # not __main__.Batch.
    from harvester.jobs import bulk_reader

    sys.exit(bulk_reader._child_main())

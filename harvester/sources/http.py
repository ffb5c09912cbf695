"""HTTP for every remote service: pacing, the one retry policy, classification of failures, redaction.

Each attempt of :meth:`ServiceClient.request` waits for the service's :class:`RateLimiter` (which may share
its pacing with other processes through a :class:`SendLog`: the per-user file here, or db.budget's row in
a PostgreSQL database, handed down by the jobs layer; and its requests in flight through
:class:`SendSlots`), sends,
and turns what came back into the error tree of :mod:`harvester.core.errors`: connection failures, 429 and
5xx become :class:`~harvester.core.errors.TransientUpstreamError` subclasses, which :class:`RetryPolicy`
retries (and nothing else); other 4xx become :class:`~harvester.core.errors.RejectedRequestError`. When
every attempt failed the caller gets :class:`~harvester.core.errors.FetchFailedError`.

Secrets (an NCBI API key, a Crossref token) never leave this module in a message or a URL: messages
are built from :func:`public_url` and passed through :func:`redact`, and exceptions raised by
``requests`` (whose text holds the full URL) are never chained or quoted unredacted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from harvester.core.errors import (
    FetchFailedError,
    HarvestError,
    RateLimitedError,
    RejectedRequestError,
    ServiceUnavailableError,
    TransientUpstreamError,
    UnreachableError,
    UpstreamError,
)
from harvester.core.redaction import REDACTED, redact
from harvester.core.settings import HttpSettings

T = TypeVar("T")

log = logging.getLogger(__name__)

WINDOW_MARGIN = 0.1  # seconds added to the sliding one-second window, for clock skew and network jitter
_EPSILON = 1e-9  # waits shorter than this are rounding noise, not a reason to sleep again
_CHUNK = 64 * 1024
_SNIPPET_CHARS = 200
_URL_CHARS_IN_MESSAGES = 300
# A host whose name does not resolve, or that refused the connection before it ever answered, is asked
# this many times in all (the first included), this far apart: an absent network or a mistyped base URL
# fails in seconds, not after the whole back-off meant for a busy service.
UNREACHABLE_ATTEMPTS = 2
UNREACHABLE_WAIT = 1.0  # seconds


# --------------------------------------------------------------------------------------------- redaction


def public_url(url: str, params: Mapping[str, str] | None, drop: Collection[str]) -> str:
    """``url`` with ``params`` appended and every parameter named in ``drop`` removed (case-insensitive).

    The result is for messages, logs and storage, not for sending: commas stay readable.
    """
    dropped = {name.lower() for name in drop}
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in dropped]
    pairs += [(k, v) for k, v in (params or {}).items() if k.lower() not in dropped]
    query = urlencode(pairs, safe=",:/[]")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


_URL_IN_TEXT = re.compile(r"\bhttps?://([^/\s?#'\"]+)[^\s'\"]*")


def _without_urls(text: str) -> str:
    """``text`` with each URL replaced by its host: short, and no query string (which may hold a key)."""
    return _URL_IN_TEXT.sub(lambda m: m.group(1).rpartition("@")[2], text)


def name_some(ids: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``ids`` and how many more: a batch named in a one-line message."""
    head = " ".join(ids[:shown])
    return head if len(ids) <= shown else f"{head} and {len(ids) - shown} more"


def host_of(url: str) -> str:
    """The host of ``url``, with its port when one is given, without any user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port is not None else host


def connection_failure(error: BaseException) -> tuple[str, bool]:
    """What a connection failure raised by requests was, in plain words, and whether it can heal.

    Walks the chain of causes (requests wraps urllib3, which wraps the socket error). Returns
    ``("name does not resolve", False)`` or ``("connection refused", False)`` for the two failures that
    waiting will not soon mend, else a short reason (timed out, connection reset, ...) and True.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    found: list[BaseException] = []
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [e for e in linked if isinstance(e, BaseException)]
    names = {type(e).__name__ for e in found}
    if any(isinstance(e, socket.gaierror) for e in found) or "NameResolutionError" in names:
        if any(isinstance(e, socket.gaierror) and e.errno == socket.EAI_AGAIN for e in found):
            return "name resolution failed for now", True
        return "name does not resolve", False
    if any(isinstance(e, ConnectionRefusedError) for e in found):
        return "connection refused", False
    if any(isinstance(e, requests.Timeout | TimeoutError | socket.timeout) for e in found):
        return "timed out", True
    if any(isinstance(e, ConnectionResetError) for e in found):
        return "connection reset", True
    if any(isinstance(e, requests.exceptions.ChunkedEncodingError) for e in found):
        return "connection broken mid-answer", True
    return "connection failed", True


_ERROR_ELEMENT = re.compile(rb"<ERROR>(.*?)</ERROR>", re.DOTALL | re.IGNORECASE)
_TITLE_ELEMENT = re.compile(rb"<title[^>]*>(.*?)</title>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def describe_body(body: bytes, limit: int = _SNIPPET_CHARS) -> str:
    """A one-line, human-readable gist of an error body: a JSON ``message``/``error``, an ``<ERROR>``,
    an HTML ``<title>``, or else the text with tags removed. Not redacted: callers redact."""
    head = body[:16_384]
    text: str | None = None
    if head.lstrip().startswith(b"{") and len(body) <= 65_536:
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):  # not JSON, or nested past the reader (harvester/core/bounds.py)
            data = None
        if isinstance(data, dict):
            for key in ("message", "error", "errmsg"):
                value = data.get(key)
                if isinstance(value, str) and value:
                    # The ID Converter URL-encodes its messages ("ID%20type%20...").
                    text = unquote(value)
                    break
    if text is None:
        match = _ERROR_ELEMENT.search(head) or _TITLE_ELEMENT.search(head)
        raw = match.group(1) if match else head
        text = _TAG.sub(" ", raw.decode("utf-8", "replace"))
    return _shorten(_one_line(text), limit)


# ------------------------------------------------------------------------------------------ rate limiting


SHARED_SENDS_KEPT = 16  # send times a shared log keeps: more than any limiter's burst (ceil(10))
# Reserved times further ahead than this are taken for the relic of a wall clock stepped back. A queue of
# processes reserves at most one slot each, so a real reservation is never this far ahead (180 processes
# at 3 requests/s); a clock stepped back by less costs one wait of that step, once.
SHARED_SENDS_HORIZON = 60.0
SLOT_POLL = 0.05  # seconds between looks for an in-flight slot that other processes hold


class SendLogUnavailableError(Exception):
    """A shared send log or slot set that cannot be used now, and has said so itself (once a process).

    ``retry_after``: seconds after which the limiter tries it again; None: never again in this process.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SendLog(Protocol):
    """The latest send times to one service, shared by every process that paces with the same log.

    Two kinds: :class:`SharedSends`, a file that the processes of one user on one machine share, and
    ``db.budget``'s row in a PostgreSQL table that every process on every host using that database shares.
    A :class:`RateLimiter` holds :meth:`locked` for a moment, to reserve its slot, never across a request.
    """

    @property
    def where(self) -> str:
        """What the log is, for messages (a path; "the request budget in the database")."""
        ...

    def locked(self) -> AbstractContextManager[list[float]]:
        """The recorded times, oldest first, under the log's lock; what the caller leaves is kept.

        Raises:
            OSError: a file that cannot be used (the limiter warns and stops using it).
            SendLogUnavailableError: the log cannot be used now (it has warned itself).
        """
        ...

    def now(self) -> float | None:
        """Inside :meth:`locked`: the log's own clock (a database server's), or None for the limiter's."""
        ...


class SendSlots(Protocol):
    """At most so many requests in flight to one service at a time, counted across processes."""

    @property
    def where(self) -> str:
        """What the slots are, for messages."""
        ...

    def held(self) -> AbstractContextManager[None]:
        """Wait for a free slot and hold it while the body runs (the request, answer included).

        Raises:
            OSError, SendLogUnavailableError: as :meth:`SendLog.locked`.
        """
        ...


class SharedSends:
    """The latest send times to one service, in a file that every harvest process of a user shares.

    A cron run and a `harvest pmid` typed meanwhile go out from the same machine, and NCBI counts their
    requests together (by IP address, or by API key). Each :class:`RateLimiter` given the same file
    reads the times under an exclusive ``flock``, reserves its own slot after them, writes it back and
    only then sleeps until the slot: the processes queue one after another as threads do in one process.

    The file holds wall-clock times (``time.time``, comparable across processes), one per line, and
    nothing else. Times more than :data:`SHARED_SENDS_HORIZON` ahead are dropped (a clock stepped back).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def now(self) -> float | None:
        return None  # the limiter's wall clock

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        """The recorded times, under the file's lock; what the caller leaves in the list is written back.

        Raises:
            OSError: the file cannot be created, locked, read or written.
        """
        import fcntl  # POSIX only; shared_sends() falls back to one process's pacing without it

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+", encoding="ascii") as handle:
                times: list[float] = []
                for line in handle.read(4096).split():
                    try:
                        value = float(line)
                    except ValueError:
                        continue  # a torn or foreign line: ignore it, the next write replaces it
                    if math.isfinite(value):
                        times.append(value)
                times.sort()
                yield times
                handle.seek(0)
                handle.truncate()
                handle.write("".join(f"{t:.6f}\n" for t in times[-SHARED_SENDS_KEPT:]))
                handle.flush()
        finally:
            os.close(fd)  # releases the lock


class SlotFiles:
    """At most ``count`` requests in flight from the processes of one user: one ``flock`` per request.

    Slot ``i`` is the file ``<stem>.slot<i>``; a request holds an exclusive lock on one of them while it
    is out. The kernel releases the lock when the process dies, so a killed process never keeps a slot.
    """

    def __init__(self, stem: Path, count: int, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self.stem = stem
        self.count = count
        self._sleep = sleep

    @property
    def where(self) -> str:
        return f"{self.stem}.slot*"

    def path(self, slot: int) -> Path:
        return self.stem.with_name(f"{self.stem.name}.slot{slot}")

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a free slot; when all are taken, look again every :data:`SLOT_POLL` seconds.

        Raises:
            OSError: a slot file cannot be created or locked.
        """
        import fcntl

        first = random.randrange(self.count)  # spread the processes over the slots
        while True:
            for offset in range(self.count):
                fd = os.open(self.path((first + offset) % self.count), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                except BaseException:
                    os.close(fd)
                    raise
                try:
                    yield
                finally:
                    os.close(fd)  # releases the lock
                return
            self._sleep(SLOT_POLL)


def _rate_file_stem(directory: Path | None, service: str, identity: str) -> Path | None:
    """``directory/<service>-<digest>`` once the directory is usable, else None (warned)."""
    if directory is None:
        return None
    try:
        import fcntl  # noqa: F401 - only to learn whether flock exists here
    except ImportError:
        log.warning("%s: no flock on this platform; this process paces only its own requests", service)
        return None
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        log.warning(
            "%s: cannot use %s to pace requests with other harvest processes (%s); this process paces"
            " only its own",
            service,
            directory,
            exc.strerror or type(exc).__name__,
        )
        return None
    return directory / f"{service}-{digest}"


def shared_sends(directory: Path | None, service: str, identity: str) -> SharedSends | None:
    """The send log of ``service`` for this user and ``identity`` (a base URL and whether a key is used,
    never the key itself), or None when ``directory`` is None or cannot be used (then each process paces
    only itself, as logged once)."""
    stem = _rate_file_stem(directory, service, identity)
    if stem is None:
        return None
    sends = SharedSends(stem.with_name(f"{stem.name}.sends"))
    try:
        with sends.locked():  # created, locked and written once now, so a problem shows at the start
            pass
    except OSError as exc:
        log.warning(
            "%s: cannot use %s to pace requests with other harvest processes (%s); this process paces"
            " only its own",
            service,
            sends.path,
            exc.strerror or type(exc).__name__,
        )
        return None
    return sends


def slot_files(directory: Path | None, service: str, identity: str, count: int) -> SlotFiles | None:
    """The in-flight slots of ``service`` for this user and ``identity`` (as :func:`shared_sends`), or
    None when ``directory`` is None or cannot be used (then only this process's own requests count)."""
    stem = _rate_file_stem(directory, service, identity)
    if stem is None:
        return None
    slots = SlotFiles(stem, count)
    try:
        with slots.held():  # created and locked once now, so a problem shows at the start
            pass
    except OSError as exc:
        log.warning(
            "%s: cannot use %s to count requests in flight with other harvest processes (%s); this"
            " process counts only its own",
            service,
            slots.where,
            exc.strerror or type(exc).__name__,
        )
        return None
    return slots


_Shared = TypeVar("_Shared", SendLog, SendSlots)


class _SharedFailed(Exception):
    """A shared log or slot set failed while in use; carried out of nested locks to the limiter."""

    def __init__(self, item: object, error: OSError | SendLogUnavailableError) -> None:
        super().__init__(str(error))
        self.item = item
        self.error = error


@contextmanager
def _guarded(item: object, enter: Callable[[], AbstractContextManager[T]]) -> Iterator[T]:
    """``enter()``'s context, with its own failures (on entry or exit) tagged with ``item``."""
    try:
        with enter() as value:
            yield value
    except (OSError, SendLogUnavailableError) as exc:
        raise _SharedFailed(item, exc) from None


class _SharedSet(Generic[_Shared]):
    """Shared logs or slot sets in lock order; one that fails is left out, for a while or for good."""

    def __init__(self, items: Sequence[_Shared], clock: Callable[[], float], doing: str) -> None:
        self._items: list[_Shared] = list(items)
        self._clock = clock
        self._doing = doing  # "pace requests", "count requests in flight": for the warning
        self._paused_until: dict[int, float] = {}

    def usable(self) -> list[_Shared]:
        now = self._clock()
        return [item for item in self._items if self._paused_until.get(id(item), -math.inf) <= now]

    def drop(self, failed: _SharedFailed) -> None:
        item, error = failed.item, failed.error
        if isinstance(error, SendLogUnavailableError) and error.retry_after is not None:
            self._paused_until[id(item)] = self._clock() + error.retry_after
            return
        if isinstance(error, OSError):
            log.warning(
                "cannot use %s to %s with other harvest processes (%s); this process paces only its own"
                " from now on",
                getattr(item, "where", "?"),
                self._doing,
                error.strerror or type(error).__name__,
            )
        self._items = [i for i in self._items if i is not item]


def _as_list(value: _Shared | Sequence[_Shared] | None) -> list[_Shared]:
    if value is None:
        return []
    if isinstance(value, Sequence):
        return list(value)
    return [value]


class RateLimiter:
    """At most ``rate`` requests per second, shared by every thread that holds the instance, and with
    ``shared``, by every process that uses the same send logs; with ``concurrency``, at most that many
    requests in flight at a time (across processes too, with ``shared_slots``).

    Two rules hold together: consecutive sends are at least ``1/rate`` apart, and no sliding window
    of one second (plus :data:`WINDOW_MARGIN`) ever holds more than ``ceil(rate)`` sends, so the
    service's own per-second count never sees ``rate + 1``. Create one per service (NCBI's
    E-utilities and ID Converter share one) and pass that instance to each client.

    ``shared`` is a :class:`SendLog` or several, in lock order (the per-user file first, then the
    database's budget): a slot is reserved in every one of them at once, so it suits each. A log that
    fails is left out (the file for good, with a warning; the database's budget for as long as it says)
    and the limiter goes on with the rest, and its own record of this process's sends.

    ``clock`` and ``sleep`` are injectable for tests; a fake ``sleep`` must advance the fake ``clock``.
    With ``shared`` the clock must be comparable across processes (the default is then ``time.time``).
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shared: SendLog | Sequence[SendLog] | None = None,
        concurrency: int | None = None,
        shared_slots: SendSlots | Sequence[SendSlots] | None = None,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        logs = _as_list(shared)
        self.rate = rate
        self.ceiling = rate  # limit_to() never paces faster than this
        self.concurrency = concurrency
        self._interval = 1.0 / rate
        self._burst = math.ceil(rate)
        self._window = 1.0 + WINDOW_MARGIN
        self._clock = clock if clock is not None else (time.monotonic if not logs else time.time)
        self._sleep = sleep
        self._logs: _SharedSet[SendLog] = _SharedSet(logs, self._clock, "pace requests")
        self._slots: _SharedSet[SendSlots] = _SharedSet(
            _as_list(shared_slots), self._clock, "count requests in flight"
        )
        self._in_flight = threading.BoundedSemaphore(concurrency) if concurrency is not None else None
        self._sent: deque[float] = deque(maxlen=self._burst)
        # Held while sleeping: callers queue behind the one that is waiting for its slot.
        self._lock = threading.Lock()

    def _wait_needed(self, now: float, sent: Sequence[float] | None = None) -> float:
        """How long to wait from ``now`` given the send times (oldest first; this process's by default)."""
        sent = self._sent if sent is None else sent
        if not sent:
            return 0.0
        wait = sent[-1] + self._interval - now
        if len(sent) >= self._burst:
            wait = max(wait, sent[-self._burst] + self._window - now)
        return wait

    def limit_to(self, rate: float | None) -> float:
        """Pace at ``rate`` requests per second from now on, capped at the rate given at construction.

        For services that advertise their limit in response headers: a lower advertised rate slows
        the limiter down, a higher one never speeds it past that ceiling; None restores the ceiling.
        Returns the rate now in force.
        """
        target = self.ceiling if rate is None else min(rate, self.ceiling)
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        with self._lock:
            if target != self.rate:
                self.rate = target
                self._interval = 1.0 / target
                self._burst = math.ceil(target)
                self._sent = deque(self._sent, maxlen=self._burst)
            return self.rate

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Hold an in-flight slot (with ``concurrency``), then wait for a send slot: send and read inside."""
        if self._in_flight is None:
            self.acquire()
            yield
            return
        with self._in_flight, self._shared_slot():
            self.acquire()
            yield

    @contextmanager
    def _shared_slot(self) -> Iterator[None]:
        """A slot in every usable shared slot set, in order; a set that fails is left out as a log is."""
        while True:
            stack = ExitStack()
            try:
                for item in self._slots.usable():
                    stack.enter_context(_guarded(item, item.held))
            except _SharedFailed as failed:
                self._release(stack)
                self._slots.drop(failed)
                continue
            break
        try:
            yield
        finally:
            self._release(stack)

    def _release(self, stack: ExitStack) -> None:
        try:
            stack.close()
        except _SharedFailed as failed:  # the request went out; the set is left out from now on
            self._slots.drop(failed)

    def acquire(self) -> None:
        """Block until one more request may be sent, and count it as sent."""
        with self._lock:
            while True:
                logs = self._logs.usable()
                if not logs:
                    break
                try:
                    wait = self._reserve(logs)
                except _SharedFailed as failed:
                    self._logs.drop(failed)
                    continue  # the others, or this process alone
                if wait > _EPSILON:
                    self._sleep(wait)
                return
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= _EPSILON:
                    self._sent.append(now)
                    return
                self._sleep(wait)

    def _reserve(self, logs: Sequence[SendLog]) -> float:
        """Reserve the next slot that suits every log, under all their locks; return the wait until it."""
        with ExitStack() as stack:
            held = [(item, stack.enter_context(_guarded(item, item.locked))) for item in logs]
            now = self._clock()
            wait = max(0.0, self._wait_needed(now))
            bases: list[float] = []
            for item, sent in held:
                own = item.now()
                base = now if own is None else own
                sent[:] = [t for t in sent if t <= base + SHARED_SENDS_HORIZON]  # a clock stepped back
                wait = max(wait, self._wait_needed(base, sent))
                bases.append(base)
            for (_item, sent), base in zip(held, bases, strict=True):
                sent.append(base + wait)
        self._sent.append(now + wait)
        return wait


# ---------------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class Response:
    """A complete, size-checked answer from a service."""

    url: str  # the request URL with secret parameters removed: safe to log and store
    status: int
    headers: Mapping[str, str]  # case-insensitive, read-only
    body: bytes
    fetched_at: datetime  # timezone-aware UTC


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# ------------------------------------------------------------------------------------------ retry policy


def short_account(error: BaseException | None, source: str) -> str:
    """``source: host: reason`` for an upstream error that names them, else its message without URLs,
    on one line: what a retry warning or a final error says."""
    host = getattr(error, "host", None)
    reason = getattr(error, "reason", None)
    if host and reason:
        text = f"{source}: {host}: {reason}"
    else:
        text = _without_urls(_one_line(str(error)))
        if not text.startswith(f"{source}:"):
            text = f"{source}: {text}"
    return text


class RetryPolicy:
    """The one retry policy: retries :class:`TransientUpstreamError` and nothing else.

    Stops after ``http.max_attempts`` attempts (the first included) and re-raises the last error.
    Waits what a 429's Retry-After asked for (capped at ``backoff_max``); otherwise an exponential
    back-off, ``backoff_initial * 2**(n-1)`` plus up to 25 % jitter, capped at ``backoff_max``.
    A host that cannot be reached (:class:`~harvester.core.errors.UnreachableError`: its name does not
    resolve, or it refused the connection before it ever answered) is asked :data:`UNREACHABLE_ATTEMPTS`
    times in all, :data:`UNREACHABLE_WAIT` apart. Each retry is logged at WARNING as one short line: the
    source, the host, the reason and the attempt number (never the URL).
    """

    def __init__(self, http: HttpSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_attempts = http.max_attempts
        self._initial = http.backoff_initial
        self._max = http.backoff_max
        self._retrying = Retrying(
            retry=retry_if_exception_type(TransientUpstreamError),
            stop=self._stop,
            wait=self._wait,
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based) when the service named none."""
        base = self._initial * 2.0 ** min(attempt - 1, 64)
        return min(self._max, base * (1.0 + 0.25 * random.random()))

    def attempts_for(self, error: BaseException | None) -> int:
        """How many attempts in all a request gets whose latest attempt failed with ``error``."""
        if isinstance(error, UnreachableError):
            return min(self.max_attempts, UNREACHABLE_ATTEMPTS)
        return self.max_attempts

    def _stop(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        return state.attempt_number >= self.attempts_for(error)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, UnreachableError):
            return min(UNREACHABLE_WAIT, self._max)
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self._max)
        return self.backoff(state.attempt_number)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        source = getattr(error, "source", "?")
        # An unreachable host gets one brief retry, and the final error names host and reason: a
        # warning for that retry too would only say the same thing twice.
        log.log(
            logging.INFO if isinstance(error, UnreachableError) else logging.WARNING,
            "%s; attempt %d of %d failed, retrying in %.1f s",
            short_account(error, source),
            state.attempt_number,
            self.attempts_for(error),
            wait,
            extra={"source": source, "attempt": state.attempt_number},
        )

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it succeeds, raises a non-transient error, or the attempts run out."""
        # A copy per call: Retrying keeps per-run state, and clients are shared between threads.
        return self._retrying.copy()(fn)


# ---------------------------------------------------------------------------------------- service client


class ServiceClient:
    """One remote service: base URL, default parameters, headers, limiter, retry policy and secrets.

    The session is injected (tests pass one that ``responses`` intercepts). ``default_params``
    (tool, email, api_key) go on every request: in the query string of a GET, in the form body of a
    POST. ``secret_params`` name parameters that must never appear in a URL we log or store, and
    ``secrets`` are values removed from every message.

    ``transient_4xx`` may mark some 4xx answers as transient (NCBI relays some backend failures as
    HTTP 400); such an answer is retried as :class:`ServiceUnavailableError`. ``observe`` is called
    with every complete response, whatever its status, before it is classified (Crossref advertises
    its rate limit in the headers of every answer, 429s included).
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        name: str,
        base_url: str,
        limiter: RateLimiter,
        policy: RetryPolicy,
        timeout: float,
        default_params: Mapping[str, str] = MappingProxyType({}),
        secret_params: Collection[str] = (),
        headers: Mapping[str, str] = MappingProxyType({}),
        secrets: Sequence[str] = (),
        max_response_bytes: int = 200_000_000,
        transient_4xx: Callable[[Response], bool] | None = None,
        observe: Callable[[Response], None] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self._session = session
        self._limiter = limiter
        self._policy = policy
        self._timeout = timeout
        self._default_params = dict(default_params)
        self._secret_params = frozenset(secret_params)
        self._headers = dict(headers)
        self._secrets = tuple(s for s in secrets if s)
        self._max_bytes = max_response_bytes
        self._transient_4xx = transient_4xx
        self._observe = observe
        self.host = host_of(base_url)
        # Set once the host has answered anything: a refused connection after that is a restart (it
        # heals) rather than a wrong port or an absent network (UnreachableError).
        self._answered = False

    # -- URLs and messages

    def _url(self, path: str) -> str:
        if not path:
            return self.base_url
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def url_length(self, path: str, params: Mapping[str, str]) -> int:
        """Length of the GET URL that would be sent for ``params`` (default parameters included)."""
        query = {**params, **{k: v for k, v in self._default_params.items() if k not in params}}
        return len(self._url(path)) + 1 + len(urlencode(query))

    def redact(self, text: str) -> str:
        """``text`` with this service's secrets and secret parameter values removed."""
        text = redact(text, self._secrets)
        for name in self._secret_params:
            text = re.sub(rf"({re.escape(name)}=)[^&\s'\")]*", rf"\g<1>{REDACTED}", text)
        return text

    def _where(self, url: str) -> str:
        return _shorten(url, _URL_CHARS_IN_MESSAGES)

    def _gist(self, error: Exception) -> str:
        """A short, one-line, redacted account of an exception raised by requests."""
        return _shorten(self.redact(_one_line(str(error))), _SNIPPET_CHARS)

    # -- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        check: Callable[[Response], None] | None = None,
        accept: Collection[int] = (),
    ) -> Response:
        """Send one request, retrying transient failures under the retry policy.

        Args:
            method: "GET" or "POST".
            path: appended to the base URL ("efetch.fcgi"; "" for the base URL itself).
            params: query parameters (the default parameters join them on a GET).
            data: form fields for a POST (the default parameters join them).
            check: inspects a 2xx response and raises BadResponseError (retried) for an error body.
            accept: non-2xx statuses returned as a Response instead of raised (e.g. 404 for a
                lookup whose miss is an answer, not a failure); ``check`` does not see them.

        Raises:
            RejectedRequestError: a 4xx answer; not retried.
            UpstreamError: the body is larger than the limit; not retried.
            FetchFailedError: every attempt failed transiently (``ids`` is empty here; the
                service-specific clients name the ids). The last error is its ``__cause__``.
        """
        method = method.upper()
        query = dict(params or {})
        form: dict[str, str] | None = None
        if method == "GET" or data is None:
            for key, value in self._default_params.items():
                query.setdefault(key, value)
        else:
            form = dict(data)
            for key, value in self._default_params.items():
                form.setdefault(key, value)
        url = self._url(path)
        shown = self.redact(public_url(url, query, self._secret_params))

        def attempt() -> Response:
            return self._attempt(method, url, query, form, shown, check, accept)

        try:
            return self._policy.call(attempt)
        except TransientUpstreamError as last:
            attempts = self._policy.attempts_for(last)
            if isinstance(last, UnreachableError):
                message = f"{self.name}: cannot reach {last.host}: {last.reason} ({attempts} attempts)"
            else:
                message = f"{self.name}: gave up after {attempts} attempts: {short_account(last, self.name)}"
            raise FetchFailedError(
                message, source=self.name, ids=(), url=shown, host=last.host, reason=last.reason
            ) from last

    def _attempt(
        self,
        method: str,
        url: str,
        query: Mapping[str, str],
        form: Mapping[str, str] | None,
        shown: str,
        check: Callable[[Response], None] | None,
        accept: Collection[int] = (),
    ) -> Response:
        where = self._where(shown)
        started = time.monotonic()
        failure: UpstreamError | None = None
        try:
            with self._limiter.sending():
                started = time.monotonic()
                with self._session.request(
                    method,
                    url,
                    params=query or None,
                    data=form,
                    headers=self._headers,
                    timeout=self._timeout,
                    stream=True,
                    allow_redirects=False,  # a redirect would carry api_key to wherever it points
                ) as raw:
                    status = raw.status_code
                    headers: Mapping[str, str] = MappingProxyType(CaseInsensitiveDict(raw.headers))
                    limit = self._max_bytes if 200 <= status < 300 else min(self._max_bytes, 65_536)
                    body = self._read_body(raw, limit, shown, truncate=not 200 <= status < 300)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            reason, heals = connection_failure(exc)
            kind = ServiceUnavailableError if heals or self._answered else UnreachableError
            log.debug("%s: %s for %s: %s", self.name, type(exc).__name__, where, self._gist(exc))
            failure = kind(
                f"{self.name}: cannot reach {self.host}: {reason}",
                source=self.name,
                url=shown,
                host=self.host,
                reason=reason,
            )
        except requests.exceptions.ContentDecodingError:
            failure = ServiceUnavailableError(
                f"{self.name}: the body from {where} could not be decoded",
                source=self.name,
                url=shown,
                host=self.host,
                reason="the body could not be decoded",
            )
        except requests.RequestException as exc:
            failure = UpstreamError(
                f"{self.name}: {type(exc).__name__} for {where}: {self._gist(exc)}",
                source=self.name,
                url=shown,
            )
        if failure is not None:
            # Raised outside the except block: requests' exception (whose text holds the full URL,
            # api_key included) is neither the cause nor the context of ours.
            raise failure

        self._answered = True
        response = Response(
            url=shown, status=status, headers=headers, body=body, fetched_at=datetime.now(UTC)
        )
        log.debug(
            "%s %s %s -> %d (%d bytes, %.2f s)",
            self.name,
            method,
            where,
            status,
            len(body),
            time.monotonic() - started,
        )
        if self._observe is not None:
            self._observe(response)
        if status in accept:
            return response
        self._classify(response, where)
        if check is not None:
            try:
                check(response)
            except HarvestError as exc:
                # Checks quote the body (an error page may echo the request URL) without knowing
                # the secrets: scrub their messages here, where the secrets are known.
                self._scrub(exc)
                raise
        return response

    def _scrub(self, error: HarvestError) -> None:
        error.message = self.redact(error.message)
        error.args = (error.message,)
        if isinstance(error, UpstreamError) and error.url is not None:
            error.url = self.redact(error.url)

    def _read_body(self, raw: requests.Response, limit: int, shown: str, *, truncate: bool) -> bytes:
        """Read at most ``limit`` bytes; a longer body is refused (or, for error answers, cut)."""
        where = self._where(shown)
        declared = raw.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise UpstreamError(
                f"{self.name}: response of {int(declared)} bytes from {where} refused (limit {limit} bytes)",
                source=self.name,
                url=shown,
            )
        chunks: list[bytes] = []
        total = 0
        for chunk in raw.iter_content(chunk_size=_CHUNK):
            total += len(chunk)
            if total > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (total - limit)])
                    break
                raise UpstreamError(
                    f"{self.name}: response from {where} is larger than {limit} bytes; refused",
                    source=self.name,
                    url=shown,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _classify(self, response: Response, where: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        detail = self.redact(describe_body(response.body))
        suffix = f": {detail}" if detail else ""
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimitedError(
                f"{self.name}: HTTP 429 (rate limited) from {where}{suffix}",
                source=self.name,
                url=response.url,
                retry_after=retry_after,
                host=self.host,
                reason=f"HTTP 429 (rate limited){suffix}",
            )
        if status >= 500:
            raise ServiceUnavailableError(
                f"{self.name}: HTTP {status} from {where}{suffix}",
                source=self.name,
                url=response.url,
                host=self.host,
                reason=f"HTTP {status}{suffix}",
            )
        if 400 <= status < 500 and self._transient_4xx is not None and self._transient_4xx(response):
            raise ServiceUnavailableError(
                f"{self.name}: HTTP {status} relaying a backend failure from {where}{suffix}",
                source=self.name,
                url=response.url,
                host=self.host,
                reason=f"HTTP {status} relaying a backend failure{suffix}",
            )
        if 300 <= status < 400:
            location = self.redact(response.headers.get("Location", "?"))
            raise RejectedRequestError(
                f"{self.name}: HTTP {status} redirect to {_shorten(location, 200)} from {where} "
                "(redirects are not followed; fix the base URL)",
                source=self.name,
                url=response.url,
            )
        raise RejectedRequestError(
            f"{self.name}: HTTP {status} from {where}{suffix}", source=self.name, url=response.url
        )


__all__ = [
    "REDACTED",
    "RateLimiter",
    "Response",
    "RetryPolicy",
    "SendLog",
    "SendLogUnavailableError",
    "SendSlots",
    "ServiceClient",
    "SharedSends",
    "SlotFiles",
    "connection_failure",
    "describe_body",
    "host_of",
    "name_some",
    "parse_retry_after",
    "public_url",
    "redact",
    "shared_sends",
    "short_account",
    "slot_files",
]

"""The one exception tree of pubmed-harvester, shaped by what callers do with each branch.

::

    HarvestError                      root: every error the tool raises on purpose
    ├── UsageError                    the caller's input is wrong; fix it and run again   (exit 2)
    │   ├── InvalidIdentifierError    a malformed PMID, PMCID or DOI
    │   └── ConfigError               a missing, unreadable or invalid config file or setting
    ├── UpstreamError                 a remote service misbehaved (source, url and ids attached)
    │   ├── TransientUpstreamError    worth retrying: the one retry policy retries exactly these
    │   │   ├── RateLimitedError      HTTP 429 (retry_after seconds when the service sent one)
    │   │   ├── ServiceUnavailableError  5xx, connection refused or reset, timeout
    │   │   │   └── UnreachableError  name does not resolve, or refused before any answer: retried briefly
    │   │   └── BadResponseError      an error inside HTTP 200: <ERROR>, an HTML page, truncated XML
    │   ├── RejectedRequestError      a 4xx that retrying cannot fix
    │   ├── FetchFailedError          retries exhausted; names the ids that could not be fetched (exit 4)
    │   └── IncompleteSearchError     a search slice's fetched ids differ from the count esearch reported
    ├── ParseError                    a payload that is not what its source promised
    ├── BulkFileError                 a baseline/update file is unreadable, truncated, not PubMed XML,
    │   └── FileOrderError            or (this one) applied out of order; nothing of it is recorded (exit 2)
    ├── BusyError                     another run holds the lock; this one did nothing       (exit 7)
    ├── OutputError                   stdout or an export file could not be written          (exit 9)
    └── StorageError                  the database cannot be opened, migrated or written    (exit 5)
        └── SchemaVersionError        the database was migrated by a newer version of this tool

The CLI maps the tree to exit codes (:class:`ExitCode`); nothing below the CLI prints or exits. A record
that is bad on its own (a ParseError of one record) is not raised past its parser: it comes as a
:class:`harvester.core.records.RejectedRecord`, and the run ends in exit 8 (ExitCode.REJECTED).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes"). Cron should alert on anything but 0."""

    OK = 0
    INTERNAL = 1  # a bug: please report it with the log file
    USAGE = 2  # bad arguments, malformed ids, broken config
    NOT_FOUND = 3  # every id that exists was stored, but some ids are unknown upstream
    UPSTREAM = 4  # some ids could not be fetched after all retries (the others were stored)
    STORAGE = 5  # the database could not be opened, migrated or written
    CONFLICT = 6  # an incoming record names two stored articles it would merge into one (not a shared DOI)
    BUSY = 7  # another run holds the lock (harvest nightly, harvest ingest): nothing was done
    REJECTED = 8  # applied, but some records could not be parsed or stored: named, and kept raw
    OUTPUT_FAILED = 9  # standard output or an export file could not be written (disk full, I/O error)
    OUTPUT_CLOSED = 141  # the reader of standard output closed it (`harvest export | head`), as SIGPIPE would
    INTERRUPTED = 130  # Ctrl-C / SIGINT


class HarvestError(Exception):
    """Root of every error raised on purpose by pubmed-harvester."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(HarvestError):
    """The caller's input is wrong; running again unchanged will fail again."""

    exit_code = ExitCode.USAGE


class InvalidIdentifierError(UsageError):
    """A malformed PMID, PMCID or DOI."""

    def __init__(self, kind: str, value: str, reason: str) -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"invalid {kind} {shown!r}: {reason}")
        self.kind = kind
        self.value = value
        self.reason = reason


class ConfigError(UsageError):
    """A missing, unreadable or invalid configuration file or setting."""


class UpstreamError(HarvestError):
    """A remote service failed; carries the service name and a URL with secrets removed."""

    exit_code = ExitCode.UPSTREAM

    def __init__(
        self,
        message: str,
        *,
        source: str,
        url: str | None = None,
        host: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.url = url
        self.host = host  # the host (and port) asked, for short messages: never the URL, which may hold a key
        self.reason = reason  # what went wrong in a few plain words ("HTTP 503", "name does not resolve")


class TransientUpstreamError(UpstreamError):
    """A failure that may go away: the retry policy retries these and only these."""


class RateLimitedError(TransientUpstreamError):
    """HTTP 429; ``retry_after`` holds the seconds the service asked us to wait, if it said."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        url: str | None = None,
        retry_after: float | None = None,
        host: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, source=source, url=url, host=host, reason=reason)
        self.retry_after = retry_after


class ServiceUnavailableError(TransientUpstreamError):
    """HTTP 5xx, a refused or reset connection, or a timeout."""


class UnreachableError(ServiceUnavailableError):
    """The host cannot be reached and waiting will not change that soon: its name does not resolve, or
    it refused the connection before this process ever got an answer from it. Retried briefly."""


class BadResponseError(TransientUpstreamError):
    """HTTP 200 whose body is an error: an <ERROR> element, an HTML page, or XML that does not parse."""


class RejectedRequestError(UpstreamError):
    """A 4xx answer that no retry can fix (bad parameters, unknown id type)."""


class FetchFailedError(UpstreamError):
    """All retries were spent; ``ids`` are the identifiers whose records could not be fetched."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        ids: Sequence[str],
        url: str | None = None,
        host: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, source=source, url=url, host=host, reason=reason)
        self.ids = tuple(ids)


class IncompleteSearchError(UpstreamError):
    """A search slice came back incomplete: the ids fetched differ from the Count esearch reported."""

    def __init__(
        self, message: str, *, source: str, expected: int, fetched: int, url: str | None = None
    ) -> None:
        super().__init__(message, source=source, url=url)
        self.expected = expected
        self.fetched = fetched


class ParseError(HarvestError):
    """A payload is not what its source promised (not PubMed XML, not JSON, wrong root element)."""

    exit_code = ExitCode.UPSTREAM


class StorageError(HarvestError):
    """The database cannot be opened, migrated or written. Nothing was half-written."""

    exit_code = ExitCode.STORAGE


class SchemaVersionError(StorageError):
    """The database carries a schema revision this version of the code does not know."""


class BulkFileError(HarvestError):
    """A PubMed baseline/update file cannot be applied: unreadable, truncated or not PubMed XML."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        # With its path: harvest ingest's reading process sends it to the storing one.
        return (_rebuild_bulk_file_error, (type(self), self.message, self.path))


def _rebuild_bulk_file_error(cls: type[BulkFileError], message: str, path: str) -> BulkFileError:
    return cls(message, path=path)


class FileOrderError(BulkFileError):
    """An update file would be applied before one it follows; ``--force`` applies it anyway."""


class BusyError(HarvestError):
    """Another run holds the lock (nightly or ingest); this run did nothing."""

    exit_code = ExitCode.BUSY


class OutputError(HarvestError):
    """Standard output or an export file could not be written (disk full, I/O error); what was stored
    stays stored."""

    exit_code = ExitCode.OUTPUT_FAILED


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a run that ``error`` ends exits with (the CLI's mapping of the tree)."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, HarvestError):
        return error.exit_code
    if isinstance(error, OSError):
        return ExitCode.STORAGE
    return ExitCode.INTERNAL

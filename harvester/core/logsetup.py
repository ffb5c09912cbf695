"""Logging set-up, called once by the CLI: stderr for people, an optional file for cron.

Every handler installed here carries a :class:`RedactingFilter`, so no secret value reaches the console
or the file, whichever logger (ours, urllib3's DEBUG lines with full URLs, ...) produced the record.
Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from harvester.core.errors import ConfigError

CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"
FILE_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

_MARK = "_pubmed_harvester_handler"  # set on the handlers we own, so a second call replaces them


def console_level(verbosity: int) -> int:
    """-q (-1 or less) ERROR, default WARNING, -v INFO, -vv (2 or more) DEBUG."""
    if verbosity < 0:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


class RedactingFilter(logging.Filter):
    """Replaces each secret in a record's message, arguments, traceback and stack text with ``***``.

    The message is rendered (``msg % args``) and redacted once, and ``args`` emptied, so later
    formatting cannot bring a secret back.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        from harvester.core.redaction import redact

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not leak its arguments either
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
            record.exc_info = None  # the cached, redacted text is what formatters will print
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def _not_file_only(record: logging.LogRecord) -> bool:
    """Records logged with ``extra={"file_only": True}`` (the CLI's error lines, which it prints itself,
    and its run line) go to the log file only."""
    return not getattr(record, "file_only", False)


class ConsoleFormatter(logging.Formatter):
    """Keeps the console to one line per record: tracebacks are shown only at -vv (they go to the file)."""

    def __init__(self, fmt: str, *, show_tracebacks: bool) -> None:
        super().__init__(fmt)
        self.show_tracebacks = show_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.show_tracebacks:
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def setup_logging(*, verbosity: int, log_file: Path | None, secrets: Sequence[str]) -> None:
    """Configure the root logger: stderr at the verbosity's level, and ``log_file`` (if given) at INFO
    or the console's level if lower, with timestamps. Calling it again replaces what it installed.

    Raises:
        ConfigError: the log file cannot be opened for appending.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()

    redacting = RedactingFilter(secrets)
    level = console_level(verbosity)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(ConsoleFormatter(CONSOLE_FORMAT, show_tracebacks=level <= logging.DEBUG))
    console.addFilter(_not_file_only)
    handlers: list[logging.Handler] = [console]

    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {log_file}: {exc.strerror or exc}") from None
        file_handler.setLevel(min(logging.INFO, level))
        file_handler.setFormatter(logging.Formatter(FILE_FORMAT, datefmt=FILE_DATE_FORMAT))
        handlers.append(file_handler)

    for handler in handlers:
        handler.addFilter(redacting)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    # -v is for the harvest's own steps; Alembic's INFO lines ("Will assume transactional DDL", its
    # plugin setup) only at -vv.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)

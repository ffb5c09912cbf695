"""The ``harvest`` command: parse arguments, build settings, call one pipeline function, print a summary.

The command line is a contract (README, "Commands"): every error is one line on stderr starting
``harvest: error:`` and a documented exit code (:class:`harvester.core.errors.ExitCode`); ``-q`` prints
nothing on success; ``--json`` prints exactly one JSON object on stdout. A traceback goes only to the
log at -vv.

Start-up is kept short (``harvest --help`` and ``harvest show`` in well under half a second): this module
imports only the standard library, typer and the error tree; each command imports what it needs
(SQLAlchemy, requests, lxml, rich, Alembic) when it runs. ``show`` on a SQLite file needs none of them
(it reads with the standard library's sqlite3, :mod:`db.reading`), nor the pydantic that typer would
import to check the values given (:func:`_take_values_as_parsed`).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import select
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, cast

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from harvester import __version__
from harvester.core.errors import (
    ExitCode,
    HarvestError,
    InvalidIdentifierError,
    OutputError,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from db.reading import Database, SqliteReader
    from harvester.core.settings import Settings
    from harvester.jobs.by_id import HarvestReport, IdKind

log = logging.getLogger("harvester")

FILE_ONLY = {"file_only": True}  # `extra=` for records the log file gets but the console does not

EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "all stored",
    ExitCode.INTERNAL: "internal error (a bug)",
    ExitCode.USAGE: "usage error (bad arguments, malformed ids, broken config, refused confirmation)",
    ExitCode.NOT_FOUND: "some ids not found upstream (the rest stored)",
    ExitCode.UPSTREAM: "upstream failure (some ids could not be fetched after retries; the rest stored)",
    ExitCode.STORAGE: "database error (also: no database at the path a reading command was given)",
    ExitCode.CONFLICT: "a record names two stored articles it would merge (in conflicts, not merged)",
    ExitCode.BUSY: "another run (nightly, ingest) holds the lock, nothing done",
    ExitCode.REJECTED: "applied with rejected records (named, kept raw in rejected_records; the rest stored)",
    ExitCode.OUTPUT_FAILED: "output could not be written (disk full, I/O error on stdout or the export file)",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.OUTPUT_CLOSED: "the reader of the output closed it (`harvest export | head`)",
}

HELP = (
    """Keep a local database of PubMed article metadata true to its sources.

\b
Global options go before the command:
  harvest [--config FILE] [--db URL] [-q | -v | -vv] [--json] COMMAND [ARGS]...
The database is ~/.local/share/pubmed-harvester/harvest.sqlite (under $XDG_DATA_HOME if set) unless
--db, HARVEST_DATABASE_URL or the config file's [database] url names another; 'harvest db current'
says which one is used.

\b
Examples:
  harvest pmid 35350566                 fetch, enrich and store one article
  harvest show 35350566                 what is stored about it
  harvest --json show 35350566          the same as one JSON object
  harvest -q nightly                    for cron: prints nothing unless something failed
  harvest export -f csv -o all.csv      every stored article as CSV

\b
Exit codes:
"""
    + "\n".join(f"  {int(code):>3}  {meaning}" for code, meaning in sorted(EXIT_MEANINGS.items()))
    + "\n"
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pubmed-harvester {__version__}")
        raise typer.Exit(0)


def _take_values_as_parsed(params: Iterable[object]) -> None:
    """Spare the start-up of a command the import of pydantic (README, "Performance", Start-up).

    Typer passes every value through a pydantic TypeAdapter built for its parameter, and importing those
    adapters costs nearly as much CPU as all the rest of ``harvest show``. A value the
    parser already gives in its final type (a string for ``str``, strings for ``list[str]``, a whole
    number for ``int`` without bounds) is what that adapter returns, so it is taken as it is; any other
    value goes through typer's own adapter. This leans on typer's private coercion classes: where they
    are not what this expects, typer's own way stands (and tests/test_startup.py fails, to say so).
    """
    as_parsed = _as_parsed_type()
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if as_parsed is not None and descriptor is not None and getattr(param, "_runtime_param", 0) is None:
            param._runtime_param = as_parsed(  # type: ignore[attr-defined]
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )


@functools.cache
def _as_parsed_type() -> Any:
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:  # pragma: no cover - another typer
        return None
    if [f.name for f in dataclasses.fields(RuntimeParam)] != ["parameter_info", "annotation"]:
        return None  # pragma: no cover - another typer

    @dataclass(frozen=True)
    class AsParsed(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info, kind = self.parameter_info, self.annotation
            if info.parser is None:
                if kind is str and type(value) is str:
                    return value
                if (
                    kind == list[str]
                    and isinstance(value, list | tuple)
                    and all(type(v) is str for v in value)
                ):
                    return list(value)
                if kind is int and type(value) is int and info.min is None and info.max is None:
                    return value
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

    return AsParsed


class Group(TyperGroup):
    """The command groups (``harvest``, ``harvest db``): their options' values taken as parsed."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _take_values_as_parsed(self.get_params(ctx))
        return super().parse_args(ctx, args)


class HelpCommand(TyperCommand):
    """A command whose help shows no Python type names: typer would print ``<list[str]>`` beside an
    argument, ``<str>`` beside an option without a metavar, and ``{ID}...`` in the usage line. Its
    parameters' values are taken as parsed (:func:`_take_values_as_parsed`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _take_values_as_parsed(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            elif param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = (param.name or "value").upper()
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "arg").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


app = typer.Typer(
    cls=Group,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
db_app = typer.Typer(
    cls=Group,
    help="Inspect and migrate the database schema (Alembic migrations).\n\n"
    "\b\nExamples:\n  harvest db current\n  harvest db upgrade\n  harvest db downgrade 0004 --yes",
    short_help="Inspect and migrate the database schema (Alembic migrations).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


@dataclass
class State:
    """Global options; settings, logging and the database are set up on first use, once.

    ``summary`` is the run's one-line outcome, which the log file's run line carries.
    """

    config: Path | None = None
    db: str | None = None
    verbosity: int = 0
    json_output: bool = False
    summary: str | None = None
    _settings: Settings | None = None
    _engine: Engine | None = None
    _reader: SqliteReader | None = None
    _secrets: tuple[str, ...] = field(default_factory=tuple)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def settings(self) -> Settings:
        if self._settings is None:
            from harvester.core.logsetup import setup_logging
            from harvester.core.settings import load_settings

            self._settings = load_settings(self.config, database_url=self.db)
            self._secrets = self._settings.secrets
            setup_logging(verbosity=self.verbosity, log_file=self._settings.log_file, secrets=self._secrets)
            log.debug("settings: %r (database %s)", self._settings, self._settings.database_url_display)
        return self._settings

    def engine(self, *, migrate: bool = True) -> Engine:
        """The database for a command that stores: created and migrated to head if need be."""
        from db.engine import open_database

        if self._engine is None:
            self._engine = open_database(self.settings().database_url, migrate=migrate)
        return self._engine

    def read_engine(self, *, at_head: bool = True) -> Engine:
        """The database for a command that only reads: never created or migrated ("no database at ...")."""
        from db.engine import open_existing_database

        if self._engine is None:
            self._engine = open_existing_database(self.settings().database_url, at_head=at_head)
        return self._engine

    def read_documents_database(self) -> Database:
        """The database for reading documents (``show``): a plain SQLite file at head is opened with the
        standard library alone (db.reading), which spares importing SQLAlchemy; any other as
        :meth:`read_engine` opens it."""
        from db.reading import open_sqlite_reader

        if self._reader is None:
            self._reader = open_sqlite_reader(self.settings().database_url)
        return self._reader if self._reader is not None else self.read_engine()

    def close(self) -> None:
        """Release the database at the end of the run. A connection left open would be closed whenever the
        garbage collector gets to it, and closing SQLite's last connection checkpoints its WAL into the
        file: in a process that goes on (tests call :func:`run` again and again), possibly into a file
        that was replaced meanwhile."""
        try:
            if self._reader is not None:
                self._reader.close()
            if self._engine is not None:
                self._engine.dispose()
        except Exception:  # the run's outcome stands; at exit the driver would have closed them anyway
            log.debug("closing the database", exc_info=True)
        self._reader = self._engine = None

    @property
    def logging_ready(self) -> bool:
        return self._settings is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    @property
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, quiet=self.verbosity < 0)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="TOML config file (default: $HARVEST_CONFIG if set; none otherwise).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Database: a SQLAlchemy URL (sqlite:///path, postgresql://user@host/db) or a SQLite file "
            "path. Overrides HARVEST_DATABASE_URL and the config file. "
            "Default: ~/.local/share/pubmed-harvester/harvest.sqlite.",
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="More log output: -v the harvest's steps (batches, counts), -vv debug.",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print nothing on success (errors still go to stderr); for cron."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the command's result as one JSON object on stdout.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    state = ctx.obj if isinstance(ctx.obj, State) else State()
    state.config, state.db, state.json_output = config, db, json_output
    state.verbosity = -1 if quiet else verbose
    ctx.obj = state


# ---- output: every command prints through these ------------------------------------------------


def echo(text: str = "", *, err: bool = False) -> None:
    """Print one line. A failure to write (disk full, I/O error) is an OutputError (exit 9); EPIPE is left
    to :func:`run`, which tells a reader that left (exit 141) from a broken pipe of our own."""
    try:
        typer.echo(text, err=err)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise OutputError(
            f"cannot write to standard {'error' if err else 'output'}: {_os_reason(exc)}"
        ) from None


def say(state: State, text: str, *, err: bool = False) -> None:
    """A summary or notice: printed unless -q."""
    if not state.quiet:
        echo(text, err=err)


def emit_json(obj: dict[str, Any]) -> None:
    """The command's one JSON object on stdout (--json)."""
    echo(json.dumps(obj, ensure_ascii=False, default=str))


def error_line(state: State | None, message: str) -> None:
    """One error: one line on stderr, ``harvest: error: ...``, secrets removed; the log file gets it too."""
    from harvester.core.redaction import redact

    secrets = state.secrets if state is not None and state.secrets else _known_secrets()
    text = redact(" ".join(str(message).split()), secrets)
    echo(f"harvest: error: {text}", err=True)
    if state is not None and state.logging_ready:
        log.error("%s", text, extra=FILE_ONLY)


def report_errors(state: State, errors: Iterable[str], labelled: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Each error once: the messages, then each labelled list of ids (``not found: ...``) whose ids no
    message already named."""
    import re

    seen = list(dict.fromkeys(errors))
    for message in seen:
        error_line(state, message)
    said = " ".join(seen)
    for label, items in labelled:
        rest = [i for i in items if not re.search(rf"(?<![\w./-]){re.escape(i)}(?![\w/-])", said)]
        if rest:
            error_line(state, f"{label}: " + " ".join(rest))


def _os_reason(exc: OSError) -> str:
    """An OSError in words: "No space left on device", with the file when it names one."""
    reason = exc.strerror or os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return f"{exc.filename}: {reason}" if exc.filename else str(reason)


# One-line summaries for `harvest --help` (click would cut a docstring's first sentence at "e.g.").
_SHORT = {
    "pmid": "Fetch, enrich and store articles by PMID.",
    "pmcid": "Fetch, enrich and store articles by PMCID (mapped to PMIDs by the ID Converter).",
    "doi": "Fetch, enrich and store articles by DOI.",
    "search": "Harvest every record a PubMed query finds, beyond esearch's 9,999 cap.",
    "enrich": "Fetch PMC and Crossref again for stored articles and merge what changed.",
    "nightly": "Run the configured searches from their watermarks, then re-enrich stale articles (cron).",
    "runs": "List recorded runs, newest first.",
    "history": "List the recorded changes of a stored article.",
    "ingest-icite": "Load NIH iCite's monthly snapshot files: metrics and the Open Citation Collection.",
    "conflicts": "List and settle records that name two stored articles they would merge into one.",
    "ingest": "Load PubMed baseline and update files, each once, in NLM's order.",
    "worker": "Apply files of the database's work queue (PostgreSQL), one at a time, until stopped.",
    "queue": "Show the work queue of 'harvest ingest --workers N' and 'harvest worker'.",
    "show": "Show stored articles (by PMID, PMCID or DOI) as text or JSON.",
    "export": "Export stored articles, a reporting view, or a query's rows (JSON Lines, CSV, Solr).",
    "upgrade": "Migrate the database schema up to a revision (default: head).",
    "downgrade": "Migrate the database schema down to a revision (asks first: it drops data).",
    "current": "Print which database is used, its schema revision and the newest one known.",
}


# ---- harvest by id -------------------------------------------------------------------------------

IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Ids, separated by spaces or commas; none: read from standard input when it is not a terminal.",
        show_default=False,
        metavar="ID",
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="FILE",
        help="Read ids from FILE ('-' = standard input), separated by newlines, spaces, tabs or commas;"
        " blank lines and # comments skipped.",
    ),
]


NoEnrichOption = Annotated[
    bool, typer.Option("--no-enrich", help="Skip PMC and Crossref enrichment (PubMed only).")
]


def _harvest_command(
    ctx: typer.Context, kind: IdKind, ids: list[str] | None, from_file: str | None, no_enrich: bool
) -> int:
    from db.runs import start_run
    from harvester.jobs.by_id import harvest
    from harvester.jobs.services import build_services

    state = _state(ctx)
    values = _ids_given(ids, from_file, f"{_ID_NAMES[kind]}s")
    _hint_other_kind(kind, values)
    settings = state.settings()
    engine = state.engine()
    services = build_services(settings)
    run_id = start_run(engine, f"harvest {kind} ({len(values)} ids)")
    with _recorded_run(state, engine, run_id) as finish:
        with _progress(state, total=len(values), label=f"efetch {kind}s") as advance:
            report = harvest(
                kind,
                values,
                settings=settings,
                services=services,
                engine=engine,
                progress=advance,
                enrich=not no_enrich,
                run_id=run_id,
            )
        finish(report.exit_code, report.as_dict())
    _print_report(state, report)
    return int(report.exit_code)


_ID_NAMES = {"pmid": "PMID", "pmcid": "PMCID", "doi": "DOI"}


def _ids_given(args: Sequence[str] | None, from_file: str | None, noun: str) -> list[str]:
    """The ids of a command: its arguments, then ``--from FILE``; with neither, standard input when it
    is not a terminal (``echo 35350566 | harvest pmid``). Ids may be separated by newlines, spaces, tabs
    or commas. Standard input is never read when ids were given, so a harness without input changes
    nothing.

    Raises:
        UsageError: no ids at all (saying where they were looked for).
    """
    from harvester.core.ids import read_id_file, split_ids

    values = [part for arg in args or () for part in split_ids(arg)]
    if from_file is not None:
        values.extend(read_id_file(from_file, _read_stdin))
        if not values:
            where = "standard input" if from_file == "-" else from_file
            raise UsageError(f"no {noun} in {where}: it is empty (or holds only comments)")
    elif not values and not _stdin_is_terminal():
        values = split_ids(_read_stdin())
        if not values:
            raise UsageError(
                f"no {noun} given, and standard input is empty: name them as arguments, with --from FILE,"
                " or on standard input"
            )
    if not values:
        raise UsageError(f"no {noun} given: name them as arguments, with --from FILE, or on standard input")
    return values


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is None or sys.stdin.isatty()
    except (AttributeError, OSError, ValueError):  # closed or replaced standard input: nothing to read
        return True


def _read_stdin() -> str:
    try:
        return sys.stdin.read() if sys.stdin is not None else ""
    except UnicodeDecodeError:
        raise UsageError("standard input is not UTF-8 text") from None


def _hint_other_kind(kind: IdKind, values: Sequence[str]) -> None:
    """Refuse an id of another kind with the command that takes it (``harvest pmid PMC8958025``)."""
    from harvester.core.ids import normalize_doi, normalize_pmcid, normalize_pmid, other_kind

    normalize = {"pmid": normalize_pmid, "pmcid": normalize_pmcid, "doi": normalize_doi}[kind]
    for value in values:
        try:
            normalize(value)
        except InvalidIdentifierError as exc:
            other = other_kind(kind, value)
            if other is not None:
                raise UsageError(
                    f"{exc.message}; {value!r} looks like a {_ID_NAMES[other]}: use 'harvest {other} {value}'"
                ) from None


@contextmanager
def _recorded_run(
    state: State, engine: Engine, run_id: int
) -> Iterator[Callable[[ExitCode, dict[str, object]], None]]:
    """Closes the harvest_runs row with the status and exit code the process ends with (db.runs)."""
    from db.runs import failure_summary, finish_run, run_status
    from harvester.core.redaction import redact

    def finish(code: ExitCode, summary: dict[str, object]) -> None:
        finish_run(engine, run_id, run_status(code), summary, exit_code=code)

    try:
        yield finish
    except BaseException as exc:
        summary = failure_summary(exc)
        summary["error"] = redact(summary["error"], state.secrets)
        try:
            finish_run(engine, run_id, summary["status"], summary, exit_code=summary["exit_code"])
        except HarvestError:
            log.warning("could not record the end of run %d", run_id)
        raise


def _print_report(state: State, report: HarvestReport) -> None:
    state.summary = report.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        say(state, report.summary_line())
        if report.enrichment is not None:
            say(state, report.enrichment.summary_line())
    lines: list[tuple[str, Sequence[str]]] = [
        ("not found", report.not_found),
        ("failed", report.failed),
        ("rejected (kept raw in rejected_records)", report.rejected),
        ("conflict", [*report.conflicts, *(report.enrichment.conflicts if report.enrichment else [])]),
    ]
    if report.enrichment is not None:
        lines.append(
            ("enrichment failed", [*report.enrichment.pmc.failed, *report.enrichment.crossref.failed])
        )
    # an invalid id's own message names it: no second "invalid: ..." line
    report_errors(state, [*report.errors, *(report.enrichment.errors if report.enrichment else [])], lines)


@contextmanager
def _progress(state: State, *, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for interactive runs of more than one batch; nothing under cron."""
    interactive = sys.stderr.isatty() and state.verbosity >= 0 and not state.json_output
    if not interactive or total <= state.settings().efetch_batch_size:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=state.console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@app.command("pmid", short_help=_SHORT["pmid"], cls=HelpCommand)
def pmid_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Fetch, enrich and store articles by PMID.

    \b
    Examples:
      harvest pmid 35350566 35081612
      harvest pmid --from ids.txt          one id per line; '--from -' reads standard input
      harvest --json pmid 35350566         the report as one JSON object
    """
    return _harvest_command(ctx, "pmid", ids, from_file, no_enrich)


@app.command("pmcid", short_help=_SHORT["pmcid"], cls=HelpCommand)
def pmcid_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Fetch, enrich and store articles by PMCID, mapped to PMIDs by the PMC ID Converter.

    PMC8958025, pmc8958025, 8958025 and PMC8958025.1 name the same article.

    \b
    Examples:
      harvest pmcid PMC8958025
      harvest pmcid --from pmcids.txt --no-enrich
    """
    return _harvest_command(ctx, "pmcid", ids, from_file, no_enrich)


@app.command("doi", short_help=_SHORT["doi"], cls=HelpCommand)
def doi_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Fetch, enrich and store articles by DOI (10.x/y, doi:10.x/y, https://doi.org/10.x/y).

    Case does not matter. DOIs the ID Converter does not know are looked up with esearch.

    \b
    Examples:
      harvest doi 10.3389/fonc.2022.836548
      harvest doi https://doi.org/10.3389/fonc.2022.836548
    """
    return _harvest_command(ctx, "doi", ids, from_file, no_enrich)


@app.command("search", short_help=_SHORT["search"], cls=HelpCommand)
def search_command(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A PubMed query, as typed in PubMed (quote it).")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DAY",
            help="First day, YYYY-MM-DD, inclusive (default: 1600-01-01, before any record).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="DAY", help="Last day, YYYY-MM-DD, inclusive (default: today, UTC)."),
    ] = None,
    datetype: Annotated[
        str,
        typer.Option(
            "--datetype",
            metavar="edat|mdat|pdat",
            help="The date --since/--until apply to: edat (entered), mdat (modified), pdat.",
        ),
    ] = "edat",
    max_results: Annotated[
        int | None,
        typer.Option("--max", metavar="N", help="Fetch at most N records, newest first.", show_default=False),
    ] = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Harvest every record a PubMed query finds, beyond esearch's 9,999 cap, each slice verified.

    \b
    Examples:
      harvest search '"exosomes"[mh] AND cancer[tiab]' --since 2024-01-01 --datetype mdat
      harvest search 'crispr[tiab]' --max 100 --no-enrich
    """
    from db.runs import start_run
    from harvester.jobs.search import check_search_arguments, parse_day, run_search
    from harvester.jobs.services import build_services

    state = _state(ctx)
    first, last = parse_day("--since", since), parse_day("--until", until)
    check_search_arguments(query, datetype=datetype, since=first, until=last, max_results=max_results)
    settings = state.settings()
    engine = state.engine()
    services = build_services(settings)
    run_id = start_run(engine, f"search {query[:200]!r} ({datetype} {since or 'start'}..{until or 'today'})")
    with _recorded_run(state, engine, run_id) as finish:
        report = run_search(
            query,
            datetype=datetype,
            since=first,
            until=last,
            max_results=max_results,
            settings=settings,
            services=services,
            engine=engine,
            run_id=run_id,
            enrich=not no_enrich,
        )
        finish(report.exit_code(), report.as_dict())
    state.summary = report.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        say(state, report.summary_line())
        if report.enrich is not None:
            say(state, report.enrich.summary_line())
    for warning in report.warnings:
        log.warning("esearch: %s", warning)
    lines: list[tuple[str, Sequence[str]]] = [
        ("failed", report.failed_ids),
        ("conflict", [*report.conflicts, *(report.enrich.conflicts if report.enrich else [])]),
    ]
    if report.enrich is not None:
        lines.append(("enrichment failed", [*report.enrich.pmc.failed, *report.enrich.crossref.failed]))
    errors = [*report.errors, *(f.error for f in report.failed_slices if f.error)]
    report_errors(state, [*errors, *(report.enrich.errors if report.enrich else [])], lines)
    return int(report.exit_code())


@app.command("enrich", short_help=_SHORT["enrich"], cls=HelpCommand)
def enrich_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="PMIDs, PMCIDs or DOIs of stored articles (default: all due).", metavar="ID"),
    ] = None,
    stale_days: Annotated[
        int,
        typer.Option(
            "--stale-days",
            min=0,
            metavar="N",
            help="Without ids: ask again about PMC, Crossref and iCite records missing or older than N days.",
        ),
    ] = 30,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Ask only this source: pmc, crossref or icite (repeat for several; default: all three).",
        ),
    ] = None,
) -> int:
    """Fetch PMC front matter, Crossref works and iCite metrics again for stored articles; store changes.

    Without ids, each article is asked only of the sources it is due for; a source that said "not found"
    is asked again 1, 2, 4, ... days later, at most [enrich] not_found_max_days (30). Named ids are
    always asked.

    \b
    Examples:
      harvest enrich                       every article whose PMC, Crossref or iCite record is due
      harvest enrich 35350566 10.3389/fonc.2022.836548
      harvest enrich --source icite        only iCite's metrics, for the articles due
    """
    from datetime import UTC, datetime, timedelta

    from db.documents import resolve_identifiers
    from db.runs import start_run
    from db.targets import Staleness, due_targets, enrichment_targets
    from harvester.jobs.by_id import HarvestReport
    from harvester.jobs.enrichment import enrich_articles, utc_today
    from harvester.jobs.services import build_services

    sources = tuple(dict.fromkeys(s.strip().lower() for s in source or ("pmc", "crossref", "icite")))
    unknown = [s for s in sources if s not in ("pmc", "crossref", "icite")]
    if unknown:
        raise UsageError(f"--source {unknown[0]!r}: use pmc, crossref or icite")
    state = _state(ctx)
    settings = state.settings()
    engine = state.engine()
    missing: list[str] = []
    backed_off: dict[str, int] = {}
    today = utc_today()
    if ids:
        found = resolve_identifiers(engine, ids)
        missing = [given for given, article_id in found.items() if article_id is None]
        targets = enrichment_targets(engine, [a for a in dict.fromkeys(found.values()) if a is not None])
    else:
        stale = Staleness(datetime.now(UTC) - timedelta(days=stale_days))
        due = due_targets(
            engine,
            dict.fromkeys(sources, stale),
            today=today,
            max_days=settings.enrich.not_found_max_days,
        )
        targets, backed_off = due.targets, due.backed_off
    article_ids = [t.article_id for t in targets]
    run_id = start_run(engine, f"enrich ({len(article_ids)} articles)")
    with _recorded_run(state, engine, run_id) as finish:
        enrichment = enrich_articles(
            targets,
            services=build_services(settings),
            engine=engine,
            run_id=run_id,
            policy=settings.merge_policy,
            sources=sources,
            today=today,
        )
        enrichment.add_backed_off(backed_off)
        report = HarvestReport(
            requested=len(article_ids) + len(missing), not_found=missing, enrichment=enrichment
        )
        finish(report.exit_code, report.as_dict())
    state.summary = f"articles {len(article_ids)}; " + enrichment.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        say(state, state.summary)
    lines: list[tuple[str, Sequence[str]]] = [
        ("not stored", missing),
        ("conflict", enrichment.conflicts),
        (
            "enrichment failed",
            [*enrichment.pmc.failed, *enrichment.crossref.failed, *enrichment.icite.failed],
        ),
    ]
    report_errors(state, enrichment.errors, lines)
    return int(report.exit_code)


@app.command("ingest-icite", short_help=_SHORT["ingest-icite"], cls=HelpCommand)
def ingest_icite_command(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(help="iCite snapshot CSV files (plain or .gz): metadata, citations.", metavar="FILE"),
    ],
    all_edges: Annotated[
        bool,
        typer.Option("--all-edges", help="Keep every citation edge, not only those with a stored article."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Load a file again even if it was applied before.")
    ] = False,
) -> int:
    """Load iCite's monthly snapshot files: metrics of stored articles and the Open Citation Collection.

    The metadata CSV (one row per PMID) and open_citation_collection.csv (citing,referenced) are told apart by
    their header and streamed. Exit 0: loaded (or applied before); 2: a file is not an iCite snapshot or
    cannot be read (what was stored of it stays; it is not recorded, run it again); 5: database error.

    \b
    Examples:
      harvest ingest-icite icite_metadata.csv.gz open_citation_collection.csv.gz
      harvest ingest-icite --all-edges open_citation_collection.csv
    """
    from db.runs import start_run
    from harvester.jobs.icite_ingest import ingest_icite_file

    state = _state(ctx)
    engine = state.engine()
    run_id = start_run(engine, f"ingest-icite ({len(files)} files)")
    reports = []
    with _recorded_run(state, engine, run_id) as finish:
        for path in files:
            if not path.is_file():
                raise UsageError(f"{path}: no such file")
            reports.append(
                ingest_icite_file(path, engine=engine, all_edges=all_edges, force=force, run_id=run_id)
            )
        finish(ExitCode.OK, {"files": [r.as_dict() for r in reports]})
    for report in reports:
        for message in report.rejected[:20]:
            say(state, f"{report.path}: {message}", err=True)
    if state.json_output:
        emit_json({"files": [r.as_dict() for r in reports]})
    else:
        for report in reports:
            say(state, report.summary_line())
    return int(ExitCode.OK)


@app.command("nightly", short_help=_SHORT["nightly"], cls=HelpCommand)
def nightly_command(
    ctx: typer.Context,
    search: Annotated[
        list[str] | None,
        typer.Option("--search", help="Run only this configured search (repeatable; default: all)."),
    ] = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Run the config's [[searches]] since their last verified watermark, then re-enrich stale articles.

    Exit 0: every window verified; 4: some window not verified (it is redone next run) or enrichment
    failed; 7: another run is active (nothing done); 2: config problem; 5: database problem; 8: records
    that could not be parsed or stored were kept raw in rejected_records (the windows are verified).

    \b
    Examples:
      harvest -q nightly                   for cron: silent unless something failed
      harvest nightly --search exosomes --no-enrich
    """
    from harvester.jobs.nightly import run_nightly, select_searches
    from harvester.jobs.services import build_services

    state = _state(ctx)
    settings = state.settings()
    select_searches(settings.searches, search or [])  # a config problem is reported before any work
    engine = state.engine()
    report = run_nightly(settings, build_services(settings), engine, only=search or [], enrich=not no_enrich)
    state.summary = report.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        say(state, report.summary_line())
        for outcome in report.searches:
            say(state, "  " + outcome.summary_line())
        if report.enrichment is not None:
            say(state, "  " + report.enrichment.summary_line())
    errors = [message for outcome in report.searches for message in outcome.as_search_run().errors]
    report_errors(state, [*errors, *(report.enrichment.errors if report.enrichment else [])], [])
    return int(report.exit_code)


@app.command("runs", short_help=_SHORT["runs"], cls=HelpCommand)
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N runs.")] = 20,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs with this status: running, ok, not_found, partial, failed, interrupted or"
            " abandoned.",
        ),
    ] = None,
) -> int:
    """List recorded runs, newest first: status, times, exit code, pid and host, and per search its window.

    Statuses: running (not finished, or still going); ok (exit 0); not_found (exit 3: every id that
    exists was stored, some are unknown upstream); partial (finished, some work not done: ids not
    fetched, a search window not verified; exit 4); failed (an error stopped it: the summary holds it);
    interrupted (Ctrl-C, exit 130; what was stored before stays); abandoned (its process was killed).

    \b
    Examples:
      harvest runs -n 5
      harvest --json runs --status failed
    """
    from db.runs import RUN_STATUSES, list_runs

    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"--status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    state = _state(ctx)
    runs = list_runs(state.read_engine(), limit=limit, status=status)
    if state.json_output:
        typer.echo(json.dumps({"runs": [run.as_dict() for run in runs]}, ensure_ascii=False))
        return int(ExitCode.OK)
    if not runs:
        typer.echo("no runs recorded" + (f" with status {status}" if status else ""))
        return int(ExitCode.OK)
    header = ("ID", "STATUS", "STARTED (UTC)", "FINISHED (UTC)", "EXIT", "PID", "HOST", "COMMAND")
    rows = [
        (
            str(run.id),
            run.status,
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "-",
            str(run.summary["exit_code"]) if isinstance(run.summary.get("exit_code"), int) else "-",
            str(run.pid) if run.pid else "-",
            run.host or "-",
            run.command,
        )
        for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    right = {0, 4, 5}  # numbers line up on the right

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells[:-1], widths, strict=True))
        ]
        return "  ".join([*padded, cells[-1]])

    typer.echo(line(header))
    for run, row in zip(runs, rows, strict=True):
        typer.echo(line(row))
        for s in run.searches:
            mark = "verified" if s.verified else "NOT verified"
            typer.echo(
                f"    {s.search}: {s.window_start}..{s.window_end} [{s.datetype}] expected {s.expected}, "
                f"fetched {s.fetched}, created {s.created}, updated {s.updated}, unchanged {s.unchanged}; "
                f"{mark}, watermark {s.watermark_after or '-'}"
                + (f"; failed ids: {' '.join(s.failed_ids)}" if s.failed_ids else "")
            )
            for error in s.errors:
                typer.echo(f"      error: {error}")
    return int(ExitCode.OK)


@app.command("history", short_help=_SHORT["history"], cls=HelpCommand)
def history_command(
    ctx: typer.Context,
    articles: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="PMIDs, PMCIDs or DOIs of stored articles.")
    ] = None,
    from_file: FromOption = None,
) -> int:
    """List the recorded changes of stored articles: field, old and new value (JSON), source, run, time.

    The first row of an article is its creation (field "created", the identifiers it was created with).

    \b
    Examples:
      harvest history 35350566
      harvest --json history PMC8958025
    """
    from db.documents import resolve_identifiers
    from db.history import list_history

    state = _state(ctx)
    values = _ids_given(articles, from_file, "ids")
    engine = state.read_engine()
    found = resolve_identifiers(engine, values)
    missing = [value for value in values if found[value] is None]
    changes = [
        {"article": value, **change}
        for value in values
        if found[value] is not None
        for change in list_history(engine, cast(int, found[value]))
    ]
    for value in missing:
        error_line(state, f"not stored: {value}")
    if state.json_output:
        typer.echo(json.dumps({"history": changes}, ensure_ascii=False, default=str))
    else:
        for change in changes:
            typer.echo(
                f"{change['changed_at']}  {change['article']}  run {change.get('run_id') or '-'}  "
                f"{change['source']:<8} {change['field']}: {_json_text(change['old_value'])} -> "
                f"{_json_text(change['new_value'])}"
            )
    return int(ExitCode.NOT_FOUND if missing else ExitCode.OK)


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


conflicts_app = typer.Typer(invoke_without_command=True)  # help: conflicts_command's docstring
app.add_typer(conflicts_app, name="conflicts", short_help=_SHORT["conflicts"])


@conflicts_app.callback()
def conflicts_command(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option("--status", metavar="STATUS", help="open, resolved, ignored or all.")
    ] = "open",
) -> int:
    """List records whose identifiers name two stored articles they would merge into one (never merged).

    A DOI or PMCID that two PubMed records share is not a conflict: see 'harvest export --view
    report_shared_identifiers'. --json prints one object {"conflicts": [...]}.

    \b
    Examples:
      harvest conflicts
      harvest --json conflicts --status all
      harvest conflicts resolve 3 --keep 35350566
    """
    if ctx.invoked_subcommand is not None:
        return int(ExitCode.OK)
    from db.conflicts import STATUSES, list_conflicts

    if status not in {*STATUSES, "all"}:
        raise UsageError(f"--status must be open, resolved, ignored or all, not {status!r}")
    state = _state(ctx)
    conflicts = list_conflicts(state.read_engine(), status=status)
    if state.json_output:
        emit_json({"conflicts": conflicts})
    elif not conflicts:
        echo(f"no {status if status != 'all' else ''} conflicts".replace("  ", " "))
    else:
        for c in conflicts:
            settled = f" ({c['resolution']}{', PMID ' + c['kept_pmid'] if c['kept_pmid'] else ''})"
            echo(
                f"#{c['id']}  {c['detected_at'][:19]}  [{c['status']}{settled if c['resolution'] else ''}]"
                f"  {c['description']}"
            )
    return int(ExitCode.OK)


@conflicts_app.command("resolve", cls=HelpCommand)
def conflicts_resolve_command(
    ctx: typer.Context,
    conflict_id: Annotated[
        int, typer.Argument(metavar="ID", help="The conflict's number (#ID in the list).")
    ],
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep",
            metavar="ARTICLE",
            help="The article the record belongs to: a PMID, or article:ID for one not in PubMed.",
        ),
    ] = None,
    ignore: Annotated[
        bool, typer.Option("--ignore", help="Leave the record unmerged and stop reporting it.")
    ] = False,
) -> int:
    """Settle a conflict by hand; recorded in the conflict row and in each article's history.

    \b
    Examples:
      harvest conflicts resolve 3 --keep 35350566
      harvest conflicts resolve 4 --ignore
    """
    from db.conflicts import resolve_conflict

    state = _state(ctx)
    settled = resolve_conflict(state.engine(), conflict_id, keep=keep, ignore=ignore)
    if state.json_output:
        emit_json({"conflict": settled})
    else:
        kept = f", PMID {settled['kept_pmid']}" if settled["kept_pmid"] else ""
        article = f" article {settled['kept_article_id']}" if settled["kept_article_id"] and not kept else ""
        echo(f"#{conflict_id} {settled['status']} ({settled['resolution']}{kept}{article})")
    return int(ExitCode.OK)


_MAX_WORKERS = 64  # harvester.jobs.workers.MAX_WORKERS (this module imports no job module at start-up)
_SEE_INGEST = "(see 'harvest ingest --help')"
_HOLD_ENV = "HARVEST_TEST_INGEST_HOLD"  # tests only: a folder of hold files (see _test_hold)
_BATCH_ENV = (
    "HARVEST_TEST_INGEST_BATCH"  # tests only: records per batch of a worker (small files, many batches)
)


@app.command("ingest", short_help=_SHORT["ingest"], cls=HelpCommand)
def ingest_command(
    ctx: typer.Context,
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="PubMed baseline or update files (.xml or .xml.gz), or directories of them, local paths.",
            metavar="FILE|DIR",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Apply files out of NLM's order too (before an applied update, after a gap, re-issued). "
            "The same bytes are still applied only once.",
        ),
    ] = False,
    enrich: Annotated[
        bool,
        typer.Option(
            "--enrich/--no-enrich",
            help="Fetch PMC and Crossref for new and changed articles now (default: later, by "
            "'harvest enrich').",
        ),
    ] = False,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline", help="The files are annual baseline files (default: those in a 'baseline' dir)."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=_MAX_WORKERS,
            metavar="N",
            help="Apply the files with N workers. PostgreSQL: the files go into the database's work queue "
            "and N 'harvest worker' processes of this host apply them (workers on other hosts help). "
            "SQLite: N processes read and parse files at once, this one stores (SQLite has one writer).",
        ),
    ] = None,
    join: Annotated[
        bool,
        typer.Option(
            "--join",
            help="PostgreSQL: put the files named (if any) in the work queue and work as one worker of "
            "it until no file is waiting or claimed.",
        ),
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the work queue instead (as 'harvest queue').")
    ] = False,
    lease: Annotated[
        float | None,
        typer.Option(
            "--lease",
            min=1.0,
            metavar="SECONDS",
            help="With --workers on PostgreSQL, or --join: how long a worker's claim on a file lasts "
            "unless renewed (default 60).",
        ),
    ] = None,
) -> int:
    """Load PubMed baseline and update files: each once (by checksum), in NLM's order; deletions flagged.

    Exit 0: every file applied or already applied; 2: a path is missing, or a file was refused (out of
    order) or failed (truncated, not PubMed XML; not recorded, rerun it), or bad options (--join or
    --status on SQLite); 4: enrichment failed; 5: database problem; 6: a record names two stored
    articles it would merge (listed by 'harvest conflicts'); 7: another run is active (nothing done); 8:
    applied, but some records could not be parsed or stored: they are named and kept raw in the
    rejected_records table.

    \b
    Examples:
      harvest ingest ~/pubmed/updatefiles/pubmed25n1275.xml.gz
      harvest ingest --baseline ~/pubmed/baseline/*.xml.gz
      harvest ingest --workers 4 ~/pubmed/baseline ~/pubmed/updatefiles
      harvest ingest --join                 help a queue another host filled
      harvest ingest --status
    """
    state = _state(ctx)
    given = files or []
    if status:
        if given or workers is not None or join or force or enrich or baseline or lease is not None:
            raise UsageError(
                f"--status shows the work queue: give it no files and no other option {_SEE_INGEST}"
            )
        return _show_queue(state)
    if join and workers is not None:
        raise UsageError(
            f"--join makes this process one worker, --workers N starts N of them: give one {_SEE_INGEST}"
        )
    if lease is not None and not join and workers is None:
        raise UsageError(
            f"--lease is for the workers of the queue: give it with --workers N or --join {_SEE_INGEST}"
        )
    if not given and not join:
        raise UsageError(
            "missing argument 'FILE|DIR': name PubMed baseline or update files (.xml or .xml.gz) or "
            f"folders of them {_SEE_INGEST}"
        )
    from harvester.jobs.ingest import check_paths

    paths = check_paths(given) if given else []  # a missing or unreadable path is reported before any work
    settings = state.settings()
    if join:
        _require_postgresql(state, "harvest ingest --join")
    engine = state.engine()
    if join or (workers is not None and engine.dialect.name == "postgresql"):
        return _ingest_in_queue(
            state,
            engine,
            paths,
            workers=workers,
            force=force,
            enrich=enrich,
            baseline=baseline,
            lease=lease,
        )
    from db.runs import exclusive_run, failure_summary, finish_run, run_status, start_locked_run
    from harvester.core.redaction import redact
    from harvester.jobs.ingest import ingest_files
    from harvester.jobs.services import build_services
    from harvester.jobs.workers import ingest_files_parallel

    services = build_services(settings) if enrich else None
    command = f"ingest ({len(paths)} files" + (f", {workers} workers)" if workers else ")")
    with exclusive_run(engine, "harvest ingest"):
        run_id = start_locked_run(engine, command)
        try:
            with _progress(state, total=sum(p.stat().st_size for p in paths), label="ingest") as advance:
                options: dict[str, Any] = dict(
                    settings=settings,
                    services=services,
                    engine=engine,
                    force=force,
                    enrich=enrich,
                    baseline=baseline,
                    run_id=run_id,
                    progress=advance,
                )
                if workers is not None and workers > 1:
                    report = ingest_files_parallel(paths, workers=workers, **options)
                else:
                    report = ingest_files(paths, **options)
        except BaseException as exc:
            summary = failure_summary(exc)
            summary["error"] = redact(summary["error"], state.secrets)
            try:
                finish_run(engine, run_id, summary["status"], summary, exit_code=summary["exit_code"])
            except HarvestError:
                log.warning("could not record the end of run %d", run_id)
            raise
        code = report.exit_code
        finish_run(engine, run_id, run_status(code), report.as_dict(), exit_code=code)
    _print_ingest(state, report, enrich=enrich)
    return int(report.exit_code)


def _ingest_in_queue(
    state: State,
    engine: Engine,
    paths: Sequence[Path],
    *,
    workers: int | None,
    force: bool,
    enrich: bool,
    baseline: bool,
    lease: float | None,
) -> int:
    """``harvest ingest --workers N`` on PostgreSQL, or ``--join``: through the work queue."""
    from db.queue import DEFAULT_LEASE, enqueue, require_postgresql
    from db.runs import run_lock_taken_exclusively, start_run
    from harvester.core.errors import BusyError
    from harvester.jobs.workers import ingest_with_workers, queue_entries, run_worker

    require_postgresql(engine, "harvest ingest --join")
    holder = run_lock_taken_exclusively(engine)
    if holder is not None:
        raise BusyError(
            f"another run is active: {holder.describe()} holds the run lock on "
            f"{state.settings().database_url_display}; this run did nothing"
        )
    settings = state.settings()
    lease = lease or DEFAULT_LEASE
    if workers is not None:
        run_id = start_run(engine, f"ingest ({len(paths)} files, {workers} workers)")
        with _recorded_run(state, engine, run_id) as finish:
            with _progress(state, total=sum(p.stat().st_size for p in paths), label="ingest") as advance:
                report = ingest_with_workers(
                    paths,
                    engine=engine,
                    workers=workers,
                    worker_command=[
                        sys.executable,
                        "-m",
                        "harvester",
                        "-q",
                        "worker",
                        "--until-done",
                        "--lease",
                        str(lease),
                        "--run-id",
                        str(run_id),
                    ],
                    worker_env=_worker_environment(state),
                    force=force,
                    enrich=enrich,
                    baseline=baseline,
                    run_id=run_id,
                    progress=advance,
                )
            finish(report.exit_code, report.as_dict())
        _print_ingest(state, report, enrich=enrich)
        return int(report.exit_code)
    from harvester.jobs.services import build_services

    run_id = start_run(engine, f"ingest --join ({len(paths)} files)")
    with _recorded_run(state, engine, run_id) as finish:
        if paths:
            entries, _given = queue_entries(paths, baseline=baseline, force=force, enrich=enrich)
            enqueue(engine, entries, run_id=run_id)
        options = _worker_options(lease, until_done=True)
        with _stop_on_sigterm():
            report = run_worker(
                engine,
                settings,
                run_id=run_id,
                options=options,
                services=lambda: build_services(settings),
            )
        finish(report.exit_code, report.as_dict())
    _print_ingest(state, report, enrich=report.enriched)
    return int(report.exit_code)


def _worker_environment(state: State) -> dict[str, str]:
    """The environment of the workers ``--workers N`` starts: this one, with the database and config file
    this run uses (so that a URL with a password never appears on a command line)."""
    env = dict(os.environ)
    env["HARVEST_DATABASE_URL"] = state.settings().database_url
    if state.config is not None:
        env["HARVEST_CONFIG"] = str(state.config.resolve())
    return env


def _worker_options(lease: float, *, until_done: bool) -> Any:
    """A worker's options; the tests' hooks (_test_hold, HARVEST_TEST_INGEST_BATCH) read here, at the edge."""
    from harvester.jobs.workers import WorkerOptions

    batch = os.environ.get(_BATCH_ENV, "")
    options = WorkerOptions(lease=lease, until_done=until_done, after_batch=_test_hold())
    if batch.isdigit() and int(batch) > 0:
        options = dataclasses.replace(options, batch_size=int(batch))
    return options


def _test_hold() -> Callable[[str], None] | None:
    """Tests only (HARVEST_TEST_INGEST_HOLD=DIR): a worker that has stored a batch of FILE while
    DIR/FILE.hold exists takes that file (renamed DIR/FILE.held, its pid written in it; one worker wins)
    and waits, holding its claim, until DIR/FILE.go exists. Lets a test stop a worker mid-file."""
    folder = os.environ.get(_HOLD_ENV)
    if not folder:
        return None
    import time

    def hold(name: str) -> None:
        base = Path(folder) / name
        try:
            os.rename(f"{base}.hold", f"{base}.held")
        except OSError:
            return
        Path(f"{base}.held").write_text(str(os.getpid()))
        while not Path(f"{base}.go").exists():
            time.sleep(0.02)

    return hold


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (systemctl stop, the end of a --workers run) stops a worker: the file it holds is given
    back to the queue, and it ends (exit 0)."""
    import signal

    from harvester.jobs.workers import WorkerStopped

    stopping: list[bool] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(True)
            raise WorkerStopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_ingest(state: State, report: Any, *, enrich: bool) -> None:
    """An ingest's lines: each file, the total, then one error line per problem."""
    state.summary = report.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        for file in report.files:
            if file.outcome not in {"refused", "failed"}:
                say(state, file.summary_line())
            if file.enrichment is not None:
                say(state, "  " + file.enrichment.summary_line())
        say(state, report.summary_line())
        if not enrich and any(f.created or f.updated for f in report.files):
            say(
                state,
                "enrichment deferred: run 'harvest enrich' to fetch PMC and Crossref for the new articles",
            )
    for file in report.files:
        if file.outcome in {"refused", "failed"}:
            error_line(state, file.summary_line())
        report_errors(state, file.enrichment.errors if file.enrichment else [], [])
        for conflict in file.conflicts[:10]:
            error_line(state, f"{file.path}: conflict: {conflict}")
        if file.conflict_count > 10:
            more = file.conflict_count - 10
            error_line(state, f"{file.path}: and {more} more conflicts: see 'harvest conflicts'")
        if file.rejected_count and file.outcome == "applied":
            for reason in file.rejected_reasons:
                error_line(state, f"{file.path}: rejected, kept raw in rejected_records: {reason}")
            if file.rejected_count > len(file.rejected_reasons):
                more = file.rejected_count - len(file.rejected_reasons)
                error_line(state, f"{file.path}: and {more} more rejected records: see rejected_records")


@app.command("worker", short_help=_SHORT["worker"], cls=HelpCommand)
def worker_command(
    ctx: typer.Context,
    lease: Annotated[
        float | None,
        typer.Option(
            "--lease",
            min=1.0,
            metavar="SECONDS",
            help="How long a claim on a file lasts unless renewed (default 60); a worker renews it every "
            "few seconds while it lives.",
        ),
    ] = None,
    until_done: Annotated[
        bool,
        typer.Option("--until-done", help="End once no file is waiting or claimed (default: wait for more)."),
    ] = False,
    run_id: Annotated[int | None, typer.Option("--run-id", hidden=True)] = None,
) -> int:
    """Apply files of the database's work queue (PostgreSQL), one at a time, until stopped.

    Any number of workers on any number of hosts may work on one database: each claims a file no other
    holds, in NLM's order rules (baseline files side by side, each update file after every one before
    it), and applies it as 'harvest ingest' does. Files get into the queue with 'harvest ingest --workers
    N FILE|DIR...' or 'harvest ingest --join FILE|DIR...'; 'harvest queue' shows them. A worker killed
    mid-file loses its claim at once (its connection ends) or when its lease runs out, and another applies
    the file. SIGTERM gives the file held back to the queue and ends the worker.

    Exit 0: stopped, or (--until-done) nothing left; 2: not a PostgreSQL database; 5: database problem
    (the file held goes back to the queue); 130: interrupted. What each file came to is printed (unless
    -q), logged, and shown by 'harvest queue'.

    \b
    Examples:
      harvest worker                       a service: systemd starts one per host (see README)
      harvest -q worker --until-done       help until the queue is empty, then end
    """
    from db.queue import DEFAULT_LEASE
    from db.runs import start_run
    from harvester.jobs.services import build_services
    from harvester.jobs.workers import run_worker

    state = _state(ctx)
    settings = state.settings()
    _require_postgresql(state, "harvest worker")
    engine = state.engine()

    def said(file: Any) -> None:
        if file.outcome in {"refused", "failed"}:
            error_line(state, file.summary_line())
        else:
            say(state, file.summary_line())

    options = _worker_options(lease or DEFAULT_LEASE, until_done=until_done)
    own = run_id is None
    runs = start_run(engine, "worker") if run_id is None else run_id
    with _recorded_run(state, engine, runs) if own else _nothing() as finish:
        with _stop_on_sigterm():
            report = run_worker(
                engine,
                settings,
                run_id=runs,
                options=options,
                services=lambda: build_services(settings),
                own_run=own,
                on_file=None if state.json_output else said,
            )
        if finish is not None:
            finish(ExitCode.OK, report.as_dict())
    state.summary = report.summary_line()
    if state.json_output:
        emit_json(report.as_dict())
    else:
        say(state, report.summary_line())
    return int(ExitCode.OK)


def _require_postgresql(state: State, what: str) -> None:
    """Refuse a queue command on SQLite before the database is opened (nor created)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(state.settings().database_url).get_backend_name()
    except ArgumentError:
        return  # opening it says what is wrong with the URL
    if backend != "postgresql":
        from db.queue import postgresql_needed

        raise postgresql_needed(what)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@app.command("queue", short_help=_SHORT["queue"], cls=HelpCommand)
def queue_command(ctx: typer.Context) -> int:
    """Show the work queue of 'harvest ingest --workers N' and 'harvest worker' (PostgreSQL).

    Each file's state: applied, skipped (applied before), claimed (by which worker on which host, since
    when, how far), waiting (and for which earlier file), refused or failed with the reason; the workers
    alive; records per second over the last 15 minutes and the time left at that rate. --json prints
    every file. Exit 0; 2: not a PostgreSQL database; 5: no database, or it cannot be read.

    \b
    Examples:
      harvest queue
      harvest --json queue
    """
    return _show_queue(_state(ctx))


def _show_queue(state: State) -> int:
    from harvester.jobs.workers import queue_status

    _require_postgresql(state, "harvest queue")
    engine = state.read_engine()
    status = queue_status(engine, state.settings().database_url_display)
    if state.json_output:
        emit_json(status.as_dict())
    else:
        for line in status.lines():
            echo(line)
    return int(ExitCode.OK)


# ---- reading back --------------------------------------------------------------------------------


@app.command("show", short_help=_SHORT["show"], cls=HelpCommand)
def show_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="PMIDs, PMCIDs or DOIs of stored articles.")
    ] = None,
    from_file: FromOption = None,
    output_format: Annotated[
        str,
        typer.Option("--format", "-f", metavar="FORMAT", help="text, or json (a JSON array of documents)."),
    ] = "text",
) -> int:
    """Show stored articles (by PMID, PMCID or DOI) as text or JSON; exit 3 if one is not stored.

    With the global --json, one object: {"articles": [documents], "not_stored": [ids]}.

    \b
    Examples:
      harvest show 35350566 PMC8958025
      harvest show -f json 10.3389/fonc.2022.836548
      harvest --json show 35350566
    """
    from db.documents import load_documents, resolve_identifiers

    if output_format not in {"text", "json"}:
        raise UsageError(f"--format must be text or json, not {output_format!r}")
    state = _state(ctx)
    ids = _ids_given(ids, from_file, "ids")
    database = state.read_documents_database()
    found = resolve_identifiers(database, ids)
    missing = [given for given, article_id in found.items() if article_id is None]
    article_ids = list(dict.fromkeys(a for a in found.values() if a is not None))
    documents = list(load_documents(database, article_ids, include_deleted=True))
    if state.json_output:
        emit_json({"articles": documents, "not_stored": missing})
    elif output_format == "json":
        echo(json.dumps(documents, ensure_ascii=False, indent=2))
    elif documents:
        echo("\n\n".join(_as_text(doc) for doc in documents))
    state.summary = f"shown {len(documents)}, not stored {len(missing)}"
    if missing:
        error_line(state, "not stored: " + " ".join(missing))
        return int(ExitCode.NOT_FOUND)
    return int(ExitCode.OK)


def _as_text(doc: dict[str, Any]) -> str:
    """A reader's view of a document; each merged field ends with the source it came from."""
    provenance: dict[str, dict[str, Any]] = doc.get("provenance") or {}

    def src(*fields: str) -> str:
        for name in fields:
            origin = provenance.get(name)
            if origin:
                return f"  [{origin['source']} {origin['source_id']}]"
        return ""

    journal = doc.get("journal") or {}
    authors = "; ".join(
        a.get("collective_name") or ", ".join(x for x in (a.get("last_name"), a.get("fore_name")) if x)
        for a in doc.get("authors", [])
    )
    license_ = doc.get("license") or {}
    funders = "; ".join(
        (f.get("name") or f.get("doi") or "funder not named")
        + (f" ({', '.join(f['awards'])})" if f.get("awards") else "")
        for f in doc.get("funders") or []
    )
    retraction = "; ".join(f"{r['source']}: {r['statement']}" for r in doc.get("retraction_sources") or [])
    lines = [
        f"PMID         {doc.get('pmid') or '-'}  (version {doc.get('pmid_version') or '-'})"
        + ("" if doc.get("in_pubmed", True) else "  (not in PubMed: stored from Crossref)"),
        f"PMCID        {doc.get('pmcid') or '-'}{src('pmcid')}",
        f"DOI          {doc.get('doi') or '-'}{src('doi')}",
        f"Title        {doc.get('title') or '-'}{src('title')}",
        f"Authors      {authors or '-'}{src('authors')}",
        f"Journal      {journal.get('title') or '-'} ({journal.get('iso_abbrev') or '-'}), "
        f"ISSN {journal.get('issn') or '-'}, vol {journal.get('volume') or '-'}, "
        f"issue {journal.get('issue') or '-'}, pages {journal.get('pages') or '-'}"
        f"{src('journal_title', 'volume', 'pages')}",
        f"Published    {doc.get('pub_date') or '-'} (as given: {doc.get('pub_date_raw') or '-'}); "
        f"epub {doc.get('epub_date') or '-'}{src('pub_date', 'epub_date')}",
        f"Publisher    {doc.get('publisher') or '-'}{src('publisher')}",
        f"Licence      {license_.get('url') or '-'} ({license_.get('type') or '-'}){src('license')}",
        f"Copyright    {doc.get('copyright') or '-'}{src('copyright')}",
        f"Subjects     {'; '.join(doc.get('subjects') or []) or '-'}{src('subjects')}",
        f"Funders      {funders or '-'}{src('funders')}",
        f"Citations    {doc.get('citation_count') if doc.get('citation_count') is not None else '-'}"
        f"; references {doc.get('references_count') if doc.get('references_count') is not None else '-'}"
        f"{src('citation_count')}",
        f"Language     {', '.join(doc.get('language') or []) or '-'}",
        f"Types        {'; '.join(doc.get('publication_types') or []) or '-'}"
        + (f"; Crossref: {doc['crossref_type']}" if doc.get("crossref_type") else ""),
        f"MeSH         {'; '.join(m['descriptor'] for m in doc.get('mesh') or []) or '-'}",
        f"Keywords     {'; '.join(doc.get('keywords') or []) or '-'}",
        f"Retracted    {'yes (' + retraction + ')' if doc.get('retracted') else 'no'}"
        + ("   (deleted from PubMed)" if doc.get("deleted") else ""),
    ]
    lines.append(_icite_line(doc))
    for d in doc.get("disagreements") or []:
        theirs = f"{d['other_source']} {d['other_value']!r}"
        lines.append(f"Disagrees    {d['field']}: {d['source']} {d['value']!r} vs {theirs}")
    lines.append("Abstract" + src("abstract"))
    lines.extend(f"  {line}" for line in (doc.get("abstract") or "-").splitlines())
    return "\n".join(lines)


def _icite_line(doc: dict[str, Any]) -> str:
    """The latest iCite metrics, or why there are none."""
    icite = (doc.get("metrics") or {}).get("icite")
    if not icite:
        why = {"not_found": "iCite does not know it", None: "iCite not asked"}.get(
            doc.get("icite_status"), "none"
        )
        return f"iCite        - ({why})"

    def num(name: str) -> str:
        value = icite.get(name)
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return (
        f"iCite        RCR {num('relative_citation_ratio')} (NIH percentile {num('nih_percentile')}), "
        f"{num('citation_count')} citations, APT {num('apt')}; as of {icite['valid_on']}; stored edges: "
        f"cited by {icite['cited_by_stored_edges']}, cites {icite['references_stored_edges']}"
        f"  [icite {doc.get('pmid')}]"
    )


def _views_epilog() -> str:
    from db.reporting import VIEWS

    lines = [f"  {view.name}: {view.description}" for view in VIEWS]
    return (
        "\b\nReporting views (--view NAME; columns and example queries in docs/reporting.md):\n"
        + "\n".join(lines)
    )


class _ViewsEpilogCommand(HelpCommand):
    """`harvest export --help` lists the reporting views: read from db.reporting only when help is shown,
    so that importing the CLI does not import SQLAlchemy."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        self.epilog = _views_epilog()
        super().format_epilog(ctx, formatter)


@app.command("export", short_help=_SHORT["export"], cls=_ViewsEpilogCommand)
def export_command(
    ctx: typer.Context,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="jsonl, csv, or solr (a JSON array of VuFind/Solr documents; articles only).",
        ),
    ] = "jsonl",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Write to PATH instead of stdout: a regular file (or a new one) is replaced atomically, "
            "a symlink's target likewise; a FIFO or device is written to; '-' is stdout.",
        ),
    ] = None,
    view: Annotated[
        str | None,
        typer.Option(
            "--view",
            metavar="NAME",
            help="Export the rows of a reporting view (listed below) instead of articles.",
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            metavar="SQL",
            help="Export the rows of one SQL SELECT instead of articles; it runs read-only and cannot change "
            "the database.",
        ),
    ] = None,
) -> int:
    """Export every stored article (deleted ones excluded), a reporting view, or a query's rows.

    Articles go out as JSON Lines, CSV or Solr documents; a view's or query's rows as JSON Lines (one
    object per row) or CSV (a header row), streamed as the database returns them. With the global
    --json, the summary ({"exported": N, "output": PATH, ...}) is the one object on stdout, so the data
    must go to a file (-o PATH).

    \b
    Examples:
      harvest export -o articles.jsonl
      harvest export -f csv --view report_retractions -o retractions.csv
      harvest export --query "SELECT pmid, title FROM articles LIMIT 5" | head
    """
    if output_format not in {"jsonl", "csv", "solr"}:
        raise UsageError(f"--format must be jsonl, csv or solr, not {output_format!r}")
    if view is not None and query is not None:
        raise UsageError("give --view or --query, not both")
    if (view is not None or query is not None) and output_format == "solr":
        raise UsageError("--format solr exports articles only: use jsonl or csv with --view or --query")
    state = _state(ctx)
    to_stdout = output is None or output == "-"
    if state.json_output and to_stdout:
        raise UsageError("with --json, stdout carries the summary object: write the data with -o PATH")
    if view is not None:
        from db.reporting import get_view

        get_view(view)  # an unknown name fails before the database is opened
    engine = state.read_engine()
    what = "articles" if view is None and query is None else "rows"
    if to_stdout:
        stdout = cast(TextIO, _GuardedOutput(sys.stdout, "standard output"))
        count = _export(engine, output_format, stdout, view=view, query=query)
    else:
        with open_output(Path(cast(str, output))) as out:
            count = _export(engine, output_format, out, view=view, query=query)
    state.summary = f"exported {count} {what}" + ("" if to_stdout else f" to {output}")
    if state.json_output:
        emit_json({"exported": count, "what": what, "format": output_format, "output": output})
    elif not to_stdout:
        say(state, state.summary)
    else:
        log.info("%s", state.summary)
    return int(ExitCode.OK)


def _export(
    engine: Engine, output_format: str, out: TextIO, *, view: str | None = None, query: str | None = None
) -> int:
    """Articles as documents, or, given a view or a query, its rows."""
    from db.documents import export_documents
    from db.reporting import export_report
    from db.solr import export_solr

    if view is not None or query is not None:
        return export_report(
            engine, out, "csv" if output_format == "csv" else "jsonl", view=view, query=query
        )
    if output_format == "solr":
        return export_solr(engine, out)
    return export_documents(engine, "csv" if output_format == "csv" else "jsonl", out)


class _GuardedOutput:
    """A text stream whose write failures (disk full, I/O error) become OutputError, naming the output.

    EPIPE passes through unchanged: :func:`run` decides whether the reader left (exit 141) or not.
    """

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def _failed(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self._name}: {exc.strerror or exc}")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise self._failed(exc) from None

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise self._failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def open_output(path: Path) -> Iterator[TextIO]:
    """A text stream to write an output to, without destroying what is at ``path``.

    A new path or a regular file is written atomically: into a temporary file beside it, renamed over it
    when complete (a new file gets the mode the umask gives, 0666 less the umask; a replaced one keeps its
    mode). A symlink is followed: its target is replaced so, and the link stays. A FIFO, a character
    device (/dev/stdout, /dev/null) or a socket is opened and written to, never replaced.

    Raises:
        UsageError: the path is a directory, or its folder cannot be written (exit 2).
        OutputError: writing failed (disk full, I/O error; exit 9); a temporary file is removed.
    """
    try:
        mode = os.stat(path).st_mode  # follows a symlink to what it points at
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {path}: it is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        try:
            stream = path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        guarded = _GuardedOutput(stream, str(path))
        try:
            yield cast(TextIO, guarded)
            guarded.flush()
        finally:
            try:
                stream.close()
            except OSError:
                pass
        return
    target = Path(os.path.realpath(path))  # a symlink (even a dangling one) is written through
    try:
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=target.parent, prefix=f".{target.name}.", delete=False
        )
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        guarded = _GuardedOutput(cast(TextIO, handle), str(path))
        with handle:
            yield cast(TextIO, guarded)
            guarded.flush()
            try:
                os.fsync(handle.fileno())
            except OSError as exc:
                raise guarded._failed(exc) from None
        os.chmod(handle.name, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# ---- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade", short_help=_SHORT["upgrade"], cls=HelpCommand)
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.", metavar="REVISION")] = "head",
) -> int:
    """Migrate the database schema up to REVISION (default: head); a new database is created.

    \b
    Examples:
      harvest db upgrade
      harvest --db postgresql://harvest@db.example.org/harvest db upgrade
    """
    from db.engine import current_revision, upgrade

    state = _state(ctx)
    engine = state.engine(migrate=False)
    before = current_revision(engine)
    upgrade(engine, revision)
    _print_revision(state, engine, before)
    return int(ExitCode.OK)


@db_app.command("downgrade", short_help=_SHORT["downgrade"], cls=HelpCommand)
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(help="Target revision ('base' removes every table).", metavar="REVISION")
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask: the data of the removed tables is lost.")
    ] = False,
) -> int:
    """Migrate the database schema down to REVISION, dropping what later revisions added, with its data.

    On a terminal it asks first; otherwise it refuses without --yes (exit 2).

    \b
    Examples:
      harvest db downgrade 0004
      harvest db downgrade base --yes      removes every table
    """
    from db.engine import current_revision, downgrade

    state = _state(ctx)
    engine = state.read_engine(at_head=False)
    before = current_revision(engine)
    if before is not None and revision != before and not yes:
        where = state.settings().database_url_display
        question = (
            f"downgrade {where} from revision {before} to {revision}? Tables and columns added after "
            f"{revision} are dropped with their data"
        )
        if not sys.stdin.isatty():
            raise UsageError(f"{question}: refused without --yes (no terminal to ask)")
        if not typer.confirm(question[0].upper() + question[1:], default=False, err=True):
            raise UsageError("downgrade not confirmed: nothing changed")
    downgrade(engine, revision)
    _print_revision(state, engine, before)
    return int(ExitCode.OK)


def _print_revision(state: State, engine: Engine, before: str | None) -> None:
    from db.engine import current_revision

    now = current_revision(engine)
    where = state.settings().database_url_display
    state.summary = f"database {where} at revision {now or '(empty)'}, was {before or '(empty)'}"
    if state.json_output:
        emit_json({"database": where, "revision": now, "previous": before})
    else:
        say(state, state.summary)


@db_app.command("current", short_help=_SHORT["current"], cls=HelpCommand)
def db_current(ctx: typer.Context) -> int:
    """Print which database is used, its schema revision and the newest one this version knows.

    \b
    Examples:
      harvest db current
      harvest --json db current
    """
    from db.engine import current_revision, head_revision

    state = _state(ctx)
    engine = state.read_engine(at_head=False)
    current, head = current_revision(engine), head_revision()
    where = state.settings().database_url_display
    if state.json_output:
        emit_json({"database": where, "current": current, "head": head})
    else:
        echo(f"database {where}: revision {current or '(empty database)'}; head {head}")
    return int(ExitCode.OK)


# ---- entry point ---------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; never raises, never prints a traceback to the console.

    The log file (HARVEST_LOG_FILE), once settings are read, gets one line per run: the command, its
    summary and its exit code.
    """
    from typer._click.exceptions import NoArgsIsHelpError  # typer's own copy of click

    args = list(argv) if argv is not None else sys.argv[1:]
    state = State()
    code = _run(args, state, NoArgsIsHelpError)
    code = _flush_stdout(state, code)
    state.close()
    if state.logging_ready:
        shown = " ".join(["harvest", *args])
        log.info(
            "run: %s: exit %d%s", shown, code, f"; {state.summary}" if state.summary else "", extra=FILE_ONLY
        )
    return code


def _run(args: list[str], state: State, no_args_error: type[Exception]) -> int:
    try:
        result = app(args=args, prog_name="harvest", standalone_mode=False, obj=state)
    except no_args_error as exc:  # `harvest` or `harvest db` alone: the help, as click gives it
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return int(ExitCode.USAGE)
    except typer.TyperException as exc:  # an argument error found by the parser: one line
        context = getattr(exc, "ctx", None)
        where = context.command_path if context is not None else "harvest"
        format_message = getattr(exc, "format_message", None)
        message = str(format_message() if callable(format_message) else exc).strip().rstrip(".")
        error_line(None, f"{message[:1].lower()}{message[1:]} (see '{where} --help')")
        return int(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        result = int(ExitCode.INTERRUPTED)
    except SystemExit as exc:
        # Typer ends a command that met EPIPE with a bare exit 1, which here would read as a bug.
        broken = exc.__context__
        if not isinstance(broken, OSError) or broken.errno != errno.EPIPE:
            raise
        if _stdout_reader_gone():  # `harvest export | head`: the reader has all it wanted
            _discard_stdout()
            return int(ExitCode.OUTPUT_CLOSED)
        error_line(state, f"a pipe was closed early: {broken.strerror or broken}")  # a pipe of our own
        return int(StorageError.exit_code)
    except HarvestError as exc:
        log.debug("error detail", exc_info=True)
        error_line(state, str(exc))
        return int(exc.exit_code)
    except OSError as exc:
        log.debug("error detail", exc_info=True)
        error_line(state, _os_reason(exc))
        return int(StorageError.exit_code)
    except MemoryError:
        error_line(state, "out of memory")
        return int(ExitCode.INTERNAL)
    except Exception as exc:  # a bug: keep the console to one line, the log file has the traceback
        log.info("internal error", exc_info=True)
        error_line(
            state,
            f"internal error (a bug): {exc or 'no message'} "
            "(run with -vv or set HARVEST_LOG_FILE for the traceback)",
        )
        return int(ExitCode.INTERNAL)
    if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into exit 130
        error_line(state, "interrupted; every batch stored before stays stored")
    return int(result) if isinstance(result, int) else 0


def _flush_stdout(state: State, code: int) -> int:
    """Flush standard output now, so that a full disk is reported (exit 9) rather than lost at exit."""
    if code == ExitCode.OUTPUT_CLOSED:
        return code
    try:
        sys.stdout.flush()
    except OSError as exc:
        _discard_stdout()
        if exc.errno == errno.EPIPE and _stdout_reader_gone():
            return int(ExitCode.OUTPUT_CLOSED)
        error_line(state, f"cannot write to standard output: {exc.strerror or exc}")
        return int(ExitCode.OUTPUT_FAILED)
    return code


def _stdout_reader_gone() -> bool:
    """True when standard output is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno() if sys.__stdout__ else 1, select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no usable stdout
        return False


def _discard_stdout() -> None:
    """Point file descriptor 1 at the null device, so flushing what is still buffered at exit is silent."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass


def _known_secrets() -> tuple[str, ...]:
    """Secret values from the environment, for redacting messages raised before settings were built."""
    from harvester.core.dburl import url_password

    values = [os.environ[n] for n in ("NCBI_API_KEY", "CROSSREF_PLUS_TOKEN") if os.environ.get(n)]
    password = url_password(os.environ.get("HARVEST_DATABASE_URL") or "sqlite://")
    if password:
        values.append(password)
    return tuple(values)


def main() -> None:
    sys.exit(run())

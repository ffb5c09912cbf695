"""The ``harvest`` command: parse arguments, build settings, call one pipeline function, print a summary.

Errors from the one exception tree become a one-line message on stderr and a documented exit code
(:class:`harvester.errors.ExitCode`); a traceback is written only to the log at -vv.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import Engine

from harvester import __version__
from harvester.errors import ExitCode, HarvestError, StorageError, UsageError
from harvester.http import redact
from harvester.logsetup import setup_logging
from harvester.pipeline import HarvestReport, IdKind, build_services, harvest, read_id_file
from harvester.settings import Settings, load_settings

log = logging.getLogger("harvester")

HELP = """Keep a local database of PubMed article metadata true to its sources.

Exit codes: 0 all stored; 1 internal error; 2 usage error (bad arguments, malformed ids, broken
config); 3 some ids not found upstream (the rest stored); 4 upstream failure (some ids could not be
fetched after retries; the rest stored); 5 database error; 6 a record matched two stored articles
(recorded in conflicts, not merged); 7 another run (nightly, ingest) holds the lock, nothing done;
130 interrupted; 141 the reader of the output closed it (`harvest export | head`).
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(
    help="Inspect and migrate the database schema (Alembic migrations).", no_args_is_help=True
)
app.add_typer(db_app, name="db")


@dataclass
class State:
    """Global options; settings, logging and the database are set up on first use, once."""

    config: Path | None
    db: str | None
    verbosity: int
    json_output: bool
    _settings: Settings | None = None
    _engine: Engine | None = None
    _secrets: tuple[str, ...] = field(default_factory=tuple)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, database_url=self.db)
            self._secrets = self._settings.secrets
            setup_logging(verbosity=self.verbosity, log_file=self._settings.log_file, secrets=self._secrets)
            log.debug("settings: %r (database %s)", self._settings, self._settings.database_url_display)
        return self._settings

    def engine(self, *, migrate: bool = True) -> Engine:
        from db.engine import open_database

        if self._engine is None:
            self._engine = open_database(self.settings().database_url, migrate=migrate)
        return self._engine

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    @property
    def console(self) -> Console:
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
            "--config", "-c", help="TOML config file (default: $HARVEST_CONFIG if set; none otherwise)."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database: a SQLAlchemy URL (sqlite:///path, postgresql+psycopg://...) or a SQLite file "
            "path. Overrides HARVEST_DATABASE_URL and the config file. "
            "Default: ~/.local/share/pubmed-harvester/harvest.sqlite.",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as one JSON object on stdout.")
    ] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"pubmed-harvester {__version__}")
        raise typer.Exit(0)
    ctx.obj = State(config=config, db=db, verbosity=-1 if quiet else verbose, json_output=json_output)


# ---- harvest by id -------------------------------------------------------------------------------

IdsArgument = Annotated[
    list[str] | None, typer.Argument(help="Ids, separated by spaces.", show_default=False)
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Read ids from FILE, one per line ('-' = standard input); blank lines and # comments skipped.",
    ),
]


NoEnrichOption = Annotated[
    bool, typer.Option("--no-enrich", help="Skip PMC and Crossref enrichment (PubMed only).")
]


def _harvest_command(
    ctx: typer.Context, kind: IdKind, ids: list[str] | None, from_file: str | None, no_enrich: bool
) -> int:
    from db.reconcile import start_run

    state = _state(ctx)
    values = list(ids or [])
    if from_file is not None:
        values.extend(read_id_file(from_file, sys.stdin.read))
    if not values:
        raise UsageError(f"no {kind.upper()}s given: name them as arguments or with --from FILE")
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


@contextmanager
def _recorded_run(
    state: State, engine: Engine, run_id: int
) -> Iterator[Callable[[ExitCode, dict[str, object]], None]]:
    """Closes the harvest_runs row: with the summary on success, as failed or interrupted otherwise."""
    from db.reconcile import finish_run

    def finish(code: ExitCode, summary: dict[str, object]) -> None:
        finish_run(engine, run_id, "ok" if code in {ExitCode.OK, ExitCode.NOT_FOUND} else "partial", summary)

    try:
        yield finish
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            finish_run(
                engine, run_id, status, {"error": redact(f"{type(exc).__name__}: {exc}", state.secrets)}
            )
        except HarvestError:
            log.warning("could not record the end of run %d", run_id)
        raise


def _print_report(state: State, report: HarvestReport) -> None:
    errors = [*report.errors, *(report.enrichment.errors if report.enrichment else [])]
    for message in errors:
        log.error("%s", message)
    if state.json_output:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    typer.echo(report.summary_line())
    if report.enrichment is not None:
        typer.echo(report.enrichment.summary_line())
    lines = [
        ("not found", report.not_found),
        ("failed", report.failed),
        ("invalid", [repr(v) for v in report.invalid]),
        ("conflict", [*report.conflicts, *(report.enrichment.conflicts if report.enrichment else [])]),
    ]
    if report.enrichment is not None:
        lines.append(
            ("enrichment failed", [*report.enrichment.pmc.failed, *report.enrichment.crossref.failed])
        )
    for label, items in lines:
        if items:
            typer.echo(f"{label}: " + " ".join(items), err=True)


@contextmanager
def _progress(state: State, *, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for interactive runs of more than one batch; nothing under cron."""
    interactive = sys.stderr.isatty() and state.verbosity >= 0 and not state.json_output
    if not interactive or total <= state.settings().efetch_batch_size:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=state.console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@app.command("pmid")
def pmid_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Harvest articles by PMID (e.g. 35350566)."""
    return _harvest_command(ctx, "pmid", ids, from_file, no_enrich)


@app.command("pmcid")
def pmcid_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Harvest articles by PMCID (PMC8958025, pmc8958025 or 8958025), mapped through the PMC ID Converter."""
    return _harvest_command(ctx, "pmcid", ids, from_file, no_enrich)


@app.command("doi")
def doi_command(
    ctx: typer.Context,
    ids: IdsArgument = None,
    from_file: FromOption = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Harvest articles by DOI (10.x/y, doi:10.x/y or https://doi.org/10.x/y; case does not matter)."""
    return _harvest_command(ctx, "doi", ids, from_file, no_enrich)


@app.command("search")
def search_command(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A PubMed query, as typed in PubMed (quote it).")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="First day, YYYY-MM-DD, inclusive (default: 1600-01-01, before any record)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day, YYYY-MM-DD, inclusive (default: today, UTC).")
    ] = None,
    datetype: Annotated[
        str,
        typer.Option(
            "--datetype", help="The date --since/--until apply to: edat (entered), mdat (modified), pdat."
        ),
    ] = "edat",
    max_results: Annotated[
        int | None, typer.Option("--max", help="Fetch at most N records, newest first.", show_default=False)
    ] = None,
    no_enrich: NoEnrichOption = False,
) -> int:
    """Harvest every record a PubMed query finds, beyond esearch's 9,999 cap, each slice verified."""
    from db.reconcile import start_run
    from harvester.search import check_search_arguments, parse_day, run_search

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
    for message in [*report.errors, *(report.enrich.errors if report.enrich else [])]:
        log.error("%s", message)
    if state.json_output:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return int(report.exit_code())
    typer.echo(report.summary_line())
    if report.enrich is not None:
        typer.echo(report.enrich.summary_line())
    for warning in report.warnings:
        typer.echo(f"esearch: {warning}", err=True)
    for failed in report.failed_slices:
        typer.echo(f"failed slice: {failed.error}", err=True)
    lines = [
        ("failed", report.failed_ids),
        ("conflict", [*report.conflicts, *(report.enrich.conflicts if report.enrich else [])]),
    ]
    if report.enrich is not None:
        lines.append(("enrichment failed", [*report.enrich.pmc.failed, *report.enrich.crossref.failed]))
    for label, items in lines:
        if items:
            typer.echo(f"{label}: " + " ".join(items), err=True)
    return int(report.exit_code())


@app.command("enrich")
def enrich_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(help="PMIDs, PMCIDs or DOIs of stored articles (default: all due).")
    ] = None,
    stale_days: Annotated[
        int,
        typer.Option(
            "--stale-days",
            min=0,
            help="Without ids: enrich articles whose PMC or Crossref record is missing or older than N days.",
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
    """Fetch PMC front matter, Crossref works and iCite metrics again for stored articles; store changes."""
    from datetime import UTC, datetime, timedelta

    from db.documents import resolve_identifiers
    from db.reconcile import start_run
    from db.targets import enrichment_targets, stale_article_ids
    from harvester.pipeline import enrich_articles

    sources = tuple(dict.fromkeys(s.strip().lower() for s in source or ("pmc", "crossref", "icite")))
    unknown = [s for s in sources if s not in ("pmc", "crossref", "icite")]
    if unknown:
        raise UsageError(f"--source {unknown[0]!r}: use pmc, crossref or icite")
    state = _state(ctx)
    settings = state.settings()
    engine = state.engine()
    missing: list[str] = []
    if ids:
        found = resolve_identifiers(engine, ids)
        missing = [given for given, article_id in found.items() if article_id is None]
        article_ids = [a for a in dict.fromkeys(found.values()) if a is not None]
    else:
        cutoff = datetime.now(UTC) - timedelta(days=stale_days)
        article_ids = (
            stale_article_ids(engine, fetched_before=cutoff) if {"pmc", "crossref"} & set(sources) else []
        )
        if "icite" in sources:
            from db.icite import icite_due_article_ids

            article_ids = sorted({*article_ids, *icite_due_article_ids(engine, fetched_before=cutoff)})
    run_id = start_run(engine, f"enrich ({len(article_ids)} articles)")
    with _recorded_run(state, engine, run_id) as finish:
        enrichment = enrich_articles(
            enrichment_targets(engine, article_ids),
            services=build_services(settings),
            engine=engine,
            run_id=run_id,
            policy=settings.merge_policy,
            sources=sources,
        )
        report = HarvestReport(
            requested=len(article_ids) + len(missing), not_found=missing, enrichment=enrichment
        )
        finish(report.exit_code, report.as_dict())
    for message in enrichment.errors:
        log.error("%s", message)
    if state.json_output:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        typer.echo(f"articles {len(article_ids)}; " + enrichment.summary_line())
        if missing:
            typer.echo("not stored: " + " ".join(missing), err=True)
        for label, items in (
            ("conflict", enrichment.conflicts),
            (
                "enrichment failed",
                [*enrichment.pmc.failed, *enrichment.crossref.failed, *enrichment.icite.failed],
            ),
        ):
            if items:
                typer.echo(f"{label}: " + " ".join(items), err=True)
    return int(report.exit_code)


@app.command("ingest-icite")
def ingest_icite_command(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="iCite snapshot CSV files (plain or .gz): metadata, citations.")
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
    """
    from db.reconcile import start_run
    from harvester.icite_ingest import ingest_icite_file

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
            log.warning("%s: %s", report.path, message)
    if state.json_output:
        typer.echo(json.dumps({"files": [r.as_dict() for r in reports]}, ensure_ascii=False))
    else:
        for report in reports:
            typer.echo(report.summary_line())
    return int(ExitCode.OK)


@app.command("nightly")
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
    failed; 7: another run is active (nothing done); 2: config problem; 5: database problem.
    """
    from harvester.nightly import run_nightly, select_searches

    state = _state(ctx)
    settings = state.settings()
    select_searches(settings.searches, search or [])  # a config problem is reported before any work
    engine = state.engine()
    report = run_nightly(settings, build_services(settings), engine, only=search or [], enrich=not no_enrich)
    for outcome in report.searches:
        for message in outcome.as_search_run().errors:
            log.error("%s", message)
    if report.enrichment is not None:
        for message in report.enrichment.errors:
            log.error("%s", message)
    if state.json_output:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        typer.echo(report.summary_line())
        for outcome in report.searches:
            typer.echo("  " + outcome.summary_line())
        if report.enrichment is not None:
            typer.echo("  " + report.enrichment.summary_line())
    return int(report.exit_code)


@app.command("runs")
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N runs.")] = 20,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs with this status: running, ok, partial, failed, abandoned."),
    ] = None,
) -> int:
    """List recorded runs, newest first: status, times, and per search its window, counts and watermark."""
    from db.runs import RUN_STATUSES, list_runs

    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"--status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    state = _state(ctx)
    runs = list_runs(state.engine(), limit=limit, status=status)
    if state.json_output:
        typer.echo(json.dumps([run.as_dict() for run in runs], ensure_ascii=False))
        return int(ExitCode.OK)
    if not runs:
        typer.echo("no runs recorded" + (f" with status {status}" if status else ""))
    for run in runs:
        started = f"{run.started_at:%Y-%m-%d %H:%M:%S}"
        ended = f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "-"
        where = f"  pid {run.pid} on {run.host}" if run.pid else ""
        typer.echo(f"#{run.id}  {run.status:<9} {started} -> {ended} UTC  {run.command}{where}")
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


@app.command("history")
def history_command(
    ctx: typer.Context,
    article: Annotated[str, typer.Argument(help="PMID, PMCID or DOI of a stored article.")],
) -> int:
    """List the recorded changes of a stored article: field, old and new value, source, run and time."""
    from db.documents import resolve_identifiers
    from db.reconcile import list_history

    state = _state(ctx)
    article_id = resolve_identifiers(state.engine(), [article])[article]
    if article_id is None:
        typer.echo(f"not stored: {article}", err=True)
        return int(ExitCode.NOT_FOUND)
    changes = list_history(state.engine(), article_id)
    if state.json_output:
        typer.echo(json.dumps(changes, ensure_ascii=False, default=str))
    elif not changes:
        typer.echo(f"no changes recorded for {article} since it was first stored")
    else:
        for change in changes:
            typer.echo(
                f"{change['changed_at']}  run {change.get('run_id') or '-'}  {change['source']:<8} "
                f"{change['field']}: {change['old_value']} -> {change['new_value']}"
            )
    return int(ExitCode.OK)


@app.command("conflicts")
def conflicts_command(
    ctx: typer.Context,
    status: Annotated[str, typer.Option("--status", help="open, resolved or all.")] = "open",
) -> int:
    """List records whose identifiers point at two different stored articles (never merged)."""
    from db.reconcile import list_conflicts

    if status not in {"open", "resolved", "all"}:
        raise UsageError(f"--status must be open, resolved or all, not {status!r}")
    state = _state(ctx)
    conflicts = list_conflicts(state.engine(), status=status)
    if state.json_output:
        typer.echo(json.dumps(conflicts, ensure_ascii=False, default=str))
    elif not conflicts:
        typer.echo(f"no {status if status != 'all' else ''} conflicts".replace("  ", " "))
    else:
        for c in conflicts:
            typer.echo(
                f"#{c['id']}  {c['detected_at']}  {c['source']} {c['source_id']} matches articles "
                f"{c['article_ids']}: {c['claims']}  [{c['status']}]"
            )
    return int(ExitCode.OK)


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Argument(
            help="PubMed baseline or update files (.xml or .xml.gz), local paths.",
            metavar="FILE",
            show_default=False,
        ),
    ],
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
) -> int:
    """Load PubMed baseline and update files: each once (by checksum), in NLM's order; deletions flagged.

    Exit 0: every file applied or already applied; 2: a path is missing, or a file was refused (out of
    order) or failed (truncated, not PubMed XML; not recorded, rerun it); 4: enrichment failed; 5: database
    problem; 7: another run is active (nothing done). Conflicts are counted, listed by 'harvest conflicts'.
    """
    from db.runs import FAILED, exclusive_run, finish_locked_run, start_locked_run
    from harvester.ingest import check_paths, ingest_files

    state = _state(ctx)
    paths = check_paths(files)  # a missing or unreadable path is reported before any work
    settings = state.settings()
    engine = state.engine()
    services = build_services(settings) if enrich else None
    with exclusive_run(engine, "harvest ingest"):
        run_id = start_locked_run(engine, f"ingest ({len(paths)} files)")
        try:
            with _progress(state, total=sum(p.stat().st_size for p in paths), label="ingest") as advance:
                report = ingest_files(
                    paths,
                    settings=settings,
                    services=services,
                    engine=engine,
                    force=force,
                    enrich=enrich,
                    baseline=baseline,
                    run_id=run_id,
                    progress=advance,
                )
        except BaseException as exc:
            error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            try:
                finish_locked_run(engine, run_id, FAILED, {"error": redact(error, state.secrets)})
            except HarvestError:
                log.warning("could not record the end of run %d", run_id)
            raise
        finish_locked_run(
            engine, run_id, "ok" if report.exit_code == ExitCode.OK else "partial", report.as_dict()
        )
    for file in report.files:
        for message in file.enrichment.errors if file.enrichment else []:
            log.error("%s", message)
    if state.json_output:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return int(report.exit_code)
    for file in report.files:
        typer.echo(file.summary_line())
        if file.enrichment is not None:
            typer.echo("  " + file.enrichment.summary_line())
        for conflict in file.conflicts[:10]:
            typer.echo(f"  conflict: {conflict}", err=True)
        if file.conflict_count > 10:
            typer.echo(f"  and {file.conflict_count - 10} more conflicts: see 'harvest conflicts'", err=True)
    typer.echo(report.summary_line())
    if not enrich and any(f.created or f.updated for f in report.files):
        typer.echo("enrichment deferred: run 'harvest enrich' to fetch PMC and Crossref for the new articles")
    return int(report.exit_code)


# ---- reading back --------------------------------------------------------------------------------


@app.command("show")
def show_command(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="PMIDs, PMCIDs or DOIs of stored articles.")],
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="text, or json (a JSON array of documents).")
    ] = "text",
) -> int:
    """Show stored articles (by PMID, PMCID or DOI) as text or JSON."""
    from db.documents import load_documents, resolve_identifiers

    if output_format not in {"text", "json"}:
        raise UsageError(f"--format must be text or json, not {output_format!r}")
    state = _state(ctx)
    found = resolve_identifiers(state.engine(), ids)
    missing = [given for given, article_id in found.items() if article_id is None]
    article_ids = list(dict.fromkeys(a for a in found.values() if a is not None))
    documents = list(load_documents(state.engine(), article_ids, include_deleted=True))
    if output_format == "json":
        typer.echo(json.dumps(documents, ensure_ascii=False, indent=2))
    else:
        typer.echo("\n\n".join(_as_text(doc) for doc in documents))
    if missing:
        typer.echo("not stored: " + " ".join(missing), err=True)
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
        (f.get("name") or "?") + (f" ({', '.join(f['awards'])})" if f.get("awards") else "")
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


@app.command("export", epilog=_views_epilog())
def export_command(
    ctx: typer.Context,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="jsonl, csv, or solr (a JSON array of VuFind/Solr documents; articles only).",
        ),
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.")
    ] = None,
    view: Annotated[
        str | None,
        typer.Option(
            "--view", help="Export the rows of a reporting view (listed below) instead of articles."
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            help="Export the rows of one SQL SELECT instead of articles; it runs read-only and cannot change "
            "the database.",
        ),
    ] = None,
) -> int:
    """Export every stored article (deleted ones excluded), a reporting view, or a query's rows.

    Articles go out as JSON Lines, CSV or Solr documents; a view's or query's rows as JSON Lines (one
    object per row) or CSV (a header row), streamed as the database returns them.
    """
    if output_format not in {"jsonl", "csv", "solr"}:
        raise UsageError(f"--format must be jsonl, csv or solr, not {output_format!r}")
    if view is not None and query is not None:
        raise UsageError("give --view or --query, not both")
    if (view is not None or query is not None) and output_format == "solr":
        raise UsageError("--format solr exports articles only: use jsonl or csv with --view or --query")
    if view is not None:
        from db.reporting import get_view

        get_view(view)  # an unknown name fails before the database is opened
    state = _state(ctx)
    engine = state.engine()
    if output is None:
        count = _export(engine, output_format, sys.stdout, view=view, query=query)
    else:
        count = _export_to_file(engine, output_format, output, view=view, query=query)
    log.info("exported %d %s", count, "article(s)" if view is None and query is None else "row(s)")
    if state.json_output:
        typer.echo(json.dumps({"exported": count, "output": str(output) if output else None}), err=True)
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


def _export_to_file(
    engine: Engine, output_format: str, output: Path, *, view: str | None = None, query: str | None = None
) -> int:
    directory = output.resolve().parent
    try:
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=directory, prefix=f".{output.name}.", delete=False
        )
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    try:
        with handle:
            count = _export(engine, output_format, cast(TextIO, handle), view=view, query=query)
        os.replace(handle.name, output)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return count


# ---- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> int:
    """Migrate the database schema up to REVISION (default: head)."""
    from db.engine import current_revision, upgrade

    state = _state(ctx)
    engine = state.engine(migrate=False)
    upgrade(engine, revision)
    typer.echo(f"database {state.settings().database_url_display} at revision {current_revision(engine)}")
    return int(ExitCode.OK)


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision ('base' removes every table).")],
) -> int:
    """Migrate the database schema down to REVISION."""
    from db.engine import current_revision, downgrade

    state = _state(ctx)
    engine = state.engine(migrate=False)
    downgrade(engine, revision)
    typer.echo(f"database {state.settings().database_url_display} at revision {current_revision(engine)}")
    return int(ExitCode.OK)


@db_app.command("current")
def db_current(ctx: typer.Context) -> int:
    """Print the database's schema revision and the newest one this version knows."""
    from db.engine import current_revision, head_revision

    state = _state(ctx)
    engine = state.engine(migrate=False)
    typer.echo(f"current {current_revision(engine) or '(empty database)'}; head {head_revision()}")
    return int(ExitCode.OK)


# ---- entry point ---------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; never raises, never prints a traceback to the console."""
    secrets: tuple[str, ...] = ()
    try:
        result = app(
            args=list(argv) if argv is not None else None, prog_name="harvest", standalone_mode=False
        )
    except typer.TyperException as exc:  # usage errors found by the argument parser (it prints them)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"harvest: error: {exc}", err=True)
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
        secrets = _known_secrets()  # a pipe of our own broke (a child process, a socket)
        typer.echo(f"harvest: error: {redact(f'{type(broken).__name__}: {broken}', secrets)}", err=True)
        return int(StorageError.exit_code)
    except HarvestError as exc:
        secrets = _known_secrets()
        log.debug("error detail", exc_info=True)
        typer.echo(f"harvest: error: {redact(str(exc), secrets)}", err=True)
        return int(exc.exit_code)
    except (OSError, MemoryError) as exc:
        secrets = _known_secrets()
        log.debug("error detail", exc_info=True)
        typer.echo(f"harvest: error: {redact(f'{type(exc).__name__}: {exc}', secrets)}", err=True)
        return int(StorageError.exit_code if isinstance(exc, OSError) else ExitCode.INTERNAL)
    except Exception as exc:  # a bug: keep the console to one line, the log file has the traceback
        secrets = _known_secrets()
        log.info("internal error", exc_info=True)
        typer.echo(
            f"harvest: internal error: {redact(f'{type(exc).__name__}: {exc}', secrets)} "
            "(run with -vv or set HARVEST_LOG_FILE for the traceback)",
            err=True,
        )
        return int(ExitCode.INTERNAL)
    if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into exit 130
        typer.echo("harvest: interrupted; every batch stored before stays stored", err=True)
    return int(result) if isinstance(result, int) else 0


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
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    values = [os.environ[n] for n in ("NCBI_API_KEY", "CROSSREF_PLUS_TOKEN") if os.environ.get(n)]
    try:
        password = make_url(os.environ.get("HARVEST_DATABASE_URL") or "sqlite://").password
    except ArgumentError:
        password = None
    if password:
        values.append(str(password))
    return tuple(values)


def main() -> None:
    sys.exit(run())

"""The nightly run: each configured search over its window since the last verified watermark, then stale
articles re-enriched, all under the run lock and recorded as one harvest_runs row.

A search's window is ``[watermark - lookback_days, today]`` (:func:`search_window`), on its datetype (mdat
by default, so changed records come back). Its watermark moves to the window's end only when
:func:`harvester.jobs.search.run_search` reports the whole window verified (every slice's fetched ids match
esearch's count, no batch failed); otherwise it stays and the next run redoes the window. The watermark
is written after the articles were stored, in the transaction that records the search's result
(:func:`db.runs.record_search`), so a crash at any point leaves it at or before the stored data, never
past it. Re-running a window stores nothing twice: storage is an upsert on PMID, one transaction a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Engine

from db.runs import (
    FAILED,
    OK,
    PARTIAL,
    SearchRun,
    SearchState,
    exclusive_run,
    failure_summary,
    finish_run,
    read_search_states,
    record_search,
    start_locked_run,
)
from harvester.core.errors import ExitCode, HarvestError, StorageError, UsageError
from harvester.core.settings import NightlySettings, SearchSpec, Settings
from harvester.jobs.enrichment import EnrichReport
from harvester.jobs.services import Services

if TYPE_CHECKING:
    from harvester.jobs.search import SearchReport

log = logging.getLogger(__name__)

LOCK_PURPOSE = "harvest nightly"


class SearchRunner(Protocol):
    """:func:`harvester.jobs.search.run_search`, or a stand-in for it in tests."""

    def __call__(
        self,
        query: str,
        *,
        datetype: str,
        since: date | None,
        until: date | None,
        settings: Settings,
        services: Services,
        engine: Engine,
        run_id: int | None,
        enrich: bool,
    ) -> SearchReport: ...


StaleEnricher = Callable[..., tuple[EnrichReport, int]]


@dataclass(frozen=True, slots=True)
class Window:
    """The days a search covers tonight, both inclusive."""

    since: date
    until: date


def search_window(
    spec: SearchSpec, state: SearchState | None, *, today: date, nightly: NightlySettings
) -> Window:
    """Tonight's window for a search: from its watermark minus the look-back (never before ``since``), or
    for a first run (no watermark, or the recorded query/datetype differ) from ``since`` or
    ``first_run_days`` back; always to ``today``. Like dlt's Incremental(cursor, initial_value, lag)."""
    first = spec.since if spec.since is not None else today - timedelta(days=nightly.first_run_days)
    same = state is not None and state.query == spec.query and state.datetype == spec.datetype
    if same and state is not None and state.watermark is not None:
        start = state.watermark - timedelta(days=nightly.lookback_days)
        if spec.since is not None:
            start = max(start, spec.since)
    else:
        start = first
    return Window(min(start, today), today)


@dataclass(slots=True)
class SearchOutcome:
    """What tonight's run did for one search."""

    spec: SearchSpec
    window: Window
    watermark_before: date | None
    report: SearchReport | None = None
    error: str | None = None  # why the search could not run at all (a usage or upstream error)
    usage_error: bool = False

    @property
    def verified(self) -> bool:
        return self.error is None and self.report is not None and self.report.verified

    @property
    def watermark_after(self) -> date | None:
        return self.window.until if self.verified else self.watermark_before

    def as_search_run(self) -> SearchRun:
        report = self.report
        slices = report.slices if report is not None else []
        failed = list(report.failed_ids) if report is not None else []
        failed += [pmid for s in slices for pmid in s.missing]
        errors = list(report.errors) if report is not None else []
        errors += [s.error for s in slices if s.error]
        errors += [self.error] if self.error else []
        return SearchRun(
            search=self.spec.name,
            query=self.spec.query,
            datetype=self.spec.datetype,
            window_start=self.window.since,
            window_end=self.window.until,
            expected=sum(s.expected for s in slices),
            fetched=sum(s.fetched for s in slices),
            created=report.created if report is not None else 0,
            updated=report.updated if report is not None else 0,
            unchanged=report.unchanged if report is not None else 0,
            verified=self.verified,
            watermark_before=self.watermark_before,
            watermark_after=self.watermark_after,
            failed_ids=tuple(dict.fromkeys(failed)),
            errors=tuple(dict.fromkeys(errors)),
        )

    def summary_line(self) -> str:
        run = self.as_search_run()
        head = (
            f"{run.search}: {run.window_start}..{run.window_end} [{run.datetype}] expected {run.expected}, "
            f"fetched {run.fetched}, created {run.created}, updated {run.updated}, unchanged {run.unchanged}"
        )
        if run.verified:
            return f"{head}; verified, watermark {run.watermark_after}"
        kept = run.watermark_before.isoformat() if run.watermark_before else "none yet"
        failed = f", {len(run.failed_ids)} failed ids" if run.failed_ids else ""
        return f"{head}; NOT verified{failed}, watermark stays {kept} (the window is redone next run)"


@dataclass(slots=True)
class NightlyReport:
    """What a nightly run did: per search, then the stale re-enrichment."""

    run_id: int
    today: date
    searches: list[SearchOutcome] = field(default_factory=list)
    stale: int = 0  # articles due for re-enrichment, asked
    enrichment: EnrichReport | None = None

    @property
    def enrichment_failed(self) -> bool:
        e = self.enrichment
        return e is not None and bool(e.pmc.failed or e.crossref.failed or e.errors)

    @property
    def exit_code(self) -> ExitCode:
        """2: a search is misconfigured; else 4: a window not verified or enrichment failed; else 6: a
        conflict (a record that would merge two stored articles, as for ``harvest pmid``); else 8: records
        rejected (kept raw); else 0."""
        if any(outcome.usage_error for outcome in self.searches):
            return ExitCode.USAGE
        if not all(outcome.verified for outcome in self.searches) or self.enrichment_failed:
            return ExitCode.UPSTREAM
        if self.conflicts:
            return ExitCode.CONFLICT
        if any(outcome.report is not None and outcome.report.rejected for outcome in self.searches):
            return ExitCode.REJECTED  # 8: stored but for records kept raw in rejected_records
        return ExitCode.OK

    @property
    def conflicts(self) -> bool:
        """A search or the stale re-enrichment met a conflict."""
        if self.enrichment is not None and self.enrichment.conflicts:
            return True
        return any(o.report is not None and o.report.exit_code() == ExitCode.CONFLICT for o in self.searches)

    @property
    def status(self) -> str:
        """The harvest_runs status: ok (with or without a conflict: all was done); failed when no search
        was verified; partial otherwise."""
        if self.exit_code in (ExitCode.OK, ExitCode.CONFLICT):
            return OK
        if self.searches and not any(outcome.verified for outcome in self.searches):
            return FAILED
        return PARTIAL

    def summary_line(self) -> str:
        verified = sum(outcome.verified for outcome in self.searches)
        line = f"nightly run {self.run_id}: {verified} of {len(self.searches)} searches verified"
        if self.enrichment is not None:
            line += f"; re-enriched {self.stale} stale articles"
        return line

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "today": self.today.isoformat(),
            "status": self.status,
            "searches": [outcome.as_search_run().as_dict() for outcome in self.searches],
            "stale": self.stale,
            "enrichment": self.enrichment.as_dict() if self.enrichment is not None else None,
            "exit_code": int(self.exit_code),
        }


def select_searches(searches: Sequence[SearchSpec], names: Sequence[str] = ()) -> list[SearchSpec]:
    """The configured searches, or those named (in config order).

    Raises:
        UsageError: no [[searches]] configured, or a name that is not configured.
    """
    if not searches:
        raise UsageError(
            "no searches configured: add a [[searches]] table (name, query) to the config file "
            "(see config.example.toml)"
        )
    known = {spec.name for spec in searches}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"unknown search {unknown[0]!r} (configured: {', '.join(sorted(known))})")
    return [spec for spec in searches if not names or spec.name in names]


def run_nightly(
    settings: Settings,
    services: Services,
    engine: Engine,
    *,
    only: Sequence[str] = (),
    enrich: bool = True,
    today: date | None = None,
    search: SearchRunner | None = None,
    enrich_stale: StaleEnricher | None = None,
) -> NightlyReport:
    """Run the configured searches incrementally, then re-enrich stale articles, under the run lock.

    Args:
        only: names of the searches to run (default: all).
        enrich: enrich what the searches find and re-enrich stale articles (PMC, Crossref).
        today: the last day of every window (default: today, UTC).
        search, enrich_stale: replace :func:`harvester.jobs.search.run_search` and
        :func:`enrich_stale_articles`.

    Raises:
        UsageError: no searches configured, or an unknown name in ``only``.
        BusyError: another run holds the lock; nothing was done.
        StorageError: the database failed; the run row is closed "failed" if it still can be, and no
            watermark moved past what was stored.
    """
    specs = select_searches(settings.searches, only)
    if search is None:
        from harvester.jobs.search import run_search

        search = run_search
    enrich_stale = enrich_stale or enrich_stale_articles
    today = today or datetime.now(UTC).date()
    with exclusive_run(engine, LOCK_PURPOSE):
        run_id = start_locked_run(engine, f"nightly ({', '.join(spec.name for spec in specs)})")
        report = NightlyReport(run_id=run_id, today=today)
        try:
            states = read_search_states(engine)
            for spec in specs:
                outcome = _run_search(
                    spec, states.get(spec.name), report, settings, services, engine, search, enrich=enrich
                )
                record_search(engine, run_id, outcome.as_search_run())
                report.searches.append(outcome)
                log.info("%s", outcome.summary_line())
            if enrich:
                harvested = [pmid for o in report.searches if o.report is not None for pmid in o.report.pmids]
                report.enrichment, report.stale = enrich_stale(
                    settings=settings,
                    services=services,
                    engine=engine,
                    run_id=run_id,
                    skip_pmids=harvested,
                    today=today,
                )
        except BaseException as exc:
            _close_failed(engine, run_id, report, exc)
            raise
        finish_run(engine, run_id, report.status, report.as_dict(), exit_code=report.exit_code)
    return report


def _run_search(
    spec: SearchSpec,
    state: SearchState | None,
    report: NightlyReport,
    settings: Settings,
    services: Services,
    engine: Engine,
    search: SearchRunner,
    *,
    enrich: bool,
) -> SearchOutcome:
    window = search_window(spec, state, today=report.today, nightly=settings.nightly)
    same = state is not None and state.query == spec.query and state.datetype == spec.datetype
    if state is not None and not same:
        log.warning(
            "search %s changed its query or datetype: it starts again from %s", spec.name, window.since
        )
    outcome = SearchOutcome(spec, window, state.watermark if state is not None and same else None)
    log.info("search %s: %s..%s on %s", spec.name, window.since, window.until, spec.datetype)
    try:
        outcome.report = search(
            spec.query,
            datetype=spec.datetype,
            since=window.since,
            until=window.until,
            settings=settings,
            services=services,
            engine=engine,
            run_id=report.run_id,
            enrich=enrich,
        )
    except StorageError:
        raise
    except HarvestError as exc:  # the search could not run; the others still do
        outcome.error = f"{spec.name}: {exc}"
        outcome.usage_error = isinstance(exc, UsageError)
        log.info("%s", outcome.error)  # the CLI prints it, once
    return outcome


def enrich_stale_articles(
    *,
    settings: Settings,
    services: Services,
    engine: Engine,
    run_id: int,
    skip_pmids: Sequence[str] = (),
    today: date | None = None,
) -> tuple[EnrichReport, int]:
    """Re-enrich the articles due tonight, each asked only of the sources it is due for, leaving out
    those tonight's searches just enriched:

    - PMC and Crossref records older than ``[nightly] stale_days`` (as ``harvest enrich --stale-days``),
      spread over that many nights; iCite's older than ``[nightly] icite_days``, spread over those (iCite
      updates monthly: each article about once a month);
    - sources never asked, always;
    - sources that said "not found", once their back-off is over (1, 2, 4, ... days after the last such
      day, at most ``[enrich] not_found_max_days``: db.lookups), on ``today`` (default: today, UTC).

    Returns:
        The enrichment report (with the look-ups left out as backed off) and the number of articles
        asked about.
    """
    from db.targets import Staleness, article_ids_by_pmid, due_targets
    from harvester.jobs.enrichment import enrich_articles, utc_today

    today = today or utc_today()
    now = datetime.now(UTC)
    skip = set(article_ids_by_pmid(engine, list(skip_pmids)).values()) if skip_pmids else set()

    # Spread over the nights of the stale age: each stale article is asked about once in that many
    # nights, not every night from the day it turned stale (an unchanged record never moves its fetched_at).
    def spread(days: int) -> Staleness:
        slots = max(1, days)
        return Staleness(now - timedelta(days=days), share=(today.toordinal() % slots, slots))

    pmc_crossref = spread(settings.nightly.stale_days)
    staleness = {"pmc": pmc_crossref, "crossref": pmc_crossref, "icite": spread(settings.nightly.icite_days)}
    due = due_targets(engine, staleness, today=today, max_days=settings.enrich.not_found_max_days, skip=skip)
    log.info(
        "re-enriching %d article(s) due (%s); backed off: %s",
        len(due.targets),
        ", ".join(f"{s} {sum(s in t.sources for t in due.targets)}" for s in staleness),
        ", ".join(f"{s} {n}" for s, n in due.backed_off.items()),
    )
    enrichment = EnrichReport()
    if due.targets:
        enrichment = enrich_articles(
            due.targets,
            services=services,
            engine=engine,
            run_id=run_id,
            policy=settings.merge_policy,
            today=today,
        )
    enrichment.add_backed_off(due.backed_off)
    return enrichment, len(due.targets)


def _close_failed(engine: Engine, run_id: int, report: NightlyReport, exc: BaseException) -> None:
    """Close the run row as failed or interrupted, keeping what was done and the exit code the process
    ends with; the original error is what the caller sees."""
    summary = failure_summary(exc, report.as_dict())
    try:
        finish_run(engine, run_id, summary["status"], summary, exit_code=summary["exit_code"])
    except HarvestError:
        log.warning("could not record the end of run %d", run_id)

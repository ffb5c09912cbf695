"""Harvest by search: esearch with the history server, sliced below PubMed's 9,999-record cap, verified.

PubMed's esearch lists, and its history server pages out, only the first 9,999 records of a search
(NBK25499; biopython#4353, cyanheads/pubmed-mcp-server#95). A search above that is cut into slices: the
date window is halved (on the search's datetype) until each slice holds at most 9,999 records; a single
day that still holds more is halved again by PMID range (``(query) AND lo:hi[uid]``, the workaround of
shivam221098/pubmed-api-v1, PEERS.md D). :func:`plan_slices` does that, newest slice first, given a
function that counts a slice; it never fetches itself.

Each slice is then fetched: esearch ``usehistory=y`` gives its Count, WebEnv, query_key and IdList, efetch
pages the records out of the history, and the PMIDs that came back are compared with the IdList and the
Count. Ids that did not come back are asked for once more by id; a slice still short fails, loudly, with
the figures, and the other slices go on (PEERS.md C: efetch answers can be silently short). Records are
stored as they arrive, so a failed slice loses nothing already stored, and a re-run is idempotent.

A search whose report is not :attr:`SearchReport.verified` must not move an incremental cursor
(PEERS.md J, wcmc-its/ReCiter#689).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Engine

from db.bulk import record_rejected
from db.conflicts import describe_found
from db.reconcile import reconcile_articles
from db.store import StoreResult, store_articles_isolated
from db.targets import article_ids_by_pmid, enrichment_targets
from harvester.core.errors import (
    ExitCode,
    FetchFailedError,
    IncompleteSearchError,
    ParseError,
    RejectedRequestError,
    UpstreamError,
    UsageError,
)
from harvester.core.records import Article, RejectedRecord
from harvester.core.settings import Settings
from harvester.jobs.enrichment import EnrichReport, enrich_articles
from harvester.jobs.services import Services
from harvester.sources.eutils import PUBMED_MAX_RECORDS, EfetchBatch, EsearchResult
from harvester.sources.pubmed_xml import parse_pubmed

log = logging.getLogger(__name__)

DATETYPES = ("edat", "mdat", "pdat")
SLICE_CAP = PUBMED_MAX_RECORDS  # the most records one slice may hold: esearch lists no more
# Without --since the window starts here: before any PubMed record, so nothing is left out, and the
# empty centuries cost one count request each while the window is halved.
EARLIEST_DATE = date(1600, 1, 1)
# PMID ranges start as 1..PMID_CEILING when a single day must be split (PMIDs have 8 digits in 2026);
# the halves' counts must add up to the day's, so a PMID above the ceiling would fail the day loudly.
PMID_CEILING = 999_999_999
_SHOWN_MISSING = 10  # missing ids named in a slice's one-line error


# ---------------------------------------------------------------------------------------------- slices


@dataclass(frozen=True, slots=True)
class SearchSlice:
    """A part of a search: a date window (inclusive, on the datetype) and optionally a PMID range."""

    mindate: date
    maxdate: date
    pmid_range: tuple[int, int] | None = None  # inclusive

    def __post_init__(self) -> None:
        if self.mindate > self.maxdate:
            raise ValueError(f"slice {self.mindate}..{self.maxdate}: mindate after maxdate")
        if self.pmid_range is not None and not 1 <= self.pmid_range[0] <= self.pmid_range[1]:
            raise ValueError(f"slice PMID range {self.pmid_range} is empty or starts below 1")

    @property
    def label(self) -> str:
        """``2024-03-01..2024-03-31``, ``2024-03-05`` or ``2024-03-05 PMIDs 1-5000`` (for messages)."""
        days = f"{self.mindate}" if self.mindate == self.maxdate else f"{self.mindate}..{self.maxdate}"
        if self.pmid_range is None:
            return days
        return f"{days} PMIDs {self.pmid_range[0]}-{self.pmid_range[1]}"

    def term(self, query: str) -> str:
        """The esearch term for this slice: the query, AND its PMID range when it has one."""
        if self.pmid_range is None:
            return query
        return f"({query}) AND {self.pmid_range[0]}:{self.pmid_range[1]}[uid]"

    def halves(self) -> tuple[SearchSlice, SearchSlice] | None:
        """The older (lower) and newer (higher) half: by date while the window has two days or more,
        then by PMID; None for a single PMID, which cannot be split."""
        if self.mindate < self.maxdate:
            middle = self.mindate + timedelta(days=(self.maxdate - self.mindate).days // 2)
            return (
                SearchSlice(self.mindate, middle, self.pmid_range),
                SearchSlice(middle + timedelta(days=1), self.maxdate, self.pmid_range),
            )
        low, high = self.pmid_range or (1, PMID_CEILING)
        if low == high:
            return None
        middle_pmid = low + (high - low) // 2
        return (
            SearchSlice(self.mindate, self.maxdate, (low, middle_pmid)),
            SearchSlice(self.mindate, self.maxdate, (middle_pmid + 1, high)),
        )


@dataclass(frozen=True, slots=True)
class PlannedSlice:
    """A slice to fetch (count <= the cap), or a failure met while planning (``error`` set)."""

    slice: SearchSlice
    count: int | None  # as counted while planning; None when the count itself failed
    error: str | None = None


def plan_slices(
    window: SearchSlice, count: Callable[[SearchSlice], int], *, cap: int = SLICE_CAP
) -> Iterator[PlannedSlice]:
    """Cut ``window`` into slices of at most ``cap`` records each, newest (highest PMIDs) first.

    Lazily: a slice is counted only when the slices before it have been taken, so a caller that stops
    early (``--max``) counts only what it needs. Halves whose counts add up to less than their parent's
    yield a failed PlannedSlice for the parent (records would fall between the slices); a count that
    fails (an UpstreamError or ParseError from ``count``) yields a failed PlannedSlice for that slice
    and the planning goes on with the others.

    Args:
        window: the whole search window.
        count: the number of records a slice holds (esearch's Count).
        cap: the most records one slice may hold.
    """
    if cap < 1:
        raise ValueError("cap must be at least 1")

    def counted(part: SearchSlice) -> int | PlannedSlice:
        try:
            return count(part)
        except (UpstreamError, ParseError) as exc:
            return PlannedSlice(part, None, f"search slice {part.label}: esearch failed: {exc}")

    first = counted(window)
    if isinstance(first, PlannedSlice):
        yield first
        return
    stack: list[tuple[SearchSlice, int]] = [(window, first)]
    while stack:
        part, total = stack.pop()
        if total <= cap:
            yield PlannedSlice(part, total)
            continue
        halves = part.halves()
        if halves is None:  # cannot happen with real PMIDs; fail the slice rather than loop
            yield PlannedSlice(part, total, f"search slice {part.label}: {total} records cannot be split")
            continue
        older, newer = counted(halves[0]), counted(halves[1])
        for result in (older, newer):
            if isinstance(result, PlannedSlice):
                yield result
        if isinstance(older, int) and isinstance(newer, int) and older + newer < total:
            yield PlannedSlice(
                part,
                total,
                f"search slice {part.label}: its halves hold {older + newer} records, the slice {total}",
            )
        # newer popped first
        if isinstance(older, int):
            stack.append((halves[0], older))
        if isinstance(newer, int):
            stack.append((halves[1], newer))


# ---------------------------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class SliceReport:
    """One slice of a search: its window, what esearch counted and what efetch returned."""

    mindate: date  # inclusive, on the search's datetype
    maxdate: date  # inclusive
    pmid_range: tuple[int, int] | None  # inclusive PMID bounds when a single day had to be split by PMID
    expected: int  # the Count esearch reported for this slice (at most what --max left)
    fetched: int  # distinct PMIDs whose records came back
    missing: tuple[str, ...]  # ids esearch listed that efetch did not return, even when asked again
    error: str | None  # why the slice failed; None when verified

    @property
    def verified(self) -> bool:
        """Every record esearch counted came back."""
        return self.error is None and self.fetched == self.expected

    @property
    def label(self) -> str:
        return SearchSlice(self.mindate, self.maxdate, self.pmid_range).label

    def as_dict(self) -> dict[str, object]:
        return {
            "mindate": self.mindate.isoformat(),
            "maxdate": self.maxdate.isoformat(),
            "pmid_range": list(self.pmid_range) if self.pmid_range else None,
            "expected": self.expected,
            "fetched": self.fetched,
            "missing": list(self.missing),
            "error": self.error,
            "verified": self.verified,
        }


@dataclass(slots=True)
class SearchReport:
    """What a search harvest did, slice by slice.

    ``verified`` says whether every record the search counted was fetched and stored: the condition for
    moving an incremental cursor. ``exit_code`` also counts enrichment failures and conflicts.
    """

    query: str
    datetype: str  # "edat" | "mdat" | "pdat"
    since: date | None  # as given; the window searched starts at window_start
    until: date | None
    slices: list[SliceReport] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pmids: list[str] = field(default_factory=list)  # every PMID fetched and stored, in fetch order
    failed_ids: list[str] = field(default_factory=list)  # ids that could not be fetched or stored
    errors: list[str] = field(default_factory=list)  # one-line messages
    enrich: EnrichReport | None = None
    window_start: date | None = None  # the window searched (inclusive)
    window_end: date | None = None
    total: int | None = None  # the Count esearch reported for the whole window; None if that failed
    max_results: int | None = None
    capped: bool = False  # --max left records of the window unfetched (on purpose)
    empty_slices: int = 0  # slices that held no records (not listed in ``slices``)
    warnings: list[str] = field(default_factory=list)  # esearch's own notes (PhraseNotFound, ...)
    query_translation: str | None = None
    conflicts: list[str] = field(default_factory=list)
    # PMIDs whose record came but could not be parsed or stored: kept raw in rejected_records, and
    # counted as fetched (the window is verified: nothing is lost, and asking again would not help)
    rejected: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Every slice verified, and no error and no failed id anywhere in the PubMed part of the run."""
        return (
            self.total is not None
            and all(s.verified for s in self.slices)
            and not self.errors
            and not self.failed_ids
        )

    @property
    def failed_slices(self) -> list[SliceReport]:
        return [s for s in self.slices if not s.verified]

    def exit_code(self) -> ExitCode:
        """UPSTREAM for a failed slice, id or enrichment batch; CONFLICT for a conflict; else OK."""
        enrichment_failed = self.enrich is not None and bool(
            self.enrich.pmc.failed or self.enrich.crossref.failed
        )
        if not self.verified or enrichment_failed:
            return ExitCode.UPSTREAM
        if self.conflicts or (self.enrich is not None and self.enrich.conflicts):
            return ExitCode.CONFLICT
        if self.rejected:
            return ExitCode.REJECTED
        return ExitCode.OK

    def summary_line(self) -> str:
        found = "?" if self.total is None else str(self.total)
        line = (
            f"search found {found}, fetched {len(self.pmids)} in {len(self.slices)} slice(s)"
            f" ({len(self.failed_slices)} failed): created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}"
        )
        if self.capped:
            line += f"; capped at --max {self.max_results}"
        if self.failed_ids:
            line += f"; failed {len(self.failed_ids)}"
        if self.conflicts:
            line += f"; conflicts {len(self.conflicts)}"
        if self.rejected:
            line += f"; rejected {len(self.rejected)} (kept raw in rejected_records)"
        return line + ("" if self.verified else "; NOT VERIFIED")

    def as_dict(self) -> dict[str, object]:
        def day(value: date | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "query": self.query,
            "datetype": self.datetype,
            "since": day(self.since),
            "until": day(self.until),
            "window": [day(self.window_start), day(self.window_end)],
            "total": self.total,
            "max_results": self.max_results,
            "capped": self.capped,
            "fetched": len(self.pmids),
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "slices": [s.as_dict() for s in self.slices],
            "empty_slices": self.empty_slices,
            "failed_ids": self.failed_ids,
            "errors": self.errors,
            "warnings": self.warnings,
            "conflicts": self.conflicts,
            "rejected": self.rejected,
            "enrichment": self.enrich.as_dict() if self.enrich else None,
            "verified": self.verified,
            "exit_code": int(self.exit_code()),
        }


# ------------------------------------------------------------------------------------------------- run

_DAY = re.compile(r"^(\d{4})[-/](\d{2})[-/](\d{2})$")


def parse_day(option: str, value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` (or ``YYYY/MM/DD``) option value as a date; None stays None.

    Raises:
        UsageError: the value is not such a date.
    """
    if value is None:
        return None
    found = _DAY.match(value.strip())
    try:
        if found is None:
            raise ValueError(value)
        return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    except ValueError:
        raise UsageError(f"{option} must be a date as YYYY-MM-DD, not {value!r}") from None


def check_search_arguments(
    query: str,
    *,
    datetype: str,
    since: date | None,
    until: date | None,
    max_results: int | None,
    today: date | None = None,
) -> tuple[date, date]:
    """Validate a search's arguments and return its window (first and last day, inclusive).

    Raises:
        UsageError: an empty query, an unknown datetype, ``since`` after ``until`` or ``max_results`` < 1.
    """
    if not query.strip():
        raise UsageError("the search query is empty")
    if datetype not in DATETYPES:
        raise UsageError(f"--datetype must be one of {', '.join(DATETYPES)}, not {datetype!r}")
    if max_results is not None and max_results < 1:
        raise UsageError(f"--max must be at least 1, not {max_results}")
    start = since or EARLIEST_DATE
    end = until or today or datetime.now(UTC).date()
    if start > end:
        raise UsageError(f"--since {start} is after --until {end}")
    return start, end


def run_search(
    query: str,
    *,
    datetype: str = "edat",
    since: date | None = None,
    until: date | None = None,
    max_results: int | None = None,
    settings: Settings,
    services: Services,
    engine: Engine,
    run_id: int | None = None,
    enrich: bool = True,
    progress: Callable[[int], None] | None = None,
) -> SearchReport:
    """Harvest every PubMed record a query finds in a date window, slice by slice, verifying each slice.

    Args:
        query: a PubMed query, as typed in PubMed.
        datetype: the date the window applies to: edat (entered in PubMed), mdat (last modified) or pdat
            (published).
        since: first day of the window (inclusive); default :data:`EARLIEST_DATE`.
        until: last day (inclusive); default today in UTC (which is never behind NCBI's US Eastern day).
        max_results: fetch at most this many records, newest slices first; the report says it capped.
        settings: the run's settings (batch sizes, merge policy).
        services: the remote clients.
        engine: the migrated database.
        run_id: the harvest_runs row changes are recorded under.
        enrich: also merge PMC and Crossref records for the new and changed articles.
        progress: called with the number of records each efetch page covered.

    Returns:
        The report. A failed slice does not raise: it is in ``slices`` with its error, what it did fetch
        is stored, and ``verified`` is False.

    Raises:
        UsageError: an empty query, an unknown datetype, ``since`` after ``until`` or ``max_results`` < 1.
        StorageError: the database could not be written (batches stored before it stay stored).
    """
    query = query.strip()
    start, end = check_search_arguments(
        query, datetype=datetype, since=since, until=until, max_results=max_results
    )
    if settings.email is None:
        log.warning("HARVEST_EMAIL is not set: NCBI asks every E-utilities caller for a contact e-mail")

    report = SearchReport(
        query=query,
        datetype=datetype,
        since=since,
        until=until,
        window_start=start,
        window_end=end,
        max_results=max_results,
    )
    run = _SearchRun(query, datetype, services, engine, run_id, report, progress)
    window = SearchSlice(start, end)
    taken = 0
    for planned in plan_slices(window, run.count, cap=SLICE_CAP):
        if planned.error is not None:
            run.fail_planning(planned)
            continue
        if planned.count == 0:
            report.empty_slices += 1
            continue
        limit = None if max_results is None else max_results - taken
        sliced = run.fetch(planned.slice, limit)
        report.slices.append(sliced)
        taken += sliced.expected
        if max_results is not None and taken >= max_results:
            break  # the newest max_results records are in: stop counting and fetching
    report.capped = max_results is not None and report.total is not None and report.total > taken
    run.finish_counts()
    log.info("search %r: %s", query[:100], report.summary_line())

    policy = settings.merge_policy
    if run.enriched_changed:  # their PubMed record changed: merge it again with PMC and Crossref
        result = reconcile_articles(engine, sorted(run.enriched_changed), run_id=run_id, policy=policy)
        report.conflicts.extend(describe_found(engine, result.conflicts))
    if enrich:
        changed = [p for p in report.pmids if p in run.created or p in run.updated]
        ids = article_ids_by_pmid(engine, changed)
        report.enrich = enrich_articles(
            enrichment_targets(engine, [ids[p] for p in changed if p in ids]),
            services=services,
            engine=engine,
            run_id=run_id,
            policy=policy,
        )
    return report


class _SearchRun:
    """The fetching side of one search: counts slices, fetches and stores them, keeps the tallies."""

    def __init__(
        self,
        query: str,
        datetype: str,
        services: Services,
        engine: Engine,
        run_id: int | None,
        report: SearchReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.query = query
        self.datetype = datetype
        self.services = services
        self.engine = engine
        self.run_id = run_id
        self.report = report
        self.progress = progress
        self.created: set[str] = set()
        self.updated: set[str] = set()
        self.unchanged: set[str] = set()
        self.stored: dict[str, None] = {}  # every PMID stored, in order
        self.enriched_changed: set[int] = set()
        self.conflict_pmids: dict[str, None] = {}

    # -- esearch

    def _esearch(self, part: SearchSlice, *, retmax: int, usehistory: bool) -> EsearchResult:
        return self.services.eutils.esearch(
            part.term(self.query),
            retmax=retmax,
            usehistory=usehistory,
            datetype=self.datetype,
            mindate=f"{part.mindate:%Y/%m/%d}",
            maxdate=f"{part.maxdate:%Y/%m/%d}",
        )

    def count(self, part: SearchSlice) -> int:
        """The Count of one slice (retmax=0); the whole window's answer also fills the report's total."""
        result = self._esearch(part, retmax=0, usehistory=False)
        if self.report.total is None:  # the first count is the whole window's
            self.report.total = result.count
            self.report.query_translation = result.query_translation
            self.report.warnings.extend(result.errors)
            self.report.warnings.extend(w for w in result.warnings if "No items found" not in w)
        return result.count

    def fail_planning(self, planned: PlannedSlice) -> None:
        message = planned.error or f"search slice {planned.slice.label}: failed"
        log.error("%s", message)
        self.report.errors.append(message)
        part = planned.slice
        self.report.slices.append(
            SliceReport(part.mindate, part.maxdate, part.pmid_range, planned.count or 0, 0, (), message)
        )

    # -- one slice

    def fetch(self, part: SearchSlice, limit: int | None) -> SliceReport:
        """esearch the slice with the history, efetch its records in pages, verify and store them."""
        retmax = SLICE_CAP if limit is None else min(SLICE_CAP, limit)

        def failed(
            message: str, expected: int, fetched: int = 0, missing: tuple[str, ...] = ()
        ) -> SliceReport:
            log.info("%s", message)  # the CLI prints it, once
            self.report.errors.append(message)
            return SliceReport(
                part.mindate, part.maxdate, part.pmid_range, expected, fetched, missing, message
            )

        try:
            result = self._esearch(part, retmax=retmax, usehistory=True)
        except (UpstreamError, ParseError) as exc:
            return failed(f"search slice {part.label}: esearch failed: {exc}", 0)
        if result.count > SLICE_CAP:
            # it grew past the cap since it was counted: a re-run plans it again
            return failed(
                f"search slice {part.label}: esearch now reports {result.count} records, more than the "
                f"{SLICE_CAP} one slice can fetch; run the search again",
                result.count,
            )
        expected = result.count if limit is None else min(result.count, limit)
        if expected == 0:
            return SliceReport(part.mindate, part.maxdate, part.pmid_range, 0, 0, (), None)
        if result.webenv is None or result.query_key is None:
            return failed(f"search slice {part.label}: esearch returned no WebEnv/query_key", expected)
        listed = result.ids[:expected]
        returned: set[str] = set()
        page_errors: list[str] = []
        batches = self.services.eutils.efetch_history(
            result.webenv, result.query_key, count=expected, expected_ids=listed
        )
        for item in batches:
            if isinstance(item, FetchFailedError):
                page_errors.append(item.message)
                log.warning("search slice %s: %s", part.label, item.message)
            else:
                returned |= self._store(item, page_errors)
            if self.progress is not None:
                self.progress(len(item.ids) or min(self.services.eutils.batch_size, expected))

        missing = [pmid for pmid in listed if pmid not in returned]
        if missing:
            log.info("search slice %s: asking again by id for %d PMID(s)", part.label, len(missing))
            try:
                for item in self.services.eutils.efetch("pubmed", missing):
                    if isinstance(item, FetchFailedError):
                        page_errors.append(item.message)
                    else:
                        returned |= self._store(item, page_errors)
            except RejectedRequestError as exc:
                page_errors.append(exc.message)
            missing = [pmid for pmid in listed if pmid not in returned]
        fetched = len(returned)
        # A short IdList leaves records unchecked against the search even when the count comes back right
        # (PEERS.md C: answers can be silently short): the slice is not verified.
        if not missing and fetched == expected and len(listed) == expected:
            if page_errors:  # pages failed but asking by id recovered every record
                log.info("search slice %s: recovered by id after: %s", part.label, "; ".join(page_errors))
            return SliceReport(part.mindate, part.maxdate, part.pmid_range, expected, fetched, (), None)

        self.report.failed_ids.extend(p for p in missing if p not in self.report.failed_ids)
        shown = ", ".join(missing[:_SHOWN_MISSING]) + (" ..." if len(missing) > _SHOWN_MISSING else "")
        detail = f"; missing {len(missing)}: {shown}" if missing else ""
        if len(listed) < expected:
            detail += f"; esearch listed only {len(listed)} ids"
        if page_errors:
            detail += f"; first failure: {page_errors[0]}"
        error = IncompleteSearchError(
            f"search slice {part.label}: esearch reported {expected} records, efetch returned {fetched}"
            + detail,
            source="eutils",
            expected=expected,
            fetched=fetched,
        )
        return failed(error.message, expected, fetched, tuple(missing))

    def _store(self, batch: EfetchBatch, errors: list[str]) -> set[str]:
        """Parse one efetch answer and store its articles in one transaction; returns their PMIDs."""
        response = batch.response
        try:
            records = list(parse_pubmed(response.body, keep_raw=True))
        except ParseError as exc:
            errors.append(f"eutils: {exc}")
            return set()
        articles = [r for r in records if isinstance(r, Article)]
        rejected = [r for r in records if isinstance(r, RejectedRecord) and r.pmid is not None]
        result, refused = (
            store_articles_isolated(
                self.engine, articles, url=response.url, fetched_at=response.fetched_at, run_id=self.run_id
            )
            if articles
            else (StoreResult((), (), ()), [])
        )
        rejected.extend(refused)
        if rejected:
            record_rejected(
                self.engine, rejected, source=response.url, at=response.fetched_at, run_id=self.run_id
            )
            for record in rejected:
                log.warning(
                    "pubmed PMID %s rejected (kept raw in rejected_records): %s", record.pmid, record.reason
                )
                if record.pmid not in self.report.rejected:
                    self.report.rejected.append(str(record.pmid))
        refused_pmids = {r.pmid for r in refused}
        articles = [a for a in articles if a.pmid not in refused_pmids]
        if not articles:
            return {str(r.pmid) for r in rejected}
        self.created.update(result.created)
        self.updated.update(result.updated)
        self.unchanged.update(result.unchanged)
        self.enriched_changed.update(result.enriched_changed)
        self.conflict_pmids.update(dict.fromkeys(result.conflicts))
        pmids = {a.pmid for a in articles}
        self.stored.update(dict.fromkeys(a.pmid for a in articles))
        return pmids | {str(r.pmid) for r in rejected}

    def finish_counts(self) -> None:
        """Each PMID counted once, by what happened to it first (a record met in two slices is stored
        the second time unchanged)."""
        self.report.pmids = list(self.stored)
        self.report.created = len(self.created)
        self.report.updated = len(self.updated - self.created)
        self.report.unchanged = len(self.unchanged - self.created - self.updated)
        self.report.conflicts.extend(
            f"pubmed PMID {pmid} names the DOI and PMCID of two articles not in PubMed"
            for pmid in self.conflict_pmids
        )

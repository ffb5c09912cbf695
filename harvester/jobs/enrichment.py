"""The enrichment step every job shares: PMC front matter, Crossref works and iCite metrics for stored
articles, fetched in batches and merged in (by id, search, nightly, bulk files and ``harvest enrich``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy.engine import Engine

from db.conflicts import describe_found
from db.lookups import record_answers
from db.reconcile import EnrichResult, store_crossref, store_pmc
from db.targets import LOOKUP_SOURCES, EnrichmentTarget
from enrich.crossref import CrossrefBatch
from enrich.merge import DEFAULT_POLICY
from enrich.pmc_jats import parse_pmc_articles
from harvester.core.errors import FetchFailedError, ParseError
from harvester.jobs.services import Services

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceCounts:
    """What one enrichment source did, counted in articles."""

    asked: int = 0
    updated: int = 0
    unchanged: int = 0
    not_found: int = 0
    failed: list[str] = field(default_factory=list)
    backed_off: int = 0  # due but not asked: the source said "not found" lately (db.lookups)

    def add(self, result: EnrichResult) -> None:
        self.updated += len(result.updated) + len(result.created)
        self.unchanged += len(result.unchanged)
        self.not_found += len(result.not_found)

    def as_dict(self) -> dict[str, object]:
        return {
            "asked": self.asked,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_found": self.not_found,
            "failed": self.failed,
            "backed_off": self.backed_off,
        }


@dataclass(slots=True)
class EnrichReport:
    """What enrichment from PMC and Crossref did."""

    pmc: SourceCounts = field(default_factory=SourceCounts)
    crossref: SourceCounts = field(default_factory=SourceCounts)
    icite: SourceCounts = field(default_factory=SourceCounts)  # counted in PMIDs
    created_from_crossref: list[str] = field(default_factory=list)  # DOIs stored from Crossref alone
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self, source: str) -> SourceCounts:
        """The counts of "pmc", "crossref" or "icite"."""
        return {"pmc": self.pmc, "crossref": self.crossref, "icite": self.icite}[source]

    def add_backed_off(self, backed_off: Mapping[str, int]) -> None:
        """Count the look-ups a run left out because their source said "not found" lately."""
        for source, count in backed_off.items():
            self.counts(source).backed_off += count

    def summary_line(self) -> str:
        def part(name: str, c: SourceCounts) -> str:
            failed = f", {len(c.failed)} failed" if c.failed else ""
            later = f", {c.backed_off} backed off" if c.backed_off else ""
            return (
                f"{name} {c.updated} updated, {c.unchanged} unchanged, {c.not_found} not found{failed}{later}"
            )

        return (
            f"enriched: {part('pmc', self.pmc)}; {part('crossref', self.crossref)}; "
            f"{part('icite', self.icite)}; conflicts {len(self.conflicts)}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "pmc": self.pmc.as_dict(),
            "crossref": self.crossref.as_dict(),
            "icite": self.icite.as_dict(),
            "backed_off": self.pmc.backed_off + self.crossref.backed_off + self.icite.backed_off,
            "created_from_crossref": self.created_from_crossref,
            "conflicts": self.conflicts,
            "errors": self.errors,
        }


def utc_today() -> date:
    """Today in UTC: the day the look-up back-off counts in (tests replace it to move the clock)."""
    return datetime.now(UTC).date()


def enrich_articles(
    targets: Sequence[EnrichmentTarget],
    *,
    services: Services,
    engine: Engine,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]] = DEFAULT_POLICY,
    create_missing: Sequence[str] = (),
    sources: Collection[str] = LOOKUP_SOURCES,
    today: date | None = None,
) -> EnrichReport:
    """Fetch PMC front matter, Crossref works and iCite metrics for stored articles and merge them in.

    PMC answers efetch db=pmc in batches, Crossref a ``filter=doi:...`` list per batch; a batch that fails
    names its ids and the others are still merged. ``create_missing`` are DOIs PubMed does not know: an
    article is created for each that Crossref knows (marked not in PubMed). iCite is asked for the PMIDs,
    200 a request (:func:`_enrich_icite`). ``sources`` limits which are asked, and each target is asked
    only of the sources it names (:attr:`EnrichmentTarget.sources`: all three unless a run chose them,
    :func:`db.targets.due_targets`).

    Every answer also keeps the look-up back-off (:func:`db.lookups.record_answers`, in a table of its
    own): a "not found" on a new day is counted, one on the same ``today`` (default: today, UTC) writes
    nothing, a "found" ends a run of misses. Which runs honour the back-off is their choice of targets.
    """
    today = today or utc_today()
    report = EnrichReport()
    if "pmc" in sources:
        pmc = _Answers("pmc", [t for t in targets if "pmc" in t.sources], today)
        report.pmc.asked = len(pmc.ids)
        # As for PubMed, a PMCID missing from an answer is asked for once more before it counts as not
        # found: a short answer must not mark a PMC article missing (found by the chaos run, issue 6).
        missing = _enrich_pmc_round(pmc.ids, services, engine, report, run_id, policy, pmc, final=False)
        if missing:
            log.info("asking PMC again for %d article(s) missing from the first answers", len(missing))
            _enrich_pmc_round(missing, services, engine, report, run_id, policy, pmc, final=True)
    if "crossref" in sources:
        crossref = _Answers("crossref", [t for t in targets if "crossref" in t.sources], today)
        _enrich_crossref(crossref, services, engine, report, run_id, policy, create_missing)
    if "icite" in sources:
        icite = _Answers("icite", [t for t in targets if "icite" in t.sources], today)
        _enrich_icite(icite, services=services, engine=engine, run_id=run_id, report=report)
    return report


class _Answers:
    """One source's look-ups of a run: the ids it is asked, and what it answered, kept in the back-off."""

    def __init__(self, source: str, targets: Sequence[EnrichmentTarget], today: date) -> None:
        self.source = source
        self.today = today
        self.articles: dict[str, list[int]] = {}  # id asked -> the articles holding it
        for target in targets:
            asked = target.asked_by(source)
            if asked:
                self.articles.setdefault(asked, []).append(target.article_id)

    @property
    def ids(self) -> list[str]:
        return list(self.articles)

    def record(self, engine: Engine, *, found: Iterable[str], not_found: Iterable[str]) -> None:
        """Keep the back-off of the articles asked about (ids not asked here are not theirs to record)."""
        missed = {a: asked for asked in not_found for a in self.articles.get(asked, ())}
        known = [a for asked in found for a in self.articles.get(asked, ())]
        record_answers(engine, self.source, missed=missed, found=known, today=self.today)


def _enrich_crossref(
    answers: _Answers,
    services: Services,
    engine: Engine,
    report: EnrichReport,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]],
    create_missing: Sequence[str],
) -> EnrichReport:
    create = set(create_missing)
    dois = list(dict.fromkeys([*answers.ids, *create_missing]))
    report.crossref.asked = len(dois)
    for batch in services.crossref.fetch_works(dois):
        if isinstance(batch, FetchFailedError):
            report.crossref.failed.extend(batch.ids)
            report.errors.append(str(batch))
            continue
        result = _store_crossref_batch(batch, engine, run_id=run_id, policy=policy, create=create)
        log.info("crossref batch: %d DOIs, %d not found", len(batch.requested), len(batch.not_found))
        report.crossref.add(result)
        report.conflicts.extend(describe_found(engine, result.conflicts))
        missed = set(batch.not_found)
        answers.record(
            engine, found=[d for d in batch.requested if d not in missed], not_found=batch.not_found
        )
    return report


def _enrich_icite(
    answers: _Answers, *, services: Services, engine: Engine, run_id: int | None, report: EnrichReport
) -> None:
    """Fetch iCite metrics and citation edges by PMID (ceil(n/200) requests) and store them.

    A PMID iCite does not know counts as not found (its article's icite_status says so), a record that
    does not parse or a batch that fails after every retry as failed; the other batches are stored.
    """
    from db.icite import store_icite

    if services.icite is None or not answers.ids:
        return
    wanted = answers.ids
    report.icite.asked += len(wanted)
    for batch in services.icite.fetch_metrics(wanted):
        if isinstance(batch, FetchFailedError):
            report.icite.failed.extend(batch.ids)
            report.errors.append(str(batch))
            continue
        for pmid, message in batch.rejected:
            report.icite.failed.append(pmid)
            report.errors.append(message)
        result = store_icite(
            engine,
            batch.records,
            url=batch.response.url,
            fetched_at=batch.response.fetched_at,
            run_id=run_id,
            not_found=batch.not_found,
        )
        report.icite.updated += len(result.updated)
        report.icite.unchanged += len(result.unchanged)
        report.icite.not_found += len(batch.not_found)
        answers.record(engine, found=[r.pmid for r in batch.records], not_found=batch.not_found)


def _enrich_pmc_round(
    pmcids: Sequence[str],
    services: Services,
    engine: Engine,
    report: EnrichReport,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]],
    answers: _Answers,
    *,
    final: bool,
) -> list[str]:
    """efetch db=pmc and merge each batch; returns the PMCIDs the answers lacked (recorded only if final)."""
    missing: list[str] = []
    for item in services.eutils.efetch("pmc", [pmcid.removeprefix("PMC") for pmcid in pmcids]):
        asked = [f"PMC{i}" for i in item.ids]
        if isinstance(item, FetchFailedError):
            report.pmc.failed.extend(asked)
            report.errors.append(str(item))
            continue
        try:
            fronts = list(parse_pmc_articles(item.response.body, keep_raw=True))
        except ParseError as exc:
            report.pmc.failed.extend(asked)
            report.errors.append(f"pmc: {exc} ({', '.join(asked)})")
            continue
        returned = {front.pmcid for front in fronts}
        lacking = [p for p in asked if p not in returned]
        missing.extend(lacking)
        result = store_pmc(
            engine,
            [f for f in fronts if f.pmcid in set(asked)],
            url=item.response.url,
            fetched_at=item.response.fetched_at,
            run_id=run_id,
            policy=policy,
            not_found=lacking if final else [],
        )
        report.pmc.add(result)
        report.conflicts.extend(describe_found(engine, result.conflicts))
        answers.record(engine, found=[p for p in asked if p in returned], not_found=lacking if final else [])
    return missing


def _store_crossref_batch(
    batch: CrossrefBatch,
    engine: Engine,
    *,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]],
    create: set[str],
) -> EnrichResult:
    return store_crossref(
        engine,
        batch.works,
        url=batch.response.url,
        fetched_at=batch.response.fetched_at,
        run_id=run_id,
        policy=policy,
        not_found=batch.not_found,
        create_missing=[doi for doi in batch.requested if doi in create],
        aliases=batch.aliases,
    )

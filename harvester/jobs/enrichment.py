"""The enrichment step every job shares: PMC front matter, Crossref works and iCite metrics for stored
articles, fetched in batches and merged in (by id, search, nightly, bulk files and ``harvest enrich``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from db.conflicts import describe_found
from db.reconcile import EnrichResult, store_crossref, store_pmc
from db.targets import EnrichmentTarget
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

    def summary_line(self) -> str:
        def part(name: str, c: SourceCounts) -> str:
            failed = f", {len(c.failed)} failed" if c.failed else ""
            return f"{name} {c.updated} updated, {c.unchanged} unchanged, {c.not_found} not found{failed}"

        return (
            f"enriched: {part('pmc', self.pmc)}; {part('crossref', self.crossref)}; "
            f"{part('icite', self.icite)}; conflicts {len(self.conflicts)}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "pmc": self.pmc.as_dict(),
            "crossref": self.crossref.as_dict(),
            "icite": self.icite.as_dict(),
            "created_from_crossref": self.created_from_crossref,
            "conflicts": self.conflicts,
            "errors": self.errors,
        }


def enrich_articles(
    targets: Sequence[EnrichmentTarget],
    *,
    services: Services,
    engine: Engine,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]] = DEFAULT_POLICY,
    create_missing: Sequence[str] = (),
    sources: Collection[str] = ("pmc", "crossref", "icite"),
) -> EnrichReport:
    """Fetch PMC front matter, Crossref works and iCite metrics for stored articles and merge them in.

    PMC answers efetch db=pmc in batches, Crossref a ``filter=doi:...`` list per batch; a batch that fails
    names its ids and the others are still merged. ``create_missing`` are DOIs PubMed does not know: an
    article is created for each that Crossref knows (marked not in PubMed). iCite is asked for the PMIDs,
    200 a request (:func:`enrich_icite`). ``sources`` limits which are asked.
    """
    report = EnrichReport()
    if "pmc" in sources:
        with_pmcid = [t.pmcid for t in targets if t.pmcid]
        report.pmc.asked = len(with_pmcid)
        # As for PubMed, a PMCID missing from an answer is asked for once more before it counts as not
        # found: a short answer must not mark a PMC article missing (found by the chaos run, issue 6).
        missing = _enrich_pmc_round(with_pmcid, services, engine, report, run_id, policy, final=False)
        if missing:
            log.info("asking PMC again for %d article(s) missing from the first answers", len(missing))
            _enrich_pmc_round(missing, services, engine, report, run_id, policy, final=True)
    if "crossref" in sources:
        _enrich_crossref(targets, services, engine, report, run_id, policy, create_missing)
    if "icite" in sources:
        pmids = [t.pmid for t in targets if t.pmid]
        enrich_icite(pmids, services=services, engine=engine, run_id=run_id, report=report)
    return report


def _enrich_crossref(
    targets: Sequence[EnrichmentTarget],
    services: Services,
    engine: Engine,
    report: EnrichReport,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]],
    create_missing: Sequence[str],
) -> EnrichReport:
    create = set(create_missing)
    dois = list(dict.fromkeys([*(t.doi for t in targets if t.doi), *create_missing]))
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
    return report


def enrich_icite(
    pmids: Sequence[str],
    *,
    services: Services,
    engine: Engine,
    run_id: int | None,
    report: EnrichReport | None = None,
) -> EnrichReport:
    """Fetch iCite metrics and citation edges for stored PMIDs (ceil(n/200) requests) and store them.

    A PMID iCite does not know counts as not found (its article's icite_status says so), a record that
    does not parse or a batch that fails after every retry as failed; the other batches are stored.
    """
    from db.icite import store_icite

    report = report if report is not None else EnrichReport()
    if services.icite is None or not pmids:
        return report
    wanted = list(dict.fromkeys(pmids))
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
    return report


def _enrich_pmc_round(
    pmcids: Sequence[str],
    services: Services,
    engine: Engine,
    report: EnrichReport,
    run_id: int | None,
    policy: Mapping[str, tuple[str, ...]],
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

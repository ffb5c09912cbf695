"""Harvest by id: resolve PMCIDs and DOIs -> fetch PubMed records -> parse -> store -> enrich, and report
what happened to each id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import Engine

from db.bulk import record_rejected
from db.conflicts import describe_found
from db.reconcile import reconcile_articles
from db.store import StoreResult, store_articles_isolated
from db.targets import article_ids_by_pmid, enrichment_targets
from harvester.core.errors import (
    ExitCode,
    FetchFailedError,
    InvalidIdentifierError,
    ParseError,
    UpstreamError,
    UsageError,
)
from harvester.core.ids import doi_or_none, normalize_doi, normalize_pmcid, normalize_pmid
from harvester.core.records import Article, RejectedRecord
from harvester.core.settings import Settings
from harvester.jobs.enrichment import EnrichReport, enrich_articles
from harvester.jobs.services import Services
from harvester.sources.eutils import EfetchBatch
from harvester.sources.pubmed_xml import parse_pubmed

log = logging.getLogger(__name__)

IdKind = Literal["pmid", "pmcid", "doi"]
NORMALIZERS: dict[str, Callable[[str], str]] = {
    "pmid": normalize_pmid,
    "pmcid": normalize_pmcid,
    "doi": normalize_doi,
}
# DOIs OR-ed into one esearch term when the ID Converter does not know them (the client POSTs long terms).
ESEARCH_DOIS_PER_REQUEST = 50


@dataclass(slots=True)
class HarvestReport:
    """What a harvest did, id by id (ids as the user gave them, normalised)."""

    requested: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    # Of ``failed``, the ids whose record came but could not be parsed or stored (kept in rejected_records)
    rejected: list[str] = field(default_factory=list)
    enrichment: EnrichReport | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The most severe outcome decides: failed upstream > conflict > invalid > rejected > not found."""
        enrichment_failed = self.enrichment is not None and (
            self.enrichment.pmc.failed or self.enrichment.crossref.failed or self.enrichment.icite.failed
        )
        rejected = set(self.rejected)
        if any(f not in rejected for f in self.failed) or enrichment_failed:
            return ExitCode.UPSTREAM
        if self.conflicts or (self.enrichment is not None and self.enrichment.conflicts):
            return ExitCode.CONFLICT
        if self.invalid:
            return ExitCode.USAGE
        if self.rejected:
            return ExitCode.REJECTED
        if self.not_found:
            return ExitCode.NOT_FOUND
        return ExitCode.OK

    def summary_line(self) -> str:
        line = (
            f"requested {self.requested}, created {len(self.created)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, not found {len(self.not_found)}, failed {len(self.failed)}"
        )
        if self.invalid:
            line += f", invalid {len(self.invalid)}"
        if self.rejected:
            line += f" (rejected {len(self.rejected)}: kept raw in rejected_records)"
        if self.conflicts:
            line += f", conflicts {len(self.conflicts)}"
        return line

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_found": self.not_found,
            "failed": self.failed,
            "invalid": self.invalid,
            "conflicts": self.conflicts,
            "rejected": self.rejected,
            "errors": self.errors,
            "enrichment": self.enrichment.as_dict() if self.enrichment else None,
            "exit_code": int(self.exit_code),
        }


def normalize_ids(kind: IdKind, values: Iterable[str], report: HarvestReport) -> list[str]:
    """Validate and normalise ids in input order, dropping duplicates; malformed ones go to ``invalid``."""
    normalize = NORMALIZERS[kind]
    seen: dict[str, None] = {}
    for value in values:
        try:
            seen.setdefault(normalize(value))
        except InvalidIdentifierError as exc:
            report.invalid.append(value)
            report.errors.append(str(exc))
    return list(seen)


def harvest(
    kind: IdKind,
    values: Sequence[str],
    *,
    settings: Settings,
    services: Services,
    engine: Engine,
    progress: Callable[[int], None] | None = None,
    enrich: bool = True,
    run_id: int | None = None,
) -> HarvestReport:
    """Harvest articles by PMID, PMCID or DOI into the database and report each id's outcome.

    Args:
        kind: what the values are.
        values: ids as the user typed them; malformed ones are reported as invalid and skipped.
        settings: the run's settings (batch sizes, merge policy).
        services: the remote clients.
        engine: the migrated database.
        progress: called with the number of PMIDs each finished efetch batch covered.
        enrich: also fetch and merge PMC front matter and Crossref works for the stored articles, and
            store DOIs PubMed does not know from Crossref alone.
        run_id: the harvest_runs row the changes are recorded under.

    Returns:
        The report; its ``exit_code`` says how the run went.

    Raises:
        StorageError: the database could not be written (batches stored before it stay stored).
        UpstreamError: id resolution itself failed (nothing was fetched or stored).
    """
    report = HarvestReport()
    ids = normalize_ids(kind, values, report)
    report.requested = len(ids) + len(report.invalid)
    if not ids:
        if report.invalid:
            more = f" (and {len(report.invalid) - 1} more)" if len(report.invalid) > 1 else ""
            raise UsageError(report.errors[0] + more)
        return report
    if settings.email is None:
        log.warning("HARVEST_EMAIL is not set: NCBI asks every E-utilities caller for a contact e-mail")

    # input id -> PMID; DOIs may resolve only after fetching (esearch candidates)
    if kind == "pmid":
        targets = {pmid: pmid for pmid in ids}
        pending_dois: list[str] = []
    else:
        targets, pending_dois = _resolve(kind, ids, services)

    candidates, search_failed = _search_dois(pending_dois, services, report)
    pmids = list(dict.fromkeys([*targets.values(), *candidates]))
    outcome = _fetch_and_store(pmids, services=services, engine=engine, progress=progress, run_id=run_id)
    report.errors.extend(outcome.errors)
    report.conflicts.extend(
        f"pubmed PMID {pmid} names the DOI and PMCID of two articles not in PubMed"
        for pmid in outcome.conflicts
    )

    # DOIs found only by esearch: keep the stored articles whose DOI was asked for
    by_doi = {doi: pmid for pmid, dois in outcome.dois.items() for doi in dois}
    for doi in pending_dois:
        if doi in by_doi:
            targets[doi] = by_doi[doi]
    failed_pmids = set(outcome.failed)
    for requested in ids:
        pmid = targets.get(requested)
        if pmid is None:
            # a DOI whose esearch, or whose candidate records' fetch, failed may still exist upstream
            if requested in search_failed or (
                requested in pending_dois and any(p in failed_pmids for p in candidates)
            ):
                report.failed.append(requested)
            else:
                report.not_found.append(requested)
        elif pmid in outcome.created:
            report.created.append(requested)
        elif pmid in outcome.updated:
            report.updated.append(requested)
        elif pmid in outcome.unchanged:
            report.unchanged.append(requested)
        elif pmid in failed_pmids:
            report.failed.append(requested)
            if pmid in outcome.rejected:
                report.rejected.append(requested)
        else:
            report.not_found.append(requested)

    policy = settings.merge_policy
    if outcome.enriched_changed:  # their PubMed record changed: merge it again with PMC and Crossref
        result = reconcile_articles(engine, sorted(outcome.enriched_changed), run_id=run_id, policy=policy)
        report.conflicts.extend(describe_found(engine, result.conflicts))
    if not enrich:
        return report
    stored = [p for p in pmids if p in outcome.created | outcome.updated | outcome.unchanged]
    article_ids = article_ids_by_pmid(engine, stored)
    missing_dois = [doi for doi in report.not_found if kind == "doi"]
    report.enrichment = enrich_articles(
        enrichment_targets(engine, [article_ids[p] for p in stored if p in article_ids]),
        services=services,
        engine=engine,
        run_id=run_id,
        policy=policy,
        create_missing=missing_dois,
    )
    if missing_dois:  # stored from Crossref alone: no longer "not found"
        from db.documents import resolve_identifiers

        now_stored = resolve_identifiers(engine, missing_dois)
        for doi in missing_dois:
            if now_stored.get(doi) is not None:
                report.not_found.remove(doi)
                report.created.append(doi)
                report.enrichment.created_from_crossref.append(doi)
    return report


def _resolve(kind: IdKind, ids: list[str], services: Services) -> tuple[dict[str, str], list[str]]:
    """Map PMCIDs or DOIs to PMIDs with the ID Converter; DOIs it does not know are returned pending."""
    targets: dict[str, str] = {}
    pending: list[str] = []
    try:
        records = services.idconv.convert(ids, kind)
    except UpstreamError as exc:
        if kind != "doi":
            raise
        # The converter only knows PMC articles; esearch can still find DOIs of other PubMed records.
        log.warning("ID Converter failed (%s); looking the DOIs up with esearch instead", exc)
        return targets, list(ids)
    for record in records:
        requested = NORMALIZERS[kind](record.requested) if record.requested else None
        if requested is None:
            continue
        if record.pmid:
            targets[requested] = record.pmid
        elif kind == "doi":
            pending.append(requested)
        else:
            reason = record.error or "in PMC but not in PubMed"
            log.info("%s: %s", requested, reason)
    return targets, pending


def _search_dois(dois: list[str], services: Services, report: HarvestReport) -> tuple[list[str], set[str]]:
    """PMIDs of PubMed records whose article identifiers include one of the DOIs (esearch [AID]).

    Returns the candidate PMIDs and the DOIs whose search failed upstream.
    """
    found: list[str] = []
    failed: set[str] = set()
    searchable = [d for d in dois if '"' not in d]
    for start in range(0, len(searchable), ESEARCH_DOIS_PER_REQUEST):
        chunk = searchable[start : start + ESEARCH_DOIS_PER_REQUEST]
        term = " OR ".join(f'"{doi}"[AID]' for doi in chunk)
        try:
            result = services.eutils.esearch(term, retmax=len(chunk) * 5)
        except UpstreamError as exc:
            report.errors.append(str(exc))
            failed.update(chunk)
            continue
        found.extend(result.ids)
    return found, failed


@dataclass(slots=True)
class _StoreOutcome:
    created: set[str] = field(default_factory=set)
    updated: set[str] = field(default_factory=set)
    unchanged: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dois: dict[str, set[str]] = field(default_factory=dict)  # PMID -> every DOI its record states
    conflicts: list[str] = field(default_factory=list)  # PMIDs
    enriched_changed: set[int] = field(default_factory=set)  # article ids to merge again
    rejected: set[str] = field(default_factory=set)  # PMIDs whose record did not parse or store

    def add(self, result: StoreResult) -> None:
        self.created.update(result.created)
        self.updated.update(result.updated)
        self.unchanged.update(result.unchanged)
        self.conflicts.extend(result.conflicts)
        self.enriched_changed.update(result.enriched_changed)


def _fetch_and_store(
    pmids: list[str],
    *,
    services: Services,
    engine: Engine,
    progress: Callable[[int], None] | None,
    run_id: int | None,
) -> _StoreOutcome:
    """efetch in batches, parse and store each batch as it arrives; ask once more for PMIDs a batch lacked.

    A PMID missing from an answer is either unknown to PubMed or was dropped by a short response; asking
    again once tells the two apart without trusting a single short answer.
    """
    outcome = _StoreOutcome()
    missing = _fetch_round(pmids, services, engine, outcome, progress, run_id)
    if missing:
        log.info("asking again for %d PMID(s) missing from the first answers", len(missing))
        _fetch_round(missing, services, engine, outcome, None, run_id)
    return outcome


def _fetch_round(
    pmids: list[str],
    services: Services,
    engine: Engine,
    outcome: _StoreOutcome,
    progress: Callable[[int], None] | None,
    run_id: int | None,
) -> list[str]:
    missing: list[str] = []
    for item in services.eutils.efetch("pubmed", pmids):
        if isinstance(item, FetchFailedError):
            outcome.failed.extend(item.ids)
            outcome.errors.append(str(item))
        else:
            missing.extend(_store_batch(item, engine, outcome, run_id))
        if progress is not None:
            progress(len(item.ids))
    return missing


def _store_batch(batch: EfetchBatch, engine: Engine, outcome: _StoreOutcome, run_id: int | None) -> list[str]:
    """Parse one efetch answer and store it in one transaction; returns the requested PMIDs it lacked."""
    wanted = set(batch.ids)
    response = batch.response
    try:
        records = list(parse_pubmed(response.body, keep_raw=True))
    except ParseError as exc:
        outcome.failed.extend(batch.ids)
        outcome.errors.append(f"eutils: {exc} (PMIDs {', '.join(batch.ids)})")
        return []
    articles = [r for r in records if isinstance(r, Article) and r.pmid in wanted]
    rejected = [r for r in records if isinstance(r, RejectedRecord) and r.pmid in wanted]
    log.info("efetch batch: %d PMIDs asked, %d records to store", len(batch.ids), len(articles))
    for article in articles:
        outcome.dois[article.pmid] = _dois_of(article)
    if articles:
        result, refused = store_articles_isolated(
            engine, articles, url=response.url, fetched_at=response.fetched_at, run_id=run_id
        )
        outcome.add(result)
        rejected.extend(refused)
    if rejected:
        # One bad record fails itself, not its batch; it is kept raw, so a fixed release can parse it again.
        record_rejected(engine, rejected, source=response.url, at=response.fetched_at, run_id=run_id)
        for record in rejected:
            assert record.pmid is not None  # in wanted
            outcome.failed.append(record.pmid)
            outcome.rejected.add(record.pmid)
            outcome.errors.append(
                f"pubmed PMID {record.pmid} rejected (kept raw in rejected_records): {record.reason}"
            )
    returned = {a.pmid for a in articles} | {r.pmid for r in rejected}
    return [pmid for pmid in batch.ids if pmid not in returned]


def _dois_of(article: Article) -> set[str]:
    dois = {article.doi} if article.doi else set()
    for ident in article.ids:
        if ident.id_type == "doi" and (doi := doi_or_none(ident.value)):
            dois.add(doi)
    for eloc in article.elocation_ids:
        if eloc.id_type == "doi" and (doi := doi_or_none(eloc.value)):
            dois.add(doi)
    return dois

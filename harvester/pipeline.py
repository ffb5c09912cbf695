"""The pipeline that wires the layers: resolve ids -> fetch -> parse -> store, and report what happened.

It is the only module that knows all the layers; each layer knows only the one below it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests
from sqlalchemy.engine import Engine

from db.bulk import record_rejected
from db.conflicts import describe_found
from db.reconcile import EnrichResult, reconcile_articles, store_crossref, store_pmc
from db.store import StoreResult, store_articles_isolated
from db.targets import EnrichmentTarget, article_ids_by_pmid, enrichment_targets
from enrich.crossref import (
    DEFAULT_REQUESTS_PER_SECOND as CROSSREF_REQUESTS_PER_SECOND,
    CrossrefBatch,
    CrossrefClient,
)
from enrich.icite import IciteClient
from enrich.merge import DEFAULT_POLICY
from enrich.pmc_jats import parse_pmc_articles
from harvester.errors import (
    ExitCode,
    FetchFailedError,
    InvalidIdentifierError,
    ParseError,
    UpstreamError,
    UsageError,
)
from harvester.eutils import EfetchBatch, EutilsClient
from harvester.http import RateLimiter, RetryPolicy, shared_sends
from harvester.idconv import IdConverterClient
from harvester.ids import doi_or_none, normalize_doi, normalize_pmcid, normalize_pmid, split_ids
from harvester.pubmed_xml import parse_pubmed
from harvester.records import Article, RejectedRecord
from harvester.settings import Settings

log = logging.getLogger(__name__)

IdKind = Literal["pmid", "pmcid", "doi"]
NORMALIZERS: dict[str, Callable[[str], str]] = {
    "pmid": normalize_pmid,
    "pmcid": normalize_pmcid,
    "doi": normalize_doi,
}
# DOIs OR-ed into one esearch term when the ID Converter does not know them (the client POSTs long terms).
ESEARCH_DOIS_PER_REQUEST = 50


@dataclass(frozen=True, slots=True)
class Services:
    """The remote services one run talks to; NCBI's two services share one rate limiter."""

    eutils: EutilsClient
    idconv: IdConverterClient
    crossref: CrossrefClient
    icite: IciteClient | None = None  # None: iCite is not asked


def build_services(settings: Settings, session: requests.Session | None = None) -> Services:
    """Build the clients for a run from settings, with one shared NCBI rate limiter and retry policy."""
    session = session or requests.Session()
    rate_dir = settings.http.rate_dir
    # Processes of one user share each service's pacing (harvester.http.SharedSends): a cron run and a
    # `harvest pmid` meanwhile keep NCBI's rate together. Keyed by base URL and whether a key is used.
    ncbi_identity = f"{settings.eutils_url}|{'key' if settings.ncbi_api_key else 'anonymous'}"
    ncbi_limiter = RateLimiter(
        settings.ncbi_requests_per_second, shared=shared_sends(rate_dir, "ncbi", ncbi_identity)
    )
    crossref_identity = f"{settings.crossref_url}|{'plus' if settings.crossref_plus_token else 'public'}"
    crossref_limiter = RateLimiter(
        CROSSREF_REQUESTS_PER_SECOND, shared=shared_sends(rate_dir, "crossref", crossref_identity)
    )
    policy = RetryPolicy(settings.http)
    return Services(
        eutils=EutilsClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        idconv=IdConverterClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        crossref=CrossrefClient.from_settings(settings, session, limiter=crossref_limiter, policy=policy),
        icite=IciteClient.from_settings(
            settings,
            session,
            limiter=RateLimiter(
                settings.icite_requests_per_second, shared=shared_sends(rate_dir, "icite", settings.icite_url)
            ),
            policy=policy,
        ),
    )


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


def read_id_file(path: str, read_stdin: Callable[[], str]) -> list[str]:
    """Ids from a file (``-`` = standard input), separated by newlines, spaces, tabs or commas; blank
    lines and ``#`` comments skipped."""
    if path == "-":
        text = read_stdin()
    else:
        try:
            # utf-8-sig: a byte-order mark (Windows editors write one) must not spoil the first id
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"id file not found: {path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise UsageError(f"id file cannot be read: {path}: {type(exc).__name__}") from None
    ids = []
    for line in text.splitlines():
        # "#" starts a comment at the start of a line or after white space; DOIs may contain "#" themselves
        ids.extend(split_ids(_COMMENT.sub("", line)))
    return ids


_COMMENT = re.compile(r"(?:^|\s)#.*$")

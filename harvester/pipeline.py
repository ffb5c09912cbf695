"""The pipeline that wires the layers: resolve ids -> fetch -> parse -> store, and report what happened.

It is the only module that knows all the layers; each layer knows only the one below it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pathlib import Path

import requests
from sqlalchemy.engine import Engine

from db.store import StoreResult, store_articles
from harvester.eutils import EfetchBatch, EutilsClient
from harvester.errors import (
    ExitCode,
    FetchFailedError,
    InvalidIdentifierError,
    ParseError,
    UpstreamError,
    UsageError,
)
from harvester.http import RateLimiter, RetryPolicy
from harvester.idconv import IdConverterClient
from harvester.ids import doi_or_none, normalize_doi, normalize_pmcid, normalize_pmid
from harvester.pubmed_xml import parse_pubmed
from harvester.records import Article
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


def build_services(settings: Settings, session: requests.Session | None = None) -> Services:
    """Build the clients for a run from settings, with one shared NCBI rate limiter and retry policy."""
    session = session or requests.Session()
    ncbi_limiter = RateLimiter(settings.ncbi_requests_per_second)
    policy = RetryPolicy(settings.http)
    return Services(
        eutils=EutilsClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        idconv=IdConverterClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
    )


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

    @property
    def exit_code(self) -> ExitCode:
        """The most severe outcome decides: failed > invalid > not found > ok."""
        if self.failed:
            return ExitCode.UPSTREAM
        if self.invalid:
            return ExitCode.USAGE
        if self.not_found:
            return ExitCode.NOT_FOUND
        return ExitCode.OK

    def summary_line(self) -> str:
        line = (
            f"requested {self.requested}, created {len(self.created)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, not found {len(self.not_found)}, failed {len(self.failed)}"
        )
        return line + (f", invalid {len(self.invalid)}" if self.invalid else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_found": self.not_found,
            "failed": self.failed,
            "invalid": self.invalid,
            "errors": self.errors,
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
) -> HarvestReport:
    """Harvest articles by PMID, PMCID or DOI into the database and report each id's outcome.

    Args:
        kind: what the values are.
        values: ids as the user typed them; malformed ones are reported as invalid and skipped.
        settings: the run's settings (batch sizes).
        services: the remote clients.
        engine: the migrated database.
        progress: called with the number of PMIDs each finished efetch batch covered.

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
        targets, pending_dois = _resolve(kind, ids, services, report)

    candidates, search_failed = _search_dois(pending_dois, services, report)
    pmids = list(dict.fromkeys([*targets.values(), *candidates]))
    outcome = _fetch_and_store(pmids, services=services, engine=engine, progress=progress)
    report.errors.extend(outcome.errors)

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
        else:
            report.not_found.append(requested)
    return report


def _resolve(
    kind: IdKind, ids: list[str], services: Services, report: HarvestReport
) -> tuple[dict[str, str], list[str]]:
    """Map PMCIDs or DOIs to PMIDs with the ID Converter; DOIs it does not know are returned pending."""
    targets: dict[str, str] = {}
    pending: list[str] = []
    try:
        records = services.idconv.convert(ids, kind)  # type: ignore[arg-type]
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


def _search_dois(
    dois: list[str], services: Services, report: HarvestReport
) -> tuple[list[str], set[str]]:
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

    def add(self, result: StoreResult) -> None:
        self.created.update(result.created)
        self.updated.update(result.updated)
        self.unchanged.update(result.unchanged)


def _fetch_and_store(
    pmids: list[str],
    *,
    services: Services,
    engine: Engine,
    progress: Callable[[int], None] | None,
) -> _StoreOutcome:
    """efetch in batches, parse and store each batch as it arrives; ask once more for PMIDs a batch lacked.

    A PMID missing from an answer is either unknown to PubMed or was dropped by a short response; asking
    again once tells the two apart without trusting a single short answer.
    """
    outcome = _StoreOutcome()
    missing = _fetch_round(pmids, services, engine, outcome, progress)
    if missing:
        log.info("asking again for %d PMID(s) missing from the first answers", len(missing))
        _fetch_round(missing, services, engine, outcome, None)
    return outcome


def _fetch_round(
    pmids: list[str],
    services: Services,
    engine: Engine,
    outcome: _StoreOutcome,
    progress: Callable[[int], None] | None,
) -> list[str]:
    missing: list[str] = []
    for item in services.eutils.efetch("pubmed", pmids):
        if isinstance(item, FetchFailedError):
            outcome.failed.extend(item.ids)
            outcome.errors.append(str(item))
        else:
            missing.extend(_store_batch(item, engine, outcome))
        if progress is not None:
            progress(len(item.ids))
    return missing


def _store_batch(batch: EfetchBatch, engine: Engine, outcome: _StoreOutcome) -> list[str]:
    """Parse one efetch answer and store it in one transaction; returns the requested PMIDs it lacked."""
    wanted = set(batch.ids)
    try:
        records = [r for r in parse_pubmed(batch.response.body, keep_raw=True) if isinstance(r, Article)]
    except ParseError as exc:
        outcome.failed.extend(batch.ids)
        outcome.errors.append(f"eutils: {exc} (PMIDs {', '.join(batch.ids)})")
        return []
    articles = [a for a in records if a.pmid in wanted]
    for article in articles:
        outcome.dois[article.pmid] = _dois_of(article)
    if articles:
        outcome.add(store_articles(engine, articles, url=batch.response.url, fetched_at=batch.response.fetched_at))
    returned = {a.pmid for a in articles}
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
    """Ids from a file (``-`` = standard input): one per line; blank lines and ``#`` comments skipped."""
    if path == "-":
        text = read_stdin()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"id file not found: {path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise UsageError(f"id file cannot be read: {path}: {type(exc).__name__}") from None
    ids = []
    for line in text.splitlines():
        # "#" starts a comment at the start of a line or after white space; DOIs may contain "#" themselves
        content = _COMMENT.sub("", line).strip()
        if content:
            ids.append(content)
    return ids


_COMMENT = re.compile(r"(?:^|\s)#.*$")

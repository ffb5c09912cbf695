"""NIH iCite client: ``GET /api/pubs?pmids=...``, at most 200 PMIDs a request (:mod:`enrich.icite_json`
parses the answers).

iCite changed its answer in July 2025: before, ``{"meta": {...}, "links": {...}, "data": [...]}`` with
authors as one comma-separated string and "Yes"/"No" flags; since, ``{"data": [...]}`` with authors as
objects (``firstName``, ``lastName``, ``fullName``) and true/false flags (PEERS.md "Citation sources";
pmidcite PRs #77/#78). ``legacy=false`` answers use camelCase names. The parser takes all of these, and
every key is optional but the PMID. A PMID iCite does not know is simply absent from ``data``: the
client reports it as not found, which is an answer, not a failure.

iCite publishes no rate limit; the client has a pacer of its own (default
:data:`DEFAULT_REQUESTS_PER_SECOND`, ``[icite] requests_per_second``) and goes through the one retry policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import requests

from enrich.icite_json import IciteAnswer, parse_icite_response
from enrich.records import IciteRecord
from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    ParseError,
    RejectedRequestError,
    UpstreamError,
)
from harvester.core.ids import normalize_pmid
from harvester.core.settings import Settings
from harvester.sources.http import RateLimiter, Response, RetryPolicy, ServiceClient

log = logging.getLogger(__name__)

SOURCE = "icite"
MAX_BATCH_SIZE = 200  # iCite's documented limit per request (an older page said 1,000; clients saw 414s)
DEFAULT_REQUESTS_PER_SECOND = 2.0
# ------------------------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class IciteBatch:
    """One request's outcome: the records found, PMIDs iCite does not know, PMIDs whose record was bad."""

    requested: tuple[str, ...]
    records: tuple[IciteRecord, ...]
    not_found: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]  # (PMID, message)
    response: Response


class _ParsingCheck:
    """Parses each 2xx answer once; an answer that is not iCite's JSON is retried (BadResponseError)."""

    def __init__(self) -> None:
        self.answer = IciteAnswer(())

    def __call__(self, response: Response) -> None:
        try:
            self.answer = parse_icite_response(response.body)
        except ParseError as exc:
            raise BadResponseError(
                f"{exc.message} (from {response.url})", source=SOURCE, url=response.url
            ) from None


class IciteClient:
    """iCite metrics by PMID, in batches of at most :data:`MAX_BATCH_SIZE`."""

    def __init__(self, service: ServiceClient, *, batch_size: int = MAX_BATCH_SIZE) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        self.service = service
        self.batch_size = batch_size

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: requests.Session,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
    ) -> IciteClient:
        """The client at ``settings.icite_url``, paced at ``settings.icite_requests_per_second``."""
        service = ServiceClient(
            session,
            name=SOURCE,
            base_url=settings.icite_url,
            limiter=limiter if limiter is not None else RateLimiter(settings.icite_requests_per_second),
            policy=policy if policy is not None else RetryPolicy(settings.http),
            timeout=settings.http.timeout,
            headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
            secrets=settings.secrets,
            max_response_bytes=settings.http.max_response_bytes,
        )
        return cls(service, batch_size=settings.icite_batch_size)

    def fetch_metrics(
        self, pmids: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> Iterator[IciteBatch | FetchFailedError]:
        """Fetch records batch by batch, lazily: one ``GET api/pubs?pmids=A,B,...`` per batch.

        PMIDs are normalised and sent once however often they are given. A batch that fails after every
        attempt is yielded as a FetchFailedError naming its PMIDs; the next batch follows.

        Raises:
            InvalidIdentifierError: a PMID is malformed (all are checked before the first request).
            RejectedRequestError: iCite refused a request (a 4xx); retrying cannot fix it.
        """
        wanted = list(dict.fromkeys(normalize_pmid(p) for p in pmids))
        for start in range(0, len(wanted), self.batch_size):
            batch = wanted[start : start + self.batch_size]
            yield self._fetch_batch(batch)
            if progress is not None:
                progress(len(batch))

    def _fetch_batch(self, batch: Sequence[str]) -> IciteBatch | FetchFailedError:
        check = _ParsingCheck()
        try:
            response = self.service.request("GET", "api/pubs", params={"pmids": ",".join(batch)}, check=check)
        except RejectedRequestError:
            raise
        except UpstreamError as exc:
            return FetchFailedError(
                f"icite: {len(batch)} PMIDs not fetched: {exc.message}",
                source=SOURCE,
                ids=tuple(batch),
                url=exc.url,
            )
        asked = set(batch)
        found: dict[str, IciteRecord] = {}
        for record in check.answer.records:
            if record.pmid in asked:
                found.setdefault(record.pmid, record)
            else:
                log.debug("icite: PMID %s in the answer was not asked for", record.pmid)
        rejected = [(pmid, message) for pmid, message in check.answer.rejected if pmid in asked]
        for pmid, message in check.answer.rejected:
            if pmid not in asked:
                log.warning("%s", message)
        bad = {pmid for pmid, _ in rejected}
        return IciteBatch(
            requested=tuple(batch),
            records=tuple(found[p] for p in batch if p in found),
            not_found=tuple(p for p in batch if p not in found and p not in bad),
            rejected=tuple(rejected),
            response=response,
        )


__all__ = [
    "DEFAULT_REQUESTS_PER_SECOND",
    "MAX_BATCH_SIZE",
    "SOURCE",
    "IciteBatch",
    "IciteClient",
]

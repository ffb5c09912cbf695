"""Crossref REST API client: works by DOI, in batches, in the polite pool (:mod:`enrich.crossref_json`
parses them).

Crossref answers ``/works/{doi}`` with an envelope ``{"status": "ok", "message-type": "work", "message":
{...}}`` and ``/works?filter=doi:A,doi:B`` with a ``work-list`` envelope; a request it refuses comes back
with ``"status": "failed"`` (HTTP 400, ``validation-failure``), a server fault with ``"status": "error"``
(HTTP 500, ``exception``), and an unknown DOI as HTTP 404 with the plain text ``Resource not found.``.

Rules followed (PEERS.md, "Crossref REST API"; CrossRef/rest-api-doc README): HTTPS; the polite pool
(``mailto`` parameter and a User-Agent naming the tool, its version and the contact address); an optional
Metadata Plus token in the ``Crossref-Plus-API-Token: Bearer`` header; DOIs URL-encoded in paths and
parameters; several DOIs per request by repeating the ``doi:`` filter (CrossRef/rest-api-doc#301).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import requests

from enrich.crossref_json import SOURCE, parse_crossref_response
from enrich.records import CrossrefWork
from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    ParseError,
    RejectedRequestError,
    ServiceUnavailableError,
    UpstreamError,
)
from harvester.core.ids import normalize_doi
from harvester.core.settings import Settings
from harvester.sources.http import RateLimiter, Response, RetryPolicy, ServiceClient, describe_body, name_some

log = logging.getLogger(__name__)


# DOIs per /works?filter=doi:...,doi:... request. Crossref documents no count limit for repeated doi:
# filters, only that "you may hit some URL size limits" (Crossref staff, CrossRef/rest-api-doc#301);
# 50 is what other clients use "to keep URLs a sane length" (aspero-crossref, PEERS.md K). The URL
# length is what Crossref limits: 4096 bytes for the request line (CrossRef/rest-api-doc#251), so a
# batch is also cut before its URL passes MAX_URL.
DEFAULT_BATCH_SIZE = 50
MAX_ROWS = 1000  # Crossref's cap on ``rows`` (PEERS.md, Paging)
MAX_URL = 4000  # characters, scheme and host included: the request line stays under 4096 bytes

# Crossref's limits since 1 December 2025 (Crossref blog "Announcing changes to REST API rate limits",
# 2025-11-05; PEERS.md, "Crossref since 1 December 2025"): the polite pool (mailto) allows 10 requests per
# interval of one second with at most 3 in flight at a time; the public pool 5, one at a time. Metadata
# Plus publishes no new figures, so a token is paced as the polite pool. Crossref asks clients to obey
# the x-rate-limit-limit / x-rate-limit-interval headers of every answer: they slow the limiter down
# (never speed it past these), and a 429's Retry-After is waited out. The concurrency counts every
# harvest process sharing the pacing (the per-user file, and with PostgreSQL every host).
POLITE_REQUESTS_PER_SECOND = 10.0
POLITE_CONCURRENCY = 3
PUBLIC_REQUESTS_PER_SECOND = 5.0
PUBLIC_CONCURRENCY = 1
DEFAULT_REQUESTS_PER_SECOND = POLITE_REQUESTS_PER_SECOND  # harvest asks with a mailto when an e-mail is set


def pool_limits(settings: Settings) -> tuple[float, int]:
    """Requests per second and requests in flight for the pool these settings ask in (see above)."""
    if settings.email or settings.crossref_plus_token is not None:
        return POLITE_REQUESTS_PER_SECOND, POLITE_CONCURRENCY
    return PUBLIC_REQUESTS_PER_SECOND, PUBLIC_CONCURRENCY


def pool_name(settings: Settings) -> str:
    """ "plus", "polite" or "public": the pool Crossref puts these settings' requests in."""
    if settings.crossref_plus_token is not None:
        return "plus"
    return "polite" if settings.email else "public"


PLUS_TOKEN_HEADER = "Crossref-Plus-API-Token"

_NOT_FOUND_TEXT = "resource not found"


@dataclass(frozen=True, slots=True)
class CrossrefBatch:
    """What one batch of DOIs came back as.

    ``requested`` are the caller's spellings of the DOIs this batch accounts for: each is either matched
    (case-insensitively) by a work in ``works`` or listed in ``not_found``. DOIs whose look-up failed are
    not here but in a FetchFailedError yielded right after the batch. ``response`` is the list request's
    answer (the first single look-up's for DOIs that cannot go in a list); its ``url`` is safe to store.
    ``aliases`` pairs a requested DOI with the different DOI of the work Crossref answered it with (an
    aliased DOI resolved to its primary).
    """

    requested: tuple[str, ...]
    works: tuple[CrossrefWork, ...]
    not_found: tuple[str, ...]
    response: Response
    aliases: tuple[tuple[str, str], ...] = ()


def check_crossref_json(response: Response, *, rejected: dict[str, str] | None = None) -> list[CrossrefWork]:
    """Parse a 2xx answer; BadResponseError (retried) when it is an HTML page or JSON that does not parse.

    Raises:
        BadResponseError: not Crossref's JSON (an HTML page, a truncated body, ...).
        RejectedRequestError / ServiceUnavailableError: as :func:`parse_crossref_response`.
    """
    try:
        return parse_crossref_response(response.body, rejected=rejected)
    except ParseError as exc:
        raise BadResponseError(
            f"{exc.message} from {response.url}", source=SOURCE, url=response.url
        ) from None
    except RejectedRequestError as exc:
        raise RejectedRequestError(
            f"{exc.message} ({response.url})", source=SOURCE, url=response.url
        ) from None
    except ServiceUnavailableError as exc:
        raise ServiceUnavailableError(
            f"{exc.message} ({response.url})", source=SOURCE, url=response.url
        ) from None


# ---------------------------------------------------------------------------------------------- rates

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def advertised_rate(headers: Mapping[str, str]) -> float | None:
    """Requests per second that ``x-rate-limit-limit`` / ``x-rate-limit-interval`` allow; None if absent.

    The interval is "1s" in every recorded answer ("always expressed in seconds", rest-api-doc README);
    a bare number means seconds too. Crossref says the figures are not always reliable (grobid PR #725),
    so they are only ever used to slow down (see :meth:`RateLimiter.limit_to`).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    limit_text = lowered.get("x-rate-limit-limit", "").strip()
    interval = _INTERVAL.match(lowered.get("x-rate-limit-interval", "") or "1s")
    try:
        limit = float(limit_text)
    except ValueError:
        return None
    if interval is None or not (math.isfinite(limit) and limit > 0):
        return None
    seconds = float(interval.group(1)) * _UNIT_SECONDS[(interval.group(2) or "s").lower()]
    if not (math.isfinite(seconds) and seconds > 0):  # "0s", or an interval of 5,000 digits
        return None
    rate = limit / seconds
    return rate if rate > 0 else None


def rate_header_observer(limiter: RateLimiter) -> Callable[[Response], None]:
    """A ServiceClient ``observe`` hook: pace ``limiter`` by what each answer's rate headers advertise,
    never faster than the limiter's own ceiling."""

    def observe(response: Response) -> None:
        rate = advertised_rate(response.headers)
        if rate is None:
            return
        before = limiter.rate
        now = limiter.limit_to(rate)
        if now != before:
            log.info(
                "crossref: advertised limit %g requests/s; pacing at %g requests/s (was %g)",
                rate,
                now,
                before,
                extra={"source": SOURCE},
            )

    return observe


# ----------------------------------------------------------------------------------------------- client


def _is_not_found(response: Response) -> bool:
    """Crossref's 404 for an unknown DOI ("Resource not found."), not some other server's 404 page."""
    head = response.body[:512].decode("utf-8", "replace").strip().lower()
    return _NOT_FOUND_TEXT in head and "<html" not in head


class _ParsingCheck:
    """A ServiceClient check that parses each 2xx answer once and keeps the works of the last one."""

    def __init__(self) -> None:
        self.works: list[CrossrefWork] = []
        self.rejected: dict[str, str] = {}  # DOI -> why its work was left out of the last answer

    def __call__(self, response: Response) -> None:
        self.rejected = {}
        self.works = check_crossref_json(response, rejected=self.rejected)


class CrossrefClient:
    """Crossref works by DOI: in batches through the ``doi:`` filter, single DOIs through /works/{doi}."""

    def __init__(self, service: ServiceClient, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not 1 <= batch_size <= MAX_ROWS:
            raise ValueError(f"batch_size must be between 1 and {MAX_ROWS}, not {batch_size}")
        self.service = service
        self.batch_size = batch_size

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: requests.Session,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
    ) -> CrossrefClient:
        """Build the client for the polite pool (and the Plus pool when a token is set).

        ``mailto`` (when an e-mail is set) goes on every request and the User-Agent names the tool, its
        version and the address; a Plus token travels only in its header and is redacted everywhere.
        The default limiter keeps the pool's rate and concurrency (:func:`pool_limits`); either way,
        answers that advertise a lower rate slow it down.
        """
        params = {"mailto": settings.email} if settings.email else {}
        headers = {"User-Agent": settings.user_agent, "Accept": "application/json"}
        if settings.crossref_plus_token is not None:
            headers[PLUS_TOKEN_HEADER] = f"Bearer {settings.crossref_plus_token.reveal()}"
        if limiter is None:
            rate, concurrency = pool_limits(settings)
            limiter = RateLimiter(rate, concurrency=concurrency)
        service = ServiceClient(
            session,
            name=SOURCE,
            base_url=settings.crossref_url,
            limiter=limiter,
            policy=policy if policy is not None else RetryPolicy(settings.http),
            timeout=settings.http.timeout,
            default_params=params,
            headers=headers,
            secrets=settings.secrets,
            max_response_bytes=settings.http.max_response_bytes,
            observe=rate_header_observer(limiter),
        )
        return cls(service)

    # -- requests

    @staticmethod
    def _list_params(keys: Sequence[str]) -> dict[str, str]:
        return {"filter": ",".join(f"doi:{key}" for key in keys), "rows": str(len(keys))}

    def _batches(self, keys: Sequence[str]) -> Iterator[list[str]]:
        """Up to batch_size DOIs a batch, fewer when the URL would grow past MAX_URL."""
        batch: list[str] = []
        for key in keys:
            candidate = [*batch, key]
            too_long = self.service.url_length("works", self._list_params(candidate)) > MAX_URL
            if batch and (len(candidate) > self.batch_size or too_long):
                yield batch
                batch = [key]
            else:
                batch = candidate
        if batch:
            yield batch

    def _refused(self, response: Response) -> RejectedRequestError:
        """The error for a 400: Crossref's own words when the body is its validation-failure JSON."""
        try:
            parse_crossref_response(response.body)
        except (RejectedRequestError, ServiceUnavailableError) as exc:
            detail = self.service.redact(exc.message)  # Crossref may echo a parameter value
        except ParseError:
            detail = f"crossref: {self.service.redact(describe_body(response.body))}"
        else:
            detail = "crossref: a work in an HTTP 400 answer"
        return RejectedRequestError(
            f"{detail} (HTTP {response.status} from {response.url})", source=SOURCE, url=response.url
        )

    def _list(self, keys: Sequence[str]) -> tuple[Response, list[CrossrefWork], dict[str, str]]:
        check = _ParsingCheck()
        response = self.service.request(
            "GET", "works", params=self._list_params(keys), check=check, accept=(400,)
        )
        if response.status == 400:
            raise self._refused(response)
        return response, check.works, check.rejected

    def _lookup(self, key: str) -> tuple[Response, CrossrefWork | None]:
        """One DOI through /works/{doi}; (response, None) when Crossref does not know it."""
        check = _ParsingCheck()
        response = self.service.request("GET", "works/" + quote(key, safe=""), check=check, accept=(400, 404))
        if response.status == 404:
            if _is_not_found(response):
                return response, None
            raise RejectedRequestError(
                f"crossref: HTTP 404 from {response.url} that is not Crossref's 'Resource not found.' "
                f"({self.service.redact(describe_body(response.body))}); is crossref_url right?",
                source=SOURCE,
                url=response.url,
            )
        if response.status == 400:
            raise self._refused(response)
        works = check.works
        if not works:
            raise RejectedRequestError(
                f"crossref: no work in the answer from {response.url}", source=SOURCE, url=response.url
            )
        match = next((w for w in works if w.doi == key), works[0])
        return response, match

    # -- public

    def fetch_work(self, doi: str) -> CrossrefWork | None:
        """The work for one DOI, or None when Crossref does not know it (HTTP 404).

        Raises:
            InvalidIdentifierError: ``doi`` is not a DOI.
            RejectedRequestError: Crossref refused the request (HTTP 400), or a 404 came from elsewhere.
            FetchFailedError: every attempt failed; ``ids`` is ``(doi,)``.
        """
        key = normalize_doi(doi)
        try:
            return self._lookup(key)[1]
        except RejectedRequestError:
            raise
        except UpstreamError as exc:
            raise FetchFailedError(
                f"crossref: DOI {key} not fetched: {exc.message}", source=SOURCE, ids=(doi,), url=exc.url
            ) from exc

    def fetch_works(self, dois: Sequence[str]) -> Iterator[CrossrefBatch | FetchFailedError]:
        """Fetch works batch by batch; lazily, one list request per batch as you iterate.

        Each batch goes out as one ``/works?filter=doi:A,doi:B,...&rows=n``; DOIs the list did not
        return (the filter can miss DOIs whose case or aliasing differs) are looked up one by one through
        ``/works/{doi}``, and a 404 there puts the DOI in ``not_found``. DOIs are matched to works
        case-insensitively and sent once however often they are given. A DOI holding a comma cannot go
        in a filter (Crossref splits it on commas) and is looked up singly. A batch whose list request
        fails after every attempt is yielded as a FetchFailedError naming its DOIs; single look-ups that
        fail come as a FetchFailedError right after their batch. The next batch follows either way.

        Raises:
            InvalidIdentifierError: a DOI is malformed (all are checked before the first request).
            RejectedRequestError: Crossref refused a request (HTTP 400); retrying cannot fix it.
        """
        wanted: dict[str, list[str]] = {}  # normal form -> the caller's spellings of it
        for original in dois:
            wanted.setdefault(normalize_doi(original), []).append(original)
        listable = [key for key in wanted if "," not in key]
        single_only = [key for key in wanted if "," in key]
        for batch in self._batches(listable):
            yield from self._fetch_batch(batch, wanted, use_list=True)
        for start in range(0, len(single_only), self.batch_size):
            yield from self._fetch_batch(single_only[start : start + self.batch_size], wanted, use_list=False)

    def _fetch_batch(
        self, batch: Sequence[str], wanted: Mapping[str, Sequence[str]], *, use_list: bool
    ) -> Iterator[CrossrefBatch | FetchFailedError]:
        def originals(keys: Iterable[str]) -> tuple[str, ...]:
            return tuple(o for key in keys for o in wanted[key])

        found: dict[str, CrossrefWork] = {}
        rejected: dict[str, str] = {}  # DOI -> why its work in the list answer does not parse
        response: Response | None = None
        if use_list:
            try:
                response, works, rejected = self._list(batch)
            except RejectedRequestError:
                raise
            except UpstreamError as exc:
                # Retries exhausted (FetchFailedError) or an answer over the size limit.
                yield FetchFailedError(
                    f"crossref: {len(batch)} DOIs not fetched ({name_some(batch)}): {exc.message}",
                    source=SOURCE,
                    ids=originals(batch),
                    url=exc.url,
                )
                return
            keys = set(batch)
            for work in works:
                if work.doi in keys:
                    found.setdefault(work.doi, work)
                else:
                    log.debug("crossref: %s in the answer was not asked for", work.doi)
        not_found: list[str] = []
        failed: list[str] = []
        aliases: list[tuple[str, str]] = []
        last_error: UpstreamError | None = None
        if use_list:
            # A work the list held but that does not parse would not parse alone either: named failed now.
            for key in (k for k in batch if k not in found and k in rejected):
                failed.append(key)
                url = response.url if response is not None else None
                last_error = BadResponseError(rejected[key], source=SOURCE, url=url)
        for key in (k for k in batch if k not in found and k not in failed):
            try:
                single, looked_up = self._lookup(key)
            except RejectedRequestError:
                raise
            except UpstreamError as exc:
                failed.append(key)
                last_error = exc
                continue
            response = response if response is not None else single
            if looked_up is None:
                not_found.append(key)
                continue
            found[key] = looked_up
            if looked_up.doi != key:
                aliases.extend((original, looked_up.doi) for original in wanted[key])
        if response is not None:
            accounted = [key for key in batch if key not in failed]
            works_out = {found[k].doi: found[k] for k in accounted if k in found}
            yield CrossrefBatch(
                requested=originals(accounted),
                works=tuple(works_out.values()),
                not_found=originals(not_found),
                response=response,
                aliases=tuple(aliases),
            )
        if failed:
            detail = last_error.message if last_error is not None else "failed"
            yield FetchFailedError(
                f"crossref: {len(failed)} DOIs not fetched one by one: {detail}",
                source=SOURCE,
                ids=originals(failed),
                url=last_error.url if last_error is not None else None,
            )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_REQUESTS_PER_SECOND",
    "POLITE_CONCURRENCY",
    "POLITE_REQUESTS_PER_SECOND",
    "PUBLIC_CONCURRENCY",
    "PUBLIC_REQUESTS_PER_SECOND",
    "SOURCE",
    "CrossrefBatch",
    "CrossrefClient",
    "advertised_rate",
    "check_crossref_json",
    "pool_limits",
    "pool_name",
    "rate_header_observer",
]

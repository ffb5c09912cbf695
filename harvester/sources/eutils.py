"""NCBI E-utilities client: efetch in batches and esearch, each answer checked before it is trusted.

NCBI reports many failures inside HTTP 200: an ``<ERROR>`` element, an HTML maintenance page, or XML
cut short. :func:`check_eutils_xml` turns those into :class:`~harvester.core.errors.BadResponseError`, which
the retry policy retries like a 5xx. esearch's ``ErrorList`` (PhraseNotFound, FieldNotFound) is not a
failure: the search ran, and the terms it could not use are reported in :class:`EsearchResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import requests
from lxml import etree

from harvester.core.bounds import bounded_int
from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    ParseError,
    RejectedRequestError,
    UpstreamError,
    UsageError,
)
from harvester.core.settings import Settings
from harvester.core.xmlsafe import parse_document
from harvester.sources.http import RateLimiter, Response, RetryPolicy, ServiceClient, describe_body, name_some

log = logging.getLogger(__name__)

SOURCE = "eutils"
POST_ABOVE_IDS = 200  # NBK25499: "if more than about 200 UIDs are to be provided, ... use HTTP POST"
MAX_GET_URL = 2000  # characters; longer GET URLs meet HTTP 414 (rentrez#168)
POST_TERM_ABOVE = 300  # characters of esearch term (NBK25499: "more than several hundred characters")
ESEARCH_MAX_RETMAX = 10_000
PUBMED_MAX_RETSTART = 9998  # PubMed answers <ERROR> beyond this (biopython#4353, cyanheads#95)
PUBMED_MAX_RECORDS = 9999  # esearch lists, and efetch pages from its history, at most the first 9,999

EXPECTED_ROOT = {"pubmed": "PubmedArticleSet", "pmc": "pmc-articleset"}

# NCBI relays some backend outages as HTTP 400 with an <ERROR> body (cyanheads/pubmed-mcp-server#155).
_RELAYED_BACKEND_FAILURES = ("failed to connect to", "proxy_stream", "temporarily unavailable")


@dataclass(frozen=True, slots=True)
class EfetchBatch:
    """One efetch answer and the ids it was asked for (the parser finds which of them came back)."""

    ids: tuple[str, ...]
    response: Response


@dataclass(frozen=True, slots=True)
class EsearchResult:
    """One page of esearch results, with the service's own errors and warnings about the query."""

    count: int
    ids: tuple[str, ...]
    retstart: int
    retmax: int
    webenv: str | None
    query_key: str | None
    query_translation: str | None
    warnings: tuple[str, ...]  # WarningList entries, "OutputMessage: No items found."
    errors: tuple[str, ...]  # ErrorList entries, "PhraseNotFound: abcXYZ"


# ------------------------------------------------------------------------------------------ body checks


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lstrip().lower()
    return head.startswith(b"<html") or b"<!doctype html" in head or b"<html" in head


def _text_of(node: etree._Element) -> str:
    """All text inside ``node``, whitespace collapsed."""
    return " ".join("".join(str(part) for part in node.itertext()).split())


def _error_texts(root: etree._Element) -> list[str]:
    """Texts of a root <ERROR> or of <ERROR> children of the root (eSearchResult, eFetchResult, ...)."""
    candidates = [root] if root.tag == "ERROR" else [child for child in root if child.tag == "ERROR"]
    return [_text_of(node) or "(empty)" for node in candidates]


def check_eutils_xml(response: Response, *, expected_root: str | None) -> None:
    """Raise BadResponseError when an HTTP 200 body is not the XML document that was asked for.

    Refused: an HTML page (NCBI's error or maintenance pages), a body that does not parse (empty or
    truncated), a root ``<ERROR>`` or an ``<ERROR>`` child of the root, and a root other than
    ``expected_root`` (any root when None). esearch's ErrorList/PhraseNotFound is not refused.
    """
    body = response.body
    if _looks_like_html(body):
        raise BadResponseError(
            f"eutils: an HTML page instead of XML from {response.url}: {describe_body(body)}",
            source=SOURCE,
            url=response.url,
        )
    try:
        root = parse_document(body.lstrip())
    except etree.XMLSyntaxError as exc:
        problem = "an empty body" if not body.strip() else f"XML that does not parse ({exc})"
        raise BadResponseError(
            f"eutils: {problem} from {response.url}", source=SOURCE, url=response.url
        ) from None
    errors = _error_texts(root)
    if errors:
        raise BadResponseError(
            f"eutils: <ERROR> in the answer from {response.url}: {'; '.join(errors)}",
            source=SOURCE,
            url=response.url,
        )
    found = etree.QName(root).localname
    if expected_root is not None and found != expected_root:
        raise BadResponseError(
            f"eutils: expected <{expected_root}> but got <{found}> from {response.url}",
            source=SOURCE,
            url=response.url,
        )


def check_esearch_xml(response: Response) -> None:
    """check_eutils_xml for esearch, also refusing a "Search Backend failed" inside Error/WarningList.

    NCBI reports some backend failures as a 200 eSearchResult whose Count is 0 and whose ErrorList or
    WarningList says the backend failed: that is a failed search, never "no results" (PEERS.md B).
    """
    check_eutils_xml(response, expected_root="eSearchResult")
    root = parse_document(response.body.lstrip())
    for entry in (*_entries(root, "ErrorList"), *_entries(root, "WarningList")):
        if "backend failed" in entry.lower():
            raise BadResponseError(
                f"eutils: esearch backend failure reported in the answer from {response.url}: {entry}",
                source=SOURCE,
                url=response.url,
            )


def check_eutils_text(response: Response) -> None:
    """Raise BadResponseError when a text-mode answer (rettype=medline, ...) is an error page."""
    body = response.body
    stripped = body.lstrip()
    if _looks_like_html(body) or (stripped.startswith(b"<") and b"<ERROR>" in stripped[:4096]):
        raise BadResponseError(
            f"eutils: an error page instead of text from {response.url}: {describe_body(body)}",
            source=SOURCE,
            url=response.url,
        )


def is_relayed_backend_failure(response: Response) -> bool:
    """True for a 4xx whose body says a backend behind NCBI's proxy failed: worth retrying."""
    text = describe_body(response.body, limit=1000).lower()
    return any(marker in text for marker in _RELAYED_BACKEND_FAILURES)


# ---------------------------------------------------------------------------------------------- parsing


MAX_ESEARCH_NUMBER = 10**12  # Count, RetMax, RetStart: PubMed holds some 40 million records


def _int_child(root: etree._Element, tag: str) -> int:
    text = root.findtext(tag)
    number = bounded_int(text, 0, MAX_ESEARCH_NUMBER)
    if number is None:
        shown = text if text is None or len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        raise ParseError(
            f"esearch: <{tag}> is missing or not a whole number from 0 to {MAX_ESEARCH_NUMBER} ({shown!r})"
        )
    return number


def _entries(root: etree._Element, tag: str) -> tuple[str, ...]:
    container = root.find(tag)
    if container is None:
        return ()
    return tuple(f"{child.tag}: {_text_of(child)}" for child in container if isinstance(child.tag, str))


def _optional_text(root: etree._Element, tag: str) -> str | None:
    text = root.findtext(tag)
    if text is None or not text.strip():
        return None
    return text.strip()


def parse_esearch(body: bytes) -> EsearchResult:
    """Parse an eSearchResult document. Pure.

    Raises:
        ParseError: the body is not XML, its root is not eSearchResult, or Count/RetMax/RetStart are
            missing (as they are when the answer is an ``<ERROR>``).
    """
    try:
        root = parse_document(body.lstrip())
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"esearch: the answer is not well-formed XML ({exc})") from None
    if root.tag != "eSearchResult":
        raise ParseError(f"esearch: expected <eSearchResult>, got <{root.tag}>")
    id_list = root.find("IdList")
    ids = () if id_list is None else tuple((node.text or "").strip() for node in id_list.iter("Id"))
    return EsearchResult(
        count=_int_child(root, "Count"),
        ids=tuple(i for i in ids if i),
        retstart=_int_child(root, "RetStart"),
        retmax=_int_child(root, "RetMax"),
        webenv=_optional_text(root, "WebEnv"),
        query_key=_optional_text(root, "QueryKey"),
        query_translation=_optional_text(root, "QueryTranslation"),
        warnings=_entries(root, "WarningList"),
        errors=_entries(root, "ErrorList"),
    )


# ----------------------------------------------------------------------------------------------- client


class EutilsClient:
    """efetch and esearch against https://eutils.ncbi.nlm.nih.gov/entrez/eutils/."""

    def __init__(self, service: ServiceClient, *, batch_size: int = 200) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.service = service
        self.batch_size = batch_size

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: requests.Session,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
    ) -> EutilsClient:
        """Build the client: tool, email (when set) and api_key (when set) go on every request.

        Pass the same ``limiter`` to the ID Converter client: NCBI counts both against one limit.
        """
        params = {"tool": settings.tool}
        if settings.email:
            params["email"] = settings.email
        if settings.ncbi_api_key is not None:
            params["api_key"] = settings.ncbi_api_key.reveal()
        service = ServiceClient(
            session,
            name=SOURCE,
            base_url=settings.eutils_url,
            limiter=limiter if limiter is not None else RateLimiter(settings.ncbi_requests_per_second),
            policy=policy if policy is not None else RetryPolicy(settings.http),
            timeout=settings.http.timeout,
            default_params=params,
            secret_params=("api_key",),
            headers={"User-Agent": settings.user_agent},
            secrets=settings.secrets,
            max_response_bytes=settings.http.max_response_bytes,
            transient_4xx=is_relayed_backend_failure,
        )
        return cls(service, batch_size=settings.efetch_batch_size)

    def efetch(
        self, db: str, ids: Sequence[str], *, rettype: str | None = None, retmode: str = "xml"
    ) -> Iterator[EfetchBatch | FetchFailedError]:
        """Fetch records in batches of ``batch_size``; lazily, one request per batch as you iterate.

        Duplicate ids are sent once. A batch is POSTed when it has more than 200 ids or its GET URL
        would pass ~2000 characters. A batch whose attempts are exhausted (or whose answer is too
        large) is yielded as a FetchFailedError naming exactly its ids, and the next batch follows.

        Raises:
            RejectedRequestError: NCBI refused the request itself (HTTP 4xx): bad db, bad ids, ...
        """
        unique = tuple(dict.fromkeys(ids))
        check: Callable[[Response], None]
        if retmode == "xml":
            check = partial(check_eutils_xml, expected_root=EXPECTED_ROOT.get(db))
        else:
            check = check_eutils_text
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            params = {"db": db, "id": ",".join(batch), "retmode": retmode}
            if rettype is not None:
                params["rettype"] = rettype
            use_post = (
                len(batch) > POST_ABOVE_IDS or self.service.url_length("efetch.fcgi", params) > MAX_GET_URL
            )
            try:
                if use_post:
                    response = self.service.request("POST", "efetch.fcgi", data=params, check=check)
                else:
                    response = self.service.request("GET", "efetch.fcgi", params=params, check=check)
            except RejectedRequestError:
                raise
            except UpstreamError as exc:
                # Retries exhausted (FetchFailedError), or an answer over the size limit: this batch
                # is lost for now, the others may still come.
                yield FetchFailedError(
                    f"eutils efetch: {len(batch)} ids not fetched ({name_some(batch)}): {exc.message}",
                    source=SOURCE,
                    ids=batch,
                    url=exc.url,
                )
                continue
            yield EfetchBatch(ids=batch, response=response)

    def efetch_history(
        self,
        webenv: str,
        query_key: str,
        *,
        count: int,
        expected_ids: Sequence[str] = (),
        db: str = "pubmed",
    ) -> Iterator[EfetchBatch | FetchFailedError]:
        """Fetch the first ``count`` records of an esearch result from the history server.

        Pages of ``batch_size`` records (``retstart``/``retmax``, always POSTed: the WebEnv is long). Each
        batch carries the ids of ``expected_ids`` (esearch's IdList, same order) its page covers, so a
        caller can tell which are missing. A page that fails, or that NCBI refuses (an expired WebEnv,
        a position out of range), is yielded as a FetchFailedError naming those ids; the next follows.

        Raises:
            UsageError: ``count`` is negative or, for PubMed, above the 9,999 records its history serves.
        """
        if count < 0:
            raise UsageError(f"efetch from the history: count must not be negative, not {count}")
        if db == "pubmed" and count > PUBMED_MAX_RECORDS:
            raise UsageError(
                f"PubMed serves at most the first {PUBMED_MAX_RECORDS} records of a search from the history "
                f"(asked {count}); split the search into slices instead"
            )
        check = partial(check_eutils_xml, expected_root=EXPECTED_ROOT.get(db))
        for start in range(0, count, self.batch_size):
            size = min(self.batch_size, count - start)
            page = tuple(expected_ids[start : start + size])
            params = {
                "db": db,
                "WebEnv": webenv,
                "query_key": query_key,
                "retstart": str(start),
                "retmax": str(size),
                "retmode": "xml",
            }
            try:
                response = self.service.request("POST", "efetch.fcgi", data=params, check=check)
            except UpstreamError as exc:
                # Retries exhausted, an answer over the size limit, or a refused history reference
                # (RejectedRequestError): this page is lost for now, the next may still come.
                yield FetchFailedError(
                    f"eutils efetch from the history: records {start + 1}-{start + size} not fetched: "
                    f"{exc.message}",
                    source=SOURCE,
                    ids=page,
                    url=exc.url,
                )
                continue
            yield EfetchBatch(ids=page, response=response)

    def esearch(
        self,
        term: str,
        *,
        db: str = "pubmed",
        retstart: int = 0,
        retmax: int = 10000,
        usehistory: bool = False,
        datetype: str | None = None,
        mindate: str | None = None,
        maxdate: str | None = None,
        sort: str | None = None,
    ) -> EsearchResult:
        """Run one esearch page. POSTs when the term is longer than 300 characters.

        Raises:
            UsageError: retmax/retstart out of range, or only one of mindate/maxdate.
            RejectedRequestError: NCBI refused the request (HTTP 4xx).
            FetchFailedError: every attempt failed; ``ids`` is empty (a search has no input ids).
            ParseError: the answer passed the checks but is not a usable eSearchResult.
        """
        if not 0 <= retmax <= ESEARCH_MAX_RETMAX:
            raise UsageError(f"esearch retmax must be between 0 and {ESEARCH_MAX_RETMAX}, not {retmax}")
        if retstart < 0:
            raise UsageError(f"esearch retstart must not be negative, not {retstart}")
        if db == "pubmed" and retstart > PUBMED_MAX_RETSTART:
            raise UsageError(
                f"PubMed's esearch cannot start past record {PUBMED_MAX_RETSTART} (asked {retstart}); "
                "split the query into date slices instead"
            )
        if (mindate is None) != (maxdate is None):
            raise UsageError("esearch mindate and maxdate must be given together")
        params = {"db": db, "term": term, "retstart": str(retstart), "retmax": str(retmax)}
        optional = {"datetype": datetype, "mindate": mindate, "maxdate": maxdate, "sort": sort}
        params.update({k: v for k, v in optional.items() if v is not None})
        if usehistory:
            params["usehistory"] = "y"
        check = check_esearch_xml
        if len(term) > POST_TERM_ABOVE:
            response = self.service.request("POST", "esearch.fcgi", data=params, check=check)
        else:
            response = self.service.request("GET", "esearch.fcgi", params=params, check=check)
        result = parse_esearch(response.body)
        if result.errors:
            log.info("esearch %r: NCBI reports %s", term[:100], "; ".join(result.errors))
        return result

"""A stand-in for NCBI E-utilities, the PMC ID Converter and Crossref: a real HTTP server on 127.0.0.1.

:class:`StandIn` answers efetch, esearch and epost (db=pubmed) and the ID Converter from PubMed records
loaded from efetch XML, efetch db=pmc from loaded PMC ``<article>`` documents, and Crossref's
``/works/{doi}`` and ``/works?filter=doi:...`` from loaded Crossref works. It logs every request with its
time, and lets a test script upstream misbehaviour (429s, HTML error pages, ``<ERROR>`` inside a 200,
truncated or short bodies, delays, resets). The CLI under test is pointed at it through
:meth:`StandIn.env`, so it runs exactly as a user runs it. The response shapes follow recorded NCBI and
Crossref responses (see /work/shared/PEERS.md and the fixtures MANIFEST); where the exact wording is not
on record the text is marked as approximated in the route's docstring.

Not modelled yet (answered with HTTP 501 and noted in :attr:`StandIn.errors`): esearch/epost db=pmc,
JSON E-utilities output, esummary/elink/einfo, ID Converter formats other than JSON, Crossref routes other
than /works (members, funders, journals, prefixes, agency, transform) and Crossref filters other than
``doi``, queries, cursors and ``select``. Responses are never gzip-compressed.
By hand: ``python -m tests.standin --records DIR --crossref DIR --pmc DIR --port 0``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, TypeAlias, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

# Route paths, relative to the base URL; usable as ``path_suffix`` in inject/fail_always/requests_for.
EFETCH = "entrez/eutils/efetch.fcgi"
ESEARCH = "entrez/eutils/esearch.fcgi"
EPOST = "entrez/eutils/epost.fcgi"
IDCONV = "idconv/api/v1/articles/"
CROSSREF = "crossref/"
CROSSREF_WORKS = "crossref/works"
ICITE = "icite/"
ICITE_PUBS = "icite/api/pubs"  # GET ?pmids=A,B (at most ICITE_MAX_PMIDS) and /api/pubs/{pmid}
ICITE_MAX_PMIDS = 200  # both /works/{doi} and /works?filter=... match this suffix

NCBI_RATE_LIMIT = 3  # requests per second without an API key (NBK25497)
NCBI_RATE_LIMIT_WITH_KEY = 10  # with an api_key (NBK25497, KA-05510)
ESEARCH_MAX_RETSTART = 9998  # larger retstart -> <ERROR> in a 200 (PEERS.md D)
ESEARCH_MAX_RECORDS = 9999  # retstart + retmax is clamped to this ("Restrictions achieved")
DEFAULT_RETMAX = 20  # esearch's documented default; efetch from the history uses it too
EFETCH_MAX_RETMAX = 10_000
IDCONV_MAX_IDS = 200
CROSSREF_RATE_LIMIT = 5  # x-rate-limit-limit in the recorded 2026 answers (public pool, interval 1s)
CROSSREF_CONCURRENCY_LIMIT = 1  # x-concurrency-limit, as recorded
CROSSREF_MAX_ROWS = 1000
CROSSREF_DEFAULT_ROWS = 20

PUBMED_SET_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN"'
    b' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
ESEARCH_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN"'
    ' "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
EFETCH_ERROR_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN"'
    ' "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
)
EPOST_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE ePostResult PUBLIC "-//NLM//DTD epost 20090526//EN"'
    ' "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20090526/epost.dtd">\n'
)
PMC_SET_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE pmc-articleset PUBLIC "-//NLM//DTD ARTICLE SET 2.0//EN"'
    b' "https://dtd.nlm.nih.gov/ncbi/pmc/articleset/nlm-articleset-2.0.dtd">\n'
)
XML_TYPE = "text/xml; charset=UTF-8"
CROSSREF_JSON_TYPE = "application/json"  # as recorded for 200 answers
CROSSREF_ERROR_JSON_TYPE = "application/json;charset=utf-8"  # as recorded for the 400 validation failure
CROSSREF_NOT_FOUND = "Resource not found."  # the recorded 404 body of /works/{doi}, text/plain
# Crossref's 429 page as quoted in CrossRef/rest-api-doc#159 and #237 (2016-17; newer bodies not on record).
CROSSREF_429_PAGE = (
    "<html><body><h1>429 Too Many Requests</h1>\n"
    "You have sent too many requests in a given amount of time.\n</body></html>\n"
)
IDCONV_JSON_TYPE = "application/json; charset=ISO-8859-1"  # as recorded; bodies are ASCII-escaped JSON

EMPTY_ID_LIST = "ID list is empty! Possibly it has no correct IDs."
EMPTY_TERM = "Empty term and query_key - nothing todo"
RETSTART_TOO_LARGE = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, ESearch can only "
    "retrieve the first 9,999 records matching the query. To obtain more than 9,999 PubMed records, consider "
    "using EDirect that contains additional logic to batch PubMed search results automatically so that an "
    "arbitrary number can be retrieved. For details see https://www.ncbi.nlm.nih.gov/books/NBK25499/"
)
IDCONV_NOT_IN_PMC = "Identifier not found in PMC"  # a PubMed article the stand-in holds, but without a PMCID
IDCONV_INVALID_ID = "invalid article id"  # an id the stand-in does not hold at all

HTML_ERROR_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>NCBI - WWW Error 500 Diagnostic</title>
</head>
<body>
<div id="ncbi-error">
<h1>Error</h1>
<p>The server is temporarily unable to service your request due to maintenance downtime or capacity
problems. Please try again later.</p>
<p class="details">Server: eutils.ncbi.nlm.nih.gov; Error: 500 Internal Server Error</p>
</div>
</body>
</html>
"""


# ---- faults -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """Answer with this status, body and headers instead of the real answer (429, 500, 502, 503 ...)."""

    code: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HtmlErrorPage:
    """An NCBI-style HTML error/maintenance page, by default with HTTP 200 as NCBI sometimes sends it."""

    status: int = 200


@dataclass(frozen=True, slots=True)
class ErrorInBody:
    """The service's in-band error: <eFetchResult><ERROR> (eSearchResult for esearch, JSON for idconv)."""

    message: str
    status: int = 200


@dataclass(frozen=True, slots=True)
class Truncated:
    """The real answer cut after ``fraction`` of its bytes, with the cut body's Content-Length."""

    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError("Truncated.fraction must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait this long, then give the real answer (for client timeouts)."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("Delay.seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class Reset:
    """Close the connection (with a TCP reset) without answering."""


@dataclass(frozen=True, slots=True)
class Short:
    """The real answer minus its last ``drop`` records (efetch articles, esearch Ids, idconv records,
    Crossref work-list items; a single Crossref work is not shortened)."""

    drop: int = 1

    def __post_init__(self) -> None:
        if self.drop < 1:
            raise ValueError("Short.drop must be >= 1")


Fault: TypeAlias = Status | HtmlErrorPage | ErrorInBody | Truncated | Delay | Reset | Short
ParamsPredicate: TypeAlias = Callable[[Mapping[str, str]], bool]


def rate_limited(
    *,
    count: int = 4,
    limit: int = NCBI_RATE_LIMIT,
    client: str = "127.0.0.1",
    retry_after: float | None = None,
) -> Status:
    """NCBI's 429 with its JSON body; NCBI sends no Retry-After, so give one only to test honouring it."""
    body = json.dumps(
        {"error": "API rate limit exceeded", "api-key": client, "count": str(count), "limit": str(limit)},
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
    }
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return Status(429, body, headers)


def crossref_rate_limited(
    *, limit: int = CROSSREF_RATE_LIMIT, interval: str = "1s", retry_after: float | None = None
) -> Status:
    """Crossref's 429: its HTML page with the x-rate-limit-* headers that every Crossref answer carries.

    ``limit``/``interval`` say what the server now allows (lower them to test a client slowing down);
    Crossref is not on record sending Retry-After, so give one only to test honouring it.
    """
    headers = {
        "Content-Type": "text/html",
        "x-rate-limit-limit": str(limit),
        "x-rate-limit-interval": interval,
        "x-concurrency-limit": str(CROSSREF_CONCURRENCY_LIMIT),
    }
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return Status(429, CROSSREF_429_PAGE.encode(), headers)


# Routes a chaos mode can apply to: the E-utilities, the ID Converter, Crossref's lists and single works.
NCBI_ROUTES = frozenset({"efetch", "esearch", "epost"})
CROSSREF_ROUTES = frozenset({"crossref-list", "crossref-work"})
ALL_ROUTES = NCBI_ROUTES | CROSSREF_ROUTES | {"idconv"}


@dataclass(frozen=True, slots=True)
class ChaosMode:
    """One kind of fault :meth:`StandIn.chaos` may pick, and the routes where the real service shows it."""

    name: str
    fault: Fault
    routes: frozenset[str]


def chaos_modes(*, delay: float = 2.0) -> tuple[ChaosMode, ...]:
    """The fault modes of issue 6; ``delay`` should be just above the client's timeout.

    NCBI's 429 JSON, its HTML page and ``<ERROR>`` inside a 200 only on the E-utilities; Crossref's 429
    (with its x-rate-limit-* headers) only on Crossref; a short answer on efetch (pubmed and pmc), the ID
    Converter and Crossref work lists; 5xx, truncated bodies, slow answers and resets everywhere.
    """
    return (
        ChaosMode("ncbi-429", rate_limited(), NCBI_ROUTES),
        ChaosMode("500", Status(500, b"Internal Server Error"), ALL_ROUTES),
        ChaosMode("502", Status(502, b"Bad Gateway"), ALL_ROUTES),
        ChaosMode("503", Status(503, b"Service Unavailable"), ALL_ROUTES),
        ChaosMode("html-200", HtmlErrorPage(), NCBI_ROUTES),
        ChaosMode("error-in-200", ErrorInBody("Failed to connect to PubOne service"), NCBI_ROUTES),
        ChaosMode("truncated", Truncated(0.5), ALL_ROUTES),
        ChaosMode("slow", Delay(delay), ALL_ROUTES),
        ChaosMode("reset", Reset(), ALL_ROUTES),
        ChaosMode("short", Short(1), frozenset({"efetch", "idconv", "crossref-list"})),
        ChaosMode("crossref-429", crossref_rate_limited(), CROSSREF_ROUTES),
    )


@dataclass(frozen=True, slots=True)
class _Chaos:
    rate: float
    seed: int
    modes: tuple[ChaosMode, ...]


def request_key(method: str, path: str, params: Mapping[str, str]) -> str:
    """One request's identity (method, path, sorted parameters): a repeat of a key is a retry."""
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{method} {urlsplit(path).path}?{query}"


def _chaos_route(path: str) -> str | None:
    route = _route_of(path)
    if route == "crossref":
        parts = [s for s in urlsplit(path).path.strip("/").split("/") if s]
        return "crossref-list" if len(parts) == 2 else "crossref-work"
    return route


@dataclass(frozen=True, slots=True)
class _FaultRule:
    path_suffix: str
    fault: Fault
    match: ParamsPredicate | None


# ---- the request log ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the stand-in saw it; ``status`` is None until answered, and stays None after a Reset."""

    time: float  # time.monotonic() on arrival
    wall_time: float  # time.time() on arrival
    method: str
    path: str
    params: Mapping[str, str]  # query and form body merged; a repeated name's values joined with ","
    status: int | None
    client: str
    headers: Mapping[str, str] = field(default_factory=dict)
    fault: Fault | None = None  # the injected fault that shaped the answer, if any
    rate_limited: bool = False  # answered 429 by enforce_rate


def max_requests_in_any_window(times: Iterable[float], window: float = 1.0) -> int:
    """The largest number of the given times that fall within any half-open interval [t, t + window)."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def path_matches(path: str, path_suffix: str) -> bool:
    """Whether a request path ends with these segments (or starts with them: "idconv", "crossref")."""
    wanted = [s for s in path_suffix.strip("/").split("/") if s]
    have = [s for s in urlsplit(path).path.strip("/").split("/") if s]
    if not wanted:
        return True
    return have[-len(wanted) :] == wanted or have[: len(wanted)] == wanted


# ---- records -----------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One PubmedArticle or PubmedBookArticle, kept as its serialized XML plus what the routes look up."""

    pmid: str
    xml: bytes
    article_ids: tuple[
        tuple[str, str], ...
    ]  # (IdType lower-cased, value) from the record's own ArticleIdList
    dates: Mapping[str, date]  # mdat, edat, crdt, pdat where the record carries them

    def ids_of(self, kind: str) -> tuple[str, ...]:
        return tuple(value for k, value in self.article_ids if k == kind)

    @property
    def doi(self) -> str | None:
        dois = self.ids_of("doi")
        return dois[0] if dois else None

    @property
    def pmcid(self) -> str | None:
        pmcs = self.ids_of("pmc")
        return _normalise_pmcid(pmcs[0]) if pmcs else None

    @property
    def mid(self) -> str | None:
        mids = self.ids_of("mid")
        return mids[0].upper() if mids else None


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _normalise_pmcid(value: str) -> str:
    text = value.strip().upper()
    text = text.split(".", 1)[0]  # PMC2808187.1 -> PMC2808187
    return text if text.startswith("PMC") else "PMC" + text


def _date_of(element: etree._Element | None) -> date | None:
    """A PubDate/DateRevised/PubMedPubDate as a date; month and day default to 1, MedlineDate to its year."""
    if element is None:
        return None
    year = (element.findtext("Year") or "").strip()
    if not year:
        found = re.match(r"\s*(\d{4})", element.findtext("MedlineDate") or "")
        return date(int(found.group(1)), 1, 1) if found else None
    month_text = (element.findtext("Month") or "").strip().lower()
    month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text[:3], 1)
    day_text = (element.findtext("Day") or "").strip()
    try:
        return date(int(year), month, int(day_text) if day_text.isdigit() else 1)
    except ValueError:
        return None


def _stored_record(element: etree._Element, source: str) -> StoredRecord:
    if element.tag == "PubmedArticle":
        pmid = element.findtext("MedlineCitation/PMID")
        id_list = element.find("PubmedData/ArticleIdList")
        history = element.find("PubmedData/History")
        revised = element.find("MedlineCitation/DateRevised")
        published = element.find("MedlineCitation/Article/Journal/JournalIssue/PubDate")
        if published is None:
            published = element.find("MedlineCitation/Article/ArticleDate")
    else:
        pmid = element.findtext("BookDocument/PMID")
        id_list = element.find("PubmedBookData/ArticleIdList")
        history = element.find("PubmedBookData/History")
        revised = element.find("BookDocument/DateRevised")
        published = element.find("BookDocument/Book/PubDate")
    if not pmid or not pmid.strip().isdigit():
        raise ValueError(f"{source}: a {element.tag} without a numeric PMID")
    article_ids = tuple(
        ((aid.get("IdType") or "").lower(), (aid.text or "").strip())
        for aid in (id_list.iterfind("ArticleId") if id_list is not None else ())
        if (aid.text or "").strip()
    )
    found_dates = {
        "mdat": _date_of(revised),
        "pdat": _date_of(published),
        "edat": _date_of(history.find("PubMedPubDate[@PubStatus='entrez']") if history is not None else None),
        "crdt": _date_of(history.find("PubMedPubDate[@PubStatus='pubmed']") if history is not None else None),
    }
    xml = etree.tostring(element, encoding="UTF-8", xml_declaration=False, with_tail=False)
    dates = {k: v for k, v in found_dates.items() if v is not None}
    return StoredRecord(str(int(pmid)), xml, article_ids, dates)


def parse_records(data: bytes, *, source: str = "<bytes>") -> tuple[list[StoredRecord], list[str]]:
    """The articles in an efetch (or baseline/update) XML document, and the PMIDs its DeleteCitation removes.

    Gzip is recognised by its magic bytes. Raises ValueError when the document is not well-formed.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        root = etree.fromstring(data, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{source}: not well-formed XML: {exc}") from None
    records = [_stored_record(el, source) for el in root.iter("PubmedArticle", "PubmedBookArticle")]
    deleted_texts = [(p.text or "").strip() for c in root.iter("DeleteCitation") for p in c.iterfind("PMID")]
    deleted = [str(int(text)) for text in deleted_texts if text.isdigit()]
    return records, deleted


def _read_source(source: Path | str | bytes) -> list[tuple[bytes, str, bool]]:
    """(data, name, strict) per document; files found in a folder are not strict (a bad one is skipped)."""
    if isinstance(source, bytes):
        return [(source, "<bytes>", True)]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".xml", ".xml.gz")))
        return [(p.read_bytes(), str(p), False) for p in files]
    return [(path.read_bytes(), str(path), True)]


def _read_files(source: Path | str | bytes, suffixes: tuple[str, ...]) -> list[tuple[bytes, str, bool]]:
    """Like :func:`_read_source`, for files of other kinds (a folder's files with these suffixes)."""
    if isinstance(source, bytes):
        return [(source, "<bytes>", True)]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
        return [(p.read_bytes(), str(p), False) for p in files]
    return [(path.read_bytes(), str(path), True)]


def crossref_works_of(data: object, *, source: str = "<json>") -> list[dict[str, object]]:
    """The Crossref works in a decoded document: a bare work, a /works/{doi} envelope or a work list.

    Raises ValueError for anything else (a funder list, an error envelope, a work without a DOI).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a JSON object")
    if "message-type" in data or "status" in data:
        if data.get("status") != "ok":
            raise ValueError(f"{source}: a Crossref answer with status {data.get('status')!r}, not a work")
        message = data.get("message")
        if data.get("message-type") == "work" and isinstance(message, dict):
            works = [message]
        elif data.get("message-type") == "work-list" and isinstance(message, dict):
            items = message.get("items")
            works = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
        else:
            raise ValueError(f"{source}: message-type {data.get('message-type')!r} holds no works")
    else:
        works = [data]
    for work in works:
        if not isinstance(work.get("DOI"), str) or not str(work.get("DOI")).strip():
            raise ValueError(f"{source}: a Crossref work without a DOI")
    return works


_PMC_REQUEST_ID = re.compile(r"^(?:PMC)?0*([1-9]\d*)(?:\.\d+)?$", re.IGNORECASE)


def _pmc_articles(data: bytes, *, source: str) -> list[tuple[str, bytes]]:
    """(PMCID, serialized <article>) for each top-level article of a pmc-articleset or a bare article.

    The PMCID is the article's own ``front/article-meta/article-id`` of pub-id-type pmc or pmcid, with or
    without the "PMC" prefix. Raises ValueError when the XML does not parse or an article has no PMCID.
    """
    try:
        root = etree.fromstring(data, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{source}: not well-formed XML: {exc}") from None
    articles = [root] if root.tag == "article" else [el for el in root.iter("article")]
    found: list[tuple[str, bytes]] = []
    for article in articles:
        if any(ancestor.tag == "article" for ancestor in article.iterancestors()):
            continue
        ids = [
            (node.text or "").strip()
            for node in article.iterfind("front/article-meta/article-id")
            if (node.get("pub-id-type") or "").lower() in {"pmc", "pmcid"} and (node.text or "").strip()
        ]
        if not ids:
            raise ValueError(f"{source}: an <article> without a pmc/pmcid article-id")
        xml = etree.tostring(article, encoding="UTF-8", xml_declaration=False, with_tail=False)
        found.append((_normalise_pmcid(ids[0]), xml))
    return found


# ---- esearch terms ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))"
    r'|"(?P<quoted>[^"]*)"(?:\[(?P<qtag>[^\]]*)\])?'
    r'|(?P<word>[^\s()"\[\]][^\s"\[\]]*)\[(?P<wtag>[^\]]*)\]'
    r'|(?P<bare>[^\s()"]+))'
)
_QUOTED_RANGE = re.compile(r'"([^"]*)"\[([^\]]*)\]\s*:\s*"([^"]*)"\[\2\]')
_OPERATORS = {"AND", "OR", "NOT"}
_DATE_FIELDS = {
    "mdat": "mdat",
    "date - modification": "mdat",
    "edat": "edat",
    "date - entrez": "edat",
    "crdt": "crdt",
    "date - create": "crdt",
    "pdat": "pdat",
    "dp": "pdat",
    "date - publication": "pdat",
    "publication date": "pdat",
}
_AID_FIELDS = {"aid", "article identifier", "lid", "location id"}
_UID_FIELDS = {"uid", "pmid", "pubmed id"}
_DATE_BOUND = re.compile(r"^(\d{4})(?:[/-](\d{1,2})(?:[/-](\d{1,2}))?)?$")


@dataclass(frozen=True, slots=True)
class TermMatch:
    """What an esearch term matched, how the stand-in read it, and quoted phrases that matched nothing."""

    pmids: frozenset[str]
    translation: str
    phrases_not_found: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Clause:
    value: str
    tag: str | None
    quoted: bool

    def text(self) -> str:
        value = f'"{self.value}"' if self.quoted else self.value
        return f"{value}[{self.tag}]" if self.tag else value


class TermIndex:
    """Look-ups over one snapshot of the records, built once per search."""

    def __init__(self, records: Mapping[str, StoredRecord]) -> None:
        self.records = records
        self.all = frozenset(records)
        self.by_doi: dict[str, set[str]] = {}
        self.by_aid: dict[str, set[str]] = {}
        for pmid, record in records.items():
            for kind, value in record.article_ids:
                self.by_aid.setdefault(value.lower(), set()).add(pmid)
                if kind == "doi":
                    self.by_doi.setdefault(value.lower(), set()).add(pmid)


def _parse_date_bound(text: str, *, end: bool) -> date:
    """YYYY, YYYY/MM or YYYY/MM/DD as the first (or, with ``end``, the last) day it covers."""
    found = _DATE_BOUND.match(text.strip())
    if not found:
        raise ValueError(f"not a date: {text!r}")
    year, month, day = int(found.group(1)), found.group(2), found.group(3)
    if day:
        return date(year, int(month), int(day))
    if month:
        first = date(year, int(month), 1)
        return (
            (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1) if end else first
        )
    return date(year, 12, 31) if end else date(year, 1, 1)


def _in_dates(index: TermIndex, kind: str, low: date, high: date) -> frozenset[str]:
    """Records whose date of this kind is in [low, high]; a record without that date is kept."""
    return frozenset(
        pmid for pmid, rec in index.records.items() if kind not in rec.dates or low <= rec.dates[kind] <= high
    )


def match_clause(clause: Clause, index: TermIndex, default_field: str | None = None) -> frozenset[str]:
    """The PMIDs one search clause matches; the place to teach the stand-in new fields.

    DOI ([doi]: the record's ArticleIdList DOIs; [AID]/[LID]: any ArticleId), case-insensitive; PMID or
    PMID range ([uid]/[pmid], ``1:7500[uid]``); date or date range ([mdat]/[edat]/[crdt]/[pdat]/[dp] and
    their long names). An untagged number is a PMID and an untagged ``10.x/y`` a DOI. Everything else,
    ``all[sb]`` included, means all loaded records.
    """
    field_name = (clause.tag or default_field or "").strip().lower()
    value = clause.value.strip()
    if not field_name:
        field_name = "uid" if value.isdigit() else "doi" if value.startswith("10.") else ""
    if field_name == "doi":
        return frozenset(index.by_doi.get(value.lower(), ()))
    if field_name in _AID_FIELDS:
        return frozenset(index.by_aid.get(value.lower(), ()))
    if field_name in _UID_FIELDS:
        low, _, high = value.partition(":")
        if not low.strip().isdigit() or (high and not high.strip().isdigit()):
            return frozenset()
        first, last = int(low), int(high or low)
        return frozenset(p for p in index.all if first <= int(p) <= last)
    if field_name in _DATE_FIELDS:
        low, _, high = value.partition(":")
        try:
            return _in_dates(
                index,
                _DATE_FIELDS[field_name],
                _parse_date_bound(low, end=False),
                _parse_date_bound(high or low, end=True),
            )
        except ValueError:
            return index.all
    return index.all


def _tokenize(term: str) -> list[str | Clause]:
    text = _QUOTED_RANGE.sub(r"\1:\3[\2]", term)
    tokens: list[str | Clause] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:  # a stray quote or bracket: skip it
            position += 1
            continue
        position = found.end()
        if found.group("open") or found.group("close"):
            tokens.append(found.group("open") or found.group("close"))
        elif found.group("quoted") is not None:
            tokens.append(Clause(found.group("quoted"), found.group("qtag"), True))
        elif found.group("word") is not None:
            tokens.append(Clause(found.group("word"), found.group("wtag"), False))
        elif found.group("bare") is not None:
            bare = found.group("bare")
            tokens.append(bare if bare in _OPERATORS else Clause(bare, None, False))
    return tokens


def match_term(
    term: str, records: Mapping[str, StoredRecord], *, default_field: str | None = None
) -> TermMatch:
    """Evaluate an esearch term over the records: clauses joined by AND/OR/NOT, left to right as PubMed
    does, with parentheses for grouping and AND between adjacent clauses."""
    index = TermIndex(records)
    tokens = _tokenize(term)
    not_found: list[str] = []

    def group(position: int) -> tuple[frozenset[str], str, int]:
        result: frozenset[str] | None = None
        text = ""
        operator = "AND"
        while position < len(tokens):
            token = tokens[position]
            if token == ")":
                return (index.all if result is None else result), text, position + 1
            if isinstance(token, str) and token in _OPERATORS:
                operator, position = token, position + 1
                continue
            if token == "(":
                operand, inner, position = group(position + 1)
                operand_text = f"({inner})"
            else:
                clause = cast(Clause, token)
                operand, operand_text, position = (
                    match_clause(clause, index, default_field),
                    clause.text(),
                    position + 1,
                )
                if clause.quoted and not operand:
                    not_found.append(clause.text())
            if result is None:
                result, text = operand, operand_text
            else:
                result = {"AND": result & operand, "OR": result | operand, "NOT": result - operand}[operator]
                text = f"{text} {operator} {operand_text}"
            operator = "AND"
        return (index.all if result is None else result), text, position

    pmids, translation, _ = group(0)
    return TermMatch(pmids, translation, tuple(not_found))


# ---- answers ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]


class _EutilsError(Exception):
    """An E-utilities request the stand-in answers with an ``<ERROR>`` envelope."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _Unsupported(Exception):
    """A request the stand-in cannot answer faithfully: HTTP 501, and noted in StandIn.errors."""


def _with_headers(answer: _Answer, extra: Mapping[str, str]) -> _Answer:
    """The answer with ``extra`` headers set, replacing same-named ones regardless of case."""
    lowered = {k.lower() for k in extra}
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in lowered}
    headers.update(extra)
    return _Answer(answer.status, answer.body, headers)


def _xml_answer(status: int, text: str) -> _Answer:
    return _Answer(status, text.encode("utf-8"), {"Content-Type": XML_TYPE})


def _efetch_error(message: str, status: int = 400) -> _Answer:
    body = f"{EFETCH_ERROR_HEAD}<eFetchResult>\n\t<ERROR>{escape(message)}</ERROR>\n</eFetchResult>\n"
    return _xml_answer(status, body)


def _esearch_error(message: str, status: int = 200) -> _Answer:
    return _xml_answer(
        status, f"{ESEARCH_HEAD}<eSearchResult>\n\t<ERROR>{escape(message)}</ERROR>\n</eSearchResult>\n"
    )


def _idconv_request_echo(params: Mapping[str, str]) -> str:
    return ";".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def _idconv_json(status: int, payload: Mapping[str, object]) -> _Answer:
    body = json.dumps(payload, indent=1, ensure_ascii=True).encode("ascii") + b"\n"
    return _Answer(status, body, {"Content-Type": IDCONV_JSON_TYPE})


def _idconv_error(params: Mapping[str, str], message: str, status: int) -> _Answer:
    payload = {
        "status": "error",
        "message": quote(message, safe=""),
        "responseDate": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "request": _idconv_request_echo(params),
    }
    return _idconv_json(status, payload)


def _text_answer(status: int, text: str) -> _Answer:
    return _Answer(status, text.encode("utf-8"), {"Content-Type": "text/plain; charset=UTF-8"})


def _crossref_json(
    status: int, payload: Mapping[str, object], content_type: str = CROSSREF_JSON_TYPE
) -> _Answer:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _Answer(status, body, {"Content-Type": content_type})


def _crossref_failure(kind: str, value: str, message: str, status: int = 400) -> _Answer:
    """Crossref's validation-failure envelope, shaped like the recorded 400 (habanero-400-...json)."""
    payload = {
        "status": "failed",
        "message-type": "validation-failure",
        "message": [{"type": kind, "value": value, "message": message}],
    }
    return _crossref_json(status, payload, CROSSREF_ERROR_JSON_TYPE)


def _crossref_exception(message: str, status: int = 500) -> _Answer:
    """Crossref's exception envelope, shaped like the recorded 500 (rcrossref-500-exception)."""
    payload = {
        "status": "error",
        "message-type": "exception",
        "message-version": "1.0.0",
        "message": {
            "name": "class clojure.lang.ExceptionInfo",
            "description": f"clojure.lang.ExceptionInfo: {message}",
            "message": message,
            "stack": [],
        },
    }
    return _crossref_json(status, payload)


# Real /works filters the stand-in does not model (501, not a 400: Crossref would accept them).
_CROSSREF_OTHER_FILTERS = frozenset(
    {"from-pub-date", "until-pub-date", "from-index-date", "until-index-date", "from-update-date",
     "until-update-date", "from-created-date", "until-created-date", "from-deposit-date",
     "until-deposit-date", "type", "issn", "isbn", "prefix", "member", "funder", "has-funder",
     "has-license", "has-abstract", "has-orcid", "orcid", "has-update", "is-update", "update-type",
     "updates", "container-title", "has-references", "license.url", "alternative-id"}
)  # fmt: skip


def _crossref_int(params: Mapping[str, str], name: str, default: int) -> int | _Answer:
    """A non-negative integer parameter, or Crossref's 400 for one that is not (wording approximated)."""
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        return _crossref_failure(
            "integer-not-valid", raw, f"Integer specified as {raw} but must be a positive integer."
        )
    return int(raw)


def _crossref_pool(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The pool Crossref would put the request in: plus (token header), polite (mailto) or public."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get("crossref-plus-api-token", "").strip():
        return "plus"
    if params.get("mailto", "").strip() or "mailto:" in lowered.get("user-agent", "").lower():
        return "polite"
    return "public"


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise _EutilsError(f"Invalid {name} value: {raw}")
    return int(raw)


def _valid_pmids(raw: str) -> list[str]:
    """The well-formed PMIDs in an ``id`` list, deduplicated in request order; the rest silently dropped."""
    seen: dict[str, None] = {}
    for token in re.split(r"[,\s]+", raw):
        if token.isdigit() and int(token) > 0:
            seen.setdefault(str(int(token)), None)
    return list(seen)


def _route_of(path: str) -> str | None:
    parts = [s for s in path.strip("/").split("/") if s]
    if parts[:2] == ["entrez", "eutils"] and len(parts) == 3:
        return {"efetch.fcgi": "efetch", "esearch.fcgi": "esearch", "epost.fcgi": "epost"}.get(
            parts[2], "eutils"
        )
    if parts == ["idconv", "api", "v1", "articles"]:
        return "idconv"
    if parts[:1] == ["crossref"]:
        return "crossref"
    if parts[:1] == ["icite"]:
        return "icite"
    return None


_ID_SHAPES = {
    "pmcid": re.compile(r"^(?:PMC)?\d+(?:\.\d+)?$", re.IGNORECASE),
    "pmid": re.compile(r"^\d+$"),
    "doi": re.compile(r"^10\.\d+/\S+$"),
    "mid": re.compile(r"^[A-Z]+\d+$", re.IGNORECASE),
}


def _idconv_key(idtype: str, value: str) -> str:
    """An id as the converter compares it: PMCIDs without version, PMIDs without zeros, DOIs lower-cased."""
    if idtype == "pmcid":
        return _normalise_pmcid(value)
    if idtype == "pmid":
        return str(int(value))
    return value.lower() if idtype == "doi" else value.upper()


def _idconv_ids(record: StoredRecord, idtype: str) -> tuple[str, ...]:
    """The ids of this type a record can be found by in the converter."""
    if idtype == "pmid":
        return (record.pmid,)
    if idtype == "pmcid":
        return (record.pmcid,) if record.pmcid else ()
    return record.ids_of("doi" if idtype == "doi" else "mid")


def _detect_idtype(value: str) -> str | None:
    if re.match(r"^PMC\d+(?:\.\d+)?$", value, re.IGNORECASE):
        return "pmcid"
    for kind in ("pmid", "doi", "mid"):
        if _ID_SHAPES[kind].match(value):
            return kind
    return None


# ---- the server ---------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 drops SYNs under a parallel client, costing a 1 s retry

    def __init__(self, address: tuple[str, int], app: StandIn) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can stall start-up; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        if self.app.verbose:
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as with NCBI; every answer carries Content-Length
    server_version = "standin"
    timeout = 30.0  # an idle keep-alive connection is closed after this long

    @property
    def app(self) -> StandIn:
        return cast(_Server, self.server).app

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle + delayed ACK cost 40 ms per keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.app._connection_closed(self.connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: object) -> None:
        if self.app.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length and length.strip().isdigit():
            return self.rfile.read(int(length))
        return b""

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        body = self._read_body()
        content_type = (self.headers.get("Content-Type") or "application/x-www-form-urlencoded").lower()
        if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params: dict[str, str] = {}
        for name, value in pairs:
            params[name] = f"{params[name]},{value}" if name in params else value
        answer = self.app._respond(
            method, split.path, params, self.client_address[0], dict(self.headers.items())
        )
        if answer is None:
            self._reset()
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client gave up (timeout) or went away
            self.close_connection = True

    def _reset(self) -> None:
        self.close_connection = True
        try:
            # SO_LINGER with a zero timeout makes close() send RST instead of an orderly FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class StandIn:
    """NCBI E-utilities, the PMC ID Converter and Crossref, answered from loaded records over real HTTP.

    Use as a context manager (or call :meth:`start`/:meth:`stop`); every public method is thread-safe.

    Args:
        record_sources: efetch XML documents (``.xml`` or ``.xml.gz`` files, folders of them, or bytes),
            each with any number of PubmedArticle/PubmedBookArticle elements; later ones win. A file or
            bytes that do not parse raise ValueError; a folder's unparseable files go to :attr:`skipped`.
        host: the address to listen on.
        port: the port; 0 picks a free one.
        enforce_rate: when set, more than this many E-utilities requests from one client within any one
            second are answered 429 with NCBI's JSON body and counted in :attr:`rate_violations`.
            ``"ncbi"`` applies NCBI's own rule: 3 per second, or 10 for requests carrying an api_key
            (counted per key, as NCBI counts them; per client address without one).
        verbose: print each request and handler errors to stderr.
        crossref_sources: Crossref works to serve (see :meth:`add_crossref_works`): files, folders of
            ``.json`` files (those holding no works are skipped), or bytes.
        pmc_sources: PMC articles to serve through efetch db=pmc (see :meth:`add_pmc_articles`).
        crossref_rate_limit: the ``x-rate-limit-limit`` every Crossref answer advertises (per 1s). It is
            advertised only unless ``enforce_crossref_rate``; script a 429 with :func:`crossref_rate_limited`.
        enforce_crossref_rate: answer Crossref requests beyond ``crossref_rate_limit`` in any one second
            (per client) with Crossref's 429, counted in :attr:`crossref_rate_violations`.
    """

    def __init__(
        self,
        record_sources: Sequence[Path | str | bytes] | Path | bytes = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_rate: int | Literal["ncbi"] | None = None,
        verbose: bool = False,
        crossref_sources: Sequence[Path | str | bytes] | Path | bytes = (),
        pmc_sources: Sequence[Path | str | bytes] | Path | bytes = (),
        crossref_rate_limit: int = CROSSREF_RATE_LIMIT,
        enforce_crossref_rate: bool = False,
    ) -> None:
        if enforce_rate is not None and enforce_rate != "ncbi" and enforce_rate < 1:
            raise ValueError("enforce_rate must be >= 1 or 'ncbi'")
        if crossref_rate_limit < 1:
            raise ValueError("crossref_rate_limit must be >= 1")
        self.host, self.port = host, port
        self.enforce_rate = enforce_rate
        self.crossref_rate_limit = crossref_rate_limit
        self.enforce_crossref_rate = enforce_crossref_rate
        self._chaos: _Chaos | None = None
        self._chaos_seen: dict[str, int] = {}
        self._faults_injected: dict[str, int] = {}
        self._crossref_arrivals: dict[str, deque[float]] = {}
        self._crossref_rate_violations = 0
        self.verbose = verbose
        self._lock = threading.RLock()
        self._records: dict[str, StoredRecord] = {}
        self._crossref: dict[str, dict[str, object]] = {}  # lower-case DOI -> the work's JSON object
        self._pmc: dict[str, bytes] = {}  # "PMC123" -> the serialized <article>
        self._icite: dict[str, dict[str, object]] = {}  # PMID -> the iCite record's JSON object
        # iCite answers {"data": [...]} (since July 2025); True adds the older "meta" and "links".
        self.icite_legacy_envelope = False
        self._history: dict[str, dict[int, tuple[str, ...]]] = {}
        self._log: list[LoggedRequest] = []
        self._queued: list[_FaultRule] = []
        self._always: list[_FaultRule] = []
        self._arrivals: dict[str, deque[float]] = {}
        self._rate_violations = 0
        self._errors: list[str] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._released = threading.Event()  # set: every Delay answers at once (release_delays)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.skipped: list[str] = []  # files in a record folder that did not parse, with the reason
        sources = [record_sources] if isinstance(record_sources, (bytes, str, Path)) else record_sources
        for source in sources:
            for data, name, strict in _read_source(source):
                try:
                    self._load(data, name)
                except ValueError as exc:
                    if strict:
                        raise
                    self.skipped.append(str(exc))
        for kind, group in (("crossref", crossref_sources), ("pmc", pmc_sources)):
            suffixes = (".json",) if kind == "crossref" else (".xml", ".nxml")
            for source in [group] if isinstance(group, (bytes, str, Path)) else group:
                for data, name, strict in _read_files(source, suffixes):
                    try:
                        if kind == "crossref":
                            self._load_crossref(data, name)
                        else:
                            self._load_pmc(data, name)
                    except ValueError as exc:
                        if strict:
                            raise
                        self.skipped.append(str(exc))

    # -- life cycle

    def start(self) -> StandIn:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopping.clear()
        self._released.clear()
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()
        return self

    def release_delays(self) -> None:
        """Let every Delay answer now, and every later one at once: a test holds a request with a long
        Delay while it does something else, then releases it instead of guessing how long that takes."""
        self._released.set()

    def stop(self) -> None:
        """Stop serving, cut open connections and wake any Delay; idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        self._released.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def eutils_url(self) -> str:
        return self.base_url + "entrez/eutils/"

    @property
    def idconv_url(self) -> str:
        return self.base_url + IDCONV

    @property
    def crossref_url(self) -> str:
        return self.base_url + CROSSREF

    @property
    def icite_url(self) -> str:
        return self.base_url + ICITE

    def env(self) -> dict[str, str]:
        """HARVEST_EUTILS_URL, HARVEST_IDCONV_URL and HARVEST_CROSSREF_URL pointing here, for a subprocess."""
        return {
            "HARVEST_EUTILS_URL": self.eutils_url,
            "HARVEST_IDCONV_URL": self.idconv_url,
            "HARVEST_CROSSREF_URL": self.crossref_url,
            "HARVEST_ICITE_URL": self.icite_url,
        }

    # -- records

    def _load(self, data: bytes, source: str) -> list[str]:
        records, deleted = parse_records(data, source=source)
        with self._lock:
            for pmid in deleted:
                self._records.pop(pmid, None)
            for record in records:
                self._records[record.pmid] = record
        return [r.pmid for r in records]

    def add_records(self, xml: bytes) -> list[str]:
        """Load more records (a held PMID is replaced; DeleteCitation removes); returns their PMIDs."""
        return self._load(xml, "<add_records>")

    def replace_record(self, pmid: str, xml_fragment: bytes) -> None:
        """Swap a held record for a new version of it, to simulate an upstream change.

        Raises:
            KeyError: the PMID is not held.
            ValueError: the fragment does not hold exactly one article, with that PMID.
        """
        records, _ = parse_records(xml_fragment, source="<replace_record>")
        if len(records) != 1 or records[0].pmid != str(int(pmid)):
            raise ValueError(
                f"replace_record({pmid}): the fragment must hold exactly one article with PMID {pmid}"
            )
        with self._lock:
            if records[0].pmid not in self._records:
                raise KeyError(pmid)
            self._records[records[0].pmid] = records[0]

    def remove_record(self, pmid: str) -> None:
        """Forget a record, as if deleted upstream (efetch then omits it, like an unknown PMID)."""
        with self._lock:
            del self._records[str(int(pmid))]

    @property
    def pmids(self) -> list[str]:
        """The PMIDs held, in numeric order."""
        with self._lock:
            return sorted(self._records, key=int)

    def record_xml(self, pmid: str) -> bytes:
        """The serialized PubmedArticle the stand-in serves for this PMID."""
        with self._lock:
            return self._records[str(int(pmid))].xml

    # -- Crossref works and PMC articles

    def _load_crossref(self, data: bytes, source: str) -> list[str]:
        try:
            decoded = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{source}: not JSON: {exc}") from None
        works = crossref_works_of(decoded, source=source)
        with self._lock:
            for work in works:
                self._crossref[str(work["DOI"]).strip().lower()] = work
        return [str(work["DOI"]).strip().lower() for work in works]

    def add_crossref_works(self, source: Path | str | bytes | Mapping[str, object]) -> list[str]:
        """Load Crossref works (a held DOI is replaced); returns their DOIs, lower-cased.

        ``source`` is a work's JSON, a /works/{doi} envelope or a work-list envelope: as bytes, as a
        decoded object, or as a file; a folder loads its ``.json`` files, skipping those that hold no
        works (noted in :attr:`skipped`).

        Raises:
            ValueError: the bytes, object or file named is not JSON holding Crossref works.
        """
        if isinstance(source, Mapping):
            data = json.dumps(source, ensure_ascii=False).encode("utf-8")
            return self._load_crossref(data, "<add_crossref_works>")
        loaded: list[str] = []
        for data, name, strict in _read_files(source, (".json",)):
            try:
                loaded += self._load_crossref(data, name)
            except ValueError as exc:
                if strict:
                    raise
                self.skipped.append(str(exc))
        return loaded

    def remove_crossref_work(self, doi: str) -> None:
        """Forget a work, as if Crossref no longer had it (its look-up then answers 404)."""
        with self._lock:
            del self._crossref[doi.strip().lower()]

    @property
    def crossref_dois(self) -> list[str]:
        """The DOIs of the Crossref works held, lower-cased and sorted."""
        with self._lock:
            return sorted(self._crossref)

    def crossref_work(self, doi: str) -> dict[str, object]:
        """The JSON object the stand-in serves as the ``message`` of /works/{doi}."""
        with self._lock:
            return self._crossref[doi.strip().lower()]

    def _load_pmc(self, data: bytes, source: str) -> list[str]:
        articles = _pmc_articles(data, source=source)
        with self._lock:
            self._pmc.update(articles)
        return [pmcid for pmcid, _ in articles]

    def add_pmc_articles(self, source: Path | str | bytes) -> list[str]:
        """Load PMC articles (a pmc-articleset or one <article>; a file, or a folder of .xml/.nxml files).

        A held PMCID is replaced. Returns the PMCIDs loaded ("PMC123").

        Raises:
            ValueError: the bytes or file named do not parse, or an article carries no PMCID.
        """
        loaded: list[str] = []
        for data, name, strict in _read_files(source, (".xml", ".nxml")):
            try:
                loaded += self._load_pmc(data, name)
            except ValueError as exc:
                if strict:
                    raise
                self.skipped.append(str(exc))
        return loaded

    def add_icite_records(
        self, source: Path | bytes | Mapping[str, object] | Sequence[Mapping[str, object]]
    ) -> list[str]:
        """Load iCite records (a held PMID is replaced): an /api/pubs answer in either shape, a list of
        records or one record, as bytes, a file or decoded; returns their PMIDs.

        Raises:
            ValueError: not JSON, or a record without a PMID.
        """
        if isinstance(source, Path):
            source = source.read_bytes()
        if isinstance(source, bytes):
            try:
                decoded: object = json.loads(source.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"iCite records: not JSON: {exc}") from None
        else:
            decoded = source
        if isinstance(decoded, Mapping) and "data" in decoded:
            decoded = decoded["data"]
        items = [decoded] if isinstance(decoded, Mapping) else decoded
        if not isinstance(items, list):
            raise ValueError("iCite records: expected an answer, a list of records or one record")
        loaded: list[str] = []
        with self._lock:
            for item in items:
                pmid = str(item.get("pmid") or item.get("_id") or "") if isinstance(item, Mapping) else ""
                if not pmid.isdigit():
                    raise ValueError(f"iCite records: a record without a PMID: {str(item)[:80]}")
                self._icite[str(int(pmid))] = dict(item)
                loaded.append(str(int(pmid)))
        return loaded

    def remove_icite_record(self, pmid: str) -> None:
        """Forget an iCite record, as if iCite did not know the PMID (it is then left out of answers)."""
        with self._lock:
            del self._icite[str(int(pmid))]

    def icite_record(self, pmid: str) -> dict[str, object]:
        """The JSON object the stand-in serves for this PMID."""
        with self._lock:
            return self._icite[str(int(pmid))]

    def _icite_route(self, method: str, path: str, params: Mapping[str, str], drop: int) -> _Answer:
        """iCite's /api/pubs: ``pmids=A,B`` (at most 200) or /api/pubs/{pmid}; unknown PMIDs left out.

        More than 200 PMIDs get HTTP 400 (iCite's limit; the wording is the stand-in's). The answer is
        ``{"data": [...]}`` in request order, with "meta"/"links" when ``icite_legacy_envelope``.
        """
        if method != "GET":
            return _Answer(405, b"", {"Allow": "GET", "Content-Type": "text/plain"})
        parts = [p for p in path.strip("/").split("/") if p]
        if parts[1:3] != ["api", "pubs"] or len(parts) > 4:
            return _text_answer(404, "Not Found")
        raw = parts[3] if len(parts) == 4 else params.get("pmids", "")
        pmids = _valid_pmids(raw)
        if len(pmids) > ICITE_MAX_PMIDS:
            body = json.dumps({"error": f"at most {ICITE_MAX_PMIDS} PMIDs per request"}).encode()
            return _Answer(400, body, {"Content-Type": "application/json"})
        with self._lock:
            records = [self._icite[p] for p in pmids if p in self._icite]
        if drop:
            records = records[: max(0, len(records) - drop)]
        payload: dict[str, object] = {"data": records}
        if self.icite_legacy_envelope:
            joined = ",".join(pmids)
            payload = {
                "meta": {"pmids": joined},
                "links": {"self": f"https://icite.od.nih.gov/api/pubs?pmids={joined.replace(',', '%2C')}"},
                **payload,
            }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return _Answer(200, body, {"Content-Type": "application/json; charset=utf-8"})

    @property
    def pmcids(self) -> list[str]:
        """The PMCIDs of the PMC articles held, in numeric order."""
        with self._lock:
            return sorted(self._pmc, key=lambda pmcid: int(pmcid[3:]))

    def pmc_xml(self, pmcid: str) -> bytes:
        """The serialized <article> the stand-in serves for this PMCID (with or without "PMC")."""
        with self._lock:
            return self._pmc[_normalise_pmcid(pmcid)]

    # -- log

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the request log, in order of arrival."""
        with self._lock:
            return list(self._log)

    def requests_for(self, path_suffix: str) -> list[LoggedRequest]:
        """The logged requests whose path matches (see :func:`path_matches`)."""
        return [r for r in self.requests if path_matches(r.path, path_suffix)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def rate_violations(self) -> int:
        """How many requests enforce_rate answered with 429."""
        with self._lock:
            return self._rate_violations

    @property
    def crossref_rate_violations(self) -> int:
        """How many Crossref requests enforce_crossref_rate answered with 429."""
        with self._lock:
            return self._crossref_rate_violations

    @property
    def faults_injected(self) -> dict[str, int]:
        """Faults :meth:`chaos` injected so far, by mode name (modes never picked are absent)."""
        with self._lock:
            return dict(self._faults_injected)

    @property
    def errors(self) -> list[str]:
        """Requests the stand-in could not answer faithfully (unsupported features, internal errors)."""
        with self._lock:
            return list(self._errors)

    # -- faults

    def inject(self, path_suffix: str, *faults: Fault, match: ParamsPredicate | None = None) -> None:
        """Queue faults, each consumed by one later request whose path (and params, if ``match``) fit."""
        if not faults:
            raise ValueError("inject() needs at least one fault")
        with self._lock:
            self._queued.extend(_FaultRule(path_suffix, f, match) for f in faults)

    def fail_always(self, path_suffix: str, fault: Fault, *, match: ParamsPredicate | None = None) -> None:
        """Answer every fitting request with this fault until :meth:`clear_faults` (after queued faults)."""
        with self._lock:
            self._always.append(_FaultRule(path_suffix, fault, match))

    def chaos(self, rate: float, *, seed: int, modes: Sequence[ChaosMode] | None = None) -> None:
        """Fault a share ``rate`` of the requests, each with a mode picked among those fitting its route.

        The choice is a pure function of ``seed``, the request (method, path, parameters) and how often
        that same request came before, so a run is repeatable whatever its timing or threads. Scripted
        faults (:meth:`inject`, :meth:`fail_always`) come first; :attr:`faults_injected` counts by mode.
        ``modes`` defaults to :func:`chaos_modes`; ``rate`` 0 turns chaos off (as does clear_faults).
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("chaos rate must be in [0, 1]")
        chosen = tuple(modes) if modes is not None else chaos_modes()
        with self._lock:
            self._chaos = _Chaos(rate, seed, chosen) if rate > 0 and chosen else None
            self._chaos_seen.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._queued.clear()
            self._always.clear()
            self._chaos = None

    @property
    def pending_faults(self) -> int:
        """Queued faults not consumed yet."""
        with self._lock:
            return len(self._queued)

    def _take_fault(self, path: str, params: Mapping[str, str], method: str = "GET") -> Fault | None:
        with self._lock:
            for position, rule in enumerate(self._queued):
                if path_matches(path, rule.path_suffix) and (rule.match is None or rule.match(params)):
                    del self._queued[position]
                    return rule.fault
            for rule in self._always:
                if path_matches(path, rule.path_suffix) and (rule.match is None or rule.match(params)):
                    return rule.fault
            return self._chaos_fault(method, path, params)

    def _chaos_fault(self, method: str, path: str, params: Mapping[str, str]) -> Fault | None:
        chaos = self._chaos
        route = _chaos_route(path)
        if chaos is None or route is None:
            return None
        eligible = [mode for mode in chaos.modes if route in mode.routes]
        if not eligible:
            return None
        key = request_key(method, path, params)
        seen = self._chaos_seen.get(key, 0)
        self._chaos_seen[key] = seen + 1
        draw = random.Random(f"{chaos.seed}|{key}|{seen}")  # str seeds hash with SHA-512: stable
        if draw.random() >= chaos.rate:
            return None
        mode = draw.choice(eligible)
        self._faults_injected[mode.name] = self._faults_injected.get(mode.name, 0) + 1
        return mode.fault

    # -- serving (called on handler threads)

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _arrive(
        self, method: str, path: str, params: Mapping[str, str], client: str, headers: Mapping[str, str]
    ) -> tuple[LoggedRequest, _Answer | None, dict[str, str]]:
        """Log the request and count it against the rate; a 429 answer when enforce_rate is exceeded."""
        with self._lock:
            now = time.monotonic()
            entry = LoggedRequest(now, time.time(), method, path, dict(params), None, client, dict(headers))
            self._log.append(entry)
            if _route_of(path) == "crossref":
                crossref_headers = self._crossref_headers(params, headers)
                if not self.enforce_crossref_rate:
                    return entry, None, crossref_headers
                arrivals = self._crossref_arrivals.setdefault(client, deque())
                while arrivals and now - arrivals[0] >= 1.0:
                    arrivals.popleft()
                arrivals.append(now)
                if len(arrivals) <= self.crossref_rate_limit:
                    return entry, None, crossref_headers
                self._crossref_rate_violations += 1
                refused = crossref_rate_limited(limit=self.crossref_rate_limit)
                return entry, _Answer(429, refused.body, dict(refused.headers)), crossref_headers
            if _route_of(path) not in {"efetch", "esearch", "epost", "eutils"}:
                return entry, None, {}
            api_key = {k.lower(): v for k, v in params.items()}.get("api_key", "").strip()
            window = self._arrivals.setdefault(f"api_key={api_key}" if api_key else client, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            window.append(now)
            if self.enforce_rate == "ncbi":
                limit = NCBI_RATE_LIMIT_WITH_KEY if api_key else NCBI_RATE_LIMIT
            else:
                limit = self.enforce_rate or NCBI_RATE_LIMIT
            rate_headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - len(window))),
            }
            if self.enforce_rate is None or len(window) <= limit:
                return entry, None, rate_headers
            self._rate_violations += 1
            # NCBI's body names the key, or the client's address when there is none (PEERS.md A).
            limited = rate_limited(count=len(window), limit=limit, client=api_key or client)
            return entry, _Answer(429, limited.body, dict(limited.headers)), rate_headers

    def _crossref_headers(self, params: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, str]:
        """The rate headers every Crossref answer carries (429s included), as recorded in 2026."""
        return {
            "x-rate-limit-limit": str(self.crossref_rate_limit),
            "x-rate-limit-interval": "1s",
            "x-concurrency-limit": str(CROSSREF_CONCURRENCY_LIMIT),
            "x-api-pool": _crossref_pool(params, headers),
        }

    def _finish(self, entry: LoggedRequest, status: int | None, fault: Fault | None, limited: bool) -> None:
        with self._lock:
            for position in range(len(self._log) - 1, -1, -1):
                if self._log[position] is entry:
                    self._log[position] = replace(entry, status=status, fault=fault, rate_limited=limited)
                    return

    def _respond(
        self, method: str, path: str, params: dict[str, str], client: str, headers: Mapping[str, str]
    ) -> _Answer | None:
        """The answer to one request, or None to reset the connection."""
        entry, limited, rate_headers = self._arrive(method, path, params, client, headers)
        if limited is not None:
            self._finish(entry, limited.status, None, True)
            return limited
        fault: Fault | None = None
        try:
            fault = self._take_fault(path, params, method)
            answer = self._answer_with_fault(method, path, params, fault)
        except Exception as exc:  # noqa: BLE001 - any bug here must reach the test as a 500, not a hang
            with self._lock:
                self._errors.append(f"{method} {path}: internal error: {exc!r}")
            answer = _text_answer(500, f"stand-in internal error: {exc!r}")
        if answer is not None and rate_headers:
            answer = _with_headers(answer, {**rate_headers, **answer.headers})
        self._finish(entry, None if answer is None else answer.status, fault, False)
        return answer

    def _answer_with_fault(
        self, method: str, path: str, params: Mapping[str, str], fault: Fault | None
    ) -> _Answer | None:
        route = _route_of(path)
        match fault:
            case Reset():
                return None
            case Status(code=code, body=body, headers=extra):
                plain = _Answer(code, body, {"Content-Type": "text/plain; charset=UTF-8"})
                return _with_headers(plain, extra)
            case HtmlErrorPage(status=status):
                return _Answer(status, HTML_ERROR_PAGE.encode(), {"Content-Type": "text/html; charset=UTF-8"})
            case ErrorInBody(message=message, status=status):
                if route == "esearch":
                    return _esearch_error(message, status)
                if route == "idconv":
                    return _idconv_error(params, message, status)
                if route == "crossref":
                    if 400 <= status < 500:
                        return _crossref_failure("stand-in-fault", "", message, status)
                    return _crossref_exception(message, status)
                return _efetch_error(message, status)
            case Delay(seconds=seconds):
                self._released.wait(seconds)
                return self._answer(method, path, params, drop=0)
            case Truncated(fraction=fraction):
                real = self._answer(method, path, params, drop=0)
                return _Answer(real.status, real.body[: int(len(real.body) * fraction)], real.headers)
            case Short(drop=drop):
                return self._answer(method, path, params, drop=drop)
        return self._answer(method, path, params, drop=0)

    def _answer(self, method: str, path: str, params: Mapping[str, str], *, drop: int) -> _Answer:
        route = _route_of(path)
        lowered = {k.lower(): v for k, v in params.items()}
        try:
            if route in {"efetch", "esearch", "epost"}:
                if method not in {"GET", "POST"}:
                    return _text_answer(405, "Method Not Allowed")
                db = lowered.get("db", "").strip().lower() or "pubmed"
                if route == "efetch" and db == "pmc":
                    return self._efetch_pmc(lowered, drop)
                if db != "pubmed":
                    raise _Unsupported(f"{route} db={db}")
                if route == "efetch":
                    return self._efetch(lowered, drop)
                if route == "esearch":
                    return self._esearch(lowered, drop)
                return self._epost(lowered)
            if route == "idconv":
                if method != "GET":
                    return _Answer(405, b"", {"Allow": "GET, OPTIONS", "Content-Type": "text/plain"})
                return self._idconv(params, lowered, drop)
            if route == "eutils":
                raise _Unsupported(f"E-utility {path.rstrip('/').rsplit('/', 1)[-1]}")
            if route == "crossref":
                if method != "GET":
                    return _Answer(405, b"", {"Allow": "GET", "Content-Type": "text/plain"})
                return self._crossref_route(path, params, drop)
            if route == "icite":
                return self._icite_route(method, path, params, drop)
            return _text_answer(404, "Not Found")
        except _EutilsError as exc:
            return (
                _esearch_error(exc.message, exc.status)
                if route == "esearch"
                else _efetch_error(exc.message, exc.status)
            )
        except _Unsupported as exc:
            with self._lock:
                self._errors.append(f"{method} {path}: not supported by the stand-in: {exc}")
            return _text_answer(501, f"stand-in: {exc} is not supported (yet); see tests/standin.py")

    # -- routes

    def _efetch(self, params: Mapping[str, str], drop: int) -> _Answer:
        """efetch db=pubmed, XML: the known requested records in request order, unknown ones omitted.

        ``id`` wins over the history; without ``id``, ``WebEnv`` + ``query_key`` select a stored result,
        paged by ``retstart``/``retmax`` (default 20, at most 10,000). A bad history reference gives
        400 "Unable to obtain query #N" (NCBI's wording approximated). Only the first 9,999 records of a
        stored result can be paged out, as esearch lists no more (NBK25499); a ``retstart`` at or past the
        end of that gives 400 "Cannot retrieve history data: OUT OF RANGE ..." (wording as recorded in
        massimoaria/pubmedR#7; that NCBI applies the 9,999 limit here too is an inference).
        """
        retmode = params.get("retmode", "xml").strip().lower()
        if retmode not in {"", "xml"}:
            raise _Unsupported(f"efetch retmode={retmode}")
        if params.get("id", "").strip() or not params.get("webenv"):
            pmids = _valid_pmids(params.get("id", ""))
            if not pmids:
                raise _EutilsError(EMPTY_ID_LIST)
        else:
            query_key = _int_param(params, "query_key", 1)
            with self._lock:
                stored = self._history.get(params["webenv"], {}).get(query_key)
            if stored is None:
                raise _EutilsError(f"Unable to obtain query #{query_key}")
            retstart = _int_param(params, "retstart", 0)
            retmax = min(_int_param(params, "retmax", DEFAULT_RETMAX), EFETCH_MAX_RETMAX)
            available = stored[:ESEARCH_MAX_RECORDS]
            if available and retstart >= len(available):
                raise _EutilsError(
                    f"Cannot retrieve history data: OUT OF RANGE. Parameter retstart={retstart} + {retmax} "
                    f"is greater than number of records available in history. History includes "
                    f"{len(available)} IDs."
                )
            pmids = list(available[retstart : retstart + retmax])
        with self._lock:
            records = [self._records[p].xml for p in pmids if p in self._records]
        if drop:
            records = records[: max(0, len(records) - drop)]
        body = PUBMED_SET_HEAD + b"<PubmedArticleSet>\n" + b"".join(r + b"\n" for r in records)
        return _Answer(200, body + b"</PubmedArticleSet>\n", {"Content-Type": XML_TYPE})

    def _efetch_pmc(self, params: Mapping[str, str], drop: int) -> _Answer:
        """efetch db=pmc, XML: a <pmc-articleset> of the held articles requested, in request order.

        Ids may carry the "PMC" prefix or not; unknown ones are omitted (an empty set when none is
        known; NCBI's answer for unknown PMC ids is not on record). No id at all is the pubmed route's
        "ID list is empty" error. The history (WebEnv) is not modelled for pmc.
        """
        retmode = params.get("retmode", "xml").strip().lower()
        if retmode not in {"", "xml"}:
            raise _Unsupported(f"efetch db=pmc retmode={retmode}")
        requested: dict[str, None] = {}
        for token in re.split(r"[,\s]+", params.get("id", "")):
            found = _PMC_REQUEST_ID.match(token)
            if found:
                requested.setdefault("PMC" + found.group(1), None)
        if not requested:
            if params.get("webenv"):
                raise _Unsupported("efetch db=pmc from the history (WebEnv)")
            raise _EutilsError(EMPTY_ID_LIST)
        with self._lock:
            articles = [self._pmc[p] for p in requested if p in self._pmc]
        if drop:
            articles = articles[: max(0, len(articles) - drop)]
        body = PMC_SET_HEAD + b"<pmc-articleset>" + b"\n".join(articles) + b"</pmc-articleset>\n"
        return _Answer(200, body, {"Content-Type": XML_TYPE})

    def _crossref_route(self, path: str, params: Mapping[str, str], drop: int) -> _Answer:
        """Crossref's /works/{doi} (the DOI raw or URL-encoded in the path) and /works?filter=doi:..."""
        parts = [s for s in urlsplit(path).path.strip("/").split("/") if s]
        if parts[1:2] != ["works"]:
            raise _Unsupported(f"Crossref route /{'/'.join(parts[1:]) or ''}")
        if len(parts) == 2:
            return self._crossref_list(params, drop)
        return self._crossref_work_answer(unquote("/".join(parts[2:])), params)

    def _crossref_work_answer(self, doi: str, params: Mapping[str, str]) -> _Answer:
        """/works/{doi}: the work's envelope, or 404 "Resource not found." (text/plain) as recorded.

        Field queries (``query.*``) are refused with the recorded 400 validation failure; ``mailto`` is
        accepted; ``/agency`` and ``/transform`` are not modelled. DOIs match case-insensitively.
        """
        if any(name.lower().startswith("query") for name in params):
            return _crossref_failure(
                "parameter-not-allowed", "query.*", "This route does not support field query parameters"
            )
        with self._lock:
            work = self._crossref.get(doi.strip().lower())
        if work is None:
            if doi.rstrip("/").endswith("/agency") or "/transform" in doi:
                raise _Unsupported(f"Crossref route /works/{doi}")
            return _Answer(404, CROSSREF_NOT_FOUND.encode(), {"Content-Type": "text/plain"})
        payload = {"status": "ok", "message-type": "work", "message-version": "1.0.0", "message": work}
        return _crossref_json(200, payload)

    def _crossref_list(self, params: Mapping[str, str], drop: int) -> _Answer:
        """/works?filter=doi:A,doi:B&rows=N: a work list of the held works among those DOIs.

        DOIs match case-insensitively; works come in the order first requested (Crossref's own order is
        not specified), each once. Without a filter, every held work. ``rows`` (default 20, at most 1000)
        and ``offset`` page the list; ``total-results`` counts all matches. A filter name Crossref does not
        know, or ``rows`` out of range, gets Crossref's 400 validation failure (wording approximated);
        other real filters, queries, cursors, sorting and ``select`` are not modelled (501).
        """
        for name in params:
            if name not in {"filter", "rows", "offset", "mailto"}:
                raise _Unsupported(f"Crossref /works parameter {name}")
        rows = _crossref_int(params, "rows", CROSSREF_DEFAULT_ROWS)
        offset = _crossref_int(params, "offset", 0)
        if isinstance(rows, _Answer):
            return rows
        if isinstance(offset, _Answer):
            return offset
        if rows > CROSSREF_MAX_ROWS:
            return _crossref_failure(
                "integer-not-valid",
                str(rows),
                f"Integer specified as {rows} but must be a positive integer less than or equal to "
                f"{CROSSREF_MAX_ROWS}.",
            )
        with self._lock:
            held = dict(self._crossref)
        raw_filter = params.get("filter", "")
        if raw_filter.strip():
            wanted: dict[str, None] = {}
            for clause in raw_filter.split(","):
                name, colon, value = clause.partition(":")
                name = name.strip()
                if name == "doi" and colon:
                    wanted.setdefault(value.strip().lower(), None)
                elif name in _CROSSREF_OTHER_FILTERS and colon:
                    raise _Unsupported(f"Crossref filter {name}")
                else:
                    return _crossref_failure(
                        "filter-not-available",
                        name,
                        f"Filter {name} specified but there is no such filter for this route. "
                        "Valid filters for this route are: doi, ...",
                    )
            matches = [held[doi] for doi in wanted if doi in held]
        else:
            matches = list(held.values())
        page = matches[offset : offset + rows]
        if drop:
            page = page[: max(0, len(page) - drop)]
        payload = {
            "status": "ok",
            "message-type": "work-list",
            "message-version": "1.0.0",
            "message": {
                "facets": {},
                "total-results": len(matches),
                "items": page,
                "items-per-page": rows,
                "query": {"start-index": offset, "search-terms": None},
            },
        }
        return _crossref_json(200, payload)

    def _date_window(self, params: Mapping[str, str]) -> tuple[str, date, date] | None:
        """datetype with mindate+maxdate (both needed, as NCBI says) or reldate (days back from today)."""
        kind = _DATE_FIELDS.get(params.get("datetype", "").strip().lower() or "pdat")
        if kind is None:
            raise _EutilsError(f"Invalid datetype: {params['datetype']}", status=200)
        try:
            if params.get("reldate", "").strip():
                today = date.today()
                return kind, today - timedelta(days=int(params["reldate"])), today
            if params.get("mindate", "").strip() and params.get("maxdate", "").strip():
                low = _parse_date_bound(params["mindate"], end=False)
                return kind, low, _parse_date_bound(params["maxdate"], end=True)
        except ValueError:
            raise _EutilsError("Invalid date format in mindate/maxdate/reldate", status=200) from None
        return None

    def _esearch(self, params: Mapping[str, str], drop: int) -> _Answer:
        """esearch db=pubmed, XML, shaped like the recorded eSearchResult documents.

        Terms: see :func:`match_term`/:func:`match_clause`; ``field`` is the default tag. Date limits
        (``datetype`` mdat/edat/crdt/pdat, ``mindate``+``maxdate`` or ``reldate``) filter on the record's
        dates, keeping records that lack that date. PMIDs come in descending order (``sort`` is ignored).
        ``retstart`` > 9998 -> ``<ERROR>`` in a 200; ``retstart + retmax`` is clamped to 9,999 with a
        "Restrictions achieved" warning; ``usehistory=y`` stores the whole result under WebEnv/QueryKey;
        ``rettype=count`` answers the Count alone.
        """
        retmode = params.get("retmode", "xml").strip().lower()
        if retmode not in {"", "xml"}:
            raise _Unsupported(f"esearch retmode={retmode}")
        term = params.get("term", "").strip()
        if not term:
            raise _EutilsError(EMPTY_TERM, status=200)
        retstart = _int_param(params, "retstart", 0)
        retmax = _int_param(params, "retmax", DEFAULT_RETMAX)
        if retstart > ESEARCH_MAX_RETSTART:
            raise _EutilsError(RETSTART_TOO_LARGE, status=200)
        window = self._date_window(params)
        with self._lock:
            snapshot = dict(self._records)
        found = match_term(term, snapshot, default_field=params.get("field") or None)
        pmids = set(found.pmids)
        translation = found.translation
        if window is not None:
            kind, low, high = window
            pmids &= _in_dates(TermIndex(snapshot), kind, low, high)
            span = f"{low:%Y/%m/%d}[{kind}] : {high:%Y/%m/%d}[{kind}]"
            translation = f"({translation}) AND ({span})"
        ordered = sorted(pmids, key=int, reverse=True)
        if params.get("rettype", "").strip().lower() == "count":
            return _xml_answer(
                200, f"{ESEARCH_HEAD}<eSearchResult><Count>{len(ordered)}</Count></eSearchResult>\n"
            )
        messages: list[str] = []
        if retstart + retmax > ESEARCH_MAX_RECORDS:
            retmax = ESEARCH_MAX_RECORDS - retstart
            messages.append(f"Restrictions achieved. start and count adjusted to {retstart}, {retmax}")
        page = ordered[retstart : retstart + retmax]
        listed = page[: max(0, len(page) - drop)] if drop else page
        history = ""
        if params.get("usehistory", "").strip().lower() == "y":
            webenv, query_key = self._store_history(params.get("webenv", ""), ordered)
            history = f"<QueryKey>{query_key}</QueryKey><WebEnv>{webenv}</WebEnv>"
        ids = (
            "<IdList>\n" + "".join(f"<Id>{p}</Id>\n" for p in listed) + "</IdList>" if listed else "<IdList/>"
        )
        if not ordered:
            messages.append("No items found.")
        warnings = "".join(
            f"<QuotedPhraseNotFound>{escape(p)}</QuotedPhraseNotFound>" for p in found.phrases_not_found
        )
        warnings += "".join(f"<OutputMessage>{escape(m)}</OutputMessage>" for m in messages)
        body = (
            f"{ESEARCH_HEAD}<eSearchResult><Count>{len(ordered)}</Count><RetMax>{len(page)}</RetMax>"
            f"<RetStart>{retstart}</RetStart>{history}{ids}<TranslationSet/>"
            f"<QueryTranslation>{escape(translation)}</QueryTranslation>"
            + (f"<WarningList>{warnings}</WarningList>" if warnings else "")
            + "</eSearchResult>\n"
        )
        return _xml_answer(200, body)

    def _store_history(self, webenv: str, pmids: Sequence[str]) -> tuple[str, int]:
        with self._lock:
            if webenv not in self._history:
                webenv = f"MCID_{len(self._history) + 1:024x}"
                self._history[webenv] = {}
            query_key = len(self._history[webenv]) + 1
            self._history[webenv][query_key] = tuple(pmids)
            return webenv, query_key

    def _epost(self, params: Mapping[str, str]) -> _Answer:
        """epost db=pubmed: store the id list on the history server for efetch (WebEnv reused if given)."""
        pmids = _valid_pmids(params.get("id", ""))
        if not pmids:
            error = "<ERROR>Empty ID list; Nothing to store</ERROR>"
            return _xml_answer(200, f"{EPOST_HEAD}<ePostResult>\n\t{error}</ePostResult>\n")
        webenv, query_key = self._store_history(params.get("webenv", ""), pmids)
        stored = f"<QueryKey>{query_key}</QueryKey>\n\t<WebEnv>{webenv}</WebEnv>"
        body = f"{EPOST_HEAD}<ePostResult>\n\t{stored}\n</ePostResult>\n"
        return _xml_answer(200, body)

    def _idconv(self, params: Mapping[str, str], lowered: Mapping[str, str], drop: int) -> _Answer:
        """The PMC ID Converter, JSON only: only records with a PMCID are "in PMC".

        Per-record errors: a held article without PMCID -> "Identifier not found in PMC"; an id the stand-in
        does not hold -> "invalid article id". Whole-request errors (status "error", URL-encoded message):
        an id not of the given idtype -> 404 "ID type 'doi' mismatch for '28371833'" (as recorded); an id of
        no known type -> 400 "ID type of 'x' is unknown" (as recorded); no ids, a bad idtype or more than 200
        ids -> 400 (wording approximated). Without idtype, the first id's type must fit all.
        """
        if lowered.get("format", "").strip().lower() != "json":
            raise _Unsupported(f"idconv format={lowered.get('format', '(none: NCBI answers XML)')}")
        ids = [i.strip() for i in lowered.get("ids", "").split(",") if i.strip()]
        if not ids:
            return _idconv_error(params, "No IDs were given", 400)
        if len(ids) > IDCONV_MAX_IDS:
            return _idconv_error(params, f"Too many IDs: {len(ids)}; the maximum is {IDCONV_MAX_IDS}", 400)
        idtype = lowered.get("idtype", "").strip().lower() or None
        if idtype is not None and idtype not in _ID_SHAPES:
            return _idconv_error(params, f"Invalid idtype '{idtype}'", 400)
        if idtype is None:
            idtype = _detect_idtype(ids[0])
            if idtype is None:
                return _idconv_error(params, f"ID type of '{ids[0]}' is unknown", 400)
        for value in ids:
            if not _ID_SHAPES[idtype].match(value):
                return _idconv_error(params, f"ID type '{idtype}' mismatch for '{value}'", 404)
        with self._lock:
            records = list(self._records.values())
        held: dict[str, StoredRecord] = {}
        for record in records:
            for held_id in _idconv_ids(record, idtype):
                held.setdefault(_idconv_key(idtype, held_id), record)
        records_out = [self._idconv_record(value, idtype, held, lowered) for value in ids]
        if drop:
            records_out = records_out[: max(0, len(records_out) - drop)]
        payload = {
            "status": "ok",
            "responseDate": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "request": _idconv_request_echo(params),
            "records": records_out,
        }
        return _idconv_json(200, payload)

    @staticmethod
    def _idconv_record(
        value: str, idtype: str, held: Mapping[str, StoredRecord], params: Mapping[str, str]
    ) -> dict[str, object]:
        record = held.get(_idconv_key(idtype, value))
        if record is None:
            return {idtype: value, "requested-id": value, "status": "error", "errmsg": IDCONV_INVALID_ID}
        if record.pmcid is None:
            return {idtype: value, "requested-id": value, "status": "error", "errmsg": IDCONV_NOT_IN_PMC}
        found: dict[str, object] = {"pmcid": record.pmcid, "pmid": record.pmid}
        if record.doi:
            found["doi"] = record.doi
        if record.mid:
            found["mid"] = record.mid
        found["requested-id"] = value
        if params.get("versions", "").strip().lower() != "no":
            found["versions"] = [{"pmcid": f"{record.pmcid}.1", "current": "true"}]
        return found


# ---- command line -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the records in the given folders until Ctrl-C; the base URL is the first line on stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.standin", description=main.__doc__)
    parser.add_argument(
        "--records", action="append", default=[], type=Path, metavar="DIR",
        help="a folder of efetch XML files (.xml, .xml.gz; not recursive) or one such file; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--crossref", action="append", default=[], type=Path, metavar="DIR",
        help="a folder of Crossref work JSON files (works, /works/{doi} or work-list answers) or one file",
    )  # fmt: skip
    parser.add_argument(
        "--pmc", action="append", default=[], type=Path, metavar="DIR",
        help="a folder of PMC XML files (pmc-articleset or <article>; .xml, .nxml) or one such file",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--enforce-rate", type=int, default=None, metavar="N", help="answer 429 above N requests/s"
    )
    parser.add_argument("--verbose", action="store_true", help="print each request to stderr")
    args = parser.parse_args(argv)
    try:
        standin = StandIn(
            args.records,
            host=args.host,
            port=args.port,
            enforce_rate=args.enforce_rate,
            verbose=args.verbose,
            crossref_sources=args.crossref,
            pmc_sources=args.pmc,
        )
        standin.start()
    except (OSError, ValueError) as exc:
        print(f"standin: {exc}", file=sys.stderr)
        return 2
    try:
        # Ctrl-C (and SIGTERM) only sets a flag: a KeyboardInterrupt raised wherever the main thread
        # happened to be (inside a print's buffer lock) could leave the stop itself waiting.
        signals: list[int] = []
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda signum, _frame: signals.append(signum))
        print(standin.base_url, flush=True)
        exports = " ".join(f"{name}={value}" for name, value in standin.env().items())
        for reason in standin.skipped:
            print(f"standin: skipped {reason}", file=sys.stderr)
        counts = (
            f"{len(standin.pmids)} records, {len(standin.crossref_dois)} Crossref works, "
            f"{len(standin.pmcids)} PMC articles"
        )
        print(f"standin: {counts}; {exports}", file=sys.stderr, flush=True)
        while not signals:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

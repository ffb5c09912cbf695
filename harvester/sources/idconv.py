"""PMC ID Converter client and a pure parser of its JSON.

The converter only knows articles that are in PMC: anything else comes back as a record with an
``errmsg`` ("invalid article id", "Identifier not found in PMC"), inside an answer whose top-level
status is still "ok". A request it cannot understand at all (an id of the wrong type) is answered
with a top-level ``"status": "error"`` and a URL-encoded message, sometimes with HTTP 404.

https://pmc.ncbi.nlm.nih.gov/tools/id-converter-api/ : up to 200 ids a request, all of one type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args
from urllib.parse import unquote

import requests

from harvester.core.bounds import load_json
from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    InvalidIdentifierError,
    ParseError,
    RejectedRequestError,
)
from harvester.core.ids import doi_or_none, normalize_doi, normalize_pmcid, normalize_pmid, pmcid_or_none
from harvester.core.settings import IDCONV_MAX_IDS, Settings
from harvester.sources.http import RateLimiter, Response, RetryPolicy, ServiceClient, describe_body, name_some

SOURCE = "idconv"
MAX_URL = 4000  # characters; 200 long DOIs would pass the 8 KB request line many servers allow
NOT_RETURNED = "not returned"

IdType = Literal["pmid", "pmcid", "doi"]
_ID_TYPES: tuple[str, ...] = get_args(IdType)


@dataclass(frozen=True, slots=True)
class IdRecord:
    """What the converter said about one requested id. ``error`` set means no mapping (ids None)."""

    requested: str  # the id as the caller gave it (as the service echoed it, from parse_idconv)
    pmid: str | None
    pmcid: str | None
    doi: str | None  # lower-case
    error: str | None  # "invalid article id", "Identifier not found in PMC", "not returned", ...


# ---------------------------------------------------------------------------------------------- parsing


def _as_text(value: Any) -> str | None:
    """An id from the JSON: a string, or an integer (the v1 API may send numbers); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _pmid_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_pmid(value)
    except InvalidIdentifierError:
        return None


def _request_echo(echo: Any) -> tuple[str | None, list[str]]:
    """The idtype and ids the service says it was asked for ("a=b;idtype=pmid;ids=1%2C2" or a dict)."""
    fields: dict[str, str] = {}
    if isinstance(echo, str):
        for part in echo.split(";"):
            key, _, value = part.partition("=")
            fields[key.strip()] = unquote(value)
    elif isinstance(echo, Mapping):
        for key, value in echo.items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            if isinstance(value, str | int):
                fields[str(key)] = str(value)
    ids = [i.strip() for i in fields.get("ids", "").split(",") if i.strip()]
    idtype = fields.get("idtype") or None
    return idtype, ids


def _requested(record: Mapping[str, Any], idtype: str | None, echoed: Sequence[str]) -> str | None:
    explicit = _as_text(record.get("requested-id"))
    if explicit is not None:
        return explicit
    if idtype is not None and _as_text(record.get(idtype)) is not None:
        return _as_text(record.get(idtype))
    values = [_as_text(record.get(key)) for key in ("pmid", "pmcid", "doi", "mid")]
    present = [v for v in values if v is not None]
    lowered = {e.lower(): e for e in echoed}
    for value in present:
        if value.lower() in lowered:
            return lowered[value.lower()]
    return present[0] if present else None


def _parse_record(record: Any, idtype: str | None, echoed: Sequence[str]) -> IdRecord:
    if not isinstance(record, Mapping):
        raise ParseError(f"idconv: a record is not an object: {record!r:.80}")
    requested = _requested(record, idtype, echoed)
    if requested is None:
        raise ParseError(f"idconv: a record names no identifier: {dict(record)!r:.120}")
    errmsg = record.get("errmsg")
    if record.get("status") == "error" or errmsg is not None:
        error = unquote(errmsg) if isinstance(errmsg, str) and errmsg else "error"
        return IdRecord(requested=requested, pmid=None, pmcid=None, doi=None, error=error)
    return IdRecord(
        requested=requested,
        pmid=_pmid_or_none(_as_text(record.get("pmid"))),
        pmcid=pmcid_or_none(_as_text(record.get("pmcid"))),
        doi=doi_or_none(_as_text(record.get("doi"))),
        error=None,
    )


def parse_idconv(body: bytes) -> list[IdRecord]:
    """Parse one ID Converter JSON answer into a record per id it reported on. Pure.

    Raises:
        ParseError: the body is not the converter's JSON (not JSON, no status, no records list).
        RejectedRequestError: the answer's top-level status is "error"; the message is URL-decoded.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")  # the converter's error answers declare ISO-8859-1
    data = load_json(text, source="idconv")
    if not isinstance(data, dict) or "status" not in data:
        raise ParseError("idconv: the answer is JSON but not the ID Converter's (no status)")
    status = data["status"]
    if status == "error":
        message = data.get("message")
        detail = unquote(message) if isinstance(message, str) and message else "unspecified error"
        raise RejectedRequestError(f"idconv: the ID Converter refused the request: {detail}", source=SOURCE)
    if status != "ok":
        raise ParseError(f"idconv: unknown status {status!r:.40}")
    records = data.get("records")
    if not isinstance(records, list):
        raise ParseError("idconv: status ok but no records list")
    idtype, echoed = _request_echo(data.get("request"))
    return [_parse_record(record, idtype, echoed) for record in records]


def check_idconv_json(response: Response) -> None:
    """Raise BadResponseError (retried) for an HTML page or JSON that does not parse in an HTTP 200."""
    head = response.body[:2048].lstrip().lower()
    if head.startswith(b"<") or b"<html" in head:
        raise BadResponseError(
            f"idconv: an HTML/XML page instead of JSON from {response.url}: {describe_body(response.body)}",
            source=SOURCE,
            url=response.url,
        )
    try:
        parse_idconv(response.body)
    except ParseError as exc:
        raise BadResponseError(
            f"{exc.message} from {response.url}", source=SOURCE, url=response.url
        ) from None
    except RejectedRequestError as exc:
        raise RejectedRequestError(
            f"{exc.message} ({response.url})", source=SOURCE, url=response.url
        ) from None


# ----------------------------------------------------------------------------------------------- client

_NORMALIZE: dict[str, Callable[[str], str]] = {
    "pmid": normalize_pmid,
    "pmcid": normalize_pmcid,
    "doi": normalize_doi,
}


def _key(idtype: str, value: str | None) -> str | None:
    """The normal form used to match a record to a requested id, or None."""
    if value is None:
        return None
    try:
        return _NORMALIZE[idtype](value)
    except InvalidIdentifierError:
        return None


class IdConverterClient:
    """Maps PMIDs, PMCIDs and DOIs to each other for articles that are in PMC."""

    def __init__(self, service: ServiceClient, *, batch_size: int = IDCONV_MAX_IDS) -> None:
        if not 1 <= batch_size <= IDCONV_MAX_IDS:
            raise ValueError(f"batch_size must be between 1 and {IDCONV_MAX_IDS}, not {batch_size}")
        self.service = service
        self.batch_size = batch_size

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: requests.Session,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
    ) -> IdConverterClient:
        """Build the client (tool and email on every request; the API key is not sent here).

        Pass the E-utilities client's ``limiter``: NCBI counts both services against one limit.
        """
        params = {"tool": settings.tool}
        if settings.email:
            params["email"] = settings.email
        service = ServiceClient(
            session,
            name=SOURCE,
            base_url=settings.idconv_url,
            limiter=limiter if limiter is not None else RateLimiter(settings.ncbi_requests_per_second),
            policy=policy if policy is not None else RetryPolicy(settings.http),
            timeout=settings.http.timeout,
            default_params=params,
            secret_params=("api_key",),
            headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
            secrets=settings.secrets,
            max_response_bytes=settings.http.max_response_bytes,
        )
        return cls(service, batch_size=settings.idconv_batch_size)

    def _batches(self, keys: Sequence[str], idtype: str) -> Iterator[list[str]]:
        """Up to batch_size ids a batch, fewer when the URL would grow past MAX_URL."""
        batch: list[str] = []
        for key in keys:
            candidate = [*batch, key]
            params = self._params(candidate, idtype)
            if batch and (len(candidate) > self.batch_size or self.service.url_length("", params) > MAX_URL):
                yield batch
                batch = [key]
            else:
                batch = candidate
        if batch:
            yield batch

    @staticmethod
    def _params(keys: Sequence[str], idtype: str) -> dict[str, str]:
        return {"ids": ",".join(keys), "idtype": idtype, "format": "json", "versions": "no"}

    def iter_convert(self, ids: Sequence[str], idtype: IdType) -> Iterator[list[IdRecord] | FetchFailedError]:
        """Convert batch by batch: a list of records per batch, or a FetchFailedError naming its ids.

        Ids that are malformed for ``idtype`` are not sent (one of them would make the converter
        refuse the whole batch) and come back first, with ``error`` saying why.

        Raises:
            RejectedRequestError: the converter refused a request (HTTP 4xx or status "error").
        """
        if idtype not in _ID_TYPES:
            raise ValueError(f"idtype must be one of {', '.join(_ID_TYPES)}, not {idtype!r}")
        wanted: dict[str, list[str]] = {}  # normal form -> the caller's spellings of it
        rejected: list[IdRecord] = []
        for original in ids:
            try:
                key = _NORMALIZE[idtype](original)
            except InvalidIdentifierError as exc:
                rejected.append(IdRecord(original, None, None, None, error=exc.message))
                continue
            if "," in key:
                rejected.append(
                    IdRecord(
                        original, None, None, None, error="not sent: the ID Converter splits ids on commas"
                    )
                )
                continue
            wanted.setdefault(key, []).append(original)
        if rejected:
            yield rejected
        for batch in self._batches(list(wanted), idtype):
            originals = [o for key in batch for o in wanted[key]]
            try:
                response = self.service.request(
                    "GET", "", params=self._params(batch, idtype), check=check_idconv_json
                )
            except FetchFailedError as exc:
                yield FetchFailedError(
                    f"idconv: {len(batch)} ids not converted ({name_some(batch)}): {exc.message}",
                    source=SOURCE,
                    ids=originals,
                    url=exc.url,
                )
                continue
            by_key: dict[str, IdRecord] = {}
            for record in parse_idconv(response.body):
                found = _key(idtype, record.requested) or _key(idtype, getattr(record, idtype))
                if found is not None and found in wanted:
                    by_key.setdefault(found, record)
            yield [
                replace(by_key[key], requested=original)
                if key in by_key
                else IdRecord(original, None, None, None, error=NOT_RETURNED)
                for key in batch
                for original in wanted[key]
            ]

    def convert(self, ids: Sequence[str], idtype: IdType) -> list[IdRecord]:
        """One IdRecord per requested id, in the order given (ids the service omitted: "not returned").

        Raises:
            FetchFailedError: a batch could not be converted after every attempt; its ``ids`` are
                that batch's. (Use :meth:`iter_convert` to keep the other batches' records.)
            RejectedRequestError: the converter refused a request.
        """
        results: dict[str, IdRecord] = {}
        for item in self.iter_convert(ids, idtype):
            if isinstance(item, FetchFailedError):
                raise item
            for record in item:
                results.setdefault(record.requested, record)
        return [results[original] for original in ids]

"""A pure parser of NIH iCite's JSON (``/api/pubs``) to frozen :class:`~enrich.records.IciteRecord`.

iCite changed its answer in July 2025: before, ``{"meta": {...}, "links": {...}, "data": [...]}`` with
authors as one comma-separated string and "Yes"/"No" flags; since, ``{"data": [...]}`` with authors as
objects (``firstName``, ``lastName``, ``fullName``) and true/false flags (PEERS.md "Citation sources";
pmidcite PRs #77/#78). ``legacy=false`` answers use camelCase names. The parser takes all of these, and
every key is optional but the PMID. The client that fetches them is :mod:`enrich.icite`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrich.records import IciteRecord
from harvester.core.errors import ParseError

__all__ = ["IciteAnswer", "canonical_json", "parse_icite_record", "parse_icite_response"]

_MAX_DIGITS = 18  # longer digit strings are not counts iCite could mean (and int() of them is costly)

# Names of each field: the legacy snake_case name first, then the camelCase one of ``legacy=false``.
_NAMES: dict[str, tuple[str, ...]] = {
    "pmid": ("pmid", "_id"),
    "doi": ("doi",),
    "title": ("title",),
    "year": ("year",),
    "journal": ("journal",),
    "authors": ("authors",),
    "is_research_article": ("is_research_article", "isResearchArticle"),
    "citation_count": ("citation_count", "citationCount"),
    "relative_citation_ratio": ("relative_citation_ratio", "relativeCitationRatio"),
    "nih_percentile": ("nih_percentile", "nihPercentile"),
    "field_citation_rate": ("field_citation_rate", "fieldCitationRate"),
    "expected_citations_per_year": ("expected_citations_per_year", "expectedCitationsPerYear"),
    "citations_per_year": ("citations_per_year", "citationsPerYear"),
    "apt": ("apt",),
    "is_clinical": ("is_clinical", "isClinical"),
    "provisional": ("provisional",),
    "human": ("human",),
    "animal": ("animal",),
    "molecular_cellular": ("molecular_cellular", "molecularCellular"),
    "x_coord": ("x_coord", "xCoord"),
    "y_coord": ("y_coord", "yCoord"),
    "cited_by_clinical": ("cited_by_clin", "citedByClin"),
    "cited_by": ("cited_by", "citedBy"),
    "references": ("references",),
    "last_modified": ("last_modified", "lastModified"),
}
_TRUE = frozenset({"yes", "true", "y", "1"})
_FALSE = frozenset({"no", "false", "n", "0"})
_NONE = frozenset({"", "na", "n/a", "nan", "null", "none"})
_LEGACY_MODIFIED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}),?\s+(\d{1,2}):(\d{2}):(\d{2})$")
_INTEGRAL = re.compile(r"^\d{1,18}\.0*$")
_PMID_SPLIT = re.compile(r"[\s,;]+")


# ------------------------------------------------------------------------------------------- values


def _bad(pmid: str | None, name: str, value: Any, expected: str) -> ParseError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    where = f"PMID {pmid}" if pmid else "a record"
    return ParseError(f"icite: {where}: {name} {shown} is not {expected}")


def _get(record: Mapping[str, Any], name: str) -> Any:
    for key in _NAMES[name]:
        if key in record:
            return record[key]
    return None


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def _int(value: Any, pmid: str | None, name: str) -> int | None:
    if _is_none(value):
        return None
    if isinstance(value, bool):
        raise _bad(pmid, name, value, "a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= _MAX_DIGITS:
        number = int(value.strip())
    elif isinstance(value, str) and _INTEGRAL.match(value.strip()):
        number = int(value.strip().split(".")[0])  # "2013.0", as CSV writers of floats put it
    else:
        raise _bad(pmid, name, value, "a whole number")
    if number < 0 or number.bit_length() > 62:
        raise _bad(pmid, name, value, "a count")
    return number


def _float(value: Any, pmid: str | None, name: str) -> float | None:
    if _is_none(value):
        return None
    if isinstance(value, bool):
        raise _bad(pmid, name, value, "a number")
    if isinstance(value, int):
        if value.bit_length() > 62:
            raise _bad(pmid, name, value, "a number")
        return float(value)
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(pmid, name, value, "a number") from None
    else:
        raise _bad(pmid, name, value, "a number")
    if not math.isfinite(number):
        raise _bad(pmid, name, value, "a finite number")
    return number


def _flag(value: Any, pmid: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        if word in _NONE:
            return None
    raise _bad(pmid, name, value, 'a flag ("Yes"/"No" or true/false)')


def _text(value: Any, pmid: str | None, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return " ".join(value.split()) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "title":
        return str(value)
    raise _bad(pmid, name, value, "text")


def _pmid_of(value: Any) -> str | None:
    """A PMID from an int or a digit string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < 10**12 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 12 and int(text) > 0:
            return str(int(text))
    return None


def _pmids(value: Any, pmid: str | None, name: str) -> tuple[str, ...]:
    """A list of PMIDs (ints or strings), or one string of them separated by spaces or commas."""
    if _is_none(value):
        return ()
    items: list[Any]
    if isinstance(value, str):
        items = [t for t in _PMID_SPLIT.split(value) if t]
    elif isinstance(value, list):
        items = value
    else:
        raise _bad(pmid, name, value, "a list of PMIDs")
    found: dict[str, None] = {}
    for item in items:
        one = _pmid_of(item)
        if one is None:
            raise _bad(pmid, name, item, "a PMID")
        found.setdefault(one)
    return tuple(found)


def _citing_by_year(value: Any, pmid: str | None) -> tuple[str, ...]:
    """``citedByPmidsByYear``: a list of one-key objects {"<pmid>": year}."""
    if not isinstance(value, list):
        return ()
    found: dict[str, None] = {}
    for entry in value:
        if not isinstance(entry, Mapping):
            raise _bad(pmid, "citedByPmidsByYear", entry, "a {pmid: year} object")
        for key in entry:
            one = _pmid_of(key)
            if one is None:
                raise _bad(pmid, "citedByPmidsByYear", key, "a PMID")
            found.setdefault(one)
    return tuple(found)


def _authors(value: Any, pmid: str | None) -> tuple[str, ...]:
    """Display names "First Last": from the legacy comma-separated string or the 2025 objects."""
    if _is_none(value):
        return ()
    if isinstance(value, str):
        return tuple(name for name in (" ".join(part.split()) for part in value.split(",")) if name)
    if not isinstance(value, list):
        raise _bad(pmid, "authors", value, "a list or a string of names")
    names: list[str] = []
    for entry in value:
        if isinstance(entry, str):
            name = " ".join(entry.split())
        elif isinstance(entry, Mapping):
            first = _text(entry.get("firstName"), pmid, "authors.firstName")
            last = _text(entry.get("lastName"), pmid, "authors.lastName")
            full = _text(entry.get("fullName"), pmid, "authors.fullName")
            name = " ".join(p for p in (first, last) if p) or full or ""
        else:
            raise _bad(pmid, "authors", entry, "a name")
        if name:
            names.append(name)
    return tuple(names)


def _modified(value: Any, pmid: str | None) -> str | None:
    """``last_modified`` as ISO "YYYY-MM-DDTHH:MM:SS": from "MM/DD/YYYY, HH:MM:SS" or an ISO text."""
    if _is_none(value):
        return None
    if not isinstance(value, str):
        raise _bad(pmid, "last_modified", value, "a date-time")
    text = value.strip()
    match = _LEGACY_MODIFIED.match(text)
    try:
        if match:
            month, day, year, hour, minute, second = (int(g) for g in match.groups())
            return datetime(year, month, day, hour, minute, second).isoformat()
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(pmid, "last_modified", value, "a date-time") from None
    return parsed.replace(tzinfo=None, microsecond=0).isoformat()


def canonical_json(item: Any) -> bytes:
    """The record's JSON with sorted keys and no spaces: equal answers give equal bytes."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


# ------------------------------------------------------------------------------------------- parser


def parse_icite_record(record: Mapping[str, Any], *, raw_json: bytes | None = None) -> IciteRecord:
    """One iCite record (either shape, legacy or camelCase names) as an :class:`IciteRecord`. Pure.

    Raises:
        ParseError: no PMID, or a value of the wrong kind (a count that is not a whole number, a flag
            that is neither yes nor no, a PMID list holding something else, a date that is no date).
    """
    pmid = _pmid_of(_get(record, "pmid"))
    if pmid is None:
        raise _bad(None, "pmid", _get(record, "pmid"), "a PMID")
    cited_by = _pmids(_get(record, "cited_by"), pmid, "cited_by")
    if not cited_by and "citedByPmidsByYear" in record:
        cited_by = _citing_by_year(record["citedByPmidsByYear"], pmid)
    doi = _text(_get(record, "doi"), pmid, "doi")
    year = _int(_get(record, "year"), pmid, "year")
    return IciteRecord(
        pmid=pmid,
        doi=doi.lower() if doi else None,
        title=_text(_get(record, "title"), pmid, "title"),
        year=year if year else None,
        journal=_text(_get(record, "journal"), pmid, "journal"),
        authors=_authors(_get(record, "authors"), pmid),
        is_research_article=_flag(_get(record, "is_research_article"), pmid, "is_research_article"),
        citation_count=_int(_get(record, "citation_count"), pmid, "citation_count"),
        relative_citation_ratio=_float(
            _get(record, "relative_citation_ratio"), pmid, "relative_citation_ratio"
        ),
        nih_percentile=_float(_get(record, "nih_percentile"), pmid, "nih_percentile"),
        field_citation_rate=_float(_get(record, "field_citation_rate"), pmid, "field_citation_rate"),
        expected_citations_per_year=_float(
            _get(record, "expected_citations_per_year"), pmid, "expected_citations_per_year"
        ),
        citations_per_year=_float(_get(record, "citations_per_year"), pmid, "citations_per_year"),
        apt=_float(_get(record, "apt"), pmid, "apt"),
        is_clinical=_flag(_get(record, "is_clinical"), pmid, "is_clinical"),
        provisional=_flag(_get(record, "provisional"), pmid, "provisional"),
        human=_float(_get(record, "human"), pmid, "human"),
        animal=_float(_get(record, "animal"), pmid, "animal"),
        molecular_cellular=_float(_get(record, "molecular_cellular"), pmid, "molecular_cellular"),
        x_coord=_float(_get(record, "x_coord"), pmid, "x_coord"),
        y_coord=_float(_get(record, "y_coord"), pmid, "y_coord"),
        cited_by_clinical=_pmids(_get(record, "cited_by_clinical"), pmid, "cited_by_clin"),
        cited_by=cited_by,
        references=_pmids(_get(record, "references"), pmid, "references"),
        last_modified=_modified(_get(record, "last_modified"), pmid),
        raw_json=raw_json if raw_json is not None else canonical_json(record),
    )


@dataclass(frozen=True, slots=True)
class IciteAnswer:
    """What one answer held: its records, and the records that did not parse (with the reason)."""

    records: tuple[IciteRecord, ...]
    rejected: tuple[tuple[str | None, str], ...] = ()  # (PMID where known, message)


def _load_json(body: bytes) -> Any:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return json.loads(body)
    except RecursionError:
        raise ParseError("icite: the answer is JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"icite: the answer is not JSON ({type(exc).__name__}: {exc})") from None


def parse_icite_response(body: bytes) -> IciteAnswer:
    """Parse an ``/api/pubs`` answer: ``{"data": [...]}`` with or without ``meta``/``links``, a bare list
    of records, or one record (``/api/pubs/{pmid}``). Pure.

    A record that does not parse is put in ``rejected`` and costs the others nothing.

    Raises:
        ParseError: not JSON, or JSON that holds no iCite records (an object with no ``data``).
    """
    data = _load_json(body)
    items: Any
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and "data" in data:
        items = data["data"]
    elif isinstance(data, dict) and any(k in data for k in _NAMES["pmid"]):
        items = [data]
    elif isinstance(data, dict):
        detail = data.get("error") or data.get("message") or data.get("errors")
        said = f": {str(detail)[:200]}" if detail else ""
        raise ParseError(f"icite: the answer is JSON but holds no data{said}")
    else:
        raise ParseError(f"icite: the answer is JSON but not an object or a list ({type(data).__name__})")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ParseError(f"icite: data is a {type(items).__name__}, not a list")
    records: list[IciteRecord] = []
    rejected: list[tuple[str | None, str]] = []
    for item in items:
        if not isinstance(item, Mapping):
            rejected.append((None, f"icite: a record is a {type(item).__name__}, not an object"))
            continue
        try:
            records.append(parse_icite_record(item, raw_json=canonical_json(item)))
        except ParseError as exc:
            rejected.append((_pmid_of(_get(item, "pmid")), exc.message))
    return IciteAnswer(tuple(records), tuple(rejected))

"""A pure parser of Crossref's JSON (works and work lists) to frozen :class:`~enrich.records.CrossrefWork`.

The envelopes it reads: ``/works/{doi}`` answers ``{"status": "ok", "message-type": "work", "message":
{...}}``, ``/works?filter=doi:A,doi:B`` a ``work-list`` envelope; a request Crossref refuses comes back
with ``"status": "failed"`` (HTTP 400, ``validation-failure``), a server fault with ``"status": "error"``
(HTTP 500, ``exception``). The client that fetches them is :mod:`enrich.crossref`.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from enrich.records import ContributorName, CrossrefWork, Funder, License, UpdateRelation
from harvester.core.bounds import bounded_int, check_depth, load_json
from harvester.core.errors import (
    InvalidIdentifierError,
    ParseError,
    RejectedRequestError,
    ServiceUnavailableError,
)
from harvester.core.ids import doi_or_none, normalize_orcid, normalize_pmid
from harvester.core.records import PartialDate

log = logging.getLogger(__name__)

__all__ = [
    "SOURCE",
    "canonical_json",
    "flatten_markup",
    "normalize_update_kind",
    "parse_crossref_response",
    "parse_crossref_work",
    "parse_date_parts",
]

SOURCE = "crossref"
MAX_COUNT = 2**31 - 1  # citation and reference counts: the store keeps 32-bit integers


# A tag starts right after "<" (no space), so "p < a and b > c" in text is left alone.
_TAG = re.compile(r"<(/?)([A-Za-z][\w.-]*:)?([A-Za-z][\w.-]*)(?:\s[^<>]*)?/?>")
_BLOCK_TAGS = frozenset(
    {"p", "sec", "title", "list", "list-item", "def-list", "table", "table-wrap", "caption", "label",
     "disp-quote", "abstract", "trans-abstract", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4"}
)  # fmt: skip
_LEADING_ABSTRACT_TITLE = re.compile(
    r"^\s*<(?:jats:)?title(?:\s[^>]*)?>\s*abstract\s*</(?:jats:)?title\s*>", re.IGNORECASE
)


def flatten_markup(text: str, *, blocks: bool = False) -> str | None:
    """Plain text from JATS/HTML markup: tags dropped, entities decoded, whitespace collapsed.

    With ``blocks``, block elements (paragraphs, sections, titles) become line breaks (and a leading
    "Abstract" title is dropped); otherwise all is one line. Inline elements (italic, sup, MathML)
    vanish without a space, so "CO<sub>2</sub>" is "CO2". None for text that is empty once flattened.
    """
    if blocks:
        text = _LEADING_ABSTRACT_TITLE.sub("", text)
    if "<" in text and _TAG.search(text):
        if blocks:  # in marked-up text a line break is only whitespace: the block tags make the lines
            text = text.replace("\r", " ").replace("\n", " ")
        separator = "\n" if blocks else " "
        text = _TAG.sub(lambda m: separator if m.group(3).lower() in _BLOCK_TAGS else "", text)
    text = html.unescape(text)
    if not blocks:
        return " ".join(text.split()) or None
    lines = (" ".join(line.split()) for line in text.split("\n"))
    flat = "\n".join(line for line in lines if line)
    return flat or None


def _text(value: Any) -> str | None:
    """A string or number from the JSON as stripped text; None for anything else or blank."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _first(value: Any) -> Any:
    """The first element of a list (Crossref's titles), or the value itself (CSL-JSON's strings)."""
    if isinstance(value, list):
        return next((v for v in value if _text(v) is not None), None)
    return value


def _first_text(value: Any) -> str | None:
    first = _text(_first(value))
    return flatten_markup(first) if first is not None else None


def _texts(value: Any) -> tuple[str, ...]:
    """A list of strings (or one string) as a tuple of stripped, distinct, non-empty texts."""
    items = value if isinstance(value, list) else [value]
    found = (_text(item) for item in items)
    return tuple(dict.fromkeys(t for t in found if t is not None))


def _count(value: Any) -> int | None:
    """A count (citations, references): 0 to MAX_COUNT; None for anything else (a 5,000-digit one too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, str):
        return bounded_int(value, 0, MAX_COUNT)
    return None


def _date_part(value: Any) -> int | None:
    """A year, month or day: 0 to 9999 (parse_date_parts checks each part's own range); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 9999 else None
    if isinstance(value, str):
        return bounded_int(value, 0, 9999)
    return None


def parse_date_parts(value: Any) -> PartialDate | None:
    """A Crossref date (``{"date-parts": [[2022, 3, 8]]}``) as a PartialDate; None without a year.

    ``[[null]]`` and ``[[]]`` mean no date; ``[[2020]]`` and ``[[2020, 3]]`` are year and month precision.
    A month or day out of range is dropped (with everything after it), and the parts are kept in ``raw``.
    """
    if not isinstance(value, Mapping):
        return None
    parts_list = value.get("date-parts")
    if not isinstance(parts_list, list) or not parts_list or not isinstance(parts_list[0], list):
        return None
    parts = parts_list[0]
    numbers = [_date_part(p) for p in parts[:3]]
    year = numbers[0] if numbers else None
    if year is None or not 1 <= year <= 9999:
        return None
    month = numbers[1] if len(numbers) > 1 else None
    day = numbers[2] if len(numbers) > 2 else None
    dropped = False
    if month is not None and not 1 <= month <= 12:
        month, day, dropped = None, None, True
    if day is not None and (month is None or not 1 <= day <= _days_in(year, month)):
        day, dropped = None, True
    raw = "-".join(str(p) for p in parts[:3]) if dropped else None
    return PartialDate(year=year, month=month, day=day, raw=raw)


def _days_in(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in {4, 6, 9, 11} else 31


def _doi_text(value: Any) -> str | None:
    """A DOI from inside a record, lower-case; malformed ones are kept lower-cased rather than lost."""
    text = _text(value)
    if text is None:
        return None
    return doi_or_none(text) or text.lower()


def _authors(value: Any) -> tuple[ContributorName, ...]:
    if not isinstance(value, list):
        return ()
    authors: list[ContributorName] = []
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        affiliations = entry.get("affiliation")
        names = (
            (_text(a.get("name")) if isinstance(a, Mapping) else _text(a))
            for a in (affiliations if isinstance(affiliations, list) else ())
        )
        orcid_text = _text(entry.get("ORCID"))
        authors.append(
            ContributorName(
                position=len(authors) + 1,
                family=_text(entry.get("family")),
                given=_text(entry.get("given")),
                suffix=_text(entry.get("suffix")),
                name=_text(entry.get("name")),
                orcid=normalize_orcid(orcid_text) if orcid_text else None,
                affiliations=tuple(dict.fromkeys(n for n in names if n is not None)),
                sequence=_text(entry.get("sequence")),
            )
        )
    return tuple(authors)


def _licenses(value: Any) -> tuple[License, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        License(
            url=_text(entry.get("URL")),
            license_type=_text(entry.get("content-version")),
            start=parse_date_parts(entry.get("start")),
        )
        for entry in value
        if isinstance(entry, Mapping)
    )


def _funder_doi(entry: Mapping[str, Any]) -> str | None:
    doi = _doi_text(entry.get("DOI"))
    if doi is not None:
        return doi
    ids = entry.get("id")
    for item in ids if isinstance(ids, list) else ():
        if isinstance(item, Mapping) and str(item.get("id-type", "")).lower() == "doi":
            return _doi_text(item.get("id"))
    return None


def _awards(entry: Mapping[str, Any]) -> list[str]:
    awards = list(_texts(entry.get("award") or []))
    info = entry.get("award-info")
    for item in info if isinstance(info, list) else ():
        if isinstance(item, Mapping):
            awards.extend(_texts(item.get("award-number") or []))
    return awards


def _funders(value: Any) -> tuple[Funder, ...]:
    """Funders in order; entries for the same funder (same DOI, else same name) are merged, as Crossref
    often repeats a funder once per award. Award ids are de-duplicated keeping their order. An entry with
    awards but neither name nor DOI (10.3389/fgene.2017.00147 has ``{"award": ["LM2015047"]}``) is kept
    as a funder of unknown name, each such entry on its own; one with nothing at all is dropped."""
    if not isinstance(value, list):
        return ()
    merged: dict[tuple[str, str], tuple[str | None, str | None, list[str]]] = {}
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            continue
        name = _text(entry.get("name"))
        doi = _funder_doi(entry)
        if name is None and doi is None:
            if not _awards(entry):
                continue
            key = ("unnamed", str(index))
        else:
            key = ("doi", doi) if doi is not None else ("name", (name or "").casefold())
        if key in merged:
            known_name, known_doi, awards = merged[key]
            merged[key] = (known_name or name, known_doi, awards + _awards(entry))
        else:
            merged[key] = (name, doi, _awards(entry))
    return tuple(
        Funder(name=name, doi=doi, awards=tuple(dict.fromkeys(awards)))
        for name, doi, awards in merged.values()
    )


def normalize_update_kind(value: str) -> str:
    """Crossref's update type in one spelling: lower-case, hyphens and spaces as underscores.

    Crossref's own vocabulary uses underscores ("new_version", "expression_of_concern",
    "partial_retraction"); some deposits and older clients write "new-version", which is the same kind.
    """
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _updates(value: Any, direction: str) -> list[UpdateRelation]:
    if not isinstance(value, list):
        return []
    relations: list[UpdateRelation] = []
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        kind = _text(entry.get("type"))
        relations.append(
            UpdateRelation(
                kind=normalize_update_kind(kind) if kind else "unknown",
                doi=_doi_text(entry.get("DOI")),
                direction=direction,
                source=_text(entry.get("source")),
                date=parse_date_parts(entry.get("updated")),
                label=_text(entry.get("label")),
            )
        )
    return relations


def _relations(value: Any) -> tuple[tuple[str, str], ...]:
    """``{"has-preprint": [{"id": ..., "id-type": "doi", ...}]}`` flattened to (type, id) pairs."""
    if not isinstance(value, Mapping):
        return ()
    pairs: dict[tuple[str, str], None] = {}
    for relation_type, entries in value.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, Mapping):
                continue
            identifier = _text(entry.get("id"))
            if identifier is None:
                continue
            if str(entry.get("id-type", "")).lower() == "doi":
                identifier = _doi_text(identifier) or identifier
            pairs[(str(relation_type), identifier)] = None
    return tuple(pairs)


def _trial_numbers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    numbers = (
        _text(entry.get("clinical-trial-number")) if isinstance(entry, Mapping) else _text(entry)
        for entry in value
    )
    return tuple(dict.fromkeys(n for n in numbers if n is not None))


def _issns(work: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None, str | None]:
    issns = list(_texts(work.get("ISSN") or []))
    printed = electronic = None
    typed = work.get("issn-type")
    for entry in typed if isinstance(typed, list) else ():
        if not isinstance(entry, Mapping):
            continue
        value = _text(entry.get("value"))
        kind = str(entry.get("type", "")).lower()
        if value is None:
            continue
        if value not in issns:
            issns.append(value)
        if kind == "print" and printed is None:
            printed = value
        elif kind == "electronic" and electronic is None:
            electronic = value
    return tuple(issns), printed, electronic


def _pmid(work: Mapping[str, Any]) -> str | None:
    for key in ("PMID", "pmid"):
        text = _text(work.get(key))
        if text is not None:
            try:
                return normalize_pmid(text)
            except InvalidIdentifierError:
                return None
    return None


def canonical_json(item: Any) -> bytes:
    """The item's JSON, keys sorted and without spaces: the same item always gives the same bytes."""
    text = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\\ud800" escape: keep it escaped instead
        return json.dumps(item, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def parse_crossref_work(work: Mapping[str, Any], *, raw_json: bytes | None = None) -> CrossrefWork:
    """Parse one Crossref work (or Crossref's CSL-JSON for it) into a CrossrefWork. Pure.

    ``raw_json`` is stored as given; when None, the work's :func:`canonical_json` is stored.

    Raises:
        ParseError: ``work`` is not an object or has no DOI.
    """
    if not isinstance(work, Mapping):
        raise ParseError(f"crossref: a work is not a JSON object: {work!r:.80}")
    check_depth(work, source="crossref")
    doi = _doi_text(work.get("DOI"))
    if doi is None:
        raise ParseError(f"crossref: a work without a DOI: {dict(work)!r:.120}")
    issns, issn_print, issn_electronic = _issns(work)
    abstract = _text(work.get("abstract"))
    references = work.get("references-count")
    if references is None:
        references = work.get("reference-count")
    updates = _updates(work.get("update-to"), "update-to") + _updates(work.get("updated-by"), "updated-by")
    return CrossrefWork(
        doi=doi,
        work_type=_text(work.get("type")),
        title=_first_text(work.get("title")),
        subtitle=_first_text(work.get("subtitle")),
        container_title=_first_text(work.get("container-title")),
        short_container_title=_first_text(
            work.get("short-container-title") or work.get("container-title-short")
        ),
        publisher=_text(work.get("publisher")),
        issns=issns,
        issn_print=issn_print,
        issn_electronic=issn_electronic,
        isbns=_texts(work.get("ISBN") or []),
        volume=_text(work.get("volume")),
        issue=_text(work.get("issue")),
        pages=_text(work.get("page")),
        article_number=_text(work.get("article-number")),
        issued=parse_date_parts(work.get("issued")),
        published_print=parse_date_parts(work.get("published-print")),
        published_online=parse_date_parts(work.get("published-online")),
        language=_text(work.get("language")),
        abstract=flatten_markup(abstract, blocks=True) if abstract else None,
        authors=_authors(work.get("author")),
        licenses=_licenses(work.get("license")),
        funders=_funders(work.get("funder")),
        subjects=_texts(work.get("subject") or []),
        is_referenced_by_count=_count(work.get("is-referenced-by-count")),
        references_count=_count(references),
        updates=tuple(updates),
        relations=_relations(work.get("relation")),
        clinical_trial_numbers=_trial_numbers(work.get("clinical-trial-number")),
        pmid=_pmid(work),
        raw_json=raw_json if raw_json is not None else canonical_json(work),
    )


def _failure_detail(message: Any) -> str:
    """The readable part of a failed/error envelope's ``message``."""
    if isinstance(message, list):
        parts = []
        for entry in message:
            if isinstance(entry, Mapping):
                words = [_text(entry.get(k)) for k in ("type", "value", "message")]
                parts.append(" ".join(w for w in words[:2] if w) + (f": {words[2]}" if words[2] else ""))
            elif _text(entry):
                parts.append(str(_text(entry)))
        return "; ".join(p for p in parts if p) or "unspecified"
    if isinstance(message, Mapping):
        return _text(message.get("message")) or _text(message.get("description")) or "unspecified"
    return _text(message) or "unspecified"


def _load_json(body: bytes) -> Any:
    # Depth is checked per work (parse_crossref_work), so one over-deep work does not cost its batch.
    return load_json(body, source="crossref", max_depth=sys.getrecursionlimit())


def _parse_items(items: list[Any], rejected: dict[str, str] | None) -> Iterator[CrossrefWork]:
    """The works of a work list; one that does not parse is left out (with a warning), not the list,
    and its DOI (when it has a usable one) goes into ``rejected`` with the reason."""
    for item in items:
        try:
            yield parse_crossref_work(item, raw_json=canonical_json(item))
        except ParseError as exc:
            log.warning("%s; the work is left out of its list", exc.message)
            doi = _doi_text(item.get("DOI")) if isinstance(item, Mapping) else None
            if doi is not None and rejected is not None:
                rejected[doi] = exc.message


def parse_crossref_response(body: bytes, *, rejected: dict[str, str] | None = None) -> list[CrossrefWork]:
    """Parse a Crossref answer into its works, in the answer's order. Pure.

    A work of a work list that does not parse is left out, and its DOI (lower-case) is added to
    ``rejected`` (when given) with the reason: one bad work does not cost its list.

    Accepted: a ``/works/{doi}`` envelope (message-type "work"), a work-list envelope (its ``items``),
    or a bare work / CSL-JSON object (an object with a ``DOI`` and no envelope). Each work keeps its own
    :func:`canonical_json` as ``raw_json``.

    Raises:
        ParseError: not JSON, not Crossref's, or an envelope of another message type (funder-list,
            work-agency, member, ...: they are not works).
        RejectedRequestError: the envelope's status is "failed" (Crossref refused the request).
        ServiceUnavailableError: the envelope's status is "error" (Crossref failed).
    """
    data = _load_json(body)
    if not isinstance(data, dict):
        raise ParseError(f"crossref: the answer is JSON but not an object ({type(data).__name__})")
    status = data.get("status")
    message_type = data.get("message-type")
    if status is None and message_type is None:
        if "DOI" in data:
            return [parse_crossref_work(data, raw_json=canonical_json(data))]
        raise ParseError("crossref: the answer is JSON but not Crossref's (no status, no DOI)")
    if status == "failed":
        detail = _failure_detail(data.get("message"))
        raise RejectedRequestError(
            f"crossref: Crossref refused the request ({message_type}): {detail}", source=SOURCE
        )
    if status == "error":
        detail = _failure_detail(data.get("message"))
        raise ServiceUnavailableError(f"crossref: Crossref failed ({message_type}): {detail}", source=SOURCE)
    if status != "ok":
        raise ParseError(f"crossref: unknown status {status!r:.40}")
    message = data.get("message")
    if message_type == "work":
        if not isinstance(message, Mapping):
            raise ParseError("crossref: a work envelope without a message object")
        return [parse_crossref_work(message, raw_json=canonical_json(message))]
    if message_type == "work-list":
        items = message.get("items") if isinstance(message, Mapping) else None
        if not isinstance(items, list):
            raise ParseError("crossref: a work-list envelope without an items list")
        return list(_parse_items(items, rejected))
    raise ParseError(f"crossref: message-type {message_type!r:.40} is not a work or a work list")

"""Parse PMC efetch answers (db=pmc, JATS) into :class:`enrich.records.PmcFront`: front matter only.

One streaming pass: lxml's iterparse hands over each ``article`` once it is complete; its ``front`` is
walked once, dispatching on tag, and the article is then cleared. ``body``, ``back``, ``floats-group``,
``sub-article`` and ``response`` are cleared as soon as they end and never walked: libxml2 still reads
them (most of the time a full-text answer takes), but no Python code touches them.

Choices worth knowing:

- A document whose root is a single ``article`` (an ``.nxml`` file, or a ``raw_xml`` fragment) is accepted
  as a one-article set. An article without a usable PMC id is skipped with a warning.
- ``subjects`` holds every ``subject`` of ``article-categories`` in document order, nested ``subj-group``
  elements included and whatever their ``subj-group-type``: the table-of-contents heading
  (``subj-group-type="heading"``, e.g. "Oncology", "Research Article") usually comes first, followed by
  discipline terms ("Discipline", "Discipline-v2", ...). A subject repeated in two groups is kept once.
- Publication dates: ``pub-type`` (JATS 1.0) or ``date-type`` + ``publication-format`` (JATS 1.2+).
  epub / ``pub``+electronic -> ``epub_date``; ppub / ``pub``+print -> ``ppub_date``; epub-ppub -> both;
  collection -> ``collection_date``; pmc-release (or a ``pub-history`` event of that type) ->
  ``pmc_release_date``. A ``pub-date`` with ``date-type="pub"`` and no format, or with no type at all, is
  taken as ``ppub_date``. Other types (nihms-submitted, corrected, preprint, ...) are ignored. The first
  date of each kind wins.
- ``open_access`` comes from the ``<?properties ...?>`` processing instruction PMC puts in each article:
  True when it lists ``open_access``, False when it lists other properties only (``manuscript``: an author
  manuscript), None when there is no such instruction.
- ``full_text_withheld`` is True when the article carries PMC's comment "The publisher of this article
  does not allow downloading of the full text in XML form."
- Authors are the ``contrib`` elements with ``contrib-type="author"`` (or none) of every ``contrib-group``
  of ``article-meta``, numbered across groups; editors and the members of a collaboration are left out.
  Affiliations come from ``xref ref-type="aff"`` (each id of ``rid``) and from an ``aff`` inside the
  contrib; an author with neither takes the affiliations without an id of its own contrib-group, else
  those of ``article-meta``. Affiliation text drops the label (``label``, or a leading ``sup``) and any
  ``institution-id``, and joins structured parts separated only by whitespace with ", ". A ``string-name``
  without a ``surname`` goes to ``name`` whole; of ``name-alternatives`` the English name is taken.
- Funders from ``award-group``: one per ``funding-source``, each with the group's ``award-id`` values;
  the Open Funder Registry DOI comes from an ``institution-id`` of type FundRef/doi (or a ``named-content``
  of type funder-id). Funders with the same name and DOI are merged, their awards kept in order.
- Licences: the URL is the ``ali:license_ref`` when present, else ``@xlink:href``; the text is every
  ``license-p`` (or ``p``, in NLM 2.3 files) flattened and joined with a space.
- Text is flattened as in :mod:`harvester.sources.pubmed_xml`: inline markup contributes its text, MathML
  its token text (one member of ``alternatives``, MathML first); ``xref``, ``fn``, ``label`` and
  ``institution-id`` contribute nothing; an empty ``ext-link`` or ``uri`` contributes its URL;
  whitespace is collapsed.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import IO, Any, BinaryIO

from lxml import etree

from enrich.records import ContributorName, Funder, License, PmcFront
from harvester.core.errors import ParseError
from harvester.core.ids import doi_or_none, normalize_orcid, pmcid_or_none
from harvester.core.records import MONTHS, PartialDate
from harvester.core.xmlsafe import iterparse_safe
from harvester.core.xmltext import (
    attr as _attr,
    collapse as _collapse,
    doi_or_none as _doi_or_none,
    is_number as _is_number,
    math_text as _math_text,
    month_number as _month_number,
    pmid_or_none as _pmid_or_none,
    valid_day as _valid_day,
)

__all__ = ["parse_pmc_articles"]

log = logging.getLogger(__name__)

PmcSource = bytes | str | os.PathLike[str] | BinaryIO

_SET_TAG = "pmc-articleset"
_ARTICLE_TAG = "article"
_ROOT_TAGS = frozenset({_SET_TAG, _ARTICLE_TAG})
# Parts of an article never read: cleared as soon as they end, so that their subtrees are freed early.
_SKIPPED_TAGS = ("body", "back", "floats-group", "sub-article", "response")
_SKIPPED_PARENTS = frozenset({_ARTICLE_TAG, "sub-article", "response"})

_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_MATHML_PREFIX = "{http://www.w3.org/1998/Math/MathML}"
_MATHML_MATH = _MATHML_PREFIX + "math"

# Elements whose text is a marker or an identifier, never part of the sentence around them.
_NO_TEXT = frozenset({"xref", "fn", "label", "institution-id", "contrib-group", _ALI_LICENSE_REF})
_FUNDER_ID_TYPES = frozenset({"fundref", "doi", "funder-id", "funder-identifier", "open-funder-registry"})
_FUNDREF_PREFIX = "10.13039/"
_LINK_TAGS = frozenset({"ext-link", "uri", "email"})
_ADDRESS_PARTS = frozenset(
    {"institution", "institution-wrap", "addr-line", "city", "state", "postal-code", "country"}
)
_PROPERTIES_PI = "properties"
_WITHHELD_NOTE = "does not allow downloading of the full text"
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_ISO_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_SEASON_WORDS = {
    "spring": "Spring",
    "summer": "Summer",
    "fall": "Fall",
    "autumn": "Autumn",
    "winter": "Winter",
}
_MONTH_ABBREV = {number: name.capitalize() for name, number in MONTHS.items()}


# ---------------------------------------------------------------------------------------------- text


def _collect_text(elem: etree._Element, parts: list[str]) -> None:
    """Append the text of ``elem`` and its descendants, in document order, to ``parts``."""
    if elem.text:
        parts.append(elem.text)
    for child in elem:
        tag = child.tag
        if isinstance(tag, str):  # comments and processing instructions contribute no text
            if tag in _NO_TEXT:
                pass
            elif tag == _MATHML_MATH:
                parts.append(_math_text(child))
            elif tag == "alternatives":  # the same formula as MathML, TeX, an image: read one
                chosen = _preferred_alternative(child)
                if chosen is not None and chosen.tag == _MATHML_MATH:
                    parts.append(_math_text(chosen))
                elif chosen is not None:
                    _collect_text(chosen, parts)
            elif tag == "break":
                parts.append(" ")
            elif tag in _LINK_TAGS and not child.text and not len(child):
                parts.append(child.get(_XLINK_HREF) or "")  # "<ext-link xlink:href=URL/>" shows its URL
            elif tag == "named-content" and (child.get("content-type") or "").lower() in _FUNDER_ID_TYPES:
                pass
            else:
                _collect_text(child, parts)
        if child.tail:
            parts.append(child.tail)


def _preferred_alternative(elem: etree._Element) -> etree._Element | None:
    """The MathML member of an ``alternatives`` element, else its first element."""
    first = None
    for child in elem:
        if isinstance(child.tag, str):
            if child.tag == _MATHML_MATH:
                return child
            if first is None:
                first = child
    return first


def _text(elem: etree._Element) -> str | None:
    """The element's text with inline markup flattened and whitespace collapsed; None if empty."""
    if len(elem):
        parts: list[str] = []
        _collect_text(elem, parts)
        return _collapse("".join(parts))
    raw = elem.text
    return _collapse(raw) if raw else None


def _aff_text(aff: etree._Element) -> str | None:
    """An affiliation without its label, structured parts joined with ", " where nothing separates them."""
    parts: list[str] = []
    if aff.text:
        parts.append(aff.text)
    held: str | None = None  # the blank tail of an address part, held back until we see what follows
    for child in aff:
        tag = child.tag
        is_part = isinstance(tag, str) and tag in _ADDRESS_PARTS
        if held is not None:
            parts.append(", " if is_part else held)
            held = None
        if isinstance(tag, str):
            if tag == "label" or (tag == "sup" and not "".join(parts).strip()):
                pass  # "<label>1</label>" or a leading "<sup>1</sup>": the marker an xref points at
            elif tag not in _NO_TEXT:
                _collect_text(child, parts)
        tail = child.tail
        if is_part and (not tail or tail.isspace()):
            held = tail or ""
        elif tail:
            parts.append(tail)
    return _collapse("".join(parts))


# ---------------------------------------------------------------------------------------------- ids


def _funder_doi(value: str | None) -> str | None:
    """An Open Funder Registry DOI from "10.13039/...", a doi.org URL, or the bare registry number."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        value = _FUNDREF_PREFIX + value
    return doi_or_none(value)


# ---------------------------------------------------------------------------------------------- dates


DateKey = tuple[str | None, str | None, str | None, str | None, str | None]


@lru_cache(maxsize=4096)
def _date_of(key: DateKey) -> PartialDate:
    """A PartialDate from (year, month, day, season, iso-8601-date); raw is a join such as "2022 Mar 8"."""
    year_text, month_text, day_text, season_text, iso = key
    if not year_text and iso:
        match = _ISO_DATE.match(iso.strip())
        if match:
            year_text, month_text, day_text = match.groups()
    year = month = day = None
    raw: list[str] = []
    if year_text and year_text.strip():
        year_text = year_text.strip()
        raw.append(year_text)
        if len(year_text) == 4 and _is_number(year_text) and year_text[0] != "0":
            year = int(year_text)
    if month_text and month_text.strip():
        month_text = month_text.strip()
        month = _month_number(month_text) if year is not None else None
        raw.append(_MONTH_ABBREV[month] if month is not None else month_text)
    if day_text and day_text.strip():
        day_text = day_text.strip()
        day = _valid_day(year, month, day_text) if year is not None and month is not None else None
        raw.append(str(day) if day is not None else day_text)
    season = _collapse(season_text) if season_text else None
    if season:
        season = _SEASON_WORDS.get(season.lower(), season)
        raw.append(season)
    return PartialDate(year=year, month=month, day=day, season=season, raw=" ".join(raw) or None)


def _date(elem: etree._Element) -> PartialDate | None:
    """A ``pub-date`` or ``date`` element as a PartialDate; None when it says nothing."""
    year = month = day = season = None
    for child in elem:
        tag = child.tag
        if tag == "year":
            year = child.text
        elif tag == "month":
            month = child.text
        elif tag == "day":
            day = child.text
        elif tag == "season":
            season = _text(child)
    date = _date_of((year, month, day, season, elem.get("iso-8601-date")))
    return None if date.raw is None else date


def _date_slots(elem: etree._Element) -> tuple[str, ...]:
    """Which PmcFront dates a ``pub-date`` fills, from its pub-type or date-type + publication-format."""
    pub_type = elem.get("pub-type")
    if pub_type is None:
        date_type = elem.get("date-type")
        if date_type is None or date_type == "pub":
            if (elem.get("publication-format") or "").lower() == "electronic":
                return ("epub",)
            return ("ppub",)
        pub_type = date_type
    if pub_type == "epub-ppub":
        return ("epub", "ppub")
    if pub_type in ("epub", "ppub", "collection", "pmc-release"):
        return (pub_type,)
    return ()


# ---------------------------------------------------------------------------------------------- builder


class _Contrib:
    """An author while ``article-meta`` is read; affiliations are resolved once every ``aff`` is known."""

    __slots__ = ("family", "given", "group_affs", "name", "orcid", "own_affs", "rids", "suffix")

    def __init__(self) -> None:
        self.family: str | None = None
        self.given: str | None = None
        self.suffix: str | None = None
        self.name: str | None = None
        self.orcid: str | None = None
        self.rids: list[str] = []
        self.own_affs: list[str] = []
        self.group_affs: list[str] = []


class _Builder:
    """The mutable state of one article while its front matter is walked."""

    __slots__ = (
        "affs",
        "article_type",
        "collection_date",
        "contribs",
        "copyright_statement",
        "copyright_year",
        "doi",
        "elocation_id",
        "epub_date",
        "fpage",
        "full_text_withheld",
        "funders",
        "funding_statements",
        "issns",
        "issue",
        "journal_title",
        "keywords",
        "licenses",
        "loose_affs",
        "lpage",
        "open_access",
        "page_range",
        "pmc_release_date",
        "pmcid",
        "pmid",
        "ppub_date",
        "publisher",
        "subjects",
        "title",
        "volume",
    )

    def __init__(self) -> None:
        self.pmcid: str | None = None
        self.pmid: str | None = None
        self.doi: str | None = None
        self.article_type: str | None = None
        self.title: str | None = None
        self.journal_title: str | None = None
        self.publisher: str | None = None
        self.issns: dict[str, None] = {}
        self.subjects: dict[str, None] = {}
        self.keywords: dict[str, None] = {}
        self.licenses: list[License] = []
        self.copyright_statement: str | None = None
        self.copyright_year: int | None = None
        self.epub_date: PartialDate | None = None
        self.ppub_date: PartialDate | None = None
        self.collection_date: PartialDate | None = None
        self.pmc_release_date: PartialDate | None = None
        self.volume: str | None = None
        self.issue: str | None = None
        self.fpage: str | None = None
        self.lpage: str | None = None
        self.page_range: str | None = None
        self.elocation_id: str | None = None
        self.funders: dict[tuple[str | None, str | None], list[str]] = {}
        self.funding_statements: list[str] = []
        self.contribs: list[_Contrib] = []
        self.affs: dict[str, str] = {}  # aff id -> text
        self.loose_affs: list[str] = []  # affs without an id, straight under article-meta
        self.open_access: bool | None = None
        self.full_text_withheld = False

    def build(self, raw_xml: bytes | None) -> PmcFront | None:
        """The finished PmcFront, or None when the article has no usable PMC id."""
        if self.pmcid is None:
            return None
        pages = self.fpage
        if pages is not None and self.lpage is not None and self.lpage != pages:
            pages = f"{pages}-{self.lpage}"
        elif pages is None:
            pages = self.page_range
        return PmcFront(
            pmcid=self.pmcid,
            pmid=self.pmid,
            doi=self.doi,
            article_type=self.article_type,
            title=self.title,
            journal_title=self.journal_title,
            publisher=self.publisher,
            issns=tuple(self.issns),
            subjects=tuple(self.subjects),
            keywords=tuple(self.keywords),
            licenses=tuple(self.licenses),
            copyright_statement=self.copyright_statement,
            copyright_year=self.copyright_year,
            epub_date=self.epub_date,
            ppub_date=self.ppub_date,
            collection_date=self.collection_date,
            pmc_release_date=self.pmc_release_date,
            volume=self.volume,
            issue=self.issue,
            pages=pages,
            elocation_id=self.elocation_id,
            funders=tuple(Funder(name, doi, tuple(awards)) for (name, doi), awards in self.funders.items()),
            funding_statement=" ".join(self.funding_statements) or None,
            contributors=self._contributors(),
            open_access=self.open_access,
            full_text_withheld=self.full_text_withheld,
            raw_xml=raw_xml,
        )

    def _contributors(self) -> tuple[ContributorName, ...]:
        authors: list[ContributorName] = []
        for position, contrib in enumerate(self.contribs, start=1):
            found: dict[str, None] = {}
            for rid in contrib.rids:
                aff = self.affs.get(rid)
                if aff is not None:
                    found[aff] = None
            for aff in contrib.own_affs:
                found[aff] = None
            if not found:
                found = dict.fromkeys(contrib.group_affs or self.loose_affs)
            authors.append(
                ContributorName(
                    position=position,
                    family=contrib.family,
                    given=contrib.given,
                    suffix=contrib.suffix,
                    name=contrib.name,
                    orcid=contrib.orcid,
                    affiliations=tuple(found),
                )
            )
        return tuple(authors)


Handler = Callable[[_Builder, etree._Element], None]


def _walk(builder: _Builder, elem: etree._Element, handlers: dict[str, Handler]) -> None:
    """Call the handler registered for each child's tag; children with no handler are ignored."""
    get = handlers.get
    for child in elem:
        tag = child.tag
        if isinstance(tag, str):
            handler = get(tag)
            if handler is not None:
                handler(builder, child)


# --- journal-meta ------------------------------------------------------------------------------------


def _h_journal_title_group(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "journal-title" and b.journal_title is None:
            b.journal_title = _text(child)


def _h_journal_title(b: _Builder, elem: etree._Element) -> None:  # NLM 2.3: straight under journal-meta
    if b.journal_title is None:
        b.journal_title = _text(elem)


def _h_issn(b: _Builder, elem: etree._Element) -> None:
    issn = _text(elem)
    if issn is not None:
        b.issns[issn] = None


def _h_publisher(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "publisher-name" and b.publisher is None:
            b.publisher = _text(child)


# --- article-meta ------------------------------------------------------------------------------------


def _h_article_id(b: _Builder, elem: etree._Element) -> None:
    id_type = elem.get("pub-id-type")
    value = elem.text
    if id_type in ("pmc", "pmcid"):
        b.pmcid = b.pmcid or pmcid_or_none(value)
    elif id_type == "pmid":
        b.pmid = b.pmid or _pmid_or_none(value)
    elif id_type == "doi":
        b.doi = b.doi or _doi_or_none(value)


def _subjects(b: _Builder, group: etree._Element) -> None:
    for child in group:
        tag = child.tag
        if tag == "subject":
            subject = _text(child)
            if subject is not None:
                b.subjects[subject] = None
        elif tag == "subj-group":
            _subjects(b, child)


def _h_article_categories(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "subj-group":
            _subjects(b, child)


def _h_title_group(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "article-title" and b.title is None:
            b.title = _text(child)


def _person_name(contrib: _Contrib, name: etree._Element) -> None:
    for part in name:
        tag = part.tag
        if tag == "surname":
            contrib.family = _text(part)
        elif tag == "given-names":
            contrib.given = _text(part)
        elif tag == "suffix":
            contrib.suffix = _text(part)


def _preferred_name(alternatives: etree._Element) -> etree._Element | None:
    """From ``name-alternatives``, the English (or language-less) ``name``, else the first one."""
    first = None
    for child in alternatives:
        if child.tag == "name":
            lang = (child.get(_XML_LANG) or "en").lower()
            if lang.startswith("en"):
                return child
            if first is None:
                first = child
    return first


def _contrib(elem: etree._Element) -> _Contrib:
    contrib = _Contrib()
    named = False
    for child in elem:
        tag = child.tag
        if tag == "name" and not named:
            _person_name(contrib, child)
            named = True
        elif tag == "name-alternatives" and not named:
            name = _preferred_name(child)
            if name is not None:
                _person_name(contrib, name)
                named = True
        elif tag == "string-name" and not named:
            if child.find("surname") is not None:
                _person_name(contrib, child)
            else:
                contrib.name = _text(child)
            named = True
        elif tag in ("collab", "collab-alternatives") and contrib.name is None:
            collab = child if tag == "collab" else child.find("collab")
            contrib.name = _text(collab) if collab is not None else None
        elif tag == "contrib-id":
            if contrib.orcid is None and (child.get("contrib-id-type") or "").lower() == "orcid":
                contrib.orcid = normalize_orcid(child.text)
        elif tag == "uri" and (child.get("content-type") or "").lower() == "orcid":
            contrib.orcid = contrib.orcid or normalize_orcid(child.get(_XLINK_HREF) or child.text)
        elif tag == "xref":
            if child.get("ref-type") == "aff":
                contrib.rids.extend((child.get("rid") or "").split())
        elif tag == "aff":
            aff = _aff_text(child)
            if aff is not None:
                contrib.own_affs.append(aff)
    return contrib


def _h_aff(b: _Builder, elem: etree._Element) -> None:
    _index_aff(b, elem, b.loose_affs)


def _index_aff(b: _Builder, elem: etree._Element, loose: list[str]) -> None:
    """Record an ``aff`` (or ``aff-alternatives``) by its id, or among the affs without one."""
    aff_id = elem.get("id")
    target = elem
    if elem.tag == "aff-alternatives":
        found = elem.find("aff")
        if found is None:
            return
        target = found
        for aff in elem.iterchildren("aff"):
            if aff.get("id"):  # each alternative may carry its own id too
                text = _aff_text(aff)
                if text is not None:
                    b.affs.setdefault(aff.get("id") or "", text)
    text = _aff_text(target)
    if text is None:
        return
    if aff_id:
        b.affs.setdefault(aff_id, text)
    else:
        loose.append(text)


def _h_contrib_group(b: _Builder, elem: etree._Element) -> None:
    authors: list[_Contrib] = []
    group_affs: list[str] = []
    for child in elem:
        tag = child.tag
        if tag == "contrib":
            if (child.get("contrib-type") or "author").strip().lower() == "author":
                authors.append(_contrib(child))
        elif tag in ("aff", "aff-alternatives"):
            _index_aff(b, child, group_affs)
    for contrib in authors:
        contrib.group_affs = group_affs
    b.contribs.extend(authors)


def _h_pub_date(b: _Builder, elem: etree._Element) -> None:
    slots = _date_slots(elem)
    if not slots:
        return
    date = _date(elem)
    if date is None:
        return
    for slot in slots:
        if slot == "epub":
            b.epub_date = b.epub_date or date
        elif slot == "ppub":
            b.ppub_date = b.ppub_date or date
        elif slot == "collection":
            b.collection_date = b.collection_date or date
        else:
            b.pmc_release_date = b.pmc_release_date or date


def _h_pub_history(b: _Builder, elem: etree._Element) -> None:
    for event in elem:
        if event.tag == "event" and event.get("event-type") == "pmc-release" and b.pmc_release_date is None:
            for child in event:
                if child.tag == "date":
                    b.pmc_release_date = _date(child)
                    break


def _h_volume(b: _Builder, elem: etree._Element) -> None:
    if b.volume is None:
        b.volume = _text(elem)


def _h_issue(b: _Builder, elem: etree._Element) -> None:
    if b.issue is None:
        b.issue = _text(elem)


def _h_fpage(b: _Builder, elem: etree._Element) -> None:
    if b.fpage is None:
        b.fpage = _text(elem)


def _h_lpage(b: _Builder, elem: etree._Element) -> None:
    if b.lpage is None:
        b.lpage = _text(elem)


def _h_page_range(b: _Builder, elem: etree._Element) -> None:
    if b.page_range is None:
        b.page_range = _text(elem)


def _h_elocation_id(b: _Builder, elem: etree._Element) -> None:
    if b.elocation_id is None:
        b.elocation_id = _text(elem)


def _license(elem: etree._Element) -> License:
    url = None
    start = None
    texts: list[str] = []
    for child in elem:
        tag = child.tag
        if tag == _ALI_LICENSE_REF:
            if url is None:
                url = _text(child)
                start_date = child.get("start_date")
                if start_date:
                    start = _date_of((None, None, None, None, start_date))
        elif tag in ("license-p", "p"):
            text = _text(child)
            if text is not None:
                texts.append(text)
    return License(
        url=url or _attr(elem, _XLINK_HREF),
        license_type=_attr(elem, "license-type"),
        text=" ".join(texts) or None,
        start=start if start is not None and start.raw is not None else None,
    )


def _h_permissions(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "license":
            b.licenses.append(_license(child))
        elif tag == "copyright-statement" and b.copyright_statement is None:
            b.copyright_statement = _text(child)
        elif tag == "copyright-year" and b.copyright_year is None:
            match = _YEAR.search(child.text or "")
            b.copyright_year = int(match.group()) if match else None


def _h_kwd_group(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag in ("kwd", "compound-kwd"):
            keyword = _text(child)
            if keyword is not None:
                b.keywords[keyword] = None


def _funding_source(elem: etree._Element) -> tuple[str | None, str | None]:
    """(name, funder DOI) of a ``funding-source``."""
    doi = None
    for node in elem.iter("institution-id", "named-content"):
        kind = node.get("institution-id-type") if node.tag == "institution-id" else node.get("content-type")
        if (kind or "").lower() in _FUNDER_ID_TYPES:
            doi = _funder_doi(node.text)
            if doi is not None:
                break
    if doi is None:
        href = elem.get(_XLINK_HREF)
        if href and _FUNDREF_PREFIX in href:
            doi = doi_or_none(href)
    institution = next(elem.iter("institution"), None)
    name = _text(institution) if institution is not None else _text(elem)
    return name, doi


def _h_funding_group(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "award-group":
            sources: list[tuple[str | None, str | None]] = []
            awards: list[str] = []
            for part in child:
                if part.tag == "funding-source":
                    sources.append(_funding_source(part))
                elif part.tag == "award-id":
                    award = _text(part)
                    if award is not None:
                        awards.append(award)
            for source in sources or [(None, None)]:
                if source == (None, None) and not awards:
                    continue
                known = b.funders.setdefault(source, [])
                known.extend(a for a in awards if a not in known)
        elif tag == "funding-statement":
            statement = _text(child)
            if statement is not None:
                b.funding_statements.append(statement)


_JOURNAL_META: dict[str, Handler] = {
    "journal-title-group": _h_journal_title_group,
    "journal-title": _h_journal_title,
    "issn": _h_issn,
    "publisher": _h_publisher,
}
_ARTICLE_META: dict[str, Handler] = {
    "article-id": _h_article_id,
    "article-categories": _h_article_categories,
    "title-group": _h_title_group,
    "contrib-group": _h_contrib_group,
    "aff": _h_aff,
    "aff-alternatives": _h_aff,
    "pub-date": _h_pub_date,
    "pub-history": _h_pub_history,
    "volume": _h_volume,
    "issue": _h_issue,
    "fpage": _h_fpage,
    "lpage": _h_lpage,
    "page-range": _h_page_range,
    "elocation-id": _h_elocation_id,
    "permissions": _h_permissions,
    "kwd-group": _h_kwd_group,
    "funding-group": _h_funding_group,
}


# ---------------------------------------------------------------------------------------------- articles


def _article(elem: etree._Element, keep_raw: bool) -> PmcFront | None:
    builder = _Builder()
    builder.article_type = _attr(elem, "article-type")
    front = None
    for child in elem:
        tag = child.tag
        if tag == "front":
            front = child
            for part in child:
                if part.tag == "journal-meta":
                    _walk(builder, part, _JOURNAL_META)
                elif part.tag == "article-meta":
                    _walk(builder, part, _ARTICLE_META)
        elif isinstance(child, etree._ProcessingInstruction):
            if child.target == _PROPERTIES_PI:
                properties = (child.text or "").split()
                builder.open_access = "open_access" in properties or bool(builder.open_access)
        elif isinstance(child, etree._Comment):
            if _WITHHELD_NOTE in (child.text or ""):
                builder.full_text_withheld = True
    return builder.build(_raw_xml(elem, front) if keep_raw else None)


def _raw_xml(article: etree._Element, front: etree._Element | None) -> bytes:
    """The article's start tag, its processing instructions and comments, and its front; no body."""
    # An unprefixed article is in no namespace, so there is no default namespace (None key) to carry over.
    nsmap = {prefix: uri for prefix, uri in article.nsmap.items() if prefix is not None}
    wrapper = etree.Element(article.tag, nsmap=nsmap)
    for name, value in article.items():
        wrapper.set(name, value)
    wrapper.text = "\n"
    for child in article:
        if child is front or not isinstance(child.tag, str):
            wrapper.append(copy.deepcopy(child))
            wrapper[-1].tail = "\n"
    return etree.tostring(wrapper, encoding="utf-8")


# ---------------------------------------------------------------------------------------------- input


def _open_source(source: PmcSource) -> tuple[IO[bytes], IO[bytes] | None]:
    """A binary stream of XML and what to close afterwards."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)), None
    if isinstance(source, str) and source.lstrip()[:1] == "<":
        # Already-decoded XML text: its encoding declaration no longer applies, so drop it and use UTF-8.
        return io.BytesIO(_XML_DECLARATION.sub("", source, count=1).encode("utf-8")), None
    if isinstance(source, str | os.PathLike):
        handle = open(source, "rb")  # closed by parse_pmc_articles
        return handle, handle
    return source, None


def _not_pmc(root: Any) -> ParseError:
    tag = getattr(root, "tag", None)
    shown = f"<{tag}>" if isinstance(tag, str) else "no element"
    return ParseError(f"not PMC XML: the root element is {shown}, expected <pmc-articleset> or <article>")


def parse_pmc_articles(source: PmcSource, *, keep_raw: bool = False) -> Iterator[PmcFront]:
    """Stream the front matter of each article of an efetch db=pmc answer, in document order.

    Args:
        source: the document as bytes, a path, a binary file object, or XML text as a ``str`` that starts
            with "<" (any other ``str`` is a path). The root is ``pmc-articleset`` or a single ``article``.
        keep_raw: attach to ``PmcFront.raw_xml`` the article's start tag, its processing instructions and
            comments and its ``front`` (UTF-8, no declaration): enough to parse it again, without the body.

    Returns:
        An iterator of :class:`PmcFront`. An empty ``pmc-articleset`` yields nothing; an article without a
        PMC id is skipped; elements the parser does not know are ignored.

    Raises:
        ParseError: the document is not well-formed (articles before the break have already been yielded)
            or its root is neither ``pmc-articleset`` nor ``article``.
        OSError: a path cannot be opened.
    """
    stream, owned = _open_source(source)
    try:
        yield from _iter_articles(stream, keep_raw)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"PMC XML is not well-formed: {exc}") from exc
    finally:
        if owned is not None:
            owned.close()


def _iter_articles(stream: IO[bytes], keep_raw: bool) -> Iterator[PmcFront]:
    context = iterparse_safe(stream, tag=(_ARTICLE_TAG, _SET_TAG, *_SKIPPED_TAGS), events=("end",))
    root: Any = None
    for _event, elem in context:
        if root is None:
            root = elem.getroottree().getroot()
            if root.tag not in _ROOT_TAGS:
                raise _not_pmc(root)
        tag = elem.tag
        parent = elem.getparent()
        if tag == _ARTICLE_TAG:
            if parent is not None and parent is not root:
                nested = "a nested " if parent.tag == root.tag else ""
                raise ParseError(
                    f"not PMC XML: an <article> inside {nested}<{parent.tag}> (under the root <{root.tag}>); "
                    f"articles belong directly under the root <{_SET_TAG}>"
                )
            front = _article(elem, keep_raw)
            elem.clear()
            if parent is not None:
                # Drop the articles already handled so the root does not grow with the file.
                while elem.getprevious() is not None:
                    del parent[0]
            if front is None:
                log.warning("skipped a PMC article without a PMC id")
            else:
                yield front
        elif tag != _SET_TAG and parent is not None and parent.tag in _SKIPPED_PARENTS:
            elem.clear(keep_tail=True)
    if root is None:
        root = getattr(context, "root", None)
        if root is None or root.tag not in _ROOT_TAGS:
            raise _not_pmc(root)

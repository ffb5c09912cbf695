"""Parse PubMed XML (efetch responses, baseline and update files) into :mod:`harvester.core.records`.

One streaming pass: lxml's iterparse hands over each PubmedArticle, PubmedBookArticle and DeleteCitation
once it is complete; its children are walked once, dispatching on tag, and the element is then cleared so a
120,000-record update file parses in bounded memory. Only a record's own elements are read at each level,
which is what keeps the ArticleIds of its ReferenceList out of its own ``ids`` and its DOI.

Choices worth knowing:

- A document whose root is a single PubmedArticle or PubmedBookArticle (a record saved on its own, or a
  ``raw_xml`` fragment) is accepted as a one-record set.
- Book records take their authors from BookDocument/AuthorList, else from Book/AuthorList
  Type="authors"; editors (Type="editors") are left out. ``ids`` holds BookDocument's ArticleIdList
  (the NBK bookaccession) followed by PubmedBookData's. Sections and ItemList are ignored.
- MathML is flattened to its token text with the layout whitespace dropped ("V.O2max" rather than
  "V . O 2 m a x"); other inline markup (i, b, sup, sub, u) simply contributes its text.
- Whitespace is collapsed only where XML sees whitespace (space, tab, CR, LF); a no-break or thin space
  is content and stays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any, BinaryIO, cast

from lxml import etree

from harvester.core.bounds import bounded_int
from harvester.core.errors import ParseError
from harvester.core.ids import (
    MAX_PMCID_DIGITS,
    MAX_PMID_VERSION,
    normalize_orcid,
    pmcid_or_none,
)
from harvester.core.records import (
    MONTHS,
    Abstract,
    AbstractSection,
    Article,
    ArticleId,
    Author,
    Chemical,
    CommentCorrection,
    DatedEvent,
    DeletedCitation,
    ELocationId,
    Grant,
    Journal,
    Keyword,
    MeshHeading,
    MeshQualifier,
    PartialDate,
    PublicationType,
    Reference,
    RejectedRecord,
)
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

__all__ = ["PendingArticle", "parse_medline_date", "parse_pubmed", "scan_pubmed"]

log = logging.getLogger(__name__)

PubmedSource = bytes | str | os.PathLike[str] | BinaryIO

_SET_TAGS = frozenset({"PubmedArticleSet", "PubmedBookArticleSet"})
_RECORD_TAGS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation")
_GZIP_MAGIC = b"\x1f\x8b"
_MATHML_PREFIX = "{http://www.w3.org/1998/Math/MathML}"
_POSITION_SUFFIX = re.compile(r"(?:,? line \d+)*(?:, column \d+)?$")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_DATE_TOKEN = re.compile(r"[0-9]+|[^\W\d_]+")
_SEASONS = {"spring": "Spring", "summer": "Summer", "fall": "Fall", "autumn": "Autumn", "winter": "Winter"}
_CACHE_SIZE = 16384
_MONTH_ABBREV = {number: name.capitalize() for name, number in MONTHS.items()}


# ---------------------------------------------------------------------------------------------- text


def _collect_text(elem: etree._Element, parts: list[str]) -> None:
    """Append the text of ``elem`` and its descendants, in document order, to ``parts``."""
    if elem.text:
        parts.append(elem.text)
    for child in elem:
        tag = child.tag
        if isinstance(tag, str):  # comments, processing instructions and entities contribute no text
            if tag.startswith(_MATHML_PREFIX):
                parts.append(_math_text(child))
            else:
                _collect_text(child, parts)
        if child.tail:
            parts.append(child.tail)


def _text(elem: etree._Element) -> str | None:
    """The element's text with inline markup flattened and whitespace collapsed; None if empty."""
    if len(elem):
        parts: list[str] = []
        _collect_text(elem, parts)
        return _collapse("".join(parts))
    raw = elem.text
    if not raw:
        return None
    if "\n" in raw or "\t" in raw or "  " in raw or "\r" in raw:
        return _collapse(raw)
    return raw.strip(" ") or None  # _collapse inlined for the common case: a short, clean leaf


def _version(elem: etree._Element, pmid: str | None) -> int:
    """The Version attribute of a PMID: 1 when absent or blank.

    Raises:
        ParseError: a Version that is not a whole number from 1 to MAX_PMID_VERSION (the record is bad).
    """
    value = elem.get("Version")
    if value == "1" or value is None or not value.strip():  # "1": nearly every record
        return 1
    version = bounded_int(value, 1, MAX_PMID_VERSION)
    if version is None:
        shown = value if len(value) <= 20 else f"{value[:12]}... ({len(value)} characters)"
        raise ParseError(
            f"PMID {pmid or '(none)'}: Version {shown!r} is not a whole number from 1 to {MAX_PMID_VERSION}"
        )
    return version


def _pmcid_or_none(value: str | None) -> str | None:
    """ids.pmcid_or_none, with a shortcut for the canonical "PMC" + digits form."""
    if (
        value
        and value.startswith("PMC")
        and len(value) <= 3 + MAX_PMCID_DIGITS
        and _is_number(value[3:])
        and value[3] != "0"
    ):
        return value
    return pmcid_or_none(value)


# ---------------------------------------------------------------------------------------------- dates


def _is_year(value: str) -> bool:
    return len(value) == 4 and value[0] != "0" and _is_number(value)


def _structured_date(
    year_text: str | None, month_text: str | None, day_text: str | None, season_text: str | None
) -> PartialDate:
    """A PartialDate from Year/Month/Day/Season; raw is a readable join such as "2022 Mar 8"."""
    year = month = day = None
    raw: list[str] = []
    if year_text:
        year_text = year_text.strip()
        raw.append(year_text)
        if _is_year(year_text):
            year = int(year_text)
    if month_text and month_text.strip():
        month = _month_number(month_text) if year is not None else None
        raw.append(_MONTH_ABBREV[month] if month is not None else month_text.strip())
    if day_text and day_text.strip():
        day = _valid_day(year, month, day_text.strip()) if year is not None and month is not None else None
        raw.append(str(day) if day is not None else day_text.strip())
    season = _collapse(season_text) if season_text else None
    if season:
        raw.append(season)
    return PartialDate(year=year, month=month, day=day, season=season, raw=" ".join(raw) or None)


def parse_medline_date(text: str) -> PartialDate:
    """Parse a free-text MedlineDate as far as it goes, always keeping the text in ``raw``.

    The first four-digit number is the year; a month or season word right after it (or just before it,
    as in "Summer 2009") and then a day number narrow it down, stopping at the first token that does not
    fit. "1998 Dec-1999 Jan" gives 1998-12, "2000 Dec 23-30" gives 2000-12-23, "1999-2000" gives 1999.
    """
    raw = _collapse(text)
    if raw is None:
        return PartialDate()
    tokens = _DATE_TOKEN.findall(raw)
    index = next((i for i, token in enumerate(tokens) if _is_year(token)), None)
    if index is None:
        return PartialDate(raw=raw)
    year = int(tokens[index])
    month = day = None
    season = None
    before, after = tokens[:index], tokens[index + 1 :]
    if before:
        # "Summer 2009", "Spring-Summer 2000": words ahead of the year, the first one counts.
        first = before[0].lower()
        if first in _SEASONS:
            season = _SEASONS[first]
        elif before[0].isalpha():
            month = _month_number(before[0])
    elif after:
        first = after[0].lower()
        if first in _SEASONS:
            season = _SEASONS[first]
        elif after[0].isalpha():
            month = _month_number(after[0])
            if month is not None and len(after) > 1:
                day = _valid_day(year, month, after[1])
    return PartialDate(year=year, month=month, day=day, season=season, raw=raw)


DateKey = tuple[str | None, str | None, str | None, str | None, str | None]


def _date_key(elem: etree._Element) -> DateKey:
    """The texts of a date element's Year, Month, Day, Season and MedlineDate, as a cache key."""
    year = month = day = season = medline = None
    for child in elem:
        tag = child.tag
        if tag == "Year":
            year = child.text
        elif tag == "Month":
            month = child.text
        elif tag == "Day":
            day = child.text
            break  # the DTDs put Day last of what is read here (Hour and Minute may follow)
        elif tag == "Season":
            season = child.text
        elif tag == "MedlineDate":
            medline = child.text or ""
    return year, month, day, season, medline


@lru_cache(maxsize=_CACHE_SIZE)
def _date_of(key: DateKey) -> PartialDate:
    year, month, day, season, medline = key
    if medline is not None:
        return parse_medline_date(medline)
    return _structured_date(year, month, day, season)


def _date(elem: etree._Element) -> PartialDate:
    """A PubDate, ArticleDate, PubMedPubDate, DateCompleted or DateRevised element as a PartialDate."""
    return _date_of(_date_key(elem))


@lru_cache(maxsize=_CACHE_SIZE)
def _dated_event(kind: str, key: DateKey) -> DatedEvent:
    return DatedEvent(kind, _date_of(key))


# Vocabulary-like values recur from record to record (MeSH headings and qualifiers, publication types,
# chemicals, history dates). Each frozen record is made once and shared: building a frozen dataclass costs
# microseconds, a cache hit a fraction of one. The caches are bounded, so memory stays bounded too.


# A MeSH name straight from the element: (text, UI, MajorTopicYN, Type), all as they stand.
RawTerm = tuple[str | None, str | None, str | None, str | None]


def _raw_term(elem: etree._Element, descriptor: bool) -> RawTerm:
    """The cache key of a DescriptorName or QualifierName: its text and attributes as they stand."""
    return (
        (_text(elem) if len(elem) else elem.text),
        elem.get("UI"),
        elem.get("MajorTopicYN"),
        elem.get("Type") if descriptor else None,  # only descriptors have a Type ("Geographic")
    )


@lru_cache(maxsize=_CACHE_SIZE)
def _mesh_heading(descriptor: RawTerm, qualifiers: tuple[RawTerm, ...]) -> MeshHeading | None:
    """A MeshHeading from its raw terms; None when the descriptor has no name."""
    name = _collapse(descriptor[0]) if descriptor[0] else None
    if name is None:
        return None
    terms = (_mesh_qualifier(q) for q in qualifiers)
    return MeshHeading(
        name,
        descriptor[1] or None,
        descriptor[2] == "Y",
        descriptor[3] or None,
        tuple(q for q in terms if q is not None),
    )


@lru_cache(maxsize=1024)
def _mesh_qualifier(term: RawTerm) -> MeshQualifier | None:
    name = _collapse(term[0]) if term[0] else None
    if name is None:
        return None
    return MeshQualifier(name, term[1] or None, term[2] == "Y")


@lru_cache(maxsize=1024)
def _publication_type(name: str, ui: str | None) -> PublicationType:
    return PublicationType(name, ui)


@lru_cache(maxsize=_CACHE_SIZE)
def _chemical(name: str, registry_number: str | None, ui: str | None) -> Chemical:
    return Chemical(name, registry_number, ui)


# ---------------------------------------------------------------------------------------------- builder


class _Builder:
    """The mutable state of one record while its children are walked."""

    __slots__ = (
        "abstract",
        "authors",
        "book_authors",
        "book_title",
        "chemicals",
        "coi_statement",
        "comments_corrections",
        "country",
        "date_completed",
        "date_revised",
        "elocation_ids",
        "end_page",
        "events",
        "grants",
        "ids",
        "iso_abbrev",
        "issn_electronic",
        "issn_linking",
        "issn_print",
        "issue",
        "journal_title",
        "keywords",
        "languages",
        "medline_pgn",
        "medline_status",
        "medline_ta",
        "mesh",
        "nlm_unique_id",
        "other_abstracts",
        "pmid",
        "pmid_version",
        "pub_date",
        "publication_status",
        "publication_types",
        "publisher",
        "references",
        "start_page",
        "title",
        "vernacular_title",
        "volume",
    )

    def __init__(self) -> None:
        self.pmid: str | None = None
        self.pmid_version = 1
        self.ids: dict[tuple[str, str], None] = {}  # (IdType, value) pairs in order, without repeats
        self.title: str | None = None
        self.vernacular_title: str | None = None
        self.abstract: Abstract | None = None
        self.other_abstracts: list[Abstract] = []
        self.authors: list[Author] = []
        self.book_authors: list[Author] = []
        self.journal_title: str | None = None
        self.iso_abbrev: str | None = None
        self.medline_ta: str | None = None
        self.nlm_unique_id: str | None = None
        self.issn_print: str | None = None
        self.issn_electronic: str | None = None
        self.issn_linking: str | None = None
        self.country: str | None = None
        self.volume: str | None = None
        self.issue: str | None = None
        self.medline_pgn: str | None = None
        self.start_page: str | None = None
        self.end_page: str | None = None
        self.elocation_ids: list[ELocationId] = []
        self.pub_date = PartialDate()
        self.events: list[DatedEvent] = []
        self.languages: list[str] = []
        self.publication_types: list[PublicationType] = []
        self.mesh: list[MeshHeading] = []
        self.keywords: list[Keyword] = []
        self.chemicals: list[Chemical] = []
        self.grants: list[Grant] = []
        self.comments_corrections: list[CommentCorrection] = []
        self.references: list[Reference] = []
        self.coi_statement: str | None = None
        self.medline_status: str | None = None
        self.publication_status: str | None = None
        self.date_completed: PartialDate | None = None
        self.date_revised: PartialDate | None = None
        self.book_title: str | None = None
        self.publisher: str | None = None

    def build(self, record_type: str, raw_xml: bytes | None) -> Article | None:
        """The finished Article, or None when the record has no usable PMID."""
        if self.pmid is None:
            return None
        doi = pmcid = None
        for id_type, value in self.ids:
            if doi is None and id_type == "doi":
                doi = _doi_or_none(value)
            elif pmcid is None and id_type == "pmc":
                pmcid = _pmcid_or_none(value)
        if doi is None:
            for eloc in self.elocation_ids:
                if eloc.id_type == "doi" and eloc.valid:
                    doi = _doi_or_none(eloc.value)
                    if doi is not None:
                        break
        pages = self.medline_pgn
        if pages is None and self.start_page is not None:
            pages = f"{self.start_page}-{self.end_page}" if self.end_page else self.start_page
        authors = self.authors or self.book_authors
        return Article(
            pmid=self.pmid,
            pmid_version=self.pmid_version,
            record_type=record_type,
            ids=tuple(ArticleId(id_type, value) for id_type, value in self.ids),
            doi=doi,
            pmcid=pmcid,
            title=self.title or self.book_title,
            vernacular_title=self.vernacular_title,
            abstract=self.abstract,
            other_abstracts=tuple(self.other_abstracts),
            authors=tuple(authors),
            journal=Journal(
                title=self.journal_title,
                iso_abbrev=self.iso_abbrev,
                medline_ta=self.medline_ta,
                nlm_unique_id=self.nlm_unique_id,
                issn_print=self.issn_print,
                issn_electronic=self.issn_electronic,
                issn_linking=self.issn_linking,
                country=self.country,
            ),
            volume=self.volume,
            issue=self.issue,
            pages=pages,
            elocation_ids=tuple(self.elocation_ids),
            pub_date=self.pub_date,
            events=tuple(self.events),
            languages=tuple(self.languages),
            publication_types=tuple(self.publication_types),
            mesh=tuple(self.mesh),
            keywords=tuple(self.keywords),
            chemicals=tuple(self.chemicals),
            grants=tuple(self.grants),
            comments_corrections=tuple(self.comments_corrections),
            references=tuple(self.references),
            coi_statement=self.coi_statement,
            medline_status=self.medline_status,
            publication_status=self.publication_status,
            date_completed=self.date_completed,
            date_revised=self.date_revised,
            book_title=self.book_title,
            publisher=self.publisher,
            raw_xml=raw_xml,
        )


Handler = Callable[[_Builder, etree._Element], None]


def _walk(builder: _Builder, elem: etree._Element, handlers: dict[str, Handler]) -> None:
    """Call the handler registered for each child's tag; children with no handler are ignored."""
    get = handlers.get
    for child in elem:
        handler = get(child.tag)
        if handler is not None:
            handler(builder, child)


# ---------------------------------------------------------------------------------------------- parts


def _abstract(elem: etree._Element, kind: str = "main", language: str | None = None) -> Abstract | None:
    """An Abstract or OtherAbstract; None when it holds neither text nor a copyright line."""
    sections: list[AbstractSection] = []
    copyright_line = None
    for child in elem:
        tag = child.tag
        if tag == "AbstractText":
            text = _text(child)
            label = _attr(child, "Label")
            if text is not None or label is not None:
                sections.append(AbstractSection(text or "", label, _attr(child, "NlmCategory")))
        elif tag == "CopyrightInformation":
            copyright_line = _text(child)
    if not sections and copyright_line is None:
        return None
    return Abstract(tuple(sections), kind, language, copyright_line)


def _author(elem: etree._Element, position: int) -> Author:
    last = fore = initials = suffix = collective = orcid = None
    affiliations: list[str] | None = None
    for child in elem:
        tag = child.tag
        if tag == "LastName":
            last = _text(child)
        elif tag == "ForeName":
            fore = _text(child)
        elif tag == "Initials":
            initials = _text(child)
        elif tag == "Suffix":
            suffix = _text(child)
        elif tag == "CollectiveName":
            collective = _text(child)
        elif tag == "AffiliationInfo":
            for info in child:
                if info.tag == "Affiliation":
                    affiliation = _text(info)
                    if affiliation is not None:
                        affiliations = [affiliation] if affiliations is None else [*affiliations, affiliation]
        elif tag == "Identifier":
            if orcid is None and (child.get("Source") or "").strip().upper() == "ORCID":
                orcid = normalize_orcid(child.text)
        elif tag == "Affiliation":  # DTDs before 2015 put it straight under Author
            affiliation = _text(child)
            if affiliation is not None:
                affiliations = [affiliation] if affiliations is None else [*affiliations, affiliation]
    # Positional arguments, in the field order of Author: noticeably faster for the most numerous record.
    return Author(
        position,
        last,
        fore,
        initials,
        suffix,
        collective,
        orcid,
        tuple(affiliations) if affiliations else (),
        elem.get("ValidYN") != "N",
        elem.get("EqualContrib") == "Y",
    )


def _authors(elem: etree._Element) -> list[Author]:
    authors: list[Author] = []
    for child in elem:
        if child.tag == "Author":
            authors.append(_author(child, len(authors) + 1))
    return authors


def _article_ids(builder: _Builder, elem: etree._Element) -> None:
    """The record's own ArticleIdList (never a Reference's)."""
    for child in elem:
        if child.tag == "ArticleId":
            value = _text(child)
            if value is not None:
                builder.ids[child.get("IdType") or "pubmed", value] = None


def _references(elem: etree._Element, out: list[Reference]) -> None:
    """Every Reference of a ReferenceList, descending into nested ReferenceLists in document order."""
    for child in elem:
        tag = child.tag
        if tag == "Reference":
            citation = pmid = doi = pmcid = None
            for part in child:
                if part.tag == "Citation":
                    citation = _text(part)
                elif part.tag == "ArticleIdList":
                    for article_id in part:
                        if article_id.tag != "ArticleId":
                            continue
                        id_type = article_id.get("IdType") or "pubmed"
                        if id_type == "pubmed" and pmid is None:
                            pmid = _pmid_or_none(article_id.text)
                        elif id_type == "doi" and doi is None:
                            doi = _doi_or_none(article_id.text)
                        elif id_type == "pmc" and pmcid is None:
                            pmcid = _pmcid_or_none(article_id.text)
            if citation or pmid or doi or pmcid:
                out.append(Reference(citation, pmid, doi, pmcid))
        elif tag == "ReferenceList":
            _references(child, out)


# --- handlers: each takes the builder and one child element -----------------------------------------


def _h_pmid(b: _Builder, elem: etree._Element) -> None:
    if b.pmid is None:
        b.pmid = _pmid_or_none(elem.text)
        b.pmid_version = _version(elem, b.pmid)


def _h_date_completed(b: _Builder, elem: etree._Element) -> None:
    b.date_completed = _date(elem)


def _h_date_revised(b: _Builder, elem: etree._Element) -> None:
    b.date_revised = _date(elem)


def _h_journal_issue(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "Volume":
            b.volume = _text(child)
        elif tag == "Issue":
            b.issue = _text(child)
        elif tag == "PubDate":
            b.pub_date = _date(child)


def _h_journal(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "ISSN":
            issn = _text(child)
            if child.get("IssnType") == "Electronic":
                b.issn_electronic = b.issn_electronic or issn
            else:
                b.issn_print = b.issn_print or issn
        elif tag == "JournalIssue":
            _h_journal_issue(b, child)
        elif tag == "Title":
            b.journal_title = _text(child)
        elif tag == "ISOAbbreviation":
            b.iso_abbrev = _text(child)


def _h_title(b: _Builder, elem: etree._Element) -> None:
    b.title = _text(elem)


def _h_vernacular_title(b: _Builder, elem: etree._Element) -> None:
    b.vernacular_title = _text(elem)


def _h_pagination(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "MedlinePgn":
            b.medline_pgn = _text(child)
        elif tag == "StartPage":
            b.start_page = _text(child)
        elif tag == "EndPage":
            b.end_page = _text(child)


def _h_elocation(b: _Builder, elem: etree._Element) -> None:
    value = _text(elem)
    id_type = _attr(elem, "EIdType")
    if value is not None and id_type is not None:
        b.elocation_ids.append(ELocationId(id_type, value, elem.get("ValidYN") != "N"))


def _h_abstract(b: _Builder, elem: etree._Element) -> None:
    b.abstract = _abstract(elem)


def _h_author_list(b: _Builder, elem: etree._Element) -> None:
    if elem.get("Type") in (None, "authors"):
        b.authors = _authors(elem)


def _h_language(b: _Builder, elem: etree._Element) -> None:
    language = _text(elem)
    if language is not None:
        b.languages.append(language)


def _h_grant_list(b: _Builder, elem: etree._Element) -> None:
    for grant in elem:
        if grant.tag != "Grant":
            continue
        grant_id = acronym = agency = country = None
        for child in grant:
            tag = child.tag
            if tag == "GrantID":
                grant_id = _text(child)
            elif tag == "Acronym":
                acronym = _text(child)
            elif tag == "Agency":
                agency = _text(child)
            elif tag == "Country":
                country = _text(child)
        b.grants.append(Grant(grant_id, acronym, agency, country))


def _h_publication_type(b: _Builder, elem: etree._Element) -> None:
    name = _text(elem)
    if name is not None:
        b.publication_types.append(_publication_type(name, elem.get("UI") or None))


def _h_publication_type_list(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "PublicationType":
            _h_publication_type(b, child)


def _h_article_date(b: _Builder, elem: etree._Element) -> None:
    b.events.append(_dated_event(elem.get("DateType") or "Electronic", _date_key(elem)))


def _h_article(b: _Builder, elem: etree._Element) -> None:
    _walk(b, elem, _ARTICLE)


def _h_medline_journal_info(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "MedlineTA":
            b.medline_ta = _text(child)
        elif tag == "NlmUniqueID":
            b.nlm_unique_id = _text(child)
        elif tag == "ISSNLinking":
            b.issn_linking = _text(child)
        elif tag == "Country":
            b.country = _text(child)


def _h_chemical_list(b: _Builder, elem: etree._Element) -> None:
    for chemical in elem:
        if chemical.tag != "Chemical":
            continue
        name = registry_number = ui = None
        for child in chemical:
            if child.tag == "NameOfSubstance":
                name = _text(child)
                ui = child.get("UI") or None
            elif child.tag == "RegistryNumber":
                registry_number = _text(child)
        if name is not None:
            b.chemicals.append(_chemical(name, registry_number, ui))


def _h_mesh_heading_list(b: _Builder, elem: etree._Element) -> None:
    # The heading is looked up by its raw terms, so a heading seen before costs no text handling at all.
    append = b.mesh.append
    for heading in elem:
        if heading.tag != "MeshHeading":
            continue
        descriptor: RawTerm | None = None
        qualifiers: list[RawTerm] = []
        for child in heading:
            tag = child.tag
            if tag == "DescriptorName":
                descriptor = _raw_term(child, True)
            elif tag == "QualifierName":
                qualifiers.append(_raw_term(child, False))
        if descriptor is not None:
            mesh_heading = _mesh_heading(descriptor, tuple(qualifiers))
            if mesh_heading is not None:
                append(mesh_heading)


def _h_comments_corrections_list(b: _Builder, elem: etree._Element) -> None:
    for item in elem:
        if item.tag != "CommentsCorrections":
            continue
        ref_source = pmid = note = None
        for child in item:
            tag = child.tag
            if tag == "RefSource":
                ref_source = _text(child)
            elif tag == "PMID":
                pmid = _pmid_or_none(child.text)
            elif tag == "Note":
                note = _text(child)
        ref_type = item.get("RefType")
        if ref_type:  # a link of no stated kind says nothing usable
            b.comments_corrections.append(CommentCorrection(ref_type, ref_source, pmid, note))


def _h_keyword_list(b: _Builder, elem: etree._Element) -> None:
    owner = _attr(elem, "Owner")
    for child in elem:
        if child.tag == "Keyword":
            text = _text(child)
            if text is not None:
                b.keywords.append(Keyword(text, owner, child.get("MajorTopicYN") == "Y"))


def _h_other_abstract(b: _Builder, elem: etree._Element) -> None:
    abstract = _abstract(elem, _attr(elem, "Type") or "other", _attr(elem, "Language"))
    if abstract is not None:
        b.other_abstracts.append(abstract)


def _h_coi_statement(b: _Builder, elem: etree._Element) -> None:
    b.coi_statement = _text(elem)


def _h_history(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        if child.tag == "PubMedPubDate":
            status = child.get("PubStatus")
            if status:
                b.events.append(_dated_event(status, _date_key(child)))


def _h_publication_status(b: _Builder, elem: etree._Element) -> None:
    b.publication_status = _text(elem)


def _h_reference_list(b: _Builder, elem: etree._Element) -> None:
    _references(elem, b.references)


def _h_book(b: _Builder, elem: etree._Element) -> None:
    for child in elem:
        tag = child.tag
        if tag == "BookTitle":
            b.book_title = _text(child)
        elif tag == "Publisher":
            for part in child:
                if part.tag == "PublisherName":
                    b.publisher = _text(part)
        elif tag == "PubDate":
            b.pub_date = _date(child)
        elif tag == "AuthorList" and child.get("Type") == "authors":
            b.book_authors = _authors(child)
        elif tag == "Volume":
            b.volume = _text(child)


_ARTICLE: dict[str, Handler] = {
    "Journal": _h_journal,
    "ArticleTitle": _h_title,
    "VernacularTitle": _h_vernacular_title,
    "Pagination": _h_pagination,
    "ELocationID": _h_elocation,
    "Abstract": _h_abstract,
    "AuthorList": _h_author_list,
    "Language": _h_language,
    "GrantList": _h_grant_list,
    "PublicationTypeList": _h_publication_type_list,
    "ArticleDate": _h_article_date,
}
_MEDLINE_CITATION: dict[str, Handler] = {
    "PMID": _h_pmid,
    "DateCompleted": _h_date_completed,
    "DateRevised": _h_date_revised,
    "Article": _h_article,
    "MedlineJournalInfo": _h_medline_journal_info,
    "ChemicalList": _h_chemical_list,
    "MeshHeadingList": _h_mesh_heading_list,
    "CommentsCorrectionsList": _h_comments_corrections_list,
    "KeywordList": _h_keyword_list,
    "OtherAbstract": _h_other_abstract,
    "CoiStatement": _h_coi_statement,
}
_PUBMED_DATA: dict[str, Handler] = {
    "History": _h_history,
    "PublicationStatus": _h_publication_status,
    "ArticleIdList": _article_ids,
    "ReferenceList": _h_reference_list,
}
_BOOK_DOCUMENT: dict[str, Handler] = {
    "PMID": _h_pmid,
    "ArticleIdList": _article_ids,
    "Book": _h_book,
    "ArticleTitle": _h_title,
    "VernacularTitle": _h_vernacular_title,
    "Pagination": _h_pagination,
    "Language": _h_language,
    "AuthorList": _h_author_list,
    "PublicationType": _h_publication_type,
    "Abstract": _h_abstract,
    "KeywordList": _h_keyword_list,
    "DateRevised": _h_date_revised,
    "GrantList": _h_grant_list,
    "ReferenceList": _h_reference_list,
}
_PUBMED_BOOK_DATA: dict[str, Handler] = {
    "History": _h_history,
    "PublicationStatus": _h_publication_status,
    "ArticleIdList": _article_ids,
}


# ---------------------------------------------------------------------------------------------- records


def _pubmed_article(elem: etree._Element, raw_xml: bytes | None) -> Article | None:
    builder = _Builder()
    for part in elem:
        if part.tag == "MedlineCitation":
            builder.medline_status = _attr(part, "Status")
            _walk(builder, part, _MEDLINE_CITATION)
        elif part.tag == "PubmedData":
            _walk(builder, part, _PUBMED_DATA)
    return builder.build("journal-article", raw_xml)


def _pubmed_book_article(elem: etree._Element, raw_xml: bytes | None) -> Article | None:
    builder = _Builder()
    for part in elem:
        if part.tag == "BookDocument":
            _walk(builder, part, _BOOK_DOCUMENT)
        elif part.tag == "PubmedBookData":
            _walk(builder, part, _PUBMED_BOOK_DATA)
    return builder.build("book-article", raw_xml)


def _deleted_citations(elem: etree._Element) -> Iterator[DeletedCitation | RejectedRecord]:
    for child in elem:
        if child.tag == "PMID":
            pmid = _pmid_or_none(child.text)
            if pmid is not None:
                try:
                    yield DeletedCitation(pmid, _version(child, pmid))
                except ParseError as exc:
                    raw = etree.tostring(child, encoding="utf-8", with_tail=False)
                    yield RejectedRecord(pmid, f"DeleteCitation: {exc.message}", raw)


# ---------------------------------------------------------------------------------------------- input


class _PrefixedReader:
    """A binary reader that returns ``head`` and then the rest of ``stream`` (after sniffing its start)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._stream.read(), b""
            else:
                data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(-1 if size is None else size)


def _gunzip(stream: IO[bytes]) -> IO[bytes]:
    return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))


def _open_source(source: PubmedSource) -> tuple[IO[bytes], IO[bytes] | None]:
    """A binary stream of XML (gunzipped when the data starts with the gzip magic) and what to close."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        stream: IO[bytes] = io.BytesIO(data)
        if data[:2] == _GZIP_MAGIC:
            return _gunzip(stream), None
        return stream, None
    if isinstance(source, str) and source.lstrip()[:1] == "<":
        # Already-decoded XML text: its encoding declaration no longer applies, so drop it and use UTF-8.
        return io.BytesIO(_XML_DECLARATION.sub("", source, count=1).encode("utf-8")), None
    if isinstance(source, str | os.PathLike):
        handle = open(source, "rb")  # closed by parse_pubmed
        if handle.read(2) == _GZIP_MAGIC:
            handle.seek(0)
            return _gunzip(handle), handle
        handle.seek(0)
        return handle, handle
    head = source.read(2)
    if not isinstance(head, bytes):
        raise TypeError("parse_pubmed needs a binary stream (open the file with 'rb')")
    stream = cast(IO[bytes], _PrefixedReader(head, source))
    if head == _GZIP_MAGIC:
        return _gunzip(stream), None
    return stream, None


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    """One line: where the document breaks and libxml2's reason, without its repeated position."""
    reason = _POSITION_SUFFIX.sub("", (exc.msg or "").replace("\n", " ")).strip() or "syntax error"
    line, column = exc.position if exc.position else (exc.lineno, 0)
    if not line:  # nothing was read: an empty body
        return f"PubMed XML is not well-formed: {reason}"
    return f"PubMed XML is not well-formed at line {line}, column {column}: {reason}"


def _not_pubmed(root: Any) -> ParseError:
    tag = getattr(root, "tag", None)
    shown = f"<{tag}>" if isinstance(tag, str) else "no element"
    return ParseError(f"not PubMed XML: the root element is {shown}, expected <PubmedArticleSet>")


def _misplaced(elem: etree._Element, parent: etree._Element) -> ParseError:
    """A record or set that is not where PubMed puts it, said as what is wrong."""
    root = elem.getroottree().getroot()
    where = f"<{parent.tag}>" + (f" (under <{root.tag}>)" if root is not parent else "")
    if elem.tag in _SET_TAGS:
        return ParseError(
            f"not PubMed XML: a <{elem.tag}> is nested inside {where}; it must be the root element"
        )
    grandparent = parent.getparent()
    if parent.tag in _SET_TAGS and grandparent is not None:
        return _misplaced(parent, grandparent)  # a record of a nested set: the set is what is wrong
    return ParseError(
        f"not PubMed XML: a <{elem.tag}> is inside {where}; records belong directly under the root "
        "<PubmedArticleSet>"
    )


def parse_pubmed(
    source: PubmedSource, *, keep_raw: bool = False
) -> Iterator[Article | DeletedCitation | RejectedRecord]:
    """Stream the records of a PubMed XML document, in document order.

    Args:
        source: the document as bytes (gzip or plain), a path to a ``.xml`` or ``.xml.gz`` file, a binary
            file object, or XML text as a ``str`` that starts with "<" (any other ``str`` is a path).
        keep_raw: attach each record's own XML fragment to ``Article.raw_xml`` (UTF-8, no declaration).

    Returns:
        An iterator of :class:`Article` (PubmedArticle and PubmedBookArticle) and :class:`DeletedCitation`
        (one per PMID of a DeleteCitation). An empty PubmedArticleSet yields nothing; a record without a
        PMID is skipped; elements the parser does not know are ignored. A record that is itself bad (a PMID
        Version out of range) comes as a :class:`RejectedRecord` with the reason and its raw XML, and the
        records after it follow.

    Raises:
        ParseError: the document is not well-formed (records before the break have already been yielded)
            or its root is not PubmedArticleSet, PubmedBookArticleSet or a single record.
        OSError: a path cannot be opened.
    """
    for record in _records(source, keep_raw=keep_raw, defer=False):
        yield cast("Article | DeletedCitation | RejectedRecord", record)


def scan_pubmed(source: PubmedSource) -> Iterator[PendingArticle | DeletedCitation | RejectedRecord]:
    """Like :func:`parse_pubmed` with raw kept, but each record is parsed only when asked to.

    A bulk load can then skip the records whose raw XML it already holds: :class:`PendingArticle` carries
    the PMID, version and raw XML, and :meth:`PendingArticle.parse` builds the :class:`Article` from the
    record's element, which stays in memory only as long as the caller holds the pending record.

    Raises:
        ParseError, OSError: as :func:`parse_pubmed`.
    """
    for record in _records(source, keep_raw=True, defer=True):
        yield cast("PendingArticle | DeletedCitation | RejectedRecord", record)


def _records(
    source: PubmedSource, *, keep_raw: bool, defer: bool
) -> Iterator[Article | PendingArticle | DeletedCitation | RejectedRecord]:
    """Open the source, stream its records, and turn libxml2's and gzip's errors into ParseError."""
    stream, owned = _open_source(source)
    try:
        yield from _iter_records(stream, keep_raw, defer=defer)
    except etree.XMLSyntaxError as exc:
        raise ParseError(_syntax_message(exc)) from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ParseError(f"PubMed XML is not a complete gzip stream: {exc}") from exc
    finally:
        if owned is not None:
            owned.close()


@dataclass(frozen=True, slots=True)
class PendingArticle:
    """A PubMed record read but not yet parsed: its identity and raw XML, and its element to parse."""

    pmid: str
    pmid_version: int
    raw_xml: bytes
    _element: etree._Element = field(repr=False, compare=False)
    _tag: str = field(repr=False, compare=False)
    problem: str | None = None  # why the record cannot be parsed (its PMID Version), found while scanning

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw_xml).hexdigest()

    def parse(self) -> Article | None:
        """The record as an :class:`Article` (None when it has no usable PMID), raw XML attached.

        Raises:
            ParseError: this record is bad (a PMID Version out of range); the others are not affected.
        """
        if self.problem is not None:
            raise ParseError(self.problem)
        if self._tag == "PubmedArticle":
            return _pubmed_article(self._element, self.raw_xml)
        return _pubmed_book_article(self._element, self.raw_xml)


def _pending(elem: etree._Element, tag: str) -> PendingArticle | None:
    pmid_elem = elem.find("MedlineCitation/PMID" if tag == "PubmedArticle" else "BookDocument/PMID")
    pmid = _pmid_or_none(pmid_elem.text) if pmid_elem is not None else None
    if pmid is None or pmid_elem is None:
        return None
    raw_xml = etree.tostring(elem, encoding="utf-8", with_tail=False)
    try:
        version, problem = _version(pmid_elem, pmid), None
    except ParseError as exc:
        version, problem = 1, exc.message
    return PendingArticle(pmid, version, raw_xml, elem, tag, problem)


def _record_pmid(elem: etree._Element, tag: str) -> str | None:
    pmid_elem = elem.find("MedlineCitation/PMID" if tag == "PubmedArticle" else "BookDocument/PMID")
    return _pmid_or_none(pmid_elem.text) if pmid_elem is not None else None


def _rejected(elem: etree._Element, tag: str, exc: ParseError, raw_xml: bytes | None) -> RejectedRecord:
    """The stand-in for a record that does not parse: the others of the document go on."""
    raw = raw_xml if raw_xml is not None else etree.tostring(elem, encoding="utf-8", with_tail=False)
    return RejectedRecord(_record_pmid(elem, tag), exc.message, raw)


def _iter_records(
    stream: IO[bytes], keep_raw: bool, *, defer: bool = False
) -> Iterator[Article | PendingArticle | DeletedCitation | RejectedRecord]:
    context = iterparse_safe(stream, tag=(*_RECORD_TAGS, *_SET_TAGS), events=("end",))
    checked = False
    for _event, elem in context:
        tag = elem.tag
        parent = elem.getparent()
        if not checked:
            # Records must sit directly under a set root (or be the root); anything else is not PubMed.
            if tag in _SET_TAGS:
                if parent is not None:
                    raise _misplaced(elem, parent)
            elif parent is not None and (parent.tag not in _SET_TAGS or parent.getparent() is not None):
                raise _misplaced(elem, parent)
            checked = True
        if tag in _SET_TAGS:
            continue
        if defer and tag != "DeleteCitation":
            pending = _pending(elem, tag)
            if parent is not None:
                # Detached, the record lives as long as the caller holds it; the root does not grow.
                while elem.getprevious() is not None:
                    del parent[0]
                parent.remove(elem)
            if pending is None:
                log.warning("skipped a %s without a PMID", tag)
            else:
                yield pending
            continue
        article: Article | RejectedRecord | None = None
        deleted: tuple[DeletedCitation | RejectedRecord, ...] = ()
        if tag == "DeleteCitation":
            deleted = tuple(_deleted_citations(elem))
        else:
            raw_xml = etree.tostring(elem, encoding="utf-8", with_tail=False) if keep_raw else None
            try:
                if tag == "PubmedArticle":
                    article = _pubmed_article(elem, raw_xml)
                else:
                    article = _pubmed_book_article(elem, raw_xml)
            except ParseError as exc:
                article = _rejected(elem, tag, exc, raw_xml)
            if article is None:
                log.warning("skipped a %s without a PMID", tag)
        elem.clear()
        if parent is not None:
            # Drop the records already handled so the root does not grow with the file.
            while elem.getprevious() is not None:
                del parent[0]
        if article is not None:
            yield article
        yield from deleted
    if not checked:
        root = getattr(context, "root", None)
        if root is None or root.tag not in _SET_TAGS:
            raise _not_pubmed(root)

"""A parsed PubMed record as the rows the store writes: :class:`StoreRows`, made by :func:`store_rows`.

:func:`db.store.store_articles` writes a batch with one statement per table: the articles row of each
record, then the rows of its child tables (identifiers, authors and affiliations, abstract sections,
dates, languages, publication types, MeSH, keywords, chemicals, grants, comments and corrections,
references) with one executemany or COPY per table (:func:`db.inserts.insert_tuples`).

Turning a record into those rows needs nothing from the database but the article's id, so it is a pure
function of the record, done once: ``harvest ingest`` does it in the process that reads the file, and what
travels to the storing process is plain tuples, which pickle reads back in C, instead of the record's
hundred-odd objects, each rebuilt through its constructor (on the bench corpus, 30 against 132 µs a
record to unpickle). The article id goes in front of each child row when the store knows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from db.journals import journal_facts
from db.models import PUBMED_CHILD_TABLES, metadata
from enrich.merge import pubmed_retractions
from harvester.core.records import Article, Journal

_T = metadata.tables

# Child tables in insertion order (a referenced table before the table that references it).
CHILD_TABLES: tuple[sa.Table, ...] = tuple(_T[name] for name in PUBMED_CHILD_TABLES)

# The columns of each child table, in the order of its rows: article_id first, then those of StoreRows.
CHILD_COLUMNS: dict[str, tuple[str, ...]] = {
    "article_identifiers": ("article_id", "id_type", "value", "position", "valid"),
    "authors": (
        "article_id",
        "position",
        "last_name",
        "fore_name",
        "initials",
        "suffix",
        "collective_name",
        "orcid",
        "valid",
        "equal_contrib",
    ),
    "author_affiliations": ("article_id", "author_position", "position", "affiliation"),
    "abstract_sections": (
        "article_id",
        "abstract_index",
        "position",
        "kind",
        "language",
        "label",
        "nlm_category",
        "text",
    ),
    "article_dates": ("article_id", "position", "kind", "year", "month", "day", "iso", "raw"),
    "article_languages": ("article_id", "position", "language"),
    "publication_types": ("article_id", "position", "ui", "name"),
    "mesh_headings": ("article_id", "position", "descriptor_ui", "descriptor", "major", "descriptor_type"),
    "mesh_qualifiers": ("article_id", "heading_position", "position", "qualifier_ui", "qualifier", "major"),
    "keywords": ("article_id", "position", "owner", "keyword", "major"),
    "chemicals": ("article_id", "position", "name", "registry_number", "ui"),
    "grants": ("article_id", "position", "grant_id", "acronym", "agency", "country"),
    "comments_corrections": ("article_id", "position", "ref_type", "ref_source", "ref_pmid", "note"),
    "article_references": ("article_id", "position", "citation", "pmid", "doi", "pmcid"),
}

# The articles columns a record alone decides, in the order of StoreRows.values. The store adds the rest:
# journal_id (the journals row), doi and pmcid (db.store._assign_ids), retracted, in_pubmed, deleted and
# content_sha256.
RECORD_COLUMNS: tuple[str, ...] = (
    "pmid",
    "pmid_version",
    "record_type",
    "title",
    "vernacular_title",
    "abstract",
    "abstract_copyright",
    "journal_facts",
    "volume",
    "issue",
    "pages",
    "pub_date",
    "pub_year",
    "pub_month",
    "pub_day",
    "pub_season",
    "pub_date_raw",
    "epub_date",
    "medline_status",
    "publication_status",
    "date_completed",
    "date_revised",
    "coi_statement",
    "book_title",
    "publisher",
    "references_count",
)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class StoreRows:
    """One PubMed record as the store writes it (see the module docstring)."""

    pmid: str
    pmid_version: int
    raw: bytes  # the record's own XML, kept as its payload
    sha256: str  # of raw
    doi: str | None  # the record's DOI, lower-cased (DOIs are case-insensitive)
    pmcid: str | None
    journal: Journal
    values: Row  # the articles columns of RECORD_COLUMNS
    retractions: tuple[dict[str, str | None], ...]  # its statements that it is retracted
    children: tuple[tuple[Row, ...], ...]  # per CHILD_TABLES, its rows without the leading article_id

    def __reduce__(self) -> tuple[Any, ...]:
        # As its field values through the constructor: the default (a state dict set back one slot at a
        # time through the frozen class's __setattr__ guard) is slower and needs __getstate__.
        return (
            StoreRows,
            (
                self.pmid,
                self.pmid_version,
                self.raw,
                self.sha256,
                self.doi,
                self.pmcid,
                self.journal,
                self.values,
                self.retractions,
                self.children,
            ),
        )


def store_rows(article: Article, sha256: str | None = None) -> StoreRows:
    """The rows of a parsed record (parsed with its raw XML kept); ``sha256``, the hash of that raw XML
    when the caller has it already.

    Raises:
        ValueError: the record has no raw_xml.
    """
    raw = article.raw_xml
    if raw is None:
        raise ValueError(f"PMID {article.pmid}: the record has no raw_xml to keep; parse with raw kept")
    pub = article.pub_date
    epub = article.epub_date
    main = article.abstract
    values = (
        article.pmid,
        article.pmid_version,
        article.record_type,
        article.title,
        article.vernacular_title,
        (main.text or None) if main else None,
        main.copyright if main else None,
        journal_facts(article.journal),
        article.volume,
        article.issue,
        article.pages,
        pub.iso,
        pub.year,
        pub.month,
        pub.day,
        pub.season,
        pub.raw,
        epub.iso if epub else None,
        article.medline_status,
        article.publication_status,
        article.date_completed.iso if article.date_completed else None,
        article.date_revised.iso if article.date_revised else None,
        article.coi_statement,
        article.book_title,
        article.publisher,
        len(article.references) or None,
    )
    return StoreRows(
        article.pmid,
        article.pmid_version,
        raw,
        sha256 or hashlib.sha256(raw).hexdigest(),
        article.doi.lower() if article.doi else None,
        article.pmcid,
        article.journal,
        values,
        tuple(pubmed_retractions(article)),
        _children(article),
    )


def _children(a: Article) -> tuple[tuple[Row, ...], ...]:
    """The child rows of a record, per CHILD_TABLES, without article_id."""
    identifiers: list[Row] = []
    seen: set[tuple[str, str]] = set()
    entries = [(i.id_type, i.value, True) for i in a.ids]
    entries += [(f"eloc:{e.id_type}", e.value, e.valid) for e in a.elocation_ids]
    for id_type, value, valid in entries:
        if id_type.endswith("doi"):
            value = value.lower()  # DOIs are case-insensitive; stored as articles.doi is
        if not value or (id_type, value) in seen:
            continue
        seen.add((id_type, value))
        identifiers.append((id_type, value, len(seen), valid))

    authors: list[Row] = []
    affiliations: list[Row] = []
    for position, au in enumerate(a.authors, 1):
        authors.append(
            (
                position,
                au.last_name,
                au.fore_name,
                au.initials,
                au.suffix,
                au.collective_name,
                au.orcid,
                au.valid,
                au.equal_contrib,
            )
        )
        affiliations.extend(
            (position, aff_position, affiliation)
            for aff_position, affiliation in enumerate(au.affiliations, 1)
        )

    sections: list[Row] = []
    abstracts = [(0, a.abstract)] if a.abstract else []
    abstracts += list(enumerate(a.other_abstracts, 1))
    for abstract_index, abstract in abstracts:
        sections.extend(
            (abstract_index, position, abstract.kind, abstract.language, s.label, s.nlm_category, s.text)
            for position, s in enumerate(abstract.sections, 1)
        )

    headings: list[Row] = []
    qualifiers: list[Row] = []
    for position, m in enumerate(a.mesh, 1):
        headings.append((position, m.ui, m.descriptor, m.major, m.descriptor_type))
        qualifiers.extend(
            (position, q_position, q.ui, q.name, q.major) for q_position, q in enumerate(m.qualifiers, 1)
        )

    by_table: dict[str, tuple[Row, ...]] = {
        "article_identifiers": tuple(identifiers),
        "authors": tuple(authors),
        "author_affiliations": tuple(affiliations),
        "abstract_sections": tuple(sections),
        "article_dates": tuple(
            (position, e.kind, e.date.year, e.date.month, e.date.day, e.date.iso, e.date.raw)
            for position, e in enumerate(a.events, 1)
        ),
        "article_languages": tuple(enumerate(a.languages, 1)),
        "publication_types": tuple(
            (position, pt.ui, pt.name) for position, pt in enumerate(a.publication_types, 1)
        ),
        "mesh_headings": tuple(headings),
        "mesh_qualifiers": tuple(qualifiers),
        "keywords": tuple((position, k.owner, k.text, k.major) for position, k in enumerate(a.keywords, 1)),
        "chemicals": tuple(
            (position, c.name, c.registry_number, c.ui) for position, c in enumerate(a.chemicals, 1)
        ),
        "grants": tuple(
            (position, g.grant_id, g.acronym, g.agency, g.country) for position, g in enumerate(a.grants, 1)
        ),
        "comments_corrections": tuple(
            (position, cc.ref_type, cc.ref_source, cc.pmid, cc.note)
            for position, cc in enumerate(a.comments_corrections, 1)
        ),
        "article_references": tuple(
            (position, r.citation, r.pmid, r.doi, r.pmcid) for position, r in enumerate(a.references, 1)
        ),
    }
    return tuple(by_table[name] for name in PUBMED_CHILD_TABLES)

"""A parsed PubMed record as the rows of its child tables: tuples per table, in insertion order.

The rows of a batch are gathered here and written with one executemany per table
(:func:`db.inserts.insert_tuples`): identifiers, authors and affiliations, abstract sections, dates,
languages, publication types, MeSH, keywords, chemicals, grants, comments and corrections, references.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from db.models import PUBMED_CHILD_TABLES, metadata
from harvester.core.records import Article

_T = metadata.tables

# Child tables in insertion order (a referenced table before the table that references it).
CHILD_TABLES: tuple[sa.Table, ...] = tuple(_T[name] for name in PUBMED_CHILD_TABLES)

# The columns of each child table, in the order ChildRows builds its tuples.
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


class ChildRows:
    """Accumulates the child rows of a batch per table as tuples, ready for one executemany each."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in CHILD_TABLES}

    def add(self, article_id: int, a: Article) -> None:
        rows = self.rows
        identifiers = rows["article_identifiers"]
        seen: set[tuple[str, str]] = set()
        entries = [(i.id_type, i.value, True) for i in a.ids]
        entries += [(f"eloc:{e.id_type}", e.value, e.valid) for e in a.elocation_ids]
        for id_type, value, valid in entries:
            if id_type.endswith("doi"):
                value = value.lower()  # DOIs are case-insensitive; stored as articles.doi is
            if not value or (id_type, value) in seen:
                continue
            seen.add((id_type, value))
            identifiers.append((article_id, id_type, value, len(seen), valid))

        authors, affiliations = rows["authors"], rows["author_affiliations"]
        for position, au in enumerate(a.authors, 1):
            authors.append(
                (
                    article_id,
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
                (article_id, position, aff_position, affiliation)
                for aff_position, affiliation in enumerate(au.affiliations, 1)
            )

        sections = rows["abstract_sections"]
        abstracts = [(0, a.abstract)] if a.abstract else []
        abstracts += list(enumerate(a.other_abstracts, 1))
        for abstract_index, abstract in abstracts:
            sections.extend(
                (
                    article_id,
                    abstract_index,
                    position,
                    abstract.kind,
                    abstract.language,
                    s.label,
                    s.nlm_category,
                    s.text,
                )
                for position, s in enumerate(abstract.sections, 1)
            )

        rows["article_dates"].extend(
            (article_id, position, e.kind, e.date.year, e.date.month, e.date.day, e.date.iso, e.date.raw)
            for position, e in enumerate(a.events, 1)
        )
        rows["article_languages"].extend(
            (article_id, position, language) for position, language in enumerate(a.languages, 1)
        )
        rows["publication_types"].extend(
            (article_id, position, pt.ui, pt.name) for position, pt in enumerate(a.publication_types, 1)
        )
        headings, qualifiers = rows["mesh_headings"], rows["mesh_qualifiers"]
        for position, m in enumerate(a.mesh, 1):
            headings.append((article_id, position, m.ui, m.descriptor, m.major, m.descriptor_type))
            qualifiers.extend(
                (article_id, position, q_position, q.ui, q.name, q.major)
                for q_position, q in enumerate(m.qualifiers, 1)
            )
        rows["keywords"].extend(
            (article_id, position, k.owner, k.text, k.major) for position, k in enumerate(a.keywords, 1)
        )
        rows["chemicals"].extend(
            (article_id, position, c.name, c.registry_number, c.ui)
            for position, c in enumerate(a.chemicals, 1)
        )
        rows["grants"].extend(
            (article_id, position, g.grant_id, g.acronym, g.agency, g.country)
            for position, g in enumerate(a.grants, 1)
        )
        rows["comments_corrections"].extend(
            (article_id, position, cc.ref_type, cc.ref_source, cc.pmid, cc.note)
            for position, cc in enumerate(a.comments_corrections, 1)
        )
        rows["article_references"].extend(
            (article_id, position, r.citation, r.pmid, r.doi, r.pmcid)
            for position, r in enumerate(a.references, 1)
        )

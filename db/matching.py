"""Matching: which stored articles an incoming PMC or Crossref record belongs to, by the ids it names.

Every id of a record (PMC: PMCID, PMID, DOI; Crossref: DOI, the DOIs Crossref answered as aliases of it,
and a PMID if it gives one) is looked up at once for the whole batch (:func:`match_claims`), in the
articles columns and in article_identifiers (PMCIDs, DOIs, valid ELocationID DOIs, Crossref aliases).
Which of those articles the record enriches is :func:`choose_targets` (the README's "Identity"
section): a person's choice first (``harvest conflicts resolve --keep``, :func:`read_decisions`); else
the article of the PMID it names; else every PubMed article holding one of its ids (a DOI or PMCID
several PubMed records share enriches each of them, each with its own provenance); else the one article
not in PubMed (stored from Crossref alone) that holds it. An article not in PubMed beside any other match
would have to be merged into it: a conflict (db.conflicts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.inserts import chunks
from db.models import metadata
from enrich.payloads import CROSSREF

_T = metadata.tables
ARTICLES = _T["articles"]
IDENTIFIERS = _T["article_identifiers"]
SOURCE_RECORDS = _T["source_records"]
CONFLICTS = _T["conflicts"]

ALIAS = "crossref:alias"  # article_identifiers id_type of a DOI Crossref answers with another (primary) DOI


@dataclass(slots=True)
class IncomingRecord:
    """An incoming source record: its raw bytes and the ids it names."""

    source: str
    source_id: str
    raw: bytes
    sha256: str
    claims: tuple[tuple[str, str], ...]  # (id_type, value): "pmid", "pmcid", "doi"
    aliases: tuple[str, ...] = ()  # Crossref: DOIs asked for that Crossref answered with this work


def match_claims(conn: Connection, claims: Sequence[tuple[str, str]]) -> dict[tuple[str, str], set[int]]:
    """(id_type, value) -> the articles that hold it, in a column or in article_identifiers."""
    a, i = ARTICLES, IDENTIFIERS
    by_type: dict[str, set[str]] = defaultdict(set)
    for id_type, value in claims:
        by_type[id_type].add(value)
    hits: dict[tuple[str, str], set[int]] = defaultdict(set)
    lookups: list[tuple[str, sa.ColumnElement[Any], tuple[str, ...]]] = [
        ("pmid", a.c.pmid, ()),
        ("pmcid", a.c.pmcid, ("pmc",)),
        ("doi", a.c.doi, ("doi", "eloc:doi", ALIAS)),
    ]
    for id_type, column, identifier_types in lookups:
        for chunk in chunks(sorted(by_type[id_type])):
            for value, article_id in conn.execute(sa.select(column, a.c.id).where(column.in_(chunk))):
                hits[(id_type, value)].add(article_id)
            if identifier_types:
                query = sa.select(i.c.value, i.c.article_id).where(
                    i.c.id_type.in_(identifier_types), i.c.value.in_(chunk), i.c.valid.is_(True)
                )
                for value, article_id in conn.execute(query):
                    hits[(id_type, value)].add(article_id)
        if id_type == "doi":  # a Crossref work already current for an article (asked by an alias) matches it
            sr = SOURCE_RECORDS
            for chunk in chunks(sorted(by_type[id_type])):
                query = sa.select(sr.c.source_id, sr.c.article_id).where(
                    sr.c.source == CROSSREF, sr.c.source_id.in_(chunk)
                )
                for value, article_id in conn.execute(query):
                    hits[(id_type, value)].add(article_id)
    return hits


def read_pmids(conn: Connection, article_ids: Collection[int]) -> dict[int, str | None]:
    """The PMID of each of these articles (None: an article not in PubMed)."""
    found: dict[int, str | None] = {}
    for chunk in chunks(sorted(article_ids)):
        query = sa.select(ARTICLES.c.id, ARTICLES.c.pmid).where(ARTICLES.c.id.in_(chunk))
        found.update({article_id: pmid for article_id, pmid in conn.execute(query)})
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    """A conflict recorded for a source record, as it stands: a person may have settled it."""

    status: str
    article_ids: str
    kept_article_id: int | None


def read_decisions(conn: Connection, source: str, source_ids: Sequence[str]) -> dict[str, list[Decision]]:
    """Conflicts settled by hand (kept or ignored) of these source records."""
    c = CONFLICTS
    found: dict[str, list[Decision]] = defaultdict(list)
    for chunk in chunks(sorted(set(source_ids))):
        query = sa.select(c.c.source_id, c.c.status, c.c.article_ids, c.c.kept_article_id).where(
            c.c.source == source,
            c.c.source_id.in_(chunk),
            sa.or_(c.c.status == "ignored", c.c.kept_article_id.is_not(None)),
        )
        for source_id, status, article_ids, kept in conn.execute(query):
            found[source_id].append(Decision(status, article_ids, kept))
    return found


def choose_targets(
    record: IncomingRecord,
    by_article: Mapping[int, list[tuple[str, str]]],
    pmids: Mapping[int, str | None],
    decisions: Sequence[Decision],
) -> list[int] | None:
    """The articles a record enriches ([] none), or None for a conflict. See the README, "Identity".

    A person's choice (``harvest conflicts resolve --keep``) decides first. Else a PMID the record names
    picks its article. Else every PubMed article holding one of its ids gets it (a DOI several PubMed
    records share: each version of a Cochrane review is the same work at Crossref), and one article not
    in PubMed (stored from Crossref alone) gets it when nothing else matches. An article not in PubMed
    beside any other match would have to be merged into it: a conflict.
    """
    kept = next((d.kept_article_id for d in decisions if d.kept_article_id in pmids), None)
    if kept is not None:
        return [kept]
    if not by_article:
        return []
    pmid = next((value for id_type, value in record.claims if id_type == "pmid"), None)
    orphans = {a for a in by_article if pmids.get(a) is None}
    named = [a for a in by_article if pmid is not None and pmids.get(a) == pmid]
    if named:
        return None if orphans else named
    in_pubmed = sorted(a for a in by_article if a not in orphans)
    if not orphans:
        return in_pubmed
    if len(orphans) == 1 and not in_pubmed:
        return sorted(orphans)
    return None

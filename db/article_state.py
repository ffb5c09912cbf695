"""An article's stored state: its values in the shapes of the merge, the provenance of each, its
disagreements, retraction statements and current source records.

Provenance rule: field_provenance holds a row only for a value that did not come from the article's
current PubMed record. A stored value without a row came from that record: source "pubmed", its PMID, the
``fetched_at`` of its pubmed source record. The PubMed store relies on it to write no provenance on its
fast path; :func:`read_provenance` applies it for readers.

Fields and where they live: most are articles columns of the same name (``license`` is license_url and
license_type; ``pub_date`` also sets pub_year, pub_month, pub_day); ``authors`` and ``keywords`` are the
PubMed child tables; subjects, licenses, funders (with funder_awards), updates and clinical_trials have
their own tables. The journal fields (journal_title, journal_iso_abbrev, issn) are the article's own
journal facts (``articles.journal_facts``), else, for an article stored before migration 0006, its
journals row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.inserts import chunks
from db.models import metadata
from enrich.merge import Provenance, is_empty
from enrich.payloads import PUBMED

_T = metadata.tables
ARTICLES = _T["articles"]
JOURNALS = _T["journals"]
RAW_PAYLOADS = _T["raw_payloads"]
SOURCE_RECORDS = _T["source_records"]
PROVENANCE = _T["field_provenance"]
DISAGREEMENTS = _T["field_disagreements"]

# Fields stored in the articles column of the same name.
_COLUMN_FIELDS = (
    "title",
    "abstract",
    "volume",
    "issue",
    "pages",
    "epub_date",
    "doi",
    "pmcid",
    "publisher",
    "copyright",
    "copyright_year",
    "citation_count",
    "references_count",
    "crossref_type",
)
# Child tables read for the stored values, with the columns that order an article's rows.
_CHILD_ORDER: dict[str, tuple[str, ...]] = {
    "authors": ("position",),
    "author_affiliations": ("author_position", "position"),
    "keywords": ("position",),
    "article_subjects": ("position",),
    "article_licenses": ("position",),
    "article_funders": ("position",),
    "funder_awards": ("funder_position", "position"),
    "article_updates": ("position",),
    "article_clinical_trials": ("position",),
    "retraction_sources": ("source", "position"),
}


@dataclass(slots=True)
class SourceRecord:
    """An article's current record of one source: its id, when it was fetched, and its payload."""

    source_id: str
    fetched_at: datetime
    payload_id: int
    content: bytes | None = None  # compressed, as stored


@dataclass(slots=True)
class ArticleState:
    """What an article holds now, as merge values, with the provenance of each."""

    article_id: int
    row: dict[str, Any]
    journal_key: str | None
    values: dict[str, Any]
    provenance_rows: dict[str, Provenance]
    default: Provenance | None  # the current PubMed record's, for values without a row
    disagreements: set[tuple[str, str, str | None, str, str | None]]
    retractions: list[dict[str, str | None]]
    sources: dict[str, SourceRecord] = field(default_factory=dict)

    def provenance(self, name: str) -> Provenance:
        found = self.provenance_rows.get(name) or self.default
        if found is None:  # a value with neither: only from outside this code
            return Provenance("unknown", "", self.row["created_at"])
        return found

    def stored(self) -> dict[str, tuple[Any, Provenance]]:
        return {name: (value, self.provenance(name)) for name, value in self.values.items()}


def load_states(conn: Connection, ids: Sequence[int], *, payloads: bool) -> dict[int, ArticleState]:
    """The state of each article, in one query per table per chunk; with the payloads of its sources."""
    a, j = ARTICLES, JOURNALS
    states: dict[int, ArticleState] = {}
    for chunk in chunks(list(ids)):
        query = (
            sa.select(
                a,
                j.c.journal_key.label("j_key"),
                j.c.title.label("j_title"),
                j.c.iso_abbrev.label("j_iso_abbrev"),
                j.c.issn_print.label("j_issn_print"),
                j.c.issn_electronic.label("j_issn_electronic"),
                j.c.issn_linking.label("j_issn_linking"),
            )
            .select_from(a.outerjoin(j, j.c.id == a.c.journal_id))
            .where(a.c.id.in_(chunk))
        )
        rows = {row.id: row._asdict() for row in conn.execute(query)}
        children = {name: _child_rows(conn, name, chunk) for name in _CHILD_ORDER}
        provenance = _rows_by_article(conn, PROVENANCE, chunk)
        disagreements = _rows_by_article(conn, DISAGREEMENTS, chunk)
        records = _source_records(conn, chunk, payloads=payloads)
        for article_id, row in rows.items():
            sources = records.get(article_id, {})
            pubmed = sources.get(PUBMED)
            states[article_id] = ArticleState(
                article_id=article_id,
                row=row,
                journal_key=row["j_key"],
                values=_stored_values(
                    row, {name: rows_.get(article_id, []) for name, rows_ in children.items()}
                ),
                provenance_rows={
                    r["field"]: Provenance(r["source"], r["source_id"], r["fetched_at"])
                    for r in provenance.get(article_id, [])
                },
                default=Provenance(PUBMED, row["pmid"] or pubmed.source_id, pubmed.fetched_at)
                if pubmed
                else None,
                disagreements={
                    (r["field"], r["source"], r["value"], r["other_source"], r["other_value"])
                    for r in disagreements.get(article_id, [])
                },
                retractions=[
                    {"source": r["source"], "statement": r["statement"], "notice": r["notice"]}
                    for r in children["retraction_sources"].get(article_id, [])
                ],
                sources=sources,
            )
    return states


def _child_rows(conn: Connection, name: str, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    table = _T[name]
    order = [table.c.article_id, *(table.c[c] for c in _CHILD_ORDER[name])]
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(sa.select(table).where(table.c.article_id.in_(ids)).order_by(*order)):
        grouped[row.article_id].append(row._asdict())
    return grouped


def _rows_by_article(
    conn: Connection, table: sa.Table, ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(sa.select(table).where(table.c.article_id.in_(ids))):
        grouped[row.article_id].append(row._asdict())
    return grouped


def _source_records(
    conn: Connection, ids: Sequence[int], *, payloads: bool
) -> dict[int, dict[str, SourceRecord]]:
    """The latest source record of each source of each article (fetched_at, then id, decides)."""
    sr, p = SOURCE_RECORDS, RAW_PAYLOADS
    columns = [sr.c.article_id, sr.c.source, sr.c.source_id, sr.c.fetched_at, sr.c.id, sr.c.payload_id]
    query = sa.select(*columns).where(sr.c.article_id.in_(ids))
    latest: dict[int, dict[str, tuple[tuple[datetime, int], SourceRecord]]] = defaultdict(dict)
    for article_id, source, source_id, fetched_at, record_id, payload_id in conn.execute(query):
        order = (fetched_at, record_id)
        known = latest[article_id].get(source)
        if known is None or order > known[0]:
            latest[article_id][source] = (order, SourceRecord(source_id, fetched_at, payload_id))
    found = {
        article_id: {s: rec for s, (_, rec) in by_source.items()} for article_id, by_source in latest.items()
    }
    if payloads:
        wanted = {rec.payload_id: rec for by_source in found.values() for rec in by_source.values()}
        for chunk in chunks(sorted(wanted)):
            for payload_id, content in conn.execute(sa.select(p.c.id, p.c.content).where(p.c.id.in_(chunk))):
                wanted[payload_id].content = bytes(content)
    return found


def _stored_values(row: Mapping[str, Any], children: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The article's stored values in the shapes of enrich.merge; fields without a value left out."""
    values: dict[str, Any] = {name: row[name] for name in _COLUMN_FIELDS}
    values["pub_date"] = row["pub_date"]
    values["license"] = {"url": row["license_url"], "type": row["license_type"]}
    own = json.loads(row["journal_facts"]) if row["journal_facts"] else None  # the article's own (0006)
    if own is not None:
        values["journal_title"] = own.get("title")
        values["journal_iso_abbrev"] = own.get("iso_abbrev")
        values["issn"] = own.get("issn_print") or own.get("issn_electronic") or own.get("issn_linking")
    else:  # stored before 0006: the journal row stands in
        values["journal_title"] = row["j_title"]
        values["journal_iso_abbrev"] = row["j_iso_abbrev"]
        values["issn"] = row["j_issn_print"] or row["j_issn_electronic"] or row["j_issn_linking"]
    affiliations: dict[int, list[str]] = defaultdict(list)
    for aff in children["author_affiliations"]:
        affiliations[aff["author_position"]].append(aff["affiliation"])
    values["authors"] = [
        {
            "last_name": au["last_name"],
            "fore_name": au["fore_name"],
            "initials": au["initials"],
            "suffix": au["suffix"],
            "collective_name": au["collective_name"],
            "orcid": au["orcid"],
            "affiliations": affiliations.get(au["position"], []),
            "valid": au["valid"],
            "equal_contrib": au["equal_contrib"],
        }
        for au in children["authors"]
    ]
    values["keywords"] = [
        {"keyword": k["keyword"], "owner": k["owner"], "major": k["major"]} for k in children["keywords"]
    ]
    values["subjects"] = [s["subject"] for s in children["article_subjects"]]
    values["licenses"] = [
        {"url": x["url"], "license_type": x["license_type"], "text": x["text"], "start_date": x["start_date"]}
        for x in children["article_licenses"]
    ]
    awards: dict[int, list[str]] = defaultdict(list)
    for award in children["funder_awards"]:
        awards[award["funder_position"]].append(award["award_id"])
    values["funders"] = [
        {"name": f["name"], "doi": f["funder_doi"], "awards": awards.get(f["position"], [])}
        for f in children["article_funders"]
    ]
    values["updates"] = [
        {name: u[name] for name in ("kind", "direction", "doi", "asserted_by", "update_date", "label")}
        for u in children["article_updates"]
    ]
    values["clinical_trials"] = [t["number"] for t in children["article_clinical_trials"]]
    return {name: value for name, value in values.items() if not is_empty(value)}


def read_provenance(conn: Connection, article_ids: Sequence[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Provenance of every stored field of these articles: {"source", "source_id", "fetched_at"} (ISO).

    Applies the rule of this module: a value without a field_provenance row came from the article's
    current PubMed record. Journal fields are given when the article has a journal.
    """
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for article_id, state in load_states(conn, article_ids, payloads=False).items():
        found[article_id] = {
            name: {"source": p.source, "source_id": p.source_id, "fetched_at": p.fetched_at.isoformat()}
            for name in state.values
            for p in (state.provenance(name),)
        }
    return found

"""Reconciliation: PMC and Crossref records matched to stored articles, merged, written as differences.

:func:`store_pmc` and :func:`store_crossref` take one batch each, in one transaction:

1. Match (:mod:`db.matching`). Every id a record names is looked up at once for the whole batch; which
   articles it enriches is the README's "Identity" section. A record that would merge an article not in
   PubMed into another is a conflict (:mod:`db.conflicts`): recorded once (a rerun finds it there; its
   payload is kept for the person who settles it) and merged into none; it counts in
   :attr:`EnrichResult.conflicts`, unless a person chose to ignore it. A record that matches nothing is
   unmatched, unless it is a Crossref work whose DOI is in ``create_missing``: then an article is created
   from it alone (no PMID, ``in_pubmed`` false). An open conflict of a record that later matches is
   resolved (resolution "matched").
2. Skip. A record whose raw bytes hash (SHA-256) to the payload its source record already points at, on
   the same article, writes nothing at all (the article's status is already "found").
3. Keep (:mod:`db.payloads`). The payload is added to raw_payloads (gzip; earlier payloads stay, for
   re-parsing), the source record (source, source_id) repointed, and ``pmc_status`` /
   ``crossref_status`` set to "found".
4. Merge. The article is merged again from the current payload of each of its sources (PubMed, PMC,
   Crossref; the latest record of each), parsed from raw_payloads, so a merge never fetches; what is
   stored is the merge's ``stored`` input, so a source that omits a field never erases it
   (:mod:`enrich.merge`).
5. Write the differences only: article columns, the child tables of changed fields (replaced per
   article), the journal, field_provenance, field_disagreements (rows added or removed), retraction
   statements and ``retracted``, and one article_history row per changed field (old and new value as
   JSON, the winning source, the run, the time). Merging the same inputs again writes nothing.

Provenance rule: field_provenance holds a row only for a value that did not come from the article's
current PubMed record. A stored value without a row came from that record: source "pubmed", its PMID, the
``fetched_at`` of its pubmed source record. The PubMed store relies on it to write no provenance on its
fast path; :func:`read_provenance` applies it for readers.

Fields and where they live: most are articles columns of the same name (``license`` is license_url and
license_type; ``pub_date`` also sets pub_year, pub_month, pub_day); ``authors`` and ``keywords`` are the
PubMed child tables; subjects, licenses, funders (with funder_awards), updates and clinical_trials have
their own tables. The journal fields (journal_title, journal_iso_abbrev, issn) choose a journals row as a
group: the source that decides journal_title (else issn) decides the journal, keyed as db.store keys
journals; its change is recorded in history as field "journal" (old and new journal keys).

``doi`` and ``pmcid`` are not unique: several articles may hold one (migration 0006), so a merge writes
them as any other field. A source record (source, source_id) may be the current record of several
articles: one source_records row each.

:func:`reconcile_articles` runs steps 4 and 5 for articles whose PubMed record changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.conflicts import ConflictInfo, record_conflicts, resolve_matched_conflicts
from db.engine import begin_write, storage_error
from db.history import history_row
from db.inserts import chunks, dialect_insert
from db.journals import JOURNAL_FIELDS, journal_facts, journal_key, resolve_journals
from db.matching import IncomingRecord, choose_targets, match_claims, read_decisions, read_pmids
from db.models import metadata
from db.payloads import (
    current_source_records,
    drop_source_records,
    keep_payloads,
    record_aliases,
    repoint_source_records,
)
from enrich.merge import (
    DEFAULT_POLICY,
    Merged,
    Provenance,
    SourceView,
    is_empty,
    merge,
    view_of_crossref,
    view_of_pmc,
    view_of_pubmed,
)
from enrich.payloads import parse_payload
from enrich.records import CrossrefWork, PmcFront
from harvester.core.errors import HarvestError
from harvester.core.ids import doi_or_none, pmcid_or_none
from harvester.core.records import Article, Journal

logger = logging.getLogger(__name__)

PUBMED, PMC, CROSSREF = "pubmed", "pmc", "crossref"
STATUS_COLUMNS = {PMC: "pmc_status", CROSSREF: "crossref_status"}
FOUND, NOT_FOUND = "found", "not_found"


_T = metadata.tables
ARTICLES = _T["articles"]
JOURNALS = _T["journals"]
IDENTIFIERS = _T["article_identifiers"]
RAW_PAYLOADS = _T["raw_payloads"]
SOURCE_RECORDS = _T["source_records"]
PROVENANCE = _T["field_provenance"]
DISAGREEMENTS = _T["field_disagreements"]
HISTORY = _T["article_history"]
CONFLICTS = _T["conflicts"]
RUNS = _T["harvest_runs"]
RETRACTIONS = _T["retraction_sources"]

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
# Fields stored in child tables: the tables, children first (the order rows are deleted in).
_TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "authors": ("author_affiliations", "authors"),
    "keywords": ("keywords",),
    "subjects": ("article_subjects",),
    "licenses": ("article_licenses",),
    "funders": ("funder_awards", "article_funders"),
    "updates": ("article_updates",),
    "clinical_trials": ("article_clinical_trials",),
}
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


@dataclass(frozen=True, slots=True)
class EnrichResult:
    """Article ids by what happened to them (each once, in the batch's order) and source ids set apart."""

    created: tuple[int, ...]
    updated: tuple[int, ...]
    unchanged: tuple[int, ...]
    not_found: tuple[str, ...]
    conflicts: tuple[ConflictInfo, ...]
    unmatched: tuple[str, ...]  # source ids that match no stored article (and were not created)


# ---------------------------------------------------------------------------------------------- storing


@dataclass(slots=True)
class _Outcome:
    created: list[int] = field(default_factory=list)
    written: set[int] = field(default_factory=set)
    matched: list[int] = field(default_factory=list)
    conflicts: list[ConflictInfo] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def result(self, not_found: Sequence[str]) -> EnrichResult:
        created = set(self.created)
        matched = [i for i in dict.fromkeys(self.matched) if i not in created]
        return EnrichResult(
            created=tuple(dict.fromkeys(self.created)),
            updated=tuple(i for i in matched if i in self.written),
            unchanged=tuple(i for i in matched if i not in self.written),
            not_found=tuple(dict.fromkeys(not_found)),
            conflicts=tuple(self.conflicts),
            unmatched=tuple(dict.fromkeys(self.unmatched)),
        )


def store_pmc(
    engine: Engine,
    fronts: Sequence[PmcFront],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None,
    policy: Mapping[str, Sequence[str]] = DEFAULT_POLICY,
    not_found: Sequence[str] = (),
) -> EnrichResult:
    """Match, keep and merge a batch of PMC front matters, in one transaction.

    Args:
        fronts: parsed with ``keep_raw=True``.
        url: where they were fetched, already redacted; kept with the payloads.
        fetched_at: when (timezone-aware).
        run_id: the harvest_runs row history and conflicts are recorded under.
        policy: the merge policy (:func:`enrich.merge.policy_from_config`).
        not_found: PMCIDs efetch db=pmc did not return: their articles get ``pmc_status`` "not_found".

    Raises:
        StorageError: the database could not be written; nothing of the batch was stored.
        ValueError: a record without ``raw_xml``, or a naive ``fetched_at``.
    """
    records = []
    for front in fronts:
        if front.raw_xml is None:
            raise ValueError(f"{front.pmcid}: the record has no raw_xml to keep; parse with keep_raw=True")
        claims = [("pmcid", front.pmcid)]
        claims += [("pmid", front.pmid)] if front.pmid else []
        doi = doi_or_none(front.doi)
        claims += [("doi", doi)] if doi else []
        records.append(_record(PMC, front.pmcid, front.raw_xml, claims))
    missing = [pmcid_or_none(value) or value for value in not_found]
    return _store(
        engine,
        PMC,
        records,
        url=url,
        fetched_at=fetched_at,
        run_id=run_id,
        policy=policy,
        not_found=missing,
        create_missing=frozenset(),
    )


def store_crossref(
    engine: Engine,
    works: Sequence[CrossrefWork],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None,
    policy: Mapping[str, Sequence[str]] = DEFAULT_POLICY,
    not_found: Sequence[str] = (),
    create_missing: Collection[str] = (),
    aliases: Sequence[tuple[str, str]] = (),
) -> EnrichResult:
    """Match, keep and merge a batch of Crossref works, in one transaction.

    Args:
        works: parsed works (``raw_json`` is what is kept and hashed).
        url, fetched_at, run_id, policy: as :func:`store_pmc`.
        not_found: DOIs Crossref answered 404 for: the article holding each gets ``crossref_status``
            "not_found" (a status, not a failure; a later "found" clears it).
        create_missing: DOIs for which an article may be created from Crossref alone when none matches
            (``in_pubmed`` false; title, authors, journal, dates from Crossref).
        aliases: (DOI asked for, DOI of the work Crossref answered with) for aliased DOIs
            (:attr:`enrich.crossref.CrossrefBatch.aliases`): the work matches the article holding the
            alias too, and the alias is recorded as that article's identifier (id_type "crossref:alias").

    Raises:
        StorageError: the database could not be written; nothing of the batch was stored.
        ValueError: a work without ``raw_json``, or a naive ``fetched_at``.
    """
    alias_of: dict[str, list[str]] = defaultdict(list)
    for asked, primary in aliases:
        alias = doi_or_none(asked) or asked.lower()
        primary_doi = doi_or_none(primary) or primary.lower()
        if alias != primary_doi:
            alias_of[primary_doi].append(alias)
    records = []
    for work in works:
        if work.raw_json is None:
            raise ValueError(f"{work.doi}: the work has no raw_json to keep")
        doi = doi_or_none(work.doi) or work.doi.lower()
        own = tuple(dict.fromkeys(alias_of.get(doi, ())))
        claims = (
            [("doi", doi)] + [("doi", alias) for alias in own] + ([("pmid", work.pmid)] if work.pmid else [])
        )
        record = _record(CROSSREF, doi, work.raw_json, claims)
        record.aliases = own
        records.append(record)
    # An aliased DOI the caller may create an article for: the article is created for the work's DOI.
    creatable = {doi_or_none(value) or value.lower() for value in create_missing}
    create_missing = [
        *create_missing,
        *(primary for primary, found in alias_of.items() if any(alias in creatable for alias in found)),
    ]
    return _store(
        engine,
        CROSSREF,
        records,
        url=url,
        fetched_at=fetched_at,
        run_id=run_id,
        policy=policy,
        not_found=[doi_or_none(value) or value.lower() for value in not_found],
        create_missing=frozenset(doi_or_none(value) or value.lower() for value in create_missing),
    )


def reconcile_articles(
    engine: Engine,
    article_ids: Sequence[int],
    *,
    run_id: int | None,
    policy: Mapping[str, Sequence[str]] = DEFAULT_POLICY,
) -> EnrichResult:
    """Merge these articles again from their stored payloads (after their PubMed record changed).

    Raises:
        StorageError: the database could not be written.
    """
    wanted = list(dict.fromkeys(article_ids))
    try:
        with begin_write(engine) as conn:
            existing: set[int] = set()
            for chunk in chunks(wanted):
                existing.update(
                    conn.execute(sa.select(ARTICLES.c.id).where(ARTICLES.c.id.in_(chunk))).scalars()
                )
            ids = [i for i in wanted if i in existing]
            written, conflicts = _remerge(
                conn, ids, policy=policy, run_id=run_id, now=datetime.now(UTC), created=set(), raws={}
            )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot merge articles in", engine) from exc
    return EnrichResult(
        created=(),
        updated=tuple(i for i in ids if i in written),
        unchanged=tuple(i for i in ids if i not in written),
        not_found=(),
        conflicts=tuple(conflicts),
        unmatched=(),
    )


def _record(source: str, source_id: str, raw: bytes, claims: Iterable[tuple[str, str]]) -> IncomingRecord:
    return IncomingRecord(
        source, source_id, raw, hashlib.sha256(raw).hexdigest(), tuple(dict.fromkeys(claims))
    )


def _store(
    engine: Engine,
    source: str,
    records: list[IncomingRecord],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None,
    policy: Mapping[str, Sequence[str]],
    not_found: Sequence[str],
    create_missing: frozenset[str],
) -> EnrichResult:
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    latest = {r.source_id: r for r in records}  # a record given twice: the last one
    outcome = _Outcome()
    try:
        with begin_write(engine) as conn:
            _store_batch(
                conn,
                source,
                list(latest.values()),
                outcome,
                url=url,
                fetched_at=fetched_at,
                run_id=run_id,
                policy=policy,
                not_found=not_found,
                create_missing=create_missing,
            )
    except DBAPIError as exc:
        raise storage_error(exc, f"cannot store {source} records in", engine) from exc
    return outcome.result(not_found)


def _store_batch(
    conn: Connection,
    source: str,
    records: list[IncomingRecord],
    outcome: _Outcome,
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None,
    policy: Mapping[str, Sequence[str]],
    not_found: Sequence[str],
    create_missing: frozenset[str],
) -> None:
    now = datetime.now(UTC)
    missing_claims = [("pmcid" if source == PMC else "doi", value) for value in not_found]
    hits = match_claims(conn, [c for r in records for c in r.claims] + missing_claims)
    pmids = read_pmids(conn, {a for found in hits.values() for a in found})
    decisions = read_decisions(conn, source, [r.source_id for r in records])
    matched: list[tuple[IncomingRecord, int]] = []
    to_create: list[IncomingRecord] = []
    conflicting: list[tuple[IncomingRecord, dict[int, list[tuple[str, str]]]]] = []
    for record in records:
        by_article: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for claim in record.claims:
            for article_id in hits.get(claim, ()):
                by_article[article_id].append(claim)
        targets = choose_targets(record, by_article, pmids, decisions.get(record.source_id, []))
        if targets is None:
            key = ",".join(map(str, sorted(by_article)))
            if not any(
                d.status == "ignored" and d.article_ids == key for d in decisions.get(record.source_id, [])
            ):
                conflicting.append((record, by_article))
        elif targets:
            matched.extend((record, article_id) for article_id in targets)
        elif source == CROSSREF and record.source_id in create_missing:
            to_create.append(record)
        else:
            outcome.unmatched.append(record.source_id)
    for record, by_article in conflicting:
        ids = tuple(sorted(by_article))
        claims = tuple(sorted((t, v, a) for a, found in by_article.items() for t, v in found))
        outcome.conflicts.append(ConflictInfo(source, record.source_id, ids, claims))
    record_conflicts(conn, outcome.conflicts, now=now, run_id=run_id)
    if conflicting:  # kept, so that a person who settles the conflict need not fetch the record again
        keep_payloads(conn, source, [record for record, _ in conflicting], url=url, fetched_at=fetched_at)

    created = _create_articles(conn, to_create, now=now)
    outcome.created.extend(created.values())
    matched.extend((record, created[record.source_id]) for record in to_create)

    current = current_source_records(conn, source, [record.source_id for record, _ in matched])
    wanted_status: dict[int, str] = {}
    for value in not_found:
        for holder in hits.get(("pmcid" if source == PMC else "doi", value), set()):
            wanted_status[holder] = NOT_FOUND
    wanted_status.update({article_id: FOUND for _, article_id in matched})  # found wins
    old_status = _statuses(conn, source, set(wanted_status))
    status_changes = {a: s for a, s in wanted_status.items() if old_status.get(a) != s}
    to_merge: set[int] = set()
    to_keep: list[tuple[IncomingRecord, int]] = []
    targets_of: dict[str, set[int]] = defaultdict(set)
    for record, article_id in matched:
        targets_of[record.source_id].add(article_id)
    moved: list[tuple[str, int]] = []
    for record, article_id in matched:
        outcome.matched.append(article_id)
        now_at = current.get(record.source_id, {})
        if now_at.get(article_id) != record.sha256:
            to_keep.append((record, article_id))
            to_merge.add(article_id)
    for source_id, wanted in targets_of.items():
        for former in current.get(source_id, {}).keys() - wanted:
            moved.append((source_id, former))  # the record moved: merge its former article without it
            to_merge.add(former)
    resolve_matched_conflicts(conn, source, list(targets_of), now=now)

    record_aliases(conn, [(record, article_id) for record, article_id in matched if record.aliases])
    if moved:
        drop_source_records(conn, source, moved)
    if to_keep:
        repoint_source_records(conn, source, to_keep, url=url, fetched_at=fetched_at)
    if status_changes:
        _write_statuses(conn, source, status_changes, old_status, now=now, run_id=run_id)
    raws = {(source, record.source_id): record.raw for record, _ in to_keep}
    written, conflicts = _remerge(
        conn,
        sorted(to_merge),
        policy=policy,
        run_id=run_id,
        now=now,
        created=set(created.values()),
        raws=raws,
    )
    outcome.conflicts.extend(conflicts)
    outcome.written.update(written)
    outcome.written.update(a for _, a in to_keep)
    outcome.written.update(a for a in status_changes if a in wanted_status and wanted_status[a] == FOUND)


def _create_articles(conn: Connection, records: Sequence[IncomingRecord], *, now: datetime) -> dict[str, int]:
    """Articles for Crossref works PubMed does not know: source_id (the DOI) -> new article id."""
    if not records:
        return {}
    rows = conn.execute(
        sa.insert(ARTICLES).returning(ARTICLES.c.doi, ARTICLES.c.id),
        [
            {
                "doi": record.source_id,
                "crossref_status": FOUND,
                "retracted": False,
                "in_pubmed": False,
                "deleted": False,
                "created_at": now,
                "updated_at": now,
            }
            for record in records
        ],
    )
    return {doi: article_id for doi, article_id in rows}


def _statuses(conn: Connection, source: str, article_ids: Collection[int]) -> dict[int, str | None]:
    column = ARTICLES.c[STATUS_COLUMNS[source]]
    found: dict[int, str | None] = {}
    for chunk in chunks(sorted(article_ids)):
        query = sa.select(ARTICLES.c.id, column).where(ARTICLES.c.id.in_(chunk))
        found.update({article_id: status for article_id, status in conn.execute(query)})
    return found


def _write_statuses(
    conn: Connection,
    source: str,
    changes: Mapping[int, str],
    old: Mapping[int, str | None],
    *,
    now: datetime,
    run_id: int | None,
) -> None:
    name = STATUS_COLUMNS[source]
    conn.execute(
        sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")),
        [{"b_id": article_id, name: status, "updated_at": now} for article_id, status in changes.items()],
    )
    conn.execute(
        sa.insert(HISTORY),
        [
            history_row(article_id, name, old.get(article_id), status, source, now=now, run_id=run_id)
            for article_id, status in changes.items()
        ],
    )


# ---------------------------------------------------------------------------------------------- state


@dataclass(slots=True)
class _SourceRecord:
    source_id: str
    fetched_at: datetime
    payload_id: int
    content: bytes | None = None  # compressed, as stored


@dataclass(slots=True)
class _State:
    """What an article holds now, as merge values, with the provenance of each."""

    article_id: int
    row: dict[str, Any]
    journal_key: str | None
    values: dict[str, Any]
    provenance_rows: dict[str, Provenance]
    default: Provenance | None  # the current PubMed record's, for values without a row
    disagreements: set[tuple[str, str, str | None, str, str | None]]
    retractions: list[dict[str, str | None]]
    sources: dict[str, _SourceRecord] = field(default_factory=dict)

    def provenance(self, name: str) -> Provenance:
        found = self.provenance_rows.get(name) or self.default
        if found is None:  # a value with neither: only from outside this code
            return Provenance("unknown", "", self.row["created_at"])
        return found

    def stored(self) -> dict[str, tuple[Any, Provenance]]:
        return {name: (value, self.provenance(name)) for name, value in self.values.items()}


def _load_states(conn: Connection, ids: Sequence[int], *, payloads: bool) -> dict[int, _State]:
    """The state of each article, in one query per table per chunk; with the payloads of its sources."""
    a, j = ARTICLES, JOURNALS
    states: dict[int, _State] = {}
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
            states[article_id] = _State(
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
) -> dict[int, dict[str, _SourceRecord]]:
    """The latest source record of each source of each article (fetched_at, then id, decides)."""
    sr, p = SOURCE_RECORDS, RAW_PAYLOADS
    columns = [sr.c.article_id, sr.c.source, sr.c.source_id, sr.c.fetched_at, sr.c.id, sr.c.payload_id]
    query = sa.select(*columns).where(sr.c.article_id.in_(ids))
    latest: dict[int, dict[str, tuple[tuple[datetime, int], _SourceRecord]]] = defaultdict(dict)
    for article_id, source, source_id, fetched_at, record_id, payload_id in conn.execute(query):
        order = (fetched_at, record_id)
        known = latest[article_id].get(source)
        if known is None or order > known[0]:
            latest[article_id][source] = (order, _SourceRecord(source_id, fetched_at, payload_id))
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


# ---------------------------------------------------------------------------------------------- merging


@dataclass(slots=True)
class _Writes:
    """The differences of a batch, gathered first and then written one statement per table."""

    columns: dict[int, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    replaced: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # table -> articles
    children: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    provenance_deleted: list[dict[str, Any]] = field(default_factory=list)
    provenance_upserted: list[dict[str, Any]] = field(default_factory=list)
    disagreements_deleted: list[dict[str, Any]] = field(default_factory=list)
    disagreements_added: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)


def _remerge(
    conn: Connection,
    ids: Sequence[int],
    *,
    policy: Mapping[str, Sequence[str]],
    run_id: int | None,
    now: datetime,
    created: set[int],
    raws: Mapping[tuple[str, str], bytes],
) -> tuple[set[int], list[ConflictInfo]]:
    """Merge these articles from their sources' current payloads and write what differs.

    ``raws`` are payloads just kept, by (source, source_id), so they need not be read back. Returns the
    ids of the articles written and the conflicts met (none since DOIs and PMCIDs may be shared).
    """
    if not ids:
        return set(), []
    states = _load_states(conn, ids, payloads=True)
    merged: dict[int, Merged] = {}
    records: dict[int, dict[str, Any]] = {}
    for article_id in ids:
        state = states[article_id]
        views, parsed = _views(state, raws)
        records[article_id] = parsed
        merged[article_id] = merge(views, policy, state.stored())
    conflicts: list[ConflictInfo] = []  # DOI and PMCID are not unique: a merge meets no conflict
    journals = _journal_targets(states, merged, records)
    journal_ids = resolve_journals(conn, [target for target, _, _ in journals.values() if target is not None])
    writes = _Writes()
    for article_id in ids:
        history = article_id not in created
        if not history:  # the creation itself is history's first row; the values it came with are not
            writes.history.append(_creation(states[article_id]))
        _diff(states[article_id], merged[article_id], journals[article_id], journal_ids, writes, history)
    _apply(conn, writes, now=now, run_id=run_id)
    return writes.touched, conflicts


def _views(state: _State, raws: Mapping[tuple[str, str], bytes]) -> tuple[list[SourceView], dict[str, Any]]:
    """A view of each source's current record, parsed from its payload; and the parsed records.

    A payload that does not parse (kept by an older parser, say) is represented by the stored values it
    gave, so that it keeps its place in the policy instead of yielding to the next source.
    """
    views: list[SourceView] = []
    parsed: dict[str, Any] = {}
    for source, rec in state.sources.items():
        raw = raws.get((source, rec.source_id))
        if raw is None and rec.content is not None:
            raw = gzip.decompress(rec.content)
        record: Article | PmcFront | CrossrefWork | None = None
        try:
            record = parse_payload(source, raw) if raw is not None else None
        except HarvestError as exc:
            logger.warning(
                "article %d: the stored %s record %s does not parse, its stored values stand in: %s",
                state.article_id,
                source,
                rec.source_id,
                exc,
            )
        if isinstance(record, Article):
            views.append(view_of_pubmed(record, rec.fetched_at))
        elif isinstance(record, PmcFront):
            views.append(view_of_pmc(record, rec.fetched_at))
        elif isinstance(record, CrossrefWork):
            views.append(view_of_crossref(record, rec.fetched_at))
        else:
            given = {name: v for name, v in state.values.items() if state.provenance(name).source == source}
            views.append(SourceView(source, rec.source_id, rec.fetched_at, given))
            continue
        parsed[source] = record
    return views, parsed


def _journal_targets(
    states: Mapping[int, _State], merged: Mapping[int, Merged], records: Mapping[int, Mapping[str, Any]]
) -> dict[int, tuple[Journal | None, Provenance | None, str | None]]:
    """The journal each article should point at (None: leave it), the provenance of the choice, and the
    article's own journal facts (``articles.journal_facts``) as the deciding record gives them (None:
    leave them)."""
    targets: dict[int, tuple[Journal | None, Provenance | None, str | None]] = {}
    for article_id, result in merged.items():
        deciding = next((name for name in JOURNAL_FIELDS if name in result.values), None)
        if deciding is None:
            targets[article_id] = (None, None, None)
            continue
        origin = result.provenance[deciding]
        record = records[article_id].get(origin.source)
        journal: Journal | None = None
        if isinstance(record, Article):
            journal = record.journal
        elif isinstance(record, CrossrefWork):
            typed = record.issn_print or record.issn_electronic
            journal = Journal(
                title=record.container_title,
                iso_abbrev=record.short_container_title,
                issn_print=record.issn_print,
                issn_electronic=record.issn_electronic,
                issn_linking=None if typed else (record.issns[0] if record.issns else None),
            )
        elif isinstance(record, PmcFront):  # JATS ISSNs come untyped here: the first links the journal
            journal = Journal(
                title=record.journal_title, issn_linking=record.issns[0] if record.issns else None
            )
        facts = journal_facts(journal)
        key = journal_key(journal) if journal is not None else None
        if key is None or key == states[article_id].journal_key:
            journal = None
        targets[article_id] = (journal, origin, facts)
    return targets


def _diff(
    state: _State,
    result: Merged,
    journal: tuple[Journal | None, Provenance | None, str | None],
    journal_ids: Mapping[str, int],
    writes: _Writes,
    history: bool,
) -> None:
    """Gather what differs between the article and its merge."""
    article_id = state.article_id
    changes: list[tuple[str, Any, Any, str]] = []  # field, old, new, source
    for name, value in result.values.items():
        if name in JOURNAL_FIELDS:
            continue
        old = state.values.get(name)
        if old == value:
            continue
        source = result.provenance[name].source
        changes.append((name, old, value, source))
        if name in _TABLE_FIELDS:
            _replace_children(article_id, name, value, writes)
        elif name == "license":
            writes.columns[article_id].update(license_url=value.get("url"), license_type=value.get("type"))
        elif name == "pub_date":
            writes.columns[article_id].update(_pub_date_columns(value))
        else:
            writes.columns[article_id][name] = value

    target, origin, facts = journal
    if facts is not None and facts != state.row["journal_facts"]:
        writes.columns[article_id]["journal_facts"] = facts
    provenance = dict(result.provenance)
    if origin is not None:
        for name in JOURNAL_FIELDS:
            if name in provenance:
                provenance[name] = origin
    if target is not None and origin is not None:
        key = journal_key(target)
        assert key is not None
        writes.columns[article_id]["journal_id"] = journal_ids[key]
        changes.append(("journal", state.journal_key, key, origin.source))

    new_retractions = [dict(r) for r in result.retraction_sources]
    if new_retractions != state.retractions:
        old_set = {json.dumps(r, sort_keys=True) for r in state.retractions}
        new_set = {json.dumps(r, sort_keys=True) for r in new_retractions}
        sources = sorted({json.loads(r)["source"] for r in old_set ^ new_set}) or [PUBMED]
        changes.append(("retraction_sources", state.retractions, new_retractions, ",".join(sources)))
        writes.replaced["retraction_sources"].add(article_id)
        positions: dict[str, int] = defaultdict(int)
        for r in new_retractions:
            source = str(r["source"])
            positions[source] += 1
            writes.children["retraction_sources"].append(
                {"article_id": article_id, "position": positions[source], **r}
            )
        if bool(state.row["retracted"]) != result.retracted:
            writes.columns[article_id]["retracted"] = result.retracted
            changes.append(("retracted", bool(state.row["retracted"]), result.retracted, ",".join(sources)))

    wanted = {name: p for name, p in provenance.items() if p.source != PUBMED}
    for name in state.provenance_rows.keys() - wanted.keys():
        writes.provenance_deleted.append({"b_article_id": article_id, "b_field": name})
    for name, p in wanted.items():
        if state.provenance_rows.get(name) != p:
            writes.provenance_upserted.append(
                {
                    "article_id": article_id,
                    "field": name,
                    "source": p.source,
                    "source_id": p.source_id,
                    "fetched_at": p.fetched_at,
                }
            )

    found = {(d.field, d.source, d.value, d.other_source, d.other_value) for d in result.disagreements}
    for name, source, _value, other_source, _other in state.disagreements - found:
        writes.disagreements_deleted.append(
            {"b_article_id": article_id, "b_field": name, "b_source": source, "b_other_source": other_source}
        )
    for name, source, value, other_source, other_value in found - state.disagreements:
        writes.disagreements_added.append(
            {
                "article_id": article_id,
                "field": name,
                "source": source,
                "value": value,
                "other_source": other_source,
                "other_value": other_value,
            }
        )

    if history:
        writes.history.extend(
            {"article_id": article_id, "field": name, "old": old, "new": new, "source": source}
            for name, old, new, source in changes
        )
    if (
        changes
        or writes.columns.get(article_id)
        or wanted.keys() != state.provenance_rows.keys()
        or any(state.provenance_rows.get(n) != p for n, p in wanted.items())
        or found != state.disagreements
    ):
        writes.touched.add(article_id)


def _pub_date_columns(iso: str) -> dict[str, Any]:
    parts = [int(p) for p in iso.split("-")[:3] if p.isdigit()]
    parts += [None] * (3 - len(parts))  # type: ignore[list-item]
    return {"pub_date": iso, "pub_year": parts[0], "pub_month": parts[1], "pub_day": parts[2]}


def _replace_children(article_id: int, name: str, value: Any, writes: _Writes) -> None:
    for table in _TABLE_FIELDS[name]:
        writes.replaced[table].add(article_id)
    rows = writes.children
    for position, item in enumerate(value, 1):
        if name == "authors":
            rows["authors"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{
                        key: item.get(key)
                        for key in (
                            "last_name",
                            "fore_name",
                            "initials",
                            "suffix",
                            "collective_name",
                            "orcid",
                        )
                    },
                    "valid": bool(item.get("valid", True)),
                    "equal_contrib": bool(item.get("equal_contrib", False)),
                }
            )
            rows["author_affiliations"].extend(
                {"article_id": article_id, "author_position": position, "position": n, "affiliation": aff}
                for n, aff in enumerate(item.get("affiliations") or (), 1)
            )
        elif name == "keywords":
            rows["keywords"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    "owner": item.get("owner"),
                    "keyword": item["keyword"],
                    "major": bool(item.get("major", False)),
                }
            )
        elif name == "subjects":
            rows["article_subjects"].append({"article_id": article_id, "position": position, "subject": item})
        elif name == "licenses":
            rows["article_licenses"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{key: item.get(key) for key in ("url", "license_type", "text", "start_date")},
                }
            )
        elif name == "funders":
            rows["article_funders"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    "name": item.get("name"),
                    "funder_doi": item.get("doi"),
                }
            )
            rows["funder_awards"].extend(
                {"article_id": article_id, "funder_position": position, "position": n, "award_id": award}
                for n, award in enumerate(item.get("awards") or (), 1)
            )
        elif name == "updates":
            rows["article_updates"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{
                        key: item.get(key)
                        for key in ("kind", "direction", "doi", "asserted_by", "update_date", "label")
                    },
                }
            )
        elif name == "clinical_trials":
            rows["article_clinical_trials"].append(
                {"article_id": article_id, "position": position, "number": item}
            )


# Child tables in insertion order (a referenced table before the table that references it).
_INSERT_ORDER = (
    "authors",
    "author_affiliations",
    "keywords",
    "article_subjects",
    "article_licenses",
    "article_funders",
    "funder_awards",
    "article_updates",
    "article_clinical_trials",
    "retraction_sources",
)


def _apply(conn: Connection, writes: _Writes, *, now: datetime, run_id: int | None) -> None:
    """Write the gathered differences: one statement per table (per column set for article updates)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for article_id in sorted(writes.touched):
        columns = writes.columns.get(article_id, {})
        by_columns[tuple(sorted(columns))].append({"b_id": article_id, **columns, "updated_at": now})
    for rows in by_columns.values():
        conn.execute(sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")), rows)
    for table_name in reversed(_INSERT_ORDER):
        table = _T[table_name]
        for chunk in chunks(sorted(writes.replaced.get(table_name, ()))):
            conn.execute(sa.delete(table).where(table.c.article_id.in_(chunk)))
    for table_name in _INSERT_ORDER:
        if writes.children.get(table_name):
            conn.execute(sa.insert(_T[table_name]), writes.children[table_name])
    prov, dis = PROVENANCE, DISAGREEMENTS
    if writes.provenance_deleted:
        conn.execute(
            sa.delete(prov).where(
                prov.c.article_id == sa.bindparam("b_article_id"), prov.c.field == sa.bindparam("b_field")
            ),
            writes.provenance_deleted,
        )
    if writes.provenance_upserted:
        upsert = dialect_insert(conn, prov)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[prov.c.article_id, prov.c.field],
                set_={name: upsert.excluded[name] for name in ("source", "source_id", "fetched_at")},
            ),
            writes.provenance_upserted,
        )
    if writes.disagreements_deleted:
        conn.execute(
            sa.delete(dis).where(
                dis.c.article_id == sa.bindparam("b_article_id"),
                dis.c.field == sa.bindparam("b_field"),
                dis.c.source == sa.bindparam("b_source"),
                dis.c.other_source == sa.bindparam("b_other_source"),
            ),
            writes.disagreements_deleted,
        )
    if writes.disagreements_added:
        conn.execute(sa.insert(dis), [{**row, "detected_at": now} for row in writes.disagreements_added])
    if writes.history:
        conn.execute(
            sa.insert(HISTORY),
            [
                history_row(
                    h["article_id"], h["field"], h["old"], h["new"], h["source"], now=now, run_id=run_id
                )
                for h in writes.history
            ],
        )


def _creation(state: _State) -> dict[str, Any]:
    """The history row of an article's creation: field "created", new value its identifiers."""
    ids = {key: state.row.get(key) for key in ("pmid", "pmcid", "doi") if state.row.get(key)}
    source = "pubmed" if "pubmed" in state.sources else next(iter(state.sources), "unknown")
    return {"article_id": state.article_id, "field": "created", "old": None, "new": ids, "source": source}


def read_provenance(conn: Connection, article_ids: Sequence[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Provenance of every stored field of these articles: {"source", "source_id", "fetched_at"} (ISO).

    Applies the rule of this module: a value without a field_provenance row came from the article's
    current PubMed record. Journal fields are given when the article has a journal.
    """
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for article_id, state in _load_states(conn, article_ids, payloads=False).items():
        found[article_id] = {
            name: {"source": p.source, "source_id": p.source_id, "fetched_at": p.fetched_at.isoformat()}
            for name in state.values
            for p in (state.provenance(name),)
        }
    return found

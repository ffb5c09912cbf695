"""Reconciliation: a batch of PMC or Crossref records matched to stored articles, kept, and merged in.

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
   ``crossref_status`` set to "found" (a status change is an article_history row).
4. Merge (:mod:`db.remerge`). The article is merged again from the current payload of each of its
   sources, parsed from raw_payloads, so a merge never fetches; a source that omits a field never erases
   it.
5. Write the differences only (:mod:`db.article_writes`). Merging the same inputs again writes nothing.

:func:`reconcile_articles` runs steps 4 and 5 for articles whose PubMed record changed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.conflicts import ConflictInfo, record_conflicts, resolve_matched_conflicts
from db.engine import begin_write, storage_error
from db.history import history_row
from db.inserts import chunks
from db.matching import IncomingRecord, choose_targets, match_claims, read_decisions, read_pmids
from db.models import metadata
from db.payloads import (
    current_source_records,
    drop_source_records,
    keep_payloads,
    record_aliases,
    repoint_source_records,
)
from db.remerge import remerge
from enrich.merge import DEFAULT_POLICY
from enrich.payloads import CROSSREF, PMC
from enrich.records import CrossrefWork, PmcFront
from harvester.core.ids import doi_or_none, pmcid_or_none

STATUS_COLUMNS = {PMC: "pmc_status", CROSSREF: "crossref_status"}
FOUND, NOT_FOUND = "found", "not_found"

ARTICLES = metadata.tables["articles"]
HISTORY = metadata.tables["article_history"]


@dataclass(frozen=True, slots=True)
class EnrichResult:
    """Article ids by what happened to them (each once, in the batch's order) and source ids set apart."""

    created: tuple[int, ...]
    updated: tuple[int, ...]
    unchanged: tuple[int, ...]
    not_found: tuple[str, ...]
    conflicts: tuple[ConflictInfo, ...]
    unmatched: tuple[str, ...]  # source ids that match no stored article (and were not created)


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
            written, conflicts = remerge(
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
    written, conflicts = remerge(
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

"""Idempotent bulk writes of parsed PubMed articles, one transaction per batch.

The SHA-256 of each record's raw XML decides what happens to it:

- new PMID: the article, its child rows, its raw payload and its source record are inserted;
- same PMID, the pubmed source record already points at a payload with that hash: nothing is written,
  not even a timestamp, so re-running a file costs two SELECTs per batch (the second finds the PMIDs
  whose conflict is still open, to report them again);
- same PMID, another hash: the article row is updated, its child rows are replaced (delete + insert), the
  new payload is added beside the old ones (which stay, for re-parsing) and the source record repointed.

Rules worth knowing:

- Within one batch a PMID that occurs twice keeps the record with the highest ``pmid_version``, and of
  equal versions the last one. A record whose version is lower than the stored one is not written and
  counts as unchanged (an old baseline file replayed after newer update files must not undo them).
- The PMID is PubMed's key: two records with different PMIDs are two articles, whatever DOI or PMCID
  they share (the versions of a Cochrane review share one DOI). Each article holds its own record's DOI
  and PMCID in ``articles.doi`` / ``articles.pmcid``, which are not unique (view
  report_shared_identifiers lists the shared ones). Sharing is never a conflict.
- A new PMID whose DOI or PMCID is held by an article not in PubMed (stored from Crossref alone) becomes
  that article's PubMed record: one article, not two. Of several new records in one batch naming the
  same such article, the lowest PMID takes it; the others are new articles sharing the identifier.
- A conflict is real ambiguity only: a new record whose DOI and PMCID name two different articles not in
  PubMed, which it would merge into one. It is stored as a new article of its own (nothing lost), its
  PMID reported in :attr:`StoreResult.conflicts`, logged, and recorded in the conflicts table (source
  "pubmed", all the articles named), once; it is reported again while the conflict is open
  (``harvest conflicts resolve`` settles it).
- A deleted article (DeleteCitation) whose record comes back changed is stored and no longer deleted.
  Byte for byte the record stored, it revives the article only with ``revive_deleted`` (PubMed sending
  it now means it is in PubMed again; a file that may predate the deletion says nothing): that takes the
  changed path, with an article_history row for ``deleted``. A record of a lower version never does.

On the changed path only (never for new or unchanged records):

- every tracked column (:data:`HISTORY_COLUMNS`, and the journal by its key) that changes gets an
  article_history row (source "pubmed", the caller's ``run_id``);
- a None in the new record never replaces a stored value: the stored one stays;
- a field whose stored value came from another source (a field_provenance row names PMC or Crossref) is
  left as it is, authors and keywords included; :func:`db.reconcile.reconcile_articles` decides those by
  the merge policy, and :attr:`StoreResult.enriched_changed` names the articles it should be run for.

Provenance: the store writes no field_provenance rows. A stored value without a row came from the
article's current PubMed record (see db.article_state). Retraction statements of the record go to
retraction_sources (source "pubmed"); ``retracted`` is true when any source's statement is there.

Writes are Core executemany statements per table per batch (:mod:`db.inserts`). A batch is parsed records
(:class:`~harvester.core.records.Article`) or the rows made of them beforehand
(:class:`~db.pubmed_rows.StoreRows`, as ``harvest ingest``'s reading process sends them), or both; the
store works on the rows. Journals come from :mod:`db.journals`, payloads are kept by :mod:`db.payloads`.

Several writers at once (PostgreSQL: the workers of the ingest queue): a batch takes key locks on the
ranges of PMIDs it holds (:data:`PMID_RANGE`, :func:`db.engine.begin_keyed_write`), so batches of other
files are stored beside it and a batch of the same PMIDs waits. What a batch writes outside its PMIDs is
safe side by side: journals are inserted with ON CONFLICT and filled in a fixed order, payloads and
source records belong to its articles. Adopting an article without a PMID (stored from Crossref alone)
is not: a batch that finds one is planned again as the only writer (:func:`db.engine.begin_write`), as is
a batch of scattered PMIDs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_keyed_write, begin_read, begin_write, storage_error
from db.history import history_row
from db.inserts import chunks, dialect_insert, insert_returning, insert_tuples
from db.journals import journal_key, resolve_journals
from db.models import metadata
from db.payloads import compress_payload, insert_payloads, stored_payload_ids
from db.pubmed_rows import CHILD_COLUMNS, CHILD_TABLES, RECORD_COLUMNS, StoreRows, store_rows
from harvester.core.errors import StorageError
from harvester.core.records import Article, RejectedRecord

logger = logging.getLogger(__name__)

SOURCE = "pubmed"
# Concurrent writers (PostgreSQL): a batch locks the ranges of PMIDs it holds, PMID_RANGE wide. NLM's
# baseline files hold ascending PMIDs, about 30,000 a file, so a batch of one file locks one range or two
# and workers on other files never wait for it; a batch of PMIDs spread over more than MAX_KEYED_RANGES
# ranges (an update file, an efetch batch) takes the writers' lock whole.
PMID_RANGE = 10_000
MAX_KEYED_RANGES = 32

_T = metadata.tables
ARTICLES = _T["articles"]
JOURNALS = _T["journals"]
RAW_PAYLOADS = _T["raw_payloads"]
SOURCE_RECORDS = _T["source_records"]
HISTORY = _T["article_history"]
CONFLICTS = _T["conflicts"]
PROVENANCE = _T["field_provenance"]
RETRACTIONS = _T["retraction_sources"]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """PMIDs by what happened to them, each once, in the order the batch first named them."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    # Stored (or unchanged, with a conflict recorded earlier and still open), but their DOI and PMCID
    # name two different articles not in PubMed.
    conflicts: tuple[str, ...] = ()
    # Ids of written articles that also have PMC or Crossref records: merge them again (reconcile_articles).
    enriched_changed: tuple[int, ...] = ()


# What a batch may hold: parsed records, or the rows made of them beforehand.
Storable = Article | StoreRows


@dataclass(slots=True)
class _Incoming:
    rows: StoreRows
    article_id: int | None = None  # known for a changed article, assigned on insert for a new one
    doi: str | None = None  # what goes into the articles columns (see _assign_ids)
    pmcid: str | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    article_id: int
    pmid_version: int | None
    sha256: str | None
    doi: str | None
    pmcid: str | None
    deleted: bool = False


@dataclass(slots=True)
class _Plan:
    new: list[_Incoming] = field(default_factory=list)
    changed: list[tuple[_Stored, _Incoming]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    enriched: list[int] = field(default_factory=list)  # changed articles that have other sources too
    # New records whose DOI and PMCID name two articles without a PMID: (record, (id_type, value, article))
    ambiguous: list[tuple[_Incoming, tuple[tuple[str, str, int], ...]]] = field(default_factory=list)


def store_articles(
    engine: Engine,
    articles: Sequence[Storable],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None = None,
    revive_deleted: bool = True,
) -> StoreResult:
    """Store a batch of parsed articles in one transaction: all of it or, on failure, none of it.

    Args:
        engine: from :func:`db.engine.open_database`.
        articles: parsed records, each with ``raw_xml`` (its own XML fragment), or their
            :func:`db.pubmed_rows.store_rows`.
        url: where the records were fetched, already redacted; kept with the raw payloads.
        fetched_at: when they were fetched (timezone-aware).
        run_id: the harvest_runs row that history and conflict rows are recorded under.
        revive_deleted: a deleted article whose record comes again byte for byte is live again. True
            for records PubMed sends now (efetch, an update file in NLM's order); False for records that
            may predate the deletion (a file that cannot be placed in NLM's sequence, or was forced).

    Raises:
        StorageError: the database could not be written; nothing of the batch was stored.
        ValueError: a record has no ``raw_xml``, or ``fetched_at`` is naive.
    """
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    incoming = _latest_per_pmid(articles)
    order = list(dict.fromkeys(a.pmid for a in articles))
    if not incoming:
        return StoreResult((), (), ())
    ranges = {int(pmid) // PMID_RANGE for pmid in incoming}
    whole = len(ranges) > MAX_KEYED_RANGES  # scattered PMIDs (an update file, an efetch batch): one writer
    try:
        while True:
            try:
                with begin_write(engine) if whole else begin_keyed_write(engine, ranges) as conn:
                    plan = _plan(conn, incoming, revive_deleted, keyed=not whole)
                    if plan.new or plan.changed:
                        now = datetime.now(UTC)
                        _write(conn, plan, url=url, fetched_at=fetched_at, now=now, run_id=run_id)
                    reported = set(plan.conflicts)
                    again = [*plan.unchanged, *(inc.rows.pmid for _, inc in plan.changed)]
                    if again:  # reported while open, whether the record changed or not
                        plan.conflicts.extend(p for p in _open_conflicts(conn, again) if p not in reported)
                break
            except _NeedsWholeLock:
                whole = True  # planned under key locks only: nothing was written; again, alone
    except DBAPIError as exc:
        raise storage_error(exc, "cannot store articles in", engine) from exc
    created = {inc.rows.pmid for inc in plan.new}
    updated = {inc.rows.pmid for _, inc in plan.changed}
    unchanged = set(plan.unchanged)
    conflicts = set(plan.conflicts)
    return StoreResult(
        created=tuple(p for p in order if p in created),
        updated=tuple(p for p in order if p in updated),
        unchanged=tuple(p for p in order if p in unchanged),
        conflicts=tuple(p for p in order if p in conflicts),
        enriched_changed=tuple(dict.fromkeys(plan.enriched)),
    )


def store_articles_isolated(
    engine: Engine,
    articles: Sequence[Storable],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None = None,
    revive_deleted: bool = True,
) -> tuple[StoreResult, list[RejectedRecord]]:
    """:func:`store_articles`, except that one record whose values the database refuses does not cost
    the others: when the batch fails that way, each record is stored alone (the normal path stays one
    transaction a batch) and the ones that fail again come back as rejected, with the database's reason.

    Raises:
        StorageError: the database itself failed (cannot be opened or written, locked, full): nothing of
            the batch was stored, as with :func:`store_articles`.
        ValueError: as :func:`store_articles`.
    """
    try:
        return store_articles(
            engine, articles, url=url, fetched_at=fetched_at, run_id=run_id, revive_deleted=revive_deleted
        ), []
    except (StorageError, OverflowError) as exc:
        if not _is_record_problem(exc):
            raise
        logger.warning("a batch of %d records was refused (%s); storing them one by one", len(articles), exc)
    results: list[StoreResult] = []
    rejected: list[RejectedRecord] = []
    for article in articles:
        try:
            results.append(
                store_articles(
                    engine,
                    [article],
                    url=url,
                    fetched_at=fetched_at,
                    run_id=run_id,
                    revive_deleted=revive_deleted,
                )
            )
        except (StorageError, OverflowError) as exc:
            if not _is_record_problem(exc):
                raise
            reason = exc.message if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
            raw = article.raw if isinstance(article, StoreRows) else article.raw_xml
            rejected.append(RejectedRecord(article.pmid, f"cannot be stored: {reason}", raw or b""))
    return _combined(results), rejected


def _is_record_problem(exc: BaseException) -> bool:
    """Whether a failed store was refused for a value of the records (not for the database's state)."""
    if isinstance(exc, OverflowError):  # sqlite3: an integer past 64 bits
        return True
    cause = exc.__cause__
    return isinstance(cause, sa.exc.DataError | sa.exc.IntegrityError)


def _combined(results: Sequence[StoreResult]) -> StoreResult:
    def joined(name: str) -> tuple[Any, ...]:
        return tuple(dict.fromkeys(item for result in results for item in getattr(result, name)))

    return StoreResult(
        joined("created"),
        joined("updated"),
        joined("unchanged"),
        joined("conflicts"),
        joined("enriched_changed"),
    )


def unchanged_pmids(
    engine: Engine, records: Mapping[str, tuple[int, str]], *, revive_deleted: bool = True
) -> tuple[set[str], set[str]]:
    """Of these PMIDs, each with (version, sha256 of its raw XML), those :func:`store_articles` would leave
    unchanged (given the same ``revive_deleted``), and of those the ones it would report as conflicts: a
    bulk load need not even parse them.

    Raises:
        StorageError: the database could not be read.
    """
    if not records:
        return set(), set()
    try:
        with begin_read(engine) as conn:
            stored = _stored_articles(conn, list(records))
            same = [
                pmid
                for pmid, (version, sha) in records.items()
                if (old := stored.get(pmid)) is not None
                and _leaves_unchanged(old, sha, version, revive_deleted)
            ]
            conflicted = set(_open_conflicts(conn, same)) if same else set()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc
    return set(same), conflicted


def mark_deleted(engine: Engine, pmids: Sequence[str], *, at: datetime) -> int:
    """Mark the articles of these PMIDs deleted (DeleteCitation); returns how many were not already.

    The rows and their raw payloads stay: a deletion is a fact about the article, and exports leave
    deleted articles out unless asked. ``at`` becomes the article's ``updated_at``.

    Raises:
        StorageError: the database could not be written.
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    wanted = list(dict.fromkeys(pmids))
    changed = 0
    try:
        with begin_write(engine) as conn:
            for chunk in chunks(wanted):
                result = conn.execute(
                    sa.update(ARTICLES)
                    .where(ARTICLES.c.pmid.in_(chunk), ARTICLES.c.deleted.is_(False))
                    .values(deleted=True, updated_at=at)
                )
                changed += result.rowcount
    except DBAPIError as exc:
        raise storage_error(exc, "cannot mark articles deleted in", engine) from exc
    return changed


def _latest_per_pmid(articles: Sequence[Storable]) -> dict[str, _Incoming]:
    latest: dict[str, _Incoming] = {}
    for article in articles:
        rows = article if isinstance(article, StoreRows) else store_rows(article)
        current = latest.get(rows.pmid)
        if current is None or rows.pmid_version >= current.rows.pmid_version:
            latest[rows.pmid] = _Incoming(rows)
    return latest


def _leaves_unchanged(old: _Stored, sha256: str, version: int, revive_deleted: bool) -> bool:
    """Whether a record (its hash and version) leaves this stored article as it is.

    An older version never overwrites a newer one; the same bytes change nothing, unless the article was
    deleted and ``revive_deleted``: PubMed sending its record again means it is in PubMed again.
    """
    if (old.pmid_version or 0) > version:
        return True
    return old.sha256 == sha256 and not (old.deleted and revive_deleted)


class _NeedsWholeLock(Exception):
    """A batch planned under key locks touches an article without a PMID: it is stored again alone."""


def _plan(conn: Connection, incoming: dict[str, _Incoming], revive_deleted: bool, *, keyed: bool) -> _Plan:
    stored = _stored_articles(conn, list(incoming))
    plan = _Plan()
    for pmid, inc in incoming.items():
        old = stored.get(pmid)
        if old is None:
            plan.new.append(inc)
        elif _leaves_unchanged(old, inc.rows.sha256, inc.rows.pmid_version, revive_deleted):
            plan.unchanged.append(pmid)
        else:
            inc.article_id = old.article_id
            plan.changed.append((old, inc))
    if plan.new:
        _adopt_articles_not_in_pubmed(conn, plan, keyed=keyed)
    return plan


def _adopt_articles_not_in_pubmed(conn: Connection, plan: _Plan, *, keyed: bool) -> None:
    """A new PMID whose DOI or PMCID an article without a PMID holds becomes that article's record.

    Such articles were stored from Crossref alone (or enriched by PMC since); one query per chunk of new
    records finds them. Of several new records that name one such article, the lowest PMID takes it and
    the others are new articles sharing the identifier. A record whose DOI and PMCID name two different
    such articles would merge them into one: it is stored as a new article of its own and a conflict is
    recorded (:attr:`_Plan.ambiguous`).
    """
    a = ARTICLES
    holders: dict[tuple[str, str], set[int]] = {}
    for chunk in chunks(plan.new):
        dois = sorted({d for inc in chunk if (d := inc.rows.doi)})
        pmcids = sorted({p for inc in chunk if (p := inc.rows.pmcid)})
        if not dois and not pmcids:
            continue
        query = sa.select(a.c.id, a.c.doi, a.c.pmcid).where(
            a.c.pmid.is_(None), sa.or_(a.c.doi.in_(dois), a.c.pmcid.in_(pmcids))
        )
        for article_id, doi, pmcid in conn.execute(query):
            if doi:
                holders.setdefault(("doi", doi), set()).add(article_id)
            if pmcid:
                holders.setdefault(("pmcid", pmcid), set()).add(article_id)
    if not holders:
        return
    if keyed:  # the holders are outside this writer's PMID ranges: adopt them only as the one writer
        raise _NeedsWholeLock
    adopted: set[int] = set()
    still_new: list[_Incoming] = []
    for inc in sorted(plan.new, key=lambda inc: int(inc.rows.pmid)):
        claims = [
            (column, value, article_id)
            for column in ("doi", "pmcid")
            if (value := getattr(inc.rows, column))
            for article_id in sorted(holders.get((column, value), ()))
        ]
        candidates = {article_id for _, _, article_id in claims}
        if len(candidates) > 1:
            plan.ambiguous.append((inc, tuple(claims)))
        if len(candidates) != 1 or (holder := next(iter(candidates))) in adopted:
            still_new.append(inc)
            continue
        adopted.add(holder)
        inc.article_id = holder
        orphan = conn.execute(sa.select(a.c.doi, a.c.pmcid).where(a.c.id == holder)).one()
        plan.changed.append((_Stored(holder, None, None, orphan.doi, orphan.pmcid), inc))
    order = {id(inc): n for n, inc in enumerate(plan.new)}
    plan.new = sorted(still_new, key=lambda inc: order[id(inc)])


def _stored_articles(conn: Connection, pmids: list[str]) -> dict[str, _Stored]:
    a, sr, p = ARTICLES, SOURCE_RECORDS, RAW_PAYLOADS
    joined = a.outerjoin(sr, sa.and_(sr.c.article_id == a.c.id, sr.c.source == SOURCE)).outerjoin(
        p, p.c.id == sr.c.payload_id
    )
    stored: dict[str, _Stored] = {}
    for chunk in chunks(pmids):
        rows = conn.execute(
            sa.select(a.c.pmid, a.c.id, a.c.pmid_version, p.c.sha256, a.c.doi, a.c.pmcid, a.c.deleted)
            .select_from(joined)
            .where(a.c.pmid.in_(chunk))
        )
        for pmid, article_id, version, sha256, doi, pmcid, deleted in rows:
            stored[pmid] = _Stored(article_id, version, sha256, doi, pmcid, bool(deleted))
    return stored


def _open_conflicts(conn: Connection, pmids: list[str]) -> list[str]:
    """Of these PMIDs, those with an open conflict recorded by this store."""
    c = CONFLICTS
    found: list[str] = []
    for chunk in chunks(pmids):
        query = (
            sa.select(c.c.source_id)
            .where(c.c.source == SOURCE, c.c.status == "open", c.c.source_id.in_(chunk))
            .distinct()
        )
        found.extend(conn.execute(query).scalars())
    return found


def _write(
    conn: Connection,
    plan: _Plan,
    *,
    url: str | None,
    fetched_at: datetime,
    now: datetime,
    run_id: int | None,
) -> None:
    writes = [*plan.new, *(inc for _, inc in plan.changed)]
    payload_ids = stored_payload_ids(conn, SOURCE, [inc.rows.sha256 for inc in writes])
    unseen = [
        rows
        for rows in {inc.rows.sha256: inc.rows for inc in writes}.values()
        if rows.sha256 not in payload_ids
    ]
    # Payloads are compressed on a second thread while the rows are written (ISA-L releases the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compress") as pool:
        compressed = pool.submit(lambda: [compress_payload(rows.raw) for rows in unseen])
        _write_articles(conn, plan, writes, now=now, run_id=run_id)
        payload_ids.update(
            insert_payloads(
                conn,
                SOURCE,
                [
                    (rows.pmid, rows.sha256, content, len(rows.raw))
                    for rows, content in zip(unseen, compressed.result(), strict=True)
                ],
                url=url,
                fetched_at=fetched_at,
            )
        )

    sr = SOURCE_RECORDS
    upsert = dialect_insert(conn, sr)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[sr.c.source, sr.c.source_id, sr.c.article_id],
            set_={
                "article_id": upsert.excluded.article_id,
                "payload_id": upsert.excluded.payload_id,
                "fetched_at": upsert.excluded.fetched_at,
            },
        ),
        [
            {
                "article_id": inc.article_id,
                "source": SOURCE,
                "source_id": inc.rows.pmid,
                "payload_id": payload_ids[inc.rows.sha256],
                "fetched_at": fetched_at,
            }
            for inc in writes
        ],
    )


# Columns whose changes the store records in article_history (the journal too, by its key).
HISTORY_COLUMNS: tuple[str, ...] = (
    "pmid",
    "pmid_version",
    "record_type",
    "title",
    "vernacular_title",
    "abstract",
    "abstract_copyright",
    "volume",
    "issue",
    "pages",
    "pub_date",
    "pub_season",
    "pub_date_raw",
    "epub_date",
    "doi",
    "pmcid",
    "medline_status",
    "publication_status",
    "date_completed",
    "date_revised",
    "coi_statement",
    "book_title",
    "publisher",
    "references_count",
    "retracted",
    "in_pubmed",
    "deleted",
)
_PUB_DATE = ("pub_date", "pub_year", "pub_month", "pub_day")
# Merged fields (enrich.merge.FIELDS) and the columns of them this store writes: where a field's value came
# from another source, these columns are left as they are.
_FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "abstract": ("abstract",),
    "volume": ("volume",),
    "issue": ("issue",),
    "pages": ("pages",),
    "pub_date": _PUB_DATE,
    "epub_date": ("epub_date",),
    "publisher": ("publisher",),
    "references_count": ("references_count",),
    "journal_title": ("journal_id", "journal_facts"),
    "journal_iso_abbrev": ("journal_id", "journal_facts"),
    "issn": ("journal_id", "journal_facts"),
}
# Child tables of fields another source may supply: left as they are when it did.
_FIELD_TABLES: dict[str, tuple[str, ...]] = {
    "authors": ("authors", "author_affiliations"),
    "keywords": ("keywords",),
}


@dataclass(slots=True)
class _Before:
    """What the changed articles hold now, read in one query per table per chunk."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # the columns _article_values writes
    journal_keys: dict[int, str | None] = field(default_factory=dict)
    foreign: dict[int, set[str]] = field(default_factory=dict)  # fields another source supplied
    enriched: set[int] = field(default_factory=set)  # articles with PMC or Crossref records
    retracted_elsewhere: set[int] = field(default_factory=set)  # another source says retracted

    def kept_tables(self) -> dict[str, set[int]]:
        """Child table -> articles whose rows of it stay, because another source supplied them."""
        kept: dict[str, set[int]] = {}
        for article_id, fields in self.foreign.items():
            for name in fields:
                for table in _FIELD_TABLES.get(name, ()):
                    kept.setdefault(table, set()).add(article_id)
        return kept


def _load_before(conn: Connection, ids: list[int]) -> _Before:
    a, j, prov, sr, rs = ARTICLES, JOURNALS, PROVENANCE, SOURCE_RECORDS, RETRACTIONS
    before = _Before()
    columns = [a.c[name] for name in _VALUE_COLUMNS]
    for chunk in chunks(ids):
        query = (
            sa.select(a.c.id, j.c.journal_key, *columns)
            .select_from(a.outerjoin(j, j.c.id == a.c.journal_id))
            .where(a.c.id.in_(chunk))
        )
        for row in conn.execute(query):
            before.rows[row.id] = {name: row._mapping[name] for name in _VALUE_COLUMNS}
            before.journal_keys[row.id] = row.journal_key
        query = sa.select(prov.c.article_id, prov.c.field).where(
            prov.c.article_id.in_(chunk), prov.c.source != SOURCE
        )
        for article_id, name in conn.execute(query):
            before.foreign.setdefault(article_id, set()).add(name)
        query = sa.select(sr.c.article_id).where(sr.c.article_id.in_(chunk), sr.c.source != SOURCE).distinct()
        before.enriched.update(conn.execute(query).scalars())
        query = sa.select(rs.c.article_id).where(rs.c.article_id.in_(chunk), rs.c.source != SOURCE).distinct()
        before.retracted_elsewhere.update(conn.execute(query).scalars())
    return before


def _kept_values(new: dict[str, Any], old: dict[str, Any], foreign: set[str]) -> dict[str, Any]:
    """The values to write over ``old``: another source's fields stay, and a None never erases a value.

    DOI and PMCID were decided by _assign_ids already.
    """
    final = dict(new)
    for name in foreign:
        for column in _FIELD_COLUMNS.get(name, ()):
            final[column] = old[column]
    if final["pub_date"] is None and old["pub_date"] is not None:
        for column in _PUB_DATE:
            final[column] = old[column]
    for column in _NEVER_ERASED:
        if final[column] is None and old[column] is not None:
            if column in {"pub_season", "pub_date_raw"} and new["pub_date"] is not None:
                continue  # they describe the record's new date, which may have no season or words
            final[column] = old[column]
    return final


def _write_articles(
    conn: Connection, plan: _Plan, writes: list[_Incoming], *, now: datetime, run_id: int | None
) -> None:
    journal_ids = resolve_journals(conn, [inc.rows.journal for inc in writes])
    changed_ids = [old.article_id for old, _ in plan.changed]
    before = _load_before(conn, changed_ids) if changed_ids else _Before()
    _assign_ids(plan, before.foreign)

    def values(inc: _Incoming) -> dict[str, Any]:
        return _article_values(inc, journal_ids.get(journal_key(inc.rows.journal) or ""))

    kept_tables = before.kept_tables()
    if plan.changed:
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for old, inc in plan.changed:
            article_id = old.article_id
            stored = before.rows[article_id]
            new = values(inc)
            new["retracted"] = new["retracted"] or article_id in before.retracted_elsewhere
            final = _kept_values(new, stored, before.foreign.get(article_id, set()))
            changes = [
                (name, stored[name], final[name]) for name in HISTORY_COLUMNS if stored[name] != final[name]
            ]
            if stored["journal_id"] != final["journal_id"]:
                new_key = journal_key(inc.rows.journal)
                changes.append(("journal", before.journal_keys[article_id], new_key))
            history.extend(
                history_row(article_id, name, old_value, new_value, SOURCE, now=now, run_id=run_id)
                for name, old_value, new_value in changes
            )
            updates.append({"b_id": article_id, **final, "updated_at": now})
        conn.execute(sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")), updates)
        if history:
            conn.execute(sa.insert(HISTORY), history)
        for table in reversed(CHILD_TABLES):
            kept = kept_tables.get(table.name, set())
            for chunk in chunks([i for i in changed_ids if i not in kept]):
                query = sa.delete(table).where(table.c.article_id.in_(chunk))
                if table.name == "article_identifiers":  # ids other sources gave (Crossref aliases) stay
                    query = query.where(~table.c.id_type.like("crossref:%"))
                conn.execute(query)
        rs = RETRACTIONS
        for chunk in chunks(changed_ids):
            conn.execute(sa.delete(rs).where(rs.c.source == SOURCE, rs.c.article_id.in_(chunk)))
        plan.enriched.extend(i for i in changed_ids if i in before.enriched)
    if plan.new:
        rows = insert_returning(
            conn,
            ARTICLES,
            [{**values(inc), "created_at": now, "updated_at": now} for inc in plan.new],
            ("pmid", "id"),
        )
        # The natural key comes back with the id, so the mapping holds whatever order rows return in.
        new_ids: dict[str, int] = {pmid: article_id for pmid, article_id in rows}
        for inc in plan.new:
            inc.article_id = new_ids[inc.rows.pmid]
        # History's first row of an article: its creation, with the identifiers it came with.
        conn.execute(
            sa.insert(HISTORY),
            [
                history_row(
                    new_ids[inc.rows.pmid],
                    "created",
                    None,
                    {k: v for k, v in (("pmid", inc.rows.pmid), ("pmcid", inc.pmcid), ("doi", inc.doi)) if v},
                    SOURCE,
                    now=now,
                    run_id=run_id,
                )
                for inc in plan.new
            ],
        )

    children: list[list[tuple[Any, ...]]] = [[] for _ in CHILD_TABLES]
    for inc in writes:
        assert inc.article_id is not None
        with_id = (inc.article_id,).__add__  # the article id in front of each row, in C
        for rows_of_table, own in zip(children, inc.rows.children, strict=True):
            if own:
                rows_of_table.extend(map(with_id, own))
    for table, rows_of_table in zip(CHILD_TABLES, children, strict=True):
        if table.name in kept_tables:
            kept = kept_tables[table.name]
            rows_of_table = [row for row in rows_of_table if row[0] not in kept]
        if rows_of_table:
            insert_tuples(conn, table, rows_of_table, CHILD_COLUMNS[table.name])
    retractions = [
        {"article_id": inc.article_id, "source": SOURCE, "position": position, **statement}
        for inc in writes
        for position, statement in enumerate(inc.rows.retractions, 1)
    ]
    if retractions:
        conn.execute(sa.insert(RETRACTIONS), retractions)
    if plan.ambiguous:
        _record_ambiguous(conn, plan.ambiguous, now=now, run_id=run_id)
        plan.conflicts.extend(inc.rows.pmid for inc, _ in plan.ambiguous)


def _article_values(inc: _Incoming, journal_id: int | None) -> dict[str, Any]:
    rows = inc.rows
    values = dict(zip(RECORD_COLUMNS, rows.values, strict=True))
    values.update(
        pmcid=inc.pmcid,
        doi=inc.doi,
        journal_id=journal_id,
        retracted=bool(rows.retractions),
        in_pubmed=True,
        deleted=False,
        content_sha256=rows.sha256,
    )
    return values


# The article columns _article_values writes, in its order: the record's own, then those the store decides.
_VALUE_COLUMNS: tuple[str, ...] = (
    *RECORD_COLUMNS,
    "pmcid",
    "doi",
    "journal_id",
    "retracted",
    "in_pubmed",
    "deleted",
    "content_sha256",
)
# Columns a None in a changed record leaves as they are (the publication date as a whole, DOI and PMCID
# are handled on their own).
_NEVER_ERASED: tuple[str, ...] = tuple(
    name
    for name in _VALUE_COLUMNS
    if name not in {"pmid", "pmid_version", "doi", "pmcid", *_PUB_DATE, "retracted", "in_pubmed", "deleted"}
    and name != "content_sha256"
)


def _assign_ids(plan: _Plan, foreign: dict[int, set[str]]) -> None:
    """The DOI and PMCID each written article holds: its own record's.

    Other articles may hold the same values (two PMIDs are two articles, whatever they share). A changed
    record that names no value, or whose value came from another source, keeps the stored one.
    """
    for column in ("doi", "pmcid"):
        for old, inc in plan.changed:
            value = getattr(inc.rows, column)
            if value is None or column in foreign.get(old.article_id, ()):
                value = getattr(old, column)
            setattr(inc, column, value)
        for inc in plan.new:
            setattr(inc, column, getattr(inc.rows, column))


def _record_ambiguous(
    conn: Connection,
    ambiguous: list[tuple[_Incoming, tuple[tuple[str, str, int], ...]]],
    *,
    now: datetime,
    run_id: int | None,
) -> None:
    """One conflicts row per record and set of articles; a row already there is left as it is."""
    rows = []
    for inc, found in ambiguous:
        own = inc.article_id
        assert own is not None
        claims = [{"id_type": "pmid", "value": inc.rows.pmid, "article_id": own}]
        claims += [{"id_type": t, "value": v, "article_id": a} for t, v, a in found]
        rows.append(
            {
                "source": SOURCE,
                "source_id": inc.rows.pmid,
                "claims": json.dumps(claims, ensure_ascii=False),
                "article_ids": ",".join(str(i) for i in sorted({own, *(a for _, _, a in found)})),
                "status": "open",
                "detected_at": now,
                "run_id": run_id,
            }
        )
    shown = ", ".join(f"PMID {inc.rows.pmid}" for inc, _ in ambiguous[:5])
    logger.warning(
        "%d record(s) name a DOI and a PMCID of two different articles not in PubMed; stored on their own"
        " and recorded as conflicts: %s%s",
        len(ambiguous),
        shown,
        f" and {len(ambiguous) - 5} more" if len(ambiguous) > 5 else "",
    )
    c = CONFLICTS
    conn.execute(
        dialect_insert(conn, c).on_conflict_do_nothing(
            index_elements=[c.c.source, c.c.source_id, c.c.article_ids]
        ),
        rows,
    )

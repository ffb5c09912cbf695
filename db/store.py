"""Idempotent bulk writes of parsed PubMed articles, one transaction per batch.

The SHA-256 of each record's raw XML decides what happens to it:

- new PMID: the article, its child rows, its raw payload and its source record are inserted;
- same PMID, the pubmed source record already points at a payload with that hash: nothing is written,
  not even a timestamp, so re-running a file costs one SELECT per batch;
- same PMID, another hash: the article row is updated, its child rows are replaced (delete + insert), the
  new payload is added beside the old ones (which stay, for re-parsing) and the source record repointed.

Rules worth knowing:

- Within one batch a PMID that occurs twice keeps the record with the highest ``pmid_version``, and of
  equal versions the last one. A record whose version is lower than the stored one is not written and
  counts as unchanged (an old baseline file replayed after newer update files must not undo them).
- ``articles.doi`` and ``articles.pmcid`` are unique. When a record brings a DOI or PMCID that another
  article already holds, the holder keeps it and the newcomer stores it only in article_identifiers; its
  PMID is reported in :attr:`StoreResult.conflicts` and logged.
- A deleted article (DeleteCitation) whose record comes back changed is stored and no longer deleted.

Writes are Core executemany statements per table per batch, never ORM objects per row: storing is
measured against the time lxml takes merely to walk the file.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_write, storage_error
from db.models import metadata
from harvester.records import Article, Journal

logger = logging.getLogger(__name__)

SOURCE = "pubmed"
CONTENT_ENCODING = "gzip"
COMPRESSION_LEVEL = 3  # on PubMed records: level 6 is ~1.7x slower for ~6% smaller payloads
IN_CHUNK = 500  # ids per IN (...) list, well under SQLite's and PostgreSQL's parameter limits

_T = metadata.tables
ARTICLES = _T["articles"]
JOURNALS = _T["journals"]
RAW_PAYLOADS = _T["raw_payloads"]
SOURCE_RECORDS = _T["source_records"]
# Child tables in insertion order (a referenced table before the table that references it).
CHILD_TABLES: tuple[sa.Table, ...] = tuple(
    _T[name]
    for name in (
        "article_identifiers",
        "authors",
        "author_affiliations",
        "abstract_sections",
        "article_dates",
        "article_languages",
        "publication_types",
        "mesh_headings",
        "mesh_qualifiers",
        "keywords",
        "chemicals",
        "grants",
        "comments_corrections",
        "article_references",
    )
)


@dataclass(frozen=True, slots=True)
class StoreResult:
    """PMIDs by what happened to them, each once, in the order the batch first named them."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    conflicts: tuple[str, ...] = ()  # stored, but their DOI or PMCID was already another article's


@dataclass(slots=True)
class _Incoming:
    article: Article
    raw: bytes
    sha256: str
    article_id: int | None = None  # known for a changed article, assigned on insert for a new one
    doi: str | None = None  # what goes into the unique articles columns after conflict resolution
    pmcid: str | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    article_id: int
    pmid_version: int | None
    sha256: str | None
    doi: str | None
    pmcid: str | None


@dataclass(slots=True)
class _Plan:
    new: list[_Incoming] = field(default_factory=list)
    changed: list[tuple[_Stored, _Incoming]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def store_articles(
    engine: Engine, articles: Sequence[Article], *, url: str | None, fetched_at: datetime
) -> StoreResult:
    """Store a batch of parsed articles in one transaction: all of it or, on failure, none of it.

    Args:
        engine: from :func:`db.engine.open_database`.
        articles: parsed records, each with ``raw_xml`` (its own XML fragment).
        url: where the records were fetched, already redacted; kept with the raw payloads.
        fetched_at: when they were fetched (timezone-aware).

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
    try:
        with begin_write(engine) as conn:
            plan = _plan(conn, incoming)
            if plan.new or plan.changed:
                _write(conn, plan, url=url, fetched_at=fetched_at, now=datetime.now(UTC))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot store articles in", engine) from exc
    created = {inc.article.pmid for inc in plan.new}
    updated = {inc.article.pmid for _, inc in plan.changed}
    unchanged = set(plan.unchanged)
    conflicts = set(plan.conflicts)
    return StoreResult(
        created=tuple(p for p in order if p in created),
        updated=tuple(p for p in order if p in updated),
        unchanged=tuple(p for p in order if p in unchanged),
        conflicts=tuple(p for p in order if p in conflicts),
    )


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
            for chunk in _chunks(wanted):
                result = conn.execute(
                    sa.update(ARTICLES)
                    .where(ARTICLES.c.pmid.in_(chunk), ARTICLES.c.deleted.is_(False))
                    .values(deleted=True, updated_at=at)
                )
                changed += result.rowcount
    except DBAPIError as exc:
        raise storage_error(exc, "cannot mark articles deleted in", engine) from exc
    return changed


def _compress(raw: bytes) -> bytes:
    """Gzip framing, so ``gzip.decompress`` and zcat read it; no timestamp, so equal input, equal output."""
    return zlib.compress(raw, COMPRESSION_LEVEL, wbits=31)


def _latest_per_pmid(articles: Sequence[Article]) -> dict[str, _Incoming]:
    latest: dict[str, _Incoming] = {}
    for article in articles:
        if article.raw_xml is None:
            raise ValueError(f"PMID {article.pmid}: the record has no raw_xml to keep; parse with raw kept")
        current = latest.get(article.pmid)
        if current is None or article.pmid_version >= current.article.pmid_version:
            raw = article.raw_xml
            latest[article.pmid] = _Incoming(article, raw, hashlib.sha256(raw).hexdigest())
    return latest


def _plan(conn: Connection, incoming: dict[str, _Incoming]) -> _Plan:
    stored = _stored_articles(conn, list(incoming))
    plan = _Plan()
    for pmid, inc in incoming.items():
        old = stored.get(pmid)
        if old is None:
            plan.new.append(inc)
        elif old.sha256 == inc.sha256 or (old.pmid_version or 0) > inc.article.pmid_version:
            plan.unchanged.append(pmid)
        else:
            inc.article_id = old.article_id
            plan.changed.append((old, inc))
    return plan


def _stored_articles(conn: Connection, pmids: list[str]) -> dict[str, _Stored]:
    a, sr, p = ARTICLES, SOURCE_RECORDS, RAW_PAYLOADS
    joined = a.outerjoin(sr, sa.and_(sr.c.article_id == a.c.id, sr.c.source == SOURCE)).outerjoin(
        p, p.c.id == sr.c.payload_id
    )
    stored: dict[str, _Stored] = {}
    for chunk in _chunks(pmids):
        rows = conn.execute(
            sa.select(a.c.pmid, a.c.id, a.c.pmid_version, p.c.sha256, a.c.doi, a.c.pmcid)
            .select_from(joined)
            .where(a.c.pmid.in_(chunk))
        )
        for pmid, *rest in rows:
            stored[pmid] = _Stored(*rest)
    return stored


def _write(conn: Connection, plan: _Plan, *, url: str | None, fetched_at: datetime, now: datetime) -> None:
    writes = [*plan.new, *(inc for _, inc in plan.changed)]
    payload_ids = _stored_payload_ids(conn, writes)
    unseen = list({inc.sha256: inc for inc in writes if inc.sha256 not in payload_ids}.values())
    # Payloads are compressed on a second thread while the rows are written (zlib releases the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compress") as pool:
        compressed = pool.submit(lambda: [_compress(inc.raw) for inc in unseen])
        _write_articles(conn, plan, writes, now=now)
        payload_ids.update(
            _insert_payloads(conn, unseen, compressed.result(), url=url, fetched_at=fetched_at)
        )

    sr = SOURCE_RECORDS
    upsert = _dialect_insert(conn, sr)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[sr.c.source, sr.c.source_id],
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
                "source_id": inc.article.pmid,
                "payload_id": payload_ids[inc.sha256],
                "fetched_at": fetched_at,
            }
            for inc in writes
        ],
    )


def _write_articles(conn: Connection, plan: _Plan, writes: list[_Incoming], *, now: datetime) -> None:
    journal_ids = _resolve_journals(conn, [inc.article.journal for inc in writes])
    plan.conflicts.extend(_assign_unique_ids(conn, plan))

    def values(inc: _Incoming) -> dict[str, Any]:
        return _article_values(inc, journal_ids.get(_journal_key(inc.article.journal) or ""))

    if plan.changed:
        # Change history hooks in here: `old` (widen _stored_articles' SELECT for more) against values(inc).
        _release_unique_ids(conn, plan.changed)
        conn.execute(
            sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")),
            [{"b_id": inc.article_id, **values(inc), "updated_at": now} for _, inc in plan.changed],
        )
        changed_ids = [old.article_id for old, _ in plan.changed]
        for table in reversed(CHILD_TABLES):
            for chunk in _chunks(changed_ids):
                conn.execute(sa.delete(table).where(table.c.article_id.in_(chunk)))
    if plan.new:
        rows = conn.execute(
            sa.insert(ARTICLES).returning(ARTICLES.c.pmid, ARTICLES.c.id),
            [{**values(inc), "created_at": now, "updated_at": now} for inc in plan.new],
        )
        # The natural key comes back with the id, so the mapping holds whatever order rows return in.
        new_ids: dict[str, int] = {pmid: article_id for pmid, article_id in rows}
        for inc in plan.new:
            inc.article_id = new_ids[inc.article.pmid]

    children = _ChildRows()
    for inc in writes:
        assert inc.article_id is not None
        children.add(inc.article_id, inc.article)
    for table in CHILD_TABLES:
        if children.rows[table.name]:
            _insert_tuples(conn, table, children.rows[table.name])


def _article_values(inc: _Incoming, journal_id: int | None) -> dict[str, Any]:
    a = inc.article
    pub = a.pub_date
    epub = a.epub_date
    main = a.abstract
    return {
        "pmid": a.pmid,
        "pmid_version": a.pmid_version,
        "pmcid": inc.pmcid,
        "doi": inc.doi,
        "record_type": a.record_type,
        "title": a.title,
        "vernacular_title": a.vernacular_title,
        "abstract": (main.text or None) if main else None,
        "abstract_copyright": main.copyright if main else None,
        "journal_id": journal_id,
        "volume": a.volume,
        "issue": a.issue,
        "pages": a.pages,
        "pub_date": pub.iso,
        "pub_year": pub.year,
        "pub_month": pub.month,
        "pub_day": pub.day,
        "pub_season": pub.season,
        "pub_date_raw": pub.raw,
        "epub_date": epub.iso if epub else None,
        "medline_status": a.medline_status,
        "publication_status": a.publication_status,
        "date_completed": a.date_completed.iso if a.date_completed else None,
        "date_revised": a.date_revised.iso if a.date_revised else None,
        "coi_statement": a.coi_statement,
        "book_title": a.book_title,
        "publisher": a.publisher,
        "retracted": a.retracted,
        "in_pubmed": True,
        "deleted": False,
        "content_sha256": inc.sha256,
    }


# The columns of each child table, in the order _ChildRows builds its tuples.
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


class _ChildRows:
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


def _insert_tuples(conn: Connection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """One executemany of plain rows, straight to the driver.

    Child rows hold only text, integers and booleans, which sqlite3 and psycopg take as they are, so
    SQLAlchemy's per-row parameter processing (most of the time of a Core executemany on SQLite) is
    skipped; the statement is still compiled by SQLAlchemy for the dialect and runs in the same
    transaction, seen by the engine's events like any other.
    """
    columns = CHILD_COLUMNS[table.name]
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
    params: list[Any]
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup or ()]
        params = rows if order == list(range(len(columns))) else [tuple(r[i] for i in order) for r in rows]
    else:
        params = [dict(zip(columns, r, strict=True)) for r in rows]
    conn.exec_driver_sql(compiled.string, params)


def _journal_key(journal: Journal) -> str | None:
    """The journal's natural key; the ISSN-L first, as it is the same for the print and online editions."""
    if journal.nlm_unique_id:
        return f"nlm:{journal.nlm_unique_id}"
    issn = journal.issn_linking or journal.issn
    if issn:
        return f"issn:{issn.upper()}"
    if journal.title:
        return "title:" + " ".join(journal.title.lower().split())
    return None


_JOURNAL_FIELDS = (
    "title",
    "iso_abbrev",
    "medline_ta",
    "nlm_unique_id",
    "issn_print",
    "issn_electronic",
    "issn_linking",
    "country",
)


def _resolve_journals(conn: Connection, journals: Iterable[Journal]) -> dict[str, int]:
    """Journal ids by key: missing journals are inserted, and what a stored journal lacks is filled in.

    A known attribute is never overwritten, so storing the same records again changes nothing.
    """
    wanted: dict[str, dict[str, str | None]] = {}
    for journal in journals:
        key = _journal_key(journal)
        if key is None:
            continue
        values = wanted.setdefault(key, dict.fromkeys(_JOURNAL_FIELDS))
        for name in _JOURNAL_FIELDS:
            if values[name] is None:
                values[name] = getattr(journal, name)
    if not wanted:
        return {}
    j = JOURNALS
    columns = [j.c.journal_key, j.c.id, *(j.c[name] for name in _JOURNAL_FIELDS)]
    ids: dict[str, int] = {}
    fills: list[dict[str, Any]] = []
    for chunk in _chunks(list(wanted)):
        for key, journal_id, *stored in conn.execute(sa.select(*columns).where(j.c.journal_key.in_(chunk))):
            ids[key] = journal_id
            known = dict(zip(_JOURNAL_FIELDS, stored, strict=True))
            filled = {name: known[name] if known[name] is not None else wanted[key][name] for name in known}
            if filled != known:
                fills.append({"b_id": journal_id, **filled})
    missing = [key for key in wanted if key not in ids]
    if missing:
        # ON CONFLICT DO NOTHING: a concurrent writer that took no lock (a future tool) may have added it.
        conn.execute(
            _dialect_insert(conn, j).on_conflict_do_nothing(index_elements=[j.c.journal_key]),
            [{"journal_key": key, **wanted[key]} for key in missing],
        )
        for chunk in _chunks(missing):
            query = sa.select(j.c.journal_key, j.c.id).where(j.c.journal_key.in_(chunk))
            ids.update({key: journal_id for key, journal_id in conn.execute(query)})
    if fills:
        conn.execute(sa.update(j).where(j.c.id == sa.bindparam("b_id")), fills)
    return ids


def _assign_unique_ids(conn: Connection, plan: _Plan) -> list[str]:
    """Decide which written article gets each DOI and PMCID in the unique columns; returns the losers.

    The article that holds a value keeps it; a value another article gives up in this batch is free.
    """
    losers: list[str] = []
    clashes: list[str] = []
    writes = [*[(old, inc) for old, inc in plan.changed], *[(None, inc) for inc in plan.new]]
    writing = {old.article_id for old, _ in plan.changed}
    for column in ("doi", "pmcid"):
        wanted = {id(inc): _wanted_id(inc.article, column) for _, inc in writes}
        values = {v for v in wanted.values() if v}
        holders: dict[str, int] = {}
        for chunk in _chunks(sorted(values)):
            col = ARTICLES.c[column]
            query = sa.select(col, ARTICLES.c.id).where(col.in_(chunk))
            holders.update({value: article_id for value, article_id in conn.execute(query)})
        claimed: set[str] = set()
        assigned: dict[int, str | None] = {}
        for old, inc in writes:  # those that hold their value keep it
            value = wanted[id(inc)]
            if value and old is not None and holders.get(value) == old.article_id:
                claimed.add(value)
                assigned[id(inc)] = value
        for _, inc in writes:
            if id(inc) in assigned:
                continue
            value = wanted[id(inc)]
            holder = holders.get(value) if value else None
            if value and (value in claimed or (holder is not None and holder not in writing)):
                clashes.append(f"{inc.article.pmid} ({column} {value})")
                losers.append(inc.article.pmid)
                value = None
            if value:
                claimed.add(value)
            assigned[id(inc)] = value
        for _, inc in writes:
            setattr(inc, column, assigned[id(inc)])
    if clashes:
        shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        logger.warning(
            "%d record(s) name a DOI or PMCID another article holds; kept in article_identifiers only: %s",
            len(clashes),
            shown,
        )
    return losers


def _wanted_id(article: Article, column: str) -> str | None:
    if column == "doi":
        return article.doi.lower() if article.doi else None
    return article.pmcid


def _release_unique_ids(conn: Connection, changed: list[tuple[_Stored, _Incoming]]) -> None:
    """Clear DOIs and PMCIDs that change hands first, so no UPDATE meets a value not yet given up."""
    releasing = [
        old.article_id
        for old, inc in changed
        if (old.doi and old.doi != inc.doi) or (old.pmcid and old.pmcid != inc.pmcid)
    ]
    for chunk in _chunks(releasing):
        conn.execute(sa.update(ARTICLES).where(ARTICLES.c.id.in_(chunk)).values(doi=None, pmcid=None))


def _stored_payload_ids(conn: Connection, writes: list[_Incoming]) -> dict[str, int]:
    """Ids of payloads already kept, by SHA-256 (a record that changed back to an earlier version)."""
    p = RAW_PAYLOADS
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted({inc.sha256 for inc in writes})):
        query = sa.select(p.c.sha256, p.c.id).where(p.c.source == SOURCE, p.c.sha256.in_(chunk))
        ids.update({sha: payload_id for sha, payload_id in conn.execute(query)})
    return ids


def _insert_payloads(
    conn: Connection,
    unseen: list[_Incoming],
    compressed: list[bytes],
    *,
    url: str | None,
    fetched_at: datetime,
) -> dict[str, int]:
    """Insert payloads not kept before; returns their ids by SHA-256."""
    if not unseen:
        return {}
    p = RAW_PAYLOADS
    rows = conn.execute(
        sa.insert(p).returning(p.c.sha256, p.c.id),
        [
            {
                "source": SOURCE,
                "source_id": inc.article.pmid,
                "sha256": inc.sha256,
                "url": url,
                "fetched_at": fetched_at,
                "content_encoding": CONTENT_ENCODING,
                "content": content,
                "size": len(inc.raw),
            }
            for inc, content in zip(unseen, compressed, strict=True)
        ],
    )
    return {sha: payload_id for sha, payload_id in rows}


def _dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

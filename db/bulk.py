"""The record of applied PubMed baseline and update files (``bulk_files``), and their deletions.

A file is recorded once all its records are stored, in the same transaction that applies its
DeleteCitation list: a file that fails part-way is not recorded, so running it again applies it again
(storing is idempotent). The checksum is unique, so the same bytes are never recorded twice.

Deletions: an article a DeleteCitation names is flagged ``deleted`` (its rows, payloads and history stay)
and an article_history row records the change (field "deleted", false -> true, source "pubmed", the run).
A versioned deletion (``<PMID Version="2">``) leaves an article whose stored version is newer alone: that
version still stands. PMIDs that are not stored are counted, not stored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, begin_write, storage_error
from db.inserts import chunks
from db.models import metadata
from harvester.core.records import RejectedRecord

log = logging.getLogger(__name__)

BULK_FILES = metadata.tables["bulk_files"]
ARTICLES = metadata.tables["articles"]
HISTORY = metadata.tables["article_history"]
REJECTED = metadata.tables["rejected_records"]
KINDS = ("baseline", "update")
SOURCE = "pubmed"


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """One row of bulk_files."""

    id: int
    name: str
    kind: str
    release_year: int | None
    sequence: int | None
    sha256: str
    size: int
    records: int
    deleted: int
    applied_at: datetime
    run_id: int | None
    forced: bool


@dataclass(frozen=True, slots=True)
class NewFile:
    """What is recorded of a file once it has been applied."""

    name: str
    kind: str
    release_year: int | None
    sequence: int | None
    sha256: str
    size: int
    records: int


def applied_by_checksum(engine: Engine, sha256: str) -> AppliedFile | None:
    """The applied file with these bytes, if any.

    Raises:
        StorageError: the database could not be read.
    """
    return _first(engine, sa.select(BULK_FILES).where(BULK_FILES.c.sha256 == sha256))


def applied_by_sequence(engine: Engine, release_year: int, sequence: int) -> AppliedFile | None:
    """The latest applied file with this place in NLM's sequence (a re-issued file may have several)."""
    b = BULK_FILES
    query = (
        sa.select(b)
        .where(b.c.release_year == release_year, b.c.sequence == sequence)
        .order_by(b.c.id.desc())
        .limit(1)
    )
    return _first(engine, query)


def latest_applied(engine: Engine, kind: str | None = None) -> AppliedFile | None:
    """The applied file (of ``kind``, or of any) latest in NLM's sequence; files without one are ignored."""
    b = BULK_FILES
    query = sa.select(b).where(b.c.release_year.is_not(None), b.c.sequence.is_not(None))
    if kind is not None:
        query = query.where(b.c.kind == kind)
    query = query.order_by(b.c.release_year.desc(), b.c.sequence.desc(), b.c.id.desc()).limit(1)
    return _first(engine, query)


def list_applied(engine: Engine) -> list[AppliedFile]:
    """Every applied file, in the order it was applied."""
    try:
        with begin_read(engine) as conn:
            rows = conn.execute(sa.select(BULK_FILES).order_by(BULK_FILES.c.id)).mappings().all()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the applied files from", engine) from exc
    return [AppliedFile(**row) for row in rows]


def record_applied(
    engine: Engine,
    new: NewFile,
    *,
    deleted: Sequence[tuple[str, int]],
    at: datetime,
    run_id: int | None,
    forced: bool,
    rejected: Sequence[RejectedRecord] = (),
    also: Callable[[Connection], None] | None = None,
) -> tuple[AppliedFile | None, int]:
    """Apply a file's deletions and record the file as applied, with its rejected records, in one
    transaction (so a file applied again, or run again after a failure, never records them twice).

    The transaction holds the writers' lock and looks for the checksum first: when another process
    recorded the same bytes meanwhile (two workers given two copies of one file), nothing is written and
    the row returned is None.

    Args:
        engine: the migrated database.
        new: the file's facts (its records are already stored).
        deleted: (PMID, version) of each PMID its DeleteCitation elements list.
        at: when it was applied (timezone-aware): applied_at, and the deleted articles' updated_at.
        run_id: the harvest_runs row of the ingest.
        forced: it was applied out of order on the user's word.
        rejected: its records that could not be parsed or stored, kept raw in rejected_records.
        also: more writes that must commit with the record, or not at all (the work queue marks the
            file applied with it); it may raise to roll everything back.

    Returns:
        The recorded row (None: the same bytes were recorded already), and how many stored articles
        were newly flagged deleted.

    Raises:
        StorageError: the database could not be written (nothing of this call was).
        ValueError: an unknown kind, or a naive ``at``.
    """
    if new.kind not in KINDS:
        raise ValueError(f"unknown bulk file kind {new.kind!r}: use baseline or update")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    row = AppliedFile(
        id=0,
        name=new.name,
        kind=new.kind,
        release_year=new.release_year,
        sequence=new.sequence,
        sha256=new.sha256,
        size=new.size,
        records=new.records,
        deleted=len({pmid for pmid, _version in deleted}),
        applied_at=at,
        run_id=run_id,
        forced=forced,
    )
    values = {name: getattr(row, name) for name in AppliedFile.__slots__ if name != "id"}
    try:
        with begin_write(engine) as conn:
            recorded = conn.execute(
                sa.select(BULK_FILES.c.id).where(BULK_FILES.c.sha256 == new.sha256)
            ).first()
            if recorded is not None:
                return None, 0
            marked = _mark_deleted(conn, deleted, at=at, run_id=run_id)
            file_id = conn.execute(sa.insert(BULK_FILES).returning(BULK_FILES.c.id), values).scalar_one()
            if rejected:
                conn.execute(
                    sa.insert(REJECTED),
                    [
                        {
                            "source": f"file:{new.name}",
                            "file_name": new.name,
                            "file_sha256": new.sha256,
                            "pmid": record.pmid,
                            "reason": record.reason,
                            "raw_xml": record.raw_xml,
                            "run_id": run_id,
                            "rejected_at": at,
                        }
                        for record in rejected
                    ],
                )
            if also is not None:
                also(conn)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record the applied file in", engine) from exc
    return dataclasses.replace(row, id=int(file_id)), marked


def _mark_deleted(
    conn: Connection, deleted: Sequence[tuple[str, int]], *, at: datetime, run_id: int | None
) -> int:
    """Flag the stored, not yet deleted articles of these PMIDs deleted, with one history row each."""
    newest: dict[str, int] = {}
    for pmid, version in deleted:
        newest[pmid] = max(version, newest.get(pmid, 0))
    a = ARTICLES
    ids: list[int] = []
    for chunk in chunks(list(newest)):
        rows = conn.execute(
            sa.select(a.c.id, a.c.pmid, a.c.pmid_version).where(a.c.pmid.in_(chunk), a.c.deleted.is_(False))
        )
        ids.extend(article_id for article_id, pmid, version in rows if (version or 1) <= newest[pmid])
    if not ids:
        return 0
    for chunk in chunks(ids):
        conn.execute(sa.update(a).where(a.c.id.in_(chunk)).values(deleted=True, updated_at=at))
    old, new = json.dumps(False), json.dumps(True)
    conn.execute(
        sa.insert(HISTORY),
        [
            {
                "article_id": article_id,
                "field": "deleted",
                "old_value": old,
                "new_value": new,
                "source": SOURCE,
                "run_id": run_id,
                "changed_at": at,
            }
            for article_id in ids
        ],
    )
    return len(ids)


def _first(engine: Engine, query: sa.Select[tuple[object, ...]]) -> AppliedFile | None:
    try:
        with begin_read(engine) as conn:
            row = conn.execute(query).mappings().first()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the applied files from", engine) from exc
    return AppliedFile(**row) if row is not None else None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row of rejected_records."""

    id: int
    source: str
    file_name: str | None
    file_sha256: str | None
    pmid: str | None
    reason: str
    raw_xml: bytes
    run_id: int | None
    rejected_at: datetime


def rejected_records(engine: Engine, *, file_sha256: str | None = None) -> list[RejectedRow]:
    """The records kept raw because they could not be parsed or stored, oldest first (of one file if given).

    Raises:
        StorageError: the database could not be read.
    """
    query = sa.select(REJECTED).order_by(REJECTED.c.id)
    if file_sha256 is not None:
        query = query.where(REJECTED.c.file_sha256 == file_sha256)
    try:
        with begin_read(engine) as conn:
            rows = conn.execute(query).all()
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read rejected records from", engine) from exc
    return [
        RejectedRow(
            r.id,
            r.source,
            r.file_name,
            r.file_sha256,
            r.pmid,
            r.reason,
            bytes(r.raw_xml),
            r.run_id,
            r.rejected_at,
        )
        for r in rows
    ]


def record_rejected(
    engine: Engine, records: Sequence[RejectedRecord], *, source: str, at: datetime, run_id: int | None
) -> None:
    """Keep records that could not be parsed or stored (of an efetch answer) raw, with their reasons.

    Raises:
        StorageError: the database could not be written.
    """
    if not records:
        return
    rows = [
        {
            "source": source,
            "pmid": r.pmid,
            "reason": r.reason,
            "raw_xml": r.raw_xml,
            "run_id": run_id,
            "rejected_at": at,
        }
        for r in records
    ]
    try:
        with begin_write(engine) as conn:
            conn.execute(sa.insert(REJECTED), rows)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot keep rejected records in", engine) from exc


# The tables whose statistics the next file's look-ups are planned on: stored articles by PMID, DOI and
# PMCID, their current PubMed record and its payload's hash.
ANALYZE_LOOKUP_TABLES = "ANALYZE articles, article_identifiers, source_records, raw_payloads"
# A file that at least doubles the articles: the plans that go wrong are those made for a table the
# planner takes for nearly empty; smaller changes are autovacuum's (its analyze_scale_factor is 0.1), so
# a baseline load analyzes a handful of times, not after every file.
GROWTH_TO_ANALYZE = 1.0


def refresh_statistics(engine: Engine, added: int) -> bool:
    """On PostgreSQL, ANALYZE the look-up tables once a file has added at least as many articles as the
    planner believes there were (``pg_class.reltuples``, -1 before any ANALYZE); returns whether it did.

    Autovacuum analyzes only after its next nap, and never rows not yet committed, so the file that
    follows a large one in the same command was planned on the old sizes: right after a
    first load of 30,000 records, each look-up of 500 stored PMIDs joined every source record (49.7 ms,
    against 5.9 ms once analyzed), and re-reading the same file took 11 s against SQLite's 6 s. SQLite
    plans these look-ups by its indexes alone. A failure (a role that may not analyze the tables, say) is
    logged and changes nothing: the file is already recorded.
    """
    if engine.dialect.name != "postgresql" or added <= 0:
        return False
    try:
        with engine.connect() as conn:
            believed = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('articles')")
            ).scalar_one_or_none()
            if believed is not None and added < GROWTH_TO_ANALYZE * max(float(believed), 0.0):
                return False
            conn.exec_driver_sql(ANALYZE_LOOKUP_TABLES)
            conn.commit()
    except DBAPIError as exc:
        log.warning("could not refresh the planner's statistics after a large file: %s", exc.orig)
        return False
    return True

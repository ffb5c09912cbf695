"""Storing iCite records: metrics with history, the raw answer, the status, and citation edges.

What one call writes, in one transaction, for the records of stored articles (by PMID):

- ``raw_payloads``/``source_records``: the record's canonical JSON (source "icite", source_id the PMID),
  only when it differs from the kept one;
- ``article_metrics``: a new row only when a value differs from the article's latest iCite row, with one
  ``article_history`` entry (field "metrics.icite", old and new values of the fields that changed) and
  the field's provenance;
- ``articles.icite_status``: "found" / "not_found", only when it changes (with a history entry);
- ``citation_edges``: the record's cited-by and reference PMIDs, edges not kept before.

The same answer twice writes nothing the second time. Edges are only added: an edge one record stops
naming may still be named by the record at its other end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.columns import METRIC_FIELDS  # the metrics a row keeps; a change in any of them adds a row
from db.engine import begin_read, begin_write, storage_error
from db.inserts import chunks, dialect_insert
from db.models import metadata
from db.payloads import compress_payload, stored_payload_ids
from enrich.records import IciteRecord

SOURCE = "icite"
HISTORY_FIELD = "metrics.icite"
CONTENT_ENCODING = "gzip"

ARTICLES = metadata.tables["articles"]
METRICS = metadata.tables["article_metrics"]
EDGES = metadata.tables["citation_edges"]
HISTORY = metadata.tables["article_history"]
PROVENANCE = metadata.tables["field_provenance"]
RAW_PAYLOADS = metadata.tables["raw_payloads"]
SOURCE_RECORDS = metadata.tables["source_records"]


@dataclass(slots=True)
class IciteStoreResult:
    """What one store did, by PMID."""

    updated: list[str] = field(default_factory=list)  # a new metrics row (or a changed one)
    unchanged: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # iCite does not know them
    not_stored: list[str] = field(default_factory=list)  # no stored article has this PMID
    edges_added: int = 0
    payloads_added: int = 0


def metric_values(record: IciteRecord) -> dict[str, Any]:
    """The metrics columns of a record."""
    values: dict[str, Any] = {name: getattr(record, name) for name in METRIC_FIELDS[:15]}
    values["cited_by_clinical_count"] = len(record.cited_by_clinical)
    values["references_count"] = len(record.references)
    return values


def valid_on(record: IciteRecord, fetched_at: datetime) -> date:
    """The date the metrics are valid for: iCite's ``last_modified`` day, else the day they were fetched."""
    if record.last_modified:
        try:
            return date.fromisoformat(record.last_modified[:10])
        except ValueError:
            pass
    return fetched_at.date()


def record_edges(record: IciteRecord) -> set[tuple[str, str]]:
    """(citing, cited) pairs the record names: who cites it, and what it cites."""
    edges = {(citing, record.pmid) for citing in record.cited_by}
    edges.update((record.pmid, cited) for cited in record.references)
    edges.discard((record.pmid, record.pmid))
    return edges


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float) or isinstance(new, float):
        return (
            old is not None and new is not None and abs(float(old) - float(new)) <= 1e-9 * max(1.0, abs(new))
        )
    if isinstance(old, bool) or isinstance(new, bool):
        return old is not None and new is not None and bool(old) == bool(new)
    return bool(old == new)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [
        name
        for name in METRIC_FIELDS
        if not (old.get(name) is None and new.get(name) is None) and not _same(old.get(name), new.get(name))
    ]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _history(
    article_id: int, name: str, old: Any, new: Any, *, now: datetime, run_id: int | None
) -> dict[str, Any]:
    return {
        "article_id": article_id,
        "field": name,
        "old_value": _json(old),
        "new_value": _json(new),
        "source": SOURCE,
        "run_id": run_id,
        "changed_at": now,
    }


def store_icite(
    engine: Engine,
    records: Sequence[IciteRecord],
    *,
    url: str | None,
    fetched_at: datetime,
    run_id: int | None,
    not_found: Sequence[str] = (),
    edges_for_all: bool = False,
    stored_pmids: set[str] | None = None,
) -> IciteStoreResult:
    """Store iCite records of stored articles (see the module docstring), in one transaction.

    Args:
        records: parsed records; those of PMIDs no article has go to ``not_stored`` (their edges are
            kept only with ``edges_for_all``).
        url: where they came from (redacted), or a snapshot's file name.
        fetched_at: when (timezone-aware); also ``valid_on`` for records without ``last_modified``.
        run_id: the harvest_runs row the changes are recorded under.
        not_found: PMIDs iCite answered without a record: their articles' status becomes "not_found".
        edges_for_all: keep every edge the records name, not only those with a stored end.
        stored_pmids: every stored PMID, when the caller has them (a bulk load); else they are looked up.

    Raises:
        StorageError: the database could not be written (nothing of this call was).
    """
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    result = IciteStoreResult()
    latest = {r.pmid: r for r in records}
    try:
        with begin_write(engine) as conn:
            pmids = sorted({*latest, *not_found})
            articles = _articles(conn, pmids)
            result.not_stored = [p for p in latest if p not in articles]
            stored = [r for p, r in latest.items() if p in articles]
            result.payloads_added = _keep_payloads(conn, stored, articles, url=url, fetched_at=fetched_at)
            _store_metrics(conn, stored, articles, result, fetched_at=fetched_at, run_id=run_id)
            statuses = {articles[r.pmid][0]: (articles[r.pmid][1], "found") for r in stored}
            for pmid in not_found:
                if pmid in articles:
                    statuses[articles[pmid][0]] = (articles[pmid][1], "not_found")
                    result.not_found.append(pmid)
            _write_statuses(conn, statuses, now=fetched_at, run_id=run_id)
            edges: set[tuple[str, str]] = set()
            for record in latest.values():
                edges |= record_edges(record)
            ends: set[str] | None = None
            if not edges_for_all:
                ends = (
                    stored_pmids
                    if stored_pmids is not None
                    else set(_articles(conn, sorted({p for e in edges for p in e})))
                )
            result.edges_added = add_edges(conn, edges, stored_pmids=ends)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot store iCite records in", engine) from exc
    return result


def _articles(conn: Connection, pmids: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """PMID -> (article id, icite_status) of stored articles."""
    a = ARTICLES
    found: dict[str, tuple[int, str | None]] = {}
    for chunk in chunks(list(pmids)):
        query = sa.select(a.c.pmid, a.c.id, a.c.icite_status).where(a.c.pmid.in_(chunk))
        found.update({pmid: (article_id, status) for pmid, article_id, status in conn.execute(query)})
    return found


def _keep_payloads(
    conn: Connection,
    records: Sequence[IciteRecord],
    articles: Mapping[str, tuple[int, str | None]],
    *,
    url: str | None,
    fetched_at: datetime,
) -> int:
    """Keep each record's raw JSON unless the current source record already points at the same bytes."""
    p, sr = RAW_PAYLOADS, SOURCE_RECORDS
    raws = {r.pmid: r.raw_json or b"{}" for r in records}
    shas = {pmid: hashlib.sha256(raw).hexdigest() for pmid, raw in raws.items()}
    current: dict[str, str] = {}
    for chunk in chunks(sorted(raws)):
        query = (
            sa.select(sr.c.source_id, p.c.sha256)
            .select_from(sr.join(p, p.c.id == sr.c.payload_id))
            .where(sr.c.source == SOURCE, sr.c.source_id.in_(chunk))
        )
        current.update({pmid: sha for pmid, sha in conn.execute(query)})
    changed = [pmid for pmid in raws if current.get(pmid) != shas[pmid]]
    if not changed:
        return 0
    payload_ids = stored_payload_ids(conn, SOURCE, {shas[pmid] for pmid in changed})
    unseen = {shas[pmid]: pmid for pmid in changed if shas[pmid] not in payload_ids}
    if unseen:
        rows = conn.execute(
            sa.insert(p).returning(p.c.sha256, p.c.id),
            [
                {
                    "source": SOURCE,
                    "source_id": pmid,
                    "sha256": sha,
                    "url": url,
                    "fetched_at": fetched_at,
                    "content_encoding": CONTENT_ENCODING,
                    "content": compress_payload(raws[pmid]),
                    "size": len(raws[pmid]),
                }
                for sha, pmid in unseen.items()
            ],
        )
        payload_ids.update({sha: payload_id for sha, payload_id in rows})
    upsert = dialect_insert(conn, sr)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[sr.c.source, sr.c.source_id, sr.c.article_id],  # unique since migration 0006
            set_={
                "payload_id": upsert.excluded.payload_id,
                "fetched_at": upsert.excluded.fetched_at,
            },
        ),
        [
            {
                "article_id": articles[pmid][0],
                "source": SOURCE,
                "source_id": pmid,
                "payload_id": payload_ids[shas[pmid]],
                "fetched_at": fetched_at,
            }
            for pmid in changed
        ],
    )
    return len(unseen)


def latest_metrics(conn: Connection, article_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The latest iCite metrics row of each article (by ``valid_on``, then id)."""
    m = METRICS
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(article_ids))):
        query = (
            sa.select(m)
            .where(m.c.article_id.in_(chunk), m.c.source == SOURCE)
            .order_by(m.c.article_id, m.c.valid_on, m.c.id)
        )
        for row in conn.execute(query).mappings():
            found[row["article_id"]] = dict(row)  # ordered: the last one wins
    return found


def _store_metrics(
    conn: Connection,
    records: Sequence[IciteRecord],
    articles: Mapping[str, tuple[int, str | None]],
    result: IciteStoreResult,
    *,
    fetched_at: datetime,
    run_id: int | None,
) -> None:
    m = METRICS
    latest = latest_metrics(conn, (articles[r.pmid][0] for r in records))
    inserts: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    provenance: list[dict[str, Any]] = []
    for record in records:
        article_id = articles[record.pmid][0]
        new = metric_values(record)
        old = latest.get(article_id)
        day = valid_on(record, fetched_at)
        changed = _changed(old or {}, new) if old is not None else list(METRIC_FIELDS)
        if old is not None and not changed:
            result.unchanged.append(record.pmid)
            continue
        result.updated.append(record.pmid)
        if old is not None and old["valid_on"] > day:
            day = old["valid_on"]  # iCite's date went back: the new row must still be the latest
        inserts.append(
            {
                **new,
                "article_id": article_id,
                "source": SOURCE,
                "valid_on": day,
                "fetched_at": fetched_at,
                "run_id": run_id,
                "last_modified": record.last_modified,
            }
        )
        before = {name: old.get(name) for name in changed} if old is not None else None
        after = {name: new[name] for name in changed if old is not None or new[name] is not None}
        history.append(_history(article_id, HISTORY_FIELD, before, after, now=fetched_at, run_id=run_id))
        provenance.append(
            {
                "article_id": article_id,
                "field": HISTORY_FIELD,
                "source": SOURCE,
                "source_id": record.pmid,
                "fetched_at": fetched_at,
            }
        )
    if inserts:
        conn.execute(sa.insert(m), inserts)
    if history:
        conn.execute(sa.insert(HISTORY), history)
        upsert = dialect_insert(conn, PROVENANCE)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[PROVENANCE.c.article_id, PROVENANCE.c.field],
                set_={
                    "source": upsert.excluded.source,
                    "source_id": upsert.excluded.source_id,
                    "fetched_at": upsert.excluded.fetched_at,
                },
            ),
            provenance,
        )


def _write_statuses(
    conn: Connection, statuses: Mapping[int, tuple[str | None, str]], *, now: datetime, run_id: int | None
) -> None:
    changes = {article_id: (old, new) for article_id, (old, new) in statuses.items() if old != new}
    if not changes:
        return
    conn.execute(
        sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")),
        [
            {"b_id": article_id, "icite_status": new, "updated_at": now}
            for article_id, (_, new) in changes.items()
        ],
    )
    conn.execute(
        sa.insert(HISTORY),
        [
            _history(article_id, "icite_status", old, new, now=now, run_id=run_id)
            for article_id, (old, new) in changes.items()
        ],
    )


def add_edges(conn: Connection, edges: Iterable[tuple[str, str]], *, stored_pmids: set[str] | None) -> int:
    """Insert the edges not kept before; with ``stored_pmids``, only those with a stored end.

    Returns how many were added (RETURNING counts only rows inserted on both dialects).
    """
    wanted = sorted(
        edge
        for edge in set(edges)
        if stored_pmids is None or edge[0] in stored_pmids or edge[1] in stored_pmids
    )
    added = 0
    for chunk in chunks(wanted, 1000):
        insert = dialect_insert(conn, EDGES).on_conflict_do_nothing().returning(EDGES.c.citing_pmid)
        rows = conn.execute(
            insert,
            [{"citing_pmid": citing, "cited_pmid": cited, "source": SOURCE} for citing, cited in chunk],
        )
        added += len(rows.all())
    return added


def stored_pmids(engine: Engine) -> set[str]:
    """Every PMID of a stored article."""
    try:
        with begin_read(engine) as conn:
            query = sa.select(ARTICLES.c.pmid).where(ARTICLES.c.pmid.is_not(None))
            return {row[0] for row in conn.execute(query)}
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc


def read_metrics(engine: Engine, article_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The latest iCite metrics of each article, with its edge counts, for show and the exports."""
    try:
        with begin_read(engine) as conn:
            latest = latest_metrics(conn, article_ids)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read metrics from", engine) from exc
    out: dict[int, dict[str, Any]] = {}
    for article_id, row in latest.items():
        out[article_id] = {
            "source": SOURCE,
            "valid_on": row["valid_on"].isoformat(),
            **{name: row[name] for name in METRIC_FIELDS},
        }
    return out


def add_edges_batch(
    engine: Engine, edges: Iterable[tuple[str, str]], *, stored_pmids: set[str] | None
) -> int:
    """:func:`add_edges` in a transaction of its own (a bulk load's chunk)."""
    try:
        with begin_write(engine) as conn:
            return add_edges(conn, edges, stored_pmids=stored_pmids)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot store citation edges in", engine) from exc


def record_snapshot(
    engine: Engine,
    *,
    name: str,
    kind: str,
    sha256: str,
    size: int,
    records: int,
    at: datetime,
    run_id: int | None,
) -> bool:
    """Record an iCite snapshot file as applied in ``bulk_files`` (kind "icite-metadata" or
    "icite-citations"); False when the same bytes were recorded before (a forced reload)."""
    bulk = metadata.tables["bulk_files"]
    try:
        with begin_write(engine) as conn:
            if conn.execute(sa.select(bulk.c.id).where(bulk.c.sha256 == sha256)).first() is not None:
                return False
            conn.execute(
                sa.insert(bulk).values(
                    name=name,
                    kind=kind,
                    release_year=None,
                    sequence=None,
                    sha256=sha256,
                    size=size,
                    records=records,
                    deleted=0,
                    applied_at=at,
                    run_id=run_id,
                    forced=False,
                )
            )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record the applied snapshot in", engine) from exc
    return True

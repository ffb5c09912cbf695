"""Raw payloads kept for re-parsing, and the source records that point articles at them.

A payload is kept once per source and hash (raw_payloads), gzip-framed, so ``gzip.decompress`` and zcat
read it; earlier payloads of a record stay, so an article can be merged again from its current records
without fetching (:mod:`enrich.payloads` parses them back). A source record (source, source_id, article)
names the payload that is the article's current record of that source; one record may be current for
several articles (a DOI several PubMed records share), one row each. A PMC or Crossref record kept for an
article is repointed to its new payload; a record that no longer matches an article is dropped from it
(its payloads stay). A Crossref work asked for by an alias DOI records that alias as an identifier of
its articles (id_type "crossref:alias"), so that the alias matches them from then on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from isal import isal_zlib
from sqlalchemy.engine import Connection

from db.inserts import chunks, dialect_insert, insert_returning
from db.matching import ALIAS, IncomingRecord
from db.models import metadata

CONTENT_ENCODING = "gzip"
# Intel ISA-L's deflate (python-isal), level 1: on PubMed records as small as zlib's level 3 (21.8% of the
# raw bytes) in a third of its CPU time (3,000 records: 0.076 against 0.229 s), standard gzip all the same.
COMPRESSION_LEVEL = 1

_T = metadata.tables
RAW_PAYLOADS = _T["raw_payloads"]
SOURCE_RECORDS = _T["source_records"]
IDENTIFIERS = _T["article_identifiers"]


def compress_payload(raw: bytes) -> bytes:
    """Gzip framing, so ``gzip.decompress`` and zcat read it; no timestamp, so equal input, equal output."""
    return isal_zlib.compress(raw, COMPRESSION_LEVEL, wbits=31)


def stored_payload_ids(conn: Connection, source: str, shas: Iterable[str]) -> dict[str, int]:
    """Ids of the payloads of this source already kept, by SHA-256 (a record that changed back to an
    earlier version finds its payload here).

    On PostgreSQL each hash is looked up on its own through the (source, sha256) key (:data:`_BY_HASH_PG`):
    ``sha256 IN (...)`` lets the planner scan every payload of the source instead, which it does while
    the table's statistics are older than the transaction's own inserts (the first load of a file into
    a new database: 60 look-ups of 500 hashes took 8 s of a 30,000-record load, growing with the square
    of the file). SQLite takes the unique index for ``IN`` by itself.
    """
    p = RAW_PAYLOADS
    ids: dict[str, int] = {}
    for chunk in chunks(sorted(set(shas))):
        if conn.dialect.name == "postgresql":
            rows = conn.execute(_BY_HASH_PG, {"source": source, "shas": list(chunk)})
        else:
            query = sa.select(p.c.sha256, p.c.id).where(p.c.source == source, p.c.sha256.in_(chunk))
            rows = conn.execute(query)
        ids.update({sha: payload_id for sha, payload_id in rows})
    return ids


# One index probe per hash: a LATERAL subquery with LIMIT 1 is planned for a single (source, sha256) pair,
# which the unique key answers in one descent whatever the statistics say, and cannot become a join that
# reads the whole table.
_BY_HASH_PG = sa.text(
    "SELECT h.sha256, k.id FROM unnest(CAST(:shas AS text[])) AS h(sha256)"
    " CROSS JOIN LATERAL (SELECT p.id FROM raw_payloads AS p"
    " WHERE p.source = :source AND p.sha256 = h.sha256 LIMIT 1) AS k"
)


def insert_payloads(
    conn: Connection,
    source: str,
    payloads: Sequence[tuple[str, str, bytes, int]],
    *,
    url: str | None,
    fetched_at: datetime,
) -> dict[str, int]:
    """Insert payloads not kept before, each (source_id, sha256, compressed content, raw size), in one
    statement (:func:`db.inserts.insert_returning`); returns their ids by SHA-256."""
    if not payloads:
        return {}
    rows = insert_returning(
        conn,
        RAW_PAYLOADS,
        [
            {
                "source": source,
                "source_id": source_id,
                "sha256": sha256,
                "url": url,
                "fetched_at": fetched_at,
                "content_encoding": CONTENT_ENCODING,
                "content": content,
                "size": size,
            }
            for source_id, sha256, content, size in payloads
        ],
        ("sha256", "id"),
    )
    return {sha: payload_id for sha, payload_id in rows}


def keep_payloads(
    conn: Connection, source: str, records: Sequence[IncomingRecord], *, url: str | None, fetched_at: datetime
) -> dict[str, int]:
    """Keep the payloads of these records not kept before (compressed here, one row each); returns the
    payload id of every record's hash."""
    p = RAW_PAYLOADS
    payload_ids = stored_payload_ids(conn, source, [record.sha256 for record in records])
    unseen = list({r.sha256: r for r in records if r.sha256 not in payload_ids}.values())
    if unseen:
        rows = conn.execute(
            sa.insert(p).returning(p.c.sha256, p.c.id),
            [
                {
                    "source": source,
                    "source_id": record.source_id,
                    "sha256": record.sha256,
                    "url": url,
                    "fetched_at": fetched_at,
                    "content_encoding": CONTENT_ENCODING,
                    "content": compress_payload(record.raw),
                    "size": len(record.raw),
                }
                for record in unseen
            ],
        )
        payload_ids.update({sha: payload_id for sha, payload_id in rows})
    return payload_ids


def repoint_source_records(
    conn: Connection,
    source: str,
    records: Sequence[tuple[IncomingRecord, int]],
    *,
    url: str | None,
    fetched_at: datetime,
) -> None:
    """Add the payloads not kept before and point each source record at its payload and article."""
    sr = SOURCE_RECORDS
    payload_ids = keep_payloads(conn, source, [r for r, _ in records], url=url, fetched_at=fetched_at)
    upsert = dialect_insert(conn, sr)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[sr.c.source, sr.c.source_id, sr.c.article_id],
            set_={"payload_id": upsert.excluded.payload_id, "fetched_at": upsert.excluded.fetched_at},
        ),
        [
            {
                "article_id": article_id,
                "source": source,
                "source_id": record.source_id,
                "payload_id": payload_ids[record.sha256],
                "fetched_at": fetched_at,
            }
            for record, article_id in records
        ],
    )


def current_source_records(
    conn: Connection, source: str, source_ids: Sequence[str]
) -> dict[str, dict[int, str]]:
    """source_id -> {article id: payload sha256} of the source records there are."""
    sr, p = SOURCE_RECORDS, RAW_PAYLOADS
    found: dict[str, dict[int, str]] = defaultdict(dict)
    for chunk in chunks(sorted(set(source_ids))):
        query = (
            sa.select(sr.c.source_id, sr.c.article_id, p.c.sha256)
            .select_from(sr.join(p, p.c.id == sr.c.payload_id))
            .where(sr.c.source == source, sr.c.source_id.in_(chunk))
        )
        for source_id, article_id, sha in conn.execute(query):
            found[source_id][article_id] = sha
    return found


def drop_source_records(conn: Connection, source: str, records: Sequence[tuple[str, int]]) -> None:
    """Source records that are no longer the current record of these articles (their payloads stay)."""
    sr = SOURCE_RECORDS
    conn.execute(
        sa.delete(sr).where(
            sr.c.source == source,
            sr.c.source_id == sa.bindparam("b_source_id"),
            sr.c.article_id == sa.bindparam("b_article_id"),
        ),
        [{"b_source_id": source_id, "b_article_id": article_id} for source_id, article_id in records],
    )


def record_aliases(conn: Connection, matched: Sequence[tuple[IncomingRecord, int]]) -> None:
    """Each alias a Crossref work was asked by becomes an identifier of the articles it matched."""
    if not matched:
        return
    i = IDENTIFIERS
    positions: dict[int, int] = {}
    for chunk in chunks(sorted({article_id for _, article_id in matched})):
        query = sa.select(i.c.article_id, sa.func.max(i.c.position)).where(i.c.article_id.in_(chunk))
        positions.update({a: int(n or 0) for a, n in conn.execute(query.group_by(i.c.article_id))})
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for record, article_id in matched:
        for alias in record.aliases:
            if (article_id, alias) not in rows:
                positions[article_id] = positions.get(article_id, 0) + 1
                rows[(article_id, alias)] = {
                    "article_id": article_id,
                    "id_type": ALIAS,
                    "value": alias,
                    "position": positions[article_id],
                    "valid": True,
                }
    conn.execute(
        dialect_insert(conn, i).on_conflict_do_nothing(
            index_elements=[i.c.article_id, i.c.id_type, i.c.value]
        ),
        list(rows.values()),
    )

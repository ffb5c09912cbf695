"""Raw payloads kept for re-parsing: compressed, found by SHA-256, added beside the earlier ones.

A payload is kept once per source and hash (raw_payloads), gzip-framed, so ``gzip.decompress`` and zcat
read it; earlier payloads of a record stay, so an article can be merged again from any of them without
fetching (:mod:`enrich.payloads` parses them back).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.inserts import chunks, insert_returning
from db.models import metadata

CONTENT_ENCODING = "gzip"
COMPRESSION_LEVEL = 3  # on PubMed records: level 6 is ~1.7x slower for ~6% smaller payloads

_T = metadata.tables
RAW_PAYLOADS = _T["raw_payloads"]


def compress_payload(raw: bytes) -> bytes:
    """Gzip framing, so ``gzip.decompress`` and zcat read it; no timestamp, so equal input, equal output."""
    return zlib.compress(raw, COMPRESSION_LEVEL, wbits=31)


def stored_payload_ids(conn: Connection, source: str, shas: Iterable[str]) -> dict[str, int]:
    """Ids of the payloads of this source already kept, by SHA-256 (a record that changed back to an
    earlier version finds its payload here)."""
    p = RAW_PAYLOADS
    ids: dict[str, int] = {}
    for chunk in chunks(sorted(set(shas))):
        query = sa.select(p.c.sha256, p.c.id).where(p.c.source == source, p.c.sha256.in_(chunk))
        ids.update({sha: payload_id for sha, payload_id in conn.execute(query)})
    return ids


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

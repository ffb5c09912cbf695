"""Kept payloads: standard gzip, and found by hash one index probe each, however stale the statistics.

A first load into a new PostgreSQL database inserts thousands of payloads in one transaction, which the
table's statistics (taken before it) do not count; ``sha256 IN (...)`` was then planned as a scan of every
payload of the source, so each batch read all the batches before it.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import begin_write
from db.payloads import _BY_HASH_PG, compress_payload, insert_payloads, stored_payload_ids

FETCHED = datetime(2026, 12, 6, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def keep(conn: sa.Connection, source: str, numbers: range) -> dict[str, int]:
    return insert_payloads(
        conn, source, [(str(n), sha(n), b"x", 1) for n in numbers], url=None, fetched_at=FETCHED
    )


def test_a_payload_is_gzip_without_a_timestamp_and_smaller() -> None:
    raw = (FIXTURES / "efetch_pubmed_35350566.xml").read_bytes()
    packed = compress_payload(raw)
    assert gzip.decompress(packed) == raw  # what zcat and enrich.payloads read
    assert packed[:4] == b"\x1f\x8b\x08\x00" and packed[4:8] == b"\x00\x00\x00\x00"  # gzip, no name, no mtime
    assert compress_payload(raw) == packed  # equal input, equal output
    assert len(packed) < len(raw) / 2


def test_kept_payloads_are_found_by_hash_and_source(engine: Engine) -> None:
    with begin_write(engine) as conn:
        pubmed = keep(conn, "pubmed", range(0, 1200))
        keep(conn, "crossref", range(5000, 5010))
    with engine.connect() as conn:
        asked = [sha(n) for n in (*range(0, 1200, 7), 99999, 5001)]  # more than one IN chunk of 500
        found = stored_payload_ids(conn, "pubmed", [*asked, *asked])  # repeats are looked up once
    assert found == {sha(n): pubmed[sha(n)] for n in range(0, 1200, 7)}  # not another source's, not unknown


def test_the_lookup_probes_the_unique_key_inside_a_transaction_that_filled_the_table(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans IN on the unique key by itself; the query here is PostgreSQL's")
    with begin_write(engine) as conn:
        keep(conn, "pubmed", range(0, 5000))  # the statistics predate these rows
        shas = [sha(n) for n in range(4000, 4500)]
        compiled = _BY_HASH_PG.bindparams(source="pubmed", shas=shas).compile(conn)
        plan = "\n".join(
            row[0] for row in conn.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params)
        )
        assert "uq_raw_payloads_source_sha256" in plan, plan
        assert "Seq Scan on raw_payloads" not in plan and "Bitmap" not in plan, plan
        assert len(stored_payload_ids(conn, "pubmed", shas)) == 500

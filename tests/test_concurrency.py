"""Two real `harvest` processes storing overlapping articles into one database at the same time.

Issue "PostgreSQL as a first-class store", item 3: on PostgreSQL and on SQLite (WAL, busy timeout) the two
runs end with no duplicates, no lost values and no crash. The reference is one process harvesting the union
of both id lists into a fresh database: every stored value must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from db.engine import open_database
from tests.db_helpers import BUDGET_TABLES, crossref_message, database_params, fresh_database_url
from tests.standin import Delay, StandIn
from tests.test_cli import SEED, clone_record

FIRST = [str(p) for p in range(920_000, 920_040)]  # the two runs share 920020-920039
SECOND = [str(p) for p in range(920_020, 920_060)]
VOLATILE = {"fetched_at", "harvested_at", "updated_at", "created_at", "detected_at", "changed_at"}


@pytest.fixture(params=database_params())
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A shared database for the concurrent runs and a separate one for the reference run."""
    with (
        fresh_database_url(request.param, tmp_path / "shared") as shared,
        fresh_database_url(request.param, tmp_path / "reference") as reference,
    ):
        (tmp_path / "shared").mkdir(exist_ok=True)
        (tmp_path / "reference").mkdir(exist_ok=True)
        yield shared, reference


@pytest.fixture
def standin() -> Iterator[StandIn]:
    records = [clone_record(SEED, pmid) for pmid in sorted({*FIRST, *SECOND})]
    with StandIn(records) as server:
        # Every other article has a Crossref work, so enrichment writes through the reconcile path too.
        for pmid in sorted({*FIRST, *SECOND})[::2]:
            server.add_crossref_works(
                crossref_message(f"10.5555/test.{pmid}", **{"is-referenced-by-count": int(pmid) % 97})
            )
        # Slow efetch answers keep both processes in flight at once, so their batches interleave.
        server.inject("efetch.fcgi", *[Delay(0.15)] * 16)
        yield server


def _harvest(url: str, ids: list[str], standin: StandIn, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    id_file = tmp_path / f"{name}.txt"
    id_file.write_text("\n".join(ids) + "\n")
    config = tmp_path / "fast.toml"
    config.write_text("[ncbi]\nefetch_batch_size = 5\n\n[http]\nbackoff_initial = 0.05\nbackoff_max = 0.2\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")},
        **standin.env(),
        "HOME": str(tmp_path),
        "HARVEST_EMAIL": "tests@example.org",
        "HARVEST_CONFIG": str(config),
        "NCBI_API_KEY": "fake-key-for-the-stand-in",  # 10 requests/s instead of 3: a shorter test
    }
    return subprocess.Popen(
        [sys.executable, "-m", "harvester", "--db", url, "pmid", "--from", str(id_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def _stored(url: str) -> dict[str, Any]:
    """What the database holds, without ids and timestamps: per table, the sorted rows keyed by PMID."""
    engine = open_database(url, migrate=False)
    try:
        with engine.connect() as conn:
            pmid_of = {int(i): str(p) for i, p in conn.execute(sa.text("SELECT id, pmid FROM articles"))}
            tables: dict[str, Any] = {}
            for table in sa.inspect(conn).get_table_names():
                if table in {"alembic_version", "harvest_runs", "raw_payloads", "journals", *BUDGET_TABLES}:
                    continue
                rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings().all()  # noqa: S608 - reflected name
                tables[table] = sorted(json.dumps(_stable(dict(r), pmid_of), sort_keys=True) for r in rows)
            tables["raw_payloads"] = sorted(
                f"{s}:{i}:{h}"
                for s, i, h in conn.execute(
                    sa.text("SELECT source, source_id, sha256 FROM raw_payloads")
                ).all()
            )
            return tables
    finally:
        engine.dispose()


def _stable(row: dict[str, Any], pmid_of: dict[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in VOLATILE or key in {"id", "run_id", "payload_id", "journal_id"}:
            continue
        if key == "article_id":
            value = pmid_of.get(value, f"non-pubmed:{value}")
        out[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return out


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_two_processes_store_overlapping_articles_without_duplicates_or_loss(
    two_urls: tuple[str, str], standin: StandIn, tmp_path: Path
) -> None:
    shared, reference = two_urls
    first = _harvest(shared, FIRST, standin, tmp_path, "first")
    second = _harvest(shared, SECOND[::-1], standin, tmp_path, "second")  # the overlap in the other order
    results = [_finish(first), _finish(second)]
    for code, _out, err in results:
        assert code == 0, err
        assert "Traceback" not in err

    code, _out, err = _finish(_harvest(reference, sorted({*FIRST, *SECOND}), standin, tmp_path, "reference"))
    assert code == 0, err

    concurrent, alone = _stored(shared), _stored(reference)
    assert concurrent["articles"] == alone["articles"]
    assert len(concurrent["articles"]) == 60
    for table in alone:
        assert concurrent[table] == alone[table], table

    engine = open_database(shared, migrate=False)
    try:
        with engine.connect() as conn:
            duplicates = conn.execute(
                sa.text(
                    "SELECT source, source_id FROM source_records"
                    " GROUP BY source, source_id HAVING COUNT(*) > 1"
                )
            ).all()
            runs = conn.execute(sa.text("SELECT status, started_at, finished_at FROM harvest_runs")).all()
    finally:
        engine.dispose()
    assert duplicates == []
    assert [status for status, _start, _end in runs] == ["ok", "ok"]
    # The two runs really overlapped in time: each started before the other finished.
    (_, start_a, end_a), (_, start_b, end_b) = runs
    assert start_a < end_b and start_b < end_a

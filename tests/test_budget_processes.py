"""Issue 12, item 4: three `harvest` processes, as on three hosts, keep one NCBI budget through PostgreSQL.

Each process has its own pacing file (its own HARVEST_RATE_DIR, as on another machine), so only the
request budget in the shared database can hold them together. Counted in the stand-in's own log, with the
margin tests/pacing.py explains (a request sent in time may be logged late on a loaded machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import open_database
from harvester.core.errors import ExitCode
from tests.db_helpers import fresh_database_url
from tests.pacing import assert_paced
from tests.standin import StandIn
from tests.test_cli import SEED, clone_record

PROCESSES = 3
PER_PROCESS = 32  # one efetch each: 96 requests at 3 a second, a run of over 30 s
LIMIT = 3  # NCBI's requests per second without a key


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url("postgresql", tmp_path) as url:
        open_database(url).dispose()  # migrated once, before the processes start
        yield url


@pytest.mark.timeout(300)  # a long scenario: over 30 s alone (README, Testing)
def test_three_hosts_share_one_budget_of_three_requests_a_second(tmp_path: Path, pg_url: str) -> None:
    ids = [[str(910001 + n * PER_PROCESS + i) for i in range(PER_PROCESS)] for n in range(PROCESSES)]
    records = [clone_record(SEED, pmid) for group in ids for pmid in group]
    config = tmp_path / "one-per-batch.toml"
    config.write_text("[ncbi]\nefetch_batch_size = 1\n")
    script = Path(sys.executable).parent / "harvest"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HARVEST_") and k not in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN"}
    }
    with StandIn(records) as standin:
        processes = []
        for n in range(PROCESSES):
            host = tmp_path / f"host{n}"  # a machine of its own: its own HOME and pacing file
            env = {
                **base,
                **standin.env(),
                "HOME": str(host),
                "HARVEST_EMAIL": "tests@example.org",
                "HARVEST_CONFIG": str(config),
                "HARVEST_RATE_DIR": str(host / "rate"),
            }
            processes.append(
                subprocess.Popen(
                    [str(script), "--db", pg_url, "pmid", "--no-enrich", *ids[n]],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:
            _out, err = process.communicate(timeout=240)
            assert process.returncode == ExitCode.OK, err
            assert "paces its requests alone" not in err  # the budget was reached throughout
        times = sorted(r.time for r in standin.requests)
    assert len(times) == PROCESSES * PER_PROCESS
    for n in range(PROCESSES):
        assert len(list((tmp_path / f"host{n}" / "rate").glob("ncbi-*.sends"))) == 1

    # Never more than 3 in any second, but for one late-logged request per process (tests/pacing.py):
    # 3 + 3 in any second, 6 + 3 in any 2.2 s. Three processes pacing apart show 9 a second, 18 in 2.2 s.
    assert_paced(times, LIMIT, senders=PROCESSES)
    assert_paced(times, LIMIT, window=2.2, senders=PROCESSES)

    # Over the run, in the stand-in's own time: at least 85 % of the allowance used.
    span = times[-1] - times[0]
    assert span >= 30.0, f"the run spans {span:.1f} s of the stand-in's log; 96 paced requests take longer"
    used = (len(times) - 1) / (LIMIT * span)
    assert used >= 0.85, f"{len(times)} requests in {span:.1f} s use {used:.0%} of {LIMIT} a second"

    engine = open_database(pg_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM articles")).scalar_one()
            budgets = conn.execute(sa.text("SELECT service FROM request_budgets")).scalars().all()
    finally:
        engine.dispose()
    assert stored == PROCESSES * PER_PROCESS
    assert budgets == ["ncbi"]  # one row for all three hosts

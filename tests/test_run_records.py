"""Run records that tell the truth (issue 14, item 6), through the real ``harvest`` console script.

Ctrl-C in nightly and ingest is tested beside those commands (tests/test_nightly.py, tests/test_ingest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.core.errors import ExitCode
from tests.standin import StandIn

SCRIPT = Path(sys.executable).parent / "harvest"
SEED = Path(__file__).parent / "fixtures" / "efetch_pubmed_35350566.xml"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn([SEED]) as server:
        yield server


def harvest(home: Path, server: StandIn, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")}
    env |= {"HOME": str(home), "HARVEST_EMAIL": "tests@example.org", "HARVEST_RATE_DIR": "off"}
    env |= server.env()
    return subprocess.Popen(
        [str(SCRIPT), "--db", str(home / "h.sqlite"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_every_run_records_pid_host_and_the_exit_code_and_a_not_found_run_is_not_ok(
    tmp_path: Path, standin: StandIn
) -> None:
    found = harvest(tmp_path, standin, "pmid", "--no-enrich", "35350566")
    assert finished(found)[0] == ExitCode.OK
    missing = harvest(tmp_path, standin, "doi", "--no-enrich", "10.9999/not.there")
    code, _out, err = finished(missing)
    assert code == ExitCode.NOT_FOUND, err
    bad = harvest(tmp_path, standin, "pmid", "--no-enrich", "35350566", "99999999")
    assert finished(bad)[0] == ExitCode.NOT_FOUND

    code, out, err = finished(harvest(tmp_path, standin, "--json", "runs"))
    assert code == ExitCode.OK, err
    document = json.loads(out)
    assert list(document) == ["runs"]
    runs = document["runs"]
    assert [(r["status"], r["summary"]["exit_code"], r["pid"]) for r in runs] == [
        ("not_found", 3, bad.pid),
        ("not_found", 3, missing.pid),
        ("ok", 0, found.pid),
    ]
    assert all(r["host"] for r in runs)

    code, out, _err = finished(harvest(tmp_path, standin, "runs", "--status", "ok"))
    assert code == ExitCode.OK
    header, row = out.splitlines()
    assert header.split()[:2] == ["ID", "STATUS"] and row.split()[:2] == ["1", "ok"]
    assert header.split() == [
        "ID",
        "STATUS",
        "STARTED",
        "(UTC)",
        "FINISHED",
        "(UTC)",
        "EXIT",
        "PID",
        "HOST",
        "COMMAND",
    ]
    assert row[header.index("HOST") :].split()[0] == os.uname().nodename
    assert row[header.index("COMMAND") :].startswith("harvest pmid (1 ids)")
    exit_end = header.index("EXIT") + len("EXIT")
    assert row[exit_end - 1] == "0"  # right-aligned under EXIT


def test_runs_help_names_every_status(tmp_path: Path, standin: StandIn) -> None:
    code, out, _err = finished(harvest(tmp_path, standin, "runs", "--help"))
    assert code == ExitCode.OK
    for status in ("running", "ok", "not_found", "partial", "failed", "interrupted", "abandoned"):
        assert status in out, status

"""`harvest history` a person can read (issue 14, item 7), through the real console script: the creation
is recorded, values are JSON throughout, keys as in the JSON documents, --json one object, --from."""

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
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(
        [FIXTURES / "efetch_pubmed_35350566.xml"],
        pmc_sources=[FIXTURES / "efetch_pmc_PMC8958025.xml"],
        crossref_sources=[FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json"],
    ) as server:
        yield server


def harvest(home: Path, server: StandIn, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")}
    env |= {"HOME": str(home), "HARVEST_EMAIL": "tests@example.org", "HARVEST_RATE_DIR": "off"}
    env |= server.env()
    return subprocess.run(
        [str(SCRIPT), "--db", str(home / "h.sqlite"), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_history_records_the_creation_in_json_with_the_documents_key_names(
    tmp_path: Path, standin: StandIn
) -> None:
    assert harvest(tmp_path, standin, "pmid", "35350566").returncode == ExitCode.OK

    done = harvest(tmp_path, standin, "--json", "history", "35350566")
    assert done.returncode == ExitCode.OK, done.stderr
    document = json.loads(done.stdout)
    assert list(document) == ["history"]
    rows = document["history"]
    first = rows[0]
    assert (first["field"], first["old_value"], first["source"]) == ("created", None, "pubmed")
    assert first["new_value"]["pmid"] == "35350566"
    assert sum(row["field"] == "created" for row in rows) == 1
    licences = [row for row in rows if row["field"] == "licenses"]
    assert licences, [row["field"] for row in rows]
    doc = json.loads(harvest(tmp_path, standin, "show", "--format", "json", "35350566").stdout)[0]
    assert set(licences[-1]["new_value"][0]) == set(doc["licenses"][0])  # the same key names

    text = harvest(tmp_path, standin, "history", "35350566")
    assert text.returncode == ExitCode.OK
    assert "None" not in text.stdout and "'" not in text.stdout  # JSON notation, not Python's
    status = [line for line in text.stdout.splitlines() if " pmc_status: " in line]
    assert status and status[0].endswith('pmc_status: null -> "found"')
    assert "created: null -> {" in text.stdout


def test_history_reads_ids_from_a_file(tmp_path: Path, standin: StandIn) -> None:
    assert harvest(tmp_path, standin, "pmid", "--no-enrich", "35350566").returncode == ExitCode.OK
    listed = tmp_path / "ids.txt"
    listed.write_text("35350566\n99999999\n")
    done = harvest(tmp_path, standin, "--json", "history", "--from", str(listed))
    assert done.returncode == ExitCode.NOT_FOUND
    assert [row["article"] for row in json.loads(done.stdout)["history"]] == ["35350566"]
    assert "99999999" in done.stderr

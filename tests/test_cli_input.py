"""Ids like EDirect takes them (issue 14, item 5), through the real ``harvest`` console script: from a
pipe when no ids are named, separated by newlines, spaces, tabs or commas, and hints for the wrong kind."""

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
from tests.test_cli import SEED, clone_record

SCRIPT = Path(sys.executable).parent / "harvest"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn([SEED, *(clone_record(SEED, str(p)) for p in range(900001, 900004))]) as server:
        yield server


def harvest(
    home: Path, server: StandIn, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")}
    env |= {"HOME": str(home), "HARVEST_EMAIL": "tests@example.org", "HARVEST_RATE_DIR": "off"}
    env |= server.env()
    return subprocess.run(
        [str(SCRIPT), "--db", str(home / "h.sqlite"), *args],
        env=env,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored(home: Path, server: StandIn) -> list[str]:
    done = harvest(home, server, "--json", "runs")
    assert done.returncode == ExitCode.OK, done.stderr
    return [run["command"] for run in json.loads(done.stdout)["runs"]]


def test_ids_come_from_a_pipe_when_none_are_named(tmp_path: Path, standin: StandIn) -> None:
    done = harvest(tmp_path, standin, "pmid", "--no-enrich", stdin="35350566\n")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "requested 1, created 1" in done.stdout
    shown = harvest(tmp_path, standin, "show", "--format", "json", stdin="35350566\n")
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert [doc["pmid"] for doc in json.loads(shown.stdout)] == ["35350566"]


def test_ids_separated_by_newlines_spaces_tabs_or_commas_everywhere(tmp_path: Path, standin: StandIn) -> None:
    piped = harvest(tmp_path, standin, "pmid", "--no-enrich", stdin="35350566, 900001\t900002\n")
    assert piped.returncode == ExitCode.OK, piped.stderr
    assert "requested 3, created 3" in piped.stdout
    named = harvest(tmp_path, standin, "pmid", "--no-enrich", "900001,900002", "900003")
    assert named.returncode == ExitCode.OK, named.stderr
    assert "requested 3, created 1" in named.stdout
    listed = tmp_path / "ids.txt"
    listed.write_text("# mine\n35350566 900001,900002\n\t900003\n")
    shown = harvest(tmp_path, standin, "show", "--format", "json", "--from", str(listed))
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert [doc["pmid"] for doc in json.loads(shown.stdout)] == ["35350566", "900001", "900002", "900003"]
    assert stored(tmp_path, standin) == ["harvest pmid (3 ids)", "harvest pmid (3 ids)"]


def test_named_ids_never_read_standard_input(tmp_path: Path, standin: StandIn) -> None:
    """A harness with stdin at EOF (or a pipe holding other ids) changes nothing for named ids."""
    at_eof = harvest(tmp_path, standin, "pmid", "--no-enrich", "35350566")  # stdin is /dev/null
    assert at_eof.returncode == ExitCode.OK, at_eof.stderr
    ignored = harvest(tmp_path, standin, "pmid", "--no-enrich", "900001", stdin="900002\n")
    assert "requested 1, created 1" in ignored.stdout
    assert [r.params.get("id") for r in standin.requests_for("efetch.fcgi")] == ["35350566", "900001"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["pmid"], None, "no PMIDs given, and standard input is empty"),
        (["pmid", "--from", "-"], "", "no PMIDs in standard input: it is empty"),
        (["pmid", "--from", "-"], "# only a comment\n", "no PMIDs in standard input: it is empty"),
        (["pmid", "PMC8958025"], None, "looks like a PMCID: use 'harvest pmcid PMC8958025'"),
        (["pmid", "10.3389/fonc.2022.836548"], None, "looks like a DOI: use 'harvest doi 10.3389/fonc"),
        (["pmcid", "doi:10.3389/fonc.2022.836548"], None, "looks like a DOI: use 'harvest doi doi:10.3389"),
        (["doi", "35350566"], None, "looks like a PMID: use 'harvest pmid 35350566'"),
        (["doi", "PMC8958025"], None, "looks like a PMCID: use 'harvest pmcid PMC8958025'"),
    ],
    ids=[
        "nothing",
        "empty-pipe",
        "comments-only",
        "pmcid-to-pmid",
        "doi-to-pmid",
        "doi-to-pmcid",
        "pmid-to-doi",
        "pmcid-to-doi",
    ],
)
def test_no_ids_or_ids_of_the_wrong_kind_say_what_to_do(
    tmp_path: Path, standin: StandIn, args: list[str], stdin: str | None, message: str
) -> None:
    done = harvest(tmp_path, standin, *args, stdin=stdin)
    assert done.returncode == ExitCode.USAGE
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert standin.requests == []

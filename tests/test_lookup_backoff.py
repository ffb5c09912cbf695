"""Look-ups that back off (issue 14, item 9), end to end through the CLI against the stand-in.

An article a source did not know was asked again on every `harvest enrich` (95 articles, 37 s, every
night), and of every source. Now `harvest enrich` without ids asks a source that said "not found" again
only 1, 2, 4, ... days after each day it said so (at most [enrich] not_found_max_days), and each article
only of the sources it is due for; named ids are always asked. The requests are counted at the stand-in;
the day is moved by replacing the enrichment step's clock (no sleeping, no wall clock judged). Both
dialects: the commands run with ``--db`` (``db_url`` comes first: ``home`` clears the HARVEST_ variables).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import harvester.jobs.enrichment
from db.engine import open_database
from harvester.cli import run
from harvester.core.errors import ExitCode
from tests.db_helpers import BUDGET_TABLES, snapshot
from tests.standin import ICITE_PUBS, StandIn
from tests.test_cli import SEED, clone_record
from tests.test_cli_enrich import clone_work, home, standin

__all__ = ["home", "standin"]  # the fixtures, imported for pytest

UNKNOWN = "900006"  # stored from PubMed; PMC, Crossref and iCite do not know it
KNOWN = "900001"  # PMC and Crossref know it; iCite does not

DAY0 = datetime.now(UTC).date()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the enrichment step's today to DAY0 + n days."""

    def move_to(days: int) -> None:
        day = DAY0 + timedelta(days=days)
        monkeypatch.setattr(harvester.jobs.enrichment, "utc_today", lambda: day)

    move_to(0)
    return move_to


def asked(standin: StandIn, pmid: str, *, clear: bool = True) -> set[str]:
    """The sources asked about the clone of ``pmid`` since the log was last cleared (and clear it)."""
    sources: set[str] = set()
    for r in standin.requests:
        text = " ".join([r.path, *r.params.values()])
        if r.path.endswith("efetch.fcgi") and r.params.get("db") == "pmc" and f"9{pmid}" in text:
            sources.add("pmc")
        elif "/crossref/" in r.path and f"test.{pmid}" in text:
            sources.add("crossref")
        elif f"/{ICITE_PUBS}" in r.path and pmid in text:
            sources.add("icite")
    if clear:
        standin.clear_log()
    return sources


def enrich(db_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """`harvest --json enrich ...`; its summary."""
    capsys.readouterr()
    assert run(["--db", db_url, "--json", "enrich", *args]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert isinstance(summary, dict)
    return summary


def stored(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row but the run log's and the request budget's (each run records itself, by design)."""
    engine = open_database(db_url, migrate=False)
    try:
        skip = {"harvest_runs", *BUDGET_TABLES}
        return {name: rows for name, rows in snapshot(engine).items() if name not in skip}
    finally:
        engine.dispose()


def backoff_rows(db_url: str) -> list[tuple[Any, ...]]:
    engine = open_database(db_url, migrate=False)
    try:
        with engine.connect() as conn:
            query = sa.text(
                "SELECT a.pmid, b.source, b.misses FROM lookup_backoff b"
                " JOIN articles a ON a.id = b.article_id ORDER BY a.pmid, b.source"
            )
            return [tuple(row) for row in conn.execute(query)]
    finally:
        engine.dispose()


@pytest.mark.timeout(300)
def test_enrich_asks_a_source_that_did_not_know_again_after_1_2_4_days_and_only_that_source(
    db_url: str,
    standin: StandIn,
    home: Path,
    clock: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    standin.add_records(clone_record(SEED, UNKNOWN))
    assert run(["--db", db_url, "pmid", UNKNOWN, KNOWN]) == ExitCode.OK  # day 0: named, asked, not found
    assert asked(standin, UNKNOWN) == {"pmc", "crossref", "icite"}
    assert backoff_rows(db_url) == [
        (KNOWN, "icite", 1),
        (UNKNOWN, "crossref", 1),
        (UNKNOWN, "icite", 1),
        (UNKNOWN, "pmc", 1),
    ]
    before = stored(db_url)
    assert run(["--db", db_url, "pmid", UNKNOWN, KNOWN]) == ExitCode.OK  # named ids are always asked
    assert asked(standin, UNKNOWN) == {"pmc", "crossref", "icite"}
    assert stored(db_url) == before  # the same answers on the same day: nothing written

    summary = enrich(db_url, capsys)  # day 0 again, without ids: every look-up backs off
    assert standin.requests == [] and stored(db_url) == before
    backed_off = {s: summary["enrichment"][s]["backed_off"] for s in ("pmc", "crossref", "icite")}
    assert backed_off == {"pmc": 1, "crossref": 1, "icite": 2}
    assert summary["enrichment"]["backed_off"] == 4

    clock(1)  # the 1-day wait is over: asked again, each article only of the sources that did not know it
    summary = enrich(db_url, capsys)
    assert asked(standin, KNOWN, clear=False) == {"icite"}  # its PMC and Crossref records are fresh
    assert asked(standin, UNKNOWN) == {"pmc", "crossref", "icite"}
    assert summary["enrichment"]["backed_off"] == 0
    assert backoff_rows(db_url)[0] == (KNOWN, "icite", 2)

    for day, expected in ((2, set()), (3, {"pmc", "crossref", "icite"}), (4, set()), (6, set())):
        clock(day)
        enrich(db_url, capsys)
        assert asked(standin, UNKNOWN) == expected, day

    # Crossref registers the DOI: a "found" clears Crossref's back-off; PMC's and iCite's go on
    clock(7)
    standin.add_crossref_works(json.dumps(clone_work(f"10.5555/test.{UNKNOWN}")).encode())
    summary = enrich(db_url, capsys)
    assert asked(standin, UNKNOWN) == {"pmc", "crossref", "icite"}
    assert summary["enrichment"]["crossref"]["updated"] == 1
    assert [row for row in backoff_rows(db_url) if row[0] == UNKNOWN] == [
        (UNKNOWN, "icite", 4),
        (UNKNOWN, "pmc", 4),
    ]
    clock(8)  # Crossref's record is fresh, PMC and iCite wait 8 days: nothing asked, nothing written
    before = stored(db_url)
    summary = enrich(db_url, capsys)
    assert standin.requests == [] and stored(db_url) == before
    assert summary["enrichment"]["crossref"]["backed_off"] == 0
    assert summary["enrichment"]["pmc"]["backed_off"] == 1
    assert run(["--db", db_url, "enrich", UNKNOWN]) == ExitCode.OK  # named: asked whatever the wait
    assert asked(standin, UNKNOWN) == {"pmc", "crossref", "icite"}


def test_the_wait_is_capped_by_enrich_not_found_max_days(
    db_url: str,
    standin: StandIn,
    home: Path,
    clock: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = home / "backoff.toml"
    config.write_text("[enrich]\nnot_found_max_days = 2\n")
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    standin.add_records(clone_record(SEED, UNKNOWN))
    assert run(["--db", db_url, "pmid", UNKNOWN]) == ExitCode.OK
    asked(standin, UNKNOWN)
    days = []
    for day in range(1, 10):  # waits 1, 2, 2, 2 (uncapped 1, 2, 4, 8): asked on days 1, 3, 5, 7, 9
        clock(day)
        summary = enrich(db_url, capsys, "--source", "crossref")
        if asked(standin, UNKNOWN):
            days.append(day)
            assert summary["enrichment"]["crossref"]["not_found"] == 1
        else:
            assert summary["enrichment"]["crossref"]["backed_off"] == 1
    assert days == [1, 3, 5, 7, 9]


def test_a_bad_not_found_max_days_is_a_config_error_naming_the_key(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = home / "bad.toml"
    config.write_text("[enrich]\nnot_found_max_days = -1\n")
    capsys.readouterr()
    assert run(["--config", str(config), "enrich"]) == ExitCode.USAGE
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("harvest: error: ") and "enrich.not_found_max_days" in line and str(config) in line

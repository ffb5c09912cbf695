"""``harvest ingest --workers N`` (issue 12, items 1 and 2), through real ``harvest`` processes, on both
dialects: on PostgreSQL the files go through the database's work queue and N worker processes apply them;
on SQLite N processes read and parse while one stores. Either way the database ends as one process
applying the same files in NLM's order leaves it, table by table (tests/db_helpers.comparable_tables), each
file is recorded once, and NLM's ordering rules hold (tests/bulk_set.py makes files whose end state
depends on the order).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import open_database
from harvester.core.errors import ExitCode
from tests.bulk_set import DELETED_BY_N0005, BulkSet, make_bulk_set
from tests.db_helpers import comparable_tables, database_params, fresh_database_url

HARVEST = [sys.executable, "-m", "harvester"]


def harvest(url: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARVEST_EMAIL": "tests@example.org", "HARVEST_TEST_INGEST_BATCH": "25"}
    return subprocess.run(
        [*HARVEST, "--db", url, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture(params=database_params())
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database for the workers and one for the reference run, on one dialect."""
    with (
        fresh_database_url(request.param, tmp_path / "workers") as workers,
        fresh_database_url(request.param, tmp_path / "alone") as alone,
    ):
        (tmp_path / "workers").mkdir(exist_ok=True)
        (tmp_path / "alone").mkdir(exist_ok=True)
        yield workers, alone


@pytest.fixture
def bulk(tmp_path: Path) -> BulkSet:
    return make_bulk_set(tmp_path / "pubmed")


def tables(url: str) -> dict[str, list[str]]:
    engine = open_database(url, migrate=False)
    try:
        return comparable_tables(engine)
    finally:
        engine.dispose()


def applied_files(url: str) -> list[tuple[int, str]]:
    """(id, name) of every bulk_files row, in the order recorded."""
    engine = open_database(url, migrate=False)
    try:
        with engine.connect() as conn:
            return [
                (int(i), str(n))
                for i, n in conn.execute(sa.text("SELECT id, name FROM bulk_files ORDER BY id"))
            ]
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = open_database(url, migrate=False)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def articles(url: str) -> dict[str, tuple[str, bool]]:
    engine = open_database(url, migrate=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT pmid, title, deleted FROM articles"))
            return {str(p): (str(t), bool(d)) for p, t, d in rows}
    finally:
        engine.dispose()


def assert_same_tables(workers: dict[str, list[str]], alone: dict[str, list[str]]) -> None:
    assert workers.keys() == alone.keys()
    for name in alone:
        assert workers[name] == alone[name], name


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
@pytest.mark.parametrize("workers", [2, 3])
def test_n_workers_end_with_the_database_one_process_leaves(
    two_urls: tuple[str, str], bulk: BulkSet, workers: int
) -> None:
    shared, reference = two_urls

    done = harvest(shared, "ingest", "--workers", str(workers), str(bulk.baseline), str(bulk.updates))

    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    names = [f.name for f in bulk.files()]
    assert [line.split()[1] for line in lines[: len(names)]] == names  # NLM's order, as one process lists
    assert all(line.startswith("applied  ") for line in lines[: len(names)]), lines
    assert lines[len(names)].startswith(
        "files 7: applied 7, skipped (already applied) 0, refused 0, failed 0"
    )

    alone = harvest(reference, "ingest", str(bulk.baseline), str(bulk.updates))
    assert alone.returncode == ExitCode.OK, alone.stderr
    assert alone.stdout.splitlines()[: len(names) + 1] == lines[: len(names) + 1]  # the same counts per file

    assert_same_tables(tables(shared), tables(reference))
    recorded = applied_files(shared)
    assert sorted(name for _id, name in recorded) == names  # each file recorded once
    updates = [
        name
        for _id, name in recorded
        if name.startswith(("pubmed26n0004", "pubmed26n0005", "pubmed26n0006", "pubmed26n0007"))
    ]
    assert updates == names[3:]  # update files recorded in their sequence, each after the one before
    stored = articles(shared)
    assert stored[bulk.retitled][0] == "Revised again by update 7"
    assert stored[bulk.revived] == ("Revived by update 6", False)
    assert stored[DELETED_BY_N0005[1]][1] is False  # sent again by update 7, after update 5 deleted it
    assert all(stored[pmid][1] for pmid in DELETED_BY_N0005[2:])
    assert all(stored[pmid][1] for pmid in bulk.deleted_by_n0006)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("database", database_params())
def test_a_one_file_gap_in_the_updates_is_refused_with_workers(
    database: str, bulk: BulkSet, tmp_path: Path
) -> None:
    with fresh_database_url(database, tmp_path / "db") as url:
        (tmp_path / "db").mkdir(exist_ok=True)
        skipping = [bulk.update(4), bulk.update(6)]  # n0005 is missing: a gap of exactly one file

        done = harvest(url, "ingest", "--workers", "2", str(bulk.baseline), *map(str, skipping))

        assert done.returncode == ExitCode.USAGE
        errors = done.stderr.splitlines()
        assert errors == [
            "harvest: error: refused pubmed26n0006.xml update 2026/6: pubmed26n0006.xml would skip 1 update "
            "file(s) after pubmed26n0004.xml.gz: pubmed26n0005 not applied (apply it first, or its changes "
            "and deletions are lost); --force applies it anyway"
        ]
        assert "files 5: applied 4, skipped (already applied) 0, refused 1, failed 0" in done.stdout
        assert [name for _id, name in applied_files(url)][-1] == "pubmed26n0004.xml.gz"
        stored = articles(url)
        assert stored[bulk.revived][0] != "Revived by update 6"  # nothing of the refused file was stored
        assert not any(stored[pmid][1] for pmid in bulk.deleted_by_n0006)


@pytest.mark.parametrize("database", database_params())
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0", "F"], "invalid value for '--workers': "),
        (["--workers", "65", "F"], "invalid value for '--workers': "),
        (["--workers", "two", "F"], "invalid value for '--workers': "),
        (["--join", "--workers", "2"], "--join makes this process one worker, --workers N starts N of them"),
        (["--status", "F"], "--status shows the work queue: give it no files and no other option"),
        (
            ["--lease", "5", "F"],
            "--lease is for the workers of the queue: give it with --workers N or --join",
        ),
        (["--workers", "2"], "missing argument 'FILE|DIR': name PubMed baseline or update files"),
        (["--workers", "2", "MISSING"], "file not found: "),
    ],
)
def test_bad_worker_options_are_one_line_and_exit_2_with_nothing_done(
    database: str, tmp_path: Path, args: list[str], message: str
) -> None:
    with fresh_database_url(database, tmp_path) as url:
        good = tmp_path / "pubmed26n0001.xml"
        good.write_text("<PubmedArticleSet></PubmedArticleSet>\n")
        given = [
            str(good) if a == "F" else str(tmp_path / "missing.xml") if a == "MISSING" else a for a in args
        ]

        done = harvest(url, "ingest", *given)

        assert done.returncode == ExitCode.USAGE, done.stderr
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"harvest: error: {message}"), (
            done.stderr
        )
        assert "Traceback" not in done.stderr
        if not message.startswith("file not found"):
            assert done.stderr.endswith(" (see 'harvest ingest --help')\n"), done.stderr
        if database == "sqlite":
            assert not (tmp_path / "harvest.sqlite").exists()  # refused before the database was created


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["ingest", "--join"], "harvest ingest --join"),
        (["ingest", "--status"], "harvest queue"),
        (["queue"], "harvest queue"),
        (["worker"], "harvest worker"),
    ],
)
def test_queue_commands_on_sqlite_are_refused_with_exit_2(
    tmp_path: Path, command: list[str], named: str
) -> None:
    url = f"sqlite:///{tmp_path / 'harvest.sqlite'}"

    done = harvest(url, *command)

    assert done.returncode == ExitCode.USAGE
    assert done.stdout == ""
    assert done.stderr == (
        f"harvest: error: {named} "
        "needs a PostgreSQL database: the work queue lives there, shared by every host (on SQLite, "
        "'harvest ingest --workers N FILE...' parses in N processes and one process writes)\n"
    )
    assert not (tmp_path / "harvest.sqlite").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("database", database_params())
def test_a_rejected_record_is_kept_once_and_named_with_exit_8_under_workers(
    database: str, bulk: BulkSet, tmp_path: Path
) -> None:
    bad = Path(__file__).parent / "fixtures" / "bulk_update_one_bad_record.xml"  # the third record's Version
    update = bulk.updates / "pubmed26n0004.xml"
    shutil.copyfile(bad, update)
    with fresh_database_url(database, tmp_path / "db") as url:
        (tmp_path / "db").mkdir(exist_ok=True)

        done = harvest(url, "ingest", "--workers", "2", str(bulk.baseline), str(update))

        assert done.returncode == ExitCode.REJECTED, done.stderr
        assert (
            "applied  pubmed26n0004.xml update 2026/4: 5 records (created 4, updated 0, unchanged 0), "
            "1 deleted (0 stored articles flagged), 1 rejected (kept raw in rejected_records; PMIDs 39000012)"
        ) in done.stdout.splitlines()
        assert ", rejected 1" in done.stdout.splitlines()[-2]  # the total line
        [error] = done.stderr.splitlines()  # once, with its reason
        assert error.startswith(
            f"harvest: error: {update}: rejected, kept raw in rejected_records: PMID 39000012: Version "
            "'9223372036854775808' is not a whole number from 1 to 999"
        )
        kept = rows(url, "SELECT file_name, pmid FROM rejected_records")
        assert kept == [("pubmed26n0004.xml", "39000012")]

"""The PostgreSQL work queue of ``harvest ingest`` (issue 12, items 1, 2 and 5), through real processes.

A worker is stopped mid-file deterministically: with HARVEST_TEST_INGEST_HOLD=DIR, the worker that has
stored a batch of FILE while DIR/FILE.hold exists renames it FILE.held (writing its pid there) and waits
until DIR/FILE.go exists (harvester/cli.py, _test_hold); HARVEST_TEST_INGEST_BATCH=25 gives the small
files several batches. No test reads the clock to judge anything: waits are for something to happen
(a file to appear, a line to be logged, a process to end), bounded only by the test's timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import open_database
from db.queue import WorkerSession, enqueue
from db.runs import exclusive_run
from harvester.core.errors import BusyError, ExitCode
from harvester.jobs.workers import queue_entries
from tests.bulk_set import BulkSet, make_bulk_set
from tests.db_helpers import comparable_tables, fresh_database_url

HARVEST = [sys.executable, "-m", "harvester"]
HOST = socket.gethostname()
pytestmark = pytest.mark.postgres

PATIENCE = 20_000  # polls of 0.02 s at most while waiting for something to happen (the test timeout ends it)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url("postgresql", tmp_path / "queue") as url:
        yield url


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url("postgresql", tmp_path / "alone") as url:
        yield url


@pytest.fixture
def bulk(tmp_path: Path) -> BulkSet:
    return make_bulk_set(tmp_path / "pubmed")


@pytest.fixture
def hold(tmp_path: Path) -> Path:
    folder = tmp_path / "hold"
    folder.mkdir()
    return folder


class Harvest:
    """A ``harvest`` process in the background, its output in files."""

    def __init__(self, url: str, *args: str, hold: Path | None, tmp_path: Path, name: str) -> None:
        env = {**os.environ, "HARVEST_EMAIL": "tests@example.org", "HARVEST_TEST_INGEST_BATCH": "25"}
        if hold is not None:
            env["HARVEST_TEST_INGEST_HOLD"] = str(hold)
        self.out_path, self.err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        self._out: IO[bytes] = self.out_path.open("wb")
        self._err: IO[bytes] = self.err_path.open("wb")
        self.process = subprocess.Popen(
            [*HARVEST, "--db", url, *args], stdout=self._out, stderr=self._err, env=env
        )
        self.pid = self.process.pid

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def finish(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout=timeout)
        self._out.close()
        self._err.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()


def wait_for(what: str, condition: Callable[[], bool], *alive: Harvest) -> None:
    for _ in range(PATIENCE):
        if condition():
            return
        for process in alive:
            if process.process.poll() is not None:
                pytest.fail(f"waiting for {what}: a process ended first: {process.stderr()}")
        time.sleep(0.02)
    pytest.fail(f"{what} never happened")


def held_by(hold: Path, name: str, *alive: Harvest) -> int:
    """Wait until a worker holds ``name`` after a batch; its pid."""
    held = hold / f"{name}.held"
    wait_for(f"a worker to hold {name}", lambda: held.exists() and held.read_text().strip() != "", *alive)
    return int(held.read_text())


def queue(url: str) -> dict[str, dict[str, Any]]:
    """``harvest --json queue``: each file's row by name."""
    done = subprocess.run(
        [*HARVEST, "--db", url, "--json", "queue"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return {f["name"]: f for f in json.loads(done.stdout)["files"]}


def one_process(url: str, bulk: BulkSet) -> dict[str, list[str]]:
    """The reference: one ``harvest ingest`` of every file, as comparable tables."""
    done = subprocess.run(
        [*HARVEST, "--db", url, "ingest", str(bulk.baseline), str(bulk.updates)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "HARVEST_EMAIL": "tests@example.org"},
    )
    assert done.returncode == 0, done.stderr
    return tables(url)


def tables(url: str) -> dict[str, list[str]]:
    engine = open_database(url, migrate=False)
    try:
        return comparable_tables(engine)
    finally:
        engine.dispose()


def rows(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = open_database(url, migrate=False)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(query), params)]
    finally:
        engine.dispose()


def assert_same_tables(queued: dict[str, list[str]], alone: dict[str, list[str]]) -> None:
    assert queued.keys() == alone.keys()
    for name in alone:
        assert queued[name] == alone[name], name


def recorded(url: str) -> list[str]:
    return [name for (name,) in rows(url, "SELECT name FROM bulk_files ORDER BY id")]


# ---- a worker that dies ----------------------------------------------------------------------------


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_a_worker_killed_mid_file_loses_its_claim_and_another_applies_the_file_once(
    pg: str, reference: str, bulk: BulkSet, hold: Path, tmp_path: Path
) -> None:
    (hold / "pubmed26n0002.xml.hold").touch()
    # A lease far longer than the test: only the worker's own connection lock can free its claim.
    first = Harvest(
        pg, "-v", "ingest", "--join", "--lease", "3600", str(bulk.baseline), str(bulk.updates),
        hold=hold, tmp_path=tmp_path, name="first",
    )  # fmt: skip
    try:
        pid = held_by(hold, "pubmed26n0002.xml", first)
        assert pid == first.pid
        row = queue(pg)["pubmed26n0002.xml"]  # mid-file: claimed, by whom and since when
        assert (row["status"], row["pid"], row["host"], row["worker"]) == (
            "claimed",
            pid,
            HOST,
            f"{HOST}:{pid}",
        )
        assert row["claimed_at"] is not None and row["attempts"] == 1
        assert "pubmed26n0002.xml" not in recorded(pg)
        os.kill(pid, signal.SIGKILL)
    finally:
        first.kill()

    second = Harvest(
        pg, "-v", "ingest", "--join", "--lease", "3600", hold=hold, tmp_path=tmp_path, name="second"
    )
    assert second.finish() == ExitCode.OK, second.stderr()

    assert f"pubmed26n0002.xml: taken over from {HOST}:{pid} (its worker ended)" in second.stderr()
    assert recorded(pg).count("pubmed26n0002.xml") == 1
    assert sorted(recorded(pg)) == [p.name for p in bulk.files()]
    row = queue(pg)["pubmed26n0002.xml"]
    assert (row["status"], row["attempts"]) == ("applied", 2)
    assert row["records_done"] == 59
    assert_same_tables(tables(pg), one_process(reference, bulk))
    # The killed worker's run cannot close itself: the worker that took its file over marked it.
    [(status,)] = rows(pg, "SELECT status FROM harvest_runs WHERE pid = :pid", pid=pid)
    assert status == "abandoned"


@pytest.mark.timeout(300)
def test_the_lease_of_a_stopped_worker_runs_out_and_its_writes_are_fenced_off(
    pg: str, reference: str, bulk: BulkSet, hold: Path, tmp_path: Path
) -> None:
    (hold / "pubmed26n0002.xml.hold").touch()
    first = Harvest(
        pg, "ingest", "--join", "--lease", "3", str(bulk.baseline), str(bulk.updates),
        hold=hold, tmp_path=tmp_path, name="first",
    )  # fmt: skip
    try:
        pid = held_by(hold, "pubmed26n0002.xml", first)
        # Stopped, not dead: its connection and its lock stay; only its lease can run out.
        os.kill(pid, signal.SIGSTOP)
        second = Harvest(
            pg, "-v", "ingest", "--join", "--lease", "3", hold=hold, tmp_path=tmp_path, name="second"
        )
        assert second.finish() == ExitCode.OK, second.stderr()
        assert f"pubmed26n0002.xml: taken over from {HOST}:{pid} (its lease ran out)" in second.stderr()
        assert recorded(pg).count("pubmed26n0002.xml") == 1
        after_takeover = tables(pg)

        (hold / "pubmed26n0002.xml.go").touch()
        os.kill(pid, signal.SIGCONT)  # it wakes up believing it still holds the file
        assert first.finish() == ExitCode.OK, first.stderr()
    finally:
        if first.process.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
        first.kill()

    assert (
        "pubmed26n0002.xml: the claim on pubmed26n0002.xml was taken over by another worker" in first.stderr()
    )
    assert "writes nothing more of the file" in first.stderr()
    assert tables(pg) == after_takeover  # the stale worker wrote nothing after it woke up
    assert recorded(pg).count("pubmed26n0002.xml") == 1
    assert_same_tables(after_takeover, one_process(reference, bulk))


# ---- NLM's order across workers ----------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_an_update_waits_for_the_one_before_it_while_that_ones_worker_is_slow(
    pg: str, reference: str, bulk: BulkSet, hold: Path, tmp_path: Path
) -> None:
    (hold / "pubmed26n0006.xml.hold").touch()
    first = Harvest(
        pg,
        "ingest",
        "--join",
        str(bulk.baseline),
        str(bulk.updates),
        hold=hold,
        tmp_path=tmp_path,
        name="first",
    )
    second = None
    try:
        pid = held_by(hold, "pubmed26n0006.xml", first)  # update 6 stored in part, not recorded
        second = Harvest(pg, "-v", "ingest", "--join", hold=hold, tmp_path=tmp_path, name="second")
        said = (
            f"waiting: pubmed26n0007.xml waits for pubmed26n0006.xml (claimed by {HOST}:{pid}) to be applied "
            "first"
        )
        wait_for("the second worker to hold update 7 back", lambda: said in second.stderr(), first, second)
        files = queue(pg)
        assert files["pubmed26n0007.xml"]["status"] == "waiting"
        assert files["pubmed26n0007.xml"]["waits_for"] == "pubmed26n0006.xml"
        assert files["pubmed26n0006.xml"]["status"] == "claimed"
        assert "pubmed26n0007.xml" not in recorded(pg)
        (hold / "pubmed26n0006.xml.go").touch()
        assert first.finish() == ExitCode.OK, first.stderr()
        assert second.finish() == ExitCode.OK, second.stderr()
    finally:
        first.kill()
        if second is not None:
            second.kill()

    order = recorded(pg)
    assert order.index("pubmed26n0006.xml") < order.index("pubmed26n0007.xml")
    assert_same_tables(tables(pg), one_process(reference, bulk))


# ---- the run lock -------------------------------------------------------------------------------------


@pytest.fixture
def engine(pg: str) -> Iterator[Engine]:
    engine = open_database(pg)
    try:
        yield engine
    finally:
        engine.dispose()


def test_workers_share_the_run_lock_and_a_nightly_is_refused_while_one_applies_a_file(engine: Engine) -> None:
    with WorkerSession(engine, run_id=None) as one, WorkerSession(engine, run_id=None) as two:
        assert one.take_run_lock() and two.take_run_lock()  # workers of one queue cooperate
        one.note_run_lock()
        with pytest.raises(BusyError) as caught:
            with exclusive_run(engine, "harvest nightly"):
                pytest.fail("a nightly ran while a worker applied a file")
        assert (
            f"another run is active: harvest worker {one.label} (pid {os.getpid()} on {HOST}, since"
            in str(caught.value)
        )
        one.release_run_lock()
        two.release_run_lock()
        with exclusive_run(engine, "harvest nightly"):  # between files the workers hold nothing
            assert not one.take_run_lock()  # and they wait while the nightly runs


@pytest.mark.timeout(300)
def test_an_ingest_with_workers_is_refused_while_a_nightly_runs_and_a_worker_waits_for_it(
    pg: str, engine: Engine, bulk: BulkSet, tmp_path: Path
) -> None:
    update = str(bulk.update(4))
    with exclusive_run(engine, "harvest nightly"):
        refused = subprocess.run(
            [*HARVEST, "--db", pg, "ingest", "--workers", "2", update],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert refused.returncode == ExitCode.BUSY
        assert refused.stdout == ""
        assert refused.stderr.startswith("harvest: error: another run is active: harvest nightly (pid ")
        assert refused.stderr.count("\n") == 1
        assert rows(pg, "SELECT count(*) FROM ingest_queue") == [(0,)]

        entries, _given = queue_entries([Path(update)], baseline=False, force=False, enrich=False)
        enqueue(engine, entries, run_id=None)
        worker = Harvest(pg, "worker", "--until-done", hold=None, tmp_path=tmp_path, name="worker")
        try:
            wait_for(
                "the worker to wait for the nightly",
                lambda: "waiting: harvest nightly (pid " in worker.stderr(),
                worker,
            )
            assert queue(pg)["pubmed26n0004.xml.gz"]["status"] == "waiting"
        except BaseException:
            worker.kill()
            raise
    assert worker.finish() == ExitCode.OK, worker.stderr()
    assert recorded(pg) == ["pubmed26n0004.xml.gz"]
    assert "applied  pubmed26n0004.xml.gz update 2026/4: 3 records" in worker.stdout()


# ---- stopping, and seeing the work ------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_sigterm_gives_the_held_file_back_to_the_queue(
    pg: str, bulk: BulkSet, hold: Path, tmp_path: Path
) -> None:
    (hold / "pubmed26n0001.xml.gz.hold").touch()
    first = Harvest(pg, "ingest", "--join", str(bulk.baseline), hold=hold, tmp_path=tmp_path, name="first")
    try:
        pid = held_by(hold, "pubmed26n0001.xml.gz", first)
        os.kill(pid, signal.SIGTERM)
        assert first.finish() == ExitCode.OK, first.stderr()
    finally:
        first.kill()
    row = queue(pg)["pubmed26n0001.xml.gz"]
    assert (row["status"], row["attempts"]) == ("waiting", 0)
    assert row["message"] == f"given back by {HOST}:{pid}: interrupted"
    assert recorded(pg) == []


@pytest.mark.timeout(300)
def test_harvest_queue_shows_each_file_the_rate_and_the_time_left(pg: str, bulk: BulkSet) -> None:
    done = subprocess.run(
        [*HARVEST, "--db", pg, "ingest", "--workers", "2", str(bulk.baseline), str(bulk.update(4))],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    shown = subprocess.run(
        [*HARVEST, "--db", pg, "queue"], capture_output=True, text=True, timeout=120, check=False
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].endswith(
        ": 4 files: 4 applied, 0 skipped, 0 claimed, 0 waiting, 0 refused, 0 failed; 0 workers"
    )
    assert "ingest queue on postgresql+psycopg://" in lines[0]
    assert lines[-1].startswith("rate: ") and " records/s (" in lines[-1]
    assert lines[-1].endswith("over the last 15 min; nothing left to apply")

    as_json = subprocess.run(
        [*HARVEST, "--db", pg, "--json", "ingest", "--status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["counts"] == {
        "waiting": 0,
        "claimed": 0,
        "applied": 4,
        "skipped": 0,
        "refused": 0,
        "failed": 0,
    }
    assert status["records_per_second"] > 0 and status["seconds_left"] == 0
    assert [f["name"] for f in status["files"]] == [
        "pubmed26n0001.xml.gz", "pubmed26n0002.xml", "pubmed26n0003.xml", "pubmed26n0004.xml.gz"
    ]  # fmt: skip
    assert [f["records_done"] for f in status["files"]] == [59, 59, 59, 3]
    assert {f["host"] for f in status["files"]} == {HOST}

    again = subprocess.run(  # the same folder named again (as a daily timer does): nothing read again
        [*HARVEST, "--db", pg, "ingest", "--workers", "2", str(bulk.baseline), str(bulk.update(4))],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert again.returncode == ExitCode.OK, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith("skipped  pubmed26n0001.xml.gz baseline 2026/1: already applied on ")
    assert all(line.endswith("(done in the work queue, not read again)") for line in lines[:4]), lines
    assert lines[4].startswith("files 4: applied 0, skipped (already applied) 4, refused 0, failed 0")


def test_harvest_queue_of_a_database_that_does_not_exist_is_exit_5(pg: str) -> None:
    done = subprocess.run(
        [*HARVEST, "--db", pg, "queue"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == ExitCode.STORAGE
    assert done.stderr.startswith("harvest: error: no database at ") and done.stderr.count("\n") == 1


def test_a_write_of_a_worker_whose_claim_was_taken_over_is_refused_and_rolled_back(
    engine: Engine, bulk: BulkSet
) -> None:
    from db.engine import begin_write
    from db.queue import ClaimLostError

    entries, _given = queue_entries([bulk.update(4)], baseline=False, force=False, enrich=False)
    enqueue(engine, entries, run_id=None)
    with WorkerSession(engine, run_id=None) as session:
        claim = session.claim()
        assert claim is not None and claim.file.name == "pubmed26n0004.xml.gz"
        with session.fenced(claim):
            with begin_write(engine) as conn:  # still its own: the write goes through
                conn.execute(sa.text("INSERT INTO run_locks VALUES ('mine', 'test', 1, 'h', now())"))
            with engine.begin() as conn:  # another worker takes it over (its lease ran out)
                conn.execute(sa.text("UPDATE ingest_queue SET claim_token = 'theirs'"))
            with pytest.raises(ClaimLostError, match="was taken over by another worker"):
                with begin_write(engine) as conn:
                    conn.execute(sa.text("INSERT INTO run_locks VALUES ('stale', 'test', 1, 'h', now())"))
        assert not session.renew(claim, bytes_done=1, records_done=1)
    assert rows(engine.url.render_as_string(hide_password=False), "SELECT name FROM run_locks") == [("mine",)]

"""db.runs: the run lock, locked run rows, watermarks and per-search run detail, on both dialects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import open_database
from db.runs import (
    ABANDONED,
    OK,
    PARTIAL,
    RUNNING,
    SearchRun,
    exclusive_run,
    finish_run,
    list_runs,
    lock_file_path,
    read_lock_holder,
    read_search_states,
    record_search,
    start_locked_run,
    start_run,
)
from harvester.core.errors import BusyError, ExitCode

ROOT = Path(__file__).resolve().parent.parent
HOLD_LOCK = """
import sys, time
from db.engine import open_database
from db.runs import exclusive_run
engine = open_database(sys.argv[1])
with exclusive_run(engine, "holder in a subprocess"):
    print("locked", flush=True)
    time.sleep(120)
"""


def search_run(name: str = "exo", *, verified: bool, before: date | None, after: date | None) -> SearchRun:
    return SearchRun(
        search=name,
        query="exosomes[tiab]",
        datetype="mdat",
        window_start=date(2026, 11, 1),
        window_end=date(2026, 11, 27),
        expected=10,
        fetched=10 if verified else 8,
        created=3,
        updated=2,
        unchanged=5 if verified else 3,
        verified=verified,
        watermark_before=before,
        watermark_after=after,
        failed_ids=() if verified else ("900003", "900004"),
        errors=() if verified else ("efetch failed after 3 attempts",),
    )


def statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(sa.text("SELECT id, status FROM harvest_runs"))}


# ---- the lock ---------------------------------------------------------------------------------------


def test_a_second_run_is_refused_at_once_with_a_message_naming_the_holder(engine: Engine) -> None:
    with exclusive_run(engine, "harvest nightly"):
        with pytest.raises(BusyError) as caught:
            with exclusive_run(engine, "harvest ingest"):
                pytest.fail("the lock was taken twice")
    message = str(caught.value)
    assert int(caught.value.exit_code) == int(ExitCode.BUSY) == 7
    assert "harvest nightly" in message
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "this run did nothing" in message
    assert "\n" not in message


def test_the_lock_is_free_again_after_the_block_and_after_an_error(engine: Engine) -> None:
    with exclusive_run(engine, "first"):
        assert read_lock_holder(engine) is not None
    assert read_lock_holder(engine) is None
    with pytest.raises(RuntimeError):
        with exclusive_run(engine, "second"):
            raise RuntimeError("boom")
    with exclusive_run(engine, "third"):
        holder = read_lock_holder(engine)
        assert holder is not None
        assert (holder.purpose, holder.pid) == ("third", os.getpid())


def test_a_busy_message_without_a_holder_row_still_says_another_run_is_active(engine: Engine) -> None:
    with exclusive_run(engine, "first"):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM run_locks"))
        with pytest.raises(BusyError, match="another run is active: another run holds the run lock"):
            with exclusive_run(engine, "second"):
                pytest.fail("the lock was taken twice")


def test_a_lock_held_by_another_process_is_refused_and_freed_when_that_process_is_killed(
    engine: Engine, db_url: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, db_url], stdout=subprocess.PIPE, env=env, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match=rf"holder in a subprocess \(pid {holder.pid} "):
            with exclusive_run(engine, "parent"):
                pytest.fail("the lock was taken while another process holds it")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    # No stale lock: the kernel (SQLite) or the server (PostgreSQL) lets go when the process dies. The
    # server does so once it notices the closed connection, a moment after the kill (CI saw the lock still
    # held right after the wait, once): try again until then, 30 s at most (a bound for a hang, not a speed).
    for _ in range(300):
        try:
            with exclusive_run(engine, "after the kill"):
                holder_row = read_lock_holder(engine)
                assert holder_row is not None
                assert holder_row.purpose == "after the kill"
            break
        except BusyError:
            time.sleep(0.1)
    else:
        pytest.fail("the killed process's lock was never freed")


def test_sqlite_keeps_its_lock_file_beside_the_database(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'data' / 'harvest.sqlite'}")
    try:
        assert lock_file_path(engine) == tmp_path / "data" / "harvest.sqlite.lock"
        with exclusive_run(engine, "nightly"):
            assert (tmp_path / "data" / "harvest.sqlite.lock").exists()
    finally:
        engine.dispose()


def test_an_in_memory_database_is_locked_within_its_process() -> None:
    engine = open_database("sqlite://")
    try:
        assert lock_file_path(engine) is None
        with exclusive_run(engine, "nightly"):
            with pytest.raises(BusyError):
                with exclusive_run(engine, "again"):
                    pytest.fail("the lock was taken twice")
        with exclusive_run(engine, "after"):
            pass
    finally:
        engine.dispose()


# ---- run rows ---------------------------------------------------------------------------------------


def test_taking_the_lock_marks_locked_runs_left_running_abandoned_and_leaves_other_runs(
    engine: Engine,
) -> None:
    killed = start_locked_run(engine, "nightly (exo)")  # as a run killed with SIGKILL leaves it
    finished = start_locked_run(engine, "nightly (exo)")
    finish_run(engine, finished, OK, {})
    by_id = start_run(engine, "harvest pmid (3 ids)")  # not under the lock: may well be running now
    with exclusive_run(engine, "harvest nightly"):
        assert statuses(engine) == {killed: ABANDONED, finished: OK, by_id: RUNNING}
    [row] = [run for run in list_runs(engine) if run.id == killed]
    assert row.finished_at is not None
    assert (row.pid, row.host) == (os.getpid(), socket.gethostname())


def test_finish_run_refuses_an_unknown_status(engine: Engine) -> None:
    run_id = start_locked_run(engine, "nightly")
    with pytest.raises(ValueError, match="unknown run status"):
        finish_run(engine, run_id, "done", {})
    assert statuses(engine) == {run_id: RUNNING}


def test_list_runs_shows_the_newest_first_with_their_searches_and_filters_by_status(engine: Engine) -> None:
    first = start_locked_run(engine, "nightly (exo)")
    record_search(engine, first, search_run(verified=True, before=None, after=date(2026, 11, 27)))
    finish_run(engine, first, OK, {"searches": 1})
    second = start_locked_run(engine, "nightly (exo, other)")
    record_search(
        engine, second, search_run(verified=False, before=date(2026, 11, 27), after=date(2026, 11, 27))
    )
    record_search(engine, second, search_run("aaa", verified=True, before=None, after=date(2026, 11, 27)))
    finish_run(engine, second, PARTIAL, {"searches": 2})

    runs = list_runs(engine)
    assert [run.id for run in runs] == [second, first]
    assert [s.search for s in runs[0].searches] == ["aaa", "exo"]
    exo = runs[0].searches[1]
    assert (exo.verified, exo.failed_ids, exo.errors) == (
        False,
        ("900003", "900004"),
        ("efetch failed after 3 attempts",),
    )
    assert runs[1].summary == {"searches": 1}
    assert runs[0].as_dict()["searches"][1]["window"] == ["2026-11-01", "2026-11-27"]
    assert [run.id for run in list_runs(engine, status=PARTIAL)] == [second]
    assert [run.id for run in list_runs(engine, limit=1)] == [second]


# ---- watermarks -------------------------------------------------------------------------------------


def test_a_verified_window_moves_the_watermark_and_an_unverified_one_leaves_it(engine: Engine) -> None:
    assert read_search_states(engine) == {}
    run1 = start_locked_run(engine, "nightly")
    record_search(engine, run1, search_run(verified=False, before=None, after=None))
    assert read_search_states(engine) == {}  # never verified: no watermark at all

    run2 = start_locked_run(engine, "nightly")
    record_search(engine, run2, search_run(verified=True, before=None, after=date(2026, 11, 27)))
    state = read_search_states(engine)["exo"]
    assert (state.watermark, state.last_verified_run_id, state.query) == (
        date(2026, 11, 27),
        run2,
        "exosomes[tiab]",
    )

    run3 = start_locked_run(engine, "nightly")
    unverified = search_run(verified=False, before=date(2026, 11, 27), after=date(2026, 11, 27))
    record_search(engine, run3, unverified)
    state = read_search_states(engine)["exo"]
    assert (state.watermark, state.last_verified_run_id) == (date(2026, 11, 27), run2)


def test_recording_a_search_is_one_transaction_with_its_watermark(engine: Engine) -> None:
    from harvester.core.errors import StorageError
    from tests.db_helpers import failing_statement

    run_id = start_locked_run(engine, "nightly")
    with failing_statement(engine, "INSERT INTO search_states"), pytest.raises(StorageError):
        record_search(engine, run_id, search_run(verified=True, before=None, after=date(2026, 11, 27)))
    assert read_search_states(engine) == {}
    assert list_runs(engine)[0].searches == ()  # the run_searches row went with it

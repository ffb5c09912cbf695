"""Tests never touch the user's home (issue 14, item 11): a part of the suite run with HOME and the XDG
folders pointed at a sentinel folder leaves nothing there.

conftest.py's autouse ``isolated_home`` gives every test its own HOME (and unsets XDG_*, drops the user's
HARVEST_* settings), so neither the tests nor the processes they start write pacing files to
~/.cache/pubmed-harvester or a database to ~/.local/share/pubmed-harvester. The sub-run below is the
proof: the selection covers each way a test reaches a harvest (in process through the CLI, the installed
console script, two harvest processes sharing pacing, a harvest in process and one in a child process
that both clear the HARVEST_* settings (the chaos run's helpers: before the isolation, this left pacing
files in ~/.cache, and this test failed), the bulk reader's process, the shared pacing files themselves).
The control shows the check can fail: a harvest run with the sentinel environment and no
isolation writes into the sentinel folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harvester.core.errors import ExitCode
from tests.standin import StandIn

REPO = Path(__file__).resolve().parent.parent
SEED = Path(__file__).parent / "fixtures" / "efetch_pubmed_35350566.xml"

# A representative part of the suite: every way a test reaches a harvest, and every test of the pacing
# files themselves (the files a leak would leave), about 20 s in one process. Whole files of tests that
# write nothing would only make the sub-run longer.
SUB_SUITE = [
    "tests/test_cli.py::test_installed_console_script_end_to_end",
    "tests/test_cli.py::test_harvest_seed_article_by_pmid_stores_every_seed_fact",
    "tests/test_cli.py::test_two_processes_together_share_one_pacing_of_three_requests_a_second",
    "tests/test_cli_enrich.py::test_seed_article_is_enriched_with_provenance",
    "tests/test_chaos.py::test_a_small_fault_free_run_in_process_and_in_a_child_process_store_the_same",
    "tests/test_http.py::test_file_log_is_redacted_timestamped_and_at_info",
    "tests/test_http.py::test_limiters_sharing_a_file_keep_the_rate_together",
    "tests/test_http.py::test_a_shared_limiter_queues_behind_slots_another_process_reserved",
    "tests/test_http.py::test_a_shared_file_with_junk_or_times_from_a_stepped_clock_is_read_safely",
    "tests/test_http.py::test_an_unusable_rate_dir_falls_back_to_pacing_one_process",
    "tests/test_settings.py",
    "tests/test_bulk_reader.py::test_a_process_hands_over_exactly_the_batches_a_thread_does",
    "tests/test_bulk_reader.py::test_a_reading_process_ends_when_the_storing_process_is_killed",
]


def sentinel_environment(sentinel: Path) -> dict[str, str]:
    """The environment of a user whose home, cache, data and config folders are under ``sentinel``."""
    env = {k: v for k, v in os.environ.items() if k != "HARVEST_RATE_DIR"}  # a user does not set it
    env.update(
        HOME=str(sentinel / "home"),
        XDG_CACHE_HOME=str(sentinel / "cache"),
        XDG_DATA_HOME=str(sentinel / "data"),
        XDG_CONFIG_HOME=str(sentinel / "config"),
        XDG_STATE_HOME=str(sentinel / "state"),
    )
    for name in ("home", "cache", "data", "config", "state"):
        (sentinel / name).mkdir(parents=True)
    return env


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_control_a_harvest_without_the_isolation_writes_into_the_sentinel_home(tmp_path: Path) -> None:
    """Without this, the sub-run's empty sentinel could be a sentinel nothing would ever write to."""
    sentinel = tmp_path / "sentinel"
    env = sentinel_environment(sentinel)
    with StandIn([SEED]) as server:
        env.update(server.env(), HARVEST_EMAIL="tests@example.org")
        done = subprocess.run(
            [sys.executable, "-m", "harvester", "pmid", "--no-enrich", "35350566"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == ExitCode.OK, done.stderr
    written = files_under(sentinel)
    assert "data/pubmed-harvester/harvest.sqlite" in written
    assert any(f.startswith("cache/pubmed-harvester/ncbi-") for f in written), written


@pytest.mark.timeout(300)  # a long scenario: a part of the suite in one process (README, Testing)
def test_a_run_of_the_suite_leaves_the_users_home_untouched(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    env = sentinel_environment(sentinel)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *SUB_SUITE],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
    assert files_under(sentinel) == []

"""Shared test helpers: where fixtures live.

Recorded NCBI responses stay outside the repository, in $HARVEST_FIXTURES; small hand-written ones live
in tests/fixtures/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.db_helpers import database_params, fresh_database_url, open_migrated
from tests.helpers_fixtures import ENV as HARVEST_FIXTURES, LOCAL as FIXTURES_DIR, shared_fixture

__all__ = ["FIXTURES_DIR", "HARVEST_FIXTURES", "shared_fixture"]


# Variables a test run may carry from the user's shell that would point a test at the user's own files,
# services or secrets. HARVEST_FIXTURES and HARVEST_TEST_* are the run's own switches and stay, and so
# does HARVEST_EMAIL (a contact address; the live smoke test, `pytest -m network`, takes it from the shell).
USER_VARIABLES = ("NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                  "XDG_STATE_HOME")  # fmt: skip


def _run_switch(name: str) -> bool:
    return name in {"HARVEST_FIXTURES", "HARVEST_EMAIL"} or name.startswith("HARVEST_TEST_")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own HOME, so nothing a test runs (in process or in a child process, which inherits the
    environment) reads or writes the user's ~/.cache, ~/.local/share or ~/.config (issue 14, item 11).

    The XDG_* variables are unset, so the defaults derive from this HOME (its .cache, .local/share and
    .config), and the user's HARVEST_* settings (a database URL, a config file, a log file) and API keys
    are dropped; a test sets what it needs. Tests that set HOME themselves (test_cli's ``home``) still may.
    """
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if (name.startswith("HARVEST_") and not _run_switch(name)) or name in USER_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def rate_dir(
    isolated_home: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own HARVEST_RATE_DIR: harvest processes share their pacing through files there
    (harvester.sources.http.SharedSends). A test that clears HARVEST_* (test_cli's ``home``) gets its files
    under its own HOME instead, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("rate")
    monkeypatch.setenv("HARVEST_RATE_DIR", str(path))
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures, the small hand-written fixtures kept in the repository."""
    return FIXTURES_DIR


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh, empty database, once per dialect this run tests (see tests/db_helpers.py)."""
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on :func:`db_url`, at the head revision (a copy of a migrated template: see
    tests/db_helpers.py)."""
    engine = open_migrated(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(params=["thread", "process"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A harvest ingest test using this runs twice: files read in a thread (as small files are), and in a
    process of their own (as files of READ_IN_PROCESS_BYTES or more into SQLite are; here on either
    database)."""
    monkeypatch.setattr(
        "harvester.jobs.ingest.READ_IN_PROCESS_BYTES", 0 if request.param == "process" else 1 << 62
    )
    monkeypatch.setattr("harvester.jobs.ingest.READ_IN_PROCESS_XML_BYTES", {"sqlite": 0, "postgresql": 0})
    return str(request.param)

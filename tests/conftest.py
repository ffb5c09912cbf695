"""Shared test helpers: where fixtures live.

Recorded NCBI responses stay outside the repository, in $HARVEST_FIXTURES; small hand-written ones live
in tests/fixtures/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from db.engine import open_database
from tests.db_helpers import database_params, fresh_database_url
from tests.helpers_fixtures import ENV as HARVEST_FIXTURES, LOCAL as FIXTURES_DIR, shared_fixture

__all__ = ["FIXTURES_DIR", "HARVEST_FIXTURES", "shared_fixture"]


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
    """An engine on :func:`db_url`, migrated to the head revision."""
    engine = open_database(db_url)
    try:
        yield engine
    finally:
        engine.dispose()

"""Shared test helpers: where fixtures live.

Recorded NCBI responses stay outside the repository, in $HARVEST_FIXTURES; small hand-written ones live
in tests/fixtures/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers_fixtures import ENV as HARVEST_FIXTURES, LOCAL as FIXTURES_DIR, shared_fixture

__all__ = ["FIXTURES_DIR", "HARVEST_FIXTURES", "shared_fixture"]


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures, the small hand-written fixtures kept in the repository."""
    return FIXTURES_DIR

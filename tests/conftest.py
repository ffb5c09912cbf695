"""Shared test helpers: where fixtures live.

Recorded NCBI responses stay outside the repository, in $HARVEST_FIXTURES; small hand-written ones live
in tests/fixtures/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HARVEST_FIXTURES = "HARVEST_FIXTURES"
FIXTURES_DIR = Path(__file__).parent / "fixtures"


def shared_fixture(relpath: str) -> Path:
    """Path of a recorded response under $HARVEST_FIXTURES: skip when unset, fail when the file is missing."""
    root = os.environ.get(HARVEST_FIXTURES)
    if not root:
        pytest.skip(
            f"{HARVEST_FIXTURES} is not set: point it at the recorded NCBI responses to run this test"
        )
    path = Path(root) / relpath
    if not path.is_file():
        pytest.fail(f"{HARVEST_FIXTURES}={root} is set but {relpath} is not there")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures, the small hand-written fixtures kept in the repository."""
    return FIXTURES_DIR

"""Access to the recorded responses in $HARVEST_FIXTURES (never copied into this repository).

Unset: tests that need them are skipped, with the reason. Set but the file is missing: they fail,
because a wrong path must not pass silently as "skipped".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ENV = "HARVEST_FIXTURES"
LOCAL = Path(__file__).parent / "fixtures"
_SKIP_REASON = f"{ENV} is not set (point it at the shared recorded responses to run this test)"


def shared_root() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def shared_fixture(relative: str) -> Path:
    """The path of one shared fixture: skip when the variable is unset, fail when the file is missing."""
    root = shared_root()
    if root is None:
        pytest.skip(_SKIP_REASON)
    path = root / relative
    if not path.is_file():
        pytest.fail(f"{ENV}={root} is set but {relative} is not there")
    return path


def read_shared(relative: str) -> bytes:
    return shared_fixture(relative).read_bytes()


def shared_params(directory: str, pattern: str) -> list[Any]:
    """pytest.param per file matching ``directory/pattern``, for parametrize; the test reads them with
    :func:`read_shared`. Unset: one skipped param. Set but nothing matches: one param that fails."""
    root = shared_root()
    if root is None:
        return [pytest.param(None, id="unset", marks=pytest.mark.skip(reason=_SKIP_REASON))]
    found = sorted((root / directory).glob(pattern))
    if not found:
        return [pytest.param(f"{directory}/{pattern}", id="missing")]
    return [pytest.param(f"{directory}/{p.name}", id=p.name) for p in found]


def local_fixture(name: str) -> bytes:
    """A small hand-written fixture from tests/fixtures/."""
    return (LOCAL / name).read_bytes()

"""The garbage collector's thresholds while a bulk file is applied (harvester.core.gcpolicy)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from harvester.core.gcpolicy import BULK_THRESHOLDS, fewer_collections
from harvester.core.settings import Settings
from harvester.jobs.ingest import ingest_files
from harvester.jobs.workers import ingest_files_parallel

FIVE = Path(__file__).parent / "fixtures" / "bulk_five_records.xml"


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_thresholds_are_raised_inside_and_restored_after_even_on_error(
    default_thresholds: tuple[int, int, int],
) -> None:
    with fewer_collections():
        assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.isenabled()  # cycles are still collected, only less often
    assert gc.get_threshold() == default_thresholds
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failing job")
    assert gc.get_threshold() == default_thresholds


def test_higher_thresholds_someone_set_are_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(BULK_THRESHOLDS[0] * 4, 5, 500)
    try:
        with fewer_collections():
            assert gc.get_threshold() == (BULK_THRESHOLDS[0] * 4, BULK_THRESHOLDS[1], 500)
        assert gc.get_threshold() == (BULK_THRESHOLDS[0] * 4, 5, 500)
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("job", ["ingest_files", "ingest_files_parallel"])
def test_a_file_is_stored_under_the_bulk_thresholds(
    engine: Engine, default_thresholds: tuple[int, int, int], job: str
) -> None:
    seen: list[tuple[int, int, int]] = []
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    options: dict[str, int] = {"workers": 2} if job == "ingest_files_parallel" else {}
    apply = ingest_files_parallel if job == "ingest_files_parallel" else ingest_files
    report = apply(
        [FIVE],
        settings=settings,
        services=None,
        engine=engine,
        progress=lambda _bytes: seen.append(gc.get_threshold()),
        **options,  # type: ignore[arg-type]
    )
    assert report.files[0].outcome == "applied"
    assert seen and set(seen) == {BULK_THRESHOLDS}
    assert gc.get_threshold() == default_thresholds

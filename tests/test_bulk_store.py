"""The bulk-load path: scan_pubmed reads records without parsing them; store_scanned parses only what changed.

Storing through it must give exactly what parse_pubmed + store_articles give, and re-storing the same file
must neither parse a record nor write a row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.engine import open_database
from db.store import StoreResult, store_articles
from harvester.pipeline import store_scanned
from harvester.pubmed_xml import PendingArticle, parse_pubmed, scan_pubmed
from harvester.records import Article, DeletedCitation
from tests.conftest import shared_fixture
from tests.db_helpers import fresh_database_url, recorded_statements, snapshot

FETCHED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "efetch_pubmed_35350566.xml"
WRITES = ("INSERT", "UPDATE", "DELETE")


def _pending(source: Any) -> list[PendingArticle]:
    return [r for r in scan_pubmed(source) if isinstance(r, PendingArticle)]


def _update_file() -> Path:
    """177 PubmedArticle records of a MEDLINE sample file (some of them share a DOI: conflicts)."""
    return shared_fixture("medline-updatefiles/costosys-pubmedsample18n0001.xml.gz")


@pytest.mark.parametrize(
    ("name", "articles", "deleted"),
    [
        ("costosys-pubmedsample18n0001.xml.gz", 177, 0),
        ("jcore-pubmed21n1016_excerpt_original.xml.gz", 3, 0),
        ("derived/pubmedsample_2019.excerpt-DeleteCitation.xml", 0, 7),
    ],
)
def test_scanned_records_parse_to_exactly_what_parse_pubmed_gives(
    name: str, articles: int, deleted: int
) -> None:
    path = shared_fixture(f"medline-updatefiles/{name}")
    parsed = list(parse_pubmed(path, keep_raw=True))
    scanned = list(scan_pubmed(path))
    assert len(scanned) == len(parsed) == articles + deleted
    assert sum(isinstance(r, DeletedCitation) for r in scanned) == deleted
    for want, got in zip(parsed, scanned, strict=True):
        if isinstance(want, DeletedCitation):
            assert got == want
            continue
        assert isinstance(got, PendingArticle)
        assert (got.pmid, got.pmid_version, got.raw_xml) == (want.pmid, want.pmid_version, want.raw_xml)
        assert got.parse() == want


def test_scan_pubmed_holds_no_more_than_the_records_the_caller_keeps() -> None:
    """Each record is detached from the document as it is handed over: the root does not grow."""
    records = _pending(_update_file())
    for record in records:
        assert record._element.getparent() is None


def test_store_scanned_gives_what_store_articles_gives(engine: Engine, tmp_path: Path) -> None:
    path = _update_file()
    batch = _pending(path)
    articles = [a for a in parse_pubmed(path, keep_raw=True) if isinstance(a, Article)]
    result = store_scanned(engine, batch, url=None, fetched_at=FETCHED)
    with fresh_database_url("sqlite", tmp_path / "reference") as url:
        (tmp_path / "reference").mkdir(exist_ok=True)
        reference = open_database(url)
        try:
            expected = store_articles(reference, articles, url=None, fetched_at=FETCHED)
            assert result == expected
            assert _comparable(snapshot(engine)) == _comparable(snapshot(reference))
        finally:
            reference.dispose()


def test_restoring_the_same_records_parses_nothing_and_writes_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _update_file()
    first = store_scanned(engine, _pending(path), url=None, fetched_at=FETCHED)
    assert first.created
    before = snapshot(engine)

    parsed: list[str] = []
    real_parse = PendingArticle.parse

    def counting_parse(self: PendingArticle) -> Article | None:
        parsed.append(self.pmid)
        return real_parse(self)

    monkeypatch.setattr(PendingArticle, "parse", counting_parse)
    with recorded_statements(engine) as statements:
        again = store_scanned(engine, _pending(path), url=None, fetched_at=FETCHED + timedelta(days=1))
    assert parsed == [], "an unchanged record was parsed"
    assert [s for s in statements if s.lstrip().upper().startswith(WRITES)] == []
    assert again.created == again.updated == ()
    assert set(again.unchanged) == set(first.created) | set(first.updated) | set(first.unchanged)
    assert again.conflicts == first.conflicts
    assert snapshot(engine) == before


def test_only_the_changed_record_of_a_batch_is_parsed_and_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = SEED.read_bytes()
    store_scanned(engine, _pending(seed), url=None, fetched_at=FETCHED)
    changed = seed.replace(b"Cancer Invasion and Metastasis", b"Cancer Invasion and Metastasis (revised)")
    assert changed != seed
    result = store_scanned(engine, _pending(changed), url=None, fetched_at=FETCHED)
    assert result == StoreResult(created=(), updated=("35350566",), unchanged=())
    again = store_scanned(engine, _pending(changed), url=None, fetched_at=FETCHED)
    assert again.unchanged == ("35350566",)


def test_two_versions_of_one_pmid_in_a_batch_keep_the_later_version(engine: Engine) -> None:
    seed = SEED.read_bytes()
    v2 = seed.replace(b'<PMID Version="1">35350566</PMID>', b'<PMID Version="2">35350566</PMID>', 1)
    assert v2 != seed
    result = store_scanned(engine, [*_pending(v2), *_pending(seed)], url=None, fetched_at=FETCHED)
    assert result.created == ("35350566",)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT pmid_version FROM articles WHERE pmid = '35350566'").scalar()
    assert version == 2


def _comparable(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Row counts per table, and the articles' identifying columns: equal stores, equal content."""
    return {name: len(rows) for name, rows in tables.items() if name != "alembic_version"}

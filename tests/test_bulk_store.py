"""The bulk-load path: scan_pubmed reads records unparsed; harvest ingest parses only what changed.

Loading through it must give exactly what parse_pubmed + store_articles give, and loading the same records
again must neither parse a record nor write anything but the record of the file applied.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.engine import open_database
from db.store import store_articles
from harvester.core.records import Article, DeletedCitation
from harvester.core.settings import Settings
from harvester.jobs.ingest import FileReport, ingest_files
from harvester.sources.pubmed_xml import PendingArticle, parse_pubmed, scan_pubmed
from tests.conftest import shared_fixture
from tests.db_helpers import fresh_database_url, recorded_statements, snapshot

FETCHED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "efetch_pubmed_35350566.xml"
WRITES = ("INSERT", "UPDATE", "DELETE", "COPY")  # COPY: PostgreSQL's bulk rows (db/pg_copy.py)


def _pending(source: Any) -> list[PendingArticle]:
    return [r for r in scan_pubmed(source) if isinstance(r, PendingArticle)]


def _update_file() -> Path:
    """177 PubmedArticle records of a MEDLINE sample file (two share a DOI: not a conflict, issue 13)."""
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
        assert isinstance(want, Article)
        assert (got.pmid, got.pmid_version, got.raw_xml) == (want.pmid, want.pmid_version, want.raw_xml)
        assert got.parse() == want


def test_scan_pubmed_holds_no_more_than_the_records_the_caller_keeps() -> None:
    """Each record is detached from the document as it is handed over: the root does not grow."""
    records = _pending(_update_file())
    for record in records:
        assert record._element.getparent() is None


def _load(engine: Engine, data: bytes, directory: Path, name: str, **options: Any) -> FileReport:
    """``data`` written to ``directory/name`` and loaded as `harvest ingest` does; that file's report."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    [report] = ingest_files([path], settings=settings, services=None, engine=engine, **options).files
    assert report.outcome == "applied", report.message
    return report


@pytest.mark.usefixtures("reader")
def test_a_bulk_load_stores_what_store_articles_stores(engine: Engine, tmp_path: Path) -> None:
    path = _update_file()
    articles = [a for a in parse_pubmed(path, keep_raw=True) if isinstance(a, Article)]
    report = _load(engine, path.read_bytes(), tmp_path, "sample.xml.gz")
    with fresh_database_url("sqlite", tmp_path / "reference") as url:
        (tmp_path / "reference").mkdir(exist_ok=True)
        reference = open_database(url)
        try:
            expected = store_articles(reference, articles, url=None, fetched_at=FETCHED)
            assert (report.created, report.updated, report.unchanged) == (
                len(expected.created),
                len(expected.updated),
                len(expected.unchanged),
            )
            assert report.conflict_count == len(expected.conflicts)
            assert _comparable(snapshot(engine)) == _comparable(snapshot(reference))
        finally:
            reference.dispose()


@pytest.mark.usefixtures("reader")
def test_loading_the_same_records_again_parses_nothing_and_writes_only_the_file_record(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _update_file().read_bytes()
    first = _load(engine, data, tmp_path, "first.xml.gz")
    assert first.created == 177
    before = snapshot(engine)

    parsed: list[str] = []
    real_parse = PendingArticle.parse

    def counting_parse(self: PendingArticle) -> Article | None:
        parsed.append(self.pmid)
        return real_parse(self)

    monkeypatch.setattr(PendingArticle, "parse", counting_parse)
    again_bytes = gzip.compress(gzip.decompress(data) + b"\n")  # other bytes, the same records
    with recorded_statements(engine) as statements:
        # Read in this process, so that the counter sees every parse; a reading process is checked below.
        again = _load(engine, again_bytes, tmp_path, "again.xml.gz", read_in_process=False)
    assert parsed == [], "an unchanged record was parsed"
    writes = [s for s in statements if s.lstrip().upper().startswith(WRITES)]
    assert writes and all(_bookkeeping(s) for s in writes), writes
    assert (again.created, again.updated, again.unchanged) == (0, 0, 177)
    assert again.conflict_count == first.conflict_count
    third_bytes = gzip.compress(gzip.decompress(data) + b"\n\n")
    with recorded_statements(engine) as statements:
        third = _load(engine, third_bytes, tmp_path, "third.xml.gz", read_in_process=True)
    writes = [s for s in statements if s.lstrip().upper().startswith(WRITES)]
    assert writes and all(_bookkeeping(s) for s in writes), writes
    assert (third.created, third.updated, third.unchanged) == (0, 0, 177)
    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k not in BOOKKEEPING} == {
        k: v for k, v in before.items() if k not in BOOKKEEPING
    }


@pytest.mark.usefixtures("reader")
def test_only_the_changed_record_is_parsed_and_stored(engine: Engine, tmp_path: Path) -> None:
    seed = SEED.read_bytes()
    _load(engine, seed, tmp_path, "seed.xml")
    changed = seed.replace(b"Cancer Invasion and Metastasis", b"Cancer Invasion and Metastasis (revised)")
    assert changed != seed
    result = _load(engine, changed, tmp_path, "changed.xml")
    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    again = _load(engine, changed + b"\n", tmp_path, "again.xml")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


@pytest.mark.usefixtures("reader")
def test_two_versions_of_one_pmid_in_a_file_keep_the_later_version(engine: Engine, tmp_path: Path) -> None:
    seed = SEED.read_bytes()
    v2 = seed.replace(b'<PMID Version="1">35350566</PMID>', b'<PMID Version="2">35350566</PMID>', 1)
    assert v2 != seed
    head, _, rest = seed.partition(b"<PubmedArticle>")
    record = b"<PubmedArticle>" + rest.rpartition(b"</PubmedArticleSet>")[0]
    record_v2 = record.replace(b'<PMID Version="1">35350566</PMID>', b'<PMID Version="2">35350566</PMID>', 1)
    result = _load(engine, head + record_v2 + record + b"</PubmedArticleSet>\n", tmp_path, "both.xml")
    assert result.created == 1
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT pmid_version FROM articles WHERE pmid = '35350566'").scalar()
    assert version == 2


BOOKKEEPING = {"bulk_files", "harvest_runs", "run_locks"}


def _bookkeeping(statement: str) -> bool:
    """A write to the tables that record runs and applied files, not to the articles' data."""
    words = statement.split()
    return len(words) > 2 and words[2].strip('"(').lower() in BOOKKEEPING


def _comparable(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Row counts per table, and the articles' identifying columns: equal stores, equal content."""
    return {name: len(rows) for name, rows in tables.items() if name not in {"alembic_version", *BOOKKEEPING}}

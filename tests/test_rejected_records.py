"""One bad record never costs the others: it is kept raw in rejected_records with its reason, the rest is
stored, and the run exits 8 (issue 13). For ``harvest ingest`` (both readers, both dialects), for a store
that refuses one record of a batch, and for a ``harvest pmid`` batch.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.bulk import list_applied, rejected_records
from db.engine import open_database
from db.store import store_articles_isolated
from harvester.cli import run
from harvester.core.errors import ExitCode, StorageError
from harvester.core.records import Article
from harvester.core.settings import Settings
from harvester.jobs.ingest import IngestReport, ingest_files
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import crossref_work, failing_statement, pubmed_record
from tests.standin import StandIn
from tests.test_cli import SEED, clone_record

FIXTURES = Path(__file__).parent / "fixtures"
BAD = FIXTURES / "bulk_update_one_bad_record.xml"  # five records; the third's PMID Version is 2^63
GOOD_PMIDS = ["39000010", "39000011", "39000013", "39000014"]
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ingest(engine: Engine, *paths: Path) -> IngestReport:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    return ingest_files(list(paths), settings=settings, services=None, engine=engine)


def stored(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT pmid FROM articles ORDER BY pmid"))]


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("HARVEST_") or name in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    return tmp_path


# ---- harvest ingest -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("reader")
def test_an_update_file_with_one_bad_record_applies_the_rest_and_keeps_it_raw(engine: Engine) -> None:
    report = ingest(engine, BAD)

    (file,) = report.files
    assert file.outcome == "applied"
    assert (file.records, file.created, file.rejected_count, file.rejected_pmids) == (5, 4, 1, ["39000012"])
    assert (file.deleted_listed, file.deleted_marked) == (1, 0)
    assert report.exit_code == ExitCode.REJECTED and int(report.exit_code) == 8
    assert "1 rejected (kept raw in rejected_records; PMIDs 39000012)" in file.summary_line()
    assert report.summary_line().endswith(", rejected 1")
    assert stored(engine) == GOOD_PMIDS

    (row,) = rejected_records(engine)
    assert (row.pmid, row.file_name, row.file_sha256, row.source) == (
        "39000012",
        BAD.name,
        file.sha256,
        f"file:{BAD.name}",
    )
    assert "Version '9223372036854775808' is not a whole number from 1 to 999" in row.reason
    # Nothing lost: the raw bytes are the record as in the file, and parse again once the value is fixed.
    assert row.raw_xml.startswith(b"<PubmedArticle>") and row.raw_xml in BAD.read_bytes()
    fixed = row.raw_xml.replace(b'Version="9223372036854775808"', b'Version="2"')
    (again,) = list(parse_pubmed(b"<PubmedArticleSet>" + fixed + b"</PubmedArticleSet>"))
    assert isinstance(again, Article) and (again.pmid, again.pmid_version) == ("39000012", 2)

    # Applied once: a second ingest of the same bytes is a no-op, and records no rejection twice.
    assert [a.name for a in list_applied(engine)] == [BAD.name]
    second = ingest(engine, BAD)
    assert second.files[0].outcome == "skipped" and second.exit_code == ExitCode.OK
    assert len(rejected_records(engine)) == 1


@pytest.mark.usefixtures("reader")
def test_a_file_that_breaks_after_a_rejected_record_records_no_rejection(
    engine: Engine, tmp_path: Path
) -> None:
    data = BAD.read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: data.index(b"39000014</PMID>")])

    report = ingest(engine, cut)

    assert report.files[0].outcome == "failed" and report.exit_code == ExitCode.USAGE
    assert rejected_records(engine) == [] and list_applied(engine) == []  # the rerun of a fixed file keeps it


def test_cli_ingest_exits_8_and_names_the_rejected_record(db_url: str, home: Path) -> None:
    code, out, err = cli("--db", db_url, "ingest", str(BAD))

    assert code == ExitCode.REJECTED
    assert "1 rejected (kept raw in rejected_records; PMIDs 39000012)" in out
    assert "rejected, kept raw in rejected_records: PMID 39000012: Version '9223372036854775808'" in err
    assert len(err.splitlines()) == 1, err  # the record is named once, with its reason
    code, out, _ = cli("--db", db_url, "--json", "ingest", str(BAD))
    summary = json.loads(out)
    assert code == ExitCode.OK and summary["skipped"] == 1  # applied once


def test_cli_help_lists_exit_code_8() -> None:
    code, out, _ = cli("--help")
    assert code == ExitCode.OK and "8  applied with rejected records" in out
    code, out, _ = cli("ingest", "--help")
    assert code == ExitCode.OK and "8: applied, but some records could not be" in " ".join(out.split())


# ---- a store that refuses one record --------------------------------------------------------------------


def test_a_record_the_store_refuses_is_rejected_alone(engine: Engine) -> None:
    good = [pubmed_record("1", doi="10.5555/one", pmcid="PMC1"), pubmed_record("3", doi=None, pmcid=None)]
    # A value the parser would refuse, built by hand: it reaches the store, which cannot hold it.
    bad = dataclasses.replace(pubmed_record("2", doi="10.5555/two", pmcid="PMC2"), pmid_version=2**63)

    result, rejected = store_articles_isolated(engine, [good[0], bad, good[1]], url=None, fetched_at=AT)

    assert result.created == ("1", "3")
    assert [(r.pmid, r.raw_xml) for r in rejected] == [("2", bad.raw_xml)]
    assert rejected[0].reason.startswith("cannot be stored: ")
    assert stored(engine) == ["1", "3"]


def test_a_failing_database_is_not_taken_for_bad_records(engine: Engine) -> None:
    articles = [pubmed_record("1", doi=None, pmcid=None), pubmed_record("2", doi=None, pmcid=None)]
    with failing_statement(engine, ("INSERT", "COPY")), pytest.raises(StorageError):
        store_articles_isolated(engine, articles, url=None, fetched_at=AT)
    assert stored(engine) == []


# ---- harvest pmid ---------------------------------------------------------------------------------------


@pytest.fixture
def standin(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    bad = clone_record(SEED, "900002").replace(b'<PMID Version="1">900002', b'<PMID Version="0">900002')
    assert b'Version="0"' in bad
    records = [clone_record(SEED, "900001"), bad, clone_record(SEED, "900003")]
    with StandIn([SEED, *records]) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def test_harvest_pmid_batch_with_one_bad_record_fails_only_that_record(standin: StandIn, home: Path) -> None:
    code, out, err = cli("--json", "pmid", "--no-enrich", "900001", "900002", "900003")

    summary: dict[str, Any] = json.loads(out)
    assert code == ExitCode.REJECTED, err
    assert summary["created"] == ["900001", "900003"]
    assert (summary["failed"], summary["rejected"], summary["exit_code"]) == (["900002"], ["900002"], 8)
    assert any("PMID 900002 rejected (kept raw in rejected_records)" in e for e in summary["errors"])
    db = home / ".local" / "share" / "pubmed-harvester" / "harvest.sqlite"
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT pmid FROM articles ORDER BY pmid")] == ["900001", "900003"]
        ((pmid, source, raw),) = conn.execute("SELECT pmid, source, raw_xml FROM rejected_records").fetchall()
    assert pmid == "900002" and "efetch.fcgi" in source and b'Version="0"' in raw
    assert len([r for r in standin.requests_for("efetch.fcgi") if r.params.get("db") == "pubmed"]) == 1

    code, out, err = cli("pmid", "--no-enrich", "900001", "900002")
    assert code == ExitCode.REJECTED
    assert "PMID 900002 rejected (kept raw in rejected_records)" in err
    assert len(err.splitlines()) == 1, err  # said once, not again as a "rejected: 900002" list


# ---- the nameless funder ----------------------------------------------------------------------------------


def test_a_nameless_funder_is_stored_and_shown_with_its_award(db_url: str, home: Path) -> None:
    from db.reconcile import store_crossref
    from db.store import store_articles

    engine = open_database(db_url)
    try:
        store_articles(engine, [pubmed_record()], url=None, fetched_at=AT)
        work = crossref_work(funder=[{"name": "Acme Foundation", "award": ["A-1"]}, {"award": ["LM2015047"]}])
        assert [(f.name, f.awards) for f in work.funders] == [
            ("Acme Foundation", ("A-1",)),
            (None, ("LM2015047",)),
        ]
        store_crossref(engine, [work], url="https://api.crossref.example/works", fetched_at=AT, run_id=None)
        with engine.connect() as conn:
            funders = conn.execute(sa.text("SELECT position, name FROM article_funders ORDER BY 1")).all()
            awards = conn.execute(
                sa.text("SELECT funder_position, award_id FROM funder_awards ORDER BY 1")
            ).all()
        assert [tuple(r) for r in funders] == [(1, "Acme Foundation"), (2, None)]
        assert [tuple(r) for r in awards] == [(1, "A-1"), (2, "LM2015047")]
    finally:
        engine.dispose()
    code, out, _ = cli("--db", db_url, "show", "35350566", "--format", "json")
    assert code == ExitCode.OK
    (doc,) = json.loads(out)
    assert doc["funders"] == [
        {"name": "Acme Foundation", "doi": None, "awards": ["A-1"]},
        {"name": None, "doi": None, "awards": ["LM2015047"]},
    ]
    code, out, _ = cli("--db", db_url, "show", "35350566")
    assert "Acme Foundation (A-1); funder not named (LM2015047)" in out

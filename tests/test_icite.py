"""iCite: both answer shapes parse alike, bad values are ParseErrors, and harvests store metrics with history.

The harvest tests run the whole pipeline against the stand-in (its iCite routes count the requests) on
both dialects.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from enrich.icite_json import parse_icite_record, parse_icite_response
from harvester.core.errors import ParseError
from harvester.core.settings import HttpSettings, Secret, Settings
from harvester.jobs.by_id import harvest
from harvester.jobs.services import build_services
from tests.helpers_fixtures import read_shared
from tests.standin import ICITE_PUBS, StandIn
from tests.test_search import corpus

FIXTURES = Path(__file__).parent / "fixtures"
SHAPE_2025 = "icite/icite-pubs-32162448-path-form-legacy-2025.docexample.json"
SHAPE_2024 = "icite/icite-pubs-2-pmids-legacy-2024-meta-links.docexample-handedited.json"


def _only(body: bytes) -> Any:
    answer = parse_icite_response(body)
    assert answer.rejected == ()
    return answer.records


# ------------------------------------------------------------------------------------------- parsing


def test_the_2025_answer_and_the_same_record_in_the_older_shape_parse_to_the_same_values() -> None:
    (current,) = _only(read_shared(SHAPE_2025))
    (older,) = _only((FIXTURES / "icite_pubs_32162448_pre_2025_shape.json").read_bytes())
    assert current == older
    assert current.pmid == "32162448"
    assert current.authors[:2] == ("Yan-Ling Zhang", "Hui Li")
    assert current.is_research_article is True and current.is_clinical is True
    assert current.provisional is False
    assert current.citation_count == 17 and len(current.cited_by) == 17 and len(current.references) == 31
    assert current.relative_citation_ratio == pytest.approx(2.18475199552701)
    assert current.cited_by_clinical == ("32997821", "38615661", "35166373")
    assert current.doi == "10.1111/pan.13853"
    assert current.last_modified is None


def test_the_2024_answer_and_the_same_record_in_the_2025_shape_parse_to_the_same_values() -> None:
    older, second = _only(read_shared(SHAPE_2024))
    (current,) = _only((FIXTURES / "icite_pubs_23456789_2025_shape.json").read_bytes())
    assert older.last_modified == "2024-02-25T09:52:59"  # "02/25/2024, 09:52:59"
    assert dataclasses.replace(older, last_modified=None) == current
    assert older.authors == ("Arun Sharma", "Stephen M Schwartz", "Eduardo Méndez")
    assert older.is_research_article is True and older.is_clinical is False and older.provisional is False
    assert older.nih_percentile == 71.0 and older.citation_count == 46
    assert second.pmid == "27599104" and second.relative_citation_ratio == 9.87


def test_camel_case_names_of_legacy_false_answers_are_read() -> None:
    record = parse_icite_record(
        {
            "pmid": "123",
            "citationCount": 4,
            "relativeCitationRatio": 0.5,
            "isResearchArticle": True,
            "citedBy": [7],
        }
    )
    assert (record.citation_count, record.relative_citation_ratio, record.is_research_article) == (
        4,
        0.5,
        True,
    )
    assert record.cited_by == ("7",)


def test_every_key_but_the_pmid_is_optional() -> None:
    record = parse_icite_record({"pmid": 42})
    assert (
        record.pmid == "42"
        and record.citation_count is None
        and record.authors == ()
        and record.cited_by == ()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("citation_count", "many"),
        ("citation_count", -1),
        ("citation_count", True),
        ("citation_count", "9" * 40),
        ("relative_citation_ratio", "high"),
        ("relative_citation_ratio", math.inf),
        ("is_clinical", "Maybe"),
        ("cited_by", [1, "x"]),
        ("cited_by", {"a": 1}),
        ("last_modified", "yesterday"),
        ("authors", 7),
    ],
)
def test_a_bad_value_is_a_parse_error_naming_the_pmid(name: str, value: object) -> None:
    with pytest.raises(ParseError, match=f"PMID 5: {name}"):
        parse_icite_record({"pmid": 5, name: value})


def test_a_bad_record_costs_the_others_nothing() -> None:
    answer = parse_icite_response((FIXTURES / "icite_pubs_bad_values.json").read_bytes())
    assert [r.pmid for r in answer.records] == ["33333333"]
    assert answer.records[0].relative_citation_ratio == 1.5
    assert answer.records[0].cited_by == ("44444444", "55555555")
    assert [pmid for pmid, _ in answer.rejected] == ["11111111", "22222222", None, None]


@pytest.mark.parametrize(
    "body", [b"<html>down</html>", b'{"data": [', b'{"error": "bad"}', b"42", b'{"data": 3}']
)
def test_an_answer_that_is_not_icite_json_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="icite"):
        parse_icite_response(body)


def test_an_empty_data_list_is_no_records_not_an_error() -> None:
    assert parse_icite_response(b'{"data": []}').records == ()


# ---------------------------------------------------------------------------------------- harvesting

N = 450  # three iCite batches: 200 + 200 + 50
FIRST = 31_000_001
UNKNOWN = str(FIRST + N - 1)  # iCite does not know the last one
CHANGED = 31_000_008  # its RCR changes in the history test


def icite_record(
    pmid: int, *, rcr: float = 1.25, modified: str = "11/01/2026, 08:00:00"
) -> dict[str, object]:
    return {
        "pmid": pmid,
        "year": 2024,
        "title": f"Record {pmid}",
        "citation_count": 3,
        "relative_citation_ratio": rcr,
        "nih_percentile": 55.5,
        "is_research_article": True,
        "is_clinical": False,
        "provisional": False,
        "cited_by": [pmid + 1, 99_000_001],
        "references": [pmid - 1],
        "last_modified": modified,
    }


@pytest.fixture
def standin() -> Iterator[StandIn]:
    xml, _ = corpus({date(2026, 11, 2): N}, first_pmid=FIRST)
    with StandIn([xml]) as server:
        server.add_icite_records([icite_record(p) for p in range(FIRST, FIRST + N - 1)])
        yield server


def make_settings(standin: StandIn, db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        email="tests@example.org",
        ncbi_api_key=Secret("test-api-key-0123"),
        eutils_url=standin.eutils_url,
        idconv_url=standin.idconv_url,
        crossref_url=standin.crossref_url,
        icite_url=standin.icite_url,
        icite_requests_per_second=20.0,
        ncbi_requests_per_second=10.0,
        http=HttpSettings(timeout=10.0, max_attempts=3, backoff_initial=0.01, backoff_max=0.05),
    )


def run_harvest(standin: StandIn, engine: Engine, db_url: str) -> Any:
    settings = make_settings(standin, db_url)
    pmids = [str(p) for p in range(FIRST, FIRST + N)]
    return harvest("pmid", pmids, settings=settings, services=build_services(settings), engine=engine)


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


ICITE_TABLES = (
    "SELECT article_id, source, valid_on, citation_count, relative_citation_ratio"
    " FROM article_metrics ORDER BY id",
    "SELECT citing_pmid, cited_pmid, source FROM citation_edges ORDER BY citing_pmid, cited_pmid",
    "SELECT id, field, source FROM article_history ORDER BY id",
    "SELECT id, source, source_id, sha256 FROM raw_payloads ORDER BY id",
    "SELECT source, source_id, payload_id FROM source_records ORDER BY source, source_id",
    "SELECT id, icite_status, updated_at FROM articles ORDER BY id",
)


def snapshot(engine: Engine) -> list[list[Any]]:
    return [rows(engine, sql) for sql in ICITE_TABLES]


def test_a_harvest_asks_icite_in_batches_of_200_and_stores_metrics_edges_and_the_raw_answer(
    standin: StandIn, engine: Engine, db_url: str
) -> None:
    report = run_harvest(standin, engine, db_url)
    assert len(report.created) == N
    assert len(standin.requests_for(ICITE_PUBS)) == math.ceil(N / 200) == 3
    assert max(len(r.params["pmids"].split(",")) for r in standin.requests_for(ICITE_PUBS)) == 200
    icite = report.enrichment.icite
    assert (icite.asked, icite.updated, icite.not_found, icite.failed) == (N, N - 1, 1, [])
    assert report.exit_code == 0  # not found in iCite is a status, not a failure
    assert "icite 449 updated, 0 unchanged, 1 not found" in report.enrichment.summary_line()
    assert rows(engine, "SELECT COUNT(*), MIN(valid_on), MAX(valid_on) FROM article_metrics")[0][0] == N - 1
    assert [str(v) for v in rows(engine, "SELECT DISTINCT valid_on FROM article_metrics")[0]] == [
        "2026-11-01"
    ]
    statuses = dict(rows(engine, "SELECT pmid, icite_status FROM articles"))
    assert statuses[UNKNOWN] == "not_found" and statuses[str(FIRST)] == "found"
    assert rows(engine, "SELECT COUNT(*) FROM raw_payloads WHERE source = 'icite'")[0][0] == N - 1
    # each record names (pmid+1 cites pmid), (99000001 cites pmid), (pmid cites pmid-1): kept, once each
    edges = set(rows(engine, "SELECT citing_pmid, cited_pmid FROM citation_edges"))
    assert (str(FIRST + 1), str(FIRST)) in edges and ("99000001", str(FIRST)) in edges
    assert (str(FIRST), str(FIRST - 1)) in edges
    assert len(edges) == rows(engine, "SELECT COUNT(*) FROM citation_edges")[0][0]
    provenance = rows(engine, "SELECT source, source_id FROM field_provenance WHERE field = 'metrics.icite'")
    assert len(provenance) == N - 1 and provenance[0][0] == "icite"


def test_the_same_answer_again_writes_nothing_and_a_changed_rcr_adds_one_row_and_one_history_entry(
    standin: StandIn, engine: Engine, db_url: str
) -> None:
    run_harvest(standin, engine, db_url)
    before = snapshot(engine)
    again = run_harvest(standin, engine, db_url)
    assert again.enrichment.icite.unchanged == N - 1 and again.enrichment.icite.updated == 0
    assert snapshot(engine) == before

    changed = CHANGED
    standin.add_icite_records([icite_record(changed, rcr=1.75, modified="12/01/2026, 08:00:00")])
    third = run_harvest(standin, engine, db_url)
    assert third.enrichment.icite.updated == 1
    history = rows(
        engine,
        "SELECT h.old_value, h.new_value FROM article_history h JOIN articles a ON a.id = h.article_id "
        "WHERE h.field = 'metrics.icite' AND a.pmid = '31000008' ORDER BY h.id",
    )
    assert len(history) == 2  # the first store and the change
    assert json.loads(history[1][0]) == {"relative_citation_ratio": 1.25}
    assert json.loads(history[1][1]) == {"relative_citation_ratio": 1.75}
    series = rows(
        engine,
        "SELECT m.valid_on, m.relative_citation_ratio FROM article_metrics m"
        " JOIN articles a ON a.id = m.article_id WHERE a.pmid = '31000008' ORDER BY m.valid_on",
    )
    assert [(str(day), rcr) for day, rcr in series] == [("2026-11-01", 1.25), ("2026-12-01", 1.75)]
    assert rows(engine, "SELECT COUNT(*) FROM article_metrics")[0][0] == N
    assert rows(engine, "SELECT COUNT(*) FROM article_history WHERE field = 'metrics.icite'")[0][0] == N


def test_the_older_envelope_at_the_standin_stores_the_same_metrics(
    standin: StandIn, engine: Engine, db_url: str
) -> None:
    standin.icite_legacy_envelope = True
    report = run_harvest(standin, engine, db_url)
    assert report.enrichment.icite.updated == N - 1


def test_no_enrich_leaves_icite_alone(standin: StandIn, engine: Engine, db_url: str) -> None:
    settings = make_settings(standin, db_url)
    harvest(
        "pmid",
        [str(FIRST)],
        settings=settings,
        services=build_services(settings),
        engine=engine,
        enrich=False,
    )
    assert standin.requests_for(ICITE_PUBS) == []


def test_a_batch_that_keeps_failing_names_its_pmids_and_the_others_are_stored(
    standin: StandIn, engine: Engine, db_url: str
) -> None:
    from tests.standin import Status

    standin.inject(ICITE_PUBS, *(Status(503) for _ in range(3)))  # every attempt of the first batch
    report = run_harvest(standin, engine, db_url)
    icite = report.enrichment.icite
    assert len(icite.failed) == 200 and icite.updated == N - 1 - 200
    assert report.exit_code == 4


# ----------------------------------------------------------------------------------------- snapshots

METADATA_HEADER = (
    "pmid,doi,title,authors,year,journal,is_research_article,citation_count,field_citation_rate,"
    "expected_citations_per_year,citations_per_year,relative_citation_ratio,nih_percentile,molecular_cellular,"
    "animal,human,apt,is_clinical,cited_by_clin,x_coord,y_coord,cited_by,references,provisional,last_modified"
)


def metadata_row(pmid: int, rcr: str = "1.25") -> str:
    return (
        f'{pmid},10.5555/x.{pmid},"Record {pmid}","A Author, B Author",2024.0,J Test,True,3,2.0,1.0,1.5,'
        f"{rcr},"
        f'55.5,0.0,0.0,1.0,0.05,False,,0,1,"{pmid + 1} 99000001",{pmid - 1},False,11/01/2026 08:00:00'
    )


def test_ingest_icite_loads_both_snapshot_files_once_and_a_forced_second_load_writes_nothing(
    standin: StandIn, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    from harvester.jobs.icite_ingest import ingest_icite_file

    settings = make_settings(standin, db_url)
    pmids = [str(p) for p in range(FIRST, FIRST + 3)]
    harvest("pmid", pmids, settings=settings, services=build_services(settings), engine=engine, enrich=False)
    meta = tmp_path / "icite_metadata.csv"
    rows_ = [metadata_row(p) for p in range(FIRST, FIRST + 3)] + [metadata_row(5), "x,bad"]
    meta.write_text(METADATA_HEADER + "\n" + "\n".join(rows_) + "\n")
    occ = tmp_path / "open_citation_collection.csv"
    occ.write_text(f"citing,referenced\n{FIRST},{FIRST + 2}\n7,8\n{FIRST},{FIRST + 2}\n9,{FIRST}\n")

    first = ingest_icite_file(meta, engine=engine)
    assert (first.kind, first.rows, first.metrics_updated, first.not_stored) == ("icite-metadata", 5, 3, 1)
    assert len(first.rejected) == 1
    edges = ingest_icite_file(occ, engine=engine)
    assert edges.kind == "icite-citations" and edges.edges_added == 2  # 7->8 has no stored end; one duplicate
    assert ingest_icite_file(meta, engine=engine).skipped  # the same bytes: applied before
    again = [ingest_icite_file(p, engine=engine, force=True) for p in (meta, occ)]
    assert [r.writes for r in again] == [0, 0]
    assert again[0].metrics_unchanged == 3
    kinds = rows(engine, "SELECT kind, records FROM bulk_files ORDER BY id")
    assert kinds == [("icite-metadata", 5), ("icite-citations", 4)]
    rcr = rows(engine, "SELECT relative_citation_ratio FROM article_metrics WHERE source = 'icite'")
    assert [r[0] for r in rcr] == [1.25, 1.25, 1.25]


def test_a_file_that_is_not_an_icite_snapshot_is_a_bulk_file_error(engine: Engine, tmp_path: Path) -> None:
    from harvester.core.errors import BulkFileError
    from harvester.jobs.icite_ingest import ingest_icite_file

    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(BulkFileError, match="not an iCite snapshot"):
        ingest_icite_file(path, engine=engine)
    assert rows(engine, "SELECT COUNT(*) FROM bulk_files")[0][0] == 0


def test_the_standin_answers_icite_as_the_service_does() -> None:
    import requests

    with StandIn() as server:
        server.add_icite_records([icite_record(10), icite_record(11)])
        url = server.icite_url + "api/pubs"
        answer = requests.get(url, params={"pmids": "11,12,10"}, timeout=5).json()
        assert [r["pmid"] for r in answer["data"]] == [11, 10] and set(answer) == {"data"}
        server.icite_legacy_envelope = True
        legacy = requests.get(url, params={"pmids": "10"}, timeout=5).json()
        assert legacy["meta"] == {"pmids": "10"} and "self" in legacy["links"]
        assert requests.get(url + "/11", timeout=5).json()["data"][0]["pmid"] == 11
        too_many = ",".join(str(p) for p in range(1, 202))
        assert requests.get(url, params={"pmids": too_many}, timeout=5).status_code == 400
        assert len(server.requests_for(ICITE_PUBS)) == 4


def test_metrics_are_in_the_document_the_csv_the_solr_export_and_show(
    standin: StandIn, engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from db.documents import csv_row, load_documents, resolve_identifiers
    from db.solr import solr_document
    from harvester.cli import run

    run_harvest(standin, engine, db_url)
    ids = resolve_identifiers(engine, [str(FIRST + 1), UNKNOWN])
    known, unknown = (doc for doc in load_documents(engine, [i for i in ids.values() if i is not None]))
    icite = known["metrics"]["icite"]
    assert (icite["valid_on"], icite["citation_count"], icite["relative_citation_ratio"]) == (
        "2026-11-01",
        3,
        1.25,
    )
    # stored edges naming it: FIRST+2 and 99000001 cite it (FIRST+2's record names it too); it cites FIRST
    assert (icite["cited_by_stored_edges"], icite["references_stored_edges"]) == (2, 1)
    assert known["icite_status"] == "found"
    assert (unknown["metrics"], unknown["icite_status"]) == ({}, "not_found")
    row = csv_row(known)
    assert (row["relative_citation_ratio"], row["icite_citation_count"], row["metrics_valid_on"]) == (
        "1.25",
        "3",
        "2026-11-01",
    )
    solr = solr_document(known)
    assert (solr["icite_rcr_str"], solr["icite_citation_count_str"]) == ("1.25", "3")
    assert "icite_rcr_str" not in solr_document(unknown)
    assert run(["--db", db_url, "show", str(FIRST + 1), UNKNOWN]) == 0
    out = capsys.readouterr().out
    assert "iCite        RCR 1.25 (NIH percentile 55.5), 3 citations" in out
    assert "iCite        - (iCite does not know it)" in out


# ------------------------------------------------------------------------------------------ commands


@pytest.fixture
def cli_env(standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    for name, value in standin.env().items():
        monkeypatch.setenv(name, value)
    return standin


def test_enrich_source_icite_asks_only_icite_and_reports_not_found(
    cli_env: StandIn,
    engine: Engine,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    import harvester.jobs.enrichment
    from harvester.cli import run

    settings = make_settings(cli_env, db_url)
    pmids = [str(p) for p in range(FIRST, FIRST + 3)] + [UNKNOWN]
    harvest("pmid", pmids, settings=settings, services=build_services(settings), engine=engine, enrich=False)
    cli_env.clear_log()
    assert run(["--db", db_url, "--json", "enrich", "--source", "icite", *pmids]) == 0
    assert [r.path for r in cli_env.requests] == ["/icite/api/pubs"]
    out = json.loads(capsys.readouterr().out)
    icite = out["enrichment"]["icite"]
    assert (icite["asked"], icite["updated"], icite["not_found"], icite["failed"]) == (4, 3, 1, [])
    assert out["enrichment"]["pmc"]["asked"] == 0 and out["enrichment"]["crossref"]["asked"] == 0
    # without ids: articles never asked or asked long ago are due, and one iCite did not know once its
    # back-off is over (as for PMC and Crossref): not today, a day later
    cli_env.clear_log()
    assert run(["--db", db_url, "enrich", "--source", "icite"]) == 0
    assert "articles 0;" in capsys.readouterr().out and cli_env.requests == []
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    monkeypatch.setattr(harvester.jobs.enrichment, "utc_today", lambda: tomorrow)
    assert run(["--db", db_url, "--json", "enrich", "--source", "icite"]) == 0
    assert [r.params["pmids"] for r in cli_env.requests] == [UNKNOWN]
    assert json.loads(capsys.readouterr().out)["enrichment"]["icite"]["not_found"] == 1
    assert run(["--db", db_url, "enrich", "--source", "pubmed"]) == 2


def test_ingest_icite_command_loads_and_reports(
    cli_env: StandIn, engine: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harvester.cli import run

    settings = make_settings(cli_env, db_url)
    harvest(
        "pmid",
        [str(FIRST)],
        settings=settings,
        services=build_services(settings),
        engine=engine,
        enrich=False,
    )
    occ = tmp_path / "open_citation_collection.csv"
    occ.write_text(f"citing,referenced\n{FIRST},5\n6,7\n")
    assert run(["--db", db_url, "ingest-icite", str(occ)]) == 0
    assert "icite-citations, 2 rows" in capsys.readouterr().out
    assert run(["--db", db_url, "--json", "ingest-icite", "--all-edges", "--force", str(occ)]) == 0
    report = json.loads(capsys.readouterr().out)["files"][0]
    assert report["edges_added"] == 1  # 6 -> 7, kept with --all-edges; the other was there
    bad = tmp_path / "other.csv"
    bad.write_text("x\n1\n")
    assert run(["--db", db_url, "ingest-icite", str(bad)]) == 2
    assert "not an iCite snapshot" in capsys.readouterr().err


def test_nightly_refreshes_icite_about_monthly_spread_over_the_month(
    standin: StandIn, engine: Engine, db_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from db.runs import start_run
    from harvester.core.settings import NightlySettings
    from harvester.jobs.nightly import enrich_stale_articles

    run_harvest(standin, engine, db_url)
    settings = dataclasses.replace(make_settings(standin, db_url), nightly=NightlySettings(icite_days=30))
    services = build_services(settings)
    standin.clear_log()
    report, _ = enrich_stale_articles(
        settings=settings, services=services, engine=engine, run_id=start_run(engine, "nightly")
    )
    slot = datetime.now(UTC).date().toordinal() % 30
    ids = dict(rows(engine, "SELECT pmid, id FROM articles"))
    # asked today: nothing is due; the PMID iCite did not know today backs off (asked again tomorrow)
    assert (report.icite.asked, report.icite.backed_off) == (0, 1)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE source_records SET fetched_at = :t"),
            {"t": datetime.now(UTC) - timedelta(days=40)},
        )
    standin.clear_log()
    report, _ = enrich_stale_articles(
        settings=settings, services=services, engine=engine, run_id=start_run(engine, "nightly")
    )
    tonight = sorted(p for p, article_id in ids.items() if article_id % 30 == slot and p != UNKNOWN)
    asked = sorted(p for r in standin.requests_for(ICITE_PUBS) for p in r.params["pmids"].split(","))
    assert asked == tonight and 10 <= len(tonight) <= 20  # a thirtieth of 450 each night
    assert (report.icite.unchanged, report.icite.backed_off) == (len(tonight), 1)
    # the next night: the next thirtieth, and the PMID iCite did not know, whatever its night of the month
    standin.clear_log()
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    report, _ = enrich_stale_articles(
        settings=settings,
        services=services,
        engine=engine,
        run_id=start_run(engine, "nightly"),
        today=tomorrow,
    )
    due = sorted(p for p, article_id in ids.items() if article_id % 30 == (slot + 1) % 30 or p == UNKNOWN)
    asked = sorted(p for r in standin.requests_for(ICITE_PUBS) for p in r.params["pmids"].split(","))
    assert asked == due
    assert (report.icite.not_found, report.icite.backed_off) == (1, 0)

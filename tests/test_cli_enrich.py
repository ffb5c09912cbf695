"""Enrichment and reconciliation end to end through the CLI against the stand-in (PubMed, PMC, Crossref)."""

from __future__ import annotations

import copy
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from enrich.crossref import pool_limits
from harvester.cli import run
from harvester.core.errors import ExitCode
from harvester.core.settings import load_settings
from tests.pacing import assert_paced, eutils_times
from tests.standin import StandIn
from tests.test_cli import SEED, SEED_TITLE, clone_record, default_db, home, stored_pmids

__all__ = ["home"]  # the fixture, imported for pytest

FIXTURES = Path(__file__).parent / "fixtures"
PMC_SEED = FIXTURES / "efetch_pmc_PMC8958025.xml"
CROSSREF_SEED = FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json"
CROSSREF_WORK = json.loads(CROSSREF_SEED.read_text())["message"]


def clone_pmc(pmid: str) -> bytes:
    """The seed's PMC article with the ids clone_record gives ``pmid``: PMC9<pmid>, 10.5555/test.<pmid>."""
    text = PMC_SEED.read_text()
    text = text.replace('pub-id-type="pmid">35350566<', f'pub-id-type="pmid">{pmid}<')
    text = text.replace('pub-id-type="pmc">8958025<', f'pub-id-type="pmc">9{pmid}<')
    text = text.replace(
        'pub-id-type="doi">10.3389/fonc.2022.836548<', f'pub-id-type="doi">10.5555/test.{pmid}<'
    )
    return text.encode()


def clone_work(doi: str, **changes: object) -> dict[str, object]:
    work = copy.deepcopy(CROSSREF_WORK)
    work["DOI"] = doi
    work.update(changes)
    return dict(work)


def documents(*ids: str) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = run(["show", "--format", "json", *ids])
    assert code == ExitCode.OK, buffer.getvalue()
    result = json.loads(buffer.getvalue())
    assert isinstance(result, list)
    return result


def article_tables_dump(db: Path) -> list[str]:
    """Every row of every table but the run log (each run adds its own row there, by design)."""
    with sqlite3.connect(db) as conn:
        return [line for line in conn.iterdump() if "harvest_runs" not in line]


@pytest.fixture
def standin(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    pmids = [str(p) for p in range(900001, 900006)]
    with StandIn(
        [SEED, *(clone_record(SEED, p) for p in pmids)],
        pmc_sources=[PMC_SEED, *(clone_pmc(p) for p in pmids)],
        crossref_sources=[
            CROSSREF_SEED,
            *(json.dumps(clone_work(f"10.5555/test.{p}")).encode() for p in pmids),
        ],
        enforce_rate=3,
    ) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def test_seed_article_is_enriched_with_provenance(standin: StandIn, home: Path) -> None:
    assert run(["pmid", "35350566"]) == ExitCode.OK
    [doc] = documents("35350566")
    assert doc["title"] == SEED_TITLE
    assert doc["license"] == {"url": "https://creativecommons.org/licenses/by/4.0/", "type": "open-access"}
    assert doc["copyright"] == "Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang"
    assert doc["publisher"] == "Frontiers Media S.A."  # PMC's spelling: PMC comes first for publisher
    assert doc["subjects"] == ["Oncology"]
    assert doc["citation_count"] == 42
    assert doc["crossref_type"] == "journal-article"
    assert doc["retracted"] is False and doc["retraction_sources"] == []
    provenance = doc["provenance"]
    assert isinstance(provenance, dict)
    assert provenance["title"]["source"] == "pubmed"
    assert provenance["license"]["source"] == "pmc"
    assert provenance["license"]["source_id"] == "PMC8958025"
    assert provenance["citation_count"]["source"] == "crossref"
    assert provenance["citation_count"]["source_id"] == "10.3389/fonc.2022.836548"
    assert_paced(eutils_times(standin.requests), 3)  # counted with a late-logging margin: tests/pacing.py


def test_doi_then_pmid_then_pmcid_is_one_article_and_reruns_write_nothing(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["doi", "https://doi.org/10.3389/FONC.2022.836548"]) == ExitCode.OK
    before = article_tables_dump(default_db(home))
    capsys.readouterr()
    assert run(["--json", "pmid", "35350566"]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["unchanged"] == ["35350566"]
    assert summary["enrichment"]["pmc"]["unchanged"] == 1
    assert summary["enrichment"]["crossref"]["unchanged"] == 1
    assert run(["pmcid", "pmc8958025"]) == ExitCode.OK
    assert stored_pmids(default_db(home)) == ["35350566"]
    assert article_tables_dump(default_db(home)) == before


def test_crossref_doi_in_another_case_merges(standin: StandIn, home: Path) -> None:
    standin.add_crossref_works(
        json.dumps(clone_work("10.5555/TEST.900001", **{"is-referenced-by-count": 7})).encode()
    )
    assert run(["pmid", "900001"]) == ExitCode.OK
    [doc] = documents("900001")
    assert doc["citation_count"] == 7
    assert doc["doi"] == "10.5555/test.900001"
    assert stored_pmids(default_db(home)) == ["900001"]


def test_title_changed_upstream_is_updated_and_history_keeps_the_old(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pmid", "900002"]) == ExitCode.OK
    standin.add_records(clone_record(SEED, "900002").replace(SEED_TITLE.encode(), b"A Corrected Title"))
    assert run(["pmid", "900002"]) == ExitCode.OK
    assert documents("900002")[0]["title"] == "A Corrected Title"
    capsys.readouterr()
    assert run(["--json", "history", "900002"]) == ExitCode.OK
    changes = json.loads(capsys.readouterr().out)["history"]
    titles = [c for c in changes if c["field"] == "title"]
    assert len(titles) == 1
    assert titles[0]["old_value"] == SEED_TITLE  # values are JSON values in the document, not JSON text
    assert titles[0]["new_value"] == "A Corrected Title"
    assert titles[0]["source"] == "pubmed"
    assert titles[0]["run_id"] is not None


def test_a_record_sharing_another_pmids_doi_is_no_conflict(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 (was "a record claiming two stored articles is a conflict", exit 6): two PMIDs are two
    articles; each keeps its own DOI."""
    assert run(["pmid", "900003", "900004"]) == ExitCode.OK
    standin.add_records(clone_record(SEED, "900003").replace(b"10.5555/test.900003", b"10.5555/test.900004"))
    assert run(["pmid", "900003"]) == ExitCode.OK
    capsys.readouterr()
    assert run(["--json", "conflicts"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out) == {"conflicts": []}
    with sqlite3.connect(default_db(home)) as conn:
        got = conn.execute("SELECT pmid, doi FROM articles ORDER BY pmid").fetchall()
    assert got == [("900003", "10.5555/test.900004"), ("900004", "10.5555/test.900004")]


def _two_articles_not_in_pubmed(standin: StandIn, home: Path) -> None:
    """Two articles stored from Crossref alone; the second given a PMCID (as PMC enrichment would)."""
    for doi in ("10.9999/orphan.a", "10.9999/orphan.b"):
        standin.add_crossref_works(json.dumps(clone_work(doi)).encode())
        assert run(["doi", doi]) == ExitCode.OK
    with sqlite3.connect(default_db(home)) as conn:
        conn.execute("UPDATE articles SET pmcid = 'PMC9900007' WHERE doi = '10.9999/orphan.b'")


def _record_naming_both() -> bytes:
    return clone_record(SEED, "900007").replace(b"10.5555/test.900007", b"10.9999/orphan.a")


def test_a_record_naming_two_articles_not_in_pubmed_exits_6_and_is_settled_by_hand(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_articles_not_in_pubmed(standin, home)
    standin.add_records(_record_naming_both())  # its DOI is orphan a's, its PMCID (PMC9900007) orphan b's
    capsys.readouterr()
    assert run(["pmid", "--no-enrich", "900007"]) == ExitCode.CONFLICT
    assert "conflict" in capsys.readouterr().err
    assert run(["pmid", "--no-enrich", "900007"]) == ExitCode.CONFLICT  # reported again while open
    capsys.readouterr()
    assert run(["conflicts"]) == ExitCode.OK
    line = capsys.readouterr().out.strip()
    assert line.startswith("#1 ") and "[open]" in line
    assert "pubmed PMID 900007 names PMID 900007" in line
    assert "DOI 10.9999/orphan.a of article" in line and "(not in PubMed)" in line
    assert "PMCID PMC9900007 of article" in line and "{" not in line
    assert run(["--json", "conflicts"]) == ExitCode.OK
    [conflict] = json.loads(capsys.readouterr().out)["conflicts"]
    orphan_a = next(c["article_id"] for c in conflict["claims"] if c["value"] == "10.9999/orphan.a")
    # settle it: orphan a (its Crossref work) belongs to PMID 900007
    assert run(["conflicts", "resolve", "1", "--keep", f"article:{orphan_a}"]) == ExitCode.OK
    assert "#1 resolved (kept" in capsys.readouterr().out
    assert run(["pmid", "--no-enrich", "900007"]) == ExitCode.OK  # settled: no longer reported
    with sqlite3.connect(default_db(home)) as conn:
        assert conn.execute("SELECT count(*) FROM articles WHERE id = ?", (orphan_a,)).fetchone() == (0,)
        sources = conn.execute(
            "SELECT s.source, s.source_id FROM source_records s JOIN articles a ON a.id = s.article_id "
            "WHERE a.pmid = '900007' ORDER BY s.source"
        ).fetchall()
        history = conn.execute(
            "SELECT h.field, h.source FROM article_history h JOIN articles a ON a.id = h.article_id "
            "WHERE a.pmid = '900007' AND h.field = 'conflict'"
        ).fetchall()
        row = conn.execute("SELECT status, resolution, kept_article_id FROM conflicts").fetchone()
    assert sources == [("crossref", "10.9999/orphan.a"), ("pubmed", "900007")]
    assert history == [("conflict", "user")]
    assert row[:2] == ("resolved", "kept")
    capsys.readouterr()
    assert run(["conflicts", "resolve", "1", "--ignore"]) == ExitCode.USAGE  # already resolved
    assert "already resolved" in capsys.readouterr().err


def test_a_record_naming_two_articles_not_in_pubmed_exits_6_through_ingest_too(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_articles_not_in_pubmed(standin, home)
    update = home / "pubmed26n0001.xml"
    update.write_bytes(_record_naming_both())
    assert run(["ingest", "--no-enrich", str(update)]) == ExitCode.CONFLICT
    capsys.readouterr()
    assert run(["conflicts", "resolve", "1", "--ignore"]) == ExitCode.OK
    assert run(["--json", "conflicts", "--status", "ignored"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["conflicts"][0]["status"] == "ignored"


def test_doi_pubmed_does_not_know_is_stored_from_crossref_alone(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = clone_work(
        "10.9999/book.chapter.1",
        type="book-chapter",
        title=["A Chapter PubMed Never Indexed"],
        author=[{"given": "Ada", "family": "Lovelace", "sequence": "first", "affiliation": []}],
    )
    standin.add_crossref_works(json.dumps(work).encode())
    assert run(["--json", "doi", "doi:10.9999/BOOK.CHAPTER.1"]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["created"] == ["10.9999/book.chapter.1"]
    [doc] = documents("10.9999/book.chapter.1")
    assert doc["pmid"] is None
    assert doc["in_pubmed"] is False
    assert doc["title"] == "A Chapter PubMed Never Indexed"
    assert doc["crossref_type"] == "book-chapter"
    authors = doc["authors"]
    assert isinstance(authors, list)
    assert [(a["last_name"], a["fore_name"]) for a in authors] == [("Lovelace", "Ada")]


def test_doi_unknown_to_crossref_is_a_status_not_a_failure(standin: StandIn, home: Path) -> None:
    standin.add_records(clone_record(SEED, "900005").replace(b"10.5555/test.900005", b"10.5555/nowhere.1"))
    assert run(["pmid", "900005"]) == ExitCode.OK
    [doc] = documents("900005")
    assert doc["crossref_status"] == "not_found"


def test_no_enrich_asks_neither_pmc_nor_crossref(standin: StandIn, home: Path) -> None:
    assert run(["pmid", "--no-enrich", "35350566"]) == ExitCode.OK
    assert standin.requests_for("crossref/works") == []
    assert all(r.params.get("db") == "pubmed" for r in standin.requests_for("efetch.fcgi"))
    [doc] = documents("35350566")
    assert doc["license"] is None


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_enriching_1000_articles_is_economical_and_polite(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pmids = [str(p) for p in range(800001, 801001)]
    pubmed = b"".join(
        clone_record(SEED, p).removeprefix(b"<PubmedArticleSet>").removesuffix(b"</PubmedArticleSet>")
        for p in pmids
    )
    pmc_articles = [clone_pmc(p) for p in pmids]
    works = [json.dumps(clone_work(f"10.5555/test.{p}")).encode() for p in pmids]
    with StandIn(
        [b"<PubmedArticleSet>" + pubmed + b"</PubmedArticleSet>"],
        pmc_sources=pmc_articles,
        crossref_sources=works,
        enforce_rate=3,
    ) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        id_file = home / "ids.txt"
        id_file.write_text("\n".join(pmids))
        assert run(["pmid", "--no-enrich", "--from", str(id_file)]) == ExitCode.OK
        # Each process paces itself; two processes back to back can still meet in one second (a known
        # limit), so the enrich run starts a second after the harvest, as separate runs would.
        time.sleep(1.1)
        server.clear_log()
        assert run(["enrich"]) == ExitCode.OK
        crossref = server.requests_for("crossref/works")
        pmc = [r for r in server.requests_for("efetch.fcgi") if r.params.get("db") == "pmc"]
        assert 0 < len(crossref) <= 50
        assert 0 < len(pmc) <= 20
        # Counted in the stand-in's log with one late-logged request's margin per request in flight
        # (tests/pacing.py); Crossref at its pool's rate (polite with an e-mail, public without).
        rate, in_flight = pool_limits(load_settings())
        assert_paced([r.time for r in crossref], int(rate), senders=in_flight)
        ncbi = [r.time for r in server.requests if not re.search("crossref", r.path)]
        assert_paced(ncbi, 3)
    [doc] = documents("801000")
    assert doc["license"] is not None and doc["citation_count"] == 42


def test_show_text_names_each_fields_source(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pmid", "35350566"]) == ExitCode.OK
    capsys.readouterr()
    assert run(["show", "35350566"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert f"Title        {SEED_TITLE}  [pubmed 35350566]" in text
    assert "Licence      https://creativecommons.org/licenses/by/4.0/ (open-access)  [pmc PMC8958025]" in text
    assert "Publisher    Frontiers Media S.A.  [pmc PMC8958025]" in text
    assert "Citations    42; references" in text and "[crossref 10.3389/fonc.2022.836548]" in text


def test_merge_policy_from_the_config_decides_the_publisher(
    standin: StandIn, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = home / "merge.toml"
    config.write_text('[merge]\npublisher = ["crossref", "pmc"]\n')
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    assert run(["pmid", "35350566"]) == ExitCode.OK
    [doc] = documents("35350566")
    assert doc["publisher"] == "Frontiers Media SA"  # Crossref's spelling now wins
    assert doc["provenance"]["publisher"]["source"] == "crossref"


def test_unknown_merge_field_or_source_in_the_config_is_a_usage_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = home / "merge.toml"
    for body, needle in (('nonsense = ["pmc"]', "nonsense"), ('title = ["wikipedia"]', "wikipedia")):
        config.write_text(f"[merge]\n{body}\n")
        assert run(["--config", str(config), "pmid", "35350566"]) == ExitCode.USAGE
        assert needle in capsys.readouterr().err


COCHRANE = Path(__file__).parent / "fixtures" / "efetch_pubmed_cochrane_versions_shared_doi.xml"
COCHRANE_DOI = "10.1002/14651858.cd002020"


def _cochrane_state(home: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    with sqlite3.connect(default_db(home)) as conn:
        dois = conn.execute("SELECT pmid, doi, citation_count FROM articles ORDER BY pmid").fetchall()
        shared = conn.execute("SELECT pmid FROM report_shared_identifiers ORDER BY pmid").fetchall()
        conflicts = conn.execute("SELECT count(*) FROM conflicts").fetchone()[0]
    return dois, shared, int(conflicts)


@pytest.mark.parametrize("path", ["pmid", "ingest"])
def test_the_cochrane_pair_sharing_a_doi_exits_0_through_pmid_and_ingest_and_crossref_enriches_both(
    standin: StandIn, home: Path, path: str
) -> None:
    """Issue 13: `harvest pmid` exited 6 and `harvest ingest` 0 for the same two records."""
    standin.add_records(COCHRANE.read_bytes())
    standin.add_crossref_works(
        json.dumps(clone_work("10.1002/14651858.CD002020", **{"is-referenced-by-count": 31})).encode()
    )
    if path == "pmid":
        assert run(["pmid", "11034741", "11406024"]) == ExitCode.OK
    else:
        assert run(["ingest", str(COCHRANE)]) == ExitCode.OK
        assert run(["enrich"]) == ExitCode.OK  # ingest defers enrichment
    dois, shared, conflicts = _cochrane_state(home)
    assert dois == [("11034741", COCHRANE_DOI, 31), ("11406024", COCHRANE_DOI, 31)]
    assert shared == [("11034741",), ("11406024",)]
    assert conflicts == 0


def test_a_crossref_work_naming_an_article_not_in_pubmed_and_a_pubmed_article_exits_6_in_each_path(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Crossref-only article and a PubMed article that later names its DOI would have to be merged."""
    standin.add_crossref_works(json.dumps(clone_work("10.9999/orphan.a")).encode())
    assert run(["doi", "10.9999/orphan.a"]) == ExitCode.OK
    assert run(["pmid", "900001"]) == ExitCode.OK
    standin.add_records(clone_record(SEED, "900001").replace(b"10.5555/test.900001", b"10.9999/orphan.a"))
    assert run(["pmid", "900001"]) == ExitCode.CONFLICT  # its changed record names the orphan's DOI
    assert run(["doi", "10.9999/orphan.a"]) == ExitCode.CONFLICT
    # the same situation through pmcid: its PMC record is fine, but enriching it asks Crossref for that DOI
    assert run(["pmcid", "PMC9900001"]) == ExitCode.CONFLICT
    capsys.readouterr()
    assert run(["--json", "conflicts"]) == ExitCode.OK
    [conflict] = json.loads(capsys.readouterr().out)["conflicts"]
    assert conflict["source"] == "crossref" and conflict["source_id"] == "10.9999/orphan.a"
    kept = next(c for c in conflict["claims"] if c["pmid"] == "900001")
    assert run(["conflicts", "resolve", str(conflict["id"]), "--keep", "900001"]) == ExitCode.OK
    assert run(["doi", "10.9999/orphan.a"]) == ExitCode.OK  # settled: the work goes to PMID 900001
    with sqlite3.connect(default_db(home)) as conn:
        holders = conn.execute(
            "SELECT article_id FROM source_records WHERE source = 'crossref' AND source_id = ?",
            ("10.9999/orphan.a",),
        ).fetchall()
    assert holders == [(kept["article_id"],)]

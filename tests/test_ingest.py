"""``harvest ingest``: PubMed baseline and update files applied once each, in NLM's order (issue 5, item 3).

The real update-file excerpts come from $HARVEST_FIXTURES/medline-updatefiles/; hand-written files in
NLM's format (tests/fixtures/bulk_*.xml) show versioned PMIDs, deletions and truncation. Files are copied
into tmp_path under NLM names (pubmed25n1275.xml.gz) where a test needs a place in NLM's sequence.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.bulk import list_applied
from db.engine import open_database
from db.models import metadata
from db.runs import exclusive_run
from harvester.cli import run
from harvester.core.errors import BulkFileError, ExitCode, StorageError
from harvester.core.settings import Settings
from harvester.jobs.ingest import IngestReport, check_paths, ingest_files, parse_file_name, sequence_order
from tests.db_helpers import failing_statement, snapshot
from tests.helpers_fixtures import shared_fixture
from tests.interrupt import DEFAULT_SIGINT
from tests.standin import StandIn

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "bulk_versioned_pmid_v1.xml"
V2_UPDATE = FIXTURES / "bulk_versioned_pmid_v2_update.xml"
FIVE = FIXTURES / "bulk_five_records.xml"
JCORE = "medline-updatefiles/jcore-pubmed21n1016_excerpt_original.xml.gz"  # 3 records, NLM file 21n1016
COSTOSYS = "medline-updatefiles/costosys-pubmedsample18n0001.xml.gz"  # 177 records
DELETIONS = "medline-updatefiles/derived/pubmedsample_2019.excerpt-DeleteCitation.xml"  # 7 PMIDs
DELETED_PMIDS = ["23203860", "23203861", "23203892", "23203893", "23203894", "23203895", "23203896"]

ARTICLES = metadata.tables["articles"]
HISTORY = metadata.tables["article_history"]


def ingest(engine: Engine, *paths: Path, **options: Any) -> IngestReport:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    return ingest_files(list(paths), settings=settings, services=None, engine=engine, **options)


def place(source: Path, directory: Path, name: str) -> Path:
    """A copy of ``source`` named ``name`` (NLM's name, for a place in the sequence)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    shutil.copyfile(source, target)
    return target


def articles(engine: Engine) -> dict[str, dict[str, Any]]:
    """PMID -> the articles row, for every stored article."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ARTICLES)).mappings().all()
    return {row["pmid"]: dict(row) for row in rows}


def history(engine: Engine, pmid: str) -> list[tuple[str, str | None, str | None]]:
    a, h = ARTICLES, HISTORY
    query = (
        sa.select(h.c.field, h.c.old_value, h.c.new_value)
        .join(a, a.c.id == h.c.article_id)
        .where(a.c.pmid == pmid, h.c.field != "created")  # the changes; creation is tested elsewhere
        .order_by(h.c.id)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def reading_processes() -> list[int]:
    """Live child processes of this one that run harvester.jobs.bulk_reader (Linux /proc)."""
    found: list[int] = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"harvester.jobs.bulk_reader" in command and state != "Z":
                found.append(int(pid))
    return found


def without_runs(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = snapshot(engine)
    tables.pop("harvest_runs")
    return tables


# ---- the real update files ------------------------------------------------------------------------


@pytest.mark.usefixtures("reader")
def test_real_update_files_ingest_and_their_delete_citations_end_deleted(engine: Engine) -> None:
    paths = [shared_fixture(JCORE), shared_fixture(COSTOSYS), shared_fixture(DELETIONS)]
    report = ingest(engine, *paths)

    assert [(f.name, f.outcome) for f in report.files] == [
        ("jcore-pubmed21n1016_excerpt_original.xml.gz", "applied"),  # the only name with NLM's number
        ("costosys-pubmedsample18n0001.xml.gz", "applied"),
        ("pubmedsample_2019.excerpt-DeleteCitation.xml", "applied"),
    ]
    assert [(f.records, f.created, f.deleted_listed) for f in report.files] == [
        (3, 3, 0),
        (177, 177, 0),
        (0, 0, 7),
    ]
    stored = articles(engine)
    assert len(stored) == 180
    assert {"31878634", "31878635", "31878636", "973217"} <= set(stored)
    # The deleted articles stay, flagged, with the deletion in their history; nothing else is flagged.
    assert sorted(p for p, row in stored.items() if row["deleted"]) == DELETED_PMIDS
    assert report.files[2].deleted_marked == 7
    for pmid in DELETED_PMIDS:
        assert stored[pmid]["content_sha256"]  # the record and its payload stay
        assert history(engine, pmid) == [("deleted", "false", "true")]
    # The file record: NLM's place where the name has one, checksums, counts.
    applied = list_applied(engine)
    assert [(a.name, a.kind, a.release_year, a.sequence, a.records, a.deleted) for a in applied] == [
        ("jcore-pubmed21n1016_excerpt_original.xml.gz", "update", 2021, 1016, 3, 0),
        ("costosys-pubmedsample18n0001.xml.gz", "update", None, None, 177, 0),
        ("pubmedsample_2019.excerpt-DeleteCitation.xml", "update", None, None, 0, 7),
    ]
    assert applied[0].sha256 == report.files[0].sha256 and len(applied[0].sha256) == 64
    assert applied[0].size == paths[0].stat().st_size
    # Two records of the sample share a DOI (versions of a Cochrane review): no conflict since issue 13,
    # each keeps its DOI and the view lists the pair (before: a conflict and the second DOI NULL).
    assert report.files[1].conflicts == [] and report.files[1].conflict_count == 0
    assert stored["11034741"]["doi"] == stored["11406024"]["doi"] == "10.1002/14651858.cd002020"
    with engine.connect() as conn:
        shared = conn.execute(
            sa.text("SELECT pmid FROM report_shared_identifiers WHERE value = '10.1002/14651858.cd002020'")
        ).all()
    assert sorted(p for (p,) in shared) == ["11034741", "11406024"]
    assert report.exit_code == ExitCode.OK


@pytest.mark.usefixtures("reader")
def test_reingesting_a_real_file_is_a_no_op(engine: Engine) -> None:
    paths = [shared_fixture(JCORE), shared_fixture(COSTOSYS), shared_fixture(DELETIONS)]
    ingest(engine, *paths)
    before = without_runs(engine)

    report = ingest(engine, *paths, force=True)  # --force does not apply the same bytes twice either

    assert [f.outcome for f in report.files] == ["skipped", "skipped", "skipped"]
    assert report.files[0].message is not None and report.files[0].message.startswith("already applied on ")
    assert without_runs(engine) == before
    assert report.exit_code == ExitCode.OK


def test_the_same_bytes_under_another_name_are_skipped(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, shared_fixture(COSTOSYS))
    copy = place(shared_fixture(COSTOSYS), tmp_path, "pubmed18n0001.xml.gz")
    before = without_runs(engine)

    [file] = ingest(engine, copy).files

    assert file.outcome == "skipped"
    assert file.message is not None and "as costosys-pubmedsample18n0001.xml.gz" in file.message
    assert without_runs(engine) == before


def test_an_out_of_order_update_is_refused_and_applied_with_force(engine: Engine, tmp_path: Path) -> None:
    updates = tmp_path / "updatefiles"
    later = place(shared_fixture(COSTOSYS), updates, "pubmed21n1017.xml.gz")
    earlier = place(shared_fixture(JCORE), updates, "pubmed21n1016.xml.gz")
    assert ingest(engine, later).files[0].outcome == "applied"
    before = without_runs(engine)

    report = ingest(engine, earlier)

    [file] = report.files
    assert file.outcome == "refused"
    assert file.message == (
        f"pubmed21n1016.xml.gz comes before pubmed21n1017.xml.gz, already applied on "
        f"{list_applied(engine)[0].applied_at:%Y-%m-%d %H:%M} UTC (update files must be applied in order); "
        "--force applies it anyway"
    )
    assert report.exit_code == ExitCode.USAGE
    assert without_runs(engine) == before  # nothing stored, nothing recorded

    forced = ingest(engine, earlier, force=True)

    assert forced.files[0].outcome == "applied" and forced.files[0].forced
    assert forced.exit_code == ExitCode.OK
    assert {"31878634", "31878635", "31878636"} <= set(articles(engine))
    assert [(a.sequence, a.forced) for a in list_applied(engine)] == [(1017, False), (1016, True)]


def test_a_truncated_real_gzip_file_fails_before_anything_is_stored(engine: Engine, tmp_path: Path) -> None:
    whole = shared_fixture(COSTOSYS).read_bytes()
    path = tmp_path / "pubmed18n0001.xml.gz"
    path.write_bytes(whole[: len(whole) // 2])
    before = without_runs(engine)

    report = ingest(engine, path)

    [file] = report.files
    assert file.outcome == "failed"
    assert file.message is not None and "\n" not in file.message
    assert file.message.startswith(f"{path} is not a complete gzip file (")
    assert file.message.endswith("truncated download? Nothing of it was stored")
    assert report.exit_code == ExitCode.USAGE
    assert without_runs(engine) == before

    path.write_bytes(whole)  # downloaded again
    assert ingest(engine, path).files[0].outcome == "applied"
    assert len(articles(engine)) == 177


# ---- versioned PMIDs and deletions ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 1000])
@pytest.mark.usefixtures("reader")
def test_a_later_pmid_version_replaces_the_earlier_and_never_the_reverse(
    engine: Engine, tmp_path: Path, batch_size: int
) -> None:
    first = ingest(engine, V1, batch_size=batch_size)

    assert (first.files[0].records, first.files[0].created) == (4, 3)
    stored = articles(engine)
    assert sorted(stored) == ["39000001", "39000002", "39000004"]  # one row per PMID
    # 39000004 comes twice in the file, version 2 first: version 2 is kept whatever the batches.
    assert stored["39000004"]["pmid_version"] == 2
    assert (
        stored["39000004"]["title"] == "Air pollution and asthma admissions in children: corrected analysis."
    )

    update = ingest(engine, V2_UPDATE, batch_size=batch_size)

    [file] = update.files
    assert (file.records, file.created, file.updated, file.deleted_listed, file.deleted_marked) == (
        2,
        1,
        1,
        3,
        1,
    )
    stored = articles(engine)
    assert sorted(stored) == ["39000001", "39000002", "39000003", "39000004"]
    assert stored["39000001"]["pmid_version"] == 2
    assert (
        stored["39000001"]["title"]
        == "Sleep duration and episodic memory in older adults: a corrected version."
    )
    assert ("pmid_version", "1", "2") in history(engine, "39000001")
    # Deletions: 39000002 flagged; version 1 of 39000004 deleted but version 2 stands; 39000099 unknown.
    assert stored["39000002"]["deleted"] is True
    assert stored["39000004"]["deleted"] is False
    assert "39000099" not in stored

    # The first file again, as other bytes (re-compressed): applied, but version 1 does not come back.
    replay = tmp_path / "bulk_versioned_pmid_v1.xml.gz"
    replay.write_bytes(gzip.compress(V1.read_bytes()))
    [again] = ingest(engine, replay, batch_size=batch_size).files
    # counted per record stored: 39000004's two versions count once in one batch, twice in two
    assert (again.outcome, again.created, again.updated) == ("applied", 0, 0)
    assert again.unchanged == (4 if batch_size == 1 else 3)
    stored = articles(engine)
    assert stored["39000001"]["pmid_version"] == 2
    assert stored["39000002"]["deleted"] is True  # its unchanged record does not undo the deletion


@pytest.mark.usefixtures("reader")
def test_plain_and_gzipped_files_store_the_same_records(engine: Engine, tmp_path: Path) -> None:
    gz = tmp_path / "bulk_five_records.xml.gz"
    gz.write_bytes(gzip.compress(FIVE.read_bytes()))

    [zipped] = ingest(engine, gz).files
    stored = articles(engine)
    [plain] = ingest(engine, FIVE).files

    assert (zipped.outcome, zipped.records, zipped.created) == ("applied", 5, 5)
    assert (plain.outcome, plain.records, plain.unchanged) == ("applied", 5, 5)  # other bytes, same records
    assert zipped.sha256 != plain.sha256
    assert articles(engine) == stored


# ---- files that break part-way --------------------------------------------------------------------


@pytest.mark.usefixtures("reader")
def test_a_truncated_xml_file_keeps_only_whole_batches_is_not_recorded_and_a_rerun_applies_it(
    engine: Engine, tmp_path: Path
) -> None:
    whole = FIVE.read_bytes()
    cut = whole.index(b"<PMID", whole.index(b"39000013")) + 200  # inside the fifth record
    path = tmp_path / "pubmed25n1300.xml"
    path.write_bytes(whole[:cut])

    report = ingest(engine, path, batch_size=2)

    [file] = report.files
    assert file.outcome == "failed"
    assert file.message is not None and "\n" not in file.message
    assert file.message.startswith("PubMed XML is not well-formed at line ")
    assert file.message.endswith(
        "; the 4 records before it, stored in whole batches, stay; not recorded as applied: "
        "fix or download the file again and rerun"
    )
    assert sorted(articles(engine)) == ["39000010", "39000011", "39000012", "39000013"]
    assert list_applied(engine) == []
    assert report.exit_code == ExitCode.USAGE

    path.write_bytes(whole)
    [rerun] = ingest(engine, path, batch_size=2).files

    assert (rerun.outcome, rerun.created, rerun.unchanged) == ("applied", 1, 4)
    assert len(articles(engine)) == 5
    assert [a.name for a in list_applied(engine)] == ["pubmed25n1300.xml"]


def test_a_truncated_gzip_of_a_hand_written_file_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    data = gzip.compress(FIVE.read_bytes())
    path = tmp_path / "pubmed25n1300.xml.gz"
    path.write_bytes(data[:-20])  # the end of the deflate stream and the CRC trailer are missing
    before = without_runs(engine)

    [file] = ingest(engine, path).files

    assert file.outcome == "failed"
    assert file.message is not None and "is not a complete gzip file" in file.message
    assert without_runs(engine) == before


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        (
            "efetch_pmc_articleset.xml",
            "not PubMed XML: the root element is <pmc-articleset>, expected <PubmedArticleSet>",
        ),
        ("efetch_html_error_page.html", "PubMed XML is not well-formed at line "),
    ],
)
@pytest.mark.usefixtures("reader")
def test_a_file_that_is_not_pubmed_xml_fails_and_is_not_recorded(
    engine: Engine, tmp_path: Path, fixture: str, message: str
) -> None:
    path = place(FIXTURES / fixture, tmp_path, "pubmed25n1300.xml")
    before = without_runs(engine)

    report = ingest(engine, path)

    [file] = report.files
    assert file.outcome == "failed"
    assert file.message is not None and file.message.startswith(message)
    assert "\n" not in file.message
    assert without_runs(engine) == before
    assert report.exit_code == ExitCode.USAGE


def test_a_database_failure_recording_the_file_leaves_its_deletions_unapplied(engine: Engine) -> None:
    ingest(engine, V1)
    with failing_statement(engine, "INSERT INTO bulk_files"), pytest.raises(StorageError) as caught:
        ingest(engine, V2_UPDATE)
    assert "disk I/O error" in str(caught.value)
    assert articles(engine)["39000002"]["deleted"] is False  # one transaction with the file record
    assert [a.name for a in list_applied(engine)] == ["bulk_versioned_pmid_v1.xml"]

    [rerun] = ingest(engine, V2_UPDATE).files
    assert (rerun.outcome, rerun.deleted_marked) == ("applied", 1)
    assert articles(engine)["39000002"]["deleted"] is True


@pytest.mark.usefixtures("reader")
def test_a_database_failure_mid_file_stops_the_reader_and_records_nothing(engine: Engine) -> None:
    with failing_statement(engine, ("INSERT INTO articles", 'COPY "articles"')), pytest.raises(StorageError):
        ingest(engine, FIVE, batch_size=1)
    assert not any(t.name == "ingest-read" for t in threading.enumerate())  # the reading thread has ended
    assert reading_processes() == []  # and so has a reading process
    assert articles(engine) == {} and list_applied(engine) == []
    assert ingest(engine, FIVE, batch_size=1).files[0].created == 5


# ---- NLM's order --------------------------------------------------------------------------------


def test_files_named_together_are_applied_in_nlm_order(engine: Engine, tmp_path: Path) -> None:
    updates = tmp_path / "updatefiles"
    b = place(V2_UPDATE, updates, "pubmed25n1301.xml")
    a = place(V1, updates, "pubmed25n1300.xml")
    c = place(FIVE, tmp_path, "five.xml")

    report = ingest(engine, c, b, a)

    assert [(f.name, f.outcome) for f in report.files] == [
        ("pubmed25n1300.xml", "applied"),
        ("pubmed25n1301.xml", "applied"),
        ("five.xml", "applied"),  # no NLM number: last, unchecked
    ]
    assert articles(engine)["39000001"]["pmid_version"] == 2


def test_a_gap_after_the_latest_update_is_refused(engine: Engine, tmp_path: Path) -> None:
    updates = tmp_path / "updatefiles"
    ingest(engine, place(V1, updates, "pubmed25n1300.xml"))
    skipping = place(V2_UPDATE, updates, "pubmed25n1303.xml")

    [file] = ingest(engine, skipping).files

    assert file.outcome == "refused"
    assert file.message == (
        "pubmed25n1303.xml would skip 2 update file(s) after pubmed25n1300.xml: pubmed25n1301 to "
        "pubmed25n1302 not applied (apply it first, or its changes and deletions are lost); "
        "--force applies it anyway"
    )
    assert articles(engine)["39000001"]["pmid_version"] == 1
    assert ingest(engine, skipping, force=True).files[0].outcome == "applied"


def test_a_gap_of_exactly_one_update_file_is_refused(engine: Engine, tmp_path: Path) -> None:
    # issue 16: the probe's off-by-one (a gap of two was refused, a gap of one let through) loses one
    # file's changes and deletions without a word.
    updates = tmp_path / "updatefiles"
    ingest(engine, place(V1, updates, "pubmed25n1300.xml"))
    skipping = place(V2_UPDATE, updates, "pubmed25n1302.xml")

    [file] = ingest(engine, skipping).files

    assert file.outcome == "refused"
    assert file.message == (
        "pubmed25n1302.xml would skip 1 update file(s) after pubmed25n1300.xml: pubmed25n1301 not applied "
        "(apply it first, or its changes and deletions are lost); --force applies it anyway"
    )
    assert articles(engine)["39000001"]["pmid_version"] == 1
    # the next file in the sequence is no gap
    [following] = ingest(engine, place(V2_UPDATE, updates, "pubmed25n1301.xml")).files
    assert following.outcome == "applied"
    assert articles(engine)["39000001"]["pmid_version"] == 2


def test_a_reissued_file_is_refused_unless_forced(engine: Engine, tmp_path: Path) -> None:
    first = place(V1, tmp_path / "a", "pubmed25n1300.xml")
    ingest(engine, first)
    reissued = place(FIVE, tmp_path / "b", "pubmed25n1300.xml")

    [file] = ingest(engine, reissued).files

    assert file.outcome == "refused"
    assert file.message is not None
    assert file.message.startswith("pubmed25n1300 was already applied on ")
    assert "with other contents (sha256 " in file.message
    assert "NLM re-issued it" in file.message
    [forced] = ingest(engine, reissued, force=True).files
    assert (forced.outcome, forced.forced, forced.created) == ("applied", True, 5)


def test_baseline_files_come_in_any_order_among_themselves_but_not_after_updates(
    engine: Engine, tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline"
    assert ingest(engine, place(FIVE, baseline, "pubmed25n0002.xml")).files[0].outcome == "applied"
    assert ingest(engine, place(V1, baseline, "pubmed25n0001.xml")).files[0].outcome == "applied"
    [update] = ingest(engine, place(V2_UPDATE, tmp_path / "updatefiles", "pubmed25n1275.xml")).files
    assert update.outcome == "applied"  # the first update after a (partial) baseline: no gap check

    stale = tmp_path / "elsewhere" / "pubmed25n0003.xml"
    place(FIVE, stale.parent, stale.name).write_bytes(FIVE.read_bytes() + b"\n")
    [late] = ingest(engine, stale, baseline=True).files

    assert late.outcome == "refused"
    assert late.message is not None and late.message.startswith(
        "pubmed25n0003.xml comes before pubmed25n1275.xml, already applied on "
    )
    assert [(a.kind, a.sequence) for a in list_applied(engine)] == [
        ("baseline", 2),
        ("baseline", 1),
        ("update", 1275),
    ]


def test_a_file_of_an_older_release_is_refused(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, place(V1, tmp_path / "baseline", "pubmed25n0001.xml"))

    [file] = ingest(engine, place(FIVE, tmp_path / "updatefiles", "pubmed24n1400.xml")).files

    assert file.outcome == "refused"
    assert file.message == (
        "pubmed24n1400.xml belongs to the 2024 release, older than pubmed25n0001.xml (the 2025 release), "
        "already applied; --force applies it anyway"
    )


# ---- names and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "place_"),
    [
        ("/data/pubmed/updatefiles/pubmed25n1275.xml.gz", "update", (2025, 1275)),
        ("/data/pubmed/baseline/pubmed25n0001.xml.gz", "baseline", (2025, 1)),
        ("medline17n0892.xml", "update", (2017, 892)),
        ("2025-01-02_pubmed25n1276.xml.gz", "update", (2025, 1276)),
        ("jcore-pubmed21n1016_excerpt_original.xml.gz", "update", (2021, 1016)),
        ("costosys-pubmedsample18n0001.xml.gz", "update", None),
        ("pubmed25n12345.xml", "update", None),
        ("corpus-30000.xml", "update", None),
    ],
)
def test_file_names_give_kind_and_nlm_place(path: str, kind: str, place_: tuple[int, int] | None) -> None:
    name = parse_file_name(path)
    assert (name.kind, name.key) == (kind, place_)
    assert parse_file_name(path, baseline=True).kind == "baseline"


def test_sequence_order_sorts_numbered_files_and_keeps_the_rest_last_in_given_order() -> None:
    names = [parse_file_name(p) for p in ["b.xml", "pubmed25n1276.xml", "a.xml", "pubmed24n1300.xml"]]
    assert [n.name for n in sequence_order(names)] == [
        "pubmed24n1300.xml",
        "pubmed25n1276.xml",
        "b.xml",
        "a.xml",
    ]


def test_missing_directory_or_url_paths_are_refused_before_anything_is_done(tmp_path: Path) -> None:
    good = place(FIVE, tmp_path, "pubmed25n1300.xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pubmed25n1300.xml.gz.md5").write_text("not a PubMed file\n")
    with pytest.raises(BulkFileError) as caught:
        check_paths([good, tmp_path / "missing.xml.gz", empty])
    assert (
        str(caught.value)
        == f"file not found: {tmp_path / 'missing.xml.gz'} (and 1 more); nothing was ingested"
    )
    with pytest.raises(
        BulkFileError, match=r"is a directory without \.xml or \.xml\.gz files; nothing was ingested"
    ):
        check_paths([empty])
    with pytest.raises(BulkFileError, match="is a URL: download the file first"):
        check_paths(["https://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/pubmed25n1275.xml.gz"])
    with pytest.raises(BulkFileError, match="no files given"):
        check_paths([])
    assert check_paths([good]) == [good]


def test_a_directory_stands_for_the_pubmed_files_in_it(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    second = place(FIVE, baseline, "pubmed26n0002.xml.gz")
    first = place(V1, baseline, "pubmed26n0001.xml")
    (baseline / "pubmed26n0001.xml.md5").write_text("md5\n")
    (baseline / "README.txt").write_text("NLM's readme\n")
    (baseline / "nested").mkdir()
    place(V2_UPDATE, baseline / "nested", "pubmed26n0003.xml")

    assert check_paths([baseline]) == [first, second]
    assert [parse_file_name(p).kind for p in check_paths([baseline])] == ["baseline", "baseline"]


# ---- the CLI ------------------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("HARVEST_CONFIG", "HARVEST_DATABASE_URL", "HARVEST_LOG_FILE", "NCBI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    return tmp_path


def runs(engine: Engine) -> list[tuple[str, str, dict[str, Any]]]:
    runs_table = metadata.tables["harvest_runs"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(runs_table).order_by(runs_table.c.id)).mappings().all()
    return [(row["command"], row["status"], json.loads(row["summary"] or "{}")) for row in rows]


def test_cli_ingest_applies_skips_refuses_and_records_each_run(
    db_url: str, tmp_path: Path, clean_env: Path
) -> None:
    updates = tmp_path / "updatefiles"
    later = place(V2_UPDATE, updates, "pubmed25n1301.xml")
    earlier = place(V1, updates, "pubmed25n1300.xml")

    code, out, err = cli("--db", db_url, "ingest", str(later), str(earlier))

    assert code == ExitCode.OK, err
    assert out.splitlines() == [
        "applied  pubmed25n1300.xml update 2025/1300: 4 records (created 3, updated 0, unchanged 0), "
        "0 deleted (0 stored articles flagged)",
        "applied  pubmed25n1301.xml update 2025/1301: 2 records (created 1, updated 1, unchanged 0), "
        "3 deleted (1 stored articles flagged)",
        "files 2: applied 2, skipped (already applied) 0, refused 0, failed 0; records 6, created 4, "
        "updated 1, deleted 1",
        "enrichment deferred: run 'harvest enrich' to fetch PMC and Crossref for the new articles",
    ]

    code, out, err = cli("--db", db_url, "ingest", str(earlier))
    assert code == ExitCode.OK
    assert out.splitlines()[0].startswith("skipped  pubmed25n1300.xml update 2025/1300: already applied on ")
    assert "enrichment deferred" not in out

    stale = place(FIVE, updates, "pubmed25n1299.xml")
    code, out, err = cli("--db", db_url, "ingest", str(stale))
    assert code == ExitCode.USAGE
    assert out.splitlines()[0].startswith("files 1: applied 0, skipped (already applied) 0, refused 1")
    errors = [line for line in err.splitlines() if line]  # said once, on stderr (issue 14)
    assert len(errors) == 1, err
    assert errors[0].startswith(
        "harvest: error: refused pubmed25n1299.xml update 2025/1299: pubmed25n1299.xml comes"
    )

    engine = open_database(db_url)
    try:
        assert [(command, status) for command, status, _ in runs(engine)] == [
            ("ingest (2 files)", "ok"),
            ("ingest (1 files)", "ok"),
            ("ingest (1 files)", "partial"),
        ]
        summary = runs(engine)[2][2]
        assert (summary["refused"], summary["exit_code"]) == (1, 2)
        assert summary["files"][0]["outcome"] == "refused"
        assert [a.name for a in list_applied(engine)] == ["pubmed25n1300.xml", "pubmed25n1301.xml"]
        assert list_applied(engine)[0].run_id == 1
    finally:
        engine.dispose()


def test_cli_ingest_json_summary(db_url: str, clean_env: Path) -> None:
    code, out, _err = cli("--db", db_url, "--json", "ingest", str(FIVE))

    assert code == ExitCode.OK
    summary = json.loads(out)
    assert (summary["applied"], summary["exit_code"], summary["enriched"]) == (1, 0, False)
    assert summary["files"][0]["created"] == 5


def test_cli_ingest_of_a_missing_file_or_a_directory_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, clean_env: Path
) -> None:
    for args in ([str(tmp_path / "nope.xml.gz")], [str(tmp_path)], [str(FIVE), str(tmp_path / "nope.xml")]):
        code, out, err = cli("--db", db_url, "ingest", *args)
        assert code == ExitCode.USAGE
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("harvest: error: ")
        assert "nothing was ingested" in err
    engine = open_database(db_url)
    try:
        assert articles(engine) == {} and list_applied(engine) == []
    finally:
        engine.dispose()


@pytest.mark.usefixtures("reader")
def test_cli_ingest_of_a_truncated_file_exits_2_and_a_fixed_rerun_exits_0(
    db_url: str, tmp_path: Path, clean_env: Path
) -> None:
    path = tmp_path / "pubmed25n1300.xml.gz"
    data = gzip.compress(FIVE.read_bytes())
    path.write_bytes(data[: len(data) // 2])

    code, out, err = cli("--db", db_url, "ingest", str(path))

    assert code == ExitCode.USAGE
    assert out.startswith("files 1: applied 0, skipped (already applied) 0, refused 0, failed 1")
    assert err.startswith("harvest: error: failed pubmed25n1300.xml.gz update 2025/1300: ")
    assert err.count("\n") == 1 and "is not a complete gzip file" in err
    path.write_bytes(data)
    assert cli("--db", db_url, "ingest", str(path))[0] == ExitCode.OK


def test_cli_ingest_while_another_run_holds_the_lock_does_nothing_and_exits_7(
    db_url: str, clean_env: Path
) -> None:
    holder = open_database(db_url)
    try:
        with exclusive_run(holder, "harvest nightly"):
            code, out, err = cli("--db", db_url, "ingest", str(FIVE))
        assert code == ExitCode.BUSY
        assert out == "" and err.startswith("harvest: error: another run is active: harvest nightly (pid ")
        assert articles(holder) == {} and list_applied(holder) == []
    finally:
        holder.dispose()


def test_cli_ingest_help_names_the_options() -> None:
    code, out, _err = cli("ingest", "--help")
    assert code == ExitCode.OK
    for option in ("--force", "--enrich", "--no-enrich", "--baseline", "FILE"):
        assert option in out


# ---- enrichment ---------------------------------------------------------------------------------

SEED = FIXTURES / "efetch_pubmed_35350566.xml"  # a one-record PubmedArticleSet, as an update file holds


@pytest.fixture
def standin(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn(
        [SEED],
        pmc_sources=[FIXTURES / "efetch_pmc_PMC8958025.xml"],
        crossref_sources=[FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json"],
    ) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def test_cli_ingest_defers_enrichment_unless_asked(db_url: str, tmp_path: Path, standin: StandIn) -> None:
    code, out, _err = cli("--db", db_url, "ingest", str(SEED))

    assert code == ExitCode.OK
    assert out.splitlines()[-1] == (
        "enrichment deferred: run 'harvest enrich' to fetch PMC and Crossref for the new articles"
    )
    assert standin.requests == []  # a bulk file never reaches the network by default
    engine = open_database(db_url)
    try:
        seed = articles(engine)["35350566"]
        assert (seed["pmc_status"], seed["crossref_status"]) == (None, None)
    finally:
        engine.dispose()

    path = tmp_path / "seed-again.xml"
    path.write_bytes(SEED.read_bytes() + b"\n")  # other bytes, the same record
    code, out, _err = cli("--db", db_url, "ingest", "--enrich", str(path))

    assert code == ExitCode.OK
    # Enrichment covers the batch's new and changed articles; this record is unchanged, so none.
    assert standin.requests == []

    engine = open_database(db_url)
    try:
        with engine.begin() as conn:  # as if the seed had never been stored: enrichment now runs
            conn.execute(sa.delete(ARTICLES))
            conn.execute(sa.delete(metadata.tables["bulk_files"]))
    finally:
        engine.dispose()
    code, out, _err = cli("--db", db_url, "ingest", "--enrich", str(SEED))

    assert code == ExitCode.OK
    assert "enrichment deferred" not in out
    assert "  enriched: pmc 1 updated, 0 unchanged, 0 not found; crossref 1 updated" in out
    assert standin.requests_for("efetch.fcgi") and standin.requests_for("/works")
    engine = open_database(db_url)
    try:
        seed = articles(engine)["35350566"]
        assert (seed["pmc_status"], seed["crossref_status"]) == ("found", "found")
    finally:
        engine.dispose()


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
@pytest.mark.usefixtures("reader")
def test_a_pmid_changed_then_changed_back_in_one_file_ends_as_the_file_last_says(
    engine: Engine, tmp_path: Path
) -> None:
    """A record equal to the stored one is skipped unparsed, unless an earlier batch of the same file,
    not yet stored, holds that PMID too: the file's last word must win, whatever the threads' timing."""
    seed = (FIXTURES / "efetch_pubmed_35350566.xml").read_bytes()
    first = place(FIVE, tmp_path, "first.xml")
    first.write_bytes(seed)
    ingest(engine, first)
    changed = seed.replace(b"Cancer Invasion and Metastasis", b"Cancer Invasion and Metastasis (changed)")
    head, _, rest = seed.partition(b"<PubmedArticle>")
    record = b"<PubmedArticle>" + rest.rpartition(b"</PubmedArticleSet>")[0]
    changed_record = record.replace(
        b"Cancer Invasion and Metastasis", b"Cancer Invasion and Metastasis (changed)"
    )
    assert changed_record != record and changed != seed
    flip = tmp_path / "flip.xml"
    flip.write_bytes(head + changed_record * 3 + record + b"</PubmedArticleSet>\n")
    for _ in range(3):
        ingest(engine, flip, batch_size=1, force=True)
        with engine.connect() as conn:
            title = conn.execute(sa.select(ARTICLES.c.title).where(ARTICLES.c.pmid == "35350566")).scalar()
        assert title == "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
        flip.write_bytes(flip.read_bytes() + b"\n")  # other bytes: the next round is applied, not skipped


def _one_record_file(pmid: str, target: Path) -> Path:
    """A PubmedArticleSet holding FIVE's record of ``pmid``, its bytes as they stand in FIVE."""
    text = FIVE.read_bytes()
    start = text.index(b"<PubmedArticle>", text.index(f'<PMID Version="1">{pmid}<'.encode()) - 200)
    end = text.index(b"</PubmedArticle>", start) + len(b"</PubmedArticle>")
    target.write_bytes(b"<PubmedArticleSet>\n" + text[start:end] + b"\n</PubmedArticleSet>\n")
    return target


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("placed", [True, False], ids=["in-sequence", "unnumbered"])
def test_a_deleted_record_sent_again_revives_only_from_a_file_after_the_deletion(
    engine: Engine, tmp_path: Path, placed: bool
) -> None:
    """n1300 stores five records, n1301 deletes one, and its very record comes again after that.

    In a file placed in NLM's sequence after the deletion the record is in PubMed again: the article is
    live, with the deletion and its undoing in its history. A file without a number may be older than
    the deletion: the record is unchanged and the article stays deleted.
    """
    updates = tmp_path / "updatefiles"
    first = place(FIVE, updates, "pubmed26n1300.xml")
    deletion = updates / "pubmed26n1301.xml"
    deletion.write_text(
        '<PubmedArticleSet>\n<DeleteCitation>\n<PMID Version="1">39000012</PMID>\n</DeleteCitation>\n'
        "</PubmedArticleSet>\n"
    )
    again = _one_record_file("39000012", updates / ("pubmed26n1302.xml" if placed else "extract.xml"))
    ingest(engine, first, deletion)
    assert articles(engine)["39000012"]["deleted"] is True

    [file] = ingest(engine, again).files

    assert file.outcome == "applied"
    assert (file.records, file.updated, file.unchanged) == ((1, 1, 0) if placed else (1, 0, 1))
    assert articles(engine)["39000012"]["deleted"] is not placed
    expected = [("deleted", "false", "true"), ("deleted", "true", "false")]
    assert history(engine, "39000012") == (expected if placed else expected[:1])
    assert all(row["deleted"] is False for pmid, row in articles(engine).items() if pmid != "39000012")


def test_ctrl_c_in_a_real_ingest_process_is_recorded_interrupted_with_exit_130(
    db_url: str, standin: StandIn
) -> None:
    """SIGINT while the ingest waits on PMC: exit 130, and the run row says interrupted, 130, pid, host."""
    from tests.standin import EFETCH, Delay

    standin.inject(EFETCH, Delay(300), match=lambda p: p.get("db") == "pmc")
    script = Path(sys.executable).parent / "harvest"
    process = subprocess.Popen(
        [*DEFAULT_SIGINT, str(script), "--db", db_url, "ingest", "--enrich", str(SEED)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        for _ in range(6000):  # waits for the request; asserts nothing about time
            if any(r.params.get("db") == "pmc" for r in standin.requests_for(EFETCH)):
                break
            if process.poll() is not None:
                pytest.fail(f"the ingest ended first: {process.communicate()}")
            time.sleep(0.01)
        else:
            pytest.fail("the stand-in never saw the PMC request")
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED, err
    engine = open_database(db_url)
    try:
        runs_table = metadata.tables["harvest_runs"]
        with engine.connect() as conn:
            (row,) = conn.execute(sa.select(runs_table)).mappings().all()
    finally:
        engine.dispose()
    summary = json.loads(row["summary"])
    assert (row["status"], summary["exit_code"], summary["error"]) == ("interrupted", 130, "interrupted")
    assert row["pid"] == process.pid and row["host"]

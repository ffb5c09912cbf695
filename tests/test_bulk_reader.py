"""The reading side of ``harvest ingest`` run in a process of its own
(harvester.jobs.bulk_reader.ProcessReader).

What it must keep from the thread it replaces for large files: the same batches, the file's log
messages, its errors as the same exceptions; and what a process adds: it reads the file the caller
opened and no other, it ends when the caller stops early, a process that dies is reported in one line,
and the database URL (with its password) never goes on a command line.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from db.engine import open_database
from db.pubmed_rows import StoreRows, store_rows
from harvester.core.errors import BulkFileError, FileOrderError, ParseError
from harvester.core.records import Article
from harvester.core.settings import Settings
from harvester.jobs.bulk_reader import Batch, ProcessReader, ThreadReader, can_read_in_process
from harvester.sources.pubmed_xml import parse_pubmed
from tests.conftest import shared_fixture
from tests.db_helpers import fresh_database_url

FIXTURES = Path(__file__).parent / "fixtures"
FIVE = FIXTURES / "bulk_five_records.xml"
V2_UPDATE = FIXTURES / "bulk_versioned_pmid_v2_update.xml"


def read_all(reader: ProcessReader | ThreadReader) -> list[Batch]:
    batches = []
    for batch, _position in reader.batches():
        batches.append(batch)
        reader.stored(batch)
    return batches


def summary(batches: list[Batch]) -> list[tuple[int, list[StoreRows], list[str], int]]:
    return [(b.number, b.articles, b.unchanged, b.records) for b in batches]


@pytest.mark.parametrize("path", [FIVE, V2_UPDATE], ids=lambda p: p.name)
def test_a_process_hands_over_exactly_the_batches_a_thread_does(engine: Engine, path: Path) -> None:
    with path.open("rb") as handle:
        threaded = ThreadReader(handle, 1, engine)
        expected = read_all(threaded)
    with path.open("rb") as handle:
        process = ProcessReader(handle, path, 1, engine)
        got = read_all(process)
    assert summary(got) == summary(expected)
    assert [a.raw for b in got for a in b.articles] == [a.raw for b in expected for a in b.articles]
    assert process.deleted == threaded.deleted
    assert len(got) >= 2  # more than one batch went through the pipe


def test_a_real_update_file_read_by_a_process_equals_parse_pubmed(engine: Engine) -> None:
    path = shared_fixture("medline-updatefiles/costosys-pubmedsample18n0001.xml.gz")
    with path.open("rb") as handle:
        batches = read_all(ProcessReader(handle, path, 50, engine))
    parsed = [a for a in parse_pubmed(path, keep_raw=True) if isinstance(a, Article)]
    got = [a for b in batches for a in b.articles]
    assert got == [store_rows(a) for a in parsed] and len(got) == 177
    assert [a.raw for a in got] == [a.raw_xml for a in parsed]


def test_every_record_type_survives_pickling_field_for_field() -> None:
    """The records pickle as their field values (rebuilt through the constructor): nothing is lost."""
    path = shared_fixture("medline-updatefiles/costosys-pubmedsample18n0001.xml.gz")
    articles = [a for a in parse_pubmed(path, keep_raw=True) if isinstance(a, Article)]
    seed = [a for a in parse_pubmed(FIXTURES / "efetch_pubmed_35350566.xml", keep_raw=True)]
    for article in [*articles, *seed]:
        assert isinstance(article, Article)
        copy = pickle.loads(pickle.dumps(article))
        assert copy == article
        assert copy.raw_xml == article.raw_xml  # not part of equality, checked on its own
        assert type(copy.authors) is tuple and type(copy.journal) is type(article.journal)


def test_the_rows_of_every_record_survive_pickling_whole() -> None:
    """What the reading process sends is the rows the store writes: the copy equals the original in every
    field (the raw XML and its hash included), tuples stay tuples, and a changed field is noticed."""
    path = shared_fixture("medline-updatefiles/costosys-pubmedsample18n0001.xml.gz")
    articles = [a for a in parse_pubmed(path, keep_raw=True) if isinstance(a, Article)]
    seed = [a for a in parse_pubmed(FIXTURES / "efetch_pubmed_35350566.xml", keep_raw=True)]
    for article in [*articles, *seed]:
        assert isinstance(article, Article)
        rows = store_rows(article)
        copy = pickle.loads(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == rows and type(copy) is StoreRows
        assert (copy.raw, copy.sha256) == (article.raw_xml, rows.sha256)
        assert type(copy.values) is tuple and all(type(t) is tuple for t in copy.children)
        assert type(copy.journal) is type(article.journal)
    seeded = store_rows(seed[0])  # type: ignore[arg-type]
    assert seeded.children[1] and len(seeded.children) == 14  # authors, in CHILD_TABLES' order
    assert dataclasses.replace(seeded, pmcid="PMC1") != pickle.loads(pickle.dumps(seeded))


def test_the_file_read_must_be_the_file_the_caller_opened(engine: Engine, tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_bytes(FIVE.read_bytes())
    with FIVE.open("rb") as handle:
        reader = ProcessReader(handle, other, 2, engine)  # same bytes, another file
        with pytest.raises(BulkFileError, match="was replaced while it was being read"):
            read_all(reader)


def test_a_broken_file_raises_the_parse_error_of_the_thread(engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    data = FIVE.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    with broken.open("rb") as handle:
        with pytest.raises(ParseError, match=r"not well-formed|truncated|Premature end") as caught:
            read_all(ProcessReader(handle, broken, 2, engine))
    assert type(caught.value) is ParseError


def test_an_error_with_a_path_crosses_the_process_boundary_whole() -> None:
    error = FileOrderError("out of order", path="/data/pubmed25n1300.xml.gz")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.message, copy.path) == (FileOrderError, error.message, error.path)


def test_the_processs_warnings_reach_this_processs_loggers(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = FIVE.read_bytes()
    first_pmid = data.index(b"<PMID")
    end = data.index(b"</PMID>", first_pmid) + len(b"</PMID>")
    no_pmid = tmp_path / "no-pmid.xml"
    no_pmid.write_bytes(data[:first_pmid] + data[end:])  # the first record loses its PMID
    with caplog.at_level(logging.WARNING), no_pmid.open("rb") as handle:
        batches = read_all(ProcessReader(handle, no_pmid, 2, engine))
    assert sum(b.records for b in batches) == 4
    warnings = [r for r in caplog.records if r.name == "harvester.sources.pubmed_xml"]
    assert [r.getMessage() for r in warnings] == ["skipped a PubmedArticle without a PMID"]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every reading process started, with the arguments it was started with."""
    processes: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def recording(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = real(*args, **kwargs)
        processes.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording)
    yield processes


def test_stopping_early_ends_the_process(engine: Engine, started: list[subprocess.Popen[bytes]]) -> None:
    with FIVE.open("rb") as handle:
        batches = ProcessReader(handle, FIVE, 1, engine).batches()
        assert isinstance(batches, Generator)
        first, _position = next(batches)
        assert first.records == 1
        batches.close()  # what an error or Ctrl-C in the storing loop does
    [process] = started
    assert process.poll() is not None  # ended and waited for: no orphan, no zombie


def test_a_process_that_dies_is_one_line_naming_its_exit_code(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with FIVE.open("rb") as handle:
        with pytest.raises(BulkFileError) as caught:
            read_all(ProcessReader(handle, FIVE, 2, engine))
    message = str(caught.value)
    assert "ended unexpectedly (exit code 1)" in message and "not recorded as applied" in message
    assert "\n" not in message


@pytest.mark.postgres
def test_the_database_password_never_goes_on_the_command_line(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """PostgreSQL only: SQLite URLs carry no password."""
    secret = "not-a-real-secret-4fe1"  # the test server trusts every local connection, whatever it says
    with fresh_database_url("postgresql", tmp_path) as base:
        engine = open_database(make_url(base).set(password=secret).render_as_string(hide_password=False))
        try:
            with FIVE.open("rb") as handle:
                batches = read_all(ProcessReader(handle, FIVE, 2, engine))
        finally:
            engine.dispose()
    assert sum(len(b.articles) for b in batches) == 5  # it read the database with that URL
    [process] = started
    assert secret not in repr(process.args)


def test_a_database_in_memory_is_never_read_by_another_process() -> None:
    memory = open_database("sqlite://")
    try:
        assert can_read_in_process(memory) is False
    finally:
        memory.dispose()
    assert can_read_in_process(sa.create_engine("sqlite:///harvest.sqlite")) is True  # never connects


KILLED_MIDWAY = """
import os, signal, subprocess, sys
from pathlib import Path
from db.engine import open_database
from harvester.jobs.bulk_reader import ProcessReader

real = subprocess.Popen
started = []

def recording(*args, **kwargs):
    started.append(real(*args, **kwargs))
    return started[-1]

subprocess.Popen = recording
engine = open_database(sys.argv[1])
path = Path(sys.argv[2])
with path.open("rb") as handle:
    for _batch in ProcessReader(handle, path, 1, engine).batches():
        print(started[0].pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_reading_process_ends_when_the_storing_process_is_killed(db_url: str) -> None:
    """SIGKILL leaves no cleanup to do: the reading process sees its pipes close and ends by itself."""
    big = shared_fixture("medline-updatefiles/costosys-pubmedsample18n0001.xml.gz")  # more than a pipe holds
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MIDWAY, db_url, str(big)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == -9, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    assert not _running(pid), f"the reading process {pid} outlived the storing process"


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended; its new parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_postgresql_reads_in_a_process_only_files_with_enough_xml(
    engine: Engine, tmp_path: Path, started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes a reading process from READ_IN_PROCESS_BYTES on disk; PostgreSQL also asks for
    READ_IN_PROCESS_XML_BYTES of XML, counted decompressed, so a gzip file is judged by its XML."""
    import gzip

    import harvester.jobs.ingest as ingest

    xml = FIVE.read_bytes()
    packed = tmp_path / "five.xml.gz"
    packed.write_bytes(gzip.compress(xml))
    assert packed.stat().st_size < len(xml) // 2
    monkeypatch.setattr(ingest, "READ_IN_PROCESS_BYTES", 0)
    monkeypatch.setattr(ingest, "READ_IN_PROCESS_XML_BYTES", {"sqlite": 0, "postgresql": len(xml)})
    monkeypatch.setattr(ingest, "usable_cores", lambda: 2)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    [applied] = ingest.ingest_files([packed], settings=settings, services=None, engine=engine).files
    assert (applied.outcome, applied.created, len(started)) == ("applied", 5, 1)  # XML counted: a process
    again = tmp_path / "five-again.xml"
    again.write_bytes(xml + b"\n")  # other bytes, so it is applied again, not skipped
    monkeypatch.setattr(ingest, "READ_IN_PROCESS_XML_BYTES", {"sqlite": 0, "postgresql": len(xml) + 2})
    [applied] = ingest.ingest_files([again], settings=settings, services=None, engine=engine).files
    assert applied.outcome == "applied"
    # One byte short of the threshold: PostgreSQL reads in a thread, SQLite (no threshold) in a process.
    assert len(started) == (1 if engine.dialect.name == "postgresql" else 2)

"""End to end through the ``harvest`` CLI against the stand-in server, the way a user runs it.

Most tests call :func:`harvester.cli.run` in-process with the environment pointed at the stand-in; a few
run the installed ``harvest`` console script in a real subprocess.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from harvester.cli import run
from harvester.core.errors import ExitCode
from tests.pacing import assert_paced
from tests.standin import (
    ErrorInBody,
    Fault,
    HtmlErrorPage,
    Reset,
    StandIn,
    Status,
    Truncated,
)

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "efetch_pubmed_35350566.xml"
SEED_TITLE = "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
SEED_AUTHORS = [
    ("Liu", "Kun"),
    ("Gao", "Xin"),
    ("Kang", "Baoqiang"),
    ("Liu", "Yunpeng"),
    ("Wang", "Dingding"),
    ("Wang", "Yi"),
]
NCBI_429_BODY = b'{"error":"API rate limit exceeded","api-key":"127.0.0.1","count":"4","limit":"3"}'


def clone_record(source: Path, pmid: str) -> bytes:
    """The seed's PubmedArticle with a new PMID (and a DOI and PMCID made from it), as a one-record set."""
    root = etree.parse(str(source)).getroot()
    article = root.find("PubmedArticle")
    assert article is not None
    article.find("MedlineCitation/PMID").text = pmid  # type: ignore[union-attr]
    for article_id in article.iterfind("PubmedData/ArticleIdList/ArticleId"):
        kind = article_id.get("IdType")
        article_id.text = {"pubmed": pmid, "pmc": f"PMC9{pmid}", "doi": f"10.5555/test.{pmid}"}.get(
            kind or "", article_id.text
        )
    for eloc in article.iterfind("MedlineCitation/Article/ELocationID"):
        if eloc.get("EIdType") == "doi":
            eloc.text = f"10.5555/test.{pmid}"
    return b"<PubmedArticleSet>" + etree.tostring(article) + b"</PubmedArticleSet>"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HOME so the default database lands in tmp, and a clean harvest environment."""
    for name in list(os.environ):
        if name.startswith("HARVEST_") or name in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    return tmp_path


@pytest.fixture
def standin(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    extra = [clone_record(SEED, str(pmid)) for pmid in range(900001, 900013)]
    with StandIn([SEED, *extra]) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def fast_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Small batches and short back-off so fault tests run in well under a second each."""
    path = home / "fast.toml"
    path.write_text(
        "[ncbi]\nefetch_batch_size = 2\n\n[http]\nmax_attempts = 3\nbackoff_initial = 0.01\n"
        "backoff_max = 0.05\ntimeout = 2\n"
    )
    monkeypatch.setenv("HARVEST_CONFIG", str(path))
    return path


def default_db(home: Path) -> Path:
    return home / ".local" / "share" / "pubmed-harvester" / "harvest.sqlite"


def stored_pmids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT pmid FROM articles ORDER BY pmid")]


def dump(db: Path) -> list[str]:
    """Every row of every table but harvest_runs, where each run records itself by design."""
    with sqlite3.connect(db) as conn:
        return [line for line in conn.iterdump() if "harvest_runs" not in line]


def pubmed_efetches(standin: StandIn) -> list[object]:
    return [r for r in standin.requests_for("efetch.fcgi") if r.params.get("db") == "pubmed"]


def show_json(*ids: str) -> list[dict[str, object]]:
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert run(["show", "--format", "json", *ids]) == ExitCode.OK
    result = json.loads(buffer.getvalue())
    assert isinstance(result, list)
    return result


# ---- the seed article -----------------------------------------------------------------------------


def test_harvest_seed_article_by_pmid_stores_every_seed_fact(standin: StandIn, home: Path) -> None:
    assert run(["pmid", "35350566"]) == ExitCode.OK
    [doc] = show_json("35350566")
    assert doc["pmid"] == "35350566"
    assert doc["title"] == SEED_TITLE
    authors = doc["authors"]
    assert isinstance(authors, list)
    assert [(a["last_name"], a["fore_name"]) for a in authors] == SEED_AUTHORS
    assert isinstance(doc["abstract"], str)
    assert doc["abstract"].startswith("Exosomes are lipid membrane bilayer-encapsulated vesicles")
    assert doc["abstract"].endswith("developing effective diagnostic and treatment strategies.")
    journal = doc["journal"]
    assert isinstance(journal, dict)
    assert journal["iso_abbrev"] == "Front Oncol"
    assert doc["doi"] == "10.3389/fonc.2022.836548"
    assert doc["pmcid"] == "PMC8958025"
    assert doc["epub_date"] == "2022-03-08"
    assert doc["pub_date"] == "2022"
    assert doc["language"] == ["eng"]
    assert doc["retracted"] is False
    assert stored_pmids(default_db(home)) == ["35350566"]


def test_same_article_by_pmid_pmcid_and_doi_url_is_one_row(standin: StandIn, home: Path) -> None:
    assert run(["pmid", "35350566"]) == ExitCode.OK
    assert run(["--json", "pmcid", "PMC8958025"]) == ExitCode.OK
    assert run(["doi", "https://doi.org/10.3389/FONC.2022.836548"]) == ExitCode.OK
    assert stored_pmids(default_db(home)) == ["35350566"]
    assert len(standin.requests_for("idconv/api/v1/articles/")) == 2
    [by_doi] = show_json("10.3389/FONC.2022.836548")
    [by_pmcid] = show_json("pmc8958025")
    assert by_doi == by_pmcid


def test_second_identical_harvest_reports_unchanged_and_writes_nothing(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ["35350566", "900001", "900002"]
    assert run(["pmid", *ids]) == ExitCode.OK
    before = dump(default_db(home))
    capsys.readouterr()
    assert run(["--json", "pmid", *ids]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["unchanged"] == ids
    assert summary["created"] == [] and summary["updated"] == []
    assert dump(default_db(home)) == before


def test_changed_upstream_record_is_updated(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pmid", "900003"]) == ExitCode.OK
    changed = clone_record(SEED, "900003").replace(SEED_TITLE.encode(), b"A Corrected Title")
    standin.add_records(changed)
    capsys.readouterr()
    assert run(["--json", "pmid", "900003"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["updated"] == ["900003"]
    [doc] = show_json("900003")
    assert doc["title"] == "A Corrected Title"


# ---- upstream faults -----------------------------------------------------------------------------

FAULTS = {
    "429 without Retry-After": Status(429, NCBI_429_BODY, {"Content-Type": "application/json"}),
    "429 with Retry-After": Status(429, NCBI_429_BODY, {"Retry-After": "0"}),
    "500": Status(500, b"Internal Server Error"),
    "503": Status(503, b"Service Unavailable"),
    "ERROR in a 200": ErrorInBody("Failed to connect to PubOne service"),
    "HTML error page in a 200": HtmlErrorPage(),
    "truncated XML": Truncated(0.5),
    "connection reset": Reset(),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_fault_then_success_stores_everything(
    fault: Fault, standin: StandIn, fast_config: Path, home: Path
) -> None:
    standin.inject("efetch.fcgi", fault)
    assert run(["pmid", "35350566", "900001", "900002"]) == ExitCode.OK
    assert stored_pmids(default_db(home)) == ["35350566", "900001", "900002"]
    assert len(pubmed_efetches(standin)) == 3  # two batches, one retried


def test_batch_that_never_succeeds_is_named_and_the_others_are_stored(
    standin: StandIn, fast_config: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standin.fail_always(
        "efetch.fcgi",
        Status(502, b"Bad Gateway"),
        match=lambda p: p.get("db") == "pubmed" and "900003" in p.get("id", ""),
    )
    code = run(["--json", "pmid", "900001", "900002", "900003", "900004", "900005", "900006"])
    assert code == ExitCode.UPSTREAM
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["failed"] == ["900003", "900004"]
    assert sorted(summary["created"]) == ["900001", "900002", "900005", "900006"]
    assert "900003" in out.err and "900004" in out.err
    assert "Traceback" not in out.err
    assert stored_pmids(default_db(home)) == ["900001", "900002", "900005", "900006"]


def test_many_batches_are_paced_at_three_requests_a_second(
    standin: StandIn, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = home / "one-per-batch.toml"
    config.write_text("[ncbi]\nefetch_batch_size = 1\n")
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    ids = [str(p) for p in range(900001, 900011)]
    assert run(["pmid", "--no-enrich", *ids]) == ExitCode.OK
    times = [r.time for r in standin.requests]
    assert len(times) == 10
    # Counted in the stand-in's log with one request's margin for its late logging (tests/pacing.py):
    # at most 3 + 1 in any second, 6 + 1 in any 2.2 s (a limiter letting 4 through per window shows 8).
    assert_paced(times, 3)
    assert_paced(times, 3, window=2.2)


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_two_processes_together_share_one_pacing_of_three_requests_a_second(
    standin: StandIn, home: Path
) -> None:
    """A cron run and a `harvest pmid` typed meanwhile: two real processes share NCBI's pacing."""
    config = home / "one-per-batch.toml"
    config.write_text("[ncbi]\nefetch_batch_size = 1\n")
    script = Path(sys.executable).parent / "harvest"
    env = {
        **os.environ,
        **standin.env(),
        "HOME": str(home),
        "HARVEST_CONFIG": str(config),
        "HARVEST_RATE_DIR": str(home / "rate"),
    }
    # Both ask for the same 12 articles (each into its own database), so that without the shared pacing
    # they would overlap for seconds, whatever their start-up times.
    ids = [str(p) for p in range(900001, 900013)]
    processes = [
        subprocess.Popen(
            [str(script), "--db", str(home / f"run{n}.sqlite"), "pmid", "--no-enrich", *ids],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for process in processes:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == ExitCode.OK, err
    times = [r.time for r in standin.requests]
    assert len(times) == 24
    # One pacing for both, counted in the stand-in's log with a margin of one late-logged request per
    # process (tests/pacing.py): at most 3 + 2 in any second and 6 + 2 in any 2.2 s. Two processes pacing
    # apart (HARVEST_RATE_DIR=off) show 10 to 12 in 2.2 s while they overlap.
    assert_paced(times, 3, senders=2)
    assert_paced(times, 3, window=2.2, senders=2)
    assert len(list((home / "rate").glob("ncbi-*.sends"))) == 1


def test_tool_and_email_on_every_request_and_no_api_key_in_the_database(
    standin: StandIn, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NCBI_API_KEY", "FAKE-SECRET-KEY-0123456789")
    assert run(["-vv", "pmcid", "PMC8958025"]) == ExitCode.OK
    assert standin.requests
    ncbi = [r for r in standin.requests if "crossref" not in r.path and "icite" not in r.path]
    assert ncbi
    for request in ncbi:
        assert request.params.get("tool") == "pubmed-harvester"
        assert request.params.get("email") == "tests@example.org"
    for request in standin.requests_for("crossref/works"):
        assert request.params.get("mailto") == "tests@example.org"
        assert "api_key" not in request.params
    # E-utilities take the key; the ID Converter documents no api_key parameter, so it is not sent there
    eutils = standin.requests_for("efetch.fcgi")
    assert eutils and all(r.params.get("api_key") == "FAKE-SECRET-KEY-0123456789" for r in eutils)
    assert all("api_key" not in r.params for r in standin.requests_for("idconv/api/v1/articles/"))
    assert not any("FAKE-SECRET-KEY" in line for line in dump(default_db(home)))


# ---- bad input -----------------------------------------------------------------------------------


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["pmid", "abc"], "invalid PMID 'abc'"),
        (["pmid", "0"], "invalid PMID '0'"),
        (["doi", "not-a-doi"], "invalid DOI 'not-a-doi'"),
        (["pmcid", "PMCX1"], "invalid PMCID"),
    ],
)
def test_malformed_ids_are_usage_errors(
    argv: list[str], needle: str, standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert standin.requests == []


def test_unknown_pmid_among_good_ones(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pmid", "35350566", "99999999", "900001"]) == ExitCode.NOT_FOUND
    out = capsys.readouterr()
    assert "requested 3, created 2, updated 0, unchanged 0, not found 1, failed 0" in out.out
    assert "not found: 99999999" in out.err
    assert stored_pmids(default_db(home)) == ["35350566", "900001"]


def test_unreachable_service_is_one_line_upstream_error(
    home: Path, fast_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARVEST_EUTILS_URL", "http://127.0.0.1:9/entrez/eutils/")
    assert run(["pmid", "35350566"]) == ExitCode.UPSTREAM
    err = capsys.readouterr().err
    assert "35350566" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "config file not found"),
        ("[ncbi\nemail = 1", "not valid TOML"),
        ("[ncbi]\nbatch = 3", "unknown key"),
    ],
)
def test_broken_config_is_a_usage_error(
    content: str | None, needle: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home / "config.toml"
    if content is not None:
        path.write_text(content)
    assert run(["--config", str(path), "pmid", "35350566"]) == ExitCode.USAGE
    assert needle in _one_line_error(capsys.readouterr().err)


def test_database_that_cannot_be_written(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = home / "not-a-directory"
    blocker.write_text("a file where a directory should be")
    assert run(["--db", str(blocker / "harvest.sqlite"), "pmid", "35350566"]) == ExitCode.STORAGE
    assert "harvest: error:" in _one_line_error(capsys.readouterr().err)


def test_ids_from_file_and_stdin(
    standin: StandIn, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    id_file = home / "ids.txt"
    id_file.write_text("# my list\n35350566\n\n900001   # with a comment\n")
    assert run(["--json", "pmid", "--from", str(id_file)]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["created"] == ["35350566", "900001"]
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("10.5555/TEST.900002\n"))
    assert run(["--json", "doi", "--from", "-"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["created"] == ["10.5555/test.900002"]


# ---- export and help ----------------------------------------------------------------------------


def test_export_jsonl_and_csv(standin: StandIn, home: Path) -> None:
    assert run(["pmid", "35350566", "900001"]) == ExitCode.OK
    jsonl = home / "out.jsonl"
    assert run(["export", "--format", "jsonl", "--output", str(jsonl)]) == ExitCode.OK
    docs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(d["pmid"] for d in docs) == ["35350566", "900001"]
    csv_path = home / "out.csv"
    assert run(["export", "--format", "csv", "-o", str(csv_path)]) == ExitCode.OK
    import csv

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["pmid"] for r in rows} == {"35350566", "900001"}
    assert any(r["title"] == SEED_TITLE for r in rows)


COMMANDS = [
    [],
    ["pmid"],
    ["pmcid"],
    ["doi"],
    ["enrich"],
    ["history"],
    ["conflicts"],
    ["conflicts", "resolve"],
    ["show"],
    ["export"],
    ["db"],
    ["db", "upgrade"],
    ["db", "downgrade"],
    ["db", "current"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "harvest")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out
    assert len(out.strip().splitlines()) > 3


def test_readme_documents_every_command_and_exit_code() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for command in [
        "harvest pmid",
        "harvest pmcid",
        "harvest doi",
        "harvest show",
        "harvest export",
        "harvest db",
    ]:
        assert command in readme, command
    for code in ExitCode:
        assert re.search(rf"\|\s*{int(code)}\s*\|", readme), f"exit code {int(code)} not in README table"


def test_installed_console_script_end_to_end(standin: StandIn, home: Path) -> None:
    """The real `harvest` executable in a subprocess, as cron would run it."""
    script = Path(sys.executable).parent / "harvest"
    env = {**os.environ, **standin.env(), "HOME": str(home)}
    done = subprocess.run(
        [str(script), "pmid", "35350566"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "requested 1, created 1" in done.stdout
    bad = subprocess.run(
        [str(script), "pmid", "abc"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == ExitCode.USAGE
    assert _one_line_error(bad.stderr).startswith("harvest: ")


def test_export_into_a_closed_pipe_exits_141_quietly(standin: StandIn, home: Path) -> None:
    """`harvest export | head`: the reader leaves early; no message, the SIGPIPE status, nothing lost."""
    assert run(["pmid", "35350566", "900001"]) == ExitCode.OK
    script = Path(sys.executable).parent / "harvest"
    env = {**os.environ, **standin.env(), "HOME": str(home)}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        done = subprocess.run(
            [str(script), "export", "--format", "jsonl"],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == ExitCode.OUTPUT_CLOSED
    assert int(ExitCode.OUTPUT_CLOSED) == 141  # 128 + SIGPIPE, what a shell shows for `yes | head`
    assert done.stderr == ""
    out = home / "after.jsonl"
    assert run(["export", "--format", "jsonl", "-o", str(out)]) == ExitCode.OK
    assert len(out.read_text().splitlines()) == 2


def test_a_broken_pipe_that_is_not_stdout_is_an_error(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """EPIPE from anything but standard output (a child process, a socket) is reported, not hidden."""
    import errno

    import harvester.cli

    def broken(*args: object, **kwargs: object) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    assert run(["db", "upgrade"]) == ExitCode.OK
    capsys.readouterr()
    monkeypatch.setattr(harvester.cli, "_export", broken)
    assert run(["export", "--format", "jsonl"]) == ExitCode.STORAGE
    assert _one_line_error(capsys.readouterr().err) == "harvest: error: a pipe was closed early: Broken pipe"

"""``harvest nightly`` and ``harvest runs``: windows, settings, the run itself with a scripted search, and
the stand-in scenarios through the CLI (in-process, and real subprocesses for the lock and SIGKILL)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import open_database
from db.runs import (
    ABANDONED,
    FAILED,
    INTERRUPTED,
    OK,
    PARTIAL,
    SearchState,
    exclusive_run,
    list_runs,
    read_search_states as states_of,
)
from harvester.cli import run
from harvester.core.errors import BusyError, ConfigError, ExitCode, StorageError, UsageError
from harvester.core.settings import NightlySettings, SearchSpec, Settings, load_settings
from harvester.jobs.enrichment import EnrichReport
from harvester.jobs.nightly import Window, run_nightly, search_window, select_searches
from harvester.jobs.search import SearchReport, SliceReport
from tests.db_helpers import BUDGET_TABLES
from tests.interrupt import DEFAULT_SIGINT
from tests.standin import EFETCH, Delay, Short, StandIn, Status
from tests.test_cli import SEED, clone_record

TODAY = date(2026, 11, 27)
NIGHTLY = NightlySettings(lookback_days=3, stale_days=30, first_run_days=10)
EXO = SearchSpec("exo", "exosomes[tiab]", "mdat", since=date(2026, 1, 1))


def state(watermark: date | None, *, query: str = EXO.query, datetype: str = "mdat") -> SearchState:
    return SearchState("exo", query, datetype, watermark, 1, datetime.now(UTC))


# ---- the window (pure) ------------------------------------------------------------------------------


def test_a_first_run_starts_at_the_search_since() -> None:
    assert search_window(EXO, None, today=TODAY, nightly=NIGHTLY) == Window(date(2026, 1, 1), TODAY)


def test_a_first_run_without_since_starts_first_run_days_back() -> None:
    spec = SearchSpec("exo", "exosomes[tiab]")
    assert search_window(spec, None, today=TODAY, nightly=NIGHTLY).since == date(2026, 11, 17)


def test_a_later_run_starts_lookback_days_before_the_watermark_and_ends_today() -> None:
    window = search_window(EXO, state(date(2026, 11, 26)), today=TODAY, nightly=NIGHTLY)
    assert (window.since, window.until) == (date(2026, 11, 23), TODAY)


def test_lookback_zero_still_redoes_the_watermark_day() -> None:
    nightly = NightlySettings(lookback_days=0)
    assert search_window(EXO, state(date(2026, 11, 26)), today=TODAY, nightly=nightly).since == date(
        2026, 11, 26
    )


def test_the_lookback_never_reaches_before_since() -> None:
    spec = SearchSpec("exo", "exosomes[tiab]", since=date(2026, 11, 25))
    assert search_window(spec, state(date(2026, 11, 26)), today=TODAY, nightly=NIGHTLY).since == date(
        2026, 11, 25
    )


def test_a_changed_query_or_datetype_starts_the_search_again() -> None:
    for changed in (state(date(2026, 11, 26), query="other"), state(date(2026, 11, 26), datetype="edat")):
        assert search_window(EXO, changed, today=TODAY, nightly=NIGHTLY).since == date(2026, 1, 1)


def test_a_watermark_after_today_gives_a_one_day_window() -> None:
    window = search_window(EXO, state(date(2026, 12, 31)), today=TODAY, nightly=NIGHTLY)
    assert (window.since, window.until) == (TODAY, TODAY)


# ---- settings ---------------------------------------------------------------------------------------


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={"HOME": str(tmp_path)})


def test_searches_and_nightly_are_read_from_the_config(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        "[nightly]\nlookback_days = 5\nstale_days = 7\nfirst_run_days = 2\n\n"
        '[[searches]]\nname = "exo"\nquery = "exosomes[tiab]"\nsince = 2024-01-01\n\n'
        '[[searches]]\nname = "new-trials"\nquery = "trial[pt]"\ndatetype = "EDAT"\nsince = "2025-02-03"\n',
    )
    assert settings.searches == (
        SearchSpec("exo", "exosomes[tiab]", "mdat", date(2024, 1, 1)),
        SearchSpec("new-trials", "trial[pt]", "edat", date(2025, 2, 3)),
    )
    assert settings.nightly == NightlySettings(lookback_days=5, stale_days=7, first_run_days=2)


def test_without_searches_or_nightly_the_defaults_hold(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, '[ncbi]\nemail = "a@example.org"\n')
    assert settings.searches == ()
    assert settings.nightly == NightlySettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[searches]]\nname = "a"\nquery = "x"\nwhen = 1\n', "unknown key when"),
        ('[[searches]]\nname = "a"\n', "query is missing"),
        ('[[searches]]\nquery = "x"\n', "name is missing"),
        ('[[searches]]\nname = "a b"\nquery = "x"\n', "must be letters, digits"),
        ('[[searches]]\nname = "a"\nquery = "  "\n', "is empty"),
        ('[[searches]]\nname = "a"\nquery = "x"\ndatetype = "crdt"\n', "must be one of mdat, edat, pdat"),
        ('[[searches]]\nname = "a"\nquery = 3\n', "must be a string in quotes .*, not a whole number"),
        ('[[searches]]\nname = "a"\nquery = "x"\nsince = 2024-01-01T00:00:00\n', "since must be a date"),
        ('[[searches]]\nname = "a"\nquery = "x"\nsince = "last week"\n', "since must be a date"),
        (
            '[[searches]]\nname = "a"\nquery = "x"\n[[searches]]\nname = "a"\nquery = "y"\n',
            "names must be unique",
        ),
        ('searches = "exo"\n', "searches must be an array of tables"),
        ("[nightly]\nlookback_days = -1\n", "must be >= 0"),
        ("[nightly]\nlookback_days = 1.5\n", "lookback_days must be a whole number, not a decimal"),
        ("[nightly]\nwindow = 3\n", "unknown key nightly.window"),
    ],
)
def test_bad_searches_or_nightly_settings_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        settings_from(tmp_path, text)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(caught.value)


def test_select_searches_needs_a_configured_search_and_known_names() -> None:
    with pytest.raises(UsageError, match=r"no searches configured: add a \[\[searches\]\]"):
        select_searches(())
    other = SearchSpec("other", "x")
    assert select_searches((EXO, other)) == [EXO, other]
    assert select_searches((EXO, other), ["other"]) == [other]
    with pytest.raises(UsageError, match="unknown search 'nope' \\(configured: exo, other\\)"):
        select_searches((EXO, other), ["nope"])


# ---- run_nightly with a scripted search (both dialects) ---------------------------------------------


class ScriptedSearch:
    """Stands in for run_search: answers each query with the next scripted outcome and records calls."""

    def __init__(self, outcomes: dict[str, list[str]]) -> None:
        self.outcomes = outcomes  # query -> ["ok" | "short" | "usage" | "storage" | "upstream", ...]
        self.calls: list[dict[str, Any]] = []

    def __call__(self, query: str, **kwargs: Any) -> SearchReport:
        self.calls.append({"query": query, **kwargs})
        outcome = self.outcomes[query].pop(0)
        if outcome == "usage":
            raise UsageError("esearch rejected the query")
        if outcome == "storage":
            raise StorageError("cannot store articles in sqlite:///x: disk I/O error")
        since, until = kwargs["since"], kwargs["until"]
        report = SearchReport(query=query, datetype=kwargs["datetype"], since=since, until=until)
        report.window_start, report.window_end, report.total = since, until, 4
        short = outcome == "short"
        report.slices = [
            SliceReport(since, until, None, 4, 2 if short else 4, ("3", "4") if short else (), None)
        ]
        report.created, report.unchanged = (2, 0) if short else (1, 3)
        report.pmids = ["1", "2"] if short else ["1", "2", "3", "4"]
        if short:
            report.failed_ids = ["3", "4"]
            report.errors = ["slice: 2 of 4 records fetched"]
        if outcome == "conflict":
            report.conflicts = ["pubmed PMID 3 names the DOI and PMCID of two articles not in PubMed"]
        return report


def nightly_settings(*specs: SearchSpec) -> Settings:
    return Settings(database_url="sqlite://", searches=specs, nightly=NIGHTLY)


def no_stale(**kwargs: Any) -> tuple[EnrichReport, int]:
    return EnrichReport(), 0


def nightly(
    engine: Engine,
    search: ScriptedSearch,
    *specs: SearchSpec,
    today: date = TODAY,
    only: Sequence[str] = (),
    **kwargs: Any,
) -> Any:
    services: Any = object()  # the scripted search never uses it
    kwargs.setdefault("enrich_stale", no_stale)
    return run_nightly(
        nightly_settings(*specs), services, engine, today=today, search=search, only=only, **kwargs
    )


OTHER = SearchSpec("other", "other[tiab]", "edat")


def test_a_verified_window_moves_the_watermark_and_the_next_run_starts_before_it(engine: Engine) -> None:
    search = ScriptedSearch({EXO.query: ["ok", "ok"]})
    report = nightly(engine, search, EXO)
    assert report.exit_code == ExitCode.OK
    assert search.calls[0]["since"] == date(2026, 1, 1) and search.calls[0]["until"] == TODAY
    assert search.calls[0]["datetype"] == "mdat" and search.calls[0]["run_id"] == report.run_id
    assert states_of(engine)["exo"].watermark == TODAY

    later = TODAY + timedelta(days=1)
    nightly(engine, search, EXO, today=later)
    assert (search.calls[1]["since"], search.calls[1]["until"]) == (TODAY - timedelta(days=3), later)
    assert states_of(engine)["exo"].watermark == later


def test_a_conflict_exits_6_as_for_harvest_pmid_and_still_moves_the_watermark(engine: Engine) -> None:
    """Issue 13: the same situation gives the same exit code in every path (nightly gave 0 before)."""
    report = nightly(engine, ScriptedSearch({EXO.query: ["conflict"]}), EXO)
    assert report.exit_code == ExitCode.CONFLICT
    assert report.status == "ok"  # all was done; the conflict is listed by harvest conflicts
    assert states_of(engine)["exo"].watermark == TODAY


def test_an_unverified_window_leaves_the_watermark_and_is_redone_next_run(engine: Engine) -> None:
    search = ScriptedSearch({EXO.query: ["ok", "short", "ok"], OTHER.query: ["ok", "ok", "ok"]})
    nightly(engine, search, EXO, OTHER)
    later = TODAY + timedelta(days=5)
    report = nightly(engine, search, EXO, OTHER, today=later)
    assert report.exit_code == ExitCode.UPSTREAM
    assert report.status == PARTIAL
    watermarks = {name: s.watermark for name, s in states_of(engine).items()}
    assert watermarks == {"exo": TODAY, "other": later}  # the other search still advanced

    [row] = [r for r in list_runs(engine) if r.id == report.run_id]
    assert row.status == PARTIAL
    exo = next(s for s in row.searches if s.search == "exo")
    assert (exo.verified, exo.expected, exo.fetched, exo.failed_ids) == (False, 4, 2, ("3", "4"))
    assert (exo.watermark_before, exo.watermark_after) == (TODAY, TODAY)
    assert exo.errors == ("slice: 2 of 4 records fetched",)

    even_later = later + timedelta(days=1)
    report = nightly(engine, search, EXO, OTHER, today=even_later)
    assert search.calls[4]["since"] == TODAY - timedelta(days=3)  # the failed window, done again
    assert report.exit_code == ExitCode.OK
    assert states_of(engine)["exo"].watermark == even_later


def test_a_run_where_no_search_is_verified_is_failed(engine: Engine) -> None:
    report = nightly(engine, ScriptedSearch({EXO.query: ["short"]}), EXO)
    assert (report.exit_code, report.status) == (ExitCode.UPSTREAM, FAILED)
    assert states_of(engine) == {}


def test_a_search_that_cannot_run_is_recorded_and_the_others_still_run(engine: Engine) -> None:
    search = ScriptedSearch({EXO.query: ["usage"], OTHER.query: ["ok"]})
    report = nightly(engine, search, EXO, OTHER)
    assert report.exit_code == ExitCode.USAGE
    assert set(states_of(engine)) == {"other"}
    exo = next(s for s in list_runs(engine)[0].searches if s.search == "exo")
    assert exo.errors == ("exo: esearch rejected the query",)


def test_a_storage_failure_closes_the_run_as_failed_and_moves_no_watermark(engine: Engine) -> None:
    search = ScriptedSearch({OTHER.query: ["ok"], EXO.query: ["storage"]})
    with pytest.raises(StorageError):
        nightly(engine, search, OTHER, EXO)
    [row] = list_runs(engine)
    assert row.status == FAILED
    assert "disk I/O error" in row.summary["error"]
    assert [s.search for s in row.searches] == ["other"]  # what was verified before stays recorded
    assert set(states_of(engine)) == {"other"}
    with exclusive_run(engine, "the lock was released"):
        pass


def test_only_the_named_searches_run(engine: Engine) -> None:
    search = ScriptedSearch({OTHER.query: ["ok"]})
    nightly(engine, search, EXO, OTHER, only=["other"])
    assert [call["query"] for call in search.calls] == [OTHER.query]
    assert list_runs(engine)[0].command == "nightly (other)"


def test_a_run_while_another_holds_the_lock_does_nothing(engine: Engine) -> None:
    search = ScriptedSearch({EXO.query: ["ok"]})
    with exclusive_run(engine, "harvest ingest"):
        with pytest.raises(BusyError, match="harvest ingest"):
            nightly(engine, search, EXO)
    assert search.calls == []
    assert list_runs(engine) == []


def test_stale_articles_are_re_enriched_after_the_searches_unless_no_enrich(engine: Engine) -> None:
    asked: list[dict[str, Any]] = []

    def stale(**kwargs: Any) -> tuple[EnrichReport, int]:
        asked.append(kwargs)
        failing = EnrichReport()
        failing.crossref.failed.append("10.1/x")
        return failing, 7

    search = ScriptedSearch({EXO.query: ["ok", "ok"]})
    report = nightly(engine, search, EXO, enrich_stale=stale)
    assert [call["skip_pmids"] for call in asked] == [["1", "2", "3", "4"]]
    assert search.calls[0]["enrich"] is True
    assert report.stale == 7
    assert report.exit_code == ExitCode.UPSTREAM  # enrichment failed; the watermark still moved
    assert states_of(engine)["exo"].watermark == TODAY

    report = nightly(engine, search, EXO, enrich=False, enrich_stale=stale)
    assert len(asked) == 1
    assert search.calls[1]["enrich"] is False
    assert report.exit_code == ExitCode.OK


def test_a_killed_run_left_running_is_marked_abandoned_by_the_next(engine: Engine) -> None:
    from db.runs import start_locked_run

    killed = start_locked_run(engine, "nightly (exo)")
    report = nightly(engine, ScriptedSearch({EXO.query: ["ok"]}), EXO)
    assert {r.id: r.status for r in list_runs(engine)} == {killed: ABANDONED, report.run_id: OK}


# ---- through the CLI, against the stand-in ----------------------------------------------------------

PMIDS = ["35350566", *(str(p) for p in range(900012, 900000, -1))]  # as esearch lists them, newest first
MIDDLE_BATCH = {"900007", "900006", "900005"}  # records 7-9 of 13 with efetch_batch_size 3
RUN_TABLES = {
    *("harvest_runs", "run_searches", "search_states", "run_locks", "alembic_version"),
    *BUDGET_TABLES,  # the request budget (PostgreSQL): send times, not data
}


def in_middle_batch(params: Any) -> bool:
    """The middle efetch batch, whether paged from the history or asked for again by id."""
    return params.get("retstart") == "6" or bool(MIDDLE_BATCH & set(params.get("id", "").split(",")))


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        keep = name.startswith("HARVEST_TEST_") or name == "HARVEST_FIXTURES"  # the test run's own settings
        if (name.startswith("HARVEST_") and not keep) or name in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    config = tmp_path / "nightly.toml"
    config.write_text(
        "[ncbi]\nefetch_batch_size = 3\n\n[http]\nmax_attempts = 2\nbackoff_initial = 0.01\n"
        "backoff_max = 0.05\ntimeout = 60\n\n[nightly]\nlookback_days = 2\n\n"
        '[[searches]]\nname = "exo"\nquery = "exosomes"\nsince = 2000-01-01\n'
    )
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    return tmp_path


@pytest.fixture
def standin(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    extra = [clone_record(SEED, pmid) for pmid in PMIDS[1:]]
    with StandIn([SEED, *extra]) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def harvest(db_url: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = run(["--db", db_url, *args])
    return code, out.getvalue()


def stored(db_url: str) -> dict[str, Any]:
    """What a run leaves of the articles: (pmid, content hash) pairs and the rows of every data table."""
    engine = open_database(db_url)
    try:
        tables = sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            articles = sorted(
                tuple(row) for row in conn.execute(sa.text("SELECT pmid, content_sha256 FROM articles"))
            )
            counts = {
                name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
                for name in sorted(set(tables) - RUN_TABLES)
            }
        return {"articles": articles, "counts": counts}
    finally:
        engine.dispose()


def watermarks(db_url: str) -> dict[str, date | None]:
    engine = open_database(db_url)
    try:
        return {name: s.watermark for name, s in states_of(engine).items()}
    finally:
        engine.dispose()


def runs_of(db_url: str) -> list[dict[str, Any]]:
    code, out = harvest(db_url, "--json", "runs")
    assert code == ExitCode.OK
    result = json.loads(out)
    assert isinstance(result, dict) and list(result) == ["runs"]
    runs: list[dict[str, Any]] = result["runs"]
    return runs


def stored_pmids(db_url: str) -> list[str]:
    return sorted(pmid for pmid, _sha in stored(db_url)["articles"])


def today_utc() -> date:
    return datetime.now(UTC).date()


def test_a_middle_batch_that_keeps_failing_ends_4_stores_the_rest_and_the_next_run_completes(
    standin: StandIn, db_url: str
) -> None:
    standin.fail_always(EFETCH, Status(500), match=in_middle_batch)
    code, out = harvest(db_url, "nightly", "--no-enrich")
    assert code == ExitCode.UPSTREAM
    assert "NOT verified" in out and "watermark stays none yet" in out
    assert stored_pmids(db_url) == sorted(set(PMIDS) - MIDDLE_BATCH)
    assert watermarks(db_url) == {}

    standin.clear_faults()
    code, out = harvest(db_url, "nightly", "--no-enrich")
    assert code == ExitCode.OK, out
    assert stored_pmids(db_url) == sorted(PMIDS)
    assert watermarks(db_url) == {"exo": today_utc()}
    # The second run redid the whole window: the failed one had no watermark to start from.
    second, first = runs_of(db_url)
    assert [first["status"], second["status"]] == [FAILED, OK]
    [search] = first["searches"]
    assert search["verified"] is False and search["watermark_after"] is None
    assert sorted(search["failed_ids"]) == sorted(MIDDLE_BATCH)
    assert search["window"] == ["2000-01-01", today_utc().isoformat()]
    assert second["searches"][0]["window"][0] == "2000-01-01"


def test_a_slice_whose_count_does_not_match_fails_and_leaves_the_watermark(
    standin: StandIn, db_url: str
) -> None:
    assert harvest(db_url, "nightly", "--no-enrich")[0] == ExitCode.OK
    assert watermarks(db_url) == {"exo": today_utc()}
    engine = open_database(db_url)
    try:  # the watermark as of an earlier night, so a stuck one shows
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE search_states SET watermark = :day"), {"day": date(2026, 1, 10)})
    finally:
        engine.dispose()

    standin.fail_always(EFETCH, Short(1))  # every efetch answer silently one record short
    code, out = harvest(db_url, "nightly", "--no-enrich")
    assert code == ExitCode.UPSTREAM
    assert "NOT verified" in out and "watermark stays 2026-01-10" in out
    assert watermarks(db_url) == {"exo": date(2026, 1, 10)}
    [search] = runs_of(db_url)[0]["searches"]
    assert search["window"] == ["2026-01-08", today_utc().isoformat()]
    assert (search["verified"], search["expected"]) == (False, 13)
    assert search["fetched"] < search["expected"]
    assert search["watermark_before"] == search["watermark_after"] == "2026-01-10"

    standin.clear_faults()
    assert harvest(db_url, "nightly", "--no-enrich")[0] == ExitCode.OK
    assert watermarks(db_url) == {"exo": today_utc()}


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_nightly_with_enrichment_and_harvest_runs_in_text(standin: StandIn, db_url: str) -> None:
    code, out = harvest(db_url, "nightly")
    assert code == ExitCode.OK, out
    assert "nightly run 1: 1 of 1 searches verified" in out
    assert "enriched: pmc" in out
    code, out = harvest(db_url, "runs", "--status", "ok")
    assert code == ExitCode.OK
    header, first = out.splitlines()[:2]
    assert header.split()[:2] == ["ID", "STATUS"]
    assert first.split()[:2] == ["1", "ok"]
    assert first.index("ok") == header.index("STATUS")  # aligned under its heading
    assert f"exo: 2000-01-01..{today_utc()} [mdat] expected 13, fetched 13, created 13" in out
    assert harvest(db_url, "runs", "--status", "abandoned")[1] == "no runs recorded with status abandoned\n"


def test_nightly_without_searches_or_with_an_unknown_one_is_a_usage_error(
    standin: StandIn, cli_home: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--db", db_url, "nightly", "--search", "nope"]) == ExitCode.USAGE
    assert "unknown search 'nope' (configured: exo)" in capsys.readouterr().err
    empty = cli_home / "empty.toml"
    empty.write_text("[nightly]\nlookback_days = 1\n")
    assert run(["--config", str(empty), "--db", db_url, "nightly"]) == ExitCode.USAGE
    assert "no searches configured" in capsys.readouterr().err
    assert run(["--db", db_url, "runs", "--status", "done"]) == ExitCode.USAGE


# ---- real processes: two at once, and SIGKILL mid-batch ---------------------------------------------


def harvest_process(db_url: str, *args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).parent / "harvest"
    return subprocess.Popen(
        [*DEFAULT_SIGINT, str(script), "--db", db_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def wait_for_request(standin: StandIn, match: Any, process: subprocess.Popen[str]) -> None:
    """Until the stand-in has seen a request that fits (not a timing assertion: it only waits)."""
    for _ in range(6000):
        if any(match(r.params) for r in standin.requests_for(EFETCH)):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended first: {process.communicate()}")
        time.sleep(0.01)
    pytest.fail("the stand-in never saw the request")


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_two_nightly_processes_at_once_one_runs_and_one_exits_7(standin: StandIn, db_url: str) -> None:
    # The first run's first efetch is held until the second run has come and gone: however slowly the
    # second process starts on a loaded machine, the first still holds the lock when it asks.
    standin.inject(EFETCH, Delay(280), match=lambda p: p.get("retstart") == "0")
    first = harvest_process(db_url, "nightly", "--no-enrich")
    try:
        wait_for_request(standin, lambda p: p.get("retstart") == "0", first)
        second = harvest_process(db_url, "nightly", "--no-enrich")
        try:
            out, err = second.communicate(timeout=120)
        finally:
            standin.release_delays()
        assert second.returncode == ExitCode.BUSY, err
        assert out == ""
        assert err.startswith("harvest: error: another run is active: harvest nightly (pid ")
        assert f"(pid {first.pid} " in err and "this run did nothing" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        _out, err = first.communicate(timeout=300)
    assert first.returncode == ExitCode.OK, err
    assert [run["status"] for run in runs_of(db_url)] == [OK]  # the refused run left no row


def test_a_run_killed_mid_batch_and_run_again_stores_exactly_what_an_uninterrupted_run_does(
    standin: StandIn, db_url: str, tmp_path: Path
) -> None:
    reference = f"sqlite:///{tmp_path / 'uninterrupted.sqlite'}"
    assert harvest(reference, "nightly", "--no-enrich")[0] == ExitCode.OK
    standin.clear_log()

    standin.inject(EFETCH, Delay(300), match=in_middle_batch)
    killed = harvest_process(db_url, "nightly", "--no-enrich")
    try:
        wait_for_request(standin, in_middle_batch, killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    partial = stored_pmids(db_url)
    assert partial and set(partial) < set(PMIDS)  # killed part-way: some batches stored, not all
    assert watermarks(db_url) == {}

    code, out = harvest(db_url, "nightly", "--no-enrich")
    assert code == ExitCode.OK, out
    assert stored(db_url) == stored(reference)
    assert watermarks(db_url) == watermarks(reference) == {"exo": today_utc()}
    assert [(r["status"], r["pid"] == killed.pid) for r in runs_of(db_url)] == [
        (OK, False),
        (ABANDONED, True),
    ]


def test_ctrl_c_in_a_real_nightly_process_is_recorded_interrupted_with_exit_130(
    standin: StandIn, db_url: str
) -> None:
    """SIGINT mid-batch: the process exits 130, and its run row says interrupted, 130, pid and host."""
    standin.inject(EFETCH, Delay(300), match=in_middle_batch)
    process = harvest_process(db_url, "nightly", "--no-enrich")
    try:
        wait_for_request(standin, in_middle_batch, process)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED, err
    (interrupted,) = runs_of(db_url)
    assert interrupted["status"] == INTERRUPTED
    assert interrupted["summary"]["exit_code"] == 130 == process.returncode
    assert interrupted["summary"]["error"] == "interrupted"
    assert interrupted["pid"] == process.pid and interrupted["host"]
    assert interrupted["finished_at"] is not None

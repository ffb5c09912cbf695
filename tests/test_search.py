"""`harvest search`: slicing below PubMed's 9,999-record cap, verified slices, and the failures that must
never pass as "fewer results" (issue 5, item 1; PEERS.md B, C, D, J).

The end-to-end tests run against the stand-in, which enforces NCBI's cap on esearch (retstart <= 9998,
retstart + retmax clamped to 9,999) and on efetch from the history (the first 9,999 records only).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import redirect_stdout
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st
from sqlalchemy.engine import Engine

from db.engine import open_database
from harvester.cli import run
from harvester.core.errors import ExitCode, ParseError, ServiceUnavailableError, UsageError
from harvester.core.settings import HttpSettings, Secret, Settings
from harvester.jobs.search import (
    EARLIEST_DATE,
    PMID_CEILING,
    SearchReport,
    SearchSlice,
    SliceReport,
    check_search_arguments,
    parse_day,
    plan_slices,
    run_search,
)
from harvester.jobs.services import Services, build_services
from tests.db_helpers import database_params, fresh_database_url
from tests.standin import (
    EFETCH,
    ESEARCH,
    ErrorInBody,
    HtmlErrorPage,
    Short,
    StandIn,
    Status,
    rate_limited,
)

FIXTURES = Path(__file__).parent / "fixtures"
QUERY = "neoplasms[mh]"  # the stand-in matches every record for a MeSH term it does not index


# ---- records ---------------------------------------------------------------------------------------------


def article_xml(pmid: int, entered: date, *, doi: bool = False) -> str:
    """A small but complete PubmedArticle entered (edat), revised (mdat) and published (pdat) on one day."""
    ymd = f"<Year>{entered.year}</Year><Month>{entered.month:02d}</Month><Day>{entered.day:02d}</Day>"
    doi_id = f'<ArticleId IdType="doi">10.5555/search.{pmid}</ArticleId>' if doi else ""
    return (
        '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">'
        f'<PMID Version="1">{pmid}</PMID><DateRevised>{ymd}</DateRevised>'
        '<Article PubModel="Print"><Journal><JournalIssue CitedMedium="Print">'
        f"<PubDate>{ymd}</PubDate></JournalIssue><Title>Journal of Slices</Title></Journal>"
        f"<ArticleTitle>Record {pmid} entered {entered.isoformat()}.</ArticleTitle>"
        "<Language>eng</Language></Article></MedlineCitation><PubmedData><History>"
        f'<PubMedPubDate PubStatus="entrez">{ymd}</PubMedPubDate></History>'
        "<PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
        f'<ArticleId IdType="pubmed">{pmid}</ArticleId>{doi_id}</ArticleIdList></PubmedData></PubmedArticle>'
    )


def corpus(
    days: Mapping[date, int], *, first_pmid: int = 30_000_001, doi: bool = False
) -> tuple[bytes, dict[str, date]]:
    """Records entered on the given days (day -> how many), PMIDs rising with the date as in PubMed."""
    pmid = first_pmid
    parts: list[str] = []
    entered: dict[str, date] = {}
    for day in sorted(days):
        for _ in range(days[day]):
            parts.append(article_xml(pmid, day, doi=doi))
            entered[str(pmid)] = day
            pmid += 1
    return ("<PubmedArticleSet>" + "".join(parts) + "</PubmedArticleSet>").encode(), entered


def make_settings(standin: StandIn, database_url: str, *, batch_size: int = 5000) -> Settings:
    """An API key (10 requests/s, as NCBI allows with one), big efetch pages and short back-off."""
    return Settings(
        database_url=database_url,
        email="tests@example.org",
        ncbi_api_key=Secret("test-api-key-0123"),
        eutils_url=standin.eutils_url,
        idconv_url=standin.idconv_url,
        crossref_url=standin.crossref_url,
        icite_url=standin.icite_url,
        ncbi_requests_per_second=10.0,
        efetch_batch_size=batch_size,
        http=HttpSettings(timeout=10.0, max_attempts=3, backoff_initial=0.01, backoff_max=0.05),
    )


def stored_pmids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT pmid FROM articles"))]


def esearch_requests(standin: StandIn) -> list[Mapping[str, str]]:
    return [r.params for r in standin.requests_for(ESEARCH)]


def history_efetches(standin: StandIn) -> list[Mapping[str, str]]:
    return [r.params for r in standin.requests_for(EFETCH) if r.params.get("WebEnv")]


class Harness:
    """A stand-in, a fresh database and the services pointed at it, for calling run_search directly."""

    def __init__(self, standin: StandIn, engine: Engine, settings: Settings) -> None:
        self.standin = standin
        self.engine = engine
        self.settings = settings
        self.services: Services = build_services(settings)

    def search(
        self,
        query: str = QUERY,
        *,
        since: date | None = None,
        until: date | None = None,
        max_results: int | None = None,
        enrich: bool = False,
    ) -> SearchReport:
        return run_search(
            query,
            since=since,
            until=until,
            max_results=max_results,
            settings=self.settings,
            services=self.services,
            engine=self.engine,
            enrich=enrich,
        )


@pytest.fixture(params=database_params())
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_harness(dialect: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    started: list[StandIn] = []
    engines: list[Engine] = []
    with fresh_database_url(dialect, tmp_path) as url:

        def build(records: bytes, *, batch_size: int = 5000) -> Harness:
            standin = StandIn([records]).start()
            started.append(standin)
            engine = open_database(url)
            engines.append(engine)
            return Harness(standin, engine, make_settings(standin, url, batch_size=batch_size))

        try:
            yield build
        finally:
            for standin in started:
                standin.stop()
            for engine in engines:
                engine.dispose()


# ---- the 25,000-result search ------------------------------------------------------------------------

BIG_DAY = date(2024, 3, 15)


def big_corpus() -> tuple[bytes, dict[str, date]]:
    """25,000 records over the first half of 2024, 12,000 of them entered on one day (BIG_DAY)."""
    days: dict[date, int] = {}
    spread = [date(2024, 1, 1) + timedelta(days=i) for i in range(182)]
    for position in range(13_000):
        day = spread[position % len(spread)]
        days[day] = days.get(day, 0) + 1
    days[BIG_DAY] = days.get(BIG_DAY, 0) + 12_000
    return corpus(days)


@pytest.mark.timeout(300)  # a long scenario: over 10 s alone (README, Testing)
def test_a_search_of_25000_records_is_fetched_completely(make_harness: Callable[..., Harness]) -> None:
    records, entered = big_corpus()
    assert len(entered) == 25_000 and sum(1 for d in entered.values() if d == BIG_DAY) > 10_000
    harness = make_harness(records)

    report = harness.search(since=date(2024, 1, 1), until=date(2024, 6, 30))

    assert report.verified, report.errors
    assert report.exit_code() == ExitCode.OK
    assert report.total == 25_000
    assert sorted(report.pmids, key=int) == sorted(entered, key=int)
    stored = stored_pmids(harness.engine)
    assert len(stored) == len(set(stored)) == 25_000  # every PMID stored exactly once
    assert set(stored) == set(entered)
    assert report.created == 25_000 and report.updated == report.unchanged == 0
    assert sum(s.expected for s in report.slices) == sum(s.fetched for s in report.slices) == 25_000
    assert all(s.verified and s.expected <= 9_999 for s in report.slices)
    by_pmid = [s for s in report.slices if s.pmid_range is not None]
    assert by_pmid and all(s.mindate == s.maxdate == BIG_DAY for s in by_pmid)  # the big day, by PMID
    assert sum(s.expected for s in by_pmid) == sum(1 for d in entered.values() if d == BIG_DAY)
    # newest first: slices come in descending date order
    assert [s.maxdate for s in report.slices] == sorted((s.maxdate for s in report.slices), reverse=True)
    # NCBI's caps were never hit: no refused retstart, no "Restrictions achieved"
    assert all(int(p.get("retstart", "0")) <= 9998 for p in esearch_requests(harness.standin))
    assert all(int(p["retstart"]) + int(p["retmax"]) <= 9999 for p in history_efetches(harness.standin))
    assert all(r.status == 200 for r in harness.standin.requests), "no request was refused"
    assert harness.standin.errors == []


# ---- slices and planning (pure) ----------------------------------------------------------------------


def test_a_slice_halves_by_date_then_by_pmid_newer_half_second() -> None:
    window = SearchSlice(date(2024, 1, 1), date(2024, 1, 4))
    assert window.halves() == (
        SearchSlice(date(2024, 1, 1), date(2024, 1, 2)),
        SearchSlice(date(2024, 1, 3), date(2024, 1, 4)),
    )
    day = SearchSlice(date(2024, 1, 3), date(2024, 1, 3))
    low, high = day.halves() or (None, None)
    assert low is not None and high is not None
    assert low.pmid_range is not None and high.pmid_range is not None
    assert low.pmid_range[0] == 1 and high.pmid_range[1] == PMID_CEILING
    assert low.pmid_range[1] + 1 == high.pmid_range[0]
    assert SearchSlice(day.mindate, day.maxdate, (7, 7)).halves() is None


def test_a_slice_term_adds_its_pmid_range_and_labels_itself() -> None:
    day = SearchSlice(date(2024, 1, 3), date(2024, 1, 3), (100, 250))
    assert day.term("cancer OR tumour") == "(cancer OR tumour) AND 100:250[uid]"
    assert day.label == "2024-01-03 PMIDs 100-250"
    assert SearchSlice(date(2024, 1, 1), date(2024, 1, 31)).term("cancer") == "cancer"
    assert SearchSlice(date(2024, 1, 1), date(2024, 1, 31)).label == "2024-01-01..2024-01-31"
    with pytest.raises(ValueError):
        SearchSlice(date(2024, 1, 2), date(2024, 1, 1))


def counter(
    records: Mapping[int, date], calls: list[SearchSlice] | None = None
) -> Callable[[SearchSlice], int]:
    """esearch's Count for a slice, over records given as PMID -> day."""

    def count(part: SearchSlice) -> int:
        if calls is not None:
            calls.append(part)
        low, high = part.pmid_range or (1, PMID_CEILING)
        return sum(
            1 for pmid, day in records.items() if part.mindate <= day <= part.maxdate and low <= pmid <= high
        )

    return count


def in_slice(pmid: int, day: date, part: SearchSlice) -> bool:
    low, high = part.pmid_range or (1, PMID_CEILING)
    return part.mindate <= day <= part.maxdate and low <= pmid <= high


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.integers(min_value=1, max_value=PMID_CEILING),
        st.dates(min_value=date(2020, 1, 1), max_value=date(2020, 3, 31)),
        max_size=80,
    ),
    st.integers(min_value=1, max_value=12),
)
def test_planned_slices_hold_every_record_exactly_once_and_at_most_the_cap(
    records: dict[int, date], cap: int
) -> None:
    window = SearchSlice(date(2020, 1, 1), date(2020, 3, 31))
    planned = list(plan_slices(window, counter(records), cap=cap))
    assert all(p.error is None and p.count is not None and p.count <= cap for p in planned)
    for pmid, day in records.items():
        assert sum(1 for p in planned if in_slice(pmid, day, p.slice)) == 1
    # newest first: each slice lies wholly before (older, or lower PMIDs on the same day) the one before it
    for before, after in itertools.pairwise(planned):
        same_day = after.slice.maxdate == before.slice.mindate == before.slice.maxdate
        assert after.slice.maxdate < before.slice.mindate or (
            same_day
            and after.slice.pmid_range is not None
            and before.slice.pmid_range is not None
            and after.slice.pmid_range[1] < before.slice.pmid_range[0]
        )


def test_a_single_day_above_the_cap_is_split_by_pmid_range() -> None:
    day = date(2024, 5, 5)
    records = {pmid: day for pmid in range(40_000_000, 40_000_025)} | {39_000_000: date(2024, 5, 4)}
    planned = list(plan_slices(SearchSlice(date(2024, 5, 1), date(2024, 5, 31)), counter(records), cap=10))
    full = [p for p in planned if p.count]
    assert sum(p.count or 0 for p in full) == 26
    on_day = [p for p in full if p.slice.mindate == p.slice.maxdate == day]
    assert len(on_day) >= 3 and all(p.slice.pmid_range is not None for p in on_day)
    highs = [(p.slice.pmid_range or (0, 0))[1] for p in on_day]
    assert highs == sorted(highs, reverse=True)  # highest PMIDs first


def test_planning_is_lazy_so_a_capped_search_counts_only_what_it_takes() -> None:
    records = {30_000_000 + i: date(2024, 1, 1) + timedelta(days=i % 60) for i in range(600)}
    calls: list[SearchSlice] = []
    plan = plan_slices(SearchSlice(date(2024, 1, 1), date(2024, 2, 29)), counter(records, calls), cap=10)
    first = next(plan)
    assert first.slice.maxdate == date(2024, 2, 29)  # the newest slice comes first
    lazily = len(calls)
    list(plan)
    assert lazily < len(calls) / 3


def test_a_failed_count_fails_that_slice_and_planning_goes_on() -> None:
    records = {30_000_000 + i: date(2024, 1, 1) + timedelta(days=i % 4) for i in range(40)}
    count = counter(records)
    broken = SearchSlice(date(2024, 1, 1), date(2024, 1, 2))

    def flaky(part: SearchSlice) -> int:
        if part == broken:
            raise ServiceUnavailableError("eutils: HTTP 503", source="eutils")
        return count(part)

    planned = list(plan_slices(SearchSlice(date(2024, 1, 1), date(2024, 1, 4)), flaky, cap=12))
    failed = [p for p in planned if p.error]
    assert [p.slice for p in failed] == [broken] and failed[0].count is None
    assert "2024-01-01..2024-01-02: esearch failed: eutils: HTTP 503" in (failed[0].error or "")
    assert sum(p.count or 0 for p in planned if not p.error) == 20  # the other half still planned


def test_halves_that_hold_fewer_records_than_their_slice_fail_it() -> None:
    def count(part: SearchSlice) -> int:
        return 30 if part.mindate == date(2024, 1, 1) and part.maxdate == date(2024, 1, 4) else 5

    planned = list(plan_slices(SearchSlice(date(2024, 1, 1), date(2024, 1, 4)), count, cap=10))
    failed = [p for p in planned if p.error]
    assert len(failed) == 1 and failed[0].count == 30
    assert "its halves hold 10 records, the slice 30" in (failed[0].error or "")


def test_a_whole_window_count_that_fails_is_one_failed_slice() -> None:
    def count(part: SearchSlice) -> int:
        raise ParseError("esearch: <Count> is missing")

    assert [p.count for p in plan_slices(SearchSlice(date(2024, 1, 1), date(2024, 1, 4)), count)] == [None]


def test_slice_and_search_reports_say_verified_only_when_complete() -> None:
    good = SliceReport(date(2024, 1, 1), date(2024, 1, 2), None, 5, 5, (), None)
    short = SliceReport(date(2024, 1, 3), date(2024, 1, 3), (1, 10), 5, 4, ("7",), "slice 2024-01-03 short")
    assert good.verified and not short.verified
    report = SearchReport(query="q", datetype="edat", since=None, until=None, slices=[good], total=5)
    assert report.verified and report.exit_code() == ExitCode.OK
    report.slices.append(short)
    assert not report.verified and report.exit_code() == ExitCode.UPSTREAM
    assert report.failed_slices == [short]
    assert SearchReport(query="q", datetype="edat", since=None, until=None).verified is False  # no count


def test_search_arguments_are_checked() -> None:
    today = date(2026, 11, 20)
    assert check_search_arguments(
        "q", datetype="edat", since=None, until=None, max_results=None, today=today
    ) == (
        EARLIEST_DATE,
        today,
    )
    bad: list[dict[str, object]] = [
        {"query": "  "},
        {"datetype": "crdt"},
        {"since": date(2024, 2, 1), "until": date(2024, 1, 1)},
        {"max_results": 0},
    ]
    for change in bad:
        arguments: dict[str, object] = {"query": "q", "datetype": "edat", "since": None, "until": None}
        arguments |= {"max_results": None, "today": today} | change
        with pytest.raises(UsageError):
            check_search_arguments(**arguments)  # type: ignore[arg-type]
    assert parse_day("--since", "2024-02-29") == date(2024, 2, 29)
    assert parse_day("--since", "2024/02/29") == date(2024, 2, 29)
    assert parse_day("--since", None) is None
    for wrong in ("2023-02-29", "2024-2-3", "yesterday", "20240101"):
        with pytest.raises(UsageError, match="--since must be a date as YYYY-MM-DD"):
            parse_day("--since", wrong)


# ---- small searches against the stand-in (the slice cap lowered to 10) ------------------------------------

SMALL_DAYS = {date(2024, 1, 1) + timedelta(days=i): 4 for i in range(10)}  # 40 records, 4 a day


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    """Slices of at most 10 records, so 40 records make several slices (the stand-in's cap stays 9,999)."""
    monkeypatch.setattr("harvester.jobs.search.SLICE_CAP", 10)
    return 10


SINCE, UNTIL = date(2024, 1, 1), date(2024, 1, 10)


def test_a_slice_whose_fetch_comes_back_short_fails_loudly_and_the_others_are_stored(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records, batch_size=3)
    # the newest slice (2024-01-09..10) is searched first, so its history is the stand-in's first WebEnv;
    # every efetch of its records, from the history or by id, comes back one record short
    newest = {pmid for pmid, day in entered.items() if day >= date(2024, 1, 9)}
    first_history = f"MCID_{1:024x}"
    harness.standin.fail_always(
        EFETCH,
        Short(1),
        match=lambda p: p.get("WebEnv") == first_history or bool(newest & set(p.get("id", "").split(","))),
    )

    report = harness.search(since=SINCE, until=UNTIL)

    assert not report.verified and report.exit_code() == ExitCode.UPSTREAM
    [failed] = report.failed_slices
    assert (failed.mindate, failed.maxdate) == (date(2024, 1, 9), date(2024, 1, 10))
    assert failed.error is not None and failed.expected == len(newest)
    assert failed.fetched == failed.expected - 1 and len(failed.missing) == 1
    [victim] = failed.missing
    assert victim in newest
    assert f"search slice {failed.label}: esearch reported {failed.expected} records, efetch returned" in (
        failed.error
    )
    assert victim in report.failed_ids and failed.error in report.errors
    others = [s for s in report.slices if s is not failed]
    assert others and all(s.verified for s in others)
    stored = set(stored_pmids(harness.engine))
    assert victim not in stored
    assert {p for p, day in entered.items() if day < failed.mindate} <= stored  # the other slices stored
    assert stored == set(report.pmids)
    # the short ids were asked for again by id, once
    by_id = [r for r in harness.standin.requests_for(EFETCH) if victim in r.params.get("id", "").split(",")]
    assert len(by_id) == 1


def test_an_esearch_id_list_short_of_its_count_is_not_verified_even_when_efetch_returns_the_count(
    make_harness: Callable[..., Harness],
) -> None:
    # issue 16: esearch counts 40 and lists 39; efetch from the history still returns all 40, so the
    # count matches, but one record was never checked against the search: the cursor must not move.
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records, batch_size=50)
    harness.standin.inject(ESEARCH, Short(1), match=lambda p: p.get("usehistory") == "y")

    report = harness.search(since=SINCE, until=UNTIL)

    assert not report.verified and report.exit_code() == ExitCode.UPSTREAM
    [failed] = report.failed_slices
    assert (failed.expected, failed.fetched, failed.missing) == (40, 40, ())
    assert failed.error is not None and failed.error.endswith(
        "esearch reported 40 records, efetch returned 40; esearch listed only 39 ids"
    )
    assert set(stored_pmids(harness.engine)) == set(entered)  # nothing fetched is thrown away


def test_records_missing_from_a_history_page_are_recovered_by_id(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records, batch_size=3)
    # NCBI refuses one history page (an expired WebEnv answers 400): asking by id still gets every record
    harness.standin.inject(
        EFETCH, ErrorInBody("Unable to obtain query #1", status=400), match=lambda p: "WebEnv" in p
    )

    report = harness.search(since=SINCE, until=UNTIL)

    assert report.verified, report.errors
    assert set(stored_pmids(harness.engine)) == set(entered)


def test_max_fetches_the_newest_records_and_says_it_capped(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records)

    report = harness.search(max_results=14, since=SINCE, until=UNTIL)

    newest = sorted(entered, key=int)[-14:]
    assert report.capped and report.max_results == 14 and report.total == 40
    assert report.verified and report.exit_code() == ExitCode.OK
    assert sorted(report.pmids, key=int) == newest
    assert sorted(stored_pmids(harness.engine), key=int) == newest
    assert "capped at --max 14" in report.summary_line()
    assert sum(s.expected for s in report.slices) == 14


def test_running_a_search_again_stores_nothing_new(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records)
    first = harness.search(since=SINCE, until=UNTIL)
    again = harness.search(since=SINCE, until=UNTIL)
    assert first.verified and again.verified
    assert (first.created, again.created, again.updated, again.unchanged) == (40, 0, 0, 40)
    assert sorted(stored_pmids(harness.engine), key=int) == sorted(entered, key=int)


def test_enrichment_runs_for_new_and_changed_articles_only(make_harness: Callable[..., Harness]) -> None:
    records, _entered = corpus({date(2024, 1, 1): 3}, doi=True)
    harness = make_harness(records)
    first = harness.search(enrich=True, since=SINCE, until=UNTIL)
    assert first.enrich is not None and first.enrich.crossref.asked == 3
    assert first.enrich.crossref.not_found == 3  # Crossref (the stand-in) holds none of them
    again = harness.search(enrich=True, since=SINCE, until=UNTIL)
    assert again.enrich is not None and again.enrich.crossref.asked == 0


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(rate_limited(), id="429"),
        pytest.param(
            ErrorInBody("Search Backend failed: Couldn't resolve #pubmed_pubmed"), id="error-in-200"
        ),
        pytest.param(HtmlErrorPage(), id="html-page-in-200"),
        pytest.param(
            Status(
                200,
                (FIXTURES / "esearch_backend_failed_in_warninglist.xml").read_bytes(),
                {"Content-Type": "text/xml; charset=UTF-8"},
            ),
            id="backend-failed-in-warninglist",
        ),
    ],
)
def test_a_failing_esearch_is_never_a_verified_empty_result(
    make_harness: Callable[..., Harness], fault: object
) -> None:
    records, _ = corpus(SMALL_DAYS)
    harness = make_harness(records)
    harness.standin.fail_always(ESEARCH, fault)  # type: ignore[arg-type]

    report = harness.search(since=SINCE, until=UNTIL)

    assert not report.verified and report.exit_code() == ExitCode.UPSTREAM
    assert report.total is None and report.pmids == [] and stored_pmids(harness.engine) == []
    [failed] = report.slices
    assert failed.error is not None and "esearch failed" in failed.error
    assert len(harness.standin.requests_for(ESEARCH)) == 3  # retried under the one policy, then given up


def test_a_transient_esearch_failure_is_retried_and_the_search_completes(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records)
    harness.standin.inject(ESEARCH, rate_limited(), ErrorInBody("Search Backend failed"))
    report = harness.search(since=SINCE, until=UNTIL)
    assert report.verified and set(stored_pmids(harness.engine)) == set(entered)


def test_a_slice_whose_count_fails_while_planning_fails_and_the_others_are_stored(
    make_harness: Callable[..., Harness], small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    harness = make_harness(records)
    # the newer half of the window (2024-01-06..10) cannot be counted: NCBI keeps failing for it
    harness.standin.fail_always(
        ESEARCH, Status(502, b"Bad Gateway"), match=lambda p: p.get("mindate") == "2024/01/06"
    )

    report = harness.search(since=SINCE, until=UNTIL)

    assert not report.verified and report.exit_code() == ExitCode.UPSTREAM
    failed = report.failed_slices
    assert [(s.mindate, s.maxdate) for s in failed] == [(date(2024, 1, 6), date(2024, 1, 10))]
    assert set(stored_pmids(harness.engine)) == {p for p, day in entered.items() if day <= date(2024, 1, 5)}


# ---- the CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean harvest environment with an API key (10 requests/s) and short back-off."""
    import os

    for name in list(os.environ):
        if name.startswith(("HARVEST_TEST_", "HARVEST_FIXTURES")):
            continue  # the test run's own settings (the PostgreSQL server, the shared fixtures)
        if name.startswith("HARVEST_") or name in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "test-api-key-0123")
    config = tmp_path / "fast.toml"
    config.write_text("[http]\nmax_attempts = 3\nbackoff_initial = 0.01\nbackoff_max = 0.05\ntimeout = 10\n")
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    return tmp_path


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = run(list(argv))
    return code, out.getvalue()


def test_cli_search_stores_every_record_and_records_the_run(
    cli_env: Path, dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_cap: int
) -> None:
    records, entered = corpus(SMALL_DAYS)
    with fresh_database_url(dialect, tmp_path / "db") as url, StandIn([records]) as standin:
        for name, value in standin.env().items():
            monkeypatch.setenv(name, value)
        code, out = run_cli("--db", url, "search", QUERY, "--since", "2024-01-01", "--until", "2024-01-10")
        assert code == ExitCode.OK, out
        assert out.startswith("search found 40, fetched 40 in ") and "(0 failed)" in out
        assert "created 40" in out
        code, out = run_cli("--db", url, "--json", "search", QUERY, "--since", "2024-01-01", "--no-enrich")
        summary = json.loads(out)
        assert code == ExitCode.OK and summary["verified"] is True and summary["unchanged"] == 40
        engine = open_database(url)
        try:
            assert sorted(stored_pmids(engine), key=int) == sorted(entered, key=int)
            with engine.connect() as conn:
                runs = conn.execute(sa.text("SELECT status FROM harvest_runs ORDER BY id")).all()
        finally:
            engine.dispose()
        assert [r[0] for r in runs] == ["ok", "ok"]


def test_cli_search_with_a_failed_slice_exits_4_and_names_it(
    cli_env: Path,
    dialect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    small_cap: int,
) -> None:
    records, entered = corpus(SMALL_DAYS)
    newest = {pmid for pmid, day in entered.items() if day >= date(2024, 1, 9)}
    with fresh_database_url(dialect, tmp_path / "db") as url, StandIn([records]) as standin:
        for name, value in standin.env().items():
            monkeypatch.setenv(name, value)
        standin.fail_always(
            EFETCH,
            Short(1),
            match=lambda p: bool(
                p.get("WebEnv") == f"MCID_{1:024x}" or newest & set(p.get("id", "").split(","))
            ),
        )
        code = run(["--db", url, "search", QUERY, "--since", "2024-01-01", "--until", "2024-01-10"])
        captured = capsys.readouterr()
        assert code == ExitCode.UPSTREAM
        assert "NOT VERIFIED" in captured.out and "(1 failed)" in captured.out
        slice_errors = [line for line in captured.err.splitlines() if "search slice 2024-01-09" in line]
        assert slice_errors == [  # said once (issue 14)
            "harvest: error: search slice 2024-01-09..2024-01-10: esearch reported 8 records, "
            "efetch returned 7; missing 1: 30000033"
        ]
        assert "Traceback" not in captured.err
        engine = open_database(url)
        try:
            assert len(stored_pmids(engine)) == 39
            with engine.connect() as conn:
                [(status,)] = conn.execute(sa.text("SELECT status FROM harvest_runs")).all()
        finally:
            engine.dispose()
        assert status == "partial"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "cancer", "--since", "2024-02-30"], "--since must be a date as YYYY-MM-DD"),
        (["search", "cancer", "--until", "last week"], "--until must be a date as YYYY-MM-DD"),
        (["search", "cancer", "--since", "2024-03-01", "--until", "2024-02-01"], "is after --until"),
        (["search", "cancer", "--datetype", "crdt"], "--datetype must be one of edat, mdat, pdat"),
        (["search", "cancer", "--max", "0"], "--max must be at least 1"),
        (["search", "   "], "the search query is empty"),
    ],
)
def test_cli_search_usage_errors_exit_2_with_one_line(
    cli_env: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("harvest: error:")
    assert not (cli_env / ".local").exists()  # rejected before any database was opened


def test_cli_search_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["search", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    for option in ("--since", "--until", "--datetype", "--max", "--no-enrich"):
        assert option in out


# ---- the E-utilities client and the stand-in at the cap ----------------------------------------------


def test_efetch_from_the_history_refuses_more_than_pubmed_serves(
    make_harness: Callable[..., Harness],
) -> None:
    records, _ = corpus({date(2024, 1, 1): 1})
    harness = make_harness(records)
    with pytest.raises(UsageError, match="at most the first 9999 records"):
        list(harness.services.eutils.efetch_history("MCID_1", "1", count=10_000))


def test_the_standin_serves_only_the_first_9999_records_of_a_history(
    make_harness: Callable[..., Harness],
) -> None:
    records, _entered = corpus({date(2024, 1, 1): 10_050})
    harness = make_harness(records)
    found = harness.services.eutils.esearch(QUERY, retmax=9999, usehistory=True)
    assert found.count == 10_050 and len(found.ids) == 9999
    assert found.webenv is not None and found.query_key is not None
    pages = list(
        harness.services.eutils.efetch_history(
            found.webenv, found.query_key, count=9999, expected_ids=found.ids
        )
    )
    assert len(pages) == 2 and not any(isinstance(p, Exception) for p in pages)
    import requests

    beyond = requests.post(
        harness.standin.eutils_url + "efetch.fcgi",
        data={
            "db": "pubmed",
            "WebEnv": found.webenv,
            "query_key": found.query_key,
            "retstart": "9999",
            "retmax": "10",
        },
        timeout=10,
    )
    assert beyond.status_code == 400
    assert b"OUT OF RANGE" in beyond.content and b"History includes 9999 IDs" in beyond.content


def test_a_bad_record_in_a_search_is_kept_raw_and_the_window_still_verifies(
    make_harness: Callable[..., Harness],
) -> None:
    # Issue 13: a record that cannot be parsed would otherwise be "missing" from its slice every night.
    records, entered = corpus({date(2024, 1, 1): 3})
    bad = sorted(entered, key=int)[1]
    records = records.replace(f'<PMID Version="1">{bad}'.encode(), f'<PMID Version="0">{bad}'.encode())
    harness = make_harness(records)
    report = harness.search(since=SINCE, until=UNTIL)
    assert report.verified and report.rejected == [bad]
    assert report.exit_code() == ExitCode.REJECTED
    assert "rejected 1 (kept raw in rejected_records)" in report.summary_line()
    assert sorted(stored_pmids(harness.engine)) == sorted(p for p in entered if p != bad)
    with harness.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT pmid, reason FROM rejected_records")).all()
    assert [(pmid, "from 1 to 999" in reason) for pmid, reason in rows] == [(bad, True)]

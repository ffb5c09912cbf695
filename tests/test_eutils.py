"""harvester.sources.eutils: batching, GET/POST, errors inside HTTP 200, partial failure, esearch parsing."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    ParseError,
    RejectedRequestError,
    UsageError,
)
from harvester.core.settings import HttpSettings, Secret, Settings
from harvester.sources.eutils import (
    EfetchBatch,
    EsearchResult,
    EutilsClient,
    check_eutils_text,
    check_eutils_xml,
    parse_esearch,
)
from harvester.sources.http import RateLimiter, Response, RetryPolicy
from tests.helpers_fixtures import local_fixture, read_shared, shared_params

SECRET = "SECRET-KEY-123"
BASE = "https://eutils.example.org/entrez/eutils/"
EFETCH = BASE + "efetch.fcgi"
ESEARCH = BASE + "esearch.fcgi"
PUBMED_OK = local_fixture("efetch_pubmed_two_articles.xml")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_settings(*, email: str | None = "dev@example.org", api_key: str | None = SECRET) -> Settings:
    return Settings(
        database_url="sqlite:///unused.sqlite",
        email=email,
        ncbi_api_key=Secret(api_key) if api_key else None,
        eutils_url=BASE,
        ncbi_requests_per_second=10.0 if api_key else 3.0,
        http=HttpSettings(max_attempts=3, backoff_initial=1.0, backoff_max=10.0),
    )


def make_client(batch_size: int = 200, **settings_kwargs: str | None) -> tuple[EutilsClient, list[float]]:
    waits: list[float] = []
    settings = make_settings(**settings_kwargs)
    fake = FakeClock()
    client = EutilsClient.from_settings(
        settings,
        requests.Session(),
        limiter=RateLimiter(settings.ncbi_requests_per_second, clock=fake.clock, sleep=fake.sleep),
        policy=RetryPolicy(settings.http, sleep=waits.append),
    )
    client.batch_size = batch_size
    return client, waits


def sent_params(call: responses.Call) -> dict[str, str]:
    """Query and form parameters of a recorded request, merged."""
    request = call.request
    params = {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    params.update({k: v[0] for k, v in parse_qs(body).items()})
    return params


def response_of(body: bytes, url: str = EFETCH) -> Response:
    return Response(url=url, status=200, headers={}, body=body, fetched_at=datetime.now(UTC))


def pmids(n: int, start: int = 10_000_000) -> list[str]:
    return [str(start + i) for i in range(n)]


# ------------------------------------------------------------------------------------ request shape


def test_tool_email_and_api_key_go_on_get_and_post(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)
    rsps.post(EFETCH, body=PUBMED_OK)
    rsps.get(ESEARCH, body=local_fixture("esearch_usehistory.xml"))
    client, _ = make_client(batch_size=300)
    list(client.efetch("pubmed", ["1", "2"]))
    list(client.efetch("pubmed", pmids(250)))
    client.esearch("exosome")
    assert [c.request.method for c in rsps.calls] == ["GET", "POST", "GET"]
    for call in rsps.calls:
        params = sent_params(call)
        assert params["tool"] == "pubmed-harvester"
        assert params["email"] == "dev@example.org"
        assert params["api_key"] == SECRET
    assert "api_key" not in (rsps.calls[1].request.url or "")  # POST: in the body only
    assert rsps.calls[0].request.headers["User-Agent"].startswith("pubmed-harvester/")


def test_email_and_api_key_are_omitted_when_not_configured(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client(email=None, api_key=None)
    list(client.efetch("pubmed", ["1"]))
    params = sent_params(rsps.calls[0])
    assert params["tool"] == "pubmed-harvester"
    assert "email" not in params
    assert "api_key" not in params


def test_batching_450_ids_by_200_makes_three_requests(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)
    rsps.post(EFETCH, body=PUBMED_OK)
    client, _ = make_client(batch_size=200)
    ids = pmids(450)
    batches = list(client.efetch("pubmed", ids))
    assert [len(b.ids) for b in batches if isinstance(b, EfetchBatch)] == [200, 200, 50]
    assert len(rsps.calls) == 3
    sent = [sent_params(c)["id"].split(",") for c in rsps.calls]
    assert sent == [ids[:200], ids[200:400], ids[400:]]
    assert all(sent_params(c)["db"] == "pubmed" and sent_params(c)["retmode"] == "xml" for c in rsps.calls)
    for batch in batches:
        assert isinstance(batch, EfetchBatch)
        assert SECRET not in batch.response.url


def test_post_when_more_than_200_ids_or_the_url_is_long_get_otherwise(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)
    rsps.post(EFETCH, body=PUBMED_OK)
    client, _ = make_client(batch_size=1000)
    list(client.efetch("pubmed", [str(i) for i in range(1, 202)]))  # 201 short ids: short URL, still POST
    list(client.efetch("pubmed", pmids(190)))  # under 200 ids but a URL over 2000 characters
    list(client.efetch("pubmed", pmids(20)))
    assert [c.request.method for c in rsps.calls] == ["POST", "POST", "GET"]
    assert len(rsps.calls[2].request.url or "") < 2000


def test_duplicates_are_sent_once_and_nothing_is_sent_until_iteration(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client()
    lazy = client.efetch("pubmed", ["1", "2", "1", "2", "3"])
    assert len(rsps.calls) == 0
    (batch,) = list(lazy)
    assert isinstance(batch, EfetchBatch)
    assert batch.ids == ("1", "2", "3")
    assert list(client.efetch("pubmed", [])) == []
    assert len(rsps.calls) == 1


def test_rettype_is_sent_when_given(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=b"PMID- 1\nTI  - a title\n")
    client, _ = make_client()
    (batch,) = list(client.efetch("pubmed", ["1"], rettype="medline", retmode="text"))
    assert isinstance(batch, EfetchBatch)
    params = sent_params(rsps.calls[0])
    assert (params["rettype"], params["retmode"]) == ("medline", "text")


# ---------------------------------------------------------------------------- errors inside HTTP 200


@pytest.mark.parametrize(
    "bad",
    [
        "efetch_error_in_200.xml",
        "efetch_html_error_page.html",
        "efetch_truncated_pubmed.xml",
        "efetch_pmc_articleset.xml",  # the wrong root for db=pubmed
    ],
)
def test_a_bad_200_is_retried_then_the_good_answer_is_yielded(rsps: responses.RequestsMock, bad: str) -> None:
    rsps.get(EFETCH, body=local_fixture(bad), status=200)
    rsps.get(EFETCH, body=PUBMED_OK, status=200)
    client, waits = make_client()
    (batch,) = list(client.efetch("pubmed", ["35350566", "9997"]))
    assert isinstance(batch, EfetchBatch)
    assert batch.response.body == PUBMED_OK
    assert len(rsps.calls) == 2
    assert len(waits) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_statuses_are_retried(rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(EFETCH, status=status)
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client()
    assert all(isinstance(b, EfetchBatch) for b in client.efetch("pubmed", ["1"]))
    assert len(rsps.calls) == 2


def test_connection_error_is_retried(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=requests.ConnectionError(f"reset; url=/efetch.fcgi?api_key={SECRET}"))
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client()
    assert all(isinstance(b, EfetchBatch) for b in client.efetch("pubmed", ["1"]))


def test_a_400_relaying_a_backend_failure_is_retried(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=local_fixture("efetch_400_relayed_backend_failure.xml"), status=400)
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client()
    assert all(isinstance(b, EfetchBatch) for b in client.efetch("pubmed", ["1"]))
    assert len(rsps.calls) == 2


def test_other_4xx_is_raised_without_retry(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=local_fixture("efetch_400_empty_id_list.xml"), status=400)
    client, waits = make_client()
    with pytest.raises(RejectedRequestError, match="ID list is empty"):
        list(client.efetch("pubmed", ["x"]))
    assert len(rsps.calls) == 1
    assert waits == []


# ------------------------------------------------------------------------------------- partial failure


def test_a_batch_that_never_succeeds_is_named_and_the_others_are_yielded(
    rsps: responses.RequestsMock,
) -> None:
    ids = [str(i) for i in range(1, 11)]
    doomed = ids[4:8]

    def answer(request: requests.PreparedRequest) -> tuple[int, Mapping[str, str], bytes]:
        asked = parse_qs(urlsplit(request.url or "").query)["id"][0].split(",")
        return (503, {}, b"") if asked == doomed else (200, {}, PUBMED_OK)

    rsps.add_callback(responses.GET, EFETCH, callback=answer)
    client, _ = make_client(batch_size=4)
    results = list(client.efetch("pubmed", ids))
    assert [type(r).__name__ for r in results] == ["EfetchBatch", "FetchFailedError", "EfetchBatch"]
    failure = results[1]
    assert isinstance(failure, FetchFailedError)
    assert failure.ids == tuple(doomed)
    assert failure.source == "eutils"
    assert "4 ids not fetched" in str(failure)
    assert failure.url is not None and SECRET not in failure.url
    assert [r.ids for r in results if isinstance(r, EfetchBatch)] == [tuple(ids[:4]), tuple(ids[8:])]
    assert len(rsps.calls) == 1 + 3 + 1  # max_attempts=3 for the doomed batch


def test_an_oversized_batch_is_reported_and_the_next_one_fetched(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=b"<PubmedArticleSet>" + b" " * 5000 + b"</PubmedArticleSet>")
    rsps.get(EFETCH, body=PUBMED_OK)
    client, _ = make_client(batch_size=1)
    client.service._max_bytes = 2000
    results = list(client.efetch("pubmed", ["1", "2"]))
    assert isinstance(results[0], FetchFailedError) and results[0].ids == ("1",)
    assert "refused" in str(results[0])
    assert isinstance(results[1], EfetchBatch)
    assert len(rsps.calls) == 2  # an oversized answer is not retried


# ----------------------------------------------------------------------------------- check functions


def test_check_accepts_pubmed_and_pmc_sets() -> None:
    check_eutils_xml(response_of(PUBMED_OK), expected_root="PubmedArticleSet")
    check_eutils_xml(response_of(local_fixture("efetch_pmc_articleset.xml")), expected_root="pmc-articleset")
    check_eutils_xml(response_of(b"\n\n" + PUBMED_OK), expected_root="PubmedArticleSet")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (local_fixture("efetch_html_error_page.html"), "HTML page"),
        (local_fixture("efetch_truncated_pubmed.xml"), "does not parse"),
        (b"", "empty body"),
        (b"Error: Failed to understand id\n", "does not parse"),
        (local_fixture("efetch_error_in_200.xml"), "Cannot retrieve document summaries"),
        (local_fixture("esearch_error_in_200.xml"), "Search Backend failed"),
        (b"<ERROR>Empty id list - nothing todo</ERROR>", "Empty id list"),
        (local_fixture("efetch_pmc_articleset.xml"), "expected <PubmedArticleSet> but got <pmc-articleset>"),
    ],
)
def test_check_refuses_error_bodies(body: bytes, says: str) -> None:
    with pytest.raises(BadResponseError, match=re.escape(says)) as caught:
        check_eutils_xml(response_of(body), expected_root="PubmedArticleSet")
    assert "\n" not in str(caught.value)
    assert caught.value.source == "eutils"
    assert caught.value.url == EFETCH


def test_check_text_mode() -> None:
    check_eutils_text(response_of(b"PMID- 1\nTI  - a title\n"))
    check_eutils_text(response_of(b""))
    for bad in (local_fixture("efetch_html_error_page.html"), local_fixture("efetch_error_in_200.xml")):
        with pytest.raises(BadResponseError):
            check_eutils_text(response_of(bad))


def test_check_does_not_treat_phrase_not_found_as_an_error() -> None:
    check_eutils_xml(response_of(local_fixture("esearch_usehistory.xml")), expected_root="eSearchResult")


# ------------------------------------------------------------- recorded responses ($HARVEST_FIXTURES)


# Files that hold one record cut out of an answer, not a whole efetch answer: refusing them as an
# answer is right (a bare <PubmedArticle> or <article> never comes back from efetch).
EXCERPTS = {
    "fatcat-pubmed_19129924.xml": "got <PubmedArticle>",
    "fatcat-pubmed_31393839.xml": "got <PubmedArticle>",
    "eutilsorg-efetch-pmc-3531190.xml": "got <article>",
}


def _check_recorded_set(relative: str, root: str) -> None:
    name = relative.rsplit("/", 1)[-1]
    response = response_of(read_shared(relative))
    if name in EXCERPTS:
        with pytest.raises(BadResponseError, match=re.escape(EXCERPTS[name])):
            check_eutils_xml(response, expected_root=root)
    else:
        check_eutils_xml(response, expected_root=root)


@pytest.mark.parametrize("relative", shared_params("eutils-pubmed-xml", "*.xml"))
def test_recorded_pubmed_sets_pass_the_check(relative: str) -> None:
    _check_recorded_set(relative, "PubmedArticleSet")


@pytest.mark.parametrize("relative", shared_params("eutils-pmc-jats", "*.xml"))
def test_recorded_pmc_sets_pass_the_check(relative: str) -> None:
    _check_recorded_set(relative, "pmc-articleset")


@pytest.mark.parametrize("relative", shared_params("eutils-pubmed-medline", "*.txt"))
def test_recorded_medline_text_passes_the_text_check(relative: str) -> None:
    check_eutils_text(response_of(read_shared(relative)))


ERROR_FILES = {
    "epost2.xml": "Invalid db name specified: nothing",
    "epost3.xml": "Empty ID list; Nothing to store; Some IDs have invalid value",
    "esummary8.xml": "Neither query_key nor id specified",
    "eutilsjson-einfo.error.xml": "Can not retrieve DbInfo for db=fleegle",
    "eutilsjson-esearch.baderror.xml": "Invalid db name specified: fleegle",
    "eutilsjson-esummary.error.xml": "Invalid db name specified: fleegle",
}
NOT_ERRORS = {"esearch8.xml", "eutilsjson-esearch.error.xml", "eutilsjson-esummary.pmcerror.xml"}


@pytest.mark.parametrize("relative", shared_params("eutils-errors", "*.xml"))
def test_recorded_error_bodies_are_refused_and_the_rest_accepted(relative: str) -> None:
    body = read_shared(relative)
    name = relative.rsplit("/", 1)[-1]
    assert name in ERROR_FILES or name in NOT_ERRORS, f"new fixture {name}: classify it here"
    if name in ERROR_FILES:
        with pytest.raises(BadResponseError, match=re.escape(ERROR_FILES[name])):
            check_eutils_xml(response_of(body), expected_root=None)
    else:
        check_eutils_xml(response_of(body), expected_root=None)  # per-record <error> and ErrorList are data


ESEARCH_EXPECTED = {
    # file: (count, retstart, retmax, first id, has history)
    "biocommons-test_esearch.xml": (5, 0, 5, "1054894", True),
    "esearch1.xml": (63, 0, 20, "41282813", False),
    "esearch2.xml": (42249, 0, 100, "41297076", True),
    "esearch3.xml": (2651, 6, 6, "11121077", False),
    "esearch5.xml": (5, 0, 5, "6540636", False),
    "eutilsjson-esearch.pubmed.xml": (15169, 0, 100, "23175848", True),
}


@pytest.mark.parametrize("relative", shared_params("eutils-esearch", "*.xml"))
def test_recorded_esearch_results_parse(relative: str) -> None:
    body = read_shared(relative)
    check_eutils_xml(response_of(body, ESEARCH), expected_root="eSearchResult")
    result = parse_esearch(body)
    name = relative.rsplit("/", 1)[-1]
    assert name in ESEARCH_EXPECTED, f"new fixture {name}: add its expectations"
    count, retstart, retmax, first, history = ESEARCH_EXPECTED[name]
    assert (result.count, result.retstart, result.retmax) == (count, retstart, retmax)
    assert len(result.ids) == retmax
    assert result.ids[0] == first
    assert all(i.isdigit() for i in result.ids)
    assert (result.webenv is not None, result.query_key is not None) == (history, history)
    assert result.query_translation
    assert result.errors == ()


def test_recorded_phrase_not_found_is_data_not_an_error() -> None:
    body = read_shared("eutils-errors/esearch8.xml")
    check_eutils_xml(response_of(body, ESEARCH), expected_root="eSearchResult")
    result = parse_esearch(body)
    assert result.count == 0
    assert result.ids == ()
    assert result.errors == ("PhraseNotFound: abcXYZ",)
    assert result.warnings == ("OutputMessage: No items found.",)
    assert result.query_translation == "(abcXYZ[All Fields])"


def test_recorded_partial_phrase_not_found_keeps_the_results() -> None:
    result = parse_esearch(read_shared("eutils-errors/eutilsjson-esearch.error.xml"))
    assert result.count == 5163
    assert len(result.ids) == 20
    assert result.errors == ("PhraseNotFound: fleegle[MeSH Terms]",)


def test_recorded_esearch_error_is_an_error_and_does_not_parse_as_zero_hits() -> None:
    body = read_shared("eutils-errors/eutilsjson-esearch.baderror.xml")
    with pytest.raises(BadResponseError, match="Invalid db name specified: fleegle"):
        check_eutils_xml(response_of(body, ESEARCH), expected_root="eSearchResult")
    with pytest.raises(ParseError):
        parse_esearch(body)  # never a silent "0 hits" (cyanheads/pubmed-mcp-server#95)


# ------------------------------------------------------------------------------------------- esearch


def test_esearch_sends_its_parameters_and_parses(rsps: responses.RequestsMock) -> None:
    rsps.get(ESEARCH, body=local_fixture("esearch_usehistory.xml"))
    client, _ = make_client()
    result = client.esearch(
        "exosome",
        retmax=500,
        retstart=0,
        usehistory=True,
        datetype="mdat",
        mindate="2022/03/01",
        maxdate="2022/03/31",
        sort="pub_date",
    )
    params = sent_params(rsps.calls[0])
    assert params["db"] == "pubmed"
    assert params["term"] == "exosome"
    assert (params["retstart"], params["retmax"], params["usehistory"]) == ("0", "500", "y")
    assert (params["datetype"], params["mindate"], params["maxdate"]) == ("mdat", "2022/03/01", "2022/03/31")
    assert params["sort"] == "pub_date"
    assert result == EsearchResult(
        count=2,
        ids=("35350566", "9997"),
        retstart=0,
        retmax=2,
        webenv="MCID_0000000000000000000000aa",
        query_key="1",
        query_translation="exosome[All Fields] AND 2022/03/01:2022/03/31[mdat]",
        warnings=('QuotedPhraseNotFound: "tumour stem cel"', "OutputMessage: Quoted phrase not found."),
        errors=(),
    )


def test_esearch_posts_a_long_term(rsps: responses.RequestsMock) -> None:
    rsps.post(ESEARCH, body=local_fixture("esearch_usehistory.xml"))
    client, _ = make_client()
    term = " OR ".join(f"gene{i}[tiab]" for i in range(40))
    assert len(term) > 300
    client.esearch(term)
    assert rsps.calls[0].request.method == "POST"
    assert sent_params(rsps.calls[0])["term"] == term


def test_esearch_error_in_200_is_retried(rsps: responses.RequestsMock) -> None:
    rsps.get(ESEARCH, body=local_fixture("esearch_error_in_200.xml"))
    rsps.get(ESEARCH, body=local_fixture("esearch_usehistory.xml"))
    client, _ = make_client()
    assert client.esearch("exosome").count == 2
    assert len(rsps.calls) == 2


def test_esearch_raises_fetch_failed_when_attempts_run_out(rsps: responses.RequestsMock) -> None:
    rsps.get(ESEARCH, body=local_fixture("esearch_error_in_200.xml"))
    client, waits = make_client()
    with pytest.raises(FetchFailedError, match="Search Backend failed") as caught:
        client.esearch("exosome")
    assert len(rsps.calls) == 3
    assert len(waits) == 2
    assert caught.value.ids == ()
    assert isinstance(caught.value.__cause__, BadResponseError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retmax": 10_001},
        {"retmax": -1},
        {"retstart": -1},
        {"retstart": 9999},
        {"mindate": "2020/01/01"},
        {"maxdate": "2020/01/01"},
    ],
)
def test_esearch_refuses_requests_pubmed_cannot_answer(
    rsps: responses.RequestsMock, kwargs: dict[str, int | str]
) -> None:
    client, _ = make_client()
    with pytest.raises(UsageError):
        client.esearch("exosome", **kwargs)  # type: ignore[arg-type]
    assert len(rsps.calls) == 0


def test_efetch_for_pmc_expects_a_pmc_articleset(rsps: responses.RequestsMock) -> None:
    rsps.get(EFETCH, body=PUBMED_OK)  # the wrong document for db=pmc
    rsps.get(EFETCH, body=local_fixture("efetch_pmc_articleset.xml"))
    client, _ = make_client()
    (batch,) = list(client.efetch("pmc", ["8958025"]))
    assert isinstance(batch, EfetchBatch)
    assert b"pmc-articleset" in batch.response.body
    assert len(rsps.calls) == 2

"""harvester.sources.idconv: the pure parser against recorded answers, and the client's batching and
failures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from harvester.core.errors import FetchFailedError, ParseError, RejectedRequestError
from harvester.core.settings import HttpSettings, Secret, Settings
from harvester.sources.eutils import EutilsClient
from harvester.sources.http import RateLimiter, RetryPolicy
from harvester.sources.idconv import NOT_RETURNED, IdConverterClient, IdRecord, parse_idconv
from tests.helpers_fixtures import local_fixture, read_shared, shared_params

SECRET = "SECRET-KEY-123"
IDCONV = "https://idconv.example.org/tools/idconv/api/v1/articles/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        fake = FakeClock()
        super().__init__(3.0, clock=fake.clock, sleep=fake.sleep)
        self.acquired = 0

    def acquire(self) -> None:
        self.acquired += 1
        super().acquire()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_settings() -> Settings:
    return Settings(
        database_url="sqlite:///unused.sqlite",
        email="dev@example.org",
        ncbi_api_key=Secret(SECRET),
        eutils_url="https://eutils.example.org/entrez/eutils/",
        idconv_url=IDCONV,
        ncbi_requests_per_second=10.0,
        http=HttpSettings(max_attempts=3, backoff_initial=1.0, backoff_max=10.0),
    )


def make_client(
    batch_size: int = 200, limiter: RateLimiter | None = None
) -> tuple[IdConverterClient, list[float]]:
    waits: list[float] = []
    settings = make_settings()
    client = IdConverterClient.from_settings(
        settings,
        requests.Session(),
        limiter=limiter or CountingLimiter(),
        policy=RetryPolicy(settings.http, sleep=waits.append),
    )
    client.batch_size = batch_size
    return client, waits


def query_of(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}


def v1_answer(ids: list[str], idtype: str, omit: frozenset[str] = frozenset()) -> bytes:
    """An answer in the v1 shape (requested-id on every record) mapping PMID n <-> PMC(n+1)."""
    records = []
    for requested in ids:
        if requested in omit:
            continue
        number = int(requested.removeprefix("PMC"))
        pmid, pmcid = (number, number + 1) if idtype == "pmid" else (number - 1, number)
        records.append(
            {"requested-id": requested, "pmid": pmid, "pmcid": f"PMC{pmcid}", "doi": f"10.1000/X{pmid}"}
        )
    return json.dumps({"status": "ok", "responseDate": "2026-11-20 10:00:00", "records": records}).encode()


Callback = Callable[[requests.PreparedRequest], tuple[int, Mapping[str, str], bytes]]


def answer_by_echo(omit: frozenset[str] = frozenset()) -> Callback:
    def callback(request: requests.PreparedRequest) -> tuple[int, Mapping[str, str], bytes]:
        query = query_of(request)
        return 200, {}, v1_answer(query["ids"].split(","), query["idtype"], omit)

    return callback


# ------------------------------------------------------------------------------ parser: recorded answers

GOOD = IdRecord  # for readability in the table below
SHARED_EXPECTED: dict[str, list[IdRecord]] = {
    "klortho-one-good-one-bad-pmid.json": [
        GOOD("26829486", "26829486", "PMC4734780", "10.1371/journal.pntd.0004413", None),
        GOOD("7777", None, None, None, "invalid article id"),
    ],
    "klortho-one-pmcid.json": [GOOD("PMC3539452", "22368089", "PMC3539452", "10.1093/cercor/bhs015", None)],
    "klortho-pmid-26829486.json": [
        GOOD("26829486", "26829486", "PMC4734780", "10.1371/journal.pntd.0004413", None)
    ],
    "klortho-set0.json": [
        GOOD("22368089", "22368089", "PMC3539452", "10.1093/cercor/bhs015", None),
        GOOD("26829486", "26829486", "PMC4734780", "10.1371/journal.pntd.0004413", None),
        GOOD("1", None, None, None, "invalid article id"),
    ],
    "klortho-three-versions.json": [
        # No idtype in the request: the requested DOI is found among the record's ids.
        GOOD("10.1007/s10162-007-0081-z", "17401604", "PMC1868567", "10.1007/s10162-007-0081-z", None)
    ],
    "klortho-two-good-pmids.json": [
        GOOD("22368089", "22368089", "PMC3539452", "10.1093/cercor/bhs015", None),
        GOOD("26829486", "26829486", "PMC4734780", "10.1371/journal.pntd.0004413", None),
    ],
    "rcrossref-id_converter.json": [GOOD("10.1038/ng.590", "20495566", "PMC2883744", "10.1038/ng.590", None)],
}
SHARED_REJECTED = {
    # top-level status "error", URL-encoded message (the second was served with HTTP 404)
    "klortho-bad-response2.json": "ID type of '26uio' is unknown",
    "rcrossref-id_converter_fails_type_param_bad.json": "ID type 'doi' mismatch for '28371833'",
}


def _strip_committer_comment(body: bytes) -> bytes:
    """klortho-bad-response2.json starts with a // line its committer added; the service sends none."""
    return b"\n".join(line for line in body.splitlines() if not line.lstrip().startswith(b"//"))


@pytest.mark.parametrize("relative", shared_params("idconv", "*.json"))
def test_every_recorded_answer_parses_as_expected(relative: str) -> None:
    name = relative.rsplit("/", 1)[-1]
    assert name in SHARED_EXPECTED or name in SHARED_REJECTED, f"new fixture {name}: add expectations"
    body = read_shared(relative)
    if body.lstrip().startswith(b"//"):
        with pytest.raises(ParseError):  # as stored it is not JSON, and the parser does not pretend
            parse_idconv(body)
        body = _strip_committer_comment(body)
    if name in SHARED_REJECTED:
        with pytest.raises(RejectedRequestError) as caught:
            parse_idconv(body)
        assert SHARED_REJECTED[name] in str(caught.value)
        assert "%20" not in str(caught.value)
        assert caught.value.source == "idconv"
    else:
        assert parse_idconv(body) == SHARED_EXPECTED[name]


# ------------------------------------------------------------------------------- parser: hand-written


def test_v1_answer_with_requested_id_and_a_numeric_pmid() -> None:
    assert parse_idconv(local_fixture("idconv_pmcid_PMC8958025.json")) == [
        IdRecord("PMC8958025", "35350566", "PMC8958025", "10.3389/fonc.2022.836548", None)
    ]


def test_unknown_doi_is_a_record_with_an_error() -> None:
    assert parse_idconv(local_fixture("idconv_unknown_doi.json")) == [
        IdRecord("10.1234/not-in-pmc.5678", None, None, None, "Identifier not found in PMC")
    ]


def test_dois_come_back_lower_case() -> None:
    body = json.dumps(
        {"status": "ok", "records": [{"requested-id": "1", "pmid": "1", "doi": "10.1056/NEJMp1401111"}]}
    ).encode()
    assert parse_idconv(body)[0].doi == "10.1056/nejmp1401111"


def test_without_requested_id_the_request_echo_names_the_requested_id() -> None:
    record = {"pmid": "17401604", "pmcid": "PMC1868567", "doi": "10.1007/S10162-007-0081-Z"}
    for echo in ({"ids": ["10.1007/S10162-007-0081-Z"]}, "ids=10.1007%2FS10162-007-0081-Z;format=json"):
        body = json.dumps({"status": "ok", "request": echo, "records": [record]}).encode()
        (parsed,) = parse_idconv(body)
        assert parsed.requested == "10.1007/S10162-007-0081-Z"
        assert parsed.doi == "10.1007/s10162-007-0081-z"


def test_url_encoded_errmsg_is_decoded() -> None:
    body = (
        b'{"status":"ok","records":[{"requested-id":"x","status":"error","errmsg":"invalid%20article%20id"}]}'
    )
    assert parse_idconv(body)[0].error == "invalid article id"


@pytest.mark.parametrize(
    "body",
    [
        local_fixture("idconv_truncated.json"),
        local_fixture("efetch_html_error_page.html"),
        b"",
        b"[]",
        b'{"records": []}',
        b'{"status": "maybe", "records": []}',
        b'{"status": "ok"}',
        b'{"status": "ok", "records": ["PMC1"]}',
        b'{"status": "ok", "records": [{"status": "error"}]}',
    ],
    ids=[
        "truncated",
        "html",
        "empty",
        "list",
        "no-status",
        "odd-status",
        "no-records",
        "bad-record",
        "no-ids",
    ],
)
def test_not_the_converters_json_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_idconv(body)


# ----------------------------------------------------------------------------------------------- client


def test_request_parameters(rsps: responses.RequestsMock) -> None:
    rsps.get(IDCONV, body=local_fixture("idconv_pmcid_PMC8958025.json"))
    client, _ = make_client()
    records = client.convert(["PMC8958025"], "pmcid")
    assert records == [IdRecord("PMC8958025", "35350566", "PMC8958025", "10.3389/fonc.2022.836548", None)]
    query = query_of(rsps.calls[0].request)
    assert query == {
        "ids": "PMC8958025",
        "idtype": "pmcid",
        "format": "json",
        "versions": "no",
        "tool": "pubmed-harvester",
        "email": "dev@example.org",
    }
    assert SECRET not in (rsps.calls[0].request.url or "")  # the API key is for E-utilities only


def test_450_ids_go_in_batches_of_at_most_200_with_one_idtype(rsps: responses.RequestsMock) -> None:
    rsps.add_callback(responses.GET, IDCONV, callback=answer_by_echo())
    client, _ = make_client(batch_size=200)
    ids = [str(30_000_000 + i) for i in range(450)]
    records = client.convert(ids, "pmid")
    sizes = [len(query_of(c.request)["ids"].split(",")) for c in rsps.calls]
    assert sizes == [200, 200, 50]
    assert {query_of(c.request)["idtype"] for c in rsps.calls} == {"pmid"}
    assert [r.requested for r in records] == ids
    assert records[0] == IdRecord(ids[0], ids[0], f"PMC{int(ids[0]) + 1}", f"10.1000/x{ids[0]}", None)


def test_ids_the_service_omits_come_back_as_not_returned(rsps: responses.RequestsMock) -> None:
    rsps.add_callback(responses.GET, IDCONV, callback=answer_by_echo(omit=frozenset({"2"})))
    client, _ = make_client()
    records = client.convert(["1", "2", "3"], "pmid")
    assert [r.error for r in records] == [None, NOT_RETURNED, None]
    assert records[1] == IdRecord("2", None, None, None, NOT_RETURNED)


def test_the_callers_spelling_is_kept_and_duplicates_each_get_a_record(rsps: responses.RequestsMock) -> None:
    rsps.add_callback(responses.GET, IDCONV, callback=answer_by_echo())
    client, _ = make_client()
    records = client.convert(["pmc8958025", "PMC8958025", "PMC8958025.2"], "pmcid")
    assert query_of(rsps.calls[0].request)["ids"] == "PMC8958025"  # normalised, sent once
    assert [r.requested for r in records] == ["pmc8958025", "PMC8958025", "PMC8958025.2"]
    assert {r.pmid for r in records} == {"8958024"}


def test_malformed_ids_are_not_sent(rsps: responses.RequestsMock) -> None:
    rsps.add_callback(responses.GET, IDCONV, callback=answer_by_echo())
    client, _ = make_client()
    records = client.convert(["26uio", "12", "0"], "pmid")
    assert query_of(rsps.calls[0].request)["ids"] == "12"
    assert records[0].requested == "26uio" and records[0].error and "PMID" in records[0].error
    assert records[1].pmid == "12"
    assert records[2].error is not None


def test_a_doi_with_a_comma_is_not_sent(rsps: responses.RequestsMock) -> None:
    client, _ = make_client()
    (record,) = client.convert(["10.1000/a,b"], "doi")
    assert record.error is not None and "comma" in record.error
    assert len(rsps.calls) == 0


def test_long_dois_are_packed_so_urls_stay_short(rsps: responses.RequestsMock) -> None:
    rsps.get(IDCONV, body=b'{"status":"ok","records":[]}')
    client, _ = make_client()
    dois = [f"10.1000/a-rather-long-suffix-for-a-doi-{i:04d}" for i in range(200)]
    records = client.convert(dois, "doi")
    assert len(rsps.calls) > 1
    assert all(len(c.request.url or "") <= 4000 for c in rsps.calls)
    assert sum(len(query_of(c.request)["ids"].split(",")) for c in rsps.calls) == 200
    assert all(r.error == NOT_RETURNED for r in records)


def test_404_with_an_error_body_is_rejected_with_the_decoded_message(rsps: responses.RequestsMock) -> None:
    body = json.dumps(
        {"status": "error", "message": "ID%20type%20%27doi%27%20mismatch%20for%20%2728371833%27"}
    ).encode()
    rsps.get(IDCONV, body=body, status=404, content_type="application/json; charset=ISO-8859-1")
    client, waits = make_client()
    with pytest.raises(RejectedRequestError, match="ID type 'doi' mismatch for '28371833'"):
        client.convert(["10.1000/x"], "doi")
    assert len(rsps.calls) == 1
    assert waits == []


def test_status_error_inside_a_200_is_rejected_not_retried(rsps: responses.RequestsMock) -> None:
    rsps.get(IDCONV, body=b'{"status":"error","message":"ID%20type%20of%20%2726uio%27%20is%20unknown"}')
    client, _ = make_client()
    with pytest.raises(RejectedRequestError, match="ID type of '26uio' is unknown"):
        client.convert(["26"], "pmid")
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("status", "bad"),
    [
        (200, "efetch_html_error_page.html"),
        (200, "idconv_truncated.json"),
        (503, "efetch_html_error_page.html"),
    ],
)
def test_transient_failures_are_retried(rsps: responses.RequestsMock, status: int, bad: str) -> None:
    rsps.get(IDCONV, body=local_fixture(bad), status=status)
    rsps.get(IDCONV, body=local_fixture("idconv_pmcid_PMC8958025.json"))
    client, waits = make_client()
    (record,) = client.convert(["PMC8958025"], "pmcid")
    assert record.pmid == "35350566"
    assert len(rsps.calls) == 2
    assert len(waits) == 1


def test_a_failed_batch_names_its_ids(rsps: responses.RequestsMock) -> None:
    def callback(request: requests.PreparedRequest) -> tuple[int, Mapping[str, str], bytes]:
        ids = query_of(request)["ids"].split(",")
        return (503, {}, b"") if "3" in ids else (200, {}, v1_answer(ids, "pmid"))

    rsps.add_callback(responses.GET, IDCONV, callback=callback)
    client, _ = make_client(batch_size=2)
    items = list(client.iter_convert(["1", "2", "3", "4", "5"], "pmid"))
    assert [type(i).__name__ for i in items] == ["list", "FetchFailedError", "list"]
    failure = items[1]
    assert isinstance(failure, FetchFailedError)
    assert failure.ids == ("3", "4")
    assert failure.source == "idconv"
    with pytest.raises(FetchFailedError) as caught:
        client.convert(["1", "2", "3", "4", "5"], "pmid")
    assert caught.value.ids == ("3", "4")


def test_batch_size_above_the_services_limit_is_refused() -> None:
    client, _ = make_client()
    with pytest.raises(ValueError):
        IdConverterClient(client.service, batch_size=201)


def test_eutils_and_idconv_share_the_one_ncbi_limiter(rsps: responses.RequestsMock) -> None:
    rsps.get(IDCONV, body=local_fixture("idconv_pmcid_PMC8958025.json"))
    rsps.get(
        "https://eutils.example.org/entrez/eutils/efetch.fcgi",
        body=local_fixture("efetch_pubmed_two_articles.xml"),
    )
    limiter = CountingLimiter()
    settings = make_settings()
    session = requests.Session()
    idconv = IdConverterClient.from_settings(settings, session, limiter=limiter)
    eutils = EutilsClient.from_settings(settings, session, limiter=limiter)
    idconv.convert(["PMC8958025"], "pmcid")
    list(eutils.efetch("pubmed", ["35350566"]))
    assert limiter.acquired == 2

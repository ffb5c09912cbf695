"""harvester.sources.http and harvester.core.logsetup: pacing, retries, classification, redaction.

No network and no real waiting: HTTP is faked with responses, clocks and sleeps are injected.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
import responses
from hypothesis import given, settings, strategies as st

from harvester.core.errors import (
    BadResponseError,
    FetchFailedError,
    RateLimitedError,
    RejectedRequestError,
    ServiceUnavailableError,
    TransientUpstreamError,
    UnreachableError,
    UpstreamError,
)
from harvester.core.logsetup import RedactingFilter, console_level, setup_logging
from harvester.core.settings import HttpSettings
from harvester.sources.http import (
    UNREACHABLE_ATTEMPTS,
    UNREACHABLE_WAIT,
    WINDOW_MARGIN,
    RateLimiter,
    Response,
    RetryPolicy,
    ServiceClient,
    SharedSends,
    describe_body,
    parse_retry_after,
    public_url,
    redact,
    shared_sends,
)
from tests.helpers_fixtures import local_fixture

SECRET = "SECRET-KEY-123"
BASE = "https://eutils.example.org/entrez/eutils/"
URL = BASE + "efetch.fcgi"


class FakeClock:
    """A shared virtual clock: ``sleep`` advances it. Remembers, per thread, the last time it read."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self._last_read: dict[int, float] = {}

    def clock(self) -> float:
        with self._lock:
            self._last_read[threading.get_ident()] = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def last_read(self) -> float:
        with self._lock:
            return self._last_read[threading.get_ident()]


def assert_rate_respected(times: list[float], rate: float) -> None:
    """No sliding one-second window holds more than ceil(rate) sends; sends are >= 1/rate apart."""
    ordered = sorted(times)
    cap = -(-rate // 1)
    for i, start in enumerate(ordered):
        in_window = [t for t in ordered[i:] if t < start + 1.0 + WINDOW_MARGIN - 1e-6]
        assert len(in_window) <= cap, (start, in_window)
    for earlier, later in itertools.pairwise(ordered):
        assert later - earlier >= 1.0 / rate - 1e-6


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def waits() -> list[float]:
    return []


def make_client(
    *,
    waits: list[float],
    max_attempts: int = 4,
    backoff_max: float = 60.0,
    max_response_bytes: int = 200_000_000,
    transient_4xx: object = None,
) -> ServiceClient:
    clock = FakeClock()
    policy = RetryPolicy(
        HttpSettings(max_attempts=max_attempts, backoff_initial=1.0, backoff_max=backoff_max),
        sleep=waits.append,
    )
    return ServiceClient(
        requests.Session(),
        name="eutils",
        base_url=BASE,
        limiter=RateLimiter(3, clock=clock.clock, sleep=clock.sleep),
        policy=policy,
        timeout=5.0,
        default_params={"tool": "pubmed-harvester", "email": "dev@example.org", "api_key": SECRET},
        secret_params=("api_key",),
        headers={"User-Agent": "pubmed-harvester/test"},
        secrets=(SECRET,),
        max_response_bytes=max_response_bytes,
        transient_4xx=transient_4xx,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------ redaction


def test_redact_replaces_every_occurrence_raw_and_url_encoded() -> None:
    secret = "a+b/c key"
    text = f"{secret} and {secret} and a%2Bb%2Fc%20key and a%2Bb%2Fc+key"
    assert redact(text, [secret]) == "*** and *** and *** and ***"
    assert redact("nothing to hide", ["", "absent"]) == "nothing to hide"


def test_public_url_drops_secret_params_from_url_and_params() -> None:
    url = public_url(f"{URL}?api_key={SECRET}&db=pubmed", {"id": "1,2", "API_KEY": SECRET}, {"api_key"})
    assert SECRET not in url
    assert url == f"{URL}?db=pubmed&id=1,2"


def test_describe_body_reads_json_messages_error_elements_and_html_titles() -> None:
    assert describe_body(local_fixture("eutils_429_rate_limit_exceeded.json")) == "API rate limit exceeded"
    assert describe_body(b'{"status":"error","message":"ID%20type%20%27doi%27%20mismatch"}') == (
        "ID type 'doi' mismatch"
    )
    assert "Failed to connect to PubOne" in describe_body(
        local_fixture("efetch_400_relayed_backend_failure.xml")
    )
    assert describe_body(local_fixture("efetch_html_error_page.html")) == "NCBI - WWW Error 500 Diagnostic"


def test_parse_retry_after_seconds_date_and_garbage() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


# ----------------------------------------------------------------------------------------- rate limiter


@pytest.mark.parametrize("rate", [3.0, 10.0, 2.5, 0.5])
def test_rate_limiter_never_lets_a_one_second_window_hold_more_than_ceil_rate(rate: float) -> None:
    fake = FakeClock()
    limiter = RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
    times = []
    for _ in range(40):
        limiter.acquire()
        times.append(fake.last_read())
    assert_rate_respected(times, rate)
    # The limiter does not over-throttle: 40 sends take about 40/rate seconds, not much more.
    assert times[-1] - times[0] <= 39 / rate + 40 * WINDOW_MARGIN


def test_rate_limiter_first_acquisition_does_not_wait() -> None:
    fake = FakeClock()
    RateLimiter(3, clock=fake.clock, sleep=fake.sleep).acquire()
    assert fake.sleeps == []


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=12.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=40),
)
def test_rate_limiter_window_rule_holds_whatever_the_idle_gaps(rate: float, gaps: list[float]) -> None:
    fake = FakeClock()
    limiter = RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
    times = []
    for gap in gaps:
        fake.now += gap  # the caller was busy elsewhere for a while
        limiter.acquire()
        times.append(fake.last_read())
    assert_rate_respected(times, rate)


def test_rate_limiter_is_shared_between_threads() -> None:
    fake = FakeClock()
    limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep)
    recorded: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def worker() -> None:
        start.wait()
        for _ in range(6):
            limiter.acquire()
            at = fake.last_read()  # the time the limiter saw when it let this thread through
            with lock:
                recorded.append(at)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(recorded) == 30
    assert len(set(recorded)) == 30
    assert_rate_respected(recorded, 3.0)
    # Five threads at 3/s in total, not 3/s each: 30 sends span at least 29/3 virtual seconds.
    assert max(recorded) - min(recorded) >= 29 / 3 - 1e-6


def test_rate_limiter_refuses_nonsense_rates() -> None:
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            RateLimiter(rate)


# ------------------------------------------------------------------------------------- service client


def test_get_carries_default_params_and_response_url_has_no_secret(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, body=b"<PubmedArticleSet/>", status=200)
    client = make_client(waits=waits)
    response = client.request("GET", "efetch.fcgi", params={"db": "pubmed", "id": "1,2"})
    sent = rsps.calls[0].request
    sent_url = sent.url or ""
    assert "tool=pubmed-harvester" in sent_url
    assert "email=dev%40example.org" in sent_url
    assert f"api_key={SECRET}" in sent_url
    assert sent.headers["User-Agent"] == "pubmed-harvester/test"
    assert response.status == 200
    assert response.body == b"<PubmedArticleSet/>"
    assert SECRET not in response.url
    assert response.url.startswith(URL + "?")
    assert "id=1,2" in response.url
    assert response.fetched_at.tzinfo is not None
    assert response.headers["content-type"] == response.headers["Content-Type"]


def test_post_puts_default_params_in_the_form_body(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.post(URL, body=b"ok", status=200)
    make_client(waits=waits).request("POST", "efetch.fcgi", data={"db": "pubmed", "id": "1"})
    sent = rsps.calls[0].request
    body = sent.body if isinstance(sent.body, str) else (sent.body or b"").decode()
    assert "tool=pubmed-harvester" in body
    assert f"api_key={SECRET}" in body
    assert "db=pubmed" in body
    assert "api_key" not in (sent.url or "")
    assert "tool" not in (sent.url or "")


def test_429_without_retry_after_backs_off_then_succeeds(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, body=local_fixture("eutils_429_rate_limit_exceeded.json"), status=429)
    rsps.get(URL, body=b"fine", status=200)
    response = make_client(waits=waits).request("GET", "efetch.fcgi")
    assert response.body == b"fine"
    assert len(rsps.calls) == 2
    assert len(waits) == 1
    assert 1.0 <= waits[0] <= 1.25  # backoff_initial plus at most 25 % jitter


def test_429_with_retry_after_waits_what_the_service_asked(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "7"})
    rsps.get(URL, body=b"fine", status=200)
    assert make_client(waits=waits).request("GET", "efetch.fcgi").body == b"fine"
    assert waits == [7.0]


def test_retry_after_is_capped_at_backoff_max(rsps: responses.RequestsMock, waits: list[float]) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    rsps.get(URL, status=429, headers={"Retry-After": later})
    rsps.get(URL, body=b"fine", status=200)
    make_client(waits=waits, backoff_max=30.0).request("GET", "efetch.fcgi")
    assert waits == [30.0]


def test_rate_limited_error_carries_retry_after(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "3"})
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=1).request("GET", "efetch.fcgi")
    cause = caught.value.__cause__
    assert isinstance(cause, RateLimitedError)
    assert cause.retry_after == 3.0
    assert str(cause).startswith("eutils: HTTP 429")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(rsps: responses.RequestsMock, waits: list[float], status: int) -> None:
    rsps.get(URL, body=local_fixture("efetch_html_error_page.html"), status=status)
    rsps.get(URL, body=b"fine", status=200)
    assert make_client(waits=waits).request("GET", "efetch.fcgi").body == b"fine"
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError(f"Max retries exceeded with url: /efetch.fcgi?api_key={SECRET}&db=pubmed"),
        requests.ReadTimeout(f"Read timed out. (url=/efetch.fcgi?api_key={SECRET})"),
        requests.exceptions.ChunkedEncodingError(f"Connection broken: IncompleteRead, url ?api_key={SECRET}"),
    ],
    ids=["connection-error", "read-timeout", "chunked-encoding"],
)
def test_connection_failures_then_success(
    rsps: responses.RequestsMock, waits: list[float], error: Exception
) -> None:
    rsps.get(URL, body=error)
    rsps.get(URL, body=b"fine", status=200)
    assert make_client(waits=waits).request("GET", "efetch.fcgi").body == b"fine"
    assert len(rsps.calls) == 2


def test_4xx_is_not_retried_and_says_why(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.get(URL, body=local_fixture("efetch_400_empty_id_list.xml"), status=400)
    with pytest.raises(RejectedRequestError) as caught:
        make_client(waits=waits).request("GET", "efetch.fcgi", params={"id": "abc"})
    assert len(rsps.calls) == 1
    assert waits == []
    message = str(caught.value)
    assert "HTTP 400" in message
    assert "ID list is empty" in message
    assert "\n" not in message
    assert caught.value.source == "eutils"
    assert caught.value.url is not None and SECRET not in caught.value.url


def test_a_4xx_marked_transient_is_retried(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.get(URL, body=local_fixture("efetch_400_relayed_backend_failure.xml"), status=400)
    rsps.get(URL, body=b"fine", status=200)

    def relayed(response: Response) -> bool:
        return b"PubOne" in response.body

    client = make_client(waits=waits, transient_4xx=relayed)
    assert client.request("GET", "efetch.fcgi").body == b"fine"


def test_max_attempts_is_respected_and_backoff_grows(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, status=503)
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=5, backoff_max=6.0).request("GET", "efetch.fcgi")
    assert len(rsps.calls) == 5
    assert len(waits) == 4
    assert 1.0 <= waits[0] <= 1.25
    assert 2.0 <= waits[1] <= 2.5
    assert 4.0 <= waits[2] <= 5.0
    assert waits[3] == 6.0  # capped at backoff_max
    assert isinstance(caught.value.__cause__, ServiceUnavailableError)
    assert "5 attempts" in str(caught.value)
    assert caught.value.ids == ()


def test_check_rejecting_a_200_is_retried(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.get(URL, body=b"<ERROR>busy</ERROR>", status=200)
    rsps.get(URL, body=b"<ok/>", status=200)

    def check(response: Response) -> None:
        if b"ERROR" in response.body:
            raise BadResponseError("eutils: error in 200", source="eutils", url=response.url)

    assert make_client(waits=waits).request("GET", "efetch.fcgi", check=check).body == b"<ok/>"
    assert len(rsps.calls) == 2


def test_oversize_body_declared_by_content_length_is_refused(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, body=b"x" * 500, status=200)
    with pytest.raises(UpstreamError) as caught:
        make_client(waits=waits, max_response_bytes=100).request("GET", "efetch.fcgi")
    assert not isinstance(caught.value, TransientUpstreamError | FetchFailedError)
    assert "refused" in str(caught.value)
    assert len(rsps.calls) == 1


def test_oversize_streamed_body_without_content_length_is_refused(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, body=b"x" * 500, status=200, auto_calculate_content_length=False)
    with pytest.raises(UpstreamError, match="larger than 100 bytes"):
        make_client(waits=waits, max_response_bytes=100).request("GET", "efetch.fcgi")
    assert len(rsps.calls) == 1


def test_redirects_are_not_followed(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.get(URL, status=301, headers={"Location": "https://elsewhere.example.org/x"})
    with pytest.raises(RejectedRequestError, match="redirect"):
        make_client(waits=waits).request("GET", "efetch.fcgi")
    assert len(rsps.calls) == 1


def test_secrets_never_reach_messages_tracebacks_or_logs(
    rsps: responses.RequestsMock, waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    leaky = requests.ConnectionError(
        f"HTTPSConnectionPool(host='eutils.example.org', port=443): Max retries exceeded with url: "
        f"/entrez/eutils/efetch.fcgi?db=pubmed&id=1&api_key={SECRET} (Caused by NewConnectionError)"
    )
    rsps.get(URL, body=leaky)
    rsps.get(URL, status=429, body=f'{{"error":"slow down {SECRET}"}}')
    rsps.get(URL, status=500, body=f"<html><title>oops {SECRET}</title></html>")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=3).request("GET", "efetch.fcgi", params={"db": "pubmed"})
    error = caught.value
    texts = [
        str(error),
        repr(error),
        error.url or "",
        "".join(traceback.format_exception(error)),
        caplog.text,
    ]
    pending: list[BaseException] = [error]
    while pending:  # every exception reachable by __cause__ or __context__, shown or not
        current = pending.pop()
        texts += [str(current), repr(current), getattr(current, "url", None) or ""]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    for text in texts:
        assert SECRET not in text
    retries = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "harvester.sources.http"
    ]
    assert len(retries) == 2
    first, second = (r.getMessage() for r in retries)
    assert first.startswith("eutils: eutils.example.org: connection failed;")
    assert "https://" not in first
    assert "attempt 1 of 3 failed" in first
    assert second.startswith("eutils: eutils.example.org: HTTP 429")
    assert "attempt 2 of 3 failed" in second
    assert len(second) < 200  # one short line: host and reason, not the URL
    assert [getattr(r, "attempt", None) for r in retries] == [1, 2]
    assert {getattr(r, "source", None) for r in retries} == {"eutils"}


def _connection_error(cause: BaseException) -> requests.ConnectionError:
    """What requests raises when the socket failed with ``cause`` (wrapped as urllib3 wraps it)."""
    inner = OSError(f"Failed to establish a new connection: {cause}")
    inner.__cause__ = cause
    error = requests.ConnectionError(inner)
    error.__context__ = inner
    return error


UNRESOLVED = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
REFUSED = ConnectionRefusedError(111, "Connection refused")


@pytest.mark.parametrize(
    ("cause", "reason"),
    [(UNRESOLVED, "name does not resolve"), (REFUSED, "connection refused")],
    ids=["name-does-not-resolve", "refused-before-any-answer"],
)
def test_a_host_that_cannot_be_reached_is_retried_briefly(
    rsps: responses.RequestsMock,
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
    cause: BaseException,
    reason: str,
) -> None:
    rsps.get(URL, body=_connection_error(cause))
    caplog.set_level(logging.INFO, logger="harvester.sources.http")
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=6).request("GET", "efetch.fcgi", params={"id": "1"})
    assert len(rsps.calls) == UNREACHABLE_ATTEMPTS == 2
    assert waits == [UNREACHABLE_WAIT]
    assert isinstance(caught.value.__cause__, UnreachableError)
    assert str(caught.value) == f"eutils: cannot reach eutils.example.org: {reason} (2 attempts)"
    assert (caught.value.host, caught.value.reason) == ("eutils.example.org", reason)
    retries = [
        r for r in caplog.records if r.name == "harvester.sources.http" and "attempt" in r.getMessage()
    ]
    # At INFO, not WARNING: the final error says it all, once.
    assert [(r.levelno, r.getMessage()) for r in retries] == [
        (logging.INFO, f"eutils: eutils.example.org: {reason}; attempt 1 of 2 failed, retrying in 1.0 s")
    ]


def test_a_refused_connection_after_an_answer_gets_the_full_policy(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    """A service that answered once and then refuses is restarting: that heals, so it is not cut short."""
    rsps.get(URL, body=b"fine", status=200)
    for _ in range(3):
        rsps.get(URL, body=_connection_error(ConnectionRefusedError(111, "Connection refused")))
    rsps.get(URL, body=b"again", status=200)
    client = make_client(waits=waits, max_attempts=6)
    assert client.request("GET", "efetch.fcgi").body == b"fine"
    assert client.request("GET", "efetch.fcgi").body == b"again"
    assert len(rsps.calls) == 5
    assert len(waits) == 3


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_connection_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")), "name resolution failed"),
        (_connection_error(ConnectionResetError(104, "reset by peer")), "connection reset"),
        (requests.ReadTimeout("Read timed out. (url=/efetch.fcgi)"), "timed out"),
    ],
    ids=["temporary-dns-failure", "reset", "timeout"],
)
def test_failures_that_heal_keep_the_full_policy(
    rsps: responses.RequestsMock, waits: list[float], error: Exception, reason: str
) -> None:
    rsps.get(URL, body=error)
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=4).request("GET", "efetch.fcgi")
    assert len(rsps.calls) == 4
    assert not isinstance(caught.value.__cause__, UnreachableError)
    expected = f"eutils: gave up after 4 attempts: eutils: eutils.example.org: {reason}"
    assert str(caught.value).startswith(expected)


def test_a_503_retry_warning_is_one_short_line_without_the_url(
    rsps: responses.RequestsMock, waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    rsps.get(URL, body=local_fixture("efetch_html_error_page.html"), status=503)
    rsps.get(URL, body=b"fine", status=200)
    caplog.set_level(logging.WARNING, logger="harvester.sources.http")
    long_ids = ",".join(str(n) for n in range(10_000_000, 10_000_100))
    make_client(waits=waits, max_attempts=6).request("GET", "efetch.fcgi", params={"id": long_ids})
    (warning,) = (r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.startswith("eutils: eutils.example.org: HTTP 503")
    assert warning.endswith("attempt 1 of 6 failed, retrying in " + warning.rsplit(" in ", 1)[1])
    assert "10000001" not in warning and "efetch.fcgi" not in warning
    assert "\n" not in warning and len(warning) < 300


def _every_linked_exception(error: BaseException) -> list[BaseException]:
    found, pending = [], [error]
    while pending:  # everything reachable by __cause__ or __context__, shown in tracebacks or not
        current = pending.pop()
        found.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


def test_the_last_connection_error_leaves_no_secret_anywhere_in_the_chain(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.get(URL, body=requests.ConnectionError(f"Max retries exceeded with url: /x?api_key={SECRET}"))
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=2).request("GET", "efetch.fcgi")
    chain = _every_linked_exception(caught.value)
    assert any(isinstance(e, ServiceUnavailableError) for e in chain)
    for linked in chain:
        assert SECRET not in str(linked)
        assert SECRET not in repr(linked.args)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_messages_raised_by_a_check_are_scrubbed(
    rsps: responses.RequestsMock, waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    echoed = f"<html><title>Bad request /efetch.fcgi?api_key={SECRET}</title></html>".encode()
    rsps.get(URL, body=echoed)

    def check(response: Response) -> None:
        raise BadResponseError(f"eutils: HTML page: {describe_body(response.body)}", source="eutils")

    caplog.set_level(logging.WARNING)
    with pytest.raises(FetchFailedError) as caught:
        make_client(waits=waits, max_attempts=2).request("GET", "efetch.fcgi", check=check)
    assert SECRET not in str(caught.value)
    assert SECRET not in str(caught.value.__cause__)
    assert "api_key=***" in str(caught.value)
    assert SECRET not in caplog.text


# ------------------------------------------------------------------------------------------ retry policy


def test_retry_policy_does_not_retry_other_errors() -> None:
    calls: list[int] = []
    waits: list[float] = []
    policy = RetryPolicy(HttpSettings(max_attempts=5), sleep=waits.append)

    def rejected() -> None:
        calls.append(1)
        raise RejectedRequestError("eutils: HTTP 400", source="eutils")

    with pytest.raises(RejectedRequestError):
        policy.call(rejected)
    assert calls == [1]
    assert waits == []


def test_retry_policy_reraises_the_last_transient_error() -> None:
    calls: list[int] = []
    policy = RetryPolicy(HttpSettings(max_attempts=3), sleep=lambda _: None)

    def flaky() -> str:
        calls.append(1)
        raise ServiceUnavailableError(f"eutils: attempt {len(calls)}", source="eutils")

    with pytest.raises(ServiceUnavailableError, match="attempt 3"):
        policy.call(flaky)
    assert len(calls) == 3


def test_retry_policy_returns_the_value() -> None:
    outcomes: Iterator[ServiceUnavailableError | str] = iter(
        [ServiceUnavailableError("x: down", source="x"), "done"]
    )

    def sometimes() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert RetryPolicy(HttpSettings(), sleep=lambda _: None).call(sometimes) == "done"


# ---------------------------------------------------------------------------------------------- logsetup


@pytest.fixture
def clean_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)


def test_console_levels() -> None:
    assert console_level(-1) == logging.ERROR
    assert console_level(-3) == logging.ERROR
    assert console_level(0) == logging.WARNING
    assert console_level(1) == logging.INFO
    assert console_level(2) == logging.DEBUG
    assert console_level(5) == logging.DEBUG


def test_setup_logging_twice_does_not_duplicate_handlers(
    clean_root_logger: logging.Logger, tmp_path: Path
) -> None:
    before = list(clean_root_logger.handlers)
    setup_logging(verbosity=0, log_file=tmp_path / "a.log", secrets=[SECRET])
    setup_logging(verbosity=1, log_file=tmp_path / "b.log", secrets=[SECRET])
    ours = [h for h in clean_root_logger.handlers if h not in before]
    assert len(ours) == 2
    assert sorted(type(h).__name__ for h in ours) == ["FileHandler", "StreamHandler"]
    assert [h.level for h in ours] == [logging.INFO, logging.INFO]
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in ours)
    assert clean_root_logger.level == logging.INFO
    setup_logging(verbosity=2, log_file=None, secrets=[])
    ours = [h for h in clean_root_logger.handlers if h not in before]
    assert [h.level for h in ours] == [logging.DEBUG]


def test_file_log_is_redacted_timestamped_and_at_info(
    clean_root_logger: logging.Logger, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "harvest.log"
    setup_logging(verbosity=-1, log_file=log_file, secrets=[SECRET])
    log = logging.getLogger("harvester.test")
    log.info("GET %s", f"https://x/?api_key={SECRET}")
    log.debug("not written at INFO")
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("failed with key %s", SECRET)
    for handler in clean_root_logger.handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert SECRET not in text
    assert "api_key=***" in text
    assert "not written" not in text
    assert "boom ***" in text  # the traceback is kept, redacted
    assert text[:4].isdigit()  # starts with a timestamp


def test_console_handler_writes_to_stderr_and_redacts(
    clean_root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(verbosity=0, log_file=None, secrets=[SECRET])
    logging.getLogger("urllib3.connectionpool").warning("GET /efetch.fcgi?api_key=%s", SECRET)
    logging.getLogger("harvester").info("hidden at the default level")
    captured = capsys.readouterr()
    assert "api_key=***" in captured.err
    assert SECRET not in captured.err
    assert "hidden" not in captured.err
    assert captured.out == ""


def test_redacting_filter_survives_a_bad_format_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d %d", (SECRET,), None)
    assert RedactingFilter([SECRET]).filter(record)
    assert SECRET not in record.getMessage()


# ---- pacing shared by processes (SharedSends) -------------------------------------------------------


def test_limiters_sharing_a_file_keep_the_rate_together(tmp_path: Path) -> None:
    """Two limiters (two processes) on one send log: together they keep 3/s; each alone would not."""
    fake = FakeClock()
    log = SharedSends(tmp_path / "ncbi.sends")
    first, second = (RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=log) for _ in range(2))
    times: list[float] = []
    for limiter in [first, second] * 6:
        limiter.acquire()
        times.append(fake.now)
    assert_rate_respected(times, 3)
    assert times[-1] - times[0] >= 11 / 3 - 1e-6
    kept = [float(line) for line in (tmp_path / "ncbi.sends").read_text().split()]
    assert kept == sorted(kept) and kept[-1] == pytest.approx(times[-1], abs=1e-6)

    # The same two limiters without the file each pace only themselves: together too fast.
    fake_alone = FakeClock()
    alone = [RateLimiter(3, clock=fake_alone.clock, sleep=fake_alone.sleep) for _ in range(2)]
    both: list[float] = []
    for limiter in alone * 6:
        limiter.acquire()
        both.append(fake_alone.now)
    with pytest.raises(AssertionError):
        assert_rate_respected(both, 3)


def test_a_shared_limiter_queues_behind_slots_another_process_reserved(tmp_path: Path) -> None:
    fake = FakeClock()
    path = tmp_path / "ncbi.sends"
    path.write_text(f"{fake.now:.6f}\n{fake.now + 0.2:.6f}\n")  # another process: now and reserved
    RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=SharedSends(path)).acquire()
    assert fake.sleeps == [pytest.approx(0.2 + 1 / 3)]


def test_a_long_queue_of_processes_keeps_every_reserved_slot(tmp_path: Path) -> None:
    """Eight processes waiting reserve slots up to 2.7 s ahead: none is taken for a stepped clock."""
    fake = FakeClock()
    log = SharedSends(tmp_path / "ncbi.sends")
    start = fake.now
    reserved: list[float] = []
    for _ in range(8):  # each reserves, and (as a real process would) sleeps later, not now
        with log.locked() as sent:
            limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep)
            slot = fake.now + max(0.0, limiter._wait_needed(fake.now, sent))
            sent.append(slot)
            reserved.append(slot)
    RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=log).acquire()
    assert fake.now - start >= reserved[-1] - start + 1 / 3 - 1e-6
    assert_rate_respected([*reserved, fake.now], 3)


def test_a_shared_file_with_junk_or_times_from_a_stepped_clock_is_read_safely(tmp_path: Path) -> None:
    fake = FakeClock()
    path = tmp_path / "ncbi.sends"
    path.write_text(f"garbage\nnan\n{fake.now + 3600:.6f}\n\n")  # torn, foreign, an hour ahead
    limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=SharedSends(path))
    limiter.acquire()
    assert fake.sleeps == []
    assert path.read_text() == f"{fake.now:.6f}\n"


def test_an_unusable_rate_dir_falls_back_to_pacing_one_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="harvester.sources.http"):
        assert shared_sends(blocked, "ncbi", "https://eutils.example.org/|anonymous") is None
    assert "paces only its own" in caplog.text
    assert shared_sends(None, "ncbi", "x") is None


def test_a_send_log_that_goes_away_mid_run_falls_back_without_losing_the_pace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeClock()
    directory = tmp_path / "rate"
    log = shared_sends(directory, "ncbi", "https://eutils.example.org/|anonymous")
    assert log is not None and log.path.parent == directory
    limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=log)
    limiter.acquire()
    first = fake.now
    log.path.unlink()
    directory.rmdir()
    with caplog.at_level(logging.WARNING, logger="harvester.sources.http"):
        limiter.acquire()
    assert "paces only its own from now on" in caplog.text
    assert fake.now - first == pytest.approx(1 / 3)  # still paced after the send it made through the file


def test_the_send_logs_hold_neither_key_nor_token(tmp_path: Path) -> None:
    """build_services names the files by base URL and whether a key is used, never by the key."""
    from harvester.core.settings import load_settings
    from harvester.jobs.services import build_services

    key, token = "FAKE-SECRET-KEY-0123456789", "FAKE-PLUS-TOKEN-9876543210"
    env = {
        "NCBI_API_KEY": key,
        "CROSSREF_PLUS_TOKEN": token,
        "HARVEST_RATE_DIR": str(tmp_path),
        "HARVEST_EUTILS_URL": BASE,
        "HARVEST_CROSSREF_URL": "https://crossref.example.org/",
    }
    services = build_services(load_settings(env=env, database_url="sqlite://"))
    with responses.RequestsMock() as mock:
        mock.get(URL, body=b"<eSearchResult/>")
        mock.get("https://crossref.example.org/works", json={"status": "ok"})
        services.eutils.service.request("GET", "efetch.fcgi", params={"db": "pubmed", "id": "1"})
        services.crossref.service.request("GET", "works", params={"filter": "doi:10.1/x"})
    files = sorted(tmp_path.glob("*.sends"))
    assert [f.name.split("-")[0] for f in files] == ["crossref", "icite", "ncbi"]
    for f in files:
        assert key not in f.name and token not in f.name
        assert all(float(line) > 0 for line in f.read_text().split())  # times, and nothing else
        assert f.stat().st_mode & 0o777 == 0o600
    slots = sorted(tmp_path.glob("*.slot*"))  # Crossref's requests in flight: one lock file a slot
    assert slots and {f.name.rsplit(".", 1)[1] for f in slots} <= {"slot0", "slot1", "slot2"}
    assert {f.name.split("-")[0] for f in slots} == {"crossref"}
    for f in slots:
        assert key not in f.name and token not in f.name and f.read_bytes() == b""
    assert sorted(tmp_path.iterdir()) == sorted([*files, *slots])

"""The request budget shared through the database (db/budget.py) and the pacing it plugs into.

Reservations are checked under an injected clock, or as the reserved slots themselves (times on the
database server's clock), never by judging wall time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import responses
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.budget import BudgetSends, SharedBudget, key_hash
from db.engine import open_database
from harvester.core.settings import load_settings
from harvester.jobs.services import build_services, shared_budget
from harvester.sources.http import RateLimiter, SharedSends, SlotFiles
from tests.db_helpers import fresh_database_url
from tests.test_http import FakeClock, assert_rate_respected

KEY = "FAKE-SECRET-KEY-0123456789abcdef0123"
TOKEN = "FAKE-PLUS-TOKEN-9876543210"
EUTILS = "https://eutils.example.org/entrez/eutils/"
CROSSREF = "https://crossref.example.org/"
REFUSED = "postgresql+psycopg://postgres:S3CRET-PW@127.0.0.1:1/test"  # nothing listens on port 1: refused


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A migrated PostgreSQL schema of its own (skipped when this run leaves PostgreSQL out)."""
    with fresh_database_url("postgresql", tmp_path) as url:
        open_database(url).dispose()
        yield url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = open_database(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


def budget_rows(engine: Engine) -> list[tuple[str, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT service, key_hash, sends FROM request_budgets")).all()
        salts = conn.execute(sa.text("SELECT CAST(id AS TEXT), salt FROM request_budget_salt")).all()
    return [tuple(r) for r in [*rows, *salts]]


class Recording:
    """A send log that remembers every slot reserved through it (times in the log's own clock)."""

    def __init__(self, inner: BudgetSends) -> None:
        self.inner = inner
        self.reserved: list[float] = []
        self.where = inner.where

    def now(self) -> float | None:
        return self.inner.now()

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        with self.inner.locked() as sent:
            before = len(sent)
            yield sent
            self.reserved.extend(sent[before:])


# ---- reservations -----------------------------------------------------------------------------------


def test_processes_on_separate_connections_keep_one_rate_under_an_injected_clock(pg_url: str) -> None:
    """Three "processes" (a budget, an engine and a limiter each) take turns: 3/s together, not each."""
    fake = FakeClock()
    budgets = [SharedBudget(pg_url, clock=fake.clock) for _ in range(3)]
    try:
        limiters = [
            RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=b.sends("ncbi", EUTILS, KEY))
            for b in budgets
        ]
        times: list[float] = []
        for limiter in limiters * 8:
            limiter.acquire()
            times.append(fake.now)
        assert_rate_respected(times, 3)
        assert times[-1] - times[0] >= 23 / 3 - 1e-6  # 24 sends: 23 gaps of a third of a second at least
    finally:
        for b in budgets:
            b.close()

    # The same three limiters, each with a budget row of its own (another key): each paces only itself.
    fake_apart = FakeClock()
    own = [SharedBudget(pg_url, clock=fake_apart.clock) for _ in range(3)]
    apart = [
        RateLimiter(3, clock=fake_apart.clock, sleep=fake_apart.sleep, shared=b.sends("ncbi", EUTILS, str(n)))
        for n, b in enumerate(own)
    ]
    sends: list[float] = []
    for limiter in apart * 4:
        limiter.acquire()
        sends.append(fake_apart.now)
    for b in own:
        b.close()
    with pytest.raises(AssertionError):
        assert_rate_respected(sends, 3)


def test_concurrent_processes_reserve_distinct_slots_under_the_row_lock(pg_url: str) -> None:
    """Threads, each its own engine, reserve at once; the server's clock times the slots. They sleep
    nothing, so they queue up slots ahead: the row lock alone keeps those slots 3 a window."""
    budgets = [SharedBudget(pg_url) for _ in range(4)]
    logs = [Recording(b.sends("ncbi", EUTILS, KEY)) for b in budgets]
    start = threading.Barrier(len(logs))
    failures: list[BaseException] = []

    def run(log: Recording) -> None:
        limiter = RateLimiter(3, sleep=lambda _seconds: None, shared=log)
        start.wait()
        try:
            for _ in range(6):
                limiter.acquire()
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for b in budgets:
        b.close()
    assert failures == []
    reserved = [t for log in logs for t in log.reserved]
    assert len(reserved) == 24
    assert_rate_respected(reserved, 3)  # would fail at once if two readers saw the same row


# ---- what the table holds ---------------------------------------------------------------------------


def test_the_budget_rows_hold_neither_key_nor_token(pg_url: str, pg_engine: Engine, tmp_path: Path) -> None:
    env = {
        "NCBI_API_KEY": KEY,
        "CROSSREF_PLUS_TOKEN": TOKEN,
        "HARVEST_EMAIL": "tests@example.org",
        "HARVEST_RATE_DIR": str(tmp_path / "rate"),
        "HARVEST_EUTILS_URL": EUTILS,
        "HARVEST_CROSSREF_URL": CROSSREF,
    }
    services = build_services(load_settings(env=env, database_url=pg_url))
    try:
        assert services.budget is not None
        with responses.RequestsMock() as mock:
            mock.get(EUTILS + "efetch.fcgi", body=b"<eSearchResult/>")
            mock.get(CROSSREF + "works", json={"status": "ok"})
            services.eutils.service.request("GET", "efetch.fcgi", params={"db": "pubmed", "id": "1"})
            services.crossref.service.request("GET", "works", params={"filter": "doi:10.1/x"})
            sent_urls = [call.request.url or "" for call in mock.calls]
    finally:
        services.close()
    assert any(KEY in url for url in sent_urls)  # the key did go to NCBI
    rows = budget_rows(pg_engine)
    by_service = {row[0]: row for row in rows if row[0] in {"ncbi", "crossref"}}
    assert set(by_service) == {"ncbi", "crossref"}
    salt_hex = next(row[1] for row in rows if row[0] == "1")
    for row in rows:
        for value in row:
            assert KEY not in value and TOKEN not in value and "api_key" not in value
            assert KEY.lower() not in value.lower()
    plain = {hashlib.sha256(s.encode()).hexdigest() for s in (KEY, TOKEN, EUTILS + KEY)}
    assert by_service["ncbi"][1] not in plain
    # The row is found by the salted, stretched hash of address and key, with this database's salt.
    assert by_service["ncbi"][1] == key_hash(bytes.fromhex(salt_hex), "ncbi", EUTILS, KEY)
    assert by_service["ncbi"][1] != key_hash(bytes(32), "ncbi", EUTILS, KEY)
    assert [float(t) > 0 for t in by_service["ncbi"][2].split()] == [True]  # one send time, nothing else


def test_with_sqlite_there_is_no_budget_and_the_per_user_file_paces(tmp_path: Path) -> None:
    env = {"HARVEST_RATE_DIR": str(tmp_path / "rate"), "HARVEST_EUTILS_URL": EUTILS}
    settings = load_settings(env=env, database_url=f"sqlite:///{tmp_path / 'h.sqlite'}")
    assert shared_budget(settings) is None
    services = build_services(settings)
    assert services.budget is None
    with responses.RequestsMock() as mock:
        mock.get(EUTILS + "efetch.fcgi", body=b"<eSearchResult/>")
        services.eutils.service.request("GET", "efetch.fcgi", params={"db": "pubmed", "id": "1"})
    (sends,) = (tmp_path / "rate").glob("ncbi-*.sends")
    assert len(sends.read_text().split()) == 1
    assert not (tmp_path / "h.sqlite").exists()  # nothing was asked of the database


# ---- falling back -----------------------------------------------------------------------------------


def test_an_unreachable_budget_warns_once_and_the_process_paces_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeClock()
    budget = SharedBudget(REFUSED, clock=fake.clock, retry_after=5.0)
    attempts: list[float] = []
    original = budget.engine.connect

    def counting_connect() -> sa.Connection:
        attempts.append(fake.now)
        return original()

    budget.engine.connect = counting_connect  # type: ignore[method-assign]
    files = [SharedSends(tmp_path / f"{name}.sends") for name in ("ncbi", "crossref")]
    ncbi = RateLimiter(
        3, clock=fake.clock, sleep=fake.sleep, shared=[files[0], budget.sends("ncbi", EUTILS, KEY)]
    )
    crossref = RateLimiter(
        10, clock=fake.clock, sleep=fake.sleep, shared=[files[1], budget.sends("crossref", CROSSREF, None)]
    )
    times: list[float] = []
    with caplog.at_level(logging.DEBUG, logger="db.budget"):
        for _ in range(30):
            ncbi.acquire()
            times.append(fake.now)
            crossref.acquire()
    budget.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "cannot use the request budget" in message and "paces its requests alone" in message
    assert "\n" not in message
    assert warnings[0].exc_info is None  # one line, no traceback
    assert "S3CRET-PW" not in caplog.text and KEY not in caplog.text
    assert_rate_respected(times, 3)  # still paced, by its own limiter and the file
    assert times[-1] - times[0] >= 29 / 3 - 1e-6
    assert len((tmp_path / "ncbi.sends").read_text().split()) == 16  # the file took every send (16 kept)
    # Each of the two logs tried again every 5 s of the run (about 10 s long), not on every send.
    assert 4 <= len(attempts) <= 2 * (2 + (times[-1] - times[0]) / 5)


def test_a_budget_that_comes_back_is_used_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A schema without the budget tables fails like a lost server; once migrated, the budget is used
    again after the retry delay, and the warning is not repeated."""
    with fresh_database_url("postgresql", tmp_path) as url:
        fake = FakeClock()
        budget = SharedBudget(url, clock=fake.clock, retry_after=5.0)
        limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=budget.sends("ncbi", EUTILS, KEY))
        with caplog.at_level(logging.INFO, logger="db.budget"):
            limiter.acquire()  # no table yet: warned, paced alone
            open_database(url).dispose()  # the schema arrives
            limiter.acquire()  # within 5 s: still alone, not asked
            engine = open_database(url)
            assert budget_rows(engine) == []
            fake.sleep(5.0)
            limiter.acquire()  # tried again: shared again
            limiter.acquire()
            rows = [r for r in budget_rows(engine) if r[0] == "ncbi"]
            engine.dispose()
        budget.close()
    assert len(rows) == 1 and len(rows[0][2].split()) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert any("reached again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


# ---- requests in flight -----------------------------------------------------------------------------


class InFlight:
    """Counts how many senders are inside their request at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.done = 0
        self._lock = threading.Lock()

    def send(self, limiter: RateLimiter, hold: threading.Event) -> None:
        with limiter.sending():
            with self._lock:
                self.now += 1
                self.most = max(self.most, self.now)
            hold.wait(0.05)  # the request being out; long enough for the others to pile up
            with self._lock:
                self.now -= 1
                self.done += 1


def run_senders(limiters: list[RateLimiter], per_sender: int) -> InFlight:
    counter = InFlight()
    hold = threading.Event()

    def run(limiter: RateLimiter) -> None:
        for _ in range(per_sender):
            counter.send(limiter, hold)

    threads = [threading.Thread(target=run, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return counter


def unpaced(**kwargs: object) -> RateLimiter:
    """A limiter whose rate never makes anyone wait (the in-flight count is what is tested)."""
    return RateLimiter(1000.0, sleep=lambda _seconds: None, **kwargs)  # type: ignore[arg-type]


def test_one_process_keeps_at_most_three_requests_in_flight() -> None:
    limiter = unpaced(concurrency=3)
    counter = run_senders([limiter] * 8, 4)
    assert counter.done == 32 and counter.now == 0
    assert counter.most <= 3
    # The same senders without a bound: more than three at once.
    assert run_senders([unpaced()] * 8, 4).most > 3


def test_processes_of_one_user_share_three_slots_through_files(tmp_path: Path) -> None:
    limiters = [unpaced(concurrency=3, shared_slots=SlotFiles(tmp_path / "crossref-x", 3)) for _ in range(8)]
    counter = run_senders(limiters, 4)
    assert counter.done == 32 and counter.most <= 3


def test_processes_on_every_host_share_three_slots_through_the_database(pg_url: str) -> None:
    budgets = [SharedBudget(pg_url) for _ in range(6)]
    try:
        limiters = [
            unpaced(concurrency=3, shared_slots=b.slots("crossref", CROSSREF + "|polite", None, 3))
            for b in budgets
        ]
        counter = run_senders(limiters, 3)
    finally:
        for b in budgets:
            b.close()
    assert counter.done == 18 and counter.most <= 3


def test_unreachable_database_slots_fall_back_to_the_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = SharedBudget(REFUSED)
    slots = [SlotFiles(tmp_path / "crossref-x", 3), budget.slots("crossref", CROSSREF, None, 3)]
    limiters = [unpaced(concurrency=3, shared_slots=slots) for _ in range(6)]
    with caplog.at_level(logging.WARNING):
        counter = run_senders(limiters, 3)
    budget.close()
    assert counter.done == 18 and counter.most <= 3
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# ---- Crossref's pools, as wired by build_services ----------------------------------------------------


@pytest.mark.parametrize(
    ("email", "rate", "in_flight"),
    [("tests@example.org", 10.0, 3), (None, 5.0, 1)],
    ids=["polite pool", "public pool"],
)
def test_crossref_is_paced_at_its_pools_rate_and_honours_its_rate_headers(
    tmp_path: Path, email: str | None, rate: float, in_flight: int
) -> None:
    env = {"HARVEST_RATE_DIR": str(tmp_path / "rate"), "HARVEST_CROSSREF_URL": CROSSREF}
    if email is not None:
        env["HARVEST_EMAIL"] = email
    services = build_services(load_settings(env=env, database_url=f"sqlite:///{tmp_path / 'h.sqlite'}"))
    limiter = services.crossref.service._limiter
    assert (limiter.rate, limiter.ceiling, limiter.concurrency) == (rate, rate, in_flight)
    headers = {"x-rate-limit-limit": "2", "x-rate-limit-interval": "1s"}
    with responses.RequestsMock() as mock:
        mock.get(CROSSREF + "works", json={"status": "ok"}, headers=headers)
        services.crossref.service.request("GET", "works", params={"filter": "doi:10.1/x"})
    assert limiter.rate == 2.0  # slowed to what the answer advertised


def test_a_budget_row_locked_too_long_is_a_timeout_and_the_process_paces_alone(
    pg_url: str, pg_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the row (a hung process): after the lock timeout this one goes on alone."""
    monkeypatch.setattr("db.budget.LOCK_TIMEOUT", 0.2)
    fake = FakeClock()
    budget = SharedBudget(pg_url, clock=fake.clock)
    limiter = RateLimiter(3, clock=fake.clock, sleep=fake.sleep, shared=budget.sends("ncbi", EUTILS, KEY))
    limiter.acquire()  # the row exists now
    with pg_engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT * FROM request_budgets FOR UPDATE"))
        with caplog.at_level(logging.WARNING, logger="db.budget"):
            limiter.acquire()
            limiter.acquire()
    budget.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "lock" in warnings[0].lower() and "paces its requests alone" in warnings[0]
    assert fake.now - 1000.0 == pytest.approx(2 / 3)  # three sends, a third of a second apart, throughout

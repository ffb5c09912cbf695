"""The request budget that every harvest process on every host shares through one PostgreSQL database.

NCBI counts the requests of one API key together (and of one address without a key), whichever machine
sends them; the per-user pacing file (:class:`harvester.sources.http.SharedSends`) only holds on one
machine. So with a PostgreSQL database each process also reserves its send slots in the table
``request_budgets``: one row per service and key hash, read and rewritten under a row lock (``SELECT ...
FOR UPDATE``) in a short transaction of its own, on a connection of its own, that never lasts across a
request. The times in the row are the database server's clock, so the hosts' clocks need not agree.

Requests in flight (Crossref's "at most 3 at a time") are counted with session advisory locks, one per
slot, each held on a connection of its own for as long as its request is out: PostgreSQL releases it the
moment that connection or its process dies.

The key is never stored: the row is found by a PBKDF2-HMAC-SHA256 hash of the service's address and key,
salted with the database's own random salt (``request_budget_salt``, made on first use).

When the database cannot be reached, or does not answer in time, the process paces itself alone (its own
limiter, and the per-user file) and says so in one warning line, once; it tries the budget again after
:data:`RETRY_AFTER` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from db.engine import connect, storage_error
from harvester.sources.http import SHARED_SENDS_KEPT, SLOT_POLL, SendLogUnavailableError

log = logging.getLogger(__name__)

RETRY_AFTER = 30.0  # seconds a process paces alone after the budget failed, before it tries again
LOCK_TIMEOUT = 5.0  # seconds to wait for a budget row's lock (others hold it for milliseconds)
STATEMENT_TIMEOUT = "10s"  # no statement of the budget's runs longer (bound: SET takes no parameters)
CONNECT_TIMEOUT = 3  # seconds to reach the server: a send waits this long at most before pacing alone
KEY_HASH_ITERATIONS = 100_000  # PBKDF2 rounds: a guessable key costs a guesser this much per guess
_SALT_ID = 1
_SLOT_LOCK_SPACE = "pubmed-harvester in-flight slot"

_SELECT_ROW = sa.text(
    "SELECT sends FROM request_budgets WHERE service = :service AND key_hash = :key_hash FOR UPDATE"
)
# Read once the row is locked: a time taken while waiting for the lock would be early.
_SERVER_NOW = sa.text("SELECT extract(epoch FROM clock_timestamp())::float8")
_INSERT_ROW = sa.text(
    "INSERT INTO request_budgets (service, key_hash, sends, updated_at)"
    " VALUES (:service, :key_hash, '', now()) ON CONFLICT (service, key_hash) DO NOTHING"
)
_UPDATE_ROW = sa.text(
    "UPDATE request_budgets SET sends = :sends, updated_at = now()"
    " WHERE service = :service AND key_hash = :key_hash"
)


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (the only kind that holds a shared budget)."""
    try:
        return make_url(url).get_backend_name() == "postgresql"
    except sa.exc.ArgumentError:
        return False


def key_hash(salt: bytes, service: str, address: str, key: str | None) -> str:
    """The hex hash a budget row is found by: PBKDF2-HMAC-SHA256 of service, address and key (or none)."""
    identity = "\x1f".join((service, address, "key" if key else "no key", key or ""))
    return hashlib.pbkdf2_hmac("sha256", identity.encode("utf-8"), salt, KEY_HASH_ITERATIONS).hex()


class SharedBudget:
    """One process's way to the budget tables: an engine of its own, the salt, and the one warning.

    Nothing is asked of the database until the first request is paced. ``clock``, when given, replaces
    the server's clock (tests); ``sleep`` is what a wait for an in-flight slot sleeps with.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
        if "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
        self.engine: Engine = connect(parsed.render_as_string(hide_password=False), busy_timeout=LOCK_TIMEOUT)
        sa.event.listen(self.engine, "connect", _bound_statements)
        self.clock = clock
        self.sleep = sleep
        self.retry_after = retry_after
        self.where = f"the request budget in {shown}"
        self._salt: bytes | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._down = False

    def close(self) -> None:
        self.engine.dispose()

    def salt(self, conn: Connection) -> bytes:
        """The database's salt for key hashes, made (once, by whichever process comes first) if missing."""
        if self._salt is None:
            conn.execute(
                sa.text(
                    "INSERT INTO request_budget_salt (id, salt) VALUES (:id, :salt) ON CONFLICT DO NOTHING"
                ),
                {"id": _SALT_ID, "salt": os.urandom(32).hex()},
            )
            stored = conn.execute(
                sa.text("SELECT salt FROM request_budget_salt WHERE id = :id"), {"id": _SALT_ID}
            ).scalar_one()
            self._salt = bytes.fromhex(stored)
        return self._salt

    def unavailable(self, exc: BaseException) -> SendLogUnavailableError:
        """The error a log or slot set raises when the database failed; the first one warns, once."""
        # storage_error's one line, "<action> <url>: <reason>", has the password taken out of the reason.
        reason = f"cannot use {self.where}: {str(storage_error(exc, '-', self.engine)).split(': ', 1)[-1]}"
        with self._lock:
            first, self._warned, self._down = not self._warned, True, True
        if first:
            log.warning(
                "%s; this process paces its requests alone (with this user's other harvest processes on this"
                " machine) and tries the budget again every %g s",
                reason,
                self.retry_after,
            )
        else:
            log.debug("%s", reason)
        return SendLogUnavailableError(reason, retry_after=self.retry_after)

    def reached(self) -> None:
        """Note a success; after a failure, say (at INFO) that the budget is shared again."""
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                log.info("%s is reached again: requests are paced with every host again", self.where)

    def sends(self, service: str, address: str, key: str | None = None) -> BudgetSends:
        """The shared send log of ``service`` at ``address`` with ``key`` (hashed, never stored)."""
        return BudgetSends(self, service, address, key)

    def slots(self, service: str, address: str, key: str | None, count: int) -> BudgetSlots:
        """``count`` in-flight slots for ``service`` at ``address`` with ``key``, shared by every host."""
        return BudgetSlots(self, service, address, key, count)


def _bound_statements(dbapi_connection: object, _record: object) -> None:
    # No statement of the budget runs for long: a hung server lets the send go on, paced alone.
    with dbapi_connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", (STATEMENT_TIMEOUT,))
    dbapi_connection.commit()  # type: ignore[attr-defined]


class _Keyed:
    def __init__(self, budget: SharedBudget, service: str, address: str, key: str | None) -> None:
        self.budget = budget
        self.service = service
        self._address = address
        self._key = key
        self._hash: str | None = None

    @property
    def where(self) -> str:
        return self.budget.where

    def hash(self, conn: Connection) -> str:
        if self._hash is None:
            self._hash = key_hash(self.budget.salt(conn), self.service, self._address, self._key)
            self._key = None  # not kept past its use
        return self._hash


class BudgetSends(_Keyed):
    """A :class:`harvester.sources.http.SendLog` in a ``request_budgets`` row."""

    _now: float | None = None

    def now(self) -> float | None:
        return self._now

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        """The row's send times under its row lock, in a transaction that commits what the caller leaves.

        Raises:
            SendLogUnavailableError: the database failed or did not answer in time (warned once).
        """
        try:
            with self.budget.engine.begin() as conn:
                params = {"service": self.service, "key_hash": self.hash(conn)}
                row = conn.execute(_SELECT_ROW, params).first()
                if row is None:
                    conn.execute(_INSERT_ROW, params)
                    row = conn.execute(_SELECT_ROW, params).one()
                times = sorted(_parse_times(row.sends))
                clock = self.budget.clock
                self._now = clock() if clock is not None else float(conn.execute(_SERVER_NOW).scalar_one())
                try:
                    yield times
                finally:
                    self._now = None
                kept = "\n".join(f"{t:.6f}" for t in times[-SHARED_SENDS_KEPT:])
                conn.execute(_UPDATE_ROW, {**params, "sends": kept})
        except SQLAlchemyError as exc:
            raise self.budget.unavailable(exc) from None
        self.budget.reached()


def _parse_times(text: str) -> Iterator[float]:
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            continue
        if math.isfinite(value):
            yield value


class BudgetSlots(_Keyed):
    """A :class:`harvester.sources.http.SendSlots`: session advisory locks, one per slot, shared by every
    host on the database; a slot's connection holds its lock for as long as its request is out."""

    def __init__(self, budget: SharedBudget, service: str, address: str, key: str | None, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        super().__init__(budget, service, address, key)
        self.count = count

    def lock_keys(self, conn: Connection) -> list[int]:
        """The advisory lock keys (bigint) of the slots: from the row's hash, so a schema has its own."""
        digest = self.hash(conn)
        return [
            int.from_bytes(
                hashlib.sha256(f"{_SLOT_LOCK_SPACE}|{digest}|{slot}".encode()).digest()[:8],
                "big",
                signed=True,
            )
            for slot in range(self.count)
        ]

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a free slot; when all are taken, look again every :data:`SLOT_POLL` seconds.

        Raises:
            SendLogUnavailableError: the database failed or did not answer in time (warned once).
        """
        try:
            conn = self.budget.engine.connect()
        except SQLAlchemyError as exc:
            raise self.budget.unavailable(exc) from None
        taken: int | None = None
        try:
            keys = self.lock_keys(conn)
            first = random.randrange(self.count)
            while taken is None:
                for offset in range(self.count):
                    candidate = keys[(first + offset) % self.count]
                    if conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": candidate}).scalar():
                        taken = candidate
                        break
                conn.commit()  # a session lock outlives the transaction; no transaction stays open
                if taken is None:
                    self.budget.sleep(SLOT_POLL)
        except SQLAlchemyError as exc:
            conn.invalidate()  # closes it: a lock it may hold goes with it
            conn.close()
            raise self.budget.unavailable(exc) from None
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        try:
            yield
        finally:
            self._release(conn, taken)

    def _release(self, conn: Connection, taken: int) -> None:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": taken})
            conn.commit()
        except SQLAlchemyError as exc:
            conn.invalidate()
            raise self.budget.unavailable(exc) from None
        finally:
            conn.close()
        self.budget.reached()


__all__ = [
    "CONNECT_TIMEOUT",
    "RETRY_AFTER",
    "BudgetSends",
    "BudgetSlots",
    "SharedBudget",
    "is_postgresql",
    "key_hash",
]

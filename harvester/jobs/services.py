"""The remote clients of one run, built from settings; NCBI's two services share one pacer.

Each service's limiter paces with this user's other harvest processes on this machine through the pacing
file ([http] rate_dir), and with a PostgreSQL database, with every harvest process on every host through
the request budget in that database (db/budget.py). Neither stores a key: the file is named by a hash of
the address and whether a key is used, the budget row by a salted hash of the address and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from db.budget import SharedBudget, is_postgresql
from enrich.crossref import CrossrefClient, pool_limits, pool_name
from enrich.icite import IciteClient
from harvester.core.settings import Settings
from harvester.sources.eutils import EutilsClient
from harvester.sources.http import (
    RateLimiter,
    RetryPolicy,
    SendLog,
    SendSlots,
    shared_sends,
    slot_files,
)
from harvester.sources.idconv import IdConverterClient


@dataclass(frozen=True, slots=True)
class Services:
    """The remote services one run talks to; NCBI's two services share one rate limiter."""

    eutils: EutilsClient
    idconv: IdConverterClient
    crossref: CrossrefClient
    icite: IciteClient | None = None  # None: iCite is not asked
    budget: SharedBudget | None = None  # the database's request budget, with a PostgreSQL database

    def close(self) -> None:
        """Let go of the budget's connections (a process that ends lets go of them anyway)."""
        if self.budget is not None:
            self.budget.close()


def shared_budget(settings: Settings) -> SharedBudget | None:
    """The request budget in the database, when it is PostgreSQL; None for SQLite (one machine)."""
    return SharedBudget(settings.database_url) if is_postgresql(settings.database_url) else None


class _Pacing:
    """Where one service's limiter records its sends: the per-user file first, then the budget."""

    def __init__(self, rate_dir: Path | None, budget: SharedBudget | None) -> None:
        self.rate_dir = rate_dir
        self.budget = budget

    def logs(self, service: str, file_identity: str, address: str, key: str | None) -> list[SendLog]:
        found: list[SendLog] = []
        sends = shared_sends(self.rate_dir, service, file_identity)
        if sends is not None:
            found.append(sends)
        if self.budget is not None:
            found.append(self.budget.sends(service, address, key))
        return found

    def slots(
        self, service: str, file_identity: str, address: str, key: str | None, count: int
    ) -> list[SendSlots]:
        found: list[SendSlots] = []
        files = slot_files(self.rate_dir, service, file_identity, count)
        if files is not None:
            found.append(files)
        if self.budget is not None:
            found.append(self.budget.slots(service, address, key, count))
        return found


def build_services(
    settings: Settings, session: requests.Session | None = None, *, budget: SharedBudget | None = None
) -> Services:
    """Build the clients for a run from settings, with one shared NCBI rate limiter and retry policy.

    ``budget``: the shared request budget to pace with (tests); by default the database's own when it is
    PostgreSQL, none for SQLite.
    """
    session = session or requests.Session()
    budget = budget if budget is not None else shared_budget(settings)
    pacing = _Pacing(settings.http.rate_dir, budget)
    # Keyed by base URL and whether a key is used (the file), or by a salted hash of both (the budget).
    ncbi_key = settings.ncbi_api_key.reveal() if settings.ncbi_api_key is not None else None
    ncbi_identity = f"{settings.eutils_url}|{'key' if ncbi_key else 'anonymous'}"
    ncbi_limiter = RateLimiter(
        settings.ncbi_requests_per_second,
        shared=pacing.logs("ncbi", ncbi_identity, settings.eutils_url, ncbi_key),
    )
    plus = settings.crossref_plus_token.reveal() if settings.crossref_plus_token is not None else None
    crossref_identity = f"{settings.crossref_url}|{'plus' if plus else 'public'}"
    crossref_address = f"{settings.crossref_url}|{pool_name(settings)}"
    crossref_rate, crossref_concurrency = pool_limits(settings)
    crossref_limiter = RateLimiter(
        crossref_rate,
        shared=pacing.logs("crossref", crossref_identity, crossref_address, plus),
        concurrency=crossref_concurrency,
        shared_slots=pacing.slots(
            "crossref", crossref_identity, crossref_address, plus, crossref_concurrency
        ),
    )
    icite_limiter = RateLimiter(
        settings.icite_requests_per_second,
        shared=pacing.logs("icite", settings.icite_url, settings.icite_url, None),
    )
    policy = RetryPolicy(settings.http)
    return Services(
        eutils=EutilsClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        idconv=IdConverterClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        crossref=CrossrefClient.from_settings(settings, session, limiter=crossref_limiter, policy=policy),
        icite=IciteClient.from_settings(settings, session, limiter=icite_limiter, policy=policy),
        budget=budget,
    )

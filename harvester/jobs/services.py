"""The remote clients of one run, built from settings; NCBI's two services share one pacer."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from enrich.crossref import DEFAULT_REQUESTS_PER_SECOND as CROSSREF_REQUESTS_PER_SECOND, CrossrefClient
from enrich.icite import IciteClient
from harvester.core.settings import Settings
from harvester.sources.eutils import EutilsClient
from harvester.sources.http import RateLimiter, RetryPolicy, shared_sends
from harvester.sources.idconv import IdConverterClient


@dataclass(frozen=True, slots=True)
class Services:
    """The remote services one run talks to; NCBI's two services share one rate limiter."""

    eutils: EutilsClient
    idconv: IdConverterClient
    crossref: CrossrefClient
    icite: IciteClient | None = None  # None: iCite is not asked


def build_services(settings: Settings, session: requests.Session | None = None) -> Services:
    """Build the clients for a run from settings, with one shared NCBI rate limiter and retry policy."""
    session = session or requests.Session()
    rate_dir = settings.http.rate_dir
    # Processes of one user share each service's pacing (harvester.sources.http.SharedSends): a cron run and a
    # `harvest pmid` meanwhile keep NCBI's rate together. Keyed by base URL and whether a key is used.
    ncbi_identity = f"{settings.eutils_url}|{'key' if settings.ncbi_api_key else 'anonymous'}"
    ncbi_limiter = RateLimiter(
        settings.ncbi_requests_per_second, shared=shared_sends(rate_dir, "ncbi", ncbi_identity)
    )
    crossref_identity = f"{settings.crossref_url}|{'plus' if settings.crossref_plus_token else 'public'}"
    crossref_limiter = RateLimiter(
        CROSSREF_REQUESTS_PER_SECOND, shared=shared_sends(rate_dir, "crossref", crossref_identity)
    )
    policy = RetryPolicy(settings.http)
    return Services(
        eutils=EutilsClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        idconv=IdConverterClient.from_settings(settings, session, limiter=ncbi_limiter, policy=policy),
        crossref=CrossrefClient.from_settings(settings, session, limiter=crossref_limiter, policy=policy),
        icite=IciteClient.from_settings(
            settings,
            session,
            limiter=RateLimiter(
                settings.icite_requests_per_second, shared=shared_sends(rate_dir, "icite", settings.icite_url)
            ),
            policy=policy,
        ),
    )

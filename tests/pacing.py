"""What the stand-in's request log may show from clients that pace themselves: counting, never timing.

A harvest process paces when it *sends* (harvester.sources.http.RateLimiter: at most ``ceil(rate)`` sends
in any sliding window of one second plus WINDOW_MARGIN); the stand-in logs a request when it gets round to
reading it, by its own clock. On a loaded machine a request sent in time can be logged late and land in
the next second's count beside the requests sent then, so a test that wants "at most 3 in any second" of
the log flakes (CI saw 4 once). But every sender waits for an answer before its next send, so at most one
request per sender is between its send and the stand-in's log at any moment: the log of any ``window``
seconds holds at most what the pacing allows in that window plus one request per sender, however slow the
machine. That bound is what the tests assert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from harvester.sources.http import WINDOW_MARGIN
from tests.standin import LoggedRequest, max_requests_in_any_window

CLIENT_WINDOW = 1.0 + WINDOW_MARGIN


def paced_bound(limit: int, *, window: float = 1.0, senders: int = 1) -> int:
    """The most requests the stand-in can log within any ``window`` seconds from ``senders`` sequential
    senders that share one pacing of ``limit`` requests per second."""
    chunks = math.ceil(window / CLIENT_WINDOW - 1e-9)  # a window is covered by this many client windows
    return limit * chunks + senders


def eutils_times(requests: Iterable[LoggedRequest]) -> list[float]:
    """Arrival times (the stand-in's clock) of the E-utilities requests, the ones NCBI's rate counts."""
    return [r.time for r in requests if "/entrez/eutils/" in r.path]


def assert_paced(times: Iterable[float], limit: int, *, window: float = 1.0, senders: int = 1) -> None:
    """No ``window`` of the log holds more than :func:`paced_bound` allows."""
    most = max_requests_in_any_window(list(times), window=window)
    bound = paced_bound(limit, window=window, senders=senders)
    assert most <= bound, (
        f"{most} requests within {window} s of the stand-in's log; pacing {limit}/s with {senders} "
        f"sender(s) allows at most {bound}"
    )

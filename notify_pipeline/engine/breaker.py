"""A circuit breaker for the Cloud API: after several outage answers in a row, stop sending and probe
with growing waits until the API answers healthily again. No attempt is used while it is open.

An outage answer is one that says the API (or the path to it) is down rather than that this
request is wrong: a connection failure or timeout, HTTP 500/502/503/504, or an answer that is not
Meta's JSON (a proxy's error page, an empty body). One such answer alone is an ordinary transient
error and retries with back-off; `threshold` of them in a row open the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.results import ApiError

TRANSPORT_KINDS = ("connection", "timeout_ambiguous")
OUTAGE_STATUSES = (500, 502, 503, 504)
# Answers without Meta's error body (`http`) or without a usable body at all (`bad_response`).
NOT_META_KINDS = ("http", "bad_response")


def is_outage(error: ApiError | None) -> bool:
    """Whether this answer counts toward the breaker."""
    if error is None:
        return False
    return (
        error.kind in TRANSPORT_KINDS or error.kind in NOT_META_KINDS or error.http_status in OUTAGE_STATUSES
    )


def spares_attempt(error: ApiError | None) -> bool:
    """Whether an outage answer that opened the breaker (or came while it was open) leaves its row's
    attempts untouched: the outage is the API's, not the row's. Transient errors only, and not those
    after which Meta may hold the message: a timeout after the request left (`timeout_ambiguous`)
    or a 200 without a message id (`bad_response`) keep their attempt, which bounds re-sends. (A
    `connection` failure never uses one.) Gateway 502/504 do spare it: they stay told apart by
    their status (label `http_502`, `http_504`)."""
    return (
        is_outage(error)
        and error is not None
        and error.error_class is ErrorClass.TRANSIENT
        and error.kind not in (*TRANSPORT_KINDS, "bad_response")
    )


class Breaker:
    def __init__(self, threshold: int, max_wait_s: float) -> None:
        self.threshold, self.max_wait_s = threshold, max_wait_s
        self.failures = 0
        self.closed = asyncio.Event()
        self.closed.set()
        self.opened_at: float | None = None
        self.openings = 0
        self.probes = 0  # probes since the breaker last opened

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def record(self, outage: bool) -> bool:
        """Count one answer; True when this outage answer opened the breaker."""
        if not outage:
            self.failures = 0
            return False
        self.failures += 1
        if self.failures >= self.threshold and not self.is_open:
            self.closed.clear()
            self.opened_at = time.monotonic()
            self.openings += 1
            self.probes = 0
            return True
        return False

    async def probe_until_closed(
        self, probe: Callable[[], Awaitable[bool]], stopped: Callable[[], bool]
    ) -> float:
        """Probe with waits of 1, 2, 4 ... up to max_wait_s seconds; close on the first healthy
        answer. Returns how long the breaker was open."""
        wait = min(1.0, self.max_wait_s)
        while self.is_open and not stopped():
            await asyncio.sleep(wait)
            if stopped():
                break
            self.probes += 1
            if await probe():
                break
            wait = min(wait * 2, self.max_wait_s)
        open_s = time.monotonic() - (self.opened_at or time.monotonic())
        self.failures, self.opened_at = 0, None
        self.closed.set()
        return open_s

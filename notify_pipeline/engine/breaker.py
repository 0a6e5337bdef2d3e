"""A circuit breaker for the Cloud API: after several transport failures in a row, stop sending
and probe with growing waits until the API answers again. No attempt is used while it is open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

TRANSPORT_KINDS = ("connection", "timeout_ambiguous")


class Breaker:
    def __init__(self, threshold: int, max_wait_s: float) -> None:
        self.threshold, self.max_wait_s = threshold, max_wait_s
        self.failures = 0
        self.closed = asyncio.Event()
        self.closed.set()
        self.opened_at: float | None = None
        self.openings = 0

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def record(self, transport_failure: bool) -> bool:
        """Count one answer; True when this failure opened the breaker."""
        if not transport_failure:
            self.failures = 0
            return False
        self.failures += 1
        if self.failures >= self.threshold and not self.is_open:
            self.closed.clear()
            self.opened_at = time.monotonic()
            self.openings += 1
            return True
        return False

    async def probe_until_closed(
        self, probe: Callable[[], Awaitable[bool]], stopped: Callable[[], bool]
    ) -> float:
        """Probe with waits of 1, 2, 4 ... up to max_wait_s seconds; close on the first answer.
        Returns how long the breaker was open."""
        wait = 1.0
        while self.is_open and not stopped():
            await asyncio.sleep(wait)
            if stopped():
                break
            if await probe():
                break
            wait = min(wait * 2, self.max_wait_s)
        open_s = time.monotonic() - (self.opened_at or time.monotonic())
        self.failures, self.opened_at = 0, None
        self.closed.set()
        return open_s

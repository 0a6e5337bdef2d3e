"""The hand-off from claimer to senders, paced by the sender's throughput limit, most urgent first.

A sender waits for its turn under the limit *before* it takes a row, and takes the most urgent
row there is when its turn comes. So a priority row handed over behind a second of paced sending
goes out at the next turn, not after every row the senders would otherwise already hold. A sender
only asks for a turn while some row is not yet spoken for, so an idle drain reserves no turns and
a burst of work never meets a pile of stale reservations.

Turns are never booked ahead: one sender at a time waits at the turnstile and takes a turn only
once it has come. Booked turns would all fall due together after a pause of the event loop (a
long write, a busy machine) and go out as one burst, which Meta answers with 130429; this way a
pause is followed by at most the limiter's small burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
from typing import Any, Protocol

Item = tuple[float, int, Any]  # (-priority, hand-off order, payload); payload None ends a sender


class Turns(Protocol):
    """A rate limiter the senders take turns from (ratelimit.Gcra, engine/pacing.Pacer)."""

    def wait_s(self) -> float: ...

    def reserve(self) -> float: ...


class Handoff:
    def __init__(self, pacer: Turns | None, stop: asyncio.Event | None = None) -> None:
        self._heap: list[Item] = []
        self._order = itertools.count()
        self._ready = asyncio.Condition()
        self._spoken_for = 0  # senders waiting for their turn, one row each
        # Once `stop` is set nothing more is sent: senders waiting for a turn take their row at once
        # (to give it back), so a drain that must stop is not held up by the pacing.
        self._pacer, self._stop = pacer, stop or asyncio.Event()
        self._turnstile = asyncio.Lock()

    async def put(self, priority: float, payload: Any) -> None:
        async with self._ready:
            heapq.heappush(self._heap, (-priority, next(self._order), payload))
            self._ready.notify()

    async def close(self, senders: int) -> None:
        """One end marker per sender, ordered after every row."""
        for _ in range(senders):
            await self.put(-math.inf, None)

    async def take(self) -> Any:
        """Wait for a row nobody has spoken for, then for this sender's turn; return the most
        urgent row at that moment (or None: end)."""
        async with self._ready:
            await self._ready.wait_for(lambda: len(self._heap) > self._spoken_for)
            self._spoken_for += 1
        try:
            if self._pacer is not None:
                await self._turn(self._pacer)
        finally:
            async with self._ready:
                self._spoken_for -= 1
                item = heapq.heappop(self._heap)
                self._ready.notify()
        return item[2]

    async def turn(self) -> None:
        """A fresh paced turn for a row a sender already holds: after it waited (for the circuit
        breaker, say), its first turn is long spent, and every sender that waited would otherwise
        POST at the same moment."""
        if self._pacer is not None:
            await self._turn(self._pacer, held=True)

    async def _turn(self, pacer: Turns, held: bool = False) -> None:
        """Wait at the turnstile, then until the limiter has a turn now; take it. No turn is
        spent on the end markers (every row is gone) or once sending must stop."""

        def needless() -> bool:
            return self._stop.is_set() or (not held and self._heap[0][2] is None)

        async with self._turnstile:
            while not needless() and (delay := pacer.wait_s()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            if not needless():
                pacer.reserve()

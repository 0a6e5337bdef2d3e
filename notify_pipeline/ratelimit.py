"""GCRA (generic cell rate algorithm) rate limiters, shared by the delivery engine and the emulator.

GCRA keeps one number per key, the theoretical arrival time (TAT) of the next conforming request,
so a limiter with a key per recipient stays cheap. A request conforms when it arrives no earlier
than TAT minus the burst tolerance; each conforming request pushes TAT one emission interval on.
That is Meta's description of its limits: a steady rate, and bursts that borrow from future quota
and are paid back by waiting. The emulator rejects non-conforming requests (allow); the engine
paces itself to stay under them (wait_s, then reserve; engine/pacing.py adjusts its rate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

# Above this many keys, drop those whose TAT has passed (they would conform anyway).
_PRUNE_AT = 100_000
# Sums of float intervals drift by ulps; a request exactly on time must not be refused for that.
_EPSILON = 1e-9


class Gcra:
    """A rate limiter per key: `rate_per_s` on average, up to `burst` requests at once."""

    __slots__ = ("_clock", "_tat", "burst", "interval", "tolerance")

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.interval = 1.0 / rate_per_s
        self.burst = burst
        # A full burst of `burst` requests at one instant must conform: the last of them arrives
        # (burst - 1) intervals before its TAT.
        self.tolerance = (burst - 1) * self.interval
        self._clock = clock
        self._tat: dict[Hashable, float] = {}

    def set_rate(self, rate_per_s: float) -> None:
        """Change the average rate from now on (a pacer slowing down or recovering). The burst in
        requests stays; what each key has used stays as the time its TAT lies ahead."""
        if rate_per_s <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate_per_s
        self.tolerance = (self.burst - 1) * self.interval

    def allow(self, key: Hashable = None) -> bool:
        """Take one request for `key` if it conforms; a rejected request costs nothing."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        if tat - now > self.tolerance + _EPSILON:
            return False
        self._store(key, tat + self.interval, now)
        return True

    def reserve(self, key: Hashable = None) -> float:
        """Take the next slot for `key` whatever it costs; return the seconds to wait for it."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        self._store(key, tat + self.interval, now)
        return max(0.0, tat - self.tolerance - now - _EPSILON)

    def wait_s(self, key: Hashable = None) -> float:
        """Seconds until `key` may send again (0 when it may now)."""
        now = self._clock()
        return max(0.0, self._tat.get(key, now) - self.tolerance - now - _EPSILON)

    def seed(self, key: Hashable, used: int) -> None:
        """Count `used` recent requests for a key this process has not seen (e.g. from the database).

        Conservative: as if they had all been made just now.
        """
        if key not in self._tat and used > 0:
            now = self._clock()
            self._store(key, now + used * self.interval, now)

    def clear(self) -> None:
        self._tat.clear()

    def _store(self, key: Hashable, tat: float, now: float) -> None:
        if len(self._tat) >= _PRUNE_AT and key not in self._tat:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._tat[key] = tat

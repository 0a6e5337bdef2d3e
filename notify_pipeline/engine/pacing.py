"""How fast a drain sends for one sender: a margin under Meta's throughput tier, slower after a 130429.

Meta's tier (80 msg/s by default) counts the number's inbound messages too, and the answers we
see come back at uneven times, so pacing exactly at the tier runs into 130429 whenever anything
bunches requests. The rule, for every drain of the product:

- pace at the tier minus a margin (`PacingRule.margin`), never above it;
- on a 130429, multiply the pace by `decrease` (once per `hold_s`: the refusals of one burst are
  one signal, not many);
- then win the pace back slowly, `recovery_per_s` of the tier each second (additive), up to the
  margin under the tier; never below `floor` of the tier.

`RateController` is the rule alone (pure, its clock injected); `Pacer` applies it to the sender's
GCRA limiter, which the senders wait on (engine/handoff.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from notify_pipeline.ratelimit import Gcra
from notify_pipeline.whatsapp.results import SendResult

# whatsapp/errors.py: "Cloud API throughput reached for this phone number".
THROUGHPUT_REACHED = 130429
# The limiter lets this many seconds' worth of sends go at once after an idle spell (4 at 80/s):
# a small part of what Meta tolerates (the emulator: a fifth of a second's worth).
BURST_S = 0.05
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacingRule:
    """How a drain paces a sender under its throughput tier; shares are of the tier."""

    margin: float = 0.05  # left unused: inbound messages count too, and answers come unevenly
    decrease: float = 0.8  # the pace is multiplied by this on a 130429 ...
    hold_s: float = 1.0  # ... at most once per this many seconds
    recovery_per_s: float = 0.02  # then it grows back by this share of the tier per second
    floor: float = 0.1  # the pace never drops below this share of the tier

    def __post_init__(self) -> None:
        if not (0 <= self.margin < 1):
            raise ValueError(f"pacing margin must be at least 0 and below 1, not {self.margin}")
        if not (0 < self.decrease < 1):
            raise ValueError(f"pacing decrease must be above 0 and below 1, not {self.decrease}")
        if not (math.isfinite(self.hold_s) and self.hold_s >= 0):
            raise ValueError(f"pacing hold_s must be zero or more seconds, not {self.hold_s}")
        if not (math.isfinite(self.recovery_per_s) and self.recovery_per_s > 0):
            raise ValueError(f"pacing recovery_per_s must be positive, not {self.recovery_per_s}")
        if not (0 < self.floor <= 1 - self.margin):
            raise ValueError(f"pacing floor must be above 0 and at most 1 - margin, not {self.floor}")


class RateController:
    """The pace for one sender under `tier_per_s`: slowed on each 130429, recovering additively."""

    def __init__(
        self, tier_per_s: float, rule: PacingRule | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (math.isfinite(tier_per_s) and tier_per_s > 0):
            raise ValueError(f"the throughput tier must be a positive number, not {tier_per_s}")
        self.rule = rule or PacingRule()
        self.tier = tier_per_s
        self.ceiling = tier_per_s * (1 - self.rule.margin)
        self.floor = tier_per_s * self.rule.floor
        self.slowdowns = 0
        self.lowest = self.ceiling
        self._clock = clock
        self._rate = self.ceiling
        self._at = clock()
        self._last_slowdown = -math.inf

    @property
    def rate(self) -> float:
        """The pace now, in messages per second (the recovery since the last look included)."""
        now = self._clock()
        grown = self._rate + self.rule.recovery_per_s * self.tier * max(0.0, now - self._at)
        self._rate, self._at = min(self.ceiling, grown), now
        return self._rate

    def throttled(self) -> bool:
        """Meta answered 130429: slow down, unless it was done within `hold_s`. True if slowed."""
        rate, now = self.rate, self._clock()
        if now - self._last_slowdown < self.rule.hold_s:
            return False
        self._rate = max(self.floor, rate * self.rule.decrease)
        self._last_slowdown = now
        self.slowdowns += 1
        self.lowest = min(self.lowest, self._rate)
        return True


class Pacer:
    """The sender's turns: a GCRA limiter whose rate follows a RateController. The senders ask
    `wait_s()` and take a turn with `reserve()` (engine/handoff.py); `answered()` hears Meta."""

    def __init__(
        self,
        tier_per_s: float,
        rule: PacingRule | None = None,
        sender: str = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control = RateController(tier_per_s, rule, clock)
        self.sender = sender
        self.limiter = Gcra(self.control.rate, max(1, int(tier_per_s * BURST_S)), clock)

    def wait_s(self) -> float:
        """Seconds until the next turn at the current pace (0: now)."""
        self.limiter.set_rate(self.control.rate)
        return self.limiter.wait_s()

    def reserve(self) -> float:
        return self.limiter.reserve()

    def answered(self, result: SendResult) -> None:
        """Meta's answer to one send: a 130429 slows the pace."""
        error = result.error
        if error is not None and error.code == THROUGHPUT_REACHED and self.control.throttled():
            self.limiter.set_rate(self.control.rate)
            _log.info(
                "Meta answered 130429 (throughput reached) for sender %s: pacing at %.1f msg/s "
                "(tier %g msg/s), then back up by %.1f msg/s each second",
                self.sender,
                self.control.rate,
                self.control.tier,
                self.control.rule.recovery_per_s * self.control.tier,
            )

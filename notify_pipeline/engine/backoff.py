"""When to try again: exponential backoff with full jitter and a cap, and Meta's pair-limit rule.

Every delay is capped for any count: exponents are clamped before they are raised, so a row
deferred thousands of times never overflows a float (which would leave it locked) or builds a
huge integer, and no delay reaches past MAX_DELAY_S.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# 2^40 s is far beyond every cap below, so growth stops long before the clamp matters.
MAX_EXPONENT = 40
# The longest wait any rule may ask for; also keeps `now + delay` inside datetime's range.
MAX_DELAY_S = 30 * 86400.0
CONNECTION_BASE_S = 2.0
CONNECTION_CAP_S = 60.0


def capped_growth(base: float, factor: float, count: int, cap: float) -> float:
    """min(cap, base * factor^count), for any count and without overflow; never above MAX_DELAY_S."""
    exponent = min(max(0, count), MAX_EXPONENT)
    return min(cap, base * factor**exponent, MAX_DELAY_S)


@dataclass(frozen=True)
class RetryPolicy:
    """A template's retry policy (whatsapp_templates.retry_policy), or the default for text."""

    max_retries: int = 5
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 900.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        """Read a stored policy; missing, invalid or non-finite fields keep the defaults."""
        default = cls()
        data = data or {}

        def number(key: str, fallback: float, minimum: float) -> float:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return fallback
            if not math.isfinite(value) or value < minimum:
                return fallback
            return float(value)

        return cls(
            max_retries=int(number("max_retries", default.max_retries, 0)),
            backoff_base_seconds=number("backoff_base_seconds", default.backoff_base_seconds, 0.001),
            backoff_max_seconds=number("backoff_max_seconds", default.backoff_max_seconds, 0.001),
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))], attempt counted from 1.

        Full jitter spreads the retries of a failed batch over the whole interval, so they do not
        come back together and trip the same limit again.
        """
        ceiling = capped_growth(self.backoff_base_seconds, 2, attempt - 1, self.backoff_max_seconds)
        return (rng or random).uniform(0.0, ceiling)


def pair_limit_delay(pair_limit_hits: int) -> float:
    """Meta's advice for 131056: wait 4^X seconds (1, 4, 16, 64, ...), capped at an hour, with X
    the row's own 131056 answers so far (not its deferrals for quiet hours, holds or other limits)."""
    return capped_growth(1.0, 4, pair_limit_hits, 3600.0)


def connection_delay(deferrals: int, rng: random.Random | None = None) -> float:
    """How long a row waits after the API could not be reached: a few seconds, growing with the
    row's deferrals up to a minute, jittered over the upper half so a batch does not return at once."""
    ceiling = capped_growth(CONNECTION_BASE_S, 2, deferrals, CONNECTION_CAP_S)
    return (rng or random).uniform(ceiling / 2, ceiling)

"""When to try again: exponential backoff with full jitter and a cap, and Meta's pair-limit rule."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """A template's retry policy (whatsapp_templates.retry_policy), or the default for text."""

    max_retries: int = 5
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 900.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        """Read a stored policy; missing or invalid fields keep the defaults."""
        default = cls()
        data = data or {}

        def number(key: str, fallback: float, minimum: float) -> float:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
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
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def pair_limit_delay(consecutive_hits: int) -> float:
    """Meta's advice for 131056: wait 4^X seconds (1, 4, 16, 64, ...), capped at an hour."""
    return float(min(4 ** max(0, consecutive_hits), 3600))

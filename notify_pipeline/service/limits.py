"""The service's limits: each bounds what a caller who has not proven to be Meta can make the
service hold, with a default, a range and an environment variable. Apart from service/config.py so
that settings.py can check the variables at start without importing the service."""

from __future__ import annotations

import os
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    variable: str
    default: float
    low: float
    high: float
    whole: bool  # a whole number (bytes) rather than seconds

    def parse(self, raw: str) -> float:
        """The value of `raw`, or ValueError with a one-line message saying what to set."""
        try:
            value = int(raw) if self.whole else float(raw)
        except ValueError:
            value = float("nan")
        if not self.low <= value <= self.high:  # also refuses nan
            kind = "a whole number of bytes" if self.whole else "a number of seconds"
            low, high = (int(self.low), int(self.high)) if self.whole else (self.low, self.high)
            raise ValueError(f"{self.variable} must be {kind} from {low} to {high}, not {raw[:40]!r}")
        return value


# Meta sends bodies of up to 3 MB (up to 1,000 updates): the body cap never goes below that.
LIMITS: dict[str, Limit] = {
    # A new connection (or the next request on a kept-alive one) must deliver its request line
    # and headers within this time, and in no more than this many bytes (431 beyond it).
    "header_timeout_s": Limit("NOTIFY_SERVE_HEADER_TIMEOUT_S", 10, 0.1, 300, whole=False),
    "max_header_bytes": Limit("NOTIFY_SERVE_MAX_HEADER_BYTES", 32 * 1024, 1024, MIB, whole=True),
    # A webhook body must arrive whole within this time (408), and be no larger than this (413).
    "body_timeout_s": Limit("NOTIFY_SERVE_BODY_TIMEOUT_S", 20, 0.1, 600, whole=False),
    "max_body_bytes": Limit("NOTIFY_SERVE_MAX_BODY_BYTES", 4 * MIB, 3 * MIB, 64 * MIB, whole=True),
    # Bytes of bodies whose signature is not checked yet, beyond each body's first
    # SMALL_BODY_BYTES, held at once by the process (503 with Retry-After beyond it).
    "unauthenticated_bytes": Limit(
        "NOTIFY_SERVE_UNAUTHENTICATED_BYTES", 16 * MIB, 3 * MIB, 1024 * MIB, whole=True
    ),
    # A scrape of /metrics within this many seconds of the last database read gets that read's
    # answer (0: every scrape reads the database).
    "metrics_cache_s": Limit("NOTIFY_METRICS_CACHE_S", 5, 0, 300, whole=False),
}


def limit_problem(variable: str, raw: str) -> str | None:
    """What is wrong with one limit variable's value, or None (for settings.environment_problems)."""
    for limit in LIMITS.values():
        if limit.variable == variable:
            try:
                limit.parse(raw)
            except ValueError as exc:
                return str(exc)
    return None


def limit_from_env(name: str) -> float:
    limit = LIMITS[name]
    raw = os.environ.get(limit.variable, "").strip()
    return limit.parse(raw) if raw else limit.default

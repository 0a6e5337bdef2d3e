"""Small statistics over measured times: percentiles, rates from timestamps, the busiest window."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (share in 0..1) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def rate_between(timestamps: Sequence[float]) -> float | None:
    """Events per second from the first to the last timestamp (n - 1 intervals over the span)."""
    if len(timestamps) < 2:
        return None
    span = max(timestamps) - min(timestamps)
    return (len(timestamps) - 1) / span if span > 0 else None


def steady_rate(timestamps: Sequence[float], trim: float = 0.1) -> float | None:
    """Events per second between the `trim` and 1 - `trim` quantiles: the rate once a run is
    going, without its start (connections, first claim) and its tail (the last requests)."""
    ordered = sorted(timestamps)
    low, high = int(len(ordered) * trim), int(len(ordered) * (1 - trim)) - 1
    if high - low < 2:
        return None
    return rate_between(ordered[low : high + 1])


def busiest_window(timestamps: Sequence[float], window_s: float = 1.0) -> int:
    """The most events in any window of `window_s` seconds (what a sliding rate limiter sees)."""
    ordered = sorted(timestamps)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p90, p99 and max of durations given in seconds, in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 0.50)),
        "p90_ms": ms(percentile(seconds, 0.90)),
        "p99_ms": ms(percentile(seconds, 0.99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }

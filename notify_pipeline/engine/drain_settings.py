"""Each drain setting's default and range, stated once, with no imports: the environment's
settings (read by every CLI command at start) use them without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """A drain setting's default and its accepted range (inclusive), stated once: DrainConfig,
    SendConfig (run config), `notify-pipeline send` and the environment's settings read it."""

    default: float
    low: float
    high: float


BATCH_SIZE = Setting(200, 1, 5000)  # rows claimed per batch
CONCURRENCY = Setting(64, 1, 512)  # requests in flight
# Meta's throughput tier of the sender number, msg/s: 80 for most numbers, up to 1,000.
THROUGHPUT_PER_S = Setting(80.0, 1, 1000)
LIFETIME_MINUTES = Setting(120.0, 1, 24 * 60)  # a serving send run, before its successor takes over

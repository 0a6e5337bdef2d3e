"""What a bench run does: counts, durations, engine settings, and where the send path points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID

SECTIONS = ("send_path", "rate_limit", "latency", "ceiling")
BENCH_TOKEN = "bench-token"
# --quick: every measurement in miniature, for tests and a first look (about 10 s in all).
QUICK: dict[str, Any] = {"messages": 1000, "rate_messages": 80, "steady_seconds": 2.0, "ceiling_rows": 2000}


@dataclass(frozen=True)
class BenchOptions:
    """Settings of one `notify-pipeline bench` run. The defaults are the full run (about 1-2 minutes)."""

    # 1. Full send path, limits off: one drain() of this many notifications per emulator latency.
    messages: int = 10_000
    latencies_ms: tuple[float, ...] = (0.0, 50.0)
    batch_size: int = 500
    concurrency: int = 128
    # 2. Rate-limit accuracy: this many messages at this rate, emulator limits on.
    rate_messages: int = 800
    rate_per_s: float = 80.0
    # 3. Enqueue-to-accepted latency: a producer at rate_per_s for this long while drains run.
    steady_seconds: float = 10.0
    # 4. Reference ceiling: a raw-SQL claim-and-mark loop over this many rows.
    ceiling_rows: int = 20_000
    # Where the send path goes: None starts the emulator (which gets BENCH_TOKEN: a real token
    # never goes on a command line); else any Meta-compatible endpoint, with this token.
    base_url: str | None = None
    token: str = ""
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID
    pin: bool = True
    sections: tuple[str, ...] = SECTIONS

    def __post_init__(self) -> None:
        for name in ("messages", "batch_size", "concurrency", "rate_messages", "ceiling_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.rate_per_s <= 0 or self.steady_seconds <= 0:
            raise ValueError("rate and durations must be positive")
        if self.base_url and not self.token:
            raise ValueError("--base-url needs a token: --token or WHATSAPP_ACCESS_TOKEN")
        if not self.sections:
            raise ValueError("nothing to measure: no section selected")
        if any(latency < 0 for latency in self.latencies_ms):
            raise ValueError("latencies must not be negative")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")

    @classmethod
    def preset(cls, *, quick: bool = False, **given: Any) -> BenchOptions:
        """The full run (or the quick one: a few seconds a section), with `given` settings on top."""
        return cls(**{**(QUICK if quick else {}), **given})

    def runs(self, section: str) -> bool:
        return section in self.sections

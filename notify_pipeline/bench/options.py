"""What a bench run does: counts, durations, engine settings, and where the send path points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID

SECTIONS = ("send_path", "rate_limit", "latency", "wakeup", "priority", "webhooks", "ceiling")
BENCH_TOKEN = "bench-token"
# --quick: every measurement in miniature, for tests and a first look (about 20 s in all).
QUICK: dict[str, Any] = {
    "messages": 1000,
    "rate_messages": 80,
    "steady_seconds": 2.0,
    "wakeup_messages": 10,
    "deferred_messages": 3,
    "priority_backlog": 2000,
    "priority_otps": 2,
    "priority_gap_s": 1.0,
    "webhook_statuses": 600,
    "ceiling_rows": 2000,
}


@dataclass(frozen=True)
class BenchOptions:
    """Settings of one `notify-pipeline bench` run. The defaults are the full run (about 1.5 minutes)."""

    # 1. Full send path, limits off: one drain() of this many notifications per emulator latency.
    messages: int = 10_000
    latencies_ms: tuple[float, ...] = (0.0, 50.0)
    batch_size: int = 500
    concurrency: int = 128
    # 2. Rate-limit accuracy: this many messages at this rate, emulator limits on.
    rate_messages: int = 800
    rate_per_s: float = 80.0
    # 3. Enqueue-to-accepted latency: a producer at rate_per_s for this long while one serving
    # drain runs.
    steady_seconds: float = 10.0
    # 4. Wake-up of an idle serving drain: single messages this far apart, then deferred ones
    # (meta.delay_seconds) coming due, each enqueued once the one before was accepted.
    wakeup_messages: int = 50
    wakeup_gap_s: float = 0.2
    deferred_messages: int = 10
    deferred_delay_s: float = 1.0
    # 5. Priority: OTPs (priority 100) behind a backlog of MARKETING rows sent at rate_per_s.
    priority_backlog: int = 50_000
    priority_otps: int = 5
    priority_gap_s: float = 2.0
    # 6. Reference ceiling: a raw-SQL claim-and-mark loop over this many rows.
    ceiling_rows: int = 20_000
    # Where the send path goes: None starts the emulator (which gets BENCH_TOKEN: a real token
    # never goes on a command line); else any Meta-compatible endpoint, with this token.
    base_url: str | None = None
    token: str = ""
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID
    pin: bool = True
    # Status webhooks: this many single-status POSTs to `notify-pipeline serve`, this many at once.
    webhook_statuses: int = 30_000
    webhook_concurrency: int = 64
    webhook_workers: int = 1  # processes of `notify-pipeline serve`
    sections: tuple[str, ...] = SECTIONS

    def __post_init__(self) -> None:
        for name in (
            "messages",
            "batch_size",
            "concurrency",
            "rate_messages",
            "webhook_statuses",
            "webhook_concurrency",
            "webhook_workers",
            "wakeup_messages",
            "deferred_messages",
            "priority_backlog",
            "priority_otps",
            "ceiling_rows",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        durations = (self.steady_seconds, self.wakeup_gap_s, self.deferred_delay_s, self.priority_gap_s)
        if self.rate_per_s <= 0 or any(value <= 0 for value in durations):
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

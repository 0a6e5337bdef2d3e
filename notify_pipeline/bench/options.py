"""What a bench run does: counts, durations, engine settings, and where the send path points."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID

SECTIONS = (
    "send_path",
    "rate_limit",
    "latency",
    "wakeup",
    "priority",
    "webhooks",
    "ceiling",
    "faults",
    "pacing",
    "peer",
)
# Sections that run only when named with --only: they take minutes (faults: about 15,
# pacing: about 5, peer: about 3).
ON_REQUEST = ("faults", "pacing", "peer")
DEFAULT_SECTIONS = tuple(section for section in SECTIONS if section not in ON_REQUEST)
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
    "pacing_rows": 400,
    "storm_seconds": 30.0,
    "dev_restarts": 1,
    "peer_transports": (),
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
    # Pacing (on request): a backlog of this many rows drained at the tier rate_per_s, with
    # status webhooks to `notify-pipeline serve` as under `dev`.
    pacing_rows: int = 20_000
    # ... while the number's inbound messages use this share of the tier (Meta counts them too):
    # the emulator then enforces only the rest.
    pacing_inbound_share: float = 0.0
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
    # The fault bench (on request): Ctrl-C of `dev` and `dev` again this many times, then a 503
    # storm this long against a serving drain. 0 leaves that part out.
    dev_restarts: int = 2
    storm_seconds: float = 600.0
    # The peer (on request): `messages` notifications through the send path and through PgQueuer
    # with aiohttp (the `bench` extra), this many in flight, at each of latencies_ms, alternating
    # for this many rounds. The send path goes over the HTTP transport in use, then over these
    # (WHATSAPP_HTTP_TRANSPORT's values) as well: httpx is left out, its 125 msg/s at 50 ms would
    # take the section from about 3 minutes to 8.
    peer_in_flight: int = 64
    peer_rounds: int = 3
    peer_transports: tuple[str, ...] = ("aiohttp-native", "aiohttp")
    sections: tuple[str, ...] = DEFAULT_SECTIONS

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
            "pacing_rows",
            "peer_in_flight",
            "peer_rounds",
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
        if self.dev_restarts < 0 or self.storm_seconds < 0:
            raise ValueError("dev_restarts and storm_seconds must not be negative (0 leaves that part out)")
        if "faults" in self.sections and not (self.dev_restarts or self.storm_seconds):
            raise ValueError("faults: nothing to measure with --dev-restarts 0 and --storm-seconds 0")
        if not (0 <= self.pacing_inbound_share < 1):
            raise ValueError("--pacing-inbound-share must be at least 0 and below 1")
        if any(latency < 0 for latency in self.latencies_ms):
            raise ValueError("latencies must not be negative")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
        if "peer" in self.sections and not all(find_spec(name) for name in ("pgqueuer", "asyncpg")):
            raise ValueError("peer: PgQueuer is not installed: pip install -e '.[bench]'")

    @classmethod
    def preset(cls, *, quick: bool = False, **given: Any) -> BenchOptions:
        """The full run (or the quick one: a few seconds a section), with `given` settings on top."""
        return cls(**{**(QUICK if quick else {}), **given})

    def runs(self, section: str) -> bool:
        return section in self.sections

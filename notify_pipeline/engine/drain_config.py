"""What a drain is told (DrainConfig) and what it reports (DrainReport), and the environment kill
switch it obeys. Kept apart from the drain loop so the sensor, alerts and CLI can read them cheaply."""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from notify_pipeline.engine.policy import PolicyConfig


def new_worker_id(prefix: str = "worker") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def worker_enabled() -> bool:
    """NOTIFICATION_WORKER_CRON_ENABLED: anything but false/0/no/off leaves the worker on."""
    return os.environ.get("NOTIFICATION_WORKER_CRON_ENABLED", "true").strip().lower() not in (
        "false",
        "0",
        "no",
        "off",
    )


@dataclass(frozen=True)
class DrainConfig:
    batch_size: int = 200
    concurrency: int = 64
    max_seconds: float = 50.0
    lease_s: float = 900.0
    throughput_per_s: float | None = 80.0  # per sender phone number; None: no limit on our side
    pair_per_s: float | None = 1 / 6  # per recipient; None: no limit on our side
    pair_burst: int = 40
    poll_pause_s: float = 0.5
    trigger: str = "manual"
    worker_id: str = field(default_factory=new_worker_id)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive")


@dataclass
class DrainReport:
    worker: str
    trigger: str
    claimed: int = 0
    sent: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    released: int = 0
    stopped_by: str = ""  # drained | time_budget | paused | disabled | auth_error
    auth_error: str | None = None
    duration_s: float = 0.0

    @property
    def processed(self) -> int:
        return (
            self.sent + sum(self.failed.values()) + sum(self.deferred.values()) + sum(self.retried.values())
        )

    @property
    def sent_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "trigger": self.trigger,
            "claimed": self.claimed,
            "processed": self.processed,
            "sent": self.sent,
            "failed": dict(self.failed),
            "deferred": dict(self.deferred),
            "retried": dict(self.retried),
            "released": self.released,
            "stopped_by": self.stopped_by,
            "auth_error": self.auth_error,
            "duration_ms": round(self.duration_s * 1000),
            "sent_per_s": round(self.sent_per_s, 1),
        }

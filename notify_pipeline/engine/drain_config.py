"""What a drain is told (DrainConfig) and what it reports (DrainReport), and the environment kill
switch it obeys. Kept apart from the drain loop so the sensor, alerts and CLI can read them cheaply."""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from notify_pipeline.engine.drain_settings import BATCH_SIZE, CONCURRENCY, THROUGHPUT_PER_S
from notify_pipeline.engine.pacing import PacingRule
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


class StopReason(StrEnum):
    """Why a drain ended (its report's stopped_by, send_workers.stopped_by, a send run's
    notify/stopped_by tag). A planned stop is never a failure: not of the run, not for the alerts,
    not for the sensor's back-off."""

    DRAINED = "drained"  # a bounded drain found nothing more due
    TIME_BUDGET = "time_budget"  # a bounded drain's budget ended
    LIFETIME = "lifetime"  # a serving drain's lifetime ended: its standby takes over
    SIGNAL = "signal"  # SIGTERM or SIGINT: a deploy, Ctrl-C, Dagster terminating the run
    PAUSED = "paused"
    HELD = "held"
    DISABLED = "disabled"  # NOTIFICATION_WORKER_CRON_ENABLED is false
    SENDER_BUSY = "sender_busy"  # another drain sends for the sender
    AUTH_ERROR = "auth_error"
    ACCOUNT_ERROR = "account_error"
    DB_ERROR = "db_error"
    LOST_LOCK = "lost_lock"  # the control connection (and the sender lock with it) went away
    JOURNAL_ERROR = "journal_error"
    ERROR = "error"  # a bug: a task of the drain failed
    # Only when the drain's own task is cancelled before any other reason was set: neither a
    # planned stop nor a fault.
    STOPPED = "stopped"


PLANNED_STOPS = frozenset(
    {
        StopReason.DRAINED,
        StopReason.TIME_BUDGET,
        StopReason.LIFETIME,
        StopReason.SIGNAL,
        StopReason.PAUSED,
        StopReason.HELD,
        StopReason.DISABLED,
        StopReason.SENDER_BUSY,
    }
)
# Exit code 2, a failed send run.
FAULT_STOPS = frozenset(StopReason) - PLANNED_STOPS - {StopReason.STOPPED}
# The queue database went away: once it answers again, a replacement may start at once.
DATABASE_FAULTS = frozenset({StopReason.DB_ERROR, StopReason.LOST_LOCK})


@dataclass(frozen=True)
class DrainConfig:
    batch_size: int = int(BATCH_SIZE.default)
    concurrency: int = int(CONCURRENCY.default)
    # The time budget of a bounded drain, or the lifetime of a serving one (counted from the moment
    # it holds the sender lock).
    max_seconds: float = 50.0
    # serve: wait for work when nothing is due (woken by NOTIFY, by the earliest deferred row coming
    # due, or by a slow poll) until the lifetime ends; otherwise end once nothing is due.
    serve: bool = False
    lease_s: float = 900.0
    # Meta's throughput tier of the sender phone number (msg/s); the drain paces a margin under it
    # and slower after a 130429 (`pacing`, engine/pacing.py). None: no limit on our side.
    throughput_per_s: float | None = THROUGHPUT_PER_S.default
    pacing: PacingRule = field(default_factory=PacingRule)
    pair_per_s: float | None = 1 / 6  # per recipient; None: no limit on our side
    pair_burst: int = 40
    # How much sending the drain holds ahead of its senders, in seconds at the throughput limit: a
    # high-priority row waits at most about this long behind a backlog.
    ahead_s: float = 1.0
    sender: str = "default"  # the advisory lock's scope: one drain per sender
    lock_wait_s: float = 0.0  # how long to wait for another drain of the sender to let go
    run_id: str | None = None
    tick_s: float = 0.25  # control loop: pause, holds and the rows in hand are re-checked this often
    heartbeat_s: float = 5.0
    event_every_s: float = 60.0  # heartbeat event and progress line
    rescue_every_s: float = 15.0
    rescue_after_s: float = 90.0  # a drain silent this long is dead (longer than db_retry_s)
    idle_poll_s: float = 30.0  # the slow poll behind NOTIFY
    db_retry_s: float = 60.0  # how long results are retried against a database that went away
    # Consecutive outage answers (connection failures, timeouts, HTTP 500/502/503/504, answers that
    # are not Meta's JSON) that open the circuit breaker; while open, the API is probed with waits
    # growing from 1 s to breaker_max_wait_s and nothing is POSTed.
    breaker_after: int = 5
    breaker_max_wait_s: float = 30.0
    journal_dir: Path | None = None  # default: <NOTIFY_DATA_DIR>/journal/<sender>
    trigger: str = "manual"
    worker_id: str = field(default_factory=new_worker_id)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    # A line an operator must see at once: results held only in memory (database and journal both
    # failing). Default: the log, as a warning.
    notice: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency", "pair_burst", "breaker_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "max_seconds",
            "lease_s",
            "ahead_s",
            "tick_s",
            "heartbeat_s",
            "idle_poll_s",
            "breaker_max_wait_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        for name in ("throughput_per_s", "pair_per_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number (or none for no limit), not {value}")
        if not (math.isfinite(self.lock_wait_s) and self.lock_wait_s >= 0):
            raise ValueError(f"lock_wait_s must be zero or more seconds, not {self.lock_wait_s}")

    @property
    def ahead_rows(self) -> int:
        """Rows claimed but not yet sent that the drain may hold."""
        if self.throughput_per_s is None:
            return 2 * self.batch_size
        return max(1, math.ceil(self.throughput_per_s * self.ahead_s))


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
    stopped_by: str = ""  # a StopReason
    auth_error: str | None = None  # Meta's refusal of the credentials or the account
    fault: str | None = None  # what failed, in one line, when the drain stopped on a fault
    revoked: int = 0  # held rows dropped because they were stopped, cancelled or switched off
    rescued: int = 0  # claimed rows of dead drains given back
    journaled: int = 0  # results written to the local journal (database away)
    # The most results held only in memory at once (database away and journal unwritable); the
    # drain ended only once the database or the journal took them (see `fault`).
    held_in_memory: int = 0
    replayed: int = 0  # results replayed from the journal
    duration_s: float = 0.0

    @property
    def failed_on_fault(self) -> bool:
        """True when the drain stopped because something failed (exit code 2, a failed run)."""
        return self.stopped_by in FAULT_STOPS

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
            "fault": self.fault,
            "revoked": self.revoked,
            "rescued": self.rescued,
            "journaled": self.journaled,
            "held_in_memory": self.held_in_memory,
            "replayed": self.replayed,
            "duration_ms": round(self.duration_s * 1000),
            "sent_per_s": round(self.sent_per_s, 1),
        }

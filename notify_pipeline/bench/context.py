"""What every measurement shares: the scratch database, the workload, the endpoint and the options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from notify_pipeline.bench import database
from notify_pipeline.bench.endpoint import Endpoint
from notify_pipeline.bench.options import BenchOptions
from notify_pipeline.bench.workload import Workload, enqueue_all
from notify_pipeline.engine.drain_config import DrainConfig
from notify_pipeline.engine.policy import PolicyConfig

# No default quiet hours for contacts without preferences (every bench recipient has some anyway).
NO_DEFAULT_QUIET_HOURS = PolicyConfig(default_quiet_hours=None)
# Meta's answer when a sender goes over its throughput limit.
THROUGHPUT_REFUSED = "130429"
# A drain's time budget in the bench: generous, so a slow machine finishes rather than stops early.
DRAIN_BUDGET_S = 600.0


@dataclass
class BenchContext:
    url: str
    conn: psycopg.Connection
    workload: Workload
    endpoint: Endpoint
    options: BenchOptions

    def fresh_queue(self, count: int) -> list[int]:
        """An empty queue, then `count` notifications enqueued and settled; returns their ids."""
        database.clear_queue(self.conn)
        ids = enqueue_all(self.conn, self.workload.take(count)) if count else []
        database.settle(self.conn)
        return ids

    def reset_emulator(self, **config: Any) -> None:
        """Apply emulator settings and clear its records (nothing to do at an outside endpoint)."""
        if self.endpoint.control is not None:
            self.endpoint.control.configure(**config)
            self.endpoint.control.reset()

    def drain_config(self, *, throughput_per_s: float | None, pair_limit: bool) -> DrainConfig:
        overrides: dict[str, Any] = {} if pair_limit else {"pair_per_s": None}
        return DrainConfig(
            batch_size=self.options.batch_size,
            concurrency=self.options.concurrency,
            max_seconds=DRAIN_BUDGET_S,
            throughput_per_s=throughput_per_s,
            policy=NO_DEFAULT_QUIET_HOURS,
            trigger="bench",
            **overrides,
        )

    def statuses(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall()
        return {status: count for status, count in rows}

    def accepted_times(self) -> tuple[list[float], str]:
        """When each message since the last reset was accepted (unix seconds), and by whose clock:
        the emulator's receive times, else (at an outside endpoint) sent_at of the sent rows, which
        is coarser because write-back is batched."""
        if self.endpoint.control is not None:
            return [m["received_at"] for m in self.endpoint.control.messages()], "emulator receive times"
        rows = self.conn.execute(
            "SELECT extract(epoch FROM sent_at)::float8 FROM notifications WHERE status = 'sent'"
        ).fetchall()
        return [at for (at,) in rows], "notifications.sent_at (no emulator control API)"

    def emulator_counts(self) -> dict[str, Any]:
        """What the emulator accepted and refused since its last reset; skipped without control API."""
        if self.endpoint.control is None:
            return {"skipped": "no emulator control API at --base-url"}
        stats = self.endpoint.control.stats()
        return {
            "accepted": stats["total"],
            "duplicates": stats["duplicates"],
            "rejected": stats["rejected"],
            "by_code": stats["by_code"],
        }


def throughput_refusals(counts: dict[str, Any]) -> int | None:
    """How many sends the emulator refused with 130429, from emulator_counts(); None if unknown."""
    return None if "skipped" in counts else counts["by_code"].get(THROUGHPUT_REFUSED, 0)

"""What every measurement shares: the scratch database, the workload, the endpoint and the options."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from notify_pipeline.bench import database
from notify_pipeline.bench.endpoint import Endpoint
from notify_pipeline.bench.options import BenchOptions
from notify_pipeline.bench.workload import Workload, enqueue_all
from notify_pipeline.engine.drain import drain
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport
from notify_pipeline.engine.operations import set_paused
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient
from notify_pipeline.whatsapp.messages import notification_id_of

# No default quiet hours for contacts without preferences (every bench recipient has some anyway).
NO_DEFAULT_QUIET_HOURS = PolicyConfig(default_quiet_hours=None)
# Meta's answer when a sender goes over its throughput limit.
THROUGHPUT_REFUSED = "130429"
# A drain's time budget in the bench: generous, so a slow machine finishes rather than stops early.
DRAIN_BUDGET_S = 600.0
# A serving drain's slow poll in the bench: longer than any measurement, so that only an enqueue's
# NOTIFY or the drain's timer for the earliest deferred row can wake it (a poll would hide a miss).
SERVING_IDLE_POLL_S = 600.0
# How long a serving drain may take to start (connect, take the sender lock, register).
SERVING_START_S = 30.0
PAUSE_REASON = "bench: end of the measurement"


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

    def drain_config(
        self, *, throughput_per_s: float | None, pair_limit: bool, serve: bool = False
    ) -> DrainConfig:
        """A bounded drain (ends once nothing is due), or with `serve` a serving one as the Dagster
        send run (waits for work; its lifetime is the bench's budget, and ServingDrain ends it)."""
        overrides: dict[str, Any] = {} if pair_limit else {"pair_per_s": None}
        if serve:
            overrides |= {"serve": True, "idle_poll_s": SERVING_IDLE_POLL_S}
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


class ServingDrain:
    """One serving drain on its own task for the length of a measurement, as production runs it
    (one long-lived drain per sender); an async context manager.

    Entering starts it and returns once it holds the sender lock and has begun serving. `stop()`
    (also called on leaving) ends it the way an operator would: the pause in queue_control, which
    a serving drain obeys at once (the change arrives as a notification); the pause is then lifted.
    """

    def __init__(self, ctx: BenchContext, client: ClientSettings, config: DrainConfig) -> None:
        if not config.serve:
            raise ValueError("ServingDrain needs a serving DrainConfig (serve=True)")
        self.ctx, self.client, self.config = ctx, client, config
        self.report: DrainReport | None = None
        self._api: CloudApiClient | None = None
        self._task: asyncio.Task[DrainReport] | None = None

    async def __aenter__(self) -> ServingDrain:
        self._api = CloudApiClient(self.client)
        await self._api.__aenter__()
        self._task = asyncio.create_task(drain(self.ctx.url, self._api, self.config))
        await self._until_serving()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.stop()
        finally:
            if self._api is not None:
                await self._api.__aexit__(None, None, None)

    async def _until_serving(self) -> None:
        assert self._task is not None
        deadline = time.monotonic() + SERVING_START_S
        while time.monotonic() < deadline:
            if self._task.done():
                report = self._task.result()
                raise RuntimeError(
                    f"the serving drain ended at its start: {report.stopped_by} {report.fault}"
                )
            started = self.ctx.conn.execute(
                "SELECT 1 FROM observability_events WHERE event_type = 'NOTIFY_WORKER_START' "
                "AND details ->> 'worker' = %s",
                (self.config.worker_id,),
            ).fetchone()
            if started is not None:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the serving drain did not start within {SERVING_START_S:g} s")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> DrainReport:
        """Pause, wait for the drain to end, lift the pause; the drain's report."""
        if self.report is not None:
            return self.report
        assert self._task is not None
        if not self._task.done():
            set_paused(self.ctx.conn, True, PAUSE_REASON, "bench")
            try:
                self.report = await self._task
            finally:
                set_paused(self.ctx.conn, False, PAUSE_REASON, "bench")
        else:
            self.report = self._task.result()
        return self.report


def drain_summary(report: DrainReport) -> dict[str, Any]:
    """What a measurement reports of its serving drain."""
    done = report.as_dict()
    keys = ("claimed", "sent", "failed", "deferred", "retried", "released", "stopped_by", "fault")
    return {"mode": "serving", **{key: done[key] for key in keys}, "lifetime_ms": done["duration_ms"]}


async def until_settled(conn: psycopg.AsyncConnection, ids: list[int], timeout_s: float) -> bool:
    """Wait until none of `ids` is queued any more (sent or failed, written back); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        cur = await conn.execute(
            "SELECT count(*) FROM notifications WHERE id = ANY(%s) AND status = 'queued'", (ids,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


def accepted_at(ctx: BenchContext, ids: list[int]) -> tuple[dict[int, float], str]:
    """When each of `ids` was accepted (unix seconds; its first acceptance), and by whose clock:
    the emulator's receive time, else (at an outside endpoint) the row's sent_at, which is later
    by up to a write-back batch."""
    wanted = set(ids)
    times: dict[int, float] = {}
    if ctx.endpoint.control is not None:
        for message in ctx.endpoint.control.messages():
            key = notification_id_of(message.get("biz_opaque_callback_data"))
            if key is not None and key in wanted and key not in times:
                times[key] = message["received_at"]
        return times, "emulator receive times"
    rows = ctx.conn.execute(
        "SELECT id, extract(epoch FROM sent_at)::float8 FROM notifications "
        "WHERE id = ANY(%s) AND sent_at IS NOT NULL",
        (ids,),
    ).fetchall()
    return {row_id: at for row_id, at in rows}, "notifications.sent_at (no emulator control API)"

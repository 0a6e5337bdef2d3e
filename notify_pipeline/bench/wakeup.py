"""Measurement 4: how fast an idle serving drain wakes.

One serving drain (as the Dagster send run) waits with nothing due. Its slow poll is set beyond
the measurement (600 s), so only what production relies on can wake it: the NOTIFY that the
enqueue's statement trigger sends, or the drain's timer for the earliest deferred row.

- on_enqueue: single notifications, each in its own transaction, `wakeup_gap_s` apart on a fixed
  schedule; for each, the emulator's receive time minus the moment its enqueue's commit returned
  to the enqueuer (this process's clock, which the emulator on this machine shares).
- on_due: notifications deferred by meta.delay_seconds (`deferred_delay_s`), one at a time, each
  once the one before was sent; for each, the emulator's receive time minus its due time
  (next_attempt_at): how late the drain's timer fires, claims and sends.

A first notification, not counted, opens the drain's HTTP connection (a drain pays that once in
its lifetime). At an outside endpoint sent_at stands in for the receive time (later by up to a
write-back batch).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.bench import database
from notify_pipeline.bench.context import (
    BenchContext,
    ServingDrain,
    accepted_at,
    drain_summary,
    until_settled,
)
from notify_pipeline.bench.stats import summary_ms
from notify_pipeline.bench.workload import Notification, add_contacts
from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport
from notify_pipeline.whatsapp.client import ClientSettings

# How long one notification may take to be sent before the measurement gives up on it.
SETTLE_S = 30.0
# The drain's first claim after it starts, before the first counted notification.
SETTLE_IDLE_S = 0.5


async def _enqueue(
    conn: psycopg.AsyncConnection, item: Notification, meta: dict[str, Any]
) -> tuple[int, float]:
    """Enqueue in its own transaction (autocommit); the id and when the commit returned (unix s)."""
    cur = await conn.execute(
        "SELECT queueNotification(%s, %s)", (Jsonb(item.message), Jsonb({**item.meta, **meta}))
    )
    committed = time.time()
    row = await cur.fetchone()
    assert row is not None
    return row[0], committed


async def _due_at(conn: psycopg.AsyncConnection, row_id: int) -> float:
    cur = await conn.execute(
        "SELECT extract(epoch FROM next_attempt_at)::float8 FROM notifications WHERE id = %s", (row_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _run(
    ctx: BenchContext,
    client: ClientSettings,
    config: DrainConfig,
    on_enqueue: list[Notification],
    on_due: list[Notification],
) -> tuple[dict[str, Any], DrainReport]:
    options = ctx.options
    conn = await connect_async(ctx.url, actor="bench-producer")
    committed: dict[int, float] = {}
    due: dict[int, float] = {}
    settled = True
    try:
        async with ServingDrain(ctx, client, config) as serving:
            warm, *on_enqueue = on_enqueue
            warm_id, _ = await _enqueue(conn, warm, {})
            settled &= await until_settled(conn, [warm_id], SETTLE_S)
            await asyncio.sleep(SETTLE_IDLE_S)
            started = time.monotonic()
            for i, item in enumerate(on_enqueue):
                pause = started + i * options.wakeup_gap_s - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                row_id, at = await _enqueue(conn, item, {})
                committed[row_id] = at
            settled &= await until_settled(conn, list(committed), SETTLE_S)
            for item in on_due:
                await asyncio.sleep(options.wakeup_gap_s)
                row_id, _ = await _enqueue(conn, item, {"delay_seconds": options.deferred_delay_s})
                due[row_id] = await _due_at(conn, row_id)
                settled &= await until_settled(conn, [row_id], SETTLE_S + options.deferred_delay_s)
            report = await serving.stop()
    finally:
        await conn.close()
    return {"committed": committed, "due": due, "settled": settled and serving.report is not None}, report


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    rate = options.rate_per_s
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=rate, latency_ms=0.0)
    database.clear_queue(ctx.conn)
    on_enqueue = ctx.workload.take(1 + options.wakeup_messages)
    on_due = ctx.workload.take(options.deferred_messages)
    add_contacts(ctx.conn, [*on_enqueue, *on_due])
    config = ctx.drain_config(throughput_per_s=rate, pair_limit=True, serve=True)
    client = ctx.endpoint.for_concurrency(options.concurrency)
    run, report = asyncio.run(_run(ctx, client, config, on_enqueue, on_due))
    committed, due = run["committed"], run["due"]
    accepted, source = accepted_at(ctx, [*committed, *due])
    woken = [accepted[i] - at for i, at in committed.items() if i in accepted]
    timer = [accepted[i] - at for i, at in due.items() if i in accepted]
    emulator = ctx.emulator_counts()
    return {
        "idle_poll_s": config.idle_poll_s,
        "accepted_source": source,
        "on_enqueue": {
            "messages": len(committed),
            "gap_ms": round(options.wakeup_gap_s * 1000),
            "accepted": len(woken),
            "commit_to_accepted": summary_ms(woken),
        },
        "on_due": {
            "messages": len(due),
            "delay_s": options.deferred_delay_s,
            "accepted": len(timer),
            "due_to_accepted": summary_ms(timer),
        },
        "lost": len(committed) + len(due) - len(woken) - len(timer),
        "all_settled": run["settled"],
        "drain": drain_summary(report),
        "queue_after": ctx.statuses(),
        "emulator": emulator,
    }

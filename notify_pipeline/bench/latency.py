"""Measurement 3: enqueue to accepted at a steady load, with one serving drain as production runs.

A producer enqueues one notification at a time at the configured rate (an application calling
queueNotification) while ONE serving drain (serve=True, as the Dagster send run) is alive for the
whole measurement, paced as in production (80/s, the emulator enforcing it too): each enqueue's
NOTIFY wakes it. Once every row is sent the drain is ended by the operator's pause. Latency is the
emulator's receive time minus the row's created_at (at an outside endpoint: sent_at minus
created_at, which includes the batched write-back).
"""

from __future__ import annotations

import asyncio
from typing import Any

from notify_pipeline.bench import database
from notify_pipeline.bench.context import (
    BenchContext,
    ServingDrain,
    drain_summary,
    throughput_refusals,
    until_settled,
)
from notify_pipeline.bench.stats import rate_between, summary_ms
from notify_pipeline.bench.workload import add_contacts, produce_steady
from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport
from notify_pipeline.whatsapp.client import ClientSettings
from notify_pipeline.whatsapp.messages import notification_id_of

# After the producer's last enqueue, how long the rows may take to be sent (a backlog at the limit).
SETTLE_S = 60.0


async def _run(
    ctx: BenchContext, client: ClientSettings, config: DrainConfig, count: int, rate: float
) -> tuple[list[int], DrainReport, bool]:
    notifications = ctx.workload.take(count)
    add_contacts(ctx.conn, notifications)  # before the clock starts, as a signed-up user would have
    producer_conn = await connect_async(ctx.url, actor="bench-producer")
    try:
        async with ServingDrain(ctx, client, config) as serving:
            ids = await produce_steady(producer_conn, notifications, rate)
            settled = serving.running and await until_settled(producer_conn, ids, SETTLE_S + len(ids) / rate)
            report = await serving.stop()
    finally:
        await producer_conn.close()
    return ids, report, settled


def _latencies(ctx: BenchContext, ids: list[int]) -> tuple[list[float], list[float], list[float]]:
    """(accepted - created, sent_at - created, created times) per notification, in seconds."""
    rows = ctx.conn.execute(
        "SELECT id, extract(epoch FROM created_at)::float8, extract(epoch FROM sent_at)::float8 "
        "FROM notifications WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    created = {row_id: at for row_id, at, _ in rows}
    to_sent = [sent - at for _, at, sent in rows if sent is not None]
    to_accepted: list[float] = []
    if ctx.endpoint.control is not None:
        for message in ctx.endpoint.control.messages():
            key = notification_id_of(message.get("biz_opaque_callback_data"))
            if key is not None and key in created:
                to_accepted.append(message["received_at"] - created[key])
    return to_accepted, to_sent, list(created.values())


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    tier = options.rate_per_s
    config = ctx.drain_config(throughput_per_s=tier, pair_limit=True, serve=True)
    # The steadiest load one number carries: its tier less the pacing margin (inbound messages
    # count against the tier too). A load at the full tier would outgrow the pace and queue up.
    rate = tier * (1 - config.pacing.margin)
    count = max(1, round(rate * options.steady_seconds))
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=tier, latency_ms=0.0)
    database.clear_queue(ctx.conn)
    client = ctx.endpoint.for_concurrency(options.concurrency)
    ids, report, settled = asyncio.run(_run(ctx, client, config, count, rate))
    to_accepted, to_sent, created = _latencies(ctx, ids)
    produced = rate_between(created)
    emulator = ctx.emulator_counts()
    return {
        "tier_per_s": tier,
        "load_per_s": round(rate, 2),
        "seconds": options.steady_seconds,
        "enqueued": len(ids),
        "enqueue_rate_per_s": round(produced, 2) if produced else None,
        "drain": drain_summary(report),
        "all_settled": settled,
        "enqueue_to_accepted": summary_ms(to_accepted)
        if ctx.endpoint.control is not None
        else {"skipped": "no emulator control API at --base-url"},
        "enqueue_to_sent_at": summary_ms(to_sent),
        "refused_130429": throughput_refusals(emulator),
        "queue_after": ctx.statuses(),
        "emulator": emulator,
    }

"""Fault bench, part 2: a 503 storm against a serving drain while an application keeps enqueuing.

One serving drain (as the Dagster send run, with the product's breaker settings and the demo
templates' retry budget) sends a steady stream through the emulator at Meta's limit. After a calm
start, a fault rule makes the whole API answer Meta's 503 (131016), the phone number's node
included, so the breaker's probe fails too, for `storm_s` seconds (default ten minutes: longer than
the retry budget). Then the rule goes, the stream goes on a little, and the bench waits for every
row to settle. Counted from the emulator: failed POSTs and probes during the storm, each message
accepted once after it, and how soon sending resumed; from the database: rows failed, attempts used.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import psycopg

from notify_pipeline.bench.context import BenchContext, ServingDrain, drain_summary, until_settled
from notify_pipeline.bench.workload import add_contacts, produce_steady
from notify_pipeline.db.connect import connect_async

# The application's stream: 10/s, so a ten-minute storm leaves 6,000 rows to catch up on.
STREAM_PER_S = 10.0
CALM_S = 5.0  # the stream before the storm and after it
# Meta's answer in an outage (HTTP 503), to sends and to the probe's read of the phone number.
STORM_RULE = {"mode": "error", "code": 131016, "whole_api": True}
STORM_CODE = "131016"
PROGRESS_EVERY_S = 60.0
# Rows deferred by one 5xx before the breaker opened come due within the first retry's back-off.
SETTLE_MARGIN_S = 300.0
EXPIRED = "expired"  # the policy's last_error_code for a row past expires_at


def _stats(ctx: BenchContext) -> dict[str, Any]:
    assert ctx.endpoint.control is not None
    return ctx.endpoint.control.stats()


def _faults(ctx: BenchContext) -> httpx.Client:
    """The emulator's fault rules (POST to add one, DELETE to clear them)."""
    assert ctx.endpoint.control is not None
    base = ctx.endpoint.control.base_url
    return httpx.Client(base_url=f"{base}/_emulator", trust_env=False, timeout=30)


async def _storm(ctx: BenchContext, storm_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """The storm itself: the rule on for storm_s, the emulator's counts around it."""
    with _faults(ctx) as faults:
        before = await asyncio.to_thread(_stats, ctx)
        began = time.time()
        (await asyncio.to_thread(faults.post, "/faults", json=STORM_RULE)).raise_for_status()
        ends = time.monotonic() + storm_s
        while (left := ends - time.monotonic()) > 0:
            await asyncio.sleep(min(left, PROGRESS_EVERY_S))
            if ends - time.monotonic() > 1:
                progress(f"503 storm: {ends - time.monotonic():.0f} s to go")
        during = await asyncio.to_thread(_stats, ctx)
        (await asyncio.to_thread(faults.delete, "/faults")).raise_for_status()
        ended = time.time()
    return {"began": began, "ended": ended, "before": before, "during": during}


async def _run(ctx: BenchContext, storm_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    options = ctx.options
    items = ctx.workload.take(math.ceil(STREAM_PER_S * (2 * CALM_S + storm_s)))
    add_contacts(ctx.conn, items)
    serving_s = SETTLE_MARGIN_S + len(items) / options.rate_per_s * 2
    # A lifetime past the storm and the catch-up: the bench's pause ends the drain, not its lifetime.
    config = replace(
        ctx.drain_config(throughput_per_s=options.rate_per_s, pair_limit=True, serve=True),
        max_seconds=storm_s + 2 * CALM_S + serving_s + 60,
    )
    conn = await connect_async(ctx.url, actor="bench-producer")
    try:
        async with ServingDrain(ctx, ctx.endpoint.for_concurrency(options.concurrency), config) as serving:
            producer = asyncio.create_task(produce_steady(conn, items, STREAM_PER_S))
            await asyncio.sleep(CALM_S)
            storm = await _storm(ctx, storm_s, progress)
            ids = await producer
            progress(f"503 storm over: waiting for {len(ids):,} rows to settle")
            settled = await until_settled(conn, ids, serving_s)
            report = await serving.stop()
    finally:
        await conn.close()
    return {**storm, "ids": ids, "settled": settled, "report": report, "config": config}


def failures_by_cause(conn: psycopg.Connection) -> dict[str, int]:
    """Failed rows by last_error_code ('expired': past its expiry, by design not sent)."""
    rows = conn.execute(
        "SELECT coalesce(last_error_code, 'unknown'), count(*) FROM notifications WHERE status = 'failed' "
        "GROUP BY 1"
    ).fetchall()
    return {cause: count for cause, count in rows}


def _retries(ctx: BenchContext) -> dict[str, Any]:
    used, most = ctx.conn.execute(
        "SELECT count(*) FILTER (WHERE retry_count > 0), coalesce(max(retry_count), 0) FROM notifications"
    ).fetchone()  # type: ignore[misc]
    return {"rows_that_used_attempts": used, "most_attempts_used": most}


def measure(ctx: BenchContext, storm_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    control = ctx.endpoint.control
    assert control is not None, "the caller skips this part without the emulator"
    options = ctx.options
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=options.rate_per_s, latency_ms=0.0)
    ctx.fresh_queue(0)
    run = asyncio.run(_run(ctx, storm_s, progress))
    before, during, config = run["before"], run["during"], run["config"]
    storm_len = run["ended"] - run["began"]
    ledger, after = control.messages(), control.stats()
    probes = during["node_reads"] - before["node_reads"]
    resumed = min((m["received_at"] for m in ledger if m["received_at"] >= run["ended"]), default=None)
    last = max((m["received_at"] for m in ledger), default=None)
    statuses, causes = ctx.statuses(), failures_by_cause(ctx.conn)
    recorded = {
        w for (w,) in ctx.conn.execute("SELECT wa_message_id FROM notifications WHERE status = 'sent'")
    }
    return {
        "storm_s": round(storm_len, 1),
        "fault": STORM_RULE,
        "stream_per_s": STREAM_PER_S,
        "enqueued": len(run["ids"]),
        "enqueued_during_storm": round(STREAM_PER_S * storm_len),
        "rows_failed": statuses.get("failed", 0),
        "rows_failed_by_cause": causes,
        # A row past its expiry (an OTP after 10 minutes) is not sent, outage or not: counted apart.
        "rows_failed_by_the_outage": statuses.get("failed", 0) - causes.get(EXPIRED, 0),
        "queue_after": statuses,
        "all_settled": run["settled"],
        "failed_posts_during_storm": during["by_code"].get(STORM_CODE, 0)
        - before["by_code"].get(STORM_CODE, 0),
        "rejected_during_storm": during["rejected"] - before["rejected"],
        "probes_during_storm": probes,
        "probes_per_minute": round(probes / (storm_len / 60), 2) if storm_len > 0 else None,
        "breaker": {
            "after_outage_answers": config.breaker_after,
            "probe_max_wait_s": config.breaker_max_wait_s,
        },
        "storm_end_to_sending_s": None if resumed is None else round(resumed - run["ended"], 2),
        "storm_end_to_last_send_s": None if last is None else round(last - run["ended"], 2),
        "emulator_accepted": len(ledger),
        "distinct_messages": len({m["biz_opaque_callback_data"] for m in ledger}),
        "duplicates": after["duplicates"],
        "sent_rows_not_in_ledger": len(recorded - {m["wamid"] for m in ledger}),
        "refused_130429": after["by_code"].get("130429", 0),
        **_retries(ctx),
        "drain": drain_summary(run["report"]),
    }

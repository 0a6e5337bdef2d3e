"""Measurement 5: a one-time code behind a backlog.

`priority_backlog` MARKETING notifications (weekly_promo, each to a recipient of its own whose
quiet hours are far from now) are enqueued at once (one INSERT ... SELECT queueNotification(...)
FROM generate_series) before the drain starts. One serving drain then sends them at `rate_per_s`,
the emulator enforcing the same limit. Once it is sending, `priority_otps` one-time codes
(otp_code, AUTHENTICATION, meta.priority 100) are enqueued one at a time, `priority_gap_s` apart,
each in its own transaction. For each OTP: the emulator's receive time minus the moment its
enqueue's commit returned, and how many backlog rows were still waiting (not yet accepted) when
the OTP was accepted. After the last OTP is sent the drain is paused (ending it), the pause
lifted, and the rest of the backlog cleared.

The drain holds at most about `ahead_s` (1 s) of sending ahead of its senders, and the claim takes
the highest priority first: an OTP should wait at most about that second behind any backlog.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.bench import database
from notify_pipeline.bench.context import (
    BenchContext,
    ServingDrain,
    accepted_at,
    drain_summary,
    throughput_refusals,
    until_settled,
)
from notify_pipeline.bench.stats import summary_ms
from notify_pipeline.bench.workload import quiet_window_far_from
from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport
from notify_pipeline.whatsapp.client import ClientSettings
from notify_pipeline.whatsapp.messages import Button, template_message

OTP_PRIORITY = 100
BACKLOG_PREFIX = "+2508"  # recipients: +2508 and 8 digits, apart from the workload's +2507...
OTP_PREFIX = "+2509"
# Before the first OTP: the drain has claimed its first rows and sends at the limit.
WARM_UP_S = 1.0
SETTLE_S = 30.0

ADD_BACKLOG_CONTACTS = """
INSERT INTO contact_preferences (wa_id, timezone, quiet_hours_start, quiet_hours_end)
SELECT %(prefix)s || lpad(g::text, 8, '0'), 'UTC', %(start)s, %(end)s FROM generate_series(1, %(count)s) AS g
ON CONFLICT (wa_id) DO NOTHING
"""
ENQUEUE_BACKLOG = """
SELECT count(queueNotification(
           jsonb_set(%(message)s::jsonb, '{to}', to_jsonb(%(prefix)s || lpad(g::text, 8, '0'))),
           %(meta)s::jsonb || jsonb_build_object('correlation_id', 'bench-backlog-' || g)))
  FROM generate_series(1, %(count)s) AS g
"""


def _backlog_message() -> dict[str, Any]:
    message = template_message(f"{BACKLOG_PREFIX}00000000", "weekly_promo", "en", body=["2 rides for 1"])
    return {"to": message["to"], "template": message["template"]}


def _otp(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    code = f"{n:06d}"
    to = f"{OTP_PREFIX}{n:08d}"
    message = template_message(to, "otp_code", "en", body=[code], buttons=[Button(0, "url", code)])
    meta = {"domain": "core", "priority": OTP_PRIORITY, "correlation_id": f"bench-otp-{n}"}
    return {"to": to, "template": message["template"]}, meta


def _enqueue_backlog(conn: psycopg.Connection, count: int) -> float:
    """The backlog and its contacts; how long the enqueue took (seconds)."""
    start, end = quiet_window_far_from(datetime.now(UTC))
    conn.execute(ADD_BACKLOG_CONTACTS, {"prefix": BACKLOG_PREFIX, "start": start, "end": end, "count": count})
    began = time.monotonic()
    conn.execute(
        ENQUEUE_BACKLOG,
        {
            "message": Jsonb(_backlog_message()),
            "meta": Jsonb({"domain": "core"}),
            "prefix": BACKLOG_PREFIX,
            "count": count,
        },
    )
    return time.monotonic() - began


async def _run(
    ctx: BenchContext, client: ClientSettings, config: DrainConfig
) -> tuple[dict[int, float], bool, DrainReport]:
    options = ctx.options
    conn = await connect_async(ctx.url, actor="bench-producer")
    committed: dict[int, float] = {}
    try:
        async with ServingDrain(ctx, client, config) as serving:
            await asyncio.sleep(WARM_UP_S)
            started = time.monotonic()
            for n in range(options.priority_otps):
                pause = started + n * options.priority_gap_s - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                message, meta = _otp(n + 1)
                cur = await conn.execute("SELECT queueNotification(%s, %s)", (Jsonb(message), Jsonb(meta)))
                at = time.time()
                row = await cur.fetchone()
                assert row is not None
                committed[row[0]] = at
            settled = await until_settled(conn, list(committed), SETTLE_S)
            report = await serving.stop()
    finally:
        await conn.close()
    return committed, settled, report


def _backlog_accepted(ctx: BenchContext) -> list[float]:
    """Receive times of the backlog rows accepted (the emulator's, else sent_at)."""
    if ctx.endpoint.control is not None:
        return [
            m["received_at"]
            for m in ctx.endpoint.control.messages()
            if m.get("template_name") == "weekly_promo"
        ]
    rows = ctx.conn.execute(
        "SELECT extract(epoch FROM sent_at)::float8 FROM notifications "
        "WHERE template_name = 'weekly_promo' AND sent_at IS NOT NULL"
    ).fetchall()
    return [at for (at,) in rows]


def _claimed_at(ctx: BenchContext, ids: list[int]) -> dict[int, float]:
    """When the drain claimed each row (its first 'claimed' audit event, the database's clock)."""
    rows = ctx.conn.execute(
        "SELECT notification_id, extract(epoch FROM min(created_at))::float8 FROM notification_audit_log "
        "WHERE notification_id = ANY(%s) AND event_type = 'claimed' GROUP BY notification_id",
        (ids,),
    ).fetchall()
    return {row_id: at for row_id, at in rows}


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    rate, backlog = options.rate_per_s, options.priority_backlog
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=rate, latency_ms=0.0)
    database.clear_queue(ctx.conn)
    enqueue_s = _enqueue_backlog(ctx.conn, backlog)
    database.settle(ctx.conn)
    config = ctx.drain_config(throughput_per_s=rate, pair_limit=True, serve=True)
    client = ctx.endpoint.for_concurrency(options.concurrency)
    committed, settled, report = asyncio.run(_run(ctx, client, config))
    accepted, source = accepted_at(ctx, list(committed))
    backlog_times = sorted(_backlog_accepted(ctx))
    claimed = _claimed_at(ctx, list(committed))
    otps = []
    for row_id, at in committed.items():
        got, claim = accepted.get(row_id), claimed.get(row_id)
        waiting = None if got is None else backlog - bisect.bisect_right(backlog_times, got)
        otps.append(
            {
                "id": row_id,
                "commit_to_accepted_ms": None if got is None else round((got - at) * 1000, 1),
                "commit_to_claimed_ms": None if claim is None else round((claim - at) * 1000, 1),
                "backlog_waiting": waiting,
            }
        )
    latencies = [accepted[i] - at for i, at in committed.items() if i in accepted]
    queue_after = ctx.statuses()
    emulator = ctx.emulator_counts()
    database.clear_queue(ctx.conn)
    return {
        "backlog": backlog,
        "backlog_enqueue_s": round(enqueue_s, 2),
        "backlog_enqueue_per_s": round(backlog / enqueue_s) if enqueue_s > 0 else None,
        "limit_per_s": rate,
        "ahead_s": config.ahead_s,
        "otps": len(committed),
        "otp_priority": OTP_PRIORITY,
        "gap_s": options.priority_gap_s,
        "accepted_source": source,
        "otp": otps,
        "commit_to_accepted": summary_ms(latencies),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "otp_lost": len(committed) - len(latencies),
        "backlog_sent": len(backlog_times),
        "all_settled": settled,
        "drain": drain_summary(report),
        "queue_after": queue_after,
        "refused_130429": throughput_refusals(emulator),
        "emulator": emulator,
    }

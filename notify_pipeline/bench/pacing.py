"""Measurement: a backlog drained under the sender's tier, under the load of `notify-pipeline dev`.

`pacing_rows` notifications are queued at once and one drain, with the product's default
settings, sends them with the tier set to --rate while the emulator enforces that tier (less
--pacing-inbound-share: what the number's inbound messages would use of it). As under
`dev`, the emulator posts every message's status webhooks (sent, delivered, read) to a
`notify-pipeline serve` process on the scratch database: that load makes answers come unevenly,
which is what ran a drain paced exactly at the tier into 130429.

Reported: the achieved rate over the tier (the emulator's receive times during the drain), the
130429 refusals and their share of sends, and the rows a refusal deferred, sent by follow-up
drains once due (so every row ends sent, once). At an outside endpoint (no control API) the
webhooks are not set up, the rate comes from sent_at and the refusals are unknown.
"""

from __future__ import annotations

import time
from typing import Any

from notify_pipeline.bench.context import (
    DRAIN_BUDGET_S,
    NO_DEFAULT_QUIET_HOURS,
    BenchContext,
    throughput_refusals,
)
from notify_pipeline.bench.stats import busiest_window, rate_between
from notify_pipeline.bench.webhooks import SECRET, start_service
from notify_pipeline.engine.drain import run_drain
from notify_pipeline.engine.drain_config import DrainConfig
from notify_pipeline.engine.pacing import THROUGHPUT_REACHED, PacingRule

# A row refused with 130429 waits a second or two (no attempt used); a bounded drain ends when
# nothing is due, so follow-up drains send those once they are due.
FOLLOW_UP_DRAINS = 10
DEFERRED_DUE_TIMEOUT_S = 60.0
THROUGHPUT_KEY = str(THROUGHPUT_REACHED)  # as the drain's report counts deferrals


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    tier, rows, inbound = options.rate_per_s, options.pacing_rows, options.pacing_inbound_share
    # Meta counts inbound messages against the same tier; the emulator counts only what we send.
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=tier * (1 - inbound), latency_ms=0.0)
    ctx.fresh_queue(rows)
    # The product's defaults (batch size, concurrency, pacing rule), as a Dagster send run has them.
    config = DrainConfig(
        max_seconds=DRAIN_BUDGET_S, throughput_per_s=tier, policy=NO_DEFAULT_QUIET_HOURS, trigger="bench"
    )
    client = ctx.endpoint.for_concurrency(config.concurrency)
    control = ctx.endpoint.control
    service = None
    try:
        if control is not None:
            service, base = start_service(ctx.url, 1)
            control.configure(app_secret=SECRET, webhook_url=f"{base}/webhooks/whatsapp")
        report = run_drain(ctx.url, client, config)
        times, source = ctx.accepted_times()
        follow_ups = _send_the_deferred(ctx, client, config)
        emulator = ctx.emulator_counts()
    finally:
        if control is not None:
            control.configure(webhook_url=None)
            control.reset()
        if service is not None:
            service.terminate()
            service.wait(10)
    achieved = rate_between(times)
    refused = throughput_refusals(emulator)
    sends = None if refused is None else emulator["accepted"] + emulator["rejected"]
    return {
        "tier_per_s": tier,
        "inbound_share": inbound,
        "pacing": _rule(config.pacing, tier),
        "rows": rows,
        "status_webhooks": "to notify-pipeline serve" if control is not None else "not set up",
        "sent": report.sent,
        "deferred": dict(report.deferred),
        "stopped_by": report.stopped_by,
        "duration_s": round(report.duration_s, 1),
        "achieved_per_s": round(achieved, 2) if achieved else None,
        "achieved_source": source,
        "achieved_share_of_tier": round(achieved / tier, 4) if achieved else None,
        "busiest_1s": busiest_window(times),
        "refused_130429": refused,
        "sends": sends,
        "refused_share": round(refused / sends, 5) if refused is not None and sends else None,
        "follow_up": follow_ups,
        "queue_after": ctx.statuses(),
        "left_deferred_130429": _deferred_by_throughput(ctx, due_later=False),
        "emulator": emulator,
    }


def _rule(rule: PacingRule, tier: float) -> dict[str, Any]:
    return {
        "paced_per_s": round(tier * (1 - rule.margin), 2),
        "margin": rule.margin,
        "decrease": rule.decrease,
        "recovery_per_s": round(tier * rule.recovery_per_s, 2),
        "floor_per_s": round(tier * rule.floor, 2),
    }


def _send_the_deferred(ctx: BenchContext, client: Any, config: DrainConfig) -> dict[str, Any]:
    """Drain again, once the rows a 130429 deferred are due, until none is left; what those drains
    sent. (Rows a status webhook failed with a code that retries much later, such as 131049, stay
    queued: they are no part of this.)"""
    drains = sent = refused = 0
    while _deferred_by_throughput(ctx, due_later=False) and drains < FOLLOW_UP_DRAINS:
        deadline = time.monotonic() + DEFERRED_DUE_TIMEOUT_S
        while _deferred_by_throughput(ctx, due_later=True) and time.monotonic() < deadline:
            time.sleep(0.1)
        report = run_drain(ctx.url, client, config)
        sent, refused, drains = sent + report.sent, refused + report.deferred[THROUGHPUT_KEY], drains + 1
    return {"drains": drains, "sent": sent, "deferred_130429": refused}


def _deferred_by_throughput(ctx: BenchContext, *, due_later: bool) -> int:
    """Rows queued after a 130429 (with `due_later`: only those not yet due)."""
    row = ctx.conn.execute(
        "SELECT count(*) FROM notifications WHERE status = 'queued' AND last_error_code = %s "
        "AND (NOT %s OR next_attempt_at > now())",
        (THROUGHPUT_KEY, due_later),
    ).fetchone()
    return row[0] if row is not None else 0

"""Measurement 2: does a configured limit hold? The emulator enforces Meta's 80/s, the drain paces.

The achieved rate is what the API saw: accepted messages over the span of the emulator's receive
times (at an outside endpoint: the span of sent_at in the database, which is coarser because
write-back is batched). Any 130429 from the emulator means the engine went over the limit.
"""

from __future__ import annotations

from typing import Any

from notify_pipeline.bench.context import BenchContext, throughput_refusals
from notify_pipeline.bench.stats import busiest_window, rate_between
from notify_pipeline.engine.drain import run_drain


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    rate = options.rate_per_s
    ctx.reset_emulator(limits_enabled=True, throughput_per_s=rate, latency_ms=0.0)
    ctx.fresh_queue(options.rate_messages)
    config = ctx.drain_config(throughput_per_s=rate, pair_limit=True)
    report = run_drain(ctx.url, ctx.endpoint.for_concurrency(options.concurrency), config)
    times, source = ctx.accepted_times()
    achieved = rate_between(times)
    emulator = ctx.emulator_counts()
    return {
        "limit_per_s": rate,
        "messages": options.rate_messages,
        "sent": report.sent,
        "not_sent": report.processed - report.sent,
        "stopped_by": report.stopped_by,
        "duration_s": round(report.duration_s, 3),
        "achieved_per_s": round(achieved, 2) if achieved else None,
        "achieved_source": source,
        "deviation_pct": round((achieved - rate) / rate * 100, 2) if achieved else None,
        "drain_sent_per_s": round(report.sent_per_s, 2),
        "busiest_1s": busiest_window(times),
        "refused_130429": throughput_refusals(emulator),
        "retried_or_deferred": dict(report.retried + report.deferred),
        "queue_after": ctx.statuses(),
        "emulator": emulator,
    }

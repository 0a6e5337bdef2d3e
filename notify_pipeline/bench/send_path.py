"""Measurement 1: the full send path with rate limits off (claim, policy, HTTP, write-back, audit).

N notifications are enqueued, then one drain() sends them all with no throughput or pair limit.
Messages per second is sent / the drain's duration (start and tail included); the steady rate
leaves out the first and last tenth of the accepted messages. With API latency L, at most concurrency / L
requests per second can complete; the share of that bound shows whether the engine keeps its
requests in flight.
"""

from __future__ import annotations

from typing import Any

from notify_pipeline.bench.context import BenchContext
from notify_pipeline.bench.stats import steady_rate
from notify_pipeline.engine.drain import run_drain


def measure(ctx: BenchContext, latency_ms: float | None) -> dict[str, Any]:
    """One cell at the given emulator latency (None: whatever the outside endpoint answers with)."""
    options = ctx.options
    if latency_ms is not None:
        ctx.reset_emulator(limits_enabled=False, latency_ms=latency_ms)
    ctx.fresh_queue(options.messages)
    config = ctx.drain_config(throughput_per_s=None, pair_limit=False)
    report = run_drain(ctx.url, ctx.endpoint.for_concurrency(options.concurrency), config)
    result: dict[str, Any] = {
        "latency_ms": latency_ms,
        "messages": options.messages,
        "sent": report.sent,
        "not_sent": report.processed - report.sent,
        "stopped_by": report.stopped_by,
        "duration_s": round(report.duration_s, 3),
        "messages_per_s": round(report.sent_per_s, 1),
        "steady_per_s": _rounded(steady_rate(ctx.accepted_times()[0])),
        "queue_after": ctx.statuses(),
        "emulator": ctx.emulator_counts(),
    }
    if latency_ms is None:
        result["latency_note"] = "as the endpoint answers: without the emulator it cannot be set"
    elif latency_ms > 0:
        bound = options.concurrency / (latency_ms / 1000)
        result["concurrency_bound_per_s"] = round(bound, 1)
        result["share_of_bound"] = round(report.sent_per_s / bound, 3)
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

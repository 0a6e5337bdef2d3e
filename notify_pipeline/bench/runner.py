"""One bench run: a scratch database, the emulator (or a given endpoint), the six measurements."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from notify_pipeline.bench import (
    ceiling,
    database,
    faults,
    latency,
    pacing,
    peer,
    pinning,
    priority,
    rate_limit,
    send_path,
    targets,
    wakeup,
    webhooks,
)
from notify_pipeline.bench.context import BenchContext
from notify_pipeline.bench.endpoint import Endpoint, open_endpoint
from notify_pipeline.bench.options import BenchOptions
from notify_pipeline.bench.workload import Workload
from notify_pipeline.db import urls
from notify_pipeline.whatsapp.client import ClientSettings


def _settings(options: BenchOptions) -> dict[str, Any]:
    return {
        "batch_size": options.batch_size,
        "concurrency": options.concurrency,
        "messages": options.messages,
        "latencies_ms": list(options.latencies_ms),
        "rate_per_s": options.rate_per_s,
        "rate_messages": options.rate_messages,
        "steady_seconds": options.steady_seconds,
        "wakeup_messages": options.wakeup_messages,
        "wakeup_gap_s": options.wakeup_gap_s,
        "deferred_messages": options.deferred_messages,
        "deferred_delay_s": options.deferred_delay_s,
        "priority_backlog": options.priority_backlog,
        "priority_otps": options.priority_otps,
        "priority_gap_s": options.priority_gap_s,
        "ceiling_rows": options.ceiling_rows,
        "pacing_rows": options.pacing_rows,
        "pacing_inbound_share": options.pacing_inbound_share,
        "dev_restarts": options.dev_restarts,
        "storm_seconds": options.storm_seconds,
        "peer_in_flight": options.peer_in_flight,
        "peer_rounds": options.peer_rounds,
        "peer_transports": list(options.peer_transports),
        "sections": list(options.sections),
    }


def _sends(options: BenchOptions) -> bool:
    return any(
        options.runs(section)
        for section in (
            "send_path",
            "rate_limit",
            "latency",
            "wakeup",
            "priority",
            "faults",
            "pacing",
            "peer",
        )
    )


@contextmanager
def _no_endpoint() -> Iterator[Endpoint]:
    yield Endpoint(ClientSettings(), None, "none (no send measurement selected)")


def run_bench(
    options: BenchOptions, server_url: str, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the selected measurements on a scratch database beside `server_url`; a JSON-ready dict.

    Start the database server (the embedded one) before calling this: the bench pins its own
    thread to the sender core, and a server started afterwards would inherit that pin.
    `progress` hears one line as each measurement starts.
    """
    started = time.monotonic()
    with pinning.on_sender_core(options.pin) as pinned:
        output: dict[str, Any] = {
            "benchmark": "notify_pipeline_bench",
            "machine": {**pinning.describe(pinned), "python": platform.python_version()},
            "settings": _settings(options),
        }
        with database.scratch_database(server_url) as url, database.open_connection(url) as conn:
            catalog = database.load_demo_templates(conn)
            output["database"] = {
                "server": urls.mask(server_url),
                "scratch_database": urls.database_name(url),
                "server_version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            }
            with open_endpoint(options) if _sends(options) else _no_endpoint() as endpoint:
                output["endpoint"] = endpoint.description
                output["transport"] = endpoint.client.transport
                ctx = BenchContext(url, conn, Workload(catalog), endpoint, options)
                output.update(_send_measurements(ctx, progress))
                if options.runs("faults"):
                    output["faults"] = faults.measure(ctx, progress)
            output.update(_measure_each(ctx, progress, _WITHOUT_SENDS))
    output["targets"] = {**targets.check(output), **faults.check(output)}
    output["bench_seconds"] = round(time.monotonic() - started, 1)
    return output


# A measurement: its section, the line `progress` hears as it starts, and the measurement.
Measurement = tuple[str, Callable[[BenchOptions], str], Callable[[BenchContext], Any]]
# Measurements 2 to 5 and pacing, which send (after the send path, in this order).
_AFTER_SEND_PATH: tuple[Measurement, ...] = (
    ("rate_limit", lambda o: f"rate limit {o.rate_per_s:g}/s", rate_limit.measure),
    ("latency", lambda o: f"enqueue-to-accepted latency at {o.rate_per_s:g}/s", latency.measure),
    (
        "wakeup",
        lambda o: (
            f"wake-up of an idle serving drain: {o.wakeup_messages} enqueues, "
            f"{o.deferred_messages} deferrals coming due"
        ),
        wakeup.measure,
    ),
    (
        "priority",
        lambda o: f"{o.priority_otps} OTPs behind {o.priority_backlog:,} MARKETING rows",
        priority.measure,
    ),
    (
        "pacing",
        lambda o: f"a {o.pacing_rows:,}-row backlog at the tier {o.rate_per_s:g}/s, status webhooks on",
        pacing.measure,
    ),
    (
        "peer",
        lambda o: (
            f"the send path beside PgQueuer + aiohttp: {o.messages:,} messages, {o.peer_in_flight} in "
            f"flight, {o.peer_rounds} alternating rounds"
        ),
        peer.measure,
    ),
)
# Those that need no send endpoint.
_WITHOUT_SENDS: tuple[Measurement, ...] = (
    (
        "webhooks",
        lambda o: (
            f"status webhooks: {o.webhook_statuses:,} single-status POSTs, {o.webhook_concurrency} at once"
        ),
        webhooks.measure,
    ),
    ("ceiling", lambda _: "raw-SQL claim-and-mark ceiling", ceiling.measure),
)


def _measure_each(
    ctx: BenchContext, progress: Callable[[str], None], measurements: tuple[Measurement, ...]
) -> dict[str, Any]:
    """Run each selected measurement of `measurements` in turn; its result under its section."""
    results = {}
    for section, announce, measure in measurements:
        if ctx.options.runs(section):
            progress(announce(ctx.options))
            results[section] = measure(ctx)
            # A section's own summary table (the peer's), printed as it ends.
            if isinstance(results[section], dict):
                for line in results[section].get("table", ()):
                    progress(line)
    return results


def _send_measurements(ctx: BenchContext, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measurements 1 to 5, those that send (each only if selected)."""
    options, results = ctx.options, {}
    if options.runs("send_path"):
        # Without the emulator's control API the latency cannot be set: one cell, as the endpoint answers.
        latencies = options.latencies_ms if ctx.endpoint.control is not None else (None,)
        results["send_path"] = []
        for ms in latencies:
            progress(f"send path, limits off, {'endpoint' if ms is None else f'{ms:g} ms'} latency")
            results["send_path"].append(send_path.measure(ctx, ms))
    results.update(_measure_each(ctx, progress, _AFTER_SEND_PATH))
    return results

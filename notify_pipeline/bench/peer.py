"""Measurement (on request): the send path side by side with a peer, PgQueuer + aiohttp (issue #21).

The same workload through both, on the same emulator and PostgreSQL, with `peer_in_flight`
requests in flight, at each emulator latency: N notifications are enqueued for the product and
sent by one drain with limits off; the very bodies it sent (`biz_opaque_callback_data` included)
then go through PgQueuer as N jobs. Product and peer alternate, and each cell is the median of
`peer_rounds` rounds, since single runs on a small busy machine vary widely. The product runs
over the HTTP transport in use, then over each of `peer_transports` (WHATSAPP_HTTP_TRANSPORT's
values), before the peer's turn.

A run's rate is the messages sent over the wall-clock time of the call (connect to done); a run
counts only if the emulator's ledger holds every enqueued id exactly once (`sent_once`). CPU
seconds per 1,000 messages: the bench process (the drain, or PgQueuer and its sender) and
PostgreSQL (bench/cpu.py).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, get_args

from notify_pipeline.bench import cpu, peer_pgqueuer
from notify_pipeline.bench.context import BenchContext
from notify_pipeline.bench.emulator_process import EmulatorControl
from notify_pipeline.bench.peer_table import render
from notify_pipeline.engine.drain import run_drain
from notify_pipeline.whatsapp.client import Transport
from notify_pipeline.whatsapp.messages import notification_id_of, send_request

PEER = "peer"
# Issue #21: the default at least as fast as the peer at 0 ms, and at 95 % of the bound above.
MIN_RATIO_AT_0MS = 1.0
MIN_SHARE_OF_BOUND = 0.95


def measure(ctx: BenchContext) -> dict[str, Any]:
    control = ctx.endpoint.control
    if control is None:
        return {"skipped": "the peer needs the emulator: its ledger and its latency setting"}
    options = ctx.options
    transports = _transports(ctx.endpoint.client.transport, options.peer_transports)
    postmaster = cpu.find_postmaster(ctx.conn)
    runs: list[dict[str, Any]] = []
    with peer_pgqueuer.peer_database(ctx.url) as peer_url:
        for round_number in range(1, options.peer_rounds + 1):
            for latency_ms in options.latencies_ms:
                for transport in transports:
                    ids = ctx.fresh_queue(options.messages)
                    ctx.reset_emulator(limits_enabled=False, latency_ms=latency_ms)
                    runs.append(_product_run(ctx, transport, postmaster) | _ledger(control, ids))
                    runs[-1] |= {"round": round_number, "latency_ms": latency_ms}
                # The notifications the drain just sent, as it sent them.
                peer_pgqueuer.enqueue(peer_url, _bodies(ctx, ids))
                ctx.reset_emulator(limits_enabled=False, latency_ms=latency_ms)
                runs.append(_peer_run(ctx, peer_url, postmaster) | _ledger(control, ids))
                runs[-1] |= {"round": round_number, "latency_ms": latency_ms}
    cells = [
        _cell(runs, latency_ms, transports, options.peer_in_flight) for latency_ms in options.latencies_ms
    ]
    default = ctx.endpoint.client.transport
    result = {
        "peer": peer_pgqueuer.describe(),
        "in_flight": options.peer_in_flight,
        "messages": options.messages,
        "rounds": options.peer_rounds,
        "transport_in_use": default,
        "transport_source": "WHATSAPP_HTTP_TRANSPORT"
        if os.environ.get("WHATSAPP_HTTP_TRANSPORT")
        else "the product's default",
        "postgres_cpu": "from /proc"
        if postmaster is not None
        else "not readable: server not on this machine",
        "all_sent_once": all(run["sent_once"] for run in runs),
        "cells": cells,
        "issue_21": _issue_21(cells, default),
        "runs": runs,
    }
    result["table"] = render(result)
    return result


def _transports(in_use: str, also: Sequence[str]) -> list[str]:
    """The product's transports to measure: the one in use, then those of `also` the client has."""
    known = get_args(Transport)
    return [in_use, *(name for name in dict.fromkeys(also) if name != in_use and name in known)]


def _bodies(ctx: BenchContext, ids: Sequence[int]) -> list[bytes]:
    """The bodies the product POSTs for these rows (engine/policy.py builds them with send_request)."""
    rows = ctx.conn.execute(
        "SELECT id, payload FROM notifications WHERE id = ANY(%s) ORDER BY id", (list(ids),)
    ).fetchall()
    return [json.dumps(send_request(row_id, payload)).encode() for row_id, payload in rows]


def _product_run(ctx: BenchContext, transport: str, postmaster: int | None) -> dict[str, Any]:
    """One drain with limits off, `peer_in_flight` requests in flight, over the transport."""
    in_flight = ctx.options.peer_in_flight
    config = replace(ctx.drain_config(throughput_per_s=None, pair_limit=False), concurrency=in_flight)
    client = replace(ctx.endpoint.for_concurrency(in_flight), transport=transport)
    with cpu.cpu_spent(postmaster) as spent:
        started = time.monotonic()
        report = run_drain(ctx.url, client, config)
        duration = time.monotonic() - started
    return _figures(transport, report.sent, report.processed - report.sent, duration, spent)


def _peer_run(ctx: BenchContext, peer_url: str, postmaster: int | None) -> dict[str, Any]:
    with cpu.cpu_spent(postmaster) as spent:
        done = peer_pgqueuer.run(peer_url, ctx.endpoint.client, ctx.options.peer_in_flight)
    return _figures(PEER, done.sent, done.failed, done.duration_s, spent)


def _figures(side: str, sent: int, failed: int, duration_s: float, spent: cpu.CpuSpent) -> dict[str, Any]:
    return {
        "side": side,
        "sent": sent,
        "failed": failed,
        "duration_s": round(duration_s, 3),
        "messages_per_s": round(sent / duration_s, 1) if duration_s > 0 else None,
        "cpu_s": {"process": round(spent.process_s, 3), "postgres": _rounded(spent.server_s, 3)},
        "cpu_per_1000": spent.per_thousand(sent),
    }


def _ledger(control: EmulatorControl, ids: Sequence[int]) -> dict[str, Any]:
    """What the emulator's ledger holds since its last reset, against the ids enqueued."""
    counts = Counter(notification_id_of(m.get("biz_opaque_callback_data")) for m in control.messages())
    wanted = set(ids)
    ledger = {
        "enqueued": len(wanted),
        "received": sum(counts.values()),
        "once": sum(1 for key in wanted if counts[key] == 1),
        "missing": sum(1 for key in wanted if counts[key] == 0),
        "more_than_once": sum(1 for key in wanted if counts[key] > 1),
        "not_enqueued": sum(count for key, count in counts.items() if key not in wanted),
    }
    sent_once = ledger["once"] == ledger["enqueued"] == ledger["received"]
    return {"ledger": ledger, "sent_once": sent_once}


def _cell(runs: list[dict[str, Any]], latency_ms: float, transports: list[str], in_flight: int) -> dict:
    """Medians over the rounds at one latency: the peer, and each transport of the product."""
    bound = in_flight / (latency_ms / 1000) if latency_ms > 0 else None
    here = [run for run in runs if run["latency_ms"] == latency_ms]
    peer = _median_of([run for run in here if run["side"] == PEER], bound)
    product = {}
    for transport in transports:
        figures = _median_of([run for run in here if run["side"] == transport], bound)
        rate, peer_rate = figures["messages_per_s"], peer["messages_per_s"]
        figures["ratio"] = round(rate / peer_rate, 3) if rate and peer_rate else None
        product[transport] = figures
    return {"latency_ms": latency_ms, "bound_per_s": _rounded(bound, 1), "peer": peer, "product": product}


def _median_of(runs: list[dict[str, Any]], bound: float | None) -> dict[str, Any]:
    """The median rate and CPU figures of these runs, of those that sent each message once; the
    share of the bound at a latency."""
    runs = [run for run in runs if run["sent_once"]]

    def median(values: list[float | None], digits: int) -> float | None:
        known = [value for value in values if value is not None]
        return round(statistics.median(known), digits) if known else None

    rate = median([run["messages_per_s"] for run in runs], 1)
    return {
        "messages_per_s": rate,
        "share_of_bound": round(rate / bound, 3) if rate and bound else None,
        "cpu_per_1000": {
            key: median([run["cpu_per_1000"][key] for run in runs], 4) for key in ("process_s", "postgres_s")
        },
        "rounds": len(runs),
    }


def _issue_21(cells: list[dict[str, Any]], transport: str) -> dict[str, Any]:
    """Issue #21's bar for the transport in use: 1.0x the peer at 0 ms, 95 % of the bound above."""
    checks = {}
    for cell in cells:
        figures = cell["product"][transport]
        if cell["latency_ms"] == 0:
            checks["ratio_0ms"] = {"value": figures["ratio"], "target": f">= {MIN_RATIO_AT_0MS:g}"}
            checks["ratio_0ms"]["met"] = (figures["ratio"] or 0) >= MIN_RATIO_AT_0MS
        else:
            key = f"share_of_bound_{cell['latency_ms']:g}ms"
            share = figures["share_of_bound"]
            checks[key] = {"value": share, "target": f">= {MIN_SHARE_OF_BOUND:g}"}
            checks[key]["met"] = (share or 0) >= MIN_SHARE_OF_BOUND
    return checks


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)

"""The kill -9 of the send run serving now, and the windows of its recovery.

The recovery window runs from the kill until the first receipt after it plus a grace; the wider
catch-up window until latencies are back under a threshold for a stretch of commits. A message
counts in a window when it was waiting at some moment inside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import time
from typing import Any

from notify_pipeline.bench.dagster_latency.deployment import Deployment, log
from notify_pipeline.bench.dagster_latency.load import serving_worker
from notify_pipeline.bench.dagster_latency.report import summary

# (notification id, commit time, first receipt or None)
Rows = list[tuple[int, float, float | None]]


def kill_serving_run(conn, dep: Deployment, wait_s: float = 60.0) -> dict[str, Any]:
    """kill -9 the process of the drain that is sending now (only one of this deployment)."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        worker = serving_worker(conn)
        if worker and worker["host"] == socket.gethostname() and dep.owns(worker["pid"]):
            os.kill(worker["pid"], signal.SIGKILL)
            killed_at = time.time()
            log(f"kill -9 {worker['pid']} (run {worker['run_id']}, drain {worker['worker_id']})")
            return {"killed_at": killed_at, **worker}
        time.sleep(0.5)
    return {"killed_at": None, "error": f"no serving drain of this deployment found within {wait_s:.0f} s"}


def pending_in(rows: Rows, start: float, end: float) -> set[int]:
    """Ids waiting at some moment in [start, end]: committed before its end, received after its start."""
    return {
        i for i, committed, received in rows if committed < end and (received is None or received > start)
    }


def caught_up_at(rows: Rows, after: float, threshold_s: float, stable_s: float) -> float | None:
    """The first commit time after `after` from which every message committed in the next
    `stable_s` seconds was received within `threshold_s`."""
    later = sorted((c, r) for _, c, r in rows if c >= after)
    bad = [c for c, r in later if r is None or r - c > threshold_s]
    for committed, _ in later:
        if not any(committed <= b <= committed + stable_s for b in bad):
            return committed
    return None


def recovery_figures(
    rows: Rows, latency: dict[int, float], killed_at: float, ended: float, args: argparse.Namespace
) -> dict[str, Any]:
    """The phase's figures inside and outside the recovery and catch-up windows of a kill."""
    after = sorted(r for _, _, r in rows if r is not None and r > killed_at)
    first = after[0] if after else None
    window_end = (first if first is not None else ended) + args.recovery_grace
    inside = pending_in(rows, killed_at, window_end)
    caught = caught_up_at(rows, killed_at, args.slow_threshold, args.stable_s)
    wide_end = (caught if caught is not None else ended) + args.recovery_grace
    wide = pending_in(rows, killed_at, wide_end)
    return {
        "recovery": {
            "first_receipt_after_kill_s": round(first - killed_at, 2) if first else None,
            "window_s": round(window_end - killed_at, 2),
            "latency_inside": summary([latency[i] for i in inside if i in latency]),
            "excluded_messages": len(inside),
        },
        "excluding_recovery": summary([v for i, v in latency.items() if i not in inside]),
        "catch_up": {
            "window_s": round(wide_end - killed_at, 2),
            "caught_up": caught is not None,
            "latency_inside": summary([latency[i] for i in wide if i in latency]),
            "excluding": summary([v for i, v in latency.items() if i not in wide]),
        },
    }

"""One load phase: the producer at its rate, the kill midway, the wait for stragglers, then the
phase's figures from the queue, the emulator's ledger and Dagster's runs."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from notify_pipeline.bench.dagster_latency.deployment import Deployment, log
from notify_pipeline.bench.dagster_latency.kill import kill_serving_run, recovery_figures
from notify_pipeline.bench.dagster_latency.load import (
    WATCH_ACTOR,
    Phase,
    Producer,
    connect,
    drains_between,
    wait_settled,
)
from notify_pipeline.bench.dagster_latency.report import summary
from notify_pipeline.bench.dev_process import SEND_JOB
from notify_pipeline.bench.emulator_process import EmulatorControl
from notify_pipeline.whatsapp.messages import notification_id_of

# The statuses of a row the emulator accepted, as SQL (a constant, not input).
SENT = "('sent', 'delivered', 'read')"
RUN_LIMIT = 5000


def run_phase(
    dep: Deployment, emulator: EmulatorControl, phase: Phase, args: argparse.Namespace
) -> dict[str, Any]:
    log(f"phase {phase.name}: {phase.rate_per_s:g}/s for {phase.seconds:.0f} s")
    stop = threading.Event()
    producer = Producer(dep.queue_url, phase, stop)
    kill: dict[str, Any] = {"killed_at": None, "skipped": "--no-kill"}
    started = time.time()
    with connect(dep.queue_url, WATCH_ACTOR) as conn:
        dup_before = emulator.stats()["duplicates"]
        producer.start()
        if not args.no_kill:
            time.sleep(max(0.0, started + phase.seconds * args.kill_at - time.time()))
            active = [
                r
                for r in dep.dagster_runs(limit=RUN_LIMIT)
                if r["jobName"] == SEND_JOB and r["status"] in ("STARTED", "STARTING")
            ]
            kill = kill_serving_run(conn, dep)
            kill["send_runs_active_at_kill"] = len(active)
        while producer.is_alive():
            producer.join(1.0)
            if not dep.alive():
                stop.set()
                raise RuntimeError(f"the deployment exited during phase {phase.name}:\n{dep.log_tail()}")
        ids = [i for i, _ in producer.rows]
        backlog_s = len(ids) / max(1.0, args.emulator_limit)
        settled_s = wait_settled(conn, ids, args.settle_s + backlog_s)
        ended = time.time()
        queue = _queue_figures(conn, ids)
        drains = drains_between(conn, started, ended)
    mine = {i: c for i, c in producer.rows}
    receipts: dict[int, list[float]] = {}
    for message in emulator.messages():
        key = notification_id_of(message.get("biz_opaque_callback_data"))  # np1:<id>
        if key in mine:
            receipts.setdefault(key, []).append(message["received_at"])
    rows = [(i, c, min(receipts[i]) if i in receipts else None) for i, c in producer.rows]
    lost = [i for i, _, r in rows if r is None and i not in queue["sent"]]
    latency = {i: r - c for i, c, r in rows if r is not None}

    result: dict[str, Any] = {
        "phase": phase.name,
        "started_at": started,
        "rate_per_s": phase.rate_per_s,
        "seconds": phase.seconds,
        "enqueued": len(ids),
        "enqueue_errors": len(producer.errors),
        "enqueue_rate_per_s": producer.enqueue_rate(),
        "received": len(receipts),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "duplicates": sum(len(v) - 1 for v in receipts.values()),
        "emulator_duplicates_delta": emulator.stats()["duplicates"] - dup_before,
        "statuses": queue["statuses"],
        "not_sent_by_error": queue["errors"],
        "settle_s": round(settled_s, 1),
        "all": summary(list(latency.values())),
        "kill": {k: v for k, v in kill.items() if k not in ("host",)},
    }
    killed_at = kill.get("killed_at")
    if killed_at:
        result.update(recovery_figures(rows, latency, killed_at, ended, args))
    else:
        result["excluding_recovery"] = result["all"]
    result.update(_run_figures(dep, started, ended, result["kill"]))
    result["drains"] = [_drain(d, started) for d in drains]
    if producer.errors:
        result["enqueue_error_sample"] = producer.errors[:3]
    return result


def _queue_figures(conn, ids: list[int]) -> dict[str, Any]:
    """The rows of `ids` by status, those sent, and the unsent ones by error code."""
    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM notifications WHERE id = ANY(%s) GROUP BY status", (ids,)
        ).fetchall()
    )
    sent = {
        row[0]
        for row in conn.execute(
            f"SELECT id FROM notifications WHERE id = ANY(%s) AND status IN {SENT}", (ids,)
        ).fetchall()
    }
    errors = dict(
        conn.execute(
            "SELECT coalesce(last_error_code, '-'), count(*) FROM notifications "
            f"WHERE id = ANY(%s) AND status NOT IN {SENT} GROUP BY 1",
            (ids,),
        ).fetchall()
    )
    return {"statuses": statuses, "sent": sent, "errors": errors}


def _run_figures(dep: Deployment, started: float, ended: float, kill: dict[str, Any]) -> dict[str, Any]:
    """The Dagster runs created in the phase, by job and status; the killed run's status at the end."""
    all_runs = dep.dagster_runs(limit=RUN_LIMIT)
    runs = [r for r in all_runs if started - 1 <= (r.get("creationTime") or 0) <= ended]
    by_status: dict[str, int] = {}
    for run in runs:
        key = f"{run['jobName']}:{run['status']}"
        by_status[key] = by_status.get(key, 0) + 1
    if kill.get("killed_at"):
        kill["killed_run_status_at_end"] = next(
            (r["status"] for r in all_runs if r["runId"] == kill.get("run_id")), None
        )
    return {
        "dagster_runs_launched": len(runs),
        "send_runs_launched": sum(1 for r in runs if r["jobName"] == SEND_JOB),
        "runs_by_job_status": by_status,
    }


def _drain(drain: dict[str, Any], started: float) -> dict[str, Any]:
    return {
        "worker": drain["worker_id"],
        "pid": drain["pid"],
        "from_s": round(drain["started_at"] - started, 1),
        "to_s": round(drain["ended_at"] - started, 1) if drain["ended_at"] else None,
        "stopped_by": drain["stopped_by"],
        "lifetime_s": round(drain["lifetime_s"]) if drain["lifetime_s"] is not None else None,
    }

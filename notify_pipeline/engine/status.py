"""The runbook's system status check as data: worker activity, queue depth, failure rate by domain.

Queue depth separates what is due from what waits (deferred or scheduled): the prior system's
gauge counted deferred rows and raised "queue backed up" every night during quiet hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from notify_pipeline.engine.holds import Hold, active_hold
from notify_pipeline.settings import sender_key


@dataclass(frozen=True)
class QueueStatus:
    paused: bool
    pause_reason: str | None
    worker_events: list[tuple[str, str | None, Any, datetime]]
    depth: list[tuple[str, int, datetime | None]]
    due_now: int
    waiting: int
    in_flight: int
    oldest_due: datetime | None
    failure_rate: list[tuple[str, int, int, float]]
    hold: Hold | None = None
    # The latest drains: worker, run, heartbeat age (s), lifetime left (s), stopped_by (None: live).
    drains: list[tuple[str, str | None, float, float | None, str | None]] = field(default_factory=list)


def queue_status(conn: psycopg.Connection) -> QueueStatus:
    paused, reason = conn.execute("SELECT paused, reason FROM queue_control").fetchone()
    events = conn.execute(
        "SELECT event_type, details->>'trigger', details->>'processed', created_at FROM observability_events "
        "WHERE event_type IN ('NOTIFY_WORKER_START', 'NOTIFY_WORKER_DONE') AND created_at > now() - interval '5 minutes' "
        "ORDER BY created_at DESC LIMIT 10"
    ).fetchall()
    depth = conn.execute(
        "SELECT status, count(*), min(created_at) FROM notifications GROUP BY status ORDER BY status"
    ).fetchall()
    due, waiting, in_flight, oldest = conn.execute(
        "SELECT count(*) FILTER (WHERE next_attempt_at <= now() AND locked_at IS NULL), "
        "count(*) FILTER (WHERE next_attempt_at > now()), count(*) FILTER (WHERE locked_at IS NOT NULL), "
        "min(next_attempt_at) FILTER (WHERE next_attempt_at <= now()) "
        "FROM notifications WHERE status = 'queued'"
    ).fetchone()
    rates = conn.execute(
        "SELECT domain, count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'), "
        "round(100.0 * count(*) FILTER (WHERE status = 'failed') / count(*), 2)::float "
        "FROM notifications WHERE created_at > now() - interval '1 hour' GROUP BY domain ORDER BY 4 DESC, 1"
    ).fetchall()
    drains = conn.execute(
        "SELECT worker_id, run_id, round(extract(epoch FROM now() - heartbeat_at))::float, "
        "round(extract(epoch FROM lifetime_ends_at - now()))::float, stopped_by FROM send_workers "
        "WHERE sender = %s ORDER BY started_at DESC LIMIT 3",
        (sender_key(),),
    ).fetchall()
    hold = active_hold(conn, sender_key())
    return QueueStatus(paused, reason, events, depth, due, waiting, in_flight, oldest, rates, hold, drains)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(status: QueueStatus) -> str:
    """A readable report for `notify-pipeline status`."""
    switch = f"PAUSED ({status.pause_reason})" if status.paused else "running"
    parts = [f"Sending: {switch}"]
    if status.hold is not None:
        hold = status.hold
        parts.append(
            f"Sender HELD since {hold.since:%Y-%m-%d %H:%M} UTC: Meta refused the {hold.kind} ({hold.code}): "
            f"{hold.reason}. Fix it, then `notify-pipeline resume --hold --reason ...`"
        )
    parts += [
        "",
        "Send runs (newest first)",
        _table(
            ["worker", "run", "heartbeat_s_ago", "lifetime_left_s", "stopped_by"],
            [[w, (r or "")[:8], hb, left, stop or "(serving)"] for w, r, hb, left, stop in status.drains],
        )
        if status.drains
        else "  none yet",
        "",
        "Worker activity (last 5 minutes)",
        _table(["event", "trigger", "processed", "at"], [list(e) for e in status.worker_events])
        if status.worker_events
        else "  none: is the sensor running, or the worker paused?",
        "",
        "Queue depth",
        _table(["status", "count", "oldest"], [list(d) for d in status.depth]) if status.depth else "  empty",
        f"queued: {status.due_now} due now, {status.waiting} waiting (deferred or scheduled), "
        f"{status.in_flight} being sent; oldest due since {status.oldest_due or '-'}",
        "",
        "Failure rate by domain (last hour)",
        _table(["domain", "sent", "failed", "failure_%"], [list(r) for r in status.failure_rate])
        if status.failure_rate
        else "  no notifications in the last hour",
    ]
    return "\n".join(parts)

"""The cheap questions the queue's sensors ask every few seconds: may this sender send, what do
its drains say about themselves, are there stale claims to sweep."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from notify_pipeline.engine import queries
from notify_pipeline.engine.drain_config import worker_enabled
from notify_pipeline.engine.holds import active_hold
from notify_pipeline.engine.operations import paused
from notify_pipeline.engine.supervision import WorkerState


def blocked_reason(conn: psycopg.Connection, sender: str) -> str | None:
    """Why nothing may be sent for `sender` (kill switch, operator pause, sender hold), or None."""
    if not worker_enabled():
        return "NOTIFICATION_WORKER_CRON_ENABLED is false"
    is_paused, reason = paused(conn)
    if is_paused:
        return f"sending is paused ({reason}); `notify-pipeline resume --reason ...` lifts it"
    hold = active_hold(conn, sender)
    if hold is not None:
        return (
            f"sender {sender} is held since {hold.since:%Y-%m-%d %H:%M:%S %Z} ({hold.kind}"
            f"{f' {hold.code}' if hold.code else ''}: {hold.reason}); fix it, then "
            "`notify-pipeline resume --hold --reason ...`"
        )
    return None


def drains_of_runs(conn: psycopg.Connection, run_ids: Sequence[str]) -> list[WorkerState]:
    """The drain registry rows of these runs, aged by the database's clock."""
    if not run_ids:
        return []
    rows = conn.execute(queries.drains_of_runs, (list(run_ids),)).fetchall()
    return [WorkerState(*row) for row in rows]


def stale_claims(conn: psycopg.Connection, lease_s: float) -> bool:
    """Is some queued row claimed longer ago than the lease (its drain died holding it)?"""
    row = conn.execute(queries.stale_claim_exists, (lease_s,)).fetchone()
    return row is not None

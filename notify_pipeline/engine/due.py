"""Is there work for a send run? A cheap question the sensor asks every few seconds."""

from __future__ import annotations

import psycopg

from notify_pipeline.engine.drain_config import worker_enabled
from notify_pipeline.engine.operations import paused


def due_work(conn: psycopg.Connection, lease_s: float = 900.0) -> tuple[int, str | None]:
    """(due rows, up to 1,000; or 0 with the reason nothing may be sent)."""
    if not worker_enabled():
        return 0, "NOTIFICATION_WORKER_CRON_ENABLED is false"
    is_paused, reason = paused(conn)
    if is_paused:
        return 0, f"sending is paused ({reason})"
    due = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM notifications WHERE status = 'queued' AND next_attempt_at <= now() "
        "AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => %s)) LIMIT 1000) d",
        (lease_s,),
    ).fetchone()[0]
    return due, None if due else "no notification is due"

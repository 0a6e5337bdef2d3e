"""Helpers for alert tests: a clock tests move by hand, the sensors' resources, and SQL that seeds
each alert's condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase


class FakeClock:
    """The sensors' clock, moved by the test: hours of alert life without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def alert_resources(db_url: str, **thresholds) -> dict:
    """The alert sensors' resources on `db_url`: thresholds as given (defaults otherwise), a sink
    that does not back off between retries."""
    return {
        "queue_db": QueueDatabase(url=db_url),
        "alert_thresholds": AlertThresholds(**thresholds),
        "alert_sink": AlertSink(backoff_s=0),
    }


def add_rows(
    conn: psycopg.Connection,
    count: int,
    *,
    status: str = "queued",
    due: str = "now()",
    created: str = "now()",
    domain: str = "core",
    code: str | None = None,
    first: int = 0,
) -> list[int]:
    """`count` notifications written straight into the table (faster than queueNotification)."""
    sent_at = "now()" if status == "sent" else "NULL"
    next_at = due if status == "queued" else "NULL"
    return [
        r[0]
        for r in conn.execute(
            "INSERT INTO notifications (to_wa_id, notification_type, domain, status, next_attempt_at, "
            f"created_at, sent_at, last_error_code) SELECT '+25078' || lpad((%s + g)::text, 7, '0'), 'test', "
            f"%s, %s, {next_at}, {created}, {sent_at}, %s FROM generate_series(1, %s) g RETURNING id",
            (first, domain, status, code, count),
        ).fetchall()
    ]


def worker_verdict(
    conn: psycopg.Connection, ids: list[int], *, status: str, code: str, defer_s: int = 60
) -> None:
    """What a worker writes back: claim the rows, then fail or defer them with `code` (audited as
    'failed' or 'deferred' by the database's triggers, as the engine's write-back is)."""
    conn.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w1' WHERE id = ANY(%s)", (ids,))
    conn.execute(
        "UPDATE notifications SET status = %s, last_error_code = %s, locked_at = NULL, "
        "next_attempt_at = CASE WHEN %s = 'queued' THEN now() + make_interval(secs => %s) END "
        "WHERE id = ANY(%s)",
        (status, code, status, defer_s, ids),
    )


def worker_start(conn: psycopg.Connection, ago: str = "0 seconds") -> None:
    conn.execute(
        "INSERT INTO observability_events (event_type, details, created_at) "
        "VALUES ('NOTIFY_WORKER_START', '{\"trigger\": \"sensor\"}', now() - %s::interval)",
        (ago,),
    )


def age_events(conn: psycopg.Connection, by: str = "2 hours") -> None:
    """Move every event and audit row back in time: windowed conditions clear."""
    conn.execute("UPDATE observability_events SET created_at = created_at - %s::interval", (by,))
    conn.execute("UPDATE notification_audit_log SET created_at = created_at - %s::interval", (by,))


def alert_rows(conn: psycopg.Connection, name: str | None = None) -> list[dict]:
    cur = conn.execute(
        "SELECT * FROM alerts WHERE %(name)s::text IS NULL OR alert_name = %(name)s ORDER BY id",
        {"name": name},
    )
    return [dict(zip([c.name for c in cur.description], row, strict=True)) for row in cur.fetchall()]

"""Helpers for the diagnostics tests: notifications written directly with chosen times and codes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg


def insert(
    conn: psycopg.Connection,
    to: str,
    *,
    status: str = "sent",
    sent_at: datetime | None = None,
    created_at: datetime | None = None,
    code: str | None = None,
    message: str | None = None,
    template: str | None = "welcome_message",
    next_attempt_at: datetime | None = None,
    override: bool = False,
    correlation_id: str | None = None,
    deferral_count: int = 0,
) -> int:
    """One notification row as the engine would leave it (sent rows get sent_at = now by default)."""
    if status == "sent" and sent_at is None:
        sent_at = datetime.now(UTC)
    created = created_at or (sent_at - timedelta(minutes=1) if sent_at else datetime.now(UTC))
    return conn.execute(
        "INSERT INTO notifications (to_wa_id, template_name, language, notification_type, status, sent_at, "
        "created_at, last_error_code, error_message, next_attempt_at, quiet_hours_override, correlation_id, "
        "deferral_count) VALUES (%s, %s, 'en', coalesce(%s, 'text'), %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING id",
        (
            to,
            template,
            template,
            status,
            sent_at,
            created,
            code,
            message,
            next_attempt_at,
            override,
            correlation_id,
            deferral_count,
        ),
    ).fetchone()[0]


def contact(conn: psycopg.Connection, wa_id: str, zone: str, window: tuple[str, str] | None) -> None:
    start, end = window or (None, None)
    conn.execute(
        "INSERT INTO contact_preferences (wa_id, timezone, quiet_hours_start, quiet_hours_end) "
        "VALUES (%s, %s, %s::time, %s::time)",
        (wa_id, zone, start, end),
    )


def template(
    conn: psycopg.Connection, name: str, category: str = "UTILITY", status: str = "APPROVED"
) -> None:
    conn.execute(
        "INSERT INTO whatsapp_templates (template_key, template_name, category, approval_status) "
        "VALUES (%s, %s, %s, %s)",
        (name, name, category, status),
    )


def last_local(zone: str, hour: int, minute: int) -> datetime:
    """The latest instant before now when the wall clock in `zone` read hour:minute (UTC)."""
    tz = ZoneInfo(zone)
    now = datetime.now(tz)
    at = datetime.combine(now.date(), time(hour, minute), tzinfo=tz)
    if at > now:
        at = datetime.combine(now.date() - timedelta(days=1), time(hour, minute), tzinfo=tz)
    return at.astimezone(UTC)

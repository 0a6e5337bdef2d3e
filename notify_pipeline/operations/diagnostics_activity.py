"""Diagnostics of what was sent and to whom: quiet-hours violations, top recipients, hours of day,
and the audit trail of a correlation id. Read-only; recipients masked by notify_mask_wa_id."""

from __future__ import annotations

from typing import Any

import psycopg

from notify_pipeline import settings
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.reasons import meaning
from notify_pipeline.operations import diagnostics_base as base
from notify_pipeline.redact import mask_text
from notify_pipeline.reporting import figures

# Sent rows with the contact's own zone and window (or the policy's default for contacts without
# preferences; preferences without a window mean no quiet hours, as the engine decides), the local
# wall-clock time of sent_at there, and whether the row was allowed out at night anyway.
_QUIET_SQL = """
WITH sent AS (
    SELECT n.id, n.to_wa_id, coalesce(n.template_name, n.notification_type) AS template, n.sent_at,
           n.quiet_hours_override,
           coalesce(t.quiet_hours_exempt, t.category = ANY(%(exempt)s), false) AS exempt_template,
           t.category, cp.id IS NOT NULL AS own_preferences,
           CASE WHEN cp.id IS NULL THEN %(zone)s ELSE cp.timezone END AS zone,
           CASE WHEN cp.id IS NULL THEN %(start)s::time ELSE cp.quiet_hours_start END AS qs,
           CASE WHEN cp.id IS NULL THEN %(end)s::time ELSE cp.quiet_hours_end END AS qe
    FROM notifications n
    LEFT JOIN contact_preferences cp ON cp.wa_id = n.to_wa_id
    LEFT JOIN whatsapp_templates t ON t.template_name = n.template_name AND t.language = n.language
    WHERE n.status = 'sent' AND n.sent_at > now() - %(hours)s::float8 * interval '1 hour'
), local AS (
    SELECT sent.*, (sent_at AT TIME ZONE zone)::time AS local_time FROM sent WHERE qs IS NOT NULL AND qs <> qe
)
SELECT id, notify_mask_wa_id(to_wa_id) AS recipient, template, sent_at,
       to_char(local_time, 'HH24:MI') AS local_time, zone,
       to_char(qs, 'HH24:MI') || '-' || to_char(qe, 'HH24:MI') AS quiet_hours, own_preferences,
       quiet_hours_override AS override, exempt_template, category, count(*) OVER () AS total
FROM local
WHERE CASE WHEN qs < qe THEN local_time >= qs AND local_time < qe ELSE local_time >= qs OR local_time < qe END
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s
"""


def quiet_hours_violations(
    conn: psycopg.Connection, hours: float = 24.0, limit: int = 50, policy: PolicyConfig | None = None
) -> base.Report:
    """Notifications sent during the contact's own quiet hours, in the contact's own zone.

    The runbook's check (`EXTRACT(HOUR ...) BETWEEN 22 AND 6` in Kigali) is never true and uses one
    zone for everyone; this applies each contact's window ([start, end), across midnight when
    start > end) in its own zone, like engine/quiet_hours.py. Rows sent with quiet_hours_override
    or an exempt template (AUTHENTICATION, or quiet_hours_exempt) were allowed; the rest were not.
    """
    config = policy or PolicyConfig()
    start, end = config.default_quiet_hours or (None, None)
    found = base.fetch(
        conn,
        _QUIET_SQL,
        {
            "hours": base.check_hours(hours),
            "limit": base.check_limit(limit),
            "exempt": sorted(config.exempt_categories),
            "zone": config.default_timezone,
            "start": start,
            "end": end,
        },
    )
    total = found[0]["total"] if found else 0
    rows = []
    for r in found:
        if r["override"]:
            allowed = "yes: quiet_hours_override"
        elif r["exempt_template"]:
            allowed = f"yes: exempt template ({r['category']})"
        else:
            allowed = "NO"
        rows.append({**r, "preferences": "own" if r["own_preferences"] else "default", "allowed": allowed})
    not_allowed = sum(r["allowed"] == "NO" for r in rows)
    notes = [
        f"{total} sent in the last {hours:g} h during the contact's quiet hours"
        + (f" (showing {len(rows)})" if total > len(rows) else ""),
        f"{not_allowed} shown without override or exempt template: check contact_preferences and who sent them",
    ]
    columns = (
        "id",
        "recipient",
        "template",
        "sent_at",
        "local_time",
        "zone",
        "quiet_hours",
        "preferences",
        "override",
        "exempt_template",
        "allowed",
    )
    return base.Report(
        "quiet_hours_violations", "Sent during quiet hours", (base.Table("", columns, rows),), tuple(notes)
    )


def top_recipients(conn: psycopg.Connection, hours: float = 24.0, limit: int = 10) -> base.Report:
    """Recipients with the most notifications created in the window (runbook: Top 10 recipients);
    failed as reporting/figures.py defines it (an opt-out or a stop hold is not a failure)."""
    rows = base.fetch(
        conn,
        "SELECT notify_mask_wa_id(n.to_wa_id) AS recipient, count(*) AS total, "
        f"count(*) FILTER (WHERE n.status = 'sent') AS sent, count(*) FILTER (WHERE {figures.failed_sql('n')}) AS failed, "
        "count(*) FILTER (WHERE n.status = 'queued') AS queued, coalesce(bool_or(cp.opted_out), false) AS opted_out, "
        "max(n.created_at) AS last_at FROM notifications n "
        "LEFT JOIN contact_preferences cp ON cp.wa_id = n.to_wa_id "
        f"WHERE n.{base.SINCE} GROUP BY n.to_wa_id ORDER BY total DESC, last_at DESC LIMIT %(limit)s",
        {"hours": base.check_hours(hours), "limit": base.check_limit(limit)},
    )
    columns = ("recipient", "total", "sent", "failed", "queued", "opted_out", "last_at")
    return base.Report(
        "top_recipients", "Top recipients", (base.Table("", columns, rows),), (f"last {hours:g} h",)
    )


FAILED = figures.failed_sql()


def by_hour(conn: psycopg.Connection, hours: float = 168.0, timezone: str | None = None) -> base.Report:
    """Notifications created per local hour of day in the report time zone, with the success rate
    sent / (sent + failed): rows still queued are counted but not judged."""
    zone = timezone or settings.report_timezone()
    if not conn.execute("SELECT notify_is_valid_timezone(%s)", (zone,)).fetchone()[0]:
        raise base.DiagnosticsError(
            f"report time zone {zone!r} is not an IANA zone name such as Africa/Kigali"
        )
    rows = base.fetch(
        conn,
        "SELECT extract(hour FROM created_at AT TIME ZONE %(zone)s)::int AS hour, count(*) AS total, "
        f"count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE {FAILED}) AS failed, "
        "count(*) FILTER (WHERE status = 'queued') AS queued, round(100.0 * count(*) FILTER (WHERE status = "
        f"'sent') / nullif(count(*) FILTER (WHERE status = 'sent' OR {FAILED}), 0), 1)::float8 AS success_pct "
        f"FROM notifications WHERE {base.SINCE} GROUP BY 1 ORDER BY 1",
        {"zone": zone, "hours": base.check_hours(hours)},
    )
    columns = ("hour", "total", "sent", "failed", "queued", "success_pct")
    note = (
        f"local hours in {zone}, last {hours:g} h; success = sent / (sent + failed), failed as the README's "
        "Figures define it (opt-outs, emergency-stop holds and expired rows are not failures)"
    )
    return base.Report("by_hour", "Notifications by hour of day", (base.Table("", columns, rows),), (note,))


_SHOWN = {"actor", "from_status", "to_status", "worker", "error_code", "error_message"}


def _event(row: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = row["details"] or {}
    change = "→".join(s for s in (details.get("from_status"), details.get("to_status")) if s)
    code = details.get("error_code")
    rest = ", ".join(f"{k}={v}" for k, v in sorted(details.items()) if k not in _SHOWN)
    return {
        "at": row["created_at"],
        "notification": row["notification_id"],
        "event": row["event_type"],
        "actor": details.get("actor"),
        "change": change,
        "worker": details.get("worker"),
        "error_code": code,
        "meaning": meaning(code) if code else None,
        "message": mask_text(details.get("error_message")),
        "details": rest,
    }


def trail(conn: psycopg.Connection, correlation_id: str) -> base.Report:
    """Every notification of a correlation id and its audit events in order (runbook: Audit trail),
    with the audit details spelled out: actor, status change, worker, error code and message."""
    cid = (correlation_id or "").strip()
    notifications = base.fetch(
        conn,
        "SELECT id, status, notify_mask_wa_id(to_wa_id) AS recipient, coalesce(template_name, notification_type) "
        "AS template, domain, created_at, sent_at, retry_count, deferral_count, last_error_code AS code "
        "FROM notifications WHERE correlation_id = %s ORDER BY id",
        (cid,),
    )
    if not notifications:
        raise base.DiagnosticsError(f"unknown correlation id {cid!r}: no notification carries it")
    events = base.fetch(
        conn,
        "SELECT a.notification_id, a.created_at, a.event_type, a.details FROM notification_audit_log a "
        "JOIN notifications n ON n.id = a.notification_id WHERE n.correlation_id = %s ORDER BY a.created_at, a.id",
        (cid,),
    )
    tables = (
        base.Table(
            "",
            (
                "id",
                "status",
                "recipient",
                "template",
                "domain",
                "created_at",
                "sent_at",
                "retry_count",
                "deferral_count",
                "code",
            ),
            notifications,
        ),
        base.Table(
            "Events, oldest first",
            (
                "at",
                "notification",
                "event",
                "actor",
                "change",
                "worker",
                "error_code",
                "meaning",
                "message",
                "details",
            ),
            [_event(e) for e in events],
        ),
    )
    return base.Report("trail", f"Audit trail of {cid}", tables, (f"{len(events)} events",))

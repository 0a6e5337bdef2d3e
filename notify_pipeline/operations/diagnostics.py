"""The runbook's diagnostics as safe, read-only reports: failures and what waits.

Each report is a plain function over a psycopg connection that only reads. It returns a typed
`Report` (tables whose rows are dicts) that `render` prints for the CLI and `render_markdown` turns
into Dagster metadata. Codes are explained with Meta's real meanings (whatsapp/errors.py) and the
product's own reasons (engine/reasons.py), never the runbook's table, which is wrong. Recipients
are masked by the database's notify_mask_wa_id, and numbers inside free-text error messages too.

Here: the failure-side reports and the registry (`run_report`). `diagnostics_activity` holds
quiet-hours violations, top recipients, hours of day and the audit trail of a correlation id;
`diagnostics_base` the report type, input checks, masking and renderers.
"""

from __future__ import annotations

import psycopg

from notify_pipeline.engine.reasons import DEFERRAL_REASONS, meaning
from notify_pipeline.operations import diagnostics_activity as activity
from notify_pipeline.operations.diagnostics_base import (
    SINCE,
    DiagnosticsError,
    Report,
    Table,
    check_hours,
    check_limit,
    fetch,
    render,
    render_markdown,
    to_json,
)
from notify_pipeline.redact import SQL_NUMBER, mask_text
from notify_pipeline.reporting import figures
from notify_pipeline.whatsapp.errors import lookup, throttling_codes

__all__ = [
    "REPORTS",
    "DiagnosticsError",
    "Report",
    "Table",
    "fix_for",
    "render",
    "render_markdown",
    "run_report",
    "to_json",
]

_NETWORK_FIX = (
    "Check connectivity to the Cloud API (WHATSAPP_API_BASE_URL) and Meta's status page; "
    "transient errors are retried by themselves."
)
_OWN_FIXES = {
    "opted_out": "Respect it: the contact opted out. Opt them back in (mark_opted_in) only at their own request.",
    "marketing_opted_out": "Respect it: the contact stopped marketing messages at Meta; utility and authentication still go.",
    "invalid_payload": "Fix the producer: the stored message cannot be sent; enqueue a corrected one.",
    "template_missing": "Sync the templates from Meta, or add this one to whatsapp_templates.",
    "template_inactive": "Switch the template on (is_active) if it should be used, or send another one.",
    "template_not_approved": "Get the template approved in Meta Business Manager, then sync it.",
    "template_paused": "Held, not lost: goes out once Meta reinstates the template; improve its quality.",
    "quiet_hours": "Not a failure: the row waits for the end of the contact's quiet hours.",
    "pair_limit": "Not a failure: goes out when the recipient's pair limit allows (seconds).",
    "emergency_stop": "Held by an emergency stop: `notify-pipeline resume` once it is safe.",
    "expired": "Not a failure: it was too late to send. Enqueue a new one with a later expires_at if it still matters.",
    "timeout_ambiguous": _NETWORK_FIX,
    "connection": _NETWORK_FIX,
    "bad_response": _NETWORK_FIX,
}


def fix_for(code: str | None) -> str:
    """What an operator should do about a last_error_code: Meta's fix, or ours for our reasons."""
    if code is None or code == "none":
        return "No code recorded: read the message; check Cloud API connectivity and credentials."
    if code in _OWN_FIXES:
        return _OWN_FIXES[code]
    if code.startswith("template_"):
        return "Sync the template from Meta or fix it in whatsapp_templates."
    if code.startswith("http_"):
        if code[5:].startswith("5"):
            return _NETWORK_FIX
        if code == "http_429":
            return "Slow down: lower the sender's throughput."
        return "An answer without Meta's error body: check WHATSAPP_API_BASE_URL and the credentials."
    entry = lookup(int(code)) if code.isdigit() else None
    return entry.fix if entry else "Undocumented code: read the message and Meta's error-code reference."


def deferral_kind(code: str | None) -> str:
    """Why a queued row waits: scheduled by its producer, deferred by us, throttled by Meta, retrying."""
    if code is None:
        return "scheduled"
    if code in DEFERRAL_REASONS:
        return "deferred by the engine"
    if code in throttling_codes():
        return "throttled by Meta"
    if code == "emergency_stop":
        return "held"
    return "retry backoff"


def failures(conn: psycopg.Connection, hours: float = 1.0) -> Report:
    """Failed notifications created in the window, by error code, with meaning and fix (runbook:
    High failure rate). The window is on created_at, as `retry-failed --since` selects. Failures and
    the failure rate are the figures' (reporting/figures.py): opt-outs, emergency-stop holds and
    expired rows are listed apart and not counted."""
    window_h = check_hours(hours)
    found = figures.outcomes_since(conn, window_h * 3600)
    groups = fetch(
        conn,
        f"SELECT {figures.outcome_sql()} AS outcome, coalesce(last_error_code, 'none') AS code, count(*) AS rows, "
        "max(created_at) AS last_seen, (array_agg(error_message ORDER BY created_at DESC))[1] AS example "
        f"FROM notifications WHERE status = 'failed' AND {SINCE} GROUP BY 1, 2 ORDER BY 3 DESC, 2",
        {"hours": window_h},
    )
    failed = [
        {
            "code": g["code"],
            "failed": g["rows"],
            "meaning": meaning(g["code"]),
            "fix": fix_for(g["code"]),
            "example": mask_text(g["example"]),
            "last_seen": g["last_seen"],
        }
        for g in groups
        if g["outcome"] == figures.FAILED
    ]
    apart = [
        {
            "outcome": g["outcome"],
            "code": g["code"],
            "rows": g["rows"],
            "meaning": meaning(g["code"]),
            "fix": fix_for(g["code"]),
            "last_seen": g["last_seen"],
        }
        for g in groups
        if g["outcome"] != figures.FAILED
    ]
    o = found.overall
    rate = f"{100 * o.failure_rate:.1f} %" if o.failure_rate is not None else "-"
    notes = (
        f"created in the last {hours:g} h: {o.sent} sent, {o.failed} failed (failure rate {rate} = failed / "
        "(sent + failed))",
        f"not failures: {o.filtered} filtered (opted out), {o.held} held (emergency stop), {o.expired} expired; "
        f"{o.queued} still queued",
    )
    tables = (
        Table("", ("code", "failed", "last_seen", "meaning", "example", "fix"), failed),
        Table(
            "Not counted as failures (filtered, held, expired)",
            ("outcome", "code", "rows", "last_seen", "meaning", "fix"),
            apart,
        ),
    )
    numbers = {**o.as_dict(), "window_s": window_h * 3600, "failed_by_code": found.failed_by_code}
    return Report("failures", "Failures by error code", tables, notes, numbers)


def template_failures(conn: psycopg.Connection, template: str, limit: int = 10) -> Report:
    """The latest failures of one template (by Meta name), with the template's state (runbook:
    Template not sending). Unknown names (no template row, never used) are refused."""
    check_limit(limit)
    name = (template or "").strip()
    known = fetch(
        conn,
        "SELECT language, category, approval_status, is_active FROM whatsapp_templates "
        "WHERE template_name = %(name)s ORDER BY language",
        {"name": name},
    )
    used = conn.execute("SELECT count(*) FROM notifications WHERE template_name = %s", (name,)).fetchone()[0]
    if not known and not used:
        raise DiagnosticsError(f"unknown template {name!r}: not in whatsapp_templates and never used")
    found = fetch(
        conn,
        "SELECT id, updated_at AS failed_at, notify_mask_wa_id(to_wa_id) AS recipient, language, "
        "coalesce(last_error_code, 'none') AS code, error_message AS message FROM notifications "
        "WHERE template_name = %(name)s AND status = 'failed' ORDER BY updated_at DESC, id DESC LIMIT %(limit)s",
        {"name": name, "limit": limit},
    )
    rows = [{**r, "meaning": meaning(r["code"]), "message": mask_text(r["message"])} for r in found]
    notes = [
        f"{name} ({t['language']}): {t['approval_status']}, {'active' if t['is_active'] else 'INACTIVE'}, "
        f"{t['category']}"
        for t in known
    ] or [f"{name} is not in whatsapp_templates: {fix_for('template_missing')}"]
    notes += [f"{code}: {fix_for(code)}" for code in dict.fromkeys(r["code"] for r in rows)]
    columns = ("id", "failed_at", "recipient", "language", "code", "meaning", "message")
    return Report(
        "template_failures", f"Recent failures of {name}", (Table("", columns, rows),), tuple(notes)
    )


def deferred(conn: psycopg.Connection, limit: int = 10) -> Report:
    """Queued rows due in the future, grouped by why they wait, with a few of each as a sample."""
    check_limit(limit)
    groups = fetch(
        conn,
        "SELECT last_error_code AS code, count(*) AS waiting, min(next_attempt_at) AS earliest_due, "
        "max(next_attempt_at) AS latest_due, max(deferral_count) AS most_deferrals FROM notifications "
        "WHERE status = 'queued' AND next_attempt_at > now() GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    summary = [
        {
            "reason": g["code"] or "scheduled",
            "kind": deferral_kind(g["code"]),
            "waiting": g["waiting"],
            "earliest_due": g["earliest_due"],
            "latest_due": g["latest_due"],
            "most_deferrals": g["most_deferrals"],
            "meaning": meaning(g["code"]) if g["code"] else "Scheduled by its producer (send_at or delay)",
        }
        for g in groups
    ]
    sample = fetch(
        conn,
        "SELECT id, recipient, template, reason, due, deferral_count, retry_count FROM ("
        "SELECT id, notify_mask_wa_id(to_wa_id) AS recipient, coalesce(template_name, notification_type) AS "
        "template, coalesce(last_error_code, 'scheduled') AS reason, next_attempt_at AS due, deferral_count, "
        "retry_count, row_number() OVER (PARTITION BY last_error_code ORDER BY next_attempt_at, id) AS nth "
        "FROM notifications WHERE status = 'queued' AND next_attempt_at > now()) s "
        "WHERE nth <= 3 ORDER BY reason, due, id LIMIT %(limit)s",
        {"limit": limit},
    )
    tables = (
        Table(
            "",
            ("reason", "kind", "waiting", "earliest_due", "latest_due", "most_deferrals", "meaning"),
            summary,
        ),
        Table(
            "Sample (up to 3 per reason)",
            ("id", "recipient", "template", "reason", "due", "deferral_count", "retry_count"),
            sample,
        ),
    )
    total = sum(g["waiting"] for g in summary)
    return Report("deferred", "Deferred and scheduled notifications", tables, (f"{total} waiting",))


def errors(conn: psycopg.Connection, hours: float = 24.0, limit: int = 10) -> Report:
    """The most common failure messages in the window, with code and meaning. Numbers in messages
    are replaced in SQL before grouping, so messages that differ only by recipient count as one."""
    params = {"hours": check_hours(hours), "limit": check_limit(limit), "number": SQL_NUMBER}
    found = fetch(
        conn,
        "SELECT regexp_replace(coalesce(error_message, ''), %(number)s, '<number>', 'g') AS message, "
        f"coalesce(last_error_code, 'none') AS code, {figures.outcome_sql()} AS outcome, count(*) AS occurrences, "
        "max(created_at) AS last_seen "
        f"FROM notifications WHERE status = 'failed' AND {SINCE} GROUP BY 1, 2, 3 ORDER BY 4 DESC, 5 DESC "
        "LIMIT %(limit)s",
        params,
    )
    rows = [{**r, "meaning": meaning(r["code"])} for r in found]
    # outcome: failed, or filtered / held / expired (reporting/figures.py), which are not failures.
    columns = ("occurrences", "code", "outcome", "last_seen", "meaning", "message")
    return Report("errors", "Most common error messages", (Table("", columns, rows),), (f"last {hours:g} h",))


# name -> what it shows; the CLI spells names with hyphens (template-failures).
REPORTS: dict[str, str] = {
    "failures": "failures by error code in the window, with meaning and fix",
    "template_failures": "recent failures of one template (needs template)",
    "deferred": "queued rows waiting for a future time, by reason",
    "quiet_hours_violations": "sent during the contact's own quiet hours",
    "top_recipients": "recipients with the most notifications in the window",
    "by_hour": "notifications by local hour of day, with success rate",
    "errors": "most common error messages in the window",
    "trail": "audit trail of a correlation id (needs correlation_id)",
}


def run_report(
    conn: psycopg.Connection,
    name: str,
    *,
    hours: float | None = None,
    limit: int | None = None,
    template: str | None = None,
    correlation_id: str | None = None,
) -> Report:
    """Run a report by name; options a report does not take are ignored, None means its default."""
    key = (name or "").strip().replace("-", "_")
    if key not in REPORTS:
        raise DiagnosticsError(f"unknown report {name!r}: use one of {', '.join(REPORTS)}")
    if key == "template_failures" and not (template or "").strip():
        raise DiagnosticsError("template_failures needs a template name")
    if key == "trail" and not (correlation_id or "").strip():
        raise DiagnosticsError("trail needs a correlation id")
    window = {} if hours is None else {"hours": hours}
    size = {} if limit is None else {"limit": limit}
    calls = {
        "failures": lambda: failures(conn, **window),
        "template_failures": lambda: template_failures(conn, template or "", **size),
        "deferred": lambda: deferred(conn, **size),
        "quiet_hours_violations": lambda: activity.quiet_hours_violations(conn, **window, **size),
        "top_recipients": lambda: activity.top_recipients(conn, **window, **size),
        "by_hour": lambda: activity.by_hour(conn, **window),
        "errors": lambda: errors(conn, **window, **size),
        "trail": lambda: activity.trail(conn, correlation_id or ""),
    }
    return calls[key]()

"""The alert for a failed run of one of the product's jobs: job, run id, the error, what to do.

A failed run is an event, not a condition that lasts: its episode in `alerts` opens and closes at
once (state 'resolved', resolved_at = started_at), named run_failure:<job>, so it never holds the
one open slot and a second failure of the same job is a second row. A run is announced once: a
row with its run id that was delivered is not sent again.

A send run that stops on an auth error is recognised from the drain's NOTIFY_AUTH_FAILURE event
and says plainly: refresh WHATSAPP_ACCESS_TOKEN.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.reporting.alerts.messages import compose
from notify_pipeline.reporting.alerts.sink import Delivery, Sink
from notify_pipeline.reporting.alerts.verdict import Verdict

ERROR_CHARS = 600
# Phone numbers in free text (an error quoting a recipient): dropped, not masked.
_PHONE = re.compile(r"\+\d[\d ().-]{6,16}\d|(?<![\w.-])\d{9,15}(?![\w.-])")

FIRST_CHECKS: dict[str, str] = {
    "send_notifications_job": "Open the run in Dagster for the step's error. The queue is intact: unsent rows "
    "were given back, and due_notifications_sensor launches the next run by itself.",
    "sweep_locks_job": "Stale claims stay until a sweep succeeds (every 5 minutes): run `notify-pipeline "
    "sweep --older-than 15m` if it keeps failing.",
    "retry_failed_job": "Nothing was re-queued: check the filters in the run config and run it again, dry run first.",
    "emergency_stop_job": "URGENT: the stop may not have taken effect. Check `notify-pipeline status` and run "
    "`notify-pipeline stop --reason ...` from a shell.",
    "resume_job": "Sending may still be paused: check `notify-pipeline status`, then `notify-pipeline resume "
    "--reason ...`.",
    "send_test_notification_job": "The test message was not queued: check the recipient and template in the run config.",
    "export_metrics_job": "Prometheus keeps the last exported values: check the textfile path and the "
    "Pushgateway in the run's error; the next export (every minute) overwrites them once it works.",
}
AUTH_CHECK = (
    "Refresh WHATSAPP_ACCESS_TOKEN (a system-user token with whatsapp_business_messaging) where the code "
    "location runs. Nothing was lost: the sensor launches the next send run once the token works."
)


@dataclass(frozen=True)
class RunFailure:
    job_name: str
    run_id: str
    message: str  # Dagster's run failure message
    step_errors: tuple[str, ...] = ()  # each failed step's error (a Failure's description first)


def clean(text: str, secrets: tuple[str, ...] = ()) -> str:
    """One line of error text, safe to post: secrets and phone numbers removed, length capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(_PHONE.sub("<number>", text).split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def auth_error(conn: psycopg.Connection, run_id: str) -> str | None:
    # The send op names its worker dagster:<first 8 of the run id> (defs/queue/jobs.py), and the
    # drain records NOTIFY_AUTH_FAILURE under that worker when Meta refuses the token.
    row = conn.execute(
        "SELECT details->>'error' FROM observability_events WHERE event_type = 'NOTIFY_AUTH_FAILURE' "
        "AND details->>'worker' = %s ORDER BY created_at DESC LIMIT 1",
        (f"dagster:{run_id[:8]}",),
    ).fetchone()
    return row[0] if row else None


def verdict(failure: RunFailure, auth: str | None, secrets: tuple[str, ...] = ()) -> Verdict:
    error = clean(failure.step_errors[0] if failure.step_errors else failure.message, secrets)
    short = f"{failure.job_name} run {failure.run_id[:8]} failed"
    numbers = {"job": failure.job_name, "run_id": failure.run_id, "error": error}
    if auth or "WHATSAPP_ACCESS_TOKEN" in error:
        why = clean(auth, secrets) if auth else "see the run"
        numbers["auth_error"] = why
        return Verdict(
            True,
            f"{short}: the Cloud API refused our credentials ({why}). Sending stopped; the queue is intact.",
            (f"Run id: {failure.run_id}",),
            AUTH_CHECK,
            numbers,
        )
    first = FIRST_CHECKS.get(failure.job_name, "Open the run in Dagster for the full error.")
    facts = (f"Run id: {failure.run_id}", f"Dagster: {clean(failure.message, secrets)}")
    return Verdict(True, f"{short}: {error}", facts, first, numbers)


@dataclass(frozen=True)
class Announcement:
    verdict: Verdict | None  # None: this run was announced before
    delivery: Delivery | None
    note: str | None = None  # what went wrong recording it, if anything


def announce(
    open_db: Callable[[], AbstractContextManager[psycopg.Connection]],
    failure: RunFailure,
    sink: Sink,
    now: datetime,
    secrets: tuple[str, ...] = (),
) -> Announcement:
    """Post the failure and record it. The queue database may be what failed: then the alert is
    still posted (without the auth diagnosis) and the note says it was not recorded."""
    auth, note = None, None
    try:
        with open_db() as conn:
            if _announced(conn, failure):
                return Announcement(None, None, "already announced")
            auth = auth_error(conn, failure.run_id)
    except psycopg.Error as exc:
        note = f"queue database unreachable ({type(exc).__name__}): alert posted but not recorded"
    found = verdict(failure, auth, secrets)
    lines = [f":x: RUN FAILED | {found.headline}", *(f"• {fact}" for fact in found.facts)]
    lines.append(f"First check: {found.first_check}")
    delivery = sink.deliver(compose(lines, f"alert {_name(failure)} · run {failure.run_id}"))
    if note is None:
        try:
            with open_db() as conn:
                _record(conn, failure, found, delivery, now)
        except psycopg.Error as exc:
            note = f"could not record the alert ({type(exc).__name__})"
    return Announcement(found, delivery, note)


def _name(failure: RunFailure) -> str:
    return f"run_failure:{failure.job_name}"


def _announced(conn: psycopg.Connection, failure: RunFailure) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM alerts WHERE alert_name = %s AND details->>'run_id' = %s AND notifications > 0",
            (_name(failure), failure.run_id),
        ).fetchone()
        is not None
    )


def _record(
    conn: psycopg.Connection, failure: RunFailure, found: Verdict, delivery: Delivery, now: datetime
) -> None:
    details = {
        **found.numbers,
        "facts": list(found.facts),
        "first_check": found.first_check,
        "deliveries": [{"at": now.isoformat(), "kind": "run_failure", **delivery.as_json()}],
        "delivery_failures": 0 if delivery.ok else 1,
    }
    conn.execute(
        "INSERT INTO alerts (alert_name, state, summary, details, started_at, last_notified_at, "
        "notifications, resolved_at) VALUES (%s, 'resolved', %s, %s, %s, %s, %s, %s)",
        (
            _name(failure),
            found.headline,
            Jsonb(details),
            now,
            now if delivery.ok else None,
            int(delivery.ok),
            now,
        ),
    )

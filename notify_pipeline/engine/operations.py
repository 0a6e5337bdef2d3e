"""Queue operations an operator runs: sweep stale locks, retry failed rows, pause and resume,
emergency stop and resume. Each is one plain function over a connection, shared by the Dagster
jobs and the CLI; each records what it did in observability_events (the audit log gets one row per
notification it changed, from the database's triggers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine import queries
from notify_pipeline.engine.holds import Hold, active_hold, lift_hold
from notify_pipeline.whatsapp.errors import never_retry_codes

EMERGENCY_STOP_CODE = "emergency_stop"
# The runbook's wording, so its own resume statement still finds the rows we stopped.
EMERGENCY_STOP_MESSAGE = "Emergency stop - manual intervention"


def record(conn: psycopg.Connection, event_type: str, details: dict[str, Any]) -> None:
    conn.execute(queries.record_event, (event_type, Jsonb(details)))


def sweep_locks(conn: psycopg.Connection, older_than: timedelta) -> int:
    """Release claims older than `older_than` (a dead worker's rows). The rows keep their own
    next_attempt_at, so they are due at once if that has passed, not a lease later."""
    with conn.transaction():
        cur = conn.execute(queries.sweep_stale_locks, (older_than,))
        released = cur.rowcount
        record(conn, "NOTIFY_LOCKS_SWEPT", {"released": released, "older_than_s": older_than.total_seconds()})
    return released


# What an opt-out cancelled and what expired: sending it later would go against the contact's
# word or arrive too late. `retry-failed` leaves these rows (and the code table's never-retry codes)
# alone unless told --include-permanent.
CANCELLED_CODES = ("opted_out", "marketing_opted_out", "expired")
CONTACT_OPTED_OUT = "contact_opted_out"  # left whatever the options: the contact says stop now


def permanent_codes() -> tuple[str, ...]:
    return CANCELLED_CODES + never_retry_codes()


@dataclass(frozen=True)
class RetryFilter:
    """Which failed notifications to queue again. At least one narrowing filter is required.

    `include_permanent` also takes what an opt-out cancelled, expired rows and never-retry codes;
    rows of a contact who is opted out now are never taken."""

    since: timedelta | None = None
    domain: str | None = None
    error_code: str | None = None
    template: str | None = None
    include_permanent: bool = False

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["status = 'failed'"], []
        if self.since is not None:
            clauses.append("created_at > now() - %s")
            params.append(self.since)
        for column, value in (
            ("domain", self.domain),
            ("last_error_code", self.error_code),
            ("template_name", self.template),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if len(clauses) == 1:
            raise ValueError(
                "give at least one filter (since, domain, error code or template): "
                "retrying every failed notification ever is never what is meant"
            )
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class RetryResult:
    """How many rows were (or would be) queued again, and how many matched but were left alone,
    by reason: `contact_opted_out`, or the row's code (opted_out, marketing_opted_out, expired,
    131050 ...)."""

    count: int
    left: dict[str, int]
    dry_run: bool

    def describe(self) -> str:
        text = (
            f"would queue again: {self.count} (add --confirm to do it)"
            if self.dry_run
            else f"queued again: {self.count}"
        )
        if self.left:
            text += "\nleft alone: " + ", ".join(f"{reason} {n}" for reason, n in sorted(self.left.items()))
            if set(self.left) - {CONTACT_OPTED_OUT}:
                text += " (--include-permanent takes all but contacts opted out now)"
        return text


def _left_reason(include_permanent: bool) -> tuple[str, list[Any]]:
    """SQL naming why a matching row is left alone (NULL: it is queued again)."""
    opted_out = (
        "EXISTS (SELECT 1 FROM contact_preferences c WHERE c.wa_id = notifications.to_wa_id AND c.opted_out)"
    )
    if include_permanent:
        return f"CASE WHEN {opted_out} THEN %s END", [CONTACT_OPTED_OUT]
    return (
        f"CASE WHEN {opted_out} THEN %s WHEN last_error_code = ANY(%s) THEN last_error_code END",
        [CONTACT_OPTED_OUT, list(permanent_codes())],
    )


def retry_failed(conn: psycopg.Connection, selection: RetryFilter, *, dry_run: bool) -> RetryResult:
    """Queue matching failed rows again with fresh retries; with dry_run, only count them.

    Opted-out contacts' rows stay failed: retrying them would message someone who said stop. So
    do, unless `selection.include_permanent`, rows an opt-out cancelled (even if the contact opted
    back in: mark_opted_in leaves them cancelled), expired rows and never-retry codes."""
    # The one SQL of the engine built in Python rather than named in queries.sql: its WHERE clause
    # and the reason a row is left alone depend on which filters the operator gave.
    where, params = selection.where()
    reason, reason_params = _left_reason(selection.include_permanent)
    with conn.transaction():
        counts = dict(
            conn.execute(
                f"SELECT {reason} AS left_reason, count(*) FROM notifications WHERE {where} GROUP BY 1",
                [*reason_params, *params],
            ).fetchall()
        )
        left = {str(k): v for k, v in counts.items() if k is not None}
        if dry_run:
            return RetryResult(counts.get(None, 0), left, True)
        cur = conn.execute(
            "UPDATE notifications SET status = 'queued', retry_count = 0, deferral_count = 0, "
            "deferrals = '{}'::jsonb, error_message = NULL, last_error_code = NULL, next_attempt_at = NULL, "
            f"locked_at = NULL WHERE {where} AND ({reason}) IS NULL",
            [*params, *reason_params],
        )
        requeued = cur.rowcount
        record(
            conn,
            "NOTIFY_RETRY_FAILED",
            {"requeued": requeued, "left_alone": left, **_filter_details(selection)},
        )
    return RetryResult(requeued, left, False)


def _filter_details(selection: RetryFilter) -> dict[str, Any]:
    details = {k: v for k, v in vars(selection).items() if v is not None}
    if selection.since is not None:
        details["since"] = selection.since.total_seconds()
    return details


def set_paused(conn: psycopg.Connection, paused: bool, reason: str, actor: str) -> None:
    """The database kill switch: every worker and the sensor stop while it is set."""
    with conn.transaction():
        conn.execute(queries.set_paused, (paused, reason, actor))
        record(conn, "NOTIFY_PAUSED" if paused else "NOTIFY_RESUMED", {"reason": reason, "actor": actor})


def paused(conn: psycopg.Connection) -> tuple[bool, str | None]:
    row = conn.execute(queries.paused).fetchone()
    return (bool(row[0]), row[1]) if row else (False, None)


def emergency_stop(conn: psycopg.Connection, reason: str, actor: str) -> int:
    """Pause, then mark every waiting row failed with a code of its own, so resume finds exactly
    these rows (the runbook's resume only finds rows created in the last hour). Rows a worker is
    sending right now are left to finish; the pause stops that worker within a batch."""
    with conn.transaction():
        set_paused(conn, True, reason, actor)
        cur = conn.execute(queries.emergency_stop_rows, (EMERGENCY_STOP_CODE, EMERGENCY_STOP_MESSAGE))
        stopped = cur.rowcount
        record(conn, "NOTIFY_EMERGENCY_STOP", {"stopped": stopped, "reason": reason, "actor": actor})
    return stopped


def resume(conn: psycopg.Connection, reason: str, actor: str) -> int:
    """Lift the pause and queue again every row the emergency stop held, whatever its age. Each row
    keeps its retry count and its own due time."""
    with conn.transaction():
        cur = conn.execute(queries.resume_stopped_rows, (EMERGENCY_STOP_CODE,))
        resumed = cur.rowcount
        set_paused(conn, False, reason, actor)
        record(conn, "NOTIFY_EMERGENCY_RESUME", {"requeued": resumed, "reason": reason, "actor": actor})
    return resumed


@dataclass(frozen=True)
class Resumed:
    """What a resume did, and what it left in place (the pause and a sender hold are apart)."""

    sender: str
    hold: bool  # asked to lift the sender's hold (otherwise: the emergency stop)
    requeued: int = 0  # rows the emergency stop held, queued again
    was_paused: bool = False
    lifted: Hold | None = None  # the hold lifted
    still_paused: str | None = None  # the pause's reason, when a hold resume left it
    still_held: Hold | None = None  # the hold a plain resume left

    def describe(self) -> str:
        if self.hold:
            text = (
                f"sender {self.sender}: lifted the {self.lifted.kind} hold set {self.lifted.since:%Y-%m-%d %H:%M} "
                f"({self.lifted.reason}); send runs start again"
                if self.lifted
                else f"sender {self.sender} was not held: nothing to lift"
            )
            if self.still_paused is not None:
                text += f"; sending is still paused ({self.still_paused}): `resume --reason ...` lifts that"
            return text
        if self.was_paused or self.requeued:
            text = f"sending resumed; {self.requeued} held notification(s) queued again"
        else:
            text = "sending was not paused: nothing to resume"
        if self.still_held:
            text += (
                f"; sender {self.sender} is still held ({self.still_held.kind}: {self.still_held.reason}): "
                "fix it, then `notify-pipeline resume --hold --reason ...`"
            )
        return text


def resume_sending(conn: psycopg.Connection, sender: str, reason: str, actor: str, *, hold: bool) -> Resumed:
    """Resume with the CLI's and resume_job's meaning: by default lift the emergency stop (the pause
    and the rows it held), with `hold` lift only the sender's auth or account hold instead."""
    is_paused, pause_reason = paused(conn)
    if hold:
        lifted = lift_hold(conn, sender, reason, actor)
        return Resumed(sender, True, lifted=lifted, still_paused=pause_reason if is_paused else None)
    held = active_hold(conn, sender)
    stopped = conn.execute(queries.stopped_rows_exist, (EMERGENCY_STOP_CODE,)).fetchone()[0]
    if not is_paused and not stopped and held is not None:
        return Resumed(sender, False, still_held=held)  # nothing of the stop's to undo: say what is
    return Resumed(sender, False, resume(conn, reason, actor), is_paused, still_held=held)

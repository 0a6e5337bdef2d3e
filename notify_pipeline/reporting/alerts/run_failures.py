"""The alert for failed runs of a job, grouped into episodes: job, run id, the error, what to do.

Any job of the code location counts, the asset jobs included (UI materialisations, backfills).
An episode of run_failure:<job> opens ('firing') with a job's failure and pages once; more
failures of that job while it is open are counted in it and page again only as a reminder, at
most every `repeat_s`; the next successful run of the job resolves it (with a resolve message).
A run is counted once: a failure event delivered twice is recognised by its run id.

A send run stopped by Meta's refusal of the token or the account is recognised from the drain's
NOTIFY_AUTH_FAILURE / NOTIFY_ACCOUNT_FAILURE event and says what to do: the sender is held (no
send run starts) until the token or account is fixed and `notify-pipeline resume --hold` lifts it.
A send run whose drain recorded a planned stop (a signal, its lifetime, a pause...) is no failure,
whatever Dagster says (the process was stopped after its drain had finished): it is not counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from notify_pipeline import redact
from notify_pipeline.engine.drain_config import PLANNED_STOPS, StopReason
from notify_pipeline.reporting.alerts.lifecycle import EPISODE, open_episode, record
from notify_pipeline.reporting.alerts.messages import compose, stamp
from notify_pipeline.reporting.alerts.sink import Delivery, Sink
from notify_pipeline.reporting.alerts.verdict import Verdict, duration

ERROR_CHARS = 600
SEND_JOB = "send_notifications_job"
KEEP_RUNS = 20  # run ids kept in an episode's details (the newest)
REPEAT_S = 1800.0  # while an episode lasts, a further failure reminds at most this often
# Phone numbers in free text (an error quoting a recipient): dropped, not masked.
_PHONE = re.compile(r"\+\d[\d ().-]{6,16}\d|(?<![\w.-])\d{9,15}(?![\w.-])")

FIRST_CHECKS: dict[str, str] = {
    "send_notifications_job": "Open the run in Dagster for the step's error. The queue is intact: unsent rows "
    "were given back, and due_notifications_sensor launches the next send run by itself.",
    "sweep_locks_job": "Stale claims stay until a sweep succeeds (checked every 5 minutes): run "
    "`notify-pipeline sweep --older-than 15m` if it keeps failing.",
    "retry_failed_job": "Nothing was re-queued: check the filters in the run config and run it again, dry run first.",
    "emergency_stop_job": "URGENT: the stop may not have taken effect. Check `notify-pipeline status` and run "
    "`notify-pipeline stop --reason ...` from a shell.",
    "resume_job": "Sending may still be paused or held: check `notify-pipeline status`, then `notify-pipeline "
    "resume --reason ...` (add --hold for a credentials or account hold).",
    "send_test_notification_job": "The test message was not queued: check the recipient and template in the run config.",
    "export_metrics_job": "Prometheus keeps the last exported values: check the textfile path and the "
    "Pushgateway in the run's error; the next export (every minute) overwrites them once it works.",
}
# Dagster's own jobs for materialisations launched from the UI and for asset backfills.
ASSET_JOB_CHECK = (
    "An asset materialisation (from the UI or a backfill) failed: open the run, fix the cause and "
    "materialise the failed partitions again; partition writes are idempotent."
)
HOLD_CHECKS = {
    "auth": "Refresh WHATSAPP_ACCESS_TOKEN (a system-user token with whatsapp_business_messaging) where the "
    "code location runs, then `notify-pipeline resume --hold --reason ...` (or resume_job with hold: true). "
    "Until then the sender is held and no send run starts; nothing is lost.",
    "account": "Fix the business account or sender number in WhatsApp Manager (Meta's error says what), then "
    "`notify-pipeline resume --hold --reason ...` (or resume_job with hold: true). Until then the sender is "
    "held and no send run starts; nothing is lost.",
}
AUTH_CHECK = HOLD_CHECKS["auth"]
REFUSED = {"auth": "the Cloud API refused our credentials", "account": "Meta refused the account or number"}


@dataclass(frozen=True)
class RunFailure:
    job_name: str
    run_id: str
    message: str  # Dagster's run failure message
    step_errors: tuple[str, ...] = ()  # each failed step's error (a Failure's description first)


def clean(text: str, secrets: tuple[str, ...] = ()) -> str:
    """One line of error text, safe to post: secrets (those given, and every one notify_pipeline.redact
    knows: database passwords, token, app secret, alert URLs) and phone numbers removed, length capped."""
    text = redact.scrub(text, secrets, numbers=False)
    text = " ".join(_PHONE.sub("<number>", text).split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def refusal(conn: psycopg.Connection, run_id: str) -> tuple[str, str] | None:
    """(kind, Meta's error) when this run's drain stopped on a refused token or account."""
    # The send op names its worker dagster:<first 8 of the run id> (defs/queue/jobs.py), and the
    # drain records NOTIFY_AUTH_FAILURE / NOTIFY_ACCOUNT_FAILURE under that worker.
    row = conn.execute(
        "SELECT details->>'kind', details->>'error' FROM observability_events "
        "WHERE event_type IN ('NOTIFY_AUTH_FAILURE', 'NOTIFY_ACCOUNT_FAILURE') AND details->>'worker' = %s "
        "ORDER BY created_at DESC LIMIT 1",
        (f"dagster:{run_id[:8]}",),
    ).fetchone()
    return (row[0] or "auth", row[1] or "") if row else None


def drain_stop(conn: psycopg.Connection, run_id: str) -> str | None:
    """How this send run's drain stopped, as it recorded it (in the registry, or in its
    NOTIFY_WORKER_DONE event when it was journaled and replayed); None if it never said."""
    worker = f"dagster:{run_id[:8]}"
    row = conn.execute(
        "SELECT coalesce((SELECT stopped_by FROM send_workers WHERE worker_id = %(w)s AND ended_at IS NOT NULL), "
        "(SELECT details->>'stopped_by' FROM observability_events WHERE event_type = 'NOTIFY_WORKER_DONE' "
        "AND details->>'worker' = %(w)s ORDER BY created_at DESC LIMIT 1))",
        {"w": worker},
    ).fetchone()
    return row[0] if row else None


# What Dagster says of a run whose process got SIGTERM/SIGINT before the op's own handler was in
# place (a deploy or Ctrl-C while the run was still launching): it was stopped, it did not fail.
INTERRUPTED = ("DagsterExecutionInterruptedError", "Execution was interrupted")


def interrupted(failure: RunFailure) -> bool:
    texts = [failure.message or "", *failure.step_errors]
    return any(mark in text for text in texts for mark in INTERRUPTED)


def verdict(failure: RunFailure, refused: tuple[str, str] | None, secrets: tuple[str, ...] = ()) -> Verdict:
    error = clean(failure.step_errors[0] if failure.step_errors else failure.message, secrets)
    short = f"{failure.job_name} run {failure.run_id[:8]} failed"
    numbers = {"job": failure.job_name, "run_id": failure.run_id, "error": error}
    if refused is None and "WHATSAPP_ACCESS_TOKEN" in error:
        refused = ("auth", "")
    if refused is not None:
        kind, why = refused[0], clean(refused[1], secrets) if refused[1] else "see the run"
        numbers[(StopReason.AUTH_ERROR if kind == "auth" else StopReason.ACCOUNT_ERROR).value] = why
        return Verdict(
            True,
            f"{short}: {REFUSED.get(kind, REFUSED['auth'])} ({why}). Sending stopped and the sender is held; "
            "the queue is intact.",
            (f"Run id: {failure.run_id}",),
            HOLD_CHECKS.get(kind, AUTH_CHECK),
            numbers,
        )
    first = FIRST_CHECKS.get(failure.job_name) or (
        ASSET_JOB_CHECK if _asset_job(failure.job_name) else "Open the run in Dagster for the full error."
    )
    facts = (f"Run id: {failure.run_id}", f"Dagster: {clean(failure.message, secrets)}")
    return Verdict(True, f"{short}: {error}", facts, first, numbers)


@dataclass(frozen=True)
class Announcement:
    verdict: Verdict | None  # None: this run was counted before
    delivery: Delivery | None  # None: nothing was posted (counted in an open episode, or a repeat)
    note: str | None = None  # what was done instead of paging, or what went wrong recording it


def _asset_job(job_name: str) -> bool:
    return job_name.startswith("__") and "asset_job" in job_name.lower()


def name(job_name: str) -> str:
    return f"run_failure:{job_name}"


def announce(
    open_db: Callable[[], AbstractContextManager[psycopg.Connection]],
    failure: RunFailure,
    sink: Sink,
    now: datetime,
    secrets: tuple[str, ...] = (),
    repeat_s: float = REPEAT_S,
) -> Announcement:
    """Count the failure in its job's episode; page when it opens the episode (or as a reminder).
    The queue database may be what failed: then the alert is still posted (without the refusal's
    diagnosis) and the note says it was not recorded."""
    posted: list[Announcement] = []  # what was posted, should recording it fail afterwards
    try:
        with open_db() as conn, conn.transaction():
            stop = drain_stop(conn, failure.run_id) if failure.job_name == SEND_JOB else None
            if stop in PLANNED_STOPS:
                return Announcement(None, None, f"its drain stopped as planned ({stop}): not a failure")
            if failure.job_name == SEND_JOB and stop is None and interrupted(failure):
                return Announcement(None, None, "stopped by a signal before its drain started: not a failure")
            episode = open_episode(conn, name(failure.job_name), lock=True)
            if episode is not None and failure.run_id in episode["details"].get("run_ids", []):
                if episode["notifications"] > 0:
                    return Announcement(None, None, "already counted in the open episode")
                kind = "firing"  # counted, but its page never arrived: try again
            else:
                found = verdict(failure, refusal(conn, failure.run_id), secrets)
                episode = _count(conn, episode, failure, found, now)
                kind = _page_kind(episode, now, repeat_s)
            found = _stored_verdict(episode)
            if kind is None:
                return Announcement(
                    found,
                    None,
                    f"failure {episode['details']['failures']} of the episode firing since "
                    f"{stamp(episode['started_at'])}; paged at {stamp(episode['last_notified_at'])}, "
                    f"reminders at most every {duration(repeat_s)}",
                )
            delivery = sink.deliver(_message(kind, failure, episode, found, now))
            posted.append(Announcement(found, delivery))
            _save(conn, episode, dict(episode["details"]), now, kind, delivery)
            return posted[0]
    except psycopg.Error as exc:
        if posted:
            return Announcement(
                posted[0].verdict, posted[0].delivery, f"could not record the alert ({type(exc).__name__})"
            )
        found = verdict(failure, None, secrets)
        delivery = sink.deliver(_message("firing", failure, None, found, now))
        note = f"queue database unreachable ({type(exc).__name__}): alert posted but not recorded"
        return Announcement(found, delivery, note)


def resolve(
    open_db: Callable[[], AbstractContextManager[psycopg.Connection]],
    job_name: str,
    run_id: str,
    sink: Sink,
    now: datetime,
) -> Announcement | None:
    """A run of the job succeeded: resolve the job's open episode, if any, and say so."""
    with open_db() as conn, conn.transaction():
        episode = open_episode(conn, name(job_name), lock=True)
        if episode is None:
            return None
        details = episode["details"]
        found = _stored_verdict(episode)
        lasted = duration((now - episode["started_at"]).total_seconds())
        headline = (
            f"{job_name} run {run_id[:8]} succeeded after {details.get('failures', 1)} failed run(s) "
            f"over {lasted}"
        )
        delivery = None
        if episode["notifications"] > 0:  # nobody was told it fired: no all-clear either
            lines = [f":white_check_mark: RESOLVED | {headline}", f"Was: {episode['summary']}"]
            delivery = sink.deliver(
                compose(lines, f"alert {name(job_name)} · started {stamp(episode['started_at'])}")
            )
        details["resolved_with"] = {"run_id": run_id, "headline": headline}
        _save(conn, episode, details, now, "resolved", delivery)
        return Announcement(found, delivery)


def _count(
    conn: psycopg.Connection,
    episode: dict[str, Any] | None,
    failure: RunFailure,
    found: Verdict,
    now: datetime,
) -> dict[str, Any]:
    if episode is None:
        details = {**found.numbers, "facts": list(found.facts), "first_check": found.first_check}
        details.update(run_ids=[failure.run_id], failures=1, deliveries=[], delivery_failures=0)
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "INSERT INTO alerts (alert_name, state, summary, details, started_at) "
                f"VALUES (%s, 'firing', %s, %s, %s) RETURNING {EPISODE}",
                (name(failure.job_name), found.headline, Jsonb(details), now),
            ).fetchone()
    details = dict(episode["details"])
    details.update(found.numbers)
    details.update(facts=list(found.facts), first_check=found.first_check)
    details["run_ids"] = [*details.get("run_ids", []), failure.run_id][-KEEP_RUNS:]
    details["failures"] = details.get("failures", 1) + 1
    _save(conn, episode, details, now, None, None, summary=found.headline)
    return {**episode, "summary": found.headline, "details": details}


def _page_kind(episode: dict[str, Any], now: datetime, repeat_s: float) -> str | None:
    last = episode["last_notified_at"]
    if episode["notifications"] == 0 or last is None:
        return "firing"
    return "repeat" if (now - last).total_seconds() >= repeat_s else None


def _stored_verdict(episode: dict[str, Any]) -> Verdict:
    details = episode["details"]
    return Verdict(
        True, episode["summary"], tuple(details.get("facts", [])), details.get("first_check", ""), details
    )


def _message(
    kind: str, failure: RunFailure, episode: dict[str, Any] | None, found: Verdict, now: datetime
) -> dict[str, Any]:
    if kind == "repeat" and episode is not None:
        failures = episode["details"].get("failures", 1)
        lasted = duration((now - episode["started_at"]).total_seconds())
        head = f":warning: STILL FAILING ({failures} failed runs in {lasted}) | {found.headline}"
    else:
        head = f":x: RUN FAILED | {found.headline}"
    lines = [head, *(f"• {fact}" for fact in found.facts), f"First check: {found.first_check}"]
    started = stamp(episode["started_at"]) if episode else stamp(now)
    return compose(lines, f"alert {name(failure.job_name)} · run {failure.run_id} · started {started}")


def _save(
    conn: psycopg.Connection,
    episode: dict[str, Any],
    details: dict[str, Any],
    now: datetime,
    kind: str | None,
    delivery: Delivery | None,
    summary: str | None = None,
) -> None:
    if record(conn, episode["id"], summary or episode["summary"], details, now, kind, delivery):
        episode["notifications"] = episode["notifications"] + 1
        episode["last_notified_at"] = now

"""Queue jobs. Each op only wires resources and config to an engine function and reports metadata."""

from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi, run_actor
from notify_pipeline.engine import operations
from notify_pipeline.engine.drain import run_drain
from notify_pipeline.engine.drain_config import PLANNED_STOPS, DrainConfig, DrainReport, StopReason
from notify_pipeline.engine.drain_settings import (
    BATCH_SIZE,
    CONCURRENCY,
    LIFETIME_MINUTES,
    THROUGHPUT_PER_S,
    Setting,
)

# Run tag that dagster.yaml limits per value: the send runs of one sender phone number.
SENDER_TAG = "notify/sender"
# Tags the send op adds to its own run as it ends: how its drain stopped (a StopReason) and how long
# it held the sender. The sensor's back-off reads them (a planned stop or a database outage is no
# crash; a run that served ends a failure streak); operators see them in the UI.
STOPPED_BY_TAG = "notify/stopped_by"
SERVED_TAG = "notify/served_s"
# Added to a send run's lock wait and lifetime for its dagster/max_runtime tag: a backstop
# only, for a run that hangs while alive (a live drain ends by itself).
MAX_RUNTIME_GRACE_S = 300


def sender_tags() -> dict[str, str]:
    return {SENDER_TAG: settings.sender_key()}


def one_op_job(op: dg.OpDefinition, name: str, description: str, **options: Any) -> dg.JobDefinition:
    """A job of one op, run in the launching process (no step subprocess): every queue job is one
    engine call, most of them one short transaction."""

    @dg.job(name=name, executor_def=dg.in_process_executor, description=description, **options)
    def job() -> None:
        op()

    return job


def _drain_setting(setting: Setting, description: str) -> Any:
    # A run-config field with the drain setting's own default and range (engine/drain_config.py),
    # the same as `notify-pipeline send` takes.
    return Field(default=setting.default, ge=setting.low, le=setting.high, description=description)


class SendConfig(dg.Config):
    lifetime_minutes: float = _drain_setting(
        LIFETIME_MINUTES, "How long the run serves before it ends and its successor takes over."
    )
    lock_wait_minutes: float = Field(
        default=10.0,
        ge=2,  # the sensor sets a standby's wait to its predecessor's lifetime and more
        le=24 * 60,
        description="How long to wait for the sender's previous drain to let go of the sender lock.",
    )
    batch_size: int = _drain_setting(BATCH_SIZE, "Rows claimed per batch.")
    concurrency: int = _drain_setting(CONCURRENCY, "Requests in flight.")
    throughput_per_s: float = _drain_setting(
        THROUGHPUT_PER_S,
        f"The sender number's throughput tier at Meta ({THROUGHPUT_PER_S.default:g} by default, up to "
        f"{THROUGHPUT_PER_S.high:,g} msg/s); the drain paces a margin under it.",
    )
    trigger: str = Field(default="manual", description="Recorded in NOTIFY_WORKER_START/DONE.")

    def max_runtime_s(self) -> int:
        """The run's dagster/max_runtime: lock wait, lifetime and a grace."""
        return round((self.lock_wait_minutes + self.lifetime_minutes) * 60) + MAX_RUNTIME_GRACE_S


def drain_config(
    config: SendConfig, run_id: str, progress, *, lifetime_s: float | None = None
) -> DrainConfig:
    """The serving drain of a send run. `lifetime_s` overrides lifetime_minutes (tests only)."""
    lifetime = lifetime_s if lifetime_s is not None else config.lifetime_minutes * 60
    return DrainConfig(
        serve=True,
        max_seconds=lifetime,
        lock_wait_s=config.lock_wait_minutes * 60,
        batch_size=config.batch_size,
        concurrency=config.concurrency,
        throughput_per_s=config.throughput_per_s,
        sender=settings.sender_key(),
        run_id=run_id,
        # run_failures.py finds a run's drain events by this name.
        worker_id=f"dagster:{run_id[:8]}",
        trigger=config.trigger,
        progress=progress,
    )


def serve_sender(
    context: dg.OpExecutionContext, queue_db: QueueDatabase, whatsapp: WhatsAppCloudApi, config: DrainConfig
) -> dg.Output[dict]:
    """Run the drain; a success unless it stopped on a fault (then a Failure that says what to do).
    A planned stop is a success: SIGTERM or SIGINT (a deploy, `dev`'s Ctrl-C) stops the drain
    cleanly (engine/stop_signals.py); when Dagster sent it to terminate the run, the run ends
    CANCELED, as Dagster ends it."""
    context.log.info(
        f"serving sender {config.sender} for {config.max_seconds / 60:.1f} min "
        f"(waiting up to {config.lock_wait_s / 60:.1f} min for the sender lock)"
    )
    report = run_drain(queue_db.url, whatsapp.client_settings(), config)
    _tag_run(context, report)
    metadata = {
        "sent": report.sent,
        "failed": dg.MetadataValue.json(dict(report.failed)),
        "deferred_by_reason": dg.MetadataValue.json(dict(report.deferred)),
        "retried": dg.MetadataValue.json(dict(report.retried)),
        "sent_per_s": report.sent_per_s,
        "stopped_by": str(report.stopped_by),
        "duration_s": round(report.duration_s, 2),
    }
    if report.fault:
        metadata["fault"] = report.fault
    if report.failed_on_fault:
        raise dg.Failure(description=_failure_text(report.stopped_by, report.fault), metadata=metadata)
    if report.stopped_by not in PLANNED_STOPS:  # a stop this op does not know: say so, do not hide it
        context.log.warning(f"the drain stopped by {report.stopped_by!r}: {report.fault}")
    context.log.info(
        f"the drain ended ({report.stopped_by}): sent {report.sent}, gave back {report.released}"
    )
    if report.stopped_by == StopReason.SIGNAL and _terminating(context):
        # Dagster's terminate sent the signal: end the run CANCELED (rows given back, sender handed
        # over: the stop is done), as Dagster ends a terminated run.
        raise dg.DagsterExecutionInterruptedError("terminated from Dagster; the drain stopped cleanly")
    return dg.Output(report.as_dict(), metadata=metadata)


def _tag_run(context: dg.OpExecutionContext, report: DrainReport) -> None:
    tags = {STOPPED_BY_TAG: report.stopped_by or "unknown", SERVED_TAG: str(round(report.duration_s))}
    try:
        context.instance.add_run_tags(context.run_id, tags)
    except Exception as exc:  # the run's own storage away: the back-off then counts it as a crash
        context.log.warning(f"could not tag the run with how its drain stopped: {type(exc).__name__}")


def _terminating(context: dg.OpExecutionContext) -> bool:
    try:
        run = context.instance.get_run_by_id(context.run_id)
    except Exception:  # the run's storage away: a success it is (the stop was planned all the same)
        return False
    return run is not None and run.status == dg.DagsterRunStatus.CANCELING


def _failure_text(stopped_by: str, fault: str | None) -> str:
    what = fault or stopped_by
    if stopped_by == StopReason.AUTH_ERROR:
        return (
            f"The Cloud API refused our credentials: {what}. Sending stopped and the sender is held, so "
            "no send run starts until it is lifted; the queue is intact. Refresh WHATSAPP_ACCESS_TOKEN, "
            "then `notify-pipeline resume --hold --reason ...` (or resume_job with hold: true)."
        )
    if stopped_by == StopReason.ACCOUNT_ERROR:
        return (
            f"Meta refused the business account or sender number: {what}. Sending stopped and the sender "
            "is held; the queue is intact. Fix the account in WhatsApp Manager, then `notify-pipeline "
            "resume --hold --reason ...` (or resume_job with hold: true)."
        )
    return (
        f"The send run stopped on a fault: {what}. Unsent rows were given back; due_notifications_sensor "
        "launches the next send run."
    )


@dg.op(tags={"kind": "whatsapp"})
def send_due_notifications(
    context: dg.OpExecutionContext, config: SendConfig, queue_db: QueueDatabase, whatsapp: WhatsAppCloudApi
) -> dg.Output[dict]:
    """Serve the sender: take its lock (one drain per sender), send rows as they come due, wait for
    work in between (woken by NOTIFY), and end cleanly when the lifetime ends or sending is paused,
    held or switched off. A progress line a minute goes to the run's log."""
    return serve_sender(context, queue_db, whatsapp, drain_config(config, context.run_id, context.log.info))


send_notifications_job = one_op_job(
    send_due_notifications,
    "send_notifications_job",
    "A long-lived send run for one sender: claims and sends as rows come due, "
    "kept alive and handed over by due_notifications_sensor.",
    tags={"dagster/max_retries": "0"},
)


class SweepConfig(dg.Config):
    older_than_minutes: float = Field(
        default=15.0, ge=0, description="Lease: claims older than this are released."
    )


@dg.op
def sweep_stale_locks(context: dg.OpExecutionContext, config: SweepConfig, queue_db: QueueDatabase) -> int:
    """Release claims whose worker died; each row becomes due at its own next_attempt_at."""
    with queue_db.connection(actor=run_actor(context)) as conn:
        released = operations.sweep_locks(conn, timedelta(minutes=config.older_than_minutes))
    context.add_output_metadata({"released": released})
    return released


sweep_locks_job = one_op_job(
    sweep_stale_locks, "sweep_locks_job", "Release stale claims (older than the lease)."
)


class RetryFailedConfig(dg.Config):
    since_hours: float | None = Field(
        default=1.0, description="Only rows created this many hours ago or later."
    )
    domain: str | None = None
    error_code: str | None = Field(default=None, description="last_error_code, e.g. 131000 or timeout.")
    template: str | None = Field(default=None, description="Meta template name.")
    include_permanent: bool = Field(
        default=False,
        description="Also rows an opt-out cancelled, expired rows and never-retry codes (131050, 130403, ...); "
        "contacts opted out now are never retried.",
    )
    dry_run: bool = Field(default=True, description="Count only. Set false to queue the rows again.")


@dg.op
def retry_failed_notifications(
    context: dg.OpExecutionContext, config: RetryFailedConfig, queue_db: QueueDatabase
) -> int:
    """Queue failed notifications again (fresh retries); a dry run counts them first. What an
    opt-out cancelled, expired rows and never-retry codes are left alone (and counted) unless
    include_permanent."""
    selection = operations.RetryFilter(
        since=timedelta(hours=config.since_hours) if config.since_hours is not None else None,
        domain=config.domain,
        error_code=config.error_code,
        template=config.template,
        include_permanent=config.include_permanent,
    )
    with queue_db.connection(actor=run_actor(context)) as conn:
        result = operations.retry_failed(conn, selection, dry_run=config.dry_run)
    context.add_output_metadata(
        {
            "matched" if config.dry_run else "requeued": result.count,
            "left_alone": dg.MetadataValue.json(result.left),
            "dry_run": config.dry_run,
        }
    )
    return result.count


retry_failed_job = one_op_job(
    retry_failed_notifications,
    "retry_failed_job",
    "Re-queue failed notifications by time window, domain, error code or template.",
)


class StopConfig(dg.Config):
    reason: str = Field(description="Why: recorded with the stop.")


@dg.op
def stop_sending(context: dg.OpExecutionContext, config: StopConfig, queue_db: QueueDatabase) -> int:
    """Pause all sending and hold every waiting notification, marked so resume finds exactly them."""
    with queue_db.connection(actor=run_actor(context)) as conn:
        stopped = operations.emergency_stop(conn, config.reason, actor=_operator(context))
    context.add_output_metadata({"stopped": stopped})
    return stopped


emergency_stop_job = one_op_job(
    stop_sending, "emergency_stop_job", "Emergency stop: pause sending and hold every waiting notification."
)


class ResumeConfig(dg.Config):
    reason: str = Field(description="Why it is safe again: recorded with the resume.")
    hold: bool = Field(
        default=False,
        description="Lift this sender's auth or account hold (after fixing the token or account) "
        "instead of the emergency stop.",
    )


@dg.op
def resume_sending(context: dg.OpExecutionContext, config: ResumeConfig, queue_db: QueueDatabase) -> int:
    """Lift the emergency stop and queue again the notifications it held; with hold, lift the
    sender's auth or account hold instead (the two are kept apart)."""
    with queue_db.connection(actor=run_actor(context)) as conn:
        done = operations.resume_sending(
            conn, settings.sender_key(), config.reason, _operator(context), hold=config.hold
        )
    context.log.info(done.describe())
    context.add_output_metadata(
        {"requeued": done.requeued, "hold_lifted": done.lifted is not None, "outcome": done.describe()}
    )
    return done.requeued


resume_job = one_op_job(
    resume_sending,
    "resume_job",
    "Resume after an emergency stop, or (hold: true) after an auth or account hold.",
)


def _operator(context: dg.OpExecutionContext) -> str:
    # Who stopped or resumed sending, as queue_control and the audit trail record it.
    return f"dagster:{context.run_id[:8]}"

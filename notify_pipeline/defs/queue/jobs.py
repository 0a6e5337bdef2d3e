"""Queue jobs. Each op only wires resources and config to an engine function and reports metadata."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi
from notify_pipeline.engine import operations
from notify_pipeline.engine.drain import run_drain
from notify_pipeline.engine.drain_config import DrainConfig

# Run tag that dagster.yaml limits to one run per value: one send run per sender phone number.
SENDER_TAG = "notify/sender"


def sender_tags() -> dict[str, str]:
    return {SENDER_TAG: settings.sender_key()}


class SendConfig(dg.Config):
    batch_size: int = Field(default=200, ge=1, le=5000, description="Rows claimed per batch.")
    concurrency: int = Field(default=64, ge=1, le=512, description="Requests in flight.")
    max_seconds: float = Field(default=50.0, gt=0, le=3600, description="Time budget of the drain.")
    throughput_per_s: float = Field(
        default=80.0, gt=0, le=1000, description="Sender limit (Meta: 80, up to 1,000)."
    )
    trigger: str = Field(default="manual", description="Recorded in NOTIFY_WORKER_START/DONE.")


@dg.op(tags={"kind": "whatsapp"})
def send_due_notifications(
    context: dg.OpExecutionContext, config: SendConfig, queue_db: QueueDatabase, whatsapp: WhatsAppCloudApi
) -> dg.Output[dict]:
    """Claim due notifications and send them until none is due or the time budget ends."""
    drain_config = DrainConfig(
        batch_size=config.batch_size,
        concurrency=config.concurrency,
        max_seconds=config.max_seconds,
        throughput_per_s=config.throughput_per_s,
        trigger=config.trigger,
        worker_id=f"dagster:{context.run_id[:8]}",
    )
    report = run_drain(queue_db.url, whatsapp.client_settings(), drain_config)
    summary = report.as_dict()
    metadata = {
        "sent": report.sent,
        "failed": dg.MetadataValue.json(dict(report.failed)),
        "deferred_by_reason": dg.MetadataValue.json(dict(report.deferred)),
        "retried": dg.MetadataValue.json(dict(report.retried)),
        "sent_per_s": report.sent_per_s,
        "stopped_by": report.stopped_by,
        "duration_s": round(report.duration_s, 2),
    }
    if report.auth_error:
        raise dg.Failure(
            description=f"The Cloud API refused our credentials: {report.auth_error}. Sending stopped; the "
            f"queue is intact. Refresh WHATSAPP_ACCESS_TOKEN, then launch a send run.",
            metadata=metadata,
        )
    return dg.Output(summary, metadata=metadata)


@dg.job(tags={"dagster/max_retries": "0"}, description="Claim-and-send until the queue has no due rows.")
def send_notifications_job() -> None:
    send_due_notifications()


class SweepConfig(dg.Config):
    older_than_minutes: float = Field(
        default=15.0, ge=0, description="Lease: claims older than this are released."
    )


@dg.op
def sweep_stale_locks(context: dg.OpExecutionContext, config: SweepConfig, queue_db: QueueDatabase) -> int:
    """Release claims whose worker died; each row becomes due at its own next_attempt_at."""
    with queue_db.connection(actor=f"sweep_locks_job:{context.run_id[:8]}") as conn:
        released = operations.sweep_locks(conn, timedelta(minutes=config.older_than_minutes))
    context.add_output_metadata({"released": released})
    return released


@dg.job(description="Release stale claims (older than the lease).")
def sweep_locks_job() -> None:
    sweep_stale_locks()


class RetryFailedConfig(dg.Config):
    since_hours: float | None = Field(
        default=1.0, description="Only rows created this many hours ago or later."
    )
    domain: str | None = None
    error_code: str | None = Field(default=None, description="last_error_code, e.g. 131000 or timeout.")
    template: str | None = Field(default=None, description="Meta template name.")
    dry_run: bool = Field(default=True, description="Count only. Set false to queue the rows again.")


@dg.op
def retry_failed_notifications(
    context: dg.OpExecutionContext, config: RetryFailedConfig, queue_db: QueueDatabase
) -> int:
    """Queue failed notifications again (fresh retries); a dry run counts them first."""
    selection = operations.RetryFilter(
        since=timedelta(hours=config.since_hours) if config.since_hours is not None else None,
        domain=config.domain,
        error_code=config.error_code,
        template=config.template,
    )
    with queue_db.connection(actor=f"retry_failed_job:{context.run_id[:8]}") as conn:
        count = operations.retry_failed(conn, selection, dry_run=config.dry_run)
    context.add_output_metadata(
        {"matched" if config.dry_run else "requeued": count, "dry_run": config.dry_run}
    )
    return count


@dg.job(description="Re-queue failed notifications by time window, domain, error code or template.")
def retry_failed_job() -> None:
    retry_failed_notifications()


class StopConfig(dg.Config):
    reason: str = Field(description="Why: recorded with the stop.")


@dg.op
def stop_sending(context: dg.OpExecutionContext, config: StopConfig, queue_db: QueueDatabase) -> int:
    """Pause all sending and hold every waiting notification, marked so resume finds exactly them."""
    with queue_db.connection(actor=f"emergency_stop_job:{context.run_id[:8]}") as conn:
        stopped = operations.emergency_stop(conn, config.reason, actor=f"dagster:{context.run_id[:8]}")
    context.add_output_metadata({"stopped": stopped})
    return stopped


@dg.job(description="Emergency stop: pause sending and hold every waiting notification.")
def emergency_stop_job() -> None:
    stop_sending()


@dg.op
def resume_sending(context: dg.OpExecutionContext, config: StopConfig, queue_db: QueueDatabase) -> int:
    """Lift the pause and queue again the notifications the emergency stop held."""
    with queue_db.connection(actor=f"resume_job:{context.run_id[:8]}") as conn:
        resumed = operations.resume(conn, config.reason, actor=f"dagster:{context.run_id[:8]}")
    context.add_output_metadata({"requeued": resumed})
    return resumed


@dg.job(description="Resume after an emergency stop.")
def resume_job() -> None:
    resume_sending()

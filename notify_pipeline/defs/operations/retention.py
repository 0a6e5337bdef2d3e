"""Audit-log clean-up job and its weekly schedule (the runbook's > 90 days clean-up)."""

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations import retention


class CleanupConfig(dg.Config):
    older_than_days: int = Field(
        default=retention.DEFAULT_DAYS, ge=1, description="Delete rows older than this."
    )
    batch_size: int = Field(
        default=retention.DEFAULT_BATCH, ge=1, le=50_000, description="Rows per transaction."
    )
    include_alerts: bool = Field(default=True, description="Also delete resolved alert episodes.")
    dry_run: bool = Field(default=True, description="Count only. Set false to delete.")


@dg.op
def delete_old_audit_rows(
    context: dg.OpExecutionContext, config: CleanupConfig, queue_db: QueueDatabase
) -> dict:
    """Delete (or count) old audit-log rows, observability events and resolved alerts, in batches."""
    actor = f"{context.job_name}:{context.run_id[:8]}"
    with queue_db.connection(actor=actor) as conn:
        report = retention.cleanup(
            conn,
            actor,
            older_than_days=config.older_than_days,
            batch_size=config.batch_size,
            dry_run=config.dry_run,
            include_alerts=config.include_alerts,
        )
    context.add_output_metadata(
        {
            "dry_run": report.dry_run,
            "cutoff": report.cutoff.isoformat(),
            "rows": dg.MetadataValue.json(report.rows),
            "batches": dg.MetadataValue.json(report.batches),
        }
    )
    return report.as_dict()


@dg.job(description="Delete audit-log rows, observability events and resolved alerts older than N days.")
def audit_log_cleanup_job() -> None:
    delete_old_audit_rows()


audit_log_cleanup_schedule = dg.ScheduleDefinition(
    name="audit_log_cleanup_schedule",
    job=audit_log_cleanup_job,
    cron_schedule="30 2 * * 0",
    run_config=dg.RunConfig(ops={"delete_old_audit_rows": CleanupConfig(dry_run=False)}),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly (Sunday 02:30 UTC): delete audit rows and events older than 90 days, in batches.",
)

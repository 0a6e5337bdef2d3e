"""Clean-up job and its weekly schedule: the runbook's > 90 days audit-log clean-up, webhook_events
(> 14 days), and Dagster's own runs that touched no asset (> 30 days), with their logs and files.

Also the location's IO manager: every op here reports through metadata and no op reads another's
output, so outputs are not written anywhere (the default would pickle each one under
DAGSTER_HOME/storage, a folder per run that nothing reads).
"""

from typing import Any

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase, run_actor
from notify_pipeline.operations import retention
from notify_pipeline.receipts.bounds import MIN_KEEP_DAYS


class DiscardOutputsIOManager(dg.ConfigurableIOManager):
    """Stores nothing. An op that needs another op's output must name a real IO manager on that
    output (`dg.Out(io_manager_key=...)`): loading one here fails and says so."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> Any:
        raise dg.DagsterInvariantViolationError(
            f"{context.upstream_output.name if context.upstream_output else 'an output'} was not stored: "
            "this code location discards op outputs (notify_pipeline/defs/operations/retention.py). "
            "Give the output an io_manager_key of a storing IO manager."
        )


class CleanupConfig(dg.Config):
    older_than_days: int = Field(
        default=retention.DEFAULT_DAYS, ge=1, description="Delete rows older than this."
    )
    batch_size: int = Field(
        default=retention.DEFAULT_BATCH, ge=1, le=50_000, description="Rows per transaction."
    )
    include_alerts: bool = Field(default=True, description="Also delete resolved alert episodes.")
    webhook_days: int = Field(
        default=retention.DEFAULT_WEBHOOK_DAYS,
        ge=MIN_KEEP_DAYS,
        description="Delete webhook_events received longer ago than this (applied, refused, or "
        f"waiting for a message id that never landed). At least {MIN_KEEP_DAYS}: Meta retries for 7 days.",
    )
    dry_run: bool = Field(default=True, description="Count only. Set false to delete.")


class RunCleanupConfig(dg.Config):
    older_than_days: int = Field(
        default=retention.DEFAULT_RUN_DAYS,
        ge=1,
        description="Delete finished Dagster runs created longer ago than this that touched no asset.",
    )
    max_runs: int = Field(
        default=retention.DEFAULT_MAX_RUNS, ge=1, description="Runs examined at most, oldest first."
    )
    dry_run: bool = Field(default=True, description="Count only. Set false to delete.")


@dg.op
def delete_old_audit_rows(
    context: dg.OpExecutionContext, config: CleanupConfig, queue_db: QueueDatabase
) -> dict:
    """Delete (or count) old audit-log rows, observability events, resolved alerts and webhook
    events, in batches."""
    actor = run_actor(context)
    with queue_db.connection(actor=actor) as conn:
        report = retention.cleanup(
            conn,
            actor,
            older_than_days=config.older_than_days,
            batch_size=config.batch_size,
            dry_run=config.dry_run,
            include_alerts=config.include_alerts,
            webhook_days=config.webhook_days,
        )
    context.add_output_metadata(
        {
            "dry_run": report.dry_run,
            "cutoff": report.cutoff.isoformat(),
            "webhook_cutoff": report.webhook_cutoff.isoformat() if report.webhook_cutoff else "",
            "rows": dg.MetadataValue.json(report.rows),
            "batches": dg.MetadataValue.json(report.batches),
        }
    )
    return report.as_dict()


@dg.op
def delete_old_dagster_runs(context: dg.OpExecutionContext, config: RunCleanupConfig) -> dict:
    """Delete (or count) old finished Dagster runs without asset events: their runs and event_logs
    rows, compute logs and storage folders. Runs that materialised, observed or checked an asset
    stay: deleting a run deletes the asset history it wrote."""
    report = retention.prune_dagster_runs(
        context.instance,
        older_than_days=config.older_than_days,
        dry_run=config.dry_run,
        max_runs=config.max_runs,
    )
    context.log.info(
        f"{'would delete' if report.dry_run else 'deleted'} {report.deleted} of {report.examined} "
        f"run(s) created before {report.cutoff:%Y-%m-%d %H:%M}Z; {report.kept_with_assets} kept (asset events)"
    )
    context.add_output_metadata(report.as_dict())
    return report.as_dict()


@dg.job(
    executor_def=dg.in_process_executor,
    description="Delete audit-log rows, observability events and resolved alerts older than N days, "
    "webhook events older than W days, and Dagster runs older than M days that touched no asset.",
)
def audit_log_cleanup_job() -> None:
    delete_old_audit_rows()
    delete_old_dagster_runs()


audit_log_cleanup_schedule = dg.ScheduleDefinition(
    name="audit_log_cleanup_schedule",
    job=audit_log_cleanup_job,
    cron_schedule="30 2 * * 0",
    run_config=dg.RunConfig(
        ops={
            "delete_old_audit_rows": CleanupConfig(dry_run=False),
            "delete_old_dagster_runs": RunCleanupConfig(dry_run=False),
        }
    ),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly (Sunday 02:30 UTC): delete audit rows and events older than 90 days and webhook "
    "events older than 14 days, in batches, and Dagster runs older than 30 days that touched no asset, "
    "with their logs and files.",
)

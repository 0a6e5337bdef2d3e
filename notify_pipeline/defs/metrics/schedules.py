"""export_metrics_schedule: publish the metrics every minute."""

import dagster as dg

from notify_pipeline.defs.metrics.jobs import export_metrics_job

export_metrics_schedule = dg.ScheduleDefinition(
    name="export_metrics_schedule",
    job=export_metrics_job,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Publish the queue's Prometheus metrics every minute: the deferral gauges count the "
    "last minute, so each export covers the time since the one before.",
)

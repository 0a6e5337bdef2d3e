"""The metrics domain's definitions."""

import dagster as dg

from notify_pipeline.defs.metrics import jobs, schedules

defs = dg.Definitions(
    jobs=[jobs.export_metrics_job],
    schedules=[schedules.export_metrics_schedule],
)

"""sweep_locks_schedule: release stale claims every five minutes."""

import dagster as dg

from notify_pipeline.defs.queue.jobs import sweep_locks_job

sweep_locks_schedule = dg.ScheduleDefinition(
    name="sweep_locks_schedule",
    job=sweep_locks_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Release claims older than the lease (15 minutes) left by workers that died.",
)

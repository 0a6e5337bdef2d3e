"""The queue domain's definitions."""

import dagster as dg

from notify_pipeline.defs.queue import jobs, probe_message, schedules, sensors

defs = dg.Definitions(
    jobs=[
        jobs.send_notifications_job,
        jobs.sweep_locks_job,
        jobs.retry_failed_job,
        jobs.emergency_stop_job,
        jobs.resume_job,
        probe_message.send_test_notification_job,
    ],
    schedules=[schedules.sweep_locks_schedule],
    sensors=[sensors.due_notifications_sensor],
)

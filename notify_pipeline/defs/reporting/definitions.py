"""The reporting domain's definitions."""

import dagster as dg

from notify_pipeline.defs.reporting import assets, jobs

defs = dg.Definitions(
    assets=[
        assets.notifications_table,
        assets.daily_domain_summary,
        assets.daily_error_code_breakdown,
        assets.hourly_send_profile,
    ],
    jobs=[jobs.daily_report_job, jobs.export_summary_job],
    schedules=[jobs.daily_report_schedule],
)

"""The reporting domain's definitions."""

import dagster as dg

from notify_pipeline.defs.reporting import assets, jobs, today

defs = dg.Definitions(
    assets=[
        assets.notifications_table,
        assets.daily_domain_summary,
        assets.daily_error_code_breakdown,
        assets.hourly_send_profile,
        today.today_domain_summary,
    ],
    jobs=[jobs.daily_report_job, jobs.export_summary_job, today.today_report_job],
    schedules=[jobs.daily_report_schedule, today.today_report_schedule],
)

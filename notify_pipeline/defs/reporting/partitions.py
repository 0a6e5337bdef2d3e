"""Report days: a daily partition per calendar day in the report time zone."""

import dagster as dg

from notify_pipeline import settings

daily_report_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.report_start_date(),
    timezone=settings.report_timezone(),
)

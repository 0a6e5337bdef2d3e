"""today_domain_summary: the current local day so far, refreshed every hour while anything happens.

The daily assets are built once a day has ended (and rebuilt while it settles); this asset shows
the day in progress in the UI: figures per domain, sends per hour, failure rate per domain. It
writes no table: its materialisation's metadata is the report.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from notify_pipeline import settings
from notify_pipeline.defs.reporting import charts, metadata
from notify_pipeline.defs.reporting.assets import notifications_table
from notify_pipeline.defs.reporting.jobs import report_schedule
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting import summary
from notify_pipeline.thresholds import DEFAULTS

REFRESH_CRON = "10 * * * *"  # ten past every hour, local time


@dg.asset(
    deps=[notifications_table],
    group_name="reporting",
    kinds={"pandas", "postgres"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30),
)
def today_domain_summary(context: dg.AssetExecutionContext, queue_db: QueueDatabase) -> dg.MaterializeResult:
    """Today so far, in the report time zone: per domain total, sent, failed, queued, failure rate
    and late failures; sends per hour and failure rate per domain as charts. Nothing is written:
    the day's rows land in daily_domain_summary after midnight."""
    tz = settings.report_timezone()
    now = datetime.now(ZoneInfo(tz))
    day = now.date()
    start, end = summary.day_window(day, tz)
    with queue_db.connection(actor="today_domain_summary") as conn:
        notifications = summary.load_notifications(conn, start, end)
        frame = summary.domain_summary(day, notifications, summary.load_deferrals(conn, start, end))
    (totals,) = metadata.day_totals(frame, [day])
    profile = summary.hourly_profile(day, notifications, tz) if not notifications.empty else notifications
    return dg.MaterializeResult(
        metadata={
            **metadata.summary_day_metadata(frame, totals, DEFAULTS.summary_failure_rate_warn),
            "as_of": dg.MetadataValue.timestamp(now),
            "sends_per_hour": dg.MetadataValue.md(charts.sends_per_hour(metadata.sends_by_hour(profile))),
        }
    )


today_report_job = dg.define_asset_job(
    "today_report_job",
    selection=[today_domain_summary],
    description="Refresh today_domain_summary (the current local day so far).",
)


def activity_since(conn, since: datetime, day_start: datetime) -> bool:
    """Whether a notification of today was created or changed (sent, failed, a receipt) since."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE created_at >= %s AND updated_at >= %s)",
        (day_start, since),
    ).fetchone()
    return bool(row[0])


@report_schedule(
    "today_report_schedule",
    today_report_job,
    REFRESH_CRON,
    "Every hour (ten past, local time): refresh today_domain_summary when a notification "
    "of today was created or changed since the previous tick; skips otherwise, so an idle "
    "deployment starts no run.",
)
def today_report_schedule(context: dg.ScheduleEvaluationContext, queue_db: QueueDatabase):
    tz = settings.report_timezone()
    now = context.scheduled_execution_time.astimezone(ZoneInfo(tz))
    day_start = summary.day_window(now.date(), tz)[0]
    since = now - timedelta(hours=1)
    with queue_db.connection(actor="today_report_schedule") as conn:
        busy = activity_since(conn, since, day_start)
    if not busy:
        return dg.SkipReason(f"no notification of today created or changed since {since:%H:%M}")
    return dg.RunRequest()

"""The daily report schedule and the summary export job."""

from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.reporting.assets import (
    daily_domain_summary,
    daily_error_code_breakdown,
    hourly_send_profile,
)
from notify_pipeline.defs.reporting.partitions import SETTLE_CRON, SETTLE_DAYS, daily_report_partitions
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.export import export_summary

daily_report_job = dg.define_asset_job(
    "daily_report_job",
    selection=[daily_domain_summary, daily_error_code_breakdown, hourly_send_profile],
    description="Materialise the daily report assets for one local day (or a range, as a backfill).",
)


def report_schedule(name: str, job: Any, cron: str, description: str) -> Any:
    """A schedule on the report time zone's clock (NOTIFY_REPORT_TIMEZONE), on from the first deploy."""
    return dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=settings.report_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


# The run tags of a single-run range (what a backfill of a range sets): not exported by dagster.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def settle_range(scheduled: datetime) -> tuple[str, str] | None:
    """The partition keys the nightly run rebuilds: the last SETTLE_DAYS complete days (fewer
    right after the partitions' start date, none before it)."""
    recent = daily_report_partitions.get_partition_keys(current_time=scheduled)[-SETTLE_DAYS:]
    return (recent[0], recent[-1]) if recent else None


@report_schedule(
    "daily_report_job_schedule",
    daily_report_job,
    SETTLE_CRON,
    f"00:30 local time: rebuild the last {SETTLE_DAYS} days in one run, so rows deferred "
    "past midnight (quiet hours) and late failures land in their day.",
)
def daily_report_schedule(context: dg.ScheduleEvaluationContext):
    days = settle_range(context.scheduled_execution_time)
    if days is None:
        return dg.SkipReason("no report day has ended yet (NOTIFY_REPORT_START_DATE)")
    first, last = days
    return dg.RunRequest(
        run_key=f"settle:{first}:{last}",
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
    )


class ExportConfig(dg.Config):
    start_date: str = Field(description="First day, YYYY-MM-DD.")
    end_date: str = Field(description="Last day (included), YYYY-MM-DD.")
    formats: list[str] = Field(default_factory=lambda: ["csv", "parquet"], description="csv and/or parquet.")
    output_dir: str | None = Field(default=None, description="Default: <data dir>/exports.")


@dg.op
def export_daily_summary(
    context: dg.OpExecutionContext, config: ExportConfig, queue_db: QueueDatabase
) -> list[str]:
    """Write the daily summary of a date range to CSV and/or Parquet files."""
    try:
        start, end = date.fromisoformat(config.start_date), date.fromisoformat(config.end_date)
    except ValueError as exc:
        raise dg.Failure(f"dates must be YYYY-MM-DD: {exc}") from exc
    out_dir = Path(config.output_dir) if config.output_dir else settings.data_dir() / "exports"
    with queue_db.connection(actor="export_summary_job") as conn:
        paths = export_summary(conn, start, end, out_dir, config.formats)
    context.add_output_metadata({"files": dg.MetadataValue.json([str(p) for p in paths])})
    return [str(p) for p in paths]


@dg.job(description="Export the daily per-domain summary of a date range as CSV and Parquet.")
def export_summary_job() -> None:
    export_daily_summary()

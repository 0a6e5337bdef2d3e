"""The daily report schedule and the summary export job."""

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.reporting.assets import (
    daily_domain_summary,
    daily_error_code_breakdown,
    hourly_send_profile,
)
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.export import export_summary

daily_report_job = dg.define_asset_job(
    "daily_report_job",
    selection=[daily_domain_summary, daily_error_code_breakdown, hourly_send_profile],
    description="Materialise the daily report assets for one local day (or a range, as a backfill).",
)

# Cron and time zone come from the partitions: each tick, shortly after local midnight, builds the
# day that just ended.
daily_report_schedule = dg.build_schedule_from_partitioned_job(
    daily_report_job, hour_of_day=0, minute_of_hour=30, default_status=dg.DefaultScheduleStatus.RUNNING
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

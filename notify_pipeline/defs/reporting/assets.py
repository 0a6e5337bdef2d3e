"""Daily report assets, partitioned by local day and backfillable from the UI.

Each run handles one day or a range (single-run backfills): it computes with pandas from the
notifications table and replaces the days' rows, so re-materialising a day is always safe.
"""

from datetime import date, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.reporting import charts, metadata
from notify_pipeline.defs.reporting.partitions import (
    REPORT_FRESHNESS,
    REPORT_RETRY_POLICY,
    daily_report_partitions,
)
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting import summary
from notify_pipeline.thresholds import DEFAULTS

FAILURE_RATE_CHECK = "failure_rate_within_limits"

notifications_table = dg.AssetSpec(
    "notifications",
    group_name="queue",
    description="The notification queue table, written by applications (queueNotification) and the engine.",
    kinds={"postgres"},
)


# What every report asset shares: local-day partitions, range backfills in one run, lineage,
# retries of a failed build and a freshness deadline (partitions.py says why).
REPORT_ASSET = {
    "partitions_def": daily_report_partitions,
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "retry_policy": REPORT_RETRY_POLICY,
    "freshness_policy": REPORT_FRESHNESS,
    "deps": [notifications_table],
    "group_name": "reporting",
    "kinds": {"pandas", "postgres"},
}


def report_days(context: dg.AssetExecutionContext) -> list[date]:
    """The local days of this run: one partition, or a backfill's whole range."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=n) for n in range((last - first).days)]


def _notifications(conn, day: date):
    start, end = summary.day_window(day, settings.report_timezone())
    return summary.load_notifications(conn, start, end)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


class SummaryConfig(dg.Config):
    warn_failure_rate: float = Field(
        default=DEFAULTS.summary_failure_rate_warn,
        ge=0,
        le=1,
        description="Check warns when a domain's failure rate is above this.",
    )
    error_failure_rate: float = Field(
        default=DEFAULTS.summary_failure_rate_error,
        ge=0,
        le=1,
        description="Check errors when a domain's failure rate is above this.",
    )


def failure_rate_check(frame: pd.DataFrame, config: SummaryConfig) -> dg.AssetCheckResult:
    rates = frame.dropna(subset=["failure_rate"]) if not frame.empty else frame
    if rates.empty:
        return dg.AssetCheckResult(
            check_name=FAILURE_RATE_CHECK, passed=True, metadata={"note": "nothing finished"}
        )
    worst = rates.loc[rates["failure_rate"].astype(float).idxmax()]
    rate = float(worst["failure_rate"])
    severity = dg.AssetCheckSeverity.ERROR if rate > config.error_failure_rate else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=FAILURE_RATE_CHECK,
        passed=rate <= config.warn_failure_rate,
        severity=severity,
        metadata={
            "worst_failure_rate": round(rate, 4),
            "worst_domain": str(worst["domain"]),
            "worst_day": str(worst["day"]),
            "warn_above": config.warn_failure_rate,
            "error_above": config.error_failure_rate,
        },
    )


@dg.asset(
    **REPORT_ASSET,
    check_specs=[
        dg.AssetCheckSpec(
            FAILURE_RATE_CHECK,
            asset="daily_domain_summary",
            description="Failure rate per domain: warn above 5 %, error above 20 %.",
        )
    ],
)
def daily_domain_summary(
    context: dg.AssetExecutionContext, config: SummaryConfig, queue_db: QueueDatabase
) -> dg.MaterializeResult:
    """Per domain and local day: total, sent, failed, queued, failure rate, average retries, send
    latency p50/p95/p99 (created to accepted), deferrals by reason, and receipts: delivered, read and
    late-failed counts and rates over the messages Meta accepted, and delivery latency p50/p95/p99
    (accepted to delivered)."""
    days = report_days(context)
    tz = settings.report_timezone()
    with queue_db.connection(actor="daily_domain_summary") as conn:
        frames = [
            summary.domain_summary(
                day, _notifications(conn, day), summary.load_deferrals(conn, *summary.day_window(day, tz))
            )
            for day in days
        ]
        frame = _concat(frames, summary.SUMMARY_COLUMNS)
        written = summary.replace_days(conn, "daily_domain_summary", days, frame)
    preview = frame.drop(columns=["deferrals"]).head(20)
    totals = metadata.day_totals(frame, days)
    for day_totals in totals:
        context.add_asset_metadata(
            metadata.summary_day_metadata(frame, day_totals, config.warn_failure_rate),
            partition_key=day_totals["day"],
        )
    check = failure_rate_check(frame, config)
    return dg.MaterializeResult(
        metadata={
            "days": len(days),
            "days_in_run": metadata.days_table(totals),
            "rows": written,
            "notifications": int(frame["total"].sum()) if written else 0,
            "preview": dg.MetadataValue.md(
                preview.to_markdown(index=False) if written else "no notifications"
            ),
        },
        check_results=[
            metadata.name_failures(check, frame, config.warn_failure_rate, config.error_failure_rate)
        ],
    )


@dg.asset(**REPORT_ASSET)
def daily_error_code_breakdown(
    context: dg.AssetExecutionContext, queue_db: QueueDatabase
) -> dg.MaterializeResult:
    """Failed notifications per domain, local day and error code, with the code's real meaning."""
    days = report_days(context)
    with queue_db.connection(actor="daily_error_code_breakdown") as conn:
        frame = _concat(
            [summary.error_code_breakdown(day, _notifications(conn, day)) for day in days],
            ["day", "domain", "error_code", "meaning", "failed"],
        )
        written = summary.replace_days(conn, "daily_error_code_breakdown", days, frame)
    for day in days:
        of_day = metadata.rows_of_day(frame, day)
        context.add_asset_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(of_day)),
                "failed": int(of_day["failed"].sum()) if len(of_day) else 0,
            },
            partition_key=day.isoformat(),
        )
    top = frame.sort_values("failed", ascending=False).head(10)
    return dg.MaterializeResult(
        metadata={
            "rows": written,
            "top_codes": dg.MetadataValue.md(top.to_markdown(index=False) if written else "no failures"),
        }
    )


@dg.asset(**REPORT_ASSET)
def hourly_send_profile(context: dg.AssetExecutionContext, queue_db: QueueDatabase) -> dg.MaterializeResult:
    """Messages sent per local hour and domain: when the queue actually delivers."""
    days = report_days(context)
    tz = settings.report_timezone()
    with queue_db.connection(actor="hourly_send_profile") as conn:
        frame = _concat(
            [summary.hourly_profile(day, _notifications(conn, day), tz) for day in days],
            ["day", "hour", "domain", "sent"],
        )
        written = summary.replace_days(conn, "hourly_send_profile", days, frame)
    for day in days:
        of_day = metadata.rows_of_day(frame, day)
        by_hour = metadata.sends_by_hour(of_day)
        context.add_asset_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(of_day)),
                "sent": sum(by_hour.values()),
                "sends_per_hour": dg.MetadataValue.md(charts.sends_per_hour(by_hour)),
            },
            partition_key=day.isoformat(),
        )
    return dg.MaterializeResult(metadata={"rows": written})

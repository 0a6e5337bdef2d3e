"""Daily report assets, partitioned by local day and backfillable from the UI.

Each run handles one day or a range (single-run backfills): it computes with pandas from the
notifications table and replaces the days' rows, so re-materialising a day is always safe.
"""

from datetime import date, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.defs.reporting.partitions import daily_report_partitions
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


# What every report asset shares: local-day partitions, range backfills in one run, lineage.
REPORT_ASSET = {
    "partitions_def": daily_report_partitions,
    "backfill_policy": dg.BackfillPolicy.single_run(),
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
    return dg.MaterializeResult(
        metadata={
            "days": len(days),
            "rows": written,
            "notifications": int(frame["total"].sum()) if written else 0,
            "preview": dg.MetadataValue.md(
                preview.to_markdown(index=False) if written else "no notifications"
            ),
        },
        check_results=[failure_rate_check(frame, config)],
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
    return dg.MaterializeResult(metadata={"rows": written})

"""Metadata of the report assets, per day.

A range run (a backfill, or the nightly rebuild of the last days) materialises every day of its
range: each day's materialisation gets its own figures (context.add_asset_metadata with the
partition key), and the run's table of days goes on all of them. The failure-rate check runs once
per run, so its result names the days and domains above the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import dagster as dg
import pandas as pd

from notify_pipeline.defs.reporting import charts
from notify_pipeline.reporting import figures

DAY_COLUMNS = [
    dg.TableColumn("day", "string"),
    dg.TableColumn("domains", "int", description="Rows in the table for the day: one per domain."),
    dg.TableColumn("sent", "int"),
    dg.TableColumn("failed", "int", description="Late failures included."),
    dg.TableColumn("failure_rate", "float", description="failed / (sent + failed); empty: nothing finished."),
    dg.TableColumn("late_failed", "int", description="Accepted by Meta, then failed (a status webhook)."),
]


def _rate(failed: int, sent: int) -> float | None:
    rate = figures.failure_rate(sent, failed)  # the one definition (reporting/figures.py)
    return round(rate, 4) if rate is not None else None


def _int(frame: pd.DataFrame, column: str) -> int:
    return int(frame[column].sum()) if column in frame and not frame.empty else 0


def day_totals(frame: pd.DataFrame, days: Iterable[date]) -> list[dict]:
    """One row per day of the run, days without notifications included (as zeros)."""
    rows = []
    for day in days:
        of_day = frame[frame["day"] == day] if not frame.empty else frame
        sent, failed = _int(of_day, "sent"), _int(of_day, "failed")
        rows.append(
            {
                "day": day.isoformat(),
                "domains": len(of_day),
                "sent": sent,
                "failed": failed,
                "failure_rate": _rate(failed, sent),
                "late_failed": _int(of_day, "late_failed"),
            }
        )
    return rows


def days_table(totals: list[dict]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in totals], schema=dg.TableSchema(columns=DAY_COLUMNS)
    )


def _domains_markdown(of_day: pd.DataFrame) -> str:
    if of_day.empty:
        return "no notifications"
    table = of_day[["domain", "total", "sent", "failed", "queued", "failure_rate", "late_failed"]]
    return table.sort_values("domain").to_markdown(index=False)


def summary_day_metadata(frame: pd.DataFrame, totals: dict, warn_above: float) -> dict:
    """A day's own materialisation metadata of daily_domain_summary."""
    of_day = frame[frame["day"] == date.fromisoformat(totals["day"])] if not frame.empty else frame
    rates = {}
    if not of_day.empty:
        rates = {
            str(row.domain): (None if pd.isna(row.failure_rate) else float(row.failure_rate))
            for row in of_day.itertuples()
        }
    return {
        "dagster/row_count": dg.MetadataValue.int(totals["domains"]),
        "day": totals["day"],
        "sent": totals["sent"],
        "failed": totals["failed"],
        "failure_rate": dg.MetadataValue.float(totals["failure_rate"])
        if totals["failure_rate"] is not None
        else dg.MetadataValue.text("nothing finished"),
        "late_failed": totals["late_failed"],
        "domains": dg.MetadataValue.md(_domains_markdown(of_day)),
        "failure_rate_by_domain": dg.MetadataValue.md(charts.failure_rate_by_domain(rates, warn_above)),
    }


def rows_of_day(frame: pd.DataFrame, day: date) -> pd.DataFrame:
    return frame[frame["day"] == day] if not frame.empty else frame


def sends_by_hour(profile: pd.DataFrame) -> dict[int, int]:
    """hourly_send_profile rows (any domains) as sent per hour."""
    if profile.empty:
        return {}
    return {int(hour): int(sent) for hour, sent in profile.groupby("hour")["sent"].sum().items()}


def failing(frame: pd.DataFrame, warn_above: float) -> pd.DataFrame:
    """Day and domain rows whose failure rate is above the warning threshold, worst first."""
    if frame.empty:
        return pd.DataFrame(columns=["day", "domain", "sent", "failed", "failure_rate"])
    rates = pd.to_numeric(frame["failure_rate"], errors="coerce")
    above = frame[rates > warn_above].assign(failure_rate=rates[rates > warn_above].round(4))
    above = above.assign(day=above["day"].astype(str))
    return above.sort_values(["failure_rate", "day", "domain"], ascending=[False, True, True])[
        ["day", "domain", "sent", "failed", "failure_rate"]
    ]


def name_failures(
    result: dg.AssetCheckResult, frame: pd.DataFrame, warn_above: float, error_above: float
) -> dg.AssetCheckResult:
    """The check's result with the failing days and domains added (its verdict is left alone)."""
    bad = failing(frame, warn_above)
    days = sorted(set(bad["day"]))
    domains = sorted(set(bad["domain"]))
    if bad.empty:
        description = f"no domain above {warn_above:.0%} on any day of the run"
    else:
        errors = bad[bad["failure_rate"] > error_above]
        description = (
            f"{len(bad)} day/domain pair(s) above {warn_above:.0%}"
            + (f", {len(errors)} above {error_above:.0%}" if len(errors) else "")
            + f": days {', '.join(days)}; domains {', '.join(domains)}"
        )
    return dg.AssetCheckResult(
        check_name=result.check_name,
        asset_key=result.asset_key,
        passed=result.passed,
        severity=result.severity,
        description=description,
        metadata={
            **result.metadata,
            "failing_days": dg.MetadataValue.json(days),
            "failing_domains": dg.MetadataValue.json(domains),
            "failing": dg.MetadataValue.md(bad.to_markdown(index=False) if not bad.empty else "none"),
        },
    )

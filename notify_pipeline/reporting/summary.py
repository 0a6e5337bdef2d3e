"""Daily per-domain summaries with pandas, written idempotently per local day.

A day is a calendar day in the report time zone (Africa/Kigali by default): a notification belongs
to the day its created_at falls on there. Each write deletes the day's rows and inserts the new
ones in one transaction, so re-running a day (or a backfill) never duplicates anything.

Sent, failed and the failure rate are the figures of reporting/figures.py (the same definitions
as `status`, `diagnose` and the alerts): `failed` leaves out opt-outs, emergency-stop holds and
expired rows, which `total` still counts and daily_error_code_breakdown lists by code, and
failure_rate = failed / (sent + failed).

Receipts (Meta's status webhooks) are reported over the messages Meta accepted: sent plus late
failed (a late failure turned its row 'failed' with Meta's code, so `failed` counts it too).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from notify_pipeline.engine.reasons import meaning
from notify_pipeline.reporting import figures

PERCENTILES = {"latency_p50_ms": 0.50, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
DELIVERY_PERCENTILES = {
    "delivery_latency_p50_ms": 0.50,
    "delivery_latency_p95_ms": 0.95,
    "delivery_latency_p99_ms": 0.99,
}
RECEIPT_COLUMNS = [
    "delivered",
    "read",
    "late_failed",
    "delivery_rate",
    "read_rate",
    "late_failure_rate",
    *DELIVERY_PERCENTILES,
]
SUMMARY_COLUMNS = [
    "day",
    "domain",
    "total",
    "sent",
    "failed",
    "queued",
    "failure_rate",
    "avg_retries",
    *PERCENTILES,
    "deferrals",
    *RECEIPT_COLUMNS,
]


def day_window(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, as aware datetimes (23 or 25 hours on DST days)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def load_notifications(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    cur = conn.execute(
        "SELECT id, domain, status, retry_count, last_error_code, created_at, sent_at, delivered_at, "
        "read_at, failed_late_at FROM notifications WHERE created_at >= %s AND created_at < %s",
        (start, end),
    )
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def load_deferrals(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Deferrals (audit 'deferred' events) of the window's notifications, by domain and reason."""
    cur = conn.execute(
        "SELECT n.domain, coalesce(a.details->>'error_code', 'unknown') AS reason, count(*) AS deferrals "
        "FROM notifications n JOIN notification_audit_log a ON a.notification_id = n.id "
        "WHERE n.created_at >= %s AND n.created_at < %s AND a.event_type = 'deferred' GROUP BY 1, 2",
        (start, end),
    )
    return pd.DataFrame(cur.fetchall(), columns=["domain", "reason", "deferrals"])


def domain_summary(day: date, notifications: pd.DataFrame, deferrals: pd.DataFrame) -> pd.DataFrame:
    """One row per domain: counts, failure rate, average retries, send latency percentiles."""
    if notifications.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    send_latency = _times(notifications, "sent_at") - _times(notifications, "created_at")
    outcome = outcomes(notifications)
    frame = notifications.assign(
        is_sent=outcome.eq(figures.SENT),
        is_failed=outcome.eq(figures.FAILED),
        is_queued=outcome.eq(figures.QUEUED),
        latency_ms=send_latency.dt.total_seconds() * 1000,
    )
    grouped = frame.groupby("domain")
    summary = pd.DataFrame(
        {
            "total": grouped.size(),
            "sent": grouped["is_sent"].sum(),
            "failed": grouped["is_failed"].sum(),
            "queued": grouped["is_queued"].sum(),
            "avg_retries": grouped["retry_count"].mean().round(2),
        }
    )
    summary["failure_rate"] = [
        figures.failure_rate(int(sent), int(failed))
        for sent, failed in zip(summary["sent"], summary["failed"], strict=True)
    ]
    summary["failure_rate"] = summary["failure_rate"].astype(float)
    latencies = frame[frame["is_sent"]].groupby("domain")["latency_ms"]
    for column, quantile in PERCENTILES.items():
        summary[column] = latencies.quantile(quantile)
    by_domain = {
        domain: dict(zip(group["reason"], group["deferrals"].astype(int), strict=True))
        for domain, group in deferrals.groupby("domain")
    }
    summary["deferrals"] = [by_domain.get(domain, {}) for domain in summary.index]
    summary = summary.join(receipt_summary(notifications))
    summary = summary.reset_index().assign(day=day)
    return summary[SUMMARY_COLUMNS]


def outcomes(notifications: pd.DataFrame) -> pd.Series:
    """Each row's outcome class (figures.outcome: sent, failed, filtered, held, expired, queued)."""
    codes = (
        notifications["last_error_code"].astype(object).where(notifications["last_error_code"].notna(), None)
    )
    return pd.Series(
        [figures.outcome(status, code) for status, code in zip(notifications["status"], codes, strict=True)],
        index=notifications.index,
        dtype=object,
    )


def _times(frame: pd.DataFrame, column: str) -> pd.Series:
    # A column NULL on every row (a day with nothing sent, or before receipts) arrives as objects,
    # which date arithmetic refuses: read it as timestamps (NaT).
    return pd.to_datetime(frame[column], utc=True)


def receipt_summary(notifications: pd.DataFrame) -> pd.DataFrame:
    """Per domain: delivered, read and late-failed counts, their rates over the messages Meta
    accepted (sent + late failed), and sent-to-delivered latency percentiles in ms."""
    sent_at, delivered_at, read_at, failed_late_at = (
        _times(notifications, column) for column in ("sent_at", "delivered_at", "read_at", "failed_late_at")
    )
    late = notifications["status"].eq("failed") & failed_late_at.notna()
    # Meta's timestamps are whole seconds, ours are not: a fast delivery can read a hair below 0.
    delivery_ms = ((delivered_at - sent_at).dt.total_seconds() * 1000).clip(lower=0)
    frame = pd.DataFrame(
        {
            "domain": notifications["domain"],
            "accepted": notifications["status"].eq("sent") | late,
            "delivered": delivered_at.notna(),
            "read": read_at.notna(),
            "late_failed": late,
            "delivery_ms": delivery_ms,
        }
    )
    grouped = frame.groupby("domain")
    receipts = grouped[["accepted", "delivered", "read", "late_failed"]].sum().astype(int)
    accepted = receipts["accepted"].where(receipts["accepted"] > 0)
    for count, rate in (
        ("delivered", "delivery_rate"),
        ("read", "read_rate"),
        ("late_failed", "late_failure_rate"),
    ):
        receipts[rate] = receipts[count] / accepted
    for column, quantile in DELIVERY_PERCENTILES.items():
        receipts[column] = grouped["delivery_ms"].quantile(quantile)
    return receipts[RECEIPT_COLUMNS]


def error_code_breakdown(day: date, notifications: pd.DataFrame) -> pd.DataFrame:
    """Failed notifications per domain and error code, with what the code means."""
    failed = notifications[notifications["status"].eq("failed")] if not notifications.empty else notifications
    if failed.empty:
        return pd.DataFrame(columns=["day", "domain", "error_code", "meaning", "failed"])
    codes = failed.assign(error_code=failed["last_error_code"].fillna("none"))
    counts = codes.groupby(["domain", "error_code"]).size().rename("failed").reset_index()
    counts["meaning"] = counts["error_code"].map(meaning)
    return counts.assign(day=day)[["day", "domain", "error_code", "meaning", "failed"]]


def hourly_profile(day: date, notifications: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Messages sent per local hour of sending (for the day's notifications) and domain."""
    sent = notifications[notifications["status"].eq("sent")] if not notifications.empty else notifications
    if sent.empty:
        return pd.DataFrame(columns=["day", "hour", "domain", "sent"])
    hours = sent["sent_at"].dt.tz_convert(tz).dt.hour
    counts = sent.assign(hour=hours).groupby(["hour", "domain"]).size().rename("sent").reset_index()
    return counts.assign(day=day)[["day", "hour", "domain", "sent"]]


def _cell(value: object) -> object:
    if isinstance(value, dict):
        return Jsonb({k: int(v) for k, v in value.items()})
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def replace_days(conn: psycopg.Connection, table: str, days: Sequence[date], frame: pd.DataFrame) -> int:
    """Delete the days' rows from `table` and insert `frame` instead, in one transaction."""
    columns = list(frame.columns)
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    rows = [[_cell(value) for value in record] for record in frame.itertuples(index=False, name=None)]
    with conn.transaction():
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE day = ANY(%s)").format(sql.Identifier(table)), (list(days),)
        )
        if rows:
            with conn.cursor() as cur:
                cur.executemany(insert, rows)
    return len(rows)

"""Helpers for the report tests: notifications created at a chosen local time and status, the
report assets materialized for one day, and a report table read back as a DataFrame."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from notify_pipeline.defs.reporting import assets
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline_tests.support.engine import enqueue, welcome

KIGALI = ZoneInfo("Africa/Kigali")
REPORT_ASSETS = [assets.daily_domain_summary, assets.daily_error_code_breakdown, assets.hourly_send_profile]


def add(
    db,
    created: datetime,
    status: str,
    domain: str = "core",
    *,
    code: str | None = None,
    retries: int = 0,
    latency_s: float = 2.0,
    deferrals: tuple[str, ...] = (),
) -> int:
    """A notification created at `created`, in `status`, with audit deferrals by reason."""
    notification_id = enqueue(db, welcome(), {"domain": domain})
    for reason in deferrals:
        db.execute(
            "UPDATE notifications SET locked_at = now(), locked_by = 'w' WHERE id = %s", (notification_id,)
        )
        db.execute(
            "UPDATE notifications SET locked_at = NULL, next_attempt_at = now() + interval '1 hour', "
            "last_error_code = %s, deferral_count = deferral_count + 1 WHERE id = %s",
            (reason, notification_id),
        )
    db.execute(
        "UPDATE notifications SET created_at = %s, status = %s, last_error_code = %s, retry_count = %s, "
        "sent_at = CASE WHEN %s = 'sent' THEN %s::timestamptz + make_interval(secs => %s) END WHERE id = %s",
        (created, status, code, retries, status, created, latency_s, notification_id),
    )
    return notification_id


def kigali(*args: int) -> datetime:
    return datetime(*args, tzinfo=KIGALI)


def table(db, name: str) -> pd.DataFrame:
    cur = db.execute(f"SELECT * FROM {name} ORDER BY 1, 2, 3")
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def materialize(
    db_url: str, partition_key: str, selection=REPORT_ASSETS, config=None
) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"daily_domain_summary": {"config": config}}} if config else None
    return dg.materialize(
        selection,
        partition_key=partition_key,
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=run_config,
    )

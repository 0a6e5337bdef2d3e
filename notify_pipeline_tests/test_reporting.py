"""Daily report assets on a real PostgreSQL: local-day partitions, idempotent writes, backfills,
the failure-rate check, the schedule and the export."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from notify_pipeline.defs.reporting import assets, jobs
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.export import export_summary
from notify_pipeline.reporting.summary import day_window
from notify_pipeline_tests.engine_support import enqueue, welcome

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


def test_a_day_is_a_local_day_even_on_dst_changes() -> None:
    start, end = day_window(date(2026, 3, 1), "Africa/Kigali")
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        datetime(2026, 2, 28, 22, tzinfo=UTC),
        datetime(2026, 3, 1, 22, tzinfo=UTC),
    )
    start, end = day_window(date(2026, 3, 8), "America/New_York")
    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == 23 * 3600, "spring forward: 23 h"


def test_rows_belong_to_the_local_day_they_were_created_on(db, db_url) -> None:
    add(db, kigali(2026, 3, 1, 0, 0), "sent")  # first instant of the day (22:00 UTC the day before)
    add(db, kigali(2026, 3, 1, 23, 59, 59), "sent")  # last second of the day
    add(db, kigali(2026, 3, 2, 0, 0), "sent")  # next day
    add(db, kigali(2026, 2, 28, 23, 59), "sent")  # previous day
    assert materialize(db_url, "2026-03-01").success
    summary = table(db, "daily_domain_summary")
    assert summary[["day", "domain", "total"]].values.tolist() == [[date(2026, 3, 1), "core", 2]]


def test_summary_numbers_breakdown_and_hourly_profile(db, db_url) -> None:
    day = (2026, 3, 1)
    for hour in (8, 9, 9):
        add(db, kigali(*day, hour), "sent", "orders", latency_s=hour)
    add(db, kigali(*day, 10), "failed", "orders", code="131026", retries=2)
    add(db, kigali(*day, 11), "failed", "orders", code="opted_out")
    add(db, kigali(*day, 12), "queued", "orders", deferrals=("quiet_hours", "quiet_hours"))
    add(db, kigali(*day, 13), "sent", "baskets", deferrals=("pair_limit",))
    result = materialize(db_url, "2026-03-01")
    assert result.success
    summary = table(db, "daily_domain_summary").set_index("domain")
    orders = summary.loc["orders"]
    assert (orders.total, orders.sent, orders.failed, orders.queued) == (6, 3, 2, 1)
    assert orders.failure_rate == pytest.approx(2 / 5)
    assert orders.avg_retries == pytest.approx(round(2 / 6, 2))
    assert orders.latency_p50_ms == pytest.approx(9000)
    assert orders.deferrals == {"quiet_hours": 2}
    assert summary.loc["baskets"].deferrals == {"pair_limit": 1}
    assert summary.loc["baskets"].failure_rate == 0
    breakdown = table(db, "daily_error_code_breakdown")
    meanings = dict(zip(breakdown["error_code"], breakdown["meaning"], strict=True))
    assert meanings == {"131026": "Message undeliverable", "opted_out": "Contact opted out: not sent"}
    profile = table(db, "hourly_send_profile")
    orders_profile = profile[profile["domain"] == "orders"].set_index("hour")["sent"].to_dict()
    assert orders_profile == {8: 1, 9: 2}, "hours of sending, in the report's zone"


def test_rematerialising_a_day_replaces_it(db, db_url) -> None:
    add(db, kigali(2026, 3, 1, 9), "sent")
    materialize(db_url, "2026-03-01")
    materialize(db_url, "2026-03-01")
    assert len(table(db, "daily_domain_summary")) == 1
    add(db, kigali(2026, 3, 1, 10), "failed", code="131000")
    materialize(db_url, "2026-03-01")
    summary = table(db, "daily_domain_summary")
    assert summary[["total", "sent", "failed"]].values.tolist() == [[2, 1, 1]]


def test_failure_rate_check_warns_then_errors(db, db_url) -> None:
    for i in range(9):
        add(db, kigali(2026, 3, 1, 8, i), "sent")
    add(db, kigali(2026, 3, 1, 9), "failed", code="131026")  # 10 %: above 5, below 20
    (check,) = materialize(db_url, "2026-03-01").get_asset_check_evaluations()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    for i in range(3):
        add(db, kigali(2026, 3, 2, 8, i), "failed", code="131026")
    add(db, kigali(2026, 3, 2, 9), "sent")
    (check,) = materialize(db_url, "2026-03-02").get_asset_check_evaluations()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert check.metadata["worst_failure_rate"].value == 0.75
    (check,) = materialize(
        db_url, "2026-03-01", config={"warn_failure_rate": 0.15}
    ).get_asset_check_evaluations()
    assert check.passed, "thresholds are configuration"


def test_a_month_backfill_in_one_run(db, db_url) -> None:
    for day in range(1, 31):
        add(db, kigali(2026, 4, day, 12), "sent", "wallet")
        if day % 10 == 0:
            add(db, kigali(2026, 4, day, 13), "failed", "wallet", code="131000")
    defs = dg.Definitions(
        assets=[assets.notifications_table, *REPORT_ASSETS],
        jobs=[jobs.daily_report_job],
        resources={"queue_db": QueueDatabase(url=db_url)},
    )
    result = defs.resolve_job_def("daily_report_job").execute_in_process(
        tags={
            "dagster/asset_partition_range_start": "2026-04-01",
            "dagster/asset_partition_range_end": "2026-04-30",
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    summary = table(db, "daily_domain_summary")
    assert len(summary) == 30
    assert summary["day"].min() == date(2026, 4, 1) and summary["day"].max() == date(2026, 4, 30)
    assert summary["total"].sum() == 33 and summary["failed"].sum() == 3
    assert len(table(db, "daily_error_code_breakdown")) == 3


def test_schedule_builds_the_day_that_just_ended() -> None:
    defs = dg.Definitions(
        assets=[assets.notifications_table, *REPORT_ASSETS],
        jobs=[jobs.daily_report_job],
        schedules=[jobs.daily_report_schedule],
        resources={"queue_db": QueueDatabase(url="postgresql://unused@127.0.0.1/x")},
    )
    schedule = defs.resolve_schedule_def(jobs.daily_report_schedule.name)
    assert schedule.execution_timezone == "Africa/Kigali"
    tick = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=kigali(2026, 3, 2, 0, 30))
    )
    assert [request.partition_key for request in tick.run_requests] == ["2026-03-01"]


def test_export_writes_csv_and_parquet_for_a_range(db, db_url, tmp_path) -> None:
    for day in (1, 2, 3):
        add(db, kigali(2026, 3, day, 9), "sent", "orders", deferrals=("quiet_hours",))
        materialize(db_url, f"2026-03-0{day}", selection=[assets.daily_domain_summary])
    paths = export_summary(db, date(2026, 3, 1), date(2026, 3, 2), tmp_path)
    csv, parquet = (pd.read_csv(paths[0]), pd.read_parquet(paths[1]))
    assert list(csv["day"]) == ["2026-03-01", "2026-03-02"]
    assert len(parquet) == 2 and list(parquet["sent"]) == [1, 1]
    assert parquet["deferrals"][0] == '{"quiet_hours": 1}'
    with pytest.raises(ValueError, match="before start"):
        export_summary(db, date(2026, 3, 2), date(2026, 3, 1), tmp_path)
    with pytest.raises(ValueError, match="unknown export format"):
        export_summary(db, date(2026, 3, 1), date(2026, 3, 2), tmp_path, ["xlsx"])
    result = jobs.export_summary_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config={
            "ops": {
                "export_daily_summary": {
                    "config": {
                        "start_date": "2026-03-01",
                        "end_date": "2026-03-03",
                        "formats": ["csv"],
                        "output_dir": str(tmp_path),
                    }
                }
            }
        },
    )
    (written,) = result.output_for_node("export_daily_summary")
    assert len(pd.read_csv(written)) == 3

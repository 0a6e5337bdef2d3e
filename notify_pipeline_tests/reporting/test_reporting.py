"""Daily report assets on a real PostgreSQL: local-day partitions, idempotent writes, backfills
with metadata per day, the failure-rate check naming its days, the nightly rebuild of the last
days, retries and freshness, today so far, the charts and the export."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from notify_pipeline.defs.reporting import assets, charts, jobs, today
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.export import export_summary
from notify_pipeline.reporting.summary import day_window
from notify_pipeline_tests.support.reporting import KIGALI, REPORT_ASSETS, add, kigali, materialize, table


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
    # The opt-out is in total but not a failure (README "Figures"): it used to count as failed, so
    # the summary said 2 / 5 while the alert and `status` said 1 / 4 for the same rows.
    assert (orders.total, orders.sent, orders.failed, orders.queued) == (6, 3, 1, 1)
    assert orders.failure_rate == pytest.approx(1 / 4)
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
    result = run_range(db_url, "2026-04-01", "2026-04-30")
    assert result.success
    summary = table(db, "daily_domain_summary")
    assert len(summary) == 30
    assert summary["day"].min() == date(2026, 4, 1) and summary["day"].max() == date(2026, 4, 30)
    assert summary["total"].sum() == 33 and summary["failed"].sum() == 3
    assert len(table(db, "daily_error_code_breakdown")) == 3


def report_defs(db_url: str, schedules=()) -> dg.Definitions:
    return dg.Definitions(
        assets=[assets.notifications_table, *REPORT_ASSETS],
        jobs=[jobs.daily_report_job],
        schedules=list(schedules),
        resources={"queue_db": QueueDatabase(url=db_url)},
    )


def run_range(db_url: str, first: str, last: str, instance: dg.DagsterInstance | None = None):
    """daily_report_job over [first, last] in one run, as a single-run backfill launches it."""
    return (
        report_defs(db_url)
        .resolve_job_def("daily_report_job")
        .execute_in_process(
            tags={jobs.RANGE_START_TAG: first, jobs.RANGE_END_TAG: last},
            instance=instance or dg.DagsterInstance.ephemeral(),
        )
    )


def test_schedule_rebuilds_the_last_three_days_so_deferred_rows_land(db, db_url) -> None:
    schedule = report_defs(db_url, [jobs.daily_report_schedule]).resolve_schedule_def(
        jobs.daily_report_schedule.name
    )
    assert schedule.execution_timezone == "Africa/Kigali" and schedule.cron_schedule == "30 0 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    def tick_tags(*when: int) -> dict[str, str] | None:
        tick = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=kigali(*when)))
        if not tick.run_requests:
            return None
        (request,) = tick.run_requests
        return {k: v for k, v in request.tags.items() if k in (jobs.RANGE_START_TAG, jobs.RANGE_END_TAG)}

    assert tick_tags(2026, 3, 4, 0, 30) == {
        jobs.RANGE_START_TAG: "2026-03-01",
        jobs.RANGE_END_TAG: "2026-03-03",
    }
    assert tick_tags(2026, 1, 2, 0, 30) == {
        jobs.RANGE_START_TAG: "2026-01-01",
        jobs.RANGE_END_TAG: "2026-01-01",
    }
    assert tick_tags(2026, 1, 1, 0, 30) is None, "before the first day has ended: nothing to build"

    # 2 March, 22:30: held by quiet hours, still queued when the night of the 3rd builds the 2nd.
    deferred = add(db, kigali(2026, 3, 2, 22, 30), "queued", "orders")
    add(db, kigali(2026, 3, 2, 9), "sent", "orders")
    assert run_range(db_url, "2026-02-28", "2026-03-02").success
    orders = table(db, "daily_domain_summary").set_index("day").loc[date(2026, 3, 2)]
    assert (orders.sent, orders.queued) == (1, 1)
    # Sent on the 3rd at 07:00: the next nights rebuild the 2nd again, and it settles.
    db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = %s WHERE id = %s",
        (kigali(2026, 3, 3, 7), deferred),
    )
    assert run_range(db_url, *tick_tags(2026, 3, 4, 0, 30).values()).success
    summary = table(db, "daily_domain_summary")
    settled = summary.set_index("day").loc[date(2026, 3, 2)]
    assert (settled.sent, settled.queued) == (2, 0)
    assert sorted(set(summary["day"])) == [date(2026, 3, 2)], "days without notifications have no rows"


def test_a_14_day_backfill_has_metadata_per_day_and_names_the_failing_days(db, db_url) -> None:
    for day in range(1, 15):
        for hour in (9, 10, 11):
            add(db, kigali(2026, 5, day, hour), "sent", "orders")
        add(db, kigali(2026, 5, day, 12), "sent", "wallet")
    for day in (4, 11):  # wallet fails 3 of 4 on the 4th and the 11th: above 20 %
        for minute in range(3):
            add(db, kigali(2026, 5, day, 13, minute), "failed", "wallet", code="131026")
    with dg.instance_for_test() as instance:
        result = run_range(db_url, "2026-05-01", "2026-05-14", instance)
        assert result.success
        events = [
            event.event_specific_data.materialization
            for event in result.get_asset_materialization_events()
            if event.asset_key == dg.AssetKey("daily_domain_summary")
        ]
        by_day = {event.partition: event.metadata for event in events}
        assert sorted(by_day) == [f"2026-05-{day:02d}" for day in range(1, 15)]
        for key, meta in by_day.items():
            assert meta["day"].value == key, "each partition carries its own day's figures"
            assert meta["dagster/row_count"].value == 2
        assert by_day["2026-05-04"]["failed"].value == 3 and by_day["2026-05-05"]["failed"].value == 0
        assert by_day["2026-05-04"]["failure_rate"].value == pytest.approx(3 / 7, abs=1e-4)
        assert by_day["2026-05-05"]["sent"].value == 4
        assert "wallet ⚠" in by_day["2026-05-11"]["failure_rate_by_domain"].value
        assert "█" in by_day["2026-05-11"]["failure_rate_by_domain"].value
        days = by_day["2026-05-01"]["days_in_run"].value.records
        assert [row.data["day"] for row in days] == sorted(by_day), "the run's table: one row per day"
        assert [row.data["failed"] for row in days if row.data["failed"]] == [3, 3]
        # Per-partition records in the instance, as the asset's Partitions tab shows them.
        stored = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("daily_domain_summary"), asset_partitions=["2026-05-11"]
            ),
            limit=1,
        ).records[0]
        assert stored.asset_materialization.metadata["failed"].value == 3
        profile = next(
            event.event_specific_data.materialization
            for event in result.get_asset_materialization_events()
            if event.asset_key == dg.AssetKey("hourly_send_profile") and event.partition == "2026-05-02"
        )
        assert profile.metadata["sent"].value == 4 and profile.metadata["dagster/row_count"].value == 4
        assert "| 09:00 | ███" in profile.metadata["sends_per_hour"].value
    (check,) = result.get_asset_check_evaluations()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert check.metadata["failing_days"].value == ["2026-05-04", "2026-05-11"]
    assert check.metadata["failing_domains"].value == ["wallet"]
    assert "2026-05-04, 2026-05-11" in check.description and "wallet" in check.description


def test_daily_assets_retry_and_have_a_freshness_deadline() -> None:
    for asset in REPORT_ASSETS:
        policy = asset.op.retry_policy
        assert policy is not None and policy.max_retries >= 2 and policy.delay, asset.key
        freshness = asset.get_asset_spec().freshness_policy
        assert freshness is not None, asset.key
        # After the 00:30 run (and its retries), before anyone reads the reports.
        assert (freshness.deadline_cron, freshness.timezone) == ("0 2 * * *", "Africa/Kigali")
        assert freshness.lower_bound_delta.total_seconds() == 90 * 60


def test_today_so_far_refreshes_only_when_something_happened(db, db_url) -> None:
    schedule = today.today_report_schedule
    resources = {"queue_db": QueueDatabase(url=db_url)}
    now = datetime.now(KIGALI)

    def tick():
        context = dg.build_schedule_context(resources=resources, scheduled_execution_time=now)
        return schedule.evaluate_tick(context)

    assert schedule.execution_timezone == "Africa/Kigali" and schedule.cron_schedule == "10 * * * *"
    idle = tick()
    assert not idle.run_requests and "no notification of today" in idle.skip_message
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for minutes in (1, 2, 3):
        add(db, max(midnight, now - timedelta(minutes=minutes)), "sent", "orders")
    add(db, max(midnight, now - timedelta(minutes=4)), "failed", "orders", code="131026")
    assert len(tick().run_requests) == 1
    result = dg.materialize([assets.notifications_table, today.today_domain_summary], resources=resources)
    (event,) = result.get_asset_materialization_events()
    meta = event.event_specific_data.materialization.metadata
    assert (meta["sent"].value, meta["failed"].value, meta["dagster/row_count"].value) == (3, 1, 1)
    assert meta["day"].value == now.date().isoformat()
    assert "███" in meta["sends_per_hour"].value and "orders ⚠" in meta["failure_rate_by_domain"].value
    assert table(db, "daily_domain_summary").empty, "today's numbers are metadata, not rows"


def test_bars_scale_and_show_their_numbers() -> None:
    assert charts.bar(0, 10) == "" and charts.bar(10, 10) == "█" * charts.WIDTH
    assert charts.bar(5, 10) == "█" * (charts.WIDTH // 2)
    assert charts.bar(0.01, 10) == "▏", "a tiny value is still visible"
    chart = charts.failure_rate_by_domain({"a": 0.5, "b": 0.01, "c": None}, warn_above=0.05)
    lines = chart.splitlines()
    assert lines[2].startswith("| a ⚠ |") and lines[2].endswith("| 50.0% |") and "c" not in chart
    assert charts.sends_per_hour({}) == "nothing sent"
    assert len(charts.sends_per_hour({7: 2}).splitlines()) == 2 + 24


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

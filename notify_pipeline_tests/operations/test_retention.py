"""Retention: old audit rows, events and resolved alerts go, in batches; nothing recent, no firing
alert and no notification is touched. The Dagster job in process, the schedule, the CLI. Dagster's
own storage: old runs that touched no asset go with their files, op outputs are not stored, and an
idle deployment starts few runs a day."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from notify_pipeline.defs.operations import retention as retention_jobs
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations import retention
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.engine import enqueue_many


def count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def aged(db) -> dict[str, int]:
    """12 notifications (12 'queued' audit rows, 7 of them 120 days old), 9 events of which 5 old,
    and alerts: old resolved, old firing, recent resolved."""
    enqueue_many(db, 12)
    db.execute(
        "UPDATE notification_audit_log SET created_at = now() - interval '120 days' "
        "WHERE id IN (SELECT id FROM notification_audit_log ORDER BY id LIMIT 7)"
    )
    db.execute(
        "INSERT INTO observability_events (event_type, created_at) "
        "SELECT 'OLD', now() - interval '100 days' FROM generate_series(1, 5)"
    )
    db.execute("INSERT INTO observability_events (event_type) SELECT 'NEW' FROM generate_series(1, 4)")
    db.execute(
        "INSERT INTO alerts (alert_name, state, summary, started_at, resolved_at) VALUES "
        "('queue_depth', 'resolved', 'old', now() - interval '200 days', now() - interval '199 days'), "
        "('failure_rate', 'firing', 'old but firing', now() - interval '200 days', NULL), "
        "('queue_depth', 'resolved', 'recent', now() - interval '2 days', now() - interval '1 day')"
    )
    # webhook_events have their own window (receipts/test_webhook_hygiene_retention.py): none here.
    return {"notification_audit_log": 7, "observability_events": 5, "alerts": 1, "webhook_events": 0}


def test_dry_run_counts_and_deletes_nothing(db, aged) -> None:
    report = retention.cleanup(db, "op", dry_run=True)
    assert report.rows == aged and report.batches == {}
    assert (count(db, "notification_audit_log"), count(db, "observability_events"), count(db, "alerts")) == (
        12,
        9,
        3,
    )


def test_cleanup_deletes_only_old_rows_in_batches_and_never_notifications(db, aged) -> None:
    report = retention.cleanup(db, "op", older_than_days=90, batch_size=2, dry_run=False)
    assert report.rows == aged
    assert report.batches == {
        "notification_audit_log": 4,
        "observability_events": 3,
        "alerts": 1,
        "webhook_events": 0,
    }
    assert count(db, "notifications") == 12
    assert count(db, "notification_audit_log") == 5
    assert db.execute("SELECT count(*) FROM observability_events WHERE event_type = 'OLD'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM observability_events WHERE event_type = 'NEW'").fetchone()[0] == 4
    assert sorted(r[0] for r in db.execute("SELECT summary FROM alerts")) == ["old but firing", "recent"]
    (event,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'RETENTION_CLEANUP'"
    ).fetchone()
    assert event == {
        "older_than_days": 90,
        "webhook_days": retention.DEFAULT_WEBHOOK_DAYS,
        "deleted": aged,
        "batches": report.batches,
        "actor": "op",
    }
    assert retention.cleanup(db, "op", dry_run=False).rows == dict.fromkeys(aged, 0)


def test_a_shorter_window_reaches_further_and_alerts_can_be_kept(db, aged) -> None:
    report = retention.cleanup(db, "op", older_than_days=1, dry_run=False, include_alerts=False)
    assert "alerts" not in report.rows and count(db, "alerts") == 3
    assert report.rows["notification_audit_log"] == 7


@pytest.mark.parametrize(("days", "batch"), [(0, 100), (-5, 100), (90, 0), (90, 100_000)])
def test_bad_limits_are_refused(db, days: int, batch: int) -> None:
    with pytest.raises(ValueError):
        retention.cleanup(db, "op", older_than_days=days, batch_size=batch, dry_run=False)


def test_cleanup_job_in_process_and_weekly_schedule(db, db_url, aged) -> None:
    resources = {"queue_db": QueueDatabase(url=db_url)}
    dry = retention_jobs.audit_log_cleanup_job.execute_in_process(resources=resources)
    assert dry.output_for_node("delete_old_audit_rows")["rows"] == aged and count(db, "alerts") == 3
    config = retention_jobs.CleanupConfig(older_than_days=90, batch_size=3, dry_run=False)
    result = retention_jobs.audit_log_cleanup_job.execute_in_process(
        resources=resources, run_config=dg.RunConfig(ops={"delete_old_audit_rows": config})
    )
    assert result.success
    output = result.output_for_node("delete_old_audit_rows")
    assert output["rows"] == aged and output["batches"]["notification_audit_log"] == 3
    (actor,) = db.execute(
        "SELECT details->>'actor' FROM observability_events WHERE event_type = 'RETENTION_CLEANUP'"
    ).fetchone()
    assert actor.startswith("audit_log_cleanup_job:")
    schedule = retention_jobs.audit_log_cleanup_schedule
    assert (
        schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "30 2 * * 0"
    )
    run_config = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    assert run_config["ops"]["delete_old_audit_rows"]["config"]["dry_run"] is False


def test_cli_cleanup_counts_unless_confirmed(db, db_url, aged) -> None:
    env = {"NOTIFY_DATABASE_URL": db_url}
    dry = cli("cleanup", env=env)
    assert dry.returncode == 0 and "notification_audit_log: would delete 7 row(s)" in dry.stdout
    assert count(db, "notification_audit_log") == 12
    refused = cli("cleanup", "--older-than-days", "0", "--confirm", env=env)
    assert refused.returncode == 2 and "at least 1" in refused.stderr
    done = cli("cleanup", "--batch-size", "5", "--confirm", env=env)
    assert done.returncode == 0 and "notification_audit_log: deleted 7 row(s) in 2 batch(es)" in done.stdout
    assert count(db, "notification_audit_log") == 5


# --- Dagster's own storage -------------------------------------------------------------------


@dg.op
def noop() -> int:
    return 1


@dg.job
def noop_job() -> None:
    noop()


@dg.asset
def kept_asset() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


def backdate(instance: dg.DagsterInstance, run_id: str, days: int) -> None:
    """Make a run look `days` old (the runs table's create_timestamp, which RunsFilter reads)."""
    from dagster._core.storage.runs.schema import RunsTable

    with instance.run_storage.connect() as conn:
        conn.execute(
            RunsTable.update()
            .where(RunsTable.c.run_id == run_id)
            .values(create_timestamp=(datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None))
        )


@pytest.fixture
def old_runs():
    """An instance with 3 op runs 40 days old (each with its compute logs, one also with a pickled
    output), 1 asset run 40 days old and 1 op run from today."""
    with dg.instance_for_test() as instance:
        old = [noop_job.execute_in_process(instance=instance).run_id for _ in range(3)]
        asset_run = dg.materialize([kept_asset], instance=instance).run_id
        recent = noop_job.execute_in_process(instance=instance).run_id
        for run_id in [*old, asset_run]:
            backdate(instance, run_id, 40)
        folder = Path(instance.storage_directory()) / old[0] / "noop"
        folder.mkdir(parents=True)
        (folder / "result").write_bytes(b"pickled")
        yield instance, old, asset_run, recent


def test_dagster_run_cleanup_counts_in_a_dry_run(old_runs) -> None:
    instance, old, _asset_run, _recent = old_runs
    report = retention.prune_dagster_runs(instance, older_than_days=30)
    assert (report.dry_run, report.examined, report.deleted, report.kept_with_assets) == (True, 4, 3, 1)
    assert len(instance.get_run_ids()) == 5 and (Path(instance.storage_directory()) / old[0]).is_dir()


def test_dagster_run_cleanup_deletes_old_runs_without_asset_events_and_their_files(old_runs) -> None:
    instance, old, asset_run, recent = old_runs
    report = retention.prune_dagster_runs(instance, older_than_days=30, dry_run=False)
    assert (report.deleted, report.kept_with_assets, report.folders_removed) == (3, 1, 3), "compute logs too"
    assert set(instance.get_run_ids()) == {asset_run, recent}
    assert all(not instance.all_logs(run_id) for run_id in old), "their event_logs rows go with them"
    assert not any((Path(instance.storage_directory()) / run_id).exists() for run_id in old)
    assert (Path(instance.storage_directory()) / recent).is_dir()
    materialized = instance.fetch_materializations(dg.AssetKey("kept_asset"), limit=1).records
    assert [record.run_id for record in materialized] == [asset_run], "the asset's history stays"
    assert retention.prune_dagster_runs(instance, older_than_days=30, dry_run=False).deleted == 0
    assert retention.prune_dagster_runs(instance, older_than_days=50, dry_run=False).examined == 0
    with pytest.raises(ValueError):
        retention.prune_dagster_runs(instance, older_than_days=0)


def test_cleanup_job_prunes_dagster_runs_on_its_instance(db_url, old_runs) -> None:
    instance, old, _asset_run, _recent = old_runs
    resources = {"queue_db": QueueDatabase(url=db_url)}
    dry = retention_jobs.audit_log_cleanup_job.execute_in_process(resources=resources, instance=instance)
    assert dry.output_for_node("delete_old_dagster_runs")["deleted"] == 3
    assert set(old) <= set(instance.get_run_ids())
    config = retention_jobs.RunCleanupConfig(older_than_days=30, dry_run=False)
    done = retention_jobs.audit_log_cleanup_job.execute_in_process(
        resources=resources,
        instance=instance,
        run_config=dg.RunConfig(ops={"delete_old_dagster_runs": config}),
    )
    assert done.success and not set(old) & set(instance.get_run_ids())
    schedule = retention_jobs.audit_log_cleanup_schedule
    run_config = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    assert run_config["ops"]["delete_old_dagster_runs"]["config"]["dry_run"] is False


def test_op_outputs_are_not_written_to_dagster_storage(tmp_path) -> None:
    """The location's io_manager stores nothing; the filesystem one (Dagster's default for launched
    runs) leaves a pickle per op output in the run's storage folder. Compute logs are written either
    way (the run clean-up deletes them)."""
    from notify_pipeline_tests.support.workspace import load_workspace_definitions

    io_manager = load_workspace_definitions().resources["io_manager"]
    assert isinstance(io_manager, retention_jobs.DiscardOutputsIOManager)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:

        def stored(manager) -> list[str]:
            job = dg.Definitions(jobs=[noop_job], resources={"io_manager": manager}).resolve_job_def(
                "noop_job"
            )
            result = job.execute_in_process(instance=instance)
            assert result.success and result.output_for_node("noop") == 1, "tests still see outputs"
            folder = Path(instance.storage_directory()) / result.run_id
            return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

        assert stored(io_manager) == ["compute_logs"]
        assert stored(dg.FilesystemIOManager()) == ["compute_logs", "noop"]


def _ticks_per_day(cron: str, timezone: str | None) -> float:
    from dagster._utils.schedules import cron_string_iterator

    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; 7 days cover weekly schedules
    ticks = cron_string_iterator(start.timestamp(), cron, timezone)
    count = sum(1 for _ in itertools.takewhile(lambda t: t < start + timedelta(days=7), ticks))
    return count / 7


def test_an_idle_deployment_starts_at_most_50_dagster_runs_a_day(monkeypatch, db, db_url) -> None:
    """Every schedule and sensor the location starts with, evaluated on an idle queue (nothing
    queued, nothing sent): a schedule that launches at idle counts each of its ticks, a gated one
    (it skips when there is nothing to do) none; the send sensor keeps one send run alive, a new
    one per lifetime. A new run-launching sensor must be accounted for here."""
    from notify_pipeline import settings
    from notify_pipeline_tests.support.workspace import load_workspace_definitions

    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    repo = load_workspace_definitions().get_repository_def()
    resources = {"queue_db": QueueDatabase(url=db_url)}
    per_day: dict[str, float] = {}
    for schedule in repo.schedule_defs:
        if schedule.default_status != dg.DefaultScheduleStatus.RUNNING:
            continue
        tick = schedule.evaluate_tick(
            dg.build_schedule_context(resources=resources, scheduled_execution_time=datetime.now(UTC))
        )
        per_day[schedule.name] = (
            _ticks_per_day(schedule.cron_schedule, schedule.execution_timezone) if tick.run_requests else 0
        )
    for sensor in repo.sensor_defs:
        if sensor.default_status != dg.DefaultSensorStatus.RUNNING or not sensor.targets:
            continue
        assert sensor.name == "due_notifications_sensor", f"count the idle runs of {sensor.name}"
        per_day[sensor.name] = 24 * 60 / settings.send_lifetime_minutes()
    assert per_day["due_notifications_sensor"] == 12
    assert per_day["daily_report_job_schedule"] == 1
    assert per_day["today_report_schedule"] == 0 and per_day["sweep_locks_schedule"] == 0
    total = sum(per_day.values())
    assert total <= 50, f"{total:.1f} runs a day at idle: {per_day}"

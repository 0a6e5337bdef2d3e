"""Retention: old audit rows, events and resolved alerts go, in batches; nothing recent, no firing
alert and no notification is touched. The Dagster job in process, the schedule, the CLI."""

from __future__ import annotations

import dagster as dg
import pytest

from notify_pipeline.defs.operations import retention as retention_jobs
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations import retention
from notify_pipeline_tests.engine_support import enqueue_many
from notify_pipeline_tests.test_cli import cli


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
    return {"notification_audit_log": 7, "observability_events": 5, "alerts": 1}


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
    assert report.batches == {"notification_audit_log": 4, "observability_events": 3, "alerts": 1}
    assert count(db, "notifications") == 12
    assert count(db, "notification_audit_log") == 5
    assert db.execute("SELECT count(*) FROM observability_events WHERE event_type = 'OLD'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM observability_events WHERE event_type = 'NEW'").fetchone()[0] == 4
    assert sorted(r[0] for r in db.execute("SELECT summary FROM alerts")) == ["old but firing", "recent"]
    (event,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'RETENTION_CLEANUP'"
    ).fetchone()
    assert event == {"older_than_days": 90, "deleted": aged, "batches": report.batches, "actor": "op"}
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

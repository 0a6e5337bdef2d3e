"""webhook_events retention on a real PostgreSQL: `cleanup` and its weekly Dagster job delete
webhook events older than their own window, in batches, whatever their state (applied, refused,
or waiting for an id that never landed), and keep every younger one, waiting statuses included.
The window cannot be set shorter than Meta's retries."""

from __future__ import annotations

import dagster as dg
import pytest

from notify_pipeline.defs.operations import retention as retention_jobs
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations import retention
from notify_pipeline.receipts.bounds import MIN_KEEP_DAYS

# (update key, received days ago, settled): settled rows carry applied_at and an outcome.
ROWS = [
    ("old-applied", 20, True),
    ("old-refused", 30, True),
    ("old-waiting", 20, False),  # its message id never landed: expired
    ("old-applied-2", 16, True),
    ("recent-applied", 1, True),
    ("recent-waiting", 6, False),  # still waiting for its id: kept
    ("recent-refused", 13, True),
]
OLD = {key for key, days, _ in ROWS if days > retention.DEFAULT_WEBHOOK_DAYS}


@pytest.fixture
def webhook_rows(db) -> None:
    for key, days, settled in ROWS:
        db.execute(
            "INSERT INTO webhook_events (kind, update_key, wa_message_id, status, payload, received_at, "
            "applied_at, outcome) VALUES ('status', %(key)s, %(key)s, 'delivered', '{}', "
            "now() - make_interval(days => %(days)s), "
            "CASE WHEN %(settled)s THEN now() - make_interval(days => %(days)s) END, "
            "CASE WHEN %(settled)s THEN 'applied' ELSE 'waiting: no notification carries this message id yet' END)",
            {"key": key, "days": days, "settled": settled},
        )


def keys(db) -> set[str]:
    return {key for (key,) in db.execute("SELECT update_key FROM webhook_events")}


def test_cleanup_deletes_old_webhook_events_in_batches_and_keeps_young_ones(db, webhook_rows) -> None:
    dry = retention.cleanup(db, "op", dry_run=True)
    assert dry.rows["webhook_events"] == len(OLD) and keys(db) == {key for key, _, _ in ROWS}
    report = retention.cleanup(db, "op", batch_size=2, dry_run=False)
    assert report.rows["webhook_events"] == len(OLD) == 4
    assert report.batches["webhook_events"] == 2
    assert keys(db) == {"recent-applied", "recent-waiting", "recent-refused"}
    (details,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'RETENTION_CLEANUP'"
    ).fetchone()
    assert details["webhook_days"] == retention.DEFAULT_WEBHOOK_DAYS
    assert details["deleted"]["webhook_events"] == 4


def test_a_shorter_webhook_window_reaches_further_but_not_below_metas_retries(db, webhook_rows) -> None:
    report = retention.cleanup(db, "op", webhook_days=MIN_KEEP_DAYS, dry_run=False)
    assert report.rows["webhook_events"] == 5
    assert keys(db) == {"recent-applied", "recent-waiting"}, "a status waiting 6 days is kept"
    with pytest.raises(ValueError, match=f"at least {MIN_KEEP_DAYS} days: Meta retries"):
        retention.cleanup(db, "op", webhook_days=MIN_KEEP_DAYS - 1, dry_run=False)
    assert keys(db) == {"recent-applied", "recent-waiting"}


def test_the_weekly_cleanup_job_deletes_old_webhook_events(db, db_url, webhook_rows) -> None:
    resources = {"queue_db": QueueDatabase(url=db_url)}
    schedule = retention_jobs.audit_log_cleanup_schedule
    run_config = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    result = retention_jobs.audit_log_cleanup_job.execute_in_process(
        resources=resources, run_config=run_config
    )
    assert result.success
    assert result.output_for_node("delete_old_audit_rows")["rows"]["webhook_events"] == 4
    assert keys(db) == {"recent-applied", "recent-waiting", "recent-refused"}
    with pytest.raises(Exception, match="webhook_days"):
        retention_jobs.CleanupConfig(webhook_days=MIN_KEEP_DAYS - 1)


def test_cli_cleanup_takes_the_webhook_window_and_refuses_one_shorter_than_metas_retries(
    db, db_url, webhook_rows
) -> None:
    from notify_pipeline_tests.support.cli import cli

    env = {"NOTIFY_DATABASE_URL": db_url}
    short = cli("cleanup", "--webhook-days", str(MIN_KEEP_DAYS - 1), "--confirm", env=env)
    assert short.returncode == 2 and "at least" in short.stderr and keys(db) == {key for key, *_ in ROWS}
    done = cli("cleanup", "--webhook-days", "15", "--confirm", env=env)
    assert done.returncode == 0, done.stderr
    assert "webhook_events: deleted" in done.stdout
    assert keys(db) == {key for key, days, _ in ROWS if days <= 15}

"""Operator procedures on a real PostgreSQL: sweep, retry failed, pause, emergency stop and resume,
and the status report."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notify_pipeline.engine import operations
from notify_pipeline.engine.operations import RetryFilter
from notify_pipeline.operations.status import queue_status, render
from notify_pipeline_tests.support.engine import enqueue, enqueue_many, load_demo_templates, row, welcome


def fail(db, ids, code="131000", domain=None) -> None:
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = %s, error_message = 'x' "
        "WHERE id = ANY(%s)",
        (code, ids),
    )
    if domain:
        db.execute("UPDATE notifications SET domain = %s WHERE id = ANY(%s)", (domain, ids))


def test_sweep_releases_only_claims_older_than_the_lease(db) -> None:
    old, fresh = enqueue_many(db, 2)
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '16 minutes', locked_by = 'a' WHERE id = %s",
        (old,),
    )
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '1 minute', locked_by = 'b' WHERE id = %s",
        (fresh,),
    )
    assert operations.sweep_locks(db, timedelta(minutes=15)) == 1
    assert row(db, old)["locked_at"] is None and row(db, fresh)["locked_at"] is not None
    details = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'NOTIFY_LOCKS_SWEPT'"
    ).fetchone()[0]
    assert details == {"released": 1, "older_than_s": 900.0}


def test_retry_failed_dry_run_counts_and_filters_select(db) -> None:
    baskets = enqueue_many(db, 3)
    core = [enqueue(db, welcome("+250788555000"))]
    fail(db, baskets, "131000", domain="baskets")
    fail(db, core, "131026")
    selection = RetryFilter(since=timedelta(hours=1), domain="baskets")
    assert operations.retry_failed(db, selection, dry_run=True).count == 3
    assert db.execute("SELECT count(*) FROM notifications WHERE status = 'failed'").fetchone()[0] == 4
    assert operations.retry_failed(db, RetryFilter(error_code="131026"), dry_run=True).count == 1
    assert operations.retry_failed(db, selection, dry_run=False).count == 3
    requeued = row(db, baskets[0])
    assert (requeued["status"], requeued["retry_count"], requeued["last_error_code"]) == ("queued", 0, None)
    assert row(db, core[0])["status"] == "failed"


def test_retry_failed_refuses_an_empty_filter(db) -> None:
    with pytest.raises(ValueError, match="at least one filter"):
        operations.retry_failed(db, RetryFilter(), dry_run=True)


def test_retry_failed_never_requeues_an_opted_out_contact(db) -> None:
    (notification_id,) = enqueue_many(db, 1)
    fail(db, [notification_id])
    db.execute("SELECT mark_opted_out(%s)", (row(db, notification_id)["to_wa_id"],))
    result = operations.retry_failed(db, RetryFilter(error_code="131000"), dry_run=False)
    assert (result.count, result.left) == (0, {"contact_opted_out": 1})
    everything = RetryFilter(error_code="131000", include_permanent=True)
    assert operations.retry_failed(db, everything, dry_run=False).count == 0


def test_emergency_stop_and_resume_keep_every_held_row_whatever_its_age(db) -> None:
    ids = enqueue_many(db, 4)
    db.execute("UPDATE notifications SET created_at = now() - interval '3 days' WHERE id = %s", (ids[0],))
    in_flight = ids[1]
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w' WHERE id = %s", (in_flight,))
    already_failed = ids[2]
    fail(db, [already_failed], "131026")

    assert operations.emergency_stop(db, "bad template copy", "tester") == 2
    assert operations.paused(db) == (True, "bad template copy")
    assert row(db, ids[0])["error_message"] == operations.EMERGENCY_STOP_MESSAGE
    assert row(db, in_flight)["status"] == "queued", "a row being sent is left to its worker"

    assert operations.resume(db, "fixed", "tester") == 2
    assert operations.paused(db) == (False, "fixed")
    assert row(db, ids[0])["status"] == "queued", "three days old and still resumed"
    assert row(db, already_failed)["status"] == "failed", "a real failure is not resumed"
    events = [e for (e,) in db.execute("SELECT event_type FROM observability_events ORDER BY id")]
    assert events == ["NOTIFY_PAUSED", "NOTIFY_EMERGENCY_STOP", "NOTIFY_RESUMED", "NOTIFY_EMERGENCY_RESUME"]


def test_status_report_separates_due_from_waiting(db) -> None:
    load_demo_templates(db)
    enqueue_many(db, 2)
    enqueue(db, welcome("+250788555001"), {"delay_seconds": 3600, "domain": "orders"})
    failed = enqueue(db, welcome("+250788555002"), {"domain": "orders"})
    fail(db, [failed])
    db.execute(
        "INSERT INTO observability_events (event_type, details) VALUES "
        '(\'NOTIFY_WORKER_DONE\', \'{"trigger": "sensor", "processed": 5}\')'
    )
    status = queue_status(db)
    assert (status.due_now, status.waiting, status.in_flight) == (2, 1, 0)
    assert dict((d[0], d[1]) for d in status.depth) == {"queued": 3, "failed": 1}
    text = render(status)
    assert "Sending: running" in text
    assert "2 due now, 1 waiting" in text
    assert "orders" in text and "NOTIFY_WORKER_DONE" in text
    operations.set_paused(db, True, "maintenance", "tester")
    assert "PAUSED (maintenance)" in render(queue_status(db))

"""The runbook's SQL runs unchanged against our schema and means what the runbook says.

The runbook is read from ../shared/reference/RUNBOOK.md at test time (skipped where it is absent).
Every statement runs against a seeded database, each in a transaction that is rolled back, so each
sees the same state. Then the procedures an operator relies on are checked for their effect.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from notify_pipeline_tests.support.queue import TEMPLATE_MESSAGE, enqueue
from notify_pipeline_tests.support.runbook_sql import Statement, find, statements


@pytest.fixture(scope="module")
def runbook(runbook_path: Path) -> list[Statement]:
    found = statements(runbook_path)
    assert len(found) >= 25, "the runbook parser lost statements"
    return found


def seed(db: psycopg.Connection) -> dict[str, int]:
    """A day of traffic in several domains and states, as the runbook's queries expect to find."""
    ids = {}
    db.execute(
        "INSERT INTO observability_events (event_type, details) VALUES "
        "('NOTIFY_WORKER_START', '{\"trigger\": \"sensor\"}'), "
        '(\'NOTIFY_WORKER_DONE\', \'{"trigger": "sensor", "processed": 12}\')'
    )
    ids["sent"] = enqueue(db, TEMPLATE_MESSAGE, {"domain": "core", "correlation_id": "your_correlation_id"})
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w' WHERE id = %s", (ids["sent"],))
    db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), locked_at = NULL, wa_message_id = 'wamid.A' "
        "WHERE id = %s",
        (ids["sent"],),
    )
    ids["failed_baskets"] = enqueue(db, {"to": "+250788000002", "text": "due"}, {"domain": "baskets"})
    ids["failed_core"] = enqueue(db, {"to": "+250788000003", "text": "x"}, {"domain": "core"})
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = '131026', "
        "error_message = 'Message undeliverable' WHERE id = ANY(%s)",
        ([ids["failed_baskets"], ids["failed_core"]],),
    )
    ids["deferred"] = enqueue(
        db, {"to": "+250788000004", "text": "later"}, {"domain": "orders", "delay_seconds": 900}
    )
    ids["stale_lock"] = enqueue(db, {"to": "+250788000005", "text": "stuck"}, {"domain": "orders"})
    ids["fresh_lock"] = enqueue(db, {"to": "+250788000006", "text": "sending"}, {"domain": "orders"})
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '20 minutes', locked_by = 'dead' WHERE id = %s",
        (ids["stale_lock"],),
    )
    db.execute(
        "UPDATE notifications SET locked_at = now(), locked_by = 'alive' WHERE id = %s", (ids["fresh_lock"],)
    )
    ids["opted_out_pending"] = enqueue(db, {"to": "+250788123456", "text": "promo"}, {"domain": "wallet"})
    db.execute(
        "INSERT INTO whatsapp_templates (template_key, template_name, variables, approval_status) "
        "VALUES ('your_template_key', 'your_template_name', '[\"name\"]', 'APPROVED')"
    )
    return ids


@pytest.fixture
def seeded(db: psycopg.Connection) -> dict[str, int]:
    return seed(db)


def run(db: psycopg.Connection, statement: Statement) -> list[tuple]:
    cur = db.execute(statement.sql)
    return cur.fetchall() if cur.description else []


def test_every_runbook_statement_runs_unchanged(db: psycopg.Connection, seeded, runbook) -> None:
    failures = []
    for statement in runbook:
        try:
            with db.transaction(force_rollback=True):
                run(db, statement)
        except psycopg.Error as exc:
            failures.append(f"[{statement.heading}] {statement.sql[:80]!r}: {str(exc).splitlines()[0]}")
    assert failures == []


def test_worker_activity_check_sees_the_worker(db, seeded, runbook) -> None:
    rows = run(db, find(runbook, "Is the notification worker running"))
    assert {(event, trigger) for event, trigger, _, _ in rows} == {
        ("NOTIFY_WORKER_START", "sensor"),
        ("NOTIFY_WORKER_DONE", "sensor"),
    }


def test_queue_depth_and_failure_rate_by_domain(db, seeded, runbook) -> None:
    depth = {status: count for status, count, _ in run(db, find(runbook, "current queue depth"))}
    assert depth == {"sent": 1, "failed": 2, "queued": 4}
    rates = {
        domain: (sent, failed, float(rate))
        for domain, sent, failed, rate in run(db, find(runbook, "What's the failure rate"))
    }
    assert rates["baskets"] == (0, 1, 100.0)
    assert rates["core"] == (1, 1, 50.0)
    assert rates["orders"][2] == 0.0


def test_stuck_lock_reset_releases_only_stale_claims_and_is_audited(db, seeded, runbook) -> None:
    run(db, find(runbook, "Notifications stuck in queue", "SET locked_at = NULL"))
    locks = dict(
        db.execute(
            "SELECT id, locked_at IS NOT NULL FROM notifications WHERE id = ANY(%s)",
            ([seeded["stale_lock"], seeded["fresh_lock"]],),
        ).fetchall()
    )
    assert locks == {seeded["stale_lock"]: False, seeded["fresh_lock"]: True}
    swept = db.execute(
        "SELECT notification_id FROM notification_audit_log WHERE event_type = 'swept'"
    ).fetchall()
    assert swept == [(seeded["stale_lock"],)]


def test_deferred_rows_are_found_with_their_due_time(db, seeded, runbook) -> None:
    rows = run(db, find(runbook, "Notifications stuck in queue", "next_attempt_at > NOW()"))
    assert [row[0] for row in rows] == [seeded["deferred"]]


def test_failures_grouped_by_error_code(db, seeded, runbook) -> None:
    rows = run(db, find(runbook, "High failure rate", "GROUP BY last_error_code"))
    assert rows == [("131026", 2, "Message undeliverable")]


def test_opt_out_procedure_stops_the_contact_and_cancels_pending(db, seeded, runbook) -> None:
    run(db, find(runbook, "User opted out", "mark_opted_out"))
    assert run(db, find(runbook, "User opted out", "SELECT id, status")) == []
    status, code = db.execute(
        "SELECT status, last_error_code FROM notifications WHERE id = %s", (seeded["opted_out_pending"],)
    ).fetchone()
    assert (status, code) == ("failed", "opted_out")
    wa_id, opted_out, opt_out_at, reason = run(db, find(runbook, "User opted out", "opt_out_reason"))[0]
    assert (wa_id, opted_out, reason) == ("+250788123456", True, "user_request")
    assert opt_out_at is not None


def test_retry_failed_requeues_only_the_filtered_domain(db, seeded, runbook) -> None:
    run(db, find(runbook, "Retry failed notifications"))
    statuses = dict(
        db.execute(
            "SELECT id, status FROM notifications WHERE id = ANY(%s)",
            ([seeded["failed_baskets"], seeded["failed_core"]],),
        ).fetchall()
    )
    assert statuses == {seeded["failed_baskets"]: "queued", seeded["failed_core"]: "failed"}
    requeued = db.execute("SELECT notification_id FROM notification_audit_log WHERE event_type = 'requeued'")
    assert requeued.fetchall() == [(seeded["failed_baskets"],)]


def test_bulk_quiet_hours_gives_every_recipient_preferences(db, seeded, runbook) -> None:
    run(db, find(runbook, "Bulk update quiet hours"))
    missing = db.execute(
        "SELECT count(DISTINCT to_wa_id) FROM notifications n "
        "WHERE NOT EXISTS (SELECT 1 FROM contact_preferences c WHERE c.wa_id = n.to_wa_id)"
    ).fetchone()[0]
    assert missing == 0
    zones = db.execute(
        "SELECT DISTINCT timezone, quiet_hours_start::text FROM contact_preferences"
    ).fetchall()
    assert zones == [("Africa/Kigali", "22:00:00")]


def test_emergency_stop_then_resume_restores_the_queue(db, seeded, runbook) -> None:
    queued_before = {row[0] for row in db.execute("SELECT id FROM notifications WHERE status = 'queued'")}
    run(db, find(runbook, "Stop all notifications immediately"))
    assert db.execute("SELECT count(*) FROM notifications WHERE status = 'queued'").fetchone()[0] == 0
    run(db, find(runbook, "Resume after emergency stop"))
    queued_after = {row[0] for row in db.execute("SELECT id FROM notifications WHERE status = 'queued'")}
    assert queued_after == queued_before
    trail = db.execute(
        "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id",
        (seeded["deferred"],),
    ).fetchall()
    assert [event for (event,) in trail][-2:] == ["cancelled", "requeued"]


def test_audit_trail_tells_the_story_of_a_correlation_id(db, seeded, runbook) -> None:
    rows = run(db, find(runbook, "Audit trail for specific notification"))
    assert [row[5] for row in rows] == ["queued", "claimed", "sent"]
    assert rows[-1][6]["wa_message_id"] == "wamid.A"


def test_manual_test_notification_is_queued_with_its_meta(db, seeded, runbook) -> None:
    (new_id,) = run(db, find(runbook, "Manually send a test notification"))[0]
    domain, ntype, correlation = db.execute(
        "SELECT domain, notification_type, correlation_id FROM notifications WHERE id = %s", (new_id,)
    ).fetchone()
    assert (domain, ntype) == ("core", "test")
    assert correlation.startswith("test_")

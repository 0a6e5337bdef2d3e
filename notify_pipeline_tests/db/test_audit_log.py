"""The audit log is written by the database: every state change of a notification leaves one row,
whoever makes it (the product, or an operator in psql)."""

from __future__ import annotations

import psycopg
import pytest

from notify_pipeline_tests.support.queue import TEMPLATE_MESSAGE, enqueue


def events(db: psycopg.Connection, notification_id: int) -> list[str]:
    return [
        event
        for (event,) in db.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id",
            (notification_id,),
        )
    ]


def update(db: psycopg.Connection, notification_id: int, assignments: str) -> None:
    db.execute(f"UPDATE notifications SET {assignments} WHERE id = %s", (notification_id,))


CLAIM = "locked_at = now(), locked_by = 'worker-1'"

TRANSITIONS = [
    pytest.param(
        [CLAIM, "status = 'sent', sent_at = now(), locked_at = NULL, wa_message_id = 'wamid.1'"],
        ["queued", "claimed", "sent"],
        id="sent",
    ),
    pytest.param(
        [
            CLAIM,
            "retry_count = 1, next_attempt_at = now() + interval '30 seconds', locked_at = NULL, "
            "last_error_code = '131000'",
        ],
        ["queued", "claimed", "retried"],
        id="retried",
    ),
    pytest.param(
        [
            CLAIM,
            "next_attempt_at = now() + interval '8 hours', locked_at = NULL, last_error_code = 'quiet_hours'",
        ],
        ["queued", "claimed", "deferred"],
        id="deferred",
    ),
    pytest.param([CLAIM, "locked_at = NULL"], ["queued", "claimed", "swept"], id="swept"),
    pytest.param(
        [CLAIM, "status = 'failed', last_error_code = '132001', locked_at = NULL"],
        ["queued", "claimed", "failed"],
        id="failed-by-worker",
    ),
    pytest.param(
        ["status = 'failed', error_message = 'Emergency stop - manual intervention'"],
        ["queued", "cancelled"],
        id="cancelled-while-waiting",
    ),
    pytest.param(
        ["status = 'failed'", "status = 'queued', retry_count = 0"],
        ["queued", "cancelled", "requeued"],
        id="requeued",
    ),
    pytest.param(["next_attempt_at = now() + interval '1 day'"], ["queued", "rescheduled"], id="rescheduled"),
    pytest.param(["payload = payload || '{\"note\": 1}'"], ["queued"], id="no-state-change"),
]


@pytest.mark.parametrize(("steps", "expected"), TRANSITIONS)
def test_each_state_change_writes_one_audit_row(db: psycopg.Connection, steps, expected) -> None:
    notification_id = enqueue(db, TEMPLATE_MESSAGE)
    for assignments in steps:
        update(db, notification_id, assignments)
    assert events(db, notification_id) == expected


def test_details_carry_reason_worker_and_actor(db: psycopg.Connection) -> None:
    notification_id = enqueue(db, TEMPLATE_MESSAGE)
    update(db, notification_id, CLAIM)
    update(
        db,
        notification_id,
        "next_attempt_at = now() + interval '1 hour', locked_at = NULL, last_error_code = 'quiet_hours', "
        "error_message = 'Deferred: quiet hours'",
    )
    details = db.execute(
        "SELECT details FROM notification_audit_log WHERE notification_id = %s AND event_type = 'deferred'",
        (notification_id,),
    ).fetchone()[0]
    assert details["error_code"] == "quiet_hours"
    assert details["worker"] == "worker-1"
    assert details["actor"] == "test"
    assert details["next_attempt_at"]


def test_a_bulk_statement_audits_every_row(db: psycopg.Connection) -> None:
    ids = [enqueue(db, TEMPLATE_MESSAGE) for _ in range(50)]
    db.execute("UPDATE notifications SET status = 'failed' WHERE status = 'queued'")
    cancelled = db.execute(
        "SELECT count(*) FROM notification_audit_log WHERE event_type = 'cancelled' AND notification_id = ANY(%s)",
        (ids,),
    ).fetchone()[0]
    assert cancelled == 50


def test_queued_row_without_next_attempt_is_due_now(db: psycopg.Connection) -> None:
    notification_id = enqueue(db, TEMPLATE_MESSAGE, {"delay_seconds": 3600})
    update(db, notification_id, "next_attempt_at = NULL")
    due, now = db.execute(
        "SELECT next_attempt_at, now() FROM notifications WHERE id = %s", (notification_id,)
    ).fetchone()
    assert due <= now
    assert (now - due).total_seconds() < 5

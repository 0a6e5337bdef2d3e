"""The send-time re-check of held rows: a runbook stop, an opt-out or a template switch-off
committed while a live drain holds rows stops those rows' POSTs within a second.

The drain is given several seconds of rows in hand (`ahead_s`), so a row stopped while held would
still go out well after the one-second window if the re-check were off (with the default one
second in hand the rows would be gone inside the window anyway, and the tests could not fail).
Late sends are counted from the emulator's ledger, and `report.revoked > 0` shows the re-check
itself dropped rows, not the claim."""

from __future__ import annotations

import time

import pytest

from notify_pipeline_tests.support.drain_harness import (
    DrainThread,
    assert_accepted_exactly,
    counts,
    fresh,
    ids_with_status,
    received_after,
    wait_until,
)
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates, run_drain

pytestmark = pytest.mark.slow
HELD_S = 5.0  # seconds of sending in hand, far beyond the 1 s the tests allow after a stop
WINDOW_S = 1.0
RUNBOOK_STOP = (
    "UPDATE notifications SET status = 'failed', error_message = 'Emergency stop - manual intervention' "
    "WHERE status = 'queued'"
)
RUNBOOK_RESUME = (
    "UPDATE notifications SET status = 'queued', error_message = NULL, retry_count = 0 "
    "WHERE error_message = 'Emergency stop - manual intervention' AND created_at > NOW() - INTERVAL '1 hour'"
)


def _seed(db_url: str, count: int, **kwargs) -> list[int]:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        return enqueue_many(conn, count, **kwargs)


def _holding(db_url: str, rows: int) -> bool:
    """The drain holds at least `rows` claimed rows it has not sent yet."""
    with fresh(db_url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NOT NULL"
            ).fetchone()[0]
            >= rows
        )


def test_runbook_stop_then_resume_on_a_live_drain_sends_nothing_twice(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False, latency_ms=10)
    ids = _seed(db_url, 2000)
    drain = DrainThread(db_url, emulator, throughput_per_s=300, ahead_s=HELD_S, journal_dir=tmp_path)
    wait_until(lambda: emulator.stats()["total"] >= 200, what="sending to be under way")
    wait_until(lambda: _holding(db_url, 600), what="seconds of rows in hand")
    with fresh(db_url) as conn:
        conn.execute(RUNBOOK_STOP)
    stopped_at = time.time()
    report = drain.join()
    assert received_after(emulator, stopped_at + WINDOW_S) == 0, "nothing sent more than 1 s after the stop"
    assert report.fault is None, report.fault  # a deadlock with the stop's UPDATE is retried
    assert report.revoked > 0, report.as_dict()
    with fresh(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM notifications WHERE status = 'sent' AND error_message IS NOT NULL"
        ).fetchone() == (0,)
        # Messages accepted while (or just before) the stop committed are recorded as sent, and
        # their audit says they went out after the row was stopped.
        late = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE n.status = 'sent' AND n.wa_message_id IS NOT NULL) "
            "FROM notification_audit_log a JOIN notifications n ON n.id = a.notification_id "
            "WHERE a.event_type = 'sent' AND a.details ? 'sent_after'"
        ).fetchone()
        assert late[0] == late[1]
    assert_accepted_exactly(emulator, ids_with_status(db_url, "sent"))
    with fresh(db_url) as conn:
        conn.execute(RUNBOOK_RESUME)
    again = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, rescue_after_s=0.5)
    assert again.stopped_by == "drained", again.as_dict()
    assert counts(db_url) == {"sent": 2000}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0


def test_an_opt_out_stops_held_rows_within_a_second(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False, latency_ms=10)
    _seed(db_url, 1600, recipients=4)
    drain = DrainThread(
        db_url, emulator, throughput_per_s=200, ahead_s=HELD_S, pair_per_s=None, journal_dir=tmp_path
    )
    wait_until(lambda: emulator.stats()["total"] >= 100, what="sending to be under way")
    wait_until(lambda: _holding(db_url, 400), what="seconds of rows in hand")
    target = "+250700000001"
    with fresh(db_url) as conn:
        conn.execute("SELECT mark_opted_out(%s, 'test')", (target,))
    opted_out_at = time.time()
    report = drain.join()
    assert received_after(emulator, opted_out_at + WINDOW_S, wa_id=target.lstrip("+")) == 0
    assert report.revoked > 0, report.as_dict()
    with fresh(db_url) as conn:
        left = conn.execute(
            "SELECT status, count(*) FROM notifications WHERE to_wa_id = %s GROUP BY 1", (target,)
        ).fetchall()
    assert dict(left).get("queued", 0) == 0
    assert_accepted_exactly(emulator, ids_with_status(db_url, "sent"))
    assert emulator.stats()["duplicates"] == 0


def test_a_template_switched_off_stops_held_rows_within_a_second(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False, latency_ms=10)
    _seed(db_url, 1600)
    drain = DrainThread(
        db_url, emulator, throughput_per_s=200, ahead_s=HELD_S, pair_per_s=None, journal_dir=tmp_path
    )
    wait_until(lambda: emulator.stats()["total"] >= 100, what="sending to be under way")
    wait_until(lambda: _holding(db_url, 400), what="seconds of rows in hand")
    with fresh(db_url) as conn:
        conn.execute(
            "UPDATE whatsapp_templates SET is_active = false WHERE template_name = 'welcome_message'"
        )
    switched_off_at = time.time()
    report = drain.join()
    assert received_after(emulator, switched_off_at + WINDOW_S) == 0
    assert report.revoked > 0, report.as_dict()
    left = counts(db_url)
    assert left.get("failed", 0) + left.get("sent", 0) == 1600
    assert_accepted_exactly(emulator, ids_with_status(db_url, "sent"))

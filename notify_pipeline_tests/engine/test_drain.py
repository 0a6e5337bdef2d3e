"""The delivery engine end to end: real PostgreSQL, the emulator over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from notify_pipeline.engine.operations import set_paused
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.whatsapp.messages import callback_data
from notify_pipeline_tests.support.engine import (
    client_settings,
    enqueue,
    enqueue_many,
    load_demo_templates,
    row,
    run_drain,
    statuses,
    welcome,
)


@pytest.fixture
def queue(db):
    load_demo_templates(db)
    return db


def test_drain_sends_everything_due_and_records_wamids(queue, db_url, emulator) -> None:
    emulator.configure(limits_enabled=False)
    ids = enqueue_many(queue, 50)
    report = run_drain(db_url, emulator, batch_size=16, concurrency=8, throughput_per_s=None)
    assert report.stopped_by == "drained"
    assert report.sent == 50
    assert statuses(queue) == {"sent": 50}
    stats = emulator.stats()
    assert stats["total"] == 50 and stats["duplicates"] == 0
    wamids = {m["biz_opaque_callback_data"]: m["wamid"] for m in emulator.messages()}
    for notification_id in ids:
        notification = row(queue, notification_id)
        assert notification["wa_message_id"] == wamids[callback_data(notification_id)]
        assert notification["locked_at"] is None and notification["sent_at"] is not None
    events = [e for (e,) in queue.execute("SELECT event_type FROM observability_events ORDER BY id")]
    assert events == ["NOTIFY_WORKER_START", "NOTIFY_WORKER_DONE"]
    done = queue.execute(
        "SELECT details FROM observability_events WHERE event_type = 'NOTIFY_WORKER_DONE'"
    ).fetchone()[0]
    assert done["processed"] == 50 and done["sent"] == 50 and done["trigger"] == "manual"
    trail = [
        e
        for (e,) in queue.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id", (ids[0],)
        )
    ]
    assert trail == ["queued", "claimed", "sent"]


def test_rows_not_yet_due_are_left_alone(queue, db_url, emulator) -> None:
    later = enqueue(queue, welcome(), {"delay_seconds": 3600})
    report = run_drain(db_url, emulator)
    assert report.claimed == 0 and report.stopped_by == "drained"
    assert row(queue, later)["status"] == "queued"


def test_opted_out_contact_is_failed_and_never_sent(queue, db_url, emulator) -> None:
    notification_id = enqueue(queue, welcome("+250788111111"))
    queue.execute("INSERT INTO contact_preferences (wa_id, opted_out) VALUES ('+250788111111', true)")
    run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert (notification["status"], notification["last_error_code"]) == ("failed", "opted_out")
    assert emulator.stats()["total"] == 0


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (
            "UPDATE whatsapp_templates SET approval_status = 'PENDING' WHERE template_name = 'welcome_message'",
            "template_not_approved",
        ),
        ("DELETE FROM whatsapp_templates WHERE template_name = 'welcome_message'", "template_missing"),
        (
            "UPDATE whatsapp_templates SET is_active = false WHERE template_name = 'welcome_message'",
            "template_inactive",
        ),
    ],
)
def test_unusable_template_fails_without_a_request(queue, db_url, emulator, setup, reason) -> None:
    queue.execute(setup)
    notification_id = enqueue(queue, welcome())
    run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert (notification["status"], notification["last_error_code"]) == ("failed", reason)
    assert "welcome_message" in notification["error_message"]
    assert emulator.stats()["total"] + emulator.stats()["rejected"] == 0, "no request reached the API"


def test_wrong_parameter_count_fails_before_any_request(queue, db_url, emulator) -> None:
    notification_id = enqueue(
        queue, {"to": "+250788000001", "template": {"name": "ride_arriving", "language": "en"}}
    )
    run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert notification["status"] == "failed"
    assert "does not match" in notification["error_message"]
    assert emulator.stats()["rejected"] == 0


def test_quiet_hours_defer_to_the_contacts_morning_without_using_an_attempt(queue, db_url, emulator) -> None:
    notification_id = enqueue(queue, welcome("+250788222222"))
    queue.execute(
        "INSERT INTO contact_preferences (wa_id, quiet_hours_start, quiet_hours_end, timezone) "
        "VALUES ('+250788222222', '00:00', '23:59', 'America/New_York')"
    )
    report = run_drain(db_url, emulator, policy=PolicyConfig())
    assert report.deferred == {"quiet_hours": 1}
    notification = row(queue, notification_id)
    assert notification["status"] == "queued" and notification["retry_count"] == 0
    assert notification["deferral_count"] == 1 and notification["last_error_code"] == "quiet_hours"
    local_due = notification["next_attempt_at"].astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York")
    )
    assert local_due.time().replace(second=0, microsecond=0) == time(23, 59)
    assert emulator.stats()["total"] == 0


def test_authentication_templates_go_out_at_night(queue, db_url, emulator) -> None:
    enqueue(
        queue,
        {
            "to": "+250788222222",
            "template": {
                "name": "otp_code",
                "language": "en",
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "123456"}]},
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": "123456"}],
                    },
                ],
            },
        },
    )
    queue.execute(
        "INSERT INTO contact_preferences (wa_id, quiet_hours_start, quiet_hours_end) "
        "VALUES ('+250788222222', '00:00', '23:59')"
    )
    report = run_drain(db_url, emulator, policy=PolicyConfig())
    assert report.sent == 1


def test_retries_stop_exactly_at_the_policy_limit(queue, db_url, emulator) -> None:
    queue.execute(
        'UPDATE whatsapp_templates SET retry_policy = \'{"max_retries": 2, "backoff_base_seconds": 0.001, '
        "\"backoff_max_seconds\": 0.001}' WHERE template_name = 'welcome_message'"
    )
    notification_id = enqueue(queue, welcome())
    emulator.add_fault(code=131000)
    for _ in range(6):
        run_drain(db_url, emulator)
        queue.execute("UPDATE notifications SET next_attempt_at = now() WHERE status = 'queued'")
    notification = row(queue, notification_id)
    assert notification["status"] == "failed"
    assert notification["retry_count"] == 3, "the first attempt and two retries"
    assert notification["last_error_code"] == "131000"
    assert "Gave up after 3 attempts" in notification["error_message"]
    assert emulator.stats()["rejected"] == 3
    events = [
        e
        for (e,) in queue.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id",
            (notification_id,),
        )
    ]
    assert events.count("retried") == 2 and events[-1] == "failed"


def test_permanent_error_fails_at_once_with_code_and_meaning(queue, db_url, emulator) -> None:
    notification_id = enqueue(queue, welcome())
    emulator.add_fault(code=131026)
    run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert (notification["status"], notification["last_error_code"], notification["retry_count"]) == (
        "failed",
        "131026",
        0,
    )
    assert "Message undeliverable" in notification["error_message"]


def test_outside_24h_window_says_a_template_is_needed(queue, db_url, emulator) -> None:
    notification_id = enqueue(queue, {"to": "+250788000001", "text": "hello"})
    emulator.add_fault(code=131047)
    run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert notification["status"] == "failed"
    assert "template" in notification["error_message"]


def test_pair_limit_from_meta_defers_without_an_attempt(queue, db_url, emulator) -> None:
    notification_id = enqueue(queue, welcome())
    emulator.add_fault(code=131056, max_count=1)
    before = datetime.now(UTC)
    report = run_drain(db_url, emulator)
    notification = row(queue, notification_id)
    assert report.deferred == {"131056": 1}
    assert notification["retry_count"] == 0 and notification["deferral_count"] == 1
    assert timedelta(seconds=0.5) < notification["next_attempt_at"] - before < timedelta(seconds=10)


def test_our_pair_limit_defers_a_burst_to_one_recipient(queue, db_url, emulator) -> None:
    enqueue_many(queue, 6, recipients=1)
    report = run_drain(db_url, emulator, pair_burst=2)
    assert report.sent == 2
    assert report.deferred == {"pair_limit": 4}
    assert emulator.stats()["rejected"] == 0, "Meta never had to refuse"
    assert queue.execute("SELECT max(retry_count) FROM notifications").fetchone()[0] == 0


def test_auth_error_stops_the_run_and_leaves_the_queue_intact(queue, db_url, emulator) -> None:
    enqueue_many(queue, 40)
    report = run_drain(
        db_url,
        emulator,
        settings=client_settings(emulator, access_token="expired"),
        batch_size=10,
        concurrency=2,
    )
    assert report.stopped_by == "auth_error"
    assert "190" in report.auth_error
    assert statuses(queue) == {"queued": 40}
    assert (
        queue.execute(
            "SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL OR retry_count > 0 "
            "OR deferral_count > 0"
        ).fetchone()[0]
        == 0
    )
    assert report.claimed < 40, "it stopped claiming"
    assert (
        queue.execute(
            "SELECT count(*) FROM observability_events WHERE event_type = 'NOTIFY_AUTH_FAILURE'"
        ).fetchone()[0]
        == 1
    )


def test_pause_flag_stops_a_running_drain_within_a_batch(queue, db_url, emulator) -> None:
    emulator.configure(limits_enabled=False, latency_ms=50)
    enqueue_many(queue, 400)
    import threading

    from notify_pipeline.db.connect import connect

    def pause_soon() -> None:
        import time as _time

        _time.sleep(0.4)
        with connect(db_url, autocommit=True) as conn:
            set_paused(conn, True, "test", "tester")

    threading.Thread(target=pause_soon).start()
    report = run_drain(db_url, emulator, batch_size=50, concurrency=4, throughput_per_s=None, tick_s=0.05)
    assert report.stopped_by == "paused"
    counts = statuses(queue)
    assert 0 < counts["sent"] < 400
    assert counts["sent"] + counts["queued"] == 400
    assert queue.execute("SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL").fetchone()[0] == 0
    assert emulator.stats()["total"] == counts["sent"], "every accepted message is recorded as sent"


def test_disabled_worker_sends_nothing(queue, db_url, emulator, monkeypatch) -> None:
    enqueue_many(queue, 3)
    monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
    report = run_drain(db_url, emulator)
    assert report.stopped_by == "disabled" and report.claimed == 0
    assert emulator.stats()["total"] == 0


def test_time_budget_bounds_the_run(queue, db_url, emulator) -> None:
    emulator.configure(limits_enabled=False)
    enqueue_many(queue, 300)
    report = run_drain(db_url, emulator, throughput_per_s=20, max_seconds=1.0, batch_size=10)
    assert report.stopped_by == "time_budget"
    counts = statuses(queue)
    assert 0 < counts["sent"] < 300
    assert queue.execute("SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL").fetchone()[0] == 0

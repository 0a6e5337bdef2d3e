"""An alert's life against a real PostgreSQL and a real local webhook receiver, on a clock the test
moves: it fires once, reminds only after the repeat interval, resolves when the condition clears,
and the alerts table (not the cursor) decides what is firing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from notify_pipeline.db.connect import connect
from notify_pipeline.reporting.alerts import lifecycle
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.sink import RecordOnly, WebhookSink
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.alerts import (
    FakeClock,
    add_rows,
    age_events,
    alert_rows,
    worker_start,
    worker_verdict,
)
from notify_pipeline_tests.support.ports import free_port
from notify_pipeline_tests.support.receipts import any_status_arrives, sent_awaiting_receipts

SMALL = replace(
    DEFAULTS, queue_depth=5, failure_rate_min_volume=10, opt_outs_per_hour=2, throttled_per_minute=2
)


class Ticker:
    """Evaluates one alert the way its sensor does, carrying the cursor between ticks."""

    def __init__(self, db, name: str, sink, clock: FakeClock, thresholds=SMALL) -> None:
        self.db, self.spec, self.sink, self.clock, self.thresholds = (
            db,
            BY_NAME[name],
            sink,
            clock,
            thresholds,
        )
        self.cursor: str | None = None

    def tick(self, after_s: float = 60) -> lifecycle.Outcome:
        self.clock.advance(after_s)
        outcome = lifecycle.evaluate(
            self.db, self.spec, self.thresholds, self.sink, self.clock(), self.cursor
        )
        self.cursor = outcome.cursor
        return outcome


def sink_for(receiver) -> WebhookSink:
    return WebhookSink(receiver.url, backoff_s=0)


def test_fires_once_reminds_after_the_repeat_interval_and_resolves(db, webhook_receiver) -> None:
    clock = FakeClock()
    ticker = Ticker(db, "oldest_queued", sink_for(webhook_receiver), clock)
    assert ticker.tick().state == "ok"
    ids = add_rows(db, 2, due="now() - interval '2 hours'")

    fired = ticker.tick()
    assert fired.state == "fired" and fired.text.startswith(
        "FIRING: The oldest due notification has waited 2 h"
    )
    assert "webhook delivered (attempt 1)" in fired.text
    (message,) = webhook_receiver.wait_for(1)
    assert message["text"].startswith(":rotating_light: FIRING | Oldest queued notification: The oldest due")
    assert "First check:" in message["text"] and message["blocks"][0]["type"] == "section"
    (row,) = alert_rows(db, "oldest_queued")
    assert (row["state"], row["notifications"], row["last_notified_at"]) == ("firing", 1, clock.now)

    for _ in range(29):  # 29 more minutes: still firing, no reminder yet
        assert ticker.tick().state == "firing"
    assert len(webhook_receiver.received) == 1
    reminded = ticker.tick()  # 30 minutes after the first notice (alert_repeat_s)
    assert reminded.state == "reminded" and reminded.text.startswith("STILL FIRING (30 min)")
    assert webhook_receiver.wait_for(2)[1]["text"].startswith(
        ":warning: STILL FIRING (30 min) | Oldest queued"
    )

    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids,))
    resolved = ticker.tick()
    assert resolved.state == "resolved" and resolved.text.startswith("RESOLVED after 31 min: ok:")
    text = webhook_receiver.wait_for(3)[2]["text"]
    assert text.startswith(":white_check_mark: RESOLVED | Oldest queued notification after 31 min")
    assert "Was: The oldest due notification has waited 2 h" in text
    (row,) = alert_rows(db, "oldest_queued")
    assert (row["state"], row["notifications"], row["resolved_at"]) == ("resolved", 3, clock.now)
    assert row["details"]["resolved_with"]["headline"].startswith("ok:")
    assert [d["kind"] for d in row["details"]["deliveries"]] == ["firing", "repeat", "resolved"]

    assert ticker.tick().state == "ok"
    add_rows(db, 1, due="now() - interval '3 hours'", first=50)
    assert ticker.tick().state == "fired", "a new episode after a resolve"
    assert [r["state"] for r in alert_rows(db, "oldest_queued")] == ["resolved", "firing"]


def test_queue_depth_fires_only_when_the_condition_lasts(db, webhook_receiver) -> None:
    clock = FakeClock()
    ticker = Ticker(db, "queue_depth", sink_for(webhook_receiver), clock)
    ids = add_rows(db, 8)
    first = ticker.tick()
    assert first.state == "pending" and "fires if it lasts 5 min (0 s so far)" in first.text
    assert json.loads(first.cursor)["since"] == clock.now.isoformat()
    for _ in range(4):
        assert ticker.tick().state == "pending"
    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids[:4],))
    assert ticker.tick().state == "ok", "dipped below: the clock starts again"
    add_rows(db, 4, first=100)
    assert ticker.tick().state == "pending"
    started = clock.now
    for _ in range(4):
        assert ticker.tick().state == "pending"
    fired = ticker.tick()  # 5 minutes after it was first seen again
    assert fired.state == "fired"
    assert "8 notifications are due now (alert above 5)" in fired.text
    (row,) = alert_rows(db, "queue_depth")
    assert row["started_at"] == started, "the episode starts when the condition was first seen"
    assert len(webhook_receiver.wait_for(1)) == 1


def test_a_lost_cursor_or_a_restart_never_fires_twice(db, webhook_receiver) -> None:
    clock = FakeClock()
    ticker = Ticker(db, "worker_health", sink_for(webhook_receiver), clock)
    worker_start(db, ago="1 hour")
    add_rows(db, 2, due="now() - interval '20 minutes'")
    assert ticker.tick().state == "fired"
    ticker.cursor = None  # cursor reset in the UI, or a new sensor
    assert ticker.tick().state == "firing"
    ticker.cursor = "not json at all"
    assert ticker.tick().state == "firing"
    assert len(webhook_receiver.received) == 1 and len(alert_rows(db)) == 1
    worker_start(db)
    assert ticker.tick().state == "resolved"


def test_no_webhook_records_the_alert_and_says_so_in_the_tick_text(db) -> None:
    clock = FakeClock()
    ticker = Ticker(db, "opt_out_spike", RecordOnly("NOTIFY_ALERT_WEBHOOK_URL is not set"), clock)
    for i in range(3):
        db.execute("SELECT mark_opted_out(%s, 'STOP')", (f"+25078900000{i}",))
    fired = ticker.tick()
    assert fired.state == "fired"
    assert fired.text == (
        "FIRING: 3 opt-outs in the last 60 min (alert above 2): 3 contacts opted out, 0 sends blocked "
        "because the contact had opted out; recorded only (NOTIFY_ALERT_WEBHOOK_URL is not set)"
    )
    (row,) = alert_rows(db, "opt_out_spike")
    assert row["state"] == "firing" and row["notifications"] == 1
    assert row["summary"].startswith("3 opt-outs in the last 60 min")
    assert row["details"]["numbers"]["contacts"] == 3
    assert row["details"]["deliveries"][0]["channel"] == "none"
    age_events(db)
    assert ticker.tick().state == "resolved"


def test_webhook_down_records_the_failure_keeps_the_alert_and_delivers_later(db, webhook_receiver) -> None:
    clock = FakeClock()
    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", retries=1, sleep=lambda _s: None)
    ticker = Ticker(db, "throttling", down, clock)
    ids = add_rows(db, 3)
    worker_verdict(db, ids, status="queued", code="131056")
    failed = ticker.tick()
    assert (
        failed.state == "fired" and "webhook delivery FAILED after 2 attempt(s): ConnectError" in failed.text
    )
    (row,) = alert_rows(db, "throttling")
    assert row["state"] == "firing" and row["notifications"] == 0 and row["last_notified_at"] is None
    assert row["details"]["delivery_failures"] == 1
    assert row["details"]["deliveries"][0]["ok"] is False
    assert "127.0.0.1" not in json.dumps(row["details"]), "no webhook address in the alerts table"

    ticker.sink = sink_for(webhook_receiver)  # the webhook is back: the first notice goes out now
    fired = ticker.tick(after_s=5)
    assert fired.state == "fired" and "webhook delivered" in fired.text
    assert webhook_receiver.wait_for(1)[0]["text"].startswith(":rotating_light: FIRING | Throttling")
    (row,) = alert_rows(db, "throttling")
    assert row["notifications"] == 1 and row["details"]["delivery_failures"] == 1


def _sent(db) -> None:
    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE status = 'queued'")


def _throttled(db) -> None:
    worker_verdict(db, add_rows(db, 3), status="queued", code="130429")


def _opted_out(db) -> None:
    for i in range(3):
        db.execute("SELECT mark_opted_out(%s, 'STOP')", (f"+25078900000{i}",))


def _silent_worker(db) -> None:
    worker_start(db, ago="1 hour")
    add_rows(db, 2, due="now() - interval '20 minutes'")


# Per alert: what makes the condition hold, and what clears it.
SEEDS = {
    "queue_depth": (lambda db: add_rows(db, 6), _sent),
    "oldest_queued": (lambda db: add_rows(db, 1, due="now() - interval '2 hours'"), _sent),
    "failure_rate": (
        lambda db: add_rows(db, 12, status="failed", code="132001"),
        lambda db: db.execute("UPDATE notifications SET created_at = now() - interval '1 day'"),
    ),
    "worker_health": (_silent_worker, worker_start),
    "opt_out_spike": (_opted_out, age_events),
    "throttling": (_throttled, lambda db: age_events(db, "2 minutes")),
    "no_receipts": (lambda db: sent_awaiting_receipts(db, 5), any_status_arrives),
}


@pytest.mark.parametrize("name", list(SEEDS))
def test_each_alert_fires_repeats_after_the_interval_and_resolves(db, name, webhook_receiver) -> None:
    assert set(SEEDS) == set(BY_NAME)
    clock = FakeClock()
    thresholds = replace(SMALL, queue_depth_for_s=0)
    ticker = Ticker(db, name, sink_for(webhook_receiver), clock, thresholds)
    seed, clear = SEEDS[name]
    assert ticker.tick().state == "ok"
    seed(db)
    assert ticker.tick().state == "fired"
    assert ticker.tick(DEFAULTS.alert_repeat_s - 1).state == "firing"
    assert ticker.tick(1).state == "reminded"
    clear(db)
    assert ticker.tick().state == "resolved"
    kinds = [m["text"].split(" |")[0] for m in webhook_receiver.wait_for(3)]
    assert kinds == [
        ":rotating_light: FIRING",
        ":warning: STILL FIRING (30 min)",
        ":white_check_mark: RESOLVED",
    ]
    (row,) = alert_rows(db, name)
    assert (row["state"], row["notifications"]) == ("resolved", 3)


def test_a_check_cut_off_by_the_statement_timeout_leaves_the_alert_as_it_was(db, db_url) -> None:
    clock = FakeClock()
    add_rows(db, 1, due="now() - interval '2 hours'")
    with (
        connect(db_url, actor="locker") as locker,
        connect(db_url, statement_timeout_ms=200, autocommit=True) as slow,
    ):
        ticker = Ticker(slow, "oldest_queued", RecordOnly("test"), clock)
        assert ticker.tick().state == "fired"
        before = ticker.cursor
        locker.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")  # held until rollback
        outcome = ticker.tick()
        locker.rollback()
    assert outcome.state == "error" and "statement timeout" in outcome.text
    assert outcome.cursor == before
    (row,) = alert_rows(db, "oldest_queued")
    assert row["state"] == "firing" and row["notifications"] == 1


def test_a_condition_seen_again_after_a_long_gap_starts_its_hold_again(db) -> None:
    clock = FakeClock()
    ticker = Ticker(db, "queue_depth", RecordOnly("test"), clock)
    add_rows(db, 6)
    assert ticker.tick().state == "pending"
    since = json.loads(ticker.cursor)["since"]
    assert ticker.tick(after_s=lifecycle.MAX_GAP_S + 1).state == "pending", "the sensor was stopped meanwhile"
    assert json.loads(ticker.cursor)["since"] != since
    for _ in range(5):
        outcome = ticker.tick()
    assert outcome.state == "fired"

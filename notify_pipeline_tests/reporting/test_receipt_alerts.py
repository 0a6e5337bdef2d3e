"""Receipts in the alerts, on a real PostgreSQL: a late failure raises the failure-rate alert, and
the no_receipts alert fires when sends get no status webhook (a broken subscription), says what to
check, takes its thresholds from resource config, and resolves once a status arrives."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from notify_pipeline.defs.alerts import sensors
from notify_pipeline.defs.alerts.resources import AlertThresholds
from notify_pipeline.reporting.alerts import lifecycle
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.sink import RecordOnly
from notify_pipeline.reporting.alerts.verdict import Verdict
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.alerts import FakeClock, add_rows, alert_resources, alert_rows
from notify_pipeline_tests.support.receipts import (
    any_status_arrives,
    give_message_id,
    receive,
    sent_awaiting_receipts,
    store_status,
)

SMALL = replace(DEFAULTS, failure_rate_min_volume=10)


def check(db, name: str, thresholds=SMALL) -> Verdict:
    return BY_NAME[name].check(db, thresholds)


def test_a_late_failure_raises_the_failure_rate_alert(db) -> None:
    wamids = [give_message_id(db, i) for i in add_rows(db, 12, status="sent")]
    assert not check(db, "failure_rate").breached, "all 12 accepted"
    for wamid in wamids[:3]:
        receive(db, wamid, "failed", code="131026")
    verdict = check(db, "failure_rate")
    assert verdict.breached, verdict.headline
    assert "3 of 12 finished failed" in verdict.headline
    assert verdict.numbers["late_failed"] == 3 and verdict.numbers["failed_by_code"] == {"131026": 3}
    assert any("3 of the failures came late" in fact for fact in verdict.facts)
    outcome = lifecycle.evaluate(db, BY_NAME["failure_rate"], SMALL, RecordOnly("test"), FakeClock()(), None)
    assert outcome.state == "fired"


def test_no_receipts_fires_when_sends_get_no_status(db) -> None:
    sent_awaiting_receipts(db, 5)
    verdict = check(db, "no_receipts")
    assert verdict.breached, verdict.headline
    assert verdict.headline.startswith("No status webhook in the last 15 min while 5 messages sent")
    assert "last status webhook: none in 7 days" in verdict.headline
    for hint in ("notify-pipeline serve", "`messages` field", "WHATSAPP_APP_SECRET"):
        assert hint in verdict.first_check
    assert verdict.numbers["awaiting"] == 5 and verdict.numbers["statuses"] == 0


def test_no_receipts_names_when_the_last_status_came(db) -> None:
    sent_awaiting_receipts(db, 5)
    store_status(db, "wamid.OLD", "delivered", received="now() - interval '40 minutes'")
    verdict = check(db, "no_receipts")
    assert verdict.breached and "last status webhook: 40 min ago" in verdict.headline


def test_no_receipts_waits_for_volume_and_for_meta(db) -> None:
    sent_awaiting_receipts(db, 4)
    verdict = check(db, "no_receipts")
    assert not verdict.breached and verdict.headline.startswith("no verdict: 4 sent 2 min to 15 min ago")
    sent_awaiting_receipts(db, 3, ago="30 seconds", first=100)  # too young: Meta had no time
    sent_awaiting_receipts(db, 3, ago="20 minutes", first=200)  # before the window
    assert not check(db, "no_receipts").breached
    assert check(db, "no_receipts", replace(SMALL, no_receipts_min_sent=4)).breached, "configurable"


def test_no_receipts_is_quiet_when_statuses_arrive(db) -> None:
    wamids = sent_awaiting_receipts(db, 8)
    receive(db, wamids[0], "delivered")
    verdict = check(db, "no_receipts")
    assert not verdict.breached and verdict.headline.startswith("ok: 1 status webhooks in the last 15 min")
    db.execute("DELETE FROM webhook_events")  # as if it came before the window
    verdict = check(db, "no_receipts")
    assert verdict.breached and verdict.numbers["awaiting"] == 7, "a row with a receipt awaits nothing"


def test_no_receipts_sensor_fires_with_configured_thresholds_and_resolves(db, db_url, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)
    sent_awaiting_receipts(db, 3)
    sensor = sensors.no_receipts_alert_sensor
    assert sensor.name == "no_receipts_alert_sensor"
    with dg.instance_for_test() as instance:

        def tick(**thresholds) -> str:
            context = dg.build_sensor_context(
                instance=instance, resources=alert_resources(db_url, **thresholds)
            )
            return sensor(context).skip_reason.skip_message

        assert tick().startswith("no verdict: 3 sent"), "default: needs 5"
        assert tick(no_receipts_min_sent=3).startswith("FIRING: No status webhook in the last 15 min")
        assert tick(no_receipts_min_sent=3).startswith("FIRING since")
        any_status_arrives(db)
        assert tick(no_receipts_min_sent=3).startswith("RESOLVED")
    (row,) = alert_rows(db, "no_receipts")
    assert row["state"] == "resolved" and row["details"]["numbers"]["awaiting"] == 3
    assert AlertThresholds(no_receipts_window_s=600).thresholds().no_receipts_window_s == 600

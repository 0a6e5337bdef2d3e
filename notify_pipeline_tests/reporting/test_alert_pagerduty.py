"""PagerDuty Events v2 through the alert sensors, against a local receiver that checks each body the
way PagerDuty does (malformed: 400): an episode triggers exactly once and resolves once with the same
dedup key; a bad URL or an unreachable PagerDuty is a failed delivery, recorded and retried on the
next tick, never an error of the tick; the routing key appears in no table, log or tick text."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from notify_pipeline import settings
from notify_pipeline.defs.alerts import sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts import pagerduty
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.sink import post_json
from notify_pipeline_tests.support.alerts import FakeClock, add_rows, alert_rows, worker_start
from notify_pipeline_tests.support.ports import free_port

ROUTING_KEY = "R0ut1ngK3y0000000000000000000042"  # PagerDuty's keys are 32 characters
SEVERITIES = {"critical", "error", "warning", "info"}
EVENT_KEYS = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "client",
    "client_url",
    "links",
    "images",
}
PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def problems(body: Any) -> list[str]:
    """What PagerDuty's Events API v2 would refuse in this body (empty: accepted)."""
    if not isinstance(body, dict):
        return ["the event must be a JSON object"]
    found = [f"unknown field {key!r}" for key in body if key not in EVENT_KEYS]
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        found.append("routing_key must be a 32-character string")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        found.append("event_action must be trigger, acknowledge or resolve")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        found.append("dedup_key must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        found.append("dedup_key is required to acknowledge or resolve")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*found, "payload is required to trigger"]
        found += [f"unknown payload field {k!r}" for k in payload if k not in PAYLOAD_KEYS]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
            found.append("payload.summary must be 1 to 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            found.append("payload.source is required")
        if payload.get("severity") not in SEVERITIES:
            found.append("payload.severity must be critical, error, warning or info")
        for name in ("component", "group", "class"):
            if name in payload and not isinstance(payload[name], str):
                found.append(f"payload.{name} must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            found.append("payload.custom_details must be an object")
    return found


class PagerDutyReceiver:
    """A local Events v2 endpoint: 202 for a valid event, 400 with PagerDuty's error shape otherwise."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[list[str]] = []
        self.answers: list[int] = []  # forced statuses for the next requests (e.g. 500)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    forced = receiver.answers.pop(0) if receiver.answers else None
                if forced is not None:
                    return self._answer(forced, {"status": "error", "message": "try again"})
                if self.path != "/v2/enqueue" or "application/json" not in self.headers.get(
                    "Content-Type", ""
                ):
                    return self._answer(
                        400, {"status": "invalid event", "message": "Event object is invalid"}
                    )
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                errors = problems(body)
                with receiver._lock:
                    (receiver.rejected if errors else receiver.accepted).append(errors or body)
                if errors:
                    return self._answer(
                        400,
                        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                    )
                self._answer(
                    202,
                    {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")},
                )

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v2/enqueue"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[PagerDutyReceiver]:
    server = PagerDutyReceiver()
    yield server
    server.close()


@pytest.fixture
def paging(receiver, monkeypatch) -> PagerDutyReceiver:
    monkeypatch.setenv("NOTIFY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("NOTIFY_PAGERDUTY_EVENTS_URL", receiver.url)
    monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)
    return receiver


def run_ticks(sensor, db_url: str, cursor: str | None, count: int, clock: FakeClock, **thresholds):
    texts, events = [], []
    with dg.instance_for_test() as instance:
        for _ in range(count):
            context = dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                resources={
                    "queue_db": QueueDatabase(url=db_url),
                    "alert_thresholds": AlertThresholds(**thresholds),
                    "alert_sink": AlertSink(backoff_s=0),
                },
            )
            result = sensor(context)
            texts.append(result.skip_reason.skip_message)
            events += result.asset_events
            cursor = result.cursor
            clock.advance(60)
    return texts, events, cursor


def test_the_receiver_refuses_malformed_events_like_pagerduty(receiver) -> None:
    def post(body: dict[str, Any]):
        return post_json(receiver.url, body, channel="pagerduty", timeout_s=2, retries=2, backoff_s=0)

    good = pagerduty.trigger_event(ROUTING_KEY, "k1", "queue_depth", "x" * 5000, {"due": 5})
    assert len(good["payload"]["summary"]) == 1024, "the summary is cut to PagerDuty's limit"
    assert post(good).status == 202
    bad_summary = {**good, "payload": {**good["payload"], "summary": "x" * 1025}}
    no_source = {**good, "payload": {k: v for k, v in good["payload"].items() if k != "source"}}
    for body in (bad_summary, no_source, {**good, "routing_key": "short"}, {"event_action": "resolve"}):
        refused = post(body)
        assert (refused.ok, refused.status, refused.attempts) == (False, 400, 1), "a 400 is final"
    assert len(receiver.accepted) == 1 and len(receiver.rejected) == 4
    assert pagerduty.resolve_event(ROUTING_KEY, "k1") == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "k1",
    }


def test_an_episode_triggers_once_and_resolves_once_with_one_dedup_key(db, db_url, paging, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["oldest_queued"], clock=clock)
    ids = add_rows(db, 2, due="now() - interval '2 hours'")
    worker_start(db)
    # Fires, stays firing, reminds (the chat channel) after alert_repeat_s: PagerDuty hears once.
    texts, events, cursor = run_ticks(sensor, db_url, None, 4, clock, alert_repeat_s=120)
    assert texts[0].startswith("FIRING: The oldest due notification has waited 2 h")
    assert texts[0].endswith("; pagerduty trigger delivered (attempt 1)")
    assert any(text.startswith("STILL FIRING") for text in texts[1:]), texts
    (trigger,) = paging.accepted
    (episode,) = alert_rows(db, "oldest_queued")
    key = f"notify-pipeline/oldest_queued/{episode['id']}"
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == key
    payload = trigger["payload"]
    assert payload["summary"].startswith("The oldest due notification has waited 2 h")
    assert (payload["source"], payload["component"], payload["severity"]) == (
        "notify-pipeline",
        "oldest_queued",
        "error",
    )
    assert payload["custom_details"]["first_check"].startswith("Are send runs launching")
    assert payload["custom_details"]["numbers"]["due"] == 2
    assert episode["details"]["pagerduty"]["state"] == "triggered"

    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids,))
    more, more_events, _ = run_ticks(sensor, db_url, cursor, 3, clock)
    assert more[0].startswith("RESOLVED") and more[0].endswith("; pagerduty resolve delivered (attempt 1)")
    assert [(e["event_action"], e["dedup_key"]) for e in paging.accepted] == [
        ("trigger", key),
        ("resolve", key),
    ]
    assert paging.rejected == []
    (episode,) = alert_rows(db, "oldest_queued")
    assert episode["state"] == "resolved" and episode["details"]["pagerduty"]["state"] == "resolved"

    # The routing key is nowhere but in the bodies PagerDuty received.
    everything = json.dumps(
        [texts, more, caplog.text, [str(e) for e in [*events, *more_events]], alert_rows(db)], default=str
    )
    assert ROUTING_KEY not in everything
    assert ROUTING_KEY not in repr(AlertSink().pager()) and ROUTING_KEY not in str(AlertSink())


def test_a_bad_url_or_a_pagerduty_outage_is_recorded_and_retried(db, db_url, paging, monkeypatch) -> None:
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["oldest_queued"], clock=clock)
    ids = add_rows(db, 2, due="now() - interval '2 hours'")
    worker_start(db)
    monkeypatch.setenv("NOTIFY_PAGERDUTY_EVENTS_URL", "htp://not a url/enqueue")
    texts, _, cursor = run_ticks(sensor, db_url, None, 1, clock)
    assert "pagerduty trigger delivery FAILED after 1 attempt(s): UnsupportedProtocol" in texts[0], texts
    (episode,) = alert_rows(db, "oldest_queued")
    assert episode["details"]["pagerduty"]["state"] == "trigger_failed"
    assert episode["notifications"] == 1, "the chat channel was not held back"

    monkeypatch.setenv("NOTIFY_PAGERDUTY_EVENTS_URL", paging.url)
    paging.answers = [500, 503, 502]  # every attempt of the next tick fails
    texts, _, cursor = run_ticks(sensor, db_url, cursor, 2, clock)
    assert "pagerduty trigger delivery FAILED after 3 attempt(s): HTTP 502" in texts[0], texts
    assert texts[1].endswith("pagerduty trigger delivered (attempt 1)"), texts
    assert [e["event_action"] for e in paging.accepted] == ["trigger"]
    (episode,) = alert_rows(db, "oldest_queued")
    assert episode["details"]["pagerduty"]["trigger_attempts"] == 3

    # A resolve that fails is retried on later ticks although the episode is already resolved.
    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids,))
    paging.answers = [500, 500, 500]
    texts, _, _ = run_ticks(sensor, db_url, cursor, 2, clock)
    assert texts[0].startswith("RESOLVED") and "pagerduty resolve delivery FAILED" in texts[0], texts
    assert texts[1].startswith("ok") and texts[1].endswith("pagerduty resolve delivered (attempt 1)"), texts
    assert [e["event_action"] for e in paging.accepted] == ["trigger", "resolve"]
    assert len({e["dedup_key"] for e in paging.accepted}) == 1


def test_a_silent_pagerduty_never_holds_a_tick_past_the_budget() -> None:
    with socket.socket() as listener:  # accepts connections but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v2/enqueue"
        pager = pagerduty.PagerDuty(
            ROUTING_KEY, events_url=url, timeout_s=10, retries=3, backoff_s=5, budget_s=1.5
        )
        started = time.monotonic()
        delivery = pager.trigger("k", "queue_depth", "summary", {})
        took = time.monotonic() - started
    assert not delivery.ok and took < 2.5, took
    assert "budget" in delivery.error or delivery.error.startswith("ReadTimeout")
    with pytest.raises(Exception, match="budget_s"):
        AlertSink(budget_s=60)
    # The longest allowed settings of both channels fit well inside the sensor's 60 s.
    assert 2 * AlertSink.model_fields["budget_s"].metadata[-1].le <= 30


def test_unreachable_pagerduty_fails_fast_and_names_no_key() -> None:
    pager = pagerduty.PagerDuty(
        ROUTING_KEY, events_url=f"http://127.0.0.1:{free_port()}/v2/enqueue", backoff_s=0
    )
    delivery = pager.resolve("k")
    assert not delivery.ok and delivery.error.startswith("ConnectError")
    assert ROUTING_KEY not in json.dumps(delivery.as_json())


def test_the_pagerduty_variables_are_documented_settings() -> None:
    for name in ("NOTIFY_PAGERDUTY_ROUTING_KEY", "NOTIFY_PAGERDUTY_EVENTS_URL"):
        assert name in settings.ENVIRONMENT
    assert re.search(r"secret", settings.ENVIRONMENT["NOTIFY_PAGERDUTY_ROUTING_KEY"])

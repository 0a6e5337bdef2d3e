"""The webhook sink over real HTTP: retries with backoff on 5xx, 429 and network errors, no retry on
other 4xx, explicit timeouts, Slack-compatible bodies, and the webhook URL in no log or error."""

from __future__ import annotations

import logging
import socket
import time

from notify_pipeline.reporting.alerts.messages import compose
from notify_pipeline.reporting.alerts.sink import RecordOnly, WebhookSink
from notify_pipeline_tests.support.ports import free_port

PAYLOAD = compose(["test alert"], "footer")


def secret_url(receiver) -> str:
    # Slack's shape: the token is in the path.
    return receiver.url.replace("/webhook", "/services/T0001/B0002/s3cr3tT0k3n")


def test_5xx_then_200_is_retried_with_backoff_and_delivered(webhook_receiver) -> None:
    waits: list[float] = []
    webhook_receiver.answers = [500, 503]
    delivery = WebhookSink(webhook_receiver.url, retries=2, backoff_s=0.5, sleep=waits.append).deliver(
        PAYLOAD
    )
    assert (delivery.ok, delivery.attempts, delivery.status) == (True, 3, 200)
    assert waits == [0.5, 1.0]
    assert webhook_receiver.wait_for(1) == [PAYLOAD]


def test_429_is_retried_and_other_4xx_are_final(webhook_receiver) -> None:
    webhook_receiver.answers = [429]
    assert WebhookSink(webhook_receiver.url, sleep=lambda _s: None).deliver(PAYLOAD).attempts == 2
    webhook_receiver.answers = [404, 200]
    delivery = WebhookSink(webhook_receiver.url, sleep=lambda _s: None).deliver(PAYLOAD)
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, 404)
    assert delivery.error == "HTTP 404"
    assert "FAILED after 1 attempt(s): HTTP 404" in delivery.describe()


def test_unreachable_webhook_fails_after_the_retries() -> None:
    waits: list[float] = []
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", retries=2, backoff_s=0.25, sleep=waits.append)
    delivery = sink.deliver(PAYLOAD)
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 3, None)
    assert delivery.error.startswith("ConnectError")
    assert waits == [0.25, 0.5]


def test_a_silent_webhook_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        delivery = WebhookSink(url, timeout_s=0.2, retries=0).deliver(PAYLOAD)
    assert not delivery.ok and delivery.error.startswith("ReadTimeout")


def test_the_webhook_url_appears_in_no_log_error_or_repr(webhook_receiver, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = secret_url(webhook_receiver)
    sink = WebhookSink(url, sleep=lambda _s: None)
    webhook_receiver.answers = [500]
    assert sink.deliver(PAYLOAD).ok
    # Scrubbed, not lost (the label shown depends on which secrets earlier tests registered).
    assert "HTTP Request: POST " in caplog.text, "httpx's request log is scrubbed, not lost"
    webhook_receiver.answers = [400]
    failed = sink.deliver(PAYLOAD)
    for text in (caplog.text, repr(sink), failed.describe(), str(failed.as_json())):
        assert "s3cr3tT0k3n" not in text


def test_record_only_sink_says_why() -> None:
    delivery = RecordOnly("NOTIFY_ALERT_WEBHOOK_URL is not set").deliver(PAYLOAD)
    assert delivery.ok and delivery.channel == "none"
    assert delivery.describe() == "recorded only (NOTIFY_ALERT_WEBHOOK_URL is not set)"


def test_payload_is_slack_compatible_and_escaped() -> None:
    payload = compose(["<!channel> rate & depth > limit", "", "second"], "alert x")
    assert payload["text"] == "&lt;!channel&gt; rate &amp; depth &gt; limit\nsecond\nalert x"
    section, context = payload["blocks"]
    assert section == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": payload["text"].rsplit("\n", 1)[0]},
    }
    assert context["type"] == "context"
    long = compose(["x" * 5000], "f")
    assert len(long["blocks"][0]["text"]["text"]) <= 2900


def test_a_malformed_webhook_url_is_a_failed_delivery_not_an_error() -> None:
    for url in ("not a url", "htp://hooks.example/x", "http://[::1/x", ""):
        delivery = WebhookSink(url, sleep=lambda _s: None).deliver(PAYLOAD)
        assert not delivery.ok and delivery.error, url


def test_the_longest_retry_settings_stay_inside_the_budget() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        started = time.monotonic()
        delivery = WebhookSink(url, timeout_s=10, retries=3, backoff_s=5, budget_s=1.0).deliver(PAYLOAD)
        assert not delivery.ok and time.monotonic() - started < 2.0

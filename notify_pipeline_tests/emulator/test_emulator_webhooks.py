"""Status webhooks from the emulator to a real local receiver: Meta's payload shape, the
X-Hub-Signature-256 signature, retries, the 24 h window (131047) and template status updates."""

from __future__ import annotations

import httpx

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.whatsapp import webhooks
from notify_pipeline_tests.support.emulator import post, wait_for_webhooks
from notify_pipeline_tests.support.emulator_fixtures import (
    EMULATOR_APP_SECRET,
    WebhookReceiver,
    text_message,
    welcome,
)


def test_accepted_messages_get_sent_delivered_read_signed(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    wamid = post(graph, emulator, welcome(to="+250788000001", callback="notification-42")).json()["messages"][
        0
    ]["id"]
    bodies = webhook_receiver.wait_for(3)
    for headers, raw in webhook_receiver.received:
        assert headers["Content-Type"] == "application/json"
        assert webhooks.verify(EMULATOR_APP_SECRET, raw, headers[webhooks.SIGNATURE_HEADER])
        assert not webhooks.verify("another-secret", raw, headers[webhooks.SIGNATURE_HEADER])
    body = bodies[0]
    assert body["object"] == "whatsapp_business_account"
    [entry] = body["entry"]
    assert entry["id"] == emulator.config()["waba_id"]
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"]["phone_number_id"] == emulator.phone_number_id
    assert value["metadata"]["display_phone_number"]
    statuses = webhook_receiver.statuses(3)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == wamid
        assert status["recipient_id"] == "250788000001"
        assert status["biz_opaque_callback_data"] == "notification-42"
        assert isinstance(status["timestamp"], str) and status["timestamp"].isdigit()
        assert "errors" not in status
    # pricing on sent and on the first of delivered/read, never on both
    assert [("pricing" in s) for s in statuses] == [True, True, False]
    assert statuses[0]["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "utility",
    }
    counters = wait_for_webhooks(emulator)
    assert counters["delivered"] == counters["attempts"] == counters["updates_delivered"] == 3
    assert counters["failed"] == counters["retries"] == counters["pending"] == 0


def test_which_statuses_are_sent_is_configurable(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["delivered"])
    post(graph, emulator, welcome())
    [status] = webhook_receiver.statuses(1)
    assert status["status"] == "delivered" and "pricing" in status
    assert "biz_opaque_callback_data" not in status  # only when the send set it


def test_non_200_answers_are_retried(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"], webhook_retry_delay_ms=10)
    webhook_receiver.answers = [500, 503]
    post(graph, emulator, welcome())
    [status] = webhook_receiver.statuses(1)
    assert status["status"] == "sent"
    assert wait_for_webhooks(emulator)["attempts"] == 3


def test_webhooks_give_up_after_the_retries(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(
        webhook_url=webhook_receiver.url,
        webhook_statuses=["sent"],
        webhook_retries=2,
        webhook_retry_delay_ms=5,
    )
    webhook_receiver.answers = [500, 500, 500]
    post(graph, emulator, welcome(to="+250788000001"))
    assert wait_for_webhooks(emulator)["failed"] == 1
    post(graph, emulator, welcome(to="+250788000002"))
    [status] = webhook_receiver.statuses(1)
    assert status["recipient_id"] == "250788000002"
    final = wait_for_webhooks(emulator)
    assert final["failed"] == 1 and final["delivered"] == 1 and final["attempts"] == 4


def test_an_unreachable_receiver_does_not_slow_or_break_sends(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.configure(webhook_url="http://127.0.0.1:9/unreachable", webhook_retries=0, limits_enabled=False)
    assert all(post(graph, emulator, welcome()).status_code == 200 for _ in range(20))
    assert emulator.stats()["total"] == 20


def test_duplicates_can_be_sent_on_purpose(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(
        webhook_url=webhook_receiver.url, webhook_statuses=["sent"], webhook_duplicate_share=1.0
    )
    post(graph, emulator, welcome())
    first, second = webhook_receiver.wait_for(2)
    assert first == second


def test_free_form_text_outside_the_24h_window_fails_with_131047(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"])
    response = post(graph, emulator, text_message(to="+250788000001"))
    assert response.status_code == 200  # Meta accepts the POST, then fails the message
    [status] = webhook_receiver.statuses(1)
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131047
    assert emulator.stats()["async_failed"] == 1


def test_a_message_from_the_user_opens_the_window(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"])
    opened = emulator.inbound("+250788000001", text="STOP")
    assert opened["wa_id"] == "250788000001"
    [inbound] = webhook_receiver.wait_for(1)
    value = inbound["entry"][0]["changes"][0]["value"]
    assert value["messages"][0]["from"] == "250788000001"
    assert value["messages"][0]["text"] == {"body": "STOP"}
    assert value["contacts"][0]["wa_id"] == "250788000001"
    post(graph, emulator, text_message(to="+250788000001"))
    status = webhook_receiver.statuses(2)[0]
    assert status["status"] == "sent" and status["pricing"]["category"] == "service"


def test_the_window_check_can_be_switched_off(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(enforce_service_window=False)
    post(graph, emulator, text_message())
    assert emulator.stats()["async_failed"] == 0


def test_template_status_changes_are_announced(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    emulator.set_template_status("welcome_message", "en", "PAUSED")  # no change, no webhook
    emulator.set_template_paced("welcome_message", "en")  # not a status change either
    emulator.set_template_status("welcome_message", "en", "APPROVED")
    first, second = webhook_receiver.wait_for(2)
    change = first["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "PAUSED"
    assert change["value"]["message_template_name"] == "welcome_message"
    assert change["value"]["message_template_language"] == "en"
    assert change["value"]["message_template_id"] == 1000000000000001
    assert second["entry"][0]["changes"][0]["value"]["event"] == "APPROVED"
    assert len(webhook_receiver.received) == 2


def test_reset_drops_the_webhook_url(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    emulator.reset()
    post(graph, emulator, welcome())
    assert emulator.config()["webhook_url"] is None
    assert emulator.stats()["webhooks"]["attempts"] == 0


def test_a_webhook_url_needs_the_app_secret() -> None:
    with EmulatorServer() as server:  # no app secret
        refused = httpx.patch(
            f"{server.base_url}/_emulator/config",
            json={"webhook_url": "http://127.0.0.1:9/"},
            trust_env=False,
        )
        assert refused.status_code == 400 and "app_secret" in refused.json()["error"]

"""Webhooks the emulator posts on request: inbound texts and quick-reply buttons, user
preferences (marketing stop/resume), template status, quality and category events. Expected
bodies are written out literally, in the shapes of Meta's webhook reference."""

from __future__ import annotations

import httpx
import pytest

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.whatsapp import webhooks
from notify_pipeline_tests.support.emulator import assert_meta_error, post
from notify_pipeline_tests.support.emulator_fixtures import (
    EMULATOR_APP_SECRET,
    WebhookReceiver,
    body_params,
    template_message,
    welcome,
)

WABA = "102290129340398"
METADATA = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}


def promo(to: str) -> dict:
    return template_message("weekly_promo", components=[body_params("2 for 1")], to=to)


def only_body(receiver: WebhookReceiver, index: int = 0) -> tuple[dict, bytes]:
    bodies = receiver.wait_for(index + 1)
    headers, raw = receiver.received[index]
    assert headers["Content-Type"] == "application/json"
    assert webhooks.verify(EMULATOR_APP_SECRET, raw, headers[webhooks.SIGNATURE_HEADER])
    return bodies[index], raw


def test_a_quick_reply_tap_arrives_as_a_button_message(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=[])
    wamid = post(graph, emulator, promo("+250788000001")).json()["messages"][0]["id"]
    reply = emulator.button_reply("+250788000001", "Stop promotions", payload="STOP_PROMOTIONS")
    assert reply["context_id"] == wamid  # the last message sent to that user
    body, _ = only_body(webhook_receiver)
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    assert body == {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": METADATA,
                            "contacts": [{"profile": {"name": "Test User"}, "wa_id": "250788000001"}],
                            "messages": [
                                {
                                    "from": "250788000001",
                                    "id": reply["id"],
                                    "timestamp": message["timestamp"],
                                    "type": "button",
                                    "context": {"from": "15550783881", "id": wamid},
                                    "button": {"payload": "STOP_PROMOTIONS", "text": "Stop promotions"},
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    assert message["timestamp"].isdigit()


def test_an_inbound_text_can_name_what_it_replies_to(
    emulator: EmulatorServer, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    emulator.inbound("+250 788 000 002", "STOP", context_id="wamid.ABC", name="Aline")
    body, _ = only_body(webhook_receiver)
    value = body["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Aline"}, "wa_id": "250788000002"}]
    [message] = value["messages"]
    assert message["type"] == "text" and message["text"] == {"body": "STOP"}
    assert message["context"] == {"from": "15550783881", "id": "wamid.ABC"}


def test_a_marketing_stop_is_announced_and_then_applied(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"])
    assert emulator.user_preferences("+250788000001", "stop")["marketing_stopped"] is True
    body, _ = only_body(webhook_receiver)
    preference = body["entry"][0]["changes"][0]["value"]["user_preferences"][0]
    assert body == {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": METADATA,
                            "contacts": [{"wa_id": "250788000001"}],
                            "user_preferences": [
                                {
                                    "wa_id": "250788000001",
                                    "detail": "User requested to stop marketing messages",
                                    "category": "marketing_messages",
                                    "value": "stop",
                                    "timestamp": preference["timestamp"],
                                }
                            ],
                        },
                        "field": "user_preferences",
                    }
                ],
            }
        ],
    }
    assert isinstance(preference["timestamp"], int)
    # MARKETING templates to that user are accepted, then fail with 131050; utility ones still go.
    refused = post(graph, emulator, promo("+250788000001")).json()["messages"][0]["id"]
    fine = post(graph, emulator, welcome(to="+250788000001")).json()["messages"][0]["id"]
    statuses = {s["id"]: s for s in webhook_receiver.items(2)}
    assert statuses[refused]["status"] == "failed" and statuses[refused]["errors"][0]["code"] == 131050
    assert statuses[fine]["status"] == "sent"
    emulator.user_preferences("250788000001", "resume")
    preference = webhook_receiver.items(2, key="user_preferences")[1]
    assert preference["value"] == "resume"
    again = post(graph, emulator, promo("+250788000001")).json()["messages"][0]["id"]
    assert {s["id"]: s for s in webhook_receiver.items(3)}[again]["status"] == "sent"


def test_template_status_events_carry_metas_extras(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    assert emulator.template_event("welcome_message", "en", "PAUSED")["status"] == "PAUSED"
    body, _ = only_body(webhook_receiver)
    entry = body["entry"][0]
    assert isinstance(entry["time"], int)
    assert body == {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "time": entry["time"],
                "changes": [
                    {
                        "value": {
                            "event": "PAUSED",
                            "message_template_id": 1000000000000001,
                            "message_template_name": "welcome_message",
                            "message_template_language": "en",
                            "reason": "NONE",
                            "message_template_category": "UTILITY",
                            "other_info": {
                                "title": "FIRST_PAUSE",
                                "description": entry["changes"][0]["value"]["other_info"]["description"],
                            },
                        },
                        "field": "message_template_status_update",
                    }
                ],
            }
        ],
    }
    assert_meta_error(post(graph, emulator, welcome()), 132015)  # the registry follows the event
    emulator.template_event("welcome_message", "en", "DISABLED")
    disabled = only_body(webhook_receiver, 1)[0]["entry"][0]["changes"][0]["value"]
    assert disabled["event"] == "DISABLED" and disabled["disable_info"]["disable_date"].isdigit()
    assert disabled["other_info"]["title"] == "DISABLED"
    emulator.template_event(
        "welcome_message", "en", "REINSTATED", other_info={"title": "UNPAUSE", "description": "Back."}
    )
    reinstated = only_body(webhook_receiver, 2)[0]["entry"][0]["changes"][0]["value"]
    assert reinstated["other_info"] == {"title": "UNPAUSE", "description": "Back."}
    assert "disable_info" not in reinstated
    emulator.template_event("welcome_message", "en", "APPROVED")
    assert post(graph, emulator, welcome()).status_code == 200


def test_quality_and_category_updates(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"])
    emulator.template_quality("welcome_message", "en", "RED")
    quality, _ = only_body(webhook_receiver)
    assert quality["entry"][0]["changes"] == [
        {
            "value": {
                "previous_quality_score": "UNKNOWN",
                "new_quality_score": "RED",
                "message_template_id": 1000000000000001,
                "message_template_name": "welcome_message",
                "message_template_language": "en",
            },
            "field": "message_template_quality_update",
        }
    ]
    emulator.template_category("welcome_message", "en", "MARKETING")
    category, _ = only_body(webhook_receiver, 1)
    assert category["entry"][0]["changes"] == [
        {
            "value": {
                "message_template_id": 1000000000000001,
                "message_template_name": "welcome_message",
                "message_template_language": "en",
                "previous_category": "UTILITY",
                "new_category": "MARKETING",
            },
            "field": "template_category_update",
        }
    ]
    listed = graph.get(
        emulator.templates_url(),
        params={"name": "welcome_message", "fields": "quality_score,category,previous_category"},
        headers=emulator.auth_headers,
    ).json()["data"][0]
    assert listed["quality_score"]["score"] == "RED"
    assert listed["category"] == "MARKETING" and listed["previous_category"] == "UTILITY"
    post(graph, emulator, welcome())  # now priced as marketing
    assert webhook_receiver.items(1)[0]["pricing"]["category"] == "marketing"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("templates/no_such/en/status", {"event": "PAUSED"}, 404),
        ("templates/welcome_message/en/status", {"event": "SLEEPING"}, 400),
        ("templates/welcome_message/en/status", {}, 400),
        ("templates/welcome_message/en/quality", {"score": "BLUE"}, 400),
        ("templates/welcome_message/en/category", {"category": "SPAM"}, 400),
        ("user_preferences", {"wa_id": "+250788000001", "value": "pause"}, 400),
        ("user_preferences", {"value": "stop"}, 400),
        ("inbound", {"from": "+250788000001", "type": "image"}, 400),
        ("webhooks/resend", {"last": -1}, 400),
        ("webhooks/resend", {"batch_max": 1001}, 400),
        ("webhooks/resend", {"layout": "zigzag"}, 400),
    ],
)
def test_bad_event_requests_are_refused(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver, path, body, status
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    answer = graph.post(f"{emulator.base_url}/_emulator/{path}", json=body)
    assert answer.status_code == status and answer.json()["error"]


def test_events_without_a_webhook_url_only_change_state(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.user_preferences("+250788000001", "stop")
    emulator.template_event("welcome_message", "en", "PAUSED")
    assert_meta_error(post(graph, emulator, welcome()), 132015)
    assert emulator.stats()["webhooks"]["attempts"] == 0
    with pytest.raises(ValueError, match="webhook_url"):
        emulator.resend_webhooks()

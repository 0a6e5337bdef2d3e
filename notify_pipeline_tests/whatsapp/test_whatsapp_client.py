"""The Cloud API client against the emulator, over real HTTP: success, every error class,
limits, faults, template paging and signed webhooks."""

from __future__ import annotations

import asyncio
import json

import pytest

from notify_pipeline.whatsapp import webhooks
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient, TemplateListError
from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.messages import Button, send_request, template_message, text_message
from notify_pipeline_tests.support.emulator_fixtures import EMULATOR_APP_SECRET
from notify_pipeline_tests.support.engine import client_settings as settings_for
from notify_pipeline_tests.support.ports import free_port


async def send_all(settings: ClientSettings, payloads: list[dict]) -> list:
    async with CloudApiClient(settings) as client:
        return await asyncio.gather(*(client.send(p) for p in payloads))


def send(settings: ClientSettings, payload: dict):
    return asyncio.run(send_all(settings, [payload]))[0]


def welcome(to: str = "+250788000001", notification_id: int = 1) -> dict:
    return send_request(notification_id, template_message(to, "welcome_message", "en", body=["Aline"]))


@pytest.mark.parametrize("transport", ["aiohttp", "httpx", "aiohttp-native"])
def test_template_send_succeeds_with_either_transport(emulator, transport: str) -> None:
    result = send(settings_for(emulator, transport=transport), welcome(notification_id=41))
    assert result.ok
    assert result.wamid.startswith("wamid.")
    assert result.wa_id == "250788000001"
    assert result.http_status == 200
    (message,) = emulator.messages()
    assert message["biz_opaque_callback_data"] == "np1:41"
    assert emulator.stats()["total"] == 1


def test_named_template_with_button_is_accepted(emulator) -> None:
    shipped = template_message(
        "+250788000002", "order_shipped", "en", body=["SKB-1", "today"], buttons=[Button(0, "url", "SKB-1")]
    )
    named = template_message(
        "+250788000003", "order_confirmation", "en", body={"customer_name": "Aline", "order_number": "SKB-1"}
    )
    results = asyncio.run(
        send_all(settings_for(emulator), [send_request(1, shipped), send_request(2, named)])
    )
    assert [r.ok for r in results] == [True, True]


def test_paced_template_reports_its_message_status(emulator) -> None:
    emulator.set_template_paced("welcome_message", "en", True)
    assert send(settings_for(emulator), welcome()).message_status == "accepted"


def test_wrong_token_is_an_auth_error_and_the_token_never_shows(emulator) -> None:
    settings = settings_for(emulator, access_token="stolen-token-123")
    client_repr = repr(CloudApiClient(settings))
    result = send(settings, welcome())
    assert not result.ok
    assert (result.error.code, result.error.http_status, result.error.error_class) == (
        190,
        401,
        ErrorClass.AUTH,
    )
    assert "stolen-token-123" not in client_repr + repr(settings) + result.error.describe()


@pytest.mark.parametrize(
    ("fault", "error_class", "label"),
    [
        ({"code": 131000}, ErrorClass.TRANSIENT, "131000"),
        ({"code": 131016}, ErrorClass.TRANSIENT, "131016"),
        ({"code": 131026}, ErrorClass.PERMANENT, "131026"),
        ({"code": 368}, ErrorClass.ACCOUNT, "368"),
        ({"code": 131047}, ErrorClass.OUTSIDE_WINDOW, "131047"),
        ({"code": 131056}, ErrorClass.THROTTLED, "131056"),
        ({"code": 0}, ErrorClass.AUTH, "0"),
        ({"mode": "non_json", "http_status": 503}, ErrorClass.TRANSIENT, "http_503"),
        ({"mode": "non_json", "http_status": 429}, ErrorClass.TRANSIENT, "http_429"),
    ],
)
def test_each_error_class_from_injected_faults(emulator, fault, error_class, label) -> None:
    emulator.add_fault(**fault)
    result = send(settings_for(emulator), welcome())
    assert not result.ok
    assert result.error.error_class is error_class
    assert result.error.label == label


def test_template_problems_come_back_classified(emulator) -> None:
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    missing = send_request(1, template_message("+250788000001", "no_such_template", "en"))
    wrong_count = send_request(2, template_message("+250788000001", "ride_arriving", "en", body=["Jean"]))
    results = asyncio.run(send_all(settings_for(emulator), [welcome(), missing, wrong_count]))
    assert [r.error.code for r in results] == [132015, 132001, 132000]
    assert {r.error.error_class for r in results} == {ErrorClass.TEMPLATE}
    assert "does not match the expected number of params" in results[2].error.details


def test_throughput_limit_answers_130429_as_throttled(emulator) -> None:
    emulator.configure(throughput_per_s=5, throughput_burst=2, pair_burst=1000, pair_interval_s=0.001)
    payloads = [welcome(to=f"+25078800{i:04d}", notification_id=i) for i in range(20)]
    results = asyncio.run(send_all(settings_for(emulator), payloads))
    throttled = [r for r in results if not r.ok]
    assert 0 < len(throttled) < 20
    assert {r.error.code for r in throttled} == {130429}
    assert {r.error.error_class for r in throttled} == {ErrorClass.THROTTLED}


def test_pair_limit_answers_131056_after_the_burst(emulator) -> None:
    emulator.configure(pair_burst=3, throughput_per_s=1000)
    results = asyncio.run(send_all(settings_for(emulator), [welcome(notification_id=i) for i in range(6)]))
    codes = [r.error.code if r.error else None for r in results]
    assert codes.count(None) == 3
    assert codes.count(131056) == 3


@pytest.mark.parametrize("transport", ["aiohttp", "httpx", "aiohttp-native"])
def test_timeouts_and_refused_connections_are_transient(emulator, transport: str) -> None:
    emulator.add_fault(mode="timeout", hold_s=5)
    result = send(settings_for(emulator, read_timeout_s=0.3, transport=transport), welcome())
    assert (result.error.kind, result.error.error_class) == ("timeout_ambiguous", ErrorClass.TRANSIENT)
    refused = send(
        ClientSettings(
            base_url=f"http://127.0.0.1:{free_port()}",
            phone_number_id="1",
            access_token="t",
            connect_timeout_s=1,
            transport=transport,
        ),
        welcome(),
    )
    assert refused.error.kind == "connection", refused.error.message
    assert refused.error.error_class is ErrorClass.TRANSIENT


def test_share_of_requests_fails_and_the_rest_succeed(emulator) -> None:
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=131000, share=0.5, seed=7)
    results = asyncio.run(send_all(settings_for(emulator), [welcome(notification_id=i) for i in range(200)]))
    failures = sum(not r.ok for r in results)
    assert 60 < failures < 140
    assert emulator.stats()["total"] == 200 - failures


def test_template_listing_follows_every_page(emulator) -> None:
    async def listed(page_size: int) -> list[dict]:
        async with CloudApiClient(settings_for(emulator)) as client:
            return [t async for t in client.list_templates("102290129340398", page_size=page_size)]

    every = {(t["name"], t["language"]) for t in emulator.templates()}
    for page_size in (1, 5, 100):
        found = asyncio.run(listed(page_size))
        assert {(t["name"], t["language"]) for t in found} == every
        assert len(found) == len(every), "no template twice across pages"
    assert all("status" in t and "category" in t and "components" in t for t in found)


def test_template_listing_with_a_bad_token_raises_a_classified_error(emulator) -> None:
    async def listed() -> None:
        async with CloudApiClient(settings_for(emulator, access_token="wrong")) as client:
            async for _ in client.list_templates("102290129340398"):
                pass

    with pytest.raises(TemplateListError) as caught:
        asyncio.run(listed())
    assert caught.value.error.error_class is ErrorClass.AUTH


def test_status_webhooks_are_signed_and_carry_the_notification_id(emulator, webhook_receiver) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent", "delivered", "read"])
    result = send(settings_for(emulator), welcome(notification_id=77))
    statuses = webhook_receiver.statuses(3)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {result.wamid}
    assert {s["biz_opaque_callback_data"] for s in statuses} == {"np1:77"}
    for headers, body in webhook_receiver.received:
        signature = {k.lower(): v for k, v in headers.items()}[webhooks.SIGNATURE_HEADER.lower()]
        assert webhooks.verify(EMULATOR_APP_SECRET, body, signature)
        assert not webhooks.verify("another-secret", body, signature)
        assert not webhooks.verify(EMULATOR_APP_SECRET, body + b" ", signature)


def test_async_failure_arrives_as_a_failed_webhook(emulator, webhook_receiver) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=[])
    emulator.add_fault(mode="async", code=131026)
    result = send(settings_for(emulator), welcome(notification_id=5))
    assert result.ok, "Meta accepted the POST; the failure comes later"
    (status,) = webhook_receiver.statuses(1)
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131026
    assert status["biz_opaque_callback_data"] == "np1:5"


def test_text_outside_the_24_hour_window_fails_by_webhook(emulator, webhook_receiver) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=[])
    result = send(settings_for(emulator), send_request(9, text_message("+250788000009", "hello")))
    assert result.ok
    (status,) = webhook_receiver.statuses(1)
    assert status["errors"][0]["code"] == 131047
    body = json.dumps(status)
    assert "250788000009" in body

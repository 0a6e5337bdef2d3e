"""The emulator's send endpoint over real HTTP: success body, token check, envelope errors,
and Meta's error shape for everything malformed."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline_tests.support.emulator import assert_meta_error, post
from notify_pipeline_tests.support.emulator_fixtures import text_message, welcome


def test_a_valid_template_send_gets_metas_success_body(emulator: EmulatorServer, graph: httpx.Client) -> None:
    response = post(graph, emulator, welcome(to="+1 (650) 555-1234", callback="notification-1"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"messaging_product", "contacts", "messages"}
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+1 (650) 555-1234", "wa_id": "16505551234"}]
    [message] = body["messages"]
    assert set(message) == {"id"}  # message_status only for paced templates
    assert re.fullmatch(r"wamid\.[A-Za-z0-9+/=]{20,}", message["id"])


def test_wamids_are_unique_and_recorded(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(limits_enabled=False)  # 20 sends at once exceed Meta's burst
    ids = {post(graph, emulator, welcome(callback=f"n{i}")).json()["messages"][0]["id"] for i in range(20)}
    assert len(ids) == 20
    recorded = emulator.messages()
    assert {m["wamid"] for m in recorded} == ids
    first = recorded[0]
    assert first["wa_id"] == "250788000001" and first["to"] == "+250788000001"
    assert first["type"] == "template"
    assert (first["template_name"], first["template_language"]) == ("welcome_message", "en")
    assert first["biz_opaque_callback_data"] == "n0"
    assert first["phone_number_id"] == emulator.phone_number_id
    assert first["received_at"] > 0


def test_text_sends_are_accepted(emulator: EmulatorServer, graph: httpx.Client) -> None:
    response = post(graph, emulator, text_message("Hello there", to="250788000002"))
    assert response.status_code == 200
    assert response.json()["contacts"] == [{"input": "250788000002", "wa_id": "250788000002"}]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic ZGV2LXRva2Vu"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "basic-scheme", "empty"],
)
def test_a_missing_or_wrong_token_gets_401_and_code_190(
    emulator: EmulatorServer, graph: httpx.Client, headers: dict[str, str]
) -> None:
    response = post(graph, emulator, welcome(), headers=headers)
    assert_meta_error(response, 190)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert emulator.stats()["by_code"] == {"190": 1}
    assert emulator.stats()["total"] == 0


def test_the_token_check_accepts_any_case_of_the_bearer_scheme(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    response = post(graph, emulator, welcome(), headers={"Authorization": f"bearer {emulator.token}"})
    assert response.status_code == 200


def test_a_token_changed_at_run_time_is_the_one_accepted(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.configure(token="rotated")
    assert_meta_error(post(graph, emulator, welcome()), 190)
    assert post(graph, emulator, welcome(), headers={"Authorization": "Bearer rotated"}).status_code == 200
    assert emulator.config()["token"] == "<set>"  # never shown


def _without(key: str) -> dict:
    body = text_message()
    del body[key]
    return body


ENVELOPE_ERRORS = [
    ("not-json", b"{not json", 100, "not valid JSON"),
    ("array", b"[1, 2]", 100, "JSON object"),
    ("empty-body", b"", 100, "not valid JSON"),
    ("no-messaging-product", _without("messaging_product"), 100, "messaging_product is required"),
    ("wrong-messaging-product", {**text_message(), "messaging_product": "sms"}, 100, "messaging_product"),
    ("unknown-key", {**text_message(), "priority": "high"}, 100, "priority"),
    ("group-recipient", {**text_message(), "recipient_type": "group"}, 100, "recipient_type"),
    ("no-to", _without("to"), 131008, "to is required"),
    ("empty-to", {**text_message(), "to": ""}, 131008, "to is required"),
    ("to-not-a-number", {**text_message(), "to": "alice"}, 131009, "to"),
    ("to-too-short", {**text_message(), "to": "+123"}, 131009, "to"),
    ("to-too-long", {**text_message(), "to": "+1234567890123456"}, 131009, "to"),
    ("to-as-integer", {**text_message(), "to": 250788000001}, 131009, "to"),
    ("no-type", _without("type"), 131008, "type is required"),
    ("unsupported-type", {**text_message(), "type": "fax", "fax": {}}, 131051, "fax"),
    ("no-object-for-type", _without("text"), 131008, "text is required"),
    ("object-not-a-dict", {**text_message(), "text": "hello"}, 100, "text"),
    ("no-text-body", {**text_message(), "text": {}}, 131008, "text['body']"),
    ("empty-text-body", {**text_message(), "text": {"body": ""}}, 131008, "text['body']"),
    ("text-body-not-string", {**text_message(), "text": {"body": 42}}, 100, "text['body']"),
    ("text-too-long", text_message("x" * 4097), 100, "4096"),
    (
        "preview-url-not-bool",
        {**text_message(), "text": {"body": "hi", "preview_url": "yes"}},
        100,
        "preview_url",
    ),
    (
        "callback-data-not-string",
        {**text_message(), "biz_opaque_callback_data": 7},
        100,
        "biz_opaque_callback_data",
    ),
    ("callback-data-too-long", {**text_message(), "biz_opaque_callback_data": "x" * 513}, 100, "512"),
    ("context-without-id", {**text_message(), "context": {}}, 100, "context"),
    ("image-without-id-or-link", {**text_message(), "type": "image", "image": {}}, 131008, "image"),
    (
        "template-without-name",
        {**text_message(), "type": "template", "template": {"language": {"code": "en"}}},
        131008,
        "template['name']",
    ),
    (
        "template-without-language",
        {**text_message(), "type": "template", "template": {"name": "welcome_message"}},
        131008,
        "language",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "details"), [e[1:] for e in ENVELOPE_ERRORS], ids=[e[0] for e in ENVELOPE_ERRORS]
)
def test_envelope_mistakes_get_metas_code(
    emulator: EmulatorServer, graph: httpx.Client, body: Any, code: int, details: str
) -> None:
    assert_meta_error(post(graph, emulator, body), code, details)
    stats = emulator.stats()
    assert stats["total"] == 0 and stats["rejected"] == 1
    assert stats["by_code"] == {str(code): 1}


def test_a_text_of_exactly_4096_characters_is_accepted(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert post(graph, emulator, text_message("x" * 4096)).status_code == 200


def test_other_message_types_meta_supports_are_accepted(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    body = {**text_message(), "type": "image", "image": {"link": "https://example.invalid/a.png"}}
    del body["text"]
    assert post(graph, emulator, body).status_code == 200


def test_a_non_numeric_phone_number_id_is_an_unknown_graph_object(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    response = graph.post(emulator.messages_url("my-phone"), json=welcome(), headers=emulator.auth_headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and error["type"] == "GraphMethodException" and error["error_subcode"] == 33
    assert "my-phone" in error["message"]


def test_a_configured_phone_number_id_refuses_the_others(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.configure(phone_number_id="111")
    assert (
        graph.post(emulator.messages_url("222"), json=welcome(), headers=emulator.auth_headers).status_code
        == 400
    )
    assert (
        graph.post(emulator.messages_url("111"), json=welcome(), headers=emulator.auth_headers).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v23.0/106540352242922/messages"),
        ("POST", "/v23.0/106540352242922/unknown"),
        ("GET", "/"),
        ("GET", "/favicon.ico"),
        ("POST", "/106540352242922/messages"),  # no version
        ("DELETE", "/v23.0/102290129340398/message_templates"),
        ("GET", "/v23.0/../../etc/passwd"),
    ],
)
def test_unknown_routes_get_a_graph_error_not_a_traceback(
    emulator: EmulatorServer, graph: httpx.Client, method: str, path: str
) -> None:
    response = graph.request(method, emulator.base_url + path, headers=emulator.auth_headers, content=b"{}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and error["fbtrace_id"]
    assert "Traceback" not in response.text


def test_unknown_routes_check_the_token_first(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert_meta_error(graph.get(emulator.base_url + "/v23.0/123/whatever"), 190)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00garbage",
        b'{"messaging_product": "whatsapp", "to": "+250788000001", "type": "text", "text": {"body": "\\ud800"}}',
        b'{"messaging_product": "whatsapp", "\\udc00": 1}',
        b'{"messaging_product": "whatsapp", "to": "+250788000001", "type": "\\ud800"}',
    ],
    ids=["not-utf8", "lone-surrogate-in-text", "lone-surrogate-key", "lone-surrogate-type"],
)
def test_byte_level_garbage_gets_metas_shape(
    emulator: EmulatorServer, graph: httpx.Client, raw: bytes
) -> None:
    response = post(graph, emulator, raw)
    assert response.status_code in (200, 400)
    assert "Traceback" not in response.text
    if response.status_code == 400:
        assert_meta_error(response, response.json()["error"]["code"])
    assert emulator.stats()["internal_errors"] == 0


def test_an_oversized_body_is_refused_with_code_100(emulator: EmulatorServer, graph: httpx.Client) -> None:
    response = post(graph, emulator, b'{"x": "' + b"a" * (2 << 20) + b'"}')
    assert_meta_error(response, 100, "larger than")


def test_the_token_never_appears_in_answers(emulator: EmulatorServer, graph: httpx.Client) -> None:
    response = post(graph, emulator, welcome(), headers={"Authorization": "Bearer secret-looking-token"})
    assert "secret-looking-token" not in response.text
    assert all("secret-looking-token" not in v for v in response.headers.values())


def test_wamid_encodes_nothing_secret(emulator: EmulatorServer, graph: httpx.Client) -> None:
    wamid = post(graph, emulator, welcome()).json()["messages"][0]["id"]
    decoded = base64.b64decode(wamid.removeprefix("wamid.")).decode()
    assert decoded.startswith("250788000001:")
    assert emulator.token not in decoded


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "messaging_product": st.sampled_from(["whatsapp", "sms"]) | JSON_VALUES,
        "to": st.sampled_from(["+250788000001", "123", ""]) | JSON_VALUES,
        "type": st.sampled_from(["text", "template", "image", "fax"]) | JSON_VALUES,
        "text": st.fixed_dictionaries({}, optional={"body": JSON_VALUES}) | JSON_VALUES,
        "template": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["welcome_message", "order_confirmation", "otp_code"]) | JSON_VALUES,
                "language": st.fixed_dictionaries(
                    {}, optional={"code": st.sampled_from(["en", "fr"]) | JSON_VALUES}
                ),
                "components": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "type": st.sampled_from(["header", "body", "button"]) | JSON_VALUES,
                            "sub_type": st.sampled_from(["url", "quick_reply"]) | JSON_VALUES,
                            "index": st.sampled_from(["0", 0, "x"]) | JSON_VALUES,
                            "parameters": st.lists(JSON_VALUES, max_size=3),
                        },
                    ),
                    max_size=3,
                )
                | JSON_VALUES,
            },
        ),
        "biz_opaque_callback_data": JSON_VALUES,
        "context": JSON_VALUES,
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=ENVELOPES | JSON_VALUES)
def test_any_json_gets_either_success_or_metas_error_shape(
    emulator: EmulatorServer, graph: httpx.Client, body: Any
) -> None:
    emulator.configure(limits_enabled=False)
    response = post(graph, emulator, json.dumps(body).encode())
    if response.status_code == 200:
        assert response.json()["messages"][0]["id"].startswith("wamid.")
    else:
        error = assert_meta_error(response, response.json()["error"]["code"])
        assert error["code"] != 1, error  # code 1 would mean the emulator itself failed
    assert emulator.stats()["internal_errors"] == 0

"""Requests to the Cloud API emulator and checks of its answers: a send, Meta's error body, the
webhook counters once settled, and template components filled the way each demo template wants."""

from __future__ import annotations

import time
from typing import Any

import httpx

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.whatsapp import errors
from notify_pipeline_tests.support.emulator_fixtures import body_params


def post(graph: httpx.Client, emulator: EmulatorServer, body: Any, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", emulator.auth_headers)
    if isinstance(body, bytes | str):
        return graph.post(emulator.messages_url(), content=body, headers=headers, **kwargs)
    return graph.post(emulator.messages_url(), json=body, headers=headers, **kwargs)


def assert_meta_error(response: httpx.Response, code: int, details: str | None = None) -> dict:
    """Meta's error body, with the title and HTTP status errors.py gives for the code."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    entry = errors.lookup(code)
    assert entry is not None
    assert response.status_code == entry.http_status, body
    assert error["code"] == code, body
    assert error["message"] == f"(#{code}) {entry.title}"
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["error_data"]["details"], str) and error["error_data"]["details"]
    assert isinstance(error["fbtrace_id"], str) and len(error["fbtrace_id"]) >= 16
    assert set(error) <= {"message", "type", "code", "error_data", "error_subcode", "fbtrace_id"}
    if details is not None:
        assert details in error["error_data"]["details"], error["error_data"]["details"]
    assert "Traceback" not in response.text
    return error


def wait_for_webhooks(emulator: EmulatorServer, timeout: float = 5.0) -> dict:
    """The webhook counters once nothing is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = emulator.stats()["webhooks"]
        if stats["pending"] == 0 and stats["attempts"]:
            return stats
        time.sleep(0.01)
    raise AssertionError(f"webhooks still pending: {emulator.stats()['webhooks']}")


def named(name: str, value: str) -> dict[str, str]:
    return {"type": "text", "parameter_name": name, "text": value}


def url_button(value: str, index: str = "0") -> dict[str, Any]:
    return {
        "type": "button",
        "sub_type": "url",
        "index": index,
        "parameters": [{"type": "text", "text": value}],
    }


ORDER_SHIPPED_OK = [body_params("SKB-1", "tomorrow"), url_button("SKB-1")]
ORDER_CONFIRMATION_OK = [
    {"type": "body", "parameters": [named("customer_name", "Aline"), named("order_number", "SKB-1")]}
]


WELL_FILLED = [
    ("welcome_message", "en", [body_params("Aline")]),
    ("welcome_message", "fr", [body_params("Aline")]),
    ("order_shipped", "en", ORDER_SHIPPED_OK),
    ("order_confirmation", "en", ORDER_CONFIRMATION_OK),
    # named parameters in any order
    (
        "order_confirmation",
        "en",
        [{"type": "body", "parameters": ORDER_CONFIRMATION_OK[0]["parameters"][::-1]}],
    ),
    ("otp_code", "en", [body_params("123456"), url_button("123456")]),
    ("wallet_low_balance", "en", [body_params("RWF 500", "https://example.invalid/top-up")]),
    (
        "basket_contribution_due",
        "en",
        [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Aline"},
                    {
                        "type": "currency",
                        "currency": {
                            "fallback_value": "RWF 5,000",
                            "code": "RWF",
                            "amount_1000": 5000000,
                        },
                    },
                    {"type": "date_time", "date_time": {"fallback_value": "June 1"}},
                ],
            }
        ],
    ),
]

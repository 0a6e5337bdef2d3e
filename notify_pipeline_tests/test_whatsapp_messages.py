"""Building send requests and checking them against template definitions. Pure unit tests."""

from __future__ import annotations

import pytest

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.whatsapp.messages import Button, send_request, template_message, text_message
from notify_pipeline.whatsapp.templates import expected_parameters, parameter_problems

CATALOG = {(t["name"], t["language"]): t for t in load_template_catalog()}


def test_positional_template_with_header_body_and_buttons() -> None:
    message = template_message(
        "+250788000001",
        "order_shipped",
        "en_US",
        header=["Order"],
        body=["SKB-1", "tomorrow"],
        buttons=[Button(0, "url", "SKB-1"), Button(1, "quick_reply", "STOP"), Button(2, "copy_code", "C0DE")],
    )
    template = message["template"]
    assert template["language"] == {"code": "en_US"}
    header, body, url, reply, code = template["components"]
    assert header == {"type": "header", "parameters": [{"type": "text", "text": "Order"}]}
    assert body["parameters"] == [{"type": "text", "text": "SKB-1"}, {"type": "text", "text": "tomorrow"}]
    assert url == {
        "type": "button",
        "sub_type": "url",
        "index": "0",
        "parameters": [{"type": "text", "text": "SKB-1"}],
    }
    assert reply["parameters"] == [{"type": "payload", "payload": "STOP"}]
    assert code["parameters"] == [{"type": "coupon_code", "coupon_code": "C0DE"}]


def test_named_parameters_and_media_header() -> None:
    message = template_message(
        "+250788000001",
        "order_confirmation",
        "en",
        header_media=("image", {"link": "https://example.invalid/a.png"}),
        body={"customer_name": "Aline", "order_number": "SKB-1"},
    )
    header, body = message["template"]["components"]
    assert header["parameters"] == [{"type": "image", "image": {"link": "https://example.invalid/a.png"}}]
    assert body["parameters"][0] == {"type": "text", "parameter_name": "customer_name", "text": "Aline"}


def test_template_without_variables_omits_components_and_text_message() -> None:
    assert "components" not in template_message("+1", "hello", "en")["template"]
    assert text_message("+1", "hi")["text"] == {"body": "hi", "preview_url": False}


def test_send_request_carries_the_notification_id_for_receipts() -> None:
    payload = {"messaging_product": "whatsapp", "to": "+250788000001", "type": "text", "text": {"body": "x"}}
    request = send_request(42, payload)
    assert request["biz_opaque_callback_data"] == "42"
    assert request["to"] == "+250788000001"
    with pytest.raises(ValueError, match="notification 7 has no sendable payload"):
        send_request(7, {"to": "+1", "type": "image"})


def test_expected_parameters_read_from_definitions() -> None:
    shipped = expected_parameters(CATALOG[("order_shipped", "en")])
    assert (shipped.body, shipped.buttons, shipped.total) == (("1", "2"), {0: ("1",)}, 3)
    confirmation = expected_parameters(CATALOG[("order_confirmation", "en")])
    assert confirmation.named and confirmation.body == ("customer_name", "order_number")
    assert confirmation.header == ()


@pytest.mark.parametrize(
    ("key", "kwargs", "problems"),
    [
        (("welcome_message", "en"), {"body": ["Aline"]}, []),
        (
            ("welcome_message", "en"),
            {},
            ["body: number of localizable_params (0) does not match the expected number of params (1)"],
        ),
        (("welcome_message", "en"), {"body": ["a", "b"]}, ["body: number of localizable_params (2)"]),
        (
            ("welcome_message", "en"),
            {"body": ["a"], "header": ["x"]},
            ["header: number of localizable_params (1)"],
        ),
        (("order_shipped", "en"), {"body": ["a", "b"]}, ["buttons[0]: number of localizable_params (0)"]),
        (("order_confirmation", "en"), {"body": {"customer_name": "a", "order_number": "b"}}, []),
        (
            ("order_confirmation", "en"),
            {"body": {"customer_name": "a", "order": "b"}},
            ["missing order_number"],
        ),
    ],
)
def test_parameter_problems(key, kwargs, problems) -> None:
    components = template_message("+1", key[0], key[1], **kwargs)["template"].get("components")
    found = parameter_problems(CATALOG[key], components)
    assert len(found) == len(problems)
    for expected, actual in zip(problems, found, strict=True):
        assert expected in actual

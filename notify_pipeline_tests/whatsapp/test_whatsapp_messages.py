"""Building send requests and checking them against template definitions. Pure unit tests."""

from __future__ import annotations

import pytest

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.whatsapp.messages import Button, send_request, template_message, text_message
from notify_pipeline.whatsapp.templates import (
    ParameterProblem,
    TemplateDefinitionError,
    parameter_problems,
    parse_spec,
)

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
    assert request["biz_opaque_callback_data"] == "np1:42"
    assert request["to"] == "+250788000001"
    with pytest.raises(ValueError, match="notification 7 has no sendable payload"):
        send_request(7, {"to": "+1", "type": "image"})


def test_specs_read_from_definitions() -> None:
    shipped = parse_spec(CATALOG[("order_shipped", "en")])
    assert not shipped.named and shipped.header is None
    assert shipped.body is not None and shipped.body.keys == ("1", "2")
    assert {i: (b.kind, b.params) for i, b in shipped.buttons.items()} == {0: ("URL", 1)}
    confirmation = parse_spec(CATALOG[("order_confirmation", "en")])
    assert confirmation.named and confirmation.body is not None
    assert confirmation.body.keys == ("customer_name", "order_number")
    assert confirmation.header is not None and confirmation.header.keys == ()
    media = parse_spec(
        {"components": [{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Hi"}]}
    )
    assert media.header is not None and media.header.media == "DOCUMENT"
    # positional parameter i fills {{i}} wherever it appears; the filled length counts every use
    repeated = parse_spec({"components": [{"type": "BODY", "text": "{{2}} and {{1}}, {{2}}"}]})
    assert repeated.body is not None and repeated.body.keys == ("1", "2")
    assert repeated.body.filled_len({"1": "ab", "2": "xyz"}) == len("xyz and ab, xyz")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"components": [{"type": "BODY", "text": "{{1}} {{3}}"}]}, "POSITIONAL"),
        ({"parameter_format": "NAMED", "components": [{"type": "BODY", "text": "{{1}}"}]}, "NAMED"),
        ({"components": [{"type": "SIDEBAR"}]}, "SIDEBAR"),
        ({"components": {"type": "BODY"}}, "list of objects"),
        (
            {"components": [{"type": "BUTTONS", "buttons": [{"type": "URL", "url": "{{1}}/{{2}}"}]}]},
            "URL button",
        ),
    ],
)
def test_unreadable_definitions_raise(definition, message) -> None:
    with pytest.raises(TemplateDefinitionError, match=message):
        parse_spec(definition)
    with pytest.raises(TemplateDefinitionError, match=message):
        parameter_problems(definition, [])


COUNT = "number of localizable_params"


@pytest.mark.parametrize(
    ("key", "kwargs", "problems"),
    [
        (("welcome_message", "en"), {"body": ["Aline"]}, []),
        (
            ("welcome_message", "en"),
            {},
            [(132000, f"body: {COUNT} (0) does not match the expected number of params (1)")],
        ),
        (("welcome_message", "en"), {"body": ["a", "b"]}, [(132000, f"body: {COUNT} (2)")]),
        (("welcome_message", "en"), {"body": ["a"], "header": ["x"]}, [(132000, f"header: {COUNT} (1)")]),
        # every component is checked: the header and the body are both wrong
        (
            ("welcome_message", "en"),
            {"header": ["x"]},
            [(132000, f"header: {COUNT} (1)"), (132000, f"body: {COUNT} (0)")],
        ),
        (("order_shipped", "en"), {"body": ["a", "b"]}, [(132000, f"button at index 0: {COUNT} (0)")]),
        (
            ("order_shipped", "en"),
            {"body": ["a", "b"], "buttons": [Button(0, "quick_reply", "x")]},
            [(132012, "sub_type quick_reply does not match the template's URL button")],
        ),
        (("order_confirmation", "en"), {"body": {"customer_name": "a", "order_number": "b"}}, []),
        (
            ("order_confirmation", "en"),
            {"body": {"customer_name": "a", "order": "b"}},
            [(132000, "body: parameter_name (order) is not a variable of this template")],
        ),
        (("order_confirmation", "en"), {"body": ["a", "b"]}, [(132000, "parameter_name is required")]),
        (("welcome_message", "en"), {"body": ["two\nlines"]}, [(132018, "new-line/tab")]),
        (("welcome_message", "en"), {"body": ["x" * 1024]}, [(132005, "the limit is 1024")]),
        (("welcome_message", "en"), {"body": [" "]}, [(131008, "text is required")]),
    ],
)
def test_parameter_problems(key, kwargs, problems) -> None:
    components = template_message("+1", key[0], key[1], **kwargs)["template"].get("components", [])
    found = parameter_problems(CATALOG[key], components)
    assert [problem.code for problem in found] == [code for code, _ in problems]
    for (_, details), problem in zip(problems, found, strict=True):
        assert details in problem.details
        assert str(problem) == f"(#{problem.code}) {problem.details}"


def test_a_malformed_component_list_is_one_problem() -> None:
    definition = CATALOG[("welcome_message", "en")]
    assert parameter_problems(definition, None) == [
        ParameterProblem(100, "Param template['components'] must be an array.")
    ]
    two_bodies = [{"type": "body", "parameters": []}, {"type": "body", "parameters": []}]
    assert [p.code for p in parameter_problems(definition, two_bodies)] == [100]

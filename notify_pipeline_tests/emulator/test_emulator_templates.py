"""Template sends against the emulator's registry (132001, 132015, 132016, 132000, ...), run-time
status changes, and the Graph template list with paging, fields and status filter."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.engine.policy import decide
from notify_pipeline_tests.support.emulator import WELL_FILLED, assert_meta_error, named, post, url_button
from notify_pipeline_tests.support.emulator_fixtures import body_params, template_message, welcome
from notify_pipeline_tests.support.policy import CONFIG, DAY_IN_KIGALI, KIGALI, registry
from notify_pipeline_tests.support.policy import row as policy_row
from notify_pipeline_tests.support.policy import template as policy_template


@pytest.mark.parametrize(("name", "language", "components"), WELL_FILLED)
def test_well_filled_templates_are_accepted(
    emulator: EmulatorServer, graph: httpx.Client, name: str, language: str, components: list
) -> None:
    response = post(graph, emulator, template_message(name, language, components))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("name", "language", "code", "details"),
    [
        ("no_such_template", "en", 132001, "template name (no_such_template) does not exist in en"),
        ("welcome_message", "de", 132001, "template name (welcome_message) does not exist in de"),
        ("welcome_message", "en_US", 132001, "does not exist in en_US"),  # the language must match exactly
        ("loyalty_points", "en", 132001, "template name (loyalty_points) does not exist in en"),  # PENDING
        ("spring_sale", "en", 132015, "paused"),
        ("legacy_reminder", "en", 132016, "disabled"),
    ],
)
def test_unusable_templates_get_metas_codes(
    emulator: EmulatorServer, graph: httpx.Client, name: str, language: str, code: int, details: str
) -> None:
    response = post(graph, emulator, template_message(name, language, [body_params("x")]))
    assert_meta_error(response, code, details)


COUNT_ERRORS = [
    ("body-missing", "welcome_message", [], "body: number of localizable_params (0) does not match the expected number of params (1)"),
    ("body-too-many", "welcome_message", [body_params("a", "b")], "body: number of localizable_params (2) does not match the expected number of params (1)"),
    ("header-on-template-without-header-vars", "wallet_low_balance", [{"type": "header", "parameters": [{"type": "text", "text": "x"}]}, body_params("a", "b")], "header: number of localizable_params (1) does not match the expected number of params (0)"),
    ("button-missing", "order_shipped", [body_params("SKB-1", "tomorrow")], "button at index 0: number of localizable_params (0) does not match the expected number of params (1)"),
    ("button-without-params", "order_shipped", [body_params("SKB-1", "tomorrow"), {"type": "button", "sub_type": "url", "index": "0", "parameters": []}], "button at index 0: number of localizable_params (0)"),
    ("button-not-in-template", "welcome_message", [body_params("a"), url_button("x", index="1")], "button at index 1: number of localizable_params (1) does not match the expected number of params (0)"),
    ("named-missing-name", "order_confirmation", [body_params("Aline", "SKB-1")], "parameter_name is required"),
    ("named-unknown-name", "order_confirmation", [{"type": "body", "parameters": [named("customer_name", "A"), named("order_id", "B")]}], "parameter_name (order_id) is not a variable"),
    ("named-twice", "order_confirmation", [{"type": "body", "parameters": [named("customer_name", "A"), named("customer_name", "B")]}], "given twice"),
    ("named-too-few", "order_confirmation", [{"type": "body", "parameters": [named("customer_name", "A")]}], "body: number of localizable_params (1) does not match the expected number of params (2)"),
    ("positional-with-names", "welcome_message", [{"type": "body", "parameters": [named("name", "A")]}], "parameter_format NAMED"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "components", "details"), [e[1:] for e in COUNT_ERRORS], ids=[e[0] for e in COUNT_ERRORS]
)
def test_parameter_mismatches_get_132000(
    emulator: EmulatorServer, graph: httpx.Client, name: str, components: list, details: str
) -> None:
    assert_meta_error(post(graph, emulator, template_message(name, "en", components)), 132000, details)


def test_omitting_components_of_a_template_with_variables_is_a_count_mismatch(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    assert_meta_error(post(graph, emulator, template_message("welcome_message")), 132000, "body: number")


PARAMETER_ERRORS = [
    ("newline", [body_params("Ali\nne")], 132018, "new-line/tab"),
    ("tab", [body_params("Ali\tne")], 132018, "new-line/tab"),
    ("five-spaces", [body_params("Ali     ne")], 132018, "4 consecutive spaces"),
    ("empty-text", [body_params("")], 131008, "text is required"),
    ("blank-text", [body_params("   ")], 131008, "text is required"),
    ("text-missing", [{"type": "body", "parameters": [{"type": "text"}]}], 131008, "text is required"),
    (
        "wrong-param-type",
        [{"type": "body", "parameters": [{"type": "image", "image": {"link": "x"}}]}],
        132012,
        "does not match",
    ),
    ("param-not-object", [{"type": "body", "parameters": ["Aline"]}], 100, "must be an object"),
    ("too-long-once-filled", [body_params("x" * 1024)], 132005, "1024"),
    ("unknown-component", [{"type": "footer", "parameters": []}], 100, "header, body, button"),
    ("two-bodies", [body_params("a"), body_params("b")], 100, "more than one body"),
    ("components-not-list", {"type": "body"}, 100, "components"),
    ("parameters-not-list", [{"type": "body", "parameters": "Aline"}], 100, "parameters"),
]


@pytest.mark.parametrize(
    ("components", "code", "details"), [e[1:] for e in PARAMETER_ERRORS], ids=[e[0] for e in PARAMETER_ERRORS]
)
def test_bad_parameter_values_get_metas_codes(
    emulator: EmulatorServer, graph: httpx.Client, components: Any, code: int, details: str
) -> None:
    assert_meta_error(
        post(graph, emulator, template_message("welcome_message", "en", components)), code, details
    )


BUTTON_ERRORS = [
    ("index-as-integer", {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "x"}]}, 100, "index"),
    ("index-missing", {"type": "button", "sub_type": "url", "parameters": [{"type": "text", "text": "x"}]}, 131008, "index"),
    ("sub-type-missing", {"type": "button", "index": "0", "parameters": [{"type": "text", "text": "x"}]}, 131008, "sub_type"),
    ("wrong-sub-type", {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "x"}]}, 132012, "URL button"),
    ("wrong-param-kind", {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "payload", "payload": "x"}]}, 131008, '"type": "text"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("button", "code", "details"), [e[1:] for e in BUTTON_ERRORS], ids=[e[0] for e in BUTTON_ERRORS]
)
def test_bad_buttons_get_metas_codes(
    emulator: EmulatorServer, graph: httpx.Client, button: dict, code: int, details: str
) -> None:
    components = [body_params("SKB-1", "tomorrow"), button]
    assert_meta_error(
        post(graph, emulator, template_message("order_shipped", "en", components)), code, details
    )


def test_media_headers_need_one_media_parameter(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.put_template(
        {
            "name": "receipt",
            "language": "en",
            "components": [
                {"type": "HEADER", "format": "DOCUMENT"},
                {"type": "BODY", "text": "Your receipt"},
            ],
        }
    )
    document = {
        "type": "document",
        "document": {"link": "https://example.invalid/r.pdf", "filename": "r.pdf"},
    }
    ok = post(
        graph, emulator, template_message("receipt", "en", [{"type": "header", "parameters": [document]}])
    )
    assert ok.status_code == 200, ok.text
    assert_meta_error(
        post(graph, emulator, template_message("receipt", "en", [])),
        132000,
        "header: number of localizable_params (0)",
    )
    image = {"type": "image", "image": {"link": "https://example.invalid/a.png"}}
    wrong = post(
        graph, emulator, template_message("receipt", "en", [{"type": "header", "parameters": [image]}])
    )
    assert_meta_error(wrong, 132012, "document")
    bare = {"type": "document", "document": {}}
    assert_meta_error(
        post(graph, emulator, template_message("receipt", "en", [{"type": "header", "parameters": [bare]}])),
        131008,
        "id or link",
    )


def test_template_status_changes_apply_at_run_time(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert post(graph, emulator, welcome()).status_code == 200
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    assert_meta_error(post(graph, emulator, welcome()), 132015)
    emulator.set_template_status("welcome_message", "en", "DISABLED")
    assert_meta_error(post(graph, emulator, welcome()), 132016)
    emulator.set_template_status("welcome_message", "en", "REJECTED")
    assert_meta_error(post(graph, emulator, welcome()), 132001)
    emulator.set_template_status("welcome_message", "en", "APPROVED")
    assert post(graph, emulator, welcome()).status_code == 200
    # another language of the same template is untouched
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    assert (
        post(graph, emulator, template_message("welcome_message", "fr", [body_params("A")])).status_code
        == 200
    )


def test_pending_templates_become_sendable_once_approved(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    send = template_message("loyalty_points", "en", [body_params("120")])
    assert_meta_error(post(graph, emulator, send), 132001)
    emulator.set_template_status("loyalty_points", "en", "APPROVED")
    assert post(graph, emulator, send).status_code == 200


def test_reset_restores_the_initial_templates(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    emulator.put_template({"name": "extra", "language": "en", "components": [{"type": "BODY", "text": "Hi"}]})
    emulator.reset()
    assert post(graph, emulator, welcome()).status_code == 200
    assert not any(t["name"] == "extra" for t in emulator.templates())


def test_paced_templates_answer_with_message_status(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.set_template_paced("welcome_message", "en")
    message = post(graph, emulator, welcome()).json()["messages"][0]
    assert message["message_status"] == "accepted"
    emulator.set_template_paced("welcome_message", "en", False)
    assert "message_status" not in post(graph, emulator, welcome()).json()["messages"][0]


def test_added_templates_can_be_sent(emulator: EmulatorServer, graph: httpx.Client) -> None:
    created = emulator.put_template(
        {
            "name": "pickup_ready",
            "language": "en_US",
            "category": "UTILITY",
            "parameter_format": "NAMED",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Hi {{first_name}}"},
                {"type": "BODY", "text": "Order {{order}} is ready, {{first_name}}."},
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]},
            ],
        }
    )
    assert created["status"] == "APPROVED" and created["id"]
    components = [
        {"type": "header", "parameters": [named("first_name", "Aline")]},
        {"type": "body", "parameters": [named("order", "7"), named("first_name", "Aline")]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "thanks"}],
        },
    ]
    assert post(graph, emulator, template_message("pickup_ready", "en_US", components)).status_code == 200
    # the quick reply's custom payload is optional
    assert post(graph, emulator, template_message("pickup_ready", "en_US", components[:2])).status_code == 200


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "Bad Name", "language": "en"}, "name"),
        ({"name": "ok", "language": ""}, "language"),
        ({"name": "ok", "language": "en", "status": "MAYBE"}, "status"),
        (
            {"name": "ok", "language": "en", "components": [{"type": "BODY", "text": "{{1}} {{3}}"}]},
            "POSITIONAL",
        ),
        (
            {
                "name": "ok",
                "language": "en",
                "parameter_format": "NAMED",
                "components": [{"type": "BODY", "text": "{{1}}"}],
            },
            "NAMED",
        ),
        ({"name": "ok", "language": "en", "components": [{"type": "SIDEBAR"}]}, "SIDEBAR"),
    ],
)
def test_bad_template_definitions_are_refused_by_the_control_api(
    emulator: EmulatorServer, graph: httpx.Client, definition: dict, message: str
) -> None:
    response = graph.post(f"{emulator.base_url}/_emulator/templates", json=definition)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_templates_and_statuses_are_refused_by_the_control_api(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    missing = graph.patch(f"{emulator.base_url}/_emulator/templates/nope/en", json={"status": "PAUSED"})
    assert missing.status_code == 404
    bad = graph.patch(
        f"{emulator.base_url}/_emulator/templates/welcome_message/en", json={"status": "SLEEPING"}
    )
    assert bad.status_code == 400
    other = graph.patch(f"{emulator.base_url}/_emulator/templates/welcome_message/en", json={"name": "x"})
    assert other.status_code == 400


# -- the delivery engine's pre-check agrees with the emulator ---------------------------------

CATALOG = {(t["name"], t["language"]): t for t in load_template_catalog()}
AGREEMENT = [
    *[(f"ok-{name}-{language}-{i}", name, language, c) for i, (name, language, c) in enumerate(WELL_FILLED)],
    ("omitted-components", "welcome_message", "en", None),
    *[(case, name, "en", c) for case, name, c, _ in COUNT_ERRORS],
    *[(case, "welcome_message", "en", c) for case, c, _, _ in PARAMETER_ERRORS],
    *[(case, "order_shipped", "en", [body_params("SKB-1", "tomorrow"), b]) for case, b, _, _ in BUTTON_ERRORS],
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "language", "components"), [a[1:] for a in AGREEMENT], ids=[a[0] for a in AGREEMENT]
)
def test_the_engine_refuses_what_the_emulator_refuses_with_the_same_code(
    emulator: EmulatorServer, graph: httpx.Client, name: str, language: str, components: Any
) -> None:
    """policy.decide over whatsapp_templates rows synced from the catalog: a send the emulator
    takes goes out; one it refuses fails before any request, with the emulator's code and details."""
    send = template_message(name, language, components)
    response = post(graph, emulator, send)
    definition = CATALOG[(name, language)]
    synced = policy_template(
        name,
        category=definition["category"],
        variables=(),
        language=language,
        parameter_format=definition["parameter_format"],
        components=definition["components"],
    )
    verdict = decide(policy_row(send, language=language), KIGALI, registry(synced), DAY_IN_KIGALI, CONFIG)
    if response.status_code == 200:
        assert verdict.action == "send", verdict.message
        return
    error = response.json()["error"]
    assert (verdict.action, verdict.reason) == ("fail", str(error["code"]))
    assert f"(#{error['code']}) {error['error_data']['details']}" in verdict.message


def test_the_agreement_cases_cover_metas_parameter_codes() -> None:
    refused = {132000} | {case[2] for case in PARAMETER_ERRORS + BUTTON_ERRORS}  # COUNT_ERRORS: 132000
    assert refused == {132000, 132005, 132018, 131008, 132012, 100}


# -- GET /{version}/{waba_id}/message_templates ----------------------------------------------


def list_page(
    graph: httpx.Client, emulator: EmulatorServer, url: str | None = None, **params: Any
) -> httpx.Response:
    return graph.get(url or emulator.templates_url(), params=params or None, headers=emulator.auth_headers)


def test_the_template_list_pages_with_cursors_and_next_links(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    catalog = load_template_catalog()
    seen: list[dict] = []
    response = list_page(graph, emulator, limit=5)
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["data"]) <= 5
        seen.extend(body["data"])
        cursors = body["paging"]["cursors"]
        assert cursors["before"] and cursors["after"]
        if "next" not in body["paging"]:
            break
        next_url = body["paging"]["next"]
        assert next_url.startswith(emulator.base_url + "/v23.0/")  # absolute
        assert parse_qs(urlsplit(next_url).query)["limit"] == ["5"]
        response = list_page(graph, emulator, url=next_url)
    assert pages == 3  # 12 templates in pages of 5
    assert [(t["name"], t["language"]) for t in seen] == [(t["name"], t["language"]) for t in catalog]
    assert all("domain" not in t and "paced" not in t for t in seen)  # ours, not Meta's
    assert set(seen[0]) >= {"name", "language", "status", "category", "parameter_format", "components", "id"}


def test_the_default_limit_is_25(emulator: EmulatorServer, graph: httpx.Client) -> None:
    for i in range(30):
        emulator.put_template(
            {"name": f"bulk_{i:02d}", "language": "en", "components": [{"type": "BODY", "text": "Hi"}]}
        )
    body = list_page(graph, emulator).json()
    assert len(body["data"]) == 25
    assert "next" in body["paging"]
    rest = list_page(graph, emulator, after=body["paging"]["cursors"]["after"]).json()
    assert len(rest["data"]) == 12 + 30 - 25
    assert "next" not in rest["paging"] and "previous" in rest["paging"]


def test_fields_select_what_is_returned_and_id_always_comes(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    data = list_page(graph, emulator, fields="name,status").json()["data"]
    assert all(set(t) == {"name", "status", "id"} for t in data)


def test_the_status_filter_is_case_insensitive(emulator: EmulatorServer, graph: httpx.Client) -> None:
    paused = list_page(graph, emulator, status="paused").json()["data"]
    assert [t["name"] for t in paused] == ["spring_sale"]
    several = list_page(graph, emulator, status="PAUSED,disabled").json()["data"]
    assert {t["name"] for t in several} == {"spring_sale", "legacy_reminder"}
    approved = list_page(graph, emulator, status="APPROVED", limit=100).json()["data"]
    assert len(approved) == 9
    emulator.set_template_status("welcome_message", "en", "PAUSED")
    assert len(list_page(graph, emulator, status="approved", limit=100).json()["data"]) == 8


def test_a_filter_matching_nothing_gives_empty_data(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert list_page(graph, emulator, status="LOCKED").json() == {"data": []}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"after": "not-a-cursor"},
        {"fields": "name,colour"},
        {"status": "SLEEPING"},
    ],
)
def test_bad_list_parameters_get_code_100(
    emulator: EmulatorServer, graph: httpx.Client, params: dict
) -> None:
    assert_meta_error(list_page(graph, emulator, **params), 100)


def test_the_template_list_needs_the_token(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert_meta_error(graph.get(emulator.templates_url()), 190)

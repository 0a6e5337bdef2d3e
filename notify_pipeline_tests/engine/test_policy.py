"""Send-time rules before any HTTP call: opt-out, templates, quiet hours and exemptions.
Pure unit tests over rows, contacts and templates (no database, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from notify_pipeline.engine.policy import PolicyConfig, decide, template_definition
from notify_pipeline.engine.store import Contact
from notify_pipeline.whatsapp.messages import template_message, text_message
from notify_pipeline_tests.support.policy import (
    CONFIG,
    DAY_IN_KIGALI,
    KIGALI,
    NIGHT_IN_KIGALI,
    registry,
    row,
    template,
)


def test_send_carries_the_request_and_the_template() -> None:
    verdict = decide(row(), KIGALI, registry(template()), DAY_IN_KIGALI, CONFIG)
    assert verdict.action == "send"
    assert verdict.request["biz_opaque_callback_data"] == "np1:7"
    assert verdict.template["retry_policy"] == {"max_retries": 3}


def test_opted_out_contact_fails_even_at_night() -> None:
    contact = Contact(True, time(22), time(7), "Africa/Kigali")
    verdict = decide(row(), contact, registry(template()), NIGHT_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "opted_out")


@pytest.mark.parametrize(
    ("templates", "reason"),
    [
        (registry(), "template_missing"),
        (registry(template(status="PENDING")), "template_not_approved"),
        (registry(template(status="DISABLED")), "template_not_approved"),
        (registry(template(is_active=False)), "template_inactive"),
        # Meta's code, as last_error_code would read had the send gone out
        (registry(template(variables=("name", "city"))), "132000"),
    ],
)
def test_unusable_templates_fail_before_any_request(templates, reason) -> None:
    verdict = decide(row(), KIGALI, templates, DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", reason)
    assert "welcome_message" in verdict.message


def test_paused_template_holds_the_row() -> None:
    verdict = decide(row(), KIGALI, registry(template(status="PAUSED")), DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("defer", "template_paused")
    assert (verdict.until - DAY_IN_KIGALI).total_seconds() == CONFIG.template_hold_s


def test_quiet_hours_defer_to_the_end_of_the_window_in_the_contacts_zone() -> None:
    verdict = decide(row(), KIGALI, registry(template()), NIGHT_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("defer", "quiet_hours")
    assert verdict.until == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 07:00 in Kigali


def test_quiet_hours_exemptions() -> None:
    templates = registry(
        template(),
        template("otp_code", category="AUTHENTICATION"),
        template("weekly_promo", quiet_hours_exempt=True),
        template("otp_strict", category="AUTHENTICATION", quiet_hours_exempt=False),
    )

    def action(name: str, **extra) -> str:
        payload = template_message("+250788000001", name, "en", body=["x"])
        return decide(row(payload, **extra), KIGALI, templates, NIGHT_IN_KIGALI, CONFIG).action

    assert action("welcome_message") == "defer"
    assert action("welcome_message", quiet_hours_override=True) == "send"
    assert action("otp_code") == "send", "AUTHENTICATION goes out at night by default"
    assert action("weekly_promo") == "send", "an explicit exemption on the template"
    assert action("otp_strict") == "defer", "the template's own setting beats its category"


def test_contacts_without_preferences_follow_the_configured_default() -> None:
    text = row(text_message("+250788000001", "hi"), template_name=None)
    assert decide(text, None, {}, NIGHT_IN_KIGALI, CONFIG).action == "defer"
    assert decide(text, None, {}, NIGHT_IN_KIGALI, PolicyConfig(default_quiet_hours=None)).action == "send"


def test_invalid_payload_fails() -> None:
    verdict = decide(row({"to": "+250788000001", "type": "image"}), KIGALI, {}, DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "invalid_payload")


def test_definition_from_variables_when_not_synced() -> None:
    named = template_definition(template(variables=("first", "second"), parameter_format="NAMED"))
    assert named["components"][0]["text"] == "{{first}} {{second}}"
    positional = template_definition(template(variables=("a", "b")))
    assert positional["components"][0]["text"] == "{{1}} {{2}}"


def test_parameter_refusals_carry_metas_code_and_details() -> None:
    verdict = decide(row(), KIGALI, registry(template(variables=("name", "city"))), DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "132000")
    assert verdict.message == (
        "Template welcome_message (en) parameters do not fit, Meta would refuse the send: (#132000) "
        "body: number of localizable_params (1) does not match the expected number of params (2)"
    )
    bad_text = row(template_message("+250788000001", "welcome_message", "en", body=["Ali\tne"]))
    verdict = decide(bad_text, KIGALI, registry(template()), DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "132018")
    assert "(#132018) body parameter 0: Param text cannot have new-line/tab characters" in verdict.message


def test_synced_components_beat_the_variable_list() -> None:
    components = [
        {"type": "HEADER", "format": "TEXT", "text": "Hi {{1}}"},
        {"type": "BODY", "text": "Order {{1}} ships {{2}}."},
    ]
    synced = registry(template(variables=("name",), components=components))
    body_only = row(template_message("+250788000001", "welcome_message", "en", body=["SKB-1", "today"]))
    verdict = decide(body_only, KIGALI, synced, DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "132000")
    assert "header: number of localizable_params (0)" in verdict.message
    full = template_message(
        "+250788000001", "welcome_message", "en", header=["Aline"], body=["SKB-1", "today"]
    )
    assert decide(row(full), KIGALI, synced, DAY_IN_KIGALI, CONFIG).action == "send"


def test_named_templates_without_components_check_names_from_the_variable_list() -> None:
    named = registry(template(variables=("first_name",), parameter_format="NAMED"))
    good = template_message("+250788000001", "welcome_message", "en", body={"first_name": "Aline"})
    assert decide(row(good), KIGALI, named, DAY_IN_KIGALI, CONFIG).action == "send"
    wrong = template_message("+250788000001", "welcome_message", "en", body={"name": "Aline"})
    verdict = decide(row(wrong), KIGALI, named, DAY_IN_KIGALI, CONFIG)
    assert (verdict.action, verdict.reason) == ("fail", "132000")
    assert "parameter_name (name) is not a variable" in verdict.message


def test_a_definition_we_cannot_read_leaves_the_judgement_to_meta() -> None:
    carousel = registry(template(components=[{"type": "BODY", "text": "Hi {{1}}"}, {"type": "CAROUSEL"}]))
    assert decide(row(), KIGALI, carousel, DAY_IN_KIGALI, CONFIG).action == "send"


def test_marketing_is_not_sent_to_a_contact_who_stopped_it_but_utility_is() -> None:
    from dataclasses import replace as with_

    stopped = with_(KIGALI, marketing_opted_out=True)
    for category, expected in (("MARKETING", ("fail", "marketing_opted_out")), ("UTILITY", ("send", ""))):
        verdict = decide(row(), stopped, registry(template(category=category)), DAY_IN_KIGALI, CONFIG)
        assert (verdict.action, verdict.reason) == expected

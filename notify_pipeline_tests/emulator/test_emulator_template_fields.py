"""The template list answers what a real client asks for: pywa 4.5's `get_templates` requests
every field of the template node, a summary, and filters; Graph's error 100 stays for fields
that do not exist."""

from __future__ import annotations

from typing import Any

import httpx

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline_tests.support.emulator import assert_meta_error

# Exactly what pywa 4.5.0 sends (TemplateDetails._api_fields() and TemplatesResult's summary).
PYWA_FIELDS = (
    "id,name,language,category,status,components,parameter_format,message_send_ttl_seconds,"
    "correct_category,previous_category,rejected_reason,library_template_name,quality_score,"
    "cta_url_link_tracking_opted_out,sub_category,degrees_of_freedom_spec"
)
PYWA_SUMMARY = "total_count,message_template_count,message_template_limit,are_translations_complete"


def listing(emulator: EmulatorServer, graph: httpx.Client, **params: Any) -> httpx.Response:
    return graph.get(emulator.templates_url(), params=params, headers=emulator.auth_headers)


def test_pywas_default_fields_and_summary_are_answered(emulator: EmulatorServer, graph: httpx.Client) -> None:
    response = listing(emulator, graph, fields=PYWA_FIELDS, summary=PYWA_SUMMARY, limit="100")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["summary"] == {
        "total_count": 12,
        "message_template_count": 12,
        "message_template_limit": 250,
        "are_translations_complete": True,
    }
    asked = set(PYWA_FIELDS.split(","))
    for template in body["data"]:
        assert set(template) <= asked
        assert {"id", "name", "language", "category", "status", "components", "parameter_format"} <= set(
            template
        )
        # Graph leaves out what a template has no value for; a client never meets a null object.
        assert None not in template.values()
        assert template["rejected_reason"] == "NONE"
        assert template["quality_score"]["score"] == "UNKNOWN"
        assert isinstance(template["quality_score"]["date"], int)
        assert "degrees_of_freedom_spec" not in template


def test_fields_a_template_defines_are_served(emulator: EmulatorServer, graph: httpx.Client) -> None:
    spec = {"creative_features_spec": {"image_brightness_and_contrast": {"enroll_status": "OPT_IN"}}}
    emulator.put_template(
        {
            "name": "flash_sale",
            "language": "en_US",
            "category": "MARKETING",
            "sub_category": "CUSTOM",
            "message_send_ttl_seconds": 3600,
            "degrees_of_freedom_spec": spec,
            "quality_score": {"score": "GREEN", "date": 1750000000},
            "components": [{"type": "BODY", "text": "Flash sale today"}],
        }
    )
    [template] = listing(emulator, graph, fields=PYWA_FIELDS, name="flash").json()["data"]
    assert template["degrees_of_freedom_spec"] == spec
    assert template["sub_category"] == "CUSTOM" and template["message_send_ttl_seconds"] == 3600
    assert template["quality_score"] == {"score": "GREEN", "date": 1750000000}


def test_truly_unknown_fields_still_get_code_100(emulator: EmulatorServer, graph: httpx.Client) -> None:
    error = assert_meta_error(listing(emulator, graph, fields=f"{PYWA_FIELDS},degrees_of_freedom"), 100)
    assert "(degrees_of_freedom)" in error["error_data"]["details"]


def test_pywas_filters_select_templates(emulator: EmulatorServer, graph: httpx.Client) -> None:
    def names(**params: str) -> list[str]:
        return [
            t["name"] for t in listing(emulator, graph, fields="name", limit="100", **params).json()["data"]
        ]

    assert names(category="MARKETING") == ["weekly_promo", "spring_sale", "loyalty_points"]
    assert names(language="fr") == ["welcome_message"]
    assert names(content="verification code") == ["otp_code"]
    assert names(name_or_content="promo") == ["weekly_promo"]
    assert names(quality_score="GREEN") == []
    assert len(names(quality_score="UNKNOWN,GREEN")) == 12
    response = listing(emulator, graph, category="AUTHENTICATION", summary=PYWA_SUMMARY).json()
    assert [t["name"] for t in response["data"]] == ["otp_code"]
    assert response["summary"]["total_count"] == 12  # the whole account, as pywa documents it

"""Templates follow Meta at once (issue 14): status, quality and category webhooks received by
`notify-pipeline serve` change whatsapp_templates with template sync's rules (a held status holds
the rows, a terminal one fails them, APPROVED switches back on what a sync switched off and sends
held rows now), and sync itself switches a template back on when Meta lists it APPROVED again.
Bodies are written by hand in Meta's shape; the last test has the emulator post them."""

from __future__ import annotations

import json
import time

import pytest

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.engine.templates_store import upsert_templates
from notify_pipeline.operations import templates
from notify_pipeline_tests.support.engine import client_settings, enqueue, load_demo_templates
from notify_pipeline_tests.support.service import APP_SECRET, running_service

WABA_ID = "102290129340398"
OLD_PROMO = {
    "name": "old_promo",
    "language": "en",
    "category": "MARKETING",
    "status": "APPROVED",
    "components": [{"type": "BODY", "text": "Hi {{1}}"}],
}


def body(field: str, value: dict) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": WABA_ID, "time": int(time.time()), "changes": [{"field": field, "value": value}]}
            ],
        }
    ).encode()


def status_event(name: str, event: str, language: str = "en", **extra) -> bytes:
    value = {
        "event": event,
        "message_template_id": 0,
        "message_template_name": name,
        "message_template_language": language,
        "reason": "NONE",
        **extra,
    }
    return body("message_template_status_update", value)


def queue(db, name: str, count: int, *params: str) -> list[int]:
    components = (
        [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}] if params else []
    )
    return [
        enqueue(
            db,
            {
                "to": f"+25078812{i:04d}",
                "template": {"name": name, "language": "en", "components": components},
            },
        )
        for i in range(count)
    ]


def template(db, name: str) -> dict:
    cur = db.execute(
        "SELECT approval_status, is_active, category, quality_score, inactive_reason FROM whatsapp_templates "
        "WHERE template_name = %s AND language = 'en'",
        (name,),
    )
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def statuses(db, ids: list[int]) -> list[tuple[str, str | None]]:
    return db.execute(
        "SELECT status, last_error_code FROM notifications WHERE id = ANY(%s) ORDER BY id", (ids,)
    ).fetchall()


# -- sync ----------------------------------------------------------------------------------------


def test_a_template_sync_switched_off_comes_back_on_when_meta_lists_it_approved(db, emulator) -> None:
    load_demo_templates(db)
    upsert_templates(db, [OLD_PROMO])
    remote = templates.fetch_remote(client_settings(emulator), WABA_ID)
    templates.sync_templates(db, remote, "op", dry_run=False)
    assert template(db, "old_promo")["is_active"] is False
    assert template(db, "old_promo")["inactive_reason"] == "not_at_meta"

    emulator.put_template(OLD_PROMO)  # Meta lists it again, APPROVED
    remote = templates.fetch_remote(client_settings(emulator), WABA_ID)
    dry = templates.sync_templates(db, remote, "op", dry_run=True)
    assert dry.reactivated == ["old_promo (en)"]
    assert any("switch on): 1" in line for line in dry.lines())
    report = templates.sync_templates(db, remote, "op", dry_run=False)
    assert report.reactivated == ["old_promo (en)"]
    assert template(db, "old_promo")["is_active"] is True
    assert template(db, "old_promo")["inactive_reason"] is None


def test_a_template_an_operator_switched_off_stays_off(db, emulator) -> None:
    load_demo_templates(db)
    db.execute("UPDATE whatsapp_templates SET is_active = false WHERE template_name = 'ride_arriving'")
    remote = templates.fetch_remote(client_settings(emulator), WABA_ID)
    report = templates.sync_templates(db, remote, "op", dry_run=False)
    assert report.reactivated == []
    assert template(db, "ride_arriving")["is_active"] is False


# -- webhooks through notify-pipeline serve -------------------------------------------------------


def test_status_webhooks_hold_fail_and_release_rows_as_sync_would(db, db_url) -> None:
    load_demo_templates(db)
    confirmations = queue(db, "order_shipped", 2, "A1", "today")
    promos = queue(db, "weekly_promo", 2, "2 for 1")
    with running_service(db_url) as service:
        assert service.post(status_event("weekly_promo", "PAUSED")).status_code == 200
        assert template(db, "weekly_promo")["approval_status"] == "PAUSED"
        assert statuses(db, promos) == [("queued", None)] * 2, "held, not failed"

        assert service.post(status_event("order_shipped", "DISABLED")).status_code == 200
        assert template(db, "order_shipped")["approval_status"] == "DISABLED"
        assert statuses(db, confirmations) == [("failed", "template_not_approved")] * 2
        message = db.execute("SELECT error_message FROM notifications WHERE id = %s", (confirmations[0],))
        assert "order_shipped (en) is DISABLED at Meta" in message.fetchone()[0]

        # The engine held the promo rows for 15 minutes; Meta reinstates the template: they go now.
        db.execute(
            "UPDATE notifications SET last_error_code = 'template_paused', "
            "next_attempt_at = now() + interval '15 minutes' WHERE id = ANY(%s)",
            (promos,),
        )
        assert service.post(status_event("weekly_promo", "REINSTATED")).status_code == 200
        assert template(db, "weekly_promo")["approval_status"] == "APPROVED"
        due = db.execute(
            "SELECT bool_and(next_attempt_at <= now()) FROM notifications WHERE id = ANY(%s)", (promos,)
        ).fetchone()[0]
        assert due
    outcome = db.execute(
        "SELECT outcome FROM webhook_events WHERE kind = 'template_status' ORDER BY id"
    ).fetchall()
    assert [o[0] for o in outcome] == [
        "applied: status APPROVED->PAUSED",
        "applied: status APPROVED->DISABLED; 2 waiting row(s) failed",
        "applied: status PAUSED->APPROVED; 2 held row(s) due now",
    ]


def test_an_approved_webhook_switches_back_on_what_a_sync_switched_off(db, db_url) -> None:
    load_demo_templates(db)
    upsert_templates(db, [OLD_PROMO])
    db.execute(
        "UPDATE whatsapp_templates SET is_active = false, inactive_reason = 'not_at_meta' WHERE template_name = 'old_promo'"
    )
    db.execute("UPDATE whatsapp_templates SET is_active = false WHERE template_name = 'ride_arriving'")
    with running_service(db_url) as service:
        service.post(status_event("old_promo", "APPROVED", language="en"))
        service.post(status_event("ride_arriving", "APPROVED"))
    assert template(db, "old_promo")["is_active"] is True
    assert template(db, "ride_arriving")["is_active"] is False, "an operator's switch-off stays"


def test_quality_and_category_webhooks_update_the_template(db, db_url) -> None:
    load_demo_templates(db)
    ids = {
        "message_template_id": 0,
        "message_template_name": "welcome_message",
        "message_template_language": "en",
    }
    quality = body(
        "message_template_quality_update",
        {"previous_quality_score": "GREEN", "new_quality_score": "RED", **ids},
    )
    category = body(
        "template_category_update", {**ids, "previous_category": "UTILITY", "new_category": "MARKETING"}
    )
    unknown = status_event("no_such_template", "PAUSED")
    with running_service(db_url) as service:
        for sent in (quality, category, unknown):
            assert service.post(sent).status_code == 200
    stored = template(db, "welcome_message")
    assert (stored["quality_score"], stored["category"]) == ("RED", "MARKETING")
    ignored = db.execute("SELECT outcome FROM webhook_events WHERE kind = 'template_status'").fetchone()[0]
    assert ignored.startswith("ignored: no such template")
    events = db.execute(
        "SELECT count(*) FROM observability_events WHERE event_type = 'TEMPLATE_UPDATED_BY_META'"
    ).fetchone()[0]
    assert events == 2


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the webhook was not applied in time"
        time.sleep(0.05)


@pytest.fixture
def signing_emulator():
    """An emulator that signs its webhooks with the service's app secret."""
    with EmulatorServer(app_secret=APP_SECRET) as server:
        yield server


def test_the_emulator_posts_template_webhooks_end_to_end(db, db_url, signing_emulator) -> None:
    load_demo_templates(db)
    promos = queue(db, "weekly_promo", 2, "2 for 1")
    with running_service(db_url) as service:
        signing_emulator.configure(webhook_url=f"{service.base_url}/webhooks/whatsapp")
        signing_emulator.template_event("weekly_promo", "en", "PAUSED")
        wait_for(lambda: template(db, "weekly_promo")["approval_status"] == "PAUSED")
        signing_emulator.template_quality("weekly_promo", "en", "YELLOW")
        wait_for(lambda: template(db, "weekly_promo")["quality_score"] == "YELLOW")
        signing_emulator.template_category("welcome_message", "en", "MARKETING")
        wait_for(lambda: template(db, "welcome_message")["category"] == "MARKETING")
        signing_emulator.template_event("weekly_promo", "en", "DISABLED")
        wait_for(lambda: template(db, "weekly_promo")["approval_status"] == "DISABLED")
    assert statuses(db, promos) == [("failed", "template_not_approved")] * 2

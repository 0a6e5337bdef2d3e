"""`notify-pipeline serve` over real HTTP with bodies shaped as Meta's documentation shows them
(literal JSON, written by hand, not by the emulator): statuses, inbound messages and user
preferences applied; replays and re-batched duplicates change nothing; bad signatures, oversize
and malformed bodies refused with nothing stored; 503 while the database is down."""

from __future__ import annotations

import re
import time

import pytest

from notify_pipeline_tests.support.service import APP_SECRET, VERIFY_TOKEN, running_service

WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NDlFMTlGNTg1MzhFRjE1MjMA"
OTHER = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJGMzcxQTNFQzU2QjdCQzJERTQA"

SENT = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"statuses":[{"id":"%(wamid)s","status":"sent","timestamp":"1750030073","recipient_id":"250788000001",
"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"utility"}}]},"field":"messages"}]}]}"""

DELIVERED_AND_READ = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"statuses":[{"id":"%(wamid)s","status":"delivered","timestamp":"1750030075","recipient_id":"250788000001"},
{"id":"%(wamid)s","status":"read","timestamp":"1750030180","recipient_id":"250788000001"}]},"field":"messages"}]}]}"""

FAILED = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"statuses":[{"id":"%(wamid)s","status":"failed","timestamp":"1750030090","recipient_id":"250788000002",
"errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable",
"error_data":{"details":"Message Undeliverable."},"href":"/documentation/business-messaging/whatsapp/support/error-codes"}]}]},
"field":"messages"}]}]}"""

INBOUND = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"contacts":[{"profile":{"name":"Ren\\u00e9e"},"wa_id":"250788000003"}],
"messages":[{"from":"250788000003","id":"wamid.HBgLMjUwNzg4MDAwMDAzFQIAEhgUM0E3","timestamp":"1750030200",
"type":"text","text":{"body":"%(text)s"}}]},"field":"messages"}]}]}"""

PREFERENCE = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"contacts":[{"wa_id":"250788000004"}],
"user_preferences":[{"wa_id":"250788000004","detail":"User requested to stop marketing messages",
"category":"marketing_messages","value":"%(value)s","timestamp":%(ts)s}]},"field":"user_preferences"}]}]}"""


# Meta's examples are dated 2024 and 2025; the service refuses updates older than Meta's retry
# window (receipts/bounds.py), so each example is moved to this session's start, the gaps between
# its timestamps kept (and the same body twice is still the same update: a replay).
EXAMPLE_EPOCHS = (1750031000, 1731710000)
SESSION_START = int(time.time())


def _recent(match: re.Match[bytes]) -> bytes:
    value = int(match.group())
    base = next(epoch for epoch in EXAMPLE_EPOCHS if abs(epoch - value) < 86_400)
    return str(value - base + SESSION_START).encode()


def body(template: bytes, **values: object) -> bytes:
    return template % {k.encode(): str(v).encode() for k, v in values.items()} if values else template


def fill(template: bytes, **values: str) -> bytes:
    out = template
    for key, value in values.items():
        out = out.replace(f"%({key})s".encode(), value.encode())
    return re.sub(rb"\b17(?:500|317)\d{5}\b", _recent, out)


def sent_row(db, wamid: str, to: str = "+250788000001") -> int:
    return db.execute(
        "INSERT INTO notifications (to_wa_id, notification_type, status, sent_at, wa_message_id) "
        "VALUES (%s, 'welcome', 'sent', now(), %s) RETURNING id",
        (to, wamid),
    ).fetchone()[0]


def counter(db, name: str, **labels: str) -> int:
    row = db.execute(
        "SELECT value FROM notify_counters WHERE name = %s AND labels = %s::jsonb",
        (name, __import__("json").dumps(labels)),
    ).fetchone()
    return row[0] if row else 0


def events(db) -> int:
    return db.execute("SELECT count(*) FROM webhook_events").fetchone()[0]


def test_the_subscription_handshake(db_url) -> None:
    with running_service(db_url) as service:
        ok = service.http.get(
            "/webhooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN},
        )
        assert ok.status_code == 200 and ok.text == "1158201444"
        wrong = service.http.get(
            "/webhooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "guess"},
        )
        assert wrong.status_code == 403
        assert service.http.get("/webhooks/whatsapp", params={"hub.challenge": "1"}).status_code == 403


def test_statuses_are_applied_in_order_once_and_counted(db, db_url) -> None:
    row_id = sent_row(db, WAMID)
    with running_service(db_url) as service:
        assert service.post(fill(SENT, wamid=WAMID)).status_code == 200
        assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 200
        # A replay, and the same updates re-batched differently, change nothing.
        assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 200
        assert service.post(fill(SENT, wamid=WAMID)).status_code == 200
    row = db.execute(
        "SELECT delivery_status, delivered_at IS NOT NULL, read_at IS NOT NULL, pricing_category, billable, status "
        "FROM notifications WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert row == ("read", True, True, "utility", True, "sent")
    assert events(db) == 3
    assert counter(db, "delivered") == 1 and counter(db, "read") == 1
    audit = [
        e
        for (e,) in db.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id", (row_id,)
        )
    ]
    assert audit[-2:] == ["sent", "read"] or audit[-1] == "read"


def test_a_late_failure_fails_the_row_and_counts_once_but_never_after_read(db, db_url) -> None:
    failing = sent_row(db, OTHER, to="+250788000002")
    read = sent_row(db, WAMID)
    with running_service(db_url) as service:
        assert service.post(fill(FAILED, wamid=OTHER)).status_code == 200
        assert service.post(fill(FAILED, wamid=OTHER)).status_code == 200
        assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 200
        assert service.post(fill(FAILED, wamid=WAMID)).status_code == 200
    status, code, message, late = db.execute(
        "SELECT status, last_error_code, error_message, failed_late_at IS NOT NULL FROM notifications WHERE id = %s",
        (failing,),
    ).fetchone()
    assert (status, code, late) == ("failed", "131026", True) and "undeliverable" in message.lower()
    assert db.execute(
        "SELECT status, delivery_status FROM notifications WHERE id = %s", (read,)
    ).fetchone() == (
        "sent",
        "read",
    )
    assert counter(db, "late_failed", error_code="131026") == 1
    # The runbook's failure query sees it.
    assert db.execute("SELECT count(*) FROM notifications WHERE status = 'failed'").fetchone()[0] == 1
    assert (
        db.execute(
            "SELECT count(*) FROM notification_audit_log WHERE notification_id = %s AND event_type = 'failed_late'",
            (failing,),
        ).fetchone()[0]
        == 1
    )


def test_a_status_before_the_message_id_is_kept_and_applied_when_the_id_lands(db, db_url) -> None:
    row_id = db.execute(
        "INSERT INTO notifications (to_wa_id, notification_type) VALUES ('+250788000001', 'welcome') RETURNING id"
    ).fetchone()[0]
    with running_service(db_url) as service:
        assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 200
    assert db.execute("SELECT count(*) FROM webhook_events WHERE applied_at IS NULL").fetchone()[0] == 2
    db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), wa_message_id = %s WHERE id = %s",
        (WAMID, row_id),
    )
    assert db.execute("SELECT delivery_status FROM notifications WHERE id = %s", (row_id,)).fetchone() == (
        "read",
    )
    assert db.execute("SELECT count(*) FROM webhook_events WHERE applied_at IS NULL").fetchone()[0] == 0


@pytest.mark.parametrize("said", ["STOP", "  stop ", "Unsubscribe!", "stop   all"])
def test_a_stop_reply_opts_the_contact_out_and_cancels_its_waiting_rows(db, db_url, said) -> None:
    db.execute(
        "SELECT queueNotification(%s::jsonb, '{}'::jsonb)", ('{"to": "+250788000003", "text": "hello"}',)
    )
    with running_service(db_url) as service:
        assert service.post(fill(INBOUND, text=said)).status_code == 200
    opted, inbound = db.execute(
        "SELECT opted_out, last_inbound_at IS NOT NULL FROM contact_preferences WHERE wa_id = '+250788000003'"
    ).fetchone()
    assert opted and inbound
    assert db.execute("SELECT status, last_error_code FROM notifications").fetchone() == (
        "failed",
        "opted_out",
    )
    reason = db.execute(
        "SELECT details->>'reason' FROM observability_events WHERE event_type = 'CONTACT_OPTED_OUT'"
    ).fetchone()[0]
    assert "wamid.HBgLMjUwNzg4MDAwMDAzFQIAEhgUM0E3" in reason, "audited with the inbound message id"


def test_start_opts_back_in_and_other_words_only_record_the_inbound_time(db, db_url) -> None:
    db.execute("SELECT mark_opted_out('+250788000003', 'test')")
    with running_service(db_url) as service:
        assert service.post(fill(INBOUND, text="what time is it?")).status_code == 200
        assert db.execute("SELECT opted_out FROM contact_preferences").fetchone() == (True,)
        start = fill(INBOUND, text="start").replace(b"AEhgUM0E3", b"AEhgUM0E4")
        assert service.post(start).status_code == 200
    assert db.execute("SELECT opted_out FROM contact_preferences").fetchone() == (False,)


def test_marketing_preferences_stop_and_resume_in_timestamp_order(db, db_url) -> None:
    with running_service(db_url) as service:
        assert service.post(fill(PREFERENCE, value="stop", ts="1731705721")).status_code == 200
        assert db.execute("SELECT marketing_opted_out FROM contact_preferences").fetchone() == (True,)
        assert service.post(fill(PREFERENCE, value="resume", ts="1731705000")).status_code == 200
        assert db.execute("SELECT marketing_opted_out FROM contact_preferences").fetchone() == (True,), (
            "older"
        )
        assert service.post(fill(PREFERENCE, value="resume", ts="1731709999")).status_code == 200
    assert db.execute("SELECT marketing_opted_out FROM contact_preferences").fetchone() == (False,)


@pytest.mark.parametrize(
    "header",
    [None, "", "sha1=abc", "sha256=", "sha256=" + "0" * 64, "sha256=\u00e9\u00e9", "nonsense"],
)
def test_bad_signatures_are_refused_with_nothing_stored(db, db_url, header) -> None:
    sent_row(db, WAMID)
    with running_service(db_url) as service:
        headers = {"Content-Type": "application/json"}
        raw = fill(SENT, wamid=WAMID)
        if header is not None:
            headers["X-Hub-Signature-256"] = header
        response = service.http.post(
            "/webhooks/whatsapp", content=raw, headers={k: v.encode("utf-8") for k, v in headers.items()}
        )
        assert response.status_code == 401
        assert service.post(raw, secret="someone-else").status_code == 401
    assert events(db) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"object": "page", "entry": []}',
        b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"x","status":"eaten","timestamp":"1"}]}}]}]}',
    ],
)
def test_malformed_bodies_are_refused_with_nothing_stored(db, db_url, raw) -> None:
    with running_service(db_url) as service:
        assert service.post(raw).status_code == 400
    assert events(db) == 0


def test_an_oversize_body_is_refused(db, db_url) -> None:
    with running_service(db_url, max_body_bytes=10_000) as service:
        assert service.post(b" " * 20_000 + fill(SENT, wamid=WAMID)).status_code == 413
    assert events(db) == 0


def test_the_service_refuses_to_start_without_a_secret(db_url) -> None:
    from notify_pipeline.service.config import ServiceConfig, ServiceConfigError

    with pytest.raises(ServiceConfigError, match="WHATSAPP_APP_SECRET"):
        ServiceConfig(database_url=db_url)
    assert ServiceConfig(database_url=db_url, allow_unsigned=True).allow_unsigned
    assert APP_SECRET


def test_503_while_the_database_is_down_then_the_retry_applies(db_url, postgres_server) -> None:
    from notify_pipeline_tests.support.drain_harness import fresh

    with fresh(db_url) as db:
        row_id = sent_row(db, WAMID)
    with running_service(db_url) as service:
        assert service.post(fill(SENT, wamid=WAMID)).status_code == 200
        postgres_server.stop()
        try:
            assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 503
        finally:
            postgres_server.start()
        assert service.post(fill(DELIVERED_AND_READ, wamid=WAMID)).status_code == 200
    with fresh(db_url) as db:
        assert db.execute(
            "SELECT delivery_status FROM notifications WHERE id = %s", (row_id,)
        ).fetchone() == ("read",)

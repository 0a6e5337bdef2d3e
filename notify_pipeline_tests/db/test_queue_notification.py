"""queueNotification(message, meta): what applications call to enqueue. Real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from notify_pipeline.db.connect import connect
from notify_pipeline_tests.support.queue import TEMPLATE_MESSAGE, enqueue


def row(db: psycopg.Connection, notification_id: int) -> dict:
    cur = db.execute("SELECT * FROM notifications WHERE id = %s", (notification_id,))
    names = [column.name for column in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM notifications").fetchone()[0]


def test_template_message_fills_every_column_from_meta(db: psycopg.Connection) -> None:
    meta = {"type": "welcome", "domain": "baskets", "correlation_id": "corr-1", "quiet_hours_override": True}
    notification = row(db, enqueue(db, TEMPLATE_MESSAGE, meta))
    assert notification["status"] == "queued"
    assert notification["to_wa_id"] == "+250788999001"
    assert notification["template_name"] == "welcome_message"
    assert notification["language"] == "en"
    assert notification["notification_type"] == "welcome"
    assert notification["domain"] == "baskets"
    assert notification["correlation_id"] == "corr-1"
    assert notification["quiet_hours_override"] is True
    assert notification["retry_count"] == 0
    assert notification["locked_at"] is None
    assert notification["payload"] == {
        "messaging_product": "whatsapp",
        "to": "+250788999001",
        "type": "template",
        "template": {
            "name": "welcome_message",
            "language": {"code": "en"},
            "components": TEMPLATE_MESSAGE["template"]["components"],
        },
    }
    now = db.execute("SELECT now()").fetchone()[0]
    assert abs(notification["next_attempt_at"] - now) < timedelta(seconds=5), "due at once"


def test_defaults_when_meta_is_empty(db: psycopg.Connection) -> None:
    notification = row(db, enqueue(db, TEMPLATE_MESSAGE, None))
    assert notification["domain"] == "core"
    assert notification["notification_type"] == "welcome_message"
    assert notification["quiet_hours_override"] is False
    assert len(notification["correlation_id"]) == 36, "a generated UUID, so the audit trail can be found"


def test_text_message_and_phone_number_forms(db: psycopg.Connection) -> None:
    for raw in ("250 788-999-002", "(250) 788.999.002", "+250788999002", "250788999002"):
        notification = row(db, enqueue(db, {"to": raw, "text": "Your order is ready"}))
        assert notification["to_wa_id"] == "+250788999002"
        assert notification["payload"]["text"] == {"body": "Your order is ready", "preview_url": False}
        assert notification["notification_type"] == "text"


def test_delay_send_at_and_priority(db: psycopg.Connection) -> None:
    now = db.execute("SELECT now()").fetchone()[0]
    delayed = row(db, enqueue(db, TEMPLATE_MESSAGE, {"delay_seconds": 600, "priority": 5}))
    assert timedelta(seconds=590) < delayed["next_attempt_at"] - now < timedelta(seconds=610)
    assert delayed["priority"] == 5
    # send_at lies within the window of delay_seconds (30 days): a week from now, at 08:00 UTC+2.
    day = (now + timedelta(days=7)).date().isoformat()
    scheduled = row(db, enqueue(db, TEMPLATE_MESSAGE, {"send_at": f"{day}T08:00:00+02:00"}))
    assert scheduled["next_attempt_at"].isoformat().startswith(f"{day}T06:00:00")


def test_duplicate_dedupe_key_returns_existing_id_without_a_second_row(db: psycopg.Connection) -> None:
    first = enqueue(db, TEMPLATE_MESSAGE, {"dedupe_key": "order-42:paid"})
    second = enqueue(db, TEMPLATE_MESSAGE, {"dedupe_key": "order-42:paid"})
    assert first == second
    assert count(db) == 1
    assert enqueue(db, TEMPLATE_MESSAGE, {"dedupe_key": "order-43:paid"}) != first
    # Another recipient and text under the same key is refused (engine/test_dedupe.py has the cases).
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="order-42:paid"):
        enqueue(db, {"to": "+250788999009", "text": "different"}, {"dedupe_key": "order-42:paid"})


def test_concurrent_enqueues_with_one_dedupe_key_make_one_row(db_url: str, db: psycopg.Connection) -> None:
    ids, barrier = [], threading.Barrier(8)

    def worker() -> None:
        with connect(db_url, autocommit=True) as conn:
            barrier.wait()
            ids.append(enqueue(conn, TEMPLATE_MESSAGE, {"dedupe_key": "race"}))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert count(db) == 1


def test_enqueue_writes_a_queued_audit_row_naming_the_actor(db: psycopg.Connection) -> None:
    notification_id = enqueue(db, TEMPLATE_MESSAGE, {"domain": "orders"})
    event_type, details = db.execute(
        "SELECT event_type, details FROM notification_audit_log WHERE notification_id = %s",
        (notification_id,),
    ).fetchone()
    assert event_type == "queued"
    assert details["actor"] == "test"
    assert details["domain"] == "orders"


BAD_INPUT = [
    pytest.param([1, 2], None, "message must be a JSON object, got array", id="array-message"),
    pytest.param("hello", None, "message must be a JSON object, got string", id="string-message"),
    pytest.param(None, None, "message must be a JSON object, got null", id="json-null-message"),
    pytest.param({"text": "hi"}, None, "message.to is missing", id="no-recipient"),
    pytest.param({"to": 250788999001, "text": "hi"}, None, "message.to is missing", id="numeric-recipient"),
    pytest.param({"to": "abc", "text": "hi"}, None, "is not a WhatsApp number", id="letters"),
    pytest.param({"to": "+0788999001", "text": "hi"}, None, "is not a WhatsApp number", id="leading-zero"),
    pytest.param({"to": "+25078", "text": "hi"}, None, "is not a WhatsApp number", id="too-short"),
    pytest.param({"to": "+2507889990011234", "text": "hi"}, None, "is not a WhatsApp number", id="too-long"),
    pytest.param({"to": "+250788999001"}, None, "needs a template or a text", id="no-content"),
    pytest.param({"to": "+250788999001", "text": "  "}, None, "non-empty string", id="blank-text"),
    pytest.param({"to": "+250788999001", "text": "x" * 4097}, None, "at most 4096", id="long-text"),
    pytest.param({"to": "+250788999001", "text": "hi", "template": {"name": "a"}}, None, "both", id="both"),
    pytest.param(
        {"to": "+250788999001", "template": "welcome"}, None, "must be an object", id="template-str"
    ),
    pytest.param(
        {"to": "+250788999001", "template": {"name": "Welcome Msg"}},
        None,
        "not a Meta template name",
        id="template-name",
    ),
    pytest.param(
        {"to": "+250788999001", "template": {"name": "a", "language": "english"}},
        None,
        "not a language code",
        id="language",
    ),
    pytest.param(
        {"to": "+250788999001", "template": {"name": "a", "components": {}}},
        None,
        "components must be an array",
        id="components",
    ),
    pytest.param(
        {"to": "+250788999001", "text": "hi", "image": {}},
        None,
        "unsupported field(s): image",
        id="unknown-field",
    ),
    pytest.param({"to": "+250788999001", "text": "hi"}, [1], "meta must be a JSON object", id="meta-array"),
    pytest.param(
        {"to": "+250788999001", "text": "hi"},
        {"domain": "Baskets!"},
        "is not a domain name",
        id="domain-shape",
    ),
    pytest.param(
        {"to": "+250788999001", "text": "hi"}, {"domain": 7}, "is not a domain name", id="domain-number"
    ),
    pytest.param(
        {"to": "+250788999001", "text": "hi"}, {"quiet_hours_override": "yes"}, "true or false", id="override"
    ),
    pytest.param({"to": "+250788999001", "text": "hi"}, {"delay_seconds": -5}, "delay_seconds", id="delay"),
    pytest.param(
        {"to": "+250788999001", "text": "hi"}, {"send_at": "tomorrow-ish"}, "is not a timestamp", id="send-at"
    ),
    pytest.param(
        {"to": "+250788999001", "text": "hi"},
        {"delay_seconds": 1, "send_at": "2030-01-01"},
        "not both",
        id="delay-and-send-at",
    ),
    pytest.param({"to": "+250788999001", "text": "hi"}, {"priority": 1.5}, "whole number", id="priority"),
    pytest.param({"to": "+250788999001", "text": "hi"}, {"dedupe_key": ""}, "dedupe_key", id="dedupe-empty"),
]


@pytest.mark.parametrize(("message", "meta", "expected"), BAD_INPUT)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    db: psycopg.Connection, message, meta, expected
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        enqueue(db, message, meta)
    assert expected in str(caught.value)
    assert count(db) == 0
    assert db.execute("SELECT count(*) FROM notification_audit_log").fetchone()[0] == 0


def test_sql_null_message_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="got NULL"):
        db.execute("SELECT queueNotification(NULL, '{}')")
    assert count(db) == 0

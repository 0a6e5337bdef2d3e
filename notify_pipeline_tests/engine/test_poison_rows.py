"""Poison rows (issue 18): template components PostgreSQL stores but Python's json cannot read.

At enqueue, queueNotification refuses them (22023, the field named). Rows already in the queue
(written before the check, or by hand) are failed one by one with invalid_payload while every other
row is sent once: real PostgreSQL, the emulator over real HTTP, counted from its ledger.
"""

from __future__ import annotations

import json
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from notify_pipeline.demo.seed import seed_demo
from notify_pipeline.whatsapp.messages import callback_data
from notify_pipeline_tests.support.emulator import ORDER_CONFIRMATION_OK, WELL_FILLED
from notify_pipeline_tests.support.engine import enqueue, enqueue_many, load_demo_templates, run_drain

TO = "+250788999001"
DEEP = "[" * 3000 + "]" * 3000  # PostgreSQL's jsonb takes it; Python's json stops near 1,000
DIGITS = "9" * 5000  # an integer Python refuses to read (more than 4,300 digits)
HUGE_FLOAT = "1" + "0" * 400 + ".5"  # read as a float it is infinite: not JSON once written back


def template_json(components: str, name: str = "welcome_message") -> str:
    """A message as JSON text, with `components` spliced in raw (Python cannot build these)."""
    shell = {"to": TO, "template": {"name": name, "language": "en", "components": "@"}}
    return json.dumps(shell).replace('"@"', components)


def stored_json(components: str) -> str:
    """A payload as queueNotification stores it, with `components` spliced in raw."""
    shell = {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "template",
        "template": {"name": "welcome_message", "language": {"code": "en"}, "components": "@"},
    }
    return json.dumps(shell).replace('"@"', components)


def body_with(parameter: str) -> str:
    return f'[{{"type": "body", "parameters": [{parameter}]}}]'


# (id, components as JSON text, words of the refusal naming the field)
POISON_SHAPES = [
    ("nested-3000", DEEP, "template.components nests deeper than 16 levels"),
    ("nested-in-a-parameter", body_with(f'{{"type": "text", "text": {DEEP}}}'), "nests deeper"),
    (
        "digits-as-text",
        body_with(f'{{"type": "text", "text": {DIGITS}}}'),
        "parameters[0].text must be a string",
    ),
    (
        "digits-as-amount",
        body_with(f'{{"type": "currency", "currency": {{"fallback_value": "$1", "amount_1000": {DIGITS}}}}}'),
        "parameters[0].currency.amount_1000",
    ),
    (
        "huge-float-in-a-location",
        f'[{{"type": "header", "parameters": [{{"type": "location", "location": '
        f'{{"latitude": {HUGE_FLOAT}, "longitude": 1}}}}]}}]',
        "location.latitude",
    ),
    (
        "digits-in-a-flow-action",
        '[{"type": "button", "sub_type": "flow", "index": "0", "parameters": '
        f'[{{"type": "action", "action": {{"flow_action_data": {{"n": {DIGITS}}}}}}}]}}]',
        "parameters[0].action holds a number",
    ),
]

# Shapes that are not Meta's, refused with the field and what to fix.
SHAPE_REFUSALS = [
    ("footer-component", [{"type": "footer"}], "template.components[0].type must be one of header, body, button"),
    ("parameter-type", [{"type": "body", "parameters": [{"type": "sticker"}]}], "parameters[0].type must be one of text"),
    ("parameter-not-object", [{"type": "body", "parameters": ["Aline"]}], "parameters[0] must be an object"),
    ("text-missing", [{"type": "body", "parameters": [{"type": "text"}]}], "parameters[0].text is missing"),
    ("text-too-long", [{"type": "body", "parameters": [{"type": "text", "text": "x" * 1025}]}], "1025 characters; at most 1024"),
    ("unknown-field", [{"type": "body", "parameters": [{"type": "text", "text": "a", "extra": {}}]}], "unsupported field(s) for a text parameter: 'extra'"),
    ("index-as-integer", [{"type": "button", "sub_type": "url", "index": 0}], 'index must be the button\'s position as a string from "0" to "9"'),
    ("media-without-link", [{"type": "header", "parameters": [{"type": "image", "image": {}}]}], "image needs an id or a link"),
    ("currency-code", [{"type": "body", "parameters": [{"type": "currency", "currency": {"fallback_value": "$1", "code": "dollars"}}]}], "currency.code must be an ISO 4217 code"),
    ("too-many-parameters", [{"type": "body", "parameters": [{"type": "text", "text": "a"}] * 251}], "251 parameters; at most 250"),
    ("too-many-components", [{"type": "body"}] * 17, "17 components; at most 16"),
    ("carousel-in-a-card", [{"type": "carousel", "cards": [{"card_index": 0, "components": [{"type": "carousel"}]}]}], "cards[0].components[0].type must be one of header, body, button,"),
]  # fmt: skip


def _written(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT (SELECT count(*) FROM notifications) + (SELECT count(*) FROM notification_audit_log)"
    ).fetchone()[0]


def _refusal(db: psycopg.Connection, message_json: str) -> psycopg.Error:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        db.execute("SELECT queueNotification(%s::jsonb, '{}')", (message_json,))
    return caught.value


def test_poison_shapes_and_other_shapes_are_refused_at_enqueue_naming_the_field(
    db: psycopg.Connection,
) -> None:
    cases = [(case, template_json(raw), words) for case, raw, words in POISON_SHAPES]
    cases += [(case, template_json(json.dumps(shape)), words) for case, shape, words in SHAPE_REFUSALS]
    for case, message_json, words in cases:
        error = _refusal(db, message_json)
        text = error.diag.message_primary or ""
        assert words in text, (case, text)
        assert error.diag.message_hint, f"{case}: no hint"
        assert len(text) < 400, f"{case}: the refusal repeats the input: {text[:100]}"
    assert _written(db) == 0


def test_a_delay_below_a_microsecond_is_refused_as_bad_input_not_an_overflow(db: psycopg.Connection) -> None:
    # 1e-400 is a JSON number jsonb keeps exactly, but no double holds it (SQLSTATE 22003 before).
    text = json.dumps({"to": TO, "text": "hi"})
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        db.execute("SELECT queueNotification(%s::jsonb, %s::jsonb)", (text, '{"delay_seconds": 1e-400}'))
    assert "meta.delay_seconds" in caught.value.diag.message_primary and caught.value.diag.message_hint
    assert _written(db) == 0
    # A microsecond and more is still a delay, and 0 is now.
    for delay in ("0.000001", "0", "2.5"):
        db.execute("SELECT queueNotification(%s::jsonb, %s::jsonb)", (text, f'{{"delay_seconds": {delay}}}'))
    assert db.execute("SELECT count(*) FROM notifications").fetchone()[0] == 3


# Shapes Meta and the emulator take, beyond the emulator tests' well-filled sends.
MORE_ACCEPTED = [
    [{"type": "header", "parameters": [{"type": "document", "document": {"link": "https://example.invalid/r.pdf", "filename": "r.pdf"}}]}],
    [{"type": "header", "parameters": [{"type": "location", "location": {"latitude": -1.9441, "longitude": 30.0619, "name": "Kigali", "address": "KN 3 Rd"}}]}],
    [{"type": "header", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Aline"}]}, *ORDER_CONFIRMATION_OK],
    [{"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "thanks"}]}],
    [{"type": "button", "sub_type": "copy_code", "index": "1", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]}],
    [{"type": "button", "sub_type": "flow", "index": "0", "parameters": [{"type": "action", "action": {"flow_token": "t", "flow_action_data": {"step": 2}}}]}],
    [{"type": "body", "parameters": [{"type": "date_time", "date_time": {"fallback_value": "June 1", "year": 2026, "calendar": "GREGORIAN"}}]}],
    [{"type": "limited_time_offer", "parameters": [{"type": "limited_time_offer", "limited_time_offer": {"expiration_time_ms": 1767225600000}}]}],
    [{"type": "body", "parameters": [{"type": "text", "text": "Aline"}]}, {"type": "carousel", "cards": [
        {"card_index": i, "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": f"https://example.invalid/{i}.png"}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": f"card-{i}"}]},
        ]} for i in range(10)]}],
    [{"type": "BODY", "parameters": [{"type": "TEXT", "text": "Aline"}]}],  # Meta's docs write types either way
    [],
]  # fmt: skip


def test_every_shape_the_emulator_and_the_demo_send_still_enqueues(db: psycopg.Connection) -> None:
    shapes = [(name, language, components) for name, language, components in WELL_FILLED]
    shapes += [("welcome_message", "en", components) for components in MORE_ACCEPTED]
    for name, language, components in shapes:
        enqueue(db, {"to": TO, "template": {"name": name, "language": language, "components": components}})
    report = seed_demo(db, notifications=100, contacts=10)  # every demo template, as the demo fills it
    expected = len(shapes) + report.notifications
    assert db.execute("SELECT count(*) FROM notifications").fetchone()[0] == expected


# Rows already queued (before the enqueue check, or by hand): (column, JSON text, words of the cause).
QUEUED_POISON = [
    ("payload", stored_json(DEEP), "payload is nested deeper than 32 levels"),
    ("payload", stored_json(body_with(f'{{"type": "text", "text": {DIGITS}}}')), "4300 digits"),
    ("payload", stored_json(body_with(f'{{"type": "text", "text": {HUGE_FLOAT}}}')), "too large for a float"),
    ("payload", json.dumps({"to": TO, "type": "template", "template": "welcome_message"}), "could not be decided"),
    ("deferrals", '{"a": ' * 3000 + "1" + "}" * 3000, "deferrals is nested deeper than Python's JSON decoder allows"),
]  # fmt: skip


@pytest.fixture
def queue(db):
    load_demo_templates(db)
    return db


def _poison(db: psycopg.Connection, notification_id: int, column: str, value: str) -> None:
    statement = sql.SQL("UPDATE notifications SET {} = %s::jsonb WHERE id = %s").format(
        sql.Identifier(column)
    )
    db.execute(statement, (value, notification_id))


def test_rows_python_cannot_read_fail_alone_and_every_other_row_is_sent_once(queue, db_url, emulator) -> None:
    emulator.configure(limits_enabled=False)
    ids = enqueue_many(queue, 6 * len(QUEUED_POISON))
    bad = {ids[6 * i + 2]: poison for i, poison in enumerate(QUEUED_POISON)}  # spread over the batches
    for notification_id, (column, value, _) in bad.items():
        _poison(queue, notification_id, column, value)
    good = [i for i in ids if i not in bad]

    report = run_drain(db_url, emulator, batch_size=4, concurrency=4, throughput_per_s=None)

    assert report.fault is None and report.stopped_by == "drained", report.fault
    assert report.sent == len(good) and report.failed == {"invalid_payload": len(bad)}
    sent = Counter(m["biz_opaque_callback_data"] for m in emulator.messages())
    assert sent == Counter({callback_data(i): 1 for i in good}), "every good row sent once, no bad one"
    rows = queue.execute(
        "SELECT id, status, last_error_code, error_message FROM notifications WHERE id = ANY(%s)",
        (list(bad),),
    ).fetchall()
    for notification_id, status, code, message in rows:
        words = bad[notification_id][2]
        assert (status, code) == ("failed", "invalid_payload"), notification_id
        assert words in message and len(message) < 400, message
    audited = dict(
        queue.execute(
            "SELECT notification_id, details->>'error_code' FROM notification_audit_log "
            "WHERE event_type = 'failed' AND notification_id = ANY(%s)",
            (list(bad),),
        ).fetchall()
    )
    assert audited == {i: "invalid_payload" for i in bad}

    again = run_drain(db_url, emulator, batch_size=4, throughput_per_s=None)
    assert again.claimed == 0 and again.fault is None, "failed rows are never claimed again"
    assert emulator.stats()["total"] == len(good)


def test_a_template_definition_python_cannot_read_does_not_stop_sending(queue, db_url, emulator) -> None:
    emulator.configure(limits_enabled=False)
    ids = enqueue_many(queue, 12)
    queue.execute(
        "UPDATE whatsapp_templates SET components = %s::jsonb "
        "WHERE template_name = 'welcome_message' AND language = 'en'",
        (DEEP,),
    )
    report = run_drain(db_url, emulator, batch_size=4, throughput_per_s=None)
    # Like any definition the engine cannot read, Meta (here the emulator) judges the sends.
    assert report.fault is None and report.sent == len(ids), report.fault
    assert {m["biz_opaque_callback_data"] for m in emulator.messages()} == {callback_data(i) for i in ids}


def test_an_answer_postgresql_cannot_store_is_written_cleaned_and_replays_from_the_journal(
    db, db_url, tmp_path
) -> None:
    """An error text with NUL and a lone surrogate (a proxy's echoed body, say) must not fail the
    batch's write, nor, once journaled, every later drain's replay."""
    import asyncio

    from notify_pipeline.db.connect import connect_async
    from notify_pipeline.engine import journal, store

    load_demo_templates(db)
    first, second = (enqueue(db, {"to": TO, "text": {"body": "hi"}}) for _ in range(2))
    db.execute(
        "UPDATE notifications SET locked_by = 'w', locked_at = now() WHERE id IN (%s, %s)", (first, second)
    )
    hostile = "bad gateway\x00 \ud800" + "x" * 50_000

    def outcome(notification_id: int) -> store.Outcome:
        return store.Outcome("failed", notification_id, "failed", 1, 0, None, hostile, "http_502\x00")

    journal.append(tmp_path, "w", [outcome(second)])  # what a drain left when the database was away
    by_worker, _ = journal.read(journal.pending(tmp_path)[0])

    async def write() -> None:
        conn = await connect_async(db_url, actor="test", autocommit=True)
        try:
            await store.write_outcomes(conn, [outcome(first)], worker="w")
            await store.write_outcomes(conn, by_worker["w"], worker="w")
        finally:
            await conn.close()

    asyncio.run(write())
    rows = db.execute(
        "SELECT status, error_message, last_error_code FROM notifications WHERE id IN (%s, %s)",
        (first, second),
    ).fetchall()
    assert len(rows) == 2
    for status, message, code in rows:
        assert status == "failed" and code == "http_502\ufffd"
        assert message.startswith("bad gateway\ufffd ") and len(message) <= store.MAX_ERROR_CHARS


def test_a_journal_line_that_is_json_but_not_an_entry_is_skipped_and_the_rest_replays(tmp_path) -> None:
    from notify_pipeline.engine import journal, store

    path = journal.append(tmp_path, "w", [store.Outcome("sent", 7, "sent", 0, 0, wa_message_id="wamid.7")])
    with path.open("a") as f:
        f.write('{"worker": "w", "outcome": {"surprise": 1}}\n[1, 2]\n{"event": 3}\n')
    journal.append(tmp_path, "w", [store.Outcome("sent", 8, "sent", 0, 0, wa_message_id="wamid.8")])
    by_worker, events = journal.read(path)
    assert [o.id for o in by_worker["w"]] == [7, 8] and events == []

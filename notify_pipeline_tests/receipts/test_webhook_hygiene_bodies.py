"""One bad update is refused alone, over real HTTP to `serve`'s app under uvicorn on a real
PostgreSQL: a NaN body among 150 concurrent good ones (the good ones stored, the bad one 400), a
NUL in a user's text replaced and applied, oversized fields and unstorable values 400 (never 503),
timestamps outside Meta's window refused update by update while the rest of the body lands."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from notify_pipeline.receipts.bounds import MAX_AGE, REPLACEMENT
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign
from notify_pipeline_tests.support.receipts import (
    inbound_item,
    preference_item,
    sent_awaiting_receipts,
    status_item,
    unix,
    webhook_body,
)
from notify_pipeline_tests.support.service import APP_SECRET, running_service

DAY = 86_400


def events(db) -> int:
    return db.execute("SELECT count(*) FROM webhook_events").fetchone()[0]


async def post_all(base_url: str, bodies: list[bytes]) -> list[int]:
    """Every body POSTed at once, each signed; their status codes in the same order."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=120, limits=limits) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/webhooks/whatsapp",
                    content=body,
                    headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(APP_SECRET, body)},
                )
                for body in bodies
            )
        )
    return [r.status_code for r in responses]


def test_a_nan_body_among_150_concurrent_good_ones_is_refused_alone(db, db_url) -> None:
    wamids = sent_awaiting_receipts(db, 150)
    good = [webhook_body({"statuses": [status_item(wamid)]}) for wamid in wamids]
    # Python's json writes NaN; PostgreSQL's jsonb refuses it.
    bad = webhook_body({"statuses": [status_item("wamid.NAN", pricing={"rate": float("nan")})]})
    assert b"NaN" in bad
    bodies = [*good[:75], bad, *good[75:]]
    with running_service(db_url) as service:
        codes = asyncio.run(post_all(service.base_url, bodies))
    assert codes[75] == 400
    assert codes[:75] + codes[76:] == [200] * 150
    delivered = db.execute(
        "SELECT count(*) FROM notifications WHERE wa_message_id = ANY(%s) AND delivery_status = 'delivered'",
        (wamids,),
    ).fetchone()[0]
    assert delivered == 150
    assert db.execute("SELECT count(*) FROM webhook_events WHERE wa_message_id = 'wamid.NAN'").fetchone() == (
        0,
    )


def test_a_nul_in_a_users_text_is_replaced_and_the_reply_applied(db, db_url) -> None:
    raw = webhook_body({"messages": [inbound_item("wamid.INBOUND.NUL", "STOP\x00")]})
    assert b"\\u0000" in raw
    with running_service(db_url) as service:
        response = service.post(raw)
    assert response.status_code == 200, response.text
    text, outcome = db.execute(
        "SELECT payload->'text'->>'body', outcome FROM webhook_events WHERE update_key = 'wamid.INBOUND.NUL'"
    ).fetchone()
    assert text == "STOP" + REPLACEMENT
    assert outcome == "opt_out"
    assert db.execute(
        "SELECT opted_out FROM contact_preferences WHERE wa_id = '+250788000003'"
    ).fetchone() == (True,)


def failed_status(wamid: str, code: object = 131026, title: str = "Message undeliverable") -> dict:
    return status_item(wamid, "failed", errors=[{"code": code, "title": title}])


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (failed_status("wamid.LONGCODE", code="1" * 20_000), "status.errors[].code is longer than 16"),
        (failed_status("wamid.LONGTITLE", title="x" * 20_000), "title is longer than 2000"),
        (status_item("wamid." + "A" * 20_000), "status.id is missing or not a string of at most 256"),
        (status_item("wamid.LONGRECIPIENT", recipient_id="2" * 20_000), "recipient_id is longer than 256"),
        (status_item("wamid.SURROGATE", conversation={"id": "\ud800"}), "lone UTF-16 surrogate"),
    ],
    ids=["error-code", "title", "message-id", "recipient", "lone-surrogate"],
)
def test_oversized_or_unstorable_fields_are_400_for_that_body_only(db, db_url, item, says) -> None:
    (wamid,) = sent_awaiting_receipts(db, 1)
    with running_service(db_url) as service:
        refused = service.post(webhook_body({"statuses": [item]}))
        after = service.post(webhook_body({"statuses": [status_item(wamid)]}))
    assert refused.status_code == 400 and says in refused.text, refused.text
    assert after.status_code == 200, "the service goes on storing the next body"
    assert db.execute("SELECT wa_message_id FROM webhook_events").fetchall() == [(wamid,)]


def test_infinity_is_400_not_stored(db, db_url) -> None:
    raw = webhook_body({"statuses": [status_item("wamid.INF")]}).replace(
        b'"delivered"', b'"delivered","x":1e400'
    )
    with running_service(db_url) as service:
        response = service.post(raw)
    assert response.status_code == 400 and "too large" in response.text
    assert events(db) == 0


def test_a_timestamp_in_5138_is_refused_alone_and_a_6_day_old_one_applied(db, db_url) -> None:
    (wamid,) = sent_awaiting_receipts(db, 1)
    forged = webhook_body(
        {"user_preferences": [preference_item("250788000004", "stop", 99_999_999_999)]}, "user_preferences"
    )
    mixed = webhook_body(
        {
            "statuses": [
                status_item(wamid, "delivered", at=unix(6 * DAY)),
                status_item(wamid, "read", at=unix(-3600)),  # an hour ahead: refused
            ],
            "messages": [inbound_item("wamid.OLD.STOP", "STOP", at=unix(MAX_AGE.total_seconds() + DAY))],
        }
    )
    with running_service(db_url) as service:
        assert service.post(forged).status_code == 200
        assert service.post(mixed).status_code == 200
        resume = webhook_body(
            {"user_preferences": [preference_item("250788000004", "resume", unix(60))]}, "user_preferences"
        )
        assert service.post(resume).status_code == 200
        stop = webhook_body(
            {"user_preferences": [preference_item("250788000004", "stop", unix(30))]}, "user_preferences"
        )
        assert service.post(stop).status_code == 200
        final_resume = webhook_body(
            {"user_preferences": [preference_item("250788000004", "resume", unix())]}, "user_preferences"
        )
        assert service.post(final_resume).status_code == 200
    refused = dict(
        db.execute(
            "SELECT kind || ':' || coalesce(status, ''), outcome FROM webhook_events "
            "WHERE outcome LIKE 'refused:%%' AND applied_at IS NOT NULL"
        ).fetchall()
    )
    assert set(refused) == {"user_preference:stop", "status:read", "message:text"}
    assert "5138-" in refused["user_preference:stop"] and "ahead" in refused["user_preference:stop"]
    assert f"more than {MAX_AGE.days} days ago" in refused["message:text"]
    row = db.execute(
        "SELECT delivery_status, read_at FROM notifications WHERE wa_message_id = %s", (wamid,)
    ).fetchone()
    assert row == ("delivered", None), "the 6-day-old delivery applied, the future read not"
    marketing = db.execute(
        "SELECT marketing_opted_out, marketing_changed_at < now() + interval '1 hour' "
        "FROM contact_preferences WHERE wa_id = '+250788000004'"
    ).fetchone()
    assert marketing == (False, True), "later preferences still count: the forged one pinned nothing"
    opted_out = db.execute(
        "SELECT opted_out FROM contact_preferences WHERE wa_id = '+250788000003'"
    ).fetchone()
    assert opted_out in (None, (False,)), "a STOP older than Meta's window is not applied"
    stop_applied = db.execute(
        "SELECT count(*) FROM webhook_events WHERE kind = 'user_preference' AND outcome = 'marketing stop'"
    ).fetchone()[0]
    assert stop_applied == 1, "the recent stop was applied between the two resumes"


def test_a_replayed_refused_update_stays_refused(db, db_url) -> None:
    body = webhook_body(
        {"user_preferences": [preference_item("250788000004", "stop", 99_999_999_999)]}, "user_preferences"
    )
    with running_service(db_url) as service:
        assert [service.post(body).status_code for _ in range(2)] == [200, 200]
    count, outcome = db.execute("SELECT count(*), min(outcome) FROM webhook_events").fetchone()
    assert count == 1 and outcome.startswith("refused: dated 5138-")
    assert db.execute("SELECT count(*) FROM contact_preferences WHERE marketing_opted_out").fetchone() == (0,)

"""The group commit's net, on a real PostgreSQL: a body whose value the database refuses (one that
got past parsing's checks) is refused alone with UnstorableBody, the bodies batched with it are
stored, and a data error is never taken for the database being away (503). No log line carries a
recipient's number."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime

import pytest

from notify_pipeline.db.connect import connect_async
from notify_pipeline.receipts.ingest import DatabaseUnavailable, Ingestor, UnstorableBody
from notify_pipeline.receipts.parse import Update, parse_body
from notify_pipeline_tests.support.receipts import sent_awaiting_receipts, status_item, webhook_body

NUMBER = "+250788123456"


def good_updates(wamid: str) -> list[Update]:
    return parse_body(webhook_body({"statuses": [status_item(wamid)]}))


def status(wamid: str, **fields) -> Update:
    """A status update built by hand, past every check parse_body makes."""
    values = {"kind": "status", "key": f"{wamid}|failed", "payload": {}, "wa_message_id": wamid}
    values |= {"status": "failed", "at": datetime.now(UTC), **fields}
    return Update(**values)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


async def submit_all(db_url: str, bodies: list[list[Update]], **options) -> list[object]:
    """Every body submitted at once to one Ingestor; each one's result or exception."""

    async def connect():
        return await connect_async(db_url, actor="test:ingest", autocommit=True)

    ingestor = Ingestor(connect, retry_waiting_s=3600, **options)
    await ingestor.start()
    try:
        return await asyncio.gather(*(ingestor.submit(body) for body in bodies), return_exceptions=True)
    finally:
        await ingestor.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"payload": {"rate": float("nan")}},  # jsonb refuses NaN (22P02)
        {"payload": {"text": "a\x00b"}},  # jsonb refuses \u0000 (22P05)
        {"error_message": "a\x00b"},  # text cannot hold NUL (psycopg refuses it)
        {"error_message": "\ud800"},  # no UTF-8 for a lone surrogate
        {"at": NUMBER},  # not a timestamp (22007), the value echoed in PostgreSQL's message
        {"payload": {"v": nested(5000)}},  # too deep for json.dumps on a writer's stack
    ],
    ids=["nan", "nul-in-json", "nul-in-text", "surrogate", "bad-timestamp", "too-deep"],
)
def test_one_unstorable_body_among_150_is_refused_alone(db, db_url, caplog, bad) -> None:
    wamids = sent_awaiting_receipts(db, 150)
    bodies = [good_updates(wamid) for wamid in wamids]
    bodies.insert(100, [status("wamid.BAD", **bad)])
    with caplog.at_level(logging.INFO):
        results = asyncio.run(submit_all(db_url, bodies, linger_s=0.05))
    refused = results.pop(100)
    assert isinstance(refused, UnstorableBody), refused
    assert not [r for r in results if isinstance(r, BaseException)]
    assert db.execute(
        "SELECT count(*) FROM notifications WHERE wa_message_id = ANY(%s) AND delivery_status = 'delivered'",
        (wamids,),
    ).fetchone() == (150,)
    assert db.execute("SELECT count(*) FROM webhook_events WHERE wa_message_id = 'wamid.BAD'").fetchone() == (
        0,
    )
    assert NUMBER not in str(refused) and NUMBER not in caplog.text


def test_an_index_entry_too_large_is_400_not_503(db, db_url) -> None:
    """A 20,000-character error code, past parsing, makes the late-failure counter's key too large
    for its index (SQLSTATE 54000, which psycopg files under OperationalError)."""
    (wamid,) = sent_awaiting_receipts(db, 1)
    (other,) = sent_awaiting_receipts(db, 1, first=1)
    code = secrets.token_hex(10_000)  # random: PostgreSQL cannot compress it under the index's limit
    huge = status(wamid, error_code=code, error_message="Message undeliverable")
    results = asyncio.run(submit_all(db_url, [[huge], good_updates(other)]))
    assert isinstance(results[0], UnstorableBody) and not isinstance(results[0], DatabaseUnavailable)
    assert "54000" in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert db.execute("SELECT status FROM notifications WHERE wa_message_id = %s", (wamid,)).fetchone() == (
        "sent",
    )

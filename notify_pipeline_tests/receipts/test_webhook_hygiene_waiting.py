"""Statuses waiting for their message id, on a real PostgreSQL and `serve`'s app under uvicorn:
with 50,000 older statuses waiting for ids that never land, a waiting status whose message exists
is applied by the retry's timer, with no webhook traffic at all; the retry takes every ready
status, oldest first, however many, batch after batch."""

from __future__ import annotations

import asyncio
import time

from notify_pipeline.db.connect import connect_async
from notify_pipeline.receipts import waiting
from notify_pipeline_tests.support.receipts import sent_awaiting_receipts
from notify_pipeline_tests.support.service import running_service

ORPHANS = 50_000


def add_orphans(db, count: int) -> None:
    """`count` statuses waiting for message ids no notification will ever carry."""
    db.execute(
        "INSERT INTO webhook_events (kind, update_key, wa_message_id, status, status_at, payload, outcome) "
        "SELECT 'status', 'orphan|' || g, 'wamid.ORPHAN' || g, 'delivered', now(), '{}', "
        "'waiting: no notification carries this message id yet' FROM generate_series(1, %s) g",
        (count,),
    )
    db.execute("ANALYZE webhook_events")


def store_waiting(db, wamid: str) -> int:
    """A status stored while the drain's transaction recording `wamid` was still open: neither the
    trigger nor the insert applied it."""
    return db.execute(
        "INSERT INTO webhook_events (kind, update_key, wa_message_id, status, status_at, payload, outcome) "
        "VALUES ('status', %s, %s, 'delivered', now(), '{}', "
        "'waiting: no notification carries this message id yet') RETURNING id",
        (f"{wamid}|delivered", wamid),
    ).fetchone()[0]


def applied(db, event_ids: list[int]) -> int:
    return db.execute(
        "SELECT count(*) FROM webhook_events WHERE id = ANY(%s) AND applied_at IS NOT NULL", (event_ids,)
    ).fetchone()[0]


def test_a_ready_status_behind_50000_orphans_is_applied_on_the_timer(db, db_url) -> None:
    (wamid,) = sent_awaiting_receipts(db, 1)
    with running_service(db_url) as service:
        assert service.http.get("/healthz").status_code == 200
        add_orphans(db, ORPHANS)
        started = time.monotonic()
        event_id = store_waiting(db, wamid)
        deadline = started + 120
        while not applied(db, [event_id]):
            assert time.monotonic() < deadline, "the waiting status was not applied within 120 s"
            time.sleep(0.2)
        took = time.monotonic() - started
    row = db.execute(
        "SELECT delivery_status FROM notifications WHERE wa_message_id = %s", (wamid,)
    ).fetchone()
    assert row == ("delivered",)
    still_waiting = db.execute("SELECT count(*) FROM webhook_events WHERE applied_at IS NULL").fetchone()[0]
    assert still_waiting == ORPHANS, "the orphans wait on, untouched"
    print(
        f"\nwaiting-status retry: applied {took:.1f} s after it was stored (timer every "
        f"{waiting.RETRY_EVERY_S:g} s), {ORPHANS:,} orphans waiting, no webhook traffic"
    )


def test_every_ready_status_is_applied_oldest_first_batch_after_batch(db, db_url) -> None:
    add_orphans(db, ORPHANS)
    wamids = sent_awaiting_receipts(db, 7)
    event_ids = [store_waiting(db, wamid) for wamid in wamids]

    async def one_round() -> tuple[int, float]:
        conn = await connect_async(db_url, actor="test:retry", autocommit=True)
        try:
            started = time.perf_counter()
            count = await waiting.apply_ready(conn, batch=3)
            return count, time.perf_counter() - started
        finally:
            await conn.close()

    count, took = asyncio.run(one_round())
    assert count == 7 and applied(db, event_ids) == 7
    assert db.execute(
        "SELECT count(*) FROM notifications WHERE wa_message_id = ANY(%s) AND delivery_status = 'delivered'",
        (wamids,),
    ).fetchone() == (7,)
    (stamps,) = db.execute(
        "SELECT array_agg(applied_at ORDER BY id) FROM webhook_events WHERE id = ANY(%s)", (event_ids,)
    ).fetchone()
    assert len(set(stamps)) == 3, "three transactions: 3, 3 and 1"
    assert stamps == sorted(stamps), "oldest first"
    idle, idle_took = asyncio.run(one_round())
    assert idle == 0
    print(
        f"\nwaiting-status retry round, {ORPHANS:,} orphans: {took * 1000:.0f} ms for 7 ready in batches "
        f"of 3, {idle_took * 1000:.0f} ms with none ready"
    )

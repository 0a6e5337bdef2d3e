"""Statuses waiting for their message id, retried on a timer.

A status that arrives before the drain has recorded its message id waits in webhook_events; the
trigger of 0006 applies it when the id lands. One case slips past both: the drain records the id
in a transaction that overlaps the one storing the status, so neither sees the other. The retry
catches those. It looks only at waiting statuses whose id a notification now carries (a join of
the two partial indexes on the message id), oldest first, so statuses waiting for ids that never
land (Meta's statuses for messages another system sent) cost an index entry each and starve
nothing. `notify-pipeline serve` runs it as a task of its own, every RETRY_EVERY_S seconds.

The same round matches waiting statuses that name their notification by our callback data to
sends that got no answer (receipts/reconcile.py): such a status usually arrives while the drain
still waits for the answer, before the row says its send went unanswered. These come from an index
of their own (only statuses that name one of our rows enter it), oldest first, however many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg

from notify_pipeline.receipts import reconcile

log = logging.getLogger(__name__)

RETRY_EVERY_S = 10.0
RETRY_BATCH = 5000  # statuses per transaction

# The waiting statuses come from their partial index; each is looked up in notifications' unique
# index on the message id (a correlated subquery, so never a hash join reading all notifications).
RETRY_WAITING = """
WITH ready AS MATERIALIZED (
    SELECT e.id FROM webhook_events e
     WHERE e.kind = 'status' AND e.applied_at IS NULL
       AND (SELECT n.id FROM notifications n WHERE n.wa_message_id = e.wa_message_id) IS NOT NULL)
SELECT notify_apply_statuses(array(SELECT id FROM ready ORDER BY id LIMIT %(limit)s))
"""


async def apply_ready(conn: psycopg.AsyncConnection, batch: int = RETRY_BATCH) -> int:
    """Apply every waiting status whose message id a notification carries, oldest first, `batch`
    per transaction; then match waiting statuses that name a notification to its unanswered send.
    Returns how many statuses were applied by their message id."""
    total = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(RETRY_WAITING, {"limit": batch})
            applied = (await cur.fetchone())[0]
        total += applied
        if applied < batch:
            break
    await reconcile.reconcile_waiting(conn, batch)
    return total


async def retry_forever(
    connect: Callable[[], Awaitable[psycopg.AsyncConnection]], every_s: float = RETRY_EVERY_S
) -> None:
    """apply_ready now and every `every_s` seconds, on a connection of its own, until cancelled.
    A failed round (the database away, a deadlock with a writer) is logged and retried next round."""
    conn: psycopg.AsyncConnection | None = None
    try:
        while True:
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                applied = await apply_ready(conn)
                if applied:
                    log.info("applied %d status(es) that were waiting for their message id", applied)
            except psycopg.Error as exc:
                log.warning(
                    "retry of waiting statuses failed, next in %g s: %s",
                    every_s,
                    (str(exc).splitlines() or [type(exc).__name__])[0],
                )
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
                conn = None
            await asyncio.sleep(every_s)
    finally:
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

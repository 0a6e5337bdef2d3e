"""A send that got no answer, matched to its receipt: no second send when Meta had the first.

A timeout after the request left, a gateway's 502 or 504, or a 200 without a message id leaves a
row without its message id although Meta may have accepted the message. The drain keeps such a
row queued, with the answer's label in last_error_code, for `receipt_wait_s` (engine/outcomes.py).
Meta echoes each send's `biz_opaque_callback_data`, `np1:<notification id>`, in that message's
status webhooks. A status that names a row this way, came to our sender number (the phone number
id `serve` is configured with, WHATSAPP_PHONE_NUMBER_ID: statuses of other numbers and other apps
on the business account never match) and went to the row's recipient records the row `sent` with
the status's message id, and the statuses apply as any others. A row that failed meanwhile is
recorded sent too (Meta had it after all). A row that already carries another message id keeps
it: the status's message was a second send, recorded on the row (duplicate_wa_message_ids) and
counted once in the `duplicate_sends` counter. The matching is SQL (migration 0014,
notify_reconcile_statuses); it runs as statuses are stored, and on serve's timer for statuses that
arrived before the drain wrote the row's unanswered send (receipts/waiting.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from notify_pipeline import settings
from notify_pipeline.engine.outcomes import AWAITS_RECEIPT
from notify_pipeline.receipts.parse import Update

log = logging.getLogger(__name__)

RECONCILE = "SELECT confirmed, duplicates FROM notify_reconcile_statuses(%(ids)s, %(unanswered)s)"

# Waiting statuses that name a notification, oldest first, from their own partial index (0014).
NAMING_WAITING = """
SELECT id FROM webhook_events
 WHERE applied_at IS NULL AND kind = 'status' AND notification_id IS NOT NULL AND id > %(after)s
 ORDER BY id LIMIT %(limit)s
"""

_warned_unconfigured = False


@dataclass
class Reconciled:
    confirmed: int = 0  # rows recorded sent from a status naming them
    duplicates: int = 0  # second sends found (each message id once)

    def __iadd__(self, other: Reconciled) -> Reconciled:
        self.confirmed += other.confirmed
        self.duplicates += other.duplicates
        return self


def our_sender() -> str | None:
    """The phone number id our sends go out from (settings.sender_key), or None when unset."""
    key = settings.sender_key()
    return None if key == "default" else key


def named_notification(update: Update, sender: str | None) -> int | None:
    """The notification a status names, if it came to our sender number; else None."""
    global _warned_unconfigured
    if update.notification_id is None:
        return None
    if sender is None:
        if not _warned_unconfigured:
            _warned_unconfigured = True
            log.warning(
                "status webhooks name notifications, but WHATSAPP_PHONE_NUMBER_ID is not set for serve: "
                "sends that got no answer are sent again after their wait instead of being matched "
                "to these receipts. Set it to the sender's phone number id"
            )
        return None
    return update.notification_id if update.phone_number_id == sender else None


async def reconcile(conn: psycopg.AsyncConnection, event_ids: Sequence[int]) -> Reconciled:
    """Match stored status events to the rows they name, in the caller's transaction."""
    if not event_ids:
        return Reconciled()
    cur = await conn.execute(RECONCILE, {"ids": list(event_ids), "unanswered": list(AWAITS_RECEIPT)})
    confirmed, duplicates = await cur.fetchone()
    if confirmed or duplicates:
        log.info(
            "receipts: %d unanswered send(s) confirmed sent, %d second send(s) found", confirmed, duplicates
        )
    return Reconciled(confirmed, duplicates)


async def reconcile_waiting(conn: psycopg.AsyncConnection, batch: int) -> Reconciled:
    """Every waiting status that names a notification, oldest first, `batch` per transaction."""
    total, after = Reconciled(), 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(NAMING_WAITING, {"after": after, "limit": batch})
            ids = [row[0] for row in await cur.fetchall()]
            total += await reconcile(conn, ids)
        if len(ids) < batch:
            return total
        after = ids[-1]

"""Store webhook updates and apply them, in one transaction (the caller's).

Statuses are applied set-wise by the database (notify_apply_statuses, migration 0006); inbound
messages and marketing preferences change the contact. Each update is stored once: a replay, or
the same update re-batched into another body, finds its key taken and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.operations.diagnostics_base import mask_number
from notify_pipeline.receipts.keywords import classify
from notify_pipeline.receipts.parse import Update

INSERT_EVENTS = """
INSERT INTO webhook_events (kind, update_key, wa_message_id, wa_id, status, status_at, error_code,
                            error_message, pricing_category, billable, payload)
SELECT * FROM unnest(%(kind)s::text[], %(key)s::text[], %(wamid)s::text[], %(wa_id)s::text[],
                     %(status)s::text[], %(at)s::timestamptz[], %(code)s::text[], %(message)s::text[],
                     %(category)s::text[], %(billable)s::boolean[], %(payload)s::jsonb[])
ON CONFLICT (kind, update_key) DO NOTHING
RETURNING id, kind, update_key
"""

# Statuses that wait for their message id are retried now and then, in case the drain recorded
# the id in a transaction that overlapped the one that stored the status.
RETRY_WAITING = """
SELECT notify_apply_statuses(array(
    SELECT id FROM webhook_events WHERE kind = 'status' AND applied_at IS NULL
       AND received_at > now() - interval '7 days' ORDER BY id LIMIT 5000))
"""


@dataclass
class Ingested:
    stored: int = 0  # new updates (the rest were replays)
    replayed: int = 0
    statuses_applied: int = 0
    opted_out: int = 0
    opted_in: int = 0
    preferences: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def _unique(updates: Sequence[Update]) -> list[Update]:
    seen: dict[tuple[str, str], Update] = {}
    for update in updates:
        seen.setdefault((update.kind, update.key), update)
    return list(seen.values())


def _params(updates: Sequence[Update]) -> dict[str, list]:
    return {
        "kind": [u.kind for u in updates],
        "key": [u.key for u in updates],
        "wamid": [u.wa_message_id for u in updates],
        "wa_id": [u.wa_id for u in updates],
        "status": [u.status for u in updates],
        "at": [u.at for u in updates],
        "code": [u.error_code for u in updates],
        "message": [u.error_message for u in updates],
        "category": [u.pricing_category for u in updates],
        "billable": [u.billable for u in updates],
        "payload": [Jsonb(u.payload) for u in updates],
    }


async def ingest_async(conn: psycopg.AsyncConnection, updates: Sequence[Update]) -> Ingested:
    """Store and apply `updates` on `conn`, inside the caller's transaction."""
    result = Ingested()
    unique = _unique(updates)
    if not unique:
        return result
    cur = await conn.execute(INSERT_EVENTS, _params(unique))
    stored = await cur.fetchall()
    result.stored, result.replayed = len(stored), len(updates) - len(stored)
    by_key = {(u.kind, u.key): u for u in unique}
    status_ids = [row_id for row_id, kind, _ in stored if kind == "status"]
    if status_ids:
        cur = await conn.execute("SELECT notify_apply_statuses(%s)", (status_ids,))
        result.statuses_applied = (await cur.fetchone())[0]
    for row_id, kind, key in stored:
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
        update = by_key[(kind, key)]
        if kind == "message":
            await _inbound(conn, row_id, update, result)
        elif kind == "user_preference":
            await _preference(conn, row_id, update, result)
        elif kind in ("error", "other"):
            await _done(conn, row_id, "recorded")
    return result


async def _done(conn: psycopg.AsyncConnection, row_id: int, outcome: str) -> None:
    await conn.execute(
        "UPDATE webhook_events SET applied_at = now(), outcome = %s WHERE id = %s", (outcome, row_id)
    )


async def _contact(conn: psycopg.AsyncConnection, wa_id: str | None) -> str | None:
    """The contact's number in our form (+E.164), its preferences created if new; None if invalid."""
    if not wa_id:
        return None
    try:
        async with conn.transaction():  # a savepoint: a bad number must not spoil the batch
            cur = await conn.execute("SELECT notify_normalize_wa_id(%s)", ("+" + wa_id.lstrip("+"),))
            number = (await cur.fetchone())[0]
            await conn.execute("SELECT init_contact_preferences(%s)", (number,))
            return number
    except psycopg.errors.InvalidParameterValue:
        return None


async def _inbound(conn: psycopg.AsyncConnection, row_id: int, update: Update, result: Ingested) -> None:
    number = await _contact(conn, update.wa_id)
    if number is None:
        await _done(conn, row_id, "ignored: the sender's number is not a valid WhatsApp number")
        return
    await conn.execute(
        "UPDATE contact_preferences SET last_inbound_at = greatest(last_inbound_at, %s) WHERE wa_id = %s",
        (update.at, number),
    )
    intent = classify(update.text)
    if intent == "opt_out":
        await conn.execute("SELECT mark_opted_out(%s, %s)", (number, f"replied STOP (inbound {update.key})"))
        result.opted_out += 1
    elif intent == "opt_in":
        await conn.execute("SELECT mark_opted_in(%s, %s)", (number, f"replied START (inbound {update.key})"))
        result.opted_in += 1
    await _done(conn, row_id, intent or "last inbound time recorded")


async def _preference(conn: psycopg.AsyncConnection, row_id: int, update: Update, result: Ingested) -> None:
    number = await _contact(conn, update.wa_id)
    if number is None or update.text != "marketing_messages":
        await _done(conn, row_id, "ignored: not a marketing preference of a valid number")
        return
    stop = update.status == "stop"
    # Only a newer preference changes the contact (Meta's order is not guaranteed).
    cur = await conn.execute(
        "UPDATE contact_preferences SET marketing_opted_out = %s, marketing_changed_at = %s "
        "WHERE wa_id = %s AND (marketing_changed_at IS NULL OR marketing_changed_at <= %s)",
        (stop, update.at, number, update.at),
    )
    if cur.rowcount:
        await conn.execute(
            "INSERT INTO observability_events (event_type, details) VALUES (%s, %s)",
            (
                "CONTACT_MARKETING_STOPPED" if stop else "CONTACT_MARKETING_RESUMED",
                Jsonb({"wa_id": mask_number(number), "webhook_event": row_id}),
            ),
        )
    result.preferences += 1
    await _done(conn, row_id, f"marketing {update.status}" if cur.rowcount else "older than the contact's")

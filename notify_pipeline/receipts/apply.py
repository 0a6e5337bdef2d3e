"""Store webhook updates and apply them, in one transaction (the caller's).

Statuses are applied set-wise by the database (notify_apply_statuses, migration 0006; a late
131049 of a MARKETING template is queued again once, 24 hours on, by a trigger of 0009); inbound
messages and marketing preferences change the contact; template status, quality and category
events change whatsapp_templates at once, with template sync's rules (operations/templates.py):
a held status holds the template's rows, a terminal one fails its waiting rows, APPROVED switches
back on a template a sync switched off and sends its held rows now. A status still waiting for
its message id that names its notification by our callback data is matched to a send that got no
answer (receipts/reconcile.py). Each update is stored once: a replay, or the same update
re-batched into another body, finds its key taken and changes nothing. An update dated outside
Meta's window (receipts/bounds.py) is stored settled, with the reason as its outcome, and not
applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from notify_pipeline.engine.templates_store import NOT_AT_META
from notify_pipeline.operations.templates import FAIL_WAITING, RELEASE_HELD, settle_reason
from notify_pipeline.receipts import reconcile
from notify_pipeline.receipts.keywords import classify
from notify_pipeline.receipts.parse import Update
from notify_pipeline.redact import mask_number

log = logging.getLogger(__name__)

INSERT_EVENTS = """
INSERT INTO webhook_events (kind, update_key, wa_message_id, wa_id, status, status_at, error_code,
                            error_message, pricing_category, billable, payload, outcome,
                            notification_id, applied_at)
SELECT u.*, CASE WHEN u.outcome IS NOT NULL THEN now() END
  FROM unnest(%(kind)s::text[], %(key)s::text[], %(wamid)s::text[], %(wa_id)s::text[],
              %(status)s::text[], %(at)s::timestamptz[], %(code)s::text[], %(message)s::text[],
              %(category)s::text[], %(billable)s::boolean[], %(payload)s::jsonb[], %(refused)s::text[],
              %(names)s::bigint[])
       AS u(kind, update_key, wa_message_id, wa_id, status, status_at, error_code, error_message,
            pricing_category, billable, payload, outcome, notification_id)
ON CONFLICT (kind, update_key) DO NOTHING
RETURNING id, kind, update_key, outcome IS NOT NULL, notification_id IS NOT NULL
"""


@dataclass
class Ingested:
    stored: int = 0  # new updates (the rest were replays)
    replayed: int = 0
    refused: int = 0  # dated outside Meta's window: stored, not applied
    statuses_applied: int = 0
    opted_out: int = 0
    opted_in: int = 0
    preferences: int = 0
    templates: int = 0  # template events applied to whatsapp_templates
    confirmed: int = 0  # unanswered sends recorded sent from a status naming them
    duplicates: int = 0  # second sends found: statuses naming a row that carries another message id
    kinds: dict[str, int] = field(default_factory=dict)


def _unique(updates: Sequence[Update]) -> list[Update]:
    seen: dict[tuple[str, str], Update] = {}
    for update in updates:
        seen.setdefault((update.kind, update.key), update)
    return list(seen.values())


def _params(updates: Sequence[Update]) -> dict[str, list]:
    sender = reconcile.our_sender()
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
        "refused": [u.refused for u in updates],
        "names": [reconcile.named_notification(u, sender) for u in updates],
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
    status_ids = [row_id for row_id, kind, _, refused, _ in stored if kind == "status" and not refused]
    if status_ids:
        cur = await conn.execute("SELECT notify_apply_statuses(%s)", (status_ids,))
        result.statuses_applied = (await cur.fetchone())[0]
    # After the plain path: only statuses still waiting for their message id are matched by name.
    naming = [
        row_id for row_id, kind, _, refused, names in stored if kind == "status" and names and not refused
    ]
    if naming:
        matched = await reconcile.reconcile(conn, naming)
        result.confirmed, result.duplicates = matched.confirmed, matched.duplicates
    for row_id, kind, key, refused, _ in stored:
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
        update = by_key[(kind, key)]
        if refused:
            result.refused += 1
            log.warning("webhook update %s (%s) %s: stored, not applied", row_id, kind, update.refused)
            continue
        if kind == "message":
            await _inbound(conn, row_id, update, result)
        elif kind == "user_preference":
            await _preference(conn, row_id, update, result)
        elif kind in TEMPLATE_KINDS:
            await _template_event(conn, row_id, update, result)
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


# -- template events ------------------------------------------------------------------------------

TEMPLATE_KINDS = ("template_status", "template_quality", "template_category")
# Statuses whatsapp_templates accepts (its CHECK); REINSTATED means sendable again: APPROVED.
TEMPLATE_STATUSES = frozenset(
    {
        "APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "FLAGGED", "PENDING_DELETION",
        "DELETED", "ARCHIVED", "UNARCHIVED", "LIMIT_EXCEEDED", "LOCKED",
    }
)  # fmt: skip
CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
QUALITY_SCORES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
# Events that change one column: kind -> (payload field, values we know, column, what it is called).
ONE_COLUMN_CHANGES = {
    "template_quality": ("new_quality_score", QUALITY_SCORES, "quality_score", "quality score"),
    "template_category": ("new_category", CATEGORIES, "category", "category"),
}

FIND_TEMPLATE = """
SELECT template_name, language, approval_status, category, quality_score, is_active, inactive_reason
  FROM whatsapp_templates
 WHERE (meta_template_id = %(id)s) OR (template_name = %(name)s AND language = ANY(%(languages)s))
 ORDER BY (meta_template_id = %(id)s) DESC NULLS LAST
 LIMIT 1
"""


async def _find_template(conn: psycopg.AsyncConnection, value: dict) -> tuple | None:
    name, language = value.get("message_template_name"), value.get("message_template_language")
    meta_id = value.get("message_template_id")
    if not isinstance(name, str):
        return None
    # Meta writes en_US in template lists and sometimes en-US in webhooks.
    languages = list({str(language), str(language).replace("-", "_")}) if language else ["en"]
    cur = await conn.execute(
        FIND_TEMPLATE,
        {"id": str(meta_id) if meta_id is not None else None, "name": name, "languages": languages},
    )
    return await cur.fetchone()


async def _template_event(
    conn: psycopg.AsyncConnection, row_id: int, update: Update, result: Ingested
) -> None:
    value = update.payload
    found = await _find_template(conn, value)
    if found is None:
        await _done(conn, row_id, "ignored: no such template in whatsapp_templates (run template sync)")
        return
    name, language, status, category, quality, active, inactive_reason = found
    key = (name, language)
    changes: dict[str, object] = {}
    failed = released = 0
    if update.kind == "template_status":
        new = "APPROVED" if update.status == "REINSTATED" else update.status
        if new not in TEMPLATE_STATUSES:
            await _done(conn, row_id, f"ignored: template status {update.status!r} is not one we know")
            return
        reactivate = new == "APPROVED" and not active and inactive_reason == NOT_AT_META
        new_category = value.get("message_template_category")
        await conn.execute(
            "UPDATE whatsapp_templates SET approval_status = %s, category = %s, is_active = is_active OR %s, "
            "inactive_reason = CASE WHEN %s = 'APPROVED' THEN NULL ELSE inactive_reason END "
            "WHERE template_name = %s AND language = %s",
            (new, new_category if new_category in CATEGORIES else category, reactivate, new, name, language),
        )
        changes["status"] = f"{status}->{new}"
        if reactivate:
            changes["switched_on"] = True
        reason = settle_reason(key, new)
        if reason is not None:
            code, why = reason
            cur = await conn.execute(
                FAIL_WAITING, (code, f"{why}: cancelled on Meta's webhook, not sent", name, language, 10**9)
            )
            failed = cur.rowcount
        elif new == "APPROVED":
            released = (await conn.execute(RELEASE_HELD, (name, language))).rowcount
    else:
        field, allowed, column, label = ONE_COLUMN_CHANGES[update.kind]
        new = value.get(field)
        if new not in allowed:
            await _done(conn, row_id, f"ignored: {label} {new!r} is not one we know")
            return
        await conn.execute(
            sql.SQL(
                "UPDATE whatsapp_templates SET {} = %s WHERE template_name = %s AND language = %s"
            ).format(sql.Identifier(column)),
            (new, name, language),
        )
        before = {"quality_score": quality or "UNKNOWN", "category": category}[column]
        changes[label.split()[0]] = f"{before}->{new}"
    await conn.execute(
        "INSERT INTO observability_events (event_type, details) VALUES ('TEMPLATE_UPDATED_BY_META', %s)",
        (
            Jsonb(
                {
                    "template": name,
                    "language": language,
                    **changes,
                    "failed_rows": failed,
                    "released_rows": released,
                    "webhook_event": row_id,
                }
            ),
        ),
    )
    result.templates += 1
    summary = ", ".join(f"{k} {v}" for k, v in changes.items() if v is not True)
    extra = (
        f"; {failed} waiting row(s) failed"
        if failed
        else (f"; {released} held row(s) due now" if released else "")
    )
    await _done(conn, row_id, f"applied: {summary}{extra}")

"""Helpers for receipt tests: sent rows carrying Meta's message id, and status webhooks stored and
applied as notify-pipeline serve applies them (webhook_events rows, then notify_apply_statuses)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import psycopg

from notify_pipeline_tests.support.alerts import add_rows


def give_message_id(conn: psycopg.Connection, notification_id: int) -> str:
    """Record Meta's message id on a sent row, as the drain's write-back does; returns it."""
    wamid = f"wamid.TEST{notification_id:08d}"
    conn.execute("UPDATE notifications SET wa_message_id = %s WHERE id = %s", (wamid, notification_id))
    return wamid


def store_status(
    conn: psycopg.Connection,
    wamid: str,
    status: str,
    at: datetime | str = "now()",
    *,
    code: str | None = None,
    received: str = "now()",
) -> int:
    """One status update stored as the webhook stores it (not applied); returns its event id.
    `at` is Meta's timestamp; `received` a SQL expression for when it reached us."""
    at_sql = "%(at)s::timestamptz" if isinstance(at, datetime) else at
    return conn.execute(
        "INSERT INTO webhook_events (kind, update_key, wa_message_id, status, status_at, error_code, "
        "error_message, payload, received_at) VALUES ('status', %(key)s, %(wamid)s, %(status)s, "
        f"{at_sql}, %(code)s, %(message)s, '{{}}', {received}) RETURNING id",
        {
            "key": f"{wamid}:{status}:{at}:{code}",
            "wamid": wamid,
            "status": status,
            "at": at,
            "code": code,
            "message": "Message undeliverable." if code else None,
        },
    ).fetchone()[0]


def apply_statuses(conn: psycopg.Connection, event_ids: list[int]) -> int:
    return conn.execute("SELECT notify_apply_statuses(%s)", (event_ids,)).fetchone()[0]


def receive(
    conn: psycopg.Connection, wamid: str, status: str, at: datetime | str = "now()", code: str | None = None
) -> None:
    """A status webhook stored and applied in one go."""
    apply_statuses(conn, [store_status(conn, wamid, status, at, code=code)])


def sent_awaiting_receipts(
    conn: psycopg.Connection, count: int, *, ago: str = "5 minutes", first: int = 0
) -> list[str]:
    """`count` messages Meta accepted `ago`, with no status yet; returns their message ids."""
    ids = add_rows(conn, count, status="sent", first=first)
    conn.execute("UPDATE notifications SET sent_at = now() - %s::interval WHERE id = ANY(%s)", (ago, ids))
    return [give_message_id(conn, notification_id) for notification_id in ids]


def any_status_arrives(conn: psycopg.Connection) -> None:
    """A status webhook arrives (for a message no row carries: it waits, and still proves the
    subscription delivers)."""
    store_status(conn, "wamid.UNKNOWN", "sent")


# -- webhook bodies shaped as Meta sends them, dated now unless told -----------------------------

METADATA = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}


def unix(seconds_ago: float = 0) -> int:
    return int(time.time() - seconds_ago)


def webhook_body(value: dict[str, Any], field: str = "messages", phone_number_id: str | None = None) -> bytes:
    """One change of `field` in one entry, as Meta posts it (to `phone_number_id`, default METADATA's)."""
    metadata = METADATA if phone_number_id is None else {**METADATA, "phone_number_id": phone_number_id}
    change = {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": field}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}
    ).encode()


def status_item(wamid: str, status: str = "delivered", at: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": status,
        "timestamp": str(unix() if at is None else at),
        "recipient_id": "250788000001",
        **extra,
    }


def inbound_item(message_id: str, text: str, sender: str = "250788000003", at: int | None = None) -> dict:
    return {
        "from": sender,
        "id": message_id,
        "timestamp": str(unix() if at is None else at),
        "type": "text",
        "text": {"body": text},
    }


def preference_item(wa_id: str, value: str, at: int) -> dict[str, Any]:
    return {"wa_id": wa_id, "category": "marketing_messages", "value": value, "timestamp": at}

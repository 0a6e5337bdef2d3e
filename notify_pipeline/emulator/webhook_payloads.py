"""Webhook bodies in Meta's shapes: message statuses, inbound messages, template status changes."""

from __future__ import annotations

import time
from typing import Any

from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.emulator.ledger import MessageRecord
from notify_pipeline.whatsapp import errors

ERROR_DOCS = "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes"


def _envelope(config: EmulatorConfig, field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": config.waba_id, "changes": [{"field": field, "value": value}]}],
    }


def _metadata(config: EmulatorConfig, phone_number_id: str) -> dict[str, str]:
    return {"display_phone_number": config.display_phone_number, "phone_number_id": phone_number_id}


def webhook_error(code: int, details: str | None = None) -> dict[str, Any]:
    """The error object of a `failed` status: not the shape of the synchronous API error."""
    entry = errors.lookup(code)
    title = entry.title if entry else "Unknown error"
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": ERROR_DOCS,
    }


def status_payload(
    config: EmulatorConfig,
    record: MessageRecord,
    status: str,
    *,
    category: str,
    priced: bool,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `statuses[]` update for an accepted message; `timestamp` is a string, as Meta sends it."""
    update: dict[str, Any] = {
        "id": record.wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": record.wa_id,
    }
    if record.biz_opaque_callback_data is not None:
        update["biz_opaque_callback_data"] = record.biz_opaque_callback_data
    if error is not None:
        update["errors"] = [error]
    elif priced:
        # Per-message pricing (PMP) since July 2025; `conversation` is omitted from v24.0 on.
        update["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": category,
        }
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(config, record.phone_number_id),
        "statuses": [update],
    }
    return _envelope(config, "messages", value)


def inbound_text_payload(
    config: EmulatorConfig, phone_number_id: str, wa_id: str, text: str, wamid: str, name: str
) -> dict[str, Any]:
    """A user's text message to the business (what opens the 24 h service window)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(config, phone_number_id),
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    return _envelope(config, "messages", value)


def template_status_payload(
    config: EmulatorConfig, definition: dict[str, Any], event: str, reason: str | None = "NONE"
) -> dict[str, Any]:
    """A `message_template_status_update` change, sent when a template's status is changed at run time."""
    value = {
        "event": event,
        "message_template_id": int(definition["id"]) if str(definition["id"]).isdigit() else definition["id"],
        "message_template_name": definition["name"],
        "message_template_language": definition["language"],
        "message_template_category": definition.get("category", "UTILITY"),
        "reason": reason,
    }
    entry = _envelope(config, "message_template_status_update", value)
    entry["entry"][0]["time"] = int(time.time())
    return entry

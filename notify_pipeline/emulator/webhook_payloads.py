"""Webhook updates in Meta's shapes: message statuses, inbound messages, user preferences and
template events (status, quality, category).

Each builder returns one `Update`: the `value` of one change holding exactly one item. Updates
are grouped into bodies later (webhook_batches.py), so the same update can be re-sent grouped
differently and still be byte-for-byte the same item, timestamp included, as Meta re-batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.emulator.ledger import MessageRecord
from notify_pipeline.whatsapp import errors

ERROR_DOCS = "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes"


@dataclass(frozen=True)
class Update:
    """One change value with one item in it; `time` is the entry time that template events carry."""

    field: str
    value: dict[str, Any]
    time: int | None = None


def _now() -> str:
    # Meta sends unix seconds as a string in statuses and messages (as an int elsewhere).
    return str(int(time.time()))


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


def pricing(category: str, *, free: bool = False) -> dict[str, Any]:
    """Per-message pricing (PMP, since July 2025); `conversation` is omitted from v24.0 on.

    `free`: a service message, or a utility template inside the customer-service window.
    """
    return {
        "billable": not free,
        "pricing_model": "PMP",
        "type": "free_customer_service" if free else "regular",
        "category": category,
    }


def status_update(
    config: EmulatorConfig,
    record: MessageRecord,
    status: str,
    *,
    price: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> Update:
    """One `statuses[]` item for an accepted message, stamped now (when it became due)."""
    item: dict[str, Any] = {
        "id": record.wamid,
        "status": status,
        "timestamp": _now(),
        "recipient_id": record.wa_id,
    }
    if record.biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = record.biz_opaque_callback_data
    if error is not None:
        item["errors"] = [error]  # a failed status carries errors and never pricing
    elif price is not None:
        item["pricing"] = dict(price)
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(config, record.phone_number_id),
        "statuses": [item],
    }
    return Update("messages", value)


def inbound_update(
    config: EmulatorConfig,
    phone_number_id: str,
    wa_id: str,
    name: str,
    wamid: str,
    *,
    text: str,
    kind: str = "text",
    payload: str | None = None,
    context_id: str | None = None,
) -> Update:
    """A user's message to the business: `text`, or `button` (a template's quick reply)."""
    message: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": _now(), "type": kind}
    if context_id is not None:
        # A reply names the business number and the message it answers.
        message["context"] = {"from": config.display_phone_number, "id": context_id}
    if kind == "button":
        message["button"] = {"payload": text if payload is None else payload, "text": text}
    else:
        message["text"] = {"body": text}
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(config, phone_number_id),
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [message],
    }
    return Update("messages", value)


def user_preferences_update(
    config: EmulatorConfig, phone_number_id: str, wa_id: str, choice: str, category: str, detail: str
) -> Update:
    """A user stops or resumes a category of messages (today only marketing_messages)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(config, phone_number_id),
        "contacts": [{"wa_id": wa_id}],
        "user_preferences": [
            {
                "wa_id": wa_id,
                "detail": detail,
                "category": category,
                "value": choice,
                "timestamp": int(time.time()),  # an int here, unlike statuses
            }
        ],
    }
    return Update("user_preferences", value)


def _template_ids(definition: dict[str, Any]) -> dict[str, Any]:
    template_id = definition["id"]
    return {
        "message_template_id": int(template_id) if str(template_id).isdigit() else template_id,
        "message_template_name": definition["name"],
        "message_template_language": definition["language"],
    }


def template_status_update(
    definition: dict[str, Any], event: str, reason: str | None = "NONE", **extra: Any
) -> Update:
    """A `message_template_status_update`; `extra`: other_info, disable_info, rejection_info."""
    value = {
        "event": event,
        **_template_ids(definition),
        "reason": reason,
        "message_template_category": definition.get("category", "UTILITY"),
    }
    value.update({key: item for key, item in extra.items() if item is not None})
    return Update("message_template_status_update", value, int(time.time()))


def template_quality_update(definition: dict[str, Any], previous: str, new: str) -> Update:
    value = {"previous_quality_score": previous, "new_quality_score": new, **_template_ids(definition)}
    return Update("message_template_quality_update", value, int(time.time()))


def template_category_update(definition: dict[str, Any], previous: str, new: str) -> Update:
    value = {**_template_ids(definition), "previous_category": previous, "new_category": new}
    return Update("template_category_update", value, int(time.time()))

"""Meta's webhook bodies into typed updates, one per status, message, preference or template event.

A body is refused whole (MalformedWebhook) when it is not Meta's shape, holds a value PostgreSQL
cannot store or a field longer than Meta ever sends (receipts/bounds.py): nothing of it is stored.
An update dated outside the window Meta delivers in is refused alone: it carries the reason in
`refused`, is stored for the record and not applied. Each update carries the key that identifies
it however Meta batches it (Meta re-batches and retries, so the same update can come again in
another body). A status also carries the notification its `biz_opaque_callback_data` names
(`np1:<id>`, whatsapp/messages.py) and the business number it came to (`metadata.phone_number_id`):
what matches a send that got no answer to its receipt (receipts/reconcile.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from notify_pipeline.receipts import bounds
from notify_pipeline.receipts.bounds import MAX_ID_CHARS, MAX_NAME_CHARS, MAX_TEXT_CHARS, MAX_TITLE_CHARS
from notify_pipeline.whatsapp.messages import notification_id_of

STATUSES = ("sent", "delivered", "read", "played", "failed")
TEMPLATE_FIELDS = {
    "message_template_status_update": "template_status",
    "message_template_quality_update": "template_quality",
    "template_category_update": "template_category",
}


class MalformedWebhook(ValueError):
    """The body is not a webhook Meta would send; it is refused and nothing is stored."""


@dataclass(frozen=True)
class Update:
    kind: str  # status | message | user_preference | template_* | error | other
    key: str
    payload: dict[str, Any] = field(repr=False)
    wa_message_id: str | None = None
    wa_id: str | None = None  # the user's number as Meta writes it (digits, no "+")
    status: str | None = None  # a status, or a preference value (stop/resume), or a template event
    at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    pricing_category: str | None = None
    billable: bool | None = None
    text: str | None = None  # an inbound text body or quick-reply button text
    refused: str | None = None  # why it is stored but not applied (dated outside Meta's window)
    notification_id: int | None = None  # a status: the notification its callback data names
    phone_number_id: str | None = None  # a status: the business number it came to (metadata)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedWebhook(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedWebhook(f"{what} is not a list")
    return value


def _text(value: Any, what: str, limit: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MalformedWebhook(f"{what} is missing or not a string of at most {limit} characters")
    return value


def _bounded(value: Any, what: str, limit: int) -> Any:
    """`value` as it is, unless it is text or a number longer than `limit` characters."""
    if isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) > limit:
        raise MalformedWebhook(f"{what} is longer than {limit} characters")
    return value


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 10**11:
        raise MalformedWebhook(f"{what} is not a unix timestamp")
    return datetime.fromtimestamp(value, UTC)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def _business_number(value: dict[str, Any]) -> str | None:
    """The phone number id of the business number a `messages` change is about."""
    metadata = value.get("metadata")
    if not isinstance(metadata, dict):
        return None
    number = _bounded(metadata.get("phone_number_id"), "metadata.phone_number_id", MAX_ID_CHARS)
    return number if isinstance(number, str) else None


def _status(item: Any, now: datetime, phone_number_id: str | None = None) -> Update:
    s = _obj(item, "a status")
    wamid, status = _text(s.get("id"), "status.id"), s.get("status")
    if status not in STATUSES:
        raise MalformedWebhook(f"status.status {status!r} is not one of {', '.join(STATUSES)}")
    at = _time(s.get("timestamp"), "status.timestamp")
    errors = [_obj(e, "status.errors[]") for e in _list(s.get("errors"), "status.errors")]
    code = str(errors[0].get("code")) if errors and errors[0].get("code") is not None else None
    _bounded(code, "status.errors[].code", bounds.MAX_CODE_CHARS)
    message = None
    if errors:
        first = errors[0]
        details = (
            (first.get("error_data") or {}).get("details")
            if isinstance(first.get("error_data"), dict)
            else None
        )
        _bounded(first.get("title"), "status.errors[].title", MAX_TITLE_CHARS)
        _bounded(details, "status.errors[].error_data.details", MAX_TITLE_CHARS)
        message = " ".join(str(p) for p in (f"({code})" if code else None, first.get("title"), details) if p)[
            :500
        ]
    pricing = s.get("pricing") if isinstance(s.get("pricing"), dict) else {}
    category = pricing.get("category") if isinstance(pricing.get("category"), str) else None
    _bounded(category, "status.pricing.category", MAX_NAME_CHARS)
    billable = pricing.get("billable") if isinstance(pricing.get("billable"), bool) else None
    recipient = _bounded(s.get("recipient_id"), "status.recipient_id", MAX_ID_CHARS)
    callback = _bounded(
        s.get("biz_opaque_callback_data"), "status.biz_opaque_callback_data", bounds.MAX_CALLBACK_CHARS
    )
    return Update(
        "status",
        f"{wamid}|{status}|{int(at.timestamp())}|{code or ''}",
        s,
        wa_message_id=wamid,
        wa_id=recipient if isinstance(recipient, str) else None,
        status=status,
        at=at,
        error_code=code,
        error_message=message,
        pricing_category=category,
        billable=billable,
        refused=bounds.out_of_window(at, now),
        notification_id=notification_id_of(callback),
        phone_number_id=phone_number_id,
    )


def _message(item: Any, now: datetime) -> Update:
    m = _obj(item, "a message")
    message_id, sender = _text(m.get("id"), "message.id"), _text(m.get("from"), "message.from")
    at = _time(m.get("timestamp"), "message.timestamp")
    kind = _bounded(m.get("type"), "message.type", MAX_NAME_CHARS)
    text = None
    if kind == "text" and isinstance(m.get("text"), dict):
        text = m["text"].get("body")
    elif kind == "button" and isinstance(m.get("button"), dict):
        text = m["button"].get("text")
    elif kind == "interactive" and isinstance(m.get("interactive"), dict):
        reply = m["interactive"].get("button_reply") or m["interactive"].get("list_reply") or {}
        text = reply.get("title") if isinstance(reply, dict) else None
    return Update(
        "message",
        message_id,
        m,
        wa_message_id=message_id,
        wa_id=sender,
        status=str(kind),
        at=at,
        text=_bounded(text, "the message's text", MAX_TEXT_CHARS) if isinstance(text, str) else None,
        refused=bounds.out_of_window(at, now),
    )


def _preference(item: Any, now: datetime) -> Update:
    p = _obj(item, "a user preference")
    wa_id, value = _text(p.get("wa_id"), "user_preferences.wa_id"), p.get("value")
    category = _text(p.get("category"), "user_preferences.category")
    if value not in ("stop", "resume"):
        raise MalformedWebhook("user_preferences.value is not stop or resume")
    at = _time(p.get("timestamp"), "user_preferences.timestamp")
    return Update(
        "user_preference",
        f"{wa_id}|{category}|{value}|{int(at.timestamp())}",
        p,
        wa_id=wa_id,
        status=value,
        at=at,
        text=category,
        refused=bounds.out_of_window(at, now),
    )


# Fields of a template event that are read into whatsapp_templates or the audit trail.
TEMPLATE_EVENT_FIELDS = (
    "event",
    "message_template_id",
    "message_template_name",
    "message_template_language",
    "message_template_category",
    "new_quality_score",
    "previous_quality_score",
    "new_category",
    "previous_category",
    "reason",
)


def _template_event(name: str, entry: dict[str, Any], time_value: Any, value: dict[str, Any]) -> Update:
    for field_name in TEMPLATE_EVENT_FIELDS:
        _bounded(value.get(field_name), f"value.{field_name}", MAX_NAME_CHARS)
    event = value.get("event") or value.get("new_quality_score") or value.get("new_category")
    return Update(
        TEMPLATE_FIELDS[name],
        _digest([entry.get("id"), time_value, value]),
        value,
        status=str(event) if event else None,
    )


def _changes(entry: dict[str, Any], time_value: Any, now: datetime) -> list[Update]:
    updates: list[Update] = []
    for change in _list(entry.get("changes"), "entry.changes"):
        change = _obj(change, "a change")
        name, value = change.get("field"), _obj(change.get("value"), "change.value")
        if name == "messages":
            number = _business_number(value)
            updates += [_status(s, now, number) for s in _list(value.get("statuses"), "value.statuses")]
            updates += [_message(m, now) for m in _list(value.get("messages"), "value.messages")]
            for error in _list(value.get("errors"), "value.errors"):
                updates.append(Update("error", _digest([time_value, error]), _obj(error, "value.errors[]")))
        elif name == "user_preferences":
            updates += [
                _preference(p, now) for p in _list(value.get("user_preferences"), "value.user_preferences")
            ]
        elif name in TEMPLATE_FIELDS:
            updates.append(_template_event(name, entry, time_value, value))
        else:
            updates.append(
                Update("other", _digest([name, time_value, value]), {"field": name, "value": value})
            )
    return updates


def parse_body(raw: bytes, now: datetime | None = None) -> list[Update]:
    """Every update in one webhook body; MalformedWebhook if the body is not Meta's shape or holds
    what cannot be stored. `now` (default: the clock) decides which timestamps are refused."""
    try:
        body = bounds.load_json(raw)
    except bounds.UnstorableValue as exc:
        raise MalformedWebhook(str(exc)) from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedWebhook("the body is not JSON (or nests deeper than any webhook)") from exc
    body = _obj(body, "the body")
    if body.get("object") != "whatsapp_business_account":
        raise MalformedWebhook("object is not whatsapp_business_account")
    now = now or datetime.now(UTC)
    updates: list[Update] = []
    try:
        for entry in _list(body.get("entry"), "entry"):
            entry = _obj(entry, "an entry")
            updates += _changes(entry, entry.get("time"), now)
    except RecursionError as exc:  # a key's digest of a value nested about as deep as json allows
        raise MalformedWebhook("the body nests deeper than any webhook") from exc
    return updates

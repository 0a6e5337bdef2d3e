"""Parses and checks the envelope every send shares (messaging_product, to, type, ...).

Kept separate from template checks: the envelope is checked for every message type, and this is
the hot path, so it does the least work that still gives Meta's answer for each mistake.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from notify_pipeline.emulator.answers import MetaAPIError

# Every type Meta's send endpoint takes; text and template are checked in depth, the others
# only for the fields without which Meta cannot build the message.
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
MESSAGE_TYPES = ("text", "template", "location", "contacts", "interactive", "reaction", *MEDIA_TYPES)
_ENVELOPE_KEYS = frozenset(
    ("messaging_product", "recipient_type", "to", "type", "context", "biz_opaque_callback_data")
)
_KNOWN_KEYS = _ENVELOPE_KEYS | frozenset(MESSAGE_TYPES)
_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_NOT_DIGITS = str.maketrans("", "", "+ ().-")
_MAX_TEXT = 4096
_MAX_CALLBACK_DATA = 512


@dataclass(slots=True)
class SendRequest:
    """A send whose envelope is valid."""

    to: str
    wa_id: str
    type: str
    content: dict[str, Any]  # the object keyed by `type`
    biz_opaque_callback_data: str | None
    template_name: str | None = None
    template_language: str | None = None


def parse_send(raw: bytes) -> SendRequest:
    """The request, or MetaAPIError with the code Meta gives for the first mistake."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MetaAPIError(100, "The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise MetaAPIError(100, "The request body must be a JSON object.")
    product = payload.get("messaging_product")
    if product is None:
        raise MetaAPIError(100, "The parameter messaging_product is required.")
    if product != "whatsapp":
        raise MetaAPIError(100, f'Param messaging_product must be one of {{WHATSAPP}} - got "{product}".')
    if not _KNOWN_KEYS.issuperset(payload):
        # The object keyed by an unsupported type is left to the type check (131051).
        unknown = [k for k in payload if k not in _KNOWN_KEYS and k != payload.get("type")]
        if unknown:
            raise MetaAPIError(100, f"Param {unknown[0]} is not a valid parameter of this request.")
    recipient_type = payload.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise MetaAPIError(100, 'Param recipient_type must be "individual" (group sends are not emulated).')
    to = payload.get("to")
    if to is None or to == "":
        raise MetaAPIError(131008, "The parameter to is required.")
    wa_id = _wa_id(to)
    kind = payload.get("type")
    if kind is None:
        raise MetaAPIError(131008, "The parameter type is required.")
    if kind not in MESSAGE_TYPES:
        raise MetaAPIError(131051, f"Message type {kind} is not supported.")
    content = payload.get(kind)
    if content is None:
        raise MetaAPIError(131008, f"The parameter {kind} is required.")
    if not isinstance(content, dict):
        raise MetaAPIError(100, f"Param {kind} must be a JSON object.")
    callback = payload.get("biz_opaque_callback_data")
    if callback is not None and (not isinstance(callback, str) or len(callback) > _MAX_CALLBACK_DATA):
        raise MetaAPIError(
            100,
            f"Param biz_opaque_callback_data must be a string of at most {_MAX_CALLBACK_DATA} characters.",
        )
    context = payload.get("context")
    if context is not None and not (isinstance(context, dict) and isinstance(context.get("message_id"), str)):
        raise MetaAPIError(100, "Param context must be an object with a message_id string.")
    request = SendRequest(to, wa_id, kind, content, callback)
    if kind == "text":
        _check_text(content)
    elif kind == "template":
        request.template_name, request.template_language = _template_key(content)
    elif kind in MEDIA_TYPES and not (content.get("id") or content.get("link")):
        raise MetaAPIError(131008, f"The parameter {kind}['id'] or {kind}['link'] is required.")
    return request


def _wa_id(to: Any) -> str:
    if not isinstance(to, str) or not _PHONE.fullmatch(to):
        raise MetaAPIError(131009, f"Param to must be a phone number string, got {to!r}.")
    digits = to.translate(_NOT_DIGITS)
    # E.164 allows at most 15 digits; fewer than 7 cannot be a number with a country code.
    if not 7 <= len(digits) <= 15:
        raise MetaAPIError(131009, f"Param to ({to}) is not a valid WhatsApp phone number.")
    return digits


def _check_text(text: dict[str, Any]) -> None:
    body = text.get("body")
    if body is None or body == "":
        raise MetaAPIError(131008, "The parameter text['body'] is required.")
    if not isinstance(body, str):
        raise MetaAPIError(100, "Param text['body'] must be a string.")
    if len(body) > _MAX_TEXT:
        raise MetaAPIError(100, f"Param text['body'] must be at most {_MAX_TEXT} characters long.")
    preview = text.get("preview_url")
    if preview is not None and not isinstance(preview, bool):
        raise MetaAPIError(100, "Param text['preview_url'] must be a boolean.")


def _template_key(template: dict[str, Any]) -> tuple[str, str]:
    name = template.get("name")
    if not name:
        raise MetaAPIError(131008, "The parameter template['name'] is required.")
    if not isinstance(name, str):
        raise MetaAPIError(100, "Param template['name'] must be a string.")
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if language is None or code is None or code == "":
        raise MetaAPIError(131008, "The parameter template['language']['code'] is required.")
    if not isinstance(code, str):
        raise MetaAPIError(100, "Param template['language']['code'] must be a string.")
    return name, code

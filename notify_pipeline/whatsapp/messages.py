"""Cloud API message bodies: template and text messages, and the send request for a notification.

Send payloads use lower-case component types (header, body, button), unlike template definitions.
Positional templates take parameters in order ({{1}}, {{2}}, ...); named templates take
`parameter_name`. A button's `index` is a string, as in Meta's examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Params = Sequence[str] | Mapping[str, str]

# What the product puts in `biz_opaque_callback_data`: this prefix, then the notification id.
# Meta echoes the value in the message's status webhooks. Other apps on the same WhatsApp Business
# Account may put bare numbers (or anything) there, so only a value with this prefix names one of
# our rows. Sends from before the prefix carried the bare id; nothing waits on those.
CALLBACK_PREFIX = "np1:"
_MAX_ID_DIGITS = 19  # a bigint


def callback_data(notification_id: int) -> str:
    """The `biz_opaque_callback_data` of a notification's send."""
    return f"{CALLBACK_PREFIX}{notification_id}"


def notification_id_of(value: object) -> int | None:
    """The notification a `biz_opaque_callback_data` value names, or None when it is not ours."""
    if not isinstance(value, str) or not value.startswith(CALLBACK_PREFIX):
        return None
    digits = value[len(CALLBACK_PREFIX) :]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_ID_DIGITS or digits[0] == "0":
        return None
    number = int(digits)
    return number if number < 2**63 else None


@dataclass(frozen=True)
class Button:
    """A dynamic button: a URL suffix, a quick-reply payload or a copy-code coupon."""

    index: int
    sub_type: str = "url"  # url | quick_reply | copy_code
    value: str = ""

    def component(self) -> dict[str, Any]:
        if self.sub_type == "quick_reply":
            parameter = {"type": "payload", "payload": self.value}
        elif self.sub_type == "copy_code":
            parameter = {"type": "coupon_code", "coupon_code": self.value}
        else:
            parameter = {"type": "text", "text": self.value}
        return {
            "type": "button",
            "sub_type": self.sub_type,
            "index": str(self.index),
            "parameters": [parameter],
        }


def text_parameters(values: Params) -> list[dict[str, str]]:
    if isinstance(values, Mapping):
        return [{"type": "text", "parameter_name": name, "text": str(text)} for name, text in values.items()]
    return [{"type": "text", "text": str(text)} for text in values]


def template_message(
    to: str,
    name: str,
    language: str,
    *,
    body: Params = (),
    header: Params = (),
    header_media: tuple[str, Mapping[str, str]] | None = None,
    buttons: Sequence[Button] = (),
) -> dict[str, Any]:
    """A template message. `header_media` is e.g. ("image", {"link": "https://..."})."""
    components: list[dict[str, Any]] = []
    if header_media is not None:
        kind, media = header_media
        components.append({"type": "header", "parameters": [{"type": kind, kind: dict(media)}]})
    elif header:
        components.append({"type": "header", "parameters": text_parameters(header)})
    if body:
        components.append({"type": "body", "parameters": text_parameters(body)})
    components.extend(button.component() for button in buttons)
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    }


def text_message(to: str, body: str, *, preview_url: bool = False) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": preview_url},
    }


def send_request(notification_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The body to POST for a queued notification: its stored payload, tagged with its id.

    `biz_opaque_callback_data` (callback_data: `np1:<id>`) comes back in Meta's status webhooks:
    that is how a send that got no answer is matched to its receipt (receipts/reconcile.py), and
    how the emulator counts duplicates.
    """
    if payload.get("type") not in ("template", "text") or not payload.get("to"):
        raise ValueError(
            f"notification {notification_id} has no sendable payload (need to and a template or text)"
        )
    request = {key: value for key, value in payload.items() if key != "biz_opaque_callback_data"}
    request["messaging_product"] = "whatsapp"
    request["biz_opaque_callback_data"] = callback_data(notification_id)
    return request

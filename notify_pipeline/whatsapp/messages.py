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

    `biz_opaque_callback_data` comes back in Meta's status webhooks, which is how a delivery
    receipt finds its notification (and how the emulator counts duplicates).
    """
    if payload.get("type") not in ("template", "text") or not payload.get("to"):
        raise ValueError(
            f"notification {notification_id} has no sendable payload (need to and a template or text)"
        )
    request = {key: value for key, value in payload.items() if key != "biz_opaque_callback_data"}
    request["messaging_product"] = "whatsapp"
    request["biz_opaque_callback_data"] = str(notification_id)
    return request

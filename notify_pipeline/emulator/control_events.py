"""Control endpoints that make Meta's side speak first: a user writes or taps a quick reply, a
user stops marketing messages, Meta pauses or re-categorises a template, a body is re-batched.

Each posts a signed webhook through the same sender as the statuses (batched, retried) and
changes the emulator's own state to match, so later sends meet the consequences (131050 after a
marketing stop, 132015 for a paused template, the new category's pricing).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID
from notify_pipeline.emulator.control_body import (
    BadRequest,
    NotFound,
    digits,
    json_body,
    json_object,
    text_field,
)
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.templates import CATEGORIES, STATUSES, Template
from notify_pipeline.emulator.webhook_batches import LAYOUTS
from notify_pipeline.emulator.webhook_payloads import (
    inbound_update,
    template_category_update,
    template_quality_update,
    template_status_update,
    user_preferences_update,
)

QUALITY_SCORES = ("GREEN", "YELLOW", "RED", "UNKNOWN")
_PAUSE_NOTE = "Paused for 3 hours after negative feedback from users."
_DISABLE_NOTE = "Disabled after repeated pauses for negative feedback from users."


def announce_status(
    emu: Emulator, template: Template, event: str, body: dict[str, Any] | None = None
) -> None:
    """Post a template status event, with the extras Meta adds to pauses and disables by default."""
    body = body or {}
    extra = {key: body.get(key) for key in ("other_info", "disable_info", "rejection_info")}
    if event == "PAUSED" and extra["other_info"] is None:
        extra["other_info"] = {"title": "FIRST_PAUSE", "description": _PAUSE_NOTE}
    if event == "DISABLED":
        if extra["disable_info"] is None:
            extra["disable_info"] = {"disable_date": str(int(time.time()))}
        if extra["other_info"] is None:
            extra["other_info"] = {"title": "DISABLED", "description": _DISABLE_NOTE}
    reason = body.get("reason", "NONE")
    emu.webhooks.post(template_status_update(dict(template.definition), event, reason, **extra))


def _phone_number_id(emu: Emulator, body: dict[str, Any]) -> str:
    return str(body.get("phone_number_id") or emu.config.phone_number_id or DEFAULT_PHONE_NUMBER_ID)


def _last_message_to(emu: Emulator, wa_id: str) -> str | None:
    for record in reversed(emu.ledger.messages):
        if record.wa_id == wa_id:
            return record.wamid
    return None


def event_routes(emu: Emulator) -> list[Route]:
    """The routes, bound to one emulator."""

    async def inbound(request: Request) -> JSONResponse:
        body = json_object(await json_body(request))
        sender = digits(body.get("from"), "from")
        kind = text_field(body, "type", "text", choices=("text", "button"))
        text = text_field(body, "text", "Stop promotions" if kind == "button" else "hi")
        payload = body.get("payload")
        context_id = body.get("context_id")
        if kind == "button" and context_id is None:
            context_id = _last_message_to(emu, sender)  # a quick reply answers a template we sent
        emu.windows[sender] = time.time()  # any user message opens the 24-hour window
        wamid = emu.new_wamid(sender)
        update = inbound_update(
            emu.config, _phone_number_id(emu, body), sender, text_field(body, "name", "Test User"), wamid,
            text=text, kind=kind, payload=None if payload is None else str(payload), context_id=context_id,
        )  # fmt: skip
        emu.webhooks.post(update)
        window = emu.windows[sender] + emu.config.service_window_s
        return JSONResponse(
            {"wa_id": sender, "id": wamid, "context_id": context_id, "window_open_until": window}
        )

    async def user_preferences(request: Request) -> JSONResponse:
        body = json_object(await json_body(request))
        wa_id = digits(body.get("wa_id", body.get("from")), "wa_id")
        choice = text_field(body, "value", "stop", choices=("stop", "resume"))
        category = text_field(body, "category", "marketing_messages", choices=("marketing_messages",))
        default_detail = f"User requested to {choice} marketing messages"
        detail = text_field(body, "detail", default_detail)
        if choice == "stop":
            emu.marketing_stopped.add(wa_id)
        else:
            emu.marketing_stopped.discard(wa_id)
        emu.webhooks.post(
            user_preferences_update(emu.config, _phone_number_id(emu, body), wa_id, choice, category, detail)
        )
        return JSONResponse(
            {"wa_id": wa_id, "value": choice, "marketing_stopped": wa_id in emu.marketing_stopped}
        )

    def _template(request: Request) -> Template:
        name, language = request.path_params["name"], request.path_params["language"]
        template = emu.templates.get(name, language)
        if template is None:
            raise NotFound(f"no template {name} ({language})")
        return template

    async def template_status(request: Request) -> JSONResponse:
        template = _template(request)
        body = json_object(await json_body(request))
        event = text_field(body, "event", choices=STATUSES)
        emu.templates.update(template.name, template.language, status=event)
        announce_status(emu, template, event, body)
        return JSONResponse(template.control_view())

    async def template_quality(request: Request) -> JSONResponse:
        template = _template(request)
        body = json_object(await json_body(request))
        score = text_field(body, "score", choices=QUALITY_SCORES)
        previous = (template.definition.get("quality_score") or {}).get("score", "UNKNOWN")
        template.definition["quality_score"] = {"score": score, "date": int(time.time())}
        emu.webhooks.post(template_quality_update(dict(template.definition), previous, score))
        return JSONResponse(template.control_view())

    async def template_category(request: Request) -> JSONResponse:
        template = _template(request)
        body = json_object(await json_body(request))
        category = text_field(body, "category", choices=CATEGORIES)
        previous = template.category
        template.definition.update(category=category, previous_category=previous)
        emu.webhooks.post(template_category_update(dict(template.definition), previous, category))
        return JSONResponse(template.control_view())

    async def resend(request: Request) -> JSONResponse:
        body = json_object(await json_body(request, default={}))
        last, batch_max = body.get("last", 1), body.get("batch_max")
        if not isinstance(last, int) or isinstance(last, bool) or last < 0:
            raise BadRequest("last must be a non-negative integer (bodies to re-send)")
        if batch_max is not None and (not isinstance(batch_max, int) or not 1 <= batch_max <= 1000):
            raise BadRequest("batch_max must be an integer from 1 to 1000")
        layout = body.get("layout")
        if layout is not None and layout not in (*LAYOUTS, "mixed"):
            raise BadRequest(f"layout must be one of {[*LAYOUTS, 'mixed']}")
        return JSONResponse(emu.webhooks.resend(last, batch_max, layout))

    template_path = "/_emulator/templates/{name}/{language}"
    return [
        Route("/_emulator/inbound", inbound, methods=["POST"]),
        Route("/_emulator/user_preferences", user_preferences, methods=["POST"]),
        Route(f"{template_path}/status", template_status, methods=["POST"]),
        Route(f"{template_path}/quality", template_quality, methods=["POST"]),
        Route(f"{template_path}/category", template_category, methods=["POST"]),
        Route("/_emulator/webhooks/resend", resend, methods=["POST"]),
    ]

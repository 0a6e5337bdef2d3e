"""The control and inspection API under /_emulator/ (no token: the server listens on loopback).

Answers are plain JSON; mistakes get 400 {"error": "..."} (this API is ours, not Meta's).
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.templates import TemplateDefinitionError
from notify_pipeline.emulator.webhook_payloads import inbound_text_payload, template_status_payload


class _BadRequest(Exception):
    pass


async def _json_body(request: Request, default: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        if default is None:
            raise _BadRequest("a JSON body is required")
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise _BadRequest("the body is not valid JSON") from None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _BadRequest("the body must be a JSON object")
    return value


def build_control_app(emu: Emulator) -> Starlette:
    """A Starlette app serving /_emulator/* for one emulator."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(emu.stats())

    async def messages(request: Request) -> JSONResponse:
        params = dict(request.query_params)
        try:
            limit = int(params.pop("limit", 1000))
            offset = int(params.pop("offset", 0))
        except ValueError:
            raise _BadRequest("limit and offset must be integers") from None
        return JSONResponse(emu.ledger.query(params, limit=limit, offset=offset))

    async def reset(request: Request) -> JSONResponse:
        body = _object(await _json_body(request, default={}))
        emu.reset(keep_config=bool(body.get("keep_config", False)))
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            return JSONResponse(emu.faults.add(await _json_body(request)).public(), status_code=201)
        if request.method == "DELETE":
            return JSONResponse({"deleted": emu.faults.clear()})
        return JSONResponse({"data": [rule.public() for rule in emu.faults.all()]})

    async def fault(request: Request) -> JSONResponse:
        rule_id = request.path_params["rule_id"]
        if not emu.faults.remove(rule_id):
            return JSONResponse({"error": f"no fault rule {rule_id}"}, status_code=404)
        return JSONResponse({"deleted": 1})

    async def templates(request: Request) -> JSONResponse:
        if request.method == "POST":
            template = emu.templates.put(await _json_body(request))
            return JSONResponse(template.control_view(), status_code=201)
        return JSONResponse({"data": [t.control_view() for t in emu.templates.all()]})

    async def template(request: Request) -> JSONResponse:
        name, language = request.path_params["name"], request.path_params["language"]
        current = emu.templates.get(name, language)
        if current is None:
            return JSONResponse({"error": f"no template {name} ({language})"}, status_code=404)
        if request.method == "GET":
            return JSONResponse(current.control_view())
        if request.method == "DELETE":
            emu.templates.remove(name, language)
            return JSONResponse({"deleted": 1})
        changes = _object(await _json_body(request))
        unknown = set(changes) - {"status", "paced"}
        if unknown:
            raise _BadRequest(f"only status and paced can change here, not {sorted(unknown)}")
        if "paced" in changes and not isinstance(changes["paced"], bool):
            raise _BadRequest("paced must be true or false")
        before = current.status
        updated = emu.templates.update(
            name, language, status=changes.get("status"), paced=changes.get("paced")
        )
        if updated.status != before:
            # Meta tells the business about every status change of a template.
            definition = dict(updated.definition)
            emu.webhooks.submit(
                [lambda: template_status_payload(emu.config, definition, definition["status"])]
            )
        return JSONResponse(updated.control_view())

    async def config(request: Request) -> JSONResponse:
        if request.method == "PATCH":
            emu.configure(_object(await _json_body(request)))
        return JSONResponse(emu.config.public())

    async def inbound(request: Request) -> JSONResponse:
        body = _object(await _json_body(request))
        sender = "".join(ch for ch in str(body.get("from", "")) if ch.isdigit())
        if not sender:
            raise _BadRequest("from (the user's phone number) is required")
        emu.windows[sender] = time.time()
        wamid = emu.new_wamid(sender)
        phone_number_id = str(
            body.get("phone_number_id") or emu.config.phone_number_id or DEFAULT_PHONE_NUMBER_ID
        )
        text, name = str(body.get("text", "hi")), str(body.get("name", "Test User"))
        emu.webhooks.submit(
            [lambda: inbound_text_payload(emu.config, phone_number_id, sender, text, wamid, name)]
        )
        return JSONResponse(
            {
                "wa_id": sender,
                "id": wamid,
                "window_open_until": emu.windows[sender] + emu.config.service_window_s,
            }
        )

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    routes = [
        Route("/_emulator/health", health),
        Route("/_emulator/stats", stats),
        Route("/_emulator/messages", messages),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/faults/{rule_id:int}", fault, methods=["DELETE"]),
        Route("/_emulator/templates", templates, methods=["GET", "POST"]),
        Route("/_emulator/templates/{name}/{language}", template, methods=["GET", "PATCH", "DELETE"]),
        Route("/_emulator/config", config, methods=["GET", "PATCH"]),
        Route("/_emulator/inbound", inbound, methods=["POST"]),
    ]
    handlers = {_BadRequest: bad_request, ValueError: bad_request, TemplateDefinitionError: bad_request}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]

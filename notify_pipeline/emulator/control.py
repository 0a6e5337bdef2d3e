"""The control and inspection API under /_emulator/ (no token: the server listens on loopback).

Answers are plain JSON; mistakes get 400 {"error": "..."} (this API is ours, not Meta's).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notify_pipeline.emulator.control_body import BadRequest, NotFound, json_body, json_object
from notify_pipeline.emulator.control_events import announce_status, event_routes
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.templates import TemplateDefinitionError


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
            raise BadRequest("limit and offset must be integers") from None
        return JSONResponse(emu.ledger.query(params, limit=limit, offset=offset))

    async def reset(request: Request) -> JSONResponse:
        body = json_object(await json_body(request, default={}))
        emu.reset(keep_config=bool(body.get("keep_config", False)))
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            return JSONResponse(emu.faults.add(await json_body(request)).public(), status_code=201)
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
            template = emu.templates.put(await json_body(request))
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
        changes = json_object(await json_body(request))
        unknown = set(changes) - {"status", "paced"}
        if unknown:
            raise BadRequest(f"only status and paced can change here, not {sorted(unknown)}")
        if "paced" in changes and not isinstance(changes["paced"], bool):
            raise BadRequest("paced must be true or false")
        before = current.status
        updated = emu.templates.update(
            name, language, status=changes.get("status"), paced=changes.get("paced")
        )
        if updated.status != before:
            announce_status(emu, updated, updated.status)  # Meta tells of every status change
        return JSONResponse(updated.control_view())

    async def config(request: Request) -> JSONResponse:
        if request.method == "PATCH":
            emu.configure(json_object(await json_body(request)))
        return JSONResponse(emu.config.public())

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

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
        *event_routes(emu),
    ]
    handlers = {
        BadRequest: bad_request,
        ValueError: bad_request,
        TemplateDefinitionError: bad_request,
        NotFound: not_found,
    }
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]

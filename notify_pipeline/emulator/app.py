"""The ASGI application: Graph routes as raw ASGI (fast), /_emulator/* through Starlette.

The send route is the benchmarked path, so it avoids a framework's request objects and
middleware. Whatever goes wrong, a Graph client gets Graph's error shape, never a traceback.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from notify_pipeline.emulator.answers import Answer, MetaAPIError, error_answer, json_answer, unknown_object
from notify_pipeline.emulator.control import build_control_app
from notify_pipeline.emulator.phone_number import read_phone_number
from notify_pipeline.emulator.send import handle_send
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.template_list import list_templates

log = logging.getLogger(__name__)

_VERSION = re.compile(r"v\d+\.\d+")
_MAX_BODY = 1 << 20  # Graph refuses very large bodies; a send is a few hundred bytes
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class EmulatorApp:
    """ASGI entry point for one `Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._control = build_control_app(emulator)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/_emulator"):
                await self._control_request(scope, receive, send)
            else:
                await self._graph_request(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # Websockets are not part of Graph: uvicorn refuses them when the app returns.

    async def _graph_request(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            answer = await self._graph_answer(scope, receive)
        except MetaAPIError as error:
            # Not counted in the send stats: those count answers to sends (handle_send does it).
            answer = error_answer(error)
        except Exception:
            # A bug in the emulator: log it here, answer as Graph does for unknown failures.
            log.exception("emulator: unexpected error on %s %s", scope["method"], scope["path"])
            self.emulator.internal_errors += 1
            answer = error_answer(MetaAPIError(1, "An unknown error occurred.", http_status=500))
        if answer is not None:
            await _write(send, answer)

    async def _graph_answer(self, scope: dict[str, Any], receive: Any) -> Answer | None:
        parts = scope["path"].split("/")
        method = scope["method"]
        auth = _header(scope, b"authorization")
        valid_version = len(parts) >= 3 and _VERSION.fullmatch(parts[1]) is not None
        if len(parts) == 4 and parts[3] == "messages" and method == "POST" and valid_version:
            raw = await _read_body(receive)
            if raw is None:
                return None
            return await handle_send(self.emulator, parts[2], auth, raw, receive)
        if len(parts) == 3 and method == "GET" and valid_version:
            return read_phone_number(self.emulator, parts[2], auth)
        if not self.emulator.authorized(auth):
            raise MetaAPIError(
                190,
                "Invalid OAuth access token - Cannot parse access token"
                if auth
                else "An access token is required.",
            )
        if len(parts) == 4 and parts[3] == "message_templates" and method == "GET" and valid_version:
            if not parts[2].isdigit():
                raise unknown_object(method, parts[2])
            return list_templates(
                self.emulator, scope.get("query_string", b""), _base_url(scope), scope["path"]
            )
        object_id = parts[2] if valid_version else (parts[1] if len(parts) > 1 else "")
        raise unknown_object(method, object_id)

    async def _control_request(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client")
        if client and client[0] not in _LOOPBACK:
            await _write(send, json_answer({"error": "the control API answers loopback clients only"}, 403))
            return
        await self._control(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.emulator.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _base_url(scope: dict[str, Any]) -> str:
    host = _header(scope, b"host")
    if host:
        return f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}"
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{scope.get('scheme', 'http')}://{server[0]}:{server[1]}"


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise MetaAPIError(100, f"The request body is larger than {_MAX_BODY} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _write(send: Any, answer: Answer) -> None:
    headers = [(b"content-length", str(len(answer.body)).encode()), *answer.headers]
    if answer.content_type is not None:
        headers.append((b"content-type", answer.content_type))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})

"""The webhook routes Meta calls: GET for the subscription handshake, POST for updates.

POST checks X-Hub-Signature-256 over the raw bytes before anything else, caps the body, refuses
what is not Meta's shape, and answers 200 only once the updates are committed (503 when the
database is away: Meta retries for days).
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from notify_pipeline.receipts.ingest import DatabaseUnavailable, Ingestor
from notify_pipeline.receipts.parse import MalformedWebhook, parse_body
from notify_pipeline.service.config import ServiceConfig
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, verify

log = logging.getLogger(__name__)
PATH = "/webhooks/whatsapp"


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def routes(config: ServiceConfig, ingestor: Ingestor) -> list[Route]:
    async def handshake(request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "")
        if (
            config.verify_token
            and params.get("hub.mode") == "subscribe"
            and hmac.compare_digest(token.encode(), config.verify_token.encode())
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        return PlainTextResponse("Forbidden", status_code=403)

    async def receive(request: Request) -> Response:
        try:
            raw = await _body(request, config.max_body_bytes)
        except _TooLarge:
            return PlainTextResponse("body too large", status_code=413)
        if config.app_secret:
            header = request.headers.get(SIGNATURE_HEADER)
            if not header or not verify(config.app_secret, raw, header):
                return PlainTextResponse("bad or missing signature", status_code=401)
        try:
            updates = parse_body(raw)
        except MalformedWebhook as exc:
            return PlainTextResponse(f"not a WhatsApp webhook: {exc}", status_code=400)
        try:
            await ingestor.submit(updates)
        except DatabaseUnavailable:
            return PlainTextResponse("database unavailable, retry later", status_code=503)
        return PlainTextResponse("ok")

    return [Route(PATH, handshake, methods=["GET"]), Route(PATH, receive, methods=["POST"])]

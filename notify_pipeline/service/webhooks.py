"""The webhook routes Meta calls: GET for the subscription handshake, POST for updates.

POST refuses a missing or malformed X-Hub-Signature-256 before reading the body, reads the body
within intake.py's limits (size, time, the budget of unauthenticated bytes), checks the signature
over the raw bytes before anything else, refuses what is not Meta's shape, and answers 200 only once the updates are committed (503 when the
database is away: Meta retries for days).
"""

from __future__ import annotations

import hmac
import logging
import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from notify_pipeline.receipts.ingest import DatabaseUnavailable, Ingestor, UnstorableBody
from notify_pipeline.receipts.parse import MalformedWebhook, parse_body
from notify_pipeline.service.config import ServiceConfig
from notify_pipeline.service.intake import BodyRefused, Intake
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, verify

log = logging.getLogger(__name__)
PATH = "/webhooks/whatsapp"


# A refused body may still be arriving: the connection is closed rather than read to its end.
CLOSE = {"Connection": "close"}
# Meta's header is "sha256=" and 64 hex digits: anything else is refused before the body is read.
_SIGNATURE_SHAPE = re.compile(r"\s*sha256=[0-9a-fA-F]{64}\s*")


def routes(config: ServiceConfig, ingestor: Ingestor, intake: Intake) -> list[Route]:
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
        header = request.headers.get(SIGNATURE_HEADER, "")
        if config.app_secret and not _SIGNATURE_SHAPE.fullmatch(header):
            return PlainTextResponse("bad or missing signature", status_code=401, headers=CLOSE)
        try:
            raw, credit = await intake.read(request)
        except BodyRefused as refused:
            retry = {"Retry-After": "5"} if refused.status == 503 else {}
            return PlainTextResponse(refused.reason, status_code=refused.status, headers={**CLOSE, **retry})
        try:
            authentic = not config.app_secret or verify(config.app_secret, raw, header)
        finally:
            intake.release(credit)
        if not authentic:
            return PlainTextResponse("bad or missing signature", status_code=401)
        try:
            updates = parse_body(raw)
        except MalformedWebhook as exc:
            return PlainTextResponse(f"not a WhatsApp webhook: {exc}", status_code=400)
        try:
            await ingestor.submit(updates)
        except UnstorableBody as exc:
            return PlainTextResponse(f"not stored: {exc}", status_code=400)
        except DatabaseUnavailable:
            return PlainTextResponse("database unavailable, retry later", status_code=503)
        return PlainTextResponse("ok")

    return [Route(PATH, handshake, methods=["GET"]), Route(PATH, receive, methods=["POST"])]

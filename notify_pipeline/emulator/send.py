"""`POST /{version}/{phone_number_id}/messages`: the hot path.

Order of checks: token, phone number id, envelope, template, throughput limit, pair limit, fault
rules, then acceptance. Invalid requests do not use up rate-limit quota; a request refused by the
pair limit has used throughput quota (Meta counted the attempt). Latency is added to every answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from notify_pipeline.emulator.answers import (
    Answer,
    MetaAPIError,
    error_answer,
    non_json_answer,
    unknown_object,
)
from notify_pipeline.emulator.envelope import SendRequest, parse_send
from notify_pipeline.emulator.faults import FaultRule
from notify_pipeline.emulator.ledger import MessageRecord
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.status_chain import draw_failure, queue_statuses
from notify_pipeline.emulator.template_check import check_template_send
from notify_pipeline.emulator.templates import Template

Receive = Callable[[], Awaitable[dict[str, Any]]]

_THROUGHPUT_DETAILS = "Cloud API message throughput has been reached."
_PAIR_DETAILS = (
    "Message failed to send because there were too many messages sent from this phone number to the same "
    "phone number in a short period of time."
)
_STOPPED_DETAILS = (
    "Message failed to send because the user has stopped marketing messages from this business."
)
_WINDOW_DETAILS = "Message failed to send because more than 24 hours have passed since the customer last replied to this number."


def _unauthorized(header: bytes | None) -> MetaAPIError:
    details = (
        "Invalid OAuth access token - Cannot parse access token" if header else "An access token is required."
    )
    return MetaAPIError(190, details)


def _check(
    emu: Emulator, phone_number_id: str, auth: bytes | None, raw: bytes
) -> tuple[SendRequest, Template | None, FaultRule | None]:
    config = emu.config
    if not emu.authorized(auth):
        raise _unauthorized(auth)
    if not phone_number_id.isdigit() or (
        config.phone_number_id and phone_number_id != config.phone_number_id
    ):
        raise unknown_object("POST", phone_number_id)
    request = parse_send(raw)
    template = check_template_send(emu.templates, request.content) if request.type == "template" else None
    if config.limits_enabled:
        if not emu.throughput.allow(phone_number_id):
            raise MetaAPIError(130429, _THROUGHPUT_DETAILS)
        if not emu.pair.allow((phone_number_id, request.wa_id)):
            raise MetaAPIError(131056, _PAIR_DETAILS)
    rule = emu.faults.match(request) if emu.faults else None
    return request, template, rule


async def handle_send(
    emu: Emulator, phone_number_id: str, auth: bytes | None, raw: bytes, receive: Receive
) -> Answer | None:
    """The answer to one send, or None when the client hung up while a timeout fault held it."""
    latency = emu.latency_s()
    try:
        request, template, rule = _check(emu, phone_number_id, auth, raw)
    except MetaAPIError as error:
        emu.ledger.reject(error.code)
        answer = error_answer(error)
    else:
        if rule is None:
            answer = accept(emu, phone_number_id, request, template)
        elif rule.mode == "timeout":
            return await _hold(emu, rule, receive, phone_number_id, request, template)
        elif rule.mode == "async":
            answer = accept(emu, phone_number_id, request, template, fail_with=rule)
        elif rule.mode == "non_json":
            emu.ledger.reject("non_json")
            answer = non_json_answer(rule.http_status or 503, rule.body, rule.content_type)
        else:
            error = rule.error()
            emu.ledger.reject(error.code)
            answer = error_answer(error)
    if latency > 0:
        await asyncio.sleep(latency)
    return answer


async def _hold(
    emu: Emulator,
    rule: FaultRule,
    receive: Receive,
    phone_number_id: str,
    request: SendRequest,
    template: Template | None,
) -> Answer | None:
    emu.ledger.timeouts += 1
    # With `accepted`, Meta took the message before the line went quiet: record it now, so a
    # client that gives up and resends makes a duplicate, exactly as it would in production.
    answer = accept(emu, phone_number_id, request, template, via_timeout=True) if rule.accepted else None
    if await _client_gone_within(receive, rule.hold_s):
        return None
    if answer is None:
        error = rule.error()
        emu.ledger.reject(error.code)
        answer = error_answer(error)
    return answer


async def _client_gone_within(receive: Receive, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def accept(
    emu: Emulator,
    phone_number_id: str,
    request: SendRequest,
    template: Template | None,
    *,
    fail_with: FaultRule | None = None,
    via_timeout: bool = False,
) -> Answer:
    """Record the message, queue its webhooks, and answer 200 as Meta does."""
    config = emu.config
    wamid = emu.new_wamid(request.wa_id)
    pacing = "accepted" if template is not None and template.paced else None
    failed_code = details = None
    drawn = False
    if fail_with is not None:
        failed_code, details = fail_with.code or 131000, fail_with.details
    elif template is None and config.enforce_service_window and not emu.window_open(request.wa_id):
        failed_code, details = 131047, _WINDOW_DETAILS
    elif template is not None and template.category == "MARKETING" and request.wa_id in emu.marketing_stopped:
        failed_code, details = 131050, _STOPPED_DETAILS
    elif config.webhook_url:
        # Later failures are drawn only with a receiver: without one nobody could learn of them.
        failed_code = draw_failure(emu, template)
        drawn = True
    record = MessageRecord(
        wamid, phone_number_id, request.to, request.wa_id, request.type, request.template_name,
        request.template_language, request.biz_opaque_callback_data, time.time(), pacing, failed_code,
        via_timeout,
    )  # fmt: skip
    emu.ledger.accept(record)
    if config.webhook_url:
        queue_statuses(emu, record, template, details=details, drawn=drawn)
    # Formatted by hand (the hot path): `to` passed parse_send, so it holds no JSON-special characters.
    status = f',"message_status":"{pacing}"' if pacing else ""
    body = (
        f'{{"messaging_product":"whatsapp","contacts":[{{"input":"{request.to}","wa_id":"{request.wa_id}"}}],'
        f'"messages":[{{"id":"{wamid}"{status}}}]}}'
    )
    return Answer(200, body.encode())

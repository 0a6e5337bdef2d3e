"""`GET /{version}/{phone_number_id}`: the business phone number's node, which clients probe to learn
whether the API is up.

An outage rule (`whole_api` in faults.py) answers first, as a failing API would before it checks
anything; then the token and the id are checked and the number's fields come back as Graph gives
them. Every read is counted (`node_reads` in the stats), so tests can count a client's probes.
"""

from __future__ import annotations

from notify_pipeline.emulator.answers import (
    Answer,
    MetaAPIError,
    json_answer,
    non_json_answer,
    unknown_object,
)
from notify_pipeline.emulator.state import Emulator


def read_phone_number(emu: Emulator, phone_number_id: str, auth: bytes | None) -> Answer:
    emu.ledger.node_reads += 1
    rule = emu.faults.match_node_read() if emu.faults else None
    if rule is not None:
        if rule.mode == "non_json":
            return non_json_answer(rule.http_status or 503, rule.body, rule.content_type)
        raise rule.error()
    config = emu.config
    if not emu.authorized(auth):
        detail = (
            "Invalid OAuth access token - Cannot parse access token"
            if auth
            else "An access token is required."
        )
        raise MetaAPIError(190, detail)
    if not phone_number_id.isdigit() or (
        config.phone_number_id and phone_number_id != config.phone_number_id
    ):
        raise unknown_object("GET", phone_number_id)
    return json_answer(
        {
            "verified_name": "Notify Pipeline Emulator",
            "code_verification_status": "VERIFIED",
            "display_phone_number": config.display_phone_number,
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
            "id": phone_number_id,
        }
    )

"""From a send result to the row's next state: sent, retried, deferred, failed, or a halt.

The error class comes from the code table (whatsapp/errors.py): transient errors use up an
attempt and back off with full jitter up to the template's retry policy (a request that may have
reached Meta, `timeout_ambiguous`, included); a request that never left (`connection`) and
throttling defer without using an attempt (131056 waits 4^X s as Meta advises); a paused or
disabled template (132015, 132016) holds the row; permanent, template and 24-hour window errors
fail at once; auth and account errors give the row back untouched and stop the run (a Halt).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from notify_pipeline.engine.backoff import (
    MAX_DELAY_S,
    RetryPolicy,
    capped_growth,
    connection_delay,
    pair_limit_delay,
)
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.store import Outcome
from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.results import SendResult

THROTTLE_BASE_S = 2.0
THROTTLE_CAP_S = 600.0
TEMPLATE_HOLD_CODES = (132015, 132016)  # paused or disabled at Meta: hold, as a PAUSED status does


@dataclass(frozen=True)
class Halt:
    """Give this row back untouched and stop the drain: kind is `auth` (token or permission) or
    `account` (the business account or sender number is blocked); code and message say why."""

    kind: str
    code: str
    message: str


def sent(row: Mapping[str, Any], result: SendResult) -> Outcome:
    return Outcome(
        "sent", row["id"], "sent", row["retry_count"], row["deferral_count"], wa_message_id=result.wamid
    )


def deferred(row: Mapping[str, Any], until: datetime, reason: str, message: str) -> Outcome:
    return Outcome(
        "deferred", row["id"], "queued", row["retry_count"], row["deferral_count"] + 1, until, message, reason
    )


def failed(row: Mapping[str, Any], reason: str, message: str, *, retry_count: int | None = None) -> Outcome:
    retries = row["retry_count"] if retry_count is None else retry_count
    return Outcome("failed", row["id"], "failed", retries, row["deferral_count"], None, message, reason)


def _later(now: datetime, seconds: float) -> datetime:
    # Clamped so a configured or computed wait can never overflow timedelta or datetime.
    return now + timedelta(seconds=min(max(0.0, seconds), MAX_DELAY_S))


def after_send(
    row: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    result: SendResult,
    now: datetime,
    rng: random.Random | None = None,
    *,
    template_hold_s: float = PolicyConfig.template_hold_s,
) -> Outcome | Halt:
    """The outcome of one send, or a Halt: give the row back untouched and stop the drain."""
    if result.ok:
        return sent(row, result)
    error = result.error
    assert error is not None
    code, text = error.label, error.describe()
    if error.error_class is ErrorClass.AUTH:
        return Halt("auth", code, text)
    if error.error_class is ErrorClass.ACCOUNT:
        return Halt("account", code, text)
    if error.kind == "connection":
        # The request never left, so Meta cannot have it: wait briefly, spend no attempt.
        delay = connection_delay(row["deferral_count"], rng)
        return deferred(row, _later(now, delay), "connection", f"API unreachable, retrying soon: {text}")
    if error.error_class is ErrorClass.TRANSIENT:
        policy = RetryPolicy.from_json(template.get("retry_policy") if template else None)
        attempts = row["retry_count"] + 1
        if attempts > policy.max_retries:
            return failed(row, code, f"Gave up after {attempts} attempts: {text}", retry_count=attempts)
        delay = max(policy.delay(attempts, rng), error.min_retry_delay_s or 0.0)
        return Outcome(
            "retried", row["id"], "queued", attempts, row["deferral_count"], _later(now, delay), text, code
        )
    if error.error_class is ErrorClass.THROTTLED:
        hits = row["deferral_count"]
        if error.code == 131056:
            delay = pair_limit_delay(hits)
        else:
            ceiling = capped_growth(THROTTLE_BASE_S, 2, hits, THROTTLE_CAP_S)
            delay = (rng or random).uniform(ceiling / 2, ceiling)
        delay = max(delay, error.min_retry_delay_s or 0.0)
        return deferred(row, _later(now, delay), code, f"Throttled by Meta, retrying later: {text}")
    if error.code in TEMPLATE_HOLD_CODES:
        held = deferred(
            row, _later(now, template_hold_s), "template_paused", f"Template held, Meta refused it: {text}"
        )
        return dataclasses.replace(held, template_hold=True)
    if error.error_class is ErrorClass.OUTSIDE_WINDOW:
        return failed(
            row, code, f"{text} Free-form text needs an open 24-hour window; send an approved template."
        )
    return failed(row, code, text)

"""From a send result to the row's next state: sent, retried, deferred, failed, or given back.

The error class comes from the code table (whatsapp/errors.py): transient errors use up an
attempt and back off with full jitter up to the template's retry policy; throttling defers
without using an attempt (131056 waits 4^X s as Meta advises); permanent, template and 24-hour
window errors fail at once; auth errors give the row back untouched and stop the run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from notify_pipeline.engine.backoff import RetryPolicy, pair_limit_delay
from notify_pipeline.engine.store import Outcome
from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.results import SendResult

THROTTLE_BASE_S = 2.0
THROTTLE_CAP_S = 600.0


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


def after_send(
    row: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    result: SendResult,
    now: datetime,
    rng: random.Random | None = None,
) -> Outcome | None:
    """The outcome of one send; None means: give the row back untouched (auth failure)."""
    if result.ok:
        return sent(row, result)
    error = result.error
    assert error is not None
    code, text = error.label, error.describe()
    if error.error_class is ErrorClass.AUTH:
        return None
    if error.error_class is ErrorClass.TRANSIENT:
        policy = RetryPolicy.from_json(template.get("retry_policy") if template else None)
        attempts = row["retry_count"] + 1
        if attempts > policy.max_retries:
            return failed(row, code, f"Gave up after {attempts} attempts: {text}", retry_count=attempts)
        delay = max(policy.delay(attempts, rng), error.min_retry_delay_s or 0.0)
        return Outcome(
            "retried",
            row["id"],
            "queued",
            attempts,
            row["deferral_count"],
            now + timedelta(seconds=delay),
            text,
            code,
        )
    if error.error_class is ErrorClass.THROTTLED:
        hits = row["deferral_count"]
        if error.code == 131056:
            delay = pair_limit_delay(hits)
        else:
            ceiling = min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2**hits)
            delay = (rng or random).uniform(ceiling / 2, ceiling)
        delay = max(delay, error.min_retry_delay_s or 0.0)
        return deferred(
            row, now + timedelta(seconds=delay), code, f"Throttled by Meta, retrying later: {text}"
        )
    if error.error_class is ErrorClass.OUTSIDE_WINDOW:
        return failed(
            row, code, f"{text} Free-form text needs an open 24-hour window; send an approved template."
        )
    return failed(row, code, text)

"""From a send result to the row's next state: sent, retried, deferred, failed, or a halt.

The error class comes from the code table (whatsapp/errors.py): transient errors use up an
attempt and back off with full jitter up to the template's retry policy (a request that may have
reached Meta, `timeout_ambiguous`, included); a request that never left (`connection`) and
throttling defer without using an attempt; a paused or disabled template (the table's
`holds_template`: 132015, 132016) holds the row; permanent, template and 24-hour window errors
fail at once; auth and account errors give the row back untouched and stop the run (a Halt).
During an API outage (the circuit breaker, engine/breaker.py) an outage answer defers its row
without an attempt (`outage_deferral`).

A send that got no usable answer (AWAITS_RECEIPT: a timeout after the request left, a gateway's
502 or 504, a 200 without a message id) may have reached Meta. Its row is not sent again at once:
it waits at least `receipt_wait_s` (PolicyConfig) for a status webhook naming it, which records it
sent (receipts/reconcile.py); only with none by then is it retried. Its label in last_error_code is
what the receipts look for.

Each wait grows with the row's deferrals of its own cause (notifications.deferrals, counted per
reason by the database as deferrals are written back): the pair limit (the table's `pair_limit`:
131056) waits 4^X s with X the row's pair-limit hits, whatever quiet hours or holds deferred it
before. A throttling code is deferred at most the code table's `max_deferrals` times per row; the
next one fails the row, saying so.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notify_pipeline.engine.backoff import (
    MAX_DELAY_S,
    RetryPolicy,
    capped_growth,
    connection_delay,
    pair_limit_delay,
)
from notify_pipeline.engine.policy import PolicyConfig, max_deferrals
from notify_pipeline.engine.store import Outcome
from notify_pipeline.whatsapp.errors import ErrorClass, lookup
from notify_pipeline.whatsapp.results import ApiError, SendResult

# Labels (ApiError.label) of answers after which Meta may hold the message without our knowing its id.
AWAITS_RECEIPT = ("timeout_ambiguous", "http_502", "http_504", "bad_response")
THROTTLE_BASE_S = 2.0
THROTTLE_CAP_S = 600.0


@dataclass(frozen=True)
class Halt:
    """Give this row back untouched and stop the drain: kind is `auth` (token or permission) or
    `account` (the business account or sender number is blocked); code and message say why."""

    kind: str
    code: str
    message: str


def deferrals_of(row: Mapping[str, Any], cause: str) -> int:
    """How many times this row was deferred for `cause` (a code such as "131056", or a reason
    such as "quiet_hours"). A row read without its `deferrals` (an older claim) counts them all,
    as before the per-cause count existed."""
    counts = row.get("deferrals")
    if counts is None:
        return row["deferral_count"]
    value = counts.get(cause, 0)
    return value if isinstance(value, int) else 0


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


def awaits_receipt(error: ApiError | None) -> bool:
    """Whether Meta may hold this send's message although no message id came back."""
    return error is not None and error.label in AWAITS_RECEIPT


def _receipt_wait(error: ApiError, delay: float, now: datetime, wait_s: float) -> tuple[float, str]:
    """The delay and a note for a send that may have reached Meta: at least `wait_s`, for a
    status webhook naming the row to arrive first."""
    if not awaits_receipt(error):
        return delay, ""
    delay = max(delay, wait_s)
    until = _later(now, delay).astimezone(UTC)
    return delay, (
        f"; no answer, Meta may have it: sent again only if no status webhook names it by "
        f"{until:%Y-%m-%d %H:%M:%S} UTC"
    )


def outage_deferral(
    row: Mapping[str, Any],
    result: SendResult,
    now: datetime,
    rng: random.Random | None = None,
    *,
    receipt_wait_s: float = PolicyConfig.receipt_wait_s,
) -> Outcome:
    """A row whose answer was part of an API outage (the circuit breaker opened on it, or it came
    while the breaker was open): deferred briefly, no attempt used, so an outage of any length
    fails no row. The wait grows with the row's deferrals for this answer, as for `connection`;
    a gateway's 502/504 waits at least `receipt_wait_s` for a status webhook naming the row."""
    error = result.error
    assert error is not None
    code = error.label
    delay, note = _receipt_wait(error, connection_delay(deferrals_of(row, code), rng), now, receipt_wait_s)
    outcome = deferred(
        row,
        _later(now, delay),
        code,
        f"API outage (circuit breaker open), no attempt used: {error.describe()}{note}",
    )
    return dataclasses.replace(outcome, latency_s=result.latency_s)


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
    deferral_limits: Mapping[int, int] | None = None,
    receipt_wait_s: float = PolicyConfig.receipt_wait_s,
) -> Outcome | Halt:
    """The outcome of one send, or a Halt: give the row back untouched and stop the drain.

    `deferral_limits` overrides the code table's bounds per code (default: NOTIFY_MAX_DEFERRALS,
    else the table). A send that may have reached Meta is retried no sooner than `receipt_wait_s`."""
    outcome = _after_send(
        row,
        template,
        result,
        now,
        rng,
        template_hold_s=template_hold_s,
        deferral_limits=deferral_limits,
        receipt_wait_s=receipt_wait_s,
    )
    if isinstance(outcome, Halt):
        return outcome
    return dataclasses.replace(outcome, latency_s=result.latency_s)  # Meta's answer time, for its histogram


def _after_send(
    row: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    result: SendResult,
    now: datetime,
    rng: random.Random | None,
    *,
    template_hold_s: float,
    deferral_limits: Mapping[int, int] | None,
    receipt_wait_s: float,
) -> Outcome | Halt:
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
        delay = connection_delay(deferrals_of(row, "connection"), rng)
        return deferred(row, _later(now, delay), "connection", f"API unreachable, retrying soon: {text}")
    if error.error_class is ErrorClass.TRANSIENT:
        policy = RetryPolicy.from_json(template.get("retry_policy") if template else None)
        attempts = row["retry_count"] + 1
        if attempts > policy.max_retries:
            # Still matched to a status webhook that names it later (then recorded sent).
            return failed(row, code, f"Gave up after {attempts} attempts: {text}", retry_count=attempts)
        delay = max(policy.delay(attempts, rng), error.min_retry_delay_s or 0.0)
        delay, note = _receipt_wait(error, delay, now, receipt_wait_s)
        return Outcome(
            "retried",
            row["id"],
            "queued",
            attempts,
            row["deferral_count"],
            _later(now, delay),
            text + note,
            code,
        )
    entry = lookup(error.code)
    if error.error_class is ErrorClass.THROTTLED:
        hits = deferrals_of(row, code)
        bound = max_deferrals(error.code, deferral_limits) if error.code is not None else None
        if bound is not None and hits >= bound and row.get("deferrals") is not None:
            return failed(
                row,
                code,
                f"Gave up after {hits} deferral(s) for {code}, the most allowed for it "
                f"(max_deferrals {bound}): {text}",
            )
        if entry is not None and entry.pair_limit:
            delay = pair_limit_delay(hits)
        else:
            ceiling = capped_growth(THROTTLE_BASE_S, 2, hits, THROTTLE_CAP_S)
            delay = (rng or random).uniform(ceiling / 2, ceiling)
        delay = max(delay, error.min_retry_delay_s or 0.0)
        return deferred(row, _later(now, delay), code, f"Throttled by Meta, retrying later: {text}")
    if entry is not None and entry.holds_template:  # paused or disabled at Meta: held as PAUSED holds
        held = deferred(
            row, _later(now, template_hold_s), "template_paused", f"Template held, Meta refused it: {text}"
        )
        return dataclasses.replace(held, template_hold=True)
    if error.error_class is ErrorClass.OUTSIDE_WINDOW:
        return failed(
            row, code, f"{text} Free-form text needs an open 24-hour window; send an approved template."
        )
    return failed(row, code, text)

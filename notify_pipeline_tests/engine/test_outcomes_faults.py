"""Outcome rules under faults, as pure functions: halts for auth and account errors, no-attempt
deferrals when the request never left, attempt-using retries when it may have, template holds for
132015/132016, and backoff that stays finite and capped for any count (property-tested)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notify_pipeline.engine import outcomes
from notify_pipeline.engine.backoff import (
    CONNECTION_CAP_S,
    MAX_DELAY_S,
    RetryPolicy,
    connection_delay,
    pair_limit_delay,
)
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.reasons import DEFERRAL_REASONS, OWN_REASONS
from notify_pipeline.engine.store import Outcome
from notify_pipeline.whatsapp.errors import ErrorClass, classify, lookup, throttling_codes
from notify_pipeline.whatsapp.results import ApiError, SendResult

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
HUGE = 10**30


def row(retry_count: int = 0, deferral_count: int = 0) -> dict:
    return {"id": 7, "retry_count": retry_count, "deferral_count": deferral_count}


def meta(code: int) -> SendResult:
    error = ApiError(classify(code, 400), f"({code})", code=code, http_status=400)
    return SendResult(latency_s=0.01, http_status=400, error=error)


def network(kind: str) -> SendResult:
    return SendResult(latency_s=0.01, error=ApiError(ErrorClass.TRANSIENT, f"{kind}: boom", kind=kind))


def wait(outcome: Outcome) -> float:
    return (outcome.next_attempt_at - NOW).total_seconds()


@pytest.mark.parametrize(("code", "kind"), [(190, "auth"), (0, "auth"), (131005, "auth"), (368, "account")])
def test_auth_and_account_errors_halt_and_leave_the_row(code: int, kind: str) -> None:
    halt = outcomes.after_send(row(), None, meta(code), NOW)
    assert halt == outcomes.Halt(kind, str(code), f"({code}) {lookup(code).title}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        halt.kind = "other"  # type: ignore[misc]


@pytest.mark.parametrize("code", [33, 368, 131031, 131037, 131042, 131045, 133010])
def test_every_account_code_halts_the_drain(code: int) -> None:
    outcome = outcomes.after_send(row(), None, meta(code), NOW)
    assert isinstance(outcome, outcomes.Halt) and outcome.kind == "account"


def test_a_connection_error_defers_without_an_attempt_for_a_few_growing_seconds() -> None:
    rng = random.Random(1)
    first = outcomes.after_send(row(retry_count=2, deferral_count=0), None, network("connection"), NOW, rng)
    assert (first.kind, first.status, first.error_code) == ("deferred", "queued", "connection")
    assert (first.retry_count, first.deferral_count) == (2, 1), "no attempt used"
    assert 1.0 <= wait(first) <= 2.0
    later = outcomes.after_send(row(deferral_count=4), None, network("connection"), NOW, rng)
    assert 16.0 <= wait(later) <= 32.0
    capped = outcomes.after_send(row(deferral_count=HUGE), None, network("connection"), NOW, rng)
    assert CONNECTION_CAP_S / 2 <= wait(capped) <= CONNECTION_CAP_S


def test_an_ambiguous_timeout_retries_and_uses_an_attempt() -> None:
    policy = {"retry_policy": {"max_retries": 2, "backoff_base_seconds": 10, "backoff_max_seconds": 100}}
    retried = outcomes.after_send(
        row(retry_count=1), policy, network("timeout_ambiguous"), NOW, receipt_wait_s=0
    )
    assert (retried.kind, retried.retry_count, retried.error_code) == ("retried", 2, "timeout_ambiguous")
    assert 0 <= wait(retried) <= 20
    # By default it first waits for a status webhook that would say Meta had taken it.
    waiting = outcomes.after_send(row(retry_count=1), policy, network("timeout_ambiguous"), NOW)
    assert wait(waiting) >= PolicyConfig.receipt_wait_s
    gave_up = outcomes.after_send(row(retry_count=2), policy, network("timeout_ambiguous"), NOW)
    assert (gave_up.kind, gave_up.retry_count, gave_up.error_code) == ("failed", 3, "timeout_ambiguous")


@pytest.mark.parametrize("code", [132015, 132016])
def test_a_paused_or_disabled_template_holds_the_row(code: int) -> None:
    held = outcomes.after_send(row(retry_count=1), None, meta(code), NOW, template_hold_s=120)
    assert (held.kind, held.status, held.error_code, held.template_hold) == (
        "deferred",
        "queued",
        "template_paused",
        True,
    )
    assert held.retry_count == 1 and wait(held) == 120
    assert outcomes.after_send(row(), None, meta(code), NOW).next_attempt_at == NOW + timedelta(seconds=900)


def test_other_template_errors_still_fail_without_a_hold() -> None:
    outcome = outcomes.after_send(row(), None, meta(132000), NOW)
    assert (outcome.kind, outcome.template_hold) == ("failed", False)


def test_the_network_labels_are_explained_and_the_old_timeout_is_gone() -> None:
    assert "never left" in OWN_REASONS["connection"]
    assert "timeout_ambiguous" in OWN_REASONS and "timeout" not in OWN_REASONS
    assert "connection" in DEFERRAL_REASONS


@settings(max_examples=300, deadline=None)
@given(
    hits=st.one_of(st.integers(0, 5000), st.integers(0, HUGE)),
    code=st.sampled_from(sorted(int(c) for c in throttling_codes())),
    seed=st.integers(0, 2**32),
)
def test_throttling_never_overflows_and_stays_capped(hits: int, code: int, seed: int) -> None:
    outcome = outcomes.after_send(row(deferral_count=hits), None, meta(code), NOW, random.Random(seed))
    assert outcome.kind == "deferred" and outcome.deferral_count == hits + 1
    floor = lookup(code).min_retry_delay_s or 0.0
    assert 0 < wait(outcome) <= max(outcomes.THROTTLE_CAP_S, 3600.0, floor)


@settings(max_examples=300, deadline=None)
@given(hits=st.integers(-10, HUGE))
def test_pair_limit_and_connection_delays_are_bounded(hits: int) -> None:
    assert 1.0 <= pair_limit_delay(hits) <= 3600.0
    assert 1.0 <= connection_delay(hits, random.Random(0)) <= CONNECTION_CAP_S


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(-10, HUGE),
    base=st.floats(0.001, 1e300),
    cap=st.floats(0.001, 1e300),
)
def test_retry_delay_is_finite_for_any_attempt_and_policy(attempt: int, base: float, cap: float) -> None:
    delay = RetryPolicy(5, base, cap).delay(attempt, random.Random(3))
    assert math.isfinite(delay) and 0.0 <= delay <= min(cap, MAX_DELAY_S)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.fixed_dictionaries(
        {},
        optional={
            key: st.one_of(
                st.integers(-5, HUGE), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)
            )
            for key in ("max_retries", "backoff_base_seconds", "backoff_max_seconds")
        },
    ),
    retry_count=st.integers(0, 10**6),
)
def test_transient_retries_never_raise_for_any_stored_policy(policy: dict, retry_count: int) -> None:
    outcome = outcomes.after_send(
        row(retry_count=retry_count), {"retry_policy": policy}, network("timeout_ambiguous"), NOW
    )
    assert outcome.kind in ("retried", "failed")
    if outcome.kind == "retried":
        assert 0 <= wait(outcome) <= MAX_DELAY_S

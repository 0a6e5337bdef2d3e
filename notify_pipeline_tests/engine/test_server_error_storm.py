"""A 5xx storm against a live drain, over real HTTP to the emulator and a real PostgreSQL, counted
from the emulator's ledger: HTTP 500/502/503/504 and non-JSON answers open the circuit breaker,
the rows they hit use no attempt, the probe treats a 5xx as down, and a storm longer than the
retry budget fails no row and sends each message once after it."""

from __future__ import annotations

import asyncio
import time

import pytest

from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.whatsapp.client import CloudApiClient
from notify_pipeline_tests.support.drain_harness import (
    DrainThread,
    assert_each_sent_once,
    counts,
    events,
    fresh,
    wait_until,
)
from notify_pipeline_tests.support.engine import client_settings, enqueue_many, load_demo_templates, run_drain

pytestmark = pytest.mark.slow
CONCURRENCY = 16
BREAKER_AFTER = 5  # the default
PROBE_MAX_WAIT_S = 1.0
# The retry budget: one retry, a fraction of a second later. Any storm of seconds outlasts it.
SHORT_BUDGET = '{"max_retries": 1, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2}'
# A 502 may have reached Meta: its row waits this long for a status naming it before a retry
# (receipt_wait_s, minutes by default; this test has no webhooks, so keep the wait short).
POLICY = PolicyConfig(default_quiet_hours=None, receipt_wait_s=1)
STORMS = {
    "meta_503": {"mode": "error", "code": 131016},  # Meta's JSON error, HTTP 503
    "gateway_502_page": {"mode": "non_json", "http_status": 502},  # a load balancer's HTML page
}


def _seed(db_url: str, count: int) -> list[int]:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        conn.execute(f"UPDATE whatsapp_templates SET retry_policy = '{SHORT_BUDGET}'")
        return enqueue_many(conn, count)


def _drain_until_all_sent(db_url: str, emulator, total: int, tmp_path) -> None:
    """Bounded drains, again and again, until every row is sent (rows deferred by the outage come
    due a few seconds later). Fails if a row fails or the deadline passes."""
    deadline = time.monotonic() + 120
    while (now := counts(db_url)) != {"sent": total}:
        assert not now.get("failed"), f"a row failed: {now}"
        assert time.monotonic() < deadline, f"not all sent: {now}"
        run_drain(
            db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, max_seconds=30, policy=POLICY
        )
        time.sleep(0.2)


def _probe(emulator, **overrides) -> bool:
    async def once() -> bool:
        async with CloudApiClient(client_settings(emulator, probe_timeout_s=2.0, **overrides)) as client:
            return await client.probe()

    return asyncio.run(once())


def test_the_probe_counts_a_5xx_or_a_proxy_page_as_down(emulator) -> None:
    emulator.configure(limits_enabled=False)
    assert _probe(emulator), "the phone number node answers"
    assert _probe(emulator, access_token="wrong-token"), "Graph refusing the token is Graph answering"
    rule = emulator.add_fault(mode="error", code=131016, whole_api=True)
    assert not _probe(emulator), "Meta's 503 is not a healthy answer"
    emulator.clear_faults()
    emulator.add_fault(mode="non_json", http_status=502, whole_api=True)
    assert not _probe(emulator), "a gateway's page is not Graph"
    emulator.clear_faults()
    assert _probe(emulator), "healthy again once the storm ends"
    assert rule["whole_api"] is True
    assert emulator.stats()["node_reads"] == 5, "every probe reached the emulator and was counted"


@pytest.mark.parametrize("storm", sorted(STORMS))
def test_a_storm_longer_than_the_retry_budget_fails_no_row(db_url, emulator, tmp_path, storm) -> None:
    emulator.configure(limits_enabled=False)
    total = 300
    _seed(db_url, total)
    emulator.add_fault(whole_api=True, **STORMS[storm])
    began = time.monotonic()
    drain = DrainThread(
        db_url,
        emulator,
        throughput_per_s=100,
        concurrency=CONCURRENCY,
        breaker_max_wait_s=PROBE_MAX_WAIT_S,
        journal_dir=tmp_path,
        max_seconds=120,
        policy=POLICY,
    )
    wait_until(lambda: events(db_url, "NOTIFY_CIRCUIT_OPEN"), what="the circuit breaker to open")
    # The storm goes on for several probes: many times the retry budget (a fraction of a second).
    wait_until(lambda: emulator.stats()["node_reads"] >= 6, what="the breaker to probe through the storm")
    during = emulator.stats()
    storm_s = time.monotonic() - began
    emulator.clear_faults()
    report = drain.join()
    _drain_until_all_sent(db_url, emulator, total, tmp_path)

    assert report.failed == {}, report.as_dict()
    with fresh(db_url) as conn:
        assert conn.execute("SELECT max(retry_count) FROM notifications").fetchone() == (0,), (
            "the outage used no row's attempt"
        )
    assert during["rejected"] <= CONCURRENCY + BREAKER_AFTER, (
        f"{during['rejected']} POSTs went into the storm: only those in flight when it opened may"
    )
    assert during["node_reads"] <= storm_s / PROBE_MAX_WAIT_S + 2, (
        f"{during['node_reads']} probes in {storm_s:.1f} s: at most one per {PROBE_MAX_WAIT_S} s"
    )
    closed = events(db_url, "NOTIFY_CIRCUIT_CLOSED")
    assert closed and closed[0]["probes"] >= 6
    assert_each_sent_once(db_url, emulator, total)


def test_a_single_rows_5xx_still_retries_with_back_off(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    ids = _seed(db_url, 60)
    unlucky = "250700000007"  # the recipient of the eighth row (enqueue_many numbers them)
    emulator.add_fault(mode="error", code=131016, recipients=[unlucky], max_count=1)
    _drain_until_all_sent(db_url, emulator, 60, tmp_path)

    with fresh(db_url) as conn:
        retries = {
            "".join(filter(str.isdigit, wa_id)): used
            for wa_id, used in conn.execute("SELECT to_wa_id, retry_count FROM notifications")
        }
    assert retries.pop(unlucky) == 1, "its own 503 used one attempt"
    assert set(retries.values()) == {0}
    assert not events(db_url, "NOTIFY_CIRCUIT_OPEN"), "one 5xx is not an outage"
    assert emulator.stats()["rejected"] == 1 and len(ids) == 60
    assert_each_sent_once(db_url, emulator, 60)

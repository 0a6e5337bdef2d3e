"""Receipts in the reports and metrics, on a real PostgreSQL: statuses applied as the webhook applies
them show in the daily summary (counts, rates over accepted messages, delivery latency) and in
counters that only go up; the dashboard's receipt panels read series the exporter produces."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pandas as pd
import pytest

from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.summary import SUMMARY_COLUMNS
from notify_pipeline_tests.support.metrics import produced_series, samples, value
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.receipts import give_message_id, receive
from notify_pipeline_tests.support.reporting import add, kigali, materialize, table

DAY = (2026, 3, 1)
DASHBOARD = REPO_ROOT / "docs" / "grafana" / "notify-pipeline.json"


def accepted(db, hour: int, domain: str, latency_s: float = 2.0):
    """A message created at `hour` of DAY, accepted by Meta `latency_s` later: (wamid, sent_at)."""
    notification_id = add(db, kigali(*DAY, hour), "sent", domain, latency_s=latency_s)
    sent_at = kigali(*DAY, hour) + timedelta(seconds=latency_s)
    return give_message_id(db, notification_id), sent_at


def seed_receipts(db) -> None:
    """orders: 4 accepted (2 delivered, 1 of them read; 1 failed late; 1 silent) and 1 refused
    outright; baskets: 1 accepted and delivered."""
    read_one, at = accepted(db, 9, "orders")
    receive(db, read_one, "sent", at)
    receive(db, read_one, "delivered", at + timedelta(seconds=1))
    receive(db, read_one, "read", at + timedelta(minutes=5))
    delivered, at = accepted(db, 10, "orders")
    receive(db, delivered, "delivered", at + timedelta(seconds=3))
    late, at = accepted(db, 11, "orders")
    receive(db, late, "failed", at + timedelta(seconds=4), "131026")
    accepted(db, 12, "orders")  # no status yet
    add(db, kigali(*DAY, 13), "failed", "orders", code="131000")  # refused when sent: not accepted
    basket, at = accepted(db, 14, "baskets")
    receive(db, basket, "delivered", at + timedelta(seconds=10))


def test_summary_counts_receipts_over_accepted_messages_with_delivery_latency(db, db_url) -> None:
    seed_receipts(db)
    assert materialize(db_url, "2026-03-01").success
    summary = table(db, "daily_domain_summary")
    assert set(SUMMARY_COLUMNS) < set(summary.columns), "every figure has its column"
    summary = summary.set_index("domain")
    orders = summary.loc["orders"]
    # A late failure turns the row failed: counted in failed and the failure rate, and apart.
    assert (orders.sent, orders.failed, orders.late_failed) == (3, 2, 1)
    assert orders.failure_rate == pytest.approx(2 / 5)
    assert (orders.delivered, orders["read"]) == (2, 1)
    # Rates over the 4 messages Meta accepted (3 sent + 1 failed late), not the refused one.
    assert (orders.delivery_rate, orders.read_rate, orders.late_failure_rate) == (0.5, 0.25, 0.25)
    # Sent to delivered: 1 s and 3 s, in ms like the send latency columns.
    assert orders.delivery_latency_p50_ms == pytest.approx(2000)
    assert orders.delivery_latency_p99_ms == pytest.approx(1000 + 0.99 * 2000)
    assert orders.latency_p50_ms == pytest.approx(2000), "send latency unchanged"
    baskets = summary.loc["baskets"]
    assert (baskets.delivered, baskets.delivery_rate, baskets.late_failed) == (1, 1.0, 0)
    assert baskets.delivery_latency_p95_ms == pytest.approx(10_000)
    breakdown = table(db, "daily_error_code_breakdown")
    assert set(breakdown["error_code"]) == {"131026", "131000"}, "late failures by Meta's code"


def test_a_day_without_receipts_or_without_sends_still_builds(db, db_url) -> None:
    add(db, kigali(*DAY, 9), "sent", "orders")  # sent before receipts existed: nothing known
    add(db, kigali(*DAY, 10), "failed", "wallet", code="131000")  # a domain with nothing sent
    add(db, kigali(*DAY, 11), "queued", "wallet")
    assert materialize(db_url, "2026-03-01").success
    summary = table(db, "daily_domain_summary").set_index("domain")
    orders, wallet = summary.loc["orders"], summary.loc["wallet"]
    assert (orders.delivered, orders["read"], orders.late_failed, orders.delivery_rate) == (0, 0, 0, 0)
    assert pd.isna(orders.delivery_latency_p50_ms)
    assert pd.isna(wallet.delivery_rate) and pd.isna(wallet.latency_p50_ms), "nothing accepted: no rate"


def test_receipt_counters_are_exported_and_only_go_up(db) -> None:
    seed_receipts(db)
    before = samples(metrics.render(db))
    assert value(before, "notify_delivered_total") == 3  # read implies delivered: counted once
    assert value(before, "notify_read_total") == 1
    assert value(before, "notify_late_failed_total", error_code="131026") == 1
    # Replayed statuses, a cleanup that deletes the rows, a retry of the late failure: no drop.
    db.execute("UPDATE notifications SET status = 'queued', next_attempt_at = now() WHERE status = 'failed'")
    db.execute("SELECT notify_apply_statuses(array(SELECT id FROM webhook_events))")
    db.execute("DELETE FROM notifications")
    after = samples(metrics.render(db))
    for name, labels in (("notify_delivered_total", {}), ("notify_read_total", {})):
        assert value(after, name, **labels) == value(before, name, **labels)
    assert value(after, "notify_late_failed_total", error_code="131026") == 1


def test_receipt_counters_start_at_zero(db) -> None:
    parsed = samples(metrics.render(db))
    assert value(parsed, "notify_delivered_total") == 0 and value(parsed, "notify_read_total") == 0
    # Late failures are exported at 0 for every code of the table from the start (so a rule's
    # increase() sees the first one), and nothing else is there yet.
    late = {labels: count for (name, labels), count in parsed.items() if name == "notify_late_failed_total"}
    assert late and set(late.values()) == {0}


def test_dashboard_receipt_panels_read_series_the_exporter_produces(db) -> None:
    seed_receipts(db)
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bnotify_[a-z0-9_]+\b", expr)}
    assert {"notify_delivered_total", "notify_read_total", "notify_late_failed_total"} <= used
    assert used <= produced_series(db)
    assert "60 * sum by (error_code) (rate(notify_late_failed_total[5m]))" in exprs

"""The seven alerts: each pairs a reading with a condition, a title for messages, and how long the
condition must last before the alert fires (only queue depth waits; the others fire at once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from notify_pipeline.reporting.alerts import conditions, readings
from notify_pipeline.reporting.alerts.verdict import Verdict
from notify_pipeline.thresholds import Thresholds

HOUR_S = 3600.0  # "opt-outs per hour": the unit of the threshold, not a threshold
MINUTE_S = 60.0  # "rate-limit errors per minute"


@dataclass(frozen=True)
class AlertSpec:
    name: str  # alerts.alert_name; the sensor is f"{name}_alert_sensor"
    title: str
    description: str  # shown in the Dagster UI as the sensor's description
    read: Callable[[psycopg.Connection, Thresholds], Any]
    condition: Callable[[Any, Thresholds], Verdict]
    hold_s: Callable[[Thresholds], float] = lambda _t: 0.0

    def check(self, conn: psycopg.Connection, thresholds: Thresholds) -> Verdict:
        return self.condition(self.read(conn, thresholds), thresholds)


ALERTS: tuple[AlertSpec, ...] = (
    AlertSpec(
        "queue_depth",
        "Queue depth",
        "Alerts when more than thresholds.queue_depth notifications are due for longer than "
        "queue_depth_for_s (deferred and scheduled rows are not a backlog and are not counted).",
        lambda conn, _t: readings.read_queue(conn),
        conditions.queue_depth,
        hold_s=lambda t: t.queue_depth_for_s,
    ),
    AlertSpec(
        "oldest_queued",
        "Oldest queued notification",
        "Alerts when the longest-due notification has been due longer than oldest_queued_s.",
        lambda conn, _t: readings.read_queue(conn),
        conditions.oldest_queued,
    ),
    AlertSpec(
        "failure_rate",
        "Failure rate",
        "Alerts when failed / (sent + failed) over failure_rate_window_s exceeds failure_rate, overall "
        "or in a domain, with at least failure_rate_min_volume finished notifications; names the worst "
        "domains and the top error codes with their meanings.",
        lambda conn, t: readings.read_failures(conn, t.failure_rate_window_s),
        conditions.failure_rate,
    ),
    AlertSpec(
        "worker_health",
        "Worker health",
        "Alerts when no send worker has started (NOTIFY_WORKER_START) for worker_silence_s while "
        "sending is enabled and not paused and work has waited that long.",
        lambda conn, _t: readings.read_worker(conn),
        conditions.worker_health,
    ),
    AlertSpec(
        "opt_out_spike",
        "Opt-out spike",
        "Alerts when more than opt_outs_per_hour opt-outs happen in an hour (contacts opting out "
        "plus sends blocked because the contact had opted out).",
        lambda conn, _t: readings.read_opt_outs(conn, HOUR_S),
        conditions.opt_out_spike,
    ),
    AlertSpec(
        "throttling",
        "Throttling",
        "Alerts when Meta answers with more than throttled_per_minute rate-limit errors in a minute; "
        "our own pair-limit deferrals are reported beside them, not counted.",
        lambda conn, _t: readings.read_throttling(conn, MINUTE_S),
        conditions.throttling,
    ),
    AlertSpec(
        "no_receipts",
        "No delivery receipts",
        "Alerts when at least no_receipts_min_sent messages sent in the last no_receipts_window_s (and "
        "older than no_receipts_grace_s) await a status and no status webhook arrived in that window: "
        "Meta's webhooks are not reaching notify-pipeline serve.",
        lambda conn, t: readings.read_receipts(conn, t.no_receipts_window_s, t.no_receipts_grace_s),
        conditions.no_receipts,
    ),
)

BY_NAME: dict[str, AlertSpec] = {spec.name: spec for spec in ALERTS}

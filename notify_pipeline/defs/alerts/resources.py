"""The alert resources: where alerts go (AlertSink) and the thresholds they use (AlertThresholds).

A sensor takes no run config, so thresholds are resource config. Every field defaults to
notify_pipeline.thresholds.DEFAULTS; to change one, bind the resource with the new value in
notify_pipeline/defs/alerts/definitions.py, e.g. `AlertThresholds(queue_depth=5000)`. The Dagster
UI shows the values in use under Deployment > Resources > alert_thresholds.
"""

import dataclasses
import os
from typing import Any

import dagster as dg
from pydantic import Field

from notify_pipeline.reporting.alerts.pagerduty import DEFAULT_EVENTS_URL, PagerDuty
from notify_pipeline.reporting.alerts.sink import BUDGET_S, RecordOnly, Sink, WebhookSink
from notify_pipeline.thresholds import DEFAULTS, Thresholds


class AlertSink(dg.ConfigurableResource):
    """Where alerts go: a Slack-compatible incoming webhook and PagerDuty Events v2. Only the NAMES
    of the environment variables are configuration: the webhook URL and the routing key (secrets)
    are read when an alert is sent, so they never reach run config or the UI. With neither set,
    alerts are recorded in the alerts table and shown on the notifications asset's checks only.
    Each channel's delivery (attempts and backoff) is cut off at budget_s, so a tick posting to both
    stays well inside a sensor tick's 60 s."""

    webhook_url_env: str = Field(
        default="NOTIFY_ALERT_WEBHOOK_URL", description="Environment variable holding the webhook URL."
    )
    timeout_s: float = Field(default=5.0, gt=0, le=10, description="Seconds per attempt (connect at most 3).")
    retries: int = Field(default=2, ge=0, le=3, description="Retries after a 5xx, 429 or network error.")
    backoff_s: float = Field(default=0.5, ge=0, le=5, description="First backoff; doubles on each retry.")
    budget_s: float = Field(
        default=BUDGET_S,
        gt=0,
        le=BUDGET_S,
        description="Longest one delivery may take, attempts and backoff included.",
    )
    pagerduty_routing_key_env: str = Field(
        default="NOTIFY_PAGERDUTY_ROUTING_KEY",
        description="Environment variable holding the PagerDuty Events v2 routing key (unset: no paging).",
    )
    pagerduty_events_url_env: str = Field(
        default="NOTIFY_PAGERDUTY_EVENTS_URL",
        description=f"Environment variable overriding the Events v2 URL (default {DEFAULT_EVENTS_URL}).",
    )

    def webhook_url(self) -> str:
        return os.environ.get(self.webhook_url_env, "").strip()

    def routing_key(self) -> str:
        return os.environ.get(self.pagerduty_routing_key_env, "").strip()

    def secrets(self) -> tuple[str, ...]:
        """What must never appear in alert text, logs or metadata."""
        return tuple(secret for secret in (self.webhook_url(), self.routing_key()) if secret)

    def sink(self) -> Sink:
        url = self.webhook_url()
        if not url:
            return RecordOnly(f"{self.webhook_url_env} is not set")
        return WebhookSink(url, **self._retrying())

    def pager(self) -> PagerDuty | None:
        key = self.routing_key()
        if not key:
            return None
        events_url = os.environ.get(self.pagerduty_events_url_env, "").strip() or DEFAULT_EVENTS_URL
        return PagerDuty(key, events_url=events_url, **self._retrying())

    def _retrying(self) -> dict[str, float]:
        # Both channels deliver with the same settings (sink.Retrying).
        return {name: getattr(self, name) for name in ("timeout_s", "retries", "backoff_s", "budget_s")}


def _default(name: str, description: str, **bounds: float) -> Any:
    # A threshold field whose default is the runbook's number of the same name (thresholds.DEFAULTS).
    return Field(default=getattr(DEFAULTS, name), description=description, **bounds)


class AlertThresholds(dg.ConfigurableResource):
    """Alert thresholds; each defaults to notify_pipeline.thresholds.DEFAULTS (the runbook's numbers)."""

    queue_depth: int = _default("queue_depth", "Due notifications above this ...", ge=0)
    queue_depth_for_s: float = _default("queue_depth_for_s", "... for this long.", ge=0)
    oldest_queued_s: float = _default("oldest_queued_s", "Oldest due row's wait.", gt=0)
    failure_rate: float = _default("failure_rate", "failed / (sent + failed).", ge=0, le=1)
    failure_rate_window_s: float = _default("failure_rate_window_s", "Its window.", gt=0)
    failure_rate_min_volume: int = _default(
        "failure_rate_min_volume", "Fewer finished rows: no verdict.", ge=1
    )
    worker_silence_s: float = _default("worker_silence_s", "No worker start for.", gt=0)
    opt_outs_per_hour: int = _default("opt_outs_per_hour", "Opt-outs in an hour.", ge=0)
    throttled_per_minute: int = _default("throttled_per_minute", "Meta rate-limit errors in a minute.", ge=0)
    no_receipts_window_s: float = _default("no_receipts_window_s", "No status webhook for ...", gt=0)
    no_receipts_grace_s: float = _default(
        "no_receipts_grace_s", "... sends younger than this not counted.", ge=0
    )
    no_receipts_min_sent: int = _default(
        "no_receipts_min_sent", "Fewer sends awaiting a status: no verdict.", ge=1
    )
    alert_repeat_s: float = _default("alert_repeat_s", "Reminder cadence.", gt=0)
    worker_start_grace_s: float = Field(
        default=120.0,
        ge=0,
        le=900,
        description="Worker health waits this long (a send run's normal start) before it fires.",
    )

    def start_grace_s(self, alert_name: str) -> float:
        return self.worker_start_grace_s if alert_name == "worker_health" else 0.0

    def thresholds(self) -> Thresholds:
        # Only the alert fields: the daily summary's asset-check thresholds keep their defaults here
        # (worker_start_grace_s is not a Thresholds field: the sensors pass it to the lifecycle).
        names = [f.name for f in dataclasses.fields(Thresholds) if f.name in type(self).model_fields]
        return dataclasses.replace(DEFAULTS, **{name: getattr(self, name) for name in names})

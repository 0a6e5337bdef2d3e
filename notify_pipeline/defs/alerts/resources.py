"""The alert resources: where alerts go (AlertSink) and the thresholds they use (AlertThresholds).

A sensor takes no run config, so thresholds are resource config. Every field defaults to
notify_pipeline.thresholds.DEFAULTS; to change one, bind the resource with the new value in
notify_pipeline/defs/alerts/definitions.py, e.g. `AlertThresholds(queue_depth=5000)`. The Dagster
UI shows the values in use under Deployment > Resources > alert_thresholds.
"""

import dataclasses
import os

import dagster as dg
from pydantic import Field

from notify_pipeline.reporting.alerts.sink import RecordOnly, Sink, WebhookSink
from notify_pipeline.thresholds import DEFAULTS, Thresholds


class AlertSink(dg.ConfigurableResource):
    """A Slack-compatible incoming webhook for alerts. Only the NAME of the environment variable is
    configuration: the URL (a secret, it carries a token) is read when an alert is sent. Unset, alerts
    are recorded in the alerts table and shown in the sensors' tick text only. The limits keep the
    worst case (every attempt timing out) well inside a sensor tick's 60 s."""

    webhook_url_env: str = Field(
        default="NOTIFY_ALERT_WEBHOOK_URL", description="Environment variable holding the webhook URL."
    )
    timeout_s: float = Field(default=5.0, gt=0, le=10, description="Seconds per attempt (connect at most 3).")
    retries: int = Field(default=2, ge=0, le=3, description="Retries after a 5xx, 429 or network error.")
    backoff_s: float = Field(default=0.5, ge=0, le=5, description="First backoff; doubles on each retry.")

    def webhook_url(self) -> str:
        return os.environ.get(self.webhook_url_env, "").strip()

    def sink(self) -> Sink:
        url = self.webhook_url()
        if not url:
            return RecordOnly(f"{self.webhook_url_env} is not set")
        return WebhookSink(url, timeout_s=self.timeout_s, retries=self.retries, backoff_s=self.backoff_s)


class AlertThresholds(dg.ConfigurableResource):
    """Alert thresholds; each defaults to notify_pipeline.thresholds.DEFAULTS (the runbook's numbers)."""

    queue_depth: int = Field(
        default=DEFAULTS.queue_depth, ge=0, description="Due notifications above this ..."
    )
    queue_depth_for_s: float = Field(
        default=DEFAULTS.queue_depth_for_s, ge=0, description="... for this long."
    )
    oldest_queued_s: float = Field(
        default=DEFAULTS.oldest_queued_s, gt=0, description="Oldest due row's wait."
    )
    failure_rate: float = Field(
        default=DEFAULTS.failure_rate, ge=0, le=1, description="failed / (sent + failed)."
    )
    failure_rate_window_s: float = Field(
        default=DEFAULTS.failure_rate_window_s, gt=0, description="Its window."
    )
    failure_rate_min_volume: int = Field(
        default=DEFAULTS.failure_rate_min_volume, ge=1, description="Fewer finished rows: no verdict."
    )
    worker_silence_s: float = Field(
        default=DEFAULTS.worker_silence_s, gt=0, description="No worker start for."
    )
    opt_outs_per_hour: int = Field(
        default=DEFAULTS.opt_outs_per_hour, ge=0, description="Opt-outs in an hour."
    )
    throttled_per_minute: int = Field(
        default=DEFAULTS.throttled_per_minute, ge=0, description="Meta rate-limit errors in a minute."
    )
    no_receipts_window_s: float = Field(
        default=DEFAULTS.no_receipts_window_s, gt=0, description="No status webhook for ..."
    )
    no_receipts_grace_s: float = Field(
        default=DEFAULTS.no_receipts_grace_s, ge=0, description="... sends younger than this not counted."
    )
    no_receipts_min_sent: int = Field(
        default=DEFAULTS.no_receipts_min_sent, ge=1, description="Fewer sends awaiting a status: no verdict."
    )
    alert_repeat_s: float = Field(default=DEFAULTS.alert_repeat_s, gt=0, description="Reminder cadence.")

    def thresholds(self) -> Thresholds:
        # Only the alert fields: the daily summary's asset-check thresholds keep their defaults here.
        names = [f.name for f in dataclasses.fields(Thresholds) if f.name in type(self).model_fields]
        return dataclasses.replace(DEFAULTS, **{name: getattr(self, name) for name in names})

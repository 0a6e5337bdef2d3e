"""Every alerting and reporting threshold, with its default, in one place.

The runbook's numbers: queue depth over 1,000 for 5 minutes, oldest queued over an hour, failure
rate over 20 % in an hour (5 % is the daily "should be below"), no worker start for 5 minutes,
more than 50 opt-outs an hour, more than 10 rate-limit errors a minute. Ours: no status webhook for
15 minutes while at least 5 messages went out (a broken webhook subscription). Sensors and asset checks
take these as configuration defaults; the Dagster config of each can override them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    queue_depth: int = 1000  # due rows
    queue_depth_for_s: float = 300.0  # ... for this long before alerting
    oldest_queued_s: float = 3600.0  # oldest due row waiting longer than this
    failure_rate: float = 0.20  # failed / (sent + failed) over the window
    failure_rate_window_s: float = 3600.0
    failure_rate_min_volume: int = 20  # fewer finished rows than this: no verdict
    worker_silence_s: float = 300.0  # no NOTIFY_WORKER_START for this long while enabled
    opt_outs_per_hour: int = 50
    throttled_per_minute: int = (
        10  # Meta's throttling codes (errors.throttling_codes()); our pair_limit is shown apart
    )
    no_receipts_window_s: float = 900.0  # sends and status webhooks are looked at over this window
    no_receipts_grace_s: float = 120.0  # ... sends younger than this are not counted (Meta had no time)
    no_receipts_min_sent: int = 5  # fewer sends awaiting a status than this: no verdict
    summary_failure_rate_warn: float = 0.05  # daily summary asset check: warn above
    summary_failure_rate_error: float = 0.20  # ... error above
    alert_repeat_s: float = 1800.0  # while an alert lasts, remind at most this often


DEFAULTS = Thresholds()

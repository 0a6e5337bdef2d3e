"""The alerts as asset checks of the `notifications` asset (the queue table, declared in
defs/reporting/assets.py): one check per alert, named after it.

The alert sensors report each check's evaluation (SensorResult asset_events): a firing alert is a
failed ERROR check, a condition waiting out its hold or grace a failed WARN check, anything else a
passed check. Evaluations are reported when the state changes, on every page (fire, reminder,
resolve) and at least every REPORT_EVERY_S, not every minute: the check's history then reads as the
alert's episodes and Dagster's event log does not grow by ten thousand rows a day.

The checks can also be executed from the UI: that reads the condition and the alerts table once,
pages nobody and moves no alert (the sensors own the lifecycle).
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg

from notify_pipeline.defs.alerts.resources import AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts import listing
from notify_pipeline.reporting.alerts.catalog import ALERTS, BY_NAME, AlertSpec
from notify_pipeline.reporting.alerts.lifecycle import Outcome
from notify_pipeline.reporting.alerts.verdict import Verdict

NOTIFICATIONS = dg.AssetKey("notifications")
REPORT_EVERY_S = 6 * 3600.0
FIRING_STATES = {"fired", "reminded", "firing"}

CHECK_SPECS = tuple(
    dg.AssetCheckSpec(
        spec.name,
        asset=NOTIFICATIONS,
        description=f"{spec.title}: {spec.description} Reported by {spec.name}_alert_sensor: fails "
        "(ERROR) while the alert fires, warns while its condition waits out its hold.",
    )
    for spec in ALERTS
)


def check_status(state: str) -> str | None:
    """The check's status for a lifecycle state: passed, WARN or ERROR (None: nothing to report)."""
    if state in FIRING_STATES:
        return "ERROR"
    if state == "pending":
        return "WARN"
    if state in ("ok", "resolved"):
        return "passed"
    return None  # error: the condition could not be read, the alert is as it was


def _metadata_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return dg.MetadataValue.json(value)


def metadata(
    verdict: Verdict, state: str, episode: dict[str, Any] | None, text: str | None = None
) -> dict[str, Any]:
    """The check's metadata: the alert's numbers, headline and first check, and its episode."""
    meta: dict[str, Any] = {"state": state, "headline": dg.MetadataValue.text(verdict.headline)}
    if verdict.first_check:
        meta["first_check"] = dg.MetadataValue.text(verdict.first_check)
    if verdict.facts:
        meta["facts"] = dg.MetadataValue.md("\n".join(f"- {fact}" for fact in verdict.facts))
    if text:
        meta["tick"] = dg.MetadataValue.text(text)
    meta.update({key: _metadata_value(value) for key, value in verdict.numbers.items()})
    if episode is not None:
        meta["episode_id"] = episode["id"]
        meta["started_at"] = dg.MetadataValue.timestamp(episode["started_at"])
        meta["notifications_sent"] = episode["notifications"]
        if episode.get("resolved_at"):
            meta["resolved_at"] = dg.MetadataValue.timestamp(episode["resolved_at"])
    return meta


def evaluation(spec: AlertSpec, outcome: Outcome) -> dg.AssetCheckEvaluation | None:
    """The check evaluation for one sensor tick (None when the condition could not be read)."""
    status = check_status(outcome.state)
    if status is None or outcome.verdict is None:
        return None
    return dg.AssetCheckEvaluation(
        asset_key=NOTIFICATIONS,
        check_name=spec.name,
        passed=status == "passed",
        severity=dg.AssetCheckSeverity.WARN if status == "WARN" else dg.AssetCheckSeverity.ERROR,
        description=outcome.verdict.headline,
        metadata=metadata(outcome.verdict, outcome.state, outcome.episode, outcome.text),
    )


def due(status: str | None, state: str, last: dict[str, Any], now: datetime) -> bool:
    """Whether this tick reports: a new status, a page, or REPORT_EVERY_S since the last report."""
    if status is None:
        return False
    if state in ("fired", "reminded", "resolved") or last.get("check") != status:
        return True
    try:
        at = datetime.fromisoformat(last["check_at"])
    except (KeyError, TypeError, ValueError):
        return True
    return (now - at).total_seconds() >= REPORT_EVERY_S


@dg.multi_asset_check(
    specs=list(CHECK_SPECS),
    name="notification_alert_checks",
    can_subset=True,
    description="Reads each selected alert's condition and the alerts table once; pages nobody.",
)
def notification_alert_checks(
    context: dg.AssetCheckExecutionContext, queue_db: QueueDatabase, alert_thresholds: AlertThresholds
) -> Iterator[dg.AssetCheckResult]:
    thresholds = alert_thresholds.thresholds()
    with queue_db.connection(actor="notification_alert_checks") as conn:
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
            spec = BY_NAME[key.name]
            verdict = spec.check(conn, thresholds)
            episode = listing.open_episode(conn, spec.name)
            state = "firing" if episode else "pending" if verdict.breached else "ok"
            status = check_status(state)
            yield dg.AssetCheckResult(
                asset_key=NOTIFICATIONS,
                check_name=spec.name,
                passed=status == "passed",
                severity=dg.AssetCheckSeverity.WARN if status == "WARN" else dg.AssetCheckSeverity.ERROR,
                description=verdict.headline,
                metadata=metadata(verdict, state, episode),
            )

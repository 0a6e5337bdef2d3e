"""Alert sensors: one per alert (built by `alert_sensor`), and two for runs: failed runs of any job
of the code location (asset jobs included) grouped into episodes per job, and the successful run
that resolves a job's episode.

Each alert sensor reads its snapshot under a short statement timeout, moves the alert's lifecycle
one step (reporting/alerts/lifecycle.py), pages PagerDuty when configured, and returns a
SensorResult: its asset_events carry the alert's check evaluation on the `notifications` asset
(checks.py: a firing alert is a failed check, red in the UI and kept in the asset's history), its
skip reason says what it saw or sent. The cursor (small JSON) remembers since when a condition
holds and what the check last reported; the alerts table knows what fires.
"""

import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

import dagster as dg
import psycopg

from notify_pipeline.db.connect import connect
from notify_pipeline.defs.alerts import checks
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts import lifecycle, pagerduty, run_failures
from notify_pipeline.reporting.alerts.catalog import ALERTS, AlertSpec

# Well under the sensor's 60 s evaluation timeout, webhook retries included; the queries take ms.
STATEMENT_TIMEOUT_MS = 5_000
CONNECT_TIMEOUT_S = 10
MINIMUM_INTERVAL_S = 60
LOUD = {"fired", "reminded", "resolved", "error"}


def _open_db(queue_db: QueueDatabase, actor: str) -> Callable[[], AbstractContextManager[psycopg.Connection]]:
    return lambda: connect(
        queue_db.url,
        actor=actor,
        connect_timeout_s=min(queue_db.connect_timeout_s, CONNECT_TIMEOUT_S),
        statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        autocommit=True,
    )


def alert_sensor(
    spec: AlertSpec,
    *,
    clock: Callable[[], datetime] = lifecycle.utc_now,
    minimum_interval_seconds: int = MINIMUM_INTERVAL_S,
) -> dg.SensorDefinition:
    """The sensor for one alert. `clock` is injectable so tests can drive an alert's life."""
    name = f"{spec.name}_alert_sensor"

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{spec.description} Fires once, reminds every alert_repeat_s while it lasts, resolves "
        "when it clears; thresholds from the alert_thresholds resource, delivery by alert_sink (webhook, "
        f"PagerDuty); reports the {spec.name} check of the notifications asset.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        queue_db: QueueDatabase,
        alert_thresholds: AlertThresholds,
        alert_sink: AlertSink,
    ) -> dg.SensorResult:
        now = clock()
        with _open_db(queue_db, name)() as conn:
            outcome = lifecycle.evaluate(
                conn,
                spec,
                alert_thresholds.thresholds(),
                alert_sink.sink(),
                now,
                context.cursor,
                pager=alert_sink.pager(),
                start_grace_s=alert_thresholds.start_grace_s(spec.name),
            )
        (context.log.warning if outcome.state in LOUD else context.log.info)(f"{spec.name}: {outcome.text}")
        last = _cursor_json(context.cursor)
        status = checks.check_status(outcome.state)
        cursor = _cursor_json(outcome.cursor)
        events = []
        if checks.due(status, outcome.state, last, now):
            evaluation = checks.evaluation(spec, outcome)
            if evaluation is not None:
                events.append(evaluation)
                cursor.update(check=status, check_at=now.isoformat())
        else:  # remember what the check shows until the next report
            cursor.update({key: last[key] for key in ("check", "check_at") if key in last})
        return dg.SensorResult(skip_reason=outcome.text, cursor=json.dumps(cursor), asset_events=events)

    return _sensor


def _cursor_json(text: str | None) -> dict:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


(
    queue_depth_alert_sensor,
    oldest_queued_alert_sensor,
    failure_rate_alert_sensor,
    worker_health_alert_sensor,
    opt_out_spike_alert_sensor,
    throttling_alert_sensor,
    no_receipts_alert_sensor,
) = ALERT_SENSORS = tuple(alert_sensor(spec) for spec in ALERTS)


def _page(
    context: dg.RunStatusSensorContext,
    queue_db: QueueDatabase,
    alert_sink: AlertSink,
    job: str,
    now: datetime,
) -> None:
    """PagerDuty for a job's run-failure episode: trigger it when open, resolve it once resolved; a
    failed delivery is retried at the job's next failed or successful run."""
    pager = alert_sink.pager()
    if pager is None:
        return
    try:
        with _open_db(queue_db, "run_failure_pagerduty")() as conn:
            paged = pagerduty.sync(conn, run_failures.name(job), pager, now)
    except psycopg.Error as exc:
        context.log.warning(f"PagerDuty not synced for {job}: queue database error ({type(exc).__name__})")
        return
    if paged.sent:
        context.log.info(f"{run_failures.name(job)}: {paged.describe()}")


def _step_errors(context: dg.RunFailureSensorContext) -> tuple[str, ...]:
    errors = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        # A dg.Failure carries the op's own explanation; anything else, the exception's message.
        if data.user_failure_data is not None and data.user_failure_data.description:
            text = data.user_failure_data.description
        elif data.error is not None:
            error = data.error
            while error.cause is not None:  # Dagster wraps the op's exception: report the op's own
                error = error.cause
            text = error.message.strip()
        else:
            text = event.message or "step failed"
        errors.append(f"{event.step_key}: {text}")
    return tuple(errors)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Alerts on failed runs of every job of this code location, asset materialisations and "
    "backfills included: the first failure of a job opens an episode and posts the job, run id, error "
    "and what to do; more failures of that job while it is open are counted and only remind, at most "
    "every alert_repeat_s. A send run stopped by Meta's refusal of the token or account says how to fix "
    "it and lift the sender hold.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext,
    queue_db: QueueDatabase,
    alert_sink: AlertSink,
    alert_thresholds: AlertThresholds,
) -> None:
    run = context.dagster_run
    failure = run_failures.RunFailure(
        run.job_name, run.run_id, context.failure_event.message or "run failed", _step_errors(context)
    )
    secrets = (os.environ.get("WHATSAPP_ACCESS_TOKEN", ""), *alert_sink.secrets())
    now = lifecycle.utc_now()
    result = run_failures.announce(
        _open_db(queue_db, "run_failure_alert_sensor"),
        failure,
        alert_sink.sink(),
        now,
        secrets,
        repeat_s=alert_thresholds.alert_repeat_s,
    )
    _page(context, queue_db, alert_sink, run.job_name, now)
    if result.verdict is None or result.delivery is None:
        context.log.info(f"run {run.run_id[:8]} of {run.job_name}: {result.note}")
        return
    note = f" ({result.note})" if result.note else ""
    context.log.warning(f"RUN FAILED: {result.verdict.headline}; {result.delivery.describe()}{note}")


@dg.run_status_sensor(
    name="run_recovery_alert_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Resolves a job's run-failure episode when a run of that job succeeds, with an "
    "all-clear to the alert webhook.",
)
def run_recovery_alert_sensor(
    context: dg.RunStatusSensorContext, queue_db: QueueDatabase, alert_sink: AlertSink
) -> None:
    run = context.dagster_run
    now = lifecycle.utc_now()
    result = run_failures.resolve(
        _open_db(queue_db, "run_recovery_alert_sensor"),
        run.job_name,
        run.run_id,
        alert_sink.sink(),
        now,
    )
    _page(context, queue_db, alert_sink, run.job_name, now)
    if result is not None:
        delivery = result.delivery.describe() if result.delivery else "nothing was paged"
        context.log.info(f"RESOLVED run failures of {run.job_name}: {delivery}")

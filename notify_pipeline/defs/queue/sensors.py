"""due_notifications_sensor: keep one long-lived send run alive per sender, and hand it over.

The decision is engine/supervision.py's; this module reads what it needs (Dagster's active send
runs of this sender, their drains in send_workers, the sender lock, the switches) and acts on it.
"""

import time

import dagster as dg

from notify_pipeline import settings
from notify_pipeline.defs.queue.jobs import (
    SENDER_TAG,
    SERVED_TAG,
    STOPPED_BY_TAG,
    SendConfig,
    send_notifications_job,
    sender_tags,
)
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.engine import supervision
from notify_pipeline.engine.drain_config import StopReason
from notify_pipeline.engine.due import blocked_reason, drains_of_runs
from notify_pipeline.engine.sender_lock import lock_held

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
INTERVAL_S = 15
STANDBY_MARGIN_MINUTES = 10.0
RECENT_RUNS = 20  # finished send runs read for the back-off

# Dagster's tag on a failed run, and its value for a run interrupted without a termination request.
FAILURE_REASON_TAG = "dagster/failure_reason"
INTERRUPTED_REASON = "UNEXPECTED_TERMINATION"


def _run_state(record: dg.RunRecord, now: float) -> supervision.RunState:
    started = record.dagster_run.status == dg.DagsterRunStatus.STARTED
    age = now - record.start_time if started and record.start_time else None
    return supervision.RunState(record.dagster_run.run_id, started, age)


def launch_request(why: str, config: SendConfig | None = None) -> dg.RunRequest:
    lifetime = settings.send_lifetime_minutes()
    # A standby waits on the sender lock through the whole lifetime of the run it stands by for.
    config = config or SendConfig(
        trigger="sensor", lifetime_minutes=lifetime, lock_wait_minutes=lifetime + STANDBY_MARGIN_MINUTES
    )
    return dg.RunRequest(
        run_config=dg.RunConfig(ops={"send_due_notifications": config}),
        tags={
            **sender_tags(),
            "dagster/max_runtime": str(config.max_runtime_s()),
            "notify/launched_because": why[:200],
        },
    )


def _recent_failures(context: dg.SensorEvaluationContext, sender: str, now: float) -> tuple[int, float]:
    """supervision.failure_streak() of this sender's latest finished send runs."""
    finished = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=send_notifications_job.name,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
            tags={SENDER_TAG: sender},
        ),
        limit=RECENT_RUNS,
    )
    return supervision.failure_streak([_ended_run(record, now) for record in finished])


def _ended_run(record: dg.RunRecord, now: float) -> supervision.EndedRun:
    tags = record.dagster_run.tags
    try:
        served_s = float(tags.get(SERVED_TAG, 0))
    except ValueError:
        served_s = 0.0
    ended = record.end_time or record.update_timestamp.timestamp()
    stopped_by = tags.get(STOPPED_BY_TAG)
    if stopped_by is None and tags.get(FAILURE_REASON_TAG) == INTERRUPTED_REASON:
        # SIGTERM/SIGINT reached the run before its drain's handler existed (a deploy while it
        # launched): Dagster calls that an unexpected termination; it was a stop, not a crash.
        stopped_by = StopReason.SIGNAL
    return supervision.EndedRun(
        failed=record.dagster_run.status == dg.DagsterRunStatus.FAILURE,
        stopped_by=stopped_by,
        served_s=served_s,
        ended_ago_s=max(0.0, now - ended),
    )


@dg.sensor(
    job=send_notifications_job,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps one long-lived send run serving for this sender and a second one standing by: "
    "the standby waits on the sender lock and takes over the moment the serving run ends or dies "
    "(dagster.yaml allows two runs per sender; the sender lock lets one send). Marks a dead run "
    "failed (sender lock free, heartbeat stale) and replaces it. After runs that failed by themselves "
    "it waits longer before each launch (planned stops and database outages do not count). Launches nothing while "
    "NOTIFICATION_WORKER_CRON_ENABLED is false, sending is paused or the sender is held.",
)
def due_notifications_sensor(context: dg.SensorEvaluationContext, queue_db: QueueDatabase) -> dg.SensorResult:
    sender = sender_tags()[SENDER_TAG]
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=send_notifications_job.name, statuses=ACTIVE, tags={SENDER_TAG: sender}
        )
    )
    now = time.time()
    runs = [_run_state(record, now) for record in records]
    with queue_db.connection(actor="due_notifications_sensor") as conn:
        workers = drains_of_runs(conn, [run.run_id for run in runs])
        held = lock_held(conn, sender)
        blocked = blocked_reason(conn, sender)
    decision = supervision.decide(
        runs, workers, lock_held=held, blocked=blocked, failures=_recent_failures(context, sender, now)
    )
    for record in records:
        if record.dagster_run.run_id in decision.dead:
            context.instance.report_run_failed(
                record.dagster_run,
                "The send run's drain is gone (sender lock free, no heartbeat): the process died "
                "(SIGKILL, OOM). Its claimed rows are given back by the next drain.",
            )
    (context.log.warning if decision.dead else context.log.debug)(decision.reason)
    if decision.launch:
        return dg.SensorResult(run_requests=[launch_request(decision.reason)])
    return dg.SensorResult(skip_reason=decision.reason)

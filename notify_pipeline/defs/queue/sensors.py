"""due_notifications_sensor: launch a send run when notifications are due and none is running."""

import dagster as dg

from notify_pipeline.defs.queue.jobs import SENDER_TAG, SendConfig, send_notifications_job, sender_tags
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.engine.due import due_work

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=send_notifications_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches a send run when due notifications exist and this sender has none running. "
    "Dagster's run-tag limit (dagster.yaml, notify/sender) guarantees one run per sender.",
)
def due_notifications_sensor(context: dg.SensorEvaluationContext, queue_db: QueueDatabase) -> dg.SensorResult:
    tags = sender_tags()
    active = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=send_notifications_job.name, statuses=ACTIVE, tags={SENDER_TAG: tags[SENDER_TAG]}
        ),
        limit=1,
    )
    if active:
        return dg.SensorResult(
            skip_reason=f"send run {active[0].run_id[:8]} is still {active[0].status.value}"
        )
    with queue_db.connection(actor="due_notifications_sensor") as conn:
        due, why_not = due_work(conn)
    if not due:
        return dg.SensorResult(skip_reason=why_not)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_config=dg.RunConfig(ops={"send_due_notifications": SendConfig(trigger="sensor")}),
                tags={**tags, "notify/due_at_launch": str(due)},
            )
        ]
    )

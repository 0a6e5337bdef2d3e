"""The queue's Dagster wiring: jobs run in process against a real PostgreSQL and the emulator; the
sensor decides against a real instance; secrets stay out of run config and event logs. Supervision
in depth (handover, dead runs, holds, the sweep's gate): engine/test_send_supervision.py."""

from __future__ import annotations

import threading
import time

import dagster as dg
import yaml

from notify_pipeline.defs.queue import jobs, probe_message, schedules, sensors
from notify_pipeline.defs.queue.jobs import (
    SENDER_TAG,
    ResumeConfig,
    RetryFailedConfig,
    SendConfig,
    StopConfig,
)
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.engine import operations
from notify_pipeline_tests.support.engine import (
    dagster_resources,
    enqueue_many,
    load_demo_templates,
    statuses,
)
from notify_pipeline_tests.support.paths import REPO_ROOT


def resources(db_url: str, emulator, token: str | None = None) -> dict:
    return dagster_resources(db_url, emulator, token)


def all_event_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(str(event) for event in result.all_events) + str(result.dagster_run.run_config)


def test_send_job_serves_and_reports_metadata(db, db_url, emulator, monkeypatch) -> None:
    """The real job with its default lifetime: the kill switch ends it once the rows are out."""
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    enqueue_many(db, 30, meta={"quiet_hours_override": True})
    results: list[dg.ExecuteInProcessResult] = []

    def run() -> None:
        results.append(
            jobs.send_notifications_job.execute_in_process(
                resources=resources(db_url, emulator),
                run_config=dg.RunConfig(ops={"send_due_notifications": SendConfig(trigger="test")}),
            )
        )

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 120  # generous: a busy machine is slow, never wrong
    while statuses(db) != {"sent": 30} and time.monotonic() < deadline:
        time.sleep(0.1)
    monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
    runner.join(180)
    assert not runner.is_alive(), "the kill switch ends the send run"
    (result,) = results
    assert result.success
    assert statuses(db) == {"sent": 30}
    summary = result.output_for_node("send_due_notifications")
    assert summary["sent"] == 30 and summary["trigger"] == "test" and summary["stopped_by"] == "disabled"
    metadata = next(
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"
    ).step_output_data.metadata
    assert metadata["sent"].value == 30
    assert emulator.token not in all_event_text(result)
    assert "+2507" not in all_event_text(result), "no phone number in event logs"


def test_send_job_fails_on_auth_errors_and_keeps_the_queue(db, db_url, emulator) -> None:
    load_demo_templates(db)
    enqueue_many(db, 5)
    result = jobs.send_notifications_job.execute_in_process(
        resources=resources(db_url, emulator, token="revoked-token-xyz"), raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("send_due_notifications")
    assert "WHATSAPP_ACCESS_TOKEN" in failure.user_failure_data.description
    assert "resume --hold" in failure.user_failure_data.description
    assert statuses(db) == {"queued": 5}
    assert "revoked-token-xyz" not in all_event_text(result)


def sensor_context(db_url: str, instance: dg.DagsterInstance) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(instance=instance, resources={"queue_db": QueueDatabase(url=db_url)})


def test_sensor_keeps_a_send_run_alive_even_with_nothing_due(db, db_url) -> None:
    with dg.instance_for_test() as instance:
        (request,) = sensors.due_notifications_sensor(sensor_context(db_url, instance)).run_requests
        assert request.tags[SENDER_TAG] == jobs.sender_tags()[SENDER_TAG]
        config = SendConfig(**request.run_config["ops"]["send_due_notifications"]["config"])
        assert request.tags["dagster/max_runtime"] == str(config.max_runtime_s())
        assert config.trigger == "sensor" and config.lock_wait_minutes > config.lifetime_minutes


def test_sensor_waits_while_a_send_run_of_this_sender_is_launching(db, db_url) -> None:
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(jobs.send_notifications_job, tags=jobs.sender_tags())
        result = sensors.due_notifications_sensor(sensor_context(db_url, instance))
        assert not result.run_requests
        assert "launching" in result.skip_reason.skip_message


def test_sensor_respects_both_kill_switches(db, db_url, monkeypatch) -> None:
    with dg.instance_for_test() as instance:
        operations.set_paused(db, True, "incident 42", "tester")
        result = sensors.due_notifications_sensor(sensor_context(db_url, instance))
        assert "paused (incident 42)" in result.skip_reason.skip_message
        operations.set_paused(db, False, "over", "tester")
        monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
        result = sensors.due_notifications_sensor(sensor_context(db_url, instance))
        assert "NOTIFICATION_WORKER_CRON_ENABLED" in result.skip_reason.skip_message


def test_operator_jobs(db, db_url, emulator) -> None:
    res = {"queue_db": QueueDatabase(url=db_url)}
    ids = enqueue_many(db, 3)
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '1 hour', locked_by = 'dead' WHERE id = %s",
        (ids[0],),
    )
    swept = jobs.sweep_locks_job.execute_in_process(resources=res)
    assert swept.output_for_node("sweep_stale_locks") == 1

    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = '131000' WHERE id = %s", (ids[1],)
    )
    dry = jobs.retry_failed_job.execute_in_process(
        resources=res,
        run_config=dg.RunConfig(ops={"retry_failed_notifications": RetryFailedConfig(error_code="131000")}),
    )
    assert dry.output_for_node("retry_failed_notifications") == 1
    assert statuses(db)["failed"] == 1, "the default is a dry run"
    done = jobs.retry_failed_job.execute_in_process(
        resources=res,
        run_config=dg.RunConfig(
            ops={"retry_failed_notifications": RetryFailedConfig(error_code="131000", dry_run=False)}
        ),
    )
    assert done.output_for_node("retry_failed_notifications") == 1
    assert statuses(db) == {"queued": 3}

    stop = jobs.emergency_stop_job.execute_in_process(
        resources=res, run_config=dg.RunConfig(ops={"stop_sending": StopConfig(reason="drill")})
    )
    assert stop.output_for_node("stop_sending") == 3
    assert operations.paused(db)[0]
    resume = jobs.resume_job.execute_in_process(
        resources=res, run_config=dg.RunConfig(ops={"resume_sending": ResumeConfig(reason="drill over")})
    )
    assert resume.output_for_node("resume_sending") == 3
    assert statuses(db) == {"queued": 3}


def test_send_test_notification_job_queues_a_test_message(db, db_url) -> None:
    result = probe_message.send_test_notification_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(
            ops={"queue_test_notification": probe_message.SampleNotificationConfig(to="+250788999001")}
        ),
    )
    notification_id = result.output_for_node("queue_test_notification")
    ntype, corr, template = db.execute(
        "SELECT notification_type, correlation_id, template_name FROM notifications WHERE id = %s",
        (notification_id,),
    ).fetchone()
    assert (ntype, template) == ("test", "welcome_message") and corr.startswith("test_")


def test_schedule_and_instance_limits() -> None:
    assert schedules.sweep_locks_schedule.cron_schedule == "*/5 * * * *"
    assert schedules.sweep_locks_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert sensors.due_notifications_sensor.minimum_interval_seconds == 15
    limits = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]
    # The serving send run and its standby, which waits on the sender lock.
    assert {"key": SENDER_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 2} in limits

"""The alert sensors through Dagster: evaluated with build_sensor_context against a real instance,
database and webhook receiver; the cursor round-trips; thresholds come from resource config; the
run-failure sensor posts for a failed run; the webhook URL shows up nowhere."""

from __future__ import annotations

import json
import logging

import dagster as dg
import pytest

from notify_pipeline.defs.alerts import definitions, sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.queue import jobs
from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.alerts import (
    FakeClock,
    add_rows,
    alert_resources,
    alert_rows,
    worker_start,
)
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates

TOKEN_PATH = "/services/T0001/B0002/s3cr3tT0k3n"


@pytest.fixture
def webhook_url(webhook_receiver, monkeypatch) -> str:
    url = webhook_receiver.url.replace("/webhook", TOKEN_PATH)
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", url)
    return url


def test_definitions_register_seven_running_sensors_with_env_only_secrets() -> None:
    defs = definitions.defs
    names = sorted(sensor.name for sensor in defs.sensors)
    run_sensors = ["run_failure_alert_sensor", "run_recovery_alert_sensor"]
    assert names == sorted([*(f"{name}_alert_sensor" for name in BY_NAME), *run_sensors])
    for sensor in defs.sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert 30 <= sensor.minimum_interval_seconds <= 60
        assert sensor.description
    sink = defs.resources["alert_sink"]
    assert sink.webhook_url_env == "NOTIFY_ALERT_WEBHOOK_URL" and "http" not in str(sink)
    assert defs.resources["alert_thresholds"].thresholds() == DEFAULTS
    # No job list: every job of the code location is watched, the asset jobs (UI materialisations,
    # backfills) included. Dagster keeps the selection only in a private attribute.
    assert sensors.run_failure_alert_sensor._monitored_jobs == []
    assert not sensors.run_failure_alert_sensor._monitor_all_code_locations


def test_thresholds_are_overridden_by_resource_config() -> None:
    custom = AlertThresholds(queue_depth=5000, alert_repeat_s=3600).thresholds()
    assert (custom.queue_depth, custom.alert_repeat_s) == (5000, 3600)
    assert custom.oldest_queued_s == DEFAULTS.oldest_queued_s
    with pytest.raises(Exception, match="failure_rate"):
        AlertThresholds(failure_rate=1.5)


def test_sensor_fires_through_dagster_and_the_cursor_round_trips(
    db, db_url, webhook_receiver, webhook_url, caplog
):
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["queue_depth"], clock=clock)
    resources = alert_resources(db_url, queue_depth=3, queue_depth_for_s=120)
    add_rows(db, 4)
    skip_texts = []
    with dg.instance_for_test() as instance:
        cursor = None
        for expected in ("pending", "pending", "FIRING", "FIRING since"):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = sensor(context)
            assert isinstance(result, dg.SensorResult) and not result.run_requests
            text = result.skip_reason.skip_message
            assert text.startswith(expected), text
            skip_texts.append(text)
            cursor = result.cursor
            assert json.loads(cursor)["seen"] == clock.now.isoformat()
            clock.advance(60)
    assert "4 notifications are due now (alert above 3)" in skip_texts[2]
    assert "webhook delivered" in skip_texts[2]
    (message,) = webhook_receiver.wait_for(1)
    assert message["text"].startswith(":rotating_light: FIRING | Queue depth: 4 notifications are due now")
    everything = " ".join(
        [*skip_texts, caplog.text, json.dumps([str(r) for r in alert_rows(db)], default=str)]
    )
    assert "s3cr3tT0k3n" not in everything and webhook_url not in everything


def test_the_registered_sensors_run_with_the_real_clock_and_no_webhook(db, db_url, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)
    add_rows(db, 2, due="now() - interval '2 hours'")
    worker_start(db)  # a worker runs, yet the oldest row waits: only oldest_queued fires
    with dg.instance_for_test() as instance:
        for sensor in sensors.ALERT_SENSORS:
            context = dg.build_sensor_context(instance=instance, resources=alert_resources(db_url))
            text = sensor(context).skip_reason.skip_message
            if sensor is sensors.oldest_queued_alert_sensor:
                assert text.startswith("FIRING: The oldest due notification has waited 2 h")
                assert text.endswith("recorded only (NOTIFY_ALERT_WEBHOOK_URL is not set)")
            else:
                assert not text.startswith("FIRING"), text
    (row,) = alert_rows(db)
    assert row["alert_name"] == "oldest_queued" and row["state"] == "firing"


def failure_context(instance, result, db_url, **thresholds) -> dg.RunFailureSensorContext:
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={
            "queue_db": QueueDatabase(url=db_url),
            "alert_sink": AlertSink(backoff_s=0),
            "alert_thresholds": AlertThresholds(**thresholds),
        },
    ).for_run_failure()


def test_a_send_run_failing_on_auth_says_refresh_the_token(
    db, db_url, emulator, webhook_receiver, webhook_url
):
    load_demo_templates(db)
    enqueue_many(db, 3)
    with dg.instance_for_test() as instance:
        result = jobs.send_notifications_job.execute_in_process(
            resources={
                "queue_db": QueueDatabase(url=db_url),
                "whatsapp": WhatsAppCloudApi(
                    base_url=emulator.base_url,
                    api_version="v23.0",
                    phone_number_id=emulator.phone_number_id,
                    access_token="revoked-token-xyz",
                ),
            },
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        sensors.run_failure_alert_sensor(failure_context(instance, result, db_url))
        (message,) = webhook_receiver.wait_for(1)
        text = message["text"]
        assert text.startswith(":x: RUN FAILED | send_notifications_job run ")
        assert "the Cloud API refused our credentials (" in text and "190" in text
        assert "First check: Refresh WHATSAPP_ACCESS_TOKEN" in text and "resume --hold" in text
        assert result.dagster_run.run_id in text
        assert "revoked-token-xyz" not in text

        sensors.run_failure_alert_sensor(failure_context(instance, result, db_url))  # redelivered event
    assert len(webhook_receiver.received) == 1, "a run is announced once"
    (row,) = alert_rows(db, "run_failure:send_notifications_job")
    assert row["state"] == "firing" and row["notifications"] == 1 and row["details"]["failures"] == 1
    assert row["details"]["run_id"] == result.dagster_run.run_id
    assert "s3cr3tT0k3n" not in json.dumps(row["details"])


def test_any_failed_job_posts_its_error_without_phone_numbers(
    db, db_url, webhook_receiver, webhook_url
) -> None:
    @dg.op
    def explode() -> None:
        raise RuntimeError("recipient +250 788 123 456 broke the op")

    @dg.job
    def tiny_job() -> None:
        explode()

    with dg.instance_for_test() as instance:
        result = tiny_job.execute_in_process(instance=instance, raise_on_error=False)
        sensors.run_failure_alert_sensor(failure_context(instance, result, db_url))
    text = webhook_receiver.wait_for(1)[0]["text"]
    assert text.startswith(f":x: RUN FAILED | tiny_job run {result.dagster_run.run_id[:8]} failed: explode: ")
    assert "RuntimeError: recipient &lt;number&gt; broke the op" in text
    assert "788" not in text
    assert "First check: Open the run in Dagster" in text


@dg.op
def explode_again() -> None:
    raise RuntimeError("the same cause")


@dg.job
def flaky_job() -> None:
    explode_again()


@dg.asset
def broken_summary() -> None:
    raise RuntimeError("summary query failed")


def test_failures_of_a_job_are_one_episode_that_reminds_slowly_and_resolves_on_success(
    db, db_url, webhook_receiver, webhook_url
) -> None:
    with dg.instance_for_test() as instance:
        for _ in range(3):
            failed = flaky_job.execute_in_process(instance=instance, raise_on_error=False)
            sensors.run_failure_alert_sensor(failure_context(instance, failed, db_url))
        (page,) = webhook_receiver.wait_for(1)
        assert page["text"].startswith(":x: RUN FAILED | flaky_job run ")
        (episode,) = alert_rows(db, "run_failure:flaky_job")
        assert (episode["state"], episode["details"]["failures"], episode["notifications"]) == (
            "firing",
            3,
            1,
        )

        # Past the reminder cadence, one more failure reminds (and says how many so far).
        failed = flaky_job.execute_in_process(instance=instance, raise_on_error=False)
        sensors.run_failure_alert_sensor(failure_context(instance, failed, db_url, alert_repeat_s=0.001))
        reminder = webhook_receiver.wait_for(2)[1]["text"]
        assert reminder.startswith(":warning: STILL FAILING (4 failed runs in ")

        # An asset materialisation (a UI run or a backfill) is a job of its own: its own episode.
        asset_job = dg.Definitions(assets=[broken_summary]).resolve_implicit_global_asset_job_def()
        materialized = asset_job.execute_in_process(instance=instance, raise_on_error=False)
        sensors.run_failure_alert_sensor(failure_context(instance, materialized, db_url))
        asset_page = webhook_receiver.wait_for(3)[2]["text"]
        assert "__ASSET_JOB run" in asset_page and "summary query failed" in asset_page
        assert "materialise the failed partitions again" in asset_page

        @dg.job(name="flaky_job")
        def flaky_job_fixed() -> None:
            pass

        ok = flaky_job_fixed.execute_in_process(instance=instance)
        recovered = dg.build_run_status_sensor_context(
            sensor_name="run_recovery_alert_sensor",
            dagster_instance=instance,
            dagster_run=ok.dagster_run,
            dagster_event=next(e for e in ok.all_events if e.event_type_value == "PIPELINE_SUCCESS"),
            resources={"queue_db": QueueDatabase(url=db_url), "alert_sink": AlertSink(backoff_s=0)},
        )
        sensors.run_recovery_alert_sensor(recovered)
        sensors.run_recovery_alert_sensor(recovered)  # nothing left to resolve: silent
    resolved = webhook_receiver.wait_for(4)[3]["text"]
    assert (
        resolved.startswith(":white_check_mark: RESOLVED | flaky_job run ")
        and "after 4 failed run(s)" in resolved
    )
    assert len(webhook_receiver.received) == 4
    (episode,) = alert_rows(db, "run_failure:flaky_job")
    assert episode["state"] == "resolved"
    (asset_episode,) = alert_rows(db, "run_failure:__ASSET_JOB")
    assert asset_episode["state"] == "firing"

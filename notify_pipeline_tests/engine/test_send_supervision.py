"""Supervised send runs (issue #9): the sensor's decisions as a pure function; the send op serving
until its lifetime ends; an expired token giving one failed run, a hold, no relaunch and one alert
episode until `resume --hold`; dead runs marked failed and replaced; the sweep only with stale
claims. Real PostgreSQL, the emulator over HTTP, Dagster's test instance. How fast a drain wakes is
a bench figure, not asserted here."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
import pytest

from notify_pipeline import settings
from notify_pipeline.defs.alerts import sensors as alert_sensors
from notify_pipeline.defs.queue import jobs, schedules
from notify_pipeline.defs.queue.jobs import SENDER_TAG, SendConfig
from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi
from notify_pipeline.engine import holds, operations
from notify_pipeline.engine.sender_lock import lock_key
from notify_pipeline.engine.supervision import RunState, WorkerState, decide
from notify_pipeline_tests.support.alerts import alert_resources, alert_rows
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.engine import (
    NO_QUIET_HOURS,
    dagster_resources,
    enqueue_many,
    load_demo_templates,
    statuses,
)
from notify_pipeline_tests.support.supervision import AWAKE, sensor_tick

# -- the decision, without Dagster --------------------------------------------------------------


def started(run_id: str = "run-a", age_s: float = 60.0) -> RunState:
    return RunState(run_id, True, age_s)


def drain(
    run_id: str = "run-a",
    heartbeat_age_s: float = 2.0,
    left_s: float | None = 3600.0,
    holds_lock: bool = False,
) -> WorkerState:
    return WorkerState(run_id, heartbeat_age_s, left_s, False, holds_lock)


@pytest.mark.parametrize(
    ("runs", "workers", "lock", "launch", "dead", "says"),
    [
        ([], [], False, True, (), "no send run is alive"),
        ([], [], True, False, (), "another drain holds the sender lock"),
        ([started()], [drain()], True, True, (), "launching a standby"),
        ([started()], [drain(left_s=60)], True, True, (), "launching a standby"),
        ([started(), RunState("run-b", False, None)], [drain(left_s=60)], True, False, (), "standing by"),
        ([RunState("run-a", False, None)], [], False, False, (), "launching"),
        ([started(age_s=30)], [], False, False, (), "waiting for the sender lock"),
        ([started(age_s=600)], [], True, False, (), "waiting for the sender lock"),
        ([started(age_s=600)], [], False, True, ("run-a",), "marked dead"),
        ([started()], [drain(heartbeat_age_s=120)], False, True, ("run-a",), "marked dead"),
        ([started()], [drain(heartbeat_age_s=120, holds_lock=True)], True, True, (), "is serving"),
        # Silent, and the lock is someone else's (a successor took over): dead all the same.
        (
            [started(), started("run-b", 20)],
            [drain(heartbeat_age_s=120), drain("run-b", holds_lock=True)],
            True,
            True,
            ("run-a",),
            "is serving",
        ),
        ([started()], [drain(heartbeat_age_s=10)], False, True, (), "is serving"),
        (
            [started(), started("run-b", 20)],
            [drain(heartbeat_age_s=120, left_s=30)],
            False,
            False,
            ("run-a",),
            "waiting for the sender lock",
        ),
    ],
)
def test_supervision_decisions(runs, workers, lock, launch, dead, says) -> None:
    decision = decide(runs, workers, lock_held=lock, blocked=None)
    assert (decision.launch, decision.dead) == (launch, dead), decision.reason
    assert says in decision.reason


@pytest.mark.parametrize(
    "blocked", ["NOTIFICATION_WORKER_CRON_ENABLED is false", "sending is paused (x)", "held"]
)
def test_a_blocked_sender_gets_no_run_but_dead_runs_are_still_marked(blocked) -> None:
    assert not decide([], [], lock_held=False, blocked=blocked).launch
    decision = decide([started()], [drain(heartbeat_age_s=300)], lock_held=False, blocked=blocked)
    assert not decision.launch and decision.dead == ("run-a",) and blocked in decision.reason


# -- the send op, serving -----------------------------------------------------------------------

LIFETIME_S = 3.0


@dg.op
def serve_briefly(context, queue_db: QueueDatabase, whatsapp: WhatsAppCloudApi):
    """The send op's own path with a lifetime in seconds (operators get a minute at least)."""
    config = jobs.drain_config(
        SendConfig(trigger="test"), context.run_id, context.log.info, lifetime_s=LIFETIME_S
    )
    return jobs.serve_sender(context, queue_db, whatsapp, replace(config, policy=NO_QUIET_HOURS))


@dg.job(executor_def=dg.in_process_executor)
def brief_send_job() -> None:
    serve_briefly()


def test_send_config_bounds_the_lifetime_and_sets_the_backstop(monkeypatch) -> None:
    with pytest.raises(Exception, match="lifetime_minutes"):
        SendConfig(lifetime_minutes=0.5)
    monkeypatch.setenv("NOTIFY_SEND_LIFETIME_MINUTES", "2")
    assert settings.send_lifetime_minutes() == 2.0
    for bad in ("0", "nan", "two", "99999"):
        monkeypatch.setenv("NOTIFY_SEND_LIFETIME_MINUTES", bad)
        with pytest.raises(ValueError, match="NOTIFY_SEND_LIFETIME_MINUTES must be"):
            settings.send_lifetime_minutes()
    monkeypatch.delenv("NOTIFY_SEND_LIFETIME_MINUTES")
    config = SendConfig()
    assert config.lifetime_minutes == 120
    assert config.max_runtime_s() == (120 + 10) * 60 + jobs.MAX_RUNTIME_GRACE_S
    built = jobs.drain_config(config, "abcdef0123456789", print)
    assert built.serve and built.max_seconds == 7200 and built.lock_wait_s == 600
    assert built.worker_id == "dagster:abcdef01" and built.sender == settings.sender_key()
    for job in (jobs.send_notifications_job, jobs.sweep_locks_job, jobs.retry_failed_job, jobs.resume_job):
        assert job.executor_def is dg.in_process_executor


def test_the_send_op_serves_until_its_lifetime_ends(db, db_url, emulator) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    enqueue_many(db, 2)
    later = threading.Timer(1.0, lambda: enqueue_many(db, 1))
    later.start()
    started_at = time.monotonic()
    result = brief_send_job.execute_in_process(resources=dagster_resources(db_url, emulator))
    later.join()
    assert result.success
    assert time.monotonic() - started_at >= LIFETIME_S, "it waited for work instead of ending when drained"
    summary = result.output_for_node("serve_briefly")
    assert summary["stopped_by"] == "lifetime" and summary["sent"] == 3
    assert statuses(db) == {"sent": 3}
    (row,) = db.execute("SELECT run_id, ended_at IS NOT NULL, stopped_by FROM send_workers").fetchall()
    assert row == (result.run_id, True, "lifetime")


# -- an expired token: one failed run, a hold, one alert, no loop; resume --hold restarts --------


def announce_failure(instance, result, db_url) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=alert_resources(db_url),
    ).for_run_failure()
    alert_sensors.run_failure_alert_sensor(context)


def run_requested(
    instance, request: dg.RunRequest, db_url, emulator, token=None
) -> dg.ExecuteInProcessResult:
    return jobs.send_notifications_job.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        resources=dagster_resources(db_url, emulator, token),
        instance=instance,
        raise_on_error=False,
    )


def test_an_expired_token_holds_the_sender_until_resume_hold(
    db, db_url, emulator, webhook_receiver, monkeypatch
) -> None:
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", emulator.phone_number_id)
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", webhook_receiver.url)
    sender = settings.sender_key()
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    enqueue_many(db, 3, meta=AWAKE)
    with dg.instance_for_test() as instance:
        (request,) = sensor_tick(db_url, instance).run_requests
        assert request.tags[SENDER_TAG] == sender
        config = SendConfig(**request.run_config["ops"]["send_due_notifications"]["config"])
        assert int(request.tags["dagster/max_runtime"]) == config.max_runtime_s()

        failed = run_requested(instance, request, db_url, emulator, token="expired-token-xyz")
        assert not failed.success
        text = failed.failure_data_for_node("send_due_notifications").user_failure_data.description
        assert "WHATSAPP_ACCESS_TOKEN" in text and "resume --hold" in text
        hold = holds.active_hold(db, sender)
        assert hold is not None and (hold.kind, hold.code) == ("auth", "190")
        assert statuses(db) == {"queued": 3}, "nothing lost"
        announce_failure(instance, failed, db_url)
        (page,) = webhook_receiver.wait_for(1)
        assert "RUN FAILED" in page["text"] and "resume --hold" in page["text"]
        assert "expired-token-xyz" not in page["text"]

        skipped = sensor_tick(db_url, instance)
        assert not skipped.run_requests and f"sender {sender} is held" in skipped.skip_reason.skip_message

        # Someone launches a send run by hand anyway: it stops at once (held), a success, no page.
        again = run_requested(instance, request, db_url, emulator, token="expired-token-xyz")
        assert again.success and again.output_for_node("send_due_notifications")["stopped_by"] == "held"
        # A second failure of the same job while the episode fires is counted, not paged.
        holds.lift_hold(db, sender, "test: fail once more", "tester")
        second = run_requested(instance, request, db_url, emulator, token="expired-token-xyz")
        assert not second.success
        announce_failure(instance, second, db_url)
        time.sleep(0.3)
        assert len(webhook_receiver.received) == 1, "one page per episode"
        (episode,) = alert_rows(db, "run_failure:send_notifications_job")
        assert episode["state"] == "firing" and episode["details"]["failures"] == 2

        env = {"NOTIFY_DATABASE_URL": db_url, "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id}
        plain = cli("resume", "--reason", "token refreshed", env=env)
        assert plain.returncode == 0, plain.stderr
        assert "not paused" in plain.stdout and "resume --hold" in plain.stdout
        assert holds.active_hold(db, sender) is not None, "a plain resume does not lift a hold"
        lifted = cli("resume", "--hold", "--reason", "token refreshed", env=env)
        assert lifted.returncode == 0 and "lifted the auth hold" in lifted.stdout, lifted.stderr
        assert holds.active_hold(db, sender) is None

        (request,) = sensor_tick(db_url, instance).run_requests
        # The run serves; once the rows are out, the kill switch ends it cleanly.
        done: list[dg.ExecuteInProcessResult] = []
        runner = threading.Thread(
            target=lambda: done.append(run_requested(instance, request, db_url, emulator))
        )
        runner.start()
        deadline = time.monotonic() + 120  # generous: a busy machine is slow, never wrong
        while statuses(db) != {"sent": 3} and time.monotonic() < deadline:
            time.sleep(0.1)
        monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
        runner.join(180)
        assert not runner.is_alive(), "the kill switch ends the send run"
        (ok,) = done
        assert ok.success and ok.output_for_node("send_due_notifications")["stopped_by"] == "disabled"
        assert statuses(db) == {"sent": 3}
        stats = emulator.stats()
        assert (stats["total"], stats["duplicates"]) == (3, 0), "nothing sent twice"
        # Each failed run refused at most the requests it had in flight (3 rows), then stopped.
        assert 2 <= stats["by_code"].get("190", 0) <= 6, "no loop"

        recovered = dg.build_run_status_sensor_context(
            sensor_name="run_recovery_alert_sensor",
            dagster_instance=instance,
            dagster_run=ok.dagster_run,
            dagster_event=next(e for e in ok.all_events if e.event_type_value == "PIPELINE_SUCCESS"),
            resources=alert_resources(db_url),
        )
        alert_sensors.run_recovery_alert_sensor(recovered)
        resolved = webhook_receiver.wait_for(2)[1]
        assert "RESOLVED" in resolved["text"] and "after 2 failed run(s)" in resolved["text"]
        (episode,) = alert_rows(db, "run_failure:send_notifications_job")
        assert episode["state"] == "resolved"


def test_resume_job_lifts_the_hold_only_when_asked(db, db_url) -> None:
    sender = settings.sender_key()
    db.execute(
        "INSERT INTO sender_holds (sender, kind, code, reason) VALUES (%s, 'auth', '190', 'expired')",
        (sender,),
    )
    operations.set_paused(db, True, "drill", "tester")
    res = {"queue_db": QueueDatabase(url=db_url)}
    plain = jobs.resume_job.execute_in_process(
        resources=res, run_config=dg.RunConfig(ops={"resume_sending": jobs.ResumeConfig(reason="drill over")})
    )
    assert plain.success and not operations.paused(db)[0]
    assert holds.active_hold(db, sender) is not None
    jobs.resume_job.execute_in_process(
        resources=res,
        run_config=dg.RunConfig(ops={"resume_sending": jobs.ResumeConfig(reason="new token", hold=True)}),
    )
    assert holds.active_hold(db, sender) is None
    (event,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'NOTIFY_SENDER_RELEASED'"
    )
    assert event[0]["reason"] == "new token"


# -- dead runs and handover, through the sensor -----------------------------------------------


def send_run(instance, status=dg.DagsterRunStatus.STARTED) -> dg.DagsterRun:
    return instance.create_run_for_job(jobs.send_notifications_job, tags=jobs.sender_tags(), status=status)


def register(
    db, run: dg.DagsterRun, heartbeat_ago_s: float, lifetime_left_s: float, backend_pid: int | None = None
) -> None:
    db.execute(
        "INSERT INTO send_workers (worker_id, sender, run_id, host, pid, backend_pid, heartbeat_at, "
        "lifetime_ends_at) VALUES (%s, %s, %s, 'h', 1, %s, now() - make_interval(secs => %s), "
        "now() + make_interval(secs => %s))",
        (
            f"dagster:{run.run_id[:8]}",
            settings.sender_key(),
            run.run_id,
            backend_pid,
            heartbeat_ago_s,
            lifetime_left_s,
        ),
    )


def test_a_dead_run_is_marked_failed_and_replaced(db, db_url) -> None:
    with dg.instance_for_test() as instance:
        run = send_run(instance)
        register(db, run, heartbeat_ago_s=120, lifetime_left_s=3000)
        result = sensor_tick(db_url, instance)
        assert len(result.run_requests) == 1
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert "marked dead" in result.run_requests[0].tags["notify/launched_because"]


def test_a_silent_run_holding_the_lock_is_left_alone_and_gets_a_standby(db, db_url, pg_server_url) -> None:
    import psycopg

    with dg.instance_for_test() as instance, psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(settings.sender_key()),))
        run = send_run(instance)
        register(db, run, heartbeat_ago_s=120, lifetime_left_s=3000, backend_pid=holder.info.backend_pid)
        (standby,) = sensor_tick(db_url, instance).run_requests
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert "standby" in standby.tags["notify/launched_because"]
        config = standby.run_config["ops"]["send_due_notifications"]["config"]
        assert config["lock_wait_minutes"] * 60 > 3000, "the standby outwaits the serving run's lifetime"
        send_run(instance, dg.DagsterRunStatus.NOT_STARTED)
        result = sensor_tick(db_url, instance)
        assert not result.run_requests and "standing by" in result.skip_reason.skip_message


def test_the_sensor_launches_nothing_while_paused_disabled_or_held(db, db_url, monkeypatch) -> None:
    with dg.instance_for_test() as instance:
        operations.set_paused(db, True, "incident 42", "tester")
        assert "paused (incident 42)" in sensor_tick(db_url, instance).skip_reason.skip_message
        operations.set_paused(db, False, "over", "tester")
        db.execute(
            "INSERT INTO sender_holds (sender, kind, code, reason) VALUES (%s, 'account', '368', 'restricted')",
            (settings.sender_key(),),
        )
        assert "held" in sensor_tick(db_url, instance).skip_reason.skip_message
        db.execute("DELETE FROM sender_holds")
        monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
        assert "NOTIFICATION_WORKER_CRON_ENABLED" in sensor_tick(db_url, instance).skip_reason.skip_message
        monkeypatch.delenv("NOTIFICATION_WORKER_CRON_ENABLED")
        assert len(sensor_tick(db_url, instance).run_requests) == 1


# -- the sweep, only with stale claims ----------------------------------------------------------


def test_the_sweep_runs_only_when_stale_claims_exist(db, db_url) -> None:
    ids = enqueue_many(db, 2)
    when = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)

    def tick():
        context = dg.build_schedule_context(
            scheduled_execution_time=when, resources={"queue_db": QueueDatabase(url=db_url)}
        )
        return schedules.sweep_locks_schedule.evaluate_tick(context)

    assert not tick().run_requests, "nothing claimed"
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'live' WHERE id = %s", (ids[0],))
    result = tick()
    assert not result.run_requests and "no claim is older" in result.skip_message
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '1 hour', locked_by = 'dead' WHERE id = %s",
        (ids[1],),
    )
    (request,) = tick().run_requests
    swept = jobs.sweep_locks_job.execute_in_process(
        run_config=request.run_config, resources={"queue_db": QueueDatabase(url=db_url)}
    )
    assert swept.output_for_node("sweep_stale_locks") == 1


def test_failing_send_runs_are_relaunched_with_growing_waits() -> None:
    from notify_pipeline.engine.supervision import retry_wait_s

    assert [retry_wait_s(n) for n in (0, 1, 2, 3, 4)] == [0, 0, 15, 30, 60]
    assert retry_wait_s(50) == 600
    waiting = decide([], [], lock_held=False, blocked=None, failures=(3, 10.0))
    assert not waiting.launch and "the last 3 send runs failed" in waiting.reason
    assert decide([], [], lock_held=False, blocked=None, failures=(3, 31.0)).launch
    assert decide([], [], lock_held=False, blocked=None, failures=(1, 0.0)).launch

"""A planned stop is not a failure (issue 19, item 1).

SIGTERM of a serving send run in a real run worker process (`dagster api execute_run`, what a
container run launcher starts): the run ends SUCCESS, its unsent rows are given back, the standby
takes over and sends the rest, nothing twice; a standby waiting for the sender stops at once; a run
terminated from Dagster (CANCELING, then SIGINT) ends CANCELED. SIGTERM of `notify-pipeline send
--serve`: exit 0 with a line. The sensor's back-off counts only runs that failed by themselves, and
the run-failure alert ignores a run whose drain stopped as planned. Real PostgreSQL, the emulator
over HTTP; counts from the emulator's ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from notify_pipeline import dev_runs
from notify_pipeline.defs.queue import sensors
from notify_pipeline.defs.queue.jobs import SERVED_TAG, STOPPED_BY_TAG, SendConfig, sender_tags
from notify_pipeline.engine.drain_config import StopReason
from notify_pipeline.engine.supervision import (
    SERVED_S,
    EndedRun,
    decide,
    failed_by_itself,
    failure_streak,
    retry_wait_s,
)
from notify_pipeline.reporting.alerts import run_failures
from notify_pipeline.reporting.alerts.sink import WebhookSink
from notify_pipeline_tests.support.drain_harness import counts, events, fresh
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates, run_drain
from notify_pipeline_tests.support.run_worker import (
    postgres_instance,
    run_worker_env,
    start_send_run,
    wait_for,
)
from notify_pipeline_tests.support.supervision import AWAKE, lock_waiters, sensor_tick

CLI = str(Path(sys.executable).parent / "notify-pipeline")
# After the signal, an orchestrator waits this long before SIGKILL (Kubernetes' default; `dev`
# waits 20 s): a stop that has not ended by then fails the test, as it would lose the stop.
GRACE_S = 30.0


def stop(worker, sig: signal.Signals = signal.SIGTERM) -> dg.DagsterRun:
    """Send `sig` to a run worker as an orchestrator does; its run once the process has exited
    (killed after the grace period, and the test failed, if it has not)."""
    worker.process.send_signal(sig)
    return worker.wait(timeout=GRACE_S)


def drain_done(db_url: str, run_id: str) -> dict:
    (done,) = [d for d in events(db_url, "NOTIFY_WORKER_DONE") if d["worker"] == f"dagster:{run_id[:8]}"]
    return done


@pytest.mark.slow
def test_sigterm_of_send_runs_is_a_planned_stop_and_the_standby_sends_the_rest(
    db, db_url, empty_db_url, emulator, tmp_path, monkeypatch
) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    total = 400
    enqueue_many(db, total, meta=AWAKE)
    env = run_worker_env(db_url, emulator, tmp_path)
    for name in ("NOTIFY_DATABASE_URL", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN"):
        monkeypatch.setenv(name, env[name])  # the run's config is resolved here too
    # 20 a second: the serving run is mid-backlog when it is stopped.
    paced = {"trigger": "test", "throughput_per_s": 20.0, "lifetime_minutes": 10.0}
    with postgres_instance(empty_db_url) as instance:
        serving = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=2))
        wait_for(lambda: emulator.stats()["total"] >= 20, "the first run to serve")
        standby = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=15))
        wait_for(lambda: lock_waiters(db_url) == 1, "the standby to wait for the sender lock")

        run = stop(serving)
        assert run.status == dg.DagsterRunStatus.SUCCESS, serving.output[-3000:]
        assert serving.process.returncode == 0
        assert run.tags[STOPPED_BY_TAG] == "signal" and float(run.tags[SERVED_TAG]) > 0
        done = drain_done(db_url, serving.run_id)
        assert done["stopped_by"] == "signal" and done["released"] > 0, done
        sent_by_first = done["sent"]
        assert 0 < sent_by_first < total
        with fresh(db_url) as conn:
            held = conn.execute(
                "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_by = %s",
                (f"dagster:{serving.run_id[:8]}",),
            ).fetchone()[0]
        assert held == 0, "every row the stopped run held was given back"

        # The standby takes the sender at once and sends the rest.
        wait_for(lambda: counts(db_url) == {"sent": total}, "the standby to send the rest", timeout=180)
        stats = emulator.stats()
        assert (stats["total"], stats["duplicates"]) == (total, 0), "nothing sent twice"

        # A second standby, stopped while it waits for the sender: it ends at once, a success.
        late = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=15))
        wait_for(lambda: lock_waiters(db_url) == 1, "the second standby to wait for the sender lock")
        run = stop(late)
        assert run.status == dg.DagsterRunStatus.SUCCESS, late.output[-3000:]
        assert run.tags[STOPPED_BY_TAG] == "signal" and run.tags[SERVED_TAG] == "0"

        # Terminated from Dagster (the run marked CANCELING, then SIGINT): CANCELED, not FAILURE.
        instance.report_run_canceling(standby.run())
        run = stop(standby, signal.SIGINT)
        assert run.status == dg.DagsterRunStatus.CANCELED, standby.output[-3000:]
        assert drain_done(db_url, standby.run_id)["stopped_by"] == "signal"

        # No failure anywhere: the sensor launches the next run at once.
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert not failed
        (request,) = sensor_tick(db_url, instance).run_requests
        assert "no send run is alive" in request.tags["notify/launched_because"]
    assert emulator.stats()["total"] == total


@pytest.mark.slow
def test_sigterm_of_send_serve_exits_0_with_a_line_and_gives_the_rest_back(
    db, db_url, emulator, tmp_path
) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    total = 300
    enqueue_many(db, total, meta=AWAKE)
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_DATA_DIR": str(tmp_path),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    command = [CLI, "send", "--serve", "--max-seconds", "600", "--throughput-per-s", "20"]
    serving = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: emulator.stats()["total"] >= 20, "send --serve to send", timeout=60)
        serving.send_signal(signal.SIGTERM)
        out, err = serving.communicate(timeout=GRACE_S)
    finally:
        if serving.poll() is None:
            serving.kill()
    assert serving.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["stopped_by"] == "signal" and report["released"] > 0, report
    (line,) = [text for text in err.splitlines() if "send stopped as asked" in text]
    assert f"sent {report['sent']}" in line and f"gave {report['released']} row(s) back" in line
    assert counts(db_url).get("sent") == report["sent"] < total

    rest = run_drain(db_url, emulator, throughput_per_s=None)
    assert rest.stopped_by == "drained"
    assert counts(db_url) == {"sent": total}
    stats = emulator.stats()
    assert (stats["total"], stats["duplicates"]) == (total, 0)


@pytest.mark.slow
def test_a_run_stopped_while_it_still_loads_is_canceled_once_dev_marked_it(
    db, db_url, empty_db_url, emulator, tmp_path, monkeypatch
) -> None:
    """Ctrl-C of `dev` reaches a standby that is still loading its code (no drain, no handler
    yet). Marked CANCELING first and recorded CANCELED once its process is gone, as `dev` does,
    it is not a failure. Unmarked (a bare SIGTERM, the mechanism switched off) Dagster records
    FAILURE: that is what the marks are for."""
    load_demo_templates(db)
    env = run_worker_env(db_url, emulator, tmp_path)
    for name in ("NOTIFY_DATABASE_URL", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN"):
        monkeypatch.setenv(name, env[name])  # the run's config is resolved here too
    config = SendConfig(trigger="test", lifetime_minutes=10.0, lock_wait_minutes=2)
    # Run monitoring as in dagster.yaml: it decides how a worker treats a run already CANCELING.
    with postgres_instance(empty_db_url, run_monitoring={"enabled": True}) as instance:
        marked_run = start_send_run(instance, env, config)
        marked = dev_runs.mark_canceling(instance)
        assert marked == [marked_run.run_id]
        bare_run = start_send_run(instance, env, config)  # nobody said this one was stopping

        def loading(worker) -> bool:
            # Reported once Dagster holds its interrupt handler and before it loads the code.
            return any(
                (entry.message or "").startswith("Started process for run")
                for entry in instance.all_logs(worker.run_id)
            )

        for worker in (marked_run, bare_run):
            wait_for(lambda worker=worker: loading(worker), "the run worker to start loading", timeout=60)
        for worker in (marked_run, bare_run):
            worker.process.send_signal(signal.SIGTERM)
        for worker in (marked_run, bare_run):
            worker.wait(GRACE_S)
        assert dev_runs.cancel_leftovers(instance, marked, since=float("inf")) in ([marked_run.run_id], [])
        assert marked_run.run().status == dg.DagsterRunStatus.CANCELED, marked_run.output[-3000:]
        assert bare_run.run().status == dg.DagsterRunStatus.FAILURE, bare_run.output[-3000:]
        # Even so, it was stopped, not crashed: the sensor's back-off does not count it.
        (record,) = instance.get_run_records(dg.RunsFilter(run_ids=[bare_run.run_id]))
        assert not failed_by_itself(sensors._ended_run(record, now=record.end_time or 0.0))
    with fresh(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM send_workers").fetchone()[0] == 0, "no drain started"


# -- the back-off, as a pure rule ---------------------------------------------------------------


def ended(failed: bool = True, stopped_by: str | None = None, served_s: float = 0.0, ago: float = 5.0):
    return EndedRun(failed=failed, stopped_by=stopped_by, served_s=served_s, ended_ago_s=ago)


def test_only_runs_that_failed_by_themselves_since_the_last_run_that_served_count() -> None:
    crash = ended()
    assert failure_streak([crash, crash, crash]) == (3, 5.0)
    assert failure_streak([ended(ago=2), crash]) == (2, 2.0), "measured from the newest failure"
    # A run that served ends the count (its own failure included), a full lifetime or not.
    assert failure_streak([crash, ended(served_s=SERVED_S), crash, crash]) == (2, 5.0)
    assert failure_streak([crash, ended(failed=False, stopped_by="lifetime", served_s=300), crash]) == (
        1,
        5.0,
    )
    # Planned stops are no failures, even when Dagster says FAILURE (killed after the drain stopped).
    for planned in ("signal", "lifetime", "paused", "held", "disabled", "sender_busy"):
        assert failure_streak([ended(stopped_by=planned)] * 4) == (0, 0.0), planned
    # The queue database went away: once it answers (the sensor just read it), no back-off.
    outage = [ended(stopped_by=StopReason.DB_ERROR), ended(stopped_by=StopReason.LOST_LOCK)] * 4
    assert failure_streak(outage) == (0, 0.0)
    assert failure_streak([*outage, crash, crash]) == (2, 5.0), "outages neither count nor reset"
    # Meta refusing the token or account holds the sender: lifting the hold means "send again now".
    assert failure_streak([ended(stopped_by="auth_error"), ended(stopped_by="account_error")] * 2) == (0, 0.0)
    # A bug in the drain is a failure of its own.
    assert failure_streak([ended(stopped_by="error")] * 3) == (3, 5.0)


def test_a_recovered_database_outage_does_not_hold_back_the_next_run() -> None:
    after_outage = failure_streak(
        [ended(stopped_by="db_error", ago=1.0), ended(stopped_by="lost_lock", ago=1.0)]
    )
    assert decide([], [], lock_held=False, blocked=None, failures=after_outage).launch
    crashing = failure_streak([ended(ago=1.0)] * 3)
    held_back = decide([], [], lock_held=False, blocked=None, failures=crashing)
    assert not held_back.launch and "the last 3 send runs failed by themselves" in held_back.reason
    assert retry_wait_s(crashing[0]) == 30.0


def test_the_sensor_reads_how_each_run_stopped_from_its_tags(db, db_url) -> None:
    with dg.instance_for_test() as instance:

        def finished(status: dg.DagsterRunStatus, **tags: str) -> None:
            instance.create_run_for_job(
                sensors.send_notifications_job, tags={**sender_tags(), **tags}, status=status
            )

        for _ in range(4):
            finished(dg.DagsterRunStatus.FAILURE, **{STOPPED_BY_TAG: "db_error", SERVED_TAG: "3"})
        finished(dg.DagsterRunStatus.FAILURE, **{STOPPED_BY_TAG: "signal", SERVED_TAG: "0"})
        assert len(sensor_tick(db_url, instance).run_requests) == 1, "outages and stops hold nothing back"
        for _ in range(3):
            finished(dg.DagsterRunStatus.FAILURE)  # killed: no tag
        skipped = sensor_tick(db_url, instance)
        assert not skipped.run_requests
        assert "the last 3 send runs failed by themselves" in skipped.skip_reason.skip_message
        finished(dg.DagsterRunStatus.SUCCESS, **{STOPPED_BY_TAG: "lifetime", SERVED_TAG: str(int(SERVED_S))})
        assert len(sensor_tick(db_url, instance).run_requests) == 1, "a run that served resets the count"


# -- the run-failure alert ----------------------------------------------------------------------


def test_a_failed_run_whose_drain_stopped_as_planned_is_not_alerted(db, db_url, webhook_receiver) -> None:
    sink = WebhookSink(webhook_receiver.url, backoff_s=0)

    def open_db():
        return fresh(db_url)

    def failed_send_run(run_id: str, stopped_by: str) -> run_failures.Announcement:
        db.execute(
            "INSERT INTO send_workers (worker_id, sender, run_id, host, pid, ended_at, stopped_by) "
            "VALUES (%s, 'default', %s, 'h', 1, now(), %s)",
            (f"dagster:{run_id[:8]}", run_id, stopped_by),
        )
        failure = run_failures.RunFailure("send_notifications_job", run_id, "run worker exited")
        return run_failures.announce(open_db, failure, sink, datetime.now(UTC))

    stopped = failed_send_run("aaaaaaaa-1", "signal")
    assert stopped.delivery is None and "stopped as planned (signal)" in stopped.note
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    crashed = failed_send_run("bbbbbbbb-2", "error")
    assert crashed.delivery is not None and crashed.delivery.ok
    (page,) = webhook_receiver.wait_for(1)
    assert "bbbbbbbb" in page["text"]


def test_a_send_run_interrupted_before_its_drain_started_is_not_alerted(db, db_url, webhook_receiver) -> None:
    """Ctrl-C or a deploy while a send run is still launching: Dagster fails it with its own
    interruption message before the drain (and its signal handler) exists. A stop, not a crash."""
    sink = WebhookSink(webhook_receiver.url, backoff_s=0)
    message = (
        'Execution of run for "send_notifications_job" failed. Execution was interrupted unexpectedly. '
        "No user initiated termination request was found, treating as failure."
    )
    launching = run_failures.RunFailure("send_notifications_job", "cccccccc-3", message)
    quiet = run_failures.announce(lambda: fresh(db_url), launching, sink, datetime.now(UTC))
    assert quiet.delivery is None and "before its drain started" in quiet.note
    # A send run that crashed is still paged.
    crashed = run_failures.RunFailure("send_notifications_job", "dddddddd-4", "run worker exited")
    assert run_failures.announce(lambda: fresh(db_url), crashed, sink, datetime.now(UTC)).delivery is not None
    (page,) = webhook_receiver.wait_for(1)
    assert "dddddddd" in page["text"] and "cccccccc" not in page["text"]

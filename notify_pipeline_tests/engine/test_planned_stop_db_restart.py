"""A database outage that recovered is not a crash (issue 19, item 1): PostgreSQL restarted under a
serving send run and its standby, both in real run worker processes. Both drains stop on the
database fault and say so (their runs' notify/stopped_by tag); once the database answers, the
sensor launches the replacement at once (no back-off), which sends the rest, nothing twice.
Real PostgreSQL (the embedded server, stopped and started), the emulator over HTTP."""

from __future__ import annotations

import signal
import time

import dagster as dg
import pytest

from notify_pipeline.defs.queue.jobs import STOPPED_BY_TAG, SendConfig
from notify_pipeline.engine.drain_config import DATABASE_FAULTS
from notify_pipeline_tests.support.drain_harness import counts
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates
from notify_pipeline_tests.support.run_worker import (
    postgres_instance,
    run_worker_env,
    start_send_run,
    wait_for,
)
from notify_pipeline_tests.support.supervision import AWAKE, lock_waiters, sensor_tick

OUTAGE_S = 3.0  # how long the database stays down (the fault, not a wait)


@pytest.mark.slow
def test_after_a_database_restart_the_replacement_starts_at_once_and_sends_the_rest(
    db, db_url, empty_db_url, emulator, tmp_path, monkeypatch, postgres_server
) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    total = 400
    enqueue_many(db, total, meta=AWAKE)
    env = run_worker_env(db_url, emulator, tmp_path)
    for name in ("NOTIFY_DATABASE_URL", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN"):
        monkeypatch.setenv(name, env[name])
    paced = {"trigger": "test", "throughput_per_s": 20.0, "lifetime_minutes": 10.0}
    with postgres_instance(empty_db_url) as instance:
        serving = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=2))
        wait_for(lambda: emulator.stats()["total"] >= 20, "the first run to serve")
        standby = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=15))
        wait_for(lambda: lock_waiters(db_url) == 1, "the standby to wait for the sender lock")

        postgres_server.stop()
        time.sleep(OUTAGE_S)
        postgres_server.start()
        answering = time.monotonic()
        before = emulator.stats()["total"]
        for worker in (serving, standby):
            run = worker.wait(timeout=180)
            assert run.tags.get(STOPPED_BY_TAG) in DATABASE_FAULTS, worker.output[-3000:]

        # The sensor's next tick: the outage is over, so no back-off holds the replacement back.
        (request,) = sensor_tick(db_url, instance).run_requests
        assert "no send run is alive: launching one" in request.tags["notify/launched_because"]
        replacement = start_send_run(instance, env, SendConfig(**paced, lock_wait_minutes=15))
        wait_for(lambda: emulator.stats()["total"] > before, "sending to resume", timeout=120)
        resumed_s = time.monotonic() - answering
        wait_for(lambda: counts(db_url) == {"sent": total}, "the rest to be sent", timeout=180)
        stats = emulator.stats()
        assert (stats["total"], stats["duplicates"]) == (total, 0), "nothing sent twice"
        replacement.process.send_signal(signal.SIGTERM)
        assert replacement.wait(timeout=120).status == dg.DagsterRunStatus.SUCCESS
    print(f"sending resumed {resumed_s:.1f} s after the database answered (sensor ticked at once)")

"""Supervised send runs: the due-notifications sensor ticked by hand, rows queued awake (quiet hours
overridden, so a test at any hour sends them), and standbys counted while they wait for the sender
lock."""

from __future__ import annotations

import dagster as dg

from notify_pipeline.defs.queue import sensors
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline_tests.support.drain_harness import fresh

AWAKE = {"quiet_hours_override": True}

WAITING_FOR_LOCK = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def sensor_tick(db_url: str, instance: dg.DagsterInstance) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"queue_db": QueueDatabase(url=db_url)})
    return sensors.due_notifications_sensor(context)


def lock_waiters(db_url: str) -> int:
    with fresh(db_url) as conn:
        return conn.execute(WAITING_FOR_LOCK).fetchone()[0]

"""The runs `dev` stops, recorded as stopped rather than failed.

Ctrl-C of `dev` is a person ending every run of the instance. A run worker that gets the signal
before its drain has installed the stop handler is interrupted by Dagster, which records FAILURE
("no user initiated termination request was found") unless the run is CANCELING by then; one
killed while still importing stays STARTED for good. So `dev` marks each unfinished run
CANCELING first, as the UI's Terminate does, then stops the process groups, then marks CANCELED
each run whose processes are now gone but which no worker finished: every run ends CANCELED, or
SUCCESS if its drain finished the stop itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

# Runs a worker may be executing, or about to: the launcher marks STARTING, the worker STARTED;
# NOT_STARTED lasts from creation to launch. QUEUED runs stay queued for the next `dev`.
UNFINISHED = ("NOT_STARTED", "STARTING", "STARTED")


def mark_canceling(instance, message: str = "notify-pipeline dev is stopping") -> list[str]:
    """Mark every unfinished run of `instance` CANCELING; the ids marked."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[name] for name in UNFINISHED]
    marked = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=statuses)):
        instance.report_run_canceling(record.dagster_run, message=message)
        marked.append(record.dagster_run.run_id)
    return marked


@contextmanager
def dev_instance(env: Mapping[str, str]) -> Iterator[object]:
    """The Dagster instance `dev`'s children use: its DAGSTER_HOME, with the children's
    environment (dagster.yaml reads the storage URL from it) while it is opened."""
    import dagster as dg

    names = ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: env[name] for name in names if name in env})
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cancel_leftovers(instance, marked: list[str], since: float) -> list[str]:
    """After every process of `dev` has ended: the runs still unfinished that were marked, or
    were launched since `since` (the daemon may launch one between the mark and the stop), are
    recorded CANCELED; the ids."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[name] for name in (*UNFINISHED, "CANCELING")]
    done = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=statuses)):
        run = record.dagster_run
        if run.run_id in marked or record.create_timestamp.timestamp() >= since:
            instance.report_run_canceled(run, message="its processes ended when notify-pipeline dev stopped")
            done.append(run.run_id)
    return done


def stop_with_runs(env: Mapping[str, str], stop: Callable[[], None], since: float, say) -> None:
    """`stop()` (which ends every child's process group), with the runs marked around it. A
    storage that does not answer only costs the distinction (those runs may show FAILURE or stay
    STARTED), never the stop itself."""
    try:
        with dev_instance(env) as instance:
            marked = mark_canceling(instance)
            if marked:
                say(f"stopping {len(marked)} run(s): marked canceling")
            stop()
            cancel_leftovers(instance, marked, since)
        return
    except Exception as error:  # the stop must go on whatever the storage says
        say(f"could not record the runs as canceled ({type(error).__name__}); see the Dagster UI")
    stop()  # idempotent: groups already stopped are skipped

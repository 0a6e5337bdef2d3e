"""`notify-pipeline dev` as the fault bench runs it: started, stopped with Ctrl-C, started again on
the same data folder, its Dagster UI asked over HTTP.

The stack is the one an operator runs, with two differences that let the bench count: the queue and
Dagster's storage are scratch databases of the bench (dropped at the end), and the Cloud API is the
bench's emulator, a process of its own that outlives every `dev` (as Meta outlives a deploy), so its
ledger sees every send across the restarts and counts any message sent twice.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from notify_pipeline.bench.dev_process import SEND_JOB, DevProcess
from notify_pipeline.bench.emulator_process import free_port
from notify_pipeline.db import urls
from notify_pipeline.defs.queue.jobs import STOPPED_BY_TAG

# How long `dev` may take to stop after the second signal (it stops its children SIGTERM first,
# SIGKILL after its grace).
EXIT_WAIT_S = 120.0
KILLED_LINE = "still running after"
FINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@contextmanager
def empty_database(server_url: str, name: str) -> Iterator[str]:
    """A new empty database beside `server_url` (Dagster's storage: Dagster creates its tables);
    dropped afterwards, whatever is still connected."""

    def drop() -> None:
        with psycopg.connect(urls.libpq(server_url), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    drop()
    with psycopg.connect(urls.libpq(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urls.with_database(server_url, name)
    finally:
        drop()


@contextmanager
def _unpinned() -> Iterator[None]:
    """Start children on every core: the bench pins itself to the sender core, and `dev` (webserver,
    daemon, code server, run workers) must not inherit that, as it would not in production."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class DevStack(DevProcess):
    """`notify-pipeline dev` on the bench's databases and emulator, in one data folder, on the same
    ports each time it starts. Its output goes to dev.log in the data folder."""

    def __init__(
        self,
        queue_url: str,
        dagster_url: str,
        emulator_url: str,
        token: str,
        phone_number_id: str,
        data_dir: Path,
    ) -> None:
        self.app_secret = secrets.token_hex(16)
        env = {
            **os.environ,
            "NOTIFY_DATABASE_URL": queue_url,
            "DAGSTER_POSTGRES_URL": urls.for_driver(dagster_url, "psycopg2"),
            "NOTIFY_DATA_DIR": str(data_dir),
            "NOTIFY_METRICS_PORT": str(free_port()),
            "WHATSAPP_API_BASE_URL": emulator_url,
            "WHATSAPP_ACCESS_TOKEN": token,
            "WHATSAPP_PHONE_NUMBER_ID": phone_number_id,
            "WHATSAPP_APP_SECRET": self.app_secret,
            "WHATSAPP_WEBHOOK_VERIFY_TOKEN": secrets.token_hex(8),
        }
        for name in ("DAGSTER_HOME", "NOTIFICATION_WORKER_CRON_ENABLED", "NOTIFY_SEND_LIFETIME_MINUTES"):
            env.pop(name, None)
        super().__init__(data_dir, env)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}/webhooks/whatsapp"

    def start(self) -> None:
        with _unpinned():
            self.launch()

    def runs(self) -> list[dict[str, Any]]:
        """The send runs Dagster knows (this dev's and those before it): id, status, created, how
        its drain stopped (None if it did not say)."""
        return [
            {
                "run_id": run["runId"],
                "status": run["status"],
                "created": run["creationTime"],
                "stopped_by": {tag["key"]: tag["value"] for tag in run["tags"]}.get(STOPPED_BY_TAG),
            }
            for run in self.dagster_runs(SEND_JOB)
        ]

    def interrupt(self) -> dict[str, Any]:
        """Ctrl-C: SIGINT to `dev` alone (a terminal sends it to the foreground group, but dev's
        children have sessions of their own); how long until it exited, and its exit code. One that
        has not exited after EXIT_WAIT_S is killed, and says so."""
        assert self.process is not None
        log = self.log_path
        logged = log.stat().st_size if log.exists() else 0
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        killed = False
        try:
            self.process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            killed = True
            self.process.kill()
            self.process.wait(30)
        with log.open("rb") as output:
            output.seek(logged)
            stop_lines = output.read().decode(errors="replace")
        return {
            "seconds_to_exit": round(time.monotonic() - started, 2),
            "exit_code": self.process.returncode,
            # dev_supervisor's line for a process group that outlived the grace and was SIGKILLed.
            "groups_killed": stop_lines.count(KILLED_LINE),
            "dev_killed_after_s": EXIT_WAIT_S if killed else None,
        }

    def close(self) -> None:
        """Stop a `dev` still running (the bench failed midway) and release the HTTP client."""
        if self.alive():
            self.interrupt()
        self.close_http()


def final(runs: list[dict[str, Any]]) -> bool:
    return all(run["status"] in FINAL_STATUSES for run in runs)

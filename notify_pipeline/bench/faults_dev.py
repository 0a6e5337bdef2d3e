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
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from notify_pipeline.bench.emulator_process import free_port
from notify_pipeline.db import urls
from notify_pipeline.defs.queue.jobs import STOPPED_BY_TAG

SEND_JOB = "send_notifications_job"
RUNS_QUERY = """
query ($job: String!) { runsOrError(filter: {pipelineName: $job}) { ... on Runs {
    results { runId status creationTime tags { key value } } } } }
"""
# How long `dev` may take to start its UI on a loaded two-core machine, and to stop after the
# second signal (it stops its children SIGTERM first, SIGKILL after its grace).
UI_START_S = 300.0
EXIT_WAIT_S = 120.0
GRAPHQL_RETRY_S = 60.0
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


class DevStack:
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
        self.data_dir = data_dir
        self.ui_port, self.serve_port = free_port(), free_port()
        self.app_secret = secrets.token_hex(16)
        self.env = {
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
            self.env.pop(name, None)
        self.process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.ui_port}", trust_env=False, timeout=10)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}/webhooks/whatsapp"

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "notify-pipeline"), "dev", "--port", str(self.ui_port)]
        command += ["--serve-port", str(self.serve_port)]
        with (self.data_dir / "dev.log").open("ab") as log, _unpinned():
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def ui_answers(self) -> bool:
        try:
            return self._http.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_for_ui(self) -> float:
        """Wait until the Dagster UI answers; when it did (unix seconds)."""
        deadline = time.monotonic() + UI_START_S
        while not self.ui_answers():
            self._check_alive("before its UI answered")
            if time.monotonic() > deadline:
                raise RuntimeError(f"notify-pipeline dev: no UI within {UI_START_S:.0f} s; {self.log_tail()}")
            time.sleep(0.2)
        return time.time()

    def runs(self) -> list[dict[str, Any]]:
        """The send runs Dagster knows (this dev's and those before it): id, status, created, how
        its drain stopped (None if it did not say). A webserver still starting may fail a query:
        asked again for up to GRAPHQL_RETRY_S."""
        deadline = time.monotonic() + GRAPHQL_RETRY_S
        while True:
            try:
                body = self._http.post("/graphql", json={"query": RUNS_QUERY, "variables": {"job": SEND_JOB}})
                results = body.json()["data"]["runsOrError"]["results"]
                break
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                self._check_alive("while asked for its runs")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Dagster UI did not list the send runs: {exc!r}") from exc
                time.sleep(1.0)
        return [
            {
                "run_id": run["runId"],
                "status": run["status"],
                "created": run["creationTime"],
                "stopped_by": {tag["key"]: tag["value"] for tag in run["tags"]}.get(STOPPED_BY_TAG),
            }
            for run in results
        ]

    def interrupt(self) -> dict[str, Any]:
        """Ctrl-C: SIGINT to `dev` alone (a terminal sends it to the foreground group, but dev's
        children have sessions of their own); how long until it exited, and its exit code. One that
        has not exited after EXIT_WAIT_S is killed, and says so."""
        assert self.process is not None
        log = self.data_dir / "dev.log"
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
        if self.process is not None and self.process.poll() is None:
            self.interrupt()
        self._http.close()

    def _check_alive(self, when: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"notify-pipeline dev exited {when} (code {self.process.returncode}); {self.log_tail()}"
            )

    def log_tail(self, chars: int = 800) -> str:
        try:
            text = (self.data_dir / "dev.log").read_text(errors="replace")
        except FileNotFoundError:
            return "no log"
        return f"the end of {self.data_dir / 'dev.log'}: {text.strip()[-chars:]}"


def final(runs: list[dict[str, Any]]) -> bool:
    return all(run["status"] in FINAL_STATUSES for run in runs)

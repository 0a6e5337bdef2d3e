"""`notify-pipeline dev` as a bench starts it: in a data folder of its own, its output in dev.log
there, its Dagster UI asked over HTTP.

Two benches drive it, each around this core: the fault bench (faults_dev.DevStack: scratch
databases and an emulator of the bench, Ctrl-C and start again) and dagster_latency (its
Deployment: the embedded PostgreSQL and dev's own emulator, kill -9 of a send run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from notify_pipeline.bench.emulator_process import free_port

CLI = str(Path(sys.executable).parent / "notify-pipeline")
SEND_JOB = "send_notifications_job"
RUNS_QUERY = """
query ($filter: RunsFilter, $limit: Int) { runsOrError(filter: $filter, limit: $limit) { ... on Runs {
    results { runId jobName status creationTime startTime endTime tags { key value } } } } }
"""
# How long `dev` may take to start its UI on a loaded two-core machine.
UI_START_S = 300.0
GRAPHQL_RETRY_S = 60.0


class DevProcess:
    """`notify-pipeline dev` with `env`, on free UI and serve ports chosen once (the same each time
    it starts), logging to dev.log in `data_dir`."""

    http_timeout_s = 10.0

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.ui_port, self.serve_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.ui_url, trust_env=False, timeout=self.http_timeout_s)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "dev.log"

    def launch(self, *extra: str, **popen: Any) -> list[str]:
        """Start `dev` on the ports, with `extra` arguments; the command it ran."""
        command = [CLI, "dev", "--port", str(self.ui_port), "--serve-port", str(self.serve_port), *extra]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, **popen
            )
        return command

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self, when: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"notify-pipeline dev exited {when} (code {self.process.returncode}); {self.log_tail()}"
            )

    def log_tail(self, chars: int = 800) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "no log"
        return f"the end of {self.log_path}: {text.strip()[-chars:]}"

    def ui_answers(self) -> bool:
        try:
            return self._http.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_until(self, answers: Callable[[], bool], what: str, timeout_s: float) -> float:
        """Wait until `answers()` (dev's `what`, e.g. its UI, is up); when it did (unix seconds)."""
        deadline = time.monotonic() + timeout_s
        while not answers():
            self.check_alive(f"before its {what} answered")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"notify-pipeline dev: no {what} within {timeout_s:.0f} s; {self.log_tail()}"
                )
            time.sleep(0.2)
        return time.time()

    def wait_for_ui(self, timeout_s: float = UI_START_S) -> float:
        """Wait until the Dagster UI answers; when it did (unix seconds)."""
        return self.wait_until(self.ui_answers, "UI", timeout_s)

    def dagster_runs(self, job: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The runs Dagster knows (of `job` only, if given; this dev's and those before it), newest
        first, as its GraphQL API gives them. A webserver still starting may fail a query: asked
        again for up to GRAPHQL_RETRY_S."""
        variables = {"filter": {"pipelineName": job} if job else None, "limit": limit}
        deadline = time.monotonic() + GRAPHQL_RETRY_S
        while True:
            try:
                body = self._http.post("/graphql", json={"query": RUNS_QUERY, "variables": variables})
                return body.json()["data"]["runsOrError"]["results"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                self.check_alive("while asked for its runs")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Dagster UI did not list the runs: {exc!r}") from exc
                time.sleep(1.0)

    def close_http(self) -> None:
        self._http.close()

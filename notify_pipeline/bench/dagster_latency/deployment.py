"""The deployment under measure: `notify-pipeline dev` on the embedded PostgreSQL, with its own
emulator, DAGSTER_HOME and free ports, in a scratch data folder; stopped with everything it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from notify_pipeline.bench.dev_process import CLI, DevProcess
from notify_pipeline.bench.emulator_process import free_port
from notify_pipeline.db.location import queue_database_url
from notify_pipeline.settings import project_root

# The environment variable the benchmark sets for the sensor's send-run lifetime (minutes).
# Honoured only if the code location reads it; the lifetime actually in force is measured from
# send_workers (lifetime_ends_at - started_at) and reported, so a knob that is ignored shows.
LIFETIME_ENV = "NOTIFY_SEND_LIFETIME_MINUTES"
# Variables of the caller's shell that would point the deployment somewhere else.
FOREIGN_ENV = (
    "NOTIFY_DATABASE_URL",
    "DAGSTER_POSTGRES_URL",
    "DAGSTER_HOME",
    "WHATSAPP_API_BASE_URL",
    "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_ACCESS_TOKEN",
    "NOTIFICATION_WORKER_CRON_ENABLED",
    "NOTIFY_ALERT_WEBHOOK_URL",
    "NOTIFY_PUSHGATEWAY_URL",
)


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Deployment(DevProcess):
    """`dev` in `data_dir` (a session of its own), with the send-run lifetime given, if any."""

    http_timeout_s = 30.0  # the run list of a long phase is large

    def __init__(self, data_dir: Path, lifetime_minutes: float | None, seed: bool) -> None:
        self.lifetime_minutes, self.seed = lifetime_minutes, seed
        self.emulator_port, self.pg_port = free_port(), free_port()
        self.queue_url = ""
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(
            NOTIFY_DATA_DIR=str(data_dir),
            NOTIFY_EMBEDDED_PG_PORT=str(self.pg_port),
            DAGSTER_HOME=str(data_dir / "dagster_home"),
            PYTHONUNBUFFERED="1",
        )
        if lifetime_minutes is not None:
            env[LIFETIME_ENV] = f"{lifetime_minutes:g}"
        super().__init__(data_dir, env)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def start(self) -> None:
        # This process uses the same embedded server: start it here (the dev command reuses it).
        os.environ.clear()
        os.environ.update(self.env)
        self.queue_url = queue_database_url()
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        # A copy, not dev's symlink: the project's dagster.yaml may be edited while this runs.
        shutil.copy(project_root() / "dagster.yaml", self.dagster_home / "dagster.yaml")
        extra = ["--emulator-port", str(self.emulator_port)] + ([] if self.seed else ["--no-seed"])
        command = self.launch(*extra, cwd=project_root(), start_new_session=True)
        log(f"started `{' '.join(command[1:])}` (pid {self.process.pid}), log {self.log_path}")

    def owns(self, pid: int) -> bool:
        """Whether process `pid` carries this data folder in its environment (ours alone)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"NOTIFY_DATA_DIR={self.data_dir}".encode() + b"\0" in environ + b"\0"

    def stop(self) -> None:
        """SIGTERM the dev command (it stops its children), SIGKILL its group if it lingers, then
        SIGKILL any process still carrying this data folder in its environment (ours alone)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=75)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        leftovers = self._our_processes()
        if leftovers:  # e.g. a run worker still winding down: SIGTERM, a grace, then SIGKILL
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 10
            while time.time() < deadline and self._our_processes():
                time.sleep(0.5)
            stubborn = self._our_processes()
            for pid in stubborn:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log(
                f"stopped {len(leftovers)} leftover process(es) of this deployment {leftovers}, "
                f"{len(stubborn)} with SIGKILL"
            )
        self.close_http()
        result = subprocess.run(
            [CLI, "db", "stop"], env=self.env, capture_output=True, text=True, timeout=120
        )
        log((result.stdout or result.stderr).strip() or f"db stop exited {result.returncode}")

    def _our_processes(self) -> list[int]:
        """Our processes but the embedded PostgreSQL (`db stop` stops that one)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid() or not self.owns(int(entry.name)):
                continue
            try:
                program = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if b"postgres" not in program:
                found.append(int(entry.name))
        return found

"""Send runs in real Dagster run worker processes: `dagster api execute_run`, the command a
container run launcher (Kubernetes, Docker) starts for each run, on a Dagster instance whose
storage is PostgreSQL (as in production), so the test and the run worker share it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._grpc.types import ExecuteRunArgs

from notify_pipeline.db import urls
from notify_pipeline.defs.queue.jobs import SendConfig, sender_tags

SEND_JOB = "send_notifications_job"


@contextmanager
def postgres_instance(storage_db_url: str, **settings) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on PostgreSQL; `settings` are more dagster.yaml sections."""
    storage = {"postgres": {"postgres_url": urls.for_driver(storage_db_url, "psycopg2")}}
    overrides = {"storage": storage, **settings}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


def run_worker_env(db_url: str, emulator, data_dir: Path) -> dict[str, str]:
    """The code location's environment: the test's queue database and the emulator."""
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_DATA_DIR": str(data_dir),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    env.pop("NOTIFICATION_WORKER_CRON_ENABLED", None)
    return env


@dataclass
class RunWorker:
    run_id: str
    process: subprocess.Popen
    instance: dg.DagsterInstance

    def run(self) -> dg.DagsterRun:
        return self.instance.get_run_by_id(self.run_id)

    def wait(self, timeout: float = 120) -> dg.DagsterRun:
        """The finished run, once its process has exited."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            raise AssertionError(
                f"the run worker did not exit within {timeout} s:\n{output[-4000:]}"
            ) from None
        self.output = output
        return self.run()


def start_send_run(instance: dg.DagsterInstance, env: dict[str, str], config: SendConfig) -> RunWorker:
    """Create a send run as the sensor would, and start its run worker process."""
    recon = ReconstructableRepository.for_module(
        "notify_pipeline.definitions", "defs", working_directory=os.getcwd()
    ).get_reconstructable_job(SEND_JOB)
    run = instance.create_run_for_job(
        job_def=recon.get_definition(),
        run_config={"ops": {"send_due_notifications": {"config": config.model_dump()}}},
        tags=sender_tags(),
        job_code_origin=recon.get_python_origin(),
    )
    args = ExecuteRunArgs(
        job_origin=recon.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref()
    )
    dagster = str(Path(sys.executable).parent / "dagster")  # the entry point, from this venv
    process = subprocess.Popen(
        [dagster, *args.get_command_args()[1:]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return RunWorker(run.run_id, process, instance)


def wait_for(condition, what: str, timeout: float = 120, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)

"""`notify-pipeline dev` (what `make dev` runs) serves the Dagster UI with the code location loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from notify_pipeline.db import urls
from notify_pipeline_tests.support import free_port

RUNS_QUERY = """
{ runsOrError(filter: {pipelineName: "send_notifications_job"}) { ... on Runs { results { runId status } } } }
"""

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def wait_for_location(port: int, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert process.poll() is None, "notify-pipeline dev exited early"
        try:
            response = httpx.post(
                f"http://127.0.0.1:{port}/graphql", json={"query": LOCATION_QUERY}, timeout=5
            )
            entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
            last = entries
            if entries and entries[0]["loadStatus"] == "LOADED":
                return entries[0]
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"code location did not load in {timeout}s: {last}")


def wait_for_a_serving_send_run(
    port: int, db_url: str, process: subprocess.Popen, timeout: float = 90
) -> list:
    """A send run the sensor launched that is serving (started) and has sent demo rows."""
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        assert process.poll() is None, "notify-pipeline dev exited early"
        response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": RUNS_QUERY}, timeout=5)
        runs = response.json()["data"]["runsOrError"]["results"]
        with psycopg.connect(db_url) as conn:
            sent = conn.execute("SELECT count(*) FROM notifications WHERE status = 'sent'").fetchone()[0]
        if sent and any(run["status"] == "STARTED" for run in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"no serving send run that sent the demo within {timeout}s: {runs}")


@pytest.mark.slow
def test_dev_serves_the_ui_and_sends_the_demo_through_the_emulator(
    tmp_path: Path, db_url: str, empty_db_url: str
) -> None:
    port, emulator_port = free_port(), free_port()
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "DAGSTER_POSTGRES_URL": urls.for_driver(empty_db_url, "psycopg2"),
        "NOTIFY_DATA_DIR": str(tmp_path),
    }
    for name in (
        "DAGSTER_HOME",
        "WHATSAPP_API_BASE_URL",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_PHONE_NUMBER_ID",
    ):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "notify-pipeline"),
            "dev",
            "--port",
            str(port),
            "--emulator-port",
            str(emulator_port),
            "--serve-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        entry = wait_for_location(port, process)
        assert entry["name"] == "notify_pipeline"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        with psycopg.connect(empty_db_url) as conn:
            tables = {
                name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            }
        assert {"runs", "event_logs"} <= tables, "Dagster keeps its instance in PostgreSQL"
        runs = wait_for_a_serving_send_run(port, db_url, process)
        assert len(runs) == 1, "one long-lived send run serves the sender"
        stats = httpx.get(f"http://127.0.0.1:{emulator_port}/_emulator/stats", timeout=5).json()
        assert stats["total"] > 0, "the sensor's send run delivered the demo to the emulator"
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(*) FROM notifications WHERE status = 'sent'").fetchone()[0] > 0
        # Receipts: the emulator posts signed statuses to `serve`, which applies them.
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(db_url) as conn:
                read = conn.execute(
                    "SELECT count(*) FROM notifications WHERE read_at IS NOT NULL"
                ).fetchone()[0]
            if read or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert read > 0, "a demo message reached read through the webhook service"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Dagster UI on http://127.0.0.1" in output
    assert "demo seeded" in output

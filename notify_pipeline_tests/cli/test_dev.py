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
from notify_pipeline_tests.support.ports import free_port
from notify_pipeline_tests.support.supervision import lock_waiters

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


def serving_and_standby(port: int, db_url: str) -> list[dict] | None:
    """The send runs, once exactly two are started and one of them waits on the sender lock."""
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": RUNS_QUERY}, timeout=5)
    runs = response.json()["data"]["runsOrError"]["results"]
    started = [run for run in runs if run["status"] == "STARTED"]
    return runs if len(runs) == len(started) == 2 and lock_waiters(db_url) == 1 else None


def start_dev(
    tmp_path: Path, db_url: str, empty_db_url: str, port: int, emulator_port: int, serve_port: int, **popen
) -> subprocess.Popen:
    """`notify-pipeline dev` on these databases, with the emulator, in a scratch data folder."""
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "DAGSTER_POSTGRES_URL": urls.for_driver(empty_db_url, "psycopg2"),
        "NOTIFY_DATA_DIR": str(tmp_path),
        "NOTIFY_METRICS_PORT": str(free_port()),  # not the default 8091 another dev may hold
    }
    for name in (
        "DAGSTER_HOME",
        "WHATSAPP_API_BASE_URL",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_PHONE_NUMBER_ID",
    ):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "notify-pipeline"), "dev", "--port", str(port)]
    command += ["--emulator-port", str(emulator_port), "--serve-port", str(serve_port)]
    return subprocess.Popen(command, env=env, **popen)


@pytest.mark.slow
def test_dev_serves_the_ui_and_sends_the_demo_through_the_emulator(
    tmp_path: Path, db_url: str, empty_db_url: str
) -> None:
    port, emulator_port = free_port(), free_port()
    # A file, not a pipe: nobody reads a pipe while the test waits, and a full one would stall dev.
    log = (tmp_path / "dev.log").open("w")
    process = start_dev(
        tmp_path, db_url, empty_db_url, port, emulator_port, free_port(), stdout=log, stderr=subprocess.STDOUT
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
        wait_for_a_serving_send_run(port, db_url, process)
        # The README: the sensor keeps one send run serving and a second standing by on the
        # sender lock. The standby comes a sensor tick (15 s) or two after the first run serves.
        wait_until(lambda: serving_and_standby(port, db_url), "a serving run and its standby", process, 180)
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
        process.wait(timeout=60)
        log.close()
    output = (tmp_path / "dev.log").read_text()
    assert process.returncode == 0, output
    assert "Dagster UI on http://127.0.0.1" in output
    assert "demo seeded" in output


def dev_children(dev: subprocess.Popen) -> dict[str, int]:
    """`dev`'s live children by role (serve, emulator, daemon, webserver), from /proc."""
    children = Path(f"/proc/{dev.pid}/task/{dev.pid}/children").read_text().split()
    roles = {}
    for pid in map(int, children):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if Path(args[0].decode()).name.startswith("python"):  # a console script run by its interpreter
            args = args[1:]
        program = Path(args[0].decode()).name
        role = args[1].decode() if program == "notify-pipeline" else program.removeprefix("dagster-")
        if process_alive(pid):
            roles[role] = pid
    return roles


def process_alive(pid: int) -> bool:
    """Exists and is not a zombie (PID 1 here may never reap an orphan's zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def process_group(pgid: int) -> dict[int, str]:
    """The live processes of a process group, with their command lines."""
    members = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode() if stat else ""
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat and int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid and process_alive(int(entry.name)):
            members[int(entry.name)] = command
    return members


def wait_until(condition, what: str, dev: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dev.poll() is None, "notify-pipeline dev exited"
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def serve_answers(serve_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{serve_port}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads dev's children from /proc")
def test_dev_restarts_a_killed_child_alone_and_a_killed_daemon_without_its_runs(
    tmp_path: Path, db_url: str, empty_db_url: str
) -> None:
    port, serve_port = free_port(), free_port()
    log = (tmp_path / "dev.log").open("w")
    dev = start_dev(
        tmp_path, db_url, empty_db_url, port, free_port(), serve_port, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_location(port, dev, timeout=240)
        wait_for_a_serving_send_run(port, db_url, dev, timeout=240)
        wait_until(lambda: serve_answers(serve_port), "serve answers", dev)
        before = dev_children(dev)
        assert {"serve", "emulator", "daemon", "webserver"} <= before.keys(), before

        os.kill(before["serve"], signal.SIGKILL)
        wait_until(
            lambda: dev_children(dev).get("serve", before["serve"]) != before["serve"], "new serve", dev
        )
        wait_until(lambda: serve_answers(serve_port), "serve answers again", dev)
        after = dev_children(dev)
        assert {role: after[role] for role in ("emulator", "daemon", "webserver")} == {
            role: before[role] for role in ("emulator", "daemon", "webserver")
        }, "the other children kept running"

        # The daemon's group holds its code server and the send run's worker, a multiprocessing
        # child of the code server (Dagster starts neither in a new session): a killed daemon
        # takes them with it, and comes back alone.
        group = process_group(before["daemon"])
        commands = "\n".join(group.values())
        assert "dagster api grpc" in commands and "multiprocessing.spawn" in commands, commands
        os.kill(before["daemon"], signal.SIGKILL)
        wait_until(lambda: not process_group(before["daemon"]), "the old daemon's group gone", dev)
        wait_until(
            lambda: dev_children(dev).get("daemon", before["daemon"]) != before["daemon"], "new daemon", dev
        )
        assert dev_children(dev)["serve"] == after["serve"], "serve kept running"
        groups = {*before.values(), *dev_children(dev).values()}  # each child leads its own group
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=120)
        log.close()
    output = (tmp_path / "dev.log").read_text()
    assert dev.returncode == 0, output
    assert "serve exited with code -9" in output and "daemon exited with code -9" in output, output
    left = {pgid: members for pgid in groups if (members := process_group(pgid))}
    assert left == {}, "dev's stop leaves no process of any child's group"

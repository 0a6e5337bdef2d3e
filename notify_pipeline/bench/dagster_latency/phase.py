"""Enqueue-commit to emulator-receipt latency through the real Dagster deployment.

Starts `notify-pipeline dev` (embedded PostgreSQL, Cloud API emulator, Dagster webserver and
daemon, the supervising sensor and its long-lived send runs) in a temporary data folder with its
own DAGSTER_HOME and free ports, then runs load phases against it:

- trickle: one notification every 2 s;
- steady:  60 notifications/s while the emulator holds the sender to 80/s.

Each phase kills the live send run's process (`kill -9` of the pid its drain registered in
send_workers) midway. Every row is enqueued with `SELECT queueNotification(message, meta)` on an
autocommit connection, to its own recipient and with quiet hours overridden; the time taken right
after the statement returns is its commit time. The emulator records each accepted message with
its receive time and the notification id (biz_opaque_callback_data); latency is the difference.

The kill's recovery window runs from the kill until the first receipt after it plus a grace
(--recovery-grace). A message counts in the window when it was waiting at some moment inside it;
those are reported apart. A second, wider window ("until caught up") ends when latencies are back
under --slow-threshold for --stable-s of commits; figures excluding it are printed as well.

Figures only, no pass/fail: a readable table, then one JSON line (also written to --json-out).

    .venv/bin/python benchmarks/dagster_latency.py --minutes 2
    .venv/bin/python benchmarks/dagster_latency.py --phases trickle --minutes 3 --keep-data
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = str(BIN / "notify-pipeline")
SEND_JOB = "send_notifications_job"
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
RUNS_QUERY = """
query BenchRuns($limit: Int) {
  runsOrError(limit: $limit) {
    __typename
    ... on Runs { results { runId jobName status creationTime startTime endTime } }
    ... on PythonError { message }
  }
}
"""


class Stop(Exception):
    """SIGTERM/SIGINT on the benchmark: stop measuring, clean up."""


def _on_signal(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float | None:
    from notify_pipeline.bench.stats import percentile as nearest_rank

    return nearest_rank(values, share)


def summary(values: list[float]) -> dict[str, Any]:
    """Latency figures in milliseconds (nearest-rank percentiles)."""
    if not values:
        return {"n": 0}

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 0.50)),
        "p90_ms": ms(percentile(values, 0.90)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values)),
    }


# -- the deployment ------------------------------------------------------------------------------


@dataclass
class Deployment:
    data_dir: Path
    lifetime_minutes: float | None
    seed: bool
    web_port: int = field(default_factory=free_port)
    emulator_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    queue_url: str = ""
    log_path: Path | None = None

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(
            NOTIFY_DATA_DIR=str(self.data_dir),
            NOTIFY_EMBEDDED_PG_PORT=str(self.pg_port),
            DAGSTER_HOME=str(self.dagster_home),
            PYTHONUNBUFFERED="1",
        )
        if self.lifetime_minutes is not None:
            env[LIFETIME_ENV] = f"{self.lifetime_minutes:g}"
        return env

    def start(self) -> None:
        env = self.environment()
        # This process uses the same embedded server: start it here (the dev command reuses it).
        os.environ.clear()
        os.environ.update(env)
        from notify_pipeline.db.location import queue_database_url

        self.queue_url = queue_database_url()
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        # A copy, not dev's symlink: the project's dagster.yaml may be edited while this runs.
        shutil.copy(ROOT / "dagster.yaml", self.dagster_home / "dagster.yaml")
        command = [
            CLI,
            "dev",
            "--port",
            str(self.web_port),
            "--emulator-port",
            str(self.emulator_port),
            "--serve-port",
            str(free_port()),
        ]
        if not self.seed:
            command.append("--no-seed")
        self.log_path = self.data_dir / "dev.log"
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log(f"started `{' '.join(command[1:])}` (pid {self.process.pid}), log {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the dev command (it stops its children), SIGKILL its group if it lingers, then
        SIGKILL any process still carrying this data folder in its environment (ours alone)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=75)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        leftovers = self._our_processes(exclude_postgres=True)
        if leftovers:  # e.g. a run worker still winding down: SIGTERM, a grace, then SIGKILL
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 10
            while time.time() < deadline and self._our_processes(exclude_postgres=True):
                time.sleep(0.5)
            stubborn = self._our_processes(exclude_postgres=True)
            for pid in stubborn:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log(
                f"stopped {len(leftovers)} leftover process(es) of this deployment {leftovers}, "
                f"{len(stubborn)} with SIGKILL"
            )
        result = subprocess.run(
            [CLI, "db", "stop"], env=self.environment(), capture_output=True, text=True, timeout=120
        )
        log((result.stdout or result.stderr).strip() or f"db stop exited {result.returncode}")

    def _our_processes(self, exclude_postgres: bool) -> list[int]:
        marker = f"NOTIFY_DATA_DIR={self.data_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker + b"\0" not in environ + b"\0":
                continue
            if exclude_postgres and b"postgres" in cmdline.split(b"\0")[0]:
                continue
            found.append(int(entry.name))
        return found


class Emulator:
    def __init__(self, base_url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=30)

    def healthy(self) -> bool:
        try:
            return self.http.get("/_emulator/health").status_code == 200
        except Exception:
            return False

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = self.http.patch("/_emulator/config", json=changes)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.http.get("/_emulator/stats").json()

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 50_000
        while True:
            data = self.http.get("/_emulator/messages", params={"limit": page, "offset": len(out)}).json()
            out.extend(data["data"])
            if len(data["data"]) < page:
                return out


class Dagster:
    def __init__(self, web_url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=web_url, trust_env=False, timeout=30)

    def ready(self) -> bool:
        try:
            return self.http.get("/server_info").status_code == 200
        except Exception:
            return False

    def runs(self) -> list[dict[str, Any]]:
        response = self.http.post("/graphql", json={"query": RUNS_QUERY, "variables": {"limit": 5000}})
        response.raise_for_status()
        answer = response.json()
        if "errors" in answer:
            raise RuntimeError(f"GraphQL: {answer['errors']}")
        runs = answer["data"]["runsOrError"]
        if runs["__typename"] != "Runs":
            raise RuntimeError(f"GraphQL: {runs}")
        return runs["results"]


# -- queue access ----------------------------------------------------------------------------------


def connect(url: str, actor: str):
    from notify_pipeline.db.connect import connect as product_connect

    return product_connect(url, actor=actor, autocommit=True)


def serving_worker(conn) -> dict[str, Any] | None:
    """The drain that is sending now: registered, not ended, heartbeat fresh, newest first."""
    row = conn.execute(
        "SELECT worker_id, run_id, host, pid, extract(epoch FROM started_at)::float8, "
        "extract(epoch FROM lifetime_ends_at - started_at)::float8 "
        "FROM send_workers WHERE ended_at IS NULL AND heartbeat_at > now() - interval '15 seconds' "
        "ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    keys = ("worker_id", "run_id", "host", "pid", "started_at", "lifetime_s")
    return dict(zip(keys, row, strict=True))


def drains_between(conn, start: float, end: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT worker_id, run_id, pid, extract(epoch FROM started_at)::float8, "
        "extract(epoch FROM ended_at)::float8, stopped_by, "
        "extract(epoch FROM lifetime_ends_at - started_at)::float8 "
        "FROM send_workers WHERE started_at <= to_timestamp(%s) "
        "AND coalesce(ended_at, heartbeat_at) >= to_timestamp(%s) ORDER BY started_at",
        (end, start),
    ).fetchall()
    keys = ("worker_id", "run_id", "pid", "started_at", "ended_at", "stopped_by", "lifetime_s")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def message_for(n: int, recipient: str) -> dict[str, Any]:
    from notify_pipeline.whatsapp.messages import template_message

    full = template_message(recipient, "welcome_message", "en", body=[f"Bench {n}"])
    return {"to": full["to"], "template": full["template"]}


# -- one phase -------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    rate_per_s: float
    seconds: float
    recipient_base: int


class Producer(threading.Thread):
    """Enqueues at a fixed schedule (start + i / rate); records (id, commit time)."""

    def __init__(self, url: str, phase: Phase, stop: threading.Event) -> None:
        super().__init__(name=f"producer-{phase.name}", daemon=True)
        self.url, self.phase, self.stop_event = url, phase, stop
        self.rows: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        from psycopg.types.json import Jsonb

        meta = Jsonb({"quiet_hours_override": True, "domain": "bench", "correlation_id": "dagster-latency"})
        count = max(1, round(self.phase.rate_per_s * self.phase.seconds))
        with connect(self.url, "bench:dagster-latency") as conn:
            self.started_at = time.time()
            for n in range(count):
                if self.stop_event.is_set():
                    break
                due = self.started_at + n / self.phase.rate_per_s
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                recipient = f"+2507{self.phase.recipient_base + n:08d}"
                try:
                    row = conn.execute(
                        "SELECT queueNotification(%s, %s)", (Jsonb(message_for(n, recipient)), meta)
                    ).fetchone()
                except Exception as exc:  # keep measuring; the count of errors is reported
                    self.errors.append(str(exc).splitlines()[0])
                    continue
                self.rows.append((int(row[0]), time.time()))  # autocommit: committed on return
        self.ended_at = time.time()


def kill_serving_run(conn, data_dir: Path, wait_s: float = 60.0) -> dict[str, Any]:
    """kill -9 the process of the drain that is sending now (only one of this deployment)."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        worker = serving_worker(conn)
        if worker and worker["host"] == socket.gethostname() and _is_ours(worker["pid"], data_dir):
            os.kill(worker["pid"], signal.SIGKILL)
            killed_at = time.time()
            log(f"kill -9 {worker['pid']} (run {worker['run_id']}, drain {worker['worker_id']})")
            return {"killed_at": killed_at, **worker}
        time.sleep(0.5)
    return {"killed_at": None, "error": f"no serving drain of this deployment found within {wait_s:.0f} s"}


def _is_ours(pid: int, data_dir: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"NOTIFY_DATA_DIR={data_dir}".encode() + b"\0" in environ + b"\0"


def wait_settled(conn, ids: list[int], timeout_s: float) -> float:
    """Wait until none of `ids` is still queued (or the timeout); the seconds waited."""
    started = time.time()
    while time.time() - started < timeout_s:
        left = conn.execute(
            "SELECT count(*) FROM notifications WHERE id = ANY(%s) AND status = 'queued'", (ids,)
        ).fetchone()[0]
        if left == 0:
            break
        time.sleep(2)
    return time.time() - started


def pending_in(rows: list[tuple[int, float, float | None]], start: float, end: float) -> set[int]:
    """Ids waiting at some moment in [start, end]: committed before its end, received after its start."""
    return {
        i for i, committed, received in rows if committed < end and (received is None or received > start)
    }


def caught_up_at(
    rows: list[tuple[int, float, float | None]], after: float, threshold_s: float, stable_s: float
) -> float | None:
    """The first commit time after `after` from which every message committed in the next
    `stable_s` seconds was received within `threshold_s`."""
    later = sorted((c, r) for _, c, r in rows if c >= after)
    bad = [c for c, r in later if r is None or r - c > threshold_s]
    for committed, _ in later:
        if not any(committed <= b <= committed + stable_s for b in bad):
            return committed
    return None


def run_phase(
    dep: Deployment, emulator: Emulator, dagster: Dagster, phase: Phase, args: argparse.Namespace
) -> dict[str, Any]:
    log(f"phase {phase.name}: {phase.rate_per_s:g}/s for {phase.seconds:.0f} s")
    stop = threading.Event()
    producer = Producer(dep.queue_url, phase, stop)
    kill: dict[str, Any] = {"killed_at": None, "skipped": "--no-kill"}
    started = time.time()
    with connect(dep.queue_url, "bench:dagster-latency-watch") as conn:
        dup_before = emulator.stats()["duplicates"]
        producer.start()
        if not args.no_kill:
            time.sleep(max(0.0, started + phase.seconds * args.kill_at - time.time()))
            active = [
                r
                for r in dagster.runs()
                if r["jobName"] == SEND_JOB and r["status"] in ("STARTED", "STARTING")
            ]
            kill = kill_serving_run(conn, dep.data_dir)
            kill["send_runs_active_at_kill"] = len(active)
        while producer.is_alive():
            producer.join(1.0)
            if not dep.alive():
                stop.set()
                raise RuntimeError(f"the deployment exited during phase {phase.name}:\n{dep.log_tail()}")
        ids = [i for i, _ in producer.rows]
        backlog_s = len(ids) / max(1.0, args.emulator_limit)
        settled_s = wait_settled(conn, ids, args.settle_s + backlog_s)
        ended = time.time()
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM notifications WHERE id = ANY(%s) GROUP BY status", (ids,)
            ).fetchall()
        )
        sent_in_db = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM notifications WHERE id = ANY(%s) AND status IN ('sent', 'delivered', 'read')",
                (ids,),
            ).fetchall()
        }
        errors = dict(
            conn.execute(
                "SELECT coalesce(last_error_code, '-'), count(*) FROM notifications "
                "WHERE id = ANY(%s) AND status NOT IN ('sent', 'delivered', 'read') GROUP BY 1",
                (ids,),
            ).fetchall()
        )
        drains = drains_between(conn, started, ended)
    mine = {i: c for i, c in producer.rows}
    receipts: dict[int, list[float]] = {}
    for message in emulator.messages():
        key = message.get("biz_opaque_callback_data")
        if key and key.isdigit() and int(key) in mine:
            receipts.setdefault(int(key), []).append(message["received_at"])
    rows = [(i, c, min(receipts[i]) if i in receipts else None) for i, c in producer.rows]
    lost = [i for i, _, r in rows if r is None and i not in sent_in_db]
    latency = {i: r - c for i, c, r in rows if r is not None}

    result: dict[str, Any] = {
        "phase": phase.name,
        "started_at": started,
        "rate_per_s": phase.rate_per_s,
        "seconds": phase.seconds,
        "enqueued": len(ids),
        "enqueue_errors": len(producer.errors),
        "enqueue_rate_per_s": round((len(ids) - 1) / (producer.ended_at - producer.started_at), 2)
        if len(ids) > 1
        else None,
        "received": len(receipts),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "duplicates": sum(len(v) - 1 for v in receipts.values()),
        "emulator_duplicates_delta": emulator.stats()["duplicates"] - dup_before,
        "statuses": statuses,
        "not_sent_by_error": errors,
        "settle_s": round(settled_s, 1),
        "all": summary(list(latency.values())),
        "kill": {k: v for k, v in kill.items() if k not in ("host",)},
    }
    killed_at = kill.get("killed_at")
    if killed_at:
        after = sorted(r for _, _, r in rows if r is not None and r > killed_at)
        first = after[0] if after else None
        window_end = (first if first is not None else ended) + args.recovery_grace
        inside = pending_in(rows, killed_at, window_end)
        caught = caught_up_at(rows, killed_at, args.slow_threshold, args.stable_s)
        wide_end = (caught if caught is not None else ended) + args.recovery_grace
        wide = pending_in(rows, killed_at, wide_end)
        result["recovery"] = {
            "first_receipt_after_kill_s": round(first - killed_at, 2) if first else None,
            "window_s": round(window_end - killed_at, 2),
            "latency_inside": summary([latency[i] for i in inside if i in latency]),
            "excluded_messages": len(inside),
        }
        result["excluding_recovery"] = summary([v for i, v in latency.items() if i not in inside])
        result["catch_up"] = {
            "window_s": round(wide_end - killed_at, 2),
            "caught_up": caught is not None,
            "latency_inside": summary([latency[i] for i in wide if i in latency]),
            "excluding": summary([v for i, v in latency.items() if i not in wide]),
        }
    else:
        result["excluding_recovery"] = result["all"]

    runs = [r for r in dagster.runs() if started - 1 <= (r.get("creationTime") or 0) <= ended]
    by_status: dict[str, int] = {}
    for run in runs:
        key = f"{run['jobName']}:{run['status']}"
        by_status[key] = by_status.get(key, 0) + 1
    result["dagster_runs_launched"] = len(runs)
    result["send_runs_launched"] = sum(1 for r in runs if r["jobName"] == SEND_JOB)
    result["runs_by_job_status"] = by_status
    if killed_at:
        run_id = kill.get("run_id")
        status = next((r["status"] for r in dagster.runs() if r["runId"] == run_id), None)
        result["kill"]["killed_run_status_at_end"] = status
    result["drains"] = [
        {
            "worker": d["worker_id"],
            "pid": d["pid"],
            "from_s": round(d["started_at"] - started, 1),
            "to_s": round(d["ended_at"] - started, 1) if d["ended_at"] else None,
            "stopped_by": d["stopped_by"],
            "lifetime_s": round(d["lifetime_s"]) if d["lifetime_s"] is not None else None,
        }
        for d in drains
    ]
    if producer.errors:
        result["enqueue_error_sample"] = producer.errors[:3]
    return result


# -- report --------------------------------------------------------------------------------------


def _fmt(figures: dict[str, Any]) -> str:
    if not figures or figures.get("n", 0) == 0:
        return "n=0"
    return (
        f"n={figures['n']:>6}  p50 {figures['p50_ms']:>8.1f}  p90 {figures['p90_ms']:>8.1f}  "
        f"p99 {figures['p99_ms']:>8.1f}  max {figures['max_ms']:>8.1f} ms"
    )


def print_table(report: dict[str, Any]) -> None:
    print()
    print(
        f"Dagster deployment latency (enqueue commit -> emulator receipt), lifetime env "
        f"{LIFETIME_ENV}={report['lifetime_minutes_requested']}, emulator limit {report['emulator_limit']}/s"
    )
    print(f"lifetime in force (send_workers): {report['lifetime_in_force_s']} s")
    for phase in report["phases"]:
        print()
        print(f"== {phase['phase']}: {phase['rate_per_s']:g}/s for {phase['seconds']:.0f} s ==")
        print(
            f"  enqueued {phase['enqueued']} (at {phase['enqueue_rate_per_s']}/s, "
            f"{phase['enqueue_errors']} errors)   received {phase['received']}   lost {phase['lost']}   "
            f"duplicates {phase['duplicates']} (emulator count +{phase['emulator_duplicates_delta']})"
        )
        print(f"  statuses {phase['statuses']}   not sent by error {phase['not_sent_by_error']}")
        print(f"  all messages           {_fmt(phase['all'])}")
        print(f"  excl. recovery window  {_fmt(phase['excluding_recovery'])}")
        kill = phase["kill"]
        if kill.get("killed_at"):
            rec = phase["recovery"]
            print(
                f"  kill -9 pid {kill['pid']} (run {str(kill['run_id'])[:8]}) at "
                f"{kill['killed_at'] - phase['started_at']:.1f} s; send runs active then: "
                f"{kill['send_runs_active_at_kill']}; that run's status at the end: "
                f"{kill.get('killed_run_status_at_end')}"
            )
            print(
                f"  recovery window {rec['window_s']} s (first receipt after kill "
                f"{rec['first_receipt_after_kill_s']} s + grace); inside: {_fmt(rec['latency_inside'])}"
            )
            cu = phase["catch_up"]
            print(
                f"  until caught up {cu['window_s']} s (caught up: {cu['caught_up']}); inside: "
                f"{_fmt(cu['latency_inside'])}"
            )
            print(f"  excl. catch-up window  {_fmt(cu['excluding'])}")
        else:
            print(f"  no kill: {kill.get('error') or kill.get('skipped')}")
        print(
            f"  Dagster runs launched {phase['dagster_runs_launched']} (send runs "
            f"{phase['send_runs_launched']}): {phase['runs_by_job_status']}"
        )
        for d in phase["drains"]:
            print(
                f"    drain {d['worker']} pid {d['pid']}: {d['from_s']} s -> {d['to_s']} s, "
                f"{d['stopped_by']}, lifetime {d['lifetime_s']} s"
            )
    print()


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Enqueue-commit to emulator-receipt latency through `notify-pipeline dev` "
        "(Dagster webserver, daemon, sensor and send runs), with a kill -9 of the send run midway.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="Length of each phase.")
    parser.add_argument("--trickle-minutes", type=float, help="Override --minutes for the trickle.")
    parser.add_argument("--steady-minutes", type=float, help="Override --minutes for the steady phase.")
    parser.add_argument("--phases", default="trickle,steady", help="Comma-separated: trickle, steady.")
    parser.add_argument(
        "--trickle-interval", type=float, default=2.0, help="Seconds between trickle messages."
    )
    parser.add_argument("--rate", type=float, default=60.0, help="Steady phase: messages per second.")
    parser.add_argument("--emulator-limit", type=float, default=80.0, help="Emulator throughput limit per s.")
    parser.add_argument(
        "--lifetime-minutes",
        type=float,
        default=2.0,
        help=f"Send-run lifetime, passed as {LIFETIME_ENV}; 0 leaves the product default.",
    )
    parser.add_argument("--kill-at", type=float, default=0.5, help="When to kill, as a share of the phase.")
    parser.add_argument("--no-kill", action="store_true", help="Do not kill the send run.")
    parser.add_argument(
        "--recovery-grace", type=float, default=3.0, help="Seconds added to the recovery window."
    )
    parser.add_argument(
        "--slow-threshold", type=float, default=1.0, help="Catch-up: latency counted as normal."
    )
    parser.add_argument(
        "--stable-s", type=float, default=10.0, help="Catch-up: seconds of normal latency needed."
    )
    parser.add_argument("--settle-s", type=float, default=90.0, help="Wait for stragglers after a phase.")
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="Seconds to wait for a serving send run."
    )
    parser.add_argument(
        "--warmup-s", type=float, default=10.0, help="Pause after the first serving send run."
    )
    parser.add_argument("--pause-s", type=float, default=5.0, help="Pause between phases.")
    parser.add_argument("--no-seed", action="store_true", help="Start dev with --no-seed (templates only).")
    parser.add_argument("--keep-data", action="store_true", help="Keep the temporary data folder.")
    parser.add_argument("--json-out", type=Path, help="Also write the JSON report here.")
    return parser.parse_args(argv)


def wait_ready(dep: Deployment, emulator: Emulator, dagster: Dagster, timeout_s: float) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    steps = {"emulator": emulator.healthy, "webserver": dagster.ready}
    for name, check in steps.items():
        while not check():
            if not dep.alive():
                raise RuntimeError(f"the deployment exited while starting:\n{dep.log_tail()}")
            if time.time() > deadline:
                raise RuntimeError(f"{name} not ready within {timeout_s:.0f} s:\n{dep.log_tail()}")
            time.sleep(1)
        log(f"{name} ready")
    with connect(dep.queue_url, "bench:dagster-latency-watch") as conn:
        while True:
            with contextlib.suppress(Exception):  # the table appears once dev has migrated
                worker = serving_worker(conn)
                if worker:
                    log(
                        f"send run {worker['run_id']} is serving (drain pid {worker['pid']}, "
                        f"lifetime {worker['lifetime_s']:.0f} s)"
                    )
                    return worker
            if not dep.alive():
                raise RuntimeError(f"the deployment exited while starting:\n{dep.log_tail()}")
            if time.time() > deadline:
                raise RuntimeError(
                    f"no send run registered a serving drain within {timeout_s:.0f} s (sensor not launching, "
                    f"or its runs failing: see the Dagster UI on {dep.web_url}):\n{dep.log_tail()}"
                )
            time.sleep(1)


def load_templates(url: str) -> None:
    from notify_pipeline.demo import load_template_catalog
    from notify_pipeline.engine.templates_store import upsert_templates

    with connect(url, "bench:dagster-latency") as conn:
        upsert_templates(conn, load_template_catalog())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    names = [p.strip() for p in args.phases.split(",") if p.strip()]
    phases = []
    for index, name in enumerate(names):
        base = 30_000_000 + index * 5_000_000  # +25073.../+25074...: not the demo's contacts
        if name == "trickle":
            minutes = args.trickle_minutes or args.minutes
            phases.append(Phase(name, 1 / args.trickle_interval, minutes * 60, base))
        elif name == "steady":
            minutes = args.steady_minutes or args.minutes
            phases.append(Phase(name, args.rate, minutes * 60, base))
        else:
            raise SystemExit(f"unknown phase {name!r}; known: trickle, steady")

    data_dir = Path(tempfile.mkdtemp(prefix="notify-dagster-latency-"))
    data_dir.chmod(0o755)  # the embedded server runs as its own user when we are root
    dep = Deployment(data_dir, args.lifetime_minutes or None, seed=not args.no_seed)
    report: dict[str, Any] = {
        "benchmark": "dagster_latency",
        "lifetime_minutes_requested": args.lifetime_minutes or None,
        "emulator_limit": args.emulator_limit,
        "phases": [],
    }
    exit_code = 0
    try:
        dep.start()
        emulator, dagster = Emulator(dep.emulator_url), Dagster(dep.web_url)
        started = time.time()
        first = wait_ready(dep, emulator, dagster, args.startup_timeout)
        report["startup_s"] = round(time.time() - started, 1)
        report["lifetime_in_force_s"] = round(first["lifetime_s"]) if first["lifetime_s"] else None
        if args.no_seed:
            load_templates(dep.queue_url)
        emulator.configure(limits_enabled=True, throughput_per_s=args.emulator_limit)
        time.sleep(args.warmup_s)
        for index, phase in enumerate(phases):
            if index:
                time.sleep(args.pause_s)
            result = run_phase(dep, emulator, dagster, phase, args)
            report["phases"].append(result)
            log(f"phase {phase.name}: {_fmt(result['excluding_recovery'])} (excl. recovery)")
    except Stop as stop:
        log(f"stopped by {stop}; cleaning up")
        report["interrupted"] = str(stop)
        exit_code = 130
    except Exception as exc:
        log(f"failed: {exc}")
        report["error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            dep.stop()
        finally:
            if args.keep_data:
                log(f"data kept in {data_dir}")
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
    report.setdefault("lifetime_in_force_s", None)
    if report["phases"]:
        print_table(report)
    line = json.dumps(report, default=str)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

"""`notify-pipeline dev`: the product on one machine, for development and demos.

Runs the Dagster webserver and daemon as two child processes (as production does, rather than
the superseded `dagster dev`), both on the instance in dagster.yaml with Postgres storage. Unless
WHATSAPP_API_BASE_URL names a real endpoint, it also runs the Cloud API emulator and points the
code location at it, and seeds the demo data once, so the sensor launches send runs at once.
Every child runs with umask 077, so what Dagster writes (compute logs, run storage) is 0600/0700.
A child that dies is restarted and the rest keep running (notify_pipeline/dev_supervisor.py); a
dead child's process group (the daemon's holds its code server and run workers) goes with it.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from notify_pipeline import settings
from notify_pipeline.db import urls
from notify_pipeline.db.location import dagster_storage_url
from notify_pipeline.db.migrate import upgrade
from notify_pipeline.dev_runs import stop_with_runs
from notify_pipeline.dev_supervisor import Supervisor
from notify_pipeline.private_files import CHILD_UMASK, make_dirs, own_dir


def dagster_home() -> Path:
    """DAGSTER_HOME, or a folder under the data dir holding a link to the project's dagster.yaml."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured)
    # The data dir is only created private: as root, the embedded PostgreSQL's system user must be
    # able to traverse it, and that server widens it to o+x itself.
    make_dirs(settings.data_dir())
    home = own_dir(settings.data_dir() / "dagster_home")
    link = home / "dagster.yaml"
    source = settings.project_root() / "dagster.yaml"
    if source.exists() and not link.exists():
        link.symlink_to(source)
    return home


def dev_environment(queue_url: str, emulator_url: str | None) -> dict[str, str]:
    """The children's environment. With the emulator, a local app secret and verify token are made
    up when none is set: the emulator signs its webhooks and `serve` checks them, as with Meta."""
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": queue_url,
        "DAGSTER_POSTGRES_URL": dagster_storage_url(queue_url),
        "DAGSTER_HOME": str(dagster_home()),
    }
    if emulator_url:
        from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID, DEV_TOKEN

        env.update(
            {
                "WHATSAPP_API_BASE_URL": emulator_url,
                "WHATSAPP_PHONE_NUMBER_ID": env.get("WHATSAPP_PHONE_NUMBER_ID") or DEFAULT_PHONE_NUMBER_ID,
                "WHATSAPP_ACCESS_TOKEN": env.get("WHATSAPP_ACCESS_TOKEN") or DEV_TOKEN,
                "WHATSAPP_APP_SECRET": env.get("WHATSAPP_APP_SECRET") or secrets.token_hex(16),
                "WHATSAPP_WEBHOOK_VERIFY_TOKEN": env.get("WHATSAPP_WEBHOOK_VERIFY_TOKEN")
                or secrets.token_hex(8),
            }
        )
    return env


def seed_once(queue_url: str) -> str | None:
    """Seed the demo into an empty queue database (a second `make dev` keeps what is there)."""
    from notify_pipeline.db.connect import connect
    from notify_pipeline.demo.seed import seed_demo

    with connect(queue_url, actor="dev:seed-demo", autocommit=True) as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM whatsapp_templates)").fetchone()[0]:
            return None
        report = seed_demo(conn)
    return f"demo seeded: {report.notifications} notifications to {report.contacts} contacts"


def _code_location_args() -> list[str]:
    workspace = settings.project_root() / "workspace.yaml"
    if workspace.exists():
        return ["-w", str(workspace)]
    return ["-m", "notify_pipeline.definitions"]


def start_child(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """One child in its own session, with umask 077: Dagster's compute logs and run storage have no
    mode setting, so the umask is what keeps them (and what run workers write) private."""
    return subprocess.Popen(
        command, env=env, cwd=settings.project_root(), start_new_session=True, umask=CHILD_UMASK
    )


def run_dev(
    queue_url: str, *, host: str, port: int, emulator_port: int | None, serve_port: int, seed: bool
) -> int:
    result = upgrade(queue_url)
    click.echo(f"queue database {urls.mask(queue_url)} at migration {result.after}")
    emulator_url = f"http://127.0.0.1:{emulator_port}" if emulator_port else None
    env = dev_environment(queue_url, emulator_url)
    if seed:
        seeded = seed_once(queue_url)
        if seeded:
            click.echo(seeded)
    bin_dir = Path(sys.executable).parent
    location = _code_location_args()
    commands = {}
    webhook_url = f"http://127.0.0.1:{serve_port}/webhooks/whatsapp"
    if env.get("WHATSAPP_APP_SECRET"):
        # /metrics is on a port of its own (NOTIFY_METRICS_PORT, default 8091), never the webhooks'.
        metrics_port = settings.metrics_port()
        if metrics_port == serve_port:
            metrics_port = serve_port + 1 if serve_port < 65535 else serve_port - 1
        serve = [str(bin_dir / "notify-pipeline"), "serve", "--port", str(serve_port)]
        commands["serve"] = [*serve, "--metrics-port", str(metrics_port)]
        click.echo(f"webhook service on {webhook_url}")
        if metrics_port:
            click.echo(f"Prometheus metrics on http://127.0.0.1:{metrics_port}/metrics")
    if emulator_port:
        # Secrets reach the emulator through the environment, not the command line (ps shows that).
        commands["emulator"] = [str(bin_dir / "notify-pipeline"), "emulator", "--port", str(emulator_port)]
        if "serve" in commands:
            commands["emulator"] += ["--webhook-url", webhook_url]
        click.echo(f"Cloud API emulator on {emulator_url}")
    commands["daemon"] = [str(bin_dir / "dagster-daemon"), "run", *location]
    commands["webserver"] = [str(bin_dir / "dagster-webserver"), *location, "-h", host, "-p", str(port)]
    supervisor = Supervisor(
        {name: functools.partial(start_child, cmd, env) for name, cmd in commands.items()},
        say=lambda line: click.echo(line, err=True),
    )
    stopping = False
    started = time.time()

    def _stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        supervisor.start()
        click.echo(f"Dagster UI on http://{host}:{port} (Ctrl-C stops everything)")
        # A child that dies is restarted (its process group stopped first); the rest keep running.
        supervisor.run(until=lambda: stopping)
    finally:
        if stopping:
            stop_with_runs(env, supervisor.stop, started, say=lambda line: click.echo(line, err=True))
        else:
            supervisor.stop()
    return 0

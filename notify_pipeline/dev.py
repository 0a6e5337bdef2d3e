"""`notify-pipeline dev`: the product on one machine, for development and demos.

Runs the Dagster webserver and daemon as two child processes (as production does, rather than
the superseded `dagster dev`), both on the instance in dagster.yaml with Postgres storage. Unless
WHATSAPP_API_BASE_URL names a real endpoint, it also runs the Cloud API emulator and points the
code location at it, and seeds the demo data once, so the sensor launches send runs at once.
"""

from __future__ import annotations

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


def dagster_home() -> Path:
    """DAGSTER_HOME, or a folder under the data dir holding a link to the project's dagster.yaml."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured)
    home = settings.data_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
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
        commands["serve"] = [str(bin_dir / "notify-pipeline"), "serve", "--port", str(serve_port)]
        click.echo(f"webhook service on {webhook_url}")
    if emulator_port:
        # Secrets reach the emulator through the environment, not the command line (ps shows that).
        commands["emulator"] = [str(bin_dir / "notify-pipeline"), "emulator", "--port", str(emulator_port)]
        if "serve" in commands:
            commands["emulator"] += ["--webhook-url", webhook_url]
        click.echo(f"Cloud API emulator on {emulator_url}")
    commands["daemon"] = [str(bin_dir / "dagster-daemon"), "run", *location]
    commands["webserver"] = [str(bin_dir / "dagster-webserver"), *location, "-h", host, "-p", str(port)]
    children = {
        name: subprocess.Popen(cmd, env=env, cwd=settings.project_root(), start_new_session=True)
        for name, cmd in commands.items()
    }
    click.echo(f"Dagster UI on http://{host}:{port} (Ctrl-C stops everything)")

    stopping = False

    def _stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    click.echo(f"{name} exited with code {child.returncode}; stopping", err=True)
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
    return exit_code

"""`notify-pipeline dev`: the whole product on one machine, for development."""

from __future__ import annotations

import os
import sys

import click

from notify_pipeline.cli.common import PORT, as_operator_error, queue_url


@click.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the Dagster UI listens on.")
@click.option("--port", default=3000, show_default=True, type=PORT, help="Port of the Dagster UI.")
@click.option(
    "--emulator-port",
    default=8089,
    show_default=True,
    type=PORT,
    help="Port of the Cloud API emulator (started unless WHATSAPP_API_BASE_URL is set).",
)
@click.option(
    "--serve-port",
    default=8090,
    show_default=True,
    type=PORT,
    help="Port of `notify-pipeline serve` (Meta's webhooks; the emulator posts its receipts there).",
)
@click.option("--no-seed", is_flag=True, help="Do not seed the demo into an empty database.")
def dev(host: str, port: int, emulator_port: int, serve_port: int, no_seed: bool) -> None:
    """Migrate, start the emulator and the webhook service, seed the demo, run the Dagster
    webserver and daemon."""
    from notify_pipeline.db.migrate import MigrationError
    from notify_pipeline.dev import run_dev

    use_emulator = not os.environ.get("WHATSAPP_API_BASE_URL")
    with as_operator_error(MigrationError):
        sys.exit(
            run_dev(
                queue_url(),
                host=host,
                port=port,
                emulator_port=emulator_port if use_emulator else None,
                serve_port=serve_port,
                seed=not no_seed and use_emulator,
            )
        )

"""The `notify-pipeline` command. Each subcommand is a thin shell over a plain module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from notify_pipeline.cli_types import PORT, Number, OperatorError
from notify_pipeline.db import urls

__all__ = ["OperatorError", "main"]


def _queue_url() -> str:
    from notify_pipeline.db.embedded import EmbeddedPostgresError
    from notify_pipeline.db.location import queue_database_url

    try:
        return queue_database_url()
    except (EmbeddedPostgresError, urls.DatabaseUrlError) as exc:
        raise OperatorError(str(exc)) from exc
    except Exception as exc:  # psycopg.OperationalError while creating the embedded database
        raise OperatorError(f"cannot reach the queue database: {str(exc).strip().splitlines()[0]}") from exc


class _Main(click.Group):
    """The top command: the environment is checked first (one line per bad value), and what an
    operator can fix (a database that is down, a bad setting) ends as one line, never a traceback."""

    def invoke(self, ctx: click.Context):
        import psycopg

        from notify_pipeline import settings

        try:
            words = {*getattr(ctx, "_protected_args", ()), *ctx.args}
            if not ctx.resilient_parsing and not {"-h", "--help"} & words:
                settings.check_environment()
            return super().invoke(ctx)
        except settings.SettingsError as exc:
            raise OperatorError(str(exc)) from None
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OperatorError(
                f"cannot reach the queue database: {first} (check NOTIFY_DATABASE_URL, or "
                "`notify-pipeline db url` for the embedded one)"
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="notify-pipeline")
def main() -> None:
    """WhatsApp notifications on PostgreSQL, run by Dagster.

    The queue database is NOTIFY_DATABASE_URL, or an embedded PostgreSQL under .notify_data/
    when that is unset.
    """


@main.group()
def db() -> None:
    """The queue database: migrations and location."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations; a second run changes nothing."""
    from notify_pipeline.db.migrate import MigrationError, upgrade

    url = _queue_url()
    try:
        result = upgrade(url)
    except MigrationError as exc:
        raise OperatorError(str(exc)) from exc
    if result.changed:
        click.echo(
            f"{urls.mask(url)}: migrated from {result.before or 'an empty database'} to {result.after}"
        )
    else:
        click.echo(f"{urls.mask(url)}: already at {result.after}, nothing to do")


@db.command("url")
@click.option("--show-password", is_flag=True, help="Print the password too (for psql or a script).")
def db_url(show_password: bool) -> None:
    """Print the queue database URL in use (starting the embedded server if that is the one); the
    password (after the user name or as ?password=) is masked unless --show-password."""
    url = _queue_url()
    click.echo(url if show_password else urls.mask(url))


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server, if it runs."""
    from notify_pipeline.db.location import embedded_server

    stopped = embedded_server().stop()
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@main.command("dev")
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
    try:
        sys.exit(
            run_dev(
                _queue_url(),
                host=host,
                port=port,
                emulator_port=emulator_port if use_emulator else None,
                serve_port=serve_port,
                seed=not no_seed and use_emulator,
            )
        )
    except MigrationError as exc:
        raise OperatorError(str(exc)) from exc


@main.command("emulator")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it loopback)."
)
@click.option("--port", default=8089, show_default=True, type=PORT, help="Port to listen on.")
@click.option(
    "--token",
    envvar="WHATSAPP_ACCESS_TOKEN",
    default="dev-token",
    show_envvar=True,
    help="Bearer token the emulator accepts. Default: $WHATSAPP_ACCESS_TOKEN, else the fixed dev token 'dev-token'.",
)
@click.option(
    "--templates",
    "templates",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Template catalog (JSON, Meta's message_templates shape). Default: the demo catalog.",
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=Number(float, 0, 60_000),
    help="Added to every send answer.",
)
@click.option(
    "--throughput-per-s",
    default=80.0,
    show_default=True,
    type=Number(float, 0, 100_000, lo_open=True),
    help="Per phone number id.",
)
@click.option("--no-limits", is_flag=True, help="Switch the throughput and pair limits off (benchmarks).")
@click.option("--webhook-url", help="Post signed status webhooks (sent, delivered, read, failed) here.")
@click.option(
    "--app-secret",
    envvar="WHATSAPP_APP_SECRET",
    show_envvar=True,
    help="Signs the webhooks (X-Hub-Signature-256). Default: $WHATSAPP_APP_SECRET.",
)
def emulator(
    host: str,
    port: int,
    token: str,
    templates: Path | None,
    latency_ms: float,
    throughput_per_s: float,
    no_limits: bool,
    webhook_url: str | None,
    app_secret: str | None,
) -> None:
    """Run the local WhatsApp Cloud API emulator (send, template list, control API under /_emulator/)."""
    from notify_pipeline.emulator import serve

    if webhook_url and not app_secret:
        raise OperatorError(
            "--webhook-url needs --app-secret or WHATSAPP_APP_SECRET: Meta signs every webhook"
        )
    try:
        serve(
            host=host,
            port=port,
            templates=templates,
            token=token,
            app_secret=app_secret or None,
            latency_ms=latency_ms,
            throughput_per_s=throughput_per_s,
            limits_enabled=not no_limits,
            webhook_url=webhook_url,
        )
    except ValueError as exc:  # a bad setting or template catalog
        raise OperatorError(str(exc)) from exc


def _register_commands() -> None:
    """The other command modules register here (imported late: they import OperatorError from us)."""
    from notify_pipeline.cli_admin import COMMANDS as ADMIN_COMMANDS
    from notify_pipeline.cli_alerts import alerts
    from notify_pipeline.cli_bench import bench
    from notify_pipeline.cli_diagnostics import diagnose
    from notify_pipeline.cli_queue import COMMANDS as QUEUE_COMMANDS
    from notify_pipeline.cli_serve import serve_command

    for command in [*QUEUE_COMMANDS, *ADMIN_COMMANDS, diagnose, bench, serve_command, alerts]:
        main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()

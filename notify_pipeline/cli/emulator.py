"""`notify-pipeline emulator`: the local WhatsApp Cloud API emulator, in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from notify_pipeline.cli.common import PORT, Number, OperatorError, as_operator_error


@click.command("emulator")
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
    with as_operator_error(ValueError):  # a bad setting or template catalog
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

"""`notify-pipeline serve`: the web service Meta's webhooks call (and, later, metrics)."""

from __future__ import annotations

import os

import click

from notify_pipeline import settings
from notify_pipeline.cli_types import PORT


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (NOTIFY_SERVE_HOST; default 127.0.0.1).")
@click.option("--port", type=PORT, default=None, help="Port (NOTIFY_SERVE_PORT; default 8090).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Processes.")
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Development only: accept webhooks without WHATSAPP_APP_SECRET (anyone could forge them).",
)
def serve_command(host, port, workers, allow_unsigned) -> None:
    """Receive Meta's webhooks: statuses, inbound messages, user preferences, template updates.

    Run it as its own process behind TLS (Meta calls https only); any number of replicas may run
    against one database. GET /webhooks/whatsapp answers Meta's subscription handshake with
    WHATSAPP_WEBHOOK_VERIFY_TOKEN; POST verifies X-Hub-Signature-256 with WHATSAPP_APP_SECRET.
    """
    import uvicorn

    from notify_pipeline.cli import OperatorError, _queue_url
    from notify_pipeline.service.config import ServiceConfig, ServiceConfigError

    try:
        host = host or settings.serve_host()
        port = port if port is not None else settings.serve_port()
        config = ServiceConfig.from_env(_queue_url(), allow_unsigned=allow_unsigned)
    except (ServiceConfigError, ValueError) as exc:
        raise OperatorError(str(exc)) from exc
    if config.allow_unsigned:
        click.echo(
            "WARNING: webhook signatures are not checked (--allow-unsigned): development only", err=True
        )
    click.echo(f"notify-pipeline serve: webhooks on http://{host}:{port}/webhooks/whatsapp")
    common = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers > 1:
        # Each worker process builds its app from the environment (factory mode).
        os.environ["NOTIFY_DATABASE_URL"] = config.database_url
        if config.allow_unsigned:
            os.environ["NOTIFY_SERVE_ALLOW_UNSIGNED"] = "1"
        uvicorn.run(
            "notify_pipeline.service.app:create_app_from_env", factory=True, workers=workers, **common
        )
        return
    from notify_pipeline.service.app import create_app

    uvicorn.run(create_app(config), **common)

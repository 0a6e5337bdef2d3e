"""`notify-pipeline serve`: the web service Meta's webhooks call, and Prometheus' /metrics on a
listener of its own."""

from __future__ import annotations

import os

import click

from notify_pipeline import settings
from notify_pipeline.cli.common import PORT, as_operator_error, queue_url

# uvicorn imports the protocol by name in each worker process (a class would not cross `spawn`).
PROTOCOL = "notify_pipeline.service.protocol:LimitedHttpToolsProtocol"


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (NOTIFY_SERVE_HOST; default 127.0.0.1).")
@click.option("--port", type=PORT, default=None, help="Port (NOTIFY_SERVE_PORT; default 8090).")
@click.option(
    "--metrics-host",
    default=None,
    help="Address of the /metrics listener (NOTIFY_METRICS_HOST; default 127.0.0.1).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the /metrics listener, never the webhook port (NOTIFY_METRICS_PORT; default 8091; 0: none).",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Processes.")
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Development only: accept webhooks without WHATSAPP_APP_SECRET (anyone could forge them).",
)
def serve_command(host, port, metrics_host, metrics_port, workers, allow_unsigned) -> None:
    """Receive Meta's webhooks: statuses, inbound messages, user preferences, template updates.

    Run it as its own process behind TLS (Meta calls https only); any number of replicas may run
    against one database. GET /webhooks/whatsapp answers Meta's subscription handshake with
    WHATSAPP_WEBHOOK_VERIFY_TOKEN; POST verifies X-Hub-Signature-256 with WHATSAPP_APP_SECRET.
    What an unauthenticated caller can make it hold is bounded (NOTIFY_SERVE_* limits). GET
    /metrics is served on its own address (NOTIFY_METRICS_*), for Prometheus only.
    """
    import uvicorn

    from notify_pipeline.service import listener
    from notify_pipeline.service.config import ServiceConfig, ServiceConfigError
    from notify_pipeline.service.logs import log_config

    with as_operator_error(ServiceConfigError, ValueError):
        host = host or settings.serve_host()
        port = port if port is not None else settings.serve_port()
        config = ServiceConfig.from_env(
            queue_url(), allow_unsigned=allow_unsigned, metrics_host=metrics_host, metrics_port=metrics_port
        )
        if config.metrics_port == port:
            raise ServiceConfigError(
                f"the metrics port is the webhook port ({port}): /metrics must not face the internet. "
                "Set NOTIFY_METRICS_PORT (or --metrics-port) to another port, or 0 for none"
            )
        if config.metrics_port:
            # Checked here for a one-line error; each worker binds it again when it starts.
            listener.bind(config.metrics_host, config.metrics_port).close()
    if config.allow_unsigned:
        click.echo(
            "WARNING: webhook signatures are not checked (--allow-unsigned): development only", err=True
        )
    click.echo(f"notify-pipeline serve: webhooks on http://{host}:{port}/webhooks/whatsapp")
    if config.metrics_port:
        click.echo(
            f"notify-pipeline serve: metrics on http://{config.metrics_host}:{config.metrics_port}/metrics"
        )
    common = {
        "host": host,
        "port": port,
        "http": PROTOCOL,
        "log_level": "warning",
        "log_config": log_config(),
        "access_log": False,
    }
    if workers > 1:
        # Each worker process builds its app from the environment (factory mode).
        os.environ["NOTIFY_DATABASE_URL"] = config.database_url
        os.environ["NOTIFY_METRICS_HOST"] = config.metrics_host
        os.environ["NOTIFY_METRICS_PORT"] = str(config.metrics_port or 0)
        if config.allow_unsigned:
            os.environ["NOTIFY_SERVE_ALLOW_UNSIGNED"] = "1"
        uvicorn.run(
            "notify_pipeline.service.app:create_app_from_env", factory=True, workers=workers, **common
        )
        return
    from notify_pipeline.service.app import create_app

    uvicorn.run(create_app(config), **common)

"""The ASGI app of `notify-pipeline serve`: Meta's webhooks and a health check, and, while it runs,
the metrics listener on its own port (metrics.py, listener.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notify_pipeline.db.connect import connect_async
from notify_pipeline.receipts.ingest import Ingestor
from notify_pipeline.service import listener, metrics, webhooks
from notify_pipeline.service.config import ServiceConfig
from notify_pipeline.service.intake import Intake


def create_app(config: ServiceConfig) -> Starlette:
    async def connect():
        return await connect_async(config.database_url, actor="serve:webhooks", autocommit=True)

    ingestor = Ingestor(connect, writers=config.writers)
    intake = Intake(config.limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics_listener = None
        if config.metrics_port:
            sock = listener.bind(
                config.metrics_host, config.metrics_port, reuse_port=config.metrics_reuse_port
            )
            metrics_app = metrics.create_app(config.database_url, config.metrics_cache_s)
            metrics_listener = listener.Listener(metrics_app, sock, config.limits)
            await metrics_listener.start()
        await intake.start()
        await ingestor.start()
        try:
            yield
        finally:
            await ingestor.close()
            await intake.close()
            if metrics_listener is not None:
                await metrics_listener.stop()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "ok": True,
                "committed": ingestor.committed,
                "batches": ingestor.batches,
                # Bodies refused before their signature could be checked (intake.py), by reason.
                "refused": intake.refusals.counts,
            }
        )

    app = Starlette(
        routes=[*webhooks.routes(config, ingestor, intake), Route("/healthz", health)], lifespan=lifespan
    )
    # No redirect to a URL built from the Host header (GET /healthz/ is a 404, not a redirect).
    app.router.redirect_slashes = False
    return app


def create_app_from_env() -> Starlette:
    """For uvicorn's factory mode (several worker processes): settings from the environment, and
    each worker shares the metrics port with the others."""

    from notify_pipeline.db.location import queue_database_url

    return create_app(ServiceConfig.from_env(queue_database_url(), metrics_reuse_port=True))

"""The ASGI app of `notify-pipeline serve`: Meta's webhooks and a health check."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notify_pipeline.db.connect import connect_async
from notify_pipeline.receipts.ingest import Ingestor
from notify_pipeline.service import metrics, webhooks
from notify_pipeline.service.config import ServiceConfig


def create_app(config: ServiceConfig) -> Starlette:
    async def connect():
        return await connect_async(config.database_url, actor="serve:webhooks", autocommit=True)

    ingestor = Ingestor(connect, writers=config.writers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ingestor.start()
        try:
            yield
        finally:
            await ingestor.close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "committed": ingestor.committed, "batches": ingestor.batches})

    return Starlette(
        routes=[*webhooks.routes(config, ingestor), *metrics.routes(config), Route("/healthz", health)],
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """For uvicorn's factory mode (several worker processes): settings from the environment."""

    from notify_pipeline.db.location import queue_database_url

    return create_app(ServiceConfig.from_env(queue_database_url()))

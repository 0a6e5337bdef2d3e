"""`GET /metrics` on `notify-pipeline serve`: Prometheus' text exposition, read from the database.

Every number comes from the queue database (reporting/metrics.py), none from this process, so any
replica answers the same and Prometheus needs one target behind the load balancer. Each scrape
reads one snapshot on a short-lived connection in a worker thread (the event loop keeps serving
webhooks); a database that cannot answer makes the scrape fail with 503, which Prometheus records
as `up == 0` rather than as numbers that are not there.
"""

from __future__ import annotations

import logging

import psycopg
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from notify_pipeline.db.connect import connect
from notify_pipeline.reporting import metrics
from notify_pipeline.service.config import ServiceConfig

log = logging.getLogger(__name__)

# The classic text format, which every Prometheus reads: names stay legacy-safe (underscores only).
# A scrape that cannot connect within this many seconds fails (Prometheus' default timeout is 10 s).
CONNECT_TIMEOUT_S = 5


def render(database_url: str) -> bytes:
    with connect(
        database_url, actor="serve:metrics", autocommit=True, connect_timeout_s=CONNECT_TIMEOUT_S
    ) as conn:
        return metrics.render(conn)


def routes(config: ServiceConfig) -> list[Route]:
    async def scrape(request: Request) -> Response:
        try:
            body = await run_in_threadpool(render, config.database_url)
        except psycopg.Error as exc:
            log.warning("metrics scrape failed: %s", exc)
            return PlainTextResponse(
                f"the queue database did not answer: {type(exc).__name__}\n", status_code=503
            )
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return [Route("/metrics", scrape, methods=["GET"])]

"""`GET /metrics` of `notify-pipeline serve`: Prometheus' text exposition, read from the database.

Every number comes from the queue database (reporting/metrics.py), none from this process, so any
replica answers the same and Prometheus needs one target. The route lives on a listener of its
own (NOTIFY_METRICS_HOST:NOTIFY_METRICS_PORT, 127.0.0.1:8091 by default; listener.py), never on
the webhook port that faces the internet. A database read happens at most once per cache period
(NOTIFY_METRICS_CACHE_S) whatever the scrape rate: concurrent scrapes wait for the read in
flight, later ones get its answer until the period is over. The read runs on a short-lived
connection in a worker thread (the event loop keeps serving webhooks); a database that cannot
answer fails the scrape with 503, which Prometheus records as `up == 0` rather than as numbers
that are not there.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from notify_pipeline.db.connect import connect
from notify_pipeline.reporting import metrics

log = logging.getLogger(__name__)

# The classic text format, which every Prometheus reads: names stay legacy-safe (underscores only).
# A scrape that cannot connect within this many seconds fails (Prometheus' default timeout is 10 s).
CONNECT_TIMEOUT_S = 5


def render(database_url: str) -> bytes:
    with connect(
        database_url, actor="serve:metrics", autocommit=True, connect_timeout_s=CONNECT_TIMEOUT_S
    ) as conn:
        return metrics.render(conn)


class ScrapeCache:
    """The last answer (exposition or failure) and when it was read; one read at a time."""

    def __init__(self, database_url: str, cache_s: float) -> None:
        self.database_url, self.cache_s = database_url, cache_s
        self.lock = asyncio.Lock()
        self.answer: Response | None = None
        self.read_at = 0.0
        self.reads = 0

    async def get(self) -> Response:
        async with self.lock:
            if self.answer is None or time.monotonic() - self.read_at >= self.cache_s:
                self.answer = await self._read()
                self.read_at = time.monotonic()
                self.reads += 1
            return self.answer

    async def _read(self) -> Response:
        try:
            body = await run_in_threadpool(render, self.database_url)
        except psycopg.Error as exc:
            log.warning("metrics scrape failed: %s", exc)
            # A failure is kept for the period too: a scraper retrying in a loop against a
            # database that is away must not open a connection per try.
            return PlainTextResponse(
                f"the queue database did not answer: {type(exc).__name__}\n", status_code=503
            )
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)


def create_app(database_url: str, cache_s: float) -> Starlette:
    """The metrics listener's app: GET (and HEAD) /metrics, nothing else."""
    cache = ScrapeCache(database_url, cache_s)

    async def scrape(request: Request) -> Response:
        return await cache.get()

    app = Starlette(routes=[Route("/metrics", scrape, methods=["GET"])])
    # No redirect from /metrics/ to a URL built from the Host header: unknown paths are 404.
    app.router.redirect_slashes = False
    app.state.cache = cache
    return app

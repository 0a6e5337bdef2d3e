"""The send path's peer: PgQueuer with an aiohttp sender, the fastest bare Python PostgreSQL queue
found (issue #21). Needs the `bench` extra (`pip install -e '.[bench]'`).

A bare queue: no policy, audit or write-back. A job's payload is the very body the product
would POST for a notification (`biz_opaque_callback_data` included, so the emulator's ledger
counts it); the entrypoint POSTs it with one aiohttp session shared by all jobs and the job is
done when the sink answers 200. In flight: the connector's limit, so exactly that many requests
on the wire, as the drain's concurrency; the entrypoint's concurrency limit (enforced in SQL)
gives the queue twice that, see QUEUE_SLOTS_PER_REQUEST. PgQueuer keeps its tables in a database
of its own on the same server, created and dropped by the bench.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from typing import Any

import aiohttp
import psycopg

from notify_pipeline.bench.database import scratch_database
from notify_pipeline.db import urls
from notify_pipeline.whatsapp.client import ClientSettings

ENTRYPOINT = "send_message"
# Jobs per dequeue. At 64 in flight 32 was the fastest of 10 (PgQueuer's default), 32 and 64,
# at 0 and at 50 ms, if by less than the runs vary.
DEQUEUE_BATCH = 32
ENQUEUE_CHUNK = 5000
# PgQueuer counts a job against the entrypoint's limit until its status is written, which it
# batches (up to 0.1 s later): with the limit at the requests in flight, fewer than that were on
# the wire, and at 50 ms the peer made about 870 msg/s against about 1,050 with twice the slots.
QUEUE_SLOTS_PER_REQUEST = 2


class PeerSendError(RuntimeError):
    """The sink refused a message: PgQueuer logs the job as an exception."""


def describe() -> str:
    """The peer and its versions, for the result."""
    version = metadata.version
    return (
        f"PgQueuer {version('pgqueuer')} (asyncpg {version('asyncpg')}) + aiohttp {version('aiohttp')}, "
        "one session"
    )


@contextmanager
def peer_database(server_url: str) -> Iterator[str]:
    """A fresh database beside the bench's with PgQueuer's schema installed; dropped afterwards."""
    with scratch_database(
        server_url, f"notify_bench_peer_{os.getpid()}", lambda url: asyncio.run(_install(urls.libpq(url)))
    ) as url:
        yield urls.libpq(url)


async def _connect(url: str) -> tuple[Any, Any]:
    """PgQueuer's Queries over one asyncpg connection, and the connection.

    asyncpg, not psycopg: with PgQueuer 1.6's psycopg driver the same runs managed about 30 msg/s
    against 1,500 to 2,900 with asyncpg. Its NOTIFY watcher waits in notifies(timeout=1.0) on the
    one connection, and every dequeue and status write waits behind it.
    """
    import asyncpg
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(url)
    return Queries.from_asyncpg_connection(conn), conn


async def _install(url: str) -> None:
    queries, conn = await _connect(url)
    try:
        await queries.install()
    finally:
        await conn.close()


def enqueue(url: str, bodies: Sequence[bytes]) -> None:
    """Queue one job per message body, then vacuum and analyse the queue (as the product's
    fresh_queue does for its own), so each run starts from the same settled state."""

    async def go() -> None:
        queries, conn = await _connect(url)
        try:
            await queries.clear_queue()
            await queries.clear_queue_log()
            for at in range(0, len(bodies), ENQUEUE_CHUNK):
                chunk = list(bodies[at : at + ENQUEUE_CHUNK])
                await queries.enqueue([ENTRYPOINT] * len(chunk), chunk, [0] * len(chunk))
        finally:
            await conn.close()

    asyncio.run(go())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


@dataclass(frozen=True)
class PeerRun:
    """One run of the peer: what it sent, what failed, how long it took (connect to last job done)."""

    sent: int
    failed: int
    duration_s: float


def run(url: str, client: ClientSettings, in_flight: int) -> PeerRun:
    """Work the queue until it is empty, `in_flight` POSTs at a time, to the client's endpoint."""
    return asyncio.run(_run(url, client, in_flight))


async def _run(url: str, client: ClientSettings, in_flight: int) -> PeerRun:
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.types import QueueExecutionMode

    started = time.monotonic()
    target = f"{client.base_url.rstrip('/')}/{client.api_version}/{client.phone_number_id}/messages"
    sent = failed = 0
    queries, conn = await _connect(url)
    session = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"},
        connector=aiohttp.TCPConnector(limit=in_flight),
        timeout=aiohttp.ClientTimeout(sock_connect=client.connect_timeout_s, sock_read=client.read_timeout_s),
    )
    try:
        manager = QueueManager(queries)

        @manager.entrypoint(ENTRYPOINT, concurrency_limit=in_flight * QUEUE_SLOTS_PER_REQUEST)
        async def send(job: Job) -> None:
            nonlocal sent, failed
            async with session.post(target, data=job.payload) as response:
                await response.read()
                if response.status != 200:
                    failed += 1
                    raise PeerSendError(f"HTTP {response.status}")
            sent += 1

        await manager.run(
            dequeue_timeout=timedelta(seconds=1),
            batch_size=DEQUEUE_BATCH,
            mode=QueueExecutionMode.drain,
        )
    finally:
        await session.close()
        await conn.close()
    return PeerRun(sent, failed, time.monotonic() - started)

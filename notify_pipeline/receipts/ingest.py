"""Group commit for webhook updates: many requests, one transaction.

Each request hands its updates over and waits; a writer takes whatever has gathered (up to
`max_batch` updates, lingering `linger_s` for more), stores and applies it in one transaction and
answers every waiting request once that transaction has committed. A request whose batch could
not be committed (the database is away) gets DatabaseUnavailable, which the service answers with
503, so Meta delivers it again later. Several writers, each on its own connection, overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import psycopg

from notify_pipeline.receipts.apply import RETRY_WAITING, Ingested, ingest_async
from notify_pipeline.receipts.parse import Update

log = logging.getLogger(__name__)
DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class DatabaseUnavailable(RuntimeError):
    """The updates were not stored: the database could not be reached or failed the commit."""


Job = tuple[Sequence[Update], asyncio.Future]


class Ingestor:
    def __init__(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection]],
        *,
        writers: int = 2,
        max_batch: int = 2000,
        linger_s: float = 0.002,
        retry_waiting_s: float = 10.0,
    ) -> None:
        self.connect, self.writers, self.max_batch, self.linger_s = connect, writers, max_batch, linger_s
        self.retry_waiting_s = retry_waiting_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.committed = self.batches = 0

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._writer(i)) for i in range(self.writers)]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, updates: Sequence[Update]) -> Ingested:
        """Store and apply `updates`; returns once committed. Raises DatabaseUnavailable."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((updates, future))
        return await future

    async def _gather(self) -> list[Job]:
        jobs = [await self.queue.get()]
        size, deadline = len(jobs[0][0]), time.monotonic() + self.linger_s
        while size < self.max_batch:
            if self.queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, 0.0005))
                continue
            job = self.queue.get_nowait()
            jobs.append(job)
            size += len(job[0])
        return jobs

    async def _writer(self, index: int) -> None:
        conn: psycopg.AsyncConnection | None = None
        next_retry = time.monotonic() + self.retry_waiting_s * (1 + index)
        while True:
            jobs = await self._gather()
            try:
                for attempt in (1, 2):
                    fresh = conn is None or conn.closed
                    if fresh:
                        conn = await self.connect()
                    try:
                        async with conn.transaction():
                            result = await ingest_async(conn, [u for updates, _ in jobs for u in updates])
                            if index == 0 and time.monotonic() >= next_retry:
                                await conn.execute(RETRY_WAITING)
                                next_retry = time.monotonic() + self.retry_waiting_s
                        break
                    except DB_ERRORS:
                        conn = None
                        # A connection that died while idle (a database restart) fails its first
                        # use: try once more on a new one before answering 503.
                        if fresh or attempt == 2:
                            raise
            except DB_ERRORS as exc:
                log.warning("webhook batch not stored, answering 503: %s", str(exc).splitlines()[0])
                conn = None
                self._finish(jobs, DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else "database"))
                continue
            except Exception as exc:  # a bug: fail these requests (Meta retries), keep serving
                log.exception("webhook batch failed")
                self._finish(jobs, exc)
                continue
            self.batches += 1
            self.committed += sum(len(updates) for updates, _ in jobs)
            self._finish(jobs, None, result)

    @staticmethod
    def _finish(jobs: list[Job], error: BaseException | None, result: Ingested | None = None) -> None:
        for _, future in jobs:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

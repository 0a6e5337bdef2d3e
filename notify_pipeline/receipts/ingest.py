"""Group commit for webhook updates: many requests, one transaction.

Each request hands its updates over and waits; a writer takes whatever has gathered (up to
`max_batch` updates, lingering `linger_s` for more), stores and applies it in one transaction and
answers every waiting request once that transaction has committed. A request whose batch could
not be committed (the database is away) gets DatabaseUnavailable, which the service answers with
503, so Meta delivers it again later. Several writers, each on its own connection, overlap; one
more task retries statuses waiting for their message id (receipts/waiting.py).

One body must not fail its neighbours. Values PostgreSQL cannot store are cleaned or refused per
body before they get here (receipts/bounds.py); should one still reach the database (a data
error: SQLSTATE class 22, 23 or 54, text psycopg cannot encode, a payload nested too deep), the
batch is split in halves, each committed on its own, until the body at fault stands alone: it
gets UnstorableBody (400), the others are stored. A data error is never reported as the database
being away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence

import psycopg

from notify_pipeline.db.errors import DB_ERRORS, first_line
from notify_pipeline.receipts import waiting
from notify_pipeline.receipts.apply import Ingested, ingest_async
from notify_pipeline.receipts.parse import Update
from notify_pipeline.redact import scrub

log = logging.getLogger(__name__)
# Caused by what a body holds, not by the database's state (ProgramLimitExceeded, an index entry
# too large, is an OperationalError to psycopg: it is tested first). RecursionError: a payload
# nested deeper than json.dumps goes on a writer's stack.
DATA_ERRORS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeEncodeError,
    RecursionError,
)


class DatabaseUnavailable(RuntimeError):
    """The updates were not stored: the database could not be reached or failed the commit."""


class UnstorableBody(ValueError):
    """The database refused a value of this body; it was not stored, the bodies batched with it were."""


Job = tuple[Sequence[Update], asyncio.Future]
Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]


def _first_line(exc: BaseException) -> str:
    return scrub(first_line(exc))[:300]


def _refusal(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"the database refused a value of this body ({f'SQLSTATE {sqlstate}: ' if sqlstate else ''}{_first_line(exc)})"


class _Link:
    """One writer's connection: opened on first use, again after it died."""

    def __init__(self, connect: Connect) -> None:
        self.connect, self.conn = connect, None

    async def ingest(self, updates: list[Update]) -> Ingested:
        for attempt in (1, 2):
            fresh = self.conn is None or self.conn.closed
            if fresh:
                self.conn = await self.connect()
            try:
                async with self.conn.transaction():
                    return await ingest_async(self.conn, updates)
            except DATA_ERRORS:
                raise  # rolled back; the connection is fine
            except DB_ERRORS:
                self.conn = None
                # A connection that died while idle (a database restart) fails its first use:
                # try once more on a new one before answering 503.
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Ingestor:
    def __init__(
        self,
        connect: Connect,
        *,
        writers: int = 2,
        max_batch: int = 2000,
        linger_s: float = 0.002,
        retry_waiting_s: float = waiting.RETRY_EVERY_S,
    ) -> None:
        self.connect, self.writers, self.max_batch, self.linger_s = connect, writers, max_batch, linger_s
        self.retry_waiting_s = retry_waiting_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.committed = self.batches = self.refused_bodies = 0

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]
        self.tasks.append(asyncio.create_task(waiting.retry_forever(self.connect, self.retry_waiting_s)))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, updates: Sequence[Update]) -> Ingested:
        """Store and apply `updates`; returns once committed. Raises DatabaseUnavailable or
        UnstorableBody."""
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

    async def _writer(self) -> None:
        link = _Link(self.connect)
        while True:
            jobs = await self._gather()
            try:
                await self._store(link, jobs)
            except DB_ERRORS as exc:
                log.warning("webhook batch not stored, answering 503: %s", _first_line(exc))
                self._finish(jobs, DatabaseUnavailable(_first_line(exc) or "database"))
            except Exception as exc:  # a bug: fail these requests (Meta retries), keep serving
                # The traceback is scrubbed: an exception's text can carry a recipient's number.
                log.error("webhook batch failed:\n%s", scrub("".join(traceback.format_exception(exc))))
                self._finish(jobs, exc)

    async def _store(self, link: _Link, jobs: list[Job]) -> None:
        """Commit `jobs` together; on a data error, each half on its own, down to the body at fault."""
        updates = [u for updates, _ in jobs for u in updates]
        try:
            result = await link.ingest(updates)
        except DATA_ERRORS as exc:
            if len(jobs) > 1:
                half = len(jobs) // 2
                await self._store(link, jobs[:half])
                await self._store(link, jobs[half:])
                return
            self.refused_bodies += 1
            log.warning("a webhook body was not stored, answering 400: %s", _refusal(exc))
            self._finish(jobs, UnstorableBody(_refusal(exc)))
            return
        self.batches += 1
        self.committed += len(updates)
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

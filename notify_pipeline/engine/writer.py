"""The drain's result writer: outcomes in batches, kept through a database fault.

On a failed write the drain is told to stop sending at once; the writer keeps every outcome it
holds and retries on a new connection with growing waits for `db_retry_s`. If the database is still
away, the outcomes go to the local journal (fsynced) for the next drain to replay; so an accepted
message is recorded as sent eventually and never sent again meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import psycopg

from notify_pipeline.engine import journal, store
from notify_pipeline.engine.store import Outcome

DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def describe_db_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class ResultWriter:
    def __init__(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection]],
        *,
        worker: str,
        journal_dir: Path,
        retry_s: float,
        on_fault: Callable[[str], None],
    ) -> None:
        self.connect, self.worker, self.journal_dir = connect, worker, journal_dir
        self.retry_s, self.on_fault = retry_s, on_fault
        self.conn: psycopg.AsyncConnection | None = None
        self.gave_up = False  # the database stayed away: everything else goes to the journal
        self.journaled = 0

    async def open(self) -> psycopg.AsyncConnection:
        self.conn = await self.connect()
        return self.conn

    async def write(self, outcomes: Sequence[Outcome], *, worker: str | None = None) -> None:
        """Write outcomes; on a database fault retry, then journal. Never raises a database error."""
        if not outcomes:
            return
        if not self.gave_up:
            try:
                await store.write_outcomes(self._live(), outcomes, worker=worker or self.worker)
                return
            except DB_ERRORS as exc:
                self.on_fault(f"writing results failed: {describe_db_error(exc)}")
                if await self._reconnect_and(
                    lambda c: store.write_outcomes(c, outcomes, worker=worker or self.worker)
                ):
                    return
        journal.append(self.journal_dir, worker or self.worker, outcomes)
        self.journaled += len(outcomes)

    async def run(self, statement: Callable[[psycopg.AsyncConnection], Awaitable[object]]) -> bool:
        """Run a closing statement (release, DONE event) with the same patience; False if lost."""
        if self.gave_up:
            return False
        try:
            await statement(self._live())
            return True
        except DB_ERRORS as exc:
            self.on_fault(f"the database went away: {describe_db_error(exc)}")
            return await self._reconnect_and(statement)

    def _live(self) -> psycopg.AsyncConnection:
        if self.conn is None or self.conn.closed:
            raise psycopg.OperationalError("the write connection is closed")
        return self.conn

    async def _reconnect_and(self, statement: Callable[[psycopg.AsyncConnection], Awaitable[object]]) -> bool:
        deadline, wait = time.monotonic() + self.retry_s, 0.25
        while time.monotonic() < deadline:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, 8.0)
            try:
                if self.conn is not None and not self.conn.closed:
                    await self.conn.close()
                self.conn = await self.connect()
                await statement(self.conn)
                return True
            except DB_ERRORS:
                continue
        self.gave_up = True
        return False

    async def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.close()

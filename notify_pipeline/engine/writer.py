"""The drain's result writer: outcomes in batches, kept through a database fault and a journal fault.

On a failed write the drain is told to stop sending at once; the writer keeps every outcome it
holds and retries on a new connection with growing waits for `db_retry_s`. If the database is still
away, the outcomes go to the local journal (fsynced) for the next drain to replay; so an accepted
message is recorded as sent eventually and never sent again meanwhile.

If the journal cannot be written either (a full disk, a read-only folder), the outcomes stay in
this process's memory, the only record of them: the drain stops sending, and before it ends
`settle` tries the database and the journal in turn, with growing waits, until one takes them. It
says so in one line (how many results, where they are held, what failed) and never returns while
it still holds one; only killing the process loses them (and their messages would be sent again).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import psycopg

from notify_pipeline.db.errors import DB_ERRORS, describe_db_error
from notify_pipeline.engine import journal, store
from notify_pipeline.engine.store import Outcome

RETRY_CAP_S = 8.0  # the longest wait between two tries of a database (or journal) that is away
# A deadlock or serialization failure (the runbook's stop SQL updating the rows this write holds,
# in another order) says nothing about the database being away: the write is tried again at once,
# a few times, before it counts as a fault that stops the drain.
CONFLICT_TRIES = 5
CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
HELD_NOTICE_EVERY_S = 300.0  # how often the line about results held in memory is said again


def journal_refusal(directory: Path, exc: OSError) -> str:
    """The one line of a drain that will not claim because its journal cannot be written."""
    return (
        f"the journal folder {directory} cannot be written ({journal.describe_os_error(exc)}): a drain "
        "that could not keep its results through a database outage claims nothing; free its disk or "
        "fix its permissions (it lives under NOTIFY_DATA_DIR)"
    )


class ResultWriter:
    def __init__(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection]],
        *,
        worker: str,
        journal_dir: Path,
        retry_s: float,
        on_fault: Callable[[str], None],
        on_journal_fault: Callable[[str], None] | None = None,
    ) -> None:
        self.connect, self.worker, self.journal_dir = connect, worker, journal_dir
        self.retry_s, self.on_fault = retry_s, on_fault
        self.on_journal_fault = on_journal_fault or on_fault
        self.conn: psycopg.AsyncConnection | None = None
        self.gave_up = False  # the database stayed away: everything else goes to the journal
        self.journaled = 0
        # What neither the database nor the journal took yet: (worker, outcome) and (worker, event).
        self.held: list[tuple[str, Outcome]] = []
        self.held_events: list[tuple[str, tuple[str, dict]]] = []
        self.held_most = 0  # the most results held in memory at once
        self.journal_error: str | None = None  # the last journal failure, one line
        self.db_error: str | None = None  # the last database failure, one line
        self.recorded_in: str | None = None  # what took the held results in the end
        self.held_since: float | None = None  # when the journal first failed
        self.held_s = 0.0  # how long results were held

    async def open(self) -> psycopg.AsyncConnection:
        self.conn = await self.connect()
        return self.conn

    async def write(self, outcomes: Sequence[Outcome], *, worker: str | None = None) -> None:
        """Write outcomes; on a database fault retry, then journal, then hold them. Never raises for
        a database or disk fault."""
        if not outcomes:
            return
        if not self.gave_up:
            try:
                await self._write_through_conflicts(outcomes, worker or self.worker)
                return
            except DB_ERRORS as exc:
                self.db_error = describe_db_error(exc)
                self.on_fault(f"writing results failed: {self.db_error}")
                if await self._reconnect_and(
                    lambda c: store.write_outcomes(c, outcomes, worker=worker or self.worker)
                ):
                    return
        self.keep(outcomes, worker=worker)

    async def _write_through_conflicts(self, outcomes: Sequence[Outcome], worker: str) -> None:
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                await store.write_outcomes(self._live(), outcomes, worker=worker)
                return
            except CONFLICTS:
                if attempt == CONFLICT_TRIES:
                    raise
                await asyncio.sleep(0.01 * attempt)

    def keep(
        self, outcomes: Sequence[Outcome], *, worker: str | None = None, events: Iterable[tuple] = ()
    ) -> None:
        """Append to the journal what the database could not take; if the journal fails too, hold
        it in memory for `settle`. Never raises."""
        worker, events = worker or self.worker, list(events)
        if not outcomes and not events:
            return
        try:
            journal.append(self.journal_dir, worker, outcomes, events)
            self.journaled += len(outcomes)
        except OSError as exc:
            self.journal_error = journal.describe_os_error(exc)
            self.held += [(worker, outcome) for outcome in outcomes]
            self.held_events += [(worker, event) for event in events]
            self.held_most = max(self.held_most, len(self.held))
            if self.held_since is None:
                self.held_since = time.monotonic()
            self.on_journal_fault(self.held_line())

    @property
    def holding(self) -> bool:
        return bool(self.held or self.held_events)

    def held_line(self) -> str:
        """One line: how many results only this process holds, where, and why."""
        accepted = sum(1 for _, outcome in self.held if outcome.kind == "sent")
        database = f"away ({self.db_error})" if self.db_error else "away"
        return (
            f"{len(self.held)} results ({accepted} of them messages Meta accepted) are recorded only in "
            f"the memory of process {os.getpid()} on this host: the queue database is {database} and "
            f"the journal {self.journal_dir} cannot be written ({self.journal_error}); sending stopped, "
            "both are retried until one takes them. Free the journal's disk or bring the database "
            "back; killing this process loses them and their messages would be sent again"
        )

    def held_summary(self) -> str:
        """One line for the report once the held results were recorded."""
        return (
            f"the journal {self.journal_dir} could not be written ({self.journal_error}) while the "
            f"queue database was away: {self.held_most} results were held in memory for "
            f"{self.held_s:.0f} s until {self.recorded_in} took them; none was lost"
        )

    async def settle(self, notice: Callable[[str], None]) -> None:
        """Until every held result is recorded: try the database (a new connection), then the
        journal, waiting longer each round (up to RETRY_CAP_S). `notice` hears the held line at
        once and every HELD_NOTICE_EVERY_S. Returns only when nothing is held."""
        if not self.holding:
            return
        wait, next_notice = 0.25, 0.0
        while True:
            if await self._write_held():
                self.recorded_in = "the database"
                break
            if self._journal_held():
                self.recorded_in = "the journal (the next drain replays it)"
                break
            if time.monotonic() >= next_notice:
                notice(self.held_line())
                next_notice = time.monotonic() + HELD_NOTICE_EVERY_S
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_CAP_S)
        self.held_s = time.monotonic() - (self.held_since or time.monotonic())

    async def _write_held(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await self.connect()
            while self.held:
                worker = self.held[0][0]
                batch = [outcome for who, outcome in self.held if who == worker]
                await store.write_outcomes(self.conn, batch, worker=worker)
                self.held = [(who, outcome) for who, outcome in self.held if who != worker]
            while self.held_events:
                kind, details = self.held_events[0][1]
                await store.record_event(self.conn, kind, details)
                self.held_events.pop(0)
        except DB_ERRORS as exc:
            self.db_error = describe_db_error(exc)
            if self.conn is not None and not self.conn.closed:
                await self.conn.close()
            self.conn = None
            return False
        return True

    def _journal_held(self) -> bool:
        held, events = self.held, self.held_events
        self.held, self.held_events = [], []
        for worker in dict.fromkeys([who for who, _ in held] + [who for who, _ in events]):
            self.keep(
                [outcome for who, outcome in held if who == worker],
                worker=worker,
                events=[event for who, event in events if who == worker],
            )
        return not self.holding

    async def run(self, statement: Callable[[psycopg.AsyncConnection], Awaitable[object]]) -> bool:
        """Run a closing statement (release, DONE event) with the same patience; False if lost."""
        if self.gave_up:
            return False
        try:
            await statement(self._live())
            return True
        except DB_ERRORS as exc:
            self.db_error = describe_db_error(exc)
            self.on_fault(f"the database went away: {self.db_error}")
            return await self._reconnect_and(statement)

    def _live(self) -> psycopg.AsyncConnection:
        if self.conn is None or self.conn.closed:
            raise psycopg.OperationalError("the write connection is closed")
        return self.conn

    async def _reconnect_and(self, statement: Callable[[psycopg.AsyncConnection], Awaitable[object]]) -> bool:
        deadline, wait = time.monotonic() + self.retry_s, 0.25
        while time.monotonic() < deadline:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, RETRY_CAP_S)
            try:
                if self.conn is not None and not self.conn.closed:
                    await self.conn.close()
                self.conn = await self.connect()
                await statement(self.conn)
                return True
            except DB_ERRORS as exc:
                self.db_error = describe_db_error(exc)
                continue
        self.gave_up = True
        return False

    async def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.close()

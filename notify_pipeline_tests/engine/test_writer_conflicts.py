"""A write that meets a deadlock (the runbook's stop SQL updating the same held rows in another
order) is tried again; it does not stop the drain as a database fault would. Pure logic: the
store's write is replaced by one that fails as PostgreSQL does."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from notify_pipeline.engine import store, writer
from notify_pipeline.engine.store import Outcome

SENT = Outcome("sent", 1, "sent", 0, 0, wa_message_id="wamid.1")


def run_write(monkeypatch, failures: list[Exception], tmp_path) -> tuple[list[str], list[int]]:
    faults: list[str] = []
    written: list[int] = []

    async def write_outcomes(conn, outcomes, *, worker):
        if failures:
            raise failures.pop(0)
        written.extend(o.id for o in outcomes)
        return len(outcomes)

    class Connection:
        closed = False

        async def close(self) -> None:
            self.closed = True

    async def connect():
        return Connection()

    monkeypatch.setattr(store, "write_outcomes", write_outcomes)
    results = writer.ResultWriter(
        connect, worker="w", journal_dir=tmp_path, retry_s=1.0, on_fault=faults.append
    )

    async def go() -> None:
        await results.open()
        await results.write([SENT])

    asyncio.run(go())
    return faults, written


def test_a_deadlock_is_tried_again_without_stopping_the_drain(monkeypatch, tmp_path) -> None:
    faults, written = run_write(
        monkeypatch, [psycopg.errors.DeadlockDetected("deadlock detected")] * 2, tmp_path
    )
    assert faults == [] and written == [1]


def test_a_lasting_conflict_is_a_fault_like_any_other(monkeypatch, tmp_path) -> None:
    conflicts = [psycopg.errors.DeadlockDetected("deadlock detected")] * writer.CONFLICT_TRIES
    faults, _ = run_write(monkeypatch, conflicts, tmp_path)
    assert faults and "DeadlockDetected" in faults[0]


@pytest.mark.parametrize("error", [psycopg.OperationalError("server closed the connection")])
def test_a_lost_connection_still_stops_the_drain_at_once(monkeypatch, tmp_path, error) -> None:
    faults, written = run_write(monkeypatch, [error], tmp_path)
    assert faults and written == [1], "told to stop sending, then written on a new connection"

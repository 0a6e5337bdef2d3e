"""The drain's result loop: outcomes from the claimer and the senders, written in batches.

Whatever has gathered (up to 1,000) is written at once through the ResultWriter (writer.py), which
keeps it through database and journal faults; the report counts it once written. Between batches
the loop holds the templates Meta paused and gives back rows revoked while held. A bug here must not
lose results: the drain stops sending and whatever is left goes to the journal.
"""

from __future__ import annotations

import asyncio

from notify_pipeline.engine import store
from notify_pipeline.engine.drain_config import StopReason
from notify_pipeline.engine.drain_state import DrainState
from notify_pipeline.engine.store import Outcome
from notify_pipeline.engine.writer import ResultWriter

MAX_BATCH = 1000
LINGER_S = 0.05  # how long an empty queue is waited on before the loop looks at its other duties
_TIMEOUT = object()


class ResultBatches:
    def __init__(self, state: DrainState, writer: ResultWriter) -> None:
        self.state, self.writer = state, writer
        self.writing: list[Outcome] = []  # the batch being written
        self.closed = False  # the end marker (None) was taken off the queue

    async def run(self) -> None:
        """Until the end marker; on a bug, stop sending and journal what is left."""
        state = self.state
        try:
            await self._write_batches()
        except Exception as exc:
            # A bug in writing must not lose results: stop sending and keep what is left on disk.
            state.abort(StopReason.ERROR, f"the result writer failed: {exc!r}")
            left: list[Outcome] = [*self.writing]
            while not self.closed and (item := await state.results.get()) is not None:
                left.append(item)
            self.writer.keep(left)

    async def _write_batches(self) -> None:
        state, results = self.state, self.state.results
        closed = False
        while not closed:
            pending: list[Outcome] = []
            item = await _get(results, LINGER_S)
            while item is not _TIMEOUT:
                if item is None:
                    closed = self.closed = True
                    break
                pending.append(item)
                if len(pending) >= MAX_BATCH or results.empty():
                    break
                item = results.get_nowait()
            if pending:
                self.writing = pending
                await self.writer.write(pending)
                self.writing = []
                self._count(pending)
                if any(o.status == "queued" for o in pending):
                    # Rows it queued again (retries, deferrals, waits for a receipt) wake no one
                    # (notify_wake_on_update skips a drain's own writes): reset the claimer's timer.
                    state.wake.set()
            if state.templates_to_hold:
                keys, state.templates_to_hold = state.templates_to_hold, []
                await self.writer.run(lambda c, keys=keys: store.hold_templates(c, keys))
            if state.give_back:
                ids = list(state.give_back)
                await self.writer.run(lambda c, ids=ids: store.release(c, ids, worker=state.worker))
                del state.give_back[: len(ids)]
                state.wake.set()

    def _count(self, written: list[Outcome]) -> None:
        report = self.state.report
        for outcome in written:
            if outcome.kind == "sent":
                report.sent += 1
            else:
                getattr(report, outcome.kind)[outcome.error_code or "unknown"] += 1


async def _get(queue: asyncio.Queue, timeout: float):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return _TIMEOUT

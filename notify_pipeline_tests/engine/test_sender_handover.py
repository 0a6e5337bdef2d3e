"""The two parts of a quick handover: a successor queued on the sender lock is granted it when the
holder lets go (and gives up after its wait), and a stopping drain's senders do not sit out their
pacing turns before giving their rows back."""

from __future__ import annotations

import asyncio

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.sender_lock import SenderControl
from notify_pipeline.ratelimit import Gcra


def test_a_waiting_successor_gets_the_lock_when_it_is_released_and_not_before(db_url) -> None:
    async def go() -> tuple[bool, bool, bool]:
        holder = SenderControl(await connect_async(db_url), "handover-test")
        successor = SenderControl(await connect_async(db_url), "handover-test")
        late = SenderControl(await connect_async(db_url), "handover-test")
        try:
            assert await holder.acquire(0)
            busy = await late.acquire(0.3)  # nobody lets go within its wait
            waiting = asyncio.create_task(successor.acquire(30))
            await asyncio.sleep(0.3)
            queued = not waiting.done()
            await holder.release()
            granted = await asyncio.wait_for(waiting, 5)
            return busy, queued, granted
        finally:
            for control in (holder, successor, late):
                await control.conn.close()

    busy, queued, granted = asyncio.run(go())
    assert not busy, "a second drain does not get a held sender"
    assert queued, "the successor waits while the sender is held"
    assert granted, "and is granted the sender when the holder lets go"


def test_stopping_cuts_short_the_senders_pacing() -> None:
    async def go() -> list[str]:
        stop = asyncio.Event()
        handoff = Handoff(Gcra(1.0, 1), stop=stop)  # one row a second
        for name in ("a", "b", "c"):
            await handoff.put(0, name)
        first = await handoff.take()  # the burst's one row, at once
        waiting = [asyncio.create_task(handoff.take()) for _ in range(2)]  # 1 s and 2 s away
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in waiting)
        stop.set()
        rest = await asyncio.wait_for(asyncio.gather(*waiting), 0.5)
        return [first, *rest]

    assert sorted(asyncio.run(go())) == ["a", "b", "c"]

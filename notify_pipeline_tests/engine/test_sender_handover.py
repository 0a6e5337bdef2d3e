"""The parts of a quick handover: a successor queued on the sender lock is granted it when the
holder lets go (and gives up after its wait), or when the holder is killed outright, and a stopping
drain's senders do not sit out their pacing turns before giving their rows back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.sender_lock import SenderControl
from notify_pipeline.ratelimit import Gcra
from notify_pipeline_tests.support.drain_harness import assert_accepted_exactly, counts, fresh, wait_until
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates
from notify_pipeline_tests.support.run_worker import run_worker_env
from notify_pipeline_tests.support.supervision import lock_waiters

CLI = str(Path(sys.executable).parent / "notify-pipeline")
IN_FLIGHT = 10  # --concurrency: the requests a killed drain can have in flight


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


def _serve(env: dict[str, str], *extra: str) -> subprocess.Popen:
    """`notify-pipeline send --serve`, paced so the backlog outlasts the kill."""
    command = [CLI, "send", "--serve", "--max-seconds", "600", "--concurrency", str(IN_FLIGHT)]
    command += ["--throughput-per-s", "60", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_standby_waiting_on_the_lock_takes_over_at_once_from_a_killed_drain(
    db_url, emulator, tmp_path
) -> None:
    """README: a drain killed outright (SIGKILL, OOM) can cause a duplicate only for the requests
    it had in flight, and a `kill -9` does not wait for a launch or the lease: the standby queued
    on the sender lock is granted it when the holder's connection dies, and gives back at once the
    claims of a drain whose process on this host is gone."""
    emulator.configure(limits_enabled=False, latency_ms=50)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        ids = enqueue_many(conn, 1200)  # 20 s at 60/s: the kill comes mid-backlog
    env = run_worker_env(db_url, emulator, tmp_path)
    serving = _serve(env)
    standby = None
    try:
        wait_until(lambda: emulator.stats()["total"] >= 60, timeout=60, what="the first drain to send")
        standby = _serve(env, "--wait-for-sender", "300")
        wait_until(lambda: lock_waiters(db_url) == 1, timeout=60, what="the standby to wait on the lock")
        serving.send_signal(signal.SIGKILL)
        serving.wait(30)
        sent_by_killed = emulator.stats()["total"]
        assert sent_by_killed < len(ids), "the kill came mid-backlog"
        # About 20 s of paced sending; the deadline stays under the 90 s after which any drain
        # takes a silent drain's claims, so only the process-gone rule can meet it.
        wait_until(
            lambda: counts(db_url) == {"sent": len(ids)}, timeout=80, what="the standby to send the rest"
        )
        standby.send_signal(signal.SIGTERM)
        out, err = standby.communicate(timeout=60)
    finally:
        for process in (serving, standby):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
    assert standby.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["stopped_by"] == "signal", report
    assert report["rescued"] > 0, "the killed drain's claims were given back at once (its process is gone)"
    assert report["sent"] > 0, report
    accepted = assert_accepted_exactly(emulator, ids)
    twice = {i: n for i, n in accepted.items() if n > 1}
    assert sum(n - 1 for n in twice.values()) == emulator.stats()["duplicates"] <= IN_FLIGHT, twice

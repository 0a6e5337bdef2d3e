"""One drain per sender: a PostgreSQL advisory lock held on the drain's own control connection.

The control connection also LISTENs for wake-ups (notify_queue) and for what a drain must re-check
at once (notify_control). Losing it, by a restart or pg_terminate_backend, releases the lock, so
the drain must stop sending the moment it notices: the next notifies() or query raises.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import psycopg
from psycopg import errors

from notify_pipeline.engine import queries

QUEUE_CHANNEL = "notify_queue"
LOCK_WAIT_SLICE_S = 5.0
CONTROL_CHANNEL = "notify_control"


def lock_key(sender: str) -> int:
    """A stable signed 64-bit advisory lock key for a sender (the same in every process)."""
    digest = hashlib.sha256(f"notify-pipeline/sender/{sender}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_parts(sender: str) -> tuple[int, int]:
    # pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits).
    key = lock_key(sender) & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


LOCK_HELD = queries.sender_lock_held


def lock_held(conn: psycopg.Connection, sender: str) -> bool:
    """Does some drain hold this sender's lock right now? (The sensor's liveness test.)"""
    return bool(conn.execute(LOCK_HELD, _lock_parts(sender)).fetchone()[0])


class SenderControl:
    """The drain's control connection: the sender lock, LISTEN, and the drain's small queries."""

    def __init__(self, conn: psycopg.AsyncConnection, sender: str) -> None:
        self.conn, self.sender = conn, sender

    async def acquire(self, wait_s: float) -> bool:
        """Take the sender lock, waiting up to `wait_s` for the drain that holds it to let go.

        A successor waits in PostgreSQL's lock queue (in slices, under `lock_timeout`), so it is
        granted the lock the moment its predecessor releases it, not at its next try."""
        key = lock_key(self.sender)
        cur = await self.conn.execute(queries.try_sender_lock, (key,))
        if (await cur.fetchone())[0]:
            return True
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            slice_ms = max(1, int(min(left, LOCK_WAIT_SLICE_S) * 1000))
            try:
                await self.conn.execute(queries.set_lock_timeout, (f"{slice_ms}ms",))
                await self.conn.execute(queries.wait_sender_lock, (key,))
                return True
            except errors.LockNotAvailable:
                continue
            finally:
                await self.conn.execute(queries.clear_lock_timeout)
        return False

    async def release(self) -> None:
        """Let go of the sender (closing the connection ends the session, and the lock with it)."""
        await self.conn.close()

    async def listen(self) -> None:
        # Built here, not in queries.sql: the channel names are the constants wait() compares against.
        await self.conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        await self.conn.execute(f"LISTEN {CONTROL_CHANNEL}")

    async def wait(self, timeout: float, on_queue: Callable[[], None]) -> set[str]:
        """The control notifications that arrive within `timeout` seconds, as {channel:payload}.
        A queue notification calls `on_queue` at once (the claimer is waiting on it) and the wait
        goes on; a control notification ends the wait early (it needs acting on now)."""
        seen: set[str] = set()
        async for note in self.conn.notifies(timeout=timeout):
            if note.channel == QUEUE_CHANNEL:
                on_queue()
                continue
            seen.add(f"{note.channel}:{note.payload}")
            break
        return seen

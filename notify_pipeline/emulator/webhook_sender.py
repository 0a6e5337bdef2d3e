"""Delivers webhooks in the background: scheduled, batched, signed and retried as Meta does.

The send path only schedules (no I/O, no awaiting), so webhooks never slow sends. A submission
is a chain of steps, e.g. one message's sent, delivered and read: each step is built when it
falls due (so it carries its own timestamp) and the next is scheduled only once the body holding
the previous one has been posted, which keeps a message's statuses in order even when posts run
in parallel or are retried. Due updates wait up to the linger for others to share their body.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.emulator.webhook_batches import compose, encode, split
from notify_pipeline.emulator.webhook_payloads import Update
from notify_pipeline.emulator.webhook_post import post_with_retries
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

Build = Callable[[], Update | None]  # None: nothing to post for this step after all
Step = tuple[float, Build]  # seconds after the previous step was posted, and how to build it
_WORKERS = 4
_HISTORY = 1000  # bodies kept for re-batching
_CARRY_S = 1.0  # how long a re-batched update waits for a body to ride in
_COUNTERS = (
    "delivered", "failed", "attempts", "retries", "non_200", "errors", "updates_delivered",
    "updates_failed", "duplicates_sent", "rebatched_updates", "resent_bodies",
)  # fmt: skip


@dataclass
class _Body:
    generation: int
    updates: list[Update]
    raw: bytes
    follow_ups: list[list[Step]] = field(default_factory=list)
    original: bool = True  # False for re-sends, which are kept out of the history


class WebhookSender:
    """Timers, the batch being filled, and the workers that post bodies to the callback URL."""

    def __init__(self, config: Callable[[], EmulatorConfig], seed: int = 0) -> None:
        self._config = config
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        self._timers: list[tuple[float, int, int, Build, list[Step]]] = []
        self._pending: list[tuple[Update, list[Step]]] = []
        self._pending_since = 0.0
        # Re-batched copies of one-update bodies: they ride in the next body that goes out.
        self._carry: list[Update] = []
        self._carry_until = 0.0
        self._history: deque[list[Update]] = deque(maxlen=_HISTORY)
        self._queue: asyncio.Queue[_Body] | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        # Bumped by reset(): work from before it is dropped, not posted to the next test.
        self._generation = 0
        self._in_flight = 0
        self.counts = dict.fromkeys(_COUNTERS, 0)

    def submit(self, steps: list[Step]) -> None:
        """Schedule a chain of steps; a no-op when no callback URL is configured."""
        if steps and self._config().webhook_url:
            self._schedule(steps)

    def post(self, update: Update) -> None:
        """Post one update as soon as batching allows."""
        self.submit([(0.0, lambda: update)])

    def resend(
        self, last: int = 1, batch_max: int | None = None, layout: str | None = None
    ) -> dict[str, int]:
        """Post again the updates of the last `last` delivered bodies, grouped anew (a re-batch)."""
        config = self._config()
        if not config.webhook_url:
            raise ValueError("no webhook_url is configured")
        updates = [u for body in list(self._history)[-last:] for u in body] if last > 0 else []
        self._ensure_started()
        assert self._queue is not None
        chunks = split(updates, batch_max or 1000)
        for chunk in chunks:
            raw = encode(compose(config.waba_id, chunk, layout or config.webhook_batch_layout, self._rng))
            self._queue.put_nowait(_Body(self._generation, chunk, raw, original=False))
        self.counts["resent_bodies"] += len(chunks)
        return {"bodies": len(chunks), "updates": len(updates)}

    def stats(self) -> dict[str, int]:
        queued = self._queue.qsize() if self._queue else 0
        pending = len(self._timers) + len(self._pending) + len(self._carry) + queued + self._in_flight
        return {**self.counts, "pending": pending, "scheduled": len(self._timers)}

    def reset(self) -> None:
        self._generation += 1
        self._rng = random.Random(self._config().seed)  # the same duplicates and groupings again
        self._timers.clear()
        self._pending.clear()
        self._carry.clear()
        self._history.clear()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self.counts = dict.fromkeys(_COUNTERS, 0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queue = self._wake = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- scheduling and batching (one dispatcher task) --------------------------------------------

    def _ensure_started(self) -> None:
        # Created on first use, inside the server's event loop.
        if self._queue is None:
            self._queue, self._wake = asyncio.Queue(), asyncio.Event()
            self._tasks = [asyncio.create_task(self._dispatch())]
            self._tasks += [asyncio.create_task(self._work()) for _ in range(_WORKERS)]

    def _schedule(self, steps: list[Step]) -> None:
        self._ensure_started()
        assert self._wake is not None
        delay, build = steps[0]
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._timers, (due, next(self._seq), self._generation, build, steps[1:]))
        self._wake.set()

    def _add_pending(self, update: Update, rest: list[Step], now: float) -> None:
        if not self._pending:
            self._pending_since = now
        self._pending.append((update, rest))

    async def _dispatch(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._timers and self._timers[0][0] <= now:
                _, _, generation, build, rest = heapq.heappop(self._timers)
                if generation != self._generation:
                    continue
                try:
                    update = build()
                except Exception:  # a bug in a payload builder must not stop the dispatcher
                    log.exception("emulator: building a webhook update failed")
                    update = None
                if update is not None:
                    self._add_pending(update, rest, now)
                elif rest:
                    self._schedule(rest)
            wait = self._cut(now)
            if self._timers:
                wait = min(wait if wait is not None else 1e9, self._timers[0][0] - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _cut(self, now: float) -> float | None:
        """Turn pending updates into bodies; the seconds until the next linger ends, if any."""
        config = self._config()
        size = config.webhook_batch_max
        linger = config.webhook_batch_linger_ms / 1000
        while self._pending and (
            len(self._pending) >= size or size == 1 or now >= self._pending_since + linger
        ):
            taken, self._pending = self._pending[:size], self._pending[size:]
            self._pending_since = now
            room = max(0, 1000 - len(taken))
            carried, self._carry = self._carry[:room], self._carry[room:]
            self._enqueue(config, carried + [u for u, _ in taken], [r for _, r in taken if r])
        if self._carry and now >= self._carry_until:
            carried, self._carry = self._carry[:1000], self._carry[1000:]
            self._enqueue(config, carried, [], original=False)  # nothing came to ride with
        deadlines = [self._pending_since + linger] if self._pending else []
        deadlines += [self._carry_until] if self._carry else []
        return min(deadlines) - now if deadlines else None

    def _enqueue(
        self,
        config: EmulatorConfig,
        updates: list[Update],
        follow_ups: list[list[Step]],
        original: bool = True,
    ) -> None:
        raw = encode(compose(config.waba_id, updates, config.webhook_batch_layout, self._rng))
        assert self._queue is not None
        self._queue.put_nowait(_Body(self._generation, updates, raw, follow_ups, original))

    async def _post(
        self, config: EmulatorConfig, raw: bytes, headers: dict[str, str], generation: int
    ) -> bool | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

        def current() -> bool:  # a reset drops what was in flight
            return generation == self._generation

        return await post_with_retries(self._session, config, raw, headers, self.counts, current)

    def _rebatch(self, body: _Body) -> None:
        """Send a delivered body's updates again, grouped otherwise: a body of several is split
        into one body each; a single update rides in the next body that goes out."""
        assert self._wake is not None and self._queue is not None
        config = self._config()
        if len(body.updates) > 1:
            for update in body.updates:
                raw = encode(compose(config.waba_id, [update], "entries"))
                self._queue.put_nowait(_Body(self._generation, [update], raw, original=False))
        else:
            if not self._carry:
                self._carry_until = asyncio.get_running_loop().time() + _CARRY_S
            self._carry.extend(body.updates)
            self._wake.set()
        self.counts["rebatched_updates"] += len(body.updates)

    # -- posting (the workers) -------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            body = await self._queue.get()
            if body.generation != self._generation:
                continue
            self._in_flight += 1
            try:
                await self._deliver(body)
            except Exception:  # a broken body must not stop the worker
                log.exception("emulator: posting a webhook failed")
                self.counts["failed"] += 1
            finally:
                self._in_flight -= 1
            if body.generation == self._generation:
                for rest in body.follow_ups:  # the next status of each message, success or not
                    self._schedule(rest)

    async def _deliver(self, body: _Body) -> None:
        config = self._config()
        if not config.webhook_url or not config.app_secret:
            return
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(config.app_secret, body.raw)}
        outcome = await self._post(config, body.raw, headers, body.generation)
        if outcome is None:
            return  # reset meanwhile: dropped, neither delivered nor failed
        count = len(body.updates)
        if not outcome:
            self.counts["failed"] += 1
            self.counts["updates_failed"] += count
            return
        self.counts["delivered"] += 1
        self.counts["updates_delivered"] += count
        if not body.original:
            return
        self._history.append(body.updates)
        if self._rng.random() < config.webhook_duplicate_share:
            self.counts["duplicates_sent"] += 1
            if await self._post(config, body.raw, headers, body.generation):
                self.counts["delivered"] += 1
        if self._rng.random() < config.webhook_rebatch_share and body.generation == self._generation:
            self._rebatch(body)

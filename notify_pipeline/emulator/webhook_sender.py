"""Delivers webhooks in the background, signed as Meta signs them, with retries.

The send path only puts a job on a queue (no I/O, no awaiting), so webhooks never slow sends.
A job is the ordered list of bodies for one message (sent, delivered, read), built when posted so
each carries its own timestamp; workers handle different messages in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import aiohttp

from notify_pipeline.emulator.answers import dumps
from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign

PayloadFactory = Callable[[], dict[str, Any]]
_WORKERS = 4


class WebhookSender:
    """A queue of webhook jobs and the workers that post them to the configured callback URL."""

    def __init__(self, config: Callable[[], EmulatorConfig], seed: int = 0) -> None:
        self._config = config
        self._rng = random.Random(seed)
        self._queue: asyncio.Queue[tuple[int, list[PayloadFactory]]] | None = None
        self._workers: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        # Bumped by reset(): jobs queued before it are dropped, not posted to the next test.
        self._generation = 0
        self._in_flight = 0
        self.delivered = self.failed = self.attempts = 0

    def submit(self, factories: list[PayloadFactory]) -> None:
        """Queue one message's webhooks; a no-op when no callback URL is configured."""
        if not factories or not self._config().webhook_url:
            return
        if self._queue is None:
            self._start()
        assert self._queue is not None
        self._queue.put_nowait((self._generation, factories))

    def stats(self) -> dict[str, int]:
        pending = (self._queue.qsize() if self._queue else 0) + self._in_flight
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "attempts": self.attempts,
            "pending": pending,
        }

    def reset(self) -> None:
        self._generation += 1
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self.delivered = self.failed = self.attempts = 0

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queue = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _start(self) -> None:
        # Created on first use, inside the server's event loop.
        self._queue = asyncio.Queue()
        self._workers = [asyncio.create_task(self._work()) for _ in range(_WORKERS)]

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            generation, factories = await self._queue.get()
            self._in_flight += 1
            try:
                for position, factory in enumerate(factories):
                    if generation != self._generation:
                        break
                    delay = self._config().webhook_delay_ms / 1000
                    if position and delay:
                        await asyncio.sleep(delay)
                    await self._post(dumps(factory()), generation)
            except Exception:  # a broken job must not stop the worker
                self.failed += 1
            finally:
                self._in_flight -= 1

    async def _post(self, body: bytes, generation: int) -> None:
        config = self._config()
        if not config.webhook_url or not config.app_secret:
            return
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(config.app_secret, body)}
        copies = 2 if self._rng.random() < config.webhook_duplicate_share else 1
        for _ in range(copies):
            outcome = await self._post_with_retries(config, body, headers, generation)
            if outcome is None:
                return  # reset meanwhile: dropped, neither delivered nor failed
            if not outcome:
                self.failed += 1
                return
            self.delivered += 1

    async def _post_with_retries(
        self, config: EmulatorConfig, body: bytes, headers: dict[str, str], generation: int
    ) -> bool | None:
        """True once answered 200, False when every attempt failed, None when dropped by a reset."""
        session = self._session or self._new_session()
        delay = config.webhook_retry_delay_ms / 1000
        for attempt in range(config.webhook_retries + 1):
            if generation != self._generation:
                return None
            if attempt:
                await asyncio.sleep(delay * 2 ** (attempt - 1))
            self.attempts += 1
            try:
                timeout = aiohttp.ClientTimeout(total=config.webhook_timeout_s)
                async with session.post(
                    config.webhook_url, data=body, headers=headers, timeout=timeout
                ) as resp:
                    await resp.read()
                    # Meta wants exactly 200; anything else is retried.
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
        return False

    def _new_session(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession()
        return self._session

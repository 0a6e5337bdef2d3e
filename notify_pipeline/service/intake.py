"""Reading a webhook body before anyone knows it is Meta's: bounded in size, time and memory.

The signature covers the raw bytes, so the body must be read before it can be checked. Until
then a body is held on credit: it must arrive within the body deadline, stay under the size cap,
and every byte past its first SMALL_BODY_BYTES draws on one budget for the whole process. A body
that would overdraw the budget is refused with 503 (by its Content-Length before a byte is read,
when it declares one), so however many connections send large bodies, the process holds at most
the budget (plus uvicorn's own buffer per connection). Status webhooks are a few KB and never wait
on the budget. The credit is returned as soon as the signature is checked. Intake.start() must run first (the
app's lifespan): it starts the sweep that enforces the body deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

from notify_pipeline.service.config import SMALL_BODY_BYTES, ServeLimits

log = logging.getLogger(__name__)
# How often the body deadlines are checked (at most; a quarter of the deadline when shorter).
SWEEP_S = 0.25


class BodyRefused(Exception):
    """The body was not read whole; `status` and `reason` are the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class UnauthenticatedBudget:
    """Bytes held by bodies whose signature is not checked yet, beyond each one's free share."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def available(self) -> int:
        return self.limit - self.held

    def take(self, size: int) -> bool:
        if size > self.available():
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


@dataclass
class Refusals:
    """How many bodies were refused before authentication, by reason (shown by /healthz)."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"too_large": 0, "too_slow": 0, "busy": 0, "aborted": 0}
    )

    def add(self, reason: str) -> None:
        self.counts[reason] += 1


class Intake:
    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.budget = UnauthenticatedBudget(limits.unauthenticated_bytes)
        self.refusals = Refusals()
        # The body deadline: a timer per request would cost more than reading a status webhook
        # does, so the reads in progress are listed and one sweep cancels those past due.
        self._due: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(SWEEP_S, self.limits.body_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for task, due in list(self._due.items()):
                if due <= now and task not in self._expired:
                    # The task is waiting for body bytes (only then is it listed): it is woken there.
                    self._expired.add(task)
                    task.cancel()

    async def read(self, request: Request) -> tuple[bytes, int]:
        """The raw body and the credit it drew on the budget: hand that back with release() once
        the signature is checked. Raises BodyRefused with the answer to give."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            size = int(declared)
            if size > self.limits.max_body_bytes:
                self._refused("too_large")
            if size - SMALL_BODY_BYTES > self.budget.available():
                self._refused("busy")
        task = asyncio.current_task()
        assert task is not None
        self._due[task] = asyncio.get_running_loop().time() + self.limits.body_timeout_s
        chunks: list[bytes] = []
        received = drawn = 0
        try:
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > self.limits.max_body_bytes:
                        self._refused("too_large")
                    owed = max(0, received - SMALL_BODY_BYTES) - drawn
                    if owed:
                        if not self.budget.take(owed):
                            self._refused("busy")
                        drawn += owed
                    chunks.append(chunk)
            except asyncio.CancelledError:
                if task not in self._expired:
                    raise
                task.uncancel()
                self._refused("too_slow")
            except ClientDisconnect:
                # An aborted POST is ordinary on the internet: no traceback, no line above INFO.
                log.info("a webhook POST was abandoned by its sender after %d bytes", received)
                self._refused("aborted")
        except BaseException:
            self.release(drawn)
            raise
        finally:
            del self._due[task]
            self._expired.discard(task)
        return b"".join(chunks), drawn

    def release(self, drawn: int) -> None:
        self.budget.give_back(drawn)

    def _refused(self, reason: str) -> None:
        self.refusals.add(reason)
        status, text = ANSWERS[reason]
        raise BodyRefused(status, text)


ANSWERS = {
    "too_large": (413, "body too large"),
    "too_slow": (408, "body not received in time"),
    "busy": (503, "too many unauthenticated bytes in flight, retry later"),
    "aborted": (400, "body not received whole"),
}

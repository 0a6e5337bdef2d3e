"""A bounded drain: claim due notifications and send them until none is due or the time budget ends.

Three kinds of task share one asyncio loop: the claimer (claims a batch, decides each row, queues
what may be sent), `concurrency` senders (pace to the sender's throughput limit, POST, interpret
the answer) and one writer (writes outcomes back in batches). Claims commit before any send, and
the claimer keeps at most two batches ahead of the senders, so a crash leaves few rows locked and
every one of them is re-sent at most once after the lease.

A pause flag in the database, NOTIFICATION_WORKER_CRON_ENABLED=false, or an auth error stops the
drain within a batch: rows not yet sent are given back untouched, with no attempt used.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine import claim, outcomes, store
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport, worker_enabled
from notify_pipeline.engine.policy import decide
from notify_pipeline.ratelimit import Gcra
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient
from notify_pipeline.whatsapp.results import SendResult

TEMPLATE_REFRESH_S = 30.0


class Sender(Protocol):
    async def send(self, payload: dict[str, Any]) -> SendResult: ...


class _Drain:
    def __init__(
        self, db_url: str, sender: Sender, config: DrainConfig, clock: Callable[[], datetime]
    ) -> None:
        self.db_url, self.sender, self.config, self.now = db_url, sender, config, clock
        self.report = DrainReport(worker=config.worker_id, trigger=config.trigger)
        self.stop = asyncio.Event()
        self.sendable: asyncio.Queue[tuple[dict, Any] | None] = asyncio.Queue(maxsize=config.batch_size * 2)
        self.results: asyncio.Queue[store.Outcome | None] = asyncio.Queue()
        self.release_ids: list[int] = []
        self.in_flight = 0
        self.throughput = (
            Gcra(config.throughput_per_s, max(1, int(config.throughput_per_s / 20)))
            if (config.throughput_per_s)
            else None
        )
        self.pair = Gcra(config.pair_per_s, config.pair_burst) if config.pair_per_s else None
        self.templates: dict = {}
        self.templates_at = 0.0
        self.rng = random.Random()

    def halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.report.stopped_by = reason
            self.stop.set()

    async def run(self) -> DrainReport:
        started = time.monotonic()
        actor = f"send:{self.config.worker_id}"
        self.claim_db = await connect_async(self.db_url, actor=actor)
        self.write_db = await connect_async(self.db_url, actor=actor)
        self.watch_db = await connect_async(self.db_url, actor=actor)
        try:
            await store.record_event(
                self.watch_db,
                "NOTIFY_WORKER_START",
                {"trigger": self.config.trigger, "worker": self.config.worker_id},
            )
            senders = [asyncio.create_task(self._send_loop()) for _ in range(self.config.concurrency)]
            writer = asyncio.create_task(self._write_loop())
            watcher = asyncio.create_task(self._watch_loop())
            try:
                await self._claim_loop(started)
            finally:
                for _ in senders:
                    await self.sendable.put(None)
                await asyncio.gather(*senders, return_exceptions=True)
                await self.results.put(None)
                await writer
                watcher.cancel()
                self.report.released += await store.release(
                    self.write_db, self.release_ids, worker=self.config.worker_id
                )
            self.report.duration_s = time.monotonic() - started
            await store.record_event(self.watch_db, "NOTIFY_WORKER_DONE", self.report.as_dict())
            if self.report.auth_error:
                await store.record_event(
                    self.watch_db,
                    "NOTIFY_AUTH_FAILURE",
                    {"worker": self.config.worker_id, "error": self.report.auth_error},
                )
        finally:
            for conn in (self.claim_db, self.write_db, self.watch_db):
                await conn.close()
        return self.report

    async def _is_paused(self) -> str | None:
        if not worker_enabled():
            return "disabled"
        paused, _reason = await store.paused(self.watch_db)
        return "paused" if paused else None

    async def _watch_loop(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(self.config.poll_pause_s)
            reason = await self._is_paused()
            if reason:
                self.halt(reason)

    async def _claim_loop(self, started: float) -> None:
        reason = await self._is_paused()
        if reason:
            self.halt(reason)
        while not self.stop.is_set():
            if time.monotonic() - started >= self.config.max_seconds:
                self.halt("time_budget")
                break
            if self.sendable.qsize() > self.config.batch_size:
                # Two batches waiting is enough: claim more only when the senders catch up, so a
                # crash leaves few rows locked.
                await asyncio.sleep(0.005)
                continue
            rows = await claim.claim(
                self.claim_db,
                worker=self.config.worker_id,
                limit=self.config.batch_size,
                lease_s=self.config.lease_s,
            )
            if not rows:
                if self.in_flight == 0 and self.sendable.empty() and self.results.empty():
                    self.halt("drained")
                    break
                await asyncio.sleep(0.02)
                continue
            self.report.claimed += len(rows)
            await self._decide(rows)

    async def _decide(self, rows: list[dict]) -> None:
        if time.monotonic() - self.templates_at > TEMPLATE_REFRESH_S:
            self.templates, self.templates_at = await store.templates(self.claim_db), time.monotonic()
        recipients = [row["to_wa_id"] for row in rows]
        contacts = await store.contacts(self.claim_db, recipients)
        if self.pair is not None:
            window = self.pair.burst * self.pair.interval
            for wa_id, used in (await store.recent_sends(self.claim_db, recipients, window)).items():
                self.pair.seed(wa_id, used)
        now = self.now()
        for row in rows:
            verdict = decide(row, contacts.get(row["to_wa_id"]), self.templates, now, self.config.policy)
            if verdict.action == "send" and self.pair is not None and not self.pair.allow(row["to_wa_id"]):
                until = now + timedelta(seconds=max(1.0, self.pair.wait_s(row["to_wa_id"])))
                await self.results.put(
                    outcomes.deferred(row, until, "pair_limit", "Deferred: per-recipient pair rate limit")
                )
            elif verdict.action == "send":
                self.in_flight += 1
                await self.sendable.put((row, verdict))
            elif verdict.action == "defer":
                await self.results.put(outcomes.deferred(row, verdict.until, verdict.reason, verdict.message))
            else:
                await self.results.put(outcomes.failed(row, verdict.reason, verdict.message))

    async def _send_loop(self) -> None:
        while (item := await self.sendable.get()) is not None:
            row, verdict = item
            try:
                if self.throughput is not None and not self.stop.is_set():
                    delay = self.throughput.reserve()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if self.stop.is_set() and self.report.stopped_by != "time_budget":
                    self.release_ids.append(row["id"])
                    continue
                result = await self.sender.send(verdict.request)
                outcome = outcomes.after_send(row, verdict.template, result, self.now(), self.rng)
                if outcome is None:
                    self.report.auth_error = result.error.describe() if result.error else "auth"
                    self.halt("auth_error")
                    self.release_ids.append(row["id"])
                else:
                    await self.results.put(outcome)
            finally:
                self.in_flight -= 1

    async def _write_loop(self) -> None:
        pending: list[store.Outcome] = []
        done = False
        while not done:
            try:
                item = await asyncio.wait_for(self.results.get(), timeout=0.05)
                if item is None:
                    done = True
                else:
                    pending.append(item)
                    while len(pending) < 1000 and not self.results.empty():
                        nxt = self.results.get_nowait()
                        if nxt is None:
                            done = True
                            break
                        pending.append(nxt)
            except TimeoutError:
                pass
            if pending:
                await store.write_outcomes(self.write_db, pending, worker=self.config.worker_id)
                self._count(pending)
                pending = []

    def _count(self, written: list[store.Outcome]) -> None:
        for outcome in written:
            if outcome.kind == "sent":
                self.report.sent += 1
            else:
                getattr(self.report, outcome.kind)[outcome.error_code or "unknown"] += 1


def utc_now() -> datetime:
    return datetime.now(UTC)


async def drain(
    db_url: str, sender: Sender, config: DrainConfig | None = None, clock: Callable[[], datetime] = utc_now
) -> DrainReport:
    """Claim and send until no row is due, the time budget ends, or something stops the drain."""
    return await _Drain(db_url, sender, config or DrainConfig(), clock).run()


def run_drain(db_url: str, client_settings: ClientSettings, config: DrainConfig) -> DrainReport:
    """One bounded drain from synchronous code (the CLI and the Dagster op), with its own client."""

    async def go() -> DrainReport:
        limited = replace(
            client_settings, max_connections=max(client_settings.max_connections, config.concurrency)
        )
        async with CloudApiClient(limited) as client:
            return await drain(db_url, client, config)

    return asyncio.run(go())

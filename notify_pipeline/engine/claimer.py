"""The drain's claimer: claims due rows, decides each, and hands the sendable ones to the senders.

It keeps about `ahead_s` of sending in hand (DrainConfig.ahead_rows), topping up little and often so
a new priority row is claimed within a few sends. A row that may not go now (quiet hours, the
per-recipient pair limit, a template on hold, expired, unreadable) goes to the result writer as a
deferral or a failure without reaching a sender. A bounded drain ends once nothing is due and
nothing is in hand; a serving one waits for a NOTIFY, for its earliest deferred row, or for a slow
poll, until its lifetime ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from notify_pipeline.engine import claim, outcomes, row_json, store
from notify_pipeline.engine.drain_config import StopReason
from notify_pipeline.engine.drain_state import DrainState, wait_event
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.policy import decide_row
from notify_pipeline.ratelimit import Gcra

TEMPLATE_REFRESH_S = 30.0


class Claimer:
    def __init__(
        self,
        state: DrainState,
        sendable: Handoff,
        conn: psycopg.AsyncConnection,
        clock: Callable[[], datetime],
    ) -> None:
        self.state, self.sendable, self.conn, self.now = state, sendable, conn, clock
        config = state.config
        self.pair = Gcra(config.pair_per_s, config.pair_burst) if config.pair_per_s else None
        self.templates: dict = {}
        self.templates_at = 0.0

    async def run(self, started: float) -> None:
        """Claim until the drain stops, the time budget or lifetime ends, or (bounded) nothing is due."""
        state, config = self.state, self.state.config
        ahead = config.ahead_rows
        while not state.stopping.is_set():
            remaining = config.max_seconds - (time.monotonic() - started)
            if remaining <= 0:
                if config.serve:
                    # Give the rows in hand back rather than spend a second sending them: the
                    # successor waiting for the sender takes them over at once.
                    state.abort(StopReason.LIFETIME)
                else:
                    state.halt(StopReason.TIME_BUDGET)
                break
            # Top up little and often: a new priority row is claimed within a few sends.
            if ahead - len(state.holding) < max(1, ahead // 8):
                state.capacity.clear()
                await wait_event(state.capacity, min(0.1, remaining))
                continue
            state.wake.clear()
            rows = await claim.claim(
                self.conn,
                worker=state.worker,
                limit=min(config.batch_size, ahead - len(state.holding)),
                lease_s=config.lease_s,
            )
            if rows:
                state.report.claimed += len(rows)
                await self._decide(rows)
            elif not config.serve:
                if not state.holding and not state.give_back and state.results.empty():
                    state.halt(StopReason.DRAINED)
                    break
                await asyncio.sleep(0.02)
            else:
                await wait_event(state.wake, min(config.idle_poll_s, remaining, await self._next_due_in()))

    async def _next_due_in(self) -> float:
        seconds = await store.next_due_in(self.conn)
        return self.state.config.idle_poll_s if seconds is None else max(0.01, seconds)

    async def _decide(self, rows: list[dict[str, Any]]) -> None:
        state = self.state
        if state.reload_templates or time.monotonic() - self.templates_at > TEMPLATE_REFRESH_S:
            state.reload_templates = False
            self.templates, self.templates_at = await row_json.templates(self.conn), time.monotonic()
        recipients = [row["to_wa_id"] for row in rows]
        contacts = await store.contacts(self.conn, recipients)
        if self.pair is not None:
            window = self.pair.burst * self.pair.interval
            for wa_id, used in (await store.recent_sends(self.conn, recipients, window)).items():
                self.pair.seed(wa_id, used)
        now = self.now()
        for row in rows:  # each row judged on its own: one that cannot be read fails alone
            verdict = decide_row(row, contacts.get(row["to_wa_id"]), self.templates, now, state.config.policy)
            if verdict.action == "send" and self.pair is not None and not self.pair.allow(row["to_wa_id"]):
                until = now + timedelta(seconds=max(1.0, self.pair.wait_s(row["to_wa_id"])))
                await state.results.put(
                    outcomes.deferred(row, until, "pair_limit", "Deferred: per-recipient pair rate limit")
                )
            elif verdict.action == "send":
                state.holding[row["id"]] = row
                await self.sendable.put(row.get("priority") or 0, (row, verdict))
            elif verdict.action == "defer":
                await state.results.put(
                    outcomes.deferred(row, verdict.until, verdict.reason, verdict.message)
                )
            else:
                await state.results.put(outcomes.failed(row, verdict.reason, verdict.message))

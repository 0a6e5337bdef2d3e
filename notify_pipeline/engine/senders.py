"""The drain's senders: each takes the most urgent row at its paced turn, POSTs it and interprets
Meta's answer.

Nothing is POSTed once the drain aborts (the row goes back untouched) or after the control loop
revoked the row (it is given back at once, to be decided afresh). Outage answers (connection
failures, timeouts, 5xx, answers that are not Meta's JSON) count toward the circuit breaker; while it
is open the senders wait and a probe asks the API until it answers. Outage answers that turn out to
be the outage's (they opened the breaker) use no attempt of their rows; those that did not were
the rows' own errors and are written as decided.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from notify_pipeline.engine import outcomes
from notify_pipeline.engine.breaker import Breaker, is_outage, spares_attempt
from notify_pipeline.engine.drain_config import StopReason
from notify_pipeline.engine.drain_state import DrainState, wait_event
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.pacing import Pacer
from notify_pipeline.engine.policy import Verdict
from notify_pipeline.engine.store import Outcome
from notify_pipeline.whatsapp.results import SendResult

# What a refusal by Meta (outcomes.Halt.kind) stops the drain with.
HALT_STOPS = {"auth": StopReason.AUTH_ERROR, "account": StopReason.ACCOUNT_ERROR}


class Sender(Protocol):
    async def send(self, payload: dict[str, Any]) -> SendResult: ...


@dataclass(frozen=True)
class OutageAnswer:
    """An outage answer not yet known to be the outage's or its row's own."""

    row: dict[str, Any]
    result: SendResult
    outcome: Outcome  # as decided for the row, should the answer be its own


class Senders:
    def __init__(
        self,
        state: DrainState,
        sendable: Handoff,
        sender: Sender,
        throughput: Pacer | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.state, self.sendable, self.sender, self.now = state, sendable, sender, clock
        self.throughput = throughput
        config = state.config
        self.breaker = Breaker(config.breaker_after, config.breaker_max_wait_s)
        self.outage_streak: list[OutageAnswer] = []
        self.probing: asyncio.Task | None = None
        self.rng = random.Random()

    async def run(self) -> None:
        """One sender: rows until the hand-off gives it its end marker."""
        state = self.state
        while (item := await self.sendable.take()) is not None:
            row, verdict = item
            try:
                await self._send_one(row, verdict)
            except Exception as exc:
                state.abort(StopReason.ERROR, f"a sender failed: {exc!r}")
                state.to_release.append(row["id"])
            finally:
                state.holding.pop(row["id"], None)
                state.capacity.set()

    async def wind_up(self) -> None:
        """Once every sender ended: the streak's answers as decided, the probe stopped."""
        await self._end_streak()
        if self.probing is not None:
            self.probing.cancel()

    async def _send_one(self, row: dict[str, Any], verdict: Verdict) -> None:
        state, config = self.state, self.state.config
        if self.breaker.is_open:
            while self.breaker.is_open and state.aborted is None:
                await wait_event(self.breaker.closed, config.tick_s)
            # Every sender holding a row waited here: each takes a new paced turn, or all of them
            # would POST the moment the breaker closes (a burst Meta answers with 130429).
            if state.aborted is None:
                await self.sendable.turn()
        if state.aborted is not None:
            state.to_release.append(row["id"])
            return
        if row["id"] in state.revoked:
            state.give_back.append(row["id"])
            return
        result = await self.sender.send(verdict.request)
        if self.throughput is not None:
            self.throughput.answered(result)  # a 130429 slows the pace
        outcome = outcomes.after_send(
            row,
            verdict.template,
            result,
            self.now(),
            self.rng,
            template_hold_s=config.policy.template_hold_s,
            receipt_wait_s=config.policy.receipt_wait_s,
        )
        if isinstance(outcome, outcomes.Halt):
            state.halted_by_meta = state.halted_by_meta or outcome
            state.report.auth_error = state.report.auth_error or outcome.message
            state.to_release.append(row["id"])
            state.abort(HALT_STOPS[outcome.kind], f"Meta refused the {outcome.kind}: {outcome.message}")
            return
        outage = is_outage(result.error)
        if self.breaker.record(outage):
            label = result.error.label if result.error is not None else None
            state.events.append(("NOTIFY_CIRCUIT_OPEN", {"worker": state.worker, "last_error": label}))
            self.probing = asyncio.create_task(self._probe())
            # The answers that opened it were the outage's, not their rows': no attempt for them.
            streak, self.outage_streak = self.outage_streak, []
            for held in streak:
                await state.results.put(self._outage_deferral(held.row, held.result))
        elif not outage:
            await self._end_streak()  # the API answered: the streak's errors were the rows' own
        if spares_attempt(result.error):
            if self.breaker.is_open:
                outcome = self._outage_deferral(row, result)
            else:  # one alone retries with back-off; decided when the next answer tells which
                self.outage_streak.append(OutageAnswer(row, result, outcome))
                return
        if outcome.template_hold and row.get("template_name"):
            state.templates_to_hold.append((row["template_name"], row.get("language") or "en"))
        await state.results.put(outcome)

    def _outage_deferral(self, row: dict[str, Any], result: SendResult) -> Outcome:
        return outcomes.outage_deferral(
            row, result, self.now(), self.rng, receipt_wait_s=self.state.config.policy.receipt_wait_s
        )

    async def _probe(self) -> None:
        state = self.state
        probe = getattr(self.sender, "probe", None)

        async def reachable() -> bool:
            return True if probe is None else await probe()

        open_s = await self.breaker.probe_until_closed(reachable, lambda: state.aborted is not None)
        details = {"worker": state.worker, "open_s": round(open_s, 1), "probes": self.breaker.probes}
        state.events.append(("NOTIFY_CIRCUIT_CLOSED", details))

    async def _end_streak(self) -> None:
        """Outage answers that did not open the breaker were the rows' own errors: as decided."""
        streak, self.outage_streak = self.outage_streak, []
        for held in streak:
            await self.state.results.put(held.outcome)

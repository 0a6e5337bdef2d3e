"""A drain: claim due notifications for one sender and send them, bounded or serving.

A bounded drain (the CLI's `send`) ends when nothing is due or its time budget ends. A serving
drain (the Dagster send run) waits for work until its lifetime ends: an enqueue wakes it through
NOTIFY, a timer wakes it when the earliest deferred row comes due, and a slow poll backs both.

Tasks on one asyncio loop: the claimer (claimer.py: claims, decides, hands rows to the senders,
holding at most about `ahead_s` of sending), `concurrency` senders (senders.py: pace, POST,
interpret), the result batches (result_batches.py: results written in batches, kept through database
faults by writer.py) and the control loop (control.py: pause, holds, re-checks of the rows in hand,
heartbeat). They share one DrainState (drain_state.py). This module takes the sender's lock, starts
them, then gives back what was not sent and records the end. One drain per sender: the advisory lock
in sender_lock.py.

Nothing is POSTed after the drain learns it must stop (pause, hold, kill switch, lost lock, a
database fault, any task's failure); rows not yet sent are given back untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from notify_pipeline import settings
from notify_pipeline.db.connect import connect_async
from notify_pipeline.db.errors import DB_ERRORS, describe_db_error
from notify_pipeline.engine import holds, journal, store, workers
from notify_pipeline.engine.claimer import Claimer
from notify_pipeline.engine.control import control_loop
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport, StopReason, worker_enabled
from notify_pipeline.engine.drain_state import DrainState
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.pacing import Pacer
from notify_pipeline.engine.result_batches import ResultBatches
from notify_pipeline.engine.sender_lock import SenderControl
from notify_pipeline.engine.senders import Sender, Senders
from notify_pipeline.engine.stop_signals import stop_on_signals
from notify_pipeline.engine.writer import ResultWriter, journal_refusal
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient

# On a planned stop, how long results are retried against a database that is away before they go to
# the journal: the whole stop must fit the orchestrator's grace (dev 20 s, Kubernetes 30 s).
PLANNED_STOP_WRITE_RETRY_S = 5.0
_log = logging.getLogger(__name__)


class _Drain:
    """One drain's run: its connections, its tasks and its end."""

    def __init__(
        self, db_url: str, sender: Sender, config: DrainConfig, clock: Callable[[], datetime]
    ) -> None:
        self.db_url, self.config, self.now = db_url, config, clock
        self.state = state = DrainState(config)
        self.report = state.report
        limit = config.throughput_per_s
        # A margin under the sender's tier, slower after a 130429 (engine/pacing.py).
        throughput = Pacer(limit, config.pacing, config.sender) if limit else None
        # Rows for the senders, paced, most urgent first: (row, verdict).
        self.sendable = Handoff(throughput, stop=state.no_more_posts)
        self.senders = Senders(state, self.sendable, sender, throughput, clock)
        self.acquiring: asyncio.Future | None = None  # the wait for the sender lock
        self.writer: ResultWriter | None = None
        self.claim_db = None
        self.journal_dir = config.journal_dir or journal.journal_dir(settings.data_dir(), config.sender)

    def planned_stop(self, reason: StopReason = StopReason.SIGNAL) -> None:
        """Stop as asked (SIGTERM, Ctrl-C: a deploy, not a fault): POST nothing more, write what was
        sent, give the rows in hand back, hand the sender over. A standby stops waiting for the lock,
        and results meet a database that is away with less patience (then the journal keeps them),
        so the stop ends within the orchestrator's grace period."""
        self.state.abort(reason)
        if self.acquiring is not None:
            self.acquiring.cancel()
        if self.writer is not None:
            self.writer.retry_s = min(self.writer.retry_s, PLANNED_STOP_WRITE_RETRY_S)

    async def _connect(self):
        return await connect_async(self.db_url, actor=f"send:{self.state.worker}")

    async def run(self) -> DrainReport:
        state, config, worker = self.state, self.config, self.state.worker
        try:
            journal.check_writable(self.journal_dir)
        except OSError as exc:
            state.abort(StopReason.JOURNAL_ERROR, journal_refusal(self.journal_dir, exc))
            return self.report
        try:
            control_conn = await self._connect()
        except DB_ERRORS as exc:
            state.abort(StopReason.DB_ERROR, f"cannot reach the queue database: {describe_db_error(exc)}")
            return self.report
        self.control = SenderControl(control_conn, config.sender)
        self.writer = ResultWriter(
            self._connect,
            worker=worker,
            journal_dir=self.journal_dir,
            retry_s=config.db_retry_s,
            on_fault=lambda text: state.abort(StopReason.DB_ERROR, text),
            on_journal_fault=lambda text: state.abort(StopReason.JOURNAL_ERROR, text),
        )
        self.started = time.monotonic()
        try:
            if state.aborted is not None:  # stopped as planned before it took the sender
                return self.report
            # Only the lock's connection while waiting: a standby may wait hours, and idle
            # connections that long may be cut by the network (opening one costs a few ms).
            self.acquiring = asyncio.ensure_future(self.control.acquire(config.lock_wait_s))
            try:
                acquired = await self.acquiring
            except (asyncio.CancelledError, *DB_ERRORS):
                if state.aborted is None:  # not a planned stop cutting the wait short
                    raise
                return self.report
            if not acquired:
                self.report.stopped_by = StopReason.SENDER_BUSY.value
                self.report.fault = (
                    f"another drain is sending for sender {config.sender}; one drain per sender "
                    "keeps Meta's throughput limit (wait for it to end, or stop it)"
                )
                return self.report
            self.started = started = time.monotonic()
            self.claim_db = await self._connect()
            await self.writer.open()
            await self.control.listen()
            await self._replay_journal()
            self.report.rescued += await workers.rescue(
                self.claim_db, me=worker, silent_after_s=config.rescue_after_s
            )
            await workers.register(
                control_conn,  # its backend holds the sender lock: the sensor matches the two
                worker=worker,
                sender=config.sender,
                run_id=config.run_id,
                trigger=config.trigger,
                lifetime_s=config.max_seconds,
            )
            await store.record_event(
                self.claim_db,
                "NOTIFY_WORKER_START",
                {"trigger": config.trigger, "worker": worker, "sender": config.sender},
            )
            await self._supervise(started)
        except DB_ERRORS as exc:
            state.abort(StopReason.DB_ERROR, f"the queue database failed: {describe_db_error(exc)}")
        finally:
            for conn in (self.claim_db, control_conn):
                if conn is not None and not conn.closed:
                    await conn.close()
            await self.writer.close()
        return self.report

    async def _supervise(self, started: float) -> None:
        state = self.state
        # Fail closed from the first moment: the control loop's first tick is a tick away.
        if not worker_enabled():
            state.disabled()
        elif (stop := await store.stop_reason(self.claim_db, self.config.sender)) is not None:
            state.blocked(stop)
        senders = [asyncio.create_task(self.senders.run()) for _ in range(self.config.concurrency)]
        writer = asyncio.create_task(ResultBatches(state, self.writer).run())
        control = asyncio.create_task(control_loop(state, self.control))
        try:
            await Claimer(state, self.sendable, self.claim_db, self.now).run(started)
        except DB_ERRORS as exc:
            state.abort(StopReason.DB_ERROR, f"claiming failed: {describe_db_error(exc)}")
        except Exception as exc:
            state.abort(StopReason.ERROR, f"the claimer failed: {exc!r}")
        finally:
            state.halt(StopReason.STOPPED)
            # After every row in hand: the senders finish them (or give them back), then end.
            await self.sendable.close(len(senders))
            await asyncio.gather(*senders, return_exceptions=True)
            await self.senders.wind_up()
            await state.results.put(None)
            await asyncio.gather(writer, return_exceptions=True)
            # Nothing more will be POSTed and every result is written (or journaled): hand the
            # sender over now, so a waiting successor starts at once, and record the end after.
            await self._hand_back()
            state.closing = True
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)
            with contextlib.suppress(*DB_ERRORS):
                await self.control.release()
            await self._close()

    async def _hand_back(self) -> None:
        """Set a hold Meta asked for (before a successor could POST), give back what was not sent."""
        state, worker = self.state, self.state.worker
        self.report.duration_s = time.monotonic() - self.started
        halt = state.halted_by_meta
        if halt is not None:
            await self.writer.run(
                lambda c: holds.set_hold_async(
                    c, self.config.sender, halt.kind, halt.code, halt.message, worker
                )
            )
        if state.to_release or state.give_back:
            ids = [*state.to_release, *state.give_back]

            async def give_back(conn) -> None:
                self.report.released += await store.release(conn, ids, worker=worker)

            await self.writer.run(give_back)

    async def _close(self) -> None:
        """Record the end: events the control loop had not written yet, the registry, DONE."""
        state, worker = self.state, self.state.worker
        events, state.events = state.events, []
        for kind, details in events:
            await self.writer.run(lambda c, kind=kind, details=details: store.record_event(c, kind, details))
        self.report.held_in_memory = self.writer.held_most
        done = self.report.as_dict()
        ok = await self.writer.run(lambda c: workers.finish(c, worker, self.report.stopped_by, done))
        ok = ok and await self.writer.run(lambda c: store.record_event(c, "NOTIFY_WORKER_DONE", done))
        if not ok:
            self.writer.keep([], events=[("NOTIFY_WORKER_DONE", done)])
        # Results only this process holds (database and journal both failed): wait for either.
        await self.writer.settle(self.config.notice or _log.warning)
        if self.writer.held_most:
            self.report.fault = self.writer.held_summary()
        self.report.journaled += self.writer.journaled

    async def _replay_journal(self) -> None:
        for path in journal.pending(self.journal_dir):
            by_worker, events = journal.read(path)
            for worker, results in by_worker.items():
                await store.write_outcomes(self.claim_db, results, worker=worker)
                self.report.replayed += len(results)
            for kind, details in events:
                await store.record_event(self.claim_db, kind, {**details, "replayed_from_journal": True})
            path.unlink()


def utc_now() -> datetime:
    return datetime.now(UTC)


async def drain(
    db_url: str, sender: Sender, config: DrainConfig | None = None, clock: Callable[[], datetime] = utc_now
) -> DrainReport:
    """Claim and send until nothing is due (bounded) or the lifetime ends (serving), or something
    stops the drain."""
    return await _Drain(db_url, sender, config or DrainConfig(), clock).run()


def run_drain(db_url: str, client_settings: ClientSettings, config: DrainConfig) -> DrainReport:
    """One drain from synchronous code (the CLI and the Dagster op), with its own client. On the
    main thread, SIGTERM and SIGINT start its planned stop (stop_signals.py)."""

    async def go() -> DrainReport:
        limited = replace(
            client_settings, max_connections=max(client_settings.max_connections, config.concurrency)
        )
        async with CloudApiClient(limited) as client:
            draining = _Drain(db_url, client, config, utc_now)
            with stop_on_signals(asyncio.get_running_loop(), lambda _name: draining.planned_stop()):
                return await draining.run()

    return asyncio.run(go())

"""A drain: claim due notifications for one sender and send them, bounded or serving.

A bounded drain (the CLI's `send`) ends when nothing is due or its time budget ends. A serving
drain (the Dagster send run) waits for work until its lifetime ends: an enqueue wakes it through
NOTIFY, a timer wakes it when the earliest deferred row comes due, and a slow poll backs both.

Tasks on one asyncio loop: the claimer (claims, decides, hands rows to the senders, holding at most
about `ahead_s` of sending), `concurrency` senders (pace, POST, interpret), the writer (results in
batches, kept through database faults) and the control loop (control.py: pause, holds, re-checks of
the rows in hand, heartbeat). One drain per sender: the advisory lock in sender_lock.py.

Nothing is POSTed after the drain learns it must stop (pause, hold, kill switch, lost lock, a
database fault, any task's failure); rows not yet sent are given back untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from notify_pipeline import settings
from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine import claim, holds, journal, outcomes, row_json, store, workers
from notify_pipeline.engine.breaker import Breaker, is_outage, spares_attempt
from notify_pipeline.engine.control import control_loop
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport, StopReason, worker_enabled
from notify_pipeline.engine.handoff import Handoff
from notify_pipeline.engine.pacing import Pacer
from notify_pipeline.engine.policy import decide_row
from notify_pipeline.engine.sender_lock import SenderControl
from notify_pipeline.engine.stop_signals import stop_on_signals
from notify_pipeline.engine.writer import DB_ERRORS, ResultWriter, describe_db_error, journal_refusal
from notify_pipeline.ratelimit import Gcra
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient
from notify_pipeline.whatsapp.results import SendResult

TEMPLATE_REFRESH_S = 30.0
# On a planned stop, how long results are retried against a database that is away before they go to
# the journal: the whole stop must fit the orchestrator's grace (dev 20 s, Kubernetes 30 s).
PLANNED_STOP_WRITE_RETRY_S = 5.0
_log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, payload: dict[str, Any]) -> SendResult: ...


class _Drain:
    def __init__(
        self, db_url: str, sender: Sender, config: DrainConfig, clock: Callable[[], datetime]
    ) -> None:
        self.db_url, self.sender, self.config, self.now = db_url, sender, config, clock
        self.worker = config.worker_id
        self.report = DrainReport(worker=self.worker, trigger=config.trigger)
        self.stopping = asyncio.Event()  # claim no more; finish what is in hand
        self.aborted: str | None = None  # POST nothing more
        self.no_more_posts = asyncio.Event()  # set with `aborted`: cuts short the senders' pacing
        self.closing = False
        self.wake = asyncio.Event()
        self.capacity = asyncio.Event()
        self.results: asyncio.Queue[store.Outcome | None] = asyncio.Queue()
        self.holding: dict[int, dict] = {}  # handed to the senders, not yet finished
        self.revoked: set[int] = set()
        self.to_release: list[int] = []  # given back at the end (the drain is stopping)
        self.give_back: list[int] = []  # revoked while held: given back now, to be decided afresh
        self.events: list[tuple[str, dict]] = []  # written by the control loop
        self.templates_to_hold: list[tuple[str, str]] = []
        self.writing: list[store.Outcome] = []  # the batch being written
        self.results_closed = False
        self.halted_by_meta: outcomes.Halt | None = None
        limit = config.throughput_per_s
        # A margin under the sender's tier, slower after a 130429 (engine/pacing.py).
        self.throughput = Pacer(limit, config.pacing, config.sender) if limit else None
        # Rows for the senders, paced, most urgent first: (row, verdict).
        self.sendable = Handoff(self.throughput, stop=self.no_more_posts)
        self.pair = Gcra(config.pair_per_s, config.pair_burst) if config.pair_per_s else None
        self.breaker = Breaker(config.breaker_after, config.breaker_max_wait_s)
        # Outage answers (row, result, outcome) not yet known to be an outage's or their row's own.
        self.outage_streak: list[tuple[dict, SendResult, store.Outcome]] = []
        self.probing: asyncio.Task | None = None
        self.acquiring: asyncio.Future | None = None  # the wait for the sender lock
        self.templates: dict = {}
        self.templates_at = 0.0
        self.reload_templates = True
        self.rng = random.Random()
        self.journal_dir = config.journal_dir or journal.journal_dir(settings.data_dir(), config.sender)

    # -- stopping ---------------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        """Claim no more (the end of the budget or lifetime, nothing due)."""
        if not self.stopping.is_set():
            self.report.stopped_by = self.report.stopped_by or reason
            self.stopping.set()
            self.wake.set()
            self.capacity.set()

    def abort(self, reason: str, fault: str | None = None) -> None:
        """Send nothing more: pause, hold, kill switch, or a fault. The first reason wins."""
        if self.aborted is None:
            self.aborted = reason
            self.report.stopped_by = reason
            self.report.fault = fault
            self.no_more_posts.set()
        self.halt(reason)

    def planned_stop(self, reason: str = StopReason.SIGNAL) -> None:
        """Stop as asked (SIGTERM, Ctrl-C: a deploy, not a fault): POST nothing more, write what was
        sent, give the rows in hand back, hand the sender over. A standby stops waiting for the lock,
        and results meet a database that is away with less patience (then the journal keeps them),
        so the stop ends within the orchestrator's grace period."""
        self.abort(str(reason))  # a plain string in the report, its JSON and the registry
        if self.acquiring is not None:
            self.acquiring.cancel()
        if hasattr(self, "writer"):
            self.writer.retry_s = min(self.writer.retry_s, PLANNED_STOP_WRITE_RETRY_S)

    # -- the run ----------------------------------------------------------------------------------

    async def _connect(self):
        return await connect_async(self.db_url, actor=f"send:{self.worker}")

    async def run(self) -> DrainReport:
        try:
            journal.check_writable(self.journal_dir)
        except OSError as exc:
            self.abort("journal_error", journal_refusal(self.journal_dir, exc))
            return self.report
        try:
            control_conn = await self._connect()
        except DB_ERRORS as exc:
            self.abort("db_error", f"cannot reach the queue database: {describe_db_error(exc)}")
            return self.report
        self.control = SenderControl(control_conn, self.config.sender)
        self.writer = ResultWriter(
            self._connect,
            worker=self.worker,
            journal_dir=self.journal_dir,
            retry_s=self.config.db_retry_s,
            on_fault=lambda text: self.abort("db_error", text),
            on_journal_fault=lambda text: self.abort("journal_error", text),
        )
        self.claim_db = None
        self.started = time.monotonic()
        try:
            if self.aborted is not None:  # stopped as planned before it took the sender
                return self.report
            # Only the lock's connection while waiting: a standby may wait hours, and idle
            # connections that long may be cut by the network (opening one costs a few ms).
            self.acquiring = asyncio.ensure_future(self.control.acquire(self.config.lock_wait_s))
            try:
                acquired = await self.acquiring
            except (asyncio.CancelledError, *DB_ERRORS):
                if self.aborted is None:  # not a planned stop cutting the wait short
                    raise
                return self.report
            if not acquired:
                self.report.stopped_by = "sender_busy"
                self.report.fault = (
                    f"another drain is sending for sender {self.config.sender}; one drain per sender "
                    "keeps Meta's throughput limit (wait for it to end, or stop it)"
                )
                return self.report
            self.started = started = time.monotonic()
            self.claim_db = await self._connect()
            await self.writer.open()
            await self.control.listen()
            await self._replay_journal()
            self.report.rescued += await workers.rescue(
                self.claim_db, me=self.worker, silent_after_s=self.config.rescue_after_s
            )
            await workers.register(
                control_conn,  # its backend holds the sender lock: the sensor matches the two
                worker=self.worker,
                sender=self.config.sender,
                run_id=self.config.run_id,
                trigger=self.config.trigger,
                lifetime_s=self.config.max_seconds,
            )
            await store.record_event(
                self.claim_db,
                "NOTIFY_WORKER_START",
                {"trigger": self.config.trigger, "worker": self.worker, "sender": self.config.sender},
            )
            await self._supervise(started)
        except DB_ERRORS as exc:
            self.abort("db_error", f"the queue database failed: {describe_db_error(exc)}")
        finally:
            for conn in (self.claim_db, control_conn):
                if conn is not None and not conn.closed:
                    await conn.close()
            await self.writer.close()
        return self.report

    async def _supervise(self, started: float) -> None:
        # Fail closed from the first moment: the control loop's first tick is a tick away.
        if not worker_enabled():
            self.abort("disabled", "NOTIFICATION_WORKER_CRON_ENABLED is false")
        elif (reason := await store.stop_reason(self.claim_db, self.config.sender)) is not None:
            self.abort("paused" if reason.startswith("paused") else "held", reason)
        senders = [asyncio.create_task(self._send_loop()) for _ in range(self.config.concurrency)]
        writer = asyncio.create_task(self._write_loop())
        control = asyncio.create_task(control_loop(self))
        try:
            await self._claim_loop(started)
        except DB_ERRORS as exc:
            self.abort("db_error", f"claiming failed: {describe_db_error(exc)}")
        except Exception as exc:
            self.abort("error", f"the claimer failed: {exc!r}")
        finally:
            self.halt("stopped")
            # After every row in hand: the senders finish them (or give them back), then end.
            await self.sendable.close(len(senders))
            await asyncio.gather(*senders, return_exceptions=True)
            await self._end_streak()
            if self.probing is not None:
                self.probing.cancel()
            await self.results.put(None)
            await asyncio.gather(writer, return_exceptions=True)
            # Nothing more will be POSTed and every result is written (or journaled): hand the
            # sender over now, so a waiting successor starts at once, and record the end after.
            await self._hand_back()
            self.closing = True
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)
            with contextlib.suppress(*DB_ERRORS):
                await self.control.release()
            await self._close()

    async def _hand_back(self) -> None:
        """Set a hold Meta asked for (before a successor could POST), give back what was not sent."""
        self.report.duration_s = time.monotonic() - self.started
        halt = self.halted_by_meta
        if halt is not None:
            await self.writer.run(
                lambda c: holds.set_hold_async(
                    c, self.config.sender, halt.kind, halt.code, halt.message, self.worker
                )
            )
        if self.to_release or self.give_back:
            ids = [*self.to_release, *self.give_back]

            async def give_back(conn) -> None:
                self.report.released += await store.release(conn, ids, worker=self.worker)

            await self.writer.run(give_back)

    async def _close(self) -> None:
        """Record the end: events the control loop had not written yet, the registry, DONE."""
        events, self.events = self.events, []
        for kind, details in events:
            await self.writer.run(lambda c, kind=kind, details=details: store.record_event(c, kind, details))
        self.report.held_in_memory = self.writer.held_most
        done = self.report.as_dict()
        ok = await self.writer.run(lambda c: workers.finish(c, self.worker, self.report.stopped_by, done))
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

    # -- claiming ---------------------------------------------------------------------------------

    async def _claim_loop(self, started: float) -> None:
        ahead = self.config.ahead_rows
        while not self.stopping.is_set():
            remaining = self.config.max_seconds - (time.monotonic() - started)
            if remaining <= 0:
                if self.config.serve:
                    # Give the rows in hand back rather than spend a second sending them: the
                    # successor waiting for the sender takes them over at once.
                    self.abort("lifetime")
                else:
                    self.halt("time_budget")
                break
            # Top up little and often: a new priority row is claimed within a few sends.
            if ahead - len(self.holding) < max(1, ahead // 8):
                self.capacity.clear()
                await _wait(self.capacity, min(0.1, remaining))
                continue
            self.wake.clear()
            rows = await claim.claim(
                self.claim_db,
                worker=self.worker,
                limit=min(self.config.batch_size, ahead - len(self.holding)),
                lease_s=self.config.lease_s,
            )
            if rows:
                self.report.claimed += len(rows)
                await self._decide(rows)
            elif not self.config.serve:
                if not self.holding and not self.give_back and self.results.empty():
                    self.halt("drained")
                    break
                await asyncio.sleep(0.02)
            else:
                await _wait(self.wake, min(self.config.idle_poll_s, remaining, await self._next_due_in()))

    async def _next_due_in(self) -> float:
        cur = await self.claim_db.execute(
            "SELECT extract(epoch FROM min(next_attempt_at) - now())::float FROM notifications "
            "WHERE status = 'queued' AND next_attempt_at > now()"
        )
        seconds = (await cur.fetchone())[0]
        return self.config.idle_poll_s if seconds is None else max(0.01, seconds)

    async def _decide(self, rows: list[dict]) -> None:
        if self.reload_templates or time.monotonic() - self.templates_at > TEMPLATE_REFRESH_S:
            self.reload_templates = False
            self.templates, self.templates_at = await row_json.templates(self.claim_db), time.monotonic()
        recipients = [row["to_wa_id"] for row in rows]
        contacts = await store.contacts(self.claim_db, recipients)
        if self.pair is not None:
            window = self.pair.burst * self.pair.interval
            for wa_id, used in (await store.recent_sends(self.claim_db, recipients, window)).items():
                self.pair.seed(wa_id, used)
        now = self.now()
        for row in rows:  # each row judged on its own: one that cannot be read fails alone
            verdict = decide_row(row, contacts.get(row["to_wa_id"]), self.templates, now, self.config.policy)
            if verdict.action == "send" and self.pair is not None and not self.pair.allow(row["to_wa_id"]):
                until = now + timedelta(seconds=max(1.0, self.pair.wait_s(row["to_wa_id"])))
                await self.results.put(
                    outcomes.deferred(row, until, "pair_limit", "Deferred: per-recipient pair rate limit")
                )
            elif verdict.action == "send":
                self.holding[row["id"]] = row
                await self.sendable.put(row.get("priority") or 0, (row, verdict))
            elif verdict.action == "defer":
                await self.results.put(outcomes.deferred(row, verdict.until, verdict.reason, verdict.message))
            else:
                await self.results.put(outcomes.failed(row, verdict.reason, verdict.message))

    # -- sending ----------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while (item := await self.sendable.take()) is not None:
            row, verdict = item
            try:
                await self._send_one(row, verdict)
            except Exception as exc:
                self.abort("error", f"a sender failed: {exc!r}")
                self.to_release.append(row["id"])
            finally:
                self.holding.pop(row["id"], None)
                self.capacity.set()

    async def _send_one(self, row: dict, verdict: Any) -> None:
        if self.breaker.is_open:
            while self.breaker.is_open and self.aborted is None:
                await _wait(self.breaker.closed, self.config.tick_s)
            # Every sender holding a row waited here: each takes a new paced turn, or all of them
            # would POST the moment the breaker closes (a burst Meta answers with 130429).
            if self.aborted is None:
                await self.sendable.turn()
        if self.aborted is not None:
            self.to_release.append(row["id"])
            return
        if row["id"] in self.revoked:
            self.give_back.append(row["id"])
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
            template_hold_s=self.config.policy.template_hold_s,
            receipt_wait_s=self.config.policy.receipt_wait_s,
        )
        if isinstance(outcome, outcomes.Halt):
            self.halted_by_meta = self.halted_by_meta or outcome
            self.report.auth_error = self.report.auth_error or outcome.message
            self.to_release.append(row["id"])
            self.abort(f"{outcome.kind}_error", f"Meta refused the {outcome.kind}: {outcome.message}")
            return
        outage = is_outage(result.error)
        if self.breaker.record(outage):
            label = result.error.label if result.error is not None else None
            self.events.append(("NOTIFY_CIRCUIT_OPEN", {"worker": self.worker, "last_error": label}))
            self.probing = asyncio.create_task(self._probe())
            # The answers that opened it were the outage's, not their rows': no attempt for them.
            streak, self.outage_streak = self.outage_streak, []
            for held_row, held_result, _ in streak:
                await self.results.put(self._outage_deferral(held_row, held_result))
        elif not outage:
            await self._end_streak()  # the API answered: the streak's errors were the rows' own
        if spares_attempt(result.error):
            if self.breaker.is_open:
                outcome = self._outage_deferral(row, result)
            else:  # one alone retries with back-off; decided when the next answer tells which
                self.outage_streak.append((row, result, outcome))
                return
        if outcome.template_hold and row.get("template_name"):
            self.templates_to_hold.append((row["template_name"], row.get("language") or "en"))
        await self.results.put(outcome)

    def _outage_deferral(self, row: dict, result: SendResult) -> store.Outcome:
        return outcomes.outage_deferral(
            row, result, self.now(), self.rng, receipt_wait_s=self.config.policy.receipt_wait_s
        )

    async def _probe(self) -> None:
        probe = getattr(self.sender, "probe", None)

        async def reachable() -> bool:
            return True if probe is None else await probe()

        open_s = await self.breaker.probe_until_closed(reachable, lambda: self.aborted is not None)
        details = {"worker": self.worker, "open_s": round(open_s, 1), "probes": self.breaker.probes}
        self.events.append(("NOTIFY_CIRCUIT_CLOSED", details))

    async def _end_streak(self) -> None:
        """Outage answers that did not open the breaker were the rows' own errors: as decided."""
        streak, self.outage_streak = self.outage_streak, []
        for _, _, outcome in streak:
            await self.results.put(outcome)

    # -- writing ----------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        except Exception as exc:
            # A bug in writing must not lose results: stop sending and keep what is left on disk.
            self.abort("error", f"the result writer failed: {exc!r}")
            left: list[store.Outcome] = [*self.writing]
            while not self.results_closed and (item := await self.results.get()) is not None:
                left.append(item)
            self.writer.keep(left)

    async def _write_batches(self) -> None:
        closed = False
        while not closed:
            pending: list[store.Outcome] = []
            item = await _get(self.results, 0.05)
            while item is not _TIMEOUT:
                if item is None:
                    closed = self.results_closed = True
                    break
                pending.append(item)
                if len(pending) >= 1000 or self.results.empty():
                    break
                item = self.results.get_nowait()
            if pending:
                self.writing = pending
                await self.writer.write(pending)
                self.writing = []
                self._count(pending)
                if any(o.status == "queued" for o in pending):
                    # Rows it queued again (retries, deferrals, waits for a receipt) wake no one
                    # (notify_wake_on_update skips a drain's own writes): reset the claimer's timer.
                    self.wake.set()
            if self.templates_to_hold:
                keys, self.templates_to_hold = self.templates_to_hold, []
                await self.writer.run(lambda c, keys=keys: store.hold_templates(c, keys))
            if self.give_back:
                ids = list(self.give_back)
                await self.writer.run(lambda c, ids=ids: store.release(c, ids, worker=self.worker))
                del self.give_back[: len(ids)]
                self.wake.set()

    def _count(self, written: list[store.Outcome]) -> None:
        for outcome in written:
            if outcome.kind == "sent":
                self.report.sent += 1
            else:
                getattr(self.report, outcome.kind)[outcome.error_code or "unknown"] += 1


_TIMEOUT = object()


async def _get(queue: asyncio.Queue, timeout: float):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return _TIMEOUT


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, timeout))


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

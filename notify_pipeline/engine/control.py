"""The drain's control loop, on the control connection that holds the sender lock.

Every `tick_s`, or at once when a control notification arrives: the kill switch, the operator's
pause and the sender's hold are read (failing closed: if they cannot be read, the drain stops), and
the rows in hand are re-checked, so a stop, cancel, opt-out or template switch-off committed before
a POST stops that POST. Every `heartbeat_s` the drain says it is alive and extends its leases; every
`rescue_every_s` it takes back the rows of dead drains; every `event_every_s` it records a heartbeat
event (a NOTIFY_WORKER_START of phase "heartbeat", which the runbook's health check counts) and
calls the progress callback.
"""

from __future__ import annotations

import time

from notify_pipeline.db.errors import DB_ERRORS, describe_db_error
from notify_pipeline.engine import store, workers
from notify_pipeline.engine.drain_config import StopReason, worker_enabled
from notify_pipeline.engine.drain_state import DrainState
from notify_pipeline.engine.sender_lock import CONTROL_CHANNEL, SenderControl

IDLE_TICK_S = 1.0


async def control_loop(state: DrainState, control: SenderControl) -> None:
    """Until the drain is closing, or the control connection fails (then the drain stops)."""
    config, conn = state.config, control.conn
    now = time.monotonic()
    next_beat, next_rescue = now + config.heartbeat_s, now + config.rescue_every_s
    next_event = now + config.event_every_s
    last_sent = 0
    while not state.closing:
        try:
            # With nothing in hand only the pause and holds need reading, and a change to either
            # arrives as a notification at once: tick slower, so an idle drain costs little.
            tick = config.tick_s if state.holding else max(config.tick_s, IDLE_TICK_S)
            seen = await control.wait(tick, on_queue=state.wake.set)
            if f"{CONTROL_CHANNEL}:whatsapp_templates" in seen:
                state.reload_templates = True
            if not worker_enabled():
                state.disabled()
            stop = await store.stop_reason(conn, config.sender)
            if stop is not None:
                state.blocked(stop)
            if state.holding:
                held = list(state.holding)
                fresh = await store.still_sendable(conn, held, worker=state.worker)
                gone = {i for i in held if i not in fresh and i not in state.revoked}
                if gone:
                    state.revoked |= gone
                    state.report.revoked += len(gone)
            now = time.monotonic()
            if now >= next_beat:
                await workers.heartbeat(conn, state.worker, list(state.holding), config.lease_s)
                next_beat = now + config.heartbeat_s
            if now >= next_rescue and not state.stopping.is_set():
                rescued = await workers.rescue(conn, me=state.worker, silent_after_s=config.rescue_after_s)
                if rescued:
                    state.report.rescued += rescued
                    state.wake.set()
                next_rescue = now + config.rescue_every_s
            if now >= next_event:
                next_event = now + config.event_every_s
                await _heartbeat_event(state, control, last_sent)
                last_sent = state.report.sent
            while state.events:  # taken off only once written: the drain's close writes what is left
                kind, details = state.events[0]
                await store.record_event(conn, kind, details)
                state.events.pop(0)
        except DB_ERRORS as exc:
            state.abort(
                StopReason.LOST_LOCK, f"the control connection (sender lock) failed: {describe_db_error(exc)}"
            )
            return
        except Exception as exc:
            state.abort(StopReason.ERROR, f"the control loop failed: {exc!r}")
            return


async def _heartbeat_event(state: DrainState, control: SenderControl, last_sent: int) -> None:
    config, report = state.config, state.report
    await store.record_event(
        control.conn,
        "NOTIFY_WORKER_START",
        {
            "trigger": config.trigger,
            "phase": "heartbeat",
            "worker": state.worker,
            "processed": report.processed,
            "sent": report.sent,
        },
    )
    if config.progress is not None:
        config.progress(
            f"sent {report.sent} (+{report.sent - last_sent} since the last line), "
            f"failed {sum(report.failed.values())}, deferred {sum(report.deferred.values())}, "
            f"retried {sum(report.retried.values())}, holding {len(state.holding)}"
        )

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
from typing import TYPE_CHECKING

from notify_pipeline.engine import store, workers
from notify_pipeline.engine.drain_config import worker_enabled
from notify_pipeline.engine.sender_lock import CONTROL_CHANNEL
from notify_pipeline.engine.writer import DB_ERRORS, describe_db_error

IDLE_TICK_S = 1.0

if TYPE_CHECKING:
    from notify_pipeline.engine.drain import _Drain


async def control_loop(d: _Drain) -> None:
    config, conn = d.config, d.control.conn
    now = time.monotonic()
    next_beat, next_rescue = now + config.heartbeat_s, now + config.rescue_every_s
    next_event = now + config.event_every_s
    last_sent = 0
    while not d.closing:
        try:
            # With nothing in hand only the pause and holds need reading, and a change to either
            # arrives as a notification at once: tick slower, so an idle drain costs little.
            tick = config.tick_s if d.holding else max(config.tick_s, IDLE_TICK_S)
            seen = await d.control.wait(tick, on_queue=d.wake.set)
            if f"{CONTROL_CHANNEL}:whatsapp_templates" in seen:
                d.reload_templates = True
            if not worker_enabled():
                d.abort("disabled", "NOTIFICATION_WORKER_CRON_ENABLED is false")
            reason = await store.stop_reason(conn, config.sender)
            if reason is not None:
                d.abort("paused" if reason.startswith("paused") else "held", reason)
            if d.holding:
                held = list(d.holding)
                fresh = await store.still_sendable(conn, held, worker=d.worker)
                gone = {i for i in held if i not in fresh and i not in d.revoked}
                if gone:
                    d.revoked |= gone
                    d.report.revoked += len(gone)
            now = time.monotonic()
            if now >= next_beat:
                await workers.heartbeat(conn, d.worker, list(d.holding), config.lease_s)
                next_beat = now + config.heartbeat_s
            if now >= next_rescue and not d.stopping.is_set():
                rescued = await workers.rescue(conn, me=d.worker, silent_after_s=config.rescue_after_s)
                if rescued:
                    d.report.rescued += rescued
                    d.wake.set()
                next_rescue = now + config.rescue_every_s
            if now >= next_event:
                next_event = now + config.event_every_s
                await _heartbeat_event(d, last_sent)
                last_sent = d.report.sent
            while d.events:  # taken off only once written: the drain's close writes what is left
                kind, details = d.events[0]
                await store.record_event(conn, kind, details)
                d.events.pop(0)
        except DB_ERRORS as exc:
            d.abort("lost_lock", f"the control connection (sender lock) failed: {describe_db_error(exc)}")
            return
        except Exception as exc:
            d.abort("error", f"the control loop failed: {exc!r}")
            return


async def _heartbeat_event(d: _Drain, last_sent: int) -> None:
    report = d.report
    await store.record_event(
        d.control.conn,
        "NOTIFY_WORKER_START",
        {
            "trigger": d.config.trigger,
            "phase": "heartbeat",
            "worker": d.worker,
            "processed": report.processed,
            "sent": report.sent,
        },
    )
    if d.config.progress is not None:
        d.config.progress(
            f"sent {report.sent} (+{report.sent - last_sent} since the last line), "
            f"failed {sum(report.failed.values())}, deferred {sum(report.deferred.values())}, "
            f"retried {sum(report.retried.values())}, holding {len(d.holding)}"
        )

"""Fault bench, part 1: Ctrl-C of `notify-pipeline dev`, then `dev` again on the same data folder.

`dev` runs on scratch databases against the bench's emulator while an application enqueues a
steady stream. Once it sends (its serving run and the standby both started), `dev` gets SIGINT as
from Ctrl-C; as soon as it has exited it starts again. The moment its UI answers, one more
notification is enqueued: the time until the emulator accepts it is the figure the issue's target
is about (within 30 s). Each round reports how long the stop took, how the stopped send runs ended
in Dagster's storage, and the ledger's duplicates over all rounds.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.bench import database
from notify_pipeline.bench.context import BenchContext
from notify_pipeline.bench.emulator_process import EmulatorControl
from notify_pipeline.bench.faults_dev import DevStack, empty_database, final
from notify_pipeline.bench.faults_storm import failures_by_cause
from notify_pipeline.bench.workload import Notification, add_contacts
from notify_pipeline.db import urls
from notify_pipeline.emulator.config import EmulatorConfig

# The application's stream while `dev` restarts: light, so the notification enqueued when the UI
# answers waits behind seconds of backlog at most and its time measures the restart.
STREAM_PER_S = 2.0
# The sensor launches the standby a tick (15 s) after the serving run starts.
BOTH_RUNS_WAIT_S = 120.0
# Long enough to see the old back-off (615 s in the issue) rather than give up before it.
MARKER_WAIT_S = 700.0
# How long the runs stopped by Ctrl-C may take to show a final status once `dev` is back.
FINAL_STATUS_WAIT_S = 120.0
SETTLE_S = 300.0
ENQUEUE = "SELECT queueNotification(%s, %s)"
QUEUED = "SELECT count(*) FROM notifications WHERE status = 'queued'"
Items = Callable[[], Notification]  # the next notification of the bench's workload


class Stream(threading.Thread):
    """An application enqueuing one notification at a time at `rate_per_s`, each in its own
    transaction, until stopped; on a thread of its own, with its own connection."""

    def __init__(self, url: str, items: Callable[[], Notification], rate_per_s: float) -> None:
        super().__init__(name="bench-stream", daemon=True)
        self.url, self.items, self.rate_per_s = url, items, rate_per_s
        self.ids: list[int] = []
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            with database.open_connection(self.url) as conn:
                started, n = time.monotonic(), 0
                while not self._stopping.wait(max(0.0, started + n / self.rate_per_s - time.monotonic())):
                    self.ids.append(enqueue(conn, self.items()))
                    n += 1
        except BaseException as exc:  # reported by stop(): a stream that died would skew every figure
            self.error = exc

    def halt(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(30)

    def stop(self) -> list[int]:
        """Stop enqueuing; the ids enqueued. Raises if the stream had failed."""
        self.halt()
        if self.error is not None:
            raise RuntimeError(f"the bench's enqueue stream failed: {self.error}") from self.error
        return self.ids


def enqueue(conn: psycopg.Connection, item: Notification) -> int:
    add_contacts(conn, [item])
    row = conn.execute(ENQUEUE, (Jsonb(item.message), Jsonb(item.meta))).fetchone()
    assert row is not None
    return row[0]


def _wait(condition: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
    """condition()'s first truthy value, or None after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)
    return result


def _accepted_at(conn: psycopg.Connection, control: EmulatorControl, row_id: int) -> float | None:
    """When the emulator accepted row `row_id`'s message (unix s), once the row says it was sent."""
    row = conn.execute(
        "SELECT wa_message_id FROM notifications WHERE id = %s AND status = 'sent'", (row_id,)
    ).fetchone()
    if row is None:
        return None
    return next((m["received_at"] for m in control.messages() if m["wamid"] == row[0]), None)


def _seconds(later: float | None, earlier: float) -> float | None:
    return None if later is None else round(later - earlier, 2)


def _back_up(
    dev: DevStack, conn: psycopg.Connection, control: EmulatorControl, items: Items
) -> dict[str, Any]:
    """Start `dev`, wait for its UI, enqueue one notification at once: the times until it was sent."""
    started = time.time()
    dev.start()
    ui_at = dev.wait_for_ui()
    marker = enqueue(conn, items())
    backlog = conn.execute(QUEUED).fetchone()[0]
    sent_at = _wait(lambda: _accepted_at(conn, control, marker), MARKER_WAIT_S, every_s=0.5)
    after_ui = [m["received_at"] for m in control.messages() if m["received_at"] >= ui_at]
    return {
        "started_at": started,
        "dev_start_to_ui_s": round(ui_at - started, 2),
        "queued_when_ui_answered": backlog,
        "ui_to_first_send_s": _seconds(min(after_ui, default=None), ui_at),
        "ui_to_enqueued_one_sent_s": _seconds(sent_at, ui_at),
        "enqueued_one_sent": sent_at is not None,
    }


def _active(dev: DevStack) -> list[dict[str, Any]]:
    return [run for run in dev.runs() if run["status"] == "STARTED"]


def _round(dev: DevStack, conn: psycopg.Connection, control: EmulatorControl, items: Items) -> dict[str, Any]:
    # The case: the serving run and its standby both running when Ctrl-C comes.
    _wait(lambda: len(_active(dev)) >= 2, BOTH_RUNS_WAIT_S, every_s=1.0)
    stopped = _active(dev)
    signalled = time.time()
    stop = dev.interrupt()
    held = conn.execute(
        "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NOT NULL"
    ).fetchone()[0]
    restart = _back_up(dev, conn, control, items)
    # The whole gap an operator sees: from Ctrl-C to the first message the new `dev` sent.
    restarted = restart.pop("started_at")
    again = [m["received_at"] for m in control.messages() if m["received_at"] >= restarted]
    ids = {run["run_id"] for run in stopped}

    def stopped_runs() -> list[dict[str, Any]]:
        return [run for run in dev.runs() if run["run_id"] in ids]

    _wait(lambda: final(stopped_runs()), FINAL_STATUS_WAIT_S, every_s=1.0)
    ended = stopped_runs()
    return {
        "ctrl_c": {**stop, "send_runs_started": len(stopped), "rows_left_claimed": held},
        "ctrl_c_to_sending_again_s": _seconds(min(again, default=None), signalled),
        "stopped_runs": [{"status": r["status"], "stopped_by": r["stopped_by"]} for r in ended],
        "stopped_runs_by_status": dict(Counter(r["status"] for r in ended)),
        "again": restart,
    }


def _totals(conn: psycopg.Connection, control: EmulatorControl, enqueued: int) -> dict[str, Any]:
    ledger, stats = control.messages(), control.stats()
    recorded = {w for (w,) in conn.execute("SELECT wa_message_id FROM notifications WHERE status = 'sent'")}
    statuses = dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall())
    alerts = conn.execute("SELECT count(*) FROM alerts WHERE alert_name LIKE 'run_failure:%%'").fetchone()[0]
    return {
        "enqueued": enqueued,
        "queue_after": statuses,
        "rows_failed_by_cause": failures_by_cause(conn),
        "emulator_accepted": len(ledger),
        "distinct_messages": len({m["biz_opaque_callback_data"] for m in ledger}),
        "duplicates": stats["duplicates"],
        "sent_rows_not_in_ledger": len(recorded - {m["wamid"] for m in ledger}),
        "rejected": stats["rejected"],
        "by_code": stats["by_code"],
        "run_failure_alerts": alerts,
    }


def measure(ctx: BenchContext, restarts: int, progress: Callable[[str], None]) -> dict[str, Any]:
    control = ctx.endpoint.control
    assert control is not None, "the caller skips this part without the emulator"
    client, base = ctx.endpoint.client, urls.database_name(ctx.url)
    lock = threading.Lock()

    def items() -> Notification:  # the stream's thread and this one take from the same supply
        with lock:
            return ctx.workload.take(1)[0]

    with (
        database.scratch_database(ctx.url, f"{base}_dev") as queue_url,
        empty_database(ctx.url, f"{base}_dagster") as dagster_url,
        tempfile.TemporaryDirectory(prefix="notify-bench-dev-") as folder,
        database.open_connection(queue_url) as conn,
    ):
        database.load_demo_templates(conn)
        dev = DevStack(
            queue_url, dagster_url, client.base_url, client.access_token, client.phone_number_id, Path(folder)
        )
        ctx.reset_emulator(
            limits_enabled=True,
            throughput_per_s=ctx.options.rate_per_s,
            latency_ms=0.0,
            webhook_url=dev.webhook_url,
            app_secret=dev.app_secret,
            status_failed_share=0.0,  # every message delivered: a failed row then means a fault
        )
        stream = Stream(queue_url, items, STREAM_PER_S)
        markers = 0
        try:
            progress("Ctrl-C and dev again: starting notify-pipeline dev")
            stream.start()
            first = _back_up(dev, conn, control, items)
            first.pop("started_at")
            markers += 1
            rounds = []
            for n in range(restarts):
                progress(f"Ctrl-C and dev again: round {n + 1} of {restarts}")
                rounds.append(_round(dev, conn, control, items))
                markers += 1
            enqueued = len(stream.stop()) + markers
            _wait(lambda: not conn.execute(QUEUED).fetchone()[0], SETTLE_S, every_s=1.0)
            runs = dev.runs()
            final_stop = dev.interrupt()
            totals = _totals(conn, control, enqueued)
        finally:
            dev.close()  # first: a `dev` left running would outlive the bench and its databases
            stream.halt()
            defaults = EmulatorConfig()
            ctx.reset_emulator(
                webhook_url=None, app_secret=None, status_failed_share=defaults.status_failed_share
            )
    return {
        "stream_per_s": STREAM_PER_S,
        "first_start": first,
        "rounds": rounds,
        "final_ctrl_c": final_stop,
        "send_runs_at_final_ctrl_c": dict(Counter(run["status"] for run in runs)),
        **totals,
    }

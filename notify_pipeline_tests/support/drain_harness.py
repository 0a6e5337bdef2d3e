"""A drain in a background thread, and what fault tests count: the emulator's ledger against the
database's rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from notify_pipeline.db.connect import connect
from notify_pipeline.engine.drain_config import DrainReport
from notify_pipeline_tests.support.engine import run_drain


class DrainThread:
    def __init__(self, db_url: str, emulator, **config: Any) -> None:
        self.report: DrainReport | None = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.report = run_drain(db_url, emulator, **config)
            except BaseException as exc:  # surfaced by join()
                self.error = exc

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> DrainReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the drain did not end"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def fresh(db_url: str) -> psycopg.Connection:
    return connect(db_url, actor="test", autocommit=True)


def counts(db_url: str) -> dict[str, int]:
    with fresh(db_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall())


def events(db_url: str, kind: str) -> list[dict]:
    with fresh(db_url) as conn:
        return [
            d
            for (d,) in conn.execute(
                "SELECT details FROM observability_events WHERE event_type = %s ORDER BY id", (kind,)
            )
        ]


def received_after(emulator, moment: float, **filters: str) -> int:
    """Messages the emulator accepted after `moment` (unix seconds)."""
    return sum(1 for m in emulator.messages(**filters) if m["received_at"] > moment)

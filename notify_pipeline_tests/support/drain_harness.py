"""A drain in a background thread, and what fault tests count: the emulator's ledger against the
database's rows. "Nothing lost" is read from the ledger (`assert_accepted_exactly`), never from the
database's own sent count, which a row marked sent without a POST would satisfy."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from notify_pipeline.db.connect import connect
from notify_pipeline.engine.drain_config import DrainReport
from notify_pipeline.whatsapp.messages import notification_id_of
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


def accepted_ids(emulator) -> Counter[int | None]:
    """How often the emulator accepted each notification, by the `np1:<id>` callback data the
    product sends (None counts messages that carry no id of ours)."""
    return Counter(notification_id_of(m["biz_opaque_callback_data"]) for m in emulator.messages())


def assert_accepted_exactly(emulator, ids: Iterable[int]) -> Counter[int | None]:
    """Nothing lost, nothing foreign: the notifications the emulator accepted are exactly `ids`
    (each at least once; duplicates are the caller's to bound). Returns the ledger's counts."""
    accepted = accepted_ids(emulator)
    expected = set(ids)
    lost, foreign = expected - accepted.keys(), accepted.keys() - expected
    assert not lost and not foreign, (
        f"{len(lost)} never accepted (e.g. {sorted(lost)[:5]}), "
        f"{len(foreign)} accepted but not expected (e.g. {sorted(foreign, key=str)[:5]})"
    )
    return accepted


def assert_each_sent_once(db_url: str, emulator, total: int) -> None:
    """The ledger against the database: `total` messages, each accepted exactly once, and every
    row carrying the message id Meta gave it."""
    ledger = emulator.messages()
    per_callback = Counter(m["biz_opaque_callback_data"] for m in ledger)
    assert len(ledger) == total and set(per_callback.values()) == {1}, "each message accepted once"
    with fresh(db_url) as conn:
        recorded = {w for (w,) in conn.execute("SELECT wa_message_id FROM notifications")}
    assert recorded == {m["wamid"] for m in ledger}, "each row carries the message id Meta gave it"
    assert emulator.stats()["duplicates"] == 0


def ids_with_status(db_url: str, status: str) -> list[int]:
    with fresh(db_url) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM notifications WHERE status = %s", (status,))]

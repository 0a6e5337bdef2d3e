"""A serving drain (the long-lived send run): woken by an enqueue and by a deferral coming due,
ended by its lifetime or a pause, handed over to a successor, and recovered after a SIGKILL.

The slow poll is set far beyond each test's lifetime, so a row sent in time can only have been
woken by NOTIFY or by the drain's own timer. How fast it wakes is a bench figure, not asserted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notify_pipeline.engine.operations import set_paused
from notify_pipeline.whatsapp.messages import callback_data
from notify_pipeline_tests.support.drain_harness import (
    DrainThread,
    assert_accepted_exactly,
    counts,
    events,
    fresh,
    wait_until,
)
from notify_pipeline_tests.support.engine import (
    enqueue,
    enqueue_many,
    load_demo_templates,
    run_drain,
    welcome,
)

pytestmark = pytest.mark.slow
SERVE = dict(serve=True, idle_poll_s=600, throughput_per_s=None)


def _started(db_url: str, count: int = 1) -> bool:
    return len([e for e in events(db_url, "NOTIFY_WORKER_START") if "phase" not in e]) >= count


def test_an_enqueue_wakes_an_idle_drain_and_the_lifetime_ends_it(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
    drain = DrainThread(db_url, emulator, max_seconds=6, journal_dir=tmp_path, **SERVE)
    wait_until(lambda: _started(db_url), what="the drain to start")
    time.sleep(0.5)
    with fresh(db_url) as conn:
        woken = enqueue(conn, welcome("+250788100001"))
    wait_until(lambda: emulator.stats()["total"] == 1, timeout=5, what="the row to be sent")
    report = drain.join()
    assert report.stopped_by == "lifetime"
    assert report.sent == 1 and counts(db_url) == {"sent": 1}
    assert_accepted_exactly(emulator, [woken])


def test_a_deferred_row_is_sent_when_it_comes_due(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        deferred = enqueue(conn, welcome("+250788100002"), {"delay_seconds": 2})
    drain = DrainThread(db_url, emulator, max_seconds=6, journal_dir=tmp_path, **SERVE)
    report = drain.join()
    assert report.sent == 1, "the timer set to the earliest next_attempt_at woke the drain"
    assert report.stopped_by == "lifetime"
    assert_accepted_exactly(emulator, [deferred])


def test_a_pause_ends_a_serving_drain(db_url, emulator, tmp_path) -> None:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
    drain = DrainThread(db_url, emulator, max_seconds=60, journal_dir=tmp_path, **SERVE)
    wait_until(lambda: _started(db_url), what="the drain to start")
    with fresh(db_url) as conn:
        set_paused(conn, True, "test", "test")
    report = drain.join(timeout=10)
    assert report.stopped_by == "paused"
    assert not report.failed_on_fault, "a pause ends the run cleanly"


def test_a_successor_takes_over_at_the_end_of_the_lifetime_with_nothing_lost_or_twice(
    db_url, emulator, tmp_path
) -> None:
    emulator.configure(limits_enabled=False)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
    first = DrainThread(db_url, emulator, max_seconds=3, journal_dir=tmp_path, **SERVE)
    wait_until(lambda: _started(db_url), what="the first drain to start")
    second = DrainThread(db_url, emulator, max_seconds=6, lock_wait_s=30, journal_dir=tmp_path, **SERVE)
    with fresh(db_url) as conn:
        ids = []
        for i in range(40):  # a trickle across the handover
            ids.append(enqueue(conn, welcome(f"+25078820{i:04d}")))
            time.sleep(0.15)
    reports = [first.join(), second.join()]
    assert [r.stopped_by for r in reports] == ["lifetime", "lifetime"]
    assert sum(r.sent for r in reports) == 40 and all(r.sent > 0 for r in reports)
    assert counts(db_url) == {"sent": 40}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0


def test_at_the_end_of_its_lifetime_a_drain_hands_its_rows_and_the_sender_over_before_it_records_its_end(
    db_url, emulator, tmp_path
) -> None:
    """Under a paced backlog the ending drain holds about a second of sending: it gives those rows
    back instead of sending them past its lifetime, and lets go of the sender before it records its
    end. The test holds the drain registry's rows so the old drain's last write waits: the
    successor must start sending all the same."""
    emulator.configure(limits_enabled=False)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        ids = enqueue_many(conn, 400)
    paced = {**SERVE, "throughput_per_s": 50, "pair_per_s": None, "heartbeat_s": 600}
    first = DrainThread(db_url, emulator, max_seconds=3, journal_dir=tmp_path, **paced)
    wait_until(lambda: _started(db_url), what="the first drain to start")
    with fresh(db_url) as blocker, blocker.transaction():
        blocker.execute("SELECT worker_id FROM send_workers FOR UPDATE")
        second = DrainThread(db_url, emulator, max_seconds=12, lock_wait_s=30, journal_dir=tmp_path, **paced)
        wait_until(lambda: _started(db_url, 2), what="the successor to start while the old drain closes")
        assert first.thread.is_alive(), "the old drain is still recording its end"
    reports = [first.join(), second.join()]
    assert [r.stopped_by for r in reports] == ["lifetime", "lifetime"]
    assert reports[0].released > 0, "the rows in hand went back to the successor"
    assert counts(db_url) == {"sent": 400} and sum(r.sent for r in reports) == 400
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0


def test_a_killed_serving_drain_is_recovered_by_the_next_one(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False, latency_ms=200)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        ids = enqueue_many(conn, 300)
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_DATA_DIR": str(tmp_path),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    cli = str(Path(sys.executable).parent / "notify-pipeline")
    worker = subprocess.Popen(
        [cli, "send", "--serve", "--max-seconds", "120", "--concurrency", "10", "--throughput-per-s", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: emulator.stats()["total"] >= 40, what="sending to be under way")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path)
    assert report.rescued > 0, "the dead drain's claims were given back at once (its process is gone)"
    assert counts(db_url) == {"sent": 300}
    assert_accepted_exactly(emulator, ids)
    stats = emulator.stats()
    assert stats["duplicates"] <= 10, (
        "only the requests in flight at the kill (--concurrency) can go out twice"
    )


def test_a_high_priority_row_overtakes_a_backlog(db_url, emulator, tmp_path) -> None:
    """It waits behind at most what the drain already holds (about a second of sending), not
    behind the backlog."""
    emulator.configure(limits_enabled=False)
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        enqueue_many(conn, 1500)
    rate = 200
    drain = DrainThread(
        db_url,
        emulator,
        serve=True,
        max_seconds=20,
        throughput_per_s=rate,
        pair_per_s=None,
        journal_dir=tmp_path,
    )
    wait_until(lambda: emulator.stats()["total"] >= 100, what="the backlog to be under way")
    with fresh(db_url) as conn:
        urgent = enqueue(conn, welcome("+250788900001"), {"priority": 100})
    ahead_at_enqueue = emulator.stats()["total"]
    wait_until(
        lambda: emulator.messages(biz_opaque_callback_data=callback_data(urgent)), what="the urgent row"
    )
    with fresh(db_url) as conn:
        set_paused(conn, True, "test over", "test")
    drain.join()
    order = [m["biz_opaque_callback_data"] for m in emulator.messages()]
    position = order.index(callback_data(urgent))
    assert position - ahead_at_enqueue <= 2 * rate, f"it overtook the backlog (position {position})"
    assert counts(db_url).get("queued", 0) > 500, "most of the backlog was still waiting"

"""Nothing lost, nothing sent twice: concurrent workers, a worker killed mid-batch, stale locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from notify_pipeline.engine.operations import sweep_locks
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates, run_drain, statuses

CLI = str(Path(sys.executable).parent / "notify-pipeline")


def test_two_drains_of_different_senders_never_claim_a_row_twice(db, db_url, emulator) -> None:
    """The claim itself (SKIP LOCKED) keeps concurrent drains apart, whatever their sender lock."""
    load_demo_templates(db)
    emulator.configure(limits_enabled=False, latency_ms=5)
    enqueue_many(db, 600)
    reports = []

    def worker(sender: str) -> None:
        reports.append(
            run_drain(db_url, emulator, batch_size=25, concurrency=16, throughput_per_s=None, sender=sender)
        )

    threads = [threading.Thread(target=worker, args=(f"sender-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses(db) == {"sent": 600}
    assert sum(r.sent for r in reports) == 600
    assert min(r.sent for r in reports) > 0, "both drains took part"
    stats = emulator.stats()
    assert stats["total"] == 600
    assert stats["duplicates"] == 0


def test_a_second_drain_of_one_sender_waits_or_says_the_sender_is_busy(db, db_url, emulator) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False, latency_ms=5)
    enqueue_many(db, 300)
    first: list = []
    thread = threading.Thread(
        target=lambda: first.append(run_drain(db_url, emulator, throughput_per_s=100, sender="one"))
    )
    thread.start()
    deadline = time.monotonic() + 20
    while emulator.stats()["total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = run_drain(db_url, emulator, sender="one")
    assert busy.stopped_by == "sender_busy" and busy.claimed == 0
    assert "another drain is sending for sender one" in busy.fault
    waiting = run_drain(db_url, emulator, sender="one", lock_wait_s=30)
    thread.join(timeout=60)
    assert first[0].stopped_by == "drained"
    assert waiting.stopped_by == "drained", "it took the lock once the first drain let go"
    assert statuses(db) == {"sent": 300}
    assert emulator.stats()["duplicates"] == 0


def test_sigkill_mid_batch_loses_nothing_and_resends_only_rows_in_flight(db, db_url, emulator) -> None:
    load_demo_templates(db)
    emulator.configure(limits_enabled=False, latency_ms=200)
    enqueue_many(db, 300)
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    worker = subprocess.Popen(
        [CLI, "send", "--batch-size", "20", "--concurrency", "10", "--throughput-per-s", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180  # the CLI starts slowly on a busy machine
    while emulator.stats()["total"] < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    sent_at_kill = emulator.stats()["total"]
    assert 40 <= sent_at_kill < 300, f"killed mid-run, not before or after it ({sent_at_kill} sent)"
    worker.wait(10)

    locked = db.execute(
        "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NOT NULL"
    ).fetchone()[0]
    # Claimed but not finished: two batches waiting (2 x 20), the requests in flight (10), and
    # results on their way to the database.
    assert 0 < locked <= 2 * 20 + 10 + 5
    assert sum(statuses(db).values()) == 300, "no row lost"

    released = sweep_locks(db, timedelta(0))  # the lease has passed
    assert released == locked
    report = run_drain(db_url, emulator, batch_size=50, concurrency=20, throughput_per_s=None)
    assert report.stopped_by == "drained"
    assert statuses(db) == {"sent": 300}
    stats = emulator.stats()
    assert stats["duplicates"] <= 10 + 5, "only rows whose request was in flight can go out twice"
    assert stats["total"] == 300 + stats["duplicates"]


def test_a_released_row_is_due_at_its_own_time_not_a_lease_later(db, db_url, emulator) -> None:
    load_demo_templates(db)
    (row_id,) = enqueue_many(db, 1)
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '20 minutes', locked_by = 'dead' "
        "WHERE id = %s",
        (row_id,),
    )
    assert sweep_locks(db, timedelta(minutes=15)) == 1
    report = run_drain(db_url, emulator)
    assert report.sent == 1, "sent at once after the sweep (the prior system waited 15 more minutes)"
    audit = [
        e
        for (e,) in db.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id", (row_id,)
        )
    ]
    assert audit == ["queued", "claimed", "swept", "claimed", "sent"]


def test_a_stale_claim_is_taken_over_by_a_live_worker(db, db_url, emulator) -> None:
    load_demo_templates(db)
    enqueue_many(db, 3)
    db.execute("UPDATE notifications SET locked_at = now() - interval '20 minutes', locked_by = 'dead'")
    assert run_drain(db_url, emulator).sent == 3
    fresh = enqueue_many(db, 1)
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'alive' WHERE id = %s", (fresh[0],))
    assert run_drain(db_url, emulator).claimed == 0, "a live claim is never taken"

"""Faults injected into a live drain, counted from the emulator's own ledger against the database:
PostgreSQL restarted, each of the drain's connections terminated, an aged lease, an API outage, an
account block, and two senders for one sender id. (Stops, opt-outs and switch-offs of held rows:
test_send_time_recheck.py.) The README promises no duplicate after a database fault: 0 is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notify_pipeline_tests.support.drain_harness import (
    DrainThread,
    assert_accepted_exactly,
    counts,
    events,
    fresh,
    wait_until,
)
from notify_pipeline_tests.support.engine import client_settings, enqueue_many, load_demo_templates, run_drain
from notify_pipeline_tests.support.fault_proxy import FaultProxy
from notify_pipeline_tests.support.ports import free_port

pytestmark = pytest.mark.slow


def _seed(db_url: str, count: int, **kwargs) -> list[int]:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        return enqueue_many(conn, count, **kwargs)


def _drain_again(db_url: str, emulator, tmp_path: Path) -> None:
    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, rescue_after_s=0.5)
    assert report.stopped_by == "drained", report.as_dict()


def test_postgres_restart_mid_drain_records_every_accepted_send(
    db_url, emulator, postgres_server, tmp_path
) -> None:
    emulator.configure(limits_enabled=False, latency_ms=20)
    ids = _seed(db_url, 3000)
    drain = DrainThread(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, max_seconds=120)
    wait_until(lambda: emulator.stats()["total"] >= 600, what="sending to be under way")
    postgres_server.restart()
    report = drain.join()
    accepted = emulator.stats()["total"]

    assert report.stopped_by in ("db_error", "lost_lock"), report.as_dict()
    assert report.fault
    assert counts(db_url).get("sent", 0) == accepted, "every message Meta accepted is recorded as sent"
    assert report.journaled == 0, "the database came back within the retry window"
    assert events(db_url, "NOTIFY_WORKER_DONE")[-1]["stopped_by"] == report.stopped_by

    _drain_again(db_url, emulator, tmp_path)
    assert counts(db_url) == {"sent": 3000}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0, "no duplicate after a database fault"


def test_results_outlive_a_long_outage_in_the_journal_and_are_replayed(
    db_url, emulator, postgres_server, tmp_path
) -> None:
    emulator.configure(limits_enabled=False, latency_ms=20)
    ids = _seed(db_url, 2000)
    drain = DrainThread(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, db_retry_s=1.0)
    wait_until(lambda: emulator.stats()["total"] >= 300, what="sending to be under way")
    postgres_server.stop()
    report = drain.join()
    assert report.stopped_by in ("db_error", "lost_lock")
    assert report.journaled > 0, "results the database could not take went to the journal"
    assert list(tmp_path.glob("*.jsonl")), "the journal is on disk"
    postgres_server.start()

    replay = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, rescue_after_s=0.5)
    assert replay.replayed == report.journaled
    assert not list(tmp_path.glob("*.jsonl")), "a replayed journal is removed"
    assert counts(db_url) == {"sent": 2000}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0, "no duplicate after a database fault"
    done = events(db_url, "NOTIFY_WORKER_DONE")
    assert any(e.get("replayed_from_journal") for e in done), "the lost drain's end is recorded too"


def test_send_with_the_database_down_prints_its_report_and_one_line(emulator, tmp_path) -> None:
    cli = str(Path(sys.executable).parent / "notify-pipeline")
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        "NOTIFY_DATA_DIR": str(tmp_path),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    done = subprocess.run([cli, "send"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert json.loads(done.stdout)["stopped_by"] == "db_error"
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot reach the queue database" in done.stderr


def _drain_connections(conn, db_name: str) -> dict[str, int]:
    """The drain's three connections by role: the lock holder is control; the one that last
    wrote results (unnest) is write; the other is claim."""
    rows = conn.execute(
        "SELECT a.pid, a.query, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
        "AND l.locktype = 'advisory') FROM pg_stat_activity a WHERE a.datname = %s "
        "AND a.application_name = 'notify-pipeline' AND a.pid <> pg_backend_pid()",
        (db_name,),
    ).fetchall()
    roles: dict[str, int] = {}
    for pid, query, locked in rows:
        role = "control" if locked else "write" if "unnest(" in (query or "") else "claim"
        roles.setdefault(role, pid)
    return roles


@pytest.mark.parametrize("role", ["control", "claim", "write"])
def test_terminating_each_drain_connection_stops_sending_and_loses_nothing(
    db_url, emulator, tmp_path, role
) -> None:
    emulator.configure(limits_enabled=False, latency_ms=20)
    ids = _seed(db_url, 3000)
    drain = DrainThread(
        db_url, emulator, throughput_per_s=None, journal_dir=tmp_path, max_seconds=120, pair_per_s=None
    )
    with fresh(db_url) as admin:
        name = admin.info.dbname
        wait_until(lambda: emulator.stats()["total"] >= 300, what="sending to be under way")
        wait_until(lambda: len(_drain_connections(admin, name)) == 3, what="three drain connections")
        pid = _drain_connections(admin, name)[role]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    report = drain.join()
    accepted = emulator.stats()["total"]
    assert report.stopped_by == ("lost_lock" if role == "control" else "db_error"), report.as_dict()
    assert counts(db_url).get("sent", 0) == accepted, "every accepted send is recorded"
    assert accepted < 3000, "it stopped sending at the fault"
    assert events(db_url, "NOTIFY_WORKER_DONE"), "the drain recorded its end"

    _drain_again(db_url, emulator, tmp_path)
    assert counts(db_url) == {"sent": 3000}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0, "no duplicate after a database fault"


def test_a_live_drain_keeps_its_lease_and_never_resends(db_url, emulator, tmp_path) -> None:
    """A slow API and a short lease: the drain extends what it holds, and another drain (of another
    sender, so no lock keeps them apart) never takes those rows."""
    emulator.configure(limits_enabled=False, latency_ms=800)
    ids = _seed(db_url, 40)
    common = dict(throughput_per_s=None, concurrency=2, batch_size=10, lease_s=2.0, heartbeat_s=0.2)
    first = DrainThread(db_url, emulator, journal_dir=tmp_path, sender="a", **common)
    time.sleep(3)
    second = DrainThread(db_url, emulator, journal_dir=tmp_path, sender="b", **common)
    first.join(), second.join()
    assert counts(db_url) == {"sent": 40}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0


def test_an_api_outage_fails_no_row(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    ids = _seed(db_url, 200)
    with FaultProxy(emulator.base_url) as proxy:
        proxy.set_mode("refuse")
        drain = DrainThread(
            db_url,
            emulator,
            settings=client_settings(emulator, base_url=proxy.url),
            throughput_per_s=50,
            max_seconds=60,
            breaker_max_wait_s=2,
            journal_dir=tmp_path,
        )
        wait_until(lambda: events(db_url, "NOTIFY_CIRCUIT_OPEN"), what="the circuit breaker to open")
        time.sleep(6)  # the outage goes on; the breaker probes
        proxy.set_mode("pass")
        report = drain.join()
    assert report.stopped_by == "drained", report.as_dict()
    assert counts(db_url) == {"sent": 200}, "an outage fails no row"
    assert_accepted_exactly(emulator, ids)
    with fresh(db_url) as conn:
        assert conn.execute("SELECT max(retry_count) FROM notifications").fetchone() == (0,)
    assert events(db_url, "NOTIFY_CIRCUIT_CLOSED")
    assert emulator.stats()["duplicates"] == 0


def test_an_account_block_holds_the_sender_and_fails_nothing(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=368)
    _seed(db_url, 500)
    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path)
    assert report.stopped_by == "account_error"
    assert counts(db_url) == {"queued": 500}, "the queue is intact"
    with fresh(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL").fetchone() == (
            0,
        )
        assert conn.execute("SELECT kind, code FROM sender_holds").fetchall() == [("account", "368")]
    again = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path)
    assert again.stopped_by == "held" and again.claimed == 0, "a held sender sends nothing"


def test_two_send_processes_for_one_sender_never_exceed_its_limit(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=True, throughput_per_s=80)
    ids = _seed(db_url, 400)
    cli = str(Path(sys.executable).parent / "notify-pipeline")
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_DATA_DIR": str(tmp_path),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }
    args = [cli, "send", "--throughput-per-s", "80", "--wait-for-sender", "60", "--max-seconds", "30"]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stats = emulator.stats()
    assert stats["by_code"].get("130429", 0) == 0, "one drain per sender keeps the limit"
    assert counts(db_url) == {"sent": 400}
    assert_accepted_exactly(emulator, ids)
    assert stats["duplicates"] == 0


def test_malformed_answers_never_kill_the_drain_or_strand_rows(db_url, emulator, tmp_path) -> None:
    _seed(db_url, 60)
    with FaultProxy(emulator.base_url) as proxy:
        proxy.set_mode("garbage")
        report = run_drain(
            db_url,
            emulator,
            settings=client_settings(emulator, base_url=proxy.url),
            throughput_per_s=None,
            concurrency=2,
            max_seconds=10,
            breaker_after=1000,
            journal_dir=tmp_path,
        )
    assert report.stopped_by in ("drained", "time_budget")
    assert report.retried["timeout_ambiguous"] > 0, "each malformed answer is a typed, counted result"
    with fresh(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL").fetchone() == (
            0,
        )


def test_huge_deferral_counts_and_throttling_never_overflow(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=130429)
    _seed(db_url, 20)
    with fresh(db_url) as conn:
        conn.execute("UPDATE notifications SET deferral_count = 100000")
    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path)
    assert report.stopped_by == "drained"
    assert report.deferred["130429"] == 20
    with fresh(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NULL "
            "AND next_attempt_at > now()"
        ).fetchone() == (20,)


def test_a_failing_task_stops_the_drain_and_keeps_every_result(
    db_url, emulator, tmp_path, monkeypatch
) -> None:
    """No silent deaths: a bug in the writer stops sending, is reported, and loses no result."""
    emulator.configure(limits_enabled=False, latency_ms=5)
    ids = _seed(db_url, 300)
    from notify_pipeline.engine import store

    real = store.write_outcomes
    calls = {"n": 0}

    async def flaky(conn, outcomes, *, worker):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("a bug in writing")
        return await real(conn, outcomes, worker=worker)

    monkeypatch.setattr(store, "write_outcomes", flaky)
    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=tmp_path)
    monkeypatch.setattr(store, "write_outcomes", real)
    assert report.stopped_by == "error" and "result writer failed" in report.fault
    assert report.journaled > 0
    assert events(db_url, "NOTIFY_WORKER_DONE")[-1]["stopped_by"] == "error"

    _drain_again(db_url, emulator, tmp_path)
    assert counts(db_url) == {"sent": 300}
    assert_accepted_exactly(emulator, ids)
    assert emulator.stats()["duplicates"] == 0

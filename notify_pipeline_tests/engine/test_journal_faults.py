"""A journal that cannot be written, over a real PostgreSQL (stopped mid-run) and the emulator over
HTTP, counted from the emulator's ledger: a drain whose journal folder refuses a write claims
nothing; one whose journal fills up while the database is away keeps the results in memory, stops
sending, says so in one line and does not end until the database or the journal takes them; the
next drain re-sends nothing.

The full disk is os.write raising ENOSPC for files under the journal folder (set on at will), in
this process or, for the CLI, in a `notify-pipeline send` subprocess started through
`support.full_disk.run_cli_on_a_disk_that_fills`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notify_pipeline_tests.support.drain_harness import (
    DrainThread,
    assert_each_sent_once,
    counts,
    events,
    fresh,
    wait_until,
)
from notify_pipeline_tests.support.engine import enqueue_many, load_demo_templates, run_drain
from notify_pipeline_tests.support.full_disk import FOLDER, FULL_FLAG, FullDisk
from notify_pipeline_tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow
HELD = "are recorded only in the memory of process"


def _seed(db_url: str, count: int) -> list[int]:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        return enqueue_many(conn, count)


def _each_sent_once(db_url: str, emulator, total: int) -> None:
    assert counts(db_url) == {"sent": total}, "every row sent"
    assert_each_sent_once(db_url, emulator, total)


def _unclaimed(db_url: str) -> int:
    with fresh(db_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NULL"
        ).fetchone()[0]


def _cli_env(db_url: str, emulator, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_DATA_DIR": str(data_dir),
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
        **extra,
    }


def test_a_drain_that_cannot_journal_claims_nothing(db_url, emulator, tmp_path) -> None:
    emulator.configure(limits_enabled=False)
    _seed(db_url, 20)
    in_the_way = tmp_path / "data"
    in_the_way.write_text("a file where the journal folder should be")

    report = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=in_the_way / "journal")
    assert report.stopped_by == "journal_error" and report.claimed == 0, report.as_dict()
    assert f"the journal folder {in_the_way / 'journal'} cannot be written" in report.fault
    assert report.failed_on_fault

    cli = str(Path(sys.executable).parent / "notify-pipeline")
    done = subprocess.run(
        [cli, "send"], env=_cli_env(db_url, emulator, in_the_way), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["stopped_by"] == "journal_error"
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be written" in lines[0] and "claims nothing" in lines[0], lines
    assert emulator.stats()["total"] == 0 and _unclaimed(db_url) == 20, "nothing claimed, nothing sent"


def test_a_full_journal_holds_the_results_until_the_database_returns(
    db_url, emulator, postgres_server, tmp_path, monkeypatch
) -> None:
    emulator.configure(limits_enabled=False, latency_ms=20)
    total = 2000
    _seed(db_url, total)
    folder = tmp_path / "journal"
    state = {"full": False}
    disk = FullDisk(folder, lambda: state["full"])
    monkeypatch.setattr(os, "write", disk.write)
    notices: list[str] = []
    drain = DrainThread(
        db_url,
        emulator,
        throughput_per_s=None,
        journal_dir=folder,
        db_retry_s=1.0,
        max_seconds=120,
        notice=notices.append,
    )
    wait_until(lambda: emulator.stats()["total"] >= 300, what="sending to be under way")
    state["full"] = True
    postgres_server.stop()
    wait_until(lambda: notices, timeout=60, what="the line about results held in memory")
    accepted_then = emulator.stats()["total"]
    assert drain.thread.is_alive(), "the drain does not end while it holds results"
    assert len(notices) == 1 and HELD in notices[0] and str(folder) in notices[0]
    assert "ENOSPC" in notices[0] and "Meta accepted" in notices[0]
    assert not list(folder.glob("*.jsonl")) or all(
        not p.read_text().strip() for p in folder.glob("*.jsonl")
    ), "a failed append leaves nothing behind"

    postgres_server.start()  # the journal stays full: the database takes them
    report = drain.join()
    assert report.held_in_memory > 0, report.as_dict()
    assert "until the database took them" in report.fault and "none was lost" in report.fault
    assert report.failed_on_fault
    assert emulator.stats()["total"] == accepted_then, "nothing was POSTed after the fault"
    assert counts(db_url).get("sent", 0) == accepted_then, "every accepted message is recorded"

    state["full"] = False
    again = run_drain(db_url, emulator, throughput_per_s=None, journal_dir=folder, rescue_after_s=0.5)
    assert again.stopped_by == "drained", again.as_dict()
    _each_sent_once(db_url, emulator, total)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="FullDisk reads /proc/self/fd")
def test_send_with_a_full_journal_and_the_database_away_says_so_and_exits_2(
    db_url, emulator, postgres_server, tmp_path
) -> None:
    emulator.configure(limits_enabled=False, latency_ms=20)
    total = 1500
    _seed(db_url, total)
    data, flag = tmp_path / "data", tmp_path / "disk-is-full"
    env = _cli_env(db_url, emulator, data, **{FULL_FLAG: str(flag), FOLDER: str(data / "journal")})
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    command = [
        sys.executable,
        "-c",
        "from notify_pipeline_tests.support.full_disk import run_cli_on_a_disk_that_fills as run; run()",
        "--",
        "send",
        "--throughput-per-s",
        "0",
        "--db-retry-seconds",
        "1",
        "--max-seconds",
        "300",
    ]
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=REPO_ROOT)
    try:
        wait_until(lambda: emulator.stats()["total"] >= 300, timeout=60, what="sending to be under way")
        flag.touch()
        postgres_server.stop()
        wait_until(lambda: HELD in stderr.read_text(), timeout=90, what="the line about held results")
        assert proc.poll() is None, "send does not exit while it holds results"
        accepted_then = emulator.stats()["total"]

        flag.unlink()  # disk space freed while the database is still away: the journal takes them
        assert proc.wait(timeout=120) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = stderr.read_text().strip().splitlines()
    assert "Traceback" not in stderr.read_text()
    assert sum(HELD in line for line in lines) == 1, lines
    assert "ENOSPC" in lines[0] and str(data / "journal") in lines[0]
    assert len(lines) == 2 and "held in memory" in lines[1] and "journal" in lines[1], lines
    report = json.loads(stdout.read_text())
    assert report["held_in_memory"] > 0 and report["journaled"] >= report["held_in_memory"], report
    assert emulator.stats()["total"] == accepted_then, "nothing was POSTed after the fault"

    postgres_server.start()
    again = subprocess.run(
        [str(Path(sys.executable).parent / "notify-pipeline"), "send", "--throughput-per-s", "0"],
        env=_cli_env(db_url, emulator, data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    replayed = json.loads(again.stdout)["replayed"]
    assert replayed >= report["held_in_memory"], "the journal's results were replayed"
    assert any(e.get("replayed_from_journal") for e in events(db_url, "NOTIFY_WORKER_DONE")), (
        "the held drain's end was journaled and replayed too"
    )
    _each_sent_once(db_url, emulator, total)

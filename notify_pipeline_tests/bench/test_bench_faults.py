"""`notify-pipeline bench --only faults` in its quickest form: Ctrl-C of `dev` and `dev` again once,
then a 30 s 503 storm against a serving drain. Real processes, a real PostgreSQL, the emulator.

Only counts from the section's own output are asserted (the emulator's ledger, the queue, Dagster's
run statuses), never how fast anything was: every message accepted exactly once through the restart
and the storm, no row failed or used an attempt in the storm, the stopped send runs not FAILURE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notify_pipeline.bench import BenchOptions
from notify_pipeline.bench.faults import check

CLI = str(Path(sys.executable).parent / "notify-pipeline")
# Two starts of `dev` and a 30 s storm, on a loaded two-core machine: generous.
BENCH_TIMEOUT_S = 1800


def run_faults(server_url: str, tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "NOTIFY_DATABASE_URL": server_url, "NOTIFY_DATA_DIR": str(tmp_path)}
    env.pop("WHATSAPP_ACCESS_TOKEN", None)
    command = [CLI, "bench", "--quick", "--only", "faults"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def assert_each_sent_once(part: dict[str, Any]) -> None:
    """The ledger against the queue: as many distinct messages accepted as were enqueued, none
    twice, every row sent and carrying a message id the emulator gave."""
    enqueued = part["enqueued"]
    assert enqueued > 0
    assert part["emulator_accepted"] == part["distinct_messages"] == enqueued
    assert part["duplicates"] == 0 and part["sent_rows_not_in_ledger"] == 0
    assert part["queue_after"] == {"sent": enqueued}


def test_the_fault_bench_runs_only_when_named() -> None:
    assert "faults" not in BenchOptions().sections, "the default bench stays a minute and a half"
    assert BenchOptions(sections=("faults",)).runs("faults")
    with pytest.raises(ValueError, match="nothing to measure"):
        BenchOptions(sections=("faults",), dev_restarts=0, storm_seconds=0)
    assert check({}) == {}, "no fault targets when the section did not run"


@pytest.mark.slow
def test_quick_fault_bench_counts_a_restart_and_a_storm(pg_server_url: str, tmp_path: Path) -> None:
    result = run_faults(pg_server_url, tmp_path)
    faults = result["faults"]

    restart = faults["dev_restart"]
    [round_] = restart["rounds"]
    stop = round_["ctrl_c"]
    assert stop["exit_code"] == 0 and stop["dev_killed_after_s"] is None
    assert stop["send_runs_started"] >= 1 and stop["rows_left_claimed"] == 0, "the stop gave its rows back"
    runs = round_["stopped_runs"]
    assert len(runs) == stop["send_runs_started"]
    # Every run took Ctrl-C as a planned stop: a drain that had started (serving, or standing by
    # on the sender lock) says so; a run still launching was marked by `dev` (dev_runs.py).
    assert {run["status"] for run in runs} <= {"SUCCESS", "CANCELED"}, f"Ctrl-C is a planned stop: {runs}"
    drained = [run for run in runs if run["stopped_by"] is not None]
    assert drained, f"no run's drain saw the stop: {runs}"
    assert {run["stopped_by"] for run in drained} == {"signal"}
    for start in (restart["first_start"], round_["again"]):
        assert start["enqueued_one_sent"] is True
        assert start["ui_to_enqueued_one_sent_s"] is not None and start["ui_to_first_send_s"] is not None
    assert restart["run_failure_alerts"] == 0
    assert restart["final_ctrl_c"]["exit_code"] == 0
    assert_each_sent_once(restart)

    storm = faults["storm"]
    assert storm["storm_s"] >= 30 and storm["enqueued_during_storm"] > 0
    assert storm["rows_failed"] == 0 and storm["all_settled"] is True
    assert storm["rows_that_used_attempts"] == 0, "the outage spent no row's attempt"
    assert storm["failed_posts_during_storm"] >= 1, "the storm was met"
    assert storm["probes_during_storm"] >= 1, "the breaker probed, and its probe met the 503 too"
    assert storm["storm_end_to_sending_s"] is not None
    assert storm["drain"]["failed"] == {} and storm["drain"]["stopped_by"] == "paused"
    assert_each_sent_once(storm)

    targets = result["targets"]
    assert set(targets) == {
        "ctrl_c_then_sent_within_30s",
        "ctrl_c_stop_within_grace",
        "ctrl_c_runs_not_failed",
        "ctrl_c_sent_once",
        "storm_rows_failed",
        "storm_probes_per_minute",
        "storm_sent_once",
    }
    for name in ("ctrl_c_runs_not_failed", "ctrl_c_sent_once", "storm_rows_failed", "storm_sent_once"):
        assert targets[name]["met"] is True, targets[name]
    assert all(target["met"] in (True, False) and target["value"] is not None for target in targets.values())

    base = result["database"]["scratch_database"]
    with psycopg.connect(pg_server_url) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{base}%",)).fetchall()
    assert left == [], "the scratch databases (the bench's, dev's queue, Dagster's) are dropped"

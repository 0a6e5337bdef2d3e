"""`notify-pipeline bench` end to end, in its quickest form: every section present, counts that add up.

Speed is measured, never asserted: these tests check that the bench measures what it says (every
notification sent once, nothing left behind), not how fast this machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notify_pipeline.bench import BenchOptions, faults, targets
from notify_pipeline.cli.bench import bench

CLI = str(Path(sys.executable).parent / "notify-pipeline")
TINY = [
    "--quick",
    "--messages",
    "300",
    "--rate-messages",
    "40",
    "--steady-seconds",
    "1",
    "--wakeup-messages",
    "5",
    "--deferred-messages",
    "2",
    "--ceiling-rows",
    "600",
]


def run_bench(server_url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "NOTIFY_DATABASE_URL": server_url, "NOTIFY_DATA_DIR": str(tmp_path)}
    env.pop("WHATSAPP_ACCESS_TOKEN", None)
    done = subprocess.run([CLI, "bench", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_ordered_ms(summary: dict[str, Any], count: int) -> None:
    """A summary_ms of `count` durations: every figure present and in order (no timing asserted)."""
    assert summary["count"] == count
    assert None not in (summary["p50_ms"], summary["p90_ms"], summary["p99_ms"], summary["max_ms"])
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def assert_served_and_paused(drain: dict[str, Any]) -> None:
    """One serving drain ran the measurement and was ended by the bench's pause, with no fault."""
    assert drain["mode"] == "serving" and drain["stopped_by"] == "paused"
    assert drain["failed"] == {} and drain["retried"] == {} and drain["deferred"] == {}


def assert_all_sent_once(cell: dict[str, Any], count: int) -> None:
    assert cell["sent"] == count and cell["not_sent"] == 0
    assert cell["queue_after"] == {"sent": count}
    assert cell["emulator"]["accepted"] == count
    assert cell["emulator"]["duplicates"] == 0


def test_the_command_line_shows_the_defaults_the_bench_uses() -> None:
    defaults = BenchOptions()
    shown = {p.name: p.default for p in bench.params if getattr(p, "show_default", False)}
    assert len(shown) == 18 and set(shown) <= {f.name for f in fields(BenchOptions)}
    for name, value in shown.items():
        expected = getattr(defaults, name)
        assert (tuple(value) if isinstance(value, list | tuple) else value) == expected, name


@pytest.mark.slow
def test_quick_bench_reports_every_section_with_counts_that_add_up(
    pg_server_url: str, tmp_path: Path
) -> None:
    result = run_bench(pg_server_url, tmp_path, *TINY)

    assert [cell["latency_ms"] for cell in result["send_path"]] == [0.0, 50.0]
    for cell in result["send_path"]:
        assert_all_sent_once(cell, 300)
        assert cell["emulator"]["rejected"] == 0
        assert cell["messages_per_s"] > 0 and cell["stopped_by"] == "drained"
    slow = result["send_path"][1]
    assert slow["concurrency_bound_per_s"] == result["settings"]["concurrency"] / 0.05
    assert slow["share_of_bound"] > 0

    rate = result["rate_limit"]
    # Whether the limit held is timing (a loaded machine may bunch requests, and the emulator then
    # refuses some with 130429): only counts are checked, and they must agree with each other.
    assert rate["sent"] + rate["not_sent"] == 40
    assert rate["emulator"]["accepted"] == rate["sent"] and rate["emulator"]["duplicates"] == 0
    assert rate["achieved_per_s"] > 0
    refused = rate["refused_130429"]
    assert isinstance(refused, int) and refused == rate["emulator"]["by_code"].get("130429", 0)
    assert rate["retried_or_deferred"].get("130429", 0) == refused, "each refusal is a deferral"

    latency = result["latency"]
    # The steady load is the tier less the pacing margin: what one number carries for ever.
    assert latency["load_per_s"] < latency["tier_per_s"] == result["settings"]["rate_per_s"]
    steady = round(latency["load_per_s"] * latency["seconds"])
    assert latency["enqueued"] == steady and latency["all_settled"] is True
    assert_served_and_paused(latency["drain"])
    assert latency["drain"]["sent"] == steady and latency["queue_after"] == {"sent": steady}
    assert latency["emulator"]["accepted"] == steady and latency["emulator"]["duplicates"] == 0
    # A 130429 would be a deferral, and the serving drain deferred nothing (assert_served_and_paused).
    assert latency["refused_130429"] == 0
    assert_ordered_ms(latency["enqueue_to_accepted"], steady)
    assert latency["enqueue_to_accepted"]["p50_ms"] >= 0

    wakeup = result["wakeup"]
    assert wakeup["idle_poll_s"] >= 600, "only NOTIFY and the timer may wake the drain"
    assert wakeup["on_enqueue"]["messages"] == wakeup["on_enqueue"]["accepted"] == 5
    assert wakeup["on_due"]["messages"] == wakeup["on_due"]["accepted"] == 2
    assert wakeup["lost"] == 0 and wakeup["all_settled"] is True
    assert_ordered_ms(wakeup["on_enqueue"]["commit_to_accepted"], 5)
    assert_ordered_ms(wakeup["on_due"]["due_to_accepted"], 2)
    assert wakeup["on_enqueue"]["commit_to_accepted"]["p50_ms"] > 0
    # One more than counted: the first notification opens the drain's HTTP connection.
    assert_served_and_paused(wakeup["drain"])
    assert wakeup["queue_after"] == {"sent": 8} and wakeup["drain"]["sent"] == 8
    assert wakeup["emulator"]["accepted"] == 8 and wakeup["emulator"]["duplicates"] == 0

    urgent = result["priority"]
    backlog, sent_behind = urgent["backlog"], urgent["backlog_sent"]
    assert backlog == 2000 and urgent["otps"] == 2 and len(urgent["otp"]) == 2
    assert urgent["otp_lost"] == 0 and urgent["all_settled"] is True
    for otp in urgent["otp"]:
        assert otp["commit_to_accepted_ms"] > 0 and otp["commit_to_claimed_ms"] is not None
        assert 0 <= otp["backlog_waiting"] < backlog
    assert_ordered_ms(urgent["commit_to_accepted"], 2)
    assert urgent["max_ms"] == urgent["commit_to_accepted"]["max_ms"]
    assert_served_and_paused(urgent["drain"])
    # Nothing lost or sent twice: what the drain did not send went back to the queue.
    assert urgent["queue_after"] == {"sent": sent_behind + 2, "queued": backlog - sent_behind}
    assert urgent["emulator"]["accepted"] == sent_behind + 2 and urgent["emulator"]["duplicates"] == 0
    assert urgent["refused_130429"] == 0  # as for latency: the drain deferred nothing

    hooks = result["webhooks"]
    assert hooks["synchronous_commit"] == "on" and hooks["one_status_per_post"] is True
    assert hooks["applied"] == hooks["statuses"] and hooks["lost"] == 0
    assert hooks["messages_read"] == hooks["statuses"] // 3
    assert_ordered_ms(hooks["answer"], hooks["statuses"] + hooks["non_200_answers_retried"])
    assert hooks["statuses_per_s"] > 0

    ceiling = result["ceiling"]
    for table in ("notifications", "bare_table"):
        assert ceiling[table]["rows"] == 600 and ceiling[table]["rows_per_s"] > 0
    assert ceiling["notifications"]["queue_after"] == {"sent": 600}

    assert set(result["targets"]) == {
        "throughput_0ms",
        "share_of_bound_50ms",
        "rate_limit_held",
        "latency_p99",
        "wakeup_p99",
        "otp_behind_backlog",
        "webhook_statuses_per_s",
    }
    # Whether a target is met is timing; that each is decided, on a number, from the figures
    # reported beside it is not.
    for name, check in result["targets"].items():
        assert isinstance(check["met"], bool), (name, check)
        assert isinstance(check["value"], int | float) and not isinstance(check["value"], bool), (name, check)
    assert result["targets"] == {**targets.check(result), **faults.check(result)}
    with psycopg.connect(pg_server_url) as conn:
        left = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (result["database"]["scratch_database"],)
        ).fetchone()
    assert left is None, "the scratch database is dropped at the end"


@pytest.mark.slow
def test_bench_against_a_given_endpoint_skips_what_needs_the_emulator(
    pg_server_url: str, tmp_path: Path, emulator
) -> None:
    emulator.configure(limits_enabled=False)
    result = run_bench(
        pg_server_url,
        tmp_path,
        *TINY,
        "--only",
        "send_path",
        "--only",
        "latency",
        "--base-url",
        emulator.base_url,
        "--token",
        emulator.token,
    )
    assert set(result) >= {"send_path", "latency"} and "rate_limit" not in result and "ceiling" not in result
    [cell] = result["send_path"]
    assert cell["latency_ms"] is None and cell["sent"] == 300 and "skipped" in cell["emulator"]
    assert "skipped" in result["latency"]["enqueue_to_accepted"]
    steady = result["latency"]["enqueued"]  # the tier less the pacing margin, for a second
    assert steady == round(result["latency"]["load_per_s"] * result["latency"]["seconds"])
    assert result["latency"]["enqueue_to_sent_at"]["count"] == steady
    assert emulator.stats()["total"] == 300 + steady and emulator.stats()["duplicates"] == 0

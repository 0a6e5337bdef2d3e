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

from notify_pipeline.bench import BenchOptions
from notify_pipeline.cli_bench import bench

CLI = str(Path(sys.executable).parent / "notify-pipeline")
TINY = [
    "--quick",
    "--messages",
    "300",
    "--rate-messages",
    "40",
    "--steady-seconds",
    "1",
    "--ceiling-rows",
    "600",
]


def run_bench(server_url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "NOTIFY_DATABASE_URL": server_url, "NOTIFY_DATA_DIR": str(tmp_path)}
    env.pop("WHATSAPP_ACCESS_TOKEN", None)
    done = subprocess.run([CLI, "bench", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_all_sent_once(cell: dict[str, Any], count: int) -> None:
    assert cell["sent"] == count and cell["not_sent"] == 0
    assert cell["queue_after"] == {"sent": count}
    assert cell["emulator"]["accepted"] == count
    assert cell["emulator"]["duplicates"] == 0


def test_the_command_line_shows_the_defaults_the_bench_uses() -> None:
    defaults = BenchOptions()
    shown = {p.name: p.default for p in bench.params if getattr(p, "show_default", False)}
    assert len(shown) == 8 and set(shown) <= {f.name for f in fields(BenchOptions)}
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
    # Whether the limit held is timing (a loaded machine may bunch requests): only counts are checked.
    assert rate["sent"] + rate["not_sent"] == 40
    assert rate["emulator"]["duplicates"] == 0
    assert rate["achieved_per_s"] > 0 and rate["refused_130429"] >= 0

    latency = result["latency"]
    assert latency["enqueued"] == 80 and latency["drains"] >= 1
    assert latency["emulator"]["duplicates"] == 0
    accepted = latency["enqueue_to_accepted"]
    assert 0 < accepted["count"] <= 80
    assert 0 <= accepted["p50_ms"] <= accepted["p99_ms"] <= accepted["max_ms"]

    ceiling = result["ceiling"]
    for table in ("notifications", "bare_table"):
        assert ceiling[table]["rows"] == 600 and ceiling[table]["rows_per_s"] > 0
    assert ceiling["notifications"]["queue_after"] == {"sent": 600}

    assert set(result["targets"]) == {
        "throughput_0ms",
        "share_of_bound_50ms",
        "rate_limit_held",
        "latency_p99",
    }
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
    assert result["latency"]["enqueue_to_sent_at"]["count"] == 80
    assert emulator.stats()["total"] == 380 and emulator.stats()["duplicates"] == 0

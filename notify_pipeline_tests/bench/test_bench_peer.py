"""`notify-pipeline bench --only peer` in miniature: the send path beside PgQueuer + aiohttp.

Speed is measured, never asserted. What is asserted: each run, product's and peer's, put every
enqueued id in the emulator's ledger exactly once (the ledger, not a database, is what counts),
and the rates, ratios and CPU figures are real numbers computed from those runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pgqueuer", reason="the peer needs the bench extra: pip install -e '.[bench]'")
pytest.importorskip("asyncpg", reason="the peer needs the bench extra: pip install -e '.[bench]'")

CLI = str(Path(sys.executable).parent / "notify-pipeline")
MESSAGES = 300
LATENCIES = (0.0, 50.0)


@pytest.mark.slow
def test_the_peer_section_sends_the_same_messages_once_each_way_and_compares(
    pg_server_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "NOTIFY_DATABASE_URL": pg_server_url, "NOTIFY_DATA_DIR": str(tmp_path)}
    env.pop("WHATSAPP_ACCESS_TOKEN", None)
    args = [CLI, "bench", "--quick", "--only", "peer", "--messages", str(MESSAGES)]
    for latency in LATENCIES:
        args += ["--latency-ms", f"{latency:g}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["settings"]["sections"] == ["peer"] and "send_path" not in result
    peer = result["peer"]
    assert peer["messages"] == MESSAGES and peer["in_flight"] == 64 and peer["rounds"] == 3
    in_use = peer["transport_in_use"]

    # Each round, at each latency: one drain, then the peer, each with its ledger.
    runs = peer["runs"]
    assert [(run["round"], run["latency_ms"], run["side"]) for run in runs] == [
        (round_number, latency, side)
        for round_number in (1, 2, 3)
        for latency in LATENCIES
        for side in (in_use, "peer")
    ]
    for run in runs:
        assert run["ledger"] == {
            "enqueued": MESSAGES,
            "received": MESSAGES,
            "once": MESSAGES,
            "missing": 0,
            "more_than_once": 0,
            "not_enqueued": 0,
        }, run
        assert run["sent_once"] and run["sent"] == MESSAGES and run["failed"] == 0
    assert peer["all_sent_once"]

    # The medians: positive rates, the ratio product / peer, CPU per 1,000 messages both ways.
    local_server = peer["postgres_cpu"] == "from /proc"
    assert [cell["latency_ms"] for cell in peer["cells"]] == list(LATENCIES)
    for cell in peer["cells"]:
        product = cell["product"][in_use]
        assert cell["peer"]["messages_per_s"] > 0 and product["messages_per_s"] > 0
        assert product["ratio"] == pytest.approx(
            product["messages_per_s"] / cell["peer"]["messages_per_s"], abs=1e-3
        )
        assert product["ratio"] > 0
        for side in (cell["peer"], product):
            assert side["rounds"] == 3
            assert side["cpu_per_1000"]["process_s"] > 0
            if local_server:
                assert side["cpu_per_1000"]["postgres_s"] > 0
            else:
                assert side["cpu_per_1000"]["postgres_s"] is None
    assert peer["cells"][1]["bound_per_s"] == 1280.0  # 64 in flight / 50 ms
    assert set(peer["issue_21"]) == {"ratio_0ms", "share_of_bound_50ms"}

    # The side-by-side table is printed as the section ends, and is in the result.
    assert any(line.startswith("| PgQueuer + aiohttp |") for line in peer["table"])
    assert "bench: | PgQueuer + aiohttp |" in done.stderr

"""`notify-pipeline bench --only pacing` in miniature: the figures come from real counts.

Speed is measured, never asserted. Inbound messages take half the tier here (the emulator
enforces 40 of the drain's 80 msg/s), so 130429 does come: the test checks that every refusal
the emulator counted is a deferral the drains counted, that each row is sent once all the same,
and that the shares are computed from those counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "notify-pipeline")
ROWS = 200


@pytest.mark.slow
def test_the_pacing_section_drains_a_backlog_once_and_reports_its_shares(
    pg_server_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "NOTIFY_DATABASE_URL": pg_server_url, "NOTIFY_DATA_DIR": str(tmp_path)}
    env.pop("WHATSAPP_ACCESS_TOKEN", None)
    args = [CLI, "bench", "--quick", "--only", "pacing", "--pacing-rows", str(ROWS), "--rate", "80"]
    args += ["--pacing-inbound-share", "0.5"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["settings"]["sections"] == ["pacing"]
    assert set(result) >= {"pacing", "targets"} and "rate_limit" not in result

    paced = result["pacing"]
    assert paced["rows"] == ROWS and paced["tier_per_s"] == 80.0 and paced["inbound_share"] == 0.5
    assert paced["status_webhooks"] == "to notify-pipeline serve"
    assert paced["pacing"]["paced_per_s"] < paced["tier_per_s"], "a margin under the tier"

    # Every row sent once: by the drain, then by follow-ups for rows a 130429 deferred.
    emulator = paced["emulator"]
    assert paced["sent"] + paced["follow_up"]["sent"] == ROWS
    assert emulator["accepted"] == ROWS and emulator["duplicates"] == 0
    assert sum(paced["queue_after"].values()) == ROWS and paced["left_deferred_130429"] == 0

    refused = paced["refused_130429"]
    assert refused == emulator["by_code"].get("130429", 0) > 0, "the emulator enforced half the tier"
    assert paced["deferred"].get("130429", 0) + paced["follow_up"]["deferred_130429"] == refused
    assert paced["sends"] == emulator["accepted"] + emulator["rejected"]
    assert paced["refused_share"] == round(refused / paced["sends"], 5)
    assert paced["achieved_share_of_tier"] == pytest.approx(paced["achieved_per_s"] / 80.0, abs=1e-3)
    assert paced["achieved_per_s"] > 0

    targets = result["targets"]
    assert targets["backlog_share_of_tier"]["value"] == paced["achieved_share_of_tier"]
    assert targets["backlog_130429_share"]["value"] == paced["refused_share"]
    assert isinstance(targets["backlog_share_of_tier"]["met"], bool)

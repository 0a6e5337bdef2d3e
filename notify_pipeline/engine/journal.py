"""The drain's local journal: results of accepted sends that could not reach the database.

When the database stays away longer than the drain retries its writes, every outcome still in hand
(above all `sent` ones: Meta accepted them, and sending them again would be a duplicate) and the
drain's closing event are appended here, one JSON line each, fsynced. The next drain of the sender,
on this host, replays the journal before it claims anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from notify_pipeline.engine.store import Outcome


def journal_dir(data_dir: Path, sender: str) -> Path:
    return data_dir / "journal" / re.sub(r"[^A-Za-z0-9_.-]", "_", sender)


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def append(directory: Path, worker: str, outcomes: Iterable[Outcome], events: Iterable[tuple] = ()) -> Path:
    """Append outcomes (and (event_type, details) pairs) for `worker`; durable when it returns."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', worker)}.jsonl"
    lines = [
        json.dumps({"worker": worker, "outcome": {k: _encode(v) for k, v in asdict(o).items()}})
        for o in outcomes
    ]
    lines += [json.dumps({"worker": worker, "event": [kind, details]}) for kind, details in events]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def pending(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def read(path: Path) -> tuple[dict[str, list[Outcome]], list[tuple[str, dict]]]:
    """Outcomes by worker, and events. A line that is not a journal entry (a crash mid-append) is skipped."""
    outcomes: dict[str, list[Outcome]] = {}
    events: list[tuple[str, dict]] = []
    for line in path.read_text(errors="replace").splitlines():
        # One line that is not ours (torn, or edited by hand) must not stop every later drain's
        # replay: it is skipped, and the rest of the file still lands.
        try:
            entry = json.loads(line)
            if "outcome" in entry:
                data = entry["outcome"]
                if data.get("next_attempt_at"):
                    data["next_attempt_at"] = datetime.fromisoformat(data["next_attempt_at"])
                outcomes.setdefault(entry["worker"], []).append(Outcome(**data))
            elif "event" in entry:
                events.append((entry["event"][0], dict(entry["event"][1])))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            continue
    return outcomes, events

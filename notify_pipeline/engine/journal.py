"""The drain's local journal: results of accepted sends that could not reach the database.

When the database stays away longer than the drain retries its writes, every outcome still in hand
(above all `sent` ones: Meta accepted them, and sending them again would be a duplicate) and the
drain's closing event are appended here, one JSON line each, fsynced. The next drain of the sender,
on this host, replays the journal before it claims anything.

An append that fails (a full disk, a read-only or missing folder) raises OSError and leaves the
file as it was, so a later append or the replay never meets half an entry; the writer then keeps
the results in memory (engine/writer.py). A drain checks the folder takes a write before it claims.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from notify_pipeline.engine.store import Outcome
from notify_pipeline.private_files import make_dirs


def journal_dir(data_dir: Path, sender: str) -> Path:
    return data_dir / "journal" / re.sub(r"[^A-Za-z0-9_.-]", "_", sender)


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def append(directory: Path, worker: str, outcomes: Iterable[Outcome], events: Iterable[tuple] = ()) -> Path:
    """Append outcomes (and (event_type, details) pairs) for `worker`; durable when it returns."""
    make_dirs(directory)
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', worker)}.jsonl"
    lines = [
        json.dumps({"worker": worker, "outcome": {k: _encode(v) for k, v in asdict(o).items()}})
        for o in outcomes
    ]
    lines += [json.dumps({"worker": worker, "event": [kind, details]}) for kind, details in events]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, ("\n".join(lines) + "\n").encode())
            os.fsync(fd)
        except OSError:
            # Take back what did land: a torn tail would swallow the next append's first line.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return path


def _write_all(fd: int, data: bytes) -> None:
    # A full disk may take part of a write and report how much: the rest is written or raises.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def check_writable(directory: Path) -> None:
    """Raise OSError unless `directory` (made if missing) takes a small fsynced file: a drain
    that could not journal its results through a database outage must not claim."""
    make_dirs(directory)
    probe = directory / f".writable-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, b"{}\n" * 64)  # a few hundred bytes: about one entry
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def describe_os_error(exc: OSError) -> str:
    """One line naming the error, e.g. `ENOSPC: No space left on device`."""
    name = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
    text = exc.strerror or str(exc) or "no detail"
    return f"{name}: {text}" if name else f"{type(exc).__name__}: {text}"


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

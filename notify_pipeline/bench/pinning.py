"""CPU pinning for honest measurements on a small machine: the API server on one core, us on another.

On a 2-core machine the emulator and the sender share the cores. Pinning each to its own core (as
bench/transport_compare.py does) keeps the scheduler from stacking both on one core and makes runs
comparable. PostgreSQL is not pinned: it floats over all cores, as it would in production.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

# The cores this process may use, read once: after on_sender_core() the thread's own affinity
# is a single core, and the emulator started then must still get the other one.
_ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def cores() -> tuple[int, int] | None:
    """(emulator core, sender core), or None when pinning is not possible here (no taskset, 1 core)."""
    if shutil.which("taskset") is None or len(_ALLOWED) < 2:
        return None
    return _ALLOWED[0], _ALLOWED[1]


def command_prefix(enabled: bool = True, core: int | None = None) -> list[str]:
    """`taskset -c CORE` that puts a server on the emulator core (or on `core`), or nothing when
    pinning is off."""
    pair = cores() if enabled else None
    return ["taskset", "-c", str(pair[0] if core is None else core)] if pair else []


@contextmanager
def on_sender_core(enabled: bool = True) -> Iterator[bool]:
    """Pin this thread, and what it starts meanwhile, to the sender core; yields whether it did.
    The previous affinity comes back afterwards.

    Start anything long-lived beforehand (the embedded PostgreSQL): children inherit the pin.
    """
    pair = cores() if enabled else None
    if pair is None:
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {pair[1]})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def describe(pinned: bool) -> dict[str, object]:
    """Where things ran, for the JSON output."""
    pair = cores() if pinned else None
    return {
        "cpus": os.cpu_count(),
        "pinned": pair is not None,
        "emulator_core": pair[0] if pair else None,
        "sender_core": pair[1] if pair else None,
        "postgres": "not pinned",
    }

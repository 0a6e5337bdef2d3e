"""CPU seconds a measurement costs: in the bench process (the drain, or the peer), and in PostgreSQL.

Both send paths run inside the bench process (the emulator is a process of its own), so the
process's CPU time over a run is theirs. PostgreSQL's is read from /proc: the postmaster's own
time plus the time of its children (backends, autovacuum, the WAL writer, ...). A backend that
exits is folded into the postmaster's "waited-for children" time by the kernel, so counting
that field too keeps short-lived connections in the sum. A server on another machine (or in
another PID namespace) cannot be read this way: its figure is then None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

PROC = Path("/proc")
SERVER_COMMAND = "postgres"
# How long a reading of the server's CPU may wait for its processes to hold still.
STEADY_READ_S = 2.0


@dataclass(frozen=True)
class ProcessStat:
    """What /proc/<pid>/stat says of a process that CPU accounting needs."""

    command: str
    state: str  # R, S, ...; Z: exited, not yet waited for by its parent
    parent: int
    # user + system time, its own and that of the children it has waited for, in seconds
    cpu_s: float


def read_stat(pid: int) -> ProcessStat | None:
    """/proc/<pid>/stat of a process, or None once it is gone (or /proc is not there)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    close = text.rindex(")")
    fields = text[close + 2 :].split()
    # After the name: state, ppid, ...; utime, stime, cutime, cstime are fields 14 to 17 of the file.
    ticks = sum(int(value) for value in fields[11:15])
    command = text[text.index("(") + 1 : close]
    return ProcessStat(command, fields[0], int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))


def children_of(parent: int) -> list[ProcessStat]:
    """The processes whose parent is `parent`, zombies included."""
    children = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.parent == parent:
                children.append(stat)
    return children


def find_postmaster(conn: psycopg.Connection) -> int | None:
    """The postmaster of the server `conn` talks to, if it runs on this machine: its backend's
    parent, both named postgres in /proc (else the PID means something else here, or nothing)."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    backend = read_stat(row[0]) if row is not None else None
    if backend is None or backend.command != SERVER_COMMAND:
        return None
    postmaster = read_stat(backend.parent)
    return backend.parent if postmaster is not None and postmaster.command == SERVER_COMMAND else None


def server_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds the server has used so far: the postmaster, its exited children (in its
    waited-for time) and its live children; None when the server cannot be read.

    A backend that exits while /proc is read would be counted twice or not at all, and one that
    has exited but is not waited for yet (a zombie) shows none of its time: the reading is taken
    again until the postmaster's figure held still across it and no child was a zombie. Read
    right after a run, this also waits out the backends of the run's closing connections.
    """
    if postmaster is None:
        return None
    deadline = time.monotonic() + STEADY_READ_S
    while True:
        before = read_stat(postmaster)
        children = children_of(postmaster)
        after = read_stat(postmaster)
        if before is None or after is None:
            return None
        steady = before.cpu_s == after.cpu_s and all(child.state != "Z" for child in children)
        if steady or time.monotonic() > deadline:
            return after.cpu_s + sum(child.cpu_s for child in children)
        time.sleep(0.005)


@dataclass
class CpuSpent:
    """CPU seconds over one run, filled in when its `cpu_spent` block ends."""

    process_s: float = 0.0
    server_s: float | None = None

    def per_thousand(self, messages: int) -> dict[str, float | None]:
        """Seconds per 1,000 messages: the bench process's and PostgreSQL's."""

        def scaled(seconds: float | None) -> float | None:
            return None if seconds is None or messages == 0 else round(seconds * 1000 / messages, 4)

        return {"process_s": scaled(self.process_s), "postgres_s": scaled(self.server_s)}


@contextmanager
def cpu_spent(postmaster: int | None) -> Iterator[CpuSpent]:
    """Measure the CPU this process and the server of `postmaster` use inside the block."""
    spent = CpuSpent()
    server_before = server_cpu_s(postmaster)
    process_before = time.process_time()
    yield spent
    spent.process_s = time.process_time() - process_before
    server_after = server_cpu_s(postmaster)
    if server_before is not None and server_after is not None:
        spent.server_s = server_after - server_before

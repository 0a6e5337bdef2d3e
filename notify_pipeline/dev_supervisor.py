"""Keeps `notify-pipeline dev`'s children running, and takes each child's whole process group with it.

Each child starts in a session of its own, so its process group holds it and everything it starts
without a new session: Dagster's daemon starts its code server and the send runs' workers that way.
When a child dies, what is left of its group is stopped (SIGTERM, then SIGKILL after a grace: a send
run takes SIGTERM as a planned stop) before the child starts again, after a back-off that doubles
while it keeps dying and starts over once it has stayed up a while. The other children keep running.
Stopping stops every group that still has a process, including those of children that had already
exited, since what they started may live on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

GRACE_S = 20.0  # SIGTERM to SIGKILL: a send run's planned stop fits well inside it
TICK_S = 0.2

PROC = Path("/proc")


@dataclass
class Backoff:
    """The wait before a dead child starts again: `initial`, doubling up to `ceiling` while it keeps
    dying, back to `initial` once a start has stayed up `stable_after` seconds."""

    initial: float = 1.0
    ceiling: float = 30.0
    stable_after: float = 60.0
    _next: float | None = None

    def delay_after(self, uptime: float) -> float:
        if self._next is None or uptime >= self.stable_after:
            self._next = self.initial
        delay = self._next
        self._next = min(delay * 2, self.ceiling)
        return delay


def live_groups(pgids: Iterable[int]) -> set[int]:
    """Which of these process groups still hold a process that is not a zombie. Zombies are left out:
    an orphan's zombie waits for PID 1, which in some containers never reaps it."""
    wanted = set(pgids)
    if not wanted:
        return set()
    if not PROC.is_dir():  # no /proc (macOS): a zombie counts as alive, launchd reaps them soon
        return {pgid for pgid in wanted if _group_answers(pgid)}
    found: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) in wanted and state not in ("Z", "X"):
            found.add(int(pgrp))
    return found


def _group_answers(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group emptied meanwhile
        os.killpg(pgid, sig)


@dataclass
class Child:
    """One supervised child: how to start it, and where it is in its life."""

    name: str
    start: Callable[[], subprocess.Popen]
    backoff: Backoff
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    delays: list[float] = field(default_factory=list)  # each back-off waited, for the curious
    draining: int | None = None  # the dead child's group, being stopped
    kill_at: float = 0.0
    restart_at: float | None = None


class Supervisor:
    """Starts the children, restarts one that dies, and stops them all with their groups."""

    def __init__(
        self,
        starters: Mapping[str, Callable[[], subprocess.Popen]],
        *,
        say: Callable[[str], None] = print,
        grace: float = GRACE_S,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.children = {name: Child(name, start, backoff()) for name, start in starters.items()}
        self.say = say
        self.grace = grace
        # Every group started and not yet seen empty: a child's exit does not end its group.
        self.groups: set[int] = set()

    def pids(self) -> dict[str, int | None]:
        """Each child's pid while it runs (None while it waits to start again)."""
        return {
            name: child.process.pid if child.process and child.restart_at is None else None
            for name, child in self.children.items()
        }

    def start(self) -> None:
        for child in self.children.values():
            self._launch(child)

    def run(self, until: Callable[[], bool]) -> None:
        while not until():
            self.step()
            time.sleep(TICK_S)

    def step(self) -> None:
        """One look at every child: notice deaths, drain dead children's groups, restart when due."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is None and child.process and child.process.poll() is not None:
                self._died(child, now)
            if child.draining is not None:
                self._drain(child, now)
            if child.draining is None and child.restart_at is not None and now >= child.restart_at:
                self._launch(child)

    def stop(self) -> None:
        """SIGTERM to every group with a process left, SIGKILL to what remains after the grace."""
        groups = live_groups(self.groups)
        for pgid in groups:
            signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while groups and time.monotonic() < deadline:
            time.sleep(TICK_S)
            groups = live_groups(groups)
        for pgid in groups:
            self.say(f"process group {pgid} still running after {self.grace:g} s: killed")
            signal_group(pgid, signal.SIGKILL)
        for child in self.children.values():
            if child.process:
                child.process.wait()  # reaped, so no zombie of ours is left behind
        deadline = time.monotonic() + 5  # SIGKILL cannot be refused; this only lets the kernel act
        while groups and time.monotonic() < deadline:
            time.sleep(TICK_S)
            groups = live_groups(groups)
        self.groups = groups

    def _launch(self, child: Child) -> None:
        restarting = child.restart_at is not None
        try:
            process = child.start()
        except OSError as error:
            if not restarting:
                raise
            self.say(f"{child.name} did not start: {error}")
            child.restart_at = time.monotonic() + child.backoff.delay_after(0.0)
            return
        pgid = os.getpgid(process.pid)
        if pgid != process.pid or pgid == os.getpgrp():
            # Signalling its group would reach processes that are not the child's (dev itself).
            process.kill()
            process.wait()
            raise ValueError(f"{child.name} must start in a session of its own (start_new_session)")
        self.groups.add(pgid)
        child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        if restarting:
            child.restarts += 1
            self.say(f"{child.name} restarted (pid {process.pid})")

    def _died(self, child: Child, now: float) -> None:
        assert child.process is not None
        delay = child.backoff.delay_after(now - child.started_at)
        child.delays.append(delay)
        child.restart_at = now + delay
        child.draining, child.kill_at = child.process.pid, now + self.grace
        self.say(
            f"{child.name} exited with code {child.process.returncode}; stopping what it left "
            f"running, restarting it in {delay:g} s"
        )
        signal_group(child.draining, signal.SIGTERM)

    def _drain(self, child: Child, now: float) -> None:
        assert child.draining is not None
        if not live_groups([child.draining]):
            self.groups.discard(child.draining)
            child.draining = None
        elif now >= child.kill_at:
            self.say(f"{child.name}: processes still running {self.grace:g} s after it exited: killed")
            signal_group(child.draining, signal.SIGKILL)
            child.kill_at = float("inf")  # once; the loop waits for the kernel to finish them

"""`notify-pipeline dev`'s supervisor, with real child processes that start grandchildren in their
own process group, as Dagster's daemon starts its code server and run workers."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from notify_pipeline.dev_supervisor import Backoff, Supervisor

# A child like the daemon: two grandchildren in its process group (no new session), one that takes
# SIGTERM as a planned stop (it notes it) and one that ignores it (only SIGKILL ends it). It writes
# the three pids once both grandchildren are ready, then waits, or exits at once with "--exit".
FAMILY = """
import json, os, signal, subprocess, sys, time
folder, mode = sys.argv[1], sys.argv[2]
polite = '''
import signal, sys, time
def stop(*_):
    with open(sys.argv[1], "a") as marker:
        marker.write("SIGTERM\\\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
'''
stubborn = '''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(1)
'''
me = os.getpid()
kids = {
    "polite": subprocess.Popen([sys.executable, "-c", polite, f"{folder}/{me}.sigterm"], stdout=subprocess.PIPE),
    "stubborn": subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE),
}
for kid in kids.values():
    kid.stdout.readline()
pids = {"leader": me, **{name: kid.pid for name, kid in kids.items()}}
with open(f"{folder}/{me}.tmp", "w") as out:
    json.dump(pids, out)
os.rename(f"{folder}/{me}.tmp", f"{folder}/{me}.json")
if mode == "--exit":
    sys.exit(0)
while True:
    time.sleep(1)
"""

GRACE_S = 2.0  # the supervisor's SIGTERM-to-SIGKILL grace, short so the stubborn grandchild goes soon


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (PID 1 here may never reap an orphan's zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90, step=None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step:
            step()
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def family_starter(folder: Path, mode: str = "--stay") -> Callable[[], subprocess.Popen]:
    script = folder / "family.py"
    script.write_text(FAMILY)
    return lambda: subprocess.Popen([sys.executable, str(script), str(folder), mode], start_new_session=True)


def family_of(folder: Path, leader: int, step=None) -> dict[str, int]:
    """The pids a family child wrote once its grandchildren were ready."""
    path = folder / f"{leader}.json"
    wait_for(path.exists, f"family {leader} ready", step=step)
    return json.loads(path.read_text())


@pytest.fixture
def folders(tmp_path: Path) -> Callable[[str], Path]:
    def folder(name: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        return path

    return folder


def test_backoff_doubles_to_its_ceiling_and_starts_over_after_a_stable_run() -> None:
    backoff = Backoff(initial=1, ceiling=30, stable_after=60)
    assert [backoff.delay_after(uptime=2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay_after(uptime=61) == 1
    assert backoff.delay_after(uptime=1) == 2


def test_a_killed_child_is_restarted_without_its_group_and_the_others_keep_running(folders) -> None:
    dirs = {name: folders(name) for name in ("daemon", "serve", "emulator")}
    said: list[str] = []
    supervisor = Supervisor(
        {name: family_starter(folder) for name, folder in dirs.items()},
        say=said.append,
        grace=GRACE_S,
        backoff=lambda: Backoff(initial=0.2),
    )
    try:
        supervisor.start()
        before = {name: family_of(dirs[name], pid) for name, pid in supervisor.pids().items()}

        os.kill(before["daemon"]["leader"], signal.SIGKILL)
        new_leader = wait_for(
            lambda: (
                supervisor.pids()["daemon"] not in (None, before["daemon"]["leader"])
                and supervisor.pids()["daemon"]
            ),
            "the killed child restarted",
            step=supervisor.step,
        )
        after = family_of(dirs["daemon"], new_leader, step=supervisor.step)

        assert not any(alive(pid) for pid in before["daemon"].values()), "its whole group is gone"
        assert (dirs["daemon"] / f"{before['daemon']['leader']}.sigterm").read_text() == "SIGTERM\n", (
            "what it left running had a SIGTERM first (a send run's planned stop)"
        )
        assert all(alive(pid) for pid in after.values())
        for name in ("serve", "emulator"):
            assert supervisor.pids()[name] == before[name]["leader"], f"{name} kept running"
            assert all(alive(pid) for pid in before[name].values()), f"{name}'s group untouched"
        assert supervisor.children["daemon"].restarts == 1
        assert any(line.startswith("daemon exited with code -9") for line in said), said
    finally:
        supervisor.stop()


def test_stop_ends_every_group_including_a_child_that_had_already_exited(folders) -> None:
    running, exited = folders("running"), folders("exited")
    supervisor = Supervisor(
        {"running": family_starter(running), "exited": family_starter(exited, "--exit")},
        say=lambda _line: None,
        grace=GRACE_S,
    )
    try:
        supervisor.start()
        pids = supervisor.pids()
        families = [family_of(running, pids["running"]), family_of(exited, pids["exited"])]
        # The exited child is seen between two looks of the supervisor: its grandchildren live on.
        wait_for(lambda: not alive(pids["exited"]), "the --exit child exited")
        assert alive(families[1]["polite"]) and alive(families[1]["stubborn"])
    finally:
        supervisor.stop()

    left = [pid for family in families for pid in family.values() if alive(pid)]
    assert left == [], "no process of any group outlives the stop"
    for folder, family in zip((running, exited), families, strict=True):
        assert (folder / f"{family['leader']}.sigterm").read_text() == "SIGTERM\n", "SIGTERM came first"
    assert all(child.process.returncode is not None for child in supervisor.children.values())


def test_the_backoff_grows_on_a_child_that_keeps_dying_and_starts_over_once_it_stays_up() -> None:
    starts: list[float] = []

    def flaky() -> subprocess.Popen:
        # Dies at once four times, then stays up.
        command = ["sh", "-c", "exit 3"] if len(starts) < 4 else ["sleep", "600"]
        starts.append(time.monotonic())
        return subprocess.Popen(command, start_new_session=True)

    backoff = Backoff(initial=0.5, ceiling=2.0, stable_after=1.0)
    supervisor = Supervisor({"flaky": flaky}, say=lambda _line: None, grace=GRACE_S, backoff=lambda: backoff)
    child = supervisor.children["flaky"]
    try:
        supervisor.start()
        wait_for(lambda: len(starts) == 5, "the fifth start", step=supervisor.step)
        assert child.delays == [0.5, 1.0, 2.0, 2.0]
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert all(gap >= delay for gap, delay in zip(gaps, child.delays, strict=True)), (gaps, child.delays)

        wait_for(lambda: time.monotonic() - child.started_at > 1.0, "a stable run", step=supervisor.step)
        os.kill(child.process.pid, signal.SIGKILL)
        wait_for(lambda: len(starts) == 6, "the restart after a stable run", step=supervisor.step)
        assert child.delays[-1] == 0.5, "a child that stayed up starts over at the initial back-off"
    finally:
        supervisor.stop()


def test_a_child_sharing_dev_s_process_group_is_refused() -> None:
    supervisor = Supervisor({"shared": lambda: subprocess.Popen(["sleep", "600"])}, say=lambda _l: None)
    with pytest.raises(ValueError, match="session of its own"):
        supervisor.start()

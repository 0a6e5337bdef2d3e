"""Keep one send run alive per sender: what the supervising sensor should do on one tick.

A pure decision over what the sensor reads (the sender's active send runs as Dagster reports
them, the drain registry rows of those runs, whether any drain holds the sender lock, and why
sending may be off), so it is tested without Dagster or a database:

- no live run: launch one (unless a drain outside Dagster holds the sender lock);
- one live run, serving: launch a standby now. It waits on the sender lock for as long as the
  serving run lives and is granted it the moment that run lets go, at its lifetime's end or when
  its process dies (the lock goes with its connection), so neither a handover nor a kill -9 waits
  for a sensor tick and a run launch (the run-tag limit allows two runs per sender);
- a started run is dead (SIGKILL, OOM) when the sender lock is free and its heartbeat is stale, or
  it never registered long after it started: mark it failed (it holds a run-tag slot) and count it
  out of the live runs;
- the kill switch, the operator's pause or a sender hold: launch nothing, and say which;
- send runs that failed by themselves one after another (a broken deployment): wait longer before
  each next launch. A planned stop (a signal, the lifetime, a pause...) is no failure, a drain that
  stopped because the queue database went away is none once the database answers (the sensor reads
  it before deciding), and a run that served ends the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notify_pipeline.engine.drain_config import DATABASE_FAULTS, PLANNED_STOPS, StopReason

# Drains heartbeat every 5 s; a heartbeat this old, with the lock free, is a dead drain.
STALE_HEARTBEAT_S = 30.0
# A started run that has not registered a drain this long after starting is dead (registration
# follows taking the lock, and a run waiting on the lock only waits while the lock is held).
REGISTER_WITHIN_S = 180.0


# After send runs fail one after another (a broken deployment, not a refusal by Meta: that holds
# the sender), wait longer before each next launch instead of relaunching every tick.
RETRY_BASE_S = 15.0
RETRY_MAX_S = 600.0
# A run whose drain held the sender this long served: the failures before it are forgotten.
SERVED_S = 60.0
# Failed runs that are no crash: planned stops, the queue database going away (that outage is over:
# the sensor has just read the database), and Meta refusing the token or account (that holds the
# sender, the back-off of its own; lifting the hold means "send again now").
NOT_CRASHES = PLANNED_STOPS | DATABASE_FAULTS | {StopReason.AUTH_ERROR, StopReason.ACCOUNT_ERROR}


def retry_wait_s(consecutive_failures: int) -> float:
    """How long after the latest failed send run the next may start: none after one failure,
    then 15 s, 30 s, 60 s ... up to 10 minutes."""
    if consecutive_failures < 2:
        return 0.0
    return min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(consecutive_failures - 2, 10))


@dataclass(frozen=True)
class EndedRun:
    """A finished send run as the back-off reads it."""

    failed: bool  # Dagster says FAILURE
    stopped_by: str | None  # how its drain stopped (a StopReason); None: it never said (killed)
    served_s: float  # how long its drain held the sender lock
    ended_ago_s: float


def failed_by_itself(run: EndedRun) -> bool:
    """A failed run that crashed: killed, a bug, a broken deployment (see NOT_CRASHES)."""
    return run.failed and run.stopped_by not in NOT_CRASHES


def failure_streak(ended: Sequence[EndedRun]) -> tuple[int, float]:
    """Of finished send runs, newest first: (how many failed by themselves since the last run that
    served, that one included; seconds since the newest of them ended)."""
    count, ended_ago_s = 0, 0.0
    for run in ended:
        if failed_by_itself(run):
            ended_ago_s = ended_ago_s if count else run.ended_ago_s
            count += 1
        if run.served_s >= SERVED_S:
            break
    return count, ended_ago_s


@dataclass(frozen=True)
class RunState:
    """An active send run as Dagster reports it."""

    run_id: str
    started: bool  # STARTED (False: queued, not started or starting: Dagster's own monitoring)
    age_s: float | None  # seconds since the run started (None: not started)


@dataclass(frozen=True)
class WorkerState:
    """The drain registry row (send_workers) of a run; ages measured by the database clock."""

    run_id: str
    heartbeat_age_s: float
    lifetime_left_s: float | None  # None: no lifetime recorded
    ended: bool
    holds_lock: bool = False  # its control connection holds an advisory lock right now


@dataclass(frozen=True)
class Decision:
    launch: bool
    dead: tuple[str, ...]  # run ids to mark failed
    reason: str  # what was seen and done, for the tick's text


def is_dead(run: RunState, worker: WorkerState | None, lock_held: bool) -> bool:
    """A started run is dead when its drain went silent without holding the lock (whoever holds it
    now, a successor included), or when it never registered while nobody held the lock."""
    if not run.started:
        return False
    if worker is None:
        return not lock_held and run.age_s is not None and run.age_s > REGISTER_WITHIN_S
    return not worker.ended and not worker.holds_lock and worker.heartbeat_age_s > STALE_HEARTBEAT_S


def decide(
    runs: Sequence[RunState],
    workers: Sequence[WorkerState],
    *,
    lock_held: bool,
    blocked: str | None,
    failures: tuple[int, float] = (0, 0.0),
) -> Decision:
    """What to do on one tick for one sender. `blocked` is why sending is off (kill switch, pause,
    hold), or None; `failures` is failure_streak() of the finished runs."""
    by_run = {w.run_id: w for w in workers}
    dead = tuple(r.run_id for r in runs if is_dead(r, by_run.get(r.run_id), lock_held))
    live = [r for r in runs if r.run_id not in dead]
    noted = f"; marked dead run(s) {', '.join(i[:8] for i in dead)} failed" if dead else ""
    if blocked:
        return Decision(False, dead, f"launching nothing: {blocked}{noted}")
    if not live and lock_held:  # a drain outside these runs serves (`notify-pipeline send --serve`)
        return Decision(False, dead, f"no send run is alive, but another drain holds the sender lock{noted}")
    if not live:
        wait = retry_wait_s(failures[0]) - failures[1]
        if wait > 0:
            return Decision(
                False,
                dead,
                f"the last {failures[0]} send runs failed by themselves: the next one starts in "
                f"{round(wait)} s (see their logs){noted}",
            )
        return Decision(True, dead, f"no send run is alive: launching one{noted}")
    if len(live) > 1:
        names = ", ".join(r.run_id[:8] for r in live)
        return Decision(False, dead, f"send runs {names} are alive (one serving, one standing by){noted}")
    (run,) = live
    worker = by_run.get(run.run_id)
    if worker is None or worker.lifetime_left_s is None:
        state = "started, waiting for the sender lock" if run.started else "launching"
        return Decision(False, dead, f"send run {run.run_id[:8]} is {state}{noted}")
    state = "has ended" if worker.ended else f"is serving ({max(0, round(worker.lifetime_left_s))} s to go)"
    return Decision(True, dead, f"send run {run.run_id[:8]} {state}: launching a standby to take over{noted}")

"""What the parts of one drain share: the rows in hand, whether and why it stops, the queues between
its tasks, and its report.

The drain (drain.py) makes one DrainState and gives it to the claimer (claimer.py), the senders
(senders.py), the result batches (result_batches.py) and the control loop (control.py). They meet
only here: none reads another's attributes. Stopping goes one way and the first reason wins:
`halt` claims no more, `abort` also POSTs nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from notify_pipeline.engine.drain_config import DrainConfig, DrainReport, StopReason
from notify_pipeline.engine.outcomes import Halt
from notify_pipeline.engine.store import Outcome, SenderStop

KILL_SWITCH_OFF = "NOTIFICATION_WORKER_CRON_ENABLED is false"


@dataclass(eq=False)
class DrainState:
    config: DrainConfig
    report: DrainReport = field(init=False)
    # Claim no more; finish what is in hand.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Why nothing more is POSTed; None while sending goes on.
    aborted: StopReason | None = None
    # Set with `aborted`: cuts short the senders' pacing.
    no_more_posts: asyncio.Event = field(default_factory=asyncio.Event)
    # The claimer looks for work now: a NOTIFY, rows queued again or given back, rows rescued.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # A sender finished a row (or the drain stops): the claimer may top up.
    capacity: asyncio.Event = field(default_factory=asyncio.Event)
    # The drain is recording its end: the control loop ends.
    closing: bool = False
    # Outcomes for the result writer; None ends it.
    results: asyncio.Queue[Outcome | None] = field(default_factory=asyncio.Queue)
    # Rows handed to the senders, not yet finished, by id.
    holding: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Held rows the control loop found stopped, cancelled, opted out or switched off.
    revoked: set[int] = field(default_factory=set)
    # Given back at the end (the drain is stopping).
    to_release: list[int] = field(default_factory=list)
    # Revoked while held: given back now, to be decided afresh.
    give_back: list[int] = field(default_factory=list)
    # (event type, details) the control loop writes; the drain's close writes what is left.
    events: list[tuple[str, dict]] = field(default_factory=list)
    # (template name, language) Meta says are paused or disabled: held by the result writer.
    templates_to_hold: list[tuple[str, str]] = field(default_factory=list)
    # Read the templates again before the next decision (a template changed).
    reload_templates: bool = True
    # The first refusal of the token or the account: the sender is held before it is handed over.
    halted_by_meta: Halt | None = None

    def __post_init__(self) -> None:
        self.report = DrainReport(worker=self.config.worker_id, trigger=self.config.trigger)

    @property
    def worker(self) -> str:
        return self.config.worker_id

    def halt(self, reason: StopReason) -> None:
        """Claim no more (the end of the budget or lifetime, nothing due)."""
        if not self.stopping.is_set():
            # A plain string in the report, its JSON and the registry, as it always was.
            self.report.stopped_by = self.report.stopped_by or str(reason)
            self.stopping.set()
            self.wake.set()
            self.capacity.set()

    def abort(self, reason: StopReason, fault: str | None = None) -> None:
        """Send nothing more: pause, hold, kill switch, or a fault. The first reason wins."""
        if self.aborted is None:
            self.aborted = reason
            self.report.stopped_by = str(reason)
            self.report.fault = fault
            self.no_more_posts.set()
        self.halt(reason)

    def disabled(self) -> None:
        """The kill switch is off."""
        self.abort(StopReason.DISABLED, KILL_SWITCH_OFF)

    def blocked(self, stop: SenderStop) -> None:
        """The operator paused sending, or the sender is held."""
        self.abort(StopReason.PAUSED if stop.paused else StopReason.HELD, stop.text)


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` seconds pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, timeout))

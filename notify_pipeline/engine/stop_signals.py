"""SIGTERM and SIGINT start a drain's planned stop instead of breaking it off mid-send.

Whoever sends them (systemd or Kubernetes stopping the process for a deploy, `notify-pipeline dev`
on Ctrl-C, Dagster terminating a run: its run worker sends itself SIGINT) means "stop now, cleanly".
Inside a Dagster run worker both signals otherwise raise DagsterExecutionInterruptedError at
whatever line the drain is on (Dagster's dagster._utils.interrupts maps SIGTERM to its SIGINT
handler), and the run ends FAILURE. While the drain's event loop runs, the loop takes both signals
itself (so nothing is raised inside the drain) and asks the drain to stop as planned: POST nothing
more, write what was sent, give the rows in hand back, hand the sender over. Afterwards the handlers
that were there before (Dagster's, or Python's defaults) are put back.

Signal handlers belong to the main thread: a drain run on another thread (tests, the bench) leaves
signals alone.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[str], None]) -> Iterator[bool]:
    """While inside, SIGTERM and SIGINT call `stop` with the signal's name (on the loop, as a normal
    callback) instead of their usual handlers. Yields False when it could not take them (not the
    main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    taken: list[signal.Signals] = []
    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig.name)
            taken.append(sig)
        yield True
    finally:
        for sig in taken:
            loop.remove_signal_handler(sig)
            # asyncio puts Python's defaults back; restore what was there (in a run worker, the
            # handler Dagster installed for the step), when it is a Python-level handler.
            if previous[sig] is not None:
                signal.signal(sig, previous[sig])

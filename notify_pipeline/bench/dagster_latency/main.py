"""The benchmark's options, its start-up (the deployment until a send run serves), the phases in turn,
and the report: a table, then one JSON line."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from notify_pipeline.bench.dagster_latency.deployment import LIFETIME_ENV, Deployment, log
from notify_pipeline.bench.dagster_latency.load import (
    WATCH_ACTOR,
    Phase,
    connect,
    load_templates,
    serving_worker,
)
from notify_pipeline.bench.dagster_latency.phase import run_phase
from notify_pipeline.bench.dagster_latency.report import fmt, print_table
from notify_pipeline.bench.emulator_process import EmulatorControl

PHASES = ("trickle", "steady")


class Stop(Exception):
    """SIGTERM/SIGINT on the benchmark: stop measuring, clean up."""


def _on_signal(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m notify_pipeline.bench.dagster_latency",
        description="Enqueue-commit to emulator-receipt latency through `notify-pipeline dev` "
        "(Dagster webserver, daemon, sensor and send runs), with a kill -9 of the send run midway.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="Length of each phase.")
    parser.add_argument("--trickle-minutes", type=float, help="Override --minutes for the trickle.")
    parser.add_argument("--steady-minutes", type=float, help="Override --minutes for the steady phase.")
    parser.add_argument("--phases", default="trickle,steady", help="Comma-separated: trickle, steady.")
    parser.add_argument(
        "--trickle-interval", type=float, default=2.0, help="Seconds between trickle messages."
    )
    parser.add_argument("--rate", type=float, default=60.0, help="Steady phase: messages per second.")
    parser.add_argument("--emulator-limit", type=float, default=80.0, help="Emulator throughput limit per s.")
    parser.add_argument(
        "--lifetime-minutes",
        type=float,
        default=2.0,
        help=f"Send-run lifetime, passed as {LIFETIME_ENV}; 0 leaves the product default.",
    )
    parser.add_argument("--kill-at", type=float, default=0.5, help="When to kill, as a share of the phase.")
    parser.add_argument("--no-kill", action="store_true", help="Do not kill the send run.")
    parser.add_argument(
        "--recovery-grace", type=float, default=3.0, help="Seconds added to the recovery window."
    )
    parser.add_argument(
        "--slow-threshold", type=float, default=1.0, help="Catch-up: latency counted as normal."
    )
    parser.add_argument(
        "--stable-s", type=float, default=10.0, help="Catch-up: seconds of normal latency needed."
    )
    parser.add_argument("--settle-s", type=float, default=90.0, help="Wait for stragglers after a phase.")
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="Seconds to wait for a serving send run."
    )
    parser.add_argument(
        "--warmup-s", type=float, default=10.0, help="Pause after the first serving send run."
    )
    parser.add_argument("--pause-s", type=float, default=5.0, help="Pause between phases.")
    parser.add_argument("--no-seed", action="store_true", help="Start dev with --no-seed (templates only).")
    parser.add_argument("--keep-data", action="store_true", help="Keep the temporary data folder.")
    parser.add_argument("--json-out", type=Path, help="Also write the JSON report here.")
    return parser.parse_args(argv)


def phases_of(args: argparse.Namespace) -> list[Phase]:
    """The phases named by --phases, in their order, with their rates and lengths."""
    phases = []
    names = [p.strip() for p in args.phases.split(",") if p.strip()]
    for index, name in enumerate(names):
        base = 30_000_000 + index * 5_000_000  # +25073.../+25074...: not the demo's contacts
        if name == "trickle":
            minutes = args.trickle_minutes or args.minutes
            phases.append(Phase(name, 1 / args.trickle_interval, minutes * 60, base))
        elif name == "steady":
            minutes = args.steady_minutes or args.minutes
            phases.append(Phase(name, args.rate, minutes * 60, base))
        else:
            raise SystemExit(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
    return phases


def wait_ready(dep: Deployment, emulator: EmulatorControl, timeout_s: float) -> dict[str, Any]:
    """Wait for the emulator, the Dagster UI, then a send run's serving drain (which it returns)."""
    deadline = time.time() + timeout_s
    dep.wait_until(emulator.healthy, "emulator", timeout_s)
    log("emulator ready")
    dep.wait_for_ui(max(0.0, deadline - time.time()))
    log("webserver ready")
    with connect(dep.queue_url, WATCH_ACTOR) as conn:
        while True:
            with contextlib.suppress(Exception):  # the table appears once dev has migrated
                worker = serving_worker(conn)
                if worker:
                    log(
                        f"send run {worker['run_id']} is serving (drain pid {worker['pid']}, "
                        f"lifetime {worker['lifetime_s']:.0f} s)"
                    )
                    return worker
            dep.check_alive("while starting")
            if time.time() > deadline:
                raise RuntimeError(
                    f"no send run registered a serving drain within {timeout_s:.0f} s (sensor not launching, "
                    f"or its runs failing: see the Dagster UI on {dep.ui_url}): {dep.log_tail()}"
                )
            time.sleep(1)


def measure(dep: Deployment, phases: list[Phase], args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Start the deployment, wait for a serving send run, run the phases; figures into `report`."""
    dep.start()
    emulator = EmulatorControl(dep.emulator_url)
    started = time.time()
    first = wait_ready(dep, emulator, args.startup_timeout)
    report["startup_s"] = round(time.time() - started, 1)
    report["lifetime_in_force_s"] = round(first["lifetime_s"]) if first["lifetime_s"] else None
    if args.no_seed:
        load_templates(dep.queue_url)
    emulator.configure(limits_enabled=True, throughput_per_s=args.emulator_limit)
    time.sleep(args.warmup_s)
    for index, phase in enumerate(phases):
        if index:
            time.sleep(args.pause_s)
        result = run_phase(dep, emulator, phase, args)
        report["phases"].append(result)
        log(f"phase {phase.name}: {fmt(result['excluding_recovery'])} (excl. recovery)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    phases = phases_of(args)
    data_dir = Path(tempfile.mkdtemp(prefix="notify-dagster-latency-"))
    data_dir.chmod(0o755)  # the embedded server runs as its own user when we are root
    dep = Deployment(data_dir, args.lifetime_minutes or None, seed=not args.no_seed)
    report: dict[str, Any] = {
        "benchmark": "dagster_latency",
        "lifetime_minutes_requested": args.lifetime_minutes or None,
        "emulator_limit": args.emulator_limit,
        "phases": [],
    }
    exit_code = 0
    try:
        measure(dep, phases, args, report)
    except Stop as stop:
        log(f"stopped by {stop}; cleaning up")
        report["interrupted"] = str(stop)
        exit_code = 130
    except Exception as exc:
        log(f"failed: {exc}")
        report["error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            dep.stop()
        finally:
            if args.keep_data:
                log(f"data kept in {data_dir}")
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
    report.setdefault("lifetime_in_force_s", None)
    if report["phases"]:
        print_table(report)
    line = json.dumps(report, default=str)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return exit_code

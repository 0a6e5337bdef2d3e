"""The figures as people read them: latency summaries and the table after the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from notify_pipeline.bench.dagster_latency.deployment import LIFETIME_ENV
from notify_pipeline.bench.stats import summary_ms


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Latency figures in milliseconds (nearest-rank percentiles); `n` counts them."""
    if not values:
        return {"n": 0}
    figures = summary_ms(values)
    return {"n": figures.pop("count"), **figures}


def fmt(figures: dict[str, Any]) -> str:
    if not figures or figures.get("n", 0) == 0:
        return "n=0"
    return (
        f"n={figures['n']:>6}  p50 {figures['p50_ms']:>8.1f}  p90 {figures['p90_ms']:>8.1f}  "
        f"p99 {figures['p99_ms']:>8.1f}  max {figures['max_ms']:>8.1f} ms"
    )


def print_table(report: dict[str, Any]) -> None:
    print()
    print(
        f"Dagster deployment latency (enqueue commit -> emulator receipt), lifetime env "
        f"{LIFETIME_ENV}={report['lifetime_minutes_requested']}, emulator limit {report['emulator_limit']}/s"
    )
    print(f"lifetime in force (send_workers): {report['lifetime_in_force_s']} s")
    for phase in report["phases"]:
        _print_phase(phase)
    print()


def _print_phase(phase: dict[str, Any]) -> None:
    print()
    print(f"== {phase['phase']}: {phase['rate_per_s']:g}/s for {phase['seconds']:.0f} s ==")
    print(
        f"  enqueued {phase['enqueued']} (at {phase['enqueue_rate_per_s']}/s, "
        f"{phase['enqueue_errors']} errors)   received {phase['received']}   lost {phase['lost']}   "
        f"duplicates {phase['duplicates']} (emulator count +{phase['emulator_duplicates_delta']})"
    )
    print(f"  statuses {phase['statuses']}   not sent by error {phase['not_sent_by_error']}")
    print(f"  all messages           {fmt(phase['all'])}")
    print(f"  excl. recovery window  {fmt(phase['excluding_recovery'])}")
    kill = phase["kill"]
    if kill.get("killed_at"):
        rec = phase["recovery"]
        print(
            f"  kill -9 pid {kill['pid']} (run {str(kill['run_id'])[:8]}) at "
            f"{kill['killed_at'] - phase['started_at']:.1f} s; send runs active then: "
            f"{kill['send_runs_active_at_kill']}; that run's status at the end: "
            f"{kill.get('killed_run_status_at_end')}"
        )
        print(
            f"  recovery window {rec['window_s']} s (first receipt after kill "
            f"{rec['first_receipt_after_kill_s']} s + grace); inside: {fmt(rec['latency_inside'])}"
        )
        cu = phase["catch_up"]
        print(
            f"  until caught up {cu['window_s']} s (caught up: {cu['caught_up']}); inside: "
            f"{fmt(cu['latency_inside'])}"
        )
        print(f"  excl. catch-up window  {fmt(cu['excluding'])}")
    else:
        print(f"  no kill: {kill.get('error') or kill.get('skipped')}")
    print(
        f"  Dagster runs launched {phase['dagster_runs_launched']} (send runs "
        f"{phase['send_runs_launched']}): {phase['runs_by_job_status']}"
    )
    for d in phase["drains"]:
        print(
            f"    drain {d['worker']} pid {d['pid']}: {d['from_s']} s -> {d['to_s']} s, "
            f"{d['stopped_by']}, lifetime {d['lifetime_s']} s"
        )

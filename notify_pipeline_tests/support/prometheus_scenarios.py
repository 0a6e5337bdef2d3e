"""Scenarios for the Prometheus alert rules, each with the alert sensor's verdict on the same figures.

A scenario is a timeline of outcomes (sends, failures, opt-outs, throttling), minute by minute. From
it come both sides of the comparison:

- the series Prometheus would scrape: at every minute, a Snapshot of the database counters so far,
  rendered by the exporter itself (reporting/metrics.families), so a series appears exactly when
  the exporter would first show it (a new domain or a new error code at its full value);
- the reading the alert sensor would take at the evaluation time (readings.*Reading, built from
  the events inside its window), and its verdict (reporting/alerts/conditions.py).

Each scenario also says by hand whether the alert fires; the sensor must agree with that, and
`promtool test rules` must find the rule agreeing too. `render()` writes
docs/prometheus/notify-pipeline-rules.test.yml (regenerate with REGENERATE, run at the repository's
top).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.alerts import conditions
from notify_pipeline.reporting.alerts.readings import (
    PAIR_LIMIT,
    FailureReading,
    OptOutReading,
    ThrottleReading,
)
from notify_pipeline.reporting.metrics_sql import Snapshot
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline.whatsapp.errors import throttling_codes
from notify_pipeline_tests.support.paths import REPO_ROOT

RULES = REPO_ROOT / "docs" / "prometheus" / "notify-pipeline-rules.yml"
SCENARIOS_FILE = RULES.with_name("notify-pipeline-rules.test.yml")
# The command that writes SCENARIOS_FILE, quoted in it and wherever it is said to be stale.
REGENERATE = (
    "python -m notify_pipeline_tests.support.prometheus_scenarios"
    " > docs/prometheus/notify-pipeline-rules.test.yml"
)
# A series name in PromQL (not the middle of a recording rule's level:name:operation).
SERIES = re.compile(r"(?<![:\w])(?:notify|notification)_[a-z0-9_]+\b(?!:)")
HOUR_M, MINUTE_M = 60, 1  # the sensors' windows, in minutes: failures and opt-outs, throttling


@dataclass(frozen=True)
class Event:
    """`count` increments of one database counter at `minute` (before 0: history Prometheus never saw
    happen). `domain` is the row's domain where the counter has none (a late failure)."""

    minute: int
    counter: str
    labels: tuple[tuple[str, str], ...]
    count: int
    domain: str | None = None
    repeat: bool = False  # an opt-out of a contact already counted: recorded, not counted


def sent(minute: int, domain: str, count: int) -> Event:
    return Event(minute, "sent", (("domain", domain),), count)


def failed(minute: int, domain: str, code: str, count: int) -> Event:
    return Event(minute, "failed", (("domain", domain), ("error_code", code)), count)


def late_failed(minute: int, domain: str, code: str, count: int) -> Event:
    return Event(minute, "late_failed", (("error_code", code),), count, domain)


def opted_out(minute: int, cause: str, count: int) -> Event:
    return Event(minute, "contacts_opted_out", (("reason", cause),), count)


def repeated_opt_outs(minute: int, count: int) -> Event:
    """Replies of contacts already counted: mark_opted_out records them, the counter does not move."""
    return Event(minute, "contacts_opted_out", (("reason", "reply_keyword"),), count, repeat=True)


def blocked(minute: int, domain: str, count: int) -> Event:
    labels = (("domain", domain), ("reason", "opted_out"), ("stage", "send"))
    return Event(minute, "filtered", labels, count)


def deferred(minute: int, reason: str, count: int) -> Event:
    return Event(minute, "deferred", (("reason", reason),), count)


@dataclass(frozen=True)
class Scenario:
    name: str
    alert: str  # the sensor (alerts.catalog) and the rule's `sensor` label
    fires: bool  # said by hand: the sensor and the rule must both agree
    events: tuple[Event, ...]
    eval_minute: int
    queued: dict[str, tuple[int, int]] = field(default_factory=dict)  # domain -> queued rows from, to

    def snapshot(self, minute: int) -> Snapshot:
        counters: dict[str, dict[tuple[tuple[str, str], ...], int]] = {}
        for event in self.events:
            if event.minute <= minute and not event.repeat:
                per = counters.setdefault(event.counter, {})
                per[event.labels] = per.get(event.labels, 0) + event.count
        queued = tuple(d for d, (start, end) in self.queued.items() if start <= minute < end)
        return Snapshot(
            due=0, waiting=0, in_flight=0, oldest_due_s=0.0, counters=counters, queued_domains=queued
        )

    def in_window(self, minutes: int) -> list[Event]:
        return [e for e in self.events if self.eval_minute - minutes < e.minute <= self.eval_minute]

    def verdict(self) -> bool:
        return READINGS[self.alert](self).breached


def _failure_verdict(s: Scenario):
    by_domain: dict[str, list[int]] = {}
    codes: dict[str, int] = {}
    late = 0
    for e in s.in_window(HOUR_M):
        labels = dict(e.labels)
        if e.counter == "sent":
            by_domain.setdefault(labels["domain"], [0, 0])[0] += e.count
        elif e.counter in ("failed", "late_failed"):
            counts = by_domain.setdefault(labels.get("domain") or e.domain, [0, 0])
            counts[1] += e.count
            codes[labels["error_code"]] = codes.get(labels["error_code"], 0) + e.count
            if e.counter == "late_failed":  # counted sent when Meta accepted it: now a failed row
                counts[0] -= e.count
                late += e.count
    reading = FailureReading(HOUR_M * 60.0, {d: (s_, f) for d, (s_, f) in by_domain.items()}, codes, late)
    return conditions.failure_rate(reading, DEFAULTS)


def _opt_out_verdict(s: Scenario):
    events = s.in_window(HOUR_M)
    contacts = sum(e.count for e in events if e.counter == "contacts_opted_out" and not e.repeat)
    repeats = sum(e.count for e in events if e.repeat)
    blocked_sends = sum(e.count for e in events if e.counter == "filtered")
    reading = OptOutReading(HOUR_M * 60.0, contacts, blocked_sends, {}, repeats)
    return conditions.opt_out_spike(reading, DEFAULTS)


def _throttling_verdict(s: Scenario):
    meta: dict[str, int] = {}
    pair = 0
    for e in s.in_window(MINUTE_M):
        code = dict(e.labels).get("reason") or dict(e.labels).get("error_code")
        if code in throttling_codes() and e.counter in ("deferred", "retried", "failed"):
            meta[code] = meta.get(code, 0) + e.count
        elif code == PAIR_LIMIT:
            pair += e.count
    return conditions.throttling(ThrottleReading(MINUTE_M * 60.0, meta, pair, []), DEFAULTS)


READINGS: dict[str, Callable[[Scenario], Any]] = {
    "failure_rate": _failure_verdict,
    "opt_out_spike": _opt_out_verdict,
    "throttling": _throttling_verdict,
}

# Healthy traffic: 10 sends a minute in `core` since Prometheus started (minute 0).
STEADY = tuple(sent(m, "core", 10) for m in range(1, 181))

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "200 messages of a new domain all fail (132000), nothing else is sent: the issue's case",
        "failure_rate",
        True,
        (failed(130, "campaigns", "132000", 200),),
        150,
    ),
    Scenario(
        "a new domain queued and failed between two scrapes (30 of 30) among healthy traffic: "
        "its series first appears at its full value; overall 5 %, the domain 100 %",
        "failure_rate",
        True,
        (*STEADY, failed(130, "baskets", "132000", 30)),
        150,
    ),
    Scenario(
        "a new domain whose rows were queued (series at 0) before 30 of them failed",
        "failure_rate",
        True,
        (*STEADY, failed(131, "baskets", "131026", 30)),
        150,
        {"baskets": (120, 131)},
    ),
    Scenario(
        "a new error code mid-window in a known domain: 200 failures (132001) against 600 sent",
        "failure_rate",
        True,
        (*STEADY, failed(120, "core", "132001", 200)),
        150,
    ),
    Scenario(
        "a new domain with 19 failures: below the 20 finished sends a verdict needs",
        "failure_rate",
        False,
        (*STEADY, failed(130, "baskets", "132000", 19)),
        150,
    ),
    Scenario(
        "exactly 20 % failed (150 of 750): the alert is for above 20 %",
        "failure_rate",
        False,
        (*STEADY[:150], failed(120, "core", "131026", 150)),
        150,
    ),
    Scenario(
        "late failures count as failures overall: 150 of 600 accepted, then reported failed",
        "failure_rate",
        True,
        (*STEADY[:150], late_failed(140, "core", "131026", 150)),
        150,
    ),
    Scenario(
        "a new Prometheus scraping a database with old failures: history is not the last hour",
        "failure_rate",
        False,
        (failed(-100, "legacy", "131026", 500), *STEADY[:30]),
        30,
    ),
    Scenario(
        "40 contacts reply STOP and 11 sends of a new domain are refused: 51 opt-outs",
        "opt_out_spike",
        True,
        (opted_out(110, "reply_keyword", 40), blocked(130, "promo", 11)),
        150,
    ),
    Scenario(
        "one number alternating STOP and START 300 times: one contact, 149 repeats not counted",
        "opt_out_spike",
        False,
        (opted_out(110, "reply_keyword", 1), repeated_opt_outs(111, 149)),
        150,
    ),
    Scenario(
        "50 contacts opt out: the alert is for above 50",
        "opt_out_spike",
        False,
        (opted_out(120, "operator", 20), opted_out(125, "api", 30)),
        150,
    ),
    Scenario(
        "a throttling code seen for the first time: 11 sends of a new domain fail with 131048",
        "throttling",
        True,
        (*STEADY[:150], failed(150, "promo", "131048", 11)),
        150,
    ),
    Scenario(
        "7 throughput deferrals (130429) and 4 retries (131056) in the same minute: 11",
        "throttling",
        True,
        (deferred(150, "130429", 7), Event(150, "retried", (("error_code", "131056"),), 4)),
        150,
    ),
    Scenario(
        "9 of Meta's throughput deferrals and 30 of our own pair-limit deferrals: Meta's 9 only",
        "throttling",
        False,
        (deferred(150, "130429", 9), deferred(150, PAIR_LIMIT, 30)),
        150,
    ),
)


def rule_series_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {name for group in groups for rule in group["rules"] for name in SERIES.findall(rule["expr"])}


def rule_for(alert: str) -> dict:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("labels", {}).get("sensor") == alert)


def series(scenario: Scenario) -> dict[str, list[float | None]]:
    """Every series the rules read, one value per minute from 0 to the evaluation (None: absent)."""
    wanted = rule_series_names()
    out: dict[str, list[float | None]] = {}
    for minute in range(scenario.eval_minute + 1):
        for family in metrics.families(scenario.snapshot(minute)):
            for sample in family.samples:
                if sample.name not in wanted:
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}" if labels else sample.name
                out.setdefault(key, [None] * (scenario.eval_minute + 1))[minute] = sample.value
    return dict(sorted(out.items()))


def compress(values: list[float | None]) -> str:
    """promtool's expanding notation: `_xN` for N absent samples, `a+bxN` for N + 1 values in steps of b."""
    parts, i = [], 0
    while i < len(values):
        if values[i] is None:
            j = i
            while j < len(values) and values[j] is None:
                j += 1
            parts.append(f"_x{j - i}")
            i = j
            continue
        j = i + 1
        step = values[j] - values[i] if j < len(values) and values[j] is not None else 0
        while j < len(values) and values[j] is not None and values[j] - values[j - 1] == step:
            j += 1
        start, count = _number(values[i]), j - i - 1
        if count == 0:
            parts.append(start)
        elif step == 0:
            parts.append(f"{start}x{count}")
        else:
            parts.append(f"{start}{'+' if step > 0 else '-'}{_number(abs(step))}x{count}")
        i = j
    return " ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def render() -> str:
    """The promtool test file for every scenario."""
    lines = [
        "# Scenarios for notify-pipeline-rules.yml, run by `promtool test rules` (.ci/run and",
        "# notify_pipeline_tests/reporting/test_prometheus_rules.py). Generated from",
        "# notify_pipeline_tests/support/prometheus_scenarios.py, where each scenario's expected alert is",
        "# said by hand and checked against the alert sensor's verdict on the same figures; do not edit:",
        f"#   {REGENERATE}",
        "# One sample a minute from minute 0 (Prometheus' first scrape); a series that is absent (`_`)",
        "# is one the exporter does not show yet.",
        "rule_files: [notify-pipeline-rules.yml]",
        "evaluation_interval: 1m",
        "tests:",
    ]
    for scenario in SCENARIOS:
        rule = rule_for(scenario.alert)
        lines += [f"  # {scenario.alert}: {scenario.name}", "  - interval: 1m", "    input_series:"]
        for key, values in series(scenario).items():
            lines += [f"      - series: '{key}'", f"        values: '{compress(values)}'"]
        lines += [
            "    promql_expr_test:",
            '      - expr: ALERTS{alertstate="firing"}',
            f"        eval_time: {scenario.eval_minute}m",
        ]
        if scenario.fires:
            labels = {
                "alertname": rule["alert"],
                "alertstate": "firing",
                **{k: str(v) for k, v in rule["labels"].items()},
            }
            text = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            lines += [
                "        exp_samples:",
                f"          - labels: 'ALERTS{{{text}}}'",
                "            value: 1",
            ]
        else:
            lines.append("        exp_samples: []")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")

"""The Prometheus alerting rules and the Grafana dashboard: valid PromQL (promtool when installed,
a structural check always), one rule per alert sensor with the sensor's thresholds and windows,
only series the exposition produces, and the scenarios of notify-pipeline-rules.test.yml, where
`promtool test rules` must find each rule agreeing with its alert sensor on the same figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from notify_pipeline.reporting.alerts.catalog import ALERTS, HOUR_S, MINUTE_S
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.metrics import produced_series
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.prometheus_scenarios import (
    READINGS,
    REGENERATE,
    RULES,
    SCENARIOS,
    SCENARIOS_FILE,
    SERIES,
    render,
    series,
)

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "notify-pipeline.json"
# PromQL functions and keywords the rules may use; anything else followed by "(" is a typo.
FUNCTIONS = {
    "sum", "max", "min", "count", "avg", "rate", "increase", "time", "vector", "histogram_quantile",
    "absent", "by", "on", "ignoring", "without", "and", "or", "unless", "delta",
}  # fmt: skip
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
DURATION = re.compile(r"^\d+[smhdwy]$")


def all_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rules() -> list[dict]:
    """The alerting rules (recording rules apart)."""
    return [rule for rule in all_rules() if "alert" in rule]


def recorded() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in all_rules() if "record" in rule}


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def check_promql(expr: str) -> None:
    """A structural PromQL check for machines without promtool: brackets and quotes balanced and
    nested properly, range selectors with valid durations, known functions only."""
    stack, quoted = [], False
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in expr:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {expr}"
    assert not stack and not quoted, f"unclosed bracket or quote in {expr}"
    for window in re.findall(r"\[([^\]]*)\]", expr):
        assert DURATION.match(window), f"bad range {window!r} in {expr}"
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    for call in re.findall(r"\b([a-z_]+)\s*\(", unquoted):
        assert call in FUNCTIONS, f"unknown function {call!r} in {expr}"
    for matcher in re.findall(r"\{([^}]*)\}", unquoted):
        for part in filter(None, (p.strip() for p in matcher.split(","))):
            assert re.match(r'^[a-z_]+\s*(=~|!~|!=|=)\s*""$', part), f"bad matcher {part!r} in {expr}"


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package ships it; .ci/run installs it)")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in done.stdout


def test_promtool_runs_the_scenarios() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package ships it; .ci/run installs it)")
    done = subprocess.run(
        [promtool, "test", "rules", str(SCENARIOS_FILE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_scenario_file_is_generated_from_the_scenarios() -> None:
    assert SCENARIOS_FILE.read_text() == render(), (
        f"docs/prometheus/notify-pipeline-rules.test.yml is stale: run `{REGENERATE}`"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name[:60])
def test_each_scenarios_expected_alert_is_the_sensors_verdict(scenario) -> None:
    assert scenario.verdict() == scenario.fires, scenario.name


def test_scenarios_fire_and_stay_quiet_for_each_counter_rule_and_show_new_series() -> None:
    for alert in READINGS:
        assert {s.fires for s in SCENARIOS if s.alert == alert} == {True, False}, alert

    def appears_mid_window(scenario, prefix: str) -> bool:
        return any(
            key.startswith(prefix) and values[0] is None and values[-1]
            for key, values in series(scenario).items()
        )

    # A new domain first seen at its full value, and one seen at 0 first (its rows were queued).
    firing = [s for s in SCENARIOS if s.alert == "failure_rate" and s.fires]
    assert any(appears_mid_window(s, "notify_domain_outcomes_total") for s in firing)
    assert any(s.queued for s in firing)
    # A new error code: its notify_failed_total series would appear mid-window (not a series the
    # rules read: the totals they read existed at 0 already).
    assert any(
        s.eval_minute - 60 < e.minute
        and e.counter == "failed"
        and not any(o.labels == e.labels for o in s.events if o.minute < e.minute)
        for s in firing
        for e in s.events
    )


def test_rules_pass_the_structural_promql_check() -> None:
    for rule in all_rules():
        check_promql(rule["expr"])
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["alert"]
    for expr in dashboard_exprs():
        check_promql(expr.replace("$domain", "x"))


def test_the_check_catches_broken_promql() -> None:
    for broken in (
        "sum(rate(notify_sent_total[5m])",
        "rate(notify_sent_total[5 minutes])",
        'notify_sent_total{domain="a"',
        "summ(notify_sent_total)",
        "sum(rate(notify_sent_total[5m)])",
    ):
        with pytest.raises(AssertionError):
            check_promql(broken)


def test_one_rule_per_alert_sensor_with_the_sensors_thresholds() -> None:
    by_sensor = {rule["labels"]["sensor"]: rule for rule in rules()}
    assert set(by_sensor) == {alert.name for alert in ALERTS}
    for rule in rules():
        assert rule["alert"].startswith("Notify") and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert by_sensor["queue_depth"]["for"] == f"{DEFAULTS.queue_depth_for_s / 60:g}m"
    assert f"> {DEFAULTS.queue_depth}" in by_sensor["queue_depth"]["expr"]
    assert f"> {DEFAULTS.oldest_queued_s:g}" in by_sensor["oldest_queued"]["expr"]
    assert f"> {DEFAULTS.failure_rate:.2f}" in by_sensor["failure_rate"]["expr"]
    assert f">= {DEFAULTS.failure_rate_min_volume}" in by_sensor["failure_rate"]["expr"]
    assert f"> {DEFAULTS.worker_silence_s:g}" in by_sensor["worker_health"]["expr"]
    assert f"> {DEFAULTS.opt_outs_per_hour}" in by_sensor["opt_out_spike"]["expr"]
    assert f"> {DEFAULTS.throttled_per_minute}" in by_sensor["throttling"]["expr"]
    assert f">= {DEFAULTS.no_receipts_min_sent}" in by_sensor["no_receipts"]["expr"]
    assert f"> {DEFAULTS.no_receipts_window_s:g}" in by_sensor["no_receipts"]["expr"]
    # The sensors' windows: the failure rate's (the recording rule's too), the opt-outs' hour and
    # the throttling minute (alerts/catalog.py).
    failure_window = f"[{DEFAULTS.failure_rate_window_s / 3600:g}h]"
    assert failure_window in by_sensor["failure_rate"]["expr"]
    assert all(failure_window in expr or "offset 1h" in expr for expr in recorded().values())
    assert f"[{HOUR_S / 3600:g}h]" in by_sensor["opt_out_spike"]["expr"]
    assert f"[{MINUTE_S / 60:g}m]" in by_sensor["throttling"]["expr"]
    # Rates come from counters, never from the runbook's untyped cumulative series.
    for rule in rules():
        assert "notification_" not in rule["expr"], rule["alert"]


def test_rules_and_dashboard_use_only_series_the_exposition_produces(db) -> None:
    produced = produced_series(db)
    in_rules = {name for rule in all_rules() for name in SERIES.findall(rule["expr"])}
    used_records = {name for rule in rules() for name in RECORDED.findall(rule["expr"])}
    assert used_records and used_records <= set(recorded()), used_records - set(recorded())
    in_dashboard = {name for expr in dashboard_exprs() for name in SERIES.findall(expr)}
    assert in_rules and in_dashboard
    assert in_rules <= produced, in_rules - produced
    assert in_dashboard <= produced, in_dashboard - produced

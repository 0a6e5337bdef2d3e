"""Alerts in the Dagster UI and on the command line: each alert sensor reports an asset check
evaluation on the `notifications` asset, so a firing alert is a failed check over Dagster's GraphQL
API (the UI's own) and stays in the check's history; `notify-pipeline alerts` lists it; worker
health waits out a send run's normal start.

Sensors are evaluated with build_sensor_context against a real database; their asset events are
then recorded the way the sensor daemon records them (instance.report_runless_asset_event), and
the code location is loaded in process for GraphQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from notify_pipeline.defs.alerts import checks, sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.reporting.assets import notifications_table
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.listing import firing_alerts, render_firing
from notify_pipeline_tests.support.alerts import FakeClock, add_rows, alert_rows, worker_start
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.workspace import load_workspace_definitions

CHECKS = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization {
              status
              evaluation {
                success
                severity
                description
                metadataEntries {
                  label
                  ... on IntMetadataEntry { intValue }
                  ... on TextMetadataEntry { text }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""
HISTORY = """
query History($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 10) {
    status
    evaluation { success severity description }
  }
}
"""
KEY = {"path": ["notifications"]}


def resources(db_url: str, **thresholds) -> dict:
    return {
        "queue_db": QueueDatabase(url=db_url),
        "alert_thresholds": AlertThresholds(**thresholds),
        "alert_sink": AlertSink(backoff_s=0),
    }


def tick(sensor, instance, db_url: str, cursor: str | None, **thresholds) -> dg.SensorResult:
    """One sensor tick, its asset events recorded as the sensor daemon records them."""
    result = sensor(
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources(db_url, **thresholds))
    )
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def graphql(instance: dg.DagsterInstance, query: str, variables: dict) -> dict:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="notify_pipeline.definitions", attribute="defs"),
        location_name="notify_pipeline",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_context:
        result = execute_dagster_graphql(process_context.create_request_context(), query, variables)
    assert not result.errors, result.errors
    return result.data


def test_every_alert_is_a_check_of_the_notifications_asset_in_the_code_location(monkeypatch, db_url) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    graph = load_workspace_definitions().resolve_asset_graph()
    assert {key.name for key in graph.asset_check_keys if key.asset_key == checks.NOTIFICATIONS} == set(
        BY_NAME
    )
    assert checks.NOTIFICATIONS in graph.get_all_asset_keys()


def test_a_firing_alert_is_a_failed_check_over_graphql_and_its_episode_stays_in_history(
    db, db_url, instance, monkeypatch
) -> None:
    monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("NOTIFY_PAGERDUTY_ROUTING_KEY", raising=False)
    clock = FakeClock(datetime.now(UTC))  # the database's clock: `alerts --since` compares with now()
    sensor = sensors.alert_sensor(BY_NAME["oldest_queued"], clock=clock)
    ids = add_rows(db, 2, due="now() - interval '2 hours'")
    worker_start(db)

    fired = tick(sensor, instance, db_url, None)
    (evaluation,) = fired.asset_events
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    assert (evaluation.asset_key, evaluation.check_name) == (checks.NOTIFICATIONS, "oldest_queued")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert fired.skip_reason.skip_message.startswith("FIRING: The oldest due notification has waited 2 h")

    # Still firing, no reminder due: the check already says so, nothing new is reported.
    clock.advance(60)
    cursor = tick(sensor, instance, db_url, fired.cursor)
    assert cursor.asset_events == [] and cursor.skip_reason.skip_message.startswith("FIRING since")

    data = graphql(instance, CHECKS, {"key": KEY})
    by_name = {c["name"]: c for c in data["assetNodeOrError"]["assetChecksOrError"]["checks"]}
    assert set(by_name) == set(BY_NAME)
    execution = by_name["oldest_queued"]["executionForLatestMaterialization"]
    assert execution["status"] == "FAILED"
    assert execution["evaluation"]["success"] is False and execution["evaluation"]["severity"] == "ERROR"
    assert execution["evaluation"]["description"].startswith("The oldest due notification has waited 2 h")
    meta = {e["label"]: e.get("intValue", e.get("text")) for e in execution["evaluation"]["metadataEntries"]}
    assert meta["due"] == 2 and meta["state"] == "fired" and meta["notifications_sent"] == 1
    assert meta["first_check"].startswith("Are send runs launching")
    assert meta["episode_id"] == alert_rows(db, "oldest_queued")[0]["id"]
    assert by_name["queue_depth"]["executionForLatestMaterialization"] is None

    # Listed for people and scripts while it fires; `status` shows the same list.
    (episode,) = firing_alerts(db)
    assert episode.alert == "oldest_queued" and episode.notifications == 1
    assert render_firing([episode], clock.now).startswith("Alerts: 1 firing\n  oldest_queued since ")
    env = {"NOTIFY_DATABASE_URL": db_url}
    listed = cli("alerts", "--json", "--since", "24h", env=env)
    assert listed.returncode == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert [e["alert"] for e in body["firing"]] == ["oldest_queued"]
    assert body["firing"][0]["headline"].startswith("The oldest due notification has waited 2 h")
    assert body["firing"][0]["notifications"] == 1 and body["firing"][0]["resolved_at"] is None
    assert [e["alert"] for e in body["episodes"]] == ["oldest_queued"]
    text = cli("alerts", env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Alerts: 1 firing\n  oldest_queued since ")
    assert "Episodes in the last 24 h: 1" in text.stdout
    assert cli("alerts", "--since", "forever", env=env).returncode == 2

    # The rows go out: the alert resolves, the check passes, and the failure stays in its history.
    db.execute("UPDATE notifications SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids,))
    clock.advance(60)
    resolved = tick(sensor, instance, db_url, cursor.cursor)
    (passed,) = resolved.asset_events
    assert passed.passed and resolved.skip_reason.skip_message.startswith("RESOLVED after 2 min")
    history = graphql(instance, HISTORY, {"key": KEY, "check": "oldest_queued"})["assetCheckExecutions"]
    assert [(h["status"], h["evaluation"]["success"]) for h in history] == [
        ("SUCCEEDED", True),
        ("FAILED", False),
    ]
    assert firing_alerts(db) == []
    after = json.loads(cli("alerts", "--json", env=env).stdout)
    assert after["firing"] == [] and after["episodes"][0]["state"] == "resolved"


def test_a_quiet_alert_reports_once_then_only_every_few_hours(db, db_url, instance) -> None:
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["queue_depth"], clock=clock)
    first = tick(sensor, instance, db_url, None)
    (ok,) = first.asset_events
    assert ok.passed and ok.check_name == "queue_depth"
    cursor = first.cursor
    for _ in range(3):
        clock.advance(60)
        cursor_result = tick(sensor, instance, db_url, cursor)
        assert cursor_result.asset_events == []
        cursor = cursor_result.cursor
    clock.advance(checks.REPORT_EVERY_S)
    assert len(tick(sensor, instance, db_url, cursor).asset_events) == 1


def test_a_condition_waiting_out_its_hold_warns(db, db_url, instance) -> None:
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["queue_depth"], clock=clock)
    add_rows(db, 4)
    pending = tick(sensor, instance, db_url, None, queue_depth=3, queue_depth_for_s=120)
    (warn,) = pending.asset_events
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert alert_rows(db) == []


def test_worker_health_waits_out_a_send_runs_normal_start(db, db_url, instance, monkeypatch) -> None:
    """A fresh deployment (no worker ever started) onto rows due 10 minutes ago: the first send run
    needs a minute or two to launch, and the alert must not fire meanwhile."""
    monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "true")
    clock = FakeClock()
    sensor = sensors.alert_sensor(BY_NAME["worker_health"], clock=clock)
    add_rows(db, 3, due="now() - interval '10 minutes'")
    cursor = None
    for _ in range(2):  # 0 s and 60 s after the deployment
        result = tick(sensor, instance, db_url, cursor)
        assert result.skip_reason.skip_message.startswith("pending: No send worker has ever started"), (
            result.skip_reason.skip_message
        )
        cursor = result.cursor
        clock.advance(60)
    worker_start(db)  # the first send run starts within the grace
    assert tick(sensor, instance, db_url, cursor).skip_reason.skip_message.startswith("ok: last worker start")
    assert alert_rows(db) == []

    # A worker that never comes fires once the grace is over.
    db.execute("DELETE FROM observability_events WHERE event_type = 'NOTIFY_WORKER_START'")
    cursor = None
    texts = []
    for _ in range(3):
        result = tick(sensor, instance, db_url, cursor)
        texts.append(result.skip_reason.skip_message)
        cursor = result.cursor
        clock.advance(60)
    assert texts[0].startswith("pending") and texts[1].startswith("pending"), texts
    assert texts[2].startswith("FIRING: No send worker has ever started"), texts
    assert AlertThresholds().start_grace_s("worker_health") == 120
    assert AlertThresholds().start_grace_s("queue_depth") == 0


def test_the_checks_can_be_executed_from_the_ui_without_paging(db, db_url, instance, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)
    add_rows(db, 2, due="now() - interval '2 hours'")
    result = dg.materialize(
        [notifications_table, checks.notification_alert_checks],
        selection=dg.AssetSelection.checks_for_assets(checks.NOTIFICATIONS),
        instance=instance,
        resources={"queue_db": QueueDatabase(url=db_url), "alert_thresholds": AlertThresholds()},
    )
    assert result.success
    by_name = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(by_name) == set(BY_NAME)
    assert (
        not by_name["oldest_queued"].passed
        and by_name["oldest_queued"].severity == dg.AssetCheckSeverity.WARN
    )
    assert by_name["throttling"].passed
    assert alert_rows(db) == [], "executing a check moves no alert"

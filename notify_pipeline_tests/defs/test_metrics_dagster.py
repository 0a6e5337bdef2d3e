"""The optional metrics export in Dagster (job and schedule) and the Grafana dashboard built on the
exposition's names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from notify_pipeline.defs.metrics import jobs, schedules
from notify_pipeline.defs.metrics.jobs import MetricsExportConfig
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.whatsapp import errors
from notify_pipeline_tests.support.metrics import (
    gateway,
    produced_series,
    samples,
    seed_finished,
    seed_queue,
    value,
)
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.ports import free_port
from notify_pipeline_tests.support.workspace import load_workspace_definitions

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "notify-pipeline.json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("NOTIFY_METRICS_TEXTFILE", "NOTIFY_PUSHGATEWAY_URL", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTIFY_DATA_DIR", str(tmp_path / "data"))


def run(db_url: str, config: MetricsExportConfig | None = None) -> dg.ExecuteInProcessResult:
    return jobs.export_metrics_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        # No run config at all is what the schedule launches.
        run_config=dg.RunConfig(ops={"export_metrics": config}) if config else None,
        raise_on_error=False,
    )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    event = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    return {key: entry.value for key, entry in event.step_output_data.metadata.items()}


def test_job_writes_the_default_textfile_and_reports_metadata(db, db_url, tmp_path: Path) -> None:
    seed_finished(db)
    seed_queue(db)
    result = run(db_url)
    assert result.success
    path = tmp_path / "data" / "metrics" / "notify_pipeline.prom"
    parsed = samples(path.read_text())
    assert value(parsed, "notification_queue_depth", trigger="cron") == 2
    assert value(parsed, "notification_sent_total", domain="baskets") == 3
    metadata = output_metadata(result)
    assert metadata["series"] == len(parsed) == result.output_for_node("export_metrics")
    assert metadata["textfile"] == str(path)
    assert metadata["pushed"] is False


def test_job_takes_the_textfile_and_gateway_from_the_environment(
    db, db_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_finished(db)
    path = tmp_path / "node_exporter" / "notify.prom"
    monkeypatch.setenv("NOTIFY_METRICS_TEXTFILE", str(path))
    with gateway() as server:
        monkeypatch.setenv("NOTIFY_PUSHGATEWAY_URL", server.url)
        result = run(db_url)
    assert result.success
    ((method, _, body),) = server.requests
    assert method == "PUT" and body == path.read_bytes()
    metadata = output_metadata(result)
    assert metadata["pushed"] is True and metadata["pushgateway"] == server.url


def test_unreachable_gateway_fails_the_run_after_writing_the_file(db_url, tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    url = f"http://127.0.0.1:{free_port()}"
    result = run(db_url, MetricsExportConfig(textfile=str(path), pushgateway_url=url, push_timeout_s=2))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "unreachable" in description and url in description
    assert path.is_file(), "the scrape path still works"


def test_schedule_is_stopped_by_default_and_slow_when_on() -> None:
    # Prometheus scrapes /metrics on `notify-pipeline serve`: no Dagster run a minute for metrics.
    schedule = schedules.export_metrics_schedule
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert "/metrics" in schedule.description
    assert schedule.job_name == "export_metrics_job"
    (request,) = schedule.evaluate_tick(dg.build_schedule_context()).run_requests
    assert not request.run_config, "the job runs on its defaults and the environment"


def test_code_location_has_the_job_and_schedule(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    defs = load_workspace_definitions()
    assert defs.get_job_def("export_metrics_job").name == "export_metrics_job"
    (schedule,) = [s for s in defs.schedules or [] if s.name == "export_metrics_schedule"]
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


# ---------------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------------

METRIC_NAME = re.compile(r"\bnotif(?:y|ication)_[a-z0-9_]+\b")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_exprs(board: dict) -> dict[str, list[str]]:
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in board["panels"]}


def test_dashboard_uses_only_metrics_the_exporter_produces(db) -> None:
    seed_finished(db)
    seed_queue(db)
    exported = produced_series(db)  # from the families: a counter nothing has counted yet is there too
    used = {
        name for exprs in panel_exprs(dashboard()).values() for e in exprs for name in METRIC_NAME.findall(e)
    }
    assert used, "the panels query something"
    assert used <= exported, used - exported


def test_dashboard_is_importable_with_a_datasource_and_domain_variable() -> None:
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["domain"]["includeAll"] and "domain" in variables["domain"]["definition"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    assert "baskets" not in DASHBOARD.read_text(), "domains come from the variable"


def test_dashboard_reads_the_database_counters_in_valid_promql() -> None:
    exprs = [e for group in panel_exprs(dashboard()).values() for e in group]
    assert "notify_queue_due" in exprs
    assert "histogram_quantile(0.99, sum by (le) (rate(notify_worker_run_seconds_bucket[5m])))" in exprs
    assert any(e.startswith("sum by (error_code) (rate(notify_failed_total") for e in exprs)
    assert not any(re.search(r"\)\s*by\s*\(", e) for e in exprs), "no trailing 'by' after rate(...)"
    success = next(e for e in exprs if e.startswith("100 * (sum by (domain) (rate(notify_sent_total"))
    assert 'domain=~"$domain"' in success
    assert any("notify_filtered_total" in e and "increase(" in e for e in exprs)
    assert any("notify_enqueue_to_accepted_seconds_bucket" in e for e in exprs)
    assert any("notify_meta_answer_seconds_bucket" in e for e in exprs)
    # Cumulative series are read through rate() or increase(), never as they are.
    for e in exprs:
        for name in re.findall(r"\bnotify_[a-z_]+_(?:total|bucket)\b", e):
            assert re.search(rf"(rate|increase)\({name}\b", e), e


def test_rate_limit_panel_reads_metas_throttling_codes() -> None:
    board = dashboard()
    panel = next(p for p in board["panels"] if p["title"].startswith("Rate-limit"))
    codes = re.search(r'reason=~"([0-9|]+)"', panel["targets"][0]["expr"]).group(1).split("|")
    assert sorted(codes) == ["130429", "131048", "131056"]
    for code in codes:
        assert errors.lookup(int(code)).error_class is errors.ErrorClass.THROTTLED
        assert code in panel["description"]
    # The runbook's 131047 is the 24-hour window, not a rate limit.
    assert "131047" not in json.dumps(board)

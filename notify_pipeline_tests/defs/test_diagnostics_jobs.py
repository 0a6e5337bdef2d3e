"""diagnostics_job in process and `notify-pipeline diagnose` as a separate process."""

from __future__ import annotations

import dagster as dg

from notify_pipeline.defs.operations.diagnostics import DiagnosticsConfig, diagnostics_job
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.diagnostics import insert, template


def run(db_url: str, **config) -> dg.ExecuteInProcessResult:
    return diagnostics_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(ops={"run_diagnostic": DiagnosticsConfig(**config)}),
        raise_on_error=False,
    )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    event = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    return event.step_output_data.metadata


def seed(db) -> None:
    template(db, "welcome_message")
    insert(
        db, "+250788001001", status="failed", code="131026", message="to +250788001001", correlation_id="c-9"
    )
    insert(db, "+250788001002", status="failed", code="131026", correlation_id="c-9")
    insert(db, "+250788001003", status="failed", code="opted_out")


def test_job_reports_failures_as_markdown_with_a_row_count(db, db_url) -> None:
    seed(db)
    result = run(db_url, report="failures", window_hours=2)
    assert result.success
    # The opt-out is not a failure (README "Figures"): it is listed in a table of its own, out of
    # the failures' rows and rate, where it used to be a second failure row.
    assert result.output_for_node("run_diagnostic") == 1
    metadata = output_metadata(result)
    assert metadata["rows"].value == 1 and metadata["name"].value == "failures"
    markdown = metadata["report"].value
    assert "| 131026 | 2 |" in markdown and "| Message undeliverable |" in markdown
    assert "| filtered | opted_out | 1 |" in markdown
    assert "+250788001001" not in markdown


def test_job_runs_the_trail_and_template_reports(db, db_url) -> None:
    seed(db)
    trail = run(db_url, report="trail", correlation_id="c-9")
    assert trail.success and trail.output_for_node("run_diagnostic") == 2
    assert "Events, oldest first" in output_metadata(trail)["report"].value
    failed = run(db_url, report="template-failures", template="welcome_message", limit=1)
    assert failed.success and failed.output_for_node("run_diagnostic") == 1


def test_job_fails_with_the_reason_on_bad_input(db_url) -> None:
    for config, reason in (
        ({"report": "trail", "correlation_id": "missing"}, "unknown correlation id 'missing'"),
        ({"report": "nonsense"}, "unknown report 'nonsense'"),
        ({"report": "errors", "window_hours": -3}, "give more than 0"),
    ):
        result = run(db_url, **config)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert reason in str(failure.step_failure_data.user_failure_data.description)


def test_cli_failures_and_trail_print_tables(db, db_url) -> None:
    seed(db)
    env = {"NOTIFY_DATABASE_URL": db_url}
    failures = cli("diagnose", "failures", "--hours", "2", env=env)
    assert failures.returncode == 0, failures.stderr
    assert "Message undeliverable" in failures.stdout and "only at their own request" in failures.stdout
    assert "+250788001001" not in failures.stdout
    trail = cli("diagnose", "trail", "c-9", env=env)
    assert trail.returncode == 0, trail.stderr
    assert "Audit trail of c-9" in trail.stdout and "queued" in trail.stdout
    quiet = cli("diagnose", "quiet-hours-violations", env=env)
    assert quiet.returncode == 0 and "Sent during quiet hours" in quiet.stdout


def test_cli_bad_input_is_one_line_and_exit_code_2(db_url) -> None:
    env = {"NOTIFY_DATABASE_URL": db_url}
    for args, reason in (
        (("failures", "--hours", "-1"), "give more than 0"),
        (("template-failures", "no_such_template"), "unknown template 'no_such_template'"),
        (("trail", "nope"), "unknown correlation id 'nope'"),
        (("top-recipients", "--limit", "0"), "limit 0"),
    ):
        result = cli("diagnose", *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], result.stderr
        assert "Traceback" not in result.stderr

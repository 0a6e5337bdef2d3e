"""Secrets and phone numbers never leave (issue 13). With a known database password, access token,
app secret, verify token, alert webhook URL and PagerDuty key set, every leak path the issue found
is triggered (a bad database URL, a run-failure alert, failing statements, `db url`); then Dagster's
event log, the alerts table, the embedded server's log and the CLI's output are searched: none of
the secrets is there, nor a full phone number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from notify_pipeline import redact
from notify_pipeline.cli.main import main
from notify_pipeline.db import urls
from notify_pipeline.db.connect import connect
from notify_pipeline.defs.alerts import sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts import run_failures
from notify_pipeline_tests import conftest
from notify_pipeline_tests.support.ports import free_port

PASSWORD = "Db-Pa55word-7f3k9q"
TOKEN = "EAAGtoken-5b1d8e0c2a9f"
APP_SECRET = "app-secret-3c9e1f0a"
VERIFY_TOKEN = "verify-token-8d2b6a4e"
PAGERDUTY_KEY = "pdroutingkey0123456789abcdef0123"
SECRET_PATH = "/services/T0001/B0002/alertS3cretPath"
NUMBER = "+250788123456"
# A full number in every shape it was given in: none may appear anywhere.
NUMBER_FORMS = ("250788123456", "+250 788 123 456", "250-788-123-456", "999123456789", "2507881234569")

CLI = str(Path(sys.executable).parent / "notify-pipeline")


@pytest.fixture
def secrets_env(monkeypatch, webhook_receiver) -> dict[str, str]:
    port = free_port()
    env = {
        "NOTIFY_DATABASE_URL": f"postgresql://notify:{PASSWORD}@127.0.0.1:{port}/notify",
        "DAGSTER_POSTGRES_URL": f"postgresql+psycopg2://dagster:{PASSWORD}@127.0.0.1:{port}/notify_dagster",
        "WHATSAPP_ACCESS_TOKEN": TOKEN,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "NOTIFY_ALERT_WEBHOOK_URL": webhook_receiver.url.replace("/webhook", SECRET_PATH),
        "NOTIFY_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY,
        "NOTIFY_PAGERDUTY_EVENTS_URL": webhook_receiver.url.replace("/webhook", "/pagerduty"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def leaks(text: str, env: dict[str, str]) -> list[str]:
    """What of the secrets or the number is in `text` (named, never printed)."""
    secrets = {
        "password": PASSWORD,
        "token": TOKEN,
        "app secret": APP_SECRET,
        "verify token": VERIFY_TOKEN,
        "pagerduty key": PAGERDUTY_KEY,
        "alert url": env["NOTIFY_ALERT_WEBHOOK_URL"],
        "alert url path": SECRET_PATH,
    }
    found = [name for name, secret in secrets.items() if secret in text]
    return found + [f"number {form[:4]}..." for form in NUMBER_FORMS if form in text]


# URL variants a careless operator types; each error must name what is wrong without the password.
BAD_URLS = [
    f"postgresql://notify:{PASSWORD}@127.0.0.1:notaport/notify",
    f"postgresql://notify:{PASSWORD}@127.0.0.1:5432",
    f"mysql://notify:{PASSWORD}@127.0.0.1/notify",
    f"postgresql://notify:{PASSWORD} @127.0.0.1/notify",
    f"postgres ql://notify:{PASSWORD}@127.0.0.1/notify",
    f"notify:{PASSWORD}@127.0.0.1/notify",
    f"host=127.0.0.1 user=notify password={PASSWORD} dbname=notify",
]


def test_the_scrubber_removes_every_secret_and_masks_numbers(secrets_env) -> None:
    text = (
        f"failed: {secrets_env['NOTIFY_DATABASE_URL']} token={TOKEN} secret {APP_SECRET} "
        f"verify {VERIFY_TOKEN} hook {secrets_env['NOTIFY_ALERT_WEBHOOK_URL']} key {PAGERDUTY_KEY} "
        f"other postgresql://x:anotherPass@db/x password='quoted pass' to {NUMBER}"
    )
    clean = redact.scrub(text)
    assert leaks(clean, secrets_env) == []
    assert "anotherPass" not in clean and "quoted pass" not in clean
    assert "+250*******56" in clean
    redact.register("registered-secret-42")
    assert redact.scrub("x registered-secret-42 y") == "x <redacted> y"


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_database_url_is_named_without_its_password(url: str, secrets_env) -> None:
    try:
        urls.libpq(url)
    except urls.DatabaseUrlError as exc:
        assert PASSWORD not in str(exc) and PASSWORD not in repr(exc.__cause__)
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"NOTIFY_DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert PASSWORD not in result.output


def test_no_leak_path_lets_a_secret_or_a_number_out(db, db_url, secrets_env, webhook_receiver) -> None:
    wrong_password_url = urls.parse(db_url).set(password=PASSWORD).render_as_string(hide_password=False)
    # Only what this test makes the server log: other tests on the session's server write there too.
    log_from = conftest._EMBEDDED[0].logfile.stat().st_size if conftest._EMBEDDED else 0

    @dg.op
    def leaky_op(context) -> None:
        # Errors product code turns into text: a bad URL, a refused password, failing statements.
        for bad in BAD_URLS:
            try:
                urls.libpq(bad)
            except urls.DatabaseUrlError as exc:
                context.log.error(str(exc))
        try:
            connect(wrong_password_url, connect_timeout_s=5).close()
        except psycopg.OperationalError as exc:
            context.log.error(redact.scrub(exc))
        with connect(db_url, actor="test", autocommit=True) as conn:
            for to in ("+250 788 123 456 78901", "999123456789", "250-788-123-456x", "2507881234569"):
                try:
                    conn.execute("SELECT queueNotification(%s)", (Jsonb({"to": to, "text": TOKEN}),))
                except psycopg.Error as exc:
                    context.log.error(str(exc).splitlines()[0])  # as the CLI and the ops report them
            try:
                conn.execute(
                    "INSERT INTO contact_preferences (wa_id, timezone, profile_id) VALUES (%s, 'CEST', %s)",
                    ("+250788123456", APP_SECRET),
                )
            except psycopg.Error as exc:
                # The whole error, DETAIL ("Failing row contains ...") included: scrubbed.
                context.log.error(redact.scrub(exc))
        urls.libpq(BAD_URLS[0])  # the run fails with the bad-URL error

    @dg.op
    def library_error_op() -> None:
        # A library quoting what it was given: Dagster keeps it, the alert must not.
        raise RuntimeError(
            f"could not open {secrets_env['NOTIFY_DATABASE_URL']} with token {TOKEN} "
            f"(app secret {APP_SECRET}, hook {secrets_env['NOTIFY_ALERT_WEBHOOK_URL']}) for {NUMBER}"
        )

    @dg.job
    def leaky_job() -> None:
        leaky_op()

    @dg.job
    def library_error_job() -> None:
        library_error_op()

    resources = {
        "queue_db": QueueDatabase(url=db_url),
        "alert_sink": AlertSink(backoff_s=0),
        "alert_thresholds": AlertThresholds(),
    }
    with dg.instance_for_test() as instance:
        results = [
            job.execute_in_process(instance=instance, raise_on_error=False)
            for job in (leaky_job, library_error_job)
        ]
        for result in results:
            assert not result.success
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=result.get_run_failure_event(),
                resources=resources,
            ).for_run_failure()
            sensors.run_failure_alert_sensor(context)
        leaky_run = results[0].dagster_run.run_id
        event_log = "\n".join(dg.serialize_value(entry) for entry in instance.all_logs(leaky_run))
        sensor_logs = "\n".join(
            dg.serialize_value(entry)
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id)
            if entry.step_key is None and entry.user_message.startswith("RUN FAILED")
        )
    assert "is not a database URL" in event_log or "is not a PostgreSQL URL" in event_log
    assert "country calling code" in event_log and "+999*******89" in event_log
    assert leaks(event_log, secrets_env) == [], "Dagster's event log of the failing run"
    assert leaks(sensor_logs, secrets_env) == []

    # PagerDuty's events carry the routing key by design (it addresses them): the rest of them may not.
    bodies = [{k: v for k, v in body.items() if k != "routing_key"} for body in webhook_receiver.wait_for(2)]
    posted = "\n".join(json.dumps(body) for body in bodies)
    assert "RUN FAILED" in posted
    assert leaks(posted, secrets_env) == [], "the alert webhook's messages"
    rows = db.execute("SELECT alert_name, summary, details::text FROM alerts").fetchall()
    assert {row[0] for row in rows} == {"run_failure:leaky_job", "run_failure:library_error_job"}
    assert leaks(json.dumps(rows), secrets_env) == [], "the alerts table"
    verdict = run_failures.verdict(
        run_failures.RunFailure("job", "0" * 36, f"at {wrong_password_url} token {TOKEN}"), None
    )
    assert leaks(json.dumps([verdict.headline, verdict.facts, verdict.numbers]), secrets_env) == []

    if conftest._EMBEDDED:
        with conftest._EMBEDDED[0].logfile.open("rb") as logfile:
            logfile.seek(log_from)
            log = logfile.read().decode(errors="replace")
        assert "password authentication failed" in log, "the failing statements reached this server"
        assert leaks(log, secrets_env) == [], "the embedded server's log"
        assert "queueNotification(" not in log and "STATEMENT:" not in log
        assert "DETAIL:" not in log, "no row data (Failing row contains ...)"

    cli_output = ""
    for args in (["db", "url"], ["db", "upgrade"], ["status"], ["enqueue", "--to", NUMBER, "--text", "hi"]):
        result = CliRunner().invoke(main, args)
        cli_output += result.output
    for args in (["status"], ["enqueue", "--to", "+999123456789", "--text", TOKEN]):
        result = CliRunner().invoke(main, args, env={"NOTIFY_DATABASE_URL": wrong_password_url})
        cli_output += result.output
    for args in (["enqueue", "--to", "+999123456789", "--text", TOKEN], ["contact", "show", NUMBER]):
        result = CliRunner().invoke(main, args, env={"NOTIFY_DATABASE_URL": db_url})
        cli_output += result.output
    assert "postgresql://notify:***@127.0.0.1:" in cli_output
    assert "country calling code" in cli_output
    assert leaks(cli_output, secrets_env) == [], "the CLI's output"


def test_db_url_of_the_embedded_server_masks_its_generated_password(tmp_path: Path) -> None:
    env = {**os.environ, "NOTIFY_DATABASE_URL": "", "NOTIFY_DATA_DIR": str(tmp_path)}
    env["NOTIFY_EMBEDDED_PG_PORT"] = str(free_port())
    try:
        masked = subprocess.run([CLI, "db", "url"], env=env, capture_output=True, text=True, timeout=120)
        assert masked.returncode == 0, masked.stderr
        password = (tmp_path / "postgres" / "password").read_text().strip()
        assert password not in masked.stdout + masked.stderr
        assert masked.stdout.startswith("postgresql://postgres:***@127.0.0.1:")
    finally:
        subprocess.run([CLI, "db", "stop"], env=env, capture_output=True, timeout=120)

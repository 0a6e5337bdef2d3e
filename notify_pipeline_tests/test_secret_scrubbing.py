"""The scrubber knows secrets, not strings (issue 18). A receiver that answers `404 Cannot POST
/services/<token>` (Express's page) and a PagerDuty that repeats the routing key in its 400 get the
alert sensors' posts; afterwards the token and the key are in no table of the database, no log
line, no stderr, no file Dagster wrote. `db url` masks a password given as ?password=, and the files
the product writes are private (test_private_files.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import psycopg
import pytest
from sqlalchemy.engine import URL

from notify_pipeline import redact
from notify_pipeline.db import urls
from notify_pipeline.defs.alerts import sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.messages import compose
from notify_pipeline.reporting.alerts.sink import ERROR_CHARS, Delivery, WebhookSink
from notify_pipeline_tests import conftest
from notify_pipeline_tests.support.alerts import FakeClock, add_rows, worker_start

TOKEN = "xoxbEch0edT0k3n5b1d8e0c2a"  # the secret part of a Slack webhook URL: its last path segment
SLACK_PATH = f"/services/T0001/B0002/{TOKEN}"
ROUTING_KEY = "R0ut1ngK3yEch0edQ7xZpL4mW9vB2nC5"  # no run another test could write by chance
EXPRESS_404 = (  # what an Express app answers to a POST it has no route for
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>Cannot POST {path}</pre>\n</body>\n</html>\n"
)
CLI = str(Path(sys.executable).parent / "notify-pipeline")


def pieces(secret: str, size: int = 10) -> set[str]:
    """Every `size`-character piece of a secret: a leak of part of it is a leak."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaked(text: str) -> list[str]:
    """Which secrets (named, never printed) have a piece in `text`."""
    found = []
    for name, secret in (("webhook token", TOKEN), ("routing key", ROUTING_KEY)):
        if any(piece in text or quote(piece) in text for piece in pieces(secret)):
            found.append(name)
    return found


class EchoingReceiver:
    """A real HTTP server that refuses every alert and repeats what it was sent: the webhook path in
    Express's 404 page (after `pad` characters of noise), the routing key in PagerDuty's 400."""

    def __init__(self, pad: int = 0) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append((self.path, raw))
                if self.path == "/v2/enqueue":
                    key = json.loads(raw).get("routing_key")
                    text = json.dumps({"status": "invalid event", "errors": [f"routing key {key} unknown"]})
                    return self._answer(400, "application/json", text)
                self._answer(404, "text/html", "." * pad + EXPRESS_404.format(path=self.path))

            def _answer(self, status: int, kind: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def echoing() -> Iterator[EchoingReceiver]:
    receiver = EchoingReceiver()
    yield receiver
    receiver.close()


def dump_tables(conn: psycopg.Connection) -> str:
    """Every row of every table of the database, as text."""
    tables = conn.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    ).fetchall()
    return "\n".join(row[0] for (table,) in tables for row in conn.execute(f"SELECT t::text FROM {table} t"))


def files_text(root: Path) -> tuple[str, list[Path]]:
    """The bytes of every file under `root` (as text) and the files read."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    return "\n".join(path.read_bytes().decode("utf-8", "replace") for path in files), files


def test_an_echoed_webhook_token_reaches_no_table_log_or_file(
    db, db_url, echoing, monkeypatch, caplog, capfd, tmp_path
) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", echoing.base + SLACK_PATH)
    monkeypatch.setenv("NOTIFY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("NOTIFY_PAGERDUTY_EVENTS_URL", echoing.base + "/v2/enqueue")
    caplog.set_level(logging.DEBUG)
    add_rows(db, 2, due="now() - interval '2 hours'")
    worker_start(db)
    resources = {
        "queue_db": QueueDatabase(url=db_url),
        "alert_thresholds": AlertThresholds(),
        "alert_sink": AlertSink(backoff_s=0),
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    sensor = sensors.alert_sensor(BY_NAME["oldest_queued"], clock=FakeClock())

    @dg.op
    def failing_op() -> None:
        raise RuntimeError("the queue database went away")

    @dg.job
    def failing_job() -> None:
        failing_op()

    with dg.instance_for_test(temp_dir=str(home)) as instance:
        with dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),  # the tick's log is captured as the daemon's is
            repository_name="notify_pipeline",
            sensor_name=sensor.name,
            resources=resources,
        ) as context:
            result = sensor(context)
        tick = result.skip_reason.skip_message
        check_metadata = dg.serialize_value(result.asset_events)
        run = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        failure = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_instance=instance,
            dagster_run=run.dagster_run,
            dagster_event=run.get_run_failure_event(),
            resources=resources,
        ).for_run_failure()
        sensors.run_failure_alert_sensor(failure)
        event_log = "\n".join(
            dg.serialize_value(entry) for r in instance.get_runs() for entry in instance.all_logs(r.run_id)
        )

    # The receiver got the token in the path and the key in the body, and echoed both back.
    assert echoing.paths().count(SLACK_PATH) >= 2, echoing.paths()
    assert "/v2/enqueue" in echoing.paths()
    assert "webhook delivery FAILED after 1 attempt(s): HTTP 404" in tick
    tables = dump_tables(db)
    assert leaked(tables) == [], "a table of the queue database"
    assert "Cannot POST <redacted>" in tick, "the receiver's answer is kept, scrubbed"
    assert "Cannot POST <redacted>" in tables and "routing key <pagerduty routing key> unknown" in tables
    assert "Cannot POST <redacted>" in check_metadata, "the check's metadata shows the tick"
    assert leaked(tick + check_metadata + event_log) == [], "the tick text, check metadata, event log"
    captured = capfd.readouterr()
    assert "oldest_queued: FIRING" in captured.err, "the sensor's log line reached stderr"
    assert leaked(caplog.text) == [], "log records"
    assert leaked(captured.out + captured.err) == [], "stdout, stderr"
    written, files = files_text(home)
    tick_logs = [path for path in files if sensor.name in path.parts]  # storage/<repo>/<sensor>/<tick>.err
    assert tick_logs and "Cannot POST <redacted>" in tick_logs[0].read_text(), "the tick's compute log"
    assert leaked(written) == [], "files Dagster wrote (storage, compute logs)"
    if conftest._EMBEDDED:
        assert leaked(conftest._EMBEDDED[0].logfile.read_text(errors="replace")) == []


def test_a_token_cut_by_the_error_limit_is_still_removed(monkeypatch) -> None:
    # The echoed path straddles the cut at ERROR_CHARS: cutting first would keep half of the token.
    prefix = len(EXPRESS_404.split("{path}")[0]) + len(SLACK_PATH) - len(TOKEN)
    receiver = EchoingReceiver(pad=ERROR_CHARS - prefix - len(TOKEN) // 2)
    try:
        url = receiver.base + SLACK_PATH
        monkeypatch.delenv("NOTIFY_ALERT_WEBHOOK_URL", raising=False)  # known to the sink alone
        delivery = WebhookSink(url, retries=0).deliver(compose(["test"], "footer"))
    finally:
        receiver.close()
    assert delivery.status == 404 and "Cannot POST" in (delivery.error or "")
    assert leaked(delivery.error or "") == [], "no piece of the token in the stored error"


def test_db_url_masks_a_password_given_as_a_query_parameter(db_url) -> None:
    parts = urls.parse(db_url)
    password = parts.password
    assert password, "the test server has a password"
    # URL.set(password=None) keeps the password: build the URL without one, then add it as a parameter.
    in_query = URL.create(
        "postgresql",
        parts.username,
        None,
        parts.host,
        parts.port,
        parts.database,
        {"password": password, "sslmode": "disable"},
    )
    url = in_query.render_as_string(hide_password=False)
    with psycopg.connect(url, connect_timeout=10) as conn:  # a URL libpq really takes
        assert conn.execute("SELECT 1").fetchone() == (1,)
    env = {**os.environ, "NOTIFY_DATABASE_URL": url}
    shown = subprocess.run([CLI, "db", "url"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"postgresql://{parts.username}@"), "the password is only in the query"
    assert "password=***" in shown.stdout and "sslmode=disable" in shown.stdout, shown.stdout
    # CI's PostgreSQL 15 role has its name as password: look for it anywhere but the user name.
    shown_text = (shown.stdout + shown.stderr).replace(f"postgresql://{parts.username}@", "", 1)
    assert password not in shown_text
    full = subprocess.run(
        [CLI, "db", "url", "--show-password"], env=env, capture_output=True, text=True, timeout=120
    )
    assert f"password={password}" in full.stdout, "--show-password still shows it"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"404 Cannot POST {SLACK_PATH}", "404 Cannot POST <redacted>"),
        (f"token {TOKEN} again {TOKEN}", "token <redacted> again <redacted>"),
        (f"encoded {quote('https://hooks.example' + SLACK_PATH, safe='')}", "encoded <redacted>"),
        ("GET /services/T0001/B0002/other?x=1", "GET /services/T0001/B0002/other?x=1"),
        ("db at postgresql://u@h/db?sslmode=require&password=Qw3rty-9&x=1", "password=***&x=1"),
        ("GET /hook?hub.verify_token=v3r1fy&hub.challenge=42", "hub.verify_token=***&hub.challenge=42"),
        ("x?sslkey=/etc/key.pem&sig=abcdef0123", "x?sslkey=/etc/key.pem&sig=***"),
        ("a short word: abc, and services", "a short word: abc, and services"),
    ],
)
def test_the_scrubber_removes_secrets_inside_any_text(text: str, kept: str, monkeypatch) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", "https://hooks.example" + SLACK_PATH)
    monkeypatch.setenv("WHATSAPP_WEBHOOK_VERIFY_TOKEN", "abc")  # too short to scrub by value
    clean = redact.scrub(text)
    assert kept in clean, clean
    assert leaked(clean) == []


def test_secret_parts_of_urls() -> None:
    slack = "https://hooks.slack.com/services/T0001/B0002/" + TOKEN
    assert TOKEN in redact.url_secrets(slack, whole=True)
    assert "/services/T0001/B0002/" + TOKEN in redact.url_secrets(slack, whole=True)
    assert redact.url_secrets(slack) == set(), "a URL that is not a secret: its path is not"
    assert redact.url_secrets("postgresql://u:pw-1234@h/db?password=Qw3rty-9&sslkey=/k") == {
        "pw-1234",
        "Qw3rty-9",
    }
    assert "services" not in redact.url_secrets(slack, whole=True), "plain words are not tokens"


def test_a_delivery_keeps_no_secret_whoever_built_it(monkeypatch) -> None:
    # A Sink of another kind (or a future code path) that forgets to scrub still stores nothing.
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", "https://hooks.example" + SLACK_PATH)
    delivery = Delivery(ok=False, channel="webhook", status=404, error=f"HTTP 404: Cannot POST {SLACK_PATH}")
    assert delivery.error == "HTTP 404: Cannot POST <redacted>"
    assert leaked(json.dumps(delivery.as_json()) + delivery.describe()) == []


def test_a_secret_is_removed_in_its_encoded_forms(monkeypatch) -> None:
    secret = 'Ap9"s3cr/et\\x'  # printable ASCII, as settings allows
    monkeypatch.setenv("WHATSAPP_APP_SECRET", secret)
    forms = {"plain": secret, "url-encoded": quote(secret, safe=""), "json": json.dumps({"e": secret})}
    kept = {name: redact.scrub(text) for name, text in forms.items() if "s3cr" in redact.scrub(text)}
    assert kept == {}

"""Hostile and careless input at every entry point (issue 13): each is refused clearly (22023 with a
hint from queueNotification; one line and exit code 2 from the CLI; False from the webhook
signature check) and nothing is written. A full phone number never appears in a refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from notify_pipeline.cli.main import main
from notify_pipeline.operations import contacts
from notify_pipeline.whatsapp import webhooks

TEXT = {"to": "+250788999001", "text": "hi"}
TEMPLATE = {"to": "+250788999001", "template": {"name": "welcome_message", "language": "en"}}
NUMBERS = ("250788999001", "250788123456", "999123456789", "80012345678")


def _future(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _big_param(chars: int) -> dict:
    parameters = [{"type": "text", "text": "x" * chars}]
    return {
        **TEMPLATE,
        "template": {**TEMPLATE["template"], "components": [{"type": "body", "parameters": parameters}]},
    }


# (id, message, meta, words the refusal contains)
QUEUE_REFUSALS = [
    # send_at: named times PostgreSQL reads, and times outside the window of delay_seconds.
    ("send-at-infinity", TEXT, {"send_at": "infinity"}, "outside the window"),
    ("send-at-minus-infinity", TEXT, {"send_at": "-infinity"}, "outside the window"),
    ("send-at-epoch", TEXT, {"send_at": "epoch"}, "outside the window"),
    ("send-at-1970", TEXT, {"send_at": "1970-01-01T00:00:00Z"}, "outside the window"),
    ("send-at-last-year", TEXT, {"send_at": _future(-365)}, "outside the window"),
    ("send-at-2-days-ago", TEXT, {"send_at": _future(-2)}, "outside the window"),
    ("send-at-31-days", TEXT, {"send_at": _future(31)}, "outside the window"),
    ("send-at-year-2999", TEXT, {"send_at": "2999-01-01T00:00:00Z"}, "outside the window"),
    ("send-at-number", TEXT, {"send_at": 1767225600}, "timestamp string"),
    ("send-at-object", TEXT, {"send_at": {"at": "now"}}, "timestamp string"),
    ("send-at-long", TEXT, {"send_at": "2026-01-01 " + "x" * 100}, "timestamp string"),
    ("send-at-garbage", TEXT, {"send_at": "soon"}, "is not a timestamp"),
    # lengths and shapes of free-text identifiers
    ("correlation-9kb", TEXT, {"correlation_id": "c" * 9000}, "correlation_id"),
    ("correlation-256", TEXT, {"correlation_id": "c" * 256}, "correlation_id"),
    ("correlation-number", TEXT, {"correlation_id": 42}, "correlation_id"),
    ("correlation-object", TEXT, {"correlation_id": {"id": 1}}, "correlation_id"),
    ("correlation-newline", TEXT, {"correlation_id": "a\nb"}, "correlation_id"),
    ("campaign-1mb", TEXT, {"campaign_id": "k" * 1_000_000}, "meta is"),
    ("campaign-256", TEXT, {"campaign_id": "k" * 256}, "campaign_id"),
    ("campaign-array", TEXT, {"campaign_id": ["spring"]}, "campaign_id"),
    ("campaign-control", TEXT, {"campaign_id": "spring\x07sale"}, "campaign_id"),
    ("type-control", TEXT, {"type": "order\rpaid"}, "control characters"),
    ("dedupe-control", TEXT, {"dedupe_key": "order-42\n"}, "control characters"),
    ("dedupe-256", TEXT, {"dedupe_key": "d" * 256}, "dedupe_key"),
    ("template-param-70kb", _big_param(70_000), None, "message is"),
    ("text-4097", {"to": "+250788999001", "text": "t" * 4097}, None, "4096"),
    # language: checked on text messages too
    ("text-language-word", TEXT, {"language": "english"}, "meta.language"),
    ("text-language-number", TEXT, {"language": 5}, "meta.language"),
    ("text-language-injection", TEXT, {"language": "en'; DROP TABLE notifications; --"}, "meta.language"),
    ("text-language-empty", TEXT, {"language": ""}, "meta.language"),
    (
        "template-language-long",
        {**TEMPLATE, "template": {"name": "a", "language": "e" * 5000}},
        None,
        "language",
    ),
    # recipients: the shape, then an assigned country calling code
    ("to-999", {"to": "+999123456", "text": "hi"}, None, "country calling code"),
    ("to-999-long", {"to": "+999123456789", "text": "hi"}, None, "country calling code"),
    ("to-210", {"to": "+210123456789", "text": "hi"}, None, "country calling code"),
    ("to-259", {"to": "+259123456789", "text": "hi"}, None, "country calling code"),
    ("to-freephone", {"to": "+80012345678", "text": "hi"}, None, "country calling code"),
    ("to-premium", {"to": "+97912345678", "text": "hi"}, None, "country calling code"),
    ("to-671", {"to": "+6711234567", "text": "hi"}, None, "country calling code"),
    ("to-leading-zero", {"to": "+0250788123456", "text": "hi"}, None, "not a WhatsApp number"),
    ("to-too-long", {"to": "+2507881234567890", "text": "hi"}, None, "not a WhatsApp number"),
    ("to-letters", {"to": "+250788123456x", "text": "hi"}, None, "not a WhatsApp number"),
    ("to-tel-uri", {"to": "tel:+250788123456", "text": "hi"}, None, "not a WhatsApp number"),
    ("to-huge", {"to": "+" + "2" * 100_000, "text": "hi"}, None, "message is"),
    ("to-100-digits", {"to": "+" + "2" * 100, "text": "hi"}, None, "not a WhatsApp number"),
    ("to-number-type", {"to": 250788123456, "text": "hi"}, None, "message.to is missing"),
]


def _queue(db: psycopg.Connection, message, meta) -> None:
    db.execute(
        "SELECT queueNotification(%s, %s)", (Jsonb(message), Jsonb(meta) if meta is not None else None)
    )


def _written(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT (SELECT count(*) FROM notifications) + (SELECT count(*) FROM notification_audit_log)"
    ).fetchone()[0]


def test_queue_notification_refuses_every_bad_input_with_a_hint_and_writes_nothing(
    db: psycopg.Connection, record_property
) -> None:
    refused = []
    for case, message, meta, words in QUEUE_REFUSALS:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            _queue(db, message, meta)
        text = caught.value.diag.message_primary or ""
        assert words in text, (case, text)
        assert caught.value.diag.message_hint or "4096" in text, f"{case}: no hint: {text}"
        assert len(text) < 400, f"{case}: the refusal repeats the input: {text[:100]}"
        assert not any(number in text for number in NUMBERS), f"{case}: a full number in {text}"
        refused.append(case)
    assert _written(db) == 0
    record_property("queue_notification_tried_refused", f"{len(QUEUE_REFUSALS)}/{len(refused)}")


@pytest.mark.parametrize(
    ("message", "meta"),
    [
        (TEXT, {"send_at": "now"}),
        (TEXT, {"send_at": _future(29)}),
        (TEXT, {"send_at": _future(-0.5)}),
        (TEXT, {"correlation_id": "c" * 255, "campaign_id": "k" * 255}),
        (TEXT, {"language": "pt_BR"}),
        ({"to": "+1 (415) 555-0100", "text": "hi"}, None),
        ({"to": "+7 912 345 67 89", "text": "hi"}, None),
        ({"to": "+881612345678", "text": "hi"}, None),
        ({"to": "+3906698123456", "text": "hi"}, None),
        ({"to": "250788123456", "text": "hi"}, None),
        (_big_param(1024), None),
    ],
)
def test_good_input_at_the_bounds_is_queued(db: psycopg.Connection, message, meta) -> None:
    _queue(db, message, meta)
    assert db.execute("SELECT count(*) FROM notifications").fetchone()[0] == 1


ZONE_REFUSALS = ["Etc/GMT+5", "Etc/GMT-3", "Etc/GMT+12", "Etc/GMT-14", "Etc/GMT+0"]


@pytest.mark.parametrize("zone", ZONE_REFUSALS)
def test_etc_gmt_offsets_are_refused_with_a_hint_everywhere(db: psycopg.Connection, zone: str) -> None:
    with pytest.raises(contacts.ContactError, match="inverted sign"):
        contacts.validate_timezone(zone)
    db.execute("SELECT init_contact_preferences('+250788123456')")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        db.execute("UPDATE contact_preferences SET timezone = %s", (zone,))
    assert "Area/Location" in caught.value.diag.message_hint
    assert db.execute("SELECT timezone FROM contact_preferences").fetchone()[0] == "Africa/Kigali"


def test_etc_utc_stays_valid(db: psycopg.Connection) -> None:
    assert contacts.validate_timezone("Etc/UTC") == "Etc/UTC"
    db.execute("INSERT INTO contact_preferences (wa_id, timezone) VALUES ('+250788123456', 'Etc/UTC')")


# --- the CLI: one line on stderr, exit code 2, never a traceback, nothing written -------------

CLI_REFUSALS = [
    (["send", "--throughput-per-s", "-5"], "--throughput-per-s"),
    (["send", "--throughput-per-s", "nan"], "--throughput-per-s"),
    (["send", "--throughput-per-s", "inf"], "--throughput-per-s"),
    (["send", "--throughput-per-s", "1e400"], "--throughput-per-s"),
    (["send", "--max-seconds", "nan"], "--max-seconds"),
    (["send", "--max-seconds", "inf"], "--max-seconds"),
    (["send", "--max-seconds", "0"], "--max-seconds"),
    (["send", "--max-seconds", "-1"], "--max-seconds"),
    (["send", "--max-seconds", "1e12"], "--max-seconds"),
    (["send", "--batch-size", "0"], "--batch-size"),
    (["send", "--batch-size", "999999999"], "--batch-size"),
    (["send", "--batch-size", "ten"], "--batch-size"),
    (["send", "--concurrency", "0"], "--concurrency"),
    (["send", "--concurrency", "100000"], "--concurrency"),
    (["send", "--wait-for-sender", "nan"], "--wait-for-sender"),
    (["enqueue", "--to", "+250788123456", "--text", "hi", "--delay-seconds", "nan"], "--delay-seconds"),
    (["enqueue", "--to", "+250788123456", "--text", "hi", "--delay-seconds", "inf"], "--delay-seconds"),
    (["enqueue", "--to", "+250788123456", "--text", "hi", "--delay-seconds", "-1"], "--delay-seconds"),
    (["enqueue", "--to", "+250788123456", "--text", "hi", "--delay-seconds", "1e12"], "--delay-seconds"),
    (["enqueue", "--to", "+999123456", "--text", "hi"], "country calling code"),
    (["enqueue", "--to", "+250788123456", "--text", "hi", "--language", "english"], "meta.language"),
    (["enqueue", "--to", "+250788123456", "--text", "   "], "text"),
    (["sweep", "--older-than", "99999999999999999999d"], "--older-than"),
    (["sweep", "--older-than", "367d"], "--older-than"),
    (["sweep", "--older-than", "-5m"], "--older-than"),
    (["sweep", "--older-than", "nan"], "--older-than"),
    (["retry-failed", "--since", "99999999999999999999999h"], "--since"),
    (["retry-failed", "--since", "inf"], "--since"),
    (["stop", "--reason", ""], "--reason"),
    (["stop", "--reason", "   "], "--reason"),
    (["stop", "--reason", "x" * 501], "--reason"),
    (["stop", "--reason", "two\nlines"], "--reason"),
    (["resume", "--reason", ""], "--reason"),
    (["contact", "opt-out", "+250788123456", "--reason", ""], "--reason"),
    (["contact", "opt-in", "+250788123456", "--reason", " "], "--reason"),
    (["contact", "set", "+250788123456", "--timezone", "Etc/GMT+5"], "inverted sign"),
    (["contact", "set", "+250788123456", "--timezone", "Etc/GMT-3"], "inverted sign"),
    (["contact", "bulk-defaults", "--batch-size", "0"], "--batch-size"),
    (["seed-demo", "--notifications", "-5"], "--notifications"),
    (["seed-demo", "--contacts", "0"], "--contacts"),
    (["cleanup", "--older-than-days", "0"], "at least 1"),
    (["cleanup", "--older-than-days", "99999999999"], "--older-than-days"),
    (["cleanup", "--batch-size", "0"], "--batch-size"),
    (["diagnose", "failures", "--hours", "nan"], "window"),
    (["diagnose", "failures", "--hours", "inf"], "window"),
    (["diagnose", "failures", "--hours", "-1"], "window"),
    (["diagnose", "deferred", "--limit", "0"], "limit"),
    (["alerts", "--since", "99999999999d"], "--since"),
    (["emulator", "--throughput-per-s", "nan"], "--throughput-per-s"),
    (["emulator", "--latency-ms", "-1"], "--latency-ms"),
    (["emulator", "--port", "70000"], "--port"),
    (["dev", "--port", "0"], "--port"),
    (["serve", "--port", "70000"], "--port"),
]

ENV_REFUSALS = [
    ({"WHATSAPP_HTTP_TRANSPORT": "foo"}, "WHATSAPP_HTTP_TRANSPORT"),
    ({"NOTIFY_SERVE_PORT": "http"}, "NOTIFY_SERVE_PORT"),
    ({"NOTIFY_EMBEDDED_PG_PORT": "99999"}, "NOTIFY_EMBEDDED_PG_PORT"),
    ({"NOTIFY_REPORT_TIMEZONE": "Mars/Base"}, "NOTIFY_REPORT_TIMEZONE"),
    ({"NOTIFY_REPORT_START_DATE": "yesterday"}, "NOTIFY_REPORT_START_DATE"),
    ({"NOTIFY_SEND_LIFETIME_MINUTES": "nan"}, "NOTIFY_SEND_LIFETIME_MINUTES"),
    ({"WHATSAPP_API_BASE_URL": "graph.facebook.com"}, "WHATSAPP_API_BASE_URL"),
    ({"WHATSAPP_API_VERSION": "23"}, "WHATSAPP_API_VERSION"),
    ({"WHATSAPP_ACCESS_TOKEN": "two words"}, "WHATSAPP_ACCESS_TOKEN"),
    ({"NOTIFY_ALERT_WEBHOOK_URL": "hooks.slack.com/services/T/B/secretpart"}, "NOTIFY_ALERT_WEBHOOK_URL"),
    ({"NOTIFY_PUSHGATEWAY_URL": "ftp://push:9091"}, "NOTIFY_PUSHGATEWAY_URL"),
    ({"NOTIFICATION_WORKER_CRON_ENABLED": "maybe"}, "NOTIFICATION_WORKER_CRON_ENABLED"),
    ({"DAGSTER_POSTGRES_URL": "mysql://root@localhost/dagster"}, "DAGSTER_POSTGRES_URL"),
]


def _run(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=True)


def _assert_one_line_refusal(result, words: str, label: str) -> None:
    assert result.exit_code == 2, f"{label}: exit {result.exit_code}: {result.output}"
    assert isinstance(result.exception, SystemExit), f"{label}: {result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{label}: {result.stderr}"
    assert lines[0].startswith("notify-pipeline: "), f"{label}: {lines[0]}"
    assert words in lines[0], f"{label}: {lines[0]}"
    assert "Traceback" not in result.output
    assert not any(number in result.output for number in NUMBERS), f"{label}: {result.output}"


def _cli_env(db_url: str) -> dict[str, str]:
    return {
        "NOTIFY_DATABASE_URL": db_url,
        "WHATSAPP_ACCESS_TOKEN": "test-token",
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    }


def test_the_cli_refuses_every_bad_option_in_one_line_and_writes_nothing(
    db: psycopg.Connection, db_url: str, record_property
) -> None:
    env = _cli_env(db_url)
    for args, words in CLI_REFUSALS:
        _assert_one_line_refusal(_run(args, env), words, " ".join(args)[:80])
    assert _written(db) == 0
    assert db.execute("SELECT paused FROM queue_control").fetchone()[0] is False
    record_property("cli_tried_refused", f"{len(CLI_REFUSALS)}/{len(CLI_REFUSALS)}")


def test_bad_settings_are_refused_at_start_one_line_each_without_secrets(db_url: str) -> None:
    for extra, words in ENV_REFUSALS:
        result = _run(["status"], {**_cli_env(db_url), **extra})
        _assert_one_line_refusal(result, words, json.dumps(extra))
        assert "secretpart" not in result.output
    both = _run(["status"], {**_cli_env(db_url), "WHATSAPP_HTTP_TRANSPORT": "foo", "NOTIFY_SERVE_PORT": "x"})
    assert both.exit_code == 2 and len(both.stderr.strip().splitlines()) == 2, "one line per bad value"


def test_send_with_the_database_down_is_one_line(db_url: str) -> None:
    from notify_pipeline_tests.support.ports import free_port

    env = {**_cli_env(db_url), "NOTIFY_DATABASE_URL": f"postgresql://u:pw-x1@127.0.0.1:{free_port()}/n"}
    result = _run(["send", "--max-seconds", "1"], env)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.strip().count("\n") == 0 and "cannot reach the queue database" in result.stderr


# --- webhook signatures ----------------------------------------------------------------------

SECRET = "app-secret-for-tests"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
GOOD = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
BAD_SIGNATURES = [
    None,
    "",
    "sha256=",
    GOOD.upper(),
    GOOD[:-1],
    GOOD + "0",
    "sha1=" + GOOD[7:],
    GOOD.replace("sha256=", "sha256:"),
    "sha256=" + "é" * 64,
    GOOD[:20] + "\u200b" + GOOD[20:],
    ("sha256=" + hmac.new(b"other", BODY, hashlib.sha256).hexdigest()).encode(),
    b"sha256=\xff\xfe",
]


def test_webhook_signature_refusals_are_false_never_an_exception(record_property) -> None:
    assert webhooks.verify(SECRET, BODY, GOOD)
    assert webhooks.verify(SECRET, BODY, f"  {GOOD} ".encode())
    for header in BAD_SIGNATURES:
        assert webhooks.verify(SECRET, BODY, header) is False, header
    record_property("signatures_tried_refused", f"{len(BAD_SIGNATURES)}/{len(BAD_SIGNATURES)}")


@pytest.mark.parametrize("secret", ["", None])
def test_an_empty_app_secret_is_a_configuration_error_never_a_pass(secret) -> None:
    forged = "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="WHATSAPP_APP_SECRET"):
        webhooks.verify(secret, BODY, forged)
    with pytest.raises(ValueError, match="WHATSAPP_APP_SECRET"):
        webhooks.sign(secret, BODY)

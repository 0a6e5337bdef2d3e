"""The queue commands of `notify-pipeline`, run as separate processes against a real PostgreSQL and
the emulator."""

from __future__ import annotations

import json

import pytest

from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.engine import load_demo_templates, statuses


@pytest.fixture
def env(db_url, emulator) -> dict[str, str]:
    return {
        "NOTIFY_DATABASE_URL": db_url,
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
    }


def test_enqueue_send_status(db, env, emulator) -> None:
    load_demo_templates(db)
    first = cli(
        "enqueue",
        "--to",
        "+250 788 000 111",
        "--template",
        "welcome_message",
        "--param",
        "Aline",
        "--domain",
        "orders",
        "--dedupe-key",
        "k1",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    again = cli(
        "enqueue",
        "--to",
        "+250788000111",
        "--template",
        "welcome_message",
        "--param",
        "Aline",
        "--dedupe-key",
        "k1",
        env=env,
    )
    assert again.stdout == first.stdout, "the dedupe key returns the first id"
    status = cli("status", env=env)
    assert "1 due now" in status.stdout
    shown = json.loads(cli("status", "--json", env=env).stdout)
    assert shown["queue"]["due"] == 1 and shown["outcomes"]["by_domain"]["orders"]["queued"] == 1
    assert shown["outcomes"]["overall"]["failure_rate"] is None, "nothing finished: no rate"
    sent = cli("send", "--max-seconds", "10", env=env)
    assert sent.returncode == 0, sent.stderr
    report = json.loads(sent.stdout)
    assert report["sent"] == 1 and report["trigger"] == "cli"
    assert statuses(db) == {"sent": 1}
    assert emulator.stats()["total"] == 1
    after = cli("status", env=env).stdout
    assert "Send runs (newest first)" in after and "drained" in after


def test_status_names_a_sender_hold_and_how_to_lift_it(db, env) -> None:
    db.execute(
        "INSERT INTO sender_holds (sender, kind, code, reason) VALUES (%s, 'auth', '190', 'token expired')",
        (env["WHATSAPP_PHONE_NUMBER_ID"],),
    )
    text = cli("status", env=env).stdout
    assert "Sender HELD since" in text and "(190): token expired" in text and "resume --hold" in text


def test_enqueue_bad_input_is_one_clear_line(env) -> None:
    result = cli("enqueue", "--to", "not-a-number", "--text", "hi", env=env)
    assert result.returncode == 2
    assert "is not a WhatsApp number" in result.stderr and "Traceback" not in result.stderr
    neither = cli("enqueue", "--to", "+250788000111", env=env)
    assert neither.returncode == 2 and "--template NAME or --text TEXT" in neither.stderr


def test_send_with_a_bad_token_exits_non_zero_and_keeps_the_queue(db, env) -> None:
    load_demo_templates(db)
    cli("enqueue", "--to", "+250788000111", "--template", "welcome_message", "--param", "A", env=env)
    result = cli("send", env={**env, "WHATSAPP_ACCESS_TOKEN": "nope-token"})
    assert result.returncode == 2
    assert "queue is intact" in result.stderr
    assert "nope-token" not in result.stderr + result.stdout
    assert statuses(db) == {"queued": 1}


def test_send_without_credentials_says_what_to_set(env) -> None:
    result = cli("send", env={**env, "WHATSAPP_ACCESS_TOKEN": ""})
    assert result.returncode == 2 and "WHATSAPP_ACCESS_TOKEN" in result.stderr


def test_sweep_retry_stop_resume(db, env) -> None:
    load_demo_templates(db)
    for i in range(3):
        cli("enqueue", "--to", f"+25078800011{i}", "--text", "hello", "--domain", "baskets", env=env)
    db.execute("UPDATE notifications SET locked_at = now() - interval '2 minutes', locked_by = 'dead'")
    assert "released 0" in cli("sweep", env=env).stdout
    assert "released 3" in cli("sweep", "--older-than", "1m", env=env).stdout
    assert cli("sweep", "--older-than", "soon", env=env).returncode == 2

    db.execute("UPDATE notifications SET status = 'failed', last_error_code = '131000'")
    assert cli("retry-failed", env=env).returncode == 2, "no filter: refused"
    dry = cli("retry-failed", "--domain", "baskets", "--since", "1h", env=env)
    assert "would queue again: 3" in dry.stdout and statuses(db) == {"failed": 3}
    done = cli("retry-failed", "--domain", "baskets", "--confirm", env=env)
    assert "queued again: 3" in done.stdout and statuses(db) == {"queued": 3}

    assert "3 waiting notification(s) held" in cli("stop", "--reason", "drill", env=env).stdout
    assert "PAUSED (drill)" in cli("status", env=env).stdout
    assert "3 held notification(s) queued again" in cli("resume", "--reason", "ok", env=env).stdout
    assert statuses(db) == {"queued": 3}


def test_seed_demo(db, env) -> None:
    result = cli("seed-demo", "--notifications", "30", "--contacts", "16", env=env)
    assert result.returncode == 0, result.stderr
    assert "30 notifications queued" in result.stdout
    assert db.execute("SELECT count(DISTINCT timezone) FROM contact_preferences").fetchone()[0] == 8
    assert db.execute("SELECT count(*) FROM whatsapp_templates").fetchone()[0] >= 10
    assert db.execute("SELECT count(DISTINCT domain) FROM notifications").fetchone()[0] >= 3


def test_commands_on_an_unmigrated_database_say_to_migrate(empty_db_url) -> None:
    result = cli("status", env={"NOTIFY_DATABASE_URL": empty_db_url})
    assert result.returncode == 2 and "notify-pipeline db upgrade" in result.stderr


@pytest.mark.parametrize(
    "command",
    ["enqueue", "send", "sweep", "retry-failed", "stop", "resume", "status", "seed-demo", "emulator"],
)
def test_queue_commands_have_help(command: str) -> None:
    assert cli(command, "--help").returncode == 0

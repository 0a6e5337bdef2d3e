"""Template operations: show, and sync from the emulator's message_templates over real HTTP, with
waiting rows settled by what each template became; the Dagster job in process and the CLI."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from notify_pipeline.defs.operations import templates as template_jobs
from notify_pipeline.engine.templates_store import upsert_templates
from notify_pipeline.operations import templates
from notify_pipeline.operations.templates import TemplateError
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.engine import dagster_resources, enqueue, load_demo_templates

WABA_ID = "102290129340398"  # the emulator's business account
NEW_TEMPLATE = {
    "name": "delivery_window",
    "language": "en",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Your delivery arrives between {{1}} and {{2}}."}],
}
LOCAL_ONLY = {
    "name": "old_promo",
    "language": "en",
    "status": "APPROVED",
    "components": [{"type": "BODY", "text": "Hi"}],
}


def client(emulator, token: str | None = None):
    from notify_pipeline_tests.support.engine import client_settings

    return client_settings(emulator, **({"access_token": token} if token else {}))


def queue_template(db, name: str, count: int, *, claimed: bool = False) -> list[int]:
    ids = [
        enqueue(db, {"to": f"+25078811{i:04d}", "template": {"name": name, "language": "en"}})
        for i in range(count)
    ]
    if claimed:
        db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w1' WHERE id = ANY(%s)", (ids,))
    return ids


def rows_of(db, name: str) -> list[tuple[str, str | None, str | None]]:
    return db.execute(
        "SELECT status, last_error_code, error_message FROM notifications WHERE template_name = %s ORDER BY id",
        (name,),
    ).fetchall()


@pytest.fixture
def changed_at_meta(db, emulator):
    """Our copy has the demo catalog and a template Meta no longer has; at Meta, order_shipped is
    DISABLED, order_confirmation PAUSED and delivery_window new. Rows wait for each."""
    load_demo_templates(db)
    upsert_templates(db, [LOCAL_ONLY])
    emulator.set_template_status("order_shipped", "en", "DISABLED")
    emulator.set_template_status("order_confirmation", "en", "PAUSED")
    emulator.put_template(NEW_TEMPLATE)
    queue_template(db, "order_shipped", 3)
    queue_template(db, "order_shipped", 1, claimed=True)
    queue_template(db, "order_confirmation", 2)
    queue_template(db, "old_promo", 1)
    queue_template(db, "welcome_message", 1)
    return templates.fetch_remote(client(emulator), WABA_ID)


def test_show_lists_every_language_and_refuses_unknown_templates(db) -> None:
    load_demo_templates(db)
    queue_template(db, "welcome_message", 2)
    rows = templates.show_template(db, "welcome_message")
    assert [(r["language"], r["approval_status"], r["waiting"]) for r in rows] == [
        ("en", "APPROVED", 2),
        ("fr", "APPROVED", 0),
    ]
    assert rows[0]["variables"] == ["1"] and rows[0]["template_key"] == "tmpl_welcome_message"
    assert templates.show_template(db, "tmpl_otp_code")[0]["category"] == "AUTHENTICATION"
    with pytest.raises(TemplateError, match="no template 'nope'"):
        templates.show_template(db, "nope")


def test_fetch_needs_a_business_account_and_valid_credentials(emulator) -> None:
    assert {t["name"] for t in templates.fetch_remote(client(emulator), WABA_ID)} >= {
        "welcome_message",
        "otp_code",
    }
    with pytest.raises(TemplateError, match="WHATSAPP_WABA_ID"):
        templates.fetch_remote(client(emulator), "")
    with pytest.raises(TemplateError, match="WHATSAPP_ACCESS_TOKEN"):
        templates.fetch_remote(client(emulator, token="revoked"), WABA_ID)


def test_dry_run_reports_what_would_change_and_changes_nothing(db, changed_at_meta) -> None:
    report = templates.sync_templates(db, changed_at_meta, "op", dry_run=True)
    assert report.added == ["delivery_window (en)"]
    assert report.changed == {
        "order_shipped (en)": "APPROVED->DISABLED",
        "order_confirmation (en)": "APPROVED->PAUSED",
    }
    assert report.not_at_meta == ["old_promo (en)"]
    assert report.held == {"order_confirmation (en)": 2}
    assert report.failed == {"order_shipped (en)": 3, "old_promo (en)": 1}
    assert report.unchanged == 10
    assert db.execute("SELECT count(*) FROM notifications WHERE status = 'queued'").fetchone()[0] == 8
    assert (
        db.execute(
            "SELECT approval_status FROM whatsapp_templates WHERE template_name = 'order_shipped'"
        ).fetchone()[0]
        == "APPROVED"
    )
    assert not db.execute(
        "SELECT 1 FROM observability_events WHERE event_type = 'TEMPLATES_SYNCED'"
    ).fetchone()
    assert any("would fail waiting rows: order_shipped (en): 3" in line for line in report.lines())


def test_sync_writes_statuses_fails_terminal_rows_and_holds_paused_ones(db, changed_at_meta) -> None:
    report = templates.sync_templates(db, changed_at_meta, "op", dry_run=False)
    assert report.failed == {"order_shipped (en)": 3, "old_promo (en)": 1}
    stored = dict(
        db.execute(
            "SELECT template_name || '/' || language, (approval_status, is_active)::text FROM whatsapp_templates"
        )
    )
    assert stored["order_shipped/en"] == "(DISABLED,t)"
    assert stored["order_confirmation/en"] == "(PAUSED,t)"
    assert stored["delivery_window/en"] == "(APPROVED,t)"
    assert stored["old_promo/en"] == "(APPROVED,f)", "kept, switched off"
    assert db.execute(
        "SELECT variables FROM whatsapp_templates WHERE template_name = 'delivery_window'"
    ).fetchone()[0] == ["1", "2"]
    shipped = rows_of(db, "order_shipped")
    assert shipped[:3] == [("failed", "template_not_approved", shipped[0][2])] * 3
    assert "order_shipped (en) is DISABLED" in shipped[0][2]
    assert shipped[3][0] == "queued", "a claimed row is left to its worker"
    assert rows_of(db, "order_confirmation") == [("queued", None, None)] * 2
    ((status, code, message),) = rows_of(db, "old_promo")
    assert (status, code) == (
        "failed",
        "template_missing",
    ) and "old_promo (en) is no longer at Meta" in message
    assert rows_of(db, "welcome_message")[0][0] == "queued"
    audit = db.execute(
        "SELECT count(*) FROM notification_audit_log WHERE event_type = 'cancelled'"
    ).fetchone()[0]
    assert audit == 4
    (event,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'TEMPLATES_SYNCED'"
    ).fetchone()
    assert event["actor"] == "op" and event["added"] == 1 and event["held_rows"] == 2
    assert event["failed_rows"] == {"order_shipped (en)": 3, "old_promo (en)": 1}
    again = templates.sync_templates(db, changed_at_meta, "op", dry_run=False)
    assert (again.added, again.changed, again.failed) == ([], {}, {})
    assert again.unchanged == 13 and again.not_at_meta == ["old_promo (en)"]


def test_sync_job_runs_against_the_emulator_and_needs_a_waba_id(
    db, db_url, changed_at_meta, emulator
) -> None:
    def resources(waba_id: str) -> dict:
        return dagster_resources(db_url, emulator, waba_id=waba_id)

    config = dg.RunConfig(ops={"sync_whatsapp_templates": template_jobs.SyncTemplatesConfig(dry_run=False)})
    result = template_jobs.sync_templates_job.execute_in_process(
        resources=resources(""), run_config=config, raise_on_error=False
    )
    assert not result.success
    assert (
        "WHATSAPP_WABA_ID"
        in result.failure_data_for_node("sync_whatsapp_templates").user_failure_data.description
    )
    dry = template_jobs.sync_templates_job.execute_in_process(resources=resources(WABA_ID))
    assert dry.output_for_node("sync_whatsapp_templates")["dry_run"] is True
    assert rows_of(db, "order_shipped")[0][0] == "queued"
    result = template_jobs.sync_templates_job.execute_in_process(
        resources=resources(WABA_ID), run_config=config
    )
    assert result.success
    output = result.output_for_node("sync_whatsapp_templates")
    assert output["failed"] == {"order_shipped (en)": 3, "old_promo (en)": 1} and output["held"] == {
        "order_confirmation (en)": 2
    }
    (event,) = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'TEMPLATES_SYNCED'"
    ).fetchone()
    assert event["actor"].startswith("sync_templates_job:")
    assert emulator.token not in " ".join(str(e) for e in result.all_events)


def test_sync_schedule_is_daily_running_and_writes() -> None:
    schedule = template_jobs.sync_templates_schedule
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "15 4 * * *" and schedule.job_name == "sync_templates_job"
    run_config = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    assert run_config["ops"]["sync_whatsapp_templates"]["config"]["dry_run"] is False


def test_cli_template_show_and_sync(db, db_url, emulator) -> None:
    load_demo_templates(db)
    env = {
        "NOTIFY_DATABASE_URL": db_url,
        "WHATSAPP_API_BASE_URL": emulator.base_url,
        "WHATSAPP_ACCESS_TOKEN": emulator.token,
        "WHATSAPP_WABA_ID": WABA_ID,
    }
    unknown = cli("template", "show", "nope", env=env)
    assert unknown.returncode == 2 and "no template 'nope'" in unknown.stderr
    shown = json.loads(cli("template", "show", "otp_code", env=env).stdout)
    assert shown[0]["category"] == "AUTHENTICATION"
    emulator.set_template_status("weekly_promo", "en", "REJECTED")
    dry = cli("template", "sync", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "weekly_promo (en): APPROVED->REJECTED" in dry.stdout and "dry run" in dry.stdout
    assert (
        db.execute(
            "SELECT approval_status FROM whatsapp_templates WHERE template_name = 'weekly_promo'"
        ).fetchone()[0]
        == "APPROVED"
    )
    done = cli("template", "sync", "--confirm", env=env)
    assert done.returncode == 0 and "dry run" not in done.stdout
    assert (
        db.execute(
            "SELECT approval_status FROM whatsapp_templates WHERE template_name = 'weekly_promo'"
        ).fetchone()[0]
        == "REJECTED"
    )
    no_waba = cli("template", "sync", env={**env, "WHATSAPP_WABA_ID": ""})
    assert no_waba.returncode == 2 and "WHATSAPP_WABA_ID" in no_waba.stderr

"""Contact operations on a real PostgreSQL: show, init, set, bulk defaults, opt out and in; the
Dagster jobs in process and the CLI as a separate process."""

from __future__ import annotations

import json
from datetime import time

import dagster as dg
import pytest

from notify_pipeline.defs.operations import contacts as contact_jobs
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations import contacts
from notify_pipeline.operations.contacts import ContactError
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.engine import enqueue, statuses, welcome

NUMBER = "+250788123456"
MASKED = "+250*******56"  # notify_mask_wa_id(NUMBER)


def events(db, event_type: str) -> list[dict]:
    return [
        r[0]
        for r in db.execute(
            "SELECT details FROM observability_events WHERE event_type = %s ORDER BY id", (event_type,)
        )
    ]


@pytest.mark.parametrize("zone", ["Africa/Kigali", "America/Argentina/Buenos_Aires", "UTC", "Etc/UTC"])
def test_iana_zones_are_accepted(zone: str) -> None:
    assert contacts.validate_timezone(zone) == zone


@pytest.mark.parametrize(
    ("zone", "says"),
    [
        ("CEST", "not an IANA zone name"),
        ("UTC+2", "not an IANA zone name"),
        ("GMT", "not an IANA zone name"),
        ("Europe/Nowhere", "not a known IANA zone"),
        ("Etc/GMT+2", "inverted sign"),
        ("", "not an IANA zone name"),
    ],
)
def test_abbreviations_offsets_and_unknown_zones_are_refused_with_advice(zone: str, says: str) -> None:
    with pytest.raises(ContactError, match=says) as info:
        contacts.validate_timezone(zone)
    assert "Africa/Kigali" in str(info.value) or "America/New_York" in str(info.value)


def test_quiet_hours_need_both_ends_in_hh_mm() -> None:
    assert contacts.parse_window("22:00-07:00") == (time(22), time(7))
    assert contacts.parse_window("7:30-9:05") == (time(7, 30), time(9, 5))
    assert contacts.quiet_hours(None, None) is None
    for bad in ("25:00-07:00", "22:00", "22h-07h", "22:60-07:00", "22:00-07:00-08:00"):
        with pytest.raises(ContactError):
            contacts.parse_window(bad)
    with pytest.raises(ContactError, match="both ends"):
        contacts.quiet_hours("22:00", None)
    with pytest.raises(ContactError, match="both ends"):
        contacts.quiet_hours(None, "07:00")
    with pytest.raises(ContactError, match="same time"):
        contacts.quiet_hours("22:00", "22:00")


def test_show_normalises_the_number_and_refuses_unknown_contacts(db) -> None:
    with pytest.raises(ContactError, match=r"no preferences.*contact init"):
        contacts.show_contact(db, NUMBER)
    with pytest.raises(ContactError, match="not a WhatsApp number"):
        contacts.show_contact(db, "12ab")
    assert contacts.init_contact(db, "250 788-123 456", "test") is True
    enqueue(db, welcome(NUMBER))
    prefs = contacts.show_contact(db, "+250 (788) 123-456")
    assert prefs.wa_id == NUMBER
    assert (prefs.quiet_hours_start, prefs.quiet_hours_end, prefs.timezone) == (
        time(22),
        time(7),
        "Africa/Kigali",
    )
    assert prefs.waiting == 1 and not prefs.opted_out
    assert json.dumps(prefs.as_dict())


def test_init_never_overwrites_and_records_a_masked_event(db) -> None:
    assert contacts.init_contact(db, NUMBER, "op", locale="fr") is True
    contacts.set_preferences(db, NUMBER, "op", timezone="Europe/Paris")
    assert contacts.init_contact(db, NUMBER, "op") is False
    assert contacts.show_contact(db, NUMBER).timezone == "Europe/Paris"
    created = events(db, "CONTACT_PREFERENCES_INIT")
    assert [e["created"] for e in created] == [True, False]
    assert all(e["actor"] == "op" and e["wa_id"] == MASKED for e in created)
    with pytest.raises(ContactError, match="locale"):
        contacts.init_contact(db, "+250788000009", "op", locale="english!")


def test_set_changes_only_what_is_given_and_validates_before_writing(db) -> None:
    with pytest.raises(ContactError, match="no preferences"):
        contacts.set_preferences(db, NUMBER, "op", timezone="Europe/Berlin")
    contacts.init_contact(db, NUMBER, "op")
    prefs = contacts.set_preferences(db, NUMBER, "op", timezone="Europe/Berlin")
    assert (prefs.timezone, contacts.window_text(prefs)) == ("Europe/Berlin", "22:00-07:00")
    prefs = contacts.set_preferences(db, NUMBER, "op", window=(time(21, 30), time(6)))
    assert (prefs.timezone, contacts.window_text(prefs)) == ("Europe/Berlin", "21:30-06:00")
    before = len(events(db, "CONTACT_PREFERENCES_SET"))
    for zone in ("CEST", "UTC+2"):
        with pytest.raises(ContactError, match="IANA"):
            contacts.set_preferences(db, NUMBER, "op", timezone=zone)
    with pytest.raises(ContactError, match="nothing to change"):
        contacts.set_preferences(db, NUMBER, "op")
    assert len(events(db, "CONTACT_PREFERENCES_SET")) == before == 2
    assert contacts.show_contact(db, NUMBER).timezone == "Europe/Berlin"
    last = events(db, "CONTACT_PREFERENCES_SET")[-1]
    assert last["quiet_hours"] == ["22:00-07:00", "21:30-06:00"] and NUMBER not in json.dumps(last)


def test_bulk_defaults_counts_first_then_writes_in_batches_without_touching_existing_rows(db) -> None:
    numbers = [f"+25078800000{i}" for i in range(5)]
    for number in numbers:
        enqueue(db, welcome(number))
        enqueue(db, welcome(number))
    contacts.init_contact(db, numbers[0], "op")
    contacts.set_preferences(db, numbers[0], "op", timezone="Asia/Tokyo")
    with pytest.raises(ContactError, match="IANA"):
        contacts.bulk_defaults(db, "op", timezone="CAT", dry_run=False)
    dry = contacts.bulk_defaults(db, "op", dry_run=True)
    assert (dry.missing, dry.created, dry.dry_run) == (4, 0, True)
    assert db.execute("SELECT count(*) FROM contact_preferences").fetchone()[0] == 1
    done = contacts.bulk_defaults(
        db, "op", window=(time(21), time(8)), timezone="Africa/Lagos", dry_run=False, batch_size=3
    )
    assert (done.missing, done.created, done.batches) == (4, 4, 2)
    rows = dict(db.execute("SELECT wa_id, timezone FROM contact_preferences").fetchall())
    assert rows == {numbers[0]: "Asia/Tokyo", **{n: "Africa/Lagos" for n in numbers[1:]}}
    assert (
        db.execute(
            "SELECT count(*) FROM contact_preferences WHERE quiet_hours_start = '21:00' AND quiet_hours_end = '08:00'"
        ).fetchone()[0]
        == 4
    )
    (event,) = events(db, "CONTACT_DEFAULTS_APPLIED")
    assert event == {
        "created": 4,
        "batches": 2,
        "quiet_hours": "21:00-08:00",
        "timezone": "Africa/Lagos",
        "actor": "op",
    }
    assert contacts.bulk_defaults(db, "op", dry_run=False).created == 0


def test_opt_out_cancels_waiting_rows_and_opt_in_leaves_them_cancelled(db) -> None:
    for _ in range(3):
        enqueue(db, welcome(NUMBER))
    other = enqueue(db, welcome("+250788999999"))
    with pytest.raises(ContactError, match="reason"):
        contacts.opt_out(db, NUMBER, "  ")
    assert contacts.opt_out(db, "250788123456", "user_request") == 3
    assert statuses(db) == {"failed": 3, "queued": 1}
    assert db.execute("SELECT status FROM notifications WHERE id = %s", (other,)).fetchone()[0] == "queued"
    assert contacts.show_contact(db, NUMBER).opted_out
    (event,) = events(db, "CONTACT_OPTED_OUT")
    assert event["cancelled"] == 3 and event["wa_id"] == MASKED
    assert contacts.opt_in(db, NUMBER, "user_request") is True
    assert contacts.opt_in(db, NUMBER, "user_request") is False
    assert statuses(db) == {"failed": 3, "queued": 1}


def test_opt_out_job_runs_in_process_and_reports_the_count(db, db_url) -> None:
    enqueue(db, welcome(NUMBER))
    result = contact_jobs.opt_out_contact_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(
            ops={"opt_out_contact": contact_jobs.ContactChangeConfig(wa_id=NUMBER, reason="sms_stop")}
        ),
    )
    assert result.success and result.output_for_node("opt_out_contact") == 1
    (event,) = events(db, "CONTACT_OPTED_OUT")
    assert event["actor"].startswith("opt_out_contact_job:") and event["reason"] == "sms_stop"
    result = contact_jobs.opt_in_contact_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(ops={"opt_in_contact": contact_jobs.ContactChangeConfig(wa_id=NUMBER)}),
    )
    assert result.success and result.output_for_node("opt_in_contact") is True


def test_set_preferences_job_fails_with_the_operator_message(db, db_url) -> None:
    contacts.init_contact(db, NUMBER, "test")
    config = contact_jobs.SetPreferencesConfig(wa_id=NUMBER, quiet_hours_start="23:00", timezone="CEST")
    result = contact_jobs.set_contact_preferences_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(ops={"set_contact_preferences": config}),
        raise_on_error=False,
    )
    assert not result.success
    assert (
        "both ends" in result.failure_data_for_node("set_contact_preferences").user_failure_data.description
    )
    config = contact_jobs.SetPreferencesConfig(
        wa_id=NUMBER, quiet_hours_start="23:00", quiet_hours_end="06:30"
    )
    result = contact_jobs.set_contact_preferences_job.execute_in_process(
        resources={"queue_db": QueueDatabase(url=db_url)},
        run_config=dg.RunConfig(ops={"set_contact_preferences": config}),
    )
    assert result.output_for_node("set_contact_preferences") == {
        "quiet_hours": "23:00-06:30",
        "timezone": "Africa/Kigali",
    }


def test_bulk_defaults_job_is_a_dry_run_unless_told(db, db_url) -> None:
    enqueue(db, welcome(NUMBER))
    resources = {"queue_db": QueueDatabase(url=db_url)}
    result = contact_jobs.bulk_quiet_hours_defaults_job.execute_in_process(resources=resources)
    assert result.output_for_node("apply_quiet_hours_defaults") == 1
    assert db.execute("SELECT count(*) FROM contact_preferences").fetchone()[0] == 0
    result = contact_jobs.bulk_quiet_hours_defaults_job.execute_in_process(
        resources=resources,
        run_config=dg.RunConfig(
            ops={"apply_quiet_hours_defaults": contact_jobs.BulkDefaultsConfig(dry_run=False)}
        ),
    )
    assert result.output_for_node("apply_quiet_hours_defaults") == 1
    assert db.execute("SELECT count(*) FROM contact_preferences").fetchone()[0] == 1


def test_cli_contact_commands_and_bad_input(db, db_url) -> None:
    env = {"NOTIFY_DATABASE_URL": db_url}
    enqueue(db, welcome(NUMBER))
    unknown = cli("contact", "show", NUMBER, env=env)
    assert (
        unknown.returncode == 2 and "no preferences" in unknown.stderr and "Traceback" not in unknown.stderr
    )
    dry = cli("contact", "bulk-defaults", env=env)
    assert dry.returncode == 0 and "would create preferences for 1 contact" in dry.stdout
    assert db.execute("SELECT count(*) FROM contact_preferences").fetchone()[0] == 0
    assert cli("contact", "bulk-defaults", "--confirm", env=env).returncode == 0
    bad_zone = cli("contact", "set", NUMBER, "--timezone", "CEST", env=env)
    assert bad_zone.returncode == 2 and "Area/Location" in bad_zone.stderr
    bad_hours = cli("contact", "set", NUMBER, "--quiet-hours", "22:00", env=env)
    assert bad_hours.returncode == 2 and "START-END" in bad_hours.stderr
    done = cli(
        "contact", "set", NUMBER, "--quiet-hours", "21:00-06:00", "--timezone", "Europe/Berlin", env=env
    )
    assert done.returncode == 0 and "21:00-06:00 in Europe/Berlin" in done.stdout
    out = cli("contact", "opt-out", NUMBER, "--reason", "user_request", env=env)
    assert out.returncode == 0 and "1 waiting notification(s) cancelled" in out.stdout
    shown = json.loads(cli("contact", "show", NUMBER, env=env).stdout)
    assert shown["opted_out"] is True and shown["timezone"] == "Europe/Berlin"
    assert "opted back in" in cli("contact", "opt-in", NUMBER, "--reason", "asked", env=env).stdout

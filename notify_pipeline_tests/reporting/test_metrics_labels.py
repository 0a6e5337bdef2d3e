"""Counters with bounded labels: the opt-out counter is labelled by cause, never by a user's words or
a message id; a contact counts once per change of mind (300 STOP/START replies through a real
`serve` leave the series count unchanged and count one contact, as the opt-out alert does); and
migration 0012 folds the unbounded series an older release made into the causes, counts kept."""

from __future__ import annotations

import json
import time

import psycopg
from alembic import command
from psycopg.types.json import Jsonb

from notify_pipeline.db.connect import connect
from notify_pipeline.db.migrate import alembic_config, engine_for, upgrade
from notify_pipeline.operations import contacts
from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.figures import OPT_OUT_CAUSES
from notify_pipeline.thresholds import Thresholds
from notify_pipeline_tests.support.metrics import samples
from notify_pipeline_tests.support.service import running_service

NUMBER = "250788000003"


def inbound(text: str, index: int) -> bytes:
    """One inbound text message, shaped as Meta sends it, dated now, with its own message id."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Renee"}, "wa_id": NUMBER}],
        "messages": [
            {
                "from": NUMBER,
                "id": f"wamid.HBgLMjUwNzg4MDAwMDAzFQIAEhgU{index:08d}",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}  # fmt: skip
    return json.dumps(body).encode()


def opt_out_series(db: psycopg.Connection) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in samples(metrics.render(db)).items()
        if name == "notify_contacts_opted_out_total"
    }


def counted(db: psycopg.Connection) -> list[bool]:
    rows = db.execute(
        "SELECT (details->>'counted')::boolean FROM observability_events "
        "WHERE event_type = 'CONTACT_OPTED_OUT' ORDER BY id"
    ).fetchall()
    return [row[0] for row in rows]


def test_300_stop_and_start_replies_leave_the_series_and_count_one_contact(db, db_url) -> None:
    before = samples(metrics.render(db))
    assert set(opt_out_series(db)) == set(OPT_OUT_CAUSES), "every cause exported from the start, at 0"
    with running_service(db_url) as service:
        for index in range(300):
            said = "STOP" if index % 2 == 0 else "START"
            assert service.post(inbound(said, index)).status_code == 200
    after = samples(metrics.render(db))
    assert len(after) == len(before), "no new series: not one per reply"
    assert set(after) == set(before)
    assert opt_out_series(db) == {**dict.fromkeys(OPT_OUT_CAUSES, 0), "reply_keyword": 1}
    # Every reply is applied and recorded; the first STOP alone is counted.
    assert counted(db) == [True] + [False] * 149
    assert db.execute("SELECT opted_out FROM contact_preferences").fetchone() == (False,)
    # The opt-out alert counts the contact once too: not "152 contacts opted out".
    verdict = BY_NAME["opt_out_spike"].check(db, Thresholds(opt_outs_per_hour=1))
    assert not verdict.breached, verdict.headline
    numbers = verdict.numbers
    assert (numbers["contacts"], numbers["repeats"]) == (1, 149)
    assert numbers["reasons"] == {"replied STOP": 1} and numbers["causes"] == {"reply_keyword": 1}


def test_a_contact_counts_once_per_change_of_mind(db) -> None:
    def opt_out() -> None:
        db.execute("SELECT mark_opted_out('+250788000010', 'user_request')")

    opt_out()
    opt_out()  # already opted out: recorded, not counted
    db.execute("SELECT mark_opted_in('+250788000010', 'user_request')")
    opt_out()  # within an hour of its own opt-in: the same contact changing its mind
    db.execute("SELECT mark_opted_in('+250788000010', 'user_request')")
    db.execute(
        "UPDATE contact_preferences SET opted_in_at = now() - interval '61 minutes' WHERE wa_id = '+250788000010'"
    )
    opt_out()  # an hour after coming back: a new opt-out
    assert counted(db) == [True, False, False, True]
    assert opt_out_series(db)["api"] == 2
    verdict = BY_NAME["opt_out_spike"].check(db, Thresholds(opt_outs_per_hour=1))
    assert verdict.breached and verdict.numbers["contacts"] == 2 and verdict.numbers["repeats"] == 2
    assert "2 more opt-outs were the same contacts again" in " ".join(verdict.facts)


def test_causes_come_from_a_fixed_set_whatever_the_reason_says(db, db_url) -> None:
    callers = {
        "cli:contact opt-out": ("+250788000021", "user asked on the phone"),
        "opt_out_contact_job:1a2b3c4d": ("+250788000022", "operator_request"),
        "serve:webhooks": ("+250788000023", "replied STOP (inbound wamid.ABC)"),
        "billing-service": ("+250788000024", "replied STOP (inbound wamid.DEF)"),
        "crm-sync": ("+250788000025", "x" * 500 + " (inbound wamid.GHI)"),
    }
    for actor, (number, reason) in callers.items():
        with connect(db_url, actor=actor, autocommit=True) as conn:
            contacts.opt_out(conn, number, reason)
    series = opt_out_series(db)
    assert series == {"reply_keyword": 2, "operator": 2, "api": 1, "unknown": 0}
    stored = db.execute("SELECT labels FROM notify_counters WHERE name = 'contacts_opted_out'").fetchall()
    assert all(labels in [{"reason": cause} for cause in OPT_OUT_CAUSES] for (labels,) in stored), stored
    causes = db.execute(
        "SELECT details->>'cause' FROM observability_events WHERE event_type = 'CONTACT_OPTED_OUT' ORDER BY id"
    ).fetchall()
    assert [c for (c,) in causes] == ["operator", "operator", "reply_keyword", "reply_keyword", "api"]


def test_migration_0012_folds_unbounded_reasons_into_causes_counts_kept(empty_db_url) -> None:
    engine = engine_for(empty_db_url)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")
            connection.commit()
    finally:
        engine.dispose()
    legacy = {
        **{f"replied STOP (inbound wamid.HBgL{i:04d})": 1 for i in range(150)},
        "user_request": 3,
        "operator_request": 4,
        "unknown": 2,
        "api": 5,  # a reason that happens to be a cause's name keeps its count
    }
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for reason, value in legacy.items():
            conn.execute(
                "INSERT INTO notify_counters (name, labels, value) VALUES ('contacts_opted_out', %s, %s)",
                (Jsonb({"reason": reason}), value),
            )
        conn.execute(
            "INSERT INTO notify_counters (name, labels, value) VALUES ('worker_starts', %s, 7)",
            (Jsonb({"trigger": "sensor"}),),
        )
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        rows = dict(
            conn.execute(
                "SELECT labels->>'reason', value FROM notify_counters WHERE name = 'contacts_opted_out'"
            ).fetchall()
        )
        others = conn.execute(
            "SELECT name, labels, value FROM notify_counters WHERE name <> 'contacts_opted_out'"
        )
        assert others.fetchall() == [("worker_starts", {"trigger": "sensor"}, 7)]
    assert rows == {"reply_keyword": 150, "unknown": 3 + 4 + 2, "api": 5}
    assert sum(rows.values()) == sum(legacy.values())

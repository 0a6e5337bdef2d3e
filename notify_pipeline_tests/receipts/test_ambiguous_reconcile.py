"""A send that got no answer is matched to its receipt before any re-send: real PostgreSQL, the
emulator over HTTP (a hang that accepts the message and never answers), its signed webhooks
going to a real `notify-pipeline serve`, counted from the emulator's ledger (callback data sent
against ids enqueued)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine import outcomes
from notify_pipeline.engine.operations import set_paused
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.receipts import waiting
from notify_pipeline.receipts.parse import parse_body
from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.messages import callback_data, notification_id_of
from notify_pipeline.whatsapp.results import ApiError, SendResult
from notify_pipeline_tests.support.drain_harness import DrainThread, fresh, wait_until
from notify_pipeline_tests.support.emulator_fixtures import EMULATOR_APP_SECRET
from notify_pipeline_tests.support.engine import client_settings, enqueue_many, load_demo_templates
from notify_pipeline_tests.support.fault_proxy import FaultProxy
from notify_pipeline_tests.support.receipts import status_item, webhook_body
from notify_pipeline_tests.support.service import serve_process

# A retry budget that would send again within a fraction of a second, were it not for the wait.
QUICK_RETRIES = '{"max_retries": 5, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2}'
READ_TIMEOUT_S = 1.0  # the client gives up on a hung request after this
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# -- the pieces, pure --------------------------------------------------------------------------


def test_the_callback_data_is_namespaced_and_only_ours_names_a_row() -> None:
    assert callback_data(42) == "np1:42"
    assert notification_id_of("np1:42") == 42
    for foreign in ("42", "np1:", "np1:042", "np1:4x", "np1:٤٢", "np2:42", "np1:" + "9" * 20, 42, None):
        assert notification_id_of(foreign) is None, foreign


def test_a_status_carries_the_row_it_names_and_the_number_it_came_to() -> None:
    body = webhook_body(
        {"statuses": [status_item("wamid.A", biz_opaque_callback_data="np1:7"), status_item("wamid.B")]},
        phone_number_id="555",
    )
    named, plain = parse_body(body)
    assert (named.notification_id, named.phone_number_id) == (7, "555")
    assert (plain.notification_id, plain.phone_number_id) == (None, "555")


def _row(retry_count: int = 0) -> dict:
    return {"id": 7, "retry_count": retry_count, "deferral_count": 0, "deferrals": {}}


def _answer(kind: str, status: int | None = None, code: int | None = None) -> SendResult:
    error = ApiError(ErrorClass.TRANSIENT, "no answer", code=code, http_status=status, kind=kind)
    return SendResult(latency_s=1.0, http_status=status, error=error)


@pytest.mark.parametrize(
    "answer",
    [_answer("timeout_ambiguous"), _answer("http", 502), _answer("http", 504), _answer("bad_response", 200)],
    ids=["timeout", "gateway_502", "gateway_504", "200_without_id"],
)
def test_a_send_meta_may_hold_waits_for_its_receipt_before_a_retry(answer: SendResult) -> None:
    outcome = outcomes.after_send(_row(), None, answer, NOW, receipt_wait_s=240)
    assert outcome.kind == "retried" and outcome.error_code == answer.error.label
    assert (outcome.next_attempt_at - NOW).total_seconds() >= 240
    assert "no status webhook names it by" in outcome.error_message
    if answer.error.kind == "http":  # in an outage (breaker open): still no attempt, still the wait
        deferred = outcomes.outage_deferral(_row(), answer, NOW, receipt_wait_s=240)
        assert deferred.kind == "deferred" and (deferred.next_attempt_at - NOW).total_seconds() >= 240


def test_an_answer_meta_gave_is_retried_on_its_own_schedule() -> None:
    """Meta's own 503 (a JSON error body) says the message was not taken: no wait for a receipt."""
    outcome = outcomes.after_send(_row(), None, _answer("meta", 503, code=131016), NOW, receipt_wait_s=240)
    assert outcome.kind == "retried" and (outcome.next_attempt_at - NOW).total_seconds() < 240


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def serve(db_url, emulator, tmp_path):
    """`notify-pipeline serve` for the emulator's sender number, checking the emulator's signatures."""
    env = {"WHATSAPP_APP_SECRET": EMULATOR_APP_SECRET, "WHATSAPP_PHONE_NUMBER_ID": emulator.phone_number_id}
    with serve_process(db_url, tmp_path, env) as service:
        yield service


def _seed(db_url: str, count: int) -> list[int]:
    with fresh(db_url) as conn:
        load_demo_templates(conn)
        conn.execute(f"UPDATE whatsapp_templates SET retry_policy = '{QUICK_RETRIES}'")
        return enqueue_many(conn, count)


def _serving_drain(db_url: str, emulator, tmp_path, receipt_wait_s: float) -> DrainThread:
    return DrainThread(
        db_url,
        emulator,
        settings=client_settings(emulator, read_timeout_s=READ_TIMEOUT_S),
        policy=PolicyConfig(default_quiet_hours=None, receipt_wait_s=receipt_wait_s),
        serve=True,
        idle_poll_s=600,
        max_seconds=300,
        throughput_per_s=None,
        concurrency=8,
        breaker_max_wait_s=1.0,
        journal_dir=tmp_path / "journal",
    )


def _stop(db_url: str, drain: DrainThread):
    with fresh(db_url) as conn:
        set_paused(conn, True, "test over", "test")
    return drain.join()


def _ledger(emulator) -> dict[str, list[dict]]:
    """Accepted messages by callback data, in acceptance order."""
    by_callback: dict[str, list[dict]] = defaultdict(list)
    for message in emulator.messages():
        by_callback[message["biz_opaque_callback_data"]].append(message)
    return by_callback


def _rows(db_url: str, ids: list[int]) -> dict[int, tuple]:
    with fresh(db_url) as conn:
        return {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT id, status, wa_message_id, delivery_status, duplicate_wa_message_ids "
                "FROM notifications WHERE id = ANY(%s)",
                (ids,),
            )
        }


def _counter(db_url: str, name: str) -> int:
    with fresh(db_url) as conn:
        row = conn.execute("SELECT value FROM notify_counters WHERE name = %s", (name,)).fetchone()
    return row[0] if row else 0


def test_an_api_hang_with_webhooks_on_sends_nothing_twice(db_url, emulator, serve, tmp_path) -> None:
    emulator.configure(limits_enabled=False, webhook_url=f"{serve.base_url}/webhooks/whatsapp")
    ids = _seed(db_url, 30)
    hung = 12
    emulator.add_fault(mode="timeout", accepted=True, hold_s=60, max_count=hung)
    drain = _serving_drain(db_url, emulator, tmp_path, receipt_wait_s=90)

    def all_read() -> bool:
        return all((s, d) == ("sent", "read") for s, _, d, _ in _rows(db_url, ids).values())

    wait_until(all_read, timeout=80, what="every row sent and read")
    report = _stop(db_url, drain)

    ledger = _ledger(emulator)
    assert Counter({k: len(v) for k, v in ledger.items()}) == Counter({callback_data(i): 1 for i in ids}), (
        "every enqueued row accepted exactly once: no hung send went out again"
    )
    assert emulator.stats()["duplicates"] == 0
    assert sum(m["via_timeout"] for found in ledger.values() for m in found) == hung
    assert report.retried == {"timeout_ambiguous": hung}, report.as_dict()
    for notification_id, (status, wamid, delivery, doubles) in _rows(db_url, ids).items():
        assert wamid == ledger[callback_data(notification_id)][0]["wamid"], "the message Meta accepted"
        assert (status, delivery, doubles) == ("sent", "read", None)
    assert _counter(db_url, "receipt_confirmed") == hung
    assert _counter(db_url, "duplicate_sends") == 0
    hung_ids = {int(k.removeprefix("np1:")) for k, found in ledger.items() if found[0]["via_timeout"]}
    with fresh(db_url) as conn:
        trail = conn.execute(
            "SELECT notification_id, event_type, details->>'error_code', details->>'actor' "
            "FROM notification_audit_log WHERE event_type IN ('retried', 'sent') ORDER BY id"
        ).fetchall()
    by_row: dict[int, list] = defaultdict(list)
    for notification_id, event, code, actor in trail:
        by_row[notification_id].append((event, code, actor if event == "sent" else None))
    assert {i: by_row[i] for i in hung_ids} == {
        i: [("retried", "timeout_ambiguous", None), ("sent", None, "serve:webhooks")] for i in hung_ids
    }, "one attempt used, then recorded sent from its receipt, with the usual audit row"


def test_without_webhooks_a_hung_send_goes_again_only_after_the_wait(db_url, emulator, tmp_path) -> None:
    """The documented limit: nothing names the hung sends, so they are sent once more."""
    emulator.configure(limits_enabled=False)
    ids = _seed(db_url, 10)
    hung, wait_s = 4, 3.0
    emulator.add_fault(mode="timeout", accepted=True, hold_s=60, max_count=hung)
    drain = _serving_drain(db_url, emulator, tmp_path, receipt_wait_s=wait_s)
    wait_until(lambda: {s for s, *_ in _rows(db_url, ids).values()} == {"sent"}, timeout=60, what="all sent")
    _stop(db_url, drain)

    ledger = _ledger(emulator)
    twice = {k: v for k, v in ledger.items() if len(v) > 1}
    assert len(twice) == hung and all(len(v) == 2 for v in twice.values())
    assert sum(len(v) for v in ledger.values()) == len(ids) + hung
    for notification_id, (_, wamid, _, doubles) in _rows(db_url, ids).items():
        accepted = ledger[callback_data(notification_id)]
        assert wamid == accepted[-1]["wamid"]
        assert doubles is None, "without a status nothing tells us of the first"
        if len(accepted) == 2:
            gap = accepted[1]["received_at"] - accepted[0]["received_at"]
            assert gap >= READ_TIMEOUT_S + wait_s, f"sent again {gap:.2f} s after the first: before the wait"


def _waiting_row(db_url: str, notification_id: int, *, status: str = "queued") -> None:
    """The row as the drain leaves a send that got no answer (or gave up after one)."""
    with fresh(db_url) as conn:
        conn.execute(
            "UPDATE notifications SET status = %s, retry_count = 1, last_error_code = 'timeout_ambiguous', "
            "error_message = 'no answer', next_attempt_at = CASE WHEN %s = 'queued' "
            "THEN now() + interval '1 hour' END WHERE id = %s",
            (status, status, notification_id),
        )


def _timer_round(db_url: str) -> None:
    """One round of serve's retry of waiting statuses, run here so the test need not wait for it."""

    async def once() -> None:
        conn = await connect_async(db_url, actor="test:timer", autocommit=True)
        try:
            await waiting.apply_ready(conn)
        finally:
            await conn.close()

    asyncio.run(once())


def _post(serve, notification_id: int, wamid: str, *, recipient: str, number: str, callback=None) -> None:
    item = status_item(
        wamid,
        "delivered",
        recipient_id=recipient,
        biz_opaque_callback_data=callback_data(notification_id) if callback is None else callback,
    )
    answer = serve.post(
        webhook_body({"statuses": [item]}, phone_number_id=number), secret=EMULATOR_APP_SECRET
    )
    assert answer.status_code == 200, answer.text


def test_a_status_to_another_number_or_recipient_or_in_another_apps_format_is_not_taken(
    db_url, emulator, serve
) -> None:
    waiting_id, gave_up_id = _seed(db_url, 2)
    _waiting_row(db_url, waiting_id)
    _waiting_row(db_url, gave_up_id, status="failed")
    ours, recipient = emulator.phone_number_id, "250700000000"  # enqueue_many's first number
    _post(serve, waiting_id, "wamid.OTHER_RECIPIENT", recipient="250799999999", number=ours)
    _post(serve, waiting_id, "wamid.OTHER_NUMBER", recipient=recipient, number="100000000000001")
    _post(serve, waiting_id, "wamid.OTHER_APP", recipient=recipient, number=ours, callback=str(waiting_id))
    _timer_round(db_url)
    assert _rows(db_url, [waiting_id])[waiting_id] == ("queued", None, None, None), "none of them taken"
    with fresh(db_url) as conn:
        outcomes_by_id = dict(
            conn.execute(
                "SELECT wa_message_id, outcome FROM webhook_events WHERE applied_at IS NULL"
            ).fetchall()
        )
    assert "sent to another recipient" in outcomes_by_id["wamid.OTHER_RECIPIENT"]

    _post(serve, waiting_id, "wamid.OURS", recipient=recipient, number=ours)
    _post(serve, gave_up_id, "wamid.LATE", recipient="250700000001", number=ours)
    rows = _rows(db_url, [waiting_id, gave_up_id])
    assert rows[waiting_id] == ("sent", "wamid.OURS", "delivered", None), "taken at once, statuses applied"
    assert rows[gave_up_id] == ("sent", "wamid.LATE", "delivered", None), "Meta had it after all"
    assert _counter(db_url, "receipt_confirmed") == 2
    with fresh(db_url) as conn:
        audit = conn.execute(
            "SELECT notification_id, details->>'from_status', details->>'actor' FROM notification_audit_log "
            "WHERE event_type = 'sent' ORDER BY notification_id"
        ).fetchall()
    assert audit == [(waiting_id, "queued", "serve:webhooks"), (gave_up_id, "failed", "serve:webhooks")]


def test_a_row_that_carries_a_message_id_keeps_it_and_the_second_send_is_counted_once(
    db_url, emulator, serve, tmp_path
) -> None:
    ids = _seed(db_url, 6)
    hung = 3
    with FaultProxy(serve.base_url) as gate:
        # The first sends' statuses are held back (the receiver refuses, the emulator retries)
        # until the rows were sent again and carry their second message id.
        gate.set_mode("refuse")
        emulator.configure(
            limits_enabled=False,
            webhook_url=f"{gate.url}/webhooks/whatsapp",
            webhook_retries=30,
            webhook_retry_delay_ms=100,
            webhook_retry_max_delay_ms=1000,
        )
        emulator.add_fault(mode="timeout", accepted=True, hold_s=60, max_count=hung)
        drain = _serving_drain(db_url, emulator, tmp_path, receipt_wait_s=1.0)
        wait_until(
            lambda: {s for s, *_ in _rows(db_url, ids).values()} == {"sent"}, timeout=60, what="all sent"
        )
        gate.set_mode("pass")
        wait_until(
            lambda: (
                sum(d is not None for *_, d in _rows(db_url, ids).values()) == hung
                and _counter(db_url, "read") == len(ids)
            ),
            timeout=60,
            what="the first sends' statuses",
        )
        _stop(db_url, drain)

    ledger = _ledger(emulator)
    assert emulator.stats()["duplicates"] == hung
    for notification_id, (status, wamid, delivery, doubles) in _rows(db_url, ids).items():
        accepted = [m["wamid"] for m in ledger[callback_data(notification_id)]]
        assert (status, delivery) == ("sent", "read")
        assert wamid == accepted[-1], "the row keeps the message id it carries"
        assert doubles == (accepted[:1] if len(accepted) == 2 else None)
    assert _counter(db_url, "duplicate_sends") == hung, "each second send once, however many statuses"
    with fresh(db_url) as conn:
        settled = conn.execute(
            "SELECT count(*) FROM webhook_events WHERE outcome LIKE 'duplicate:%%' AND applied_at IS NOT NULL"
        ).fetchone()[0]
    assert settled == 3 * hung, "sent, delivered and read of each second send, settled, not applied"
    assert _counter(db_url, "receipt_confirmed") == 0

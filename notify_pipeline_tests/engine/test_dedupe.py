"""Dedupe keys (issue 14): a key is unique per sender (this queue database is one sender's) for
queue_control.dedupe_window, 24 hours by default. The same key with the same recipient and message
returns the first id; with another recipient or message it is refused naming the key; after the
window it names a new message. Real PostgreSQL, concurrent enqueues included."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from notify_pipeline.db.connect import connect
from notify_pipeline_tests.support.engine import enqueue

MESSAGE = {"to": "+250788999001", "text": "Your order 42 is paid"}


def count(db) -> int:
    return db.execute("SELECT count(*) FROM notifications").fetchone()[0]


def age(db, notification_id: int, hours: float) -> None:
    db.execute(
        "UPDATE notifications SET created_at = now() - make_interval(secs => %s) WHERE id = %s",
        (hours * 3600, notification_id),
    )


def test_the_default_window_is_24_hours(db) -> None:
    assert db.execute("SELECT dedupe_window FROM queue_control").fetchone()[0] == timedelta(hours=24)


def test_same_key_same_recipient_and_message_returns_the_first_id(db) -> None:
    first = enqueue(db, MESSAGE, {"dedupe_key": "order-42:paid"})
    assert enqueue(db, {**MESSAGE, "to": "+250 788 999 001"}, {"dedupe_key": "order-42:paid"}) == first
    assert count(db) == 1


@pytest.mark.parametrize(
    ("message", "what"),
    [
        ({"to": "+250788999009", "text": "Your order 42 is paid"}, "recipient"),
        ({"to": "+250788999001", "text": "Your order 43 is paid"}, "message"),
    ],
    ids=["other-recipient", "other-text"],
)
def test_same_key_for_another_recipient_or_message_is_refused_naming_the_key(db, message, what) -> None:
    first = enqueue(db, MESSAGE, {"dedupe_key": "order-42:paid"})
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        enqueue(db, message, {"dedupe_key": "order-42:paid"})
    error = caught.value
    assert error.sqlstate == "22023"
    text = str(error)
    assert "'order-42:paid'" in text and f"notification {first}" in text and f"different {what}" in text
    assert "dedupe_window" in error.diag.message_hint
    assert count(db) == 1


def test_after_the_window_the_key_names_a_new_message_and_the_old_row_keeps_it(db) -> None:
    first = enqueue(db, MESSAGE, {"dedupe_key": "order-42:paid"})
    age(db, first, 25)
    second = enqueue(db, {"to": "+250788999009", "text": "another"}, {"dedupe_key": "order-42:paid"})
    assert second != first
    keys = db.execute("SELECT id, dedupe_key FROM notifications ORDER BY id").fetchall()
    assert keys == [(first, "order-42:paid"), (second, "order-42:paid")]
    # Within the new window the key is the new message's.
    assert enqueue(db, {"to": "+250788999009", "text": "another"}, {"dedupe_key": "order-42:paid"}) == second


def test_re_enqueueing_after_a_failure_sends_again_once_the_window_has_passed(db) -> None:
    first = enqueue(db, MESSAGE, {"dedupe_key": "k"})
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = '131026' WHERE id = %s", (first,)
    )
    assert enqueue(db, MESSAGE, {"dedupe_key": "k"}) == first, "within the window: the same message"
    age(db, first, 24.5)
    again = enqueue(db, MESSAGE, {"dedupe_key": "k"})
    assert again != first
    assert db.execute("SELECT status FROM notifications WHERE id = %s", (again,)).fetchone()[0] == "queued"


def test_the_window_is_configurable(db) -> None:
    db.execute("UPDATE queue_control SET dedupe_window = interval '1 hour'")
    first = enqueue(db, MESSAGE, {"dedupe_key": "k"})
    age(db, first, 0.5)
    assert enqueue(db, MESSAGE, {"dedupe_key": "k"}) == first
    age(db, first, 1.5)
    assert enqueue(db, MESSAGE, {"dedupe_key": "k"}) != first
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE queue_control SET dedupe_window = interval '1 second'")


def test_keys_without_a_key_are_never_deduplicated(db) -> None:
    assert enqueue(db, MESSAGE) != enqueue(db, MESSAGE)


def _race(db_url: str, messages: list[dict]) -> tuple[list[int], list[BaseException]]:
    ids, errors, barrier = [], [], threading.Barrier(len(messages))

    def worker(message: dict) -> None:
        with connect(db_url, autocommit=True) as conn:
            barrier.wait()
            try:
                ids.append(enqueue(conn, message, {"dedupe_key": "race"}))
            except psycopg.Error as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return ids, errors


def test_concurrent_enqueues_with_one_key_make_one_row(db_url, db) -> None:
    ids, errors = _race(db_url, [MESSAGE] * 12)
    assert errors == [] and len(ids) == 12 and len(set(ids)) == 1
    assert count(db) == 1


def test_concurrent_enqueues_of_different_messages_with_one_key_let_one_through(db_url, db) -> None:
    messages = [{"to": f"+25078899{i:04d}", "text": f"message {i}"} for i in range(8)]
    ids, errors = _race(db_url, messages)
    assert len(ids) == 1 and len(errors) == 7
    assert all(isinstance(e, psycopg.errors.InvalidParameterValue) and "'race'" in str(e) for e in errors)
    assert count(db) == 1


def test_a_key_held_in_an_open_transaction_waits_for_it(db_url, db) -> None:
    with connect(db_url, autocommit=False) as holder:
        first = enqueue(holder, MESSAGE, {"dedupe_key": "slow"})
        result: list[int] = []
        waiter = threading.Thread(
            target=lambda: result.append(
                enqueue(connect(db_url, autocommit=True), MESSAGE, {"dedupe_key": "slow"})
            )
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), "the second enqueue must wait for the first's transaction"
        holder.commit()
    waiter.join(10)
    assert result == [first]

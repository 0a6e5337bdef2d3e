"""Status fates at configured shares, their order and pricing, batching, re-batching and retry
waits, over real HTTP from the emulator to a local receiver."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import httpx
import pytest

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.whatsapp import webhooks
from notify_pipeline_tests.support.emulator import post, wait_for_webhooks
from notify_pipeline_tests.support.emulator_fixtures import (
    EMULATOR_APP_SECRET,
    WebhookReceiver,
    template_message,
    welcome,
)

SHARES = {
    "status_failed_share": 0.2,
    "status_failed_codes": [131026, 130472, 131049, 131047],
    "status_delivered_share": 0.75,
    "status_read_share": 0.5,
    "limits_enabled": False,
    "webhook_batch_max": 100,
    "webhook_batch_linger_ms": 20,
}
MESSAGES = 200
ALLOWED_SEQUENCES = (
    ["sent"],
    ["sent", "delivered"],
    ["sent", "delivered", "read"],
    ["failed"],
    ["sent", "failed"],
)


def send_and_collect(emulator: EmulatorServer, graph: httpx.Client, receiver: WebhookReceiver) -> dict:
    """Per recipient: the statuses of its message in arrival order."""
    emulator.configure(webhook_url=receiver.url, **SHARES)
    ids = {}
    for i in range(MESSAGES):
        to = f"+2507880{i:05d}"
        ids[post(graph, emulator, welcome(to=to)).json()["messages"][0]["id"]] = to
    wait_for_webhooks(emulator, timeout=20)
    by_recipient: dict[str, list[dict]] = defaultdict(list)
    for status in receiver.items(1):
        by_recipient[ids[status["id"]]].append(status)
    return by_recipient


def test_shares_are_honoured_in_order_and_repeatable(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    fates = send_and_collect(emulator, graph, webhook_receiver)
    assert len(fates) == MESSAGES
    sequences = {to: [s["status"] for s in statuses] for to, statuses in fates.items()}
    assert all(seq in ALLOWED_SEQUENCES for seq in sequences.values()), sequences
    failed = [to for to, seq in sequences.items() if seq[-1] == "failed"]
    delivered = [to for to, seq in sequences.items() if "delivered" in seq]
    read = [to for to, seq in sequences.items() if "read" in seq]
    assert 20 <= len(failed) <= 60  # 20 % of 200
    assert 0.6 <= len(delivered) / (MESSAGES - len(failed)) <= 0.9
    assert 0.35 <= len(read) / len(delivered) <= 0.65
    for to in failed:
        [error] = fates[to][-1]["errors"]
        # a utility template: neither 131049 (marketing only) nor 131047 (free-form only)
        assert error["code"] in (131026, 130472)
        # undeliverable follows a `sent`; an experiment hold-out is refused before sending
        assert sequences[to] == (["sent", "failed"] if error["code"] == 131026 else ["failed"])
        assert "pricing" not in fates[to][-1]
    for statuses in fates.values():
        stamps = [int(s["timestamp"]) for s in statuses]
        assert stamps == sorted(stamps)
        priced = [s["status"] for s in statuses if "pricing" in s]
        assert priced == [s for s in ("sent", "delivered") if s in [x["status"] for x in statuses]]
    stats = emulator.stats()
    assert stats["async_failed"] == len(failed) and stats["delivered"] == MESSAGES - len(failed)

    emulator.reset()  # the same seed and sends meet the same fates
    webhook_receiver.received.clear()
    again = send_and_collect(emulator, graph, webhook_receiver)
    assert {to: [s["status"] for s in st] for to, st in again.items()} == sequences


def test_pricing_sits_where_meta_puts_it(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, limits_enabled=False)
    post(graph, emulator, template_message("weekly_promo", components=[_body("2 for 1")], to="+250788000001"))
    marketing = webhook_receiver.items(3)
    assert [s["status"] for s in marketing] == ["sent", "delivered", "read"]
    assert (
        marketing[0]["pricing"]
        == marketing[1]["pricing"]
        == {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        }
    )
    assert "pricing" not in marketing[2]
    # A utility template inside the customer-service window is free.
    emulator.inbound("+250788000002", "hi")
    post(graph, emulator, welcome(to="+250788000002"))
    utility = [s for s in webhook_receiver.items(6) if s["recipient_id"] == "250788000002"]
    assert utility[0]["pricing"] == {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "utility",
    }


def _body(value: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": value}]}


@pytest.mark.parametrize(
    ("layout", "entries", "changes"), [("merged", 1, 1), ("changes", 1, 10), ("entries", 10, 1)]
)
def test_updates_of_different_messages_share_a_body(
    emulator: EmulatorServer,
    graph: httpx.Client,
    webhook_receiver: WebhookReceiver,
    layout: str,
    entries: int,
    changes: int,
) -> None:
    emulator.configure(
        webhook_url=webhook_receiver.url,
        webhook_statuses=["sent"],
        webhook_batch_max=10,
        webhook_batch_linger_ms=5000,  # the tenth update fills the body long before
        webhook_batch_layout=layout,
        limits_enabled=False,
    )
    wamids = [
        post(graph, emulator, welcome(to=f"+25078800{i:04d}")).json()["messages"][0]["id"] for i in range(10)
    ]
    [body] = webhook_receiver.wait_for(1)
    assert len(body["entry"]) == entries
    assert all(len(entry["changes"]) == changes for entry in body["entry"])
    assert [s["id"] for s in webhook_receiver.items(10)] == wamids
    headers, raw = webhook_receiver.received[0]
    assert webhooks.verify(EMULATOR_APP_SECRET, raw, headers[webhooks.SIGNATURE_HEADER])


def test_a_partial_batch_goes_after_the_linger(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(
        webhook_url=webhook_receiver.url,
        webhook_statuses=["sent"],
        webhook_batch_max=1000,
        webhook_batch_linger_ms=100,
    )
    post(graph, emulator, welcome())
    [body] = webhook_receiver.wait_for(1)
    assert len(body["entry"][0]["changes"][0]["value"]["statuses"]) == 1


def test_bodies_can_be_rebatched_split_and_merged(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, limits_enabled=False)
    post(graph, emulator, welcome(to="+250788000001"))
    originals = webhook_receiver.items(3)
    wait_for_webhooks(emulator)
    assert len(webhook_receiver.received) == 3
    # The three statuses of one message, again, in one body and one change.
    assert emulator.resend_webhooks(last=3, batch_max=1000, layout="merged") == {"bodies": 1, "updates": 3}
    merged = webhook_receiver.wait_for(4)[3]
    assert merged["entry"][0]["changes"][0]["value"]["statuses"] == originals  # same items, same timestamps
    # Split again: one entry each, in bodies of two.
    assert emulator.resend_webhooks(last=3, batch_max=2, layout="entries") == {"bodies": 2, "updates": 3}
    split = webhook_receiver.wait_for(6)[4:]
    assert sorted(len(body["entry"]) for body in split) == [1, 2]  # posted in parallel: any order
    for headers, raw in webhook_receiver.received:
        assert webhooks.verify(EMULATOR_APP_SECRET, raw, headers[webhooks.SIGNATURE_HEADER])
    stats = wait_for_webhooks(emulator)
    assert stats["resent_bodies"] == 3 and stats["updates_delivered"] == 3 + 3 + 3


def test_a_rebatch_share_sends_updates_again_grouped_anew(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(
        webhook_url=webhook_receiver.url, webhook_statuses=["sent", "delivered"], webhook_rebatch_share=1.0
    )
    post(graph, emulator, welcome())
    bodies = webhook_receiver.wait_for(4)
    statuses = [_statuses(body) for body in bodies]
    sent = statuses[0][0]
    # The lone `sent` comes again inside the next body, beside the message's `delivered`...
    assert statuses[0] == [sent]
    assert [s["status"] for s in statuses[1]] == ["sent", "delivered"] and statuses[1][0] == sent
    delivered = statuses[1][1]
    # ...and that body of two is re-sent split, one body each.
    assert sorted(map(json.dumps, (statuses[2] + statuses[3]))) == sorted(map(json.dumps, [sent, delivered]))
    stats = wait_for_webhooks(emulator)
    assert stats["rebatched_updates"] == 3 and stats["updates_delivered"] == 5


def _statuses(body: dict) -> list[dict]:
    return [s for e in body["entry"] for c in e["changes"] for s in c["value"].get("statuses", [])]


def test_retries_wait_longer_each_time(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"], webhook_retry_delay_ms=60)
    webhook_receiver.answers = [500, 503, 500]
    post(graph, emulator, welcome())
    webhook_receiver.items(1)
    times = [t for t, _ in webhook_receiver.arrivals]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert [status for _, status in webhook_receiver.arrivals] == [500, 503, 500, 200]
    assert gaps[0] < 0.05  # Meta retries at once first
    assert 0.055 <= gaps[1] < gaps[2] and gaps[2] >= 0.115  # then waits that double
    stats = wait_for_webhooks(emulator)
    assert stats["attempts"] == 4 and stats["retries"] == 3 and stats["non_200"] == 3
    assert stats["delivered"] == 1 and stats["failed"] == 0


def test_a_retried_status_still_comes_before_the_next(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_retry_delay_ms=50)
    webhook_receiver.answers = [500, 500, 500]
    post(graph, emulator, welcome())
    assert [s["status"] for s in webhook_receiver.items(3)] == ["sent", "delivered", "read"]


def test_bodies_escape_slashes_and_non_ascii_as_meta_does(
    emulator: EmulatorServer, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url)
    emulator.inbound("+250788000001", "Murakoze cyane é/ü")
    webhook_receiver.wait_for(1)
    headers, raw = webhook_receiver.received[0]
    assert b'"body":"Murakoze cyane \\u00e9\\/\\u00fc"' in raw
    assert webhooks.verify(EMULATOR_APP_SECRET, raw, headers[webhooks.SIGNATURE_HEADER])
    reencoded = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert not webhooks.verify(EMULATOR_APP_SECRET, reencoded, headers[webhooks.SIGNATURE_HEADER])

"""Fault injection and latency over real HTTP: error codes with a share of requests (seeded),
recipient/template filters, max counts, timeouts, non-JSON answers and async failures."""

from __future__ import annotations

import time

import httpx
import pytest

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.whatsapp import webhooks
from notify_pipeline_tests.support.emulator import assert_meta_error, post
from notify_pipeline_tests.support.emulator_fixtures import (
    EMULATOR_APP_SECRET,
    WebhookReceiver,
    body_params,
    template_message,
    text_message,
    welcome,
)


@pytest.fixture(autouse=True)
def _no_limits(emulator: EmulatorServer) -> None:
    emulator.configure(limits_enabled=False)


def test_an_error_rule_answers_with_metas_body_and_status(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    rule = emulator.add_fault(code=131000)
    assert rule["id"] >= 1 and rule["mode"] == "error"
    assert_meta_error(post(graph, emulator, welcome()), 131000, "Injected fault")
    assert_meta_error(post(graph, emulator, welcome()), 131000)
    assert emulator.stats()["total"] == 0
    assert emulator.faults()[0]["hits"] == 2


@pytest.mark.parametrize("code", [131016, 2, 368, 131031, 131048, 130429, 131026])
def test_each_code_gets_the_http_status_errors_py_gives(
    emulator: EmulatorServer, graph: httpx.Client, code: int
) -> None:
    emulator.add_fault(code=code, details="custom details")
    assert_meta_error(post(graph, emulator, welcome()), code, "custom details")


def test_http_status_can_be_overridden(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(code=130429, http_status=429)
    response = post(graph, emulator, welcome())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == 130429


def test_codes_missing_from_errors_py_need_a_title_and_status(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    refused = graph.post(f"{emulator.base_url}/_emulator/faults", json={"code": 999999})
    assert refused.status_code == 400 and "errors.py" in refused.json()["error"]
    emulator.add_fault(code=999999, title="Brand new error", http_status=400)
    error = post(graph, emulator, welcome()).json()["error"]
    assert error["code"] == 999999 and error["message"] == "(#999999) Brand new error"


def _faulted(graph: httpx.Client, emulator: EmulatorServer, count: int) -> list[int]:
    return [i for i in range(count) if post(graph, emulator, welcome(callback=f"n{i}")).status_code != 200]


def test_a_share_of_requests_fails_reproducibly(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(code=131000, share=0.3, seed=7)
    first = _faulted(graph, emulator, 100)
    assert 15 <= len(first) <= 45
    emulator.reset()
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=131000, share=0.3, seed=7)
    assert _faulted(graph, emulator, 100) == first  # same seed, same requests: same faults
    emulator.reset()
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=131000, share=0.3, seed=8)
    assert _faulted(graph, emulator, 100) != first


def test_rules_without_a_seed_are_reproducible_across_resets(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.add_fault(code=131000, share=0.5)
    first = _faulted(graph, emulator, 40)
    emulator.reset()
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=131000, share=0.5)
    assert _faulted(graph, emulator, 40) == first


def test_share_zero_never_fires_and_max_count_caps_a_rule(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.add_fault(code=131000, share=0)
    emulator.add_fault(code=131016, max_count=2)
    codes = [post(graph, emulator, welcome()).status_code for _ in range(5)]
    assert codes == [503, 503, 200, 200, 200]
    assert [r["hits"] for r in emulator.faults()] == [0, 2]


def test_the_first_matching_rule_wins(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(code=131026, recipients=["+250 788 000 001"])
    emulator.add_fault(code=131000)
    assert post(graph, emulator, welcome(to="+250788000001")).json()["error"]["code"] == 131026
    assert post(graph, emulator, welcome(to="+250788000002")).json()["error"]["code"] == 131000


def test_rules_can_target_recipients_and_templates(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(code=131026, recipients=["250788000001"])
    emulator.add_fault(code=132001, templates=["order_shipped"])
    assert post(graph, emulator, welcome(to="+250788000001")).status_code == 400
    assert post(graph, emulator, welcome(to="+250788000002")).status_code == 200
    shipped = template_message(
        "order_shipped",
        components=[
            body_params("SKB-1", "tomorrow"),
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": "SKB-1"}],
            },
        ],
        to="+250788000003",
    )
    assert_meta_error(post(graph, emulator, shipped), 132001)
    emulator.inbound("+250788000003")  # open the window so the text is delivered
    assert post(graph, emulator, text_message(to="+250788000003")).status_code == 200  # not a template


def test_deleting_rules(emulator: EmulatorServer, graph: httpx.Client) -> None:
    first = emulator.add_fault(code=131000)
    emulator.add_fault(code=131016)
    assert graph.delete(f"{emulator.base_url}/_emulator/faults/{first['id']}").json() == {"deleted": 1}
    assert graph.delete(f"{emulator.base_url}/_emulator/faults/{first['id']}").status_code == 404
    assert post(graph, emulator, welcome()).json()["error"]["code"] == 131016
    assert emulator.clear_faults() == 1
    assert post(graph, emulator, welcome()).status_code == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"mode": "error"},
        {"mode": "explode", "code": 131000},
        {"code": 131000, "share": 1.5},
        {"code": "131000"},
        {"code": 131000, "recipients": "250788000001"},
        {"code": 131000, "colour": "red"},
        {"mode": "non_json", "http_status": 99},
        {"code": 131000, "max_count": -1},
    ],
)
def test_bad_rules_are_refused(emulator: EmulatorServer, graph: httpx.Client, rule: dict) -> None:
    response = graph.post(f"{emulator.base_url}/_emulator/faults", json=rule)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_non_json_answers(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(mode="non_json", max_count=1)
    emulator.add_fault(mode="non_json", http_status=429, max_count=1)
    emulator.add_fault(
        mode="non_json", http_status=502, body="upstream went away", content_type="text/plain", max_count=1
    )
    html = post(graph, emulator, welcome())
    assert html.status_code == 503
    assert html.headers["content-type"].startswith("text/html") and html.text.startswith("<html>")
    bare = post(graph, emulator, welcome())
    assert bare.status_code == 429 and bare.content == b"" and "content-type" not in bare.headers
    plain = post(graph, emulator, welcome())
    assert plain.status_code == 502 and plain.text == "upstream went away"
    assert post(graph, emulator, welcome()).status_code == 200
    stats = emulator.stats()
    assert stats["rejected"] == 3 and stats["by_code"] == {"non_json": 3} and stats["total"] == 1


def test_a_timeout_rule_holds_until_the_client_gives_up(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.add_fault(mode="timeout", hold_s=30, max_count=1)
    with pytest.raises(httpx.ReadTimeout):
        post(graph, emulator, welcome(callback="n1"), timeout=0.3)
    assert post(graph, emulator, welcome(callback="n1")).status_code == 200
    stats = emulator.stats()
    assert stats["timeouts"] == 1 and stats["total"] == 1 and stats["duplicates"] == 0


def test_a_timeout_after_acceptance_makes_a_retry_a_duplicate(
    emulator: EmulatorServer, graph: httpx.Client
) -> None:
    emulator.add_fault(mode="timeout", hold_s=30, accepted=True, max_count=1)
    with pytest.raises(httpx.ReadTimeout):
        post(graph, emulator, welcome(callback="n1"), timeout=0.3)
    assert post(graph, emulator, welcome(callback="n1")).status_code == 200
    stats = emulator.stats()
    assert stats["total"] == 2 and stats["duplicates"] == 1 and stats["duplicate_keys"] == {"n1": 2}
    assert [m["via_timeout"] for m in emulator.messages()] == [True, False]


def test_a_short_hold_answers_afterwards(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.add_fault(mode="timeout", hold_s=0.2, code=131016, max_count=1)
    emulator.add_fault(mode="timeout", hold_s=0.2, accepted=True, max_count=1)
    assert_meta_error(post(graph, emulator, welcome()), 131016)
    assert post(graph, emulator, welcome()).status_code == 200


def test_async_faults_accept_then_fail_by_webhook(
    emulator: EmulatorServer, graph: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(webhook_url=webhook_receiver.url, webhook_statuses=["sent"])
    emulator.add_fault(mode="async", code=131026, details="Not a WhatsApp user", recipients=["250788000001"])
    failed = post(graph, emulator, welcome(to="+250788000001", callback="n1"))
    assert failed.status_code == 200
    wamid = failed.json()["messages"][0]["id"]
    fine = post(graph, emulator, welcome(to="+250788000002", callback="n2")).json()["messages"][0]["id"]
    statuses = {s["id"]: s for s in webhook_receiver.statuses(2)}
    assert statuses[fine]["status"] == "sent"
    failure = statuses[wamid]
    assert failure["status"] == "failed" and failure["biz_opaque_callback_data"] == "n1"
    assert failure["recipient_id"] == "250788000001"
    [error] = failure["errors"]
    assert error["code"] == 131026
    assert error["title"] == error["message"] == "Message undeliverable"
    assert error["error_data"] == {"details": "Not a WhatsApp user"}
    assert error["href"].startswith("https://developers.facebook.com/")
    assert "pricing" not in failure
    for headers, body in webhook_receiver.received:
        assert webhooks.verify(EMULATOR_APP_SECRET, body, headers[webhooks.SIGNATURE_HEADER])
    stats = emulator.stats()
    assert stats["total"] == 2 and stats["delivered"] == 1 and stats["async_failed"] == 1
    assert stats["by_code"] == {"131026": 1}
    assert [m["failed_code"] for m in emulator.messages()] == [131026, None]


def test_latency_is_added_to_sends(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(latency_ms=150)
    started = time.monotonic()
    assert post(graph, emulator, welcome()).status_code == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    assert_meta_error(post(graph, emulator, {}), 100)  # errors travel the same network
    assert time.monotonic() - started >= 0.15


def test_jitter_adds_on_top_of_latency(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(latency_ms=50, jitter_ms=50)
    started = time.monotonic()
    for _ in range(3):
        post(graph, emulator, welcome())
    assert time.monotonic() - started >= 0.15
    assert emulator.config()["jitter_ms"] == 50

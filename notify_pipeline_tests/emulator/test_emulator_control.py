"""The control API (stats, duplicates, messages, reset, config), the EmulatorServer helper,
and the `notify-pipeline emulator` command as a separate process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from notify_pipeline.emulator import DEV_TOKEN, EmulatorServer
from notify_pipeline.emulator.app import EmulatorApp
from notify_pipeline.emulator.state import Emulator
from notify_pipeline_tests.support.emulator import assert_meta_error, post
from notify_pipeline_tests.support.emulator_fixtures import text_message, welcome
from notify_pipeline_tests.support.ports import free_port

CLI = str(Path(sys.executable).parent / "notify-pipeline")


def test_stats_count_accepted_rejected_and_duplicates(emulator: EmulatorServer, graph: httpx.Client) -> None:
    for callback in ["n1", "n2", "n1", "n3", "n1"]:
        assert post(graph, emulator, welcome(to="+250788000001", callback=callback)).status_code == 200
    post(graph, emulator, welcome(to="+250788000002"))  # no callback data: never a duplicate
    post(graph, emulator, welcome(to="+250788000002"))
    post(graph, emulator, {"messaging_product": "whatsapp"})
    post(graph, emulator, welcome(), headers={})
    stats = emulator.stats()
    assert stats["total"] == 7
    assert stats["duplicates"] == 2
    assert stats["duplicate_keys"] == {"n1": 3}
    assert stats["rejected"] == 2
    assert stats["by_recipient"] == {"250788000001": 5, "250788000002": 2}
    assert stats["by_template"] == {"welcome_message": 7}
    assert stats["by_code"] == {"131008": 1, "190": 1}
    assert stats["internal_errors"] == 0


def test_messages_can_be_filtered_and_paged(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(limits_enabled=False, enforce_service_window=False)
    for i in range(6):
        post(graph, emulator, welcome(to=f"+25078800000{i % 2}", callback=f"n{i}"))
    post(graph, emulator, text_message(to="+250788000000"))
    assert len(emulator.messages()) == 7
    assert [m["biz_opaque_callback_data"] for m in emulator.messages(wa_id="250788000001")] == [
        "n1",
        "n3",
        "n5",
    ]
    assert len(emulator.messages(type="text")) == 1
    assert len(emulator.messages(template_name="welcome_message", wa_id="250788000000")) == 3
    assert emulator.messages(biz_opaque_callback_data="n4")[0]["wa_id"] == "250788000000"
    page = graph.get(f"{emulator.base_url}/_emulator/messages", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 7 and [m["biz_opaque_callback_data"] for m in page["data"]] == ["n1", "n2"]
    bad = graph.get(f"{emulator.base_url}/_emulator/messages", params={"colour": "red"})
    assert bad.status_code == 400


def test_reset_clears_everything_and_restores_settings(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(latency_ms=5, pair_burst=1)
    emulator.add_fault(code=131000, max_count=1)
    post(graph, emulator, welcome(callback="n1"))
    post(graph, emulator, welcome(callback="n1"))
    emulator.reset()
    stats = emulator.stats()
    assert (stats["total"], stats["rejected"], stats["duplicates"], stats["by_code"]) == (0, 0, 0, {})
    assert emulator.messages() == [] and emulator.faults() == []
    assert emulator.config()["latency_ms"] == 0 and emulator.config()["pair_burst"] == 45


def test_reset_can_keep_the_settings(emulator: EmulatorServer) -> None:
    emulator.configure(latency_ms=5)
    emulator.reset(keep_config=True)
    assert emulator.config()["latency_ms"] == 5


@pytest.mark.parametrize(
    "changes",
    [
        {"latency_ms": -1},
        {"latency_ms": "fast"},
        {"limits_enabled": "yes"},
        {"throughput_per_s": 0},
        {"throughput_burst": 2.5},
        {"pair_burst": True},
        {"webhook_statuses": ["sent", "seen"]},
        {"colour": "red"},
        {"phone_number_id": "abc"},
        {"token": None},
    ],
)
def test_bad_settings_are_refused(emulator: EmulatorServer, graph: httpx.Client, changes: dict) -> None:
    before = emulator.config()
    response = graph.patch(f"{emulator.base_url}/_emulator/config", json=changes)
    assert response.status_code == 400
    assert response.json()["error"]
    assert emulator.config() == before


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("PATCH", "config", b"{not json"),
        ("PATCH", "config", b"[1]"),
        ("POST", "faults", b""),
        ("POST", "templates", b"null"),
        ("POST", "inbound", b"{}"),
    ],
)
def test_the_control_api_answers_mistakes_with_400(
    emulator: EmulatorServer, graph: httpx.Client, method: str, path: str, content: bytes
) -> None:
    response = graph.request(method, f"{emulator.base_url}/_emulator/{path}", content=content)
    assert response.status_code == 400
    assert response.json()["error"]


def test_unknown_control_routes_get_404(emulator: EmulatorServer, graph: httpx.Client) -> None:
    assert graph.get(f"{emulator.base_url}/_emulator/nothing").status_code == 404
    assert graph.get(f"{emulator.base_url}/_emulator/health").json() == {"ok": True}


def test_the_control_api_refuses_non_loopback_clients() -> None:
    app = EmulatorApp(Emulator())

    async def call(client: tuple[str, int]) -> int:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
            return (await http.get("/_emulator/stats")).status_code

    assert asyncio.run(call(("10.1.2.3", 5000))) == 403
    assert asyncio.run(call(("127.0.0.1", 5000))) == 200


def test_emulator_server_helpers(emulator: EmulatorServer) -> None:
    assert emulator.base_url.startswith("http://127.0.0.1:")
    assert emulator.token == DEV_TOKEN
    assert emulator.messages_url() == f"{emulator.base_url}/v23.0/{emulator.phone_number_id}/messages"
    assert emulator.templates_url().endswith("/message_templates")
    assert len(emulator.templates()) == 12
    with pytest.raises(ValueError, match="400"):
        emulator.add_fault(mode="nonsense")


def test_emulator_server_takes_settings_and_templates() -> None:
    templates = [{"name": "only_one", "language": "en", "components": [{"type": "BODY", "text": "Hi"}]}]
    with EmulatorServer(token="other", templates=templates, latency_ms=1, limits_enabled=False) as server:
        assert server.config()["latency_ms"] == 1 and server.config()["limits_enabled"] is False
        assert [t["name"] for t in server.templates()] == ["only_one"]
        body = {"messaging_product": "whatsapp", "to": "+250788000001", "type": "template"}
        body["template"] = {"name": "only_one", "language": {"code": "en"}}
        response = httpx.post(server.messages_url(), json=body, headers=server.auth_headers, trust_env=False)
        assert response.status_code == 200
    with pytest.raises(RuntimeError, match="not running"):
        server.stats()


def test_two_servers_run_side_by_side() -> None:
    with EmulatorServer() as first, EmulatorServer() as second:
        assert first.port != second.port
        httpx.post(first.messages_url(), json=welcome(), headers=first.auth_headers, trust_env=False)
        assert first.stats()["total"] == 1 and second.stats()["total"] == 0


@pytest.mark.slow
def test_the_cli_runs_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WHATSAPP_ACCESS_TOKEN": "cli-token-value", "WHATSAPP_APP_SECRET": "s3cret"}
    process = subprocess.Popen(
        [CLI, "emulator", "--port", str(port), "--latency-ms", "1", "--throughput-per-s", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, trust_env=False, timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/_emulator/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.1)
            ok = http.post(
                "/v23.0/123/messages", json=welcome(), headers={"Authorization": "Bearer cli-token-value"}
            )
            assert ok.status_code == 200
            assert_meta_error(
                http.post(
                    "/v23.0/123/messages", json=welcome(), headers={"Authorization": "Bearer dev-token"}
                ),
                190,
            )
            config = http.get("/_emulator/config").json()
            assert (
                config["throughput_per_s"] == 5
                and config["latency_ms"] == 1
                and config["app_secret"] == "<set>"
            )
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "cli-token-value" not in output and "s3cret" not in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_the_cli_defaults_to_the_dev_token_and_refuses_a_webhook_without_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET")}
    result = subprocess.run(
        [CLI, "emulator", "--webhook-url", "http://127.0.0.1:9/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "app-secret" in result.stderr and "Traceback" not in result.stderr
    help_text = subprocess.run(
        [CLI, "emulator", "--help"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "dev-token" in help_text and "WHATSAPP_ACCESS_TOKEN" in help_text
    assert DEV_TOKEN == "dev-token"

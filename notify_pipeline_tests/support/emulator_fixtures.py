"""Fixtures for tests that talk to the Cloud API emulator over real HTTP.

- `emulator`: an EmulatorServer (one per session, reset before each test: records, faults,
  limiter state, templates and settings are back to how they started). Settings are Meta's
  defaults, rate limits included; tests that do not care call `emulator.configure(limits_enabled=False)`.
  Webhooks are signed with EMULATOR_APP_SECRET once a test sets `webhook_url`. Unlike the demo
  defaults, every accepted message then gets sent, delivered and read at once, none fails later
  (DETERMINISTIC_STATUSES); tests of the shares and delays configure them.
- `webhook_receiver`: a real HTTP server on 127.0.0.1 that records every webhook POST.
- `graph`: an httpx.Client that ignores proxy settings (loopback calls must not go to a proxy).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from notify_pipeline.emulator import EmulatorServer

EMULATOR_APP_SECRET = "test-app-secret"
DETERMINISTIC_STATUSES = {
    "status_failed_share": 0.0,
    "status_delivered_share": 1.0,
    "status_read_share": 1.0,
    "status_sent_delay_ms": 0,
    "status_delivered_delay_ms": 0,
    "status_read_delay_ms": 0,
}


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(app_secret=EMULATOR_APP_SECRET, **DETERMINISTIC_STATUSES) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The session's emulator, freshly reset."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()  # drop faults and queued webhooks before the next test


@pytest.fixture(scope="session")
def graph() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


class WebhookReceiver:
    """Records webhook POSTs (raw body bytes and headers); answers with queued statuses, else 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []  # statuses for the next requests, in order
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, status answered) of every POST
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.arrivals.append((time.monotonic(), status))
                    if status == 200:
                        receiver.received.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first `count` accepted webhook bodies (parsed), waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return [json.loads(body) for _, body in self.received]
            time.sleep(0.01)
        with self._lock:
            raise AssertionError(f"expected {count} webhooks within {timeout}s, got {len(self.received)}")

    def statuses(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The `statuses[]` entries of the first `count` status webhooks."""
        bodies = self.wait_for(count, timeout)
        return [
            status
            for body in bodies
            for entry in body["entry"]
            for change in entry["changes"]
            for status in change["value"].get("statuses", [])
        ]

    def items(self, count: int, key: str = "statuses", timeout: float = 5.0) -> list[dict[str, Any]]:
        """The `key` items (statuses, messages, user_preferences) of all bodies, once `count` arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                bodies = [json.loads(body) for _, body in self.received]
            found = [
                item
                for body in bodies
                for entry in body["entry"]
                for change in entry["changes"]
                for item in change["value"].get(key, [])
            ]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {key} within {timeout}s, got {len(found)}")
            time.sleep(0.01)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def template_message(
    name: str,
    language: str = "en",
    components: list[dict[str, Any]] | None = None,
    *,
    to: str = "+250788000001",
    callback: str | None = None,
) -> dict[str, Any]:
    """A send body for a template, as the Cloud API takes it."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        template["components"] = components
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": template,
    }
    if callback is not None:
        body["biz_opaque_callback_data"] = callback
    return body


def body_params(*values: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}


def welcome(to: str = "+250788000001", callback: str | None = None) -> dict[str, Any]:
    """The simplest valid template send in the demo catalog (welcome_message, one body variable)."""
    return template_message("welcome_message", "en", [body_params("Aline")], to=to, callback=callback)


def text_message(body: str = "Hello", to: str = "+250788000001") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}

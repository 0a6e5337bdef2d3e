"""`notify-pipeline serve`'s app on a real port in a background thread, and signed POSTs to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from notify_pipeline.service.app import create_app
from notify_pipeline.service.config import ServiceConfig
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign
from notify_pipeline_tests.support import free_port

APP_SECRET = "receiver-test-secret"
VERIFY_TOKEN = "receiver-verify-token"


class Service:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=10)

    def post(self, body: bytes, *, secret: str = APP_SECRET, headers: dict | None = None) -> httpx.Response:
        sent = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body), **(headers or {})}
        return self.http.post("/webhooks/whatsapp", content=body, headers=sent)


@contextmanager
def running_service(db_url: str, **overrides) -> Iterator[Service]:
    config = ServiceConfig(database_url=db_url, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, **overrides)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    service = Service(f"http://127.0.0.1:{port}")
    try:
        yield service
    finally:
        service.http.close()
        server.should_exit = True
        thread.join(10)

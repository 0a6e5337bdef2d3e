"""Running the emulator: `serve()` for the CLI, `EmulatorServer` in a thread for tests.

Both run the same ASGI app under uvicorn (uvloop and httptools when installed), bound to a
loopback address by default. EmulatorServer's helpers talk to the control API over real HTTP,
so a test sees exactly what an outside client would.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.emulator.app import EmulatorApp
from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID, DEV_TOKEN, EmulatorConfig
from notify_pipeline.emulator.state import Emulator

DEFAULT_API_VERSION = "v23.0"

log = logging.getLogger(__name__)


def _uvicorn_config(app: EmulatorApp, log_level: str, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        lifespan="on",
        log_level=log_level,
        access_log=False,  # speed, and request lines have no business in logs here
        server_header=False,
        # A request held by a timeout fault must not keep a stopping server alive.
        timeout_graceful_shutdown=1,
        **extra,
    )


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    templates: Path | None = None,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Run the emulator in the foreground until interrupted (the `notify-pipeline emulator` command)."""
    config = EmulatorConfig().changed(settings)
    emulator = Emulator(config, load_template_catalog(templates))
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("emulator: listening on %s; the control API still answers loopback clients only", host)
    server = uvicorn.Server(_uvicorn_config(EmulatorApp(emulator), log_level, host=host, port=port))
    # uvicorn re-raises the Ctrl+C it handled, after a clean shutdown: that is a normal stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


class EmulatorServer:
    """The emulator on a free 127.0.0.1 port, in a background thread; a context manager.

    Keyword settings are EmulatorConfig fields (latency_ms=..., limits_enabled=False, ...).
    `templates` is a list of definitions or a catalog file; default: the demo catalog.
    """

    def __init__(
        self,
        *,
        templates: list[dict[str, Any]] | Path | str | None = None,
        token: str = DEV_TOKEN,
        host: str = "127.0.0.1",
        **settings: Any,
    ) -> None:
        if templates is None or isinstance(templates, Path | str):
            templates = load_template_catalog(Path(templates) if templates else None)
        self._emulator = Emulator(EmulatorConfig(token=token).changed(settings), templates)
        self.token = token
        self.host = host
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """Where the Graph API lives, e.g. http://127.0.0.1:41234 (WHATSAPP_API_BASE_URL)."""
        return f"http://{self.host}:{self.port}"

    @property
    def phone_number_id(self) -> str:
        return DEFAULT_PHONE_NUMBER_ID

    def messages_url(
        self, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, version: str = DEFAULT_API_VERSION
    ) -> str:
        return f"{self.base_url}/{version}/{phone_number_id}/messages"

    def templates_url(self, waba_id: str | None = None, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.base_url}/{version}/{waba_id or self._emulator.config.waba_id}/message_templates"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))  # the kernel picks a free port; no race with other tests
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(EmulatorApp(self._emulator), "warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"emulator-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start; see the log above")
            time.sleep(0.01)
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback calls.
        self._http = httpx.Client(base_url=self.base_url, trust_env=False, timeout=10)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- control API over HTTP -----------------------------------------------------------------

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        if self._http is None:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        response = self._http.request(method, f"/_emulator/{path}", json=json, params=params)
        if response.status_code >= 400:
            raise ValueError(f"emulator control API: {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset(self, keep_config: bool = False) -> None:
        self._call("POST", "reset", json={"keep_config": keep_config})

    def messages(self, limit: int = 100_000, **filters: str) -> list[dict[str, Any]]:
        return self._call("GET", "messages", params={**filters, "limit": limit})["data"]

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        return self._call("POST", "faults", json=rule)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["data"]

    def clear_faults(self) -> int:
        return self._call("DELETE", "faults")["deleted"]

    def templates(self) -> list[dict[str, Any]]:
        return self._call("GET", "templates")["data"]

    def put_template(self, definition: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "templates", json=definition)

    def set_template_status(self, name: str, language: str, status: str) -> dict[str, Any]:
        return self._call("PATCH", f"templates/{name}/{language}", json={"status": status})

    def set_template_paced(self, name: str, language: str, paced: bool = True) -> dict[str, Any]:
        return self._call("PATCH", f"templates/{name}/{language}", json={"paced": paced})

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "config", json=changes)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def inbound(
        self,
        from_: str,
        text: str = "hi",
        *,
        kind: str = "text",
        payload: str | None = None,
        context_id: str | None = None,
        name: str = "Test User",
    ) -> dict[str, Any]:
        """A user writes to the business (opens the 24 h window for free-form messages to them).

        kind="button": a tap on a template's quick reply; its context is the last message sent
        to that user unless `context_id` names one.
        """
        body = {"from": from_, "text": text, "type": kind, "name": name}
        body.update({k: v for k, v in (("payload", payload), ("context_id", context_id)) if v is not None})
        return self._call("POST", "inbound", json=body)

    def button_reply(self, from_: str, text: str = "Stop promotions", **options: Any) -> dict[str, Any]:
        return self.inbound(from_, text, kind="button", **options)

    def user_preferences(self, wa_id: str, value: str = "stop", detail: str | None = None) -> dict[str, Any]:
        """The user stops (or resumes) marketing messages: a `user_preferences` webhook; MARKETING
        sends to them then fail with 131050 until they resume."""
        body = {"wa_id": wa_id, "value": value, **({"detail": detail} if detail else {})}
        return self._call("POST", "user_preferences", json=body)

    def template_event(self, name: str, language: str, event: str, **extra: Any) -> dict[str, Any]:
        """Meta changes a template's status (registry updated, webhook posted even if unchanged).
        `extra`: reason, other_info, disable_info, rejection_info."""
        return self._call("POST", f"templates/{name}/{language}/status", json={"event": event, **extra})

    def template_quality(self, name: str, language: str, score: str) -> dict[str, Any]:
        return self._call("POST", f"templates/{name}/{language}/quality", json={"score": score})

    def template_category(self, name: str, language: str, category: str) -> dict[str, Any]:
        return self._call("POST", f"templates/{name}/{language}/category", json={"category": category})

    def resend_webhooks(
        self, last: int = 1, batch_max: int | None = None, layout: str | None = None
    ) -> dict[str, int]:
        """Post the updates of the last `last` delivered bodies again, grouped anew (a re-batch)."""
        body: dict[str, Any] = {"last": last}
        body.update({k: v for k, v in (("batch_max", batch_max), ("layout", layout)) if v is not None})
        return self._call("POST", "webhooks/resend", json=body)

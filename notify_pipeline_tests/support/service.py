"""`notify-pipeline serve` on real ports: its app in a background thread (running_service), or the
command itself as a process (serve_process), and signed POSTs to it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from notify_pipeline.service.app import create_app
from notify_pipeline.service.config import ServeLimits, ServiceConfig
from notify_pipeline.service.protocol import LimitedHttpToolsProtocol
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign
from notify_pipeline_tests.support.ports import free_port

APP_SECRET = "receiver-test-secret"
VERIFY_TOKEN = "receiver-verify-token"


class Service:
    def __init__(self, base_url: str, metrics_url: str | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=10)
        # The metrics listener (its own port): `service.metrics.get("/metrics")`.
        self.metrics = httpx.Client(base_url=metrics_url or base_url, trust_env=False, timeout=10)

    def post(self, body: bytes, *, secret: str = APP_SECRET, headers: dict | None = None) -> httpx.Response:
        sent = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body), **(headers or {})}
        return self.http.post("/webhooks/whatsapp", content=body, headers=sent)

    def close(self) -> None:
        self.http.close()
        self.metrics.close()


@contextmanager
def running_service(db_url: str, **overrides) -> Iterator[Service]:
    """The app under uvicorn in a thread, with the header limits of `serve` and a metrics listener
    whose answers are not cached (tests scrape after each change). `max_body_bytes=N` caps bodies."""
    limits = ServeLimits()
    if "max_body_bytes" in overrides:
        limits = ServeLimits(max_body_bytes=overrides.pop("max_body_bytes"))
    metrics_port = free_port()
    config = ServiceConfig(
        **{
            "database_url": db_url,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "limits": limits,
            "metrics_port": metrics_port,
            "metrics_cache_s": 0,
            **overrides,
        }
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http=LimitedHttpToolsProtocol.with_limits(limits),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.02)
    service = Service(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}")
    try:
        yield service
    finally:
        service.close()
        server.should_exit = True
        thread.join(10)


class ServeProcess(Service):
    """`notify-pipeline serve` as its own process; its stderr goes to a file."""

    def __init__(self, process: subprocess.Popen, port: int, metrics_port: int, stderr: Path) -> None:
        super().__init__(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}")
        self.process, self.port, self.metrics_port, self.stderr_path = process, port, metrics_port, stderr

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def status_kb(self, field: str) -> int:
        """A memory figure of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")


@contextmanager
def serve_process(db_url: str, folder: Path, env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """Start `notify-pipeline serve` on free ports (`env` on top of the test's environment) and
    wait until it answers /healthz; terminate it at the end."""
    port, metrics_port = free_port(), free_port()
    stderr_path = folder / f"serve-{port}.stderr"
    full_env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "NOTIFY_METRICS_PORT": str(metrics_port),
        **(env or {}),
    }
    cli = str(Path(sys.executable).parent / "notify-pipeline")
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [cli, "serve", "--port", str(port)], env=full_env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    service = ServeProcess(process, port, metrics_port, stderr_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve exited: {service.stderr()[-2000:]}"
            assert time.monotonic() < deadline, f"serve did not start: {service.stderr()[-2000:]}"
            try:
                if service.http.get("/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield service
    finally:
        service.close()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

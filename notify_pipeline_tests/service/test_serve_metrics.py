"""`notify-pipeline serve`'s /metrics (the real command): not on the webhook port, served by a
listener of its own, one database read per cache period whatever the scrape rate, and no redirect
built from a caller's Host header on either port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from notify_pipeline_tests.support.ports import free_port
from notify_pipeline_tests.support.service import serve_process

pytestmark = pytest.mark.slow


class CountingProxy:
    """A TCP relay to PostgreSQL that counts the connections whose startup message names an actor
    (connect.py puts `notify.actor=<actor>` in the options every connection sends)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.actors: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, actor: str) -> int:
        with self.lock:
            return sum(f"notify.actor={actor} ".encode() in head + b" " for head in self.actors)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            head = bytearray()
            with self.lock:
                self.actors.append(b"")
                index = len(self.actors) - 1

            def sniff(data: bytes, index=index, head=head) -> None:
                if len(head) < 4096:
                    head.extend(data)
                    with self.lock:
                        self.actors[index] = bytes(head).replace(b"\x00", b" ")

            threading.Thread(target=self._pump, args=(client, server, sniff), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, sniff) -> None:
        try:
            while data := source.recv(65536):
                if sniff:
                    sniff(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def through(proxy: CountingProxy, db_url: str) -> str:
    parts = urlsplit(db_url)
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{proxy.port}"))


def test_metrics_are_served_on_their_own_listener_not_the_webhook_port(db_url, tmp_path: Path) -> None:
    with serve_process(db_url, tmp_path) as service:
        on_webhook_port = service.http.get("/metrics")
        scrape = service.metrics.get("/metrics")
        webhooks_on_metrics_port = service.metrics.post("/webhooks/whatsapp", content=b"{}")
    assert on_webhook_port.status_code == 404
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    names = {family.name for family in text_string_to_metric_families(scrape.text)}
    assert {"notification_queue_depth", "notification_sent"} <= names
    assert webhooks_on_metrics_port.status_code == 404


def test_scrapes_within_the_cache_period_make_one_database_read(db_url, tmp_path: Path) -> None:
    parts = urlsplit(db_url)
    proxy = CountingProxy((parts.hostname, parts.port))
    try:
        with serve_process(through(proxy, db_url), tmp_path, {"NOTIFY_METRICS_CACHE_S": "120"}) as service:
            with ThreadPoolExecutor(10) as pool:  # ten at once on a cold cache, then ten more in turn
                concurrent = list(pool.map(lambda _: service.metrics.get("/metrics"), range(10)))
            in_turn = [service.metrics.get("/metrics") for _ in range(10)]
            reads = proxy.count("serve:metrics")
    finally:
        proxy.close()
    answers = concurrent + in_turn
    assert all(answer.status_code == 200 for answer in answers)
    assert len({answer.content for answer in answers}) == 1
    assert reads == 1, f"{reads} database connections for 20 scrapes within one cache period"


@pytest.mark.parametrize("path", ["/metrics/", "/metrics//", "/healthz/", "/webhooks/whatsapp/"])
def test_a_trailing_slash_is_not_redirected_to_the_callers_host(db_url, tmp_path: Path, path: str) -> None:
    with serve_process(db_url, tmp_path) as service:
        answers = [
            client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            for client in (service.metrics, service.http)
        ]
    for answer in answers:
        assert answer.status_code == 404, (answer.status_code, answer.headers.get("location"))
        assert "location" not in answer.headers


def test_a_metrics_port_in_use_or_equal_to_the_webhook_port_is_a_one_line_error(db_url) -> None:
    cli = str(Path(sys.executable).parent / "notify-pipeline")
    env = {"NOTIFY_DATABASE_URL": db_url, "WHATSAPP_APP_SECRET": "a-secret", "PATH": "/usr/bin:/bin"}
    port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        in_use = subprocess.run(
            [cli, "serve", "--port", str(port), "--metrics-port", str(busy)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    same = subprocess.run(
        [cli, "serve", "--port", str(port)],
        env={**env, "NOTIFY_METRICS_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert in_use.returncode == 2 and f"cannot listen for /metrics on 127.0.0.1:{busy}" in in_use.stderr
    assert same.returncode == 2 and "the metrics port is the webhook port" in same.stderr
    for result in (in_use, same):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

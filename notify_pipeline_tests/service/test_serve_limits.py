"""`notify-pipeline serve` (the real command, a real socket, real uvicorn) under hostile and careless
traffic: bodies that never end, headers that never end, connections that say nothing, aborted
POSTs, and a traceback that would carry a recipient's number. Short limits come from the
environment so that each case takes seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from notify_pipeline.redact import mask_number
from notify_pipeline_tests.support.service import ServeProcess, serve_process

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
SHORT_LIMITS = {
    "NOTIFY_SERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "NOTIFY_SERVE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
}
MIB = 1024 * 1024
BODY_CAP = 4 * MIB  # the default NOTIFY_SERVE_MAX_BODY_BYTES: the attack uses the defaults
FORGED_SIGNATURE = "sha256=" + "0" * 64  # well formed, so the body must be read before it fails
CHUNK = 64 * 1024
NUMBER = "250788123456"


@dataclass
class Outcome:
    sent: int = 0
    answer: bytes = b""  # the status line, when the server answered before closing
    cut: bool = False  # the server closed (or reset) the connection


def _connect(service: ServeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=60)
    return sock


def _await_end(sock: socket.socket, outcome: Outcome) -> None:
    """Read until the server closes the connection (or 60 s pass: then it was not cut)."""
    try:
        while True:
            data = sock.recv(65536)
            if not outcome.answer and data:
                outcome.answer = data.split(b"\r\n", 1)[0]
            if not data:
                outcome.cut = True
                return
    except TimeoutError:
        return
    except OSError:
        outcome.cut = True


def _send_until_cut(sock: socket.socket, outcome: Outcome, total: int, pause_s: float) -> bool:
    """Send `total` bytes in chunks; False when the server cut the connection first."""
    chunk = b"a" * CHUNK
    try:
        while outcome.sent < total:
            piece = chunk[: total - outcome.sent]
            sock.sendall(piece)
            outcome.sent += len(piece)
            if pause_s:
                time.sleep(pause_s)
    except OSError:
        outcome.cut = True
        return False
    return True


def hold_a_body(service: ServeProcess, outcome: Outcome, started: threading.Semaphore) -> None:
    """An unauthenticated 4 MiB body sent slowly, all but its last byte, then held."""
    with _connect(service) as sock:
        head = (
            "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BODY_CAP}\r\nX-Hub-Signature-256: {FORGED_SIGNATURE}\r\n\r\n"
        )
        sock.sendall(head.encode())
        started.release()
        if _send_until_cut(sock, outcome, BODY_CAP - 1, pause_s=0.02):
            _await_end(sock, outcome)


def endless_header(service: ServeProcess, outcome: Outcome, started: threading.Semaphore, size: int) -> None:
    """A request whose one header goes on for `size` bytes (never finished)."""
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        started.release()
        if _send_until_cut(sock, outcome, size, pause_s=0):
            _await_end(sock, outcome)


def status_body(wamid: str, recipient: str = "250788000001") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [
            {"id": wamid, "status": "sent", "timestamp": str(int(time.time())), "recipient_id": recipient}
        ],
    }
    entry = {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def stored(db: psycopg.Connection, wamid: str) -> int:
    return db.execute("SELECT count(*) FROM webhook_events WHERE wa_message_id = %s", (wamid,)).fetchone()[0]


def wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_unauthenticated_bodies_and_endless_headers_are_cut_and_memory_stays_bounded(
    db, db_url, tmp_path: Path
) -> None:
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service:
        # Warm up the paths the attack takes, then measure from here.
        assert service.post(status_body("wamid.warm-up")).status_code == 200
        assert service.http.get("/healthz").status_code == 200
        rss_before = service.status_kb("VmRSS")
        Path(f"/proc/{service.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from now on

        started = threading.Semaphore(0)
        bodies = [Outcome() for _ in range(50)]
        headers = [Outcome() for _ in range(5)]
        threads = [threading.Thread(target=hold_a_body, args=(service, o, started)) for o in bodies]
        threads += [
            threading.Thread(target=endless_header, args=(service, o, started, 50 * MIB)) for o in headers
        ]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert started.acquire(timeout=60), "an attacking connection did not start"

        # Meta's webhook, signed, while the attack holds its connections: accepted and stored.
        answer = service.post(status_body("wamid.during-the-attack"))
        assert answer.status_code == 200, answer.text

        for thread in threads:
            thread.join(120)
        peak_growth_mb = (service.status_kb("VmHWM") - rss_before) / 1024
        refused = service.http.get("/healthz").json()["refused"]

    print(f"serve's peak RSS growth under the attack: {peak_growth_mb:.1f} MB; refused: {refused}")
    assert stored(db, "wamid.during-the-attack") == 1
    assert all(o.cut and o.sent < BODY_CAP for o in bodies), [o for o in bodies if not o.cut]
    assert all(o.cut and o.sent < 50 * MIB for o in headers), [o for o in headers if not o.cut]
    answered = {o.answer.split(b" ")[1] for o in bodies if o.answer}
    assert answered <= {b"408", b"503"}, answered
    assert refused["too_slow"] + refused["busy"] >= len(bodies) - 1, refused
    assert peak_growth_mb < 50, f"serve grew by {peak_growth_mb:.1f} MB"


def test_a_16_mb_header_is_refused_without_being_read(db_url, tmp_path: Path) -> None:
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service:
        outcome, started = Outcome(), threading.Semaphore(0)
        sender = threading.Thread(target=endless_header, args=(service, outcome, started, 16 * 1000 * 1000))
        sender.start()
        sender.join(120)
        assert not sender.is_alive()
    # The server stopped reading long before the 16 MB were sent, and never answered 200.
    assert outcome.cut and outcome.sent < 16 * 1000 * 1000, outcome
    assert outcome.answer in (b"", b"HTTP/1.1 431 Request Header Fields Too Large"), outcome


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(db_url, tmp_path: Path) -> None:
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service, _connect(service) as sock:
        opened = time.monotonic()
        try:
            data = sock.recv(100)
        except TimeoutError:
            pytest.fail("the idle connection was still open after 60 s")
        waited = time.monotonic() - opened
    assert data == b""  # closed, with nothing to answer
    assert waited >= HEADER_TIMEOUT_S * 0.9, waited


def test_a_kept_alive_connection_that_stalls_inside_its_next_headers_gets_408(db_url, tmp_path: Path) -> None:
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service, _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"refused"' not in first:  # the whole JSON answer
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        outcome = Outcome()
        _await_end(sock, outcome)
    assert outcome.cut and outcome.answer == b"HTTP/1.1 408 Request Timeout", outcome


def test_aborted_posts_log_at_most_a_short_line_each(db_url, tmp_path: Path) -> None:
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service:
        for _ in range(5):
            with _connect(service) as sock:
                sock.sendall(
                    b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                    + f"X-Hub-Signature-256: {FORGED_SIGNATURE}\r\n\r\n".encode()
                    + b"{" * 1000
                )
        wait_for(
            lambda: (
                service.http.get("/healthz").json()["refused"]["aborted"] == 5
                or "Traceback" in service.stderr()
            ),
            "serve to see the 5 aborted POSTs",
        )
        log = service.stderr()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[:3000]
    lines = log.splitlines()
    assert len(lines) <= 5 and all(len(line) < 200 for line in lines), log[:3000]


def test_no_phone_number_reaches_serves_log(db, db_url, tmp_path: Path) -> None:
    # A database error that quotes a recipient's number, in a path of serve's own (the metrics
    # read logs why it failed): the counters table is replaced by a function that refuses.
    db.execute("ALTER TABLE notify_counters RENAME TO test_counters")
    db.execute(
        "CREATE FUNCTION test_refuse_counters() RETURNS TABLE (name text, labels jsonb, value bigint) "
        f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refusing recipient {NUMBER}'; END $$"
    )
    db.execute("CREATE VIEW notify_counters AS SELECT * FROM test_refuse_counters()")
    with serve_process(db_url, tmp_path, SHORT_LIMITS) as service:
        assert service.metrics.get("/metrics").status_code == 503
        wait_for(lambda: "refusing recipient" in service.stderr(), "the database's error in serve's log")
        log = service.stderr()
    assert NUMBER not in log, log[-3000:]
    assert f"refusing recipient {mask_number(NUMBER)}" in log, log[-3000:]

"""A TCP fault proxy on 127.0.0.1 for tests: sits in front of a target (the emulator) and, switched
at run time, forwards, refuses connections, swallows requests, resets after a request or answers
with a malformed HTTP response.

Modes (a connection keeps the mode it was accepted in; switching also drops live connections):
- `pass`: forward bytes both ways.
- `refuse`: nothing listens, so connects are refused; the port stays reserved by a bound socket
  that does not listen, and `pass` (or any other mode) listens on the same port again.
- `blackhole`: accept and read, never answer.
- `reset_after_request`: read one whole request, then close with a TCP reset.
- `garbage`: read one whole request, answer `garbage` (default: a malformed status line), close.

Bounded: daemon threads only, loopback only, and `close()` (or leaving the `with`) closes every socket.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit

MODES = ("pass", "refuse", "blackhole", "reset_after_request", "garbage")
BAD_STATUS_LINE = b"HTTP/1.1 two-hundred OK?\r\nContent-Type: application/json\r\n\r\n{}"
REQUEST_READ_TIMEOUT_S = 5.0
_CHUNK = 65536


class FaultProxy:
    """A switchable TCP proxy in front of `target_url` (http://host:port); use as a context manager."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        if target.hostname is None or target.port is None:
            raise ValueError(f"target needs a host and a port: {target_url!r}")
        self.target = (target.hostname, target.port)
        self.garbage = BAD_STATUS_LINE
        self.accepted = 0  # connections accepted, whatever the mode
        self._mode = "pass"
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._closed = False
        self._socket = self._bind(0)
        self.port: int = self._socket.getsockname()[1]
        self._socket.listen(64)
        self._acceptor = self._start_acceptor(self._socket)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch mode. Live connections are dropped, so what comes next meets the new mode."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {MODES}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the proxy is closed")
            previous, self._mode = self._mode, mode
            live, self._live = self._live, set()
        for sock in live:
            _close(sock)
        if mode == "refuse" and previous != "refuse":
            self._stop_acceptor()
            # Hold the port with a bound socket that does not listen: connects are refused, and
            # no other program can take the port before listening resumes.
            self._socket = self._bind(self.port)
        elif previous == "refuse" and mode != "refuse":
            self._socket.listen(64)
            self._acceptor = self._start_acceptor(self._socket)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live, self._live = self._live, set()
        for sock in live:
            _close(sock)
        self._stop_acceptor()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- listening

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def _start_acceptor(self, listener: socket.socket) -> threading.Thread:
        listener.settimeout(0.05)  # lets the accept loop notice a stop
        thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"fault-proxy-{self.port}", daemon=True
        )
        thread.start()
        return thread

    def _stop_acceptor(self) -> None:
        _close(self._socket)
        if self._acceptor.is_alive() and self._acceptor is not threading.current_thread():
            self._acceptor.join(timeout=2)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed: refuse mode or close()
                return
            client.settimeout(None)
            with self._lock:
                if self._closed:
                    _close(client)
                    return
                self.accepted += 1
                mode = self._mode
                self._live.add(client)
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    # -- one connection

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == "pass":
                self._forward(client)
            elif mode == "blackhole":
                while client.recv(_CHUNK):
                    pass
            elif mode == "reset_after_request":
                _read_request(client)
                _reset(client)
            elif mode == "garbage":
                _read_request(client)
                client.sendall(self.garbage)
        except OSError:
            pass  # the client or set_mode() closed the socket: nothing left to do
        finally:
            self._forget(client)

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target, timeout=REQUEST_READ_TIMEOUT_S)
        upstream.settimeout(None)
        with self._lock:
            self._live.add(upstream)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        try:
            _pump(client, upstream)
            back.join()
        finally:
            self._forget(upstream)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)
        _close(sock)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until the source ends, then end the sink's direction too."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _read_request(sock: socket.socket) -> bytes:
    """One HTTP/1.1 request: its head and a Content-Length body (enough for httpx and aiohttp)."""
    sock.settimeout(REQUEST_READ_TIMEOUT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(_CHUNK)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(body) < length:
        chunk = sock.recv(_CHUNK)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: linger on, timeout zero."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _close(sock: socket.socket) -> None:
    # shutdown first: it wakes a thread blocked in recv on this socket, close alone does not
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()

"""A second HTTP listener in the service's own event loop (the metrics port).

It is a uvicorn server like the webhook one, with the same header limits (protocol.py), started
and stopped by the webhook app's lifespan, so every process that serves webhooks (one per
`--workers`) serves it too, and `serve` stays one process to run and supervise. The socket is
bound here rather than by uvicorn, so that a port in use is a one-line error, and so that several
worker processes can share the port (SO_REUSEPORT: the kernel spreads scrapes among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from notify_pipeline.service.config import ServeLimits, ServiceConfigError
from notify_pipeline.service.protocol import LimitedHttpToolsProtocol


class _Secondary(uvicorn.Server):
    """The webhook server owns SIGINT and SIGTERM; this one stops when its lifespan says so."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on host:port, or ServiceConfigError saying what to change."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ServiceConfigError(
            f"NOTIFY_METRICS_HOST {host!r} is not an address here: {exc.strerror or exc}"
        ) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServiceConfigError(
            f"cannot listen for /metrics on {host}:{port} ({exc.strerror or exc}): set NOTIFY_METRICS_PORT "
            "(or --metrics-port) to a free port, or 0 for no metrics listener"
        ) from exc
    sock.setblocking(False)
    return sock


class Listener:
    def __init__(self, app, sock: socket.socket, limits: ServeLimits) -> None:
        config = uvicorn.Config(
            app,
            http=LimitedHttpToolsProtocol.with_limits(limits),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level=None,
        )
        self.server = _Secondary(config)
        self.sock = sock
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
                raise ServiceConfigError("the metrics listener stopped at start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task

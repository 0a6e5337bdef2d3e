"""uvicorn's httptools protocol with a deadline and a size cap on each request's headers.

uvicorn has neither: httptools accumulates a header of any length, and `timeout_keep_alive` is
only armed after a first response, so a connection that opens and sends nothing (or a header a
byte at a time) is held for ever. Here a deadline is armed when a connection opens, and when a
request begun on a kept-alive one is not whole after its first read; it is cancelled when the
headers are complete. A connection that misses it is closed (408 if it had started a request).
The bytes a request's headers take are counted as they arrive: beyond the cap the answer is 431
and the connection is closed, so the parser never buffers more than the cap and one read
(256 KiB).

The limits come from the environment (ServeLimits.from_env, read once per process), so uvicorn
can import this class by name in each worker process; `with_limits` makes one with given limits.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from notify_pipeline.service.config import ServeLimits


def _answer(status: bytes, text: bytes) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: ",
            str(len(text)).encode(),
            b"\r\n\r\n",
            text,
        )
    )


TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers too large\n")
TOO_SLOW = _answer(b"408 Request Timeout", b"request headers not received in time\n")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ServeLimits | None] = None  # None: from the environment at the first connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = ServeLimits.from_env()
        self._max_header_bytes = cls.limits.max_header_bytes
        self._header_timeout_s = cls.limits.header_timeout_s
        self._reading_headers = False
        self._header_bytes = 0  # raw bytes received since the request began, while headers are incomplete
        self._header_deadline: asyncio.TimerHandle | None = None
        self._refused = False

    @classmethod
    def with_limits(cls, limits: ServeLimits) -> type[LimitedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"limits": limits})

    # -- the headers' deadline ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_headers = True
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self._header_timeout_s, self._headers_too_slow)

    def _end_headers(self) -> None:
        self._reading_headers = False
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._header_bytes and not answering:
            self._refuse(TOO_SLOW)
        else:  # nothing was asked (or a pipelined answer is being written): just close
            self._refused = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_headers()
        super().connection_lost(exc)

    # -- the headers' size --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._refused:  # by on_headers_complete, during this read
            self._refuse(TOO_LARGE)
        elif self._reading_headers:
            # Still inside the headers after this read: all of it went to the parser's buffers.
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(TOO_LARGE)
            else:
                # A request begun on a kept-alive connection gets its deadline here, at the end of
                # its first read: most requests' headers are whole by then and need no timer.
                self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._reading_headers = True
            self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._end_headers()
        # Headers that arrived within one read were not counted by data_received: the parsed size
        # decides, before the app sees the request.
        parsed = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if parsed > self._max_header_bytes:
            self._refused = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        self._end_headers()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

"""Async client for the Cloud API: send a message, list message templates.

httpx's API over a swappable transport. The default is aiohttp's connection pool through
httpx-aiohttp, because plain httpx.AsyncClient slows down sharply with many requests in flight
(encode/httpx#3215); benchmarks/transport.py measures both against the emulator. The access token
travels only in the Authorization header and never appears in repr, logs or errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from notify_pipeline.whatsapp.errors import ErrorClass, classify
from notify_pipeline.whatsapp.results import ApiError, SendResult

Transport = Literal["aiohttp", "httpx", "aiohttp-native"]
DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"


@dataclass(frozen=True)
class ClientSettings:
    base_url: str = DEFAULT_BASE_URL
    api_version: str = DEFAULT_API_VERSION
    phone_number_id: str = ""
    access_token: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_connections: int = 100
    transport: Transport = "aiohttp"


def _make_transport(kind: Transport, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    if kind in ("aiohttp", "aiohttp-native"):  # native: httpx still lists templates
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits)
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits)
    raise ValueError(f"unknown transport {kind!r}: use 'aiohttp', 'aiohttp-native' or 'httpx'")


class CloudApiClient:
    """One sender phone number's view of the Cloud API. Use as an async context manager."""

    def __init__(self, settings: ClientSettings) -> None:
        if not settings.access_token:
            raise ValueError("no access token: set WHATSAPP_ACCESS_TOKEN")
        self.settings = settings
        limits = httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        )
        timeout = httpx.Timeout(
            settings.read_timeout_s, connect=settings.connect_timeout_s, pool=settings.read_timeout_s
        )
        self._headers = {
            "Authorization": f"Bearer {settings.access_token}",
            "Content-Type": "application/json",
        }
        self._http = httpx.AsyncClient(
            base_url=f"{settings.base_url.rstrip('/')}/{settings.api_version}/",
            headers=self._headers,
            timeout=timeout,
            transport=_make_transport(settings.transport, limits),
        )
        self._messages_url = (
            f"{settings.base_url.rstrip('/')}/{settings.api_version}/{settings.phone_number_id}/messages"
        )
        self._native: Any = None  # aiohttp session for "aiohttp-native", made inside the running loop

    def __repr__(self) -> str:
        return f"CloudApiClient(base_url={self.settings.base_url!r}, phone_number_id={self.settings.phone_number_id!r})"

    async def __aenter__(self) -> CloudApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._native is not None:
            await self._native.close()

    async def send(self, payload: dict[str, Any]) -> SendResult:
        """POST one message. Never raises for API, HTTP or network failures: they come back typed."""
        if self.settings.transport == "aiohttp-native":
            return await self._send_native(payload)
        started = time.perf_counter()
        try:
            response = await self._http.post(f"{self.settings.phone_number_id}/messages", json=payload)
        except httpx.TimeoutException as exc:
            return SendResult(latency_s=time.perf_counter() - started, error=_network_error("timeout", exc))
        except httpx.TransportError as exc:
            return SendResult(
                latency_s=time.perf_counter() - started, error=_network_error("connection", exc)
            )
        latency = time.perf_counter() - started
        return parse_send_response(response.status_code, response.content, latency)

    async def _send_native(self, payload: dict[str, Any]) -> SendResult:
        """The send on a bare aiohttp session: the same request and parsing without httpx's
        per-request layer, which measured ~40 % of a busy sender's CPU (see the README)."""
        import aiohttp

        if self._native is None:
            self._native = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=self.settings.connect_timeout_s, sock_read=self.settings.read_timeout_s
                ),
            )
        started = time.perf_counter()
        try:
            async with self._native.post(self._messages_url, data=json.dumps(payload).encode()) as response:
                content, status = await response.read(), response.status
        except TimeoutError as exc:
            return SendResult(latency_s=time.perf_counter() - started, error=_network_error("timeout", exc))
        except aiohttp.ClientError as exc:
            kind = "timeout" if isinstance(exc, aiohttp.ServerTimeoutError) else "connection"
            return SendResult(latency_s=time.perf_counter() - started, error=_network_error(kind, exc))
        return parse_send_response(status, content, time.perf_counter() - started)

    async def list_templates(self, waba_id: str, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """Every message template of the business account, following Meta's `after` cursors."""
        params: dict[str, Any] = {"limit": page_size}
        while True:
            response = await self._http.get(f"{waba_id}/message_templates", params=params)
            body = _json_or_none(response.content)
            if (
                response.status_code != 200
                or not isinstance(body, dict)
                or not isinstance(body.get("data"), list)
            ):
                raise TemplateListError(parse_error(response.status_code, response.content))
            for template in body["data"]:
                yield template
            after = (body.get("paging") or {}).get("cursors", {}).get("after")
            if not after or not (body.get("paging") or {}).get("next"):
                return
            params = {"limit": page_size, "after": after}


class TemplateListError(RuntimeError):
    def __init__(self, error: ApiError) -> None:
        super().__init__(f"listing message templates failed: {error.describe()}")
        self.error = error


def _network_error(kind: str, exc: Exception) -> ApiError:
    text = str(exc) or type(exc).__name__
    return ApiError(ErrorClass.TRANSIENT, f"{kind}: {text}", kind=kind)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def parse_send_response(status: int, content: bytes, latency_s: float) -> SendResult:
    """Turn an HTTP answer to a send into a SendResult (pure: tested without a server)."""
    if status != 200:
        return SendResult(latency_s=latency_s, http_status=status, error=parse_error(status, content))
    body = _json_or_none(content)
    try:
        message = body["messages"][0]
        wamid = message["id"]
        if not isinstance(wamid, str) or not wamid:
            raise TypeError("empty message id")
    except (TypeError, KeyError, IndexError) as exc:
        # Meta may have accepted the message; a retry can duplicate it, losing it is worse.
        error = ApiError(
            ErrorClass.TRANSIENT,
            f"HTTP 200 without a message id ({type(exc).__name__}): {content[:200]!r}",
            http_status=status,
            kind="bad_response",
        )
        return SendResult(latency_s=latency_s, http_status=status, error=error)
    contacts = body.get("contacts") or [{}]
    return SendResult(
        latency_s=latency_s,
        http_status=status,
        wamid=wamid,
        wa_id=(contacts[0] or {}).get("wa_id"),
        message_status=message.get("message_status"),
    )


def parse_error(status: int, content: bytes) -> ApiError:
    """Meta's error body into an ApiError; anything else by its HTTP status."""
    body = _json_or_none(content)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # A proxy page, an empty 429/503, a truncated body: nothing says the request was wrong.
        snippet = content[:120].decode("utf-8", "replace").strip() or "empty body"
        return ApiError(
            ErrorClass.TRANSIENT,
            f"HTTP {status} without a Meta error body: {snippet}",
            http_status=status,
            kind="http",
        )
    code = error.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    data = error.get("error_data") if isinstance(error.get("error_data"), dict) else {}
    subcode = error.get("error_subcode")
    return ApiError(
        error_class=classify(code, status),
        message=str(error.get("message") or f"HTTP {status}"),
        code=code,
        details=data.get("details") if isinstance(data.get("details"), str) else None,
        http_status=status,
        subcode=subcode if isinstance(subcode, int) else None,
        fbtrace_id=error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None,
        kind="meta" if code is not None else "http",
    )

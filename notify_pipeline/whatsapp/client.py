"""Async client for the Cloud API: send a message, list message templates.

httpx is the Graph API client (templates, the reachability probe). Sends, the hot path, go by
default on a bare aiohttp session ("aiohttp-native"): the same request and the same parsing
without httpx's per-request layer, which cost about 40 % of a busy sender's CPU and made the
default path 0.62x a bare queue with aiohttp (issue 21). `WHATSAPP_HTTP_TRANSPORT` may choose
httpx's API for sends too, over aiohttp's pool ("aiohttp", through httpx-aiohttp) or httpx's own
("httpx", which slows down sharply with many requests in flight: encode/httpx#3215);
bench/transport_compare.py measures them against the emulator. The access token travels only in
the Authorization header and never appears in repr, logs or errors.

A send never raises for what happens on the wire: every failure comes back as a typed ApiError.
Network failures are split by whether the request may have reached Meta (see `failure_kind`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from notify_pipeline.whatsapp.errors import ErrorClass, classify
from notify_pipeline.whatsapp.results import ApiError, SendResult
from notify_pipeline.whatsapp.transports import DEFAULT_TRANSPORT, Transport

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
    transport: Transport = DEFAULT_TRANSPORT
    probe_timeout_s: float = 3.0  # the whole reachability probe: connect, send and read


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
        body = json.dumps(payload).encode()  # outside the try: a payload bug is not a wire failure
        started = time.perf_counter()
        try:
            if self.settings.transport == "aiohttp-native":
                status, content = await self._post_native(body)
            else:
                response = await self._http.post(f"{self.settings.phone_number_id}/messages", content=body)
                status, content = response.status_code, response.content
        except Exception as exc:  # the sender task must never die of a wire failure
            error = network_error(exc, self.settings.access_token)
            return SendResult(latency_s=time.perf_counter() - started, error=error)
        return parse_send_response(status, content, time.perf_counter() - started)

    async def _post_native(self, body: bytes) -> tuple[int, bytes]:
        """The POST on a bare aiohttp session: the same request without httpx's per-request
        layer, which measured ~40 % of a busy sender's CPU (see the README)."""
        import aiohttp

        if self._native is None:
            self._native = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
                timeout=aiohttp.ClientTimeout(
                    # connect bounds the wait for a pooled connection too, like httpx's pool timeout
                    connect=self.settings.read_timeout_s,
                    sock_connect=self.settings.connect_timeout_s,
                    sock_read=self.settings.read_timeout_s,
                ),
            )
        async with self._native.post(self._messages_url, data=body) as response:
            return response.status, await response.read()

    async def probe(self) -> bool:
        """Whether the API answers healthily: one cheap GET of the sender number's node with short
        timeouts. True for Graph's JSON answer below HTTP 500 (an error about the token or the id
        included: Graph itself answered). False for a transport failure, a 5xx, or an answer that
        is not JSON (a proxy's page): the API is still down. The drain's circuit breaker uses it to
        learn when the API is back."""
        try:
            response = await self._http.get(
                self.settings.phone_number_id, timeout=httpx.Timeout(self.settings.probe_timeout_s)
            )
        except Exception:  # a probe answers yes or no, it never raises
            return False
        return healthy_answer(response.status_code, response.content)

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


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first (bounded, cycle-safe)."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in links and len(links) < 10:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def _native_cause(exc: BaseException) -> BaseException | None:
    """The first aiohttp exception in the chain, if any."""
    import aiohttp

    return next((link for link in _chain(exc) if isinstance(link, aiohttp.ClientError)), None)


def failure_kind(exc: BaseException) -> str:
    """`connection` when the request surely never left, else `timeout_ambiguous`.

    aiohttp's own exception decides when there is one: httpx-aiohttp maps every aiohttp
    ClientConnectionError (a server disconnect after the request was written included) to
    httpx.ConnectTimeout, which would make an ambiguous failure look like one that never left.
    Anything not known to happen before the request is written counts as ambiguous: Meta may
    have accepted the message.
    """
    import aiohttp

    native = _native_cause(exc)
    if native is not None:
        before = (
            aiohttp.ClientConnectorError,  # refused, DNS, TLS, proxy connect
            aiohttp.ConnectionTimeoutError,  # connect or pooled-connection wait timed out
            aiohttp.ClientHttpProxyError,  # the proxy refused the tunnel
            aiohttp.InvalidURL,
        )
        return "connection" if isinstance(native, before) else "timeout_ambiguous"
    before = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
    unsendable = (httpx.UnsupportedProtocol, httpx.InvalidURL)
    return "connection" if isinstance(exc, before + unsendable) else "timeout_ambiguous"


def network_error(exc: BaseException, secret: str = "") -> ApiError:
    """A transport failure as an ApiError, named by its most telling exception type. `secret`
    (the access token) is masked should an exception ever quote it."""
    kind = failure_kind(exc)
    telling = _native_cause(exc) or exc
    text = " ".join(str(telling).split()) or "no detail"  # one line: it lands in error_message
    if secret:
        text = text.replace(secret, "[token]")
    return ApiError(ErrorClass.TRANSIENT, f"{kind}: {type(telling).__name__}: {text}", kind=kind)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def healthy_answer(status: int, content: bytes) -> bool:
    """Whether an answer comes from a working Graph API: a JSON object below HTTP 500 (pure)."""
    return status < 500 and isinstance(_json_or_none(content), dict)


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

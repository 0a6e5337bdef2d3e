"""The Cloud API client under network faults, over real HTTP through a fault proxy in front of the
emulator: every transport turns every wire failure into a typed error (never an exception), tells
a request that never left (`connection`) from one that may have reached Meta (`timeout_ambiguous`),
and probe() says when the API answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient, failure_kind, network_error
from notify_pipeline.whatsapp.errors import ErrorClass
from notify_pipeline.whatsapp.messages import send_request, template_message
from notify_pipeline_tests.support.engine import client_settings
from notify_pipeline_tests.support.fault_proxy import FaultProxy

TRANSPORTS = ["aiohttp", "httpx", "aiohttp-native"]
TOKEN = "secret-token-must-not-leak"


@pytest.fixture
def proxy(emulator) -> Iterator[FaultProxy]:
    emulator.configure(limits_enabled=False)
    with FaultProxy(emulator.base_url) as running:
        yield running


def settings(emulator, proxy: FaultProxy, transport: str, **overrides) -> ClientSettings:
    values = {"connect_timeout_s": 1.0, "read_timeout_s": 0.5, "probe_timeout_s": 0.5, **overrides}
    return client_settings(emulator, base_url=proxy.url, transport=transport, **values)


def welcome(notification_id: int = 1) -> dict:
    return send_request(
        notification_id, template_message("+250788000001", "welcome_message", "en", body=["A"])
    )


def send(settings: ClientSettings):
    async def once():
        async with CloudApiClient(settings) as client:
            return await client.send(welcome())

    return asyncio.run(once())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pass_mode_forwards_to_the_emulator(emulator, proxy, transport) -> None:
    result = send(settings(emulator, proxy, transport))
    assert result.ok and result.wamid.startswith("wamid.")
    assert emulator.stats()["total"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_connection_never_left(emulator, proxy, transport) -> None:
    proxy.set_mode("refuse")
    result = send(settings(emulator, proxy, transport))
    assert (result.error.kind, result.error.label) == ("connection", "connection"), result.error.message
    assert result.error.error_class is ErrorClass.TRANSIENT
    assert emulator.stats()["total"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["blackhole", "reset_after_request", "garbage"])
def test_a_request_that_may_have_left_is_ambiguous(emulator, proxy, transport, mode) -> None:
    proxy.set_mode(mode)
    result = send(settings(emulator, proxy, transport, access_token=TOKEN))
    assert not result.ok
    assert (result.error.kind, result.error.label) == ("timeout_ambiguous", "timeout_ambiguous"), (
        result.error.message
    )
    assert result.error.error_class is ErrorClass.TRANSIENT and result.error.retryable
    assert TOKEN not in result.error.message + result.error.describe()
    assert proxy.accepted >= 1, "the request reached the proxy"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nno colon here\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b'{"messages": [{"id": "wamid.tru',
        b"\x00\x01\x02 not http at all\r\n\r\n",
        b"",
    ],
    ids=["bad_header", "truncated_body", "binary", "empty"],
)
def test_malformed_answers_are_ambiguous_not_raised(emulator, proxy, transport, answer: bytes) -> None:
    proxy.garbage = answer
    proxy.set_mode("garbage")
    result = send(settings(emulator, proxy, transport))
    assert result.error.kind == "timeout_ambiguous", result.error.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_host_that_does_not_resolve_is_a_connection_error(emulator, transport) -> None:
    result = send(client_settings(emulator, base_url="http://api.notify-test.invalid", transport=transport))
    assert result.error.kind == "connection", result.error.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_probe_is_false_while_refused_and_true_once_the_api_answers(emulator, proxy, transport) -> None:
    async def scenario() -> list[bool]:
        seen = []
        async with CloudApiClient(settings(emulator, proxy, transport)) as client:
            seen.append(await client.probe())
            assert (await client.send(welcome())).ok
            proxy.set_mode("refuse")
            seen.append(await client.probe())
            assert (await client.send(welcome())).error.kind == "connection"
            proxy.set_mode("blackhole")
            seen.append(await client.probe())
            proxy.set_mode("pass")
            seen.append(await client.probe())
            assert (await client.send(welcome())).ok, "the same client sends again after the outage"
        return seen

    assert asyncio.run(scenario()) == [True, False, False, True]


def test_probe_counts_any_http_status_as_reachable(emulator, proxy) -> None:
    async def probe(phone_number_id: str, token: str) -> bool:
        settings_ = settings(emulator, proxy, "aiohttp", phone_number_id=phone_number_id, access_token=token)
        async with CloudApiClient(settings_) as client:
            return await client.probe()

    assert asyncio.run(probe("no-such-number", "wrong-token"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unexpected_exception_is_ambiguous_and_names_its_type(emulator, transport, monkeypatch) -> None:
    class Boom(Exception):
        pass

    async def explode(*args, **kwargs):
        raise Boom(f"something odd near Bearer {TOKEN}")

    async def once():
        async with CloudApiClient(
            client_settings(emulator, transport=transport, access_token=TOKEN)
        ) as client:
            monkeypatch.setattr(client._http, "post", explode)
            monkeypatch.setattr(client, "_post_native", explode)
            return await client.send(welcome())

    error = asyncio.run(once()).error
    assert error.kind == "timeout_ambiguous" and "Boom" in error.message
    assert TOKEN not in error.message


def _mapped(native: BaseException, mapped: type[Exception]) -> Exception:
    """An httpx exception raised from an aiohttp one, as httpx-aiohttp does."""
    try:
        raise mapped("mapped") from native
    except Exception as exc:
        return exc


def _connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), "connection"),
        (httpx.ConnectTimeout("slow connect"), "connection"),
        (httpx.PoolTimeout("no free connection"), "connection"),
        (httpx.ReadTimeout("slow answer"), "timeout_ambiguous"),
        (httpx.WriteTimeout("slow upload"), "timeout_ambiguous"),
        (httpx.RemoteProtocolError("Server disconnected"), "timeout_ambiguous"),
        (httpx.ReadError("reset"), "timeout_ambiguous"),
        (_connector_error(), "connection"),
        (aiohttp.ConnectionTimeoutError("connect"), "connection"),
        (aiohttp.SocketTimeoutError("read"), "timeout_ambiguous"),
        (aiohttp.ServerDisconnectedError(), "timeout_ambiguous"),
        (aiohttp.ClientPayloadError("truncated"), "timeout_ambiguous"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "timeout_ambiguous"),
        # httpx-aiohttp maps every ClientConnectionError to ConnectTimeout: aiohttp's own decides.
        (_mapped(aiohttp.ServerDisconnectedError(), httpx.ConnectTimeout), "timeout_ambiguous"),
        (_mapped(_connector_error(), httpx.ConnectError), "connection"),
        (_mapped(aiohttp.ConnectionTimeoutError("pool"), httpx.TimeoutException), "connection"),
        (TimeoutError(), "timeout_ambiguous"),
        (RuntimeError("anything else"), "timeout_ambiguous"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_failure_kinds(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind
    error = network_error(exc)
    assert error.kind == kind and error.message.startswith(f"{kind}: ")

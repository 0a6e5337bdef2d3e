"""Requests per second the emulator's send endpoint serves on one CPU core.

Starts `notify-pipeline emulator --no-limits` pinned to one core (taskset), drives it from this
process pinned to another core with N requests in flight (one per keep-alive connection), and
prints JSON. The server's CPU use over the measured window is reported too: near 100 % means the
emulator is the bottleneck; `rps_per_server_cpu_second` estimates what one busy core serves.

Two load generators: `raw` (default; HTTP/1.1 over asyncio protocols on uvloop, several times
cheaper per request than a full client, so the server saturates first) and `aiohttp` (a real
client library; on one core it tops out near 4,000 req/s, below the server, so it measures itself).

    .venv/bin/python -m notify_pipeline.bench.emulator_throughput --duration 10 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import aiohttp
import uvloop

from notify_pipeline.bench import pinning
from notify_pipeline.bench.emulator_process import EmulatorProcess
from notify_pipeline.bench.options import BENCH_TOKEN
from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID


def _payload(kind: str, n: int) -> bytes:
    to = f"+2507{n % 50_000:08d}"
    if kind == "text":
        body = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": f"Message {n}"}}
    else:
        body = {
            "messaging_product": "whatsapp",
            "to": to,
            "type": "template",
            "biz_opaque_callback_data": f"bench-{n}",
            "template": {
                "name": "order_shipped",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": f"SKB-{n}"},
                            {"type": "text", "text": "tomorrow"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": f"SKB-{n}"}],
                    },
                ],
            },
        }
    return json.dumps(body).encode()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _RawConnection(asyncio.Protocol):
    """One keep-alive connection sending one request at a time and timing each answer."""

    def __init__(self, requests: list[bytes], offset: int, step: int, run: dict) -> None:
        self._requests, self._n, self._step, self._run = requests, offset, step, run
        self._buffer = b""
        self._started = 0.0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._send()

    def _send(self) -> None:
        if self._run["stop"]:
            self._transport.close()
            return
        self._started = time.perf_counter()
        self._transport.write(self._requests[self._n % len(self._requests)])  # type: ignore[attr-defined]
        self._n += self._step

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[:end].lower()
        at = head.find(b"content-length:")
        length = (
            int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None]) if at >= 0 else 0
        )
        if len(self._buffer) < end + 4 + length:
            return
        status = int(self._buffer[9:12])
        self._buffer = self._buffer[end + 4 + length :]
        if self._run["measuring"]:
            self._run["ok" if status == 200 else "error"] += 1
            self._run["latencies"].append(time.perf_counter() - self._started)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive_raw(
    url: str, kind: str, concurrency: int, warmup_s: float, duration_s: float, server_pid: int | None
) -> dict:
    host_port = url.split("/")[2]
    host, port = host_port.split(":")
    path = "/" + url.split("/", 3)[3]
    requests = []
    for n in range(10_000):
        body = _payload(kind, n)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    run: dict = {"stop": False, "measuring": False, "ok": 0, "error": 0, "latencies": []}
    loop = asyncio.get_running_loop()
    connections = []
    for i in range(concurrency):
        _, protocol = await loop.create_connection(
            lambda i=i: _RawConnection(requests, i, concurrency, run), host, int(port)
        )
        connections.append(protocol)
    return await _measure(
        run, warmup_s, duration_s, server_pid, kind, concurrency, [c.done for c in connections]
    )


async def _measure(
    run: dict,
    warmup_s: float,
    duration_s: float,
    server_pid: int | None,
    kind: str,
    concurrency: int,
    waits: list,
) -> dict:
    await asyncio.sleep(warmup_s)
    run["measuring"] = True
    cpu_before = _cpu_seconds(server_pid) if server_pid else None
    started = time.perf_counter()
    await asyncio.sleep(duration_s)
    run["measuring"] = False
    elapsed = time.perf_counter() - started
    cpu_used = _cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before is not None else None
    run["stop"] = True
    await asyncio.wait_for(asyncio.gather(*waits), 30)
    return _result(run, elapsed, cpu_used, kind, concurrency)


def _result(run: dict, elapsed: float, cpu_used: float | None, kind: str, concurrency: int) -> dict:
    latencies = sorted(run["latencies"])
    total = run["ok"] + run["error"]
    result = {
        "kind": kind,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "requests": total,
        "errors": run["error"],
        "rps": round(total / elapsed),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
    }
    if cpu_used is not None:
        result["server_cpu_share"] = round(cpu_used / elapsed, 3)
        result["rps_per_server_cpu_second"] = round(total / cpu_used) if cpu_used else None
    return result


async def _drive_aiohttp(
    url: str, kind: str, concurrency: int, warmup_s: float, duration_s: float, server_pid: int | None
) -> dict:
    headers = {"Authorization": f"Bearer {BENCH_TOKEN}", "Content-Type": "application/json"}
    payloads = [_payload(kind, n) for n in range(10_000)]
    run: dict = {"stop": False, "measuring": False, "ok": 0, "error": 0, "latencies": []}

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        while not run["stop"]:
            started = time.perf_counter()
            async with session.post(url, data=payloads[n % len(payloads)], headers=headers) as resp:
                await resp.read()
            if run["measuring"]:
                run["ok" if resp.status == 200 else "error"] += 1
                run["latencies"].append(time.perf_counter() - started)
            n += concurrency

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        tasks = [asyncio.create_task(worker(session, i)) for i in range(concurrency)]
        return await _measure(run, warmup_s, duration_s, server_pid, kind, concurrency, tasks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m notify_pipeline.bench.emulator_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--kind", choices=("template", "text"), default="template")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    args = parser.parse_args(argv)

    os.sched_setaffinity(0, {args.client_core})
    with EmulatorProcess(BENCH_TOKEN, port=args.port, core=args.server_core) as emulator:
        if not emulator.running():  # another server answered on that port
            raise RuntimeError(f"the emulator exited: port {emulator.port} is taken")
        url = f"{emulator.base_url}/v23.0/{DEFAULT_PHONE_NUMBER_ID}/messages"
        drive = _drive_raw if args.client == "raw" else _drive_aiohttp
        runner = uvloop.run if args.client == "raw" else asyncio.run
        result = runner(drive(url, args.kind, args.concurrency, args.warmup, args.duration, emulator.pid))
    result["client"] = args.client
    result["server"] = (
        "uvicorn (uvloop, httptools), 1 worker, pinned with taskset"
        if pinning.cores() is not None
        else "uvicorn, not pinned"
    )
    result["server_core"], result["client_core"] = args.server_core, args.client_core
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

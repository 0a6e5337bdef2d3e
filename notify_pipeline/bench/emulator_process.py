"""The emulator in a process of its own (`notify-pipeline emulator`), and its control API.

A separate process, pinned to its own core, is the honest setup: the emulator's CPU time is not
charged to the sender, as Meta's would not be. Between measurements the bench reconfigures it over
`PATCH /_emulator/config` and clears its records with `POST /_emulator/reset`.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

import httpx

from notify_pipeline.bench import pinning

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorControl:
    """The emulator's control API (/_emulator/...) over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # trust_env=False: a proxy in the environment must not capture loopback calls.
        self._http = httpx.Client(base_url=f"{base_url}/_emulator", trust_env=False, timeout=60)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def healthy(self) -> bool:
        try:
            return self._http.get("/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "/config", json=changes)

    def reset(self) -> None:
        """Clear records and limiter state, keeping the configuration."""
        self._call("POST", "/reset", json={"keep_config": True})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def messages(self, limit: int = 1_000_000) -> list[dict[str, Any]]:
        """Accepted messages, oldest first (with `received_at`, unix seconds)."""
        return self._call("GET", "/messages", params={"limit": limit})["data"]


class EmulatorProcess:
    """`notify-pipeline emulator` on a free loopback port, pinned to the emulator core; a context manager."""

    def __init__(
        self, token: str, *, pin: bool = True, port: int | None = None, core: int | None = None
    ) -> None:
        self.token = token
        self.pin = pin
        self.core = core  # None: the emulator core of pinning.cores()
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: a pipe nobody reads would block the emulator once it filled up.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.control = EmulatorControl(self.base_url)

    def start(self) -> EmulatorProcess:
        command = [
            *pinning.command_prefix(self.pin, self.core),
            sys.executable,
            "-m",
            "notify_pipeline.cli.main",
            "emulator",
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--no-limits",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.control.healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                problem = (
                    f"exited at start: {self._log_tail()}"
                    if self._process.poll() is not None
                    else f"did not answer on {self.base_url} within {START_TIMEOUT_S:.0f} s"
                )
                self.stop()
                raise RuntimeError(f"the emulator {problem}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        self.control.close()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._log.close()

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-500:]

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

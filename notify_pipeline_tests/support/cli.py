"""The `notify-pipeline` console script from this virtualenv, run as a user runs it: a separate
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "notify-pipeline")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )

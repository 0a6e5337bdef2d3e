"""A loopback emulator of Meta's WhatsApp Business Cloud API, for development, tests and benchmarks.

Serves the send endpoint and the template list as Graph does (bodies, error codes, rate limits),
plus a control API under /_emulator/ to inject faults, change templates and read what was sent.
Start it with `notify-pipeline emulator`, or in-process with `EmulatorServer` (tests).
"""

from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID, DEV_TOKEN, EmulatorConfig
from notify_pipeline.emulator.server import DEFAULT_API_VERSION, EmulatorServer, serve

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_PHONE_NUMBER_ID",
    "DEV_TOKEN",
    "EmulatorConfig",
    "EmulatorServer",
    "serve",
]

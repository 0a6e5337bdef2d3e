"""The transports the Cloud API client can send on, named once (no imports: settings reads them
at start without loading the HTTP stack). whatsapp/client.py says what each one is."""

from __future__ import annotations

from typing import Literal, get_args

Transport = Literal["aiohttp-native", "aiohttp", "httpx"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)
DEFAULT_TRANSPORT: Transport = "aiohttp-native"

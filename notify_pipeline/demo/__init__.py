"""Demo data: the template catalog the emulator serves and `seed-demo` loads."""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE_CATALOG = Path(__file__).resolve().parent / "templates.json"


def load_template_catalog(path: Path | None = None) -> list[dict]:
    """Templates in the shape of Meta's message_templates endpoint, plus our `domain` field."""
    data = json.loads((path or TEMPLATE_CATALOG).read_text())
    return data["data"] if isinstance(data, dict) else data

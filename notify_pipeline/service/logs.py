"""`serve`'s logging: every line, tracebacks included, through the one scrubber (redact.py).

uvicorn's own configuration prints a traceback as Python renders it, and an exception's text can
carry what a webhook held (a psycopg error quotes the value it refused: a recipient's number).
Here uvicorn's loggers and the root logger (the product's modules, asyncio) share one handler on
stderr whose formatter scrubs the whole formatted record, traceback included: secrets removed,
phone numbers masked.
"""

from __future__ import annotations

import logging
from typing import Any

from notify_pipeline.redact import scrub


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """A logging.config.dictConfig for uvicorn's `log_config` (applied in each worker process)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "scrubbed": {
                "()": f"{__name__}.RedactingFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "scrubbed",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }

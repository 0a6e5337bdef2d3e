"""Where the product reads its environment: every variable it knows is named here, once.

Plain functions, not a config object, so that each caller reads the environment when it runs
(tests and `notify-pipeline dev` change it between calls).
"""

from __future__ import annotations

import os
from pathlib import Path

from notify_pipeline.engine.drain_settings import LIFETIME_MINUTES
from notify_pipeline.redact import SECRET_VARIABLES
from notify_pipeline.whatsapp.transports import DEFAULT_TRANSPORT, TRANSPORTS

PACKAGE_DIR = Path(__file__).resolve().parent

# Every environment variable the product reads, with what it is for. The README's configuration
# table is checked against this mapping by a test, so the two cannot drift apart.
ENVIRONMENT: dict[str, str] = {
    "NOTIFY_DATABASE_URL": "Queue database (postgresql://...). Unset: an embedded PostgreSQL under NOTIFY_DATA_DIR.",
    "NOTIFY_DATA_DIR": "Where the embedded PostgreSQL keeps its data and logs. Default: .notify_data/ in the project.",
    "NOTIFY_EMBEDDED_PG_PORT": "TCP port of the embedded PostgreSQL on 127.0.0.1. Default: 54329, or a free port.",
    "DAGSTER_HOME": "Dagster instance directory. `notify-pipeline dev` defaults it to .notify_data/dagster_home.",
    "DAGSTER_POSTGRES_URL": "Dagster's own storage (a database of its own). Default: database notify_dagster on the queue server.",
    "NOTIFY_TEST_DATABASE_URL": "Tests only: a PostgreSQL server to test against instead of the embedded one.",
    "NOTIFY_REPORT_TIMEZONE": "Time zone of the daily report partitions (a report day is a local day). Default Africa/Kigali.",
    "NOTIFY_REPORT_START_DATE": "First day of the daily report partitions (YYYY-MM-DD). Default 2026-01-01.",
    "WHATSAPP_API_BASE_URL": "Cloud API host. Default https://graph.facebook.com; the emulator is http://127.0.0.1:8089.",
    "WHATSAPP_API_VERSION": "Graph API version in request paths. Default v23.0.",
    "WHATSAPP_PHONE_NUMBER_ID": "The sender's phone number id (Meta's id, not the number itself).",
    "WHATSAPP_ACCESS_TOKEN": "Bearer token for the Cloud API (secret). The emulator accepts this token too.",
    "WHATSAPP_WABA_ID": "WhatsApp Business Account id, for listing message templates.",
    "WHATSAPP_APP_SECRET": "App secret that signs webhooks (X-Hub-Signature-256); the emulator signs with it (secret).",
    "WHATSAPP_WEBHOOK_VERIFY_TOKEN": "The token Meta's webhook subscription handshake must present (secret); unset: the handshake is refused.",
    "NOTIFY_SERVE_HOST": "Address `notify-pipeline serve` listens on. Default 127.0.0.1.",
    "NOTIFY_SERVE_PORT": "Port of `notify-pipeline serve`. Default 8090.",
    "NOTIFY_SERVE_ALLOW_UNSIGNED": "1: `serve` accepts webhooks without checking signatures (development only; as --allow-unsigned).",
    "NOTIFY_SERVE_HEADER_TIMEOUT_S": "Seconds a connection has to send a request's headers to `serve`. Default 10.",
    "NOTIFY_SERVE_MAX_HEADER_BYTES": "Largest request line and headers `serve` reads (431 beyond). Default 32768.",
    "NOTIFY_SERVE_BODY_TIMEOUT_S": "Seconds a webhook body has to arrive whole (408 after). Default 20.",
    "NOTIFY_SERVE_MAX_BODY_BYTES": "Largest webhook body (413 beyond), at least Meta's 3 MB. Default 4194304.",
    "NOTIFY_SERVE_UNAUTHENTICATED_BYTES": "Bytes of not yet authenticated bodies `serve` holds at once (503 beyond). Default 16777216.",
    "NOTIFY_METRICS_HOST": "Address `serve` answers GET /metrics on (never the webhook port). Default 127.0.0.1.",
    "NOTIFY_METRICS_PORT": "Port of `serve`'s /metrics listener; 0: none. Default 8091.",
    "NOTIFY_METRICS_CACHE_S": "Seconds a /metrics answer is reused (one database read per period). Default 5.",
    "NOTIFY_OPT_OUT_KEYWORDS": "Comma-separated replies that opt a contact out (case and spacing ignored). Default STOP, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPT OUT.",
    "NOTIFY_OPT_IN_KEYWORDS": "Comma-separated replies that opt a contact back in. Default START, UNSTOP, SUBSCRIBE, OPT IN.",
    "NOTIFICATION_WORKER_CRON_ENABLED": "false stops the sensor and any running send within a batch (kill switch).",
    "WHATSAPP_HTTP_TRANSPORT": "aiohttp-native (default: sends on a bare aiohttp session), aiohttp (httpx's API over aiohttp) or httpx: the transport of the Cloud API client's sends.",
    "NOTIFY_ALERT_WEBHOOK_URL": "Slack-compatible incoming webhook for alerts (secret). Unset: alerts are recorded only.",
    "NOTIFY_DEFAULT_QUIET_HOURS": "Quiet hours of contacts without their own, in their time zone: START-END (e.g. 21:00-08:00) or off. Default 22:00-07:00.",
    "NOTIFY_MAX_DEFERRALS": "Overrides of the code table's bound on deferrals per throttling code, e.g. 131048=5,130429=200.",
    "NOTIFY_PAGERDUTY_ROUTING_KEY": "PagerDuty Events v2 routing key (secret): alerts trigger and resolve incidents. Unset: no paging.",
    "NOTIFY_PAGERDUTY_EVENTS_URL": "PagerDuty Events v2 endpoint. Default https://events.pagerduty.com/v2/enqueue.",
    "NOTIFY_METRICS_TEXTFILE": "Prometheus textfile the metrics export writes. Default: <NOTIFY_DATA_DIR>/metrics/notify_pipeline.prom.",
    "NOTIFY_SEND_LIFETIME_MINUTES": "How long each long-lived send run serves before its successor takes over "
    f"({LIFETIME_MINUTES.low:g} to {LIFETIME_MINUTES.high:g}). Default {LIFETIME_MINUTES.default:g}.",
    "NOTIFY_PUSHGATEWAY_URL": "Prometheus Pushgateway the metrics export also pushes to (http://host:9091). Unset: no push.",
}


def project_root() -> Path:
    """The checkout this package runs from (the folder holding pyproject.toml), else the cwd."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def data_dir() -> Path:
    """Git-ignored folder for local state: embedded PostgreSQL data, Dagster home, logs."""
    configured = os.environ.get("NOTIFY_DATA_DIR")
    return Path(configured).expanduser().resolve() if configured else project_root() / ".notify_data"


def database_url_from_env() -> str | None:
    """The queue database named by the environment, or None when the embedded one should be used."""
    value = os.environ.get("NOTIFY_DATABASE_URL", "").strip()
    return value or None


def whatsapp_client_settings():
    """Cloud API client settings from the WHATSAPP_* variables."""
    from notify_pipeline.whatsapp.client import DEFAULT_API_VERSION, DEFAULT_BASE_URL, ClientSettings

    env = os.environ
    # Read (and checked) at each use: a rotated token is picked up by the next call.
    _raise_for(("WHATSAPP_API_BASE_URL", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_HTTP_TRANSPORT"))
    return ClientSettings(
        base_url=env.get("WHATSAPP_API_BASE_URL") or DEFAULT_BASE_URL,
        api_version=env.get("WHATSAPP_API_VERSION") or DEFAULT_API_VERSION,
        phone_number_id=env.get("WHATSAPP_PHONE_NUMBER_ID", ""),
        access_token=env.get("WHATSAPP_ACCESS_TOKEN", ""),
        transport=env.get("WHATSAPP_HTTP_TRANSPORT") or DEFAULT_TRANSPORT,
    )


def whatsapp_waba_id() -> str:
    """The WhatsApp Business Account id (not a secret) whose message templates a sync lists."""
    return os.environ.get("WHATSAPP_WABA_ID", "").strip()


def sender_key() -> str:
    """The sender phone number id that scopes send runs (one at a time per sender)."""
    return os.environ.get("WHATSAPP_PHONE_NUMBER_ID", "").strip() or "default"


def send_lifetime_minutes() -> float:
    """NOTIFY_SEND_LIFETIME_MINUTES: the lifetime of the send runs the sensor launches (the
    drain's LIFETIME_MINUTES gives the default and the range)."""
    raw = os.environ.get("NOTIFY_SEND_LIFETIME_MINUTES", "").strip()
    if not raw:
        return LIFETIME_MINUTES.default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not LIFETIME_MINUTES.low <= value <= LIFETIME_MINUTES.high:  # also refuses nan
        raise ValueError(
            "NOTIFY_SEND_LIFETIME_MINUTES must be a number of minutes from "
            f"{LIFETIME_MINUTES.low:g} to {LIFETIME_MINUTES.high:g}, not {raw!r}"
        )
    return value


def serve_host() -> str:
    return os.environ.get("NOTIFY_SERVE_HOST", "").strip() or "127.0.0.1"


def serve_port() -> int:
    raw = os.environ.get("NOTIFY_SERVE_PORT", "").strip() or "8090"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"NOTIFY_SERVE_PORT must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)


def metrics_host() -> str:
    return os.environ.get("NOTIFY_METRICS_HOST", "").strip() or "127.0.0.1"


def metrics_port() -> int:
    """NOTIFY_METRICS_PORT; 0 means no metrics listener."""
    raw = os.environ.get("NOTIFY_METRICS_PORT", "").strip() or "8091"
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ValueError(f"NOTIFY_METRICS_PORT must be a port number from 0 (none) to 65535, not {raw!r}")
    return int(raw)


def report_timezone() -> str:
    return os.environ.get("NOTIFY_REPORT_TIMEZONE", "").strip() or "Africa/Kigali"


def report_start_date() -> str:
    return os.environ.get("NOTIFY_REPORT_START_DATE", "").strip() or "2026-01-01"


# -- Validation ------------------------------------------------------------------------------
# Every variable with a shape is checked at start (the CLI checks them all before any command;
# `check_environment()` for other entry points), one line per bad value. A message never repeats a
# secret's value. Secrets that rotate (the token, the alert webhook URL) are read, and checked the
# same way, each time they are used.


class SettingsError(ValueError):
    """Bad environment values: one line each, none repeating a secret."""


def _url_problem(name: str, value: str, *, secret: bool = False) -> str | None:
    from urllib.parse import urlsplit

    shown = "" if secret else f", not {value[:80]!r}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name} must be an http(s):// URL with a host{shown}"
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return f"{name} must not contain spaces or control characters"
    return None


def _token_problem(name: str, value: str) -> str | None:
    if len(value) > 4096 or any(ch.isspace() or not 33 <= ord(ch) <= 126 for ch in value):
        return f"{name} must be printable ASCII without spaces, at most 4096 characters (value not shown)"
    return None


def _database_url_problem(name: str, value: str) -> str | None:
    from notify_pipeline.db import urls
    from notify_pipeline.redact import scrub

    try:
        urls.parse(value)
    except urls.DatabaseUrlError as exc:
        return f"{name}: {scrub(exc)}"
    return None


def _int_range_problem(name: str, value: str, lo: int, hi: int) -> str | None:
    if not value.isdigit() or not lo <= int(value) <= hi:
        return f"{name} must be a whole number from {lo} to {hi}, not {value[:40]!r}"
    return None


def _problem(name: str, value: str) -> str | None:
    """What is wrong with one set variable, or None."""
    if name in ("NOTIFY_DATABASE_URL", "DAGSTER_POSTGRES_URL"):
        return _database_url_problem(name, value)
    if name in ("NOTIFY_EMBEDDED_PG_PORT", "NOTIFY_SERVE_PORT"):
        return _int_range_problem(name, value, 1, 65535)
    if name == "NOTIFY_METRICS_PORT":
        return _int_range_problem(name, value, 0, 65535)
    if name == "NOTIFY_SERVE_ALLOW_UNSIGNED":
        if value not in ("0", "1"):
            return f"NOTIFY_SERVE_ALLOW_UNSIGNED must be 1 or 0, not {value[:40]!r}"
        return None
    if name.startswith(("NOTIFY_SERVE_", "NOTIFY_METRICS_CACHE")):
        from notify_pipeline.service.limits import limit_problem

        return limit_problem(name, value)
    if name == "NOTIFY_DEFAULT_QUIET_HOURS":
        from notify_pipeline.engine.quiet_hours import default_quiet_hours

        try:
            default_quiet_hours(value)
        except ValueError as exc:
            return str(exc)
        return None
    if name == "NOTIFY_REPORT_TIMEZONE":
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except (ValueError, KeyError, OSError):
            return f"NOTIFY_REPORT_TIMEZONE must be an IANA zone such as Africa/Kigali, not {value[:60]!r}"
        return None
    if name == "NOTIFY_REPORT_START_DATE":
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError:
            return f"NOTIFY_REPORT_START_DATE must be a date YYYY-MM-DD, not {value[:40]!r}"
        return None
    if name in ("WHATSAPP_API_BASE_URL", "NOTIFY_PAGERDUTY_EVENTS_URL", "NOTIFY_PUSHGATEWAY_URL"):
        return _url_problem(name, value)
    if name == "NOTIFY_ALERT_WEBHOOK_URL":
        return _url_problem(name, value, secret=True)
    if name == "WHATSAPP_API_VERSION":
        import re

        if not re.fullmatch(r"v\d{1,3}\.\d{1,3}", value):
            return f"WHATSAPP_API_VERSION must look like v23.0, not {value[:40]!r}"
        return None
    if name == "WHATSAPP_HTTP_TRANSPORT":
        if value not in TRANSPORTS:
            return f"WHATSAPP_HTTP_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {value[:40]!r}"
        return None
    if name in SECRET_VARIABLES:
        return _token_problem(name, value)
    if name == "NOTIFICATION_WORKER_CRON_ENABLED":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return f"NOTIFICATION_WORKER_CRON_ENABLED must be true or false, not {value[:40]!r}"
        return None
    if name == "NOTIFY_SEND_LIFETIME_MINUTES":
        try:
            send_lifetime_minutes()
        except ValueError as exc:
            return str(exc)
    return None


def environment_problems(names: tuple[str, ...] | None = None) -> list[str]:
    """One line per set variable whose value is malformed (all known variables unless `names`)."""
    problems = []
    for name in names if names is not None else tuple(ENVIRONMENT):
        value = os.environ.get(name, "").strip()
        if value:
            problem = _problem(name, value)
            if problem:
                problems.append(problem)
    return problems


def check_environment() -> None:
    """Raise SettingsError (one line per bad value) unless every set variable is well formed."""
    _raise_for(None)


def _raise_for(names: tuple[str, ...] | None) -> None:
    problems = environment_problems(names)
    if problems:
        raise SettingsError("\n".join(problems))

"""Where the product reads its environment: every variable it knows is named here, once.

Plain functions, not a config object, so that each caller reads the environment when it runs
(tests and `notify-pipeline dev` change it between calls).
"""

from __future__ import annotations

import os
from pathlib import Path

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
    "NOTIFY_OPT_OUT_KEYWORDS": "Comma-separated replies that opt a contact out (case and spacing ignored). Default STOP, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPT OUT.",
    "NOTIFY_OPT_IN_KEYWORDS": "Comma-separated replies that opt a contact back in. Default START, UNSTOP, SUBSCRIBE, OPT IN.",
    "NOTIFICATION_WORKER_CRON_ENABLED": "false stops the sensor and any running send within a batch (kill switch).",
    "WHATSAPP_HTTP_TRANSPORT": "aiohttp (default), httpx or aiohttp-native: the HTTP transport under the Cloud API client.",
    "NOTIFY_ALERT_WEBHOOK_URL": "Slack-compatible incoming webhook for alerts (secret). Unset: alerts are recorded only.",
    "NOTIFY_PAGERDUTY_ROUTING_KEY": "PagerDuty Events v2 routing key (secret): alerts trigger and resolve incidents. Unset: no paging.",
    "NOTIFY_PAGERDUTY_EVENTS_URL": "PagerDuty Events v2 endpoint. Default https://events.pagerduty.com/v2/enqueue.",
    "NOTIFY_METRICS_TEXTFILE": "Prometheus textfile the metrics export writes. Default: <NOTIFY_DATA_DIR>/metrics/notify_pipeline.prom.",
    "NOTIFY_SEND_LIFETIME_MINUTES": "How long each long-lived send run serves before its successor takes over (1 to 1440). Default 120.",
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
    return ClientSettings(
        base_url=env.get("WHATSAPP_API_BASE_URL") or DEFAULT_BASE_URL,
        api_version=env.get("WHATSAPP_API_VERSION") or DEFAULT_API_VERSION,
        phone_number_id=env.get("WHATSAPP_PHONE_NUMBER_ID", ""),
        access_token=env.get("WHATSAPP_ACCESS_TOKEN", ""),
        transport=env.get("WHATSAPP_HTTP_TRANSPORT") or "aiohttp",
    )


def whatsapp_waba_id() -> str:
    """The WhatsApp Business Account id (not a secret) whose message templates a sync lists."""
    return os.environ.get("WHATSAPP_WABA_ID", "").strip()


def sender_key() -> str:
    """The sender phone number id that scopes send runs (one at a time per sender)."""
    return os.environ.get("WHATSAPP_PHONE_NUMBER_ID", "").strip() or "default"


def send_lifetime_minutes() -> float:
    """NOTIFY_SEND_LIFETIME_MINUTES: the lifetime of the send runs the sensor launches."""
    raw = os.environ.get("NOTIFY_SEND_LIFETIME_MINUTES", "").strip()
    if not raw:
        return 120.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 1440:  # also refuses nan
        raise ValueError(
            f"NOTIFY_SEND_LIFETIME_MINUTES must be a number of minutes from 1 to 1440, not {raw!r}"
        )
    return value


def serve_host() -> str:
    return os.environ.get("NOTIFY_SERVE_HOST", "").strip() or "127.0.0.1"


def serve_port() -> int:
    raw = os.environ.get("NOTIFY_SERVE_PORT", "").strip() or "8090"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"NOTIFY_SERVE_PORT must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)


def report_timezone() -> str:
    return os.environ.get("NOTIFY_REPORT_TIMEZONE", "").strip() or "Africa/Kigali"


def report_start_date() -> str:
    return os.environ.get("NOTIFY_REPORT_START_DATE", "").strip() or "2026-01-01"

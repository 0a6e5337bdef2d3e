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

"""The code location loads: every definition is valid, and the resources reach the database."""

from __future__ import annotations

import dagster as dg
import psycopg
import yaml

from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.workspace import load_workspace_definitions


def test_code_location_loads_and_validates(monkeypatch, db_url: str) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    defs = load_workspace_definitions()
    dg.Definitions.validate_loadable(defs)
    assert "queue_db" in defs.resources


def test_queue_database_resource_connects_with_timeouts_and_actor(db_url: str) -> None:
    resource = QueueDatabase(url=db_url, statement_timeout_ms=1234)
    with resource.connection(actor="sweep_locks_job") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
        assert conn.execute("SELECT notify_current_actor()").fetchone()[0] == "sweep_locks_job"


def test_queue_database_url_comes_from_the_environment_not_config(monkeypatch, db_url: str) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    resource = load_workspace_definitions().resources["queue_db"]
    assert isinstance(resource, QueueDatabase)
    assert isinstance(resource.url, dg.EnvVar), "never a literal URL in the definitions"
    assert resource.url.env_var_name == "NOTIFY_DATABASE_URL"

    @dg.op
    def probe(queue_db: QueueDatabase) -> int:
        with queue_db.connection() as conn:
            return conn.execute("SELECT count(*) FROM notifications").fetchone()[0]

    @dg.job(resource_defs={"queue_db": resource})
    def probe_job() -> None:
        probe()

    result = probe_job.execute_in_process()
    assert result.success
    assert result.output_for_node("probe") == 0
    config_text = str(result.dagster_run.run_config)
    assert db_url not in config_text


def test_dagster_yaml_keeps_storage_in_postgres_from_the_environment() -> None:
    instance = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}


def test_bad_resource_url_fails_with_a_clear_error() -> None:
    resource = QueueDatabase(url="postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2)
    try:
        with resource.connection():
            raise AssertionError("connected to a closed port")
    except psycopg.OperationalError as exc:
        assert "127.0.0.1" in str(exc)

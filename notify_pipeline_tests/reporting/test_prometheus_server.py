"""A real Prometheus (Debian's `prometheus` package) scraping the exposition every second with
docs/prometheus/notify-pipeline-rules.yml: 200 messages of a domain that had no series before all
fail between two scrapes, and NotifyFailureRate fires, as the failure-rate sensor does. (Before,
`increase()` read that domain's failures as 0: a series that first appears at its full value has
no earlier sample.)

Prometheus scrapes a real `notify-pipeline serve` process on its metrics listener."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from notify_pipeline.db.connect import connect
from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.engine import enqueue, welcome
from notify_pipeline_tests.support.metrics import samples
from notify_pipeline_tests.support.ports import free_port
from notify_pipeline_tests.support.prometheus_scenarios import RULES
from notify_pipeline_tests.support.service import serve_process

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (Debian's prometheus package; .ci/run installs it)",
)
DEADLINE_S = 180.0  # a slow, shared machine: Prometheus starts, scrapes and evaluates within this


class Prometheus:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with self.opener.open(f"{self.base_url}{path}{query}", timeout=10) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["data"]["result"]

    def firing(self, alert: str) -> list[dict]:
        alerts = self.get("/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alert and a["state"] == "firing"]


@contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[Prometheus]:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "notify-pipeline", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: process.poll() is None and _ready(server), "Prometheus to start", tmp_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _ready(server: Prometheus) -> bool:
    try:
        with server.opener.open(f"{server.base_url}/-/ready", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], what: str, tmp_path: Path) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            log = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"waited {DEADLINE_S:g} s for {what}; Prometheus said:\n{log}")
        time.sleep(0.2)


def fail_new_domain_at_once(db_url: str, domain: str, count: int, code: str) -> None:
    """Queue `count` messages of `domain`, claim them and fail them with `code`, in one transaction:
    no scrape sees the domain before its failures, as when a burst fails between two scrapes."""
    with connect(db_url, actor="test", autocommit=False) as conn, conn.transaction():
        ids = [enqueue(conn, welcome(f"+2507{i:08d}"), {"domain": domain}) for i in range(count)]
        conn.execute(
            "UPDATE notifications SET locked_at = now(), locked_by = 'w1' WHERE id = ANY(%s)", (ids,)
        )
        conn.execute(
            "UPDATE notifications SET status = 'failed', last_error_code = %s, locked_at = NULL WHERE id = ANY(%s)",
            (code, ids),
        )


def test_failure_rate_fires_for_a_domain_that_had_no_series_before(db, db_url, tmp_path: Path) -> None:
    # A real `serve` process, scraped on its own metrics listener (answers cached 1 s, not the default 5).
    with (
        serve_process(db_url, tmp_path, {"NOTIFY_METRICS_CACHE_S": "1"}) as serve,
        prometheus(tmp_path, f"127.0.0.1:{serve.metrics_port}") as server,
    ):
        # Several scrapes and evaluations of the quiet database first: every total at 0, no alert.
        wait_for(
            lambda: any(
                float(r["value"][1]) >= 3
                for r in server.query('count_over_time(notify_outcomes_total{outcome="failed"}[1m])')
            ),
            "three scrapes",
            tmp_path,
        )
        assert not server.firing("NotifyFailureRate")
        assert not server.query('notify_domain_outcomes_total{domain="campaigns"}')

        fail_new_domain_at_once(db_url, "campaigns", 200, "132000")
        parsed = samples(metrics.render(db))
        assert (
            parsed[("notify_failed_total", frozenset({("domain", "campaigns"), ("error_code", "132000")}))]
            == 200
        )
        verdict = BY_NAME["failure_rate"].check(db, DEFAULTS)
        assert verdict.breached and verdict.numbers["rate"] == 1.0, verdict.headline

        firing = wait_for(lambda: server.firing("NotifyFailureRate"), "NotifyFailureRate to fire", tmp_path)
        assert firing[0]["labels"]["sensor"] == "failure_rate"
        assert firing[0]["annotations"]["summary"].startswith("Failure rate 100"), firing[0]["annotations"]
        # The case: the new series appeared at its full value, and increase() on it reads 0.
        naive = server.query('sum by (domain) (increase(notify_failed_total{domain="campaigns"}[1h]))')
        assert [float(r["value"][1]) for r in naive] in ([], [0.0])

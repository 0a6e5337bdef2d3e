"""Prometheus metrics of the queue, with the operations runbook's names, so its PromQL works.

A custom collector turns one database snapshot (`metrics_sql.read_snapshot`) into metric
families; `render`, `write_textfile` (node_exporter's textfile collector) and `push` (a
Pushgateway) publish them. Nothing here keeps state between exports: every number is read from
the database, so any number of exporters agree, and a restart loses nothing.

| metric | type | labels | value |
|---|---|---|---|
| `notification_queue_depth` | gauge | `trigger="cron"` | queued rows due now, not claimed |
| `notification_queue_waiting` | gauge | | queued rows waiting for a later time (deferred, scheduled) |
| `notification_queue_in_flight` | gauge | | queued rows a worker has claimed |
| `notification_queue_oldest_due_seconds` | gauge | | how long the longest-due unclaimed row has been due |
| `notification_sent_total` | counter | `domain` | rows sent |
| `notification_failed_total` | counter | `domain`, `error_code` | rows failed, by `last_error_code` (`none` when empty) |
| `notification_worker_latency_ms` | histogram | `trigger` | duration of each send run (NOTIFY_WORKER_DONE) |
| `notification_filtered_optout` | gauge | | rows not sent because the contact opted out |
| `notification_deferred_quiet_hours` | gauge | | quiet-hours deferrals in the last minute |
| `notification_deferred` | gauge | `error_code` | deferrals and retries in the last minute, by reason or Meta code |
| `notify_delivered_total` | counter | | messages Meta reported delivered (status webhooks) |
| `notify_read_total` | counter | | messages Meta reported read |
| `notify_late_failed_total` | counter | `error_code` | messages Meta accepted, then reported failed, by Meta's code |

The `notify_*_total` counters are kept by the database (notify_counters), incremented in the
transaction that applies a status webhook: they only go up, whatever happens to the rows later.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from notify_pipeline import settings
from notify_pipeline.engine.reasons import DEFERRAL_REASONS
from notify_pipeline.reporting.metrics_sql import (
    LATENCY_BUCKETS_MS,
    STATEMENT_TIMEOUT_MS,
    Snapshot,
    read_snapshot,
)
from notify_pipeline.whatsapp.errors import throttling_codes

DEFAULT_JOB = "notify_pipeline"
TEXTFILE_NAME = "notify_pipeline.prom"
PUSH_TIMEOUT_S = 10.0

# The runbook's PromQL selects notification_queue_depth{trigger="cron"}: the prior system ran its
# worker from cron. Sensor-launched runs drain the same queue, so the label keeps that one value,
# and existing dashboards and alert rules keep matching.
QUEUE_TRIGGER = "cron"

# Reasons our own engine defers for (engine/policy.py, engine/drain.py). With Meta's throttling
# codes they are always exported, at 0 when idle, so panels and alert rules see a series rather
# than "no data".


class PushError(RuntimeError):
    """The Pushgateway could not be reached or refused the push."""


class QueueMetricsCollector(Collector):
    """Publishes one queue snapshot per collect(); `source` decides when it is read."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._source()))


def families(snap: Snapshot) -> list[Metric]:
    """The metric families of one snapshot."""
    depth = GaugeMetricFamily(
        "notification_queue_depth",
        "Queued notifications due now and not claimed (deferred and scheduled rows are not counted).",
        labels=["trigger"],
    )
    depth.add_metric([QUEUE_TRIGGER], snap.due)
    waiting = GaugeMetricFamily(
        "notification_queue_waiting",
        "Queued notifications waiting for a later time: deferred (quiet hours, limits, retries) or scheduled.",
        value=snap.waiting,
    )
    in_flight = GaugeMetricFamily(
        "notification_queue_in_flight", "Queued notifications claimed by a worker.", value=snap.in_flight
    )
    oldest = GaugeMetricFamily(
        "notification_queue_oldest_due_seconds",
        "Seconds the longest-due unclaimed notification has been due; 0 when none is due.",
        value=snap.oldest_due_s,
    )
    # Counters: a sent row stays sent and a failed row stays failed, so the counts only grow. The
    # exception is re-queueing failed rows (retry_failed_job): the drop reads as a counter reset.
    sent = CounterMetricFamily("notification_sent_total", "Notifications sent, by domain.", labels=["domain"])
    for domain, count in sorted(snap.sent.items()):
        sent.add_metric([domain], count)
    failed = CounterMetricFamily(
        "notification_failed_total",
        "Notifications failed, by domain and last_error_code (Meta's code or the engine's reason; none when empty).",
        labels=["domain", "error_code"],
    )
    for (domain, code), count in sorted(snap.failed.items()):
        failed.add_metric([domain, code], count)
    latency = HistogramMetricFamily(
        "notification_worker_latency_ms",
        "Duration of each send run in milliseconds (NOTIFY_WORKER_DONE), by what launched it.",
        labels=["trigger"],
    )
    for trigger, histogram in sorted(snap.latency.items()):
        buckets = [
            (floatToGoString(bound), count)
            for bound, count in zip(LATENCY_BUCKETS_MS, histogram.cumulative, strict=True)
        ]
        latency.add_metric([trigger], [*buckets, ("+Inf", histogram.count)], histogram.sum_ms)
    # The runbook's names below have no _total suffix, and a Prometheus counter's series always
    # ends in _total, so counters would break its queries. They are gauges: a count of rows in a
    # state (read with delta()), and counts of events in the trailing window (read as they are);
    # a window keeps the audit-log scan bounded, where a cumulative count would read it all.
    optout = GaugeMetricFamily(
        "notification_filtered_optout",
        "Notifications not sent because the contact opted out (failed, last_error_code opted_out).",
        value=snap.opted_out,
    )
    window = f"{snap.window_s:g} s"
    quiet = GaugeMetricFamily(
        "notification_deferred_quiet_hours",
        f"Deferrals for quiet hours in the contact's time zone during the last {window}.",
        value=snap.deferred_quiet_hours,
    )
    deferred = GaugeMetricFamily(
        "notification_deferred",
        f"Deferrals and retries during the last {window}, by reason or Meta error code "
        "(130429 throughput, 131056 pair limit, 131048 spam limit, pair_limit our own limiter).",
        labels=["error_code"],
    )
    counts = dict.fromkeys((*throttling_codes(), *DEFERRAL_REASONS), 0) | snap.deferred
    for code, count in sorted(counts.items()):
        deferred.add_metric([code], count)
    runbook = [depth, waiting, in_flight, oldest, sent, failed, latency, optout, quiet, deferred]
    return [*runbook, *receipts(snap)]


def receipts(snap: Snapshot) -> list[Metric]:
    """Counters of what status webhooks reported; conventional names (prometheus_client adds _total)."""
    delivered = CounterMetricFamily(
        "notify_delivered", "Messages Meta reported delivered (read implies delivered).", value=snap.delivered
    )
    read = CounterMetricFamily("notify_read", "Messages Meta reported read.", value=snap.read)
    late = CounterMetricFamily(
        "notify_late_failed",
        "Messages Meta accepted, then reported failed in a status webhook, by Meta's error code.",
        labels=["error_code"],
    )
    for code, count in sorted(snap.late_failed.items()):
        late.add_metric([code], count)
    return [delivered, read, late]


def build_registry(source: psycopg.Connection | Snapshot) -> CollectorRegistry:
    """A registry holding the queue collector: reading `source` (a connection) on each collect,
    or always publishing the same snapshot, so a file and a push carry the same numbers."""
    registry = CollectorRegistry()
    if isinstance(source, Snapshot):
        registry.register(QueueMetricsCollector(lambda: source))
    else:
        registry.register(QueueMetricsCollector(lambda: read_snapshot(source)))
    return registry


def render(conn: psycopg.Connection) -> bytes:
    """The metrics in Prometheus' text exposition format."""
    return generate_latest(build_registry(conn))


def write_textfile(conn: psycopg.Connection, path: Path | str) -> Path:
    """Write the metrics for node_exporter's textfile collector (the name must end in .prom).

    Written to a temporary file beside it, then renamed: the collector never reads half a file,
    and a failed export leaves the previous file in place (its mtime shows the staleness).
    """
    return _write(build_registry(conn), Path(path))


def push(
    conn: psycopg.Connection, gateway_url: str, job: str = DEFAULT_JOB, timeout_s: float = PUSH_TIMEOUT_S
) -> None:
    """Replace this job's metrics on a Pushgateway (HTTP PUT); PushError says why when it fails."""
    _push(build_registry(conn), gateway_url, job, timeout_s)


@dataclass(frozen=True)
class ExportResult:
    series: int
    textfile: Path | None
    pushed_to: str | None  # the gateway, password hidden; None when not pushed


def export(
    conn: psycopg.Connection,
    *,
    textfile: Path | None,
    gateway_url: str | None = None,
    job: str = DEFAULT_JOB,
    timeout_s: float = PUSH_TIMEOUT_S,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
) -> ExportResult:
    """Read one snapshot, then write it to the textfile and/or push it: both carry the same numbers.

    The file is written first, so an unreachable gateway does not cost the scrape-based path.
    """
    registry = build_registry(read_snapshot(conn, statement_timeout_ms=statement_timeout_ms))
    series = sum(len(family.samples) for family in registry.collect())
    written = _write(registry, textfile) if textfile is not None else None
    if gateway_url:
        _push(registry, gateway_url, job, timeout_s)
    return ExportResult(series, written, masked(gateway_url) if gateway_url else None)


def textfile_from_env() -> Path:
    """NOTIFY_METRICS_TEXTFILE, else <data dir>/metrics/notify_pipeline.prom."""
    configured = os.environ.get("NOTIFY_METRICS_TEXTFILE", "").strip()
    return Path(configured).expanduser() if configured else settings.data_dir() / "metrics" / TEXTFILE_NAME


def pushgateway_url_from_env() -> str | None:
    """NOTIFY_PUSHGATEWAY_URL, or None: no push."""
    return os.environ.get("NOTIFY_PUSHGATEWAY_URL", "").strip() or None


def masked(url: str) -> str:
    """The URL without a password, for messages and run metadata."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.password is None:
        return parts.geturl()
    return parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def _write(registry: CollectorRegistry, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def _push(registry: CollectorRegistry, gateway_url: str, job: str, timeout_s: float) -> None:
    shown = masked(gateway_url)
    # urllib cannot send credentials written in a URL: they travel as basic auth instead.
    parts = urllib.parse.urlsplit(gateway_url if "://" in gateway_url else f"http://{gateway_url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"Pushgateway URL {shown} is not usable: give http(s)://host:port")
    username, password = parts.username, parts.password
    if username is not None:
        netloc = parts.netloc.rpartition("@")[2]
        gateway_url = parts._replace(netloc=netloc).geturl()

    def handler(
        url: str, method: str, timeout: float | None, headers: list, data: bytes
    ) -> Callable[[], None]:
        if username is not None:
            send = basic_auth_handler(url, method, timeout, headers, data, username, password or "")
        else:
            send = default_handler(url, method, timeout, headers, data)

        def handle() -> None:
            # One line that says what failed: urllib's own errors arrive as chained tracebacks.
            try:
                send()
            except urllib.error.HTTPError as exc:
                raise PushError(
                    f"Pushgateway {shown} refused the push: HTTP {exc.code} {exc.reason}"
                ) from None
            except ValueError as exc:  # urllib: "unknown url type" and the like
                raise PushError(f"Pushgateway URL {shown} is not usable: {exc}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise PushError(
                    f"Pushgateway {shown} is unreachable ({reason or type(exc).__name__}); check "
                    f"NOTIFY_PUSHGATEWAY_URL and that the gateway runs"
                ) from None

        return handle

    push_to_gateway(gateway_url, job=job, registry=registry, timeout=timeout_s, handler=handler)

"""Prometheus metrics of the queue, from the database: counters that only go up, histograms with
stored buckets (in seconds), and gauges of the queue's shape.

A custom collector turns one database snapshot (`metrics_sql.read_snapshot`) into metric
families; `render` (the `/metrics` route of `notify-pipeline serve`), `write_textfile`
(node_exporter's textfile collector) and `push` (a Pushgateway) publish them. Nothing here keeps
state: every number is read from the database, so any number of replicas and exporters agree, and
a restart loses nothing. Counters and histograms are kept by the database (migration 0008), in the
transaction of each outcome: a stop, a resume, a retry of failed rows or a clean-up never lowers them.

The runbook's series keep their names, so its PromQL works unchanged:

| series | type | labels | value |
|---|---|---|---|
| `notification_queue_depth` | gauge | `trigger="cron"` | queued rows due now, not held by a live claim |
| `notification_queue_waiting` | gauge | | queued rows waiting for a later time (deferred, scheduled) |
| `notification_queue_in_flight` | gauge | | queued rows a live worker holds |
| `notification_queue_oldest_due_seconds` | gauge | | how long the longest-due row has been due |
| `notification_sent_total` | counter | `domain` | messages Meta accepted |
| `notification_failed_total` | counter | `domain`, `error_code` | a worker's failed verdicts (Meta's refusal or the engine's) |
| `notification_worker_latency_ms` | histogram | `trigger` | duration of each send run, in ms (NOTIFY_WORKER_DONE) |
| `notification_filtered_optout` | untyped, cumulative | | notifications not sent because the contact opted out |
| `notification_deferred_quiet_hours` | untyped, cumulative | | deferrals for quiet hours |
| `notification_deferred` | untyped, cumulative | `error_code` | deferrals and retries, by reason or Meta code |

The last three have no `_total` in the runbook, and prometheus_client writes every counter with
one, so they are exposed untyped under their exact names: read them with `increase()`/`rate()`.

Conventional names beside them (prometheus_client's counters, series `<name>_total`):

| series | type | labels | value |
|---|---|---|---|
| `notify_queue_due`, `notify_queue_waiting`, `notify_queue_claimed` | gauge | | the queue's shape (figures.py) |
| `notify_queue_oldest_due_seconds` | gauge | | as notification_queue_oldest_due_seconds |
| `notify_sent_total` | counter | `domain` | messages Meta accepted |
| `notify_failed_total` | counter | `domain`, `error_code` | a worker's failed verdicts, opt-outs and expiry apart |
| `notify_late_failed_total` | counter | `error_code` | accepted, then reported failed by a status webhook |
| `notify_delivered_total`, `notify_read_total` | counter | | status webhooks (read implies delivered) |
| `notify_receipt_confirmed_total` | counter | | sends with no answer (timeout, 502/504) that a status webhook confirmed |
| `notify_duplicate_sends_total` | counter | | notifications Meta accepted twice (a second message id), once each |
| `notify_filtered_total` | counter | `domain`, `reason`, `stage` | opt-outs: refused at send (`send`) or cancelled waiting (`queue`) |
| `notify_held_total` | counter | `domain` | rows an emergency stop held |
| `notify_expired_total` | counter | `domain` | rows past expires_at, not sent |
| `notify_cancelled_total` | counter | `domain`, `reason` | other rows stopped while waiting |
| `notify_deferred_total` | counter | `reason` | deferrals (no attempt used), by reason or Meta code |
| `notify_retried_total` | counter | `error_code` | retries (an attempt used) |
| `notify_requeued_total` | counter | `reason` | failed rows queued again (resume, retry-failed), by their old code |
| `notify_swept_total` | counter | | claims of dead workers given back |
| `notify_worker_starts_total` | counter | `trigger` | send runs started |
| `notify_contacts_opted_out_total` | counter | `reason` | contacts that opted out, by cause (`reply_keyword`, `operator`, `api`, `unknown`); once per change of mind |
| `notify_enqueue_to_accepted_seconds` | histogram | `domain` | from queueNotification to Meta's acceptance |
| `notify_meta_answer_seconds` | histogram | `answer` | Meta's answer time per send (`accepted` or `error`) |
| `notify_worker_run_seconds` | histogram | `trigger` | duration of each send run |
| `notify_sending_paused` | gauge | | 1 while queue_control is paused |
| `notify_sender_held` | gauge | `sender` | 1 per sender held after Meta refused its credentials or account |
| `notify_worker_last_active_timestamp_seconds` | gauge | | newest worker start, resume or claim (Unix s; 0: never) |
| `notify_last_status_webhook_timestamp_seconds` | gauge | | newest status webhook (Unix s; 0: none in a week) |
| `notify_receipts_awaiting` | gauge | | sends of the last 15 min, past 2 min, with no status yet |

The alert rules' series (reporting/metrics_totals.py), present from the first scrape at 0, so
increase() sees a first failure, a new domain's or a new code's:

| series | type | labels | value |
|---|---|---|---|
| `notify_outcomes_total` | counter | `outcome` | sent, failed, late_failed, filtered, held, expired, cancelled: each counter summed |
| `notify_domain_outcomes_total` | counter | `domain`, `outcome` | sent and failed per domain, from its first queued row |
| `notify_opt_outs_total` | counter | `kind` | `contact` (contacts opting out) and `blocked_send` (sends refused: opted out) |
| `notify_throttled_total` | counter | `error_code` | Meta's rate-limit answers per throttling code (deferred, retried or failed) |

No label takes its values from users or message ids: domains come from producers, codes from
Meta and the engine, causes and reasons from fixed sets. Counters with label values known in
advance (the code table's codes, deferral reasons, opt-out causes) start at 0.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
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
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from notify_pipeline import settings
from notify_pipeline.engine.reasons import DEFERRAL_REASONS
from notify_pipeline.private_files import make_dirs
from notify_pipeline.reporting.metrics_sql import (
    STATEMENT_TIMEOUT_MS,
    Labels,
    Snapshot,
    read_snapshot,
)
from notify_pipeline.reporting.metrics_totals import known_labels, totals
from notify_pipeline.whatsapp.errors import throttling_codes

DEFAULT_JOB = "notify_pipeline"
TEXTFILE_NAME = "notify_pipeline.prom"
PUSH_TIMEOUT_S = 10.0

# The runbook's PromQL selects notification_queue_depth{trigger="cron"}: the prior system ran its
# worker from cron. Sensor-launched runs drain the same queue, so the label keeps that one value,
# and existing dashboards and alert rules keep matching.
QUEUE_TRIGGER = "cron"

# Database counters exported under a conventional name: (counter, family, help, label names).
COUNTERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("sent", "notify_sent", "Messages Meta accepted, by domain.", ("domain",)),
    (
        "failed",
        "notify_failed",
        "A worker's failed verdicts (Meta's refusal or the engine's), by domain and error code; "
        "opt-outs, expiry and late failures are counted apart.",
        ("domain", "error_code"),
    ),
    (
        "late_failed",
        "notify_late_failed",
        "Messages Meta accepted, then reported failed in a status webhook, by Meta's error code.",
        ("error_code",),
    ),
    ("delivered", "notify_delivered", "Messages Meta reported delivered (read implies delivered).", ()),
    (
        "receipt_confirmed",
        "notify_receipt_confirmed",
        "Sends whose answer never came (timeout, 502/504) that a status webhook then confirmed sent.",
        (),
    ),
    (
        "duplicate_sends",
        "notify_duplicate_sends",
        "Notifications Meta accepted more than once (a second message id), each counted once.",
        (),
    ),
    ("read", "notify_read", "Messages Meta reported read.", ()),
    (
        "filtered",
        "notify_filtered",
        "Notifications not sent because the contact opted out: refused at send (stage=send) or "
        "cancelled while waiting (stage=queue).",
        ("domain", "reason", "stage"),
    ),
    ("held", "notify_held", "Notifications an emergency stop held (resume queues them again).", ("domain",)),
    (
        "expired",
        "notify_expired",
        "Notifications past their expires_at before they could be sent.",
        ("domain",),
    ),
    (
        "cancelled",
        "notify_cancelled",
        "Other notifications stopped while waiting, by code.",
        ("domain", "reason"),
    ),
    (
        "deferred",
        "notify_deferred",
        "Deferrals (no attempt used), by our reason or Meta's throttling code.",
        ("reason",),
    ),
    (
        "retried",
        "notify_retried",
        "Retries after a transient error (an attempt used), by error code.",
        ("error_code",),
    ),
    (
        "requeued",
        "notify_requeued",
        "Failed or held notifications queued again (resume, retry-failed), by the code they had.",
        ("reason",),
    ),
    ("swept", "notify_swept", "Claims of dead workers given back to the queue.", ()),
    ("worker_starts", "notify_worker_starts", "Send runs started, by what launched them.", ("trigger",)),
    (
        "contacts_opted_out",
        "notify_contacts_opted_out",
        "Contacts that opted out, by cause (reply_keyword, operator, api, unknown); a STOP repeated, or "
        "within an hour of the contact's own START, is not counted again.",
        ("reason",),
    ),
)
# Label-less counters exported at 0 before their first event, so panels show a line, not "no data".
ALWAYS = ("delivered", "read", "swept")


class PushError(RuntimeError):
    """The Pushgateway could not be reached or refused the push."""


class QueueMetricsCollector(Collector):
    """Publishes one queue snapshot per collect(); `source` decides when it is read."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._source()))


def families(snap: Snapshot) -> list[Metric]:
    """The metric families of one snapshot: the runbook's, the conventional ones, then the totals
    the alert rules read."""
    return [*runbook(snap), *conventional(snap), *totals(snap)]


def _values(labels: Labels, names: Sequence[str]) -> list[str]:
    found = dict(labels)
    return [found.get(name, "none") for name in names]


def _counter(
    snap: Snapshot,
    name: str,
    family: str,
    help_text: str,
    label_names: Sequence[str],
    known: Sequence[Labels] = (),
) -> Metric:
    """A database counter; `known` label sets start at 0, so their first event is an increase
    Prometheus sees (a series that first appears at its full value has no earlier sample)."""
    metric = CounterMetricFamily(family, help_text, labels=list(label_names))
    values = {**dict.fromkeys(known, 0), **snap.counter(name)}
    if not values and not label_names and name in ALWAYS:
        metric.add_metric([], 0)
    for labels, value in sorted(values.items()):
        metric.add_metric(_values(labels, label_names), value)
    return metric


def _histogram(
    snap: Snapshot, name: str, family: str, help_text: str, label_name: str, scale: float = 1.0
) -> Metric:
    """A stored histogram in Prometheus' cumulative form; `scale` converts its unit (ms to s)."""
    metric = HistogramMetricFamily(family, help_text, labels=[label_name])
    histogram = snap.histograms.get(name)
    if histogram is None:
        return metric
    for labels in histogram.series:
        cumulative, count, total = histogram.cumulative(labels)
        buckets = [
            (floatToGoString(bound * scale), running)
            for bound, running in zip(histogram.bounds, cumulative, strict=True)
        ]
        metric.add_metric(_values(labels, [label_name]), [*buckets, ("+Inf", count)], total * scale)
    return metric


def runbook(snap: Snapshot) -> list[Metric]:
    """The runbook's series, exactly as its PromQL names them."""
    depth = GaugeMetricFamily(
        "notification_queue_depth",
        "Queued notifications due now and not held by a live claim (deferred and scheduled rows are not counted).",
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
    # Counters (series notification_sent_total, notification_failed_total): the database's counters.
    sent = _counter(snap, "sent", "notification_sent", "Notifications Meta accepted, by domain.", ["domain"])
    failed = _counter(
        snap,
        "failed",
        "notification_failed",
        "A worker's failed verdicts by domain and error code (Meta's code or the engine's reason); "
        "opt-outs, emergency-stop holds and expiry are not failures.",
        ["domain", "error_code"],
    )
    latency = _histogram(
        snap,
        "worker_run",
        "notification_worker_latency_ms",
        "Duration of each send run in milliseconds (NOTIFY_WORKER_DONE), by what launched it.",
        "trigger",
    )
    # No _total in the runbook's names: cumulative, exposed untyped under the exact name.
    optout = UnknownMetricFamily(
        "notification_filtered_optout",
        "Notifications not sent because the contact opted out, since the counters began (cumulative: "
        "read with increase()).",
        value=snap.total("filtered"),  # every filtered reason is the contact's no (figures.FILTERED_CODES)
    )
    quiet = UnknownMetricFamily(
        "notification_deferred_quiet_hours",
        "Deferrals for quiet hours in the contact's time zone (cumulative: read with increase()).",
        value=snap.total("deferred", reason="quiet_hours"),
    )
    deferred = UnknownMetricFamily(
        "notification_deferred",
        "Deferrals and retries by reason or Meta error code (cumulative: read with increase()); "
        "130429 throughput, 131056 pair limit, 131048 spam limit, pair_limit our own limiter.",
        labels=["error_code"],
    )
    counts = dict.fromkeys((*throttling_codes(), *DEFERRAL_REASONS), 0)
    for labels, value in snap.counter("deferred").items():
        code = dict(labels).get("reason", "none")
        counts[code] = counts.get(code, 0) + value
    for labels, value in snap.counter("retried").items():
        code = dict(labels).get("error_code", "none")
        counts[code] = counts.get(code, 0) + value
    for code, count in sorted(counts.items()):
        deferred.add_metric([code], count)
    return [depth, waiting, in_flight, oldest, sent, failed, latency, optout, quiet, deferred]


def conventional(snap: Snapshot) -> list[Metric]:
    """Conventional names: notify_*, counters as <name>_total, histograms in seconds."""
    queue = [
        GaugeMetricFamily("notify_queue_due", "Queued notifications due now, not claimed.", value=snap.due),
        GaugeMetricFamily(
            "notify_queue_waiting", "Queued notifications waiting for a later time.", value=snap.waiting
        ),
        GaugeMetricFamily(
            "notify_queue_claimed", "Queued notifications a worker holds.", value=snap.in_flight
        ),
        GaugeMetricFamily(
            "notify_queue_oldest_due_seconds",
            "Seconds the longest-due unclaimed notification has been due; 0 when none is due.",
            value=snap.oldest_due_s,
        ),
    ]
    known = known_labels(snap)
    counters = [_counter(snap, *spec, known.get(spec[0], ())) for spec in COUNTERS]
    histograms = [
        _histogram(
            snap,
            "enqueue_to_accepted",
            "notify_enqueue_to_accepted_seconds",
            "Seconds from queueNotification to Meta's acceptance, by domain (scheduled and deferred "
            "rows included).",
            "domain",
        ),
        _histogram(
            snap,
            "meta_answer",
            "notify_meta_answer_seconds",
            "Seconds Meta took to answer one send, by answer (accepted or error); requests that "
            "never left are not counted.",
            "answer",
        ),
        _histogram(
            snap,
            "worker_run",
            "notify_worker_run_seconds",
            "Seconds each send run lasted, by what launched it.",
            "trigger",
            scale=0.001,
        ),
    ]
    held = GaugeMetricFamily(
        "notify_sender_held",
        "1 per sender held because Meta refused its credentials or account (no series: none held).",
        labels=["sender"],
    )
    for sender in snap.held_senders:
        held.add_metric([sender], 1)
    state = [
        GaugeMetricFamily(
            "notify_sending_paused", "1 while sending is paused (queue_control).", value=int(snap.paused)
        ),
        held,
        GaugeMetricFamily(
            "notify_worker_last_active_timestamp_seconds",
            "Unix time of the newest send-run start, resume, released hold or live claim; 0 when none.",
            value=snap.worker_active_at,
        ),
        GaugeMetricFamily(
            "notify_last_status_webhook_timestamp_seconds",
            "Unix time of the newest status webhook; 0 when none arrived in the last week.",
            value=snap.last_status_at,
        ),
        GaugeMetricFamily(
            "notify_receipts_awaiting",
            "Messages sent in the last 15 minutes, more than 2 minutes ago, with no status webhook yet.",
            value=snap.receipts_awaiting,
        ),
    ]
    return [*queue, *counters, *histograms, *state]


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


# The textfile is for node_exporter, which usually runs as a user of its own: readable by the
# owner's group (give node_exporter that group), never by everyone. It holds counts, no secrets.
TEXTFILE_MODE = 0o640


def _write(registry: CollectorRegistry, path: Path) -> Path:
    make_dirs(path.parent)
    write_to_textfile(str(path), registry)
    os.chmod(path, TEXTFILE_MODE)
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

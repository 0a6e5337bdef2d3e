"""Export the daily summary for reporting: CSV and Parquet files for a date range, readable by
their owner only (0600; new folders 0700)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg

from notify_pipeline.private_files import make_dirs, open_private

FORMATS = ("csv", "parquet")


def load_summary(conn: psycopg.Connection, start: date, end: date) -> pd.DataFrame:
    """daily_domain_summary rows for days start..end (inclusive), ordered by day and domain."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    cur = conn.execute(
        "SELECT day, domain, total, sent, failed, queued, failure_rate, avg_retries, latency_p50_ms, "
        "latency_p95_ms, latency_p99_ms, deferrals, delivered, read, late_failed, delivery_rate, read_rate, "
        "late_failure_rate, delivery_latency_p50_ms, delivery_latency_p95_ms, delivery_latency_p99_ms "
        "FROM daily_domain_summary "
        "WHERE day BETWEEN %s AND %s ORDER BY day, domain",
        (start, end),
    )
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def export_summary(
    conn: psycopg.Connection, start: date, end: date, out_dir: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Write the range to out_dir as daily_domain_summary_<start>_<end>.<format>; return the paths."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)}: use csv and/or parquet")
    frame = load_summary(conn, start, end)
    # Parquet has no type for a dict column of varying keys: keep deferrals as JSON text.
    frame["deferrals"] = frame["deferrals"].map(lambda value: json.dumps(value, sort_keys=True))
    make_dirs(out_dir)
    written = []
    for fmt in formats:
        path = out_dir / f"daily_domain_summary_{start}_{end}.{fmt}"
        # Opened 0600 by us: pandas would create the file with the umask's mode (often 0644).
        if fmt == "csv":
            with open_private(path, "w", newline="") as handle:
                frame.to_csv(handle, index=False)
        else:
            with open_private(path, "wb") as handle:
                frame.to_parquet(handle, index=False)
        written.append(path)
    return written

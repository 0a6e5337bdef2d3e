"""Quiet hours in the contact's own time zone.

A window is [start, end) in local wall-clock time; when start > end it crosses midnight
(22:00-07:00). A deferred message becomes due at the window's end, in that zone, so a Kigali
contact with 22:00-07:00 hears at 07:00 Kigali time and a New York contact at 07:00 New York time,
whatever the server's clock. Daylight-saving changes are handled by zoneinfo: an end that falls in
a spring-forward gap, and so does not exist that day, is read with the offset before the change
(an end of 02:30 in a 02:00-03:00 gap becomes 03:30), as PEP 495 resolves such times.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_window(local: time, start: time, end: time) -> bool:
    if start == end:
        return False  # an empty window: never quiet
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(now: datetime, tz: str, start: time | None, end: time | None) -> datetime | None:
    """When the quiet window that `now` falls in ends (UTC), or None when `now` is not quiet."""
    if start is None or end is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(zone(tz))
    wall = local.time().replace(tzinfo=None)
    if not in_window(wall, start, end):
        return None
    end_date = local.date()
    if start > end and wall >= start:
        end_date += timedelta(days=1)
    # Build the wall-clock end in the zone, then normalise through UTC (fold=0 for DST gaps and overlaps).
    ends_at = datetime.combine(end_date, end, tzinfo=zone(tz)).astimezone(UTC)
    if ends_at <= now:
        # Inside a repeated (fall-back) hour the end's first occurrence may already be past:
        # look again in a second, when the wall clock has moved on.
        return now.astimezone(UTC) + timedelta(seconds=1)
    return ends_at

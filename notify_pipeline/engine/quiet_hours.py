"""Quiet hours in the contact's own time zone.

A window is [start, end) in local wall-clock time; when start > end it crosses midnight
(22:00-07:00). A deferred message becomes due at the window's end, in that zone, so a Kigali
contact with 22:00-07:00 hears at 07:00 Kigali time and a New York contact at 07:00 New York time,
whatever the server's clock.

On daylight-saving nights the end is the first instant after now at which the wall clock reads
the end time, or jumps over it:
- a repeated (fall-back) hour shows the end twice: the first one still ahead is taken, so a row
  evaluated between the two (01:10 EST with an end of 01:30 in New York) waits for 01:30 EST, once;
- a skipped (spring-forward) hour may not show the end at all: the window then ends at the jump
  (an end of 02:30 in a 02:00-03:00 gap ends at 03:00, the first wall time past it).
The instant returned is never inside the window, so a row deferred to it is not deferred again.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

# Quiet hours of contacts without their own, in their time zone; NOTIFY_DEFAULT_QUIET_HOURS
# overrides them (START-END, or off).
DEFAULT_QUIET_HOURS = (time(22), time(7))
DEFAULT_QUIET_HOURS_ENV = "NOTIFY_DEFAULT_QUIET_HOURS"
DEFAULT_TIMEZONE = "Africa/Kigali"  # of contacts without preferences
OFF = ("off", "none")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str) -> time:
    match = _HHMM.match((value or "").strip())
    if not match:
        raise ValueError(f"{value!r} is not a time of day: use HH:MM on a 24-hour clock, e.g. 22:00")
    return time(int(match.group(1)), int(match.group(2)))


def window(start: str | None, end: str | None) -> tuple[time, time] | None:
    """Both ends (HH:MM) or neither; a window must not be empty (start equal to end)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ValueError("give both ends of the quiet hours (start and end, e.g. 22:00 and 07:00) or neither")
    bounds = parse_hhmm(start), parse_hhmm(end)
    if bounds[0] == bounds[1]:
        raise ValueError(f"quiet hours {start}-{end} start and end at the same time: give a real window")
    return bounds


def parse_window(spec: str) -> tuple[time, time]:
    """'22:00-07:00' (a window may cross midnight)."""
    parts = (spec or "").split("-")
    if len(parts) != 2:
        raise ValueError(f"{spec!r} is not a quiet-hours window: use START-END, e.g. 22:00-07:00")
    bounds = window(parts[0], parts[1])
    assert bounds is not None
    return bounds


def default_quiet_hours(raw: str | None = None) -> tuple[time, time] | None:
    """NOTIFY_DEFAULT_QUIET_HOURS (or `raw`): START-END, or off for none; unset: 22:00-07:00."""
    raw = (os.environ.get(DEFAULT_QUIET_HOURS_ENV, "") if raw is None else raw).strip()
    if not raw:
        return DEFAULT_QUIET_HOURS
    if raw.lower() in OFF:
        return None
    try:
        return parse_window(raw)
    except ValueError as exc:
        raise ValueError(f"{DEFAULT_QUIET_HOURS_ENV}: {exc}, or off") from None


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_window(local: time, start: time, end: time) -> bool:
    if start == end:
        return False  # an empty window: never quiet
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _wall(instant: datetime, tz: ZoneInfo) -> time:
    return instant.astimezone(tz).time().replace(tzinfo=None)


def _jump(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant of the clock change between `before` (old offset) and `after` (new offset), to
    the second (changes fall on whole minutes)."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _end_instants(day: date, end: time, tz: ZoneInfo) -> list[datetime]:
    """When the wall clock reaches `end` on `day`: once, twice (a repeated hour) or, when the
    clock skips it, at the jump."""
    first = datetime.combine(day, end, tzinfo=tz).astimezone(UTC)  # fold=0: the earlier offset
    second = datetime.combine(day, end, tzinfo=tz).replace(fold=1).astimezone(UTC)
    if _wall(first, tz) != end:  # skipped: fold=1 reads it with the later offset, before the jump
        return [_jump(min(first, second), max(first, second), tz)]
    return sorted({first, second})


def _next_end(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime:
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    day = local.date()
    if start > end and wall >= start:
        day += timedelta(days=1)
    for offset in range(3):  # the day after, for a clock change at midnight
        ahead = [t for t in _end_instants(day + timedelta(days=offset), end, tz) if t > now]
        if ahead:
            return ahead[0]
    raise AssertionError(f"no end of the quiet window after {now.isoformat()} in {tz.key}")


def quiet_until(now: datetime, tz: str, start: time | None, end: time | None) -> datetime | None:
    """When the quiet window that `now` falls in ends (UTC), or None when `now` is not quiet."""
    if start is None or end is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone_info = zone(tz)
    if not in_window(_wall(now, zone_info), start, end):
        return None
    at = now.astimezone(UTC)
    # A window a clock change lands inside again (a near-24-hour window whose end is skipped)
    # goes on to its next end: the instant returned is outside the window.
    for _ in range(3):
        at = _next_end(at, zone_info, start, end)
        if not in_window(_wall(at, zone_info), start, end):
            return at
    return at

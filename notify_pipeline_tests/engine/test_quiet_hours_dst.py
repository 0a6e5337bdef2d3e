"""Quiet hours on daylight-saving nights: a row is deferred once, to the window's real end, whether
the clock repeats an hour (fall back) or skips one (spring forward), in zones with one-hour and
thirty-minute shifts. Examples from the issue, then a property over generated windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notify_pipeline.engine.quiet_hours import in_window, quiet_until

NEW_YORK = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_fall_back_night_with_an_end_inside_the_repeated_hour_defers_once() -> None:
    # 2025-11-02 in New York: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:00-02:00 happens twice.
    # The case: 22:00-01:30, evaluated at 01:10 EST (after 01:30 EDT has passed).
    at = utc(2025, 11, 2, 6, 10)
    until = quiet_until(at, NEW_YORK, time(22), time(1, 30))
    assert until == utc(2025, 11, 2, 6, 30)  # 01:30 EST: the wall clock's next 01:30
    assert quiet_until(until, NEW_YORK, time(22), time(1, 30)) is None


def test_the_1200_one_second_deferrals_are_gone() -> None:
    at, deferrals = utc(2025, 11, 2, 6, 10), 0
    while (until := quiet_until(at, NEW_YORK, time(22), time(1, 30))) is not None:
        deferrals += 1
        at = until
        assert deferrals < 5
    assert deferrals == 1 and at == utc(2025, 11, 2, 6, 30)


def test_before_the_repeated_hour_the_first_end_is_taken() -> None:
    # 00:30 EDT: the window ends at the first 01:30 (EDT), an hour before the second one.
    assert quiet_until(utc(2025, 11, 2, 4, 30), NEW_YORK, time(22), time(1, 30)) == utc(2025, 11, 2, 5, 30)


def test_spring_forward_with_an_end_in_the_skipped_hour_ends_at_the_jump() -> None:
    # 2025-03-09 in New York: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:30 does not exist.
    until = quiet_until(utc(2025, 3, 9, 6, 50), NEW_YORK, time(22), time(2, 30))
    assert until == utc(2025, 3, 9, 7, 0)  # 03:00 EDT, the first wall time past 02:30
    assert quiet_until(until, NEW_YORK, time(22), time(2, 30)) is None


def test_lord_howe_half_hour_shift() -> None:
    # 2025-10-05 on Lord Howe Island: 02:00 (+10:30) becomes 02:30 (+11:00) at 15:30 UTC on the 4th.
    until = quiet_until(utc(2025, 10, 4, 15, 20), "Australia/Lord_Howe", time(23), time(2, 15))
    assert until == utc(2025, 10, 4, 15, 30)
    # 2025-04-06: 02:00 (+11:00) becomes 01:30 (+10:30) at 15:00 UTC on the 5th; 01:30-02:00 repeats.
    until = quiet_until(utc(2025, 4, 5, 15, 5), "Australia/Lord_Howe", time(23), time(1, 45))
    assert until == utc(2025, 4, 5, 15, 15)  # the second 01:45 (+10:30)
    assert quiet_until(until, "Australia/Lord_Howe", time(23), time(1, 45)) is None


# -- the property ------------------------------------------------------------------------------


def transitions(tz: str, year: int) -> list[datetime]:
    """The UTC instants of the zone's clock changes in `year`, to the minute."""
    zone, found = ZoneInfo(tz), []
    at = datetime(year, 1, 1, tzinfo=UTC)
    while at.year == year:
        nxt = at + timedelta(hours=1)
        if nxt.astimezone(zone).utcoffset() != at.astimezone(zone).utcoffset():
            minute = at
            while minute.astimezone(zone).utcoffset() == at.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            found.append(minute)
        at = nxt
    return found


ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Australia/Lord_Howe"]
CHANGES = [(tz, change) for tz in ZONES for year in (2025, 2026) for change in transitions(tz, year)]


def test_the_zones_change_twice_a_year() -> None:
    assert all(sum(1 for tz, c in CHANGES if tz == zone and c.year == 2025) == 2 for zone in ZONES)


@st.composite
def dst_nights(draw):
    """A zone, a clock change, a window whose end falls in the hour around it (repeated or skipped
    wall times included), and a moment inside the window shortly before or after the change."""
    tz, change = draw(st.sampled_from(CHANGES))
    zone = ZoneInfo(tz)
    before, after = (change - timedelta(minutes=1)).astimezone(zone), change.astimezone(zone)
    # Wall times around the change: from an hour before the earlier wall time to an hour after the later one.
    low = min(before.replace(tzinfo=None), after.replace(tzinfo=None)) - timedelta(minutes=60)
    end = (low + timedelta(minutes=draw(st.integers(0, 180)))).time().replace(second=0)
    length = draw(st.integers(30, 23 * 60))  # minutes before the end the window starts
    start = (datetime.combine(date(2000, 1, 2), end) - timedelta(minutes=length)).time()
    moment = change + timedelta(seconds=draw(st.integers(-3 * 3600, 3 * 3600)))
    return tz, start, end, moment


@settings(max_examples=600, deadline=None)
@given(dst_nights())
def test_a_dst_night_defers_once_to_a_moment_outside_the_window(case) -> None:
    tz, start, end, moment = case
    until = quiet_until(moment, tz, start, end)
    local = moment.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
    assert (until is None) == (not in_window(local, start, end))
    if until is None:
        return
    assert until > moment
    wall = until.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
    assert not in_window(wall, start, end), f"{until} ({wall}) is inside {start}-{end} in {tz}"
    assert quiet_until(until, tz, start, end) is None, "a second evaluation deferred again"
    assert until - moment <= timedelta(hours=25), "waited past the window's real end"


@pytest.mark.parametrize("tz", ZONES)
def test_every_minute_of_a_dst_night_needs_at_most_one_deferral(tz: str) -> None:
    for change in (c for zone, c in CHANGES if zone == tz):
        for end_minutes in range(-90, 91, 15):
            end = (
                (change.astimezone(ZoneInfo(tz)) + timedelta(minutes=end_minutes)).time().replace(tzinfo=None)
            )
            start = (datetime.combine(date(2000, 1, 2), end) - timedelta(hours=8)).time()
            for minute in range(-120, 121, 5):
                at = change + timedelta(minutes=minute)
                until = quiet_until(at, tz, start, end)
                if until is not None:
                    assert quiet_until(until, tz, start, end) is None, (tz, change, end, at, until)

"""Quiet hours across time zones, midnight and daylight saving: examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.quiet_hours import DEFAULT_QUIET_HOURS_ENV, in_window, quiet_until
from notify_pipeline.settings import environment_problems

NIGHT = (time(22), time(7))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        (
            utc(2026, 3, 1, 21, 30),
            "Africa/Kigali",
            utc(2026, 3, 2, 5, 0),
        ),  # 23:30 local -> 07:00 local (UTC+2)
        (utc(2026, 3, 1, 2, 0), "Africa/Kigali", utc(2026, 3, 1, 5, 0)),  # 04:00 local, after midnight
        (utc(2026, 3, 1, 12, 0), "Africa/Kigali", None),  # 14:00 local: not quiet
        (utc(2026, 3, 1, 20, 0), "Africa/Kigali", None),  # 22:00 exactly is quiet? 20:00 UTC = 22:00 local
        (utc(2026, 1, 15, 4, 0), "America/New_York", utc(2026, 1, 15, 12, 0)),  # 23:00 EST -> 07:00 EST
        (utc(2026, 1, 15, 9, 0), "Asia/Kolkata", None),  # 14:30 IST
    ],
)
def test_examples(now: datetime, tz: str, expected: datetime | None) -> None:
    if now == utc(2026, 3, 1, 20, 0):
        expected = utc(2026, 3, 2, 5, 0)  # the start minute is inside the window
    assert quiet_until(now, tz, *NIGHT) == expected


def test_the_prior_systems_utc_bug_is_not_repeated() -> None:
    # Kigali 23:00: the window ends 07:00 Kigali = 05:00 UTC, not 07:00 UTC (09:00 local).
    assert quiet_until(utc(2026, 5, 1, 21, 0), "Africa/Kigali", *NIGHT) == utc(2026, 5, 2, 5, 0)
    # West of UTC: 07:00 UTC is still night in Los Angeles; the right answer is 07:00 local.
    assert quiet_until(utc(2026, 5, 1, 7, 0), "America/Los_Angeles", *NIGHT) == utc(2026, 5, 1, 14, 0)


def test_daylight_saving_changes() -> None:
    # Spring forward (New York, 2026-03-08 02:00 -> 03:00): the end 07:00 is EDT (UTC-4).
    assert quiet_until(utc(2026, 3, 8, 5, 0), "America/New_York", *NIGHT) == utc(2026, 3, 8, 11, 0)
    # Fall back (2026-11-01): 07:00 is EST again (UTC-5).
    assert quiet_until(utc(2026, 11, 1, 5, 30), "America/New_York", *NIGHT) == utc(2026, 11, 1, 12, 0)
    # An end inside the spring-forward gap (02:30 does not exist that night) ends the window at the
    # jump, 03:00 EDT, the first wall time past 02:30 (test_quiet_hours_dst.py has the other cases).
    ends = quiet_until(utc(2026, 3, 8, 6, 30), "America/New_York", time(1, 0), time(2, 30))
    assert ends == utc(2026, 3, 8, 7, 0)


def test_empty_and_missing_windows_are_never_quiet() -> None:
    now = utc(2026, 3, 1, 23, 0)
    assert quiet_until(now, "UTC", time(22), time(22)) is None
    assert quiet_until(now, "UTC", None, None) is None


ZONES = st.sampled_from(
    [
        "Africa/Kigali",
        "America/New_York",
        "America/Los_Angeles",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "Pacific/Chatham",
        "America/Santiago",
        "Europe/Paris",
        "UTC",
    ]
)
TIMES = st.times().map(lambda t: t.replace(second=0, microsecond=0))
INSTANTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=400, deadline=None)
@given(now=INSTANTS, tz=ZONES, start=TIMES, end=TIMES)
def test_deferral_lands_at_the_windows_end_in_the_contacts_zone(now, tz, start, end) -> None:
    local_now = now.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
    until = quiet_until(now, tz, start, end)
    assert (until is not None) == in_window(local_now, start, end)
    if until is None:
        return
    assert until > now
    assert until - now <= timedelta(hours=26), "never more than a day (plus a DST hour) away"
    local_until = until.astimezone(ZoneInfo(tz))
    wall = local_until.time().replace(tzinfo=None)
    if wall != end:
        # Only a DST gap moves the end, and only later: that day the configured end did not exist.
        naive_end = datetime.combine(local_until.date(), end)
        round_trip = naive_end.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC).astimezone(ZoneInfo(tz))
        assert round_trip.replace(tzinfo=None) != naive_end, f"end moved to {wall} without a DST gap"
    # A minute before the end is still quiet (unless the window was entered less than a minute ago).
    if until - now > timedelta(minutes=2):
        minute_before = (until - timedelta(minutes=1)).astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
        assert in_window(minute_before, start, end)


def test_the_default_window_is_a_setting(monkeypatch) -> None:
    """NOTIFY_DEFAULT_QUIET_HOURS: unset 22:00-07:00, a window, or off; a bad value is named."""
    monkeypatch.delenv(DEFAULT_QUIET_HOURS_ENV, raising=False)
    assert PolicyConfig().default_quiet_hours == (time(22), time(7))
    monkeypatch.setenv(DEFAULT_QUIET_HOURS_ENV, "21:30-08:00")
    assert PolicyConfig().default_quiet_hours == (time(21, 30), time(8))
    monkeypatch.setenv(DEFAULT_QUIET_HOURS_ENV, "Off")
    assert PolicyConfig().default_quiet_hours is None
    monkeypatch.setenv(DEFAULT_QUIET_HOURS_ENV, "10pm-7am")
    (problem,) = environment_problems((DEFAULT_QUIET_HOURS_ENV,))
    assert (
        problem.startswith("NOTIFY_DEFAULT_QUIET_HOURS: '10pm' is not a time of day") and "or off" in problem
    )
    with pytest.raises(ValueError, match="NOTIFY_DEFAULT_QUIET_HOURS"):
        PolicyConfig()

"""Business time (crm/business_hours.py): deadlines across evenings, weekends, holidays and
a DST change, and the business seconds between two times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.business_hours import BusinessCalendar, ClosedDays, OpenHours, parse_duration

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600
WEEKDAYS = frozenset(range(5))
OFFICE = BusinessCalendar(
    BERLIN,
    [OpenHours(WEEKDAYS, 9 * H, 17 * H)],
    [ClosedDays(date(2000, 12, 25), date(2000, 12, 26), yearly=True)],
)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        # Within the day.
        (local(2026, 12, 7, 10), 4 * H, local(2026, 12, 7, 14)),
        # Into the next morning.
        (local(2026, 12, 7, 15), 4 * H, local(2026, 12, 8, 11)),
        # Friday evening: nothing counts until Monday 09:00.
        (local(2026, 12, 4, 18), 4 * H, local(2026, 12, 7, 13)),
        # Saturday: Monday.
        (local(2026, 12, 5, 12), 30 * 60, local(2026, 12, 7, 9, 30)),
        # A deadline that falls on closing time is closing time, not Monday 09:00.
        (local(2026, 12, 4, 16), 1 * H, local(2026, 12, 4, 17)),
        # Christmas (Fri 25, Sat 26 closed) and the weekend: Thursday 16:00 + 2 h.
        (local(2026, 12, 24, 16), 2 * H, local(2026, 12, 28, 10)),
        # The DST weekend (clocks go back on Sunday 2026-10-25): Friday 16:00 CEST + 2 h
        # is Monday 10:00 CET: 66 hours on the wall clock, 67 real ones.
        (local(2026, 10, 23, 16), 2 * H, local(2026, 10, 26, 10)),
        # Zero business seconds at a closed time: the time itself.
        (local(2026, 12, 5, 12), 0, local(2026, 12, 5, 12)),
    ],
)
def test_add(start: datetime, seconds: int, due: datetime) -> None:
    got = OFFICE.add(start, seconds)
    assert got == due
    assert got.tzinfo is UTC
    assert OFFICE.between(start, got) == seconds


def test_dst_weekend_in_utc() -> None:
    due = OFFICE.add(local(2026, 10, 23, 16), 2 * H)
    assert due == datetime(2026, 10, 26, 9, tzinfo=UTC)
    # A calendar open all week counts the 25-hour Sunday as 25 hours.
    always = BusinessCalendar(BERLIN)
    assert always.between(local(2026, 10, 24), local(2026, 10, 26)) == 49 * H
    # ... and the 23-hour spring Sunday as 23.
    assert always.between(local(2026, 3, 28), local(2026, 3, 30)) == 47 * H
    # Wall-clock hours on the short day: 09:00-17:00 is still 8 hours.
    sunday = BusinessCalendar(BERLIN, [OpenHours(frozenset({6}), 0, 24 * H)])
    assert sunday.between(local(2026, 3, 29), local(2026, 3, 30)) == 23 * H


def test_between() -> None:
    assert OFFICE.between(local(2026, 12, 4, 16), local(2026, 12, 7, 10)) == 2 * H
    assert OFFICE.between(local(2026, 12, 7, 10), local(2026, 12, 4, 16)) == 0
    # A whole week with Christmas: Mon-Thu only.
    assert OFFICE.between(local(2026, 12, 21), local(2026, 12, 28)) == 4 * 8 * H


def test_overnight_range_and_holiday_cuts_it() -> None:
    night = BusinessCalendar(
        BERLIN,
        [OpenHours(frozenset({4}), 22 * H, 6 * H)],  # fri 22:00-06:00
        [ClosedDays(date(2026, 12, 12), date(2026, 12, 12))],
    )
    assert night.add(local(2026, 12, 4, 12), 3 * H) == local(2026, 12, 5, 1)
    assert night.is_open(local(2026, 12, 5, 5)) and not night.is_open(local(2026, 12, 5, 7))
    # Saturday the 12th is a holiday: Friday the 11th's night stops at midnight.
    assert night.between(local(2026, 12, 11), local(2026, 12, 13)) == 2 * H


def test_never_open_is_an_error() -> None:
    closed = BusinessCalendar("UTC", [], [ClosedDays(date(2000, 1, 1), date(2000, 12, 31), True)])
    with pytest.raises(ValueError, match="no open hours"):
        closed.add(datetime(2026, 1, 1, tzinfo=UTC), 1)


def test_naive_times_and_unknown_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        OFFICE.add(datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar("Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("4h", 4 * H), ("3d", 24 * H), ("1h30m", 5400), ("1d2h", 10 * H)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4", "h", "4x", "4h 30", "-1h", "1.5h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_round_trip_at_many_starts() -> None:
    start = local(2026, 12, 1, 0)
    for k in range(0, 24 * 14, 5):
        at = start + timedelta(hours=k)
        for n in (1, 1800, 8 * H, 30 * H):
            assert OFFICE.between(at, OFFICE.add(at, n)) == n

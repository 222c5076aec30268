"""Time conditions with fixed clocks: weekly ranges, midnight, holidays, time zones and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from pbx.timecond import (
    Holiday,
    TimeCondition,
    WeeklyRange,
    load_zone,
    overlapping,
    parse_days,
    parse_holiday_date,
    parse_hours,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def office() -> TimeCondition:
    return TimeCondition("Asia/Shanghai", [WeeklyRange.parse("mon-fri", "09:00-18:00")])


# 2025-06-02 is a Monday.
@pytest.mark.parametrize(
    ("now", "is_open"),
    [
        (at(2025, 6, 2, 9, 0), True),  # opening minute
        (at(2025, 6, 2, 8, 59), False),
        (at(2025, 6, 2, 17, 59), True),
        (at(2025, 6, 2, 18, 0), False),  # end is exclusive
        (at(2025, 6, 6, 12), True),  # Friday
        (at(2025, 6, 7, 12), False),  # Saturday
        (at(2025, 6, 8, 12), False),  # Sunday
        # The same instant seen from UTC: 02:00Z Monday is 10:00 in Shanghai.
        (datetime(2025, 6, 2, 2, 0, tzinfo=UTC), True),
        (datetime(2025, 6, 2, 0, 59, tzinfo=UTC), False),  # 08:59 Shanghai
        # Sunday 23:30 UTC is Monday 07:30 in Shanghai: closed; 01:00Z Monday is 09:00 open.
        (datetime(2025, 6, 1, 23, 30, tzinfo=UTC), False),
        (datetime(2025, 6, 2, 1, 0, tzinfo=UTC), True),
    ],
)
def test_weekday_schedule(now: datetime, is_open: bool) -> None:
    assert office().is_open(now) is is_open


def test_range_crossing_midnight_belongs_to_its_start_day() -> None:
    night = TimeCondition("Asia/Shanghai", [WeeklyRange.parse("fri", "22:00-06:00")])
    assert night.is_open(at(2025, 6, 6, 23))  # Friday night
    assert night.is_open(at(2025, 6, 7, 5, 59))  # Saturday morning
    assert not night.is_open(at(2025, 6, 7, 6, 0))
    assert not night.is_open(at(2025, 6, 6, 5))  # Friday morning belongs to Thursday
    assert not night.is_open(at(2025, 6, 7, 23))  # Saturday night


def test_sunday_night_wraps_into_monday() -> None:
    tc = TimeCondition("UTC", [WeeklyRange.parse("sun", "20:00-08:00")])
    assert tc.is_open(datetime(2025, 6, 8, 21, tzinfo=UTC))  # Sunday
    assert tc.is_open(datetime(2025, 6, 9, 7, tzinfo=UTC))  # Monday morning
    assert not tc.is_open(datetime(2025, 6, 9, 8, tzinfo=UTC))


def test_whole_day_and_several_ranges() -> None:
    tc = TimeCondition(
        "UTC",
        [
            WeeklyRange.parse("sat", "00:00-24:00"),
            WeeklyRange.parse("mon-fri", "09:00-12:00"),
            WeeklyRange.parse("mon-fri", "13:00-17:00"),
        ],
    )
    assert tc.is_open(datetime(2025, 6, 7, 0, 0, tzinfo=UTC))
    assert tc.is_open(datetime(2025, 6, 7, 23, 59, 59, tzinfo=UTC))
    assert not tc.is_open(datetime(2025, 6, 8, 0, 0, tzinfo=UTC))
    assert not tc.is_open(datetime(2025, 6, 3, 12, 30, tzinfo=UTC))  # lunch
    assert tc.is_open(datetime(2025, 6, 3, 13, 0, tzinfo=UTC))


def test_no_weekly_ranges_means_open_except_holidays() -> None:
    tc = TimeCondition("UTC", holidays=[Holiday.parse("12-25")])
    assert tc.is_open(datetime(2025, 6, 3, 3, tzinfo=UTC))
    assert not tc.is_open(datetime(2025, 12, 25, 3, tzinfo=UTC))


def test_holidays_close_whatever_the_schedule_says() -> None:
    tc = TimeCondition(
        "Asia/Shanghai",
        [WeeklyRange.parse("daily", "00:00-24:00")],
        [
            Holiday.parse("2025-10-01", "2025-10-07", "National Day"),
            Holiday.parse("2025-05-01"),
            Holiday.parse("12-31", "01-01", "New Year"),
        ],
    )
    assert not tc.is_open(at(2025, 10, 1, 0, 0))
    assert not tc.is_open(at(2025, 10, 7, 23, 59))
    assert tc.is_open(at(2025, 10, 8, 0, 0))
    assert tc.is_open(at(2025, 9, 30, 23, 59))
    assert not tc.is_open(at(2025, 5, 1, 12))
    assert tc.is_open(at(2026, 5, 1, 12))  # a dated holiday is for one year only
    assert not tc.is_open(at(2030, 12, 31, 12))  # yearly, across New Year
    assert not tc.is_open(at(2031, 1, 1, 12))
    assert tc.is_open(at(2031, 1, 2, 0))
    holiday = tc.holiday_at(at(2025, 10, 3, 12))
    assert holiday is not None and holiday.name == "National Day"
    assert tc.holiday_at(at(2025, 10, 8, 12)) is None


def test_holiday_uses_the_local_date() -> None:
    tc = TimeCondition("Asia/Shanghai", holidays=[Holiday.parse("2025-10-01")])
    # 2025-09-30 17:00 UTC is already 01:00 on October 1st in Shanghai.
    assert not tc.is_open(datetime(2025, 9, 30, 17, tzinfo=UTC))
    assert tc.is_open(datetime(2025, 9, 30, 15, tzinfo=UTC))


def test_dst_spring_forward_uses_local_wall_time() -> None:
    # 2025-03-09 in New York: 02:00 EST jumps to 03:00 EDT.
    early = TimeCondition(NY, [WeeklyRange.parse("sun", "01:00-03:30")])
    assert early.is_open(datetime(2025, 3, 9, 6, 30, tzinfo=UTC))  # 01:30 EST
    assert early.is_open(datetime(2025, 3, 9, 7, 15, tzinfo=UTC))  # 03:15 EDT
    assert not early.is_open(datetime(2025, 3, 9, 7, 30, tzinfo=UTC))  # 03:30 EDT
    # Monday after the change: 13:30 UTC is 09:30 EDT (it was 08:30 in winter).
    work = TimeCondition(NY, [WeeklyRange.parse("mon-fri", "09:00-17:00")])
    assert work.is_open(datetime(2025, 3, 10, 13, 30, tzinfo=UTC))
    assert not work.is_open(datetime(2025, 3, 3, 13, 30, tzinfo=UTC))


def test_dst_fall_back_repeated_hour_is_open_twice() -> None:
    # 2025-11-02 in New York: 01:00-02:00 happens twice (EDT, then EST).
    tc = TimeCondition(NY, [WeeklyRange.parse("sun", "01:00-02:00")])
    assert tc.is_open(datetime(2025, 11, 2, 5, 30, tzinfo=UTC))  # 01:30 EDT
    assert tc.is_open(datetime(2025, 11, 2, 6, 30, tzinfo=UTC))  # 01:30 EST
    assert not tc.is_open(datetime(2025, 11, 2, 7, 30, tzinfo=UTC))  # 02:30 EST


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        office().is_open(datetime(2025, 6, 2, 10))


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("Fri-Mon", {4, 5, 6, 0}),
        ("daily", set(range(7))),
        ("wednesday", {2}),
        ("mon, wed-thu", {0, 2, 3}),
    ],
)
def test_parse_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "mo", "funday", "mon-", "monx"])
def test_parse_days_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="unknown day"):
        parse_days(text)


def test_parse_hours() -> None:
    assert parse_hours("09:00-18:00") == (9 * 3600, 18 * 3600)
    assert parse_hours("22:30-06:00") == (22 * 3600 + 1800, 6 * 3600)
    assert parse_hours("00:00-24:00") == (0, 86400)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-18", "expected HH:MM-HH:MM"),
        ("09:00", "expected HH:MM-HH:MM"),
        ("25:00-26:00", "bad time 25:00"),
        ("09:60-10:00", "bad time 09:60"),
        ("24:00-06:00", "24:00 only as an end"),
        ("10:00-24:01", "bad time 24:01"),
        ("10:00-10:00", "empty time range"),
    ],
)
def test_parse_hours_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hours(text)


def test_parse_holiday_dates() -> None:
    assert parse_holiday_date("2025-10-01") == (date(2025, 10, 1), False)
    assert parse_holiday_date("02-29") == (date(2000, 2, 29), True)
    for bad in ("2025-02-30", "13-01", "2025/10/01", "yesterday"):
        with pytest.raises(ValueError, match="bad date"):
            parse_holiday_date(bad)
    with pytest.raises(ValueError, match="ends before it starts"):
        Holiday.parse("2025-10-07", "2025-10-01")
    with pytest.raises(ValueError, match="same form"):
        Holiday.parse("2025-10-01", "10-07")


def test_unknown_zone() -> None:
    assert load_zone("Asia/Shanghai") == SH
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        load_zone("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        TimeCondition("../etc/passwd")


def test_overlapping_ranges() -> None:
    ranges = [
        WeeklyRange.parse("mon-fri", "09:00-18:00"),
        WeeklyRange.parse("fri", "17:00-19:00"),  # overlaps [0] on Friday
        WeeklyRange.parse("sat", "09:00-12:00"),
        WeeklyRange.parse("sun", "23:00-10:00"),  # wraps into Monday 09:00: overlaps [0]
        WeeklyRange.parse("sat", "12:00-13:00"),  # touches [2]: not an overlap
    ]
    assert overlapping(ranges) == [(0, 1), (0, 3)]

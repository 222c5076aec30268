"""Time conditions: weekly opening hours, holiday calendars and a time zone, sans-IO.

Theory of operation
-------------------
A :class:`TimeCondition` answers one question, "is it open at ``now``?", for a dialplan that
sends callers to an *open* or a *closed* destination. The clock is never read here: the caller
passes ``now`` (an aware ``datetime``), which makes every decision reproducible in tests.

``now`` is first converted to the condition's own time zone (``zoneinfo``), so a condition
written as ``mon-fri 09:00-18:00`` in ``Asia/Shanghai`` means Shanghai wall-clock time whatever
zone the server runs in, and daylight-saving changes are handled by the tz database: the
comparison is made on local wall time, so on a spring-forward day a range covering the skipped
hour simply loses it, and on a fall-back day the repeated hour is open twice.

* Weekly schedule: :class:`WeeklyRange` entries (days of the week + one time range). A range
  whose end is not after its start crosses midnight: ``fri 22:00-06:00`` is open from Friday
  22:00 to Saturday 06:00 (the days name the day the range *starts*). ``24:00`` is allowed as
  an end. The entries are compiled into intervals over the week (seconds since Monday 00:00),
  wrapping Sunday night into Monday morning. No entry at all means "open all week" (useful for
  a condition that only closes on holidays).
* Holidays: :class:`Holiday` entries, a single date or an inclusive date range, either for one
  year (``2025-10-01``) or every year (``10-01``; a yearly range may cross New Year). A holiday
  closes the whole local day, whatever the weekly schedule says.

:func:`parse_days`, :func:`parse_hours` and :func:`parse_holiday_date` parse the strings the
YAML config uses and raise ``ValueError`` with messages fit for ``file:line:column`` reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAY_NAMES",
    "Holiday",
    "TimeCondition",
    "WeeklyRange",
    "load_zone",
    "overlapping",
    "parse_days",
    "parse_holiday_date",
    "parse_hours",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = 86_400
_WEEK = 7 * _DAY
_HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_FULL_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_YEARLY_DATE = re.compile(r"(\d{2})-(\d{2})")


def load_zone(name: str) -> ZoneInfo:
    """The tz database zone ``name`` (``Asia/Shanghai``), or ``ValueError``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use a tz database name such as 'Europe/Paris')"
        ) from None


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``fri-mon`` (wraps), ``daily`` → weekday numbers (Monday=0)."""
    text = text.strip().lower()
    if text in ("daily", "*", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if "-" in item:
            first, _, last = item.partition("-")
            a, b = _day(first.strip()), _day(last.strip())
            # A reversed range wraps over the weekend: fri-mon is fri, sat, sun, mon.
            days.update((a + k) % 7 for k in range((b - a) % 7 + 1))
        else:
            days.add(_day(item))
    return frozenset(days)


def _day(name: str) -> int:
    for number, names in enumerate(zip(DAY_NAMES, _FULL_DAY_NAMES, strict=True)):
        if name in names:
            return number
    raise ValueError(
        f"unknown day {name!r}: use mon tue wed thu fri sat sun, ranges (mon-fri), "
        "lists (sat,sun) or daily"
    )


def parse_hours(text: str) -> tuple[int, int]:
    """``09:00-18:00`` → (start, end) in seconds since midnight; ``end <= start`` crosses
    midnight, ``00:00-24:00`` is the whole day."""
    match = _HOURS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad time range {text!r}: expected HH:MM-HH:MM, e.g. 09:00-18:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for h, m, is_end in ((h1, m1, False), (h2, m2, True)):
        if m > 59 or h > 24 or (h == 24 and (m != 0 or not is_end)):
            raise ValueError(
                f"bad time {h:02d}:{m:02d} in {text!r}: hours 00-23, minutes 00-59 "
                "(24:00 only as an end)"
            )
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start == end:
        raise ValueError(f"empty time range {text!r}: use 00:00-24:00 for the whole day")
    return start, end


def parse_holiday_date(text: str) -> tuple[date, bool]:
    """``2025-10-01`` → (that date, False); ``10-01`` → (that day in leap year 2000, True)."""
    text = text.strip()
    full = _FULL_DATE.fullmatch(text)
    try:
        if full is not None:
            y, m, d = (int(g) for g in full.groups())
            return date(y, m, d), False
        yearly = _YEARLY_DATE.fullmatch(text)
        if yearly is not None:
            m, d = (int(g) for g in yearly.groups())
            # A leap year, so 02-29 is accepted; only month and day are used.
            return date(2000, m, d), True
    except ValueError as exc:
        raise ValueError(f"bad date {text!r}: {exc}") from None
    raise ValueError(f"bad date {text!r}: expected YYYY-MM-DD, or MM-DD for every year")


@dataclass(frozen=True, slots=True)
class WeeklyRange:
    """Open on ``days`` (Monday=0) from ``start`` to ``end`` seconds after local midnight."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, days: str, hours: str) -> WeeklyRange:
        start, end = parse_hours(hours)
        return cls(parse_days(days), start, end)

    def intervals(self) -> list[tuple[int, int]]:
        """Half-open [start, end) intervals in seconds since Monday 00:00, none wrapping."""
        out: list[tuple[int, int]] = []
        for day in sorted(self.days):
            begin = day * _DAY + self.start
            length = (self.end - self.start) % _DAY or _DAY
            finish = begin + length
            if finish <= _WEEK:
                out.append((begin, finish))
            else:  # Sunday night into Monday morning
                out.append((begin, _WEEK))
                out.append((0, finish - _WEEK))
        return out


@dataclass(frozen=True, slots=True)
class Holiday:
    """Closed from ``first`` to ``last`` inclusive; ``yearly`` compares month and day only."""

    first: date
    last: date
    yearly: bool = False
    name: str = ""

    @classmethod
    def parse(cls, first: str, last: str | None = None, name: str = "") -> Holiday:
        start, yearly = parse_holiday_date(first)
        if last is None:
            return cls(start, start, yearly, name)
        end, end_yearly = parse_holiday_date(last)
        if end_yearly != yearly:
            raise ValueError("a holiday range must use the same form at both ends (MM-DD or full)")
        if not yearly and end < start:
            raise ValueError(f"holiday range ends before it starts: {first} > {last}")
        return cls(start, end, yearly, name)

    def covers(self, day: date) -> bool:
        if not self.yearly:
            return self.first <= day <= self.last
        key = (day.month, day.day)
        lo, hi = (self.first.month, self.first.day), (self.last.month, self.last.day)
        if lo <= hi:
            return lo <= key <= hi
        return key >= lo or key <= hi  # 12-24 .. 01-02 crosses New Year


def overlapping(ranges: Iterable[WeeklyRange]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of weekly ranges that share some time (a likely config mistake)."""
    spans = [r.intervals() for r in ranges]
    pairs: list[tuple[int, int]] = []
    for j, b in enumerate(spans):
        for i in range(j):
            if any(s1 < e2 and s2 < e1 for s1, e1 in spans[i] for s2, e2 in b):
                pairs.append((i, j))
    return pairs


class TimeCondition:
    """Open by a weekly schedule in a time zone, closed on holidays. Immutable after init."""

    __slots__ = ("_holidays", "_intervals", "holidays", "name", "weekly", "zone")

    def __init__(
        self,
        zone: ZoneInfo | str,
        weekly: Iterable[WeeklyRange] = (),
        holidays: Iterable[Holiday] = (),
        name: str = "",
    ) -> None:
        self.name = name
        self.zone = load_zone(zone) if isinstance(zone, str) else zone
        self.weekly = tuple(weekly)
        self.holidays = tuple(holidays)
        merged = sorted(iv for r in self.weekly for iv in r.intervals())
        self._intervals: tuple[tuple[int, int], ...] | None = tuple(merged) if merged else None
        self._holidays = (
            tuple(h for h in self.holidays if not h.yearly),
            tuple(h for h in self.holidays if h.yearly),
        )

    def holiday_at(self, now: datetime) -> Holiday | None:
        """The holiday covering the local date of ``now``, if any."""
        day = self._local(now).date()
        for group in self._holidays:
            for h in group:
                if h.covers(day):
                    return h
        return None

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` (an aware datetime) falls in the weekly schedule and on no holiday."""
        local = self._local(now)
        day = local.date()
        for group in self._holidays:
            for h in group:
                if h.covers(day):
                    return False
        if self._intervals is None:
            return True
        t = local.weekday() * _DAY + local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= t < end for start, end in self._intervals)

    def _local(self, now: datetime) -> datetime:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("time conditions need an aware datetime (with tzinfo), got naive")
        return now.astimezone(self.zone)

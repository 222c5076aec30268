"""Business time: weekly opening hours and holidays in one time zone, as pure functions.

Theory of operation
-------------------
A ticket's SLA ("first response within 4 h, resolution within 3 d") counts only the hours
the call centre works. :class:`BusinessCalendar` holds a weekly schedule, holidays and a tz
database zone; :meth:`BusinessCalendar.add` finds the moment ``n`` business seconds after
``start`` and :meth:`BusinessCalendar.between` counts the business seconds in ``[a, b)``.
The clock is never read: callers pass aware datetimes, so every deadline is reproducible.

The shapes are those of the dialplan's time conditions (``pbx/timecond.py``; the config
validates both with the same parsers): a weekly range is a set of weekdays (Monday=0) and
``start``/``end`` seconds after local midnight, where ``end <= start`` crosses midnight and
the days name the day the range starts; a holiday closes whole local days, once or every
year (``MM-DD``), and a yearly range may cross New Year. No weekly range means open all
week. crm/ may not import pbx/ (tests/unit/test_layering.py), hence this second, small
implementation of the same rules rather than a shared one.

Each local day's open intervals are built on *wall* time (``datetime`` + ``timedelta`` on
an aware value is wall-clock arithmetic) and only then converted to UTC, so a DST day has
the hours its clocks show: 09:00-17:00 is 8 hours on a 23- or 25-hour day alike, and a
00:00-24:00 day is 23 or 25 hours long.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["BusinessCalendar", "ClosedDays", "OpenHours", "parse_duration"]

_DAY = 86_400
# A calendar with no open second in this many days is a config mistake, not a deadline.
MAX_DAYS = 800
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str, day_seconds: int = 8 * 3600) -> int:
    """``"90s"``, ``"30m"``, ``"4h"``, ``"3d"``, ``"1h30m"`` → seconds; a ``d`` is
    ``day_seconds`` (one business day, default 8 hours). ValueError otherwise."""
    units = {**_UNITS, "d": day_seconds}
    raw = text.strip().lower()
    total, number, seen = 0, "", False
    for ch in raw:
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total += int(number) * units[ch]
            number, seen = "", True
        else:
            break
    else:
        if seen and not number:
            return total
    raise ValueError(f"bad duration {text!r}: expected e.g. 30m, 4h, 3d or 1h30m")


@dataclass(frozen=True, slots=True)
class OpenHours:
    """Open on ``days`` (Monday=0) from ``start`` to ``end`` seconds after local midnight;
    ``end <= start`` crosses midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ClosedDays:
    """Closed from ``first`` to ``last`` inclusive; ``yearly`` compares month and day."""

    first: date
    last: date
    yearly: bool = False

    def covers(self, day: date) -> bool:
        if not self.yearly:
            return self.first <= day <= self.last
        key = (day.month, day.day)
        lo, hi = (self.first.month, self.first.day), (self.last.month, self.last.day)
        if lo <= hi:
            return lo <= key <= hi
        return key >= lo or key <= hi


class BusinessCalendar:
    """Weekly hours and holidays in a zone (module docstring). Immutable."""

    __slots__ = ("holidays", "weekly", "zone")

    def __init__(
        self,
        zone: ZoneInfo | str = "UTC",
        weekly: Iterable[OpenHours] = (),
        holidays: Iterable[ClosedDays] = (),
    ) -> None:
        if isinstance(zone, str):
            try:
                zone = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone!r}") from None
        self.zone = zone
        self.weekly = tuple(weekly)
        self.holidays = tuple(holidays)

    def _day_pieces(self, day: date) -> list[tuple[int, int]]:
        """Open [start, end) seconds of wall time within local ``day``, merged."""
        if any(h.covers(day) for h in self.holidays):
            return []
        if not self.weekly:
            return [(0, _DAY)]
        pieces: list[tuple[int, int]] = []
        weekday, yesterday = day.weekday(), (day.weekday() - 1) % 7
        for r in self.weekly:
            crosses = r.end <= r.start
            if weekday in r.days:
                pieces.append((r.start, _DAY if crosses else r.end))
            if crosses and yesterday in r.days and r.end > 0:
                pieces.append((0, r.end))
        pieces.sort()
        merged: list[tuple[int, int]] = []
        for a, b in pieces:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def _intervals(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open UTC intervals in time order, from the local day of ``since`` on, for at
        most :data:`MAX_DAYS` days."""
        day = _aware(since).astimezone(self.zone).date()
        for _ in range(MAX_DAYS):
            midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
            for a, b in self._day_pieces(day):
                yield (
                    (midnight + timedelta(seconds=a)).astimezone(UTC),
                    (midnight + timedelta(seconds=b)).astimezone(UTC),
                )
            day += timedelta(days=1)

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment ``seconds`` business seconds after ``start`` (UTC). Zero seconds at a
        closed time is ``start`` itself. ValueError when the calendar never opens."""
        start = _aware(start).astimezone(UTC)
        if seconds <= 0:
            return start
        left = timedelta(seconds=seconds)
        for a, b in self._intervals(start):
            if b <= start:
                continue
            a = max(a, start)
            if left <= b - a:
                return a + left
            left -= b - a
        raise ValueError(f"the business calendar has no open hours within {MAX_DAYS} days")

    def between(self, a: datetime, b: datetime) -> float:
        """Business seconds in ``[a, b)``; 0 when ``b <= a``."""
        a, b = _aware(a).astimezone(UTC), _aware(b).astimezone(UTC)
        total = 0.0
        if b <= a:
            return total
        for lo, hi in self._intervals(a):
            if lo >= b:
                break
            lo, hi = max(lo, a), min(hi, b)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` is within business hours."""
        now = _aware(now).astimezone(UTC)
        for lo, hi in self._intervals(now):
            if lo > now:
                return False
            if now < hi:
                return True
        return False


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: business time needs aware datetimes")
    return value

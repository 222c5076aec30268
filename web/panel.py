"""Figures the web panel shows, computed from the store's rows (no I/O here).

- :func:`today_figures`: an agent's day — queue calls handled, their average handle time,
  offers missed, time paused —
  from their agent state log (``/api/agents/{id}/states``) and call records (``/api/cdrs``).
- :func:`service_level_class`: the wallboard's colour for a queue's service level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from crm import AgentStateData, CallRecordData, Disposition

__all__ = [
    "SL_AMBER",
    "SL_GREEN",
    "TodayFigures",
    "format_seconds",
    "service_level_class",
    "today_figures",
]

SL_GREEN = 0.80  # at or above: green
SL_AMBER = 0.60  # at or above (below green): amber; below: red
PAUSED = "NOT_READY"
WRAP_UP = "WRAP_UP"
# Agent state events that end an offer the agent did not take (acd.agents.AgentEvent).
MISSED_EVENTS = frozenset({"no_answer", "auto_pause"})


@dataclass(frozen=True, slots=True)
class TodayFigures:
    handled: int  # queue calls the agent answered
    missed: int  # offers that rang out or were refused
    pause_seconds: float  # time in NOT_READY (any reason)
    # (talk of the handled calls + time in wrap-up) / handled, as the reports' AHT; None
    # before the first handled call.
    aht_seconds: float | None = None


def today_figures(
    agent: str,
    states: Iterable[AgentStateData],
    records: Iterable[CallRecordData],
    since: datetime,
    now: datetime,
    state_now: str,
) -> TodayFigures:
    """``agent``'s figures from ``since`` (the day's start) to ``now``. ``states`` are their
    state changes since then (any order); ``records`` call records since then (other
    agents' are ignored); ``state_now`` their state now, which says whether they were
    paused all along when nothing changed today."""
    rows = sorted((r for r in states if r.agent == agent and r.time >= since), key=lambda r: r.time)
    missed = sum(1 for r in rows if r.event in MISSED_EVENTS)
    pause = _time_in(PAUSED, rows, since, now, state_now)
    wrap = _time_in(WRAP_UP, rows, since, now, state_now)
    talks = [
        (c.end - c.answer).total_seconds()
        for c in records
        if c.agent == agent and c.disposition == Disposition.ANSWERED and c.answer is not None
    ]
    handled = len(talks)
    aht = round((sum(talks) + wrap) / handled, 1) if handled else None
    return TodayFigures(handled, missed, round(pause, 1), aht)


def _time_in(
    state: str, rows: list[AgentStateData], since: datetime, now: datetime, state_now: str
) -> float:
    """Seconds spent in ``state`` from ``since`` to ``now`` (``rows`` sorted by time)."""
    was_in = rows[0].old_state == state if rows else state_now == state
    entered: datetime | None = since if was_in else None
    total = 0.0
    for r in rows:
        if r.new_state == state and entered is None:
            entered = r.time
        elif r.new_state != state and entered is not None:
            total += (r.time - entered).total_seconds()
            entered = None
    if entered is not None:
        total += max(0.0, (now - entered).total_seconds())
    return total


def service_level_class(level: float | None) -> str:
    """``sl-green`` (≥ 80 %), ``sl-amber`` (≥ 60 %), ``sl-red`` (below), ``sl-none`` (no
    calls yet); ``level`` is a fraction (0..1)."""
    if level is None:
        return "sl-none"
    if level >= SL_GREEN:
        return "sl-green"
    if level >= SL_AMBER:
        return "sl-amber"
    return "sl-red"


def format_seconds(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (as the page's clock shows times)."""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

"""Call-centre reports computed from the store's logs (docs/reports.md says every formula).

Theory of operation
-------------------
A report is a pure function of plain data: the call records, queue events, agent state
changes and survey results of a time range (:class:`ReportData`, fetched once with the async
store by :func:`fetch`) and a :class:`ReportQuery` (the range, the period, the time zone, the
filters and the counting settings). :func:`run_report` fetches on the event loop and computes
in a worker thread (``asyncio.to_thread``), so a month of 15-minute intervals never stalls
calls.

Two ways of placing a figure in an interval, and which figure uses which:

- *counted at start*: a call (or queue entry, survey, state change) belongs to the interval
  in which it started — the call record's ``start``, the queue entry's ``ENTERQUEUE`` time,
  an agent event's own time, a survey's ``created_at``.
- *split by time*: a duration that crosses an interval boundary is cut at the boundary and
  each interval gets the part that lies in it — talk time (``answer .. end`` of a record) and
  the agent state durations (logged in, idle, not ready, ringing, on call, wrap-up).

Intervals are cut in the configured zone: a day is local midnight to local midnight (23 or
25 hours on DST change days), sub-day periods are consecutive 15/30/60-minute steps of real
time aligned to the local clock (the repeated hour of an autumn change appears twice, with
its UTC offset in the label; the skipped spring hour does not appear).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm.store import (
    AgentStateData,
    CallRecordData,
    Disposition,
    QueueEventData,
    SurveyResultData,
    phone_digits,
)

if TYPE_CHECKING:
    from crm.store import Store

__all__ = [
    "PERIODS",
    "REPORTS",
    "Column",
    "Report",
    "ReportData",
    "ReportQuery",
    "ReportSettings",
    "compute",
    "fetch",
    "intervals",
    "run_report",
    "run_reports",
    "today",
]

PERIODS = ("15min", "30min", "hour", "day", "week", "month", "total")
_STEP_MINUTES = {"15min": 15, "30min": 30, "hour": 60}

# Queue entries are counted at ENTERQUEUE; their outcome may come later than ``until``:
# events are read this far past it (a queue's max wait is far shorter).
EVENT_MARGIN = timedelta(hours=12)
# A post-call survey is written right after the call: results are read this far past
# ``until`` so that a call answered just before ``until`` counts as offered a survey.
SURVEY_MARGIN = timedelta(hours=1)

# NOT_READY reasons that are breaks (the workload report's "breaks").
BREAK_REASONS = frozenset({"break", "lunch"})
# Queue events that end a queue entry, and where each keeps the seconds waited.
_ENTRY_END_WAIT = {
    "CONNECT": 0,
    "ABANDON": 2,
    "EXITWITHTIMEOUT": 2,
    "EXITEMPTY": 2,
    "EXITWITHKEY": 3,
    "CALLBACKREQUEST": 2,
}
_AGENT_EVENTS = frozenset(
    {"CONNECT", "RINGNOANSWER", "TRANSFER", "COMPLETEAGENT", "COMPLETECALLER", "CALLBACKCONNECT"}
)


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """How reports count, from the ``reports:`` config and the queues (``app/`` builds it).

    ``service_levels``: each queue's service-level threshold in seconds (20 when absent);
    ``agent_skills``: each agent's skill names (what the ``skill`` filter selects on)."""

    timezone: str = "UTC"
    short_abandon_seconds: float = 5.0
    first_contact_hours: float = 24.0
    service_levels: Mapping[str, float] = field(default_factory=dict)
    agent_skills: Mapping[str, frozenset[str]] = field(default_factory=dict)


DEFAULT_SERVICE_LEVEL = 20.0


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What to report on: ``since <= t < until`` (aware datetimes), cut into ``period``
    intervals in ``timezone``; ``queue``/``agent``/``skill``/``trunk`` filter (None = all).

    ``now`` ends agent states still open (an agent logged in right now is counted up to
    ``now``, never into the future); None means ``until``."""

    since: datetime
    until: datetime
    period: str = "total"
    timezone: str = "UTC"
    queue: str | None = None
    agent: str | None = None
    skill: str | None = None
    trunk: str | None = None
    short_abandon_seconds: float = 5.0
    first_contact_hours: float = 24.0
    service_levels: Mapping[str, float] = field(default_factory=dict)
    agent_skills: Mapping[str, frozenset[str]] = field(default_factory=dict)
    now: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until", "now"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}")
        _zone(self.timezone)

    @classmethod
    def from_settings(
        cls,
        settings: ReportSettings,
        since: datetime,
        until: datetime,
        period: str = "total",
        *,
        queue: str | None = None,
        agent: str | None = None,
        skill: str | None = None,
        trunk: str | None = None,
        now: datetime | None = None,
    ) -> ReportQuery:
        return cls(
            since=since,
            until=until,
            period=period,
            timezone=settings.timezone,
            queue=queue,
            agent=agent,
            skill=skill,
            trunk=trunk,
            short_abandon_seconds=settings.short_abandon_seconds,
            first_contact_hours=settings.first_contact_hours,
            service_levels=dict(settings.service_levels),
            agent_skills=dict(settings.agent_skills),
            now=now,
        )

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    @property
    def clock_end(self) -> datetime:
        """Where open agent states end: ``until``, or ``now`` when that is earlier."""
        return min(self.until, self.now) if self.now is not None else self.until

    def agents(self) -> frozenset[str] | None:
        """The agent ids the agent and skill filters allow (None: all)."""
        chosen: set[str] | None = None
        if self.agent is not None:
            chosen = {self.agent}
        if self.skill is not None:
            skilled = {a for a, s in self.agent_skills.items() if self.skill in s}
            chosen = skilled if chosen is None else chosen & skilled
        return frozenset(chosen) if chosen is not None else None


@dataclass(frozen=True, slots=True)
class Column:
    """A report column; ``unit`` is count, seconds, ratio (0..1), time or text."""

    key: str
    label: str
    unit: str


@dataclass(frozen=True, slots=True)
class Report:
    """A computed report: ``rows`` are dicts keyed by the column keys; ``totals`` is the
    row of the whole range (None when a total means nothing, as for the work log);
    ``chart`` names the x column and the y columns a chart draws."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None
    chart: tuple[str, tuple[str, ...]] | None = None
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": [{"key": c.key, "label": c.label, "unit": c.unit} for c in self.columns],
            "rows": self.rows,
            "totals": self.totals,
            "chart": (
                {"x": self.chart[0], "y": list(self.chart[1])} if self.chart is not None else None
            ),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class ReportData:
    """What reports are computed from (see :func:`fetch` for the ranges read)."""

    records: Sequence[CallRecordData] = ()
    events: Sequence[QueueEventData] = ()
    states: Sequence[AgentStateData] = ()
    surveys: Sequence[SurveyResultData] = ()


async def fetch(store: Store, q: ReportQuery) -> ReportData:
    """Read what a report over ``q`` needs: call records in progress during
    ``[since, until + first_contact_hours)`` (the later ones only tell whether a caller
    called again: first-contact resolution), queue events of ``[since, until +
    EVENT_MARGIN)``, agent states of ``[since, until)`` with each agent's state at
    ``since``, and survey results of ``[since, until + SURVEY_MARGIN)``."""
    fch = timedelta(hours=q.first_contact_hours)
    records = await store.call_records_overlapping(q.since, q.until + fch)
    events = await store.list_queue_events(since=q.since, until=q.until + EVENT_MARGIN)
    states = await store.agent_states_between(q.since, q.until)
    surveys = await store.survey_results_between(q.since, q.until + SURVEY_MARGIN)
    return ReportData(records, events, states, surveys)


async def run_report(store: Store, name: str, q: ReportQuery) -> Report:
    """Fetch on the loop, compute in a worker thread."""
    if name not in REPORTS:
        raise KeyError(name)
    intervals(q)  # too many: ValueError before anything is read
    data = await fetch(store, q)
    return await asyncio.to_thread(compute, name, q, data)


async def run_reports(store: Store, names: Sequence[str], q: ReportQuery) -> list[Report]:
    """Several reports over the same data: one fetch, one worker thread."""
    unknown = [n for n in names if n not in REPORTS]
    if unknown:
        raise KeyError(unknown[0])
    intervals(q)
    data = await fetch(store, q)
    return await asyncio.to_thread(lambda: [compute(n, q, data) for n in names])


# -- intervals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime  # UTC
    end: datetime  # UTC
    label: str


def today(timezone: str, now: datetime) -> tuple[datetime, datetime]:
    """The local day of ``now`` in ``timezone``: (its midnight, the next midnight), UTC."""
    zone = _zone(timezone)
    day = now.astimezone(zone).date()
    return _local_midnight(day, zone), _local_midnight(day + timedelta(days=1), zone)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _floor(t: datetime, period: str, zone: ZoneInfo) -> datetime:
    local = t.astimezone(zone)
    if period in _STEP_MINUTES:
        step = _STEP_MINUTES[period]
        floored = local.replace(minute=local.minute - local.minute % step, second=0, microsecond=0)
        return floored.astimezone(UTC)
    day = local.date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return _local_midnight(day, zone)


def _next(b: datetime, period: str, zone: ZoneInfo) -> datetime:
    if period in _STEP_MINUTES:
        return b + timedelta(minutes=_STEP_MINUTES[period])
    day = b.astimezone(zone).date()
    if period == "day":
        return _local_midnight(day + timedelta(days=1), zone)
    if period == "week":
        return _local_midnight(day + timedelta(days=7), zone)
    first = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return _local_midnight(first, zone)


def _label(start: datetime, period: str, zone: ZoneInfo) -> str:
    local = start.astimezone(zone)
    if period in _STEP_MINUTES:
        return local.isoformat(timespec="minutes")
    if period == "month":
        return local.strftime("%Y-%m")
    return local.date().isoformat()


# At most this many intervals in one report (a year of 15-minute intervals is 35 040).
MAX_INTERVALS = 40_000


def intervals(q: ReportQuery) -> list[Interval]:
    """The intervals of ``q``: cut at the period's boundaries in ``q.timezone`` and clipped
    to ``[since, until)`` (a range that does not start on a boundary has a short first
    interval). ValueError beyond :data:`MAX_INTERVALS`."""
    if q.period == "total":
        return [Interval(q.since, q.until, "total")]
    zone = q.zone
    out: list[Interval] = []
    b = _floor(q.since, q.period, zone)
    while b < q.until:
        if len(out) >= MAX_INTERVALS:
            raise ValueError(f"more than {MAX_INTERVALS} {q.period} intervals: use a longer period")
        nxt = _next(b, q.period, zone)
        out.append(Interval(max(b, q.since), min(nxt, q.until), _label(b, q.period, zone)))
        b = nxt
    return out


class _Grid:
    """Finds the interval of an instant and splits a span across intervals."""

    def __init__(self, cuts: Sequence[Interval]) -> None:
        self.cuts = list(cuts)
        self.starts = [c.start for c in self.cuts]
        self.end = self.cuts[-1].end

    def index(self, t: datetime) -> int | None:
        if t < self.starts[0] or t >= self.end:
            return None
        return bisect.bisect_right(self.starts, t) - 1

    def spread(self, start: datetime, end: datetime) -> Iterator[tuple[int, float]]:
        """(interval index, seconds of ``[start, end)`` inside it) for each overlap."""
        start, end = max(start, self.starts[0]), min(end, self.end)
        if end <= start:
            return
        i = bisect.bisect_right(self.starts, start) - 1
        while i < len(self.cuts) and self.cuts[i].start < end:
            c = self.cuts[i]
            seconds = (min(end, c.end) - max(start, c.start)).total_seconds()
            if seconds > 0:
                yield i, seconds
            i += 1


# -- prepared data -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """A caller's stay in one queue: from ENTERQUEUE to the event that ended it."""

    call: str
    queue: str
    start: datetime
    outcome: str | None = None
    wait: float | None = None


@dataclass(frozen=True, slots=True)
class _Span:
    agent: str
    state: str
    reason: str | None
    start: datetime
    end: datetime


def _float(fields: tuple[str, ...], index: int) -> float | None:
    try:
        return float(fields[index])
    except (IndexError, ValueError):
        return None


def _is_survey(r: CallRecordData) -> bool:
    return r.callee.startswith("survey:")


class _Prepared:
    """The fetched data with the joins reports share: call chains, queue entries, agent
    state spans, all filtered as the query says."""

    def __init__(self, q: ReportQuery, data: ReportData) -> None:
        self.q = q
        self.agents = q.agents()
        self.short = q.short_abandon_seconds
        by_id = {r.record_id: r for r in data.records if r.record_id and not r.linked_id}
        self.all_records = list(data.records)
        self._roots = by_id
        self.by_record_id = {r.record_id: r for r in data.records if r.record_id}
        self.chains: dict[int, list[CallRecordData]] = defaultdict(list)
        for r in data.records:
            self.chains[id(self.root(r))].append(r)
        # Queue calls (by queue-log call id) a trunk filter keeps.
        self.trunk_calls: set[str] | None = None
        if q.trunk is not None:
            self.trunk_calls = set()
            for r in data.records:
                if self.root(r).trunk == q.trunk:
                    for key in (r.queue_call_id, r.record_id):
                        if key:
                            self.trunk_calls.add(key)
        self.entries = self._entries(data.events)
        self.agent_events = [
            e
            for e in data.events
            if e.event in _AGENT_EVENTS
            and q.since <= e.time < q.until
            and self.agent_ok(e.agent)
            and (q.queue is None or e.queue == q.queue)
            and (self.trunk_calls is None or e.call_id in self.trunk_calls)
        ]
        self.ring_no_answer = [
            e
            for e in data.events
            if e.event == "RINGNOANSWER"
            and q.since <= e.time < q.until
            and (q.queue is None or e.queue == q.queue)
            and (self.trunk_calls is None or e.call_id in self.trunk_calls)
        ]
        self.state_rows = [s for s in data.states if self.agent_ok(s.agent)]
        self.spans = self._spans(self.state_rows)
        self.surveys_all = list(data.surveys)
        self.surveyed = {s.record_id for s in data.surveys}
        self.surveys = [
            s
            for s in data.surveys
            if q.since <= s.created_at < q.until
            and self.agent_ok(s.agent)
            and self._survey_call_ok(s)
        ]

    # filters
    def agent_ok(self, agent: str | None) -> bool:
        return self.agents is None or (agent is not None and agent in self.agents)

    def root(self, r: CallRecordData) -> CallRecordData:
        if r.linked_id:
            return self._roots.get(r.linked_id, r)
        return r

    def queue_of(self, r: CallRecordData) -> str | None:
        return r.queue or self.root(r).queue

    def in_range(self, t: datetime) -> bool:
        return self.q.since <= t < self.q.until

    def conversation_ok(self, root: CallRecordData) -> bool:
        """The queue, agent/skill and trunk filters on a conversation (its first row)."""
        q = self.q
        if q.queue is not None and root.queue != q.queue:
            return False
        if q.trunk is not None and root.trunk != q.trunk:
            return False
        return self.agents is None or any(
            s.agent in self.agents for s in self.chains[id(root)] if s.agent
        )

    def segment_ok(self, r: CallRecordData) -> bool:
        """The filters on one segment: its chain's queue and trunk, its own agent."""
        q = self.q
        root = self.root(r)
        if q.queue is not None and self.queue_of(r) != q.queue:
            return False
        if q.trunk is not None and root.trunk != q.trunk:
            return False
        return self.agent_ok(r.agent) if self.agents is not None else True

    def _survey_call_ok(self, s: SurveyResultData) -> bool:
        if self.q.queue is None and self.q.trunk is None:
            return True
        rated = self.by_record_id.get(s.record_id)
        if rated is None:
            return False
        return self.segment_ok(rated) or (
            self.agents is not None and self.conversation_ok(self.root(rated))
        )

    # record selections
    def roots(self, direction: str) -> list[CallRecordData]:
        """First rows of conversations in ``direction`` that started in range, filtered."""
        return [
            r
            for r in self.all_records
            if not r.linked_id
            and r.direction == direction
            and self.in_range(r.start)
            and self.conversation_ok(r)
        ]

    def talk_segments(self) -> list[CallRecordData]:
        """Segments of inbound and outbound conversations a person answered, filtered:
        ``answer`` set and not Switchboard's own answer (an IVR, a mailbox or a survey
        answers with ``answer == system_answer``: the caller talks to a machine)."""
        return [
            r
            for r in self.all_records
            if r.answer is not None
            and r.answer != r.system_answer
            and not _is_survey(r)
            and self.root(r).direction in ("inbound", "outbound")
            and self.segment_ok(r)
        ]

    def agent_segments(self) -> list[CallRecordData]:
        """Answered segments an agent took (``agent`` set) that started in range."""
        return [
            r
            for r in self.talk_segments()
            if r.agent is not None and r.agent != "" and self.in_range(r.start)
        ]

    # queue entries
    def _entries(self, events: Iterable[QueueEventData]) -> list[_Entry]:
        q = self.q
        open_: dict[tuple[str, str], _Entry] = {}
        out: list[_Entry] = []
        for e in events:
            key = (e.call_id, e.queue)
            if e.event == "ENTERQUEUE":
                entry = _Entry(e.call_id, e.queue, e.time)
                open_[key] = entry
                if (
                    self.in_range(e.time)
                    and (q.queue is None or e.queue == q.queue)
                    and (self.trunk_calls is None or e.call_id in self.trunk_calls)
                ):
                    out.append(entry)
            elif e.event in _ENTRY_END_WAIT:
                entry_ = open_.pop(key, None)
                if entry_ is not None:
                    entry_.outcome = e.event
                    entry_.wait = _float(e.data, _ENTRY_END_WAIT[e.event])
        return out

    # agent states
    def _spans(self, rows: Sequence[AgentStateData]) -> list[_Span]:
        q = self.q
        end = q.clock_end
        by_agent: dict[str, list[AgentStateData]] = defaultdict(list)
        for s in rows:
            by_agent[s.agent].append(s)
        spans: list[_Span] = []
        for agent, changes in by_agent.items():
            before = [c for c in changes if c.time < q.since]
            inside = [c for c in changes if q.since <= c.time < q.until]
            if before:
                state, reason = before[-1].new_state, before[-1].reason
            elif inside:
                state, reason = inside[0].old_state, None
            else:
                continue
            t = q.since
            for c in inside:
                if c.time > t and t < end:
                    spans.append(_Span(agent, state, reason, t, min(c.time, end)))
                t = max(t, c.time)
                state, reason = c.new_state, c.reason
            if t < end:
                spans.append(_Span(agent, state, reason, t, end))
        return spans


# State figures of a span: (figure, predicate on the span).
_STATE_FIGURES: tuple[tuple[str, Callable[[_Span], bool]], ...] = (
    ("logged_in_seconds", lambda s: s.state != "LOGGED_OUT"),
    ("idle_seconds", lambda s: s.state == "AVAILABLE"),
    ("not_ready_seconds", lambda s: s.state == "NOT_READY"),
    ("break_seconds", lambda s: s.state == "NOT_READY" and s.reason in BREAK_REASONS),
    ("ringing_seconds", lambda s: s.state == "RINGING"),
    ("on_call_seconds", lambda s: s.state == "ON_CALL"),
    ("wrap_up_seconds", lambda s: s.state == "WRAP_UP"),
)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _seconds(value: float) -> float:
    return round(value, 3)


def _tidy(row: dict[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in columns:
        value = row.get(c.key)
        if c.unit == "seconds" and isinstance(value, float):
            value = _seconds(value)
        elif c.unit == "ratio" and isinstance(value, float):
            value = round(value, 4)
        elif value is None and c.key in _ADDITIVE:
            value = 0 if c.unit == "count" else 0.0
        if c.unit == "count" and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[c.key] = value
    return out


def _cols(*spec: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(k, label, unit) for k, label, unit in spec)


def _sum_rows(rows: Iterable[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    keys = list(keys)
    total: dict[str, float] = dict.fromkeys(keys, 0)
    for row in rows:
        for k in keys:
            total[k] += row.get(k) or 0
    return total


def _build(
    name: str,
    title: str,
    columns: tuple[Column, ...],
    keyed: Mapping[Any, dict[str, Any]],
    order: Sequence[Any],
    label: Callable[[Any], dict[str, Any]],
    derive: Callable[[dict[str, Any]], None],
    chart: tuple[str, tuple[str, ...]] | None,
    notes: tuple[str, ...] = (),
) -> Report:
    """Rows in ``order`` from per-key additive figures; ``derive`` adds the ratios to a row
    and to the totals (recomputed from the summed figures, never averaged)."""
    # every additive figure, shown or not (a derived column may need one that is not shown)
    additive = sorted({k for key in order for k in keyed.get(key, {}) if k in _ADDITIVE})
    rows: list[dict[str, Any]] = []
    for key in order:
        row = {**label(key), **keyed.get(key, {})}
        derive(row)
        rows.append(_tidy(row, columns))
    totals: dict[str, Any] = dict(_sum_rows((keyed.get(k, {}) for k in order), additive))
    derive(totals)
    first = columns[0].key
    totals[first] = "total"
    return Report(name, title, columns, rows, _tidy(totals, columns), chart, notes)


# Columns summed into the totals row (everything else is derived or a label).
_ADDITIVE = frozenset(
    {
        "inbound",
        "answered",
        "caller_hangups",
        "outbound",
        "outbound_answered",
        "answered_calls",
        "answered_talk_seconds",
        "talk_seconds",
        "logged_in_seconds",
        "idle_seconds",
        "not_ready_seconds",
        "not_ready_count",
        "break_seconds",
        "ringing_seconds",
        "on_call_seconds",
        "wrap_up_seconds",
        "offered",
        "no_answer",
        "transferred",
        "completed_by_agent",
        "completed_by_caller",
        "callbacks_connected",
        "calls_talked",
        "satisfied",
        "neutral",
        "unsatisfied",
        "hung_up_without_rating",
        "invalid_key",
        "no_rating_entered",
        "not_offered",
        "queued",
        "answered_in_sl",
        "abandoned",
        "short_abandons",
        "timed_out",
        "exited_by_key",
        "exited_empty",
        "callbacks",
        "ended",
        "total_wait_seconds",
        "answered_wait_seconds",
        "ivr_hangups",
        "queue_hangups",
        "overflows",
        "agent_no_answer",
        "placed",
        "handled",
        "fcr_contacts",
        "fcr_resolved",
        "rated",
        "acw_seconds",
    }
)


# -- the reports -------------------------------------------------------------------------------


def _period_keys(p: _Prepared) -> tuple[_Grid, list[int], Callable[[int], dict[str, Any]]]:
    grid = _Grid(intervals(p.q))
    return grid, list(range(len(grid.cuts))), lambda i: {"period": grid.cuts[i].label}


def _traffic_figures(
    p: _Prepared, place: Callable[[datetime], Any], spread: Callable[[datetime, datetime], Any]
) -> dict[Any, dict[str, Any]]:
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in p.roots("inbound"):
        k = place(r.start)
        acc[k]["inbound"] += 1
        if r.disposition is Disposition.ANSWERED:
            acc[k]["answered"] += 1
        elif r.hangup_side.value == "caller":
            acc[k]["caller_hangups"] += 1
    for r in p.roots("outbound"):
        k = place(r.start)
        acc[k]["outbound"] += 1
        if r.answer is not None:
            acc[k]["outbound_answered"] += 1
    for r in p.talk_segments():
        assert r.answer is not None
        for k, seconds in spread(r.answer, r.end):
            acc[k]["talk_seconds"] += seconds
    return acc


def _answer_rate(row: dict[str, Any]) -> None:
    row["answer_rate"] = _ratio(row.get("answered", 0), row.get("inbound", 0))


def report_traffic(p: _Prepared) -> Report:
    grid, order, label = _period_keys(p)
    acc = _traffic_figures(p, grid.index, grid.spread)
    cols = _cols(
        ("period", "Period", "text"),
        ("inbound", "Inbound calls", "count"),
        ("answered", "Answered", "count"),
        ("caller_hangups", "Caller hang-ups", "count"),
        ("answer_rate", "Answer rate", "ratio"),
        ("outbound", "Outbound calls", "count"),
        ("outbound_answered", "Outbound answered", "count"),
        ("talk_seconds", "Talk time", "seconds"),
    )
    notes = ("No per-region breakdown: call records carry no region.",)
    return _build(
        "traffic",
        "Traffic",
        cols,
        acc,
        order,
        label,
        _answer_rate,
        ("period", ("inbound", "answered", "outbound")),
        notes,
    )


def _state_figures(
    p: _Prepared, key: Callable[[_Span], Any], spread: Callable[[datetime, datetime], Any] | None
) -> dict[Any, dict[str, Any]]:
    """Agent state durations; split across intervals when ``spread`` is given (the key
    function then receives the span and the interval index is combined by the caller)."""
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for s in p.spans:
        figures = [name for name, test in _STATE_FIGURES if test(s)]
        if not figures:
            continue
        if spread is None:
            parts: Iterable[tuple[Any, float]] = [(key(s), (s.end - s.start).total_seconds())]
        else:
            parts = spread(s.start, s.end)
        for k, seconds in parts:
            for name in figures:
                acc[k][name] += seconds
    return acc


def _merge(*accs: Mapping[Any, Mapping[str, Any]]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for acc in accs:
        for k, figures in acc.items():
            for name, value in figures.items():
                out[k][name] += value
    return out


def _occupancy(row: dict[str, Any]) -> None:
    busy = row.get("on_call_seconds", 0) + row.get("wrap_up_seconds", 0)
    available = row.get("logged_in_seconds", 0) - row.get("not_ready_seconds", 0)
    row["occupancy"] = _ratio(busy, available)


def report_talk(p: _Prepared) -> Report:
    grid, order, label = _period_keys(p)
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in p.talk_segments():
        assert r.answer is not None
        for k, seconds in grid.spread(r.answer, r.end):
            acc[k]["talk_seconds"] += seconds
        if p.in_range(r.start):
            at = grid.index(r.start)
            acc[at]["answered_talk_seconds"] += r.billable_seconds
            if not r.linked_id:
                acc[at]["answered_calls"] += 1
    states = _state_figures(p, lambda s: None, grid.spread)
    acc = _merge(acc, states)

    def derive(row: dict[str, Any]) -> None:
        row["average_talk_seconds"] = _ratio(
            row.get("answered_talk_seconds", 0), row.get("answered_calls", 0)
        )
        row["utilisation"] = _ratio(row.get("on_call_seconds", 0), row.get("logged_in_seconds", 0))
        _occupancy(row)

    cols = _cols(
        ("period", "Period", "text"),
        ("answered_calls", "Answered calls", "count"),
        ("answered_talk_seconds", "Talk of calls started here", "seconds"),
        ("average_talk_seconds", "Average talk", "seconds"),
        ("talk_seconds", "Talk time (split)", "seconds"),
        ("logged_in_seconds", "Logged in", "seconds"),
        ("on_call_seconds", "On call", "seconds"),
        ("wrap_up_seconds", "Wrap-up", "seconds"),
        ("not_ready_seconds", "Not ready", "seconds"),
        ("utilisation", "Utilisation", "ratio"),
        ("occupancy", "Occupancy", "ratio"),
    )
    return _build(
        "talk",
        "Talk time and utilisation",
        cols,
        acc,
        order,
        label,
        derive,
        ("period", ("talk_seconds", "logged_in_seconds")),
    )


def _agents_seen(p: _Prepared, acc: Mapping[str, Any]) -> list[str]:
    return sorted(a for a in acc if a)


def _agent_talk(p: _Prepared) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in p.agent_segments():
        assert r.agent is not None
        acc[r.agent]["talk_seconds"] += r.billable_seconds
        acc[r.agent]["calls_talked"] += 1
    for r in p.roots("outbound"):
        if r.agent and p.agent_ok(r.agent):
            acc[r.agent]["outbound"] += 1
    return acc


def _agent_event_figures(p: _Prepared) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    names = {
        "CONNECT": "answered",
        "RINGNOANSWER": "no_answer",
        "TRANSFER": "transferred",
        "COMPLETEAGENT": "completed_by_agent",
        "COMPLETECALLER": "completed_by_caller",
        "CALLBACKCONNECT": "callbacks_connected",
    }
    for e in p.agent_events:
        acc[e.agent][names[e.event]] += 1
        if e.event in ("CONNECT", "RINGNOANSWER"):
            acc[e.agent]["offered"] += 1
    return acc


def report_agent_traffic(p: _Prepared) -> Report:
    acc = _merge(_agent_event_figures(p), _agent_talk(p))

    def derive(row: dict[str, Any]) -> None:
        row["answer_ratio"] = _ratio(row.get("answered", 0), row.get("offered", 0))
        row["average_talk_seconds"] = _ratio(row.get("talk_seconds", 0), row.get("calls_talked", 0))

    cols = _cols(
        ("agent", "Agent", "text"),
        ("offered", "Offered", "count"),
        ("answered", "Answered", "count"),
        ("no_answer", "Rang unanswered", "count"),
        ("answer_ratio", "Answer ratio", "ratio"),
        ("transferred", "Transferred", "count"),
        ("completed_by_agent", "Agent hung up", "count"),
        ("completed_by_caller", "Caller hung up", "count"),
        ("callbacks_connected", "Callbacks connected", "count"),
        ("outbound", "Outbound calls", "count"),
        ("calls_talked", "Calls talked", "count"),
        ("talk_seconds", "Talk time", "seconds"),
        ("average_talk_seconds", "Average talk", "seconds"),
    )
    return _build(
        "agent_traffic",
        "Agent traffic",
        cols,
        acc,
        _agents_seen(p, acc),
        lambda a: {"agent": a},
        derive,
        ("agent", ("answered", "no_answer", "outbound")),
    )


def _not_ready_counts(p: _Prepared) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for s in p.state_rows:
        if p.in_range(s.time) and s.new_state == "NOT_READY" and s.old_state != "NOT_READY":
            acc[s.agent]["not_ready_count"] += 1
    return acc


def report_workload(p: _Prepared) -> Report:
    states = _state_figures(p, lambda s: s.agent, None)
    answered = {a: {"answered": f.get("answered", 0)} for a, f in _agent_event_figures(p).items()}
    talk = {a: {"talk_seconds": f.get("talk_seconds", 0)} for a, f in _agent_talk(p).items()}
    acc = _merge(states, _not_ready_counts(p), answered, talk)
    cols = _cols(
        ("agent", "Agent", "text"),
        ("logged_in_seconds", "Logged in", "seconds"),
        ("idle_seconds", "Idle (available)", "seconds"),
        ("ringing_seconds", "Ringing", "seconds"),
        ("on_call_seconds", "On call", "seconds"),
        ("wrap_up_seconds", "Wrap-up", "seconds"),
        ("not_ready_seconds", "Not ready", "seconds"),
        ("not_ready_count", "Times not ready", "count"),
        ("break_seconds", "Breaks", "seconds"),
        ("answered", "Answered", "count"),
        ("talk_seconds", "Talk time", "seconds"),
    )
    return _build(
        "workload",
        "Agent workload",
        cols,
        acc,
        _agents_seen(p, acc),
        lambda a: {"agent": a},
        lambda row: None,
        ("agent", ("idle_seconds", "on_call_seconds", "wrap_up_seconds", "not_ready_seconds")),
    )


_SURVEY_COLUMN = {
    "satisfied": "satisfied",
    "neutral": "neutral",
    "unsatisfied": "unsatisfied",
    "hung up without rating": "hung_up_without_rating",
    "invalid key": "invalid_key",
    "no rating entered": "no_rating_entered",
}


def _csat(row: dict[str, Any]) -> None:
    rated = row.get("satisfied", 0) + row.get("neutral", 0) + row.get("unsatisfied", 0)
    row["rated"] = rated
    row["csat"] = _ratio(row.get("satisfied", 0), rated)


def _survey_figures(p: _Prepared) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for s in p.surveys:
        acc[s.agent][_SURVEY_COLUMN[s.result]] += 1
    return acc


def report_satisfaction(p: _Prepared) -> Report:
    acc = _survey_figures(p)
    for r in p.agent_segments():
        if r.direction != "outbound" and (r.record_id is None or r.record_id not in p.surveyed):
            assert r.agent is not None
            acc[r.agent]["not_offered"] += 1
    cols = _cols(
        ("agent", "Agent", "text"),
        ("satisfied", "Satisfied", "count"),
        ("neutral", "Neutral", "count"),
        ("unsatisfied", "Unsatisfied", "count"),
        ("hung_up_without_rating", "Hung up without rating", "count"),
        ("invalid_key", "Invalid key", "count"),
        ("no_rating_entered", "No rating entered", "count"),
        ("not_offered", "Not offered", "count"),
        ("rated", "Rated", "count"),
        ("csat", "CSAT", "ratio"),
    )
    return _build(
        "satisfaction",
        "Customer satisfaction",
        cols,
        acc,
        _agents_seen(p, acc),
        lambda a: {"agent": a},
        _csat,
        ("agent", ("satisfied", "neutral", "unsatisfied")),
    )


def report_work_log(p: _Prepared) -> Report:
    zone = p.q.zone
    end = p.q.clock_end
    rows: list[dict[str, Any]] = []
    by_agent: dict[str, list[AgentStateData]] = defaultdict(list)
    for s in p.state_rows:
        if p.in_range(s.time):
            by_agent[s.agent].append(s)
    for changes in by_agent.values():
        for i, s in enumerate(changes):
            nxt = changes[i + 1].time if i + 1 < len(changes) else end
            rows.append(
                {
                    "time": s.time.astimezone(zone).isoformat(),
                    "agent": s.agent,
                    "old_state": s.old_state,
                    "new_state": s.new_state,
                    "event": s.event,
                    "reason": s.reason or "",
                    "seconds": _seconds(max(0.0, (min(nxt, end) - s.time).total_seconds())),
                    "_at": s.time,
                }
            )
    rows.sort(key=lambda r: (r["_at"], r["agent"]))
    for r in rows:
        del r["_at"]
    cols = _cols(
        ("time", "Time", "time"),
        ("agent", "Agent", "text"),
        ("old_state", "From", "text"),
        ("new_state", "To", "text"),
        ("event", "Event", "text"),
        ("reason", "Reason", "text"),
        ("seconds", "Seconds in the new state", "seconds"),
    )
    return Report("work_log", "Agent work log", cols, rows, None)


def report_agent_summary(p: _Prepared) -> Report:
    states = _state_figures(p, lambda s: s.agent, None)
    keep = ("logged_in_seconds", "not_ready_seconds", "on_call_seconds", "wrap_up_seconds")
    states = {a: {k: f.get(k, 0.0) for k in keep} for a, f in states.items()}
    answered = {a: {"answered": f.get("answered", 0)} for a, f in _agent_event_figures(p).items()}
    surveys = {
        a: {k: f.get(k, 0) for k in ("satisfied", "neutral", "unsatisfied")}
        for a, f in _survey_figures(p).items()
    }
    acc = _merge(states, answered, _agent_talk(p), surveys)

    def derive(row: dict[str, Any]) -> None:
        row["acw_seconds"] = row.get("wrap_up_seconds", 0.0)
        row["aht_seconds"] = _ratio(
            row.get("talk_seconds", 0) + row["acw_seconds"], row.get("calls_talked", 0)
        )
        _occupancy(row)
        _csat(row)

    cols = _cols(
        ("agent", "Agent", "text"),
        ("logged_in_seconds", "Logged in", "seconds"),
        ("not_ready_seconds", "Not ready", "seconds"),
        ("answered", "Answered queue calls", "count"),
        ("outbound", "Outbound calls", "count"),
        ("calls_talked", "Calls talked", "count"),
        ("talk_seconds", "Talk time", "seconds"),
        ("acw_seconds", "After-call work", "seconds"),
        ("aht_seconds", "Average handle time", "seconds"),
        ("occupancy", "Occupancy", "ratio"),
        ("rated", "Rated", "count"),
        ("csat", "CSAT", "ratio"),
    )
    return _build(
        "agent_summary",
        "Agent summary",
        cols,
        acc,
        _agents_seen(p, acc),
        lambda a: {"agent": a},
        derive,
        ("agent", ("talk_seconds", "acw_seconds")),
    )


def report_hourly(p: _Prepared) -> Report:
    hours = _Grid(intervals(dataclasses.replace(p.q, period="hour")))
    zone = p.q.zone

    def hour_of(t: datetime) -> int:
        return t.astimezone(zone).hour

    def place(t: datetime) -> int | None:
        return hour_of(t) if hours.index(t) is not None else None

    def spread(start: datetime, end: datetime) -> Iterator[tuple[int, float]]:
        for i, seconds in hours.spread(start, end):
            yield hour_of(hours.cuts[i].start), seconds

    acc = _traffic_figures(p, place, spread)
    for e in p.entries:
        k = hour_of(e.start)
        acc[k]["queued"] += 1
        if e.outcome == "ABANDON" and (e.wait or 0) > p.short:
            acc[k]["abandoned"] += 1
    cols = _cols(
        ("hour", "Hour", "text"),
        ("inbound", "Inbound calls", "count"),
        ("answered", "Answered", "count"),
        ("caller_hangups", "Caller hang-ups", "count"),
        ("answer_rate", "Answer rate", "ratio"),
        ("outbound", "Outbound calls", "count"),
        ("queued", "Queued", "count"),
        ("abandoned", "Abandoned", "count"),
        ("talk_seconds", "Talk time", "seconds"),
    )
    return _build(
        "hourly",
        "Traffic by hour of day",
        cols,
        acc,
        list(range(24)),
        lambda h: {"hour": f"{h:02d}:00"},
        _answer_rate,
        ("hour", ("inbound", "answered", "queued")),
    )


def _queue_figures(p: _Prepared, place: Callable[[_Entry], Any]) -> dict[Any, dict[str, Any]]:
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for e in p.entries:
        a = acc[place(e)]
        a["queued"] += 1
        if e.outcome is None:
            continue
        wait = e.wait or 0.0
        a["ended"] += 1
        a["total_wait_seconds"] += wait
        if e.outcome == "CONNECT":
            a["answered"] += 1
            a["answered_wait_seconds"] += wait
            threshold = p.q.service_levels.get(e.queue, DEFAULT_SERVICE_LEVEL)
            if wait <= threshold:
                a["answered_in_sl"] += 1
        elif e.outcome == "ABANDON":
            a["abandoned" if wait > p.short else "short_abandons"] += 1
        elif e.outcome == "EXITWITHTIMEOUT":
            a["timed_out"] += 1
        elif e.outcome == "EXITWITHKEY":
            a["exited_by_key"] += 1
        elif e.outcome == "EXITEMPTY":
            a["exited_empty"] += 1
        elif e.outcome == "CALLBACKREQUEST":
            a["callbacks"] += 1
    return acc


def _queue_kpis(row: dict[str, Any]) -> None:
    answered, abandoned = row.get("answered", 0), row.get("abandoned", 0)
    row["asa_seconds"] = _ratio(row.get("answered_wait_seconds", 0), answered)
    row["average_wait_seconds"] = _ratio(row.get("total_wait_seconds", 0), row.get("ended", 0))
    row["abandon_rate"] = _ratio(abandoned, row.get("queued", 0) - row.get("short_abandons", 0))
    row["service_level"] = _ratio(row.get("answered_in_sl", 0), answered + abandoned)


def report_queue_stats(p: _Prepared) -> Report:
    grid = _Grid(intervals(p.q))
    acc = _queue_figures(p, lambda e: (grid.index(e.start), e.queue))
    order = sorted(acc, key=lambda k: (k[0], k[1]))
    cols = _cols(
        ("period", "Period", "text"),
        ("queue", "Queue", "text"),
        ("queued", "Queued", "count"),
        ("answered", "Answered", "count"),
        ("answered_in_sl", "Answered within SL", "count"),
        ("abandoned", "Abandoned", "count"),
        ("short_abandons", "Short abandons", "count"),
        ("timed_out", "Timed out", "count"),
        ("exited_by_key", "Left by key", "count"),
        ("exited_empty", "Left empty queue", "count"),
        ("callbacks", "Callback requests", "count"),
        ("ended", "Ended", "count"),
        ("total_wait_seconds", "Total wait", "seconds"),
        ("answered_wait_seconds", "Wait of answered", "seconds"),
        ("asa_seconds", "ASA", "seconds"),
        ("average_wait_seconds", "Average wait", "seconds"),
        ("abandon_rate", "Abandon rate", "ratio"),
        ("service_level", "Service level", "ratio"),
    )
    report = _build(
        "queue_stats",
        "Queue statistics",
        cols,
        acc,
        order,
        lambda k: {"period": grid.cuts[k[0]].label, "queue": k[1]},
        _queue_kpis,
        ("queue", ("answered", "abandoned", "short_abandons")),
    )
    assert report.totals is not None
    report.totals["queue"] = ""
    return report


def _ivr_hangup(r: CallRecordData) -> bool:
    return (
        r.system_answer is not None
        and not r.queue
        and not r.agent
        and r.hangup_side.value == "caller"
        and (r.answer is None or r.answer == r.system_answer)
    )


def report_call_loss(p: _Prepared) -> Report:
    grid, order, label = _period_keys(p)
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in p.roots("inbound"):
        if _ivr_hangup(r) and len(p.chains[id(r)]) == 1:
            acc[grid.index(r.start)]["ivr_hangups"] += 1
    for e in p.entries:
        k = grid.index(e.start)
        if e.outcome == "ABANDON":
            acc[k]["queue_hangups" if (e.wait or 0) > p.short else "short_abandons"] += 1
        elif e.outcome in ("EXITWITHTIMEOUT", "EXITWITHKEY", "EXITEMPTY"):
            acc[k]["overflows"] += 1
    for ev in p.ring_no_answer:
        if p.agent_ok(ev.agent):
            acc[grid.index(ev.time)]["agent_no_answer"] += 1

    def derive(row: dict[str, Any]) -> None:
        row["lost"] = (
            row.get("ivr_hangups", 0) + row.get("queue_hangups", 0) + row.get("short_abandons", 0)
        )

    cols = _cols(
        ("period", "Period", "text"),
        ("ivr_hangups", "Hung up in the IVR", "count"),
        ("queue_hangups", "Hung up in the queue", "count"),
        ("short_abandons", "Short abandons", "count"),
        ("lost", "Lost callers", "count"),
        ("overflows", "Left the queue (overflow)", "count"),
        ("agent_no_answer", "Offers an agent let ring", "count"),
    )
    return _build(
        "call_loss",
        "Call-loss reasons",
        cols,
        acc,
        order,
        label,
        derive,
        ("period", ("ivr_hangups", "queue_hangups", "overflows", "agent_no_answer")),
    )


def report_outbound(p: _Prepared) -> Report:
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in p.roots("outbound"):
        a = acc[(r.agent or "", r.trunk or "")]
        a["placed"] += 1
        if r.callback_id is not None:
            a["callbacks"] += 1
        if r.answer is not None:
            a["answered"] += 1
        a["talk_seconds"] += sum(s.billable_seconds for s in p.chains[id(r)] if not _is_survey(s))

    def derive(row: dict[str, Any]) -> None:
        row["answer_rate"] = _ratio(row.get("answered", 0), row.get("placed", 0))
        row["average_talk_seconds"] = _ratio(row.get("talk_seconds", 0), row.get("answered", 0))

    cols = _cols(
        ("agent", "Agent", "text"),
        ("trunk", "Trunk", "text"),
        ("placed", "Calls placed", "count"),
        ("callbacks", "Of them callbacks", "count"),
        ("answered", "Answered", "count"),
        ("answer_rate", "Answer rate", "ratio"),
        ("talk_seconds", "Talk time", "seconds"),
        ("average_talk_seconds", "Average talk", "seconds"),
    )
    report = _build(
        "outbound",
        "Outbound statistics",
        cols,
        acc,
        sorted(acc),
        lambda k: {"agent": k[0], "trunk": k[1]},
        derive,
        ("agent", ("placed", "answered")),
    )
    assert report.totals is not None
    report.totals["trunk"] = ""
    return report


def report_kpis(p: _Prepared) -> Report:
    grid, order, label = _period_keys(p)
    acc = _merge(
        _queue_figures(p, lambda e: grid.index(e.start)),
        _state_figures(p, lambda s: None, grid.spread),
    )
    for r in p.agent_segments():
        if r.direction == "outbound":
            continue
        k = grid.index(r.start)
        acc[k]["handled"] += 1
        acc[k]["talk_seconds"] += r.billable_seconds
    # FCR: a contact an agent answered is resolved unless the same number calls in again
    # within first_contact_hours (whatever the filters: the caller came back).
    window = timedelta(hours=p.q.first_contact_hours)
    starts: dict[str, list[datetime]] = defaultdict(list)
    for r in p.all_records:
        if not r.linked_id and r.direction == "inbound":
            starts[phone_digits(r.caller) or r.caller].append(r.start)
    for r in p.roots("inbound"):
        if not any(s.agent for s in p.chains[id(r)]):
            continue
        k = grid.index(r.start)
        acc[k]["fcr_contacts"] += 1
        again = starts[phone_digits(r.caller) or r.caller]
        if not any(r.start < t <= r.start + window for t in again):
            acc[k]["fcr_resolved"] += 1
    for s in p.surveys:
        k = grid.index(s.created_at)
        if s.result in ("satisfied", "neutral", "unsatisfied"):
            acc[k][_SURVEY_COLUMN[s.result]] += 1

    def derive(row: dict[str, Any]) -> None:
        _queue_kpis(row)
        row["acw_seconds"] = row.get("wrap_up_seconds", 0.0)
        handled = row.get("handled", 0)
        row["aht_seconds"] = _ratio(row.get("talk_seconds", 0) + row["acw_seconds"], handled)
        row["average_acw_seconds"] = _ratio(row["acw_seconds"], handled)
        _occupancy(row)
        row["fcr"] = _ratio(row.get("fcr_resolved", 0), row.get("fcr_contacts", 0))
        _csat(row)

    cols = _cols(
        ("period", "Period", "text"),
        ("queued", "Queued", "count"),
        ("answered", "Answered", "count"),
        ("answered_in_sl", "Answered within SL", "count"),
        ("abandoned", "Abandoned", "count"),
        ("short_abandons", "Short abandons", "count"),
        ("service_level", "Service level", "ratio"),
        ("asa_seconds", "ASA", "seconds"),
        ("abandon_rate", "Abandon rate", "ratio"),
        ("handled", "Calls handled by agents", "count"),
        ("talk_seconds", "Talk time", "seconds"),
        ("acw_seconds", "After-call work", "seconds"),
        ("aht_seconds", "AHT", "seconds"),
        ("average_acw_seconds", "Average ACW", "seconds"),
        ("logged_in_seconds", "Logged in", "seconds"),
        ("not_ready_seconds", "Not ready", "seconds"),
        ("on_call_seconds", "On call", "seconds"),
        ("occupancy", "Occupancy", "ratio"),
        ("fcr_contacts", "Contacts (FCR)", "count"),
        ("fcr_resolved", "Resolved first time", "count"),
        ("fcr", "FCR", "ratio"),
        ("satisfied", "Satisfied", "count"),
        ("rated", "Rated", "count"),
        ("csat", "CSAT", "ratio"),
    )
    return _build(
        "kpis",
        "Key performance indicators",
        cols,
        acc,
        order,
        label,
        derive,
        ("period", ("service_level", "occupancy", "fcr", "csat")),
    )


@dataclass(frozen=True, slots=True)
class ReportSpec:
    title: str
    build: Callable[[_Prepared], Report]
    # An agent may run it about themself (the agent filter forced to their own id).
    agent_scoped: bool = False


REPORTS: dict[str, ReportSpec] = {
    "traffic": ReportSpec("Traffic", report_traffic),
    "talk": ReportSpec("Talk time and utilisation", report_talk),
    "agent_traffic": ReportSpec("Agent traffic", report_agent_traffic),
    "workload": ReportSpec("Agent workload", report_workload, agent_scoped=True),
    "satisfaction": ReportSpec("Customer satisfaction", report_satisfaction),
    "work_log": ReportSpec("Agent work log", report_work_log, agent_scoped=True),
    "agent_summary": ReportSpec("Agent summary", report_agent_summary, agent_scoped=True),
    "hourly": ReportSpec("Traffic by hour of day", report_hourly),
    "queue_stats": ReportSpec("Queue statistics", report_queue_stats),
    "call_loss": ReportSpec("Call-loss reasons", report_call_loss),
    "outbound": ReportSpec("Outbound statistics", report_outbound),
    "kpis": ReportSpec("Key performance indicators", report_kpis),
}


def compute(name: str, q: ReportQuery, data: ReportData) -> Report:
    """Report ``name`` over ``data`` (pure; run it in a thread for large ranges)."""
    spec = REPORTS.get(name)
    if spec is None:
        raise KeyError(name)
    return spec.build(_Prepared(q, data))

"""Quality assessment: scorecard templates, evaluation tasks and evaluations of agents'
calls, with the items the system computes itself.

Theory of operation. A :class:`Scorecard` has sections of weighted items: an item is worth
up to ``max_points``; an ``auto_fail`` item can also be marked failed, which makes the whole
evaluation 0 %; a ``computed`` item is scored by the system, never by the evaluator:

- ``answer_timeliness``: how long the agent's phone rang before they answered (offer →
  answer): the ring time of the queue log's ``CONNECT`` events (its third field), or for a
  direct call the call record's answer − start;
- ``wrapup_timeliness``: how long the agent stayed in ``WRAP_UP`` after calls (the agent
  state log);
- ``satisfaction``: the post-call survey (``survey_results``): satisfied 1, neutral ½,
  unsatisfied 0, calls without a rating left out.

Timeliness scores full points up to ``target`` seconds (on average), 0 from ``limit``
seconds, linearly between (:func:`timeliness_points`). With a call (``call_id``: the call
record's ``record_id``) the computed items look at that call; without one, at the agent's
calls in the task's period. An item with no data is left unscored.

The total (:func:`total_percent`) is the points given over the points possible of the scored
items, as a percentage, and 0 when an auto-fail item failed.

An evaluation task names a scorecard, a period, an evaluator and the agents to assess;
evaluations are drafts until published. Who may do what (:class:`QualityService`):

| | agent | qa | supervisor, admin |
|---|---|---|---|
| scorecards | read | read, create, delete | read, create, delete |
| tasks | — | their own (as evaluator), create for themselves | all |
| evaluate, edit, publish, delete | — | their own evaluations | all |
| read evaluations | their own, published | their own and their tasks' | all |

The functions at the top are pure (data in, numbers out) and tested on their own; the
service reads the logs from the store and keeps its rows with SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from crm.customers import Actor
from crm.models import CallRecord, QaEvaluationRow, QaScorecardRow, QaTaskRow
from crm.store import AgentStateData, CrmError, QueueEventData, Store, SurveyResultData
from crm.users import role_rank

__all__ = [
    "COMPUTED",
    "Evaluation",
    "EvaluationTask",
    "QualityService",
    "ScoreItem",
    "Scorecard",
    "Section",
    "answer_delays",
    "satisfaction_share",
    "timeliness_points",
    "total_percent",
    "wrapup_durations",
]

COMPUTED: tuple[str, ...] = ("answer_timeliness", "wrapup_timeliness", "satisfaction")
SATISFACTION = {"satisfied": 1.0, "neutral": 0.5, "unsatisfied": 0.0}
WRAP_UP = "WRAP_UP"

_CARDS = cast(Table, QaScorecardRow.__table__)
_TASKS = cast(Table, QaTaskRow.__table__)
_EVALS = cast(Table, QaEvaluationRow.__table__)
_CALLS = cast(Table, CallRecord.__table__)


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One item of a scorecard. ``target`` / ``limit``: seconds, for the timeliness items."""

    key: str
    label: str
    max_points: float
    auto_fail: bool = False
    computed: str | None = None
    target: float | None = None
    limit: float | None = None

    def __post_init__(self) -> None:
        if not self.key or not self.key.replace("_", "").isalnum():
            raise ValueError(f"item key {self.key!r}: letters, digits and _")
        if self.max_points < 0:
            raise ValueError(f"item {self.key}: max_points must not be negative")
        if self.computed is not None and self.computed not in COMPUTED:
            raise ValueError(f"item {self.key}: computed is one of {', '.join(COMPUTED)}")
        if self.computed is not None and self.auto_fail:
            raise ValueError(f"item {self.key}: a computed item cannot be auto-fail")
        timed = self.computed in ("answer_timeliness", "wrapup_timeliness")
        if timed and not (
            self.target is not None and self.limit is not None and 0 <= self.target < self.limit
        ):
            raise ValueError(f"item {self.key}: timeliness needs 0 <= target < limit")


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    items: tuple[ScoreItem, ...]


@dataclass(frozen=True, slots=True)
class Scorecard:
    name: str
    sections: tuple[Section, ...]
    created_by: str = ""
    created_at: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        keys = [i.key for i in self.items]
        if not keys:
            raise ValueError("a scorecard needs at least one item")
        doubles = sorted({k for k in keys if keys.count(k) > 1})
        if doubles:
            raise ValueError(f"item keys used twice: {', '.join(doubles)}")

    @property
    def items(self) -> list[ScoreItem]:
        return [i for s in self.sections for i in s.items]

    def item(self, key: str) -> ScoreItem:
        for i in self.items:
            if i.key == key:
                return i
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class EvaluationTask:
    name: str
    scorecard_id: int
    evaluator: str
    agents: tuple[str, ...]
    period_start: datetime
    period_end: datetime
    created_by: str = ""
    created_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    scorecard_id: int
    agent: str
    evaluator: str
    scores: Mapping[str, float] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    task_id: int | None = None
    call_id: str | None = None
    recording_id: str | None = None
    comment: str = ""
    total: float = 0.0
    auto_failed: bool = False
    published: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    id: int | None = None


# -- the pure part -----------------------------------------------------------------------------


def answer_delays(
    events: Iterable[QueueEventData], agent: str, call_ids: Iterable[str] | None = None
) -> list[float]:
    """Seconds each of ``agent``'s queue calls rang before they answered: the ring time of
    the ``CONNECT`` events (``holdtime|bridged call|ringtime``), only of ``call_ids`` (ACD
    call ids) when given. Events whose ring time is not a number are skipped."""
    wanted = None if call_ids is None else set(call_ids)
    out: list[float] = []
    for e in events:
        if e.event != "CONNECT" or e.agent != agent:
            continue
        if wanted is not None and e.call_id not in wanted:
            continue
        try:
            out.append(float(e.data[2]))
        except (IndexError, ValueError):
            continue
    return out


def wrapup_durations(
    states: Sequence[AgentStateData], agent: str, *, until: datetime
) -> list[float]:
    """Seconds of each of ``agent``'s wrap-ups (``states`` in time order): from entering
    ``WRAP_UP`` to the next state change; one still going at ``until`` counts to then."""
    out: list[float] = []
    started: datetime | None = None
    for s in states:
        if s.agent != agent:
            continue
        if started is not None:
            out.append((s.time - started).total_seconds())
            started = None
        if s.new_state == WRAP_UP:
            started = s.time
    if started is not None and until > started:
        out.append((until - started).total_seconds())
    return out


def satisfaction_share(results: Iterable[SurveyResultData]) -> float | None:
    """The mean rating (satisfied 1, neutral ½, unsatisfied 0) of the rated calls; None
    when none was rated."""
    ratings = [SATISFACTION[r.result] for r in results if r.result in SATISFACTION]
    return sum(ratings) / len(ratings) if ratings else None


def timeliness_points(
    seconds: Sequence[float], *, target: float, limit: float, max_points: float
) -> float | None:
    """Points for the mean of ``seconds``: all up to ``target``, none from ``limit``,
    linear between; None without data."""
    if not seconds:
        return None
    mean = sum(seconds) / len(seconds)
    if mean <= target:
        return max_points
    if mean >= limit:
        return 0.0
    return round(max_points * (limit - mean) / (limit - target), 2)


def total_percent(card: Scorecard, scores: Mapping[str, float], failed: Iterable[str]) -> float:
    """The weighted percentage of the scored items (points given over points possible); 0
    when an auto-fail item failed or nothing is scored."""
    if any(card.item(k).auto_fail for k in failed):
        return 0.0
    possible = sum(card.item(k).max_points for k in scores)
    if possible <= 0:
        return 0.0
    return round(100.0 * sum(scores.values()) / possible, 2)


def check_scores(card: Scorecard, scores: Mapping[str, float], failed: Iterable[str]) -> None:
    """ValueError for an unknown item, a computed one scored by hand, points out of range
    or a failed item that is not auto-fail."""
    for key, points in scores.items():
        try:
            item = card.item(key)
        except KeyError:
            raise ValueError(f"no item {key!r} on scorecard {card.name!r}") from None
        if item.computed is not None:
            raise ValueError(f"item {key!r} is computed by the system")
        if not 0 <= points <= item.max_points:
            raise ValueError(f"item {key!r}: 0 to {item.max_points:g} points")
    for key in failed:
        try:
            item = card.item(key)
        except KeyError:
            raise ValueError(f"no item {key!r} on scorecard {card.name!r}") from None
        if not item.auto_fail:
            raise ValueError(f"item {key!r} is not an auto-fail item")


def card_to_json(card: Scorecard) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "items": [
                {
                    "key": i.key,
                    "label": i.label,
                    "max_points": i.max_points,
                    "auto_fail": i.auto_fail,
                    "computed": i.computed,
                    "target": i.target,
                    "limit": i.limit,
                }
                for i in s.items
            ],
        }
        for s in card.sections
    ]


def sections_from_json(value: Sequence[Mapping[str, Any]]) -> tuple[Section, ...]:
    """Sections from their JSON form (the API's and the store's); ValueError if bad."""
    try:
        return tuple(
            Section(
                str(s["name"]),
                tuple(
                    ScoreItem(
                        key=str(i["key"]),
                        label=str(i.get("label", i["key"])),
                        max_points=float(i["max_points"]),
                        auto_fail=bool(i.get("auto_fail", False)),
                        computed=i.get("computed"),
                        target=None if i.get("target") is None else float(i["target"]),
                        limit=None if i.get("limit") is None else float(i["limit"]),
                    )
                    for i in s["items"]
                ),
            )
            for s in value
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad scorecard section: {exc}") from None


# -- the service --------------------------------------------------------------------------------


def _evaluates(actor: Actor) -> bool:
    return role_rank(actor.role) >= role_rank("qa")


def _card(r: Any) -> Scorecard:
    return Scorecard(r.name, sections_from_json(r.sections), r.created_by, r.created_at, r.id)


def _task(r: Any) -> EvaluationTask:
    return EvaluationTask(
        r.name,
        r.scorecard_id,
        r.evaluator,
        tuple(r.agents),
        r.period_start,
        r.period_end,
        r.created_by,
        r.created_at,
        r.id,
    )


def _evaluation(r: Any) -> Evaluation:
    return Evaluation(
        scorecard_id=r.scorecard_id,
        agent=r.agent,
        evaluator=r.evaluator,
        scores={k: float(v) for k, v in r.scores["points"].items()},
        failed=tuple(r.scores["failed"]),
        task_id=r.task_id,
        call_id=r.call_id,
        recording_id=r.recording_id,
        comment=r.comment,
        total=r.total,
        auto_failed=r.auto_failed,
        published=r.published,
        created_at=r.created_at,
        updated_at=r.updated_at,
        id=r.id,
    )


class QualityService:
    """Scorecards, tasks and evaluations with permission checks (module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # -- scorecards --------------------------------------------------------------------------

    async def add_scorecard(self, actor: Actor, card: Scorecard, *, now: datetime) -> Scorecard:
        if not _evaluates(actor):
            raise CrmError(403, "only qa, supervisors and admins manage scorecards")
        values = {
            "name": card.name,
            "sections": card_to_json(card),
            "created_by": actor.name,
            "created_at": now,
        }
        try:
            async with self.engine.begin() as conn:
                key = (await conn.execute(insert(_CARDS).values(values))).inserted_primary_key
        except IntegrityError:
            raise CrmError(409, f"a scorecard {card.name!r} exists already") from None
        assert key is not None
        return Scorecard(card.name, card.sections, actor.name, now, int(key[0]))

    async def scorecards(self, actor: Actor) -> list[Scorecard]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_CARDS).order_by(_CARDS.c.id))).all()
        return [_card(r) for r in rows]

    async def scorecard(self, actor: Actor, card_id: int) -> Scorecard:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_CARDS).where(_CARDS.c.id == card_id))).first()
        if row is None:
            raise CrmError(404, f"no scorecard {card_id}")
        return _card(row)

    async def delete_scorecard(self, actor: Actor, card_id: int) -> None:
        if not _evaluates(actor):
            raise CrmError(403, "only qa, supervisors and admins manage scorecards")
        try:
            async with self.engine.begin() as conn:
                done = await conn.execute(delete(_CARDS).where(_CARDS.c.id == card_id))
        except IntegrityError:
            raise CrmError(409, f"scorecard {card_id} is used by tasks or evaluations") from None
        if not done.rowcount:
            raise CrmError(404, f"no scorecard {card_id}")

    # -- tasks -------------------------------------------------------------------------------

    async def add_task(
        self, actor: Actor, task: EvaluationTask, *, now: datetime
    ) -> EvaluationTask:
        """A new task: supervisors for anyone, qa for themselves."""
        if not _evaluates(actor):
            raise CrmError(403, "only qa, supervisors and admins create evaluation tasks")
        if not actor.sees_all and task.evaluator != actor.name:
            raise CrmError(403, "qa create tasks for themselves; supervisors assign others")
        if task.period_end <= task.period_start:
            raise CrmError(400, "a task's period ends after it starts")
        if not task.agents:
            raise CrmError(400, "a task names at least one agent")
        await self.scorecard(actor, task.scorecard_id)
        values = {
            "name": task.name,
            "scorecard_id": task.scorecard_id,
            "evaluator": task.evaluator,
            "agents": list(task.agents),
            "period_start": task.period_start,
            "period_end": task.period_end,
            "created_by": actor.name,
            "created_at": now,
        }
        async with self.engine.begin() as conn:
            key = (await conn.execute(insert(_TASKS).values(values))).inserted_primary_key
        assert key is not None
        return await self.task(actor, int(key[0]))

    async def task(self, actor: Actor, task_id: int) -> EvaluationTask:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_TASKS).where(_TASKS.c.id == task_id))).first()
        if row is None or not self._sees_task(actor, row.evaluator):
            raise CrmError(404, f"no task {task_id}")
        return _task(row)

    @staticmethod
    def _sees_task(actor: Actor, evaluator: str) -> bool:
        return actor.sees_all or (_evaluates(actor) and evaluator == actor.name)

    async def tasks(self, actor: Actor) -> list[EvaluationTask]:
        if not _evaluates(actor):
            raise CrmError(403, "agents see their published evaluations, not tasks")
        stmt = select(_TASKS).order_by(_TASKS.c.id)
        if not actor.sees_all:
            stmt = stmt.where(_TASKS.c.evaluator == actor.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_task(r) for r in rows]

    async def update_task(
        self, actor: Actor, task_id: int, changes: Mapping[str, Any]
    ) -> EvaluationTask:
        """Change a task's ``name``, ``agents``, ``period_start``, ``period_end`` (its qa
        evaluator or a supervisor) or ``evaluator`` (supervisors)."""
        current = await self.task(actor, task_id)
        unknown = sorted(
            set(changes) - {"name", "evaluator", "agents", "period_start", "period_end"}
        )
        if unknown:
            raise CrmError(400, f"cannot change {', '.join(unknown)}")
        moves = "evaluator" in changes and changes["evaluator"] != current.evaluator
        if moves and not actor.sees_all:
            raise CrmError(403, "only supervisors give a task to another evaluator")
        values = {k: v for k, v in changes.items() if v is not None}
        if "agents" in values:
            values["agents"] = list(values["agents"])
            if not values["agents"]:
                raise CrmError(400, "a task names at least one agent")
        start = values.get("period_start", current.period_start)
        end = values.get("period_end", current.period_end)
        if end <= start:
            raise CrmError(400, "a task's period ends after it starts")
        if values:
            async with self.engine.begin() as conn:
                await conn.execute(update(_TASKS).where(_TASKS.c.id == task_id).values(values))
        return await self.task(actor, task_id)

    async def delete_task(self, actor: Actor, task_id: int) -> None:
        """Delete a task and its evaluations (supervisors, or the qa evaluator)."""
        await self.task(actor, task_id)
        async with self.engine.begin() as conn:
            await conn.execute(delete(_EVALS).where(_EVALS.c.task_id == task_id))
            await conn.execute(delete(_TASKS).where(_TASKS.c.id == task_id))

    # -- evaluations -------------------------------------------------------------------------

    async def _call(self, record_id: str) -> Any:
        stmt = (
            select(_CALLS.c.start, _CALLS.c.answer, _CALLS.c.end, _CALLS.c.queue_call_id)
            .where(_CALLS.c.record_id == record_id)
            .order_by(_CALLS.c.id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first()

    async def computed_scores(
        self,
        card: Scorecard,
        agent: str,
        *,
        call_id: str | None,
        period: tuple[datetime, datetime] | None,
    ) -> dict[str, float]:
        """The scores of the card's computed items that have data (module docstring)."""
        wanted = {i.computed for i in card.items if i.computed is not None}
        if not wanted:
            return {}
        call = await self._call(call_id) if call_id is not None else None
        if call is not None:
            since, until = call.start, call.end + timedelta(hours=1)
        elif period is not None:
            since, until = period
        else:
            return {}
        delays: list[float] = []
        if "answer_timeliness" in wanted:
            events = await self.store.list_queue_events(since=since, until=until)
            if call is None:
                delays = answer_delays(events, agent)
            elif call.queue_call_id:
                delays = answer_delays(events, agent, [call.queue_call_id])
            elif call.answer is not None:
                delays = [(call.answer - call.start).total_seconds()]
        wrapups: list[float] = []
        if "wrapup_timeliness" in wanted:
            states = await self.store.agent_states_between(since, until)
            if call is not None:  # the wrap-up that followed the call
                states = [s for s in states if s.time >= call.end - timedelta(seconds=5)]
                wrapups = wrapup_durations(states, agent, until=until)[:1]
            else:
                wrapups = wrapup_durations(states, agent, until=until)
        share: float | None = None
        if "satisfaction" in wanted:
            results = await self.store.survey_results_between(since, until)
            share = satisfaction_share(
                r
                for r in results
                if r.agent == agent and (call_id is None or r.record_id == call_id)
            )
        out: dict[str, float] = {}
        for item in card.items:
            points: float | None = None
            if item.computed == "answer_timeliness" or item.computed == "wrapup_timeliness":
                assert item.target is not None and item.limit is not None
                seconds = delays if item.computed == "answer_timeliness" else wrapups
                points = timeliness_points(
                    seconds, target=item.target, limit=item.limit, max_points=item.max_points
                )
            elif item.computed == "satisfaction" and share is not None:
                points = round(share * item.max_points, 2)
            if points is not None:
                out[item.key] = points
        return out

    async def evaluate(
        self,
        actor: Actor,
        *,
        agent: str,
        now: datetime,
        scorecard_id: int | None = None,
        task_id: int | None = None,
        call_id: str | None = None,
        recording_id: str | None = None,
        scores: Mapping[str, float] | None = None,
        failed: Sequence[str] = (),
        comment: str = "",
    ) -> Evaluation:
        """A draft evaluation of ``agent`` (of a task's agent, with the task's scorecard):
        the evaluator's scores plus the computed items. A recording links its call."""
        if not _evaluates(actor):
            raise CrmError(403, "only qa, supervisors and admins evaluate")
        period: tuple[datetime, datetime] | None = None
        if task_id is not None:
            task = await self.task(actor, task_id)
            if agent not in task.agents:
                raise CrmError(400, f"{agent} is not one of task {task_id}'s agents")
            if scorecard_id is not None and scorecard_id != task.scorecard_id:
                raise CrmError(400, f"task {task_id} uses scorecard {task.scorecard_id}")
            scorecard_id, period = task.scorecard_id, (task.period_start, task.period_end)
        if scorecard_id is None:
            raise CrmError(400, "an evaluation needs a task or a scorecard")
        card = await self.scorecard(actor, scorecard_id)
        if recording_id is not None:
            recording = await self.store.get_recording(recording_id)
            if recording is None:
                raise CrmError(404, f"no recording {recording_id}")
            if call_id is not None and call_id != recording.call_id:
                raise CrmError(400, f"recording {recording_id} is of call {recording.call_id}")
            call_id = recording.call_id
        if call_id is not None and period is not None:
            call = await self._call(call_id)
            if call is not None and not period[0] <= call.start < period[1]:
                raise CrmError(400, f"call {call_id} is outside task {task_id}'s period")
        manual = dict(scores or {})
        try:
            check_scores(card, manual, failed)
        except ValueError as exc:
            raise CrmError(400, str(exc)) from None
        computed = await self.computed_scores(card, agent, call_id=call_id, period=period)
        merged = {**manual, **computed}
        values = {
            "task_id": task_id,
            "scorecard_id": scorecard_id,
            "agent": agent,
            "evaluator": actor.name,
            "call_id": call_id,
            "recording_id": recording_id,
            "scores": {"points": merged, "failed": list(failed)},
            "comment": comment,
            "total": total_percent(card, merged, failed),
            "auto_failed": any(card.item(k).auto_fail for k in failed),
            "published": False,
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            key = (await conn.execute(insert(_EVALS).values(values))).inserted_primary_key
        assert key is not None
        return await self.evaluation(actor, int(key[0]))

    async def _row(self, evaluation_id: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(_EVALS).where(_EVALS.c.id == evaluation_id))).first()

    def _sees(self, actor: Actor, e: Evaluation, task_evaluator: str | None) -> bool:
        if actor.sees_all:
            return True
        if _evaluates(actor):
            return e.evaluator == actor.name or task_evaluator == actor.name
        return e.agent == actor.name and e.published

    async def _task_evaluator(self, task_id: int | None) -> str | None:
        if task_id is None:
            return None
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(_TASKS.c.evaluator).where(_TASKS.c.id == task_id))
        return None if value is None else str(value)

    async def evaluation(self, actor: Actor, evaluation_id: int) -> Evaluation:
        """One evaluation the actor may see (agents: their own, published); 404 otherwise."""
        row = await self._row(evaluation_id)
        if row is None:
            raise CrmError(404, f"no evaluation {evaluation_id}")
        found = _evaluation(row)
        if not self._sees(actor, found, await self._task_evaluator(found.task_id)):
            raise CrmError(404, f"no evaluation {evaluation_id}")
        return found

    @staticmethod
    def may_evaluate(actor: Actor) -> bool:
        """Whether the actor may make evaluations (qa, supervisors and admins)."""
        return _evaluates(actor)

    @staticmethod
    def may_change(actor: Actor, evaluation: Evaluation) -> bool:
        """Whether the actor may change (and publish) ``evaluation``: their own, or any for
        supervisors and admins."""
        return _evaluates(actor) and (actor.sees_all or evaluation.evaluator == actor.name)

    async def _changeable(self, actor: Actor, evaluation_id: int) -> Evaluation:
        found = await self.evaluation(actor, evaluation_id)
        if not self.may_change(actor, found):
            raise CrmError(403, f"evaluation {evaluation_id} is not yours")
        return found

    async def update_evaluation(
        self,
        actor: Actor,
        evaluation_id: int,
        *,
        now: datetime,
        scores: Mapping[str, float] | None = None,
        failed: Sequence[str] | None = None,
        comment: str | None = None,
    ) -> Evaluation:
        """Change scores (merged; computed items stay), failed items or the comment."""
        current = await self._changeable(actor, evaluation_id)
        card = await self.scorecard(actor, current.scorecard_id)
        manual = dict(scores or {})
        new_failed = tuple(current.failed if failed is None else failed)
        try:
            check_scores(card, manual, new_failed)
        except ValueError as exc:
            raise CrmError(400, str(exc)) from None
        merged = {**current.scores, **manual}
        values = {
            "scores": {"points": merged, "failed": list(new_failed)},
            "comment": current.comment if comment is None else comment,
            "total": total_percent(card, merged, new_failed),
            "auto_failed": any(card.item(k).auto_fail for k in new_failed),
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            await conn.execute(update(_EVALS).where(_EVALS.c.id == evaluation_id).values(values))
        return await self.evaluation(actor, evaluation_id)

    async def publish(self, actor: Actor, evaluation_id: int, *, now: datetime) -> Evaluation:
        """Show the evaluation to its agent: every item the evaluator scores must be scored."""
        current = await self._changeable(actor, evaluation_id)
        card = await self.scorecard(actor, current.scorecard_id)
        missing = [i.key for i in card.items if i.computed is None and i.key not in current.scores]
        if missing:
            raise CrmError(409, f"not scored yet: {', '.join(missing)}")
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_EVALS)
                .where(_EVALS.c.id == evaluation_id)
                .values(published=True, updated_at=now)
            )
        return await self.evaluation(actor, evaluation_id)

    async def delete_evaluation(self, actor: Actor, evaluation_id: int) -> None:
        await self._changeable(actor, evaluation_id)
        async with self.engine.begin() as conn:
            await conn.execute(delete(_EVALS).where(_EVALS.c.id == evaluation_id))

    async def evaluations(
        self,
        actor: Actor,
        *,
        agent: str | None = None,
        task_id: int | None = None,
        limit: int = 200,
    ) -> list[Evaluation]:
        """Evaluations the actor may see, the latest first: agents their own published ones;
        qa theirs and their tasks'; supervisors and admins all."""
        stmt = select(_EVALS).order_by(_EVALS.c.created_at.desc(), _EVALS.c.id.desc())
        if agent is not None:
            stmt = stmt.where(_EVALS.c.agent == agent)
        if task_id is not None:
            stmt = stmt.where(_EVALS.c.task_id == task_id)
        if not _evaluates(actor):
            stmt = stmt.where(_EVALS.c.agent == actor.name, _EVALS.c.published.is_(True))
        elif not actor.sees_all:
            mine = select(_TASKS.c.id).where(_TASKS.c.evaluator == actor.name)
            stmt = stmt.where((_EVALS.c.evaluator == actor.name) | _EVALS.c.task_id.in_(mine))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.limit(limit))).all()
        return [_evaluation(r) for r in rows]

"""Quality assessment: the pure scoring functions (timeliness, wrap-up, satisfaction, the
weighted total with auto-fail), then scorecards, tasks and evaluations in the store (SQLite
and PostgreSQL) with the computed items read from the logs, and who may do what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crm import (
    Actor,
    AgentStateData,
    CallRecordData,
    CrmError,
    Disposition,
    HangupSide,
    QueueEventData,
    RecordingData,
    Store,
    SurveyResultData,
)
from crm.qa import (
    EvaluationTask,
    QualityService,
    Scorecard,
    ScoreItem,
    Section,
    answer_delays,
    satisfaction_share,
    timeliness_points,
    total_percent,
    wrapup_durations,
)

T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
SUP = Actor("sue", "supervisor")
QA = Actor("quinn", "qa")
QA2 = Actor("quentin", "qa")
ANN = Actor("ann", "agent")
BOB = Actor("bob", "agent")


def _card(name: str = "Inbound") -> Scorecard:
    return Scorecard(
        name,
        (
            Section(
                "Opening",
                (
                    ScoreItem("greeting", "Greets with name and company", 10),
                    ScoreItem("identity", "Checks the caller's identity", 0, auto_fail=True),
                ),
            ),
            Section(
                "Handling",
                (
                    ScoreItem("solution", "Solves the problem", 20),
                    ScoreItem("rude", "Stays polite", 10, auto_fail=True),
                ),
            ),
            Section(
                "System",
                (
                    ScoreItem(
                        "answer",
                        "Answers in time",
                        10,
                        computed="answer_timeliness",
                        target=5,
                        limit=15,
                    ),
                    ScoreItem(
                        "wrapup",
                        "Wraps up in time",
                        10,
                        computed="wrapup_timeliness",
                        target=30,
                        limit=90,
                    ),
                    ScoreItem("csat", "Satisfied caller", 20, computed="satisfaction"),
                ),
            ),
        ),
    )


# -- the pure part --------------------------------------------------------------------------


def _ev(sec: float, agent: str, event: str, call: str, *data: str) -> QueueEventData:
    return QueueEventData(T0 + timedelta(seconds=sec), call, "sales", agent, event, data)


def test_answer_delays_from_connect_ring_times() -> None:
    events = [
        _ev(0, "", "ENTERQUEUE", "c1", "", "+4930"),
        _ev(9, "ann", "RINGNOANSWER", "c1", "15000"),
        _ev(20, "ann", "CONNECT", "c1", "20", "rec-1", "4"),
        _ev(30, "bob", "CONNECT", "c2", "3", "rec-2", "2"),
        _ev(40, "ann", "CONNECT", "c3", "1", "rec-3", "8"),
        _ev(50, "ann", "CONNECT", "c4", "1", "rec-4", "junk"),
    ]
    assert answer_delays(events, "ann") == [4.0, 8.0]
    assert answer_delays(events, "ann", ["c3"]) == [8.0]
    assert answer_delays(events, "carl") == []


def _st(sec: float, agent: str, old: str, new: str) -> AgentStateData:
    return AgentStateData(T0 + timedelta(seconds=sec), agent, old, new, "x")


def test_wrapup_durations() -> None:
    states = [
        _st(0, "ann", "AVAILABLE", "ON_CALL"),
        _st(60, "ann", "ON_CALL", "WRAP_UP"),
        _st(65, "bob", "ON_CALL", "WRAP_UP"),
        _st(100, "ann", "WRAP_UP", "AVAILABLE"),
        _st(200, "ann", "ON_CALL", "WRAP_UP"),
        _st(230, "ann", "WRAP_UP", "ON_CALL"),  # an outbound call during wrap-up
        _st(300, "ann", "ON_CALL", "WRAP_UP"),
    ]
    until = T0 + timedelta(seconds=310)
    assert wrapup_durations(states, "ann", until=until) == [40.0, 30.0, 10.0]
    assert wrapup_durations(states, "bob", until=until) == [245.0]


def _survey(result: str, agent: str = "ann", record: str = "r1") -> SurveyResultData:
    return SurveyResultData(record, "s-" + record, "+4930", agent, "csat", result, T0)


def test_satisfaction_share_ignores_calls_without_a_rating() -> None:
    results = [
        _survey("satisfied"),
        _survey("neutral"),
        _survey("unsatisfied"),
        _survey("hung up without rating"),
        _survey("satisfied"),
    ]
    assert satisfaction_share(results) == pytest.approx(2.5 / 4)
    assert satisfaction_share([_survey("no rating entered")]) is None


@pytest.mark.parametrize(
    ("seconds", "points"),
    [([], None), ([3], 10), ([5], 10), ([10], 5), ([6, 14], 5), ([15], 0), ([99], 0)],
)
def test_timeliness_points(seconds: list[float], points: float | None) -> None:
    assert timeliness_points(seconds, target=5, limit=15, max_points=10) == points


def test_total_is_weighted_and_zero_on_auto_fail() -> None:
    card = _card()
    scores = {"greeting": 10.0, "identity": 0.0, "solution": 10.0, "rude": 10.0, "csat": 20.0}
    # 50 of 60 possible points of the scored items (answer and wrapup have no data).
    assert total_percent(card, scores, []) == pytest.approx(83.33)
    assert total_percent(card, scores, ["identity"]) == 0.0
    assert total_percent(card, {}, []) == 0.0


def test_a_scorecard_refuses_bad_items() -> None:
    with pytest.raises(ValueError, match="used twice"):
        Scorecard("x", (Section("a", (ScoreItem("k", "K", 1), ScoreItem("k", "K", 1))),))
    with pytest.raises(ValueError, match="target < limit"):
        ScoreItem("t", "T", 5, computed="answer_timeliness", target=10, limit=5)
    with pytest.raises(ValueError, match="computed is one of"):
        ScoreItem("t", "T", 5, computed="mood")
    with pytest.raises(ValueError, match="cannot be auto-fail"):
        ScoreItem("t", "T", 5, computed="satisfaction", auto_fail=True)


# -- the service ------------------------------------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


async def _calls(store: Store) -> None:
    """Ann's queue call r1 (rang 4 s, wrap-up 40 s, satisfied) and r2 (rang 12 s, wrap-up
    100 s, unsatisfied), both in the first week of December."""
    for n, (start, ring, wrap, rating) in enumerate(
        [(T0, 4, 40, "satisfied"), (T0 + timedelta(days=1), 12, 100, "unsatisfied")], 1
    ):
        answer = start + timedelta(seconds=20)
        end = answer + timedelta(seconds=120)
        await store.add_call_record(
            CallRecordData(
                f"sip-{n}",
                "+4930",
                "sales",
                start,
                end,
                "normal_clearing",
                Disposition.ANSWERED,
                HangupSide.CALLER,
                answer=answer,
                record_id=f"r{n}",
                queue="sales",
                agent="ann",
                queue_call_id=f"q{n}",
            )
        )
        await store.add_acd_log(
            [
                QueueEventData(
                    answer, f"q{n}", "sales", "ann", "CONNECT", ("16", f"r{n}", str(ring))
                ),
            ],
            [
                AgentStateData(answer, "ann", "RINGING", "ON_CALL", "answer"),
                AgentStateData(end, "ann", "ON_CALL", "WRAP_UP", "call_end_wrap"),
                AgentStateData(
                    end + timedelta(seconds=wrap), "ann", "WRAP_UP", "AVAILABLE", "wrap_end"
                ),
            ],
        )
        await store.add_survey_result(
            SurveyResultData(
                f"r{n}", f"s{n}", "+4930", "ann", "csat", rating, end + timedelta(seconds=5)
            )
        )
    await store.add_recording(
        RecordingData("rec-" + "a" * 24, "r1", T0, "2026/12/01/rec.flac", "flac", 8000, agent="ann")
    )


async def test_an_evaluation_of_a_recorded_call(store: Store) -> None:
    await _calls(store)
    qa = QualityService(store)
    card = await qa.add_scorecard(QA, _card(), now=T0)
    week = EvaluationTask(
        "Week 49", card.id or 0, "quinn", ("ann", "bob"), T0, T0 + timedelta(days=7)
    )
    task = await qa.add_task(SUP, week, now=T0)
    assert task.id is not None

    e = await qa.evaluate(
        QA,
        task_id=task.id,
        agent="ann",
        recording_id="rec-" + "a" * 24,
        now=T0,
        scores={"greeting": 10, "solution": 15},
        comment="good",
    )
    # The recording links the call r1: rang 4 s (10), wrap-up 40 s (10 - 10/60*10), satisfied.
    assert (e.call_id, e.recording_id, e.published) == ("r1", "rec-" + "a" * 24, False)
    assert e.scores == {"greeting": 10, "solution": 15, "answer": 10, "wrapup": 8.33, "csat": 20}
    assert e.total == pytest.approx(round(100 * 63.33 / 70, 2))

    # Not every item scored yet: not published; then scored, published, seen by ann only.
    with pytest.raises(CrmError) as err:
        await qa.publish(QA, e.id or 0, now=T0)
    assert (err.value.status, "identity" in str(err.value)) == (409, True)
    assert await qa.evaluations(ANN) == []
    e = await qa.update_evaluation(QA, e.id or 0, scores={"identity": 0, "rude": 10}, now=T0)
    published = await qa.publish(QA, e.id or 0, now=T0)
    assert published.published
    assert [x.id for x in await qa.evaluations(ANN)] == [e.id]
    assert (await qa.evaluation(ANN, e.id or 0)).total == e.total
    for actor in (BOB, QA2):
        with pytest.raises(CrmError) as err:
            await qa.evaluation(actor, e.id or 0)
        assert err.value.status == 404
        assert await qa.evaluations(actor) == []

    # An auto-fail item failed: 0 %.
    failed = await qa.update_evaluation(SUP, e.id or 0, failed=["rude"], now=T0)
    assert (failed.total, failed.auto_failed) == (0.0, True)
    with pytest.raises(CrmError) as err:
        await qa.update_evaluation(QA, e.id or 0, failed=["greeting"], now=T0)
    assert err.value.status == 400
    with pytest.raises(CrmError) as err:
        await qa.update_evaluation(QA, e.id or 0, scores={"answer": 0}, now=T0)
    assert "computed" in str(err.value)
    with pytest.raises(CrmError) as err:
        await qa.update_evaluation(QA, e.id or 0, scores={"greeting": 11}, now=T0)
    assert err.value.status == 400


async def test_computed_items_over_a_task_period(store: Store) -> None:
    await _calls(store)
    qa = QualityService(store)
    card = await qa.add_scorecard(SUP, _card(), now=T0)
    week = EvaluationTask("Week", card.id or 0, "quinn", ("ann",), T0, T0 + timedelta(days=7))
    task = await qa.add_task(QA, week, now=T0)  # qa for themselves
    e = await qa.evaluate(QA, task_id=task.id, agent="ann", now=T0)
    # Rang 4 and 12 s (mean 8: 7 points), wrap-up 40 and 100 s (mean 70: 3.33), csat ½ (10).
    assert e.scores == {"answer": 7.0, "wrapup": 3.33, "csat": 10.0}
    # A call outside the period, an agent outside the task.
    with pytest.raises(CrmError) as err:
        await qa.evaluate(QA, task_id=task.id, agent="bob", now=T0)
    assert err.value.status == 400
    late = EvaluationTask(
        "Later", card.id or 0, "quinn", ("ann",), T0 + timedelta(days=30), T0 + timedelta(days=37)
    )
    later = await qa.add_task(QA, late, now=T0)
    with pytest.raises(CrmError, match="outside"):
        await qa.evaluate(QA, task_id=later.id, agent="ann", call_id="r1", now=T0)


async def test_who_may_do_what(store: Store) -> None:
    qa = QualityService(store)
    with pytest.raises(CrmError) as err:
        await qa.add_scorecard(ANN, _card(), now=T0)
    assert err.value.status == 403
    card = await qa.add_scorecard(QA, _card(), now=T0)
    with pytest.raises(CrmError) as err:
        await qa.add_scorecard(QA, _card(), now=T0)
    assert err.value.status == 409
    cid = card.id or 0
    # qa create tasks only for themselves; agents see no tasks.
    with pytest.raises(CrmError) as err:
        await qa.add_task(
            QA, EvaluationTask("x", cid, "quentin", ("ann",), T0, T0 + timedelta(days=1)), now=T0
        )
    assert err.value.status == 403
    task = await qa.add_task(
        SUP, EvaluationTask("t", cid, "quentin", ("ann",), T0, T0 + timedelta(days=1)), now=T0
    )
    with pytest.raises(CrmError) as err:
        await qa.tasks(ANN)
    assert err.value.status == 403
    assert await qa.tasks(QA) == []
    assert [t.id for t in await qa.tasks(QA2)] == [task.id]
    with pytest.raises(CrmError) as err:
        await qa.evaluate(ANN, scorecard_id=cid, agent="bob", now=T0)
    assert err.value.status == 403
    with pytest.raises(CrmError) as err:
        await qa.evaluate(QA, task_id=task.id, agent="ann", now=T0)  # not quinn's task
    assert err.value.status == 404

    # Without a task: any qa evaluates with a scorecard; another qa may not change it.
    e = await qa.evaluate(QA, scorecard_id=cid, agent="bob", scores={"greeting": 5}, now=T0)
    assert e.scores == {"greeting": 5}  # no call, no period: nothing computed
    with pytest.raises(CrmError) as err:
        await qa.update_evaluation(QA2, e.id or 0, comment="mine now", now=T0)
    assert err.value.status == 404
    # The task's evaluator sees evaluations of their task; supervisors change anything.
    e2 = await qa.evaluate(SUP, task_id=task.id, agent="ann", now=T0)
    assert [x.id for x in await qa.evaluations(QA2)] == [e2.id]
    with pytest.raises(CrmError) as err:
        await qa.update_evaluation(QA2, e2.id or 0, comment="x", now=T0)
    assert err.value.status == 403
    await qa.update_evaluation(SUP, e.id or 0, comment="checked", now=T0)
    # Tasks change: their qa edits agents and period, only supervisors the evaluator.
    moved = await qa.update_task(QA2, task.id or 0, {"agents": ["ann", "bob"], "name": "t2"})
    assert (moved.agents, moved.name) == (("ann", "bob"), "t2")
    with pytest.raises(CrmError) as err:
        await qa.update_task(QA2, task.id or 0, {"evaluator": "quinn"})
    assert err.value.status == 403
    with pytest.raises(CrmError) as err:
        await qa.update_task(QA2, task.id or 0, {"period_end": T0 - timedelta(days=1)})
    assert err.value.status == 400
    assert (await qa.update_task(SUP, task.id or 0, {"evaluator": "quinn"})).evaluator == "quinn"
    assert [t.id for t in await qa.tasks(QA)] == [task.id]
    with pytest.raises(CrmError) as err:
        await qa.delete_scorecard(QA, cid)
    assert err.value.status == 409
    await qa.delete_evaluation(QA, e.id or 0)
    await qa.delete_task(SUP, task.id or 0)
    assert await qa.evaluations(SUP) == []
    await qa.delete_scorecard(QA, cid)
    assert await qa.scorecards(ANN) == []

"""acd: routing on a fake clock — every strategy, skill rules, priority, fairness, wrap-up,
auto-pause, join/leave when empty, overflow, last agent, callbacks, the queue_log export."""

from __future__ import annotations

import pytest

from acd import (
    Acd,
    AgentConfig,
    AgentEvent,
    AgentState,
    AgentStateMachine,
    Announce,
    CancelOffer,
    DialCallback,
    ExitQueue,
    IllegalTransition,
    Offer,
    OfferCallback,
    QueueConfig,
    RuleStep,
    Strategy,
    WrapUpMode,
    parse_requirements,
)


def agents(*ids: str, **skills: dict[str, int]) -> list[AgentConfig]:
    return [AgentConfig(i, extensions=(f"1{i[-3:]}",), skills=skills.get(i, {})) for i in ids]


def acd_with(queues: list[QueueConfig], ags: list[AgentConfig], *, login: bool = True) -> Acd:
    acd = Acd(ags, queues, seed=7)
    if login:
        for n, a in enumerate(ags):
            acd.login(a.id, float(n))  # a0 idle longest, then a1, ...
    acd.drain()
    return acd


def offers(acd: Acd) -> list[tuple[str, str]]:
    return [(x.call, x.agent) for x in acd.drain() if isinstance(x, Offer)]


def run_until(acd: Acd, until: float) -> None:
    while (deadline := acd.next_deadline()) is not None and deadline <= until:
        acd.tick(deadline)


def handle(acd: Acd, call: str, agent: str, now: float, talk: float = 10.0) -> None:
    acd.answered(call, agent, now)
    acd.call_completed(call, now + talk, "agent")


# --- agent state machine -------------------------------------------------------------------------


def test_transition_table_refuses_illegal_events() -> None:
    sm = AgentStateMachine("a")
    with pytest.raises(IllegalTransition):
        sm.apply(AgentEvent.OFFER, 0)
    assert sm.apply(AgentEvent.LOGIN, 1).new is AgentState.AVAILABLE
    t = sm.apply(AgentEvent.PAUSE, 2, "lunch")
    assert (t.new, sm.reason) == (AgentState.NOT_READY, "lunch")
    with pytest.raises(IllegalTransition):
        sm.apply(AgentEvent.ANSWER, 3)


def test_pause_and_logout_during_a_call_apply_at_hang_up() -> None:
    ags = agents("a0")
    acd = acd_with([QueueConfig("q")], ags)
    acd.enqueue("c1", "q", "555", 10)
    acd.answered("c1", "a0", 11)
    acd.pause("a0", 12, "break")
    assert acd.state_of("a0") is AgentState.ON_CALL
    acd.call_completed("c1", 20, "caller")
    assert acd.state_of("a0") is AgentState.NOT_READY
    assert acd.agents["a0"].sm.reason == "break"
    acd.unpause("a0", 21)
    acd.enqueue("c2", "q", "556", 22)
    acd.answered("c2", "a0", 23)
    acd.logout("a0", 24)
    acd.call_completed("c2", 30, "agent")
    assert acd.state_of("a0") is AgentState.LOGGED_OUT
    states = [(t.old.value, t.new.value) for t in acd.drain_agent_log()]
    assert ("ON_CALL", "NOT_READY") in states and states[-1] == ("ON_CALL", "LOGGED_OUT")


def test_agent_on_another_call_is_not_offered_and_a_paused_one_stays_paused() -> None:
    acd = acd_with([QueueConfig("q")], agents("a0", "a1"))
    acd.agent_call_started("a0", 5)  # an outbound call
    acd.pause("a1", 5, "training")
    acd.agent_call_started("a1", 6)  # paused agents may call out
    acd.enqueue("c1", "q", "555", 10)
    assert offers(acd) == []
    acd.agent_call_ended("a1", 12)
    assert acd.state_of("a1") is AgentState.NOT_READY  # back to the pause
    acd.agent_call_ended("a0", 13)
    assert offers(acd) == [("c1", "a0")]


# --- strategies ----------------------------------------------------------------------------------


def test_longest_idle_picks_the_agent_idle_longest() -> None:
    acd = acd_with([QueueConfig("q", strategy=Strategy.LONGEST_IDLE)], agents("a0", "a1", "a2"))
    acd.enqueue("c1", "q", "1", 10)
    assert offers(acd) == [("c1", "a0")]
    handle(acd, "c1", "a0", 11)  # a0 is free again at 21: now the most recent
    acd.enqueue("c2", "q", "2", 30)
    assert offers(acd) == [("c2", "a1")]


def test_ring_all_rings_everyone_and_withdraws_the_others() -> None:
    acd = acd_with([QueueConfig("q", strategy=Strategy.RING_ALL)], agents("a0", "a1", "a2"))
    acd.enqueue("c1", "q", "1", 10)
    assert sorted(offers(acd)) == [("c1", "a0"), ("c1", "a1"), ("c1", "a2")]
    acd.answered("c1", "a1", 12)
    cancelled = sorted(x.agent for x in acd.drain() if isinstance(x, CancelOffer))
    assert cancelled == ["a0", "a2"]
    assert [acd.state_of(a) for a in ("a0", "a1", "a2")] == [
        AgentState.AVAILABLE,
        AgentState.ON_CALL,
        AgentState.AVAILABLE,
    ]


def test_fewest_calls_and_least_talk_time() -> None:
    """a0 took two short calls (2 s), a1 one long call (60 s): fewest calls picks a1, least
    talk time picks a0."""
    for strategy, expected in ((Strategy.FEWEST_CALLS, "a1"), (Strategy.LEAST_TALK_TIME, "a0")):
        q = QueueConfig("q", strategy=strategy, members=("a0", "a1"))
        acd = acd_with([q], agents("a0", "a1"))
        for call, agent, talk in (("x", "a0", 1), ("y", "a0", 1), ("z", "a1", 60)):
            acd.pause("a1" if agent == "a0" else "a0", 0)
            acd.enqueue(call, "q", "1", 10)
            acd.drain()
            handle(acd, call, agent, 10, talk=talk)
            acd.unpause("a1" if agent == "a0" else "a0", 100)
            acd.drain()
        acd.enqueue("w", "q", "1", 200)
        assert offers(acd) == [("w", expected)], strategy


def test_round_robin_remembers_its_position_and_linear_does_not() -> None:
    members = ("a0", "a1", "a2")
    for strategy, expected in (
        (Strategy.ROUND_ROBIN, ["a0", "a1", "a2", "a0"]),
        (Strategy.LINEAR, ["a0", "a0", "a0", "a0"]),
    ):
        acd = acd_with([QueueConfig("q", strategy=strategy, members=members)], agents(*members))
        got = []
        for n in range(4):
            acd.enqueue(f"c{n}", "q", "1", 10 + n * 100)
            (offer,) = offers(acd)
            got.append(offer[1])
            handle(acd, offer[0], offer[1], 10 + n * 100, talk=5)
        assert got == expected, strategy


def test_random_and_weighted_random_are_seeded_and_weighted() -> None:
    ags = agents("a0", "a1", a0={"en": 100}, a1={"en": 1})
    step = (RuleStep(parse_requirements("en > 0")),)
    picks: dict[Strategy, list[str]] = {}
    for strategy in (Strategy.RANDOM, Strategy.WEIGHTED_RANDOM):
        runs = []
        for _ in range(2):
            acd = acd_with([QueueConfig("q", strategy=strategy, skill_rules=step)], ags)
            got = []
            for n in range(60):
                acd.enqueue(f"c{n}", "q", "1", 10 + n * 100)
                (offer,) = offers(acd)
                got.append(offer[1])
                handle(acd, offer[0], offer[1], 10 + n * 100, talk=5)
            runs.append(got)
        assert runs[0] == runs[1]  # deterministic for a seed
        picks[strategy] = runs[0]
    assert 15 < picks[Strategy.RANDOM].count("a0") < 45
    assert picks[Strategy.WEIGHTED_RANDOM].count("a0") > 50  # weight 101 vs 2


def test_ring_progressively_adds_one_agent_every_step() -> None:
    q = QueueConfig(
        "q",
        strategy=Strategy.RING_PROGRESSIVELY,
        members=("a0", "a1", "a2"),
        progressive_step=5,
        ring_timeout=60,
    )
    acd = acd_with([q], agents("a0", "a1", "a2"))
    acd.enqueue("c1", "q", "1", 10)
    assert offers(acd) == [("c1", "a0")]
    run_until(acd, 15)
    assert offers(acd) == [("c1", "a1")]
    run_until(acd, 20)
    assert offers(acd) == [("c1", "a2")]
    acd.answered("c1", "a1", 21)
    assert sorted(x.agent for x in acd.drain() if isinstance(x, CancelOffer)) == ["a0", "a2"]


def test_best_skill_prefers_the_highest_level() -> None:
    ags = agents("a0", "a1", "a2", a0={"fr": 40}, a1={"fr": 90}, a2={"de": 100})
    rules = (RuleStep(parse_requirements("fr > 0")),)
    acd = acd_with([QueueConfig("q", strategy=Strategy.BEST_SKILL, skill_rules=rules)], ags)
    acd.enqueue("c1", "q", "1", 10)
    assert offers(acd) == [("c1", "a1")]


# --- skill rules, priority, fairness -------------------------------------------------------------


def test_skill_rule_widens_with_wait_and_a_missing_skill_is_not_zero() -> None:
    ags = agents("a0", "a1", "a2", a0={"english": 30}, a1={"english": 80}, a2={})
    rules = (
        RuleStep(parse_requirements("$lang >= 50"), wait_under=30),
        RuleStep(parse_requirements("$lang > 0")),
    )
    acd = acd_with([QueueConfig("q", skill_rules=rules)], ags)
    acd.pause("a1", 5)
    acd.enqueue("c1", "q", "1", 10, variables={"lang": "english"})
    assert offers(acd) == []  # a0 has english 30 < 50; a2 lacks english
    run_until(acd, 39.9)
    assert offers(acd) == []
    run_until(acd, 40)  # 30 s of waiting: english > 0 now suffices
    assert offers(acd) == [("c1", "a0")]
    # a2 (no english at all) never qualifies, even for "english < 10".
    assert not RuleStep(parse_requirements("english < 10")).holds({}, {})
    # A call without the variable never matches a rule that needs it.
    assert not RuleStep(parse_requirements("$lang > 0")).holds({"english": 5}, {})


def test_requirement_parser_errors() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_requirements("english => 5")
    with pytest.raises(ValueError, match="above 100"):
        parse_requirements("english > 150")
    assert [str(r) for r in parse_requirements("a >= 1 and $b < 2, c == 3")] == [
        "a >= 1",
        "$b < 2",
        "c == 3",
    ]


def test_higher_priority_then_longest_wait_wins_across_queues() -> None:
    """Two queues share one agent: when the agent frees up, the highest priority wins, and
    among equals the caller who has waited longest, whichever queue they are in."""
    qs = [QueueConfig("sales", members=("a0",)), QueueConfig("support", members=("a0",))]
    acd = acd_with(qs, agents("a0"))
    acd.enqueue("busy", "sales", "0", 1)
    acd.answered("busy", "a0", 1)
    acd.enqueue("s1", "sales", "1", 10)
    acd.enqueue("t1", "support", "2", 5 + 6)
    acd.enqueue("t0", "support", "3", 8)  # waited longer than s1
    acd.enqueue("vip", "sales", "4", 20, priority=5)
    acd.drain()
    order = []
    now = 30.0
    for _ in range(4):
        acd.call_completed(acd.agents["a0"].on_call or "busy", now, "agent")
        (offer,) = offers(acd)
        order.append(offer[0])
        acd.answered(offer[0], "a0", now)
        now += 10
    assert order == ["vip", "t0", "s1", "t1"]


def test_customer_grade_becomes_priority() -> None:
    q = QueueConfig("q", members=("a0",), grade_priority={"A": 9, "E": 0})
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 1)
    acd.enqueue("e", "q", "1", 10, grade="E")
    acd.enqueue("a", "q", "2", 20, grade="A")
    assert acd.position("a") == 1 and acd.position("e") == 2
    acd.agent_call_ended("a0", 30)
    assert offers(acd) == [("a", "a0")]


# --- ring timeout, auto-pause, wrap-up -----------------------------------------------------------


def test_unanswered_offer_moves_on_and_two_misses_pause_the_agent() -> None:
    q = QueueConfig(
        "q",
        members=("a0", "a1"),
        strategy=Strategy.LINEAR,
        ring_timeout=10,
        retry_delay=2,
        auto_pause_after=2,
    )
    acd = acd_with([q], agents("a0", "a1"))
    acd.enqueue("c1", "q", "1", 0)
    assert offers(acd) == [("c1", "a0")]
    run_until(acd, 10)  # a0 lets it ring
    assert ("c1", "a0") in [(x.call, x.agent) for x in acd.actions if isinstance(x, CancelOffer)]
    acd.drain()
    run_until(acd, 12)  # after the retry delay, the other agent
    assert offers(acd) == [("c1", "a1")]
    acd.answered("c1", "a1", 13)
    acd.enqueue("c2", "q", "2", 20)
    assert offers(acd) == [("c2", "a0")]
    run_until(acd, 30)  # second miss in a row: paused
    assert acd.state_of("a0") is AgentState.NOT_READY
    assert acd.agents["a0"].sm.reason == "after_no_answer"
    lines = [e.queue_log_line() for e in acd.drain_events() if e.agent == "a0"]
    assert lines[-2:] == ["30|c2|q|a0|RINGNOANSWER|10000", "30|NONE|q|a0|PAUSE|after_no_answer"]


@pytest.mark.parametrize("mode", list(WrapUpMode))
def test_wrap_up_blocks_offers_for_its_duration(mode: WrapUpMode) -> None:
    q = QueueConfig("q", members=("a0",), wrap_up=30, wrap_up_mode=mode)
    acd = acd_with([q], agents("a0"))
    acd.enqueue("c1", "q", "1", 0)
    handle(acd, "c1", "a0", 1, talk=10)  # ends at 11
    acd.drain()
    acd.enqueue("c2", "q", "2", 12)
    assert offers(acd) == [] and acd.state_of("a0") is AgentState.WRAP_UP
    if mode is WrapUpMode.OPTIONAL:
        assert acd.end_wrap_up("a0", 20)
        assert offers(acd) == [("c2", "a0")]
        return
    assert not acd.end_wrap_up("a0", 20)  # timed: no; forced: not without a code
    run_until(acd, 41)
    if mode is WrapUpMode.TIMED:
        assert offers(acd) == [("c2", "a0")]
        return
    assert offers(acd) == []  # forced: the time alone does not end it
    assert acd.end_wrap_up("a0", 50, code="sale")
    assert offers(acd) == [("c2", "a0")]
    assert "50|NONE|q|a0|WRAPUPCODE|sale" in [e.queue_log_line() for e in acd.drain_events()]


def test_agent_wrap_up_override() -> None:
    q = QueueConfig("q", members=("a0",), wrap_up=30)
    acd = acd_with([q], [AgentConfig("a0", wrap_up=5)])
    acd.enqueue("c1", "q", "1", 0)
    handle(acd, "c1", "a0", 0, talk=10)
    run_until(acd, 15)
    assert acd.state_of("a0") is AgentState.AVAILABLE


# --- joining, leaving, overflow ------------------------------------------------------------------


def test_join_empty_maxlen_and_leave_when_empty() -> None:
    q = QueueConfig("q", members=("a0",), join_empty=False, leave_when_empty=True, maxlen=2)
    acd = acd_with([q], agents("a0"), login=False)
    assert acd.enqueue("c0", "q", "1", 0).reason == "joinempty"
    acd.login("a0", 1)
    acd.agent_call_started("a0", 1)
    assert acd.enqueue("c1", "q", "1", 2).joined
    assert acd.enqueue("c2", "q", "2", 3).joined
    assert acd.enqueue("c3", "q", "3", 4).reason == "full"
    acd.logout("a0", 5)  # on a call: applies when it ends
    acd.agent_call_ended("a0", 6)
    exits = [x for x in acd.drain() if isinstance(x, ExitQueue)]
    assert [(x.call, x.reason) for x in exits] == [("c1", "empty"), ("c2", "empty")]
    events = [e.event for e in acd.drain_events()]
    assert events.count("EXITEMPTY") == 2 and "JOINEMPTY" in events and "FULL" in events


def test_max_wait_overflows_into_another_queue_keeping_the_caller_first() -> None:
    qs = [
        QueueConfig("first", members=("a0",), max_wait=60, overflow="queue:second"),
        QueueConfig("second", members=("a1",)),
        QueueConfig("third", members=("a2",), max_wait=5, overflow="voicemail:1001"),
    ]
    acd = acd_with(qs, agents("a0", "a1", "a2"))
    acd.agent_call_started("a0", 0)
    acd.agent_call_started("a1", 0)
    acd.enqueue("c1", "first", "1", 0)
    acd.enqueue("late", "second", "2", 30)
    run_until(acd, 60)
    assert acd.calls["c1"].queue == "second" and acd.position("c1") == 1
    acd.agent_call_ended("a1", 61)
    assert offers(acd) == [("c1", "a1")]
    acd.agent_call_started("a2", 0)
    acd.enqueue("c3", "third", "3", 100)
    run_until(acd, 105)
    assert [x for x in acd.drain() if isinstance(x, ExitQueue)] == [
        ExitQueue("c3", "third", "timeout", "voicemail:1001")
    ]


def test_abandon_and_exit_key_are_logged_with_wait_time() -> None:
    q = QueueConfig("q", members=("a0",), exit_key="0")
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "q", "555", 100)
    acd.enqueue("c2", "q", "556", 101)
    acd.caller_left("c1", 142)
    assert not acd.exit_with_key("c2", "5", 150)
    assert acd.exit_with_key("c2", "0", 151)
    lines = [e.queue_log_line() for e in acd.drain_events()]
    assert "142|c1|q|NONE|ABANDON|1|1|42" in lines
    assert "151|c2|q|NONE|EXITWITHKEY|0|1|2|50" in lines


# --- announcements, last agent, callbacks --------------------------------------------------------


def test_position_and_periodic_announcements() -> None:
    q = QueueConfig("q", members=("a0",), announce_position_every=30, announce_every=45)
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "q", "1", 0)
    acd.enqueue("c2", "q", "2", 0)
    acd.drain()
    run_until(acd, 46)
    got = [(x.call, x.position, x.periodic) for x in acd.drain() if isinstance(x, Announce)]
    assert got == [("c1", 1, False), ("c2", 2, False), ("c1", 1, True), ("c2", 2, True)]


def test_estimated_wait_starts_from_seeded_talk_times() -> None:
    """After a restart the estimate comes from stored talk times, not the 180 s guess."""
    q = QueueConfig("q", members=("a0",), announce_position_every=30)
    fresh = acd_with([q], agents("a0"))
    fresh.agent_call_started("a0", 0)
    fresh.enqueue("c1", "q", "1", 0)
    fresh.drain()
    run_until(fresh, 31)
    (guess,) = [x for x in fresh.drain() if isinstance(x, Announce)]
    assert guess.estimated_wait == 180  # no history at all

    seeded = acd_with([q], agents("a0"))
    seeded.seed_talk_times("q", [40.0, 60.0, 0.0])  # 0: not a talk time, ignored
    seeded.seed_talk_times("gone", [10.0])  # a queue no longer configured: nothing happens
    seeded.agent_call_started("a0", 0)
    seeded.enqueue("c1", "q", "1", 0)
    seeded.drain()
    run_until(seeded, 31)
    (announce,) = [x for x in seeded.drain() if isinstance(x, Announce)]
    assert announce.estimated_wait == 44  # 40, then 0.8 * 40 + 0.2 * 60


def test_returning_caller_reaches_the_agent_who_handled_them_last() -> None:
    q = QueueConfig("q", last_agent_days=7, last_agent_wait=20)
    acd = acd_with([q], agents("a0", "a1", "a2"))
    acd.enqueue("first", "q", "5551234", 0)
    (offer,) = offers(acd)
    assert offer[1] == "a0"
    handle(acd, "first", "a0", 1, talk=10)
    acd.agent_call_started("a0", 100)  # a0 is busy when the caller returns
    acd.enqueue("again", "q", "5551234", 101)
    assert offers(acd) == []  # held for a0 although a1 and a2 are free
    acd.agent_call_ended("a0", 110)
    assert offers(acd) == [("again", "a0")]
    # Not within M seconds: the strategy takes over.
    acd.answered("again", "a0", 111)
    acd.enqueue("third", "q", "5551234", 200)
    assert offers(acd) == []
    run_until(acd, 220)
    assert offers(acd) == [("third", "a1")]


def test_callback_keeps_its_place_and_connects_agent_and_customer() -> None:
    q = QueueConfig(
        "q",
        members=("a0",),
        callback_key="5",
        callback_offer_after=30,
        callback_attempts=2,
        callback_retry_delay=60,
    )
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "q", "5551111", 0)
    acd.enqueue("c2", "q", "5552222", 10)
    run_until(acd, 30)
    assert OfferCallback("c1", "q") in acd.drain()
    assert acd.request_callback("c1", "5551111", 31) == ("c1", True)
    acd.caller_left("c1", 33)  # the caller hangs up: the callback stays
    acd.enqueue("c3", "q", "5553333", 40)
    assert acd.position("c1") == 1
    acd.agent_call_ended("a0", 50)
    (dial,) = [x for x in acd.drain() if isinstance(x, DialCallback)]
    assert (dial.call, dial.agent, dial.number, dial.agent_first) == ("c1", "a0", "5551111", True)
    acd.callback_failed("c1", 60)  # the customer did not answer: retry, still first
    assert acd.position("c1") == 1
    (offer,) = offers(acd)
    assert offer == ("c2", "a0")  # meanwhile the agent takes the next caller
    acd.answered("c2", "a0", 61)
    acd.call_completed("c2", 70, "agent")
    assert offers(acd) == [("c3", "a0")]  # c1 waits for its retry time, in first place
    handle(acd, "c3", "a0", 71, talk=9)
    assert acd.position("c1") == 1
    run_until(acd, 120)
    (dial,) = [x for x in acd.drain() if isinstance(x, DialCallback)]
    assert dial.attempt == 2
    acd.callback_answered("c1", "a0", 125)
    acd.call_completed("c1", 185, "agent")
    events = [e.event for e in acd.drain_events() if e.call == "c1"]
    assert events == [
        "ENTERQUEUE",
        "CALLBACKREQUEST",
        "CALLBACKRETRY",
        "CALLBACKCONNECT",
        "COMPLETEAGENT",
    ]


def test_callback_gives_up_after_its_attempts() -> None:
    q = QueueConfig("q", members=("a0",), callback_attempts=1)
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "q", "1", 0)
    acd.request_callback("c1", "5551111", 1)
    acd.agent_call_ended("a0", 2)
    assert [x.agent for x in acd.drain() if isinstance(x, DialCallback)] == ["a0"]
    acd.callback_failed("c1", 11, "busy")
    assert "c1" not in acd.calls and acd.state_of("a0") is AgentState.AVAILABLE
    assert "11|c1|q|NONE|CALLBACKFAILED|5551111|1|busy" in [
        e.queue_log_line() for e in acd.drain_events()
    ]


def test_queue_log_of_a_scripted_scenario() -> None:
    q = QueueConfig(
        "support", members=("a0", "a1"), strategy=Strategy.LINEAR, ring_timeout=15, retry_delay=0
    )
    acd = Acd(agents("a0", "a1"), [q])
    t0 = 1_700_000_000.0
    acd.login("a0", t0)
    acd.login("a1", t0 + 1)
    acd.enqueue("call-1", "support", "5551234", t0 + 10)
    run_until(acd, t0 + 25)  # a0 does not answer; a1 is offered
    acd.answered("call-1", "a1", t0 + 27)
    acd.call_completed("call-1", t0 + 87, "caller")
    acd.enqueue("call-2", "support", "5559876", t0 + 100)
    acd.caller_left("call-2", t0 + 104)
    acd.pause("a1", t0 + 110, "lunch")
    acd.unpause("a1", t0 + 170)
    acd.logout("a0", t0 + 200)
    assert [e.queue_log_line() for e in acd.drain_events()] == [
        "1700000000|NONE|NONE|a0|AGENTLOGIN|Local/a0",
        "1700000001|NONE|NONE|a1|AGENTLOGIN|Local/a1",
        "1700000010|call-1|support|NONE|ENTERQUEUE||5551234",
        "1700000025|call-1|support|a0|RINGNOANSWER|15000",
        "1700000027|call-1|support|a1|CONNECT|17|call-1|2",
        "1700000087|call-1|support|a1|COMPLETECALLER|17|60|1",
        "1700000100|call-2|support|NONE|ENTERQUEUE||5559876",
        "1700000104|call-2|support|NONE|ABANDON|1|1|4",
        "1700000110|NONE|NONE|a1|PAUSE|lunch",
        "1700000170|NONE|NONE|a1|UNPAUSE|",
        "1700000200|NONE|NONE|a0|AGENTLOGOFF|Local/a0|200",
    ]


def test_duplicate_callback_request_leaves_the_queue() -> None:
    q = QueueConfig("q", members=("a0",), callback_key="5")
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "q", "1", 0)
    acd.enqueue("c2", "q", "1", 1)
    assert acd.request_callback("c1", "5551111", 2) == ("c1", True)
    assert acd.request_callback("c2", "5551111", 3) == ("c1", False)
    assert "c2" not in acd.calls  # the caller hangs up; their place was the first request's
    assert "3|c2|q|NONE|EXITWITHKEY|5|2|2|2" in [e.queue_log_line() for e in acd.drain_events()]


def test_missed_agent_is_not_offered_the_same_caller_at_once_in_ring_all() -> None:
    q = QueueConfig("q", strategy=Strategy.RING_ALL, ring_timeout=30, retry_delay=0)
    acd = acd_with([q], agents("a0", "a1"))
    acd.enqueue("c1", "q", "1", 0)
    assert sorted(offers(acd)) == [("c1", "a0"), ("c1", "a1")]
    acd.offer_failed("c1", "a0", 1)  # a0's phone refuses (486)
    assert offers(acd) == []  # not rung again while a1 still rings
    acd.offer_failed("c1", "a1", 1.5)
    run_until(acd, 2.6)  # the retry after the minimum re-offer delay rings both again
    assert sorted(offers(acd)) == [("c1", "a0"), ("c1", "a1")]


def test_overflow_timers_of_an_earlier_entry_are_ignored() -> None:
    qs = [
        QueueConfig("a", members=("a0",), max_wait=10, overflow="queue:b", announce_every=5),
        QueueConfig("b", members=("a0",)),
    ]
    acd = acd_with(qs, agents("a0"))
    acd.agent_call_started("a0", 0)
    acd.enqueue("c1", "a", "1", 0)
    run_until(acd, 10)  # into "b", which announces nothing
    assert acd.calls["c1"].queue == "b"
    acd.drain()
    run_until(acd, 60)  # the old announcement timer neither loops nor announces
    assert [x for x in acd.drain() if isinstance(x, Announce)] == []


def test_pending_requests_do_not_outlive_their_state() -> None:
    q = QueueConfig("q", members=("a0",), ring_timeout=5, auto_pause_after=1)
    acd = acd_with([q], agents("a0"))
    acd.enqueue("c1", "q", "1", 0)
    acd.logout("a0", 1)  # while ringing: pending
    run_until(acd, 5)  # missed -> auto-pause would apply, but the agent asked to leave
    assert acd.state_of("a0") is AgentState.LOGGED_OUT
    acd.login("a0", 10)
    assert acd.state_of("a0") is AgentState.RINGING  # no stale pause; offered the caller


def test_callback_from_outside_the_queue_and_wrap_up_codes() -> None:
    q = QueueConfig(
        "q", members=("a0",), wrap_up=30, wrap_up_mode=WrapUpMode.FORCED, wrap_up_codes=("11",)
    )
    acd = acd_with([q], agents("a0"))
    acd.agent_call_started("a0", 0, "outbound")
    assert acd.agents["a0"].sm.reason == "outbound"
    assert acd.enqueue_callback("cb1", "q", "5550000", "5550000", 1) == ("cb1", True)
    assert acd.enqueue_callback("cb2", "q", "5550000", "5550000", 2) == ("cb1", False)
    acd.agent_call_ended("a0", 3)
    (dial,) = [x for x in acd.drain() if isinstance(x, DialCallback)]
    assert dial.number == "5550000"
    acd.callback_answered("cb1", "a0", 10)
    acd.call_completed("cb1", 11, "agent")
    assert not acd.end_wrap_up("a0", 11, "99")  # not one of the queue's codes
    assert acd.end_wrap_up("a0", 12, "11")


def test_reconfigure_keeps_state_adds_and_retires() -> None:
    """config reload: a queue's rules change under its waiting callers, a new agent and a
    new queue appear, a removed agent is logged out after their call, a removed queue takes
    no new callers and goes away once drained."""
    acd = acd_with(
        [QueueConfig("old", members=("a0",)), QueueConfig("q", members=("a0",))],
        agents("a0", "a1"),
    )
    acd.agent_call_started("a0", 0)
    acd.enqueue("w1", "old", "1", 1)
    acd.enqueue("w2", "q", "2", 2)
    acd.reconfigure(
        [AgentConfig("a0"), AgentConfig("a2")],
        [QueueConfig("q", members=("a0", "a2"), wrap_up=7), QueueConfig("new")],
        10,
    )
    assert acd.state_of("a1") is AgentState.LOGGED_OUT  # gone from the config
    assert acd.enqueue("x", "old", "3", 11).reason == "unknown_queue"
    assert acd.position("w1") == 1 and acd.position("w2") == 1  # still waiting, in place
    acd.login("a2", 12)
    assert offers(acd) == [("w2", "a2")]  # the new member takes the caller of "q"
    acd.answered("w2", "a2", 13)
    acd.call_completed("w2", 20, "agent")
    assert acd.state_of("a2") is AgentState.WRAP_UP  # the new wrap_up of "q" applies
    acd.agent_call_ended("a0", 21)
    assert offers(acd) == [("w1", "a0")]  # the retired queue is still served until empty
    acd.answered("w1", "a0", 22)
    assert "old" in acd.queues  # its call is still connected
    acd.call_completed("w1", 30, "caller")
    assert "old" not in acd.queues and acd.state_of("a0") is AgentState.AVAILABLE
    acd.login("a1", 30)
    assert acd.state_of("a1") is AgentState.LOGGED_OUT  # removed agents cannot log in


# --- required skills (the route's or IVR node's ``skills:``) --------------------------------------


def test_required_skills_hold_in_a_queue_without_rules() -> None:
    """A ``skills: [chinese]`` call waits while only agents without chinese are free, and
    goes to the chinese agent as soon as she logs in — no ``skill_rules`` needed."""
    ags = agents("a0", "a1", a0={"english": 90}, a1={"chinese": 40})
    acd = acd_with([QueueConfig("q", strategy=Strategy.LONGEST_IDLE)], ags, login=False)
    acd.login("a0", 0.0)
    acd.drain()
    assert acd.enqueue("c1", "q", "555", 1.0, variables={"skills": "chinese"}).joined
    assert offers(acd) == []  # a0 is free but lacks chinese
    acd.login("a1", 2.0)
    assert offers(acd) == [("c1", "a1")]


def test_every_required_skill_is_needed_and_rules_still_apply() -> None:
    ags = agents(
        "a0", "a1", "a2",
        a0={"chinese": 90},
        a1={"chinese": 20, "billing": 50},
        a2={"chinese": 80, "billing": 60},
    )  # fmt: skip
    rules = (RuleStep(parse_requirements("chinese >= 50")),)
    acd = acd_with([QueueConfig("q", strategy=Strategy.LONGEST_IDLE, skill_rules=rules)], ags)
    acd.enqueue("c1", "q", "555", 5.0, variables={"skills": "chinese,billing"})
    # a0 lacks billing, a1 has both but not chinese >= 50: only a2 qualifies.
    assert offers(acd) == [("c1", "a2")]


def test_join_empty_counts_only_agents_with_the_required_skills() -> None:
    ags = agents("a0", a0={"english": 90})
    acd = acd_with([QueueConfig("q", join_empty=False)], ags)
    refused = acd.enqueue("c1", "q", "555", 1.0, variables={"skills": "chinese"})
    assert not refused.joined and refused.reason == "joinempty"
    assert acd.enqueue("c2", "q", "556", 1.0, variables={"skills": "english"}).joined

"""web.hub and web.auth's throttle: who sees which event, slow clients cut off, login
attempts limited per name and per address."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from acd.host import OfferEnded, OfferMade
from crm import AgentStateData, QueueEventData
from pbx.events import CallEnded, CallRetired, CallStarted, LegAnswered, RegistrationChanged
from web.auth import LoginThrottle, Principal
from web.hub import FANOUT_SLICE, MAX_BACKLOG, EventHub

SCOPES = {
    "bob": (frozenset({"1002"}), frozenset({"support"})),
    "carol": (frozenset({"1003"}), frozenset({"sales"})),
}


def _hub() -> EventHub:
    return EventHub(lambda agent: SCOPES.get(agent, (frozenset(), frozenset())))


def _texts(listener: object) -> list[dict[str, object]]:
    q = listener.queue  # type: ignore[attr-defined]
    out = []
    while not q.empty():
        text = q.get_nowait()
        out.append(json.loads(text) if text is not None else {"cut": True})
    return out


AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
BOB = Principal("bob", "agent", "bob", "token")
CAROL = Principal("carol", "agent", "carol", "token")
SUE = Principal("sue", "supervisor", None, "token")
QA = Principal("quinn", "qa", None, "token")


async def test_agents_see_their_own_state_calls_and_queues_only() -> None:
    hub = _hub()
    bob, carol, sue, qa = (hub.connect(p) for p in (BOB, CAROL, SUE, QA))
    hub.on_acd_item(AgentStateData(AT, "bob", "LOGGED_OUT", "AVAILABLE", "login"))
    hub.on_acd_item(QueueEventData(AT, "q1", "support", "bob", "CONNECT", ("3",)))
    hub.on_call_event(CallStarted("c1", "1001", "1002", "1001"))
    hub.on_call_event(LegAnswered("c1", "c1-b", "1002", "callee"))
    hub.on_call_event(
        CallEnded("c1", "1001", "1002", "caller", "normal_clearing", "answered", True)
    )
    hub.on_call_event(
        RegistrationChanged("1002", "sip:1002@127.0.0.1:5062", "added", "127.0.0.1:5062")
    )

    bob_seen = _texts(bob)
    assert [(e["type"], e.get("event")) for e in bob_seen] == [
        ("agent_state", "login"),
        ("queue", "CONNECT"),
        ("call", "answered"),
        ("call", "ended"),
    ]
    # Bob's extension answered: the started event (before it was his) went to qa/sup only.
    assert _texts(carol) == []
    sue_seen = [(e["type"], e.get("event")) for e in _texts(sue)]
    assert sue_seen == [
        ("agent_state", "login"),
        ("queue", "CONNECT"),
        ("call", "started"),
        ("call", "answered"),
        ("call", "ended"),
        ("registration", "added"),
    ]
    assert [e["type"] for e in _texts(qa)] == ["agent_state", "queue", "call", "call", "call"]


async def test_the_caller_side_agent_sees_the_call_from_the_start() -> None:
    hub = _hub()
    carol = hub.connect(CAROL)
    hub.on_call_event(CallStarted("c2", "1003", "5551234", "1003"))
    seen = _texts(carol)
    assert [(e["event"], e["caller_ext"]) for e in seen] == [("started", "1003")]


async def test_a_trunk_caller_presenting_an_extensions_number_is_not_that_agents_call() -> None:
    hub = _hub()
    carol, sue = hub.connect(CAROL), hub.connect(SUE)
    # A carrier's caller claims 1003 (Carol's extension) and reaches 600 (a queue).
    hub.on_call_event(CallStarted("t1", "1003", "600", "1003", caller_trunk="carrier"))
    hub.on_call_event(LegAnswered("t1", "t1-b", "1002", "callee"))
    hub.on_call_event(
        CallEnded("t1", "1003", "1002", "caller", "normal_clearing", "ANSWERED", True)
    )
    # Carol dials out to a number that happens to read 1002 (Bob's extension).
    bob = hub.connect(BOB)
    hub.on_call_event(CallStarted("t2", "1003", "1002", "1003"))
    hub.on_call_event(LegAnswered("t2", "t2-b", "1002", "callee", trunk="carrier"))
    assert [(e["call_id"], e["event"]) for e in _texts(carol)] == [
        ("t2", "started"),
        ("t2", "answered"),
    ]
    assert _texts(bob) == []
    # Supervisors see every call; the event still shows the number presented.
    seen = _texts(sue)
    assert [(e["call_id"], e["event"]) for e in seen] == [
        ("t1", "started"),
        ("t1", "answered"),
        ("t1", "ended"),
        ("t2", "started"),
        ("t2", "answered"),
    ]
    assert seen[0]["caller_ext"] == "1003"


async def test_a_slow_client_is_cut_off_and_the_others_carry_on() -> None:
    hub = _hub()
    slow, fast = hub.connect(SUE), hub.connect(QA)
    for i in range(MAX_BACKLOG + 5):
        hub.on_acd_item(AgentStateData(AT, "bob", "AVAILABLE", "NOT_READY", f"e{i}"))
        if not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.dropped and slow.queue.qsize() == MAX_BACKLOG + 1
    assert not fast.dropped
    hub.disconnect(slow)
    assert slow not in hub.listeners


async def test_a_full_client_that_leaves_does_not_stop_the_stream_for_everyone() -> None:
    """A client a whole backlog behind whose socket closes (its reader put the None in the
    last slot) must not wedge the fan-out: the others keep getting events."""
    hub = _hub()
    full, other = hub.connect(SUE), hub.connect(QA)
    for _ in range(MAX_BACKLOG):
        full.queue.put_nowait("{}")
    full.queue.put_nowait(None)  # what the WebSocket route does when the client goes
    hub.on_acd_item(AgentStateData(AT, "bob", "AVAILABLE", "NOT_READY", "e1"))
    hub.on_acd_item(AgentStateData(AT, "bob", "NOT_READY", "AVAILABLE", "e2"))
    await asyncio.sleep(0)
    assert [t["new_state"] for t in _texts(other)] == ["NOT_READY", "AVAILABLE"]
    assert full.dropped
    hub.disconnect(full)
    hub.on_acd_item(AgentStateData(AT, "bob", "AVAILABLE", "NOT_READY", "e3"))
    await asyncio.sleep(0)
    assert [t["new_state"] for t in _texts(other)] == ["NOT_READY"]


async def test_closing_the_hub_ends_every_stream() -> None:
    hub = _hub()
    a, b = hub.connect(SUE), hub.connect(BOB)
    for _ in range(MAX_BACKLOG):
        b.queue.put_nowait("{}")
    hub.close()
    assert a.queue.get_nowait() is None and a.dropped and b.dropped
    assert not hub.listeners


def test_throttle_limits_per_name_and_per_address() -> None:
    t = LoginThrottle(limit=3, window=60.0, address_limit=3)
    for i in range(3):
        assert t.retry_after("sue", "10.0.0.1", 100.0 + i) is None
        t.failed("sue", "10.0.0.1", 100.0 + i)
    wait = t.retry_after("sue", "10.0.0.2", 103.0)  # another address, same name
    assert wait == pytest.approx(57.0)
    assert t.retry_after("bob", "10.0.0.1", 103.0) == pytest.approx(57.0)  # same address
    assert t.retry_after("bob", "10.0.0.3", 103.0) is None
    assert t.retry_after("sue", "10.0.0.2", 161.0) is None  # the window passed
    t.begin("ann", "10.0.0.4", 200.0)
    t.end("ann", "10.0.0.4", 200.0, right=True)
    assert t.retry_after("ann", "10.0.0.5", 200.0) is None
    assert t.retry_after("ann", "10.0.0.4", 200.0) is None


def test_agents_behind_one_nat_log_in_together() -> None:
    """A shift of agents sharing one address: logins being checked and a few typos do not
    lock the others out; only wrong passwords count against the address."""
    t = LoginThrottle(limit=5, window=300.0, address_limit=50, max_pending=64)
    nat = "203.0.113.7"
    for i in range(60):  # 60 logins in flight at once
        assert t.retry_after(f"agent{i}", nat, 10.0) is None
        t.begin(f"agent{i}", nat, 10.0)
    assert t.retry_after("agent60", nat, 10.0) is None  # 61 pending: still under 64
    for i in range(60):
        t.end(f"agent{i}", nat, 10.5, right=i % 10 != 0)  # six typos
    assert t.retry_after("agent0", nat, 11.0) is None  # one typo: retry at once
    # Too many logins checked at once from one address: wait a second.
    for i in range(64):
        t.begin(f"x{i}", nat, 20.0)
    assert t.retry_after("y", nat, 20.0) == pytest.approx(1.0)
    for i in range(64):
        t.end(f"x{i}", nat, 20.1, right=True)
    assert t.retry_after("y", nat, 20.2) is None
    # Logins never checked (the store failed) count nowhere, not even against the name.
    for _ in range(10):
        t.begin("ann", nat, 25.0)
        t.end("ann", nat, 25.0, right=None)
    assert t.retry_after("ann", nat, 25.0) is None
    # A sprayer from the address: with the six typos, 50 wrong passwords lock the address
    # (until the first typo leaves the window), not other addresses.
    for i in range(44):
        t.failed(f"s{i}", nat, 30.0)
    assert t.retry_after("z", nat, 31.0) == pytest.approx(279.5)
    assert t.retry_after("z", "198.51.100.1", 31.0) is None


def test_roles_rank() -> None:
    assert SUE.at_least("qa") and SUE.at_least("agent") and not SUE.at_least("admin")
    assert not BOB.at_least("qa")


async def test_a_retired_call_ends_for_the_listeners_and_is_forgotten() -> None:
    hub = _hub()
    sue = hub.connect(SUE)
    hub.on_call_event(CallStarted("c3", "1001", "1002", "1001"))
    hub.on_call_event(CallRetired("c3"))  # picked up: goes on as another call
    hub.on_call_event(CallRetired("c3"))  # told twice: nothing more
    hub.on_call_event(LegAnswered("c3", "c3-b", "1002", "callee"))  # forgotten: not sent
    assert [e["event"] for e in _texts(sue)] == ["started", "retired"]


async def test_an_offer_goes_to_the_offered_agent_only_and_to_qa_and_up() -> None:
    # dave serves support like bob: a colleague in the same queue sees nothing either.
    scopes = {**SCOPES, "dave": (frozenset({"1009"}), frozenset({"support"}))}
    hub = EventHub(lambda agent: scopes.get(agent, (frozenset(), frozenset())))
    bob, carol, sue, qa = (hub.connect(p) for p in (BOB, CAROL, SUE, QA))
    dave = hub.connect(Principal("dave", "agent", "dave", "token"))
    hub.on_acd_item(OfferMade(AT, "bob", "c9", "support", "5550100", 4.5, "12"))
    hub.on_acd_item(OfferEnded("bob", "c9", "answered"))
    (offer, ended) = _texts(bob)
    assert offer == {
        "type": "offer",
        "time": AT.isoformat(),
        "agent": "bob",
        "call_id": "c9",
        "queue": "support",
        "caller": "5550100",
        "waited_seconds": 4.5,
        "ivr_keys": "12",
    }
    assert (ended["type"], ended["call_id"], ended["outcome"]) == ("offer_ended", "c9", "answered")
    assert _texts(carol) == [] and _texts(dave) == []
    assert [e["type"] for e in _texts(sue)] == ["offer", "offer_ended"]
    assert [e["type"] for e in _texts(qa)] == ["offer", "offer_ended"]


async def test_a_busy_fan_out_is_handed_over_a_slice_per_loop_turn_in_order() -> None:
    # 3 slices' worth of supervisors: the first slice at once, the rest in later turns of
    # the loop (so SIP and media work between them), and each client's events in order.
    hub = _hub()
    count = FANOUT_SLICE * 2 + 5
    listeners = [hub.connect(Principal(f"s{i}", "supervisor", None, "token")) for i in range(count)]
    hub.on_acd_item(AgentStateData(AT, "bob", "LOGGED_OUT", "AVAILABLE", "login"))
    hub.on_acd_item(AgentStateData(AT, "bob", "AVAILABLE", "NOT_READY", "pause"))
    assert sum(x.queue.qsize() for x in listeners) == FANOUT_SLICE
    await asyncio.sleep(0)
    assert sum(x.queue.qsize() for x in listeners) == FANOUT_SLICE * 2
    for _ in range(10):
        await asyncio.sleep(0)
    for x in listeners:
        assert [e["event"] for e in _texts(x)] == ["login", "pause"]


def test_without_a_running_loop_the_whole_fan_out_is_handed_over_at_once() -> None:
    hub = _hub()
    listeners = [
        hub.connect(Principal(f"s{i}", "supervisor", None, "token"))
        for i in range(FANOUT_SLICE + 3)
    ]
    hub.on_acd_item(AgentStateData(AT, "bob", "LOGGED_OUT", "AVAILABLE", "login"))
    assert all(x.queue.qsize() == 1 for x in listeners)

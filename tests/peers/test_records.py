"""Call records a reporting person can trust (docs/records.md), with real PJSUA2 phones: an
IVR -> queue -> agent call, an abandoned queue call, a callback and an intercepted call are
read back from the store and compared field by field with what the test did, times within
a tolerance (the test's clock and the server's are the same machine's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for
from tests.peers.test_acd import PEOPLE, answer, dial, feature

pytestmark = pytest.mark.peers

TOLERANCE = 1.0  # seconds between what the test saw and what the record says

CONFIG = """agents:
  a2: {name: Bob, extensions: ["1002"]}
acd:
  supervisors: ["1005"]
queues:
  support: {members: [a2], ring_timeout: 15, callback: {key: '5'}}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
    - {did: "5001", destination: {kind: ivr, target: front}}
    - {did: "5002", destination: {kind: ivr, target: rated}}
"""

FRONT_FLOW = """name: front
start: welcome
nodes:
  welcome: {type: play, prompt: welcome, next: q}
  q: {type: queue, queue: support}
"""


RATED_FLOW = """name: rated
start: q
nodes:
  q: {type: queue, queue: support, survey: rate}
"""

SURVEY_FLOW = """name: rate
start: ask
nodes:
  ask: {type: survey, timeout: 8, next: bye}
  bye: {type: hangup, prompt: goodbye}
"""


def start(server_factory: Callable[..., Switchboard]) -> Switchboard:
    def flows(d: Path) -> None:
        (d / "ivr").mkdir()
        (d / "ivr" / "front.yaml").write_text(FRONT_FLOW)
        (d / "ivr" / "rated.yaml").write_text(RATED_FLOW)
        (d / "ivr" / "rate.yaml").write_text(SURVEY_FLOW)

    return server_factory(extensions=PEOPLE, extra_yaml=CONFIG, setup=flows)


def at(value: str | None) -> float | None:
    """A stored UTC time (SQLite keeps naive UTC text) as epoch seconds."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def near(value: float | None, expected: float, tolerance: float = TOLERANCE) -> bool:
    return value is not None and abs(value - expected) <= tolerance


def records(sb: Switchboard, count: int) -> list[dict[str, Any]]:
    """The call records that are not feature-code beeps, once ``count`` of them exist."""

    def ready() -> list[dict[str, Any]] | None:
        rows = [r for r in sb.call_records() if not (r["dialled"] or "").startswith("*4")]
        return rows if len(rows) >= count else None

    rows: list[dict[str, Any]] = wait_for(ready, 10, f"{count} call record(s)")
    return rows


def fields(row: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(row[n] for n in names)


WHO = ("caller", "callee", "dialled", "direction", "queue", "agent", "disposition")


def test_ivr_queue_agent_call_bills_the_agents_talk_time(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """1001 dials the DID 5001: the IVR plays its welcome and queues the call; Bob logs in
    after ~3 s in the queue and answers; they talk ~3 s; the caller hangs up."""
    sb = start(server_factory)
    caller, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    t_dial = time.time()
    cid = dial(caller, sb, "5001", tone_1k)
    wait_for(lambda: any(e.get("kind") == "ENTERQUEUE" for e in sb.log_events()), 15, "queued")
    t_queued = time.time()
    time.sleep(3.0)
    assert feature(bob, sb, "*45") == 200
    b = answer(bob)
    t_agent = time.time()
    time.sleep(3.0)
    caller.hangup(call=cid)
    t_end = time.time()
    bob.wait_disconnected(call=b, timeout=10)
    (rec,) = records(sb, 1)
    assert fields(rec, *WHO) == ("1001", "1002", "5001", "inbound", "support", "a2", "ANSWERED")
    assert (rec["hangup_side"], rec["hangup_cause"], rec["linked_id"]) == (
        "caller",
        "normal_clearing",
        None,
    )
    assert rec["queue_call_id"] == rec["record_id"] and rec["callback_id"] is None
    assert near(at(rec["start"]), t_dial) and near(at(rec["system_answer"]), t_dial)
    assert near(at(rec["answer"]), t_agent) and near(at(rec["end"]), t_end)
    # Billable is the talk time (not IVR + queue), wait the time in the queue.
    assert near(rec["billable_seconds"], t_end - t_agent)
    assert near(rec["wait_seconds"], t_agent - t_queued, 1.5)
    assert rec["duration"] > rec["billable_seconds"] + 3
    # The queue log names the same agent id and call id.
    events = sb.query("SELECT * FROM queue_events WHERE event = 'CONNECT'")
    assert [(e["call_id"], e["agent"]) for e in events] == [(rec["record_id"], "a2")]


def test_an_abandoned_queue_call_is_no_answer(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """Nobody is logged in: 1001 waits ~3 s with the queue's music and hangs up."""
    sb = start(server_factory)
    caller = registered(phone_factory, sb, "1001")
    t_dial = time.time()
    cid = dial(caller, sb, "5000", tone_1k)
    time.sleep(3.0)
    caller.hangup(call=cid)
    t_end = time.time()
    caller.wait_disconnected(call=cid, timeout=10)
    (rec,) = records(sb, 1)
    assert fields(rec, *WHO) == ("1001", "5000", "5000", "inbound", "support", None, "NO ANSWER")
    assert (rec["answer"], rec["billable_seconds"], rec["hangup_side"]) == (None, 0.0, "caller")
    assert near(at(rec["system_answer"]), t_dial)
    assert near(rec["wait_seconds"], t_end - t_dial)
    assert rec["queue_call_id"] == rec["record_id"]
    (abandon,) = wait_for(
        lambda: sb.query("SELECT * FROM queue_events WHERE event = 'ABANDON'"), 5, "ABANDON"
    )
    assert abandon["call_id"] == rec["record_id"]


def test_a_callback_is_outbound_and_linked_to_its_request(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    """Nobody is logged in: 1001 waits, presses 5 and # for a callback and is hung up. Bob
    logs in: Switchboard calls Bob, then 1001; they talk ~3 s; Bob hangs up."""
    sb = start(server_factory)
    one, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    cid = dial(one, sb, "5000", tone_1k)
    time.sleep(0.5)
    one.send_dtmf("5", call=cid)
    time.sleep(1.0)
    one.send_dtmf("#", call=cid)
    assert one.wait_disconnected(call=cid, timeout=15)["code"] == 200
    assert feature(bob, sb, "*45") == 200
    b = answer(bob, timeout=10)
    c = answer(one, timeout=15)
    t_both = time.time()
    bob.play(tone_2k, call=b)
    time.sleep(3.0)
    bob.hangup(call=b)
    t_end = time.time()
    one.wait_disconnected(call=c, timeout=10)
    request, callback = records(sb, 2)
    (row,) = wait_for(
        lambda: [r for r in sb.query("SELECT * FROM callback_requests") if r["status"] == "done"],
        5,
        "callback request done",
    )
    # The call that asked: nobody answered it (NO ANSWER), it waited in the queue.
    assert fields(request, *WHO) == (
        "1001",
        "5000",
        "5000",
        "inbound",
        "support",
        None,
        "NO ANSWER",
    )
    assert (request["hangup_cause"], request["answer"]) == ("callback_requested", None)
    assert request["queue_call_id"] == request["record_id"] == row["record_id"]
    # The callback: Bob (agent a2) called 1001, for that request and queue-log id.
    assert fields(callback, *WHO) == (
        "1002",
        "1001",
        "1001",
        "outbound",
        "support",
        "a2",
        "ANSWERED",
    )
    assert (callback["queue_call_id"], callback["callback_id"]) == (row["record_id"], row["id"])
    assert callback["hangup_side"] == "caller"  # Bob, who placed it, hung up
    assert near(at(callback["answer"]), t_both)
    assert near(callback["billable_seconds"], t_end - t_both)
    events = sb.query("SELECT * FROM queue_events WHERE event = 'CALLBACKCONNECT'")
    assert [(e["call_id"], e["agent"]) for e in events] == [(row["record_id"], "a2")]


def test_an_intercept_ends_the_agents_record_and_records_the_supervisor(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """1001 calls the queue, Bob answers; after ~2 s Sue (a supervisor) intercepts with
    *54 1002: Bob is released; 1001 and Sue talk ~2 s; 1001 hangs up."""
    sb = start(server_factory)
    one, bob, sue = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1005"))
    assert feature(bob, sb, "*45") == 200
    cid = dial(one, sb, "5000", tone_1k)
    b = answer(bob)
    t_agent = time.time()
    time.sleep(2.0)
    t_sup = time.time()
    s = sue.call(sb.uri("*541002"))
    sue.wait_call_state("CONFIRMED", call=s, timeout=10)
    bob.wait_disconnected(call=b, timeout=10)
    t_intercept = time.time()
    time.sleep(2.0)
    one.hangup(call=cid)
    t_end = time.time()
    sue.wait_disconnected(call=s, timeout=10)
    agent_part, listening, went_on = records(sb, 3)
    # The agent's part ends at the intercept and stays Bob's (a2).
    assert fields(agent_part, *WHO) == (
        "1001",
        "1002",
        "5000",
        "inbound",
        "support",
        "a2",
        "ANSWERED",
    )
    assert (agent_part["hangup_cause"], agent_part["hangup_side"]) == ("intercepted", "system")
    assert near(at(agent_part["answer"]), t_agent) and near(at(agent_part["end"]), t_intercept)
    assert near(agent_part["billable_seconds"], t_intercept - t_agent)
    # Sue's own call (from dialling the code to the intercept), linked to the call.
    assert fields(listening, *WHO) == (
        "1005",
        "*541002",
        "*541002",
        "internal",
        None,
        None,
        "ANSWERED",
    )
    assert (listening["hangup_cause"], listening["linked_id"]) == (
        "intercepted",
        agent_part["record_id"],
    )
    assert near(at(listening["start"]), t_sup) and near(at(listening["end"]), t_intercept)
    # The caller and Sue go on in a call linked to the first; Sue is its callee, no agent.
    assert fields(went_on, *WHO) == (
        "1001",
        "1005",
        "5000",
        "inbound",
        "support",
        None,
        "ANSWERED",
    )
    assert went_on["linked_id"] == agent_part["record_id"]
    assert went_on["queue_call_id"] == agent_part["record_id"]
    assert (went_on["hangup_side"], went_on["hangup_cause"]) == ("caller", "normal_clearing")
    assert near(at(went_on["answer"]), t_intercept)
    assert near(went_on["billable_seconds"], t_end - t_intercept)


def test_a_survey_after_a_queue_call_names_the_agent_id(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
) -> None:
    """An IVR queue node with a survey: Bob (agent a2) answers and hangs up; the caller
    rates him with 1. The survey row names a2, as the queue log does, not extension 1002."""
    sb = start(server_factory)
    one, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    assert feature(bob, sb, "*45") == 200
    cid = dial(one, sb, "5002", tone_1k)
    b = answer(bob)
    time.sleep(1.0)
    bob.hangup(call=b)
    bob.wait_disconnected(call=b, timeout=10)
    one.record(tmp_path / "survey.wav", call=cid)  # keeps the phone's audio clock running
    time.sleep(2.0)
    one.send_dtmf("1", call=cid)
    assert one.wait_disconnected(call=cid, timeout=15)["code"] == 200
    (row,) = wait_for(lambda: sb.query("SELECT * FROM survey_results"), 10, "survey result")
    assert (row["result"], row["agent"], row["caller"]) == ("satisfied", "a2", "1001")
    rated, survey = records(sb, 2)
    assert row["record_id"] == rated["record_id"] and rated["agent"] == "a2"
    assert (survey["linked_id"], survey["callee"]) == (rated["record_id"], "survey:rate")

"""The ACD with real phones: PJSUA2 agents log in with feature codes and answer queue calls
from PJSUA2 callers; supervisors listen, whisper, barge and intercept (Switchboard as its own
process, everything over loopback)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.audio import dominant_frequency, tone_level_db
from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller One", "password": "pw-1001"},
    "1002": {"name": "Bob", "password": "pw-1002"},
    "1003": {"name": "Carol", "password": "pw-1003"},
    "1004": {"name": "Caller Two", "password": "pw-1004"},
    "1005": {"name": "Sue", "password": "pw-1005"},
}

AGENTS = """agents:
  a2: {name: Bob, extensions: ["1002"], skills: {english: 80}}
  a3: {name: Carol, extensions: ["1003"], skills: {english: 60}}
acd:
  supervisors: ["1005"]
"""


SUPPORT_DID = (
    'dialplan:\n  inbound:\n    - {did: "5000", destination: {kind: queue, target: support}}\n'
)


def start(server_factory: Callable[..., Switchboard], queues: str, dids: str) -> Switchboard:
    return server_factory(extensions=PEOPLE, extra_yaml=AGENTS + queues + dids)


def feature(phone: Phone, sb: Switchboard, code: str) -> int:
    """Dial a feature code; Switchboard beeps and hangs up (200) or refuses it."""
    cid = phone.call(sb.uri(code))
    return int(phone.wait_disconnected(call=cid, timeout=10)["code"])


def queue_events(sb: Switchboard) -> list[str]:
    return [e["line"].split("|", 1)[1] for e in sb.log_events() if e.get("event") == "queue_event"]


def agent_states(sb: Switchboard, agent: str) -> list[tuple[str, Any]]:
    return [
        (e["new"], e.get("reason"))
        for e in sb.log_events()
        if e.get("event") == "agent_state" and e.get("agent") == agent
    ]


def _since(t0: float, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches events of this call only: PJSUA2 reuses call ids, so an earlier call's
    events (same id, older time stamp) must not count."""

    def match(ev: dict[str, Any]) -> bool:
        if ev.get("_t", 0.0) < t0:
            return False
        status = ev.get("status")
        return "status" not in fields or (status is not None and fields["status"] in status)

    return match


def dial(phone: Phone, sb: Switchboard, number: str, tone: Path | None = None) -> int:
    """Call ``number``: Switchboard answers for the queue; the phone plays ``tone``."""
    t0 = time.monotonic()
    cid = phone.call(sb.uri(number))
    phone.wait_event(_since(t0), event="call_state", state="CONFIRMED", call=cid, timeout=10)
    phone.wait_event(_since(t0, status="ACTIVE"), event="media_state", call=cid, timeout=10)
    if tone is not None:
        phone.play(tone, call=cid)
    return cid


def answer(agent: Phone, timeout: float = 15.0) -> int:
    inc = agent.wait_incoming(timeout=timeout)
    cid = int(inc["call"])
    agent.answer(call=cid)
    agent.wait_event(_since(inc["_t"], status="ACTIVE"), event="media_state", call=cid, timeout=10)
    return cid


def test_longest_idle_ring_timeout_and_auto_pause(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_2k: Path,
    tone_1k: Path,
) -> None:
    """Bob logged in first, so he is idle longest and rings first; he lets it ring, the
    offer moves to Carol after the ring timeout, and his second miss pauses him."""
    sb = start(
        server_factory,
        "queues:\n  support: {strategy: longest_idle, ring_timeout: 3, retry_delay: 0.5, "
        "auto_pause_after: 2}\n",
        'dialplan:\n  inbound:\n    - {did: "5000", destination: {kind: queue, target: support}}\n',
    )
    caller, bob, carol = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1003"))
    assert feature(bob, sb, "*45") == 200
    time.sleep(1.1)
    assert feature(carol, sb, "*45") == 200
    for n in range(2):
        cid = dial(caller, sb, "5000", tone_1k)
        inc = bob.wait_incoming(timeout=10)  # the longest idle agent rings first
        bob.wait_disconnected(call=int(inc["call"]), timeout=10)  # ...and is given up on
        c = answer(carol)
        carol.play(tone_2k, call=c)
        time.sleep(0.8)
        caller.record(tmp_path / f"agent{n}.wav", call=cid)
        time.sleep(1.5)
        caller.stop_record(call=cid)
        assert abs(dominant_frequency(tmp_path / f"agent{n}.wav") - 2000) < 20
        caller.hangup(call=cid)
        carol.wait_disconnected(call=c, timeout=10)
        caller.wait_disconnected(call=cid, timeout=10)
    wait_for(lambda: ("NOT_READY", "after_no_answer") in agent_states(sb, "a2"), 5, "auto-pause")
    events = queue_events(sb)
    assert sum(1 for e in events if "|a2|RINGNOANSWER|" in e) == 2
    assert any(e.endswith("|a2|PAUSE|after_no_answer") for e in events)
    assert sum(1 for e in events if "|a3|CONNECT|" in e) == 2
    assert feature(bob, sb, "*48") == 200  # unpause
    wait_for(lambda: agent_states(sb, "a2")[-1] == ("AVAILABLE", None), 5, "unpaused")
    # The queue event log and the agent state log are in the store too.
    stored = wait_for(lambda: sb.query("SELECT * FROM queue_events ORDER BY id"), 5, "events")
    assert [r["event"] for r in stored if r["agent"] == "a2"].count("RINGNOANSWER") == 2
    rows = sb.query("SELECT * FROM agent_states WHERE agent = 'a2' ORDER BY id")
    assert [r["new_state"] for r in rows][:3] == ["AVAILABLE", "RINGING", "AVAILABLE"]
    assert ("NOT_READY", "after_no_answer") in [(r["new_state"], r["reason"]) for r in rows]
    records = sb.wait_call_records(5)  # three feature codes, two queue calls
    queue_calls = [r for r in records if r["caller"] == "1001"]
    assert [r["callee"] for r in queue_calls] == ["1003", "1003"]


def test_wrap_up_blocks_offers_and_returning_caller_reaches_last_agent(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    sb = start(
        server_factory,
        "queues:\n  support: {strategy: longest_idle, ring_timeout: 10, wrap_up: 4, "
        "last_agent: {days: 1, wait: 20}}\n",
        'dialplan:\n  inbound:\n    - {did: "5000", destination: {kind: queue, target: support}}\n',
    )
    one, bob, carol, two = (
        registered(phone_factory, sb, e) for e in ("1001", "1002", "1003", "1004")
    )
    assert feature(bob, sb, "*45") == 200
    cid = dial(one, sb, "5000", tone_1k)
    b = answer(bob)
    time.sleep(0.5)
    bob.hangup(call=b)
    one.wait_disconnected(call=cid, timeout=10)
    ended = time.monotonic()
    # Bob is in wrap-up for 4 s: the next caller waits although Bob is the only agent.
    cid2 = dial(two, sb, "5000", tone_1k)
    answer(bob)
    assert time.monotonic() - ended > 3.5
    two.hangup(call=cid2)
    two.wait_disconnected(call=cid2, timeout=10)
    # Carol logs in and is free; Bob is in wrap-up again. Caller One comes back: the call is
    # held for Bob, who handled them last, and reaches him when his wrap-up ends.
    assert feature(carol, sb, "*45") == 200
    cid3 = dial(one, sb, "5000", tone_1k)
    answer(bob, timeout=10)
    assert not carol.events(event="incoming_call")
    one.hangup(call=cid3)
    one.wait_disconnected(call=cid3, timeout=10)
    states = agent_states(sb, "a2")
    assert ("WRAP_UP", None) in states
    wait_for(lambda: sum(1 for e in queue_events(sb) if "|COMPLETE" in e) == 3, 5, "3 calls")
    events = queue_events(sb)
    assert sum(1 for e in events if "|a2|CONNECT|" in e) == 3
    assert not any("|a3|CONNECT|" in e for e in events)


def test_overflow_after_max_wait_and_abandon_with_wait_time(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    sb = start(
        server_factory,
        "queues:\n"
        "  first: {members: [a2], max_wait: 3, overflow: 'queue:second'}\n"
        "  second: {members: [a3]}\n",
        'dialplan:\n  inbound:\n    - {did: "5001", destination: {kind: queue, target: first}}\n',
    )
    one, carol, two = (registered(phone_factory, sb, e) for e in ("1001", "1003", "1004"))
    assert feature(carol, sb, "*45") == 200  # only Carol works; Bob is logged out
    cid = dial(one, sb, "5001", tone_1k)
    start_wait = time.monotonic()
    c = answer(carol, timeout=10)  # after 3 s in "first", the caller moved to "second"
    assert time.monotonic() - start_wait > 2.5
    # Carol is busy now: the next caller waits, then gives up after about 2 s.
    cid2 = dial(two, sb, "5001", tone_1k)
    time.sleep(2.2)
    two.hangup(call=cid2)
    two.wait_disconnected(call=cid2, timeout=10)
    one.hangup(call=cid)
    carol.wait_disconnected(call=c, timeout=10)
    wait_for(lambda: any("|ABANDON|" in e for e in queue_events(sb)), 5, "ABANDON")
    events = queue_events(sb)
    exits = [e for e in events if "|first|NONE|EXITWITHTIMEOUT|" in e]
    assert len(exits) == 1 and exits[0].endswith("|1|1|3")
    connect = [e for e in events if "|CONNECT|" in e]
    assert len(connect) == 1 and "|second|a3|CONNECT|" in connect[0]
    (abandon,) = [e for e in events if "|ABANDON|" in e]
    assert abandon.split("|")[1] == "first" and abandon.split("|")[-1] in ("2", "3")


def test_callback_keeps_its_place_and_connects_agent_and_customer(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    """Bob is busy. Caller One waits and presses 5 for a callback, then hangs up; Caller Two
    joins later. When Bob is free, Switchboard calls Bob, then Caller One, ahead of Two."""
    sb = start(
        server_factory,
        "queues:\n  support: {members: [a2], ring_timeout: 10, callback: {key: '5'}}\n",
        'dialplan:\n  inbound:\n    - {did: "5000", destination: {kind: queue, target: support}}\n',
    )
    one, bob, carol, two = (
        registered(phone_factory, sb, e) for e in ("1001", "1002", "1003", "1004")
    )
    assert feature(bob, sb, "*45") == 200
    first = dial(carol, sb, "5000", tone_1k)  # Carol calls the queue as a customer
    b = answer(bob)
    cid = dial(one, sb, "5000", tone_1k)
    time.sleep(0.5)
    one.send_dtmf("5", call=cid)  # callback, please...
    time.sleep(1.0)
    one.send_dtmf("#", call=cid)  # ...on this number
    assert one.wait_disconnected(call=cid, timeout=15)["code"] == 200  # "we will call you"
    cid2 = dial(two, sb, "5000", tone_1k)
    time.sleep(0.5)
    carol.hangup(call=first)
    bob.wait_disconnected(call=b, timeout=10)
    # Bob is free: the callback comes first. Bob is called, then Caller One.
    b2 = answer(bob, timeout=10)
    c1 = answer(one, timeout=15)
    bob.play(tone_2k, call=b2)
    one.play(tone_1k, call=c1)
    time.sleep(0.8)
    one.record(tmp_path / "one.wav", call=c1)
    bob.record(tmp_path / "bob.wav", call=b2)
    time.sleep(1.5)
    one.stop_record(call=c1)
    bob.stop_record(call=b2)
    assert abs(dominant_frequency(tmp_path / "one.wav") - 2000) < 20
    assert abs(dominant_frequency(tmp_path / "bob.wav") - 1000) < 20
    bob.hangup(call=b2)
    one.wait_disconnected(call=c1, timeout=10)
    b3 = answer(bob, timeout=10)  # then Caller Two, who waited all along
    two.hangup(call=cid2)
    bob.wait_disconnected(call=b3, timeout=10)
    events = queue_events(sb)
    kinds = [e.split("|")[3] for e in events if e.split("|")[1] == "support"]
    assert kinds.index("CALLBACKREQUEST") < kinds.index("CALLBACKCONNECT")
    callback_at = kinds.index("CALLBACKCONNECT")
    connects = [i for i, k in enumerate(kinds) if k == "CONNECT"]
    assert len(connects) == 2 and connects[0] < callback_at < connects[1]
    rows = wait_for(
        lambda: [r for r in sb.query("SELECT * FROM callback_requests") if r["status"] == "done"],
        5,
        "callback request done",
    )
    assert [(r["number"], r["queue"], r["outcome"]) for r in rows] == [
        ("1001", "support", "connected")
    ]


def test_supervisor_listen_whisper_barge_and_intercept(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_wav: Callable[..., Path],
) -> None:
    """Sue supervises Bob's call with Caller One, playing 1500 Hz: listen — nobody hears her;
    whisper (5) — only Bob; barge (6) — both; intercept (7) — Bob is released and Sue talks
    with the caller."""
    sb = start(
        server_factory,
        "queues:\n  support: {members: [a2]}\n",
        'dialplan:\n  inbound:\n    - {did: "5000", destination: {kind: queue, target: support}}\n',
    )
    one, bob, sue = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1005"))
    for p in (one, bob, sue):
        p.set_codecs(["PCMU"])
    assert feature(bob, sb, "*45") == 200
    cid = dial(one, sb, "5000", tone_wav(700, seconds=30))
    b = answer(bob)
    bob.play(tone_wav(1100, seconds=30), call=b)
    s = sue.call(sb.uri("*511002"))
    sue.wait_call_state("CONFIRMED", call=s, timeout=10)
    sue.wait_media_active(call=s, timeout=10)
    sue.play(tone_wav(1500, seconds=30), call=s)
    time.sleep(1.0)

    def levels(tag: str) -> tuple[float, float]:
        one.record(tmp_path / f"one-{tag}.wav", call=cid)
        bob.record(tmp_path / f"bob-{tag}.wav", call=b)
        time.sleep(1.6)
        one.stop_record(call=cid)
        bob.stop_record(call=b)
        one_rec, bob_rec = tmp_path / f"one-{tag}.wav", tmp_path / f"bob-{tag}.wav"
        # Each side hears the other party clearly in every mode.
        assert tone_level_db(one_rec, 1100) > -30 and tone_level_db(bob_rec, 700) > -30
        return (
            tone_level_db(one_rec, 1500) - tone_level_db(one_rec, 1100),
            tone_level_db(bob_rec, 1500) - tone_level_db(bob_rec, 700),
        )

    one_hears, bob_hears = levels("listen")
    assert one_hears < -25 and bob_hears < -25, (one_hears, bob_hears)
    sue.send_dtmf("5", call=s)
    time.sleep(0.8)
    one_hears, bob_hears = levels("whisper")
    assert one_hears < -25 and bob_hears > -10, (one_hears, bob_hears)
    sue.send_dtmf("6", call=s)
    time.sleep(0.8)
    one_hears, bob_hears = levels("barge")
    assert one_hears > -10 and bob_hears > -10, (one_hears, bob_hears)
    sue.send_dtmf("7", call=s)
    bob.wait_disconnected(call=b, timeout=10)  # intercept: Bob is released
    time.sleep(0.8)
    one.record(tmp_path / "one-sue.wav", call=cid)
    sue.record(tmp_path / "sue-one.wav", call=s)
    time.sleep(1.6)
    one.stop_record(call=cid)
    sue.stop_record(call=s)
    assert abs(dominant_frequency(tmp_path / "one-sue.wav") - 1500) < 20
    assert abs(dominant_frequency(tmp_path / "sue-one.wav") - 700) < 20
    one.hangup(call=cid)
    sue.wait_disconnected(call=s, timeout=10)
    modes = [e["mode"] for e in sb.log_events() if e.get("event") == "supervision"]
    assert modes == ["listen", "whisper", "barge", "intercept"]
    assert sum(1 for e in queue_events(sb) if "|a2|SUPERVISE|1005|" in e) == 4
    # Not a supervisor: refused.
    assert feature(one, sb, "*511002") == 403


def test_waiting_caller_hears_the_queue_music_then_the_agent(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_wav: Callable[..., Path],
    tone_2k: Path,
) -> None:
    """A queue's own music (here a 1.3 kHz tone) plays while nobody is free; the agent's
    audio replaces it on answer."""
    music = tone_wav(1300, seconds=5)

    def setup(folder: Path) -> None:
        (folder / "music.wav").write_bytes(music.read_bytes())

    sb = server_factory(
        extensions=PEOPLE,
        extra_yaml=AGENTS
        + "queues:\n  support: {members: [a2], music_on_hold: [music.wav]}\n"
        + SUPPORT_DID,
        setup=setup,
    )
    one, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    for p in (one, bob):
        p.set_codecs(["PCMU"])
    cid = dial(one, sb, "5000")
    time.sleep(0.5)
    one.record(tmp_path / "waiting.wav", call=cid)
    time.sleep(1.5)
    one.stop_record(call=cid)
    assert abs(dominant_frequency(tmp_path / "waiting.wav") - 1300) < 20
    assert feature(bob, sb, "*45") == 200  # Bob logs in: the caller is offered at once
    b = answer(bob)
    bob.play(tone_2k, call=b)
    time.sleep(0.8)
    one.record(tmp_path / "agent.wav", call=cid)
    time.sleep(1.5)
    one.stop_record(call=cid)
    assert abs(dominant_frequency(tmp_path / "agent.wav") - 2000) < 20
    one.hangup(call=cid)
    bob.wait_disconnected(call=b, timeout=10)


def test_reload_adds_a_queue_member_while_a_caller_waits(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """Carol is logged in but not a member; a caller waits. The admin adds her to the queue
    and reloads: the waiting caller is offered to her at once, without a restart."""
    sb = start(server_factory, "queues:\n  support: {members: [a2]}\n", SUPPORT_DID)
    one, carol = (registered(phone_factory, sb, e) for e in ("1001", "1003"))
    assert feature(carol, sb, "*45") == 200
    cid = dial(one, sb, "5000", tone_1k)
    time.sleep(1.0)
    assert not carol.events(event="incoming_call")
    text = sb.config_path.read_text()
    sb.config_path.write_text(text.replace("members: [a2]", "members: [a2, a3]"))
    assert sb.proc is not None
    sb.proc.send_signal(signal.SIGHUP)
    c = answer(carol, timeout=10)
    one.hangup(call=cid)
    carol.wait_disconnected(call=c, timeout=10)
    assert any(e.get("event") == "acd_reconfigured" for e in sb.log_events())


def test_agent_on_a_direct_call_is_not_offered_until_it_ends(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    sb = start(server_factory, "queues:\n  support: {members: [a2]}\n", SUPPORT_DID)
    one, bob, two = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1004"))
    assert feature(bob, sb, "*45") == 200
    t0 = time.monotonic()
    direct = bob.call(sb.uri("1004"))  # Bob calls a colleague: an internal call
    inc = two.wait_incoming(timeout=10)
    two.answer(call=int(inc["call"]))
    bob.wait_event(_since(t0), event="call_state", state="CONFIRMED", call=direct, timeout=10)
    cid = dial(one, sb, "5000", tone_1k)
    time.sleep(2.0)
    assert not bob.events(_since(t0), event="incoming_call")  # busy: not offered
    bob.hangup(call=direct)
    answer(bob, timeout=10)  # free again: the waiting caller rings him
    one.hangup(call=cid)
    assert ("ON_CALL", "internal") in agent_states(sb, "a2")


SKILLED_AGENTS = """agents:
  a2: {name: Bob, extensions: ["1002"], skills: {english: 80}}
  a3: {name: Carol, extensions: ["1003"], skills: {english: 60, chinese: 70}}
"""

CHINESE_FLOW = "start: q\nnodes:\n  q: {type: queue, queue: support, skills: [chinese]}\n"


def test_required_skills_hold_in_a_queue_without_rules(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """A route (DID 5000) and an IVR queue node (DID 5001) both require chinese of a queue
    with no skill rules: the call waits while only Bob (english) is free, and goes to Carol
    (chinese) when she logs in."""

    def flows(d: Path) -> None:
        (d / "ivr").mkdir()
        (d / "ivr" / "chinese.yaml").write_text(CHINESE_FLOW)

    sb = server_factory(
        extensions=PEOPLE,
        extra_yaml=SKILLED_AGENTS
        + "queues:\n  support: {strategy: longest_idle, ring_timeout: 5}\n"
        + "dialplan:\n  inbound:\n"
        + '    - {did: "5000", destination: {kind: queue, target: support, '
        + "skills: [chinese]}}\n"
        + '    - {did: "5001", destination: {kind: ivr, target: chinese}}\n',
        setup=flows,
    )
    caller, bob, carol = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1003"))
    assert feature(bob, sb, "*45") == 200
    for did in ("5000", "5001"):
        cid = dial(caller, sb, did, tone_1k)
        with pytest.raises(Exception, match="incoming"):
            bob.wait_incoming(timeout=3)  # free, but without chinese: never offered
        assert feature(carol, sb, "*45") == 200
        c = answer(carol)
        caller.hangup(call=cid)
        carol.wait_disconnected(call=c, timeout=10)
        assert feature(carol, sb, "*46") == 200  # out again for the next round
    connects = [e for e in queue_events(sb) if e.split("|")[3] == "CONNECT"]
    assert [e.split("|")[2] for e in connects] == ["a3", "a3"]


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_agents_keep_their_state_across_a_restart_and_a_crash(
    how: str,
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """Bob logs in, Carol logs in and pauses for a break (*47 1). Switchboard is stopped
    (SIGTERM) or killed (SIGKILL) and started again: the next queue call rings Bob, Carol
    stays paused, and neither log shows a logoff."""
    sb = start(server_factory, "queues:\n  support: {strategy: longest_idle}\n", SUPPORT_DID)
    caller, bob, carol = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1003"))
    assert feature(carol, sb, "*45") == 200  # Carol is idle longest...
    assert feature(bob, sb, "*45") == 200
    assert feature(carol, sb, "*471") == 200  # ...but on a break
    assert sb.proc is not None
    if how == "kill":
        sb.proc.send_signal(signal.SIGKILL)  # the beeps came after the commits
        sb.proc.wait(5)
        sb.proc = None
    else:
        sb.stop()
    sb.start()
    cid = dial(caller, sb, "5000", tone_1k)
    b = answer(bob)
    with pytest.raises(Exception, match="incoming"):
        carol.wait_incoming(timeout=1)
    caller.hangup(call=cid)
    bob.wait_disconnected(call=b, timeout=10)
    events = [e.split("|")[2:4] for e in queue_events(sb)]
    assert ["a2", "CONNECT"] in events
    assert not [e for e in events if e[1] == "AGENTLOGOFF"]
    rows = sb.query("SELECT agent, new_state, event, reason FROM agent_states ORDER BY id")
    restored = {(r["agent"], r["new_state"], r["reason"]) for r in rows if "restore" in r["event"]}
    assert restored == {("a2", "AVAILABLE", None), ("a3", "NOT_READY", "break")}

"""The agent panel's call controls with real phones (PJSUA2, one process per phone; the
routes of web/api_calls.py driven with the admin token): a caller reaches an agent through
a queue, then (a) hold: the caller hears the music on hold and not the agent's tone, the
agent hears silence; resume: the agent's tone again; (b) keypad: digits reach the caller
as RFC 4733 DTMF; (c) blind transfer to a third phone: the caller hears its tone, the
agent's phone gets a BYE; (d) consult transfer completed; (e) the auto-answer headers in
the offer's INVITE of an `auto_answer: true` extension; (f) a reject from the API moves
the offer to the next agent."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.audio import dominant_frequency, rms, tone_level_db
from tests.peers.browser import ARTIFACTS, add_user, chromium, login_page
from tests.peers.calls import hears, registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

MOH_HZ = 440  # the shipped music-on-hold track is built over an A4 pedal (media/prompts)
PEOPLE: dict[str, dict[str, Any]] = {
    "1001": {"name": "Caller", "password": "pw-1001-secret"},
    "1002": {"name": "Bob", "password": "pw-1002-secret", "auto_answer": True},
    "1003": {"name": "Carol", "password": "pw-1003-secret"},
    "1004": {"name": "Dave", "password": "pw-1004-secret"},
}
CONFIG = """agents:
  a2: {name: Bob, extensions: ["1002"]}
  a3: {name: Carol, extensions: ["1003"]}
queues:
  support: {members: [a2, a3], strategy: longest_idle, ring_timeout: 20}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


def _post(sb: Switchboard, path: str, body: dict[str, Any] | None = None) -> Any:
    r = sb.api("POST", path, json=body) if body is not None else sb.api("POST", path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r.json()


def _call_of(sb: Switchboard, ext: str) -> str:
    """The id of the answered call whose callee is ``ext``."""

    def find() -> str | None:
        items = sb.api("GET", "/api/calls").json()["items"]
        return next(
            (c["id"] for c in items if c["callee_ext"] == ext and c["state"] == "answered"),
            None,
        )

    found: str = wait_for(find, 5, f"the call answered by {ext}")
    return found


def _queue_events(sb: Switchboard) -> list[str]:
    return [e["line"].split("|", 1)[1] for e in sb.log_events() if e.get("event") == "queue_event"]


def _answer(agent: Phone, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    inc = agent.wait_incoming(timeout=timeout)
    cid = int(inc["call"])
    agent.answer(call=cid)
    agent.wait_media_active(call=cid, timeout=10)
    return cid, inc


def _dial_queue(caller: Phone, sb: Switchboard, tone: Path) -> int:
    cid = caller.call(sb.uri("5000"))
    caller.wait_call_state("CONFIRMED", call=cid, timeout=10)  # the queue answers
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone, call=cid)
    return cid


def test_hold_keypad_and_blind_transfer_from_the_panel(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
    tone_wav: Callable[..., Path],
) -> None:
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    caller, bob, dave = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1004"))
    _post(sb, "/api/agents/a2/login")
    cid = _dial_queue(caller, sb, tone_1k)
    b, inc = _answer(bob)
    # (e) Bob's extension answers queue offers by itself: the de-facto headers are there.
    assert inc["info_headers"]["call-info"].endswith(";answer-after=0"), inc
    assert inc["info_headers"]["alert-info"] == "<http://127.0.0.1>;info=alert-autoanswer"
    bob.play(tone_2k, call=b)
    call_id = _call_of(sb, "1002")
    time.sleep(0.5)
    before = hears(caller, tmp_path / "before.wav", call=cid)
    assert abs(dominant_frequency(before) - 2000) < 20

    # (a) Hold from the panel: music for the caller, silence for the agent, no re-INVITE.
    t0 = time.monotonic()
    state = _post(sb, f"/api/calls/{call_id}/hold")
    hold_ms = (time.monotonic() - t0) * 1000
    assert state["on_hold"] is True and state["party"] == "callee"
    time.sleep(0.6)
    held = hears(caller, tmp_path / "held.wav", call=cid, seconds=2.0)
    assert abs(dominant_frequency(held) - MOH_HZ) < 15, held
    assert tone_level_db(held, 2000) < tone_level_db(held, MOH_HZ) - 20
    quiet = hears(bob, tmp_path / "agent-held.wav", call=b, seconds=1.2)
    assert rms(quiet, skip_seconds=0.2) < 0.01  # the agent hears neither caller nor music
    t0 = time.monotonic()
    _post(sb, f"/api/calls/{call_id}/resume")
    resume_ms = (time.monotonic() - t0) * 1000
    time.sleep(0.6)
    back = hears(caller, tmp_path / "back.wav", call=cid)
    assert abs(dominant_frequency(back) - 2000) < 20

    # Mute: the caller no longer hears the agent, who still hears the caller.
    _post(sb, f"/api/calls/{call_id}/mute")
    time.sleep(0.5)
    muted = hears(caller, tmp_path / "muted.wav", call=cid)
    assert rms(muted, skip_seconds=0.2) < 0.01  # silence: the agent's tone goes nowhere
    agent_hears = hears(bob, tmp_path / "agent-muted.wav", call=b)
    assert abs(dominant_frequency(agent_hears) - 1000) < 20
    _post(sb, f"/api/calls/{call_id}/unmute")

    # (b) The keypad: digits reach the caller's phone as RFC 4733 events.
    t1 = time.monotonic()
    _post(sb, f"/api/calls/{call_id}/dtmf", {"digits": "12#"})
    assert caller.wait_dtmf(3, call=cid, timeout=5) == "12#"
    dtmf_seconds = time.monotonic() - t1

    # (c) Blind transfer to Dave: the caller hears Dave; Bob's phone gets a BYE.
    answer = _post(sb, f"/api/calls/{call_id}/transfer", {"target": "1004", "mode": "blind"})
    assert answer["new_call_id"] != call_id
    bob.wait_disconnected(call=b, timeout=10)
    d, _ = _answer(dave)
    dave.play(tone_wav(1500), call=d)
    time.sleep(0.5)
    heard = hears(caller, tmp_path / "dave.wav", call=cid)
    assert abs(dominant_frequency(heard) - 1500) < 20
    caller.hangup(call=cid)
    dave.wait_disconnected(call=d, timeout=10)
    wait_for(lambda: any("|a2|TRANSFER|1004|" in e for e in _queue_events(sb)), 5, "TRANSFER")
    records = sb.wait_call_records(2)
    first = next(r for r in records if r["record_id"] == call_id)
    second = next(r for r in records if r["linked_id"] == call_id)
    assert first["hangup_cause"] == "transferred" and first["callee"] == "1002"
    assert (second["caller"], second["callee"]) == ("1001", "1004")
    print(
        f"\nPOST hold {hold_ms:.0f} ms, resume {resume_ms:.0f} ms; "
        f"3 DTMF digits at the caller {dtmf_seconds:.2f} s after the POST"
    )


def test_reject_moves_the_offer_and_consult_transfer_completes(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
    tone_wav: Callable[..., Path],
) -> None:
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    caller, bob, carol, dave = (
        registered(phone_factory, sb, e) for e in ("1001", "1002", "1003", "1004")
    )
    _post(sb, "/api/agents/a2/login")  # Bob first: idle longest, offered first
    time.sleep(1.1)
    _post(sb, "/api/agents/a3/login")
    cid = _dial_queue(caller, sb, tone_1k)
    inc = bob.wait_incoming(timeout=10)
    # (f) Bob declines from the panel: his phone stops ringing and Carol's rings.
    accept = sb.api("POST", "/api/agents/a2/offer/accept")
    assert accept.status_code == 409 and "answer on your phone" in accept.json()["error"]
    rejected = _post(sb, "/api/agents/a2/offer/reject")
    assert rejected["rejected"] is True
    bob.wait_disconnected(call=int(inc["call"]), timeout=10)
    c, carol_inc = _answer(carol)
    assert "call-info" not in carol_inc["info_headers"]  # Carol's phone has no auto-answer
    carol.play(tone_2k, call=c)
    wait_for(lambda: any("|a2|RINGNOANSWER|" in e for e in _queue_events(sb)), 5, "missed")
    call_id = _call_of(sb, "1003")

    # (d) Consult Dave: the caller hears music; Dave answers and talks to Carol; complete.
    state = _post(sb, f"/api/calls/{call_id}/transfer", {"target": "1004", "mode": "consult"})
    assert state["third_party"] == {"mode": "consult", "target": "1004", "answered": False}
    d, _ = _answer(dave)
    dave.play(tone_wav(1500), call=d)
    time.sleep(0.6)
    held = hears(caller, tmp_path / "consult-held.wav", call=cid, seconds=1.6)
    assert abs(dominant_frequency(held) - MOH_HZ) < 15, held
    carol_hears = hears(carol, tmp_path / "carol-dave.wav", call=c)
    assert abs(dominant_frequency(carol_hears) - 1500) < 20
    done = _post(sb, f"/api/calls/{call_id}/transfer/complete")
    carol.wait_disconnected(call=c, timeout=10)
    time.sleep(0.5)
    heard = hears(caller, tmp_path / "caller-dave.wav", call=cid)
    assert abs(dominant_frequency(heard) - 1500) < 20
    dave_hears = hears(dave, tmp_path / "dave-caller.wav", call=d)
    assert abs(dominant_frequency(dave_hears) - 1000) < 20
    dave.hangup(call=d)
    caller.wait_disconnected(call=cid, timeout=10)
    wait_for(lambda: any("|a3|TRANSFER|1004|" in e for e in _queue_events(sb)), 5, "TRANSFER")
    records = sb.wait_call_records(2)
    new = next(r for r in records if r["record_id"] == done["new_call_id"])
    assert (new["caller"], new["callee"], new["linked_id"]) == ("1001", "1004", call_id)


def test_the_panel_buttons_hold_dial_and_transfer(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """The same controls clicked in the agent panel (Playwright, Debian's chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    password = add_user(sb, "bob", "agent", "a2")
    caller, bob, dave = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1004"))
    with chromium() as browser:
        page = login_page(browser, sb, "bob", password, size=(1100, 900))
        page.get_by_test_id("btn-login").click()
        expect(page.get_by_test_id("state")).to_have_attribute(
            "data-state", "AVAILABLE", timeout=5_000
        )
        cid = _dial_queue(caller, sb, tone_1k)
        expect(page.get_by_test_id("offer")).to_be_visible(timeout=5_000)
        page.get_by_test_id("btn-offer-accept").click()  # a desk phone: answer there
        expect(page.locator("#action-error")).to_have_text("Answer on your phone.", timeout=3_000)
        b, _ = _answer(bob)
        expect(page.get_by_test_id("call")).to_be_visible(timeout=3_000)
        page.get_by_test_id("btn-hold").click()
        status = page.get_by_test_id("calls-status")
        expect(status).to_have_attribute("data-on-hold", "true", timeout=3_000)
        expect(status).to_have_text("On hold")
        expect(page.get_by_test_id("btn-resume")).to_be_visible()
        expect(page.get_by_test_id("btn-hold")).to_be_hidden()
        expect(page.get_by_test_id("btn-xfer-cancel")).to_be_hidden()  # no consultation
        page.screenshot(path=str(ARTIFACTS / "panel-call-controls.png"), full_page=True)
        page.get_by_test_id("btn-resume").click()
        expect(status).to_have_attribute("data-on-hold", "false", timeout=3_000)
        page.keyboard.press("m")  # the shortcut mutes
        expect(status).to_have_attribute("data-muted", "true", timeout=3_000)
        page.locator("details.keypad-box summary").click()
        page.get_by_test_id("key-5").click()
        page.get_by_test_id("key-hash").click()
        assert caller.wait_dtmf(2, call=cid, timeout=5) == "5#"
        # Consult Dave, see him answer on the panel, then cancel: back with the caller.
        page.get_by_test_id("xfer-target").fill("1004")
        page.get_by_test_id("btn-xfer-consult").click()
        expect(status).to_have_attribute("data-third", "consult:ringing", timeout=3_000)
        d0, _ = _answer(dave)
        expect(status).to_have_attribute("data-third", "consult:answered", timeout=3_000)
        expect(page.get_by_test_id("btn-xfer-complete")).to_be_visible()
        page.get_by_test_id("btn-xfer-cancel").click()
        dave.wait_disconnected(call=d0, timeout=10)
        expect(status).to_have_attribute("data-third", "", timeout=3_000)
        page.get_by_test_id("btn-xfer-blind").click()
        bob.wait_disconnected(call=b, timeout=10)
        d, _ = _answer(dave)
        expect(page.get_by_test_id("call-none")).to_be_visible(timeout=5_000)
        caller.hangup(call=cid)
        dave.wait_disconnected(call=d, timeout=10)


def test_conference_joins_a_third_phone(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
    tone_wav: Callable[..., Path],
) -> None:
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    caller, bob, dave = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1004"))
    _post(sb, "/api/agents/a2/login")
    cid = _dial_queue(caller, sb, tone_1k)
    b, _ = _answer(bob)
    bob.play(tone_2k, call=b)
    call_id = _call_of(sb, "1002")
    _post(sb, f"/api/calls/{call_id}/conference", {"target": "1004"})
    d, _ = _answer(dave)
    dave.play(tone_wav(1500), call=d)
    time.sleep(0.8)
    # Everybody hears the other two (the mix), nobody their own tone back.
    heard = {
        "caller": hears(caller, tmp_path / "conf-caller.wav", call=cid),
        "bob": hears(bob, tmp_path / "conf-bob.wav", call=b),
        "dave": hears(dave, tmp_path / "conf-dave.wav", call=d),
    }
    expected = {"caller": (2000, 1500), "bob": (1000, 1500), "dave": (1000, 2000)}
    for who, (f1, f2) in expected.items():
        level = max(tone_level_db(heard[who], f1), tone_level_db(heard[who], f2))
        assert tone_level_db(heard[who], f1) > level - 12, (who, f1)
        assert tone_level_db(heard[who], f2) > level - 12, (who, f2)
    # Dave leaves: caller and Bob talk on.
    dave.hangup(call=d)
    dave.wait_disconnected(call=d, timeout=10)
    time.sleep(0.5)
    after = hears(caller, tmp_path / "conf-after.wav", call=cid)
    assert abs(dominant_frequency(after) - 2000) < 20
    # Dave again; this time Bob hangs up: the caller and Dave talk on (a warm transfer).
    _post(sb, f"/api/calls/{call_id}/conference", {"target": "1004"})
    d2, _ = _answer(dave)
    dave.play(tone_wav(1500), call=d2)
    bob.hangup(call=b)
    bob.wait_disconnected(call=b, timeout=10)
    time.sleep(0.5)
    heard_by_caller = hears(caller, tmp_path / "warm-caller.wav", call=cid)
    assert abs(dominant_frequency(heard_by_caller) - 1500) < 20
    assert abs(dominant_frequency(hears(dave, tmp_path / "warm-dave.wav", call=d2)) - 1000) < 20
    caller.hangup(call=cid)
    dave.wait_disconnected(call=d2, timeout=10)
    records = sb.wait_call_records(2)
    first = next(r for r in records if r["record_id"] == call_id)
    second = next(r for r in records if r["linked_id"] == call_id)
    assert first["hangup_cause"] == "transferred", first
    assert (second["caller"], second["callee"]) == ("1001", "1004"), second


def test_agent_hanging_up_while_the_consult_rings_keeps_the_caller(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_wav: Callable[..., Path],
) -> None:
    """Bob consults Dave and hangs up before Dave answers: the caller hears ringback, not
    silence or a dropped call, and Dave's answer connects the two."""
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    caller, bob, dave = (registered(phone_factory, sb, e) for e in ("1001", "1002", "1004"))
    _post(sb, "/api/agents/a2/login")
    cid = _dial_queue(caller, sb, tone_1k)
    b, _ = _answer(bob)
    call_id = _call_of(sb, "1002")
    _post(sb, f"/api/calls/{call_id}/transfer", {"target": "1004", "mode": "consult"})
    ringing = dave.wait_incoming(timeout=10)
    bob.hangup(call=b)
    bob.wait_disconnected(call=b, timeout=10)
    time.sleep(0.5)
    waiting = hears(caller, tmp_path / "waiting.wav", call=cid, seconds=1.5)
    # US ringback is 440 + 480 Hz (the music on hold has no 480 Hz partial).
    assert tone_level_db(waiting, 480) > tone_level_db(waiting, 1000) + 10, "no ringback"
    d = int(ringing["call"])
    dave.answer(call=d)
    dave.wait_media_active(call=d, timeout=10)
    dave.play(tone_wav(1500), call=d)
    time.sleep(0.5)
    assert abs(dominant_frequency(hears(caller, tmp_path / "dave.wav", call=cid)) - 1500) < 20
    assert abs(dominant_frequency(hears(dave, tmp_path / "caller.wav", call=d)) - 1000) < 20
    caller.hangup(call=cid)
    dave.wait_disconnected(call=d, timeout=10)
    records = sb.wait_call_records(2)
    first = next(r for r in records if r["record_id"] == call_id)
    second = next(r for r in records if r["linked_id"] == call_id)
    assert first["hangup_cause"] == "transferred", first
    assert (second["caller"], second["callee"]) == ("1001", "1004"), second

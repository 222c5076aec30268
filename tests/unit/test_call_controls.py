"""The agent panel's call controls on the seam (``CallControl.hold`` … ``conference``),
driven on a real B2BUA between fake phones (``call_harness``): hold and mute in the
anchored media, keypad digits as RFC 4733, blind transfer (to an extension, a queue, an
outside number), consult transfer (complete, cancel, the target hanging up), conference,
and the auto-answer headers of queue offers."""

from __future__ import annotations

import asyncio

import pytest

from pbx.b2bua import CallState
from pbx.control import CallControl
from pbx.events import CallArrived, CallEnded, OfferAnswered
from tests.unit.call_harness import MOH, Phone, Switchboard, settle


@pytest.fixture
def sb() -> Switchboard:
    return Switchboard()


def control_of(
    sb: Switchboard,
    *,
    resolve: dict[str, tuple[str, str]] | None = None,
    auto_answer: frozenset[str] = frozenset(),
) -> CallControl:
    routes = resolve or {}
    return CallControl(
        sb.b2b,
        is_extension=lambda n: n in sb.phones,
        tone_plan=lambda: "us",
        resolve=lambda number, ext: routes.get(number),
        auto_answer_of=lambda ext: ext in auto_answer,
    )


async def connect(sb: Switchboard, customer: Phone, agent: Phone) -> str:
    """The customer calls the agent, who answers: the call's id."""
    inv = customer.call(agent)
    await settle()
    (sent,) = agent.incoming()
    agent.ring(sent)
    agent.answer(sent)
    customer.ack(inv)
    (call,) = sb.b2b.calls
    assert call.state is CallState.ANSWERED
    return call.id


def dialog_id(sb: Switchboard, call_id: str, side: str) -> str:
    """The SIP Call-ID of the caller's (``a``) or callee's (``b``) dialog of a call."""
    call = sb.b2b.find(call_id)
    assert call is not None
    party = call.a if side == "a" else call.b
    assert party is not None and party.dialog is not None
    return party.dialog.call_id


def mutes(sb: Switchboard, leg: str) -> list[tuple[object, ...]]:
    return [c[2:] for c in sb.media.commands if c[0] == "mute" and c[1] == leg]


async def test_hold_plays_music_to_the_customer_and_silences_the_agent(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    reinvites_before = len(customer.reinvites()) + len(agent.reinvites())

    assert control.hold(call_id, "callee")
    assert sb.media.playing(a_leg) == [MOH]
    assert mutes(sb, b_leg)[-1] == (True, True)  # hears nothing, says nothing
    assert control.party_state(call_id, "callee") == {
        "on_hold": True,
        "muted": False,
        "third_party": None,
    }
    assert control.hold(call_id, "callee")  # twice: still one music player
    assert sb.media.playing(a_leg) == [MOH]

    assert control.resume(call_id, "callee")
    assert sb.media.playing(a_leg) == []
    assert mutes(sb, b_leg)[-1] == (False, False)
    assert sb.media.bridged(a_leg, b_leg)
    # Anchored media: no phone was re-INVITEd.
    assert len(customer.reinvites()) + len(agent.reinvites()) == reinvites_before


async def test_the_phones_own_hold_and_resume_keep_the_panels_hold(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None
    assert control.hold(call_id, "callee")
    hold = agent.reinvite(direction="sendonly")  # the agent presses hold on the phone too
    agent.ack_reinvite(hold)
    resume = agent.reinvite()  # ...and resumes there: the panel's hold still holds
    agent.ack_reinvite(resume)
    assert sb.media.playing(call.a.leg_id) == [MOH]
    assert control.resume(call_id, "callee")
    assert sb.media.playing(call.a.leg_id) == []


async def test_mute_keeps_the_agent_hearing_and_survives_a_hold(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    b_leg = call.b.leg_id
    assert control.mute(call_id, "callee")
    assert mutes(sb, b_leg)[-1] == (True, False)
    control.hold(call_id, "callee")
    control.resume(call_id, "callee")
    assert mutes(sb, b_leg)[-1] == (True, False)  # still muted after the hold
    assert control.mute(call_id, "callee", False)
    assert mutes(sb, b_leg)[-1] == (False, False)
    with pytest.raises(ValueError, match="party"):
        control.mute(call_id, "agent")
    assert not control.mute("nope", "callee")


async def test_keypad_digits_go_to_the_other_party_as_rfc4733(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None
    assert control.send_dtmf(call_id, "callee", "12#")
    sent = [c[1:] for c in sb.media.commands if c[0] == "send_dtmf"]
    assert sent == [(call.a.leg_id, "1"), (call.a.leg_id, "2"), (call.a.leg_id, "#")]
    call.a.dtmf_pt = None  # a party without telephone-event
    assert not control.send_dtmf(call_id, "callee", "1")


async def test_blind_transfer_to_an_extension_releases_the_agent(sb: Switchboard) -> None:
    control = control_of(sb)
    ended: list[CallEnded] = []
    control.subscribe(lambda e: ended.append(e) if isinstance(e, CallEnded) else None)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    control.hold(call_id, "callee")  # a held customer is transferred without music

    new_id = control.transfer(call_id, "callee", "2002")
    assert new_id is not None and new_id != call_id
    assert len(agent.requests_to_me("BYE")) == 1  # the agent's phone is released
    assert b_leg in sb.media.closed
    (first,) = sb.details
    assert (first.hangup_cause, first.hangup_side, first.callee) == (
        "transferred",
        "callee",
        "2001",
    )
    assert ended[0].transferred_to == "2002"
    assert sb.media.playing(a_leg) == [] and sb.media.legs[a_leg].tone == "ringback"
    await settle()
    (sent,) = third.incoming()
    assert "1001" in (sent.request.get("From") or "")
    third.answer(sent)
    new = sb.b2b.find(new_id)
    assert new is not None and new.b is not None
    assert new.linked_id == call_id and new.callee == "2002"
    assert sb.media.bridged(a_leg, new.b.leg_id)
    assert sb.media.legs[a_leg].tone is None
    third.request("BYE")
    assert len(customer.requests_to_me("BYE")) == 1
    second = sb.details[-1]
    assert (second.caller, second.callee, second.linked_id) == ("1001", "2002", call_id)


async def test_blind_transfer_to_a_phone_that_does_not_answer_ends_the_call(
    sb: Switchboard,
) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    new_id = control.transfer(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    sb.stack.respond(sent, 486)
    assert sb.b2b.find(new_id or "") is None
    assert len(customer.requests_to_me("BYE")) == 1
    assert sb.details[-1].hangup_cause == "transfer_failed"


async def test_blind_transfer_to_a_queue_number_goes_through_the_dialplan(
    sb: Switchboard,
) -> None:
    control = control_of(sb, resolve={"5000": ("queue", "support")})
    control.serve("queue")
    arrived: list[CallArrived] = []
    control.subscribe(lambda e: arrived.append(e) if isinstance(e, CallArrived) else None)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    new_id = control.transfer(call_id, "callee", "5000")
    assert new_id is not None
    (event,) = arrived
    assert (event.call_id, event.kind, event.target, event.caller) == (
        new_id,
        "queue",
        "support",
        "1001",
    )
    info = control.info(new_id)
    assert info is not None and info.linked_id == call_id and info.answered
    # A queue nobody serves, an unknown extension: nothing happens to the call.
    assert control.transfer(new_id, "callee", "ivr-x", kind="ivr") is None
    assert control.transfer(call_id, "callee", "9999", kind="extension") is None


async def test_a_refused_outside_number_leaves_the_call_as_it_was(sb: Switchboard) -> None:
    control = CallControl(
        sb.b2b,
        is_extension=lambda n: n in sb.phones,
        tone_plan=lambda: "us",
        refusal_of=lambda number, ext: "class_of_service" if number.startswith("0900") else None,
    )
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    assert control.transfer(call_id, "callee", "09001234") is None
    assert not control.consult(call_id, "callee", "09001234")
    assert not control.conference(call_id, "callee", "09001234")
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None and not call.ended
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id) and not agent.requests_to_me("BYE")


async def test_blind_transfer_to_an_outside_number_dials_for_the_agent(sb: Switchboard) -> None:
    asked: list[tuple[str, str]] = []

    def outside(number: str, ext: str) -> str:
        asked.append((number, ext))
        return "no_route"

    sb.b2b.outside = outside
    control = control_of(sb)
    customer, agent = sb.phone("1001"), sb.phone("2001")
    call_id = await connect(sb, customer, agent)
    new_id = control.transfer(call_id, "callee", "0123456789")
    # Routed as the agent's own call (class of service); refused here: the call ends.
    assert asked == [("0123456789", "2001")]
    assert new_id is not None and sb.b2b.find(new_id) is None
    assert sb.details[-1].hangup_cause == "transfer_failed"


async def test_consult_transfer_completed(sb: Switchboard) -> None:
    control = control_of(sb)
    ended: list[CallEnded] = []
    control.subscribe(lambda e: ended.append(e) if isinstance(e, CallEnded) else None)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id

    assert control.consult(call_id, "callee", "2002")
    assert not control.consult(call_id, "callee", "2002")  # one at a time
    assert sb.media.playing(a_leg) == [MOH] and sb.media.bridge_of(a_leg) is None
    assert sb.media.legs[b_leg].tone == "ringback"
    assert control.complete_consult(call_id, "callee") is None  # not answered yet
    await settle()
    (sent,) = third.incoming()
    assert "2001" in (sent.request.get("From") or "")  # the agent calls the colleague
    third.answer(sent)
    c_leg = next(leg for leg in sb.media.legs if leg not in (a_leg, b_leg))
    assert sb.media.bridged(b_leg, c_leg) and sb.media.legs[b_leg].tone is None
    assert sb.media.playing(a_leg) == [MOH]
    state = control.party_state(call_id, "callee")
    assert state is not None and state["third_party"] == {
        "mode": "consult",
        "target": "2002",
        "answered": True,
    }

    new_id = control.complete_consult(call_id, "callee")
    assert new_id is not None
    assert len(agent.requests_to_me("BYE")) == 1
    assert sb.media.bridged(a_leg, c_leg) and sb.media.playing(a_leg) == []
    (first,) = sb.details
    assert first.hangup_cause == "transferred" and ended[0].transferred_to == "2002"
    new = sb.b2b.find(new_id)
    assert new is not None and (new.caller, new.callee, new.linked_id) == (
        "1001",
        "2002",
        call_id,
    )
    third.request("BYE", call_id=sent.request.call_id)
    assert len(customer.requests_to_me("BYE")) == 1
    assert sb.details[-1].callee == "2002"


async def test_consulting_while_on_hold_lets_the_agent_hear_the_target(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent, _third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    control.hold(call_id, "callee")
    assert control.consult(call_id, "callee", "2002")
    assert mutes(sb, call.b.leg_id)[-1] == (False, False)
    assert sb.media.playing(call.a.leg_id) == [MOH]  # the customer still has music
    state = control.party_state(call_id, "callee")
    assert state is not None and not state["on_hold"]


async def test_consult_cancelled_puts_agent_and_customer_back(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    assert control.cancel_consult(call_id, "callee")
    assert len(third.requests_to_me("BYE")) == 1
    assert sb.media.bridged(a_leg, b_leg) and sb.media.playing(a_leg) == []
    assert not control.cancel_consult(call_id, "callee")
    # Cancelled while ringing: a CANCEL, then the two talk again.
    assert control.consult(call_id, "callee", "2002")
    await settle()
    third.ring(third.incoming()[-1])
    assert sb.media.bridge_of(a_leg) is None
    assert control.cancel_consult(call_id, "callee")
    assert sb.media.bridged(a_leg, b_leg)
    assert sb.stack.requests("CANCEL")
    assert call.state is CallState.ANSWERED and sb.details == []


async def test_consulted_party_hanging_up_or_refusing_reconnects(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    bye = third.request("BYE", call_id=sent.request.call_id)
    assert third.response_to(bye).status == 200
    assert sb.media.bridged(a_leg, b_leg) and call.third is None
    assert not customer.requests_to_me("BYE")
    assert control.consult(call_id, "callee", "2002")
    await settle()
    sent2 = third.incoming()[-1]
    sb.stack.respond(sent2, 486)
    assert sb.media.bridged(a_leg, b_leg) and call.third is None
    assert call.state is CallState.ANSWERED


async def test_customer_hanging_up_during_a_consult_releases_the_target(
    sb: Switchboard,
) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    customer.request("BYE")
    assert len(agent.requests_to_me("BYE")) == 1
    assert len(third.requests_to_me("BYE")) == 1
    assert sb.media.legs == {}


async def test_conference_joins_the_third_party_into_the_call(sb: Switchboard) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    assert control.conference(call_id, "callee", "2002")
    assert sb.media.bridged(a_leg, b_leg)  # they keep talking while it rings
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    bridge = sb.media.bridge_of(a_leg)
    assert bridge is not None and len(sb.media.bridge_legs(bridge)) == 3
    assert b_leg in sb.media.bridge_legs(bridge)
    # The third party leaves: the two go on.
    third.request("BYE", call_id=sent.request.call_id)
    assert sb.media.bridged(a_leg, b_leg)
    assert len(sb.media.bridge_legs(sb.media.bridge_of(a_leg) or "")) == 2
    assert call.state is CallState.ANSWERED
    # Again, and this time the agent hangs up: the customer and the third party go on.
    assert control.conference(call_id, "callee", "2002")
    await settle()
    sent2 = third.incoming()[-1]
    third.answer(sent2)
    agent.request("BYE")
    await settle()
    assert not third.requests_to_me("BYE") and not customer.requests_to_me("BYE")
    c_leg = next(leg for leg in sb.media.legs if leg != a_leg)
    assert b_leg not in sb.media.legs
    assert sb.media.bridged(a_leg, c_leg)
    assert len(sb.media.bridge_legs(sb.media.bridge_of(a_leg) or "")) == 2
    (first,) = sb.details
    assert first.hangup_cause == "transferred"
    new = next(c for c in sb.b2b.calls if c.id != call_id)
    assert (new.caller, new.callee, new.linked_id) == ("1001", "2002", call_id)
    # The customer hangs up: the third party is released and the new call recorded.
    customer.request("BYE")
    assert len(third.requests_to_me("BYE")) == 1
    assert sb.media.legs == {}
    assert sb.details[-1].callee == "2002"


async def test_queue_offers_to_an_auto_answer_extension_carry_the_headers(
    sb: Switchboard,
) -> None:
    from tests.unit.test_call import answered_by_switchboard

    control = control_of(sb, auto_answer=frozenset({"2001"}))
    answered: list[OfferAnswered] = []
    control.subscribe(lambda e: answered.append(e) if isinstance(e, OfferAnswered) else None)
    customer, auto, plain = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call, _app = await answered_by_switchboard(sb, customer)
    assert control.offer(call.id, "a1/2001", "2001", ring_timeout=10)
    assert control.offer(call.id, "a2/2002", "2002", ring_timeout=10)
    await settle()
    (to_auto,) = auto.incoming()
    (to_plain,) = plain.incoming()
    assert to_auto.request.get("Call-Info") == f"<sip:{sb.stack.host_for('x')}>;answer-after=0"
    assert to_auto.request.get("Alert-Info") == "<http://127.0.0.1>;info=alert-autoanswer"
    assert to_plain.request.get("Call-Info") is None
    assert to_plain.request.get("Alert-Info") is None


async def test_the_server_routes_a_panel_transfer_target_through_its_dialplan() -> None:
    from tests.unit.server_harness import server_from_config

    server, _replies = server_from_config(
        """
extensions:
  "1002": {password: pw2, auto_answer: true}
  "1003": {password: pw3}
agents:
  a2: {extensions: ["1002"]}
queues:
  support: {members: [a2]}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
  internal:
    - {pattern: "_0X.", destination: {kind: outbound}}
"""
    )
    control = server.control
    assert control.destination("5000", "1002") == ("queue", "support")
    assert control.destination("1003", "1002") == ("extension", "1003")
    assert control.destination("0301234567", "1002") == ("number", "0301234567")
    assert server.extensions["1002"].auto_answer
    assert not server.extensions["1003"].auto_answer


async def test_the_agent_hanging_up_an_answered_consult_completes_the_transfer(
    sb: Switchboard,
) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg = call.a.leg_id
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    c_leg = next(leg for leg in sb.media.legs if leg not in (a_leg, call.b.leg_id))
    agent.request("BYE", call_id=call.b.dialog.call_id if call.b.dialog else None)
    await settle()
    assert not agent.requests_to_me("BYE")  # it left by itself
    assert not customer.requests_to_me("BYE")  # the customer stays, with the colleague
    assert sb.media.bridged(a_leg, c_leg) and sb.media.playing(a_leg) == []
    (first,) = sb.details
    assert first.hangup_cause == "transferred"


async def test_phones_holding_during_a_consult_leave_the_customers_music(
    sb: Switchboard,
) -> None:
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.answer(sent)
    # The colleague holds and resumes on their phone; so does the agent's desk phone.
    for phone, cid in ((third, sent.request.call_id), (agent, None)):
        hold = phone.reinvite(call_id=cid, direction="sendonly")
        phone.ack_reinvite(hold)
        resume = phone.reinvite(call_id=cid)
        phone.ack_reinvite(resume)
        assert sb.media.playing(call.a.leg_id) == [MOH]  # still waiting with music
    assert control.cancel_consult(call_id, "callee")
    assert sb.media.playing(call.a.leg_id) == []
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)


async def test_the_agent_hanging_up_while_the_consult_rings_leaves_the_customer_ringing(
    sb: Switchboard,
) -> None:
    """The agent's phone hangs up before the colleague answers: the customer hears
    ringback (not music) and the colleague's answer connects them."""
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call_id = await connect(sb, customer, agent)
    call = sb.b2b.find(call_id)
    assert call is not None and call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    third.ring(sent)
    bye = agent.request("BYE")
    await settle()
    assert agent.response_to(bye).status == 200
    assert not customer.requests_to_me("BYE")
    assert b_leg not in sb.media.legs
    assert sb.media.playing(a_leg) == [] and sb.media.legs[a_leg].tone == "ringback"
    assert call.state is CallState.ANSWERED and not sb.details
    # The agent's panel can no longer hold, mute, cancel or key digits for a phone that
    # hung up; what it shows stays readable.
    assert not control.hold(call_id, "callee")
    assert not control.mute(call_id, "callee")
    assert not control.cancel_consult(call_id, "callee")
    assert not control.send_dtmf(call_id, "callee", "1")
    assert sb.media.playing(a_leg) == [] and sb.media.legs[a_leg].tone == "ringback"
    state = control.party_state(call_id, "callee")
    assert state is not None and state["third_party"] == {
        "mode": "consult",
        "target": "2002",
        "answered": False,
    }
    third.answer(sent)
    await settle()
    c_leg = next(leg for leg in sb.media.legs if leg != a_leg)
    assert sb.media.bridged(a_leg, c_leg) and sb.media.legs[a_leg].tone is None
    (first,) = sb.details
    assert first.hangup_cause == "transferred"
    # The agent's leg closed early; its quality was read then, for this record.
    assert (first.caller_mos, first.callee_mos) == (4.1, 4.1)
    assert not agent.requests_to_me("BYE")  # it left by itself: no BYE to a dead dialog
    third.request("BYE", call_id=sent.request.call_id)
    assert len(customer.requests_to_me("BYE")) == 1
    assert sb.details[-1].callee == "2002"


async def test_the_customer_waiting_for_a_consult_is_not_left_ringing_forever(
    sb: Switchboard,
) -> None:
    """After the agent left: the colleague refusing, not answering in its ring timeout, or
    the customer hanging up each end the call cleanly."""
    control = control_of(sb)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")

    # Refused.
    call_id = await connect(sb, customer, agent)
    assert control.consult(call_id, "callee", "2002")
    await settle()
    (sent,) = third.incoming()
    agent.request("BYE")
    sb.stack.respond(sent, 486)
    await settle()
    assert len(customer.requests_to_me("BYE")) == 1
    assert sb.details[-1].hangup_cause == "transfer_failed"
    assert sb.media.legs == {}

    # Not answered within the target's ring timeout (here 0.2 s).
    sb.b2b.ring_timeout_of = lambda ext: 0.2
    call_id = await connect(sb, customer, agent)
    assert control.conference(call_id, "callee", "2002")
    await settle()
    sent = third.incoming()[-1]
    third.ring(sent)
    agent.request("BYE", call_id=dialog_id(sb, call_id, "b"))
    await settle()
    assert len(customer.requests_to_me("BYE")) == 1  # not yet
    await asyncio.sleep(0.3)
    await settle()
    assert len(customer.requests_to_me("BYE")) == 2
    assert sb.details[-1].hangup_cause == "transfer_failed"
    assert sb.stack.requests("CANCEL")  # the colleague's phone stopped ringing
    assert sb.media.legs == {}

    # The call is hung up from Switchboard's side (the panel, a media timeout, shutdown)
    # while the colleague rings: the customer gets a BYE, the agent's ended dialog none.
    call_id = await connect(sb, customer, agent)
    assert control.consult(call_id, "callee", "2002")
    await settle()
    third.ring(third.incoming()[-1])
    agent.request("BYE", call_id=dialog_id(sb, call_id, "b"))
    await settle()
    byes_to_agent, byes_to_customer = (
        len(agent.requests_to_me("BYE")),
        len(customer.requests_to_me("BYE")),
    )
    control.hangup(call_id)
    await settle()
    assert len(agent.requests_to_me("BYE")) == byes_to_agent
    assert len(customer.requests_to_me("BYE")) == byes_to_customer + 1
    assert sb.media.legs == {}

    # The customer hangs up while the colleague rings.
    cancels = len(sb.stack.requests("CANCEL"))
    call_id = await connect(sb, customer, agent)
    assert control.consult(call_id, "callee", "2002")
    await settle()
    third.ring(third.incoming()[-1])
    agent.request("BYE", call_id=dialog_id(sb, call_id, "b"))
    await settle()
    byes_to_agent = len(agent.requests_to_me("BYE"))
    customer.request("BYE", call_id=dialog_id(sb, call_id, "a"))
    await settle()
    assert len(sb.stack.requests("CANCEL")) == cancels + 1
    assert len(agent.requests_to_me("BYE")) == byes_to_agent  # its dialog was over
    assert sb.media.legs == {}
    assert sb.details[-1].hangup_cause == "normal_clearing"


async def test_a_failed_consult_after_the_agent_left_still_reaches_the_survey(
    sb: Switchboard,
) -> None:
    """A queue call with a post-call survey: the agent consults, hangs up while the
    colleague rings, the colleague refuses: the caller goes to the survey, as after any
    agent hang-up, and the ACD sees the end as the agent's."""
    from pbx.side import Side
    from tests.unit.test_call import answered_by_switchboard

    control = control_of(sb)
    events: list[object] = []
    control.subscribe(events.append)
    customer, agent, third = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call, _app = await answered_by_switchboard(sb, customer)
    answered: list[Side] = []
    assert call.offer("o1", "2001", ring_timeout=30, on_answered=answered.append, on_failed=print)
    await settle()
    (sent,) = agent.incoming()
    agent.answer(sent)
    call.accept(answered[0])
    control.continue_after_callee(call.id, "ivr", "rate")
    assert control.consult(call.id, "callee", "2002")
    await settle()
    (ringing,) = third.incoming()
    third.ring(ringing)
    agent.request("BYE")
    await settle()
    sb.stack.respond(ringing, 486)
    await settle()
    assert not customer.requests_to_me("BYE")  # not hung up: surveyed
    (first,) = sb.details
    assert (first.hangup_cause, first.hangup_side) == ("transfer_failed", "callee")
    (survey,) = [e for e in events if isinstance(e, CallArrived) and e.kind == "ivr"]
    assert dict(survey.variables)["rated_call"] == call.id
    (ended,) = [e for e in events if isinstance(e, CallEnded) and e.call_id == call.id]
    assert ended.side == "callee"

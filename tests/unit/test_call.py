"""One B2BUA call driven message by message: fake phones, fake stack, fake media.

The flows follow RFC 3665 (basic call, cancel), RFC 3261 §14 (re-INVITE, glare) and
RFC 6337 (hold); ``call_harness`` explains the fakes.
"""

from __future__ import annotations

import ast
import asyncio
import pathlib
from datetime import UTC, datetime, timedelta

import pytest

import pbx
from media import PCMA, PCMU, Codec
from media.dtmf import DtmfReceived
from pbx import reinvite, sdp, transfer
from pbx.b2bua import CallState
from pbx.call import Call
from pbx.control import CallControl
from pbx.dialog import Dialog, Flow
from pbx.events import CallArrived, CallEnded, CallEvent
from pbx.side import SUPPORTED_CODECS, Side
from tests.unit.call_harness import MOH, Phone, Sent, Switchboard, offer_sdp, settle


@pytest.fixture
def sb() -> Switchboard:
    return Switchboard()


async def connect(sb: Switchboard, alice: Phone, bob: Phone) -> tuple[str, str]:
    """alice calls bob, bob answers, alice ACKs: the call-ids of alice's and bob's dialog."""
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    bob.ring(sent)
    bob.answer(sent)
    alice.ack(inv)
    (call,) = sb.b2b.calls
    assert call.state is CallState.ANSWERED
    return inv.call_id, sent.request.call_id


# -- a basic call (RFC 3665 §3.1) -------------------------------------------------------------


async def test_basic_call_invite_ringing_answer_ack_bye_writes_one_record(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (call,) = sb.b2b.calls
    assert call.state is CallState.CALLING
    (sent,) = bob.incoming()
    offer = sent.request
    assert offer.body.startswith(b"v=0")
    assert f"c=IN IP4 {sb.stack.host_for('x')}".encode() in offer.body

    bob.ring(sent)
    assert sb.b2b.calls[0].state is CallState.RINGING
    # The caller hears our ringback and gets 180 with our answer to its offer (RFC 3264 §4).
    assert sb.stack.statuses(inv.call_id) == [180]
    ringing = sb.stack.responses(inv.call_id)[0]
    assert f"m=audio {sb.media.legs[call.a.leg_id].address.local_port}".encode() in ringing.body
    assert sb.media.legs[call.a.leg_id].tone == "ringback"
    assert sb.media.legs[call.a.leg_id].remote == (alice.host, alice.rtp_port)

    bob.answer(sent)
    assert [s.request.method for s in sb.stack.sent if s.stateless] == ["ACK"]
    assert sb.stack.statuses(inv.call_id) == [180, 200]
    ok = sb.stack.responses(inv.call_id)[-1]
    assert ok.body == ringing.body  # same answer in the 200 as in the 18x
    assert call.established
    assert call.b is not None
    assert sb.media.legs[call.a.leg_id].tone is None
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)
    assert sb.media.legs[call.b.leg_id].remote == (bob.host, bob.rtp_port)

    alice.ack(inv)
    bye = alice.request("BYE")
    assert alice.response_to(bye).status == 200
    # The callee gets our BYE, the legs are closed, one record is written.
    assert len(bob.requests_to_me("BYE")) == 1
    assert call.ended
    assert sorted(sb.media.closed) == sorted([call.a.leg_id, call.b.leg_id])
    assert sb.b2b.calls == []
    (cdr,) = sb.details
    assert (cdr.caller, cdr.callee, cdr.disposition) == ("1001", "1002", "ANSWERED")
    assert (cdr.hangup_cause, cdr.hangup_side, cdr.sip_status) == ("normal_clearing", "caller", 200)
    assert cdr.answer is not None and cdr.record_id == call.id
    assert (cdr.caller_mos, cdr.caller_loss, cdr.callee_jitter_ms) == (4.1, 0.02, 3.25)
    # The dialog is gone: a late request gets no match (the server answers 481).
    assert not alice.send(alice.dialog().create_request("BYE", "SIP/2.0/UDP x;branch=z9hG4bK1"))


async def test_callee_hangs_up(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    _a_id, _b_id = await connect(sb, alice, bob)
    bye = bob.request("BYE")
    assert bob.response_to(bye).status == 200
    assert len(alice.requests_to_me("BYE")) == 1
    (cdr,) = sb.details
    assert cdr.hangup_side == "callee"


async def test_call_ended_carries_the_records_direction_and_loss(sb: Switchboard) -> None:
    # Subscribers (metrics) count ended calls by direction and their RTCP loss without
    # reading the record: the event says what the record says.
    ended: list[CallEnded] = []
    sb.b2b.events.subscribe(lambda e: ended.append(e) if isinstance(e, CallEnded) else None)
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    call.notes.direction = "inbound"
    alice.request("BYE")
    (event,) = ended
    (cdr,) = sb.details
    assert (event.direction, event.disposition) == (cdr.direction, cdr.disposition)
    assert (event.direction, event.caller_loss, event.callee_loss) == ("inbound", 0.02, 0.02)


async def test_busy_callee_gives_486_and_a_busy_record(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    sb.stack.respond(sent, 486, to_tag="busy")
    assert sb.stack.statuses(inv.call_id) == [486]
    (cdr,) = sb.details
    assert (cdr.disposition, cdr.hangup_cause, cdr.sip_status) == ("BUSY", "user_busy", 486)
    assert sb.media.legs == {}


async def test_offer_without_common_codec_is_rejected_488(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.invite("1002", body=alice.offer(codecs=(G729,)))
    sb.b2b.start_call(inv, alice.address, "UDP", "1001", "1002", [bob.contact], 30.0)
    await settle()
    assert sb.stack.statuses(inv.call_id) == [488]
    assert bob.incoming() == []
    assert sb.details[0].hangup_cause == "incompatible_media"


G729 = Codec(18, "G729", 8000)  # a codec Switchboard does not have


# -- CANCEL (RFC 3261 §9, RFC 3665 §3.8) ------------------------------------------------------


async def test_cancel_while_ringing_gives_487_and_cancels_the_branch(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    bob.ring(sent)
    alice.cancel(inv)
    assert sb.stack.statuses(inv.call_id) == [180, 487]
    (cancel,) = bob.requests_to_me("CANCEL")
    assert cancel.cseq == (sent.request.cseq[0], "CANCEL")
    assert cancel.get_list("Via")[0] == sent.request.get_list("Via")[0]  # §9.1: same branch
    (cdr,) = sb.details
    assert (cdr.disposition, cdr.hangup_cause, cdr.hangup_side) == (
        "CANCELLED",
        "originator_cancel",
        "caller",
    )
    assert sb.media.legs == {}


async def test_cancel_before_any_provisional_waits_for_one(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    alice.cancel(inv)
    # RFC 3261 §9.1: no CANCEL before a provisional response has arrived ...
    assert bob.requests_to_me("CANCEL") == []
    sb.stack.respond(sent, 100)
    # ... and as soon as one arrives.
    assert len(bob.requests_to_me("CANCEL")) == 1
    assert sb.stack.statuses(inv.call_id) == [487]


async def test_200_racing_the_cancel_gets_ack_and_bye(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    bob.ring(sent)
    alice.cancel(inv)
    # The callee answered before our CANCEL reached it (§9.1: the CANCEL has no effect).
    bob.answer(sent)
    acks = [s for s in sb.stack.sent if s.stateless and s.request.method == "ACK"]
    assert len(acks) == 1 and acks[0].dest == bob.address  # §13.2.2.4: every 2xx is ACKed
    (bye,) = bob.requests_to_me("BYE")
    assert bye.call_id == sent.request.call_id
    # The caller's transaction ended with 487 and stays ended: no 200 after it.
    assert sb.stack.statuses(inv.call_id) == [180, 487]
    assert len(sb.details) == 1 and sb.details[0].disposition == "CANCELLED"
    assert sb.media.legs == {}


async def test_cancel_after_answer_changes_nothing(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    a_id, _ = await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    call.on_cancel()
    assert call.state is CallState.ANSWERED
    assert sb.stack.statuses(a_id) == [180, 200]


async def test_cancel_while_media_is_being_allocated(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    alice.cancel(inv)  # before the setup task ran
    await settle()
    assert sb.stack.statuses(inv.call_id) == [487]
    assert bob.incoming() == []
    assert sb.media.legs == {}


# -- hold and resume by re-INVITE (RFC 3264 §8.4, RFC 6337) -----------------------------------


@pytest.mark.parametrize("direction", ["sendonly", "inactive"])
async def test_hold_and_resume(sb: Switchboard, direction: str) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    _a_id, _b_id = await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    a_leg, b_leg = call.a.leg_id, call.b.leg_id
    invites_before = len(sb.stack.requests("INVITE"))

    hold = bob.reinvite(direction=direction)
    ok = bob.response_to(hold)
    assert ok.status == 200
    # Our answer mirrors the hold (RFC 3264 §6.1) and is a new version of our description.
    expected = b"a=recvonly" if direction == "sendonly" else b"a=inactive"
    assert expected in ok.body
    assert b"o=- " in ok.body and b" 1 IN IP4" in ok.body
    assert sb.media.legs[b_leg].direction == ("recvonly" if direction == "sendonly" else "inactive")
    assert call.b.holding
    # The held party hears music on hold from its own leg; nobody else is re-INVITEd:
    # media is anchored, so the hold never reaches the other dialog.
    assert sb.media.playing(a_leg) == [MOH]
    assert len(sb.stack.requests("INVITE")) == invites_before
    bob.ack_reinvite(hold)

    resume = bob.reinvite()
    ok2 = bob.response_to(resume)
    assert ok2.status == 200 and b"a=sendrecv" in ok2.body
    assert b" 2 IN IP4" in ok2.body
    assert not call.b.holding
    assert sb.media.playing(a_leg) == []
    assert sb.media.legs[b_leg].direction == "sendrecv"
    assert sb.media.bridged(a_leg, b_leg)
    assert call.state is CallState.ANSWERED


async def test_hold_by_zero_address(sb: Switchboard) -> None:
    """RFC 2543-style hold (c=0.0.0.0) still counts as hold (RFC 3264 §8.4)."""
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    body = alice.offer().replace(f"c=IN IP4 {alice.host}".encode(), b"c=IN IP4 0.0.0.0")
    alice.sdp_version += 1
    req = alice.request("INVITE", body=body)
    assert alice.response_to(req).status == 200
    assert call.a.holding
    assert call.b is not None and sb.media.playing(call.b.leg_id) == [MOH]


async def test_unchanged_reoffer_keeps_the_sdp_version(sb: Switchboard) -> None:
    """RFC 3264 §8: a session refresh that changes nothing repeats our description."""
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    before = call.a.last_local_sdp
    req = alice.reinvite()
    assert alice.response_to(req).body == before


async def test_offerless_reinvite_gets_our_offer_in_the_200(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    req = alice.request("INVITE")
    ok = alice.response_to(req)
    assert ok.status == 200 and ok.body == call.a.last_local_sdp


async def test_hangup_while_held_stops_the_music(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (_call,) = sb.b2b.calls
    bob.reinvite(direction="sendonly")
    assert sb.media.players
    bob.request("BYE")
    assert sb.media.players == {}


# -- a failed re-INVITE keeps the session (RFC 3261 §14.1/§14.2) ------------------------------


async def test_reoffer_without_usable_codec_is_488_and_keeps_the_old_media(
    sb: Switchboard,
) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    leg = sb.media.legs[call.a.leg_id]
    before = (leg.remote, leg.codec, leg.direction, call.a.codec, call.a.last_local_sdp)
    commands = len(sb.media.commands)
    req = alice.request("INVITE", body=offer_with(alice, port=6000, codecs=(G729,), version=1))
    resp = alice.response_to(req)
    assert resp.status == 488
    assert resp.get("Warning") is not None
    assert (leg.remote, leg.codec, leg.direction, call.a.codec, call.a.last_local_sdp) == before
    assert sb.media.commands[commands:] == []
    assert call.state is CallState.ANSWERED
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)
    # The next good offer is still answered.
    ok = alice.response_to(alice.request("INVITE", body=offer_with(alice, port=6002, version=2)))
    assert ok.status == 200
    assert leg.remote == (alice.host, 6002)


async def test_reoffer_keeps_the_codec_when_still_offered(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.a.codec is not None and call.a.codec.name == "PCMU"
    ok = alice.response_to(
        alice.request("INVITE", body=offer_with(alice, codecs=(PCMA, PCMU), version=1))
    )
    assert ok.status == 200
    assert call.a.codec.name == "PCMU"


def offer_with(
    phone: Phone,
    *,
    port: int | None = None,
    codecs: tuple[Codec, ...] = (PCMU, PCMA),
    version: int = 0,
) -> bytes:
    return offer_sdp(phone.host, port or phone.rtp_port, codecs, version=version)


async def test_stale_cseq_is_500(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    dialog = alice.dialog()
    req = alice.request("OPTIONS")
    dialog.local_seq -= 2
    stale = alice.request("OPTIONS")
    assert alice.response_to(req).status == 200
    assert alice.response_to(stale).status == 500


# -- transfers (RFC 3515, RFC 3891, RFC 5589) -------------------------------------------------


def sipfrags(phone: Phone) -> list[tuple[str, str]]:
    """(sipfrag status line, Subscription-State) of every NOTIFY the phone got."""
    return [
        (n.body.decode().strip(), (n.get("Subscription-State") or "").split(";")[0])
        for n in phone.requests_to_me("NOTIFY")
    ]


async def test_blind_transfer(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    _a_id, _b_id = await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    a_leg = call.a.leg_id

    refer = bob.request("REFER", extra=[("Refer-To", f"<sip:1003@{alice.host}>")])
    assert bob.response_to(refer).status == 202
    assert sipfrags(bob) == [("SIP/2.0 100 Trying", "active")]
    notify = bob.requests_to_me("NOTIFY")[0]
    assert notify.get("Event") == "refer"
    assert notify.content_type == "message/sipfrag"
    # The transferee hears ringback while the target rings.
    assert sb.media.bridge_of(a_leg) is None
    assert sb.media.legs[a_leg].tone == "ringback"
    await settle()
    (sent,) = carol.incoming()
    assert "1001" in (sent.request.get("From") or "")  # the target sees the transferee
    carol.ring(sent)
    assert sipfrags(bob)[-1] == ("SIP/2.0 180 Ringing", "active")
    bob.answer_request("NOTIFY")

    carol.answer(sent)
    assert sipfrags(bob)[-1] == ("SIP/2.0 200 OK", "terminated")
    # The original call's record ends as transferred; a new call, linked to it, goes on.
    (first,) = sb.details
    assert (first.hangup_cause, first.hangup_side, first.callee) == (
        "transferred",
        "callee",
        "1002",
    )
    (new,) = sb.b2b.calls
    assert new.linked_id == call.id and new.id != call.id
    assert (new.caller, new.callee, new.state) == ("1001", "1003", CallState.ANSWERED)
    assert new.b is not None and sb.media.bridged(a_leg, new.b.leg_id)
    assert sb.media.legs[a_leg].tone is None
    assert call.b is not None and call.b.leg_id not in sb.media.legs  # the transferor's leg
    # The transferor hangs up after the final NOTIFY (RFC 5589 §6.1).
    bye = bob.request("BYE")
    assert bob.response_to(bye).status == 200
    assert new.state is CallState.ANSWERED and len(sb.details) == 1

    # The new call ends normally with its own record, linked to the first.
    carol.request("BYE")
    assert len(alice.requests_to_me("BYE")) == 1
    second = sb.details[-1]
    assert (second.caller, second.callee, second.linked_id) == ("1001", "1003", call.id)
    assert second.hangup_side == "callee"
    assert sb.media.legs == {}


async def test_blind_transfer_to_a_phone_that_is_busy_reconnects(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    bob.request("REFER", extra=[("Refer-To", "<sip:1003@switchboard>")])
    await settle()
    (sent,) = carol.incoming()
    sb.stack.respond(sent, 486, to_tag="busy")
    assert sipfrags(bob)[-1] == ("SIP/2.0 486 Busy Here", "terminated")
    assert call.state is CallState.ANSWERED and call.transfer is None
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)
    assert sb.media.legs[call.a.leg_id].tone is None
    assert sb.details == []


async def test_blind_transfer_to_an_unknown_extension(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    refer = bob.request("REFER", extra=[("Refer-To", "<sip:4711@switchboard>")])
    assert bob.response_to(refer).status == 202
    assert sipfrags(bob)[-1] == ("SIP/2.0 404 Not Found", "terminated")
    (call,) = sb.b2b.calls
    assert call.state is CallState.ANSWERED


async def test_transferor_leaving_early_then_target_failing_ends_the_call(
    sb: Switchboard,
) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    await connect(sb, alice, bob)
    bob.request("REFER", extra=[("Refer-To", "<sip:1003@switchboard>")])
    bob.request("BYE")  # RFC 5589: the transferor may leave at once
    await settle()
    (sent,) = carol.incoming()
    sb.stack.respond(sent, 603, to_tag="no")
    assert len(alice.requests_to_me("BYE")) == 1
    (cdr,) = sb.details
    assert cdr.hangup_cause == "transfer_failed"
    assert sb.media.legs == {}


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ([], 400),
        ([("Refer-To", "<sip:1003@x>"), ("Refer-To", "<sip:1004@x>")], 400),
        ([("Refer-To", "not a uri <<")], 400),
    ],
)
async def test_bad_refer(sb: Switchboard, header: list[tuple[str, str]], status: int) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    refer = bob.request("REFER", extra=header)
    assert bob.response_to(refer).status == status  # RFC 3515 §2.4.1


async def test_second_refer_during_a_transfer_is_491(sb: Switchboard) -> None:
    alice, bob, _carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    await connect(sb, alice, bob)
    bob.request("REFER", extra=[("Refer-To", "<sip:1003@switchboard>")])
    again = bob.request("REFER", extra=[("Refer-To", "<sip:1003@switchboard>")])
    assert bob.response_to(again).status == 491


async def test_attended_transfer_with_replaces(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    a_id, b1_id = await connect(sb, alice, bob)
    (call1,) = sb.b2b.calls
    # bob puts alice on hold and consults carol.
    bob.reinvite(call_id=b1_id, direction="sendonly")
    assert sb.media.playing(call1.a.leg_id) == [MOH]
    b2_id, _c_id = await connect_more(sb, bob, carol)
    call2 = next(c for c in sb.b2b.calls if c is not call1)
    assert call2.b is not None
    carol_leg = call2.b.leg_id

    # REFER in the first dialog names the second (bob -> carol) with Replaces (RFC 3891 §6.1).
    d2 = bob.dialog(b2_id)
    replaces = f"{d2.call_id}%3Bto-tag%3D{d2.remote_tag}%3Bfrom-tag%3D{d2.local_tag}"
    refer = bob.request(
        "REFER",
        b1_id,
        extra=[("Refer-To", f"<sip:1003@switchboard?Replaces={replaces}>")],
    )
    assert bob.response_to(refer).status == 202
    assert [f for f, _ in sipfrags(bob)] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    # bob's dialog with carol ends as if carol had accepted INVITE/Replaces.
    assert [r.call_id for r in bob.requests_to_me("BYE")] == [b2_id]
    # Both old calls end transferred; alice and carol talk in a new call linked to the first.
    assert sorted((d.record_id, d.hangup_cause) for d in sb.details) == sorted(
        [(call1.id, "transferred"), (call2.id, "transferred")]
    )
    (new,) = sb.b2b.calls
    assert new.linked_id == call1.id
    assert sb.media.bridged(call1.a.leg_id, carol_leg)
    assert sb.media.playing(call1.a.leg_id) == []  # hold music stopped
    assert {new.a.ext, new.b.ext if new.b else None} == {"1001", "1003"}
    assert carol.requests_to_me("BYE") == [] and alice.requests_to_me("BYE") == []
    # alice and carol can hang up as usual.
    alice.request("BYE", a_id)
    assert len(carol.requests_to_me("BYE")) == 1
    assert sb.details[-1].linked_id == call1.id
    assert sb.media.legs == {}


async def test_attended_transfer_to_an_unknown_dialog_fails_481(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    refer = bob.request(
        "REFER",
        extra=[("Refer-To", "<sip:1003@switchboard?Replaces=nope%3Bto-tag%3Da%3Bfrom-tag%3Db>")],
    )
    assert bob.response_to(refer).status == 202
    assert sipfrags(bob)[-1] == ("SIP/2.0 481 Call/Transaction Does Not Exist", "terminated")
    (call,) = sb.b2b.calls
    assert call.state is CallState.ANSWERED


async def connect_more(sb: Switchboard, caller: Phone, callee: Phone) -> tuple[str, str]:
    """A second call while others are up."""
    inv = caller.call(callee)
    await settle()
    (sent,) = callee.incoming()
    callee.answer(sent)
    caller.ack(inv)
    return inv.call_id, sent.request.call_id


# -- Switchboard's own re-INVITE and glare (RFC 3261 §14.1/§14.2, RFC 3311 §5.2) -------------


async def our_reoffer(sb: Switchboard, alice: Phone, bob: Phone, **kw: object) -> list[int]:
    """Connect, then re-INVITE bob from Switchboard; the list collects the final status."""
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    done: list[int] = []
    assert call.reoffer(call.b, on_done=done.append, **kw)  # type: ignore[arg-type]
    return done


async def test_our_reoffer_is_acked_and_applied(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    done = await our_reoffer(sb, alice, bob, direction="sendonly")
    (call,) = sb.b2b.calls
    assert call.b is not None
    (sent,) = bob.reinvites()
    offer = sent.request
    assert b"a=sendonly" in offer.body and b" 1 IN IP4" in offer.body
    assert offer.cseq[1] == "INVITE" and offer.to.tag
    bob.answer_offer(sent, port=7000)
    acks = [s for s in sb.stack.sent if s.stateless and s.request.method == "ACK"]
    assert acks[-1].request.cseq == (offer.cseq[0], "ACK")  # §13.2.2.4: ACK has the same CSeq
    assert done == [200]
    assert sb.media.legs[call.b.leg_id].remote == (bob.host, 7000)
    assert call.b.sdp_version == 1 and call.b.last_local_sdp == offer.body
    assert not call.b.reoffer_pending


async def test_failed_reoffer_keeps_the_old_media(sb: Switchboard) -> None:
    """RFC 3261 §14.1: a non-2xx leaves the session "as if no re-INVITE had been issued"."""
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    leg = sb.media.legs[call.b.leg_id]
    before = (leg.remote, leg.codec, leg.direction, call.b.codec, call.b.sdp_version)
    before_sdp = call.b.last_local_sdp
    done: list[int] = []
    assert call.reoffer(call.b, "inactive", on_done=done.append)
    (sent,) = bob.reinvites()
    bob.answer_offer(sent, 488)
    assert done == [488]
    assert (leg.remote, leg.codec, leg.direction, call.b.codec, call.b.sdp_version) == before
    assert call.b.last_local_sdp == before_sdp
    assert call.state is CallState.ANSWERED
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)
    assert bob.requests_to_me("BYE") == []
    # And the next offer goes out.
    assert call.reoffer(call.b)


async def test_reoffer_answered_481_ends_the_call(sb: Switchboard) -> None:
    """RFC 3261 §12.2.1.2: 481 (or 408) to an in-dialog request ends the dialog."""
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await our_reoffer(sb, alice, bob)
    (sent,) = bob.reinvites()
    bob.answer_offer(sent, 481)
    assert len(alice.requests_to_me("BYE")) == 1
    assert sb.details[0].hangup_cause == "sip_481"


async def test_only_one_offer_of_ours_at_a_time(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await our_reoffer(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    assert not call.reoffer(call.b)  # RFC 3264 §4: one offer outstanding
    assert len(bob.reinvites()) == 1


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
async def test_glare_reinvite_while_ours_is_pending_gets_491(sb: Switchboard, method: str) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    done = await our_reoffer(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    leg = sb.media.legs[call.b.leg_id]
    remote = leg.remote
    # bob offers at the same time: §14.2 (INVITE) / RFC 3311 §5.2 (UPDATE with an offer).
    bob.sdp_version += 1
    theirs = bob.request(method, body=bob.offer(direction="sendonly"))
    assert bob.response_to(theirs).status == 491
    assert leg.remote == remote and not call.b.holding
    assert sb.media.playing(call.a.leg_id) == []
    # Ours completes; then bob's retry is answered as usual.
    (sent,) = bob.reinvites()
    bob.answer_offer(sent)
    assert done == [200]
    bob.sdp_version += 1
    again = bob.request(method, body=bob.offer(direction="sendonly"))
    assert bob.response_to(again).status == 200
    assert call.b.holding


async def test_a_reoffer_to_the_other_party_is_no_glare(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await our_reoffer(sb, alice, bob)
    req = alice.reinvite(direction="sendonly")
    assert alice.response_to(req).status == 200


async def test_our_reoffer_answered_491_is_retried_once_after_a_delay(
    sb: Switchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[bool] = []

    def delay(owns_call_id: bool) -> float:
        delays.append(owns_call_id)
        return 0.01

    monkeypatch.setattr(reinvite, "glare_retry_delay", delay)
    alice, bob = sb.phone("1001"), sb.phone("1002")
    done = await our_reoffer(sb, alice, bob)
    (call,) = sb.b2b.calls
    assert call.b is not None
    (first,) = bob.reinvites()
    bob.answer_offer(first, 491)
    assert done == [] and delays == [True]  # we sent the INVITE that made bob's dialog
    assert not call.b.reoffer_pending  # bob's own re-INVITE is welcome meanwhile
    await asyncio.sleep(0.05)
    first_again, second = bob.reinvites()
    assert first_again is first and second.request.cseq[0] > first.request.cseq[0]
    bob.answer_offer(second, 491)
    assert done == [491]  # one retry only: then the caller decides
    assert call.state is CallState.ANSWERED


@pytest.mark.parametrize("owner", [True, False])
def test_glare_retry_delay_ranges(owner: bool) -> None:
    values = {reinvite.glare_retry_delay(owner) for _ in range(300)}
    low, high = (2.1, 4.0) if owner else (0.0, 2.0)
    assert all(low <= v <= high for v in values)
    assert all(round(v * 100) == v * 100 or abs(round(v * 100) - v * 100) < 1e-6 for v in values)
    assert len(values) > 20


async def test_offerless_update_is_a_target_refresh_without_body(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    req = alice.request("UPDATE")
    resp = alice.response_to(req)
    assert resp.status == 200 and resp.body == b""


async def test_transferor_that_stays_gets_a_bye(
    sb: Switchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "TRANSFEROR_BYE_AFTER", 0.01)
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    _, b_id = await connect(sb, alice, bob)
    bob.request("REFER", extra=[("Refer-To", "<sip:1003@switchboard>")])
    await settle()
    (sent,) = carol.incoming()
    carol.answer(sent)
    assert bob.requests_to_me("BYE") == []
    await asyncio.sleep(0.05)
    assert [r.call_id for r in bob.requests_to_me("BYE")] == [b_id]
    assert alice.requests_to_me("BYE") == [] and carol.requests_to_me("BYE") == []


# -- more of a call's life ----------------------------------------------------------------


async def test_early_media_from_the_callee_is_bridged_with_183(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    early = sdp_answer(bob, sent)
    bob.ring(sent, 183, body=early)
    (call,) = sb.b2b.calls
    assert sb.stack.statuses(inv.call_id) == [183]
    assert sb.media.legs[call.a.leg_id].tone is None  # RFC 3960: the callee's media, no tone
    assert call.outbound is not None
    assert sb.media.bridged(call.a.leg_id, call.outbound.leg_id)


def sdp_answer(phone: Phone, sent: Sent) -> bytes:
    return sdp.negotiate_answer(
        sent.request.body,
        host=phone.host,
        port=phone.rtp_port,
        supported=(PCMU, PCMA),
        session_id=5,
    ).answer.serialize()


async def test_busy_forwards_to_the_configured_target(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    sb.b2b.forward_of = lambda ext, reason: "1003" if (ext, reason) == ("1002", "busy") else None
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    sb.stack.respond(sent, 486, to_tag="busy")
    await settle()
    (fwd,) = carol.incoming()
    carol.answer(fwd)
    alice.ack(inv)
    (call,) = sb.b2b.calls
    assert (call.callee, call.forwards, call.state) == ("1003", 1, CallState.ANSWERED)
    assert sb.stack.statuses(inv.call_id) == [200]


async def test_no_answer_ends_with_480_after_the_ring_timeout(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob, ring_timeout=0.02)
    await settle()
    (sent,) = bob.incoming()
    bob.ring(sent)
    await asyncio.sleep(0.05)
    assert sb.stack.statuses(inv.call_id) == [180, 480]
    assert len(bob.requests_to_me("CANCEL")) == 1
    (cdr,) = sb.details
    assert (cdr.disposition, cdr.hangup_side) == ("NO ANSWER", "system")


async def test_media_unavailable_is_503(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    sb.media.fail_create = True
    inv = alice.call(bob)
    await settle()
    assert sb.stack.statuses(inv.call_id) == [503]
    assert sb.details[0].hangup_cause == "media_unavailable"


async def test_info_dtmf_is_relayed_in_order_one_at_a_time(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    for digit in "12":
        req = alice.request(
            "INFO",
            body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
            content_type="application/dtmf-relay",
        )
        assert alice.response_to(req).status == 200
    # The second INFO waits for the first one's answer (reordered INFOs lose digits).
    assert [i.body for i in bob.requests_to_me("INFO")] == [b"Signal=1\r\nDuration=160\r\n"]
    bob.answer_request("INFO")
    assert [i.body[:8] for i in bob.requests_to_me("INFO")] == [b"Signal=1", b"Signal=2"]


async def test_call_pickup_takes_the_ringing_call(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    bob.ring(sent)
    (ringing,) = sb.b2b.calls
    assert sb.b2b.ringing_call(lambda ext: ext == "1002") is ringing
    pick = carol.invite("*8")
    sb.b2b.pickup(pick, carol.address, "UDP", "1003", ringing)
    await settle()
    assert sb.stack.statuses(pick.call_id) == [200]
    assert sb.stack.statuses(inv.call_id) == [180, 200]
    assert len(bob.requests_to_me("CANCEL")) == 1
    (call,) = sb.b2b.calls
    assert call is ringing and call.callee == "1003"
    assert call.b is not None and sb.media.bridged(call.a.leg_id, call.b.leg_id)
    assert sb.details == []  # the picker's own call disappears without a record


# -- conference rooms -------------------------------------------------------------------


async def test_conference_room_members_share_one_bridge(sb: Switchboard) -> None:
    alice, bob, carol = sb.phone("1001"), sb.phone("1002"), sb.phone("1003")
    invites = []
    for phone in (alice, bob, carol):
        inv = phone.invite("800")
        sb.b2b.join_conference(inv, phone.address, "UDP", phone.ext, "800", "Room", 2)
        invites.append(inv)
    await settle()
    assert [sb.stack.statuses(i.call_id)[-1] for i in invites] == [200, 200, 486]
    room = sb.b2b.conferences.rooms["800"]
    legs = [c.a.leg_id for c in sb.b2b.calls]
    assert sorted(sb.media.bridges[room.bridge_id]) == sorted(legs)
    for phone, inv in zip((alice, bob), invites, strict=False):
        phone.ack(inv)
    alice.request("BYE")
    assert sb.media.bridges[room.bridge_id] == [legs[1]]
    bob.request("BYE")
    assert "800" not in sb.b2b.conferences.rooms
    assert room.bridge_id not in sb.media.bridges


def test_call_parts_use_only_public_b2bua_methods() -> None:
    """The parts of a call reach the B2BUA through its methods, never its fields."""
    root = pathlib.Path(pbx.__file__).parent
    for name in ("call", "outbound", "reinvite", "transfer", "cdr", "conference", "side"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and (
                    (isinstance(node.value, ast.Attribute) and node.value.attr == "b2b")
                    or (isinstance(node.value, ast.Name) and node.value.id == "b2b")
                )
            ):
                raise AssertionError(f"pbx/{name}.py:{node.lineno} touches b2b.{node.attr}")


# -- calls Switchboard answers and offers to phones (queues, the IVR) ---------------------


class App:
    """A stand-in application (the IVR) driving a call Switchboard answered."""

    def __init__(self) -> None:
        self.digits: list[str] = []
        self.hung_up = False

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)

    def on_hangup(self) -> None:
        self.hung_up = True


async def answered_by_switchboard(sb: Switchboard, caller: Phone) -> tuple[Call, App]:
    app = App()
    inv = caller.invite("4100")
    call = sb.b2b.start_application(inv, caller.address, "UDP", caller.ext, "4100", lambda c: app)
    await settle()
    assert sb.stack.statuses(inv.call_id) == [200]
    caller.ack(inv)
    return call, app


async def test_queue_offers_ring_all_and_the_first_answer_is_connected(sb: Switchboard) -> None:
    alice, agent1, agent2 = sb.phone("1001"), sb.phone("2001"), sb.phone("2002")
    call, app = await answered_by_switchboard(sb, alice)
    sb.b2b.on_dtmf(DtmfReceived(call.a.leg_id, "3", "rfc4733", 100, 0.0))
    assert app.digits == ["3"] and call.ivr_keys == "3"
    answered: list[Side] = []
    failed: list[int] = []
    for key, ext in (("o1", "2001"), ("o2", "2002")):
        assert call.offer(
            key, ext, ring_timeout=30, on_answered=answered.append, on_failed=failed.append
        )
    await settle()
    (s1,), (s2,) = agent1.incoming(), agent2.incoming()
    # The IVR key trail travels to the agent's phone.
    assert s1.request.get("X-Switchboard-IVR-Keys") == "3"
    agent1.ring(s1)
    agent2.ring(s2)
    agent1.answer(s1)
    (side,) = answered
    call.accept(side)
    assert call.b is side and call.callee == "2001" and call.app is None
    assert sb.media.bridged(call.a.leg_id, call.b.leg_id)
    assert len(agent2.requests_to_me("CANCEL")) == 1  # the other offer is withdrawn
    assert failed == [] and call.offers == {}
    bye = agent1.request("BYE")
    assert agent1.response_to(bye).status == 200
    assert len(alice.requests_to_me("BYE")) == 1
    assert sb.details[-1].ivr_keys == "3"


async def test_an_offer_answered_after_the_caller_left_is_released(sb: Switchboard) -> None:
    alice, agent = sb.phone("1001"), sb.phone("2001")
    call, app = await answered_by_switchboard(sb, alice)
    answered: list[Side] = []
    assert call.offer("o1", "2001", ring_timeout=30, on_answered=answered.append, on_failed=print)
    await settle()
    (sent,) = agent.incoming()
    agent.ring(sent)
    alice.request("BYE")
    assert app.hung_up
    # The offer was cancelled with the call; a 200 that crossed the CANCEL is hung up.
    assert len(agent.requests_to_me("CANCEL")) == 1
    agent.answer(sent)
    assert answered == []
    assert len(agent.requests_to_me("BYE")) == 1
    assert sb.media.legs == {}


async def test_connect_to_an_extension_from_an_application(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    call, _app = await answered_by_switchboard(sb, alice)
    failed: list[int] = []
    assert call.connect_to("1002", failed.append)
    assert sb.media.legs[call.a.leg_id].tone == "ringback"
    await settle()
    (sent,) = bob.incoming()
    sb.stack.respond(sent, 480, to_tag="away")
    assert failed == [480]
    assert call.established and call.b is None


async def test_answer_to_our_reoffer_after_the_call_ended_is_only_acked(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    done = await our_reoffer(sb, alice, bob)
    alice.request("BYE")
    assert len(bob.requests_to_me("BYE")) == 1
    commands = len(sb.media.commands)
    (sent,) = bob.reinvites()
    bob.answer_offer(sent)
    acks = [s for s in sb.stack.sent if s.stateless and s.request.method == "ACK"]
    assert acks[-1].request.cseq == (sent.request.cseq[0], "ACK")
    assert done == [200]
    assert sb.media.commands[commands:] == []


# -- the state table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "legal"),
    [
        (("calling", "ringing", "answered", "ended"), True),
        (("calling", "answered", "ended"), True),
        (("answered", "ended"), True),  # calls Switchboard answers itself
        (("ended",), True),
        (("ringing",), False),  # no provisional before the INVITEs went out
        (("calling", "ringing", "calling"), False),
        (("answered", "ringing"), False),
        (("calling", "ended", "answered"), False),  # an ended call stays ended
    ],
)
def test_call_state_table(path: tuple[str, ...], legal: bool) -> None:
    from pbx.call import TRANSITIONS

    state = CallState.SETUP
    ok = True
    for name in path:
        new = CallState(name)
        if new not in TRANSITIONS[state]:
            ok = False
            break
        state = new
    assert ok is legal


async def test_an_illegal_transition_raises(sb: Switchboard) -> None:
    alice, bob = sb.phone("1001"), sb.phone("1002")
    await connect(sb, alice, bob)
    (call,) = sb.b2b.calls
    with pytest.raises(RuntimeError, match="ANSWERED -> RINGING"):
        call._move(CallState.RINGING)


async def test_take_over_closes_the_agents_record_and_links_the_supervisors(
    sb: Switchboard,
) -> None:
    """Intercept: the agent is hung up and the call's record ends there; the supervisor's
    own (listening) call is recorded too; caller and supervisor go on in a new call linked
    to the first, which keeps the dialled number and the queue but names no agent."""
    alice, bob, boss = sb.phone("1001"), sb.phone("1002"), sb.phone("3000")
    _, b_id = await connect(sb, alice, bob)
    call = sb.b2b.calls[0]
    call.notes.queue, call.notes.agent, call.notes.queue_call_id = "support", "a2", "q1"
    sup, _app = await answered_by_switchboard(sb, boss)
    new = call.take_over(sup)
    assert [r.call_id for r in bob.requests_to_me("BYE")] == [b_id]
    assert call.ended and sup.ended and sb.b2b.calls == [new]
    assert new.b is sup.a and new.callee == "3000" and new.linked_id == call.id
    assert sb.media.bridged(new.a.leg_id, sup.a.leg_id)
    agent_part, listening = sb.details
    assert (agent_part.record_id, agent_part.callee, agent_part.agent) == (call.id, "1002", "a2")
    assert (agent_part.hangup_cause, agent_part.disposition) == ("intercepted", "ANSWERED")
    assert (listening.record_id, listening.caller, listening.hangup_cause) == (
        sup.id,
        "3000",
        "intercepted",
    )
    # The supervisor's BYE now ends the call they took over.
    boss.request("BYE")
    assert len(alice.requests_to_me("BYE")) == 1
    last = sb.details[-1]
    assert (last.record_id, last.caller, last.callee, last.linked_id) == (
        new.id,
        "1001",
        "3000",
        call.id,
    )
    assert (last.queue, last.queue_call_id, last.agent) == ("support", "q1", None)
    assert last.answer is not None and last.answer >= agent_part.end


async def test_queue_call_bills_from_the_agents_answer(sb: Switchboard) -> None:
    """A call Switchboard answered (the IVR, the queue) and connected to an agent later:
    ``answer`` is the agent's answer, ``system_answer`` Switchboard's; the wait runs from
    joining the queue to the agent's answer (docs/records.md)."""
    alice, agent = sb.phone("1001"), sb.phone("2001")
    call, _app = await answered_by_switchboard(sb, alice)
    assert call.notes.dialled == "4100"
    queued = datetime.now(UTC) - timedelta(seconds=30)
    call.notes.queue, call.notes.queued_at = "support", queued
    answered: list[Side] = []
    assert call.offer("o1", "2001", ring_timeout=30, on_answered=answered.append, on_failed=print)
    await settle()
    (sent,) = agent.incoming()
    agent.answer(sent)
    call.accept(answered[0])
    call.notes.agent = "a1"
    agent.request("BYE")
    (rec,) = sb.details
    assert rec.system_answer == call.system_answered_at and rec.answer == call.connected_at
    assert rec.system_answer is not None and rec.answer is not None
    assert rec.answer > rec.system_answer
    assert (rec.disposition, rec.callee, rec.dialled, rec.agent) == (
        "ANSWERED",
        "2001",
        "4100",
        "a1",
    )
    assert rec.wait_seconds is not None and 30 <= rec.wait_seconds < 31


async def test_a_queue_call_nobody_answered_is_no_answer(sb: Switchboard) -> None:
    """Abandoned: Switchboard answered to play the queue, but no party did."""
    alice = sb.phone("1001")
    call, _app = await answered_by_switchboard(sb, alice)
    call.notes.queue, call.notes.queued_at = "support", datetime.now(UTC) - timedelta(seconds=5)
    alice.request("BYE")
    (rec,) = sb.details
    assert (rec.disposition, rec.answer, rec.hangup_side) == ("NO ANSWER", None, "caller")
    assert rec.system_answer is not None and rec.queue == "support" and rec.agent is None
    assert rec.wait_seconds is not None and 5 <= rec.wait_seconds < 6
    # An IVR-only call (no queue) stays answered by Switchboard, billed from its answer.
    call2, _ = await answered_by_switchboard(sb, sb.phone("1003"))
    call2.hang_up_caller()
    assert (sb.details[-1].disposition, sb.details[-1].answer) == ("ANSWERED", call2.answered_at)


async def test_a_placed_call_is_recorded_from_the_connected_phone(sb: Switchboard) -> None:
    """A callback: Switchboard dialled the customer (side a) and connected the agent (b);
    the record reads agent -> customer, with the quality and hang-up side swapped too."""
    alice, agent = sb.phone("1001"), sb.phone("2001")
    call, _app = await answered_by_switchboard(sb, alice)
    call.placed, call.notes.direction = True, "outbound"
    answered: list[Side] = []
    assert call.offer("cb", "2001", ring_timeout=30, on_answered=answered.append, on_failed=print)
    await settle()
    (sent,) = agent.incoming()
    agent.answer(sent)
    call.accept(answered[0])
    agent.request("BYE")  # the agent hangs up
    (rec,) = sb.details
    assert (rec.caller, rec.callee, rec.direction, rec.hangup_side) == (
        "2001",
        "1001",
        "outbound",
        "caller",
    )


async def test_services_annotate_a_record_through_the_seam(sb: Switchboard) -> None:
    """``CallControl.annotate``: given values change, the first ``queued_at`` stays, an
    unknown direction is refused, an ended call is not annotated; the post-call survey
    rates the annotated agent id, not the extension."""
    control = CallControl(sb.b2b, is_extension=lambda n: n in sb.phones, tone_plan=lambda: "us")
    events: list[CallEvent] = []
    control.subscribe(events.append)
    alice, agent = sb.phone("1001"), sb.phone("2001")
    call, _app = await answered_by_switchboard(sb, alice)
    first = datetime.now(UTC) - timedelta(seconds=20)
    assert control.annotate(call.id, queue="sales", queued_at=first, queue_call_id=call.id)
    assert control.annotate(call.id, queue="support", queued_at=datetime.now(UTC))
    with pytest.raises(ValueError, match="direction"):
        control.annotate(call.id, direction="sideways")
    answered: list[Side] = []
    assert call.offer("o1", "2001", ring_timeout=30, on_answered=answered.append, on_failed=print)
    await settle()
    (sent,) = agent.incoming()
    agent.answer(sent)
    call.accept(answered[0])
    assert control.annotate(call.id, agent="a7", callback_id=3)
    control.continue_after_callee(call.id, "ivr", "rate")
    agent.request("BYE")  # the agent hangs up: the caller goes to the survey
    await settle()
    rated = sb.details[-1]
    assert (rated.queue, rated.agent, rated.callee, rated.callback_id) == (
        "support",
        "a7",
        "2001",
        3,
    )
    assert rated.queue_call_id == call.id and rated.wait_seconds is not None
    assert rated.wait_seconds >= 20
    (survey,) = [e for e in events if isinstance(e, CallArrived) and e.kind == "ivr"]
    assert dict(survey.variables) == {"rated_call": call.id, "agent": "a7"}
    assert not control.annotate(call.id, agent="late")  # its record is written
    assert [d.record_id for d in sb.details] == [call.id]


@pytest.mark.parametrize(("status", "reason"), [(486, "busy"), (480, "no_answer")])
async def test_a_busy_or_unanswered_callee_rolls_to_the_mailbox(
    sb: Switchboard, status: int, reason: str
) -> None:
    """The callee's mailbox takes the call: the caller's INVITE is answered 200 from our leg
    (ringback stops) and the voicemail service gets CallArrived."""
    from pbx.control import CallControl
    from pbx.events import CallArrived

    control = CallControl(sb.b2b, is_extension=lambda n: True, tone_plan=lambda: "us")
    control.serve("voicemail")
    arrived: list[CallArrived] = []
    control.subscribe(lambda e: arrived.append(e) if isinstance(e, CallArrived) else None)
    seen: list[str] = []

    def divert(call: Call, why: str) -> bool:
        seen.append(why)
        return control.divert(call.id, "voicemail", call.callee)

    sb.b2b.divert = divert
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.call(bob)
    await settle()
    (sent,) = bob.incoming()
    sb.stack.respond(sent, 180)
    sb.stack.respond(sent, status, to_tag="x")
    await settle()
    assert seen == [reason]
    assert sb.stack.statuses(inv.call_id)[-1] == 200
    (call,) = sb.b2b.calls
    assert call.state is CallState.ANSWERED and call.app is not None
    assert [(e.kind, e.target, e.caller) for e in arrived] == [("voicemail", "1002", "1001")]
    assert not sb.media.legs[call.a.leg_id].tone


async def test_a_late_offer_gets_our_offer_in_the_200_and_the_answer_from_the_ack(
    sb: Switchboard,
) -> None:
    """RFC 3261 §13.2.1 / RFC 3264: an INVITE without SDP (carriers often send one) is
    answered with our offer in the 200 OK only (the 180 carries none), and the caller's
    answer comes in the ACK."""
    alice, bob = sb.phone("1001"), sb.phone("1002")
    inv = alice.invite("1002", body=b"")
    sb.b2b.start_call(inv, alice.address, "UDP", "1001", "1002", [bob.contact], 30.0)
    await settle()
    (sent,) = bob.incoming()
    assert sent.request.body  # the callee still gets our offer for its own leg
    bob.ring(sent)
    ringing = [r for r in sb.stack.responses(inv.call_id, "INVITE") if r.status == 180]
    assert ringing and not ringing[0].body  # no offer in an unreliable provisional
    bob.answer(sent)
    ok = alice.final_to(inv)
    assert ok.status == 200 and ok.content_type == "application/sdp"
    offer = sdp.parse_answer(ok.body, SUPPORTED_CODECS)  # our offer, read as a description
    call = sb.b2b.calls[0]
    assert (call.a.codec, sb.media.legs[call.a.leg_id].remote) == (None, None)
    answer = sdp.negotiate_answer(
        ok.body, host=alice.host, port=alice.rtp_port, supported=(PCMU,), session_id=9
    ).answer.serialize()
    dialog = Dialog.as_uac(inv, ok, Flow("UDP", alice.address))
    ack = dialog.create_request(
        "ACK", alice._via(), cseq=inv.cseq[0], body=answer, content_type="application/sdp"
    )
    alice.send(ack)
    assert offer.codec is not None
    assert call.a.codec == PCMU
    assert sb.media.legs[call.a.leg_id].remote == (alice.host, alice.rtp_port)

"""Everything external uses trunks (issue 16): forwards to a mobile, calls Switchboard places
itself (callbacks, IVR transfers, queue overflow) and the caller ID they present — per
extension, per rule, withheld with Privacy — all through the outbound rules and the
toll-fraud guards. The SIP side is the server built from a config; INVITEs are captured."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from pbx.events import CallEvent, OriginateAnswered, OriginateFailed
from pbx.features import ExtensionSettings
from pbx.message import Request, make_response, parse_message
from pbx.stack import new_tag
from pbx.transaction import RequestReceived
from tests.unit.call_harness import offer_sdp
from tests.unit.test_trunk_outbound import Pbx, Sent, settle

CONFIG = """
extensions:
  "1001": {password: pw1, class_of_service: international, max_outbound_per_minute: 0}
  "1002": {password: pw2, max_outbound_per_minute: 0}
  "1003": {password: pw3, class_of_service: internal}
  "1004": {password: pw4, caller_id: "+862088880001"}
  "1005": {password: pw5, hide_caller_id: true}
trunks:
  carrier:
    {host: 203.0.113.5, port: 5062, username: sbtrunk, password: trunkpw,
     dids: ["+862088880000", "+862088880001", "+862088880002"],
     caller_id: "+862088880000"}
  backup: {host: 203.0.113.6, port: 5064}
dialplan:
  number_classes:
    international: ["_00."]
  inbound:
    - {did: "4200", destination: {kind: number, target: "90612345678"}}
    - {did: "4300", destination: {kind: number, target: "900442079460000"}}
  outbound:
    - {pattern: "_9.", strip: 1, trunks: [carrier, backup]}
    - {pattern: "_7.", strip: 1, trunk: carrier, caller_id: "+862088880002", privacy: true}
"""


def pbx() -> Pbx:
    return Pbx(CONFIG)


def header(sent: Sent, name: str) -> str:
    return sent.request.get(name) or ""


def answer_200(sent: Sent) -> None:
    sent.on_response(
        make_response(
            sent.request,
            200,
            to_tag=new_tag(),
            headers=[
                ("Contact", "<sip:callee@203.0.113.5:5062>"),
                ("Content-Type", "application/sdp"),
            ],
            body=offer_sdp("203.0.113.50", 30000),
        )
    )


# --- caller ID and privacy -----------------------------------------------------------------


async def test_an_extensions_own_caller_id_goes_out_when_the_trunk_owns_it() -> None:
    p = pbx()
    await p.dial("95551234", user="1004")
    (invite,) = p.sent_invites()
    assert "sip:+862088880001@" in header(invite, "From")
    assert "sip:+862088880001@" in header(invite, "P-Asserted-Identity")
    assert not header(invite, "Privacy")
    p.answer(invite, 503)  # backup owns no DIDs: the wanted caller ID goes out as it is
    _, second = await p.invites(2)
    assert "sip:+862088880001@" in header(second, "From")


async def test_a_withheld_caller_id_is_asserted_to_the_carrier_with_privacy() -> None:
    p = pbx()
    await p.dial("95551234", user="1005")
    (invite,) = p.sent_invites()
    # RFC 3323 §4.1.1.3: an anonymous From; RFC 3325: the identity still asserted.
    assert '"Anonymous" <sip:anonymous@anonymous.invalid>' in header(invite, "From")
    assert "sip:+862088880000@" in header(invite, "P-Asserted-Identity")
    assert header(invite, "Privacy") == "id"
    answer_200(invite)
    await settle()
    call = p.server.b2bua.calls[0]
    assert call.notes.caller_id_sent == "+862088880000"


async def test_a_rule_presents_its_own_caller_id_and_may_withhold_it() -> None:
    p = pbx()
    await p.dial("75551234", user="1002")
    (invite,) = p.sent_invites()
    assert "sip:+862088880002@" in header(invite, "P-Asserted-Identity")
    assert header(invite, "Privacy") == "id"
    assert "anonymous.invalid" in header(invite, "From")
    # The extension's own caller ID comes before the rule's.
    await p.dial("75551234", user="1004", sent=2)
    assert "sip:+862088880001@" in header(p.sent_invites()[1], "P-Asserted-Identity")


# --- forwarding to a mobile ----------------------------------------------------------------


async def test_a_phone_forwarded_to_a_mobile_sends_the_call_out_as_its_own() -> None:
    p = pbx()
    p.server.ext_settings["1002"] = ExtensionSettings(forward_all="95550000")
    await p.dial("1002", user="1001")
    (invite,) = p.sent_invites()
    assert invite.dest == ("203.0.113.5", 5062)
    assert invite.request.uri == "sip:5550000@203.0.113.5:5062"
    call = p.server.b2bua.calls[0]
    assert (call.caller, call.notes.dialled, call.notes.trunk) == ("1001", "1002", "carrier")
    answer_200(invite)
    await settle()
    assert call.notes.caller_id_sent == "+862088880000"


async def test_a_forward_beyond_the_forwarders_class_of_service_reaches_no_trunk() -> None:
    p = pbx()
    # 1003 may only call internal numbers: its forward to a mobile is not followed.
    p.server.ext_settings["1003"] = ExtensionSettings(forward_all="95550000")
    await p.dial("1003", user="1001", sent=0)
    assert p.sent_invites() == []
    assert p.final_to_caller() == 404


async def test_setting_a_forward_to_a_number_checks_the_class_of_service() -> None:
    p = pbx()
    await p.dial("*7295550000", user="1003", sent=0)
    assert p.final_to_caller() == 404  # internal only: no such forward target
    assert p.server.ext_settings.get("1003", ExtensionSettings()).forward_all is None
    await p.dial("*7295550000", user="1002", sent=0)
    assert p.server.ext_settings["1002"].forward_all == "95550000"


# --- calls Switchboard places itself ---------------------------------------------------------


async def test_an_originated_call_to_a_number_leaves_through_the_trunk_for_the_agent() -> None:
    p = pbx()
    seen: list[CallEvent] = []
    p.server.control.subscribe(seen.append)
    call_id = p.server.control.originate(
        "cb1", "95550123", caller_id="1004", ring_timeout=30, on_behalf_of="1004"
    )
    assert call_id is not None
    (invite,) = await p.invites(1)
    assert invite.request.uri == "sip:5550123@203.0.113.5:5062"
    assert "sip:+862088880001@" in header(invite, "P-Asserted-Identity")
    answer_200(invite)
    await settle()
    answered = [e for e in seen if isinstance(e, OriginateAnswered)]
    assert len(answered) == 1
    call = p.server.b2bua.find(answered[0].call_id)
    assert call is not None
    assert (call.notes.direction, call.notes.trunk, call.notes.caller_id_sent) == (
        "outbound",
        "carrier",
        "+862088880001",
    )


async def test_the_next_trunk_takes_an_originated_call_and_the_record_says_why() -> None:
    p = pbx()
    seen: list[CallEvent] = []
    p.server.control.subscribe(seen.append)
    p.server.control.originate("cb1", "95550123", caller_id="1001", on_behalf_of="1001")
    (first,) = await p.invites(1)
    p.answer(first, 503)
    _, second = await p.invites(2)
    assert second.dest == ("203.0.113.6", 5064)
    answer_200(second)
    await settle()
    (answered,) = [e for e in seen if isinstance(e, OriginateAnswered)]
    call = p.server.b2bua.find(answered.call_id)
    assert call is not None
    assert call.notes.trunk == "backup" and call.notes.trunk_attempts == [("carrier", 503)]


async def test_a_busy_number_ends_an_originated_call_without_failover() -> None:
    p = pbx()
    seen: list[CallEvent] = []
    p.server.control.subscribe(seen.append)
    p.server.control.originate("cb1", "95550123", caller_id="1001", on_behalf_of="1001")
    (first,) = await p.invites(1)
    p.answer(first, 486)
    await settle()
    assert len(p.sent_invites()) == 1
    assert [e.status for e in seen if isinstance(e, OriginateFailed)] == [486]


@pytest.mark.parametrize(
    ("on_behalf_of", "number"),
    [
        ("", "900442079460000"),  # Switchboard itself: the system class (national)
        ("1002", "900442079460000"),  # a national extension
        ("1003", "95550123"),  # an internal-only extension
    ],
)
async def test_numbers_beyond_the_class_of_service_are_never_dialled(
    on_behalf_of: str, number: str
) -> None:
    p = pbx()
    got = p.server.control.originate("o1", number, caller_id="x", on_behalf_of=on_behalf_of)
    await settle()
    assert got is None and p.sent_invites() == []


async def test_an_agent_class_of_service_applies_to_the_extension_until_logout() -> None:
    p = pbx()
    control = p.server.control
    control.set_class_of_service("1003", "national")
    assert control.originate("o1", "95550123", caller_id="x", on_behalf_of="1003") is not None
    await p.invites(1)
    control.set_class_of_service("1003", None)
    assert control.originate("o2", "95550124", caller_id="x", on_behalf_of="1003") is None


async def test_a_number_without_an_outbound_rule_is_not_dialled() -> None:
    p = pbx()
    assert p.server.control.originate("o1", "5550123", caller_id="x") is None
    await settle()
    assert p.sent_invites() == []


async def test_a_route_to_an_outside_number_dials_it_as_switchboard() -> None:
    """``{kind: number}``: the admin's forward (a mobile after hours) leaves through the
    outbound rule with the trunk's own caller ID and the system class of service."""
    p = pbx()
    await p.dial("4200", user="1002")
    (invite,) = p.sent_invites()
    assert invite.request.uri == "sip:0612345678@203.0.113.5:5062"
    assert "sip:+862088880000@" in header(invite, "P-Asserted-Identity")
    call = p.server.b2bua.calls[0]
    assert (call.notes.dialled, call.notes.trunk) == ("4200", "carrier")
    # International is beyond the system's class (national): refused, no trunk used.
    await p.dial("4300", user="1001", sent=0)
    assert len(p.sent_invites()) == 1 and p.final_to_caller() == 403


# --- the guards around them ------------------------------------------------------------------


async def test_only_an_admins_number_is_connected_outside() -> None:
    """``connect_to`` (an IVR extension node, an ``extension:`` overflow) rings extensions
    only; the outside path needs ``outside`` (the admin's ``number:``)."""
    p = pbx()
    kwargs: dict[str, Any] = {
        "on_behalf_of": "",
        "leg_id": "x",
        "caller_ext": "1001",
        "caller_display": None,
        "first_codec": None,
        "ring_timeout": None,
        "on_ringing": lambda s, e: None,
        "on_answered": lambda side: None,
        "on_failed": lambda s, t: None,
    }
    assert p.server.b2bua.ringer("95550123", outside=False, **kwargs) is None
    assert p.server.b2bua.ringer("95550123", **kwargs) is not None


async def test_a_cancelled_dial_does_not_ring_the_next_trunk() -> None:
    p = pbx()
    control = p.server.control
    control.originate("cb1", "95550123", caller_id="1001", on_behalf_of="1001")
    (first,) = await p.invites(1)
    p.answer(first, 503)  # failover is under way ...
    control.cancel_originate("cb1")  # ... and the callback is given up in the same turn
    await settle()
    assert len(p.sent_invites()) == 1
    assert p.server.b2bua.dialling == set()


CAPPED = """
extensions:
  "1001": {password: pw1}
  "1002": {password: pw2, max_outbound_calls: 1, max_outbound_per_minute: 0}
trunks:
  carrier: {host: 203.0.113.5, port: 5062, register: false, max_channels: 1}
  backup: {host: 203.0.113.6, port: 5064, register: false}
dialplan:
  inbound:
    - {did: "4200", destination: {kind: number, target: "95550000"}}
  outbound:
    - {pattern: "_9.", strip: 1, trunk: backup}
"""


async def test_a_forwarders_outbound_cap_counts_its_forwards() -> None:
    """1002 forwards to a mobile and may have one outside call at once: a second caller's
    forward is not dialled while the first rings (whoever the callers are)."""
    p = Pbx(CAPPED)
    p.server.ext_settings["1002"] = ExtensionSettings(forward_all="95550000")
    await p.dial("1002", user="1001")
    assert p.server.b2bua.outside_calls_for("1002") == 1
    await p.dial("1002", user="1001", sent=0)
    assert len(p.sent_invites()) == 1 and p.final_to_caller() == 404


async def test_a_call_in_on_one_trunk_and_out_on_another_holds_a_channel_on_each() -> None:
    p = Pbx(CAPPED)

    def from_carrier(tag: str) -> None:
        body = offer_sdp("203.0.113.60", 31000)
        lines = [
            "INVITE sip:4200@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bK{secrets.token_hex(5)}",
            "Max-Forwards: 70",
            f"From: <sip:+8613800000000@203.0.113.5>;tag={tag}",
            "To: <sip:4200@127.0.0.1>",
            f"Call-ID: {secrets.token_hex(6)}",
            "CSeq: 1 INVITE",
            "Contact: <sip:pstn@203.0.113.5:5062>",
            "Content-Type: application/sdp",
        ]
        raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        req = parse_message(raw + body)
        assert isinstance(req, Request)
        p.server.stack.on_request(RequestReceived(req, ("203.0.113.5", 5062), "UDP", key=tag))

    from_carrier("in1")
    (out,) = await p.invites(1)
    assert out.dest == ("203.0.113.6", 5064)
    assert (p.server.trunk_load("carrier"), p.server.trunk_load("backup")) == (1, 1)
    from_carrier("in2")  # carrier's one channel is taken by the first call
    await settle()
    assert len(p.sent_invites()) == 1 and p.final_to_caller() == 503


async def test_switchboards_own_call_without_a_caller_id_goes_out_anonymous() -> None:
    p = Pbx(CAPPED)
    await p.dial("4200", user="1001")
    (invite,) = p.sent_invites()
    assert "sip:anonymous@anonymous.invalid" in header(invite, "From")
    assert header(invite, "Privacy") == "id"
    assert "sip:anonymous@" in header(invite, "P-Asserted-Identity")

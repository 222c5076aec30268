"""Calls a carrier delivers (issue 16): which requests are trunk calls, the DID, routing.

Phones, trunks and test peers share addresses, so the source address *and port* decide
(or an acl network); anything else is challenged as an extension and can never use the
inbound routes' trust."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.events import CallArrived, CallEvent, CallStarted
from pbx.location import Contact
from pbx.message import Request, Response, parse_message
from pbx.transaction import RequestReceived
from pbx.trunk_inbound import InboundTrunk, TrunkMatcher, normalise_number
from tests.unit.call_harness import offer_sdp
from tests.unit.server_harness import server_from_config

CARRIER = ("203.0.113.5", 5062)
CONFIG = """
extensions:
  "1001": {password: pw1}
  "1002":
    password: pw2
    voicemail: {enabled: true, pin: "4711"}
trunks:
  carrier: {host: 203.0.113.5, port: 5062, country_code: "86"}
  wholesale: {host: 198.51.100.1, acl: [198.51.100.0/28], did_from: to, max_channels: 1}
queues:
  support: {}
dialplan:
  inbound:
    - {did: "4100", destination: {kind: queue, target: support}}
    - {did: "+861088884000", destination: {kind: queue, target: support}}
    - {did: "4200", destination: {kind: outbound, target: carrier}}
    - {did: "4300", destination: {kind: extension, target: "1001"}}
    - {did: "4400", destination: {kind: extension, target: "1002"}}
  outbound:
    - {pattern: "_9.", strip: 1, trunk: carrier}
"""


# --- sans-IO: normalising and matching -----------------------------------------------------


@pytest.mark.parametrize(
    ("number", "cc", "expected"),
    [
        ("4100", None, "4100"),
        ("0086 10-8888-4000", None, "+861088884000"),
        ("+86 (10) 8888 4000", None, "+861088884000"),
        ("01088884000", "86", "+861088884000"),
        ("01088884000", None, "01088884000"),  # no country code: left national
        ("anonymous", "86", "anonymous"),
        ("", "86", ""),
    ],
)
def test_normalise_number(number: str, cc: str | None, expected: str) -> None:
    assert normalise_number(number, cc) == expected


@given(st.text(alphabet="0123456789 -+()", max_size=20))
def test_normalising_twice_changes_nothing(number: str) -> None:
    once = normalise_number(number, "44")
    assert normalise_number(once, "44") == once


def test_address_alone_never_makes_a_trunk() -> None:
    m = TrunkMatcher(
        [
            InboundTrunk("carrier", ("127.0.0.1",), 5062),
            InboundTrunk("wide", ("192.0.2.9",), 5060, acl=("198.51.100.0/28",)),
        ]
    )
    assert m.match(("127.0.0.1", 5062)).name == "carrier"  # type: ignore[union-attr]
    assert m.match(("127.0.0.1", 5063)) is None  # a phone on the same address
    assert m.match(("198.51.100.7", 40000)).name == "wide"  # type: ignore[union-attr]
    assert m.match(("198.51.100.16", 5060)) is None  # just outside the /28
    assert m.match(("::ffff:zz", 5060)) is None


# --- the server ----------------------------------------------------------------------------


class Pbx:
    def __init__(self) -> None:
        self.server, self.replies = server_from_config(CONFIG)
        self.arrived: list[CallArrived] = []
        self.started: list[CallStarted] = []

        def seen(event: CallEvent) -> None:
            if isinstance(event, CallArrived):
                self.arrived.append(event)
            elif isinstance(event, CallStarted):
                self.started.append(event)

        self.server.control.subscribe(seen)
        self.server.control.serve("queue", "voicemail")

    async def invite(
        self,
        source: tuple[str, int],
        ruri_user: str,
        to_user: str,
        caller: str,
        final: bool = True,
    ) -> Response:
        body = offer_sdp(source[0], 4000)
        lines = [
            f"INVITE sip:{ruri_user}@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{secrets.token_hex(5)}",
            "Max-Forwards: 70",
            f"From: <sip:{caller}@{source[0]}>;tag=c1",
            f"To: <sip:{to_user}@127.0.0.1>",
            f"Call-ID: {secrets.token_hex(6)}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:{caller}@{source[0]}:{source[1]}>",
            "Content-Type: application/sdp",
        ]
        raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        req = parse_message(raw + body)
        assert isinstance(req, Request)
        before = len(self.replies)
        self.server.stack.on_request(RequestReceived(req, source, "UDP", key="k"))
        if not final:  # ringing: no reply needed (100 Trying comes from the transaction)
            await asyncio.sleep(0.05)
            return self.replies[-1] if self.replies else Response(100, "Trying")
        async with asyncio.timeout(2):
            while not [r for r in self.replies[before:] if r.status >= 200]:
                await asyncio.sleep(0.01)
        return next(r for r in self.replies[before:] if r.status >= 200)


async def test_a_did_from_the_carriers_address_and_port_reaches_its_queue() -> None:
    pbx = Pbx()
    assert (await pbx.invite(CARRIER, "4100", "4100", "013900001111")).status == 200
    (arrived,) = pbx.arrived
    # The caller's national number is normalised with the trunk's country code.
    assert (arrived.kind, arrived.target, arrived.caller) == ("queue", "support", "+8613900001111")
    # A national DID is matched in E.164 form.
    assert (await pbx.invite(CARRIER, "01088884000", "x", "5551234")).status == 200


async def test_the_same_invite_from_another_port_is_challenged_not_routed() -> None:
    pbx = Pbx()
    reply = await pbx.invite((CARRIER[0], 5099), "4100", "4100", "013900001111")
    assert reply.status == 407 and not pbx.arrived


async def test_did_from_to_and_acl_networks() -> None:
    pbx = Pbx()
    # wholesale: any port inside its /28, the DID in To (the Request-URI is our contact).
    reply = await pbx.invite(("198.51.100.9", 41234), "sbtrunk", "4100", "5551234")
    assert reply.status == 200
    assert [(a.kind, a.target) for a in pbx.arrived] == [("queue", "support")]


async def test_a_trunk_call_never_leaves_through_a_trunk() -> None:
    pbx = Pbx()
    # Neither by an inbound route to an outbound destination, nor by dialling 9...
    assert (await pbx.invite(CARRIER, "4200", "4200", "5551234")).status == 403
    assert (await pbx.invite(CARRIER, "900442079460000", "x", "5551234")).status == 404
    # ...nor by a feature code.
    assert (await pbx.invite(CARRIER, "*92", "x", "5551234")).status == 404
    assert not pbx.arrived


async def test_a_did_routed_to_an_extension_rings_it_as_an_inbound_call() -> None:
    pbx = Pbx()
    now = asyncio.get_running_loop().time()
    contact = Contact("sip:1001@192.0.2.50:5060", ("192.0.2.50", 5060), "UDP", now + 600, "r", 1)
    pbx.server.location.put("1001", contact)
    await pbx.invite(CARRIER, "4300", "4300", "013900001111", final=False)
    (call,) = pbx.server.b2bua.calls
    assert (call.caller, call.callee) == ("+8613900001111", "1001")
    assert (call.notes.dialled, call.notes.direction) == ("4300", "inbound")
    assert call.notes.trunk == "carrier"


async def test_a_did_to_an_absent_extension_rolls_to_its_mailbox_as_an_inbound_call() -> None:
    pbx = Pbx()
    assert (await pbx.invite(CARRIER, "4400", "4400", "013900001111")).status == 200
    (arrived,) = pbx.arrived
    assert (arrived.kind, arrived.target, arrived.caller) == ("voicemail", "1002", "+8613900001111")
    (call,) = pbx.server.b2bua.calls
    assert call.notes.direction == "inbound"


async def test_trunk_calls_name_their_trunk_and_respect_its_channels() -> None:
    pbx = Pbx()
    assert (await pbx.invite(("198.51.100.9", 41234), "sbtrunk", "4100", "5551234")).status == 200
    (first,) = pbx.server.b2bua.calls
    assert (first.notes.trunk, first.notes.direction) == ("wholesale", "inbound")
    # max_channels 1: a second call while the first is up is refused, and says so.
    reply = await pbx.invite(("198.51.100.10", 41234), "sbtrunk", "4100", "5559999")
    assert reply.status == 503 and len(pbx.arrived) == 1
    assert pbx.server.trunk_load("wholesale") == 1
    # Another trunk is not affected.
    assert (await pbx.invite(CARRIER, "4100", "4100", "013900001111")).status == 200
    assert pbx.server.trunk_load("carrier") == 1


async def test_a_trunk_caller_presenting_an_extensions_number_is_no_local_phone() -> None:
    # The web panel shows an agent "the calls of their extensions": a carrier's caller
    # claiming 1001 must not be taken for extension 1001 (CallStarted says which it is).
    pbx = Pbx()
    assert (await pbx.invite(CARRIER, "4100", "4100", "1001")).status == 200
    (started,) = pbx.started
    assert (started.caller_ext, started.caller_trunk) == ("1001", "carrier")
    assert started.local_caller_ext is None
    (call,) = pbx.server.b2bua.calls
    assert call.a.trunk == "carrier"  # its BYE challenges and SIP INFO as before

"""Extensions calling outside numbers through trunks (issue 16): the INVITE a carrier gets,
its digest challenge answered, failover only when the trunk failed, channel limits."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pbx.digest import DigestAuthenticator
from pbx.message import Request, Response, make_response, parse_message
from pbx.stack import new_tag
from pbx.transaction import RequestReceived
from pbx.trunk_outbound import (
    ExtensionLimits,
    NumberClasses,
    OutboundPolicy,
    OutboundTrunk,
    should_fail_over,
)
from tests.unit.call_harness import offer_sdp
from tests.unit.server_harness import server_from_config

PHONE = ("192.0.2.10", 5060)
CONFIG = """
extensions:
  "1001": {password: pw1, class_of_service: international, max_outbound_per_minute: 0}
  "1002": {password: pw2, max_outbound_per_minute: 2, max_outbound_calls: 0}
  "1003": {password: pw3, class_of_service: internal}
trunks:
  carrier:
    {host: 203.0.113.5, port: 5062, username: sbtrunk, password: trunkpw,
     dids: ["+862088880000", "+862088880001"], caller_id: "+862088880000"}
  backup: {host: 203.0.113.6, port: 5064, max_channels: 1}
dialplan:
  outbound:
    - {pattern: "_9.", strip: 1, trunks: [carrier, backup]}
    - {pattern: "_8.", strip: 1, trunk: backup}
"""


@dataclass
class Sent:
    request: Request
    dest: tuple[str, int]
    on_response: Callable[[Response], None]
    on_timeout: Callable[[], None] | None


class Pbx:
    def __init__(self, config: str = CONFIG) -> None:
        self.sent: list[Sent] = []

        def send_request(
            request: Request, dest: tuple[str, int], transport: str, on_response: Any,
            on_timeout: Any = None,
        ) -> str:  # fmt: skip
            self.sent.append(Sent(request, dest, on_response, on_timeout))
            return secrets.token_hex(4)

        self.server, self.replies = server_from_config(config, send_request)
        self.user = "1001"
        self.server.auth.verify = lambda *a, **kw: _ok(self.user)  # type: ignore[method-assign]

    async def dial(self, number: str, user: str = "1001", sent: int = 1) -> None:
        self.user = user
        body = offer_sdp(PHONE[0], 4000)
        lines = [
            f"INVITE sip:{number}@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch=z9hG4bK{secrets.token_hex(5)}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag=c1",
            f"To: <sip:{number}@127.0.0.1>",
            f"Call-ID: {secrets.token_hex(6)}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:{user}@{PHONE[0]}:{PHONE[1]}>",
            'Proxy-Authorization: Digest username="1001", realm="switchboard", nonce="n", '
            'uri="sip:x", response="00"',
            "Content-Type: application/sdp",
        ]
        raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        req = parse_message(raw + body)
        assert isinstance(req, Request)
        self.server.stack.on_request(RequestReceived(req, PHONE, "UDP", key="k"))
        if sent:
            await self.invites(sent)
        else:
            await settle()

    async def invites(self, count: int) -> list[Sent]:
        async with asyncio.timeout(2):
            while len(self.sent_invites()) < count:
                await asyncio.sleep(0.01)
        return self.sent_invites()

    def sent_invites(self) -> list[Sent]:
        return [s for s in self.sent if s.request.method == "INVITE"]

    def final_to_caller(self) -> int | None:
        finals = [r.status for r in self.replies if r.status >= 300]
        return finals[-1] if finals else None

    def answer(self, sent: Sent, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        sent.on_response(
            make_response(sent.request, status, to_tag=new_tag(), headers=headers or [])
        )


def _ok(user: str) -> Any:
    from pbx.digest import AuthOutcome, AuthResult

    return AuthResult(AuthOutcome.OK, user, "sip:x", "MD5", "")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_call_goes_to_the_first_trunk_as_the_carrier_expects() -> None:
    pbx = Pbx()
    await pbx.dial("900442079460000")
    (first,) = pbx.sent_invites()
    req = first.request
    assert first.dest == ("203.0.113.5", 5062)
    assert req.uri == "sip:00442079460000@203.0.113.5:5062"
    assert "<sip:00442079460000@203.0.113.5:5062>" in (req.get("To") or "")
    # The caller ID is one of the trunk's DIDs (1001 is not), in From and in PAI.
    assert "sip:+862088880000@" in (req.get("From") or "")
    assert "sip:+862088880000@" in (req.get("P-Asserted-Identity") or "")
    call = pbx.server.b2bua.calls[0]
    assert (call.notes.direction, call.notes.trunk, call.notes.dialled) == (
        "outbound",
        "carrier",
        "900442079460000",
    )


async def test_a_challenge_is_answered_with_the_trunks_credentials() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    carrier = DigestAuthenticator("carrier.example", b"0123456789abcdef0123")
    challenge = carrier.challenge(0.0)[0]
    pbx.answer(first, 407, [("Proxy-Authenticate", challenge)])
    first_again, second = await pbx.invites(2)
    assert first_again is first
    req = second.request
    assert req.call_id == first.request.call_id and req.cseq[0] == first.request.cseq[0] + 1
    assert req.get_list("Via")[0] != first.request.get_list("Via")[0]  # a new transaction
    auth = req.get("Proxy-Authorization") or ""
    lookup = {"sbtrunk": "trunkpw"}.get
    assert carrier.verify("INVITE", auth, 1.0, lambda u, r: lookup(u)).ok
    # A second challenge means the credentials are refused: no third INVITE, failover to
    # the next trunk is not the answer either (4xx).
    pbx.answer(second, 407, [("Proxy-Authenticate", challenge)])
    await settle()
    assert len(pbx.sent_invites()) == 2 and pbx.final_to_caller() == 407


@pytest.mark.parametrize("status", [503, 500, 408])
async def test_the_next_trunk_takes_the_call_when_the_first_fails(status: int) -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    pbx.answer(first, status)
    _, second = await pbx.invites(2)
    assert second.dest == ("203.0.113.6", 5064)
    # backup owns no DIDs: the caller's own number goes out.
    assert "sip:1001@" in (second.request.get("From") or "")
    call = pbx.server.b2bua.calls[0]
    assert call.notes.trunk == "backup" and call.notes.trunk_attempts == [("carrier", status)]
    assert pbx.final_to_caller() is None  # still ringing on backup


async def test_a_timeout_fails_over_too() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    assert first.on_timeout is not None
    first.on_timeout()
    _, second = await pbx.invites(2)
    assert second.dest == ("203.0.113.6", 5064)


@pytest.mark.parametrize("status", [486, 404, 484, 603])
async def test_the_callees_answer_does_not_fail_over(status: int) -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    pbx.answer(first, status)
    await settle()
    assert len(pbx.sent_invites()) == 1
    assert pbx.final_to_caller() == (486 if status == 486 else status)


async def test_every_trunk_failing_ends_with_the_last_status() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    pbx.answer(pbx.sent_invites()[0], 503)
    _, second = await pbx.invites(2)
    pbx.answer(second, 502)
    await settle()
    assert pbx.final_to_caller() == 502


async def test_a_full_trunk_is_skipped() -> None:
    pbx = Pbx()
    await pbx.dial("85551234")  # backup only, max_channels 1: this call holds it
    await pbx.dial("85559999")
    await settle()
    assert len(pbx.sent_invites()) == 1
    assert pbx.final_to_caller() == 503
    # The refused call is gone; the first still holds the channel.
    (holding,) = pbx.server.b2bua.calls
    assert holding.notes.trunk == "backup" and holding.notes.dialled == "85551234"


def test_failover_statuses() -> None:
    assert [s for s in (408, 480, 486, 500, 503, 599, 600, 603) if should_fail_over(s, False)] == [
        408,
        500,
        503,
        599,
    ]
    assert not should_fail_over(408, True)  # the callee let it ring: not the trunk's fault


def test_caller_id_only_from_the_trunks_dids() -> None:
    t = OutboundTrunk("t", "h", dids=("+1555000", "+1555001"), caller_id="+1555001")
    assert t.caller_id_for("+1555000") == "+1555000"
    assert t.caller_id_for("1001") == "+1555001"
    assert OutboundTrunk("t", "h", dids=("+1555000",)).caller_id_for("1001") == "+1555000"
    assert OutboundTrunk("t", "h").caller_id_for("1001") == "1001"


# --- toll-fraud guards --------------------------------------------------------------------


def test_number_classes_and_classes_of_service() -> None:
    classes = NumberClasses(
        {
            "emergency": ["112", "911"],
            "premium": ["_1900."],
            "international": ["_00.", "_+."],
            "national": ["_0."],
        }
    )
    got = {
        n: classes.classify(n) for n in ("112", "19005551", "0044207", "+44207", "020888", "5551")
    }
    assert got == {
        "112": "emergency",
        "19005551": "premium",
        "0044207": "international",
        "+44207": "international",
        "020888": "national",
        "5551": "local",
    }
    policy = OutboundPolicy(
        classes,
        {
            "1001": ExtensionLimits("national"),
            "1002": ExtensionLimits("internal"),
            "1003": ExtensionLimits("premium"),
        },
    )
    assert policy.check("1001", "020888", 0, 0.0) == ("national", None)
    assert policy.check("1001", "0044207", 0, 0.0) == ("international", "class_of_service")
    assert policy.check("1002", "5551", 0, 0.0) == ("local", "class_of_service")
    assert policy.check("1002", "112", 0, 0.0) == ("emergency", None)  # always allowed
    assert policy.check("1003", "19005551", 0, 0.0) == ("premium", None)
    assert policy.check("9999", "0044207", 0, 0.0)[1] == "class_of_service"  # unknown: national


def test_outbound_caps_per_minute_and_at_once() -> None:
    now = [0.0]
    policy = OutboundPolicy(
        NumberClasses({"emergency": ["112"]}),
        {"1001": ExtensionLimits("national", per_minute=2, concurrent=1)},
    )
    assert policy.check("1001", "5551", 0, now[0])[1] is None
    assert policy.check("1001", "5552", 1, now[0])[1] == "outbound_concurrent_limit"
    assert policy.check("1001", "5553", 0, now[0])[1] is None
    assert policy.check("1001", "5554", 0, now[0])[1] == "outbound_rate_limit"
    assert policy.check("1001", "112", 5, now[0])[1] is None  # emergency: never capped
    now[0] = 61.0
    assert policy.check("1001", "5555", 0, now[0])[1] is None  # a minute later


async def test_a_refused_number_reaches_no_trunk_and_says_why() -> None:
    pbx = Pbx()
    # 1002 is national by default: international is refused with 403, no INVITE leaves.
    await pbx.dial("900442079460000", user="1002", sent=0)
    assert pbx.sent_invites() == [] and pbx.final_to_caller() == 403
    # 1003 is internal only, but an emergency number always goes out.
    await pbx.dial("9112", user="1003")
    assert pbx.sent_invites()[0].request.uri.startswith("sip:112@")


async def test_the_per_minute_cap_stops_bulk_dialling() -> None:
    pbx = Pbx()
    await pbx.dial("95551001", user="1002")
    await pbx.dial("95551002", user="1002", sent=2)
    await pbx.dial("95551003", user="1002", sent=0)
    assert len(pbx.sent_invites()) == 2 and pbx.final_to_caller() == 403

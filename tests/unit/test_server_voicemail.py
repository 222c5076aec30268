"""Where the SIP server sends calls that cannot ring a phone: the callee's mailbox (its
``voicemail`` settings), a mailbox number set as a forward target (*72/*90/*92 + 7XXX), and
the owner's menu codes *97 / *98 (the service serving ``mailbox``)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from app.settings import extensions_from_config
from config.loader import parse_config
from pbx.digest import build_authorization, choose_challenge
from pbx.events import CallArrived, CallEvent
from pbx.location import Contact
from pbx.message import Request, Response, parse_message
from pbx.transaction import RequestReceived
from tests.unit.call_harness import offer_sdp
from tests.unit.server_harness import server_from_config

PHONE = ("198.51.100.7", 5062)
CONFIG = """
extensions:
  "1001":
    password: pw1
    voicemail: {enabled: true, pin: "4711", on_busy: true, on_no_answer: true}
  "1002": {password: pw2}
  "1003":
    password: pw3
    voicemail: {enabled: true, pin: "1234", on_busy: false, on_no_answer: false}
dialplan:
  internal:
    - {pattern: "_7XXX", strip: 1, prepend: "1", destination: {kind: voicemail}}
"""


class Pbx:
    def __init__(self) -> None:
        self.server, self.replies = server_from_config(CONFIG)
        self.arrived: list[CallArrived] = []

        def seen(event: CallEvent) -> None:
            if isinstance(event, CallArrived):
                self.arrived.append(event)

        self.server.control.subscribe(seen)
        self.server.control.serve("voicemail", "mailbox")

    def register(self, ext: str) -> None:
        now = asyncio.get_running_loop().time()
        contact = Contact(f"sip:{ext}@{PHONE[0]}:{PHONE[1]}", PHONE, "UDP", now + 600, "r", 1)
        self.server.location.put(ext, contact)

    async def invite(self, user: str, password: str, to: str) -> Response:
        """An INVITE from ``user`` to ``to``, answering the 407 once; the final reply."""
        auth: str | None = None
        call_id = secrets.token_hex(6)
        body = offer_sdp(PHONE[0], 4000)
        for cseq in (1, 2):
            lines = [
                f"INVITE sip:{to}@127.0.0.1 SIP/2.0",
                f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch=z9hG4bK{secrets.token_hex(5)}",
                "Max-Forwards: 70",
                f"From: <sip:{user}@127.0.0.1>;tag=t{cseq}",
                f"To: <sip:{to}@127.0.0.1>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} INVITE",
                f"Contact: <sip:{user}@{PHONE[0]}:{PHONE[1]}>",
                "Content-Type: application/sdp",
            ]
            if auth:
                lines.append(f"Proxy-Authorization: {auth}")
            raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            req = parse_message(raw + body)
            assert isinstance(req, Request)
            before = len(self.replies)
            self.server.stack.on_request(RequestReceived(req, PHONE, "UDP", key="k"))
            async with asyncio.timeout(2):  # a call answered by a service: once media is up
                while not [r for r in self.replies[before:] if r.status >= 200]:
                    await asyncio.sleep(0.01)
            reply = next(r for r in self.replies[before:] if r.status >= 200)
            if reply.status != 407:
                return reply
            challenge = choose_challenge(reply.get_all("Proxy-Authenticate"))
            auth = build_authorization("INVITE", f"sip:{to}@127.0.0.1", user, password, challenge)
        return self.replies[-1]

    async def arrival(self) -> CallArrived:
        async with asyncio.timeout(2):
            while not self.arrived:
                await asyncio.sleep(0.01)
        return self.arrived.pop(0)


def _target(event: CallArrived) -> tuple[str, str, str]:
    return (event.kind, event.target, event.caller)


async def test_unregistered_extension_with_voicemail_goes_to_its_mailbox() -> None:
    pbx = Pbx()
    assert (await pbx.invite("1002", "pw2", "1001")).status == 200
    assert _target(await pbx.arrival()) == ("voicemail", "1001", "1002")
    # 1003 has voicemail but not on no-answer: the caller gets 480 as before.
    assert (await pbx.invite("1002", "pw2", "1003")).status == 480


async def test_do_not_disturb_rolls_to_the_mailbox_on_busy() -> None:
    pbx = Pbx()
    pbx.register("1001")
    assert (await pbx.invite("1001", "pw1", "*78")).status == 200  # DND on (answered with a beep)
    await asyncio.sleep(0.05)
    assert (await pbx.invite("1002", "pw2", "1001")).status == 200
    assert _target(await pbx.arrival()) == ("voicemail", "1001", "1002")


@pytest.mark.parametrize("code", ["*72", "*92"])
async def test_forwarding_to_a_mailbox_number_is_allowed(code: str) -> None:
    pbx = Pbx()
    assert (await pbx.invite("1002", "pw2", f"{code}7003")).status == 200  # not 404 any more
    assert (await pbx.invite("1002", "pw2", f"{code}7999")).status == 404  # no such extension
    await asyncio.sleep(0.05)
    # 1002 has no phone registered: unanswered (and, with *72, every call) -> mailbox 1003.
    assert (await pbx.invite("1001", "pw1", "1002")).status == 200
    assert _target(await pbx.arrival()) == ("voicemail", "1003", "1001")


@pytest.mark.parametrize(("dialled", "target"), [("*97", "1002"), ("*98", ""), ("*981003", "1003")])
async def test_mailbox_codes_reach_the_mailbox_service(dialled: str, target: str) -> None:
    pbx = Pbx()
    assert (await pbx.invite("1002", "pw2", dialled)).status == 200
    assert _target(await pbx.arrival()) == ("mailbox", target, "1002")


async def test_mailbox_codes_without_a_service_are_480(monkeypatch: Any) -> None:
    pbx = Pbx()
    monkeypatch.setattr(pbx.server.control, "serves", lambda kind: kind != "mailbox")
    assert (await pbx.invite("1002", "pw2", "*97")).status == 480


def test_voicemail_settings_become_extension_and_mailbox_settings(tmp_path: Any) -> None:
    from app.settings import mailboxes_from_config

    cfg = parse_config(
        CONFIG.replace(
            "on_no_answer: true}",
            "on_no_answer: true, no_answer_seconds: 7,"
            " greeting: hi.wav, language: zh, max_message_seconds: 30}",
        ),
        "test.yaml",
    )
    ext = extensions_from_config(cfg)
    assert (ext["1001"].ring_timeout, ext["1001"].voicemail_on_busy) == (7.0, True)
    assert (ext["1002"].ring_timeout, ext["1002"].voicemail_on_no_answer) == (30.0, False)
    assert not ext["1003"].voicemail_on_busy and ext["1003"].mwi == "subscribe"
    boxes = mailboxes_from_config(cfg, tmp_path)
    assert boxes["1001"].greeting == tmp_path / "hi.wav"
    assert (boxes["1001"].pin, boxes["1001"].language, boxes["1001"].max_seconds) == (
        "4711",
        "zh",
        30.0,
    )
    assert boxes["1002"].pin is None  # voicemail not enabled: nobody can listen

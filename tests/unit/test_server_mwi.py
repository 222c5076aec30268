"""SUBSCRIBE/NOTIFY for message-waiting in the SIP server (RFC 6665, RFC 3842): a phone
subscribes to its own mailbox with Digest credentials and hears every change of the counts."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from pbx.digest import build_authorization, choose_challenge
from pbx.location import Contact
from pbx.message import Request, Response, parse_message
from pbx.mwi import parse_summary
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec
from pbx.transaction import RequestReceived
from tests.unit.call_harness import FakeMedia

PHONE = ("198.51.100.7", 5062)


class Pbx:
    def __init__(self, mwi: str = "subscribe") -> None:
        self.server = SipServer(
            ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),)),
            {
                "1001": Extension("1001", "Alice", "pw", mwi=mwi),
                "1002": Extension("1002", "Bob", "pw2"),
            },
            media=FakeMedia(),
        )
        self.replies: list[Response] = []
        self.sent: list[tuple[Request, Any]] = []  # (request, on_response)
        stack = self.server.stack
        stack.send_response = self.replies.append  # type: ignore[method-assign,assignment]
        stack.local_address = lambda transport="UDP": ("127.0.0.1", 5060)  # type: ignore[method-assign]

        def send_request(
            req: Request, dest: Any, transport: str, on_response: Any, **kw: Any
        ) -> str:
            self.sent.append((req, on_response))
            return "k"

        stack.send_request = send_request  # type: ignore[method-assign,assignment]
        self.call_id = secrets.token_hex(6)
        self.cseq = 0
        self.to_tag: str | None = None

    def send(self, raw: str) -> Response:
        req = parse_message(raw.encode())
        assert isinstance(req, Request)
        self.server.stack.on_request(RequestReceived(req, PHONE, "UDP", key="k"))
        return self.replies[-1]

    def subscribe(
        self,
        expires: int = 600,
        *,
        event: str = "message-summary",
        user: str = "1001",
        box: str = "1001",
        password: str = "pw",
    ) -> Response:
        """SUBSCRIBE as a phone does: answer the challenge once; in the dialog once made."""
        auth: str | None = None
        while True:
            self.cseq += 1
            lines = [
                f"SUBSCRIBE sip:{box}@127.0.0.1 SIP/2.0",
                f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};rport;branch={_branch()}",
                "Max-Forwards: 70",
                f"From: <sip:{user}@127.0.0.1>;tag=ph1",
                f"To: <sip:{box}@127.0.0.1>" + (f";tag={self.to_tag}" if self.to_tag else ""),
                f"Call-ID: {self.call_id}",
                f"CSeq: {self.cseq} SUBSCRIBE",
                f"Contact: <sip:{user}@{PHONE[0]}:{PHONE[1]}>",
                f"Event: {event}",
                "Accept: application/simple-message-summary",
                f"Expires: {expires}",
            ]
            if auth:
                lines.append(f"Proxy-Authorization: {auth}")
            reply = self.send("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")
            if reply.status != 407 or auth is not None:
                return reply
            challenge = choose_challenge(reply.get_all("Proxy-Authenticate"))
            auth = build_authorization(
                "SUBSCRIBE", f"sip:{box}@127.0.0.1", user, password, challenge
            )

    def notifies(self) -> list[Request]:
        return [r for r, _ in self.sent if r.method == "NOTIFY"]


async def test_subscribe_gets_200_and_an_immediate_notify_then_changes() -> None:
    pbx = Pbx()
    reply = pbx.subscribe(600)
    assert reply.status == 200 and reply.get("Expires") == "600"
    assert reply.to.tag and reply.get("Contact")
    pbx.to_tag = reply.to.tag
    (first,) = pbx.notifies()
    assert first.get("Event") == "message-summary"
    assert first.get("Subscription-State") == "active;expires=600"
    assert first.get("Content-Type") == "application/simple-message-summary"
    assert first.from_.tag == reply.to.tag and first.call_id == pbx.call_id
    summary = parse_summary(first.body)
    assert (summary.waiting, summary.account) == (False, "sip:1001@127.0.0.1")

    pbx.server.control.message_waiting("1001", 1, 0)  # a message was left
    pbx.server.control.message_waiting("1001", 1, 0)  # no change: no NOTIFY
    pbx.server.control.message_waiting("1002", 3, 0)  # another mailbox
    assert [parse_summary(n.body).new for n in pbx.notifies()] == [0, 1]
    assert parse_summary(pbx.notifies()[-1].body).waiting

    # Refresh in the dialog, then unsubscribe: a final "terminated" NOTIFY.
    assert pbx.subscribe(300).status == 200
    assert pbx.notifies()[-1].get("Subscription-State") == "active;expires=300"
    assert pbx.subscribe(0).status == 200
    assert pbx.notifies()[-1].get("Subscription-State") == "terminated"
    pbx.server.control.message_waiting("1001", 0, 1)
    assert len(pbx.notifies()) == 4  # nobody subscribed any more
    assert pbx.subscribe(600).status == 481  # the dialog is gone


async def test_notify_481_drops_the_subscription() -> None:
    pbx = Pbx()
    assert pbx.subscribe().status == 200
    request, on_response = pbx.sent[-1]
    on_response(_reply(request, 481))
    pbx.server.control.message_waiting("1001", 2, 0)
    assert len(pbx.notifies()) == 1 and len(pbx.server.mwi) == 0


async def test_expiry_sends_terminated_timeout() -> None:
    pbx = Pbx()
    assert pbx.subscribe(60).status == 200
    pbx.server._expire_subscriptions(asyncio.get_running_loop().time() + 61)
    assert pbx.notifies()[-1].get("Subscription-State") == "terminated;reason=timeout"


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"event": "presence"}, 489),
        ({"expires": 5}, 423),
        ({"box": "1002"}, 403),  # only one's own mailbox
        ({"password": "wrong"}, 407),
    ],
)
async def test_refusals(kw: dict[str, Any], status: int) -> None:
    pbx = Pbx()
    reply = pbx.subscribe(**kw)
    assert reply.status == status and pbx.notifies() == []
    if status == 489:
        assert reply.get("Allow-Events") == "message-summary"


async def test_mwi_off_refuses_and_unsolicited_notifies_registered_phones() -> None:
    assert Pbx(mwi="off").subscribe().status == 403
    pbx = Pbx(mwi="unsolicited")
    now = asyncio.get_running_loop().time()
    pbx.server.location.put(
        "1001", Contact("sip:1001@198.51.100.7:5062", PHONE, "UDP", now + 600, "reg", 1)
    )
    pbx.server.control.message_waiting("1001", 1, 2)
    (notify,) = pbx.notifies()
    assert notify.uri == "sip:1001@198.51.100.7:5062" and notify.to.tag is None
    assert notify.get("Subscription-State") is None
    assert parse_summary(notify.body).new == 1


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(6)


def _reply(request: Request, status: int) -> Response:
    from pbx.message import make_response

    return make_response(request, status)

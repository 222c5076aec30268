"""OPTIONS outside a dialog (RFC 3261 §11.2): the Allow header lists what the server takes."""

from __future__ import annotations

from pbx.message import Request, Response, parse_message
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec
from pbx.transaction import RequestReceived
from tests.unit.call_harness import FakeMedia

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKopt1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:probe@192.0.2.9>;tag=p1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: options-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_options_allow_lists_register() -> None:
    server = SipServer(
        ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),)),
        {"1001": Extension("1001", "Alice", "pw")},
        media=FakeMedia(),
    )
    replies: list[Response] = []
    server.stack.send_response = replies.append  # type: ignore[method-assign,assignment]
    req = parse_message(OPTIONS)
    assert isinstance(req, Request)
    server.stack.on_request(RequestReceived(req, ("192.0.2.9", 5060), "UDP", key="k"))
    (reply,) = replies
    assert reply.status == 200
    allow = {m.strip() for m in (reply.get("Allow") or "").split(",")}
    assert {"REGISTER", "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= allow


def test_405_outside_a_dialog_lists_register_too() -> None:
    server = SipServer(
        ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),)),
        {"1001": Extension("1001", "Alice", "pw")},
        media=FakeMedia(),
    )
    replies: list[Response] = []
    server.stack.send_response = replies.append  # type: ignore[method-assign,assignment]
    req = parse_message(OPTIONS.replace(b"OPTIONS", b"MESSAGE"))
    assert isinstance(req, Request)
    server.stack.on_request(RequestReceived(req, ("192.0.2.9", 5060), "UDP", key="k"))
    (reply,) = replies
    assert reply.status == 405
    allow = {m.strip() for m in (reply.get("Allow") or "").split(",")}
    assert {"REGISTER", "INVITE", "OPTIONS"} <= allow and "MESSAGE" not in allow

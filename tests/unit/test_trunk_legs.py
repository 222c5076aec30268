"""A trunk call after the INVITE (issue 16): the carrier challenges our BYE and re-INVITE
(RFC 3261 §22.2, §8.1.3.5), a carrier that never answers is left after ``invite_timeout``
(a 408, so the next trunk is tried), and a phone's SIP INFO digits reach the carrier as
RFC 4733 events on the trunk leg."""

from __future__ import annotations

import secrets

from pbx import sdp
from pbx.dialog import Dialog, Flow
from pbx.digest import DigestAuthenticator
from pbx.message import Request, Response, make_response, parse_message
from pbx.stack import new_tag
from pbx.transaction import RequestReceived
from tests.unit.call_harness import FakeMedia
from tests.unit.test_trunk_outbound import CONFIG, PHONE, Pbx, Sent, settle

CARRIER = ("203.0.113.5", 5062)
BACKUP = ("203.0.113.6", 5064)
REALM = DigestAuthenticator("carrier.example", b"0123456789abcdef0123")
PASSWORDS = {"sbtrunk": "trunkpw"}.get


def _sent(pbx: Pbx, method: str, dest: tuple[str, int] = CARRIER) -> list[Sent]:
    return [s for s in pbx.sent if s.request.method == method and s.dest == dest]


def _answer(sent: Sent, status: int, *, body: bytes = b"", tag: str = "carrier1") -> None:
    headers = [("Contact", f"<sip:{CARRIER[0]}:{CARRIER[1]}>")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    resp = make_response(sent.request, status, to_tag=tag, headers=headers, body=body)
    wire = parse_message(resp.serialize())
    assert isinstance(wire, Response)
    sent.on_response(wire)


def _challenge(sent: Sent, status: int = 407) -> None:
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    resp = make_response(
        sent.request, status, to_tag="carrier1", headers=[(header, REALM.challenge(0.0)[0])]
    )
    sent.on_response(resp)


def _credentials_ok(req: Request, header: str) -> bool:
    value = req.get(header) or ""
    return REALM.verify(req.method, value, 1.0, lambda u, r: PASSWORDS(u)).ok


class Answered:
    """1001 dialled 95551234; the carrier trunk answered (with telephone-event or not)."""

    def __init__(self, pbx: Pbx, *, telephone_event: bool = True) -> None:
        self.pbx = pbx
        (invite,) = pbx.sent_invites()
        body = sdp.build_offer(
            "203.0.113.50", 30000, dtmf_pt=101 if telephone_event else None, session_id=77
        ).serialize()
        _answer(invite, 200, body=body)
        (self.call,) = pbx.server.b2bua.calls
        assert self.call.b is not None and self.call.b.trunk == "carrier"
        ok = [r for r in pbx.replies if r.status == 200 and r.cseq[1] == "INVITE"]
        self.to_phone = ok[-1]
        self.cseq = 1

    def from_phone(self, method: str, body: bytes = b"", ctype: str | None = None) -> None:
        """An in-dialog request from the phone (1001) to Switchboard."""
        self.cseq += 1
        ok = self.to_phone
        lines = [
            f"{method} sip:1001@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch=z9hG4bK{secrets.token_hex(5)}",
            "Max-Forwards: 70",
            f"From: {ok.get('From')}",
            f"To: {ok.get('To')}",
            f"Call-ID: {ok.call_id}",
            f"CSeq: {self.cseq} {method}",
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        req = parse_message(raw + body)
        assert isinstance(req, Request)
        self.pbx.server.stack.on_request(RequestReceived(req, PHONE, "UDP", key=new_tag()))

    @property
    def media(self) -> FakeMedia:
        media = self.pbx.server.b2bua.media
        assert isinstance(media, FakeMedia)
        return media


# -- challenged in-dialog requests -------------------------------------------------------------


async def test_a_challenged_bye_is_sent_again_with_credentials_and_the_call_ends() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    call = Answered(pbx)
    call.from_phone("BYE")
    await settle()
    # The call ends at once, whatever the carrier does with our BYE.
    assert pbx.server.b2bua.calls == [] and call.call.ended
    (bye,) = _sent(pbx, "BYE")
    _challenge(bye, 407)
    _, again = _sent(pbx, "BYE")
    req = again.request
    # RFC 3261 §8.1.3.5: same dialog, next CSeq, a new transaction.
    assert (req.call_id, req.get("From"), req.get("To")) == (
        bye.request.call_id,
        bye.request.get("From"),
        bye.request.get("To"),
    )
    assert req.cseq == (bye.request.cseq[0] + 1, "BYE")
    assert req.get_list("Via")[0] != bye.request.get_list("Via")[0]
    assert _credentials_ok(req, "Proxy-Authorization")
    # A second challenge means the credentials were refused: no third BYE.
    _challenge(again, 407)
    assert len(_sent(pbx, "BYE")) == 2


async def test_a_bye_without_trunk_credentials_is_not_retried() -> None:
    config = CONFIG.replace("username: sbtrunk, password: trunkpw,", "")
    pbx = Pbx(config)
    await pbx.dial("95551234")
    call = Answered(pbx)
    call.from_phone("BYE")
    await settle()
    (bye,) = _sent(pbx, "BYE")
    _challenge(bye, 401)
    assert len(_sent(pbx, "BYE")) == 1 and pbx.server.b2bua.calls == []


async def test_a_challenged_reinvite_is_sent_again_and_its_ack_carries_the_credentials() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    call = Answered(pbx)
    acks: list[Request] = []
    pbx.server.stack.send_stateless = lambda msg, dest, transport: (  # type: ignore[method-assign]
        acks.append(msg) if isinstance(msg, Request) and dest == CARRIER else None
    )
    done: list[int] = []
    b = call.call.b
    assert b is not None
    assert call.call.reoffer(b, "sendonly", on_done=done.append)
    (_, reinvite) = _sent(pbx, "INVITE")
    assert reinvite.request.to.tag == "carrier1"  # in the dialog
    _challenge(reinvite, 401)
    assert done == []  # not a failure yet: answered with credentials
    *_, again = _sent(pbx, "INVITE")
    req = again.request
    assert req.cseq == (reinvite.request.cseq[0] + 1, "INVITE")
    assert _credentials_ok(req, "Authorization")
    assert req.body == reinvite.request.body
    answer = sdp.build_offer("203.0.113.50", 30000, session_id=77, version=1).serialize()
    _answer(again, 200, body=answer)
    assert done == [200] and not call.call.ended
    ack = acks[-1]
    assert ack.method == "ACK" and ack.cseq == (req.cseq[0], "ACK")  # §13.2.2.4
    assert ack.get("Authorization") == req.get("Authorization")


async def test_a_refused_reinvite_challenge_leaves_the_session_as_it_was() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    call = Answered(pbx)
    done: list[int] = []
    b = call.call.b
    assert b is not None
    assert call.call.reoffer(b, on_done=done.append)
    _challenge(_sent(pbx, "INVITE")[-1], 407)
    _challenge(_sent(pbx, "INVITE")[-1], 407)  # the credentials are refused
    assert done == [407] and len(_sent(pbx, "INVITE")) == 3 and not call.call.ended


def test_authorized_retry_answers_once_and_only_with_credentials() -> None:
    dialog = Dialog("c", "l", "r", "<sip:a@x>", "<sip:b@y>", "sip:b@y", Flow("UDP", CARRIER))
    bye = dialog.create_request("BYE", "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK1")
    resp = make_response(bye, 407, headers=[("Proxy-Authenticate", REALM.challenge(0.0)[0])])
    via = "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK2"
    assert dialog.authorized_retry(bye, resp, via) is None  # no credentials
    dialog.credentials = ("sbtrunk", "trunkpw")
    assert dialog.authorized_retry(bye, make_response(bye, 403), via) is None
    retry = dialog.authorized_retry(bye, resp, via)
    assert retry is not None and retry.cseq == (2, "BYE") and dialog.local_seq == 2
    assert retry.get_list("Via") == [via] and _credentials_ok(retry, "Proxy-Authorization")
    again = make_response(retry, 407, headers=[("Proxy-Authenticate", REALM.challenge(0.0)[0])])
    assert dialog.authorized_retry(retry, again, via) is None  # answered once


# -- a carrier that never answers ------------------------------------------------------------------

SHORT = CONFIG.replace(
    'caller_id: "+862088880000"}', 'caller_id: "+862088880000",\n     invite_timeout: 0.05}'
)


async def test_a_silent_carrier_times_out_and_the_next_trunk_takes_the_call() -> None:
    assert "invite_timeout: 0.05" in SHORT
    pbx = Pbx(SHORT)
    await pbx.dial("95551234")
    first, second = await pbx.invites(2)
    assert (first.dest, second.dest) == (CARRIER, BACKUP)
    (call,) = pbx.server.b2bua.calls
    assert call.notes.trunk == "backup" and call.notes.trunk_attempts == [("carrier", 408)]
    assert _sent(pbx, "CANCEL") == []  # §9.1: no CANCEL before a provisional
    # The abandoned carrier wakes up: its late 100 gets the CANCEL, the call stays on backup.
    _answer(first, 100)
    (cancel,) = _sent(pbx, "CANCEL")
    assert cancel.request.call_id == first.request.call_id
    assert call.notes.trunk == "backup" and pbx.final_to_caller() is None


async def test_a_carrier_that_answered_100_is_not_left() -> None:
    pbx = Pbx(SHORT)
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    _answer(first, 100)
    await settle()
    await settle()
    assert len(pbx.sent_invites()) == 1 and pbx.server.b2bua.calls[0].notes.trunk_attempts == []


async def test_the_timeout_restarts_for_the_invite_with_credentials() -> None:
    pbx = Pbx(SHORT)
    await pbx.dial("95551234")
    (first,) = pbx.sent_invites()
    _challenge(first, 407)
    _, with_credentials, backup = await pbx.invites(3)
    assert (with_credentials.dest, backup.dest) == (CARRIER, BACKUP)
    assert pbx.server.b2bua.calls[0].notes.trunk_attempts == [("carrier", 408)]


def test_invite_timeout_is_read_from_the_config() -> None:
    pbx = Pbx(SHORT)
    trunks = pbx.server.outbound_trunks
    assert trunks["carrier"].invite_timeout == 0.05 and trunks["backup"].invite_timeout == 5


# -- SIP INFO digits to a carrier ------------------------------------------------------------

DTMF_RELAY = b"Signal=5\r\nDuration=160\r\n"


async def test_info_digits_reach_the_carrier_as_rfc4733_events() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    call = Answered(pbx)
    call.from_phone("INFO", DTMF_RELAY, "application/dtmf-relay")
    await settle()
    b = call.call.b
    assert b is not None
    assert ("send_dtmf", b.leg_id, "5") in call.media.commands
    assert _sent(pbx, "INFO") == []  # no INFO to the carrier
    assert [r.status for r in pbx.replies if r.cseq[1] == "INFO"] == [200]


async def test_info_is_relayed_to_a_carrier_without_telephone_event() -> None:
    pbx = Pbx()
    await pbx.dial("95551234")
    call = Answered(pbx, telephone_event=False)
    call.from_phone("INFO", DTMF_RELAY, "application/dtmf-relay")
    await settle()
    assert not any(c[0] == "send_dtmf" for c in call.media.commands)
    (info,) = _sent(pbx, "INFO")
    assert info.request.body == DTMF_RELAY


# -- calls a carrier delivers ---------------------------------------------------------------

INBOUND_CONFIG = """
extensions:
  "1001": {password: pw1}
trunks:
  carrier: {host: 203.0.113.5, port: 5062, register: false, username: sbtrunk,
            password: trunkpw}
  backup: {host: 203.0.113.6, port: 5064, register: false}
dialplan:
  inbound:
    - {did: "4200", destination: {kind: number, target: "95550000"}}
  outbound:
    - {pattern: "_9.", strip: 1, trunk: backup}
"""


async def test_a_carrier_challenging_our_bye_on_its_own_call_gets_the_trunk_credentials() -> None:
    """The carrier's side of a call it delivered is a trunk side too: our BYE (here: the
    call hung up by Switchboard) answers its challenge with the trunk's account."""
    pbx = Pbx(INBOUND_CONFIG)
    body = sdp.build_offer("203.0.113.60", 31000, dtmf_pt=101, session_id=5).serialize()
    lines = [
        "INVITE sip:4200@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bK{secrets.token_hex(5)}",
        "Max-Forwards: 70",
        "From: <sip:+8613800000000@203.0.113.5>;tag=pstn1",
        "To: <sip:4200@127.0.0.1>",
        f"Call-ID: {secrets.token_hex(6)}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:pstn@{CARRIER[0]}:{CARRIER[1]}>",
        "Content-Type: application/sdp",
    ]
    raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    req = parse_message(raw + body)
    assert isinstance(req, Request)
    pbx.server.stack.on_request(RequestReceived(req, CARRIER, "UDP", key="in1"))
    (out,) = await pbx.invites(1)
    assert out.dest == BACKUP
    answer = sdp.build_offer("203.0.113.70", 32000, dtmf_pt=101, session_id=6).serialize()
    _answer(out, 200, body=answer)
    await settle()
    (call,) = pbx.server.b2bua.calls
    assert call.a.trunk == "carrier"
    pbx.server.control.hangup(call.id)
    await settle()
    (bye,) = _sent(pbx, "BYE", CARRIER)
    _challenge(bye, 401)
    _, again = _sent(pbx, "BYE", CARRIER)
    assert again.request.cseq == (bye.request.cseq[0] + 1, "BYE")
    assert _credentials_ok(again.request, "Authorization")

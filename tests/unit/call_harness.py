"""A real :class:`pbx.b2bua.B2bua` between fake phones, a fake SIP stack and fake media.

Nothing touches a socket. :class:`FakeStack` stands where :class:`pbx.stack.SipStack` does:
it records every request, response and stateless message the B2BUA sends and keeps the
callbacks of each client transaction, so a test answers a request the B2BUA sent with
``stack.respond(sent, 200, ...)``. :class:`FakeMedia` is an in-memory
:class:`media.MediaInterface`: legs with their negotiated remote, codec and direction, tones,
players, bridges, and a log of every command. A :class:`Phone` is the far end of one
dialog: it builds the requests a phone would (INVITE with an SDP offer, ACK, BYE, re-INVITE,
REFER) and answers what the B2BUA sends it, through the same ``Dialog`` code the B2BUA uses.

Every message goes through ``serialize`` and ``parse_message`` on the way, so both sides see
what would be on the wire.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from media import PCMA, PCMU, Codec, Direction, LegQuality, LegStats
from media.interface import EventHandler, PlaybackFinished
from pbx import sdp
from pbx.b2bua import B2bua
from pbx.dialog import Dialog, Flow
from pbx.location import Contact
from pbx.message import Request, Response, make_response, parse_message
from pbx.persistence import CallDetail
from pbx.stack import SipStack

SWITCHBOARD = "203.0.113.1"
MEDIA_HOST = "198.51.100.1"


def _wire(msg: Request | Response) -> Request | Response:
    return parse_message(msg.serialize())


# -- the SIP stack ---------------------------------------------------------------------------


@dataclass
class Sent:
    """One message the B2BUA sent; requests keep their transaction's callbacks."""

    msg: Request | Response
    dest: tuple[str, int] | None = None
    transport: str = "UDP"
    on_response: Callable[[Response], None] | None = None
    on_timeout: Callable[[], None] | None = None
    stateless: bool = False
    answered: bool = False  # a final response was delivered to on_response

    @property
    def request(self) -> Request:
        assert isinstance(self.msg, Request)
        return self.msg

    @property
    def response(self) -> Response:
        assert isinstance(self.msg, Response)
        return self.msg


class FakeStack:
    """Records what is sent; the test plays the network."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    # -- what SipStack offers the B2BUA
    def host_for(self, dest_host: str) -> str:
        return SWITCHBOARD

    def via_for(self, transport: str, dest_host: str) -> str:
        branch = "z9hG4bK" + secrets.token_hex(8)
        return f"SIP/2.0/{transport.upper()} {SWITCHBOARD}:5060;rport;branch={branch}"

    def contact_for(self, transport: str, dest_host: str, user: str | None = None) -> str:
        at = f"{user}@" if user else ""
        return f"<sip:{at}{SWITCHBOARD}:5060>"

    def flow_to(
        self, transport: str, source: tuple[str, int], contact_uri: str
    ) -> tuple[str, tuple[str, int]]:
        return transport.upper(), source

    def send_request(
        self,
        request: Request,
        dest: tuple[str, int],
        transport: str,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None] | None = None,
    ) -> str:
        self.sent.append(Sent(_wire(request), dest, transport, on_response, on_timeout))
        return f"key-{len(self.sent)}"

    def send_response(self, response: Response) -> None:
        self.sent.append(Sent(_wire(response)))

    def send_stateless(
        self, msg: Request | Response, dest: tuple[str, int], transport: str
    ) -> None:
        self.sent.append(Sent(_wire(msg), dest, transport, stateless=True))

    # -- what the test uses
    def requests(self, method: str | None = None, to: tuple[str, int] | None = None) -> list[Sent]:
        return [
            s
            for s in self.sent
            if isinstance(s.msg, Request)
            and (method is None or s.msg.method == method)
            and (to is None or s.dest == to)
        ]

    def responses(self, call_id: str | None = None, method: str | None = None) -> list[Response]:
        return [
            s.msg
            for s in self.sent
            if isinstance(s.msg, Response)
            and (call_id is None or s.msg.call_id == call_id)
            and (method is None or s.msg.cseq[1] == method)
        ]

    def statuses(self, call_id: str, method: str = "INVITE") -> list[int]:
        return [r.status for r in self.responses(call_id, method)]

    def respond(
        self,
        sent: Sent,
        status: int,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """Deliver a response to a request the B2BUA sent (as its client transaction would)."""
        assert sent.on_response is not None
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/sdp"))
        resp = make_response(sent.request, status, to_tag=to_tag, headers=extra, body=body)
        resp = cast(Response, _wire(resp))
        if status >= 200:
            sent.answered = True
        sent.on_response(resp)
        return resp


# -- media -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeLeg:
    leg_id: str
    local_host: str
    local_port: int

    @property
    def local_rtcp_port(self) -> int:
        return self.local_port + 1


@dataclass
class LegState:
    address: FakeLeg
    remote: tuple[str, int] | None = None
    codec: Codec | None = None
    dtmf_pt: int | None = None
    direction: str = "sendrecv"
    tone: str | None = None
    inband_dtmf: bool = False


class FakeMedia:
    """An in-memory media interface: state per leg, bridges, players, a command log."""

    def __init__(self) -> None:
        self.legs: dict[str, LegState] = {}
        self.bridges: dict[str, list[str]] = {}
        self.players: dict[str, tuple[str, Any]] = {}  # id -> (leg, source)
        self.commands: list[tuple[Any, ...]] = []
        self.closed: list[str] = []
        self.fail_create = False
        self._ports = itertools.count(20000, 2)
        self._ids = itertools.count(1)
        self._handlers: list[EventHandler] = []

    def _log(self, *cmd: Any) -> None:
        self.commands.append(cmd)

    # lifecycle
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    async def stats(self) -> list[Any]:
        return []

    # legs
    async def create_leg(
        self, leg_id: str, advertise_host: str | None = None, *, near: str | None = None
    ) -> FakeLeg:
        self._log("create_leg", leg_id)
        if self.fail_create:
            from media import PortsExhausted

            raise PortsExhausted("no ports")
        if leg_id in self.legs:
            raise ValueError(f"duplicate leg {leg_id}")
        leg = FakeLeg(leg_id, advertise_host or MEDIA_HOST, next(self._ports))
        self.legs[leg_id] = LegState(leg)
        return leg

    def close_leg(self, leg_id: str) -> None:
        self._log("close_leg", leg_id)
        if self.legs.pop(leg_id, None) is not None:
            self.closed.append(leg_id)
            self.unbridge(leg_id)
            for pid, (leg, _src) in list(self.players.items()):
                if leg == leg_id:
                    del self.players[pid]

    def leg_address(self, leg_id: str) -> FakeLeg:
        return self.legs[leg_id].address

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self.legs

    def __len__(self) -> int:
        return len(self.legs)

    def set_remote(
        self,
        leg_id: str,
        host: str,
        port: int,
        codec: Codec,
        dtmf_payload_type: int | None,
        *,
        direction: str = "sendrecv",
        rtcp_address: tuple[str, int] | None = None,
    ) -> None:
        self._log("set_remote", leg_id, host, port, codec.name, direction)
        st = self.legs[leg_id]
        st.remote, st.codec, st.dtmf_pt, st.direction = (
            (host, port),
            codec,
            dtmf_payload_type,
            direction,
        )

    def start_tone(self, leg_id: str, kind: str = "ringback") -> None:
        self._log("start_tone", leg_id, kind)
        self.legs[leg_id].tone = kind

    def stop_tone(self, leg_id: str) -> None:
        self._log("stop_tone", leg_id)
        if leg_id in self.legs:
            self.legs[leg_id].tone = None

    def send_dtmf(self, leg_id: str, digit: str, duration_ms: int = 100) -> None:
        self._log("send_dtmf", leg_id, digit)

    def leg_stats(self, leg_id: str) -> LegStats:
        return LegStats(packets_in=50, packets_out=49)

    def leg_quality(self, leg_id: str) -> LegQuality:
        _ = self.legs[leg_id]
        return LegQuality(
            packets_received=50,
            packets_lost=1,
            loss_fraction=0.02,
            jitter_ms=3.25,
            rtt_ms=None,
            mos=4.1,
        )

    # bridges
    def create_bridge(self, bridge_id: str, *, near: str | None = None) -> None:
        self._log("create_bridge", bridge_id)
        self.bridges.setdefault(bridge_id, [])

    def destroy_bridge(self, bridge_id: str) -> None:
        self._log("destroy_bridge", bridge_id)
        self.bridges.pop(bridge_id, None)

    def bridge(self, leg_a: str, leg_b: str) -> str:
        self._log("bridge", leg_a, leg_b)
        self.unbridge(leg_a)
        self.unbridge(leg_b)
        bridge_id = f"br{next(self._ids)}"
        self.bridges[bridge_id] = [leg_a, leg_b]
        return bridge_id

    def unbridge(self, leg_id: str) -> None:
        for bridge_id, legs in list(self.bridges.items()):
            if leg_id in legs:
                legs.remove(leg_id)
                if bridge_id.startswith("br"):
                    del self.bridges[bridge_id]  # a two-party bridge goes with either party

    def join(self, bridge_id: str, leg_id: str) -> None:
        self._log("join", bridge_id, leg_id)
        self.unbridge(leg_id)
        self.bridges[bridge_id].append(leg_id)

    def leave(self, bridge_id: str, leg_id: str) -> None:
        self._log("leave", bridge_id, leg_id)
        if leg_id in self.bridges.get(bridge_id, []):
            self.bridges[bridge_id].remove(leg_id)

    def bridge_of(self, leg_id: str) -> str | None:
        return next((b for b, legs in self.bridges.items() if leg_id in legs), None)

    def bridge_legs(self, bridge_id: str) -> tuple[str, ...]:
        return tuple(self.bridges[bridge_id])

    def bridged(self, leg_a: str, leg_b: str) -> bool:
        bridge_id = self.bridge_of(leg_a)
        return bridge_id is not None and leg_b in self.bridges[bridge_id]

    def set_hears(self, bridge_id: str, listener: str, speaker: str, audible: bool) -> None:
        self._log("set_hears", bridge_id, listener, speaker, audible)

    def mute(
        self, leg_id: str, *, inbound: bool | None = None, outbound: bool | None = None
    ) -> None:
        self._log("mute", leg_id, inbound, outbound)

    # taps, players, detection
    def add_tap(self, bridge_id: str, leg_id: str | None, callback: Any) -> str:
        return f"tap{next(self._ids)}"

    def add_tap_heard(self, leg_id: str, callback: Any) -> str:
        return f"tap{next(self._ids)}"

    def add_tap_stereo(self, leg_id: str, callback: Any) -> str:
        return f"tap{next(self._ids)}"

    def remove_tap(self, tap_id: str) -> None:
        pass

    def play(
        self,
        leg_id: str,
        source: Any,
        *,
        mix: bool = False,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
    ) -> str:
        player_id = f"pl{next(self._ids)}"
        self._log("play", leg_id, source)
        self.players[player_id] = (leg_id, source)
        return player_id

    def stop_play(self, player_id: str) -> None:
        self._log("stop_play", player_id)
        self.players.pop(player_id, None)

    def playing(self, leg_id: str) -> list[Any]:
        return [src for leg, src in self.players.values() if leg == leg_id]

    def inject(self, leg_id: str, source: Any) -> str:
        return f"inj{next(self._ids)}"

    def stop_injection(self, injection_id: str) -> None:
        pass

    def detect_inband_dtmf(self, leg_id: str, enabled: bool = True) -> None:
        self.legs[leg_id].inband_dtmf = enabled


# -- phones ------------------------------------------------------------------------------------

MOH = "music-on-hold"


def offer_sdp(
    host: str,
    port: int,
    codecs: tuple[Codec, ...] = (PCMU, PCMA),
    *,
    direction: Direction = "sendrecv",
    version: int = 0,
    session_id: int = 4242,
) -> bytes:
    return sdp.build_offer(
        host,
        port,
        codecs,
        dtmf_pt=101,
        session_id=session_id,
        version=version,
        direction=direction,
    ).serialize()


@dataclass
class Phone:
    """The far end of one or more dialogs with the B2BUA: extension ``ext`` at ``address``."""

    sb: Switchboard
    ext: str
    address: tuple[str, int]
    rtp_port: int = 4000
    dialogs: dict[str, Dialog] = field(default_factory=dict)  # by Call-ID
    sdp_version: int = 0

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def contact(self) -> Contact:
        return Contact(
            uri=f"sip:{self.ext}@{self.host}:{self.address[1]}",
            source=self.address,
            transport="UDP",
            expires_at=1e9,
            call_id=f"reg-{self.ext}",
            cseq=1,
        )

    def offer(self, **kw: Any) -> bytes:
        kw.setdefault("version", self.sdp_version)
        return offer_sdp(self.host, self.rtp_port, **kw)

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.address[1]};branch=z9hG4bK{secrets.token_hex(6)}"

    # -- calling
    def invite(self, callee: str, body: bytes | None = None, call_id: str | None = None) -> Request:
        call_id = call_id or f"{secrets.token_hex(6)}@{self.host}"
        lines = [
            f"INVITE sip:{callee}@{SWITCHBOARD} SIP/2.0",
            f"Via: {self._via()}",
            "Max-Forwards: 70",
            f'From: "Phone {self.ext}" <sip:{self.ext}@{SWITCHBOARD}>;tag={secrets.token_hex(4)}',
            f"To: <sip:{callee}@{SWITCHBOARD}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:{self.ext}@{self.host}:{self.address[1]}>",
            "Content-Type: application/sdp",
        ]
        payload = self.offer() if body is None else body
        data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
        msg = parse_message(data + payload)
        assert isinstance(msg, Request)
        return msg

    def call(self, callee: Phone | str, ring_timeout: float = 30.0) -> Request:
        """Send an INVITE through the B2BUA as the server would route it."""
        target = callee if isinstance(callee, str) else callee.ext
        inv = self.invite(target)
        contacts = self.sb.contacts_of(target) or []
        self.sb.b2b.start_call(inv, self.address, "UDP", self.ext, target, contacts, ring_timeout)
        return inv

    def final_to(self, invite: Request) -> Response:
        """The final response the B2BUA sent to our INVITE; an ACK creates our dialog."""
        finals = [r for r in self.sb.stack.responses(invite.call_id, "INVITE") if r.status >= 200]
        assert finals, "no final response yet"
        return finals[-1]

    def ack(self, invite: Request, resp: Response | None = None) -> Dialog:
        resp = resp or self.final_to(invite)
        dialog = Dialog.as_uac(invite, resp, Flow("UDP", self.address))
        self.dialogs[invite.call_id] = dialog
        ack = dialog.create_request("ACK", self._via(), cseq=invite.cseq[0])
        self.send(ack)
        return dialog

    def cancel(self, invite: Request) -> None:
        """CANCEL our INVITE as the server's CANCEL handler would deliver it."""
        call = self.sb.b2b.find_by_invite(invite.call_id, invite.from_.tag or "")
        assert call is not None
        call.on_cancel()

    # -- being called
    def incoming(self) -> list[Sent]:
        """INVITEs the B2BUA sent us and that we have not answered finally."""
        return [
            s
            for s in self.sb.stack.requests("INVITE", to=self.address)
            if s.request.call_id not in self.dialogs and not s.request.to.tag
        ]

    def ring(self, sent: Sent, status: int = 180, body: bytes = b"") -> Response:
        return self.sb.stack.respond(sent, status, to_tag=self._tag(sent), body=body)

    def answer(
        self, sent: Sent, *, codecs: tuple[Codec, ...] = (PCMU, PCMA), body: bytes | None = None
    ) -> Dialog:
        inv = sent.request
        if body is None:
            body = sdp.negotiate_answer(
                inv.body, host=self.host, port=self.rtp_port, supported=codecs, session_id=77
            ).answer.serialize()
        tag = self._tag(sent)
        self.sb.stack.respond(
            sent,
            200,
            to_tag=tag,
            body=body,
            headers=[("Contact", f"<sip:{self.ext}@{self.host}:{self.address[1]}>")],
        )
        dialog = Dialog.as_uas(inv, tag, Flow("UDP", self.address))
        dialog.update_target(inv)
        self.dialogs[inv.call_id] = dialog
        return dialog

    def reinvites(self) -> list[Sent]:
        """re-INVITEs the B2BUA sent us (in a dialog: the To has our tag)."""
        return [s for s in self.sb.stack.requests("INVITE", to=self.address) if s.request.to.tag]

    def answer_offer(self, sent: Sent, status: int = 200, *, port: int | None = None) -> None:
        """Answer an offer the B2BUA sent in a dialog (re-INVITE) with ``status``."""
        body = b""
        if 200 <= status < 300:
            body = sdp.negotiate_answer(
                sent.request.body,
                host=self.host,
                port=port or self.rtp_port,
                supported=(PCMU, PCMA),
                session_id=77,
                version=1,
            ).answer.serialize()
        self.sb.stack.respond(sent, status, body=body)

    def _tag(self, sent: Sent) -> str:
        return f"t{self.ext}{sent.request.call_id[:6]}"

    # -- in a dialog
    def dialog(self, call_id: str | None = None) -> Dialog:
        if call_id is None:
            assert len(self.dialogs) == 1, self.dialogs.keys()
            return next(iter(self.dialogs.values()))
        return self.dialogs[call_id]

    def request(
        self,
        method: str,
        call_id: str | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Request:
        """Send an in-dialog request to the B2BUA; returns it (responses are in the stack)."""
        dialog = self.dialog(call_id)
        if body and content_type is None:
            content_type = "application/sdp"
        req = dialog.create_request(
            method,
            self._via(),
            f"<sip:{self.ext}@{self.host}:{self.address[1]}>",
            body=body,
            content_type=content_type,
            extra=extra,
        )
        self.send(req)
        return req

    def send(self, req: Request) -> bool:
        msg = _wire(req)
        assert isinstance(msg, Request)
        return self.sb.b2b.handle_in_dialog(msg, self.address, "UDP")

    def ack_reinvite(self, invite: Request) -> None:
        dialog = self.dialog(invite.call_id)
        self.send(dialog.create_request("ACK", self._via(), cseq=invite.cseq[0]))

    def reinvite(self, call_id: str | None = None, **offer: Any) -> Request:
        self.sdp_version += 1
        return self.request("INVITE", call_id, body=self.offer(**offer))

    def response_to(self, req: Request) -> Response:
        got = [
            r
            for r in self.sb.stack.responses(req.call_id, req.method)
            if r.cseq[0] == req.cseq[0] and r.status >= 200
        ]
        assert len(got) == 1, [r.status for r in got]
        return got[0]

    def requests_to_me(self, method: str) -> list[Request]:
        return [s.request for s in self.sb.stack.requests(method, to=self.address)]

    def answer_request(self, method: str, status: int = 200) -> None:
        """Answer (finally) every ``method`` request the B2BUA sent us that is unanswered."""
        for s in self.sb.stack.requests(method, to=self.address):
            if s.on_response is not None and not s.answered:
                self.sb.stack.respond(s, status)


class Switchboard:
    """The B2BUA under test, its fake stack and media, and the phones registered to it."""

    def __init__(self) -> None:
        self.stack = FakeStack()
        self.media = FakeMedia()
        self.phones: dict[str, Phone] = {}
        self.details: list[CallDetail] = []
        self.b2b = B2bua(
            cast(SipStack, self.stack),
            self.media,
            on_call_ended=self.details.append,
            contacts_of=self.contacts_of,
            music_on_hold=lambda leg_id: self.media.play(leg_id, MOH),
            stop_music=self.media.stop_play,
        )

    def phone(self, ext: str, host: str | None = None) -> Phone:
        n = len(self.phones) + 1
        p = Phone(self, ext, (host or f"192.0.2.{10 + n}", 5060), rtp_port=4000 + 10 * n)
        self.phones[ext] = p
        return p

    def contacts_of(self, ext: str) -> list[Contact] | None:
        p = self.phones.get(ext)
        return None if p is None else [p.contact]


async def settle() -> None:
    """Let the B2BUA's tasks (media allocation, forks) run to their next wait."""
    for _ in range(5):
        await asyncio.sleep(0)

"""A SIP phone that Switchboard hosts itself: the signalling half of the browser phone.

Theory of operation
-------------------
An agent without a desk phone works with the browser phone: WebRTC from the browser to the
server (aiortc, in ``web/``), and from there into the PBX as an *ordinary SIP phone*. That
phone is a :class:`HostedPhone`: a small user agent on a loopback UDP socket that registers
the agent's extension with its password (RFC 3261 §10, digest §22) like any desk phone, so
the registrar, the location store, queues, transfers, recording and supervision see nothing
special. Its RTP end is a ``media.pcm_port.PcmPort`` on loopback; the composition root
(``app/phone.py``) joins the two and hands them to the web layer.

What it does, with the RFC 3261 sections it follows:

* REGISTER with the extension's credentials, answering a 401/407 challenge once per
  request (§22.2), refreshed before the granted expiry (§10.2.4), removed with
  ``Expires: 0`` when the phone closes (§10.2.2).
* An incoming INVITE rings (180, §13.3.1.1) and is told to the listener; ``answer``
  sends 200 with the SDP answer (RFC 3264 §6) and retransmits it until the ACK
  (§13.3.1.4: T1 doubling to T2, 64*T1 in all); ``reject`` sends a final refusal.
  A second call while one is ringing or up gets 486 Busy Here.
* CANCEL of the ringing INVITE: 200 to the CANCEL, 487 to the INVITE (§9.2).
* In the dialog: BYE ends the call (§15.1.2); a re-INVITE (hold, re-pairing) is answered
  with our SDP again and its new media applied (§14.2); INFO, UPDATE without a body,
  NOTIFY and OPTIONS get 200. ``hangup`` sends BYE, retransmitted until answered
  (§17.1.2.2 timer E).
* ``dial`` places a call: INVITE with our SDP offer, a challenge answered once, ACK for
  the 2xx in a new transaction (§13.2.2.4) and for a failure in the INVITE's own
  (§17.1.1.3); CANCEL while it rings (§9.1).

It answers requests at their source address (the server is on loopback) and retransmits
its own responses when a request is retransmitted (§17.2.1, §17.2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from media.codecs import CodecInfo, get_codec

from .digest import DigestError, build_authorization, choose_challenge
from .message import (
    ParseError,
    Request,
    Response,
    make_response,
    parse_message,
)
from .sdp import SdpError, SessionDescription

__all__ = ["T1", "T2", "CallMedia", "HostedPhone", "HostedPhoneListener", "choose_media"]

log = structlog.get_logger(__name__)

T1 = 0.5  # RFC 3261 §17.1.1.1
T2 = 4.0
REGISTER_EXPIRES = 300
# What we accept, best first: wideband first when the process can code it.
PREFERRED = ("G722", "PCMU", "PCMA")
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY"


@dataclass(frozen=True, slots=True)
class CallMedia:
    """What the far end's SDP settled: where to send, in which format."""

    host: str
    port: int
    codec: CodecInfo
    payload_type: int
    dtmf_pt: int | None
    direction: str


class HostedPhoneListener(Protocol):
    """Told what happens on the phone (all called on the event loop)."""

    def registered(self, ok: bool, reason: str) -> None: ...

    def incoming(self, call_id: str, caller: str, display: str, headers: dict[str, str]) -> None:
        """A call rings: ``caller`` is the From user, ``headers`` the INVITE's ``X-``,
        Call-Info, Alert-Info and Subject headers by lower-case name."""

    def progress(self, call_id: str, status: int) -> None:
        """An outgoing call got a provisional response (180 rings, 183 early media)."""

    def answered(self, call_id: str, media: CallMedia) -> None:
        """The call is up (or its media changed by a re-INVITE)."""

    def ended(self, call_id: str, reason: str) -> None:
        """The call is over: ``bye``, ``cancelled``, ``rejected``, ``failed <status>``…"""


@dataclass(slots=True)
class _Call:
    call_id: str
    incoming: bool
    local_tag: str
    remote_tag: str = ""
    remote_target: str = ""  # the far end's Contact (§12.1.1)
    route: list[str] = field(default_factory=list)
    local_cseq: int = 0
    invite: Request | None = None  # the INVITE (ours or theirs)
    last_response: Response | None = None  # our last response to their INVITE
    state: str = "ringing"  # ringing | answering | up | ended
    retransmit: _Retry | None = None
    provisional: bool = False  # an outgoing INVITE got a 1xx: no more retransmissions
    bye_after_ack: bool = False  # hung up while our 2xx waits for its ACK (§15)
    sdp_session: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = 0
    local_sdp: bytes = b""
    rtp_port: int = 0
    auth_tried: bool = False
    branch: str = ""


class _Retry:
    """A retransmission schedule: ``cancel`` stops it whichever timer is pending."""

    __slots__ = ("handle", "stopped")

    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None
        self.stopped = False

    def cancel(self) -> None:
        self.stopped = True
        if self.handle is not None:
            self.handle.cancel()


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def _tag() -> str:
    return secrets.token_hex(6)


class HostedPhone:
    """One extension's hosted phone (see the module doc)."""

    def __init__(
        self,
        *,
        extension: str,
        password: str,
        server: tuple[str, int],
        listener: HostedPhoneListener,
        host: str = "127.0.0.1",
        user_agent: str = "Switchboard browser phone",
        display: str = "",
    ) -> None:
        self.extension = extension
        self._password = password
        self._server = server
        self._listener = listener
        self._host = host
        self._user_agent = user_agent
        self._display = display
        self._port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._calls: dict[str, _Call] = {}
        self._reg_call_id = secrets.token_hex(10) + "@" + host
        self._reg_cseq = 0
        self._reg_tag = _tag()
        self._reg_branch = ""
        self._reg_timer: asyncio.TimerHandle | None = None
        self._reg_retry: _Retry | None = None
        self._reg_auth_tried = False
        self._reg_expires = REGISTER_EXPIRES
        self._registered = asyncio.Event()
        self._unregistered = asyncio.Event()
        self._closing = False
        self._bye_pending: dict[str, _Retry] = {}
        self._reported_ok: bool | None = None  # the last registration state told

    @property
    def contact(self) -> str:
        return f"<sip:{self.extension}@{self._host}:{self._port};transport=udp>"

    @property
    def aor(self) -> str:
        return f"sip:{self.extension}@{self._server[0]}"

    def call_ids(self) -> list[str]:
        return [c.call_id for c in self._calls.values() if c.state != "ended"]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, timeout: float = 5.0) -> bool:
        """Bind and register; True once the registrar accepted us within ``timeout``."""
        loop = asyncio.get_running_loop()
        phone = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
                phone._datagram(data)

            def error_received(self, exc: Exception) -> None:
                log.debug("hosted_phone.send_error", ext=phone.extension, error=str(exc))

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=(self._host, 0))
        self._transport = transport
        self._port = transport.get_extra_info("sockname")[1]
        self._register(self._reg_expires)
        try:
            await asyncio.wait_for(self._registered.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Hang up every call, unregister, release the socket."""
        if self._transport is None:
            return
        self._closing = True
        for call in list(self._calls.values()):
            if call.state != "ended":
                self.hangup(call.call_id)
        for handle in (self._reg_timer, self._reg_retry):
            if handle is not None:
                handle.cancel()
        self._unregistered.clear()
        self._register(0)
        try:
            await asyncio.wait_for(self._unregistered.wait(), timeout)
        except TimeoutError:
            log.warning("hosted_phone.unregister_timeout", ext=self.extension)
        for retry in self._bye_pending.values():
            retry.cancel()
        self._bye_pending.clear()
        self._transport.close()
        self._transport = None

    # -- sending --------------------------------------------------------------------------------

    def _send(self, msg: Request | Response) -> None:
        if self._transport is not None:
            self._transport.sendto(msg.serialize(), self._server)

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self._host}:{self._port};branch={branch};rport"

    def _retransmit(
        self,
        data: Callable[[], Request | Response | None],
        interval: float,
        total: float,
        on_give_up: Callable[[], None] | None = None,
        *,
        cap: float | None = T2,
    ) -> _Retry:
        """Send ``data()`` again after ``interval``, doubling (to ``cap``: T2, or none for
        an INVITE's timer A, §17.1.1.2), until ``total`` spent; ``data()`` returning None
        or ``cancel()`` stops it."""
        loop = asyncio.get_running_loop()
        retry = _Retry()

        def fire() -> None:
            if retry.stopped:
                return
            msg = data()
            if msg is None:
                return
            nonlocal interval, total
            total -= interval
            if total <= 0:
                if on_give_up is not None:
                    on_give_up()
                return
            self._send(msg)
            interval = interval * 2 if cap is None else min(interval * 2, cap)
            retry.handle = loop.call_later(interval, fire)

        retry.handle = loop.call_later(interval, fire)
        return retry

    # -- registration (RFC 3261 §10.2) ----------------------------------------------------------

    def _register(self, expires: int, authorization: tuple[str, str] | None = None) -> None:
        self._reg_cseq += 1
        self._reg_branch = _branch()
        headers = [
            ("Via", self._via(self._reg_branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self._reg_tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self._reg_call_id),
            ("CSeq", f"{self._reg_cseq} REGISTER"),
            ("Contact", self.contact),
            ("Expires", str(expires)),
            ("User-Agent", self._user_agent),
            ("Allow", ALLOW),
        ]
        if authorization is not None:
            headers.append(authorization)
        req = Request("REGISTER", f"sip:{self._server[0]}:{self._server[1]}", headers)
        self._send(req)
        branch = self._reg_branch
        if self._reg_retry is not None:
            self._reg_retry.cancel()
        self._reg_retry = self._retransmit(
            lambda: req if self._reg_branch == branch else None,
            T1,
            64 * T1,
            on_give_up=lambda: self._register_failed("timeout"),
        )

    def _register_failed(self, reason: str) -> None:
        log.warning("hosted_phone.register_failed", ext=self.extension, reason=reason)
        self._reported_ok = False
        self._listener.registered(False, reason)
        if not self._closing:  # try again later, as a phone would
            self._reg_timer = asyncio.get_running_loop().call_later(
                30, self._register, REGISTER_EXPIRES
            )

    def _on_register_response(self, resp: Response, expires_sent: int) -> None:
        if resp.status < 200:
            return
        if self._reg_retry is not None:
            self._reg_retry.cancel()
            self._reg_retry = None
        self._reg_branch = ""
        if resp.status in (401, 407) and not self._reg_auth_tried:
            self._reg_auth_tried = True
            auth = self._answer_challenge(
                resp, "REGISTER", f"sip:{self._server[0]}:{self._server[1]}"
            )
            if auth is not None:
                self._register(expires_sent, auth)
                return
        self._reg_auth_tried = False
        if expires_sent == 0:
            self._unregistered.set()
            return
        if resp.status >= 300:
            self._register_failed(f"{resp.status} {resp.reason}")
            return
        granted = expires_sent
        for contact in resp.get_all("Contact"):
            if f":{self._port}" in contact and "expires=" in contact:
                with contextlib.suppress(ValueError):
                    granted = int(contact.split("expires=")[1].split(";")[0].strip().strip(">"))
        if resp.get("Expires"):
            with contextlib.suppress(ValueError):
                granted = min(granted, int(resp.get("Expires") or granted))
        self._reg_expires = max(granted, 30)
        self._registered.set()
        if self._reported_ok is not True:  # the first time, and again after a failure
            self._reported_ok = True
            self._listener.registered(True, "registered")
        # §10.2.4: refresh before the binding expires.
        self._reg_timer = asyncio.get_running_loop().call_later(
            self._reg_expires * 0.8, self._register, self._reg_expires
        )

    def _answer_challenge(self, resp: Response, method: str, uri: str) -> tuple[str, str] | None:
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        values = _all(resp, name)
        if not values:
            return None
        try:
            value = build_authorization(
                method, uri, self.extension, self._password, choose_challenge(values)
            )
        except DigestError as e:
            log.warning("hosted_phone.challenge_unusable", error=str(e))
            return None
        return ("Authorization" if resp.status == 401 else "Proxy-Authorization", value)

    # -- receiving ------------------------------------------------------------------------------

    def _datagram(self, data: bytes) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            msg = parse_message(data)
        except ParseError as e:
            log.debug("hosted_phone.unparsable", error=str(e))
            return
        try:
            if isinstance(msg, Response):
                self._on_response(msg)
            else:
                self._on_request(msg)
        except Exception:
            log.exception("hosted_phone.message_failed", ext=self.extension)

    def _on_response(self, resp: Response) -> None:
        method = resp.cseq[1]
        if resp.call_id == self._reg_call_id and method == "REGISTER":
            if resp.top_via.params.get("branch") != self._reg_branch:
                return  # a retransmitted answer to an old request
            expires = 0 if self._closing else self._reg_expires
            self._on_register_response(resp, expires)
            return
        if method == "BYE":
            if resp.status >= 200:  # a 1xx only slows the retransmissions (§17.1.2.2)
                pending = self._bye_pending.pop(resp.call_id, None)
                if pending is not None:
                    pending.cancel()
            return
        call = self._calls.get(resp.call_id)
        if call is None or call.incoming:
            return
        if method == "INVITE":
            self._on_invite_response(call, resp)

    def _on_request(self, req: Request) -> None:
        m = req.method
        call = self._calls.get(req.call_id)
        if m == "INVITE" and call is None:
            self._on_new_invite(req)
            return
        if m == "ACK":
            if call is not None and call.incoming:
                if call.retransmit is not None:
                    call.retransmit.cancel()
                    call.retransmit = None
                if call.state == "answering":
                    call.state = "up"
                    if call.bye_after_ack:  # hung up before the ACK came (§15)
                        self._send_bye(call)
                        self._end(call, "hangup")
                elif call.state == "refused":
                    self._forget(call)
            return
        if m == "CANCEL":
            self._on_cancel(req, call)
            return
        if call is None:
            status = 200 if m in ("OPTIONS", "NOTIFY") else 481
            self._send(make_response(req, status, to_tag=_tag(), headers=[("Allow", ALLOW)]))
            return
        if m == "INVITE":
            self._on_reinvite(call, req)
        elif m == "BYE":
            self._send(make_response(req, 200))
            self._end(call, "bye")
        else:  # INFO, UPDATE, NOTIFY, OPTIONS in the dialog
            self._send(make_response(req, 200, headers=[("Allow", ALLOW)]))

    # -- incoming calls -------------------------------------------------------------------------

    def _on_new_invite(self, req: Request) -> None:
        if self._closing or any(c.state != "ended" for c in self._calls.values()):
            self._send(make_response(req, 486, to_tag=_tag()))
            return
        call = _Call(req.call_id, True, _tag(), invite=req)
        call.remote_tag = req.from_.params.get("tag") or ""
        contacts = req.contacts
        call.remote_target = str(contacts[0].uri) if contacts else str(req.from_.uri)
        call.route = list(_all(req, "Record-Route"))
        self._calls[req.call_id] = call
        self._respond(call, make_response(req, 180, to_tag=call.local_tag, headers=self._contact()))
        caller = req.from_.uri.user or ""
        display = req.from_.display or ""
        extras = {  # lower-case names: header names are case-insensitive (§7.3.1)
            k.lower(): v
            for k, v in req.headers
            if k.lower().startswith("x-") or k.lower() in ("call-info", "alert-info", "subject")
        }
        self._listener.incoming(call.call_id, caller, display, extras)

    def _contact(self) -> list[tuple[str, str]]:
        return [("Contact", self.contact), ("Allow", ALLOW), ("User-Agent", self._user_agent)]

    def _respond(self, call: _Call, resp: Response) -> None:
        call.last_response = resp
        self._send(resp)

    def answer(self, call_id: str, rtp_port: int) -> CallMedia | None:
        """Answer the ringing call with RTP at ``rtp_port``; the media it settles (None when
        the offer has nothing we can use: the call is refused with 488)."""
        call = self._calls.get(call_id)
        if call is None or not call.incoming or call.state != "ringing" or call.invite is None:
            return None
        media = choose_media(call.invite.body)
        if media is None:
            self.reject(call_id, 488)
            return None
        call.rtp_port = rtp_port
        call.local_sdp = self._sdp(call, [media])
        ok = make_response(
            call.invite,
            200,
            to_tag=call.local_tag,
            headers=[*self._contact(), ("Content-Type", "application/sdp")],
            body=call.local_sdp,
        )
        call.state = "answering"
        self._respond(call, ok)
        # §13.3.1.4: the 2xx is retransmitted until the ACK, for 64*T1 at most.
        call.retransmit = self._retransmit(
            lambda: ok if call.state == "answering" else None,
            T1,
            64 * T1,
            on_give_up=lambda: self._no_ack(call),
        )
        self._listener.answered(call_id, media)
        return media

    def _no_ack(self, call: _Call) -> None:
        """§13.3.1.4: no ACK for 64*T1: the dialog is confirmed, the session ends (BYE)."""
        if call.state == "answering":
            call.state = "up"
            self._send_bye(call)
            self._end(call, "no ack")

    def reject(self, call_id: str, status: int = 486) -> None:
        """Refuse the ringing call with ``status`` (486 Busy Here, 603 Decline)."""
        call = self._calls.get(call_id)
        if call is None or not call.incoming or call.state != "ringing" or call.invite is None:
            return
        call.state = "refused"
        resp = make_response(call.invite, status, to_tag=call.local_tag)
        self._respond(call, resp)
        call.retransmit = self._retransmit(
            lambda: resp if call.state == "refused" else None,
            T1,
            64 * T1,
            on_give_up=lambda: self._forget(call),
        )
        self._listener.ended(call_id, "rejected")

    def _on_cancel(self, req: Request, call: _Call | None) -> None:
        if call is None or not call.incoming:
            self._send(make_response(req, 481, to_tag=_tag()))
            return
        self._send(make_response(req, 200))
        if call.state == "ringing" and call.invite is not None:
            call.state = "refused"
            resp = make_response(call.invite, 487, to_tag=call.local_tag)
            self._respond(call, resp)
            # §17.2.1 timer G until the ACK, then forgotten even if the ACK never comes.
            call.retransmit = self._retransmit(
                lambda: resp if call.state == "refused" else None,
                T1,
                64 * T1,
                on_give_up=lambda: self._forget(call),
            )
            self._listener.ended(call.call_id, "cancelled")

    def _on_reinvite(self, call: _Call, req: Request) -> None:
        if call.invite is not None and req.cseq[0] == call.invite.cseq[0] and call.incoming:
            if call.last_response is not None:  # the first INVITE again
                self._send(call.last_response)
            return
        media = choose_media(req.body) if req.body else None
        if req.body and media is None:
            self._send(make_response(req, 488))
            return
        if media is not None:
            # §14.2 / RFC 3264 §8: same session id, version up only when our SDP changes.
            new_sdp = self._sdp(call, [media], bump=False)
            if new_sdp != call.local_sdp:
                call.sdp_version += 1
                call.local_sdp = self._sdp(call, [media], bump=False)
        ok = make_response(
            req,
            200,
            headers=[*self._contact(), ("Content-Type", "application/sdp")],
            body=call.local_sdp,
        )
        self._send(ok)
        if media is not None:
            self._listener.answered(call.call_id, media)

    def _sdp(self, call: _Call, media: list[CallMedia] | None, *, bump: bool = False) -> bytes:
        """Our SDP: an answer naming the chosen format, or (``media`` None) an offer of every
        format we accept (RFC 3264 §5, §6)."""
        if bump:
            call.sdp_version += 1
        if media:
            m = media[0]
            formats = [(m.payload_type, m.codec)]
            dtmf = m.dtmf_pt
            direction = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(
                m.direction, m.direction
            )
        else:
            formats = []
            for name in PREFERRED:
                info = get_codec(name, 8000)
                if info is not None and info.static_payload_type is not None:
                    formats.append((info.static_payload_type, info))
            dtmf = 101
            direction = "sendrecv"
        pts = " ".join(str(pt) for pt, _ in formats) + (f" {dtmf}" if dtmf is not None else "")
        lines = [
            "v=0",
            f"o=- {call.sdp_session} {call.sdp_version} IN IP4 {self._host}",
            "s=Switchboard browser phone",
            f"c=IN IP4 {self._host}",
            "t=0 0",
            f"m=audio {call.rtp_port} RTP/AVP {pts}",
        ]
        for pt, info in formats:
            lines.append(f"a=rtpmap:{pt} {info.name}/{info.clock_rate}")
        if dtmf is not None:
            lines += [f"a=rtpmap:{dtmf} telephone-event/8000", f"a=fmtp:{dtmf} 0-15"]
        lines += ["a=ptime:20", f"a={direction}"]
        return ("\r\n".join(lines) + "\r\n").encode()

    # -- ending ---------------------------------------------------------------------------------

    def hangup(self, call_id: str) -> None:
        """End the call however far it got: BYE when up, CANCEL while ringing out, 603 while
        ringing in."""
        call = self._calls.get(call_id)
        if call is None or call.state in ("ended", "refused", "cancelling"):
            return  # over, or being ended already
        if call.state == "answering":
            call.bye_after_ack = True  # §15: no BYE before the ACK of our 2xx
            return
        if call.incoming and call.state == "ringing":
            self.reject(call_id, 603)
            return
        if not call.incoming and call.state == "ringing":
            self._cancel_outgoing(call)
            return
        self._send_bye(call)
        self._end(call, "hangup")

    def _send_bye(self, call: _Call) -> None:
        call.local_cseq = max(call.local_cseq, 0) + 1
        headers = self._dialog_headers(call, "BYE", _branch())
        bye = Request("BYE", call.remote_target, headers)
        self._send(bye)
        retry = self._retransmit(
            lambda: bye if call.call_id in self._bye_pending else None,
            T1,
            64 * T1,
            on_give_up=lambda: self._drop_bye(call.call_id),
        )
        self._bye_pending[call.call_id] = retry

    def _drop_bye(self, call_id: str) -> None:
        self._bye_pending.pop(call_id, None)

    def _dialog_headers(self, call: _Call, method: str, branch: str) -> list[tuple[str, str]]:
        """Headers of a request inside the dialog (§12.2.1.1)."""
        if call.invite is None:
            raise RuntimeError("no dialog")
        if call.incoming:
            local = call.invite.get("To") or ""
            remote = call.invite.get("From") or ""
            local = f"{local};tag={call.local_tag}" if ";tag=" not in local else local
        else:
            local = call.invite.get("From") or ""
            remote = f"{call.invite.get('To') or ''};tag={call.remote_tag}"
        headers = [
            ("Via", self._via(branch)),
            ("Max-Forwards", "70"),
            ("From", local),
            ("To", remote),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.local_cseq} {method}"),
        ]
        # §12.2.1.1: the route set (§12.1.1: a UAS keeps the Record-Route order; a UAC
        # reversed it when the dialog was made).
        headers += [("Route", r) for r in call.route]
        headers.append(("User-Agent", self._user_agent))
        return headers

    def _end(self, call: _Call, reason: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        if call.retransmit is not None:
            call.retransmit.cancel()
            call.retransmit = None
        self._listener.ended(call.call_id, reason)
        self._forget(call)

    def _forget(self, call: _Call) -> None:
        call.state = "ended"
        if call.retransmit is not None:
            call.retransmit.cancel()
        # Keep the finished call a little to answer retransmissions, then drop it.
        asyncio.get_running_loop().call_later(
            32 * T1, lambda: self._calls.pop(call.call_id, None) if call.state == "ended" else None
        )

    # -- outgoing calls -------------------------------------------------------------------------

    def dial(self, number: str, rtp_port: int) -> str | None:
        """Call ``number`` (an extension, a queue or an outside number, as a desk phone
        would dial it); returns the call id, None when a call is already in progress."""
        if self._transport is None or any(c.state != "ended" for c in self._calls.values()):
            return None
        call = _Call(secrets.token_hex(10) + "@" + self._host, False, _tag())
        call.rtp_port = rtp_port
        call.remote_target = f"sip:{number}@{self._server[0]}:{self._server[1]}"
        self._calls[call.call_id] = call
        self._send_invite(call, None)
        return call.call_id

    def _send_invite(self, call: _Call, authorization: tuple[str, str] | None) -> None:
        call.local_cseq += 1
        call.branch = _branch()
        if not call.local_sdp:
            call.local_sdp = self._sdp(call, None)
        display = f'"{self._display}" ' if self._display else ""
        headers = [
            ("Via", self._via(call.branch)),
            ("Max-Forwards", "70"),
            ("From", f"{display}<{self.aor}>;tag={call.local_tag}"),
            ("To", f"<{call.remote_target}>"),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.local_cseq} INVITE"),
            *self._contact(),
            ("Content-Type", "application/sdp"),
        ]
        if authorization is not None:
            headers.append(authorization)
        invite = Request("INVITE", call.remote_target, headers, call.local_sdp)
        call.invite = invite
        self._send(invite)
        branch = call.branch
        call.retransmit = self._retransmit(  # §17.1.1.2 timer A until a response
            lambda: (
                invite
                if call.branch == branch and call.state == "ringing" and not call.provisional
                else None
            ),
            T1,
            64 * T1,  # timer B
            on_give_up=lambda: self._end(call, "failed 408"),
            cap=None,  # INVITE: doubling without the T2 cap
        )

    def _on_invite_response(self, call: _Call, resp: Response) -> None:
        if resp.top_via.params.get("branch") != call.branch:
            if 200 <= resp.status < 300 and call.state == "up":
                self._ack(call, resp)  # a retransmitted 2xx (§13.2.2.4)
            return
        if call.retransmit is not None:
            call.retransmit.cancel()
            call.retransmit = None
        if call.state == "ended":
            if 200 <= resp.status < 300:  # answered after we gave up: ACK, then BYE
                call.remote_tag = resp.to.params.get("tag") or ""
                if resp.contacts:
                    call.remote_target = str(resp.contacts[0].uri)
                call.route = list(reversed(_all(resp, "Record-Route")))
                self._ack(call, resp)
                self._send_bye(call)
            return
        if resp.status < 200:
            call.provisional = True
            if resp.status > 100:
                self._listener.progress(call.call_id, resp.status)
            return
        if resp.status >= 300:
            self._ack_failure(call, resp)
            if resp.status in (401, 407) and not call.auth_tried and call.state == "ringing":
                call.auth_tried = True
                auth = self._answer_challenge(resp, "INVITE", call.remote_target)
                if auth is not None:
                    self._send_invite(call, auth)
                    return
            self._end(call, "cancelled" if resp.status == 487 else f"failed {resp.status}")
            return
        # 2xx: the dialog (§12.1.2).
        first = call.state != "up"
        call.remote_tag = resp.to.params.get("tag") or ""
        contacts = resp.contacts
        if contacts:
            call.remote_target = str(contacts[0].uri)
        call.route = list(reversed(_all(resp, "Record-Route")))
        self._ack(call, resp)
        if first:
            if call.state == "cancelling":  # answered as we cancelled: hang up (§9.1)
                call.state = "up"
                self._send_bye(call)
                self._end(call, "hangup")
                return
            call.state = "up"
            media = choose_media(resp.body)
            if media is None:
                self._send_bye(call)
                self._end(call, "failed 488")
                return
            self._listener.answered(call.call_id, media)

    def _ack(self, call: _Call, resp: Response) -> None:
        """ACK of a 2xx: a new transaction, sent to the remote target (§13.2.2.4)."""
        if call.invite is None:
            return
        headers = self._dialog_headers(call, "ACK", _branch())
        headers = [(k, f"{call.invite.cseq[0]} ACK" if k == "CSeq" else v) for k, v in headers]
        self._send(Request("ACK", call.remote_target, headers))

    def _ack_failure(self, call: _Call, resp: Response) -> None:
        """ACK of a non-2xx final response: same branch as the INVITE (§17.1.1.3)."""
        if call.invite is None:
            return
        headers = [
            ("Via", self._via(call.branch)),
            ("Max-Forwards", "70"),
            ("From", call.invite.get("From") or ""),
            ("To", resp.get("To") or ""),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.invite.cseq[0]} ACK"),
        ]
        self._send(Request("ACK", call.invite.uri, headers))

    def _cancel_outgoing(self, call: _Call) -> None:
        """CANCEL the INVITE (§9.1): same Request-URI, Call-ID, From, To, CSeq number, Via."""
        if call.invite is None:
            return
        call.state = "cancelling"
        headers = [
            ("Via", self._via(call.branch)),
            ("Max-Forwards", "70"),
            ("From", call.invite.get("From") or ""),
            ("To", call.invite.get("To") or ""),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.invite.cseq[0]} CANCEL"),
        ]
        self._send(Request("CANCEL", call.invite.uri, headers))
        # If the 487 never comes, give up after 64*T1 as the INVITE transaction would.
        asyncio.get_running_loop().call_later(
            64 * T1, lambda: self._end(call, "cancelled") if call.state == "cancelling" else None
        )

    def send_info_dtmf(self, call_id: str, digit: str, duration_ms: int = 120) -> bool:
        """Send ``digit`` as SIP INFO (application/dtmf-relay), for a far end without
        telephone-event."""
        call = self._calls.get(call_id)
        if call is None or call.state != "up":
            return False
        call.local_cseq += 1
        headers = self._dialog_headers(call, "INFO", _branch())
        headers.append(("Content-Type", "application/dtmf-relay"))
        body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        self._send(Request("INFO", call.remote_target, headers, body))
        return True


def _all(msg: Request | Response, name: str) -> list[str]:
    """Every value of header ``name`` (comma lists of Record-Route split)."""
    out: list[str] = []
    for k, v in msg.headers:
        if k == name:
            if name == "Record-Route":
                out += [p.strip() for p in _split_routes(v)]
            else:
                out.append(v)
    return out


def _split_routes(value: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in value:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def choose_media(body: bytes) -> CallMedia | None:
    """The first audio stream of an SDP and the best format of it we can code (RFC 3264
    §6.1: the answerer picks from the offer, in our preference order)."""
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return None
    for m in sdp.media:
        if m.media != "audio" or m.port == 0:
            continue
        conn = sdp.connection_for(m)
        if conn is None:
            continue
        offered: dict[str, int] = {}
        dtmf_pt: int | None = None
        for fmt in m.formats:
            try:
                pt = int(fmt)
            except ValueError:
                continue
            got = m.format_of(pt)
            if got is None:
                continue
            name, rate = got
            if name.lower() == "telephone-event" and rate == 8000:
                dtmf_pt = pt if dtmf_pt is None else dtmf_pt
            elif name.upper() not in offered:
                offered[name.upper()] = pt
        for want in PREFERRED:
            if want in offered:
                info = get_codec(want, 8000)
                if info is None:
                    continue
                return CallMedia(
                    conn.host, m.port, info, offered[want], dtmf_pt, sdp.direction_for(m)
                )
    return None

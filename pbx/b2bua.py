"""The B2BUA: calls between extensions with media anchored on Switchboard.

Theory of operation
-------------------
Every call has two *sides*, one per party. A side is a SIP dialog towards that party plus the
party's own RTP leg in the media engine. The caller's side starts as an INVITE server
transaction; the callee's side is found by an :class:`_Outbound` attempt, which forks one
INVITE per registered contact (RFC 3261 §16.7 in spirit), CANCELs the losers and turns the
branch that answers into a side. The two legs are bridged as soon as the callee sends early
media or answers::

    caller ──INVITE──▶ [side a | Call | _Outbound] ──INVITE──▶ contact 1, contact 2 …
           ◀─180+SDP── (ringback tone on leg a)   ◀──180────
           ◀─200+SDP── (bridge a ⇄ b)             ◀──200──── (ACK; CANCEL the other branches)

Because media is anchored, call features are re-pairings of sides, not SIP gymnastics:

- *Hold* (RFC 3264 §8.4, RFC 6337): a side that offers ``sendonly``/``inactive`` is holding;
  the other side hears music on hold from its own leg until the holder resumes.
- *Blind transfer* (RFC 3515): the transferor's REFER starts an :class:`_Outbound` to the
  target for the other party, who hears ringback; when the target answers the transferor's
  side is replaced. NOTIFYs carry ``message/sipfrag`` progress.
- *Attended transfer* (RFC 3515 + RFC 3891): the REFER's Refer-To names, with ``Replaces``,
  the transferor's other dialog; the two remaining parties are bridged directly.

A call's life is the :class:`CallState` table below (an illegal transition raises, which the
stack logs without harming other calls). A call ends exactly once, in :meth:`Call._end`, which
releases the media it still owns and emits one :class:`CallDetail`; a transfer ends the
original call (cause ``transferred``) and continues in a new call linked to it.

RFC sections: 3261 §13 (INVITE), §9 (CANCEL), §15 (BYE), §12 (dialogs), §14 (re-INVITE);
3264 (offer/answer); 3311 (UPDATE); 3515 (REFER), 3891 (Replaces), 3420 (sipfrag).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol
from urllib.parse import unquote

import structlog

from media import PCMA, PCMU, Codec, MediaError, MediaInterface
from media.codecs import get_codec
from media.dtmf import DtmfReceived, parse_dtmf_info

from . import sdp
from .dialog import Dialog, Flow
from .events import CallEnded, EventBus, LegAnswered
from .events import DtmfReceived as CallDtmf
from .location import Contact
from .message import (
    ParseError,
    Request,
    Response,
    make_response,
    parse_name_addr,
    reason_phrase,
)
from .persistence import CallDetail
from .stack import SipStack, new_tag

__all__ = [
    "B2bua",
    "Call",
    "CallApplication",
    "CallDetail",
    "CallState",
    "ConferenceRoom",
    "ParseError",
]

log = structlog.get_logger("pbx.b2bua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
G722 = Codec(9, "G722", 8000)  # RFC 3551 §4.5.2: 16 kHz audio, 8000 RTP clock
# Offer order: wideband first when both sides can, G.711 for everyone else.
SUPPORTED_CODECS: tuple[Codec, ...] = (
    (G722, PCMU, PCMA) if get_codec("G722", 8000) is not None else (PCMU, PCMA)
)
MAX_FORWARDS = 5  # busy/no-answer forwarding hops per call
# Carries the digits a caller pressed in the IVR to the agent's phone.
IVR_KEYS_HEADER = "X-Switchboard-IVR-Keys"


class CallState(Enum):
    SETUP = "setup"  # INVITE accepted, media being allocated, branches not yet sent
    CALLING = "calling"  # INVITEs sent to the callee's contacts
    RINGING = "ringing"  # a branch sent a provisional; the caller hears ringback/early media
    ANSWERED = "answered"
    ENDED = "ended"


# The call state machine as a table: state → states it may move to.
_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    # SETUP → ANSWERED: calls Switchboard answers itself (conference rooms, feature codes).
    CallState.SETUP: frozenset({CallState.CALLING, CallState.ANSWERED, CallState.ENDED}),
    CallState.CALLING: frozenset({CallState.RINGING, CallState.ANSWERED, CallState.ENDED}),
    CallState.RINGING: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


class CallApplication(Protocol):
    """What drives a call Switchboard answered itself (the IVR): it hears the caller's
    digits and learns when the call is gone."""

    def on_dtmf(self, digit: str) -> None: ...

    def on_hangup(self) -> None: ...


@dataclass(slots=True)
class _Side:
    """One party's signalling and media state."""

    label: str  # "a" (who called) or "b" (who was called), for the call record
    ext: str
    leg_id: str
    flow: Flow
    dialog: Dialog | None = None
    codec: Codec | None = None
    dtmf_pt: int | None = None
    sdp_session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = 0
    last_local_sdp: bytes = b""
    info_queue: list[Request] = field(default_factory=list)
    info_busy: bool = False
    holding: bool = False  # this party put the other one on hold
    moh_player: Any = None  # the music-on-hold player on this side's leg, while held


@dataclass(slots=True)
class _Branch:
    """One forked INVITE to one contact of the callee."""

    contact: Contact
    flow: Flow
    request: Request
    key: str = ""
    provisional: bool = False
    final: int | None = None
    cancel_wanted: bool = False
    cancel_sent: bool = False
    dialog: Dialog | None = None


class _Outbound:
    """An INVITE forked to every contact of one extension, until one branch answers.

    The caller of this class gets ``on_ringing(status, early_media)`` for provisionals,
    ``on_answered(side)`` once, and ``on_failed(status, ring_timeout)`` when every branch
    failed or the ring timeout expired (status 480 and ``ring_timeout`` True then). The
    media leg is created here and belongs to the side on answer; on failure or
    :meth:`cancel` it is released.
    """

    def __init__(
        self,
        b2b: B2bua,
        *,
        leg_id: str,
        caller_ext: str,
        caller_display: str | None,
        callee: str,
        contacts: list[Contact],
        first_codec: Codec | None,
        ring_timeout: float,
        on_ringing: Callable[[int, bool], None],
        on_answered: Callable[[_Side], None],
        on_failed: Callable[[int, bool], None],
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.b2b = b2b
        self.extra_headers = extra_headers or []
        self.leg_id = leg_id
        self.caller_ext = caller_ext
        self.caller_display = caller_display
        self.callee = callee
        self.contacts = contacts
        self.first_codec = first_codec
        self.ring_timeout = ring_timeout
        self.on_ringing = on_ringing
        self.on_answered = on_answered
        self.on_failed = on_failed
        self.call_id = f"{secrets.token_hex(10)}@switchboard"
        self.from_tag = new_tag()
        self.branches: list[_Branch] = []
        self.winner: _Branch | None = None
        self.done = False  # answered, failed or cancelled
        self.early_media = False
        self.side: _Side | None = None
        self._ring_timer: asyncio.TimerHandle | None = None
        self._sdp_session_id = secrets.randbelow(2**31)
        self._answer: sdp.RemoteAnswer | None = None  # the callee's SDP answer, once seen

    async def start(self) -> bool:
        """Create the media leg and send the INVITEs; False if media is unavailable."""
        media = self.b2b.media
        try:
            # Placement hint for media workers: a call's legs ({call}-a, {call}-b...) together.
            leg = await media.create_leg(self.leg_id, near=f"{self.leg_id.rsplit('-', 1)[0]}-a")
        except (MediaError, OSError) as exc:
            log.warning("media_allocation_failed", error=str(exc))
            self.done = True
            return False
        if self.done:  # cancelled while binding
            media.close_leg(self.leg_id)
            return False
        stack = self.b2b.stack
        first = self.first_codec
        codecs = ([first] if first else []) + [
            c for c in SUPPORTED_CODECS if first is None or not c.same_format(first)
        ]
        for contact in self.contacts:
            flow = Flow(*stack.flow_to(contact.transport, contact.source, contact.uri))
            local_host = self.b2b.media_host or stack.host_for(flow.address[0])
            offer = sdp.build_offer(
                local_host,
                leg.local_port,
                codecs,
                dtmf_pt=101,
                session_id=self._sdp_session_id,
                version=0,
            ).serialize()
            self.branches.append(
                _Branch(contact=contact, flow=flow, request=self._invite(contact, flow, offer))
            )
        for branch in self.branches:
            branch.key = stack.send_request(
                branch.request,
                branch.flow.address,
                branch.flow.transport,
                on_response=functools.partial(self._on_response, branch),
                on_timeout=functools.partial(self._on_timeout, branch),
            )
        self._ring_timer = asyncio.get_running_loop().call_later(
            self.ring_timeout, self._on_ring_timeout
        )
        return True

    def _invite(self, contact: Contact, flow: Flow, offer: bytes) -> Request:
        stack = self.b2b.stack
        host = stack.host_for(flow.address[0])
        display = f'"{self.caller_display}" ' if self.caller_display else ""
        headers = [
            ("Via", stack.via_for(flow.transport, flow.address[0])),
            ("Max-Forwards", "70"),
            ("From", f"{display}<sip:{self.caller_ext}@{host}>;tag={self.from_tag}"),
            ("To", f"<sip:{self.callee}@{host}>"),
            ("Call-ID", self.call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", stack.contact_for(flow.transport, flow.address[0], self.caller_ext)),
            ("Allow", ALLOW),
            *self.extra_headers,
            ("Content-Type", "application/sdp"),
        ]
        return Request("INVITE", contact.uri, headers, offer)

    def _on_response(self, branch: _Branch, resp: Response) -> None:
        status = resp.status
        if status < 200:
            # Any provisional, 100 included, allows a CANCEL (RFC 3261 §9.1).
            branch.provisional = True
            if branch.cancel_wanted and not branch.cancel_sent:
                self._send_cancel(branch)
                return
            if status == 100 or self.done:
                return
            early = False
            if resp.body and resp.content_type == "application/sdp" and not self.early_media:
                early = self.early_media = self._apply_answer(resp.body)
            self.on_ringing(status, early)
            return
        if status < 300:
            self._on_answered(branch, resp)
            return
        if branch.final is None:
            branch.final = status
        self._check_all_failed()

    def _apply_answer(self, body: bytes) -> bool:
        try:
            ans = sdp.parse_answer(body, SUPPORTED_CODECS)
        except sdp.SdpError as exc:
            log.info("bad_answer_from_callee", error=str(exc))
            return False
        self._answer = ans
        self.b2b.media.set_remote(
            self.leg_id, ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
        )
        return True

    def _on_answered(self, branch: _Branch, resp: Response) -> None:
        if branch.dialog is None:
            branch.dialog = Dialog.as_uac(branch.request, resp, branch.flow)
        # Every 2xx (and its retransmissions) gets an ACK (RFC 3261 §13.2.2.4).
        self._send_ack(branch)
        if self.winner is branch:
            return
        if self.winner is not None or self.done:
            # Another branch won, or we gave up meanwhile: hang this one up (§13.2.2.4).
            self.b2b.send_bye(branch.dialog)
            return
        self.winner = branch
        branch.final = resp.status
        self.done = True
        self._cancel_ring_timer()
        answered = bool(resp.body) and self._apply_answer(resp.body)
        if not answered and not self.early_media:
            log.warning("answer_without_sdp", callee=self.callee)
        for other in self.branches:
            if other is not branch:
                self._cancel_branch(other)
        ans = self._answer
        self.side = _Side(
            label="b",
            ext=self.callee,
            leg_id=self.leg_id,
            flow=branch.flow,
            dialog=branch.dialog,
            codec=ans.codec if ans else None,
            dtmf_pt=ans.dtmf_payload_type if ans else None,
            sdp_session_id=self._sdp_session_id,
            last_local_sdp=branch.request.body,
        )
        self.on_answered(self.side)

    def _send_ack(self, branch: _Branch) -> None:
        assert branch.dialog is not None
        stack = self.b2b.stack
        ack = branch.dialog.create_request(
            "ACK",
            stack.via_for(branch.flow.transport, branch.flow.address[0]),
            cseq=branch.request.cseq[0],
        )
        stack.send_stateless(ack, branch.flow.address, branch.flow.transport)

    def _on_timeout(self, branch: _Branch) -> None:
        if branch.final is None:
            branch.final = 408
        self._check_all_failed()

    def _check_all_failed(self) -> None:
        if self.done or any(b.final is None for b in self.branches):
            return
        self._fail(_best_failure([b.final for b in self.branches if b.final is not None]), False)

    def _on_ring_timeout(self) -> None:
        self._ring_timer = None
        if not self.done:
            log.info("ring_timeout", callee=self.callee, seconds=self.ring_timeout)
            self._fail(480, True)

    def _fail(self, status: int, ring_timeout: bool) -> None:
        self.cancel()
        self.on_failed(status, ring_timeout)

    def cancel(self) -> None:
        """Give up: CANCEL every branch still ringing and release the leg."""
        if self.winner is not None:
            return
        self.done = True
        self._cancel_ring_timer()
        for branch in self.branches:
            self._cancel_branch(branch)
        self.b2b.media.close_leg(self.leg_id)

    def _cancel_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    def _cancel_branch(self, branch: _Branch) -> None:
        if branch.final is not None or branch.cancel_wanted:
            return
        branch.cancel_wanted = True
        # RFC 3261 §9.1: no CANCEL before a provisional response has arrived.
        if branch.provisional:
            self._send_cancel(branch)

    def _send_cancel(self, branch: _Branch) -> None:
        branch.cancel_sent = True
        inv = branch.request
        headers = [
            ("Via", inv.get_list("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", inv.get("From") or ""),
            ("To", inv.get("To") or ""),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq[0]} CANCEL"),
        ]
        cancel = Request("CANCEL", inv.uri, headers)
        self.b2b.stack.send_request(
            cancel, branch.flow.address, branch.flow.transport, on_response=lambda r: None
        )


class Call:
    """One call between two parties (extensions)."""

    def __init__(
        self,
        b2b: B2bua,
        a: _Side,
        *,
        caller: str,
        callee: str,
        call_id: str,
        invite: Request | None = None,
        linked_id: str | None = None,
        record_id: str | None = None,
    ) -> None:
        self.b2b = b2b
        self.id = record_id or secrets.token_hex(8)
        self.a = a
        self.b: _Side | None = None
        self.invite = invite
        self.call_id = call_id
        self.caller = caller
        self.callee = callee
        self.linked_id = linked_id
        self.state = CallState.SETUP
        self.start = datetime.now(UTC)
        self.answered_at: datetime | None = None
        self.a_tag = new_tag()
        self.a_answer_sdp = b""  # the answer we gave the caller (same in 18x and 200)
        self.a_final_sent = False
        self.ringback = False
        self.outbound: _Outbound | None = None  # the callee being rung
        self.transfer: _Transfer | None = None  # a transfer in progress
        self.room: ConferenceRoom | None = None  # the conference room this caller is in
        self.app: CallApplication | None = None  # an application (IVR) driving this call
        self.ivr_keys = ""  # digits pressed while an application drove the call (key trail)
        # What takes the caller over when the callee hangs up (a post-call survey): called
        # with the new call that continues the caller's leg and this (ended) call.
        self.after_callee: Callable[[Call, Call], CallApplication] | None = None
        self.after_callee_label = ""
        # Offers of this call to other phones (queue agents), by the offerer's key.
        self.offers: dict[str, _Outbound] = {}
        # Called once when the call ends, with who ended it ("caller", "callee", "system")
        # and the cause ("normal_clearing", "transferred", ...).
        self.on_end: list[Callable[[Call, str, str], None]] = []
        self.forwards = 0  # how many times busy/no-answer forwarding moved this call
        self.tried: set[str] = {callee}
        self._relayed_provisional: set[int] = set()
        self.log = log.bind(call=self.id, caller=caller, callee=callee)

    # -- state -------------------------------------------------------------------------

    def _move(self, new: CallState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal call transition {self.state.name} -> {new.name}")
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def sides(self) -> list[_Side]:
        return [self.a] if self.b is None else [self.a, self.b]

    def other(self, side: _Side) -> _Side | None:
        return self.b if side is self.a else self.a

    # -- setup of a call from an INVITE ------------------------------------------------

    async def _open_caller_media(self) -> bool:
        """Allocate the caller's RTP leg and answer the caller's SDP offer (RFC 3264 §6).

        On failure the caller gets 503 or 488 and the call ends; returns False then.
        """
        assert self.invite is not None
        media = self.b2b.media
        try:
            leg = await media.create_leg(self.a.leg_id, self._media_host(self.a.flow))
        except (MediaError, OSError) as exc:
            self.log.warning("media_allocation_failed", error=str(exc))
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return False
        if self.ended:  # cancelled while we were binding sockets: _end ran before the leg
            media.close_leg(self.a.leg_id)
            return False
        try:
            neg = sdp.negotiate_answer(
                self.invite.body,
                host=leg.local_host,
                port=leg.local_port,
                supported=SUPPORTED_CODECS,
                session_id=self.a.sdp_session_id,
                version=self.a.sdp_version,
            )
        except sdp.SdpError as exc:
            self.log.info("offer_rejected", error=str(exc))
            self._fail_a(488, None, "FAILED", "incompatible_media", "system")
            return False
        self.a.codec = neg.codec
        self.a.dtmf_pt = neg.dtmf_payload_type
        self.a_answer_sdp = self.a.last_local_sdp = neg.answer.serialize()
        media.set_remote(
            self.a.leg_id, neg.remote[0], neg.remote[1], neg.codec, neg.dtmf_payload_type
        )
        self.b2b.listen_for_dtmf(self.a)
        return True

    async def setup(self, contacts: list[Contact], ring_timeout: float) -> None:
        """Allocate media, answer the caller's offer, ring every contact of the callee."""
        assert self.invite is not None
        if not await self._open_caller_media():
            return
        frm = self.invite.from_
        self.outbound = _Outbound(
            self.b2b,
            leg_id=f"{self.id}-b",
            caller_ext=self.caller,
            caller_display=frm.display,
            callee=self.callee,
            contacts=contacts,
            first_codec=self.a.codec,
            ring_timeout=ring_timeout,
            on_ringing=self._on_callee_ringing,
            on_answered=self._on_callee_answered,
            on_failed=self._on_callee_failed,
        )
        self.b2b._by_leg[self.outbound.leg_id] = self
        if not await self.outbound.start():
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return
        if self.ended:
            self.outbound.cancel()
            return
        self._move(CallState.CALLING)
        self.log.debug("call_forked", branches=len(self.outbound.branches))

    async def answer_locally(self) -> bool:
        """Answer the caller ourselves (200 + SDP): conference rooms and feature codes."""
        assert self.invite is not None
        if not await self._open_caller_media():
            return False
        self.a.dialog = Dialog.as_uas(self.invite, self.a_tag, self.a.flow)
        self.a_final_sent = True
        self.b2b.stack.send_response(
            make_response(
                self.invite,
                200,
                to_tag=self.a_tag,
                headers=[
                    *self._contact_headers(self.a, self.callee),
                    ("Content-Type", "application/sdp"),
                ],
                body=self.a_answer_sdp,
            )
        )
        self._move(CallState.ANSWERED)
        self.answered_at = datetime.now(UTC)
        self.b2b._register_side(self, self.a)
        return True

    def _media_host(self, flow: Flow) -> str:
        return self.b2b.media_host or self.b2b.stack.host_for(flow.address[0])

    def _on_callee_ringing(self, status: int, early_media: bool) -> None:
        if self.ended or self.a_final_sent:
            return
        if self.state is CallState.CALLING:
            self._move(CallState.RINGING)
        assert self.outbound is not None
        media = self.b2b.media
        if early_media:
            # The callee sends early media (RFC 3261 §13.2.1, RFC 3960): let the caller hear it.
            media.stop_tone(self.a.leg_id)
            self.ringback = False
            media.bridge(self.a.leg_id, self.outbound.leg_id)
            self._send_a_provisional(183)
            return
        if not self.outbound.early_media and not self.ringback:
            # No early media from the callee: we play ringback ourselves (in-band, so every
            # phone hears it) and tell the caller with 180 + SDP.
            self.ringback = True
            media.start_tone(self.a.leg_id, "ringback")
        self._send_a_provisional(status if status in (180, 183) else 180)

    def _send_a_provisional(self, status: int) -> None:
        if status in self._relayed_provisional or self.a_final_sent or self.invite is None:
            return
        self._relayed_provisional.add(status)
        resp = make_response(
            self.invite,
            status,
            to_tag=self.a_tag,
            headers=[
                *self._contact_headers(self.a, self.callee),
                ("Content-Type", "application/sdp"),
            ],
            body=self.a_answer_sdp,
        )
        self.b2b.stack.send_response(resp)

    def _contact_headers(self, side: _Side, user: str | None) -> list[tuple[str, str]]:
        stack = self.b2b.stack
        flow = side.flow
        return [
            ("Contact", stack.contact_for(flow.transport, flow.address[0], user)),
            ("Allow", ALLOW),
        ]

    def _on_callee_answered(self, b: _Side) -> None:
        assert self.invite is not None and b.dialog is not None
        if self.ended:
            self.b2b.send_bye(b.dialog)
            self.b2b.media.close_leg(b.leg_id)
            return
        self._connect_callee(b)

    def _connect_callee(self, b: _Side) -> None:
        assert self.invite is not None and b.dialog is not None
        self.b = b
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        # Answer the caller with the same SDP the provisional carried (RFC 3264 §4).
        ok = make_response(
            self.invite,
            200,
            to_tag=self.a_tag,
            headers=[
                *self._contact_headers(self.a, self.callee),
                ("Content-Type", "application/sdp"),
            ],
            body=self.a_answer_sdp,
        )
        self.a.dialog = Dialog.as_uas(self.invite, self.a_tag, self.a.flow)
        self.a_final_sent = True
        self.b2b.stack.send_response(ok)
        self._move(CallState.ANSWERED)
        self.answered_at = datetime.now(UTC)
        self.b2b._register_side(self, self.a)
        self.b2b._register_side(self, b)
        self.log.debug("call_answered", contact=b.dialog.remote_target)

    def _on_callee_failed(self, status: int, ring_timeout: bool) -> None:
        if self.ended:
            return
        reason = (
            "busy" if status in (486, 600, 603) else "no_answer" if status in (408, 480) else None
        )
        if reason is not None and self._forward(reason):
            return
        if status in (486, 600, 603):
            self._fail_a(486 if status == 486 else status, None, "BUSY", "user_busy", "callee")
        elif status in (408, 480):
            side = "system" if ring_timeout else "callee"
            self._fail_a(480, None, "NO ANSWER", "no_answer", side)
        else:
            self._fail_a(status, None, "FAILED", f"sip_{status}", "callee")

    def _forward(self, reason: str) -> bool:
        """Call forwarding on busy / no answer: ring the target instead. False if none."""
        target = self.b2b.forward_of(self.callee, reason)
        if target is None or self.forwards >= MAX_FORWARDS or target in self.tried:
            return False
        contacts = self.b2b.contacts_of(target)
        if not contacts:
            return False
        assert self.invite is not None
        self.log.info("call_forwarded", reason=reason, frm=self.callee, to=target)
        self.forwards += 1
        self.tried.add(target)
        self.callee = target
        self.outbound = _Outbound(
            self.b2b,
            leg_id=f"{self.id}-b{self.forwards}",
            caller_ext=self.caller,
            caller_display=self.invite.from_.display,
            callee=target,
            contacts=contacts,
            first_codec=self.a.codec,
            ring_timeout=self.b2b.ring_timeout_of(target),
            on_ringing=self._on_callee_ringing,
            on_answered=self._on_callee_answered,
            on_failed=self._on_callee_failed,
        )
        self.b2b._by_leg[self.outbound.leg_id] = self
        outbound = self.outbound

        async def start() -> None:
            if not await outbound.start() and not self.ended:
                self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")

        task = asyncio.get_running_loop().create_task(start())
        task.add_done_callback(_log_task_error)
        return True

    def _trail_headers(self) -> list[tuple[str, str]]:
        """The IVR key trail travels to the phone that takes the call (RFC 3261 §8.1.1.10
        allows extension headers; phones and CTI tools show or log it)."""
        return [(IVR_KEYS_HEADER, self.ivr_keys)] if self.ivr_keys else []

    def connect_to(self, ext: str, on_failed: Callable[[int], None]) -> bool:
        """Ring ``ext`` for a call we answered ourselves (an IVR sending the caller to an
        extension); the caller hears ringback, then is bridged to whoever answers.
        ``on_failed(status)`` is called if nobody does. False if the extension has no phone."""
        contacts = self.b2b.contacts_of(ext)
        if not contacts or self.ended or self.b is not None:
            return False
        media = self.b2b.media
        media.start_tone(self.a.leg_id, "ringback")
        self.callee = ext
        self.log.info("call_connecting", to=ext)
        self.outbound = _Outbound(
            self.b2b,
            leg_id=f"{self.id}-b{self.forwards}x",
            caller_ext=self.caller,
            caller_display=None,
            callee=ext,
            contacts=contacts,
            first_codec=self.a.codec,
            ring_timeout=self.b2b.ring_timeout_of(ext),
            on_ringing=lambda status, early: None,
            on_answered=self._connected,
            on_failed=lambda status, timed_out: on_failed(status),
            extra_headers=self._trail_headers(),
        )
        self.b2b._by_leg[self.outbound.leg_id] = self
        outbound = self.outbound

        async def start() -> None:
            if not await outbound.start() and not self.ended:
                on_failed(503)

        task = asyncio.get_running_loop().create_task(start())
        task.add_done_callback(_log_task_error)
        return True

    def _connected(self, b: _Side) -> None:
        """The extension rung by :meth:`connect_to` answered."""
        assert b.dialog is not None
        if self.ended:
            self.b2b.send_bye(b.dialog)
            self.b2b.media.close_leg(b.leg_id)
            return
        self.b = b
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        self.b2b._register_side(self, b)
        self.app = None  # the application's part of the call is over
        self.log.info("call_connected", to=b.ext)

    def hang_up_caller(self, cause: str = "normal_clearing") -> None:
        """End a call we answered ourselves from our side (an IVR's hangup node)."""
        if self.ended:
            return
        if self.outbound is not None and not self.outbound.done:
            self.outbound.cancel()
        for s in self.sides():
            if s.dialog is not None:
                self.b2b.send_bye(s.dialog)
        self._end("ANSWERED", cause, "system", 200)

    def offer(
        self,
        key: str,
        ext: str,
        *,
        ring_timeout: float,
        on_answered: Callable[[_Side], None],
        on_failed: Callable[[int], None],
        display: str | None = None,
    ) -> bool:
        """Ring ``ext`` with this (answered) call without connecting it yet: a queue offering
        the caller to an agent. Several offers may ring at once (ring all); ``on_answered``
        gets the agent's side (connect it with :meth:`accept`, or hang it up), ``on_failed``
        the final status. False if ``ext`` has no phone."""
        contacts = self.b2b.contacts_of(ext)
        if not contacts or self.ended or key in self.offers:
            return False
        self.forwards += 1
        outbound = _Outbound(
            self.b2b,
            leg_id=f"{self.id}-o{self.forwards}",
            caller_ext=self.caller,
            caller_display=display,
            callee=ext,
            contacts=contacts,
            first_codec=self.a.codec,
            ring_timeout=ring_timeout,
            on_ringing=lambda status, early: None,
            on_answered=lambda side: self._offer_answered(key, side, on_answered),
            on_failed=lambda status, timed_out: self._offer_failed(key, status, on_failed),
            extra_headers=self._trail_headers(),
        )
        self.offers[key] = outbound
        self.b2b._by_leg[outbound.leg_id] = self

        async def start() -> None:
            if not await outbound.start():
                self._offer_failed(key, 503, on_failed)

        task = asyncio.get_running_loop().create_task(start())
        task.add_done_callback(_log_task_error)
        return True

    def _offer_answered(self, key: str, side: _Side, on_answered: Callable[[_Side], None]) -> None:
        self.offers.pop(key, None)
        if self.ended or self.b is not None:
            # The caller left (or someone else answered) meanwhile: release this phone.
            assert side.dialog is not None
            self.b2b.send_bye(side.dialog)
            self.b2b.media.close_leg(side.leg_id)
            return
        on_answered(side)

    def _offer_failed(self, key: str, status: int, on_failed: Callable[[int], None]) -> None:
        outbound = self.offers.pop(key, None)
        if outbound is not None:
            self.b2b._by_leg.pop(outbound.leg_id, None)
            on_failed(status)

    def cancel_offer(self, key: str) -> None:
        """Stop ringing the phone offered under ``key`` (no callback follows)."""
        outbound = self.offers.pop(key, None)
        if outbound is not None:
            outbound.cancel()
            self.b2b._by_leg.pop(outbound.leg_id, None)

    def accept(self, b: _Side) -> None:
        """Connect the caller to ``b`` (an answered offer); music or tones on the caller's
        leg stop and the application that held the call lets go."""
        assert b.dialog is not None
        self.b = b
        b.label = "b"
        self.callee = b.ext
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        if self.a.moh_player is not None:
            self.b2b.stop_music_on_hold(self.a.moh_player)
            self.a.moh_player = None
        if self.a.leg_id in media:
            media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        self.b2b._register_side(self, b)
        self.app = None
        for key in list(self.offers):
            self.cancel_offer(key)
        self.log.info("call_connected", to=b.ext)

    def take_over(self, new: _Side, retire: Call) -> None:
        """Intercept: ``new`` (a supervisor's side, answered in the call ``retire``) replaces
        the callee, who is hung up; ``retire`` disappears without a call record."""
        b2b = self.b2b
        media = b2b.media
        b2b._absorb(retire)
        old = self.b
        if old is not None:
            if old.dialog is not None:
                b2b.send_bye(old.dialog)
            b2b._unregister_side(old)
            media.close_leg(old.leg_id)
        new.label = "b"
        self.b = new
        self.callee = new.ext
        bridge_id = media.bridge(self.a.leg_id, new.leg_id)
        for listener, speaker in ((self.a.leg_id, new.leg_id), (new.leg_id, self.a.leg_id)):
            media.set_hears(bridge_id, listener, speaker, True)
        b2b._register_side(self, new)
        self.log.info("call_taken_over", by=new.ext, released=old.ext if old else None)

    def _hand_caller_over(self, start: Callable[[Call, Call], CallApplication]) -> None:
        """The callee hung up and the caller goes on to an application (a post-call
        survey): this call's record ends as the callee's hang-up, and the caller's leg
        continues in a new, linked call that the application drives."""
        keep = self.a
        if keep.moh_player is not None:
            self.b2b.stop_music_on_hold(keep.moh_player)
            keep.moh_player = None
        keep.holding = False
        self._end("ANSWERED", "normal_clearing", "callee", 200, keep_media=(keep,))
        self.b2b.continue_with_application(
            keep,
            linked_id=self.linked_id or self.id,
            callee=self.after_callee_label or self.callee,
            start=lambda call: start(call, self),
        )

    def picked_up(self, picker: Call) -> bool:
        """Call pickup: ``picker`` (a call Switchboard answered) takes this ringing call."""
        if self.ended or self.state is CallState.ANSWERED or self.invite is None:
            return False
        if self.outbound is not None:
            self.outbound.cancel()
        side = picker.a
        side.label = "b"
        self.b2b._absorb(picker)
        self.log.info("call_picked_up", by=side.ext, ringing=self.callee)
        self.callee = side.ext
        self._connect_callee(side)
        return True

    # -- the caller before answer ------------------------------------------------------

    def _fail_a(
        self, status: int, reason: str | None, disposition: str, cause: str, side: str
    ) -> None:
        """End an unanswered call with a final error response to the caller."""
        if self.ended:
            return
        if self.outbound is not None:
            self.outbound.cancel()
        if not self.a_final_sent and self.invite is not None:
            self.a_final_sent = True
            self.b2b.stack.send_response(
                make_response(self.invite, status, reason, to_tag=self.a_tag)
            )
        self._end(disposition, cause, side, status)

    def on_cancel(self) -> None:
        """The caller sent CANCEL (RFC 3261 §9.2): 487 to the INVITE, CANCEL every branch."""
        if self.state is CallState.ANSWERED or self.ended:
            return
        self.log.info("caller_cancelled")
        self._fail_a(487, None, "CANCELLED", "originator_cancel", "caller")

    # -- in-dialog requests --------------------------------------------------------------

    def on_request(self, me: _Side, req: Request, source: tuple[str, int], transport: str) -> None:
        """An in-dialog request from one of the parties."""
        dialog = me.dialog
        assert dialog is not None
        stack = self.b2b.stack
        if req.method == "ACK":
            if req.body and req.content_type == "application/sdp":
                self._apply_answer_to(me, req.body)
            return
        if not dialog.check_remote_cseq(req):
            stack.send_response(make_response(req, 500, "CSeq Out Of Order"))
            return
        other = self.other(me)
        method = req.method
        if method == "BYE":
            stack.send_response(make_response(req, 200))
            if self.transfer is not None and self.transfer.transferor is me:
                # RFC 5589: the transferor leaves once the transfer is under way.
                self.transfer.transferor_left = True
                self.b2b._unregister_side(me)
                self.b2b.media.close_leg(me.leg_id)
                return
            if self.transfer is not None:
                self.transfer.abort()
            if me is self.b and self.after_callee is not None and self.a.dialog is not None:
                self._hand_caller_over(self.after_callee)
                return
            if self.outbound is not None and not self.outbound.done:
                self.outbound.cancel()  # an application was ringing an extension for us
            if other is not None and other.dialog is not None:
                self.b2b.send_bye(other.dialog)
            self._end("ANSWERED", "normal_clearing", "caller" if me.label == "a" else "callee", 200)
            return
        if method in ("INVITE", "UPDATE"):
            self._on_reoffer(me, req)
            return
        if method == "REFER":
            self._on_refer(me, req)
            return
        if method == "INFO":
            stack.send_response(make_response(req, 200))
            info = parse_dtmf_info(req.get("Content-Type") or "", req.body)
            if info is not None:
                self.b2b.on_dtmf(
                    DtmfReceived(
                        me.leg_id, info[0], "info", info[1], asyncio.get_running_loop().time()
                    )
                )
            if other is not None and other.dialog is not None and req.body:
                other.info_queue.append(req)
                self._pump_info(other)
            return
        if method == "OPTIONS":
            stack.send_response(make_response(req, 200, headers=[("Allow", ALLOW)]))
            return
        if method == "NOTIFY":
            stack.send_response(make_response(req, 200))
            return
        stack.send_response(make_response(req, 501, headers=[("Allow", ALLOW)]))

    def _on_reoffer(self, me: _Side, req: Request) -> None:
        """re-INVITE or UPDATE (RFC 3261 §14, RFC 3311): a new offer for this side's leg only.

        Media is anchored, so a session refresh, codec change or hold on one side never needs
        the other party: we answer it ourselves and re-point that side's RTP leg. A side that
        goes ``sendonly``/``inactive`` is holding: the other party hears music on hold.
        """
        stack = self.b2b.stack
        assert me.dialog is not None
        me.dialog.update_target(req)
        leg = self.b2b.media.leg_address(me.leg_id)
        headers = [
            ("Contact", stack.contact_for(me.flow.transport, me.flow.address[0])),
            ("Allow", ALLOW),
        ]
        if req.body and req.content_type == "application/sdp":
            neg = None
            error = "no usable media"
            # Keep the current codec when the peer still offers it; else pick again.
            for supported in ((me.codec,) if me.codec else (), SUPPORTED_CODECS):
                if not supported:
                    continue
                try:
                    neg = sdp.negotiate_answer(
                        req.body,
                        host=self._media_host(me.flow),
                        port=leg.local_port,
                        supported=supported,
                        session_id=me.sdp_session_id,
                        version=me.sdp_version,
                    )
                    break
                except sdp.SdpError as exc:
                    error = str(exc)
            if neg is None:
                stack.send_response(
                    make_response(req, 488, headers=[("Warning", f'399 switchboard "{error}"')])
                )
                return
            body = neg.answer.serialize()
            # RFC 3264 §8: bump the o= version only when our description changes.
            if body != me.last_local_sdp:
                me.sdp_version += 1
                neg.answer.origin.session_version = me.sdp_version
                body = neg.answer.serialize()
            me.last_local_sdp = body
            me.codec = neg.codec
            me.dtmf_pt = neg.dtmf_payload_type
            self.b2b.media.set_remote(
                me.leg_id,
                neg.remote[0],
                neg.remote[1],
                neg.codec,
                neg.dtmf_payload_type,
                direction=neg.direction,
            )
            holding = neg.direction in ("recvonly", "inactive") or neg.remote[0] in (
                "0.0.0.0",
                "::",
            )
            self._set_holding(me, holding)
        else:
            body = me.last_local_sdp  # offerless re-INVITE: our offer goes in the 2xx
        headers.append(("Content-Type", "application/sdp"))
        stack.send_response(
            make_response(req, 200, to_tag=me.dialog.local_tag, headers=headers, body=body)
        )

    def _set_holding(self, me: _Side, holding: bool) -> None:
        if holding == me.holding:
            return
        me.holding = holding
        other = self.other(me)
        self.log.info("call_hold" if holding else "call_resume", by=me.ext)
        if other is None:
            return
        if holding:
            other.moh_player = self.b2b.start_music_on_hold(other.leg_id)
        elif other.moh_player is not None:
            self.b2b.stop_music_on_hold(other.moh_player)
            other.moh_player = None

    def _apply_answer_to(self, me: _Side, body: bytes) -> None:
        try:
            ans = sdp.parse_answer(body, SUPPORTED_CODECS)
        except sdp.SdpError:
            return
        me.codec = ans.codec
        me.dtmf_pt = ans.dtmf_payload_type
        self.b2b.media.set_remote(
            me.leg_id, ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
        )

    def _pump_info(self, side: _Side) -> None:
        """Relay INFO in order, one at a time (PEERS.md: reordered INFOs lose digits)."""
        if side.info_busy or not side.info_queue or side.dialog is None or self.ended:
            return
        src = side.info_queue.pop(0)
        side.info_busy = True
        stack = self.b2b.stack
        req = side.dialog.create_request(
            "INFO",
            stack.via_for(side.flow.transport, side.flow.address[0]),
            body=src.body,
            content_type=src.get("Content-Type"),
        )

        def done(_resp: Response | None = None) -> None:
            if _resp is not None and _resp.status < 200:
                return
            side.info_busy = False
            self._pump_info(side)

        stack.send_request(
            req, side.flow.address, side.flow.transport, on_response=done, on_timeout=done
        )

    # -- transfers (RFC 3515, RFC 3891) -------------------------------------------------

    def _on_refer(self, me: _Side, req: Request) -> None:
        stack = self.b2b.stack
        refer_to = req.get_all("Refer-To")
        if len(refer_to) != 1:  # RFC 3515 §2.4.1: exactly one Refer-To
            stack.send_response(make_response(req, 400, "Exactly One Refer-To"))
            return
        try:
            target = parse_name_addr(refer_to[0])
        except ParseError:
            stack.send_response(make_response(req, 400, "Bad Refer-To"))
            return
        other = self.other(me)
        if self.state is not CallState.ANSWERED or other is None or self.transfer is not None:
            stack.send_response(make_response(req, 491 if self.transfer else 403))
            return
        replaces = _replaces_of(target.uri.headers)
        stack.send_response(make_response(req, 202))
        transfer = _Transfer(self, me, other, req)
        self.transfer = transfer
        transfer.notify(100, "Trying")
        if replaces is not None:
            transfer.attended(replaces)
        else:
            transfer.blind(target.uri.user_unescaped() or "")

    # -- hanging up ----------------------------------------------------------------------

    def hangup(self, cause: str, side: str = "system") -> None:
        """End the call from our side (media timeout, missing ACK, shutdown)."""
        if self.ended:
            return
        if self.state is not CallState.ANSWERED:
            self._fail_a(480 if cause != "shutdown" else 503, None, "FAILED", cause, side)
            return
        if self.transfer is not None:
            self.transfer.abort()
        for s in self.sides():
            if s.dialog is not None:
                self.b2b.send_bye(s.dialog)
        self._end("ANSWERED", cause, side, 200)

    def _end(
        self,
        disposition: str,
        cause: str,
        side: str,
        status: int | None,
        *,
        keep_media: tuple[_Side, ...] = (),
    ) -> None:
        """Finish the call record; release the media of every side not in ``keep_media``."""
        if self.ended:
            return
        self._move(CallState.ENDED)
        for key in list(self.offers):
            self.cancel_offer(key)
        media = self.b2b.media
        counters: dict[str, int] = {}
        leg_ids = [s.leg_id for s in self.sides()]
        if self.outbound is not None and self.outbound.leg_id not in leg_ids:
            leg_ids.append(self.outbound.leg_id)
        for name, leg_id in zip(("a", "b", "c"), leg_ids, strict=False):
            if leg_id in media:
                st = media.leg_stats(leg_id)
                counters[f"{name}_packets_in"] = st.packets_in
                counters[f"{name}_packets_out"] = st.packets_out
        quality: dict[str, float | None] = {}
        for role, s in (("caller", self.a), ("callee", self.b)):
            if s is not None and s.leg_id in media:
                q = media.leg_quality(s.leg_id)
                if q.packets_received:
                    quality[f"{role}_loss"] = round(q.loss_fraction, 4)
                    quality[f"{role}_jitter_ms"] = round(q.jitter_ms, 2)
                    quality[f"{role}_mos"] = round(q.mos, 2)
        kept = {s.leg_id for s in keep_media}
        for leg_id in leg_ids:
            if leg_id not in kept:
                media.close_leg(leg_id)
        for s in self.sides():
            if s.moh_player is not None and s not in keep_media:
                self.b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
        end = datetime.now(UTC)
        detail = CallDetail(
            call_id=self.call_id,
            caller=self.caller,
            callee=self.callee,
            start=self.start,
            answer=self.answered_at,
            end=max(end, self.answered_at or end),
            hangup_cause=cause,
            disposition=disposition,
            hangup_side=side,
            sip_status=status,
            linked_id=self.linked_id,
            record_id=self.id,
            ivr_keys=self.ivr_keys or None,
            **quality,
        )
        self.log.info(
            "call_ended",
            disposition=disposition,
            cause=cause,
            side=side,
            status=status,
            linked=self.linked_id,
            **counters,
        )
        self.b2b._forget(self, keep=keep_media)
        self.b2b.on_call_ended(detail)
        app, self.app = self.app, None
        if app is not None:
            app.on_hangup()
        hooks, self.on_end = self.on_end, []
        for hook in hooks:
            hook(self, side, cause)
        self.b2b.events.publish(
            CallEnded(
                self.id,
                self.caller,
                self.callee,
                side,
                cause,
                disposition,
                self.answered_at is not None,
            )
        )


class _Transfer:
    """A transfer asked for by ``transferor`` (REFER), moving ``other`` elsewhere."""

    def __init__(self, call: Call, transferor: _Side, other: _Side, refer: Request) -> None:
        self.call = call
        self.transferor = transferor
        self.other = other
        self.refer = refer
        self.outbound: _Outbound | None = None
        self.transferor_left = False
        self.finished = False
        self.log = call.log.bind(transferor=transferor.ext, transferee=other.ext)

    def notify(self, status: int, reason: str, *, final: bool = False) -> None:
        """NOTIFY the transferor of the progress (RFC 3515 §2.4.4, sipfrag RFC 3420)."""
        side = self.transferor
        if side.dialog is None or self.transferor_left:
            return
        stack = self.call.b2b.stack
        state = "terminated;reason=noresource" if final else "active;expires=60"
        req = side.dialog.create_request(
            "NOTIFY",
            stack.via_for(side.flow.transport, side.flow.address[0]),
            stack.contact_for(side.flow.transport, side.flow.address[0]),
            body=f"SIP/2.0 {status} {reason}\r\n".encode(),
            content_type="message/sipfrag;version=2.0",
            extra=[("Event", "refer"), ("Subscription-State", state)],
        )
        stack.send_request(req, side.flow.address, side.flow.transport, on_response=lambda r: None)

    def blind(self, target: str) -> None:
        b2b = self.call.b2b
        contacts = b2b.contacts_of(target)
        if contacts is None:
            self._failed(404, "Not Found")
            return
        if not contacts:
            self._failed(480, "Temporarily Unavailable")
            return
        self.log.info("transfer_blind", target=target)
        # The transferee hears ringback while the target rings.
        media = b2b.media
        media.unbridge(self.other.leg_id)
        media.start_tone(self.other.leg_id, "ringback")
        self.outbound = _Outbound(
            b2b,
            leg_id=f"{self.call.id}-x{secrets.token_hex(2)}",
            caller_ext=self.other.ext,
            caller_display=None,
            callee=target,
            contacts=contacts,
            first_codec=self.other.codec,
            ring_timeout=b2b.ring_timeout_of(target),
            on_ringing=lambda status, early: self.notify(180, "Ringing"),
            on_answered=functools.partial(self._answered, target),
            on_failed=self._target_failed,
        )
        b2b._by_leg[self.outbound.leg_id] = self.call
        task = asyncio.get_running_loop().create_task(self._start())
        task.add_done_callback(_log_task_error)

    async def _start(self) -> None:
        assert self.outbound is not None
        if not await self.outbound.start():
            self._target_failed(503)

    def _answered(self, target: str, side: _Side) -> None:
        b2b = self.call.b2b
        if self.finished or self.call.ended:
            if side.dialog is not None:
                b2b.send_bye(side.dialog)
            b2b.media.close_leg(side.leg_id)
            return
        self.finished = True
        media = b2b.media
        media.stop_tone(self.other.leg_id)
        self.notify(200, "OK", final=True)
        self._complete(self.other, side, callee=target, target_label="b")

    def attended(self, replaces: tuple[str, str, str]) -> None:
        b2b = self.call.b2b
        found = b2b.find_side(*replaces)
        if found is None or found[0] is self.call:
            self._failed(481, "Call/Transaction Does Not Exist")
            return
        call2, replaced = found
        target = call2.other(replaced)
        if target is None or call2.state is not CallState.ANSWERED:
            self._failed(481, "Call/Transaction Does Not Exist")
            return
        self.log.info("transfer_attended", target=target.ext, replaced_call=call2.id)
        self.finished = True
        self.notify(200, "OK", final=True)
        # The replaced dialog ends as if its far end had accepted INVITE/Replaces (§3).
        if replaced.dialog is not None:
            b2b.send_bye(replaced.dialog)
        call2._end(
            "ANSWERED",
            "transferred",
            "callee" if replaced.label == "b" else "caller",
            200,
            keep_media=(target,),
        )
        self._complete(self.other, target, callee=target.ext, target_label=target.label)

    def _complete(self, keep: _Side, new: _Side, *, callee: str, target_label: str) -> None:
        """End the original call record and continue ``keep`` ⇄ ``new`` as a linked call."""
        call = self.call
        b2b = call.b2b
        for s in (keep, new):
            if s.moh_player is not None:
                b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
            s.holding = False
        call._end(
            "ANSWERED",
            "transferred",
            "caller" if self.transferor.label == "a" else "callee",
            200,
            keep_media=(keep,),
        )
        if not self.transferor_left and self.transferor.dialog is not None:
            # Most phones hang up after the final NOTIFY; if this one does not, we do.
            dialog = self.transferor.dialog
            asyncio.get_running_loop().call_later(2.0, lambda: b2b.bye_if_open(dialog))
        b2b.connect(keep, new, linked_id=call.linked_id or call.id, callee=callee)

    def _target_failed(self, status: int, ring_timeout: bool = False) -> None:
        if self.finished:
            return
        self._failed(status, reason_phrase(status))

    def _failed(self, status: int, reason: str) -> None:
        """The transfer did not work: tell the transferor; reconnect or hang up the other."""
        self.finished = True
        self.notify(status, reason, final=True)
        call = self.call
        call.transfer = None
        self.log.info("transfer_failed", status=status)
        if call.ended:
            return
        media = call.b2b.media
        if self.other.leg_id in media:
            media.stop_tone(self.other.leg_id)
        if self.transferor_left:
            # Nobody to go back to: the transferee's call ends.
            if self.other.dialog is not None:
                call.b2b.send_bye(self.other.dialog)
            call._end("ANSWERED", "transfer_failed", "system", status)
        else:
            media.bridge(self.other.leg_id, self.transferor.leg_id)

    def abort(self) -> None:
        if self.outbound is not None and not self.finished:
            self.finished = True
            self.outbound.cancel()


def _replaces_of(uri_headers: str | None) -> tuple[str, str, str] | None:
    """(call-id, to-tag, from-tag) from ``?Replaces=…`` in a Refer-To URI (RFC 3891 §6.1)."""
    if not uri_headers:
        return None
    for part in uri_headers.split("&"):
        name, _, value = part.partition("=")
        if name.strip().lower() != "replaces":
            continue
        text = unquote(value)
        call_id, *params = text.split(";")
        tags = {}
        for p in params:
            k, _, v = p.partition("=")
            tags[k.strip().lower()] = v.strip()
        if call_id and "to-tag" in tags and "from-tag" in tags:
            return call_id.strip(), tags["to-tag"], tags["from-tag"]
    return None


def _best_failure(statuses: list[int]) -> int:
    """RFC 3261 §16.7 step 6, simplified: 6xx wins, then busy, then the lowest class."""
    six = [s for s in statuses if s >= 600]
    if six:
        return min(six)
    if 486 in statuses:
        return 486
    non_timeout = [s for s in statuses if s not in (408, 503)]
    if non_timeout:
        return min(non_timeout)
    return min(statuses) if statuses else 480


@dataclass(slots=True)
class ConferenceRoom:
    """A named conference room: one mixing bridge, its members' calls."""

    number: str
    name: str
    max_members: int
    bridge_id: str = ""
    members: set[str] = field(default_factory=set)  # call ids


class B2bua:
    """Owns the live calls and routes requests to them."""

    def __init__(
        self,
        stack: SipStack,
        media: MediaInterface,
        *,
        media_host: str | None = None,
        on_call_ended: Callable[[CallDetail], None] = lambda d: None,
        contacts_of: Callable[[str], list[Contact] | None] = lambda ext: None,
        ring_timeout_of: Callable[[str], float] = lambda ext: 30.0,
        forward_of: Callable[[str, str], str | None] = lambda ext, reason: None,
        dtmf_mode_of: Callable[[str], str] = lambda ext: "auto",
        music_on_hold: Callable[[str], Any] | None = None,
        stop_music: Callable[[Any], None] | None = None,
    ) -> None:
        self.stack = stack
        self.media = media
        self.media_host = media_host
        self.on_call_ended = on_call_ended
        self.contacts_of = contacts_of
        self.ring_timeout_of = ring_timeout_of
        self.forward_of = forward_of
        self.dtmf_mode_of = dtmf_mode_of
        self._music_on_hold = music_on_hold
        self._stop_music = stop_music
        self._calls: dict[str, Call] = {}
        self._by_invite: dict[tuple[str, str], Call] = {}  # (Call-ID, from tag) of the caller
        self._dialogs: dict[tuple[str, str, str], tuple[Call, _Side]] = {}
        self._by_leg: dict[str, Call] = {}
        self.rooms: dict[str, ConferenceRoom] = {}
        # Every call event goes out here, to every subscriber (pbx.control is the seam).
        self.events = EventBus()

    @property
    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def start_call(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        callee: str,
        contacts: list[Contact],
        ring_timeout: float,
    ) -> Call:
        a = _Side(label="a", ext=caller, leg_id="", flow=Flow(transport, source))
        call = Call(self, a, caller=caller, callee=callee, call_id=invite.call_id, invite=invite)
        a.leg_id = f"{call.id}-a"
        self._calls[call.id] = call
        self._by_invite[(invite.call_id, invite.from_.tag or "")] = call
        self._by_leg[a.leg_id] = call
        task = asyncio.get_running_loop().create_task(call.setup(contacts, ring_timeout))
        task.add_done_callback(_log_task_error)
        return call

    def _local_call(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        callee: str,
        record_id: str | None = None,
    ) -> Call:
        a = _Side(label="a", ext=caller, leg_id="", flow=Flow(transport, source))
        call = Call(
            self,
            a,
            caller=caller,
            callee=callee,
            call_id=invite.call_id,
            invite=invite,
            record_id=record_id,
        )
        a.leg_id = f"{call.id}-a"
        self._calls[call.id] = call
        self._by_invite[(invite.call_id, invite.from_.tag or "")] = call
        self._by_leg[a.leg_id] = call
        return call

    def join_conference(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        number: str,
        name: str,
        max_members: int,
    ) -> None:
        """Answer a call to a conference room and put the caller in its bridge."""
        room = self.rooms.get(number)
        if room is None:
            room = self.rooms[number] = ConferenceRoom(number, name, max_members)
        if len(room.members) >= room.max_members:
            self.stack.send_response(
                make_response(invite, 486, "Conference Full", to_tag=new_tag())
            )
            return
        call = self._local_call(invite, source, transport, caller, number)
        call.room = room
        room.members.add(call.id)

        async def run() -> None:
            if not await call.answer_locally():
                self._leave_room(call)
                return
            if not room.bridge_id:
                room.bridge_id = f"room-{number}"
                self.media.create_bridge(room.bridge_id)
            self.media.join(room.bridge_id, call.a.leg_id)
            call.log.info("conference_joined", room=number, members=len(room.members))

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_log_task_error)

    def answer_with_tone(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        tone: Any,
        seconds: float = 1.0,
        *,
        cause: str = "feature_code",
        record_id: str | None = None,
    ) -> None:
        """Answer, play ``tone`` (a frame source, e.g. the confirmation beep of a feature
        code) and hang up after ``seconds``."""
        call = self._local_call(invite, source, transport, caller, dialled, record_id)

        async def run() -> None:
            if not await call.answer_locally():
                return
            self.media.play(call.a.leg_id, tone)
            await asyncio.sleep(seconds)
            if not call.ended:
                assert call.a.dialog is not None
                self.send_bye(call.a.dialog)
                call._end("ANSWERED", cause, "system", 200)

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_log_task_error)

    def ringing_call(self, targets: Callable[[str], bool]) -> Call | None:
        """The longest-ringing unanswered call to an extension ``targets`` accepts."""
        ringing = [
            c
            for c in self._calls.values()
            if c.state in (CallState.CALLING, CallState.RINGING)
            and c.outbound is not None
            and targets(c.callee)
        ]
        return min(ringing, key=lambda c: c.start) if ringing else None

    def pickup(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        picker: str,
        ringing: Call,
    ) -> None:
        """Answer ``picker``'s INVITE and hand it the ringing call (call pickup)."""
        call = self._local_call(invite, source, transport, picker, ringing.callee)

        async def run() -> None:
            if not await call.answer_locally():
                return
            if not ringing.picked_up(call):
                # It was answered or abandoned meanwhile: nothing left to pick up.
                assert call.a.dialog is not None
                self.send_bye(call.a.dialog)
                call._end("ANSWERED", "nothing_to_pick_up", "system", 200)

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_log_task_error)

    def retire(self, call: Call) -> None:
        """Drop a call whose sides go on in another call (no call record, no hang-up)."""
        self._absorb(call)

    def _absorb(self, call: Call) -> None:
        """Retire a call whose side moved into another call (pickup): no call record."""
        self._calls.pop(call.id, None)
        call.state = CallState.ENDED
        for s in call.sides():
            self._unregister_side(s)

    def _leave_room(self, call: Call) -> None:
        room = call.room
        if room is None:
            return
        call.room = None
        room.members.discard(call.id)
        if room.bridge_id and call.a.leg_id in self.media:
            self.media.leave(room.bridge_id, call.a.leg_id)
        if not room.members:
            if room.bridge_id:
                self.media.destroy_bridge(room.bridge_id)
            del self.rooms[room.number]

    def connect(self, a: _Side, b: _Side, *, linked_id: str | None, callee: str) -> Call:
        """A new answered call between two existing sides (after a transfer)."""
        a.label, b.label = "a", "b"
        assert a.dialog is not None
        call = Call(
            self, a, caller=a.ext, callee=callee, call_id=a.dialog.call_id, linked_id=linked_id
        )
        call.b = b
        call.state = CallState.ANSWERED
        call.answered_at = call.start
        self._calls[call.id] = call
        for s in (a, b):
            self._register_side(call, s)
        for s in (a, b):
            if s.leg_id in self.media:
                self.media.unbridge(s.leg_id)
                self.media.stop_tone(s.leg_id)
        self.media.bridge(a.leg_id, b.leg_id)
        call.log.info("call_connected", linked=linked_id)
        return call

    def continue_with_application(
        self,
        a: _Side,
        *,
        linked_id: str | None,
        callee: str,
        start: Callable[[Call], CallApplication],
        record_id: str | None = None,
    ) -> Call:
        """A new answered call on an existing side (a caller handed over after the callee
        hung up, or a phone Switchboard called itself), driven by an application."""
        a.label = "a"
        assert a.dialog is not None
        call = Call(
            self,
            a,
            caller=a.ext,
            callee=callee,
            call_id=a.dialog.call_id,
            linked_id=linked_id,
            record_id=record_id,
        )
        call.state = CallState.ANSWERED
        call.answered_at = call.start
        self._calls[call.id] = call
        self._register_side(call, a)
        if a.leg_id in self.media:
            self.media.unbridge(a.leg_id)
        call.log.info("call_continued", linked=linked_id, app=callee)
        call.app = start(call)
        return call

    def find(self, record_id: str) -> Call | None:
        """A live call by Switchboard's id of it."""
        return self._calls.get(record_id)

    def find_by_invite(self, call_id: str, from_tag: str) -> Call | None:
        return self._by_invite.get((call_id, from_tag))

    def is_retransmitted_invite(self, invite: Request) -> bool:
        return (invite.call_id, invite.from_.tag or "") in self._by_invite

    def find_side(self, call_id: str, tag1: str, tag2: str) -> tuple[Call, _Side] | None:
        """The call and side of a dialog named by Call-ID and its two tags, in either order
        (RFC 3891 names them from the other party's point of view)."""
        return self._dialogs.get((call_id, tag1, tag2)) or self._dialogs.get((call_id, tag2, tag1))

    def handle_in_dialog(self, req: Request, source: tuple[str, int], transport: str) -> bool:
        """Route an in-dialog request; False when no dialog matches (caller answers 481)."""
        to_tag = req.to.tag or ""
        from_tag = req.from_.tag or ""
        entry = self._dialogs.get((req.call_id, to_tag, from_tag))
        if entry is None:
            return False
        call, side = entry
        call.on_request(side, req, source, transport)
        return True

    def send_bye(self, dialog: Dialog) -> None:
        bye = dialog.create_request(
            "BYE", self.stack.via_for(dialog.flow.transport, dialog.flow.address[0])
        )
        self.stack.send_request(
            bye, dialog.flow.address, dialog.flow.transport, on_response=lambda r: None
        )

    def bye_if_open(self, dialog: Dialog) -> None:
        """BYE a dialog we still track (a transferor that did not hang up by itself)."""
        if dialog.key in self._dialogs:
            call, side = self._dialogs[dialog.key]
            if call.ended or side not in call.sides():
                self._unregister_side(side)
                self.send_bye(dialog)

    def listen_for_dtmf(self, side: _Side) -> None:
        """Run the in-band DTMF detector on a side whose phone sends tones in the audio."""
        mode = self.dtmf_mode_of(side.ext)
        wanted = mode == "inband" or (mode == "auto" and side.dtmf_pt is None)
        if wanted and side.leg_id in self.media:
            self.media.detect_inband_dtmf(side.leg_id)

    def on_dtmf(self, event: DtmfReceived) -> None:
        """Every digit, however it came (RFC 4733, SIP INFO, in-band), arrives here once."""
        call = self._by_leg.get(event.leg_id)
        if call is None:
            return
        side = next((s for s in call.sides() if s.leg_id == event.leg_id), None)
        call.log.info(
            "dtmf_received",
            digit=event.digit,
            source=event.source,
            duration_ms=event.duration_ms,
            ext=side.ext if side else None,
        )
        if call.app is not None and side is call.a:
            call.ivr_keys = (call.ivr_keys + event.digit)[-64:]
            call.app.on_dtmf(event.digit)
        if side is not None:
            role = "caller" if side is call.a else "callee"
            self.events.publish(CallDtmf(call.id, side.leg_id, event.digit, role))

    def start_application(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        start: Callable[[Call], CallApplication],
        record_id: str | None = None,
    ) -> Call:
        """Answer a call ourselves and hand it to an application (the IVR): ``start`` gets
        the answered call and returns the application that receives its digits and hang-up."""
        call = self._local_call(invite, source, transport, caller, dialled, record_id)

        async def run() -> None:
            if await call.answer_locally():
                call.app = start(call)

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_log_task_error)
        return call

    def start_music_on_hold(self, leg_id: str) -> Any:
        if self._music_on_hold is None or leg_id not in self.media:
            return None
        return self._music_on_hold(leg_id)

    def stop_music_on_hold(self, player: Any) -> None:
        if self._stop_music is not None and player is not None:
            self._stop_music(player)

    def on_media_inactive(self, leg_id: str) -> None:
        call = self._by_leg.get(leg_id)
        if call is not None and not call.ended:
            call.log.info("media_timeout", leg=leg_id)
            call.hangup("media_timeout")

    def on_ack_timeout(self, call_id: str, from_tag: str) -> None:
        call = self._by_invite.get((call_id, from_tag))
        if call is not None and not call.ended:
            call.log.info("ack_timeout")
            call.hangup("ack_timeout")

    def hangup_all(self) -> None:
        for call in list(self._calls.values()):
            call.hangup("shutdown")

    def _register_side(self, call: Call, side: _Side) -> None:
        assert side.dialog is not None
        self._dialogs[side.dialog.key] = (call, side)
        self._by_leg[side.leg_id] = call
        self.events.publish(
            LegAnswered(call.id, side.leg_id, side.ext, "caller" if side is call.a else "callee")
        )

    def originate(
        self,
        ext: str,
        *,
        caller_ext: str,
        display: str | None,
        ring_timeout: float,
        on_answered: Callable[[_Side], None],
        on_failed: Callable[[int], None],
    ) -> _Outbound | None:
        """Call ``ext`` from Switchboard itself (a queue callback rings the agent, then the
        customer); ``on_answered`` gets the answered side, to :meth:`connect` with another.
        None if ``ext`` has no phone."""
        contacts = self.contacts_of(ext)
        if not contacts:
            return None
        outbound = _Outbound(
            self,
            leg_id=f"orig-{secrets.token_hex(6)}",
            caller_ext=caller_ext,
            caller_display=display,
            callee=ext,
            contacts=contacts,
            first_codec=None,
            ring_timeout=ring_timeout,
            on_ringing=lambda status, early: None,
            on_answered=on_answered,
            on_failed=lambda status, timed_out: on_failed(status),
        )

        async def start() -> None:
            if not await outbound.start():
                on_failed(503)

        task = asyncio.get_running_loop().create_task(start())
        task.add_done_callback(_log_task_error)
        return outbound

    def _unregister_side(self, side: _Side) -> None:
        if side.dialog is not None:
            self._dialogs.pop(side.dialog.key, None)
        self._by_leg.pop(side.leg_id, None)

    def _forget(self, call: Call, keep: tuple[_Side, ...] = ()) -> None:
        self._calls.pop(call.id, None)
        self._leave_room(call)
        transferor = call.transfer.transferor if call.transfer is not None else None
        for key in [k for k, (c, s) in self._dialogs.items() if c is call]:
            side = self._dialogs[key][1]
            if side in keep or (side is transferor and not call.transfer.transferor_left):  # type: ignore[union-attr]
                continue
            del self._dialogs[key]
        for leg_id in [k for k, c in self._by_leg.items() if c is call]:
            if not any(s.leg_id == leg_id for s in keep):
                del self._by_leg[leg_id]
        if call.invite is not None:
            # Keep the INVITE key a little longer so late retransmissions/CANCELs still match.
            invite_key = (call.invite.call_id, call.invite.from_.tag or "")
            loop = asyncio.get_running_loop()
            loop.call_later(32.0, lambda: self._by_invite.pop(invite_key, None))


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call_task_failed", error=repr(task.exception()))

"""The B2BUA: calls between extensions with media anchored on Switchboard.

Theory of operation
-------------------
Every call has two sides. The *A side* is the caller's INVITE server transaction and, once
we send a provisional with our tag, the dialog towards the caller. The *B side* is one
INVITE client transaction per registered contact of the callee (forking, RFC 3261 §16.7 in
spirit) and, once one of them answers, the dialog towards the callee. Each side has its own
RTP leg in the media engine; the legs are bridged as soon as the callee sends early media or
answers.

::

    caller ──INVITE──▶ [A side | Call | B side] ──INVITE──▶ contact 1, contact 2 …
           ◀─180+SDP── (ringback tone on leg A)  ◀──180────
           ◀─200+SDP── (bridge leg A ⇄ leg B)    ◀──200──── (ACK; CANCEL the other branches)

The call's life is the :class:`CallState` table below: an illegal transition raises, which
the stack logs without dropping other calls. A call ends exactly once, in :meth:`Call._end`,
which releases both media legs and emits one :class:`CallDetail` (the CDR).

RFC sections: 3261 §13 (INVITE), §9 (CANCEL), §15 (BYE), §12 (dialogs), §14 (re-INVITE),
§16.7 (choosing the best final response among branches); 3264 (offer/answer); 3311 (UPDATE).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

import structlog

from media import PCMA, PCMU, Codec, MediaEngine, MediaError

from . import sdp
from .dialog import Dialog, Flow
from .location import Contact
from .message import ParseError, Request, Response, make_response
from .persistence import CallDetail
from .stack import SipStack, new_tag

__all__ = ["B2bua", "CallDetail", "CallState"]

log = structlog.get_logger("pbx.b2bua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
SUPPORTED_CODECS: tuple[Codec, ...] = (PCMU, PCMA)


class CallState(Enum):
    SETUP = "setup"  # INVITE accepted, media being allocated, branches not yet sent
    CALLING = "calling"  # INVITEs sent to the callee's contacts
    RINGING = "ringing"  # a branch sent a provisional; the caller hears ringback/early media
    ANSWERED = "answered"
    ENDED = "ended"


# The call state machine as a table: state → states it may move to.
_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.SETUP: frozenset({CallState.CALLING, CallState.ENDED}),
    CallState.CALLING: frozenset({CallState.RINGING, CallState.ANSWERED, CallState.ENDED}),
    CallState.RINGING: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


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


@dataclass(slots=True)
class _Side:
    """One party's signalling and media state."""

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


class Call:
    """One call between two extensions."""

    def __init__(
        self,
        b2b: B2bua,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        callee: str,
        contacts: list[Contact],
        ring_timeout: float,
    ) -> None:
        self.b2b = b2b
        self.id = secrets.token_hex(8)
        self.invite = invite
        self.caller = caller
        self.callee = callee
        self.contacts = contacts
        self.ring_timeout = ring_timeout
        self.state = CallState.SETUP
        self.start = datetime.now(UTC)
        self.answered_at: datetime | None = None
        self.a = _Side(leg_id=f"{self.id}-a", flow=Flow(transport, source))
        self.b = _Side(leg_id=f"{self.id}-b", flow=Flow("UDP", ("0.0.0.0", 0)))
        self.a_tag = new_tag()
        self.b_call_id = f"{secrets.token_hex(10)}@switchboard"
        self.b_from_tag = new_tag()
        self.branches: list[_Branch] = []
        self.winner: _Branch | None = None
        self.a_answer_sdp = b""  # the answer we gave the caller (same in 18x and 200)
        self.a_final_sent = False
        self.ringback = False
        self.early_media = False
        self._relayed_provisional: set[int] = set()
        self._ring_timer: asyncio.TimerHandle | None = None
        self.log = log.bind(call=self.id, caller=caller, callee=callee)

    # -- state -------------------------------------------------------------------------

    def _move(self, new: CallState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal call transition {self.state.name} -> {new.name}")
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    # -- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Allocate media, answer the caller's offer, fork INVITEs to every contact."""
        stack = self.b2b.stack
        try:
            leg_a = await self.b2b.media.create_leg(self.a.leg_id, self._media_host(self.a.flow))
            leg_b = await self.b2b.media.create_leg(self.b.leg_id)
        except (MediaError, OSError) as exc:
            self.log.warning("media_allocation_failed", error=str(exc))
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return
        if self.ended:  # cancelled while we were binding sockets: _end ran before the legs
            self.b2b.media.close_leg(self.a.leg_id)
            self.b2b.media.close_leg(self.b.leg_id)
            return
        try:
            neg = sdp.negotiate_answer(
                self.invite.body,
                host=leg_a.local_host,
                port=leg_a.local_port,
                supported=SUPPORTED_CODECS,
                session_id=self.a.sdp_session_id,
                version=self.a.sdp_version,
            )
        except sdp.SdpError as exc:
            self.log.info("offer_rejected", error=str(exc))
            self._fail_a(488, None, "FAILED", "incompatible_media", "system")
            return
        self.a.codec = neg.codec
        self.a.dtmf_pt = neg.dtmf_payload_type
        self.a_answer_sdp = neg.answer.serialize()
        self.a.last_local_sdp = self.a_answer_sdp
        leg_a.set_remote(neg.remote[0], neg.remote[1], neg.codec, neg.dtmf_payload_type)

        # Offer the callee the caller's codec first, so the relay can stay a plain copy.
        codecs = [neg.codec] + [c for c in SUPPORTED_CODECS if not c.same_format(neg.codec)]
        for contact in self.contacts:
            flow = Flow(*stack.flow_to(contact.transport, contact.source, contact.uri))
            leg_b.local_host = self._media_host(flow)
            offer = sdp.build_offer(
                leg_b.local_host,
                leg_b.local_port,
                codecs,
                dtmf_pt=101,
                session_id=self.b.sdp_session_id,
                version=self.b.sdp_version,
            ).serialize()
            self.b.last_local_sdp = offer
            req = self._branch_invite(contact, flow, offer)
            branch = _Branch(contact=contact, flow=flow, request=req)
            self.branches.append(branch)
        self._move(CallState.CALLING)
        for branch in self.branches:
            branch.key = stack.send_request(
                branch.request,
                branch.flow.address,
                branch.flow.transport,
                on_response=functools.partial(self._on_branch_response, branch),
                on_timeout=functools.partial(self._on_branch_timeout, branch),
            )
        loop = asyncio.get_running_loop()
        self._ring_timer = loop.call_later(self.ring_timeout, self._on_ring_timeout)
        self.log.debug("call_forked", branches=len(self.branches))

    def _media_host(self, flow: Flow) -> str:
        return self.b2b.media_host or self.b2b.stack.host_for(flow.address[0])

    def _branch_invite(self, contact: Contact, flow: Flow, offer: bytes) -> Request:
        stack = self.b2b.stack
        host = stack.host_for(flow.address[0])
        frm = self.invite.from_
        display = f'"{frm.display}" ' if frm.display else ""
        headers = [
            ("Via", stack.via_for(flow.transport, flow.address[0])),
            ("Max-Forwards", "70"),
            ("From", f"{display}<sip:{self.caller}@{host}>;tag={self.b_from_tag}"),
            ("To", f"<sip:{self.callee}@{host}>"),
            ("Call-ID", self.b_call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", stack.contact_for(flow.transport, flow.address[0], self.caller)),
            ("Allow", ALLOW),
            ("Content-Type", "application/sdp"),
        ]
        return Request("INVITE", contact.uri, headers, offer)

    # -- the B side --------------------------------------------------------------------

    def _on_branch_response(self, branch: _Branch, resp: Response) -> None:
        status = resp.status
        if status < 200:
            # Any provisional, 100 included, allows a CANCEL (RFC 3261 §9.1).
            branch.provisional = True
            if branch.cancel_wanted and not branch.cancel_sent:
                self._send_cancel(branch)
                return
            if status == 100:
                return
            if self.state in (CallState.CALLING, CallState.RINGING):
                self._on_ringing(branch, resp)
            return
        if 200 <= status < 300:
            self._on_branch_answered(branch, resp)
            return
        if branch.final is None:
            branch.final = status
        self._check_all_failed()

    def _on_ringing(self, branch: _Branch, resp: Response) -> None:
        if self.state is CallState.CALLING:
            self._move(CallState.RINGING)
        early_sdp = resp.body and resp.content_type == "application/sdp"
        # The callee sends early media (RFC 3261 §13.2.1, RFC 3960): let the caller hear it.
        if early_sdp and not self.early_media and self._apply_b_answer(resp.body):
            self.early_media = True
            self.b2b.media.get_leg(self.a.leg_id).stop_tone()
            self.ringback = False
            self.b2b.media.bridge(self.a.leg_id, self.b.leg_id)
            self._send_a_provisional(183)
            return
        if not self.early_media and not self.ringback:
            # No early media from the callee: we play ringback ourselves (in-band, so
            # every phone hears it) and tell the caller with 180 + SDP.
            self.ringback = True
            self.b2b.media.get_leg(self.a.leg_id).start_tone("ringback")
        self._send_a_provisional(resp.status if resp.status in (180, 183) else 180)

    def _send_a_provisional(self, status: int) -> None:
        if status in self._relayed_provisional or self.a_final_sent:
            return
        self._relayed_provisional.add(status)
        resp = make_response(
            self.invite,
            status,
            to_tag=self.a_tag,
            headers=[*self._a_contact_headers(), ("Content-Type", "application/sdp")],
            body=self.a_answer_sdp,
        )
        self.b2b.stack.send_response(resp)

    def _a_contact_headers(self) -> list[tuple[str, str]]:
        stack = self.b2b.stack
        flow = self.a.flow
        return [
            ("Contact", stack.contact_for(flow.transport, flow.address[0], self.callee)),
            ("Allow", ALLOW),
        ]

    def _apply_b_answer(self, body: bytes) -> bool:
        try:
            ans = sdp.parse_answer(body)
        except sdp.SdpError as exc:
            self.log.info("bad_answer_from_callee", error=str(exc))
            return False
        self.b.codec = ans.codec
        self.b.dtmf_pt = ans.dtmf_payload_type
        self.b2b.media.get_leg(self.b.leg_id).set_remote(
            ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
        )
        return True

    def _on_branch_answered(self, branch: _Branch, resp: Response) -> None:
        if branch.dialog is None:
            branch.dialog = Dialog.as_uac(branch.request, resp, branch.flow)
        # Every 2xx (and its retransmissions) gets an ACK (RFC 3261 §13.2.2.4).
        self._send_ack(branch)
        if self.winner is not None and self.winner is not branch:
            # A second branch answered too: hang it up (RFC 3261 §13.2.2.4 last paragraph).
            self._send_bye(branch.dialog)
            return
        if self.winner is branch or self.ended:
            if self.ended and self.winner is None:
                self.winner = branch
                self._send_bye(branch.dialog)
            return
        self.winner = branch
        branch.final = resp.status
        self.b.flow = branch.flow
        self.b.dialog = branch.dialog
        if resp.body:
            self._apply_b_answer(resp.body)
        elif not self.early_media:
            self.log.warning("answer_without_sdp")
        self._cancel_ring_timer()
        for other in self.branches:
            if other is not branch:
                self._cancel_branch(other)
        leg_a = self.b2b.media.get_leg(self.a.leg_id)
        leg_a.stop_tone()
        self.b2b.media.bridge(self.a.leg_id, self.b.leg_id)
        # Answer the caller with the same SDP the provisional carried (RFC 3264 §4).
        ok = make_response(
            self.invite,
            200,
            to_tag=self.a_tag,
            headers=[*self._a_contact_headers(), ("Content-Type", "application/sdp")],
            body=self.a_answer_sdp,
        )
        self.a.dialog = Dialog.as_uas(self.invite, self.a_tag, self.a.flow)
        self.a_final_sent = True
        self.b2b.stack.send_response(ok)
        self._move(CallState.ANSWERED)
        self.answered_at = datetime.now(UTC)
        self.b2b._register_dialog(self.a.dialog.key, self, "a")
        self.b2b._register_dialog(branch.dialog.key, self, "b")
        self.log.debug("call_answered", contact=branch.contact.uri)

    def _send_ack(self, branch: _Branch) -> None:
        assert branch.dialog is not None
        stack = self.b2b.stack
        ack = branch.dialog.create_request(
            "ACK",
            stack.via_for(branch.flow.transport, branch.flow.address[0]),
            cseq=branch.request.cseq[0],
        )
        stack.send_stateless(ack, branch.flow.address, branch.flow.transport)

    def _on_branch_timeout(self, branch: _Branch) -> None:
        if branch.final is None:
            branch.final = 408
        self._check_all_failed()

    def _check_all_failed(self) -> None:
        if self.winner is not None or self.ended:
            return
        if any(b.final is None for b in self.branches):
            return
        statuses = [b.final for b in self.branches if b.final is not None]
        status = _best_failure(statuses)
        if status in (486, 600, 603):
            self._fail_a(486 if status == 486 else status, None, "BUSY", "user_busy", "callee")
        elif status in (408, 480):
            self._fail_a(480, None, "NO ANSWER", "no_answer", "callee")
        else:
            self._fail_a(status, None, "FAILED", f"sip_{status}", "callee")

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

    def _on_ring_timeout(self) -> None:
        self._ring_timer = None
        if self.winner is not None or self.ended:
            return
        self.log.info("ring_timeout", seconds=self.ring_timeout)
        self._fail_a(480, None, "NO ANSWER", "no_answer", "system")

    def _cancel_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    # -- the A side --------------------------------------------------------------------

    def _fail_a(
        self, status: int, reason: str | None, disposition: str, cause: str, side: str
    ) -> None:
        """End an unanswered call with a final error response to the caller."""
        if self.ended:
            return
        for branch in self.branches:
            self._cancel_branch(branch)
        if not self.a_final_sent:
            self.a_final_sent = True
            self.b2b.stack.send_response(
                make_response(self.invite, status, reason, to_tag=self.a_tag)
            )
        self._end(disposition, cause, side, status)

    def on_cancel(self) -> None:
        """The caller sent CANCEL (RFC 3261 §9.2): 487 to the INVITE, CANCEL every branch."""
        if self.winner is not None or self.ended:
            return
        self.log.info("caller_cancelled")
        self._fail_a(487, None, "CANCELLED", "originator_cancel", "caller")

    def on_request(self, side: str, req: Request, source: tuple[str, int], transport: str) -> None:
        """An in-dialog request from one of the parties."""
        me = self.a if side == "a" else self.b
        other = self.b if side == "a" else self.a
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
        if req.method == "BYE":
            stack.send_response(make_response(req, 200))
            if other.dialog is not None:
                self._send_bye(other.dialog)
            self._end("ANSWERED", "normal_clearing", "caller" if side == "a" else "callee", 200)
            return
        if req.method in ("INVITE", "UPDATE"):
            self._on_reoffer(me, req)
            return
        if req.method == "INFO":
            stack.send_response(make_response(req, 200))
            if other.dialog is not None and req.body:
                other.info_queue.append(req)
                self._pump_info(other)
            return
        if req.method == "OPTIONS":
            stack.send_response(make_response(req, 200, headers=[("Allow", ALLOW)]))
            return
        stack.send_response(make_response(req, 501, headers=[("Allow", ALLOW)]))

    def _on_reoffer(self, me: _Side, req: Request) -> None:
        """re-INVITE or UPDATE (RFC 3261 §14, RFC 3311): a new offer for this side's leg only.

        Media is anchored, so a session refresh or codec change on one side never needs the
        other party: we answer it ourselves and re-point that side's RTP leg.
        """
        stack = self.b2b.stack
        assert me.dialog is not None
        me.dialog.update_target(req)
        leg = self.b2b.media.get_leg(me.leg_id)
        headers = [
            ("Contact", stack.contact_for(me.flow.transport, me.flow.address[0])),
            ("Allow", ALLOW),
        ]
        if req.body and req.content_type == "application/sdp":
            neg = None
            # Keep the current codec when the peer still offers it; else pick again.
            for supported in ((me.codec,) if me.codec else (), SUPPORTED_CODECS):
                if not supported:
                    continue
                try:
                    neg = sdp.negotiate_answer(
                        req.body,
                        host=leg.local_host,
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
            leg.set_remote(neg.remote[0], neg.remote[1], neg.codec, neg.dtmf_payload_type)
        else:
            body = me.last_local_sdp  # offerless re-INVITE: our offer goes in the 2xx
        headers.append(("Content-Type", "application/sdp"))
        stack.send_response(
            make_response(req, 200, to_tag=me.dialog.local_tag, headers=headers, body=body)
        )

    def _apply_answer_to(self, me: _Side, body: bytes) -> None:
        try:
            ans = sdp.parse_answer(body)
        except sdp.SdpError:
            return
        me.codec = ans.codec
        me.dtmf_pt = ans.dtmf_payload_type
        self.b2b.media.get_leg(me.leg_id).set_remote(
            ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
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

    def _send_bye(self, dialog: Dialog) -> None:
        stack = self.b2b.stack
        bye = dialog.create_request(
            "BYE", stack.via_for(dialog.flow.transport, dialog.flow.address[0])
        )
        stack.send_request(
            bye, dialog.flow.address, dialog.flow.transport, on_response=lambda r: None
        )

    def hangup(self, cause: str, side: str = "system") -> None:
        """End the call from our side (media timeout, missing ACK, shutdown)."""
        if self.ended:
            return
        if self.state is not CallState.ANSWERED:
            self._fail_a(480 if cause != "shutdown" else 503, None, "FAILED", cause, side)
            return
        for s in (self.a, self.b):
            if s.dialog is not None:
                self._send_bye(s.dialog)
        self._end("ANSWERED", cause, side, 200)

    # -- the end -----------------------------------------------------------------------

    def _end(self, disposition: str, cause: str, side: str, status: int | None) -> None:
        if self.ended:
            return
        self._move(CallState.ENDED)
        self._cancel_ring_timer()
        media = self.b2b.media
        counters: dict[str, int] = {}
        for name, side_state in (("a", self.a), ("b", self.b)):
            if side_state.leg_id in media:
                st = media.get_leg(side_state.leg_id).stats
                counters[f"{name}_packets_in"] = st.packets_in
                counters[f"{name}_packets_out"] = st.packets_out
        media.close_leg(self.a.leg_id)
        media.close_leg(self.b.leg_id)
        end = datetime.now(UTC)
        detail = CallDetail(
            call_id=self.invite.call_id,
            caller=self.caller,
            callee=self.callee,
            start=self.start,
            answer=self.answered_at,
            end=max(end, self.answered_at or end),
            hangup_cause=cause,
            disposition=disposition,
            hangup_side=side,
            sip_status=status,
        )
        self.log.info(
            "call_ended",
            disposition=disposition,
            cause=cause,
            side=side,
            status=status,
            **counters,
        )
        self.b2b._forget(self)
        self.b2b.on_call_ended(detail)


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


class B2bua:
    """Owns the live calls and routes requests to them."""

    def __init__(
        self,
        stack: SipStack,
        media: MediaEngine,
        *,
        media_host: str | None = None,
        on_call_ended: Callable[[CallDetail], None] = lambda d: None,
    ) -> None:
        self.stack = stack
        self.media = media
        self.media_host = media_host
        self.on_call_ended = on_call_ended
        self._calls: dict[str, Call] = {}
        self._by_invite: dict[tuple[str, str], Call] = {}  # (Call-ID, from tag) of the caller
        self._dialogs: dict[tuple[str, str, str], tuple[Call, str]] = {}
        self._by_leg: dict[str, Call] = {}

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
        call = Call(self, invite, source, transport, caller, callee, contacts, ring_timeout)
        self._calls[call.id] = call
        self._by_invite[(invite.call_id, invite.from_.tag or "")] = call
        self._by_leg[call.a.leg_id] = call
        self._by_leg[call.b.leg_id] = call
        task = asyncio.get_running_loop().create_task(call.setup())
        task.add_done_callback(_log_task_error)
        return call

    def find_by_invite(self, call_id: str, from_tag: str) -> Call | None:
        return self._by_invite.get((call_id, from_tag))

    def is_retransmitted_invite(self, invite: Request) -> bool:
        return (invite.call_id, invite.from_.tag or "") in self._by_invite

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

    def _register_dialog(self, key: tuple[str, str, str], call: Call, side: str) -> None:
        self._dialogs[key] = (call, side)

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.id, None)
        for key in [k for k, (c, _) in self._dialogs.items() if c is call]:
            del self._dialogs[key]
        self._by_leg.pop(call.a.leg_id, None)
        self._by_leg.pop(call.b.leg_id, None)
        # Keep the INVITE key a little longer so late retransmissions/CANCELs still match.
        invite_key = (call.invite.call_id, call.invite.from_.tag or "")
        loop = asyncio.get_running_loop()
        loop.call_later(32.0, lambda: self._by_invite.pop(invite_key, None))


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call_task_failed", error=repr(task.exception()))


__all__ += ["Call", "ParseError"]

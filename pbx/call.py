"""One call between two parties: its state table and the call's life from INVITE to BYE.

Theory of operation
-------------------
Every call has two *sides* (:class:`~pbx.side.Side`), one per party. The caller's side
starts as an INVITE server transaction; the callee's side is found by an
:class:`~pbx.outbound.Outbound` attempt, which forks one INVITE per registered contact and
turns the branch that answers into a side. The two legs are bridged as soon as the callee
sends early media or answers::

    caller ──INVITE──▶ [side a | Call | Outbound] ──INVITE──▶ contact 1, contact 2 …
           ◀─180+SDP── (ringback tone on leg a)  ◀──180────
           ◀─200+SDP── (bridge a ⇄ b)            ◀──200──── (ACK; CANCEL the other branches)

The caller's offer is answered once, from our own leg (RFC 3264 §6), and the same answer
goes in every 18x and the 200 (§4). Busy and no-answer may forward the call (at most
``MAX_FORWARDS`` hops, never twice to one extension). A CANCEL from the caller (RFC 3261
§9.2) ends an unanswered call with 487 and CANCELs every branch; a 200 that crosses our
CANCEL is ACKed and hung up (``Outbound``).

A call's life is the :class:`CallState` table below (an illegal transition raises, which
the stack logs without harming other calls). A call ends exactly once, in :meth:`Call._end`,
which releases the media it still owns and emits one call record (built by :mod:`pbx.cdr`)
through ``B2bua.on_call_ended``; a transfer ends the original call (cause ``transferred``)
and continues in a new call linked to it.

The call's concerns live beside it: in-dialog offer/answer, hold and glare in
:mod:`pbx.reinvite`, REFER transfers in :mod:`pbx.transfer`, the record in :mod:`pbx.cdr`,
forking in :mod:`pbx.outbound`. A call reaches its :class:`~pbx.b2bua.B2bua` only through
public methods (``register_side``, ``track_leg``, ``forget``, ...).

RFC sections: 3261 §13 (INVITE), §9 (CANCEL), §15 (BYE), §12 (dialogs); 3264 (offer/answer);
2976/6086 (INFO relay of DTMF); 3960 (early media).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Protocol

import structlog

from media import Direction, MediaError
from media.dtmf import DtmfReceived, parse_dtmf_info

from . import cdr, reinvite, sdp, transfer
from .conference import ConferenceRoom
from .consult import ThirdParty
from .dialog import Dialog, Flow
from .events import CallEnded
from .location import Contact
from .message import Request, Response, make_response
from .outbound import Outbound, spawn
from .side import ALLOW, IVR_KEYS_HEADER, SUPPORTED_CODECS, Side
from .stack import new_tag
from .transfer import Transfer
from .trunk_dial import TrunkDial
from .trunk_outbound import OutsideRoute

if TYPE_CHECKING:
    from .b2bua import B2bua

__all__ = ["MAX_FORWARDS", "TRANSITIONS", "Call", "CallApplication", "CallState"]

log = structlog.get_logger("pbx.b2bua")

MAX_FORWARDS = 5  # busy/no-answer forwarding hops per call


class CallState(Enum):
    SETUP = "setup"  # INVITE accepted, media being allocated, branches not yet sent
    CALLING = "calling"  # INVITEs sent to the callee's contacts
    RINGING = "ringing"  # a branch sent a provisional; the caller hears ringback/early media
    ANSWERED = "answered"
    ENDED = "ended"


# The call state machine as a table: state → states it may move to.
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
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


class Call:
    """One call between two parties (extensions)."""

    def __init__(
        self,
        b2b: B2bua,
        a: Side,
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
        self.b: Side | None = None
        self.invite = invite
        self.call_id = call_id
        self.caller = caller
        self.callee = callee
        self.linked_id = linked_id
        self.state = CallState.SETUP
        self.start = datetime.now(UTC)
        self.answered_at: datetime | None = None
        # For the record (pbx.cdr): when the callee party was connected (for a call
        # Switchboard answered first, later than answered_at), when Switchboard itself
        # answered the caller, whether Switchboard placed the call, and services' notes.
        self.connected_at: datetime | None = None
        self.system_answered_at: datetime | None = None
        self.placed = False
        self.notes = cdr.CallNotes(dialled=callee)
        self.a_tag = new_tag()
        self.a_answer_sdp = b""  # the answer we gave the caller (same in 18x and 200)
        # The caller's INVITE had no SDP: a_answer_sdp is our offer, sent in the 200 only.
        self.a_late_offer = False
        self.a_final_sent = False
        self.ringback = False
        self.outbound: Outbound | TrunkDial | None = None  # the callee being rung
        # A phone's call to an outside number: its trunk dial (None: not such a call).
        self.dial_out: TrunkDial | None = None
        self.transfer: Transfer | None = None  # a transfer in progress
        # A third party Switchboard rang for one of the parties (the agent panel's consult
        # transfer or conference; pbx.consult), and where a transfer sent the call.
        self.third: ThirdParty | None = None
        # Figures of a leg closed while the call went on (release_leg_early), for the record.
        self._early: cdr.Measurements | None = None
        self.transferred_to: str | None = None
        self.room: ConferenceRoom | None = None  # the conference room this caller is in
        self.app: CallApplication | None = None  # an application (IVR) driving this call
        self.ivr_keys = ""  # digits pressed while an application drove the call (key trail)
        # What takes the caller over when the callee hangs up (a post-call survey): called
        # with the new call that continues the caller's leg and this (ended) call.
        self.after_callee: Callable[[Call, Call], CallApplication] | None = None
        self.after_callee_label = ""
        # Offers of this call to other phones (queue agents), by the offerer's key.
        self.offers: dict[str, Outbound | TrunkDial] = {}
        # Called once when the call ends, with who ended it ("caller", "callee", "system")
        # and the cause ("normal_clearing", "transferred", ...).
        self.on_end: list[Callable[[Call, str, str], None]] = []
        self.forwards = 0  # how many times busy/no-answer forwarding moved this call
        self.tried: set[str] = {callee}
        self._relayed_provisional: set[int] = set()
        self.log = log.bind(call=self.id, caller=caller, callee=callee)
        # Resolves when the record of this call (and what services wrote about its end) is
        # committed; set by _end.
        self.stored: asyncio.Future[None] | None = None

    # -- state -------------------------------------------------------------------------

    def _move(self, new: CallState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal call transition {self.state.name} -> {new.name}")
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def established(self) -> bool:
        """Both parties (or the caller and Switchboard) are talking."""
        return self.state is CallState.ANSWERED

    def mark_answered(self) -> None:
        """A call made of sides that are already answered (after a transfer, or a party
        handed to an application): it starts in ANSWERED."""
        self._move(CallState.ANSWERED)
        self.answered_at = self.start
        if self.b is not None:  # two parties from the start (a transfer's continuation)
            self.connected_at = self.start

    def retired(self) -> None:
        """The call's sides went on in another call: it ends without a record."""
        if not self.ended:
            self._move(CallState.ENDED)

    def sides(self) -> list[Side]:
        return [self.a] if self.b is None else [self.a, self.b]

    def other(self, side: Side) -> Side | None:
        return self.b if side is self.a else self.a

    # -- setup of a call from an INVITE ------------------------------------------------

    async def _open_caller_media(self) -> bool:
        """Allocate the caller's RTP leg and answer the caller's SDP offer (RFC 3264 §6).

        On failure the caller gets 503 or 488 and the call ends; returns False then.
        """
        assert self.invite is not None
        media = self.b2b.media
        try:
            leg = await media.create_leg(self.a.leg_id, self.media_host(self.a.flow))
        except (MediaError, OSError) as exc:
            self.log.warning("media_allocation_failed", error=str(exc))
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return False
        if self.ended:  # cancelled while we were binding sockets: _end ran before the leg
            media.close_leg(self.a.leg_id)
            return False
        if not self.invite.body:
            # Late offer (RFC 3261 §13.2.1, RFC 3264 §5): the INVITE carried no SDP, so the
            # offer is ours, in the 200 OK (our first reliable response; provisionals carry
            # none), and the caller's answer comes in the ACK (reinvite.apply_ack_answer).
            self.a_late_offer = True
            offer = sdp.build_offer(
                leg.local_host,
                leg.local_port,
                SUPPORTED_CODECS,
                dtmf_pt=101,
                session_id=self.a.sdp_session_id,
                version=self.a.sdp_version,
            )
            self.a_answer_sdp = self.a.last_local_sdp = offer.serialize()
            self.b2b.listen_for_dtmf(self.a)
            return True
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
        self.outbound = Outbound(
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
            near=self.a.leg_id,
        )
        self.b2b.track_leg(self.outbound.leg_id, self)
        if not await self.outbound.start():
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return
        if self.ended:
            self.outbound.cancel()
            return
        self._move(CallState.CALLING)
        self.log.debug("call_forked", branches=len(self.outbound.branches))

    async def setup_trunks(self, route: OutsideRoute, ring_timeout: float) -> None:
        """Allocate media, answer the caller's offer, and dial ``route.number`` through the
        route's trunks (:class:`pbx.trunk_dial.TrunkDial` fails over between them)."""
        assert self.invite is not None
        if not await self._open_caller_media():
            return
        dial = self._dial_out(route, ring_timeout)
        if not await dial.start() and not self.ended:
            self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")
            return
        if self.ended:
            dial.cancel()
            return
        if self.state is CallState.SETUP:
            self._move(CallState.CALLING)

    def _dial_out(self, route: OutsideRoute, ring_timeout: float) -> TrunkDial:
        def attempt(trunk: str, leg: str) -> None:
            self.notes.trunk = trunk
            self.notes.trunk_attempts = list(dial.attempts)
            self.b2b.track_leg(leg, self)

        dial = TrunkDial(
            self.b2b,
            leg_prefix=f"{self.id}-b",
            route=route,
            caller_display=None,
            first_codec=self.a.codec,
            ring_timeout=ring_timeout,
            on_ringing=self._on_callee_ringing,
            on_answered=self._on_callee_answered,
            on_failed=self._on_callee_failed,
            load=self.b2b.trunk_load,
            on_attempt=attempt,
            near=self.a.leg_id,
        )
        self.outbound = self.dial_out = dial
        return dial

    async def answer_locally(self) -> bool:
        """Answer the caller ourselves (200 + SDP): conference rooms and feature codes."""
        assert self.invite is not None
        if not await self._open_caller_media():
            return False
        self._answer_caller()
        self._move(CallState.ANSWERED)
        self.answered_at = self.system_answered_at = datetime.now(UTC)
        self.b2b.register_side(self, self.a)
        return True

    def _answer_caller(self) -> None:
        """200 to the caller's INVITE with the SDP answer we gave (the same in 18x and 200,
        RFC 3264 §4); the caller's dialog starts here (RFC 3261 §12.1.1)."""
        assert self.invite is not None
        self.a.dialog = Dialog.as_uas(self.invite, self.a_tag, self.a.flow)
        self.a.dialog.credentials = self.a.credentials  # a carrier's (inbound trunk calls)
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

    def media_host(self, flow: Flow) -> str:
        """The address our SDP gives for legs towards ``flow``'s party."""
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
        if self.a_late_offer:  # no offer in an unreliable provisional (RFC 3261 §13.2.1)
            resp = make_response(
                self.invite,
                status,
                to_tag=self.a_tag,
                headers=self._contact_headers(self.a, self.callee),
            )
            self.b2b.stack.send_response(resp)
            return
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

    def _contact_headers(self, side: Side, user: str | None) -> list[tuple[str, str]]:
        stack = self.b2b.stack
        flow = side.flow
        return [
            ("Contact", stack.contact_for(flow.transport, flow.address[0], user)),
            ("Allow", ALLOW),
        ]

    def _note_trunk(
        self, trunk: str | None, attempts: Sequence[tuple[str, int]], caller_id: str | None
    ) -> None:
        """The record names the trunk that carried (or last tried) the call, the trunks
        that failed before it, and the caller ID the carrier was given (docs/records.md)."""
        self.notes.trunk = trunk
        self.notes.trunk_attempts = list(attempts)
        self.notes.caller_id_sent = caller_id

    def _note_trunk_dial(self, dial: TrunkDial) -> None:
        """A dial that failed: the trunks it tried."""
        self._note_trunk(dial.trunk, dial.attempts, dial.caller_id)

    def note_trunk_of(self, side: Side) -> None:
        """``side`` was reached through a trunk: the record says which, and how."""
        if side.trunk is not None:
            self._note_trunk(side.trunk, side.trunk_attempts, side.caller_id_sent)

    def _on_callee_answered(self, b: Side) -> None:
        assert self.invite is not None and b.dialog is not None
        self.note_trunk_of(b)
        if self.ended:
            self.b2b.send_bye(b.dialog)
            self.b2b.media.close_leg(b.leg_id)
            return
        self._connect_callee(b)

    def _connect_callee(self, b: Side) -> None:
        assert self.invite is not None and b.dialog is not None
        self.b = b
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        self._answer_caller()
        self._move(CallState.ANSWERED)
        self.answered_at = self.connected_at = datetime.now(UTC)
        self.b2b.register_side(self, self.a)
        self.b2b.register_side(self, b)
        self.log.debug("call_answered", contact=b.dialog.remote_target)

    def _on_callee_failed(self, status: int, ring_timeout: bool) -> None:
        if self.ended:
            return
        if isinstance(self.outbound, TrunkDial):
            # Every trunk that could take the call was tried (pbx.trunk_dial).
            self._note_trunk_dial(self.outbound)
            if self.outbound is self.dial_out and self.outbound.no_trunk:
                # Every trunk was at its max_channels: no carrier was asked.
                self._fail_a(503, "No Trunk Available", "FAILED", "no_trunk_available", "system")
                return
            if self.outbound is self.dial_out:
                self._fail_trunk_call(status, ring_timeout)
                return
        reason = (
            "busy" if status in (486, 600, 603) else "no_answer" if status in (408, 480) else None
        )
        if reason is not None and self._forward(reason):
            return
        if reason is not None and self.b2b.divert(self, reason):
            return  # the callee's mailbox answers instead
        if status in (486, 600, 603):
            self._fail_a(486 if status == 486 else status, None, "BUSY", "user_busy", "callee")
        elif status in (408, 480):
            side = "system" if ring_timeout else "callee"
            self._fail_a(480, None, "NO ANSWER", "no_answer", side)
        else:
            self._fail_a(status, None, "FAILED", f"sip_{status}", "callee")

    def _fail_trunk_call(self, status: int, ring_timeout: bool) -> None:
        """The last trunk attempt failed: the caller hears the callee's answer (busy, not
        found...) or, when every trunk failed, the last trunk's status."""
        if status in (486, 600, 603):
            self._fail_a(486 if status == 486 else status, None, "BUSY", "user_busy", "callee")
        elif status == 480 or ring_timeout:
            self._fail_a(
                480, None, "NO ANSWER", "no_answer", "system" if ring_timeout else "callee"
            )
        else:
            self._fail_a(status, None, "FAILED", f"sip_{status}", "callee")

    def _forward(self, reason: str) -> bool:
        """Call forwarding on busy / no answer: ring the target instead (an extension, or
        an outside number through the trunks, dialled for the forwarding extension, whose
        class of service and caller ID apply). False if there is none or it cannot ring."""
        target = self.b2b.forward_of(self.callee, reason)
        if target is None or self.forwards >= MAX_FORWARDS or target in self.tried:
            return False
        assert self.invite is not None
        forwarder = self.callee
        outbound = self.b2b.ringer(
            target,
            on_behalf_of=forwarder,
            leg_id=f"{self.id}-b{self.forwards + 1}",
            caller_ext=self.caller,
            caller_display=self.invite.from_.display,
            first_codec=self.a.codec,
            ring_timeout=None,
            on_ringing=self._on_callee_ringing,
            on_answered=self._on_callee_answered,
            on_failed=self._on_callee_failed,
            near=self.a.leg_id,
            owner=self,
        )
        if outbound is None:
            return False
        self.log.info("call_forwarded", reason=reason, frm=forwarder, to=target)
        self.forwards += 1
        self.tried.add(target)
        self.callee = target
        self.outbound = outbound
        if isinstance(outbound, Outbound):
            self.b2b.track_leg(outbound.leg_id, self)
        elif self.notes.direction == "internal":
            self.notes.direction = "outbound"  # a phone's call now leaves through a trunk

        async def start() -> None:
            if not await outbound.start() and not self.ended:
                self._fail_a(503, "Media Unavailable", "FAILED", "media_unavailable", "system")

        spawn(start())
        return True

    def answer_for_application(self, start: Callable[[Call], CallApplication]) -> None:
        """The callee was busy or did not answer, and a service (the callee's mailbox) takes
        the caller instead: answer the caller ourselves, from the leg we already negotiated,
        and hand the call to the application ``start`` returns."""
        assert self.invite is not None and not self.a_final_sent
        if self.outbound is not None and not self.outbound.done:
            self.outbound.cancel()
        media = self.b2b.media
        if self.a.leg_id in media:
            media.stop_tone(self.a.leg_id)
        self.ringback = False
        self._answer_caller()
        self._move(CallState.ANSWERED)
        self.answered_at = self.system_answered_at = datetime.now(UTC)
        self.b2b.register_side(self, self.a)
        self.app = start(self)

    def _trail_headers(self) -> list[tuple[str, str]]:
        """The IVR key trail travels to the phone that takes the call (RFC 3261 §8.1.1.10
        allows extension headers; phones and CTI tools show or log it)."""
        return [(IVR_KEYS_HEADER, self.ivr_keys)] if self.ivr_keys else []

    def connect_to(
        self,
        ext: str,
        on_failed: Callable[[int], None],
        *,
        outside: bool = False,
        on_behalf_of: str = "",
    ) -> bool:
        """Ring ``ext`` for a call we answered ourselves (an IVR sending the caller to an
        extension, a queue overflowing to one); the caller hears ringback, then is bridged
        to whoever answers. With ``outside``, a number is dialled through its trunks for
        Switchboard itself, or for the extension ``on_behalf_of`` (its class of service,
        caps and caller ID: a click-to-call). ``on_failed(status)`` is called if nobody
        answers. False if the extension has no phone or the number cannot be dialled."""
        if self.ended or self.b is not None:
            return False
        outbound = self.b2b.ringer(
            ext,
            on_behalf_of=on_behalf_of,
            leg_id=f"{self.id}-b{self.forwards}x",
            caller_ext=self.caller,
            caller_display=None,
            first_codec=self.a.codec,
            ring_timeout=None,
            on_ringing=lambda status, early: None,
            on_answered=self._connected,
            on_failed=lambda status, timed_out: self._connect_failed(status, on_failed),
            extra_headers=self._trail_headers(),
            near=self.a.leg_id,
            owner=self,
            outside=outside,
        )
        if outbound is None:
            return False
        media = self.b2b.media
        media.start_tone(self.a.leg_id, "ringback")
        self.callee = ext
        self.log.info("call_connecting", to=ext)
        self.outbound = outbound
        if isinstance(outbound, Outbound):
            self.b2b.track_leg(outbound.leg_id, self)

        async def start() -> None:
            if not await outbound.start() and not self.ended:
                on_failed(503)

        spawn(start())
        return True

    def _connect_failed(self, status: int, on_failed: Callable[[int], None]) -> None:
        if isinstance(self.outbound, TrunkDial):
            self._note_trunk_dial(self.outbound)  # the record says which trunks failed
        on_failed(status)

    def _connected(self, b: Side) -> None:
        """The extension (or number) rung by :meth:`connect_to` answered."""
        assert b.dialog is not None
        self.note_trunk_of(b)
        if self.ended:
            self.b2b.send_bye(b.dialog)
            self.b2b.media.close_leg(b.leg_id)
            return
        self.b = b
        self.connected_at = datetime.now(UTC)  # billable from here (pbx.cdr)
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        self.b2b.register_side(self, b)
        self.app = None  # the application's part of the call is over
        self.log.info("call_connected", to=b.ext)

    def hang_up_caller(self, cause: str = "normal_clearing") -> None:
        """End a call we answered ourselves from our side (an IVR's hangup node)."""
        if self.ended:
            return
        if self.outbound is not None and not self.outbound.done:
            self.outbound.cancel()
        for s in self.sides():
            if s.dialog is not None and not s.left:
                self.b2b.send_bye(s.dialog)
        self._end("ANSWERED", cause, "system", 200)

    def offer(
        self,
        key: str,
        ext: str,
        *,
        ring_timeout: float,
        on_answered: Callable[[Side], None],
        on_failed: Callable[[int], None],
        display: str | None = None,
        on_behalf_of: str = "",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Ring ``ext`` with this (answered) call without connecting it yet: a queue offering
        the caller to an agent, or a callback's second party (an outside number, dialled
        for ``on_behalf_of``). Several offers may ring at once (ring all); ``on_answered``
        gets the answered side (connect it with :meth:`accept`, or hang it up),
        ``on_failed`` the final status; ``extra_headers`` go in the INVITE (auto-answer).
        False if ``ext`` has no phone or the number cannot be dialled."""
        if self.ended or key in self.offers:
            return False
        outbound = self.b2b.ringer(
            ext,
            on_behalf_of=on_behalf_of,
            leg_id=f"{self.id}-o{self.forwards + 1}",
            caller_ext=self.caller,
            caller_display=display,
            first_codec=self.a.codec,
            ring_timeout=ring_timeout,
            on_ringing=lambda status, early: None,
            on_answered=lambda side: self._offer_answered(key, side, on_answered),
            on_failed=lambda status, timed_out: self._offer_failed(key, status, on_failed),
            extra_headers=[*self._trail_headers(), *extra_headers],
            near=self.a.leg_id,
            # The call's own record keeps its trunk: only the attempt's leg is tracked.
            on_attempt=lambda trunk, leg: self.b2b.track_leg(leg, self),
        )
        if outbound is None:
            return False
        self.forwards += 1
        self.offers[key] = outbound
        if isinstance(outbound, Outbound):
            self.b2b.track_leg(outbound.leg_id, self)

        async def start() -> None:
            if not await outbound.start():
                self._offer_failed(key, 503, on_failed)

        spawn(start())
        return True

    def _offer_answered(self, key: str, side: Side, on_answered: Callable[[Side], None]) -> None:
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
            self.b2b.untrack_leg(outbound.leg_id)
            on_failed(status)

    def cancel_offer(self, key: str) -> None:
        """Stop ringing the phone offered under ``key`` (no callback follows)."""
        outbound = self.offers.pop(key, None)
        if outbound is not None:
            outbound.cancel()
            self.b2b.untrack_leg(outbound.leg_id)

    def accept(self, b: Side) -> None:
        """Connect the caller to ``b`` (an answered offer); music or tones on the caller's
        leg stop and the application that held the call lets go."""
        assert b.dialog is not None
        self.b = b
        b.label = "b"
        self.callee = b.ext
        self.note_trunk_of(b)
        self.connected_at = datetime.now(UTC)  # billable from here (pbx.cdr)
        self.b2b.listen_for_dtmf(b)
        media = self.b2b.media
        if self.a.moh_player is not None:
            self.b2b.stop_music_on_hold(self.a.moh_player)
            self.a.moh_player = None
        if self.a.leg_id in media:
            media.stop_tone(self.a.leg_id)
        media.bridge(self.a.leg_id, b.leg_id)
        self.b2b.register_side(self, b)
        self.app = None
        for key in list(self.offers):
            self.cancel_offer(key)
        self.log.info("call_connected", to=b.ext)

    def take_over(self, by: Call) -> Call:
        """Intercept: the supervisor's call ``by`` (answered by Switchboard, listening in)
        takes this call's caller over. The callee (the agent) is hung up and this call's
        record ends here (cause ``intercepted``), so the agent's part is billed to the agent;
        the supervisor's own call ends too (its record is the time spent listening); the
        caller and the supervisor go on in a new call linked to this one, which keeps where
        the caller came from (dialled number, queue). Returns the new call."""
        b2b = self.b2b
        sup = by.a
        for s in (self.a, sup):
            if s.moh_player is not None:
                b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
        old = self.b
        if old is not None and old.dialog is not None:
            b2b.send_bye(old.dialog)
        self.end("ANSWERED", "intercepted", "system", 200, keep_media=(self.a,))
        by.end("ANSWERED", "intercepted", "caller", 200, keep_media=(sup,))
        new = b2b.connect(self.a, sup, linked_id=self.linked_id or self.id, callee=sup.ext)
        new.notes = self.notes.carried_over()
        new.log.info("call_taken_over", by=sup.ext, released=old.ext if old else None)
        return new

    def release_leg_early(self, side: Side) -> None:
        """``side``'s phone left while the call goes on (an agent leaving a ringing
        consult, pbx.consult): its leg's counters and quality are read now, for the
        record written at the end, and the leg is closed."""
        self._early = cdr.measure(self.b2b.media, self, [s.leg_id for s in self.sides()])
        self.b2b.media.close_leg(side.leg_id)

    def caller_goes_on(self, cause: str) -> bool:
        """The callee is gone: if an application waits for the caller (a post-call
        survey, ``CallControl.continue_after_callee``), hand the caller over, this call's
        record ending with ``cause`` as the callee's hang-up, and return True."""
        if self.ended or self.after_callee is None or self.a.dialog is None:
            return False
        self._hand_caller_over(self.after_callee, cause)
        return True

    def _hand_caller_over(
        self, start: Callable[[Call, Call], CallApplication], cause: str = "normal_clearing"
    ) -> None:
        """The callee hung up and the caller goes on to an application (a post-call
        survey): this call's record ends as the callee's hang-up, and the caller's leg
        continues in a new, linked call that the application drives."""
        keep = self.a
        if keep.moh_player is not None:
            self.b2b.stop_music_on_hold(keep.moh_player)
            keep.moh_player = None
        keep.holding = False
        if keep.leg_id in self.b2b.media:
            self.b2b.media.stop_tone(keep.leg_id)
        self._end("ANSWERED", cause, "callee", 200, keep_media=(keep,))
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
        self.b2b.retire(picker)
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

    def on_request(self, me: Side, req: Request, source: tuple[str, int], transport: str) -> None:
        """An in-dialog request from one of the parties."""
        dialog = me.dialog
        assert dialog is not None
        stack = self.b2b.stack
        if req.method == "ACK":
            if req.body and req.content_type == "application/sdp":
                reinvite.apply_ack_answer(self, me, req.body)
            elif me is self.a and self.a_late_offer and me.codec is None:
                # RFC 3261 §13.2.1: the answer to an offer in a 2xx must be in the ACK.
                self.log.info("late_offer_unanswered")
            return
        if not dialog.check_remote_cseq(req):
            stack.send_response(make_response(req, 500, "CSeq Out Of Order"))
            return
        other = self.other(me)
        method = req.method
        if method == "BYE" and self.third is not None and me is self.third.side:
            # The consulted or conferenced party hangs up (pbx.consult).
            stack.send_response(make_response(req, 200))
            self.third.left()
            return
        third = self.third
        if method == "BYE" and third is not None and not third.done and me is third.me:
            # The agent hangs up during a consult or conference: the customer goes on with
            # the third party (pbx.consult), as on most PBXs.
            if third.agent_hung_up():
                self.b2b.respond_when_stored(req, self.stored)
            else:
                stack.send_response(make_response(req, 200))
            return
        if method == "BYE":
            if self.transfer is not None and self.transfer.transferor is me:
                stack.send_response(make_response(req, 200))
                # RFC 5589: the transferor leaves once the transfer is under way.
                self.transfer.transferor_left = True
                self.b2b.unregister_side(me)
                self.b2b.media.close_leg(me.leg_id)
                return
            if self.transfer is not None:
                self.transfer.abort()
            if me is self.b and self.after_callee is not None and self.a.dialog is not None:
                self._hand_caller_over(self.after_callee)
            else:
                if self.outbound is not None and not self.outbound.done:
                    self.outbound.cancel()  # an application was ringing an extension for us
                if other is not None and other.dialog is not None and not other.left:
                    self.b2b.send_bye(other.dialog)
                side = "caller" if me.label == "a" else "callee"
                self._end("ANSWERED", "normal_clearing", side, 200)
            # The 200 confirms the end only once the call's record is committed.
            self.b2b.respond_when_stored(req, self.stored)
            return
        if method in ("INVITE", "UPDATE"):
            reinvite.answer_reoffer(self, me, req)
            return
        if method == "REFER":
            transfer.on_refer(self, me, req)
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
                if info is not None and other.trunk is not None and self._dtmf_as_rtp(other, info):
                    return
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

    def _dtmf_as_rtp(self, side: Side, info: tuple[str, int]) -> bool:
        """A digit a phone sent by SIP INFO (RFC 6086; its DTMF bodies are a convention,
        not a standard) goes to a carrier as RFC 4733 events on the trunk leg: carriers take
        telephone-events in RTP (§2), rarely INFO. False when the carrier negotiated no
        telephone-event (the INFO is relayed as it came)."""
        digit, duration_ms = info
        if side.dtmf_pt is None:
            self.log.info("dtmf_info_relayed", trunk=side.trunk, reason="no telephone-event")
            return False
        try:
            self.b2b.media.send_dtmf(side.leg_id, digit, duration_ms)
        except (MediaError, ValueError, KeyError) as exc:
            self.log.info("dtmf_info_relayed", trunk=side.trunk, reason=str(exc))
            return False
        self.log.debug("dtmf_info_to_rfc4733", trunk=side.trunk, digit=digit)
        return True

    def _pump_info(self, side: Side) -> None:
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

        def answered(resp: Response, _sent: Request) -> None:
            if resp.status >= 200:
                done()

        def done() -> None:
            side.info_busy = False
            self._pump_info(side)

        self.b2b.send_in_dialog(side.dialog, req, answered, done, flow=side.flow)

    # -- hanging up ----------------------------------------------------------------------

    def reoffer(
        self,
        side: Side,
        direction: Direction = "sendrecv",
        on_done: Callable[[int], None] | None = None,
    ) -> bool:
        """Re-INVITE one party with a new offer for its leg (a refresh, or ``sendonly`` to
        hold it from Switchboard's side); see :func:`pbx.reinvite.send_reoffer`."""
        return reinvite.send_reoffer(self, side, direction=direction, on_done=on_done)

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
            if s.dialog is not None and not s.left:
                self.b2b.send_bye(s.dialog)
        self._end("ANSWERED", cause, side, 200)

    def end(
        self,
        disposition: str,
        cause: str,
        side: str,
        status: int | None,
        *,
        keep_media: tuple[Side, ...] = (),
    ) -> None:
        """End the call now, without signalling: write its record and release its media
        (except ``keep_media``, whose sides go on elsewhere). Idempotent."""
        self._end(disposition, cause, side, status, keep_media=keep_media)

    def _end(
        self,
        disposition: str,
        cause: str,
        side: str,
        status: int | None,
        *,
        keep_media: tuple[Side, ...] = (),
    ) -> None:
        """Finish the call record; release the media of every side not in ``keep_media``."""
        if self.ended:
            return
        self._move(CallState.ENDED)
        for key in list(self.offers):
            self.cancel_offer(key)
        media = self.b2b.media
        leg_ids = [s.leg_id for s in self.sides()]
        if self.outbound is not None and self.outbound.leg_id not in leg_ids:
            leg_ids.append(self.outbound.leg_id)
        measured = cdr.measure(media, self, leg_ids)
        if self._early is not None:
            measured.fill_from(self._early)
        kept = {s.leg_id for s in keep_media}
        for leg_id in leg_ids:
            if leg_id not in kept:
                media.close_leg(leg_id)
        for s in self.sides():
            if s.moh_player is not None and s not in keep_media:
                self.b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
        detail = cdr.call_detail(
            self,
            disposition=disposition,
            cause=cause,
            side=side,
            status=status,
            quality=measured.quality,
        )
        self.log.info(
            "call_ended",
            disposition=detail.disposition,
            cause=cause,
            side=side,
            status=status,
            linked=self.linked_id,
            **measured.counters,
        )
        self.b2b.forget(self, keep=keep_media)
        # Durability: what acknowledges the end (the BYE's 200) waits for the record's
        # commit and for whatever subscribers of CallEnded ask it to wait for.
        waits = self.b2b.begin_acknowledgement(self.id, self.b2b.on_call_ended(detail))
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
                detail.disposition,  # as recorded: a queue call nobody answered is NO ANSWER
                self.answered_at is not None,
                direction=self.notes.direction,
                caller_loss=detail.caller_loss,
                callee_loss=detail.callee_loss,
                transferred_to=self.transferred_to,
            )
        )
        self.stored = self.b2b.end_acknowledgement(self.id, waits)

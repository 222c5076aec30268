"""The B2BUA: owns the live calls, routes requests and media events to them.

Theory of operation
-------------------
Switchboard is a back-to-back user agent (RFC 3261 §6) with media anchored on itself: every
call (:class:`~pbx.call.Call`) has two sides, each a dialog plus an RTP leg, and call
features are re-pairings of sides. :class:`B2bua` is the registry and the router:

- new INVITEs become calls (:meth:`B2bua.start_call`), or calls Switchboard answers itself
  (conference rooms, feature-code tones, pickup, applications such as the IVR);
- an in-dialog request is routed by its dialog id — Call-ID, our tag, the peer's tag
  (RFC 3261 §12.2.2) — to the call and side that own the dialog; none matches → the
  server answers 481;
- a CANCEL or a late INVITE retransmission is matched by the caller's Call-ID and From tag,
  kept 32 s (64·T1) after the call ends so late retransmissions still match (§17.2.1);
- media events (DTMF from RFC 4733, SIP INFO or in-band; inactivity) are routed by leg id;
- ``events`` publishes call events (``LegAnswered``, ``DtmfReceived``, ``CallEnded``) to any
  number of subscribers (``pbx.control`` is the seam services use).

A call reaches the registry only through the public methods here (``register_side``,
``unregister_side``, ``track_leg``, ``retire``, ``forget``...). The call's own concerns live
in their modules: :mod:`pbx.call` (life and state table), :mod:`pbx.outbound` (forking),
:mod:`pbx.reinvite` (re-INVITE, hold, glare), :mod:`pbx.transfer` (REFER, Replaces),
:mod:`pbx.conference` (rooms), :mod:`pbx.cdr` (the call record).

RFC sections: 3261 §12 (dialogs), §13 (INVITE), §9 (CANCEL), §15 (BYE), §17.2.1.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from media import Codec, MediaInterface
from media.dtmf import DtmfReceived

from .call import MAX_FORWARDS, Call, CallApplication, CallState
from .conference import ConferenceRoom, Conferences
from .dialog import Dialog, Flow
from .events import CallRetired, CallStarted, EventBus, LegAnswered
from .events import DtmfReceived as CallDtmf
from .location import Contact
from .message import ParseError, Request, Response, make_response
from .outbound import Outbound, spawn
from .persistence import CallDetail
from .side import ALLOW, IVR_KEYS_HEADER, SUPPORTED_CODECS, Side
from .stack import SipStack, new_tag
from .transfer import Transfer
from .trunk_dial import OUTSIDE_RING_TIMEOUT, TrunkDial
from .trunk_outbound import OutsideRoute

__all__ = [
    "ALLOW",
    "IVR_KEYS_HEADER",
    "MAX_FORWARDS",
    "SUPPORTED_CODECS",
    "B2bua",
    "Call",
    "CallApplication",
    "CallDetail",
    "CallState",
    "ConferenceRoom",
    "Outbound",
    "ParseError",
    "Side",
    "Transfer",
]

log = structlog.get_logger("pbx.b2bua")

# The longest a hang-up waits for its call record's commit before it is confirmed anyway.
ACK_WAIT_LIMIT = 5.0


class B2bua:
    """Owns the live calls and routes requests to them."""

    def __init__(
        self,
        stack: SipStack,
        media: MediaInterface,
        *,
        media_host: str | None = None,
        on_call_ended: Callable[[CallDetail], Awaitable[None] | None] = lambda d: None,
        contacts_of: Callable[[str], list[Contact] | None] = lambda ext: None,
        ring_timeout_of: Callable[[str], float] = lambda ext: 30.0,
        forward_of: Callable[[str, str], str | None] = lambda ext, reason: None,
        divert: Callable[[Call, str], bool] = lambda call, reason: False,
        outside: Callable[[str, str], OutsideRoute | str] = lambda number, ext: "no_route",
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
        # A busy / unanswered call's last resort (the callee's mailbox): True if it took it.
        self.divert = divert
        # Where a number that is no extension leaves, dialled for an extension ("" for
        # Switchboard itself): the route, or the cause it is refused (pbx.trunk_outbound).
        self.outside = outside
        self.dtmf_mode_of = dtmf_mode_of
        self._music_on_hold = music_on_hold
        self._stop_music = stop_music
        self._calls: dict[str, Call] = {}
        self._by_invite: dict[tuple[str, str], Call] = {}  # (Call-ID, from tag) of the caller
        self._dialogs: dict[tuple[str, str, str], tuple[Call, Side]] = {}
        self._by_leg: dict[str, Call] = {}
        self.conferences = Conferences(media)
        # Trunk dials with an attempt ringing (pbx.trunk_dial): channels in use.
        self.dialling: set[TrunkDial] = set()
        # Every call event goes out here, to every subscriber (pbx.control is the seam).
        self.events = EventBus()
        # Per call while its CallEnded is published: what acknowledging its end waits for.
        self._ack_waits: dict[str, list[Awaitable[None]]] = {}
        # INVITEs from a trunk being placed: (Call-ID, From tag) -> (trunk, credentials).
        self._arriving: dict[tuple[str, str], tuple[str, tuple[str, str] | None]] = {}

    @property
    def calls(self) -> list[Call]:
        return list(self._calls.values())

    @contextmanager
    def arriving_through(
        self, invite: Request, trunk: str, credentials: tuple[str, str] | None
    ) -> Iterator[None]:
        """While the dialplan places ``invite`` (which came in through ``trunk``), the call
        made for it has the trunk on its caller's side from the start: ``CallStarted``
        already says the caller is no local phone, whatever number it presents."""
        key = (invite.call_id, invite.from_.tag or "")
        self._arriving[key] = (trunk, credentials)
        try:
            yield
        finally:
            self._arriving.pop(key, None)

    def _add(self, call: Call) -> None:
        self._calls[call.id] = call
        if call.invite is not None and call.a.trunk is None:
            arrived = self._arriving.get((call.invite.call_id, call.invite.from_.tag or ""))
            if arrived is not None:
                # The carrier's side: its challenges to our BYE are answered, and a phone's
                # SIP INFO digits reach it as RFC 4733 (pbx.call).
                call.a.trunk, call.a.credentials = arrived
        self.events.publish(
            CallStarted(
                call.id,
                call.caller,
                call.callee,
                call.a.ext,
                call.linked_id,
                caller_trunk=call.a.trunk,
            )
        )

    def call_count(self) -> int:
        """Calls in progress (set up, ringing or up), without building a list."""
        return len(self._calls)

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
        a = Side(label="a", ext=caller, leg_id="", flow=Flow(transport, source))
        call = Call(self, a, caller=caller, callee=callee, call_id=invite.call_id, invite=invite)
        a.leg_id = f"{call.id}-a"
        self._add(call)
        self._by_invite[(invite.call_id, invite.from_.tag or "")] = call
        self._by_leg[a.leg_id] = call
        spawn(call.setup(contacts, ring_timeout))
        return call

    def start_trunk_call(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        route: OutsideRoute,
        ring_timeout: float = OUTSIDE_RING_TIMEOUT,
    ) -> Call:
        """A call from ``caller`` to an outside number through the first of the route's
        trunks that takes it (see :mod:`pbx.trunk_dial`)."""
        a = Side(label="a", ext=caller, leg_id="", flow=Flow(transport, source))
        call = Call(
            self, a, caller=caller, callee=route.number, call_id=invite.call_id, invite=invite
        )
        a.leg_id = f"{call.id}-a"
        call.notes.direction = "outbound"
        self._add(call)
        self._by_invite[(invite.call_id, invite.from_.tag or "")] = call
        self._by_leg[a.leg_id] = call
        spawn(call.setup_trunks(route, ring_timeout))
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
        a = Side(label="a", ext=caller, leg_id="", flow=Flow(transport, source))
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
        self._add(call)
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
        if self.conferences.is_full(number, max_members):
            self.stack.send_response(
                make_response(invite, 486, "Conference Full", to_tag=new_tag())
            )
            return
        call = self._local_call(invite, source, transport, caller, number)
        call.room = self.conferences.enter(number, name, max_members, call.id)

        async def run() -> None:
            if not await call.answer_locally():
                self._leave_room(call)
                return
            room = call.room
            if room is None:
                return
            self.conferences.join(room, call.a.leg_id)
            call.log.info("conference_joined", room=number, members=len(room.members))

        spawn(run())

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
                call.end("ANSWERED", cause, "system", 200)

        spawn(run())

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
                call.end("ANSWERED", "nothing_to_pick_up", "system", 200)

        spawn(run())

    def retire(self, call: Call) -> None:
        """Drop a call whose sides go on in another call (pickup, intercept, a queue's
        callback): no call record, no hang-up, its dialogs no longer routed to it."""
        self._calls.pop(call.id, None)
        call.retired()
        for s in call.sides():
            self.unregister_side(s)
        self.events.publish(CallRetired(call.id))

    def _leave_room(self, call: Call) -> None:
        room, call.room = call.room, None
        if room is not None:
            self.conferences.leave(room, call.id, call.a.leg_id)

    def connect(self, a: Side, b: Side, *, linked_id: str | None, callee: str) -> Call:
        """A new answered call between two existing sides (after a transfer)."""
        a.label, b.label = "a", "b"
        assert a.dialog is not None
        call = Call(
            self, a, caller=a.ext, callee=callee, call_id=a.dialog.call_id, linked_id=linked_id
        )
        call.b = b
        call.mark_answered()
        self._add(call)
        for s in (a, b):
            call.note_trunk_of(s)
            self.register_side(call, s)
        for s in (a, b):
            if s.leg_id in self.media:
                self.media.unbridge(s.leg_id)
                self.media.stop_tone(s.leg_id)
        self.media.bridge(a.leg_id, b.leg_id)
        call.log.info("call_connected", linked=linked_id)
        return call

    def continue_with_application(
        self,
        a: Side,
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
        call.mark_answered()
        call.note_trunk_of(a)
        self._add(call)
        self.register_side(call, a)
        if a.leg_id in self.media:
            self.media.unbridge(a.leg_id)
        call.log.info("call_continued", linked=linked_id, app=callee)
        call.app = start(call)
        return call

    # -- durability: acknowledge a call's end once what records it is committed -----------

    def begin_acknowledgement(
        self, record_id: str, stored: Awaitable[None] | None
    ) -> list[Awaitable[None]]:
        waits: list[Awaitable[None]] = [stored] if stored is not None else []
        self._ack_waits[record_id] = waits
        return waits

    def hold_acknowledgement(self, record_id: str, stored: Awaitable[None]) -> bool:
        """While ``CallEnded`` of ``record_id`` is being published: make the acknowledgement
        of the end (the BYE's 200) wait for ``stored`` too. False outside that window."""
        waits = self._ack_waits.get(record_id)
        if waits is None:
            return False
        waits.append(stored)
        return True

    def end_acknowledgement(
        self, record_id: str, waits: list[Awaitable[None]]
    ) -> asyncio.Future[None] | None:
        self._ack_waits.pop(record_id, None)
        if not waits:
            return None
        return asyncio.ensure_future(_all_stored(waits))

    def respond_when_stored(self, req: Request, stored: asyncio.Future[None] | None) -> None:
        """Answer ``req`` 200 once ``stored`` is done (at most ACK_WAIT_LIMIT seconds: a store
        that is down must not keep phones in a call they left; the record stays queued)."""
        if stored is None or stored.done():
            self.stack.send_response(make_response(req, 200))
            return
        sent = False

        def send(*_args: object) -> None:
            nonlocal sent
            if sent:
                return
            sent = True
            timer.cancel()
            if not stored.done():
                log.warning("end_acknowledged_before_commit", call_id=req.call_id)
            self.stack.send_response(make_response(req, 200))

        timer = asyncio.get_running_loop().call_later(ACK_WAIT_LIMIT, send)
        stored.add_done_callback(send)

    def find(self, record_id: str) -> Call | None:
        """A live call by Switchboard's id of it."""
        return self._calls.get(record_id)

    def find_by_invite(self, call_id: str, from_tag: str) -> Call | None:
        return self._by_invite.get((call_id, from_tag))

    def is_retransmitted_invite(self, invite: Request) -> bool:
        return (invite.call_id, invite.from_.tag or "") in self._by_invite

    def find_side(self, call_id: str, tag1: str, tag2: str) -> tuple[Call, Side] | None:
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
        """End ``dialog`` (RFC 3261 §15.1.1). Fire and forget: the call has already ended
        locally whatever the peer answers; a challenge is answered once with the dialog's
        credentials (a carrier challenging BYE) and a refusal is only logged."""
        bye = dialog.create_request(
            "BYE", self.stack.via_for(dialog.flow.transport, dialog.flow.address[0])
        )

        def answered(resp: Response, sent: Request) -> None:
            if resp.status >= 300:
                log.info("bye_refused", call_id=dialog.call_id, status=resp.status)

        self.send_in_dialog(dialog, bye, answered)

    def send_in_dialog(
        self,
        dialog: Dialog,
        request: Request,
        on_response: Callable[[Response, Request], None],
        on_timeout: Callable[[], None] | None = None,
        *,
        flow: Flow | None = None,
    ) -> None:
        """Send ``request`` (built by ``dialog``) to the peer at ``flow`` (default: the
        dialog's). A 401/407 is answered once with the dialog's credentials (RFC 3261 §22.2,
        §8.1.3.5: the same request, next CSeq, new branch), and ``on_response`` then sees the
        retry's responses; it gets each response with the request it answers (an ACK to a
        2xx carries that request's CSeq and credentials, §13.2.2.4)."""
        to = flow or dialog.flow
        stack = self.stack

        def relay(resp: Response) -> None:
            if resp.status in (401, 407):
                retry = dialog.authorized_retry(
                    request, resp, stack.via_for(to.transport, to.address[0])
                )
                if retry is not None:
                    log.info(
                        "in_dialog_challenge_answered",
                        call_id=dialog.call_id,
                        method=request.method,
                        status=resp.status,
                    )
                    self.send_in_dialog(dialog, retry, on_response, on_timeout, flow=to)
                    return
            on_response(resp, request)

        stack.send_request(request, to.address, to.transport, relay, on_timeout)

    def bye_if_open(self, dialog: Dialog) -> None:
        """BYE a dialog we still track (a transferor that did not hang up by itself)."""
        if dialog.key in self._dialogs:
            call, side = self._dialogs[dialog.key]
            if call.ended or side not in call.sides():
                self.unregister_side(side)
                self.send_bye(dialog)

    def listen_for_dtmf(self, side: Side) -> None:
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

        spawn(run())
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

    def register_side(self, call: Call, side: Side) -> None:
        """``side`` is answered in ``call``: route its dialog's requests and its leg's
        events to the call, and tell subscribers (``LegAnswered``)."""
        assert side.dialog is not None
        self._dialogs[side.dialog.key] = (call, side)
        self._by_leg[side.leg_id] = call
        self.events.publish(
            LegAnswered(
                call.id,
                side.leg_id,
                side.ext,
                "caller" if side is call.a else "callee",
                trunk=side.trunk,
            )
        )

    def _live_sides(self) -> Iterator[Side]:
        for c in self._calls.values():
            if not c.ended:
                yield c.a
                if c.b is not None:
                    yield c.b

    def trunk_load(self, name: str) -> int:
        """Channels of trunk ``name`` in use, both directions: parties of live calls reached
        through it or arrived from it, and attempts ringing on it (a call in through one
        trunk and out through another counts on both)."""
        up = sum(1 for s in self._live_sides() if s.trunk == name)
        return up + sum(1 for d in self.dialling if d.trunk == name)

    def outside_calls_for(self, ext: str) -> int:
        """Outside parties dialled for ``ext`` ("" = Switchboard) that ring or are up."""
        up = sum(1 for s in self._live_sides() if s.outside_for == ext)
        return up + sum(1 for d in self.dialling if d.route.on_behalf_of == ext)

    def ringer(
        self,
        target: str,
        *,
        on_behalf_of: str,
        leg_id: str,
        caller_ext: str,
        caller_display: str | None,
        first_codec: Codec | None,
        ring_timeout: float | None,
        on_ringing: Callable[[int, bool], None],
        on_answered: Callable[[Side], None],
        on_failed: Callable[[int, bool], None],
        extra_headers: list[tuple[str, str]] | None = None,
        near: str | None = None,
        owner: Call | None = None,
        on_attempt: Callable[[str, str], None] | None = None,
        outside: bool = True,
    ) -> Outbound | TrunkDial | None:
        """What rings ``target``: its phones if it is an extension, else the outside number
        through the trunks of its outbound rule, dialled for ``on_behalf_of`` (whose class
        of service and caller ID apply; "" = Switchboard itself). Not started yet. None
        when an extension has no phone, or the number has no route or is refused (logged).
        An ``owner`` call gets each trunk attempt's leg tracked and its trunk recorded;
        ``on_attempt(trunk, leg_id)`` is told of each attempt instead when given. Without
        ``outside``, only an extension is rung."""
        contacts = self.contacts_of(target)
        if contacts is None and not outside:
            return None
        if contacts is not None:
            if not contacts:
                return None
            return Outbound(
                self,
                leg_id=leg_id,
                caller_ext=caller_ext,
                caller_display=caller_display,
                callee=target,
                contacts=contacts,
                first_codec=first_codec,
                ring_timeout=ring_timeout or self.ring_timeout_of(target),
                on_ringing=on_ringing,
                on_answered=on_answered,
                on_failed=on_failed,
                extra_headers=extra_headers,
                near=near,
            )
        route = self.outside(target, on_behalf_of)
        if isinstance(route, str):
            log.warning(
                "outside_call_refused",
                number=target,
                for_=on_behalf_of or "switchboard",
                cause=route,
            )
            return None

        def attempt(trunk: str, leg: str) -> None:
            if on_attempt is not None:
                on_attempt(trunk, leg)
            elif owner is not None:
                owner.notes.trunk = trunk
                owner.notes.trunk_attempts = list(dial.attempts)
                self.track_leg(leg, owner)

        dial = TrunkDial(
            self,
            leg_prefix=leg_id,
            route=route,
            caller_display=caller_display,
            first_codec=first_codec,
            ring_timeout=ring_timeout or OUTSIDE_RING_TIMEOUT,
            on_ringing=on_ringing,
            on_answered=on_answered,
            on_failed=on_failed,
            load=self.trunk_load,
            on_attempt=attempt,
            extra_headers=extra_headers,
            near=near,
        )
        return dial

    def originate(
        self,
        ext: str,
        *,
        caller_ext: str,
        display: str | None,
        ring_timeout: float,
        on_answered: Callable[[Side], None],
        on_failed: Callable[[int], None],
        on_behalf_of: str = "",
    ) -> Outbound | TrunkDial | None:
        """Call ``ext`` from Switchboard itself (a queue callback rings the agent, then the
        customer); ``on_answered`` gets the answered side, to :meth:`connect` with another.
        An outside number is dialled through its trunks for ``on_behalf_of`` (see
        :meth:`ringer`). None if ``ext`` has no phone or the number cannot be dialled."""
        outbound = self.ringer(
            ext,
            on_behalf_of=on_behalf_of,
            leg_id=f"orig-{secrets.token_hex(6)}",
            caller_ext=caller_ext,
            caller_display=display,
            first_codec=None,
            ring_timeout=ring_timeout,
            on_ringing=lambda status, early: None,
            on_answered=on_answered,
            on_failed=lambda status, timed_out: on_failed(status),
        )
        if outbound is None:
            return None

        async def start() -> None:
            if not await outbound.start():
                on_failed(503)

        spawn(start())
        return outbound

    def track_leg(self, leg_id: str, call: Call) -> None:
        """Media events of ``leg_id`` (DTMF, inactivity) belong to ``call`` from now on."""
        self._by_leg[leg_id] = call

    def untrack_leg(self, leg_id: str) -> None:
        self._by_leg.pop(leg_id, None)

    def unregister_side(self, side: Side) -> None:
        """Stop routing ``side``'s dialog and leg (it left, or moved to another call)."""
        if side.dialog is not None:
            self._dialogs.pop(side.dialog.key, None)
        self._by_leg.pop(side.leg_id, None)

    def forget(self, call: Call, keep: tuple[Side, ...] = ()) -> None:
        """An ended call leaves the registries; sides in ``keep`` stay routed (they go on
        in another call)."""
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


async def _all_stored(waits: list[Awaitable[None]]) -> None:
    results = await asyncio.gather(*waits, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error("record_not_stored", error=repr(result))

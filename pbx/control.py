"""The call-control seam: what services (ACD, IVR, recorder, web panel, trunks) use to drive
calls, by id, without holding a call, a leg or the media engine.

Theory of operation
-------------------
The B2BUA (:mod:`pbx.b2bua`) owns calls, dialogs and legs. :class:`CallControl` is the one
door into it for everything above ``pbx``:

- **Queries** return frozen snapshots (:class:`CallInfo`), never live objects.
- **Commands** take ids: answer or reject a call waiting for a service, play prompts and
  tones, music on hold, offer a call to an extension and accept or cancel the offer, connect
  a call to an extension, originate a call, supervise (listen, whisper, barge, intercept),
  tap a call's audio, hang up, hand a call to another service.
- **Events** (:mod:`pbx.events`) go to every subscriber of :meth:`subscribe`.
- **Record notes**: :meth:`annotate` adds what a service knows to a call's record (queue,
  agent id, queue-log id, callback request; see ``docs/records.md``).

How calls reach a service: a service *serves* destination kinds (``queue``, ``ivr``,
``voicemail``) and *claims* feature codes. The SIP server answers a call routed to a kind
somebody serves and publishes :class:`~pbx.events.CallArrived`; a call to a kind nobody
serves is refused (480). A dialled code that a service claimed is published as
:class:`~pbx.events.FeatureCodeDialled` *before* it is answered; the service answers or
rejects it from its handler (a code nobody answered there gets 480).

The same interface is what a fake implementation gives the services in unit tests (see
``tests/unit/fake_control.py``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from media import Playlist, ToneSource
from media.interface import LegClosed as MediaLegClosed
from media.player import load_prompt

from .b2bua import B2bua
from .call import Call, CallState
from .cdr import DIRECTIONS
from .consult import ThirdParty
from .events import (
    CallAnswered,
    CallArrived,
    CallEvent,
    ConnectFailed,
    FeatureCodeDialled,
    LegClosed,
    OfferAnswered,
    OfferRejected,
    OriginateAnswered,
    OriginateFailed,
    PlaybackFinished,
)
from .message import Request, make_response
from .outbound import Outbound
from .side import Side
from .stack import new_tag
from .trunk_dial import TrunkDial

__all__ = ["PARTIES", "SUPERVISION_MODES", "CallControl", "CallInfo"]

log = structlog.get_logger("pbx.control")

SUPERVISION_MODES = ("listen", "whisper", "barge", "intercept")
PARTIES = ("caller", "callee")
RATE = 8000
DTMF_MS = 160  # each keypad digit's duration (RFC 4733 §2.5.1.3; 100 ms+ reaches IVRs)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A snapshot of one call. ``callee_ext`` is the extension that answered (None before)."""

    call_id: str
    caller: str
    callee: str
    state: str  # setup, calling, ringing, answered, ended
    caller_ext: str
    caller_leg: str
    callee_ext: str | None
    callee_leg: str | None
    linked_id: str | None
    ivr_keys: str
    offers: tuple[str, ...]
    started_at: datetime | None = None
    answered_at: datetime | None = None  # when the callee (or Switchboard itself) answered
    # What the call record will say (``annotate``): docs/records.md.
    direction: str = "internal"
    dialled: str | None = None
    queue: str | None = None
    agent: str | None = None
    # The trunk a party arrived through or was reached through (None: a local phone). A
    # trunk party's ``*_ext`` is the number it presented, which anybody can claim.
    caller_trunk: str | None = None
    callee_trunk: str | None = None

    @property
    def local_caller_ext(self) -> str | None:
        """The caller's extension when the caller is a local phone, not a trunk party."""
        return self.caller_ext if self.caller_trunk is None else None

    @property
    def local_callee_ext(self) -> str | None:
        return self.callee_ext if self.callee_trunk is None else None

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def answered(self) -> bool:
        return self.state == "answered"


def _info(call: Call) -> CallInfo:
    return CallInfo(
        call_id=call.id,
        caller=call.caller,
        callee=call.callee,
        state=call.state.value,
        caller_ext=call.a.ext,
        caller_leg=call.a.leg_id,
        callee_ext=call.b.ext if call.b is not None else None,
        callee_leg=call.b.leg_id if call.b is not None else None,
        linked_id=call.linked_id,
        ivr_keys=call.ivr_keys,
        offers=tuple(call.offers),
        started_at=call.start,
        answered_at=call.answered_at,
        direction=call.notes.direction,
        dialled=call.notes.dialled,
        queue=call.notes.queue,
        agent=call.notes.agent,
        caller_trunk=call.a.trunk,
        callee_trunk=call.b.trunk if call.b is not None else None,
    )


class _Driven:
    """The application object of a call a service drives: digits and the hang-up reach the
    service as events, so this only marks the call (the B2BUA keeps its key trail)."""

    def on_dtmf(self, digit: str) -> None:
        pass

    def on_hangup(self) -> None:
        pass


@dataclass(slots=True)
class _PendingInvite:
    """An INVITE for a claimed feature code, waiting for the service's answer."""

    request: Request
    source: tuple[str, int]
    transport: str
    caller: str
    dialled: str


@dataclass(slots=True)
class _Supervision:
    supervisor: str  # the supervisor's call
    target: str  # the supervised call
    bridge: str
    mode: str = ""


@dataclass(slots=True)
class _Tap:
    call_id: str
    bridge: str
    media_tap: str
    leg_id: str
    own_bridge: bool


@dataclass(slots=True)
class _Originate:
    outbound: Outbound | TrunkDial | None = None
    cancelled: bool = False
    label: str = ""


class CallControl:
    """The seam; one per SIP server. See the module documentation."""

    def __init__(
        self,
        b2bua: B2bua,
        *,
        is_extension: Callable[[str], bool],
        tone_plan: Callable[[], str],
        message_waiting: Callable[[str, int, int], None] = lambda box, new, old: None,
        set_class_of_service: Callable[[str, str | None], None] = lambda ext, cos: None,
        resolve: Callable[[str, str], tuple[str, str] | None] = lambda number, ext: None,
        auto_answer_of: Callable[[str], bool] = lambda ext: False,
        refusal_of: Callable[[str, str], str | None] = lambda number, ext: None,
    ) -> None:
        self._b2b = b2bua
        # Where the dialplan sends ``number`` dialled by ``ext``: (kind, target), kind one
        # of queue, ivr, voicemail, extension, number; None: no rule (an extension or an
        # outside number as dialled).
        self._resolve = resolve
        # Extensions whose phones answer queue offers by themselves (``auto_answer``).
        self._auto_answer_of = auto_answer_of
        # Why ``ext`` may not dial the outside ``number`` (no route, class of service, caps;
        # checked without counting it), or None.
        self._refusal_of = refusal_of
        self._message_waiting = message_waiting
        self._set_class_of_service = set_class_of_service
        self._is_extension = is_extension
        self._tone_plan = tone_plan
        self._served: set[str] = set()
        self._codes: dict[str, str] = {}  # claimed feature code -> owner
        self._pending: dict[str, _PendingInvite] = {}
        self._taken: set[str] = set()  # waiting calls a service will answer later
        self._answered_offers: dict[tuple[str, str], Side] = {}
        self._supervisions: dict[str, _Supervision] = {}
        self._taps: dict[str, _Tap] = {}
        self._originates: dict[str, _Originate] = {}
        b2bua.media.subscribe(self._on_media_event)

    def _on_media_event(self, event: object) -> None:
        # A released leg is a fact services use (an agent's phone is free again).
        if isinstance(event, MediaLegClosed):
            self._b2b.events.publish(LegClosed(event.leg_id))

    # -- subscriptions and claims ---------------------------------------------------------------

    def subscribe(self, handler: Callable[[CallEvent], None]) -> Callable[[], None]:
        """Receive every call event; returns the function that unsubscribes."""
        return self._b2b.events.subscribe(handler)

    def serve(self, *kinds: str) -> None:
        """Destinations of these kinds (``queue``, ``ivr``, ``voicemail``) arrive as
        :class:`CallArrived` events for the caller of this method to take."""
        self._served.update(kinds)

    def serves(self, kind: str) -> bool:
        return kind in self._served

    def claim_feature_codes(self, owner: str, codes: Iterable[str]) -> None:
        """Dialled strings starting with one of ``codes`` are reported as
        :class:`FeatureCodeDialled` (replacing what ``owner`` claimed before)."""
        self._codes = {c: o for c, o in self._codes.items() if o != owner}
        for code in codes:
            if code:
                self._codes[code] = owner

    def claimed_code(self, dialled: str) -> str | None:
        """The longest claimed code ``dialled`` starts with."""
        best = None
        for code in self._codes:
            if dialled.startswith(code) and (best is None or len(code) > len(best)):
                best = code
        return best

    # -- queries --------------------------------------------------------------------------------

    def info(self, call_id: str) -> CallInfo | None:
        call = self._b2b.find(call_id)
        return _info(call) if call is not None else None

    def calls(self) -> list[CallInfo]:
        return [_info(c) for c in self._b2b.calls]

    def is_extension(self, number: str) -> bool:
        return self._is_extension(number)

    # -- what the SIP server hands over (not for services) -------------------------------------

    def arrive(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        event: Callable[[str], CallArrived],
        direction: str = "inbound",
        trunk: str | None = None,
    ) -> None:
        """Answer ``invite`` and publish ``event(call_id)`` once its media is up. An IVR,
        queue or voicemail destination of the dialplan is the call centre's way in
        (``inbound``); a phone reaching its own mailbox menu, or a mailbox standing in for
        an extension, is ``internal`` (docs/records.md). ``trunk``: the carrier that
        delivered the call."""

        def start(call: Call) -> _Driven:
            app = _Driven()
            asyncio.get_running_loop().call_soon(self._publish_arrival, call, event(call.id))
            return app

        call = self._b2b.start_application(invite, source, transport, caller, dialled, start)
        call.notes.direction = direction
        call.notes.trunk = trunk

    def _publish_arrival(self, call: Call, event: CallArrived) -> None:
        if not call.ended:
            self._b2b.events.publish(event)

    def divert(self, call_id: str, kind: str, target: str) -> bool:
        """An unanswered call whose callee is busy or did not answer goes to the service
        serving ``kind`` (the callee's mailbox): answered from our side, then
        :class:`CallArrived`. False when nobody serves ``kind`` or the call is gone."""
        call = self._live(call_id)
        if call is None or kind not in self._served or call.a_final_sent:
            return False

        def start(c: Call) -> _Driven:
            event = CallArrived(c.id, kind, target, c.caller, c.callee, linked_id=c.linked_id)
            asyncio.get_running_loop().call_soon(self._publish_arrival, c, event)
            return _Driven()

        call.answer_for_application(start)
        return True

    def feature_dialled(
        self,
        invite: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        code: str,
    ) -> None:
        """A claimed code was dialled: the owner answers or rejects it from its handler."""
        call_id = secrets.token_hex(8)
        self._pending[call_id] = _PendingInvite(invite, source, transport, caller, dialled)
        self._b2b.events.publish(FeatureCodeDialled(call_id, caller, code, dialled[len(code) :]))
        if call_id in self._pending and call_id not in self._taken:  # nobody answered it
            self.reject(call_id, 480, "Feature Unavailable")

    def take(self, call_id: str) -> None:
        """From a ``FeatureCodeDialled`` handler: the service answers or rejects this call
        later (after its own records are committed); it stays unanswered meanwhile."""
        if call_id in self._pending:
            self._taken.add(call_id)

    # -- answering and refusing -----------------------------------------------------------------

    def reject(self, call_id: str, status: int, reason: str | None = None) -> None:
        """Refuse a call that is not answered yet with ``status``."""
        pending = self._pending.pop(call_id, None)
        self._taken.discard(call_id)
        if pending is not None:
            self._b2b.stack.send_response(
                make_response(pending.request, status, reason, to_tag=new_tag())
            )
            log.info("call_rejected", call=call_id, caller=pending.caller, status=status)
            return
        call = self._live(call_id)
        if call is not None and call.state is not CallState.ANSWERED:
            call.hangup(f"sip_{status}")

    def answer(self, call_id: str) -> bool:
        """Answer a waiting call; :class:`CallAnswered` follows when its media is up, then
        its digits arrive as events."""
        pending = self._pending.pop(call_id, None)
        self._taken.discard(call_id)
        if pending is None:
            return False

        def start(call: Call) -> _Driven:
            asyncio.get_running_loop().call_soon(self._publish_answered, call)
            return _Driven()

        self._b2b.start_application(
            pending.request,
            pending.source,
            pending.transport,
            pending.caller,
            pending.dialled,
            start,
            record_id=call_id,
        )
        return True

    def _publish_answered(self, call: Call) -> None:
        if not call.ended:
            self._b2b.events.publish(CallAnswered(call.id))

    def answer_with_tone(
        self, call_id: str, tone: str = "beep", cause: str = "feature_code"
    ) -> bool:
        """Answer a waiting call, play ``tone`` (a confirmation beep) and hang up."""
        pending = self._pending.pop(call_id, None)
        self._taken.discard(call_id)
        if pending is None:
            return False
        source = ToneSource(tone, self._tone_plan(), rate=RATE)
        self._b2b.answer_with_tone(
            pending.request,
            pending.source,
            pending.transport,
            pending.caller,
            pending.dialled,
            source,
            cause=cause,
            record_id=call_id,
        )
        return True

    # -- media on a call ------------------------------------------------------------------------

    async def preload(self, files: Sequence[str]) -> None:
        """Decode prompts into the prompt cache off the event loop (playing them later
        only reads the cache)."""
        await asyncio.to_thread(Playlist(list(files), RATE).prepare)

    @staticmethod
    def prewarm(files: Iterable[str]) -> list[tuple[str, str]]:
        """Decode prompt files into the cache (blocking: call it in a thread). Returns the
        (file, error) of those that could not be read."""
        failed = []
        for path in files:
            try:
                load_prompt(path, RATE)
            except Exception as exc:
                failed.append((path, str(exc)))
        return failed

    def play(self, call_id: str, files: Sequence[str], *, loop: bool = False) -> str | None:
        """Play files back to back to the caller (instead of what they would hear); the end
        is published as :class:`PlaybackFinished`. None if the call has no media."""
        return self._play(call_id, Playlist(list(files), RATE, loop=loop))

    def play_tone(self, call_id: str, tone: str) -> str | None:
        """Play a tone of the configured tone plan (``beep``, ``ringback``, ``busy``...)."""
        return self._play(call_id, ToneSource(tone, self._tone_plan(), rate=RATE))

    def _play(self, call_id: str, source: Any) -> str | None:
        call = self._live(call_id)
        if call is None or call.a.leg_id not in self._b2b.media:
            return None
        events = self._b2b.events

        def done(ev: Any) -> None:
            events.publish(PlaybackFinished(call_id, ev.player_id, not ev.stopped))

        player: str = self._b2b.media.play(call.a.leg_id, source, on_done=done)
        return player

    def stop_play(self, play_id: str | None) -> None:
        if play_id is not None:
            self._b2b.media.stop_play(play_id)

    def music_on_hold(self, call_id: str, files: Sequence[str] = ()) -> None:
        """Music on hold for the caller: ``files`` looped, or the default music."""
        call = self._live(call_id)
        if call is None or call.a.leg_id not in self._b2b.media:
            return
        self.stop_music_on_hold(call_id)
        media = self._b2b.media
        if files:
            call.a.moh_player = media.play(call.a.leg_id, Playlist(list(files), RATE, loop=True))
        else:
            call.a.moh_player = self._b2b.start_music_on_hold(call.a.leg_id)

    def stop_music_on_hold(self, call_id: str) -> None:
        call = self._b2b.find(call_id)
        if call is not None and call.a.moh_player is not None:
            self._b2b.stop_music_on_hold(call.a.moh_player)
            call.a.moh_player = None

    def start_tone(self, call_id: str, tone: str = "ringback") -> None:
        call = self._live(call_id)
        if call is not None and call.a.leg_id in self._b2b.media:
            self._b2b.media.start_tone(call.a.leg_id, tone)

    def tap(self, call_id: str, callback: Callable[[Any, int], None]) -> str | None:
        """Hand the caller's audio (20 ms ``int16`` frames and their rate) to ``callback``
        until :meth:`stop_tap`. None if the call has no media."""
        call = self._live(call_id)
        media = self._b2b.media
        if call is None or call.a.leg_id not in media:
            return None
        leg = call.a.leg_id
        bridge = media.bridge_of(leg)
        own = bridge is None
        if bridge is None:
            bridge = f"tap-{leg}"
            media.create_bridge(bridge)
            media.join(bridge, leg)
        media_tap: str = media.add_tap(bridge, leg, callback)
        tap_id = f"tap-{secrets.token_hex(6)}"
        self._taps[tap_id] = _Tap(call_id, bridge, media_tap, leg, own)
        return tap_id

    def tap_call(self, call_id: str, callback: Callable[[Any, int], None]) -> str | None:
        """Hand the call's audio as the caller has it to ``callback``: every 20 ms
        interleaved stereo ``int16`` and its rate — left what the caller says, right what
        the caller hears (the other party, prompts, music on hold) — until :meth:`stop_tap`.
        It follows the caller's leg through holds and re-bridging. None if the call has no
        media. The recorder's tap."""
        call = self._live(call_id)
        media = self._b2b.media
        if call is None or call.a.leg_id not in media:
            return None
        leg = call.a.leg_id
        media_tap: str = media.add_tap_stereo(leg, callback)
        tap_id = f"tap-{secrets.token_hex(6)}"
        self._taps[tap_id] = _Tap(call_id, "", media_tap, leg, False)
        return tap_id

    def stop_tap(self, tap_id: str) -> None:
        tap = self._taps.pop(tap_id, None)
        if tap is None:
            return
        media = self._b2b.media
        media.remove_tap(tap.media_tap)
        if tap.own_bridge:
            if tap.leg_id in media:
                media.leave(tap.bridge, tap.leg_id)
            media.destroy_bridge(tap.bridge)

    # -- connecting -----------------------------------------------------------------------------

    def offer(
        self,
        call_id: str,
        offer_id: str,
        extension: str,
        *,
        ring_timeout: float,
        display: str | None = None,
        on_behalf_of: str = "",
    ) -> bool:
        """Ring ``extension`` with this answered call without connecting it: the outcome is
        :class:`OfferAnswered` or :class:`OfferRejected`. A number that is no extension is
        dialled outside for ``on_behalf_of`` (its class of service and caller ID; "" =
        Switchboard's). An extension set to ``auto_answer`` is asked to answer by itself.
        False if it has no phone or the number cannot be dialled."""
        call = self._live(call_id)
        if call is None:
            return False
        events = self._b2b.events

        def answered(side: Side) -> None:
            self._answered_offers[(call_id, offer_id)] = side
            events.publish(OfferAnswered(call_id, offer_id, side.ext, side.leg_id))
            # Neither accepted nor released by a subscriber: nobody wants this phone.
            if self._answered_offers.pop((call_id, offer_id), None) is not None:
                self._release(side)

        def failed(status: int) -> None:
            events.publish(OfferRejected(call_id, offer_id, status))

        return call.offer(
            offer_id,
            extension,
            ring_timeout=ring_timeout,
            on_answered=answered,
            on_failed=failed,
            display=display,
            on_behalf_of=on_behalf_of,
            extra_headers=self._auto_answer_headers(extension),
        )

    def _auto_answer_headers(self, extension: str) -> list[tuple[str, str]]:
        """An extension set to ``auto_answer`` gets the de-facto headers desk phones
        honour: ``Call-Info: <sip:server>;answer-after=0`` (Yealink, Polycom, Snom,
        Grandstream; RFC 3261 §20.9 Call-Info with a vendor parameter) and
        ``Alert-Info: <http://127.0.0.1>;info=alert-autoanswer`` (§20.4; Polycom, Cisco)."""
        if not self._auto_answer_of(extension):
            return []
        contacts = self._b2b.contacts_of(extension) or []
        host = self._b2b.stack.host_for(contacts[0].source[0] if contacts else "127.0.0.1")
        return [
            ("Call-Info", f"<sip:{host}>;answer-after=0"),
            ("Alert-Info", "<http://127.0.0.1>;info=alert-autoanswer"),
        ]

    def cancel_offer(self, call_id: str, offer_id: str) -> None:
        """Stop ringing (no event follows), or release a phone that answered the offer."""
        side = self._answered_offers.pop((call_id, offer_id), None)
        if side is not None:
            self._release(side)
            return
        call = self._b2b.find(call_id)
        if call is not None:
            call.cancel_offer(offer_id)

    def accept_offer(
        self, call_id: str, offer_id: str, *, callee_first: bool = False
    ) -> str | None:
        """Connect the caller to the phone that answered ``offer_id``; music and tones stop,
        other offers are cancelled. With ``callee_first`` the answering phone becomes the
        *caller* of the connected call (a callback that rang the agent first, then the
        customer, is recorded as customer -> agent); the call then gets a new id, returned."""
        side = self._answered_offers.pop((call_id, offer_id), None)
        call = self._live(call_id)
        if side is None:
            return None
        if call is None:
            self._release(side)
            return None
        if not callee_first:
            call.accept(side)
            return call.id
        first = call.a
        if first.moh_player is not None:
            self._b2b.stop_music_on_hold(first.moh_player)
            first.moh_player = None
        self._b2b.retire(call)
        final = self._b2b.connect(side, first, linked_id=None, callee=first.ext)
        # Switchboard dialled both phones: the record names the first one (the agent) as
        # the caller of the one that answered the offer (see pbx.cdr).
        final.placed = True
        final.notes.direction = "outbound"
        final.notes.dialled = side.ext
        return final.id

    def connect_to(
        self, call_id: str, extension: str, *, outside: bool = False, on_behalf_of: str = ""
    ) -> bool:
        """Ring ``extension`` for an answered call and bridge whoever answers (the caller
        hears ringback). With ``outside`` (only for a number the admin wrote: a queue's
        ``number:`` overflow, an IVR flow's literal ``number:`` transfer — never digits a
        caller entered), a number that is no extension is dialled through the trunks of
        its outbound rule with the system class of service — or, with ``on_behalf_of``,
        with that extension's (a click-to-call dials for the phone that asked).
        :class:`ConnectFailed` if
        nobody answers; False if the extension has no phone or the number cannot be
        dialled."""
        call = self._live(call_id)
        if call is None:
            return False
        events = self._b2b.events

        def failed(status: int) -> None:
            events.publish(ConnectFailed(call_id, extension, status))

        return call.connect_to(extension, failed, outside=outside, on_behalf_of=on_behalf_of)

    def continue_after_callee(self, call_id: str, kind: str, target: str) -> None:
        """When the callee hangs up, the caller is handed to ``kind``/``target`` (a
        post-call survey flow) in a new call linked to this one."""
        call = self._live(call_id)
        if call is None:
            return

        def start(new: Call, ended: Call) -> _Driven:
            # The survey rates the agent (the ACD's id, as in the queue log) when the call
            # was a queue call, else the extension that answered.
            variables = (("rated_call", ended.id), ("agent", ended.notes.agent or ended.callee))
            event = CallArrived(
                new.id,
                kind,
                target,
                new.caller,
                ended.callee,
                variables=variables,
                linked_id=ended.id,
            )
            asyncio.get_running_loop().call_soon(self._publish_arrival, new, event)
            return _Driven()

        call.after_callee = start
        call.after_callee_label = f"survey:{target}"

    def route(
        self,
        call_id: str,
        kind: str,
        target: str,
        *,
        priority: int | None = None,
        skills: Sequence[str] = (),
        variables: dict[str, str] | None = None,
        survey: str | None = None,
    ) -> bool:
        """Hand an answered call to the service that serves ``kind`` (an IVR sending its
        caller to a queue, a queue overflowing into an IVR or voicemail). False when no
        service serves it or the call is gone."""
        call = self._live(call_id)
        if call is None or kind not in self._served:
            return False
        self.stop_music_on_hold(call_id)
        call.app = _Driven()
        self._b2b.events.publish(
            CallArrived(
                call_id,
                kind,
                target,
                call.caller,
                call.callee,
                priority=priority,
                skills=tuple(skills),
                variables=tuple((variables or {}).items()),
                survey=survey,
                linked_id=call.linked_id,
            )
        )
        return True

    def annotate(
        self,
        call_id: str,
        *,
        dialled: str | None = None,
        direction: str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        queued_at: datetime | None = None,
        queue_call_id: str | None = None,
        callback_id: int | None = None,
    ) -> bool:
        """Add what a service knows to the record of a live call (``docs/records.md``):
        the number the caller dialled, the direction (inbound, outbound, internal), the
        queue, the agent id that answered (the ACD's id, as in the queue log), when the
        caller joined the first queue (the wait counts from there), the queue log's id for
        the call and the callback request it fulfils. Only the given values change; a
        ``queued_at`` once set stays (an overflow does not restart the wait). False if the
        call is gone (its record is already written)."""
        call = self._live(call_id)
        if call is None:
            return False
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"unknown call direction {direction!r}")
        notes = call.notes
        if dialled is not None:
            notes.dialled = dialled
        if direction is not None:
            notes.direction = direction
        if queue is not None:
            notes.queue = queue
        if agent is not None:
            notes.agent = agent
        if queued_at is not None and notes.queued_at is None:
            notes.queued_at = queued_at
        if queue_call_id is not None:
            notes.queue_call_id = queue_call_id
        if callback_id is not None:
            notes.callback_id = callback_id
        return True

    def hold_acknowledgement(self, call_id: str, stored: Awaitable[None]) -> bool:
        """From a ``CallEnded`` handler: the end of the call is confirmed to the phone (the
        BYE's 200) only once ``stored`` is done too — a service's own records of the call
        (queue events) are committed before anyone is told the call is over."""
        return self._b2b.hold_acknowledgement(call_id, stored)

    def hangup(self, call_id: str, cause: str = "normal_clearing") -> None:
        """End the call from Switchboard's side (BYE to every party)."""
        pending = self._pending.pop(call_id, None)
        self._taken.discard(call_id)
        if pending is not None:
            self._b2b.stack.send_response(make_response(pending.request, 480, to_tag=new_tag()))
            return
        call = self._live(call_id)
        if call is None:
            return
        if call.state is CallState.ANSWERED:
            call.hang_up_caller(cause)
        else:
            call.hangup(cause)

    # -- the agent's controls of an answered call (the agent panel) -----------------------------
    #
    # ``party`` is the role of the party who acts (the agent): "caller" or "callee". Media
    # is anchored on Switchboard, so none of these re-INVITEs a phone: they change what
    # each party's own leg hears and says (pbx.consult explains consult and conference).

    def _parties(
        self, call_id: str, party: str, *, left_too: bool = False
    ) -> tuple[Call, Side, Side] | None:
        """(call, party's side, the other side) of an answered two-party call; None if
        there is none, or if ``party``'s phone already hung up (an agent who left a
        ringing consult: nothing to control any more) unless ``left_too``."""
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r} (caller or callee)")
        call = self._live(call_id)
        if call is None or not call.established or call.b is None:
            return None
        me = call.a if party == "caller" else call.b
        if me.left and not left_too:
            return None
        other = call.b if me is call.a else call.a
        return call, me, other

    def _apply_mute(self, side: Side) -> None:
        media = self._b2b.media
        if side.leg_id in media:
            # Held: the agent hears nothing and says nothing; muted: says nothing.
            media.mute(side.leg_id, inbound=side.muted or side.on_hold, outbound=side.on_hold)

    def hold(self, call_id: str, party: str) -> bool:
        """``party`` holds the other party from Switchboard's side: the other hears music
        on hold, ``party``'s phone hears silence and what it says goes nowhere. No
        re-INVITE: the hold of RFC 3264 §8.4 is a phone's own; ours is in the anchored
        media. False if the call is not a two-party answered call."""
        found = self._parties(call_id, party)
        if found is None:
            return False
        call, me, other = found
        if not me.on_hold:
            me.on_hold = True
            if other.moh_player is None:
                other.moh_player = self._b2b.start_music_on_hold(other.leg_id)
            self._apply_mute(me)
            call.log.info("call_held", by=me.ext)
        return True

    def resume(self, call_id: str, party: str) -> bool:
        """Undo :meth:`hold`: the two parties hear each other again (music stops unless a
        phone's own hold or a consultation still wants it)."""
        found = self._parties(call_id, party)
        if found is None:
            return False
        call, me, other = found
        if me.on_hold:
            me.on_hold = False
            consulting = call.third is not None and call.third.mode == "consult"
            if other.moh_player is not None and not me.holding and not consulting:
                self._b2b.stop_music_on_hold(other.moh_player)
                other.moh_player = None
            self._apply_mute(me)
            call.log.info("call_resumed", by=me.ext)
        return True

    def mute(self, call_id: str, party: str, muted: bool = True) -> bool:
        """What ``party`` says goes nowhere (``muted``) or again to the call."""
        found = self._parties(call_id, party)
        if found is None:
            return False
        call, me, _other = found
        me.muted = muted
        self._apply_mute(me)
        call.log.info("call_muted" if muted else "call_unmuted", by=me.ext)
        return True

    def party_state(self, call_id: str, party: str) -> dict[str, Any] | None:
        """What the panel shows of ``party``'s controls: on hold, muted, a third party
        (consult or conference: its target, whether it answered)."""
        found = self._parties(call_id, party, left_too=True)
        if found is None:
            return None
        call, me, _other = found
        third = call.third
        return {
            "on_hold": me.on_hold,
            "muted": me.muted,
            "third_party": None
            if third is None
            else {"mode": third.mode, "target": third.target, "answered": third.answered},
        }

    def send_dtmf(self, call_id: str, party: str, digits: str) -> bool:
        """Send ``digits`` to the other party as RFC 4733 events (§2.5.1, queued one after
        another on its leg): the agent's keypad driving a remote IVR. False if the call is
        gone or the other party negotiated no telephone-event; ``ValueError`` for a digit
        outside 0-9 * # A-D."""
        found = self._parties(call_id, party)
        if found is None:
            return False
        call, _me, other = found
        if other.dtmf_pt is None or other.leg_id not in self._b2b.media:
            return False
        for digit in digits:
            self._b2b.media.send_dtmf(other.leg_id, digit, DTMF_MS)
        call.log.info("dtmf_sent", to=other.ext, digits=len(digits))
        return True

    def destination(self, number: str, party_ext: str) -> tuple[str, str]:
        """Where ``number`` dialled by ``party_ext`` goes: (kind, target) as the dialplan
        says (``route``), or an extension / outside number as dialled."""
        resolved = self._resolve(number, party_ext)
        if resolved is not None:
            return resolved
        return ("extension" if self._is_extension(number) else "number", number)

    def transfer(
        self, call_id: str, party: str, target: str, *, kind: str | None = None
    ) -> str | None:
        """Blind transfer from the panel: the other party goes to ``target`` and ``party``
        (the agent) is released (BYE). ``kind`` ``queue``/``ivr``/``voicemail`` hands the
        other party to that service; else ``target`` is a number routed by the dialplan:
        a queue or IVR number to its service, an extension rung, an outside number dialled
        for ``party``'s extension (its class of service and caller ID). The call's record
        ends with cause ``transferred`` (as REFER does, RFC 3515) and the other party goes
        on in a new call linked to it, whose id is returned; nobody answering ends that
        call (``transfer_failed``). None (and the call goes on untouched) if the call or the
        destination is not there, or ``party`` may not dial that outside number."""
        found = self._parties(call_id, party)
        if found is None or found[0].transfer is not None or found[0].third is not None:
            return None
        call, me, other = found
        if kind is None:
            kind, target = self.destination(target, me.ext)
        if kind in ("queue", "ivr", "voicemail"):
            if kind not in self._served:
                return None
        elif kind == "extension":
            if not self._b2b.contacts_of(target):
                return None  # unknown, or no phone registered
        elif kind != "number" or self._refusal_of(target, me.ext) is not None:
            return None  # refused before anybody is released: the call goes on as it was
        b2b = self._b2b
        for s in (me, other):
            s.on_hold = s.muted = False
            if s.moh_player is not None:
                b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
            s.holding = False
        if other.leg_id in b2b.media:
            b2b.media.mute(other.leg_id, inbound=False, outbound=False)
        if me.dialog is not None:
            b2b.send_bye(me.dialog)
        call.transferred_to = target
        call.end("ANSWERED", "transferred", party, 200, keep_media=(other,))
        new = b2b.continue_with_application(
            other,
            linked_id=call.linked_id or call.id,
            callee=target,
            start=lambda c: _Driven(),
        )
        new.notes.dialled = target
        new.log.info("call_transferred", by=me.ext, kind=kind, to=target)
        if kind in ("queue", "ivr", "voicemail"):
            self.route(new.id, kind, target)
            return new.id

        def failed(status: int) -> None:
            log.info("transfer_target_failed", call=new.id, target=target, status=status)
            self.hangup(new.id, "transfer_failed")

        if not new.connect_to(target, failed, outside=kind == "number", on_behalf_of=me.ext):
            self.hangup(new.id, "transfer_failed")
            return new.id
        if kind == "number":
            new.notes.direction = "outbound"
        return new.id

    def _third(
        self, call_id: str, party: str, target: str, mode: str
    ) -> tuple[Call, ThirdParty] | None:
        found = self._parties(call_id, party)
        if found is None or found[0].transfer is not None or found[0].third is not None:
            return None
        call, me, other = found
        kind, number = self.destination(target, me.ext)
        if kind not in ("extension", "number"):
            return None  # a queue or an IVR cannot be consulted or conferenced
        if kind == "number" and self._refusal_of(number, me.ext) is not None:
            return None
        if me.on_hold:
            self.resume(call_id, party)  # the agent must hear the third party

        def failed(status: int) -> None:
            self._b2b.events.publish(ConnectFailed(call_id, number, status))

        third = ThirdParty(call, me, other, number, mode, on_failed=failed)
        call.third = third
        if not third.start():
            call.third = None
            return None
        call.on_end.append(lambda _c, _side, _cause: third.release())
        return call, third

    def consult(self, call_id: str, party: str, target: str) -> bool:
        """Consult (attended) transfer: the other party (the customer) waits with music
        while Switchboard rings ``target`` (an extension or a number, routed as
        :meth:`destination` says) for ``party``; its answer connects it to ``party``'s
        leg. Then :meth:`complete_consult` or :meth:`cancel_consult`. The target not
        answering puts the two parties back together and publishes
        :class:`ConnectFailed`. False if the call or the target is not there."""
        return self._third(call_id, party, target, "consult") is not None

    def complete_consult(self, call_id: str, party: str) -> str | None:
        """Customer and the consulted target go on together in a new call linked to this
        one (returned); ``party`` is released and the record ends ``transferred``. None
        unless a consultation's target answered."""
        third = self._third_of(call_id, party)
        new = third.complete() if third is not None else None
        return new.id if new is not None else None

    def _third_of(self, call_id: str, party: str) -> ThirdParty | None:
        found = self._parties(call_id, party)
        if found is None:
            return None
        third = found[0].third
        return third if third is not None and third.me is found[1] else None

    def cancel_consult(self, call_id: str, party: str) -> bool:
        """Release the consulted (or conferenced) target: ``party`` and the customer talk
        again. False if there is none."""
        third = self._third_of(call_id, party)
        if third is None:
            return False
        third.cancel()
        return True

    def conference(self, call_id: str, party: str, target: str) -> bool:
        """Ring ``target`` and, when it answers, join it to the call: the three hear each
        other in one bridge. The target hanging up leaves the two; the call ending ends
        it. False if the call or the target is not there."""
        return self._third(call_id, party, target, "conference") is not None

    # -- outbound rights ------------------------------------------------------------------------

    def set_class_of_service(self, extension: str, class_of_service: str | None) -> None:
        """Calls from ``extension`` to outside numbers get ``class_of_service`` (an agent
        with their own class logged in there) until set back with None."""
        self._set_class_of_service(extension, class_of_service)

    # -- mailboxes ------------------------------------------------------------------------------

    def message_waiting(self, mailbox: str, new: int, old: int) -> None:
        """The voicemail service says ``mailbox`` now holds ``new`` unheard and ``old``
        heard messages; the SIP side tells the mailbox's phones (RFC 3842 NOTIFY)."""
        self._message_waiting(mailbox, new, old)

    # -- calls Switchboard places itself --------------------------------------------------------

    def originate(
        self,
        offer_id: str,
        extension: str,
        *,
        caller_id: str,
        display: str | None = None,
        ring_timeout: float = 30.0,
        label: str | None = None,
        on_behalf_of: str = "",
    ) -> str | None:
        """Call ``extension`` (a callback rings the agent or the customer first). On answer
        a call with the returned id exists whose caller is that phone (its ``LegAnswered``
        comes first, then :class:`OriginateAnswered`); else :class:`OriginateFailed`. A
        number that is no extension is dialled outside for ``on_behalf_of`` (its class of
        service and caller ID; "" = Switchboard's). None if the extension has no phone or
        the number cannot be dialled."""
        call_id = secrets.token_hex(8)
        events = self._b2b.events
        state = _Originate(label=label or caller_id)
        self._originates[offer_id] = state

        def answered(side: Side) -> None:
            self._originates.pop(offer_id, None)
            if state.cancelled:
                self._release(side)
                return
            call = self._b2b.continue_with_application(
                side,
                linked_id=None,
                callee=state.label,
                start=lambda c: _Driven(),
                record_id=call_id,
            )
            call.placed = True
            call.notes.direction = "outbound"
            call.notes.dialled = extension
            events.publish(OriginateAnswered(offer_id, call.id, side.ext, side.leg_id))

        def failed(status: int) -> None:
            self._originates.pop(offer_id, None)
            if not state.cancelled:
                events.publish(OriginateFailed(offer_id, status))

        state.outbound = self._b2b.originate(
            extension,
            caller_ext=caller_id,
            display=display,
            ring_timeout=ring_timeout,
            on_answered=answered,
            on_failed=failed,
            on_behalf_of=on_behalf_of,
        )
        if state.outbound is None:
            self._originates.pop(offer_id, None)
            return None
        return call_id

    def cancel_originate(self, offer_id: str) -> None:
        state = self._originates.pop(offer_id, None)
        if state is not None:
            state.cancelled = True
            if state.outbound is not None:
                state.outbound.cancel()

    # -- supervision ----------------------------------------------------------------------------

    def supervise(self, supervisor_call: str, target_call: str, mode: str) -> bool:
        """Join the supervisor's (answered) call into the target call's bridge in ``mode``:
        listen (hears both), whisper (the agent hears the supervisor), barge (both do),
        intercept (the supervisor takes the caller; the agent is released). The target
        ending hangs the supervisor up. False if there is nothing to supervise."""
        own = self._live(supervisor_call)
        target = self._live(target_call)
        media = self._b2b.media
        if own is None or target is None or target.b is None or target.a.leg_id not in media:
            return False
        state = self._supervisions.get(supervisor_call)
        if state is None:
            bridge = media.bridge_of(target.a.leg_id)
            if bridge is None:
                return False
            media.join(bridge, own.a.leg_id)
            # The supervisor's call is recorded linked to the call it supervised.
            own.linked_id = own.linked_id or target.linked_id or target.id
            state = _Supervision(supervisor_call, target_call, bridge)
            self._supervisions[supervisor_call] = state

            def target_ended(_call: Call, _side: str, _cause: str) -> None:
                gone = self._supervisions.pop(supervisor_call, None)
                if gone is not None and gone.mode != "intercept":
                    self.hangup(supervisor_call, "supervised_call_ended")

            def own_ended(_call: Call, _side: str, _cause: str) -> None:
                self._supervisions.pop(supervisor_call, None)

            target.on_end.append(target_ended)
            own.on_end.append(own_ended)
        return self._switch(state, own, target, mode)

    def _switch(self, state: _Supervision, own: Call, target: Call, mode: str) -> bool:
        if mode == state.mode:
            return True
        if target.b is None:
            return False
        media = self._b2b.media
        if mode == "intercept":
            state.mode = mode
            self._supervisions.pop(state.supervisor, None)
            target.take_over(own)
            return True
        sup, caller, agent = own.a.leg_id, target.a.leg_id, target.b.leg_id
        media.set_hears(state.bridge, caller, sup, mode == "barge")
        media.set_hears(state.bridge, agent, sup, mode in ("whisper", "barge"))
        state.mode = mode
        return True

    # -- helpers --------------------------------------------------------------------------------

    def _live(self, call_id: str) -> Call | None:
        call = self._b2b.find(call_id)
        return call if call is not None and not call.ended else None

    def _release(self, side: Side) -> None:
        """Hang up a phone that answered but is not wanted (any more)."""
        if side.dialog is not None:
            self._b2b.send_bye(side.dialog)
        self._b2b.media.close_leg(side.leg_id)

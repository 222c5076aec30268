"""An in-memory call-control seam for unit tests of services (ACD host, IVR host).

It has the interface of :class:`pbx.control.CallControl` and keeps calls as plain records.
Every command a service gives is appended to ``commands`` as ``(name, args...)``; a test plays
the SIP side with the helpers (``arrive``, ``dial_code``, ``answer_offer``, ``end``, ...),
which publish the events the real seam would, in the same order:

- a call answered by Switchboard (``arrive``, ``answer``) publishes ``LegAnswered`` for the
  caller before the service hears of it (``CallArrived``, ``CallAnswered``); ``answer`` and
  ``answer_with_tone`` publish on the next loop turn, as the real seam does once the media is up;
- a call ending stops its players (``PlaybackFinished``, not completed), releases its legs
  (``LegClosed``) and then publishes ``CallEnded``;
- an answered offer is ``OfferAnswered``; one that no subscriber accepted is released;
  ``accept_offer`` publishes ``LegAnswered`` for the phone that joins the call;
- a feature code nobody answered, took or rejected from its handler is refused with 480;
- ``annotate`` keeps what services add to a call's record in ``notes`` (only while the
  call lives, as the real seam); an intercept ends the supervised call and the
  supervisor's, and continues caller and supervisor in a new linked call.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pbx.control import CallControl, CallInfo
from pbx.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallEvent,
    ConnectFailed,
    DtmfReceived,
    EventBus,
    FeatureCodeDialled,
    LegAnswered,
    LegClosed,
    OfferAnswered,
    OfferRejected,
    OriginateAnswered,
    OriginateFailed,
    PlaybackFinished,
)

Command = tuple[Any, ...]


@dataclass
class FakeCall:
    call_id: str
    caller: str
    callee: str
    caller_leg: str
    state: str = "answered"
    callee_ext: str | None = None
    callee_leg: str | None = None
    offers: dict[str, str] = field(default_factory=dict)  # offer id -> extension
    linked_id: str | None = None
    ivr_keys: str = ""  # the digits pressed in IVR menus before (a test sets them)

    @property
    def ended(self) -> bool:
        return self.state == "ended"


@dataclass
class _Pending:
    """A claimed feature code waiting for the service's answer."""

    caller: str
    dialled: str
    taken: bool = False


class FakeCallControl:
    def __init__(self, extensions: Iterable[str] = ()) -> None:
        self.bus = EventBus()
        self.calls_by_id: dict[str, FakeCall] = {}
        self.commands: list[Command] = []
        self.served: set[str] = set()
        self.codes: dict[str, str] = {}
        self.extensions = set(extensions)  # numbers with a phone (offer, connect, originate)
        self.pending: dict[str, _Pending] = {}
        self.playing: dict[str, str] = {}  # play id -> call id
        self.moh: dict[str, Sequence[str]] = {}
        self.taps: dict[str, tuple[str, Callable[[Any, int], None]]] = {}  # id -> (call, sink)
        self.answered_offers: dict[tuple[str, str], tuple[str, str]] = {}  # -> (ext, leg)
        self.connecting: dict[str, str] = {}  # call id -> extension being rung
        self.originated: dict[str, tuple[str, str, str]] = {}  # offer id -> (call, ext, label)
        # (offer id, number) -> the extension it was dialled for ("" = Switchboard itself).
        self.dialled_for: dict[tuple[str, str], str] = {}
        self.connected_outside: dict[str, bool] = {}  # call id -> connect_to(outside=...)
        self.released: list[str] = []  # legs of phones that answered but were not wanted
        self.held_acks: dict[str, Awaitable[None]] = {}  # call id -> what its BYE 200 waits for
        self.notes: dict[str, dict[str, Any]] = {}  # call id -> record notes (annotate)
        self.intercepted: dict[str, str] = {}  # supervised call -> the call that goes on
        # (call id, "caller"/"callee") -> the trunk that party came through (else a phone)
        self.trunk_of: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)

    # -- the SIP side, played by the test -------------------------------------------------------

    def publish(self, event: CallEvent) -> None:
        self.bus.publish(event)

    def new_call(
        self, caller: str, callee: str, call_id: str | None = None, caller_leg: str | None = None
    ) -> str:
        """An answered call's record, without events."""
        call_id = call_id or f"c{next(self._ids)}"
        self.calls_by_id[call_id] = FakeCall(call_id, caller, callee, caller_leg or f"{call_id}-a")
        return call_id

    def arrive(self, kind: str, target: str, caller: str, dialled: str, **kw: Any) -> str:
        """A call Switchboard answered for a service (the dialplan sent it to ``kind``)."""
        call_id = self.new_call(caller, dialled)
        leg = self.calls_by_id[call_id].caller_leg
        self.publish(LegAnswered(call_id, leg, caller, "caller"))
        self.publish(CallArrived(call_id, kind, target, caller, dialled, **kw))
        return call_id

    def place_call(self, caller: str, callee: str) -> str:
        """A call between two phones that no service drives (an agent's direct call)."""
        call_id = self.new_call(caller, callee)
        call = self.calls_by_id[call_id]
        call.callee_ext, call.callee_leg = callee, f"{call_id}-b"
        self.publish(LegAnswered(call_id, call.caller_leg, caller, "caller"))
        self.publish(LegAnswered(call_id, call.callee_leg, callee, "callee"))
        return call_id

    def dial_code(self, caller: str, code: str, digits: str = "") -> str:
        """``caller`` dialled a claimed feature code (plus ``digits``); the call waits for the
        owner's answer, and is refused with 480 if the handler neither answered nor took it."""
        call_id = f"f{next(self._ids)}"
        self.pending[call_id] = _Pending(caller, code + digits)
        self.publish(FeatureCodeDialled(call_id, caller, code, digits))
        pending = self.pending.get(call_id)
        if pending is not None and not pending.taken:
            self.reject(call_id, 480, "Feature Unavailable")
        return call_id

    def press(self, call_id: str, digit: str, role: str = "caller") -> None:
        call = self.calls_by_id[call_id]
        leg = call.caller_leg if role == "caller" else call.callee_leg
        self.publish(DtmfReceived(call_id, leg or "", digit, role))

    def named(self, name: str) -> list[Command]:
        return [c for c in self.commands if c[0] == name]

    def end(
        self,
        call_id: str,
        side: str = "caller",
        cause: str = "normal_clearing",
        transferred_to: str | None = None,
    ) -> None:
        """The call is over: its players stop, its legs close, then ``CallEnded``."""
        call = self.calls_by_id[call_id]
        if call.ended:
            return
        call.state = "ended"
        call.offers.clear()
        self.moh.pop(call_id, None)
        self.connecting.pop(call_id, None)
        for play_id in [p for p, c in self.playing.items() if c == call_id]:
            del self.playing[play_id]
            self.publish(PlaybackFinished(call_id, play_id, False))
        for tap_id in [t for t, (c, _) in self.taps.items() if c == call_id]:
            del self.taps[tap_id]
        for leg in (call.caller_leg, call.callee_leg):
            if leg is not None:
                self.publish(LegClosed(leg))
        self.publish(
            CallEnded(
                call_id,
                call.caller,
                call.callee,
                side,
                cause,
                "ANSWERED",
                answered=True,
                transferred_to=transferred_to,
            )
        )

    def finish_play(self, play_id: str) -> None:
        """The prompt or tone played out."""
        call_id = self.playing.pop(play_id)
        self.publish(PlaybackFinished(call_id, play_id, True))

    def speak(self, call_id: str, pcm: Any, rate: int = 8000) -> None:
        """The caller's audio reaches every tap on the call (one 20 ms frame)."""
        for tapped, sink in list(self.taps.values()):
            if tapped == call_id:
                sink(pcm, rate)

    def answer_offer(self, call_id: str, offer_id: str) -> str:
        """The phone offered under ``offer_id`` answered; returns its leg."""
        call = self.calls_by_id[call_id]
        ext = call.offers.pop(offer_id)
        leg = f"{call_id}-{offer_id.replace('/', '-')}"
        if call.ended or call.callee_ext is not None:
            self.released.append(leg)  # the caller left, or another phone won
            return leg
        self.answered_offers[(call_id, offer_id)] = (ext, leg)
        self.publish(OfferAnswered(call_id, offer_id, ext, leg))
        if self.answered_offers.pop((call_id, offer_id), None) is not None:
            self.released.append(leg)  # neither accepted nor cancelled: nobody wants it
        return leg

    def reject_offer(self, call_id: str, offer_id: str, status: int = 486) -> None:
        """The offered phone refused (486, 603), stopped ringing (408) or was unreachable."""
        self.calls_by_id[call_id].offers.pop(offer_id)
        self.publish(OfferRejected(call_id, offer_id, status))

    def fail_connect(self, call_id: str, status: int = 480) -> None:
        """Nobody answered the extension ``connect_to`` rang."""
        target = self.connecting.pop(call_id)
        self.publish(ConnectFailed(call_id, target, status))

    def answer_originate(self, offer_id: str) -> str:
        """The phone ``originate`` rang answered: a new call whose caller is that phone."""
        call_id, extension, label = self.originated.pop(offer_id)
        self.new_call(extension, label, call_id)
        leg = self.calls_by_id[call_id].caller_leg
        self.publish(LegAnswered(call_id, leg, extension, "caller"))
        self.publish(OriginateAnswered(offer_id, call_id, extension, leg))
        return call_id

    def fail_originate(self, offer_id: str, status: int = 480) -> None:
        self.originated.pop(offer_id)
        self.publish(OriginateFailed(offer_id, status))

    def _later(self, *events: CallEvent) -> None:
        """Publish on the next loop turn (the real seam waits for the media to be up)."""

        def publish() -> None:
            for event in events:
                self.publish(event)

        asyncio.get_running_loop().call_soon(publish)

    # -- the seam -------------------------------------------------------------------------------

    def subscribe(self, handler: Callable[[CallEvent], None]) -> Callable[[], None]:
        return self.bus.subscribe(handler)

    def serve(self, *kinds: str) -> None:
        self.served.update(kinds)

    def serves(self, kind: str) -> bool:
        return kind in self.served

    def claim_feature_codes(self, owner: str, codes: Iterable[str]) -> None:
        self.codes = {c: o for c, o in self.codes.items() if o != owner}
        self.codes.update({c: owner for c in codes if c})

    def claimed_code(self, dialled: str) -> str | None:
        found = [c for c in self.codes if dialled.startswith(c)]
        return max(found, key=len) if found else None

    def info(self, call_id: str) -> CallInfo | None:
        c = self.calls_by_id.get(call_id)
        if c is None:
            return None
        notes = self.notes.get(call_id, {})
        return CallInfo(
            call_id=c.call_id,
            caller=c.caller,
            callee=c.callee,
            state=c.state,
            caller_ext=c.caller,
            caller_leg=c.caller_leg,
            callee_ext=c.callee_ext,
            callee_leg=c.callee_leg,
            linked_id=c.linked_id,
            ivr_keys=c.ivr_keys,
            offers=tuple(c.offers),
            direction=notes.get("direction") or "internal",
            dialled=notes.get("dialled"),
            queue=notes.get("queue"),
            agent=notes.get("agent"),
            caller_trunk=self.trunk_of.get((call_id, "caller")),
            callee_trunk=self.trunk_of.get((call_id, "callee")),
        )

    def snapshot(self, call_id: str) -> CallInfo:
        """``info`` for a call the test knows exists."""
        info = self.info(call_id)
        assert info is not None, call_id
        return info

    def calls(self) -> list[CallInfo]:
        return [i for c in list(self.calls_by_id) if (i := self.info(c)) is not None]

    def is_extension(self, number: str) -> bool:
        return number in self.extensions

    def take(self, call_id: str) -> None:
        self.commands.append(("take", call_id))
        if call_id in self.pending:
            self.pending[call_id].taken = True

    def reject(self, call_id: str, status: int, reason: str | None = None) -> None:
        self.commands.append(("reject", call_id, status, reason))
        self.pending.pop(call_id, None)

    def answer(self, call_id: str) -> bool:
        self.commands.append(("answer", call_id))
        pending = self.pending.pop(call_id, None)
        if pending is None:
            return False
        self.new_call(pending.caller, pending.dialled, call_id)
        leg = self.calls_by_id[call_id].caller_leg
        self._later(LegAnswered(call_id, leg, pending.caller, "caller"), CallAnswered(call_id))
        return True

    def answer_with_tone(
        self, call_id: str, tone: str = "beep", cause: str = "feature_code"
    ) -> bool:
        """The beep plays and the call hangs up on the next loop turn."""
        self.commands.append(("answer_with_tone", call_id, tone))
        pending = self.pending.pop(call_id, None)
        if pending is None:
            return False
        self.new_call(pending.caller, pending.dialled, call_id)
        leg = self.calls_by_id[call_id].caller_leg
        self._later(LegAnswered(call_id, leg, pending.caller, "caller"))
        asyncio.get_running_loop().call_soon(self.end, call_id, "system", cause)
        return True

    async def preload(self, files: Sequence[str]) -> None:
        pass

    @staticmethod
    def prewarm(files: Iterable[str]) -> list[tuple[str, str]]:
        return []

    def play(self, call_id: str, files: Sequence[str], *, loop: bool = False) -> str | None:
        if self._gone(call_id):
            return None
        play_id = f"p{next(self._ids)}"
        self.playing[play_id] = call_id
        self.commands.append(("play", call_id, list(files), play_id))
        return play_id

    def play_tone(self, call_id: str, tone: str) -> str | None:
        if self._gone(call_id):
            return None
        play_id = f"p{next(self._ids)}"
        self.playing[play_id] = call_id
        self.commands.append(("play_tone", call_id, tone, play_id))
        return play_id

    def stop_play(self, play_id: str | None) -> None:
        if play_id is not None and play_id in self.playing:
            call_id = self.playing.pop(play_id)
            self.commands.append(("stop_play", play_id))
            self.publish(PlaybackFinished(call_id, play_id, False))

    def music_on_hold(self, call_id: str, files: Sequence[str] = ()) -> None:
        self.commands.append(("music_on_hold", call_id, list(files)))
        if not self._gone(call_id):
            self.moh[call_id] = list(files)

    def stop_music_on_hold(self, call_id: str) -> None:
        if self.moh.pop(call_id, None) is not None:
            self.commands.append(("stop_music_on_hold", call_id))

    def start_tone(self, call_id: str, tone: str = "ringback") -> None:
        self.commands.append(("start_tone", call_id, tone))

    def tap(self, call_id: str, callback: Callable[[Any, int], None]) -> str | None:
        if self._gone(call_id):
            return None
        tap_id = f"t{next(self._ids)}"
        self.taps[tap_id] = (call_id, callback)
        self.commands.append(("tap", call_id, tap_id))
        return tap_id

    def tap_call(self, call_id: str, callback: Callable[[Any, int], None]) -> str | None:
        """Stereo (left: the caller, right: what the caller hears); the test feeds frames."""
        if self._gone(call_id):
            return None
        tap_id = f"t{next(self._ids)}"
        self.taps[tap_id] = (call_id, callback)
        self.commands.append(("tap_call", call_id, tap_id))
        return tap_id

    def stop_tap(self, tap_id: str) -> None:
        self.taps.pop(tap_id, None)
        self.commands.append(("stop_tap", tap_id))

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
        self.commands.append(("offer", call_id, offer_id, extension))
        self.dialled_for[(offer_id, extension)] = on_behalf_of
        call = self.calls_by_id.get(call_id)
        if call is None or call.ended or offer_id in call.offers:
            return False
        if extension not in self.extensions:
            return False
        call.offers[offer_id] = extension
        return True

    def cancel_offer(self, call_id: str, offer_id: str) -> None:
        self.commands.append(("cancel_offer", call_id, offer_id))
        answered = self.answered_offers.pop((call_id, offer_id), None)
        if answered is not None:
            self.released.append(answered[1])
            return
        call = self.calls_by_id.get(call_id)
        if call is not None:
            call.offers.pop(offer_id, None)

    def accept_offer(
        self, call_id: str, offer_id: str, *, callee_first: bool = False
    ) -> str | None:
        """As the real seam: only an answered offer can be accepted; with ``callee_first``
        the answering phone becomes the caller of a new call (the old one is retired
        without ending)."""
        self.commands.append(("accept_offer", call_id, offer_id, callee_first))
        answered = self.answered_offers.pop((call_id, offer_id), None)
        if answered is None:
            return None
        ext, leg = answered
        call = self.calls_by_id.get(call_id)
        if call is None or call.ended:
            self.released.append(leg)
            return None
        call.offers.clear()  # the other phones stop ringing
        self.moh.pop(call_id, None)
        if not callee_first:
            call.callee = call.callee_ext = ext
            call.callee_leg = leg
            self.publish(LegAnswered(call_id, leg, ext, "callee"))
            return call_id
        del self.calls_by_id[call_id]
        final = self.new_call(ext, call.caller, caller_leg=leg)
        joined = self.calls_by_id[final]
        joined.callee_ext, joined.callee_leg = call.caller, call.caller_leg
        self.publish(LegAnswered(final, leg, ext, "caller"))
        self.publish(LegAnswered(final, call.caller_leg, call.caller, "callee"))
        return final

    def connect_to(self, call_id: str, extension: str, *, outside: bool = False) -> bool:
        self.commands.append(("connect_to", call_id, extension))
        self.connected_outside[call_id] = outside
        if self._gone(call_id) or extension not in self.extensions:
            return False
        self.connecting[call_id] = extension
        return True

    def continue_after_callee(self, call_id: str, kind: str, target: str) -> None:
        self.commands.append(("continue_after_callee", call_id, kind, target))

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
        self.commands.append(("route", call_id, kind, target))
        if kind not in self.served or self._gone(call_id):
            return False
        self.moh.pop(call_id, None)  # the next service starts its own sound
        call = self.calls_by_id[call_id]
        self.publish(
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

    def annotate(self, call_id: str, **notes: Any) -> bool:
        """Record notes, as the real seam: given values replace, ``queued_at`` stays. Kept
        in ``notes``, not in ``commands`` (they change nothing a phone hears)."""
        if self._gone(call_id):
            return False
        kept = self.notes.setdefault(call_id, {})
        for name, value in notes.items():
            if value is not None and not (name == "queued_at" and name in kept):
                kept[name] = value
        return True

    def hold_acknowledgement(self, call_id: str, stored: Awaitable[None]) -> bool:
        self.commands.append(("hold_acknowledgement", call_id))
        self.held_acks[call_id] = stored
        return True

    def set_class_of_service(self, extension: str, class_of_service: str | None) -> None:
        self.commands.append(("set_class_of_service", extension, class_of_service))

    def message_waiting(self, mailbox: str, new: int, old: int) -> None:
        self.commands.append(("message_waiting", mailbox, new, old))

    def hangup(self, call_id: str, cause: str = "normal_clearing") -> None:
        self.commands.append(("hangup", call_id, cause))
        if self.pending.pop(call_id, None) is not None:
            return  # refused with 480
        if not self._gone(call_id):
            self.end(call_id, "system", cause)

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
        self.commands.append(("originate", offer_id, extension, caller_id))
        self.dialled_for[(offer_id, extension)] = on_behalf_of
        if extension not in self.extensions:
            return None
        call_id = f"c{next(self._ids)}"
        self.originated[offer_id] = (call_id, extension, label or caller_id)
        return call_id

    def cancel_originate(self, offer_id: str) -> None:
        self.commands.append(("cancel_originate", offer_id))
        self.originated.pop(offer_id, None)

    def supervise(self, supervisor_call: str, target_call: str, mode: str) -> bool:
        """``intercept``: the callee's leg closes and the supervised call ends (cause
        ``intercepted``), then the supervisor's own call; caller and supervisor go on in a
        new call linked to the supervised one (``intercepted[target]`` is its id)."""
        self.commands.append(("supervise", supervisor_call, target_call, mode))
        target = self.calls_by_id.get(target_call)
        if self._gone(supervisor_call) or target is None or target.ended:
            return False
        if target.callee_ext is None or target.callee_leg is None:
            return False
        if mode == "intercept":
            own = self.calls_by_id[supervisor_call]
            target.state = own.state = "ended"
            self.publish(LegClosed(target.callee_leg))
            self.publish(
                CallEnded(
                    target_call,
                    target.caller,
                    target.callee,
                    "system",
                    "intercepted",
                    "ANSWERED",
                    True,
                )
            )
            self.publish(
                CallEnded(
                    supervisor_call,
                    own.caller,
                    own.callee,
                    "caller",
                    "intercepted",
                    "ANSWERED",
                    True,
                )
            )
            new = self.new_call(target.caller, own.caller, caller_leg=target.caller_leg)
            joined = self.calls_by_id[new]
            joined.callee_ext, joined.callee_leg = own.caller, own.caller_leg
            joined.linked_id = target.linked_id or target_call
            self.intercepted[target_call] = new
            self.publish(LegAnswered(new, target.caller_leg, target.caller, "caller"))
            self.publish(LegAnswered(new, own.caller_leg, own.caller, "callee"))
        return True

    def _gone(self, call_id: str) -> bool:
        call = self.calls_by_id.get(call_id)
        return call is None or call.ended


def as_control(fake: FakeCallControl) -> CallControl:
    """``fake`` typed as the seam class a service takes: it has that class's interface but
    is no subclass (a subclass would inherit the real SIP machinery)."""
    return cast(CallControl, fake)

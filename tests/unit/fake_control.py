"""An in-memory call-control seam for unit tests of services (ACD host, IVR host).

It keeps calls as :class:`pbx.control.CallInfo`-like records, records every command in
``commands`` as ``(name, args...)`` and lets a test publish events as the SIP core would.
Commands with a visible outcome (answer, hang-up, accept, route, play) publish the events the
real seam would, so a service under test sees the same sequence.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pbx.control import CallInfo
from pbx.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallEvent,
    EventBus,
    LegAnswered,
    OriginateAnswered,
    PlaybackFinished,
)


@dataclass
class FakeCall:
    call_id: str
    caller: str
    callee: str
    state: str = "answered"
    callee_ext: str | None = None
    offers: list[str] = field(default_factory=list)
    linked_id: str | None = None


class FakeCallControl:
    def __init__(self, extensions: Iterable[str] = ()) -> None:
        self.bus = EventBus()
        self.calls_by_id: dict[str, FakeCall] = {}
        self.commands: list[tuple[Any, ...]] = []
        self.served: set[str] = set()
        self.codes: dict[str, str] = {}
        self.extensions = set(extensions)
        self.pending: set[str] = set()
        self.playing: dict[str, str] = {}  # play id -> call id
        self.moh: dict[str, Sequence[str]] = {}
        self.taps: dict[str, Callable[[Any, int], None]] = {}
        self._ids = itertools.count(1)
        self.originated: dict[str, tuple[str, str, str]] = {}

    # -- test helpers ------------------------------------------------------------------------------

    def publish(self, event: CallEvent) -> None:
        self.bus.publish(event)

    def new_call(self, caller: str, callee: str, call_id: str | None = None) -> str:
        call_id = call_id or f"c{next(self._ids)}"
        self.calls_by_id[call_id] = FakeCall(call_id, caller, callee)
        return call_id

    def arrive(self, kind: str, target: str, caller: str, dialled: str, **kw: Any) -> str:
        call_id = self.new_call(caller, dialled)
        self.publish(CallArrived(call_id, kind, target, caller, dialled, **kw))
        return call_id

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.commands if c[0] == name]

    def end(self, call_id: str, side: str = "caller", cause: str = "normal_clearing") -> None:
        call = self.calls_by_id[call_id]
        if call.state == "ended":
            return
        call.state = "ended"
        self.publish(CallEnded(call_id, call.caller, call.callee, side, cause, "ANSWERED", True))

    def finish_play(self, play_id: str) -> None:
        call_id = self.playing.pop(play_id)
        self.publish(PlaybackFinished(call_id, play_id, True))

    # -- the seam ----------------------------------------------------------------------------------

    def subscribe(self, handler: Callable[[CallEvent], None]) -> Callable[[], None]:
        return self.bus.subscribe(handler)

    def serve(self, *kinds: str) -> None:
        self.served.update(kinds)

    def serves(self, kind: str) -> bool:
        return kind in self.served

    def claim_feature_codes(self, owner: str, codes: Iterable[str]) -> None:
        self.codes = {c: o for c, o in self.codes.items() if o != owner}
        self.codes.update({c: owner for c in codes})

    def info(self, call_id: str) -> CallInfo | None:
        c = self.calls_by_id.get(call_id)
        if c is None:
            return None
        return CallInfo(
            call_id=c.call_id,
            caller=c.caller,
            callee=c.callee,
            state=c.state,
            caller_ext=c.caller,
            caller_leg=f"{c.call_id}-a",
            callee_ext=c.callee_ext,
            callee_leg=f"{c.call_id}-b" if c.callee_ext else None,
            linked_id=c.linked_id,
            ivr_keys="",
            offers=tuple(c.offers),
        )

    def calls(self) -> list[CallInfo]:
        return [i for c in list(self.calls_by_id) if (i := self.info(c)) is not None]

    def is_extension(self, number: str) -> bool:
        return number in self.extensions

    def reject(self, call_id: str, status: int, reason: str | None = None) -> None:
        self.commands.append(("reject", call_id, status, reason))
        self.pending.discard(call_id)

    def answer(self, call_id: str) -> bool:
        self.commands.append(("answer", call_id))
        self.pending.discard(call_id)
        self.publish(CallAnswered(call_id))
        return True

    def answer_with_tone(self, call_id: str, tone: str = "beep", cause: str = "") -> bool:
        self.commands.append(("answer_with_tone", call_id, tone))
        self.pending.discard(call_id)
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
            self.publish(PlaybackFinished(call_id, play_id, False))

    def music_on_hold(self, call_id: str, files: Sequence[str] = ()) -> None:
        self.moh[call_id] = list(files)
        self.commands.append(("music_on_hold", call_id, list(files)))

    def stop_music_on_hold(self, call_id: str) -> None:
        if self.moh.pop(call_id, None) is not None:
            self.commands.append(("stop_music_on_hold", call_id))

    def start_tone(self, call_id: str, tone: str = "ringback") -> None:
        self.commands.append(("start_tone", call_id, tone))

    def tap(self, call_id: str, callback: Callable[[Any, int], None]) -> str | None:
        tap_id = f"t{next(self._ids)}"
        self.taps[tap_id] = callback
        self.commands.append(("tap", call_id, tap_id))
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
    ) -> bool:
        call = self.calls_by_id.get(call_id)
        if call is None or call.state == "ended" or extension not in self.extensions:
            return False
        call.offers.append(offer_id)
        self.commands.append(("offer", call_id, offer_id, extension))
        return True

    def cancel_offer(self, call_id: str, offer_id: str) -> None:
        call = self.calls_by_id.get(call_id)
        if call is not None and offer_id in call.offers:
            call.offers.remove(offer_id)
        self.commands.append(("cancel_offer", call_id, offer_id))

    def accept_offer(
        self, call_id: str, offer_id: str, *, callee_first: bool = False
    ) -> str | None:
        call = self.calls_by_id[call_id]
        self.commands.append(("accept_offer", call_id, offer_id, callee_first))
        ext = offer_id.split("/", 1)[-1]
        for other in list(call.offers):
            self.cancel_offer(call_id, other)
        self.moh.pop(call_id, None)
        if callee_first:
            new_id = f"c{next(self._ids)}"
            self.calls_by_id[new_id] = replace(call, call_id=new_id, offers=[])
            call.state = "ended"
            return new_id
        call.callee_ext = ext
        call.callee = ext
        return call_id

    def connect_to(self, call_id: str, extension: str) -> bool:
        self.commands.append(("connect_to", call_id, extension))
        return extension in self.extensions

    def continue_after_callee(self, call_id: str, kind: str, target: str) -> None:
        self.commands.append(("continue_after_callee", call_id, kind, target))

    def route(self, call_id: str, kind: str, target: str, **kw: Any) -> bool:
        self.commands.append(("route", call_id, kind, target))
        if kind not in self.served or self._gone(call_id):
            return False
        call = self.calls_by_id[call_id]
        self.publish(
            CallArrived(
                call_id,
                kind,
                target,
                call.caller,
                call.callee,
                priority=kw.get("priority"),
                skills=tuple(kw.get("skills", ())),
                variables=tuple((kw.get("variables") or {}).items()),
                survey=kw.get("survey"),
            )
        )
        return True

    def hangup(self, call_id: str, cause: str = "normal_clearing") -> None:
        self.commands.append(("hangup", call_id, cause))
        if call_id in self.calls_by_id:
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
    ) -> str | None:
        self.commands.append(("originate", offer_id, extension, caller_id))
        if extension not in self.extensions:
            return None
        call_id = f"c{next(self._ids)}"
        self.originated[offer_id] = (call_id, extension, label or caller_id)
        return call_id

    def answer_originate(self, offer_id: str) -> str:
        call_id, extension, label = self.originated.pop(offer_id)
        self.new_call(extension, label, call_id)
        self.publish(LegAnswered(call_id, f"{call_id}-a", extension, "caller"))
        self.publish(OriginateAnswered(offer_id, call_id, extension, f"{call_id}-a"))
        return call_id

    def cancel_originate(self, offer_id: str) -> None:
        self.commands.append(("cancel_originate", offer_id))

    def supervise(self, supervisor_call: str, target_call: str, mode: str) -> bool:
        self.commands.append(("supervise", supervisor_call, target_call, mode))
        return target_call in self.calls_by_id

    def _gone(self, call_id: str) -> bool:
        call = self.calls_by_id.get(call_id)
        return call is None or call.state == "ended"

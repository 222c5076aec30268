"""Phone feature codes and per-extension call settings (DND, call forwarding), sans-IO.

Theory of operation
-------------------
A phone changes its own settings by dialling a *feature code* (``*72`` + number to forward
every call, ``*78`` to turn on do-not-disturb, …; the codes come from the ``features`` section
of the config). :meth:`FeatureCodes.parse` turns a dialled string into a
:class:`FeatureRequest`; the server applies it to the caller's :class:`ExtensionSettings`
and confirms with a beep. Routing then asks :func:`route` where a call to an extension goes:

1. unconditional forwarding wins (followed through chains, with loop detection);
2. do-not-disturb makes the extension busy (so busy forwarding applies, else 486);
3. otherwise the phones ring; busy and no-answer forwarding are applied by the B2BUA when
   the attempt fails (:meth:`ExtensionSettings.forward_for`).

Settings outlive calls and restarts: the server persists them through the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

__all__ = [
    "MAX_FORWARD_HOPS",
    "ExtensionSettings",
    "Feature",
    "FeatureCodes",
    "FeatureRequest",
    "Route",
    "route",
]

MAX_FORWARD_HOPS = 5


class Feature(Enum):
    FORWARD_ALL_ON = "forward_all_on"
    FORWARD_ALL_OFF = "forward_all_off"
    FORWARD_BUSY_ON = "forward_busy_on"
    FORWARD_BUSY_OFF = "forward_busy_off"
    FORWARD_NO_ANSWER_ON = "forward_no_answer_on"
    FORWARD_NO_ANSWER_OFF = "forward_no_answer_off"
    DND_ON = "dnd_on"
    DND_OFF = "dnd_off"
    PICKUP = "pickup"
    DIRECTED_PICKUP = "directed_pickup"
    VOICEMAIL_OWN = "voicemail_own"  # the caller's own mailbox (the voicemail service answers)
    VOICEMAIL_ANY = "voicemail_any"  # any mailbox: its number follows, or is asked for


# Features that take the digits dialled after the code (a target number).
_WITH_ARGUMENT = frozenset(
    {
        Feature.FORWARD_ALL_ON,
        Feature.FORWARD_BUSY_ON,
        Feature.FORWARD_NO_ANSWER_ON,
        Feature.DIRECTED_PICKUP,
        Feature.VOICEMAIL_ANY,
    }
)


@dataclass(frozen=True, slots=True)
class FeatureRequest:
    feature: Feature
    argument: str = ""


class FeatureCodes:
    """The configured codes; ``parse`` recognises a dialled string."""

    def __init__(self, codes: dict[str, str]) -> None:
        self._codes: list[tuple[str, Feature]] = sorted(
            ((code, Feature(name)) for name, code in codes.items()),
            key=lambda item: -len(item[0]),  # longest code first: "**" + ext vs "*8"
        )

    def parse(self, dialled: str) -> FeatureRequest | None:
        """The feature a dialled string asks for, or None when it is not a feature code.

        A code that needs a number but got none (``*72`` alone) is still recognised, with
        an empty argument, so the server can answer 484 Address Incomplete.
        """
        if not dialled or dialled[0] not in "*#":
            return None
        for code, feature in self._codes:
            if feature in _WITH_ARGUMENT:
                if dialled.startswith(code):
                    rest = dialled[len(code) :]
                    if rest == "" or rest.isdigit():
                        return FeatureRequest(feature, rest)
            elif dialled == code:
                return FeatureRequest(feature)
        return None


@dataclass(frozen=True, slots=True)
class ExtensionSettings:
    dnd: bool = False
    forward_all: str | None = None
    forward_busy: str | None = None
    forward_no_answer: str | None = None

    def apply(self, request: FeatureRequest) -> ExtensionSettings:
        """These settings after a feature request (pickup and mailbox requests change
        nothing)."""
        arg = request.argument or None
        match request.feature:
            case Feature.FORWARD_ALL_ON:
                return replace(self, forward_all=arg)
            case Feature.FORWARD_ALL_OFF:
                return replace(self, forward_all=None)
            case Feature.FORWARD_BUSY_ON:
                return replace(self, forward_busy=arg)
            case Feature.FORWARD_BUSY_OFF:
                return replace(self, forward_busy=None)
            case Feature.FORWARD_NO_ANSWER_ON:
                return replace(self, forward_no_answer=arg)
            case Feature.FORWARD_NO_ANSWER_OFF:
                return replace(self, forward_no_answer=None)
            case Feature.DND_ON:
                return replace(self, dnd=True)
            case Feature.DND_OFF:
                return replace(self, dnd=False)
        return self

    def forward_for(self, reason: str) -> str | None:
        """Where a failed attempt goes: ``reason`` is "busy" or "no_answer"."""
        return self.forward_busy if reason == "busy" else self.forward_no_answer


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call to an extension goes before any phone rings."""

    target: str  # the extension whose phones ring (after unconditional forwarding)
    busy: bool = False  # do-not-disturb: treat as busy without ringing
    hops: tuple[str, ...] = ()  # extensions forwarded through, in order
    loop: bool = False  # forwarding loops back: the call cannot be delivered


def route(ext: str, settings_of: dict[str, ExtensionSettings]) -> Route:
    """Follow unconditional forwarding from ``ext`` (RFC-free PBX logic)."""
    seen = [ext]
    current = ext
    for _ in range(MAX_FORWARD_HOPS):
        s = settings_of.get(current)
        if s is None or s.forward_all is None:
            return Route(current, busy=bool(s and s.dnd), hops=tuple(seen[:-1]))
        nxt = s.forward_all
        if nxt in seen:
            return Route(current, hops=tuple(seen[:-1]), loop=True)
        seen.append(nxt)
        current = nxt
    return Route(current, hops=tuple(seen[:-1]), loop=True)

"""Call events: what the call-control seam tells services, and the bus that carries them.

Theory of operation
-------------------
Every fact about a call that a service (ACD, IVR, recorder, web panel, trunks) may care about
is published once, as a frozen dataclass named in the past tense, to *every* subscriber of one
:class:`EventBus`. Services filter by the ids they hold; nobody replaces anybody's callback.
Publishing is synchronous and in order: a subscriber may issue commands from its handler (the
ACD accepts an answered offer while the agent's 200 OK is being handled), and events those
commands cause are delivered, depth first, before :meth:`EventBus.publish` returns. A
subscriber that raises is logged and stays subscribed; the others still get the event.

Ids: ``call_id`` is Switchboard's id of a call (the call record's ``record_id``), ``leg_id``
the media leg of one party, ``offer_id`` the caller's own name for an offer or an originated
call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

__all__ = [
    "CallAnswered",
    "CallArrived",
    "CallEnded",
    "CallEvent",
    "CallRetired",
    "CallStarted",
    "ConnectFailed",
    "DtmfReceived",
    "EventBus",
    "FeatureCodeDialled",
    "LegAnswered",
    "LegClosed",
    "OfferAnswered",
    "OfferRejected",
    "OriginateAnswered",
    "OriginateFailed",
    "PlaybackFinished",
    "RegistrationChanged",
]

log = structlog.get_logger("pbx.events")


@dataclass(frozen=True, slots=True)
class CallArrived:
    """An answered call was handed to the service that serves destinations of ``kind``
    (``queue``, ``ivr``, ``voicemail``): from the dialplan, a flow, an overflow or a
    post-call survey. ``linked_id`` names the call this one continues (a survey)."""

    call_id: str
    kind: str
    target: str
    caller: str
    dialled: str
    priority: int | None = None
    skills: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    survey: str | None = None
    linked_id: str | None = None


@dataclass(frozen=True, slots=True)
class FeatureCodeDialled:
    """A phone dialled a code the SIP core does not own but a service claimed. The call is
    not answered yet: the service answers it (:meth:`CallControl.answer`, ``answer_with_tone``)
    or rejects it with a status."""

    call_id: str
    caller: str
    code: str
    digits: str  # what was dialled after the code (a reason, an agent's extension)


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """A call answered by :meth:`CallControl.answer` has its media up."""

    call_id: str


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """A party's dialog is up on a call: ``extension`` is on the phone now. ``trunk`` is
    the trunk the party was reached through (None: a local phone); a trunk party's
    ``extension`` is the number dialled, not a phone of ours."""

    call_id: str
    leg_id: str
    extension: str
    role: str  # "caller" or "callee"
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class LegClosed:
    """A party's media leg was released (their part of a call is over)."""

    leg_id: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A party pressed a key (RFC 4733, SIP INFO or in-band, reported once)."""

    call_id: str
    leg_id: str
    digit: str
    role: str  # "caller" or "callee"


@dataclass(frozen=True, slots=True)
class OfferAnswered:
    """The phone offered under ``offer_id`` answered; connect it with
    :meth:`CallControl.accept_offer` or release it with ``cancel_offer``."""

    call_id: str
    offer_id: str
    extension: str
    leg_id: str


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """The offer ended without an answer: the phone refused (486, 603), stopped ringing
    (408/480) or could not be reached (503)."""

    call_id: str
    offer_id: str
    status: int


@dataclass(frozen=True, slots=True)
class OriginateAnswered:
    """A phone called by :meth:`CallControl.originate` answered; ``call_id`` is the new,
    answered call whose caller is that phone."""

    offer_id: str
    call_id: str
    extension: str
    leg_id: str


@dataclass(frozen=True, slots=True)
class OriginateFailed:
    offer_id: str
    status: int


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """:meth:`CallControl.connect_to` rang ``target`` and nobody answered."""

    call_id: str
    target: str
    status: int


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A prompt started by :meth:`CallControl.play` ended (played out or stopped)."""

    call_id: str
    play_id: str
    completed: bool


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over: ``side`` hung up (``caller``, ``callee``, ``system``) with
    ``cause`` (``normal_clearing``, ``transferred``, ...). ``callee`` is who the caller was
    talking to last. ``direction`` (``inbound``, ``outbound``, ``internal``), ``disposition``
    and the RTCP loss fractions (0..1; None when a leg received no media) are the call
    record's (:class:`pbx.persistence.CallDetail`). ``transferred_to``: for cause
    ``transferred``, the extension, number or queue the other party went to (None when
    unknown)."""

    call_id: str
    caller: str
    callee: str
    side: str
    cause: str
    disposition: str
    answered: bool
    direction: str = "internal"
    caller_loss: float | None = None
    callee_loss: float | None = None
    transferred_to: str | None = None


@dataclass(frozen=True, slots=True)
class CallStarted:
    """Switchboard holds a new call (a phone's or a trunk's INVITE, or a call made anew
    after a transfer or for an application): the web panel and metrics see every call,
    not only those a service serves (``CallArrived``). ``caller_trunk`` is the trunk the
    caller arrived through (None: a local phone): a trunk caller's ``caller_ext`` is the
    number it presented, which anybody can claim (an extension's number, say)."""

    call_id: str
    caller: str
    callee: str
    caller_ext: str
    linked_id: str | None = None
    caller_trunk: str | None = None

    @property
    def local_caller_ext(self) -> str | None:
        """The caller's extension when the caller is a local phone, not a trunk party."""
        return self.caller_ext if self.caller_trunk is None else None


@dataclass(frozen=True, slots=True)
class CallRetired:
    """A call whose parties go on in another call (pickup, intercept, a queue's callback
    bridged): it ends without a record and without a ``CallEnded``."""

    call_id: str


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """A binding of ``aor`` was ``added``, ``refreshed``, ``removed`` (by the phone) or
    ``expired`` (RFC 3261 §10.2.4 / §10.3)."""

    aor: str
    contact: str
    event: str
    source: str
    user_agent: str = ""


CallEvent = (
    CallArrived
    | CallStarted
    | CallRetired
    | RegistrationChanged
    | FeatureCodeDialled
    | CallAnswered
    | LegAnswered
    | LegClosed
    | DtmfReceived
    | OfferAnswered
    | OfferRejected
    | OriginateAnswered
    | OriginateFailed
    | ConnectFailed
    | PlaybackFinished
    | CallEnded
)

Subscriber = Callable[[CallEvent], None]


class EventBus:
    """Delivers each event to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, handler: Subscriber) -> Callable[[], None]:
        """Add ``handler``; the returned function removes it again."""
        self._subscribers.append(handler)

        def unsubscribe() -> None:
            if handler in self._subscribers:
                self._subscribers.remove(handler)

        return unsubscribe

    def publish(self, event: CallEvent) -> None:
        for handler in tuple(self._subscribers):
            try:
                handler(event)
            except Exception:
                # One broken subscriber must not cost the others the event, nor the call.
                log.exception("subscriber_failed", kind=type(event).__name__)

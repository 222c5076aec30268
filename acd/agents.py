"""Agent states as a transition table.

Theory of operation
-------------------
An agent is in exactly one :class:`AgentState`. Every change goes through
:meth:`AgentStateMachine.apply` with an :class:`AgentEvent`; the pair (state, event) is looked
up in :data:`TRANSITIONS`, and a pair that is not there raises :class:`IllegalTransition`, so
no code path can invent a state change. Each applied change returns an
:class:`AgentTransition` for the agent state log.

Requests that cannot apply now are remembered instead of refused: a pause or a logout asked
for while RINGING, ON_CALL or WRAP_UP is *pending* and applies when the agent would next
become AVAILABLE (at hang-up, or at the end of wrap-up).

NOT_READY carries a reason: busy, break, lunch, training, after_no_answer (auto-pause after
missed offers) or any custom text from the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "NOT_READY_REASONS",
    "TRANSITIONS",
    "AgentEvent",
    "AgentState",
    "AgentStateMachine",
    "AgentTransition",
    "IllegalTransition",
]


class AgentState(Enum):
    LOGGED_OUT = "LOGGED_OUT"
    AVAILABLE = "AVAILABLE"
    NOT_READY = "NOT_READY"
    RINGING = "RINGING"  # offered a queue call
    ON_CALL = "ON_CALL"  # inbound (queue), outbound or internal
    WRAP_UP = "WRAP_UP"


class AgentEvent(Enum):
    LOGIN = "login"
    LOGOUT = "logout"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    OFFER = "offer"  # a queue call rings the agent
    ANSWER = "answer"  # the agent answered the offer
    NO_ANSWER = "no_answer"  # the offer timed out or was declined
    OFFER_GONE = "offer_gone"  # the caller left, or another agent answered (ring all)
    CALL_START = "call_start"  # any other call (outbound, internal, direct inbound)
    CALL_END = "call_end"  # a call ended without wrap-up
    CALL_END_WRAP = "call_end_wrap"  # a queue call ended and wrap-up starts
    WRAP_END = "wrap_end"
    AUTO_PAUSE = "auto_pause"  # after N missed offers
    # Back after a restart or crash as the store last saw them (logged in, or paused with
    # the same reason): their session goes on, so no new login is logged.
    RESTORE = "restore"
    RESTORE_PAUSED = "restore_paused"


S, E = AgentState, AgentEvent

# (state, event) -> next state. "AVAILABLE" targets may be redirected by a pending request.
TRANSITIONS: dict[tuple[AgentState, AgentEvent], AgentState] = {
    (S.LOGGED_OUT, E.LOGIN): S.AVAILABLE,
    (S.LOGGED_OUT, E.RESTORE): S.AVAILABLE,
    (S.LOGGED_OUT, E.RESTORE_PAUSED): S.NOT_READY,
    (S.LOGGED_OUT, E.CALL_START): S.LOGGED_OUT,  # not an agent now: nothing to track
    (S.LOGGED_OUT, E.CALL_END): S.LOGGED_OUT,
    (S.AVAILABLE, E.LOGOUT): S.LOGGED_OUT,
    (S.AVAILABLE, E.PAUSE): S.NOT_READY,
    (S.AVAILABLE, E.OFFER): S.RINGING,
    (S.AVAILABLE, E.CALL_START): S.ON_CALL,
    (S.NOT_READY, E.LOGOUT): S.LOGGED_OUT,
    (S.NOT_READY, E.PAUSE): S.NOT_READY,  # another reason
    (S.NOT_READY, E.UNPAUSE): S.AVAILABLE,
    (S.NOT_READY, E.CALL_START): S.ON_CALL,  # a paused agent may still call out
    (S.RINGING, E.ANSWER): S.ON_CALL,
    (S.RINGING, E.NO_ANSWER): S.AVAILABLE,
    (S.RINGING, E.AUTO_PAUSE): S.NOT_READY,
    (S.RINGING, E.OFFER_GONE): S.AVAILABLE,
    (S.RINGING, E.CALL_START): S.ON_CALL,  # picked up another line while ringing
    (S.ON_CALL, E.CALL_END): S.AVAILABLE,
    (S.ON_CALL, E.CALL_END_WRAP): S.WRAP_UP,
    (S.WRAP_UP, E.WRAP_END): S.AVAILABLE,
    (S.WRAP_UP, E.CALL_START): S.ON_CALL,  # an outbound call during wrap-up
    (S.WRAP_UP, E.LOGOUT): S.LOGGED_OUT,
}

NOT_READY_REASONS = ("busy", "break", "lunch", "training", "after_no_answer")


class IllegalTransition(Exception):
    """The event does not apply to the agent's state."""


@dataclass(frozen=True, slots=True)
class AgentTransition:
    """One line of the agent state log."""

    agent: str
    at: float
    old: AgentState
    new: AgentState
    event: AgentEvent
    reason: str | None = None  # the NOT_READY reason, or why (e.g. "pending pause")


class AgentStateMachine:
    """One agent's state, with pending pause/logout requests."""

    __slots__ = ("agent", "pending", "pending_reason", "reason", "since", "state")

    def __init__(self, agent: str, now: float = 0.0) -> None:
        self.agent = agent
        self.state = AgentState.LOGGED_OUT
        self.reason: str | None = None  # NOT_READY reason, or ON_CALL kind
        self.since = now
        self.pending: AgentEvent | None = None  # PAUSE or LOGOUT asked for during a call
        self.pending_reason: str | None = None

    def can(self, event: AgentEvent) -> bool:
        return (self.state, event) in TRANSITIONS

    def apply(self, event: AgentEvent, now: float, reason: str | None = None) -> AgentTransition:
        """Move on ``event``; raise :class:`IllegalTransition` if the table has no entry."""
        try:
            new = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalTransition(f"{self.agent}: {event.value} in {self.state.value}") from None
        if new is AgentState.NOT_READY and reason is None:
            reason = "after_no_answer" if event is AgentEvent.AUTO_PAUSE else "busy"
        if new is AgentState.ON_CALL and reason is None:
            reason = "inbound"  # a queue call; other calls name their kind
        if new is AgentState.NOT_READY and self.pending is AgentEvent.LOGOUT:
            new, reason = AgentState.LOGGED_OUT, "pending logout"  # they asked to leave
        if new in (AgentState.LOGGED_OUT, AgentState.NOT_READY):
            self.pending = self.pending_reason = None  # nothing left to apply later
        if new is AgentState.AVAILABLE and self.pending is not None:
            # A pause or logout asked for during the call applies now, instead of AVAILABLE.
            if self.pending is AgentEvent.LOGOUT:
                new, reason = AgentState.LOGGED_OUT, "pending logout"
            else:
                new, reason = AgentState.NOT_READY, self.pending_reason or "busy"
            self.pending = self.pending_reason = None
        old = self.state
        self.state = new
        # NOT_READY keeps why (break, lunch...), ON_CALL the kind (inbound, outbound, internal).
        self.reason = reason if new in (AgentState.NOT_READY, AgentState.ON_CALL) else None
        self.since = now
        return AgentTransition(self.agent, now, old, new, event, reason)

    def request(
        self, event: AgentEvent, now: float, reason: str | None = None
    ) -> AgentTransition | None:
        """A pause or logout from the agent: applied now when the state allows it, else kept
        pending until the current call (and wrap-up) ends. Returns the transition if any."""
        if event not in (AgentEvent.PAUSE, AgentEvent.LOGOUT):
            raise ValueError("only pause and logout can be requested")
        if self.state in (AgentState.RINGING, AgentState.ON_CALL) or (
            self.state is AgentState.WRAP_UP and event is AgentEvent.PAUSE
        ):
            self.pending, self.pending_reason = event, reason
            return None
        return self.apply(event, now, reason)

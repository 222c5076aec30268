"""ACD: agents and their states, skill-based queues, routing strategies, wrap-up, overflow,
callbacks and the queue event log. :class:`Acd` is sans-IO: the host feeds it events and a
clock and carries out the :data:`Action` values it returns."""

from acd.agents import AgentEvent, AgentState, AgentStateMachine, AgentTransition, IllegalTransition
from acd.engine import (
    Acd,
    Action,
    AgentSnapshot,
    Announce,
    CancelOffer,
    DialCallback,
    ExitQueue,
    JoinResult,
    Offer,
    OfferCallback,
    QueueEvent,
    QueueSnapshot,
)
from acd.model import (
    AgentConfig,
    QueueConfig,
    Requirement,
    RuleStep,
    Strategy,
    WrapUpMode,
    parse_requirements,
)

__all__ = [
    "Acd",
    "Action",
    "AgentConfig",
    "AgentEvent",
    "AgentSnapshot",
    "AgentState",
    "AgentStateMachine",
    "AgentTransition",
    "Announce",
    "CancelOffer",
    "DialCallback",
    "ExitQueue",
    "IllegalTransition",
    "JoinResult",
    "Offer",
    "OfferCallback",
    "QueueConfig",
    "QueueEvent",
    "QueueSnapshot",
    "Requirement",
    "RuleStep",
    "Strategy",
    "WrapUpMode",
    "parse_requirements",
]

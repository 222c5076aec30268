"""The ACD: who gets which call, decided from events on an injected clock (sans-IO).

Theory of operation
-------------------
:class:`Acd` holds agents (:mod:`acd.agents` state machines), queues and waiting calls. The
host (the SIP server) tells it what happens — a call joins a queue, an agent answers, a caller
hangs up, a phone feature code pauses an agent — passing the time ``now`` in seconds (epoch in
production, a fake clock in tests), and calls :meth:`Acd.tick` at :meth:`Acd.next_deadline`.
The ACD answers with :class:`Action` values for the host to carry out (ring this agent with
that call, stop ringing, the caller leaves for the overflow destination, announce the
position, dial a callback), appends :class:`QueueEvent` lines (Asterisk ``queue_log``
vocabulary) and :class:`acd.agents.AgentTransition` lines for the store, and never does I/O.

Routing is event-driven:

- a call arrives, its retry delay ends, its skill rule widens or a last-agent reservation
  lapses → the call is matched against the free agents, chosen by the queue's strategy;
- an agent becomes free → the agent takes the best waiting call among every queue they
  serve: the highest priority first, then the caller who has waited longest (over all
  queues, so queues that share agents are served fairly), then arrival order.

Everything is deterministic for a given clock: ties break on arrival sequence and agent order,
and ``random``/``weighted_random`` draw from a seeded generator.

A callback keeps the caller's entry — and so their place — in the queue, without a call: when
it reaches an agent, the ACD reserves the agent and asks the host to dial
(:class:`DialCallback`); failed attempts retry after a delay, still in place.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from acd.agents import AgentEvent, AgentState, AgentStateMachine, AgentTransition
from acd.model import AgentConfig, QueueConfig, RuleStep, Strategy, WrapUpMode, required_skills

__all__ = [
    "Acd",
    "Action",
    "AgentSnapshot",
    "Announce",
    "CancelOffer",
    "DialCallback",
    "ExitQueue",
    "JoinResult",
    "Offer",
    "OfferCallback",
    "QueueEvent",
    "QueueSnapshot",
]


# The longest a callback dial may keep its agent reserved before it counts as failed.
CALLBACK_DIAL_LIMIT = 120.0
# An agent who missed (or refused) an offer is not offered the same caller again for at least
# this long, even with a retry delay of 0.
MIN_REOFFER_DELAY = 1.0
# Average talk time assumed for a queue with no call in its history (the estimated wait).
DEFAULT_TALK_SECONDS = 180.0
# Weight of the newest call in a queue's average talk time (exponential smoothing).
TALK_SMOOTHING = 0.2

# --- what the host is told to do ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring ``agent`` with ``call`` for at most ``timeout`` seconds."""

    call: str
    agent: str
    queue: str
    timeout: float


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing ``agent`` with ``call`` (timed out, or someone else answered)."""

    call: str
    agent: str


@dataclass(frozen=True, slots=True)
class ExitQueue:
    """The caller leaves the queue; ``destination`` is where to (None: hang up)."""

    call: str
    queue: str
    reason: str  # timeout | empty | full | joinempty | key
    destination: str | None


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the caller their position and the estimated wait (or a periodic message)."""

    call: str
    queue: str
    position: int
    estimated_wait: float
    periodic: bool = False


@dataclass(frozen=True, slots=True)
class OfferCallback:
    """Offer the caller a callback (press the queue's callback key)."""

    call: str
    queue: str


@dataclass(frozen=True, slots=True)
class DialCallback:
    """A callback reached an agent: call them (and the customer) in the configured order."""

    call: str
    queue: str
    agent: str
    number: str
    agent_first: bool
    attempt: int


Action = Offer | CancelOffer | ExitQueue | Announce | OfferCallback | DialCallback


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One ``queue_log`` line: ``time|call|queue|agent|event|data...``."""

    time: float
    call: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def queue_log_line(self) -> str:
        """Asterisk ``queue_log`` text (epoch seconds, ``NONE`` for no call/queue/agent)."""
        parts = [str(int(self.time)), self.call or "NONE", self.queue or "NONE"]
        parts += [self.agent or "NONE", self.event, *self.data]
        return "|".join(parts)


@dataclass(frozen=True, slots=True)
class JoinResult:
    joined: bool
    position: int = 0  # 1-based, when joined
    reason: str | None = None  # full | joinempty | unknown_queue | duplicate


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """A queue now, for the API and metrics: ``agents`` counts the queue's members by
    :class:`AgentState` value (logged-out members too); ``waiting`` counts callers on hold
    (callback requests keep their place but are not callers waiting on the line)."""

    name: str
    strategy: str
    waiting: int
    longest_wait_seconds: float
    agents: dict[str, int]
    members: tuple[str, ...]
    service_level_seconds: float


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """An agent now: ``since`` is the epoch time of their last state change, ``reason`` the
    NOT_READY reason or the ON_CALL kind, ``current_call`` the call they talk on (set by the
    host, which knows the calls; the ACD's own id of a queue call otherwise)."""

    id: str
    name: str
    extensions: tuple[str, ...]
    state: str
    reason: str | None
    since: float
    queues: tuple[str, ...]
    current_call: str | None = None


# --- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Agent:
    cfg: AgentConfig
    sm: AgentStateMachine
    order: int  # position in the configuration (ties break on it)
    idle_since: float = 0.0
    calls: int = 0
    talk_time: float = 0.0
    missed: int = 0
    offered: str | None = None  # the call ringing this agent
    on_call: str | None = None  # the queue call being handled
    call_started: float = 0.0
    wrap_until: float | None = None
    wrap_queue: str = ""  # the queue whose wrap-up rules apply
    login_at: float = 0.0
    queues: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)  # identity: list.remove/index must not compare fields
class _Call:
    id: str
    queue: str
    caller: str
    priority: int
    variables: Mapping[str, str]
    arrived: float  # first arrival in the ACD (fairness across queues and overflow)
    entered: float  # arrival in this queue
    seq: int
    orig_position: int
    key: tuple[int, float, int] = (0, 0.0, 0)
    offers: dict[str, float] = field(default_factory=dict)  # agent -> offered at
    tried: set[str] = field(default_factory=set)
    retry_at: float = 0.0
    first_offer_at: float | None = None
    reserved_for: str | None = None
    reserved_until: float = 0.0
    callback: str | None = None  # the number to call back: this entry is a callback
    callback_attempts: int = 0
    callback_offered: bool = False
    step: int = 0
    agent: str | None = None  # who is talking with the caller, once connected
    missed: dict[str, float] = field(default_factory=dict)  # agent -> when they missed it
    # Skills the route or IVR node requires (the ``skills`` variable): an agent lacking any
    # of them never gets this caller, whatever the queue's rules say.
    required: tuple[str, ...] = ()

    def __lt__(self, other: _Call) -> bool:
        return self.key < other.key


@dataclass(slots=True)
class _Queue:
    cfg: QueueConfig
    waiting: list[_Call] = field(default_factory=list)  # sorted by (-priority, arrived, seq)
    rr_next: int = 0  # round robin: index in members where the next search starts
    avg_talk: float = 0.0
    answered: int = 0
    in_service: int = 0


class Acd:
    """Agents, queues and waiting calls; see the module documentation."""

    def __init__(
        self,
        agents: Iterable[AgentConfig],
        queues: Iterable[QueueConfig],
        *,
        seed: int = 0,
        now: float = 0.0,
    ) -> None:
        self.agents: dict[str, _Agent] = {}
        for i, cfg in enumerate(agents):
            self.agents[cfg.id] = _Agent(cfg, AgentStateMachine(cfg.id, now), i)
        self.queues: dict[str, _Queue] = {q.name: _Queue(q) for q in queues}
        self._check_members()
        self._retired: set[str] = set()  # agents and queues dropped by reconfigure, draining
        self._link_agents()
        self.calls: dict[str, _Call] = {}
        self.actions: list[Action] = []
        self.events: list[QueueEvent] = []
        self.agent_log: list[AgentTransition] = []
        self.last_agent: dict[str, tuple[str, float]] = {}  # caller -> (agent, when)
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        self._timers: list[tuple[float, int, str, str, str]] = []  # (at, seq, kind, a, b)
        self._free: dict[str, None] = {}  # AVAILABLE agents, in the order they became free
        # The same per queue, for the agents who could serve it (what an arrival scans).
        self._free_for: dict[str, dict[str, None]] = {name: {} for name in self.queues}
        self._reserved: dict[str, dict[str, None]] = {}  # agent -> calls held for them

    def _check_members(self) -> None:
        for q in self.queues.values():
            unknown = [m for m in q.cfg.members if m not in self.agents]
            if unknown:
                raise ValueError(f"queue {q.cfg.name}: unknown agents {unknown}")

    def _link_agents(self) -> None:
        """Which queues each agent can serve (members, or skills for member-less queues)."""
        for a in self.agents.values():
            a.queues = [
                q.cfg.name
                for q in self.queues.values()
                if a.cfg.id not in self._retired  # retired queues are served until empty
                and (a.cfg.id in q.cfg.members or not q.cfg.members)
                and _could_serve(a.cfg, q.cfg)
            ]

    def reconfigure(
        self, agents: Iterable[AgentConfig], queues: Iterable[QueueConfig], now: float
    ) -> None:
        """New agent and queue settings while calls go on (``config reload``).

        Agents and queues that stay keep their state: agents their login, pause, call and
        wrap-up; queues their waiting callers in order. New ones start empty (agents logged
        out). An agent who is gone is logged out (after their current call); a queue that is
        gone takes no new callers and disappears once its waiting callers are served."""
        new_agents = list(agents)
        new_queues = {q.name: q for q in queues}
        known = {a.id for a in new_agents}
        for cfg in new_agents:
            current = self.agents.get(cfg.id)
            if current is None:
                self.agents[cfg.id] = _Agent(cfg, AgentStateMachine(cfg.id, now), len(self.agents))
            else:
                current.cfg = cfg
            self._retired.discard(cfg.id)
        for agent_id in [a for a in self.agents if a not in known]:
            self._retired.add(agent_id)
            self.logout(agent_id, now)
        for name, qcfg in new_queues.items():
            if name in self.queues:
                self.queues[name].cfg = qcfg
            else:
                self.queues[name] = _Queue(qcfg)
                self._free_for[name] = {}
            self._retired.discard(name)
        for name in [q for q in self.queues if q not in new_queues]:
            self._retired.add(name)
        self._check_members()
        self._link_agents()
        for free in self._free_for.values():
            free.clear()
        for agent_id in self._free:
            for name in self.agents[agent_id].queues:
                self._free_for[name][agent_id] = None
        self._drop_drained()
        for agent_id in list(self._free):  # new queues or wider membership: look again
            self._agent_free(self.agents[agent_id], now)

    def _drop_drained(self) -> None:
        """Forget retired queues with nobody waiting and no call still connected from them."""
        busy = {c.queue for c in self.calls.values()}
        dropped = [q for q in self._retired if q in self.queues and q not in busy]
        for name in dropped:
            del self.queues[name]
            del self._free_for[name]
            self._retired.discard(name)
        if dropped:
            self._link_agents()

    # --- results for the host -----------------------------------------------------------------

    def drain(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out

    def drain_events(self) -> list[QueueEvent]:
        out, self.events = self.events, []
        return out

    def drain_agent_log(self) -> list[AgentTransition]:
        out, self.agent_log = self.agent_log, []
        return out

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def state_of(self, agent: str) -> AgentState:
        return self.agents[agent].sm.state

    def position(self, call: str) -> int:
        c = self.calls[call]
        return _position(self.queues[c.queue].waiting, c)

    def is_waiting(self, call: str) -> bool:
        """Whether ``call`` is in a queue (not yet connected; callbacks included)."""
        c = self.calls.get(call)
        return c is not None and c in self.queues[c.queue].waiting

    def log_event(
        self, now: float, call: str, queue: str, agent: str, event: str, data: tuple[str, ...]
    ) -> None:
        """Add a line to the queue event log (e.g. supervision, which the host carries out)."""
        self._event(now, call, queue, agent, event, data)

    def members_of(self, queue: str) -> tuple[str, ...]:
        """Who serves ``queue``: its configured members, or (a queue without a member list)
        every agent whose skills the queue's rules accept, in configuration order."""
        q = self.queues[queue]
        if q.cfg.members:
            return q.cfg.members
        return tuple(a.cfg.id for a in self.agents.values() if queue in a.queues)

    def queue_snapshots(self, now: float) -> list[QueueSnapshot]:
        """Every queue as it is at ``now`` (see :class:`QueueSnapshot`)."""
        out = []
        for name, q in self.queues.items():
            members = self.members_of(name)
            states = Counter(self.agents[m].sm.state.value for m in members if m in self.agents)
            callers = [c for c in q.waiting if c.callback is None]
            longest = max((now - c.entered for c in callers), default=0.0)
            out.append(
                QueueSnapshot(
                    name=name,
                    strategy=q.cfg.strategy.value,
                    waiting=len(callers),
                    longest_wait_seconds=max(0.0, longest),
                    agents=dict(states),
                    members=members,
                    service_level_seconds=q.cfg.service_level,
                )
            )
        return out

    def agent_snapshots(self) -> list[AgentSnapshot]:
        """Every agent as they are now (``current_call``: the ACD id of their queue call)."""
        return [
            AgentSnapshot(
                id=a.cfg.id,
                name=a.cfg.name,
                extensions=a.cfg.extensions,
                state=a.sm.state.value,
                reason=a.sm.reason,
                since=a.sm.since,
                queues=tuple(a.queues),
                current_call=a.on_call,
            )
            for a in self.agents.values()
        ]

    def agent_for_extension(self, extension: str) -> str | None:
        for a in self.agents.values():
            if extension in a.cfg.extensions:
                return a.cfg.id
        return None

    # --- agents ---------------------------------------------------------------------------------

    def login(self, agent: str, now: float) -> None:
        a = self.agents[agent]
        if a.sm.state is not AgentState.LOGGED_OUT or agent in self._retired:
            return
        self._move(a, AgentEvent.LOGIN, now)
        a.login_at = now
        a.missed = 0
        self._event(now, "", "", agent, "AGENTLOGIN", (f"Local/{agent}",))
        self._agent_free(a, now)

    def restore(
        self, agent: str, now: float, *, paused: str | None = None, login_at: float | None = None
    ) -> bool:
        """An agent who was logged in when Switchboard stopped (the store's last state) is
        back: available, or paused with ``paused`` as the reason. No AGENTLOGIN is logged —
        their session goes on from ``login_at`` — only the state change (``restore``).
        False if the agent is unknown, retired or already logged in."""
        a = self.agents.get(agent)
        if a is None or a.sm.state is not AgentState.LOGGED_OUT or agent in self._retired:
            return False
        event = AgentEvent.RESTORE_PAUSED if paused else AgentEvent.RESTORE
        self._move(a, event, now, paused)
        a.login_at = now if login_at is None else login_at
        a.missed = 0
        if not paused:
            self._agent_free(a, now)
        return True

    def logout(self, agent: str, now: float) -> None:
        a = self.agents[agent]
        if a.sm.state is AgentState.LOGGED_OUT:
            return
        t = a.sm.request(AgentEvent.LOGOUT, now)
        self._logged(a, t or _requested(a, AgentEvent.LOGOUT, now, None))

    def pause(self, agent: str, now: float, reason: str = "busy") -> None:
        a = self.agents[agent]
        if a.sm.state is AgentState.LOGGED_OUT:
            return
        t = a.sm.request(AgentEvent.PAUSE, now, reason)
        self._logged(a, t or _requested(a, AgentEvent.PAUSE, now, reason))

    def unpause(self, agent: str, now: float) -> None:
        a = self.agents[agent]
        if a.sm.pending is AgentEvent.PAUSE:
            a.sm.pending = a.sm.pending_reason = None  # changed their mind during the call
            self._logged(a, _requested(a, AgentEvent.UNPAUSE, now, None))
            return
        if a.sm.state is not AgentState.NOT_READY:
            return
        self._move(a, AgentEvent.UNPAUSE, now)
        a.missed = 0
        self._event(now, "", "", agent, "UNPAUSE", ("",))
        self._agent_free(a, now)

    def end_wrap_up(self, agent: str, now: float, code: str | None = None) -> bool:
        """The agent finishes wrap-up (with a wrap-up code). False when the queue's mode does
        not allow it (timed; forced without a code)."""
        a = self.agents[agent]
        if a.sm.state is not AgentState.WRAP_UP:
            return False
        mode = self._wrap_mode(a)
        if mode is WrapUpMode.TIMED or (mode is WrapUpMode.FORCED and not code):
            return False
        q = self.queues.get(a.wrap_queue)
        if code and q is not None and q.cfg.wrap_up_codes and code not in q.cfg.wrap_up_codes:
            return False  # not one of the queue's codes
        self._finish_wrap(a, now, code)
        return True

    def agent_call_started(self, agent: str, now: float, kind: str = "internal") -> None:
        """The agent is on some other call — ``kind`` inbound (direct), outbound or internal:
        no offers meanwhile. A paused agent returns to their pause after it."""
        a = self.agents[agent]
        state = a.sm.state
        if state in (AgentState.LOGGED_OUT, AgentState.ON_CALL):
            return
        offered = self.calls.get(a.offered) if a.offered is not None else None
        if offered is not None:
            offered.offers.pop(agent, None)
            self.actions.append(CancelOffer(offered.id, agent))
        a.offered = None
        reason = a.sm.reason
        self._move(a, AgentEvent.CALL_START, now, kind)
        self._unfree(agent)
        if state is AgentState.NOT_READY and a.sm.pending is None:
            a.sm.pending, a.sm.pending_reason = AgentEvent.PAUSE, reason
            self._logged(a, _requested(a, AgentEvent.PAUSE, now, reason))  # back to it after
        if offered is not None:
            self._match_call(offered, now)

    def agent_call_ended(self, agent: str, now: float) -> None:
        a = self.agents[agent]
        if a.sm.state is AgentState.ON_CALL and a.on_call is None:
            self._move(a, AgentEvent.CALL_END, now)
            self._agent_free(a, now)

    # --- calls ----------------------------------------------------------------------------------

    def enqueue(
        self,
        call: str,
        queue: str,
        caller: str,
        now: float,
        *,
        priority: int | None = None,
        variables: Mapping[str, str] | None = None,
        grade: str | None = None,
        arrived: float | None = None,
    ) -> JoinResult:
        """A caller joins ``queue``. ``priority`` (from the IVR) wins over the customer's
        ``grade`` mapped by the queue's ``grade_priority``."""
        q = self.queues.get(queue)
        if q is None or queue in self._retired:
            return JoinResult(False, reason="unknown_queue")
        if call in self.calls:
            return JoinResult(False, reason="duplicate")
        cfg = q.cfg
        variables = dict(variables or {})
        if cfg.maxlen and len(q.waiting) >= cfg.maxlen:
            self._event(now, call, queue, "", "FULL", ())
            return JoinResult(False, reason="full")
        if not cfg.join_empty and self._empty(q, variables):
            self._event(now, call, queue, "", "JOINEMPTY", ())
            return JoinResult(False, reason="joinempty")
        if priority is None:
            priority = cfg.grade_priority.get(grade or "", 0)
        c = _Call(
            call,
            queue,
            caller,
            priority,
            variables,
            arrived if arrived is not None else now,
            now,
            next(self._seq),
            len(q.waiting) + 1,
        )
        c.key = (-priority, c.arrived, c.seq)
        c.required = required_skills(variables)
        insort(q.waiting, c)
        c.orig_position = _position(q.waiting, c)
        self.calls[call] = c
        self._event(now, call, queue, "", "ENTERQUEUE", ("", caller))
        self._arm_call_timers(c, now)
        self._reserve_last_agent(c, now)
        self._match_call(c, now)
        return JoinResult(True, c.orig_position)

    def answered(self, call: str, agent: str, now: float) -> None:
        """``agent`` answered the offer of ``call``: connect; other offers are withdrawn."""
        c = self.calls.get(call)
        a = self.agents[agent]
        if c is None or agent not in c.offers:
            return
        q = self.queues[c.queue]
        ring_ms = int((now - c.offers[agent]) * 1000)
        q.waiting.remove(c)
        self._unreserve(c)
        for other in [x for x in c.offers if x != agent]:
            self._offer_gone(c, other, now, missed=False)
        c.offers.clear()
        self._move(a, AgentEvent.ANSWER, now)
        a.offered = None
        a.on_call = call
        c.agent = agent
        a.call_started = now
        a.missed = 0
        a.calls += 1
        hold = now - c.entered
        q.answered += 1
        if hold <= q.cfg.service_level:
            q.in_service += 1
        if c.callback is None:
            self.last_agent[c.caller] = (agent, now)
            self._event(
                now, call, c.queue, agent, "CONNECT", (str(int(hold)), call, str(ring_ms // 1000))
            )
        else:
            self.last_agent[c.caller] = (agent, now)
            self._event(
                now, call, c.queue, agent, "CALLBACKCONNECT", (c.callback, str(c.callback_attempts))
            )

    def offer_failed(self, call: str, agent: str, now: float) -> None:
        """The agent's phone refused or did not answer the offer (before our ring timeout)."""
        c = self.calls.get(call)
        if c is not None and agent in c.offers:
            self._offer_timeout(c, agent, now)

    def caller_left(self, call: str, now: float) -> None:
        """The caller hung up while waiting (ABANDON) — not for callback entries."""
        c = self.calls.get(call)
        if c is None or c.callback is not None:
            return
        q = self.queues[c.queue]
        if c not in q.waiting:
            return
        pos = _position(q.waiting, c)
        self._remove(c)  # first: the agents released below must not be offered it again
        self._release_offers(c, now)
        self._event(
            now,
            call,
            c.queue,
            "",
            "ABANDON",
            (str(pos), str(c.orig_position), str(int(now - c.entered))),
        )

    def call_completed(self, call: str, now: float, by: str) -> None:
        """A connected queue call ended; ``by`` is "agent" or "caller"."""
        c = self.calls.get(call)
        if c is None or c.agent is None:
            return  # not connected: caller_left / callback_failed handle those
        del self.calls[call]
        agent = self.agents[c.agent]
        q = self.queues[c.queue]
        talk = now - agent.call_started
        agent.talk_time += talk
        q.avg_talk = _smoothed(q.avg_talk, talk)
        hold = agent.call_started - c.entered
        event = "COMPLETEAGENT" if by == "agent" else "COMPLETECALLER"
        self._event(
            now,
            call,
            c.queue,
            agent.cfg.id,
            event,
            (str(int(hold)), str(int(talk)), str(c.orig_position)),
        )
        self._agent_done(agent, q, now)
        if self._retired:
            self._drop_drained()

    def transferred(self, call: str, now: float, target: str) -> None:
        c = self.calls.get(call)
        if c is None or c.agent is None:
            return
        del self.calls[call]
        agent = self.agents[c.agent]
        talk = now - agent.call_started
        agent.talk_time += talk
        hold = agent.call_started - c.entered
        self._event(
            now,
            call,
            c.queue,
            agent.cfg.id,
            "TRANSFER",
            (target, "default", str(int(hold)), str(int(talk)), str(c.orig_position)),
        )
        self._agent_done(agent, self.queues[c.queue], now)
        if self._retired:
            self._drop_drained()

    def exit_with_key(self, call: str, key: str, now: float) -> bool:
        c = self.calls.get(call)
        if c is None or c.callback is not None:
            return False
        q = self.queues[c.queue]
        if key != q.cfg.exit_key or c not in q.waiting:
            return False
        pos = _position(q.waiting, c)
        self._leave(
            c,
            now,
            "key",
            q.cfg.exit_destination or q.cfg.overflow,
            "EXITWITHKEY",
            (key, str(pos), str(c.orig_position), str(int(now - c.entered))),
        )
        return True

    def request_callback(self, call: str, number: str, now: float) -> tuple[str, bool]:
        """Turn a waiting caller into a callback that keeps their place. A number with a
        callback already pending gets that one back (``created`` False) and this caller's
        entry leaves the queue (they hang up; logged as EXITWITHKEY)."""
        c = self.calls[call]
        q = self.queues[c.queue]
        for other in self.calls.values():
            if other.callback == number and other is not c:
                if c in q.waiting:
                    pos = _position(q.waiting, c)
                    data = (q.cfg.callback_key or "", str(pos), str(c.orig_position))
                    self._remove(c)
                    self._release_offers(c, now)
                    self._event(
                        now, call, c.queue, "", "EXITWITHKEY", (*data, str(int(now - c.entered)))
                    )
                return other.id, False
        c.callback = number
        self._release_offers(c, now)
        pos = _position(q.waiting, c)
        self._event(
            now, call, c.queue, "", "CALLBACKREQUEST", (number, str(pos), str(int(now - c.entered)))
        )
        self._match_call(c, now)
        return call, True

    def enqueue_callback(
        self, call: str, queue: str, number: str, caller: str, now: float, priority: int = 0
    ) -> tuple[str, bool]:
        """A callback asked for outside the queue (an IVR ``callback`` node): it takes its
        place in line now. A number already waiting for a callback gets that one back."""
        for other in self.calls.values():
            if other.callback == number:
                return other.id, False
        if call in self.calls:
            return call, False
        q = self.queues[queue]
        c = _Call(call, queue, caller, priority, {}, now, now, next(self._seq), 0)
        c.key = (-priority, now, c.seq)
        c.callback = number
        insort(q.waiting, c)
        c.orig_position = _position(q.waiting, c)
        self.calls[call] = c
        self._event(now, call, queue, "", "CALLBACKREQUEST", (number, str(c.orig_position), "0"))
        self._match_call(c, now)
        return call, True

    def callback_answered(self, call: str, agent: str, now: float) -> None:
        """Both ``agent`` and the customer of a callback are on the line."""
        c = self.calls.get(call)
        if c is not None and agent in c.offers:
            self.answered(call, agent, now)

    def callback_failed(self, call: str, now: float, reason: str = "no_answer") -> None:
        """The dialled callback did not connect: retry later in the same place, or give up."""
        c = self.calls.get(call)
        if c is None or c.callback is None:
            return
        q = self.queues[c.queue]
        agents = list(c.offers)
        if c.callback_attempts >= q.cfg.callback_attempts:
            self._remove(c)
            data = (c.callback, str(c.callback_attempts), reason)
            self._event(now, call, c.queue, "", "CALLBACKFAILED", data)
        else:
            data = (c.callback, str(c.callback_attempts), reason)
            self._event(now, call, c.queue, "", "CALLBACKRETRY", data)
            c.retry_at = now + q.cfg.callback_retry_delay
            self._timer(c.retry_at, "retry", call)
        for agent in agents:  # the reserved agent is free for other callers meanwhile
            self._offer_gone(c, agent, now, missed=False)

    # --- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> int:
        """Run every timer due at ``now``; return how many ran."""
        timers = self._timers
        ran = 0
        while timers and timers[0][0] <= now:
            at, _, kind, ref, extra = heapq.heappop(timers)
            getattr(self, f"_on_{kind}")(ref, extra, at)
            ran += 1
        return ran

    def _timer(self, at: float, kind: str, ref: str, extra: str = "") -> None:
        heapq.heappush(self._timers, (at, next(self._seq), kind, ref, extra))

    def _arm_call_timers(self, c: _Call, now: float) -> None:
        # Timers name the entry by its sequence number: a call that left and came back (or
        # overflowed into another queue) is a new entry, and old timers find nothing.
        cfg = self.queues[c.queue].cfg
        seq = str(c.seq)
        if cfg.max_wait > 0:
            self._timer(c.entered + cfg.max_wait, "max_wait", c.id, seq)
        widen = cfg.next_widening(now - c.entered)
        if widen is not None:
            self._timer(c.entered + widen, "widen", c.id, seq)
        if cfg.announce_position_every > 0:
            self._timer(now + cfg.announce_position_every, "announce", c.id, f"position:{seq}")
        if cfg.announce_every > 0:
            self._timer(now + cfg.announce_every, "announce", c.id, f"periodic:{seq}")
        if cfg.callback_offer_after > 0 and cfg.callback_key:
            self._timer(c.entered + cfg.callback_offer_after, "offer_callback", c.id, seq)

    def _live(self, call: str, seq: str) -> _Call | None:
        """The entry ``call`` still waiting, if it is the one (``seq``) the timer was set for."""
        c = self.calls.get(call)
        if c is None or str(c.seq) != seq or c not in self.queues[c.queue].waiting:
            return None
        return c

    def _on_ring(self, call: str, agent: str, at: float) -> None:
        c = self.calls.get(call)
        if c is None or agent not in c.offers or self.agents[agent].offered != call:
            return
        if at >= c.offers[agent] + self.queues[c.queue].cfg.ring_timeout - 1e-9:
            self._offer_timeout(c, agent, at)

    def _on_retry(self, call: str, _extra: str, at: float) -> None:
        c = self.calls.get(call)
        if c is not None and at >= c.retry_at:
            self._match_call(c, at)

    def _on_widen(self, call: str, seq: str, at: float) -> None:
        c = self._live(call, seq)
        if c is None:
            return
        cfg = self.queues[c.queue].cfg
        c.step = cfg.step_for(at - c.entered)[0]
        widen = cfg.next_widening(at - c.entered)
        if widen is not None:
            self._timer(c.entered + widen, "widen", call, seq)
        self._match_call(c, at)

    def _on_reserve_end(self, call: str, agent: str, at: float) -> None:
        c = self.calls.get(call)
        if c is not None and c.reserved_for == agent and at >= c.reserved_until:
            self._unreserve(c)
            self._match_call(c, at)

    def _unreserve(self, c: _Call) -> None:
        if c.reserved_for is not None:
            held = self._reserved.get(c.reserved_for)
            if held is not None:
                held.pop(c.id, None)
                if not held:
                    del self._reserved[c.reserved_for]
            c.reserved_for = None

    def _on_max_wait(self, call: str, seq: str, at: float) -> None:
        c = self._live(call, seq)
        if c is None or c.callback is not None:
            return
        queue = c.queue
        q = self.queues[queue]
        pos = _position(q.waiting, c)
        data = (str(pos), str(c.orig_position), str(int(at - c.entered)))
        if q.cfg.overflow == "callback":
            # Overflow into a callback: the caller keeps their place and is told so.
            self._event(at, c.id, queue, "", "EXITWITHTIMEOUT", data)
            _, created = self.request_callback(call, c.caller, at)
            if created:
                self.actions.append(ExitQueue(call, queue, "callback", "callback"))
                return
        self._leave(c, at, "timeout", q.cfg.overflow, "EXITWITHTIMEOUT", data)

    def _on_announce(self, call: str, extra: str, at: float) -> None:
        kind, _, seq = extra.partition(":")
        c = self._live(call, seq)
        if c is None or c.callback is not None:
            return
        q = self.queues[c.queue]
        pos = _position(q.waiting, c)
        self.actions.append(
            Announce(call, c.queue, pos, self._estimated_wait(q, pos), kind == "periodic")
        )
        every = q.cfg.announce_every if kind == "periodic" else q.cfg.announce_position_every
        if every > 0:
            self._timer(at + every, "announce", call, extra)

    def _on_offer_callback(self, call: str, seq: str, at: float) -> None:
        c = self._live(call, seq)
        if c is not None and c.callback is None and not c.callback_offered:
            c.callback_offered = True
            self.actions.append(OfferCallback(call, c.queue))

    def _on_dial_limit(self, call: str, agent: str, at: float) -> None:
        c = self.calls.get(call)
        if c is None or c.callback is None or agent not in c.offers:
            return
        if at >= c.offers[agent] + CALLBACK_DIAL_LIMIT - 1e-9:
            self.callback_failed(call, at, "dial_timeout")

    def _on_wrap_end(self, agent: str, _extra: str, at: float) -> None:
        a = self.agents[agent]
        if a.sm.state is AgentState.WRAP_UP and a.wrap_until is not None and at >= a.wrap_until:
            self._finish_wrap(a, at, None)

    # --- routing --------------------------------------------------------------------------------

    def _eligible(self, a: _Agent, c: _Call, step: RuleStep, now: float) -> bool:
        if c.reserved_for is not None and c.reserved_for != a.cfg.id:
            return False
        missed = c.missed.get(a.cfg.id)
        if missed is not None:
            delay = max(self.queues[c.queue].cfg.retry_delay, MIN_REOFFER_DELAY)
            if now < missed + delay:
                return False  # just missed this caller: not again right away
        skills = a.cfg.skills
        for name in c.required:  # a plain loop: this is the routing hot path
            if skills.get(name, 0) <= 0:
                return False
        return step.holds(skills, c.variables)

    def _can_offer(self, c: _Call, now: float) -> bool:
        if now < c.retry_at:
            return False
        if c.offers and self.queues[c.queue].cfg.strategy not in (
            Strategy.RING_ALL,
            Strategy.RING_PROGRESSIVELY,
        ):
            return False
        return not (c.callback is not None and c.offers)

    def _match_call(self, c: _Call, now: float) -> None:
        """Offer ``c`` to the free agents its queue's strategy picks."""
        q = self.queues.get(c.queue)
        if q is None or c not in q.waiting or not self._can_offer(c, now) or not self._free:
            return
        cfg = q.cfg
        step = cfg.step_for(now - c.entered)[1]
        members = cfg.members
        pool = members if members else self._free_for[c.queue]
        candidates = [
            self.agents[x]
            for x in pool
            if x in self._free
            and x not in c.offers
            and self._eligible(self.agents[x], c, step, now)
        ]
        if c.missed:
            # Free agents who just missed this caller become eligible again later: look again.
            delay = max(cfg.retry_delay, MIN_REOFFER_DELAY)
            later = [t + delay for x, t in c.missed.items() if x in self._free and t + delay > now]
            if later:
                self._timer(min(later), "retry", c.id)
        if not candidates:
            return
        untried = [a for a in candidates if a.cfg.id not in c.tried]
        if untried:
            candidates = untried
        else:
            c.tried.clear()  # everybody had a go: start a new round
        for a in self._pick(q, c, candidates, step, now):
            self._offer(q, c, a, now)

    def _pick(
        self, q: _Queue, c: _Call, cands: list[_Agent], step: RuleStep, now: float
    ) -> list[_Agent]:
        s = q.cfg.strategy
        if s is Strategy.RING_ALL:
            return cands
        if s is Strategy.LONGEST_IDLE:
            return [min(cands, key=lambda a: (a.idle_since, a.order))]
        if s is Strategy.FEWEST_CALLS:
            return [min(cands, key=lambda a: (a.calls, a.idle_since, a.order))]
        if s is Strategy.LEAST_TALK_TIME:
            return [min(cands, key=lambda a: (a.talk_time, a.idle_since, a.order))]
        if s is Strategy.BEST_SKILL:
            return [
                min(
                    cands,
                    key=lambda a: (-step.score(a.cfg.skills, c.variables), a.idle_since, a.order),
                )
            ]
        if s is Strategy.RANDOM:
            return [self._rng.choice(sorted(cands, key=lambda a: a.order))]
        if s is Strategy.WEIGHTED_RANDOM:
            ordered = sorted(cands, key=lambda a: a.order)
            weights = [1 + step.score(a.cfg.skills, c.variables) for a in ordered]
            return [self._rng.choices(ordered, weights)[0]]
        order = self._member_order(q)
        ranked = sorted(cands, key=lambda a: order.get(a.cfg.id, len(order) + a.order))
        if s is Strategy.LINEAR:
            return ranked[:1]
        if s is Strategy.ROUND_ROBIN:
            n = len(order) or 1
            start = q.rr_next % n
            best = min(ranked, key=lambda a: (order.get(a.cfg.id, 0) - start) % n)
            q.rr_next = order.get(best.cfg.id, 0) + 1
            return [best]
        # RING_PROGRESSIVELY: one more agent every progressive_step seconds of offering.
        started = c.first_offer_at if c.first_offer_at is not None else now
        want = 1 + int((now - started) // max(q.cfg.progressive_step, 0.001))
        return ranked[: max(0, want - len(c.offers))]

    def _member_order(self, q: _Queue) -> dict[str, int]:
        if q.cfg.members:
            return {m: i for i, m in enumerate(q.cfg.members)}
        return {a: i for i, a in enumerate(self.agents)}

    def _offer(self, q: _Queue, c: _Call, a: _Agent, now: float) -> None:
        agent = a.cfg.id
        self._unfree(agent)
        self._move(a, AgentEvent.OFFER, now)
        a.offered = c.id
        c.offers[agent] = now
        c.tried.add(agent)
        if c.first_offer_at is None:
            c.first_offer_at = now
        if c.callback is not None:
            c.callback_attempts += 1
            self._timer(now + CALLBACK_DIAL_LIMIT, "dial_limit", c.id, agent)
            self.actions.append(
                DialCallback(
                    c.id,
                    c.queue,
                    agent,
                    c.callback,
                    q.cfg.callback_agent_first,
                    c.callback_attempts,
                )
            )
            return
        self.actions.append(Offer(c.id, agent, c.queue, q.cfg.ring_timeout))
        self._timer(now + q.cfg.ring_timeout, "ring", c.id, agent)
        if q.cfg.strategy is Strategy.RING_PROGRESSIVELY:
            self._timer(now + q.cfg.progressive_step, "retry", c.id)

    def _offer_timeout(self, c: _Call, agent: str, now: float) -> None:
        a = self.agents[agent]
        q = self.queues[c.queue]
        ring_ms = int((now - c.offers.pop(agent)) * 1000)
        c.missed[agent] = now
        a.offered = None
        self.actions.append(CancelOffer(c.id, agent))
        self._event(now, c.id, c.queue, agent, "RINGNOANSWER", (str(ring_ms),))
        a.missed += 1
        if q.cfg.auto_pause_after and a.missed >= q.cfg.auto_pause_after:
            self._move(a, AgentEvent.AUTO_PAUSE, now, "after_no_answer")
            self._event(now, "", c.queue, agent, "PAUSE", ("after_no_answer",))
        else:
            self._move(a, AgentEvent.NO_ANSWER, now)
        if not c.offers:
            c.retry_at = now + q.cfg.retry_delay
            self._timer(c.retry_at, "retry", c.id)
        self._agent_free(a, now)

    def _release_offers(self, c: _Call, now: float) -> None:
        """Withdraw every offer of ``c`` (call it after ``c`` left the queue or changed, so
        the agents set free are not offered it again)."""
        for agent in list(c.offers):
            self._offer_gone(c, agent, now, missed=False)

    def _offer_gone(self, c: _Call, agent: str, now: float, *, missed: bool) -> None:
        a = self.agents[agent]
        c.offers.pop(agent, None)
        if a.offered != c.id:
            return
        a.offered = None
        self.actions.append(CancelOffer(c.id, agent))
        if a.sm.state is AgentState.RINGING:
            self._move(a, AgentEvent.OFFER_GONE, now)
            self._agent_free(a, now)

    def _agent_free(self, a: _Agent, now: float) -> None:
        """``a`` may now take a call: find the best waiting call they can serve."""
        if a.sm.state is not AgentState.AVAILABLE:
            self._unfree(a.cfg.id)
            return
        self._free[a.cfg.id] = None
        for name in a.queues:
            self._free_for[name][a.cfg.id] = None
        best: _Call | None = None
        # Callers held for this agent (they handled them last) come first.
        for held in list(self._reserved.get(a.cfg.id, ())):
            c = self.calls[held]
            if self._can_offer(c, now) and (best is None or c.key < best.key):
                best = c
        if best is not None:
            self._offer(self.queues[best.queue], best, a, now)
            return
        for name in a.queues:
            q = self.queues[name]
            for c in q.waiting:
                if best is not None and c.key >= best.key:
                    break
                if a.cfg.id in c.offers or not self._can_offer(c, now):
                    continue
                if a.cfg.id in c.tried and self._others_untried(c, now):
                    continue
                step = q.cfg.step_for(now - c.entered)[1]
                if self._eligible(a, c, step, now):
                    best = c
                    break
        if best is not None:
            self._offer(self.queues[best.queue], best, a, now)

    def _unfree(self, agent: str) -> None:
        if self._free.pop(agent, 0) is None:
            for name in self.agents[agent].queues:
                self._free_for[name].pop(agent, None)

    def _others_untried(self, c: _Call, now: float) -> bool:
        q = self.queues[c.queue]
        step = q.cfg.step_for(now - c.entered)[1]
        for x in self._free_for[c.queue]:
            if x not in c.tried and self._eligible(self.agents[x], c, step, now):
                return True
        return False

    def _reserve_last_agent(self, c: _Call, now: float) -> None:
        cfg = self.queues[c.queue].cfg
        if cfg.last_agent_wait <= 0 or c.callback is not None:
            return
        last = self.last_agent.get(c.caller)
        if last is None or now - last[1] > cfg.last_agent_days * 86400:
            return
        a = self.agents.get(last[0])
        if a is None or c.queue not in a.queues:
            return
        if a.sm.state in (
            AgentState.AVAILABLE,
            AgentState.ON_CALL,
            AgentState.WRAP_UP,
            AgentState.RINGING,
        ):
            c.reserved_for = a.cfg.id
            c.reserved_until = now + cfg.last_agent_wait
            self._reserved.setdefault(a.cfg.id, {})[c.id] = None
            self._timer(c.reserved_until, "reserve_end", c.id, a.cfg.id)

    # --- leaving, wrap-up, emptiness --------------------------------------------------------------

    def _remove(self, c: _Call) -> None:
        self._unreserve(c)
        q = self.queues[c.queue]
        if c in q.waiting:
            q.waiting.remove(c)
        self.calls.pop(c.id, None)
        if self._retired:
            self._drop_drained()

    def _leave(
        self,
        c: _Call,
        now: float,
        reason: str,
        destination: str | None,
        event: str,
        data: tuple[str, ...],
    ) -> None:
        self._remove(c)
        self._release_offers(c, now)
        self._event(now, c.id, c.queue, "", event, data)
        if destination is not None and destination.startswith("queue:"):
            target = destination[len("queue:") :]
            result = self.enqueue(
                c.id,
                target,
                c.caller,
                now,
                priority=c.priority,
                variables=c.variables,
                arrived=c.arrived,
            )
            if result.joined:
                return
        self.actions.append(ExitQueue(c.id, c.queue, reason, destination))

    def _agent_done(self, a: _Agent, q: _Queue, now: float) -> None:
        a.on_call = None
        wrap = a.cfg.wrap_up if a.cfg.wrap_up is not None else q.cfg.wrap_up
        forced = q.cfg.wrap_up_mode is WrapUpMode.FORCED
        if wrap > 0 or forced:
            self._move(a, AgentEvent.CALL_END_WRAP, now)
            a.wrap_until = now + wrap if wrap > 0 else None
            a.idle_since = now
            if a.wrap_until is not None and not forced:
                self._timer(a.wrap_until, "wrap_end", a.cfg.id)
            a.wrap_queue = q.cfg.name
            return
        self._move(a, AgentEvent.CALL_END, now)
        a.idle_since = now
        self._agent_free(a, now)

    def _wrap_mode(self, a: _Agent) -> WrapUpMode:
        q = self.queues.get(a.wrap_queue)
        return q.cfg.wrap_up_mode if q is not None else WrapUpMode.OPTIONAL

    def _finish_wrap(self, a: _Agent, now: float, code: str | None) -> None:
        a.wrap_until = None
        if code:
            self._event(now, "", a.wrap_queue, a.cfg.id, "WRAPUPCODE", (code,))
        self._move(a, AgentEvent.WRAP_END, now)
        a.idle_since = now
        self._agent_free(a, now)

    def _empty(self, q: _Queue, variables: Mapping[str, str]) -> bool:
        """No agent who could ever take this caller is logged in and not paused."""
        widest = RuleStep() if not q.cfg.skill_rules else q.cfg.skill_rules[-1]
        required = required_skills(variables)
        pool = q.cfg.members or tuple(self.agents)
        for x in pool:
            a = self.agents[x]
            if a.sm.state in (AgentState.LOGGED_OUT, AgentState.NOT_READY):
                continue
            if not all(a.cfg.skills.get(name, 0) > 0 for name in required):
                continue
            if widest.holds(a.cfg.skills, variables):
                return False
        return True

    def _check_empty(self, now: float) -> None:
        for q in self.queues.values():
            if not q.cfg.leave_when_empty or not q.waiting:
                continue
            for c in list(q.waiting):
                if c.callback is None and self._empty(q, c.variables):
                    pos = _position(q.waiting, c)
                    data = (str(pos), str(c.orig_position), str(int(now - c.entered)))
                    self._leave(c, now, "empty", None, "EXITEMPTY", data)

    def seed_talk_times(self, queue: str, talks: Sequence[float]) -> None:
        """Start ``queue``'s average talk time from stored history (oldest first): after a
        restart the estimated wait uses the calls the store remembers, not a guess."""
        q = self.queues.get(queue)
        if q is None:
            return
        for talk in talks:
            if talk > 0:
                q.avg_talk = _smoothed(q.avg_talk, talk)

    def _estimated_wait(self, q: _Queue, position: int) -> float:
        staffed = sum(
            1
            for x in (q.cfg.members or tuple(self.agents))
            if self.agents[x].sm.state not in (AgentState.LOGGED_OUT, AgentState.NOT_READY)
        )
        talk = q.avg_talk or DEFAULT_TALK_SECONDS  # no history at all yet
        return round(position * talk / max(1, staffed))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _move(self, a: _Agent, event: AgentEvent, now: float, reason: str | None = None) -> None:
        self._logged(a, a.sm.apply(event, now, reason))

    def _logged(self, a: _Agent, t: AgentTransition) -> None:
        self.agent_log.append(t)
        if t.new is AgentState.LOGGED_OUT:
            self._unfree(a.cfg.id)
            self._event(
                t.at,
                "",
                "",
                a.cfg.id,
                "AGENTLOGOFF",
                (f"Local/{a.cfg.id}", str(int(t.at - a.login_at))),
            )
            self._check_empty(t.at)
        elif t.new is AgentState.NOT_READY and t.old is not AgentState.NOT_READY:
            self._unfree(a.cfg.id)
            if t.event is not AgentEvent.AUTO_PAUSE:
                self._event(t.at, "", "", a.cfg.id, "PAUSE", (t.reason or "",))
            self._check_empty(t.at)
        elif t.new is AgentState.AVAILABLE and t.old is not AgentState.AVAILABLE:
            a.idle_since = t.at if t.old is not AgentState.RINGING else a.idle_since

    def _event(
        self, now: float, call: str, queue: str, agent: str, event: str, data: tuple[str, ...]
    ) -> None:
        self.events.append(QueueEvent(now, call, queue, agent, event, data))


def _requested(a: _Agent, event: AgentEvent, now: float, reason: str | None) -> AgentTransition:
    """The state-log row of a request that waits for the call to end (old state == new
    state, the request's event and reason): a restart after a crash finds it there."""
    return AgentTransition(a.cfg.id, now, a.sm.state, a.sm.state, event, reason)


def _smoothed(average: float, talk: float) -> float:
    """The queue's average talk time after one more call of ``talk`` seconds."""
    return talk if average == 0 else (1 - TALK_SMOOTHING) * average + TALK_SMOOTHING * talk


def _position(waiting: list[_Call], c: _Call) -> int:
    """1-based place of ``c`` in its queue (the list is sorted by ``key``)."""
    return bisect_left(waiting, c) + 1


def _could_serve(agent: AgentConfig, queue: QueueConfig) -> bool:
    """Whether the agent can ever take a call of the queue: the widest skill-rule step (the
    last) accepts them, or it depends on call variables and cannot be known in advance. Keeps
    a freed agent from scanning queues they can never serve."""
    if not queue.skill_rules:
        return True
    widest = queue.skill_rules[-1]
    if any(r.skill.startswith("$") for r in widest.requirements):
        return True
    return widest.holds(agent.skills, {})

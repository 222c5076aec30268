"""Runs the ACD (:mod:`acd`) on Switchboard's calls: queues, agents' phones, supervision.

Theory of operation
-------------------
The :class:`acd.Acd` decides; this host carries the decisions out on SIP calls through the
call-control seam (:class:`pbx.control.CallControl`: call ids, commands and events) and feeds
every relevant happening back, with the wall clock (``time.time()``) as the ACD's clock:

- A caller reaches a queue (a dialplan destination of kind ``queue``, an IVR ``queue`` node,
  another queue's overflow): the seam publishes ``CallArrived``; the caller hears the queue's
  music and joins the ACD. Their digits (``DtmfReceived``) go to the queue (exit key,
  callback key).
- :class:`acd.Offer` rings the agent's extension(s) with the caller (the caller keeps their
  music). The first ``OfferAnswered`` is connected (``accept_offer``); ``OfferRejected`` is a
  missed offer; :class:`acd.CancelOffer` stops the ringing (``cancel_offer``). Listeners
  (:meth:`AcdHost.subscribe`) hear :class:`OfferMade` when a phone rings and
  :class:`OfferEnded` (answered, rejected, withdrawn) when that offer is over.
- ``CallEnded`` is reported as an abandon (still waiting) or a completion by the agent or the
  caller; a transfer as a transfer.
- Any other call an agent is on — outbound, internal, direct — makes them busy for the ACD:
  ``LegAnswered`` for every party whose dialog comes up, ``LegClosed`` for every leg released.
- Agents log in, out, pause (with a reason digit), unpause and end wrap-up with feature codes
  the host claims on the seam (``FeatureCodeDialled``); supervisors listen (4), whisper (5),
  barge (6) or intercept (7) with codes + the agent's extension, switching modes during the
  call with those digits.
- :class:`acd.DialCallback` originates a call to the agent (or the customer) first, then
  offers it to the other, and connects them.

The queue event log and agent state log are written to the store in order by one writer
task, and each event is also logged (``queue_event``, ``agent_state``). The call's record
says what the queue log says: ``ENTERQUEUE``, ``CONNECT`` and ``CALLBACKCONNECT`` annotate
it (``CallControl.annotate``) with the queue, the queue log's call id, the agent id and the
callback request (``docs/records.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from acd import (
    Acd,
    Action,
    AgentConfig,
    AgentSnapshot,
    AgentState,
    AgentTransition,
    Announce,
    CancelOffer,
    DialCallback,
    ExitQueue,
    Offer,
    OfferCallback,
    QueueConfig,
    QueueSnapshot,
)
from crm import AgentStateData, CallbackRequestData, QueueEventData, Store
from ivr import LANGUAGES, PromptSets, say_number
from pbx.control import CallControl
from pbx.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallEvent,
    ConnectFailed,
    DtmfReceived,
    FeatureCodeDialled,
    LegAnswered,
    LegClosed,
    OfferAnswered,
    OfferRejected,
    OriginateAnswered,
    OriginateFailed,
    PlaybackFinished,
)

__all__ = ["AcdCodes", "AcdHost", "AcdItem", "AcdSettings", "OfferEnded", "OfferMade"]

log = structlog.get_logger("switchboard.acd")

SUPERVISION_DIGITS = {"4": "listen", "5": "whisper", "6": "barge", "7": "intercept"}
CALLBACK_RING_SECONDS = 30.0
CALLBACK_ENTRY_SECONDS = 10.0  # silence that ends the entry of a callback number
ACK_WAIT_LIMIT = 5.0  # the longest an acknowledgement waits for the store
TALK_HISTORY_DAYS = 7.0  # completed queue calls whose talk time seeds the estimated wait


@dataclass(frozen=True, slots=True)
class AcdCodes:
    """The call-center feature codes (``features:`` in the config)."""

    agent_login: str = "*45"
    agent_logout: str = "*46"
    agent_pause: str = "*47"  # + an optional reason digit
    agent_unpause: str = "*48"
    wrap_up_done: str = "*49"  # + an optional wrap-up code
    supervise_listen: str = "*51"  # + the agent's extension
    supervise_whisper: str = "*52"
    supervise_barge: str = "*53"
    supervise_intercept: str = "*54"

    def supervision(self) -> dict[str, str]:
        return {
            self.supervise_listen: "listen",
            self.supervise_whisper: "whisper",
            self.supervise_barge: "barge",
            self.supervise_intercept: "intercept",
        }

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.__dataclass_fields__]


@dataclass(frozen=True, slots=True)
class AcdSettings:
    """Everything the host takes from the configuration (built by ``app``)."""

    agents: list[AgentConfig]
    queues: list[QueueConfig]
    config_dir: Path
    tone_plan: str = "us"
    pause_reasons: Mapping[str, str] = field(default_factory=dict)
    supervisors: frozenset[str] = frozenset()
    queue_music: Mapping[str, list[str]] = field(default_factory=dict)
    codes: AcdCodes = AcdCodes()


@dataclass(frozen=True, slots=True)
class OfferMade:
    """An agent's phone(s) ring with a queue call (told to :meth:`AcdHost.subscribe`
    listeners, not logged: the web panel's offer card). ``call_id`` is the seam's call id;
    ``waited_seconds`` is the caller's wait in this queue so far; ``ivr_keys`` the digits the
    caller pressed in IVR menus on the way."""

    time: datetime
    agent: str
    call_id: str
    queue: str
    caller: str
    waited_seconds: float
    ivr_keys: str


@dataclass(frozen=True, slots=True)
class OfferEnded:
    """The offer of :class:`OfferMade` is over: ``outcome`` is ``answered`` (this agent
    took the call), ``rejected`` (their phone refused it) or ``withdrawn`` (the ACD stopped
    the ringing: ring timeout, another agent answered, the caller left)."""

    agent: str
    call_id: str
    outcome: str


# What AcdHost.subscribe listeners are given.
AcdItem = QueueEventData | AgentStateData | OfferMade | OfferEnded


class _Waiting:
    """A caller waiting in a queue: their digits go to the queue, or, after the callback
    key, make up the number to call back (``#`` ends it; ``#`` alone or silence means the
    caller's own number)."""

    def __init__(
        self,
        call_id: str,
        caller: str,
        on_digit: Callable[[_Waiting, str], None],
        on_number: Callable[[_Waiting, str], None],
    ) -> None:
        self.call_id = call_id
        self._on_digit = on_digit  # a digit for the queue (exit key, callback key)
        self._on_number = on_number  # the callback number, once entered or confirmed
        self.caller = caller
        self.number: list[str] | None = None  # digits of a callback number being entered
        self._timer: asyncio.TimerHandle | None = None

    def on_dtmf(self, digit: str) -> None:
        if self.number is None:
            self._on_digit(self, digit)
            return
        if digit == "#":
            self._done()
            return
        if digit.isdigit() and len(self.number) < 20:
            self.number.append(digit)
        self._arm()

    def collect_number(self) -> None:
        self.number = []
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(CALLBACK_ENTRY_SECONDS, self._done)

    def _done(self) -> None:
        self.cancel()
        digits, self.number = "".join(self.number or ()), None
        self._on_number(self, digits if len(digits) >= 3 else self.caller)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(slots=True)
class _Dial:
    """A callback being dialled: the first leg (originated), then the offer to the second."""

    acd_id: str
    dial: DialCallback
    second: str
    origin_id: str
    first_call: str = ""  # the id the first leg's call gets when it answers
    leg_call: str | None = None  # the answered first leg's call


@dataclass(slots=True)
class _Supervising:
    agent: str
    target: str | None = None  # the supervised call, once joined
    mode: str = ""


class AcdHost:
    """The ACD of one Switchboard process; see the module documentation."""

    def __init__(self, control: CallControl, store: Store | None, settings: AcdSettings) -> None:
        self.acd = Acd(settings.agents, settings.queues, now=time.time())
        self.control = control
        self.store = store
        self._apply(settings)
        self._calls: dict[str, str] = {}  # ACD call id -> the call carrying it
        self._acd_of: dict[str, str] = {}  # call id -> ACD call id
        self._waiting: dict[str, _Waiting] = {}  # by call id: callers whose digits we take
        self._surveys: dict[str, str] = {}  # ACD call id -> post-call survey flow
        self._legs: dict[str, str] = {}  # leg id -> agent, for every agent party up on a call
        self._leg_calls: dict[str, str] = {}  # the same legs -> the call each is on
        # Agent -> the call carrying the last queue call (or callback) they answered.
        self._last_calls: dict[str, str] = {}
        self._busy: Counter[str] = Counter()
        self._own_legs: set[str] = set()  # callback legs: the ACD already knows about them
        self._announcing: dict[str, str] = {}  # play id -> call id (music resumes after)
        self._then_hang_up: dict[str, tuple[str, str]] = {}  # play id -> (call id, cause)
        self._connecting: set[str] = set()  # calls overflowing to an extension
        # Agents' classes of service lent to their extensions: agent -> those extensions.
        self._lent_class: dict[str, tuple[str, ...]] = {}
        self._supervising: dict[str, _Supervising] = {}  # supervisor's call id -> state
        # Supervision asked for by the API: originate id -> what to do once the phone answers.
        self._supervise_dials: dict[str, _Supervising] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._pending_events: list[QueueEventData] = []
        self._pending_states: list[AgentStateData] = []
        self._pending_last: dict[str, tuple[str, datetime]] = {}
        # Callback requests mirrored into callback_requests: ("add", call, data) and
        # ("done", call, (status, outcome, attempts)), written in order.
        self._pending_callbacks: list[tuple[str, str, Any]] = []
        self._callback_rows: dict[str, int] = {}  # ACD call id -> callback_requests id
        self._dials: dict[str, _Dial] = {}  # callbacks being dialled, by ACD call id
        self._dial_seq = 0
        self._origins: set[str] = set()  # the originate ids of our dials not answered yet
        # Callers who asked for a callback and are still hearing the confirmation, and the
        # dials that wait for them to be gone.
        self._hanging_up: set[str] = set()
        self._dial_later: dict[str, list[DialCallback]] = {}
        self._writer: asyncio.Task[None] | None = None
        # Group commit of the logs: every _flush with something new is one step; the writer
        # reports the last step it committed; waiters (acknowledgements) wait for theirs.
        self._queued_step = 0
        self._written_step = 0
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Listeners of the queue event log and agent state changes (the API's event stream).
        self._listeners: list[Callable[[AcdItem], None]] = []
        # Offers told to the listeners and not yet ended: (ACD call id, agent) -> call id.
        self._offers_told: dict[tuple[str, str], str] = {}
        self._unsubscribe = control.subscribe(self._on_event)
        control.serve("queue")
        control.claim_feature_codes("acd", self.codes.all())

    # -- wiring ------------------------------------------------------------------------------

    def _apply(self, settings: AcdSettings) -> None:
        self.settings = settings
        self.prompts = PromptSets.for_config(settings.config_dir)
        self.tone_plan = settings.tone_plan
        self.pause_reasons = dict(settings.pause_reasons)
        self.supervisors = set(settings.supervisors)
        self.queue_music = dict(settings.queue_music)
        self.codes = settings.codes
        self._agent_of_ext = {ext: a.id for a in settings.agents for ext in a.extensions}
        self._supervise_codes = tuple(settings.codes.supervision())

    def reconfigure(self, settings: AcdSettings) -> None:
        """``config reload``: new agents, queues and ACD settings; logged-in agents, waiting
        callers and calls in progress carry on (see :meth:`acd.Acd.reconfigure`)."""
        self.acd.reconfigure(settings.agents, settings.queues, time.time())
        self._apply(settings)
        states = self.agent_states()
        for agent_id in [a for a in self._lent_class if a not in states]:
            self._lend_class_of_service(agent_id, False)  # an agent the reload removed
        for agent_id, (state, _reason) in states.items():
            # A changed (or removed) class of service applies to the agents logged in now.
            if state is not AgentState.LOGGED_OUT or agent_id in self._lent_class:
                self._lend_class_of_service(agent_id, state is not AgentState.LOGGED_OUT)
        self.control.claim_feature_codes("acd", self.codes.all())
        log.info("acd_reconfigured", agents=len(settings.agents), queues=len(settings.queues))
        self._pump()
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._prewarm))
        task.add_done_callback(_log_task_error)

    def _prewarm(self) -> None:
        """Decode every prompt the queues may say and every queue's music into the prompt
        cache (blocking: runs in a thread). A file that cannot be read is logged and skipped;
        playing it later logs again."""
        files = [str(f) for root in self.prompts.roots for f in sorted(root.glob("*/*.wav"))]
        files += [f for music in self.queue_music.values() for f in music]
        for path, error in self.control.prewarm(files):
            log.warning("prompt_not_loaded", path=path, error=error)

    async def start(self) -> None:
        """Load the prompts and queue music off the event loop (so playing them later only
        hits the prompt cache), and restore who handled which caller last."""
        await asyncio.to_thread(self._prewarm)
        if self.store is not None:
            await self._restore_agents()
            # The estimated wait announced to callers starts from the talk times of the last
            # week's calls, not from a built-in guess.
            week = datetime.now(UTC) - timedelta(days=TALK_HISTORY_DAYS)
            for queue, talks in (await self.store.recent_talk_times(week)).items():
                self.acd.seed_talk_times(queue, talks)
        days = max((q.cfg.last_agent_days for q in self.acd.queues.values()), default=0.0)
        if self.store is None or days <= 0:
            return
        since = datetime.now(UTC) - timedelta(days=days)
        for caller, (agent, at) in (await self.store.load_last_agents(since)).items():
            self.acd.last_agent[caller] = (agent, at.timestamp())

    def _log_off_at_restore(
        self, agent: str, last: AgentStateData, now: float, login_at: float, reason: str
    ) -> None:
        """An agent the restart does not bring back: AGENTLOGOFF in the queue log, a state
        row with ``reason``, one log line."""
        self.acd.log_event(
            now, "", "", agent, "AGENTLOGOFF", (f"Local/{agent}", str(int(now - login_at)))
        )
        self._pending_states.append(
            AgentStateData(
                datetime.fromtimestamp(now, UTC),
                agent,
                last.new_state,
                AgentState.LOGGED_OUT.value,
                "restore",
                reason,
            )
        )
        (log.warning if reason == "removed_from_config" else log.info)(
            "agent_logged_off", agent=agent, reason=reason
        )

    async def _restore_agents(self) -> None:
        """Agents logged in (or paused) when Switchboard stopped or crashed are back as they
        were, like Asterisk's persistent members: their state is the store's last row. One
        removed from the config meanwhile is logged off (queue log and state log say so)."""
        assert self.store is not None
        now = time.time()
        for agent, (last, login) in (await self.store.last_agent_states()).items():
            if last.new_state == AgentState.LOGGED_OUT.value:
                continue
            login_at = login.timestamp() if login is not None else now
            if agent not in self.acd.agents:
                self._log_off_at_restore(agent, last, now, login_at, "removed_from_config")
                continue
            # A pause survives with its reason; any other state (a call, wrap-up) was cut
            # by the stop, so the agent is back available. A row whose state did not change
            # is a request waiting for the call to end (engine ``_requested``): a pause
            # applies now, a logout logs the agent off.
            pending = last.old_state == last.new_state != "NOT_READY"
            if pending and last.event == "logout":
                self._log_off_at_restore(agent, last, now, login_at, "pending logout")
                continue
            paused = (
                (last.reason or "busy")
                if last.new_state == "NOT_READY" or (pending and last.event == "pause")
                else None
            )
            if self.acd.restore(agent, now, paused=paused, login_at=login_at):
                log.info("agent_restored", agent=agent, state=last.new_state, paused=paused)
        self._pump()

    async def drain(self) -> None:
        """Write what is still pending to the store (at shutdown)."""
        self._flush()
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)

    # -- the service API (feature codes, later the web panel and CLI) -----------------------

    def login(self, agent: str) -> None:
        now = time.time()
        self.acd.login(agent, now)
        if self._busy.get(agent):  # logged in during a call: busy until it ends
            self.acd.agent_call_started(agent, now, "internal")
        self._pump()

    def logout(self, agent: str) -> None:
        self.acd.logout(agent, time.time())
        self._pump()

    def pause(self, agent: str, reason: str = "busy") -> None:
        self.acd.pause(agent, time.time(), reason)
        self._pump()

    def unpause(self, agent: str) -> None:
        self.acd.unpause(agent, time.time())
        self._pump()

    def end_wrap_up(self, agent: str, code: str | None = None) -> bool:
        done = self.acd.end_wrap_up(agent, time.time(), code)
        self._pump()
        return done

    def wrap_up_codes(self, agent: str) -> list[str]:
        """The wrap-up codes the agent may enter now: those of the queue whose wrap-up they
        are in (``wrap_up_codes`` of the queue; empty: any code or none). KeyError for an
        unknown agent."""
        queue = self.acd.queues.get(self.acd.agents[agent].wrap_queue)
        return list(queue.cfg.wrap_up_codes) if queue is not None else []

    def last_call(self, agent: str) -> str | None:
        """The id of the call carrying the last queue call (or callback) ``agent`` answered
        since start, None if none: the call their wrap-up is about."""
        return self._last_calls.get(agent)

    def wrap_up_labels(self, agent: str) -> dict[str, str]:
        """The labels of :meth:`wrap_up_codes` that have one (code -> label). KeyError for
        an unknown agent."""
        queue = self.acd.queues.get(self.acd.agents[agent].wrap_queue)
        return dict(queue.cfg.wrap_up_labels) if queue is not None else {}

    def supervise(self, agent: str, extension: str, mode: str) -> tuple[str, bool] | None:
        """Ring the supervisor's ``extension``; when it answers, join it to ``agent``'s
        current call in ``mode`` — as if that phone had dialled the supervision code plus
        the agent's extension (the same path from the answer on). When that extension is
        already supervising the agent's call, switch it to ``mode`` instead (as its digits
        4-7 do). Returns (the originate id, False), or (the supervising call's id, True) on
        a switch; None when the extension has no registered phone. ``LookupError`` when the
        agent is on no call, ``KeyError`` for an unknown agent, ``ValueError`` for an
        unknown mode or a supervisor's number that is no extension (an outside number must
        never hear a call)."""
        if mode not in SUPERVISION_DIGITS.values():
            raise ValueError(f"unknown supervision mode {mode}")
        if not self.control.is_extension(extension):
            raise ValueError(f"{extension} is no extension")
        if agent not in self.acd.agents:
            raise KeyError(agent)
        target = self._agent_call(agent)
        if target is None:
            raise LookupError(agent)
        for call_id, state in self._supervising.items():
            info = self.control.info(call_id)
            if (
                state.agent == agent
                and state.target == target
                and info is not None
                and info.caller_ext == extension
                and not info.ended
            ):
                self._switch(call_id, state, mode)
                return call_id, True
        cfg = self.acd.agents[agent].cfg
        self._dial_seq += 1
        origin = f"sup-{self._dial_seq}-{agent}"
        self._supervise_dials[origin] = _Supervising(agent, mode=mode)
        started = self.control.originate(
            origin,
            extension,
            caller_id=cfg.extensions[0] if cfg.extensions else agent,
            display=f"{mode.capitalize()} {cfg.name or agent}",
            label=f"supervise-{mode}",
        )
        if started is None:
            self._supervise_dials.pop(origin, None)
            return None
        log.info("supervision_dialled", origin=origin, agent=agent, supervisor=extension, mode=mode)
        return origin, False

    def _supervise_dial_result(self, event: OriginateAnswered | OriginateFailed) -> None:
        state = self._supervise_dials.pop(event.offer_id)
        if isinstance(event, OriginateFailed):
            log.info("supervision_unanswered", origin=event.offer_id, status=event.status)
            return
        self._supervising[event.call_id] = state
        self._supervisor_answered(event.call_id)

    def subscribe(self, handler: Callable[[AcdItem], None]) -> Callable[[], None]:
        """Call ``handler`` with every queue event and agent state change as it is logged
        (before it is committed), and with every offer made to an agent and its end
        (:class:`OfferMade`, :class:`OfferEnded`); the returned function unsubscribes. A
        handler that raises is logged and stays subscribed. Handlers ignore kinds of item
        they do not know (more may come)."""
        self._listeners.append(handler)

        def unsubscribe() -> None:
            if handler in self._listeners:
                self._listeners.remove(handler)

        return unsubscribe

    def _tell(self, item: AcdItem) -> None:
        for handler in tuple(self._listeners):
            try:
                handler(item)
            except Exception:
                log.exception("acd_listener_failed", kind=type(item).__name__)

    def agent_states(self) -> dict[str, tuple[AgentState, str | None]]:
        return {a: (x.sm.state, x.sm.reason) for a, x in self.acd.agents.items()}

    def queue_snapshots(self, now: float | None = None) -> list[QueueSnapshot]:
        """Every queue now (or at ``now``, epoch seconds): waiting callers, the longest
        wait, members by state (read-only; for the API and metrics)."""
        return self.acd.queue_snapshots(time.time() if now is None else now)

    def agent_snapshots(self) -> list[AgentSnapshot]:
        """Every agent now, with the call they are on: their queue call, else the last
        other call one of their phones is up on (read-only; for the API and metrics)."""
        on_calls: dict[str, str] = {}
        for leg_id, agent in self._legs.items():
            on_calls[agent] = self._leg_calls[leg_id]
        out = []
        for snap in self.acd.agent_snapshots():
            current = snap.current_call
            call = self._calls.get(current) if current is not None else None
            call = call or on_calls.get(snap.id)
            out.append(replace(snap, current_call=call) if call != current else snap)
        return out

    def offered_agents(self, call_id: str) -> frozenset[str]:
        """The agents the live call ``call_id`` rings for now (read-only; the screen pop of
        an offered call is theirs to read before they answer)."""
        return frozenset(agent for (_, agent), c in self._offers_told.items() if c == call_id)

    def add_callback(self, call_id: str, caller: str, queue: str, number: str) -> bool:
        """An IVR ``callback`` node with a queue: the request takes its place in that queue
        now (the caller hangs up). False if the queue does not exist."""
        if queue not in self.acd.queues:
            return False
        acd_id, created = self.acd.enqueue_callback(
            f"cb-{call_id}", queue, number, caller, time.time()
        )
        if not created:
            log.info("callback_already_pending", call=call_id, number=number, pending=acd_id)
        self._pump()
        return True

    # -- events from the seam ---------------------------------------------------------------

    def _on_event(self, event: CallEvent) -> None:
        match event:
            case DtmfReceived(call_id=call_id, digit=digit, role="caller"):
                waiting = self._waiting.get(call_id)
                if waiting is not None:
                    waiting.on_dtmf(digit)
                elif call_id in self._supervising:
                    self._supervisor_digit(call_id, digit)
            case CallArrived(kind="queue"):
                self._arrived(event)
            case OfferAnswered():
                self._offer_answered(event)
            case OfferRejected():
                self._offer_rejected(event)
            case OriginateAnswered() | OriginateFailed() if event.offer_id in self._supervise_dials:
                self._supervise_dial_result(event)
            case OriginateAnswered() | OriginateFailed():
                self._originate_result(event)
            case PlaybackFinished(play_id=play_id):
                self._playback_finished(play_id)
            case ConnectFailed(call_id=call_id) if call_id in self._connecting:
                self._connecting.discard(call_id)
                self.control.hangup(call_id, "overflow_failed")
            case LegAnswered():
                self._side_up(event)
            case LegClosed(leg_id=leg_id):
                self._leg_closed(leg_id)
            case CallEnded():
                self._call_ended(event)
                self._offers_of_call_ended(event.call_id)
                self._when_ended_durable(event.call_id)
            case FeatureCodeDialled():
                self._feature(event)
            case CallAnswered(call_id=call_id) if call_id in self._supervising:
                self._supervisor_answered(call_id)
            case _:
                pass

    # -- callers ------------------------------------------------------------------------------

    def _arrived(self, event: CallArrived) -> None:
        variables = dict(event.variables)
        if event.skills:
            skills = list(event.skills)
            variables |= {"skills": ",".join(skills), "skill": skills[0]}
        self.enqueue(
            event.call_id, event.caller, event.target, event.priority, variables, event.survey
        )

    def enqueue(
        self,
        call_id: str,
        caller: str,
        queue: str,
        priority: int | None,
        variables: dict[str, str],
        survey: str | None,
    ) -> None:
        """The (answered) call joins ``queue`` with music on hold."""
        if queue not in self.acd.queues:
            log.warning("unknown_queue", call=call_id, queue=queue)
            self.control.hangup(call_id, "unknown_queue")
            return
        self._waiting[call_id] = _Waiting(
            call_id, caller, self._caller_digit, self._entered_callback_number
        )
        self._calls[call_id] = call_id
        self._acd_of[call_id] = call_id
        if survey is not None:
            self._surveys[call_id] = survey
        self._music(call_id, queue)
        grade = variables.get("customer.grade")
        needs_grade = bool(self.acd.queues[queue].cfg.grade_priority) and priority is None
        if grade is None and needs_grade and self.store is not None:
            task = asyncio.get_running_loop().create_task(
                self._join_with_grade(call_id, caller, queue, variables)
            )
            task.add_done_callback(_log_task_error)
            return
        self._join(call_id, caller, queue, priority, variables, grade)

    async def _join_with_grade(
        self, call_id: str, caller: str, queue: str, variables: dict[str, str]
    ) -> None:
        assert self.store is not None
        customer = await self.store.find_customer_by_number(caller)
        if call_id in self._waiting:
            self._join(
                call_id, caller, queue, None, variables, customer.grade if customer else None
            )

    def _join(
        self,
        call_id: str,
        caller: str,
        queue: str,
        priority: int | None,
        variables: dict[str, str],
        grade: str | None,
        *,
        refused_before: bool = False,
    ) -> None:
        result = self.acd.enqueue(
            call_id,
            queue,
            caller,
            time.time(),
            priority=priority,
            variables=variables,
            grade=grade,
        )
        if not result.joined:
            log.info("queue_join_refused", call=call_id, queue=queue, reason=result.reason)
            overflow = self.acd.queues[queue].cfg.overflow
            kind, _, target = (overflow or "").partition(":")
            if kind == "queue" and not refused_before and target in self.acd.queues:
                self._join(call_id, caller, target, priority, variables, grade, refused_before=True)
                return
            if kind == "callback":
                # Full or empty: the caller is called back, and keeps this moment as their place.
                self.acd.enqueue_callback(call_id, queue, caller, caller, time.time())
            self._calls.pop(call_id, None)
            self._route_exit(call_id, result.reason or "full", overflow)
        self._pump()

    def _caller_digit(self, waiting: _Waiting, digit: str) -> None:
        call_id = waiting.call_id
        if call_id not in self.acd.calls:
            return
        cfg = self.acd.queues[self.acd.calls[call_id].queue].cfg
        if digit == cfg.callback_key:
            # Confirm this number with # or enter another; the caller keeps waiting meanwhile.
            self._announce(call_id, ["callback-number"])
            waiting.collect_number()
            return
        if self.acd.exit_with_key(call_id, digit, time.time()):
            self._pump()

    def _entered_callback_number(self, waiting: _Waiting, number: str) -> None:
        if self._waiting.get(waiting.call_id) is waiting:  # still waiting in the queue
            self._callback_number(waiting.call_id, number)

    def _callback_number(self, call_id: str, number: str) -> None:
        if call_id not in self.acd.calls or not self.acd.is_waiting(call_id):
            return
        acd_id, created = self.acd.request_callback(call_id, number, time.time())
        if not created:
            log.info("callback_already_pending", call=call_id, number=number, pending=acd_id)
        self._pump()
        self._calls.pop(call_id, None)
        if created:
            # Not dialled back while this call is still being hung up (their phone is busy).
            self._hanging_up.add(call_id)
        self._stop_waiting(call_id)
        self._play_then_hang_up(call_id, ["callback-confirmed", "goodbye"], "callback_requested")

    def _stop_waiting(self, call_id: str) -> None:
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None:
            waiting.cancel()
        self.control.stop_music_on_hold(call_id)

    def _call_ended(self, event: CallEnded) -> None:
        call_id = event.call_id
        self._stop_waiting_state(call_id)
        if call_id in self._hanging_up:
            self._hanging_up.discard(call_id)
            for dial in self._dial_later.pop(call_id, []):
                self._dial_callback(dial)
        self._dial_call_ended(call_id)
        acd_id = self._acd_of.pop(call_id, None)
        if acd_id is None:
            return
        if self._calls.get(acd_id) != call_id:
            return  # the ACD call moved on (a callback's legs were joined into one call)
        self._calls.pop(acd_id, None)
        self._surveys.pop(acd_id, None)
        if acd_id not in self.acd.calls:
            return
        now = time.time()
        if self.acd.is_waiting(acd_id):
            self.acd.caller_left(acd_id, now)
        elif event.cause == "transferred":
            self.acd.transferred(acd_id, now, event.transferred_to or event.callee)
        else:
            self.acd.call_completed(acd_id, now, "agent" if event.side == "callee" else "caller")
        self._pump()

    def _when_ended_durable(self, call_id: str) -> None:
        """The phone hears the end of the call confirmed (BYE 200) only once the queue
        events and agent states it caused are committed."""
        if self.store is not None and self._written_step < self._queued_step:
            self.control.hold_acknowledgement(call_id, self._durable())

    def durable(self) -> asyncio.Future[None]:
        """Resolves once every queue event and agent state logged so far is committed (the
        API answers an agent's state change only then)."""
        return self._durable()

    def _durable(self) -> asyncio.Future[None]:
        """Resolves once everything logged so far is committed to the store."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.store is None or self._written_step >= self._queued_step:
            done.set_result(None)
        else:
            self._durable_waiters.append((self._queued_step, done))
        return done

    def _when_durable(self, then: Callable[[], object]) -> None:
        """Run ``then`` once what is logged is committed, or after ACK_WAIT_LIMIT seconds
        (a store that is down must not leave a phone waiting; the log stays queued)."""
        done = self._durable()
        if done.done():
            then()
            return
        ran = False

        def run(*_args: object) -> None:
            nonlocal ran
            if not ran:
                ran = True
                timer.cancel()
                if not done.done():
                    log.warning("acknowledged_before_commit")
                then()

        timer = asyncio.get_running_loop().call_later(ACK_WAIT_LIMIT, run)
        done.add_done_callback(run)

    def _stop_waiting_state(self, call_id: str) -> None:
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None:
            waiting.cancel()
        self._connecting.discard(call_id)
        self._supervising.pop(call_id, None)
        for play_id in [p for p, c in self._announcing.items() if c == call_id]:
            del self._announcing[play_id]
        for play_id in [p for p, (c, _) in self._then_hang_up.items() if c == call_id]:
            del self._then_hang_up[play_id]

    # -- carrying out the ACD's actions -------------------------------------------------------

    def _pump(self) -> None:
        for _ in range(1000):  # each action may cause others; never loop forever
            actions = self.acd.drain()
            if not actions:
                break
            for action in actions:
                try:
                    self._do(action)
                except Exception as exc:  # one bad action must not stop the queue
                    log.error("acd_action_failed", action=repr(action), error=repr(exc))
        self._flush()
        self._reschedule()

    def _do(self, action: Action) -> None:
        if isinstance(action, Offer):
            self._offer(action)
        elif isinstance(action, CancelOffer):
            dial = self._dials.get(action.call)
            if dial is not None and dial.dial.agent == action.agent:
                self._cancel_dial(action.call)
                return
            self._offer_ended(action.call, action.agent, "withdrawn")
            call_id = self._calls.get(action.call)
            info = self.control.info(call_id) if call_id is not None else None
            if info is not None:
                for key in [k for k in info.offers if k.startswith(action.agent + "/")]:
                    self.control.cancel_offer(info.call_id, key)
        elif isinstance(action, ExitQueue):
            call_id = self._calls.pop(action.call, None)
            if call_id is not None:
                self._route_exit(call_id, action.reason, action.destination)
        elif isinstance(action, Announce):
            call_id = self._calls.get(action.call)
            if call_id is not None:
                lang = self._language(call_id)
                if action.periodic:
                    items = ["queue-periodic"]
                else:
                    items = ["queue-position", *say_number(action.position, lang)]
                    minutes = max(1, round(action.estimated_wait / 60))
                    items += ["queue-wait", *say_number(minutes, lang), "minutes"]
                self._announce(call_id, items)
        elif isinstance(action, OfferCallback):
            call_id = self._calls.get(action.call)
            if call_id is not None:
                self._announce(call_id, ["queue-callback"])
        elif isinstance(action, DialCallback):
            self._dial_callback(action)

    def _offer(self, offer: Offer) -> None:
        call_id = self._calls.get(offer.call)
        agent = self.acd.agents[offer.agent].cfg
        info = self.control.info(call_id) if call_id is not None else None
        rang = False
        if info is not None and not info.ended:
            for ext in agent.extensions:
                rang |= self.control.offer(
                    info.call_id,
                    f"{offer.agent}/{ext}",
                    ext,
                    ring_timeout=offer.timeout + 5,  # the ACD's own timer ends it first
                    display=f"{offer.queue}: {info.caller}",
                )
        if not rang:
            log.info("agent_unreachable", agent=offer.agent, call=offer.call)
            asyncio.get_running_loop().call_soon(self._missed, offer.call, offer.agent)
            return
        assert info is not None
        now = time.time()
        entry = self.acd.calls.get(offer.call)
        self._offers_told[(offer.call, offer.agent)] = info.call_id
        self._tell(
            OfferMade(
                datetime.fromtimestamp(now, UTC),
                offer.agent,
                info.call_id,
                offer.queue,
                info.caller,
                round(max(0.0, now - entry.entered), 1) if entry is not None else 0.0,
                info.ivr_keys,
            )
        )

    def _offer_ended(self, acd_id: str, agent: str, outcome: str) -> None:
        call_id = self._offers_told.pop((acd_id, agent), None)
        if call_id is not None:
            self._tell(OfferEnded(agent, call_id, outcome))

    def _offers_of_call_ended(self, call_id: str) -> None:
        """Offers of a call that ended and the ACD did not withdraw (none, normally)."""
        for acd_id, agent in [k for k, c in self._offers_told.items() if c == call_id]:
            self._offer_ended(acd_id, agent, "withdrawn")

    def _missed(self, acd_id: str, agent: str) -> None:
        self._offer_ended(acd_id, agent, "rejected")
        self.acd.offer_failed(acd_id, agent, time.time())
        self._pump()

    def ringing_offer(self, agent: str) -> str | None:
        """The call a queue offer rings ``agent``'s phones with now (None: none)."""
        return next((c for (_, a), c in self._offers_told.items() if a == agent), None)

    def reject_offer(self, agent: str) -> str | None:
        """The agent declines the offer ringing their phones (the panel's reject button):
        the phones stop ringing and the ACD treats it as a 486/603 from the phone — a
        missed offer, so the next agent is tried or the caller waits on. Returns the
        offered call's id; None when no queue offer rings for ``agent``."""
        for (acd_id, offered), call_id in list(self._offers_told.items()):
            if offered != agent:
                continue
            info = self.control.info(call_id)
            if info is not None:
                for key in [k for k in info.offers if k.startswith(agent + "/")]:
                    self.control.cancel_offer(call_id, key)
            log.info("offer_refused", agent=agent, call=call_id, status=603, source="panel")
            self._missed(acd_id, agent)
            return call_id
        return None

    def _offer_rejected(self, event: OfferRejected) -> None:
        if event.offer_id == "callback":
            self._second_failed(event.call_id, event.status)
            return
        acd_id = self._acd_of.get(event.call_id)
        if acd_id is None or "/" not in event.offer_id:
            return
        agent = event.offer_id.split("/", 1)[0]
        info = self.control.info(event.call_id)
        if info is not None and any(k.startswith(agent + "/") for k in info.offers):
            return  # another phone of the agent still rings
        log.info("offer_refused", agent=agent, call=event.call_id, status=event.status)
        self._missed(acd_id, agent)

    def _offer_answered(self, event: OfferAnswered) -> None:
        if event.offer_id == "callback":
            self._second_answered(event)
            return
        acd_id = self._acd_of.get(event.call_id)
        if acd_id is None or "/" not in event.offer_id:
            return
        agent = event.offer_id.split("/", 1)[0]
        offered = self.acd.calls.get(acd_id)
        if offered is None or agent not in offered.offers:
            # The ACD withdrew the offer meanwhile (another agent answered first).
            self.control.cancel_offer(event.call_id, event.offer_id)
            return
        self._offer_ended(acd_id, agent, "answered")
        self.acd.answered(acd_id, agent, time.time())
        self._stop_waiting(event.call_id)
        self.control.accept_offer(event.call_id, event.offer_id)
        survey = self._surveys.get(acd_id)
        if survey is not None:
            self.control.continue_after_callee(event.call_id, "ivr", survey)
        self._pump()

    def _route_exit(self, call_id: str, reason: str, destination: str | None) -> None:
        """A caller leaves the queue for ``destination`` (None: goodbye and hang up)."""
        self._stop_waiting(call_id)
        kind, _, target = (destination or "hangup").partition(":")
        log.info("queue_exit", call=call_id, reason=reason, destination=destination)
        if kind == "callback":
            self._play_then_hang_up(
                call_id, ["callback-confirmed", "goodbye"], "callback_requested"
            )
        elif kind in ("voicemail", "ivr") and self.control.route(call_id, kind, target):
            return
        elif kind in ("extension", "number"):
            # number: an outside number (the admin's) through the trunks of its rule.
            if self.control.connect_to(call_id, target, outside=kind == "number"):
                self._connecting.add(call_id)
            else:
                self.control.hangup(call_id, "overflow_failed")
        else:  # hangup, or a queue that would not take the caller either
            self._play_then_hang_up(call_id, ["goodbye"], f"queue_{reason}")

    # -- callbacks -----------------------------------------------------------------------------

    def _dial_callback(self, dial: DialCallback) -> None:
        """Call the agent (or the customer) first, then the other; the connected call has
        the customer as caller and the agent as callee, like any queue call."""
        if dial.call in self._hanging_up:  # the agent stays reserved for those seconds
            self._dial_later.setdefault(dial.call, []).append(dial)
            return
        entry = self.acd.calls.get(dial.call)
        if entry is None or dial.agent not in entry.offers:
            return  # withdrawn while the caller was hanging up
        agent = self.acd.agents[dial.agent].cfg
        if not agent.extensions:
            asyncio.get_running_loop().call_soon(self._callback_failed, dial.call, "no_phone")
            return
        agent_ext = agent.extensions[0]
        first, second = (agent_ext, dial.number) if dial.agent_first else (dial.number, agent_ext)
        self._dial_seq += 1
        state = _Dial(dial.call, dial, second, f"cb{self._dial_seq}-{dial.call}")
        self._dials[dial.call] = state
        self._origins.add(state.origin_id)
        first_call = self.control.originate(
            state.origin_id,
            first,
            caller_id=dial.number if dial.agent_first else agent_ext,
            display=f"Callback {dial.number}" if dial.agent_first else None,
            ring_timeout=CALLBACK_RING_SECONDS,
            label=second,
            # The customer's number leaves through a trunk as the agent's call (the
            # agent's class of service and caller ID).
            on_behalf_of=agent_ext,
        )
        if first_call is None:
            asyncio.get_running_loop().call_soon(self._dial_failed, state, "unreachable")
        else:
            state.first_call = first_call

    def _current(self, state: _Dial) -> bool:
        entry = self.acd.calls.get(state.acd_id)
        return (
            self._dials.get(state.acd_id) is state
            and entry is not None
            and state.dial.agent in entry.offers
        )

    def _dial_failed(self, state: _Dial, reason: str) -> None:
        if self._dials.get(state.acd_id) is state:
            del self._dials[state.acd_id]
            self._callback_failed(state.acd_id, reason)

    def _originate_result(self, event: OriginateAnswered | OriginateFailed) -> None:
        if event.offer_id not in self._origins:
            return  # another service's call (a click-to-call): not ours to judge
        self._origins.discard(event.offer_id)
        state = next((d for d in self._dials.values() if d.origin_id == event.offer_id), None)
        if state is None:
            if isinstance(event, OriginateAnswered):
                self.control.hangup(event.call_id, "callback_cancelled")
            return
        if isinstance(event, OriginateFailed):
            self._dial_failed(state, f"sip_{event.status}")
            return
        if not self._current(state):
            self.control.hangup(event.call_id, "callback_cancelled")
            return
        self._own_legs.add(event.leg_id)
        state.leg_call = event.call_id
        entry = self.acd.calls.get(state.acd_id)
        self.control.annotate(  # a failed attempt's record still names its request
            event.call_id,
            queue=entry.queue if entry is not None else None,
            queue_call_id=state.acd_id,
            callback_id=self._callback_rows.get(state.acd_id),
        )
        self.control.start_tone(event.call_id, "ringback")
        agent = self.acd.agents[state.dial.agent].cfg
        rang = self.control.offer(
            event.call_id,
            "callback",
            state.second,
            ring_timeout=CALLBACK_RING_SECONDS,
            display=None if state.dial.agent_first else f"Callback {state.dial.number}",
            on_behalf_of=agent.extensions[0] if agent.extensions else "",
        )
        if not rang:
            self._second_failed(event.call_id, 404)

    def _dial_of_leg(self, call_id: str) -> _Dial | None:
        return next((d for d in self._dials.values() if d.leg_call == call_id), None)

    def _second_answered(self, event: OfferAnswered) -> None:
        state = self._dial_of_leg(event.call_id)
        if state is None or not self._current(state):
            self.control.cancel_offer(event.call_id, event.offer_id)
            return
        self._own_legs.add(event.leg_id)
        del self._dials[state.acd_id]
        # Agent first: the customer becomes the caller, the agent the callee.
        final = self.control.accept_offer(
            event.call_id, "callback", callee_first=state.dial.agent_first
        )
        if final is None:
            self._callback_failed(state.acd_id, "hung_up")
            return
        self._calls[state.acd_id] = final
        self._acd_of[final] = state.acd_id
        self.acd.callback_answered(state.acd_id, state.dial.agent, time.time())
        self._pump()

    def _second_failed(self, call_id: str, status: int) -> None:
        state = self._dial_of_leg(call_id)
        if state is None:
            return
        state.leg_call = None  # its end is ours, not a hang-up to report
        self.control.hangup(call_id, "callback_failed")
        self._dial_failed(state, f"sip_{status}")

    def _dial_call_ended(self, call_id: str) -> None:
        state = self._dial_of_leg(call_id)
        if state is not None:
            self._dial_failed(state, "hung_up")

    def _cancel_dial(self, acd_id: str) -> None:
        """The ACD took a callback's agent back (e.g. the agent took another call)."""
        state = self._dials.pop(acd_id, None)
        if state is None:
            return
        if state.leg_call is not None:
            leg_call, state.leg_call = state.leg_call, None
            self.control.hangup(leg_call, "callback_cancelled")
        else:
            self.control.cancel_originate(state.origin_id)
            self._origins.discard(state.origin_id)  # a cancelled originate reports nothing

    def _callback_failed(self, acd_id: str, reason: str) -> None:
        log.info("callback_attempt_failed", call=acd_id, reason=reason)
        self._calls.pop(acd_id, None)
        self.acd.callback_failed(acd_id, time.time(), reason)
        self._pump()

    # -- agents' other calls, feature codes, supervision ------------------------------------------

    def _side_up(self, event: LegAnswered) -> None:
        leg_id = event.leg_id
        if any(d.first_call == event.call_id for d in self._dials.values()):
            self._own_legs.add(leg_id)  # a callback's first leg: the ACD reserved that agent
        if leg_id in self._legs:
            # The leg went on in another call (a transfer): that is the call it is on now.
            self._leg_calls[leg_id] = event.call_id
            return
        if leg_id in self._own_legs:
            return
        if event.trunk is not None:
            return  # a trunk party: its number is whatever it presented, no agent's phone
        agent = self._agent_of_ext.get(event.extension)
        if agent is None:
            return
        info = self.control.info(event.call_id)
        callee = info.callee if info is not None else ""
        if callee[:1] in ("*", "#") and not callee.startswith(self._supervise_codes):
            return  # a feature code's beep is not a call
        self._legs[leg_id] = agent
        self._leg_calls[leg_id] = event.call_id
        self._busy[agent] += 1  # per agent: an agent with two phones is busy on either
        if self._busy[agent] == 1:
            if event.role == "callee":
                kind = "inbound"  # a direct call to the agent's extension
            else:
                kind = "internal" if self.control.is_extension(callee) else "outbound"
            self.acd.agent_call_started(agent, time.time(), kind)
            self._pump()

    def _leg_closed(self, leg_id: str) -> None:
        self._own_legs.discard(leg_id)
        agent = self._legs.pop(leg_id, None)
        self._leg_calls.pop(leg_id, None)
        if agent is None:
            return
        self._busy[agent] -= 1
        if self._busy[agent] <= 0:
            del self._busy[agent]
            self.acd.agent_call_ended(agent, time.time())
            self._pump()

    def _feature(self, event: FeatureCodeDialled) -> None:
        """An ACD feature code dialled from ``event.caller``'s phone."""
        control, codes, user = self.control, self.codes, event.caller
        if event.code not in codes.all():
            return  # another service's code: every service sees every FeatureCodeDialled
        mode = codes.supervision().get(event.code)
        if mode is not None:
            agent = self._agent_of_ext.get(event.digits)
            if user not in self.supervisors:
                control.reject(event.call_id, 403, "Not A Supervisor")
            elif agent is None or self._agent_call(agent) is None:
                control.reject(event.call_id, 404, "No Call To Supervise")
            else:
                self._supervising[event.call_id] = _Supervising(agent, mode=mode)
                control.answer(event.call_id)
            return
        agent = self._agent_of_ext.get(user)
        if agent is None:
            control.reject(event.call_id, 403, "Not An Agent")
            return
        if event.digits and event.code not in (codes.agent_pause, codes.wrap_up_done):
            control.reject(event.call_id, 404)
            return
        ok = True
        if event.code == codes.agent_login:
            self.login(agent)
        elif event.code == codes.agent_logout:
            self.logout(agent)
        elif event.code == codes.agent_pause:
            self.pause(agent, self.pause_reasons.get(event.digits, "busy"))
        elif event.code == codes.agent_unpause:
            self.unpause(agent)
        elif event.code == codes.wrap_up_done:
            ok = self.end_wrap_up(agent, event.digits or None)
        if not ok:
            control.reject(event.call_id, 403, "Wrap-Up Continues")
            return
        log.info("agent_feature", agent=agent, code=event.code, arg=event.digits)
        # The beep confirms the new state: it sounds once that state is committed.
        control.take(event.call_id)
        call_id = event.call_id
        self._when_durable(lambda: control.answer_with_tone(call_id, "beep"))

    def _supervisor_answered(self, call_id: str) -> None:
        state = self._supervising[call_id]
        target = self._agent_call(state.agent)
        if target is None:
            self._supervising.pop(call_id, None)
            self.control.hangup(call_id, "nothing_to_supervise")
            return
        state.target = target
        mode, state.mode = state.mode, ""
        self._switch(call_id, state, mode)

    def _supervisor_digit(self, call_id: str, digit: str) -> None:
        state = self._supervising[call_id]
        mode = SUPERVISION_DIGITS.get(digit)
        if mode is not None and state.target is not None:
            self._switch(call_id, state, mode)

    def _switch(self, call_id: str, state: _Supervising, mode: str) -> None:
        if mode == state.mode or state.target is None:
            return
        target = state.target
        info = self.control.info(call_id)
        supervisor = info.caller_ext if info is not None else ""
        self._supervision_logged(target, state.agent, supervisor, mode)
        if mode == "intercept":
            self._supervising.pop(call_id, None)
            self._intercepted(target, state.agent)
        if not self.control.supervise(call_id, target, mode):
            self._supervising.pop(call_id, None)
            self.control.hangup(call_id, "nothing_to_supervise")
            return
        state.mode = mode

    def _agent_call(self, agent: str) -> str | None:
        """The call the agent is talking on as the called party (queue calls first)."""
        exts = set(self.acd.agents[agent].cfg.extensions)
        best: str | None = None
        for info in self.control.calls():
            if info.ended or info.callee_ext is None or info.callee_ext not in exts:
                continue
            if self._acd_of.get(info.call_id, info.call_id) in self.acd.calls:
                return info.call_id
            best = best or info.call_id
        return best

    def _supervision_logged(self, call_id: str, agent: str, supervisor: str, mode: str) -> None:
        acd_id = self._acd_of.get(call_id, call_id)
        queue = self.acd.calls[acd_id].queue if acd_id in self.acd.calls else ""
        self.acd.log_event(time.time(), acd_id, queue, agent, "SUPERVISE", (supervisor, mode))
        log.info("supervision", call=call_id, agent=agent, supervisor=supervisor, mode=mode)
        self._flush()

    def _intercepted(self, call_id: str, agent: str) -> None:
        """The supervisor takes the call over: the agent's part of it is complete."""
        acd_id = self._acd_of.pop(call_id, call_id)
        self._calls.pop(acd_id, None)
        if acd_id in self.acd.calls:
            self.acd.call_completed(acd_id, time.time(), "agent")
        self._pump()

    # -- media on the caller's leg ---------------------------------------------------------------

    def _music(self, call_id: str, queue: str | None = None) -> None:
        """The queue's music (or the default music on hold) for the caller."""
        acd_call = self.acd.calls.get(self._acd_of.get(call_id, call_id))
        if queue is None and acd_call is not None:
            queue = acd_call.queue
        files = self.queue_music.get(queue, []) if queue is not None else []
        self.control.music_on_hold(call_id, files)

    def _language(self, call_id: str) -> str:
        """The prompt language the caller chose in the IVR (``language`` variable)."""
        entry = self.acd.calls.get(self._acd_of.get(call_id, call_id))
        lang = entry.variables.get("language", "en") if entry is not None else "en"
        return lang if lang in LANGUAGES else "en"

    def _files(self, names: list[str], language: str = "en") -> list[str]:
        out = []
        for name in names:
            path = self.prompts.resolve(name, language)
            if path is not None:
                out.append(str(path))
            else:
                log.warning("prompt_missing", prompt=name)
        return out

    def _announce(self, call_id: str, names: list[str]) -> None:
        """Interrupt the music with prompts, then resume it (while the caller still waits)."""
        files = self._files(names, self._language(call_id))
        if not files:
            return
        self.control.stop_music_on_hold(call_id)
        play_id = self.control.play(call_id, files)
        if play_id is not None:
            self._announcing[play_id] = call_id

    def _play_then_hang_up(self, call_id: str, names: list[str], cause: str) -> None:
        files = self._files(names, self._language(call_id))
        play_id = self.control.play(call_id, files) if files else None
        if play_id is None:
            self.control.hangup(call_id, cause)
            return
        self._then_hang_up[play_id] = (call_id, cause)

    def _playback_finished(self, play_id: str) -> None:
        call_id = self._announcing.pop(play_id, None)
        if call_id is not None:
            acd_id = self._acd_of.get(call_id, call_id)
            if call_id in self._waiting and self.acd.is_waiting(acd_id):
                self._music(call_id)
            return
        ending = self._then_hang_up.pop(play_id, None)
        if ending is not None:
            self.control.hangup(*ending)

    # -- timers and the logs ----------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.acd.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        delay = max(0.0, deadline - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.acd.tick(time.time())
        self._pump()

    def _apply_class_of_service(self, t: AgentTransition) -> None:
        """An agent with their own class of service lends it to their extensions while
        logged in (the extension's own class applies again after logout)."""
        if t.new is AgentState.LOGGED_OUT:
            self._lend_class_of_service(t.agent, False)
        elif t.old is AgentState.LOGGED_OUT:
            self._lend_class_of_service(t.agent, True)

    def _lend_class_of_service(self, agent_id: str, logged_in: bool) -> None:
        """Take back what the agent lent before (the extensions it was lent to, even if a
        reload changed them), then lend the configured class if ``logged_in``."""
        for ext in self._lent_class.pop(agent_id, ()):
            self.control.set_class_of_service(ext, None)
        agent = self.acd.agents.get(agent_id)
        if not logged_in or agent is None or agent.cfg.class_of_service is None:
            return
        for ext in agent.cfg.extensions:
            self.control.set_class_of_service(ext, agent.cfg.class_of_service)
        self._lent_class[agent_id] = agent.cfg.extensions

    def _flush(self) -> None:
        for e in self.acd.drain_events():
            at = datetime.fromtimestamp(e.time, UTC)
            log.info(
                "queue_event", line=e.queue_log_line(), kind=e.event, call=e.call, agent=e.agent
            )
            event = QueueEventData(at, e.call, e.queue, e.agent, e.event, e.data)
            self._pending_events.append(event)
            self._tell(event)
            if e.event in ("CONNECT", "CALLBACKCONNECT") and e.call in self.acd.calls:
                caller = self.acd.calls[e.call].caller
                self._pending_last[caller] = (e.agent, at)
            self._annotate(e.call, e.event, e.queue, e.agent, at)
            if e.event == "CALLBACKREQUEST" and e.call in self.acd.calls:
                c = self.acd.calls[e.call]
                self._pending_callbacks.append(
                    ("add", e.call, CallbackRequestData(e.data[0], c.caller, at, c.queue, e.call))
                )
            elif e.event == "CALLBACKCONNECT":
                self._pending_callbacks.append(("done", e.call, ("done", "connected", e.data[1])))
            elif e.event == "CALLBACKFAILED":
                self._pending_callbacks.append(("done", e.call, ("failed", e.data[2], e.data[1])))
        for t in self.acd.drain_agent_log():
            self._apply_class_of_service(t)
            log.info(
                "agent_state",
                agent=t.agent,
                old=t.old.value,
                new=t.new.value,
                trigger=t.event.value,
                reason=t.reason,
            )
            state = AgentStateData(
                datetime.fromtimestamp(t.at, UTC),
                t.agent,
                t.old.value,
                t.new.value,
                t.event.value,
                t.reason,
            )
            self._pending_states.append(state)
            self._tell(state)
        if self.store is None:
            self._pending_events.clear()
            self._pending_states.clear()
            self._pending_last.clear()
            self._pending_callbacks.clear()
            return
        if self._has_pending():
            self._queued_step += 1
            if self._writer is None or self._writer.done():
                self._writer = asyncio.get_running_loop().create_task(self._write())

    def _annotate(self, acd_id: str, event: str, queue: str, agent: str, at: datetime) -> None:
        """The call's record says what the queue log says (docs/records.md): the queue it
        joined (the wait counts from the first), the queue log's id for it, the agent id
        that answered, and for a callback the request it fulfils."""
        call_id = self._calls.get(acd_id)
        if call_id is None:
            return
        if event == "ENTERQUEUE":
            self.control.annotate(call_id, queue=queue, queued_at=at, queue_call_id=acd_id)
        elif event == "CONNECT":
            self._last_calls[agent] = call_id
            self.control.annotate(call_id, queue=queue, agent=agent, queue_call_id=acd_id)
        elif event == "CALLBACKCONNECT":
            self._last_calls[agent] = call_id
            self.control.annotate(
                call_id,
                direction="outbound",
                queue=queue,
                agent=agent,
                queue_call_id=acd_id,  # the call that asked for the callback
                callback_id=self._callback_rows.get(acd_id),
            )

    def _has_pending(self) -> bool:
        return bool(
            self._pending_events
            or self._pending_states
            or self._pending_last
            or self._pending_callbacks
        )

    async def _write(self) -> None:
        assert self.store is not None
        while self._has_pending():
            step = self._queued_step
            events, self._pending_events = self._pending_events, []
            states, self._pending_states = self._pending_states, []
            last, self._pending_last = self._pending_last, {}
            callbacks, self._pending_callbacks = self._pending_callbacks, []
            try:
                await self.store.add_acd_log(events, states)
                await self.store.save_last_agents(last)
            except Exception as exc:  # keep everything for the next flush, in order
                log.error("acd_log_not_stored", events=len(events), error=repr(exc))
                self._pending_events[:0] = events
                self._pending_states[:0] = states
                self._pending_last = last | self._pending_last
                self._pending_callbacks[:0] = callbacks
                return
            for op, acd_id, data in callbacks:
                try:
                    if op == "add":
                        row, _ = await self.store.add_callback_request(data)
                        self._callback_rows[acd_id] = row
                    elif acd_id in self._callback_rows:
                        status, outcome, attempts = data
                        row = self._callback_rows.pop(acd_id)
                        await self.store.finish_callback_request(
                            row, status, outcome, int(attempts)
                        )
                except Exception as exc:
                    log.error("callback_request_not_stored", call=acd_id, error=repr(exc))
            self._committed(step)

    def _committed(self, step: int) -> None:
        self._written_step = max(self._written_step, step)
        waiting, self._durable_waiters = self._durable_waiters, []
        for wanted, done in waiting:
            if wanted <= self._written_step:
                if not done.done():
                    done.set_result(None)
            else:
                self._durable_waiters.append((wanted, done))


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("acd_task_failed", error=repr(task.exception()))

"""Runs the ACD (:mod:`acd`) on Switchboard's calls: queues, agents' phones, supervision.

Theory of operation
-------------------
The :class:`acd.Acd` decides; this host carries the decisions out on SIP calls and feeds every
relevant happening back, with the wall clock (``time.time()``) as the ACD's clock:

- A caller reaches a queue (a dialplan destination of kind ``queue`` or an IVR ``queue``
  node): the call is answered, hears the queue's music, and joins the ACD. Their digits go to
  the queue (exit key, callback key).
- :class:`acd.Offer` rings the agent's extension(s) with the caller (the caller keeps their
  music). The first answer is connected (:meth:`pbx.b2bua.Call.accept`); a phone that
  refuses or stops ringing is reported as a missed offer; :class:`acd.CancelOffer` stops the
  ringing.
- The end of a call is reported as an abandon (still waiting) or a completion by the agent
  or the caller; a transfer as a transfer.
- Any other call an agent is on — outbound, internal, direct — makes them busy for the ACD:
  the B2BUA reports every party whose dialog is up, the media engine every leg that closes.
- Agents log in, out, pause (with a reason digit), unpause and end wrap-up with feature codes;
  supervisors listen (4), whisper (5), barge (6) or intercept (7) with codes + the agent's
  extension, switching modes during the call with those digits.
- :class:`acd.DialCallback` calls the agent (or the customer) first, then the other, and
  connects them.

The queue event log and agent state log are written to the store in order by one writer
task, and each event is also logged (``queue_event``, ``agent_state``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from acd import (
    Acd,
    Action,
    AgentConfig,
    AgentState,
    Announce,
    CancelOffer,
    DialCallback,
    ExitQueue,
    Offer,
    OfferCallback,
    QueueConfig,
    RuleStep,
    Strategy,
    WrapUpMode,
    parse_requirements,
)
from config import SwitchboardConfig
from crm import AgentStateData, CallbackRequestData, QueueEventData, Store
from ivr import LANGUAGES, PromptSets, say_number
from ivr.host import IvrHost
from media import Playlist, ToneSource, load_prompt
from pbx.b2bua import Call, CallApplication
from pbx.dialplan import RouteDecision
from pbx.features import Feature, FeatureRequest
from pbx.message import Request, make_response
from pbx.server import ApplicationFactory, SipServer
from pbx.stack import new_tag

__all__ = ["AcdHost", "acd_from_config"]

log = structlog.get_logger("switchboard.acd")

SUPERVISION_DIGITS = {"4": "listen", "5": "whisper", "6": "barge", "7": "intercept"}
_SUPERVISE = {
    Feature.SUPERVISE_LISTEN: "listen",
    Feature.SUPERVISE_WHISPER: "whisper",
    Feature.SUPERVISE_BARGE: "barge",
    Feature.SUPERVISE_INTERCEPT: "intercept",
}
CALLBACK_RING_SECONDS = 30.0
CALLBACK_ENTRY_SECONDS = 10.0  # silence that ends the entry of a callback number


_SAME_QUEUE_SETTINGS = (
    "ring_timeout",
    "retry_delay",
    "auto_pause_after",
    "wrap_up",
    "maxlen",
    "join_empty",
    "leave_when_empty",
    "max_wait",
    "overflow",
    "progressive_step",
    "service_level",
    "announce_position_every",
    "announce_every",
    "exit_key",
    "exit_destination",
)


def acd_from_config(cfg: SwitchboardConfig) -> tuple[list[AgentConfig], list[QueueConfig]]:
    """The ACD's agents and queues from ``agents:`` and ``queues:`` of the config."""
    agents = [
        AgentConfig(
            agent_id,
            a.name,
            tuple(a.extensions),
            dict(a.skills),
            a.wrap_up,
        )
        for agent_id, a in cfg.agents.items()
    ]
    queues = []
    for name, q in cfg.queues.items():
        # Settings with the same name and meaning in the YAML and in the ACD are copied as
        # they are; the rest is converted below.
        same = {k: getattr(q, k) for k in _SAME_QUEUE_SETTINGS}
        queues.append(
            QueueConfig(
                name,
                **same,
                strategy=Strategy(q.strategy),
                members=tuple(q.members),
                skill_rules=tuple(
                    RuleStep(parse_requirements(r.require), r.wait_under) for r in q.skill_rules
                ),
                wrap_up_mode=WrapUpMode(q.wrap_up_mode),
                wrap_up_codes=tuple(q.wrap_up_codes),
                last_agent_days=q.last_agent.days,
                last_agent_wait=q.last_agent.wait,
                grade_priority={str(k): v for k, v in q.grade_priority.items()},
                callback_key=q.callback.key,
                callback_offer_after=q.callback.offer_after,
                callback_attempts=q.callback.attempts,
                callback_retry_delay=q.callback.retry_delay,
                callback_agent_first=q.callback.order == "agent_first",
            )
        )
    return agents, queues


class _Waiting:
    """The application of a caller waiting in a queue: their digits go to the queue, or,
    after the callback key, make up the number to call back (``#`` ends it; ``#`` alone or
    silence means the caller's own number)."""

    def __init__(self, host: AcdHost, call: Call) -> None:
        self.host = host
        self.call = call
        self.number: list[str] | None = None  # digits of a callback number being entered
        self._timer: asyncio.TimerHandle | None = None

    def on_dtmf(self, digit: str) -> None:
        if self.number is None:
            self.host._caller_digit(self, digit)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        digits, self.number = "".join(self.number or ()), None
        if self.call.app is self and not self.call.ended:
            self.host._callback_number(self.call, digits if len(digits) >= 3 else self.call.caller)

    def on_hangup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


@dataclass(slots=True)
class _Dial:
    """A callback being dialled: the first leg, then the call that rings the second."""

    acd_id: str
    agent: str
    outbound: Any = None
    leg_call: Call | None = None


class _Quiet:
    """The application of a callback leg while the other party is rung."""

    def on_dtmf(self, digit: str) -> None:
        pass

    def on_hangup(self) -> None:
        pass


class _Supervisor:
    """A supervisor's call joined into an agent's call; digits 4-7 switch the mode."""

    def __init__(self, host: AcdHost, own: Call, target: Call, agent: str, mode: str) -> None:
        self.host = host
        self.own = own
        self.target = target
        self.agent = agent
        self.mode = ""
        media = host.server.media
        bridge = media.get_leg(target.a.leg_id).bridge_id
        if bridge is None or target.ended or target.b is None:
            own.hang_up_caller("nothing_to_supervise")
            return
        self.bridge = bridge
        media.join(bridge, own.a.leg_id)
        target.on_end.append(self._target_ended)
        self.switch(mode)

    def _target_ended(self, _call: Call, _side: str, _cause: str) -> None:
        if not self.own.ended and self.mode != "intercept":
            self.own.hang_up_caller("supervised_call_ended")

    def switch(self, mode: str) -> None:
        if mode == self.mode or self.own.ended or self.target.ended or self.target.b is None:
            return
        media = self.host.server.media
        sup = self.own.a.leg_id
        caller, agent = self.target.a.leg_id, self.target.b.leg_id
        self.host._supervision_logged(self.target, self.agent, self.own.a.ext, mode)
        if mode == "intercept":
            self.mode = mode
            self.host._intercepted(self.target, self.agent)
            self.target.take_over(self.own.a, self.own)
            return
        media.set_hears(self.bridge, caller, sup, mode == "barge")
        media.set_hears(self.bridge, agent, sup, mode in ("whisper", "barge"))
        self.mode = mode

    def on_dtmf(self, digit: str) -> None:
        mode = SUPERVISION_DIGITS.get(digit)
        if mode is not None:
            self.switch(mode)

    def on_hangup(self) -> None:
        pass


class AcdHost:
    """The ACD of one Switchboard process; see the module documentation."""

    def __init__(
        self,
        server: SipServer,
        store: Store | None,
        cfg: SwitchboardConfig,
        config_dir: Path,
        ivr: IvrHost | None = None,
    ) -> None:
        agents, queues = acd_from_config(cfg)
        self.acd = Acd(agents, queues)
        self.server = server
        self.store = store
        self.ivr = ivr
        self._settings(cfg, config_dir, agents)
        self._calls: dict[str, Call] = {}  # ACD call id -> the call carrying it
        self._surveys: dict[str, str] = {}  # ACD call id -> post-call survey flow
        self._legs: dict[str, str] = {}  # leg id -> extension, for every party up on a call
        self._busy: Counter[str] = Counter()
        self._own_legs: set[str] = set()  # callback legs: the ACD already knows about them
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
        # Callers who asked for a callback and are still hearing the confirmation, and the
        # dials that wait for them to be gone.
        self._hanging_up: dict[str, Call] = {}
        self._dial_later: dict[str, list[DialCallback]] = {}
        self._acd_of: dict[str, str] = {}  # call id -> ACD call id, where they differ
        self._writer: asyncio.Task[None] | None = None

    # -- wiring ------------------------------------------------------------------------------

    def reconfigure(self, cfg: SwitchboardConfig, config_dir: Path) -> None:
        """``config reload``: new agents, queues and ACD settings; logged-in agents, waiting
        callers and calls in progress carry on (see :meth:`acd.Acd.reconfigure`)."""
        agents, queues = acd_from_config(cfg)
        self.acd.reconfigure(agents, queues, time.time())
        self._settings(cfg, config_dir, agents)
        log.info("acd_reconfigured", agents=len(agents), queues=len(queues))
        self._pump()
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._prewarm))
        task.add_done_callback(_log_task_error)

    def _prewarm(self) -> None:
        """Decode every prompt the queues may say and every queue's music into the prompt
        cache (blocking: runs in a thread). A file that cannot be read is logged and skipped;
        playing it later logs again."""
        files = [str(f) for root in self.prompts.roots for f in sorted(root.glob("*/*.wav"))]
        files += [f for music in self.queue_music.values() for f in music]
        for path in files:
            try:
                load_prompt(path, 8000)
            except Exception as exc:
                log.warning("prompt_not_loaded", path=path, error=str(exc))

    def _settings(
        self, cfg: SwitchboardConfig, config_dir: Path, agents: list[AgentConfig]
    ) -> None:
        """What the host takes from the config (at start and on every reload)."""
        self.config = (cfg.agents, cfg.queues, cfg.acd)  # compared on reload
        self.prompts = PromptSets.for_config(config_dir)
        self.tone_plan = cfg.media.tone_plan
        self.pause_reasons = dict(cfg.acd.pause_reasons)
        self.supervisors = set(cfg.acd.supervisors)
        self.queue_music = {
            name: [str(config_dir / f) for f in q.music_on_hold] for name, q in cfg.queues.items()
        }
        self._agent_of_ext = {ext: a.id for a in agents for ext in a.extensions}
        f = cfg.features
        self._supervise_codes = (
            f.supervise_listen,
            f.supervise_whisper,
            f.supervise_barge,
            f.supervise_intercept,
        )

    def use_ivr(self, ivr: IvrHost | None) -> None:
        """After a reload: the new flows send their queue callers (and callbacks) here too."""
        self.ivr = ivr
        if ivr is not None:
            ivr.queue_handler = self.enqueue_from_ivr
            ivr.callback_handler = self.add_callback

    def install(self) -> None:
        server = self.server
        server.queue_application = self.queue_application()
        server.acd_features = self.on_feature
        server.b2bua.on_side_up = self._side_up
        server.media.on_leg_closed = self._leg_closed
        self.use_ivr(self.ivr)

    async def start(self) -> None:
        """Load the prompts and queue music off the event loop (so playing them later only
        hits the prompt cache), and restore who handled which caller last."""
        await asyncio.to_thread(self._prewarm)
        days = max((q.cfg.last_agent_days for q in self.acd.queues.values()), default=0.0)
        if self.store is None or days <= 0:
            return
        since = datetime.now(UTC) - timedelta(days=days)
        for caller, (agent, at) in (await self.store.load_last_agents(since)).items():
            self.acd.last_agent[caller] = (agent, at.timestamp())

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

    def supervise(self, supervisor_call: Call, agent: str, mode: str) -> CallApplication:
        """Join ``supervisor_call`` (answered) into the agent's current call in ``mode``."""
        target = self._agent_call(agent)
        if target is None:
            supervisor_call.hang_up_caller("nothing_to_supervise")
            return _Quiet()
        return _Supervisor(self, supervisor_call, target, agent, mode)

    def agent_states(self) -> dict[str, tuple[AgentState, str | None]]:
        return {a: (x.sm.state, x.sm.reason) for a, x in self.acd.agents.items()}

    # -- callers ------------------------------------------------------------------------------

    def queue_application(self) -> ApplicationFactory:
        """For dialplan destinations of kind ``queue``: answered calls join the queue."""

        def start(call: Call, decision: RouteDecision) -> CallApplication:
            dest = decision.destination
            skills = list(dest.skills)
            variables = {"skills": ",".join(skills)} | ({"skill": skills[0]} if skills else {})
            return self.enqueue(
                call, dest.target or decision.number, dest.priority, variables, None
            )

        return start

    def enqueue_from_ivr(
        self, call: Call, queue: str, priority: int, variables: dict[str, str], survey: str | None
    ) -> None:
        """An IVR ``queue`` node sends its caller here (priority 0: not given, so the
        customer's grade may set it)."""
        self.enqueue(call, queue, priority or None, variables, survey)

    def enqueue(
        self,
        call: Call,
        queue: str,
        priority: int | None,
        variables: dict[str, str],
        survey: str | None,
    ) -> CallApplication:
        """``call`` (answered) joins ``queue`` with music on hold."""
        app = _Waiting(self, call)
        call.app = app
        if queue not in self.acd.queues:
            log.warning("unknown_queue", call=call.id, queue=queue)
            call.hang_up_caller("unknown_queue")
            return app
        self._calls[call.id] = call
        call.on_end.append(self._call_ended)
        if survey is not None:
            self._surveys[call.id] = survey
        self._music(call, queue)
        grade = variables.get("customer.grade")
        needs_grade = bool(self.acd.queues[queue].cfg.grade_priority) and priority is None
        if grade is None and needs_grade and self.store is not None:
            task = asyncio.get_running_loop().create_task(
                self._join_with_grade(call, queue, variables)
            )
            task.add_done_callback(_log_task_error)
            return app
        self._join(call, queue, priority, variables, grade)
        return app

    async def _join_with_grade(self, call: Call, queue: str, variables: dict[str, str]) -> None:
        assert self.store is not None
        customer = await self.store.find_customer_by_number(call.caller)
        if not call.ended:
            self._join(call, queue, None, variables, customer.grade if customer else None)

    def _join(
        self,
        call: Call,
        queue: str,
        priority: int | None,
        variables: dict[str, str],
        grade: str | None,
        *,
        refused_before: bool = False,
    ) -> None:
        result = self.acd.enqueue(
            call.id,
            queue,
            call.caller,
            time.time(),
            priority=priority,
            variables=variables,
            grade=grade,
        )
        if not result.joined:
            log.info("queue_join_refused", call=call.id, queue=queue, reason=result.reason)
            overflow = self.acd.queues[queue].cfg.overflow
            kind, _, target = (overflow or "").partition(":")
            if kind == "queue" and not refused_before and target in self.acd.queues:
                self._join(call, target, priority, variables, grade, refused_before=True)
                return
            if kind == "callback":
                # Full or empty: the caller is called back, and keeps this moment as their place.
                self.acd.enqueue_callback(call.id, queue, call.caller, call.caller, time.time())
            self._route_exit(call, result.reason or "full", overflow)
        self._pump()

    def _caller_digit(self, waiting: _Waiting, digit: str) -> None:
        call = waiting.call
        if call.id not in self.acd.calls:
            return
        cfg = self.acd.queues[self.acd.calls[call.id].queue].cfg
        if digit == cfg.callback_key:
            # Confirm this number with # or enter another; the caller keeps waiting meanwhile.
            self._announce(call, ["callback-number"])
            waiting.collect_number()
            return
        if self.acd.exit_with_key(call.id, digit, time.time()):
            self._pump()

    def _callback_number(self, call: Call, number: str) -> None:
        if call.id not in self.acd.calls or not self.acd.is_waiting(call.id):
            return
        acd_id, created = self.acd.request_callback(call.id, number, time.time())
        if not created:
            log.info("callback_already_pending", call=call.id, number=number, pending=acd_id)
        self._pump()
        self._calls.pop(call.id, None)
        if created:
            # Not dialled back while this call is still being hung up (their phone is busy).
            self._hanging_up[call.id] = call
            call.on_end.append(lambda c, who, cause: self._hung_up(c.id))
        self._stop_music(call)
        call.app = None
        self._play_then_hang_up(call, ["callback-confirmed", "goodbye"], "callback_requested")

    def _hung_up(self, call_id: str) -> None:
        self._hanging_up.pop(call_id, None)
        for dial in self._dial_later.pop(call_id, []):
            self._dial_callback(dial)

    def add_callback(self, call: Call, queue: str, number: str) -> bool:
        """An IVR ``callback`` node with a queue: the request takes its place in that queue
        now (the caller hangs up). False if the queue does not exist."""
        if queue not in self.acd.queues:
            return False
        acd_id, created = self.acd.enqueue_callback(
            f"cb-{call.id}", queue, number, call.caller, time.time()
        )
        if not created:
            log.info("callback_already_pending", call=call.id, number=number, pending=acd_id)
        self._pump()
        return True

    def _call_ended(self, call: Call, side: str, cause: str) -> None:
        acd_id = call.id
        self._calls.pop(acd_id, None)
        self._surveys.pop(acd_id, None)
        if acd_id not in self.acd.calls:
            return
        now = time.time()
        if self.acd.is_waiting(acd_id):
            self.acd.caller_left(acd_id, now)
        elif cause == "transferred":
            self.acd.transferred(acd_id, now, call.callee)
        else:
            self.acd.call_completed(acd_id, now, "agent" if side == "callee" else "caller")
        self._pump()

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
            if dial is not None and dial.agent == action.agent:
                self._cancel_dial(action.call)
                return
            call = self._calls.get(action.call)
            if call is not None:
                for key in [k for k in call.offers if k.startswith(action.agent + "/")]:
                    call.cancel_offer(key)
        elif isinstance(action, ExitQueue):
            call = self._calls.pop(action.call, None)
            if call is not None and not call.ended:
                self._route_exit(call, action.reason, action.destination)
        elif isinstance(action, Announce):
            call = self._calls.get(action.call)
            if call is not None:
                lang = self._language(call)
                if action.periodic:
                    items = ["queue-periodic"]
                else:
                    items = ["queue-position", *say_number(action.position, lang)]
                    minutes = max(1, round(action.estimated_wait / 60))
                    items += ["queue-wait", *say_number(minutes, lang), "minutes"]
                self._announce(call, items)
        elif isinstance(action, OfferCallback):
            call = self._calls.get(action.call)
            if call is not None:
                self._announce(call, ["queue-callback"])
        elif isinstance(action, DialCallback):
            self._dial_callback(action)

    def _offer(self, offer: Offer) -> None:
        call = self._calls.get(offer.call)
        agent = self.acd.agents[offer.agent].cfg
        rang = False
        if call is not None and not call.ended:
            for ext in agent.extensions:
                rang |= call.offer(
                    f"{offer.agent}/{ext}",
                    ext,
                    ring_timeout=offer.timeout + 5,  # the ACD's own timer ends it first
                    on_answered=partial(self._agent_answered, call, offer.agent),
                    on_failed=partial(self._agent_failed, call, offer.agent),
                    display=f"{offer.queue}: {call.caller}",
                )
        if not rang:
            log.info("agent_unreachable", agent=offer.agent, call=offer.call)
            asyncio.get_running_loop().call_soon(self._missed, offer.call, offer.agent)

    def _missed(self, acd_id: str, agent: str) -> None:
        self.acd.offer_failed(acd_id, agent, time.time())
        self._pump()

    def _agent_failed(self, call: Call, agent: str, status: int) -> None:
        if any(k.startswith(agent + "/") for k in call.offers):
            return  # another phone of the agent still rings
        log.info("offer_refused", agent=agent, call=call.id, status=status)
        self._missed(call.id, agent)

    def _agent_answered(self, call: Call, agent: str, side: Any) -> None:
        offered = self.acd.calls.get(call.id)
        if offered is None or agent not in offered.offers:
            # The ACD withdrew the offer meanwhile (another agent answered first).
            self.server.b2bua.send_bye(side.dialog)
            self.server.media.close_leg(side.leg_id)
            return
        self.acd.answered(call.id, agent, time.time())
        call.accept(side)
        survey = self._surveys.get(call.id)
        if survey is not None and self.ivr is not None:
            call.after_callee = self.ivr.post_call(survey)
            call.after_callee_label = f"survey:{survey}"
        self._pump()

    def _route_exit(self, call: Call, reason: str, destination: str | None) -> None:
        """A caller leaves the queue for ``destination`` (None: goodbye and hang up)."""
        self._stop_music(call)
        call.app = None
        kind, _, target = (destination or "hangup").partition(":")
        log.info("queue_exit", call=call.id, reason=reason, destination=destination)
        if kind == "callback":
            self._play_then_hang_up(call, ["callback-confirmed", "goodbye"], "callback_requested")
        elif (
            kind == "voicemail" and self.ivr is not None and self.ivr.voicemail_on(call, target)
        ) or (kind == "ivr" and self.ivr is not None and self.ivr.start_on(call, target)):
            return
        elif kind == "extension":
            if not call.connect_to(target, lambda status: call.hang_up_caller("overflow_failed")):
                call.hang_up_caller("overflow_failed")
        else:  # hangup, or a queue that would not take the caller either
            self._play_then_hang_up(call, ["goodbye"], f"queue_{reason}")

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
        b2b = self.server.b2bua
        state = _Dial(dial.call, dial.agent)
        self._dials[dial.call] = state

        def current() -> bool:
            entry = self.acd.calls.get(dial.call)
            return (
                self._dials.get(dial.call) is state
                and entry is not None
                and (dial.agent in entry.offers)
            )

        def failed(reason: str) -> None:
            if self._dials.get(dial.call) is state:
                del self._dials[dial.call]
                self._callback_failed(dial.call, reason)

        def first_answered(side: Any) -> None:
            if not current():
                b2b.send_bye(side.dialog)
                self.server.media.close_leg(side.leg_id)
                return
            self._own_legs.add(side.leg_id)
            leg_call = b2b.continue_with_application(
                side, linked_id=None, callee=second, start=lambda c: _Quiet()
            )
            state.leg_call = leg_call
            self.server.media.get_leg(side.leg_id).start_tone("ringback")
            leg_call.on_end.append(lambda c, who, cause: failed("hung_up"))

            def second_answered(other: Any) -> None:
                if not current():
                    b2b.send_bye(other.dialog)
                    self.server.media.close_leg(other.leg_id)
                    return
                self._own_legs.add(other.leg_id)
                leg_call.on_end.clear()
                if dial.agent_first:  # the customer becomes the caller, the agent the callee
                    b2b.retire(leg_call)
                    final = b2b.connect(other, side, linked_id=None, callee=agent_ext)
                else:
                    leg_call.accept(other)
                    final = leg_call
                del self._dials[dial.call]
                self._calls[dial.call] = final
                self._acd_of[final.id] = dial.call
                final.on_end.append(partial(self._callback_call_ended, dial.call))
                self.acd.callback_answered(dial.call, dial.agent, time.time())
                self._pump()

            def second_failed(status: int) -> None:
                leg_call.on_end.clear()
                leg_call.hang_up_caller("callback_failed")
                failed(f"sip_{status}")

            rang = leg_call.offer(
                "callback",
                second,
                ring_timeout=CALLBACK_RING_SECONDS,
                on_answered=second_answered,
                on_failed=second_failed,
                display=None if dial.agent_first else f"Callback {dial.number}",
            )
            if not rang:
                second_failed(404)

        state.outbound = b2b.originate(
            first,
            caller_ext=dial.number if dial.agent_first else agent_ext,
            display=f"Callback {dial.number}" if dial.agent_first else None,
            ring_timeout=CALLBACK_RING_SECONDS,
            on_answered=first_answered,
            on_failed=lambda status: failed(f"sip_{status}"),
        )
        if state.outbound is None:
            asyncio.get_running_loop().call_soon(failed, "unreachable")

    def _cancel_dial(self, acd_id: str) -> None:
        """The ACD took a callback's agent back (e.g. the agent took another call)."""
        state = self._dials.pop(acd_id, None)
        if state is None:
            return
        if state.leg_call is not None:
            state.leg_call.on_end.clear()
            state.leg_call.hang_up_caller("callback_cancelled")
        elif state.outbound is not None:
            state.outbound.cancel()

    def _callback_failed(self, acd_id: str, reason: str) -> None:
        log.info("callback_attempt_failed", call=acd_id, reason=reason)
        self._calls.pop(acd_id, None)
        self.acd.callback_failed(acd_id, time.time(), reason)
        self._pump()

    def _callback_call_ended(self, acd_id: str, call: Call, side: str, cause: str) -> None:
        self._calls.pop(acd_id, None)
        self._acd_of.pop(call.id, None)
        if acd_id not in self.acd.calls:
            return
        self.acd.call_completed(acd_id, time.time(), "agent" if side == "callee" else "caller")
        self._pump()

    # -- agents' other calls, feature codes, supervision ------------------------------------------

    def _side_up(self, call: Call, ext: str, leg_id: str) -> None:
        if leg_id in self._legs or leg_id in self._own_legs:
            return
        if call.callee[:1] in ("*", "#") and not call.callee.startswith(self._supervise_codes):
            return  # a feature code's beep is not a call
        agent = self._agent_of_ext.get(ext)
        if agent is None:
            return
        self._legs[leg_id] = agent
        self._busy[agent] += 1  # per agent: an agent with two phones is busy on either
        if self._busy[agent] == 1:
            if ext != call.a.ext:
                kind = "inbound"  # a direct call to the agent's extension
            else:
                kind = "internal" if call.callee in self.server.extensions else "outbound"
            self.acd.agent_call_started(agent, time.time(), kind)
            self._pump()

    def _leg_closed(self, leg_id: str) -> None:
        self._own_legs.discard(leg_id)
        agent = self._legs.pop(leg_id, None)
        if agent is None:
            return
        self._busy[agent] -= 1
        if self._busy[agent] <= 0:
            del self._busy[agent]
            self.acd.agent_call_ended(agent, time.time())
            self._pump()

    def on_feature(
        self,
        req: Request,
        user: str,
        feature: FeatureRequest,
        source: tuple[str, int],
        transport: str,
    ) -> None:
        """An ACD feature code dialled from ``user``'s phone."""
        stack = self.server.stack
        b2b = self.server.b2bua
        dialled = req.request_uri.user_unescaped() or ""
        mode = _SUPERVISE.get(feature.feature)
        if mode is not None:
            agent = self._agent_of_ext.get(feature.argument)
            if user not in self.supervisors:
                stack.send_response(make_response(req, 403, "Not A Supervisor", to_tag=new_tag()))
            elif agent is None or self._agent_call(agent) is None:
                stack.send_response(
                    make_response(req, 404, "No Call To Supervise", to_tag=new_tag())
                )
            else:
                b2b.start_application(
                    req,
                    source,
                    transport,
                    user,
                    dialled,
                    lambda call, a=agent, m=mode: self.supervise(call, a, m),  # type: ignore[misc]
                )
            return
        agent = self._agent_of_ext.get(user)
        if agent is None:
            stack.send_response(make_response(req, 403, "Not An Agent", to_tag=new_tag()))
            return
        ok = True
        match feature.feature:
            case Feature.AGENT_LOGIN:
                self.login(agent)
            case Feature.AGENT_LOGOUT:
                self.logout(agent)
            case Feature.AGENT_PAUSE:
                self.pause(agent, self.pause_reasons.get(feature.argument, "busy"))  # type: ignore[call-overload]
            case Feature.AGENT_UNPAUSE:
                self.unpause(agent)
            case Feature.WRAP_UP_DONE:
                ok = self.end_wrap_up(agent, feature.argument or None)
        if not ok:
            stack.send_response(make_response(req, 403, "Wrap-Up Continues", to_tag=new_tag()))
            return
        log.info("agent_feature", agent=agent, feature=feature.feature.value, arg=feature.argument)
        beep = ToneSource("beep", self.tone_plan, rate=8000)
        b2b.answer_with_tone(req, source, transport, user, dialled, beep)

    def _agent_call(self, agent: str) -> Call | None:
        """The call the agent is talking on as the called party (queue calls first)."""
        exts = set(self.acd.agents[agent].cfg.extensions)
        best: Call | None = None
        for call in self.server.b2bua.calls:
            if call.ended or call.b is None or call.b.ext not in exts:
                continue
            if self._acd_id(call) in self.acd.calls:
                return call
            best = best or call
        return best

    def _acd_id(self, call: Call) -> str:
        return self._acd_of.get(call.id, call.id)

    def _supervision_logged(self, call: Call, agent: str, supervisor: str, mode: str) -> None:
        acd_id = self._acd_id(call)
        queue = self.acd.calls[acd_id].queue if acd_id in self.acd.calls else ""
        self.acd.log_event(time.time(), acd_id, queue, agent, "SUPERVISE", (supervisor, mode))
        log.info("supervision", call=call.id, agent=agent, supervisor=supervisor, mode=mode)
        self._flush()

    def _intercepted(self, call: Call, agent: str) -> None:
        """The supervisor takes the call over: the agent's part of it is complete."""
        acd_id = self._acd_id(call)
        self._calls.pop(acd_id, None)
        self._acd_of.pop(call.id, None)
        if acd_id in self.acd.calls:
            self.acd.call_completed(acd_id, time.time(), "agent")
        self._pump()

    # -- media on the caller's leg ---------------------------------------------------------------

    def _music(self, call: Call, queue: str | None = None) -> None:
        """The queue's music (or the default music on hold) on the caller's leg."""
        leg = call.a.leg_id
        if leg not in self.server.media:
            return
        acd_call = self.acd.calls.get(call.id)
        if queue is None and acd_call is not None:
            queue = acd_call.queue
        queue_files = self.queue_music.get(queue) if queue is not None else None
        if queue_files:
            call.a.moh_player = self.server.media.play(leg, Playlist(queue_files, 8000, loop=True))
        else:
            call.a.moh_player = self.server.b2bua.start_music_on_hold(leg)

    def _stop_music(self, call: Call) -> None:
        if call.a.moh_player is not None:
            self.server.media.stop_play(call.a.moh_player)
            call.a.moh_player = None

    def _language(self, call: Call) -> str:
        """The prompt language the caller chose in the IVR (``language`` variable)."""
        entry = self.acd.calls.get(call.id)
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

    def _announce(self, call: Call, names: list[str]) -> None:
        """Interrupt the music with prompts, then resume it (while the caller still waits)."""
        files = self._files(names, self._language(call))
        leg = call.a.leg_id
        if not files or call.ended or leg not in self.server.media:
            return
        self._stop_music(call)

        def done(_event: object) -> None:
            if call.id in self._calls and self.acd.is_waiting(call.id) and not call.ended:
                self._music(call)

        call.a.moh_player = self.server.media.play(leg, Playlist(files, 8000), on_done=done)

    def _play_then_hang_up(self, call: Call, names: list[str], cause: str) -> None:
        files = self._files(names, self._language(call))
        leg = call.a.leg_id
        if not files or call.ended or leg not in self.server.media:
            call.hang_up_caller(cause)
            return

        def done(_event: object) -> None:
            call.hang_up_caller(cause)

        self.server.media.play(leg, Playlist(files, 8000), on_done=done)

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

    def _flush(self) -> None:
        for e in self.acd.drain_events():
            at = datetime.fromtimestamp(e.time, UTC)
            log.info(
                "queue_event", line=e.queue_log_line(), kind=e.event, call=e.call, agent=e.agent
            )
            self._pending_events.append(
                QueueEventData(at, e.call, e.queue, e.agent, e.event, e.data)
            )
            if e.event in ("CONNECT", "CALLBACKCONNECT") and e.call in self.acd.calls:
                caller = self.acd.calls[e.call].caller
                self._pending_last[caller] = (e.agent, at)
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
            log.info(
                "agent_state",
                agent=t.agent,
                old=t.old.value,
                new=t.new.value,
                trigger=t.event.value,
                reason=t.reason,
            )
            self._pending_states.append(
                AgentStateData(
                    datetime.fromtimestamp(t.at, UTC),
                    t.agent,
                    t.old.value,
                    t.new.value,
                    t.event.value,
                    t.reason,
                )
            )
        if self.store is None:
            self._pending_events.clear()
            self._pending_states.clear()
            self._pending_last.clear()
            self._pending_callbacks.clear()
            return
        if self._has_pending() and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write())

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


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("acd_task_failed", error=repr(task.exception()))

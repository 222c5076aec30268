"""Runs IVR flows on Switchboard's calls and keeps what they produce in the store.

Theory of operation
-------------------
:class:`IvrHost` is built by the composition root once per configuration (a reload builds a
new one; calls already in a flow keep the session, and so the flow, they started with). It
gives the SIP server:

- one application factory per flow (dialplan destinations of kind ``ivr``),
- the voicemail application (destinations of kind ``voicemail``: a built-in flow that records
  a message for the mailbox the dialplan names),
- post-call applications: an ``extension``/``transfer`` node with ``survey: <flow>`` makes the
  B2BUA hand the caller to that flow when the callee hangs up.

Results are stored the moment a node produces them (:class:`ivr.IvrResult`), not when the
flow ends, so a caller hanging up after leaving a message or during a survey loses nothing:

- ``voicemail`` → a ``voicemails`` row with the file's SHA-256, linked to the call record;
- ``survey_result`` → a ``survey_results`` row naming the rated call and who answered it;
- ``callback`` → a pending ``callback_requests`` row (one per number while pending).

Store writes run as tasks; :meth:`drain` waits for them before the store closes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from crm import CallbackRequestData, Store, SurveyResultData, VoicemailData
from ivr import (
    Flow,
    IvrEvent,
    IvrFinished,
    IvrResult,
    IvrSession,
    NodeEntered,
    PromptSets,
    parse_flow,
)
from ivr.pbx_call import PbxCallControl, application_factory
from pbx.b2bua import Call, CallApplication
from pbx.dialplan import Dialplan, RouteDecision
from pbx.server import ApplicationFactory, SipServer

__all__ = ["VOICEMAIL_FLOW", "IvrHost"]

log = structlog.get_logger("switchboard.ivr")

QueueHandler = Callable[[Call, str, int, dict[str, str], str | None], None]

# The flow behind dialplan destinations of kind ``voicemail``: the greeting, the beep, the
# message (ended by ``#``, hang-up or the time limit), then goodbye.
VOICEMAIL_FLOW = """\
name: voicemail
start: record
nodes:
  record: {type: voicemail, mailbox: "${mailbox}", max_seconds: 120, next: bye}
  bye: {type: hangup, prompt: goodbye}
"""

# A "message" shorter than this is a caller who hung up at the beep: not kept.
MIN_MESSAGE_SECONDS = 0.5


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


class IvrHost:
    """IVR applications for one configuration, storing voicemail, surveys and callbacks."""

    def __init__(
        self,
        server: SipServer,
        store: Store | None,
        plan: Dialplan,
        flows: Mapping[str, Flow],
        config_dir: Path,
        tone_plan: str,
        *,
        voicemail_dir: Path | None = None,
    ) -> None:
        self.server = server
        self.store = store
        self.plan = plan
        self.flows = dict(flows)
        self.config_dir = config_dir
        self.tone_plan = tone_plan
        self.voicemail_dir = voicemail_dir or config_dir / "voicemail"
        self._pending: set[asyncio.Task[None]] = set()
        # Who takes a caller a flow sends to a queue: (call, queue, priority, variables,
        # survey flow). Without one, such callers are hung up.
        self.queue_handler: QueueHandler | None = None
        # Who takes a ``callback`` result that names a queue: (call, queue, number) -> True
        # when it did (the ACD keeps the request in line and in the store).
        self.callback_handler: Callable[[Call, str, str], bool] | None = None
        vm_flow, problems = parse_flow(
            VOICEMAIL_FLOW,
            "<voicemail>",
            base_dir=config_dir,
            prompts=PromptSets.for_config(config_dir),
        )
        assert vm_flow is not None, [str(p) for p in problems]
        self.voicemail_flow = vm_flow

    # -- what the server gets ----------------------------------------------------------------

    def applications(self) -> dict[str, ApplicationFactory]:
        """One application factory per flow: each call gets its own session."""
        return {name: self._factory(flow) for name, flow in self.flows.items()}

    def voicemail_application(self) -> ApplicationFactory:
        """The application for dialplan destinations of kind ``voicemail``."""

        def start(call: Call, decision: RouteDecision) -> CallApplication:
            control = PbxCallControl(
                call, self.server.media, did=decision.number, tone_plan=self.tone_plan
            )
            mailbox = decision.destination.target or decision.number
            self._run(self.voicemail_flow, control, {"mailbox": mailbox})
            return control

        return start

    def post_call(self, flow_name: str) -> Callable[[Call, Call], CallApplication]:
        """The application that takes the caller over after ``ended`` (a survey)."""

        def start(call: Call, ended: Call) -> CallApplication:
            flow = self.flows.get(flow_name)
            control = PbxCallControl(
                call, self.server.media, did=ended.callee, tone_plan=self.tone_plan
            )
            if flow is None:  # removed by a reload since the transfer: nothing to run
                log.warning("survey_flow_missing", flow=flow_name)
                call.hang_up_caller("survey_missing")
                return control
            variables = {"rated_call": ended.id, "agent": ended.callee}
            self._run(flow, control, variables)
            return control

        return start

    def start_on(self, call: Call, flow_name: str, variables: dict[str, str] | None = None) -> bool:
        """Run a flow on a call that is already answered (a queue's overflow into an IVR)."""
        flow = self.flows.get(flow_name)
        if flow is None or call.ended:
            return False
        control = PbxCallControl(
            call,
            self.server.media,
            did=call.callee,
            tone_plan=self.tone_plan,
            post_call=self.post_call,
        )
        call.app = control
        self._run(flow, control, dict(variables or {}))
        return True

    def voicemail_on(self, call: Call, mailbox: str) -> bool:
        """Take a message for ``mailbox`` on a call that is already answered."""
        if call.ended:
            return False
        control = PbxCallControl(call, self.server.media, did=mailbox, tone_plan=self.tone_plan)
        call.app = control
        self._run(self.voicemail_flow, control, {"mailbox": mailbox})
        return True

    async def drain(self) -> None:
        """Wait for results still being written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- sessions ------------------------------------------------------------------------------

    def _factory(self, flow: Flow) -> ApplicationFactory:
        def start(control: PbxCallControl) -> None:
            self._run(flow, control, {})

        return application_factory(start, self.server.media, self.tone_plan, self.post_call)

    def _run(self, flow: Flow, control: PbxCallControl, variables: dict[str, str]) -> None:
        call = control.call

        def on_event(event: IvrEvent) -> None:
            if isinstance(event, NodeEntered):
                log.debug("ivr_node", call=call.id, flow=event.flow, node=event.node)
            elif isinstance(event, IvrResult):
                self._keep(event, call, session.variables)
            elif isinstance(event, IvrFinished):
                log.info(
                    "ivr_finished",
                    call=call.id,
                    flow=event.flow,
                    outcome=event.outcome.kind,
                    data=dict(event.outcome.data),
                    keys=event.key_trail,
                )
                if event.outcome.kind == "queue":
                    self._to_queue(call, event.outcome.data, session.variables)

        session = IvrSession(
            flow,
            control,
            variables,
            time_condition=self._time_condition,
            customer_lookup=self.customer_lookup if self.store is not None else None,
            voicemail_dir=self.voicemail_dir,
            on_event=on_event,
        )
        session.start()

    async def customer_lookup(self, caller: str) -> dict[str, str] | None:
        """``lookup`` nodes with ``source: customer``: the caller's customer record."""
        assert self.store is not None
        customer = await self.store.find_customer_by_number(caller)
        return customer.as_variables() if customer is not None else None

    def _to_queue(self, call: Call, data: Mapping[str, Any], variables: Mapping[str, str]) -> None:
        if call.ended:
            return
        if self.queue_handler is None:
            log.warning("queue_unavailable", call=call.id, queue=data.get("queue"))
            call.hang_up_caller("queue_unavailable")
            return
        skills = [str(s) for s in data.get("skills", [])]
        extra = {"skills": ",".join(skills)} | ({"skill": skills[0]} if skills else {})
        self.queue_handler(
            call,
            str(data["queue"]),
            int(data.get("priority", 0)),
            dict(variables) | extra,
            data.get("survey"),
        )

    def _time_condition(self, name: str, now: datetime) -> bool:
        return self.plan.time_conditions[name].condition.is_open(now)

    # -- results -------------------------------------------------------------------------------

    def _keep(self, event: IvrResult, call: Call, variables: Mapping[str, str]) -> None:
        outcome = event.outcome
        data = dict(outcome.data)
        log.info("ivr_result", call=call.id, flow=event.flow, kind=outcome.kind, data=data)
        handler = self.callback_handler
        if (
            outcome.kind == "callback"
            and data.get("queue")
            and handler is not None
            and handler(call, str(data["queue"]), str(data["number"]))
        ):
            return  # the ACD keeps it in line and in the store
        if self.store is None:
            return
        now = datetime.now(UTC)
        if outcome.kind == "voicemail":
            if float(data["seconds"]) < MIN_MESSAGE_SECONDS:
                log.info("voicemail_empty", call=call.id, mailbox=data["mailbox"])
                Path(str(data["path"])).unlink(missing_ok=True)
                return
            self._spawn(self._store_voicemail(call, data, now))
        elif outcome.kind == "survey_result":
            result = SurveyResultData(
                record_id=variables.get("rated_call", call.id),
                survey_record_id=call.id,
                caller=call.caller,
                agent=variables.get("agent", ""),
                flow=event.flow,
                result=str(data["result"]),
                digit=data.get("digit"),
                created_at=now,
            )
            self._spawn(self._store_survey(result))
        elif outcome.kind == "callback":
            request = CallbackRequestData(
                number=str(data["number"]),
                caller=call.caller,
                created_at=now,
                queue=data.get("queue"),
                record_id=call.id,
            )
            self._spawn(self._store_callback(request))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_voicemail(self, call: Call, data: dict[str, Any], now: datetime) -> None:
        assert self.store is not None
        path = Path(str(data["path"]))
        try:
            digest = await asyncio.to_thread(_sha256, path)
            vm_id = await self.store.add_voicemail(
                VoicemailData(
                    record_id=call.id,
                    mailbox=str(data["mailbox"]),
                    caller=call.caller,
                    path=str(path),
                    sha256=digest,
                    seconds=float(data["seconds"]),
                    created_at=now,
                )
            )
        except Exception as exc:  # the file stays on disk; the log says which one
            log.error("voicemail_not_stored", path=str(path), error=repr(exc))
            return
        log.info("voicemail_stored", id=vm_id, mailbox=data["mailbox"], seconds=data["seconds"])

    async def _store_survey(self, result: SurveyResultData) -> None:
        assert self.store is not None
        try:
            await self.store.add_survey_result(result)
        except Exception as exc:
            log.error("survey_result_not_stored", result=result.result, error=repr(exc))
            return
        log.info("survey_result_stored", agent=result.agent, result=result.result)

    async def _store_callback(self, request: CallbackRequestData) -> None:
        assert self.store is not None
        try:
            request_id, created = await self.store.add_callback_request(request)
        except Exception as exc:
            log.error("callback_request_not_stored", number=request.number, error=repr(exc))
            return
        log.info("callback_requested", id=request_id, number=request.number, new=created)

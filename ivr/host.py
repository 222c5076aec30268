"""Runs IVR flows on Switchboard's calls and keeps what they produce in the store.

Theory of operation
-------------------
:class:`IvrHost` runs on the call-control seam (:class:`pbx.control.CallControl`): it serves
destinations of kind ``ivr`` (a flow by name) and ``voicemail`` (a built-in flow that records
a message for the mailbox the dialplan names). Each arriving call gets its own session; the
call's digits, prompt ends and hang-up arrive as seam events. A flow that ends in a queue
hands its caller on with ``route``; an ``extension``/``transfer`` node with ``survey: <flow>``
asks the seam to hand the caller back (a new ``CallArrived``) when the callee hangs up. A
reload swaps the flows; calls already in a flow keep the one they started with.

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
import json
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
from ivr.mailbox import Mailbox, MailboxMenu, Message
from ivr.pbx_call import PbxCallControl
from pbx.control import CallControl
from pbx.dialplan import Dialplan
from pbx.events import (
    CallArrived,
    CallEnded,
    CallEvent,
    ConnectFailed,
    DtmfReceived,
    PlaybackFinished,
)

__all__ = ["VOICEMAIL_FLOW", "IvrHost"]

log = structlog.get_logger("switchboard.ivr")

# (call id, caller, queue, number) -> True when the ACD took the callback request.
CallbackRequests = Callable[[str, str, str, str], bool]

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
    """IVR flows on calls, storing voicemail, surveys and callbacks. One per process: a
    reload swaps the flows (:meth:`reconfigure`); sessions keep the flow they started with."""

    def __init__(
        self,
        control: CallControl,
        store: Store | None,
        plan: Dialplan,
        flows: Mapping[str, Flow],
        config_dir: Path,
        *,
        voicemail_dir: Path | None = None,
        callback_requests: CallbackRequests | None = None,
        mailboxes: Mapping[str, Mailbox] | None = None,
    ) -> None:
        self.control = control
        self.store = store
        self._pending: set[asyncio.Task[None]] = set()
        self._sessions: dict[str, PbxCallControl] = {}  # by call id
        # Who takes a ``callback`` result that names a queue: (call id, caller, queue,
        # number) -> True when it did (the ACD keeps the request in line and in the store).
        self.callback_requests = callback_requests
        self.reconfigure(
            plan,
            flows,
            config_dir,
            voicemail_dir=voicemail_dir,
            mailboxes=mailboxes,
        )
        self._unsubscribe = control.subscribe(self._on_event)
        # ``mailbox``: the owner's menu (the SIP core's voicemail_own / voicemail_any codes).
        control.serve("ivr", "voicemail", "mailbox")

    def reconfigure(
        self,
        plan: Dialplan,
        flows: Mapping[str, Flow],
        config_dir: Path,
        *,
        voicemail_dir: Path | None = None,
        mailboxes: Mapping[str, Mailbox] | None = None,
    ) -> None:
        """The flows of a new configuration; calls already in a flow finish on theirs."""
        self.mailboxes = dict(mailboxes or {})
        self._mailbox_flows: dict[tuple[Path | None, float], Flow] = {}
        self.plan = plan
        self.flows = dict(flows)
        self.config_dir = config_dir
        self.voicemail_dir = voicemail_dir or config_dir / "voicemail"
        vm_flow, problems = parse_flow(
            VOICEMAIL_FLOW,
            "<voicemail>",
            base_dir=config_dir,
            prompts=PromptSets.for_config(config_dir),
        )
        assert vm_flow is not None, [str(p) for p in problems]
        self.voicemail_flow = vm_flow

    async def drain(self) -> None:
        """Wait for results still being written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- events from the seam ------------------------------------------------------------------

    def _on_event(self, event: CallEvent) -> None:
        match event:
            case CallArrived(kind="ivr" | "voicemail"):
                self._arrived(event)
            case CallArrived(kind="mailbox", call_id=call_id, target=target, caller=caller):
                self._open_mailbox(call_id, caller, target or None)
            case DtmfReceived(call_id=call_id, digit=digit, role="caller"):
                session = self._sessions.get(call_id)
                if session is not None and not session.released:
                    session.on_dtmf(digit)
            case PlaybackFinished(call_id=call_id, play_id=play_id):
                session = self._sessions.get(call_id)
                if session is not None:
                    session.on_playback_finished(play_id)
            case ConnectFailed(call_id=call_id, status=status):
                session = self._sessions.get(call_id)
                if session is not None and session.released:
                    session.on_connect_failed(status)
            case CallEnded(call_id=call_id):
                session = self._sessions.pop(call_id, None)
                if session is not None:
                    session.on_hangup()
            case _:
                pass

    def _arrived(self, event: CallArrived) -> None:
        call = PbxCallControl(self.control, event.call_id, caller=event.caller, did=event.dialled)
        if event.kind == "voicemail":
            mailbox = event.target or event.dialled
            call.did = mailbox
            self._run(self._voicemail_flow(mailbox), call, {"mailbox": mailbox})
            return
        flow = self.flows.get(event.target)
        if flow is None:  # removed by a reload since the call was sent here
            log.warning("ivr_flow_missing", call=event.call_id, flow=event.target)
            self.control.hangup(event.call_id, "ivr_flow_missing")
            return
        self._run(flow, call, dict(event.variables))

    def _voicemail_flow(self, mailbox: str) -> Flow:
        """The message-taking flow for ``mailbox``: its own greeting and time limit, if it
        has them."""
        box = self.mailboxes.get(mailbox)
        if box is None or (box.greeting is None and box.max_seconds == 120.0):
            return self.voicemail_flow
        key = (box.greeting, box.max_seconds)
        flow = self._mailbox_flows.get(key)
        if flow is None:
            greeting = (
                f"  greeting: {{type: play, file: {json.dumps(str(box.greeting))}, next: record}}\n"
                if box.greeting is not None
                else ""
            )
            prompt = ", prompt: null" if box.greeting is not None else ""
            text = (
                f"name: voicemail\nstart: {'greeting' if greeting else 'record'}\nnodes:\n"
                f"{greeting}"
                f'  record: {{type: voicemail, mailbox: "${{mailbox}}"{prompt}, '
                f"max_seconds: {box.max_seconds}, next: bye}}\n"
                "  bye: {type: hangup, prompt: goodbye}\n"
            )
            parsed, problems = parse_flow(
                text,
                f"<voicemail {mailbox}>",
                base_dir=self.config_dir,
                prompts=PromptSets.for_config(self.config_dir),
            )
            if parsed is None:
                log.warning("voicemail_greeting_unusable", mailbox=mailbox, problems=problems)
                return self.voicemail_flow
            flow = self._mailbox_flows[key] = parsed
        return flow

    # -- the owner's mailbox menu --------------------------------------------------------------

    def _open_mailbox(self, call_id: str, caller: str, mailbox: str | None) -> None:
        """The owner's menu on an answered call: ``mailbox`` (the caller's own, from
        ``voicemail_own``), or None to ask for the number (``voicemail_any``)."""
        if self.store is None:
            self.control.hangup(call_id, "mailbox_unavailable")
            return
        call = PbxCallControl(self.control, call_id, caller=caller, did=mailbox or "")
        self._sessions[call_id] = call
        menu = MailboxMenu(
            call,
            _StoredMessages(self.store, self.control),
            self.mailboxes,
            PromptSets.for_config(self.config_dir),
            mailbox=mailbox,
        )

        async def run() -> None:
            ended = await menu.run()
            log.info(
                "mailbox_menu_ended",
                call=call_id,
                reason=ended.reason,
                mailbox=ended.mailbox,
                heard=ended.heard,
                deleted=ended.deleted,
            )

        self._spawn(run())

    async def publish_mailbox_counts(self) -> None:
        """Tell the SIP side every mailbox's message counts (at start, so phones that
        subscribe learn about messages left before a restart)."""
        if self.store is None:
            return
        for mailbox, (new, old) in (await self.store.voicemail_counts()).items():
            self.control.message_waiting(mailbox, new, old)

    # -- sessions ------------------------------------------------------------------------------

    def _run(self, flow: Flow, call: PbxCallControl, variables: dict[str, str]) -> None:
        call_id = call.call_id
        self._sessions[call_id] = call

        def on_event(event: IvrEvent) -> None:
            if isinstance(event, NodeEntered):
                log.debug("ivr_node", call=call_id, flow=event.flow, node=event.node)
            elif isinstance(event, IvrResult):
                self._keep(event, call, session.variables)
            elif isinstance(event, IvrFinished):
                log.info(
                    "ivr_finished",
                    call=call_id,
                    flow=event.flow,
                    outcome=event.outcome.kind,
                    data=dict(event.outcome.data),
                    keys=event.key_trail,
                )
                if event.outcome.kind == "queue":
                    self._to_queue(call, event.outcome.data, session.variables)

        session = IvrSession(
            flow,
            call,
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

    def _to_queue(
        self, call: PbxCallControl, data: Mapping[str, Any], variables: Mapping[str, str]
    ) -> None:
        call.released = True
        self._sessions.pop(call.call_id, None)
        queue = str(data["queue"])
        routed = self.control.route(
            call.call_id,
            "queue",
            queue,
            priority=int(data.get("priority", 0)) or None,  # 0: not given, grade may set it
            skills=[str(s) for s in data.get("skills", [])],
            variables=dict(variables),
            survey=data.get("survey"),
        )
        if not routed:
            log.warning("queue_unavailable", call=call.call_id, queue=queue)
            self.control.hangup(call.call_id, "queue_unavailable")

    def _time_condition(self, name: str, now: datetime) -> bool:
        return self.plan.time_conditions[name].condition.is_open(now)

    # -- results -------------------------------------------------------------------------------

    def _keep(self, event: IvrResult, call: PbxCallControl, variables: Mapping[str, str]) -> None:
        outcome = event.outcome
        data = dict(outcome.data)
        log.info("ivr_result", call=call.call_id, flow=event.flow, kind=outcome.kind, data=data)
        handler = self.callback_requests
        if (
            outcome.kind == "callback"
            and data.get("queue")
            and handler is not None
            and handler(call.call_id, call.caller, str(data["queue"]), str(data["number"]))
        ):
            return  # the ACD keeps it in line and in the store
        if self.store is None:
            return
        now = datetime.now(UTC)
        if outcome.kind == "voicemail":
            if float(data["seconds"]) < MIN_MESSAGE_SECONDS:
                log.info("voicemail_empty", call=call.call_id, mailbox=data["mailbox"])
                Path(str(data["path"])).unlink(missing_ok=True)
                return
            self._spawn(self._store_voicemail(call, data, now))
        elif outcome.kind == "survey_result":
            result = SurveyResultData(
                record_id=variables.get("rated_call", call.call_id),
                survey_record_id=call.call_id,
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
                queue=data.get("queue") or None,
                record_id=call.call_id,
            )
            self._spawn(self._store_callback(request))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_voicemail(
        self, call: PbxCallControl, data: dict[str, Any], now: datetime
    ) -> None:
        assert self.store is not None
        path = Path(str(data["path"]))
        try:
            digest = await asyncio.to_thread(_sha256, path)
            vm_id = await self.store.add_voicemail(
                VoicemailData(
                    record_id=call.call_id,
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
        await _report_counts(self.store, self.control, str(data["mailbox"]))

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


async def _report_counts(store: Store, control: CallControl, mailbox: str) -> None:
    """The mailbox's counts changed: the SIP side tells its phones (message-waiting)."""
    for box, (new, old) in (await store.voicemail_counts(mailbox)).items():
        control.message_waiting(box, new, old)


class _StoredMessages:
    """The mailbox menu's messages (:class:`ivr.mailbox.MessageStore`) in the store; every
    change is reported to the SIP side for message-waiting indication."""

    def __init__(self, store: Store, control: CallControl) -> None:
        self.store = store
        self.control = control

    async def messages(self, mailbox: str) -> list[Message]:
        return [
            Message(vm.id, vm.caller, vm.created_at, Path(vm.path), vm.heard)
            for vm in await self.store.mailbox_messages(mailbox)
            if vm.id is not None
        ]

    async def mark_heard(self, mailbox: str, message_id: int) -> None:
        if await self.store.mark_voicemail_heard(message_id):
            await _report_counts(self.store, self.control, mailbox)

    async def delete(self, mailbox: str, message_id: int) -> None:
        gone = await self.store.delete_voicemail(message_id)
        if gone is None:
            return
        await asyncio.to_thread(Path(gone.path).unlink, missing_ok=True)
        log.info("voicemail_deleted", id=message_id, mailbox=mailbox)
        await _report_counts(self.store, self.control, mailbox)

"""The ``/api`` routes of the agent panel's call controls (docs/api.md): hold and resume,
mute, keypad digits, blind and consult transfer, conference — on the agent's current call —
and accepting or declining a ringing queue offer.

The work is the seam's (``pbx.control.CallControl``: ``hold``, ``mute``, ``send_dtmf``,
``transfer``, ``consult``, ``complete_consult``, ``cancel_consult``, ``conference``) and the
ACD host's (``reject_offer``); these routes check who may act, turn a target (an agent id, a
queue name, a number) into a destination, audit, and answer JSON.

Who may act: an agent on calls of their own extensions (as ``POST /api/calls/{id}/hangup``),
supervisors and admins on any call. The acting party is the user's own extension in the
call; for a supervisor, the party that is an agent's extension (the callee first).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from pbx.control import CallInfo
from web.api import ApiError, Who, audit_change, live_call_of, principal_scope
from web.auth import Principal
from web.services import Services

__all__ = ["build_calls_router"]

Target = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+*#-]+$")]
NUMBER = re.compile(r"^\+?[0-9*#]+$")


class TransferBody(BaseModel):
    # An agent id (their extension rings), a queue name, or a number the dialplan routes
    # (an extension, a queue's or IVR's number, an outside number).
    target: Target
    mode: Literal["blind", "consult"] = "blind"


class ConferenceBody(BaseModel):
    target: Target


class DtmfBody(BaseModel):
    digits: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9*#A-Da-d]+$")]


def build_calls_router(s: Services) -> APIRouter:
    router = APIRouter()
    control = s.control

    def own_call(p: Principal, call_id: str) -> tuple[CallInfo, str]:
        """The live call (404 / 403 as for hang-up) and the party who acts in it."""
        info: CallInfo = live_call_of(s, p, call_id, read=False)
        if not info.answered or info.callee_ext is None:
            raise ApiError(409, f"call {call_id} is not answered by two parties")
        own = principal_scope(s, p)[0]
        caller, callee = info.local_caller_ext, info.local_callee_ext
        if callee in own:
            return info, "callee"
        if caller in own:
            return info, "caller"
        agents = {e for a in s.acd.agent_snapshots() for e in a.extensions}
        return info, "caller" if caller in agents and callee not in agents else "callee"

    def answer(call_id: str, party: str, **extra: Any) -> dict[str, Any]:
        state = control.party_state(call_id, party) or {}
        return {"id": call_id, "party": party, **state, **extra}

    def destination(target: str) -> tuple[str, str | None]:
        """An agent id → their extension; a queue name → the queue; else a number the
        seam routes through the dialplan."""
        for agent in s.acd.agent_snapshots():
            if agent.id == target:
                if not agent.extensions:
                    raise ApiError(409, f"agent {target} has no extension")
                return agent.extensions[0], "extension"
        if any(q.name == target for q in s.acd.queue_snapshots()):
            return target, "queue"
        if not NUMBER.match(target):
            raise ApiError(400, f"{target} is no agent, queue or number")
        return target, None

    async def audit(request: Request, p: Principal, action: str, target: str, **kw: Any) -> None:
        await audit_change(s, request, p, action, target, **kw)

    @router.get("/api/calls/{call_id}/controls", tags=["calls"])
    async def controls(p: Who, call_id: str) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/hold", tags=["calls"])
    async def hold(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        if not control.hold(call_id, party):
            raise ApiError(409, f"call {call_id} cannot be held now")
        await audit(request, p, "call.hold", call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/resume", tags=["calls"])
    async def resume(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        if not control.resume(call_id, party):
            raise ApiError(409, f"call {call_id} cannot be resumed now")
        await audit(request, p, "call.resume", call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/mute", tags=["calls"])
    async def mute(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        if not control.mute(call_id, party, True):
            raise ApiError(409, f"call {call_id} cannot be muted now")
        await audit(request, p, "call.mute", call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/unmute", tags=["calls"])
    async def unmute(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        if not control.mute(call_id, party, False):
            raise ApiError(409, f"call {call_id} cannot be unmuted now")
        await audit(request, p, "call.unmute", call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/dtmf", tags=["calls"])
    async def dtmf(p: Who, call_id: str, body: DtmfBody, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        digits = body.digits.upper()
        if not control.send_dtmf(call_id, party, digits):
            raise ApiError(409, "the other party takes no RFC 4733 digits (telephone-event)")
        # The digits themselves may be a card number or a PIN: only their count is kept.
        await audit(request, p, "call.dtmf", call_id, digits=len(digits))
        return answer(call_id, party, sent=len(digits))

    @router.post("/api/calls/{call_id}/transfer", tags=["calls"])
    async def transfer(
        p: Who, call_id: str, body: TransferBody, request: Request
    ) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        target, kind = destination(body.target)
        if body.mode == "blind":
            new_id = control.transfer(call_id, party, target, kind=kind)
            if new_id is None:
                raise ApiError(409, f"cannot transfer to {body.target} now (no phone or route)")
            await audit(request, p, "call.transfer", call_id, to=body.target, mode="blind")
            return {"id": call_id, "party": party, "mode": "blind", "new_call_id": new_id}
        if kind == "queue":
            raise ApiError(400, "a queue cannot be consulted: transfer blind to it")
        if not control.consult(call_id, party, target):
            raise ApiError(409, f"cannot consult {body.target} now (no phone or route)")
        await audit(request, p, "call.transfer", call_id, to=body.target, mode="consult")
        return answer(call_id, party, mode="consult")

    @router.post("/api/calls/{call_id}/transfer/complete", tags=["calls"])
    async def transfer_complete(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        new_id = control.complete_consult(call_id, party)
        if new_id is None:
            raise ApiError(409, "no answered consultation to complete")
        await audit(request, p, "call.transfer_complete", call_id, new_call_id=new_id)
        return {"id": call_id, "party": party, "new_call_id": new_id}

    @router.post("/api/calls/{call_id}/transfer/cancel", tags=["calls"])
    async def transfer_cancel(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        if not control.cancel_consult(call_id, party):
            raise ApiError(409, "no consultation or conference party to release")
        await audit(request, p, "call.transfer_cancel", call_id)
        return answer(call_id, party)

    @router.post("/api/calls/{call_id}/conference", tags=["calls"])
    async def conference(
        p: Who, call_id: str, body: ConferenceBody, request: Request
    ) -> dict[str, Any]:
        _info, party = own_call(p, call_id)
        target, kind = destination(body.target)
        if kind == "queue":
            raise ApiError(400, "a queue cannot join a conference")
        if not control.conference(call_id, party, target):
            raise ApiError(409, f"cannot conference {body.target} now (no phone or route)")
        await audit(request, p, "call.conference", call_id, to=body.target)
        return answer(call_id, party)

    # -- the offer card --------------------------------------------------------------------

    def may_act_for(p: Principal, agent_id: str) -> None:
        if p.agent != agent_id and not p.at_least("supervisor"):
            raise ApiError(403, f"agent {agent_id} is not you")
        if not any(a.id == agent_id for a in s.acd.agent_snapshots()):
            raise ApiError(404, f"no agent {agent_id}")

    @router.post("/api/agents/{agent_id}/offer/accept", tags=["agents"])
    async def accept_offer(p: Who, agent_id: str) -> dict[str, Any]:
        may_act_for(p, agent_id)
        if s.acd.ringing_offer(agent_id) is None:
            raise ApiError(409, f"no offer rings for agent {agent_id}")
        # A desk phone is answered on the phone (or answers by itself: auto_answer); the
        # agent panel answers a ringing browser phone in the page (web/static/calls.js).
        raise ApiError(409, "answer on your phone: a desk phone cannot be answered from here")

    @router.post("/api/agents/{agent_id}/offer/reject", tags=["agents"])
    async def reject_offer(p: Who, agent_id: str, request: Request) -> dict[str, Any]:
        may_act_for(p, agent_id)
        call_id = s.acd.reject_offer(agent_id)
        if call_id is None:
            raise ApiError(409, f"no offer rings for agent {agent_id}")
        await audit(request, p, "agent.offer_reject", agent_id, call_id=call_id)
        return {"agent": agent_id, "call_id": call_id, "rejected": True}

    return router

"""The ``/api`` routes behind the panel's one-click actions (docs/api.md): a supervisor
listening, whispering, barging or intercepting from the wallboard, and an agent's wrap-up
(code and notes) from the agent panel.

Both go through the ACD host, on the paths the phones' feature codes take: supervision
rings the supervisor's phone and, once it answers, joins the agent's call exactly as
``*51``-``*54`` + the agent's extension would; a wrap-up ends as ``*49`` + code does, and
its code and notes are kept in the store's ``wrap_ups``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from crm import WrapUpData
from web.api import DURABLE_WAIT, ApiError, PageNo, PerPage, Who, audit_change, page_list
from web.auth import Principal
from web.services import Services

__all__ = ["build_panel_router"]

Extension = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]
WRAP_UP_STATE = "WRAP_UP"


class SuperviseBody(BaseModel):
    mode: Literal["listen", "whisper", "barge", "intercept"]
    # The supervisor's phone; omitted: the extension of the user's own agent.
    extension: Extension | None = None


class WrapUpBody(BaseModel):
    code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    notes: Annotated[str, Field(max_length=4000)] = ""
    # The call wrapped up (the panel's last call id); kept with the row as its record id.
    call_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


def build_panel_router(s: Services) -> APIRouter:
    router = APIRouter()

    def agent_of(agent_id: str) -> Any:
        for a in s.acd.agent_snapshots():
            if a.id == agent_id:
                return a
        raise ApiError(404, f"no agent {agent_id}")

    def supervisor_extension(p: Principal, given: str | None) -> str:
        """The phone that rings: one of the user's own agent's phones or a supervisor phone
        (``acd.supervisors``, the phones the feature codes accept). Never any extension the
        caller names: that phone would hear a customer's call."""
        own = sorted(s.ops.agent_scope(p.agent)[0]) if p.agent is not None else []
        if given is None:
            if not own:
                raise ApiError(
                    400, "say which extension rings: no agent with an extension is yours"
                )
            return own[0]
        if given not in own and given not in s.acd.supervisors:
            raise ApiError(
                403,
                f"extension {given} is neither your phone nor a supervisor phone (acd.supervisors)",
            )
        return given

    @router.post("/api/agents/{agent_id}/supervise", tags=["agents"])
    async def supervise(
        p: Who, agent_id: str, body: SuperviseBody, request: Request
    ) -> dict[str, Any]:
        p.require("supervisor")
        agent_of(agent_id)
        extension = supervisor_extension(p, body.extension)
        try:
            started = s.acd.supervise(agent_id, extension, body.mode)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except LookupError:  # KeyError too: the agent left the config meanwhile
            raise ApiError(404, f"agent {agent_id} is on no call") from None
        if started is None:
            raise ApiError(409, f"extension {extension} has no registered phone")
        call_or_origin, switched = started
        await audit_change(
            s, request, p, "agent.supervise", agent_id, mode=body.mode, extension=extension
        )
        answer: dict[str, Any] = {"agent": agent_id, "mode": body.mode, "extension": extension}
        if switched:
            answer["supervising_call_id"] = call_or_origin
        else:
            answer["originate_id"] = call_or_origin
        return answer

    def may_wrap_up(p: Principal, agent_id: str) -> None:
        if p.agent != agent_id and not p.at_least("supervisor"):
            raise ApiError(403, f"agent {agent_id} is not you")

    async def check_handled(agent_id: str, call_id: str | None) -> None:
        """A wrap-up names only a call the agent handled: the last queue call (or callback)
        the ACD saw them answer, or a call whose record names them as its agent."""
        if call_id is None or s.acd.last_call(agent_id) == call_id:
            return
        record = await s.store.call_record_by_id(call_id)
        if record is None or record.agent != agent_id:
            raise ApiError(422, f"call {call_id} is not a call agent {agent_id} handled")

    @router.get("/api/agents/{agent_id}/wrap-up", tags=["agents"])
    async def wrap_up_state(p: Who, agent_id: str) -> dict[str, Any]:
        if p.agent != agent_id and not p.at_least("qa"):
            raise ApiError(403, f"agent {agent_id} is not you")
        agent = agent_of(agent_id)
        return {
            "agent": agent_id,
            "in_wrap_up": agent.state == WRAP_UP_STATE,
            "codes": s.acd.wrap_up_codes(agent_id),
            "labels": s.acd.wrap_up_labels(agent_id),
        }

    @router.post("/api/agents/{agent_id}/wrap-up", tags=["agents"])
    async def wrap_up(p: Who, agent_id: str, body: WrapUpBody, request: Request) -> dict[str, Any]:
        may_wrap_up(p, agent_id)
        if agent_of(agent_id).state != WRAP_UP_STATE:
            raise ApiError(409, f"agent {agent_id} is not in wrap-up")
        await check_handled(agent_id, body.call_id)
        if not s.acd.end_wrap_up(agent_id, body.code):
            raise ApiError(
                409, "wrap-up continues: the queue wants one of its codes, or ends it by time"
            )
        row = WrapUpData(body.call_id, agent_id, body.code, body.notes, datetime.now(UTC))
        wrap_up_id = await s.store.add_wrap_up(row)
        try:
            await asyncio.wait_for(asyncio.shield(s.acd.durable()), DURABLE_WAIT)
        except TimeoutError:
            raise ApiError(503, f"agent {agent_id}: wrap-up ended, not yet saved") from None
        await audit_change(s, request, p, "agent.wrap_up", agent_id, code=body.code)
        after = agent_of(agent_id)
        return {"agent": agent_id, "state": after.state, "wrap_up_id": wrap_up_id}

    @router.get("/api/wrap-ups", tags=["agents"])
    async def wrap_ups(
        p: Who,
        agent: str | None = None,
        call_id: str | None = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        if not p.at_least("qa"):
            if p.agent is None or agent not in (None, p.agent):
                raise ApiError(403, "agents see their own wrap-ups")
            agent = p.agent
        rows = await s.store.list_wrap_ups(agent, call_id)
        items = [
            {
                "id": w.id,
                "call_id": w.record_id,
                "agent": w.agent,
                "code": w.code,
                "notes": w.notes,
                "at": w.at.isoformat(),
            }
            for w in reversed(rows)
        ]
        return page_list(items, page_no, per_page)

    return router

"""The ticket routes (docs/api.md "Tickets", docs/crm.md "Tickets"): list and search,
create (optionally from a call), show with the audit trail, and the operations of the
lifecycle (assign, transfer, start, feedback, resume, revisit, close, reopen, urge, cc,
comment).

Theory of operation: every route turns the caller into a :class:`crm.Actor` and calls
:class:`crm.tickets.TicketService`, which holds the lifecycle table and the permission
rules; its refusals become ``{"error": ...}`` answers (400 bad input, 403 not allowed, 404
not visible, 409 an illegal transition or a change that lost a race). The service is built
per request from ``Operations.ticket_settings()``, so a config reload changes code tables,
departments and SLA targets at once. A ticket is named by its id or its number
(``T-000123``) in paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from crm.ticket_store import TicketData, TicketQuery
from crm.tickets import PRIORITIES, TicketService, TicketState
from web.api import PageNo, PerPage, Who, audit_change, jsonable, page
from web.api_crm import actor_of, refusals
from web.auth import Principal
from web.services import Services

__all__ = ["build_tickets_router"]

UserName = Annotated[str, Field(min_length=1, max_length=64)]
Note = Annotated[str, Field(max_length=10_000)]
Priority = Literal["low", "normal", "high", "urgent"]
Action = Literal[
    "assign",
    "transfer",
    "start",
    "feedback",
    "resume",
    "revisit",
    "close",
    "reopen",
    "urge",
    "cc",
    "comment",
]
QState = Annotated[TicketState | None, Query()]
QName = Annotated[str | None, Query(max_length=64)]


class TicketBody(BaseModel):
    type: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=255)]
    description: Note = ""
    priority: Priority = "normal"
    category: Annotated[str, Field(max_length=64)] | None = None
    customer_id: int | None = None
    # call_records.record_id of the call it comes from: links the call and its recording.
    record_id: Annotated[str, Field(max_length=64)] | None = None
    assignee: UserName | None = None
    department: Annotated[str, Field(max_length=64)] | None = None
    cc: list[UserName] = Field(default_factory=list, max_length=50)


class ActionBody(BaseModel):
    # assign / transfer: to a user, a department or both.
    user: UserName | None = None
    department: Annotated[str, Field(max_length=64)] | None = None
    # revisit: what the customer said.
    outcome: Annotated[str, Field(max_length=1000)] | None = None
    # cc: users to copy and to take off.
    add: list[UserName] = Field(default_factory=list, max_length=50)
    remove: list[UserName] = Field(default_factory=list, max_length=50)
    note: Note = ""


def ticket_item(t: TicketData) -> dict[str, Any]:
    """A ticket as the API shows it (every stored field, ``cc`` the users copied)."""
    out: dict[str, Any] = jsonable(t)
    return out


def build_tickets_router(s: Services) -> APIRouter:
    """The routes of docs/api.md "Tickets"; the app must hold ``s`` as
    ``app.state.services``."""
    router = APIRouter()

    def service() -> TicketService:
        return TicketService(s.store, s.ops.ticket_settings())

    async def audit(request: Request, p: Principal, action: str, target: Any, **kw: Any) -> None:
        await audit_change(s, request, p, action, str(target), **kw)

    @router.get("/api/tickets", tags=["tickets"])
    async def tickets(
        p: Who,
        state: QState = None,
        open: bool | None = None,
        assignee: QName = None,
        department: QName = None,
        customer_id: int | None = None,
        created_by: QName = None,
        type: QName = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        query = TicketQuery(
            state=state.value if state is not None else None,
            open=open,
            assignee=assignee,
            department=department,
            customer_id=customer_id,
            created_by=created_by,
            type=type,
        )
        with refusals():
            rows, total = await service().search(
                actor_of(p), query, offset=(page_no - 1) * per_page, limit=per_page
            )
        return page([ticket_item(t) for t in rows], total, page_no, per_page)

    # Before /api/tickets/{ref}.
    @router.get("/api/tickets/codes", tags=["tickets"])
    async def codes(p: Who) -> dict[str, Any]:
        """The code tables a ticket form offers."""
        settings = s.ops.ticket_settings()
        return {
            "types": dict(settings.types),
            "categories": dict(settings.categories),
            "priorities": list(PRIORITIES),
            "departments": sorted(settings.departments),
            "states": [st.value for st in TicketState],
        }

    @router.post("/api/tickets", tags=["tickets"], status_code=201)
    async def create(p: Who, body: TicketBody, request: Request) -> dict[str, Any]:
        with refusals():
            created = await service().create(
                actor_of(p), now=datetime.now(UTC), **body.model_dump()
            )
        await audit(request, p, "ticket.create", created.number, record_id=body.record_id)
        return ticket_item(created)

    @router.get("/api/tickets/{ref}", tags=["tickets"])
    async def ticket(p: Who, ref: str) -> dict[str, Any]:
        """A ticket with its audit trail and notifications."""
        svc, actor = service(), actor_of(p)
        with refusals():
            found = await svc.resolve(actor, ref)
            assert found.id is not None
            events = await svc.history(actor, found.id)
            notes = await svc.notifications(actor, found.id)
        return {
            **ticket_item(found),
            "can_handle": svc.can_handle(actor, found),
            "events": jsonable(events),
            "notifications": jsonable(notes),
        }

    @router.post("/api/tickets/{ref}/{action}", tags=["tickets"])
    async def act(
        p: Who, ref: str, action: Action, request: Request, body: ActionBody | None = None
    ) -> dict[str, Any]:
        """One operation of the lifecycle (docs/crm.md "Tickets")."""
        b = body or ActionBody()
        svc, actor, now = service(), actor_of(p), datetime.now(UTC)
        with refusals():
            current = await svc.resolve(actor, ref)
            tid = current.id
            assert tid is not None
            match action:
                case "assign":
                    t = await svc.assign(
                        actor, tid, now, user=b.user, department=b.department, note=b.note
                    )
                case "transfer":
                    t = await svc.transfer(
                        actor, tid, now, user=b.user, department=b.department, note=b.note
                    )
                case "revisit":
                    t = await svc.revisit(actor, tid, now, b.outcome or "", b.note)
                case "cc":
                    t = await svc.carbon_copy(actor, tid, now, add=b.add, remove=b.remove)
                case "comment":
                    t = await svc.comment(actor, tid, now, b.note)
                case "start":
                    t = await svc.start(actor, tid, now, b.note)
                case "feedback":
                    t = await svc.feedback(actor, tid, now, b.note)
                case "resume":
                    t = await svc.resume(actor, tid, now, b.note)
                case "close":
                    t = await svc.close(actor, tid, now, b.note)
                case "reopen":
                    t = await svc.reopen(actor, tid, now, b.note)
                case "urge":
                    t = await svc.urge(actor, tid, now, b.note)
        detail = b.model_dump(exclude_defaults=True, exclude={"note"})
        await audit(request, p, f"ticket.{action}", t.number, state=t.state, **detail)
        return ticket_item(t)

    return router

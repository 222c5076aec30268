"""The customer routes (docs/api.md "Customers", docs/crm.md): customers, their numbers,
follow-ups and appointments, the public pool, the outbound blacklist, import and export,
and the screen pop of a live call.

Theory of operation: every route turns the caller into a :class:`crm.Actor` and calls
:class:`crm.CustomerService`, which holds the permission rules (agents see shared
customers, the pool and their own; supervisors and admins all); its refusals
(:class:`crm.CrmError`) become ``{"error": ...}`` answers with their status. The service is
built per request from ``Operations.crm_settings()``, so a config reload changes custom
fields and pool limits at once. An import is the file itself as the request body (CSV or
XLSX, ``?format=``), answered with the per-row report.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from crm import (
    Actor,
    AppointmentData,
    BlacklistEntry,
    CrmError,
    CustomerData,
    CustomerQuery,
    CustomerService,
    FollowupData,
)
from crm.customer_import import (
    ImportFileError,
    ImportFileTooLarge,
    export_csv,
    export_xlsx,
    import_customers,
)
from crm.customers import can_edit, can_view, numbers_from
from crm.store import NUMBER_KINDS
from crm.ticket_store import TicketData, TicketQuery
from crm.tickets import TicketService
from web.api import (
    ApiError,
    PageNo,
    PerPage,
    Who,
    audit_change,
    jsonable,
    live_call_of,
    page,
    principal_scope,
    utc,
)
from web.auth import Principal
from web.services import Services

__all__ = ["EXPORT_MAX_ROWS", "IMPORT_MAX_BYTES", "build_crm_router"]

EXPORT_MAX_ROWS = 100_000
IMPORT_MAX_BYTES = 64 * 1024 * 1024
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SCREENPOP_CALLS = 5
SCREENPOP_TICKETS = 20
_REMIND_BEFORE = timedelta(minutes=15)

Text = Annotated[str, Field(max_length=1000)]
Grade = Literal["A", "B", "C", "D", "E"]
Kind = Annotated[str, Field(pattern="^(" + "|".join(NUMBER_KINDS) + ")$")]


def ticket_brief(t: TicketData) -> dict[str, Any]:
    """A ticket as the screen pop lists it."""
    due = t.resolution_due or t.first_response_due
    return {
        "id": t.id,
        "number": t.number,
        "title": t.title,
        "state": t.state,
        "priority": t.priority,
        "type": t.type,
        "due": due.isoformat() if due is not None else None,
        "first_response_due": (
            t.first_response_due.isoformat() if t.first_response_due is not None else None
        ),
        "resolution_due": t.resolution_due.isoformat() if t.resolution_due is not None else None,
        "assignee": t.assignee,
        "department": t.department,
    }


async def open_tickets_of(s: Services, p: Principal, customer_id: int) -> list[dict[str, Any]]:
    """The customer's open tickets the user may read (the ticket service's rules)."""
    service = TicketService(s.store, s.ops.ticket_settings())
    rows, _ = await service.search(
        actor_of(p), TicketQuery(customer_id=customer_id, open=True), limit=SCREENPOP_TICKETS
    )
    return [ticket_brief(t) for t in rows]


class NumberBody(BaseModel):
    number: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Kind = "mobile"


class CustomerBody(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    phone: Annotated[str, Field(min_length=1, max_length=64)]
    email: Annotated[str, Field(max_length=255)] | None = None
    company: Annotated[str, Field(max_length=255)] | None = None
    grade: Grade | None = None
    language: Annotated[str, Field(max_length=8)] | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    address: Text | None = None
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    source: Annotated[str, Field(max_length=64)] | None = None
    owner: Annotated[str, Field(max_length=64)] | None = None
    shared: bool = False
    custom: dict[str, Any] = Field(default_factory=dict)
    numbers: list[NumberBody] = Field(default_factory=list, max_length=20)


class CustomerPatch(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    email: Annotated[str, Field(max_length=255)] | None = None
    company: Annotated[str, Field(max_length=255)] | None = None
    grade: Grade | None = None
    language: Annotated[str, Field(max_length=8)] | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    address: Text | None = None
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=50)
    source: Annotated[str, Field(max_length=64)] | None = None
    owner: Annotated[str, Field(max_length=64)] | None = None
    shared: bool | None = None
    custom: dict[str, Any] | None = None
    numbers: list[NumberBody] | None = Field(default=None, max_length=20)


class FollowupBody(BaseModel):
    note: Annotated[str, Field(min_length=1, max_length=10_000)]
    next_at: datetime | None = None


class AppointmentBody(BaseModel):
    at: datetime
    # Default: 15 minutes before the appointment.
    remind_at: datetime | None = None
    note: Annotated[str, Field(max_length=10_000)] = ""


class BlacklistBody(BaseModel):
    number: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(max_length=1000)] = ""


def actor_of(p: Principal) -> Actor:
    return Actor(p.name, p.role)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """The service's refusals as API errors."""
    try:
        yield
    except CrmError as exc:
        raise ApiError(exc.status, exc.message) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def customer_item(c: CustomerData) -> dict[str, Any]:
    """A customer as the API shows it (every field; ``numbers`` the ones besides
    ``phone``)."""
    out: dict[str, Any] = jsonable(c)
    return out


QText = Annotated[str | None, Query(max_length=255)]
QNumber = Annotated[str | None, Query(max_length=64)]
QGrade = Annotated[Grade | None, Query()]
QField = Annotated[list[str] | None, Query(max_length=20)]


def _query(
    q: QText = None,
    number: QNumber = None,
    grade: QGrade = None,
    tag: QText = None,
    owner: QText = None,
    source: QText = None,
    pool: bool | None = None,
    field: QField = None,
) -> CustomerQuery:
    """The search filters of ``GET /api/customers`` and its export (a FastAPI dependency)."""
    custom: dict[str, str] = {}
    for item in field or []:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise ApiError(422, f"field: {item!r} is not name:value")
        custom[name] = value
    return CustomerQuery(
        text=q,
        number=number,
        grade=grade,
        tag=tag,
        owner=owner,
        source=source,
        pool=pool,
        custom=custom,
    )


CustomerSearch = Annotated[CustomerQuery, Depends(_query)]


def build_crm_router(s: Services) -> APIRouter:
    """The routes of docs/api.md "Customers"; the app must hold ``s`` as
    ``app.state.services``."""
    router = APIRouter()

    def service() -> CustomerService:
        return CustomerService(s.store, s.ops.crm_settings())

    async def audit(request: Request, p: Principal, action: str, target: Any, **kw: Any) -> None:
        await audit_change(s, request, p, action, str(target), **kw)

    # -- customers -----------------------------------------------------------------------

    @router.get("/api/customers", tags=["customers"])
    async def customers(
        p: Who,
        query: CustomerSearch,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        with refusals():
            rows, total = await service().search(
                actor_of(p), query, offset=(page_no - 1) * per_page, limit=per_page
            )
        return page([customer_item(c) for c in rows], total, page_no, per_page)

    @router.post("/api/customers", tags=["customers"], status_code=201)
    async def create(
        p: Who, body: CustomerBody, request: Request, allow_duplicate: bool = False
    ) -> dict[str, Any]:
        with refusals():
            data = CustomerData(
                **body.model_dump(exclude={"numbers", "tags"}),
                tags=tuple(body.tags),
                numbers=numbers_from([n.model_dump() for n in body.numbers]),
            )
            created = await service().create(actor_of(p), data, allow_duplicate=allow_duplicate)
        await audit(request, p, "customer.create", created.id, name=created.name)
        return customer_item(created)

    # Before /api/customers/{customer_id}.
    @router.get("/api/customers/export", tags=["customers"])
    async def export(
        p: Who,
        query: CustomerSearch,
        fmt: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv",
    ) -> Response:
        svc = service()
        with refusals():
            _, total = await svc.search(actor_of(p), query, limit=0)
            if total > EXPORT_MAX_ROWS:
                raise ApiError(
                    413, f"{total} customers match: narrow the search to {EXPORT_MAX_ROWS}"
                )
            rows, _ = await svc.search(actor_of(p), query, limit=total)
        writer = export_csv if fmt == "csv" else export_xlsx
        body = await asyncio.to_thread(writer, rows, svc.settings)
        media_type = "text/csv; charset=utf-8" if fmt == "csv" else XLSX_TYPE
        disposition = f'attachment; filename="customers.{fmt}"'
        return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})

    @router.post("/api/customers/import", tags=["customers"])
    async def import_file(
        p: Who,
        request: Request,
        fmt: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv",
        all_or_nothing: bool = False,
    ) -> dict[str, Any]:
        p.require("supervisor")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > IMPORT_MAX_BYTES:
            raise ApiError(413, f"the file is larger than {IMPORT_MAX_BYTES} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > IMPORT_MAX_BYTES:
                raise ApiError(413, f"the file is larger than {IMPORT_MAX_BYTES} bytes")
        try:
            report = await import_customers(
                s.store, bytes(data), fmt, s.ops.crm_settings(), all_or_nothing=all_or_nothing
            )
        except ImportFileTooLarge as exc:
            raise ApiError(413, str(exc)) from None
        except ImportFileError as exc:
            raise ApiError(400, str(exc)) from None
        await audit(
            request,
            p,
            "customer.import",
            fmt,
            rows=report.rows,
            imported=report.imported,
            refused=report.refused,
        )
        return report.as_dict()

    @router.get("/api/customers/{customer_id}", tags=["customers"])
    async def customer(p: Who, customer_id: int) -> dict[str, Any]:
        with refusals():
            return customer_item(await service().get(actor_of(p), customer_id))

    @router.patch("/api/customers/{customer_id}", tags=["customers"])
    async def change(
        p: Who,
        customer_id: int,
        body: CustomerPatch,
        request: Request,
        allow_duplicate: bool = False,
    ) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        with refusals():
            updated = await service().update(
                actor_of(p), customer_id, changes, allow_duplicate=allow_duplicate
            )
        await audit(request, p, "customer.update", customer_id, fields=sorted(changes))
        return customer_item(updated)

    @router.delete("/api/customers/{customer_id}", tags=["customers"])
    async def remove(p: Who, customer_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await service().delete(actor_of(p), customer_id)
        await audit(request, p, "customer.delete", customer_id)
        return {"id": customer_id, "deleted": True}

    @router.post("/api/customers/{customer_id}/numbers", tags=["customers"])
    async def add_number(
        p: Who,
        customer_id: int,
        body: NumberBody,
        request: Request,
        allow_duplicate: bool = False,
    ) -> dict[str, Any]:
        svc, actor = service(), actor_of(p)
        with refusals():
            current = await svc.get(actor, customer_id)
            numbers = [*current.numbers, *numbers_from([body.model_dump()])]
            updated = await svc.update(
                actor, customer_id, {"numbers": numbers}, allow_duplicate=allow_duplicate
            )
        await audit(request, p, "customer.number.add", customer_id, number=body.number)
        return customer_item(updated)

    @router.delete("/api/customers/{customer_id}/numbers/{number_id}", tags=["customers"])
    async def remove_number(
        p: Who, customer_id: int, number_id: int, request: Request
    ) -> dict[str, Any]:
        svc, actor = service(), actor_of(p)
        with refusals():
            current = await svc.get(actor, customer_id)
            kept = [n for n in current.numbers if n.id != number_id]
            if len(kept) == len(current.numbers):
                raise CrmError(404, f"customer {customer_id} has no number {number_id}")
            updated = await svc.update(actor, customer_id, {"numbers": kept})
        await audit(request, p, "customer.number.remove", customer_id, number_id=number_id)
        return customer_item(updated)

    # -- follow-ups and appointments ---------------------------------------------------------

    @router.get("/api/customers/{customer_id}/followups", tags=["customers"])
    async def followups(
        p: Who, customer_id: int, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        with refusals():
            rows = await service().followups(actor_of(p), customer_id)
        start = (page_no - 1) * per_page
        return page(jsonable(rows[start : start + per_page]), len(rows), page_no, per_page)

    @router.post("/api/customers/{customer_id}/followups", tags=["customers"], status_code=201)
    async def add_followup(
        p: Who, customer_id: int, body: FollowupBody, request: Request
    ) -> dict[str, Any]:
        with refusals():
            added: FollowupData = await service().add_followup(
                actor_of(p),
                customer_id,
                body.note,
                now=datetime.now(UTC),
                next_at=utc(body.next_at),
            )
        await audit(request, p, "customer.followup", customer_id)
        out: dict[str, Any] = jsonable(added)
        return out

    @router.get("/api/customers/{customer_id}/appointments", tags=["customers"])
    async def appointments(p: Who, customer_id: int) -> dict[str, Any]:
        with refusals():
            rows = await service().appointments(actor_of(p), customer_id)
        return page(jsonable(rows), len(rows), 1, max(1, len(rows)))

    @router.post("/api/customers/{customer_id}/appointments", tags=["customers"], status_code=201)
    async def add_appointment(
        p: Who, customer_id: int, body: AppointmentBody, request: Request
    ) -> dict[str, Any]:
        at = utc(body.at)
        assert at is not None
        remind_at = utc(body.remind_at) or at - _REMIND_BEFORE
        with refusals():
            added: AppointmentData = await service().add_appointment(
                actor_of(p), customer_id, at, remind_at, body.note
            )
        await audit(request, p, "customer.appointment", customer_id, at=at)
        out: dict[str, Any] = jsonable(added)
        return out

    @router.get("/api/reminders", tags=["customers"])
    async def reminders(p: Who) -> dict[str, Any]:
        rows = await service().due_reminders(actor_of(p), datetime.now(UTC))
        return page(jsonable(rows), len(rows), 1, max(1, len(rows)))

    # -- the public pool ---------------------------------------------------------------------

    @router.post("/api/customers/{customer_id}/claim", tags=["customers"])
    async def claim(p: Who, customer_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            claimed = await service().claim(actor_of(p), customer_id, datetime.now(UTC))
        await audit(request, p, "customer.claim", customer_id)
        return customer_item(claimed)

    @router.post("/api/customers/{customer_id}/release", tags=["customers"])
    async def release(p: Who, customer_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            released = await service().release(actor_of(p), customer_id, datetime.now(UTC))
        await audit(request, p, "customer.release", customer_id)
        return customer_item(released)

    # -- the outbound blacklist ------------------------------------------------------------------

    @router.get("/api/blacklist", tags=["customers"])
    async def blacklist(
        p: Who, number: QNumber = None, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        if number is not None:
            entry = await s.store.blacklist_entry(number)
            found = [entry] if entry is not None else []
            return page(jsonable(found), len(found), 1, per_page)
        rows, total = await s.store.list_blacklist(offset=(page_no - 1) * per_page, limit=per_page)
        return page(jsonable(rows), total, page_no, per_page)

    @router.post("/api/blacklist", tags=["customers"], status_code=201)
    async def blacklist_add(p: Who, body: BlacklistBody, request: Request) -> dict[str, Any]:
        with refusals():
            entry: BlacklistEntry = await service().blacklist(
                actor_of(p), body.number, body.reason, datetime.now(UTC)
            )
        await audit(request, p, "blacklist.add", body.number, reason=body.reason)
        out: dict[str, Any] = jsonable(entry)
        return out

    @router.delete("/api/blacklist/{number}", tags=["customers"])
    async def blacklist_remove(p: Who, number: str, request: Request) -> dict[str, Any]:
        with refusals():
            await service().unblacklist(actor_of(p), number)
        await audit(request, p, "blacklist.remove", number)
        return {"number": number, "removed": True}

    # -- screen pop --------------------------------------------------------------------------

    @router.get("/api/screenpop/{call_id}", tags=["customers", "calls"])
    async def screenpop(p: Who, call_id: str) -> dict[str, Any]:
        try:
            info = live_call_of(s, p, call_id)
        except ApiError as exc:
            # Ringing for the agent: not on their phone yet, but theirs to prepare for.
            if exc.status != 403 or p.agent is None or p.agent not in s.acd.offered_agents(call_id):
                raise
            info = s.control.info(call_id)
        caller: str = info.caller
        found = await s.store.find_customer_by_number(caller) if caller else None
        calls, _ = await s.store.search_call_records(number=caller, limit=SCREENPOP_CALLS)
        recordings, _ = await s.store.search_recordings(number=caller, limit=100)
        by_call: dict[str, list[str]] = {}
        own_phones = principal_scope(s, p)[0] if p.agent is not None else frozenset()
        for r in recordings:
            # The recordings scope: an agent only learns of the recordings of calls they took.
            if p.at_least("qa") or (
                p.agent is not None
                and (r.agent == p.agent or (r.agent is None and r.extension in own_phones))
            ):
                by_call.setdefault(r.call_id, []).append(r.recording_id)
        actor = actor_of(p)
        if found is None:
            card: dict[str, Any] = {"phone": caller}
        elif can_view(actor, found):
            card = customer_item(found)
        else:  # another agent's own customer: who is calling, nothing of the record
            card = {"id": found.id, "name": found.name, "phone": caller, "private": True}
        return {
            "call_id": call_id,
            "caller": caller,
            "known": found is not None,
            "customer": card,
            "editable": found is not None and can_edit(actor, found),
            "blacklisted": await s.store.is_blacklisted(caller) if caller else False,
            "calls": [
                {
                    "record_id": c.record_id,
                    "call_id": c.call_id,
                    "start": c.start.isoformat(),
                    "duration": c.duration,
                    "disposition": c.disposition.value,
                    "direction": c.direction,
                    "queue": c.queue,
                    "agent": c.agent,
                    "ivr_keys": c.ivr_keys,
                    "recordings": by_call.get(c.record_id or "", []),
                }
                for c in calls
            ],
            "ivr_keys": info.ivr_keys,
            "queue": info.queue,
            "tickets": await open_tickets_of(s, p, found.id) if found and found.id else [],
        }

    return router

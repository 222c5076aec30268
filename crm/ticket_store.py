"""Tickets in the store: rows in, frozen dataclasses out (docs/crm.md "Tickets").

Theory of operation: :class:`TicketStore` works on the same engine as :class:`crm.Store`
(``Store.engine``) with SQLAlchemy Core, one short transaction per call. It holds no rules:
:class:`crm.tickets.TicketService` decides what may change and hands over the new values.
A change is written only if the ticket's ``version`` is still the one the service read
(:meth:`TicketStore.change`), so two users acting on the same ticket at once cannot both
win: the second gets a 409 and reads it again. Events (the audit trail) and notifications
are written in the same transaction as the change they describe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm.models import (
    CallRecord,
    RecordingRow,
    TicketCcRow,
    TicketEventRow,
    TicketNotificationRow,
    TicketRow,
)
from crm.store import CrmError

__all__ = [
    "TicketData",
    "TicketEventData",
    "TicketNotificationData",
    "TicketQuery",
    "TicketStore",
    "ticket_number",
]

_TICKETS = cast(Table, TicketRow.__table__)
_EVENTS = cast(Table, TicketEventRow.__table__)
_CC = cast(Table, TicketCcRow.__table__)
_NOTES = cast(Table, TicketNotificationRow.__table__)
_CALLS = cast(Table, CallRecord.__table__)
_RECORDINGS = cast(Table, RecordingRow.__table__)


def ticket_number(ticket_id: int) -> str:
    """The number users quote: ``T-000123``."""
    return f"T-{ticket_id:06d}"


@dataclass(frozen=True, slots=True)
class TicketData:
    """A ticket as stored (the columns of ``tickets``; see crm/models.py)."""

    type: str
    priority: str
    state: str
    title: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    category: str | None = None
    customer_id: int | None = None
    record_id: str | None = None
    recording_id: str | None = None
    assignee: str | None = None
    department: str | None = None
    urgency: int = 0
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    paused_since: datetime | None = None
    paused_seconds: float = 0.0
    revisit_outcome: str | None = None
    version: int = 0
    number: str | None = None
    id: int | None = field(default=None, compare=False)
    # The users copied on it (from ticket_cc).
    cc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TicketEventData:
    """One entry of the audit trail."""

    time: datetime
    user: str
    action: str
    from_state: str | None = None
    to_state: str | None = None
    note: str = ""
    detail: Mapping[str, Any] | None = None
    ticket_id: int | None = None
    id: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TicketNotificationData:
    """A notification to deliver: ``kind`` urged, sla_warning, sla_breach, assigned,
    transferred or cc (crm/notifications.py copies it to each recipient)."""

    time: datetime
    kind: str
    recipients: tuple[str, ...]
    message: str
    once_key: str | None = None
    ticket_id: int | None = None
    id: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TicketQuery:
    """Filters of a ticket search; every one given must hold. ``visible_to`` (a user name
    and their departments) limits it to the tickets an agent may see."""

    state: str | None = None
    open: bool | None = None
    assignee: str | None = None
    department: str | None = None
    customer_id: int | None = None
    created_by: str | None = None
    type: str | None = None
    visible_to: tuple[str, frozenset[str]] | None = None


_SCALARS = tuple(f.name for f in fields(TicketData) if f.name not in ("id", "cc"))


def _ticket_from_row(r: Any, cc: Sequence[str] = ()) -> TicketData:
    values = {name: getattr(r, name) for name in _SCALARS}
    values["paused_seconds"] = float(r.paused_seconds)
    return TicketData(**values, id=r.id, cc=tuple(sorted(cc)))


def _event_from_row(r: Any) -> TicketEventData:
    return TicketEventData(
        r.time, r.user, r.action, r.from_state, r.to_state, r.note, r.detail, r.ticket_id, r.id
    )


def _notification_from_row(r: Any) -> TicketNotificationData:
    recipients = tuple(x for x in r.recipients.split(",") if x)
    return TicketNotificationData(
        r.time, r.kind, recipients, r.message, r.once_key, r.ticket_id, r.id
    )


def _event_values(ticket_id: int, e: TicketEventData) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "time": e.time,
        "user": e.user,
        "action": e.action,
        "from_state": e.from_state,
        "to_state": e.to_state,
        "note": e.note,
        "detail": dict(e.detail) if e.detail else None,
    }


def _notification_values(ticket_id: int, n: TicketNotificationData) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "time": n.time,
        "kind": n.kind,
        "recipients": ",".join(n.recipients),
        "message": n.message,
        "once_key": n.once_key,
    }


def _conditions(q: TicketQuery) -> list[ColumnElement[bool]]:
    t = _TICKETS
    conds: list[ColumnElement[bool]] = []
    if q.state is not None:
        conds.append(t.c.state == q.state)
    if q.open is True:
        conds.append(t.c.state != "closed")
    elif q.open is False:
        conds.append(t.c.state == "closed")
    for name in ("assignee", "department", "customer_id", "created_by", "type"):
        value = getattr(q, name)
        if value is not None:
            conds.append(t.c[name] == value)
    if q.visible_to is not None:
        user, departments = q.visible_to
        seen = [
            t.c.created_by == user,
            t.c.assignee == user,
            t.c.id.in_(select(_CC.c.ticket_id).where(_CC.c.user == user)),
        ]
        if departments:
            seen.append(t.c.department.in_(sorted(departments)))
        conds.append(or_(*seen))
    return conds


class TicketStore:
    """Ticket rows on ``engine`` (module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self,
        ticket: TicketData,
        event: TicketEventData,
        cc: Sequence[str] = (),
        notifications: Sequence[TicketNotificationData] = (),
    ) -> TicketData:
        """Insert ``ticket`` (its number from its id), its first event, its cc list and
        its notifications (whose messages may name the number as ``{number}``)."""
        values = {name: getattr(ticket, name) for name in _SCALARS}
        values["number"] = None
        async with self._engine.begin() as conn:
            result = await conn.execute(insert(_TICKETS).values(**values).returning(_TICKETS.c.id))
            ticket_id = int(result.scalar_one())
            await conn.execute(
                update(_TICKETS)
                .where(_TICKETS.c.id == ticket_id)
                .values(number=ticket_number(ticket_id))
            )
            await conn.execute(insert(_EVENTS).values(**_event_values(ticket_id, event)))
            for user in sorted(set(cc)):
                await conn.execute(insert(_CC).values(ticket_id=ticket_id, user=user))
            number = ticket_number(ticket_id)
            for n in notifications:
                n = dataclasses.replace(n, message=n.message.replace("{number}", number, 1))
                await conn.execute(insert(_NOTES).values(**_notification_values(ticket_id, n)))
            found = await self._get(conn, ticket_id)
        assert found is not None
        return found

    async def _get(self, conn: AsyncConnection, ticket_id: int) -> TicketData | None:
        row = (await conn.execute(select(_TICKETS).where(_TICKETS.c.id == ticket_id))).first()
        if row is None:
            return None
        cc = (await conn.execute(select(_CC.c.user).where(_CC.c.ticket_id == ticket_id))).scalars()
        return _ticket_from_row(row, list(cc))

    async def get(self, ticket_id: int) -> TicketData | None:
        async with self._engine.connect() as conn:
            return await self._get(conn, ticket_id)

    async def id_of(self, number: str) -> int | None:
        """The id of ticket ``T-000123``."""
        async with self._engine.connect() as conn:
            stmt = select(_TICKETS.c.id).where(_TICKETS.c.number == number.strip().upper())
            found = (await conn.execute(stmt)).scalar()
        return int(found) if found is not None else None

    async def change(
        self,
        current: TicketData,
        values: Mapping[str, Any],
        events: Sequence[TicketEventData],
        notifications: Sequence[TicketNotificationData] = (),
        cc_add: Sequence[str] = (),
        cc_remove: Sequence[str] = (),
    ) -> TicketData:
        """Write ``values`` onto ``current`` if no one changed it since it was read (else
        CrmError 409), with its events, notifications and cc changes; the ticket after."""
        assert current.id is not None
        ticket_id = current.id
        t = _TICKETS
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(t)
                .where(t.c.id == ticket_id, t.c.version == current.version)
                .values(**values, version=current.version + 1)
            )
            if result.rowcount != 1:
                raise CrmError(409, f"ticket {current.number} changed meanwhile: read it again")
            for e in events:
                await conn.execute(insert(_EVENTS).values(**_event_values(ticket_id, e)))
            for n in notifications:
                await conn.execute(insert(_NOTES).values(**_notification_values(ticket_id, n)))
            for user in sorted(set(cc_add) - set(current.cc)):
                await conn.execute(insert(_CC).values(ticket_id=ticket_id, user=user))
            if cc_remove:
                await conn.execute(
                    delete(_CC).where(_CC.c.ticket_id == ticket_id, _CC.c.user.in_(cc_remove))
                )
            found = await self._get(conn, ticket_id)
        assert found is not None
        return found

    async def search(
        self, query: TicketQuery, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[TicketData], int]:
        """One page of matching tickets, newest first, and how many match."""
        conds = _conditions(query)
        where = and_(*conds) if conds else None
        stmt = select(_TICKETS)
        count = select(func.count()).select_from(_TICKETS)
        if where is not None:
            stmt, count = stmt.where(where), count.where(where)
        stmt = stmt.order_by(_TICKETS.c.id.desc()).offset(offset).limit(limit)
        async with self._engine.connect() as conn:
            total = int((await conn.execute(count)).scalar_one())
            rows = (await conn.execute(stmt)).all() if limit > 0 else []
            ids = [r.id for r in rows]
            cc: dict[int, list[str]] = {}
            if ids:
                for tid, user in await conn.execute(
                    select(_CC.c.ticket_id, _CC.c.user).where(_CC.c.ticket_id.in_(ids))
                ):
                    cc.setdefault(tid, []).append(user)
        return [_ticket_from_row(r, cc.get(r.id, ())) for r in rows], total

    async def due_tickets(self, horizon: datetime) -> list[TicketData]:
        """Open tickets with a deadline not yet met that falls before ``horizon`` (what the
        escalation job looks at)."""
        t = _TICKETS
        stmt = (
            select(t)
            .where(
                t.c.state != "closed",
                or_(
                    and_(t.c.first_response_at.is_(None), t.c.first_response_due <= horizon),
                    and_(t.c.resolved_at.is_(None), t.c.resolution_due <= horizon),
                ),
            )
            .order_by(t.c.id)
        )
        async with self._engine.connect() as conn:
            return [_ticket_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def events(self, ticket_id: int) -> list[TicketEventData]:
        """The audit trail, oldest first."""
        stmt = select(_EVENTS).where(_EVENTS.c.ticket_id == ticket_id).order_by(_EVENTS.c.id)
        async with self._engine.connect() as conn:
            return [_event_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def add_notification_once(
        self, ticket_id: int, n: TicketNotificationData, event: TicketEventData
    ) -> bool:
        """Record ``n`` (with a ``once_key``) and its event unless the ticket has one with
        that key already; whether it was new."""
        assert n.once_key is not None
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(_NOTES).values(**_notification_values(ticket_id, n)))
                await conn.execute(insert(_EVENTS).values(**_event_values(ticket_id, event)))
        except IntegrityError:
            return False
        return True

    async def notifications(
        self, ticket_id: int | None = None, since: datetime | None = None
    ) -> list[TicketNotificationData]:
        """Notifications, oldest first: one ticket's, or all since ``since``."""
        stmt = select(_NOTES).order_by(_NOTES.c.id)
        if ticket_id is not None:
            stmt = stmt.where(_NOTES.c.ticket_id == ticket_id)
        if since is not None:
            stmt = stmt.where(_NOTES.c.time >= since)
        async with self._engine.connect() as conn:
            return [_notification_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def call_links(self, record_id: str) -> tuple[str, str | None] | None:
        """For call record ``record_id``: the customer's number on it (the callee of an
        outbound call, else the caller) and its first recording's id; None when there is
        no such record."""
        c = _CALLS
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    select(c.c.caller, c.c.callee, c.c.direction)
                    .where(c.c.record_id == record_id)
                    .limit(1)
                )
            ).first()
            if found is None:
                return None
            recording = (
                await conn.execute(
                    select(_RECORDINGS.c.recording_id)
                    .where(_RECORDINGS.c.call_id == record_id)
                    .order_by(_RECORDINGS.c.id)
                    .limit(1)
                )
            ).scalar()
        number = found.callee if found.direction == "outbound" else found.caller
        return str(number), recording

"""Notifications to users (docs/crm.md "Notifications"): what is worth telling a person
— a ticket urged, assigned, transferred or copied to them, an SLA warning or breach, an
appointment or follow-up coming due — as one durable row per user.

Theory of operation: the rules that decide who is told live where the fact happens
(:class:`crm.tickets.TicketService` writes ``ticket_notifications`` with its recipients;
appointments and follow-ups carry their user and due time). :meth:`NotificationStore.collect`
copies what is new into ``notifications``, one row per recipient, and marks the source
handled in the same transaction (``ticket_notifications.expanded``,
``customer_appointments.reminded``, ``customer_followups.reminded``), so a crash or a
second node never loses one; ``(user, source)`` is unique, so none is made twice.
A delivery loop in app/ publishes :meth:`undelivered` rows on the event stream to their
user and marks them delivered; whether the user was connected or not, the row stays
listed (:meth:`for_user`, unread first) until they mark it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, and_, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm.models import (
    Customer,
    CustomerAppointment,
    CustomerFollowup,
    NotificationRow,
    TicketNotificationRow,
    TicketRow,
)

__all__ = ["KINDS", "NotificationData", "NotificationStore"]

_NOTES = cast(Table, NotificationRow.__table__)
_TICKET_NOTES = cast(Table, TicketNotificationRow.__table__)
_TICKETS = cast(Table, TicketRow.__table__)
_APPOINTMENTS = cast(Table, CustomerAppointment.__table__)
_FOLLOWUPS = cast(Table, CustomerFollowup.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)

# Every kind a notification may have (the panel translates them).
KINDS = (
    "urged",
    "sla_warning",
    "sla_breach",
    "assigned",
    "transferred",
    "cc",
    "appointment",
    "followup",
)
BATCH = 500  # sources copied per transaction


@dataclass(frozen=True, slots=True)
class NotificationData:
    """One notification to one user."""

    user: str
    time: datetime
    kind: str
    message: str
    source: str
    ticket_id: int | None = None
    customer_id: int | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    id: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "time": self.time.isoformat(),
            "kind": self.kind,
            "message": self.message,
            "ticket_id": self.ticket_id,
            "customer_id": self.customer_id,
            "delivered": self.delivered_at is not None,
            "read": self.read_at is not None,
            "read_at": self.read_at.isoformat() if self.read_at is not None else None,
        }


def _from_row(r: Any) -> NotificationData:
    return NotificationData(
        r.user,
        r.time,
        r.kind,
        r.message,
        r.source,
        r.ticket_id,
        r.customer_id,
        r.delivered_at,
        r.read_at,
        r.id,
    )


class NotificationStore:
    """Notification rows on ``engine`` (``Store.engine``; module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- collecting --------------------------------------------------------------------------

    async def collect(self, now: datetime) -> int:
        """Copy new ticket notifications and due appointment and follow-up reminders into
        per-user rows; how many rows were made. Another node collecting at the same moment
        makes one of the two transactions fail on the unique key: its sources stay
        unhandled and are taken next time."""
        made = 0
        for step in (self._tickets, self._appointments, self._followups):
            try:
                async with self._engine.begin() as conn:
                    made += await step(conn, now.astimezone(UTC))
            except IntegrityError:
                continue
        return made

    async def _insert(self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
        if rows:
            await conn.execute(insert(_NOTES), list(rows))
        return len(rows)

    async def _tickets(self, conn: AsyncConnection, now: datetime) -> int:
        n, t = _TICKET_NOTES, _TICKETS
        found = (
            await conn.execute(
                select(n, t.c.customer_id)
                .join(t, t.c.id == n.c.ticket_id)
                .where(n.c.expanded.is_(False))
                .order_by(n.c.id)
                .limit(BATCH)
            )
        ).all()
        rows: list[dict[str, Any]] = []
        for r in found:
            for user in sorted({x for x in r.recipients.split(",") if x}):
                rows.append(
                    {
                        "user": user,
                        "time": r.time,
                        "kind": r.kind,
                        "message": r.message,
                        "source": f"ticket_notification:{r.id}",
                        "ticket_id": r.ticket_id,
                        "customer_id": r.customer_id,
                    }
                )
        if found:
            await conn.execute(
                update(n).where(n.c.id.in_([r.id for r in found])).values(expanded=True)
            )
        return await self._insert(conn, rows)

    async def _appointments(self, conn: AsyncConnection, now: datetime) -> int:
        a, c = _APPOINTMENTS, _CUSTOMERS
        found = (
            await conn.execute(
                select(a, c.c.name)
                .join(c, c.c.id == a.c.customer_id)
                .where(a.c.remind_at <= now, a.c.reminded.is_(False))
                .order_by(a.c.id)
                .limit(BATCH)
            )
        ).all()
        rows = [
            {
                "user": r.user,
                "time": r.remind_at,
                "kind": "appointment",
                "message": f"{r.name}: appointment at {r.at.isoformat()}"
                + (f" — {r.note}" if r.note else ""),
                "source": f"appointment:{r.id}",
                "customer_id": r.customer_id,
            }
            for r in found
        ]
        if found:
            await conn.execute(
                update(a).where(a.c.id.in_([r.id for r in found])).values(reminded=True)
            )
        return await self._insert(conn, rows)

    async def _followups(self, conn: AsyncConnection, now: datetime) -> int:
        f, c = _FOLLOWUPS, _CUSTOMERS
        found = (
            await conn.execute(
                select(f, c.c.name)
                .join(c, c.c.id == f.c.customer_id)
                .where(f.c.next_at.is_not(None), f.c.next_at <= now, f.c.reminded.is_(False))
                .order_by(f.c.id)
                .limit(BATCH)
            )
        ).all()
        rows = [
            {
                "user": r.user,
                "time": r.next_at,
                "kind": "followup",
                "message": f"{r.name}: follow up now ({r.note[:200]})",
                "source": f"followup:{r.id}",
                "customer_id": r.customer_id,
            }
            for r in found
        ]
        if found:
            await conn.execute(
                update(f).where(f.c.id.in_([r.id for r in found])).values(reminded=True)
            )
        return await self._insert(conn, rows)

    # -- delivery ----------------------------------------------------------------------------

    async def undelivered(self, limit: int = BATCH) -> list[NotificationData]:
        """Rows not pushed yet, oldest first."""
        stmt = (
            select(_NOTES).where(_NOTES.c.delivered_at.is_(None)).order_by(_NOTES.c.id).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def mark_delivered(self, ids: Sequence[int], now: datetime) -> int:
        if not ids:
            return 0
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(_NOTES)
                .where(_NOTES.c.id.in_(list(ids)), _NOTES.c.delivered_at.is_(None))
                .values(delivered_at=now)
            )
        return int(done.rowcount)

    # -- the user's list ------------------------------------------------------------------------

    async def for_user(
        self, user: str, *, unread_only: bool = False, offset: int = 0, limit: int = 50
    ) -> tuple[list[NotificationData], int, int]:
        """A page of the user's notifications (unread first, then newest first), how many
        match and how many are unread."""
        n = _NOTES
        conds = [n.c.user == user]
        if unread_only:
            conds.append(n.c.read_at.is_(None))
        unread_first = case((n.c.read_at.is_(None), 0), else_=1)
        stmt = (
            select(n)
            .where(*conds)
            .order_by(unread_first, n.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            total = int(
                (await conn.execute(select(func.count()).select_from(n).where(*conds))).scalar_one()
            )
            unread = int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(n)
                        .where(and_(n.c.user == user, n.c.read_at.is_(None)))
                    )
                ).scalar_one()
            )
            rows = (await conn.execute(stmt)).all() if limit > 0 else []
        return [_from_row(r) for r in rows], total, unread

    async def mark_read(self, user: str, notification_id: int, now: datetime) -> bool:
        """Mark one of ``user``'s notifications read; False when they have no such one."""
        n = _NOTES
        async with self._engine.begin() as conn:
            found = (
                await conn.execute(
                    select(n.c.id, n.c.read_at).where(n.c.id == notification_id, n.c.user == user)
                )
            ).first()
            if found is None:
                return False
            if found.read_at is None:
                await conn.execute(update(n).where(n.c.id == notification_id).values(read_at=now))
        return True

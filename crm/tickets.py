"""Tickets: the lifecycle as a transition table, SLA deadlines in business time, who may do
what, and the escalation job (docs/crm.md "Tickets").

Theory of operation
-------------------
A ticket is in one :class:`TicketState`. Every operation a user performs is an
:class:`Operation`, and :data:`TRANSITIONS` maps (state, operation) to the next state; a
pair missing from the table is an illegal move and raises :class:`IllegalTransition` (HTTP
409). The table is the whole lifecycle: tests are parametrised over it and docs/crm.md
prints it::

    new --assign/transfer--> assigned --start--> in_progress --feedback--> feedback
    feedback --resume--> in_progress;  in_progress/feedback --revisit--> revisit
    revisit --close--> closed (in_progress may close directly);  closed --reopen--> in_progress

Comments, urges and carbon copies do not move a ticket: they map a state to itself, and
only for open states (nothing is said on a closed ticket until it is reopened).

SLA: each (type, priority) has a first-response and a resolution target, counted in
business time (:class:`crm.business_hours.BusinessCalendar`) from creation. While a ticket
waits on the customer (``feedback``) its resolution clock stops: on resume the business
seconds spent waiting are added to ``paused_seconds`` and the resolution deadline moves on
by as much. The first response is the first ``start``, ``feedback`` or handler's comment.
:meth:`TicketService.escalate` (run every minute by app/) records a warning
``warn_before`` ahead of a deadline and a breach at it, each once per ticket and kind: the
``once_key`` of :class:`~crm.ticket_store.TicketNotificationData` is unique per ticket.

Permissions, checked here and not only in the pages (an :class:`crm.Actor` asks):

- supervisors and admins see and change every ticket;
- others see tickets they created, are assigned, whose department they are in, or are
  copied on; a ticket they may not see is a 404 (ids do not leak);
- only the assignee, members of the ticket's department and supervisors change its state,
  assignment or cc list (403 otherwise);
- everyone who sees an open ticket may comment on it and urge it; cc'd users may do nothing
  else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

from crm.business_hours import BusinessCalendar
from crm.customers import Actor
from crm.store import CrmError, Store
from crm.ticket_store import (
    TicketData,
    TicketEventData,
    TicketNotificationData,
    TicketQuery,
    TicketStore,
)

__all__ = [
    "OPERATIONS_FROM",
    "PRIORITIES",
    "TRANSITIONS",
    "IllegalTransition",
    "Operation",
    "SlaTarget",
    "TicketService",
    "TicketSettings",
    "TicketState",
]

log = structlog.get_logger("crm.tickets")

PRIORITIES = ("low", "normal", "high", "urgent")
MAX_NOTE = 10_000


class TicketState(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    FEEDBACK = "feedback"  # waiting on the customer: the SLA clock is stopped
    REVISIT = "revisit"  # solved; the customer is called back to confirm
    CLOSED = "closed"


class Operation(StrEnum):
    ASSIGN = "assign"
    TRANSFER = "transfer"
    START = "start"
    FEEDBACK = "feedback"
    RESUME = "resume"
    REVISIT = "revisit"
    CLOSE = "close"
    REOPEN = "reopen"
    URGE = "urge"
    CC = "cc"
    COMMENT = "comment"


S, Op = TicketState, Operation
_OPEN = (S.NEW, S.ASSIGNED, S.IN_PROGRESS, S.FEEDBACK, S.REVISIT)

TRANSITIONS: dict[tuple[TicketState, Operation], TicketState] = {
    (S.NEW, Op.ASSIGN): S.ASSIGNED,
    (S.ASSIGNED, Op.ASSIGN): S.ASSIGNED,
    (S.NEW, Op.TRANSFER): S.ASSIGNED,
    (S.ASSIGNED, Op.TRANSFER): S.ASSIGNED,
    # A transfer hands the work over: the new handler starts it again.
    (S.IN_PROGRESS, Op.TRANSFER): S.ASSIGNED,
    (S.ASSIGNED, Op.START): S.IN_PROGRESS,
    (S.IN_PROGRESS, Op.FEEDBACK): S.FEEDBACK,
    (S.FEEDBACK, Op.RESUME): S.IN_PROGRESS,
    # The customer was not satisfied at the revisit: back to work.
    (S.REVISIT, Op.RESUME): S.IN_PROGRESS,
    (S.IN_PROGRESS, Op.REVISIT): S.REVISIT,
    (S.FEEDBACK, Op.REVISIT): S.REVISIT,
    (S.IN_PROGRESS, Op.CLOSE): S.CLOSED,
    (S.REVISIT, Op.CLOSE): S.CLOSED,
    (S.CLOSED, Op.REOPEN): S.IN_PROGRESS,
    **{(s, op): s for s in _OPEN for op in (Op.URGE, Op.CC, Op.COMMENT)},
}

# For messages and docs: the states each operation may start from.
OPERATIONS_FROM: dict[Operation, tuple[TicketState, ...]] = {
    op: tuple(s for s in TicketState if (s, op) in TRANSITIONS) for op in Operation
}


class IllegalTransition(CrmError):
    """An operation the ticket's state does not allow (409)."""

    def __init__(self, state: TicketState, op: Operation) -> None:
        allowed = ", ".join(OPERATIONS_FROM[op]) or "nowhere"
        super().__init__(
            409, f"cannot {op.value} a ticket that is {state.value} (only from: {allowed})"
        )
        self.state = state
        self.operation = op


def next_state(state: TicketState | str, op: Operation) -> TicketState:
    """The state ``op`` leads to from ``state``, or :class:`IllegalTransition`."""
    state = TicketState(state)
    try:
        return TRANSITIONS[(state, op)]
    except KeyError:
        raise IllegalTransition(state, op) from None


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """Business seconds to the first response and to resolution."""

    first_response: float
    resolution: float


@dataclass(frozen=True, slots=True)
class TicketSettings:
    """The ``tickets:`` config section (app/ builds it)."""

    # Code tables: code → display name.
    types: Mapping[str, str] = field(default_factory=lambda: {"general": "General"})
    categories: Mapping[str, str] = field(default_factory=dict)
    # Department → its members' user names.
    departments: Mapping[str, frozenset[str]] = field(default_factory=dict)
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    # type → priority → target; a missing pair has no deadline.
    sla: Mapping[str, Mapping[str, SlaTarget]] = field(default_factory=dict)
    warn_before: float = 3600.0

    def departments_of(self, user: str) -> frozenset[str]:
        return frozenset(d for d, members in self.departments.items() if user in members)

    def target(self, type_: str, priority: str) -> SlaTarget | None:
        return self.sla.get(type_, {}).get(priority)


@dataclass(frozen=True, slots=True)
class Escalation:
    """One warning or breach the escalation job recorded."""

    ticket_id: int
    number: str
    kind: str  # sla_warning | sla_breach
    deadline: str  # first_response | resolution
    due: datetime
    recipients: tuple[str, ...]


class TicketService:
    """Ticket operations with permission checks (module docstring)."""

    def __init__(self, store: Store, settings: TicketSettings) -> None:
        self.store = store
        self.tickets = TicketStore(store.engine)
        self.settings = settings

    # -- who may do what -----------------------------------------------------------------------

    def can_view(self, actor: Actor, t: TicketData) -> bool:
        return actor.sees_all or self._handles(actor, t) or actor.name in (t.created_by, *t.cc)

    def _handles(self, actor: Actor, t: TicketData) -> bool:
        if actor.sees_all or t.assignee == actor.name:
            return True
        return t.department is not None and actor.name in self.settings.departments.get(
            t.department, frozenset()
        )

    def can_handle(self, actor: Actor, t: TicketData) -> bool:
        """Whether ``actor`` may change the ticket's state, assignment and cc list."""
        return self._handles(actor, t)

    async def get(self, actor: Actor, ticket_id: int) -> TicketData:
        """One ticket the actor may see; CrmError 404 otherwise."""
        found = await self.tickets.get(ticket_id)
        if found is None or not self.can_view(actor, found):
            raise CrmError(404, f"no ticket {ticket_id}")
        return found

    async def resolve(self, actor: Actor, ref: str | int) -> TicketData:
        """A ticket by id (``123``) or number (``T-000123``)."""
        text = str(ref).strip()
        if text.isdigit():
            return await self.get(actor, int(text))
        ticket_id = await self.tickets.id_of(text)
        if ticket_id is None:
            raise CrmError(404, f"no ticket {text}")
        return await self.get(actor, ticket_id)

    async def search(
        self, actor: Actor, query: TicketQuery, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[TicketData], int]:
        if not actor.sees_all:
            query = dataclasses.replace(
                query, visible_to=(actor.name, self.settings.departments_of(actor.name))
            )
        return await self.tickets.search(query, offset=offset, limit=limit)

    async def history(self, actor: Actor, ticket_id: int) -> list[TicketEventData]:
        await self.get(actor, ticket_id)
        return await self.tickets.events(ticket_id)

    async def notifications(self, actor: Actor, ticket_id: int) -> list[TicketNotificationData]:
        await self.get(actor, ticket_id)
        return await self.tickets.notifications(ticket_id)

    # -- checks --------------------------------------------------------------------------------

    async def _check_user(self, name: str) -> str:
        user = await self.store.get_user(name)
        if user is None or user.disabled:
            raise CrmError(400, f"no user {name!r}")
        return name

    def _check_department(self, name: str) -> str:
        if name not in self.settings.departments:
            known = ", ".join(sorted(self.settings.departments)) or "none configured"
            raise CrmError(400, f"no department {name!r} (tickets.departments: {known})")
        return name

    def _deadlines(
        self, type_: str, priority: str, start: datetime
    ) -> tuple[datetime | None, datetime | None]:
        target = self.settings.target(type_, priority)
        if target is None:
            return None, None
        cal = self.settings.calendar
        return cal.add(start, target.first_response), cal.add(start, target.resolution)

    # -- create ----------------------------------------------------------------------------------

    async def create(
        self,
        actor: Actor,
        *,
        type: str,
        title: str,
        now: datetime,
        description: str = "",
        priority: str = "normal",
        category: str | None = None,
        customer_id: int | None = None,
        record_id: str | None = None,
        assignee: str | None = None,
        department: str | None = None,
        cc: Sequence[str] = (),
    ) -> TicketData:
        """A new ticket (state ``new``, or ``assigned`` when given an assignee or a
        department). ``record_id`` links the call it comes from and that call's recording;
        the caller's customer is linked when ``customer_id`` is not given."""
        if type not in self.settings.types:
            raise CrmError(400, f"no ticket type {type!r} (tickets.types)")
        if category is not None and category not in self.settings.categories:
            raise CrmError(400, f"no ticket category {category!r} (tickets.categories)")
        if priority not in PRIORITIES:
            raise CrmError(400, f"priority must be one of {', '.join(PRIORITIES)}")
        title = title.strip()
        if not title or len(title) > 255:
            raise CrmError(400, "a title needs 1 to 255 characters")
        if len(description) > MAX_NOTE:
            raise CrmError(400, f"a description has at most {MAX_NOTE} characters")
        recording_id = None
        if record_id is not None:
            links = await self.tickets.call_links(record_id)
            if links is None:
                raise CrmError(400, f"no call record {record_id!r}")
            number, recording_id = links
            if customer_id is None and number:
                found = await self.store.find_customer_by_number(number)
                customer_id = found.id if found is not None else None
        if customer_id is not None and await self.store.get_customer(customer_id) is None:
            raise CrmError(400, f"no customer {customer_id}")
        if assignee is not None:
            await self._check_user(assignee)
        if department is not None:
            self._check_department(department)
        for user in cc:
            await self._check_user(user)
        first_due, resolution_due = self._deadlines(type, priority, now)
        state = TicketState.ASSIGNED if assignee or department else TicketState.NEW
        ticket = TicketData(
            type=type,
            priority=priority,
            state=state.value,
            title=title,
            description=description,
            created_by=actor.name,
            created_at=now,
            updated_at=now,
            category=category,
            customer_id=customer_id,
            record_id=record_id,
            recording_id=recording_id,
            assignee=assignee,
            department=department,
            first_response_due=first_due,
            resolution_due=resolution_due,
        )
        detail = {"assignee": assignee, "department": department, "record_id": record_id}
        event = TicketEventData(
            now,
            actor.name,
            "create",
            None,
            state.value,
            "",
            {k: v for k, v in detail.items() if v is not None} or None,
        )
        # The new handler (the person, else the department's members) and the users
        # copied are told; the creator is not told of their own act.
        handlers = (assignee,) if assignee is not None else self._members(department)
        notices = []
        for kind, verb, users in (
            ("assigned", "assigned you", handlers),
            ("cc", "copied you on", tuple(sorted(set(cc)))),
        ):
            told = tuple(x for x in users if x != actor.name)
            if told:
                message = f"{actor.name} {verb} {{number}}: {title}"
                notices.append(TicketNotificationData(now, kind, told, message))
        created = await self.tickets.create(ticket, event, cc, notices)
        log.info("ticket_created", ticket=created.number, user=actor.name, state=state.value)
        return created

    # -- moves -----------------------------------------------------------------------------------

    async def _move(
        self,
        actor: Actor,
        ticket_id: int,
        op: Operation,
        now: datetime,
        note: str = "",
        values: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        *,
        handler_only: bool = True,
        notifications: Sequence[TicketNotificationData] = (),
        cc_add: Sequence[str] = (),
        cc_remove: Sequence[str] = (),
        prepare: Callable[[TicketData], tuple[dict[str, Any], list[TicketNotificationData]]]
        | None = None,
    ) -> TicketData:
        """Apply ``op`` to the ticket as read now: ``values`` and ``notifications`` are
        written with it, or what ``prepare`` makes of the ticket read (so they are computed
        from the very version the write checks)."""
        current = await self.get(actor, ticket_id)
        if handler_only and not self._handles(actor, current):
            raise CrmError(
                403,
                f"only the assignee, the department or a supervisor may {op.value} "
                f"ticket {current.number}",
            )
        if len(note) > MAX_NOTE:
            raise CrmError(400, f"a note has at most {MAX_NOTE} characters")
        before = TicketState(current.state)
        after = next_state(before, op)
        changes: dict[str, Any] = {"state": after.value, "updated_at": now, **(values or {})}
        changes.update(self._clock(current, before, after, now, op, actor))
        if prepare is not None:
            extra, notifications = prepare(current)
            changes.update(extra)
            if extra:
                detail = {**(detail or {}), **extra}
        event = TicketEventData(
            now, actor.name, op.value, before.value, after.value, note, detail or None
        )
        changed = await self.tickets.change(
            current, changes, [event], notifications, cc_add, cc_remove
        )
        log.info(
            "ticket_changed",
            ticket=current.number,
            user=actor.name,
            op=op.value,
            state=after.value,
        )
        return changed

    def _clock(
        self,
        t: TicketData,
        before: TicketState,
        after: TicketState,
        now: datetime,
        op: Operation,
        actor: Actor,
    ) -> dict[str, Any]:
        """The SLA fields a move changes: pause and resume, first response, resolution."""
        out: dict[str, Any] = {}
        cal = self.settings.calendar
        if after == TicketState.FEEDBACK and before != TicketState.FEEDBACK:
            out["paused_since"] = now
        if before == TicketState.FEEDBACK and after != TicketState.FEEDBACK:
            since = t.paused_since or now
            paused = cal.between(since, now)
            out["paused_since"] = None
            out["paused_seconds"] = t.paused_seconds + paused
            if t.resolution_due is not None and t.resolved_at is None:
                out["resolution_due"] = cal.add(t.resolution_due, paused)
        responds = op in (Operation.START, Operation.FEEDBACK) or (
            op == Operation.COMMENT and self._handles(actor, t)
        )
        if t.first_response_at is None and responds:
            out["first_response_at"] = now
        if after in (TicketState.REVISIT, TicketState.CLOSED) and t.resolved_at is None:
            out["resolved_at"] = now
        if after == TicketState.CLOSED:
            out["closed_at"] = now
        if op == Operation.REOPEN:
            out["resolved_at"] = None
            out["closed_at"] = None
        if op == Operation.RESUME and before == TicketState.REVISIT:
            out["resolved_at"] = None
        return out

    async def assign(
        self,
        actor: Actor,
        ticket_id: int,
        now: datetime,
        *,
        user: str | None = None,
        department: str | None = None,
        note: str = "",
    ) -> TicketData:
        """Dispatch a new (or re-dispatch an assigned) ticket to a user and/or a
        department."""
        return await self._hand_over(
            actor, ticket_id, now, Operation.ASSIGN, user, department, note
        )

    async def transfer(
        self,
        actor: Actor,
        ticket_id: int,
        now: datetime,
        *,
        user: str | None = None,
        department: str | None = None,
        note: str = "",
    ) -> TicketData:
        """Hand a ticket to another department or person (it is ``assigned`` again)."""
        return await self._hand_over(
            actor, ticket_id, now, Operation.TRANSFER, user, department, note
        )

    async def _hand_over(
        self,
        actor: Actor,
        ticket_id: int,
        now: datetime,
        op: Operation,
        user: str | None,
        department: str | None,
        note: str,
    ) -> TicketData:
        if user is None and department is None:
            raise CrmError(400, f"{op.value} to a user, a department or both")
        values: dict[str, Any] = {}
        if user is not None:
            values["assignee"] = await self._check_user(user)
        if department is not None:
            values["department"] = self._check_department(department)
            if user is None:
                values["assignee"] = None  # the department picks who works on it

        def handed(current: TicketData) -> tuple[dict[str, Any], list[TicketNotificationData]]:
            # The new handler (the person, else the department's members) is told.
            told = (user,) if user is not None else self._members(department)
            told = tuple(x for x in told if x != actor.name)
            kind = "assigned" if op == Operation.ASSIGN else "transferred"
            verb = "assigned" if op == Operation.ASSIGN else "transferred"
            message = f"{actor.name} {verb} {current.number} to you: {current.title}"
            notices = [TicketNotificationData(now, kind, told, message)] if told else []
            return {}, notices

        return await self._move(actor, ticket_id, op, now, note, values, values, prepare=handed)

    def _members(self, department: str | None) -> tuple[str, ...]:
        if department is None:
            return ()
        return tuple(sorted(self.settings.departments.get(department, ())))

    async def start(
        self, actor: Actor, ticket_id: int, now: datetime, note: str = ""
    ) -> TicketData:
        """Start working on it (the first response, if none yet)."""
        return await self._move(actor, ticket_id, Operation.START, now, note)

    async def feedback(
        self, actor: Actor, ticket_id: int, now: datetime, note: str = ""
    ) -> TicketData:
        """Wait on the customer: the resolution clock stops until :meth:`resume`."""
        return await self._move(actor, ticket_id, Operation.FEEDBACK, now, note)

    async def resume(
        self, actor: Actor, ticket_id: int, now: datetime, note: str = ""
    ) -> TicketData:
        """Back to work (after feedback, or after an unsatisfied revisit)."""
        return await self._move(actor, ticket_id, Operation.RESUME, now, note)

    async def revisit(
        self, actor: Actor, ticket_id: int, now: datetime, outcome: str, note: str = ""
    ) -> TicketData:
        """Solved: record the outcome of calling the customer back."""
        outcome = outcome.strip()
        if not outcome or len(outcome) > 1000:
            raise CrmError(400, "a revisit needs an outcome (1 to 1000 characters)")
        values = {"revisit_outcome": outcome}
        return await self._move(actor, ticket_id, Operation.REVISIT, now, note, values, values)

    async def close(
        self, actor: Actor, ticket_id: int, now: datetime, note: str = ""
    ) -> TicketData:
        return await self._move(actor, ticket_id, Operation.CLOSE, now, note)

    async def reopen(
        self, actor: Actor, ticket_id: int, now: datetime, note: str = ""
    ) -> TicketData:
        return await self._move(actor, ticket_id, Operation.REOPEN, now, note)

    async def urge(self, actor: Actor, ticket_id: int, now: datetime, note: str = "") -> TicketData:
        """Raise the urgency and notify the assignee (or the department)."""

        def urged(
            current: TicketData,
        ) -> tuple[dict[str, Any], list[TicketNotificationData]]:
            recipients = self._recipients(current)
            message = f"{actor.name} urged {current.number}: {note or current.title}"
            notice = TicketNotificationData(now, "urged", recipients, message)
            return {"urgency": current.urgency + 1}, [notice]

        return await self._move(
            actor, ticket_id, Operation.URGE, now, note, handler_only=False, prepare=urged
        )

    async def comment(self, actor: Actor, ticket_id: int, now: datetime, note: str) -> TicketData:
        """Add a comment (anyone who sees the open ticket, cc'd users included)."""
        if not note.strip():
            raise CrmError(400, "a comment needs text")
        return await self._move(actor, ticket_id, Operation.COMMENT, now, note, handler_only=False)

    async def carbon_copy(
        self,
        actor: Actor,
        ticket_id: int,
        now: datetime,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> TicketData:
        """Copy users on a ticket (they see it and may comment) or take them off."""
        if not add and not remove:
            raise CrmError(400, "cc: name users to add or remove")
        for user in add:
            await self._check_user(user)
        detail = {"add": sorted(set(add)), "remove": sorted(set(remove))}

        def copied(current: TicketData) -> tuple[dict[str, Any], list[TicketNotificationData]]:
            told = tuple(sorted(set(add) - set(current.cc) - {actor.name}))
            message = f"{actor.name} copied you on {current.number}: {current.title}"
            return {}, [TicketNotificationData(now, "cc", told, message)] if told else []

        return await self._move(
            actor,
            ticket_id,
            Operation.CC,
            now,
            "",
            None,
            detail,
            cc_add=add,
            cc_remove=remove,
            prepare=copied,
        )

    def _recipients(self, t: TicketData) -> tuple[str, ...]:
        if t.assignee is not None:
            return (t.assignee,)
        if t.department is not None:
            return tuple(sorted(self.settings.departments.get(t.department, ())))
        return ()

    # -- the escalation job ----------------------------------------------------------------------

    async def escalate(self, now: datetime) -> list[Escalation]:
        """Record the SLA warnings and breaches due at ``now`` that were not recorded yet
        (each once per ticket and kind); the new ones. Tickets waiting on the customer are
        skipped for resolution: their deadline moves when they resume."""
        out: list[Escalation] = []
        warn = timedelta(seconds=self.settings.warn_before)
        for t in await self.tickets.due_tickets(now + warn):
            assert t.id is not None and t.number is not None
            checks: list[tuple[str, datetime]] = []
            if t.first_response_due is not None and t.first_response_at is None:
                checks.append(("first_response", t.first_response_due))
            if (
                t.resolution_due is not None
                and t.resolved_at is None
                and t.state != TicketState.FEEDBACK
            ):
                checks.append(("resolution", t.resolution_due))
            for deadline, due in checks:
                for kind, at in (("sla_warning", due - warn), ("sla_breach", due)):
                    if now < at:
                        continue
                    recipients = self._recipients(t) or (t.created_by,)
                    verb = "breached" if kind == "sla_breach" else "is due"
                    message = (
                        f"{t.number}: {deadline.replace('_', ' ')} {verb} at {due.isoformat()}"
                    )
                    key = f"{deadline}.{kind}"
                    notice = TicketNotificationData(now, kind, recipients, message, key)
                    event = TicketEventData(
                        now, "system", kind, t.state, t.state, message, {"deadline": deadline}
                    )
                    if await self.tickets.add_notification_once(t.id, notice, event):
                        out.append(Escalation(t.id, t.number, kind, deadline, due, recipients))
                        log.warning("ticket_sla", ticket=t.number, kind=kind, deadline=deadline)
        return out

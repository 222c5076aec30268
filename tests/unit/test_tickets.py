"""Tickets (crm/tickets.py) on a real store: every (state, operation) pair of the transition
table, legal and illegal; SLA deadlines on a fake clock in business hours with a feedback
pause; the escalation job warning once; permission denials per role; the audit trail; and
the store on SQLite and PostgreSQL (with the migration matching the models)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import PasswordHasher

from crm import (
    Actor,
    CallRecordData,
    CrmError,
    CustomerData,
    Disposition,
    HangupSide,
    RecordingData,
    RecordingState,
    Store,
)
from crm.business_hours import BusinessCalendar, ClosedDays, OpenHours
from crm.migrate import modelled
from crm.models import Base
from crm.ticket_store import TicketData, TicketQuery
from crm.tickets import (
    OPERATIONS_FROM,
    TRANSITIONS,
    IllegalTransition,
    Operation,
    SlaTarget,
    TicketService,
    TicketSettings,
    TicketState,
)

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600
# Monday 2026-12-07 10:00 in Berlin.
T0 = datetime(2026, 12, 7, 10, tzinfo=BERLIN)
SETTINGS = TicketSettings(
    types={"complaint": "Complaint", "inquiry": "Inquiry"},
    categories={"billing": "Billing", "network": "Network"},
    departments={"billing": frozenset({"carol"}), "support": frozenset({"bob"})},
    calendar=BusinessCalendar(
        BERLIN,
        [OpenHours(frozenset(range(5)), 9 * H, 17 * H)],
        [ClosedDays(date(2000, 12, 25), date(2000, 12, 26), yearly=True)],
    ),
    sla={"complaint": {"normal": SlaTarget(4 * H, 16 * H), "urgent": SlaTarget(H, 8 * H)}},
    warn_before=H,
)
SUE = Actor("sue", "supervisor")
ALICE = Actor("alice", "agent")
BOB = Actor("bob", "agent")
CAROL = Actor("carol", "agent")
DAVE = Actor("dave", "agent")
QA = Actor("quinn", "qa")
ADMIN = Actor("admin", "admin")


async def _open(url: str) -> Store:
    store = await Store.open(url, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for name, role in (
        ("alice", "agent"),
        ("bob", "agent"),
        ("carol", "agent"),
        ("dave", "agent"),
        ("quinn", "qa"),
        ("sue", "supervisor"),
    ):
        await store.add_user(name, role, "password123")
    return store


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[Store]:
    s = await _open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def svc(store: Store) -> TicketService:
    return TicketService(store, SETTINGS)


# A TicketService move that takes no arguments beyond (actor, ticket id, now).
Step = Callable[[Actor, int, datetime], Awaitable[TicketData]]


async def _in_state(svc: TicketService, state: TicketState) -> int:
    """A ticket (assigned to alice, complaint/normal) brought to ``state`` by sue."""
    if state == TicketState.NEW:
        t = await svc.create(SUE, type="complaint", title="No dial tone", now=T0)
        assert t.id is not None
        return t.id
    t = await svc.create(SUE, type="complaint", title="No dial tone", now=T0, assignee="alice")
    assert t.id is not None
    paths: dict[TicketState, list[Step]] = {
        TicketState.ASSIGNED: [],
        TicketState.IN_PROGRESS: [svc.start],
        TicketState.FEEDBACK: [svc.start, svc.feedback],
        TicketState.REVISIT: [svc.start, lambda a, i, n: svc.revisit(a, i, n, "fixed")],
        TicketState.CLOSED: [svc.start, svc.close],
    }
    for step in paths[state]:
        await step(SUE, t.id, T0)
    return t.id


async def _do(svc: TicketService, actor: Actor, op: Operation, ticket_id: int) -> Any:
    now = T0 + timedelta(hours=1)
    match op:
        case Operation.ASSIGN:
            return await svc.assign(actor, ticket_id, now, user="bob")
        case Operation.TRANSFER:
            return await svc.transfer(actor, ticket_id, now, department="billing")
        case Operation.REVISIT:
            return await svc.revisit(actor, ticket_id, now, "customer satisfied")
        case Operation.URGE:
            return await svc.urge(actor, ticket_id, now, "please hurry")
        case Operation.CC:
            return await svc.carbon_copy(actor, ticket_id, now, add=["dave"])
        case Operation.COMMENT:
            return await svc.comment(actor, ticket_id, now, "called the customer")
        case _:
            return await getattr(svc, op.value)(actor, ticket_id, now)


@pytest.mark.parametrize(
    ("state", "op"), list(itertools.product(TicketState, Operation)), ids=lambda v: str(v)
)
async def test_every_transition_legal_and_illegal(
    svc: TicketService, state: TicketState, op: Operation
) -> None:
    ticket_id = await _in_state(svc, state)
    expected = TRANSITIONS.get((state, op))
    if expected is None:
        with pytest.raises(IllegalTransition) as err:
            await _do(svc, SUE, op, ticket_id)
        assert err.value.status == 409
        assert f"cannot {op.value} a ticket that is {state.value}" in err.value.message
        assert (await svc.get(SUE, ticket_id)).state == state
        return
    after = await _do(svc, SUE, op, ticket_id)
    assert after.state == expected
    last = (await svc.history(SUE, ticket_id))[-1]
    assert (last.user, last.action, last.from_state, last.to_state) == (
        "sue",
        op.value,
        state.value,
        expected.value,
    )


def test_the_table_is_the_documented_lifecycle() -> None:
    assert OPERATIONS_FROM[Operation.REOPEN] == (TicketState.CLOSED,)
    assert TicketState.CLOSED not in OPERATIONS_FROM[Operation.COMMENT]
    assert OPERATIONS_FROM[Operation.START] == (TicketState.ASSIGNED,)
    # Every state can be left, and closed only by reopening.
    for state in TicketState:
        assert any(TRANSITIONS.get((state, op), state) != state for op in Operation)


async def test_create_numbers_deadlines_and_links(store: Store, svc: TicketService) -> None:
    customer = await store.create_customer(
        CustomerData(name="Anna", phone="+49 30 1234567", created_at=T0)
    )
    start = T0 - timedelta(minutes=5)
    await store.add_call_record(
        CallRecordData(
            "c1", "+49 30 1234567", "100", start, T0, "normal_clearing",
            Disposition.ANSWERED, HangupSide.CALLER, answer=start, record_id="rec-1",
            direction="inbound",
        )
    )  # fmt: skip
    await store.add_recording(
        RecordingData(
            recording_id="r" * 32, call_id="rec-1", linked_id=None, started=start, ended=T0,
            path="x.wav", format="wav", rate=8000, channels=1,
            state=RecordingState.COMPLETE, caller="+49 30 1234567", callee="100",
            reason="queue", duration=300.0, size=1,
        )
    )  # fmt: skip
    t = await svc.create(
        ALICE, type="complaint", title=" Bill too high ", now=T0, record_id="rec-1",
        category="billing", cc=["dave"],
    )  # fmt: skip
    assert t.number == f"T-{t.id:06d}" and t.title == "Bill too high"
    assert (t.customer_id, t.recording_id, t.cc) == (customer.id, "r" * 32, ("dave",))
    assert t.state == "new" and t.created_by == "alice"
    assert t.first_response_due == datetime(2026, 12, 7, 14, tzinfo=BERLIN)
    # 16 business hours from Monday 10:00: Wednesday 10:00.
    assert t.resolution_due == datetime(2026, 12, 9, 10, tzinfo=BERLIN)
    assert (await svc.resolve(ALICE, t.number or "")).id == t.id
    nodeadline = await svc.create(ALICE, type="inquiry", title="Hours?", now=T0, assignee="bob")
    assert nodeadline.state == "assigned" and nodeadline.resolution_due is None
    for kw, match in (
        ({"type": "nope"}, "no ticket type"),
        ({"category": "nope"}, "no ticket category"),
        ({"priority": "asap"}, "priority must be"),
        ({"title": "  "}, "title"),
        ({"record_id": "missing"}, "no call record"),
        ({"customer_id": 999}, "no customer 999"),
        ({"assignee": "zed"}, "no user 'zed'"),
        ({"department": "sales"}, "no department 'sales'"),
    ):
        args: dict[str, Any] = {"type": "complaint", "title": "x", "now": T0, **kw}
        with pytest.raises(CrmError, match=match) as err:
            await svc.create(ALICE, **args)
        assert err.value.status == 400


async def test_sla_on_a_fake_clock_with_a_feedback_pause(svc: TicketService) -> None:
    # Friday 2026-12-04 18:00: first response due Monday 13:00, resolution Tuesday 17:00.
    friday = datetime(2026, 12, 4, 18, tzinfo=BERLIN)
    t = await svc.create(SUE, type="complaint", title="Line dead", now=friday, assignee="alice")
    assert t.id is not None
    tid = t.id
    assert t.first_response_due == datetime(2026, 12, 7, 13, tzinfo=BERLIN)
    assert t.resolution_due == datetime(2026, 12, 8, 17, tzinfo=BERLIN)
    monday = datetime(2026, 12, 7, 9, 30, tzinfo=BERLIN)
    t = await svc.start(ALICE, tid, monday)
    assert t.first_response_at == monday
    # Waiting on the customer from Monday 11:00 to Tuesday 10:00: 7 business hours.
    t = await svc.feedback(ALICE, tid, datetime(2026, 12, 7, 11, tzinfo=BERLIN), "need logs")
    assert t.state == "feedback" and t.paused_since is not None
    t = await svc.resume(ALICE, tid, datetime(2026, 12, 8, 10, tzinfo=BERLIN))
    assert t.paused_since is None and t.paused_seconds == 7 * H
    # Tuesday 17:00 + 7 business hours: Wednesday 16:00.
    assert t.resolution_due == datetime(2026, 12, 9, 16, tzinfo=BERLIN)
    done = datetime(2026, 12, 9, 15, tzinfo=BERLIN)
    t = await svc.revisit(ALICE, tid, done, "works again")
    assert t.resolved_at == done and t.revisit_outcome == "works again"
    t = await svc.close(ALICE, tid, done + timedelta(hours=1))
    assert t.closed_at is not None and t.resolved_at == done
    t = await svc.reopen(ALICE, tid, done + timedelta(days=1), "broken again")
    assert t.state == "in_progress" and t.resolved_at is None and t.closed_at is None


async def test_escalation_warns_once_before_and_at_each_breach(svc: TicketService) -> None:
    t = await svc.create(SUE, type="complaint", title="Slow", now=T0, assignee="alice")
    assert t.id is not None
    assert await svc.escalate(T0 + timedelta(hours=2)) == []
    # 13:00: an hour before the first response is due (14:00).
    first = await svc.escalate(datetime(2026, 12, 7, 13, tzinfo=BERLIN))
    assert [(e.kind, e.deadline, e.recipients) for e in first] == [
        ("sla_warning", "first_response", ("alice",))
    ]
    assert await svc.escalate(datetime(2026, 12, 7, 13, 30, tzinfo=BERLIN)) == []
    # Thursday: first response breached; resolution (Wednesday 10:00) warned and breached.
    late = await svc.escalate(datetime(2026, 12, 10, 12, tzinfo=BERLIN))
    assert sorted((e.deadline, e.kind) for e in late) == [
        ("first_response", "sla_breach"),
        ("resolution", "sla_breach"),
        ("resolution", "sla_warning"),
    ]
    assert await svc.escalate(datetime(2026, 12, 11, 12, tzinfo=BERLIN)) == []
    notes = [n for n in await svc.notifications(SUE, t.id) if n.kind.startswith("sla_")]
    assert len(notes) == 4 and {n.once_key for n in notes} == {
        "first_response.sla_warning",
        "first_response.sla_breach",
        "resolution.sla_warning",
        "resolution.sla_breach",
    }
    assert [e.action for e in await svc.history(SUE, t.id)].count("sla_breach") == 2


async def test_escalation_skips_answered_and_paused_tickets(svc: TicketService) -> None:
    t = await svc.create(SUE, type="complaint", title="Slow", now=T0, assignee="alice")
    assert t.id is not None
    await svc.start(ALICE, t.id, T0)
    await svc.feedback(ALICE, t.id, T0)
    assert await svc.escalate(datetime(2026, 12, 20, tzinfo=BERLIN)) == []


async def test_urge_raises_urgency_and_notifies(svc: TicketService) -> None:
    t = await svc.create(ALICE, type="inquiry", title="Where?", now=T0, department="billing")
    assert t.id is not None and t.state == "assigned"
    tid = t.id
    t = await svc.urge(ALICE, tid, T0, "customer called again")
    t = await svc.urge(ALICE, tid, T0)
    assert t.urgency == 2
    # (Creating it for the department told carol first.)
    created, *notes = await svc.notifications(ALICE, tid)
    assert (created.kind, created.recipients) == ("assigned", ("carol",))
    assert [(n.kind, n.recipients) for n in notes] == [("urged", ("carol",))] * 2
    assert "customer called again" in notes[0].message


async def test_permissions_per_role(svc: TicketService) -> None:
    t = await svc.create(ALICE, type="inquiry", title="Fax", now=T0, department="billing")
    assert t.id is not None
    tid = t.id
    # Who sees it: the creator, the department, supervisors and admins; not bob or qa.
    for actor in (ALICE, CAROL, SUE, ADMIN):
        assert (await svc.get(actor, tid)).id == tid
    for actor in (BOB, DAVE, QA):
        with pytest.raises(CrmError) as err:
            await svc.get(actor, tid)
        assert err.value.status == 404
        with pytest.raises(CrmError) as err:
            await svc.comment(actor, tid, T0, "hi")
        assert err.value.status == 404
    # The creator may comment and urge, not move it.
    await svc.comment(ALICE, tid, T0, "more info")
    for op in (Operation.START, Operation.ASSIGN, Operation.CC, Operation.TRANSFER):
        with pytest.raises(CrmError) as err:
            await _do(svc, ALICE, op, tid)
        assert err.value.status == 403
    # The department member moves it; copying dave lets dave see and comment only.
    await svc.carbon_copy(CAROL, tid, T0, add=["dave"])
    assert (await svc.get(DAVE, tid)).cc == ("dave",)
    await svc.comment(DAVE, tid, T0, "I know this customer")
    with pytest.raises(CrmError) as err:
        await svc.start(DAVE, tid, T0)
    assert err.value.status == 403
    await svc.start(CAROL, tid, T0)
    await svc.close(CAROL, tid, T0)
    # Nobody comments on a closed ticket.
    with pytest.raises(IllegalTransition):
        await svc.comment(DAVE, tid, T0, "one more thing")
    # Once assigned to bob, bob may see and move it; search is limited the same way.
    await svc.reopen(SUE, tid, T0)
    await svc.transfer(SUE, tid, T0, user="bob", department="support")
    await svc.start(BOB, tid, T0)
    assert [x.id for x in (await svc.search(BOB, TicketQuery()))[0]] == [tid]
    assert (await svc.search(QA, TicketQuery()))[1] == 0
    assert (await svc.search(SUE, TicketQuery(open=True)))[1] == 1
    # Carol left with the department change; dave is still copied.
    with pytest.raises(CrmError):
        await svc.get(CAROL, tid)
    assert (await svc.search(DAVE, TicketQuery()))[1] == 1


async def test_stale_changes_are_refused(svc: TicketService) -> None:
    t = await svc.create(SUE, type="inquiry", title="x", now=T0, assignee="alice")
    await svc.start(ALICE, t.id or 0, T0)
    with pytest.raises(CrmError, match="changed meanwhile") as err:
        await svc.tickets.change(t, {"state": "closed"}, [])
    assert err.value.status == 409


async def test_store_on_sqlite_and_postgresql(store_url: str) -> None:
    store = await _open(store_url)
    try:
        async with store.engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(
                        c, opts={"compare_type": True, "include_name": modelled}
                    ),
                    Base.metadata,
                )
            )
        assert diffs == []
        svc = TicketService(store, SETTINGS)
        t = await svc.create(SUE, type="complaint", title="PG", now=T0, cc=["dave", "bob"])
        assert t.id is not None and t.cc == ("bob", "dave")
        tid = t.id
        t = await svc.assign(SUE, tid, T0, user="alice")
        t = await svc.carbon_copy(SUE, tid, T0, add=["carol"], remove=["bob"])
        assert t.cc == ("carol", "dave") and t.version == 2
        await svc.escalate(datetime(2026, 12, 7, 13, tzinfo=BERLIN))
        assert await svc.escalate(datetime(2026, 12, 7, 13, tzinfo=BERLIN)) == []
        rows, total = await svc.search(CAROL, TicketQuery(state="assigned"))
        assert total == 1 and rows[0].first_response_due == datetime(2026, 12, 7, 14, tzinfo=BERLIN)
        events = await svc.history(SUE, tid)
        assert [e.action for e in events] == ["create", "assign", "cc", "sla_warning"]
        assert events[2].detail == {"add": ["carol"], "remove": ["bob"]}
    finally:
        await store.close()


async def test_first_response_is_a_handlers_move_or_comment(svc: TicketService) -> None:
    t = await svc.create(ALICE, type="complaint", title="Echo", now=T0, department="billing")
    assert t.id is not None
    tid = t.id
    # The creator's own comment is no response; the department's is.
    t = await svc.comment(ALICE, tid, T0 + timedelta(minutes=5), "it echoes")
    assert t.first_response_at is None
    answered = T0 + timedelta(minutes=20)
    t = await svc.comment(CAROL, tid, answered, "looking into it")
    assert t.first_response_at == answered
    t = await svc.start(CAROL, tid, answered + timedelta(hours=1))
    assert t.first_response_at == answered
    # A department-only transfer clears the assignee; both are kept in the trail.
    t = await svc.transfer(SUE, tid, T0, department="support", note="network side")
    assert (t.state, t.assignee, t.department) == ("assigned", None, "support")
    last = (await svc.history(SUE, tid))[-1]
    assert last.detail == {"department": "support", "assignee": None}
    assert last.note == "network side"

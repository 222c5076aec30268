"""Notifications (crm/notifications.py, web/api_notifications.py) on SQLite and PostgreSQL:
ticket assignment, transfer, carbon copy, urge and SLA breach, appointments and follow-ups
coming due each become one row per user, once; the delivery round pushes them on the event
stream to their user only and marks them delivered; a user who was offline still finds
them listed unread first and marks them read; nobody reads another user's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from config import HttpConfig
from crm import Actor, AppointmentData, CustomerData, FollowupData, Store
from crm.business_hours import BusinessCalendar
from crm.notifications import NotificationStore
from crm.tickets import SlaTarget, TicketService, TicketSettings
from web.api_notifications import deliver
from web.app import create_app
from web.auth import Authenticator, Principal
from web.hub import EventHub
from web.services import Services

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)
H = 3600.0
SETTINGS = TicketSettings(
    types={"complaint": "Complaint"},
    departments={"support": frozenset({"carol", "dave"})},
    calendar=BusinessCalendar("UTC"),
    sla={"complaint": {"normal": SlaTarget(H, 8 * H)}},
    warn_before=600.0,
)
SUE = Actor("sue", "supervisor")
ALICE = Actor("alice", "agent")
ADMIN = "local-admin-token"


async def _open(url: str) -> Store:
    store = await Store.open(url, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for name, role in (("alice", "agent"), ("bob", "agent"), ("carol", "agent"), ("dave", "agent")):
        await store.add_user(name, role, "password123")
    await store.add_user("sue", "supervisor", "password123")
    return store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await _open(store_url)
    try:
        yield s
    finally:
        await s.close()


def _principal(name: str, role: str = "agent") -> Principal:
    return Principal(name, role, None, "token")


async def _kinds(notes: NotificationStore, user: str) -> list[str]:
    rows, _, _ = await notes.for_user(user)
    return sorted(n.kind for n in rows)


async def test_sources_become_one_row_per_user_once(store: Store) -> None:
    svc = TicketService(store, SETTINGS)
    notes = NotificationStore(store.engine)
    t = await svc.create(SUE, type="complaint", title="No dial tone", now=T0)
    assert t.id is not None
    await svc.assign(SUE, t.id, T0, user="alice")
    await svc.carbon_copy(SUE, t.id, T0, add=["bob"])
    await svc.urge(ALICE, t.id, T0, "customer called again")  # alice urges herself
    await svc.transfer(ALICE, t.id, T0, department="support")
    await svc.escalate(T0 + timedelta(hours=2))  # first response breached
    customer = await store.add_customer(CustomerData(name="Anna", phone="+4930123", owner="bob"))
    await store.add_appointment(
        AppointmentData(customer, T0 + timedelta(hours=1), T0, "bob", "demo")
    )
    await store.add_appointment(  # not due yet
        AppointmentData(customer, T0 + timedelta(days=2), T0 + timedelta(days=1), "bob")
    )
    await store.add_followup(FollowupData(customer, T0, "bob", "call back", T0))

    made = await notes.collect(T0 + timedelta(hours=2))
    assert await notes.collect(T0 + timedelta(hours=2)) == 0  # each source once
    assert await _kinds(notes, "alice") == ["assigned", "urged"]
    assert await _kinds(notes, "bob") == ["appointment", "cc", "followup"]
    # The department is told of the transfer and of the breach (nobody is assigned).
    assert await _kinds(notes, "carol") == ["sla_breach", "sla_warning", "transferred"]
    assert await _kinds(notes, "dave") == ["sla_breach", "sla_warning", "transferred"]
    assert await _kinds(notes, "sue") == []
    assert made == 2 + 3 + 3 + 3
    rows, _, _ = await notes.for_user("bob")
    appointment = next(n for n in rows if n.kind == "appointment")
    assert appointment.customer_id == customer and "Anna" in appointment.message
    assert all(n.ticket_id == t.id for n in rows if n.kind == "cc")


async def test_delivery_goes_to_the_user_only_and_stays_listed(store: Store) -> None:
    svc = TicketService(store, SETTINGS)
    notes = NotificationStore(store.engine)
    hub = EventHub(lambda agent: (frozenset(), frozenset()))
    alice = hub.connect(_principal("alice"))
    boss = hub.connect(_principal("sue", "supervisor"))
    t = await svc.create(SUE, type="complaint", title="Echo", now=T0)
    assert t.id is not None
    await svc.carbon_copy(SUE, t.id, T0, add=["bob"])  # bob is offline

    assert await deliver(notes, hub, T0) == 1
    assert alice.queue.qsize() == 0 and boss.queue.qsize() == 0  # none of theirs
    await svc.assign(SUE, t.id, T0, user="alice")  # dispatched: alice is told
    assert await deliver(notes, hub, T0) == 1
    text = alice.queue.get_nowait()
    assert text is not None
    pushed = json.loads(text)
    assert pushed["type"] == "notification"
    assert pushed["notification"]["kind"] == "assigned"
    assert pushed["notification"]["ticket_id"] == t.id
    assert boss.queue.qsize() == 0  # not even a supervisor sees another user's
    assert await deliver(notes, hub, T0) == 0  # delivered once

    # Bob comes back: his cc is listed, unread, and he marks it read.
    rows, total, unread = await notes.for_user("bob")
    assert total == 1 and unread == 1 and rows[0].kind == "cc" and rows[0].delivered_at
    assert rows[0].id is not None
    assert not await notes.mark_read("alice", rows[0].id, T0)  # not hers
    assert await notes.mark_read("bob", rows[0].id, T0)
    rows, total, unread = await notes.for_user("bob")
    assert unread == 0 and rows[0].read_at is not None


async def test_creating_an_assigned_ticket_tells_the_handler_and_the_copied(
    store: Store,
) -> None:
    svc = TicketService(store, SETTINGS)
    notes = NotificationStore(store.engine)
    t = await svc.create(
        SUE, type="complaint", title="Echo", now=T0, department="support", cc=["bob", "sue"]
    )
    await svc.create(ALICE, type="complaint", title="Mine", now=T0, assignee="alice")
    await notes.collect(T0)
    for user, kind in (("carol", "assigned"), ("dave", "assigned"), ("bob", "cc")):
        rows, total, _ = await notes.for_user(user)
        assert total == 1 and rows[0].kind == kind, user
        assert rows[0].message.startswith("sue ") and f"{t.number}:" in rows[0].message
    assert await _kinds(notes, "sue") == [] and await _kinds(notes, "alice") == []


async def test_unread_first_then_newest(store: Store) -> None:
    svc = TicketService(store, SETTINGS)
    notes = NotificationStore(store.engine)
    ids = []
    for title in ("one", "two", "three"):
        t = await svc.create(SUE, type="complaint", title=title, now=T0)
        assert t.id is not None
        await svc.assign(SUE, t.id, T0, user="alice")
        ids.append(t.id)
    await notes.collect(T0)
    rows, _, _ = await notes.for_user("alice")
    assert [n.message.rsplit(": ", 1)[1] for n in rows] == ["three", "two", "one"]
    oldest_read = rows[0].id
    assert oldest_read is not None and await notes.mark_read("alice", oldest_read, T0)
    rows, _, unread = await notes.for_user("alice")
    assert [n.message.rsplit(": ", 1)[1] for n in rows] == ["two", "one", "three"]
    assert unread == 2
    only, total, _ = await notes.for_user("alice", unread_only=True)
    assert total == 2 and len(only) == 2


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(), frozenset()

    def ticket_settings(self) -> TicketSettings:
        return SETTINGS


async def test_the_api_lists_and_marks_the_callers_own(tmp_path: Path) -> None:
    store = await _open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    tokens = {name: (await store.create_token(name))[1] for name in ("alice", "bob", "sue")}
    services = Services(
        store=store,
        control=cast(Any, None),
        acd=cast(Any, None),
        dialer=cast(Any, None),
        ops=cast(Any, FakeOps()),
        hub=EventHub(FakeOps().agent_scope),
        auth=Authenticator(store, ADMIN, b"k" * 32, 60),
        http=HttpConfig(),
    )
    svc = TicketService(store, SETTINGS)
    t = await svc.create(SUE, type="complaint", title="Echo", now=T0)
    assert t.id is not None
    await svc.assign(SUE, t.id, T0, user="alice")
    await NotificationStore(store.engine).collect(T0)
    transport = httpx.ASGITransport(app=create_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            def auth(user: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {tokens[user]}"}

            mine = (await client.get("/api/notifications", headers=auth("alice"))).json()
            assert mine["total"] == 1 and mine["unread"] == 1
            (item,) = mine["items"]
            assert item["kind"] == "assigned" and item["read"] is False
            for other in ("bob", "sue"):
                theirs = (await client.get("/api/notifications", headers=auth(other))).json()
                assert theirs["total"] == 0
                denied = await client.post(
                    f"/api/notifications/{item['id']}/read", headers=auth(other)
                )
                assert denied.status_code == 404
            done = await client.post(f"/api/notifications/{item['id']}/read", headers=auth("alice"))
            assert done.status_code == 200, done.text
            after = (
                await client.get("/api/notifications", params={"unread": 1}, headers=auth("alice"))
            ).json()
            assert after["total"] == 0 and after["unread"] == 0
    finally:
        await store.close()

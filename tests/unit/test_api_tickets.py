"""The ticket API (web/api_tickets.py) on a real SQLite store through httpx's ASGI
transport: create (from a call), list by role, show with the audit trail, the lifecycle
operations, illegal transitions as 409, permission denials as 403/404, and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from config import HttpConfig
from crm import CallRecordData, CustomerData, Disposition, HangupSide, Store
from crm.business_hours import BusinessCalendar
from crm.tickets import SlaTarget, TicketSettings
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

ADMIN = "local-admin-token"
SETTINGS = TicketSettings(
    types={"complaint": "Complaint"},
    categories={"billing": "Billing"},
    departments={"support": frozenset({"carol"})},
    calendar=BusinessCalendar("UTC"),  # open all week: deadlines are plain hours
    sla={"complaint": {"normal": SlaTarget(4 * 3600, 24 * 3600)}},
)


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(), frozenset()

    def ticket_settings(self) -> TicketSettings:
        return SETTINGS


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def get(self, path: str, user: str = "admin", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(user))

    async def post(self, path: str, body: Any = None, user: str = "admin") -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(user))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    tokens = {"admin": ADMIN}
    for name, role in (("alice", "agent"), ("bob", "agent"), ("carol", "agent")):
        await store.add_user(name, role, "password123")
        tokens[name] = (await store.create_token(name))[1]
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
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, store, tokens)
    await store.close()


async def test_openapi_lists_the_routes(api: Api) -> None:
    paths = set((await api.client.get("/api/openapi.json")).json()["paths"])
    assert {
        "/api/tickets",
        "/api/tickets/codes",
        "/api/tickets/{ref}",
        "/api/tickets/{ref}/{action}",
    } <= paths


async def test_codes(api: Api) -> None:
    got = (await api.get("/api/tickets/codes", "alice")).json()
    assert got["types"] == {"complaint": "Complaint"} and got["departments"] == ["support"]
    assert got["priorities"] == ["low", "normal", "high", "urgent"]


async def test_a_ticket_from_a_call_through_its_lifecycle(api: Api) -> None:
    now = datetime.now(UTC)
    anna = await api.store.create_customer(
        CustomerData(name="Anna", phone="+49 30 1234567", created_at=now)
    )
    await api.store.add_call_record(
        CallRecordData(
            "c1", "+49 30 1234567", "100", now - timedelta(minutes=3), now,
            "normal_clearing", Disposition.ANSWERED, HangupSide.CALLER, record_id="rec-9",
        )
    )  # fmt: skip
    r = await api.post(
        "/api/tickets",
        {"type": "complaint", "title": "Bill", "record_id": "rec-9", "department": "support"},
        "alice",
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["customer_id"] == anna.id and t["state"] == "assigned"
    assert t["number"] == "T-000001" and t["resolution_due"] is not None
    # carol (support) works it; by number or by id.
    for action, body, state in (
        ("start", None, "in_progress"),
        ("feedback", {"note": "waiting for the invoice"}, "feedback"),
        ("resume", None, "in_progress"),
        ("revisit", {"outcome": "refund accepted"}, "revisit"),
        ("close", {"note": "done"}, "closed"),
    ):
        r = await api.post(f"/api/tickets/T-000001/{action}", body, "carol")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == state
    shown = (await api.get("/api/tickets/1", "alice")).json()
    assert shown["revisit_outcome"] == "refund accepted" and shown["can_handle"] is False
    assert [e["action"] for e in shown["events"]] == [
        "create", "start", "feedback", "resume", "revisit", "close",
    ]  # fmt: skip
    assert shown["events"][2]["note"] == "waiting for the invoice"
    # Closed: commenting is an illegal transition (409), reopening is not.
    r = await api.post("/api/tickets/1/comment", {"note": "hello?"}, "alice")
    assert r.status_code == 409 and "cannot comment a ticket that is closed" in r.json()["error"]
    r = await api.post("/api/tickets/1/reopen", {"note": "again"}, "admin")
    assert r.status_code == 200 and r.json()["state"] == "in_progress"
    audit, _ = await api.store.list_audit(limit=20)
    assert {"ticket.create", "ticket.close", "ticket.reopen"} <= {a.action for a in audit}


async def test_roles_and_refusals(api: Api) -> None:
    r = await api.post("/api/tickets", {"type": "complaint", "title": "Noise"}, "alice")
    assert r.status_code == 201
    # bob neither created, handles nor is copied on it: 404 and not listed.
    assert (await api.get("/api/tickets/1", "bob")).status_code == 404
    assert (await api.get("/api/tickets", "bob")).json()["total"] == 0
    assert (await api.get("/api/tickets", "admin", open="true")).json()["total"] == 1
    # alice created it, but only a handler assigns: 403.
    r = await api.post("/api/tickets/1/assign", {"user": "bob"}, "alice")
    assert r.status_code == 403
    r = await api.post("/api/tickets/1/assign", {"user": "bob"}, "admin")
    assert r.status_code == 200 and r.json()["assignee"] == "bob"
    # An illegal move: 409; bad input: 400/422.
    assert (await api.post("/api/tickets/1/close", None, "bob")).status_code == 409
    assert (await api.post("/api/tickets/1/assign", {}, "bob")).status_code == 400
    assert (await api.post("/api/tickets/1/explode", None, "bob")).status_code == 422
    r = await api.post("/api/tickets", {"type": "complaint", "title": "x", "priority": "asap"})
    assert r.status_code == 422
    r = await api.post("/api/tickets", {"type": "nope", "title": "x"})
    assert r.status_code == 400 and "no ticket type" in r.json()["error"]
    # bob (the assignee now) copies carol: she may then comment and nothing else.
    r = await api.post("/api/tickets/1/cc", {"add": ["carol"]}, "bob")
    assert r.status_code == 200 and r.json()["cc"] == ["carol"]
    assert (await api.post("/api/tickets/1/comment", {"note": "fyi"}, "carol")).status_code == 200
    assert (await api.post("/api/tickets/1/start", None, "carol")).status_code == 403
    # Urging notifies the assignee.
    r = await api.post("/api/tickets/1/urge", {"note": "customer angry"}, "alice")
    assert r.status_code == 200 and r.json()["urgency"] == 1
    shown = (await api.get("/api/tickets/1", "alice")).json()
    # (The assignment and the copy told bob and carol too.)
    assert [(n["kind"], n["recipients"]) for n in shown["notifications"]][-3:] == [
        ("assigned", ["bob"]),
        ("cc", ["carol"]),
        ("urged", ["bob"]),
    ]
    listed = (await api.get("/api/tickets", "carol", state="assigned")).json()
    assert [t["number"] for t in listed["items"]] == ["T-000001"]


async def test_a_ticket_number_beyond_64_bits_is_a_client_error(api: Api) -> None:
    answer = await api.get("/api/tickets/99999999999999999999", "alice")
    assert answer.status_code in (400, 404), answer.text

"""web/api_panel.py: one-click supervision and the agent's wrap-up, through a fake ACD host
(what it was asked to do is recorded) and a real store (the wrap_ups rows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from acd import AgentSnapshot
from config import HttpConfig
from crm import CallRecordData, Disposition, HangupSide, Store
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

ADMIN = "local-admin-token"
PASSWORD = "password123"
EXTENSIONS = {"bob": "1002", "sam": "1009"}


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        ext = EXTENSIONS.get(agent)
        return frozenset({ext} if ext else ()), frozenset({"support"})


@dataclass
class FakeAcd:
    """The parts of :class:`acd.host.AcdHost` the routes use."""

    agents: list[AgentSnapshot]
    on_call: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=lambda: {"1009", "1010"})
    supervisors: set[str] = field(default_factory=lambda: {"1010", "1002", "5550100"})
    asked: list[tuple[Any, ...]] = field(default_factory=list)
    supervising: dict[tuple[str, str], str] = field(default_factory=dict)
    wrap_codes: list[str] = field(default_factory=list)
    last_calls: dict[str, str] = field(default_factory=dict)
    wrap_labels: dict[str, str] = field(default_factory=dict)

    def agent_snapshots(self) -> list[AgentSnapshot]:
        return self.agents

    def durable(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def supervise(self, agent: str, extension: str, mode: str) -> tuple[str, bool] | None:
        self.asked.append(("supervise", agent, extension, mode))
        if extension not in ("1002", "1009", "1010"):
            raise ValueError(f"{extension} is no extension")
        if agent not in self.on_call:
            raise LookupError(agent)
        if extension not in self.registered:
            return None
        ongoing = self.supervising.get((agent, extension))
        if ongoing is not None:
            return ongoing, True
        self.supervising[(agent, extension)] = f"call-of-{extension}"
        return f"sup-1-{agent}", False

    def last_call(self, agent: str) -> str | None:
        return self.last_calls.get(agent)

    def wrap_up_codes(self, agent: str) -> list[str]:
        return list(self.wrap_codes)

    def wrap_up_labels(self, agent: str) -> dict[str, str]:
        return dict(self.wrap_labels)

    def end_wrap_up(self, agent: str, code: str | None = None) -> bool:
        self.asked.append(("end_wrap_up", agent, code))
        if self.wrap_codes and code not in self.wrap_codes:
            return False
        self.set_state(agent, "AVAILABLE")
        return True

    def set_state(self, agent: str, state: str) -> None:
        self.agents = [replace(a, state=state) if a.id == agent else a for a in self.agents]


@dataclass
class Web:
    client: httpx.AsyncClient
    store: Store
    acd: FakeAcd
    csrf: str = ""

    async def login(self, name: str) -> None:
        r = await self.client.post("/api/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.csrf = r.json()["csrf_token"]

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    for name, role, agent in (
        ("bob", "agent", "bob"),
        ("sam", "supervisor", "sam"),  # a supervisor with a phone of their own (1009)
        ("sue", "supervisor", None),
        ("quinn", "qa", None),
    ):
        await store.add_user(name, role, PASSWORD, agent)
    acd = FakeAcd(
        agents=[
            AgentSnapshot("bob", "Bob", ("1002",), "ON_CALL", None, 1_700_000_000.0, ("support",)),
            AgentSnapshot("sam", "Sam", ("1009",), "LOGGED_OUT", None, 0.0, ()),
        ],
        on_call={"bob"},
    )
    services = Services(
        store=store,
        control=cast(Any, None),
        acd=cast(Any, acd),
        dialer=cast(Any, None),
        ops=cast(Any, FakeOps()),
        hub=EventHub(FakeOps().agent_scope),
        auth=Authenticator(store, ADMIN, b"k" * 32, 60),
        http=HttpConfig(),
    )
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Web(client, store, acd)
    await store.close()


# -- supervision ---------------------------------------------------------------------------


async def test_a_supervisor_whispers_from_the_phone_they_name(web: Web) -> None:
    await web.login("sue")
    r = await web.post("/api/agents/bob/supervise", {"mode": "whisper", "extension": "1010"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "agent": "bob",
        "mode": "whisper",
        "extension": "1010",
        "originate_id": "sup-1-bob",
    }
    assert web.acd.asked == [("supervise", "bob", "1010", "whisper")]
    # A second click from the same phone switches the ongoing supervision.
    r = await web.post("/api/agents/bob/supervise", {"mode": "barge", "extension": "1010"})
    assert r.json()["supervising_call_id"] == "call-of-1010"
    entries, _total = await web.store.list_audit(user="sue")  # newest first
    (entry, *_) = [e for e in entries if e.action == "agent.supervise"]
    assert entry.target == "bob" and entry.detail == {"mode": "barge", "extension": "1010"}


async def test_without_an_extension_the_supervisors_own_agents_phone_rings(web: Web) -> None:
    await web.login("sam")
    r = await web.post("/api/agents/bob/supervise", {"mode": "listen"})
    assert r.status_code == 200, r.text
    assert web.acd.asked == [("supervise", "bob", "1009", "listen")]
    await web.login("sue")  # no agent, no extension: say which phone
    r = await web.post("/api/agents/bob/supervise", {"mode": "listen"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("user", "agent", "body", "status"),
    [
        ("bob", "bob", {"mode": "listen", "extension": "1009"}, 403),  # agents may not
        ("quinn", "bob", {"mode": "listen", "extension": "1009"}, 403),  # nor qa
        ("sue", "ghost", {"mode": "listen", "extension": "1009"}, 404),  # no such agent
        ("sue", "sam", {"mode": "listen", "extension": "1010"}, 404),  # on no call
        ("sue", "bob", {"mode": "shout", "extension": "1009"}, 422),
        ("sue", "bob", {"mode": "listen", "extension": "5550100"}, 400),  # not an extension
        ("sue", "bob", {"mode": "listen", "extension": "1011"}, 403),  # not a supervisor phone
        ("sue", "bob", {"mode": "listen", "extension": "1002"}, 409),  # no registered phone
    ],
)
async def test_supervision_refusals(
    web: Web, user: str, agent: str, body: dict[str, Any], status: int
) -> None:
    await web.login(user)
    r = await web.post(f"/api/agents/{agent}/supervise", body)
    assert r.status_code == status, r.text


# -- wrap-up -----------------------------------------------------------------------------------


async def test_an_agent_ends_wrap_up_with_a_code_and_notes_that_are_kept(web: Web) -> None:
    await web.login("bob")
    r = await web.post("/api/agents/bob/wrap-up", {"code": "2"})
    assert r.status_code == 409  # on a call, not in wrap-up

    web.acd.set_state("bob", "WRAP_UP")
    web.acd.wrap_codes = ["1", "2"]
    web.acd.last_calls["bob"] = "c1"
    web.acd.wrap_labels = {"2": "Refund promised"}
    r = await web.client.get("/api/agents/bob/wrap-up")
    assert r.json() == {
        "agent": "bob",
        "in_wrap_up": True,
        "codes": ["1", "2"],
        "labels": {"2": "Refund promised"},
    }
    r = await web.post("/api/agents/bob/wrap-up", {"code": "7"})
    assert r.status_code == 409  # not one of the queue's codes: wrap-up goes on
    assert await web.store.list_wrap_ups() == []

    r = await web.post(
        "/api/agents/bob/wrap-up", {"code": "2", "notes": "wants a refund", "call_id": "c1"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "AVAILABLE"
    assert web.acd.asked[-1] == ("end_wrap_up", "bob", "2")
    (row,) = await web.store.list_wrap_ups("bob")
    assert (row.record_id, row.code, row.notes) == ("c1", "2", "wants a refund")
    r = await web.client.get("/api/wrap-ups")
    assert [(w["call_id"], w["code"]) for w in r.json()["items"]] == [("c1", "2")]


async def test_wrap_up_is_the_agents_own_or_a_supervisors(web: Web) -> None:
    web.acd.set_state("sam", "WRAP_UP")
    await web.login("bob")
    assert (await web.post("/api/agents/sam/wrap-up", {})).status_code == 403
    assert (await web.client.get("/api/agents/sam/wrap-up")).status_code == 403
    assert (await web.client.get("/api/wrap-ups?agent=sam")).status_code == 403
    await web.login("sue")
    r = await web.post("/api/agents/sam/wrap-up", {"notes": "ended for Sam"})
    assert r.status_code == 200, r.text
    (row,) = await web.store.list_wrap_ups("sam")
    assert (row.record_id, row.code) == (None, None)


async def call_record(store: Store, record_id: str, agent: str | None) -> None:
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    await store.add_call_record(
        CallRecordData(
            call_id=f"sip-{record_id}",
            caller="5550000",
            callee="600",
            start=start,
            end=start + timedelta(minutes=3),
            hangup_cause="normal_clearing",
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
            record_id=record_id,
            queue="support" if agent else None,
            agent=agent,
        )
    )


async def test_a_wrap_up_names_only_a_call_the_agent_handled(web: Web) -> None:
    web.acd.set_state("bob", "WRAP_UP")
    web.acd.set_state("sam", "WRAP_UP")
    web.acd.last_calls.update(bob="c-bob", sam="c-sam")
    await call_record(web.store, "r-bob", "bob")
    await call_record(web.store, "r-sam", "sam")
    await call_record(web.store, "r-none", None)
    await web.login("bob")
    for other in ("c-sam", "r-sam", "r-none", "no-such-call"):
        r = await web.post("/api/agents/bob/wrap-up", {"code": "1", "call_id": other})
        assert r.status_code == 422, (other, r.text)
        assert "not a call agent bob handled" in r.json()["error"]
    assert await web.store.list_wrap_ups() == []
    assert not [a for a in web.acd.asked if a[0] == "end_wrap_up"]  # wrap-up goes on
    # A supervisor wrapping up for an agent: the same check.
    await web.login("sue")
    r = await web.post("/api/agents/sam/wrap-up", {"call_id": "c-bob"})
    assert r.status_code == 422, r.text
    r = await web.post("/api/agents/sam/wrap-up", {"call_id": "r-sam"})  # its record says sam
    assert r.status_code == 200, r.text
    await web.login("bob")
    r = await web.post("/api/agents/bob/wrap-up", {"call_id": "c-bob"})  # the ACD saw it
    assert r.status_code == 200, r.text
    rows = await web.store.list_wrap_ups()
    assert sorted((w.agent, w.record_id) for w in rows) == [("bob", "c-bob"), ("sam", "r-sam")]

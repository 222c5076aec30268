"""web/api_calls.py: the agent panel's call controls and offer card through a fake seam and
a fake ACD host (what they were asked is recorded), a real store (users, audit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from acd import AgentSnapshot
from config import HttpConfig
from crm import Store
from pbx.control import CallInfo
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

ADMIN = "local-admin-token"
PASSWORD = "password123"
EXTENSIONS = {"bob": "1002", "carol": "1003"}


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        ext = EXTENSIONS.get(agent)
        return frozenset({ext} if ext else ()), frozenset({"support"})


@dataclass
class FakeQueue:
    name: str


@dataclass
class FakeAcd:
    agents: list[AgentSnapshot]
    ringing: dict[str, str] = field(default_factory=dict)  # agent -> call
    asked: list[tuple[Any, ...]] = field(default_factory=list)

    def agent_snapshots(self) -> list[AgentSnapshot]:
        return self.agents

    def queue_snapshots(self) -> list[FakeQueue]:
        return [FakeQueue("support")]

    def ringing_offer(self, agent: str) -> str | None:
        return self.ringing.get(agent)

    def reject_offer(self, agent: str) -> str | None:
        self.asked.append(("reject_offer", agent))
        return self.ringing.pop(agent, None)


@dataclass
class FakeControl:
    """The seam's panel commands: each answers True unless the call is in ``refuse``."""

    calls: dict[str, CallInfo]
    asked: list[tuple[Any, ...]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def info(self, call_id: str) -> CallInfo | None:
        return self.calls.get(call_id)

    def _ok(self, *what: Any) -> bool:
        self.asked.append(what)
        return what[1] not in self.refuse

    def hold(self, call_id: str, party: str) -> bool:
        return self._ok("hold", call_id, party)

    def resume(self, call_id: str, party: str) -> bool:
        return self._ok("resume", call_id, party)

    def mute(self, call_id: str, party: str, muted: bool = True) -> bool:
        return self._ok("mute", call_id, party, muted)

    def send_dtmf(self, call_id: str, party: str, digits: str) -> bool:
        return self._ok("send_dtmf", call_id, party, digits)

    def transfer(
        self, call_id: str, party: str, target: str, *, kind: str | None = None
    ) -> str | None:
        return "new-1" if self._ok("transfer", call_id, party, target, kind) else None

    def consult(self, call_id: str, party: str, target: str) -> bool:
        return self._ok("consult", call_id, party, target)

    def complete_consult(self, call_id: str, party: str) -> str | None:
        return "new-2" if self._ok("complete_consult", call_id, party) else None

    def cancel_consult(self, call_id: str, party: str) -> bool:
        return self._ok("cancel_consult", call_id, party)

    def conference(self, call_id: str, party: str, target: str) -> bool:
        return self._ok("conference", call_id, party, target)

    def party_state(self, call_id: str, party: str) -> dict[str, Any]:
        return {"on_hold": False, "muted": False, "third_party": None}


def call(call_id: str, caller: str, callee: str | None, state: str = "answered") -> CallInfo:
    return CallInfo(
        call_id, caller, callee or "", state, caller, f"{call_id}-a", callee, None, None, "", ()
    )


@dataclass
class Web:
    client: httpx.AsyncClient
    store: Store
    acd: FakeAcd
    control: FakeControl
    csrf: str = ""

    async def login(self, name: str) -> None:
        r = await self.client.post("/api/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.csrf = r.json()["csrf_token"]

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    for name, role, agent in (
        ("bob", "agent", "bob"),
        ("carol", "agent", "carol"),
        ("sue", "supervisor", None),
    ):
        await store.add_user(name, role, PASSWORD, agent)
    acd = FakeAcd(
        agents=[
            AgentSnapshot("bob", "Bob", ("1002",), "ON_CALL", None, 1.0, ("support",)),
            AgentSnapshot("carol", "Carol", ("1003",), "AVAILABLE", None, 1.0, ("support",)),
        ]
    )
    control = FakeControl(
        {
            "c1": call("c1", "5550100", "1002"),  # a customer talking to bob
            "c2": call("c2", "1002", "5550199"),  # bob's own outbound call
            "c3": call("c3", "5550100", None, state="ringing"),
        }
    )
    services = Services(
        store=store,
        control=cast(Any, control),
        acd=cast(Any, acd),
        dialer=cast(Any, None),
        ops=cast(Any, FakeOps()),
        hub=EventHub(FakeOps().agent_scope),
        auth=Authenticator(store, ADMIN, b"k" * 32, 60),
        http=HttpConfig(),
    )
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Web(client, store, acd, control)
    await store.close()


async def test_an_agent_holds_mutes_and_dials_on_their_own_call(web: Web) -> None:
    await web.login("bob")
    for action in ("hold", "resume", "mute", "unmute"):
        r = await web.post(f"/api/calls/c1/{action}")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "id": "c1",
            "party": "callee",
            "on_hold": False,
            "muted": False,
            "third_party": None,
        }
    r = await web.client.get("/api/calls/c1/controls")
    assert r.status_code == 200 and r.json()["party"] == "callee"
    r = await web.post("/api/calls/c2/dtmf", {"digits": "12#a"})
    assert r.status_code == 200 and r.json()["sent"] == 4
    assert web.control.asked == [
        ("hold", "c1", "callee"),
        ("resume", "c1", "callee"),
        ("mute", "c1", "callee", True),
        ("mute", "c1", "callee", False),
        ("send_dtmf", "c2", "caller", "12#A"),  # bob is the caller of his outbound call
    ]
    entries, _ = await web.store.list_audit(user="bob")
    dtmf = next(e for e in entries if e.action == "call.dtmf")
    assert dtmf.detail == {"digits": 4}  # never the digits themselves
    assert (await web.post("/api/calls/c2/dtmf", {"digits": "12x"})).status_code == 422


async def test_another_agents_call_is_refused_and_a_supervisor_may_act(web: Web) -> None:
    await web.login("carol")
    assert (await web.post("/api/calls/c1/hold")).status_code == 403
    assert (await web.post("/api/calls/nope/hold")).status_code == 404
    await web.login("sue")
    r = await web.post("/api/calls/c1/hold")
    assert r.status_code == 200 and r.json()["party"] == "callee"  # the agent's side
    r = await web.post("/api/calls/c3/hold")
    assert r.status_code == 409  # nobody answered yet
    web.control.refuse.add("c1")
    r = await web.post("/api/calls/c1/resume")
    assert r.status_code == 409 and "cannot be resumed" in r.json()["error"]


async def test_transfer_targets_an_agent_a_queue_or_a_number(web: Web) -> None:
    await web.login("bob")
    r = await web.post("/api/calls/c1/transfer", {"target": "carol"})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "c1", "party": "callee", "mode": "blind", "new_call_id": "new-1"}
    await web.post("/api/calls/c1/transfer", {"target": "support"})
    await web.post("/api/calls/c1/transfer", {"target": "+4930123"})
    assert [a[3:] for a in web.control.asked] == [
        ("1003", "extension"),
        ("support", "queue"),
        ("+4930123", None),
    ]
    r = await web.post("/api/calls/c1/transfer", {"target": "nobody"})
    assert r.status_code == 400
    r = await web.post("/api/calls/c1/transfer", {"target": "support", "mode": "consult"})
    assert r.status_code == 400
    entries, _ = await web.store.list_audit(user="bob")
    assert {"to": "carol", "mode": "blind"} in [e.detail for e in entries]


async def test_consult_then_complete_or_cancel_and_conference(web: Web) -> None:
    await web.login("bob")
    r = await web.post("/api/calls/c1/transfer", {"target": "1003", "mode": "consult"})
    assert r.status_code == 200 and r.json()["mode"] == "consult"
    r = await web.post("/api/calls/c1/transfer/complete")
    assert r.json() == {"id": "c1", "party": "callee", "new_call_id": "new-2"}
    assert (await web.post("/api/calls/c1/transfer/cancel")).status_code == 200
    assert (await web.post("/api/calls/c1/conference", {"target": "carol"})).status_code == 200
    assert web.control.asked == [
        ("consult", "c1", "callee", "1003"),
        ("complete_consult", "c1", "callee"),
        ("cancel_consult", "c1", "callee"),
        ("conference", "c1", "callee", "1003"),
    ]
    web.control.refuse.add("c1")
    r = await web.post("/api/calls/c1/transfer/complete")
    assert r.status_code == 409


async def test_offer_reject_and_accept(web: Web) -> None:
    await web.login("bob")
    r = await web.post("/api/agents/bob/offer/reject")
    assert r.status_code == 409  # nothing rings
    web.acd.ringing["bob"] = "c9"
    r = await web.post("/api/agents/bob/offer/accept")
    assert r.status_code == 409 and "answer on your phone" in r.json()["error"]
    r = await web.post("/api/agents/bob/offer/reject")
    assert r.status_code == 200
    assert r.json() == {"agent": "bob", "call_id": "c9", "rejected": True}
    assert web.acd.asked[-1] == ("reject_offer", "bob")
    assert (await web.post("/api/agents/carol/offer/reject")).status_code == 403
    assert (await web.post("/api/agents/ghost/offer/reject")).status_code == 403
    await web.login("sue")
    assert (await web.post("/api/agents/ghost/offer/reject")).status_code == 404


async def test_every_route_is_in_the_docs(web: Web) -> None:
    import re

    paths = (await web.client.get("/api/openapi.json")).json()["paths"]
    text = re.sub(r"\{\w+\}", "{}", (Path(__file__).parents[2] / "docs" / "api.md").read_text())
    for path, operations in paths.items():
        if "/offer/" in path or path.startswith("/api/calls/{call_id}/"):
            for method in operations:
                line = "`" + method.upper() + " " + re.sub(r"\{\w+\}", "{}", path) + "`"
                assert line in text, f"{line} is not in docs/api.md"

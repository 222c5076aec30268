"""The knowledge-base and quality-assessment API (web/api_kb.py) on a real SQLite store
through httpx's ASGI transport: categories and articles by role, search, history,
favourites, the hot list, images; scorecards, tasks and evaluations, and an agent seeing
only their own published evaluations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from config import HttpConfig
from crm import Store
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

ADMIN = "local-admin-token"


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return (frozenset(), frozenset())


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def get(self, path: str, user: str = "admin", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(user))

    async def post(self, path: str, body: Any = None, user: str = "admin") -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(user))

    async def patch(self, path: str, body: Any, user: str = "admin") -> httpx.Response:
        return await self.client.patch(path, json=body, headers=self.auth(user))

    async def delete(self, path: str, user: str = "admin") -> httpx.Response:
        return await self.client.delete(path, headers=self.auth(user))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    tokens = {"admin": ADMIN}
    for name, role, agent in (
        ("alice", "agent", "a1"),
        ("bob", "agent", "b1"),
        ("quinn", "qa", None),
        ("sue", "supervisor", None),
    ):
        await store.add_user(name, role, "password123", agent)
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
        yield Api(client, tokens)
    await store.close()


async def test_knowledge_base_routes(api: Api) -> None:
    general = (await api.post("/api/kb/categories", {"name": "General"}, "sue")).json()
    internal = await api.post(
        "/api/kb/categories", {"name": "Internal", "read_roles": ["supervisor"]}, "sue"
    )
    assert internal.status_code == 201, internal.text
    refused = await api.post("/api/kb/categories", {"name": "Mine"}, "alice")
    assert refused.status_code == 403 and "error" in refused.json()

    body = {"category_id": general["id"], "title": "Refund policy", "body": "Refunds *fast*."}
    assert (await api.post("/api/kb/articles", body, "alice")).status_code == 403
    made = await api.post("/api/kb/articles", {**body, "keywords": ["Billing"]}, "sue")
    assert made.status_code == 201, made.text
    art = made.json()
    assert art["keywords"] == ["billing"] and art["author"] == "sue"
    secret = await api.post(
        "/api/kb/articles",
        {"category_id": internal.json()["id"], "title": "Refund limits", "body": "x"},
        "sue",
    )
    chinese = await api.post(
        "/api/kb/articles", {"category_id": general["id"], "title": "退款流程", "body": "退款"}
    )
    assert chinese.status_code == 201

    hits = (await api.get("/api/kb/search", "alice", q="refund")).json()["items"]
    assert [h["id"] for h in hits] == [art["id"]]
    hits = (await api.get("/api/kb/search", "sue", q="refund")).json()["items"]
    assert [h["id"] for h in hits] == [art["id"], secret.json()["id"]]
    hits = (await api.get("/api/kb/search", "alice", q="退款")).json()["items"]
    assert [h["title"] for h in hits] == ["退款流程"]
    assert (await api.get(f"/api/kb/articles/{secret.json()['id']}", "alice")).status_code == 404

    # Reads count; the hot list and favourites.
    for _ in range(2):
        assert (await api.get(f"/api/kb/articles/{art['id']}", "alice")).status_code == 200
    preview = (await api.get(f"/api/kb/articles/{art['id']}", "sue", count="false")).json()
    assert preview["views"] == 2
    hot = (await api.get("/api/kb/hot", "alice", days=7)).json()["items"]
    assert [(h["id"], h["reads"]) for h in hot] == [(art["id"], 2)]
    assert (
        await api.client.put(f"/api/kb/articles/{art['id']}/favourite", headers=api.auth("alice"))
    ).status_code == 200
    favs = (await api.get("/api/kb/favourites", "alice")).json()["items"]
    assert [f["id"] for f in favs] == [art["id"]]
    assert (await api.delete(f"/api/kb/articles/{art['id']}/favourite", "alice")).status_code == 200
    assert (await api.delete(f"/api/kb/articles/{art['id']}/favourite", "alice")).status_code == 404

    # Edits keep every version.
    edited = await api.patch(f"/api/kb/articles/{art['id']}", {"body": "Refunds in 3 days."}, "sue")
    assert edited.json()["version"] == 2
    assert (
        await api.patch(f"/api/kb/articles/{art['id']}", {"body": "x"}, "alice")
    ).status_code == 403
    history = (await api.get(f"/api/kb/articles/{art['id']}/history", "alice")).json()["items"]
    assert [(v["version"], v["body"]) for v in history] == [
        (1, "Refunds *fast*."),
        (2, "Refunds in 3 days."),
    ]

    # Images: uploaded as the body, served with their type.
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    up = await api.client.post(
        f"/api/kb/articles/{art['id']}/images",
        content=png,
        params={"name": "chart.png"},
        headers={**api.auth("sue"), "Content-Type": "image/png"},
    )
    assert up.status_code == 201, up.text
    assert up.json()["markdown"] == f"![chart.png](/api/kb/images/{up.json()['id']})"
    got = await api.get(up.json()["url"], "alice")
    assert got.content == png and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    svg = await api.client.post(
        f"/api/kb/articles/{art['id']}/images",
        content=b"<svg/>",
        headers={**api.auth("sue"), "Content-Type": "image/svg+xml"},
    )
    assert svg.status_code == 415

    assert (await api.delete(f"/api/kb/articles/{art['id']}", "alice")).status_code == 403
    assert (await api.delete(f"/api/kb/articles/{art['id']}", "sue")).status_code == 200
    cats = (await api.get("/api/kb/categories", "alice")).json()["items"]
    assert [c["name"] for c in cats] == ["General"]
    iid = internal.json()["id"]
    opened = await api.patch(f"/api/kb/categories/{iid}", {"read_roles": None}, "sue")
    assert opened.status_code == 200 and opened.json()["read_roles"] is None
    cats = (await api.get("/api/kb/categories", "alice")).json()["items"]
    assert [c["name"] for c in cats] == ["General", "Internal"]
    assert (await api.patch(f"/api/kb/categories/{iid}", {"name": "x"}, "alice")).status_code == 403


CARD = {
    "name": "Inbound",
    "sections": [
        {
            "name": "Call",
            "items": [
                {"key": "greeting", "label": "Greeting", "max_points": 10},
                {"key": "polite", "label": "Polite", "max_points": 10, "auto_fail": True},
                {"key": "csat", "label": "Satisfied", "max_points": 20, "computed": "satisfaction"},
            ],
        }
    ],
}


async def test_quality_assessment_routes(api: Api) -> None:
    assert (await api.post("/api/qa/scorecards", CARD, "alice")).status_code == 403
    bad = await api.post(
        "/api/qa/scorecards",
        {
            "name": "Bad",
            "sections": [
                {"name": "x", "items": [{"key": "k", "max_points": 1, "computed": "mood"}]}
            ],
        },
        "quinn",
    )
    assert bad.status_code == 400
    card = await api.post("/api/qa/scorecards", CARD, "quinn")
    assert card.status_code == 201, card.text
    cid = card.json()["id"]
    task = await api.post(
        "/api/qa/tasks",
        {
            "name": "Week 49",
            "scorecard_id": cid,
            "evaluator": "quinn",
            "agents": ["a1", "b1"],
            "period_start": "2026-12-01T00:00:00Z",
            "period_end": "2026-12-08T00:00:00Z",
        },
        "sue",
    )
    assert task.status_code == 201, task.text
    tid = task.json()["id"]
    assert [t["id"] for t in (await api.get("/api/qa/tasks", "quinn")).json()["items"]] == [tid]
    assert (await api.get("/api/qa/tasks", "alice")).status_code == 403
    renamed = await api.patch(f"/api/qa/tasks/{tid}", {"name": "Week 49b"}, "quinn")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Week 49b"
    given = await api.patch(f"/api/qa/tasks/{tid}", {"evaluator": "sue"}, "quinn")
    assert given.status_code == 403

    made = await api.post(
        "/api/qa/evaluations",
        {"task_id": tid, "agent": "a1", "scores": {"greeting": 5}, "comment": "ok"},
        "quinn",
    )
    assert made.status_code == 201, made.text
    eid = made.json()["id"]
    assert made.json()["total"] == 50.0  # 5 of 10 scored points; no survey: csat unscored
    assert (await api.post(f"/api/qa/evaluations/{eid}/publish", None, "quinn")).status_code == 409
    assert (await api.get("/api/qa/evaluations", "alice")).json()["items"] == []
    patched = await api.patch(f"/api/qa/evaluations/{eid}", {"scores": {"polite": 10}}, "quinn")
    assert patched.json()["total"] == 75.0
    published = await api.post(f"/api/qa/evaluations/{eid}/publish", None, "quinn")
    assert published.status_code == 200 and published.json()["published"]
    # alice is agent a1: she sees it; bob (b1) does not.
    assert [e["id"] for e in (await api.get("/api/qa/evaluations", "alice")).json()["items"]] == [
        eid
    ]
    assert (await api.get(f"/api/qa/evaluations/{eid}", "alice")).json()["total"] == 75.0
    assert (await api.get(f"/api/qa/evaluations/{eid}", "bob")).status_code == 404
    assert (
        await api.patch(f"/api/qa/evaluations/{eid}", {"comment": "x"}, "alice")
    ).status_code == 403
    failed = await api.patch(f"/api/qa/evaluations/{eid}", {"failed": ["polite"]}, "sue")
    assert (failed.json()["total"], failed.json()["auto_failed"]) == (0.0, True)
    assert (await api.delete(f"/api/qa/evaluations/{eid}", "quinn")).status_code == 200
    assert (await api.delete(f"/api/qa/tasks/{tid}", "sue")).status_code == 200
    assert (await api.delete(f"/api/qa/scorecards/{cid}", "quinn")).status_code == 200

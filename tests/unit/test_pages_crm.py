"""The CRM pages (web/pages_crm.py) through httpx's ASGI transport with real sessions:
the login redirect, per-role denials (the same 404 as the API for what a user may not see),
the ticket buttons being exactly the legal operations of the state for that user, safe
markdown, ranked Chinese search, evaluations by role, Chinese words, the screen pop card."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

from acd import AgentSnapshot
from config import HttpConfig
from crm import Actor, CrmSettings, CustomerData, CustomField, Store
from crm.kb import KnowledgeBase
from crm.qa import QualityService, Scorecard, ScoreItem, Section
from crm.tickets import TicketService, TicketSettings
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.pages_crm import render_markdown, ticket_operations
from web.services import Services

ADMIN = "local-admin-token"
PASSWORD = "password123"
NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
TICKETS = TicketSettings(types={"general": "General"}, departments={"support": frozenset()})
SUE = Actor("sue", "supervisor")


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset({"1001"}), frozenset({"support"})

    def crm_settings(self) -> CrmSettings:
        return CrmSettings(
            custom_fields={"contract": CustomField("contract", "choice", ("basic", "gold"))}
        )

    def ticket_settings(self) -> TicketSettings:
        return TICKETS

    def service_level_thresholds(self) -> dict[str, float]:
        return {}


class FakeAcd:
    def __init__(self) -> None:
        self.pause_reasons: dict[str, str] = {}

    def agent_snapshots(self) -> list[AgentSnapshot]:
        return [AgentSnapshot("a1", "Alice", ("1001",), "AVAILABLE", None, 0.0, ("support",))]

    def durable(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Web:
    clients: dict[str, httpx.AsyncClient]
    store: Store

    async def get(self, user: str | None, path: str, **params: Any) -> httpx.Response:
        return await self.clients[user or ""].get(path, params=params)


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    users = (
        ("alice", "agent", "a1"),
        ("bob", "agent", "a2"),
        ("quinn", "qa", None),
        ("sue", "supervisor", None),
    )
    for name, role, agent in users:
        await store.add_user(name, role, PASSWORD, agent)
    services = Services(
        store=store,
        control=cast(Any, None),
        acd=cast(Any, FakeAcd()),
        dialer=cast(Any, None),
        ops=cast(Any, FakeOps()),
        hub=EventHub(FakeOps().agent_scope),
        auth=Authenticator(store, ADMIN, b"k" * 32, 60),
        http=HttpConfig(),
    )
    app = create_app(services)
    clients: dict[str, httpx.AsyncClient] = {}
    for name in ("", "alice", "bob", "quinn", "sue"):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        if name:
            r = await client.post("/api/login", json={"name": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
        clients[name] = client
    try:
        yield Web(clients, store)
    finally:
        for client in clients.values():
            await client.aclose()
        await store.close()


PATHS = ["/customers", "/customers/new", "/customers/1", "/tickets", "/tickets/new",
         "/tickets/1", "/kb", "/kb/1", "/qa", "/qa/1"]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
async def test_without_a_session_the_pages_go_to_the_login(web: Web, path: str) -> None:
    r = await web.get(None, path)
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_customers_by_role(web: Web) -> None:
    bobs = await web.store.add_customer(
        CustomerData(name="Bob's <b>client</b>", phone="+4930111", owner="bob", grade="A")
    )
    shared = await web.store.add_customer(
        CustomerData(name="Shared Co", phone="+4930222", owner="sue", shared=True)
    )
    pool = await web.store.add_customer(
        CustomerData(name="Pool Person", phone="+4930333", custom={"contract": "gold"})
    )
    listing = (await web.get("alice", "/customers")).text
    assert "Shared Co" in listing and "Pool Person" in listing and "client" not in listing
    assert (await web.get("alice", f"/customers/{bobs}")).status_code == 404
    assert (await web.get("alice", "/customers/99999999999999999999")).status_code == 404
    mine = await web.get("bob", f"/customers/{bobs}")
    assert mine.status_code == 200
    assert "Bob&#39;s &lt;b&gt;client&lt;/b&gt;" in mine.text  # escaped, never markup
    assert 'data-testid="cust-form"' in mine.text  # bob may edit his own
    assert mine.headers["content-security-policy"].startswith("default-src 'self'")
    # Agents edit shared customers; only the pool's may be claimed.
    shared_page = (await web.get("alice", f"/customers/{shared}")).text
    assert 'data-testid="cust-form"' in shared_page
    assert 'data-testid="cust-claim"' not in shared_page
    assert 'data-testid="cust-claim"' in (await web.get("alice", f"/customers/{pool}")).text
    # The search filters.
    found = (await web.get("sue", "/customers", number="+49 30 222")).text
    assert "Shared Co" in found and "Pool Person" not in found
    assert "Pool Person" in (await web.get("sue", "/customers", pool="1")).text
    assert "Shared Co" not in (await web.get("sue", "/customers", pool="1")).text
    gold = (await web.get("sue", "/customers", **{"field.contract": "gold"})).text
    assert "Pool Person" in gold and "Shared Co" not in gold
    # A prefilled new customer for an unknown caller.
    new = (await web.get("alice", "/customers/new", number="+44 20 7946 0958")).text
    assert 'value="+44 20 7946 0958"' in new


def _ops(html: str) -> list[str]:
    return re.findall(r'data-testid="op-([a-z_]+)"', html)


async def test_ticket_buttons_are_the_legal_operations_for_the_user(web: Web) -> None:
    svc = TicketService(web.store, TICKETS)
    t = await svc.create(SUE, type="general", title="No tone", now=NOW, assignee="alice")
    assert t.id is not None
    await svc.carbon_copy(SUE, t.id, NOW, add=["quinn"])
    handler = await web.get("alice", f"/tickets/{t.id}")
    assert handler.status_code == 200
    assert _ops(handler.text) == ["assign", "transfer", "start", "urge", "cc", "comment"]
    assert _ops((await web.get("quinn", f"/tickets/{t.number}")).text) == ["urge", "comment"]
    assert (await web.get("bob", f"/tickets/{t.id}")).status_code == 404
    assert (await web.get("bob", "/tickets/T-999999")).status_code == 404
    await svc.start(Actor("alice", "agent"), t.id, NOW)
    await svc.close(Actor("alice", "agent"), t.id, NOW)
    closed = (await web.get("alice", f"/tickets/{t.id}")).text
    assert _ops(closed) == ["reopen"]
    assert _ops((await web.get("quinn", f"/tickets/{t.id}")).text) == []
    # The audit trail lists every move.
    assert closed.count("<tr>") >= 5  # header, create, cc, start, close
    # The queue view by state, and "my tickets".
    queue = (await web.get("sue", "/tickets", view="queue", state="closed")).text
    assert t.number is not None and t.number in queue
    assert t.number not in (await web.get("alice", "/tickets")).text  # closed: not "mine"
    assert t.number not in (await web.get("bob", "/tickets", view="queue")).text


def test_the_operations_follow_the_transition_table() -> None:
    assert [op.value for op in ticket_operations("feedback", True)] == [
        "resume",
        "revisit",
        "urge",
        "cc",
        "comment",
    ]
    assert [op.value for op in ticket_operations("revisit", False)] == ["urge", "comment"]


def test_markdown_is_rendered_safely() -> None:
    html = str(
        render_markdown(
            "# Refunds\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) "
            '<img src=x onerror="alert(1)"> **bold**'
        )
    )
    assert "<h1>Refunds</h1>" in html and "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and 'href="javascript:' not in html


async def test_kb_search_in_chinese_and_permissions(web: Web) -> None:
    kb = KnowledgeBase(web.store)
    public = await kb.add_category(SUE, "General")
    secret = await kb.add_category(SUE, "Internal", read_roles=["supervisor"])
    zh = await kb.add_article(
        SUE, public.id, "退款流程", "客户申请**退款**时，请先核实订单。", now=NOW, keywords=["退款"]
    )
    await kb.add_article(SUE, public.id, "Refund policy", "Refunds take 5 days.", now=NOW)
    hidden = await kb.add_article(SUE, secret.id, "Salaries", "<b>secret</b>", now=NOW)
    found = (await web.get("alice", "/kb", q="退款", lang="zh")).text
    assert "退款流程" in found and "Refund policy" not in found and "知识库" in found
    english = (await web.get("alice", "/kb", q="refund")).text
    assert "Refund policy" in english and "Salaries" not in english
    article = await web.get("alice", f"/kb/{zh.id}")
    assert article.status_code == 200 and "<strong>退款</strong>" in article.text
    assert 'data-testid="kb-favourite"' in article.text
    assert (await web.get("alice", f"/kb/{hidden.id}")).status_code == 404
    boss = (await web.get("sue", f"/kb/{hidden.id}")).text
    assert "&lt;b&gt;secret&lt;/b&gt;" in boss and "<b>secret</b>" not in boss


async def test_evaluations_by_role(web: Web) -> None:
    qa = QualityService(web.store)
    quinn = Actor("quinn", "qa")
    card = await qa.add_scorecard(
        quinn,
        Scorecard("Calls", (Section("Opening", (ScoreItem("greeting", "Greets", 10),)),)),
        now=NOW,
    )
    ev = await qa.evaluate(quinn, agent="a1", now=NOW, scorecard_id=card.id, scores={"greeting": 8})
    assert ev.id is not None
    assert (await web.get("alice", f"/qa/{ev.id}")).status_code == 404  # not published
    assert f'href="/qa/{ev.id}"' not in (await web.get("alice", "/qa")).text
    await qa.publish(quinn, ev.id, now=NOW)
    own = await web.get("alice", f"/qa/{ev.id}")
    assert own.status_code == 200 and "Greets" in own.text and "8" in own.text
    assert (await web.get("bob", f"/qa/{ev.id}")).status_code == 404  # another agent's
    assert f'href="/qa/{ev.id}"' in (await web.get("quinn", "/qa")).text
    assert f'href="/qa/{ev.id}"' in (await web.get("sue", "/qa")).text


async def test_nav_badge_and_screen_pop_card(web: Web) -> None:
    agent_page = (await web.get("alice", "/agent")).text
    assert 'data-testid="screenpop"' in agent_page and 'data-testid="notif-badge"' in agent_page
    assert 'href="/customers"' in agent_page and 'href="/qa"' in agent_page
    zh = (await web.get("sue", "/tickets", lang="zh")).text
    assert "我的工单" in zh and "工单" in zh


async def test_a_customers_last_calls_match_the_number_and_the_agents_scope(web: Web) -> None:
    from datetime import timedelta

    from crm import CallRecordData, Disposition, HangupSide

    start = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

    def record(caller: str, agent: str | None) -> CallRecordData:
        return CallRecordData(
            f"r-{caller}-{agent}", caller, "5000", start, start + timedelta(minutes=2),
            "normal_clearing", Disposition.ANSWERED, HangupSide.CALLER, answer=start,
            agent=agent, queue="support",
        )  # fmt: skip

    await web.store.add_call_records(
        [
            record("013800000000", "a2"),  # typed nationally: bob's call
            record("013800000000", "a1"),  # the same customer, alice's call
            record("5550001", "a2"),  # somebody else
        ]
    )
    cust = await web.store.add_customer(
        CustomerData(name="Li Lei", phone="+86 138-0000-0000", owner="bob", shared=True)
    )
    short = await web.store.add_customer(CustomerData(name="Short", phone="1", owner="bob"))
    page = (await web.get("bob", f"/customers/{cust}")).text
    assert page.count(" · ANSWERED · support") == 1 and "a2" in page  # his own call only
    sue = (await web.get("sue", f"/customers/{cust}")).text
    assert sue.count(" · ANSWERED · support") == 2  # a supervisor sees both
    # A number too short to tell customers apart lists nothing, not the whole center.
    assert " · ANSWERED · " not in (await web.get("bob", f"/customers/{short}")).text

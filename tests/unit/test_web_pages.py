"""The web panel's pages (web/pages.py), words (web/i18n.py) and figures (web/panel.py):
redirects by session and role, fragments, languages, escaping, today's figures and the
service level colours."""

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

from acd import AgentSnapshot, QueueSnapshot
from config import HttpConfig
from crm import AgentStateData, CallRecordData, Disposition, HangupSide, Store
from pbx.control import CallInfo
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.i18n import CATALOGS, choose_language, reason_translator, translator
from web.panel import TodayFigures, format_seconds, service_level_class, today_figures
from web.services import Services

ADMIN = "local-admin-token"
PASSWORD = "password123"


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset({"1002"}), frozenset({"support"})

    def service_level_thresholds(self) -> dict[str, float]:
        return {"support": 20.0}


@dataclass
class FakeAcd:
    agents: list[AgentSnapshot] = field(default_factory=list)
    queues: list[QueueSnapshot] = field(default_factory=list)
    pause_reasons: dict[str, str] = field(default_factory=lambda: {"1": "lunch"})

    def agent_snapshots(self) -> list[AgentSnapshot]:
        return self.agents

    def queue_snapshots(self) -> list[QueueSnapshot]:
        return self.queues

    def durable(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeControl:
    def info(self, call_id: str) -> CallInfo | None:
        if call_id != "c1":
            return None
        return CallInfo("c1", "5550100", "600", "answered", "", "l1", "1002", "l2", None, "", ())


@dataclass
class Web:
    client: httpx.AsyncClient
    store: Store
    acd: FakeAcd

    async def login(self, name: str) -> None:
        r = await self.client.post("/api/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    for name, role, agent in (
        ("bob", "agent", "bob"),
        ("sue", "supervisor", None),
        ("quinn", "qa", None),
        ("nobody", "agent", "ghost"),  # linked to an agent the config no longer has
    ):
        await store.add_user(name, role, PASSWORD, agent)
    acd = FakeAcd(
        agents=[
            AgentSnapshot(
                "bob", "Bob <b>", ("1002",), "AVAILABLE", None, 1_700_000_000.0, ("support",)
            )
        ],
        queues=[QueueSnapshot("support", "ring_all", 2, 35.0, {"AVAILABLE": 1}, ("bob",), 20.0)],
    )
    services = Services(
        store=store,
        control=cast(Any, FakeControl()),
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


# -- pages: sessions and roles -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/agent", "/wallboard", "/logout"])
async def test_pages_without_a_session_go_to_the_login_page(web: Web, path: str) -> None:
    r = await web.client.get(path)
    assert (r.status_code, r.headers["location"]) == (303, "/login")


async def test_the_login_page_posts_to_the_api_from_the_module(web: Web) -> None:
    r = await web.client.get("/login")
    assert r.status_code == 200
    assert 'id="login"' in r.text and 'src="/static/panel.js"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "https://" not in r.text  # no CDN


@pytest.mark.parametrize(
    ("user", "home"), [("bob", "/agent"), ("sue", "/wallboard"), ("quinn", "/wallboard")]
)
async def test_home_is_the_users_page(web: Web, user: str, home: str) -> None:
    await web.login(user)
    r = await web.client.get("/")
    assert (r.status_code, r.headers["location"]) == (303, home)
    assert (await web.client.get("/login")).headers["location"] == home


async def test_an_agent_is_sent_from_the_wallboard_to_their_panel(web: Web) -> None:
    await web.login("bob")
    r = await web.client.get("/wallboard")
    assert (r.status_code, r.headers["location"]) == (303, "/agent")
    assert (await web.client.get("/wallboard/queues/support")).status_code == 403
    assert (await web.client.get("/wallboard/agents/bob")).status_code == 403


async def test_a_supervisor_without_an_agent_has_no_agent_panel(web: Web) -> None:
    await web.login("sue")
    r = await web.client.get("/agent")
    assert (r.status_code, r.headers["location"]) == (303, "/wallboard")


async def test_an_agent_user_whose_agent_is_gone_is_told_so(web: Web) -> None:
    await web.login("nobody")
    r = await web.client.get("/agent")
    assert r.status_code == 404 and "not linked to an agent" in r.text


async def test_fragments_without_a_session_answer_401(web: Web) -> None:
    for path in ("/agent/today", "/wallboard/queues/support", "/wallboard/agents/bob"):
        assert (await web.client.get(path)).status_code == 401


async def test_the_agent_panel_shows_state_reasons_and_today(web: Web) -> None:
    await web.login("bob")
    r = await web.client.get("/agent")
    assert r.status_code == 200
    assert 'data-agent="bob"' in r.text
    assert 'data-state="AVAILABLE"' in r.text and ">Available<" in r.text
    assert '<option value="lunch">Lunch</option>' in r.text
    assert '<option value="busy">Busy</option>' in r.text
    assert "Bob &lt;b&gt;" in r.text and "Bob <b>" not in r.text  # autoescaped
    assert 'data-testid="offer"' in r.text and "hidden" in r.text.split('data-testid="offer"')[1]
    today = await web.client.get("/agent/today")
    assert today.status_code == 200 and 'data-testid="today-handled">0<' in today.text


async def test_the_wallboard_shows_tiles_and_rows(web: Web) -> None:
    await web.login("sue")
    r = await web.client.get("/wallboard")
    assert r.status_code == 200
    assert 'data-queue="support"' in r.text and 'data-field="waiting">2<' in r.text
    assert 'tr data-agent="bob"' in r.text
    tile = await web.client.get("/wallboard/queues/support")
    assert tile.text.startswith('<article class="tile sl-none"')
    assert (await web.client.get("/wallboard/queues/nope")).status_code == 404
    row = await web.client.get("/wallboard/agents/bob")
    assert row.text.startswith('<tr data-agent="bob"')


async def test_supervisors_get_one_click_actions_and_qa_only_watches(web: Web) -> None:
    await web.login("sue")
    row = (await web.client.get("/wallboard/agents/bob")).text
    assert 'data-force="pause"' in row and 'data-force="logout"' in row
    assert "data-supervise" not in row  # Bob is on no call
    web.acd.agents = [replace(a, state="ON_CALL", current_call="c1") for a in web.acd.agents]
    row = (await web.client.get("/wallboard/agents/bob")).text
    for mode in ("listen", "whisper", "barge", "intercept"):
        assert f'data-supervise="{mode}" data-testid="{mode}-bob"' in row
    page = (await web.client.get("/wallboard")).text
    assert 'id="sup-ext"' in page and ">Actions<" in page
    await web.login("quinn")
    page = (await web.client.get("/wallboard")).text
    assert "data-supervise" not in page and "data-force" not in page and "sup-ext" not in page


async def test_the_agent_panel_has_a_hidden_wrap_up_card_and_lists_its_shortcuts(
    web: Web,
) -> None:
    await web.login("bob")
    page = (await web.client.get("/agent?lang=zh")).text
    card = page.split('<section id="wrapup"')[1].split(">")[0]
    assert "hidden" in card
    assert 'id="wrapup-notes"' in page and "结束话后处理" in page
    assert "<kbd>W</kbd>" in page and "快捷键" in page


async def test_static_files_are_served(web: Web) -> None:
    htmx = await web.client.get("/static/vendor/htmx/htmx.min.js")
    assert htmx.status_code == 200 and htmx.text.startswith("var htmx=")
    assert (await web.client.get("/static/panel.js")).status_code == 200


# -- languages -----------------------------------------------------------------------------


async def test_lang_zh_is_shown_and_kept_in_a_cookie(web: Web) -> None:
    await web.login("bob")
    r = await web.client.get("/agent?lang=zh")
    assert "坐席面板" in r.text and "空闲" in r.text and 'lang="zh-CN"' in r.text
    assert "sb_lang=zh" in r.headers["set-cookie"]
    again = await web.client.get("/agent")  # the cookie now says zh
    assert "签入队列" in again.text


async def test_accept_language_chooses_when_nothing_else_does(web: Web) -> None:
    r = await web.client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "用户名" in r.text


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "lang"),
    [
        (None, None, None, "en"),
        ("zh", None, None, "zh"),
        ("xx", "zh", None, "zh"),
        (None, None, "fr, zh-TW;q=0.5, en;q=0.4", "zh"),
        (None, None, "en;q=0.5, zh;q=0.9", "zh"),
        (None, None, "zh;q=0, en", "en"),
        (None, None, "de", "en"),
        ("en", "zh", "zh", "en"),
    ],
)
def test_choose_language(
    query: str | None, cookie: str | None, accept: str | None, lang: str
) -> None:
    assert choose_language(query, cookie, accept) == lang


def test_every_language_has_every_word() -> None:
    english = set(CATALOGS["en"])
    for lang, catalog in CATALOGS.items():
        assert set(catalog) == english, lang
    assert translator("zh")("no.such.key") == "no.such.key"


def test_reasons_are_translated_when_built_in_and_kept_when_configured() -> None:
    reason = reason_translator("zh")
    assert [reason(r) for r in ("lunch", "after_no_answer", "smoko", None)] == [
        "午餐",
        "未接来电",
        "smoko",
        "",
    ]


# -- figures -------------------------------------------------------------------------------

MIDNIGHT = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)


def _state(minutes: float, old: str, new: str, event: str, agent: str = "bob") -> AgentStateData:
    return AgentStateData(MIDNIGHT + timedelta(minutes=minutes), agent, old, new, event)


def _record(agent: str | None, disposition: Disposition, answered: bool) -> CallRecordData:
    start = MIDNIGHT + timedelta(hours=9)
    return CallRecordData(
        "c", "5550100", "600", start, start + timedelta(minutes=3), "normal_clearing",
        disposition, HangupSide.CALLER, answer=start if answered else None, agent=agent,
    )  # fmt: skip


def test_today_counts_handled_calls_missed_offers_and_pause_time() -> None:
    states = [
        _state(470, "ON_CALL", "WRAP_UP", "call_ended"),
        _state(471.5, "WRAP_UP", "LOGGED_OUT", "logout"),
        _state(480, "LOGGED_OUT", "AVAILABLE", "login"),
        _state(490, "AVAILABLE", "RINGING", "offer"),
        _state(490.5, "RINGING", "AVAILABLE", "no_answer"),
        _state(500, "AVAILABLE", "NOT_READY", "pause"),
        _state(515, "NOT_READY", "AVAILABLE", "unpause"),
        _state(520, "AVAILABLE", "RINGING", "offer"),
        _state(520.5, "RINGING", "NOT_READY", "auto_pause"),
        _state(530, "NOT_READY", "AVAILABLE", "unpause", agent="carol"),  # someone else
    ]
    records = [
        _record("bob", Disposition.ANSWERED, True),
        _record("bob", Disposition.ANSWERED, True),
        _record("carol", Disposition.ANSWERED, True),
        _record("bob", Disposition.NO_ANSWER, False),
    ]
    now = MIDNIGHT + timedelta(minutes=530.5)
    figures = today_figures("bob", reversed(states), records, MIDNIGHT, now, "NOT_READY")
    # 15 minutes of pause, then 10 minutes since the auto-pause (still paused now); AHT:
    # two calls of 3 minutes' talk and 90 s in wrap-up, (2 * 180 + 90) / 2 = 225 s.
    assert figures == TodayFigures(handled=2, missed=2, pause_seconds=25 * 60.0, aht_seconds=225.0)
    assert today_figures("bob", [], [], MIDNIGHT, now, "AVAILABLE").aht_seconds is None


def test_an_agent_paused_since_yesterday_has_paused_all_day() -> None:
    now = MIDNIGHT + timedelta(hours=2)
    assert today_figures("bob", [], [], MIDNIGHT, now, "NOT_READY").pause_seconds == 7200.0
    assert today_figures("bob", [], [], MIDNIGHT, now, "AVAILABLE").pause_seconds == 0.0
    unpaused = [_state(30, "NOT_READY", "AVAILABLE", "unpause")]
    assert today_figures("bob", unpaused, [], MIDNIGHT, now, "AVAILABLE").pause_seconds == 1800.0


@pytest.mark.parametrize(
    ("level", "css"),
    [(None, "sl-none"), (1.0, "sl-green"), (0.8, "sl-green"), (0.79, "sl-amber"),
     (0.6, "sl-amber"), (0.59, "sl-red"), (0.0, "sl-red")],
)  # fmt: skip
def test_service_level_colours(level: float | None, css: str) -> None:
    assert service_level_class(level) == css


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0, 59.9, 61, 3600, 3661)] == [
        "0:00",
        "0:59",
        "1:01",
        "1:00:00",
        "1:01:01",
    ]

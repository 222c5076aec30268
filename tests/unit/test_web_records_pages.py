"""The recordings and reports pages (web/pages_records.py) on a real store (tmp SQLite):
who sees what (the API's scope), the form's filters reaching the store unchanged, the
player and download links, paging, the report table, chart and exports, the words."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from argon2 import PasswordHasher

import web.pages_records
from config import HttpConfig
from crm import RecordingData, RecordingState, Store
from crm.reports import REPORTS, ReportSettings
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.i18n import CATALOGS
from web.i18n_records import EN_REC, ZH_REC
from web.services import Services

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
ADMIN = "local-admin-token"
SCOPES = {
    "a1": (frozenset({"1001"}), frozenset({"sales"})),
    "a2": (frozenset({"1002"}), frozenset()),
}


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return SCOPES.get(agent, (frozenset(), frozenset()))

    def service_level_thresholds(self) -> dict[str, float]:
        return {}

    def report_settings(self) -> ReportSettings:
        return ReportSettings(timezone="Asia/Shanghai")


@dataclass
class FakeRecorder:
    folder: Path


def _rec(n: int, state: RecordingState, **extra: Any) -> RecordingData:
    rid = f"rec-{n:024x}"
    values: dict[str, Any] = {
        "recording_id": rid,
        "call_id": f"call{n}",
        "started": T0 + timedelta(minutes=n),
        "ended": T0 + timedelta(minutes=n, seconds=30),
        "path": f"2026/12/06/{rid}.wav",
        "format": "wav",
        "rate": 8000,
        "state": state,
        "caller": "5551234",
        "callee": "600",
        "duration": 30.0,
    }
    values.update(extra)
    return RecordingData(**values)


DONE = RecordingState.COMPLETE
RECORDINGS = [
    _rec(1, DONE, agent="a1", extension="1001", queue="sales", customer_id=7),
    _rec(2, DONE, extension="1001", callee="1001"),  # a direct call at a1's desk
    _rec(3, DONE, agent="a2", extension="1002", caller="5559999"),
    _rec(4, RecordingState.RECORDING, agent="a1", extension="1001"),
]


def _rid(n: int) -> str:
    return f"rec-{n:024x}"


@dataclass
class Pages:
    client: httpx.AsyncClient
    store: Store
    tokens: dict[str, str]

    async def get(self, path: str, user: str = "admin", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return await self.client.get(path, params=params, headers=headers)


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[Pages]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    for r in RECORDINGS:
        await store.add_recording(r)
    tokens = {"admin": ADMIN}
    for name, role, agent in (
        ("alice", "agent", "a1"),
        ("bob", "agent", "a2"),
        ("nobody", "agent", None),
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
        recorder=cast(Any, FakeRecorder(tmp_path / "recordings")),
    )
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Pages(client, store, tokens)
    await store.close()


def _shown(html: str) -> list[str]:
    return re.findall(r'data-recording="(rec-[0-9a-f]+)"', html)


@pytest.fixture
def searches(pages: Pages, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every ``search_recordings`` the pages make."""
    calls: list[dict[str, Any]] = []
    real = pages.store.search_recordings

    async def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(pages.store, "search_recordings", spy)
    return calls


# -- recordings ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/recordings", "/reports"])
async def test_the_pages_need_a_session(pages: Pages, path: str) -> None:
    r = await pages.client.get(path)
    assert (r.status_code, r.headers["location"]) == (303, "/login")


@pytest.mark.parametrize("user", ["admin", "quinn", "sue"])
async def test_qa_and_above_see_every_recording(pages: Pages, user: str) -> None:
    r = await pages.get("/recordings", user)
    assert r.status_code == 200
    assert _shown(r.text) == [_rid(4), _rid(3), _rid(2), _rid(1)]
    assert 'data-testid="rec-own"' not in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


async def test_an_agent_sees_their_own_calls_and_desk_as_the_api_does(pages: Pages) -> None:
    r = await pages.get("/recordings", "alice")
    assert _shown(r.text) == [_rid(4), _rid(2), _rid(1)]
    assert 'data-testid="rec-own"' in r.text
    api = await pages.get("/api/recordings", "alice")
    assert [i["id"] for i in api.json()["items"]] == _shown(r.text)
    # asking for another agent's calls shows nothing, not theirs
    r = await pages.get("/recordings", "alice", agent="a2")
    assert _shown(r.text) == []


async def test_an_agent_user_without_an_agent_is_refused(pages: Pages) -> None:
    r = await pages.get("/recordings", "nobody")
    assert r.status_code == 403
    assert CATALOGS["en"]["error.forbidden"] in r.text


async def test_the_forms_filters_reach_the_store(
    pages: Pages, searches: list[dict[str, Any]]
) -> None:
    r = await pages.get(
        "/recordings",
        agent="a1",
        extension="1001",
        number="555",
        queue="sales",
        customer="7",
        state="complete",
        # wall-clock time in the reports' zone (Asia/Shanghai, UTC+8)
        since="2026-12-06T16:00",
        until="2026-12-06T17:00:30",
    )
    assert r.status_code == 200
    assert _shown(r.text) == [_rid(1)]
    (call,) = searches
    assert call["since"] == datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert call["until"] == datetime(2026, 12, 6, 9, 0, 30, tzinfo=UTC)
    assert (call["agent"], call["extension"], call["number"]) == ("a1", "1001", "555")
    assert (call["queue"], call["customer_id"], call["state"]) == ("sales", 7, DONE)
    assert "extensions" not in call and "own_agent" not in call
    # the export links carry the same filters to the API (times in UTC)
    csv_link = re.search(r'href="([^"]+)" data-testid="rec-export-csv"', r.text)
    assert csv_link is not None
    link = csv_link.group(1).replace("&amp;", "&")
    assert link.startswith("/api/recordings/export?")
    exported = await pages.client.get(link, headers={"Authorization": f"Bearer {ADMIN}"})
    assert exported.status_code == 200
    assert exported.text.count("\n") == 2  # the header and call1


async def test_an_agents_search_keeps_their_scope(
    pages: Pages, searches: list[dict[str, Any]]
) -> None:
    await pages.get("/recordings", "alice", queue="sales")
    (call,) = searches
    assert (call["extensions"], call["own_agent"], call["queue"]) == (["1001"], "a1", "sales")


async def test_empty_fields_are_no_filter(pages: Pages, searches: list[dict[str, Any]]) -> None:
    r = await pages.get("/recordings", since="", agent="", customer="", state="")
    assert r.status_code == 200 and len(_shown(r.text)) == 4
    assert all(v is None for k, v in searches[0].items() if k not in ("offset", "limit"))


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"customer": "seven"}, "rec.bad_customer"),
        ({"since": "yesterday"}, "rec.bad_time"),
        ({"state": "lost"}, "rec.bad_state"),
        ({"queue": "q" * 300}, "rec.too_long"),
    ],
)
async def test_bad_filters_are_told_on_the_page(
    pages: Pages, params: dict[str, str], key: str
) -> None:
    r = await pages.get("/recordings", **params)
    assert r.status_code == 400
    assert EN_REC[key] in r.text
    assert 'data-testid="rec-filters"' in r.text


async def test_each_finished_recording_has_a_player_and_a_download(pages: Pages) -> None:
    r = await pages.get("/recordings")
    audio = re.findall(r'<audio controls preload="none" src="([^"]+)"', r.text)
    assert audio == [f"/api/recordings/{_rid(n)}/audio" for n in (3, 2, 1)]  # not 4: recording
    assert f'href="/api/recordings/{_rid(1)}/audio?download=true"' in r.text
    assert EN_REC["rec.not_playable"] in r.text
    # times are shown in the reports' zone
    assert "2026-12-06 16:01:00" in r.text


async def test_pages_of_results(pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web.pages_records, "REC_PER_PAGE", 3)
    first = await pages.get("/recordings", queue="")
    assert _shown(first.text) == [_rid(4), _rid(3), _rid(2)]
    assert 'data-testid="rec-prev"' not in first.text
    assert 'href="?page=2" rel="next"' in first.text
    second = await pages.get("/recordings", page="2")
    assert _shown(second.text) == [_rid(1)]
    assert 'data-testid="rec-next"' not in second.text and "2 / 2" in second.text


# -- reports ---------------------------------------------------------------------------------


def _options(html: str) -> list[str]:
    select = html.split('data-testid="rep-report"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([a-z_]+)"', select)


async def test_qa_picks_any_report_and_gets_table_chart_and_exports(pages: Pages) -> None:
    r = await pages.get(
        "/reports", "quinn", report="traffic", period="hour", since="2026-12-06", queue="sales"
    )
    assert r.status_code == 200, r.text
    assert _options(r.text) == list(REPORTS)
    assert 'name="agent"' in r.text
    assert 'data-testid="rep-table"' in r.text and "Inbound calls" in r.text
    chart = re.search(r'<img class="chart" src="([^"]+)"', r.text)
    assert chart is not None
    src = chart.group(1).replace("&amp;", "&")
    assert src.startswith("/api/reports/traffic?") and "format=png" in src
    # the day is a local day of the reports' zone, sent to the API as an exact range
    assert "since=2026-12-05T16%3A00%3A00%2B00%3A00" in src
    assert "until=2026-12-06T16%3A00%3A00%2B00%3A00" in src
    assert "period=hour" in src and "queue=sales" in src
    png = await pages.client.get(src, headers={"Authorization": f"Bearer {pages.tokens['quinn']}"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    for fmt in ("csv", "xlsx"):
        link = re.search(rf'href="([^"]+)" data-testid="rep-{fmt}"', r.text)
        assert link is not None and f"format={fmt}" in link.group(1)


async def test_an_agent_runs_only_their_own_reports(pages: Pages) -> None:
    r = await pages.get("/reports", "alice", report="agent_summary", agent="a2")
    assert r.status_code == 200, r.text
    assert _options(r.text) == [n for n, spec in REPORTS.items() if spec.agent_scoped]
    assert 'name="agent"' not in r.text and 'data-testid="rep-own"' in r.text
    # the agent filter is forced to themself, as the API forces it
    link = re.search(r'href="([^"]+)" data-testid="rep-csv"', r.text)
    assert link is not None and "agent=a1" in link.group(1) and "a2" not in link.group(1)
    refused = await pages.get("/reports", "alice", report="traffic")
    assert refused.status_code == 400 and EN_REC["rep.unknown"] in refused.text
    assert (await pages.get("/reports", "nobody")).status_code == 403


async def test_report_refusals_are_told_on_the_page(pages: Pages) -> None:
    r = await pages.get("/reports", report="traffic", since="2026-12-06", until="2026-12-01")
    assert r.status_code == 400 and "until must be after since" in r.text
    r = await pages.get("/reports", report="traffic", since="06/12/2026")
    assert r.status_code == 400 and EN_REC["rep.bad_date"] in r.text


async def test_the_pages_speak_chinese_and_link_from_the_bar(pages: Pages) -> None:
    r = await pages.get("/reports", "quinn", report="traffic", lang="zh")
    assert ZH_REC["rname.traffic"] in r.text and ZH_REC["rcol.inbound"] in r.text
    assert 'href="/recordings"' in r.text and ZH_REC["nav.reports"] in r.text
    r = await pages.get("/recordings", "alice", lang="zh")
    assert ZH_REC["rec.title"] in r.text and 'href="/reports"' in r.text


def test_every_record_page_word_is_in_both_languages() -> None:
    assert set(EN_REC) == set(ZH_REC)
    for key in EN_REC:
        assert CATALOGS["en"][key] == EN_REC[key] and CATALOGS["zh"][key] == ZH_REC[key]
    columns = {c.key for c in _all_columns()}
    assert {f"rcol.{k}" for k in columns} <= set(EN_REC)
    assert {f"rname.{n}" for n in REPORTS} <= set(EN_REC)


def _all_columns() -> list[Any]:
    import crm.reports

    text = Path(crm.reports.__file__).read_text()
    keys = re.findall(r'\("(\w+)", "[^"]+", "(?:count|seconds|ratio|time|text)"\)', text)
    return [crm.reports.Column(k, k, "count") for k in keys]

"""The recordings API (web/api_recordings.py) on a real store (tmp SQLite) and real files,
with a fake recorder: search and role scope, one row, the audio with HTTP Range, CSV and
XLSX exports, and start/stop/pause/resume of a live call's recording."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import openpyxl
import pytest
from argon2 import PasswordHasher

import web.api_recordings
from config import HttpConfig
from crm import RecordingData, RecordingState, Store
from pbx.control import CallInfo
from recorder.commands import RecorderError
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
ADMIN = "local-admin-token"
AUDIO = bytes(range(256)) * 40  # 10240 bytes
SCOPES = {
    "a1": (frozenset({"1001"}), frozenset({"sales"})),
    "a2": (frozenset({"1002"}), frozenset()),
}


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return SCOPES.get(agent, (frozenset(), frozenset()))


class FakeControl:
    def __init__(self) -> None:
        self.live: dict[str, CallInfo] = {}

    def add(self, call_id: str, caller_ext: str, callee_ext: str | None) -> None:
        self.live[call_id] = CallInfo(
            call_id, caller_ext, callee_ext or "", "answered", caller_ext, "leg-a", callee_ext,
            None, None, "", (),
        )  # fmt: skip

    def info(self, call_id: str) -> CallInfo | None:
        return self.live.get(call_id)


@dataclass
class FakeRecorder:
    folder: Path
    commands: list[tuple[str, str, str | None]] = field(default_factory=list)
    refuse: RecorderError | None = None

    async def _do(self, action: str, call_id: str, by: str | None = None) -> str:
        if self.refuse is not None:
            raise self.refuse
        self.commands.append((action, call_id, by))
        return f"rec-{call_id}"

    async def start(self, call_id: str, *, by: str | None = None) -> str:
        return await self._do("start", call_id, by)

    async def stop(self, call_id: str) -> str:
        return await self._do("stop", call_id)

    async def pause(self, call_id: str) -> str:
        return await self._do("pause", call_id)

    async def resume(self, call_id: str) -> str:
        return await self._do("resume", call_id)

    def recording_of(self, call_id: str) -> str | None:
        return None


def _rec(n: int, fmt: str, state: RecordingState, **extra: Any) -> RecordingData:
    rid = f"rec-{n:024x}"
    values: dict[str, Any] = {
        "recording_id": rid,
        "call_id": f"call{n}",
        "started": T0 + timedelta(minutes=n),
        "ended": T0 + timedelta(minutes=n, seconds=30),
        "path": f"2026/12/06/{rid}.{fmt}",
        "format": fmt,
        "rate": 8000,
        "state": state,
        "caller": "5551234",
        "callee": "600",
        "duration": 30.0,
        "size": len(AUDIO),
        "sha256": hashlib.sha256(AUDIO).hexdigest(),
    }
    values.update(extra)
    return RecordingData(**values)


DONE = RecordingState.COMPLETE
RECORDINGS = [
    _rec(1, "flac", DONE, agent="a1", extension="1001", queue="sales", customer_id=7),
    _rec(2, "wav", DONE, extension="1001", callee="1001"),  # a direct call at a1's desk
    _rec(3, "ogg", DONE, agent="a2", extension="1002"),
    _rec(4, "flac", RecordingState.RECORDING, agent="a1", extension="1001", sha256=None),
    _rec(5, "flac", DONE, agent="a2", extension="1002"),  # its file is gone
    _rec(6, "flac", DONE, agent="a2", path="../outside.flac"),  # a path that climbs out
]
A1_SEES = ["call4", "call2", "call1"]


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    services: Services
    recorder: FakeRecorder
    control: FakeControl
    tokens: dict[str, str]

    async def get(self, path: str, user: str = "admin", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(user))

    async def post(self, path: str, body: Any, user: str = "admin") -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(user))

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", hasher=hasher)
    folder = tmp_path / "recordings"
    for r in RECORDINGS:
        await store.add_recording(r)
        if r.call_id != "call5" and not r.path.startswith(".."):
            (folder / r.path).parent.mkdir(parents=True, exist_ok=True)
            (folder / r.path).write_bytes(AUDIO)
    (tmp_path / "outside.flac").write_bytes(AUDIO)
    tokens = {"admin": ADMIN}
    for name, role, agent in (
        ("alice", "agent", "a1"),
        ("bob", "agent", "a2"),
        ("quinn", "qa", None),
        ("sue", "supervisor", None),
    ):
        await store.add_user(name, role, "password123", agent)
        tokens[name] = (await store.create_token(name))[1]
    recorder = FakeRecorder(folder)
    control = FakeControl()
    services = Services(
        store=store,
        control=cast(Any, control),
        acd=cast(Any, None),
        dialer=cast(Any, None),
        ops=cast(Any, FakeOps()),
        hub=EventHub(FakeOps().agent_scope),
        auth=Authenticator(store, ADMIN, b"k" * 32, 60),
        http=HttpConfig(),
        recorder=recorder,
    )
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, store, services, recorder, control, tokens)
    await store.close()


def _calls(body: dict[str, Any]) -> list[str]:
    return [item["call_id"] for item in body["items"]]


# -- search and scope ------------------------------------------------------------------------


async def test_openapi_describes_the_routes(api: Api) -> None:
    paths = (await api.client.get("/api/openapi.json")).json()["paths"]
    assert {"/api/recordings", "/api/recordings/export", "/api/recordings/{recording_id}"} <= set(
        paths
    )
    params = {p["name"] for p in paths["/api/recordings/export"]["get"]["parameters"]}
    assert {"format", "since", "customer", "disposition", "state"} <= params
    assert "/api/calls/{call_id}/recording" in paths


@pytest.mark.parametrize("user", ["quinn", "sue", "admin"])
async def test_qa_supervisor_admin_see_every_recording(api: Api, user: str) -> None:
    answer = await api.get("/api/recordings", user)
    assert answer.status_code == 200
    body = answer.json()
    assert body["total"] == 6
    assert _calls(body) == ["call6", "call5", "call4", "call3", "call2", "call1"]
    first = body["items"][-1]
    assert first["id"] == first["recording_id"] == RECORDINGS[0].recording_id
    assert first["state"] == "complete"
    assert first["started"] == RECORDINGS[0].started.isoformat()
    assert first["pauses"] == [] and first["paused_seconds"] == 0


async def test_agent_sees_own_and_desk_recordings_only(api: Api) -> None:
    body = (await api.get("/api/recordings", "alice")).json()
    assert _calls(body) == A1_SEES
    assert body["total"] == 3
    body = (await api.get("/api/recordings", "bob")).json()
    assert _calls(body) == ["call6", "call5", "call3"]
    # a filter cannot widen the scope
    body = (await api.get("/api/recordings", "alice", agent="a2")).json()
    assert body["total"] == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"agent": "a1"}, ["call4", "call1"]),
        ({"extension": "1002"}, ["call5", "call3"]),
        ({"queue": "sales"}, ["call1"]),
        ({"customer": 7}, ["call1"]),
        ({"state": "recording"}, ["call4"]),
        ({"number": "1001"}, ["call2"]),
        ({"since": "2026-12-06T08:02:00", "until": "2026-12-06T08:04:00Z"}, ["call3", "call2"]),
        ({"per_page": 2, "page": 2}, ["call4", "call3"]),
    ],
)
async def test_filters(api: Api, params: dict[str, Any], expected: list[str]) -> None:
    answer = await api.get("/api/recordings", **params)
    assert answer.status_code == 200, answer.text
    assert _calls(answer.json()) == expected


async def test_bad_filters_are_422(api: Api) -> None:
    for params in ({"state": "paused"}, {"disposition": "MAYBE"}, {"customer": "x"}):
        answer = await api.get("/api/recordings", **params)
        assert answer.status_code == 422
        assert "error" in answer.json()


async def test_one_recording_404_when_unknown_or_not_yours(api: Api) -> None:
    rid = RECORDINGS[2].recording_id  # a2's
    assert (await api.get(f"/api/recordings/{rid}", "quinn")).json()["call_id"] == "call3"
    assert (await api.get(f"/api/recordings/{rid}", "bob")).status_code == 200
    assert (await api.get(f"/api/recordings/{rid}", "alice")).status_code == 404
    assert (await api.get("/api/recordings/rec-nope")).status_code == 404
    assert (await api.client.get(f"/api/recordings/{rid}")).status_code == 401


# -- audio -------------------------------------------------------------------------------------


async def test_audio_whole_file(api: Api) -> None:
    r = RECORDINGS[0]
    answer = await api.get(f"/api/recordings/{r.recording_id}/audio", "alice")
    assert answer.status_code == 200
    assert answer.content == AUDIO
    assert answer.headers["content-type"] == "audio/flac"
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["etag"] == f'"{r.sha256}"'
    assert answer.headers["content-length"] == str(len(AUDIO))
    assert "content-disposition" not in answer.headers


@pytest.mark.parametrize(("index", "kind"), [(1, "audio/wav"), (2, "audio/ogg")])
async def test_audio_content_types(api: Api, index: int, kind: str) -> None:
    answer = await api.get(f"/api/recordings/{RECORDINGS[index].recording_id}/audio")
    assert answer.headers["content-type"] == kind


async def test_audio_download_names_the_file(api: Api) -> None:
    r = RECORDINGS[0]
    answer = await api.get(f"/api/recordings/{r.recording_id}/audio", download=1)
    assert answer.headers["content-disposition"] == f'attachment; filename="{r.recording_id}.flac"'


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=-100", 10140, 10239), ("bytes=10000-", 10000, 10239)],
)
async def test_audio_ranges(api: Api, header: str, start: int, end: int) -> None:
    r = RECORDINGS[0]
    answer = await api.client.get(
        f"/api/recordings/{r.recording_id}/audio", headers={**api.auth("admin"), "Range": header}
    )
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{len(AUDIO)}"
    assert answer.content == AUDIO[start : end + 1]


async def test_audio_range_not_satisfiable(api: Api) -> None:
    r = RECORDINGS[0]
    answer = await api.client.get(
        f"/api/recordings/{r.recording_id}/audio",
        headers={**api.auth("admin"), "Range": "bytes=20000-20100"},
    )
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(AUDIO)}"


async def test_audio_refusals(api: Api) -> None:
    def audio(n: int) -> str:
        return f"/api/recordings/{RECORDINGS[n].recording_id}/audio"

    assert (await api.get(audio(3))).status_code == 409  # still being written
    assert (await api.get(audio(4))).status_code == 404  # the file is gone
    assert (await api.get(audio(5))).status_code == 404  # never outside the folder
    assert (await api.get(audio(2), "alice")).status_code == 404  # not hers
    api.services.recorder = None
    assert (await api.get(audio(0))).status_code == 503


# -- exports -----------------------------------------------------------------------------------


async def test_export_csv(api: Api) -> None:
    answer = await api.get("/api/recordings/export", "quinn", format="csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="recordings.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert len(rows) == 6
    assert rows[-1]["recording_id"] == RECORDINGS[0].recording_id
    assert rows[-1]["started (UTC)"] == RECORDINGS[0].started.isoformat()
    assert rows[-1]["agent"] == "a1" and rows[-1]["customer_id"] == "7"
    # scoped and filtered like the search
    mine = await api.get("/api/recordings/export", "alice")
    assert len(list(csv.DictReader(io.StringIO(mine.content.decode())))) == 3
    sales = await api.get("/api/recordings/export", queue="sales")
    assert len(list(csv.DictReader(io.StringIO(sales.content.decode())))) == 1


async def test_export_never_hands_a_spreadsheet_a_formula(api: Api) -> None:
    for n, caller in ((7, "=HYPERLINK(1)"), (8, "+15551234"), (9, "-2+cmd|' /C calc'!A0")):
        await api.store.add_recording(_rec(n, "flac", DONE, caller=caller))
    answer = await api.get("/api/recordings/export", number="")
    callers = [row["caller"] for row in csv.DictReader(io.StringIO(answer.content.decode()))][:3]
    assert callers == ["'-2+cmd|' /C calc'!A0", "+15551234", "'=HYPERLINK(1)"]
    answer = await api.get("/api/recordings/export", format="xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content)).active
    assert sheet is not None
    assert [sheet.cell(row, 7).value for row in (2, 3, 4)] == [
        "-2+cmd|' /C calc'!A0",
        "+15551234",
        "=HYPERLINK(1)",
    ]
    assert [sheet.cell(row, 7).data_type for row in (2, 3, 4)] == ["s", "s", "s"]


async def test_export_xlsx(api: Api) -> None:
    answer = await api.get("/api/recordings/export", format="xlsx", state="complete")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == web.api_recordings.XLSX_TYPE
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    sheet = book.active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 1 + 5
    assert rows[0][0] == "recording_id"
    assert sheet.cell(1, 1).font.b
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["recording_id"] == RECORDINGS[0].recording_id
    assert last["started (UTC)"] == RECORDINGS[0].started.replace(tzinfo=None)
    assert last["duration_seconds"] == 30
    assert sheet.column_dimensions["A"].width > 20


async def test_export_too_big_is_413(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web.api_recordings, "EXPORT_MAX_ROWS", 5)
    assert (await api.get("/api/recordings/export")).status_code == 413
    assert (await api.get("/api/recordings/export", "alice")).status_code == 200
    assert (await api.get("/api/recordings/export", format="pdf")).status_code == 422


# -- recording a live call -------------------------------------------------------------------


async def test_agent_on_the_call_controls_its_recording(api: Api) -> None:
    api.control.add("c-live", "1001", "1002")
    api.control.add("c-other", "1003", None)
    for action, state in (
        ("start", "recording"),
        ("pause", "paused"),
        ("resume", "recording"),
        ("stop", "stopped"),
    ):
        answer = await api.post("/api/calls/c-live/recording", {"action": action}, "alice")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"recording_id": "rec-c-live", "state": state}
    assert api.recorder.commands[0] == ("start", "c-live", "alice")
    assert [c[0] for c in api.recorder.commands] == ["start", "pause", "resume", "stop"]
    entries, _ = await api.store.list_audit(user="alice")
    assert [e.action for e in reversed(entries)] == [
        "recording.start",
        "recording.pause",
        "recording.resume",
        "recording.stop",
    ]
    assert entries[0].target == "c-live"
    assert entries[0].detail == {"recording_id": "rec-c-live"}
    # bob's extension is on the call too; qa may not act; a supervisor may on any call
    assert (await api.post("/api/calls/c-live/recording", {"action": "start"}, "bob")).is_success
    assert (
        await api.post("/api/calls/c-other/recording", {"action": "start"}, "alice")
    ).status_code == 403
    assert (
        await api.post("/api/calls/c-other/recording", {"action": "start"}, "quinn")
    ).status_code == 403
    assert (await api.post("/api/calls/c-other/recording", {"action": "start"}, "sue")).is_success


async def test_recording_control_refusals(api: Api) -> None:
    api.control.add("c-live", "1001", None)
    url = "/api/calls/c-live/recording"
    assert (await api.post("/api/calls/nope/recording", {"action": "start"})).status_code == 404
    assert (await api.post(url, {"action": "rewind"})).status_code == 422
    api.recorder.refuse = RecorderError(409, "not recording")
    answer = await api.post(url, {"action": "pause"})
    assert (answer.status_code, answer.json()) == (409, {"error": "not recording"})
    api.services.recorder = None
    assert (await api.post(url, {"action": "start"})).status_code == 503
    _, total = await api.store.list_audit()
    assert total == 0  # nothing done, nothing audited

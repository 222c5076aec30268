"""The customer API (web/api_crm.py) on a real SQLite store through httpx's ASGI transport:
CRUD and search by role, duplicates, numbers, follow-ups and appointments, the pool, the
blacklist, import (the per-row report) and export, and the screen pop of a live call for a
known and an unknown caller."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import openpyxl
import pytest
from argon2 import PasswordHasher

from config import HttpConfig
from crm import (
    CallRecordData,
    CrmSettings,
    CustomField,
    Disposition,
    HangupSide,
    RecordingData,
    RecordingState,
    Store,
)
from crm.tickets import TicketSettings
from pbx.control import CallInfo
from web.app import create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.services import Services

ADMIN = "local-admin-token"
T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
SETTINGS = CrmSettings(
    custom_fields={"contract": CustomField("contract", "choice", ("basic", "gold"))},
    claim_limit=2,
)


class FakeOps:
    version = "test"
    started_at = 0.0

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        return {"a1": (frozenset({"1001"}), frozenset())}.get(agent, (frozenset(), frozenset()))

    def crm_settings(self) -> CrmSettings:
        return SETTINGS

    def ticket_settings(self) -> TicketSettings:
        return TicketSettings()


class FakeAcd:
    def __init__(self) -> None:
        self.offers: dict[str, frozenset[str]] = {}

    def offered_agents(self, call_id: str) -> frozenset[str]:
        return self.offers.get(call_id, frozenset())


class FakeControl:
    def __init__(self) -> None:
        self.live: dict[str, CallInfo] = {}

    def add(self, call_id: str, caller: str, callee_ext: str, ivr_keys: str = "") -> None:
        self.live[call_id] = CallInfo(
            call_id=call_id,
            caller=caller,
            callee=callee_ext,
            state="answered",
            caller_ext="",
            caller_leg="leg-a",
            callee_ext=callee_ext,
            callee_leg="leg-b",
            linked_id=None,
            ivr_keys=ivr_keys,
            offers=(),
            queue="sales",
        )

    def info(self, call_id: str) -> CallInfo | None:
        return self.live.get(call_id)


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    control: FakeControl
    tokens: dict[str, str]
    acd: FakeAcd

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def get(self, path: str, user: str = "admin", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(user))

    async def post(
        self, path: str, body: Any = None, user: str = "admin", **params: Any
    ) -> httpx.Response:
        return await self.client.post(path, json=body, params=params, headers=self.auth(user))

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
        ("bob", "agent", None),
        ("sue", "supervisor", None),
    ):
        await store.add_user(name, role, "password123", agent)
        tokens[name] = (await store.create_token(name))[1]
    control = FakeControl()
    acd = FakeAcd()
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
        yield Api(client, store, control, tokens, acd)
    await store.close()


ANNA = {
    "name": "Anna Schmidt",
    "phone": "+49 30 1234567",
    "grade": "B",
    "tags": ["VIP"],
    "custom": {"contract": "gold"},
    "numbers": [{"number": "+86 138 0013 8000", "kind": "mobile"}],
}


async def test_openapi_lists_the_routes(api: Api) -> None:
    paths = set((await api.client.get("/api/openapi.json")).json()["paths"])
    assert {
        "/api/customers",
        "/api/customers/{customer_id}",
        "/api/customers/import",
        "/api/customers/export",
        "/api/customers/{customer_id}/claim",
        "/api/blacklist",
        "/api/screenpop/{call_id}",
    } <= paths


async def test_crud_and_search(api: Api) -> None:
    answer = await api.post("/api/customers", ANNA, "sue")
    assert answer.status_code == 201, answer.text
    anna = answer.json()
    assert anna["tags"] == ["vip"] and anna["owner"] is None and anna["grade"] == "B"
    assert anna["numbers"][0]["number"] == "+86 138 0013 8000"
    cid = anna["id"]
    dup = await api.post("/api/customers", {"name": "Dup", "phone": "030 1234567"}, "sue")
    assert dup.status_code == 409
    assert dup.json()["error"] == f"number 030 1234567 belongs to customer {cid} (Anna Schmidt)"
    ok = await api.post(
        "/api/customers", {"name": "Dup", "phone": "030 1234567"}, "sue", allow_duplicate=True
    )
    assert ok.status_code == 201
    bad = await api.post("/api/customers", {**ANNA, "custom": {"contract": "x"}}, "sue")
    assert bad.status_code == 400 and "contract" in bad.json()["error"]
    assert (await api.post("/api/customers", {**ANNA, "grade": "F"}, "sue")).status_code == 422

    found = (await api.get("/api/customers", "sue", number="004930 1234567")).json()
    assert [c["name"] for c in found["items"]] == ["Anna Schmidt", "Dup"]
    found = (await api.get("/api/customers", "sue", q="schmidt", field="contract:gold")).json()
    assert [c["id"] for c in found["items"]] == [cid]
    assert (await api.get("/api/customers", "sue", field="nope")).status_code == 422
    assert (await api.get("/api/customers", "sue", field="colour:red")).status_code == 400

    changed = await api.patch(f"/api/customers/{cid}", {"grade": "A", "address": "Berlin"})
    assert changed.status_code == 200 and changed.json()["grade"] == "A"
    assert changed.json()["custom"] == {"contract": "gold"}  # untouched
    number = await api.post(f"/api/customers/{cid}/numbers", {"number": "0171 5555555"})
    assert [n["number"] for n in number.json()["numbers"]][-1] == "0171 5555555"
    nid = number.json()["numbers"][0]["id"]
    removed = await api.delete(f"/api/customers/{cid}/numbers/{nid}")
    assert [n["number"] for n in removed.json()["numbers"]] == ["0171 5555555"]
    assert (await api.delete(f"/api/customers/{cid}/numbers/99999")).status_code == 404
    assert (await api.get(f"/api/customers/{cid}")).json()["address"] == "Berlin"
    assert (await api.delete(f"/api/customers/{cid}", "sue")).status_code == 200
    assert (await api.get(f"/api/customers/{cid}")).status_code == 404


async def test_agent_scope_and_denials(api: Api) -> None:
    bobs = (await api.post("/api/customers", {**ANNA, "owner": "bob"}, "sue")).json()
    pool = (await api.post("/api/customers", {"name": "P", "phone": "0301111111"}, "sue")).json()
    mine = await api.post("/api/customers", {"name": "Mine", "phone": "0302222222"}, "alice")
    assert mine.status_code == 201 and mine.json()["owner"] == "alice"
    listed = (await api.get("/api/customers", "alice")).json()
    assert [c["name"] for c in listed["items"]] == ["Mine", "P"]
    assert (await api.get(f"/api/customers/{bobs['id']}", "alice")).status_code == 404
    assert (
        await api.patch(f"/api/customers/{pool['id']}", {"name": "X"}, "alice")
    ).status_code == 403
    assert (await api.delete(f"/api/customers/{mine.json()['id']}", "alice")).status_code == 403
    give = await api.post("/api/customers", {"name": "G", "phone": "0303", "owner": "bob"}, "alice")
    assert give.status_code == 403
    imported = await api.client.post(
        "/api/customers/import", content=b"name,phone\nA,1234567\n", headers=api.auth("alice")
    )
    assert imported.status_code == 403

    claimed = await api.post(f"/api/customers/{pool['id']}/claim", None, "alice")
    assert claimed.status_code == 200 and claimed.json()["owner"] == "alice"
    third = (await api.post("/api/customers", {"name": "T", "phone": "0304444444"}, "sue")).json()
    over = await api.post(f"/api/customers/{third['id']}/claim", None, "alice")
    assert over.status_code == 409 and "claim limit is 2" in over.json()["error"]
    taken = await api.post(f"/api/customers/{pool['id']}/claim", None, "bob")
    assert taken.status_code == 404  # bob no longer sees alice's customer
    released = await api.post(f"/api/customers/{pool['id']}/release", None, "alice")
    assert released.json()["owner"] is None


async def test_followups_appointments_and_reminders(api: Api) -> None:
    cid = (await api.post("/api/customers", ANNA, "alice")).json()["id"]
    answer = await api.post(
        f"/api/customers/{cid}/followups", {"note": "called", "next_at": "2030-01-01T09:00:00"},
        "alice",
    )  # fmt: skip
    assert answer.status_code == 201 and answer.json()["user"] == "alice"
    assert answer.json()["next_at"] == "2030-01-01T09:00:00+00:00"
    listed = (await api.get(f"/api/customers/{cid}/followups", "alice")).json()
    assert [f["note"] for f in listed["items"]] == ["called"]
    assert (await api.get(f"/api/customers/{cid}")).json()["last_followup_at"] is not None
    soon = datetime.now(UTC) + timedelta(minutes=10)
    appointment = await api.post(
        f"/api/customers/{cid}/appointments", {"at": soon.isoformat(), "note": "demo"}, "alice"
    )
    assert appointment.status_code == 201
    assert appointment.json()["remind_at"] == (soon - timedelta(minutes=15)).isoformat()
    due = (await api.get("/api/reminders", "alice")).json()["items"]
    assert [a["note"] for a in due] == ["demo"]
    assert (await api.get("/api/reminders", "bob")).json()["items"] == []
    assert (await api.get("/api/reminders", "sue")).json()["total"] == 1
    late = await api.post(
        f"/api/customers/{cid}/appointments",
        {"at": soon.isoformat(), "remind_at": (soon + timedelta(hours=1)).isoformat()},
        "alice",
    )
    assert late.status_code == 400
    assert len((await api.get(f"/api/customers/{cid}/appointments", "alice")).json()["items"]) == 1


async def test_blacklist(api: Api) -> None:
    added = await api.post(
        "/api/blacklist", {"number": "+49 30 1234567", "reason": "asked"}, "alice"
    )
    assert added.status_code == 201 and added.json()["added_by"] == "alice"
    again = await api.post("/api/blacklist", {"number": "030 1234567"}, "alice")
    assert again.status_code == 409
    hit = (await api.get("/api/blacklist", "alice", number="004930 1234567")).json()
    assert hit["total"] == 1 and hit["items"][0]["reason"] == "asked"
    assert (await api.get("/api/blacklist", "alice")).json()["total"] == 1
    assert (await api.delete("/api/blacklist/030%201234567", "alice")).status_code == 403
    assert (await api.delete("/api/blacklist/030%201234567", "sue")).status_code == 200
    assert (await api.delete("/api/blacklist/030%201234567", "sue")).status_code == 404


async def test_import_report_and_export(api: Api) -> None:
    data = (
        b"name,phone,grade,contract\n"
        b"Anna,+49 30 1234567,B,gold\n"
        b",030 555,A,\n"
        b"Carl,030 1234567,A,\n"
        b"Dora,089 1112222,Z,\n"
        b"Emil,+1 555 123 4567,,basic\n"
    )
    answer = await api.client.post(
        "/api/customers/import",
        content=data,
        params={"all_or_nothing": "true"},
        headers={**api.auth("sue"), "Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["imported"] == 0 and report["all_or_nothing"] is True
    assert report["errors"] == [
        {"row": 3, "reason": "name is missing"},
        {"row": 4, "reason": "number 030 1234567 is on row 2 already"},
        {"row": 5, "reason": "bad grade 'Z' (A..E)"},
    ]
    answer = await api.client.post("/api/customers/import", content=data, headers=api.auth("sue"))
    assert answer.json()["imported"] == 2 and answer.json()["refused"] == 3
    bad = await api.client.post(
        "/api/customers/import", content=b"who,what\n", headers=api.auth("sue")
    )
    assert bad.status_code == 400 and "unknown column" in bad.json()["error"]
    bomb = io.BytesIO()  # 50 MB of zeros as the sheet, deflated to ~50 kB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", bytes(50 * 1024 * 1024))
    refused = await api.client.post(
        "/api/customers/import?format=xlsx", content=bomb.getvalue(), headers=api.auth("sue")
    )
    assert refused.status_code == 413 and "zip bomb" in refused.json()["error"]

    csv_answer = await api.get("/api/customers/export", "sue", grade="B")
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.content.decode("utf-8-sig").splitlines()
    assert lines[0] == (
        "name,phone,numbers,email,company,address,grade,tags,source,owner,shared,language,"
        "notes,contract"
    )
    assert lines[1].startswith("Anna,+49 30 1234567,") and len(lines) == 2
    xlsx = await api.get("/api/customers/export", "sue", format="xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["Anna", "Emil"]
    # an agent exports only what they see: the imported customers are in the pool
    mine = await api.get("/api/customers/export", "bob")
    assert len(mine.content.decode("utf-8-sig").splitlines()) == 3


async def test_screen_pop_known_and_unknown_caller(api: Api) -> None:
    anna = (await api.post("/api/customers", ANNA, "sue")).json()
    for n, caller in enumerate(["+49 30 1234567", "+49 30 1234567", "5550000"]):
        await api.store.add_call_record(
            CallRecordData(
                call_id=f"sip-{n}",
                caller=caller,
                callee="600",
                start=T0 + timedelta(hours=n),
                end=T0 + timedelta(hours=n, minutes=3),
                hangup_cause="normal_clearing",
                disposition=Disposition.ANSWERED,
                hangup_side=HangupSide.CALLER,
                record_id=f"rec{n}",
                ivr_keys="1",
            )
        )
    await api.store.add_recording(
        RecordingData(
            recording_id="rec-" + "1" * 24,
            call_id="rec1",
            started=T0 + timedelta(hours=1),
            path="x.flac",
            format="flac",
            rate=8000,
            state=RecordingState.COMPLETE,
            caller="+49 30 1234567",
            extension="1001",  # alice's phone, no agent: hers to know of
        )
    )
    await api.store.add_recording(  # a colleague's recording of the same number: not hers
        RecordingData(
            recording_id="rec-" + "2" * 24,
            call_id="rec0",
            started=T0,
            path="y.flac",
            format="flac",
            rate=8000,
            state=RecordingState.COMPLETE,
            caller="+49 30 1234567",
            agent="a2",
        )
    )
    api.control.add("live-1", "+49 30 1234567", "1001", ivr_keys="12")
    api.control.add("live-2", "+44 20 7946 0958", "1001")
    api.control.add("live-3", "+49 30 1234567", "1002")

    pop = await api.get("/api/screenpop/live-1", "alice")
    assert pop.status_code == 200, pop.text
    body = pop.json()
    assert body["known"] is True and body["customer"]["id"] == anna["id"]
    assert body["customer"]["grade"] == "B" and body["editable"] is False
    assert body["ivr_keys"] == "12" and body["tickets"] == [] and body["queue"] == "sales"
    assert [c["record_id"] for c in body["calls"]] == ["rec1", "rec0"]
    assert body["calls"][0]["recordings"] == ["rec-" + "1" * 24]
    assert body["calls"][1]["recordings"] == []

    unknown = (await api.get("/api/screenpop/live-2", "alice")).json()
    assert unknown["known"] is False and unknown["customer"] == {"phone": "+44 20 7946 0958"}
    assert unknown["calls"] == [] and unknown["blacklisted"] is False

    assert (await api.get("/api/screenpop/live-3", "alice")).status_code == 403  # not hers
    api.acd.offers["live-3"] = frozenset({"a1"})  # until it rings for her
    assert (await api.get("/api/screenpop/live-3", "alice")).status_code == 200
    assert (await api.get("/api/screenpop/live-3", "bob")).status_code == 403
    del api.acd.offers["live-3"]
    # Bob's own customer calling alice: she learns the name, nothing else of the record.
    await api.patch(f"/api/customers/{anna['id']}", {"owner": "bob"}, "sue")
    private = (await api.get("/api/screenpop/live-1", "alice")).json()
    assert private["customer"] == {
        "id": anna["id"],
        "name": anna["name"],
        "phone": "+49 30 1234567",
        "private": True,
    }
    assert private["editable"] is False
    # A supervisor sees the card and every recording of the number.
    full = (await api.get("/api/screenpop/live-1", "sue")).json()
    assert full["customer"]["grade"] == "B"
    assert full["calls"][1]["recordings"] == ["rec-" + "2" * 24]
    assert (await api.get("/api/screenpop/nope", "alice")).status_code == 404


async def test_screen_pop_lists_the_callers_open_tickets_the_user_may_read(api: Api) -> None:
    anna = (await api.post("/api/customers", {**ANNA, "shared": True}, "sue")).json()
    tickets = []
    for title in ("Router broken", "Old invoice", "Sue's own"):
        body = {"type": "general", "title": title, "customer_id": anna["id"]}
        if title != "Sue's own":
            body["assignee"] = "alice"
        answer = await api.post("/api/tickets", body, "sue")
        assert answer.status_code == 201, answer.text
        tickets.append(answer.json())
    closed = tickets[1]["id"]
    for action in ("start", "close"):
        done = await api.post(f"/api/tickets/{closed}/{action}", {}, "alice")
        assert done.status_code == 200, done.text
    api.control.add("live-1", "+49 30 1234567", "1001")

    pop = (await api.get("/api/screenpop/live-1", "alice")).json()
    # Only the open one; Sue's unassigned ticket is not alice's to read.
    assert [t["title"] for t in pop["tickets"]] == ["Router broken"]
    (open_one,) = pop["tickets"]
    assert open_one["state"] == "assigned" and open_one["assignee"] == "alice"
    assert open_one["priority"] == "normal" and open_one["type"] == "general"
    assert open_one["number"] == tickets[0]["number"] and "due" in open_one
    # A supervisor reads every open ticket of the customer.
    full = (await api.get("/api/screenpop/live-1", "sue")).json()
    assert sorted(t["title"] for t in full["tickets"]) == ["Router broken", "Sue's own"]


async def test_an_id_beyond_64_bits_is_a_client_error(api: Api) -> None:
    huge = "99999999999999999999"
    for path in (f"/api/customers/{huge}", f"/api/kb/articles/{huge}"):
        answer = await api.get(path, "sue")
        assert answer.status_code in (400, 404), (path, answer.status_code, answer.text)

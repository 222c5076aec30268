"""``switchboard ticket`` against an ``httpx.MockTransport`` server (the FakeServer of
test_cli_client): the requests each command sends, what it prints, and refusals as one line
with a non-zero exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cli_client import FakeServer, paged, run

TICKET: dict[str, Any] = {
    "id": 12,
    "number": "T-000012",
    "state": "assigned",
    "priority": "high",
    "type": "complaint",
    "title": "Line dead",
    "assignee": "carol",
    "department": "support",
    "urgency": 1,
    "resolution_due": "2026-12-08T16:00:00+00:00",
    "cc": ["dave"],
}


def test_list(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/tickets")] = paged([TICKET])
    result = run(config_dir, "ticket", "list", "--open", "--assignee", "carol")
    assert result.exit_code == 0, result.output
    params = server.last.url.params
    assert params["open"] == "true" and params["assignee"] == "carol" and "state" not in params
    assert "T-000012" in result.output and "Line dead" in result.output
    assert "2026-12-08 16:00:00" in result.output


def test_show_prints_the_audit_trail(config_dir: Path, server: FakeServer) -> None:
    events = [
        {"time": "2026-12-07T09:00:00+00:00", "user": "alice", "action": "create",
         "from_state": None, "to_state": "new", "note": ""},
        {"time": "2026-12-07T09:05:00+00:00", "user": "sue", "action": "comment",
         "from_state": "new", "to_state": "new", "note": "on it"},
    ]  # fmt: skip
    server.routes[("GET", "/api/tickets/T-000012")] = (
        200,
        {**TICKET, "events": events, "notifications": []},
    )
    result = run(config_dir, "ticket", "show", "T-000012")
    assert result.exit_code == 0, result.output
    assert "2026-12-07 09:00:00 alice create -> new" in result.output
    assert "2026-12-07 09:05:00 sue comment: on it" in result.output
    assert "title:" in result.output


def test_create(config_dir: Path, server: FakeServer) -> None:
    server.routes[("POST", "/api/tickets")] = (201, TICKET)
    result = run(
        config_dir, "ticket", "create", "--type", "complaint", "--title", "Line dead",
        "--priority", "high", "--call", "rec-1", "--department", "support", "--cc", "dave",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = server.body()
    assert body["record_id"] == "rec-1" and body["cc"] == ["dave"]
    assert body["priority"] == "high" and body["customer_id"] is None
    assert "ticket T-000012 created (assigned): Line dead" in result.output


@pytest.mark.parametrize(
    ("args", "action", "body"),
    [
        (["assign", "12", "--user", "carol"], "assign", {"user": "carol", "department": None}),
        (["transfer", "12", "--department", "billing", "-m", "theirs"], "transfer",
         {"department": "billing", "note": "theirs"}),
        (["close", "12", "-m", "done"], "close", {"note": "done"}),
        (["reopen", "12"], "reopen", {"note": ""}),
        (["urge", "12", "-m", "angry"], "urge", {"note": "angry"}),
        (["comment", "12", "called back"], "comment", {"note": "called back"}),
        (["start", "12"], "start", {"note": ""}),
        (["revisit", "12", "--outcome", "happy"], "revisit", {"outcome": "happy"}),
        (["cc", "12", "--add", "dave", "--remove", "bob"], "cc",
         {"add": ["dave"], "remove": ["bob"]}),
    ],
)  # fmt: skip
def test_operations(
    config_dir: Path, server: FakeServer, args: list[str], action: str, body: dict[str, Any]
) -> None:
    server.routes[("POST", f"/api/tickets/12/{action}")] = (200, TICKET)
    result = run(config_dir, "ticket", *args)
    assert result.exit_code == 0, result.output
    sent = server.body()
    assert {k: sent.get(k) for k in body} == body
    assert "ticket T-000012: assigned (assigned to carol)" in result.output


def test_an_illegal_move_is_one_line_and_exit_1(config_dir: Path, server: FakeServer) -> None:
    error = {"error": "cannot close a ticket that is new (only from: in_progress, revisit)"}
    server.routes[("POST", "/api/tickets/12/close")] = (409, error)
    result = run(config_dir, "ticket", "close", "12")
    assert result.exit_code == 1
    assert "cannot close a ticket that is new" in result.output

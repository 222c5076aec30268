"""The live CLI commands against an ``httpx.MockTransport`` server: the request each command
sends, what it prints (tables, ``--json`` arrays), the error lines and exit codes, and how
the client finds the server and its token (config, ``admin.token``, environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import cli.client
from cli.client import ApiClient, ApiError, Target, locate
from cli.commands import event_line
from cli.main import app

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "local-admin-token-123"

Answer = tuple[int, Any] | httpx.Response
Route = Answer | Callable[[httpx.Request], Answer]


@dataclass
class FakeServer:
    """Routes (method, path) to an answer; records every request it saw."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": f"no route {request.url.path}"})
        answer = route(request) if callable(route) else route
        if isinstance(answer, httpx.Response):
            return answer
        status, body = answer
        return httpx.Response(status, json=body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content or b"null")


def paged(items: list[dict[str, Any]]) -> Callable[[httpx.Request], Answer]:
    """A paged list endpoint as docs/api.md describes it."""

    def answer(request: httpx.Request) -> Answer:
        page = int(request.url.params.get("page", "1"))
        per_page = int(request.url.params.get("per_page", "50"))
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        return 200, {"items": chunk, "total": len(items), "page": page, "per_page": per_page}

    return answer


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "switchboard.yaml").write_text('extensions: {"1001": {password: pw}}\n')
    (tmp_path / "admin.token").write_text(TOKEN + "\n")
    return tmp_path


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(cli.client, "transport", httpx.MockTransport(fake))
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)
    return fake


def run(config_dir: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, [*args, "--config", str(config_dir)], input=input)


CALLS = [
    {
        "id": "c1",
        "caller": "sip:1001@switchboard",
        "callee": "1002",
        "state": "up",
        "caller_ext": "1001",
        "callee_ext": "1002",
        "linked_id": None,
        "ivr_keys": None,
        "started_at": "2026-12-06T17:09:06.123+00:00",
        "answered_at": "2026-12-06T17:09:08.000+00:00",
    },
    {
        "id": "c2",
        "caller": "1003",
        "callee": "600",
        "state": "ringing",
        "caller_ext": "1003",
        "callee_ext": None,
        "linked_id": None,
        "ivr_keys": "1",
        "started_at": "2026-12-06T17:10:00+00:00",
        "answered_at": None,
    },
]


# -- finding the server and the token -----------------------------------------------------


def test_locate_reads_token_file_and_default_address(config_dir: Path) -> None:
    target = locate(config_dir, env={})
    assert target == Target("http://127.0.0.1:8080", TOKEN, str(config_dir / "admin.token"))


def test_locate_http_section_and_wildcard_hosts(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("http: {host: 0.0.0.0, port: 9181}\n")
    assert locate(config, env={}).url == "http://127.0.0.1:9181"
    config.write_text('http: {host: "::", port: 9182}\n')
    assert locate(config, env={}).url == "http://[::1]:9182"
    config.write_text("http: {host: 10.1.2.3}\n")
    assert locate(config, env={}).url == "http://10.1.2.3:8080"
    # No token file next to the YAML file: no token, and where it was looked for.
    assert locate(config, env={}).token is None
    assert locate(config, env={}).token_source == str(tmp_path / "admin.token")


def test_locate_config_with_problems_elsewhere(tmp_path: Path) -> None:
    """A config the server would refuse now (an unknown key) still names the port of the
    server that runs."""
    (tmp_path / "switchboard.yaml").write_text("bogus: 1\nhttp: {port: 9444}\n")
    assert locate(tmp_path, env={}).url == "http://127.0.0.1:9444"
    (tmp_path / "switchboard.yaml").write_text("http: {port: [\n")  # not YAML at all
    assert locate(tmp_path, env={}).url == "http://127.0.0.1:8080"


def test_locate_default_folder_not_made_yet(tmp_path: Path) -> None:
    target = locate(tmp_path / "var", env={})
    assert target == Target("http://127.0.0.1:8080", None, str(tmp_path / "var" / "admin.token"))


def test_locate_unreadable_token(config_dir: Path) -> None:
    (config_dir / "admin.token").unlink()
    (config_dir / "admin.token").mkdir()  # reading it fails (as a 0600 file of another user)
    target = locate(config_dir, env={})
    assert target.token is None and target.token_source.startswith(f"{config_dir}/admin.token (")


def test_locate_env_overrides(config_dir: Path) -> None:
    env = {"SWITCHBOARD_URL": "http://example.test:1234/", "SWITCHBOARD_TOKEN": "sbt_x"}
    assert locate(config_dir, env=env) == Target(
        "http://example.test:1234", "sbt_x", "$SWITCHBOARD_TOKEN"
    )


def test_bearer_token_sent(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/calls"] = paged([])
    assert run(config_dir, "call", "list").exit_code == 0
    assert server.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert server.last.url.host == "127.0.0.1" and server.last.url.port == 8080


def test_env_token_and_url_used(
    config_dir: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_URL", "http://10.9.8.7:9999")
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "sbt_script")
    server.routes["GET", "/api/calls"] = paged([])
    assert run(config_dir, "call", "list").exit_code == 0
    assert server.last.headers["authorization"] == "Bearer sbt_script"
    assert str(server.last.url).startswith("http://10.9.8.7:9999/api/calls?")


# -- listings ------------------------------------------------------------------------------


def test_call_list_json_is_the_raw_items(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/calls"] = paged(CALLS)
    result = run(config_dir, "call", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == CALLS
    assert all("id" in call for call in json.loads(result.stdout))


def test_call_list_table(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/calls"] = paged(CALLS)
    result = run(config_dir, "call", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "CALLER", "CALLEE", "STARTED", "ANSWERED"]
    assert lines[1].split()[:4] == ["c1", "up", "sip:1001@switchboard", "1002"]
    assert "2026-12-06 17:09:06" in lines[1]
    assert lines[2].split()[:2] == ["c2", "ringing"]


def test_empty_listing(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/calls"] = paged([])
    result = run(config_dir, "call", "list")
    assert (result.exit_code, result.stdout) == (0, "no calls\n")
    assert json.loads(run(config_dir, "call", "list", "--json").stdout) == []


def test_listing_fetches_every_page(
    config_dir: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.client, "MAX_PER_PAGE", 2)
    regs = [{"aor": f"10{i:02d}", "contact": f"sip:x@h:{i}"} for i in range(5)]
    server.routes["GET", "/api/registrations"] = paged(regs)
    result = run(config_dir, "reg", "list", "--json")
    assert json.loads(result.stdout) == regs
    pages = [(r.url.params["page"], r.url.params["per_page"]) for r in server.requests]
    assert pages == [("1", "2"), ("2", "2"), ("3", "2")]


def test_listing_limit(config_dir: Path, server: FakeServer) -> None:
    regs = [{"aor": f"10{i:02d}"} for i in range(5)]
    server.routes["GET", "/api/registrations"] = paged(regs)
    result = run(config_dir, "reg", "list", "--json", "--limit", "3")
    assert json.loads(result.stdout) == regs[:3]
    assert len(server.requests) == 1 and server.last.url.params["per_page"] == "3"


def test_reg_list_filter_and_table(config_dir: Path, server: FakeServer) -> None:
    reg = {
        "aor": "1001",
        "contact": "sip:1001@127.0.0.1:5070",
        "source": "127.0.0.1:5070",
        "transport": "udp",
        "expires_in": 3599,
        "user_agent": "PJSUA2",
    }
    server.routes["GET", "/api/registrations"] = paged([reg])
    result = run(config_dir, "reg", "list", "--aor", "1001")
    assert result.exit_code == 0
    assert server.last.url.params["aor"] == "1001"
    assert result.stdout.splitlines()[1].split() == [
        "1001",
        "sip:1001@127.0.0.1:5070",
        "127.0.0.1:5070",
        "udp",
        "3599",
        "PJSUA2",
    ]
    assert json.loads(run(config_dir, "reg", "list", "--json").stdout) == [reg]


@pytest.mark.parametrize(
    ("command", "path", "item", "first_row"),
    [
        (
            "ext",
            "/api/extensions",
            {"number": "1001", "name": "Alice", "registered": True},
            ["1001", "Alice", "yes"],
        ),
        (
            "queue",
            "/api/queues",
            {
                "name": "support",
                "strategy": "ring_all",
                "waiting": 2,
                "longest_wait_seconds": 31.4,
                "agents": {"AVAILABLE": 1},
            },
            ["support", "ring_all", "2", "31s", "AVAILABLE", "1"],
        ),
        (
            "agent",
            "/api/agents",
            {
                "id": "alice",
                "name": "Alice",
                "extensions": ["1001"],
                "state": "NOT_READY",
                "reason": "lunch",
                "since": "2026-12-06T12:00:00+00:00",
                "queues": ["support", "sales"],
            },
            ["alice", "Alice", "NOT_READY", "lunch", "2026-12-06", "12:00:00", "1001"],
        ),
        (
            "user",
            "/api/users",
            {
                "name": "bob",
                "role": "supervisor",
                "agent": None,
                "created_at": "2026-12-06T10:00:00+00:00",
                "disabled": False,
            },
            ["bob", "supervisor", "2026-12-06", "10:00:00", "no"],
        ),
        (
            "token",
            "/api/tokens",
            {
                "id": 7,
                "user": "bob",
                "name": "crm",
                "created_at": "2026-12-06T10:00:00+00:00",
                "last_used_at": None,
                "revoked": False,
            },
            ["7", "bob", "crm", "2026-12-06", "10:00:00", "no"],
        ),
        (
            "trunk",
            "/api/trunks",
            {
                "name": "carrier",
                "state": "registered",
                "registered": True,
                "last_status": 200,
                "channels": 1,
                "max_channels": 30,
            },
            ["carrier", "registered", "yes", "200", "1", "30"],
        ),
    ],
)
def test_list_commands(
    config_dir: Path,
    server: FakeServer,
    command: str,
    path: str,
    item: dict[str, Any],
    first_row: list[str],
) -> None:
    server.routes["GET", path] = paged([item])
    result = run(config_dir, command, "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[: len(first_row)] == first_row
    as_json = run(config_dir, command, "list", "--json")
    assert json.loads(as_json.stdout) == [item]


def test_cdr_search_filters(config_dir: Path, server: FakeServer) -> None:
    record = {
        "id": 1,
        "call_id": "abc",
        "caller": "1001",
        "callee": "1002",
        "start": "2026-12-06T09:00:00+00:00",
        "disposition": "NO ANSWER",
        "billable_seconds": 0.0,
        "queue": "support",
        "agent": "alice",
        "dialled": "600",
    }
    server.routes["GET", "/api/cdrs"] = paged([record])
    result = run(
        config_dir,
        "cdr",
        "search",
        "--since",
        "2026-12-06",
        "--until",
        "2026-12-07T00:00:00",
        "--number",
        "100",
        "--agent",
        "alice",
        "--queue",
        "support",
        "--disposition",
        "no-answer",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [record]
    params = dict(server.last.url.params)
    assert params == {
        "since": "2026-12-06",
        "until": "2026-12-07T00:00:00",
        "number": "100",
        "agent": "alice",
        "queue": "support",
        "disposition": "NO ANSWER",
        "page": "1",
        "per_page": "500",
    }
    table = run(config_dir, "cdr", "search").stdout.splitlines()
    assert table[0].split()[:3] == ["START", "CALLER", "CALLEE"]
    assert "NO ANSWER" in table[1] and "alice" in table[1]


# -- one-thing commands --------------------------------------------------------------------


def test_status(config_dir: Path, server: FakeServer) -> None:
    health = {
        "status": "ok",
        "version": "0.1.0",
        "uptime_seconds": 3725.5,
        "calls": 2,
        "registrations": 3,
    }
    server.routes["GET", "/api/health"] = (200, health)
    result = run(config_dir, "status")
    assert result.exit_code == 0
    assert result.stdout == (
        "switchboard 0.1.0 at http://127.0.0.1:8080: ok, up 1h02m05s, 2 call(s), "
        "3 registration(s)\n"
    )
    assert json.loads(run(config_dir, "status", "--json").stdout) == health


def test_call_show_hangup_originate(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/calls/a b/c"] = (200, CALLS[0])
    result = run(config_dir, "call", "show", "a b/c")
    assert result.exit_code == 0, result.output
    assert server.last.url.raw_path == b"/api/calls/a%20b%2Fc"
    assert (
        "id:          c1" in result.stdout and "answered_at: 2026-12-06 17:09:08" in result.stdout
    )
    assert json.loads(run(config_dir, "call", "show", "a b/c", "--json").stdout) == CALLS[0]

    server.routes["POST", "/api/calls/c1/hangup"] = (200, {"id": "c1", "hung_up": True})
    result = run(config_dir, "call", "hangup", "c1")
    assert (result.exit_code, result.stdout) == (0, "call c1 hung up\n")
    assert server.last.method == "POST"

    server.routes["POST", "/api/calls"] = (200, {"originate_id": "o-9"})
    result = run(config_dir, "call", "originate", "--extension", "1001", "5551234")
    assert result.exit_code == 0, result.output
    assert server.body() == {"extension": "1001", "number": "5551234"}
    assert result.stdout == "ringing 1001, then dialling 5551234 (originate id o-9)\n"


def test_ext_add_remove_passwd(config_dir: Path, server: FakeServer) -> None:
    server.routes["POST", "/api/extensions"] = (201, {"number": "1009", "password": "gen-pw"})
    result = run(config_dir, "ext", "add", "1009", "--name", "Ivy")
    assert (result.exit_code, result.stdout) == (0, "extension 1009 added; password gen-pw\n")
    assert server.body() == {"number": "1009", "name": "Ivy"}
    run(config_dir, "ext", "add", "1010", "--password", "given")
    assert server.body() == {"number": "1010", "password": "given"}

    server.routes["DELETE", "/api/extensions/1009"] = (200, {"number": "1009"})
    result = run(config_dir, "ext", "remove", "1009")
    assert (result.exit_code, result.stdout) == (0, "extension 1009 removed\n")

    route = ("PUT", "/api/extensions/1009/password")
    server.routes[route] = lambda r: (200, {"number": "1009", **json.loads(r.content)})
    result = run(config_dir, "ext", "passwd", "1009", "--password", "new-pw")
    assert (result.exit_code, result.stdout) == (0, "extension 1009 password new-pw\n")
    server.routes[route] = (200, {"number": "1009", "password": "made-up"})
    result = run(config_dir, "ext", "passwd", "1009")
    assert server.body() == {}
    assert result.stdout == "extension 1009 password made-up\n"


def test_queue_show_and_stats(config_dir: Path, server: FakeServer) -> None:
    queue = {
        "name": "support",
        "strategy": "longest_idle",
        "waiting": 1,
        "longest_wait_seconds": 12.0,
        "agents": {"AVAILABLE": 2, "NOT_READY": 1},
        "members": ["alice", "bob"],
        "today": {
            "offered": 10,
            "answered": 8,
            "abandoned": 2,
            "service_level": 0.75,
            "service_level_seconds": 20,
            "asa_seconds": 9.6,
        },
    }
    server.routes["GET", "/api/queues/support"] = (200, queue)
    shown = run(config_dir, "queue", "show", "support")
    assert shown.exit_code == 0
    assert "members:              alice, bob" in shown.stdout
    assert "offered" not in shown.stdout
    assert json.loads(run(config_dir, "queue", "show", "support", "--json").stdout) == queue

    stats = run(config_dir, "queue", "stats", "support")
    assert stats.exit_code == 0
    assert "  service level  75.0% (answered within 20s)\n" in stats.stdout
    assert "  ASA            10s\n" in stats.stdout
    assert "now: 1 waiting, longest 12s; agents AVAILABLE 2, NOT_READY 1" in stats.stdout
    as_json = json.loads(run(config_dir, "queue", "stats", "support", "--json").stdout)
    assert as_json == {"name": "support", **queue["today"], "waiting": 1}  # type: ignore[dict-item]


def test_queue_stats_before_any_call(config_dir: Path, server: FakeServer) -> None:
    today = {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "service_level": None,
        "service_level_seconds": 20,
        "asa_seconds": None,
    }
    queue = {"name": "sales", "waiting": 0, "longest_wait_seconds": 0, "agents": {}, "today": today}
    server.routes["GET", "/api/queues/sales"] = (200, queue)
    stats = run(config_dir, "queue", "stats", "sales")
    assert stats.stdout.splitlines()[4:6] == [
        "  service level  - (answered within 20s)",
        "  ASA            -",
    ]


def test_agent_actions(config_dir: Path, server: FakeServer) -> None:
    def agent(state: str, reason: str | None = None) -> Callable[[httpx.Request], Answer]:
        return lambda r: (200, {"id": "alice", "state": state, "reason": reason})

    server.routes["POST", "/api/agents/alice/login"] = agent("AVAILABLE")
    server.routes["POST", "/api/agents/alice/logout"] = agent("LOGGED_OUT")
    server.routes["POST", "/api/agents/alice/pause"] = agent("NOT_READY", "lunch")
    server.routes["POST", "/api/agents/alice/unpause"] = agent("AVAILABLE")
    assert run(config_dir, "agent", "login", "alice").stdout == "agent alice: AVAILABLE\n"
    result = run(config_dir, "agent", "pause", "alice", "--reason", "lunch")
    assert result.stdout == "agent alice: NOT_READY (lunch)\n"
    assert server.body() == {"reason": "lunch"}
    run(config_dir, "agent", "pause", "alice")
    assert server.body() == {}
    assert run(config_dir, "agent", "unpause", "alice").stdout == "agent alice: AVAILABLE\n"
    assert run(config_dir, "agent", "logout", "alice").stdout == "agent alice: LOGGED_OUT\n"
    assert [r.url.path for r in server.requests] == [
        "/api/agents/alice/login",
        "/api/agents/alice/pause",
        "/api/agents/alice/pause",
        "/api/agents/alice/unpause",
        "/api/agents/alice/logout",
    ]


def test_user_add_passwd_role(config_dir: Path, server: FakeServer) -> None:
    server.routes["POST", "/api/users"] = (201, {"name": "amy"})
    result = run(
        config_dir, "user", "add", "amy", "--role", "agent", "--agent", "alice", "--password", "s3"
    )
    assert (result.exit_code, result.stdout) == (
        0,
        "user amy added with role agent (agent alice)\n",
    )
    assert server.body() == {"name": "amy", "role": "agent", "password": "s3", "agent": "alice"}

    # Without --password: asked for, hidden, twice.
    result = run(config_dir, "user", "add", "sam", "--role", "qa", input="pw1\npw1\n")
    assert result.exit_code == 0, result.output
    assert server.body() == {"name": "sam", "role": "qa", "password": "pw1"}
    assert "pw1" not in result.stdout

    result = run(config_dir, "user", "add", "x", "--role", "boss", "--password", "p")
    assert result.exit_code == 2  # usage error: not a role
    assert len(server.requests) == 2

    server.routes["PUT", "/api/users/amy/password"] = (200, {"name": "amy"})
    result = run(config_dir, "user", "passwd", "amy", "--password", "new")
    assert (result.exit_code, server.body()) == (0, {"password": "new"})
    result = run(config_dir, "user", "passwd", "amy", input="n2\nn2\n")
    assert (result.exit_code, server.body()) == (0, {"password": "n2"})

    server.routes["PUT", "/api/users/amy/role"] = (200, {"name": "amy"})
    result = run(config_dir, "user", "role", "amy", "supervisor")
    assert (result.exit_code, server.body()) == (0, {"role": "supervisor"})
    run(config_dir, "user", "role", "amy", "agent", "--agent", "bob")
    assert server.body() == {"role": "agent", "agent": "bob"}


def test_token_create_revoke(config_dir: Path, server: FakeServer) -> None:
    server.routes["POST", "/api/tokens"] = (201, {"id": 4, "token": "sbt_secret"})
    result = run(config_dir, "token", "create", "--user", "bob", "--name", "crm")
    assert result.exit_code == 0
    assert result.stdout == "sbt_secret\n"  # alone, for TOKEN=$(switchboard token create ...)
    assert "token 4 for bob" in result.stderr
    assert server.body() == {"user": "bob", "name": "crm"}
    as_json = run(config_dir, "token", "create", "--user", "bob", "--json")
    assert json.loads(as_json.stdout) == {"id": 4, "token": "sbt_secret"}

    server.routes["DELETE", "/api/tokens/4"] = (200, {"id": 4, "revoked": True})
    result = run(config_dir, "token", "revoke", "4")
    assert (result.exit_code, result.stdout) == (0, "token 4 revoked\n")


def test_trunk_status(config_dir: Path, server: FakeServer) -> None:
    trunk = {"name": "carrier", "state": "registered", "registered": True}
    server.routes["GET", "/api/trunks/carrier"] = (200, trunk)
    server.routes["GET", "/api/trunks/nope"] = (404, {"error": "no trunk 'nope'"})
    result = run(config_dir, "trunk", "status", "carrier")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "name:       carrier",
        "state:      registered",
        "registered: yes",
    ]
    assert json.loads(run(config_dir, "trunk", "status", "carrier", "--json").stdout) == trunk
    missing = run(config_dir, "trunk", "status", "nope")
    assert (missing.exit_code, missing.stderr) == (1, "no trunk 'nope'\n")


# -- the event stream ----------------------------------------------------------------------

EVENTS = [
    {
        "type": "agent_state",
        "time": "2026-12-06T17:00:00.5+00:00",
        "agent": "alice",
        "old_state": "AVAILABLE",
        "new_state": "NOT_READY",
        "event": "pause",
        "reason": "lunch",
    },
    {
        "type": "call",
        "time": "2026-12-06T17:00:01+00:00",
        "call_id": "c1",
        "event": "started",
        "caller": "1001",
        "callee": "1002",
        "caller_ext": "1001",
        "callee_ext": "1002",
    },
]


def sse(events: list[dict[str, Any]], then: BaseException | None = None) -> Iterator[bytes]:
    yield b": connected\n\n"
    for event in events:
        yield b"data: " + json.dumps(event).encode() + b"\n\n"
        yield b": keep-alive\n\n"
    if then is not None:
        raise then


def test_watch_lines_and_json(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/events"] = lambda r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse(EVENTS)
    )
    result = run(config_dir, "watch")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "2026-12-06 17:00:00 agent_state alice AVAILABLE -> NOT_READY event=pause reason=lunch",
        "2026-12-06 17:00:01 call started 1001 -> 1002 call_id=c1 caller_ext=1001 callee_ext=1002",
    ]
    result = run(config_dir, "watch", "--json")
    assert [json.loads(line) for line in result.stdout.splitlines()] == EVENTS


def test_watch_ctrl_c_exits_0(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/events"] = lambda r: httpx.Response(
        200, content=sse(EVENTS[:1], then=KeyboardInterrupt())
    )
    result = run(config_dir, "watch", "--json")
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == EVENTS[:1]
    assert result.stderr == ""


def test_watch_refused(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/events"] = (401, {"error": "bad token"})
    result = run(config_dir, "watch")
    assert result.exit_code == 3
    assert result.stderr == f"not authorised: bad token (token from {config_dir}/admin.token)\n"


def test_event_line_other_types() -> None:
    assert (
        event_line(
            {
                "type": "queue",
                "time": "2026-12-06T17:00:00+00:00",
                "queue": "support",
                "event": "ENTERQUEUE",
                "call_id": "q1",
                "agent": None,
                "data": ["", "1"],
            }
        )
        == "2026-12-06 17:00:00 queue support ENTERQUEUE call_id=q1 data=, 1"
    )
    agent_wide = {"type": "queue", "queue": "", "event": "PAUSE", "agent": "bob", "data": ["lunch"]}
    assert event_line(agent_wide) == "queue PAUSE agent=bob data=lunch"
    assert event_line({"type": "registration", "aor": "1001", "event": "added"}) == (
        "registration added 1001"
    )
    assert event_line({"type": "new_kind", "x": 1}) == "new_kind x=1"


# -- errors: one line, documented exit codes -----------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "line"),
    [
        (404, {"error": "no live call c9"}, 1, "no live call c9"),
        (409, {"error": "user amy exists"}, 1, "user amy exists"),
        (422, {"error": "number: must\nbe digits"}, 1, "number: must be digits"),
        (401, {"error": "bad token"}, 3, "not authorised: bad token (token from {token})"),
        (403, {"error": "needs role admin"}, 3, "not authorised: needs role admin"),
        (500, {"error": "boom"}, 4, "server error 500: boom"),
        (502, "<html>bad gateway</html>", 4, "server error 502: Bad Gateway"),
    ],
)
def test_error_mapping(
    config_dir: Path, server: FakeServer, status: int, body: Any, code: int, line: str
) -> None:
    answer = (
        httpx.Response(status, text=body)
        if isinstance(body, str)
        else httpx.Response(status, json=body)
    )
    server.routes["POST", "/api/calls/c9/hangup"] = answer
    result = run(config_dir, "call", "hangup", "c9")
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr == line.format(token=config_dir / "admin.token") + "\n"


def test_missing_token_file_says_so(config_dir: Path, server: FakeServer) -> None:
    (config_dir / "admin.token").unlink()
    server.routes["GET", "/api/calls"] = (401, {"error": "no credentials"})
    result = run(config_dir, "call", "list")
    assert result.exit_code == 3
    assert result.stderr == (
        f"not authorised: no token: {config_dir}/admin.token is missing, empty or unreadable\n"
    )
    assert "authorization" not in server.last.headers


def test_timeout_is_a_server_error(config_dir: Path, server: FakeServer) -> None:
    def slow(request: httpx.Request) -> Answer:
        raise httpx.ReadTimeout("timed out", request=request)

    server.routes["GET", "/api/calls"] = slow
    result = run(config_dir, "call", "list")
    assert (result.exit_code, result.stderr) == (
        4,
        "switchboard at http://127.0.0.1:8080 did not answer within 10 s\n",
    )


def test_not_json_is_a_server_error(config_dir: Path, server: FakeServer) -> None:
    server.routes["GET", "/api/health"] = httpx.Response(200, text="hello")
    result = run(config_dir, "status")
    assert result.exit_code == 4
    assert result.stderr == "switchboard answered GET /api/health with something that is not JSON\n"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_no_running_server_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real connection refused (nothing listens on the port): no MockTransport here."""
    monkeypatch.setattr(cli.client, "transport", None)
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    port = free_port()
    (tmp_path / "switchboard.yaml").write_text(f"http: {{port: {port}}}\n")
    for args in (["status"], ["call", "list", "--json"], ["call", "hangup", "c1"], ["watch"]):
        result = run(tmp_path, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr == (
            f"no running switchboard at http://127.0.0.1:{port} (start it with switchboard serve)\n"
        )
        assert result.stdout == ""


def test_client_raises_api_error_with_status() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(409, json={"error": "exists"}))
    target = Target("http://sb.test", "t", "x")
    with ApiClient(target, http_transport=transport) as api, pytest.raises(ApiError) as caught:
        api.post("/api/users", {"name": "a"})
    assert (str(caught.value), caught.value.exit_code, caught.value.status) == ("exists", 1, 409)


# -- the CLI stays a thin front end ---------------------------------------------------------


def test_help_and_live_commands_load_no_sip_core(tmp_path: Path) -> None:
    """`--help` imports neither pbx nor media; a live command loads the config (whose schema
    uses pbx's small dialplan helpers) but never the SIP stack, media or the app."""
    port = free_port()
    (tmp_path / "switchboard.yaml").write_text(f"http: {{port: {port}}}\n")
    script = (
        "import sys\n"
        "from cli.main import app\n"
        "def run(args):\n"
        "    try:\n"
        "        app(args, prog_name='switchboard')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "run(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pbx', 'media', 'app')))\n"
        f"run(['call', 'list', '--config', {str(tmp_path)!r}])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pbx', 'media', 'app')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "[]", out.stdout
    loaded = eval(lines[-1])
    assert not [m for m in loaded if m.split(".")[0] in ("media", "app")], loaded
    assert not {"pbx.server", "pbx.stack", "pbx.b2bua", "pbx.transport"} & set(loaded), loaded
    assert "no running switchboard" in out.stderr


def test_help_lists_the_commands_and_completion() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "status",
        "watch",
        "reg",
        "call",
        "ext",
        "queue",
        "agent",
        "cdr",
        "user",
        "token",
        "trunk",
        "serve",
        "config",
    ):
        assert f"\n  {command} " in result.stdout, command
    assert "--install-completion" in result.stdout


def test_shell_completion_completes_commands_and_roles() -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_SWITCHBOARD_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        out = subprocess.run(
            [sys.executable, "-m", "cli"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.split()

    assert complete("switchboard ca") == ["call"]
    assert complete("switchboard user add amy --role ") == ["agent", "supervisor", "qa", "admin"]

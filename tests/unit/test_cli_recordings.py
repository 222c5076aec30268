"""``switchboard recording`` against an ``httpx.MockTransport`` server (the FakeServer of
test_cli_client): the requests sent, what is printed and written, SHA-256 checking of a
download, and the exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_cli_client import TOKEN, FakeServer, paged, run

AUDIO = b"fLaC" + bytes(range(256)) * 10
SHA = hashlib.sha256(AUDIO).hexdigest()
RID = "rec-0123456789abcdef01234567"
ROW: dict[str, Any] = {
    "id": RID,
    "recording_id": RID,
    "call_id": "call1",
    "started": "2026-12-06T08:01:00+00:00",
    "duration": 42.4,
    "state": "complete",
    "caller": "5551234",
    "callee": "1001",
    "extension": "1001",
    "agent": "a1",
    "queue": "sales",
    "sha256": SHA,
}


def _audio_routes(server: FakeServer, row: dict[str, Any], body: bytes = AUDIO) -> None:
    server.routes[("GET", f"/api/recordings/{RID}")] = (200, row)
    server.routes[("GET", f"/api/recordings/{RID}/audio")] = httpx.Response(
        200, content=body, headers={"Content-Type": "audio/flac"}
    )


# -- search ------------------------------------------------------------------------------------


def test_search_table_and_filters(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/recordings")] = paged([ROW])
    result = run(
        config_dir,
        "recording",
        "search",
        "--agent",
        "a1",
        "--customer",
        "7",
        "--disposition",
        "no-answer",
        "--since",
        "2026-12-06",
        "--number",
        "555",
    )
    assert result.exit_code == 0, result.output
    header, line = result.stdout.splitlines()
    assert header.split() == [
        "STARTED", "LENGTH", "STATE", "CALLER", "CALLEE", "EXTENSION", "AGENT", "QUEUE", "ID"
    ]  # fmt: skip
    assert line.split() == [
        "2026-12-06", "08:01:00", "42s", "complete", "5551234", "1001", "1001", "a1", "sales", RID
    ]  # fmt: skip
    params = server.last.url.params
    assert (params["agent"], params["customer"], params["disposition"]) == ("a1", "7", "NO ANSWER")
    assert (params["since"], params["number"]) == ("2026-12-06", "555")
    assert server.last.headers["authorization"] == f"Bearer {TOKEN}"


def test_search_json_has_ids(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/recordings")] = paged([ROW, {**ROW, "id": "rec-2"}])
    result = run(config_dir, "recording", "search", "--json", "--limit", "1")
    assert result.exit_code == 0
    assert [item["id"] for item in json.loads(result.stdout)] == [RID]


def test_search_nothing(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/recordings")] = paged([])
    result = run(config_dir, "recording", "search")
    assert (result.exit_code, result.stdout) == (0, "no recordings\n")


# -- get -----------------------------------------------------------------------------------------


def test_get_writes_the_verified_file(config_dir: Path, server: FakeServer, tmp_path: Path) -> None:
    _audio_routes(server, ROW)
    out = tmp_path / "call.flac"
    result = run(config_dir, "recording", "get", RID, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == AUDIO
    assert f"({len(AUDIO)} bytes, SHA-256 verified)" in result.stdout
    assert server.last.url.path == f"/api/recordings/{RID}/audio"
    assert server.last.url.params["download"] == "1"
    assert not (tmp_path / "call.flac.part").exists()


def test_get_refuses_a_mismatch(config_dir: Path, server: FakeServer, tmp_path: Path) -> None:
    _audio_routes(server, ROW, AUDIO[:-1] + b"X")
    out = tmp_path / "call.flac"
    out.write_bytes(b"old")
    result = run(config_dir, "recording", "get", RID, "-o", str(out))
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "SHA-256" in result.stderr and SHA in result.stderr
    assert out.read_bytes() == b"old"  # untouched
    assert not (tmp_path / "call.flac.part").exists()


def test_get_without_a_recorded_checksum(
    config_dir: Path, server: FakeServer, tmp_path: Path
) -> None:
    _audio_routes(server, {**ROW, "sha256": None, "state": "truncated"})
    out = tmp_path / "call.flac"
    result = run(config_dir, "recording", "get", RID, "-o", str(out))
    assert result.exit_code == 0
    assert out.read_bytes() == AUDIO
    assert "not verified" in result.stdout


@pytest.mark.parametrize(
    ("status", "code"), [(404, 1), (409, 1), (403, 3), (503, 4)]
)  # fmt: skip
def test_get_errors(
    config_dir: Path, server: FakeServer, tmp_path: Path, status: int, code: int
) -> None:
    server.routes[("GET", f"/api/recordings/{RID}")] = (200, ROW)
    server.routes[("GET", f"/api/recordings/{RID}/audio")] = (status, {"error": "nope there"})
    out = tmp_path / "call.flac"
    result = run(config_dir, "recording", "get", RID, "-o", str(out))
    assert result.exit_code == code
    assert "nope there" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "call.flac.part").exists()


# -- export --------------------------------------------------------------------------------------


def test_export(config_dir: Path, server: FakeServer, tmp_path: Path) -> None:
    sheet = b"PK\x03\x04 pretend xlsx"
    server.routes[("GET", "/api/recordings/export")] = httpx.Response(200, content=sheet)
    out = tmp_path / "recs.xlsx"
    result = run(
        config_dir, "recording", "export", "--format", "xlsx", "-o", str(out), "--queue", "sales"
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == sheet
    params = server.last.url.params
    assert (params["format"], params["queue"]) == ("xlsx", "sales")
    assert "agent" not in params
    assert f"(xlsx, {len(sheet)} bytes)" in result.stdout


def test_export_csv_is_the_default_and_413_writes_nothing(
    config_dir: Path, server: FakeServer, tmp_path: Path
) -> None:
    server.routes[("GET", "/api/recordings/export")] = (413, {"error": "200000 recordings match"})
    out = tmp_path / "recs.csv"
    result = run(config_dir, "recording", "export", "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.strip() == "200000 recordings match"
    assert server.last.url.params["format"] == "csv"
    assert list(tmp_path.iterdir()) == [config_dir]
    assert run(config_dir, "recording", "export", "--format", "pdf", "-o", str(out)).exit_code == 2


# -- recording a live call -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "state"),
    [("start", "recording"), ("stop", "stopped"), ("pause", "paused"), ("resume", "recording")],
)
def test_control(config_dir: Path, server: FakeServer, action: str, state: str) -> None:
    server.routes[("POST", "/api/calls/c/1/recording")] = (
        200,
        {"recording_id": RID, "state": state},
    )
    result = run(config_dir, "recording", action, "c/1")
    assert result.exit_code == 0, result.output
    assert server.body() == {"action": action}
    assert server.last.url.raw_path == b"/api/calls/c%2F1/recording"  # one path segment
    assert result.stdout == f"call c/1: recording {RID} {state}\n"


@pytest.mark.parametrize(("status", "code"), [(404, 1), (409, 1), (403, 3), (503, 4)])
def test_control_errors(config_dir: Path, server: FakeServer, status: int, code: int) -> None:
    server.routes[("POST", "/api/calls/c1/recording")] = (status, {"error": "refused here"})
    result = run(config_dir, "recording", "start", "c1")
    assert result.exit_code == code
    assert "refused here" in result.stderr

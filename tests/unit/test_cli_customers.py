"""``switchboard customer`` against an ``httpx.MockTransport`` server (the FakeServer of
test_cli_client): the requests sent, the import's body and report table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.unit.test_cli_client import FakeServer, paged, run

ANNA: dict[str, Any] = {
    "id": 7,
    "name": "Anna Schmidt",
    "phone": "+49 30 1234567",
    "grade": "B",
    "company": "Acme",
    "tags": ["vip", "reseller"],
    "owner": "alice",
    "numbers": [{"id": 3, "number": "+86 138 0013 8000", "kind": "mobile"}],
    "custom": {"contract": "gold"},
    "last_followup_at": "2026-12-06T08:00:00+00:00",
}


def test_search_sends_filters_and_prints_a_table(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/customers")] = paged([ANNA])
    result = run(
        config_dir, "customer", "search", "-q", "schmidt", "--number", "030 1234567",
        "--grade", "b", "--pool", "--field", "contract:gold", "--field", "seats:2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    params = server.last.url.params
    assert params["q"] == "schmidt" and params["number"] == "030 1234567"
    assert params["grade"] == "B" and params["pool"] == "true"
    assert params.get_list("field") == ["contract:gold", "seats:2"]
    assert "Anna Schmidt" in result.output and "vip, reseller" in result.output


def test_show(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/customers/7")] = (200, ANNA)
    server.routes[("GET", "/api/customers/7/followups")] = paged(
        [{"time": "2026-12-06T08:00:00+00:00", "user": "alice", "note": "called"}]
    )
    result = run(config_dir, "customer", "show", "7")
    assert result.exit_code == 0, result.output
    assert "mobile +86 138 0013 8000" in result.output
    assert "follow-up 2026-12-06 08:00:00 alice: called" in result.output
    server.routes[("GET", "/api/customers/8")] = (404, {"error": "no customer 8"})
    missing = run(config_dir, "customer", "show", "8")
    assert missing.exit_code == 1 and "no customer 8" in missing.output


def test_add(config_dir: Path, server: FakeServer) -> None:
    server.routes[("POST", "/api/customers")] = (201, ANNA)
    result = run(
        config_dir, "customer", "add", "--name", "Anna Schmidt", "--phone", "+49 30 1234567",
        "--grade", "b", "--tag", "vip", "--number", "mobile:+86 138 0013 8000",
        "--field", "contract=gold", "--allow-duplicate",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = server.body()
    assert body["grade"] == "B" and body["tags"] == ["vip"]
    assert body["numbers"] == [{"number": "+86 138 0013 8000", "kind": "mobile"}]
    assert body["custom"] == {"contract": "gold"}
    assert server.last.url.params["allow_duplicate"] == "true"
    assert "customer 7 added" in result.output
    server.routes[("POST", "/api/customers")] = (
        409,
        {"error": "number +49 30 1234567 belongs to customer 7 (Anna Schmidt)"},
    )
    dup = run(config_dir, "customer", "add", "--name", "B", "--phone", "030 1234567")
    assert dup.exit_code == 1 and "belongs to customer 7 (Anna Schmidt)" in dup.output


def test_import_prints_the_report_and_exits_1_on_refused_rows(
    config_dir: Path, server: FakeServer, tmp_path: Path
) -> None:
    data = b"name,phone\nAnna,030 1234567\n,030 555\n" * 5000
    file = tmp_path / "customers.csv"
    file.write_bytes(data)
    report = {
        "rows": 3,
        "imported": 1,
        "refused": 2,
        "all_or_nothing": False,
        "errors": [
            {"row": 3, "reason": "name is missing"},
            {"row": 4, "reason": "number 030 1234567 is on row 2 already"},
        ],
    }
    server.routes[("POST", "/api/customers/import")] = (200, report)
    result = run(config_dir, "customer", "import", str(file))
    assert result.exit_code == 1, result.output
    request = server.last
    assert request.content == data  # the whole file, sent in chunks
    assert request.headers["content-type"] == "text/csv"
    assert request.url.params["format"] == "csv" and "all_or_nothing" not in request.url.params
    assert "name is missing" in result.output and "ROW" in result.output
    assert "3 rows: 1 imported, 2 refused" in result.output

    xlsx = tmp_path / "c.xlsx"
    xlsx.write_bytes(b"PK")
    server.routes[("POST", "/api/customers/import")] = (
        200,
        {"rows": 1, "imported": 1, "refused": 0, "errors": []},
    )
    ok = run(config_dir, "customer", "import", str(xlsx), "--all-or-nothing", "--json")
    assert ok.exit_code == 0, ok.output
    assert server.last.url.params["format"] == "xlsx"
    assert server.last.url.params["all_or_nothing"] == "true"
    assert json.loads(ok.output)["imported"] == 1
    gone = run(config_dir, "customer", "import", str(tmp_path / "nope.csv"))
    assert gone.exit_code == 2 and "cannot read" in gone.output


def test_export(config_dir: Path, server: FakeServer, tmp_path: Path) -> None:
    server.routes[("GET", "/api/customers/export")] = httpx.Response(
        200, content=b"name,phone\n", headers={"Content-Type": "text/csv"}
    )
    out = tmp_path / "out.csv"
    result = run(config_dir, "customer", "export", "-o", str(out), "--tag", "vip")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b"name,phone\n"
    assert server.last.url.params["tag"] == "vip" and server.last.url.params["format"] == "csv"


def test_blacklist(config_dir: Path, server: FakeServer) -> None:
    server.routes[("POST", "/api/blacklist")] = (201, {"number": "+49 30 1234567"})
    added = run(config_dir, "customer", "blacklist", "add", "+49 30 1234567", "--reason", "asked")
    assert added.exit_code == 0 and server.body() == {"number": "+49 30 1234567", "reason": "asked"}
    server.routes[("DELETE", "/api/blacklist/+49 30 1234567")] = (200, {"removed": True})
    removed = run(config_dir, "customer", "blacklist", "remove", "+49 30 1234567")
    assert removed.exit_code == 0, removed.output
    assert server.last.url.raw_path == b"/api/blacklist/%2B49%2030%201234567"
    server.routes[("GET", "/api/blacklist")] = paged(
        [{"number": "+49 30 1234567", "reason": "asked", "added_by": "alice",
          "at": "2026-12-06T08:00:00+00:00"}]
    )  # fmt: skip
    listed = run(config_dir, "customer", "blacklist", "list")
    assert listed.exit_code == 0 and "alice" in listed.output and "asked" in listed.output

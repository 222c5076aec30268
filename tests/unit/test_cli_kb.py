"""``switchboard kb`` and ``switchboard qa`` against an ``httpx.MockTransport`` server (the
FakeServer of test_cli_client): the requests sent, what is printed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.test_cli_client import FakeServer, paged, run

ARTICLE: dict[str, Any] = {
    "id": 3,
    "category_id": 1,
    "title": "退款流程",
    "body": "# Refunds\n\nWithin **3** days.",
    "keywords": ["refund", "billing"],
    "author": "sue",
    "created_at": "2026-12-06T08:00:00+00:00",
    "updated_at": "2026-12-06T09:00:00+00:00",
    "version": 2,
    "views": 7,
}
CARD: dict[str, Any] = {
    "id": 1,
    "name": "Inbound",
    "sections": [
        {
            "name": "Call",
            "items": [
                {"key": "greeting", "label": "Greeting", "max_points": 10, "computed": None},
                {"key": "polite", "label": "Polite", "max_points": 10, "computed": None},
                {"key": "csat", "label": "Satisfied", "max_points": 20, "computed": "satisfaction"},
            ],
        }
    ],
}
EVALUATION: dict[str, Any] = {
    "id": 9,
    "scorecard_id": 1,
    "agent": "a1",
    "evaluator": "quinn",
    "scores": {"greeting": 5, "csat": 20},
    "failed": ["polite"],
    "task_id": 2,
    "call_id": "r1",
    "recording_id": None,
    "comment": "rude at the end",
    "total": 0.0,
    "auto_failed": True,
    "published": True,
    "created_at": "2026-12-06T08:00:00+00:00",
    "updated_at": "2026-12-06T08:00:00+00:00",
}


def test_kb_search(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/kb/search")] = paged([ARTICLE])
    result = run(config_dir, "kb", "search", "退款 refund", "--category", "1")
    assert result.exit_code == 0, result.output
    assert server.last.url.params["q"] == "退款 refund"
    assert server.last.url.params["category"] == "1"
    assert "退款流程" in result.output and "refund, billing" in result.output
    server.routes[("GET", "/api/kb/search")] = paged([])
    assert "no articles" in run(config_dir, "kb", "search", "x").output


def test_kb_show(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/kb/articles/3")] = (200, ARTICLE)
    result = run(config_dir, "kb", "show", "3")
    assert result.exit_code == 0, result.output
    assert "title:" in result.output and "Within **3** days." in result.output
    server.routes[("GET", "/api/kb/articles/4")] = (404, {"error": "no article 4"})
    missing = run(config_dir, "kb", "show", "4")
    assert missing.exit_code == 1 and "no article 4" in missing.output


def test_kb_add_from_a_file(config_dir: Path, server: FakeServer, tmp_path: Path) -> None:
    server.routes[("POST", "/api/kb/articles")] = (201, ARTICLE)
    text = tmp_path / "a.md"
    text.write_text("# Refunds\n", encoding="utf-8")
    result = run(
        config_dir, "kb", "add", "--title", "退款流程", "--category", "1", "--file", str(text),
        "-k", "refund", "-k", "billing",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = json.loads(server.last.content)
    assert sent == {
        "title": "退款流程",
        "category_id": 1,
        "body": "# Refunds\n",
        "keywords": ["refund", "billing"],
    }
    assert "article 3 added" in result.output
    server.routes[("POST", "/api/kb/articles")] = (403, {"error": "you may not add articles"})
    refused = run(config_dir, "kb", "add", "--title", "x", "--category", "1")
    assert refused.exit_code != 0 and "you may not add articles" in refused.output


def test_qa_list_and_show(config_dir: Path, server: FakeServer) -> None:
    server.routes[("GET", "/api/qa/evaluations")] = paged([EVALUATION])
    listed = run(config_dir, "qa", "list", "--agent", "a1", "--task", "2")
    assert listed.exit_code == 0, listed.output
    assert server.last.url.params["agent"] == "a1" and server.last.url.params["task"] == "2"
    assert "quinn" in listed.output
    server.routes[("GET", "/api/qa/evaluations/9")] = (200, EVALUATION)
    server.routes[("GET", "/api/qa/scorecards/1")] = (200, CARD)
    shown = run(config_dir, "qa", "show", "9")
    assert shown.exit_code == 0, shown.output
    assert "Greeting: 5 / 10" in shown.output
    assert "Polite: - / 10  (FAILED)" in shown.output
    assert "Satisfied: 20 / 20  (system)" in shown.output
    assert "comment: rude at the end" in shown.output

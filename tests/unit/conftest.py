"""Fixtures shared by the CLI command tests (``tests/unit/test_cli_*.py``): a config folder
holding the local admin token, and a fake running server behind the CLI's HTTP client."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import cli.client
from tests.unit.test_cli_client import TOKEN, FakeServer


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "switchboard.yaml").write_text('extensions: {"1001": {password: pw}}\n')
    (folder / "admin.token").write_text(TOKEN + "\n")
    return folder


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(cli.client, "transport", httpx.MockTransport(fake))
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)
    return fake

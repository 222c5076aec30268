"""Debian's chromium, headless, driven by Playwright for the web panel tests: one launcher,
users made through the API, and pages logged in through the login form.

Playwright's own browser download is never used: ``executable_path`` is Debian's chromium
(scripts/install-test-deps.sh installs it). A test without it is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.peers.switchboard import Switchboard

__all__ = ["ARTIFACTS", "CHROMIUM", "add_user", "chromium", "login_page"]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # screenshots


@contextlib.contextmanager
def chromium(args: Sequence[str] = ()) -> Iterator[Any]:
    """A headless chromium (``--no-sandbox`` plus ``args``), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (scripts/install-test-deps.sh installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", *args])
        try:
            yield b
        finally:
            b.close()


def add_user(sb: Switchboard, name: str, role: str, agent: str | None = None) -> str:
    """Make a user through the API; returns its password."""
    password = f"{name}-password-1"
    body: dict[str, Any] = {"name": name, "role": role, "password": password}
    if agent is not None:
        body["agent"] = agent
    r = sb.api("POST", "/api/users", json=body)
    assert r.status_code == 201, r.text
    return password


def login_page(
    browser: Any,
    sb: Switchboard,
    name: str,
    password: str,
    *,
    lang: str = "en",
    size: tuple[int, int] = (1100, 800),
    live: bool = True,
) -> Any:
    """A page in a browser context of its own (its own cookies), logged in through the
    form; with ``live``, once its event stream is connected."""
    sync_api = pytest.importorskip("playwright.sync_api")
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(f"{sb.api_url}/login?lang={lang}")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.endswith(("/agent", "/wallboard")), timeout=10_000)
    if live:
        sync_api.expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "up")
    return page

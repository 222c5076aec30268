"""The web panel in a real browser (Playwright driving Debian's chromium, headless) against
a running Switchboard with PJSUA2 phones: two agents log in on their own pages and go
available with the page's buttons; a caller dials the queue; the offer card appears on the
offered agent's page only; the agent's phone answers; the supervisor's wallboard shows the
call on that agent's row and the queue tile's counts; the agent hangs up from the panel and
both phones get a BYE. Screenshots go to tests/artifacts/. The pages in Chinese too. A
supervisor whispers to an agent with one click on the wallboard (their phone rings first),
and the agent finishes wrap-up on the panel with a code and notes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.audio import tone_level_db
from tests.peers.browser import ARTIFACTS, add_user, chromium, login_page
from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller", "password": "pw-1001-secret"},
    "1002": {"name": "Bob", "password": "pw-1002-secret"},
    "1003": {"name": "Carol", "password": "pw-1003-secret"},
}
CONFIG = """agents:
  bob: {name: Bob, extensions: ["1002"]}
  carol: {name: Carol, extensions: ["1003"]}
queues:
  support: {members: [bob, carol], strategy: longest_idle, ring_timeout: 15}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _user(sb: Switchboard, name: str, role: str, agent: str | None = None) -> str:
    return add_user(sb, name, role, agent)


def _page(browser: Any, sb: Switchboard, name: str, password: str, lang: str = "en") -> Any:
    return login_page(browser, sb, name, password, lang=lang)


def _available(page: Any) -> None:
    page.get_by_test_id("btn-login").click()
    sync_api.expect(page.get_by_test_id("state")).to_have_attribute(
        "data-state", "AVAILABLE", timeout=5_000
    )


def test_an_offer_reaches_only_its_agent_and_the_wallboard_follows_the_call(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    browser: Any,
) -> None:
    expect = sync_api.expect
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    users = {
        "bob": _user(sb, "bob", "agent", "bob"),
        "carol": _user(sb, "carol", "agent", "carol"),
        "sue": _user(sb, "sue", "supervisor"),
    }
    caller, bob_phone, carol_phone = (
        registered(phone_factory, sb, ext) for ext in ("1001", "1002", "1003")
    )
    bob = _page(browser, sb, "bob", users["bob"])
    carol = _page(browser, sb, "carol", users["carol"])
    wall = _page(browser, sb, "sue", users["sue"])
    assert bob.url.endswith("/agent") and wall.url.endswith("/wallboard")

    _available(bob)  # first: the longest idle agent, offered the call
    _available(carol)
    expect(wall.get_by_test_id("agent-bob")).to_contain_text("Available", timeout=2_000)

    cid = caller.call(sb.uri("5000"))
    caller.wait_call_state("CONFIRMED", call=cid, timeout=10)  # Switchboard answers: queue
    offer = bob.get_by_test_id("offer")
    expect(offer).to_be_visible(timeout=2_000)
    expect(bob.get_by_test_id("offer-caller")).to_have_text("1001")
    expect(bob.get_by_test_id("offer-queue")).to_have_text("support")
    inc = bob_phone.wait_incoming(timeout=5)
    bob.screenshot(path=str(ARTIFACTS / "panel-agent-offer.png"), full_page=True)
    # Carol's page never shows it, and her phone does not ring.
    time.sleep(0.3)
    expect(carol.get_by_test_id("offer")).to_be_hidden()
    assert not carol_phone.events(event="incoming_call")

    bob_phone.answer(call=int(inc["call"]))
    bob_phone.wait_media_active(call=int(inc["call"]), timeout=10)
    expect(offer).to_be_hidden(timeout=2_000)
    expect(bob.get_by_test_id("state")).to_have_attribute("data-state", "ON_CALL", timeout=2_000)
    expect(bob.get_by_test_id("call")).to_be_visible(timeout=2_000)
    expect(bob.get_by_test_id("call-caller")).to_have_text("1001")

    row = wall.get_by_test_id("agent-bob")
    expect(row).to_contain_text("1001", timeout=2_000)
    expect(row).to_contain_text("On a call")
    tile = wall.get_by_test_id("queue-support")
    expect(tile.locator("[data-field=answered]")).to_have_text("1", timeout=3_000)
    expect(tile.locator("[data-field=waiting]")).to_have_text("0")
    expect(tile.locator("[data-field=abandoned]")).to_have_text("0")
    expect(wall.get_by_test_id("agent-carol")).to_contain_text("Available")
    bob.screenshot(path=str(ARTIFACTS / "panel-agent-call.png"), full_page=True)
    wall.screenshot(path=str(ARTIFACTS / "panel-wallboard.png"), full_page=True)

    bob.get_by_test_id("btn-hangup").click()
    caller.wait_disconnected(call=cid, timeout=10)  # both phones get a BYE
    bob_phone.wait_disconnected(call=int(inc["call"]), timeout=10)
    expect(bob.get_by_test_id("call-none")).to_be_visible(timeout=2_000)
    expect(bob.get_by_test_id("today-handled")).to_have_text("1", timeout=5_000)
    expect(bob.get_by_test_id("today-aht")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(row).not_to_contain_text("1001", timeout=2_000)
    expect(tile.locator("[data-field=asa]")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(tile.locator("[data-field=aht]")).to_have_text(re.compile(r"^\d+:\d\d$"), timeout=3_000)


def test_the_pages_in_chinese(
    server_factory: Callable[..., Switchboard],
    browser: Any,
) -> None:
    expect = sync_api.expect
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    password = _user(sb, "bob", "agent", "bob")
    page = _page(browser, sb, "bob", password, lang="zh")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_test_id("btn-login")).to_have_text("签入队列")
    expect(page.get_by_test_id("state")).to_have_text("已签出")
    expect(page.get_by_test_id("conn")).to_have_text("已连接")
    _available(page)
    expect(page.get_by_test_id("state")).to_have_text("空闲")
    assert "今日" in page.content()
    page.screenshot(path=str(ARTIFACTS / "panel-agent-zh.png"), full_page=True)
    # Logging out of the panel (or closing the tab) is not logging out of the queues.
    page.get_by_test_id("logout").click()
    page.wait_for_url(lambda url: url.endswith("/login"), timeout=5_000)
    expect(page.locator("button[type=submit]")).to_have_text("登录")
    page.goto(f"{sb.api_url}/agent")  # the session is over
    assert page.url.endswith("/login")
    page.context.close()
    states = {a["id"]: a["state"] for a in sb.api("GET", "/api/agents").json()["items"]}
    assert states["bob"] == "AVAILABLE"


SUPERVISION_CONFIG = """acd:
  supervisors: ["1005"]
agents:
  bob: {name: Bob, extensions: ["1002"]}
queues:
  support:
    members: [bob]
    ring_timeout: 15
    wrap_up: 60
    wrap_up_codes: ["1", {code: "2", label: Refund}]
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


def test_a_one_click_whisper_reaches_the_agent_only_and_the_agent_wraps_up(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    browser: Any,
    tmp_path: Path,
    tone_wav: Callable[..., Path],
) -> None:
    """Sue clicks "whisper" on Bob's row: her phone (1005) rings, she answers, and her
    1500 Hz tone reaches Bob but not the caller. After the call Bob's panel shows the
    wrap-up card; a code, notes and the W key end wrap-up and the row is stored."""
    expect = sync_api.expect
    people = {**PEOPLE, "1005": {"name": "Sue", "password": "pw-1005-secret"}}
    sb = server_factory(extensions=people, extra_yaml=SUPERVISION_CONFIG)
    users = {"bob": _user(sb, "bob", "agent", "bob"), "sue": _user(sb, "sue", "supervisor")}
    caller, bob_phone, sue_phone = (
        registered(phone_factory, sb, ext) for ext in ("1001", "1002", "1005")
    )
    for phone in (caller, bob_phone, sue_phone):
        phone.set_codecs(["PCMU"])
    bob = _page(browser, sb, "bob", users["bob"])
    wall = _page(browser, sb, "sue", users["sue"])
    _available(bob)

    cid = caller.call(sb.uri("5000"))
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone_wav(700, seconds=30), call=cid)
    inc = bob_phone.wait_incoming(timeout=5)
    b = int(inc["call"])
    bob_phone.answer(call=b)
    bob_phone.wait_media_active(call=b, timeout=10)
    bob_phone.play(tone_wav(1100, seconds=30), call=b)

    # The supervisor's phone is chosen once on the page, then one click.
    wall.get_by_test_id("sup-ext").fill("1005")
    whisper = wall.get_by_test_id("whisper-bob")
    expect(whisper).to_be_visible(timeout=3_000)
    whisper.click()
    expect(wall.get_by_test_id("wall-status")).to_contain_text("Your phone rings", timeout=3_000)
    assert wall.evaluate("localStorage.getItem('sb.supervisorExtension')") == "1005"
    ring = sue_phone.wait_incoming(timeout=5)
    s = int(ring["call"])
    sue_phone.answer(call=s)
    sue_phone.wait_media_active(call=s, timeout=10)
    sue_phone.play(tone_wav(1500, seconds=30), call=s)
    time.sleep(1.0)

    caller.record(tmp_path / "caller.wav", call=cid)
    bob_phone.record(tmp_path / "bob.wav", call=b)
    time.sleep(1.6)
    caller.stop_record(call=cid)
    bob_phone.stop_record(call=b)
    heard_by_caller, heard_by_bob = tmp_path / "caller.wav", tmp_path / "bob.wav"
    assert tone_level_db(heard_by_caller, 1100) > -30 and tone_level_db(heard_by_bob, 700) > -30
    caller_hears = tone_level_db(heard_by_caller, 1500) - tone_level_db(heard_by_caller, 1100)
    bob_hears = tone_level_db(heard_by_bob, 1500) - tone_level_db(heard_by_bob, 700)
    assert caller_hears < -25 and bob_hears > -10, (caller_hears, bob_hears)
    wall.screenshot(path=str(ARTIFACTS / "panel-wallboard-whisper.png"), full_page=True)

    # The call ends: the supervisor is hung up, Bob is in wrap-up with the card.
    bob.get_by_test_id("btn-hangup").click()
    caller.wait_disconnected(call=cid, timeout=10)
    sue_phone.wait_disconnected(call=s, timeout=10)
    expect(bob.get_by_test_id("state")).to_have_attribute("data-state", "WRAP_UP", timeout=3_000)
    card = bob.get_by_test_id("wrapup")
    expect(card).to_be_visible(timeout=3_000)
    expect(bob.get_by_test_id("wrapup-code").locator("option")).to_have_count(3)
    # A labelled code shows as "label (code)"; the value sent and stored stays the code.
    expect(bob.get_by_test_id("wrapup-code").locator("option[value='2']")).to_have_text(
        "Refund (2)"
    )
    bob.get_by_test_id("wrapup-code").select_option("2")
    notes = bob.get_by_test_id("wrapup-notes")
    notes.fill("wants a refund;")
    notes.press_sequentially(" w typed here is text")  # not the shortcut
    assert bob.get_by_test_id("state").get_attribute("data-state") == "WRAP_UP"
    bob.screenshot(path=str(ARTIFACTS / "panel-agent-wrapup.png"), full_page=True)
    notes.evaluate("el => el.blur()")
    bob.keyboard.press("w")  # the shortcut: finish wrap-up
    expect(bob.get_by_test_id("state")).to_have_attribute("data-state", "AVAILABLE", timeout=3_000)
    expect(card).to_be_hidden()

    (row,) = sb.api("GET", "/api/wrap-ups?agent=bob").json()["items"]
    assert (row["code"], row["notes"]) == ("2", "wants a refund; w typed here is text")
    assert row["call_id"]
    assert "|bob|WRAPUPCODE|2" in "\n".join(
        e["line"] for e in sb.log_events() if e.get("event") == "queue_event"
    )

"""The browser phone, for real: Debian's chromium (headless, Playwright, a fake microphone fed
with a 700 Hz tone WAV) turns the phone on in the agent panel; WebRTC (ICE, DTLS-SRTP, Opus)
reaches aiortc in the server, which registers the agent's extension as a hosted SIP phone.
A PJSUA2 caller dials the queue; the offer card and the phone's ringing card show on the
agent's page; the agent answers in the browser. The caller hears the browser's tone (FFT),
the browser's ``getStats()`` shows the caller's audio received, a keypad digit reaches the
caller's phone as RFC 4733 DTMF, the supervisor's wallboard shows the call, and a hang-up
in the browser ends the call for the caller. Then the browser phone dials an extension.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

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
pytest.importorskip("aiortc")

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller", "password": "pw-1001-secret"},
    "1002": {"name": "Bob", "password": "pw-1002-secret"},
    "1005": {"name": "Sue", "password": "pw-1005-secret"},
}
CONFIG = """acd:
  supervisors: ["1005"]
agents:
  bob: {name: Bob, extensions: ["1002"]}
queues:
  support: {members: [bob], ring_timeout: 20}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


@pytest.fixture
def browser(tone_wav: Callable[..., Path]) -> Iterator[Any]:
    microphone = tone_wav(700, seconds=30, rate=48000)
    args = [
        "--use-fake-ui-for-media-stream",  # allow the microphone without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
        # Host candidates as addresses, not mDNS names, on this loopback-only machine.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    with chromium(args) as b:
        yield b


# Levels (dB) of the browser phone's received audio at given frequencies, from an
# AnalyserNode on the <audio> element's stream.
ANALYSER = """() => {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(document.getElementById("phone-audio").srcObject);
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  src.connect(an);
  window.sbBands = (freqs) => {
    const data = new Float32Array(an.frequencyBinCount);
    an.getFloatFrequencyData(data);
    const hz = ctx.sampleRate / an.fftSize;
    return freqs.map((f) => {
      const k = Math.round(f / hz);
      return Math.max(data[k - 2], data[k - 1], data[k], data[k + 1], data[k + 2]);
    });
  };
}"""


def _browser_phone(registration: dict[str, Any]) -> bool:
    return "1002" in registration["aor"] and "browser phone" in registration["user_agent"]


def _stats(page: Any) -> dict[str, float]:
    got = page.evaluate("window.sbPhone.stats()")
    assert got is not None
    return dict(got)


def test_an_agent_takes_a_queue_call_in_the_browser(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    browser: Any,
    tmp_path: Path,
    tone_wav: Callable[..., Path],
) -> None:
    expect = sync_api.expect
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    users = {"bob": add_user(sb, "bob", "agent", "bob"), "sue": add_user(sb, "sue", "supervisor")}
    caller = registered(phone_factory, sb, "1001")
    sue_phone = registered(phone_factory, sb, "1005")
    bob = login_page(browser, sb, "bob", users["bob"], size=(1100, 1000))
    wall = login_page(browser, sb, "sue", users["sue"], size=(1100, 1000))

    bob.get_by_test_id("phone-on").click()
    expect(bob.get_by_test_id("phone-status")).to_have_attribute(
        "data-state", "ready", timeout=10_000
    )
    regs = sb.api("GET", "/api/registrations").json()["items"]
    assert any(_browser_phone(r) for r in regs), regs
    bob.get_by_test_id("btn-login").click()
    expect(bob.get_by_test_id("state")).to_have_attribute("data-state", "AVAILABLE", timeout=5_000)

    cid = caller.call(sb.uri("5000"))
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone_wav(1000, seconds=30), call=cid)
    expect(bob.get_by_test_id("offer")).to_be_visible(timeout=5_000)
    expect(bob.get_by_test_id("phone-ringing")).to_be_visible(timeout=5_000)
    expect(bob.get_by_test_id("phone-caller")).to_contain_text("1001")
    bob.screenshot(path=str(ARTIFACTS / "browser-phone-ringing.png"), full_page=True)

    bob.get_by_test_id("btn-offer-accept").click()  # the offer card answers the browser phone
    expect(bob.get_by_test_id("phone-status")).to_have_attribute(
        "data-state", "in_call", timeout=5_000
    )
    expect(bob.get_by_test_id("state")).to_have_attribute("data-state", "ON_CALL", timeout=5_000)
    expect(wall.get_by_test_id("agent-bob")).to_contain_text("1001", timeout=3_000)

    time.sleep(1.5)  # let both directions settle (jitter buffers, Opus start-up)
    caller.record(tmp_path / "caller.wav", call=cid)
    time.sleep(2.0)
    caller.stop_record(call=cid)
    heard = tmp_path / "caller.wav"
    browser_tone = tone_level_db(heard, 700)
    assert browser_tone > -30, f"the caller does not hear the browser: {browser_tone:.1f} dB"
    assert browser_tone - tone_level_db(heard, 1000) > 20  # and not its own tone back

    first = _stats(bob)
    time.sleep(1.0)
    second = _stats(bob)
    assert second["packetsReceived"] > first["packetsReceived"] > 0, (first, second)
    assert second["bytesReceived"] > 0 and second["audioLevel"] > 0.01, second

    for key in ("5", "hash"):
        bob.get_by_test_id(f"phone-key-{key}").click()
        time.sleep(0.3)
    assert caller.wait_dtmf(2, call=cid, timeout=5) == "5#"
    bob.screenshot(path=str(ARTIFACTS / "browser-phone-call.png"), full_page=True)

    # The supervisor whispers with one click: the agent's browser hears her 1500 Hz tone
    # (a WebAudio analyser on the phone's audio), the caller does not.
    bob.evaluate(ANALYSER)
    wall.get_by_test_id("sup-ext").fill("1005")
    wall.get_by_test_id("whisper-bob").click()
    ring = sue_phone.wait_incoming(timeout=5)
    s = int(ring["call"])
    sue_phone.answer(call=s)
    sue_phone.wait_media_active(call=s, timeout=10)
    sue_phone.play(tone_wav(1500, seconds=30), call=s)
    time.sleep(1.5)
    levels = bob.evaluate("window.sbBands([1000, 1500, 3000])")
    assert levels[1] - levels[2] > 20 and levels[0] - levels[2] > 20, levels
    caller.record(tmp_path / "whisper.wav", call=cid)
    time.sleep(1.5)
    caller.stop_record(call=cid)
    heard = tmp_path / "whisper.wav"
    assert tone_level_db(heard, 700) - tone_level_db(heard, 1500) > 25
    wall.screenshot(path=str(ARTIFACTS / "browser-phone-wallboard.png"), full_page=True)
    sue_phone.hangup(call=s)
    sue_phone.wait_disconnected(call=s, timeout=10)

    bob.get_by_test_id("phone-hangup").click()
    caller.wait_disconnected(call=cid, timeout=10)
    expect(bob.get_by_test_id("phone-status")).to_have_attribute(
        "data-state", "ready", timeout=5_000
    )
    expect(bob.get_by_test_id("call-none")).to_be_visible(timeout=5_000)

    # The browser phone calls out: the caller's phone rings, answers and hears the tone.
    caller_rings_at = time.monotonic()
    bob.get_by_test_id("phone-number").fill("1001")
    bob.get_by_test_id("phone-dial").click()
    inc = caller.wait_incoming(timeout=10)
    out = int(inc["call"])
    caller.answer(call=out)
    caller.wait_media_active(call=out, timeout=10)
    expect(bob.get_by_test_id("phone-status")).to_have_attribute(
        "data-state", "in_call", timeout=5_000
    )
    assert time.monotonic() - caller_rings_at < 15
    time.sleep(1.0)
    caller.record(tmp_path / "out.wav", call=out)
    time.sleep(1.5)
    caller.stop_record(call=out)
    assert tone_level_db(tmp_path / "out.wav", 700) > -30
    caller.hangup(call=out)
    expect(bob.get_by_test_id("phone-status")).to_have_attribute(
        "data-state", "ready", timeout=10_000
    )

    # Closing the tab unregisters the phone but does not log the agent out.
    bob.context.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        regs = sb.api("GET", "/api/registrations").json()["items"]
        if not any(_browser_phone(r) for r in regs):
            break
        time.sleep(0.2)
    assert not any(_browser_phone(r) for r in regs), regs
    states = {a["id"]: a["state"] for a in sb.api("GET", "/api/agents").json()["items"]}
    assert states["bob"] == "AVAILABLE"

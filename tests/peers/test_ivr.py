"""A phone calls a DID routed to an IVR menu, hears the welcome prompt and presses 2 to reach
the extension behind option 2 (real PJSUA2 phones, Switchboard as its own process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.model import DEFAULT_PROMPTS_DIR
from tests.peers.audio import dominant_frequency
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard

pytestmark = pytest.mark.peers

DIALPLAN = """dialplan:
  inbound:
    - {did: "4000", destination: {kind: ivr, target: main}}
"""

MAIN_FLOW = """name: main
start: welcome
nodes:
  welcome:
    type: menu
    prompt: welcome
    options: {"1": sales, "2": support}
    timeout: 8
    retries: 1
  sales: {type: extension, extension: "1002"}
  support: {type: extension, extension: "1003"}
"""


def correlation_peak(recording: Path, prompt: Path) -> float:
    """Normalised cross-correlation peak of a prompt inside a recording (both resampled to
    8 kHz): close to 1 when the recording contains the prompt."""
    rec, rate = soundfile.read(str(recording), dtype="float64")
    if rec.ndim > 1:
        rec = rec.mean(axis=1)
    if rate != 8000:
        rec = rec[:: rate // 8000]
    ref, _ = soundfile.read(str(prompt), dtype="float64")
    ref = ref[: min(len(ref), 8000)]  # the first second of the prompt
    n = len(rec) + len(ref)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    window = np.convolve(rec**2, np.ones(len(ref)), mode="full")[len(ref) - 1 : len(rec) + 0]
    energy = np.sqrt(np.maximum(window, 1e-12) * np.sum(ref**2))
    return float(np.max(corr[: len(window)] / energy))


def test_did_to_menu_and_option_two(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_2k: Path,
) -> None:
    sb = server_factory(
        extra_yaml=DIALPLAN,
        setup=lambda d: (d / "ivr").mkdir() or (d / "ivr" / "main.yaml").write_text(MAIN_FLOW),
    )
    a, c = (phone_factory(f"ext{e}", user=e) for e in ("1001", "1003"))
    for p in (a, c):
        assert p.register(sb.address, password=sb.password(p.user))["code"] == 200
        p.set_codecs(["PCMU"])
    a.call(sb.uri("4000"))
    a.wait_call_state("CONFIRMED", timeout=10)  # Switchboard answers for the IVR
    a.wait_media_active(timeout=10)
    a.record(tmp_path / "welcome.wav")
    time.sleep(2.5)
    a.stop_record()
    prompts = DEFAULT_PROMPTS_DIR / "en"
    score = correlation_peak(tmp_path / "welcome.wav", prompts / "welcome.wav")
    # Other prompts of the same voice are the control: they must match far worse.
    others = max(
        correlation_peak(tmp_path / "welcome.wav", prompts / f"{name}.wav")
        for name in ("goodbye", "invalid", "main-menu")
    )
    assert score > 0.3 and score > 2.5 * others, (score, others)
    a.send_dtmf("2")
    inc = c.wait_incoming(timeout=10)  # option 2: extension 1003 rings
    c.answer(call=inc["call"])
    c.wait_media_active(timeout=10)
    c.play(tone_2k)
    time.sleep(0.8)
    a.record(tmp_path / "agent.wav")
    time.sleep(1.5)
    a.stop_record()
    assert abs(dominant_frequency(tmp_path / "agent.wav") - 2000) < 20
    a.hangup()
    c.wait_disconnected(timeout=10)
    finished = [e for e in sb.log_events() if e.get("event") == "ivr_finished"]
    assert finished and finished[0]["keys"] == "2" and finished[0]["outcome"] == "extension"
    (cdr,) = sb.wait_call_records(1)
    assert (cdr["caller"], cdr["callee"], cdr["disposition"]) == ("1001", "1003", "ANSWERED")
    assert cdr["ivr_keys"] == "2"  # the key trail travels with the call into its record


def test_blacklist_rejects_or_announces_before_any_route(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    """Blacklisted callers never reach the IVR: one is refused with 603, the other hears an
    announcement and is hung up by Switchboard."""
    dialplan = (
        DIALPLAN
        + """  blacklist:
    - {number: "1001", action: reject}
    - {number: "1002", action: announce, prompt: goodbye}
"""
    )
    sb = server_factory(
        extra_yaml=dialplan,
        setup=lambda d: (d / "ivr").mkdir() or (d / "ivr" / "main.yaml").write_text(MAIN_FLOW),
    )
    a, b = (phone_factory(f"ext{e}", user=e) for e in ("1001", "1002"))
    for p in (a, b):
        assert p.register(sb.address, password=sb.password(p.user))["code"] == 200
    a.call(sb.uri("4000"))
    assert a.wait_disconnected(timeout=10)["code"] == 603
    b.call(sb.uri("4000"))
    b.wait_call_state("CONFIRMED", timeout=10)
    ev = b.wait_disconnected(timeout=15)  # the announcement played, then Switchboard hung up
    assert ev["code"] == 200
    assert not [e for e in sb.log_events() if e.get("event") == "ivr_finished"]
    causes = sorted(r["hangup_cause"] for r in sb.wait_call_records(2))
    assert causes == ["announcement", "dialplan_hangup"]

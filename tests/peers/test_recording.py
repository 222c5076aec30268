"""Call recording with real phones: a PJSUA2 caller goes through an IVR into a queue, a PJSUA2
agent answers, and the recording has the caller on the left and the agent on the right (FFT
per channel); the agent pauses it with a code and the API resumes it; search, download and
the CLI find it; a SIGKILL mid-call leaves a file the next start repairs."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for
from tests.peers.test_control_plane_cli import cli as _cli

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller", "password": "pw-1001-x"},
    "1002": {"name": "Bob", "password": "pw-1002-x"},
}

CONFIG = """agents:
  a2: {name: Bob, extensions: ["1002"]}
queues:
  support: {strategy: longest_idle, record: true}
dialplan:
  inbound:
    - {did: "4000", destination: {kind: ivr, target: main}}
    - {did: "5000", destination: {kind: queue, target: support}}
"""

FLOW = """name: main
start: welcome
nodes:
  welcome:
    type: menu
    prompt: welcome
    options: {"1": support}
    timeout: 8
  support: {type: queue, queue: support}
"""


def _setup(folder: Path) -> None:
    (folder / "ivr").mkdir()
    (folder / "ivr" / "main.yaml").write_text(FLOW)


def _since(t0: float, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def match(ev: dict[str, Any]) -> bool:
        status = ev.get("status")
        if ev.get("_t", 0.0) < t0:
            return False
        return "status" not in fields or (status is not None and fields["status"] in status)

    return match


def _active(phone: Phone, cid: int, t0: float) -> None:
    phone.wait_event(_since(t0), event="call_state", state="CONFIRMED", call=cid, timeout=10)
    phone.wait_event(_since(t0, status="ACTIVE"), event="media_state", call=cid, timeout=10)


def _feature(phone: Phone, sb: Switchboard, code: str) -> int:
    cid = phone.call(sb.uri(code))
    return int(phone.wait_disconnected(call=cid, timeout=10)["code"])


def _answer(agent: Phone) -> int:
    inc = agent.wait_incoming(timeout=15)
    cid = int(inc["call"])
    agent.answer(call=cid)
    _active(agent, cid, inc["_t"])
    return cid


def _band_level(x: np.ndarray, rate: int, freq: float) -> float:
    """Energy near ``freq`` relative to the whole spectrum (0..1)."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = spectrum[(freqs > freq - 30) & (freqs < freq + 30)].sum()
    return float(band / max(spectrum.sum(), 1e-9))


def _peak(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum[5:])) + 5])


def _recordings(sb: Switchboard) -> list[dict[str, Any]]:
    return sb.query("SELECT * FROM recordings ORDER BY id")


def test_ivr_queue_agent_call_is_recorded_in_stereo_and_found(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_wav: Callable[..., Path],
    tmp_path: Path,
) -> None:
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG, setup=_setup)
    caller, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    assert _feature(bob, sb, "*45") == 200
    t0 = time.monotonic()
    cid = caller.call(sb.uri("4000"))
    _active(caller, cid, t0)
    time.sleep(0.5)
    caller.send_dtmf("1", call=cid)  # the menu: 1 for support
    b = _answer(bob)
    caller.play(tone_wav(1000, seconds=20), call=cid)
    bob.play(tone_wav(440, seconds=20), call=b)
    rows = wait_for(lambda: _recordings(sb), 5, "a recording row")
    assert rows[0]["state"] == "recording"
    time.sleep(2.0)
    bob.send_dtmf("*3", call=b)  # the agent pauses (a card number is read)...
    wait_for(
        lambda: [e for e in sb.log_events() if e.get("event") == "recording_paused"], 5, "paused"
    )
    time.sleep(1.5)
    [live] = [c for c in sb.api("GET", "/api/calls").json()["items"] if c["caller"] == "1001"]
    assert (live["recording_id"], live["queue"]) == (rows[0]["recording_id"], "support")
    resumed = sb.api("POST", f"/api/calls/{live['id']}/recording", json={"action": "resume"})
    assert resumed.status_code == 200, resumed.text  # ...the API resumes
    time.sleep(2.0)
    caller.hangup(call=cid)
    bob.wait_disconnected(call=b, timeout=10)

    rows = wait_for(
        lambda: [r for r in _recordings(sb) if r["state"] != "recording"], 10, "row finished"
    )
    [row] = rows
    assert row["state"] == "complete" and row["format"] == "flac"
    [cdr] = [r for r in sb.wait_call_records(2) if r["caller"] == "1001"]
    assert row["call_id"] == cdr["record_id"]  # the row links to the call record
    assert (row["agent"], row["queue"], row["extension"]) == ("a2", "support", "1002")
    path = sb.workdir / "recordings" / row["path"]
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert audio.ndim == 2 and audio.shape[1] == 2
    assert abs(len(audio) / rate - row["duration"]) < 0.05
    pauses = [tuple(p) for p in json.loads(row["pauses"])]
    [(p_start, p_end)] = pauses
    assert 1.0 < p_end - p_start < 3.5
    # Talk before the pause: caller's 1 kHz left, agent's 440 Hz right (FFT per channel).
    before = audio[int(0.5 * rate) : int((p_start - 0.2) * rate)]
    assert len(before) > rate // 2
    assert (
        abs(_peak(before[:, 0], rate) - 1000) < 20 and _band_level(before[:, 0], rate, 440) < 0.05
    )
    assert (
        abs(_peak(before[:, 1], rate) - 440) < 20 and _band_level(before[:, 1], rate, 1000) < 0.05
    )
    # The paused span is silent in both channels.
    paused = audio[int((p_start + 0.05) * rate) : int((p_end - 0.05) * rate)]
    assert len(paused) > rate // 2 and not paused.any()
    after = audio[int((p_end + 0.2) * rate) : int((p_end + 1.2) * rate)]
    assert abs(_peak(after[:, 0], rate) - 1000) < 20 and abs(_peak(after[:, 1], rate) - 440) < 20

    # Search by the caller's number finds it (API and CLI); the download matches its checksum.
    found = sb.api("GET", "/api/recordings", params={"number": "1001"}).json()
    assert [r["recording_id"] for r in found["items"]] == [row["recording_id"]]
    audio_url = f"/api/recordings/{row['recording_id']}/audio"
    body = sb.api("GET", audio_url).content
    assert hashlib.sha256(body).hexdigest() == row["sha256"] == sha256_of(path)
    part = sb.api("GET", audio_url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == body[:100]
    listed = _cli(sb, "recording", "search", "--number", "1001", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [row["recording_id"]]
    out = tmp_path / "got.flac"
    got = _cli(sb, "recording", "get", row["recording_id"], "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert sha256_of(out) == row["sha256"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_9_mid_call_leaves_a_playable_truncated_recording(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_wav: Callable[..., Path],
) -> None:
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG, setup=_setup)
    caller, bob = (registered(phone_factory, sb, e) for e in ("1001", "1002"))
    assert _feature(bob, sb, "*45") == 200
    t0 = time.monotonic()
    cid = caller.call(sb.uri("5000"))
    _active(caller, cid, t0)
    b = _answer(bob)
    caller.play(tone_wav(1000, seconds=20), call=cid)
    bob.play(tone_wav(440, seconds=20), call=b)
    wait_for(lambda: _recordings(sb), 5, "a recording row")
    time.sleep(3.0)
    assert sb.proc is not None
    sb.proc.send_signal(signal.SIGKILL)
    sb.proc.wait(5)
    sb.proc = None
    sb.start()  # the next start repairs the recording
    [row] = wait_for(
        lambda: [r for r in _recordings(sb) if r["state"] != "recording"], 10, "repaired"
    )
    assert row["state"] == "truncated"
    path = sb.workdir / "recordings" / row["path"]
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert 1.5 < len(audio) / rate < 6 and abs(len(audio) / rate - row["duration"]) < 0.05
    assert sha256_of(path) == row["sha256"]
    tail = audio[int(0.5 * rate) : int(1.5 * rate)]
    assert abs(_peak(tail[:, 0], rate) - 1000) < 20 and abs(_peak(tail[:, 1], rate) - 440) < 20
    assert any(e.get("event") == "recording_repaired" for e in sb.log_events())
    caller.hangup(call=cid)

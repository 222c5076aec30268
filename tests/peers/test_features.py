"""Call features with real PJSUA2 phones: hold with music, blind and attended transfer.

Switchboard runs as its own process (``tests.peers.switchboard``); audio is checked by FFT
of what each phone records, call records are read from the server's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.audio import dominant_frequency, tone_level_db
from tests.peers.calls import answer_call, hears
from tests.peers.calls import registered as phone
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard

pytestmark = pytest.mark.peers

MOH_HZ = 440  # the shipped music-on-hold track is built over an A4 pedal (media/prompts)


def test_hold_plays_music_and_unhold_restores_audio(
    server: Switchboard, phone_factory: Callable[..., Phone], tmp_path: Path, tone_2k: Path
) -> None:
    a = phone(phone_factory, server, "1001")
    b = phone(phone_factory, server, "1002")
    answer_call(a, b, server, "1002")
    b.play(tone_2k)
    time.sleep(0.3)
    assert abs(dominant_frequency(hears(a, tmp_path / "before.wav")) - 2000) < 20
    b.hold()  # re-INVITE a=sendonly: A must hear the music on hold, not B
    time.sleep(0.8)
    held = hears(a, tmp_path / "held.wav", seconds=2.0)
    assert abs(dominant_frequency(held) - MOH_HZ) < 15
    assert tone_level_db(held, 2000) < tone_level_db(held, MOH_HZ) - 20
    b.unhold()
    time.sleep(0.8)
    back = hears(a, tmp_path / "back.wav")
    assert abs(dominant_frequency(back) - 2000) < 20
    a.hangup()
    b.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "ANSWERED"
    events = [e["event"] for e in server.log_events()]
    assert "call_hold" in events and "call_resume" in events


def test_blind_transfer(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = phone(phone_factory, server, "1001")
    b = phone(phone_factory, server, "1002")
    c = phone(phone_factory, server, "1003")
    answer_call(a, b, server, "1002")
    b.xfer(server.uri("1003"))  # REFER: A goes to C; B is done
    inc = c.wait_incoming(timeout=10)
    c.answer(call=inc["call"])
    ev = b.wait_event(lambda e: e.get("final") is True, event="xfer_status", timeout=10)
    assert ev["code"] == 200
    b.wait_disconnected(timeout=10)
    c.wait_media_active(timeout=10)
    a.play(tone_1k)
    c.play(tone_2k)
    time.sleep(0.4)
    assert abs(dominant_frequency(hears(c, tmp_path / "c.wav")) - 1000) < 20
    assert abs(dominant_frequency(hears(a, tmp_path / "a.wav")) - 2000) < 20
    assert a.get_info()["state"] == "CONFIRMED"  # A never left its call
    a.hangup()
    c.wait_disconnected(timeout=10)
    first, second = server.wait_call_records(2)
    assert (first["caller"], first["callee"], first["hangup_cause"]) == (
        "1001",
        "1002",
        "transferred",
    )
    assert (second["caller"], second["callee"]) == ("1001", "1003")
    assert second["linked_id"] == first["record_id"]
    assert second["hangup_side"] == "caller"


def test_attended_transfer(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = phone(phone_factory, server, "1001")
    b = phone(phone_factory, server, "1002")
    c = phone(phone_factory, server, "1003")
    _, b_with_a = answer_call(a, b, server, "1002")
    b.hold(call=b_with_a)  # A hears music while B consults C
    time.sleep(0.5)
    b_with_c, _ = answer_call(b, c, server, "1003")
    time.sleep(0.5)
    b.xfer_replaces(call=b_with_a, dest=b_with_c)  # REFER with Replaces: A ⇄ C
    ev = b.wait_event(lambda e: e.get("final") is True, event="xfer_status", timeout=10)
    assert ev["code"] == 200
    b.wait_disconnected(call=b_with_a, timeout=10)
    b.wait_disconnected(call=b_with_c, timeout=10)
    a.play(tone_1k)
    c.play(tone_2k)
    time.sleep(0.5)
    assert abs(dominant_frequency(hears(c, tmp_path / "c.wav")) - 1000) < 20
    a_hears = hears(a, tmp_path / "a.wav")
    assert abs(dominant_frequency(a_hears) - 2000) < 20  # C, and no more music on hold
    a.hangup()
    c.wait_disconnected(timeout=10)
    records = server.wait_call_records(3)
    by_pair = {(r["caller"], r["callee"]): r for r in records}
    ab, bc, ac = by_pair[("1001", "1002")], by_pair[("1002", "1003")], by_pair[("1001", "1003")]
    assert ab["hangup_cause"] == bc["hangup_cause"] == "transferred"
    assert ac["linked_id"] == ab["record_id"]


def test_conference_room_three_parties(
    tmp_path: Path,
    free_port: Callable[[], int],
    phone_factory: Callable[..., Phone],
    tone_wav: Callable[..., Path],
) -> None:
    """Three phones dial room 8000 playing 700, 1200 and 1900 Hz: each hears the other two
    and not itself (the mixer gives every member the sum of the others)."""
    (tmp_path / "sb").mkdir()
    sb = Switchboard(
        tmp_path / "sb", free_port(), extra_yaml='conferences:\n  "8000": {name: Sales room}\n'
    ).start()
    try:
        freqs = {"1001": 700, "1002": 1200, "1003": 1900}
        phones = {ext: phone(phone_factory, sb, ext) for ext in freqs}
        for ext, p in phones.items():
            p.call(sb.uri("8000"))
            p.wait_call_state("CONFIRMED", timeout=10)
            p.wait_media_active(timeout=10)
            p.play(tone_wav(freqs[ext]))
        time.sleep(0.8)
        for p in phones.values():
            p.record(tmp_path / f"{p.user}.wav")
        time.sleep(2.0)
        for ext, p in phones.items():
            p.stop_record()
            rec = tmp_path / f"{ext}.wav"
            own = tone_level_db(rec, freqs[ext])
            others = [tone_level_db(rec, f) for e, f in freqs.items() if e != ext]
            assert all(level > -30 for level in others), (ext, others)
            assert own < min(others) - 20, (ext, own, others)
        for p in phones.values():
            p.hangup()
        records = sb.wait_call_records(3)
        assert {r["callee"] for r in records} == {"8000"}
        assert {r["disposition"] for r in records} == {"ANSWERED"}
    finally:
        sb.stop()
    assert "Traceback" not in sb.log_text(), sb.log_text()[-4000:]


def feature(p: Phone, sb: Switchboard, code: str) -> None:
    """Dial a feature code: Switchboard answers, beeps and hangs up."""
    cid = p.call(sb.uri(code))
    assert p.wait_disconnected(call=cid, timeout=10)["code"] == 200


@pytest.fixture
def features_server(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Switchboard]:
    (tmp_path / "fs").mkdir()
    sb = Switchboard(
        tmp_path / "fs",
        free_port(),
        extensions={
            "1001": {"name": "Alice", "password": "alice-pw"},
            "1002": {
                "name": "Bob",
                "password": "bob-pw",
                "ring_timeout": 3,
                "pickup_group": "sales",
            },
            "1003": {"name": "Carol", "password": "carol-pw", "pickup_group": "sales"},
        },
    ).start()
    yield sb
    sb.stop()
    assert "Traceback" not in sb.log_text(), sb.log_text()[-4000:]


def test_do_not_disturb(features_server: Switchboard, phone_factory: Callable[..., Phone]) -> None:
    sb = features_server
    a, b = phone(phone_factory, sb, "1001"), phone(phone_factory, sb, "1002")
    feature(b, sb, "*78")
    a.call(sb.uri("1002"))
    assert a.wait_disconnected(timeout=10)["code"] == 486
    feature(b, sb, "*79")
    a.call(sb.uri("1002"))
    b.wait_incoming(timeout=10)
    a.hangup()
    records = sb.wait_call_records(4)
    assert next(r["hangup_cause"] for r in records if r["callee"] == "1002") == "do_not_disturb"


def test_forward_unconditional_busy_and_no_answer(
    features_server: Switchboard, phone_factory: Callable[..., Phone]
) -> None:
    sb = features_server
    a, b, c = (phone(phone_factory, sb, e) for e in ("1001", "1002", "1003"))
    feature(b, sb, "*721003")  # every call to 1002 goes to 1003
    a.call(sb.uri("1002"))
    c.answer(call=c.wait_incoming(timeout=10)["call"])
    a.wait_call_state("CONFIRMED", timeout=10)
    a.hangup()
    c.wait_disconnected(timeout=10)
    feature(b, sb, "*73")
    feature(b, sb, "*901003")  # busy → 1003
    a.call(sb.uri("1002"))
    b.reject(call=b.wait_incoming(timeout=10)["call"], code=486)
    c.wait_incoming(timeout=10)
    a.hangup()
    c.wait_disconnected(timeout=10)
    feature(b, sb, "*91")
    feature(b, sb, "*921003")  # no answer (3 s ring timeout) → 1003
    a.call(sb.uri("1002"))
    b.wait_incoming(timeout=10)
    c.answer(call=c.wait_incoming(timeout=10)["call"])
    a.wait_call_state("CONFIRMED", timeout=10)
    b.wait_disconnected(timeout=10)  # B's phone stopped ringing
    a.hangup()
    callees = [r["callee"] for r in sb.wait_call_records(8) if r["hangup_cause"] != "feature_code"]
    assert callees == ["1003", "1003", "1003"]


@pytest.mark.parametrize("code", ["*8", "**1002"])
def test_call_pickup(
    features_server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
    code: str,
) -> None:
    sb = features_server
    a, b, c = (phone(phone_factory, sb, e) for e in ("1001", "1002", "1003"))
    a.call(sb.uri("1002"))
    b.ringing(call=b.wait_incoming(timeout=10)["call"])
    a.wait_call_state("EARLY", timeout=10)
    cid = c.call(sb.uri(code))  # Carol picks up Bob's ringing phone
    c.wait_call_state("CONFIRMED", call=cid, timeout=10)
    a.wait_call_state("CONFIRMED", timeout=10)
    b.wait_disconnected(timeout=10)
    c.wait_media_active(call=cid, timeout=10)
    a.play(tone_1k)
    c.play(tone_2k, call=cid)
    time.sleep(0.4)
    assert abs(dominant_frequency(hears(c, tmp_path / "c.wav", call=cid)) - 1000) < 20
    assert abs(dominant_frequency(hears(a, tmp_path / "a.wav")) - 2000) < 20
    a.hangup()
    c.wait_disconnected(call=cid, timeout=10)
    (cdr,) = sb.wait_call_records(1)
    assert (cdr["caller"], cdr["callee"], cdr["disposition"]) == ("1001", "1003", "ANSWERED")


def test_g722_wideband_and_transcoding_to_pcmu(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_wav: Callable[..., Path],
) -> None:
    """Two phones offering only G.722 keep a 5 kHz tone (impossible in 8 kHz G.711); a
    G.722 phone and a PCMU-only phone still hear each other through the transcoder."""
    a = phone(phone_factory, server, "1001")
    b = phone(phone_factory, server, "1002")
    c = phone(phone_factory, server, "1003")
    for p in (a, b):
        assert p.set_codecs(["G722"])
    assert c.set_codecs(["PCMU"])
    answer_call(a, b, server, "1002")
    a.play(tone_wav(5000, rate=16000))
    time.sleep(0.4)
    wide = hears(b, tmp_path / "wide.wav")
    assert abs(dominant_frequency(wide) - 5000) < 30
    a.hangup()
    b.wait_disconnected(timeout=10)
    answer_call(a, c, server, "1003")
    a.play(tone_wav(1000, rate=16000))
    c.play(tone_wav(2000))
    time.sleep(0.4)
    assert abs(dominant_frequency(hears(c, tmp_path / "c.wav")) - 1000) < 20
    assert abs(dominant_frequency(hears(a, tmp_path / "a.wav")) - 2000) < 20
    a.hangup()
    c.wait_disconnected(timeout=10)


DIGITS = "123A456B789C*0#D"
_DTMF_ROWS = (697, 770, 852, 941)
_DTMF_COLS = (1209, 1336, 1477, 1633)
_KEYPAD = ("123A", "456B", "789C", "*0#D")


def make_inband_dtmf_wav(
    path: Path,
    digits: str,
    *,
    level_dbm0: float = -20.0,
    snr_db: float = 20.0,
    on_ms: int = 100,
    off_ms: int = 100,
) -> Path:
    """DTMF tones in the audio (no RFC 4733) at ``level_dbm0`` per tone, with white noise
    ``snr_db`` below the signal. For G.711 a full-scale sine is +3.14 dBm0 (ITU-T G.711)."""
    import numpy as np
    import soundfile

    rate = 8000
    peak = 10 ** ((level_dbm0 - 3.14) / 20)  # full-scale sine is +3.14 dBm0
    rng = np.random.default_rng(4475)
    chunks = [np.zeros(int(rate * 0.5))]
    for d in digits:
        r = next(i for i, row in enumerate(_KEYPAD) if d in row)
        c = _KEYPAD[r].index(d)
        t = np.arange(int(rate * on_ms / 1000)) / rate
        chunks.append(
            peak * (np.sin(2 * np.pi * _DTMF_ROWS[r] * t) + np.sin(2 * np.pi * _DTMF_COLS[c] * t))
        )
        chunks.append(np.zeros(int(rate * off_ms / 1000)))
    chunks.append(np.zeros(int(rate * 0.5)))
    signal = np.concatenate(chunks)
    signal_rms = peak  # two tones of amplitude `peak`: RMS = peak
    noise = rng.normal(0.0, signal_rms * 10 ** (-snr_db / 20), len(signal))
    soundfile.write(str(path), np.clip(signal + noise, -1, 1), rate, subtype="PCM_16")
    return path


def test_inband_dtmf_all_sixteen_digits(
    tmp_path: Path, free_port: Callable[[], int], phone_factory: Callable[..., Phone]
) -> None:
    """A phone that sends DTMF as tones in the audio (-20 dBm0, 20 dB SNR noise): every one
    of the 16 digits is detected once, in order."""
    (tmp_path / "sb").mkdir()
    sb = Switchboard(
        tmp_path / "sb",
        free_port(),
        extensions={
            "1001": {"name": "Old phone", "password": "alice-pw", "dtmf_mode": "inband"},
            "1002": {"name": "Bob", "password": "bob-pw"},
        },
    ).start()
    try:
        a, b = phone(phone_factory, sb, "1001"), phone(phone_factory, sb, "1002")
        for p in (a, b):
            p.set_codecs(["PCMU"])
        answer_call(a, b, sb, "1002")
        wav = make_inband_dtmf_wav(tmp_path / "dtmf.wav", DIGITS)
        a.play(wav, loop=False)
        time.sleep(0.5 + len(DIGITS) * 0.2 + 1.0)
        got = [e for e in sb.log_events() if e.get("event") == "dtmf_received"]
        assert "".join(e["digit"] for e in got) == DIGITS
        assert {e["source"] for e in got} == {"inband"}
        assert {e["ext"] for e in got} == {"1001"}
        a.hangup()
    finally:
        sb.stop()
    assert "Traceback" not in sb.log_text()


def test_three_way_conference_from_a_phone(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_wav: Callable[..., Path],
) -> None:
    """B talks to A, holds A, calls C, resumes A and presses "conference": the phone mixes
    its two calls. Through Switchboard's anchored media each party hears the other two."""
    a, b, c = (phone(phone_factory, server, e) for e in ("1001", "1002", "1003"))
    freqs = {"a": 700, "b": 1200, "c": 1900}
    _, b_with_a = answer_call(a, b, server, "1002")
    b.hold(call=b_with_a)
    b_with_c, _ = answer_call(b, c, server, "1003")
    b.unhold(call=b_with_a)
    b.wait_media_active(call=b_with_a, timeout=10)
    time.sleep(0.5)
    b.conference(b_with_a, b_with_c)
    a.play(tone_wav(freqs["a"]))
    c.play(tone_wav(freqs["c"]))
    b.play(tone_wav(freqs["b"]), call=b_with_a)
    b.play(tone_wav(freqs["b"]), call=b_with_c)
    time.sleep(0.8)
    for p in (a, c):
        p.record(tmp_path / f"{p.user}.wav")
    b.record(tmp_path / "b_from_a.wav", call=b_with_a)
    b.record(tmp_path / "b_from_c.wav", call=b_with_c)
    time.sleep(2.0)
    for p in (a, c):
        p.stop_record()
    b.stop_record(call=b_with_a)
    b.stop_record(call=b_with_c)

    def level(path: str, who: str) -> float:
        return tone_level_db(tmp_path / path, freqs[who])

    assert min(level("1001.wav", "b"), level("1001.wav", "c")) > -35
    assert level("1001.wav", "a") < min(level("1001.wav", "b"), level("1001.wav", "c")) - 15
    assert min(level("1003.wav", "a"), level("1003.wav", "b")) > -35
    assert level("1003.wav", "c") < min(level("1003.wav", "a"), level("1003.wav", "b")) - 15
    assert level("b_from_a.wav", "a") > -35 and level("b_from_c.wav", "c") > -35
    for p in (a, c):
        p.hangup()

"""DTMF: RFC 4733 receive/send, SIP INFO bodies, in-band Goertzel detection (ITU-T Q.24)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from media.dtmf import (
    COLUMN_FREQUENCIES,
    ROW_FREQUENCIES,
    DtmfReceived,
    GoertzelDetector,
    Rfc4733Receiver,
    Rfc4733Sender,
    parse_dtmf_info,
)
from media.rtp import TelephoneEvent

DIGITS = "0123456789*#ABCD"
KEYPAD = ("123A", "456B", "789C", "*0#D")
DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)
MOH = Path(__file__).resolve().parents[2] / "media" / "prompts" / "moh.wav"


# --- RFC 4733 receiver ---------------------------------------------------------------------


def ev(digit: str, duration: int, end: bool = False) -> TelephoneEvent:
    return TelephoneEvent(DIGITS.index(digit), end=end, volume=10, duration=duration)


def press(
    rx: Rfc4733Receiver, digit: str, ts: int, t0: float, drop: set[int] | None = None
) -> list[DtmfReceived]:
    """A 100 ms press as sent by Rfc4733Sender (4 updates + 3 ends), minus dropped indices."""
    out = []
    packets = [ev(digit, 160 * (i + 1)) for i in range(4)] + [ev(digit, 800, True)] * 3
    for i, pkt in enumerate(packets):
        if drop and i in drop:
            continue
        got = rx.feed(pkt, ts, i == 0, t0 + 0.02 * i)
        if got:
            out.append(got)
    return out


def test_one_digit_per_event_despite_repeated_end_packets() -> None:
    rx = Rfc4733Receiver("leg1")
    got = press(rx, "5", 1000, 10.0)
    assert got == [DtmfReceived("leg1", "5", "rfc4733", 100, 10.08)]
    assert rx.poll(20.0) is None  # nothing left over


def test_same_digit_twice_is_two_events() -> None:
    rx = Rfc4733Receiver("l")
    got = press(rx, "7", 1000, 0.0) + press(rx, "7", 3000, 0.5)
    assert [g.digit for g in got] == ["7", "7"]


def test_lost_start_packet_still_reports_once() -> None:
    rx = Rfc4733Receiver("l")
    got = press(rx, "#", 5000, 0.0, drop={0})
    assert [(g.digit, g.duration_ms) for g in got] == [("#", 100)]


def test_only_end_packets_arrive() -> None:
    rx = Rfc4733Receiver("l")
    got = press(rx, "A", 5000, 0.0, drop={0, 1, 2, 3})
    assert [(g.digit, g.duration_ms) for g in got] == [("A", 100)]


def test_all_end_packets_lost_times_out_once() -> None:
    rx = Rfc4733Receiver("l", timeout=0.2)
    assert press(rx, "9", 7000, 0.0, drop={4, 5, 6}) == []
    assert rx.next_deadline() == pytest.approx(0.06 + 0.2)
    assert rx.poll(0.2) is None  # not yet
    got = rx.poll(0.3)
    assert got == DtmfReceived("l", "9", "rfc4733", 80, 0.3)
    assert rx.poll(1.0) is None and rx.next_deadline() is None
    # A late end packet of the same event does not report it again.
    assert rx.feed(ev("9", 800, True), 7000, False, 1.1) is None


def test_lost_ends_then_next_digit_reports_both() -> None:
    rx = Rfc4733Receiver("l")
    first = press(rx, "1", 1000, 0.0, drop={4, 5, 6})
    assert first == []
    # The next event starts (new timestamp) before the timeout: the first one is reported.
    got = rx.feed(ev("2", 160), 2000, True, 0.1)
    assert got is not None and got.digit == "1"
    # Next event made only of an end packet while nothing else is pending.
    rx2 = Rfc4733Receiver("l")
    press(rx2, "3", 1000, 0.0, drop={4, 5, 6})
    got = rx2.feed(ev("4", 800, True), 2000, False, 0.1)
    assert got is not None and got.digit == "3"
    queued = rx2.poll(0.1)
    assert queued is not None and queued.digit == "4"


def test_reordered_old_packets_are_ignored() -> None:
    rx = Rfc4733Receiver("l")
    press(rx, "1", 1000, 0.0)
    press(rx, "2", 2000, 1.0)
    assert rx.feed(ev("1", 320), 1000, False, 1.5) is None
    assert rx.poll(5.0) is None


def test_timestamp_wraparound() -> None:
    rx = Rfc4733Receiver("l")
    a = press(rx, "1", 0xFFFFFF00, 0.0)
    b = press(rx, "2", 0x00000100, 1.0)
    assert [g.digit for g in a + b] == ["1", "2"]


def test_non_dtmf_events_ignored() -> None:
    rx = Rfc4733Receiver("l")
    assert rx.feed(TelephoneEvent(16, end=True, duration=800), 1, True, 0.0) is None  # flash
    assert rx.poll(1.0) is None


def test_long_event_segments_are_one_digit() -> None:
    sender = Rfc4733Sender(101, 8000)
    rx = Rfc4733Receiver("l")
    got = []
    for pkt in sender.packets("0", duration_ms=10_000):
        event = TelephoneEvent.parse(pkt.payload)
        r = rx.feed(event, 4242 + pkt.timestamp_offset, pkt.marker, pkt.send_offset_ms / 1000)
        if r:
            got.append(r)
    assert [(g.digit, g.duration_ms) for g in got] == [("0", 10_000)]


# --- RFC 4733 sender -----------------------------------------------------------------------


def test_sender_sequence_rfc4733_2_5_1() -> None:
    packets = list(Rfc4733Sender(101, 8000).packets("5", duration_ms=100, volume=10))
    decoded = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp_offset for p in packets} == {0}  # all carry the start timestamp
    assert [p.send_offset_ms for p in packets] == [0, 20, 40, 60, 80, 100, 120]
    assert [d.duration for d in decoded] == [160, 320, 480, 640, 800, 800, 800]
    assert [d.end for d in decoded] == [False] * 4 + [True] * 3
    assert {d.event for d in decoded} == {5} and {d.volume for d in decoded} == {10}
    assert packets[4].payload == packets[5].payload == packets[6].payload


def test_sender_short_digit_and_clock_rate() -> None:
    packets = list(Rfc4733Sender(96, 16000).packets("#", duration_ms=20))
    assert len(packets) == 3 and packets[0].marker and not packets[1].marker
    assert TelephoneEvent.parse(packets[0].payload).duration == 320
    with pytest.raises(ValueError, match="not a DTMF digit"):
        list(Rfc4733Sender().packets("X"))


def test_sender_long_event_segments() -> None:
    packets = list(Rfc4733Sender(101, 8000).packets("1", duration_ms=10_000))
    decoded = [TelephoneEvent.parse(p.payload) for p in packets]
    assert max(d.duration for d in decoded) <= 0xFFFF
    offsets = sorted({p.timestamp_offset for p in packets})
    assert offsets[0] == 0 and len(offsets) == 2
    assert all(not d.end for d, p in zip(decoded, packets, strict=True) if p.timestamp_offset == 0)
    assert sum(1 for d in decoded if d.end) == 3


# --- SIP INFO ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        ("Application/DTMF-Relay; charset=utf-8", "signal= 9 \nduration = 250", ("9", 250)),
        ("application/dtmf-relay", "SIGNAL=*\r\nDURATION=100", ("*", 100)),
        ("application/dtmf-relay", "Signal=#\r\n", ("#", 100)),
        ("application/dtmf-relay", "Signal=10\r\nDuration=120", ("*", 120)),
        ("application/dtmf-relay", "Signal=11\r\nDuration=120", ("#", 120)),
        ("application/dtmf-relay", "Signal=d\r\nDuration=x", ("D", 100)),
        ("application/dtmf-relay", "Signal=A\r\nDuration=0", ("A", 100)),
        ("application/dtmf", "7", ("7", 100)),
        ("application/dtmf", b" b \r\n", ("B", 100)),
        ("application/dtmf", "11", ("#", 100)),
        ("application/dtmf-relay", "Duration=160", None),
        ("application/dtmf-relay", "Signal=16", None),
        ("application/dtmf-relay", "Signal=X", None),
        ("application/dtmf", "", None),
        ("application/sdp", "Signal=5", None),
    ],
)
def test_parse_dtmf_info(
    content_type: str, body: bytes | str, expected: tuple[str, int] | None
) -> None:
    assert parse_dtmf_info(content_type, body) == expected


# --- In-band detector ----------------------------------------------------------------------


def dtmf_tone(
    digit: str,
    ms: float,
    rate: int = 8000,
    level: float = -20.0,
    deviation: tuple[float, float] = (0.0, 0.0),
    twist_db: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Digit at ``level`` dBm0 per tone; twist_db > 0 makes the row (low) tone stronger."""
    row = next(i for i, keys in enumerate(KEYPAD) if digit in keys)
    col = KEYPAD[row].index(digit)
    n = np.arange(int(ms * rate / 1000))
    amp = DBM0_PEAK * 10 ** (level / 20)
    f_row = ROW_FREQUENCIES[row] * (1 + deviation[0])
    f_col = COLUMN_FREQUENCIES[col] * (1 + deviation[1])
    low = amp * 10 ** (twist_db / 20) * np.sin(2 * np.pi * f_row * n / rate + 0.3)
    return low + amp * np.sin(2 * np.pi * f_col * n / rate + 1.1)


def detect(signal: npt.NDArray[np.float64], rate: int = 8000) -> list[DtmfReceived]:
    """Feed 20 ms int16 frames, as the mixer does."""
    pcm = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
    frame = rate // 50
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % frame, dtype=np.int16)])
    det = GoertzelDetector(rate, leg_id="L")
    out: list[DtmfReceived] = []
    for i in range(0, len(pcm), frame):
        out += det.feed(pcm[i : i + frame], i / rate)
    return out + det.flush(len(pcm) / rate)


def silence(ms: float, rate: int = 8000) -> npt.NDArray[np.float64]:
    return np.zeros(int(ms * rate / 1000))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_all_digits_in_noise_detected_once_in_order(rate: int) -> None:
    rng = np.random.default_rng(4733)
    parts = [silence(50, rate)]
    for digit in DIGITS:
        parts += [dtmf_tone(digit, 60, rate), silence(60, rate)]
    clean = np.concatenate(parts)
    tone_power = np.mean(dtmf_tone("5", 1000, rate) ** 2)
    noisy = clean + rng.normal(0.0, np.sqrt(tone_power / 100), len(clean))  # 20 dB SNR
    got = detect(noisy, rate)
    assert "".join(g.digit for g in got) == DIGITS
    assert {g.source for g in got} == {"inband"} and {g.leg_id for g in got} == {"L"}
    assert all(40 <= g.duration_ms <= 90 for g in got)


def test_held_key_is_one_digit_and_reported_at_its_end() -> None:
    got = detect(np.concatenate([dtmf_tone("8", 500), silence(100)]))
    assert [g.digit for g in got] == ["8"]
    assert 470 <= got[0].duration_ms <= 540
    assert 0.5 <= got[0].at <= 0.6


def test_repeated_digit_after_40ms_pause_counts_twice() -> None:
    for offset in range(0, 100, 13):  # every alignment of tones against analysis blocks
        signal = np.concatenate(
            [silence(offset / 8), dtmf_tone("3", 60), silence(40), dtmf_tone("3", 60)]
        )
        assert [g.digit for g in detect(signal)] == ["3", "3"]


def test_digit_change_without_pause() -> None:
    got = detect(np.concatenate([dtmf_tone("1", 80), dtmf_tone("9", 80), silence(60)]))
    assert [g.digit for g in got] == ["1", "9"]


@pytest.mark.parametrize("digit", DIGITS)
@pytest.mark.parametrize("dev", [0.015, -0.015])
def test_frequency_deviation_within_1_5_percent_accepted(digit: str, dev: float) -> None:
    for deviation in ((dev, 0.0), (0.0, dev), (dev, dev)):
        signal = np.concatenate([dtmf_tone(digit, 80, deviation=deviation), silence(60)])
        assert [g.digit for g in detect(signal)] == [digit], deviation


@pytest.mark.parametrize("digit", DIGITS)
@pytest.mark.parametrize("dev", [0.035, -0.035])
def test_frequency_deviation_of_3_5_percent_rejected(digit: str, dev: float) -> None:
    for deviation in ((dev, 0.0), (0.0, dev)):
        signal = np.concatenate([dtmf_tone(digit, 80, deviation=deviation), silence(60)])
        assert detect(signal) == [], deviation


@pytest.mark.parametrize(
    ("twist_db", "accepted"), [(7.0, True), (-3.0, True), (9.0, False), (-5.0, False)]
)
def test_twist_limits(twist_db: float, accepted: bool) -> None:
    # Normal twist (row stronger) up to 8 dB, reverse twist (column stronger) up to 4 dB.
    for digit in "1599*D":
        signal = np.concatenate([dtmf_tone(digit, 80, level=-15, twist_db=twist_db), silence(60)])
        assert len(detect(signal)) == (1 if accepted else 0), digit


@pytest.mark.parametrize(("level", "accepted"), [(-3.0, True), (-24.0, True), (-30.0, False)])
def test_level_limits(level: float, accepted: bool) -> None:
    signal = np.concatenate([dtmf_tone("6", 80, level=level), silence(60)])
    assert len(detect(signal)) == (1 if accepted else 0)


def test_too_short_tone_rejected() -> None:
    assert detect(np.concatenate([silence(30), dtmf_tone("2", 15), silence(60)])) == []


def test_no_detection_on_single_tone_noise_voice_or_music() -> None:
    rate = 8000
    n = np.arange(5 * rate)
    assert detect(8000 * np.sin(2 * np.pi * 1000 * n / rate)) == []
    assert detect(np.random.default_rng(1).normal(0, 6000, 5 * rate)) == []
    # Voice-like: glottal harmonics with a 1/k spectrum and a gliding pitch (100-250 Hz).
    f0 = 100 + 150 * (n / len(n))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = np.sum([(4000 / k) * np.sin(k * phase) for k in range(1, 30)], axis=0)
    assert detect(voice) == []
    music, music_rate = soundfile.read(str(MOH), dtype="int16")
    assert music_rate == rate
    assert detect(music.astype(np.float64)) == []


def test_accepts_any_frame_size_and_float_input() -> None:
    signal = np.concatenate([silence(20), dtmf_tone("0", 80), silence(60)])
    det = GoertzelDetector(8000)
    got = []
    for i in range(0, len(signal), 37):
        got += det.feed(signal[i : i + 37], 0.0)
    assert [g.digit for g in got] == ["0"]
    assert det.block_samples == 102
    with pytest.raises(ValueError):
        GoertzelDetector(4000)

"""G.711 Appendix I style concealment: pitch kept, 20 % per 10 ms fade, silence at 60 ms."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from media.plc import PacketLossConcealer

Int16Array = npt.NDArray[np.int16]


def tone(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> Int16Array:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.int16)


def rms(x: Int16Array) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_hz(x: Int16Array, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def primed(signal: Int16Array, rate: int = 8000, frames: int = 5) -> PacketLossConcealer:
    plc = PacketLossConcealer(rate)
    n = rate // 50
    for i in range(frames):
        out = plc.good_frame(signal[i * n : (i + 1) * n])
        assert np.array_equal(out, signal[i * n : (i + 1) * n])  # untouched without loss
    return plc


def test_concealed_tone_keeps_its_pitch_then_fades_to_silence() -> None:
    x = tone(1000, 8000, 0.5)
    plc = primed(x)
    concealed = np.concatenate([plc.conceal(160) for _ in range(5)])  # 100 ms of loss
    first = concealed[:160]
    assert peak_hz(first, 8000) == pytest.approx(1000, abs=60)
    # First 10 ms at full level (App. I), close to the real continuation.
    assert rms(first[:80]) == pytest.approx(rms(x[800:880]), rel=0.1)
    truth = x[800:960].astype(np.float64)
    assert np.corrcoef(first.astype(np.float64), truth)[0, 1] > 0.95
    # Then -20 % per 10 ms: each 10 ms block quieter than the one before.
    levels = [rms(concealed[i : i + 80]) for i in range(0, 480, 80)]
    assert all(b < a for a, b in itertools.pairwise(levels))
    assert levels[3] == pytest.approx(levels[0] * 0.5, rel=0.15)  # 30-40 ms: gain 0.6..0.4
    # Silent from 60 ms on.
    assert not concealed[480:].any()
    assert plc.concealing


def test_frame_size_does_not_change_the_result() -> None:
    x = tone(1000, 8000, 0.5)
    whole = primed(x).conceal(480)
    plc = primed(x)
    pieces = np.concatenate([plc.conceal(n) for n in (50, 110, 160, 160)])
    assert np.array_equal(whole, pieces)


def test_voiced_signal_repeats_its_pitch_period() -> None:
    # A 160 Hz voice-like harmonic signal: period 50 samples at 8 kHz.
    t = np.arange(4000) / 8000
    x = sum(3000 / k * np.sin(2 * np.pi * 160 * k * t + k) for k in range(1, 6))
    pcm = np.asarray(x, dtype=np.int16)
    plc = primed(pcm)
    first = plc.conceal(80).astype(np.float64)
    truth = pcm[800:880].astype(np.float64)
    assert np.corrcoef(first, truth)[0, 1] > 0.95


def test_good_frame_after_loss_is_cross_faded_then_untouched() -> None:
    x = tone(1000, 8000, 0.5)
    plc = primed(x)
    plc.conceal(160)
    good = x[960:1120]
    out = plc.good_frame(good)
    assert not plc.concealing
    ola = 80  # at most 10 ms
    assert np.array_equal(out[ola:], good[ola:])
    # The blend stays close to the real signal (synthetic and real are both the tone).
    assert rms(out[:ola] - good[:ola]) < 0.3 * rms(good)
    # The next loss starts fresh at full level.
    plc.good_frame(x[1120:1280])
    assert rms(plc.conceal(80)) == pytest.approx(rms(x[:80]), rel=0.15)


def test_after_long_loss_the_good_frame_fades_in() -> None:
    x = tone(1000, 8000, 0.5)
    plc = primed(x)
    for _ in range(4):
        plc.conceal(160)  # 80 ms: muted
    out = plc.good_frame(x[1440:1600])
    assert abs(int(out[0])) < abs(int(x[1440])) or x[1440] == 0
    assert rms(out[:20]) < rms(out[100:])


def test_works_at_16_khz() -> None:
    x = tone(1000, 16000, 0.3)
    plc = primed(x, rate=16000)
    concealed = plc.conceal(320)
    assert peak_hz(concealed, 16000) == pytest.approx(1000, abs=60)
    assert not plc.conceal(320 * 3)[-320:].any()


def test_silence_in_gives_silence_out() -> None:
    plc = primed(np.zeros(800, dtype=np.int16))
    assert not plc.conceal(160).any()


def test_rejects_unsupported_rate() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        PacketLossConcealer(11025)

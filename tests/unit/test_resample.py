"""Resampling quality: level and frequency kept, aliases removed, no clicks at frame edges."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from media.resample import StreamResampler, resample

Int16Array = npt.NDArray[np.int16]


def tone(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> Int16Array:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: Int16Array) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


def peak_hz(x: Int16Array, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def stream(resampler: StreamResampler, x: Int16Array, ms: int = 20) -> Int16Array:
    n = resampler.from_rate * ms // 1000
    return np.concatenate([resampler.process(x[i : i + n]) for i in range(0, len(x), n)])


def test_1khz_survives_8k_16k_8k_in_20ms_frames() -> None:
    x = tone(1000, 8000, 1.0)
    wide = stream(StreamResampler(8000, 16000), x)
    back = stream(StreamResampler(16000, 8000), wide)
    assert len(wide) == 16000 and len(back) == 8000
    steady = slice(800, None)  # past the filters' start-up
    assert abs(db(rms(back[steady]) / rms(x[steady]))) < 0.5
    assert abs(db(rms(wide[1600:]) / rms(x[steady]))) < 0.5
    assert peak_hz(back[steady], 8000) == pytest.approx(1000, abs=10)
    assert peak_hz(wide[1600:], 16000) == pytest.approx(1000, abs=10)


def test_5khz_is_removed_when_going_to_8k() -> None:
    # 5 kHz cannot exist at 8 kHz: without the low-pass it would alias to 3 kHz.
    x = tone(5000, 16000, 1.0)
    y = stream(StreamResampler(16000, 8000), x)
    assert db(rms(y[400:]) / rms(x)) < -30


def test_passband_edge_is_kept() -> None:
    x = tone(3000, 8000, 1.0)
    y = stream(StreamResampler(8000, 16000), x)
    assert abs(db(rms(y[1600:]) / rms(x[800:]))) < 0.5


@pytest.mark.parametrize(
    ("src", "dst"),
    [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)],
)
def test_frames_equal_whole_signal(src: int, dst: int) -> None:
    # The filter state carries over, so frame boundaries leave no trace (no clicks).
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(src // 2) * 3000).astype(np.int16)
    whole = StreamResampler(src, dst).process(x)
    framed = stream(StreamResampler(src, dst), x)
    assert len(whole) == len(x) * dst // src
    assert np.array_equal(whole, framed)


def test_fresh_frames_would_differ_from_the_stream() -> None:
    # Guard for the test above: a resampler without state restarts at every frame.
    x = tone(1000, 8000, 0.1)
    continuous = stream(StreamResampler(8000, 16000), x)
    restarted = np.concatenate(
        [StreamResampler(8000, 16000).process(x[i : i + 160]) for i in range(0, 800, 160)]
    )
    assert not np.array_equal(continuous, restarted)


def test_reset_forgets_the_previous_talker() -> None:
    r = StreamResampler(8000, 16000)
    r.process(tone(1000, 8000, 0.02))
    r.reset()
    assert not r.process(np.zeros(160, dtype=np.int16)).any()


def test_same_rate_is_a_copy_and_odd_ratios_are_refused() -> None:
    x = tone(1000, 8000, 0.02)
    assert np.array_equal(StreamResampler(8000, 8000).process(x), x)
    with pytest.raises(ValueError, match="integer rate ratio"):
        StreamResampler(44100, 8000)
    with pytest.raises(ValueError, match="multiple of 2"):
        StreamResampler(16000, 8000).process(np.zeros(3, dtype=np.int16))


@pytest.mark.parametrize(("src", "dst"), [(44100, 8000), (22050, 16000), (8000, 48000)])
def test_one_shot_resample_of_a_file(src: int, dst: int) -> None:
    x = tone(1000, src, 0.5)
    y = resample(x, src, dst)
    assert y.dtype == np.int16
    assert abs(len(y) - len(x) * dst / src) <= 1
    inner = slice(len(y) // 10, -len(y) // 10)
    assert abs(db(rms(y[inner]) / rms(x))) < 0.5
    assert peak_hz(y[inner], dst) == pytest.approx(1000, abs=15)


def test_one_shot_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10, dtype=np.int16), 0, 8000)
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((10, 2), dtype=np.int16), 16000, 8000)
    assert len(resample(np.zeros(0, dtype=np.int16), 16000, 8000)) == 0

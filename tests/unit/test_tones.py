"""Tone plans and ToneSource: frequencies, cadences, phase continuity, finite tones."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from media.g711 import ulaw_decode
from media.tones import (
    DBM0_PEAK,
    TONE_PLANS,
    ToneGenerator,
    TonePlan,
    ToneSource,
    get_tone,
    tone_cycle,
    tone_pcm_cycle,
)

KINDS = {"ringback", "busy", "congestion", "reorder", "call_waiting", "dial", "beep"}


def collect(source: ToneSource, seconds: float) -> npt.NDArray[np.int16]:
    frames = []
    for _ in range(round(seconds * 50)):
        frame = source.read()
        if frame is None:
            break
        assert frame.dtype == np.int16 and len(frame) == source.rate // 50
        frames.append(frame)
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def on_off_pattern(pcm: npt.NDArray[np.int16], rate: int) -> list[tuple[bool, float]]:
    """Run lengths (seconds) of 10 ms blocks with / without signal."""
    block = rate // 100
    energy = np.abs(pcm[: len(pcm) // block * block].reshape(-1, block)).max(axis=1)
    on = energy > 100
    runs: list[tuple[bool, float]] = []
    for value in on:
        if runs and runs[-1][0] == value:
            runs[-1] = (bool(value), runs[-1][1] + 0.01)
        else:
            runs.append((bool(value), 0.01))
    return [(v, round(t, 2)) for v, t in runs]


def peak_frequencies(pcm: npt.NDArray[np.int16], rate: int, count: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    found: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        f = float(freqs[index])
        if all(abs(f - g) > 20 for g in found):
            found.append(f)
        if len(found) == count:
            break
    return sorted(found)


@pytest.mark.parametrize("plan", ["us", "uk", "cn"])
def test_every_plan_has_every_kind(plan: str) -> None:
    assert set(TONE_PLANS[plan]) >= KINDS
    assert get_tone(plan, "reorder") == get_tone(plan, "congestion")
    with pytest.raises(ValueError, match="unknown tone 'x' in plan"):
        get_tone(plan, "x")


@pytest.mark.parametrize(
    ("plan", "kind", "freqs", "pattern"),
    [
        ("us", "ringback", [440, 480], [(True, 2.0), (False, 4.0)]),
        ("us", "busy", [480, 620], [(True, 0.5), (False, 0.5)] * 3),
        ("us", "reorder", [480, 620], [(True, 0.25), (False, 0.25)] * 3),
        ("us", "call_waiting", [440], [(True, 0.3), (False, 9.7)]),
        ("uk", "ringback", [400, 450], [(True, 0.4), (False, 0.2), (True, 0.4), (False, 2.0)]),
        ("uk", "busy", [400], [(True, 0.375), (False, 0.375)] * 2),
        ("uk", "congestion", [400], [(True, 0.4), (False, 0.35), (True, 0.225), (False, 0.525)]),
        ("uk", "call_waiting", [400], [(True, 0.1), (False, 4.0)]),
        ("cn", "ringback", [450], [(True, 1.0), (False, 4.0)]),
        ("cn", "busy", [450], [(True, 0.35), (False, 0.35)] * 3),
        ("cn", "congestion", [450], [(True, 0.7), (False, 0.7)]),
        ("cn", "call_waiting", [450], [(True, 0.4), (False, 4.0)]),
    ],
)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_frequencies_and_cadence(
    plan: str, kind: str, freqs: list[float], pattern: list[tuple[bool, float]], rate: int
) -> None:
    seconds = sum(t for _, t in pattern)
    pcm = collect(ToneSource(kind, plan, rate), seconds)
    runs = on_off_pattern(pcm, rate)
    assert [v for v, _ in runs] == [v for v, _ in pattern]
    for (_, got), (_, want) in zip(runs, pattern, strict=True):
        assert got == pytest.approx(want, abs=0.011)  # 10 ms blocks
    on = pcm[: int(pattern[0][1] * rate)]
    assert peak_frequencies(on, rate, len(freqs)) == pytest.approx(freqs, abs=3)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_dial_tone_is_continuous_and_phase_continuous(rate: int) -> None:
    source = ToneSource("dial", "us", rate)
    pcm = collect(source, 3.0).astype(np.float64)
    assert on_off_pattern(pcm.astype(np.int16), rate) == [(True, 3.0)]
    assert peak_frequencies(pcm.astype(np.int16), rate, 2) == pytest.approx([350, 440], abs=1)
    # The reference: one sine sum computed over the whole span; frames must match it.
    t = np.arange(len(pcm)) / rate
    amp = DBM0_PEAK * 10 ** (-13 / 20)
    ref = amp * (np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t))
    assert np.abs(pcm - ref).max() <= 1.0
    # No jump at frame boundaries bigger than the sine's own slope allows.
    max_step = amp * 2 * np.pi * (350 + 440) / rate
    assert np.abs(np.diff(pcm)).max() <= max_step + 2


def test_levels_match_dbm0() -> None:
    pcm = collect(ToneSource("dial", "cn"), 1.0).astype(np.float64)
    level = 10 * np.log10(np.mean(pcm**2) / (DBM0_PEAK**2 / 2))
    assert level == pytest.approx(-13.0, abs=0.05)


def test_edges_are_ramped_not_clicks() -> None:
    pcm = collect(ToneSource("busy", "us"), 1.0).astype(np.float64)
    onset = pcm[:16]  # first 2 ms rise gradually
    assert np.abs(onset).max() < 0.6 * np.abs(pcm[400:800]).max()


def test_beep_plays_once_then_ends() -> None:
    source = ToneSource("beep", "us")
    pcm = collect(source, 5.0)
    assert len(pcm) == 13 * 160  # 0.25 s: 12.5 frames, the last padded with silence
    assert source.read() is None and source.done
    assert on_off_pattern(pcm, 8000)[0] == (True, 0.2)
    assert peak_frequencies(pcm[:1600], 8000, 1) == pytest.approx([1000], abs=3)


def test_duration_repeat_and_stop() -> None:
    assert len(collect(ToneSource("busy", "us", duration=0.31), 10)) == 16 * 160
    last = collect(ToneSource("busy", "us", duration=0.31), 10)[-160:]
    assert np.all(last[80:] == 0)  # padded after 0.31 s
    assert len(collect(ToneSource("busy", "us", repeat=2), 10)) == 100 * 160
    assert len(collect(ToneSource("beep", "us", repeat=3), 10)) == round(0.75 * 50) * 160
    source = ToneSource("ringback", "uk", 16000)
    assert source.read() is not None
    source.stop()
    assert source.read() is None
    with pytest.raises(ValueError):
        ToneSource("busy", "us", repeat=0)
    with pytest.raises(ValueError, match="unknown tone"):
        ToneSource("busy", "zz")


def test_custom_plan_from_config() -> None:
    spec = TonePlan((425.0,), (0.5, 0.5), level_dbm0=-10.0)
    pcm = collect(ToneSource.from_plan(spec, 8000, repeat=1), 5)
    assert len(pcm) == 50 * 160
    assert peak_frequencies(pcm[:4000], 8000, 1) == pytest.approx([425], abs=3)
    with pytest.raises(ValueError):
        TonePlan((0.0,), ())


def test_engine_api_unchanged() -> None:
    # media/engine.py uses tone_cycle(kind, codec, plan) and FRAME_SAMPLES-sized slices.
    for plan in TONE_PLANS:
        for kind in TONE_PLANS[plan]:
            cycle = tone_cycle(kind, "PCMU", plan)
            assert len(cycle) % 160 == 0
    cycle = tone_cycle("ringback", "PCMU", "us")
    assert len(cycle) == 6 * 8000
    pcm = ulaw_decode(cycle)
    assert np.abs(pcm[16000:]).max() == 0
    assert np.array_equal(tone_pcm_cycle(get_tone("us", "ringback")).shape, (48000,))
    gen = ToneGenerator("busy", "PCMA", "uk")
    assert b"".join(gen.next_frame() for _ in range(len(tone_cycle("busy", "PCMA", "uk")) // 160))

"""The pure mixer: sums, minus-self, clipping, mute, supervisor matrix, 8/16 kHz adaption."""

from __future__ import annotations

import numpy as np
import pytest

from media.clock import TickSchedule
from media.mixer import MixSpec, RateAdapter, frame_samples, mix, mix_all

N = 160


def const(value: int, n: int = N) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def test_everybody_hears_everybody_but_themselves() -> None:
    frames = {"a": const(100), "b": const(20), "c": const(3)}
    out = mix(frames, ["a", "b", "c"], N)
    assert {k: int(v[0]) for k, v in out.items()} == {"a": 23, "b": 103, "c": 120}
    assert all(v.dtype == np.int16 and v.shape == (N,) for v in out.values())


def test_silent_speaker_and_listener_only_leg() -> None:
    frames = {"a": const(100), "b": None}
    out = mix(frames, ["a", "b", "rec"], N)
    assert int(out["a"][0]) == 0 and int(out["b"][0]) == 100 and int(out["rec"][0]) == 100


def test_sum_is_clipped_not_wrapped() -> None:
    frames = {"a": const(30000), "b": const(30000), "c": const(-30000), "d": const(-30000)}
    out = mix(frames, ["a", "c"], N)
    assert int(out["a"][0]) == -30000  # b + c + d: the int32 sum never wraps on the way
    frames = {"a": const(30000), "b": const(30000), "x": const(10)}
    out = mix(frames, ["x", "a"], N)
    assert int(out["x"][0]) == 32767  # 60000 clipped
    frames = {"a": const(-30000), "b": const(-30000), "x": const(10)}
    assert int(mix(frames, ["x"], N)["x"][0]) == -32768
    assert int(mix_all({"a": const(30000), "b": const(30000)}, N)[0]) == 32767


def test_mute_inbound_and_outbound() -> None:
    frames = {"a": const(100), "b": const(20), "c": const(3)}
    spec = MixSpec(muted_speakers={"a"}, deaf_listeners={"c"})
    out = mix(frames, ["a", "b", "c"], N, spec)
    assert int(out["a"][0]) == 23  # a still hears everyone
    assert int(out["b"][0]) == 3  # nobody hears a
    assert int(out["c"][0]) == 0  # c hears nothing from the bridge
    assert int(mix_all(frames, N, spec)[0]) == 23


def test_supervisor_listen_whisper_barge() -> None:
    frames = {"agent": const(100), "cust": const(20), "sup": const(3)}
    listen = MixSpec(deaf={("agent", "sup"), ("cust", "sup")})
    out = mix(frames, frames, N, listen)
    assert [int(out[k][0]) for k in ("agent", "cust", "sup")] == [20, 100, 120]
    whisper = MixSpec(deaf={("cust", "sup")})
    out = mix(frames, frames, N, whisper)
    assert [int(out[k][0]) for k in ("agent", "cust", "sup")] == [23, 100, 120]
    out = mix(frames, frames, N, MixSpec())  # barge
    assert [int(out[k][0]) for k in ("agent", "cust", "sup")] == [23, 103, 120]
    assert not whisper.hears("cust", "sup") and whisper.hears("agent", "sup")
    assert not whisper.hears("sup", "sup")


def test_replace_and_extras() -> None:
    frames = {"a": const(100), "b": const(20)}
    out = mix(frames, ["a", "b"], N, replace={"a": const(7)}, extras={"b": [const(1), const(2)]})
    assert int(out["a"][0]) == 7  # the prompt instead of the bridge
    assert int(out["b"][0]) == 103  # the bridge plus injections


def test_wrong_frame_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="frame of a"):
        mix({"a": const(1, 80)}, ["a"], N)


def tone(freq: float, rate: int, n: int, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / rate
    samples: np.ndarray = np.rint(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return samples


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(float) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_narrowband_and_wideband_mixed_at_16k() -> None:
    up = RateAdapter(8000, 16000)
    down = RateAdapter(16000, 8000)
    assert RateAdapter(8000, 8000).process(const(5)) is not None
    n8, n16 = frame_samples(8000), frame_samples(16000)
    assert (n8, n16) == (160, 320)
    heard_by_nb: list[np.ndarray] = []
    heard_by_wb: list[np.ndarray] = []
    for k in range(25):
        nb = up.process(tone(700, 8000, n8, k * n8))  # narrowband leg at 8 kHz
        wb = tone(1500, 16000, n16, k * n16)  # wideband leg
        out = mix({"nb": nb, "wb": wb}, ["nb", "wb"], n16)
        heard_by_nb.append(down.process(out["nb"]))
        heard_by_wb.append(out["wb"])
    nb_pcm = np.concatenate(heard_by_nb[5:])
    wb_pcm = np.concatenate(heard_by_wb[5:])
    assert abs(peak_hz(nb_pcm, 8000) - 1500) < 60
    assert abs(peak_hz(wb_pcm, 16000) - 700) < 60


def test_tick_schedule_is_absolute_and_skips_after_stalls() -> None:
    s = TickSchedule(10.0, 0.02, 0.1)
    assert s.deadline == 10.0
    assert s.ran(10.005) == pytest.approx(10.02)  # late tick: the next is still on the grid
    assert s.ran(10.05) == pytest.approx(10.04)  # 30 ms late: catch up (due at once)
    assert s.skipped == 0
    nxt = s.ran(10.5)  # stalled ~0.44 s: skip ahead instead of bursting
    assert s.skipped > 0 and nxt > 10.45 and nxt == pytest.approx(10.0 + s.index * 0.02)


def test_two_party_shortcut_matches_the_general_mix() -> None:
    a, b = const(1234), const(-77)
    out = mix({"a": a, "b": b}, ["a", "b"], N)
    assert int(out["a"][0]) == -77 and int(out["b"][0]) == 1234
    out = mix({"a": a, "b": None}, ["a", "b"], N)
    assert int(out["a"][0]) == 0 and int(out["b"][0]) == 1234
    with pytest.raises(ValueError):
        mix({"a": const(1, 80), "b": b}, ["a", "b"], N)


def test_mix_all_with_zero_one_and_many_speakers() -> None:
    assert not mix_all({"a": None}, N).any()
    assert int(mix_all({"a": const(9), "b": None}, N)[0]) == 9
    assert int(mix_all({"a": const(9), "b": const(-4), "c": const(1)}, N)[0]) == 6


async def test_media_clock_ticks_on_its_grid_and_stops() -> None:
    import asyncio

    from media.clock import MediaClock

    loop = asyncio.get_running_loop()
    seen: list[int] = []
    clock = MediaClock(loop, lambda now, index: seen.append(index), period=0.005)
    clock.start()
    clock.start()  # idempotent
    assert clock.running
    while len(seen) < 5:
        await asyncio.sleep(0.005)
    clock.stop()
    count = len(seen)
    await asyncio.sleep(0.03)
    assert not clock.running and len(seen) == count
    assert seen[:5] == list(range(5)) or clock.skipped > 0  # absolute indexes, no repeats
    assert seen == sorted(set(seen))

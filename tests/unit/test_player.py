"""Prompt loading (WAV/FLAC/OGG, resampling, cache) and the Playlist frame source."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from media.player import Playlist, PromptCache, _resample_local, load_prompt

MOH = Path(__file__).resolve().parents[2] / "media" / "prompts" / "moh.wav"


def dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(spectrum.argmax())])


def write_tone(
    path: Path, rate: int, freq: float, seconds: float, channels: int = 1, **kw: str
) -> None:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    soundfile.write(str(path), data, rate, **kw)


@pytest.fixture
def cache() -> PromptCache:
    return PromptCache()


@pytest.mark.parametrize(
    ("name", "rate", "channels", "kw"),
    [
        ("stereo44k.wav", 44100, 2, {"subtype": "PCM_16"}),
        ("mono48k.flac", 48000, 1, {}),
        ("stereo22k.ogg", 22050, 2, {"format": "OGG", "subtype": "VORBIS"}),
        ("mono8k.wav", 8000, 1, {}),
    ],
)
@pytest.mark.parametrize("target", [8000, 16000])
def test_formats_load_resample_and_keep_their_pitch(
    tmp_path: Path,
    cache: PromptCache,
    name: str,
    rate: int,
    channels: int,
    kw: dict[str, str],
    target: int,
) -> None:
    path = tmp_path / name
    write_tone(path, rate, 1000.0, 1.0, channels, **kw)
    pcm = load_prompt(path, target, cache=cache)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - target) <= 2  # one second
    assert dominant_hz(pcm, target) == pytest.approx(1000.0, abs=2)
    # Level kept: 0.5 full scale sine (Vorbis is lossy, resampling filters: a few %).
    mid = pcm[len(pcm) // 4 : 3 * len(pcm) // 4].astype(np.float64)
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.05)
    assert not pcm.flags.writeable  # shared by every player: must not be modified


def test_stereo_is_averaged_to_mono(tmp_path: Path, cache: PromptCache) -> None:
    left = np.full(800, 0.5)
    right = np.full(800, -0.25)
    soundfile.write(str(tmp_path / "lr.wav"), np.stack([left, right], axis=1), 8000)
    pcm = load_prompt(tmp_path / "lr.wav", 8000, cache=cache)
    assert np.all(np.abs(pcm.astype(int) - 4096) <= 1)


def test_default_moh_track_is_440hz_dominant_and_small() -> None:
    info = soundfile.info(str(MOH))
    assert info.samplerate == 8000 and info.channels == 1 and 20 <= info.duration <= 30
    assert MOH.stat().st_size < 600_000
    for rate in (8000, 16000):
        pcm = load_prompt(MOH, rate, cache=PromptCache())
        assert dominant_hz(pcm, rate) == pytest.approx(440.0, abs=1)


def test_cache_hit_does_not_reload(
    tmp_path: Path, cache: PromptCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.wav"
    write_tone(path, 16000, 500.0, 0.5)
    calls = []
    real_read = soundfile.read

    def counting_read(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(soundfile, "read", counting_read)
    first = load_prompt(path, 8000, cache=cache)
    second = load_prompt(str(path), 8000, cache=cache)
    assert second is first and len(calls) == 1
    assert (cache.hits, cache.misses) == (1, 1)
    load_prompt(path, 16000, cache=cache)  # another rate is another entry
    assert len(calls) == 2 and len(cache) == 2
    # A changed file (new mtime) is reloaded.
    write_tone(path, 16000, 700.0, 0.5)
    os.utime(path, ns=(1, 1))
    changed = load_prompt(path, 8000, cache=cache)
    assert len(calls) == 3 and dominant_hz(changed, 8000) == pytest.approx(700, abs=3)


def test_cache_is_bounded_by_bytes(tmp_path: Path) -> None:
    cache = PromptCache(max_bytes=3 * 16000)  # three one-second 8 kHz prompts
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.wav")
        write_tone(paths[-1], 8000, 300.0 + i * 100, 1.0)
    for p in paths[:3]:
        load_prompt(p, 8000, cache=cache)
    load_prompt(paths[0], 8000, cache=cache)  # touch: 0 is now most recent
    load_prompt(paths[3], 8000, cache=cache)  # evicts 1, the least recently used
    assert len(cache) == 3 and cache.total_bytes <= cache.max_bytes
    misses = cache.misses
    load_prompt(paths[0], 8000, cache=cache)
    assert cache.misses == misses
    load_prompt(paths[1], 8000, cache=cache)
    assert cache.misses == misses + 1


def test_load_is_thread_safe(tmp_path: Path, cache: PromptCache) -> None:
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"t{i}.wav")
        write_tone(paths[-1], 11025, 400.0 + 50 * i, 0.3)
    results: list[npt.NDArray[np.int16]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                for p in paths:
                    results.append(load_prompt(p, 8000, cache=cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(results) == 48 and len(cache) == 4


def test_missing_file_and_bad_rate(cache: PromptCache, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_prompt(tmp_path / "nope.wav", 8000, cache=cache)
    with pytest.raises(ValueError):
        load_prompt(MOH, 0, cache=cache)


@pytest.mark.parametrize(("src", "dst"), [(44100, 8000), (11025, 16000), (48000, 16000)])
def test_local_resampler_fallback(src: int, dst: int) -> None:
    t = np.arange(src) / src
    x = 10000 * np.sin(2 * np.pi * 1000 * t) + 10000 * np.sin(2 * np.pi * 6000 * t)
    y = _resample_local(x, src, dst)
    assert abs(len(y) - dst) <= 1
    spectrum = np.abs(np.fft.rfft(y[dst // 10 : -dst // 10] * np.hanning(len(y) - dst // 5)))
    freqs = np.fft.rfftfreq(len(y) - dst // 5, 1 / dst)
    assert freqs[spectrum.argmax()] == pytest.approx(1000, abs=2)
    if dst < 12000:  # 6 kHz is above the new Nyquist: must be filtered, not aliased
        alias = abs(dst - 6000)
        near = spectrum[np.abs(freqs - alias) < 20].max()
        assert near < 1e-3 * spectrum.max()


# --- Playlist ------------------------------------------------------------------------------


def ramp(n: int, start: int = 0) -> npt.NDArray[np.int16]:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def drain(playlist: Playlist, limit: int = 10_000) -> list[npt.NDArray[np.int16]]:
    frames = []
    for _ in range(limit):
        frame = playlist.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_frames_concatenate_exactly_across_items() -> None:
    items = [ramp(250), ramp(500, 1000), ramp(90, 5000)]
    frames = drain(Playlist(items, 8000))
    assert all(len(f) == 160 for f in frames)
    joined = np.concatenate(frames)
    expected = np.concatenate(items)
    assert len(frames) == -(-len(expected) // 160)
    assert np.array_equal(joined[: len(expected)], expected)
    assert np.all(joined[len(expected) :] == 0)  # the last frame is padded with silence


def test_files_and_arrays_mixed_at_16k(tmp_path: Path, cache: PromptCache) -> None:
    path = tmp_path / "a.wav"
    write_tone(path, 16000, 300.0, 0.1)
    playlist = Playlist([path, ramp(320)], 16000, cache=cache)
    playlist.prepare()
    frames = drain(playlist)
    assert all(len(f) == 320 for f in frames) and len(frames) == 6
    joined = np.concatenate(frames)
    assert np.array_equal(joined[:1600], load_prompt(path, 16000, cache=cache))
    assert np.array_equal(joined[1600:1920], ramp(320))


def test_loop_wraps_seamlessly() -> None:
    items = [ramp(100), ramp(130, 7000)]
    playlist = Playlist(items, 8000, loop=True)
    frames = drain(playlist, limit=20)
    assert len(frames) == 20 and not playlist.done
    joined = np.concatenate(frames)
    period = np.concatenate(items)
    reps = -(-len(joined) // len(period))
    assert np.array_equal(joined, np.tile(period, reps)[: len(joined)])


def test_empty_items_never_loop_forever() -> None:
    assert Playlist([np.zeros(0, dtype=np.int16)], 8000, loop=True).read() is None
    assert Playlist([], 8000).read() is None


def test_stop_and_dtmf_interrupt() -> None:
    playlist = Playlist([ramp(8000)], 8000, interruptible_by={"1", "#", "a"})
    assert playlist.read() is not None
    assert playlist.on_dtmf("5") is False and playlist.read() is not None
    assert playlist.on_dtmf("A") is True and playlist.interrupted_by == "A"
    assert playlist.read() is None and playlist.done
    assert playlist.on_dtmf("1") is False  # already stopped

    uninterruptible = Playlist([ramp(8000)], 8000)
    assert uninterruptible.on_dtmf("1") is False and uninterruptible.read() is not None
    uninterruptible.stop()
    assert uninterruptible.read() is None

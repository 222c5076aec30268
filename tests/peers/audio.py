"""Tone files and FFT checks for real-peer audio tests.

Theory of operation
-------------------
A call "carries audio" when a pure tone played at one end shows up as the dominant
frequency of the recording at the other end. We skip the first ``skip_seconds`` (jitter
buffer fill, codec start-up, the silence before the player is connected), mix to mono,
apply a Hann window to keep spectral leakage from a truncated sine low, and take the
magnitude peak of the real FFT. Files whose RMS is ~0 raise ``SilentAudioError``: an
all-zero recording has no meaningful peak and must fail the test loudly rather than
report bin 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

PathLike = str | os.PathLike[str]

SILENCE_RMS = 1e-4  # full scale is 1.0; G.711 idle noise is well above this


class SilentAudioError(AssertionError):
    """The recording holds (almost) nothing but silence."""


def make_tone_wav(
    path: PathLike,
    freq_hz: float,
    seconds: float = 3.0,
    rate: int = 8000,
    amplitude: float = 0.5,
    channels: int = 1,
) -> Path:
    """Write a 16-bit PCM WAV of a pure sine tone; returns the path."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    tone = amplitude * np.sin(2.0 * np.pi * freq_hz * t)
    data = np.repeat(tone[:, None], channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data, rate, subtype="PCM_16")
    return Path(path)


def make_silence_wav(path: PathLike, seconds: float = 3.0, rate: int = 8000) -> Path:
    sf.write(str(path), np.zeros(int(seconds * rate)), rate, subtype="PCM_16")
    return Path(path)


def read_mono(path: PathLike, skip_seconds: float = 0.0) -> tuple[np.ndarray, int]:
    """Samples as float64 mono in [-1, 1] after skipping ``skip_seconds``; and the rate."""
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    mono = data.mean(axis=1)
    start = int(skip_seconds * rate)
    if start >= len(mono):
        # Short file: keep what there is rather than analysing nothing.
        start = 0
    return mono[start:], int(rate)


def rms(path: PathLike, skip_seconds: float = 0.0) -> float:
    x, _ = read_mono(path, skip_seconds)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def _spectrum(path: PathLike, skip_seconds: float) -> tuple[np.ndarray, np.ndarray, float]:
    x, rate = read_mono(path, skip_seconds)
    if len(x) < 256:
        raise SilentAudioError(f"{path}: only {len(x)} samples")
    level = float(np.sqrt(np.mean(x * x)))
    if level < SILENCE_RMS:
        raise SilentAudioError(f"{path}: silent (RMS {level:.2e}, {len(x)} samples at {rate} Hz)")
    x = x - x.mean()
    win = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * win))
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    # Amplitude normalisation so a full-scale sine reads ~0 dBFS whatever the length.
    mag = mag * 2.0 / win.sum()
    return freqs, mag, level


def dominant_frequency(path: PathLike, skip_seconds: float = 0.5) -> float:
    """Frequency (Hz) of the strongest FFT bin above 20 Hz; raises ``SilentAudioError``."""
    freqs, mag, _ = _spectrum(path, skip_seconds)
    mag = mag.copy()
    mag[freqs < 20.0] = 0.0  # DC and rumble
    return float(freqs[int(np.argmax(mag))])


def tone_level_db(
    path: PathLike, freq_hz: float, skip_seconds: float = 0.5, band_hz: float = 20.0
) -> float:
    """Peak level (dBFS) within ``freq_hz ± band_hz``; a full-scale sine reads about 0 dB.

    For presence/absence checks (whisper, conference mixes): compare against a threshold or
    against another tone's level in the same file."""
    freqs, mag, _ = _spectrum(path, skip_seconds)
    band = (freqs >= freq_hz - band_hz) & (freqs <= freq_hz + band_hz)
    if not band.any():
        raise ValueError(f"{freq_hz} Hz is outside the file's spectrum")
    peak = float(mag[band].max())
    return 20.0 * float(np.log10(max(peak, 1e-12)))


def has_tone(
    path: PathLike, freq_hz: float, tolerance_hz: float = 20.0, skip_seconds: float = 0.5
) -> bool:
    """True when the dominant frequency is within ``tolerance_hz`` of ``freq_hz``."""
    return abs(dominant_frequency(path, skip_seconds) - freq_hz) <= tolerance_hz


def describe(path: PathLike, skip_seconds: float = 0.5) -> str:
    """One line for assertion messages: duration, rate, RMS and dominant frequency."""
    info = sf.info(str(path))
    try:
        dom = f"{dominant_frequency(path, skip_seconds):.1f} Hz"
    except SilentAudioError as e:
        dom = f"n/a ({e})"
    return (
        f"{path}: {info.duration:.2f}s @ {info.samplerate} Hz x{info.channels}, "
        f"rms={rms(path, skip_seconds):.4f}, dominant={dom}"
    )

"""Prompt player: load audio files once, play them as 20 ms frames (sans-IO frame source).

Theory of operation
-------------------
``load_prompt(path, rate)`` reads a WAV/FLAC/OGG file with soundfile (any sample rate, any
channel count: channels are averaged to mono), resamples it once to the engine's rate (8 or
16 kHz) and returns a read-only ``int16`` array. Results live in a ``PromptCache``: an LRU
keyed by (resolved path, mtime, size, rate) and bounded by total bytes, so an edited file is
reloaded and a popular prompt is decoded once per rate. Loading is blocking work (decoding,
resampling: milliseconds to a second); the engine calls it through ``asyncio.to_thread``,
so the cache is guarded by a lock. Two threads asking for the same missing prompt at once may
both decode it; the second result simply replaces the first.

Resampling uses the engine's shared ``media.resample.resample`` (libsoxr). If that cannot be
imported (``soxr`` missing), a local polyphase windowed-sinc filter takes over (numpy only;
scipy is not a dependency): for a rational ratio L/M each output sample is a dot product of
the input around position n·M/L with one of L precomputed Kaiser-windowed sinc phases, the
cutoff at 95 % of the lower Nyquist frequency.

``Playlist`` plays prompts in sequence as a *frame source* (the mixer calls ``read()`` every
20 ms): frames run across item boundaries without gaps, the last frame is padded with
silence, ``loop=True`` wraps around, ``stop()`` ends it, and ``on_dtmf(digit)`` stops it when
the digit is one of ``interruptible_by`` (barge-in for IVR menus).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from math import gcd
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soundfile

__all__ = [
    "FRAME_MS",
    "FrameSource",
    "Playlist",
    "PromptCache",
    "load_prompt",
]

FRAME_MS = 20
Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]


class FrameSource(Protocol):
    """Anything the mixer can pull 20 ms frames from (``Playlist``, ``ToneSource``)."""

    def read(self) -> Int16Array | None: ...

    def stop(self) -> None: ...


# --- Resampling ----------------------------------------------------------------------------

_ZERO_CROSSINGS = 16  # filter half-length, in zero crossings of the sinc
_KAISER_BETA = 8.6  # about 80 dB stop-band attenuation
_CUTOFF = 0.95  # of the lower Nyquist frequency
_CHUNK = 16384  # outputs computed per step, bounds the temporary gather matrix


def _sinc_table(up: int, down: int) -> tuple[Float64Array, int]:
    """Polyphase filter: row p holds the taps for output phase p / up (rows sum to 1)."""
    ratio = min(1.0, up / down)
    cutoff = _CUTOFF * ratio  # relative to the input Nyquist frequency
    half = int(np.ceil(_ZERO_CROSSINGS / cutoff))
    taps = np.arange(-half + 1, half + 1, dtype=np.float64)  # input offsets from floor(pos)
    phases = np.arange(up, dtype=np.float64)[:, None] / up
    t = phases - taps[None, :]  # distance from each tap to the output position
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half) ** 2, 0.0, 1.0)))
    table = cutoff * np.sinc(cutoff * t) * window / np.i0(_KAISER_BETA)
    table /= table.sum(axis=1, keepdims=True)  # exact unity gain at DC for every phase
    return table, half


def _resample_local(pcm: Float64Array, from_rate: int, to_rate: int) -> Float64Array:
    if from_rate == to_rate or len(pcm) == 0:
        return pcm.astype(np.float64, copy=True)
    g = gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    if up > 8192:
        raise ValueError(f"resampling ratio {to_rate}/{from_rate} too irregular")
    table, half = _sinc_table(up, down)
    n_out = -(-len(pcm) * up // down)  # ceil: keep the tail
    padded = np.concatenate((np.zeros(half), pcm, np.zeros(half + 2)))
    out = np.empty(n_out, dtype=np.float64)
    offsets = np.arange(-half + 1, half + 1)
    for start in range(0, n_out, _CHUNK):
        n = np.arange(start, min(n_out, start + _CHUNK), dtype=np.int64)
        pos = n * down
        base = pos // up
        phase = pos - base * up
        idx = base[:, None] + offsets[None, :] + half
        out[start : start + len(n)] = np.einsum("ij,ij->i", padded[idx], table[phase])
    return out


def _resample(pcm: Float64Array, from_rate: int, to_rate: int) -> Float64Array:
    """Resample 16-bit-scaled samples: the engine's shared resampler, else the local one."""
    try:  # media.resample (libsoxr) when it and its dependency are installed
        from media.resample import resample as shared
    except ImportError:
        return _resample_local(pcm, from_rate, to_rate)
    pcm16 = np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)
    return np.asarray(shared(pcm16, from_rate, to_rate), dtype=np.float64)


# --- Loading and caching -------------------------------------------------------------------


def _decode(path: Path, rate: int) -> Int16Array:
    data, file_rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    # Work in 16-bit amplitude units so any resampler (float or int16 minded) fits.
    mono: Float64Array = data.mean(axis=1) * 32768.0
    if file_rate != rate:
        mono = _resample(mono, int(file_rate), rate)
    pcm = np.clip(np.rint(mono), -32768, 32767).astype(np.int16)
    pcm.setflags(write=False)
    return pcm


class PromptCache:
    """Thread-safe LRU of decoded prompts, bounded by the total bytes it holds."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int, int, int], Int16Array] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def total_bytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, path: str | os.PathLike[str], rate: int) -> Int16Array:
        """Decoded, resampled mono ``int16`` PCM of ``path`` at ``rate`` (read-only array)."""
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        resolved = Path(path).resolve()
        st = resolved.stat()  # FileNotFoundError names the file
        key = (str(resolved), st.st_mtime_ns, st.st_size, rate)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return cached
            self.misses += 1
        pcm = _decode(resolved, rate)  # outside the lock: other prompts stay available
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = pcm
            self._bytes += pcm.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
        return pcm

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


_DEFAULT_CACHE = PromptCache()


def load_prompt(
    path: str | os.PathLike[str], rate: int, *, cache: PromptCache | None = None
) -> Int16Array:
    """Load a prompt as mono ``int16`` at ``rate``, through ``cache`` (default: process-wide).

    Blocking (file I/O, decoding, resampling): call it from a thread, e.g.
    ``await asyncio.to_thread(load_prompt, path, 8000)``.
    """
    return (cache if cache is not None else _DEFAULT_CACHE).load(path, rate)


# --- Playlist ------------------------------------------------------------------------------

PlaylistItem = str | os.PathLike[str] | npt.NDArray[np.int16]


class Playlist:
    """Several prompts played back to back as 20 ms ``int16`` frames.

    ``items`` are file paths (loaded through ``load_prompt``) or ready ``int16`` arrays at
    ``rate``. Call ``prepare()`` in a thread before playing so that ``read()`` never blocks;
    ``read()`` prepares on first use otherwise. Frames returned by ``read()`` may be read-only
    views into cached prompts: copy before modifying.
    """

    def __init__(
        self,
        items: Iterable[PlaylistItem],
        rate: int,
        loop: bool = False,
        *,
        interruptible_by: set[str] | frozenset[str] | None = None,
        cache: PromptCache | None = None,
    ) -> None:
        if rate <= 0 or rate % 50:
            raise ValueError(f"playlist rate must be a positive multiple of 50, got {rate}")
        self.items: list[PlaylistItem] = list(items)
        self.rate = rate
        self.loop = loop
        self.interruptible_by = (
            frozenset(d.upper() for d in interruptible_by) if interruptible_by else frozenset()
        )
        self.frame_samples = rate * FRAME_MS // 1000
        self.interrupted_by: str | None = None
        self.stopped = False
        self._cache = cache
        self._tracks: list[Int16Array] | None = None
        self._index = 0  # current track
        self._offset = 0  # next sample in the current track

    def prepare(self) -> None:
        """Load every file item (blocking; idempotent)."""
        if self._tracks is not None:
            return
        tracks = []
        for item in self.items:
            if isinstance(item, np.ndarray):
                tracks.append(np.asarray(item, dtype=np.int16).ravel())
            else:
                tracks.append(load_prompt(item, self.rate, cache=self._cache))
        self._tracks = tracks

    @property
    def done(self) -> bool:
        """True once ``read()`` returns ``None``."""
        if self.stopped:
            return True
        if self._tracks is None:
            return False
        if not any(len(t) for t in self._tracks):
            return True
        return not self.loop and self._index >= len(self._tracks)

    def stop(self) -> None:
        """Stop playing; ``read()`` returns ``None`` from now on."""
        self.stopped = True

    def on_dtmf(self, digit: str) -> bool:
        """Stop if ``digit`` may interrupt this playlist; True if it did."""
        if self.stopped or digit.upper() not in self.interruptible_by:
            return False
        self.interrupted_by = digit.upper()
        self.stop()
        return True

    def read(self) -> Int16Array | None:
        """The next 20 ms frame, or ``None`` when the playlist is over or stopped."""
        self.prepare()
        if self.done:
            return None
        tracks = self._tracks
        assert tracks is not None
        n = self.frame_samples
        track = tracks[self._index]
        if self._offset + n <= len(track):  # common case: one view, no copy
            frame = track[self._offset : self._offset + n]
            self._offset += n
            self._advance_if_at_end()
            return frame
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and not self.done:
            track = tracks[self._index]
            take = min(n - filled, len(track) - self._offset)
            out[filled : filled + take] = track[self._offset : self._offset + take]
            filled += take
            self._offset += take
            self._advance_if_at_end()
        return out  # the tail of the last item is padded with silence

    def _advance_if_at_end(self) -> None:
        tracks = self._tracks
        assert tracks is not None
        while self._index < len(tracks) and self._offset >= len(tracks[self._index]):
            self._index += 1
            self._offset = 0
            if self._index >= len(tracks) and self.loop:
                self._index = 0
                if not any(len(t) for t in tracks):
                    return

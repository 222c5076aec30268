"""Sample-rate conversion of 16-bit mono PCM: one-shot for files, streaming for the mixer.

Theory of operation
-------------------
Two tools for two jobs:

* ``resample(pcm, from_rate, to_rate)`` converts a whole signal once (prompt files at
  44.1 kHz, 22.05 kHz, ...) with libsoxr (the ``soxr`` package, "HQ" quality: 20-bit
  precision, flat passband to ~0.91 of the lower Nyquist). It keeps no state, so it must not
  be used frame by frame: every call would restart the filter and click at frame edges.
* ``StreamResampler(from_rate, to_rate)`` converts a continuous stream given in frames
  (20 ms from the mixer) between rates whose ratio is an integer (8, 16 and 48 kHz: 2, 3
  and 6, either way). It is a polyphase FIR whose last ``taps - 1`` input samples are kept
  between calls, so processing frame by frame gives exactly the same samples as processing
  the whole stream at once: no clicks at frame boundaries.

The streaming filter is a Kaiser-windowed sinc low-pass at the Nyquist frequency of the
lower rate, with a transition band of ±15 % of it (for 8 kHz: pass to 3.4 kHz, stop from
4.6 kHz, which is the telephone band, ITU-T G.712) and 60 dB stop-band attenuation. Its
group delay is ``(taps - 1) / 2`` samples at the higher rate (1.5 ms for 8↔16 kHz).
Interpolation splits the filter into ``L`` phases so no multiplication by stuffed zeros is
done; decimation filters at the input rate in C (``np.convolve``) and keeps every ``M``-th
sample, which on 20 ms frames is faster than computing only the kept dot products in numpy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]  # ships .pyi without py.typed

__all__ = ["StreamResampler", "design_lowpass", "resample"]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

_STOPBAND_DB = 60.0
_TRANSITION = 0.15  # half-width of the transition band, as a fraction of the lower Nyquist


def resample(pcm: npt.ArrayLike, from_rate: int, to_rate: int) -> Int16Array:
    """Convert a whole mono int16 signal from ``from_rate`` to ``to_rate`` (libsoxr HQ).

    For files and prompts. Frame-by-frame conversion must use ``StreamResampler``.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    samples = np.asarray(pcm, dtype=np.int16)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {samples.shape}")
    if from_rate == to_rate or len(samples) == 0:
        return samples.copy()
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


def design_lowpass(cutoff: float, rate: int, transition: float) -> FloatArray:
    """Kaiser-windowed sinc low-pass: ``cutoff`` and ``transition`` (full width) in Hz.

    Unity gain at DC; odd length so the filter is linear-phase with an integer delay.
    """
    beta = 0.1102 * (_STOPBAND_DB - 8.7)  # Kaiser's formula for A > 50 dB
    width = 2.0 * math.pi * transition / rate
    taps = math.ceil((_STOPBAND_DB - 8.0) / (2.285 * width)) + 1
    taps |= 1
    n = np.arange(taps, dtype=np.float64) - (taps - 1) / 2
    h = (2.0 * cutoff / rate) * np.sinc(2.0 * cutoff / rate * n) * np.kaiser(taps, beta)
    h /= h.sum()
    return h


class StreamResampler:
    """Stateful integer-ratio resampler for a continuous stream of int16 frames.

    ``process(frame)`` returns ``len(frame) * to_rate / from_rate`` samples; the frame length
    must make that an integer (any 10/20/30 ms frame does for 8/16/48 kHz). Output is the
    input delayed by the filter's group delay (``delay_samples`` at the higher rate).
    """

    __slots__ = ("_down", "_phases", "_state", "_up", "delay_samples", "from_rate", "to_rate")

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        hi, lo = max(from_rate, to_rate), min(from_rate, to_rate)
        if hi % lo:
            raise ValueError(
                f"StreamResampler needs an integer rate ratio, got {from_rate} -> {to_rate}; "
                "use resample() for whole signals"
            )
        self.from_rate = from_rate
        self.to_rate = to_rate
        ratio = hi // lo
        self._up = to_rate // from_rate if to_rate > from_rate else 1
        self._down = from_rate // to_rate if from_rate > to_rate else 1
        nyquist = lo / 2
        h = design_lowpass(nyquist, hi, 2 * _TRANSITION * nyquist)
        self.delay_samples = (len(h) - 1) // 2
        if ratio == 1:
            self._phases = np.zeros((1, 0), dtype=np.float64)
            self._state = np.zeros(0, dtype=np.float64)
            return
        if self._up > 1:
            # Polyphase split (output n*L + p = sum_k h[p + k*L] * x[n - k]): each phase has
            # gain 1/L after normalisation, so multiply by L (the energy zero-stuffing loses).
            per_phase = -(-len(h) // self._up)
            padded = np.zeros(per_phase * self._up, dtype=np.float64)
            padded[: len(h)] = h * self._up
            self._phases = padded.reshape(per_phase, self._up).T.copy()  # [p, k] = h[p+kL]
            self._state = np.zeros(per_phase - 1, dtype=np.float64)
        else:
            self._phases = h.reshape(1, -1).copy()
            self._state = np.zeros(len(h) - 1, dtype=np.float64)

    def reset(self) -> None:
        """Forget the stream (new talker): the next frame starts from silence."""
        self._state[:] = 0.0

    def process(self, frame: Int16Array) -> Int16Array:
        """Resample one frame; state carries over to the next call."""
        n = len(frame)
        if self._up == 1 and self._down == 1:
            return frame.copy()
        if n % self._down:
            raise ValueError(f"frame of {n} samples is not a multiple of {self._down}")
        buf = np.concatenate((self._state, frame.astype(np.float64)))
        taps = self._phases.shape[1]
        self._state = buf[len(buf) - (taps - 1) :]
        # np.convolve "valid" over [state, frame]: one output per input sample, in C.
        if self._up > 1:
            out = np.empty(n * self._up, dtype=np.float64)
            for p in range(self._up):
                out[p :: self._up] = np.convolve(buf, self._phases[p], mode="valid")
        else:
            out = np.convolve(buf, self._phases[0], mode="valid")[:: self._down]
        np.rint(out, out=out)
        np.clip(out, -32768, 32767, out=out)
        return out.astype(np.int16)

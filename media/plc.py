"""Packet-loss concealment for waveform codecs (ITU-T G.711 Appendix I style, sans-IO, numpy).

Theory of operation
-------------------
A ``PacketLossConcealer`` sits after a waveform decoder (G.711, L16, and the PCM output of
G.722). Every good frame passes through ``good_frame`` and goes into a short history
buffer (3.25 longest pitch periods: 48.75 ms). When the jitter buffer reports a frame as lost,
``conceal`` synthesises a replacement from that history:

1. At the start of an erasure the pitch period ``P`` (5 .. 15 ms, i.e. 66 .. 200 Hz) is
   the lag that maximises the normalised cross-correlation between the last 20 ms of history
   and the history ``P`` samples earlier (G.711 App. I, done here at full rate with
   one ``np.correlate`` call instead of the coarse/fine two-pass search).
2. The last pitch period is repeated. Its last quarter period is overlap-added with the
   quarter period that precedes it, so the wrap-around from the end of the cycle back to its
   start is smooth (App. I).
3. After 10 ms the repeated segment grows to two pitch periods and after 20 ms to three, which
   avoids the buzzy sound of one cycle repeated for long (App. I); each change is
   cross-faded over a quarter period.
4. The first 10 ms are played at full level; then the output is attenuated linearly by 20 %
   per 10 ms, so it is silent from 60 ms on (App. I).
5. At the first good frame after an erasure, the start of the real signal is overlap-added
   with the continued synthetic signal over a quarter period plus 4 ms per extra 10 ms of
   erasure, at most 10 ms (App. I).

Deliberate deviation: App. I delays its output by a quarter of the longest pitch period
(3.75 ms) so it can also overlap-add the *end* of the real signal into the synthetic one.
We add no delay (the mixer's latency budget is tight and a delay would have to be applied
to every frame, lost or not); continuity at the start of an erasure relies on the chosen
pitch lag, which by construction makes the last history samples resemble the samples one
period earlier.

The parameters are defined at 8 kHz and scaled with ``sample_rate`` so the same class
conceals L16 and G.722 output at 16 kHz.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["PacketLossConcealer"]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

# G.711 App. I constants at 8 kHz (samples).
_PITCH_MIN_8K = 40  # 200 Hz
_PITCH_MAX_8K = 120  # 66 Hz
_CORR_LEN_8K = 160  # 20 ms correlation window
_EPS = 1e-9
_EMPTY: FloatArray = np.zeros(0, dtype=np.float64)


class PacketLossConcealer:
    """Conceal lost frames of one decoded PCM stream (one instance per stream and direction).

    ``good_frame(pcm)`` must see every decoded frame, in order; it returns the frame to play
    (identical except just after an erasure, where it is cross-faded). ``conceal(n)`` returns
    ``n`` synthetic samples for a lost frame.
    """

    __slots__ = (
        "_attenuate_after",
        "_corr_len",
        "_cycle",
        "_erased",
        "_history",
        "_history_len",
        "_lead",
        "_mute_after",
        "_offset",
        "_overlap",
        "_periods",
        "_pitch",
        "_pitch_max",
        "_pitch_min",
        "_real",
        "_ten_ms",
        "sample_rate",
    )

    def __init__(self, sample_rate: int = 8000) -> None:
        if sample_rate < 8000 or sample_rate % 4000:
            raise ValueError(f"unsupported PLC sample rate {sample_rate}")
        scale = sample_rate // 4000  # work in quarter steps so 12 kHz/24 kHz also scale
        self.sample_rate = sample_rate
        self._pitch_min = _PITCH_MIN_8K * scale // 2
        self._pitch_max = _PITCH_MAX_8K * scale // 2
        self._corr_len = _CORR_LEN_8K * scale // 2
        # Three longest periods plus the quarter period that the cycle's tail blends with.
        self._history_len = 3 * self._pitch_max + self._pitch_max // 4
        self._ten_ms = sample_rate // 100
        self._attenuate_after = self._ten_ms  # App. I: full level for 10 ms
        self._mute_after = 6 * self._ten_ms  # -20 % per 10 ms reaches 0 at 60 ms
        self._history: FloatArray = np.zeros(self._history_len, dtype=np.float64)
        self._cycle: FloatArray = np.zeros(0, dtype=np.float64)
        self._erased = 0  # samples concealed in the current erasure (0: not in one)
        self._pitch = self._pitch_min
        self._overlap = self._pitch_min // 4
        self._periods = 1
        self._offset = 0
        self._real: FloatArray = self._history
        self._lead: FloatArray = _EMPTY

    @property
    def concealing(self) -> bool:
        """True between a ``conceal`` and the next ``good_frame``."""
        return self._erased > 0

    # --- good frames -------------------------------------------------------------------

    def good_frame(self, pcm: Int16Array) -> Int16Array:
        """Record a correctly received frame; return it (cross-faded after an erasure)."""
        if self._erased == 0:
            self._push(pcm.astype(np.float64))
            return pcm
        # App. I: overlap-add the real signal with the continued synthetic one;
        # longer erasures get a longer, gentler transition.
        n = len(pcm)
        extra = max(0, (self._erased - 1) // self._ten_ms) * (self.sample_rate // 250)
        ola = min(self._pitch // 4 + extra, self._ten_ms, n)
        real = pcm.astype(np.float64)
        if ola > 0:
            synth = self._synthesise(ola)
            w = np.arange(1, ola + 1, dtype=np.float64) / (ola + 1)
            real[:ola] = w * real[:ola] + (1.0 - w) * synth
        self._erased = 0
        self._push(real)
        return _to_int16(real)

    # --- lost frames -------------------------------------------------------------------

    def conceal(self, samples: int) -> Int16Array:
        """Return ``samples`` synthetic samples standing in for a lost frame."""
        if samples <= 0:
            return np.zeros(0, dtype=np.int16)
        if self._erased == 0:
            self._start_erasure()
        out = np.empty(samples, dtype=np.float64)
        done = 0
        while done < samples:
            # Split the request at the 10 ms / 20 ms marks where the cycle grows.
            boundary = (self._erased // self._ten_ms + 1) * self._ten_ms
            chunk = min(samples - done, boundary - self._erased)
            out[done : done + chunk] = self._synthesise(chunk)
            done += chunk
            if self._erased == boundary and self._periods < 3:
                self._grow_cycle()
        self._push(out)
        return _to_int16(out)

    # --- internals ---------------------------------------------------------------------

    def _push(self, samples: FloatArray) -> None:
        n = len(samples)
        if n >= self._history_len:
            self._history = samples[-self._history_len :].copy()
        else:
            hist = self._history
            hist[:-n] = hist[n:]
            hist[-n:] = samples

    def _find_pitch(self) -> int:
        # Normalised cross-correlation, App. I: the last corr_len samples against the
        # same length ``lag`` samples earlier, for every lag in [pitch_min, pitch_max].
        hist = self._history
        end = len(hist)
        ref = hist[end - self._corr_len :]
        lagged = hist[end - self._corr_len - self._pitch_max : end - self._pitch_min]
        corr = np.correlate(lagged, ref, mode="valid")  # index k: lag pitch_max - k
        sq = np.concatenate(([0.0], np.cumsum(lagged * lagged)))
        energy = sq[self._corr_len :] - sq[: len(sq) - self._corr_len]
        score = corr / np.sqrt(np.maximum(energy, _EPS))
        # Ties (a pure tone fits every multiple of its period): prefer the shortest lag,
        # which reacts fastest and keeps the repeated segment most recent.
        best = int(np.flatnonzero(score >= score.max() - 1e-9 * abs(score.max()))[-1])
        return self._pitch_max - best

    def _make_cycle(self, periods: int) -> FloatArray:
        real = self._real
        end = len(real)
        length = periods * self._pitch
        cycle = real[end - length :].copy()
        ov = self._overlap
        if ov > 0:
            # App. I: blend the tail towards the samples that precede the cycle's
            # start, so the wrap from the last sample back to the first is smooth.
            w = np.arange(1, ov + 1, dtype=np.float64) / (ov + 1)
            before = real[end - length - ov : end - length]
            cycle[length - ov :] = (1.0 - w) * cycle[length - ov :] + w * before
        return cycle

    def _start_erasure(self) -> None:
        self._real = self._history.copy()  # the cycles repeat real signal, never synthetic
        self._pitch = self._find_pitch()
        self._overlap = self._pitch // 4
        self._periods = 1
        self._cycle = self._make_cycle(1)
        self._offset = 0
        self._lead = _EMPTY

    def _grow_cycle(self) -> None:
        # App. I: two, then three periods. Cycle k starts k periods before the end of
        # the real signal, so offset ``o`` in the old cycle is offset ``o + P`` in the new
        # one (same sample, same phase); a quarter-period cross-fade hides the different
        # tail blending.
        ov = self._overlap
        old = _take(self._cycle, self._offset, ov)
        self._periods += 1
        self._cycle = self._make_cycle(self._periods)
        offset = self._offset + self._pitch
        new = _take(self._cycle, offset, ov)
        w = np.arange(1, ov + 1, dtype=np.float64) / (ov + 1)
        self._lead = (1.0 - w) * old + w * new
        self._offset = (offset + ov) % len(self._cycle)

    def _synthesise(self, n: int) -> FloatArray:
        """Next ``n`` samples of the periodic extension, with the App. I gain applied."""
        lead = self._lead
        if len(lead):
            k = min(n, len(lead))
            self._lead = lead[k:]
            if k < n:
                raw = np.concatenate((lead[:k], _take(self._cycle, self._offset, n - k)))
                self._offset = (self._offset + n - k) % len(self._cycle)
            else:
                raw = lead[:k]
        else:
            raw = _take(self._cycle, self._offset, n)
            self._offset = (self._offset + n) % len(self._cycle)
        t = np.arange(self._erased, self._erased + n, dtype=np.float64)
        self._erased += n
        # App. I: 1.0 for 10 ms, then -20 % per 10 ms, 0 from 60 ms.
        span = self._mute_after - self._attenuate_after
        gain = np.clip(1.0 - (t - self._attenuate_after) / span, 0.0, 1.0)
        return raw * gain


def _take(cycle: FloatArray, offset: int, n: int) -> FloatArray:
    """``n`` samples of ``cycle`` repeated forever, starting at ``offset``."""
    length = len(cycle)
    idx = (np.arange(n) + offset) % length
    return cycle[idx]


def _to_int16(x: FloatArray) -> Int16Array:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

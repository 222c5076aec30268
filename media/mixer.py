"""The bridge mixer: frames per speaker in, frames per listener out (sans-IO, numpy).

Theory of operation
-------------------
Every 20 ms the media engine hands the mixer one decoded frame per leg of a bridge (``None``
for a leg that sent nothing to play this tick) at the bridge rate (8 kHz, or 16 kHz when a
wideband leg takes part). What each listener hears is

    sum(frames of the speakers it hears) - (its own frame) + extras   clipped to int16

computed the cheap way: one ``int32`` accumulator ``total`` of every audible speaker, then per
listener ``total - own - (speakers it must not hear)``. The common conference (everybody hears
everybody) therefore costs one sum plus one subtraction per listener, independent of the
number of parties; a supervisor in *listen* or *whisper* mode only adds subtractions for the
listeners who must not hear him. Summing in ``int32`` and clipping once at the end is the
clipping protection: two loud parties saturate instead of wrapping around.

Audibility is data, not code: ``MixSpec`` holds the per-pair exceptions ``deaf`` (listener,
speaker) that the engine's ``set_hears`` maintains, the speakers whose inbound audio is muted
(what they say goes nowhere) and the listeners whose outbound audio is muted (they hear nothing
from the bridge). ``replace`` gives a listener a frame instead of the bridge audio (a prompt
played to one leg), ``extras`` frames added on top (a whisper tone, music mixed under speech).

``RateAdapter`` converts a leg's frames to the bridge rate and back with the streaming
resampler of ``media.resample`` (state carried across frames, so no clicks at edges).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from media.resample import StreamResampler

__all__ = ["MixSpec", "RateAdapter", "frame_samples", "mix", "mix_all"]

Int16Array = npt.NDArray[np.int16]
Int32Array = npt.NDArray[np.int32]

FRAME_MS = 20
_MIN = -32768
_MAX = 32767


def frame_samples(rate: int) -> int:
    """Samples in one 20 ms frame at ``rate``."""
    return rate * FRAME_MS // 1000


@dataclass(slots=True)
class MixSpec:
    """Who hears whom in one bridge (everything not listed is audible)."""

    deaf: set[tuple[str, str]] = field(default_factory=set)  # (listener, speaker) pairs
    muted_speakers: set[str] = field(default_factory=set)  # inbound mute
    deaf_listeners: set[str] = field(default_factory=set)  # outbound mute

    def hears(self, listener: str, speaker: str) -> bool:
        """True when ``listener`` hears ``speaker`` through the bridge."""
        return (
            listener != speaker
            and speaker not in self.muted_speakers
            and listener not in self.deaf_listeners
            and (listener, speaker) not in self.deaf
        )


def _check(frame: Int16Array, samples: int, who: str) -> None:
    if frame.shape != (samples,):
        raise ValueError(f"frame of {who} has shape {frame.shape}, expected ({samples},)")


def _clip(acc: Int32Array) -> Int16Array:
    # Two ufuncs instead of np.clip: same result, a fraction of the per-call overhead.
    np.maximum(acc, _MIN, out=acc)
    np.minimum(acc, _MAX, out=acc)
    return acc.astype(np.int16)


def mix_all(
    frames: Mapping[str, Int16Array | None], samples: int, spec: MixSpec | None = None
) -> Int16Array:
    """The whole conference as one signal (for a recording tap): every unmuted speaker."""
    muted = spec.muted_speakers if spec is not None else ()
    active = []
    for leg, frame in frames.items():
        if frame is None or leg in muted:
            continue
        _check(frame, samples, leg)
        active.append(frame)
    if not active:
        return np.zeros(samples, dtype=np.int16)
    if len(active) == 1:
        return active[0]  # one speaker: nothing to sum or clip
    acc = active[0].astype(np.int32)
    for frame in active[1:]:
        acc += frame
    return _clip(acc)


def mix(
    frames: Mapping[str, Int16Array | None],
    listeners: Iterable[str],
    samples: int,
    spec: MixSpec | None = None,
    *,
    replace: Mapping[str, Int16Array] | None = None,
    extras: Mapping[str, Sequence[Int16Array]] | None = None,
) -> dict[str, Int16Array]:
    """What every listener hears this tick (see module doc). Frames are ``int16``.

    One ``int32`` row per listener: every row starts as the total, the listener's own frame
    is subtracted, then exceptions are applied; one clip and one conversion for all rows.
    """
    muted = spec.muted_speakers if spec is not None else ()
    ids = list(listeners)
    if (
        len(ids) == 2
        and not replace
        and not extras
        and (spec is None or not (spec.deaf or spec.muted_speakers or spec.deaf_listeners))
        and set(frames) <= set(ids)
    ):
        # Two parties, nothing special: each hears the other's frame as it is (no sum, no
        # clip). The common recorded or transcoded call.
        a, b = ids
        fa, fb = frames.get(a), frames.get(b)
        for who, frame in ((a, fa), (b, fb)):
            if frame is not None:
                _check(frame, samples, who)
        silence = np.zeros(samples, dtype=np.int16)
        return {a: fb if fb is not None else silence, b: fa if fa is not None else silence}
    total = np.zeros(samples, dtype=np.int32)
    speaking: dict[str, Int16Array] = {}
    for leg, frame in frames.items():
        if frame is None or leg in muted:
            continue
        _check(frame, samples, leg)
        total += frame
        speaking[leg] = frame
    rows = np.empty((len(ids), samples), dtype=np.int32)
    rows[:] = total
    deaf_pairs = spec.deaf if spec is not None else ()
    deaf_listeners = spec.deaf_listeners if spec is not None else ()
    for i, listener in enumerate(ids):
        row = rows[i]
        base = replace.get(listener) if replace else None
        if base is not None:
            _check(base, samples, f"replacement for {listener}")
            row[:] = base
        elif listener in deaf_listeners:
            row[:] = 0
        else:
            own = speaking.get(listener)
            if own is not None:
                row -= own  # minus-self: nobody hears their own voice back
            if deaf_pairs:
                for who, speaker in deaf_pairs:
                    if who == listener and speaker != listener:
                        frame = speaking.get(speaker)
                        if frame is not None:
                            row -= frame
        more = extras.get(listener) if extras else None
        if more:
            for extra in more:
                _check(extra, samples, f"extra for {listener}")
                row += extra
    mixed = _clip(rows)
    return {listener: mixed[i] for i, listener in enumerate(ids)}


class RateAdapter:
    """Converts a stream of 20 ms frames from one rate to another, keeping filter state."""

    __slots__ = ("_resampler", "from_rate", "to_rate")

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler = None if from_rate == to_rate else StreamResampler(from_rate, to_rate)

    def process(self, frame: Int16Array) -> Int16Array:
        """The frame at ``to_rate`` (the same array when the rates are equal)."""
        if self._resampler is None:
            return frame
        return self._resampler.process(frame)

    def reset(self) -> None:
        """Forget the filter state (new talker)."""
        if self._resampler is not None:
            self._resampler.reset()

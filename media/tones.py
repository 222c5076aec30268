"""Call-progress tones (ringback, busy, congestion, call waiting, dial, beep), sans-IO.

Theory of operation
-------------------
A tone is a sum of one or two sine waves switched on and off by a cadence. A *tone plan* is a
small table keyed by plan name (a country, chosen in config) then tone kind; each entry is a
``TonePlan`` value: frequencies, cadence (on, off, on, off, ... seconds), level and an optional
default repeat count. Add a country by adding a row to ``TONE_PLANS``, or build a ``TonePlan``
from config and hand it to ``ToneSource.from_plan``.

Two ways to play a tone:

* ``ToneSource`` produces 20 ms ``int16`` frames at 8 or 16 kHz for the mixer. Each frequency
  has its own phase accumulator carried from frame to frame, so the sine never jumps at a frame
  boundary nor when the cadence wraps; the on/off gate comes from a cached one-cycle envelope
  with 4 ms raised-cosine edges (a hard gate clicks). It can stop after a duration or a number
  of cadence cycles (a voicemail ``beep`` plays once).
* ``tone_cycle`` / ``ToneGenerator`` (used by the relay engine) cache one whole cadence cycle
  at 8 kHz, G.711-encoded; playing is slicing 160-octet frames out of it. Each plan's cycle
  holds a whole number of periods of every frequency, so the wrap is seamless too.

Sources: ITU-T E.180 Supplement 2 (national tone plans) as tabulated in practice (Asterisk
``indications.conf``): US per ANSI T1.401 / Telcordia "precise tone plan" (dial 350+440,
ringback 440+480 2 s/4 s, busy 480+620 0.5/0.5, reorder 480+620 0.25/0.25, call waiting
440 Hz 0.3 s every 10 s); UK per BT SIN 350 (dial 350+450, ringback 400+450 0.4/0.2/0.4/2.0,
busy 400 0.375/0.375, congestion 400 0.4/0.35/0.225/0.525, call waiting 400 0.1 s every 4 s);
CN per YD/T (450 Hz: dial continuous, ringback 1/4, busy 0.35/0.35, congestion 0.7/0.7, call
waiting 0.4/4.0). The ``beep`` (1 kHz, 200 ms, once) is the usual voicemail record cue.
Levels follow common practice: about -19 dBm0 per frequency for two-frequency tones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from media import g711

__all__ = [
    "DBM0_PEAK",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "TONE_PLANS",
    "ToneGenerator",
    "TonePlan",
    "ToneSource",
    "get_tone",
    "tone_cycle",
    "tone_pcm_cycle",
]

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
# 0 dBm0 for G.711 is a sine whose peak is 3.14 dB below full scale (G.711 Tables 5/6:
# the A-law/µ-law "digital milliwatt"); i.e. a full-scale sine is about +3.14 dBm0.
DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)
_DBM0_PEAK = DBM0_PEAK  # old private name
_RAMP_SECONDS = 0.004  # raised-cosine edge: long enough not to click, short enough not to blur

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TonePlan:
    """Frequencies (Hz), cadence (on, off, on, off, ... seconds) and level per frequency.

    An empty cadence is a continuous tone. ``repeat`` is how many cadence cycles the tone
    plays by default (``None``: until stopped).
    """

    frequencies: tuple[float, ...]
    cadence: tuple[float, ...]
    level_dbm0: float = -19.0
    repeat: int | None = None

    def __post_init__(self) -> None:
        if any(f <= 0 for f in self.frequencies):
            raise ValueError(f"tone frequencies must be positive: {self.frequencies}")
        if any(s < 0 for s in self.cadence) or (self.cadence and sum(self.cadence) <= 0):
            raise ValueError(f"invalid tone cadence: {self.cadence}")
        if self.repeat is not None and self.repeat < 1:
            raise ValueError(f"tone repeat must be >= 1, got {self.repeat}")


_US_BUSY = TonePlan((480.0, 620.0), (0.5, 0.5), level_dbm0=-24.0)
_US_REORDER = TonePlan((480.0, 620.0), (0.25, 0.25), level_dbm0=-24.0)
_UK_CONGESTION = TonePlan((400.0,), (0.4, 0.35, 0.225, 0.525))
_CN_CONGESTION = TonePlan((450.0,), (0.7, 0.7), level_dbm0=-13.0)
_BEEP = TonePlan((1000.0,), (0.2, 0.05), level_dbm0=-10.0, repeat=1)

# ITU-T E.180 Suppl. 2 national plans (see module docstring). "reorder" is the North
# American name of congestion; both keys exist so either name can come from config.
TONE_PLANS: dict[str, dict[str, TonePlan]] = {
    "us": {
        "ringback": TonePlan((440.0, 480.0), (2.0, 4.0)),
        "busy": _US_BUSY,
        "congestion": _US_REORDER,
        "reorder": _US_REORDER,
        "call_waiting": TonePlan((440.0,), (0.3, 9.7), level_dbm0=-13.0),
        "dial": TonePlan((350.0, 440.0), (), level_dbm0=-13.0),
        "beep": _BEEP,
    },
    "uk": {
        "ringback": TonePlan((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
        "busy": TonePlan((400.0,), (0.375, 0.375)),
        "congestion": _UK_CONGESTION,
        "reorder": _UK_CONGESTION,
        "call_waiting": TonePlan((400.0,), (0.1, 4.0)),
        "dial": TonePlan((350.0, 450.0), ()),
        "beep": _BEEP,
    },
    "cn": {
        "ringback": TonePlan((450.0,), (1.0, 4.0), level_dbm0=-13.0),
        "busy": TonePlan((450.0,), (0.35, 0.35), level_dbm0=-13.0),
        "congestion": _CN_CONGESTION,
        "reorder": _CN_CONGESTION,
        "call_waiting": TonePlan((450.0,), (0.4, 4.0), level_dbm0=-13.0),
        "dial": TonePlan((450.0,), (), level_dbm0=-13.0),
        "beep": _BEEP,
    },
}


def get_tone(plan: str, kind: str) -> TonePlan:
    """The ``TonePlan`` of ``kind`` in the named plan; ``ValueError`` if either is unknown."""
    try:
        return TONE_PLANS[plan][kind]
    except KeyError:
        raise ValueError(f"unknown tone {kind!r} in plan {plan!r}") from None


_lookup = get_tone  # old private name


def _segments(spec: TonePlan, rate: int) -> list[int]:
    # Each on/off edge on the nearest sample.
    cadence = spec.cadence or (1.0,)
    return [round(seconds * rate) for seconds in cadence]


@lru_cache(maxsize=64)
def _envelope(cadence: tuple[float, ...], rate: int) -> Float64Array:
    """One cadence cycle of gain in [0, 1] with raised-cosine edges inside the on segments."""
    spec = TonePlan((1.0,), cadence)
    segments = _segments(spec, rate)
    env = np.zeros(sum(segments), dtype=np.float64)
    ramp_len = max(1, round(_RAMP_SECONDS * rate))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_len) + 0.5) / ramp_len)
    start = 0
    for index, length in enumerate(segments):
        if index % 2 == 0 and length:
            seg = env[start : start + length]
            seg[:] = 1.0
            if cadence:  # a continuous tone has no edges
                r = min(ramp_len, length // 2)
                seg[:r] = ramp[:r]
                seg[length - r :] = ramp[:r][::-1]
        start += length
    env.setflags(write=False)
    return env


@lru_cache(maxsize=64)
def tone_pcm_cycle(spec: TonePlan, rate: int = SAMPLE_RATE) -> Int16Array:
    """One full cadence cycle as ``int16`` PCM at ``rate`` (read-only, cached)."""
    env = _envelope(spec.cadence, rate)
    total = len(env)
    t = np.arange(total, dtype=np.float64) / rate
    amplitude = DBM0_PEAK * 10 ** (spec.level_dbm0 / 20)
    wave = np.zeros(total, dtype=np.float64)
    for freq in spec.frequencies:
        wave += amplitude * np.sin(2 * np.pi * freq * t)
    pcm = np.rint(wave * env).astype(np.int16)
    pcm.setflags(write=False)
    return pcm


@lru_cache(maxsize=64)
def tone_cycle(kind: str, codec_name: str, plan: str = "us") -> bytes:
    """One full cadence cycle of the tone at 8 kHz, G.711-encoded; length is a multiple of 160."""
    pcm = tone_pcm_cycle(get_tone(plan, kind), SAMPLE_RATE)
    pad = -len(pcm) % FRAME_SAMPLES  # all plans above are whole frames already
    if pad:
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
    return g711.encode(codec_name, pcm)


class ToneGenerator:
    """Endless 20 ms frames of one tone for one codec (``PCMU`` or ``PCMA``)."""

    __slots__ = ("_cycle", "_offset", "codec_name", "kind", "plan")

    def __init__(self, kind: str = "ringback", codec_name: str = "PCMU", plan: str = "us") -> None:
        self.kind = kind
        self.codec_name = codec_name.upper()
        self.plan = plan
        self._cycle = tone_cycle(kind, self.codec_name, plan)
        self._offset = 0

    def next_frame(self) -> bytes:
        """The next 160 octets (20 ms) of the tone."""
        start = self._offset
        end = start + FRAME_SAMPLES
        self._offset = 0 if end >= len(self._cycle) else end
        return self._cycle[start:end]

    def skip(self, frames: int) -> None:
        """Advance by ``frames`` without producing them (the sender fell behind)."""
        self._offset = (self._offset + frames * FRAME_SAMPLES) % len(self._cycle)


class ToneSource:
    """20 ms ``int16`` frames of one tone at 8 or 16 kHz, phase-continuous (a frame source).

    ``read()`` returns the next frame, or ``None`` once the tone is over (after ``duration``
    seconds, after ``repeat`` cadence cycles, or after ``stop()``). The last frame is padded
    with silence. Without ``duration`` and ``repeat`` (and a plan without a default repeat)
    the tone plays until stopped.
    """

    __slots__ = (
        "_amplitude",
        "_env",
        "_increments",
        "_phases",
        "_position",
        "_total",
        "frame_samples",
        "rate",
        "spec",
        "stopped",
    )

    def __init__(
        self,
        kind: str,
        plan: str = "us",
        rate: int = SAMPLE_RATE,
        *,
        duration: float | None = None,
        repeat: int | None = None,
    ) -> None:
        self._setup(get_tone(plan, kind), rate, duration, repeat)

    @classmethod
    def from_plan(
        cls,
        spec: TonePlan,
        rate: int = SAMPLE_RATE,
        *,
        duration: float | None = None,
        repeat: int | None = None,
    ) -> ToneSource:
        """A source for a ``TonePlan`` that is not in ``TONE_PLANS`` (e.g. built from config)."""
        source = cls.__new__(cls)
        source._setup(spec, rate, duration, repeat)
        return source

    def _setup(self, spec: TonePlan, rate: int, duration: float | None, repeat: int | None) -> None:
        if rate <= 0 or rate % 100:
            raise ValueError(f"tone sample rate must be a positive multiple of 100, got {rate}")
        if duration is not None and duration < 0:
            raise ValueError(f"tone duration must be >= 0, got {duration}")
        if repeat is not None and repeat < 1:
            raise ValueError(f"tone repeat must be >= 1, got {repeat}")
        self.spec = spec
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        self._env = _envelope(spec.cadence, rate)
        self._amplitude = DBM0_PEAK * 10 ** (spec.level_dbm0 / 20)
        self._increments = [2 * np.pi * f / rate for f in spec.frequencies]
        self._phases = [0.0] * len(spec.frequencies)
        self._position = 0  # samples produced so far
        cycles = repeat if repeat is not None else spec.repeat
        total: int | None = None
        if cycles is not None:
            total = cycles * len(self._env)
        if duration is not None:
            by_time = round(duration * rate)
            total = by_time if total is None else min(total, by_time)
        self._total = total
        self.stopped = False

    @property
    def done(self) -> bool:
        """True once ``read()`` returns ``None``."""
        return self.stopped or (self._total is not None and self._position >= self._total)

    def stop(self) -> None:
        """End the tone now; the next ``read()`` returns ``None``."""
        self.stopped = True

    def read(self) -> Int16Array | None:
        """The next 20 ms frame (a new writable array), or ``None`` when the tone is over."""
        if self.done:
            return None
        n = self.frame_samples
        start = self._position
        ramp = np.arange(n, dtype=np.float64)
        wave = np.zeros(n, dtype=np.float64)
        for i, inc in enumerate(self._increments):
            phase = self._phases[i]
            wave += np.sin(phase + inc * ramp)
            # Carry the phase to the next frame (wrapped so it never loses precision).
            self._phases[i] = (phase + inc * n) % (2 * np.pi)
        env = self._env
        idx = (start + np.arange(n)) % len(env)
        wave *= env[idx] * self._amplitude
        if self._total is not None and start + n > self._total:
            wave[self._total - start :] = 0.0  # pad the last frame with silence
        self._position = start + n
        return np.rint(wave).astype(np.int16)

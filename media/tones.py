"""Call-progress tones (ringback, busy, congestion) as 20 ms G.711 frames (sans-IO).

Theory of operation
-------------------
A tone is a sum of one or two sine waves switched on and off by a cadence. One whole cadence
cycle is synthesised once with numpy, encoded to µ-law or A-law and cached; playing the tone
is then slicing 160-octet frames (20 ms at 8 kHz) out of that cycle, wrapping around. The
sine phase runs over the whole cycle, so a frame boundary never clicks; each plan's cycle
length holds a whole number of periods of every frequency, so the wrap is seamless too.

``TONE_PLANS`` is a small table keyed by country then tone kind, from ITU-T E.180
Supplement 2 (national tone plans): add a country by adding a row.
Levels follow common practice: about -19 dBm0 per frequency for two-frequency tones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from media import g711

__all__ = [
    "FRAME_MS",
    "SAMPLE_RATE",
    "TONE_PLANS",
    "ToneGenerator",
    "TonePlan",
    "tone_cycle",
]

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
# 0 dBm0 for G.711 is a sine of peak ~3.17 dB below full scale (G.711 Table 5/6 note).
_DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)


@dataclass(frozen=True, slots=True)
class TonePlan:
    """Frequencies (Hz), cadence (on, off, on, off, ... seconds) and level per frequency."""

    frequencies: tuple[float, ...]
    cadence: tuple[float, ...]
    level_dbm0: float = -19.0


# ITU-T E.180 Suppl. 2. An empty cadence means a continuous tone (cycle of one second).
TONE_PLANS: dict[str, dict[str, TonePlan]] = {
    "us": {
        "ringback": TonePlan((440.0, 480.0), (2.0, 4.0)),
        "busy": TonePlan((480.0, 620.0), (0.5, 0.5)),
        "congestion": TonePlan((480.0, 620.0), (0.25, 0.25)),
        "dial": TonePlan((350.0, 440.0), ()),
    },
    "uk": {
        "ringback": TonePlan((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
        "busy": TonePlan((400.0,), (0.375, 0.375)),
        "congestion": TonePlan((400.0,), (0.4, 0.35, 0.225, 0.525)),
        "dial": TonePlan((350.0, 450.0), ()),
    },
    "cn": {
        "ringback": TonePlan((450.0,), (1.0, 4.0), level_dbm0=-13.0),
        "busy": TonePlan((450.0,), (0.35, 0.35), level_dbm0=-13.0),
        "congestion": TonePlan((450.0,), (0.7, 0.7), level_dbm0=-13.0),
        "dial": TonePlan((450.0,), (), level_dbm0=-13.0),
    },
}


def _lookup(plan: str, kind: str) -> TonePlan:
    try:
        return TONE_PLANS[plan][kind]
    except KeyError:
        raise ValueError(f"unknown tone {kind!r} in plan {plan!r}") from None


@lru_cache(maxsize=64)
def tone_cycle(kind: str, codec_name: str, plan: str = "us") -> bytes:
    """One full cadence cycle of the tone, G.711-encoded; length is a multiple of 160."""
    spec = _lookup(plan, kind)
    cadence = spec.cadence or (1.0,)
    # Round each segment to whole 10 ms so every on/off edge lands on a sample boundary.
    segments = [round(seconds * 100) * SAMPLE_RATE // 100 for seconds in cadence]
    total = sum(segments)
    # Pad to a whole number of frames (all plans above already are).
    total += -total % FRAME_SAMPLES
    t = np.arange(total, dtype=np.float64) / SAMPLE_RATE
    amplitude = _DBM0_PEAK * 10 ** (spec.level_dbm0 / 20)
    wave = np.zeros(total, dtype=np.float64)
    for freq in spec.frequencies:
        wave += amplitude * np.sin(2 * np.pi * freq * t)
    gate = np.zeros(total, dtype=bool)
    start = 0
    for index, length in enumerate(segments):
        if index % 2 == 0 or not spec.cadence:
            gate[start : start + length] = True
        start += length
    pcm = np.where(gate, np.rint(wave), 0).astype(np.int16)
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

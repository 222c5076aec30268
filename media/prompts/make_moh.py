"""Generate the default music-on-hold loop, ``moh.wav`` (run: ``python media/prompts/make_moh.py``).

An original, royalty-free piece synthesised from scratch with numpy (public domain / CC0):
a 24 s loop at 80 BPM in A major, chords A - F#m - D - Bm7 played twice (3 s per chord),
with a soft pad, a plucked bass and a bell-like arpeggio, over a sustained A4 pedal. Every
chord of the progression contains A, so the 440 Hz pedal never clashes and is the dominant
frequency of the track: tests detect it to check that prompts keep their pitch through
resampling. Output: 8 kHz mono 16-bit WAV (about 384 KB). Deterministic: running the script
again produces the same bytes.

The loop is seamless: notes are rendered into a circular buffer (a tail that runs past the
end wraps to the start), and 440 Hz fits a whole number of periods into 24 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

RATE = 8000
BAR_SECONDS = 3.0
PEDAL_HZ = 440.0
OUT = Path(__file__).with_name("moh.wav")

Float64Array = npt.NDArray[np.float64]


def midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


# MIDI notes: A3=57, A4=69. Chords as (bass root, pad voicing without A, arpeggio notes).
A, FSM, D, BM7 = (  # bass is played an octave up (phones cut below 300 Hz)
    (45, (61, 64), (69, 73, 76, 81)),  # A major: C#4 E4 / A4 C#5 E5 A5
    (42, (61, 66), (66, 69, 73, 78)),  # F#m: C#4 F#4 / F#4 A4 C#5 F#5
    (38, (62, 66), (62, 66, 69, 74)),  # D major: D4 F#4 / D4 F#4 A4 D5
    (47, (62, 66), (59, 62, 66, 69)),  # Bm7: D4 F#4 / B3 D4 F#4 A4
)
PROGRESSION = (A, FSM, D, BM7, A, FSM, D, BM7)
ARPEGGIO_PATTERNS = ((0, 1, 2, 3, 2, 1, 0, 1), (0, 2, 1, 3, 0, 2, 1, 3))


def add_wrapped(buf: Float64Array, start: int, sound: Float64Array) -> None:
    """Add ``sound`` into the circular ``buf`` from ``start`` (tails wrap to the beginning)."""
    idx = (start + np.arange(len(sound))) % len(buf)
    np.add.at(buf, idx, sound)


def note(
    freq: float, seconds: float, attack: float, decay: float, harmonics: float
) -> Float64Array:
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.minimum(t / attack, 1.0) * np.exp(-t / decay)
    fade = np.minimum(1.0, (seconds - t) / 0.05)  # end each note at zero, no click
    wave = np.sin(2 * np.pi * freq * t) + harmonics * np.sin(4 * np.pi * freq * t)
    out: Float64Array = wave * env * fade
    return out


def render() -> Float64Array:
    bar = int(BAR_SECONDS * RATE)
    total = bar * len(PROGRESSION)
    buf = np.zeros(total, dtype=np.float64)
    t = np.arange(total) / RATE
    buf += 0.30 * np.sin(2 * np.pi * PEDAL_HZ * t)  # the pedal: 10560 whole periods
    eighth = bar // 8
    for index, (bass, pad, arp) in enumerate(PROGRESSION):
        start = index * bar
        for pad_note in pad:  # slow swell that overlaps into the next bar
            add_wrapped(buf, start, 0.07 * note(midi_hz(pad_note), 3.6, 0.6, 2.5, 0.1))
        for half in (0, bar // 2):
            add_wrapped(buf, start + half, 0.12 * note(midi_hz(bass + 12), 1.5, 0.01, 0.5, 0.3))
        pattern = ARPEGGIO_PATTERNS[index // 4]
        for step, which in enumerate(pattern):
            freq = midi_hz(arp[which] + 12)
            add_wrapped(buf, start + step * eighth, 0.06 * note(freq, 0.9, 0.005, 0.25, 0.25))
    peak = float(np.abs(buf).max())
    scaled: Float64Array = buf * (0.5 / peak)  # -6 dBFS peak: comfortable on a phone line
    return scaled


def main() -> int:
    pcm = np.rint(render() * 32767).astype(np.int16)
    soundfile.write(str(OUT), pcm, RATE, subtype="PCM_16")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(pcm) / RATE:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

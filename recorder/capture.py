"""Audio captured from a call's tap, kept in memory and written to a file off the event loop.

A :class:`Capture` is the sink of a call-control tap (:meth:`pbx.control.CallControl.tap`):
the media clock hands it 20 ms ``int16`` frames, which it copies (the engine reuses its
buffers) and keeps in order. :meth:`Capture.write` joins them and writes the file in a thread,
so the event loop and the media clock never wait for the disk. Voicemail messages use it
today; call recording builds on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

__all__ = ["Capture"]


class Capture:
    """Frames of one party's audio, at the rate of the first frame seen."""

    def __init__(self, rate: int = 8000) -> None:
        self.rate = rate
        self._frames: list[np.ndarray[Any, Any]] = []

    def on_frame(self, pcm: np.ndarray[Any, Any], rate: int) -> None:
        """The tap callback: called on the media clock, so it only copies."""
        if not self._frames:
            self.rate = rate
        self._frames.append(pcm.copy())

    @property
    def seconds(self) -> float:
        return sum(len(f) for f in self._frames) / self.rate

    def audio(self) -> np.ndarray[Any, Any]:
        if not self._frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._frames)

    async def write(self, path: Path, subtype: str = "PCM_16") -> float:
        """Write what was captured to ``path`` (format from its suffix) in a thread;
        returns the seconds written."""
        audio = self.audio()
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(soundfile.write, str(path), audio, self.rate, subtype)
        return len(audio) / self.rate

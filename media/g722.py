"""ITU-T G.722 (64 kbit/s sub-band ADPCM) encoder and decoder over numpy frames.

Theory of operation
-------------------
The arithmetic is done by the ``G722`` extension module from PyPI (Sippy Software's
``libg722``: Steve Underwood's bit-exact C implementation that passes the ITU test vectors,
~15 µs per 20 ms frame each way). This module only adapts it to our frame types and keeps
one codec state per direction: G.722 is ADPCM, so the encoder and the decoder each carry
predictor state from frame to frame and must never be shared between streams.

RFC 3551 §4.5.2: G.722 samples at 16 kHz and codes two samples into one octet
(64 kbit/s), but its RTP clock rate is 8000 for historical reasons; a 20 ms frame is 320
PCM samples, 160 octets and 160 timestamp units.

Lost frames are concealed on the decoded PCM with the pitch-repetition concealer of
``media.plc`` at 16 kHz. The ADPCM decoder simply continues with the next good frame (its
state converges within a few ms), which is what most deployed G.722 decoders without
G.722 Appendix III/IV do.

The module loads lazily: ``AVAILABLE`` is False when the extension is not installed, and the
codec registry then leaves G.722 out rather than failing.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from media.plc import PacketLossConcealer

__all__ = ["AVAILABLE", "BIT_RATE", "SAMPLE_RATE", "G722Decoder", "G722Encoder"]

Int16Array = npt.NDArray[np.int16]

SAMPLE_RATE = 16000
BIT_RATE = 64000  # RFC 3551 §4.5.2: the RTP payload format is the 64 kbit/s mode


class _G722State(Protocol):
    def encode(self, pcm: Any) -> bytes: ...
    def decode(self, data: bytes) -> Any: ...


def _load() -> Any:
    try:
        return importlib.import_module("G722")
    except ImportError:
        return None


_MODULE = _load()
AVAILABLE: bool = _MODULE is not None


def _new_state() -> _G722State:
    if _MODULE is None:
        raise RuntimeError("G.722 needs the 'G722' package (pip install G722)")
    state: _G722State = _MODULE.G722(SAMPLE_RATE, BIT_RATE)
    return state


class G722Encoder:
    """Stateful G.722 encoder: 16 kHz int16 PCM (even length) to G.722 octets."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _new_state()

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode ``len(pcm)`` samples (must be even) to ``len(pcm) // 2`` octets."""
        if len(pcm) % 2:
            raise ValueError(f"G.722 encodes pairs of samples; got {len(pcm)} samples")
        return self._state.encode(np.ascontiguousarray(pcm, dtype=np.int16))

    def reset(self) -> None:
        """Start a new stream (fresh ADPCM state)."""
        self._state = _new_state()


class G722Decoder:
    """Stateful G.722 decoder with packet-loss concealment at 16 kHz."""

    __slots__ = ("_plc", "_state")

    def __init__(self) -> None:
        self._state = _new_state()
        self._plc = PacketLossConcealer(SAMPLE_RATE)

    def decode(self, payload: bytes) -> Int16Array:
        """Decode G.722 octets to ``2 * len(payload)`` samples at 16 kHz."""
        # The extension returns array('h') or, with G722-numpy, an ndarray; both export the
        # buffer protocol. Copy so callers get a writable array we do not share.
        pcm = np.array(memoryview(self._state.decode(payload)), dtype=np.int16)
        return self._plc.good_frame(pcm)

    def conceal(self, samples: int) -> Int16Array:
        """Synthesise ``samples`` samples at 16 kHz for a lost frame."""
        return self._plc.conceal(samples)

    def reset(self) -> None:
        """Start a new stream (fresh ADPCM state, empty concealment history)."""
        self._state = _new_state()
        self._plc = PacketLossConcealer(SAMPLE_RATE)

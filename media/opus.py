"""Opus (RFC 6716) encoder and decoder through ctypes on the system libopus (optional).

Theory of operation
-------------------
A thin, typed ctypes binding to the handful of libopus calls we need
(``opus_encoder_create``/``opus_encode``/``opus_decoder_create``/``opus_decode`` and a few
``ctl`` requests), loaded from Debian's ``libopus0``. We bind libopus directly instead of
using ``opuslib``/``opuslib-next``: those are ctypes wrappers too, but return PCM through
Python lists, raise a bare ``Exception`` at import when the library is missing and have no
type information; ours decodes straight into a numpy buffer and simply reports
``AVAILABLE = False`` when the library cannot be loaded, so Opus stays optional.

RFC 7587 §4.1: the RTP clock of Opus is always 48000 and the SDP rtpmap always says 2
channels (``opus/48000/2``), whatever the audio really is. Internally we encode and decode
mono at ``sample_rate`` (16 kHz by default: where Opus legs meet the wideband mixer, no
resampling is needed; libopus resamples internally and accepts 8/12/16/24/48 kHz). A 20 ms
frame is therefore 320 PCM samples but 960 RTP timestamp units. The decoder accepts
stereo packets and downmixes them (RFC 7587: ``stereo=0`` is only a receiver's
preference, a sender may still send stereo).

Lost frames are concealed by libopus itself: ``opus_decode`` with no data runs the
codec's own PLC (RFC 6716 §4.4), which extrapolates from its internal state.

Requires no Python package: only ``libopus.so.0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AVAILABLE",
    "CLOCK_RATE",
    "DEFAULT_BITRATE",
    "DEFAULT_COMPLEXITY",
    "OpusDecoder",
    "OpusEncoder",
    "OpusError",
]

Int16Array = npt.NDArray[np.int16]

CLOCK_RATE = 48000  # RFC 7587 §4.1
DEFAULT_BITRATE = 32000  # wideband speech is transparent well below this
# libopus defaults to 10 (its slowest); 5 halves the encoder's CPU (~120 µs per 20 ms frame
# here instead of ~260 µs) for a difference in speech quality that is hard to hear.
DEFAULT_COMPLEXITY = 5
_VALID_RATES = (8000, 12000, 16000, 24000, 48000)
_MAX_PACKET = 1500  # a 20 ms voice frame is ~80 octets; room for any bitrate setting

# opus_defines.h
_OPUS_APPLICATION_VOIP = 2048
_OPUS_SET_BITRATE_REQUEST = 4002
_OPUS_SET_COMPLEXITY_REQUEST = 4010
_OPUS_SET_INBAND_FEC_REQUEST = 4012
_OPUS_SET_PACKET_LOSS_PERC_REQUEST = 4014
_OPUS_SET_SIGNAL_REQUEST = 4024
_OPUS_SIGNAL_VOICE = 3001
_OPUS_RESET_STATE = 4028

_c_int16_p = ctypes.POINTER(ctypes.c_int16)
_c_ubyte_p = ctypes.POINTER(ctypes.c_ubyte)


class OpusError(ValueError):
    """libopus rejected a call (bad packet, bad frame size)."""


def _load() -> Any:
    names = [ctypes.util.find_library("opus"), "libopus.so.0", "libopus.0.dylib", "opus.dll"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.opus_encoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encode.argtypes = [
            ctypes.c_void_p,
            _c_int16_p,
            ctypes.c_int,
            _c_ubyte_p,
            ctypes.c_int32,
        ]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encoder_destroy.restype = None
        lib.opus_decoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            _c_int16_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decoder_destroy.restype = None
        # opus_*_ctl are variadic: no argtypes, every argument passed as an explicit c_int.
        lib.opus_encoder_ctl.restype = ctypes.c_int
        lib.opus_decoder_ctl.restype = ctypes.c_int
        lib.opus_strerror.argtypes = [ctypes.c_int]
        lib.opus_strerror.restype = ctypes.c_char_p
        return lib
    return None


_LIB = _load()
AVAILABLE: bool = _LIB is not None


def _error(code: int, what: str) -> OpusError:
    message = _LIB.opus_strerror(code).decode("ascii", "replace") if _LIB else "no libopus"
    return OpusError(f"{what}: {message} ({code})")


def _check_rate(sample_rate: int) -> None:
    if _LIB is None:
        raise RuntimeError("Opus needs libopus (Debian package libopus0)")
    if sample_rate not in _VALID_RATES:
        raise ValueError(f"Opus sample rate must be one of {_VALID_RATES}, got {sample_rate}")


class OpusEncoder:
    """Stateful mono Opus encoder (VoIP application, voice signal)."""

    __slots__ = ("__weakref__", "_finalizer", "_out", "_state", "sample_rate")

    def __init__(
        self,
        sample_rate: int = 16000,
        bitrate: int = DEFAULT_BITRATE,
        complexity: int = DEFAULT_COMPLEXITY,
    ) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        err = ctypes.c_int(0)
        state = _LIB.opus_encoder_create(sample_rate, 1, _OPUS_APPLICATION_VOIP, ctypes.byref(err))
        if err.value != 0 or not state:
            raise _error(err.value, "opus_encoder_create")
        self._state: int = state
        self._finalizer = weakref.finalize(self, _LIB.opus_encoder_destroy, state)
        self._ctl(_OPUS_SET_BITRATE_REQUEST, bitrate)
        self._ctl(_OPUS_SET_SIGNAL_REQUEST, _OPUS_SIGNAL_VOICE)
        self._ctl(_OPUS_SET_COMPLEXITY_REQUEST, complexity)
        # In-band FEC costs little and lets a receiver that has the next packet recover a
        # lost one (RFC 6716); senders we talk to may use it even if we do not.
        self._ctl(_OPUS_SET_INBAND_FEC_REQUEST, 1)
        self._ctl(_OPUS_SET_PACKET_LOSS_PERC_REQUEST, 5)
        self._out = (ctypes.c_ubyte * _MAX_PACKET)()

    def _ctl(self, request: int, value: int) -> None:
        rc = _LIB.opus_encoder_ctl(
            ctypes.c_void_p(self._state), ctypes.c_int(request), ctypes.c_int32(value)
        )
        if rc != 0:
            raise _error(rc, f"opus_encoder_ctl({request})")

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode one frame (2.5, 5, 10, 20, 40 or 60 ms of mono samples) to a packet."""
        samples = np.ascontiguousarray(pcm, dtype=np.int16)
        n = _LIB.opus_encode(
            self._state,
            samples.ctypes.data_as(_c_int16_p),
            len(samples),
            self._out,
            _MAX_PACKET,
        )
        if n < 0:
            raise _error(n, f"opus_encode of {len(samples)} samples")
        return bytes(self._out[:n])

    def reset(self) -> None:
        """Start a new stream."""
        _LIB.opus_encoder_ctl(ctypes.c_void_p(self._state), ctypes.c_int(_OPUS_RESET_STATE))


class OpusDecoder:
    """Stateful mono Opus decoder with libopus's own packet-loss concealment."""

    __slots__ = ("__weakref__", "_buf", "_finalizer", "_state", "sample_rate")

    def __init__(self, sample_rate: int = 16000) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        err = ctypes.c_int(0)
        state = _LIB.opus_decoder_create(sample_rate, 1, ctypes.byref(err))
        if err.value != 0 or not state:
            raise _error(err.value, "opus_decoder_create")
        self._state: int = state
        self._finalizer = weakref.finalize(self, _LIB.opus_decoder_destroy, state)
        # RFC 6716 §3.2.5: one packet holds at most 120 ms.
        self._buf = np.zeros(sample_rate * 120 // 1000, dtype=np.int16)

    def _decode(self, payload: bytes | None, frame_size: int) -> Int16Array:
        n = _LIB.opus_decode(
            self._state,
            payload,
            len(payload) if payload else 0,
            self._buf.ctypes.data_as(_c_int16_p),
            frame_size,
            0,
        )
        if n < 0:
            raise _error(n, "opus_decode")
        return self._buf[:n].copy()

    def decode(self, payload: bytes) -> Int16Array:
        """Decode one packet; raises ``OpusError`` (a ``ValueError``) if it is corrupt."""
        if not payload:
            raise OpusError("empty Opus payload")
        return self._decode(payload, len(self._buf))

    def conceal(self, samples: int) -> Int16Array:
        """Run libopus PLC for ``samples`` samples (a multiple of 2.5 ms)."""
        # RFC 6716 §4.4: decoding with no data conceals one frame of the given duration.
        return self._decode(None, min(samples, len(self._buf)))

    def reset(self) -> None:
        """Start a new stream."""
        _LIB.opus_decoder_ctl(ctypes.c_void_p(self._state), ctypes.c_int(_OPUS_RESET_STATE))

"""G.711 µ-law and A-law by lookup table (ITU-T G.711, numpy).

Theory of operation
-------------------
G.711 maps each 16-bit linear sample to one octet through a segmented (logarithmic) curve.
Both directions are pure table lookups, so they are built once at import time:

* decoding: a 256-entry ``int16`` table per law, indexed by the code octet;
* encoding: a 65536-entry ``uint8`` table per law, indexed by the sample reinterpreted as
  ``uint16`` (``pcm.view(np.uint16)``), so a 20 ms frame is one numpy fancy-index.

The tables are computed from the reference algorithm of ITU-T G.711 (as in the widely used
Sun Microsystems ``g711.c``): µ-law works on 14-bit magnitudes with a bias of 33 (132 in
16-bit units) and 8 segments; A-law on 13-bit magnitudes with segment 0 and 1 sharing a
step size. Code octets are transmitted with the law's inversion already applied (µ-law all
bits inverted; A-law even bits inverted, XOR 0x55), G.711 §2 and §3.

``ULAW_TO_ALAW`` / ``ALAW_TO_ULAW`` are 256-byte ``bytes`` so a payload is transcoded by
``payload.translate(ULAW_TO_ALAW)``, one C call with no numpy round trip. They are built by
decoding with one law and re-encoding with the other (nearest representable value).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "ALAW_TO_ULAW",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_encode",
]

Int16Array = npt.NDArray[np.int16]

_ULAW_BIAS = 0x84  # 132: added so every segment starts on a power of two
_ULAW_CLIP = 8159  # largest 14-bit magnitude before the bias
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _ulaw_decode_one(code: int) -> int:
    u = ~code & 0xFF
    t = ((u & 0x0F) << 3) + _ULAW_BIAS
    t <<= (u & 0x70) >> 4
    return _ULAW_BIAS - t if u & 0x80 else t - _ULAW_BIAS


def _alaw_decode_one(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _ulaw_encode_array(pcm: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    v = pcm >> 2  # 14-bit
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, v, side="left")
    safe_seg = np.minimum(seg, 7)
    uval = (safe_seg << 4) | ((v >> (safe_seg + 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F, uval) ^ mask
    return out.astype(np.uint8)


def _alaw_encode_array(pcm: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    v = pcm >> 3  # 13-bit
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(_ALAW_SEG_END, v, side="left")
    safe_seg = np.minimum(seg, 7)
    quant = np.where(safe_seg < 2, v >> 1, v >> safe_seg) & 0x0F
    aval = (safe_seg << 4) | quant
    out = np.where(seg >= 8, 0x7F, aval) ^ mask
    return out.astype(np.uint8)


def _build_tables() -> tuple[Int16Array, Int16Array, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    ulaw_dec = np.array([_ulaw_decode_one(c) for c in range(256)], dtype=np.int16)
    alaw_dec = np.array([_alaw_decode_one(c) for c in range(256)], dtype=np.int16)
    # Index i is the uint16 bit pattern of a sample; reinterpret as signed.
    samples = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    ulaw_enc = _ulaw_encode_array(samples)
    alaw_enc = _alaw_encode_array(samples)
    for table in (ulaw_dec, alaw_dec, ulaw_enc, alaw_enc):
        table.setflags(write=False)
    return ulaw_dec, alaw_dec, ulaw_enc, alaw_enc


ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE = _build_tables()

ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """µ-law octets to 16-bit linear samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """A-law octets to 16-bit linear samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples (anything castable to int16) to µ-law octets."""
    samples = np.asarray(pcm, dtype=np.int16)
    return ULAW_ENCODE[samples.view(np.uint16)].tobytes()


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples (anything castable to int16) to A-law octets."""
    samples = np.asarray(pcm, dtype=np.int16)
    return ALAW_ENCODE[samples.view(np.uint16)].tobytes()


def encode(codec_name: str, pcm: npt.ArrayLike) -> bytes:
    """Encode by codec name ``PCMU`` or ``PCMA`` (case-insensitive)."""
    name = codec_name.upper()
    if name == "PCMU":
        return ulaw_encode(pcm)
    if name == "PCMA":
        return alaw_encode(pcm)
    raise ValueError(f"not a G.711 codec: {codec_name!r}")


def decode(codec_name: str, data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode by codec name ``PCMU`` or ``PCMA`` (case-insensitive)."""
    name = codec_name.upper()
    if name == "PCMU":
        return ulaw_decode(data)
    if name == "PCMA":
        return alaw_decode(data)
    raise ValueError(f"not a G.711 codec: {codec_name!r}")

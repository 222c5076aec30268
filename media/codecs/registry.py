"""Codec registry: PCM frames (numpy int16, mono) to RTP payloads and back (sans-IO).

Theory of operation
-------------------
``media.codecs.descriptor.Codec`` says what a leg negotiated (payload type, name, clock
rate); this module says how to turn audio into that format. Each ``CodecInfo`` describes
one RTP audio format and makes ``Encoder``/``Decoder`` objects, one per call direction:

* ``clock_rate`` is the RTP timestamp clock, the number in the SDP rtpmap;
* ``sample_rate`` is the rate of the PCM that ``encode`` takes and ``decode`` returns.

They differ for G.722 (16 kHz audio, 8000 Hz RTP clock, RFC 3551 §4.5.2) and for Opus
(48000 Hz RTP clock, RFC 7587 §4.1; we exchange 16 kHz PCM with it). So a 20 ms frame is
``frame_samples()`` PCM samples but advances the RTP timestamp by ``timestamp_increment()``.

Coders keep state where the codec has it (G.722 and Opus are adaptive; G.711 and L16 are
stateless apart from their concealment history), so never share an ``Encoder`` or a
``Decoder`` between two streams. Every decoder can ``conceal(samples)`` a lost frame:
G.711 and L16 with the G.711 Appendix I style concealer in ``media.plc``, G.722 with the
same concealer at 16 kHz, Opus with libopus's own PLC.

Formats: PCMU and PCMA (ITU-T G.711 by lookup table, RFC 3551 §4.5.14), G722
(RFC 3551 §4.5.2), L16 at 8 and 16 kHz mono (16-bit signed big-endian, RFC 3551 §4.5.11;
dynamic payload types, the static 10/11 are 44.1 kHz), and Opus when libopus loads
(RFC 7587). ``SUPPORTED`` lists what this process can code, in our order of preference for
an SDP offer; ``get_codec`` looks a negotiated format up.

Decoders raise ``ValueError`` for a payload they cannot decode (odd-length L16, corrupt
Opus); the caller conceals instead. They never raise for a well-formed payload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from media import g711, g722, opus
from media.codecs.descriptor import Codec
from media.plc import PacketLossConcealer

__all__ = [
    "G722",
    "L16_8K",
    "L16_16K",
    "OPUS",
    "PCMA",
    "PCMU",
    "SUPPORTED",
    "CodecInfo",
    "Decoder",
    "Encoder",
    "get_codec",
]

Int16Array = npt.NDArray[np.int16]


class Encoder(Protocol):
    """Encodes PCM frames of one stream (one instance per stream; may keep state)."""

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode mono int16 samples at the codec's ``sample_rate`` to one RTP payload."""
        ...

    def reset(self) -> None:
        """Forget the stream (new talker, re-INVITE)."""
        ...


class Decoder(Protocol):
    """Decodes RTP payloads of one stream and conceals its lost frames."""

    def decode(self, payload: bytes) -> Int16Array:
        """Decode one payload to mono int16 samples at the codec's ``sample_rate``."""
        ...

    def conceal(self, samples: int) -> Int16Array:
        """Return ``samples`` samples standing in for a lost payload."""
        ...

    def reset(self) -> None:
        """Forget the stream (SSRC change, jitter-buffer resync)."""
        ...


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """One RTP audio format this process can encode and decode."""

    name: str  # encoding name as in SDP a=rtpmap (RFC 4566 §6), e.g. "PCMU", "opus"
    clock_rate: int  # RTP timestamp clock (a=rtpmap rate)
    sample_rate: int  # PCM rate of encode() input and decode() output
    channels: int = 1  # a=rtpmap encoding parameters (2 for opus, RFC 7587 §7)
    static_payload_type: int | None = None  # RFC 3551 §6 Table 4, None if dynamic
    fmtp: str = ""  # a=fmtp parameters we offer, "" for none
    bits_per_sample: float | None = None  # constant-rate codecs; None for variable rate
    _new_encoder: Callable[[], Encoder] = field(kw_only=True, repr=False, compare=False)
    _new_decoder: Callable[[], Decoder] = field(kw_only=True, repr=False, compare=False)

    def frame_samples(self, ms: int = 20) -> int:
        """PCM samples in a frame of ``ms`` milliseconds (G.722 20 ms: 320)."""
        return self.sample_rate * ms // 1000

    def timestamp_increment(self, ms: int = 20) -> int:
        """RTP timestamp units per frame of ``ms`` milliseconds (G.722 20 ms: 160)."""
        return self.clock_rate * ms // 1000

    def payload_size(self, ms: int = 20) -> int | None:
        """Payload octets per frame for constant-rate codecs (G.711/G.722 20 ms: 160)."""
        if self.bits_per_sample is None:
            return None
        return int(self.frame_samples(ms) * self.bits_per_sample) // 8

    def new_encoder(self) -> Encoder:
        """A fresh encoder for one outgoing stream."""
        return self._new_encoder()

    def new_decoder(self) -> Decoder:
        """A fresh decoder for one incoming stream."""
        return self._new_decoder()

    def codec(self, payload_type: int | None = None) -> Codec:
        """The negotiated-format value for this codec (static payload type by default)."""
        pt = self.static_payload_type if payload_type is None else payload_type
        if pt is None:
            raise ValueError(f"{self.name}/{self.clock_rate} has no static payload type")
        return Codec(pt, self.name, self.clock_rate)

    def matches(self, name: str, clock_rate: int) -> bool:
        """Same encoding (case-insensitive, RFC 4566 §6) and clock rate."""
        return self.clock_rate == clock_rate and self.name.lower() == name.lower()


# --- G.711 ---------------------------------------------------------------------------------


class _G711Encoder:
    __slots__ = ("_table",)

    def __init__(self, table: npt.NDArray[np.uint8]) -> None:
        self._table = table

    def encode(self, pcm: Int16Array) -> bytes:
        # One fancy-index through the 64 Ki-entry table (media.g711).
        return self._table[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()

    def reset(self) -> None:
        pass


class _G711Decoder:
    __slots__ = ("_plc", "_table")

    def __init__(self, table: Int16Array) -> None:
        self._table = table
        self._plc = PacketLossConcealer(8000)

    def decode(self, payload: bytes) -> Int16Array:
        pcm = self._table[np.frombuffer(payload, dtype=np.uint8)]
        return self._plc.good_frame(pcm)

    def conceal(self, samples: int) -> Int16Array:
        return self._plc.conceal(samples)  # ITU-T G.711 Appendix I style

    def reset(self) -> None:
        self._plc = PacketLossConcealer(8000)


# --- L16 -----------------------------------------------------------------------------------

_L16_WIRE = np.dtype(">i2")  # RFC 3551 §4.5.11: network byte order (big-endian)


class _L16Encoder:
    __slots__ = ()

    def encode(self, pcm: Int16Array) -> bytes:
        return np.asarray(pcm, dtype=np.int16).astype(_L16_WIRE).tobytes()

    def reset(self) -> None:
        pass


class _L16Decoder:
    __slots__ = ("_plc", "_rate")

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._plc = PacketLossConcealer(sample_rate)

    def decode(self, payload: bytes) -> Int16Array:
        if len(payload) % 2:
            raise ValueError(f"L16 payload of {len(payload)} octets is not whole samples")
        pcm = np.frombuffer(payload, dtype=_L16_WIRE).astype(np.int16)
        return self._plc.good_frame(pcm)

    def conceal(self, samples: int) -> Int16Array:
        return self._plc.conceal(samples)

    def reset(self) -> None:
        self._plc = PacketLossConcealer(self._rate)


# --- Registry ------------------------------------------------------------------------------

PCMU = CodecInfo(
    "PCMU",
    8000,
    8000,
    static_payload_type=0,
    bits_per_sample=8,
    _new_encoder=lambda: _G711Encoder(g711.ULAW_ENCODE),
    _new_decoder=lambda: _G711Decoder(g711.ULAW_DECODE),
)
PCMA = CodecInfo(
    "PCMA",
    8000,
    8000,
    static_payload_type=8,
    bits_per_sample=8,
    _new_encoder=lambda: _G711Encoder(g711.ALAW_ENCODE),
    _new_decoder=lambda: _G711Decoder(g711.ALAW_DECODE),
)
# RFC 3551 §4.5.2: "the RTP clock rate ... is 8,000 Hz" although sampled at 16,000 Hz.
G722 = CodecInfo(
    "G722",
    8000,
    g722.SAMPLE_RATE,
    static_payload_type=9,
    bits_per_sample=4,
    _new_encoder=g722.G722Encoder,
    _new_decoder=g722.G722Decoder,
)
L16_8K = CodecInfo(
    "L16",
    8000,
    8000,
    bits_per_sample=16,
    _new_encoder=_L16Encoder,
    _new_decoder=lambda: _L16Decoder(8000),
)
L16_16K = CodecInfo(
    "L16",
    16000,
    16000,
    bits_per_sample=16,
    _new_encoder=_L16Encoder,
    _new_decoder=lambda: _L16Decoder(16000),
)
# RFC 7587 §4.1 / §7: opus/48000/2 whatever we really send; we code mono 16 kHz PCM.
OPUS = CodecInfo(
    "opus",
    opus.CLOCK_RATE,
    16000,
    channels=2,
    fmtp="useinbandfec=1",
    _new_encoder=lambda: opus.OpusEncoder(16000),
    _new_decoder=lambda: opus.OpusDecoder(16000),
)

# Offer order: wideband first where it is cheap and universal on desk phones (G.722), then
# the G.711 pair every peer has, then Opus (costlier to transcode), then L16 (bulky,
# mostly for tests and local tools). pbx.sdp may reorder per trunk or extension.
SUPPORTED: tuple[CodecInfo, ...] = tuple(
    info
    for info, available in (
        (G722, g722.AVAILABLE),
        (PCMU, True),
        (PCMA, True),
        (OPUS, opus.AVAILABLE),
        (L16_16K, True),
        (L16_8K, True),
    )
    if available
)


def get_codec(name: str, clock_rate: int) -> CodecInfo | None:
    """The codec for an SDP encoding name and RTP clock rate, or None if we cannot code it.

    ``get_codec("G722", 8000)`` is G.722 (its clock rate, not its 16 kHz sample rate);
    names compare case-insensitively (RFC 4566 §6).
    """
    for info in SUPPORTED:
        if info.matches(name, clock_rate):
            return info
    return None

"""RTP packets, header rewriting and RFC 4733 telephone events (sans-IO).

Theory of operation
-------------------
Everything here is pure: bytes and integers go in, bytes or integers come out, and the
clock (``now``) is an argument. There are three layers:

* ``RtpPacket.parse`` / ``RtpPacket.serialize``: the full RFC 3550 §5.1 fixed header, the
  CSRC list, the §5.3.1 header extension and §5.1 padding, as a typed value. Used for tests,
  tools and the rare slow path; bad input raises ``ValueError`` saying exactly what is wrong.
* In-place helpers (``set_ssrc``, ``set_sequence``, ``set_timestamp``, ``set_payload_type``,
  ``header_length``) that read and patch a ``bytearray`` with ``struct`` so the relay hot path
  creates no packet object.
* ``RtpOutputStream``: the state of one stream *we* send. A B2BUA leg sends packets that come
  from different sources over time (a ringback tone, then the other leg's phone, whose SSRC
  may change on re-INVITE or transfer). The receiver must see one stream: one SSRC and
  sequence numbers / timestamps that continue (RFC 3550 §5.1). The stream
  re-bases sequence and timestamp offsets whenever the source changes and sets the marker
  bit on the first packet after a change, as RFC 3551 §4.1 asks at the start of a talkspurt,
  so jitter buffers resynchronise instead of discarding.

Sequence numbers and timestamps wrap; comparisons use serial-number arithmetic
(RFC 1982 §3.2) through the single helper ``serial_diff``.

RFC 4733 §2.3 telephone-event payloads are parsed and built by ``TelephoneEvent``.

Implemented: RFC 3550 §5.1 (fixed header), §5.3.1 (header extension), §5.1 P bit padding;
RFC 1982 §3.2 (serial arithmetic); RFC 4733 §2.3 (event payload format), §3.2 (event codes);
RFC 5761 §4 (telling RTCP from RTP on one port) in ``looks_like_rtcp``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "DTMF_EVENTS",
    "HEADER_STRUCT",
    "RTP_HEADER_SIZE",
    "RTP_VERSION",
    "RtpOutputStream",
    "RtpPacket",
    "TelephoneEvent",
    "digit_to_event",
    "event_to_digit",
    "header_length",
    "looks_like_rtcp",
    "serial_diff",
    "set_payload_type",
    "set_sequence",
    "set_ssrc",
    "set_timestamp",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # RFC 3550 §5.1: fixed part of the header

# V/P/X/CC, M/PT, sequence, timestamp, SSRC. Precompiled: the hot path calls these directly.
_HEADER = struct.Struct("!BBHII")
HEADER_STRUCT = _HEADER  # public: adapters unpack the fixed header with it in one call
# Everything after the first byte: M/PT, sequence, timestamp, SSRC (rewritten as one call).
_HEADER_TAIL = struct.Struct("!BHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT = struct.Struct("!HH")
_EVENT = struct.Struct("!BBH")

_MAX_SEQ = 0xFFFF
_MAX_TS = 0xFFFFFFFF


def serial_diff(a: int, b: int, bits: int = 16) -> int:
    """Signed distance ``a - b`` in serial-number arithmetic (RFC 1982 §3.2).

    Positive when ``a`` is "after" ``b`` modulo ``2**bits``; the result lies in
    ``[-2**(bits-1), 2**(bits-1))``. Use ``bits=16`` for sequence numbers and ``bits=32``
    for timestamps.
    """
    half = 1 << (bits - 1)
    return ((a - b + half) & ((1 << bits) - 1)) - half


# --- Full packet value -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet as a value (RFC 3550 §5.1)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    # RFC 3550 §5.3.1: 16-bit profile-defined value and the extension data (multiple of 4).
    extension_profile: int | None = None
    extension: bytes = b""
    # Number of padding octets, including the final count octet; 0 means no P bit.
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} out of range 0..127")
        if not 0 <= self.sequence_number <= _MAX_SEQ:
            raise ValueError(f"RTP sequence number {self.sequence_number} out of range")
        if not 0 <= self.timestamp <= _MAX_TS:
            raise ValueError(f"RTP timestamp {self.timestamp} out of range")
        if not 0 <= self.ssrc <= _MAX_TS:
            raise ValueError(f"RTP SSRC {self.ssrc} out of range")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP CSRC count {len(self.csrc)} exceeds 15")
        if len(self.extension) % 4:
            raise ValueError("RTP header extension length must be a multiple of 4 octets")
        if self.extension and self.extension_profile is None:
            raise ValueError("RTP header extension data given without extension_profile")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"RTP padding {self.padding} out of range 0..255")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; raise ``ValueError`` naming the defect."""
        n = len(data)
        if n < RTP_HEADER_SIZE:
            raise ValueError(f"RTP packet too short: {n} bytes, header needs {RTP_HEADER_SIZE}")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise ValueError(f"RTP version must be 2, got {version}")
        cc = b0 & 0x0F
        offset = RTP_HEADER_SIZE + 4 * cc
        if offset > n:
            raise ValueError(f"RTP packet truncated: CSRC count {cc} needs {offset} bytes, got {n}")
        csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
        ext_profile: int | None = None
        ext = b""
        if b0 & 0x10:  # RFC 3550 §5.3.1
            if offset + 4 > n:
                raise ValueError("RTP packet truncated: header extension header missing")
            ext_profile, ext_words = _EXT.unpack_from(data, offset)
            offset += 4
            if offset + 4 * ext_words > n:
                raise ValueError(
                    f"RTP packet truncated: header extension of {ext_words} words "
                    f"needs {offset + 4 * ext_words} bytes, got {n}"
                )
            ext = bytes(data[offset : offset + 4 * ext_words])
            offset += 4 * ext_words
        end = n
        padding = 0
        if b0 & 0x20:  # RFC 3550 §5.1: last octet counts the padding, itself included
            padding = data[n - 1]
            if padding == 0:
                raise ValueError("RTP padding count is 0 although the P bit is set")
            if offset + padding > n:
                raise ValueError(
                    f"RTP padding count {padding} exceeds the {n - offset} bytes after the header"
                )
            end = n - padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension_profile=ext_profile,
            extension=ext,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """Encode to wire bytes (padding octets are zero, the last one holds the count)."""
        has_ext = self.extension_profile is not None
        b0 = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if has_ext else 0)
            | len(self.csrc)
        )
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


# --- In-place helpers for the hot path ----------------------------------------------------


def header_length(data: bytes | bytearray | memoryview) -> int:
    """Length of the whole header (fixed part, CSRCs, extension); ``ValueError`` if bad."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet too short: {n} bytes, header needs {RTP_HEADER_SIZE}")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise ValueError(f"RTP version must be 2, got {b0 >> 6}")
    offset = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if offset + 4 > n:
            raise ValueError("RTP packet truncated: header extension header missing")
        offset += 4 + 4 * _U16.unpack_from(data, offset + 2)[0]
    if offset > n:
        raise ValueError(f"RTP packet truncated: header needs {offset} bytes, got {n}")
    if b0 & 0x20:
        padding = data[n - 1]
        if padding == 0 or offset + padding > n:
            raise ValueError(f"RTP padding count {padding} invalid for {n - offset} bytes")
    return offset


def set_payload_type(buf: bytearray, payload_type: int, marker: bool | None = None) -> None:
    """Rewrite the payload type in place; keep the marker bit unless ``marker`` is given."""
    m = (buf[1] & 0x80) if marker is None else (0x80 if marker else 0)
    buf[1] = m | (payload_type & 0x7F)


def set_sequence(buf: bytearray, sequence_number: int) -> None:
    """Rewrite the sequence number in place."""
    _U16.pack_into(buf, 2, sequence_number & _MAX_SEQ)


def set_timestamp(buf: bytearray, timestamp: int) -> None:
    """Rewrite the timestamp in place."""
    _U32.pack_into(buf, 4, timestamp & _MAX_TS)


def set_ssrc(buf: bytearray, ssrc: int) -> None:
    """Rewrite the SSRC in place."""
    _U32.pack_into(buf, 8, ssrc & _MAX_TS)


def looks_like_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True if the second octet is an RTCP packet type 200..204 (RFC 5761 §4).

    With the marker bit those read as RTP payload types 72..76, which RFC 5761 reserves so a
    receiver can tell RTCP that arrived on the RTP port.
    """
    return len(data) >= 2 and 72 <= (data[1] & 0x7F) <= 76


# --- Output stream continuity --------------------------------------------------------------

_NO_SOURCE = -2  # never a valid 32-bit SSRC nor the tone source (-1)


class RtpOutputStream:
    """Sequence/timestamp/SSRC state of one stream we send (sans-IO).

    ``rewrite`` is given a packet already copied into a ``bytearray`` and the *input*
    sequence number, timestamp and a source key (the input SSRC, or any negative int for a
    locally generated source such as a tone). It writes the output header in place with a
    single ``pack_into``. When the source key differs from the previous packet's, offsets are
    re-based so that the output continues where it left off:

    * the sequence number continues at ``last + 1``;
    * the timestamp continues at ``last + elapsed * clock_rate`` (at least one frame), so the
      receiver's playout clock still matches wall time (RFC 3550 §5.1: timestamps reflect
      the sampling instant);
    * the marker bit is set on that first packet (RFC 3551 §4.1).
    """

    __slots__ = (
        "_last_time",
        "_last_ts",
        "_next_seq",
        "_seq_offset",
        "_source",
        "_started",
        "_ts_offset",
        "clock_rate",
        "frame_samples",
        "ssrc",
    )

    def __init__(
        self, ssrc: int, initial_sequence: int, initial_timestamp: int, clock_rate: int = 8000
    ) -> None:
        # RFC 3550 §5.1: SSRC, initial sequence and timestamp SHOULD be random; the caller
        # draws them so this class stays deterministic under test.
        self.ssrc = ssrc & _MAX_TS
        self.clock_rate = clock_rate
        self.frame_samples = clock_rate // 50  # 20 ms
        self._next_seq = initial_sequence & _MAX_SEQ
        self._last_ts = initial_timestamp & _MAX_TS
        self._last_time = 0.0
        self._started = False
        self._source = _NO_SOURCE
        self._seq_offset = 0
        self._ts_offset = 0

    def set_clock_rate(self, clock_rate: int) -> None:
        """Change the output clock (new codec after re-INVITE); the next packet re-bases."""
        self.clock_rate = clock_rate
        self.frame_samples = clock_rate // 50
        self._source = _NO_SOURCE

    def rebase(self) -> None:
        """Force a re-base on the next packet (a new tone burst, a new peer)."""
        self._source = _NO_SOURCE

    @property
    def next_sequence(self) -> int:
        """Sequence number the next re-based packet will carry."""
        return self._next_seq

    def _rebase(self, source: int, seq: int, ts: int, now: float) -> None:
        if self._started:
            elapsed = int((now - self._last_time) * self.clock_rate)
            expected_ts = self._last_ts + max(self.frame_samples, elapsed)
        else:
            expected_ts = self._last_ts
        self._source = source
        self._seq_offset = (self._next_seq - seq) & _MAX_SEQ
        self._ts_offset = (expected_ts - ts) & _MAX_TS

    def rewrite(
        self,
        buf: bytearray,
        source: int,
        seq: int,
        ts: int,
        payload_type: int,
        marker: bool,
        now: float,
    ) -> None:
        """Write the output M/PT, sequence, timestamp and SSRC into ``buf[1:12]``."""
        if source != self._source:
            self._rebase(source, seq, ts, now)
            marker = True
        out_seq = (seq + self._seq_offset) & _MAX_SEQ
        out_ts = (ts + self._ts_offset) & _MAX_TS
        # Reordered packets must not move the stream backwards (RFC 1982 comparison).
        if serial_diff(out_seq, self._next_seq, 16) >= 0:
            self._next_seq = (out_seq + 1) & _MAX_SEQ
        if not self._started or serial_diff(out_ts, self._last_ts, 32) >= 0:
            self._last_ts = out_ts
            self._last_time = now
            self._started = True
        _HEADER_TAIL.pack_into(
            buf, 1, (0x80 if marker else 0) | payload_type, out_seq, out_ts, self.ssrc
        )


# --- RFC 4733 telephone events -------------------------------------------------------------

# RFC 4733 §3.2 Table 7: DTMF named events.
DTMF_EVENTS = "0123456789*#ABCD"


def event_to_digit(event: int) -> str | None:
    """DTMF character for an event code 0..15, or None for other events (e.g. 16 flash)."""
    return DTMF_EVENTS[event] if 0 <= event < 16 else None


def digit_to_event(digit: str) -> int:
    """Event code for a DTMF character (RFC 4733 §3.2); ``ValueError`` if not DTMF."""
    index = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """RFC 4733 §2.3 event payload: event, E bit, volume (-dBm0), duration (timestamp units).

    Wire layout (§2.3, Figure 1)::

        0                   1                   2                   3
        0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
       |     event     |E|R| volume    |          duration             |
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0
    reserved: bool = field(default=False, compare=False)

    SIZE = 4

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"telephone-event code {self.event} out of range 0..255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"telephone-event volume {self.volume} out of range 0..63")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"telephone-event duration {self.duration} out of range 0..65535")

    @classmethod
    def parse(cls, payload: bytes | bytearray | memoryview) -> TelephoneEvent:
        """Parse the first 4-octet event block; ``ValueError`` if too short."""
        if len(payload) < 4:
            raise ValueError(f"telephone-event payload too short: {len(payload)} bytes, need 4")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        # RFC 4733 §2.3: the R bit MUST be ignored by receivers; kept only for round trips.
        return cls(
            event=event,
            end=bool(flags & 0x80),
            volume=flags & 0x3F,
            duration=duration,
            reserved=bool(flags & 0x40),
        )

    def serialize(self) -> bytes:
        """Encode to 4 octets; the R bit is sent as zero (RFC 4733 §2.3)."""
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """DTMF character for DTMF events, else None."""
        return event_to_digit(self.event)

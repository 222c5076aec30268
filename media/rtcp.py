"""RTCP packets, reception statistics and sender/receiver reports (sans-IO).

Theory of operation
-------------------
Three layers, all pure (``now`` is an argument, nothing reads a clock):

* Packets (RFC 3550 §6.4-§6.6): ``SenderReport``, ``ReceiverReport`` (with ``ReportBlock``),
  ``SourceDescription`` (SDES chunks, CNAME), ``Bye`` and ``UnknownRtcp`` (APP, RFC 4585
  feedback, RFC 3611 XR... kept as raw bytes so one exotic packet does not cost the report it
  travels with). ``parse_compound`` checks a whole compound datagram as RFC 3550 §A.2 asks
  (version, lengths adding up exactly, padding only on the last packet) and raises
  ``ValueError`` naming the defect; ``serialize_compound`` concatenates. The rule that a
  compound starts with SR/RR is not enforced, so reduced-size RTCP (RFC 5506) parses too.
* ``ReceiverStats``: what we measure about one incoming RTP stream, fed once per packet with
  (seq, RTP timestamp, arrival time): §A.1 sequence validation (probation, 16-bit wrap into an
  extended sequence number, restart after a big jump), §A.3 expected/lost/fraction lost and
  §A.8 interarrival jitter. Per packet it is a few integer operations on slots, no objects.
  ``SenderStats`` counts what we send (§6.4.1 sender info).
* ``RtcpSession``: one leg's RTCP. It builds a compound SR (if we sent RTP since the last
  report) or RR, always with SDES CNAME (§6.1), at randomised intervals around 5 s (§6.2
  minimum interval, §6.3.1 randomisation over [0.5, 1.5] divided by e - 3/2), and turns
  received reports into ``RtcpReportReceived`` (the far end's view of *our* stream: fraction
  lost, cumulative lost, jitter and the round-trip time from LSR/DLSR, §6.4.1) and
  ``RtcpByeReceived`` events.

NTP timestamps (§4) are derived from ``now + wallclock_offset`` (Unix seconds; the asyncio
adapter passes ``time.time() - loop.time()``); round-trip times only need them consistent.

Implemented: RFC 3550 §6.1 (compound packets), §6.2/§6.3.1 (interval, simplified: fixed
5 s minimum, randomised), §6.4.1 (SR), §6.4.2 (RR), §6.5 (SDES), §6.6 (BYE), §A.1, §A.2,
§A.3, §A.8.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NTP_UNIX_OFFSET",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReceiverStats",
    "ReportBlock",
    "RtcpByeReceived",
    "RtcpPacket",
    "RtcpReportReceived",
    "RtcpSession",
    "SdesChunk",
    "SenderReport",
    "SenderStats",
    "SourceDescription",
    "UnknownRtcp",
    "ntp_middle32",
    "parse_compound",
    "serialize_compound",
    "to_ntp",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
SDES_END = 0
SDES_CNAME = 1  # RFC 3550 §6.5.1
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IIIIII")
_MAX_U32 = 0xFFFFFFFF


def to_ntp(seconds_since_unix_epoch: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4: 32.32 fixed point seconds since 1900)."""
    t = seconds_since_unix_epoch + NTP_UNIX_OFFSET
    whole = math.floor(t)
    frac = int((t - whole) * (1 << 32)) & _MAX_U32
    return ((whole & _MAX_U32) << 32) | frac


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as carried in LSR (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & _MAX_U32


# --- Packets -------------------------------------------------------------------------------


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _MAX_U32:
        raise ValueError(f"RTCP {name} {value} out of range 0..2**32-1")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 §6.4.1 reception report block (24 octets) about one source."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point: lost / expected * 256 over the last interval
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, RTP timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp, 0 if none
    dlsr: int = 0  # delay since that SR, 1/65536 s

    SIZE = 24

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"RTCP fraction lost {self.fraction_lost} out of range 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise ValueError(f"RTCP cumulative lost {self.cumulative_lost} out of 24-bit range")
        for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
            _check_u32(name, getattr(self, name))

    @classmethod
    def parse(cls, data: bytes | memoryview, offset: int = 0) -> ReportBlock:
        """Parse the 24-octet block at ``offset``."""
        if len(data) - offset < cls.SIZE:
            raise ValueError(f"RTCP report block truncated: {len(data) - offset} of 24 bytes")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:  # §6.4.1: signed, clamped by the sender
            cumulative -= 0x1000000
        return cls(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost_word = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        return _BLOCK.pack(self.ssrc, lost_word, self.highest_seq, self.jitter, self.lsr, self.dlsr)


def _header(packet_type: int, count: int, body_len: int) -> bytes:
    if body_len % 4:
        raise ValueError("RTCP packet body must be a multiple of 4 octets")
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count {count} out of range 0..31")
    return _HEADER.pack(0x80 | count, packet_type, (body_len + 4) // 4 - 1)


def _check_extension(ext: bytes) -> None:
    if len(ext) % 4:
        raise ValueError("RTCP profile-specific extension must be a multiple of 4 octets")


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RFC 3550 §6.4.1 SR: sender info plus up to 31 report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    PACKET_TYPE = RTCP_SR

    def __post_init__(self) -> None:
        for name in ("ssrc", "rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(self, name))
        if not 0 <= self.ntp_timestamp < 1 << 64:
            raise ValueError(f"RTCP NTP timestamp {self.ntp_timestamp} out of 64-bit range")
        if len(self.reports) > 31:
            raise ValueError(f"RTCP SR holds at most 31 report blocks, got {len(self.reports)}")
        _check_extension(self.extension)

    def serialize(self) -> bytes:
        body = b"".join(
            [
                _SENDER_INFO.pack(
                    self.ssrc,
                    self.ntp_timestamp,
                    self.rtp_timestamp,
                    self.packet_count,
                    self.octet_count,
                ),
                *(block.serialize() for block in self.reports),
                self.extension,
            ]
        )
        return _header(RTCP_SR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RFC 3550 §6.4.2 RR: reporter SSRC and up to 31 report blocks."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    PACKET_TYPE = RTCP_RR

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)
        if len(self.reports) > 31:
            raise ValueError(f"RTCP RR holds at most 31 report blocks, got {len(self.reports)}")
        _check_extension(self.extension)

    def serialize(self) -> bytes:
        body = b"".join(
            [_U32.pack(self.ssrc), *(b.serialize() for b in self.reports), self.extension]
        )
        return _header(RTCP_RR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk (RFC 3550 §6.5): a source and its (item type, value) pairs."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)
        for item_type, value in self.items:
            if not 1 <= item_type <= 255:
                raise ValueError(f"RTCP SDES item type {item_type} out of range 1..255")
            if len(value) > 255:
                raise ValueError(f"RTCP SDES item longer than 255 octets: {len(value)}")

    @property
    def cname(self) -> str | None:
        """The CNAME item, decoded as UTF-8 (§6.5.1), or None."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        parts = [_U32.pack(self.ssrc)]
        for item_type, value in self.items:
            parts.append(bytes((item_type, len(value))) + value)
        raw = b"".join(parts)
        # §6.5: the item list ends with at least one null octet, padded to 32 bits.
        return raw + bytes(4 - len(raw) % 4)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RFC 3550 §6.5 SDES packet."""

    chunks: tuple[SdesChunk, ...]

    PACKET_TYPE = RTCP_SDES

    def __post_init__(self) -> None:
        if len(self.chunks) > 31:
            raise ValueError(f"RTCP SDES holds at most 31 chunks, got {len(self.chunks)}")

    def serialize(self) -> bytes:
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(RTCP_SDES, len(self.chunks), len(body)) + body


@dataclass(frozen=True, slots=True)
class Bye:
    """RFC 3550 §6.6 BYE: sources leaving, with an optional reason."""

    ssrcs: tuple[int, ...]
    reason: str = ""

    PACKET_TYPE = RTCP_BYE

    def __post_init__(self) -> None:
        if len(self.ssrcs) > 31:
            raise ValueError(f"RTCP BYE holds at most 31 sources, got {len(self.ssrcs)}")
        for ssrc in self.ssrcs:
            _check_u32("ssrc", ssrc)
        if len(self.reason.encode()) > 255:
            raise ValueError("RTCP BYE reason longer than 255 octets")

    def serialize(self) -> bytes:
        body = b"".join(_U32.pack(s) for s in self.ssrcs)
        if self.reason:
            text = self.reason.encode()
            raw = bytes((len(text),)) + text
            body += raw + bytes(-len(raw) % 4)
        return _header(RTCP_BYE, len(self.ssrcs), len(body)) + body


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other RTCP packet (APP, RTPFB/PSFB, XR...), kept as its count and body."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        return _header(self.packet_type, self.count, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _parse_blocks(body: bytes, offset: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    need = offset + count * ReportBlock.SIZE
    if need > len(body):
        raise ValueError(
            f"RTCP {what} truncated: {count} report blocks need {need + 4} bytes, "
            f"packet has {len(body) + 4}"
        )
    return tuple(ReportBlock.parse(body, offset + i * ReportBlock.SIZE) for i in range(count))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise ValueError(f"RTCP SDES truncated: chunk {len(chunks) + 1} of {count} missing")
        ssrc = _U32.unpack_from(body, offset)[0]
        pos = offset + 4
        items = []
        while True:
            if pos >= len(body):
                raise ValueError("RTCP SDES chunk not terminated by a null item")
            item_type = body[pos]
            if item_type == SDES_END:
                pos += 1
                break
            if pos + 2 > len(body):
                raise ValueError("RTCP SDES item truncated: length octet missing")
            length = body[pos + 1]
            if pos + 2 + length > len(body):
                raise ValueError(
                    f"RTCP SDES item of {length} octets overruns the packet at offset {pos + 4}"
                )
            items.append((item_type, body[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        offset = pos + (-pos % 4)  # §6.5: next chunk starts on a 32-bit boundary
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_bye(body: bytes, count: int) -> Bye:
    need = 4 * count
    if need > len(body):
        raise ValueError(f"RTCP BYE truncated: {count} sources need {need} bytes of body")
    ssrcs = struct.unpack_from(f"!{count}I", body, 0)
    reason = ""
    if len(body) > need:
        length = body[need]
        if need + 1 + length > len(body):
            raise ValueError(f"RTCP BYE reason of {length} octets overruns the packet")
        reason = body[need + 1 : need + 1 + length].decode("utf-8", "replace")
    return Bye(tuple(ssrcs), reason)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < _SENDER_INFO.size:
            raise ValueError(f"RTCP SR truncated: {len(body) + 4} bytes, sender info needs 28")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body, 0)
        blocks = _parse_blocks(body, _SENDER_INFO.size, count, "SR")
        ext = body[_SENDER_INFO.size + count * ReportBlock.SIZE :]
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks, ext)
    if packet_type == RTCP_RR:
        if len(body) < 4:
            raise ValueError("RTCP RR truncated: reporter SSRC missing")
        blocks = _parse_blocks(body, 4, count, "RR")
        return ReceiverReport(_U32.unpack_from(body, 0)[0], blocks, body[4 + count * 24 :])
    if packet_type == RTCP_SDES:
        return _parse_sdes(body, count)
    if packet_type == RTCP_BYE:
        return _parse_bye(body, count)
    return UnknownRtcp(packet_type, count, body)


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram (RFC 3550 §6.1, validity checks of §A.2)."""
    buf = bytes(data)
    n = len(buf)
    if n < 4:
        raise ValueError(f"RTCP packet too short: {n} bytes, header needs 4")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < n:
        if n - offset < 4:
            raise ValueError(f"RTCP compound has {n - offset} trailing bytes after packet end")
        b0, packet_type, length_words = _HEADER.unpack_from(buf, offset)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP version must be 2, got {b0 >> 6} at offset {offset}")
        if not 192 <= packet_type <= 223:
            # RFC 5761 §4: 192..223 is the RTCP range; anything else is not RTCP.
            raise ValueError(f"RTCP packet type {packet_type} outside 192..223 at offset {offset}")
        size = (length_words + 1) * 4
        end = offset + size
        if end > n:
            raise ValueError(
                f"RTCP length field says {size} bytes at offset {offset}, only {n - offset} left"
            )
        body_end = end
        if b0 & 0x20:  # §6.4.1 P bit: only the last packet of a compound may be padded
            if end != n:
                raise ValueError(f"RTCP padding bit set on a non-final packet at offset {offset}")
            pad = buf[end - 1]
            if pad == 0 or pad > size - 4:
                raise ValueError(f"RTCP padding count {pad} invalid for a {size}-byte packet")
            body_end = end - pad
        packets.append(_parse_one(packet_type, b0 & 0x1F, buf[offset + 4 : body_end]))
        offset = end
    return packets


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound datagram."""
    return b"".join(p.serialize() for p in packets)


# --- Statistics ----------------------------------------------------------------------------

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # §A.1
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class ReceiverStats:
    """Statistics of one received RTP stream (RFC 3550 §A.1, §A.3, §A.8).

    ``update`` is called once per received packet; it returns False for packets that do not
    count (source still on probation, or a big sequence jump that is not yet a restart).
    """

    __slots__ = (
        "_bad_seq",
        "_cycles",
        "_expected_prior",
        "_has_transit",
        "_jitter",
        "_last_transit",
        "_max_seq",
        "_probation",
        "_received_prior",
        "_sr_at",
        "_sr_ntp_middle",
        "base_seq",
        "clock_rate",
        "received",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000, ssrc: int | None = None) -> None:
        self.clock_rate = clock_rate
        self.ssrc = ssrc
        self.reset(ssrc)

    def reset(self, ssrc: int | None = None) -> None:
        """Forget everything (a new source, §A.1)."""
        self.ssrc = ssrc
        self.base_seq = 0
        self.received = 0
        self._max_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._probation = -1  # -1: no packet yet
        self._received_prior = 0
        self._expected_prior = 0
        self._jitter = 0.0
        self._last_transit = 0.0
        self._has_transit = False
        self._sr_ntp_middle = 0
        self._sr_at = 0.0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(self, seq: int, rtp_timestamp: int, arrival_time: float) -> bool:
        """Account one received packet (``arrival_time`` in seconds)."""
        if self._probation < 0:  # §A.1: first packet of a new source
            self._init_seq(seq)
            self._max_seq = (seq - 1) & 0xFFFF
            self._probation = MIN_SEQUENTIAL
        udelta = (seq - self._max_seq) & 0xFFFF
        if self._probation:
            if seq == (self._max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    self._jitter_update(rtp_timestamp, arrival_time)
                    return True
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self._max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD  # wrapped around
            self._max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self._bad_seq:
                # Two sequential packets after a big jump: the source restarted (§A.1).
                self._init_seq(seq)
                self._has_transit = False
            else:
                self._bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted as received (§A.1)
        self.received += 1
        self._jitter_update(rtp_timestamp, arrival_time)
        return True

    def _jitter_update(self, rtp_timestamp: int, arrival_time: float) -> None:
        # §A.8: transit time in timestamp units; its differences feed a 1/16 filter. The
        # 32-bit timestamp is unwrapped relative to the previous transit.
        transit = arrival_time * self.clock_rate - rtp_timestamp
        if self._has_transit:
            d = transit - self._last_transit
            # A timestamp wrap shows up as a jump of about 2**32; fold it back.
            if d > 2**31:
                d -= 2**32
            elif d < -(2**31):
                d += 2**32
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._last_transit = transit
        self._has_transit = True

    def sr_received(self, ntp_timestamp: int, now: float) -> None:
        """Remember the last SR from this source for LSR/DLSR (§6.4.1)."""
        self._sr_ntp_middle = ntp_middle32(ntp_timestamp)
        self._sr_at = now

    @property
    def extended_max_seq(self) -> int:
        """Highest sequence number received, extended with the wrap count (§A.1)."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        """Packets expected so far (§A.3)."""
        if self._probation != 0:
            return 0
        return self.extended_max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (§A.3); negative with duplicates."""
        return self.expected - self.received

    @property
    def loss_fraction(self) -> float:
        """Cumulative loss over the whole stream as a fraction 0..1."""
        expected = self.expected
        return max(0.0, self.lost / expected) if expected > 0 else 0.0

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units (§A.8)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        return self._jitter * 1000.0 / self.clock_rate

    def report_block(self, now: float) -> ReportBlock:
        """The report block about this source; starts a new fraction-lost interval (§A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        cumulative = max(-0x800000, min(0x7FFFFF, self.lost))
        dlsr = 0
        if self._sr_ntp_middle:
            dlsr = min(_MAX_U32, max(0, int((now - self._sr_at) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc or 0,
            fraction_lost=fraction,
            cumulative_lost=cumulative,
            highest_seq=self.extended_max_seq & _MAX_U32,
            jitter=min(_MAX_U32, int(self._jitter)),
            lsr=self._sr_ntp_middle,
            dlsr=dlsr,
        )


class SenderStats:
    """What we sent on one stream, for the SR sender info (RFC 3550 §6.4.1)."""

    __slots__ = ("clock_rate", "last_rtp_timestamp", "last_sent_at", "octet_count", "packet_count")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.packet_count = 0
        self.octet_count = 0  # payload octets only (§6.4.1)
        self.last_rtp_timestamp = 0
        self.last_sent_at: float | None = None

    def update(self, payload_len: int, rtp_timestamp: int, now: float) -> None:
        """Account one sent RTP packet."""
        self.packet_count = (self.packet_count + 1) & _MAX_U32
        self.octet_count = (self.octet_count + payload_len) & _MAX_U32
        self.last_rtp_timestamp = rtp_timestamp
        self.last_sent_at = now

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp that corresponds to ``now`` (§6.4.1: same instant as the NTP)."""
        if self.last_sent_at is None:
            return self.last_rtp_timestamp
        elapsed = round((now - self.last_sent_at) * self.clock_rate)
        return (self.last_rtp_timestamp + elapsed) & _MAX_U32


# --- Session -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtcpReportReceived:
    """The far end reported on our stream (from an SR or RR report block about our SSRC)."""

    leg_id: str
    reporter_ssrc: int
    fraction_lost: float  # 0..1 over the reporter's last interval
    cumulative_lost: int
    jitter_ms: float
    rtt_ms: float | None  # None until the far end echoes one of our SRs
    at: float


@dataclass(frozen=True, slots=True)
class RtcpByeReceived:
    """The far end said BYE for these sources (RFC 3550 §6.6)."""

    leg_id: str
    ssrcs: tuple[int, ...]
    reason: str
    at: float


RtcpEvent = RtcpReportReceived | RtcpByeReceived

RTCP_MIN_INTERVAL = 5.0  # RFC 3550 §6.2 recommended minimum
_COMPENSATION = math.e - 1.5  # §6.3.1: divide the randomised interval by e - 3/2


class RtcpSession:
    """RTCP for one leg: statistics in, compound reports out, far-end reports as events."""

    __slots__ = (
        "_rng",
        "_sent_since_report",
        "clock_rate",
        "cname",
        "interval",
        "leg_id",
        "next_report_at",
        "receiver",
        "remote",
        "sender",
        "ssrc",
        "wallclock_offset",
    )

    def __init__(
        self,
        ssrc: int,
        cname: str,
        clock_rate: int = 8000,
        *,
        leg_id: str = "",
        now: float = 0.0,
        interval: float = RTCP_MIN_INTERVAL,
        wallclock_offset: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.clock_rate = clock_rate
        self.leg_id = leg_id
        self.interval = interval
        self.wallclock_offset = wallclock_offset
        self._rng = rng if rng is not None else random.Random()
        self.sender = SenderStats(clock_rate)
        self.receiver = ReceiverStats(clock_rate)
        self.remote: RtcpReportReceived | None = None  # the far end's latest view
        self._sent_since_report = False
        # §6.2: the first report may go out after half the minimum interval.
        self.next_report_at = now + self._draw(interval / 2)

    def _draw(self, base: float) -> float:
        return base * self._rng.uniform(0.5, 1.5) / _COMPENSATION

    def on_rtp_sent(self, payload_len: int, rtp_timestamp: int, now: float) -> None:
        """Account one RTP packet we sent."""
        self.sender.update(payload_len, rtp_timestamp, now)
        self._sent_since_report = True

    def on_rtp_received(self, ssrc: int, seq: int, rtp_timestamp: int, now: float) -> bool:
        """Account one RTP packet received; a new SSRC restarts the statistics."""
        if ssrc != self.receiver.ssrc:
            self.receiver.reset(ssrc)
        return self.receiver.update(seq, rtp_timestamp, now)

    def report_due(self, now: float) -> bool:
        """True when ``build_report`` should be called."""
        return now >= self.next_report_at

    def _ntp(self, now: float) -> int:
        return to_ntp(now + self.wallclock_offset)

    def _report_packets(self, now: float) -> list[RtcpPacket]:
        blocks: tuple[ReportBlock, ...] = ()
        if self.receiver.ssrc is not None and self.receiver.expected > 0:
            blocks = (self.receiver.report_block(now),)
        first: RtcpPacket
        if self._sent_since_report:  # §6.4: SR if we sent data since the previous report
            first = SenderReport(
                self.ssrc,
                self._ntp(now),
                self.sender.rtp_timestamp_at(now),
                self.sender.packet_count,
                self.sender.octet_count,
                blocks,
            )
        else:
            first = ReceiverReport(self.ssrc, blocks)
        self._sent_since_report = False
        sdes = SourceDescription((SdesChunk(self.ssrc, ((SDES_CNAME, self.cname.encode()),)),))
        return [first, sdes]

    def build_report(self, now: float) -> bytes:
        """A compound SR/RR + SDES CNAME datagram; schedules the next report."""
        self.next_report_at = now + self._draw(self.interval)
        return serialize_compound(self._report_packets(now))

    def build_bye(self, now: float, reason: str = "") -> bytes:
        """The last datagram of the session: report, SDES and BYE (§6.1, §6.6)."""
        return serialize_compound([*self._report_packets(now), Bye((self.ssrc,), reason)])

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> list[RtcpEvent]:
        """Process a received compound datagram; ``ValueError`` if malformed."""
        events: list[RtcpEvent] = []
        for packet in parse_compound(data):
            if isinstance(packet, SenderReport):
                if packet.ssrc == self.receiver.ssrc or self.receiver.ssrc is None:
                    self.receiver.sr_received(packet.ntp_timestamp, now)
                events.extend(self._blocks(packet.ssrc, packet.reports, now))
            elif isinstance(packet, ReceiverReport):
                events.extend(self._blocks(packet.ssrc, packet.reports, now))
            elif isinstance(packet, Bye):
                events.append(RtcpByeReceived(self.leg_id, packet.ssrcs, packet.reason, now))
        return events

    def _blocks(
        self, reporter: int, blocks: Sequence[ReportBlock], now: float
    ) -> list[RtcpReportReceived]:
        out = []
        for block in blocks:
            if block.ssrc != self.ssrc:
                continue  # about some other source
            rtt_ms: float | None = None
            if block.lsr:
                # §6.4.1: RTT = A - LSR - DLSR, all in 1/65536 s, modulo 2**32.
                arrival = ntp_middle32(self._ntp(now))
                delta = (arrival - block.lsr - block.dlsr) & _MAX_U32
                if delta < 1 << 31:  # a negative result (clock trouble) is ignored
                    rtt_ms = delta * 1000.0 / 65536
            event = RtcpReportReceived(
                self.leg_id,
                reporter,
                block.fraction_lost / 256.0,
                block.cumulative_lost,
                block.jitter * 1000.0 / self.clock_rate,
                rtt_ms,
                now,
            )
            self.remote = event
            out.append(event)
        return out

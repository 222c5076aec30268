"""Make (and read back) pcap files of G.711 RTP streams, with ``struct`` only.

Theory of operation
-------------------
SIPp's ``play_pcap_audio`` replays the RTP packets of a pcap, keeping their timing and
payloads and rewriting addresses/ports to the call's negotiated media. Debian's bundled
pcaps carry 10.x addresses, so we write our own: a classic libpcap file (magic
``a1b2c3d4``, version 2.4, LINKTYPE_ETHERNET) whose frames are Ethernet / IPv4 / UDP /
RTP (RFC 3550 §5.1) with a G.711 payload (ITU-T G.711, PT 0 = PCMU, PT 8 = PCMA per
RFC 3551 §6), 20 ms per packet = 160 samples = 160 bytes at 8 kHz.

IPv4 header checksums are computed (RFC 791 §3.1); the UDP checksum is 0, which RFC 768
allows over IPv4 ("no checksum").
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
PT_PCMU = 0
PT_PCMA = 8
SAMPLE_RATE = 8000

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def linear_to_ulaw(samples: np.ndarray) -> bytes:
    """ITU-T G.711 μ-law encode of int16 samples (the Sun/CCITT g711.c algorithm)."""
    pcm = samples.astype(np.int32) >> 2  # 14-bit, arithmetic shift as in g711.c
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), _ULAW_CLIP >> 2) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), pcm)
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    return bytes((uval ^ mask).astype(np.uint8).tobytes())


def ulaw_to_linear(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def linear_to_alaw(samples: np.ndarray) -> bytes:
    """ITU-T G.711 A-law encode of int16 samples."""
    x = samples.astype(np.int32) >> 3  # 13-bit
    sign = np.where(x >= 0, 0x80, 0x00)
    mag = np.where(x >= 0, x, -x - 1)
    mag = np.minimum(mag, 0xFFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return bytes(code.astype(np.uint8).tobytes())


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip4(addr: str) -> bytes:
    return bytes(int(p) for p in addr.split("."))


def udp_frame(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ident: int) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload`` (UDP checksum 0 = none, RFC 768)."""
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
    total_len = 20 + udp_len
    ip_wo_sum = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total_len,
        ident & 0xFFFF,
        0x4000,
        64,
        IPPROTO_UDP,
        0,
        _ip4(src[0]),
        _ip4(dst[0]),
    )
    csum = _ip_checksum(ip_wo_sum)
    ip = ip_wo_sum[:10] + struct.pack("!H", csum) + ip_wo_sum[12:]
    eth = b"\x00" * 12 + struct.pack("!H", ETHERTYPE_IPV4)
    return eth + ip + udp + payload


def write_g711_tone_pcap(
    path: str | os.PathLike[str],
    freq_hz: float = 1000.0,
    seconds: float = 3.0,
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 6002),
    payload_type: int = PT_PCMU,
    amplitude: float = 0.5,
    ptime_ms: int = 20,
    ssrc: int = 0x5B0A2D01,
) -> Path:
    """Write a pcap of an RTP G.711 tone stream: one packet per ``ptime_ms``."""
    per_packet = SAMPLE_RATE * ptime_ms // 1000
    n_packets = round(seconds * 1000 / ptime_ms)
    t = np.arange(per_packet * n_packets) / SAMPLE_RATE
    pcm = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)
    encode = linear_to_ulaw if payload_type == PT_PCMU else linear_to_alaw
    payload_all = encode(pcm)
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
    base_ts_us = 1_700_000_000 * 1_000_000
    for i in range(n_packets):
        marker = 0x80 if i == 0 else 0x00  # RFC 3551 §4.1: marker on the first packet
        rtp = struct.pack(
            "!BBHII", 0x80, marker | payload_type, i & 0xFFFF, (i * per_packet) & 0xFFFFFFFF, ssrc
        )
        chunk = payload_all[i * per_packet : (i + 1) * per_packet]
        frame = udp_frame(src, dst, rtp + chunk, ident=i)
        ts = base_ts_us + i * ptime_ms * 1000
        out += struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame))
        out += frame
    Path(path).write_bytes(bytes(out))
    return Path(path)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def read_rtp(path: str | os.PathLike[str]) -> Iterator[RtpPacket]:
    """Yield the UDP datagrams of an Ethernet or Linux-cooked pcap parsed as RTP (V=2)."""
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    l2 = {LINKTYPE_ETHERNET: 14, 113: 16, 0: 4}.get(linktype)  # 113 = LINUX_SLL, 0 = NULL
    if l2 is None:
        raise ValueError(f"unsupported pcap link type {linktype}")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        frame = data[off : off + incl]
        off += incl
        ip = frame[l2:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != IPPROTO_UDP:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport, ulen, _ = struct.unpack_from("!HHHH", ip, ihl)
        rtp = ip[ihl + 8 : ihl + ulen]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", rtp, 0)
        hlen = 12 + 4 * (b0 & 0x0F)
        yield RtpPacket(
            time=sec + frac / (1e9 if nano else 1e6),
            src=(".".join(map(str, ip[12:16])), sport),
            dst=(".".join(map(str, ip[16:20])), dport),
            payload_type=b1 & 0x7F,
            marker=bool(b1 & 0x80),
            seq=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=rtp[hlen:],
        )

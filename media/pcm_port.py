"""A plain RTP endpoint for audio made and heard outside the engine: the browser phone.

Theory of operation
-------------------
The browser phone's audio arrives at the server through WebRTC (aiortc: ICE, DTLS-SRTP,
Opus or G.711) and has to become one more *ordinary* leg of the media engine, so that
queues, transfers, recording and supervision treat it like any desk phone. A ``PcmPort`` is
the phone end of that leg: it owns a UDP port pair on loopback, the engine's leg sends RTP to
it and receives RTP from it, exactly as with a phone on the LAN. What the port does:

* ``send(pcm)`` takes one 20 ms frame of mono int16 PCM at ``rate`` (what the browser's
  microphone said), encodes it in the negotiated format and sends one RTP packet
  (RFC 3550 §5.1) to the engine's leg;
* the packets the engine sends (what the phone should hear) are decoded and queued;
  ``read()`` waits for the next 20 ms frame and returns silence when none came in time, so
  the browser's stream keeps its pace through silence suppression or a held call;
* ``send_dtmf(digit)`` sends the RFC 4733 §2.5.1 event sequence on the same stream (the
  panel's keypad), muting audio while the event lasts as §2.5.1.1 recommends.

The engine's RTCP goes to the next port; it is read and dropped (our counters are the
engine's, reported for its leg). The queue of heard frames is short (``MAX_QUEUED``
frames): on loopback nothing is late, and a stalled reader must not grow a delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from media.codecs import CodecInfo, Decoder, Encoder
from media.dtmf import DtmfPacket, Rfc4733Sender

__all__ = ["PcmPort", "PortStats"]

log = structlog.get_logger(__name__)

Int16Array = npt.NDArray[np.int16]
MAX_QUEUED = 6  # frames (120 ms) of heard audio kept for a slow reader
DTMF_GAP = 0.04  # seconds between two digits' events
_HEADER = struct.Struct("!BBHII")


@dataclass(slots=True)
class PortStats:
    packets_in: int = 0
    packets_out: int = 0
    frames_dropped: int = 0  # heard frames dropped because the reader was behind
    frames_silent: int = 0  # frames ``read`` made up because none arrived in time
    malformed: int = 0
    dtmf_sent: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, port: PcmPort) -> None:
        self._port = port

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._port.datagram(data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from a gone leg
        log.debug("pcm_port.send_error", error=str(exc))


class _Discard(asyncio.DatagramProtocol):
    pass


class PcmPort:
    """One RTP endpoint on ``host`` (see the module doc)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.stats = PortStats()
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._codec: CodecInfo | None = None
        self._pt = 0
        self._dtmf_pt: int | None = None
        self._encoder: Encoder | None = None
        self._decoder: Decoder | None = None
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._heard: deque[Int16Array] = deque(maxlen=MAX_QUEUED)
        self._wake: asyncio.Event = asyncio.Event()
        self._dtmf_until = 0.0  # loop time until which audio is muted by an event
        self._dtmf_free_at = 0.0  # loop time when the next digit may start
        self._event_end_ts = self._ts  # RTP time after the last event (and its gap)
        self._closed = False

    @property
    def rate(self) -> int:
        """PCM rate of ``send``/``read`` frames (8000 until a format is set)."""
        return self._codec.sample_rate if self._codec is not None else 8000

    @property
    def frame_samples(self) -> int:
        return self.rate // 50

    async def open(self) -> int:
        """Bind an even RTP port and the RTCP port above it; returns the RTP port."""
        loop = asyncio.get_running_loop()
        for _ in range(64):
            rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp_sock.bind((self.host, 0))
            port: int = rtp_sock.getsockname()[1]
            if port % 2 or port >= 65535:
                rtp_sock.close()
                continue
            rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp_sock.bind((self.host, port + 1))
            except OSError:
                rtp_sock.close()
                rtcp_sock.close()
                continue
            rtp, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=rtp_sock)
            rtcp, _ = await loop.create_datagram_endpoint(_Discard, sock=rtcp_sock)
            self._rtp, self._rtcp, self.port = rtp, rtcp, port
            return port
        raise OSError("no free RTP port pair on loopback")

    def configure(
        self, remote: tuple[str, int], codec: CodecInfo, payload_type: int, dtmf_pt: int | None
    ) -> None:
        """Where to send and in which format (from the far end's SDP; again on re-INVITE)."""
        if self._codec is None or codec.name != self._codec.name or payload_type != self._pt:
            self._encoder = codec.new_encoder()
            self._decoder = codec.new_decoder()
            self._heard.clear()
        self._remote = remote
        self._codec = codec
        self._pt = payload_type
        self._dtmf_pt = dtmf_pt

    def close(self) -> None:
        self._closed = True
        for t in (self._rtp, self._rtcp):
            if t is not None:
                t.close()
        self._rtp = self._rtcp = None
        self._wake.set()

    # -- what the phone says --------------------------------------------------------------------

    def _send_packet(self, pt: int, payload: bytes, marker: bool, timestamp: int) -> None:
        if self._rtp is None or self._remote is None:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        head = _HEADER.pack(0x80, (0x80 if marker else 0) | pt, self._seq, timestamp, self._ssrc)
        self._rtp.sendto(head + payload, self._remote)
        self.stats.packets_out += 1

    def send(self, pcm: Int16Array) -> None:
        """Send one 20 ms frame at ``rate`` (RFC 3550 §5.1: timestamp advances by its
        clock units whether or not the frame was sent)."""
        codec, encoder = self._codec, self._encoder
        if codec is None or encoder is None:
            return
        step = codec.timestamp_increment()
        if asyncio.get_running_loop().time() >= self._dtmf_until:
            self._send_packet(self._pt, encoder.encode(pcm), False, self._ts)
        self._ts = (self._ts + step) & 0xFFFFFFFF

    def send_dtmf(self, digit: str, duration_ms: int = 120) -> bool:
        """Send ``digit`` as RFC 4733 events; False when the far end did not negotiate
        telephone-event (nothing is sent). A digit pressed while the previous one is still
        being sent waits for it (and a 40 ms gap): events never overlap (§2.5.1)."""
        if self._dtmf_pt is None or self._codec is None or self._rtp is None:
            return False
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._dtmf_free_at)
        packets = list(
            Rfc4733Sender(self._dtmf_pt, self._codec.clock_rate).packets(digit, duration_ms)
        )
        last_ms = packets[-1].send_offset_ms if packets else 0
        self._dtmf_free_at = start + (last_ms + 20) / 1000 + DTMF_GAP
        # §2.5.1.1: the event replaces the audio for its duration.
        self._dtmf_until = max(self._dtmf_until, start + (last_ms + 20) / 1000)
        loop.call_at(start, self._play_dtmf, packets)
        self.stats.dtmf_sent += 1
        return True

    def _play_dtmf(self, packets: list[DtmfPacket]) -> None:
        """Send one digit's packets on their schedule, from the stream's timestamp now."""
        if self._rtp is None or self._dtmf_pt is None:
            return
        loop = asyncio.get_running_loop()
        start_ts = self._ts
        # Without audio in between (a silent microphone) the stream clock stood still:
        # start after the previous event all the same.
        if ((start_ts - self._event_end_ts) & 0xFFFFFFFF) >= 0x80000000:
            start_ts = self._event_end_ts
        rate = self._codec.clock_rate if self._codec is not None else 8000
        last_ms = packets[-1].send_offset_ms if packets else 0
        self._event_end_ts = (
            start_ts + (last_ms + 20 + int(DTMF_GAP * 1000)) * rate // 1000
        ) & 0xFFFFFFFF
        pt = self._dtmf_pt
        for p in packets:
            ts = (start_ts + p.timestamp_offset) & 0xFFFFFFFF
            loop.call_later(p.send_offset_ms / 1000, self._send_packet, pt, p.payload, p.marker, ts)

    # -- what the phone hears -------------------------------------------------------------------

    def datagram(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.malformed += 1
            return
        decoder = self._decoder
        pt = data[1] & 0x7F
        if decoder is None or pt != self._pt:
            return  # telephone-event towards the phone, comfort noise: not audio
        cc = data[0] & 0x0F
        start = 12 + 4 * cc
        if data[0] & 0x10:  # header extension (RFC 3550 §5.3.1)
            if len(data) < start + 4:
                self.stats.malformed += 1
                return
            start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if start > end:
            self.stats.malformed += 1
            return
        try:
            pcm = decoder.decode(data[start:end])
        except ValueError:
            self.stats.malformed += 1
            return
        self.stats.packets_in += 1
        if len(self._heard) == MAX_QUEUED:
            self.stats.frames_dropped += 1
        self._heard.append(pcm)
        self._wake.set()

    async def read(self, timeout: float = 0.02) -> Int16Array:
        """The next heard frame, or ``frame_samples`` of silence after ``timeout``."""
        if not self._heard and not self._closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        if self._heard:
            return self._heard.popleft()
        self.stats.frames_silent += 1
        return np.zeros(self.frame_samples, dtype=np.int16)

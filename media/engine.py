"""asyncio RTP media engine: legs with RTP/RTCP ports, two-party relay, tones, inactivity.

Theory of operation
-------------------
Switchboard anchors media. Each call leg gets an RTP port (even) and the RTCP port above it
(RFC 3550 §11) from the configured range. ``bridge(a, b)`` connects two legs: a packet that
leg A receives from its phone is sent out of leg B's socket to B's phone, and vice versa.
Legs are addressed by id, never shared as objects across components (DESIGN: media workers
may later live in other processes).

Per packet (``Leg._datagram`` then ``Leg._relay`` on the peer), with no per-packet object
beyond what asyncio hands over and a few ints:

1. Drop what is not RTP version 2 or whose header lengths do not add up (counted as
   ``malformed``); drop RTCP that arrived on the RTP port (RFC 5761 §4).
2. Symmetric RTP (RFC 4961, and the "latching" of RFC 7362): the
   first packet after ``set_remote`` latches the leg's destination to its source address,
   so a phone behind NAT gets media back through the same mapping. Packets from other
   addresses are then dropped (``foreign``) so nobody can inject audio into a call. A later
   ``set_remote`` with a different address (re-INVITE) re-arms latching.
3. Classify by payload type: the source leg's telephone-event PT maps to the destination
   leg's telephone-event PT (RFC 4733 §7.1.1, each leg has its own; dropped if none); audio in
   the same format is copied into a reused ``bytearray``; PCMU↔PCMA is transcoded with
   ``bytes.translate`` and a 256-byte table (G.711); anything else is dropped.
4. ``RtpOutputStream.rewrite`` writes our per-leg SSRC and a continuous sequence number and
   timestamp in one ``struct.pack_into`` (re-based when the source changes: tone → relay,
   new peer, the phone's SSRC changed).
5. ``sendto`` a memoryview of the buffer. If the transport had to queue the datagram (it
   then still references the buffer), the leg switches to a fresh buffer.

Tones (``start_tone``) send a 20 ms G.711 frame on an absolute schedule
``t0 + k * 20 ms`` with ``loop.call_at``, so timer lateness never accumulates into drift;
if the loop stalls for more than a few frames, the tone skips ahead (timestamps jump, which
a receiver treats as a gap) instead of bursting. While a tone plays on a leg, audio relayed
towards that leg is dropped: the tone owns the stream until ``stop_tone``.

Inactivity: one engine-wide periodic timer (not per packet) checks bridged legs that expect
to receive media (direction sendrecv or recvonly); a leg silent for ``inactivity_timeout``
seconds is reported once through ``on_inactive(leg_id)``; it is reported again only after
media resumed and stopped again.

RTCP: the port is bound and drained (counted); reports are future work.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from media.codec import DIRECTIONS, Codec, Direction
from media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from media.rtp import HEADER_STRUCT, RTP_HEADER_SIZE, RtpOutputStream, header_length
from media.tones import FRAME_SAMPLES, TONE_PLANS, tone_cycle

__all__ = ["Leg", "LegStats", "MediaEngine", "MediaError", "PortsExhausted"]

log = structlog.get_logger(__name__)

FRAME_SECONDS = 0.020
_MAX_TONE_LAG_FRAMES = 5  # beyond this, skip ahead rather than burst
_BUFFER_SIZE = 2048  # larger datagrams get a one-off buffer
_TONE_SOURCE = -1  # source key of locally generated audio in RtpOutputStream
_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::"})  # RFC 3264 §8.4 old-style hold
_IPTOS_DSCP_EF = 0xB8  # RFC 3246 expedited forwarding, the usual marking for voice

# (from, to) encoding names -> translation table. G.711 only: everything else needs PCM.
_TRANSLATE: dict[tuple[str, str], bytes] = {
    ("PCMU", "PCMA"): ULAW_TO_ALAW,
    ("PCMA", "PCMU"): ALAW_TO_ULAW,
}
_STATIC_G711 = {0: "PCMU", 8: "PCMA"}


class MediaError(Exception):
    """Base class of media engine errors."""


class PortsExhausted(MediaError):
    """No free RTP/RTCP port pair is left in the configured range."""


@dataclass(slots=True)
class LegStats:
    """Counters of one leg. ``*_in`` count packets accepted from the leg's phone."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    last_packet_at: float | None = None  # loop.time() of the last accepted packet
    malformed: int = 0  # not RTP v2 / inconsistent header
    foreign: int = 0  # RTP from an address other than the latched one
    dropped: int = 0  # accepted but not relayed (no peer, no format mapping, tone playing)
    rtcp_in: int = 0  # datagrams drained on the RTCP port (or RTCP seen on the RTP port)
    send_errors: int = 0  # errors the transport reported (e.g. ICMP port unreachable)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: Leg) -> None:
        self._leg = leg

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._leg._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._leg.stats.send_errors += 1


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: Leg) -> None:
        self._leg = leg

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # TODO(rtcp): parse SR/RR for loss and jitter into the CDR; draining is enough
        # until then because nothing here depends on RTCP.
        self._leg.stats.rtcp_in += 1

    def error_received(self, exc: Exception) -> None:
        pass


class Leg:
    """One RTP session between Switchboard and one phone (or trunk)."""

    def __init__(
        self,
        leg_id: str,
        local_host: str,
        local_port: int,
        loop: asyncio.AbstractEventLoop,
        tone_plan: str,
    ) -> None:
        self.leg_id = leg_id
        self.local_host = local_host  # address to advertise in SDP
        self.local_port = local_port
        self.local_rtcp_port = local_port + 1
        self.stats = LegStats()
        self.codec: Codec | None = None
        self.dtmf_payload_type: int | None = None
        self.direction: Direction = "sendrecv"
        self._loop = loop
        self._tone_plan = tone_plan
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._queued: Callable[[], int] | None = None
        self._sdp_addr: tuple[str, int] | None = None
        self._latched: Any = None
        self._dest: Any = None  # where we send, None when we must not send
        self._codec_name = ""
        self._codec_pt = -1
        self._peer: Leg | None = None
        self._out = RtpOutputStream(
            ssrc=secrets.randbits(32),
            initial_sequence=secrets.randbits(16),
            initial_timestamp=secrets.randbits(32),
        )
        self._buf = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._activity_at = loop.time()
        self._inactive_reported = False
        self._expects_rtp = True
        self._tone_kind: str | None = None
        self._tone_handle: asyncio.TimerHandle | None = None
        self._tone_t0 = 0.0
        self._tone_index = 0
        self._tone_seq = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Leg {self.leg_id} {self.local_host}:{self.local_port} dest={self._dest}>"

    # --- public API -----------------------------------------------------------------------

    @property
    def ssrc(self) -> int:
        """SSRC of the stream this leg sends."""
        return self._out.ssrc

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """Where media is sent now: the latched source, else the SDP address; None if not."""
        if self._dest is None:
            return None
        return (self._dest[0], self._dest[1])

    @property
    def latched(self) -> bool:
        """True once the destination was learned from received packets (symmetric RTP)."""
        return self._latched is not None

    @property
    def bridged_to(self) -> str | None:
        """Id of the leg this one relays to, if any."""
        return None if self._peer is None else self._peer.leg_id

    @property
    def tone_playing(self) -> str | None:
        """Kind of the tone being played, if any."""
        return self._tone_kind

    def set_remote(
        self,
        host: str,
        port: int,
        codec: Codec,
        dtmf_payload_type: int | None,
        *,
        direction: Direction = "sendrecv",
    ) -> None:
        """Apply the phone's SDP (initial or re-INVITE).

        ``direction`` is *our* direction on this leg as negotiated (what ``negotiate_answer``
        / ``parse_answer`` return): we send only for sendrecv/sendonly and expect media
        (for the inactivity check) only for sendrecv/recvonly. ``host`` 0.0.0.0 means the
        phone wants no media (RFC 3264 §8.4): nothing is sent.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"invalid media direction {direction!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid RTP port {port}")
        if dtmf_payload_type is not None and not 0 <= dtmf_payload_type <= 127:
            raise ValueError(f"invalid telephone-event payload type {dtmf_payload_type}")
        addr = (host, port)
        if addr != self._sdp_addr:
            # A new address (first SDP, or a re-INVITE moving the media): learn again.
            self._latched = None
        self._sdp_addr = addr
        if self.codec is None or codec.clock_rate != self.codec.clock_rate:
            self._out.set_clock_rate(codec.clock_rate)
        self.codec = codec
        self._codec_name = codec.name.upper()
        self._codec_pt = codec.payload_type
        self.dtmf_payload_type = dtmf_payload_type
        if direction != self.direction:
            self._activity_at = self._loop.time()
            self._inactive_reported = False
        self.direction = direction
        self._expects_rtp = direction in ("sendrecv", "recvonly")
        self._update_destination()
        log.debug(
            "media.remote_set",
            leg=self.leg_id,
            host=host,
            port=port,
            codec=codec.name,
            dtmf_pt=dtmf_payload_type,
            direction=direction,
        )

    def start_tone(self, kind: str = "ringback") -> None:
        """Play a call-progress tone to this leg's phone until ``stop_tone``."""
        if kind not in TONE_PLANS[self._tone_plan]:
            raise ValueError(f"unknown tone {kind!r} in plan {self._tone_plan!r}")
        if self._closed:
            raise MediaError(f"leg {self.leg_id} is closed")
        self.stop_tone()
        self._tone_kind = kind
        self._out.rebase()
        self._tone_t0 = self._loop.time()
        self._tone_index = 0
        self._tone_handle = self._loop.call_at(self._tone_t0, self._tone_tick)
        log.debug("media.tone_started", leg=self.leg_id, kind=kind)

    def stop_tone(self) -> None:
        """Stop the tone; relayed audio (if bridged) takes over with a re-based stream."""
        if self._tone_handle is not None:
            self._tone_handle.cancel()
            self._tone_handle = None
        if self._tone_kind is not None:
            log.debug("media.tone_stopped", leg=self.leg_id, kind=self._tone_kind)
        self._tone_kind = None

    # --- internals ------------------------------------------------------------------------

    def _attach(
        self, transport: asyncio.DatagramTransport, rtcp_transport: asyncio.DatagramTransport
    ) -> None:
        self._transport = transport
        self._rtcp_transport = rtcp_transport
        # Not in typeshed's DatagramTransport, but both asyncio's and uvloop's have it.
        self._queued = getattr(transport, "get_write_buffer_size", None)

    def _close(self) -> None:
        self.stop_tone()
        self._closed = True
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = None
        self._rtcp_transport = None
        self._dest = None

    def _update_destination(self) -> None:
        sdp = self._sdp_addr
        if (
            sdp is None
            or sdp[0] in _UNSPECIFIED_HOSTS
            or sdp[1] == 0
            or self.direction in ("recvonly", "inactive")
        ):
            self._dest = None
        elif self._latched is not None:
            self._dest = self._latched
        else:
            self._dest = sdp

    def _datagram(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        n = len(data)
        if n < RTP_HEADER_SIZE:
            stats.malformed += 1
            return
        if data[0] != 0x80:  # anything but plain v2 without CSRC/extension/padding
            try:
                header_length(data)
            except ValueError:
                stats.malformed += 1
                return
        b1 = data[1]
        pt = b1 & 0x7F
        if 72 <= pt <= 76:  # RFC 5761 §4: RTCP sent to the RTP port
            stats.rtcp_in += 1
            return
        latched = self._latched
        if latched is None:
            if self._sdp_addr is not None:
                # RFC 4961 symmetric RTP: answer to where the phone really sends from.
                self._latched = addr
                self._update_destination()
                log.debug("media.latched", leg=self.leg_id, addr=addr)
        elif addr != latched:
            stats.foreign += 1
            return
        now = self._loop.time()
        stats.packets_in += 1
        stats.bytes_in += n
        stats.last_packet_at = now
        self._activity_at = now
        self._inactive_reported = False
        peer = self._peer
        if peer is None:
            stats.dropped += 1
            return
        peer._relay(data, n, pt, b1 & 0x80, self, now)

    def _relay(self, data: bytes, n: int, pt: int, marker: int, src: Leg, now: float) -> None:
        """Send a packet that ``src`` received out of this leg."""
        dest = self._dest
        if dest is None or self._codec_pt < 0 or self._tone_kind is not None:
            src.stats.dropped += 1
            return
        table: bytes | None = None
        if pt == src.dtmf_payload_type:
            # RFC 4733 §7.1.1: each leg negotiated its own telephone-event payload type.
            out_pt = self.dtmf_payload_type
            if out_pt is None:
                src.stats.dropped += 1
                return
        else:
            if pt == src._codec_pt:
                name = src._codec_name
            else:
                # The phone may switch to another format it offered; G.711 is recognisable
                # by its static payload type (RFC 3551 §6).
                static = _STATIC_G711.get(pt)
                if static is None:
                    src.stats.dropped += 1
                    return
                name = static
            if name != self._codec_name:
                table = _TRANSLATE.get((name, self._codec_name))
                if table is None:
                    src.stats.dropped += 1
                    return
            out_pt = self._codec_pt
        buf = self._buf
        view = self._view
        if n > len(buf):
            buf = bytearray(n)
            view = memoryview(buf)
        if table is None:
            buf[:n] = data
        else:
            buf[:n] = data.translate(table)
            if data[0] == 0x80:
                buf[0] = 0x80  # bytes 1..11 are rewritten below
            else:
                # Only the payload is audio: restore CSRCs, extension and padding.
                hl = header_length(data)
                buf[:hl] = data[:hl]
                if data[0] & 0x20:
                    pad = data[n - 1]
                    buf[n - pad : n] = data[n - pad : n]
        _, _, seq, ts, ssrc = HEADER_STRUCT.unpack_from(data)
        self._out.rewrite(buf, ssrc, seq, ts, out_pt, marker != 0, now)
        self._send(buf, view, n, dest)

    def _send(self, buf: bytearray, view: memoryview, n: int, dest: Any) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.sendto(view[:n], dest)
        self.stats.packets_out += 1
        self.stats.bytes_out += n
        queued = self._queued
        if queued is not None and queued() and buf is self._buf:
            # The datagram was queued and the transport may still point into our buffer
            # (uvloop keeps the buffer exported until sent): never overwrite it.
            self._buf = bytearray(_BUFFER_SIZE)
            self._view = memoryview(self._buf)

    def _tone_tick(self) -> None:
        kind = self._tone_kind
        if kind is None or self._closed:
            return
        now = self._loop.time()
        index = self._tone_index
        lag = int((now - (self._tone_t0 + index * FRAME_SECONDS)) / FRAME_SECONDS)
        if lag > _MAX_TONE_LAG_FRAMES:
            index += lag  # the loop stalled: skip ahead, timestamps show the gap
        self._send_tone_frame(kind, index, now)
        index += 1
        self._tone_index = index
        self._tone_handle = self._loop.call_at(
            self._tone_t0 + index * FRAME_SECONDS, self._tone_tick
        )

    def _send_tone_frame(self, kind: str, index: int, now: float) -> None:
        dest = self._dest
        name = self._codec_name
        if dest is None or name not in _TRANSLATE_NAMES:
            return
        cycle = tone_cycle(kind, name, self._tone_plan)
        offset = (index * FRAME_SAMPLES) % len(cycle)
        buf = self._buf
        buf[0] = 0x80
        end = RTP_HEADER_SIZE + FRAME_SAMPLES
        buf[RTP_HEADER_SIZE:end] = cycle[offset : offset + FRAME_SAMPLES]
        self._out.rewrite(
            buf, _TONE_SOURCE, self._tone_seq, index * FRAME_SAMPLES, self._codec_pt, False, now
        )
        self._tone_seq = (self._tone_seq + 1) & 0xFFFF
        self._send(buf, self._view, end, dest)


_TRANSLATE_NAMES = frozenset({"PCMU", "PCMA"})


class MediaEngine:
    """Allocates legs on a port range and relays RTP between bridged legs."""

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        *,
        inactivity_timeout: float = 60.0,
        on_inactive: Callable[[str], None] | None = None,
        tone_plan: str = "us",
    ) -> None:
        first = port_min + (port_min & 1)  # RFC 3550 §11: RTP on an even port
        if port_min < 1 or port_max > 65535 or first + 1 > port_max:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        if inactivity_timeout <= 0:
            raise ValueError("inactivity_timeout must be positive")
        if tone_plan not in TONE_PLANS:
            raise ValueError(f"unknown tone plan {tone_plan!r}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.inactivity_timeout = inactivity_timeout
        self.on_inactive = on_inactive
        self.tone_plan = tone_plan
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._ports = range(first, port_max, 2)  # p and p + 1 both <= port_max
        self._cursor = 0
        self._legs: dict[str, Leg] = {}
        # RTP ports of open legs, kept with _legs so that allocation does not rebuild a set
        # of every leg's port per call (that was O(legs) per create_leg under load).
        self._ports_in_use: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._legs

    async def create_leg(self, leg_id: str, advertise_host: str | None = None) -> Leg:
        """Bind an RTP/RTCP port pair for a new leg.

        ``advertise_host`` is the address to put in SDP when the bind host is a wildcard or
        a private address behind 1:1 NAT. Raises ``PortsExhausted`` when no pair is free.
        """
        if self._closed:
            raise MediaError("media engine is closed")
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        loop = asyncio.get_running_loop()
        self._arm_timer(loop)
        for port in self._candidate_ports():
            socks = self._bind_pair(port)
            if socks is None:
                continue
            leg = await self._open_leg(loop, leg_id, advertise_host or self.host, port, *socks)
            if leg_id in self._legs or self._closed:  # lost a race while awaiting
                leg._close()
                raise ValueError(f"leg {leg_id!r} already exists")
            self._legs[leg_id] = leg
            self._ports_in_use.add(port)
            # debug, not info: two legs per call; the call's own end event has the summary.
            log.debug("media.leg_created", leg=leg_id, port=port)
            return leg
        raise PortsExhausted(f"no free RTP port pair in {self.port_min}-{self.port_max}")

    def get_leg(self, leg_id: str) -> Leg:
        """The leg with this id; ``KeyError`` if there is none."""
        try:
            return self._legs[leg_id]
        except KeyError:
            raise KeyError(f"no media leg {leg_id!r}") from None

    def close_leg(self, leg_id: str) -> None:
        """Unbridge, stop tones and release the ports. Idempotent."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        self._ports_in_use.discard(leg.local_port)
        self._unbridge(leg)
        leg._close()
        log.debug(
            "media.leg_closed",
            leg=leg_id,
            port=leg.local_port,
            packets_in=leg.stats.packets_in,
            packets_out=leg.stats.packets_out,
            malformed=leg.stats.malformed,
            dropped=leg.stats.dropped,
        )

    def bridge(self, leg_a: str, leg_b: str) -> None:
        """Relay media both ways between two legs (each is unbridged from others first)."""
        if leg_a == leg_b:
            raise ValueError("cannot bridge a leg to itself")
        a = self.get_leg(leg_a)
        b = self.get_leg(leg_b)
        if a._peer is b:
            return
        self._unbridge(a)
        self._unbridge(b)
        a._peer = b
        b._peer = a
        now = a._loop.time()
        for leg in (a, b):
            leg._out.rebase()
            leg._activity_at = now
            leg._inactive_reported = False
        log.debug("media.bridged", leg_a=leg_a, leg_b=leg_b)

    def unbridge(self, leg_id: str) -> None:
        """Stop relaying between this leg and its peer (both directions)."""
        self._unbridge(self.get_leg(leg_id))

    async def close(self) -> None:
        """Close every leg and stop timers."""
        self._closed = True
        for leg_id in list(self._legs):
            self.close_leg(leg_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.sleep(0)  # let transports run connection_lost

    # --- internals ------------------------------------------------------------------------

    def _unbridge(self, leg: Leg) -> None:
        peer = leg._peer
        if peer is None:
            return
        leg._peer = None
        peer._peer = None
        log.debug("media.unbridged", leg_a=leg.leg_id, leg_b=peer.leg_id)

    def _candidate_ports(self) -> Iterator[int]:
        # Rotate through the range so a just-released port is not reused at once (late
        # packets of the old call would land in the new one).
        count = len(self._ports)
        start = self._cursor
        in_use = self._ports_in_use
        for i in range(count):
            index = (start + i) % count
            port = self._ports[index]
            if port in in_use:
                continue
            self._cursor = (index + 1) % count
            yield port

    def _bind_one(self, port: int) -> socket.socket | None:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        return sock

    def _bind_pair(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        rtp = self._bind_one(port)
        if rtp is None:
            return None
        rtcp = self._bind_one(port + 1)
        if rtcp is None:
            rtp.close()
            return None
        if self._family == socket.AF_INET:
            with contextlib.suppress(OSError):  # DSCP marking is best effort
                rtp.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, _IPTOS_DSCP_EF)
        return rtp, rtcp

    async def _open_leg(
        self,
        loop: asyncio.AbstractEventLoop,
        leg_id: str,
        local_host: str,
        port: int,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
    ) -> Leg:
        leg = Leg(leg_id, local_host, port, loop, self.tone_plan)
        rtp_transport: asyncio.DatagramTransport | None = None
        try:
            rtp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _RtpProtocol(leg), sock=rtp_sock
            )
            rtcp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _RtcpProtocol(leg), sock=rtcp_sock
            )
        except BaseException:
            if rtp_transport is not None:
                rtp_transport.close()
            else:
                rtp_sock.close()
            rtcp_sock.close()
            raise
        leg._attach(rtp_transport, rtcp_transport)
        return leg

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and not self._closed:
            interval = min(1.0, max(0.05, self.inactivity_timeout / 5))
            self._timer = loop.call_later(interval, self._check_inactivity, loop, interval)

    def _check_inactivity(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._timer = None
        now = loop.time()
        timeout = self.inactivity_timeout
        for leg in list(self._legs.values()):
            if leg._peer is None or not leg._expects_rtp or leg._inactive_reported:
                continue
            if now - leg._activity_at >= timeout:
                leg._inactive_reported = True
                log.info("media.leg_inactive", leg=leg.leg_id, timeout=timeout)
                if self.on_inactive is not None:
                    try:
                        self.on_inactive(leg.leg_id)
                    except Exception:
                        log.exception("media.on_inactive_failed", leg=leg.leg_id)
        if not self._closed:
            self._timer = loop.call_later(interval, self._check_inactivity, loop, interval)

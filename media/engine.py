"""asyncio RTP media engine: legs, bridges (relay or mix), media clock, players, taps, DTMF, RTCP.

Theory of operation
-------------------
Switchboard anchors media. Each call leg gets an RTP port (even) and the RTCP port above it
(RFC 3550 §11) from the configured range. Legs and bridges are addressed by id, never shared
as objects across components (DESIGN: media workers may later live in other processes).

Bridges. ``create_bridge(id)`` + ``join(id, leg)`` put legs into a bridge (a leg is in at
most one); ``bridge(a, b)`` is the shortcut for a two-party call (an *automatic* bridge that
disappears when a party leaves). Each bridge runs on one of two paths, re-chosen whenever
something about it changes (``_refresh``):

* **Fast path** (relay): exactly two legs whose formats are equal or both G.711, and nothing
  that needs PCM: no taps, no players, no injections, no mute, no per-pair audibility, no
  in-band DTMF detection. A packet that leg A receives is sent out of leg B's socket
  (``Leg.datagram`` then ``Leg.relay`` on the peer), with no per-packet object beyond what
  asyncio hands over and a few ints:

  1. Drop what is not RTP version 2 or whose header lengths do not add up (``malformed``);
     drop RTCP that arrived on the RTP port (RFC 5761 §4).
  2. Symmetric RTP (RFC 4961, the "latching" of RFC 7362): the first packet after
     ``set_remote`` latches the leg's destination to its source address; packets from other
     addresses are then dropped (``foreign``). A ``set_remote`` with another address re-arms.
  3. Classify by payload type: telephone-event PT maps to the peer's (RFC 4733 §7.1.1);
     audio in the same format is copied into a reused ``bytearray``; PCMU↔PCMA is transcoded
     with ``bytes.translate`` and a 256-byte table; anything else is dropped.
  4. ``RtpOutputStream.rewrite`` writes our per-leg SSRC and a continuous sequence number and
     timestamp in one ``struct.pack_into`` (re-based when the source changes).
  5. ``sendto`` a memoryview of the buffer (a fresh buffer if the transport had to queue).

* **Mixed path**: everything else (conferences, supervisors, transcoding to/from G.722,
  recording taps, prompts, whisper). Inbound RTP goes into the leg's ``JitterBuffer``. On
  every tick of the media clock each leg yields one frame (decoded, concealed when lost, or
  nothing), converted to the bridge rate (8 kHz, 16 kHz when a wideband leg takes part);
  ``media.mixer.mix`` gives each listener the sum of the speakers it hears minus itself plus
  its injections (or its player's audio instead); the frame is encoded with the listener's
  codec and sent on the leg's *generated* timeline (``_GEN_SOURCE``: our own sequence and
  timestamp counters advanced per tick). Switching paths calls ``RtpOutputStream.rebase`` so
  the receiver sees one continuous stream (sequence +1, timestamp advanced by elapsed time,
  marker bit) whichever path sends.

Media clock (``media.clock.MediaClock``): one ``loop.call_at`` timer on an absolute 20 ms
schedule drives every mixed bridge and every *solo* leg (not in a mixed bridge, but with a
player, injection, in-band detector, heard-tap or RFC 4733 digits to send), all in one pass
per tick. It runs only while something needs it.

DTMF. Telephone-event packets of every leg go through an ``Rfc4733Receiver`` (both paths):
one ``DtmfReceived(source="rfc4733")`` per key press, published to the subscribers. On the
fast path the packets themselves are relayed (PT mapped); on the mixed path the digit is
*regenerated* (``Leg.send_dtmf``) towards every leg that hears the speaker, once it ended.
``send_dtmf`` sends the RFC 4733 §2.5.1 schedule of ``Rfc4733Sender`` on the leg's generated
timeline, one packet per tick; audio to that leg pauses meanwhile (both would share the timestamps).
``detect_inband_dtmf`` runs a ``GoertzelDetector`` on a leg's decoded audio
(``source="inband"``). A digit also interrupts a player started with ``interrupt_digits``.

Tones (``start_tone``) on G.711 legs keep their own 20 ms schedule of pre-encoded frames
(``_tone_tick``, absolute deadlines, skip-ahead after stalls); while such a tone plays,
relayed or mixed audio towards that leg is dropped: the tone owns the stream until
``stop_tone``. On other legs (G.722) the tone is an internal player (``ToneSource``) on the
media clock, encoded like any mixed audio.

Players and injections are *frame sources* (``read()`` → 20 ms int16 frames at ``rate``, None
when finished; ``Playlist``, ``ToneSource``), resampled to the bridge rate when needed. A
player replaces (or, with ``mix=True``, adds to) what its leg hears from the bridge; an
injection always adds (whisper). Digits regenerated on the mixed path go out when the key
press ended (RFC 4733 needs the duration up front for our sender), so they lag by the
key-press length; the fast path relays the packets as they come.

RTCP (RFC 3550 §6): an ``RtcpSession`` per leg is fed every accepted RTP packet (O(1),
§A.1/§A.8 receiver statistics) and every packet sent; the housekeeping timer sends compound
SR/RR + SDES reports (§6.4, about every ``rtcp_interval`` seconds, randomised §6.3.1) from
the leg's RTCP socket to the peer's RTCP address (RTP port + 1, or what ``a=rtcp`` said,
symmetric latching as for RTP), and a BYE when the leg closes (§6.6). Received reports give
the round-trip time (§6.4.1 LSR/DLSR). ``leg_quality`` turns all that into a ``LegQuality``
with an E-model MOS (``media.quality``).

Inactivity: the housekeeping timer checks bridged legs that expect media (sendrecv or
recvonly); a leg silent for ``inactivity_timeout`` seconds is reported once through
``LegInactive``; again only after media resumed and stopped.

Events (``media.interface``): ``DtmfReceived``, ``PlaybackFinished``, ``LegInactive`` and
``LegClosed`` go to every subscriber (``subscribe``); this engine is the in-process
implementation of ``media.interface.MediaInterface``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from media.clock import MediaClock
from media.codecs import DIRECTIONS, Codec, CodecInfo, Decoder, Direction, Encoder, get_codec
from media.dtmf import DtmfPacket, DtmfReceived, GoertzelDetector, Rfc4733Receiver, Rfc4733Sender
from media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from media.interface import (
    EventHandler,
    EventHub,
    FrameSource,
    Int16Array,
    LegClosed,
    LegInactive,
    LegQuality,
    LegStats,
    MediaError,
    MediaEvent,
    PlaybackFinished,
    PortsExhausted,
    TapCallback,
    WorkerStats,
)
from media.jitter import Frame, JitterBuffer
from media.mixer import MixSpec, RateAdapter, frame_samples, mix, mix_all
from media.quality import estimate_mos
from media.rtcp import RtcpSession
from media.rtp import (
    HEADER_STRUCT,
    RTP_HEADER_SIZE,
    RtpOutputStream,
    TelephoneEvent,
    digit_to_event,
    header_length,
)
from media.tones import FRAME_SAMPLES, TONE_PLANS, ToneSource, tone_cycle

__all__ = [
    "FrameSource",
    "Leg",
    "LegClosed",
    "LegInactive",
    "LegQuality",
    "LegStats",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "PlaybackFinished",
    "PortsExhausted",
    "TapCallback",
]

log = structlog.get_logger(__name__)

FRAME_SECONDS = 0.020
_MAX_TONE_LAG_FRAMES = 5  # beyond this, skip ahead rather than burst
_BUFFER_SIZE = 2048  # larger datagrams get a one-off buffer
_TONE_SOURCE = -1  # source key of the tone in RtpOutputStream
_GEN_SOURCE = -3  # source key of mixed audio and generated DTMF
_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::"})  # RFC 3264 §8.4 old-style hold
_IPTOS_DSCP_EF = 0xB8  # RFC 3246 expedited forwarding, the usual marking for voice
_DTMF_GAP_TICKS = 3  # pause between two generated digits (RFC 4733 §2.5.1.5 spacing)
_TS = struct.Struct("!I")

# (from, to) encoding names -> translation table. G.711 only: everything else needs PCM.
_TRANSLATE: dict[tuple[str, str], bytes] = {
    ("PCMU", "PCMA"): ULAW_TO_ALAW,
    ("PCMA", "PCMU"): ALAW_TO_ULAW,
}
_STATIC_G711 = {0: "PCMU", 8: "PCMA"}
_G711 = frozenset({"PCMU", "PCMA"})


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: Leg) -> None:
        self._leg = leg

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._leg.datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._leg.stats.send_errors += 1


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: Leg) -> None:
        self._leg = leg

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._leg.rtcp_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass


class _Source:
    """A frame source attached to a leg (player or injection) and its rate adapter."""

    __slots__ = (
        "adapter",
        "id",
        "internal",
        "interrupt_digits",
        "leg_id",
        "mix",
        "on_done",
        "source",
    )

    def __init__(
        self,
        source_id: str,
        leg_id: str,
        source: FrameSource,
        *,
        mix: bool = True,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
        internal: bool = False,
    ) -> None:
        self.id = source_id
        self.internal = internal  # a tone played for start_tone: no PlaybackFinished
        self.leg_id = leg_id
        self.source = source
        self.mix = mix
        self.interrupt_digits = interrupt_digits.upper()
        self.on_done = on_done
        self.adapter: RateAdapter | None = None

    def frame(self, rate: int, samples: int) -> Int16Array | None:
        """The next frame at ``rate``; None when the source is finished."""
        pcm = self.source.read()
        if pcm is None:
            return None
        src_rate = getattr(self.source, "rate", 8000)
        if src_rate != rate:
            adapter = self.adapter
            if adapter is None or adapter.to_rate != rate or adapter.from_rate != src_rate:
                adapter = self.adapter = RateAdapter(src_rate, rate)
            pcm = adapter.process(pcm)
        if pcm.shape[0] != samples:
            pcm = _fit(pcm, samples)
        return pcm


def _fit(pcm: Int16Array, samples: int) -> Int16Array:
    out = np.zeros(samples, dtype=np.int16)
    n = min(samples, pcm.shape[0])
    out[:n] = pcm[:n]
    return out


@dataclass(slots=True)
class _Tap:
    tap_id: str
    callback: TapCallback
    bridge_id: str | None  # set for bridge taps
    leg_id: str | None  # the speaker (bridge tap) or the listener (heard tap)
    stereo: bool = False  # a heard tap that also takes what the leg says (left channel)


class Bridge:
    """Legs whose audio is exchanged (internal; others address bridges by id)."""

    __slots__ = ("auto", "bridge_id", "legs", "mixed", "phase", "rate", "spec", "taps")

    def __init__(self, bridge_id: str, *, auto: bool = False, phase: int = 0) -> None:
        self.bridge_id = bridge_id
        self.phase = phase  # which phase of the frame mixes it (MediaEngine.clock_phases)
        self.auto = auto  # created by MediaEngine.bridge(a, b): gone when a party leaves
        self.legs: dict[str, Leg] = {}
        self.spec = MixSpec()
        self.taps: dict[str, _Tap] = {}
        self.mixed = False
        self.rate = 8000


class Leg:
    """One RTP session between Switchboard and one phone (or trunk)."""

    def __init__(
        self,
        leg_id: str,
        local_host: str,
        local_port: int,
        loop: asyncio.AbstractEventLoop,
        tone_plan: str,
        engine: MediaEngine | None = None,
    ) -> None:
        self.leg_id = leg_id
        self.local_host = local_host  # address to advertise in SDP
        self.local_port = local_port
        self.local_rtcp_port = local_port + 1
        self.stats = LegStats()
        self.codec: Codec | None = None
        self.dtmf_payload_type: int | None = None
        self.direction: Direction = "sendrecv"
        self.muted_inbound = False
        self.muted_outbound = False
        self._engine = engine
        self.loop = loop
        self._tone_plan = tone_plan
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._queued: Callable[[], int] | None = None
        self._sdp_addr: tuple[str, int] | None = None
        self._latched: Any = None
        self._dest: Any = None  # where we send, None when we must not send
        self._rtcp_sdp: tuple[str, int] | None = None
        self._rtcp_latched: Any = None
        self.codec_name = ""
        self.codec_pt = -1
        self.peer: Leg | None = None  # fast-path relay target
        self.current_bridge: Bridge | None = None
        self.clock_phase = 0  # phase of the frame in which the clock ticks this leg when solo
        self.out = RtpOutputStream(
            ssrc=secrets.randbits(32),
            initial_sequence=secrets.randbits(16),
            initial_timestamp=secrets.randbits(32),
        )
        self._buf = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self.activity_at = loop.time()
        self.inactive_reported = False
        self._expects_rtp = True
        self.tone_kind: str | None = None
        self._tone_handle: asyncio.TimerHandle | None = None
        self.tone_player: str | None = None  # tones on non-G.711 legs play through the mixer
        self._tone_t0 = 0.0
        self._tone_index = 0
        self._tone_seq = 0
        self.closed = False
        # Mixed path: codec state, jitter buffer, rate adapters, generated timeline.
        self._info: CodecInfo | None = None
        self._decoder: Decoder | None = None
        self._encoder: Encoder | None = None
        self._jb: JitterBuffer | None = None
        self.jb_active = False
        self._pcm_samples = FRAME_SAMPLES
        self._ts_step = FRAME_SAMPLES
        self._in_adapter: RateAdapter | None = None
        self._out_adapter: RateAdapter | None = None
        self._gen_seq = secrets.randbits(16)
        self._gen_ts = secrets.randbits(32)
        self.player: _Source | None = None
        self.injections: dict[str, _Source] = {}
        self.heard_taps: dict[str, _Tap] = {}
        # What the leg said this tick, kept for its stereo taps (None: silence).
        self.said_wanted = False
        self.said: Int16Array | None = None
        self.detector: GoertzelDetector | None = None
        # RFC 4733 in and out.
        self._dtmf_rx = Rfc4733Receiver(leg_id)
        self._dtmf_poll: asyncio.TimerHandle | None = None
        self.dtmf_queue: deque[tuple[str, int]] = deque()
        self._dtmf_packets: list[DtmfPacket] | None = None
        self._dtmf_index = 0
        self._dtmf_elapsed = 0
        self._dtmf_ts = 0
        self._dtmf_gap = 0
        self._rtcp = RtcpSession(
            self.out.ssrc,
            f"{leg_id}@switchboard",
            leg_id=leg_id,
            now=loop.time(),
            interval=engine.rtcp_interval if engine is not None else 5.0,
            wallclock_offset=time.time() - loop.time(),
        )
        self._rtcp_rx = self._rtcp.receiver
        self._last_sent_at: float | None = None
        self._reported_packets = 0

    def __repr__(self) -> str:
        return f"<Leg {self.leg_id} {self.local_host}:{self.local_port} dest={self._dest}>"

    # --- public API -----------------------------------------------------------------------

    @property
    def ssrc(self) -> int:
        """SSRC of the stream this leg sends."""
        return self.out.ssrc

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
    def bridge_id(self) -> str | None:
        """Id of the bridge this leg is in, if any."""
        return None if self.current_bridge is None else self.current_bridge.bridge_id

    @property
    def bridged_to(self) -> str | None:
        """Id of the other leg when this leg is in a two-party bridge."""
        bridge = self.current_bridge
        if bridge is None or len(bridge.legs) != 2:
            return None
        return next(leg_id for leg_id in bridge.legs if leg_id != self.leg_id)

    @property
    def mixed(self) -> bool:
        """True when this leg's audio goes through the mixer (not the fast relay)."""
        return self.jb_active

    @property
    def tone_playing(self) -> str | None:
        """Kind of the tone being played, if any."""
        return self.tone_kind

    def set_remote(
        self,
        host: str,
        port: int,
        codec: Codec,
        dtmf_payload_type: int | None,
        *,
        direction: Direction = "sendrecv",
        rtcp_address: tuple[str, int] | None = None,
    ) -> None:
        """Apply the phone's SDP (initial or re-INVITE).

        ``direction`` is *our* direction on this leg as negotiated (what ``negotiate_answer``
        / ``parse_answer`` return): we send only for sendrecv/sendonly and expect media
        (for the inactivity check) only for sendrecv/recvonly. ``host`` 0.0.0.0 means the
        phone wants no media (RFC 3264 §8.4): nothing is sent. ``rtcp_address`` is the
        phone's ``a=rtcp`` (RFC 3605); by default RTCP goes to the RTP port + 1.
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
            self._rtcp_latched = None
        self._sdp_addr = addr
        self._rtcp_sdp = rtcp_address if rtcp_address is not None else (host, port + 1)
        clock_changed = self.codec is None or codec.clock_rate != self.codec.clock_rate
        if clock_changed:
            self.out.set_clock_rate(codec.clock_rate)
        format_changed = self.codec is None or not codec.same_format(self.codec)
        self.codec = codec
        self.codec_name = codec.name.upper()
        self.codec_pt = codec.payload_type
        self.dtmf_payload_type = dtmf_payload_type
        if format_changed:
            self._setup_codec(codec)
        if clock_changed:
            self._dtmf_rx = Rfc4733Receiver(self.leg_id, codec.clock_rate)
            self._rtcp.clock_rate = codec.clock_rate
            self._rtcp.sender.clock_rate = codec.clock_rate
            self._rtcp.receiver.clock_rate = codec.clock_rate
        if direction != self.direction:
            self.activity_at = self.loop.time()
            self.inactive_reported = False
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
        if format_changed and self._engine is not None:
            self._engine.refresh_leg(self)

    def start_tone(self, kind: str = "ringback") -> None:
        """Play a call-progress tone to this leg's phone until ``stop_tone``."""
        if kind not in TONE_PLANS[self._tone_plan]:
            raise ValueError(f"unknown tone {kind!r} in plan {self._tone_plan!r}")
        if self.closed:
            raise MediaError(f"leg {self.leg_id} is closed")
        self.stop_tone()
        self.tone_kind = kind
        engine = self._engine
        if self.codec_name not in _G711 and self._encoder is not None and engine is not None:
            # Not G.711 (e.g. G.722): no pre-encoded cycle, so the mixer plays the tone
            # as PCM on the media clock, encoded like any other audio for this leg.
            source = ToneSource(kind, self._tone_plan, self.pcm_rate)
            self.tone_player = engine.play_on_leg(self, source, internal=True)
            log.debug("media.tone_started", leg=self.leg_id, kind=kind)
            return
        self.out.rebase()
        self._tone_t0 = self.loop.time()
        self._tone_index = 0
        self._tone_handle = self.loop.call_at(self._tone_t0, self._tone_tick)
        log.debug("media.tone_started", leg=self.leg_id, kind=kind)

    def stop_tone(self) -> None:
        """Stop the tone; relayed audio (if bridged) takes over with a re-based stream."""
        if self._tone_handle is not None:
            self._tone_handle.cancel()
            self._tone_handle = None
        if self.tone_player is not None:
            player, self.tone_player = self.tone_player, None
            if self._engine is not None:
                self._engine.stop_play(player)
        if self.tone_kind is not None:
            log.debug("media.tone_stopped", leg=self.leg_id, kind=self.tone_kind)
            self.out.rebase()
        self.tone_kind = None

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send one digit as RFC 4733 events (§2.5.1), paced on the media clock.

        Digits queue up and are sent one after another. Raises ``MediaError`` when the leg
        negotiated no telephone-event payload type.
        """
        digit_to_event(digit)  # ValueError for anything but 0-9 * # A-D
        if duration_ms <= 0:
            raise ValueError(f"DTMF duration must be positive, got {duration_ms}")
        if self.dtmf_payload_type is None:
            raise MediaError(f"leg {self.leg_id} negotiated no telephone-event payload type")
        if self.closed:
            raise MediaError(f"leg {self.leg_id} is closed")
        self.dtmf_queue.append((digit, duration_ms))
        if self._engine is not None:
            self._engine.refresh_leg(self)

    def quality(self) -> LegQuality:
        """Reception statistics of the incoming stream and an E-model MOS."""
        return quality_of(self.quality_inputs())

    def quality_inputs(self) -> QualityInputs:
        """What ``quality`` is computed from (cheap: no MOS estimate yet)."""
        rx = self._rtcp.receiver
        remote = self._rtcp.remote
        return (
            rx.received,
            max(0, rx.lost),
            rx.loss_fraction,
            rx.jitter_ms,
            remote.rtt_ms if remote is not None else None,
            remote.fraction_lost if remote is not None else None,
            self.codec_name or "PCMU",
        )

    def housekeeping(self, now: float, inactivity_timeout: float) -> bool:
        """Send an RTCP report when due; True when the leg just became inactive (bridged,
        expecting media, silent for ``inactivity_timeout``; reported once per silence)."""
        if self._rtcp.report_due(now):
            try:
                self._send_rtcp_report(now)
            except Exception:
                log.exception("media.rtcp_send_failed", leg=self.leg_id)
        if self.current_bridge is None or not self._expects_rtp or self.inactive_reported:
            return False
        if now - self.activity_at < inactivity_timeout:
            return False
        self.inactive_reported = True
        return True

    # --- internals: setup -----------------------------------------------------------------

    def _setup_codec(self, codec: Codec) -> None:
        info = get_codec(codec.name, codec.clock_rate)
        self._info = info
        if info is None:
            self._decoder = self._encoder = None
            self._jb = None
            return
        self._decoder = info.new_decoder()
        self._encoder = info.new_encoder()
        self._jb = JitterBuffer(codec.clock_rate)
        self._pcm_samples = info.frame_samples()
        self._ts_step = info.timestamp_increment()
        self._in_adapter = self._out_adapter = None
        if self.detector is not None:
            self.detector = GoertzelDetector(info.sample_rate, leg_id=self.leg_id)

    @property
    def pcm_rate(self) -> int:
        return self._info.sample_rate if self._info is not None else 8000

    @property
    def dtmf_busy(self) -> bool:
        return self._dtmf_packets is not None or bool(self.dtmf_queue)

    def needs_pcm(self) -> bool:
        """True when this leg alone forces its bridge onto the mixed path."""
        return (
            self.player is not None
            or bool(self.injections)
            or bool(self.heard_taps)
            or self.detector is not None
            or self.muted_inbound
            or self.muted_outbound
        )

    def set_jb_active(self, active: bool) -> None:
        if active == self.jb_active:
            return
        self.jb_active = active
        self.out.rebase()  # whichever path sends next continues the stream (RFC 3550 §5.1)
        if active:
            if self._jb is not None:
                self._jb.reset()
            if self._decoder is not None:
                self._decoder.reset()
            self._in_adapter = self._out_adapter = None

    def attach(
        self, transport: asyncio.DatagramTransport, rtcp_transport: asyncio.DatagramTransport
    ) -> None:
        self._transport = transport
        self._rtcp_transport = rtcp_transport
        # Not in typeshed's DatagramTransport, but both asyncio's and uvloop's have it.
        self._queued = getattr(transport, "get_write_buffer_size", None)

    def close_sockets(self) -> None:
        self.stop_tone()
        self.closed = True
        if self._dtmf_poll is not None:
            self._dtmf_poll.cancel()
            self._dtmf_poll = None
        rtcp_dest = self._rtcp_destination()
        if self._rtcp_transport is not None and rtcp_dest is not None:
            with contextlib.suppress(Exception):  # RFC 3550 §6.6 BYE, best effort
                self._sync_sender()
                self._rtcp_transport.sendto(self._rtcp.build_bye(self.loop.time()), rtcp_dest)
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

    def _rtcp_destination(self) -> Any:
        if self._dest is None and self.direction not in ("recvonly", "inactive"):
            return None
        if self._rtcp_latched is not None:
            return self._rtcp_latched
        sdp = self._rtcp_sdp
        if sdp is None or sdp[0] in _UNSPECIFIED_HOSTS or sdp[1] == 0:
            return None
        return sdp

    # --- internals: receiving -------------------------------------------------------------

    def datagram(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        n = len(data)
        if n < RTP_HEADER_SIZE:
            stats.malformed += 1
            return
        hl = RTP_HEADER_SIZE
        if data[0] != 0x80:  # anything but plain v2 without CSRC/extension/padding
            try:
                hl = header_length(data)
            except ValueError:
                stats.malformed += 1
                return
        b0, b1, seq, ts, ssrc = HEADER_STRUCT.unpack_from(data)
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
        now = self.loop.time()
        stats.packets_in += 1
        stats.bytes_in += n
        stats.last_packet_at = now
        self.activity_at = now
        self.inactive_reported = False
        rx = self._rtcp_rx  # RFC 3550 §A.1/§A.8 statistics, a few integer operations
        if ssrc != rx.ssrc:
            rx.reset(ssrc)
        rx.update(seq, ts, now)
        if pt == self.dtmf_payload_type:
            self._event_packet(data, hl, ts, b1 & 0x80, now)
        peer = self.peer
        if peer is not None:
            peer.relay(data, n, pt, b1 & 0x80, self, now, seq, ts, ssrc)
            return
        if self.jb_active and pt == self.codec_pt and self._jb is not None:
            end = n - data[n - 1] if b0 & 0x20 else n
            self._jb.put(seq, ts, data[hl:end], now, marker=bool(b1 & 0x80), ssrc=ssrc)
            return
        if pt != self.dtmf_payload_type:
            stats.dropped += 1

    def _event_packet(self, data: bytes, hl: int, ts: int, marker: int, now: float) -> None:
        try:
            event = TelephoneEvent.parse(data[hl:])
        except ValueError:
            return
        got = self._dtmf_rx.feed(event, ts, marker != 0, now)
        if got is not None:
            self._digit(got)
        self._arm_dtmf_poll()

    def _arm_dtmf_poll(self) -> None:
        deadline = self._dtmf_rx.next_deadline()
        if deadline is None or self._dtmf_poll is not None or self.closed:
            return
        self._dtmf_poll = self.loop.call_at(deadline + 0.001, self._poll_dtmf)

    def _poll_dtmf(self) -> None:
        self._dtmf_poll = None
        got = self._dtmf_rx.poll(self.loop.time())
        if got is not None:
            self._digit(got)
        self._arm_dtmf_poll()

    def _digit(self, event: DtmfReceived) -> None:
        self.stats.dtmf_in += 1
        if self._engine is not None:
            self._engine.digit_received(self, event)

    def rtcp_datagram(self, data: bytes, addr: Any) -> None:
        self.stats.rtcp_in += 1
        if self._rtcp_latched is None and self._rtcp_sdp is not None:
            self._rtcp_latched = addr  # symmetric RTCP, as for RTP (RFC 4961)
        elif self._rtcp_latched is not None and addr != self._rtcp_latched:
            return
        try:
            self._rtcp.receive(data, self.loop.time())
        except ValueError:
            self.stats.malformed += 1

    def _send_rtcp_report(self, now: float) -> None:
        dest = self._rtcp_destination()
        transport = self._rtcp_transport
        if dest is None or transport is None:
            return
        self._sync_sender()
        transport.sendto(self._rtcp.build_report(now), dest)
        self.stats.rtcp_out += 1

    def _sync_sender(self) -> None:
        """Bring the RFC 3550 §6.4.1 sender info up to date from the per-packet counters.

        Cheaper than accounting every sent packet in ``RtcpSession``: the relay hot path only
        counts, and the last packet's timestamp is still in the send buffer.
        """
        stats = self.stats
        if stats.packets_out == self._reported_packets or self._last_sent_at is None:
            return
        self._reported_packets = stats.packets_out
        self._rtcp.on_rtp_sent(0, _TS.unpack_from(self._buf, 4)[0], self._last_sent_at)
        sender = self._rtcp.sender
        sender.packet_count = stats.packets_out & 0xFFFFFFFF
        # Payload octets (§6.4.1): headers of what we send are 12 octets but for rare
        # relayed packets with CSRCs or extensions.
        sender.octet_count = (stats.bytes_out - RTP_HEADER_SIZE * stats.packets_out) & 0xFFFFFFFF

    # --- internals: fast path -------------------------------------------------------------

    def relay(
        self,
        data: bytes,
        n: int,
        pt: int,
        marker: int,
        src: Leg,
        now: float,
        seq: int,
        ts: int,
        ssrc: int,
    ) -> None:
        """Send a packet that ``src`` received out of this leg."""
        dest = self._dest
        if (
            dest is None
            or self.codec_pt < 0
            or self._tone_handle is not None
            or self._dtmf_packets is not None
        ):
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
            if pt == src.codec_pt:
                name = src.codec_name
            else:
                # The phone may switch to another format it offered; G.711 is recognisable
                # by its static payload type (RFC 3551 §6).
                static = _STATIC_G711.get(pt)
                if static is None:
                    src.stats.dropped += 1
                    return
                name = static
            if name != self.codec_name:
                table = _TRANSLATE.get((name, self.codec_name))
                if table is None:
                    src.stats.dropped += 1
                    return
            out_pt = self.codec_pt
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
        self.out.rewrite(buf, ssrc, seq, ts, out_pt, marker != 0, now)
        self._send(buf, view, n, dest, now)

    def _send(self, buf: bytearray, view: memoryview, n: int, dest: Any, now: float) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.sendto(view[:n], dest)
        stats = self.stats
        stats.packets_out += 1
        stats.bytes_out += n
        self._last_sent_at = now  # the SR sender info is filled in lazily (_sync_sender)
        queued = self._queued
        if queued is not None and queued() and buf is self._buf:
            # The datagram was queued and the transport may still point into our buffer
            # (uvloop keeps the buffer exported until sent): never overwrite it.
            self._buf = bytearray(_BUFFER_SIZE)
            self._view = memoryview(self._buf)

    # --- internals: mixed path ------------------------------------------------------------

    def pull(self, now: float) -> Int16Array | None:
        """Decoded inbound frame for this tick at the leg's sample rate (None: silence)."""
        jb = self._jb
        decoder = self._decoder
        if jb is None or decoder is None:
            return None
        item = jb.get(now)
        if item is None:
            return None
        n = self._pcm_samples
        if type(item) is Frame:
            try:
                pcm = decoder.decode(item.payload)
            except ValueError:
                pcm = decoder.conceal(n)
        else:
            pcm = decoder.conceal(n)  # RFC 3550 loss: the codec's PLC fills the gap
        if pcm.shape[0] != n:
            pcm = _fit(pcm, n)
        detector = self.detector
        if detector is not None:
            for event in detector.feed(pcm, now):
                self._digit(event)
        return pcm

    def _stereo(self, heard: Int16Array) -> Int16Array:
        """Interleaved stereo: what the leg said this tick (left), what it hears (right)."""
        n = heard.shape[0]
        out = np.zeros(2 * n, dtype=np.int16)
        out[1::2] = heard
        said = self.said
        if said is not None:
            out[0::2] = said if said.shape[0] == n else _fit(said, n)
        return out

    def pcm_at_rate(self, pcm: Int16Array, rate: int) -> Int16Array:
        src = self.pcm_rate
        if src == rate:
            return pcm
        adapter = self._in_adapter
        if adapter is None or adapter.to_rate != rate or adapter.from_rate != src:
            adapter = self._in_adapter = RateAdapter(src, rate)
        return adapter.process(pcm)

    def emit_frame(self, pcm: Int16Array, rate: int, now: float) -> None:
        """Send what this leg hears this tick (``pcm`` at ``rate``)."""
        if self.heard_taps:
            for tap in self.heard_taps.values():
                _call_tap(tap, self._stereo(pcm) if tap.stereo else pcm, rate)
            self.said = None
        if self.dtmf_tick(now):
            return
        dest = self._dest
        encoder = self._encoder
        if dest is None or encoder is None or self._tone_handle is not None:
            return
        own = self.pcm_rate
        if own != rate:
            adapter = self._out_adapter
            if adapter is None or adapter.from_rate != rate or adapter.to_rate != own:
                adapter = self._out_adapter = RateAdapter(rate, own)
            pcm = adapter.process(pcm)
        payload = encoder.encode(pcm)
        self._send_generated(payload, self._gen_ts, self.codec_pt, False, now)

    def _send_generated(self, payload: bytes, ts: int, pt: int, marker: bool, now: float) -> None:
        buf = self._buf
        n = RTP_HEADER_SIZE + len(payload)
        view = self._view
        if n > len(buf):
            buf = bytearray(n)
            view = memoryview(buf)
        buf[0] = 0x80
        buf[RTP_HEADER_SIZE:n] = payload
        self.out.rewrite(buf, _GEN_SOURCE, self._gen_seq, ts, pt, marker, now)
        self._gen_seq = (self._gen_seq + 1) & 0xFFFF
        self._send(buf, view, n, self._dest, now)

    def dtmf_tick(self, now: float) -> bool:
        """Send this tick's RFC 4733 packet if a digit is being sent; True if one was."""
        packets = self._dtmf_packets
        if packets is None:
            if not self.dtmf_queue or self.dtmf_payload_type is None:
                return False
            if self._dtmf_gap > 0:
                self._dtmf_gap -= 1
                return False
            digit, duration = self.dtmf_queue.popleft()
            sender = Rfc4733Sender(self.dtmf_payload_type, self.out.clock_rate)
            packets = self._dtmf_packets = list(sender.packets(digit, duration))
            self._dtmf_index = 0
            self._dtmf_elapsed = 0
            self._dtmf_ts = self._gen_ts  # RFC 4733 §2.3.1: the event's start instant
        pt = self.dtmf_payload_type
        while (
            pt is not None
            and self._dtmf_index < len(packets)
            and packets[self._dtmf_index].send_offset_ms <= self._dtmf_elapsed
        ):
            packet = packets[self._dtmf_index]
            self._dtmf_index += 1
            if self._dest is not None:
                ts = (self._dtmf_ts + packet.timestamp_offset) & 0xFFFFFFFF
                self._send_generated(packet.payload, ts, pt, packet.marker, now)
        self._dtmf_elapsed += 20
        if self._dtmf_index >= len(packets) or pt is None:
            self._dtmf_packets = None
            self._dtmf_gap = _DTMF_GAP_TICKS
        return True

    def advance(self) -> None:
        self._gen_ts = (self._gen_ts + self._ts_step) & 0xFFFFFFFF

    # --- internals: tones -----------------------------------------------------------------

    def _tone_tick(self) -> None:
        kind = self.tone_kind
        if kind is None or self.closed:
            return
        now = self.loop.time()
        index = self._tone_index
        lag = int((now - (self._tone_t0 + index * FRAME_SECONDS)) / FRAME_SECONDS)
        if lag > _MAX_TONE_LAG_FRAMES:
            index += lag  # the loop stalled: skip ahead, timestamps show the gap
        self._send_tone_frame(kind, index, now)
        index += 1
        self._tone_index = index
        self._tone_handle = self.loop.call_at(
            self._tone_t0 + index * FRAME_SECONDS, self._tone_tick
        )

    def _send_tone_frame(self, kind: str, index: int, now: float) -> None:
        dest = self._dest
        name = self.codec_name
        if dest is None or name not in _G711:
            return
        cycle = tone_cycle(kind, name, self._tone_plan)
        offset = (index * FRAME_SAMPLES) % len(cycle)
        buf = self._buf
        buf[0] = 0x80
        end = RTP_HEADER_SIZE + FRAME_SAMPLES
        buf[RTP_HEADER_SIZE:end] = cycle[offset : offset + FRAME_SAMPLES]
        self.out.rewrite(
            buf, _TONE_SOURCE, self._tone_seq, index * FRAME_SAMPLES, self.codec_pt, False, now
        )
        self._tone_seq = (self._tone_seq + 1) & 0xFFFF
        self._send(buf, self._view, end, dest, now)


def _call_tap(tap: _Tap, pcm: Int16Array, rate: int) -> None:
    try:
        tap.callback(pcm, rate)
    except Exception:
        log.exception("media.tap_failed", tap=tap.tap_id)


# (received, lost, loss fraction, jitter ms, rtt ms, remote loss fraction, codec name)
QualityInputs = tuple[int, int, float, float, float | None, float | None, str]


def quality_of(inputs: QualityInputs) -> LegQuality:
    """``LegQuality`` with the E-model MOS (``media.quality``) of what a leg measured."""
    received, lost, loss, jitter, rtt, remote_loss, name = inputs
    try:
        mos = estimate_mos(name, loss, jitter, rtt or 0.0)
    except ValueError:  # a codec the E-model table lacks: rate it as G.711
        mos = estimate_mos("PCMU", loss, jitter, rtt or 0.0)
    return LegQuality(received, lost, loss, jitter, rtt, mos, remote_loss)


def _inactive_only(on_inactive: Callable[[str], None]) -> EventHandler:
    def handler(event: MediaEvent) -> None:
        if isinstance(event, LegInactive):
            on_inactive(event.leg_id)

    return handler


def _fast_compatible(a: Leg, b: Leg) -> bool:
    if a.codec is None or b.codec is None:
        return True  # nothing to send yet; re-checked when set_remote gives the format
    if a.codec.same_format(b.codec):
        return True
    return a.codec_name in _G711 and b.codec_name in _G711


class MediaEngine:
    """Allocates legs on a port range; relays or mixes RTP between the legs of bridges."""

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        *,
        inactivity_timeout: float = 60.0,
        on_inactive: Callable[[str], None] | None = None,
        on_event: EventHandler | None = None,
        tone_plan: str = "us",
        rtcp_interval: float = 5.0,
        clock_phases: int = 1,
    ) -> None:
        first = port_min + (port_min & 1)  # RFC 3550 §11: RTP on an even port
        if port_min < 1 or port_max > 65535 or first + 1 > port_max:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        if inactivity_timeout <= 0:
            raise ValueError("inactivity_timeout must be positive")
        if rtcp_interval <= 0:
            raise ValueError("rtcp_interval must be positive")
        if clock_phases not in (1, 2, 4, 5):
            raise ValueError("clock_phases must be 1, 2, 4 or 5 (a divisor of the 20 ms frame)")
        if tone_plan not in TONE_PLANS:
            raise ValueError(f"unknown tone plan {tone_plan!r}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.inactivity_timeout = inactivity_timeout
        self._events = EventHub()
        # The constructor callbacks are subscriptions like any other (kept for callers that
        # build an engine for one listener, e.g. the media worker and tests).
        if on_event is not None:
            self._events.subscribe(on_event)
        if on_inactive is not None:
            self._events.subscribe(_inactive_only(on_inactive))
        self.tone_plan = tone_plan
        self.rtcp_interval = rtcp_interval
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._ports = range(first, port_max, 2)  # p and p + 1 both <= port_max
        self._cursor = 0
        self._legs: dict[str, Leg] = {}
        # RTP ports of open legs, kept with _legs so that allocation does not rebuild a set
        # of every leg's port per call (that was O(legs) per create_leg under load).
        self._ports_in_use: set[int] = set()
        self._bridges: dict[str, Bridge] = {}
        self._mixing: dict[str, Bridge] = {}  # bridges on the mixed path
        self._solo: dict[str, Leg] = {}  # legs ticked on their own
        self._sources: dict[str, _Source] = {}  # players and injections by id
        self._taps: dict[str, _Tap] = {}
        self._ids = itertools.count(1)
        # With clock_phases > 1 the clock ticks every 20 ms / phases and each bridge (and solo
        # leg) is mixed in one phase only, still every 20 ms: the work of a frame is spread
        # over it instead of one burst that delays relayed packets and bunches output.
        self.clock_phases = clock_phases
        self._phase_of = itertools.count()
        self._clock: MediaClock | None = None
        self._finished: list[_Source] = []
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._legs

    async def start(self) -> None:
        """Nothing to start in process: ports are bound per leg, timers armed on demand."""

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Publish every ``MediaEvent`` to ``handler``; returns the unsubscribe callable."""
        return self._events.subscribe(handler)

    def worker_stats(self) -> WorkerStats:
        """Counters of this engine and the process it runs in."""
        clock = self._clock
        packets_in = packets_out = 0
        for leg in self._legs.values():
            packets_in += leg.stats.packets_in
            packets_out += leg.stats.packets_out
        return WorkerStats(
            worker=0,
            pid=os.getpid(),
            legs=len(self._legs),
            cpu_seconds=time.process_time(),
            clock_ticks=clock.ticks if clock is not None else 0,
            clock_skipped=clock.skipped if clock is not None else 0,
            packets_in=packets_in,
            packets_out=packets_out,
        )

    async def stats(self) -> list[WorkerStats]:
        """One entry: the main process, which runs this engine."""
        return [self.worker_stats()]

    def leg_ids(self) -> tuple[str, ...]:
        """Ids of the open legs."""
        return tuple(self._legs)

    def leg_snapshots(self) -> list[tuple[str, tuple[Any, ...], QualityInputs]]:
        """Every leg's counters (``LegStats`` fields in order) and quality inputs, as plain
        tuples: what a media worker reports to the main process several times a second."""
        fields = LegStats.__slots__
        return [
            (leg_id, tuple(getattr(leg.stats, name) for name in fields), leg.quality_inputs())
            for leg_id, leg in self._legs.items()
        ]

    @property
    def clock(self) -> MediaClock | None:
        """The media clock (None before the first leg); ``ticks``/``skipped`` for metrics."""
        return self._clock

    # --- legs -------------------------------------------------------------------------------

    async def create_leg(
        self, leg_id: str, advertise_host: str | None = None, *, near: str | None = None
    ) -> Leg:
        """Bind an RTP/RTCP port pair for a new leg.

        ``advertise_host`` is the address to put in SDP when the bind host is a wildcard or
        a private address behind 1:1 NAT. ``near`` is the placement hint of the media
        interface (one process here: every leg is near every other). Raises
        ``PortsExhausted`` when no pair is free.
        """
        if self.closed:
            raise MediaError("media engine is closed")
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = MediaClock(loop, self._tick, FRAME_SECONDS / self.clock_phases)
        self._arm_timer(loop)
        for port in self._candidate_ports():
            socks = self._bind_pair(port)
            if socks is None:
                continue
            leg = await self._open_leg(loop, leg_id, advertise_host or self.host, port, *socks)
            if leg_id in self._legs or self.closed:  # lost a race while awaiting
                leg.close_sockets()
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
        """Leave its bridge, stop players, tones and taps, release the ports. Idempotent."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        self._ports_in_use.discard(leg.local_port)
        if leg.current_bridge is not None:
            self._leave(leg.current_bridge, leg)
        for source in [leg.player, *leg.injections.values()]:
            if source is not None:
                self._end_source(source, stopped=True)
        for tap_id in list(leg.heard_taps):
            self._taps.pop(tap_id, None)
        leg.heard_taps.clear()
        self._solo.pop(leg_id, None)
        leg.close_sockets()
        self._update_clock()
        self._events.publish(LegClosed(leg_id))
        log.debug(
            "media.leg_closed",
            leg=leg_id,
            port=leg.local_port,
            packets_in=leg.stats.packets_in,
            packets_out=leg.stats.packets_out,
            malformed=leg.stats.malformed,
            dropped=leg.stats.dropped,
        )

    def leg_quality(self, leg_id: str) -> LegQuality:
        """Reception statistics of the leg's incoming stream and an E-model MOS."""
        return self.get_leg(leg_id).quality()

    def leg_address(self, leg_id: str) -> Leg:
        """The leg (a ``LegAddress``: its local host and ports)."""
        return self.get_leg(leg_id)

    def leg_stats(self, leg_id: str) -> LegStats:
        """A copy of the leg's counters (the live ones keep counting)."""
        stats = self.get_leg(leg_id).stats
        return LegStats(*(getattr(stats, name) for name in LegStats.__slots__))

    def set_remote(
        self,
        leg_id: str,
        host: str,
        port: int,
        codec: Codec,
        dtmf_payload_type: int | None,
        *,
        direction: Direction = "sendrecv",
        rtcp_address: tuple[str, int] | None = None,
    ) -> None:
        """``Leg.set_remote`` of the leg: apply the phone's SDP."""
        self.get_leg(leg_id).set_remote(
            host, port, codec, dtmf_payload_type, direction=direction, rtcp_address=rtcp_address
        )

    def start_tone(self, leg_id: str, kind: str = "ringback") -> None:
        """``Leg.start_tone``: a call-progress tone until ``stop_tone``."""
        self.get_leg(leg_id).start_tone(kind)

    def stop_tone(self, leg_id: str) -> None:
        """``Leg.stop_tone``."""
        self.get_leg(leg_id).stop_tone()

    def send_dtmf(self, leg_id: str, digit: str, duration_ms: int = 100) -> None:
        """``Leg.send_dtmf``: one RFC 4733 digit towards the leg's phone."""
        self.get_leg(leg_id).send_dtmf(digit, duration_ms)

    def bridge_of(self, leg_id: str) -> str | None:
        """Id of the bridge the leg is in (None: none, or no such leg)."""
        leg = self._legs.get(leg_id)
        return None if leg is None else leg.bridge_id

    # --- bridges ----------------------------------------------------------------------------

    def create_bridge(self, bridge_id: str, *, near: str | None = None) -> None:
        """A new, empty bridge (a conference room); ``ValueError`` if the id is taken.
        ``near`` is the interface's placement hint (meaningless in one process)."""
        if bridge_id in self._bridges:
            raise ValueError(f"bridge {bridge_id!r} already exists")
        self._bridges[bridge_id] = Bridge(bridge_id, phase=self._next_phase())
        log.debug("media.bridge_created", bridge=bridge_id)

    def destroy_bridge(self, bridge_id: str) -> None:
        """Remove every leg from the bridge and drop it and its taps. Idempotent."""
        bridge = self._bridges.pop(bridge_id, None)
        if bridge is None:
            return
        for tap_id in list(bridge.taps):
            self._taps.pop(tap_id, None)
        bridge.taps.clear()
        for leg in list(bridge.legs.values()):
            bridge.legs.pop(leg.leg_id)
            leg.current_bridge = None
            leg.peer = None
            self._refresh_solo(leg)
        self._mixing.pop(bridge_id, None)
        self._update_clock()
        log.debug("media.bridge_destroyed", bridge=bridge_id)

    def bridge_legs(self, bridge_id: str) -> tuple[str, ...]:
        """Ids of the legs in a bridge, in joining order."""
        return tuple(self._get_bridge(bridge_id).legs)

    def bridge_is_mixed(self, bridge_id: str) -> bool:
        """True when the bridge runs on the mixed path (False: fast relay)."""
        return self._get_bridge(bridge_id).mixed

    def join(self, bridge_id: str, leg_id: str) -> None:
        """Put a leg into a bridge (leaving the one it was in)."""
        bridge = self._get_bridge(bridge_id)
        leg = self.get_leg(leg_id)
        if leg.current_bridge is bridge:
            return
        if leg.current_bridge is not None:
            self._leave(leg.current_bridge, leg)
        bridge.legs[leg_id] = leg
        leg.current_bridge = bridge
        leg.activity_at = leg.loop.time()
        leg.inactive_reported = False
        leg.out.rebase()
        self._solo.pop(leg_id, None)
        self._refresh(bridge)
        log.debug("media.joined", bridge=bridge_id, leg=leg_id)

    def leave(self, bridge_id: str, leg_id: str) -> None:
        """Take a leg out of a bridge (no-op if it is not in it)."""
        bridge = self._get_bridge(bridge_id)
        leg = self._legs.get(leg_id)
        if leg is not None and leg.current_bridge is bridge:
            self._leave(bridge, leg)

    def bridge(self, leg_a: str, leg_b: str, *, bridge_id: str | None = None) -> str:
        """Connect two legs both ways (each leaves its bridge first); returns the bridge id.

        ``bridge_id`` names the new bridge (the worker pool allocates ids in the main
        process); by default one is made up from the leg ids.
        """
        if leg_a == leg_b:
            raise ValueError("cannot bridge a leg to itself")
        current = self.get_leg(leg_a).bridge_id
        if (
            current is not None
            and current == self.get_leg(leg_b).bridge_id
            and len(self._bridges[current].legs) == 2
        ):
            return current
        if bridge_id is None:
            bridge_id = f"~{leg_a}~{leg_b}"
            while bridge_id in self._bridges:
                bridge_id = f"~{leg_a}~{leg_b}~{next(self._ids)}"
        elif bridge_id in self._bridges:
            raise ValueError(f"bridge {bridge_id!r} already exists")
        self._bridges[bridge_id] = Bridge(bridge_id, auto=True, phase=self._next_phase())
        self.join(bridge_id, leg_a)
        self.join(bridge_id, leg_b)
        log.debug("media.bridged", leg_a=leg_a, leg_b=leg_b, bridge=bridge_id)
        return bridge_id

    def unbridge(self, leg_id: str) -> None:
        """Take the leg out of its bridge (a two-party bridge from ``bridge`` goes away)."""
        leg = self.get_leg(leg_id)
        if leg.current_bridge is not None:
            self._leave(leg.current_bridge, leg)

    def set_hears(self, bridge_id: str, listener: str, speaker: str, audible: bool) -> None:
        """Whether ``listener`` hears ``speaker`` in this bridge (default: yes).

        Supervision: *listen* = nobody hears the supervisor; *whisper* = only the agent
        does; *barge* = everybody hears everybody (all pairs audible again).
        """
        bridge = self._get_bridge(bridge_id)
        for leg_id in (listener, speaker):
            if leg_id not in bridge.legs:
                raise KeyError(f"leg {leg_id!r} is not in bridge {bridge_id!r}")
        if audible:
            bridge.spec.deaf.discard((listener, speaker))
        else:
            bridge.spec.deaf.add((listener, speaker))
        self._refresh(bridge)

    def mute(
        self, leg_id: str, *, inbound: bool | None = None, outbound: bool | None = None
    ) -> None:
        """Inbound mute: what the leg says goes nowhere; outbound: it hears nothing from the
        bridge (players and injections still play). ``None`` leaves a direction as it is."""
        leg = self.get_leg(leg_id)
        if inbound is not None:
            leg.muted_inbound = inbound
        if outbound is not None:
            leg.muted_outbound = outbound
        self.refresh_leg(leg)

    # --- taps, injection, players, detection -----------------------------------------------

    def add_tap(self, bridge_id: str, leg_id: str | None, callback: TapCallback) -> str:
        """Every 20 ms, ``callback(pcm, rate)`` with what ``leg_id`` says in the bridge
        (decoded, after the jitter buffer; silence when it says nothing or is muted), or the
        whole mix when ``leg_id`` is None. Returns the tap id."""
        bridge = self._get_bridge(bridge_id)
        if leg_id is not None and leg_id not in bridge.legs:
            raise KeyError(f"leg {leg_id!r} is not in bridge {bridge_id!r}")
        tap = _Tap(f"tap-{next(self._ids)}", callback, bridge_id, leg_id)
        bridge.taps[tap.tap_id] = tap
        self._taps[tap.tap_id] = tap
        self._refresh(bridge)
        return tap.tap_id

    def add_tap_heard(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms while the leg is mixed or playing, ``callback(pcm, rate)`` with what
        the leg hears (bridge mix, players and injections). Returns the tap id."""
        leg = self.get_leg(leg_id)
        tap = _Tap(f"tap-{next(self._ids)}", callback, None, leg_id)
        leg.heard_taps[tap.tap_id] = tap
        self._taps[tap.tap_id] = tap
        self.refresh_leg(leg)
        return tap.tap_id

    def add_tap_stereo(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms while the leg is ticked (bridged, playing, or alone),
        ``callback(pcm, rate)`` with interleaved stereo ``int16`` (2 × 20 ms of samples):
        what the leg says on the left (silence while it is muted or sends nothing), what it
        hears on the right (as :meth:`add_tap_heard`). The call recorder's tap: it follows
        the leg from bridge to bridge. Returns the tap id."""
        leg = self.get_leg(leg_id)
        tap = _Tap(f"tap-{next(self._ids)}", callback, None, leg_id, stereo=True)
        leg.heard_taps[tap.tap_id] = tap
        leg.said_wanted = True
        self._taps[tap.tap_id] = tap
        self.refresh_leg(leg)
        return tap.tap_id

    def remove_tap(self, tap_id: str) -> None:
        """Detach a tap (idempotent)."""
        tap = self._taps.pop(tap_id, None)
        if tap is None:
            return
        if tap.bridge_id is not None:
            bridge = self._bridges.get(tap.bridge_id)
            if bridge is not None:
                bridge.taps.pop(tap_id, None)
                self._refresh(bridge)
        elif tap.leg_id is not None:
            leg = self._legs.get(tap.leg_id)
            if leg is not None:
                leg.heard_taps.pop(tap_id, None)
                leg.said_wanted = any(t.stereo for t in leg.heard_taps.values())
                if not leg.said_wanted:
                    leg.said = None
                self.refresh_leg(leg)

    def inject(self, leg_id: str, source: FrameSource) -> str:
        """Mix ``source`` into what the leg hears (a whisper beep, a tone) until it ends or
        ``stop_injection``. Returns the injection id."""
        leg = self.get_leg(leg_id)
        src = _Source(f"inj-{next(self._ids)}", leg_id, source)
        leg.injections[src.id] = src
        self._sources[src.id] = src
        self.refresh_leg(leg)
        return src.id

    def stop_injection(self, injection_id: str) -> None:
        """Stop an injection (idempotent)."""
        src = self._sources.get(injection_id)
        if src is not None and not src.id.startswith("play-"):
            self._end_source(src, stopped=True)

    def play(
        self,
        leg_id: str,
        source: FrameSource,
        *,
        mix: bool = False,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
    ) -> str:
        """Play ``source`` to the leg: instead of the bridge audio (default) or mixed with it.

        One player per leg: a new one stops the previous. A DTMF digit in
        ``interrupt_digits`` stops it. When it ends, ``on_done`` and the subscribers get a
        ``PlaybackFinished``. Music on hold: ``play(leg, Playlist([moh], 8000, loop=True))``.
        """
        return self.play_on_leg(
            self.get_leg(leg_id),
            source,
            mix=mix,
            interrupt_digits=interrupt_digits,
            on_done=on_done,
        )

    def play_on_leg(
        self,
        leg: Leg,
        source: FrameSource,
        *,
        mix: bool = False,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
        internal: bool = False,
    ) -> str:
        leg_id = leg.leg_id
        if leg.player is not None:
            self._end_source(leg.player, stopped=True)
        src = _Source(
            f"play-{next(self._ids)}",
            leg_id,
            source,
            mix=mix,
            interrupt_digits=interrupt_digits,
            on_done=on_done,
            internal=internal,
        )
        leg.player = src
        self._sources[src.id] = src
        self.refresh_leg(leg)
        log.debug("media.play_started", leg=leg_id, player=src.id)
        return src.id

    def stop_play(self, player_id: str) -> None:
        """Stop a player (idempotent); ``PlaybackFinished(stopped=True)`` is emitted."""
        src = self._sources.get(player_id)
        if src is not None and src.id.startswith("play-"):
            self._end_source(src, stopped=True)

    def detect_inband_dtmf(self, leg_id: str, enabled: bool = True) -> None:
        """Run a Goertzel DTMF detector on the leg's decoded audio (``source="inband"``)."""
        leg = self.get_leg(leg_id)
        if enabled and leg.detector is None:
            leg.detector = GoertzelDetector(leg.pcm_rate, leg_id=leg_id)
        elif not enabled:
            leg.detector = None
        self.refresh_leg(leg)

    async def close(self) -> None:
        """Close every leg and stop timers."""
        self.closed = True
        for leg_id in list(self._legs):
            self.close_leg(leg_id)
        self._bridges.clear()
        self._mixing.clear()
        if self._clock is not None:
            self._clock.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.sleep(0)  # let transports run connection_lost

    # --- internals: bridge bookkeeping ------------------------------------------------------

    def _next_phase(self) -> int:
        return next(self._phase_of) % self.clock_phases

    def _get_bridge(self, bridge_id: str) -> Bridge:
        try:
            return self._bridges[bridge_id]
        except KeyError:
            raise KeyError(f"no bridge {bridge_id!r}") from None

    def _leave(self, bridge: Bridge, leg: Leg) -> None:
        bridge.legs.pop(leg.leg_id, None)
        leg.current_bridge = None
        leg.peer = None
        leg.out.rebase()
        bridge.spec.deaf = {p for p in bridge.spec.deaf if leg.leg_id not in p}
        for tap_id, tap in list(bridge.taps.items()):
            if tap.leg_id == leg.leg_id:
                del bridge.taps[tap_id]
                self._taps.pop(tap_id, None)
        log.debug("media.left", bridge=bridge.bridge_id, leg=leg.leg_id)
        if bridge.auto and len(bridge.legs) < 2:
            self.destroy_bridge(bridge.bridge_id)
        else:
            self._refresh(bridge)
        self._refresh_solo(leg)

    def refresh_leg(self, leg: Leg) -> None:
        if leg.leg_id not in self._legs:
            return
        if leg.current_bridge is not None:
            self._refresh(leg.current_bridge)
        self._refresh_solo(leg)

    def _refresh(self, bridge: Bridge) -> None:
        """Choose the bridge's path and put its legs in the matching mode."""
        legs = list(bridge.legs.values())
        fast = (
            len(legs) == 2
            and not bridge.taps
            and not bridge.spec.deaf
            and not any(leg.needs_pcm() for leg in legs)
            and _fast_compatible(legs[0], legs[1])
        )
        bridge.mixed = not fast
        bridge.spec.muted_speakers = {leg.leg_id for leg in legs if leg.muted_inbound}
        bridge.spec.deaf_listeners = {leg.leg_id for leg in legs if leg.muted_outbound}
        bridge.rate = 16000 if any(leg.pcm_rate >= 16000 for leg in legs) else 8000
        if fast:
            a, b = legs
            for leg, peer in ((a, b), (b, a)):
                if leg.peer is not peer:
                    leg.peer = peer
                    leg.out.rebase()
                leg.set_jb_active(False)
            self._mixing.pop(bridge.bridge_id, None)
        else:
            for leg in legs:
                leg.peer = None
                leg.set_jb_active(True)
            self._mixing[bridge.bridge_id] = bridge
        for leg in legs:
            self._refresh_solo(leg)
        self._update_clock()

    def _refresh_solo(self, leg: Leg) -> None:
        """A leg outside a mixed bridge is ticked alone when it plays, taps or sends DTMF."""
        bridge = leg.current_bridge
        if bridge is not None and bridge.mixed:
            self._solo.pop(leg.leg_id, None)
            return
        if bridge is None:
            needs = leg.needs_pcm() or leg.dtmf_busy
            leg.set_jb_active(needs and (leg.detector is not None or leg.said_wanted))
        else:
            needs = leg.dtmf_busy  # fast path: only generated DTMF needs the clock
        if needs and leg.leg_id in self._legs:
            self._solo[leg.leg_id] = leg
        else:
            self._solo.pop(leg.leg_id, None)
        self._update_clock()

    def _update_clock(self) -> None:
        clock = self._clock
        if clock is None:
            return
        if (self._mixing or self._solo) and not self.closed:
            clock.start()
        else:
            clock.stop()

    # --- internals: the tick ------------------------------------------------------------------

    def _tick(self, now: float, index: int = 0) -> None:
        phases = self.clock_phases
        if phases == 1:
            for bridge in list(self._mixing.values()):
                self._tick_bridge(bridge, now)
            for leg in list(self._solo.values()):
                self._tick_solo(leg, now)
        else:
            phase = index % phases
            for bridge in [b for b in self._mixing.values() if b.phase == phase]:
                self._tick_bridge(bridge, now)
            for leg in [leg for leg in self._solo.values() if leg.clock_phase == phase]:
                self._tick_solo(leg, now)
        finished, self._finished = self._finished, []
        for src in finished:
            self._end_source(src)

    def _tick_bridge(self, bridge: Bridge, now: float) -> None:
        rate = bridge.rate
        n = frame_samples(rate)
        legs = bridge.legs
        frames: dict[str, Int16Array | None] = {}
        for leg_id, leg in list(legs.items()):  # a DTMF event handler may change the bridge
            pcm = leg.pull(now)
            frames[leg_id] = None if pcm is None else leg.pcm_at_rate(pcm, rate)
            if leg.said_wanted:
                silent = leg_id in bridge.spec.muted_speakers
                leg.said = None if silent else frames[leg_id]
        if bridge.taps:
            silence = np.zeros(n, dtype=np.int16)
            muted = bridge.spec.muted_speakers
            for tap in list(bridge.taps.values()):
                if tap.leg_id is None:
                    _call_tap(tap, mix_all(frames, n, bridge.spec), rate)
                else:
                    frame = frames.get(tap.leg_id)
                    ok = frame is not None and tap.leg_id not in muted
                    _call_tap(tap, frame if frame is not None and ok else silence, rate)
        replace: dict[str, Int16Array] = {}
        extras: dict[str, list[Int16Array]] = {}
        for leg in list(legs.values()):
            self._collect_sources(leg, rate, n, replace, extras)
        outs = mix(frames, legs, n, bridge.spec, replace=replace, extras=extras)
        for leg_id, leg in list(legs.items()):
            leg.emit_frame(outs[leg_id], rate, now)
            leg.advance()

    def _tick_solo(self, leg: Leg, now: float) -> None:
        if leg.closed:
            self._solo.pop(leg.leg_id, None)
            return
        if leg.current_bridge is not None:  # fast path: only RFC 4733 digits to send
            leg.dtmf_tick(now)
        else:
            rate = leg.pcm_rate
            n = frame_samples(rate)
            if leg.jb_active:
                said = leg.pull(now)  # feeds the in-band detector and stereo taps
                if leg.said_wanted and not leg.muted_inbound:
                    leg.said = said
            replace: dict[str, Int16Array] = {}
            extras: dict[str, list[Int16Array]] = {}
            self._collect_sources(leg, rate, n, replace, extras)
            if replace or extras or leg.heard_taps:
                pcm = replace.get(leg.leg_id)
                acc = np.zeros(n, dtype=np.int32) if pcm is None else pcm.astype(np.int32)
                for extra in extras.get(leg.leg_id, ()):
                    acc += extra
                np.clip(acc, -32768, 32767, out=acc)
                leg.emit_frame(acc.astype(np.int16), rate, now)
            else:
                leg.dtmf_tick(now)
        leg.advance()
        if not leg.dtmf_busy:
            self._refresh_solo(leg)

    def _collect_sources(
        self,
        leg: Leg,
        rate: int,
        n: int,
        replace: dict[str, Int16Array],
        extras: dict[str, list[Int16Array]],
    ) -> None:
        player = leg.player
        if player is not None:
            frame = player.frame(rate, n)
            if frame is None:
                self._finished.append(player)
            elif player.mix:
                extras.setdefault(leg.leg_id, []).append(frame)
            else:
                replace[leg.leg_id] = frame
        for src in leg.injections.values():
            frame = src.frame(rate, n)
            if frame is None:
                self._finished.append(src)
            else:
                extras.setdefault(leg.leg_id, []).append(frame)

    def _end_source(
        self, src: _Source, *, stopped: bool = False, interrupted_by: str | None = None
    ) -> None:
        if self._sources.pop(src.id, None) is None:
            return
        leg = self._legs.get(src.leg_id)
        is_player = src.id.startswith("play-")
        if leg is not None:
            if is_player and leg.player is src:
                leg.player = None
            leg.injections.pop(src.id, None)
        stop = getattr(src.source, "stop", None)
        if stopped and callable(stop):
            with contextlib.suppress(Exception):
                stop()
        if leg is not None:
            self.refresh_leg(leg)
        if leg is not None and leg.tone_player == src.id:
            leg.tone_player = None
            leg.tone_kind = None
        if not is_player or src.internal:
            return
        event = PlaybackFinished(src.leg_id, src.id, interrupted_by, stopped)
        log.debug("media.play_finished", leg=src.leg_id, player=src.id, stopped=stopped)
        if src.on_done is not None:
            try:
                src.on_done(event)
            except Exception:
                log.exception("media.on_done_failed", player=src.id)
        self._emit(event)

    def digit_received(self, leg: Leg, event: DtmfReceived) -> None:
        log.debug("media.dtmf", leg=leg.leg_id, digit=event.digit, source=event.source)
        self._emit(event)
        player = leg.player
        if player is not None:
            interrupt = event.digit.upper() in player.interrupt_digits
            on_dtmf = getattr(player.source, "on_dtmf", None)
            if callable(on_dtmf) and on_dtmf(event.digit):
                interrupt = True
            if interrupt:
                self._end_source(player, interrupted_by=event.digit)
        bridge = leg.current_bridge
        if event.source == "rfc4733" and bridge is not None and bridge.mixed:
            # Mixed path: regenerate the digit towards everyone who hears this leg.
            for other in bridge.legs.values():
                if other.dtmf_payload_type is not None and bridge.spec.hears(
                    other.leg_id, leg.leg_id
                ):
                    other.dtmf_queue.append((event.digit, max(40, event.duration_ms)))

    def _emit(self, event: MediaEvent) -> None:
        self._events.publish(event)

    # --- internals: ports -------------------------------------------------------------------

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
        leg = Leg(leg_id, local_host, port, loop, self.tone_plan, self)
        leg.clock_phase = self._next_phase()
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
        leg.attach(rtp_transport, rtcp_transport)
        return leg

    # --- internals: housekeeping (inactivity, RTCP) -----------------------------------------

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and not self.closed:
            interval = min(1.0, max(0.05, min(self.inactivity_timeout, self.rtcp_interval) / 5))
            self._timer = loop.call_later(interval, self._housekeeping, loop, interval)

    def _housekeeping(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._timer = None
        now = loop.time()
        timeout = self.inactivity_timeout
        for leg in list(self._legs.values()):
            if leg.housekeeping(now, timeout):
                log.info("media.leg_inactive", leg=leg.leg_id, timeout=timeout)
                self._emit(LegInactive(leg.leg_id))
        if not self.closed:
            self._timer = loop.call_later(interval, self._housekeeping, loop, interval)

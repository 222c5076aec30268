"""The one media interface: what the SIP core and the services may ask of media.

Theory of operation
-------------------
Two implementations exist and are chosen by config (``media: {workers: N}``):
``media.engine.MediaEngine`` runs RTP in the main process's event loop;
``media.workers.MediaWorkerPool`` runs one ``MediaEngine`` per worker process (one per core,
each owning a slice of the RTP port range) and forwards commands to them. Callers hold a
``MediaInterface`` and cannot tell which one they got, so everything is addressed by *id*
(legs, bridges, players, injections, taps) and nothing returns a live object:

* **Commands are synchronous.** A command is applied at once (engine) or sent as a
  fire-and-forget message that the worker applies in order (pool); ids that a command
  returns (``bridge``, ``play``, ``inject``, ``add_tap``) are allocated by the caller's side,
  so no round trip is needed. Only what must learn something from the media side awaits:
  ``create_leg`` (the bound port goes into SDP), ``start``/``close`` and ``stats``. An error
  in a fire-and-forget command is logged by the pool; the engine raises it.
* **Reads are snapshots.** ``leg_stats``/``leg_quality`` return the engine's counters; the
  pool returns what its workers last reported (ten times a second), which is what a call
  record needs.
* **Events are published to any number of subscribers.** ``subscribe(handler)`` returns the
  callable that unsubscribes. Events are frozen, slotted dataclasses named as facts:
  ``DtmfReceived``, ``PlaybackFinished``, ``LegInactive``, ``LegClosed``. A subscriber that
  raises is logged and stays subscribed; the others still get the event (``EventHub``).
* **Audio out of the media side** (recording, supervisors, tests) goes through taps: a Python
  callback ``(pcm, rate)`` called every 20 ms with ``int16`` mono PCM. The pool ships the PCM
  from the worker to the main process and calls the callback there.
* **Audio into the media side** is a ``FrameSource`` (``media.player.Playlist``,
  ``media.tones.ToneSource``). The pool sends a description of it to the worker (a
  playlist's files, a pickled tone) because a source object cannot be shared by two
  processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import structlog

from media.codecs import Codec, Direction
from media.dtmf import DtmfReceived

__all__ = [
    "DtmfReceived",
    "EventHandler",
    "EventHub",
    "FrameSource",
    "Int16Array",
    "LegAddress",
    "LegClosed",
    "LegInactive",
    "LegQuality",
    "LegStats",
    "MediaError",
    "MediaEvent",
    "MediaInterface",
    "PlaybackFinished",
    "PortsExhausted",
    "TapCallback",
    "WorkerStats",
]

log = structlog.get_logger(__name__)

Int16Array = npt.NDArray[np.int16]
TapCallback = Callable[[Int16Array, int], None]


class MediaError(Exception):
    """Base class of media errors."""


class PortsExhausted(MediaError):
    """No free RTP/RTCP port pair is left in the configured range."""


class FrameSource(Protocol):
    """What ``play`` and ``inject`` pull from: 20 ms mono int16 frames at ``rate``.

    ``media.player.Playlist`` and ``media.tones.ToneSource`` are frame sources. ``read``
    returns ``None`` once the source is finished.
    """

    @property
    def rate(self) -> int: ...

    def read(self) -> Int16Array | None: ...


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A player ended: the source ran out, a digit interrupted it, or it was stopped."""

    leg_id: str
    player_id: str
    interrupted_by: str | None = None  # the DTMF digit that interrupted it
    stopped: bool = False  # ended by stop_play / a newer play / the leg closing


@dataclass(frozen=True, slots=True)
class LegInactive:
    """A bridged leg that should receive media has been silent for the inactivity timeout
    (or its media worker died: the leg has no media any more)."""

    leg_id: str


@dataclass(frozen=True, slots=True)
class LegClosed:
    """A leg was closed and its ports released."""

    leg_id: str


MediaEvent = DtmfReceived | PlaybackFinished | LegInactive | LegClosed
EventHandler = Callable[[MediaEvent], None]


class EventHub:
    """Subscribers of media events. Publishing calls each in subscription order; one that
    raises is logged and keeps its subscription (the next event reaches it again)."""

    __slots__ = ("_handlers", "_next")

    def __init__(self) -> None:
        self._handlers: dict[int, EventHandler] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._handlers)

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Add ``handler``; returns the callable that removes it (idempotent)."""
        key = self._next
        self._next += 1
        self._handlers[key] = handler

        def unsubscribe() -> None:
            self._handlers.pop(key, None)

        return unsubscribe

    def publish(self, event: MediaEvent) -> None:
        # A snapshot: a handler may subscribe or unsubscribe while we iterate.
        for handler in tuple(self._handlers.values()):
            try:
                handler(event)
            except Exception:
                log.exception("media.subscriber_failed", kind=type(event).__name__)


# --- snapshots ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegQuality:
    """Reception quality of one leg (RFC 3550 §A.3/§A.8) and its estimated MOS."""

    packets_received: int
    packets_lost: int
    loss_fraction: float  # 0..1 over the whole stream
    jitter_ms: float
    rtt_ms: float | None  # None until the far end echoed one of our sender reports
    mos: float
    remote_loss_fraction: float | None = None  # what the far end reports about our stream


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
    rtcp_in: int = 0  # RTCP datagrams received (RTCP port, or RTCP seen on the RTP port)
    rtcp_out: int = 0  # RTCP compound packets sent
    send_errors: int = 0  # errors the transport reported (e.g. ICMP port unreachable)
    dtmf_in: int = 0  # digits received (RFC 4733 and in-band)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Counters of one process that runs media (the main one for the in-process engine)."""

    worker: int
    pid: int
    legs: int
    cpu_seconds: float  # time.process_time() of that process
    clock_ticks: int
    clock_skipped: int
    packets_in: int
    packets_out: int


@runtime_checkable
class LegAddress(Protocol):
    """What SDP needs of a new leg: where it receives RTP (RTCP on the next port)."""

    @property
    def leg_id(self) -> str: ...

    @property
    def local_host(self) -> str: ...

    @property
    def local_port(self) -> int: ...

    @property
    def local_rtcp_port(self) -> int: ...


# --- the interface --------------------------------------------------------------------------------


class MediaInterface(Protocol):
    """Legs, bridges, tones, players, taps and DTMF, addressed by id (see the module doc)."""

    # lifecycle
    async def start(self) -> None:
        """Get ready for legs (the pool spawns its workers). Idempotent."""

    async def close(self) -> None:
        """Close every leg and stop; no event is published afterwards."""

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Publish every ``MediaEvent`` to ``handler`` until the returned callable is called."""
        ...

    async def stats(self) -> list[WorkerStats]:
        """Counters of every process running media."""
        ...

    # legs
    async def create_leg(
        self, leg_id: str, advertise_host: str | None = None, *, near: str | None = None
    ) -> LegAddress:
        """Bind an RTP/RTCP port pair. ``near`` (a leg or bridge id) is a placement hint:
        legs that will be bridged together are best kept in one worker. Raises
        ``PortsExhausted`` when no pair is free, ``ValueError`` for a duplicate id."""
        ...

    def close_leg(self, leg_id: str) -> None:
        """Leave the bridge, stop players and taps, release the ports. Idempotent."""

    def leg_address(self, leg_id: str) -> LegAddress:
        """Where the leg receives (for SDP in a re-INVITE answer); ``KeyError`` if unknown."""
        ...

    def __contains__(self, leg_id: object) -> bool: ...

    def __len__(self) -> int: ...

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
        """Apply the phone's SDP to the leg (initial or re-INVITE)."""

    def start_tone(self, leg_id: str, kind: str = "ringback") -> None:
        """Play a call-progress tone of the tone plan to the leg until ``stop_tone``."""

    def stop_tone(self, leg_id: str) -> None:
        """Stop the leg's tone (no-op without one)."""

    def send_dtmf(self, leg_id: str, digit: str, duration_ms: int = 100) -> None:
        """Send one digit to the leg's phone as RFC 4733 events."""

    def leg_stats(self, leg_id: str) -> LegStats:
        """A snapshot of the leg's counters; ``KeyError`` for an unknown leg."""
        ...

    def leg_quality(self, leg_id: str) -> LegQuality:
        """Reception quality of the leg's incoming stream; ``KeyError`` for an unknown leg."""
        ...

    # bridges
    def create_bridge(self, bridge_id: str, *, near: str | None = None) -> None:
        """A new, empty bridge (a conference room); ``near`` as for ``create_leg``."""

    def destroy_bridge(self, bridge_id: str) -> None:
        """Remove every leg from the bridge and drop it with its taps. Idempotent."""

    def bridge(self, leg_a: str, leg_b: str) -> str:
        """Connect two legs (each leaves its bridge first); returns the bridge id. The
        bridge goes away when either party leaves."""
        ...

    def unbridge(self, leg_id: str) -> None:
        """Take the leg out of its bridge."""

    def join(self, bridge_id: str, leg_id: str) -> None:
        """Put a leg into a bridge (leaving the one it was in)."""

    def leave(self, bridge_id: str, leg_id: str) -> None:
        """Take a leg out of a bridge (no-op if it is not in it)."""

    def bridge_of(self, leg_id: str) -> str | None:
        """Id of the bridge the leg is in, None if it is in none."""
        ...

    def bridge_legs(self, bridge_id: str) -> tuple[str, ...]:
        """Ids of the legs in a bridge, in joining order; ``KeyError`` if unknown."""
        ...

    def set_hears(self, bridge_id: str, listener: str, speaker: str, audible: bool) -> None:
        """Whether ``listener`` hears ``speaker`` in this bridge (listen/whisper/barge)."""

    def mute(
        self, leg_id: str, *, inbound: bool | None = None, outbound: bool | None = None
    ) -> None:
        """Inbound: what the leg says goes nowhere; outbound: it hears nothing from the bridge."""

    # taps, players, injections, detection
    def add_tap(self, bridge_id: str, leg_id: str | None, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` with what ``leg_id`` says in the bridge (the
        whole mix when None); returns the tap id."""
        ...

    def add_tap_heard(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` with what the leg hears; returns the tap id."""
        ...

    def add_tap_stereo(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` with interleaved stereo: what the leg says
        (left) and hears (right), wherever the leg is bridged; returns the tap id."""
        ...

    def remove_tap(self, tap_id: str) -> None:
        """Detach a tap (idempotent)."""

    def play(
        self,
        leg_id: str,
        source: FrameSource,
        *,
        mix: bool = False,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
    ) -> str:
        """Play ``source`` to the leg (one player per leg); returns the player id. When it
        ends, ``on_done`` and the subscribers get ``PlaybackFinished``."""
        ...

    def stop_play(self, player_id: str) -> None:
        """Stop a player (idempotent)."""

    def inject(self, leg_id: str, source: FrameSource) -> str:
        """Mix ``source`` into what the leg hears (whisper); returns the injection id."""
        ...

    def stop_injection(self, injection_id: str) -> None:
        """Stop an injection (idempotent)."""

    def detect_inband_dtmf(self, leg_id: str, enabled: bool = True) -> None:
        """Detect DTMF tones in the leg's audio (``DtmfReceived(source="inband")``)."""

"""Media workers: one ``MediaEngine`` per process (one per core), driven from the main process.

Theory of operation
-------------------
One event loop tops out at a few hundred relayed calls (bench/README.md): the per-packet cost
is Python's. DESIGN.md ("Growing past one core") moves RTP into worker processes while the main
process keeps SIP and the services. ``MediaWorkerPool`` is that split, and it implements
``media.interface.MediaInterface`` exactly as the in-process ``MediaEngine`` does, so the SIP
core and the services cannot tell them apart:

* **Workers.** ``start()`` spawns N processes (``multiprocessing`` *spawn* context: no forked
  copy of the main process's loop, sockets or threads). Each runs its own event loop (uvloop
  when installed) and its own ``MediaEngine`` over a disjoint slice of the RTP port range
  (``port_min..port_max`` cut into N even-aligned slices, RFC 3550 §11 pairs never straddle
  two slices), with its own media clock, RTCP and inactivity timers.
* **Control channel.** One ``socket.socketpair()`` (AF_UNIX stream) per worker carries small
  pickled tuples, each framed by a 4-octet length; writes made in one loop iteration leave in
  one ``send``. Requests are ``(req_id, op, args)``; ``req_id`` 0 is a command (no reply on
  success; a failure comes back and is logged). Replies are ``("ok", req_id, value)`` or
  ``("err", req_id, type_name, message, op)``. From the worker also come ``("ev", event)``
  (``DtmfReceived``, ``PlaybackFinished``, ``LegInactive``, ``LegClosed``), ``("t", tap_id,
  pcm_bytes, rate)`` (one 20 ms tap frame), ``("log", event_dict)`` (a worker's log line,
  written by the main process's logging, so all lines share one format and stream) and
  ``("s", snapshots)`` (every leg's counters and quality, ten times a second). Both ends
  read with ``loop.add_reader`` (no threads). The stream keeps order, so commands are applied
  in the order they were given.
* **Commands are synchronous.** Every id a command returns is made in the main process (bridge
  ids, ``play-N``, ``inj-N``, ``tap-N``); the worker maps them to its engine's ids. The pool
  keeps the bookkeeping that answers ``bridge_of``, ``bridge_legs`` and ``in`` at once, and the
  last reported counters for ``leg_stats``/``leg_quality`` (a tenth of a second old at most).
* **Sources.** A frame source cannot be shared by two processes: a ``Playlist`` travels as
  its items (file paths are loaded and cached by the worker, off its loop), a ``ToneSource``
  or any other picklable source as a pickled copy, which the worker plays. ``on_done`` stays
  in the main process and is called when the worker reports ``PlaybackFinished``.
* **Taps** run in the worker; each 20 ms frame is shipped to the main process and handed to
  the Python callback there (a read-only ``int16`` array).
* **Placement.** ``create_leg(..., near=x)`` puts the leg in the worker of leg or bridge ``x``
  (a call's two legs share a worker, so its bridge stays on the worker's fast path); an
  unknown ``near`` is ignored; otherwise the worker with the fewest legs. A bridge lives in
  one worker (its *home*: the worker of its first leg, or of ``near``).
* **Bridges across workers.** A leg of another worker joins a bridge through a *link*: two
  helper legs, one in the home worker (it joins the bridge in the leg's place) and one in the
  leg's worker (two-party bridged with the leg), sending RTP to each other over loopback in
  the leg's codec. Both workers relay on their fast path when they can (a two-party call
  across workers is relay → loopback → relay), mix when the bridge needs it (conference,
  whisper); ``set_hears``, taps and RFC 4733 digits work on the helper as on the leg, the
  leg's own commands (tones, players, mute) still go to its worker. Setting a link up needs
  both helper ports, so it awaits two worker replies; commands given meanwhile wait in an
  ordered outbox behind it, so a caller still sees its commands applied in order. Events of
  helper legs are not published.
* **Failure.** A worker whose channel reaches EOF or whose process exits is *dead*: it is
  logged, its pending requests fail with ``WorkerDied``, and every leg it held is reported
  through ``LegInactive`` so the calls get hung up; links through it are dropped. New legs go
  to the surviving workers. A worker whose channel closes (the main process died) closes its
  engine and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import structlog

from media.codecs import PCMU, Codec, Direction
from media.engine import MediaEngine, QualityInputs, quality_of
from media.interface import (
    EventHandler,
    EventHub,
    FrameSource,
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
from media.player import Playlist, PlaylistItem

__all__ = [
    "MediaWorkerPool",
    "PlaylistSpec",
    "RemoteLeg",
    "SourceSpec",
    "ToneSpec",
    "WorkerDied",
    "WorkerStats",
    "split_ports",
]

log = structlog.get_logger(__name__)

_LEN = struct.Struct("!I")
_MAX_FRAME = 16 * 1024 * 1024  # a control message is tiny; anything this big is corruption
_READ_SIZE = 256 * 1024
_START_TIMEOUT = 30.0  # a spawned interpreter imports numpy and the engine
_CLOSE_TIMEOUT = 5.0
# How old leg_stats/leg_quality may be. A call record reads them when the call ends; the
# RFC 3550 jitter estimate moves by 1/16 per packet, so a value a second or even a quarter
# second old still showed the jitter of DTMF packets sent just before the hang-up.
_SNAPSHOT_INTERVAL = 0.1
_LINK_PREFIX = "~xw"  # ids of link helper legs: internal, their events are not published
_LINK_DTMF_PT = 101  # telephone-event payload type between the two helpers of a link


class WorkerDied(MediaError):
    """The worker process handling the request exited."""


# --- what crosses the boundary -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteLeg:
    """A leg created in a worker: what SDP needs (address and port) and where it lives."""

    leg_id: str
    local_host: str
    local_port: int
    worker: int

    @property
    def local_rtcp_port(self) -> int:
        """RFC 3550 §11: RTCP on the next (odd) port."""
        return self.local_port + 1


@dataclass(frozen=True, slots=True)
class PlaylistSpec:
    """Prompts played back to back (``media.player.Playlist`` in the worker): file paths
    (loaded through the worker's prompt cache) or ready ``int16`` arrays at ``rate``."""

    items: tuple[PlaylistItem, ...]
    rate: int = 8000
    loop: bool = False
    interruptible_by: frozenset[str] = frozenset()

    def needs_loading(self) -> bool:
        return any(not isinstance(item, np.ndarray) for item in self.items)

    def build(self) -> Playlist:
        return Playlist(
            list(self.items), self.rate, self.loop, interruptible_by=self.interruptible_by
        )


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A tone of a tone plan (``media.tones.ToneSource`` in the worker)."""

    kind: str
    plan: str = "us"
    rate: int = 8000
    duration: float | None = None
    repeat: int | None = None

    def build(self) -> FrameSource:
        from media.tones import ToneSource

        return ToneSource(
            self.kind, self.plan, self.rate, duration=self.duration, repeat=self.repeat
        )


SourceSpec = PlaylistSpec | ToneSpec


def _describe(source: FrameSource | SourceSpec) -> bytes:
    """What travels to the worker for ``source`` (pickled); ``TypeError`` if it cannot."""
    spec: object = source
    if isinstance(source, Playlist):
        # A Playlist may hold a PromptCache (a lock) and decoded tracks: send its items.
        spec = PlaylistSpec(tuple(source.items), source.rate, source.loop, source.interruptible_by)
    try:
        return pickle.dumps(spec, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"frame source {type(source).__name__} cannot be sent to a media worker: {exc}"
        ) from None


# --- framed, pickled messages over a stream socket ---------------------------------------------


class _Channel:
    """Length-prefixed pickles over a non-blocking stream socket, driven by the loop.

    ``send`` only appends to the write buffer; the buffer leaves in one ``send`` call at the
    end of the loop iteration (a tick that ships a frame of every tap, or a call set-up that
    gives five commands, costs one system call, not one per message).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: Callable[[Any], None],
        on_closed: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._on_message = on_message
        self._on_closed = on_closed
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._flush_scheduled = False
        self._writer = False  # add_writer is armed: the socket buffer was full
        self.closed = False
        loop.add_reader(self._fd, self._readable)

    @property
    def pending_output(self) -> bool:
        return bool(self._wbuf)

    def send(self, message: Any) -> None:
        if self.closed:
            return
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self._wbuf += _LEN.pack(len(data))
        self._wbuf += data
        if not self._flush_scheduled and not self._writer:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._writer:
            self._loop.remove_writer(self._fd)
        self._sock.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or self._writer or not self._wbuf:
            return
        self._write()
        if self._wbuf and not self.closed:
            self._writer = True
            self._loop.add_writer(self._fd, self._writable)

    def _write(self) -> None:
        try:
            sent = self._sock.send(self._wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lost()
            return
        del self._wbuf[:sent]

    def _writable(self) -> None:
        self._write()
        if not self._wbuf and not self.closed:
            self._writer = False
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        buf = self._rbuf
        buf += data
        start = 0
        while len(buf) - start >= 4:
            (size,) = _LEN.unpack_from(buf, start)
            if size > _MAX_FRAME:
                log.error("media_worker.bad_frame", size=size)
                self._lost()
                return
            end = start + 4 + size
            if len(buf) < end:
                break
            message = pickle.loads(buf[start + 4 : end])
            start = end
            self._on_message(message)
            if self.closed:
                return
        del buf[:start]

    def _lost(self) -> None:
        if self.closed:
            return
        self.close()
        self._on_closed()


# --- worker process --------------------------------------------------------------------------


def _worker_entry(
    index: int,
    sock: socket.socket,
    host: str,
    port_min: int,
    port_max: int,
    engine_kwargs: dict[str, Any],
    log_level: int,
) -> None:
    """Body of a worker process (spawned: a fresh interpreter)."""
    # The main process owns Ctrl-C and shuts workers down over the channel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = _Worker(index, sock, host, port_min, port_max, engine_kwargs)
    # Log lines go to the main process, which writes them as it writes its own (one format,
    # one stream: JSON lines for --log-json); below ``log_level`` they cost one call.
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.format_exc_info,  # a traceback cannot be pickled: text
            worker.ship_log,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        cache_logger_on_first_use=False,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a regular dependency
        asyncio.run(worker.run())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(worker.run())


class _Worker:
    """The worker's side: applies commands to its engine, reports events, taps and counters."""

    def __init__(
        self,
        index: int,
        sock: socket.socket,
        host: str,
        port_min: int,
        port_max: int,
        engine_kwargs: dict[str, Any],
    ) -> None:
        self.index = index
        self.sock = sock
        self.engine = MediaEngine(host, port_min, port_max, **engine_kwargs)
        self.engine.subscribe(self._on_event)
        self.tasks: set[asyncio.Task[None]] = set()
        self.chan: _Channel | None = None
        self.done: asyncio.Event | None = None
        # Ids the main process gave -> the engine's ids (players, injections, taps).
        self.ids: dict[str, str] = {}
        self.pool_ids: dict[str, str] = {}  # engine player id -> pool player id
        self.pending: dict[str, str] = {}  # pool player/injection id -> leg, source loading
        self.latest_play: dict[str, str] = {}  # leg -> pool id of the newest play request
        # Leg or bridge -> the ids above that end with it (an injection or a tap ends without
        # an event: forgotten when its leg closes or its bridge goes, not kept forever).
        self.owned: dict[str, set[str]] = {}
        engine = self.engine
        self.ops: dict[str, Callable[..., Any]] = {
            "create_leg": self._create_leg,
            "close_leg": engine.close_leg,
            "set_remote": self._set_remote,
            "start_tone": engine.start_tone,
            "stop_tone": engine.stop_tone,
            "send_dtmf": engine.send_dtmf,
            "pair": self._pair,
            "create_bridge": engine.create_bridge,
            "destroy_bridge": self._destroy_bridge,
            "join": engine.join,
            "leave": engine.leave,
            "set_hears": engine.set_hears,
            "mute": self._mute,
            "add_tap": self._add_tap,
            "add_tap_heard": self._add_tap_heard,
            "add_tap_stereo": self._add_tap_stereo,
            "remove_tap": self._remove_tap,
            "play": self._play,
            "stop_play": self._stop_source,
            "inject": self._inject,
            "stop_injection": self._stop_source,
            "detect_inband_dtmf": engine.detect_inband_dtmf,
            "worker_stats": self._worker_stats,
            "close": self._close,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.chan = _Channel(loop, self.sock, self._on_message, self.done.set)
        self.chan.send(("ready", os.getpid()))
        snapshots = loop.call_later(_SNAPSHOT_INTERVAL, self._snapshot, loop)
        self._snapshots: asyncio.TimerHandle = snapshots
        await self.done.wait()
        self._snapshots.cancel()
        await self.engine.close()
        for task in list(self.tasks):
            task.cancel()
        # Let the last reply ("close" acknowledged) leave before the socket goes.
        for _ in range(50):
            if not self.chan.pending_output:
                break
            await asyncio.sleep(0.01)
        self.chan.close()

    def _send(self, message: Any) -> None:
        assert self.chan is not None
        self.chan.send(message)

    def ship_log(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        """structlog's last processor in a worker: the event goes to the main process."""
        chan = self.chan
        if chan is None or chan.closed:  # before the channel is up, or after it went
            return " ".join(f"{key}={value!r}" for key, value in event_dict.items())
        chan.send(("log", {key: _loggable(value) for key, value in event_dict.items()}))
        raise structlog.DropEvent

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, PlaybackFinished):
            pool_id = self.pool_ids.pop(event.player_id, None)
            if pool_id is None:
                return  # not one of ours (cannot happen: every player comes from the pool)
            self.ids.pop(pool_id, None)
            event = dataclasses.replace(event, player_id=pool_id)
        elif isinstance(event, LegClosed):
            self._forget(event.leg_id)
            self.latest_play.pop(event.leg_id, None)
        self._send(("ev", event))

    def _own(self, owner: str, pool_id: str, engine_id: str) -> None:
        self.ids[pool_id] = engine_id
        self.owned.setdefault(owner, set()).add(pool_id)

    def _forget(self, owner: str) -> None:
        for pool_id in self.owned.pop(owner, ()):
            self.ids.pop(pool_id, None)

    def _destroy_bridge(self, bridge_id: str) -> None:
        self.engine.destroy_bridge(bridge_id)
        self._forget(bridge_id)

    def _snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        engine = self.engine
        # Plain tuples, no MOS estimate (the main process makes one when it is asked):
        # several times cheaper to build and pickle than the dataclasses.
        snapshot = [item for item in engine.leg_snapshots() if not item[0].startswith(_LINK_PREFIX)]
        if snapshot:
            self._send(("s", snapshot))
        self._snapshots = loop.call_later(_SNAPSHOT_INTERVAL, self._snapshot, loop)

    def _on_message(self, message: Any) -> None:
        req_id, op, args = message
        try:
            result = self.ops[op](*args)
        except Exception as exc:
            self._error(req_id, op, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(req_id, op, result))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif req_id:
            self._send(("ok", req_id, result))

    async def _finish(self, req_id: int, op: str, pending: Awaitable[Any]) -> None:
        try:
            result = await pending
        except Exception as exc:
            self._error(req_id, op, exc)
            return
        if req_id:
            self._send(("ok", req_id, result))

    def _error(self, req_id: int, op: str, exc: Exception) -> None:
        self._send(("err", req_id, type(exc).__name__, str(exc), op))

    async def _create_leg(self, leg_id: str, advertise_host: str | None) -> tuple[str, int]:
        leg = await self.engine.create_leg(leg_id, advertise_host)
        return leg.local_host, leg.local_port

    def _set_remote(
        self,
        leg_id: str,
        host: str,
        port: int,
        codec: Codec,
        dtmf_payload_type: int | None,
        direction: Direction,
        rtcp_address: tuple[str, int] | None,
    ) -> None:
        self.engine.set_remote(
            leg_id,
            host,
            port,
            codec,
            dtmf_payload_type,
            direction=direction,
            rtcp_address=rtcp_address,
        )

    def _pair(self, leg_a: str, leg_b: str, bridge_id: str) -> None:
        self.engine.bridge(leg_a, leg_b, bridge_id=bridge_id)

    def _mute(self, leg_id: str, inbound: bool | None, outbound: bool | None) -> None:
        self.engine.mute(leg_id, inbound=inbound, outbound=outbound)

    # taps: every frame goes to the main process, which calls the Python callback

    def _tap_sender(self, tap_id: str) -> TapCallback:
        def ship(pcm: Any, rate: int) -> None:
            self._send(("t", tap_id, pcm.tobytes(), rate))

        return ship

    def _add_tap(self, tap_id: str, bridge_id: str, leg_id: str | None) -> None:
        self._own(
            bridge_id, tap_id, self.engine.add_tap(bridge_id, leg_id, self._tap_sender(tap_id))
        )

    def _add_tap_heard(self, tap_id: str, leg_id: str) -> None:
        self._own(leg_id, tap_id, self.engine.add_tap_heard(leg_id, self._tap_sender(tap_id)))

    def _add_tap_stereo(self, tap_id: str, leg_id: str) -> None:
        self._own(leg_id, tap_id, self.engine.add_tap_stereo(leg_id, self._tap_sender(tap_id)))

    def _remove_tap(self, tap_id: str) -> None:
        engine_id = self.ids.pop(tap_id, None)
        if engine_id is not None:
            self.engine.remove_tap(engine_id)

    # players and injections

    def _play(
        self, play_id: str, leg_id: str, spec: bytes, mix: bool, interrupt_digits: str
    ) -> Awaitable[None] | None:
        self.latest_play[leg_id] = play_id
        source = pickle.loads(spec)
        if isinstance(source, PlaylistSpec) and source.needs_loading():
            self.pending[play_id] = leg_id
            return self._start_later(play_id, leg_id, source, mix, interrupt_digits)
        self._start_play(play_id, leg_id, _built(source), mix, interrupt_digits)
        return None

    async def _start_later(
        self, play_id: str, leg_id: str, spec: PlaylistSpec, mix: bool, interrupt_digits: str
    ) -> None:
        playlist = spec.build()
        try:
            await asyncio.to_thread(playlist.prepare)  # file I/O and decoding off the loop
        except Exception:
            self.pending.pop(play_id, None)
            self._finished_unplayed(play_id, leg_id)
            raise
        if self.pending.pop(play_id, None) is None:
            self._finished_unplayed(play_id, leg_id)  # stopped while loading
            return
        if play_id.startswith("play-") and self.latest_play.get(leg_id) != play_id:
            self._finished_unplayed(play_id, leg_id)  # a newer play on the leg replaced it
            return
        self._start_play(play_id, leg_id, playlist, mix, interrupt_digits)

    def _start_play(
        self, play_id: str, leg_id: str, source: FrameSource, mix: bool, interrupt_digits: str
    ) -> None:
        if not play_id.startswith("play-"):
            with contextlib.suppress(KeyError):  # the leg closed meanwhile: nothing to report
                self._own(leg_id, play_id, self.engine.inject(leg_id, source))
            return
        try:
            engine_id = self.engine.play(leg_id, source, mix=mix, interrupt_digits=interrupt_digits)
        except KeyError:
            self._finished_unplayed(play_id, leg_id)
            return
        self.ids[play_id] = engine_id
        self.pool_ids[engine_id] = play_id
        if self.latest_play.get(leg_id) == play_id:
            del self.latest_play[leg_id]

    def _finished_unplayed(self, play_id: str, leg_id: str) -> None:
        if play_id.startswith("play-"):
            self._send(("ev", PlaybackFinished(leg_id, play_id, stopped=True)))

    def _inject(self, inj_id: str, leg_id: str, spec: bytes) -> Awaitable[None] | None:
        source = pickle.loads(spec)
        if isinstance(source, PlaylistSpec) and source.needs_loading():
            self.pending[inj_id] = leg_id
            return self._start_later(inj_id, leg_id, source, True, "")
        self._start_play(inj_id, leg_id, _built(source), True, "")
        return None

    def _stop_source(self, pool_id: str) -> None:
        if self.pending.pop(pool_id, None) is not None:
            return  # still loading: _start_later reports it stopped
        engine_id = self.ids.get(pool_id)
        if engine_id is None:
            return
        if pool_id.startswith("play-"):
            self.engine.stop_play(engine_id)
        else:
            self.ids.pop(pool_id, None)
            self.engine.stop_injection(engine_id)

    def _worker_stats(self) -> WorkerStats:
        return dataclasses.replace(self.engine.worker_stats(), worker=self.index)

    def _close(self) -> None:
        assert self.done is not None
        self.done.set()


def _loggable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, tuple | list) and all(
        v is None or isinstance(v, str | int | float | bool) for v in value
    ):
        return value
    return repr(value)


def _built(source: object) -> FrameSource:
    if isinstance(source, PlaylistSpec | ToneSpec):
        return source.build()
    return source  # type: ignore[return-value]  # a pickled frame source


# --- main-process side -------------------------------------------------------------------------

_ERRORS: dict[str, type[Exception]] = {
    "KeyError": KeyError,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "PortsExhausted": PortsExhausted,
    "MediaError": MediaError,
}


def _remote_error(type_name: str, message: str) -> Exception:
    return _ERRORS.get(type_name, MediaError)(message)


@dataclass(eq=False)
class _WorkerHandle:
    index: int
    port_min: int
    port_max: int
    process: BaseProcess | None = None
    channel: _Channel | None = None
    pid: int | None = None
    alive: bool = False
    ready: asyncio.Future[None] | None = None
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    legs: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _LegRecord:
    address: RemoteLeg
    codec: Codec | None = None
    bridge: str | None = None
    stats: tuple[Any, ...] = ()  # LegStats fields as the worker last reported them
    quality: QualityInputs | None = None  # what LegQuality is computed from

    @property
    def worker(self) -> int:
        return self.address.worker


@dataclass(eq=False)
class _Link:
    """A leg of another worker in a bridge: helper ``home`` joins the bridge in its place,
    helper ``far`` is bridged with the leg in the leg's worker; they exchange RTP."""

    leg_id: str
    far_worker: int
    home: str
    far: str


@dataclass(eq=False)
class _BridgeRecord:
    worker: int  # home: the worker whose engine holds the bridge
    auto: bool  # made by bridge(a, b): gone when a party leaves
    legs: list[str] = field(default_factory=list)  # in joining order
    links: dict[str, _Link] = field(default_factory=dict)  # leg id -> its link
    taps: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _TapRecord:
    worker: int
    callback: TapCallback
    bridge: str | None
    leg: str | None = None  # the listener of a heard tap


@dataclass(eq=False)
class _Held:
    """A place in the outbox for the commands of a link being set up."""

    messages: list[tuple[int, Any]] | None = None  # (worker, message) once known


def split_ports(port_min: int, port_max: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``port_min..port_max`` into ``parts`` slices that each start on an even port."""
    first = port_min + (port_min & 1)
    pairs = (port_max - first + 1) // 2
    if parts < 1 or pairs < parts:
        raise ValueError(f"RTP port range {port_min}-{port_max} cannot feed {parts} worker(s)")
    per = pairs // parts
    slices = []
    for i in range(parts):
        low = first + 2 * per * i
        high = port_max if i == parts - 1 else low + 2 * per - 1
        slices.append((low, high))
    return slices


def _loopback(host: str) -> str:
    """Where one worker reaches another's helper leg: the bind address, or loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class MediaWorkerPool:
    """``media.interface.MediaInterface`` over N worker processes (see the module docstring).

    ``await pool.start()`` (or ``async with``) before creating legs, ``await pool.close()``
    at the end. Commands return at once; their errors in a worker are logged.
    """

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        workers: int | None = None,
        *,
        on_event: EventHandler | None = None,
        on_inactive: Callable[[str], None] | None = None,
        on_worker_died: Callable[[int, int | None], None] | None = None,
        start_method: str = "spawn",
        log_level: int | None = None,
        **engine_kwargs: Any,
    ) -> None:
        count = workers if workers is not None else (os.cpu_count() or 1)
        if "on_event" in engine_kwargs or "on_inactive" in engine_kwargs:
            raise TypeError("engine callbacks cannot cross processes; use the pool's")
        # Validate the engine options here, where the caller can see the error.
        MediaEngine(host, port_min, port_max, **engine_kwargs)
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.on_worker_died = on_worker_died
        self._events = EventHub()
        if on_event is not None:
            self._events.subscribe(on_event)
        if on_inactive is not None:
            callback = on_inactive
            self._events.subscribe(
                lambda e: callback(e.leg_id) if isinstance(e, LegInactive) else None
            )
        # Typed Any: typeshed's BaseContext does not declare Process (the concrete ones do).
        self._ctx: Any = multiprocessing.get_context(start_method)
        # By default the workers log what the main process's root logger lets through.
        self._log_level = log_level if log_level is not None else logging.getLogger().level
        self._engine_kwargs = engine_kwargs
        self._workers = [
            _WorkerHandle(i, low, high)
            for i, (low, high) in enumerate(split_ports(port_min, port_max, count))
        ]
        self._legs: dict[str, _LegRecord] = {}
        self._bridges: dict[str, _BridgeRecord] = {}
        self._players: dict[str, Callable[[PlaybackFinished], None] | None] = {}
        self._player_worker: dict[str, int] = {}
        self._injections: dict[str, tuple[int, str]] = {}  # injection id -> (worker, leg)
        self._taps: dict[str, _TapRecord] = {}
        self._outbox: deque[tuple[int, Any] | _Held] = deque()
        self._drained: list[asyncio.Future[None]] = []  # stats() callers waiting for it
        self._ids = itertools.count(1)
        self._next_req = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> MediaWorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def workers(self) -> int:
        """Number of worker processes (alive or not)."""
        return len(self._workers)

    def pids(self) -> list[int | None]:
        """Process ids of the workers (None before start)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    def alive(self, worker: int) -> bool:
        """True while the worker runs and answers on its channel."""
        return self._workers[worker].alive

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Publish every ``MediaEvent`` to ``handler``; returns the unsubscribe callable."""
        return self._events.subscribe(handler)

    async def start(self) -> None:
        """Spawn the workers and wait until each has its engine running (idempotent)."""
        if self._started:
            return
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        for w in self._workers:
            ours, theirs = socket.socketpair()
            process = self._ctx.Process(
                target=_worker_entry,
                args=(
                    w.index,
                    theirs,
                    self.host,
                    w.port_min,
                    w.port_max,
                    self._engine_kwargs,
                    self._log_level,
                ),
                name=f"switchboard-media-{w.index}",
                daemon=True,  # never outlive the main process
            )
            process.start()
            theirs.close()  # only the child holds it now: its exit gives us EOF
            w.process = process
            w.ready = loop.create_future()
            w.channel = _Channel(
                loop, ours, self._make_on_message(w), functools.partial(self._worker_lost, w)
            )
            w.alive = True
            loop.add_reader(process.sentinel, self._worker_lost, w)
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                for w in self._workers:
                    assert w.ready is not None
                    await w.ready
        except BaseException:
            await self.close()
            raise
        log.info(
            "media_worker.pool_started",
            workers=len(self._workers),
            pids=[w.pid for w in self._workers],
            ports=[(w.port_min, w.port_max) for w in self._workers],
        )

    async def close(self) -> None:
        """Close every leg and stop the workers (killed if they do not exit in time)."""
        if self._closed:
            return
        self._closed = True
        self._flush_outbox(force=True)
        acks = [self._request(w, "close", ()) for w in self._workers if w.alive]
        if acks:
            await asyncio.wait(acks, timeout=_CLOSE_TIMEOUT)
        for ack in acks:
            if ack.done():
                ack.exception()  # a worker that died meanwhile is fine: it is gone
            else:
                ack.cancel()
        deadline = time.monotonic() + _CLOSE_TIMEOUT
        for w in self._workers:
            process = w.process
            if process is None:
                continue
            while process.exitcode is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if process.exitcode is None:
                log.warning("media_worker.kill", worker=w.index, pid=process.pid)
                process.kill()
                await asyncio.to_thread(process.join, 2.0)
            self._detach(w)
            with contextlib.suppress(ValueError):
                process.close()
        for task in list(self._tasks):
            task.cancel()
        self._legs.clear()
        self._bridges.clear()
        self._players.clear()
        self._taps.clear()

    async def stats(self) -> list[WorkerStats]:
        """Counters of every live worker (CPU time, clock, packets), taken after every
        command given before the call was applied (bridges across workers included)."""
        if self._outbox:
            assert self._loop is not None
            drained: asyncio.Future[None] = self._loop.create_future()
            self._drained.append(drained)
            await drained
        live = [w for w in self._workers if w.alive]
        results = await asyncio.gather(*(self._request(w, "worker_stats", ()) for w in live))
        return list(results)

    # --- legs -------------------------------------------------------------------------------

    async def create_leg(
        self,
        leg_id: str,
        advertise_host: str | None = None,
        *,
        near: str | None = None,
        worker: int | None = None,
    ) -> RemoteLeg:
        """Bind an RTP/RTCP port pair for a new leg in a worker.

        ``near`` is a leg or bridge id: the new leg goes to the same worker (a call's
        second leg, a conference participant); ignored when unknown. Otherwise ``worker`` if
        given, else the live worker with the fewest legs. Raises ``PortsExhausted`` when
        that worker's slice is full, ``ValueError`` for a duplicate id.
        """
        if self._closed or not self._started:
            raise MediaError("media worker pool is not running")
        if leg_id in self._legs or leg_id.startswith(_LINK_PREFIX):
            raise ValueError(f"leg {leg_id!r} already exists")
        w = self._place(near, worker)
        host, port = await self._create_in(w, leg_id, advertise_host)
        address = RemoteLeg(leg_id, host, port, w.index)
        if self._closed:
            raise MediaError("media worker pool is closed")
        self._legs[leg_id] = _LegRecord(address)
        return address

    def _place(self, near: str | None, worker: int | None) -> _WorkerHandle:
        index: int | None = None
        if near is not None:
            record = self._legs.get(near)
            if record is not None:
                index = record.worker
            elif near in self._bridges:
                index = self._bridges[near].worker
        if index is None and worker is not None:
            index = worker
        if index is not None and self._workers[index].alive:
            return self._workers[index]
        live = [w for w in self._workers if w.alive]
        if not live:
            raise WorkerDied("no media worker is alive")
        return min(live, key=lambda w: len(w.legs))

    async def _create_in(
        self, w: _WorkerHandle, leg_id: str, advertise_host: str | None
    ) -> tuple[str, int]:
        w.legs.add(leg_id)  # counted at once: concurrent creations spread out
        try:
            host, port = await self._request(w, "create_leg", (leg_id, advertise_host))
        except BaseException:
            w.legs.discard(leg_id)
            raise
        return host, port

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._legs

    def __len__(self) -> int:
        return len(self._legs)

    def worker_of(self, leg_or_bridge_id: str) -> int:
        """Index of the worker holding a leg or bridge; ``KeyError`` if unknown."""
        record = self._legs.get(leg_or_bridge_id)
        if record is not None:
            return record.worker
        return self._bridge(leg_or_bridge_id).worker

    def close_leg(self, leg_id: str) -> None:
        """Release the leg (it leaves its bridge, players stop). Idempotent."""
        record = self._legs.get(leg_id)
        if record is None:
            return
        if record.bridge is not None:
            self._remove_member(record.bridge, leg_id)
        del self._legs[leg_id]
        self._workers[record.worker].legs.discard(leg_id)
        for tap_id in [t for t, tap in self._taps.items() if tap.leg == leg_id]:
            del self._taps[tap_id]  # its heard taps end with it in the worker
        for injection_id in [i for i, (_, leg) in self._injections.items() if leg == leg_id]:
            del self._injections[injection_id]  # and its injections
        self._command(record.worker, "close_leg", leg_id)

    def leg_address(self, leg_id: str) -> RemoteLeg:
        """Where the leg receives (host and port in its worker)."""
        return self._leg(leg_id).address

    def leg_stats(self, leg_id: str) -> LegStats:
        """The leg's counters as its worker last reported them (0.1 s old at most)."""
        return LegStats(*self._leg(leg_id).stats)

    def leg_quality(self, leg_id: str) -> LegQuality:
        """Reception quality as the leg's worker last reported it."""
        inputs = self._leg(leg_id).quality
        return quality_of(inputs if inputs is not None else (0, 0, 0.0, 0.0, None, None, "PCMU"))

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
        """Apply the phone's SDP to the leg in its worker."""
        record = self._leg(leg_id)
        record.codec = codec  # links made later carry the leg's own codec
        self._command(
            record.worker,
            "set_remote",
            leg_id,
            host,
            port,
            codec,
            dtmf_payload_type,
            direction,
            rtcp_address,
        )

    def start_tone(self, leg_id: str, kind: str = "ringback") -> None:
        """A call-progress tone to the leg until ``stop_tone``."""
        self._leg_command(leg_id, "start_tone", kind)

    def stop_tone(self, leg_id: str) -> None:
        """Stop the leg's tone."""
        self._leg_command(leg_id, "stop_tone")

    def send_dtmf(self, leg_id: str, digit: str, duration_ms: int = 100) -> None:
        """One RFC 4733 digit towards the leg's phone."""
        self._leg_command(leg_id, "send_dtmf", digit, duration_ms)

    def mute(
        self, leg_id: str, *, inbound: bool | None = None, outbound: bool | None = None
    ) -> None:
        """``MediaEngine.mute`` in the leg's worker."""
        self._leg_command(leg_id, "mute", inbound, outbound)

    def detect_inband_dtmf(self, leg_id: str, enabled: bool = True) -> None:
        """``MediaEngine.detect_inband_dtmf`` in the leg's worker."""
        self._leg_command(leg_id, "detect_inband_dtmf", enabled)

    # --- bridges ----------------------------------------------------------------------------

    def create_bridge(self, bridge_id: str, *, near: str | None = None) -> None:
        """An empty bridge (conference) in the worker of ``near`` or the least loaded one."""
        if bridge_id in self._bridges:
            raise ValueError(f"bridge {bridge_id!r} already exists")
        w = self._place(near, None)
        self._bridges[bridge_id] = _BridgeRecord(w.index, auto=False)
        self._command(w.index, "create_bridge", bridge_id)

    def destroy_bridge(self, bridge_id: str) -> None:
        """Remove every leg from the bridge and drop it with its taps. Idempotent."""
        record = self._bridges.pop(bridge_id, None)
        if record is None:
            return
        for leg_id in record.legs:
            leg = self._legs.get(leg_id)
            if leg is not None and leg.bridge == bridge_id:
                leg.bridge = None
        for link in record.links.values():
            self._unlink(record, link)
        for tap_id in record.taps:
            self._taps.pop(tap_id, None)
        self._command(record.worker, "destroy_bridge", bridge_id)

    def bridge(self, leg_a: str, leg_b: str) -> str:
        """Connect two legs (each leaves its bridge first); returns the bridge id. Legs of
        two workers are connected through a link (see the module docstring)."""
        if leg_a == leg_b:
            raise ValueError("cannot bridge a leg to itself")
        a, b = self._leg(leg_a), self._leg(leg_b)
        if a.bridge is not None and a.bridge == b.bridge:
            current = self._bridges[a.bridge]
            if len(current.legs) == 2:
                return a.bridge
        for leg_id, record in ((leg_a, a), (leg_b, b)):
            if record.bridge is not None:
                self._remove_member(record.bridge, leg_id)
        bridge_id = f"~{leg_a}~{leg_b}~{next(self._ids)}"
        self._bridges[bridge_id] = _BridgeRecord(a.worker, auto=True)
        self._command(a.worker, "create_bridge", bridge_id)
        self._add_member(bridge_id, leg_a)
        self._add_member(bridge_id, leg_b)
        return bridge_id

    def unbridge(self, leg_id: str) -> None:
        """Take the leg out of its bridge (a two-party bridge goes away)."""
        bridge_id = self._leg(leg_id).bridge
        if bridge_id is not None:
            self._remove_member(bridge_id, leg_id)

    def join(self, bridge_id: str, leg_id: str) -> None:
        """Put a leg into a bridge (leaving the one it was in)."""
        self._bridge(bridge_id)
        record = self._leg(leg_id)
        if record.bridge == bridge_id:
            return
        if record.bridge is not None:
            self._remove_member(record.bridge, leg_id)
        if bridge_id in self._bridges:  # leaving may have dissolved it (auto bridge)
            self._add_member(bridge_id, leg_id)

    def leave(self, bridge_id: str, leg_id: str) -> None:
        """Take a leg out of a bridge (no-op if it is not in it)."""
        self._bridge(bridge_id)
        record = self._legs.get(leg_id)
        if record is not None and record.bridge == bridge_id:
            self._remove_member(bridge_id, leg_id)

    def bridge_of(self, leg_id: str) -> str | None:
        """Id of the bridge the leg is in (None: none, or no such leg)."""
        record = self._legs.get(leg_id)
        return None if record is None else record.bridge

    def bridge_legs(self, bridge_id: str) -> tuple[str, ...]:
        """Ids of the legs in a bridge, in joining order."""
        return tuple(self._bridge(bridge_id).legs)

    def set_hears(self, bridge_id: str, listener: str, speaker: str, audible: bool) -> None:
        """``MediaEngine.set_hears`` in the bridge's worker (links stand in for their legs)."""
        record = self._bridge(bridge_id)
        for leg_id in (listener, speaker):
            if leg_id not in record.legs:
                raise KeyError(f"leg {leg_id!r} is not in bridge {bridge_id!r}")
        self._command(
            record.worker,
            "set_hears",
            bridge_id,
            self._member(record, listener),
            self._member(record, speaker),
            audible,
        )

    def _member(self, record: _BridgeRecord, leg_id: str) -> str:
        """The id under which the leg is in its bridge's worker (itself, or its helper)."""
        link = record.links.get(leg_id)
        return leg_id if link is None else link.home

    def _add_member(self, bridge_id: str, leg_id: str) -> None:
        record = self._bridges[bridge_id]
        leg = self._legs[leg_id]
        if not record.legs and not record.taps and leg.worker != record.worker:
            # An empty room moves to its first member's worker: fewer links to make.
            self._command(record.worker, "destroy_bridge", bridge_id)
            record.worker = leg.worker
            self._command(record.worker, "create_bridge", bridge_id)
        record.legs.append(leg_id)
        leg.bridge = bridge_id
        if leg.worker == record.worker:
            self._command(record.worker, "join", bridge_id, leg_id)
            return
        n = next(self._ids)
        link = _Link(leg_id, leg.worker, f"{_LINK_PREFIX}{n}h", f"{_LINK_PREFIX}{n}f")
        record.links[leg_id] = link
        held = _Held()
        self._outbox.append(held)
        task = asyncio.ensure_future(self._set_up_link(bridge_id, record, link, leg.codec, held))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_up_link(
        self,
        bridge_id: str,
        record: _BridgeRecord,
        link: _Link,
        codec: Codec | None,
        held: _Held,
    ) -> None:
        home, far = self._workers[record.worker], self._workers[link.far_worker]
        messages: list[tuple[int, Any]] = []
        try:
            (home_host, home_port), (far_host, far_port) = await asyncio.gather(
                self._create_in(home, link.home, None), self._create_in(far, link.far, None)
            )
        except Exception as exc:
            if not self._closed:  # a pool closing under a set-up is no failure
                log.error(
                    "media_worker.link_failed", bridge=bridge_id, leg=link.leg_id, error=str(exc)
                )
            # Whichever helper was made is released; the leg stays out of the bridge's audio.
            messages = [(home.index, (0, "close_leg", (link.home,)))]
            messages.append((far.index, (0, "close_leg", (link.far,))))
        else:
            # Same format as the leg: both workers relay without transcoding when they can.
            fmt = codec if codec is not None else PCMU
            pt = _LINK_DTMF_PT
            messages = [
                (
                    far.index,
                    (
                        0,
                        "set_remote",
                        (link.far, _loopback(home_host), home_port, fmt, pt, "sendrecv", None),
                    ),
                ),
                (far.index, (0, "pair", (link.leg_id, link.far, f"~{link.far}"))),
                (
                    home.index,
                    (
                        0,
                        "set_remote",
                        (link.home, _loopback(far_host), far_port, fmt, pt, "sendrecv", None),
                    ),
                ),
                (home.index, (0, "join", (bridge_id, link.home))),
            ]
        held.messages = messages
        self._flush_outbox()

    def _remove_member(self, bridge_id: str, leg_id: str) -> None:
        record = self._bridges[bridge_id]
        if leg_id in record.legs:
            record.legs.remove(leg_id)
        leg = self._legs.get(leg_id)
        if leg is not None and leg.bridge == bridge_id:
            leg.bridge = None
        link = record.links.pop(leg_id, None)
        if link is not None:
            self._unlink(record, link)
        else:
            self._command(record.worker, "leave", bridge_id, leg_id)
        if record.auto and len(record.legs) < 2:
            self.destroy_bridge(bridge_id)

    def _unlink(self, record: _BridgeRecord, link: _Link) -> None:
        # Closing the far helper ends its two-party bridge with the leg in the leg's worker.
        self._command(record.worker, "close_leg", link.home)
        self._command(link.far_worker, "close_leg", link.far)
        self._workers[record.worker].legs.discard(link.home)
        self._workers[link.far_worker].legs.discard(link.far)

    # --- taps, players, injections ------------------------------------------------------------

    def add_tap(self, bridge_id: str, leg_id: str | None, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` in this process with what ``leg_id`` says in
        the bridge (the whole mix when None); ``pcm`` is read-only. Returns the tap id."""
        record = self._bridge(bridge_id)
        if leg_id is not None and leg_id not in record.legs:
            raise KeyError(f"leg {leg_id!r} is not in bridge {bridge_id!r}")
        tap_id = f"tap-{next(self._ids)}"
        self._taps[tap_id] = _TapRecord(record.worker, callback, bridge_id)
        record.taps.add(tap_id)
        member = None if leg_id is None else self._member(record, leg_id)
        self._command(record.worker, "add_tap", tap_id, bridge_id, member)
        return tap_id

    def add_tap_heard(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` with what the leg hears. Returns the tap id."""
        worker = self._leg(leg_id).worker
        tap_id = f"tap-{next(self._ids)}"
        self._taps[tap_id] = _TapRecord(worker, callback, None, leg_id)
        self._command(worker, "add_tap_heard", tap_id, leg_id)
        return tap_id

    def add_tap_stereo(self, leg_id: str, callback: TapCallback) -> str:
        """Every 20 ms ``callback(pcm, rate)`` with interleaved stereo: what the leg says
        (left) and hears (right). Returns the tap id."""
        worker = self._leg(leg_id).worker
        tap_id = f"tap-{next(self._ids)}"
        self._taps[tap_id] = _TapRecord(worker, callback, None, leg_id)
        self._command(worker, "add_tap_stereo", tap_id, leg_id)
        return tap_id

    def remove_tap(self, tap_id: str) -> None:
        """Detach a tap (idempotent)."""
        tap = self._taps.pop(tap_id, None)
        if tap is None:
            return
        if tap.bridge is not None and tap.bridge in self._bridges:
            self._bridges[tap.bridge].taps.discard(tap_id)
        self._command(tap.worker, "remove_tap", tap_id)

    def play(
        self,
        leg_id: str,
        source: FrameSource | SourceSpec,
        *,
        mix: bool = False,
        interrupt_digits: str = "",
        on_done: Callable[[PlaybackFinished], None] | None = None,
    ) -> str:
        """Play a source to the leg in its worker; returns the player id. When it ends,
        ``on_done`` and the subscribers get ``PlaybackFinished`` (in this process)."""
        worker = self._leg(leg_id).worker
        spec = _describe(source)
        player_id = f"play-{next(self._ids)}"
        self._players[player_id] = on_done
        self._player_worker[player_id] = worker
        self._command(worker, "play", player_id, leg_id, spec, mix, interrupt_digits)
        return player_id

    def stop_play(self, player_id: str) -> None:
        """Stop a player (idempotent); ``PlaybackFinished(stopped=True)`` follows."""
        worker = self._player_worker.get(player_id)
        if worker is not None:
            self._command(worker, "stop_play", player_id)

    def inject(self, leg_id: str, source: FrameSource | SourceSpec) -> str:
        """Mix a source into what the leg hears; returns the injection id."""
        worker = self._leg(leg_id).worker
        spec = _describe(source)
        injection_id = f"inj-{next(self._ids)}"
        self._injections[injection_id] = (worker, leg_id)
        self._command(worker, "inject", injection_id, leg_id, spec)
        return injection_id

    def stop_injection(self, injection_id: str) -> None:
        """Stop an injection (idempotent)."""
        found = self._injections.pop(injection_id, None)
        if found is not None:
            self._command(found[0], "stop_injection", injection_id)

    # --- internals ------------------------------------------------------------------------------

    def _leg(self, leg_id: str) -> _LegRecord:
        try:
            return self._legs[leg_id]
        except KeyError:
            raise KeyError(f"no media leg {leg_id!r}") from None

    def _bridge(self, bridge_id: str) -> _BridgeRecord:
        try:
            return self._bridges[bridge_id]
        except KeyError:
            raise KeyError(f"no bridge {bridge_id!r}") from None

    def _leg_command(self, leg_id: str, op: str, *args: Any) -> None:
        self._command(self._leg(leg_id).worker, op, leg_id, *args)

    def _command(self, worker: int, op: str, *args: Any) -> None:
        if self._outbox:
            self._outbox.append((worker, (0, op, args)))
        else:
            self._send(worker, (0, op, args))

    def _send(self, worker: int, message: Any) -> None:
        w = self._workers[worker]
        if not w.alive or w.channel is None:
            if not self._closed:  # after close, late commands (hang-ups) are expected
                log.warning("media_worker.command_dropped", worker=worker, op=message[1])
            return
        w.channel.send(message)

    def _flush_outbox(self, *, force: bool = False) -> None:
        """Send what waits in order, up to the first link still being set up."""
        outbox = self._outbox
        while outbox:
            head = outbox[0]
            if isinstance(head, _Held):
                if head.messages is None and not force:
                    return
                for worker, message in head.messages or ():
                    self._send(worker, message)
            else:
                self._send(*head)
            outbox.popleft()
        drained, self._drained = self._drained, []
        for future in drained:
            if not future.done():
                future.set_result(None)

    def _request(self, w: _WorkerHandle, op: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[Any] = loop.create_future()
        if not w.alive or w.channel is None:
            future.set_exception(WorkerDied(f"media worker {w.index} is dead"))
            return future
        req_id = self._next_req
        self._next_req += 1
        w.pending[req_id] = future
        w.channel.send((req_id, op, args))
        return future

    def _make_on_message(self, w: _WorkerHandle) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            kind = message[0]
            if kind == "t":
                self._tap_frame(message[1], message[2], message[3])
            elif kind == "ev":
                self._dispatch(message[1])
            elif kind == "s":
                self._snapshot(message[1])
            elif kind == "ok":
                future = w.pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2])
            elif kind == "err":
                _, req_id, type_name, text, op = message
                future = w.pending.pop(req_id, None)
                if future is not None:
                    if not future.done():
                        future.set_exception(_remote_error(type_name, text))
                else:
                    log.warning(
                        "media_worker.command_failed",
                        worker=w.index,
                        op=op,
                        error=type_name,
                        detail=text,
                    )
            elif kind == "log":
                self._worker_log(w, message[1])
            elif kind == "ready":
                w.pid = message[1]
                if w.ready is not None and not w.ready.done():
                    w.ready.set_result(None)

        return on_message

    def _worker_log(self, w: _WorkerHandle, event_dict: dict[str, Any]) -> None:
        level = logging.getLevelName(str(event_dict.pop("level", "info")).upper())
        event = str(event_dict.pop("event", ""))
        event_dict.pop("worker", None)
        log.log(
            level if isinstance(level, int) else logging.INFO, event, worker=w.index, **event_dict
        )

    def _tap_frame(self, tap_id: str, data: bytes, rate: int) -> None:
        tap = self._taps.get(tap_id)
        if tap is None:
            return  # removed while the frame was on its way
        try:
            tap.callback(np.frombuffer(data, dtype=np.int16), rate)
        except Exception:
            log.exception("media.tap_failed", tap=tap_id)

    def _snapshot(self, snapshot: list[tuple[str, tuple[Any, ...], QualityInputs]]) -> None:
        for leg_id, stats, quality in snapshot:
            record = self._legs.get(leg_id)
            if record is not None:
                record.stats = stats
                record.quality = quality

    def _dispatch(self, event: MediaEvent) -> None:
        if event.leg_id.startswith(_LINK_PREFIX):
            return  # a link's helper: the leg it stands for reports for itself
        if isinstance(event, PlaybackFinished):
            self._player_worker.pop(event.player_id, None)
            on_done = self._players.pop(event.player_id, None)
            if on_done is not None:
                try:
                    on_done(event)
                except Exception:
                    log.exception("media.on_done_failed", player=event.player_id)
        self._events.publish(event)

    def _detach(self, w: _WorkerHandle) -> None:
        w.alive = False
        if w.channel is not None:
            w.channel.close()
        if w.process is not None and self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(w.process.sentinel)

    def _worker_lost(self, w: _WorkerHandle) -> None:
        """The worker's channel closed or its process exited."""
        if not w.alive:
            return
        self._detach(w)
        error = WorkerDied(f"media worker {w.index} is gone")
        for future in w.pending.values():
            if not future.done():
                future.set_exception(error)
        w.pending.clear()
        if w.ready is not None and not w.ready.done():
            w.ready.set_exception(error)
        if self._closed:
            return
        legs = sorted(leg for leg in w.legs if not leg.startswith(_LINK_PREFIX))
        w.legs.clear()
        log.error("media_worker.lost", worker=w.index, pid=w.pid, legs=len(legs))
        # Bridges held there are gone; links through it are useless.
        for bridge_id, record in list(self._bridges.items()):
            if record.worker == w.index:
                self.destroy_bridge(bridge_id)
            else:
                for leg_id, link in list(record.links.items()):
                    if link.far_worker == w.index:
                        record.links.pop(leg_id)
                        self._command(record.worker, "close_leg", link.home)
        for player_id, worker in list(self._player_worker.items()):
            if worker == w.index:
                self._dispatch(PlaybackFinished("", player_id, stopped=True))
        # The calls lost their media: report every leg as inactive so they get hung up.
        for leg_id in legs:
            gone = self._legs.pop(leg_id, None)
            if gone is not None and gone.bridge is not None and gone.bridge in self._bridges:
                self._remove_member(gone.bridge, leg_id)
            self._dispatch(LegInactive(leg_id))
            self._dispatch(LegClosed(leg_id))
        self._reap(w, time.monotonic() + _CLOSE_TIMEOUT)

    def _reap(self, w: _WorkerHandle, deadline: float) -> None:
        """Wait (without blocking the loop) for the lost worker to exit, then report it."""
        process = w.process
        if process is None:
            return
        if process.exitcode is None:
            if time.monotonic() < deadline:
                assert self._loop is not None
                self._loop.call_later(0.05, self._reap, w, deadline)
                return
            # Channel broken but the process hangs on: it is useless, end it.
            log.warning("media_worker.kill", worker=w.index, pid=process.pid)
            process.kill()
            deadline = time.monotonic() + _CLOSE_TIMEOUT
            assert self._loop is not None
            self._loop.call_later(0.05, self._reap, w, deadline)
            return
        log.error("media_worker.died", worker=w.index, pid=w.pid, exitcode=process.exitcode)
        if self.on_worker_died is not None and not self._closed:
            try:
                self.on_worker_died(w.index, process.exitcode)
            except Exception:
                log.exception("media_worker.on_worker_died_failed", worker=w.index)

"""Media workers: one ``MediaEngine`` per process (one per core), driven from the main process.

Theory of operation
-------------------
One event loop tops out at a few hundred relayed calls (bench/README.md): the per-packet cost
is Python's. DESIGN.md ("Growing past one core") moves RTP into worker processes while the main
process keeps SIP and the services. ``MediaWorkerPool`` is that split:

* **Workers.** ``start()`` spawns N processes (``multiprocessing`` *spawn* context: no forked
  copy of the main process's loop, sockets or threads). Each runs its own event loop (uvloop
  when installed) and its own ``MediaEngine`` over a disjoint slice of the RTP port range
  (``port_min..port_max`` cut into N even-aligned slices, RFC 3550 §11 pairs never straddle
  two slices), with its own media clock, RTCP and inactivity timers.
* **Control channel.** One ``socket.socketpair()`` (AF_UNIX stream) per worker carries small
  pickled tuples, each framed by a 4-octet length. Requests are ``(req_id, op, args)``;
  ``req_id`` 0 means "no reply on success" (fire-and-forget commands such as ``set_remote``;
  a failure still comes back and is logged). Replies are ``("ok", req_id, value)`` or
  ``("err", req_id, type_name, message)``; worker events (``DtmfReceived``,
  ``PlaybackFinished``, ``LegInactive``) are ``("ev", event)``. Both ends read with
  ``loop.add_reader`` (no threads) and write without blocking (``add_writer`` drains a
  backlog). The stream keeps order, so a command sent before an awaited request has been
  applied when the reply arrives.
* **Ids, not objects.** Legs and bridges are addressed by id; frame sources cannot cross a
  process boundary, so ``play``/``inject`` take a *description* (``PlaylistSpec``: prompt
  files + loop flag; ``ToneSpec``: a tone of the plan) that the worker turns into a
  ``Playlist`` (files loaded in a worker thread) or a ``ToneSource``.
* **Placement.** ``create_leg(..., near=x)`` puts the leg in the worker of leg or bridge ``x``
  (a call's two legs share a worker, so its bridge stays on the local fast path); otherwise
  the worker with the fewest legs. A bridge lives in the worker of its legs: bridging legs of
  two workers raises ``CrossWorkerBridge``. Documented limitation: cross-worker bridges are
  not supported (a conference is created in one worker with ``create_bridge`` and its legs
  are created ``near`` it).
* **Failure.** A worker whose channel reaches EOF or whose process exits is *dead*: it is
  logged, its pending requests fail with ``WorkerDied``, and every leg it held is reported
  through ``on_inactive`` and ``LegInactive`` so the calls get hung up. New legs go to the
  surviving workers. A worker whose channel closes (the main process died) closes its engine
  and exits.

Not supported across processes yet: taps with Python callbacks (``add_tap`` accepts only the
``"null"`` sink, which forces the mixed path and discards the PCM; the recorder needs a
shared-memory ring per recording, see bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from media.codecs import Codec, Direction
from media.engine import (
    LegInactive,
    LegQuality,
    LegStats,
    MediaEngine,
    MediaError,
    MediaEvent,
    PlaybackFinished,
    PortsExhausted,
)
from media.interface import WorkerStats

__all__ = [
    "CrossWorkerBridge",
    "MediaWorkerPool",
    "PlaylistSpec",
    "RemoteLeg",
    "SourceSpec",
    "ToneSpec",
    "WorkerDied",
    "WorkerStats",
]

log = structlog.get_logger(__name__)

_LEN = struct.Struct("!I")
_MAX_FRAME = 16 * 1024 * 1024  # a control message is tiny; anything this big is corruption
_READ_SIZE = 256 * 1024
_START_TIMEOUT = 30.0  # a spawned interpreter imports numpy and the engine
_CLOSE_TIMEOUT = 5.0


class CrossWorkerBridge(MediaError):
    """The legs (or leg and bridge) live in different worker processes."""


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
    """Prompt files played back to back (``media.player.Playlist`` in the worker)."""

    paths: tuple[str, ...]
    rate: int = 8000
    loop: bool = False
    interruptible_by: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A tone of a tone plan (``media.tones.ToneSource`` in the worker)."""

    kind: str
    plan: str = "us"
    rate: int = 8000
    duration: float | None = None
    repeat: int | None = None


SourceSpec = PlaylistSpec | ToneSpec


# --- framed, pickled messages over a stream socket ---------------------------------------------


class _Channel:
    """Length-prefixed pickles over a non-blocking stream socket, driven by the loop."""

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
        self.closed = False
        loop.add_reader(self._fd, self._readable)

    def send(self, message: Any) -> None:
        if self.closed:
            return
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        frame = _LEN.pack(len(data)) + data
        if self._wbuf:
            self._wbuf += frame
            return
        try:
            sent = self._sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        if sent < len(frame):
            self._wbuf += frame[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._wbuf:
            self._loop.remove_writer(self._fd)
        self._sock.close()

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lost()
            return
        del self._wbuf[:sent]
        if not self._wbuf:
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
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(log_level))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a regular dependency
        asyncio.run(_Worker(index, sock, host, port_min, port_max, engine_kwargs).run())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_Worker(index, sock, host, port_min, port_max, engine_kwargs).run())


class _Worker:
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
        self.ops: dict[str, Callable[..., Any]] = {
            "create_leg": self._create_leg,
            "close_leg": self.engine.close_leg,
            "set_remote": self._set_remote,
            "start_tone": lambda leg_id, kind: self.engine.get_leg(leg_id).start_tone(kind),
            "stop_tone": lambda leg_id: self.engine.get_leg(leg_id).stop_tone(),
            "send_dtmf": lambda leg_id, digit, ms: self.engine.get_leg(leg_id).send_dtmf(digit, ms),
            "bridge": self.engine.bridge,
            "unbridge": self.engine.unbridge,
            "create_bridge": self.engine.create_bridge,
            "destroy_bridge": self.engine.destroy_bridge,
            "join": self.engine.join,
            "leave": self.engine.leave,
            "set_hears": self.engine.set_hears,
            "mute": lambda leg_id, inbound, outbound: self.engine.mute(
                leg_id, inbound=inbound, outbound=outbound
            ),
            "add_tap": self._add_tap,
            "remove_tap": self.engine.remove_tap,
            "play": self._play,
            "stop_play": self.engine.stop_play,
            "inject": self._inject,
            "stop_injection": self.engine.stop_injection,
            "detect_inband_dtmf": self.engine.detect_inband_dtmf,
            "leg_quality": self.engine.leg_quality,
            "stats": self._stats,
            "worker_stats": self._worker_stats,
            "close": self._close,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.chan = _Channel(loop, self.sock, self._on_message, self.done.set)
        self.chan.send(("ready", os.getpid()))
        await self.done.wait()
        await self.engine.close()
        for task in list(self.tasks):
            task.cancel()
        # Let the last reply ("close" acknowledged) leave before the socket goes.
        for _ in range(50):
            if not self.chan._wbuf:
                break
            await asyncio.sleep(0.01)
        self.chan.close()

    def _on_event(self, event: MediaEvent) -> None:
        assert self.chan is not None
        self.chan.send(("ev", event))

    def _on_message(self, message: Any) -> None:
        assert self.chan is not None
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
            self.chan.send(("ok", req_id, result))

    async def _finish(self, req_id: int, op: str, pending: Awaitable[Any]) -> None:
        assert self.chan is not None
        try:
            result = await pending
        except Exception as exc:
            self._error(req_id, op, exc)
            return
        if req_id:
            self.chan.send(("ok", req_id, result))

    def _error(self, req_id: int, op: str, exc: Exception) -> None:
        assert self.chan is not None
        self.chan.send(("err", req_id, type(exc).__name__, str(exc), op))

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
        self.engine.get_leg(leg_id).set_remote(
            host, port, codec, dtmf_payload_type, direction=direction, rtcp_address=rtcp_address
        )

    def _add_tap(self, bridge_id: str, leg_id: str | None, sink: str) -> str:
        if sink != "null":
            raise ValueError(f"unsupported tap sink {sink!r} (only 'null' crosses processes)")
        return self.engine.add_tap(bridge_id, leg_id, _discard)

    async def _source(self, spec: SourceSpec) -> Any:
        from media.player import Playlist
        from media.tones import ToneSource

        if isinstance(spec, ToneSpec):
            return ToneSource(
                spec.kind, spec.plan, spec.rate, duration=spec.duration, repeat=spec.repeat
            )
        playlist = Playlist(
            list(spec.paths), spec.rate, spec.loop, interruptible_by=spec.interruptible_by
        )
        await asyncio.to_thread(playlist.prepare)  # file I/O and decoding off the loop
        return playlist

    async def _play(self, leg_id: str, spec: SourceSpec, mix: bool, interrupt_digits: str) -> str:
        source = await self._source(spec)
        return self.engine.play(leg_id, source, mix=mix, interrupt_digits=interrupt_digits)

    async def _inject(self, leg_id: str, spec: SourceSpec) -> str:
        source = await self._source(spec)
        return self.engine.inject(leg_id, source)

    def _stats(self, leg_id: str) -> LegStats:
        return self.engine.get_leg(leg_id).stats

    def _worker_stats(self) -> WorkerStats:
        return dataclasses.replace(self.engine.worker_stats(), worker=self.index)

    def _close(self) -> None:
        assert self.done is not None
        self.done.set()


def _discard(pcm: Any, rate: int) -> None:
    pass


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
class _BridgeRecord:
    worker: int
    auto: bool  # made by bridge(a, b): the engine drops it when a party leaves
    legs: set[str] = field(default_factory=set)


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


class MediaWorkerPool:
    """``MediaEngine``'s control API over N worker processes (see the module docstring).

    Use ``await pool.start()`` (or ``async with``) before creating legs and ``await
    pool.close()`` at the end. Commands that return nothing are sent without waiting (their
    errors are logged); those that return something are coroutines.
    """

    def __init__(
        self,
        host: str,
        port_min: int,
        port_max: int,
        workers: int | None = None,
        *,
        on_event: Callable[[MediaEvent], None] | None = None,
        on_inactive: Callable[[str], None] | None = None,
        on_worker_died: Callable[[int, int | None], None] | None = None,
        start_method: str = "spawn",
        log_level: int = logging.INFO,
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
        self.on_event = on_event
        self.on_inactive = on_inactive
        self.on_worker_died = on_worker_died
        # Typed Any: typeshed's BaseContext does not declare Process (the concrete ones do).
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._log_level = log_level
        self._engine_kwargs = engine_kwargs
        self._workers = [
            _WorkerHandle(i, low, high)
            for i, (low, high) in enumerate(split_ports(port_min, port_max, count))
        ]
        self._leg_worker: dict[str, int] = {}
        self._leg_bridge: dict[str, str] = {}
        self._bridges: dict[str, _BridgeRecord] = {}
        self._next_id = 1
        self._loop: asyncio.AbstractEventLoop | None = None
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

    async def start(self) -> None:
        """Spawn the workers and wait until each has its engine running."""
        if self._started:
            raise RuntimeError("pool already started")
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
        self._leg_worker.clear()
        self._leg_bridge.clear()
        self._bridges.clear()

    # --- legs -------------------------------------------------------------------------------

    async def create_leg(
        self,
        leg_id: str,
        advertise_host: str | None = None,
        near: str | None = None,
        *,
        worker: int | None = None,
    ) -> RemoteLeg:
        """Bind an RTP/RTCP port pair for a new leg in a worker.

        ``near`` is a leg or bridge id: the new leg goes to the same worker (a call's
        second leg, a conference participant). Otherwise ``worker`` if given, else the
        worker with the fewest legs. Raises ``PortsExhausted`` when that worker's slice is
        full, ``ValueError`` for a duplicate id.
        """
        if self._closed or not self._started:
            raise MediaError("media worker pool is not running")
        if leg_id in self._leg_worker:
            raise ValueError(f"leg {leg_id!r} already exists")
        if near is not None:
            w = self._workers[self._worker_of(near)]
        elif worker is not None:
            w = self._workers[worker]
        else:
            live = [w for w in self._workers if w.alive]
            if not live:
                raise WorkerDied("no media worker is alive")
            w = min(live, key=lambda w: len(w.legs))
        if not w.alive:
            raise WorkerDied(f"media worker {w.index} is dead")
        self._leg_worker[leg_id] = w.index  # placed now: a concurrent near= sees it
        w.legs.add(leg_id)
        try:
            host, port = await self._request(w, "create_leg", (leg_id, advertise_host))
        except BaseException:
            if self._leg_worker.get(leg_id) == w.index:
                del self._leg_worker[leg_id]
            w.legs.discard(leg_id)
            raise
        return RemoteLeg(leg_id, host, port, w.index)

    def worker_of(self, leg_or_bridge_id: str) -> int:
        """Index of the worker holding a leg or bridge; ``KeyError`` if unknown."""
        return self._worker_of(leg_or_bridge_id)

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._leg_worker

    def __len__(self) -> int:
        return len(self._leg_worker)

    def close_leg(self, leg_id: str) -> None:
        """Release the leg (it leaves its bridge, players stop). Idempotent."""
        index = self._leg_worker.pop(leg_id, None)
        if index is None:
            return
        w = self._workers[index]
        w.legs.discard(leg_id)
        self._forget_membership(leg_id)
        self._command(w, "close_leg", leg_id)

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
        """``Leg.set_remote`` in the leg's worker (the phone's SDP)."""
        self._leg_command(
            leg_id, "set_remote", host, port, codec, dtmf_payload_type, direction, rtcp_address
        )

    def start_tone(self, leg_id: str, kind: str = "ringback") -> None:
        """``Leg.start_tone``: a call-progress tone until ``stop_tone``."""
        self._leg_command(leg_id, "start_tone", kind)

    def stop_tone(self, leg_id: str) -> None:
        """``Leg.stop_tone``."""
        self._leg_command(leg_id, "stop_tone")

    def send_dtmf(self, leg_id: str, digit: str, duration_ms: int = 100) -> None:
        """``Leg.send_dtmf``: one RFC 4733 digit towards the leg's phone."""
        self._leg_command(leg_id, "send_dtmf", digit, duration_ms)

    async def leg_quality(self, leg_id: str) -> LegQuality:
        """``MediaEngine.leg_quality`` of the leg, from its worker."""
        result: LegQuality = await self._leg_request(leg_id, "leg_quality")
        return result

    async def stats(self, leg_id: str) -> LegStats:
        """A snapshot of the leg's counters (``Leg.stats``)."""
        result: LegStats = await self._leg_request(leg_id, "stats")
        return result

    async def worker_stats(self) -> list[WorkerStats]:
        """Counters of every live worker (CPU time, clock, packets)."""
        live = [w for w in self._workers if w.alive]
        results = await asyncio.gather(*(self._request(w, "worker_stats", ()) for w in live))
        return list(results)

    # --- bridges ----------------------------------------------------------------------------

    async def bridge(self, leg_a: str, leg_b: str) -> str:
        """Connect two legs of the same worker; returns the bridge id.

        Raises ``CrossWorkerBridge`` when they live in different workers.
        """
        wa, wb = self._worker_of_leg(leg_a), self._worker_of_leg(leg_b)
        if wa != wb:
            raise CrossWorkerBridge(
                f"legs {leg_a!r} (worker {wa}) and {leg_b!r} (worker {wb}) are in different "
                "media workers; create the second leg with near= the first"
            )
        if leg_a == leg_b:
            raise ValueError("cannot bridge a leg to itself")
        self._forget_membership(leg_a)
        self._forget_membership(leg_b)
        bridge_id: str = await self._request(self._workers[wa], "bridge", (leg_a, leg_b))
        record = self._bridges[bridge_id] = _BridgeRecord(wa, auto=True, legs={leg_a, leg_b})
        for leg_id in record.legs:
            self._leg_bridge[leg_id] = bridge_id
        return bridge_id

    def unbridge(self, leg_id: str) -> None:
        """Take the leg out of its bridge (a two-party bridge goes away)."""
        index = self._worker_of_leg(leg_id)
        self._forget_membership(leg_id)
        self._command(self._workers[index], "unbridge", leg_id)

    def create_bridge(
        self, bridge_id: str, *, worker: int | None = None, near: str | None = None
    ) -> None:
        """An empty bridge (conference) in one worker: ``near`` a leg, ``worker``, or the
        least loaded. Create its legs with ``create_leg(..., near=bridge_id)``."""
        if bridge_id in self._bridges:
            raise ValueError(f"bridge {bridge_id!r} already exists")
        if near is not None:
            index = self._worker_of(near)
        elif worker is not None:
            index = worker
        else:
            live = [w for w in self._workers if w.alive]
            if not live:
                raise WorkerDied("no media worker is alive")
            index = min(live, key=lambda w: len(w.legs)).index
        self._bridges[bridge_id] = _BridgeRecord(index, auto=False)
        self._command(self._workers[index], "create_bridge", bridge_id)

    def destroy_bridge(self, bridge_id: str) -> None:
        """Remove every leg from the bridge and drop it. Idempotent."""
        record = self._bridges.pop(bridge_id, None)
        if record is None:
            return
        for leg_id in record.legs:
            self._leg_bridge.pop(leg_id, None)
        self._command(self._workers[record.worker], "destroy_bridge", bridge_id)

    def join(self, bridge_id: str, leg_id: str) -> None:
        """Put a leg into a bridge of its own worker (``CrossWorkerBridge`` otherwise)."""
        record = self._bridge(bridge_id)
        index = self._worker_of_leg(leg_id)
        if index != record.worker:
            raise CrossWorkerBridge(
                f"leg {leg_id!r} is in media worker {index}, bridge {bridge_id!r} in "
                f"{record.worker}; create the leg with near={bridge_id!r}"
            )
        if self._leg_bridge.get(leg_id) != bridge_id:
            self._forget_membership(leg_id)
            record.legs.add(leg_id)
            self._leg_bridge[leg_id] = bridge_id
        self._command(self._workers[index], "join", bridge_id, leg_id)

    def leave(self, bridge_id: str, leg_id: str) -> None:
        """Take a leg out of a bridge (no-op if it is not in it)."""
        record = self._bridge(bridge_id)
        if self._leg_bridge.get(leg_id) == bridge_id:
            self._forget_membership(leg_id)
        self._command(self._workers[record.worker], "leave", bridge_id, leg_id)

    def set_hears(self, bridge_id: str, listener: str, speaker: str, audible: bool) -> None:
        """``MediaEngine.set_hears`` (listen / whisper / barge)."""
        record = self._bridge(bridge_id)
        self._command(
            self._workers[record.worker], "set_hears", bridge_id, listener, speaker, audible
        )

    def mute(
        self, leg_id: str, *, inbound: bool | None = None, outbound: bool | None = None
    ) -> None:
        """``MediaEngine.mute``."""
        self._leg_command(leg_id, "mute", inbound, outbound)

    async def add_tap(self, bridge_id: str, leg_id: str | None, sink: str = "null") -> str:
        """A tap in the bridge's worker; only ``sink="null"`` (discard) exists so far."""
        record = self._bridge(bridge_id)
        tap_id: str = await self._request(
            self._workers[record.worker], "add_tap", (bridge_id, leg_id, sink)
        )
        return f"{record.worker}:{tap_id}"

    def remove_tap(self, tap_id: str) -> None:
        """Detach a tap returned by ``add_tap`` (idempotent)."""
        index, _, engine_tap = tap_id.partition(":")
        self._command(self._workers[int(index)], "remove_tap", engine_tap)

    # --- players, injections, detection -------------------------------------------------------

    async def play(
        self, leg_id: str, source: SourceSpec, *, mix: bool = False, interrupt_digits: str = ""
    ) -> str:
        """Play prompt files or a tone to the leg; returns the player id.

        ``PlaybackFinished`` arrives through ``on_event`` when it ends.
        """
        index = self._worker_of_leg(leg_id)
        player_id: str = await self._request(
            self._workers[index], "play", (leg_id, source, mix, interrupt_digits)
        )
        return f"{index}:{player_id}"

    def stop_play(self, player_id: str) -> None:
        """Stop a player (idempotent); ``PlaybackFinished(stopped=True)`` follows."""
        index, _, engine_id = player_id.partition(":")
        self._command(self._workers[int(index)], "stop_play", engine_id)

    async def inject(self, leg_id: str, source: SourceSpec) -> str:
        """Mix prompt files or a tone into what the leg hears; returns the injection id."""
        index = self._worker_of_leg(leg_id)
        injection_id: str = await self._request(self._workers[index], "inject", (leg_id, source))
        return f"{index}:{injection_id}"

    def stop_injection(self, injection_id: str) -> None:
        """Stop an injection (idempotent)."""
        index, _, engine_id = injection_id.partition(":")
        self._command(self._workers[int(index)], "stop_injection", engine_id)

    def detect_inband_dtmf(self, leg_id: str, enabled: bool = True) -> None:
        """``MediaEngine.detect_inband_dtmf``."""
        self._leg_command(leg_id, "detect_inband_dtmf", enabled)

    # --- internals ------------------------------------------------------------------------------

    def _worker_of_leg(self, leg_id: str) -> int:
        try:
            return self._leg_worker[leg_id]
        except KeyError:
            raise KeyError(f"no media leg {leg_id!r}") from None

    def _worker_of(self, leg_or_bridge_id: str) -> int:
        index = self._leg_worker.get(leg_or_bridge_id)
        if index is not None:
            return index
        record = self._bridges.get(leg_or_bridge_id)
        if record is not None:
            return record.worker
        raise KeyError(f"no media leg or bridge {leg_or_bridge_id!r}")

    def _bridge(self, bridge_id: str) -> _BridgeRecord:
        try:
            return self._bridges[bridge_id]
        except KeyError:
            raise KeyError(f"no bridge {bridge_id!r}") from None

    def _forget_membership(self, leg_id: str) -> None:
        """Mirror of the engine's bookkeeping: the leg left its bridge."""
        bridge_id = self._leg_bridge.pop(leg_id, None)
        if bridge_id is None:
            return
        record = self._bridges.get(bridge_id)
        if record is None:
            return
        record.legs.discard(leg_id)
        if record.auto and len(record.legs) < 2:
            del self._bridges[bridge_id]
            for other in record.legs:
                self._leg_bridge.pop(other, None)

    def _leg_command(self, leg_id: str, op: str, *args: Any) -> None:
        self._command(self._workers[self._worker_of_leg(leg_id)], op, leg_id, *args)

    async def _leg_request(self, leg_id: str, op: str, *args: Any) -> Any:
        return await self._request(self._workers[self._worker_of_leg(leg_id)], op, (leg_id, *args))

    def _command(self, w: _WorkerHandle, op: str, *args: Any) -> None:
        if not w.alive or w.channel is None:
            log.warning("media_worker.command_dropped", worker=w.index, op=op)
            return
        w.channel.send((0, op, args))

    def _request(self, w: _WorkerHandle, op: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[Any] = loop.create_future()
        if not w.alive or w.channel is None:
            future.set_exception(WorkerDied(f"media worker {w.index} is dead"))
            return future
        req_id = self._next_id
        self._next_id += 1
        w.pending[req_id] = future
        w.channel.send((req_id, op, args))
        return future

    def _make_on_message(self, w: _WorkerHandle) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            kind = message[0]
            if kind == "ev":
                event = message[1]
                if isinstance(event, PlaybackFinished):  # ids as play() returned them
                    event = dataclasses.replace(event, player_id=f"{w.index}:{event.player_id}")
                self._dispatch(event)
            elif kind == "ok":
                future = w.pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2])
            elif kind == "err":
                _, req_id, type_name, text, op = message
                error = _remote_error(type_name, text)
                future = w.pending.pop(req_id, None)
                if future is not None:
                    if not future.done():
                        future.set_exception(error)
                else:
                    log.warning(
                        "media_worker.command_failed",
                        worker=w.index,
                        op=op,
                        error=type_name,
                        detail=text,
                    )
            elif kind == "ready":
                w.pid = message[1]
                if w.ready is not None and not w.ready.done():
                    w.ready.set_result(None)

        return on_message

    def _dispatch(self, event: MediaEvent) -> None:
        if isinstance(event, LegInactive) and self.on_inactive is not None:
            try:
                self.on_inactive(event.leg_id)
            except Exception:
                log.exception("media_worker.on_inactive_failed", leg=event.leg_id)
        handler = self.on_event
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            log.exception("media_worker.on_event_failed", kind=type(event).__name__)

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
        legs = sorted(w.legs)
        w.legs.clear()
        log.error("media_worker.lost", worker=w.index, pid=w.pid, legs=len(legs))
        for bridge_id in [b for b, r in self._bridges.items() if r.worker == w.index]:
            del self._bridges[bridge_id]
        for leg_id in legs:
            self._leg_worker.pop(leg_id, None)
            self._leg_bridge.pop(leg_id, None)
        # The calls lost their media: report every leg as inactive so they get hung up.
        for leg_id in legs:
            self._dispatch(LegInactive(leg_id))
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

"""Media worker pool over loopback: two worker processes, UDP sockets acting as phones."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import pytest

from media import (
    PCMU,
    DtmfReceived,
    LegClosed,
    LegInactive,
    MediaError,
    MediaEvent,
    PlaybackFinished,
    Playlist,
    ToneSource,
)
from media.g711 import ulaw_encode
from media.rtp import RtpPacket, TelephoneEvent
from media.workers import MediaWorkerPool, RemoteLeg, ToneSpec, split_ports

HOST = "127.0.0.1"
RECV_TIMEOUT = 3.0


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, leg: RemoteLeg) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, leg.local_port))

    async def recv(self) -> RtpPacket:
        return RtpPacket.parse(await asyncio.wait_for(self.queue.get(), RECV_TIMEOUT))

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


async def make_phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=(HOST, 0))
    return phone


def rtp(seq: int, ts: int, ssrc: int = 0x11111111, pt: int = 0, payload: bytes = b"") -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, ts, ssrc, payload or bytes(range(160))).serialize()


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[MediaEvent] = asyncio.Queue()

    def __call__(self, event: MediaEvent) -> None:
        self.queue.put_nowait(event)

    async def next(self, kind: type[Any], timeout: float = RECV_TIMEOUT) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.queue.get()
                if isinstance(event, kind):
                    return event


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def pool(events: Events) -> AsyncIterator[MediaWorkerPool]:
    base = random.randrange(20000, 60000 - 400, 2)
    p = MediaWorkerPool(HOST, base, base + 399, workers=2, inactivity_timeout=30.0)
    p.subscribe(events)
    await p.start()
    yield p
    await p.close()


def tone_payload(k: int, freq: float = 1000.0) -> bytes:
    t = (np.arange(160) + 160 * k) / 8000
    return ulaw_encode((8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def level(packet: RtpPacket) -> float:
    from media.g711 import ulaw_decode

    return float(np.abs(ulaw_decode(packet.payload).astype(np.int32)).mean())


async def drain(phone: Phone) -> None:
    while not phone.queue.empty():
        phone.queue.get_nowait()


async def talk(phone: Phone, leg: RemoteLeg, frames: int, seq: int = 0) -> None:
    """Send ``frames`` 20 ms frames of a 1 kHz tone, paced like a phone."""
    for k in range(frames):
        phone.send(rtp(seq + k, 160 * (seq + k), payload=tone_payload(seq + k)), leg)
        await asyncio.sleep(0.02)


async def loudest(phone: Phone, wait: float = 0.6) -> float:
    """The loudest packet a phone received within ``wait`` seconds (0 if none)."""
    # A deadline checked on every packet, not asyncio.timeout around recv()'s wait_for: on
    # Python 3.11 wait_for can swallow the outer cancellation when a packet arrives at the
    # same moment, and a bridge that keeps sending would then keep this loop going forever.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    best = 0.0
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(phone.queue.get(), left)
        except TimeoutError:
            break
        best = max(best, level(RtpPacket.parse(data)))
    return best


async def call(
    pool: MediaWorkerPool, a: str = "a", b: str = "b", *, split: bool = False
) -> tuple[Phone, Phone, RemoteLeg, RemoteLeg]:
    """Two legs bridged: in one worker (``near``), or one in each (``split``)."""
    phone_a, phone_b = await make_phone(), await make_phone()
    leg_a = await pool.create_leg(a, worker=0 if split else None)
    leg_b = await pool.create_leg(b, worker=1) if split else await pool.create_leg(b, near=a)
    assert (leg_a.worker != leg_b.worker) == split
    pool.set_remote(a, HOST, phone_a.port, PCMU, 101)
    pool.set_remote(b, HOST, phone_b.port, PCMU, 101)
    pool.bridge(a, b)
    await settle(pool)
    return phone_a, phone_b, leg_a, leg_b


async def settle(pool: MediaWorkerPool) -> None:
    """Wait until every worker applied the commands given so far (``stats`` is answered
    after them: one ordered stream per worker, link set-ups first)."""
    async with asyncio.timeout(RECV_TIMEOUT):
        await pool.stats()


def test_port_range_is_split_on_even_boundaries() -> None:
    assert split_ports(10001, 10020, 2) == [(10002, 10009), (10010, 10020)]  # 4 + 5 pairs
    with pytest.raises(ValueError, match="cannot feed"):
        split_ports(10000, 10003, 3)


async def test_legs_spread_and_near_keeps_a_call_in_one_worker(pool: MediaWorkerPool) -> None:
    x = await pool.create_leg("x")
    y = await pool.create_leg("y")
    assert {x.worker, y.worker} == {0, 1}  # least loaded first
    z = await pool.create_leg("z", near="y")
    assert z.worker == y.worker
    assert z.local_port % 2 == 0 and z.local_port != y.local_port
    assert pool.leg_address("z") == z
    w = await pool.create_leg("w", near="nobody")  # an unknown hint is only a hint
    assert w.worker == x.worker
    with pytest.raises(ValueError, match="already exists"):
        await pool.create_leg("x")
    pool.create_bridge("conf", near="y")
    assert pool.worker_of("conf") == y.worker


async def test_relay_in_one_worker_and_counters_reach_the_main_process(
    pool: MediaWorkerPool,
) -> None:
    phone_a, phone_b, leg_a, leg_b = await call(pool)
    for k in range(5):
        phone_a.send(rtp(100 + k, 1000 + 160 * k), leg_a)
    got = [await phone_b.recv() for _ in range(5)]
    assert all(p.ssrc != 0x11111111 for p in got)
    assert len({p.ssrc for p in got}) == 1
    assert [(p.sequence_number - got[0].sequence_number) & 0xFFFF for p in got] == [0, 1, 2, 3, 4]
    assert got[0].payload == bytes(range(160))
    phone_b.send(rtp(7, 0, ssrc=0x22222222), leg_b)
    back = await phone_a.recv()
    assert back.ssrc not in (0x22222222, got[0].ssrc)
    async with asyncio.timeout(3):  # workers report counters once a second
        while pool.leg_stats("a").packets_in < 5:
            await asyncio.sleep(0.05)
    assert pool.leg_stats("a").packets_in == 5
    quality = pool.leg_quality("a")
    assert 4 <= quality.packets_received <= 5  # RFC 3550 §A.1 probation may skip the first
    assert quality.packets_lost == 0
    with pytest.raises(KeyError):
        pool.leg_quality("nobody")
    phone_a.close()
    phone_b.close()


async def test_bridge_across_workers_carries_audio_both_ways(
    pool: MediaWorkerPool, events: Events
) -> None:
    phone_a, phone_b, leg_a, leg_b = await call(pool, split=True)
    bridge_id = pool.bridge_of("a")
    assert bridge_id is not None and pool.bridge_of("b") == bridge_id
    assert pool.bridge_legs(bridge_id) == ("a", "b")
    await talk(phone_a, leg_a, 10)
    heard_b = [await phone_b.recv() for _ in range(5)]
    assert all(p.ssrc != 0x11111111 for p in heard_b)
    assert max(level(p) for p in heard_b) > 1000  # the tone, relayed twice over loopback
    phone_b.send(rtp(1, 0, ssrc=0x22222222, payload=tone_payload(0)), leg_b)
    assert level(await phone_a.recv()) > 1000
    pool.unbridge("a")
    assert pool.bridge_of("a") is None and pool.bridge_of("b") is None
    with pytest.raises(KeyError):
        pool.bridge_legs(bridge_id)
    await asyncio.sleep(0.2)
    await drain(phone_b)
    await talk(phone_a, leg_a, 5, seq=50)
    assert await loudest(phone_b, 0.3) == 0.0  # the link is gone
    # The helper legs of the link closed without a trace for subscribers.
    closed = []
    while not events.queue.empty():
        event = events.queue.get_nowait()
        if isinstance(event, LegClosed):
            closed.append(event.leg_id)
    assert closed == []
    phone_a.close()
    phone_b.close()


async def test_conference_across_workers_with_whisper_and_taps(pool: MediaWorkerPool) -> None:
    phones = [await make_phone() for _ in range(3)]
    legs = [await pool.create_leg(name, worker=i % 2) for i, name in enumerate("xyz")]
    for phone, leg in zip(phones, legs, strict=True):
        pool.set_remote(leg.leg_id, HOST, phone.port, PCMU, 101)
    pool.create_bridge("room")
    for leg in legs:
        pool.join("room", leg.leg_id)
    await settle(pool)
    assert pool.bridge_legs("room") == ("x", "y", "z")
    home = pool.worker_of("room")
    assert home == legs[0].worker  # an empty room moves to its first member
    frames: list[tuple[np.ndarray, int]] = []
    tap = pool.add_tap("room", "y", lambda pcm, rate: frames.append((pcm.copy(), rate)))
    await settle(pool)
    # y (in the other worker) speaks: x and z hear it, the tap gets y's decoded voice.
    await talk(phones[1], legs[1], 25)
    assert await loudest(phones[0]) > 1000
    assert await loudest(phones[2]) > 1000
    assert frames and {rate for _, rate in frames} == {8000}
    assert max(float(np.abs(pcm.astype(np.int32)).mean()) for pcm, _ in frames) > 1000
    # Whisper: z stops hearing y, x still does.
    pool.set_hears("room", "z", "y", False)
    await settle(pool)
    await asyncio.sleep(0.1)
    for phone in phones:
        await drain(phone)
    await talk(phones[1], legs[1], 25, seq=100)
    assert await loudest(phones[0]) > 1000
    assert await loudest(phones[2]) < 100
    pool.remove_tap(tap)
    await asyncio.sleep(0.1)
    count = len(frames)
    await asyncio.sleep(0.2)
    assert len(frames) == count
    pool.leave("room", "y")
    assert pool.bridge_of("y") is None and pool.bridge_legs("room") == ("x", "z")
    pool.destroy_bridge("room")
    assert pool.bridge_of("x") is None
    for phone in phones:
        phone.close()


async def test_heard_tap_and_players_with_on_done(
    pool: MediaWorkerPool, events: Events, tmp_path: Any
) -> None:
    import soundfile

    phone = await make_phone()
    await pool.create_leg("p")
    pool.set_remote("p", HOST, phone.port, PCMU, 101)
    heard: list[np.ndarray] = []
    tap = pool.add_tap_heard("p", lambda pcm, rate: heard.append(pcm.copy()))
    await settle(pool)
    done: list[PlaybackFinished] = []
    # A playlist of a file: the worker loads it (off its loop) and plays it.
    wav = tmp_path / "beep.wav"
    t = np.arange(1600) / 8000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)), 8000)
    player = pool.play("p", Playlist([str(wav)], 8000), on_done=done.append)
    finished: PlaybackFinished = await events.next(PlaybackFinished)
    assert finished == PlaybackFinished("p", player) and done == [finished]
    assert max([level(await phone.recv()) for _ in range(3)]) > 500
    assert heard and max(float(np.abs(p.astype(np.int32)).mean()) for p in heard) > 500
    pool.remove_tap(tap)
    # The recorder's stereo tap from a worker: interleaved, the prompt on the right.
    stereo: list[np.ndarray] = []
    tap = pool.add_tap_stereo("p", lambda pcm, rate: stereo.append(pcm.copy()))
    await settle(pool)
    pool.play("p", Playlist([str(wav)], 8000), on_done=done.append)
    await events.next(PlaybackFinished)
    pool.remove_tap(tap)
    assert stereo and all(p.shape == (320,) for p in stereo)
    assert max(float(np.abs(p[1::2].astype(np.int32)).mean()) for p in stereo) > 500
    assert max(int(np.abs(p[0::2]).max()) for p in stereo) == 0  # the phone said nothing
    done.clear()
    # Any picklable source plays from a copy; stopping it reports stopped=True.
    looping = pool.play("p", ToneSource("ringback", "us", 8000), on_done=done.append)
    await phone.recv()
    pool.stop_play(looping)
    stopped: PlaybackFinished = await events.next(PlaybackFinished)
    assert stopped.player_id == looping and stopped.stopped and done[-1] == stopped
    pool.stop_play(looping)  # idempotent
    # Sources that cannot cross a process boundary are refused at once.
    with pytest.raises(TypeError, match="cannot be sent"):
        pool.play("p", cast(Any, _Unpicklable()))
    injection = pool.inject("p", ToneSpec("dial", duration=1.0))
    pool.stop_injection(injection)
    phone.close()


class _Unpicklable:
    rate = 8000

    def __init__(self) -> None:
        self.lock = __import__("threading").Lock()

    def read(self) -> None:
        return None


async def test_tone_reaches_the_phone(pool: MediaWorkerPool) -> None:
    phone = await make_phone()
    await pool.create_leg("t")
    pool.set_remote("t", HOST, phone.port, PCMU, 101)
    pool.start_tone("t", "ringback")
    first = await phone.recv()
    assert first.payload_type == 0 and len(first.payload) == 160
    assert first.payload != b"\xff" * 160  # not silence
    pool.stop_tone("t")
    phone.close()


@pytest.mark.parametrize("split", [False, True])
async def test_rfc4733_digit_arrives_once_in_the_main_process(
    pool: MediaWorkerPool, events: Events, split: bool
) -> None:
    phone_a, _phone_b, leg_a, _leg_b = await call(pool, split=split)
    ts = 8000
    for k, (end, duration) in enumerate([(False, 160), (False, 320), (True, 480), (True, 480)]):
        event = TelephoneEvent(5, end=end, volume=10, duration=duration).serialize()
        phone_a.send(rtp(10 + k, ts, pt=101, payload=event), leg_a)
    digit: DtmfReceived = await events.next(DtmfReceived)
    assert (digit.leg_id, digit.digit, digit.source) == ("a", "5", "rfc4733")
    assert digit.duration_ms == 60
    with pytest.raises(TimeoutError):  # the link's helper legs do not report it again
        await events.next(DtmfReceived, timeout=0.5)


async def test_close_leg_publishes_leg_closed(pool: MediaWorkerPool, events: Events) -> None:
    await pool.create_leg("gone")
    pool.close_leg("gone")
    pool.close_leg("gone")
    assert "gone" not in pool
    assert (await events.next(LegClosed)).leg_id == "gone"


async def test_killed_worker_reports_its_legs_inactive(
    pool: MediaWorkerPool, events: Events
) -> None:
    _, _, leg_a, _ = await call(pool, "a", "b")
    c = await pool.create_leg("c")
    victim = leg_a.worker
    assert c.worker != victim
    died: list[tuple[int, int | None]] = []
    pool.on_worker_died = lambda index, code: died.append((index, code))
    pid = pool.pids()[victim]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    gone = {(await events.next(LegInactive)).leg_id for _ in range(2)}
    assert gone == {"a", "b"}
    async with asyncio.timeout(RECV_TIMEOUT):  # reported once the process is reaped
        while not died:
            await asyncio.sleep(0.02)
    assert died == [(victim, -signal.SIGKILL)]
    assert not pool.alive(victim)
    assert "a" not in pool and "c" in pool
    with pytest.raises(KeyError):
        pool.leg_stats("a")
    assert (await pool.create_leg("d")).worker == c.worker  # the survivor takes new legs
    assert pool.leg_stats("c").packets_in == 0


async def test_close_leaves_no_processes(events: Events) -> None:
    base = random.randrange(20000, 60000 - 400, 2)
    pool = MediaWorkerPool(HOST, base, base + 99, workers=2, on_event=events)
    await pool.start()
    await pool.create_leg("a")
    assert len(await pool.stats()) == 2
    pids = [p for p in pool.pids() if p is not None]
    assert len(pids) == 2
    await pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(MediaError, match="not running"):
        await pool.create_leg("b")


async def test_worker_log_lines_are_written_by_the_main_process(events: Events) -> None:
    import logging

    from structlog.testing import capture_logs

    base = random.randrange(20000, 60000 - 400, 2)
    pool = MediaWorkerPool(
        HOST, base, base + 99, workers=1, inactivity_timeout=0.3, log_level=logging.INFO
    )
    pool.subscribe(events)
    with capture_logs() as logs:
        await pool.start()
        try:
            await pool.create_leg("quiet")
            await pool.create_leg("other", near="quiet")
            pool.bridge("quiet", "other")
            assert (await events.next(LegInactive)).leg_id in ("quiet", "other")
            await settle(pool)
        finally:
            await pool.close()
    inactive = [e for e in logs if e["event"] == "media.leg_inactive"]
    assert inactive and inactive[0]["worker"] == 0 and inactive[0]["log_level"] == "info"
    assert inactive[0]["leg"] in ("quiet", "other")


async def test_rebridging_across_workers_moves_the_link_and_frees_helpers(
    pool: MediaWorkerPool,
) -> None:
    """A transfer: a talks to b (other worker), then to c; b's link goes, c's comes."""
    phones = [await make_phone() for _ in range(3)]
    legs = [
        await pool.create_leg("a", worker=0),
        await pool.create_leg("b", worker=1),
        await pool.create_leg("c", worker=1),
    ]
    for phone, leg in zip(phones, legs, strict=True):
        pool.set_remote(leg.leg_id, HOST, phone.port, PCMU, 101)
    first = pool.bridge("a", "b")
    await settle(pool)
    assert sum(s.legs for s in await pool.stats()) == 5  # a, b, c and one link's 2 helpers
    second = pool.bridge("a", "c")
    assert second != first and pool.bridge_of("b") is None
    await settle(pool)
    assert sum(s.legs for s in await pool.stats()) == 5  # b's helpers closed, c's made
    await talk(phones[0], legs[0], 15)
    assert await loudest(phones[2]) > 1000
    assert await loudest(phones[1], 0.2) == 0.0
    pool.close_leg("c")  # the bridge goes with its party, and the link with it
    assert pool.bridge_of("a") is None
    await settle(pool)
    assert sum(s.legs for s in await pool.stats()) == 2
    for phone in phones:
        phone.close()


@pytest.mark.parametrize("split", [False, True])
async def test_mute_and_digits_sent_to_a_phone(pool: MediaWorkerPool, split: bool) -> None:
    phone_a, phone_b, leg_a, _leg_b = await call(pool, split=split)
    await talk(phone_a, leg_a, 10)
    assert await loudest(phone_b) > 1000
    pool.mute("a", inbound=True)  # what a says goes nowhere
    await settle(pool)
    await drain(phone_b)
    await talk(phone_a, leg_a, 10, seq=20)
    assert await loudest(phone_b) < 100
    pool.mute("a", inbound=False)
    pool.send_dtmf("b", "7", 100)
    events: list[TelephoneEvent] = []
    async with asyncio.timeout(RECV_TIMEOUT):
        while not any(e.end for e in events):
            packet = await phone_b.recv()
            if packet.payload_type == 101:
                events.append(TelephoneEvent.parse(packet.payload))
    assert {e.event for e in events} == {7}
    phone_a.close()
    phone_b.close()

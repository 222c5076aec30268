"""Media worker pool over loopback: two worker processes, UDP sockets acting as phones."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from media import PCMU, DtmfReceived, LegInactive, MediaError, MediaEvent, PlaybackFinished
from media.rtp import RtpPacket, TelephoneEvent
from media.workers import (
    CrossWorkerBridge,
    MediaWorkerPool,
    RemoteLeg,
    ToneSpec,
    split_ports,
)

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
    p = MediaWorkerPool(HOST, base, base + 399, workers=2, on_event=events, inactivity_timeout=30.0)
    await p.start()
    yield p
    await p.close()


async def call(
    pool: MediaWorkerPool, a: str = "a", b: str = "b"
) -> tuple[Phone, Phone, RemoteLeg, RemoteLeg]:
    phone_a, phone_b = await make_phone(), await make_phone()
    leg_a = await pool.create_leg(a)
    leg_b = await pool.create_leg(b, near=a)
    assert leg_a.worker == leg_b.worker
    pool.set_remote(a, HOST, phone_a.port, PCMU, 101)
    pool.set_remote(b, HOST, phone_b.port, PCMU, 101)
    await pool.bridge(a, b)
    return phone_a, phone_b, leg_a, leg_b


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
    with pytest.raises(CrossWorkerBridge):
        await pool.bridge("x", "y")
    with pytest.raises(ValueError, match="already exists"):
        await pool.create_leg("x")
    pool.create_bridge("conf", near="x")
    with pytest.raises(CrossWorkerBridge):
        pool.join("conf", "y")


async def test_relay_rewrites_ssrc_in_the_worker(pool: MediaWorkerPool) -> None:
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
    assert (await pool.stats("a")).packets_in == 5
    quality = await pool.leg_quality("a")
    assert 4 <= quality.packets_received <= 5  # RFC 3550 §A.1 probation may skip the first
    assert quality.packets_lost == 0
    with pytest.raises(KeyError):
        await pool.leg_quality("nobody")
    phone_a.close()
    phone_b.close()


async def test_tone_and_played_tone_reach_the_phone(pool: MediaWorkerPool, events: Events) -> None:
    phone = await make_phone()
    await pool.create_leg("t")
    pool.set_remote("t", HOST, phone.port, PCMU, 101)
    pool.start_tone("t", "ringback")
    first = await phone.recv()
    assert first.payload_type == 0 and len(first.payload) == 160
    assert first.payload != b"\xff" * 160  # not silence
    pool.stop_tone("t")
    player = await pool.play("t", ToneSpec("dial", duration=0.1))
    done: PlaybackFinished = await events.next(PlaybackFinished)
    assert done.leg_id == "t"
    assert done.player_id == player
    assert not done.stopped
    phone.close()


async def test_rfc4733_digit_arrives_in_the_main_process(
    pool: MediaWorkerPool, events: Events
) -> None:
    phone_a, _phone_b, leg_a, _leg_b = await call(pool)
    ts = 8000
    for k, (end, duration) in enumerate([(False, 160), (False, 320), (True, 480), (True, 480)]):
        event = TelephoneEvent(5, end=end, volume=10, duration=duration).serialize()
        phone_a.send(rtp(10 + k, ts, pt=101, payload=event), leg_a)
    digit: DtmfReceived = await events.next(DtmfReceived)
    assert (digit.leg_id, digit.digit, digit.source) == ("a", "5", "rfc4733")
    assert digit.duration_ms == 60


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
        await pool.stats("a")
    assert (await pool.create_leg("d")).worker == c.worker  # the survivor takes new legs
    assert (await pool.stats("c")).packets_in == 0


async def test_close_leaves_no_processes(events: Events) -> None:
    base = random.randrange(20000, 60000 - 400, 2)
    pool = MediaWorkerPool(HOST, base, base + 99, workers=2, on_event=events)
    await pool.start()
    await pool.create_leg("a")
    pids = [p for p in pool.pids() if p is not None]
    assert len(pids) == 2
    await pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(MediaError, match="not running"):
        await pool.create_leg("b")

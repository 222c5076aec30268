"""Media engine over loopback: two UDP sockets act as phones around two bridged legs."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import pytest

from media import PCMA, PCMU, Codec, MediaEngine, PortsExhausted, ToneGenerator
from media.g711 import ULAW_TO_ALAW, ulaw_decode
from media.rtp import RtpPacket, TelephoneEvent, serial_diff
from media.tones import TONE_PLANS, tone_cycle

HOST = "127.0.0.1"
RECV_TIMEOUT = 2.0


class Phone(asyncio.DatagramProtocol):
    """A bare UDP endpoint recording what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    async def recv(self) -> RtpPacket:
        data, _ = await asyncio.wait_for(self.queue.get(), RECV_TIMEOUT)
        return RtpPacket.parse(data)

    async def recv_n(self, n: int) -> list[RtpPacket]:
        return [await self.recv() for _ in range(n)]


async def make_phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=(HOST, 0))
    return phone


def rtp(seq: int, ts: int, ssrc: int = 0x11111111, pt: int = 0, payload: bytes = b"") -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, ts, ssrc, payload or bytes(range(160))).serialize()


def random_range(width: int = 1000) -> tuple[int, int]:
    # Other test runs share the machine: spread ranges out (collisions are retried anyway).
    base = random.randrange(20000, 60000, 2)
    return base, base + width - 1


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    low, high = random_range()
    eng = MediaEngine(HOST, low, high, inactivity_timeout=30.0)
    yield eng
    await eng.close()


async def bridged_pair(
    engine: MediaEngine,
    codec_a: Codec = PCMU,
    codec_b: Codec = PCMU,
    dtmf_a: int | None = 101,
    dtmf_b: int | None = 101,
) -> tuple[Phone, Phone]:
    phone_a, phone_b = await make_phone(), await make_phone()
    leg_a = await engine.create_leg("a")
    leg_b = await engine.create_leg("b")
    leg_a.set_remote(*phone_a.addr, codec_a, dtmf_a)
    leg_b.set_remote(*phone_b.addr, codec_b, dtmf_b)
    engine.bridge("a", "b")
    return phone_a, phone_b


async def test_create_leg_binds_even_rtp_and_odd_rtcp(engine: MediaEngine) -> None:
    leg = await engine.create_leg("x", advertise_host="203.0.113.7")
    assert leg.local_port % 2 == 0 and engine.port_min <= leg.local_port < engine.port_max
    assert leg.local_rtcp_port == leg.local_port + 1
    assert leg.local_host == "203.0.113.7"
    for port in (leg.local_port, leg.local_rtcp_port):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            probe.bind((HOST, port))
        probe.close()
    with pytest.raises(ValueError, match="already exists"):
        await engine.create_leg("x")
    assert engine.get_leg("x") is leg and "x" in engine and len(engine) == 1
    with pytest.raises(KeyError, match="no media leg 'nope'"):
        engine.get_leg("nope")


async def test_close_leg_releases_ports_and_is_idempotent(engine: MediaEngine) -> None:
    leg = await engine.create_leg("x")
    engine.close_leg("x")
    engine.close_leg("x")
    await asyncio.sleep(0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, leg.local_port))  # free again
    probe.close()
    assert "x" not in engine


async def test_port_in_use_is_skipped_and_exhaustion_reported() -> None:
    low = random.randrange(20000, 60000, 2)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        blocker.bind((HOST, low + 1))  # the RTCP half of the first pair
    except OSError:
        blocker.close()
        pytest.skip("port taken by someone else")
    eng = MediaEngine(HOST, low, low + 3)  # two pairs: (low, low+1) and (low+2, low+3)
    try:
        leg = await eng.create_leg("a")
        assert leg.local_port == low + 2  # EADDRINUSE on low+1 -> next pair
        with pytest.raises(PortsExhausted):
            await eng.create_leg("b")
    finally:
        blocker.close()
        await eng.close()


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="holds no even/odd pair"):
        MediaEngine(HOST, 30001, 30002)
    with pytest.raises(ValueError, match="inactivity_timeout"):
        MediaEngine(HOST, 30000, 30010, inactivity_timeout=0)
    with pytest.raises(ValueError, match="tone plan"):
        MediaEngine(HOST, 30000, 30010, tone_plan="xx")


async def test_relay_same_codec_rewrites_ssrc_and_keeps_sequence_continuous(
    engine: MediaEngine,
) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    leg_a, leg_b = engine.get_leg("a"), engine.get_leg("b")
    sent = [rtp(1000 + i, 50000 + 160 * i, payload=bytes([i]) * 160) for i in range(5)]
    for packet in sent:
        phone_a.send(packet, leg_a.local_port)
    got = await phone_b.recv_n(5)
    assert {p.ssrc for p in got} == {leg_b.ssrc}
    assert leg_b.ssrc != 0x11111111
    assert [p.payload for p in got] == [RtpPacket.parse(s).payload for s in sent]
    assert all(p.payload_type == 0 for p in got)
    seqs = [p.sequence_number for p in got]
    assert all(serial_diff(b, a) == 1 for a, b in itertools.pairwise(seqs))
    assert all(serial_diff(b.timestamp, a.timestamp, 32) == 160 for a, b in itertools.pairwise(got))
    assert got[0].marker and not any(p.marker for p in got[1:])
    assert leg_a.stats.packets_in == 5 and leg_b.stats.packets_out == 5
    assert leg_a.stats.bytes_in == sum(len(s) for s in sent)
    assert leg_a.stats.last_packet_at is not None

    # And the other way round.
    phone_b.send(rtp(7, 0, ssrc=0x2222), leg_b.local_port)
    back = await phone_a.recv()
    assert back.ssrc == leg_a.ssrc and back.payload == bytes(range(160))


async def test_source_ssrc_change_is_rebased(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    port = engine.get_leg("a").local_port
    for i in range(3):
        phone_a.send(rtp(10 + i, 160 * i, ssrc=0xAAAA), port)
    first = await phone_b.recv_n(3)
    for i in range(3):  # a new source with unrelated numbers (e.g. after a transfer)
        phone_a.send(rtp(60000 + i, 9_999_999 + 160 * i, ssrc=0xBBBB), port)
    second = await phone_b.recv_n(3)
    seqs = [p.sequence_number for p in first + second]
    assert all(serial_diff(b, a) == 1 for a, b in itertools.pairwise(seqs))
    assert serial_diff(second[0].timestamp, first[-1].timestamp, 32) >= 160
    assert second[0].marker and {p.ssrc for p in first + second} == {engine.get_leg("b").ssrc}


async def test_pcmu_to_pcma_translation(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine, PCMU, Codec(8, "pcma", 8000))
    payload = bytes(range(40, 200))
    phone_a.send(rtp(1, 0, payload=payload), engine.get_leg("a").local_port)
    got = await phone_b.recv()
    assert got.payload_type == 8
    assert got.payload == payload.translate(ULAW_TO_ALAW)
    # And PCMA from B becomes PCMU towards A.
    alaw = payload.translate(ULAW_TO_ALAW)
    phone_b.send(rtp(1, 0, pt=8, payload=alaw), engine.get_leg("b").local_port)
    back = await phone_a.recv()
    assert back.payload_type == 0
    decoded = ulaw_decode(back.payload).astype(int)
    original = ulaw_decode(payload).astype(int)
    assert max(abs(decoded - original) - abs(original) // 16) <= 16


async def test_translation_keeps_csrc_and_padding_untouched(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine, PCMU, PCMA)
    packet = RtpPacket(0, 1, 0, 5, b"\x00" * 160, csrc=(0xFFFFFFFF,), padding=4)
    phone_a.send(packet.serialize(), engine.get_leg("a").local_port)
    got = await phone_b.recv()
    assert got.csrc == (0xFFFFFFFF,) and got.padding == 4
    assert got.payload == (b"\x00" * 160).translate(ULAW_TO_ALAW)


async def test_telephone_event_payload_type_is_mapped(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine, PCMU, PCMA, dtmf_a=101, dtmf_b=96)
    event = TelephoneEvent(5, end=False, volume=10, duration=160).serialize()
    phone_a.send(rtp(1, 0, pt=101, payload=event), engine.get_leg("a").local_port)
    got = await phone_b.recv()
    assert got.payload_type == 96
    assert got.payload == event  # events are never transcoded
    assert TelephoneEvent.parse(got.payload).digit == "5"


async def test_telephone_event_dropped_when_peer_has_none(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine, dtmf_b=None)
    leg_a = engine.get_leg("a")
    phone_a.send(rtp(1, 0, pt=101, payload=TelephoneEvent(1).serialize()), leg_a.local_port)
    phone_a.send(rtp(2, 160), leg_a.local_port)  # audio still flows, and arrives first
    got = await phone_b.recv()
    assert got.payload_type == 0
    assert leg_a.stats.dropped == 1


async def test_unknown_payload_type_is_dropped(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    leg_a = engine.get_leg("a")
    phone_a.send(rtp(1, 0, pt=18, payload=b"\x01" * 20), leg_a.local_port)  # G.729
    phone_a.send(rtp(2, 160), leg_a.local_port)
    assert (await phone_b.recv()).payload_type == 0
    assert leg_a.stats.dropped == 1


async def test_symmetric_rtp_latches_to_the_real_source(engine: MediaEngine) -> None:
    phone_a, phone_b = await make_phone(), await make_phone()
    stranger = await make_phone()
    leg_a = await engine.create_leg("a")
    leg_b = await engine.create_leg("b")
    leg_a.set_remote(*phone_a.addr, PCMU, 101)
    # B's SDP shows its private address (behind NAT): nothing listens there.
    leg_b.set_remote("127.0.0.1", 9, PCMU, 101)
    engine.bridge("a", "b")
    assert leg_b.remote_address == ("127.0.0.1", 9) and not leg_b.latched
    phone_b.send(rtp(1, 0, ssrc=0xB), leg_b.local_port)  # from the NAT's public mapping
    assert (await phone_a.recv()).payload == bytes(range(160))
    assert leg_b.latched and leg_b.remote_address == phone_b.addr
    phone_a.send(rtp(1, 0, ssrc=0xA), leg_a.local_port)
    got = await phone_b.recv()  # reached B at its latched address
    assert got.ssrc == leg_b.ssrc
    # Someone else cannot inject audio into the call.
    stranger.send(rtp(99, 0, ssrc=0xBAD), leg_b.local_port)
    phone_b.send(rtp(2, 160, ssrc=0xB), leg_b.local_port)
    assert (await phone_a.recv()).sequence_number is not None
    assert leg_b.stats.foreign == 1
    assert stranger.queue.empty() and phone_a.queue.empty()
    # A re-INVITE with a new address re-arms latching.
    leg_b.set_remote("127.0.0.1", 11, PCMU, 101)
    assert not leg_b.latched and leg_b.remote_address == ("127.0.0.1", 11)


async def test_malformed_packets_are_counted_and_dropped(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    leg_a = engine.get_leg("a")
    port = leg_a.local_port
    phone_a.send(b"\x80\x00\x00", port)  # too short
    phone_a.send(bytes.fromhex("40000001000000020000000300"), port)  # version 1
    phone_a.send(bytes.fromhex("8f000001000000020000000300"), port)  # 15 CSRCs missing
    phone_a.send(bytes.fromhex("81c90007") + bytes(28), port)  # RTCP RR on the RTP port
    phone_a.send(rtp(1, 0), port)
    assert (await phone_b.recv()).payload_type == 0  # the good one still passes
    assert leg_a.stats.malformed == 3
    assert leg_a.stats.rtcp_in == 1
    assert leg_a.stats.packets_in == 1


async def test_rtcp_port_is_drained(engine: MediaEngine) -> None:
    phone_a, _ = await bridged_pair(engine)
    leg_a = engine.get_leg("a")
    phone_a.send(bytes.fromhex("80c80006") + bytes(24), leg_a.local_rtcp_port)
    phone_a.send(rtp(1, 0), leg_a.local_port)
    for _ in range(100):
        if leg_a.stats.rtcp_in:
            break
        await asyncio.sleep(0.01)
    assert leg_a.stats.rtcp_in == 1


async def test_unbridge_stops_relay(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    engine.unbridge("b")
    assert engine.get_leg("a").bridged_to is None
    leg_a = engine.get_leg("a")
    phone_a.send(rtp(1, 0), leg_a.local_port)
    for _ in range(100):
        if leg_a.stats.packets_in:
            break
        await asyncio.sleep(0.01)
    assert leg_a.stats.dropped == 1 and phone_b.queue.empty()
    engine.bridge("a", "b")
    phone_a.send(rtp(2, 160), leg_a.local_port)
    assert (await phone_b.recv()).payload_type == 0


async def test_inactivity_callback_fires_once_per_leg() -> None:
    low, high = random_range()
    fired: list[str] = []
    both = asyncio.Event()

    def on_inactive(leg_id: str) -> None:
        fired.append(leg_id)
        if len(fired) >= 2:
            both.set()

    eng = MediaEngine(HOST, low, high, inactivity_timeout=0.3, on_inactive=on_inactive)
    try:
        unbridged = await eng.create_leg("idle-but-not-bridged")
        await bridged_pair(eng)
        await asyncio.wait_for(both.wait(), 3.0)
        await asyncio.sleep(0.4)  # more check periods pass: no repeats
        assert sorted(fired) == ["a", "b"]
        assert unbridged.bridged_to is None
    finally:
        await eng.close()


async def test_inactivity_not_reported_for_a_leg_that_receives() -> None:
    low, high = random_range()
    fired: list[str] = []
    eng = MediaEngine(HOST, low, high, inactivity_timeout=0.5, on_inactive=fired.append)
    try:
        phone_a, phone_b = await bridged_pair(eng)
        port = eng.get_leg("a").local_port
        seq = 0
        while "b" not in fired:  # keep A alive until silent B is reported
            assert seq < 300, "leg b never reported inactive"
            phone_a.send(rtp(seq, 160 * seq), port)
            await phone_b.recv()
            seq += 1
            await asyncio.sleep(0.02)
        assert fired == ["b"]
    finally:
        await eng.close()


async def test_ringback_tone_packets(engine: MediaEngine) -> None:
    phone = await make_phone()
    leg = await engine.create_leg("caller")
    leg.set_remote(*phone.addr, PCMA, 101)
    leg.start_tone("ringback")
    assert leg.tone_playing == "ringback"
    got = await phone.recv_n(4)
    leg.stop_tone()
    assert all(p.payload_type == 8 and len(p.payload) == 160 for p in got)
    assert {p.ssrc for p in got} == {leg.ssrc}
    assert got[0].marker
    seqs = [p.sequence_number for p in got]
    assert all(serial_diff(b, a) == 1 for a, b in itertools.pairwise(seqs))
    assert all(serial_diff(b.timestamp, a.timestamp, 32) == 160 for a, b in itertools.pairwise(got))
    cycle = tone_cycle("ringback", "PCMA")
    assert b"".join(p.payload for p in got) == cycle[: 4 * 160]
    with pytest.raises(ValueError, match="unknown tone"):
        leg.start_tone("birdsong")


async def test_tone_then_relay_is_one_continuous_stream(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    leg_b = engine.get_leg("b")
    leg_b.start_tone("ringback")
    tone = await phone_b.recv_n(3)
    leg_b.stop_tone()
    voice = b"\x55" * 160
    phone_a.send(rtp(30000, 123456, ssrc=0xCAFE, payload=voice), engine.get_leg("a").local_port)
    while (packet := await phone_b.recv()).payload != voice:
        tone.append(packet)  # tone packets still in flight when it was stopped
    audio = packet
    assert audio.ssrc == tone[-1].ssrc == leg_b.ssrc
    assert serial_diff(audio.sequence_number, tone[-1].sequence_number) == 1
    assert serial_diff(audio.timestamp, tone[-1].timestamp, 32) >= 160
    assert audio.marker


async def test_relay_towards_a_leg_playing_a_tone_is_dropped(engine: MediaEngine) -> None:
    phone_a, phone_b = await bridged_pair(engine)
    leg_a, leg_b = engine.get_leg("a"), engine.get_leg("b")
    leg_b.start_tone("busy")
    phone_a.send(rtp(1, 0, payload=b"\x42" * 160), leg_a.local_port)
    for _ in range(100):
        if leg_a.stats.packets_in:
            break
        await asyncio.sleep(0.01)
    leg_b.stop_tone()
    assert leg_a.stats.dropped == 1
    while not phone_b.queue.empty():
        assert (await phone_b.recv()).payload != b"\x42" * 160


def test_tone_generator_frames() -> None:
    gen = ToneGenerator("ringback", "pcmu")
    cycle = tone_cycle("ringback", "PCMU")
    assert len(cycle) == 6 * 8000  # US ringback: 2 s on, 4 s off
    frames = [gen.next_frame() for _ in range(300)]  # one full cycle
    assert all(len(f) == 160 for f in frames)
    assert b"".join(frames) == cycle
    assert gen.next_frame() == frames[0]  # wraps around
    on = ulaw_decode(b"".join(frames[:100])).astype(float)
    off = ulaw_decode(b"".join(frames[100:])).astype(float)
    assert abs(off).max() == 0
    # Energy at 440 and 480 Hz, nothing much at 1 kHz (DFT over 2 s: 0.5 Hz bins).
    spectrum = abs(np.fft.rfft(on))
    assert spectrum[880] > 100 * spectrum[2000] and spectrum[960] > 100 * spectrum[2000]
    gen.skip(299)
    assert gen.next_frame() == frames[0]


@pytest.mark.parametrize("plan", sorted(TONE_PLANS))
def test_every_tone_plan_renders(plan: str) -> None:
    for kind in TONE_PLANS[plan]:
        for codec in ("PCMU", "PCMA"):
            cycle = tone_cycle(kind, codec, plan)
            assert cycle and len(cycle) % 160 == 0
    with pytest.raises(ValueError, match="unknown tone"):
        tone_cycle("ringback", "PCMU", "zz")

"""Bridges over loopback: UDP sockets act as phones sending tones; FFT on what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import pytest

from media import PCMA, PCMU, Codec, MediaEngine
from media.codecs import G722, get_codec
from media.dtmf import DtmfReceived
from media.engine import LegInactive, MediaEvent, PlaybackFinished
from media.player import Playlist
from media.rtcp import ReceiverReport, ReportBlock, SenderReport, ntp_middle32, parse_compound
from media.rtp import RtpPacket, TelephoneEvent, serial_diff

HOST = "127.0.0.1"
G722_CODEC = Codec(9, "G722", 8000)


class Phone(asyncio.DatagramProtocol):
    """A UDP endpoint that keeps every RTP packet it receives."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.raw: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.raw.append(data)
        with contextlib.suppress(ValueError):
            self.packets.append(RtpPacket.parse(data))

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    def audio(self, codec: Codec, skip: int = 0) -> np.ndarray:
        info = get_codec(codec.name, codec.clock_rate)
        assert info is not None
        dec = info.new_decoder()
        frames = [
            dec.decode(p.payload) for p in self.packets if p.payload_type == codec.payload_type
        ]
        frames = frames[skip:]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    def events(self, pt: int) -> list[RtpPacket]:
        return [p for p in self.packets if p.payload_type == pt]


async def make_phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=(HOST, 0))
    return phone


class Sine:
    """A frame source: an endless sine (or ``frames`` frames of it)."""

    def __init__(self, freq: float, rate: int = 8000, frames: int | None = None) -> None:
        self.freq = freq
        self.rate = rate
        self.left = frames
        self.pos = 0

    def read(self) -> np.ndarray | None:
        if self.left is not None:
            if self.left <= 0:
                return None
            self.left -= 1
        n = self.rate // 50
        t = (np.arange(n) + self.pos) / self.rate
        self.pos += n
        samples: np.ndarray = np.rint(6000 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        return samples


class Talker:
    """Sends a tone (or silence) from a phone to a leg every 20 ms until stopped."""

    def __init__(
        self, phone: Phone, port: int, freqs: tuple[float, ...], codec: Codec = PCMU
    ) -> None:
        self.phone = phone
        self.port = port
        self.freqs = freqs
        self.codec = codec
        info = get_codec(codec.name, codec.clock_rate)
        assert info is not None
        self.info = info
        self.encoder = info.new_encoder()
        self.seq = random.randrange(65536)
        self.ts = random.randrange(1 << 32)
        self.ssrc = random.randrange(1 << 32)
        self.pos = 0
        self.task: asyncio.Task[None] | None = None
        self.skip: set[int] = set()  # frame indexes not sent (loss)
        self.sent = 0

    def frame(self) -> bytes:
        rate = self.info.sample_rate
        n = self.info.frame_samples()
        t = (np.arange(n) + self.pos) / rate
        self.pos += n
        wave = np.zeros(n)
        for f in self.freqs:
            wave += 5000 * np.sin(2 * np.pi * f * t)
        payload = self.encoder.encode(np.rint(wave).astype(np.int16))
        packet = RtpPacket(
            self.codec.payload_type, self.seq, self.ts, self.ssrc, payload
        ).serialize()
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.info.timestamp_increment()) & 0xFFFFFFFF
        return packet

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k in itertools.count():
            packet = self.frame()
            if k not in self.skip:
                self.phone.send(packet, self.port)
                self.sent += 1
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))

    def start(self) -> Talker:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def level(pcm: np.ndarray, rate: int, freq: float) -> float:
    """Magnitude around ``freq`` (±30 Hz) in a Hann-windowed spectrum, per sample."""
    if len(pcm) < 400:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(float) * np.hanning(len(pcm))))
    hz = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = (hz > freq - 30) & (hz < freq + 30)
    return float(spectrum[band].max() / len(pcm))


def hears(pcm: np.ndarray, freq: float, rate: int = 8000) -> bool:
    return level(pcm, rate, freq) > 100.0


def random_range(width: int = 1000) -> tuple[int, int]:
    base = random.randrange(20000, 60000, 2)
    return base, base + width - 1


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    low, high = random_range()
    eng = MediaEngine(HOST, low, high, inactivity_timeout=30.0)
    events: list[MediaEvent] = []
    eng.subscribe(events.append)
    eng.events = events  # type: ignore[attr-defined]
    yield eng
    await eng.close()


def events_of(engine: MediaEngine) -> list[MediaEvent]:
    return cast(list[MediaEvent], engine.events)  # type: ignore[attr-defined]


async def phones(engine: MediaEngine, *specs: tuple[str, Codec]) -> dict[str, Phone]:
    out = {}
    for leg_id, codec in specs:
        phone = await make_phone()
        leg = await engine.create_leg(leg_id)
        leg.set_remote(*phone.addr, codec, 101)
        out[leg_id] = phone
    return out


async def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def reset(*ps: Phone) -> None:
    for p in ps:
        p.packets.clear()
        p.raw.clear()


# --- conference ------------------------------------------------------------------------------

FREQ = {"a": 700.0, "b": 1200.0, "c": 1900.0}


@pytest.mark.parametrize("phases", [1, 4])
async def test_three_party_bridge_everyone_hears_the_others_but_not_themselves(
    engine: MediaEngine, phases: int
) -> None:
    engine.clock_phases = phases  # before the first leg: the clock is made with it
    ph = await phones(engine, ("a", PCMU), ("b", PCMU), ("c", PCMA))
    engine.create_bridge("conf")
    for leg_id in ph:
        engine.join("conf", leg_id)
    assert engine.bridge_is_mixed("conf") and engine.bridge_legs("conf") == ("a", "b", "c")
    codecs = {"a": PCMU, "b": PCMU, "c": PCMA}
    talkers = [
        Talker(ph[k], engine.get_leg(k).local_port, (FREQ[k],), codecs[k]).start() for k in ph
    ]
    await asyncio.sleep(0.5)
    for t in talkers:
        await t.stop()
    for k, phone in ph.items():
        pcm = phone.audio(codecs[k], skip=5)
        assert len(pcm) > 2000, k
        others = [f for o, f in FREQ.items() if o != k]
        assert all(hears(pcm, f) for f in others), k
        assert level(pcm, 8000, FREQ[k]) < 0.05 * min(level(pcm, 8000, f) for f in others), k
        ssrcs = {p.ssrc for p in phone.packets}
        assert ssrcs == {engine.get_leg(k).ssrc}
    engine.destroy_bridge("conf")
    assert engine.get_leg("a").bridge_id is None


async def test_supervisor_listen_whisper_barge(engine: MediaEngine) -> None:
    ph = await phones(engine, ("agent", PCMU), ("cust", PCMU), ("sup", PCMU))
    freqs = {"agent": 700.0, "cust": 1200.0, "sup": 1900.0}
    engine.bridge("agent", "cust")
    bridge_id = engine.get_leg("agent").bridge_id
    assert bridge_id is not None and not engine.bridge_is_mixed(bridge_id)
    engine.join(bridge_id, "sup")
    engine.set_hears(bridge_id, "agent", "sup", False)  # listen
    engine.set_hears(bridge_id, "cust", "sup", False)
    talkers = [Talker(ph[k], engine.get_leg(k).local_port, (freqs[k],)).start() for k in ph]

    async def phase() -> dict[str, np.ndarray]:
        await asyncio.sleep(0.1)
        reset(*ph.values())
        await asyncio.sleep(0.4)
        return {k: p.audio(PCMU) for k, p in ph.items()}

    heard = await phase()
    assert hears(heard["sup"], 700) and hears(heard["sup"], 1200)
    assert not hears(heard["agent"], 1900) and not hears(heard["cust"], 1900)
    assert hears(heard["agent"], 1200) and hears(heard["cust"], 700)
    engine.set_hears(bridge_id, "agent", "sup", True)  # whisper: only the agent hears
    heard = await phase()
    assert hears(heard["agent"], 1900) and not hears(heard["cust"], 1900)
    engine.set_hears(bridge_id, "cust", "sup", True)  # barge
    heard = await phase()
    assert hears(heard["agent"], 1900) and hears(heard["cust"], 1900)
    for t in talkers:
        await t.stop()


async def test_whisper_injection_reaches_only_one_leg(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    engine.bridge("a", "b")
    talker = Talker(ph["a"], engine.get_leg("a").local_port, (1200.0,)).start()
    inj = engine.inject("b", Sine(500.0))
    assert engine.get_leg("b").mixed
    await asyncio.sleep(0.5)
    engine.stop_injection(inj)
    await talker.stop()
    b_pcm = ph["b"].audio(PCMU, skip=3)
    a_pcm = ph["a"].audio(PCMU, skip=3)
    assert hears(b_pcm, 500) and hears(b_pcm, 1200)
    assert not hears(a_pcm, 500)
    assert not engine.get_leg("b").mixed  # back on the fast path


async def test_mute_inbound_and_outbound(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    engine.bridge("a", "b")
    ta = Talker(ph["a"], engine.get_leg("a").local_port, (700.0,)).start()
    tb = Talker(ph["b"], engine.get_leg("b").local_port, (1200.0,)).start()
    engine.mute("a", inbound=True)
    await asyncio.sleep(0.1)
    reset(*ph.values())
    await asyncio.sleep(0.35)
    assert not hears(ph["b"].audio(PCMU), 700)  # what a says goes nowhere
    assert hears(ph["a"].audio(PCMU), 1200)  # a still hears b
    engine.mute("a", inbound=False, outbound=True)
    await asyncio.sleep(0.1)
    reset(*ph.values())
    await asyncio.sleep(0.35)
    assert hears(ph["b"].audio(PCMU), 700)
    a_pcm = ph["a"].audio(PCMU)
    assert len(a_pcm) > 0 and not hears(a_pcm, 1200)  # a hears nothing (silence is sent)
    engine.mute("a", outbound=False)
    assert not engine.get_leg("a").mixed
    await ta.stop()
    await tb.stop()


async def test_taps_of_a_leg_of_the_mix_and_of_what_a_leg_hears(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    bridge_id = engine.bridge("a", "b")
    said: list[tuple[np.ndarray, int]] = []
    whole: list[tuple[np.ndarray, int]] = []
    heard: list[tuple[np.ndarray, int]] = []
    t_a = engine.add_tap(bridge_id, "a", lambda pcm, rate: said.append((pcm.copy(), rate)))
    t_mix = engine.add_tap(bridge_id, None, lambda pcm, rate: whole.append((pcm.copy(), rate)))
    t_heard = engine.add_tap_heard("b", lambda pcm, rate: heard.append((pcm.copy(), rate)))
    assert engine.bridge_is_mixed(bridge_id)
    ta = Talker(ph["a"], engine.get_leg("a").local_port, (700.0,)).start()
    tb = Talker(ph["b"], engine.get_leg("b").local_port, (1200.0,)).start()
    await asyncio.sleep(0.5)
    await ta.stop()
    await tb.stop()
    for tap_id in (t_a, t_mix, t_heard):
        engine.remove_tap(tap_id)
    assert not engine.bridge_is_mixed(bridge_id)
    for got in (said, whole, heard):
        assert len(got) >= 10
        assert all(pcm.shape == (160,) and pcm.dtype == np.int16 and r == 8000 for pcm, r in got)
    said_pcm = np.concatenate([p for p, _ in said])
    whole_pcm = np.concatenate([p for p, _ in whole])
    heard_pcm = np.concatenate([p for p, _ in heard])
    assert hears(said_pcm, 700) and not hears(said_pcm, 1200)
    assert hears(whole_pcm, 700) and hears(whole_pcm, 1200)
    assert hears(heard_pcm, 700) and not hears(heard_pcm, 1200)


async def test_a_stereo_tap_follows_its_leg_out_of_the_bridge(engine: MediaEngine) -> None:
    """The recorder's tap: left what "a" says, right what "a" hears — in the bridge, then
    alone with music played to it, and silence on the left while "a" is muted."""
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    engine.bridge("a", "b")
    frames: list[tuple[np.ndarray, int]] = []
    tap = engine.add_tap_stereo("a", lambda pcm, rate: frames.append((pcm.copy(), rate)))
    ta = Talker(ph["a"], engine.get_leg("a").local_port, (700.0,)).start()
    tb = Talker(ph["b"], engine.get_leg("b").local_port, (1200.0,)).start()

    def channels(got: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        assert all(p.shape == (320,) and p.dtype == np.int16 and r == 8000 for p, r in got)
        both = np.concatenate([p for p, _ in got])
        return both[0::2], both[1::2]

    await asyncio.sleep(0.5)
    left, right = channels(frames)
    assert len(frames) >= 10
    assert hears(left, 700) and not hears(left, 1200)
    assert hears(right, 1200) and not hears(right, 700)

    engine.unbridge("a")  # "a" alone now, hearing music: the tap goes on
    tune = (np.sin(2 * np.pi * 400 * np.arange(160) / 8000) * 8000).astype(np.int16)
    engine.play("a", Playlist([tune], 8000, loop=True))
    frames.clear()
    await asyncio.sleep(0.5)
    left, right = channels(frames)
    assert len(frames) >= 10
    assert hears(left, 700) and hears(right, 400) and not hears(right, 1200)

    engine.mute("a", inbound=True)
    await asyncio.sleep(0.1)
    frames.clear()
    await asyncio.sleep(0.4)
    left, right = channels(frames)
    assert not left.any() and hears(right, 400)

    engine.remove_tap(tap)
    frames.clear()
    await asyncio.sleep(0.2)
    assert frames == []
    await ta.stop()
    await tb.stop()


# --- players -----------------------------------------------------------------------------------


async def test_player_replaces_bridge_audio_and_reports_done(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    engine.bridge("a", "b")
    talker = Talker(ph["a"], engine.get_leg("a").local_port, (700.0,)).start()
    done: list[PlaybackFinished] = []
    player = engine.play("b", Sine(1500.0, frames=15), on_done=done.append)
    await wait_for(lambda: done, 2.0)
    b_during = ph["b"].audio(PCMU)
    reset(ph["b"])
    await asyncio.sleep(0.3)
    await talker.stop()
    assert hears(b_during, 1500) and level(b_during, 8000, 700) < 0.1 * level(b_during, 8000, 1500)
    assert hears(ph["b"].audio(PCMU, skip=2), 700)  # the bridge again after the prompt
    assert done == [PlaybackFinished("b", player, None, False)]
    assert PlaybackFinished("b", player, None, False) in events_of(engine)


async def test_music_on_hold_loops_until_stopped(engine: MediaEngine) -> None:
    ph = await phones(engine, ("held", PCMU))
    tune = Sine(440.0).read()
    assert tune is not None
    moh = Playlist([np.concatenate([tune] * 3)], 8000, loop=True)  # 60 ms, loops
    player = engine.play("held", moh)  # an unbridged leg: ticked on its own
    await asyncio.sleep(0.4)
    engine.stop_play(player)
    count = len(ph["held"].packets)
    assert count >= 10  # far more than the 3 frames of the tune
    pcm = ph["held"].audio(PCMU)
    assert hears(pcm, 440)
    seqs = [p.sequence_number for p in ph["held"].packets]
    assert all(serial_diff(b, a) == 1 for a, b in itertools.pairwise(seqs))
    assert PlaybackFinished("held", player, None, True) in events_of(engine)
    await asyncio.sleep(0.1)
    assert len(ph["held"].packets) <= count + 1


async def test_g722_leg_bridged_with_pcmu_leg_keeps_a_1khz_tone(engine: MediaEngine) -> None:
    ph = await phones(engine, ("wb", G722_CODEC), ("nb", PCMU))
    bridge_id = engine.bridge("wb", "nb")
    assert engine.bridge_is_mixed(bridge_id)  # transcoding needs PCM
    t_wb = Talker(ph["wb"], engine.get_leg("wb").local_port, (1000.0,), G722_CODEC).start()
    t_nb = Talker(ph["nb"], engine.get_leg("nb").local_port, (1000.0,), PCMU).start()
    await asyncio.sleep(0.5)
    await t_wb.stop()
    await t_nb.stop()
    nb_pcm = ph["nb"].audio(PCMU, skip=3)
    wb_pcm = ph["wb"].audio(G722_CODEC, skip=3)
    assert hears(nb_pcm, 1000) and hears(wb_pcm, 1000, 16000)
    assert len(wb_pcm) > 3000
    assert all(len(p.payload) == G722.payload_size() for p in ph["wb"].packets)
    ts = [p.timestamp for p in ph["wb"].packets]
    assert all(serial_diff(b, a, 32) == 160 for a, b in itertools.pairwise(ts))  # 8000 clock


# --- DTMF --------------------------------------------------------------------------------------


def event_packets(digit: int, ts: int, seq: int, pt: int = 101) -> list[bytes]:
    out = []
    for k, (end, dur) in enumerate([(False, 160), (False, 320), (False, 480)] + [(True, 640)] * 3):
        payload = TelephoneEvent(digit, end, 10, dur).serialize()
        out.append(RtpPacket(pt, (seq + k) & 0xFFFF, ts, 0x1234, payload, k == 0).serialize())
    return out


async def send_digit(phone: Phone, port: int, digit: int, ts: int, seq: int) -> None:
    for packet in event_packets(digit, ts, seq):
        phone.send(packet, port)
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("mixed", [False, True])
async def test_rfc4733_digits_give_one_event_each(engine: MediaEngine, mixed: bool) -> None:
    phone_a, phone_b = await make_phone(), await make_phone()
    leg_a = await engine.create_leg("a")
    leg_b = await engine.create_leg("b")
    leg_a.set_remote(*phone_a.addr, PCMU, 101)
    leg_b.set_remote(*phone_b.addr, PCMU, 96)
    bridge_id = engine.bridge("a", "b")
    if mixed:
        engine.add_tap(bridge_id, "a", lambda pcm, rate: None)
    assert engine.bridge_is_mixed(bridge_id) is mixed
    await send_digit(phone_a, leg_a.local_port, 5, 1000, 10)
    await send_digit(phone_a, leg_a.local_port, 11, 3000, 20)  # '#'
    await wait_for(lambda: len([e for e in events_of(engine) if isinstance(e, DtmfReceived)]) >= 2)
    await asyncio.sleep(0.3)  # no late duplicates
    digits = [e for e in events_of(engine) if isinstance(e, DtmfReceived)]
    assert [(e.leg_id, e.digit, e.source) for e in digits] == [
        ("a", "5", "rfc4733"),
        ("a", "#", "rfc4733"),
    ]
    assert digits[0].duration_ms == 80
    # The other party gets the digits as RFC 4733 on its own payload type (relayed or
    # regenerated), one start (marker) per digit.
    await wait_for(lambda: sum(1 for p in phone_b.events(96) if p.marker) >= 2)
    got = phone_b.events(96)
    codes = [TelephoneEvent.parse(p.payload).event for p in got if p.marker]
    assert codes == [5, 11]
    assert {p.ssrc for p in phone_b.packets} == {leg_b.ssrc}


async def test_inband_dtmf_detection(engine: MediaEngine) -> None:
    ph = await phones(engine, ("caller", PCMU))
    port = engine.get_leg("caller").local_port
    engine.detect_inband_dtmf("caller")
    talker = Talker(ph["caller"], port, (770.0, 1336.0))  # '5'
    talker.start()
    await asyncio.sleep(0.15)
    talker.freqs = ()
    await wait_for(lambda: any(isinstance(e, DtmfReceived) for e in events_of(engine)))
    await talker.stop()
    digits = [e for e in events_of(engine) if isinstance(e, DtmfReceived)]
    assert [(e.leg_id, e.digit, e.source) for e in digits] == [("caller", "5", "inband")]
    engine.detect_inband_dtmf("caller", enabled=False)


async def test_send_dtmf_emits_rfc4733_packets(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU))
    leg = engine.get_leg("a")
    leg.send_dtmf("7", 100)
    leg.send_dtmf("#", 60)
    await wait_for(lambda: len(ph["a"].events(101)) >= 11)
    await asyncio.sleep(0.1)
    got = ph["a"].events(101)
    events = [TelephoneEvent.parse(p.payload) for p in got]
    first = [e for e in events if e.event == 7]
    assert [e.duration for e in first] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in first] == [False] * 4 + [True] * 3
    seven = got[: len(first)]
    assert seven[0].marker and not any(p.marker for p in seven[1:])
    assert len({p.timestamp for p in seven}) == 1
    assert all(
        serial_diff(b.sequence_number, a.sequence_number) == 1 for a, b in itertools.pairwise(got)
    )
    hashes = got[len(first) :]
    assert hashes[0].marker and TelephoneEvent.parse(hashes[-1].payload).end
    assert serial_diff(hashes[0].timestamp, seven[0].timestamp, 32) >= 7 * 160
    with pytest.raises(ValueError):
        leg.send_dtmf("x")


# --- paths, jitter, RTCP -------------------------------------------------------------------------


async def test_fast_to_mixed_to_fast_keeps_the_stream_continuous(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    bridge_id = engine.bridge("a", "b")
    talker = Talker(ph["a"], engine.get_leg("a").local_port, (700.0,)).start()
    await asyncio.sleep(0.2)
    tap = engine.add_tap(bridge_id, None, lambda pcm, rate: None)
    await asyncio.sleep(0.3)
    engine.remove_tap(tap)
    await asyncio.sleep(0.2)
    await talker.stop()
    got = ph["b"].packets
    assert len(got) > 25
    assert {p.ssrc for p in got} == {engine.get_leg("b").ssrc}
    for a, b in itertools.pairwise(got):
        assert serial_diff(b.sequence_number, a.sequence_number) == 1
        assert 0 < serial_diff(b.timestamp, a.timestamp, 32) <= 160 * 8  # no big jump
    assert sum(p.marker for p in got) >= 2  # one per switch (RFC 3551 §4.1)


async def test_reordered_packets_are_played_in_order(engine: MediaEngine) -> None:
    ph = await phones(engine, ("a", PCMU), ("b", PCMU))
    bridge_id = engine.bridge("a", "b")
    frames: list[np.ndarray] = []
    engine.add_tap(bridge_id, "a", lambda pcm, rate: frames.append(pcm.copy()))
    port = engine.get_leg("a").local_port
    # Each packet carries a different constant level; send 8 of them, pairs swapped.
    order = [0, 2, 1, 3, 5, 4, 6, 7]
    codes = [0xF0 - 4 * k for k in range(8)]  # distinct μ-law levels
    for k in order:
        ph["a"].send(
            RtpPacket(0, 100 + k, 160 * k, 0x77, bytes([codes[k]]) * 160).serialize(), port
        )
    await asyncio.sleep(0.5)
    levels = [int(f[0]) for f in frames if f.any()]
    pcmu = get_codec("PCMU", 8000)
    assert pcmu is not None
    expected = [int(pcmu.new_decoder().decode(bytes([c]) * 160)[0]) for c in codes]
    played = [lv for lv in levels if lv in expected]
    # After the last packet the concealer repeats the last frame: drop repeats.
    distinct = [lv for i, lv in enumerate(played) if i == 0 or lv != played[i - 1]]
    assert distinct == expected


async def test_rtcp_reports_and_leg_quality_with_loss() -> None:
    low, high = random_range()
    eng = MediaEngine(HOST, low, high, rtcp_interval=0.2)
    try:
        phone, rtcp_phone = await make_phone(), await make_phone()
        leg = await eng.create_leg("a")
        leg.set_remote(*phone.addr, PCMU, 101, rtcp_address=rtcp_phone.addr)
        eng.play("a", Sine(300.0))  # so that we send RTP: sender reports
        talker = Talker(phone, leg.local_port, (700.0,))
        talker.skip = {5, 6, 12}
        talker.start()
        await wait_for(lambda: talker.sent >= 30 and len(rtcp_phone.raw) >= 2, 4.0)
        await talker.stop()
        reports = [parse_compound(d) for d in rtcp_phone.raw]
        first = [packets[0] for packets in reports]
        assert all(isinstance(p, SenderReport) and p.ssrc == leg.ssrc for p in first)
        sr = first[-1]
        assert isinstance(sr, SenderReport) and sr.packet_count > 0
        assert any(b.ssrc == talker.ssrc for b in sr.reports)
        quality = eng.leg_quality("a")
        assert quality.packets_received >= 20
        assert quality.packets_lost == 3
        assert 0 < quality.loss_fraction < 0.2
        assert 1.0 <= quality.mos < 4.5
        assert quality.rtt_ms is None
        # The phone answers with an RR echoing our SR (RFC 3550 §6.4.1 LSR/DLSR): RTT.
        block = ReportBlock(leg.ssrc, 0, 0, 0, 0, ntp_middle32(sr.ntp_timestamp), 0)
        rtcp_phone.send(ReceiverReport(talker.ssrc, (block,)).serialize(), leg.local_rtcp_port)
        await wait_for(lambda: eng.leg_quality("a").rtt_ms is not None)
        rtt = eng.leg_quality("a").rtt_ms
        assert rtt is not None and 0 <= rtt < 5000
        assert eng.leg_quality("a").remote_loss_fraction == 0.0
    finally:
        await eng.close()


async def test_bridge_api_errors_and_inactivity_event() -> None:
    low, high = random_range()
    eng = MediaEngine(HOST, low, high, inactivity_timeout=0.2)
    events: list[MediaEvent] = []
    eng.subscribe(events.append)
    try:
        ph = await phones(eng, ("a", PCMU), ("b", PCMU))
        assert len(ph) == 2
        eng.create_bridge("room")
        with pytest.raises(ValueError):
            eng.create_bridge("room")
        with pytest.raises(KeyError):
            eng.join("nope", "a")
        eng.join("room", "a")
        with pytest.raises(KeyError):
            eng.set_hears("room", "a", "b", False)
        eng.join("room", "b")
        assert not eng.bridge_is_mixed("room")  # two G.711 legs: relay
        assert eng.get_leg("a").bridged_to == "b"
        eng.leave("room", "b")
        assert eng.bridge_legs("room") == ("a",)  # a named room stays
        eng.bridge("a", "b")  # a leaves the room for a two-party bridge
        assert eng.bridge_legs("room") == ()
        await wait_for(lambda: len([e for e in events if isinstance(e, LegInactive)]) == 2)
        eng.unbridge("a")
        assert eng.get_leg("b").bridge_id is None
    finally:
        await eng.close()


async def test_tone_on_a_g722_leg_plays_through_the_mixer(engine: MediaEngine) -> None:
    ph = await phones(engine, ("wb", G722_CODEC))
    leg = engine.get_leg("wb")
    leg.start_tone("ringback")
    assert leg.tone_playing == "ringback"
    await wait_for(lambda: len(ph["wb"].packets) >= 15)
    leg.stop_tone()
    assert leg.tone_playing is None
    pcm = ph["wb"].audio(G722_CODEC, skip=2)
    assert hears(pcm, 440, 16000) and hears(pcm, 480, 16000)
    assert not any(isinstance(e, PlaybackFinished) for e in events_of(engine))
    await asyncio.sleep(0.1)
    count = len(ph["wb"].packets)
    await asyncio.sleep(0.1)
    assert len(ph["wb"].packets) == count  # stopped

"""RTP header codec, in-place rewriting, serial arithmetic and RFC 4733 events."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import (
    RtpOutputStream,
    RtpPacket,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
    header_length,
    looks_like_rtcp,
    serial_diff,
    set_payload_type,
    set_sequence,
    set_ssrc,
    set_timestamp,
)

# RFC 3550 §5.1 layouts, built by hand bit by bit.
VECTORS = [
    (
        "plain PCMU",
        bytes.fromhex("80 00 04d2 0000a0a0 deadbeef ffffffff"),
        RtpPacket(0, 1234, 0xA0A0, 0xDEADBEEF, payload=b"\xff" * 4),
    ),
    (
        "marker, PT 8, max seq",
        bytes.fromhex("80 88 ffff 00000001 00000002 d5d5"),
        RtpPacket(8, 0xFFFF, 1, 2, payload=b"\xd5\xd5", marker=True),
    ),
    (
        "two CSRCs",
        bytes.fromhex("82 12 0001 00000002 00000003 0000000a 0000000b 01"),
        RtpPacket(18, 1, 2, 3, payload=b"\x01", csrc=(10, 11)),
    ),
    (
        "header extension (RFC 5285 one-byte profile 0xBEDE), one word",
        bytes.fromhex("90 60 0001 00000002 00000003 bede0001 10aa0000 cafe"),
        RtpPacket(
            96,
            1,
            2,
            3,
            payload=b"\xca\xfe",
            extension_profile=0xBEDE,
            extension=b"\x10\xaa\x00\x00",
        ),
    ),
    (
        "padding of 4 octets",
        bytes.fromhex("a0 00 0001 00000002 00000003 7f7f 00000004"),
        RtpPacket(0, 1, 2, 3, payload=b"\x7f\x7f", padding=4),
    ),
    (
        "empty payload (keep-alive)",
        bytes.fromhex("80 0d 0005 00000006 00000007"),
        RtpPacket(13, 5, 6, 7),
    ),
]


@pytest.mark.parametrize(("name", "wire", "packet"), VECTORS, ids=[v[0] for v in VECTORS])
def test_parse_and_serialize_vectors(name: str, wire: bytes, packet: RtpPacket) -> None:
    assert RtpPacket.parse(wire) == packet
    assert packet.serialize() == wire
    assert header_length(wire) == len(wire) - len(packet.payload) - packet.padding


BAD = [
    (b"", "too short: 0 bytes"),
    (bytes.fromhex("80 00 0001 00000002 000000"), "too short: 11 bytes"),
    (bytes.fromhex("40 00 0001 00000002 00000003"), "version must be 2, got 1"),
    (bytes.fromhex("c0 00 0001 00000002 00000003"), "version must be 2, got 3"),
    (bytes.fromhex("81 00 0001 00000002 00000003 0000"), "CSRC count 1 needs 16 bytes"),
    (bytes.fromhex("90 00 0001 00000002 00000003 bede"), "extension header missing"),
    (bytes.fromhex("90 00 0001 00000002 00000003 bede0002 00000000"), "extension of 2 words"),
    (bytes.fromhex("a0 00 0001 00000002 00000003 0000 00"), "padding count is 0"),
    (bytes.fromhex("a0 00 0001 00000002 00000003 0009"), "padding count 9 exceeds"),
]


@pytest.mark.parametrize(("wire", "message"), BAD)
def test_parse_rejects_with_precise_message(wire: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(wire)
    with pytest.raises(ValueError):
        header_length(wire)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "payload type 128"),
        ({"sequence_number": 65536}, "sequence number"),
        ({"timestamp": -1}, "timestamp"),
        ({"ssrc": 1 << 32}, "SSRC"),
        ({"csrc": tuple(range(16))}, "CSRC count 16"),
        ({"extension_profile": 1, "extension": b"abc"}, "multiple of 4"),
        ({"extension": b"abcd"}, "without extension_profile"),
    ],
)
def test_packet_value_validation(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "payload_type": 0,
        "sequence_number": 0,
        "timestamp": 0,
        "ssrc": 0,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        RtpPacket(**base)  # type: ignore[arg-type]


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    payload=st.binary(max_size=200),
    padding=st.integers(0, 255),
)
def test_round_trip_property(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: tuple[int, ...],
    payload: bytes,
    padding: int,
) -> None:
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, padding=padding)
    assert RtpPacket.parse(packet.serialize()) == packet


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        RtpPacket.parse(data)


def test_in_place_setters() -> None:
    buf = bytearray(VECTORS[1][1])  # marker set, PT 8
    set_ssrc(buf, 0x01020304)
    set_sequence(buf, 0x10000 + 7)  # wraps to 7
    set_timestamp(buf, 0xFFFFFFFF)
    set_payload_type(buf, 0)
    packet = RtpPacket.parse(buf)
    assert (packet.ssrc, packet.sequence_number, packet.timestamp) == (0x01020304, 7, 0xFFFFFFFF)
    assert packet.payload_type == 0 and packet.marker  # marker kept
    set_payload_type(buf, 101, marker=False)
    assert RtpPacket.parse(buf).payload_type == 101
    assert not RtpPacket.parse(buf).marker
    assert buf[12:] == b"\xd5\xd5"


@pytest.mark.parametrize(
    ("a", "b", "bits", "expected"),
    [
        (1, 0, 16, 1),
        (0, 1, 16, -1),
        (0, 0xFFFF, 16, 1),  # wrap: 0 comes after 65535
        (0xFFFF, 0, 16, -1),
        (0x8000, 0, 16, -0x8000),  # RFC 1982 §3.2: half-way is undefined; we pick negative
        (0x7FFF, 0, 16, 0x7FFF),
        (5, 0xFFFFFFFE, 32, 7),
        (0xFFFFFFFE, 5, 32, -7),
    ],
)
def test_serial_diff(a: int, b: int, bits: int, expected: int) -> None:
    assert serial_diff(a, b, bits) == expected


def test_looks_like_rtcp() -> None:
    assert looks_like_rtcp(bytes.fromhex("80c8"))  # SR (200)
    assert looks_like_rtcp(bytes.fromhex("81c9"))  # RR (201)
    assert not looks_like_rtcp(bytes.fromhex("8000"))
    assert not looks_like_rtcp(b"\x80")


# --- RtpOutputStream ----------------------------------------------------------------------


def _rewrite(
    stream: RtpOutputStream, source: int, seq: int, ts: int, now: float, marker: bool = False
) -> RtpPacket:
    buf = bytearray(RtpPacket(0, seq, ts, source & 0xFFFFFFFF, b"x").serialize())
    stream.rewrite(buf, source, seq, ts, 8, marker, now)
    return RtpPacket.parse(buf)


def test_output_stream_first_packet_uses_initial_values_and_marker() -> None:
    stream = RtpOutputStream(ssrc=0xABCD, initial_sequence=100, initial_timestamp=5000)
    p = _rewrite(stream, 0x1111, seq=9, ts=123456, now=10.0)
    assert (p.ssrc, p.sequence_number, p.timestamp, p.payload_type) == (0xABCD, 100, 5000, 8)
    assert p.marker
    q = _rewrite(stream, 0x1111, seq=10, ts=123456 + 160, now=10.02)
    assert (q.sequence_number, q.timestamp, q.marker) == (101, 5160, False)


def test_output_stream_rebases_on_source_change_with_elapsed_time() -> None:
    stream = RtpOutputStream(ssrc=1, initial_sequence=65534, initial_timestamp=0xFFFFFF00)
    _rewrite(stream, 0x1111, seq=1, ts=1000, now=0.0)
    last = _rewrite(stream, 0x1111, seq=2, ts=1160, now=0.02)
    assert last.sequence_number == 65535
    # New SSRC one second later with unrelated numbers: continuous seq (wrapping to 0),
    # timestamp advanced by the elapsed 8000 samples, marker set.
    p = _rewrite(stream, 0x2222, seq=40000, ts=7, now=1.02)
    assert p.sequence_number == 0
    assert serial_diff(p.timestamp, last.timestamp, 32) == 8000
    assert p.marker
    q = _rewrite(stream, 0x2222, seq=40001, ts=167, now=1.04)
    assert (q.sequence_number, serial_diff(q.timestamp, p.timestamp, 32)) == (1, 160)


def test_output_stream_rebase_advances_at_least_one_frame() -> None:
    stream = RtpOutputStream(ssrc=1, initial_sequence=0, initial_timestamp=0)
    _rewrite(stream, -1, seq=0, ts=0, now=5.0)
    stream.rebase()
    p = _rewrite(stream, -1, seq=0, ts=0, now=5.0)  # same instant, forced re-base
    assert (p.sequence_number, p.timestamp, p.marker) == (1, 160, True)


def test_output_stream_reordered_packet_does_not_move_backwards() -> None:
    stream = RtpOutputStream(ssrc=1, initial_sequence=10, initial_timestamp=0)
    _rewrite(stream, 7, seq=100, ts=0, now=0.0)
    _rewrite(stream, 7, seq=102, ts=320, now=0.04)
    late = _rewrite(stream, 7, seq=101, ts=160, now=0.05)
    assert late.sequence_number == 11
    assert stream.next_sequence == 13  # not reset to 12 by the late packet


# --- RFC 4733 telephone events ------------------------------------------------------------

EVENT_VECTORS = [
    # event, E, volume, duration  ->  wire (RFC 4733 §2.3 Figure 1)
    (TelephoneEvent(5, end=False, volume=10, duration=400), "050a0190"),
    (TelephoneEvent(5, end=True, volume=10, duration=800), "058a0320"),
    (TelephoneEvent(11, end=True, volume=63, duration=0xFFFF), "0bbfffff"),  # '#'
    (TelephoneEvent(16, end=False, volume=0, duration=0), "10000000"),  # flash
]


@pytest.mark.parametrize(("event", "wire"), EVENT_VECTORS)
def test_telephone_event_vectors(event: TelephoneEvent, wire: str) -> None:
    assert event.serialize().hex() == wire
    assert TelephoneEvent.parse(bytes.fromhex(wire)) == event


def test_telephone_event_reserved_bit_ignored_and_cleared() -> None:
    parsed = TelephoneEvent.parse(bytes.fromhex("09c70640"))  # E=1, R=1, vol 7, dur 1600
    assert parsed == TelephoneEvent(9, end=True, volume=7, duration=1600)
    assert parsed.reserved
    assert parsed.serialize().hex() == "09870640"
    assert parsed.digit == "9"


def test_telephone_event_errors() -> None:
    with pytest.raises(ValueError, match="too short: 3 bytes"):
        TelephoneEvent.parse(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="volume 64"):
        TelephoneEvent(1, volume=64)
    with pytest.raises(ValueError, match="duration"):
        TelephoneEvent(1, duration=70000)
    with pytest.raises(ValueError, match="event code 256"):
        TelephoneEvent(256)


def test_dtmf_digit_mapping() -> None:
    assert [event_to_digit(e) for e in (0, 9, 10, 11, 12, 15, 16)] == [
        "0",
        "9",
        "*",
        "#",
        "A",
        "D",
        None,
    ]
    assert digit_to_event("*") == 10 and digit_to_event("d") == 15
    with pytest.raises(ValueError, match="not a DTMF digit"):
        digit_to_event("x")

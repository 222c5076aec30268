"""RTCP (RFC 3550 §6, §A): packets from binary fixtures, statistics, session reports, RTT."""

from __future__ import annotations

import random

import pytest

from media.rtcp import (
    Bye,
    ReceiverReport,
    ReceiverStats,
    ReportBlock,
    RtcpByeReceived,
    RtcpPacket,
    RtcpReportReceived,
    RtcpSession,
    SdesChunk,
    SenderReport,
    SenderStats,
    SourceDescription,
    UnknownRtcp,
    ntp_middle32,
    parse_compound,
    serialize_compound,
    to_ntp,
)

# --- Binary fixtures, written out by hand from the RFC 3550 §6.4-§6.6 layouts ---------------

SR_ONE_BLOCK = bytes.fromhex(
    "81c8000c"  # V=2 P=0 RC=1, PT=200 SR, length 12 (52 bytes)
    "11223344"  # sender SSRC
    "e5a1b2c380000000"  # NTP timestamp: 0xe5a1b2c3.5 s
    "00010000"  # RTP timestamp
    "00000064"  # sender's packet count 100
    "00003e80"  # sender's octet count 16000
    "aabbccdd"  # report block: source SSRC
    "40000005"  # fraction lost 64/256, cumulative lost 5
    "0001ffff"  # extended highest sequence number
    "00000020"  # interarrival jitter 32
    "b2c38000"  # LSR
    "00010000"  # DLSR 1 s
)
SDES_CNAME = bytes.fromhex(
    "81ca0004"  # SC=1, PT=202 SDES, length 4 (20 bytes)
    "11223344"  # chunk SSRC
    "0109" + b"sb@host.x".hex() + "00"  # CNAME item (9 octets), then the null item
)
BYE_WITH_REASON = bytes.fromhex(
    "81cb0002"  # SC=1, PT=203 BYE, length 2
    "11223344"
    "03" + b"bye".hex()  # reason: length 3, "bye"
)
RR_EMPTY = bytes.fromhex("80c9000111223344")  # RC=0 receiver report
RR_NEGATIVE_LOSS = bytes.fromhex("81c90007556677881122334400ffffff00000010000000000000000000000000")
APP_PACKET = bytes.fromhex("80cc000211223344" + b"NAME".hex())  # PT=204 APP, kept raw
PADDED_RR = bytes.fromhex("a0c900021122334400000004")  # P=1, 4 octets of padding


def test_parse_sr_sdes_bye_compound_fixture() -> None:
    packets = parse_compound(SR_ONE_BLOCK + SDES_CNAME + BYE_WITH_REASON)
    sr, sdes, bye = packets
    assert sr == SenderReport(
        ssrc=0x11223344,
        ntp_timestamp=0xE5A1B2C380000000,
        rtp_timestamp=0x10000,
        packet_count=100,
        octet_count=16000,
        reports=(ReportBlock(0xAABBCCDD, 64, 5, 0x1FFFF, 32, 0xB2C38000, 0x10000),),
    )
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "sb@host.x"
    assert bye == Bye((0x11223344,), "bye")
    assert serialize_compound(packets) == SR_ONE_BLOCK + SDES_CNAME + BYE_WITH_REASON


def test_parse_rr_variants() -> None:
    (rr,) = parse_compound(RR_EMPTY)
    assert rr == ReceiverReport(0x11223344)
    (rr,) = parse_compound(RR_NEGATIVE_LOSS)
    assert isinstance(rr, ReceiverReport)
    assert rr.reports[0].cumulative_lost == -1  # 24-bit two's complement (§6.4.1)
    assert rr.serialize() == RR_NEGATIVE_LOSS
    (rr,) = parse_compound(PADDED_RR)
    assert isinstance(rr, ReceiverReport) and rr.reports == () and rr.extension == b""
    rr_app = parse_compound(RR_EMPTY + APP_PACKET)
    assert rr_app[1] == UnknownRtcp(204, 0, bytes.fromhex("11223344") + b"NAME")
    assert serialize_compound(rr_app) == RR_EMPTY + APP_PACKET


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\xc8\x00", "too short"),
        (bytes.fromhex("40c9000111223344"), "version must be 2"),
        (bytes.fromhex("80c9000511223344"), "length field says 24 bytes"),
        (RR_EMPTY + b"\x80\xc9", "2 trailing bytes"),
        (PADDED_RR + RR_EMPTY, "padding bit set on a non-final packet"),
        (bytes.fromhex("a0c90001112233ff"), "padding count 255 invalid"),
        (bytes.fromhex("82c9000711223344") + bytes(24), "2 report blocks need"),
        (bytes.fromhex("80c8000111223344"), "SR truncated"),
        (bytes.fromhex("81ca00021122334401090000"), "overruns the packet"),
        (bytes.fromhex("81ca00021122334401026162"), "not terminated"),
        (bytes.fromhex("82ca00021122334400000000"), "chunk 2 of 2 missing"),
        (bytes.fromhex("82cb000111223344"), "2 sources need 8 bytes"),
        (bytes.fromhex("81cb00021122334409616263"), "reason of 9 octets"),
        (bytes.fromhex("8064000111223344"), "packet type 100 outside 192..223"),
    ],
)
def test_malformed_input_raises_precise_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(data)


def test_packet_value_validation() -> None:
    with pytest.raises(ValueError, match="fraction lost"):
        ReportBlock(1, 256, 0, 0, 0)
    with pytest.raises(ValueError, match="cumulative lost"):
        ReportBlock(1, 0, 0x800000, 0, 0)
    with pytest.raises(ValueError, match="at most 31"):
        ReceiverReport(1, tuple(ReportBlock(i, 0, 0, 0, 0) for i in range(32)))
    with pytest.raises(ValueError, match="longer than 255"):
        SdesChunk(1, ((1, bytes(256)),))


def test_round_trip_of_built_packets() -> None:
    packets: list[RtcpPacket] = [
        ReceiverReport(7, (ReportBlock(9, 3, -20, 70000, 12, 1, 2),), extension=b"\x00" * 4),
        SourceDescription((SdesChunk(7, ((1, b"a"), (2, b"Alice"))), SdesChunk(8, ()))),
        Bye((7, 8), "done here"),
        Bye((9,)),
    ]
    assert parse_compound(serialize_compound(packets)) == packets


# --- ReceiverStats (RFC 3550 §A.1, §A.3, §A.8) ---------------------------------------------


def feed(stats: ReceiverStats, seqs: list[int], t0: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, t0 + i * 0.02)


def test_sequential_stream_with_wraparound_has_no_loss() -> None:
    stats = ReceiverStats()
    feed(stats, list(range(65500, 65500 + 200)))
    # §A.1 probation: the first packet only validates the source.
    assert stats.received == 199 and stats.expected == 199 and stats.lost == 0
    assert stats.extended_max_seq == 65500 + 199
    assert stats.jitter == pytest.approx(0.0)
    block = stats.report_block(now=4.0)
    assert block.fraction_lost == 0 and block.cumulative_lost == 0
    assert block.highest_seq == 65500 + 199


def test_loss_counts_and_fraction_per_interval() -> None:
    stats = ReceiverStats(ssrc=0xABC)
    seqs = [s for s in range(1000, 1402) if s % 4 != 0 or s < 1010]  # lose 1 in 4 after 1010
    feed(stats, seqs)
    expected = max(seqs) - 1001 + 1  # the first packet only ends probation (§A.1)
    assert stats.expected == expected
    assert stats.lost == expected - stats.received
    assert stats.loss_fraction == pytest.approx(stats.lost / expected)
    first = stats.report_block(now=5.0)
    assert first.ssrc == 0xABC and first.cumulative_lost == stats.lost
    assert 60 <= first.fraction_lost <= 64  # about 1/4 of 256
    feed(stats, list(range(1402, 1501)), t0=10.0)  # a clean interval
    second = stats.report_block(now=10.0)
    assert second.fraction_lost == 0 and second.cumulative_lost == first.cumulative_lost


def test_duplicates_and_reordering() -> None:
    stats = ReceiverStats()
    feed(stats, [1, 2, 3, 5, 4, 6, 6, 7])
    assert stats.extended_max_seq == 7 and stats.expected == 6
    assert stats.received == 7  # duplicate counted as received (§A.3)
    assert stats.lost == -1
    assert stats.report_block(1.0).fraction_lost == 0  # negative loss reports 0


def test_big_jump_needs_two_sequential_packets_to_restart() -> None:
    stats = ReceiverStats()
    feed(stats, [10, 11, 12, 13])
    assert not stats.update(40000, 0, 1.0)  # one stray packet is ignored
    assert stats.extended_max_seq == 13
    assert not stats.update(50000, 0, 1.02)
    assert stats.update(50001, 160, 1.04)  # 50000 then 50001: the source restarted
    assert stats.base_seq == 50001 and stats.received == 1


def test_probation_restarts_on_misordered_start() -> None:
    stats = ReceiverStats()
    assert not stats.update(100, 0, 0.0)
    assert not stats.update(300, 0, 0.02)  # not sequential: probation again
    assert stats.update(301, 160, 0.04)
    assert stats.expected == 1


def test_jitter_follows_rfc3550_a8() -> None:
    stats = ReceiverStats(clock_rate=8000)
    # Packets every 20 ms of media; every other one arrives 5 ms late: |D| = 5 ms = 40 units
    # each time, so J converges to 40 units (J += (|D| - J) / 16).
    for i in range(400):
        arrival = i * 0.02 + (0.005 if i % 2 else 0.0)
        stats.update(i, i * 160, arrival)
    assert stats.jitter == pytest.approx(40.0, rel=0.001)
    assert stats.jitter_ms == pytest.approx(5.0, rel=0.001)
    assert stats.report_block(9.0).jitter in (39, 40)


def test_jitter_survives_timestamp_wrap() -> None:
    stats = ReceiverStats()
    for i in range(50):
        stats.update(i, (0xFFFFFF00 + i * 160) & 0xFFFFFFFF, i * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_sender_stats() -> None:
    sender = SenderStats(8000)
    for i in range(10):
        sender.update(160, 1000 + i * 160, i * 0.02)
    assert sender.packet_count == 10 and sender.octet_count == 1600
    assert sender.rtp_timestamp_at(0.18 + 0.5) == 1000 + 9 * 160 + 4000


# --- Session -------------------------------------------------------------------------------


def test_ntp_helpers() -> None:
    ntp = to_ntp(1.5)
    assert ntp >> 32 == 2_208_988_801 and ntp & 0xFFFFFFFF == 0x80000000
    assert ntp_middle32(0x1122334455667788) == 0x33445566


def test_report_interval_is_randomised_around_5s() -> None:
    session = RtcpSession(1, "a@b", now=0.0, rng=random.Random(1))
    assert 1.0 <= session.next_report_at <= 3.1  # first report after half the minimum
    times = []
    now = session.next_report_at
    for _ in range(200):
        session.build_report(now)
        times.append(session.next_report_at - now)
        now = session.next_report_at
    assert min(times) >= 5 * 0.5 / 1.2182 - 1e-9 and max(times) <= 5 * 1.5 / 1.2182 + 1e-9
    assert 3.6 <= sum(times) / len(times) <= 4.6  # mean 5 / (e - 3/2) ≈ 4.1 s
    assert not session.report_due(now - 0.1) and session.report_due(now)


def test_sr_rr_exchange_gives_far_end_view_and_rtt() -> None:
    a = RtcpSession(0xA, "a@sb", leg_id="legA", rng=random.Random(2), wallclock_offset=1e9)
    b = RtcpSession(0xB, "b@phone", leg_id="legB", rng=random.Random(3), wallclock_offset=5e8)
    # A sends 500 packets to B, B loses every 10th.
    for i in range(500):
        now = i * 0.02
        a.on_rtp_sent(160, i * 160, now)
        if i % 10 != 5:
            b.on_rtp_received(0xA, 1000 + i, i * 160, now + 0.03)
    sr = a.build_report(10.0)
    first, sdes = parse_compound(sr)
    assert isinstance(first, SenderReport) and first.packet_count == 500
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "a@sb"
    assert b.receive(sr, 10.05) == []  # nothing about B's own stream
    rr = b.build_report(10.25)
    (rr_packet, _) = parse_compound(rr)
    assert isinstance(rr_packet, ReceiverReport)  # B sent no RTP: RR, not SR
    events = a.receive(rr, 10.30)
    assert len(events) == 1 and isinstance(events[0], RtcpReportReceived)
    report = events[0]
    assert report.leg_id == "legA" and report.reporter_ssrc == 0xB
    assert report.fraction_lost == pytest.approx(0.1, abs=0.01)
    assert report.cumulative_lost == b.receiver.lost == 50
    assert report.jitter_ms == pytest.approx(0.0, abs=0.2)
    # RTT = A - LSR - DLSR = (10.30 - 10.0) - 0.20 s (B held the SR for 0.2 s).
    assert report.rtt_ms == pytest.approx(100.0, abs=0.1)
    assert a.remote == report


def test_report_without_our_sr_has_no_rtt_and_bye_event() -> None:
    a = RtcpSession(0xA, "a", leg_id="x", rng=random.Random(0))
    rr = serialize_compound([ReceiverReport(0xB, (ReportBlock(0xA, 0, 0, 10, 8),))])
    (event,) = a.receive(rr, 1.0)
    assert isinstance(event, RtcpReportReceived) and event.rtt_ms is None
    assert event.jitter_ms == pytest.approx(1.0)
    bye = RtcpSession(0xB, "b", rng=random.Random(0)).build_bye(2.0, "hangup")
    events = a.receive(bye, 2.0)
    assert events == [RtcpByeReceived("x", (0xB,), "hangup", 2.0)]
    with pytest.raises(ValueError):
        a.receive(b"\x80", 3.0)


def test_new_ssrc_restarts_receiver_statistics() -> None:
    s = RtcpSession(1, "c", rng=random.Random(0))
    for i in range(20):
        s.on_rtp_received(0x10, i, i * 160, i * 0.02)
    assert s.receiver.received == 19
    for i in range(5):
        s.on_rtp_received(0x20, 500 + i, i * 160, 1 + i * 0.02)
    assert s.receiver.ssrc == 0x20 and s.receiver.received == 4

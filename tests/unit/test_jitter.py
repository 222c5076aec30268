"""Jitter buffer on a fake clock: order, loss, late, duplicates, wrap, adaptation, resync."""

from __future__ import annotations

import random

import pytest

from media.jitter import Frame, JitterBuffer, Lost, PutOutcome

FRAME = 0.020
TS_STEP = 160  # 20 ms at 8000 Hz


def make(min_delay_ms: int = 20, max_delay_ms: int = 200) -> JitterBuffer:
    return JitterBuffer(8000, frame_ms=20, min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms)


def put(jb: JitterBuffer, seq: int, at: float, *, marker: bool = False) -> PutOutcome:
    """Packet ``seq`` (extended; wrapped here) with a timestamp that advances 160 per packet."""
    ts = (seq * TS_STEP) & 0xFFFFFFFF
    return jb.put(seq & 0xFFFF, ts, bytes([seq & 0xFF]), at, marker=marker)


def played(results: list[Frame | Lost | None]) -> list[int | str | None]:
    """Frames as their sequence number, Lost as 'L<seq>', None as None."""
    out: list[int | str | None] = []
    for r in results:
        if isinstance(r, Frame):
            out.append(r.sequence)
        elif isinstance(r, Lost):
            out.append(f"L{r.sequence}")
        else:
            out.append(None)
    return out


def ticks(jb: JitterBuffer, start: float, count: int) -> list[Frame | Lost | None]:
    return [jb.get(start + i * FRAME) for i in range(count)]


def run(
    jb: JitterBuffer, arrivals: list[tuple[float, int]], start: float, count: int
) -> list[int | str | None]:
    """Interleave arrivals ``(time, seq)`` with ``count`` ticks from ``start``, in time order."""
    pending = sorted(arrivals)
    results: list[Frame | Lost | None] = []
    for i in range(count):
        now = start + i * FRAME
        while pending and pending[0][0] <= now:
            at, seq = pending.pop(0)
            put(jb, seq, at)
        results.append(jb.get(now))
    return played(results)


def on_time(seqs: list[int], first: int | None = None) -> list[tuple[float, int]]:
    """Each packet arriving 5 ms after its send time (20 ms apart)."""
    base = seqs[0] if first is None else first
    return [((seq - base) * FRAME + 0.005, seq) for seq in seqs]


def test_nothing_before_the_first_packet_and_during_prefill() -> None:
    jb = make(min_delay_ms=40)
    assert jb.get(0.0) is None
    put(jb, 1, 0.0)
    assert jb.get(0.020) is None  # pre-filling to the 40 ms target
    assert played([jb.get(0.040)]) == [1]


def test_in_order_stream() -> None:
    jb = make()
    seqs = [100, 101, 102, 103, 104]
    assert run(jb, on_time(seqs), 0.0, 7) == [None, None, 100, 101, 102, 103, 104]
    st = jb.stats()
    assert (st.received, st.lost, st.late, st.duplicates) == (5, 0, 0, 0)


def test_frame_carries_the_packet() -> None:
    jb = make()
    put(jb, 7, 0.0, marker=True)
    frame = jb.get(0.030)
    assert frame == Frame(7, 7 * TS_STEP, bytes([7]), True)


def test_reordered_packets_play_in_order() -> None:
    jb = make()
    arrivals = [(0.005, 1), (0.041, 3), (0.046, 2), (0.065, 4)]  # 3 overtakes 2
    assert run(jb, arrivals, 0.0, 6) == [None, None, 1, 2, 3, 4]
    assert jb.stats().lost == 0


def test_reordered_first_packets_before_playout() -> None:
    jb = make(min_delay_ms=40)
    put(jb, 2, 0.025)
    put(jb, 1, 0.030)  # the stream's real first packet came second
    assert played(ticks(jb, 0.080, 2)) == [1, 2]


def test_missing_packet_is_lost_then_the_stream_continues() -> None:
    jb = make()
    assert run(jb, on_time([1, 2, 4, 5], first=1), 0.0, 6) == [None, None, 1, 2, "L3", 4]
    assert played([jb.get(0.120)]) == [5]
    assert jb.stats().lost == 1


def test_packet_after_its_playout_time_is_late() -> None:
    jb = make()
    assert run(jb, on_time([1, 2, 4], first=1), 0.0, 5) == [None, None, 1, 2, "L3"]
    assert put(jb, 3, 0.085) is PutOutcome.LATE
    assert played([jb.get(0.100)]) == [4]
    st = jb.stats()
    assert (st.lost, st.late) == (1, 1)


def test_duplicates_are_dropped_before_and_after_playout() -> None:
    jb = make()
    assert put(jb, 1, 0.005) is PutOutcome.ACCEPTED
    assert put(jb, 1, 0.006) is PutOutcome.DUPLICATE  # still buffered
    put(jb, 2, 0.025)
    assert played(ticks(jb, 0.030, 2)) == [1, 2]
    assert put(jb, 1, 0.060) is PutOutcome.DUPLICATE  # already played
    assert jb.stats().duplicates == 2
    assert jb.stats().late == 0


def test_sequence_wrap_around() -> None:
    jb = make()
    arrivals = [(0.005, 65533), (0.025, 65534), (0.065, 65536), (0.066, 65535), (0.085, 65537)]
    # 65536 is 0 and 65537 is 1 on the wire; 0 overtakes 65535.
    assert run(jb, arrivals, 0.0, 7) == [None, None, 65533, 65534, 65535, 0, 1]
    assert jb.stats().lost == 0
    assert put(jb, 65535, 0.2) is PutOutcome.DUPLICATE  # behind, across the wrap


def test_short_delay_spike_stalls_instead_of_losing() -> None:
    jb = make()
    arrivals = [*on_time([1, 2], first=1), (0.085, 3), (0.086, 4), (0.105, 5)]
    # Packet 3 is 30 ms late and nothing is behind it: stall one tick rather than lose it.
    assert run(jb, arrivals, 0.0, 7) == [None, None, 1, 2, "L3", 3, 4]
    st = jb.stats()
    assert (st.lost, st.late, st.underruns) == (0, 0, 1)


def test_silence_goes_idle_and_the_next_talkspurt_prefills() -> None:
    jb = make(min_delay_ms=40)
    results = run(jb, on_time([1, 2, 3], first=1), 0.0, 11)
    assert results == [None, None, None, 1, 2, 3, "L4", "L4", "L4", None, None]
    # DTX / hold over: the sender resumes with the next sequence number and a marker.
    assert put(jb, 4, 1.000, marker=True) is PutOutcome.ACCEPTED
    assert jb.get(1.005) is None  # pre-filling again
    put(jb, 5, 1.020)
    assert played(ticks(jb, 1.045, 2)) == [4, 5]
    assert jb.stats().lost == 0


def test_dtx_pause_with_advancing_timestamps() -> None:
    jb = make()
    for seq in range(3):
        jb.put(seq, seq * TS_STEP, b"v", seq * FRAME + 0.005)
    assert played(ticks(jb, 0.030, 7)) == [0, 1, 2, "L3", "L3", "L3", None]
    # RFC 3551 §4.1: after 2 s of silence the sequence continues, the timestamp has moved
    # on by the silence and the marker flags the talkspurt.
    ts = 100 * TS_STEP
    jb.put(3, ts, b"v", 2.005, marker=True)
    jb.put(4, ts + TS_STEP, b"v", 2.025)
    jb.put(5, ts + 2 * TS_STEP, b"v", 2.045)
    assert played(ticks(jb, 2.030, 3)) == [3, 4, 5]
    assert jb.stats().lost == 0 and jb.stats().dropped == 0


def test_ssrc_change_resyncs() -> None:
    jb = make()
    jb.put(10, 1600, b"a", 0.005, ssrc=0xAAAA)
    assert played([jb.get(0.030)]) == [10]
    # A new source with unrelated sequence and timestamp: a new timeline (RFC 3550 §8.2).
    assert jb.put(5000, 99, b"b", 0.040, ssrc=0xBBBB) is PutOutcome.ACCEPTED
    jb.put(5001, 99 + TS_STEP, b"c", 0.060, ssrc=0xBBBB)
    assert jb.get(0.050) is None  # pre-filling the new stream
    assert played(ticks(jb, 0.070, 2)) == [5000, 5001]
    st = jb.stats()
    assert st.resyncs == 1 and st.lost == 0 and st.late == 0


def test_big_sequence_jump_resyncs() -> None:
    jb = make()
    put(jb, 1, 0.005)
    assert played(ticks(jb, 0.030, 1)) == [1]
    put(jb, 30000, 0.045)  # past RFC 3550 MAX_DROPOUT: a restarted sender
    assert jb.get(0.050) is None
    assert played(ticks(jb, 0.070, 1)) == [30000]
    assert jb.stats().resyncs == 1
    assert jb.stats().lost == 0  # not counted as a 30000-packet loss


def test_sequence_restart_backwards_needs_two_packets() -> None:
    jb = make()
    assert run(jb, on_time([1000, 1001, 1002]), 0.0, 5) == [None, None, 1000, 1001, 1002]
    assert put(jb, 10, 0.085) is PutOutcome.LATE  # one stray packet: ignored
    assert put(jb, 11, 0.105) is PutOutcome.ACCEPTED  # the second confirms a restart
    assert played(ticks(jb, 0.130, 1)) == [11]
    assert jb.stats().resyncs == 1


def simulate(
    jitter_s: float, seconds: int, seed: int, jb: JitterBuffer, t0: float = 0.0
) -> list[Frame | Lost | None]:
    """Send a packet every 20 ms with a random network delay; tick every 20 ms."""
    rnd = random.Random(seed)
    first_seq = round(t0 / FRAME)
    count = seconds * 50
    arrivals = sorted(
        (t0 + i * FRAME + 0.030 + rnd.uniform(0, jitter_s), first_seq + i) for i in range(count)
    )
    results: list[Frame | Lost | None] = []
    k = 0
    tick = t0 + 0.0017  # the mixer's tick is not aligned with the sender
    while tick < t0 + count * FRAME:
        while k < len(arrivals) and arrivals[k][0] <= tick:
            at, seq = arrivals[k]
            put(jb, seq, at)
            k += 1
        results.append(jb.get(tick))
        tick += FRAME
    return results


def test_steady_stream_stays_at_the_minimum_delay() -> None:
    jb = make()
    results = simulate(0.0, 5, seed=1, jb=jb)
    st = jb.stats()
    assert st.target_ms == pytest.approx(20)
    assert st.delay_ms < 45
    assert st.lost == 0 and st.late == 0
    assert all(isinstance(r, Frame) for r in results[3:])


def test_delay_adapts_to_jitter_and_back() -> None:
    jb = make()
    results = simulate(0.080, 10, seed=3, jb=jb)
    st = jb.stats()
    # 95th percentile of U(0, 80 ms) + 20 ms margin.
    assert 70 <= st.target_ms <= 110
    assert st.jitter_ms > 10  # RFC 3550 §A.8 estimate saw it too
    assert st.delay_ms == pytest.approx(st.target_ms, abs=25)
    # Once adapted, (almost) everything arrives in time.
    tail = results[-200:]
    assert sum(isinstance(r, Frame) for r in tail) >= 196
    early_losses = st.lost
    assert early_losses < 25
    # The network calms down: the delay comes back down within a few seconds.
    simulate(0.0, 8, seed=4, jb=jb, t0=10.0)
    calm = jb.stats()
    assert calm.target_ms == pytest.approx(20)
    assert calm.delay_ms < 50
    assert calm.dropped > 0


def test_delay_is_bounded_by_max_delay() -> None:
    jb = make(max_delay_ms=100)
    simulate(0.400, 6, seed=5, jb=jb)
    assert jb.stats().target_ms == pytest.approx(100)


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(0)
    with pytest.raises(ValueError):
        JitterBuffer(8000, min_delay_ms=300, max_delay_ms=200)

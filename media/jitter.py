"""Adaptive jitter buffer for one incoming RTP stream (sans-IO).

Theory of operation
-------------------
Packets go in with ``put`` as they arrive (sequence number, timestamp, payload and the
local arrival time); the mixer pulls exactly one frame per 20 ms tick with ``get(now)``.
Nothing here reads a clock: both calls are given the time.

Playout order is the sequence number, extended past its 16-bit wrap with the serial
arithmetic of ``media.rtp.serial_diff`` (RFC 1982 §3.2, RFC 3550 §A.1). ``get`` returns:

* ``Frame`` – the next packet in order;
* ``Lost`` – nothing to play this tick, the decoder must conceal: the packet is missing
  while a later one is already here (counted as lost; if it still arrives it is *late* and
  dropped), or the buffer ran dry (an *underrun*: the expected packet is not declared lost
  yet, so the stream stalls one tick, which is how the delay grows under a delay spike), or
  the buffer deliberately stretches its delay by one frame;
* ``None`` – nothing to play and nothing to conceal: before the first packet, while
  pre-filling, and once the stream has been silent for more than 60 ms (the concealer is
  mute by then anyway; covers DTX, hold and the end of a talkspurt).

Delay. For every packet the *transit* ``arrival - timestamp / clock_rate`` is recorded
(RFC 3550 §6.4.1); its minimum over the last ~2.5 s is the fastest path through the
network, and a packet's *relative delay* is its transit minus that minimum. The *target*
delay is the 95th percentile of the relative delays plus ``min_delay`` (which absorbs the
quantisation of 20 ms ticks), clamped to ``[min_delay, max_delay]``, recomputed every
160 ms. The *current* delay is measured on every played frame as ``now`` minus the time the
fastest packet with that timestamp would have arrived. When the current delay exceeds the
target by more than a frame the buffer drops one frame; when it is short by more than a
frame it conceals one extra frame; at most one such correction per 160 ms so the listener
does not hear a burst of them. The RFC 3550 §A.8 interarrival jitter estimate is kept too,
for RTCP reports and the call detail record.

Resynchronisation (the stream is treated as new: buffer emptied, pre-filled again):

* the SSRC changes (RFC 3550 §8.2: a new source);
* the sequence number jumps more than 1 s ahead (the sender restarted; the gap is
  counted as lost when it is plausible, RFC 3550 §A.1 MAX_DROPOUT);
* two consecutive packets are far behind the playout point (RFC 3550 §A.1 probation: a
  restarted sender whose sequence went backwards).

A packet after the buffer went idle, or a marker bit (RFC 3551 §4.1: first packet of a
talkspurt) while it is running dry, starts a new pre-fill, so each talkspurt begins at the
target delay; a timestamp that
jumps by more than a second against the arrival clock restarts the delay measurement only.

Assumes the sender's packet time equals ``frame_ms`` (we offer ``a=ptime:20``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from media.rtp import serial_diff

__all__ = ["Frame", "JitterBuffer", "JitterStats", "Lost", "PutOutcome"]

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF
_DELIVERED_BITS = 64  # how far back a played sequence number is remembered (duplicates)
_DELIVERED_MASK = (1 << _DELIVERED_BITS) - 1
_MAX_MISORDER = 100  # RFC 3550 §A.1
_MAX_DROPOUT = 3000  # RFC 3550 §A.1
_WINDOW = 128  # transit samples kept (2.56 s of 20 ms packets)
_PERCENTILE = 0.95
_ADAPT_TICKS = 8  # recompute the target and allow one correction every 8 ticks (160 ms)
_IDLE_AFTER_S = 0.060  # silence after which get() returns None (PLC is mute by then)
_TIMING_RESET_S = 1.0  # a transit jump this big is a timestamp discontinuity, not jitter


@dataclass(frozen=True, slots=True)
class Frame:
    """The next packet to decode, in sequence order."""

    sequence: int
    timestamp: int
    payload: bytes
    marker: bool = False


@dataclass(frozen=True, slots=True)
class Lost:
    """No packet to play this tick: conceal one frame. ``sequence`` is the one expected."""

    sequence: int


class PutOutcome(enum.Enum):
    """What ``put`` did with a packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters since creation and the current delay figures (milliseconds)."""

    received: int
    lost: int
    late: int
    duplicates: int
    underruns: int
    dropped: int
    stretched: int
    resyncs: int
    buffered: int
    delay_ms: float
    target_ms: float
    jitter_ms: float


class _State(enum.Enum):
    EMPTY = "empty"  # no packet since creation or resync
    PREFILL = "prefill"  # packets buffered, waiting until the target delay has passed
    PLAYING = "playing"
    IDLE = "idle"  # ran dry for longer than _IDLE_AFTER_S; the next packet pre-fills


class JitterBuffer:
    """Reorders, de-duplicates and times out the packets of one stream (see module doc)."""

    __slots__ = (
        "_buf",
        "_cooldown",
        "_delay",
        "_delivered",
        "_dropped",
        "_duplicates",
        "_frame_s",
        "_idle_after",
        "_jitter",
        "_last_transit",
        "_late",
        "_lost",
        "_max_ahead",
        "_max_delay",
        "_min_delay",
        "_min_transit",
        "_next",
        "_play_at",
        "_played_any",
        "_probation",
        "_received",
        "_resyncs",
        "_ring",
        "_ring_count",
        "_ring_pos",
        "_ssrc",
        "_state",
        "_stretched",
        "_target",
        "_ticks",
        "_ts_last",
        "_underrun_run",
        "_underruns",
        "clock_rate",
        "frame_ms",
    )

    def __init__(
        self,
        clock_rate: int,
        frame_ms: int = 20,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
    ) -> None:
        if clock_rate <= 0 or frame_ms <= 0:
            raise ValueError("clock_rate and frame_ms must be positive")
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError(f"need 0 <= min_delay_ms <= max_delay_ms, got {min_delay_ms}")
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self._frame_s = frame_ms / 1000.0
        self._min_delay = min_delay_ms / 1000.0
        self._max_delay = max_delay_ms / 1000.0
        self._max_ahead = max(1000 // frame_ms, 2 * max_delay_ms // frame_ms)
        self._idle_after = max(1, round(_IDLE_AFTER_S / self._frame_s))
        self._target = self._min_delay
        self._jitter = 0.0  # RFC 3550 §A.8 J, in seconds
        self._received = 0
        self._lost = 0
        self._late = 0
        self._duplicates = 0
        self._underruns = 0
        self._dropped = 0
        self._stretched = 0
        self._resyncs = 0
        self._ssrc: int | None = None
        self._buf: dict[int, tuple[int, int, bytes, bool]] = {}
        self._ring = [0.0] * _WINDOW
        self._clear()

    def _clear(self) -> None:
        """Forget the stream (not the counters, nor the learnt target delay)."""
        self._state = _State.EMPTY
        self._buf.clear()
        self._next = 0  # extended sequence number of the next frame to play
        self._delivered = 0  # bit i: sequence _next-1-i was played (duplicate detection)
        self._played_any = False
        self._play_at = 0.0
        self._probation: int | None = None
        self._ts_last = 0  # highest extended timestamp seen
        self._ring_pos = 0
        self._ring_count = 0
        self._min_transit = 0.0
        self._last_transit: float | None = None
        self._delay = 0.0
        self._ticks = 0
        self._cooldown = 0
        self._underrun_run = 0

    def reset(self) -> None:
        """Drop everything buffered; the next packet starts a new stream."""
        self._clear()
        self._ssrc = None

    # --- input -----------------------------------------------------------------------------

    def put(
        self,
        seq: int,
        timestamp: int,
        payload: bytes,
        arrival: float,
        *,
        marker: bool = False,
        ssrc: int | None = None,
    ) -> PutOutcome:
        """Add one received packet; ``arrival`` is the local clock in seconds."""
        self._received += 1
        if ssrc is not None and ssrc != self._ssrc:
            if self._ssrc is not None:  # RFC 3550 §8.2: a new source, a new timeline
                self._resync()
            self._ssrc = ssrc
        if self._state is _State.EMPTY:
            return self._start(seq, timestamp, payload, arrival, marker)
        ext = self._next + serial_diff(seq, self._next & _SEQ_MASK)
        d = ext - self._next
        if d < 0:
            if self._state is _State.PREFILL and not self._played_any and d > -_MAX_MISORDER:
                self._next = ext  # reordered start of a stream that has not played yet
            else:
                return self._behind(seq, timestamp, payload, arrival, marker, d)
        elif d > self._max_ahead:
            # RFC 3550 §A.1: a jump past MAX_DROPOUT is a restart; a smaller one a long loss.
            if d < _MAX_DROPOUT:
                self._lost += d
            self._resync()
            return self._start(seq, timestamp, payload, arrival, marker)
        self._probation = None
        if ext in self._buf:
            self._duplicates += 1
            return PutOutcome.DUPLICATE
        if self._state is _State.IDLE or (marker and self._underrun_run and not self._buf):
            # RFC 3551 §4.1: a talkspurt starts; let it build up to the target delay again.
            # A sender that paused its timestamps too (instead of advancing them by the
            # silence, RFC 3550 §5.1) shows a transit jump: measure the delay afresh.
            ts_ext = self._record_transit(timestamp, arrival, self._max_delay)
            self._state = _State.PREFILL
            self._play_at = arrival + self._target
        else:
            ts_ext = self._record_transit(timestamp, arrival)
        self._buf[ext] = (timestamp, ts_ext, payload, marker)
        return PutOutcome.ACCEPTED

    def _start(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, marker: bool
    ) -> PutOutcome:
        self._state = _State.PREFILL
        self._next = seq
        self._ts_last = timestamp
        self._play_at = arrival + self._target
        ts_ext = self._record_transit(timestamp, arrival)
        self._buf[seq] = (timestamp, ts_ext, payload, marker)
        return PutOutcome.ACCEPTED

    def _behind(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, marker: bool, d: int
    ) -> PutOutcome:
        if -d <= _DELIVERED_BITS and (self._delivered >> (-d - 1)) & 1:
            self._duplicates += 1
            return PutOutcome.DUPLICATE
        if d < -_MAX_MISORDER:
            # RFC 3550 §A.1 probation: two in a row far behind means the sender restarted.
            if self._probation == seq:
                self._resync()
                return self._start(seq, timestamp, payload, arrival, marker)
            self._probation = (seq + 1) & _SEQ_MASK
        else:
            self._record_transit(timestamp, arrival)  # a late packet is jitter we must learn
        self._late += 1
        return PutOutcome.LATE

    def _resync(self) -> None:
        self._resyncs += 1
        self._clear()

    def _record_transit(
        self, timestamp: int, arrival: float, reset_after: float = _TIMING_RESET_S
    ) -> int:
        ts_ext = self._ts_last + serial_diff(timestamp, self._ts_last & _TS_MASK, 32)
        if ts_ext > self._ts_last:
            self._ts_last = ts_ext
        transit = arrival - ts_ext / self.clock_rate  # RFC 3550 §6.4.1
        last = self._last_transit
        if last is None or abs(transit - last) > reset_after:
            # First packet or a timestamp discontinuity: restart the delay measurement.
            self._ring_pos = 0
            self._ring_count = 0
            self._min_transit = transit
        else:
            self._jitter += (abs(transit - last) - self._jitter) / 16.0  # RFC 3550 §A.8
            if transit < self._min_transit:
                self._min_transit = transit
        self._last_transit = transit
        self._ring[self._ring_pos] = transit
        self._ring_pos = (self._ring_pos + 1) % _WINDOW
        if self._ring_count < _WINDOW:
            self._ring_count += 1
        return ts_ext

    # --- output ----------------------------------------------------------------------------

    def get(self, now: float) -> Frame | Lost | None:
        """The frame to play at this tick (call once per ``frame_ms``); see module doc."""
        state = self._state
        if state is _State.PREFILL:
            if now < self._play_at or not self._buf:
                return None
            self._begin_playout()
        elif state is not _State.PLAYING:
            return None
        self._ticks += 1
        if self._cooldown:
            self._cooldown -= 1
        if self._ticks % _ADAPT_TICKS == 0:
            self._adapt()
        entry = self._buf.pop(self._next, None)
        if entry is None:
            return self._missing()
        self._underrun_run = 0
        ts_ext = entry[1]
        self._delay = now - (ts_ext / self.clock_rate + self._min_transit)
        if not self._cooldown:
            if self._delay > self._target + self._frame_s and (self._next + 1) in self._buf:
                # Too much audio queued: skip this frame (the next one plays a frame sooner).
                self._dropped += 1
                self._cooldown = _ADAPT_TICKS
                self._advance(True)
                entry = self._buf.pop(self._next)
                ts_ext = entry[1]
                self._delay = now - (ts_ext / self.clock_rate + self._min_transit)
            elif self._delay < self._target - self._frame_s:
                # Too little: conceal one frame now and play this packet at the next tick.
                self._stretched += 1
                self._cooldown = _ADAPT_TICKS
                self._buf[self._next] = entry
                return Lost(self._next & _SEQ_MASK)
        frame = Frame(self._next & _SEQ_MASK, entry[0], entry[2], entry[3])
        self._advance(True)
        return frame

    def _begin_playout(self) -> None:
        first = min(self._buf)
        if self._played_any:
            gap = first - self._next
            if gap > 0:  # packets that never came while we were idle
                self._lost += gap
                self._delivered = (self._delivered << gap) & _DELIVERED_MASK
        self._next = first
        self._state = _State.PLAYING
        self._underrun_run = 0
        # Let the delay estimate settle before the first drop/stretch correction.
        self._cooldown = _ADAPT_TICKS

    def _missing(self) -> Lost | None:
        expected = self._next & _SEQ_MASK
        if self._buf:
            # A later packet is here, so this one is lost (if it comes now, it is late).
            self._lost += 1
            self._advance(False)
            return Lost(expected)
        # Underrun: do not give up on the packet yet; stalling one tick adds a frame of delay.
        self._underruns += 1
        self._underrun_run += 1
        if self._underrun_run > self._idle_after:
            self._state = _State.IDLE
            return None
        return Lost(expected)

    def _advance(self, played: bool) -> None:
        self._delivered = ((self._delivered << 1) | played) & _DELIVERED_MASK
        self._next += 1
        self._played_any = True

    def _adapt(self) -> None:
        n = self._ring_count
        if n == 0:
            return
        window = sorted(self._ring[:n]) if n < _WINDOW else sorted(self._ring)
        self._min_transit = window[0]
        spread = window[int(_PERCENTILE * (n - 1))] - window[0]
        self._target = min(max(spread + self._min_delay, self._min_delay), self._max_delay)

    # --- reporting -------------------------------------------------------------------------

    @property
    def target_delay_ms(self) -> float:
        """The delay the buffer is steering towards."""
        return self._target * 1000.0

    @property
    def jitter(self) -> int:
        """RFC 3550 §A.8 interarrival jitter in timestamp units (for RTCP reports)."""
        return int(self._jitter * self.clock_rate)

    def stats(self) -> JitterStats:
        """A snapshot of the counters."""
        return JitterStats(
            received=self._received,
            lost=self._lost,
            late=self._late,
            duplicates=self._duplicates,
            underruns=self._underruns,
            dropped=self._dropped,
            stretched=self._stretched,
            resyncs=self._resyncs,
            buffered=len(self._buf),
            delay_ms=self._delay * 1000.0,
            target_ms=self._target * 1000.0,
            jitter_ms=self._jitter * 1000.0,
        )

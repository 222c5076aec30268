"""DTMF: RFC 4733 telephone events, SIP INFO bodies and an in-band detector (sans-IO).

Theory of operation
-------------------
A digit can reach Switchboard three ways; each becomes one ``DtmfReceived`` event, emitted
once when the digit *ends* (so it carries its duration), with ``at`` = the ``now`` of the
call that produced it:

* RFC 4733 telephone events (``Rfc4733Receiver``). One key press is many packets: a start
  packet (marker bit), updates with growing duration and an end packet (E bit) sent three
  times (§2.5.1.4), all carrying the RTP timestamp of the event's start. An event is
  therefore identified by its timestamp (§2.5.1.3-§2.5.1.4): the first packet seen for a new
  timestamp opens the event (whether or not it was the start packet, §2.5.1.2 says a lost
  start must be tolerated), the first end packet reports it and later copies are ignored.
  If every end packet is lost, the event is reported when a newer event starts or when no
  packet refreshed it for ``timeout`` seconds (``poll``). Long events split into segments
  (§2.5.1.3: a new timestamp = old timestamp + old duration, same code) continue the event.
  ``Rfc4733Sender`` produces the packet schedule of §2.5.1 for one digit.
* SIP INFO (``parse_dtmf_info``): ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``
  lines, a de-facto format from Cisco) and ``application/dtmf`` (the body is the digit).
* In-band tones (``GoertzelDetector``), for phones that send neither. Audio is cut into
  blocks of 12.75 ms (102 samples at 8 kHz, 204 at 16 kHz); each decision looks at a window of
  two blocks (25.5 ms, Hann-weighted, hop one block). For each of the eight DTMF frequencies
  it evaluates single DFT bins (the Goertzel quantity, computed as one small matrix product)
  on a grid from -6 % to +6 % around the nominal frequency in 1 % steps; the grid's peak,
  refined by a parabola through the log-magnitudes, gives each tone's level and its frequency
  deviation. A window holds a digit when, for the strongest row and column tone:

  - both deviations are within ±2.5 % (ITU-T Q.24: accept ±1.5 %, reject ±3.5 %; the
    threshold sits halfway);
  - both levels are at least ``MIN_LEVEL_DBM0`` (-26 dBm0: Q.24's national receivers must
    work down to about -25 dBm0 per frequency);
  - twist is within limits: the low-group (row) tone may be up to 8 dB stronger than the
    high-group (column) tone ("normal twist", what line loss at high frequencies produces)
    and the column up to 4 dB stronger than the row ("reverse twist") — the North American
    values listed in Q.24 (TIA-464: +4/-8 dB), used by most detectors (Asterisk, spandsp);
  - the two tones hold at least 70 % of the window's energy (speech and music spread their
    energy over many frequencies; a DTMF pair does not).

  A digit is recognised after two consecutive windows agree (about 40 ms of tone, Q.24's
  minimum duration) and reported once it has been absent for two windows (or another digit
  took over), so a held key is one digit and a new press needs a real pause.

Implemented: RFC 4733 §2.3 (payload), §2.5.1.1-§2.5.1.4 (sending and receiving events,
retransmitted end packets, lost packets, long events); ITU-T Q.24 (DTMF reception limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from media.rtp import DTMF_EVENTS, TelephoneEvent, digit_to_event, serial_diff

__all__ = [
    "COLUMN_FREQUENCIES",
    "DTMF_FREQUENCIES",
    "MIN_LEVEL_DBM0",
    "ROW_FREQUENCIES",
    "DtmfPacket",
    "DtmfReceived",
    "DtmfSource",
    "GoertzelDetector",
    "Rfc4733Receiver",
    "Rfc4733Sender",
    "parse_dtmf_info",
]

DtmfSource = Literal["rfc4733", "info", "inband"]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A digit pressed on a leg, whichever way it came; emitted once, when the digit ended."""

    leg_id: str
    digit: str
    source: DtmfSource
    duration_ms: int
    at: float


# --- RFC 4733 receiver ---------------------------------------------------------------------

_TS_MASK = 0xFFFFFFFF


class Rfc4733Receiver:
    """Turns a stream of RFC 4733 event packets into one ``DtmfReceived`` per key press.

    ``feed`` is called for every telephone-event packet of one RTP stream, with the RTP
    timestamp and marker bit of its header. ``poll(now)`` must be called from time to time
    (every 20 ms tick is fine, or at ``next_deadline()``) to report events whose end packets
    were all lost.
    """

    __slots__ = (
        "_digit",
        "_duration",
        "_ended_digit",
        "_ended_ts",
        "_last_seen",
        "_queued",
        "_segment_base",
        "_ts",
        "clock_rate",
        "leg_id",
        "timeout",
    )

    def __init__(self, leg_id: str = "", clock_rate: int = 8000, timeout: float = 0.2) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        self.leg_id = leg_id
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._ts: int | None = None  # RTP timestamp of the current segment
        self._digit = ""
        self._segment_base = 0  # duration of earlier segments of a long event (§2.5.1.3)
        self._duration = 0  # longest duration seen in the current segment
        self._last_seen = 0.0
        self._ended_ts: int | None = None
        self._ended_digit = ""
        self._queued: DtmfReceived | None = None

    def feed(
        self, event: TelephoneEvent, timestamp: int, marker: bool, now: float
    ) -> DtmfReceived | None:
        """Process one event packet; return the digit if this packet completed one."""
        digit = event.digit
        if digit is None:
            return None  # RFC 4733 §3.2: only DTMF events 0-15 are digits (flash etc. ignored)
        ts = timestamp & _TS_MASK
        if self._ended_ts is not None:
            behind = serial_diff(ts, self._ended_ts, 32)
            # End-packet copies (§2.5.1.4) and late updates of a reported event. A different
            # code with the same timestamp and a marker is a new press from a sender that
            # reuses timestamps; accept it rather than lose a digit.
            if behind == 0 and not (marker and digit != self._ended_digit):
                return None
            if behind < 0:
                return None  # reordered packet of an older event
        out: DtmfReceived | None = None
        if self._ts is not None and ts != self._ts:
            ahead = serial_diff(ts, self._ts, 32)
            if ahead < 0:
                return None  # reordered packet of an earlier segment
            interval = self.clock_rate // 50
            if digit == self._digit and abs(ahead - self._duration) <= interval:
                # §2.5.1.3: a new segment of a long event; keep counting.
                self._segment_base += ahead
                self._ts = ts
                self._duration = 0
            else:
                out = self._finish(now)  # the previous event's end packets were all lost
        if self._ts is None:
            self._ts = ts
            self._digit = digit
            self._segment_base = 0
            self._duration = 0
        if event.duration > self._duration:
            self._duration = event.duration
        self._last_seen = now
        if event.end:
            done = self._finish(now)
            if out is None:
                return done
            self._queued = done
        return out

    def poll(self, now: float) -> DtmfReceived | None:
        """Report an event that completed without a usable end packet (lost ends, timeout)."""
        if self._queued is not None:
            queued, self._queued = self._queued, None
            return queued
        if self._ts is not None and now - self._last_seen >= self.timeout:
            return self._finish(now)
        return None

    def next_deadline(self) -> float | None:
        """When ``poll`` may next have something to report (None: nothing pending)."""
        if self._queued is not None:
            return self._last_seen
        if self._ts is not None:
            return self._last_seen + self.timeout
        return None

    def _finish(self, now: float) -> DtmfReceived:
        total = self._segment_base + self._duration
        self._ended_ts = self._ts
        self._ended_digit = self._digit
        self._ts = None
        return DtmfReceived(
            self.leg_id, self._digit, "rfc4733", round(total * 1000 / self.clock_rate), now
        )


# --- RFC 4733 sender -----------------------------------------------------------------------


class DtmfPacket(NamedTuple):
    """One telephone-event packet to send: payload, marker, timestamp offset, send time.

    ``timestamp_offset`` is added to the event's start timestamp (0 for every packet except
    the segments of events longer than 0xFFFF units); ``send_offset_ms`` is when to send it,
    relative to the first packet.
    """

    payload: bytes
    marker: bool
    timestamp_offset: int
    send_offset_ms: int


class Rfc4733Sender:
    """Builds the packet sequence of one digit (RFC 4733 §2.5.1)."""

    __slots__ = ("clock_rate", "interval_ms", "payload_type")

    END_COPIES = 3  # §2.5.1.4: the final packet is sent three times

    def __init__(self, payload_type: int = 101, clock_rate: int = 8000, interval_ms: int = 20):
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range 0..127")
        if clock_rate <= 0 or interval_ms <= 0:
            raise ValueError("clock rate and interval must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.interval_ms = interval_ms

    def packets(self, digit: str, duration_ms: int = 100, volume: int = 10) -> Iterator[DtmfPacket]:
        """Yield the packets of one key press of ``duration_ms``.

        §2.5.1.2: the first packet has the marker bit; updates follow every interval with the
        duration so far, all with the event's start timestamp. §2.5.1.4: the end packet
        (E bit, final duration) is sent three times at the update interval. §2.5.1.3: events
        longer than 0xFFFF timestamp units are split into segments, each with its own start
        timestamp (offset) and without the E bit except at the very end.
        """
        code = digit_to_event(digit)
        if duration_ms <= 0:
            raise ValueError(f"DTMF duration must be positive, got {duration_ms}")
        step = self.clock_rate * self.interval_ms // 1000
        total = duration_ms * self.clock_rate // 1000
        # Longest segment that is a whole number of intervals and fits the 16-bit field.
        seg_max = (0xFFFF // step) * step
        send_ms = 0
        seg_start = 0
        first = True
        while True:
            seg_len = min(total - seg_start, seg_max)
            last_segment = seg_start + seg_len >= total
            elapsed = step
            while elapsed < seg_len:
                payload = TelephoneEvent(code, False, volume, elapsed).serialize()
                yield DtmfPacket(payload, first, seg_start, send_ms)
                first = False
                send_ms += self.interval_ms
                elapsed += step
            if last_segment:
                payload = TelephoneEvent(code, True, volume, seg_len).serialize()
                for copy in range(self.END_COPIES):
                    yield DtmfPacket(payload, first and copy == 0, seg_start, send_ms)
                    send_ms += self.interval_ms
                return
            payload = TelephoneEvent(code, False, volume, seg_len).serialize()
            yield DtmfPacket(payload, first, seg_start, send_ms)
            first = False
            send_ms += self.interval_ms
            seg_start += seg_len


# --- SIP INFO ------------------------------------------------------------------------------

_INFO_DEFAULT_DURATION_MS = 100  # neither format requires a duration
_INFO_MAX_DURATION_MS = 60_000
# Some phones send the RFC 4733 event number instead of the character (10 = *, 11 = #).
_SIGNAL_NUMBERS = {str(code): DTMF_EVENTS[code] for code in range(16)}


def _signal_to_digit(value: str) -> str | None:
    value = value.strip().upper()
    if len(value) == 1 and value in DTMF_EVENTS:
        return value
    return _SIGNAL_NUMBERS.get(value.lstrip("0") or "0") if value.isdigit() else None


def parse_dtmf_info(content_type: str, body: bytes | str) -> tuple[str, int] | None:
    """Digit and duration (ms) of a SIP INFO DTMF body, or None if it is not one.

    ``application/dtmf-relay``: lines ``Signal=<digit>`` and optional ``Duration=<ms>``
    (keys case-insensitive, spaces allowed, ``Signal=10``/``11`` read as ``*``/``#``).
    ``application/dtmf``: the body is the digit (or its event number). Without a duration
    100 ms is assumed.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    if mime == "application/dtmf":
        digit = _signal_to_digit(text)
        return (digit, _INFO_DEFAULT_DURATION_MS) if digit else None
    if mime != "application/dtmf-relay":
        return None
    digit = None
    duration = _INFO_DEFAULT_DURATION_MS
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "signal":
            digit = _signal_to_digit(value)
        elif key == "duration":
            try:
                parsed = int(value.strip())
            except ValueError:
                continue  # keep the default rather than lose the digit
            if 0 < parsed <= _INFO_MAX_DURATION_MS:
                duration = parsed
    return (digit, duration) if digit else None


# --- In-band detector ----------------------------------------------------------------------

# ITU-T Q.23 Table 1: low group (rows) and high group (columns).
ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_FREQUENCIES = ROW_FREQUENCIES + COLUMN_FREQUENCIES
_KEYPAD = ("123A", "456B", "789C", "*0#D")

MIN_LEVEL_DBM0 = -26.0
MAX_DEVIATION = 0.025
MAX_LOW_OVER_HIGH_DB = 8.0  # "normal twist"
MAX_HIGH_OVER_LOW_DB = 4.0  # "reverse twist"
MIN_TONE_ENERGY_RATIO = 0.7
PRESENT_WINDOWS = 2
ABSENT_WINDOWS = 2

_GRID = np.arange(-6, 7, dtype=np.float64) / 100.0  # relative offsets probed around each tone
_CENTER = 6
# 0 dBm0 peak amplitude in 16-bit PCM (G.711: a full-scale sine is about +3.14 dBm0).
_DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)
_MIN_AMPLITUDE = _DBM0_PEAK * 10 ** (MIN_LEVEL_DBM0 / 20)
_MIN_PAIR_POWER = _MIN_AMPLITUDE**2  # two sines at the minimum amplitude: 2 x A^2 / 2

Float64Array = npt.NDArray[np.float64]


class GoertzelDetector:
    """In-band DTMF detector for one leg's decoded audio (any frame size, 8 or 16 kHz)."""

    __slots__ = (
        "_active",
        "_active_hits",
        "_basis",
        "_block",
        "_candidate",
        "_candidate_hits",
        "_misses",
        "_pending",
        "_window",
        "_window_sum",
        "leg_id",
        "sample_rate",
    )

    def __init__(self, sample_rate: int = 8000, *, leg_id: str = "") -> None:
        if sample_rate < 8000:
            raise ValueError(f"DTMF detection needs at least 8 kHz, got {sample_rate}")
        self.sample_rate = sample_rate
        self.leg_id = leg_id
        self._block = round(102 * sample_rate / 8000)
        size = 2 * self._block
        n = np.arange(size, dtype=np.float64)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * (n + 0.5) / size)  # Hann
        self._window = window
        self._window_sum = float(window.sum())
        freqs = (np.array(DTMF_FREQUENCIES)[:, None] * (1.0 + _GRID)[None, :]).ravel()
        arg = 2 * np.pi * n[:, None] * freqs[None, :] / sample_rate
        # Window folded into the basis: one matrix product gives every windowed DFT bin
        # (cosine parts in the first half of the columns, sine parts in the second).
        self._basis = np.ascontiguousarray(
            np.concatenate((window[:, None] * np.cos(arg), window[:, None] * np.sin(arg)), axis=1)
        )
        self._pending: Float64Array = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._candidate_hits = 0
        self._active: str | None = None
        self._active_hits = 0
        self._misses = 0

    @property
    def block_samples(self) -> int:
        """Samples per analysis hop (the window is two of them)."""
        return self._block

    def feed(self, pcm_frame: npt.ArrayLike, now: float) -> list[DtmfReceived]:
        """Analyse the next frame of audio; return digits that ended within it."""
        frame = np.asarray(pcm_frame, dtype=np.float64).ravel()
        pending = np.concatenate((self._pending, frame)) if len(self._pending) else frame
        size = 2 * self._block
        out: list[DtmfReceived] = []
        start = 0
        while start + size <= len(pending):
            digit = self.classify(pending[start : start + size])
            event = self._step(digit, now)
            if event is not None:
                out.append(event)
            start += self._block
        self._pending = pending[start:].copy()
        return out

    def flush(self, now: float) -> list[DtmfReceived]:
        """End of stream: report a digit still being held."""
        self._pending = np.zeros(0, dtype=np.float64)
        event = self._end(now)
        self._candidate, self._candidate_hits = None, 0
        return [event] if event is not None else []

    def classify(self, window_samples: Float64Array) -> str | None:
        """The digit present in one analysis window (2 blocks), or None."""
        x = window_samples
        total_power = float(np.dot(self._window, x * x)) / self._window_sum
        if total_power < _MIN_PAIR_POWER:
            return None  # too quiet to hold two tones at the minimum level: skip the DFT
        bins = x @ self._basis
        half = len(bins) // 2
        re, im = bins[:half], bins[half:]
        amp = np.sqrt(re * re + im * im).reshape(len(DTMF_FREQUENCIES), len(_GRID))
        amp *= 2.0 / self._window_sum
        peaks = amp.argmax(axis=1)
        row = int(amp[:4].max(axis=1).argmax())
        col = 4 + int(amp[4:].max(axis=1).argmax())
        levels: list[float] = []
        for tone in (row, col):
            k = int(peaks[tone])
            if k == 0 or k == len(_GRID) - 1:
                return None  # peak at the grid edge: at least 6 % off
            a, b, c = np.log(amp[tone, k - 1 : k + 2] + 1e-12)
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
            deviation = (k - _CENTER + shift) / 100.0
            if abs(deviation) > MAX_DEVIATION:
                return None
            levels.append(float(np.exp(b - 0.25 * (a - c) * shift)))
        row_amp, col_amp = levels
        if row_amp < _MIN_AMPLITUDE or col_amp < _MIN_AMPLITUDE:
            return None
        twist_db = 20 * np.log10(row_amp / col_amp)  # > 0: low group stronger
        if twist_db > MAX_LOW_OVER_HIGH_DB or -twist_db > MAX_HIGH_OVER_LOW_DB:
            return None
        tone_power = 0.5 * (row_amp * row_amp + col_amp * col_amp)
        if tone_power < MIN_TONE_ENERGY_RATIO * total_power:
            return None
        return _KEYPAD[row][col - 4]

    def _step(self, digit: str | None, now: float) -> DtmfReceived | None:
        if digit is not None and digit == self._candidate:
            self._candidate_hits += 1
        else:
            self._candidate = digit
            self._candidate_hits = 1 if digit is not None else 0
        out: DtmfReceived | None = None
        if digit is not None and digit == self._active:
            self._active_hits += 1
            self._misses = 0
            return None
        if self._active is not None:
            self._misses += 1
            if self._misses >= ABSENT_WINDOWS or (
                digit is not None and self._candidate_hits >= PRESENT_WINDOWS
            ):
                out = self._end(now)
        if self._active is None and digit is not None and self._candidate_hits >= PRESENT_WINDOWS:
            self._active = digit
            self._active_hits = self._candidate_hits
            self._misses = 0
        return out

    def _end(self, now: float) -> DtmfReceived | None:
        digit = self._active
        if digit is None:
            return None
        hop_ms = 1000 * self._block / self.sample_rate
        # A window holds the digit while the tone covers most of it: n hits span about
        # (n - 1) hops plus one window.
        duration = round((self._active_hits + 1) * hop_ms)
        self._active = None
        self._active_hits = 0
        self._misses = 0
        return DtmfReceived(self.leg_id, digit, "inband", duration, now)

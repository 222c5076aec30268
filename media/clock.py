"""The media clock: one 20 ms tick on an absolute schedule drives all mixing and playback.

Theory of operation
-------------------
``TickSchedule`` is the pure part: tick *k* is due at ``t0 + k * period``. After a tick ran
at ``now`` it says when the next one is due. Lateness of a single timer callback never
accumulates (the schedule is absolute, not "now + 20 ms"); when the loop stalled so long that
more than ``max_lag`` of ticks were missed, the schedule skips ahead to the present instead
of running a burst of catch-up ticks (a burst would send a burst of packets the phones'
jitter buffers would drop anyway) and counts the skipped ticks. Smaller lateness is caught
up: the next tick is due at once.

``MediaClock`` is the asyncio adapter: one ``loop.call_at`` handle, re-armed after every
tick, calling ``on_tick(now, index)`` with the tick's index on the absolute schedule (the
engine uses it to spread bridges over phases of a frame when asked to). The engine starts
it when something needs mixing or playback and stops it when nothing does, so an idle
engine costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

__all__ = ["FRAME_PERIOD", "MAX_LAG", "MediaClock", "TickSchedule"]

log = structlog.get_logger(__name__)

FRAME_PERIOD = 0.020
MAX_LAG = 0.100  # beyond this the clock skips ahead instead of catching up


class TickSchedule:
    """Absolute tick deadlines with skip-ahead after stalls (sans-IO)."""

    __slots__ = ("index", "max_lag", "period", "skipped", "t0")

    def __init__(self, t0: float, period: float = FRAME_PERIOD, max_lag: float = MAX_LAG) -> None:
        if period <= 0 or max_lag < 0:
            raise ValueError("period must be positive and max_lag not negative")
        self.t0 = t0
        self.period = period
        self.max_lag = max_lag
        self.index = 0  # index of the next tick to run
        self.skipped = 0  # ticks dropped after stalls

    @property
    def deadline(self) -> float:
        """When the next tick is due."""
        return self.t0 + self.index * self.period

    def ran(self, now: float) -> float:
        """Account a tick run at ``now``; return the next deadline."""
        self.index += 1
        lag = now - self.deadline
        if lag > self.max_lag:
            skip = int(lag / self.period)
            self.index += skip
            self.skipped += skip
        return self.deadline


class MediaClock:
    """Calls ``on_tick(now, index)`` every ``period`` seconds while started."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_tick: Callable[[float, int], None],
        period: float = FRAME_PERIOD,
        max_lag: float = MAX_LAG,
    ) -> None:
        self._loop = loop
        self._on_tick = on_tick
        self.period = period
        self.max_lag = max_lag
        self._schedule: TickSchedule | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.ticks = 0
        self.skipped = 0  # total over every start/stop

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._handle is not None

    def start(self) -> None:
        """Start ticking (idempotent); the first tick is due one period from now."""
        if self._handle is not None:
            return
        t0 = self._loop.time() + self.period
        self._schedule = TickSchedule(t0, self.period, self.max_lag)
        self._handle = self._loop.call_at(t0, self._tick)

    def stop(self) -> None:
        """Stop ticking (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._schedule = None

    def _tick(self) -> None:
        schedule = self._schedule
        if schedule is None:
            return
        now = self._loop.time()
        try:
            self._on_tick(now, schedule.index)
        except Exception:
            log.exception("media.tick_failed")
        self.ticks += 1
        if self._schedule is not schedule:  # stopped (or restarted) from inside on_tick
            return
        before = schedule.skipped
        deadline = schedule.ran(self._loop.time())
        if schedule.skipped != before:
            self.skipped += schedule.skipped - before
            log.warning("media.clock_skipped", ticks=schedule.skipped - before)
        self._handle = self._loop.call_at(deadline, self._tick)

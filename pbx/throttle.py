"""Authentication failure throttle (sans-IO): block a source after repeated failures.

Theory of operation
-------------------
SIP scanners (friendly-scanner, sipvicious) try thousands of passwords per extension. The
registrar asks ``is_blocked(source, now)`` before doing any digest work, calls
``record_failure`` for every FAILED check (``pbx.digest.AuthOutcome.FAILED``) and
``record_success`` for every OK one. A source that fails ``max_failures`` times within a
sliding ``window`` of seconds is blocked for ``block_seconds``; the caller then drops the
request or answers 403 without a challenge (a 401 would invite another guess).

``source`` is any string the caller chooses: the peer IP address stops scanners, while
``f"{ip}|{username}"`` avoids one misconfigured phone locking out a whole office behind a
NAT. STALE and MALFORMED outcomes should not count (a phone answering a stale nonce is not
guessing).

One wrong credential counts once. ``record_failure`` takes the credential's ``attempt``
fingerprint (``pbx.digest.AuthResult.fingerprint``): the same answer again from the same
source within the window (a UDP retransmission that outlived its transaction, a phone
resending the header it cached) is not another guess. Each new guess has a new digest, so a
scanner gains nothing.

Memory is bounded. Failure histories live in one LRU map of at most ``max_entries``
sources, each keeping at most ``max_failures`` timestamps; blocks live in a second map of at
most ``max_entries`` sources, so a flood of fresh addresses (cheap with IPv6) can push out
failure histories but never an active block. When the block map itself is full, the block
that ends first goes (all blocks last ``block_seconds``, so that is the oldest one).

``now`` is passed in by the caller (one clock, e.g. ``loop.time()``); nothing here reads a
clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["FailureThrottle"]


class FailureThrottle:
    """Counts authentication failures per source and blocks noisy sources for a while."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        block_seconds: float = 300.0,
        max_entries: int = 10_000,
    ) -> None:
        if max_failures < 1 or max_entries < 1 or window <= 0 or block_seconds <= 0:
            raise ValueError("max_failures, window, block_seconds, max_entries must be > 0")
        self.max_failures = max_failures
        self.window = window
        self.block_seconds = block_seconds
        self.max_entries = max_entries
        # source -> (time, attempt) of recent failures, oldest first; LRU order, last touched
        # at the end.
        self._failures: OrderedDict[str, deque[tuple[float, str | None]]] = OrderedDict()
        # source -> time its block ends; insertion order == order blocks end.
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def record_failure(self, source: str, now: float, attempt: str | None = None) -> bool:
        """Count one failure; return True when ``source`` is (now) blocked.

        ``attempt`` identifies the credential that failed (a short fingerprint); a failure
        with an ``attempt`` already counted for ``source`` in the window is not counted
        again. None: always counted.
        """
        if self.is_blocked(source, now):
            return True
        times = self._failures.pop(source, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        while times and now - times[0][0] >= self.window:
            times.popleft()
        if attempt is None or all(seen != attempt for _, seen in times):
            times.append((now, attempt))
        if len(times) >= self.max_failures:
            self._block(source, now)
            return True
        self._failures[source] = times  # re-insert at the end: most recently used
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)
        return False

    def record_success(self, source: str, now: float) -> None:
        """Forget the failure history of ``source``. An active block stays until it ends."""
        self._failures.pop(source, None)

    def is_blocked(self, source: str, now: float) -> bool:
        """True while ``source`` is blocked. Expired blocks are dropped on the way."""
        self._expire(now)
        until = self._blocked.get(source)
        return until is not None and now < until

    def blocked_until(self, source: str, now: float) -> float | None:
        """When the block of ``source`` ends (for Retry-After), or None if not blocked."""
        return self._blocked[source] if self.is_blocked(source, now) else None

    def __len__(self) -> int:
        """Number of sources remembered (failure histories plus blocks)."""
        return len(self._failures) + len(self._blocked)

    def _block(self, source: str, now: float) -> None:
        self._failures.pop(source, None)
        self._blocked.pop(source, None)
        self._blocked[source] = now + self.block_seconds
        while len(self._blocked) > self.max_entries:
            self._blocked.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._blocked:
            source, until = next(iter(self._blocked.items()))
            if now < until:
                break
            del self._blocked[source]

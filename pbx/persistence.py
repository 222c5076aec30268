"""What the SIP core hands to the store, and the write-behind queue in front of it.

Theory of operation
-------------------
Signalling never blocks on the database, but nothing a caller has seen complete may be lost:

- **Call records: group commit.** :meth:`WriteBehind.call_ended` queues the record and returns
  a future. A flush starts on the next turn of the event loop when none is running; records
  that arrive while one runs go together into the next, which starts as soon as it ends. The
  future resolves when the transaction holding the record is committed, and only then does
  the B2BUA answer the BYE (see ``B2bua.respond_when_stored``). Under load many records share
  one commit, so the wait stays a few milliseconds; a SIGKILL at any moment loses no record
  of a call whose end was confirmed.
- **Bindings and extension settings** are flushed with the next batch or at the latest every
  interval (0.5 s): a refresh followed by another before the flush is written once, a removal
  cancels a pending save. A crash can lose the last interval of refreshes, which phones
  repeat anyway.

A flush that fails is logged and its work put back (bounded), so a database hiccup delays
writes instead of losing them; waiting acknowledgements give up after a few seconds (the
record stays queued). :meth:`WriteBehind.close` flushes what is left at shutdown.
The :class:`Persistence` protocol is implemented by the service layer (``app``) on top of
:mod:`crm`, so ``pbx`` never imports the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from .features import ExtensionSettings

__all__ = ["CallDetail", "Persistence", "StoredBinding", "WriteBehind"]

log = structlog.get_logger("pbx.persistence")


@dataclass(frozen=True, slots=True)
class StoredBinding:
    """A binding as persisted: expiry in wall-clock seconds (epoch)."""

    aor: str
    contact_uri: str
    source: tuple[str, int]
    transport: str
    call_id: str
    cseq: int
    expires_at_epoch: float
    user_agent: str


@dataclass(frozen=True, slots=True)
class CallDetail:
    """What the B2BUA knows about a finished call (the service layer stores it as a CDR)."""

    call_id: str
    caller: str
    callee: str
    start: datetime
    answer: datetime | None
    end: datetime
    hangup_cause: str
    disposition: str  # ANSWERED, NO ANSWER, BUSY, FAILED, CANCELLED (docs/records.md)
    hangup_side: str  # caller, callee, system
    sip_status: int | None
    record_id: str | None = None  # Switchboard's id of this call
    linked_id: str | None = None  # record_id of the call this one continues (transfers)
    # Reception quality of each party's leg (RFC 3550 loss/jitter, G.107 E-model MOS).
    caller_loss: float | None = None
    caller_jitter_ms: float | None = None
    caller_mos: float | None = None
    callee_loss: float | None = None
    callee_jitter_ms: float | None = None
    callee_mos: float | None = None
    ivr_keys: str | None = None  # digits the caller pressed in an IVR, in order
    # What reports need (docs/records.md): set by the SIP core or by services through
    # ``CallControl.annotate``.
    dialled: str | None = None  # what the caller dialled, before routing
    direction: str | None = None  # inbound, outbound, internal
    system_answer: datetime | None = None  # Switchboard answered the caller (IVR, queue)
    queue: str | None = None
    agent: str | None = None  # the ACD's agent id (as in the queue log), not an extension
    wait_seconds: float | None = None  # from joining a queue to the agent's answer
    queue_call_id: str | None = None  # the call id the queue log uses for this call
    callback_id: int | None = None  # callback_requests.id this call fulfils
    trunk: str | None = None  # the trunk the call left or arrived through
    trunk_attempts: str | None = None  # failed trunks before it: "carrier:503,backup:408"
    caller_id_sent: str | None = None  # the caller ID presented to the carrier


class Persistence(Protocol):
    async def apply_bindings(
        self, saves: list[StoredBinding], deletes: list[tuple[str, str]]
    ) -> None: ...

    async def load_bindings(self) -> list[StoredBinding]: ...

    async def save_calls(self, details: list[CallDetail]) -> None: ...

    async def save_settings(self, settings: dict[str, ExtensionSettings]) -> None: ...

    async def load_settings(self) -> dict[str, ExtensionSettings]: ...


MAX_PENDING_CALLS = 100_000  # beyond this a dead database would eat all memory


class WriteBehind:
    """Batches binding changes and call records into periodic transactions."""

    def __init__(self, persistence: Persistence, interval: float = 0.5) -> None:
        self._persistence = persistence
        self._interval = interval
        self._bindings: dict[tuple[str, str], StoredBinding | None] = {}
        self._calls: list[CallDetail] = []
        self._waiters: list[asyncio.Future[None]] = []  # one per queued call record
        self._settings: dict[str, ExtensionSettings] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    def binding_saved(self, binding: StoredBinding) -> None:
        self._bindings[(binding.aor, binding.contact_uri)] = binding
        self._schedule()

    def binding_removed(self, aor: str, contact_uri: str) -> None:
        self._bindings[(aor, contact_uri)] = None
        self._schedule()

    def settings_changed(self, ext: str, settings: ExtensionSettings) -> None:
        self._settings[ext] = settings
        self._schedule()

    def call_ended(self, detail: CallDetail) -> asyncio.Future[None]:
        """Queue a call record; the future resolves once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(self._calls) >= MAX_PENDING_CALLS:
            log.error("call_records_dropped", reason="store unavailable", count=1)
            done.set_exception(RuntimeError("call record queue full"))
            return done
        self._calls.append(detail)
        self._waiters.append(done)
        self._commit_soon()
        return done

    def _commit_soon(self) -> None:
        """Group commit: start a flush now unless one runs (its end starts the next)."""
        if self._flushing is not None or self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush())

    @property
    def pending(self) -> int:
        return len(self._bindings) + len(self._calls) + len(self._settings)

    def _schedule(self) -> None:
        if self._timer is None and self._flushing is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        bindings, self._bindings = self._bindings, {}
        calls, self._calls = self._calls, []
        waiters, self._waiters = self._waiters, []
        settings, self._settings = self._settings, {}
        saves = [b for b in bindings.values() if b is not None]
        deletes = [key for key, b in bindings.items() if b is None]
        try:
            if saves or deletes:
                await self._persistence.apply_bindings(saves, deletes)
            if calls:
                await self._persistence.save_calls(calls)
            if settings:
                await self._persistence.save_settings(settings)
        except Exception as exc:
            log.exception("store_write_failed", bindings=len(bindings), calls=len(calls))
            # Put the work back, newer changes winning; retried at the next interval.
            for key, b in bindings.items():
                self._bindings.setdefault(key, b)
            self._calls[:0] = calls
            self._waiters[:0] = waiters
            for dropped in self._waiters[MAX_PENDING_CALLS:]:
                if not dropped.done():
                    dropped.set_exception(exc)
            del self._calls[MAX_PENDING_CALLS:]
            del self._waiters[MAX_PENDING_CALLS:]
            for ext, value in settings.items():
                self._settings.setdefault(ext, value)
            self._flushing = None
            self._schedule()  # retry after the interval, not in a tight loop
            return
        self._flushing = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._calls:
            self._commit_soon()
        elif self._bindings or self._settings:
            self._schedule()

    async def close(self) -> None:
        """Flush everything still pending (shutdown)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await self._flushing
        for _ in range(3):
            if not (self._bindings or self._calls or self._settings):
                break
            await self._flush()

"""The asyncio adapter of the trunk cores: timers, DNS and the SIP stack.

Theory of operation
-------------------
One task per trunk. It resolves the trunk's ``host`` off the event loop (``getaddrinfo``
in the loop's executor; an IP literal needs no lookup; a failed lookup is logged and
retried every ``retry_interval``), then creates the sans-IO :class:`~pbx.trunks.TrunkRegistration`
(when the trunk registers) and :class:`~pbx.trunks.TrunkQualify` (when ``qualify`` > 0) and
loops: feed ``now`` to both, send what they queued through
:meth:`pbx.stack.SipStack.send_request` (each response and timeout goes straight back into
the core, which may queue more), log their events, then sleep until the earlier of their
deadlines or until a response wakes it.

The name is resolved once per start (no RFC 3263 SRV/NAPTR, no re-resolution while
running). Trunks are read at start: a ``config reload`` that changes ``trunks:`` needs a
restart (app/reload.py lists the key as restart-needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from .message import Request, Response
from .stack import SipStack
from .trunks import (
    RegistrationState,
    Trunk,
    TrunkCameUp,
    TrunkEvent,
    TrunkQualify,
    TrunkRegistered,
    TrunkRegistration,
    TrunkRegistrationFailed,
    TrunkStatus,
    TrunkUnregistered,
    TrunkWentDown,
)

__all__ = ["TrunkDriver"]

log = structlog.get_logger("pbx.trunks")

_ResponseInput = Callable[[Response, float], None]
_TimeoutInput = Callable[[float], None]
_FailureInput = Callable[[float, str], None]

# How long stop() waits for the unregister (and one challenge round) to be answered.
UNREGISTER_WAIT = 2.0


@dataclass(slots=True)
class _Entry:
    trunk: Trunk
    address: tuple[str, int] | None = None
    registration: TrunkRegistration | None = None
    qualify: TrunkQualify | None = None
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cause: str = ""  # before the cores exist (DNS)


class TrunkDriver:
    """Runs the registration and qualify of every trunk on one :class:`SipStack`."""

    def __init__(self, stack: SipStack, trunks: Iterable[Trunk]) -> None:
        self.stack = stack
        self._entries = {t.name: _Entry(t) for t in trunks}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- queries ---------------------------------------------------------------------

    def states(self) -> dict[str, TrunkStatus]:
        """A snapshot of every trunk, by name."""
        return {name: self._status(e) for name, e in self._entries.items()}

    def address_of(self, name: str) -> tuple[str, int] | None:
        """The resolved address of trunk ``name`` (None before its DNS lookup ended)."""
        e = self._entries.get(name)
        return None if e is None else e.address

    def _status(self, e: _Entry) -> TrunkStatus:
        reg = e.registration
        if reg is not None:
            status = reg.status_snapshot()
        else:
            status = TrunkStatus(
                name=e.trunk.name,
                registration=RegistrationState.UNREGISTERED if e.trunk.registers else None,
                cause=e.cause,
            )
        q = e.qualify
        if q is not None:
            return TrunkStatus(
                name=status.name,
                registration=status.registration,
                status=status.status,
                cause=status.cause,
                expires_at=status.expires_at,
                retry_at=status.retry_at,
                reachability=q.state,
                rtt=q.rtt,
                qualify_failures=q.failures,
            )
        return status

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start every trunk's task (after the stack listens)."""
        self._loop = asyncio.get_running_loop()
        for e in self._entries.values():
            if e.trunk.registers or e.trunk.qualify > 0:
                e.task = self._loop.create_task(self._run(e), name=f"trunk-{e.trunk.name}")

    async def stop(self) -> None:
        """Stop the timers and remove our bindings (RFC 3261 §10.2.2), waiting a little for
        the carriers to answer."""
        for e in self._entries.values():
            if e.task is not None:
                e.task.cancel()
        for e in self._entries.values():
            if e.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await e.task
                e.task = None
        if self._loop is None:
            return
        waiting = []
        for e in self._entries.values():
            if e.qualify is not None:
                e.qualify.stop()
            if e.registration is not None:
                e.registration.stop(self._loop.time())
                self._pump(e)
                waiting.append(e.registration)
        deadline = self._loop.time() + UNREGISTER_WAIT
        while any(r.pending for r in waiting) and self._loop.time() < deadline:
            await asyncio.sleep(0.02)

    # -- the per-trunk task ----------------------------------------------------------

    async def _run(self, e: _Entry) -> None:
        assert self._loop is not None
        loop = self._loop
        t = e.trunk
        e.address = await self._resolve(e)
        if t.transport == "tls":
            self.stack.learn_tls_peer(t.host, e.address)
        host = e.address[0]
        if t.registers:
            user = t.username
            e.registration = TrunkRegistration(
                t, self.stack.contact_for(t.transport, host, user=user)
            )
            e.registration.start(loop.time())
        if t.qualify > 0:
            e.qualify = TrunkQualify(t, self.stack.host_for(host))
            e.qualify.start(loop.time())
        while True:
            now = loop.time()
            if e.registration is not None:
                e.registration.handle_timer(now)
            if e.qualify is not None:
                e.qualify.handle_timer(now)
            self._pump(e)
            deadlines = [
                d
                for d in (
                    e.registration.get_timer() if e.registration else None,
                    e.qualify.get_timer() if e.qualify else None,
                )
                if d is not None
            ]
            e.wake.clear()
            timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(e.wake.wait(), timeout)

    async def _resolve(self, e: _Entry) -> tuple[str, int]:
        """The trunk's address, looked up off the loop; retried until it resolves."""
        t = e.trunk
        try:
            ipaddress.ip_address(t.host)
        except ValueError:
            pass
        else:
            return t.host, t.port
        assert self._loop is not None
        while True:
            try:
                infos = await self._loop.getaddrinfo(
                    t.host, t.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
                )
                if infos:
                    addr = infos[0][4]
                    return str(addr[0]), int(addr[1])
                e.cause = "no address"
            except OSError as exc:
                e.cause = f"dns: {exc}"
            log.warning("trunk_dns_failed", trunk=t.name, host=t.host, cause=e.cause)
            await asyncio.sleep(t.retry_interval)

    # -- sending ---------------------------------------------------------------------

    def _pump(self, e: _Entry) -> None:
        """Send what the cores queued and log what they decided."""
        if e.address is None:
            return
        transport = e.trunk.transport.upper()
        reg, q = e.registration, e.qualify
        if reg is not None:
            for req in reg.requests_to_send():
                timed_out = functools.partial(_registration_timed_out, reg, req.cseq[0])
                failed = functools.partial(_registration_failed, reg, req.cseq[0])
                self._send(e, req, transport, reg.receive_response, timed_out, failed)
        if q is not None:
            for req in q.requests_to_send():
                self._send(e, req, transport, q.receive_response, q.timed_out)
        for core in (reg, q):
            if core is None:
                continue
            while (ev := core.next_event()) is not None:
                _log_event(ev, e)

    def _send(
        self,
        e: _Entry,
        req: Request,
        transport: str,
        on_response: _ResponseInput,
        on_timeout: _TimeoutInput,
        on_failure: _FailureInput | None = None,
    ) -> None:
        assert self._loop is not None and e.address is not None
        loop = self._loop
        req.add("Via", self.stack.via_for(transport, e.address[0]), first=True)

        def answered(resp: Response) -> None:
            on_response(resp, loop.time())
            self._pump(e)
            e.wake.set()

        def timed_out() -> None:
            on_timeout(loop.time())
            self._pump(e)
            e.wake.set()

        def transport_failed(cause: str) -> None:
            # The connection could not be opened (a TLS carrier whose certificate failed
            # verification, a refused TCP connection): the cause goes into the status.
            if on_failure is None:
                on_timeout(loop.time())
            else:
                on_failure(loop.time(), cause)
            self._pump(e)
            e.wake.set()

        self.stack.send_request(
            req, e.address, transport, answered, timed_out, on_transport_error=transport_failed
        )


def _registration_timed_out(reg: TrunkRegistration, cseq: int, now: float) -> None:
    reg.timed_out(now, cseq)


def _registration_failed(reg: TrunkRegistration, cseq: int, now: float, cause: str) -> None:
    reg.timed_out(now, cseq, cause)


def _log_event(ev: TrunkEvent, e: _Entry) -> None:
    name = ev.trunk
    if isinstance(ev, TrunkRegistered):
        log.info("trunk_registered", trunk=name, expires=ev.expires, host=e.trunk.host)
    elif isinstance(ev, TrunkRegistrationFailed):
        log.warning(
            "trunk_registration_failed",
            trunk=name,
            state=ev.state.value,
            status=ev.status,
            cause=ev.cause,
            retry_in=round(ev.retry_at - asyncio.get_running_loop().time(), 1),
        )
    elif isinstance(ev, TrunkUnregistered):
        log.info("trunk_unregistered", trunk=name)
    elif isinstance(ev, TrunkWentDown):
        log.warning("trunk_down", trunk=name, failures=ev.failures)
    elif isinstance(ev, TrunkCameUp):
        log.info("trunk_up", trunk=name, rtt_ms=round(ev.rtt * 1000, 1))

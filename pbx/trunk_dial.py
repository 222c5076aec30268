"""Dialling a number outside: one :class:`~pbx.outbound.Outbound` per trunk, in order.

Theory of operation
-------------------
A :class:`TrunkDial` has the face of an :class:`~pbx.outbound.Outbound` (``start``,
``cancel``, ``done``, ``leg_id``, the same three callbacks), so every place that rings an
extension — a phone's call, a forward, a queue callback or overflow, an IVR transfer — can
ring an outside number instead. Behind it, each attempt is an ``Outbound`` to ``sip:<number>
@<trunk>`` with the trunk's credentials and the identity the trunk may present
(:mod:`pbx.trunk_outbound`). An attempt that failed because of the trunk (timeout, 408, 5xx)
moves on to the next trunk; a trunk at its ``max_channels`` is skipped as if it answered
503; anything else (busy, not found, a ring timeout) is the callee's answer and ends the
dial. Each attempt gets a new media leg id: ``on_attempt(trunk, leg_id)`` tells the owner,
which tracks the leg and names the trunk in the record; ``attempts`` lists the failed
trunks with their status for the record (``trunk_attempts``).

Identity (RFC 3325 §9.1, RFC 3323 §4.1.1.3): P-Asserted-Identity carries the caller ID the
trunk presents; a private call sends From ``"Anonymous" <sip:anonymous@anonymous.invalid>``
and ``Privacy: id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from .location import Contact
from .outbound import Outbound, spawn
from .side import Side
from .trunk_outbound import OutboundTrunk, OutsideRoute, should_fail_over

if TYPE_CHECKING:
    from media import Codec

    from .b2bua import B2bua

__all__ = ["ANONYMOUS_URI", "OUTSIDE_RING_TIMEOUT", "TrunkDial", "identity_headers"]

log = structlog.get_logger("pbx.trunk_dial")

# How long an outside number may ring: a carrier's own no-answer timer usually ends it
# first, with 480 or 408 (the ring timeout is the callee's answer, never a failover).
OUTSIDE_RING_TIMEOUT = 120.0

# RFC 3323 §4.1.1.3: the From of a call whose caller withholds their identity.
ANONYMOUS_URI = "sip:anonymous@anonymous.invalid"


def identity_headers(caller_id: str, host: str, private: bool) -> list[tuple[str, str]]:
    """P-Asserted-Identity for the carrier (RFC 3325 §9.1) and, for a withheld caller ID,
    ``Privacy: id`` (RFC 3325 §9.3: the carrier removes the identity before it leaves its
    trust domain)."""
    headers = [("P-Asserted-Identity", f"<sip:{caller_id}@{host}>")]
    if private:
        headers.append(("Privacy", "id"))
    return headers


class TrunkDial:
    """Ring ``route.number`` through ``route.trunks`` in order (see the module doc)."""

    def __init__(
        self,
        b2b: B2bua,
        *,
        leg_prefix: str,
        route: OutsideRoute,
        caller_display: str | None,
        first_codec: Codec | None,
        ring_timeout: float,
        on_ringing: Callable[[int, bool], None],
        on_answered: Callable[[Side], None],
        on_failed: Callable[[int, bool], None],
        load: Callable[[str], int],
        on_attempt: Callable[[str, str], None] = lambda trunk, leg: None,
        extra_headers: list[tuple[str, str]] | None = None,
        near: str | None = None,
    ) -> None:
        self.b2b = b2b
        self.leg_prefix = leg_prefix
        self.route = route
        self.callee = route.number
        self.caller_display = caller_display
        self.first_codec = first_codec
        self.ring_timeout = ring_timeout
        self.on_ringing = on_ringing
        self.on_answered = on_answered
        self.on_failed = on_failed
        self.load = load  # calls up or being set up through a trunk, by its name
        self.on_attempt = on_attempt
        self.extra_headers = extra_headers or []
        self.near = near
        self.plan: list[OutboundTrunk] = list(route.trunks)
        self.attempts: list[tuple[str, int]] = []  # failed trunks and why, for the record
        self.trunk: str | None = None  # the trunk of the current (or last) attempt
        self.caller_id: str | None = None  # the caller ID the current attempt presents
        self.current: Outbound | None = None
        self.leg_id = f"{leg_prefix}-t0"
        self.done = False
        self.cancelled = False

    @property
    def early_media(self) -> bool:
        return self.current is not None and self.current.early_media

    @property
    def branches(self) -> list[object]:
        return list(self.current.branches) if self.current is not None else []

    @property
    def no_trunk(self) -> bool:
        """No attempt was made: every trunk was at its ``max_channels``."""
        return self.current is None

    async def start(self) -> bool:
        """Start the first attempt. False when media is unavailable or the dial was
        cancelled meanwhile; no trunk with a free channel is ``on_failed(503)``, with
        :attr:`no_trunk` set."""
        return await self._next()

    def cancel(self) -> None:
        """Stop ringing; no callback follows (a side that answers after this is hung up)."""
        self.cancelled = True
        self._finish()
        if self.current is not None and not self.current.done:
            self.current.cancel()

    def _finish(self) -> None:
        self.done = True
        self.b2b.dialling.discard(self)

    async def _next(self) -> bool:
        if self.cancelled:
            return False
        trunk = self._take_trunk()
        if trunk is None:
            self._finish()
            asyncio.get_running_loop().call_soon(self._fail_unless_cancelled, 503, False)
            return True
        route = self.route
        caller = route.on_behalf_of
        caller_id = trunk.caller_id_for(caller, route.wanted_caller_ids)
        # Nothing configured to present (Switchboard's own call on a trunk with neither
        # `dids` nor `caller_id`): an anonymous caller (RFC 3323) rather than an empty user.
        private = route.private or not caller_id
        caller_id = caller_id or "anonymous"
        host = self.b2b.stack.host_for(trunk.address)
        leg_id = f"{self.leg_prefix}-t{len(self.attempts)}"
        self.leg_id, self.trunk, self.caller_id = leg_id, trunk.name, caller_id
        self.b2b.dialling.add(self)  # counted against the trunk's channels while it rings
        self.on_attempt(trunk.name, leg_id)
        uri = trunk.uri(route.number)
        outbound = Outbound(
            self.b2b,
            leg_id=leg_id,
            caller_ext=trunk.from_user or caller_id,
            caller_display="Anonymous" if private else self.caller_display,
            callee=route.number,
            contacts=[
                Contact(uri, (trunk.address, trunk.port), trunk.transport, float("inf"), "", 0)
            ],
            first_codec=self.first_codec,
            ring_timeout=self.ring_timeout,
            on_ringing=self._ringing,
            on_answered=self._answered,
            on_failed=self._failed,
            extra_headers=[
                *identity_headers(caller_id, host, private),
                *self.extra_headers,
            ],
            near=self.near,
            credentials=trunk.credentials,
            to_uri=uri,
            from_uri=ANONYMOUS_URI if private else None,
            trunk=trunk,
        )
        self.current = outbound
        log.info(
            "trunk_attempt",
            trunk=trunk.name,
            number=route.number,
            caller_id=caller_id,
            private=private,
            for_=caller or "switchboard",
        )
        return await outbound.start()

    def _take_trunk(self) -> OutboundTrunk | None:
        while self.plan:
            trunk = self.plan.pop(0)
            if trunk.max_channels and self.load(trunk.name) >= trunk.max_channels:
                # Shared by both directions; skipped like a carrier answering 503.
                self.attempts.append((trunk.name, 503))
                log.info("trunk_full", trunk=trunk.name, channels=trunk.max_channels)
                continue
            return trunk
        return None

    def _ringing(self, status: int, early: bool) -> None:
        if not self.cancelled:
            self.on_ringing(status, early)

    def _answered(self, side: Side) -> None:
        self._finish()
        side.trunk, side.caller_id_sent = self.trunk, self.caller_id
        side.trunk_attempts = tuple(self.attempts)
        side.outside_for = self.route.on_behalf_of
        if self.cancelled:  # answered as the dial was given up: nobody wants this party
            if side.dialog is not None:
                self.b2b.send_bye(side.dialog)
            self.b2b.media.close_leg(side.leg_id)
            return
        self.on_answered(side)

    def _fail_unless_cancelled(self, status: int, ring_timeout: bool) -> None:
        if not self.cancelled:
            self.on_failed(status, ring_timeout)

    def _failed(self, status: int, ring_timeout: bool) -> None:
        if self.cancelled:
            return
        if should_fail_over(status, ring_timeout) and self.trunk is not None and self.plan:
            log.info("trunk_failed", trunk=self.trunk, status=status)
            self.attempts.append((self.trunk, status))
            self.b2b.untrack_leg(self.leg_id)

            async def again() -> None:
                if not await self._next() and not self.cancelled:
                    self._finish()
                    self.on_failed(503, False)

            spawn(again())
            return
        if should_fail_over(status, ring_timeout) and self.trunk is not None:
            self.attempts.append((self.trunk, status))
        self._finish()
        self.on_failed(status, ring_timeout)

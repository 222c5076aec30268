"""The event stream behind ``/api/events`` (SSE) and ``/api/events/ws`` (WebSocket).

Theory of operation: one :class:`EventHub` subscribes to the call-control seam (calls,
registrations) and to the ACD (agent states, the queue event log). Each fact becomes one
JSON text, serialised once, then handed to every connected client allowed to see it
(docs/api.md, "Events"): an agent sees their own agent's states and offers, the calls of
their extensions (a party that is a local phone, never a trunk party presenting the
extension's number) and the queues they serve; qa and supervisors see everything but registrations,
which supervisors and admins see. Delivery is a bounded queue per client: a client that
falls ``MAX_BACKLOG`` events behind is cut off (it reconnects and reloads its view) rather
than making the server buffer without limit.

Fan-out in slices: an event for hundreds of panels wakes hundreds of connection tasks, and
if they all ran in one turn of the loop the SIP and media work behind them would wait for
all of them (tens of ms). So deliveries wait in one FIFO and are handed over
:data:`FANOUT_SLICE` at a time, one slice per loop turn; one FIFO keeps each client's
events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from acd.host import AcdItem, OfferEnded, OfferMade
from crm import AgentStateData
from pbx.events import (
    CallEnded,
    CallEvent,
    CallRetired,
    CallStarted,
    LegAnswered,
    RegistrationChanged,
)
from web.auth import Principal

__all__ = ["MAX_BACKLOG", "EventHub", "Listener"]

log = structlog.get_logger("web.hub")

MAX_BACKLOG = 1000
SCOPE_TTL = 5.0  # seconds an agent's extensions and queues are cached
FANOUT_SLICE = 32  # deliveries handed over per loop turn (bench/web.py)


@dataclass(slots=True, eq=False)  # compared (and hashed) by identity: one per connection
class Listener:
    """One connected client: its principal and its queue of JSON texts (None: cut off)."""

    principal: Principal
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(MAX_BACKLOG + 1))
    dropped: bool = False


@dataclass(slots=True)
class _Call:
    """What a call's events show (``*_ext``: the numbers) and whose they are (``local_*``:
    the parties that are local phones; a trunk party's number is whatever it presented)."""

    caller_ext: str
    local_caller: str | None
    callee_ext: str | None = None
    local_callee: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


class EventHub:
    """Fans events out to connected clients; see the module documentation.

    ``scope_of(agent)`` gives an agent's extensions and the queues they serve.
    """

    def __init__(self, scope_of: Callable[[str], tuple[frozenset[str], frozenset[str]]]) -> None:
        self.scope_of = scope_of
        self.listeners: set[Listener] = set()
        self._calls: dict[str, _Call] = {}
        self._scopes: dict[str, tuple[float, frozenset[str], frozenset[str]]] = {}
        self._pending: deque[tuple[Listener, str]] = deque()
        self._draining = False
        self.published = 0

    # -- clients -------------------------------------------------------------------------------

    def connect(self, principal: Principal) -> Listener:
        listener = Listener(principal)
        self.listeners.add(listener)
        return listener

    def close(self) -> None:
        """The server stops: end every client's stream now (their readers see None), so
        shutdown does not wait for (and then cancel) streams that would never end."""
        for listener in tuple(self.listeners):
            listener.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)
        self.listeners.clear()
        self._pending.clear()

    def disconnect(self, listener: Listener) -> None:
        listener.dropped = True  # deliveries already pending for it are skipped
        self.listeners.discard(listener)

    def _scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        now = time.monotonic()
        cached = self._scopes.get(agent)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        extensions, queues = self.scope_of(agent)
        self._scopes[agent] = (now + SCOPE_TTL, extensions, queues)
        return extensions, queues

    def _send(self, text: str, visible: Callable[[Principal], bool]) -> None:
        self.published += 1
        pending = self._pending
        for listener in tuple(self.listeners):
            if not listener.dropped and visible(listener.principal):
                pending.append((listener, text))
        if pending and not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        """Hand over one slice of the pending deliveries; the rest in the next loop turn
        (all at once when no loop runs: a synchronous caller)."""
        pending = self._pending
        rescheduled = False
        try:
            while pending:
                for _ in range(min(FANOUT_SLICE, len(pending))):
                    listener, text = pending.popleft()
                    try:
                        self._deliver(listener, text)
                    except Exception:  # one client's failure must not stop the others'
                        listener.dropped = True
                        log.exception("event_delivery_failed", user=listener.principal.name)
                if not pending:
                    break
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    continue
                loop.call_soon(self._drain)
                rescheduled = True
                return
        finally:
            if not rescheduled:
                self._draining = False

    def _deliver(self, listener: Listener, text: str) -> None:
        if listener.dropped:
            return
        q = listener.queue
        if q.qsize() >= MAX_BACKLOG:
            listener.dropped = True
            with contextlib.suppress(asyncio.QueueFull):  # already ended by its reader
                q.put_nowait(None)  # the reader ends the connection
            log.warning("event_client_too_slow", user=listener.principal.name)
            return
        q.put_nowait(text)

    # -- sources -------------------------------------------------------------------------------

    def on_call_event(self, event: CallEvent) -> None:
        """A subscriber of the call-control seam."""
        match event:
            case CallStarted():
                self._calls[event.call_id] = _Call(event.caller_ext, event.local_caller_ext)
                self._call(event.call_id, "started", event.caller, event.callee, {})
            case LegAnswered(role="callee") if event.call_id in self._calls:
                known = self._calls[event.call_id]
                known.callee_ext = event.extension
                known.local_callee = event.extension if event.trunk is None else None
                self._call(event.call_id, "answered", None, None, {})
            case CallEnded():
                self._call(
                    event.call_id,
                    "ended",
                    event.caller,
                    event.callee,
                    {"disposition": event.disposition, "cause": event.cause},
                )
                self._calls.pop(event.call_id, None)
            case CallRetired() if event.call_id in self._calls:
                self._call(event.call_id, "retired", None, None, {})
                self._calls.pop(event.call_id, None)
            case RegistrationChanged():
                text = json.dumps(
                    {
                        "type": "registration",
                        "time": _now(),
                        "aor": event.aor,
                        "contact": event.contact,
                        "event": event.event,
                        "source": event.source,
                        "user_agent": event.user_agent,
                    }
                )
                self._send(text, lambda p: p.at_least("supervisor"))
            case _:
                pass

    def _call(
        self,
        call_id: str,
        what: str,
        caller: str | None,
        callee: str | None,
        extra: dict[str, Any],
    ) -> None:
        known = self._calls.get(call_id)
        # "The calls of their extensions": only parties that are local phones count.
        exts = {e for e in (known.local_caller, known.local_callee) if e} if known else set()
        body: dict[str, Any] = {
            "type": "call",
            "time": _now(),
            "call_id": call_id,
            "event": what,
            "caller_ext": known.caller_ext if known else None,
            "callee_ext": known.callee_ext if known else None,
        }
        if caller is not None:
            body["caller"] = caller
        if callee is not None:
            body["callee"] = callee
        body.update(extra)

        def visible(p: Principal) -> bool:
            if p.at_least("qa"):
                return True
            return p.agent is not None and bool(exts & self._scope(p.agent)[0])

        self._send(json.dumps(body), visible)

    def on_acd_item(self, item: AcdItem) -> None:
        """A listener of the ACD host (``AcdHost.subscribe``)."""
        if isinstance(item, OfferMade | OfferEnded):
            self._offer(item)
            return
        if isinstance(item, AgentStateData):
            agent = item.agent
            text = json.dumps(
                {
                    "type": "agent_state",
                    "time": item.time.isoformat(),
                    "agent": agent,
                    "old_state": item.old_state,
                    "new_state": item.new_state,
                    "event": item.event,
                    "reason": item.reason,
                }
            )
            self._send(text, lambda p: p.at_least("qa") or p.agent == agent)
            return
        queue = item.queue
        text = json.dumps(
            {
                "type": "queue",
                "time": item.time.isoformat(),
                "queue": queue,
                "call_id": item.call_id,
                "agent": item.agent,
                "event": item.event,
                "data": list(item.data),
            }
        )
        self._send(
            text,
            lambda p: (
                p.at_least("qa") or (p.agent is not None and queue in self._scope(p.agent)[1])
            ),
        )

    def notify(self, user: str, notification: dict[str, Any]) -> int:
        """Push a notification (crm/notifications.py) to ``user``'s own connections only,
        whatever their role: no one else learns of it. How many connections got it."""
        text = json.dumps({"type": "notification", "time": _now(), **notification})
        sent = sum(1 for x in self.listeners if not x.dropped and x.principal.name == user)
        self._send(text, lambda p: p.name == user)
        return sent

    def _offer(self, item: OfferMade | OfferEnded) -> None:
        """An offer goes to the offered agent's own users only (and qa and up): another
        agent serving the same queue must not see whose call rings where."""
        agent = item.agent
        body: dict[str, Any]
        if isinstance(item, OfferMade):
            body = {
                "type": "offer",
                "time": item.time.isoformat(),
                "agent": agent,
                "call_id": item.call_id,
                "queue": item.queue,
                "caller": item.caller,
                "waited_seconds": item.waited_seconds,
                "ivr_keys": item.ivr_keys,
            }
        else:
            body = {
                "type": "offer_ended",
                "time": _now(),
                "agent": agent,
                "call_id": item.call_id,
                "outcome": item.outcome,
            }
        self._send(json.dumps(body), lambda p: p.at_least("qa") or p.agent == agent)

"""Prometheus metrics of a running Switchboard (``GET /metrics``).

Theory of operation
-------------------
:class:`Metrics` holds no business logic and no state of its own beyond what Prometheus
needs: it only reads.

- Counters of ended calls (``switchboard_calls_total{direction,disposition}``) and the RTCP
  loss histogram (``switchboard_rtp_packet_loss_ratio``, one observation per leg that
  received media) are fed by the call-control seam's :class:`pbx.events.CallEnded` events:
  :class:`Metrics` subscribes once and unsubscribes in :meth:`Metrics.close`.
- Everything else is read at scrape time by a collector: SIP requests received and
  responses sent (the transaction layer's counters), registered contacts, calls in
  progress, trunks, and — with an ACD — waiting callers, the longest wait per queue and
  agents by state (:meth:`acd.host.AcdHost.queue_snapshots`, ``agent_snapshots``).
- ``process_*`` comes from prometheus_client's :class:`ProcessCollector`.

Each :class:`Metrics` has its own :class:`CollectorRegistry` (never the global default
registry, so two servers in one process, e.g. in tests, do not collide). The sources are
plain in-memory structures of the event loop: :meth:`Metrics.render` must run on the loop's
thread (an ``async def`` route), not in a worker thread.

Names follow the Asterisk and Kamailio exporters' style (issue 11).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acd import AgentSnapshot, AgentState, QueueSnapshot
from pbx.events import CallEnded, CallEvent

__all__ = ["LOSS_BUCKETS", "AcdSource", "EventSource", "Metrics", "ServerSource", "TrunkState"]

# Loss fractions (0..1): most calls lose nothing or a fraction of a percent; 1 means a leg
# whose media stopped arriving.
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class EventSource(Protocol):
    """The call-control seam's event side (:class:`pbx.control.CallControl`)."""

    def subscribe(self, handler: Callable[[CallEvent], None]) -> Callable[[], None]: ...


class TrunkState(Protocol):
    """What a trunk's status says (``pbx.trunks.TrunkStatus``)."""

    @property
    def usable(self) -> bool: ...


class ServerSource(Protocol):
    """What :class:`pbx.server.SipServer` offers for metrics."""

    @property
    def control(self) -> EventSource: ...

    def sip_counts(self) -> tuple[Mapping[str, int], Mapping[str, int]]: ...

    def registration_count(self) -> int: ...

    def call_count(self) -> int: ...

    def trunk_states(self) -> Mapping[str, TrunkState]: ...


class AcdSource(Protocol):
    """What :class:`acd.host.AcdHost` offers for metrics."""

    def queue_snapshots(self, now: float | None = None) -> Sequence[QueueSnapshot]: ...

    def agent_snapshots(self) -> Sequence[AgentSnapshot]: ...


class Metrics:
    """The metrics of one server (and its ACD, if any); see the module documentation."""

    def __init__(self, server: ServerSource, acd: AcdSource | None) -> None:
        self.registry = CollectorRegistry()
        self._calls = Counter(
            "switchboard_calls",
            "Calls ended, by direction and disposition (as in their call records).",
            ("direction", "disposition"),
            registry=self.registry,
        )
        self._loss = Histogram(
            "switchboard_rtp_packet_loss_ratio",
            "RTCP packet loss fraction of each leg of an ended call that received media.",
            buckets=LOSS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(server, acd))
        ProcessCollector(registry=self.registry)
        self._unsubscribe: Callable[[], None] | None = server.control.subscribe(self._on_event)

    def _on_event(self, event: CallEvent) -> None:
        if not isinstance(event, CallEnded):
            return
        self._calls.labels(event.direction, event.disposition).inc()
        for loss in (event.caller_loss, event.callee_loss):
            if loss is not None:
                self._loss.observe(loss)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type (call on the event loop)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Stop counting calls (unsubscribe from the seam)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class _LiveCollector(Collector):
    """Gauges and counters read from the server and the ACD at scrape time."""

    def __init__(self, server: ServerSource, acd: AcdSource | None) -> None:
        self._server = server
        self._acd = acd

    def collect(self) -> Iterator[Metric]:
        server = self._server
        requests, responses = server.sip_counts()
        sip_requests = CounterMetricFamily(
            "switchboard_sip_requests",
            "SIP requests received, by method (retransmissions included; others as OTHER).",
            labels=("method",),
        )
        for method, n in sorted(requests.items()):
            sip_requests.add_metric((method,), n)
        yield sip_requests
        sip_responses = CounterMetricFamily(
            "switchboard_sip_responses",
            "SIP responses sent, by status code.",
            labels=("code",),
        )
        for code, n in sorted(responses.items()):
            sip_responses.add_metric((code,), n)
        yield sip_responses
        yield GaugeMetricFamily(
            "switchboard_calls_active",
            "Calls in progress (being set up, ringing or up).",
            value=server.call_count(),
        )
        yield GaugeMetricFamily(
            "switchboard_registrations",
            "Registered contacts (unexpired bindings of every extension).",
            value=server.registration_count(),
        )
        trunk_up = GaugeMetricFamily(
            "switchboard_trunk_up",
            "1 when the trunk is usable (registered or not registering, and not down).",
            labels=("trunk",),
        )
        for name, status in sorted(server.trunk_states().items()):
            trunk_up.add_metric((name,), 1.0 if status.usable else 0.0)
        yield trunk_up
        if self._acd is not None:
            yield from self._acd_metrics(self._acd)

    @staticmethod
    def _acd_metrics(acd: AcdSource) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "switchboard_queue_waiting", "Callers waiting in the queue.", labels=("queue",)
        )
        longest = GaugeMetricFamily(
            "switchboard_queue_longest_wait_seconds",
            "How long the queue's longest-waiting caller has waited.",
            labels=("queue",),
        )
        for q in acd.queue_snapshots():
            waiting.add_metric((q.name,), q.waiting)
            longest.add_metric((q.name,), q.longest_wait_seconds)
        yield waiting
        yield longest
        counts = dict.fromkeys((s.value for s in AgentState), 0)
        for a in acd.agent_snapshots():
            counts[a.state] = counts.get(a.state, 0) + 1
        agents = GaugeMetricFamily("switchboard_agents", "Agents by state.", labels=("state",))
        for state, n in counts.items():
            agents.add_metric((state,), n)
        yield agents

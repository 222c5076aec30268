"""An in-memory client/server pair of transaction layers with a fake clock.

Every datagram goes through ``serialize`` and ``parse_message``, so the layers see exactly
what a peer would put on the wire. Nothing is delivered until the test says so: ``transfer``
delivers what is in flight (one hop), ``drop`` loses it, ``advance`` moves the clock and fires
timers at their exact deadlines. Everything sent and every event is logged with its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pbx.message import Request, Response, parse_message
from pbx.transaction import Address, Event, Timers, TransactionLayer, new_branch

E = TypeVar("E")

CLIENT: Address = ("127.0.0.1", 5070)
SERVER: Address = ("127.0.0.1", 5060)
CLIENT_VIA_HOST = "client.invalid"  # differs from the source address: the server adds received


@dataclass(frozen=True, slots=True)
class Wire:
    data: bytes
    src: Address
    dst: Address
    transport: str
    at: float

    @property
    def message(self) -> Request | Response:
        return parse_message(self.data)

    def describe(self) -> str:
        msg = self.message
        if isinstance(msg, Request):
            return msg.method
        return str(msg.status)


class Pair:
    def __init__(self, transport: str = "UDP", timers: Timers | None = None) -> None:
        self.transport = transport
        self.now = 0.0
        self.client = TransactionLayer(timers)
        self.server = TransactionLayer(timers)
        self.in_flight: list[Wire] = []
        self.sent: list[Wire] = []
        self.client_events: list[tuple[float, Event]] = []
        self.server_events: list[tuple[float, Event]] = []

    # -- plumbing --------------------------------------------------------------------

    def collect(self) -> None:
        for layer, src, events in (
            (self.client, CLIENT, self.client_events),
            (self.server, SERVER, self.server_events),
        ):
            for data, dst, transport in layer.datagrams_to_send():
                wire = Wire(data, src, dst, transport, self.now)
                self.in_flight.append(wire)
                self.sent.append(wire)
            while (event := layer.next_event()) is not None:
                events.append((self.now, event))

    def transfer(self) -> list[Request | Response]:
        """Deliver every datagram in flight (one hop); return what was delivered."""
        self.collect()
        batch, self.in_flight = self.in_flight, []
        delivered: list[Request | Response] = []
        for wire in batch:
            msg = wire.message
            delivered.append(msg)
            layer = self.server if wire.dst == SERVER else self.client
            layer.receive(msg, wire.src, wire.transport, self.now)
            self.collect()
        return delivered

    def drop(self, n: int | None = None) -> list[Wire]:
        """Lose the first ``n`` datagrams in flight (all of them by default)."""
        self.collect()
        n = len(self.in_flight) if n is None else n
        lost, self.in_flight = self.in_flight[:n], self.in_flight[n:]
        return lost

    def advance(self, until: float) -> None:
        """Move the clock to ``until``, firing each timer at its exact deadline."""
        self.collect()
        while True:
            timers = (self.client.get_timer(), self.server.get_timer())
            deadlines = [t for t in timers if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = min(deadlines)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.collect()
        self.now = until

    def deliver(self, msg: Request | Response, *, to_server: bool = True) -> None:
        """Put a hand-built message on the wire and deliver it at once."""
        src, dst, layer = (
            (CLIENT, SERVER, self.server) if to_server else (SERVER, CLIENT, self.client)
        )
        wire = Wire(msg.serialize(), src, dst, self.transport, self.now)
        self.sent.append(wire)
        layer.receive(wire.message, src, self.transport, self.now)
        self.collect()

    # -- queries -----------------------------------------------------------------------

    def sent_times(self, what: str, *, by: Address) -> list[float]:
        """When ``by`` sent a message described as ``what`` (a method or a status code)."""
        return [w.at for w in self.sent if w.src == by and w.describe() == what]

    def events(self, side: str, kind: type[E]) -> list[tuple[float, E]]:
        """The events of one kind seen by ``"client"`` or ``"server"``, with their time."""
        source = self.client_events if side == "client" else self.server_events
        return [(t, e) for t, e in source if isinstance(e, kind)]


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    cseq: int = 1,
    call_id: str = "call-1@client.invalid",
    to_tag: str | None = None,
    transport: str = "UDP",
    rport: bool = True,
    via_host: str = CLIENT_VIA_HOST,
    routes: tuple[str, ...] = (),
    one_via_line: bool = False,
) -> Request:
    """A minimal valid request from the client side of a :class:`Pair`."""
    if branch is None:
        branch = new_branch()
    via_params = f";branch={branch}" if branch else ""
    if rport:
        via_params += ";rport"
    to = "<sip:bob@server.invalid>" + (f";tag={to_tag}" if to_tag else "")
    headers = [
        ("Via", f"SIP/2.0/{transport} {via_host}:{CLIENT[1]}{via_params}"),
        ("Via", "SIP/2.0/UDP proxy.invalid;branch=z9hG4bKproxy"),
        ("Max-Forwards", "70"),
    ]
    if one_via_line:  # both Vias as one comma-separated header line
        headers[:2] = [("Via", f"{headers[0][1]}, {headers[1][1]}")]
    headers += [("Route", r) for r in routes]
    headers += [
        ("From", "<sip:alice@client.invalid>;tag=fromtag1"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:alice@{CLIENT[0]}:{CLIENT[1]}>"),
        ("Subject", "not copied into the ACK"),
    ]
    return Request(method, "sip:bob@server.invalid", headers)

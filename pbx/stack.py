"""The SIP stack: transports + the sans-IO transaction layer + one timer.

Theory of operation
-------------------
This is the asyncio adapter around :class:`~pbx.transaction.TransactionLayer` (aioquic
style). Bytes arrive from a transport, are parsed, and go into the layer with ``now``; after
every input the adapter drains the layer's outgoing datagrams and events and re-arms a single
``loop.call_at`` for the layer's next deadline. Events are dispatched to the transaction user
(the registrar and the B2BUA, see :mod:`pbx.server`) through plain callbacks.

A datagram that does not parse is answered with a stateless 400 (or 505/513/…) when it looks
like a request and its Via, From, To, Call-ID and CSeq can still be found; otherwise it is
dropped silently (RFC 3261 §16.3 / §18.3 leave the choice to us; we never let it escape as an
exception).
"""

from __future__ import annotations

import asyncio
import errno
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .message import ParseError, Request, Response, parse_message, parse_uri, reason_phrase
from .tls import DEFAULT_TLS_PORT, TlsSettings, wants_tls
from .transaction import (
    AckNotReceived,
    RequestReceived,
    ResponseReceived,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from .transport import Address, TcpTransport, TlsTransport, UdpTransport

__all__ = [
    "ListenError",
    "ListenSpec",
    "ResponseCallback",
    "SipStack",
    "TimeoutCallback",
    "new_tag",
]

log = structlog.get_logger("pbx.stack")

ResponseCallback = Callable[[Response], None]
TimeoutCallback = Callable[[], None]
# The cause of a transport failure ("connection refused", "certificate verify failed: …").
TransportErrorCallback = Callable[[str], None]
# The stream transports, by name; each a listener plus connections (RFC 3261 §18).
STREAM_TRANSPORTS = ("TCP", "TLS")


def new_tag() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class ListenSpec:
    transport: str  # "UDP", "TCP" or "TLS"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport.lower()} {self.host}:{self.port}"


class ListenError(OSError):
    """A listen socket could not be opened. Still an ``OSError`` (same ``errno``), and it
    names the socket, which the operating system's error does not."""

    def __init__(self, spec: ListenSpec, cause: OSError) -> None:
        # uvloop raises a bare "could not bind" OSError with the system's error as context.
        found: BaseException | None = cause
        while isinstance(found, OSError) and found.errno is None:
            found = found.__cause__ or found.__context__
        system = found if isinstance(found, OSError) else cause
        super().__init__(system.errno, system.strerror or str(cause))
        self.spec = spec
        self.socket = str(spec)

    def __str__(self) -> str:
        if self.errno == errno.EADDRINUSE:
            return f"another process is using {self.spec}"
        if self.errno == errno.EACCES:
            return f"no permission to listen on {self.spec}"
        if self.errno == errno.EADDRNOTAVAIL:
            return f"{self.spec}: {self.spec.host} is not an address of this machine"
        return f"cannot listen on {self.spec}: {self.strerror}"


class SipStack:
    """Owns the sockets, the transaction layer and its timer."""

    def __init__(
        self,
        *,
        timers: Timers | None = None,
        advertise_host: str | None = None,
        user_agent: str = "Switchboard",
        tls: TlsSettings | None = None,
    ) -> None:
        self.layer = TransactionLayer(timers or Timers())
        self.user_agent = user_agent
        self._advertise_host = advertise_host
        self._tls_settings = tls
        self._udp: list[UdpTransport] = []
        self._tcp: list[TcpTransport] = []
        self._tls: list[TlsTransport] = []
        # A TLS transport without a listener, for trunks when no TLS socket is configured.
        self._tls_client: TlsTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._callbacks: dict[
            str, tuple[ResponseCallback, TimeoutCallback | None, TransportErrorCallback | None]
        ] = {}
        self._failure_cause = ""
        self._local_ip_cache: dict[str, str] = {}
        self.on_request: Callable[[RequestReceived], None] = lambda ev: None
        self.on_stray_response: Callable[[Response], None] = lambda resp: None
        self.on_ack_not_received: Callable[[AckNotReceived], None] = lambda ev: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats_parse_errors = 0

    # -- lifecycle -------------------------------------------------------------------

    async def listen(self, specs: list[ListenSpec]) -> None:
        """Open every listen socket; :class:`ListenError` names the one that failed."""
        self._loop = asyncio.get_running_loop()
        for spec in specs:
            try:
                if spec.transport.upper() == "UDP":
                    udp = await UdpTransport.listen(spec.host, spec.port, self._datagram)
                    self._udp.append(udp)
                elif spec.transport.upper() == "TCP":
                    tcp = await TcpTransport.listen(
                        spec.host, spec.port, self._message, self._transport_failed
                    )
                    self._tcp.append(tcp)
                elif spec.transport.upper() == "TLS":
                    if self._tls_settings is None:
                        raise ValueError("a TLS listen socket needs TLS settings")
                    tls = await TlsTransport.listen_tls(
                        spec.host,
                        spec.port,
                        self._message,
                        self._tls_settings,
                        self._transport_failed,
                    )
                    self._tls.append(tls)
                else:
                    raise ValueError(f"unsupported transport {spec.transport}")
            except OSError as exc:
                raise ListenError(spec, exc) from exc
            log.info(
                "sip_listening", transport=spec.transport.upper(), host=spec.host, port=spec.port
            )
        if self._tls_settings is not None and not self._tls:
            self._tls_client = TlsTransport(
                self._message, self._tls_settings, self._transport_failed
            )

    def local_address(self, transport: str = "UDP") -> Address:
        """The bound address of the first listener of ``transport`` (of another transport
        when there is none)."""
        pools: dict[str, list[UdpTransport] | list[TcpTransport] | list[TlsTransport]] = {
            "UDP": self._udp,
            "TCP": self._tcp,
            "TLS": self._tls,
        }
        pool = pools.get(transport.upper()) or self._udp or self._tcp or self._tls
        return pool[0].local

    def learn_tls_peer(self, host: str, address: Address) -> None:
        """A carrier's ``host`` resolved to ``address``: TLS connections to it are verified
        as that carrier's (see :class:`~pbx.tls.TlsSettings`)."""
        if self._tls_settings is not None:
            self._tls_settings.learn(host, address)

    def _stream(self, transport: str) -> TcpTransport | None:
        """The stream transport that sends for ``transport`` (None for UDP)."""
        transport = transport.upper()
        if transport == "TCP":
            return self._tcp[0] if self._tcp else None
        if transport == "TLS":
            return self._tls[0] if self._tls else self._tls_client
        return None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for u in self._udp:
            u.close()
        for t in [*self._tcp, *self._tls]:
            t.close()
            await t.wait_closed()
        if self._tls_client is not None:
            self._tls_client.close()

    # -- addresses -------------------------------------------------------------------

    def host_for(self, dest_host: str) -> str:
        """The address peers should use to reach us when we talk to ``dest_host``."""
        if self._advertise_host:
            return self._advertise_host
        bound = self.local_address()[0]
        if bound not in ("0.0.0.0", "::"):
            return bound
        cached = self._local_ip_cache.get(dest_host)
        if cached is not None:
            return cached
        ip = "127.0.0.1"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((dest_host, 9))  # no packet is sent: this only asks the routing table
                ip = s.getsockname()[0]
        except OSError:
            pass
        self._local_ip_cache[dest_host] = ip
        return ip

    def via_for(self, transport: str, dest_host: str) -> str:
        """A fresh top Via for a request we originate (RFC 3261 §8.1.1.7, RFC 3581 rport)."""
        port = self.local_address(transport)[1]
        branch = "z9hG4bK" + secrets.token_hex(8)
        return (
            f"SIP/2.0/{transport.upper()} {self.host_for(dest_host)}:{port};rport;branch={branch}"
        )

    def contact_for(self, transport: str, dest_host: str, user: str | None = None) -> str:
        port = self.local_address(transport)[1]
        at = f"{user}@" if user else ""
        # RFC 3261 §19.1.4: no transport parameter means UDP; TLS is transport=tls (a sip
        # URI reached over TLS, RFC 5630 §3.1.2), not a sips URI.
        tp = "" if transport.upper() == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{at}{self.host_for(dest_host)}:{port}{tp}>"

    def flow_to(self, transport: str, source: Address, contact_uri: str) -> tuple[str, Address]:
        """Where to reach a registered contact: over the connection or from the source address
        its REGISTER came from (NAT-friendly, RFC 5626 §5.3 in spirit); for TCP and TLS, when
        that connection is gone, a new connection to the address in its Contact URI. A contact
        that asks for TLS (a sips URI or ``transport=tls``, RFC 3261 §19.1.4 / §26.2.2) but
        registered over another transport is reached over TLS at its Contact's address."""
        transport = transport.upper()
        if transport != "TLS" and self._stream("TLS") is not None and wants_tls(contact_uri):
            try:
                return "TLS", parse_uri(contact_uri).host_port(DEFAULT_TLS_PORT)
            except ParseError:
                pass
        stream = self._stream(transport)
        if stream is not None and not stream.has_connection(source):
            try:
                uri = parse_uri(contact_uri)
                host, port = uri.host_port(5061 if transport == "TLS" else 5060)
            except ParseError:
                return transport, source
            return transport, (host, port)
        return transport, source

    # -- input -----------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _datagram(self, data: bytes, source: Address, transport: str) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive (RFC 5626 §3.5.1) or empty
        try:
            msg = parse_message(data)
        except ParseError as exc:
            self._reject_unparsable(data, exc, source, transport)
            return
        self._message(msg, source, transport)

    def _message(
        self, msg: Request | Response | ParseError, source: Address, transport: str
    ) -> None:
        if isinstance(msg, ParseError):
            self.stats_parse_errors += 1
            log.info("sip_parse_error", source=f"{source[0]}:{source[1]}", error=str(msg))
            return
        self.layer.receive(msg, source, transport, self._now())
        self._pump()

    def _reject_unparsable(
        self, data: bytes, exc: ParseError, source: Address, transport: str
    ) -> None:
        self.stats_parse_errors += 1
        log.info(
            "sip_parse_error",
            source=f"{source[0]}:{source[1]}",
            error=str(exc)[:200],
            status=exc.status,
        )
        resp = _stateless_error(data, exc)
        if resp is not None:
            self.layer.count_response(_error_status(exc))
            self._send_bytes(resp, source, transport)

    # -- output ----------------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        dest: Address,
        transport: str,
        on_response: ResponseCallback,
        on_timeout: TimeoutCallback | None = None,
        on_transport_error: TransportErrorCallback | None = None,
    ) -> str:
        """Start a client transaction; ``on_response`` gets every response to it. When the
        transport cannot reach ``dest`` (RFC 3261 §8.1.3.1: treated as no answer),
        ``on_transport_error`` gets the cause, or else ``on_timeout`` is called."""
        if request.get("User-Agent") is None:
            request.add("User-Agent", self.user_agent)
        key = self.layer.send_request(request, dest, transport.upper(), self._now())
        self._callbacks[key] = (on_response, on_timeout, on_transport_error)
        self._pump()
        return key

    def send_response(self, response: Response) -> None:
        if response.get("Server") is None:
            response.add("Server", self.user_agent)
        self.layer.send_response(response, self._now())
        self._pump()

    def send_stateless(self, msg: Request | Response, dest: Address, transport: str) -> None:
        """Send outside any transaction (ACK for a 2xx, RFC 3261 §13.2.2.4)."""
        self._send_bytes(msg.serialize(), dest, transport)

    def _send_bytes(self, data: bytes, dest: Address, transport: str) -> None:
        stream = self._stream(transport)
        if stream is not None:
            stream.send(data, dest)
        elif transport.upper() == "TLS":
            # Never fall back to a cleartext transport for a TLS flow (RFC 3261 §26.2.2).
            log.info("tls_not_configured", dest=f"{dest[0]}:{dest[1]}")
        elif self._udp:
            self._udp[0].send(data, dest)

    def _transport_failed(self, dest: Address, transport: str, cause: str) -> None:
        """A connection to ``dest`` could not be opened: every transaction with that peer
        ends now instead of at Timer B/F (RFC 3261 §17.1.4, §18.4)."""
        if self._loop is None:
            return
        self._failure_cause = cause
        try:
            self.layer.report_transport_error(dest, transport, self._now())
            self._pump()
        finally:
            self._failure_cause = ""

    def _pump(self) -> None:
        layer = self.layer
        for data, dest, transport in layer.datagrams_to_send():
            self._send_bytes(data, dest, transport)
        while True:
            ev = layer.next_event()
            if ev is None:
                break
            try:
                self._dispatch(ev)
            except Exception:  # a TU bug must not take the stack down
                log.exception("tu_handler_failed", kind=type(ev).__name__)
            # Handlers may have queued more output.
            for data, dest, transport in layer.datagrams_to_send():
                self._send_bytes(data, dest, transport)
        self._arm_timer()

    def _dispatch(self, ev: object) -> None:
        if isinstance(ev, RequestReceived):
            self.on_request(ev)
        elif isinstance(ev, ResponseReceived):
            cb = self._callbacks.get(ev.key) if ev.key is not None else None
            if cb is None:
                self.on_stray_response(ev.response)
            else:
                cb[0](ev.response)
        elif isinstance(ev, TransactionTimedOut):
            cb = self._callbacks.pop(ev.key, None)
            if cb is not None and cb[1] is not None:
                cb[1]()
        elif isinstance(ev, TransportFailed):
            cb = self._callbacks.pop(ev.key, None)
            if cb is not None and cb[2] is not None:
                cb[2](self._failure_cause or "transport error")
            elif cb is not None and cb[1] is not None:
                cb[1]()
        elif isinstance(ev, AckNotReceived):
            self.on_ack_not_received(ev)
        elif isinstance(ev, TransactionTerminated):
            self._callbacks.pop(ev.key, None)

    def _arm_timer(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self._now())
        self._pump()


_HDR_RE = re.compile(rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*([^\r\n]*)\r?$")


def _error_status(exc: ParseError) -> int:
    return exc.status if 400 <= exc.status < 700 else 400


def _stateless_error(data: bytes, exc: ParseError) -> bytes | None:
    """A best-effort error response to a request we could not parse, or None."""
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    if first.upper().startswith(b"SIP/") or b" SIP/" not in first.upper():
        return None  # a response, or not SIP at all: stay silent
    if first.split(b" ", 1)[0].upper() == b"ACK":
        return None  # never answer an ACK (RFC 3261 §17.2.1)
    found: dict[bytes, list[bytes]] = {}
    for m in _HDR_RE.finditer(data[:8192]):
        name = m.group(1).lower()
        name = {b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id"}.get(name, name)
        found.setdefault(name, []).append(m.group(2).strip())
    if not all(k in found for k in (b"via", b"from", b"to", b"call-id", b"cseq")):
        return None
    status = _error_status(exc)
    reason = reason_phrase(status)
    lines = [f"SIP/2.0 {status} {reason}".encode()]
    for v in found[b"via"]:
        lines.append(b"Via: " + v)
    to = found[b"to"][0]
    if b"tag=" not in to.lower():
        to += b";tag=" + new_tag().encode()
    lines += [
        b"From: " + found[b"from"][0],
        b"To: " + to,
        b"Call-ID: " + found[b"call-id"][0],
        b"CSeq: " + found[b"cseq"][0],
        b'Warning: 399 switchboard "'
        + str(exc)[:100].replace('"', "'").encode("ascii", "replace")
        + b'"',
        b"Content-Length: 0",
    ]
    if any(b"\x00" in line or b"\r" in line for line in lines):
        return None
    return b"\r\n".join(lines) + b"\r\n\r\n"

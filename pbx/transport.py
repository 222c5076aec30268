"""SIP transports: the asyncio adapters for UDP, TCP and TLS (RFC 3261 §18, §26).

Theory of operation
-------------------
Transports move bytes and nothing else. A :class:`UdpTransport` hands every datagram, with
its source address, to a callback; a :class:`TcpTransport` accepts connections, frames each
stream with :class:`~pbx.message.StreamParser` and hands complete messages to the same kind
of callback. Sending over TCP reuses a connection to (or from) the destination address when
there is one (RFC 3261 §18.2.2: responses go back over the connection the request came on;
phones that registered over TCP are reached over the connection they keep open) and opens a
new one otherwise. A :class:`TlsTransport` is the same stream transport with a TLS session
on every connection (RFC 3261 §26.2.1: TLS is used like TCP, one message stream per
connection); the contexts and the name to verify per destination come from
:class:`~pbx.tls.TlsSettings`. A connection that cannot be opened (refused, timed out, a
certificate that fails verification) is reported to the ``on_failure`` callback with a cause,
so the transactions waiting on it end at once (RFC 3261 §18.4, §17.1.4).

Parsing happens in the stack (:mod:`pbx.stack`), not here, except for stream framing, which
only the transport can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import cast

import structlog

from .message import ParseError, Request, Response, StreamParser
from .tls import TlsSettings, verify_failure

__all__ = ["Address", "TcpTransport", "TlsTransport", "UdpTransport"]

log = structlog.get_logger("pbx.transport")

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, str], None]
MessageHandler = Callable[["Request | Response | ParseError", Address, str], None]
# (destination, transport name, cause): a connection to the destination could not be opened.
FailureHandler = Callable[[Address, str, str], None]


class UdpTransport(asyncio.DatagramProtocol):
    """One UDP socket (RFC 3261 §18.1.1 / §18.2.1)."""

    name = "UDP"

    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("0.0.0.0", 0)

    @classmethod
    async def listen(cls, host: str, port: int, on_datagram: DatagramHandler) -> UdpTransport:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(on_datagram), local_addr=(host, port), reuse_port=False
        )
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: trust the protocol contract.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("sockname")
        self.local = (sock[0], sock[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            self._on_datagram(data, (str(addr[0]), int(addr[1])), self.name)
        except Exception:  # a bug in a handler must not kill the socket
            log.exception("udp_handler_failed", source=f"{addr[0]}:{addr[1]}")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: nothing to do on UDP (RFC 3261 §18.4 optional).
        log.debug("udp_error", error=str(exc))

    def send(self, data: bytes, dest: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(data, dest)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport) -> None:
        self._owner = owner
        self._parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self._owner._register(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._parser.feed(data)
        except ParseError as exc:
            # Framing is lost: the only safe thing is to drop the connection (RFC 3261 §18.3).
            log.info("tcp_framing_lost", peer=f"{self.peer[0]}:{self.peer[1]}", error=str(exc))
            if self.transport is not None:
                self.transport.close()
            return
        for msg in messages:
            try:
                self._owner._on_message(msg, self.peer, self._owner.name)
            except Exception:
                log.exception("tcp_handler_failed", peer=f"{self.peer[0]}:{self.peer[1]}")
        lost = self._parser.framing_lost
        if lost is not None:
            # The messages framed before the break were delivered; the rest of the stream
            # cannot be trusted (RFC 3261 §18.3), so the connection goes.
            log.info("tcp_framing_lost", peer=f"{self.peer[0]}:{self.peer[1]}", error=str(lost))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._unregister(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class TcpTransport:
    """A TCP listener plus the connections it accepted or opened (RFC 3261 §18)."""

    name = "TCP"

    def __init__(
        self, on_message: MessageHandler, on_failure: FailureHandler | None = None
    ) -> None:
        self._on_message = on_message
        self._on_failure = on_failure
        self._server: asyncio.Server | None = None
        self._conns: dict[Address, _TcpConnection] = {}
        self._pending: dict[Address, list[bytes]] = {}
        self.local: Address = ("0.0.0.0", 0)

    @classmethod
    async def listen(
        cls,
        host: str,
        port: int,
        on_message: MessageHandler,
        on_failure: FailureHandler | None = None,
    ) -> TcpTransport:
        self = cls(on_message, on_failure)
        await self._start(host, port)
        return self

    async def _start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpConnection(self),
            host=host,
            port=port,
            reuse_address=True,
            ssl=self._server_ssl(),
        )
        sock = self._server.sockets[0].getsockname()
        self.local = (sock[0], sock[1])

    def _server_ssl(self) -> ssl.SSLContext | None:
        return None

    def _client_ssl(self, dest: Address) -> tuple[ssl.SSLContext | None, str | None]:
        return None, None

    def _register(self, conn: _TcpConnection) -> None:
        self._conns[conn.peer] = conn

    def _unregister(self, conn: _TcpConnection) -> None:
        if self._conns.get(conn.peer) is conn:
            del self._conns[conn.peer]

    def has_connection(self, dest: Address) -> bool:
        return dest in self._conns

    def send(self, data: bytes, dest: Address) -> None:
        conn = self._conns.get(dest)
        if conn is not None:
            conn.send(data)
            return
        queue = self._pending.get(dest)
        if queue is not None:
            queue.append(data)
            return
        self._pending[dest] = [data]
        asyncio.get_running_loop().create_task(self._connect(dest))

    async def _connect(self, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        context, server_name = self._client_ssl(dest)
        try:
            if context is None:
                opening = loop.create_connection(lambda: _TcpConnection(self), dest[0], dest[1])
            else:
                # RFC 3261 §26.3.1: the name the peer's certificate must carry (also SNI).
                opening = loop.create_connection(
                    lambda: _TcpConnection(self),
                    dest[0],
                    dest[1],
                    ssl=context,
                    server_hostname=server_name or dest[0],
                )
            _, conn = await asyncio.wait_for(opening, 10.0)
        except (OSError, TimeoutError) as exc:
            cause = verify_failure(exc) or str(exc) or type(exc).__name__
            log.info(
                "tls_connect_failed" if context is not None else "tcp_connect_failed",
                dest=f"{dest[0]}:{dest[1]}",
                server_name=server_name,
                error=cause,
            )
            self._pending.pop(dest, None)
            if self._on_failure is not None:
                self._on_failure(dest, self.name, cause)
            return
        for data in self._pending.pop(dest, []):
            conn.send(data)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()

    async def wait_closed(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


class TlsTransport(TcpTransport):
    """SIP over TLS (RFC 3261 §26.2.1): TCP's framing and connection reuse, every connection
    a TLS session. Without a server context it only opens connections (no listener)."""

    name = "TLS"

    def __init__(
        self,
        on_message: MessageHandler,
        tls: TlsSettings,
        on_failure: FailureHandler | None = None,
    ) -> None:
        super().__init__(on_message, on_failure)
        self._tls = tls

    @classmethod
    async def listen_tls(
        cls,
        host: str,
        port: int,
        on_message: MessageHandler,
        tls: TlsSettings,
        on_failure: FailureHandler | None = None,
    ) -> TlsTransport:
        if tls.server is None:
            raise ValueError("a TLS listener needs a certificate and key")
        self = cls(on_message, tls, on_failure)
        await self._start(host, port)
        return self

    def _server_ssl(self) -> ssl.SSLContext | None:
        return self._tls.server

    def _client_ssl(self, dest: Address) -> tuple[ssl.SSLContext | None, str | None]:
        return self._tls.client_for(dest)

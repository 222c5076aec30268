"""SIP transports: the asyncio adapters for UDP and TCP (RFC 3261 §18).

Theory of operation
-------------------
Transports move bytes and nothing else. A :class:`UdpTransport` hands every datagram, with
its source address, to a callback; a :class:`TcpTransport` accepts connections, frames each
stream with :class:`~pbx.message.StreamParser` and hands complete messages to the same kind
of callback. Sending over TCP reuses a connection to (or from) the destination address when
there is one (RFC 3261 §18.2.2: responses go back over the connection the request came on;
phones that registered over TCP are reached over the connection they keep open) and opens a
new one otherwise.

Parsing happens in the stack (:mod:`pbx.stack`), not here, except for stream framing, which
only the transport can do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

import structlog

from .message import ParseError, Request, Response, StreamParser

__all__ = ["Address", "TcpTransport", "UdpTransport"]

log = structlog.get_logger("pbx.transport")

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, str], None]
MessageHandler = Callable[["Request | Response | ParseError", Address, str], None]


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
                self._owner._on_message(msg, self.peer, "TCP")
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

    def __init__(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._server: asyncio.Server | None = None
        self._conns: dict[Address, _TcpConnection] = {}
        self._pending: dict[Address, list[bytes]] = {}
        self.local: Address = ("0.0.0.0", 0)

    @classmethod
    async def listen(cls, host: str, port: int, on_message: MessageHandler) -> TcpTransport:
        self = cls(on_message)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpConnection(self), host=host, port=port, reuse_address=True
        )
        sock = self._server.sockets[0].getsockname()
        self.local = (sock[0], sock[1])
        return self

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
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConnection(self), dest[0], dest[1]), 10.0
            )
        except (OSError, TimeoutError) as exc:
            log.info("tcp_connect_failed", dest=f"{dest[0]}:{dest[1]}", error=str(exc))
            self._pending.pop(dest, None)
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

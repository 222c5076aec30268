"""pbx/hosted_phone.py (the browser phone's SIP side) and media/pcm_port.py (its RTP side),
against a scripted registrar/proxy on a loopback UDP socket: digest registration, ringing,
answering with a retransmitted 2xx until the ACK, CANCEL, busy, BYE both ways, dialling out
through a proxy challenge, unregistering; RTP both ways with RFC 4733 digits."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from media.codecs import get_codec
from media.pcm_port import PcmPort
from pbx.digest import compute_response, parse_credentials
from pbx.hosted_phone import CallMedia, HostedPhone, choose_media
from pbx.message import Request, Response, make_response, parse_message

PASSWORD = "pw-1002-secret"
CHALLENGE = 'Digest realm="switchboard", nonce="n0nce", qop="auth", algorithm=MD5'
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40010 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


@dataclass
class Listener:
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def registered(self, ok: bool, reason: str) -> None:
        self.events.append(("registered", ok))

    def incoming(self, call_id: str, caller: str, display: str, headers: dict[str, str]) -> None:
        self.events.append(
            ("incoming", call_id, caller, display, headers.get("x-switchboard-ivr-keys"))
        )

    def progress(self, call_id: str, status: int) -> None:
        self.events.append(("progress", call_id, status))

    def answered(self, call_id: str, media: CallMedia) -> None:
        self.events.append(("answered", call_id, media.codec.name, media.port, media.dtmf_pt))

    def ended(self, call_id: str, reason: str) -> None:
        self.events.append(("ended", call_id, reason))


class Server(asyncio.DatagramProtocol):
    """A registrar/proxy that records what the phone sends and answers by script."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[Request | Response, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.challenge = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = parse_message(data)
        if isinstance(msg, Request) and msg.method == "REGISTER":
            self._register(msg, addr)
            return
        self.got.put_nowait((msg, addr))

    def _register(self, req: Request, addr: Any) -> None:
        auth = req.get("Authorization")
        if auth is None and self.challenge:
            self.send(make_response(req, 401, headers=[("WWW-Authenticate", CHALLENGE)]), addr)
            return
        if auth is not None:
            creds = parse_credentials(auth)
            want = compute_response(
                algorithm="MD5",
                username="1002",
                realm="switchboard",
                password=PASSWORD,
                method="REGISTER",
                uri=creds.uri,
                nonce="n0nce",
                qop=creds.qop,
                nc=creds.nc,
                cnonce=creds.cnonce,
            )
            if creds.response != want:
                self.send(make_response(req, 403), addr)
                return
        expires = req.get("Expires") or "0"
        self.got.put_nowait((req, addr))
        contact = req.get("Contact") or ""
        self.send(
            make_response(req, 200, headers=[("Contact", f"{contact};expires={expires}")]), addr
        )

    def send(self, msg: Request | Response, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(msg.serialize(), addr)

    async def next(self, method: str | None = None, timeout: float = 3.0) -> Any:
        while True:
            msg, addr = await asyncio.wait_for(self.got.get(), timeout)
            if method is None:
                return msg, addr
            name = msg.method if isinstance(msg, Request) else f"{msg.status}"
            if name == method:
                return msg, addr


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Server, HostedPhone, Listener]]:
    loop = asyncio.get_running_loop()
    server = Server()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    listener = Listener()
    phone = HostedPhone(
        extension="1002",
        password=PASSWORD,
        server=transport.get_extra_info("sockname"),
        listener=listener,
        display="Bob",
    )
    assert await phone.start(timeout=3)
    try:
        yield server, phone, listener
    finally:
        await phone.close(timeout=1)
        transport.close()


def invite(phone: HostedPhone, call_id: str = "c1@server", cseq: int = 1) -> Request:
    return Request(
        "INVITE",
        f"sip:1002@127.0.0.1:{phone.contact.split(':')[2].split(';')[0]}",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{call_id[:2]}{cseq}"),
            ("From", '"Caller" <sip:1001@127.0.0.1>;tag=srv1'),
            ("To", "<sip:1002@127.0.0.1>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} INVITE"),
            ("Contact", "<sip:sb@127.0.0.1:5060>"),
            ("X-Switchboard-IVR-Keys", "12"),
            ("Content-Type", "application/sdp"),
        ],
        OFFER,
    )


def in_dialog(method: str, ok: Response, cseq: int) -> Request:
    return Request(
        method,
        "sip:1002@127.0.0.1",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{method}{cseq}"),
            ("From", '"Caller" <sip:1001@127.0.0.1>;tag=srv1'),
            ("To", ok.get("To") or ""),
            ("Call-ID", ok.call_id),
            ("CSeq", f"{cseq} {method}"),
        ],
    )


async def test_registers_with_digest_and_unregisters_on_close() -> None:
    loop = asyncio.get_running_loop()
    server = Server()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    listener = Listener()
    phone = HostedPhone(
        extension="1002",
        password=PASSWORD,
        server=transport.get_extra_info("sockname"),
        listener=listener,
    )
    assert await phone.start(timeout=3)
    reg, _ = await server.next("REGISTER")
    assert reg.get("Authorization") and reg.get("Expires") == "300"
    assert listener.events == [("registered", True)]
    await phone.close(timeout=2)
    bye_reg, _ = await server.next("REGISTER")
    assert bye_reg.get("Expires") == "0"
    transport.close()


async def test_a_wrong_password_is_not_registered() -> None:
    loop = asyncio.get_running_loop()
    server = Server()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    listener = Listener()
    phone = HostedPhone(
        extension="1002",
        password="wrong",
        server=transport.get_extra_info("sockname"),
        listener=listener,
    )
    assert not await phone.start(timeout=1)
    assert ("registered", False) in listener.events
    server.challenge = False  # let the unregister through
    await phone.close(timeout=1)
    transport.close()


async def test_rings_answers_and_retransmits_the_2xx_until_the_ack(
    rig: tuple[Server, HostedPhone, Listener],
) -> None:
    server, phone, listener = rig
    inv = invite(phone)
    server.send(inv, phone_addr(phone))
    ringing, _ = await server.next("180")
    assert ringing.to.params.get("tag")
    assert listener.events[-1] == ("incoming", "c1@server", "1001", "Caller", "12")
    server.send(inv, phone_addr(phone))  # a retransmitted INVITE gets the 180 again
    again, _ = await server.next("180")
    assert again.to.params["tag"] == ringing.to.params["tag"]

    media = phone.answer("c1@server", 41000)
    assert media is not None and media.codec.name == "PCMU" and media.dtmf_pt == 101
    ok, _ = await server.next("200")
    body = ok.body.decode()
    assert "m=audio 41000 RTP/AVP 0 101" in body and "a=sendrecv" in body
    ok2, _ = await server.next("200", timeout=2)  # §13.3.1.4: again after T1 without ACK
    assert ok2.body == ok.body
    server.send(in_dialog("ACK", ok, 1), phone_addr(phone))
    with pytest.raises(TimeoutError):
        await server.next("200", timeout=1.2)

    server.send(in_dialog("BYE", ok, 2), phone_addr(phone))
    bye_ok, _ = await server.next("200")
    assert bye_ok.cseq == (2, "BYE")
    assert listener.events[-1:] == [("ended", "c1@server", "bye")]


async def test_a_cancelled_call_gets_487_and_a_second_call_486(
    rig: tuple[Server, HostedPhone, Listener],
) -> None:
    server, phone, listener = rig
    inv = invite(phone)
    server.send(inv, phone_addr(phone))
    await server.next("180")
    server.send(invite(phone, "c2@server"), phone_addr(phone))
    busy, _ = await server.next("486")
    assert busy.call_id == "c2@server"
    cancel = Request(
        "CANCEL",
        inv.uri,
        [(k, v) for k, v in inv.headers if k in ("Via", "From", "To", "Call-ID")]
        + [("CSeq", "1 CANCEL")],
    )
    server.send(cancel, phone_addr(phone))
    ok, _ = await server.next("200")
    assert ok.cseq == (1, "CANCEL")
    terminated, _ = await server.next("487")
    assert terminated.cseq == (1, "INVITE")
    assert listener.events[-1] == ("ended", "c1@server", "cancelled")
    again, _ = await server.next("487", timeout=2)  # §17.2.1 timer G until the ACK
    assert again.cseq == (1, "INVITE")


async def test_a_hangup_before_the_ack_waits_for_it(
    rig: tuple[Server, HostedPhone, Listener],
) -> None:
    server, phone, listener = rig
    server.send(invite(phone), phone_addr(phone))
    await server.next("180")
    phone.answer("c1@server", 41000)
    ok, _ = await server.next("200")
    phone.hangup("c1@server")  # §15: no BYE before the ACK of the 2xx
    with pytest.raises(TimeoutError):
        await server.next("BYE", timeout=0.3)
    server.send(in_dialog("ACK", ok, 1), phone_addr(phone))
    bye, addr = await server.next("BYE")
    assert listener.events[-1] == ("ended", "c1@server", "hangup")
    server.send(make_response(bye, 200), addr)


async def test_hangup_sends_bye_and_a_reinvite_is_answered(
    rig: tuple[Server, HostedPhone, Listener],
) -> None:
    server, phone, listener = rig
    server.send(invite(phone), phone_addr(phone))
    await server.next("180")
    phone.answer("c1@server", 41000)
    ok, _ = await server.next("200")
    server.send(in_dialog("ACK", ok, 1), phone_addr(phone))
    reinvite = in_dialog("INVITE", ok, 2)
    reinvite.body = OFFER.replace(b"40010", b"40020") + b"a=sendonly\r\n"
    reinvite.set("Content-Type", "application/sdp")
    server.send(reinvite, phone_addr(phone))
    answer, _ = await server.next("200")
    assert "a=recvonly" in answer.body.decode()  # RFC 3264 §6.1: the hold, mirrored
    assert listener.events[-1][:4] == ("answered", "c1@server", "PCMU", 40020)

    phone.hangup("c1@server")
    bye, _ = await server.next("BYE")
    assert bye.uri == "sip:sb@127.0.0.1:5060"  # the remote target (§12.2.1.1)
    assert bye.from_.params["tag"] == ok.to.params["tag"]
    assert bye.to.params["tag"] == "srv1"
    assert listener.events[-1] == ("ended", "c1@server", "hangup")
    server.send(make_response(bye, 200), phone_addr(phone))


async def test_dials_out_through_a_proxy_challenge(
    rig: tuple[Server, HostedPhone, Listener],
) -> None:
    server, phone, listener = rig
    call_id = phone.dial("5000", 42000)
    assert call_id is not None and phone.dial("5001", 42002) is None  # one call at a time
    first, addr = await server.next("INVITE")
    assert "m=audio 42000 RTP/AVP" in first.body.decode()
    server.send(
        make_response(first, 407, to_tag="p1", headers=[("Proxy-Authenticate", CHALLENGE)]), addr
    )
    ack, _ = await server.next("ACK")
    assert ack.top_via.params["branch"] == first.top_via.params["branch"]  # §17.1.1.3
    second, _ = await server.next("INVITE")
    assert second.get("Proxy-Authorization") and second.cseq[0] == first.cseq[0] + 1
    server.send(make_response(second, 180, to_tag="t9"), addr)
    answer_sdp = OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8 101")
    ok = make_response(
        second,
        200,
        to_tag="t9",
        headers=[("Contact", "<sip:5000@127.0.0.1:5060>"), ("Content-Type", "application/sdp")],
        body=answer_sdp,
    )
    server.send(ok, addr)
    ack2, _ = await server.next("ACK")
    assert ack2.uri == "sip:5000@127.0.0.1:5060" and ack2.cseq == (second.cseq[0], "ACK")
    assert ack2.top_via.params["branch"] != second.top_via.params["branch"]  # §13.2.2.4
    assert ("progress", call_id, 180) in listener.events
    assert listener.events[-1] == ("answered", call_id, "PCMA", 40010, 101)
    phone.hangup(call_id)
    bye, _ = await server.next("BYE")
    server.send(make_response(bye, 200), addr)


def phone_addr(phone: HostedPhone) -> tuple[str, int]:
    port = int(phone.contact.split(":")[2].split(";")[0])
    return ("127.0.0.1", port)


def test_choose_media_prefers_wideband_and_finds_telephone_event() -> None:
    g722 = OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 0 9 101") + b"a=rtpmap:9 G722/8000\r\n"
    media = choose_media(g722)
    assert media is not None and media.dtmf_pt == 101 and media.port == 40010
    assert media.codec.name == ("G722" if get_codec("G722", 8000) else "PCMU")
    assert choose_media(OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 18")) is None
    assert choose_media(b"not sdp") is None


async def test_pcm_ports_carry_audio_and_rfc4733_digits() -> None:
    pcmu = get_codec("PCMU", 8000)
    assert pcmu is not None
    a, b = PcmPort(), PcmPort()
    await a.open()
    await b.open()
    a.configure(("127.0.0.1", b.port), pcmu, 0, 101)
    b.configure(("127.0.0.1", a.port), pcmu, 0, 101)
    assert await b.read(timeout=0.01) is not None and b.stats.frames_silent == 1
    t = np.arange(160) / 8000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    for _ in range(5):
        a.send(tone)
        await asyncio.sleep(0.005)
    frames = [await b.read(timeout=0.2) for _ in range(5)]
    assert b.stats.packets_in == 5
    spectrum = np.abs(np.fft.rfft(np.concatenate(frames).astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / 800 - 1000) < 20

    got: list[bytes] = []

    class Sniff(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(data)

    loop = asyncio.get_running_loop()
    sniff, _ = await loop.create_datagram_endpoint(Sniff, local_addr=("127.0.0.1", 0))
    sniff_port = sniff.get_extra_info("sockname")[1]
    a.configure(("127.0.0.1", sniff_port), pcmu, 0, 101)
    assert a.send_dtmf("5", duration_ms=100)
    a.send(tone)  # muted while the event plays (RFC 4733 §2.5.1.1)
    await asyncio.sleep(0.3)
    events = [d for d in got if d[1] & 0x7F == 101]
    assert events and not [d for d in got if d[1] & 0x7F == 0]
    assert events[0][1] & 0x80 and events[0][12] == 5  # marker on the first; event 5
    assert events[-1][13] & 0x80  # the end bit
    # Two quick presses: the second digit's events start after the first one's end.
    got.clear()
    assert a.send_dtmf("1", duration_ms=100) and a.send_dtmf("2", duration_ms=100)
    await asyncio.sleep(0.6)
    codes = [d[12] for d in got if d[1] & 0x7F == 101]
    assert codes and codes[0] == 1 and codes[-1] == 2
    assert codes == sorted(codes)  # never 1 after 2: no interleaving
    firsts = {d[12]: struct.unpack("!I", d[4:8])[0] for d in reversed(got)}
    assert firsts[1] != firsts[2]  # each event its own start timestamp
    a.close()
    b.close()
    sniff.close()

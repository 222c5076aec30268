"""SIP over TLS: the self-signed pair of a first start, the ``sip.tls`` and trunk TLS config
checks, and two real :class:`~pbx.stack.SipStack` s talking TLS over loopback (framing, the
response over the request's connection, a carrier certificate that fails verification)."""

from __future__ import annotations

import asyncio
import ssl
import stat
import textwrap
from pathlib import Path

import pytest

from app.certs import CERTIFICATE_FILE, KEY_FILE, ensure_self_signed
from app.settings import tls_settings_from_config
from config import ConfigError, load_config, parse_config
from pbx.location import Contact
from pbx.message import Request, Response, make_response, parse_message
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec, SipStack
from pbx.tls import (
    TlsPeer,
    TlsSettings,
    client_context,
    secure_only,
    server_context,
    sips_refusal,
    wants_tls,
)
from pbx.transaction import RequestReceived
from pbx.trunk_driver import TrunkDriver
from pbx.trunks import RegistrationState, Trunk
from tests.certs import TestCa
from tests.unit.call_harness import FakeMedia

# -- the self-signed pair ---------------------------------------------------------------


def test_self_signed_pair_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "tls"
    cert, key = ensure_self_signed(folder, ("sip.example.com",))
    assert (cert, key) == (folder / CERTIFICATE_FILE, folder / KEY_FILE)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes()
    server_context(str(cert), str(key))  # the pair loads and matches
    before = (cert.read_bytes(), key.read_bytes())
    assert ensure_self_signed(folder) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before  # reused, not regenerated
    assert sorted(p.name for p in folder.iterdir()) == [CERTIFICATE_FILE, KEY_FILE]


def test_tls_settings_generate_in_the_config_folder_only_when_tls_listens(
    tmp_path: Path,
) -> None:
    plain = parse_config("sip:\n  listen: [{transport: udp}]\n")
    assert tls_settings_from_config(plain, tmp_path) is None
    listening = parse_config("sip:\n  listen: [{transport: tls, host: 127.0.0.1}]\n")
    assert listening.sip.listen[0].port == 5061  # RFC 3261 §19.1.2 default
    tls = tls_settings_from_config(listening, tmp_path)
    assert tls is not None and tls.server is not None
    assert (tmp_path / "tls" / KEY_FILE).is_file()


def test_trunk_contexts_verify_by_default(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    cfg = parse_config(
        textwrap.dedent(
            f"""\
            sip:
              listen: [{{transport: udp, host: 127.0.0.1}}]
            trunks:
              carrier: {{host: 127.0.0.1, transport: tls}}
              private: {{host: 127.0.0.2, transport: tls, ca_file: "{ca.path}"}}
              lab: {{host: 127.0.0.3, port: 5071, transport: tls, verify: false}}
            """
        )
    )
    tls = tls_settings_from_config(cfg, tmp_path)
    assert tls is not None and tls.server is None  # trunks only: no listener, no self-signed
    assert not (tmp_path / "tls").exists()
    carrier = tls.peers[("127.0.0.1", 5061)]
    assert carrier.server_name == "127.0.0.1"
    assert carrier.context.verify_mode is ssl.CERT_REQUIRED and carrier.context.check_hostname
    assert tls.peers[("127.0.0.2", 5061)].context.verify_mode is ssl.CERT_REQUIRED
    assert tls.peers[("127.0.0.3", 5071)].context.verify_mode is ssl.CERT_NONE
    assert tls.client_for(("192.0.2.9", 5061))[0].verify_mode is ssl.CERT_NONE  # phones
    # A carrier's name learnt late (or still unresolved) is never reached unverified.
    assert tls.peers.get(("192.0.2.7", 5061)) is None
    tls.learn("127.0.0.1", ("192.0.2.7", 5061))
    assert tls.client_for(("192.0.2.7", 5061)) == (carrier.context, "127.0.0.1")
    assert tls.client_for(("127.0.0.1", 9999))[0] is carrier.context


# -- config checks ----------------------------------------------------------------------


def _problems(folder: Path, text: str) -> list[str]:
    path = folder / "switchboard.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_missing_key_file_is_a_problem_at_its_key(tmp_path: Path) -> None:
    issued = TestCa(tmp_path / "ca").issue("localhost")
    problems = _problems(
        tmp_path,
        f"""\
        sip:
          tls:
            certificate: "{issued.certificate}"
            key: missing.key
        """,
    )
    assert problems == [
        f"{tmp_path / 'switchboard.yaml'}:4:10: sip.tls.key: no such file "
        f"{(tmp_path / 'missing.key').resolve()}"
    ]


def test_certificate_without_key_and_mismatched_pair_are_refused(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    a, b = ca.issue("a.example"), ca.issue("b.example")
    (problem,) = _problems(tmp_path, f'sip:\n  tls: {{certificate: "{a.certificate}"}}\n')
    assert "sip.tls: give both certificate and key, or neither" in problem
    (problem,) = _problems(
        tmp_path, f'sip:\n  tls: {{certificate: "{a.certificate}", key: "{b.key}"}}\n'
    )
    assert "sip.tls.certificate: cannot load with its key" in problem


def test_trunk_ca_file_is_checked_and_relative_to_the_config(tmp_path: Path) -> None:
    text = "trunks:\n  carrier: {host: 127.0.0.1, transport: tls, ca_file: ca.pem}\n"
    (problem,) = _problems(tmp_path, text)
    assert f"trunks.carrier.ca_file: no such file {(tmp_path / 'ca.pem').resolve()}" in problem
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (problem,) = _problems(tmp_path, text)
    assert "not a PEM CA certificate file" in problem
    ca = TestCa(tmp_path / "ca")
    (tmp_path / "ca.pem").write_bytes(ca.path.read_bytes())
    cfg = load_config(tmp_path)
    assert cfg.trunks["carrier"].ca_file == str((tmp_path / "ca.pem").resolve())
    assert cfg.trunks["carrier"].port == 5061


# -- RFC 5630 ---------------------------------------------------------------------------


def test_sips_needs_tls_in_and_out() -> None:
    assert sips_refusal("sips", "TCP") == 416
    assert sips_refusal("sips", "TLS") is None and sips_refusal("sip", "UDP") is None
    udp = Contact("sip:1002@192.0.2.1", ("192.0.2.1", 5060), "UDP", 0.0, "c1", 1)
    tls = Contact("sip:1002@192.0.2.2;transport=tls", ("192.0.2.2", 40000), "TLS", 0.0, "c2", 1)
    assert secure_only("sips", [udp, tls]) == [tls]
    assert secure_only("sip", [udp, tls]) == [udp, tls]
    assert secure_only("sips", [udp]) == []
    asks = Contact("sips:1002@192.0.2.3", ("192.0.2.3", 5060), "UDP", 0.0, "c3", 1)
    assert secure_only("sips", [udp, asks]) == [asks]
    assert wants_tls("<sip:a@h;transport=TLS>") and wants_tls("sips:a@h")
    assert not wants_tls("sip:a@h;transport=tcp")


# -- two stacks over TLS on loopback ----------------------------------------------------


def _options(stack: SipStack, port: int) -> Request:
    msg = parse_message(
        (
            f"OPTIONS sip:127.0.0.1:{port};transport=tls SIP/2.0\r\n"
            f"Via: {stack.via_for('TLS', '127.0.0.1')}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:client@127.0.0.1>;tag=c1\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            "Call-ID: tls-round-trip@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


async def _server(tmp_path: Path, ca: TestCa) -> tuple[SipStack, int, list[RequestReceived]]:
    issued = ca.issue("localhost", ("127.0.0.1",))
    tls = TlsSettings(
        server=server_context(str(issued.certificate), str(issued.key)),
        default_client=client_context(verify=False),
    )
    server = SipStack(tls=tls)
    await server.listen([ListenSpec("TLS", "127.0.0.1", 0)])
    seen: list[RequestReceived] = []

    def answer(ev: RequestReceived) -> None:
        seen.append(ev)
        server.send_response(make_response(ev.request, 200, to_tag="s"))

    server.on_request = answer
    return server, server.local_address("TLS")[1], seen


async def test_request_and_response_over_one_tls_connection(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    server, port, seen = await _server(tmp_path, ca)
    peer = TlsPeer("localhost", client_context(ca_file=str(ca.path)))
    client = SipStack(
        tls=TlsSettings(None, client_context(verify=False), {("127.0.0.1", port): peer})
    )
    await client.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    got: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def first(response: Response) -> None:
        if not got.done():
            got.set_result(response)

    try:
        client.send_request(_options(client, port), ("127.0.0.1", port), "TLS", first)
        response = await asyncio.wait_for(got, 5)
        assert response.status == 200
        (ev,) = seen
        assert ev.transport == "TLS"
        assert str(ev.request.get("Via")).startswith("SIP/2.0/TLS ")
        assert client.contact_for("TLS", "127.0.0.1").endswith(";transport=tls>")
        # The server answered over the connection the request came on (RFC 3261 §18.2.2):
        # the client opened exactly one, and the server holds it by the client's address.
        assert server.flow_to("TLS", ev.source, "sip:c@192.0.2.1:9")[1] == ev.source
        # A phone that registered over UDP with a TLS contact is reached over TLS there.
        assert server.flow_to("UDP", ("192.0.2.1", 5060), "sips:c@192.0.2.1") == (
            "TLS",
            ("192.0.2.1", 5061),
        )
        assert client.flow_to("UDP", ("192.0.2.1", 5060), "sip:c@192.0.2.1;transport=tls")[0] == (
            "TLS"
        )
        assert server.flow_to("UDP", ("192.0.2.1", 5060), "sip:c@192.0.2.1") == (
            "UDP",
            ("192.0.2.1", 5060),
        )
    finally:
        await client.close()
        await server.close()


async def test_carrier_certificate_from_another_ca_fails_the_trunk(tmp_path: Path) -> None:
    ours, theirs = TestCa(tmp_path / "ours"), TestCa(tmp_path / "theirs", "Stranger CA")
    server, port, seen = await _server(tmp_path, theirs)
    context = client_context(ca_file=str(ours.path))
    client = SipStack(
        tls=TlsSettings(
            None, client_context(verify=False), {("127.0.0.1", port): TlsPeer("localhost", context)}
        )
    )
    await client.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    trunk = Trunk(
        name="carrier",
        host="127.0.0.1",
        port=port,
        transport="tls",
        username="sbtrunk",
        password="pw",
        registers=True,
        qualify=0,
    )
    driver = TrunkDriver(client, [trunk])
    driver.start()
    try:
        for _ in range(300):
            if driver.states()["carrier"].registration is RegistrationState.FAILED:
                break
            await asyncio.sleep(0.01)
        state = driver.states()["carrier"]
        assert state.registration is RegistrationState.FAILED  # at once, not after Timer F
        assert state.cause.startswith("certificate verify failed"), state.cause
        assert seen == []
    finally:
        await driver.stop()
        await client.close()
        await server.close()


def test_server_refuses_a_sips_invite_that_did_not_come_over_tls() -> None:
    server = SipServer(
        ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),)),
        {"1001": Extension("1001", "Alice", "pw"), "1002": Extension("1002", "Bob", "pw")},
        media=FakeMedia(),
    )
    replies: list[Response] = []
    server.stack.send_response = replies.append  # type: ignore[method-assign,assignment]
    req = parse_message(
        b"INVITE sips:1002@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKsips1\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:1001@127.0.0.1>;tag=a1\r\n"
        b"To: <sips:1002@127.0.0.1>\r\n"
        b"Call-ID: sips-1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:1001@192.0.2.9>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(req, Request)
    server.stack.on_request(RequestReceived(req, ("192.0.2.9", 5060), "UDP", key="k"))
    (reply,) = replies
    assert reply.status == 416  # before any challenge: no TLS hop, no sips call

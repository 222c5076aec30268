"""The trunk driver on a real SipStack over loopback, against a tiny asyncio registrar;
and the config → ``Trunk`` translation (``app.settings.trunks_from_config``)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import cast

from app.settings import trunks_from_config
from config import load_config
from pbx.digest import AuthOutcome, DigestAuthenticator
from pbx.message import Request, make_response, parse_message
from pbx.stack import ListenSpec, SipStack
from pbx.transaction import Timers
from pbx.trunk_driver import TrunkDriver
from pbx.trunks import Reachability, RegistrationState, Trunk


class Carrier(asyncio.DatagramProtocol):
    """Answers REGISTER with digest (MD5) and OPTIONS with 200; counts what it got."""

    def __init__(self, password: str = "trunkpw") -> None:
        self.password = password
        self.auth = DigestAuthenticator("carrier", b"c" * 32)
        self.registers: list[Request] = []
        self.options = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = parse_message(data)
        assert isinstance(req, Request) and self.transport is not None
        now = asyncio.get_running_loop().time()
        if req.method == "OPTIONS":
            self.options += 1
            resp = make_response(req, 200, to_tag="o")
        else:
            self.registers.append(req)
            value = req.get("Authorization")
            result = (
                self.auth.verify("REGISTER", value, now, lambda u, r: self.password)
                if value
                else None
            )
            if result is None or result.outcome is not AuthOutcome.OK:
                resp = make_response(req, 401, to_tag="r")
                resp.add("WWW-Authenticate", self.auth.challenge(now)[0])
            else:
                resp = make_response(req, 200, to_tag="r")
                resp.add("Contact", "<sip:someone@192.0.2.1>;expires=30")
                resp.add("Contact", f"{req.get('Contact')};expires=10")
        self.transport.sendto(resp.serialize(), addr)


async def _carrier(password: str = "trunkpw") -> tuple[Carrier, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Carrier(password), local_addr=("127.0.0.1", 0)
    )
    return proto, transport.get_extra_info("sockname")[1]


def _trunk(port: int, **kw: object) -> Trunk:
    base: dict[str, object] = {
        "name": "carrier",
        "host": "127.0.0.1",
        "port": port,
        "username": "sbtrunk",
        "password": "trunkpw",
        "registers": True,
        "retry_interval": 5,
        "qualify": 1,
    }
    base.update(kw)
    return Trunk(**base)  # type: ignore[arg-type]


async def _wait(pred: object, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred() and loop.time() < end:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_registers_qualifies_and_unregisters() -> None:
    carrier, port = await _carrier()
    stack = SipStack()
    await stack.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    driver = TrunkDriver(stack, [_trunk(port)])
    driver.start()
    try:
        await _wait(lambda: driver.states()["carrier"].registration is RegistrationState.REGISTERED)
        state = driver.states()["carrier"]
        assert state.registration is RegistrationState.REGISTERED
        assert state.status == 200
        await _wait(lambda: driver.states()["carrier"].reachability is Reachability.UP)
        state = driver.states()["carrier"]
        assert state.reachability is Reachability.UP and state.rtt is not None
        assert len(carrier.registers) == 2  # challenged once
    finally:
        await driver.stop()
        await stack.close()
    last = carrier.registers[-1]
    assert last.get("Expires") == "0" and last.get("Authorization")
    assert driver.states()["carrier"].registration is RegistrationState.UNREGISTERED
    assert carrier.transport is not None
    carrier.transport.close()


async def test_wrong_password_fails_once_per_retry() -> None:
    carrier, port = await _carrier(password="other")
    stack = SipStack()
    await stack.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    driver = TrunkDriver(stack, [_trunk(port, qualify=0)])
    driver.start()
    try:
        await _wait(lambda: driver.states()["carrier"].registration is RegistrationState.FAILED)
        await asyncio.sleep(0.5)
        state = driver.states()["carrier"]
        assert state.registration is RegistrationState.FAILED
        assert (state.status, state.cause) == (401, "credentials rejected")
        assert len(carrier.registers) == 2
    finally:
        await driver.stop()
        await stack.close()
    assert carrier.transport is not None
    carrier.transport.close()


async def test_nobody_there_goes_down() -> None:
    # Port 9 (discard): nothing answers; short timers make Timer F 64 * 0.01 s.
    stack = SipStack(timers=Timers(t1=0.01, t2=0.04))
    await stack.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    driver = TrunkDriver(stack, [_trunk(9, registers=False, qualify=1, qualify_failures=1)])
    driver.start()
    try:
        await _wait(lambda: driver.states()["carrier"].reachability is Reachability.DOWN, 5.0)
        state = driver.states()["carrier"]
        assert state.reachability is Reachability.DOWN and state.registration is None
    finally:
        await driver.stop()
        await stack.close()


def test_trunks_from_config(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            trunks:
              carrier:
                host: 127.0.0.1
                port: 5062
                username: sbtrunk
                password: trunkpw
                register: true
                expires: 120
                retry_interval: 5
                dids: ["+41441234567"]
                qualify: 0
              backup:
                host: sip.example.net
            """
        ),
        encoding="utf-8",
    )
    trunks = trunks_from_config(load_config(path))
    carrier = trunks["carrier"]
    assert carrier == Trunk(
        name="carrier",
        host="127.0.0.1",
        port=5062,
        username="sbtrunk",
        password="trunkpw",
        registers=True,
        expires=120,
        retry_interval=5,
        dids=("+41441234567",),
        qualify=0,
    )
    assert carrier.aor == "sip:sbtrunk@127.0.0.1"
    assert trunks["backup"].registers is False and trunks["backup"].registrar_uri == (
        "sip:sip.example.net"
    )


async def test_host_name_is_resolved_off_the_loop() -> None:
    carrier, port = await _carrier()
    stack = SipStack()
    await stack.listen([ListenSpec("UDP", "127.0.0.1", 0)])
    driver = TrunkDriver(stack, [_trunk(port, host="localhost", qualify=0)])
    driver.start()
    try:
        await _wait(lambda: driver.states()["carrier"].registration is RegistrationState.REGISTERED)
        assert driver.address_of("carrier") == ("127.0.0.1", port)
        assert str(carrier.registers[0].to.uri) == "sip:sbtrunk@localhost"
    finally:
        await driver.stop()
        await stack.close()
    assert carrier.transport is not None
    carrier.transport.close()

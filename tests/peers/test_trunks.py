"""Trunk registration against a real carrier: Kamailio (tests/peers/kamailio.py).

Switchboard's trunk ``carrier`` registers as ``sbtrunk`` with digest; Kamailio grants at most
10 s, so refreshes come every 5 s (refresh at min(85 %, interval − 5 s), pbx/trunks.py).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.kamailio import CarrierConfig, Kamailio
from tests.peers.switchboard import Switchboard, wait_for

RETRY = 5  # retry_interval in the trunk config (the schema's minimum)


def trunk_yaml(port: int, password: str = "trunkpw", username: str = "sbtrunk") -> str:
    return (
        "trunks:\n"
        "  carrier:\n"
        "    host: 127.0.0.1\n"
        f"    port: {port}\n"
        f"    username: {username}\n"
        f"    password: {password}\n"
        "    register: true\n"
        "    expires: 60\n"
        f"    retry_interval: {RETRY}\n"
        "    qualify: 2\n"
    )


@pytest.fixture
def carrier_factory(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Callable[..., Kamailio]]:
    started: list[Kamailio] = []

    def make(**kwargs: Any) -> Kamailio:
        cfg = CarrierConfig(port=free_port(), max_expires=10, **kwargs)
        k = Kamailio(tmp_path / f"kamailio{len(started)}", cfg)
        started.append(k)
        return k.start()

    yield make
    for k in started:
        k.stop()


def events(sb: Switchboard, name: str) -> list[dict[str, Any]]:
    return [e for e in sb.log_events() if e.get("event") == name]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_trunk_registers_with_digest_and_refreshes(
    carrier_factory: Callable[..., Kamailio],
    server_factory: Callable[..., Switchboard],
    algorithm: str,
) -> None:
    carrier = carrier_factory(algorithm=algorithm)
    sb = server_factory(extra_yaml=trunk_yaml(carrier.config.port))
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@127\.0\.0\.1", timeout=10)
    contacts = carrier.registered_contacts("sbtrunk")
    assert any(f"127.0.0.1:{sb.sip_port}" in c for c in contacts), contacts
    wait_for(lambda: events(sb, "trunk_registered"), 5, "trunk_registered in the log")
    [registered] = events(sb, "trunk_registered")
    assert registered["expires"] == 10  # the interval Kamailio granted, read from our binding
    # Refreshes every 5 s: at least two more bindings stored within ~11 s, no new challenge
    # needed (the nonce is reused with the next nonce-count).
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@", timeout=12, at_least=3)
    assert carrier.count(r"SBT AUTH FAILED") == 0
    # Only the first REGISTER went without credentials: refreshes answer the cached nonce.
    assert carrier.count(r"SBT REGISTER user=sbtrunk .*auth=0$") == 1
    wait_for(lambda: events(sb, "trunk_up"), 5, "trunk_up (OPTIONS qualify)")
    assert events(sb, "trunk_registration_failed") == []
    sb.stop()
    # Unregister on shutdown: Expires 0 reached the carrier, the binding is gone.
    carrier.wait_log(r"SBT REGISTER user=sbtrunk .*expires=0 ", timeout=5)
    wait_for(lambda: not carrier.registered_contacts("sbtrunk"), 5, "binding removed")


def test_wrong_password_fails_without_hammering(
    carrier_factory: Callable[..., Kamailio], server_factory: Callable[..., Switchboard]
) -> None:
    carrier = carrier_factory()
    started = time.monotonic()
    sb = server_factory(extra_yaml=trunk_yaml(carrier.config.port, password="wrong"))
    carrier.wait_log(r"SBT AUTH FAILED user=sbtrunk", timeout=10)
    wait_for(lambda: events(sb, "trunk_registration_failed"), 5, "failure logged")
    failed = events(sb, "trunk_registration_failed")[0]
    assert (failed["status"], failed["cause"], failed["state"]) == (
        401,
        "credentials rejected",
        "failed",
    )
    trunk = sb.api("GET", "/api/trunks/carrier").json()  # what `switchboard trunk status` shows
    assert (trunk["registration"], trunk["last_status"], trunk["cause"]) == (
        "failed",
        401,
        "credentials rejected",
    )
    assert sb.api("GET", "/api/trunks").json()["items"] == [trunk]
    assert sb.api("GET", "/api/trunks/nope").status_code == 404
    # Window of 2.5 retry intervals: attempts at 0, RETRY, 3*RETRY (doubling back-off),
    # each a REGISTER and one answer to the challenge: at most 4 in the window.
    time.sleep(max(0.0, 2.5 * RETRY - (time.monotonic() - started)))
    count = carrier.count(r"SBT REGISTER user=sbtrunk")
    assert 2 <= count <= 4, count
    assert carrier.count(r"SBT SAVED") == 0
    assert events(sb, "trunk_registered") == []


def test_forbidden_is_not_retried_soon(
    carrier_factory: Callable[..., Kamailio], server_factory: Callable[..., Switchboard]
) -> None:
    carrier = carrier_factory(forbidden_users=["sbtrunk"])
    sb = server_factory(extra_yaml=trunk_yaml(carrier.config.port))
    carrier.wait_log(r"SBT FORBIDDEN user=sbtrunk", timeout=10)
    wait_for(lambda: events(sb, "trunk_registration_failed"), 5, "failure logged")
    assert events(sb, "trunk_registration_failed")[0]["state"] == "forbidden"
    time.sleep(2 * RETRY)  # the longest back-off is 10 * RETRY
    assert carrier.count(r"SBT FORBIDDEN user=sbtrunk") == 1
    assert carrier.count(r"SBT REGISTER user=sbtrunk") == 2  # challenge, then credentials


def test_registration_survives_a_carrier_restart(
    carrier_factory: Callable[..., Kamailio], server_factory: Callable[..., Switchboard]
) -> None:
    carrier = carrier_factory()
    sb = server_factory(extra_yaml=trunk_yaml(carrier.config.port))
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@", timeout=10)
    carrier.stop()  # location table and nonce secret are gone with it
    time.sleep(2)
    carrier.start()
    restarted = time.monotonic()
    assert carrier.registered_contacts("sbtrunk") == []
    # Within the retry interval (plus a retransmission gap, T2 = 4 s): bound again.
    wait_for(
        lambda: carrier.registered_contacts("sbtrunk"), RETRY + 5, "re-registration after restart"
    )
    took = time.monotonic() - restarted
    assert took <= RETRY + 5
    contacts = carrier.registered_contacts("sbtrunk")
    assert any(f"127.0.0.1:{sb.sip_port}" in c for c in contacts), contacts


def _invite_through_carrier(carrier: Kamailio, did: str) -> int | None:
    """Send an INVITE for ``did`` to the carrier; the first final status that comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"INVITE sip:{did}@{carrier.address} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:5550001@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{did}@127.0.0.1>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:5550001@127.0.0.1:{port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", carrier.config.port))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = s.recv(65535)
            except TimeoutError:
                return None
            status = int(data.split(b" ", 2)[1])
            if status >= 200:
                return status
    return None


def test_carrier_relays_a_did_to_the_registered_trunk(
    carrier_factory: Callable[..., Kamailio], server_factory: Callable[..., Switchboard]
) -> None:
    """The carrier template's DID route (for the inbound-call tests): 480 while the trunk is
    not registered; once it is, the INVITE reaches Switchboard at its registered contact
    (which, without inbound trunk routing yet, challenges it: 407 relayed back)."""
    carrier = carrier_factory()
    assert _invite_through_carrier(carrier, "4100") == 480
    server_factory(extra_yaml=trunk_yaml(carrier.config.port))
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@", timeout=10)
    status = _invite_through_carrier(carrier, "4100")
    relayed = carrier.lines(r"SBT RELAY ruri=")
    assert relayed and "sip:4100@127.0.0.1:" in relayed[-1], relayed
    assert status is not None and status != 480

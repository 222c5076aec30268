"""SIP over TLS (RFC 3261 §26) with peers nobody on the team wrote.

* A PJSUA2 phone registers to Switchboard over TLS (Switchboard's self-signed certificate of
  a first start; the phone does not verify it, as a desk phone told to trust it) and calls
  a phone registered over UDP, then is called back over its TLS connection: audio both ways
  by FFT, the binding stored with transport TLS.
* Kamailio as a carrier listening on TLS (``kamailio-tls-modules``) with a certificate from
  a CA this test makes: the trunk, given that CA as ``ca_file``, verifies the certificate
  and registers over TLS; with a certificate from another CA it refuses the connection,
  says why in one warning line, and nothing reaches the carrier.
* Calls through that trunk: out to a phone registered at the carrier, and a DID the carrier
  delivers over its own TLS connection to our Contact (trusted by ``acl``: it comes from
  another port than the carrier's), audio checked by FFT.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.certs import TestCa
from tests.peers.audio import dominant_frequency
from tests.peers.calls import answer_call, registered
from tests.peers.kamailio import CarrierConfig, Kamailio
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers


def events(sb: Switchboard, name: str) -> list[dict[str, Any]]:
    return [e for e in sb.log_events() if e.get("event") == name]


def test_phone_registers_and_calls_over_tls(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    free_port: Callable[[], int],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    sb = server_factory(tls_port=free_port())
    # No certificate configured: a self-signed pair was made in the config folder.
    (made,) = events(sb, "tls_certificate_generated")
    key = sb.workdir / "tls" / "switchboard.key"
    assert made["key"] == str(key) and stat.S_IMODE(key.stat().st_mode) == 0o600
    a = phone_factory("ext1001", user="1001")
    ev = a.register(f"127.0.0.1:{sb.tls_port}", password=sb.password("1001"), transport="tls")
    assert ev is not None and ev["code"] == 200, ev
    b = registered(phone_factory, sb, "1002")  # over UDP
    (binding,) = wait_for(lambda: sb.bindings("1001"), 5, "1001's binding")
    assert binding["transport"] == "TLS", binding
    assert "transport=tls" in binding["contact_uri"].lower(), binding

    # The TLS phone calls the UDP phone: audio both ways.
    cid, _ = answer_call(a, b, sb, "1002")
    a.play(tone_1k)
    b.play(tone_2k)
    a.record(tmp_path / "a_hears.wav")
    b.record(tmp_path / "b_hears.wav")
    time.sleep(2.0)
    a.stop_record()
    b.stop_record()
    assert abs(dominant_frequency(tmp_path / "b_hears.wav") - 1000) < 20
    assert abs(dominant_frequency(tmp_path / "a_hears.wav") - 2000) < 20
    a.hangup(call=cid)
    assert b.wait_disconnected(timeout=10)

    # The UDP phone calls the TLS phone: reached over the connection it registered on.
    cid = b.call(sb.uri("1001"))
    inc = a.wait_incoming(timeout=10)
    a.answer(call=inc["call"])
    b.wait_call_state("CONFIRMED", call=cid, timeout=10)
    a.wait_media_active(call=inc["call"], timeout=10)
    b.play(tone_2k)
    a.record(tmp_path / "a_hears_2.wav", call=inc["call"])
    time.sleep(1.6)
    a.stop_record(call=inc["call"])
    assert abs(dominant_frequency(tmp_path / "a_hears_2.wav") - 2000) < 20
    b.hangup(call=cid)
    assert a.wait_disconnected(timeout=10)
    records = sb.wait_call_records(2)
    assert [(r["caller"], r["callee"], r["disposition"]) for r in records] == [
        ("1001", "1002", "ANSWERED"),
        ("1002", "1001", "ANSWERED"),
    ]
    # Only the TLS listener saw the TLS phone's requests: its source is a TLS flow.
    assert not events(sb, "tls_connect_failed")


# -- a carrier over TLS ------------------------------------------------------------------

RETRY = 5


def tls_trunk_yaml(port: int, ca_file: Path) -> str:
    return (
        "trunks:\n"
        "  carrier:\n"
        "    host: 127.0.0.1\n"
        f"    port: {port}\n"
        "    transport: tls\n"
        f'    ca_file: "{ca_file}"\n'
        "    username: sbtrunk\n"
        "    password: trunkpw\n"
        "    register: true\n"
        "    expires: 60\n"
        f"    retry_interval: {RETRY}\n"
        "    qualify: 0\n"
    )


@pytest.fixture
def tls_carrier(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Callable[..., Kamailio]]:
    started: list[Kamailio] = []

    def make(ca: TestCa) -> Kamailio:
        issued = ca.issue("127.0.0.1", ("localhost",))
        cfg = CarrierConfig(
            port=free_port(),
            max_expires=10,
            tls_port=free_port(),
            tls_certificate=issued.certificate,
            tls_key=issued.key,
        )
        k = Kamailio(tmp_path / f"kamailio{len(started)}", cfg)
        started.append(k)
        return k.start()

    yield make
    for k in started:
        k.stop()


def test_trunk_registers_over_tls_verifying_the_carrier(
    tls_carrier: Callable[..., Kamailio],
    server_factory: Callable[..., Switchboard],
    free_port: Callable[[], int],
    tmp_path: Path,
) -> None:
    ca = TestCa(tmp_path / "ca")
    carrier = tls_carrier(ca)
    assert carrier.config.tls_port is not None
    sb = server_factory(
        tls_port=free_port(), extra_yaml=tls_trunk_yaml(carrier.config.tls_port, ca.path)
    )
    (saved, *_) = carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@127\.0\.0\.1", timeout=15)
    assert saved.endswith("proto=tls"), saved
    assert f"127.0.0.1:{sb.tls_port};transport=tls" in saved, saved
    wait_for(lambda: events(sb, "trunk_registered"), 5, "trunk_registered in the log")
    # Every REGISTER came over TLS (the first was challenged, the second carried digest).
    assert carrier.count(r"SBT REGISTER user=sbtrunk") >= 2
    assert not events(sb, "trunk_registration_failed")


def test_trunk_refuses_a_carrier_certificate_from_another_ca(
    tls_carrier: Callable[..., Kamailio],
    server_factory: Callable[..., Switchboard],
    tmp_path: Path,
) -> None:
    ours, stranger = TestCa(tmp_path / "ours"), TestCa(tmp_path / "stranger", "Stranger CA")
    carrier = tls_carrier(stranger)
    assert carrier.config.tls_port is not None
    sb = server_factory(extra_yaml=tls_trunk_yaml(carrier.config.tls_port, ours.path))
    failed = wait_for(
        lambda: events(sb, "trunk_registration_failed"), 10, "trunk_registration_failed"
    )
    cause = failed[0]["cause"]
    assert cause.startswith("certificate verify failed"), failed[0]
    assert failed[0]["trunk"] == "carrier" and failed[0]["level"] == "warning"
    time.sleep(1.0)
    assert carrier.count(r"SBT REGISTER") == 0  # not one request over the untrusted session
    assert not events(sb, "trunk_registered")


@pytest.mark.timeout(120)
def test_outbound_call_through_the_tls_trunk(
    tls_carrier: Callable[..., Kamailio],
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    free_port: Callable[[], int],
    tmp_path: Path,
    tone_1k: Path,
) -> None:
    ca = TestCa(tmp_path / "ca")
    carrier = tls_carrier(ca)
    assert carrier.config.tls_port is not None
    dialplan = 'dialplan:\n  outbound:\n    - {pattern: "_9.", strip: 1, trunks: [carrier]}\n'
    sb = server_factory(
        tls_port=free_port(),
        extra_yaml=tls_trunk_yaml(carrier.config.tls_port, ca.path) + dialplan,
    )
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@127\.0\.0\.1.* proto=tls", timeout=15)
    pstn = phone_factory("pstn", user="5551234", auto_answer=200)
    ev = pstn.register(carrier.address, password=carrier.config.pstn_password)
    assert ev is not None and ev["code"] == 200, ev
    caller = registered(phone_factory, sb, "1001")
    cid = caller.call(sb.uri("95551234"))
    caller.wait_call_state("CONFIRMED", call=cid, timeout=20)
    caller.wait_media_active(call=cid, timeout=10)
    inc = pstn.wait_call_state("CONFIRMED", timeout=10)
    caller.play(tone_1k, call=cid)
    heard = tmp_path / "pstn_hears.wav"
    pstn.record(heard, call=inc["call"])
    time.sleep(2.0)
    pstn.stop_record(call=inc["call"])
    assert abs(dominant_frequency(heard) - 1000) < 20
    # The INVITE reached the carrier over TLS (its relay line), and the dialog ends cleanly.
    assert carrier.count(r"SBT RELAY ruri=sip:5551234@") == 1
    caller.hangup(call=cid)
    assert pstn.wait_disconnected(timeout=10)
    (rec,) = sb.wait_call_records(1)
    assert (rec["direction"], rec["trunk"], rec["disposition"]) == (
        "outbound",
        "carrier",
        "ANSWERED",
    )


@pytest.mark.timeout(120)
def test_inbound_did_over_the_tls_trunk(
    tls_carrier: Callable[..., Kamailio],
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    free_port: Callable[[], int],
    tmp_path: Path,
    tone_1k: Path,
) -> None:
    ca = TestCa(tmp_path / "ca")
    carrier = tls_carrier(ca)
    assert carrier.config.tls_port is not None
    dialplan = (
        "dialplan:\n  inbound:\n"
        '    - {did: "4100", destination: {kind: extension, target: "1002"}}\n'
    )
    # Kamailio opens its own TLS connection to our Contact for the call (from a port of its
    # own, not the one it listens on): the carrier's address is trusted through `acl`.
    sb = server_factory(
        tls_port=free_port(),
        extra_yaml=tls_trunk_yaml(carrier.config.tls_port, ca.path)
        + "    acl: [127.0.0.1/32]\n"
        + dialplan,
    )
    carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@127\.0\.0\.1.* proto=tls", timeout=15)
    desk = phone_factory("ext1002", user="1002", auto_answer=200)
    assert desk.register(sb.address, password=sb.password("1002"))["code"] == 200
    pstn = phone_factory("pstn", user="5551234")
    ev = pstn.register(carrier.address, password=carrier.config.pstn_password)
    assert ev is not None and ev["code"] == 200, ev
    cid = pstn.call(f"sip:4100@{carrier.address}")
    pstn.wait_call_state("CONFIRMED", call=cid, timeout=20)
    pstn.wait_media_active(call=cid, timeout=10)
    inc = desk.wait_call_state("CONFIRMED", timeout=10)
    pstn.play(tone_1k, call=cid)
    heard = tmp_path / "desk_hears.wav"
    desk.record(heard, call=inc["call"])
    time.sleep(2.0)
    desk.stop_record(call=inc["call"])
    assert abs(dominant_frequency(heard) - 1000) < 20
    pstn.hangup(call=cid)
    assert desk.wait_disconnected(timeout=10)
    (rec,) = sb.wait_call_records(1)
    assert (rec["direction"], rec["trunk"], rec["callee"]) == ("inbound", "carrier", "1002")

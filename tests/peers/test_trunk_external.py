"""Everything external goes through the trunks (issue 16), with real peers on loopback.

Theory of operation
-------------------
The carrier is a SIPp UAS that answers and echoes RTP (``-rtp_echo``); the callers are
PJSUA2 phones, who hear their own 1 kHz tone back through Switchboard's relay and the
carrier (FFT), so the outside leg is really up, not only signalled.

* Forward to a mobile: extension 1002 dials ``*72`` + ``9<mobile>`` (its class of service
  allows the number); 1001 calls 1002 and the call leaves through the trunk with 1002's
  caller ID (a DID the trunk owns) in P-Asserted-Identity, seen in SIPp's message trace.
* Queue overflow to a number: a caller reaches a queue nobody staffs; its overflow
  ``number:9<mobile>`` dials out through the trunk with the system's class of service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.audio import describe, dominant_frequency
from tests.peers.calls import hears_own_tone_back
from tests.peers.phones import Phone
from tests.peers.sipp import SippProcess, scenario
from tests.peers.switchboard import Switchboard

pytestmark = pytest.mark.peers

ServerFactory = Callable[..., Switchboard]
EXTENSIONS = {
    "1001": {"name": "Caller", "password": "pw-1001"},
    "1002": {"name": "Desk", "password": "pw-1002", "caller_id": "+862088880002"},
}


def _yaml(carrier: int) -> str:
    return (
        "trunks:\n"
        f"  carrier: {{host: 127.0.0.1, port: {carrier}, qualify: 0,"
        ' dids: ["+862088880000", "+862088880002"], caller_id: "+862088880000"}\n'
        "queues:\n"
        '  support: {join_empty: false, overflow: "number:90612345678"}\n'
        "dialplan:\n"
        "  inbound:\n"
        '    - {did: "4100", destination: {kind: queue, target: support}}\n'
        "  outbound:\n"
        '    - {pattern: "_9.", strip: 1, trunk: carrier}\n'
    )


def _echo_carrier(workdir: Path, port: int, media: int, messages: Path) -> SippProcess:
    return SippProcess(
        ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(port),
         "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo",
         "-trace_msg", "-message_file", str(messages)],
        workdir=workdir, timeout=60, name="carrier",
    )  # fmt: skip


def _invite_to_carrier(messages: Path) -> str:
    text = messages.read_text(errors="replace")
    match = re.search(r"INVITE sip:[^\n]*\n(?:[^\n]+\n)*", text)
    assert match, text[-2000:]
    return match.group(0)


@pytest.mark.timeout(90)
def test_a_phone_forwarded_to_a_mobile_rings_it_through_the_trunk(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
    tone_1k: Path,
    tmp_path: Path,
) -> None:
    carrier_port, media = free_port(), free_port()
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_yaml(carrier_port))
    messages = sipp_workdir / "forward_messages.log"
    with _echo_carrier(sipp_workdir, carrier_port, media, messages) as carrier:
        time.sleep(0.3)
        desk = phone_factory("ext1002", user="1002")
        assert desk.register(sb.address, password=sb.password("1002"))["code"] == 200
        cid = desk.call(sb.uri("*7290612345678"))  # forward everything to the mobile
        assert desk.wait_disconnected(call=cid, timeout=10)["code"] == 200
        caller = phone_factory("ext1001", user="1001")
        caller.set_codecs(["PCMU"])
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        heard = tmp_path / "echo.wav"
        hears_own_tone_back(caller, caller.call(sb.uri("1002")), tone_1k, heard)
        assert carrier.wait(15).successful == 1
    assert abs(dominant_frequency(heard) - 1000) < 20, describe(heard)
    invite = _invite_to_carrier(messages)
    assert invite.startswith(f"INVITE sip:0612345678@127.0.0.1:{carrier_port}")
    assert re.search(r"P-Asserted-Identity: <sip:\+862088880002@", invite), invite
    # The *72 call is recorded too; the forwarded call is the one 1001 placed.
    (rec,) = [r for r in sb.wait_call_records(2) if r["caller"] == "1001"]
    assert (rec["dialled"], rec["disposition"]) == ("1002", "ANSWERED")
    assert (rec["trunk"], rec["caller_id_sent"]) == ("carrier", "+862088880002")


@pytest.mark.timeout(90)
def test_a_queue_overflows_to_a_mobile_through_the_trunk(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
    tone_1k: Path,
    tmp_path: Path,
) -> None:
    carrier_port, media = free_port(), free_port()
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_yaml(carrier_port))
    messages = sipp_workdir / "overflow_messages.log"
    with _echo_carrier(sipp_workdir, carrier_port, media, messages) as carrier:
        time.sleep(0.3)
        caller = phone_factory("ext1001", user="1001")
        caller.set_codecs(["PCMU"])
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        heard = tmp_path / "echo.wav"
        hears_own_tone_back(caller, caller.call(sb.uri("4100")), tone_1k, heard)
        assert carrier.wait(15).successful == 1
    assert abs(dominant_frequency(heard) - 1000) < 20, describe(heard)
    invite = _invite_to_carrier(messages)
    assert invite.startswith(f"INVITE sip:0612345678@127.0.0.1:{carrier_port}")
    # Switchboard's own call: the trunk's caller ID.
    assert re.search(r"P-Asserted-Identity: <sip:\+862088880000@", invite), invite
    (rec,) = sb.wait_call_records(1)
    # One record: the caller's call, answered by Switchboard for the queue, then connected
    # to the mobile through the trunk (docs/records.md).
    assert (rec["dialled"], rec["direction"], rec["disposition"]) == ("4100", "inbound", "ANSWERED")
    assert (rec["trunk"], rec["caller_id_sent"]) == ("carrier", "+862088880000")

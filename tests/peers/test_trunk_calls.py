"""Calls through trunks with real peers (issue 16): SIPp plays the carriers.

Theory of operation
-------------------
* Outbound failover: extension 1001 (a PJSUA2 phone) dials ``9`` + a number; the rule's
  first trunk is a SIPp UAS answering 503, the second a SIPp UAS that answers and echoes RTP.
  The call connects on the second, the phone hears its own tone back through Switchboard's
  relay (FFT), and the record names the trunk, the failed attempt and direction outbound.
  The same with 486 from the first trunk ends the call busy: the second never sees it.
* Inbound from an IP-authenticated trunk: a SIPp UAC sending from the trunk's host *and
  port* calls DID 4100, routed to extension 1002 (PJSUA2, auto-answer), which hears the
  UAC's tone — with an SDP offer in the INVITE, and with a late offer (no SDP: Switchboard
  offers in the 200, SIPp answers in the ACK). The same INVITE from another port of the
  same address is challenged (407) and rings nobody.
* A carrier that never answers (a SIPp UAS that takes the INVITE and says nothing, not even
  100) is left after the trunk's ``invite_timeout``: the call connects on the second trunk
  long before Timer B, and the record reads ``first:408``.
* A carrier that challenges our BYE (407): Switchboard sends it again with the trunk's
  credentials (the SIPp UAS fails the call when Proxy-Authorization is missing).
* DTMF to a carrier: the caller sends digits by RFC 4733 and by SIP INFO; the carrier (a
  PJSUA2 phone as the trunk's far end) receives every digit as RFC 4733 and no INFO.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.audio import describe, dominant_frequency
from tests.peers.calls import hears_own_tone_back
from tests.peers.phones import Phone
from tests.peers.sipp import SippProcess, prepare_tone_pcap, run_sipp, scenario
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

ServerFactory = Callable[..., Switchboard]
EXTENSIONS = {
    "1001": {"name": "Caller", "password": "pw-1001"},
    "1002": {"name": "Desk", "password": "pw-1002"},
}


def _trunk_yaml(first: int, second: int, first_extra: str = "") -> str:
    return (
        "trunks:\n"
        f"  first: {{host: 127.0.0.1, port: {first}, qualify: 0{first_extra}}}\n"
        f"  second: {{host: 127.0.0.1, port: {second}, qualify: 0}}\n"
        "dialplan:\n"
        "  inbound:\n"
        '    - {did: "4100", destination: {kind: extension, target: "1002"}}\n'
        "  outbound:\n"
        '    - {pattern: "_9.", strip: 1, trunks: [first, second]}\n'
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("first_carrier", "attempts"),
    [("uas_503", "first:503"), ("uas_silent", "first:408")],
    ids=["503", "never_answers"],
)
def test_outbound_call_fails_over_to_the_next_trunk(
    first_carrier: str,
    attempts: str,
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
    tone_1k: Path,
    tmp_path: Path,
) -> None:
    """The first trunk answers 503, or nothing at all (its ``invite_timeout``, 2 s here,
    not Timer B's 32 s, gives up on it): the call completes on the second."""
    first, second, media = free_port(), free_port(), free_port()
    sb = server_factory(
        extensions=EXTENSIONS, extra_yaml=_trunk_yaml(first, second, ", invite_timeout: 2")
    )
    with (
        SippProcess(
            ["-sf", str(scenario(first_carrier)),
             "-i", "127.0.0.1", "-p", str(first)],
            workdir=sipp_workdir, timeout=60, name=f"carrier_{first_carrier}",
        ) as failing,
        SippProcess(
            ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(second),
             "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo"],
            workdir=sipp_workdir, timeout=60, name="carrier_ok",
        ) as answering,
    ):  # fmt: skip
        time.sleep(0.3)
        caller = phone_factory("ext1001", user="1001")
        caller.set_codecs(["PCMU"])
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        dialled = time.monotonic()
        cid = caller.call(sb.uri("95551234"))
        caller.wait_call_state("CONFIRMED", call=cid, timeout=20)
        assert time.monotonic() - dialled < 10
        heard = hears_own_tone_back(caller, cid, tone_1k, tmp_path / "echo.wav", confirmed=True)
        assert answering.wait(15).successful == 1
        assert failing.wait(20).successful == 1  # it did get the INVITE
    assert abs(dominant_frequency(heard) - 1000) < 20, describe(heard)
    (rec,) = sb.wait_call_records(1)
    assert (rec["caller"], rec["callee"], rec["dialled"]) == ("1001", "5551234", "95551234")
    assert (rec["direction"], rec["disposition"]) == ("outbound", "ANSWERED")
    assert (rec["trunk"], rec["trunk_attempts"]) == ("second", attempts)
    silences = [e["trunk"] for e in sb.log_events() if e.get("event") == "trunk_no_response"]
    assert silences == (["first"] if first_carrier == "uas_silent" else [])


@pytest.mark.timeout(60)
def test_a_carrier_that_challenges_our_bye_gets_the_trunk_credentials(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
) -> None:
    first, second, media = free_port(), free_port(), free_port()
    credentials = ", username: sbtrunk, password: trunkpw"
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_trunk_yaml(first, second, credentials))
    with SippProcess(
        ["-sf", str(scenario("uas_challenge_bye")), "-i", "127.0.0.1", "-p", str(first),
         "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo"],
        workdir=sipp_workdir, timeout=40, name="carrier_bye_auth",
    ) as carrier:  # fmt: skip
        time.sleep(0.3)
        caller = phone_factory("ext1001", user="1001")
        caller.set_codecs(["PCMU"])
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        cid = caller.call(sb.uri("95551234"))
        caller.wait_call_state("CONFIRMED", call=cid, timeout=15)
        time.sleep(3)
        caller.hangup(cid)
        caller.wait_disconnected(call=cid, timeout=10)
        result = carrier.wait(20)
    assert result.successful == 1 and result.failed == 0, result.summary()
    (rec,) = sb.wait_call_records(1)
    assert (rec["trunk"], rec["disposition"], rec["hangup_side"]) == (
        "first",
        "ANSWERED",
        "caller",
    )
    answered = [e for e in sb.log_events() if e.get("event") == "in_dialog_challenge_answered"]
    assert [(e["method"], e["status"]) for e in answered] == [("BYE", 407)]


@pytest.mark.timeout(90)
def test_info_digits_reach_the_carrier_as_rfc4733(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    free_port: Callable[[], int],
) -> None:
    """The carrier here is a PJSUA2 phone answering at the trunk's address: it reports how
    each digit arrived (RFC 4733 in RTP, or SIP INFO)."""
    pstn = phone_factory("pstn", user="5550001", auto_answer=200)
    pstn.set_codecs(["PCMU"])
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_trunk_yaml(pstn.port, free_port()))
    caller = phone_factory("ext1001", user="1001")
    caller.set_codecs(["PCMU"])
    assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
    cid = caller.call(sb.uri("95550001"))
    incoming = pstn.wait_incoming(timeout=15)
    caller.wait_call_state("CONFIRMED", call=cid, timeout=15)
    caller.wait_media_active(call=cid, timeout=10)
    pstn.wait_media_active(call=incoming["call"], timeout=10)
    caller.send_dtmf("12", call=cid, method="rfc4733")
    assert pstn.wait_dtmf(2, timeout=10) == "12"
    caller.send_dtmf("5#", call=cid, method="info")
    assert pstn.wait_dtmf(4, timeout=10) == "125#"
    time.sleep(0.5)  # a late INFO would show here
    digits = pstn.events(event="dtmf")
    assert [(e["digit"], e["method"]) for e in digits] == [
        ("1", "rfc4733"),
        ("2", "rfc4733"),
        ("5", "rfc4733"),
        ("#", "rfc4733"),
    ]
    caller.hangup(cid)
    pstn.wait_disconnected(call=incoming["call"], timeout=10)
    (rec,) = sb.wait_call_records(1)
    assert (rec["trunk"], rec["disposition"]) == ("first", "ANSWERED")


@pytest.mark.timeout(60)
def test_a_busy_callee_on_the_first_trunk_does_not_fail_over(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
) -> None:
    first, second = free_port(), free_port()
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_trunk_yaml(first, second))
    with SippProcess(
        ["-sf", str(scenario("uas_486")),
         "-i", "127.0.0.1", "-p", str(first)],
        workdir=sipp_workdir, timeout=40, name="busy",
    ) as busy:  # fmt: skip
        time.sleep(0.3)
        caller = phone_factory("ext1001", user="1001")
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        cid = caller.call(sb.uri("95551234"))
        assert caller.wait_disconnected(call=cid, timeout=15)["code"] == 486
        assert busy.wait(10).successful == 1
    (rec,) = sb.wait_call_records(1)
    assert (rec["disposition"], rec["trunk"], rec["trunk_attempts"]) == ("BUSY", "first", None)
    attempts = [e for e in sb.log_events() if e.get("event") == "trunk_attempt"]
    assert [e["trunk"] for e in attempts] == ["first"]  # second was never tried


@pytest.mark.timeout(90)
@pytest.mark.parametrize("uac_scenario", ["uac_pcap", "uac_late_offer"])
def test_an_ip_trunk_delivers_a_did_and_another_port_is_challenged(
    uac_scenario: str,
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
    tmp_path: Path,
) -> None:
    carrier, other, unused = free_port(), free_port(), free_port()
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_trunk_yaml(carrier, unused))
    desk = phone_factory("ext1002", user="1002", auto_answer=200)
    desk.set_codecs(["PCMU"])
    assert desk.register(sb.address, password=sb.password("1002"))["code"] == 200
    prepare_tone_pcap(sipp_workdir)
    heard = tmp_path / "desk.wav"

    def record_when_answered() -> bool:
        calls = desk.events(event="call_state")
        confirmed = [e for e in calls if e.get("state") == "CONFIRMED"]
        if confirmed:
            desk.record(heard, call=confirmed[0]["call"])
        return bool(confirmed)

    with SippProcess(
        ["-sf", str(scenario(uac_scenario)), "-s", "4100", "-i", "127.0.0.1",
         "-p", str(carrier), "-mi", "127.0.0.1", "-mp", str(free_port()), "-d", "4000"],
        workdir=sipp_workdir, target=sb.address, timeout=40, name="carrier_uac",
    ) as uac:  # fmt: skip
        wait_for(record_when_answered, 15, "the desk phone answering the DID")
        result = uac.wait(30)
    assert result.successful == 1 and result.failed == 0, result.summary()
    desk.stop_record()
    assert abs(dominant_frequency(heard) - 1000) < 20, describe(heard)
    (rec,) = sb.wait_call_records(1)
    assert (rec["callee"], rec["dialled"], rec["direction"]) == ("1002", "4100", "inbound")
    assert rec["trunk"] == "first"
    assert any(
        e.get("event") == "trunk_call" and e.get("trunk") == "first" for e in sb.log_events()
    )

    # The same call from another port of the same address: not the trunk, so challenged.
    refused = run_sipp(
        ["-sf", str(scenario(uac_scenario)), "-s", "4100", "-i", "127.0.0.1",
         "-p", str(other), "-mi", "127.0.0.1", "-mp", str(free_port())],
        timeout=20, workdir=sipp_workdir, target=sb.address, name="impostor",
        recv_timeout="5s",
    )  # fmt: skip
    assert refused.successful == 0
    assert "407" in (sipp_workdir / "impostor_errors.log").read_text(errors="replace")
    assert len(desk.events(event="incoming_call")) == 1  # the desk rang once, not twice


@pytest.mark.timeout(60)
def test_an_international_number_from_a_national_phone_reaches_no_trunk(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    sipp_workdir: Path,
    free_port: Callable[[], int],
) -> None:
    first, second = free_port(), free_port()
    sb = server_factory(extensions=EXTENSIONS, extra_yaml=_trunk_yaml(first, second))
    with SippProcess(
        ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(first),
         "-trace_msg", "-message_file", str(sipp_workdir / "carrier_messages.log")],
        workdir=sipp_workdir, timeout=40, name="carrier",
    ) as carrier:  # fmt: skip
        time.sleep(0.3)
        phone = phone_factory("ext1002", user="1002")  # class_of_service: national (default)
        assert phone.register(sb.address, password=sb.password("1002"))["code"] == 200
        cid = phone.call(sb.uri("90044207946000"))
        assert phone.wait_disconnected(call=cid, timeout=10)["code"] == 403
        time.sleep(0.5)
        stopped = carrier.stop()
    assert stopped.successful == 0
    log = sipp_workdir / "carrier_messages.log"
    assert not log.exists() or "INVITE" not in log.read_text(errors="replace")
    (rec,) = sb.wait_call_records(1)
    assert (rec["caller"], rec["hangup_cause"], rec["sip_status"]) == (
        "1002",
        "class_of_service",
        403,
    )
    refused = [e for e in sb.log_events() if e.get("event") == "outbound_refused"]
    assert [(e["kind"], e["cause"]) for e in refused] == [("international", "class_of_service")]


@pytest.mark.timeout(120)
def test_kamailio_carrier_pstn_phone_calls_a_did_and_an_extension_calls_out(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    free_port: Callable[[], int],
    tone_1k: Path,
    tone_2k: Path,
    tmp_path: Path,
) -> None:
    """The carrier of issue 16: Kamailio registers Switchboard's trunk account and the PSTN
    phones. A PSTN phone dials DID 4100 and talks with extension 1002 (each hears the other's
    tone); 1001 dials 9 + the PSTN number, the PSTN phone rings with the trunk's caller ID
    (a DID it owns), answers and hangs up."""
    from tests.peers.kamailio import CarrierConfig, Kamailio

    carrier = Kamailio(tmp_path / "kamailio", CarrierConfig(port=free_port(), max_expires=60))
    carrier.start()
    try:
        port = carrier.config.port
        sb = server_factory(
            extensions=EXTENSIONS,
            extra_yaml=(
                "trunks:\n"
                "  carrier:\n"
                f"    {{host: 127.0.0.1, port: {port}, username: sbtrunk, password: trunkpw,\n"
                '     register: true, expires: 60, dids: ["4100"], caller_id: "4100"}\n'
                "dialplan:\n"
                "  inbound:\n"
                '    - {did: "4100", destination: {kind: extension, target: "1002"}}\n'
                "  outbound:\n"
                '    - {pattern: "_9.", strip: 1, trunks: [carrier]}\n'
            ),
        )
        carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@", timeout=15)
        pstn = phone_factory("pstn", user="5550001", auto_answer=200)
        pstn.set_codecs(["PCMU"])
        ev = pstn.register(f"127.0.0.1:{port}", password="pstnpw", use_proxy=True)
        assert ev is not None and ev["code"] == 200, ev
        desk = phone_factory("ext1002", user="1002", auto_answer=200)
        desk.set_codecs(["PCMU"])
        assert desk.register(sb.address, password=sb.password("1002"))["code"] == 200

        # In: PSTN -> carrier -> trunk -> DID 4100 -> extension 1002, audio both ways.
        cid = pstn.call(f"sip:4100@127.0.0.1:{port}")
        pstn.wait_call_state("CONFIRMED", call=cid, timeout=15)
        ring = desk.wait_incoming(timeout=10)
        desk.wait_call_state("CONFIRMED", call=ring["call"], timeout=10)
        pstn.wait_media_active(call=cid, timeout=10)
        desk.wait_media_active(call=ring["call"], timeout=10)
        pstn.play(tone_1k, call=cid)
        desk.play(tone_2k, call=ring["call"])
        at_pstn, at_desk = tmp_path / "pstn.wav", tmp_path / "desk.wav"
        pstn.record(at_pstn, call=cid)
        desk.record(at_desk, call=ring["call"])
        time.sleep(2.5)
        pstn.stop_record(call=cid)
        desk.stop_record(call=ring["call"])
        pstn.hangup(cid)  # BYE from the PSTN side
        desk.wait_disconnected(call=ring["call"], timeout=10)
        assert abs(dominant_frequency(at_desk) - 1000) < 20, describe(at_desk)
        assert abs(dominant_frequency(at_pstn) - 2000) < 40, describe(at_pstn)

        # Out: 1001 dials 9 + the PSTN number; the PSTN phone sees the trunk's DID.
        caller = phone_factory("ext1001", user="1001")
        assert caller.register(sb.address, password=sb.password("1001"))["code"] == 200
        out = caller.call(sb.uri("95550001"))
        incoming = pstn.wait_incoming(timeout=15)
        assert "sip:4100@" in incoming["remote_uri"], incoming
        caller.wait_call_state("CONFIRMED", call=out, timeout=15)
        pstn.hangup(incoming["call"])  # BYE from the PSTN side again, through the carrier
        caller.wait_disconnected(call=out, timeout=10)

        records = sb.wait_call_records(2)
        inbound, outbound = records[0], records[1]
        assert (inbound["direction"], inbound["dialled"], inbound["callee"]) == (
            "inbound",
            "4100",
            "1002",
        )
        assert (inbound["trunk"], inbound["caller"]) == ("carrier", "5550001")
        assert (outbound["direction"], outbound["trunk"], outbound["callee"]) == (
            "outbound",
            "carrier",
            "5550001",
        )
        assert outbound["disposition"] == "ANSWERED"
    finally:
        carrier.stop()

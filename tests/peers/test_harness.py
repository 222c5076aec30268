"""Self-tests of the real-peer harness: peers talk to each other directly over loopback.

Once the Switchboard server runs, the same helpers are pointed at its address instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.peers.audio import (
    SilentAudioError,
    describe,
    dominant_frequency,
    has_tone,
    make_silence_wav,
    make_tone_wav,
    tone_level_db,
)
from tests.peers.pcap import PT_PCMU, read_rtp, ulaw_to_linear, write_g711_tone_pcap
from tests.peers.phones import Phone, PhoneError
from tests.peers.sipp import (
    SippProcess,
    prepare_tone_pcap,
    run_sipp,
    scenario,
    write_auth_injection,
)

PhoneFactory = Callable[..., Phone]

# ---------------------------------------------------------------- pure helpers (no peers)


def test_fft_finds_tone_and_rejects_silence(tmp_path: Path) -> None:
    wav = make_tone_wav(tmp_path / "t.wav", 1000, seconds=1.5)
    assert abs(dominant_frequency(wav) - 1000) < 5
    assert has_tone(wav, 1000) and not has_tone(wav, 2000)
    assert tone_level_db(wav, 1000) > -10 > -60 > tone_level_db(wav, 2000)
    silent = make_silence_wav(tmp_path / "s.wav", seconds=1.0)
    with pytest.raises(SilentAudioError):
        dominant_frequency(silent)


def test_fft_sees_both_tones_of_a_mix(tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(rate * 2) / rate
    mix = 0.4 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 2000 * t)
    sf.write(str(tmp_path / "mix.wav"), mix, rate, subtype="PCM_16")
    assert has_tone(tmp_path / "mix.wav", 1000)
    assert tone_level_db(tmp_path / "mix.wav", 2000) > -30
    assert tone_level_db(tmp_path / "mix.wav", 3000) < -60


def test_pcap_is_a_pcmu_tone_stream(tmp_path: Path) -> None:
    path = write_g711_tone_pcap(tmp_path / "tone.pcap", 1000, seconds=3.0)
    packets = list(read_rtp(path))
    assert len(packets) == 150
    assert all(p.payload_type == PT_PCMU and len(p.payload) == 160 for p in packets)
    assert [p.seq for p in packets] == list(range(150))
    assert packets[1].timestamp - packets[0].timestamp == 160
    assert packets[0].marker and not packets[1].marker
    assert packets[0].src[0] == packets[0].dst[0] == "127.0.0.1"
    assert abs((packets[-1].time - packets[0].time) - 2.98) < 1e-6
    pcm = np.concatenate([ulaw_to_linear(p.payload) for p in packets])
    sf.write(str(tmp_path / "decoded.wav"), pcm, 8000)
    assert abs(dominant_frequency(tmp_path / "decoded.wav") - 1000) < 5


# ---------------------------------------------------------------- PJSUA2 <-> PJSUA2


def _connect(a: Phone, b: Phone) -> int:
    """A calls B directly; B rings then answers; both see CONFIRMED and active media."""
    cid = a.call(b.uri)
    b.wait_incoming()
    b.ringing()
    a.wait_call_state("EARLY", call=cid)
    b.answer()
    a.wait_call_state("CONFIRMED", call=cid)
    b.wait_call_state("CONFIRMED")
    a.wait_media_active(call=cid)
    b.wait_media_active()
    return cid


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_pjsua2_direct_call_audio_dtmf_hangup(
    phone_factory: PhoneFactory, tone_1k: Path, tone_2k: Path, tmp_path: Path
) -> None:
    a = phone_factory("alice")
    b = phone_factory("bob")
    for p in (a, b):
        assert p.set_codecs(["PCMU"]) == ["PCMU/8000/1"]
    cid = _connect(a, b)

    a.play(tone_1k)
    b.play(tone_2k)
    b.record(tmp_path / "b_heard.wav")
    a.record(tmp_path / "a_heard.wav")
    time.sleep(2.5)
    a.stop_record()
    b.stop_record()
    assert has_tone(tmp_path / "b_heard.wav", 1000), describe(tmp_path / "b_heard.wav")
    assert has_tone(tmp_path / "a_heard.wav", 2000), describe(tmp_path / "a_heard.wav")

    a.send_dtmf("159#")  # RFC 4733
    assert b.wait_dtmf(4) == "159#"
    a.send_dtmf("27", method="info")  # SIP INFO, paced by the phone
    assert b.wait_dtmf(6) == "159#27"
    time.sleep(0.3)
    assert b.dtmf_received() == "159#27"  # exactly, no duplicates

    info = a.get_info(cid)
    assert info["state"] == "CONFIRMED" and info["media"] == ["ACTIVE"]
    assert info["remote_contact"].startswith(f"<sip:bob@127.0.0.1:{b.port}")

    a.hangup(cid)
    assert b.wait_disconnected()["state"] == "DISCONNECTED"
    a.wait_disconnected(call=cid)


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_pjsua2_reject_486_reaches_caller(phone_factory: PhoneFactory) -> None:
    a = phone_factory("alice")
    b = phone_factory("bob")
    cid = a.call(b.uri)
    b.wait_incoming()
    b.reject(code=486)
    final = a.wait_disconnected(call=cid)
    assert final["code"] == 486, final
    # The phone reports errors and missing events instead of hanging.
    with pytest.raises(PhoneError):
        a.hangup(call=99)
    with pytest.raises(PhoneError):
        a.wait_call_state("CONFIRMED", call=cid, timeout=0.5)


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_pjsua2_auto_answer_and_callee_hangup(
    phone_factory: PhoneFactory, tone_1k: Path, tmp_path: Path
) -> None:
    a = phone_factory("alice")
    b = phone_factory("bob", auto_answer=200)
    a.set_codecs(["PCMA"])
    b.set_codecs(["PCMA"])
    cid = a.call(b.uri)
    a.wait_call_state("CONFIRMED", call=cid)
    b.play(tone_1k)
    a.record(tmp_path / "a.wav")
    a.wait_media_active(call=cid)
    time.sleep(1.5)
    a.stop_record()
    assert has_tone(tmp_path / "a.wav", 1000), describe(tmp_path / "a.wav")
    b.hangup()
    a.wait_disconnected(call=cid)


# ---------------------------------------------------------------- SIPp


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_sipp_uac_to_uas_with_pcap_rtp(sipp_workdir: Path, free_port: Callable[[], int]) -> None:
    prepare_tone_pcap(sipp_workdir)
    uas_port, uac_port = free_port(), free_port()
    uas_media, uac_media = free_port(), free_port()
    calls = 10
    uas = SippProcess(
        ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port),
         "-mi", "127.0.0.1", "-mp", str(uas_media), "-rtp_echo"],
        workdir=sipp_workdir, timeout=45, max_calls=calls, name="uas",
    )  # fmt: skip
    with uas:
        time.sleep(0.3)
        uac = run_sipp(
            ["-sf", str(scenario("uac_pcap")), "-s", "bob", "-i", "127.0.0.1",
             "-p", str(uac_port), "-mi", "127.0.0.1", "-mp", str(uac_media),
             "-r", "10", "-l", str(calls), "-d", "3000"],
            timeout=40, workdir=sipp_workdir, target=f"127.0.0.1:{uas_port}",
            max_calls=calls, name="uac",
        )  # fmt: skip
        uas_result = uas.wait(15)
    assert uac.ok and uac.successful == calls, uac.summary()
    assert uas_result.ok and uas_result.successful == calls, uas_result.summary()


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_sipp_invite_auth_variant(sipp_workdir: Path, free_port: Callable[[], int]) -> None:
    prepare_tone_pcap(sipp_workdir, seconds=1.0)
    uas_port, uac_port, uas_media, uac_media = (free_port() for _ in range(4))

    def run(password: str, name: str) -> tuple[Any, Any]:
        with SippProcess(
            ["-sf", str(scenario("uas_auth")), "-i", "127.0.0.1", "-p", str(uas_port),
             "-mi", "127.0.0.1", "-mp", str(uas_media)],
            workdir=sipp_workdir, timeout=30, max_calls=2, name=f"{name}_uas",
            recv_timeout="5s",
        ) as uas:  # fmt: skip
            time.sleep(0.3)
            uac = run_sipp(
                ["-sf", str(scenario("uac_pcap_auth")), "-s", "bob", "-i", "127.0.0.1",
                 "-p", str(uac_port), "-mi", "127.0.0.1", "-mp", str(uac_media),
                 "-au", "alice", "-ap", password, "-d", "500"],
                timeout=30, workdir=sipp_workdir, target=f"127.0.0.1:{uas_port}",
                max_calls=2, name=f"{name}_uac", recv_timeout="5s",
            )  # fmt: skip
            return uac, uas.wait(10)

    uac, uas = run("secret", "good")
    assert uac.ok and uac.successful == 2, uac.summary()
    assert uas.successful == 2, uas.summary()
    uac, _ = run("wrong", "bad")
    assert uac.failed == 2 and uac.successful == 0, uac.summary()


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_sipp_register_digest_many_users(sipp_workdir: Path, free_port: Callable[[], int]) -> None:
    reg_port = free_port()
    n = 20
    good = write_auth_injection(sipp_workdir / "good.csv", [(f"u{i}", "secret") for i in range(n)])
    bad = write_auth_injection(sipp_workdir / "bad.csv", [(f"x{i}", "wrong") for i in range(3)])
    with SippProcess(
        ["-sf", str(scenario("registrar_uas")), "-i", "127.0.0.1", "-p", str(reg_port)],
        workdir=sipp_workdir, timeout=40, max_calls=n + 6, name="registrar", recv_timeout="5s",
    ):  # fmt: skip
        time.sleep(0.3)
        target = f"127.0.0.1:{reg_port}"
        ok = run_sipp(
            ["-sf", str(scenario("register_auth")), "-inf", str(good), "-i", "127.0.0.1",
             "-p", str(free_port()), "-r", "50"],
            timeout=30, workdir=sipp_workdir, target=target, max_calls=n, name="reg_good",
            recv_timeout="5s",
        )  # fmt: skip
        wrong = run_sipp(
            ["-sf", str(scenario("register_auth_wrong")), "-inf", str(bad), "-i", "127.0.0.1",
             "-p", str(free_port())],
            timeout=30, workdir=sipp_workdir, target=target, max_calls=3, name="reg_wrong",
            recv_timeout="5s",
        )  # fmt: skip
        # The plain scenario must fail when the password is wrong (the check can fail).
        must_fail = run_sipp(
            ["-sf", str(scenario("register_auth")), "-inf", str(bad), "-i", "127.0.0.1",
             "-p", str(free_port())],
            timeout=30, workdir=sipp_workdir, target=target, max_calls=3, name="reg_fail",
            recv_timeout="5s",
        )  # fmt: skip
    assert ok.ok and ok.successful == n, ok.summary()
    assert wrong.ok and wrong.successful == 3, wrong.summary()
    assert must_fail.failed == 3 and must_fail.successful == 0, must_fail.summary()


# ---------------------------------------------------------------- PJSUA2 <-> baresip


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_pjsua2_calls_baresip_audio_both_ways(
    phone_factory: PhoneFactory,
    baresip_factory: Callable[..., Any],
    tone_1k: Path,
    tmp_path: Path,
) -> None:
    bs = baresip_factory("carol", tone_hz=1500)
    a = phone_factory("alice")
    a.set_codecs(["PCMU"])
    cid = a.call(bs.uri)
    a.wait_call_state("CONFIRMED", call=cid)
    bs.wait_call("CALL_ESTABLISHED")
    a.wait_media_active(call=cid)
    a.play(tone_1k)
    a.record(tmp_path / "alice_heard.wav")
    time.sleep(2.5)
    a.stop_record()
    a.hangup(cid)
    a.wait_disconnected(call=cid)
    bs.wait_call("CALL_CLOSED")
    assert has_tone(tmp_path / "alice_heard.wav", 1500), describe(tmp_path / "alice_heard.wav")
    heard = bs.recordings("dec")
    assert len(heard) == 1, heard
    assert has_tone(heard[0], 1000), describe(heard[0])


# ---------------------------------------------------------------- through a record-routing proxy

KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $ru = "sip:" + $rU + "@127.0.0.1:{target}";
    t_relay();
}}
"""


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_sipp_scenarios_through_record_routing_proxy(
    sipp_workdir: Path, free_port: Callable[[], int]
) -> None:
    """uac_pcap/uas keep working when a stateful record-routing proxy sits in between
    (Record-Route copied by the UAS, ACK/BYE routed by the UAC): the B2BUA-ready check."""
    import shutil
    import subprocess

    if shutil.which("kamailio") is None:
        pytest.skip("kamailio not installed")
    prepare_tone_pcap(sipp_workdir, seconds=1.0)
    proxy_port, uas_port, uac_port, uas_media, uac_media = (free_port() for _ in range(5))
    cfg = sipp_workdir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=proxy_port, target=uas_port))
    (sipp_workdir / "kam_run").mkdir()
    log = open(sipp_workdir / "kamailio.log", "wb")  # noqa: SIM115
    kam = subprocess.Popen(
        ["timeout", "-k", "2", "50", "kamailio", "-DD", "-E", "-f", str(cfg), "-m", "64",
         "-M", "8", "-Y", str(sipp_workdir / "kam_run")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert kam.poll() is None, (sipp_workdir / "kamailio.log").read_text()[-2000:]
        calls = 5
        with SippProcess(
            ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port),
             "-mi", "127.0.0.1", "-mp", str(uas_media), "-rtp_echo",
             "-trace_msg", "-message_file", str(sipp_workdir / "rr_uas_messages.log")],
            workdir=sipp_workdir, timeout=40, max_calls=calls, name="rr_uas",
        ) as uas:  # fmt: skip
            time.sleep(0.3)
            uac = run_sipp(
                ["-sf", str(scenario("uac_pcap")), "-s", "bob", "-i", "127.0.0.1",
                 "-p", str(uac_port), "-mi", "127.0.0.1", "-mp", str(uac_media),
                 "-r", "10", "-d", "1000",
                 "-trace_msg", "-message_file", str(sipp_workdir / "rr_uac_messages.log")],
                timeout=30, workdir=sipp_workdir, target=f"127.0.0.1:{proxy_port}",
                max_calls=calls, name="rr_uac",
            )  # fmt: skip
            uas_result = uas.wait(10)
    finally:
        kam.terminate()
        try:
            kam.wait(5)
        except subprocess.TimeoutExpired:
            kam.kill()
            kam.wait(5)
        log.close()
    assert uac.ok and uac.successful == calls, uac.summary()
    assert uas_result.successful == calls, uas_result.summary()
    # The dialog really was record-routed: the UAS saw Record-Route, and the UAC sent its
    # BYE to the UAS contact with a Route header naming the proxy.
    uas_msgs = (sipp_workdir / "rr_uas_messages.log").read_text()
    uac_msgs = (sipp_workdir / "rr_uac_messages.log").read_text()
    assert f"Record-Route: <sip:127.0.0.1:{proxy_port};lr" in uas_msgs
    assert f"BYE sip:127.0.0.1:{uas_port}" in uac_msgs
    assert f"Route: <sip:127.0.0.1:{proxy_port};lr" in uac_msgs


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_pjsua2_register_with_digest(
    phone_factory: PhoneFactory, sipp_workdir: Path, free_port: Callable[[], int]
) -> None:
    """The phone's register()/reg_state events, against the SIPp challenging registrar.
    (unregister() is not checked here: pjsua reuses the registration's Call-ID, which the
    SIPp UAS ignores as a finished call.)"""
    reg_port = free_port()
    with SippProcess(
        ["-sf", str(scenario("registrar_uas")), "-i", "127.0.0.1", "-p", str(reg_port)],
        workdir=sipp_workdir, timeout=30, max_calls=10, name="registrar", recv_timeout="5s",
    ):  # fmt: skip
        time.sleep(0.3)
        good = phone_factory("alice")
        ev = good.register(f"127.0.0.1:{reg_port}", password="secret", expires=120)
        assert ev is not None and ev["code"] == 200 and ev["active"], ev
        bad = phone_factory("mallory")
        ev = bad.register(f"127.0.0.1:{reg_port}", password="guess")
        assert ev is not None and ev["code"] == 403 and not ev["active"], ev

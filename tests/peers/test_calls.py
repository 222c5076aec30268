"""Phones register to Switchboard and call each other through it (real PJSUA2 phones).

Each phone is a PJSUA2 softphone in its own process; Switchboard runs as ``python -m cli
serve`` with its own SQLite store, and the tests read the call records from that database.
Audio is checked by FFT of what each phone recorded; DTMF by what the far phone reported.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.audio import dominant_frequency, tone_level_db
from tests.peers.calls import answer_call, registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, options_ping, wait_for

pytestmark = pytest.mark.peers

ServerFactory = Callable[..., Switchboard]


def connect(a: Phone, b: Phone, sb: Switchboard, callee: str) -> None:
    """A calls ``callee`` (B's extension); B answers; both see active media."""
    answer_call(a, b, sb, callee)


def check_two_way_audio(a: Phone, b: Phone, tmp_path: Path, tone_1k: Path, tone_2k: Path) -> None:
    a.play(tone_1k)
    b.play(tone_2k)
    a.record(tmp_path / "a_hears.wav")
    b.record(tmp_path / "b_hears.wav")
    time.sleep(2.0)
    a.stop_record()
    b.stop_record()
    assert abs(dominant_frequency(tmp_path / "b_hears.wav") - 1000) < 20
    assert abs(dominant_frequency(tmp_path / "a_hears.wav") - 2000) < 20


def test_call_audio_both_ways_dtmf_and_caller_hangs_up(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    connect(a, b, server, "1002")
    answered_at = time.time()
    check_two_way_audio(a, b, tmp_path, tone_1k, tone_2k)
    a.send_dtmf("159#", method="rfc4733")
    assert b.wait_dtmf(4, timeout=10) == "159#"
    time.sleep(0.5)
    assert b.dtmf_received() == "159#"  # exactly these digits, none repeated
    talk = time.time() - answered_at
    a.hangup()
    assert b.wait_disconnected(timeout=10)
    a.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "ANSWERED"
    assert cdr["caller"] == "1001" and cdr["callee"] == "1002"
    assert cdr["hangup_side"] == "caller"
    assert cdr["hangup_cause"] == "normal_clearing"
    assert abs(cdr["billable_seconds"] - talk) <= 1.0
    assert cdr["duration"] >= cdr["billable_seconds"]
    # Media quality per party, measured on loopback: no loss, a good MOS.
    for role in ("caller", "callee"):
        assert cdr[f"{role}_loss"] == 0.0
        assert 0 <= cdr[f"{role}_jitter_ms"] < 20
        assert cdr[f"{role}_mos"] > 4.0


def test_callee_hangs_up(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    connect(a, b, server, "1002")
    time.sleep(2.0)
    b.hangup()
    assert a.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "ANSWERED"
    assert cdr["hangup_side"] == "callee"
    assert abs(cdr["billable_seconds"] - 2.0) <= 1.0


def test_cancel_while_ringing(server: Switchboard, phone_factory: Callable[..., Phone]) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    a.call(server.uri("1002"))
    b.wait_incoming(timeout=10)
    b.ringing()
    a.wait_call_state("EARLY", timeout=10)
    a.hangup()  # before answer: PJSUA sends CANCEL
    ev = a.wait_disconnected(timeout=10)
    assert ev["code"] == 487
    b.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "CANCELLED"
    assert cdr["hangup_side"] == "caller"
    assert cdr["answer"] is None and cdr["billable_seconds"] == 0


def test_busy(server: Switchboard, phone_factory: Callable[..., Phone]) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    a.call(server.uri("1002"))
    b.wait_incoming(timeout=10)
    b.reject(code=486)
    ev = a.wait_disconnected(timeout=10)
    assert ev["code"] == 486
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "BUSY"
    assert cdr["sip_status"] == 486


def test_unknown_and_unregistered_extensions(
    server: Switchboard, phone_factory: Callable[..., Phone]
) -> None:
    a = registered(phone_factory, server, "1001")
    a.call(server.uri("1999"))
    assert a.wait_disconnected(timeout=10)["code"] == 404
    a.call(server.uri("1003"))  # exists, but no phone registered
    assert a.wait_disconnected(timeout=10)["code"] == 480
    records = server.wait_call_records(2)
    assert [r["hangup_cause"] for r in records] == ["not_found", "unavailable"]
    assert all(r["disposition"] == "FAILED" for r in records)
    # The operator's log says, at info level, which calls failed and why.
    failed = [e for e in server.log_events() if e.get("event") == "call_failed"]
    assert [(e["callee"], e["status"], e["cause"]) for e in failed] == [
        ("1999", 404, "not_found"),
        ("1003", 480, "unavailable"),
    ]


def test_ring_timeout(server_factory: ServerFactory, phone_factory: Callable[..., Phone]) -> None:
    sb = server_factory(
        extensions={
            "1001": {"name": "Alice", "password": "alice-pw"},
            "1002": {"name": "Bob", "password": "bob-pw", "ring_timeout": 2},
        }
    )
    a = registered(phone_factory, sb, "1001")
    b = registered(phone_factory, sb, "1002")
    a.call(sb.uri("1002"))
    b.wait_incoming(timeout=10)
    ev = a.wait_disconnected(timeout=10)
    assert ev["code"] == 480
    b.wait_disconnected(timeout=10)  # the callee's phone stopped ringing (CANCEL)
    (cdr,) = sb.wait_call_records(1)
    assert cdr["disposition"] == "NO ANSWER"


def test_fork_to_every_contact_and_cancel_the_losers(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = registered(phone_factory, server, "1001")
    desk = registered(phone_factory, server, "1002")
    soft = phone_factory("ext1002-soft", user="1002")
    assert soft.register(server.address, password=server.password("1002"))["code"] == 200
    a.call(server.uri("1002"))
    desk.wait_incoming(timeout=10)
    soft.wait_incoming(timeout=10)
    soft.answer()
    a.wait_call_state("CONFIRMED", timeout=10)
    assert desk.wait_disconnected(timeout=10)  # the desk phone's branch was cancelled
    soft.wait_media_active(timeout=10)
    a.wait_media_active(timeout=10)
    check_two_way_audio(a, soft, tmp_path, tone_1k, tone_2k)
    a.hangup()
    soft.wait_disconnected(timeout=10)


def test_wrong_password_gets_no_binding(
    server: Switchboard, phone_factory: Callable[..., Phone]
) -> None:
    p = phone_factory("intruder", user="1002")
    ev = p.register(server.address, password="not-the-password")
    assert ev is not None and ev["code"] in (401, 403)
    time.sleep(1.5)  # longer than the store's write-behind interval (0.5 s)
    assert server.bindings("1002") == []


def test_options_answered(server: Switchboard) -> None:
    assert options_ping(server.sip_port) == 200


def test_bindings_survive_restart(
    server_factory: ServerFactory,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    sb = server_factory()
    a = registered(phone_factory, sb, "1001")
    b = registered(phone_factory, sb, "1002")
    wait_for(lambda: len(sb.bindings()) == 2, 5, "bindings written")
    sb.stop()
    sb.start()
    # No phone re-registered: the restarted server found 1002 in the store.
    connect(a, b, sb, "1002")
    check_two_way_audio(a, b, tmp_path, tone_1k, tone_2k)
    a.hangup()
    b.wait_disconnected(timeout=10)


def test_media_timeout_hangs_up(
    server_factory: ServerFactory, phone_factory: Callable[..., Phone]
) -> None:
    sb = server_factory(inactivity_timeout=2)
    a = registered(phone_factory, sb, "1001")
    b = registered(phone_factory, sb, "1002")
    connect(a, b, sb, "1002")
    # B's phone freezes (a crashed phone or a cut network): its RTP stops.
    os.kill(b.pid, signal.SIGSTOP)
    try:
        ev = a.wait_disconnected(timeout=15)
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert ev is not None
    (cdr,) = sb.wait_call_records(1)
    assert cdr["hangup_cause"] == "media_timeout"
    assert cdr["hangup_side"] == "system"


@pytest.mark.parametrize("method", ["invite", "update"])
def test_session_refresh_keeps_media(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
    method: str,
) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    connect(a, b, server, "1002")
    a.reinvite(method=method)  # caller refreshes the session
    b.reinvite(method=method)  # and so does the callee
    time.sleep(1.0)
    assert a.get_info()["state"] == "CONFIRMED" and b.get_info()["state"] == "CONFIRMED"
    # Both offers were answered by Switchboard itself (media is anchored): each phone's log
    # shows a 2xx to its own re-INVITE/UPDATE.
    for phone, initial in ((a, 1), (b, 0)):
        log = phone.log_path.read_text(errors="replace")
        got = len(re.findall(rf"RX \d+ bytes Response msg 200/{method.upper()}/", log))
        assert got == initial + 1 if method == "invite" else got == 1
    check_two_way_audio(a, b, tmp_path, tone_1k, tone_2k)
    a.hangup()
    b.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["disposition"] == "ANSWERED"


def test_ringback_then_early_media(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_2k: Path,
) -> None:
    a = registered(phone_factory, server, "1001")
    b = registered(phone_factory, server, "1002")
    a.call(server.uri("1002"))
    b.wait_incoming(timeout=10)
    b.ringing()  # 180 without SDP: Switchboard plays ringback (440+480 Hz) to the caller
    a.wait_media_active(timeout=10)
    a.record(tmp_path / "ringback.wav")
    time.sleep(1.6)
    a.stop_record()
    assert tone_level_db(tmp_path / "ringback.wav", 440) > -40
    assert tone_level_db(tmp_path / "ringback.wav", 480) > -40
    b.answer(code=183)  # the callee now sends early media: the caller hears it
    b.wait_media_active(timeout=10)
    b.play(tone_2k)
    time.sleep(0.5)
    a.record(tmp_path / "early.wav")
    time.sleep(1.5)
    a.stop_record()
    assert abs(dominant_frequency(tmp_path / "early.wav") - 2000) < 20
    b.answer()
    a.wait_call_state("CONFIRMED", timeout=10)
    a.hangup()
    b.wait_disconnected(timeout=10)


def test_call_over_tcp(
    server: Switchboard,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    """Both phones register and call over TCP (RFC 3261 §18); audio still flows."""
    a = phone_factory("tcp1001", user="1001")
    b = phone_factory("tcp1002", user="1002")
    for phone, ext in ((a, "1001"), (b, "1002")):
        ev = phone.register(server.address, password=server.password(ext), transport="tcp")
        assert ev is not None and ev["code"] == 200, ev
    wait_for(lambda: {r["transport"] for r in server.bindings()} == {"TCP"}, 5, "TCP bindings")
    connect(a, b, server, "1002")
    check_two_way_audio(a, b, tmp_path, tone_1k, tone_2k)
    b.hangup()
    a.wait_disconnected(timeout=10)
    (cdr,) = server.wait_call_records(1)
    assert cdr["hangup_side"] == "callee"


def test_config_reload_applies_good_config_and_refuses_a_broken_one(
    server: Switchboard, phone_factory: Callable[..., Phone]
) -> None:
    import subprocess
    import sys

    from tests.peers.switchboard import REPO_ROOT

    def reload() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", "config", "reload", str(server.workdir)],
            cwd=str(REPO_ROOT),
            capture_output=True,
            text=True,
            timeout=30,
        )

    original = server.config_path.read_text()
    # A new extension appears without a restart.
    server.config_path.write_text(original + '  "1004": {"name": "Dave", "password": "dave-pw"}\n')
    done = reload()
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: any(e.get("event") == "config_reloaded" for e in server.log_events()),
        10,
        "config_reloaded",
    )
    d = phone_factory("ext1004", user="1004")
    assert d.register(server.address, password="dave-pw")["code"] == 200
    # A broken file is refused with file:line:column and the running config keeps serving.
    server.config_path.write_text(original + '  "1005": {"name": "Eve"}\n')
    refused = reload()
    assert refused.returncode == 1
    assert f"{server.config_path}:" in refused.stderr and "password" in refused.stderr
    a = phone_factory("ext1001", user="1001")
    assert a.register(server.address, password="alice-pw")["code"] == 200
    # SIGHUP straight to the process (as an admin's `kill -HUP` would) is refused the same way.
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: any(e.get("event") == "config_reload_refused" for e in server.log_events()),
        10,
        "config_reload_refused",
    )
    assert d.register(server.address, password="dave-pw")["code"] == 200

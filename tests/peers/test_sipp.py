"""SIPp through a running Switchboard server: digest REGISTER at volume, and calls with RTP.

Theory of operation
-------------------
Each test starts its own ``python -m cli serve`` (``tests.peers.switchboard.Switchboard``)
and points SIPp at it. SIPp can only compute MD5 digests and answers the *first* challenge
header it gets, so these servers offer MD5 first (RFC 7616 §3.7 lets the server order its
challenges; SHA-256 stays offered second).

* Registration: one SIPp run registers 50 extensions from an injection file (PEERS.md: the
  whole ``[authentication ...]`` keyword is injected), then another run tries wrong
  passwords for extensions nobody registered; the store must hold exactly the good ones.
* Calls: a SIPp UAS first registers as extension 3002 from the port it then listens on
  (the registrar stores the request's source address, RFC 3261 §10.3 and the server answers
  and routes there), and echoes RTP (``-rtp_echo``). A SIPp UAC authenticates as 3001
  (407 challenge, RFC 3261 §22.3) and places 200 calls with a pcap tone. Switchboard is a
  B2BUA: the UAS sees a separate INVITE whose SDP names Switchboard's RTP relay, so every RTP
  packet reaching the UAS comes from the server's RTP range, never from the UAC's media port;
  a ``dumpcap`` capture on the UAS media port checks that.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.peers.audio import dominant_frequency
from tests.peers.pcap import PT_PCMU, read_rtp, ulaw_to_linear
from tests.peers.sipp import (
    SippProcess,
    prepare_tone_pcap,
    run_sipp,
    scenario,
    write_auth_injection,
)
from tests.peers.switchboard import Switchboard, next_rtp_range, wait_for

pytestmark = pytest.mark.peers

# SIPp 3.6 computes MD5 only and uses the first challenge header (see the module docstring).
SIPP_AUTH: dict[str, Any] = {"algorithms": ["MD5", "SHA-256"]}

ServerFactory = Callable[..., Switchboard]


@pytest.fixture
def sipp_server(
    server_factory: Callable[..., Switchboard],
) -> Callable[..., Switchboard]:
    """Servers for SIPp, which computes only MD5 and reads only the first challenge."""
    return functools.partial(server_factory, auth=SIPP_AUTH)


def _extensions(numbers: range, prefix: str) -> dict[str, dict[str, Any]]:
    return {str(n): {"name": f"User {n}", "password": f"{prefix}-{n}-{n * 7919 % 1000}"}
            for n in numbers}  # fmt: skip


@pytest.mark.timeout(90)
def test_sipp_register_digest_many_users(
    sipp_server: ServerFactory, sipp_workdir: Path, free_port: Callable[[], int]
) -> None:
    good_numbers = range(2000, 2050)
    bad_numbers = range(2050, 2054)  # fewer than the throttle's 5 failures per source
    sb = sipp_server(extensions=_extensions(range(2000, 2060), "pw"))
    target = sb.address

    good = write_auth_injection(
        sipp_workdir / "good.csv", [(str(n), sb.password(str(n))) for n in good_numbers]
    )
    ok = run_sipp(
        ["-sf", str(scenario("register_auth")), "-inf", str(good), "-i", "127.0.0.1",
         "-p", str(free_port()), "-r", "25"],
        timeout=40, workdir=sipp_workdir, target=target, max_calls=len(good_numbers),
        name="reg_good", recv_timeout="5s",
    )  # fmt: skip
    assert ok.ok and ok.successful == len(good_numbers) and ok.failed == 0, ok.summary()

    expected = {str(n) for n in good_numbers}
    rows = wait_for(
        lambda: (r := sb.bindings()) and len(r) >= len(expected) and r, 10, "50 bindings"
    )
    assert {r["aor"] for r in rows} == expected
    assert len(rows) == len(expected)  # one contact each

    # Wrong passwords for extensions that exist but were never registered.
    wrong_users = [(str(n), sb.password(str(n)) + "-wrong") for n in bad_numbers]
    bad = write_auth_injection(sipp_workdir / "bad.csv", wrong_users)
    wrong = run_sipp(
        ["-sf", str(scenario("register_auth_wrong")), "-inf", str(bad), "-i", "127.0.0.1",
         "-p", str(free_port())],
        timeout=30, workdir=sipp_workdir, target=target, max_calls=len(wrong_users),
        name="reg_wrong", recv_timeout="5s",
    )  # fmt: skip
    # register_auth_wrong succeeds only when the credentialed retry gets 401 or 403.
    assert wrong.ok and wrong.successful == len(wrong_users), wrong.summary()

    # The same wrong passwords with the plain scenario: every registration fails.
    must_fail = run_sipp(
        ["-sf", str(scenario("register_auth")), "-inf", str(bad), "-i", "127.0.0.1",
         "-p", str(free_port()), "-m", "1"],
        timeout=30, workdir=sipp_workdir, target=target, name="reg_fail", recv_timeout="5s",
    )  # fmt: skip
    assert must_fail.failed == 1 and must_fail.successful == 0, must_fail.summary()

    time.sleep(1.5)  # store writes are batched every 0.5 s: give a stray one time to land
    rows = sb.bindings()
    assert {r["aor"] for r in rows} == expected, sorted({r["aor"] for r in rows} - expected)
    for number, _ in wrong_users:
        assert sb.bindings(number) == []
    failures = [e for e in sb.log_events() if e.get("event") == "auth_failed"]
    assert {e.get("user") for e in failures} <= {u for u, _ in wrong_users}
    assert len(failures) == len(wrong_users) + 1


def _start_capture(port: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """dumpcap of UDP packets *to* ``iface_port`` on loopback (classic pcap), or None."""
    if shutil.which("dumpcap") is None:
        return None
    err = out.with_suffix(".stderr")
    with open(err, "wb") as err_file:
        proc = subprocess.Popen(
            ["timeout", "-k", "2", f"{seconds:g}", "dumpcap", "-q", "-i", "lo", "-P",
             "-B", "16", "-f", f"udp and dst port {port}", "-w", str(out)],
            stdout=subprocess.DEVNULL, stderr=err_file,
        )  # fmt: skip
    # dumpcap prints nothing with -q; wait until it created its file (capture running).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size >= 24:  # pcap global header written
            time.sleep(0.3)
            return proc
        time.sleep(0.05)
    _stop_capture(proc)
    raise AssertionError(f"dumpcap did not start: {err.read_text(errors='replace')[-1000:]}")


def _stop_capture(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: dumpcap flushes and closes the file
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.timeout(120)
def test_sipp_calls_through_switchboard(
    sipp_server: ServerFactory, sipp_workdir: Path, free_port: Callable[[], int]
) -> None:
    calls, rate, hold_ms = 200, 20, 2000
    rtp_lo, rtp_hi = next_rtp_range(1000)  # ~50 concurrent calls x 2 legs x RTP/RTCP
    sb = sipp_server(
        extensions={
            "3001": {"name": "SIPp caller", "password": "caller-pw-3001"},
            "3002": {"name": "SIPp callee", "password": "callee-pw-3002"},
        },
        rtp_range=(rtp_lo, rtp_hi),
    )
    prepare_tone_pcap(sipp_workdir, freq_hz=1000, seconds=hold_ms / 1000)
    uas_port, uac_port, uas_media, uac_media = (free_port() for _ in range(4))

    # The UAS registers from the port it will listen on: that source is where INVITEs go.
    reg = run_sipp(
        ["-sf", str(scenario("uas_register")), "-s", "3002", "-au", "3002",
         "-ap", sb.password("3002"), "-i", "127.0.0.1", "-p", str(uas_port)],
        timeout=20, workdir=sipp_workdir, target=sb.address, name="uas_register",
        recv_timeout="5s",
    )  # fmt: skip
    assert reg.ok and reg.successful == 1, reg.summary()
    (binding,) = wait_for(lambda: sb.bindings("3002"), 10, "3002's binding")
    assert binding["contact_uri"].startswith(f"sip:3002@127.0.0.1:{uas_port}"), binding
    assert binding["received"] == f"127.0.0.1:{uas_port}", binding

    capture_file = sipp_workdir / "uas_media.pcap"
    capture = _start_capture(uas_media, capture_file, 90)
    try:
        with SippProcess(
            ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port),
             "-mi", "127.0.0.1", "-mp", str(uas_media), "-rtp_echo",
             "-trace_msg", "-message_file", str(sipp_workdir / "uas_messages.log")],
            workdir=sipp_workdir, timeout=80, max_calls=calls, name="uas",
        ) as uas:  # fmt: skip
            time.sleep(0.3)
            uac = run_sipp(
                ["-sf", str(scenario("uac_pcap_auth_as")), "-s", "3002",
                 "-key", "caller", "3001", "-au", "3001", "-ap", sb.password("3001"),
                 "-i", "127.0.0.1", "-p", str(uac_port),
                 "-mi", "127.0.0.1", "-mp", str(uac_media),
                 "-r", str(rate), "-l", str(rate * 5), "-d", str(hold_ms)],
                timeout=70, workdir=sipp_workdir, target=sb.address, max_calls=calls,
                name="uac",
            )  # fmt: skip
            uas_result = uas.wait(20)
    finally:
        if capture is not None:
            _stop_capture(capture)

    assert uac.ok and uac.successful == calls and uac.failed == 0, uac.summary()
    assert uas_result.successful == calls and uas_result.failed == 0, uas_result.summary()

    records = sb.wait_call_records(calls, timeout=20)
    assert len(records) == calls
    assert {r["disposition"] for r in records} == {"ANSWERED"}
    assert {(r["caller"], r["callee"]) for r in records} == {("3001", "3002")}

    # Both directions went through the relay on every call: the caller's audio into the
    # A leg and the UAS's echo into the B leg (call_ended carries per-leg counters).
    ends = [e for e in sb.log_events() if e.get("event") == "call_ended"]
    assert len(ends) == calls
    keys = ("a_packets_in", "a_packets_out", "b_packets_in", "b_packets_out")
    bad = [e for e in ends if not all(e.get(k, 0) > 0 for k in keys)]
    assert not bad, bad[:5]

    # B2BUA: the UAS got INVITEs with Switchboard's own Call-IDs and SDP (its relay ports).
    uas_msgs = (sipp_workdir / "uas_messages.log").read_text(errors="replace")
    assert f"m=audio {uac_media} " not in uas_msgs
    uac_call_ids = {r["call_id"] for r in records}
    assert not any(f"Call-ID: {cid}" in uas_msgs for cid in list(uac_call_ids)[:20])

    if capture is None:
        pytest.skip("dumpcap not available: RTP path not checked")
    packets = [p for p in read_rtp(capture_file) if p.dst[1] == uas_media]
    sources = {p.src for p in packets}
    assert packets, "the UAS received no RTP"
    assert all(p.payload_type == PT_PCMU for p in packets)
    assert all(rtp_lo <= port <= rtp_hi for _, port in sources), sorted(sources)[:10]
    assert ("127.0.0.1", uac_media) not in sources
    # Most calls' audio made it (a per-call stream ~ hold_ms of 20 ms packets).
    assert len(packets) >= calls * (hold_ms // 20) // 2, len(packets)
    # ...and it is the caller's 1 kHz tone, relayed unchanged.
    first = packets[0].src
    stream = [p for p in packets if p.src == first]
    pcm = np.concatenate([ulaw_to_linear(p.payload) for p in stream])
    sf.write(str(sipp_workdir / "relayed.wav"), pcm, 8000)
    assert abs(dominant_frequency(sipp_workdir / "relayed.wav", skip_seconds=0.2) - 1000) < 20

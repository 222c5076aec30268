"""baresip (libre's SIP stack) registers to Switchboard and a PJSUA2 phone calls it.

Theory of operation
-------------------
A second, independent SIP stack checks that Switchboard is not only tuned to PJSIP: baresip
registers with digest authentication (RFC 3261 §10.2, §22.4), auto-answers the INVITE the
B2BUA sends it, and plays a 1.5 kHz sine (``ausine``) while its ``sndfile`` filter records
what it receives. The PJSUA2 caller (PCMU only) plays a 1 kHz tone and records. Each side
must hear the other's tone through Switchboard's RTP relay (FFT peak), and the store must
hold one ANSWERED call record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.audio import describe, has_tone
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, next_rtp_range, wait_for

pytestmark = pytest.mark.peers

ServerFactory = Callable[..., Switchboard]


@pytest.mark.timeout(90)
def test_baresip_registers_and_is_called_by_pjsua2(
    server_factory: ServerFactory,
    baresip_factory: Callable[..., Any],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
    tmp_path: Path,
) -> None:
    sb = server_factory(
        extensions={
            "4001": {"name": "PJSUA2 caller", "password": "pj-4001-pw"},
            "4002": {"name": "baresip callee", "password": "bs-4002-pw"},
        },
        # libre 1.1 (baresip 1.0) fails the whole registration with ENOSYS as soon as any
        # challenge is not MD5, even when an MD5 challenge is also offered: MD5 only here.
        auth={"algorithms": ["MD5"]},
    )
    # baresip's own RTP range, clear of every Switchboard range handed out in this session.
    bs = baresip_factory(
        "4002",
        registrar=sb.address,
        password=sb.password("4002"),
        tone_hz=1500,
        rtp_ports=next_rtp_range(100),
    )
    # Not bs.wait_registered(): baresip may register before the ctrl_tcp connection is up,
    # and that REGISTER_OK event is then never seen. The store is the better witness.
    (binding,) = wait_for(lambda: sb.bindings("4002"), 15, "baresip's binding")
    info = bs.command("reginfo")  # "> sip:4002@127.0.0.1:PORT  OK  Switchboard ..."
    assert "OK" in info and "Switchboard" in info, info
    assert binding["received"] == f"127.0.0.1:{bs.sip_port}", binding

    caller = phone_factory("ext4001", user="4001")
    assert caller.set_codecs(["PCMU"]) == ["PCMU/8000/1"]
    ev = caller.register(sb.address, password=sb.password("4001"))
    assert ev is not None and ev["code"] == 200, ev

    cid = caller.call(sb.uri("4002"))
    bs.wait_call("CALL_ESTABLISHED", timeout=15)  # auto-answered
    caller.wait_call_state("CONFIRMED", call=cid, timeout=15)
    caller.wait_media_active(call=cid, timeout=10)
    answered_at = time.time()

    caller.play(tone_1k, call=cid)
    caller.record(tmp_path / "pjsua2_heard.wav", call=cid)
    time.sleep(3.0)
    caller.stop_record(call=cid)
    talk = time.time() - answered_at
    caller.hangup(cid)
    caller.wait_disconnected(call=cid, timeout=10)
    bs.wait_call("CALL_CLOSED", timeout=10)

    heard = tmp_path / "pjsua2_heard.wav"
    assert has_tone(heard, 1500), describe(heard)
    dumps = bs.recordings("dec")
    assert len(dumps) == 1, dumps
    assert has_tone(dumps[0], 1000), describe(dumps[0])

    (cdr,) = sb.wait_call_records(1)
    assert cdr["disposition"] == "ANSWERED", cdr
    assert (cdr["caller"], cdr["callee"]) == ("4001", "4002")
    assert cdr["hangup_side"] == "caller" and cdr["hangup_cause"] == "normal_clearing", cdr
    assert abs(cdr["billable_seconds"] - talk) <= 1.5, (cdr, talk)

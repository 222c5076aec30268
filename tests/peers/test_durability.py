"""Nothing a caller has seen complete is lost: SIGKILL under call load keeps every record.

Theory of operation
-------------------
A SIPp UAC places short authenticated calls (about 30 calls/s) through Switchboard to a SIPp
UAS; each call ends with the caller's BYE. Switchboard answers that BYE 200 only once the
call's record is committed (group commit: the records of calls ending together share one
transaction). While calls are flowing the server is killed with SIGKILL — no shutdown code
runs. SIPp's message trace then says which calls the caller saw completed (a 200 to its BYE),
and every one of them must have its row in the store the dead server left behind.
"""

from __future__ import annotations

import functools
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.sipp import SippProcess, run_sipp, scenario
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

SIPP_AUTH: dict[str, Any] = {"algorithms": ["MD5", "SHA-256"]}  # SIPp computes MD5 only


def completed_call_ids(messages: Path) -> set[str]:
    """Call-IDs whose BYE got a 200 at the UAC, from SIPp's -trace_msg log."""
    if not messages.exists():
        return set()
    text = messages.read_text(errors="replace")
    out = set()
    for block in re.split(r"message received \[\d+\] bytes :", text)[1:]:
        lines = block.strip().splitlines()
        if not lines or not lines[0].startswith("SIP/2.0 200"):
            continue
        head = "\n".join(lines[:20])
        cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", head, re.M | re.I)
        call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", head, re.M | re.I)
        if cseq and call_id and cseq.group(1).upper() == "BYE":
            out.add(call_id.group(1))
    return out


@pytest.mark.timeout(120)
def test_sigkill_under_load_loses_no_completed_call(
    server_factory: Callable[..., Switchboard],
    sipp_workdir: Path,
    free_port: Callable[[], int],
) -> None:
    sb = functools.partial(server_factory, auth=SIPP_AUTH)(
        extensions={
            "3001": {"name": "SIPp caller", "password": "caller-pw-3001"},
            "3002": {"name": "SIPp callee", "password": "callee-pw-3002"},
        }
    )
    uas_port, uac_port = free_port(), free_port()
    reg = run_sipp(
        ["-sf", str(scenario("uas_register")), "-s", "3002", "-au", "3002",
         "-ap", sb.password("3002"), "-i", "127.0.0.1", "-p", str(uas_port)],
        timeout=20, workdir=sipp_workdir, target=sb.address, name="uas_register",
        recv_timeout="5s",
    )  # fmt: skip
    assert reg.ok, reg.summary()
    wait_for(lambda: sb.bindings("3002"), 10, "3002's binding")

    messages = sipp_workdir / "uac_messages.log"
    with (
        SippProcess(
            ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port)],
            workdir=sipp_workdir, timeout=60, max_calls=10_000, name="uas",
        ),
        SippProcess(
            ["-sf", str(scenario("uac_auth_as")), "-s", "3002",
             "-key", "caller", "3001", "-au", "3001", "-ap", sb.password("3001"),
             "-i", "127.0.0.1", "-p", str(uac_port), "-r", "30", "-l", "60", "-d", "300",
             "-trace_msg", "-message_file", str(messages)],
            workdir=sipp_workdir, timeout=60, target=sb.address, max_calls=10_000,
            name="uac", recv_timeout="3s",
        ) as uac,
    ):  # fmt: skip
        # Let calls flow, and kill the server in the middle of them.
        wait_for(lambda: len(completed_call_ids(messages)) >= 60, 30, "60 completed calls")
        time.sleep(0.37)
        assert sb.proc is not None
        sb.proc.send_signal(signal.SIGKILL)
        sb.proc.wait(5)
        time.sleep(1.0)  # let SIPp write what it received before the kill
        uac.kill()

    completed = completed_call_ids(messages)
    assert len(completed) >= 60
    stored = {r["call_id"] for r in sb.call_records()}
    lost = completed - stored
    assert not lost, f"{len(lost)} of {len(completed)} completed calls have no record"

"""``switchboard config reload`` says what it applied and what needs a restart (issue 15).

Before, a ``sip.auth`` change was accepted with "reloaded" and silently not applied. Now the
digest settings apply live, and keys only a restart can apply (here the RTP range) are named
by the CLI while the server keeps serving with the old value.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.peers.phones import Phone
from tests.peers.switchboard import REPO_ROOT, Switchboard, wait_for

pytestmark = pytest.mark.peers


def _reload(sb: Switchboard) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "config", "reload", str(sb.workdir)],
        cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_reload_applies_sip_auth_and_names_restart_keys(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    sb = server_factory(auth={"algorithms": ["MD5"]})
    before = sb.config_path.read_text()
    old_rtp = before.split("ports: [", 1)[1].split("]", 1)[0]
    lo, hi = (int(x) for x in old_rtp.split(","))
    text = before.replace('"algorithms": ["MD5"]', '"algorithms": ["SHA-256"]').replace(
        f"ports: [{old_rtp}]", f"ports: [{lo + 1000}, {hi + 1000}]"
    )
    assert text != before
    sb.config_path.write_text(text)

    done = _reload(sb)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("reloaded (pid"), done.stdout
    assert lines[1] == "applied: sip.auth.algorithms", done.stdout
    assert lines[2].startswith("needs a restart") and lines[2].endswith(": rtp.ports"), done.stdout
    assert any(
        e.get("event") == "config_reload_restart_needed" and e.get("keys") == ["rtp.ports"]
        for e in sb.log_events()
    )

    # Applied live: a phone now registers with SHA-256 (only SHA-256 is offered).
    phone = phone_factory("alice", user="1001")
    ev = phone.register(sb.address, password=sb.password("1001"))
    assert ev is not None and ev["code"] == 200, ev
    registered = wait_for(
        lambda: [e for e in sb.log_events() if e.get("event") == "registered"], 10, "registered"
    )
    assert registered[-1]["algorithm"] == "SHA-256", registered

    # Not applied: calls still get media ports from the range the server started with (the
    # phone's log holds every SDP it sent and received).
    bob = phone_factory("bob", user="1002", auto_answer=200)
    assert bob.register(sb.address, password=sb.password("1002"))["code"] == 200
    cid = phone.call(sb.uri("1002"))
    phone.wait_call_state("CONFIRMED", call=cid, timeout=15)
    phone.hangup(cid)
    phone.wait_disconnected(call=cid, timeout=10)
    sdps = phone.log_path.read_text(errors="replace").split("m=audio ")[1:]
    ports = {int(p.split()[0]) for p in sdps}
    assert any(lo <= p <= hi for p in ports), (ports, lo, hi)
    assert not any(lo + 1000 <= p <= hi + 1000 for p in ports), (ports, lo, hi)

    # A broken file: exit 1 with file:line:column, nothing applied.
    sb.config_path.write_text(text + '  "1009": {"name": "No password"}\n')
    refused = _reload(sb)
    assert refused.returncode == 1
    assert f"{sb.config_path}:" in refused.stderr

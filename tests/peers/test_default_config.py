"""Clients that only speak MD5 digest register with the shipped default config.

Theory of operation
-------------------
Issue 15: sipsak, SIPp and SIPVicious read only the first challenge, and baresip 1.0 (libre)
gives up as soon as any SHA-256 challenge is present. The default ``sip.auth.algorithms`` is
therefore MD5 only (as in Asterisk and Kamailio); SHA-256 is an opt-in, per extension with
``auth_algorithms``.

Each server here runs ``config/default.yaml`` as ``switchboard serve`` writes it on first
start (:func:`config.defaults.render_default_config`: random passwords for 1001-1005), with
only what a test on a shared machine must change: loopback sockets on free ports (SIP and
HTTP), a private RTP range, 50 more extensions for SIPp, and one extension opted in to
SHA-256 alone
(``auth_algorithms: [SHA-256]``: PJSIP 2.15 picks the MD5 challenge whenever one is
offered). The ``auth`` section and every other value are the shipped ones. Then:

* sipsak registers 1001 (``-U -C``: one REGISTER with digest; ``-u`` names the user, which
  sipsak 0.9.8 otherwise takes as ``1001@`` from the URI);
* SIPp ``register_auth`` registers 50 extensions, 50 successes of 50;
* baresip registers 1002;
* a PJSUA2 phone on the SHA-256 extension registers, and the server's log says it answered
  with SHA-256.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from config.defaults import render_default_config
from tests.peers.phones import Phone
from tests.peers.sipp import run_sipp, scenario, write_auth_injection
from tests.peers.switchboard import Switchboard, next_rtp_range, wait_for

pytestmark = pytest.mark.peers

SIPP_USERS = range(2000, 2050)
SHA_EXTENSION = "1005"


def _shipped_config(port: int, rtp: tuple[int, int], http_port: int) -> tuple[str, dict[str, str]]:
    """``config/default.yaml`` as first start writes it, moved to loopback test sockets."""
    text, passwords = render_default_config()
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    tree = yaml.load(text)
    tree["sip"]["listen"] = [
        CommentedMap(transport="udp", host="127.0.0.1", port=port),
        CommentedMap(transport="tcp", host="127.0.0.1", port=port),
    ]
    tree["http"]["port"] = http_port  # the shipped 8080 may be taken on a shared machine
    tree["rtp"]["host"] = "127.0.0.1"
    tree["rtp"]["ports"] = [rtp[0], rtp[1]]
    extensions = tree["extensions"]
    extensions[SHA_EXTENSION]["auth_algorithms"] = ["SHA-256"]
    for n in SIPP_USERS:
        passwords[str(n)] = pw = f"sipp-{n}-{n * 7919 % 1000}"
        extensions[str(n)] = CommentedMap(name=f"SIPp {n}", password=DoubleQuotedScalarString(pw))
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue(), passwords


@pytest.fixture
def shipped(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Switchboard]:
    """A started server on the shipped default config (see the module docstring)."""
    workdir = tmp_path / "shipped"
    workdir.mkdir()
    port = free_port()
    sb = Switchboard(workdir, port)
    text, passwords = _shipped_config(port, next_rtp_range(), sb.http_port)
    sb.extensions = {n: {"password": pw} for n, pw in passwords.items()}
    sb.config_path.write_text(text)  # the harness's own config replaced by the shipped one
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()
        log = sb.log_text()
        assert "Traceback" not in log, log[-3000:]


def test_shipped_config_offers_md5_only(shipped: Switchboard) -> None:
    assert "algorithms: [MD5]" in shipped.config_path.read_text()


@pytest.mark.timeout(60)
def test_sipsak_registers_with_the_shipped_config(
    shipped: Switchboard, free_port: Callable[[], int], tmp_path: Path
) -> None:
    if shutil.which("sipsak") is None:
        pytest.skip("sipsak is not installed")
    local = free_port()
    run = subprocess.run(
        ["sipsak", "-U", "-C", f"sip:1001@127.0.0.1:{local}",
         "-s", f"sip:1001@{shipped.address}", "-a", shipped.password("1001"),
         "-u", "1001", "-x", "600", "-H", "127.0.0.1", "-l", str(local), "-vv"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    (binding,) = wait_for(lambda: shipped.bindings("1001"), 10, "sipsak's binding")
    assert binding["contact_uri"] == f"sip:1001@127.0.0.1:{local}", binding
    assert binding["user_agent"].startswith("sipsak"), binding


@pytest.mark.timeout(90)
def test_sipp_registers_50_of_50_with_the_shipped_config(
    shipped: Switchboard, sipp_workdir: Path, free_port: Callable[[], int]
) -> None:
    users = [(str(n), shipped.password(str(n))) for n in SIPP_USERS]
    inject = write_auth_injection(sipp_workdir / "users.csv", users)
    result = run_sipp(
        ["-sf", str(scenario("register_auth")), "-inf", str(inject), "-i", "127.0.0.1",
         "-p", str(free_port()), "-r", "25"],
        timeout=40, workdir=sipp_workdir, target=shipped.address, max_calls=len(users),
        name="reg_shipped", recv_timeout="5s",
    )  # fmt: skip
    assert result.ok and result.successful == 50 and result.failed == 0, result.summary()
    rows = wait_for(lambda: (r := shipped.bindings()) and len(r) >= 50 and r, 10, "50 bindings")
    assert {r["aor"] for r in rows} == {str(n) for n in SIPP_USERS}


@pytest.mark.timeout(60)
def test_baresip_registers_with_the_shipped_config(
    shipped: Switchboard, baresip_factory: Callable[..., Any]
) -> None:
    bs = baresip_factory(
        "1002",
        registrar=shipped.address,
        password=shipped.password("1002"),
        rtp_ports=next_rtp_range(100),
    )
    (binding,) = wait_for(lambda: shipped.bindings("1002"), 15, "baresip's binding")
    assert binding["received"] == f"127.0.0.1:{bs.sip_port}", binding


@pytest.mark.timeout(60)
def test_pjsua2_registers_with_sha256_when_its_extension_opts_in(
    shipped: Switchboard, phone_factory: Callable[..., Phone]
) -> None:
    # PJSIP 2.15 answers the MD5 challenge when both are offered (seen here), so the
    # extension is opted in to SHA-256 alone.
    phone = phone_factory("sha", user=SHA_EXTENSION)
    ev = phone.register(shipped.address, password=shipped.password(SHA_EXTENSION))
    assert ev is not None and ev["code"] == 200, ev
    registered = wait_for(
        lambda: [
            e
            for e in shipped.log_events()
            if e.get("event") == "registered" and e.get("aor") == SHA_EXTENSION
        ],
        10,
        "the registered log line",
    )
    assert registered[0]["algorithm"] == "SHA-256", registered
    # An extension that did not opt in stays on the realm's MD5.
    other = phone_factory("md5", user="1003")
    ev = other.register(shipped.address, password=shipped.password("1003"))
    assert ev is not None and ev["code"] == 200, ev
    plain = wait_for(
        lambda: [
            e
            for e in shipped.log_events()
            if e.get("event") == "registered" and e.get("aor") == "1003"
        ],
        10,
        "1003's registered log line",
    )
    assert plain[0]["algorithm"] == "MD5", plain

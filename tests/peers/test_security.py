"""SIPVicious against a running Switchboard: no extension enumeration, password guessing
throttled.

``svwar`` and ``svcrack`` (SIPVicious 0.3.3, Debian package ``sipvicious``) are run as
PEERS.md says: bound to 127.0.0.1 (``-b``/``-x``), a free source port (``-P``), ``HOME`` in
the test's tmp folder, ``--maximumtime`` plus a subprocess timeout, never ``-R``.

The same properties are also checked with raw UDP, byte for byte: a REGISTER for an existing
extension and one for a missing extension must get the same answer apart from the values
that are random per response (tags, nonces, branch, Call-ID).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pbx.digest import build_authorization, choose_challenge
from tests.peers.switchboard import Switchboard, options_ping

pytestmark = pytest.mark.peers


def sipvicious(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(f"sipvicious_{tool}")
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install sipvicious)")
    return path


def run_tool(
    argv: list[str],
    home: Path,
    timeout: float,
    *,
    interrupt_after: float | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> str:
    """Run a SIPVicious tool; its stdout+stderr. It gets SIGINT (its own ^C handling prints
    the results) after ``interrupt_after`` seconds, or one second after ``stop_when()``
    turns true, if it is still running; it is killed if it outlives ``timeout``."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    log = home / f"run-{uuid.uuid4().hex[:8]}.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    start = time.monotonic()
    stop_at = start + (interrupt_after if interrupt_after is not None else timeout)
    try:
        while proc.poll() is None and time.monotonic() < stop_at:
            if stop_when is not None and stop_when():
                stop_at = min(stop_at, time.monotonic() + 1.0)
                stop_when = None
            time.sleep(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(max(1.0, start + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    return log.read_text(errors="replace")


def result_rows(output: str) -> dict[str, str]:
    """The ``| name | value |`` rows of a SIPVicious result table (header row left out)."""
    rows: dict[str, str] = {}
    for line in output.splitlines():
        m = re.match(r"^\|\s*(\S+)\s*\|\s*(.*?)\s*\|\s*$", line)
        if m and m.group(1) not in ("Extension",):
            rows[m.group(1)] = m.group(2)
    return rows


# -- raw UDP helpers ----------------------------------------------------------------------


def transact(sock: socket.socket, port: int, msg: str, timeout: float = 2.0) -> bytes:
    """Send one request; the first final (>= 200) response to it."""
    sock.sendto(msg.encode(), ("127.0.0.1", port))
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        try:
            if int(data.split(b" ", 2)[1]) >= 200:
                return data
        except (IndexError, ValueError):
            continue
    raise AssertionError("no final response")


def request(
    method: str,
    user: str,
    sock: socket.socket,
    port: int,
    *,
    auth: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
) -> str:
    lport = sock.getsockname()[1]
    target = f"sip:127.0.0.1:{port}" if method == "REGISTER" else f"sip:{user}@127.0.0.1:{port}"
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id or uuid.uuid4().hex}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}@127.0.0.1:{lport}>",
    ]
    if method == "REGISTER":
        lines.append("Expires: 60")
    if auth is not None:
        header = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
        lines.append(f"{header}: {auth}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def normalized(resp: bytes, user: str, lport: int) -> str:
    """The response with every per-response random value and the user number blanked."""
    text = resp.decode(errors="replace")
    text = text.replace(user, "USER")
    text = re.sub(
        r"(?i)(tag|branch|rport|nonce|opaque|cnonce)=(\"[^\"]*\"|[^;,\s]+)", r"\1=X", text
    )
    text = re.sub(r"(?im)^(Call-ID|i)\s*:.*$", r"\1: X", text)
    text = text.replace(str(lport), "PORT")
    return text


def header_names(resp: bytes) -> list[str]:
    head = resp.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return [line.split(":", 1)[0].strip().lower() for line in head.split("\r\n")[1:]]


def challenges(resp: bytes, name: str) -> list[str]:
    out = []
    for line in resp.decode(errors="replace").split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def register_with_password(
    sock: socket.socket, port: int, user: str, password: str, challenge_resp: bytes | None = None
) -> bytes:
    """REGISTER answered with digest credentials; uses ``challenge_resp`` (an earlier 401) if
    given, else asks for a fresh challenge first."""
    call_id = uuid.uuid4().hex
    if challenge_resp is None:
        challenge_resp = transact(
            sock, port, request("REGISTER", user, sock, port, call_id=call_id)
        )
        assert challenge_resp.startswith(b"SIP/2.0 401"), challenge_resp[:200]
    value = choose_challenge(challenges(challenge_resp, "WWW-Authenticate"))
    auth = build_authorization("REGISTER", f"sip:127.0.0.1:{port}", user, password, value)
    return transact(
        sock, port, request("REGISTER", user, sock, port, auth=auth, call_id=call_id, cseq=2)
    )


# -- 3. svwar -----------------------------------------------------------------------------


def test_svwar_cannot_enumerate_extensions(
    server_factory: Callable[..., Switchboard], free_port: Callable[[], int], tmp_path: Path
) -> None:
    svwar = sipvicious("svwar")
    sb = server_factory()
    scanned = [str(n) for n in range(1000, 1011)]
    for method in ("REGISTER", "INVITE", "OPTIONS"):
        # --force: get past svwar's own sanity check (it gives up at once when a made-up
        # extension is challenged, which is already what we want) and really scan.
        for force in ([], ["--force"]):
            out = run_tool(
                [
                    svwar,
                    "-b",
                    "127.0.0.1",
                    "-x",
                    "127.0.0.1",
                    "-P",
                    str(free_port()),
                    "-p",
                    str(sb.sip_port),
                    "--maximumtime",
                    "5",
                    "--debug",
                    "-m",
                    method,
                    "-e",
                    "1000-1010",
                    *force,
                    "127.0.0.1",
                ],
                tmp_path / "home",
                timeout=30,
                interrupt_after=25,
            )
            assert "SIP/2.0" in out, out[-2000:]  # it did talk to the server
            rows = result_rows(out)
            found = {ext: status for ext, status in rows.items() if ext in scanned}
            # Either nothing stands out, or every scanned number looks the same.
            if found:
                assert set(found) == set(scanned) and len(set(found.values())) == 1, (
                    method,
                    force,
                    found,
                )

    # The same with raw UDP: an existing and a missing extension get the same answer.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s1,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2,
    ):
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        p1, p2 = s1.getsockname()[1], s2.getsockname()[1]
        for method in ("REGISTER", "INVITE"):
            r1 = transact(s1, sb.sip_port, request(method, "1001", s1, sb.sip_port))
            r2 = transact(s2, sb.sip_port, request(method, "1999", s2, sb.sip_port))
            assert header_names(r1) == header_names(r2), (r1, r2)
            assert normalized(r1, "1001", p1) == normalized(r2, "1999", p2), (r1, r2)
            assert r1.split(b"\r\n", 1)[0] in (
                b"SIP/2.0 401 Unauthorized",
                b"SIP/2.0 407 Proxy Authentication Required",
            ), r1[:200]

        # Wrong password for an existing and for a missing extension: same answer.
        w1 = register_with_password(s1, sb.sip_port, "1001", "not-the-password")
        w2 = register_with_password(s2, sb.sip_port, "1999", "not-the-password")
        assert w1.split(b"\r\n", 1)[0] == w2.split(b"\r\n", 1)[0], (w1, w2)
        assert header_names(w1) == header_names(w2), (w1, w2)
        assert normalized(w1, "1001", p1) == normalized(w2, "1999", p2), (w1, w2)
        # And the right password does work, so the comparison above was not vacuous.
        ok = register_with_password(s1, sb.sip_port, "1001", sb.password("1001"))
        assert ok.startswith(b"SIP/2.0 200"), ok[:300]


# -- 4. svcrack ---------------------------------------------------------------------------

# SIPVicious 0.3.3 only computes MD5 digests (a SHA-256 challenge crashes svcrack before its
# first guess), so this server offers MD5 alone, as one serving legacy phones would.
MAX_FAILURES = 5
THROTTLED: dict[str, Any] = {
    "algorithms": ["MD5"],
    "max_failures": MAX_FAILURES,
    "failure_window": 60,
    "block_seconds": 300,
}


def test_svcrack_is_throttled(
    server_factory: Callable[..., Switchboard], free_port: Callable[[], int], tmp_path: Path
) -> None:
    svcrack = sipvicious("svcrack")
    # Its own server: the block is per source IP and every test runs from 127.0.0.1.
    sb = server_factory(auth=THROTTLED)
    password = sb.password("1001")

    def crack(words: list[str], name: str) -> tuple[str, int]:
        wordlist = tmp_path / f"{name}.txt"
        wordlist.write_text("".join(w + "\n" for w in words))
        lport = free_port()

        def blocked() -> bool:
            # Once blocked, svcrack keeps sending REGISTERs that get 403 until it is stopped.
            return any(
                e.get("event") == "auth_failed"
                and e.get("blocked") is True
                and e.get("source") == f"127.0.0.1:{lport}"
                for e in sb.log_events()
            )

        out = run_tool(
            [
                svcrack,
                "-b",
                "127.0.0.1",
                "-x",
                "127.0.0.1",
                "-P",
                str(lport),
                "-p",
                str(sb.sip_port),
                "--maximumtime",
                "5",
                "-u",
                "1001",
                "-d",
                str(wordlist),
                "127.0.0.1",
            ],
            tmp_path / "home",
            timeout=20,
            interrupt_after=15,
            stop_when=blocked,
        )
        return out, lport

    # Control: with the password second in its list, svcrack finds it (one failure, then a
    # success, which clears the failure count). So svcrack works against this server.
    out, _ = crack(["wrong-0", password], "control")
    assert password in result_rows(out).values(), out[-2000:]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        # A challenge taken before the attack, to answer correctly during the block.
        call_id = uuid.uuid4().hex
        challenge = transact(
            s, sb.sip_port, request("REGISTER", "1001", s, sb.sip_port, call_id=call_id)
        )
        assert challenge.startswith(b"SIP/2.0 401"), challenge[:200]

        words = [f"guess-{i:02d}" for i in range(50)] + [password]
        out, lport = crack(words, "dict")
        assert password not in out, out[-3000:]
        assert password not in result_rows(out).values()
        assert "The password for" not in out, out[-3000:]

        failures = [
            e
            for e in sb.log_events()
            if e.get("event") == "auth_failed" and e.get("source") == f"127.0.0.1:{lport}"
        ]
        assert failures, "svcrack made no guess at all"
        assert any(e.get("blocked") is True for e in failures), failures
        # It was stopped after a handful of guesses, far from the 50 it had.
        assert len(failures) <= MAX_FAILURES, len(failures)

        # During the block even the right password from this address is refused.
        value = choose_challenge(challenges(challenge, "WWW-Authenticate"))
        auth = build_authorization(
            "REGISTER", f"sip:127.0.0.1:{sb.sip_port}", "1001", password, value
        )
        resp = transact(
            s,
            sb.sip_port,
            request("REGISTER", "1001", s, sb.sip_port, auth=auth, call_id=call_id, cseq=2),
        )
        assert resp.startswith(b"SIP/2.0 403"), resp[:300]
    assert sb.proc is not None and sb.proc.poll() is None
    # A blocked source gets 403 for everything; the server itself still answers.
    assert options_ping(sb.sip_port) in (200, 403)


def test_throttle_settings_accepted_by_the_config_start_the_server(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """``sip.auth.block_seconds: 0`` passes config validation (``ge=0``), so the server must
    run with it (e.g. "never block") or the config must refuse it cleanly, as it does for
    ``max_failures: 0`` — never die at startup with a traceback."""
    for auth in ({"max_failures": 0}, {"block_seconds": 0}):
        workdir = tmp_path / f"cfg-{next(iter(auth))}"
        workdir.mkdir()
        sb = Switchboard(workdir, free_port(), auth=auth)
        try:
            sb.start(timeout=15)
            started = True
        except RuntimeError:
            started = False
        finally:
            sb.stop()
        assert "Traceback" not in sb.log_text(), (auth, sb.log_text()[-1500:])
        if not started:
            assert "sip.auth." in sb.log_text(), (auth, sb.log_text()[-1500:])

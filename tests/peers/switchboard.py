"""Run a real Switchboard server (``python -m cli serve``) for peer tests.

The server runs in its own process on loopback with a config written for the test: free SIP
ports, a private RTP range and a SQLite store in the test's tmp folder. Tests read call
records straight from that database, as an operator's report would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

_rtp_base = [40000 + (os.getpid() % 50) * 200]

# Media worker processes of servers that do not say (tests/peers/conftest.py sets it to run
# the call, feature and ACD tests with ``media: {workers: 2}`` too).
MEDIA_WORKERS_ENV = "SWITCHBOARD_PEER_MEDIA_WORKERS"


def next_rtp_range(size: int = 100) -> tuple[int, int]:
    """A private RTP range per server so parallel or back-to-back tests never collide."""
    start = _rtp_base[0]
    _rtp_base[0] += size
    if _rtp_base[0] > 60000:
        _rtp_base[0] = 40000
    return start, start + size - 1


class Switchboard:
    """A Switchboard server process with a generated config."""

    def __init__(
        self,
        workdir: Path,
        sip_port: int,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        rtp_range: tuple[int, int] | None = None,
        extra_yaml: str = "",
        inactivity_timeout: float = 60,
        auth: dict[str, Any] | None = None,
        setup: Callable[[Path], object] | None = None,
        log_level: str = "info",
        media_workers: int | None = None,
        tls_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        # The HTTP API on a free loopback port (extra_yaml may configure `http:` itself).
        self.http_port = http_port or free_tcp_port()
        http_yaml = "" if "\nhttp:" in "\n" + extra_yaml else f"http: {{port: {self.http_port}}}\n"
        if media_workers is None:
            media_workers = int(os.environ.get(MEDIA_WORKERS_ENV, "0"))
        self.media_workers = media_workers
        self.log_level = log_level
        self.sip_port = sip_port
        # SIP over TLS on this port too (the certificate: self-signed, made on first start).
        self.tls_port = tls_port
        self.extensions = extensions or {
            "1001": {"name": "Alice", "password": "alice-pw"},
            "1002": {"name": "Bob", "password": "bob-pw"},
            "1003": {"name": "Carol", "password": "carol-pw"},
        }
        rtp = rtp_range or next_rtp_range()
        auth_yaml = ""
        if auth:
            auth_yaml = "  auth: " + json.dumps(auth) + "\n"
        ext_lines = "".join(
            f'  "{num}": {json.dumps(spec)}\n' for num, spec in self.extensions.items()
        )
        self.config_path = workdir / "switchboard.yaml"
        self.db_path = workdir / "switchboard.db"
        self.config_path.write_text(
            "sip:\n"
            "  listen:\n"
            f"    - {{transport: udp, host: 127.0.0.1, port: {sip_port}}}\n"
            f"    - {{transport: tcp, host: 127.0.0.1, port: {sip_port}}}\n"
            + (f"    - {{transport: tls, host: 127.0.0.1, port: {tls_port}}}\n" if tls_port else "")
            + "  realm: switchboard\n"
            f"{auth_yaml}"
            f"rtp: {{host: 127.0.0.1, ports: [{rtp[0]}, {rtp[1]}], "
            f"inactivity_timeout: {inactivity_timeout}}}\n"
            + (f"media: {{workers: {media_workers}}}\n" if media_workers else "")
            + 'store: {url: "sqlite+aiosqlite:///switchboard.db"}\n'
            + http_yaml
            + "extensions:\n"
            f"{ext_lines}"
            f"{extra_yaml}"
        )
        if setup is not None:
            setup(workdir)  # extra files next to the config (IVR flows, prompts)
        self.log_path = workdir / "switchboard.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def uri(self, ext: str) -> str:
        return f"sip:{ext}@127.0.0.1:{self.sip_port}"

    def password(self, ext: str) -> str:
        return str(self.extensions[ext]["password"])

    def start(self, timeout: float = 20.0) -> Switchboard:
        # A killed server leaves its token behind: ready means the new one wrote its own.
        (self.workdir / "admin.token").unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "serve",
                "--config",
                str(self.workdir),
                "--log-json",
                "--log-level",
                self.log_level,
            ],
            cwd=str(REPO_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard exited early:\n{self.log_text()[-3000:]}")
            if options_ping(self.sip_port, timeout=0.5) == 200 and self._http_up():
                return self
        raise RuntimeError(f"switchboard did not answer OPTIONS:\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    # -- the HTTP API -------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def admin_token(self) -> str:
        """The local admin token the running server wrote next to its config."""
        return (self.workdir / "admin.token").read_text().strip()

    def _http_up(self) -> bool:
        """The API answers (the server opens it right after SIP), or it is configured off."""
        if "enabled: false" in self.config_path.read_text():
            return True
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5):
                pass
        except OSError:
            return False
        return (self.workdir / "admin.token").exists()

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        """One API request as the local admin (or with ``token``): an ``httpx.Response``."""
        import httpx

        headers = {"Authorization": f"Bearer {token or self.admin_token()}"}
        headers.update(kwargs.pop("headers", None) or {})
        return httpx.request(method, self.api_url + path, headers=headers, timeout=10.0, **kwargs)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    # -- the store ---------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if not self.db_path.exists():
            return []
        con = sqlite3.connect(str(self.db_path), timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, params)]
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    def call_records(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM call_records ORDER BY id")

    def wait_call_records(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = wait_for(
            lambda: (r := self.call_records()) and len(r) >= count and r,
            timeout,
            f"{count} call record(s)",
        )
        return records

    def bindings(self, aor: str | None = None) -> list[dict[str, Any]]:
        if aor is None:
            return self.query("SELECT * FROM registrations")
        return self.query("SELECT * FROM registrations WHERE aor = ?", (aor,))


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def options_ping(port: int, timeout: float = 1.0, host: str = "127.0.0.1") -> int | None:
    """Send one OPTIONS over UDP; the status code of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        lport = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:ping@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        try:
            s.sendto(msg, (host, port))
            data, _ = s.recvfrom(65535)
        except OSError:
            return None
        try:
            return int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None

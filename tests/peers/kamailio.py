"""Kamailio as a carrier for trunk tests: a registrar with digest auth and a DID relay.

Use
---
::

    from tests.peers.kamailio import Kamailio, CarrierConfig

    carrier = Kamailio(tmp_path / "kamailio", CarrierConfig(port=free_udp_port()))
    carrier.start()                       # kamailio -DD -E -f cfg, foreground, PID kept
    try:
        carrier.wait_log(r"SBT SAVED aor=sip:sbtrunk@", timeout=10)
        carrier.registered_contacts("sbtrunk")   # from ``kamcmd ul.dump``
        carrier.count(r"SBT REGISTER user=sbtrunk")
    finally:
        carrier.stop()                    # SIGTERM to that PID (then SIGKILL), never by name

What the generated config does (PEERS.md, "Kamailio as a carrier"), no database anywhere:

* **REGISTER**: challenged with ``www_challenge`` (qop=auth, algorithm from
  ``CarrierConfig.algorithm``: MD5 or SHA-256), checked with ``pv_www_authenticate()``
  against an ``htable`` holding the trunk account (``trunk_user``/``trunk_password``) and
  one shared password for PSTN users matching ``^555[0-9]+$`` (``pstn_password``); then
  ``save("location")``. Users in ``forbidden_users`` get 403. ``max_expires`` /
  ``min_expires`` bound what the registrar grants (a short ``max_expires`` makes refreshes
  come quickly).
* **DIDs** ``^41[0-9][0-9]$``: looked up at the trunk's AOR (``sip:<trunk_user>@<host>``),
  the dialled DID put back into the user part, relayed (480 when the trunk is not
  registered).
* **PSTN numbers** ``^555[0-9]+$``: ordinary ``lookup("location")`` and relay.
* In-dialog requests follow Record-Route; OPTIONS to the carrier itself get 200.
* With ``tls_port`` (and ``tls_certificate``/``tls_key``, PEM files), it also listens for
  SIP over TLS there (the ``tls`` module, package ``kamailio-tls-modules``); it asks no
  client certificate. A carrier reached over TLS answers on the connection it was reached on.

Each REGISTER is logged as ``SBT REGISTER user=… cseq=… expires=… auth=yes|no``, each
failed check as ``SBT AUTH FAILED user=… rc=…``, each stored binding as ``SBT SAVED aor=…
contact=… proto=udp|tls``, each relayed call as ``SBT RELAY ruri=…`` — count them with
:meth:`count` or wait for them with :meth:`wait_log`. ``kamcmd`` talks to the ``ctl``
module over a unix socket in the work folder (:meth:`kamcmd`, :meth:`registered_contacts`).

Restarting on the same port (``stop()`` then ``start()``) is a carrier restart: the location
table is memory-only, so every binding is gone and the nonce secret changes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


@dataclass
class CarrierConfig:
    port: int
    host: str = "127.0.0.1"
    trunk_user: str = "sbtrunk"
    trunk_password: str = "trunkpw"
    pstn_password: str = "pstnpw"
    realm: str = "carrier.test"
    algorithm: str = "MD5"  # or SHA-256 (auth module, RFC 8760)
    max_expires: int = 3600
    min_expires: int = 5
    forbidden_users: list[str] = field(default_factory=list)
    extra_users: dict[str, str] = field(default_factory=dict)  # more htable accounts
    tls_port: int | None = None  # also listen for SIP over TLS here
    tls_certificate: Path | None = None
    tls_key: Path | None = None

    def render(self, ctl_socket: Path) -> str:
        users = {self.trunk_user: self.trunk_password, **self.extra_users}
        seed = "\n".join(f'    $sht(creds=>{u}) = "{p}";' for u, p in users.items())
        forbidden = " || ".join(f'$au == "{u}"' for u in self.forbidden_users) or '$au == ""'
        trunk_aor = f"sip:{self.trunk_user}@{self.host}"
        tls_globals = tls_modules = ""
        if self.tls_port is not None:
            tls_globals = (
                "enable_tls=yes\n"
                f"listen=tls:{self.host}:{self.tls_port}\n"
                f"alias={self.host}:{self.tls_port}\n"
            )
            tls_modules = (
                'loadmodule "tls.so"\n'
                'modparam("tls", "tls_method", "TLSv1.2+")\n'
                f'modparam("tls", "certificate", "{self.tls_certificate}")\n'
                f'modparam("tls", "private_key", "{self.tls_key}")\n'
                'modparam("tls", "verify_certificate", 0)\n'
                'modparam("tls", "require_certificate", 0)\n'
            )
        return f"""#!KAMAILIO
debug=2
log_stderror=yes
log_prefix=""
children=2
disable_tcp={"no" if self.tls_port is not None else "yes"}
auto_aliases=no
listen=udp:{self.host}:{self.port}
alias={self.host}:{self.port}
{tls_globals}mpath="{MODULES}/"

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "htable.so"
loadmodule "auth.so"
loadmodule "ctl.so"
{tls_modules}
modparam("ctl", "binrpc", "unix:{ctl_socket}")
modparam("htable", "htable", "creds=>size=6;")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", {self.max_expires})
modparam("registrar", "min_expires", {self.min_expires})
modparam("auth", "algorithm", "{self.algorithm}")
modparam("auth", "nonce_expire", 300)

event_route[htable:mod-init] {{
{seed}
}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    record_route();
    if ($rU =~ "^41[0-9][0-9]$") {{
        route(DID);
        exit;
    }}
    if ($rU =~ "^555[0-9]+$") {{
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        xlog("L_NOTICE", "SBT RELAY ruri=$ru\\n");
        t_relay();
        exit;
    }}
    sl_send_reply("404", "Not Found");
}}

route[REGISTRAR] {{
    $var(authlen) = 0;
    if (is_present_hf("Authorization")) {{
        $var(authlen) = $(hdr(Authorization){{s.len}});
    }}
    xlog("L_NOTICE", "SBT REGISTER user=$fU cseq=$cs expires=$hdr(Expires) auth=$var(authlen)\\n");
    if (!is_present_hf("Authorization")) {{
        www_challenge("{self.realm}", "1");
        exit;
    }}
    if ({forbidden}) {{
        xlog("L_NOTICE", "SBT FORBIDDEN user=$au\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    $var(pw) = "-no-such-user-";
    if ($au =~ "^555[0-9]+$") {{
        $var(pw) = "{self.pstn_password}";
    }} else if ($sht(creds=>$au) != $null) {{
        $var(pw) = $sht(creds=>$au);
    }}
    # flags 0: $var(pw) is the plain password (1 would mean an HA1 hash)
    $var(rc) = pv_www_authenticate("{self.realm}", "$var(pw)", "0");
    if ($var(rc) < 0) {{
        xlog("L_NOTICE", "SBT AUTH FAILED user=$au rc=$var(rc)\\n");
        www_challenge("{self.realm}", "1");
        exit;
    }}
    consume_credentials();
    if (!save("location")) {{
        sl_reply_error();
        exit;
    }}
    xlog("L_NOTICE", "SBT SAVED aor=$tu contact=$ct proto=$pr\\n");
}}

route[DID] {{
    $var(did) = $rU;
    if (!lookup("location", "{trunk_aor}")) {{
        sl_send_reply("480", "Trunk Not Registered");
        exit;
    }}
    $rU = $var(did);
    xlog("L_NOTICE", "SBT RELAY ruri=$ru\\n");
    t_relay();
}}
"""


class Kamailio:
    """One Kamailio process in the foreground, started and stopped by PID."""

    def __init__(self, workdir: Path, config: CarrierConfig) -> None:
        self.binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(self.binary).exists():
            pytest.skip("kamailio not installed (apt-get install kamailio)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.ctl_socket = workdir / "kamailio_ctl"
        self.cfg_path = workdir / "kamailio.cfg"
        self.log_path = workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 10.0) -> Kamailio:
        self.cfg_path.write_text(self.config.render(self.ctl_socket))
        with contextlib.suppress(FileNotFoundError):
            self.ctl_socket.unlink()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [
                self.binary,
                "-DD",
                "-E",
                "-f",
                str(self.cfg_path),
                "-m",
                "64",
                "-M",
                "8",
                "-Y",
                str(self.workdir),
                "-w",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited early:\n{self.log_text()[-3000:]}")
            if self.ctl_socket.exists() and self._ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not come up:\n{self.log_text()[-3000:]}")

    def _ping(self) -> bool:
        try:
            return self.kamcmd("core.version", timeout=2).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to our PID (the main process takes its children down), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it saw -------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.log_text().splitlines() if rx.search(line)]

    def count(self, pattern: str) -> int:
        return len(self.lines(pattern))

    def wait_log(self, pattern: str, timeout: float, at_least: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines(pattern)
            if len(found) >= at_least:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"kamailio logged {pattern!r} {self.count(pattern)} time(s), wanted {at_least}:\n"
            + self.log_text()[-2000:]
        )

    def kamcmd(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        binary = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        return subprocess.run(
            [binary, "-s", f"unix:{self.ctl_socket}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def registered_contacts(self, user: str) -> list[str]:
        """Contact URIs bound to AOR ``user`` (``kamcmd ul.dump``)."""
        out = self.kamcmd("ul.dump").stdout
        contacts: list[str] = []
        current: str | None = None
        for line in out.splitlines():
            s = line.strip()
            if s.lower().startswith("aor:"):
                current = s.split(":", 1)[1].strip()
            elif s.startswith("Address:") and current == user:
                contacts.append(s.split(":", 1)[1].strip())
        return contacts

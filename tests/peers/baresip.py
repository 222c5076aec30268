"""Headless baresip 1.0.0 as a test peer, driven over its ``ctrl_tcp`` interface.

Theory of operation
-------------------
``Baresip`` writes a private config directory (``config``, ``accounts``, ``contacts``) and
starts ``baresip -f DIR``. There is no sound card, so:

* the audio source is the ``ausine`` module (a sine at ``tone_hz``); it only works at
  48 kHz stereo (``ausrc_srate 48000``, ``ausrc_channels 2``), otherwise calls never
  answer (PEERS.md);
* the player is ``alsa,null`` (ALSA's null PCM: discards audio, but clocks the player);
* the ``sndfile`` audio filter dumps both directions of each call into ``snd_path``:
  ``dump-*-enc.wav`` is what baresip sent, ``dump-*-dec.wav`` what it received.

Control: ``ctrl_tcp`` speaks netstrings (``LEN:JSON,``). Commands are
``{"command": "dial", "params": "sip:...", "token": "7"}`` and get a
``{"response": true, "ok": true, "data": "...", "token": "7"}``; events arrive as
``{"event": true, "type": "CALL_ESTABLISHED", ...}``. A reader thread sorts them like
``phones.Phone`` does. baresip binds TCP on the SIP port *and* SIP port + 1, so the
control port must not be either of those.

Accounts: ``net_interface 127.0.0.1`` (the name ``lo`` fails); the registrar comes from the
AoR's host:port, and ``outbound="sip:127.0.0.1:PORT"`` is needed or dialled calls go to
port 5060. ``answermode=auto`` auto-answers (needs the ``menu`` module).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peers.sipp import _children

MODULE_PATH = "/usr/lib/baresip/modules"

Event = dict[str, Any]


class BaresipError(RuntimeError):
    pass


class Baresip:
    """One baresip process with one account.

    ``registrar``: "127.0.0.1:PORT" to register ``user`` there (and route calls through
    it), or None for a registrar-less phone reachable at ``sip:user@127.0.0.1:sip_port``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        sip_port: int,
        ctrl_port: int,
        user: str = "baresip",
        password: str | None = None,
        registrar: str | None = None,
        tone_hz: int = 1500,
        auto_answer: bool = True,
        codecs: tuple[str, ...] = ("g711",),
        rtp_ports: tuple[int, int] = (40000, 40999),
        lifetime: float = 120.0,
        start_timeout: float = 10.0,
    ) -> None:
        if ctrl_port in (sip_port, sip_port + 1):
            raise ValueError("ctrl_port collides with baresip's SIP TCP ports")
        self.workdir = Path(workdir)
        self.cfg_dir = self.workdir / "cfg"
        self.snd_dir = self.workdir / "snd"
        self.cfg_dir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.user = user
        self.registrar = registrar
        modules = [f"module\t\t\t{c}.so" for c in codecs]
        config = "\n".join(
            [
                "poll_method\t\tepoll",
                f"sip_listen\t\t127.0.0.1:{sip_port}",
                "net_interface\t\t127.0.0.1",
                "audio_player\t\talsa,null",
                f"audio_source\t\tausine,{tone_hz}",
                "audio_alert\t\talsa,null",
                "ausrc_srate\t\t48000",
                "ausrc_channels\t\t2",
                f"rtp_ports\t\t{rtp_ports[0]}-{rtp_ports[1]}",
                f"module_path\t\t{MODULE_PATH}",
                *modules,
                "module\t\t\tausine.so",
                "module\t\t\talsa.so",
                "module\t\t\tsndfile.so",
                "module_app\t\taccount.so",
                "module_app\t\tmenu.so",
                "module_app\t\tctrl_tcp.so",
                f"ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}",
                f"snd_path\t\t{self.snd_dir}",
                "",
            ]
        )
        (self.cfg_dir / "config").write_text(config)
        params = []
        if registrar:
            aor = f"<sip:{user}@{registrar}>"
            if password is not None:
                params.append(f"auth_pass={password}")
            params.append(f'outbound="sip:{registrar}"')
            params.append("regint=300")
        else:
            aor = f"<sip:{user}@127.0.0.1>"
            params.append("regint=0")
        if auto_answer:
            params.append("answermode=auto")
        (self.cfg_dir / "accounts").write_text(aor + ";" + ";".join(params) + "\n")
        (self.cfg_dir / "contacts").write_text("")
        self.log_path = self.workdir / "baresip.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["timeout", "-k", "2", f"{lifetime:g}", "baresip", "-f", str(self.cfg_dir)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, Event] = {}
        self._token = 0
        self._closed = False
        self._sock = self._connect(start_timeout)
        self._reader = threading.Thread(target=self._read_loop, name="baresip-ctrl", daemon=True)
        self._reader.start()

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    # ---- ctrl_tcp plumbing ----
    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self._fail(f"exited with {self.proc.returncode} during start")
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise self._fail("ctrl_tcp never came up") from None
                time.sleep(0.1)

    def _read_loop(self) -> None:
        buf = b""
        self._sock.settimeout(None)
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:  # netstrings: LEN ":" DATA ","
                colon = buf.find(b":")
                if colon < 0:
                    break
                try:
                    n = int(buf[:colon])
                except ValueError:
                    buf = b""
                    break
                if len(buf) < colon + 1 + n + 1:
                    break
                data = buf[colon + 1 : colon + 1 + n]
                buf = buf[colon + 1 + n + 1 :]
                try:
                    msg = json.loads(data)
                except ValueError:
                    continue
                with self._cond:
                    if msg.get("response"):
                        self._responses[str(msg.get("token"))] = msg
                    else:
                        msg["_t"] = time.monotonic()
                        self._events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._closed_sock = True
            self._cond.notify_all()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _fail(self, what: str) -> BaresipError:
        return BaresipError(
            f"baresip: {what}\n--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip command (as in its menu, e.g. "dial", "hangup", "reginfo");
        return the response's ``data`` text. Raises if baresip says it failed."""
        with self._cond:
            self._token += 1
            token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"no response to {command} within {timeout}s")
                self._cond.wait(left)
            resp = self._responses.pop(token)
        if not resp.get("ok", False):
            raise self._fail(f"{command} {params} failed: {resp.get('data')}")
        return str(resp.get("data", ""))

    def wait_event(
        self,
        predicate: Callable[[Event], bool] | None = None,
        timeout: float = 10.0,
        **fields: Any,
    ) -> Event:
        """Oldest unconsumed ctrl_tcp event matching ``fields`` (e.g. type="CALL_CLOSED")."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self._events):
                    if i in self._consumed:
                        continue
                    if all(ev.get(k) == v for k, v in fields.items()) and (
                        predicate is None or predicate(ev)
                    ):
                        self._consumed.add(i)
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    types = [e.get("type") for e in self._events]
                    raise self._fail(f"no event {fields} within {timeout}s; saw {types}")
                if self.proc.poll() is not None:
                    raise self._fail("exited while waiting for an event")
                self._cond.wait(min(left, 0.5))

    def events(self, **fields: Any) -> list[Event]:
        with self._cond:
            return [e for e in self._events if all(e.get(k) == v for k, v in fields.items())]

    # ---- helpers ----
    def wait_registered(self, timeout: float = 10.0) -> Event:
        def done(ev: Event) -> bool:
            return ev.get("type") in ("REGISTER_OK", "REGISTER_FAIL")

        ev = self.wait_event(done, timeout=timeout)
        if ev.get("type") != "REGISTER_OK":
            raise self._fail(f"registration failed: {ev}")
        return ev

    def dial(self, uri: str) -> str:
        return self.command("dial", uri)

    def answer(self) -> str:
        return self.command("accept")

    def hangup(self) -> str:
        return self.command("hangup")

    def wait_call(self, type_: str, timeout: float = 10.0) -> Event:
        """Wait for a call event: CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED."""
        return self.wait_event(timeout=timeout, type=type_)

    def recordings(self, direction: str = "dec") -> list[Path]:
        """sndfile dumps: "dec" = audio baresip received, "enc" = audio it sent."""
        return sorted(self.snd_dir.glob(f"*-{direction}.wav"))

    def close(self) -> None:
        """Quit baresip (ctrl "quit"), kill it if it lingers, join the reader."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            try:
                body = json.dumps({"command": "quit", "params": "", "token": "q"}).encode()
                self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
            except (OSError, AttributeError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                # proc is coreutils timeout: SIGKILL baresip itself, then the wrapper.
                for pid in _children(self.proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)
        sock = getattr(self, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(5)
        self._log.close()

    def __enter__(self) -> Baresip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

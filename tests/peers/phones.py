"""Parent side of the PJSUA2 test phone: ``Phone`` runs ``tests/peers/phone.py`` in a child
process and exposes plain synchronous methods.

Theory of operation
-------------------
The child speaks JSON lines (see ``phone.py``). One daemon reader thread per phone reads the
child's stdout and sorts lines into replies (matched by ``id``) and events (appended to a
list). Commands block until their reply arrives or a timeout expires. ``wait_event`` scans
the events not yet consumed, oldest first, so an event that arrived *before* the wait is
still found; each event is returned by at most one ``wait_event``.

``close()`` asks the child to quit, then kills it if it does not exit quickly, then joins
the reader thread: no leaked processes or threads. The child's stderr (pjlib log) goes to
``<log_dir>/<name>.log``; failures quote its tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

REPO_ROOT = Path(__file__).resolve().parents[2]
PHONE_SCRIPT = Path(__file__).with_name("phone.py")

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class PhoneError(RuntimeError):
    """The phone answered a command with an error, died, or did not answer in time."""


class Phone:
    """A PJSUA2 softphone in its own process.

    >>> with Phone(name="a") as a:                         # doctest: +SKIP
    ...     a.call("sip:b@127.0.0.1:5072")
    ...     a.wait_call_state("CONFIRMED")
    """

    def __init__(
        self,
        name: str = "phone",
        *,
        port: int = 0,
        user: str | None = None,
        auto_answer: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        log_level: int = 4,
        rtp_port: int = 0,
        clock_rate: int = 0,
        lock_codec: bool = True,
        info_gap: float = 0.25,
        start_timeout: float = 15.0,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.user = user or name
        log_dir = Path(log_dir) if log_dir is not None else Path(os.environ.get("TMPDIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in close())
        cmd = [
            python,
            str(PHONE_SCRIPT),
            "--port",
            str(port),
            "--user",
            self.user,
            "--log-level",
            str(log_level),
            "--rtp-port",
            str(rtp_port),
            "--clock-rate",
            str(clock_rate),
            "--info-gap",
            str(info_gap),
        ]
        if auto_answer:
            cmd += ["--auto-answer", str(auto_answer)]
        if not lock_codec:
            cmd.append("--no-lock-codec")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(REPO_ROOT),
            close_fds=True,
        )
        self._cond = threading.Condition()
        self._replies: dict[int, Event] = {}
        self._events: list[Event] = []
        self._consumed: set[int] = set()  # indexes into _events
        self._next_id = 1
        self._eof = False
        self._closed = False
        self._quit_sent = False
        self._reader = threading.Thread(
            target=self._read_loop, name=f"phone-reader-{name}", daemon=True
        )
        self._reader.start()
        try:
            ready = self.wait_event(event="ready", timeout=start_timeout)
        except PhoneError:
            self.close()
            raise
        self.port: int = int(ready["port"])
        self.pid: int = int(ready["pid"])

    # ---- plumbing ----
    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                if "id" in msg and "event" not in msg:
                    self._replies[int(msg["id"])] = msg
                else:
                    msg["_t"] = time.monotonic()
                    self._events.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _fail(self, what: str) -> PhoneError:
        return PhoneError(
            f"phone {self.name}: {what}\n--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )

    def command(self, cmd: str, timeout: float = 10.0, **params: Any) -> Any:
        """Send one command; return its ``result`` or raise ``PhoneError``."""
        if self._closed:
            raise PhoneError(f"phone {self.name} is closed")
        with self._cond:
            mid = self._next_id
            self._next_id += 1
        line = json.dumps({"id": mid, "cmd": cmd, **params}) + "\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise self._fail(f"cannot send {cmd}: {e}") from e
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._eof:
                    raise self._fail(f"died while running {cmd}")
                if left <= 0:
                    raise self._fail(f"no reply to {cmd} within {timeout}s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if not reply.get("ok"):
            raise PhoneError(f"phone {self.name}: {cmd} failed: {reply.get('error')}")
        return reply.get("result")

    @staticmethod
    def _matcher(predicate: Predicate | None, fields: dict[str, Any]) -> Predicate:
        def match(ev: Event) -> bool:
            for k, v in fields.items():
                if ev.get(k) != v:
                    return False
            return predicate(ev) if predicate is not None else True

        return match

    def wait_event(
        self, predicate: Predicate | None = None, timeout: float = 10.0, **fields: Any
    ) -> Event:
        """Return (and consume) the oldest unconsumed event matching ``fields`` and
        ``predicate``; wait up to ``timeout`` seconds for one to arrive."""
        match = self._matcher(predicate, fields)
        deadline = time.monotonic() + timeout
        with self._cond:
            start = 0
            while True:
                for i in range(start, len(self._events)):
                    if i not in self._consumed and match(self._events[i]):
                        self._consumed.add(i)
                        return self._events[i]
                start = 0
                left = deadline - time.monotonic()
                if self._eof:
                    raise self._fail(f"exited while waiting for {fields or predicate}")
                if left <= 0:
                    raise self._fail(
                        f"no event {fields or ''} {predicate or ''} within {timeout}s; "
                        f"events: {self.events()}"
                    )
                self._cond.wait(min(left, 0.5))

    def events(self, predicate: Predicate | None = None, **fields: Any) -> list[Event]:
        """All events seen so far (consumed or not) that match."""
        match = self._matcher(predicate, fields)
        with self._cond:
            return [e for e in self._events if match(e)]

    # ---- commands ----
    @overload
    def register(
        self,
        registrar: str,
        user: str | None = None,
        password: str = "",
        *,
        realm: str = "*",
        expires: int = 300,
        domain: str | None = None,
        use_proxy: bool = True,
        transport: str = "udp",
        wait: Literal[True] = True,
        timeout: float = 10.0,
        mwi: bool = False,
    ) -> Event: ...

    @overload
    def register(
        self,
        registrar: str,
        user: str | None = None,
        password: str = "",
        *,
        realm: str = "*",
        expires: int = 300,
        domain: str | None = None,
        use_proxy: bool = True,
        transport: str = "udp",
        wait: Literal[False],
        timeout: float = 10.0,
        mwi: bool = False,
    ) -> None: ...

    def register(
        self,
        registrar: str,
        user: str | None = None,
        password: str = "",
        *,
        realm: str = "*",
        expires: int = 300,
        domain: str | None = None,
        use_proxy: bool = True,
        transport: str = "udp",
        wait: bool = True,
        timeout: float = 10.0,
        mwi: bool = False,
    ) -> Event | None:
        """Create an account registering ``sip:user@domain`` at ``registrar`` ("host:port").
        Later calls go through the registrar as outbound proxy (``use_proxy``). With ``wait``
        returns the first ``reg_state`` event (check its ``code``)."""
        params: dict[str, Any] = {
            "registrar": registrar,
            "user": user or self.user,
            "password": password,
            "realm": realm,
            "expires": expires,
            "use_proxy": use_proxy,
            "transport": transport,
        }
        if domain is not None:
            params["domain"] = domain
        if mwi:  # also SUBSCRIBE to message-summary (message-waiting indication)
            params["mwi"] = True
        self.command("register", **params)
        if wait:
            return self.wait_event(event="reg_state", timeout=timeout)
        return None

    def wait_mwi(self, waiting: bool, timeout: float = 10.0) -> Event:
        """The next message-summary NOTIFY saying ``Messages-Waiting: yes`` (or ``no``)."""
        return self.wait_event(event="mwi", waiting=waiting, timeout=timeout)

    def unregister(self, wait: bool = True, timeout: float = 10.0) -> Event | None:
        self.command("unregister")
        if wait:
            return self.wait_event(event="reg_state", timeout=timeout)
        return None

    def call(self, uri: str) -> int:
        """Place a call; returns this phone's call id."""
        return int(self.command("call", uri=uri)["call"])

    def answer(self, call: int | None = None, code: int = 200) -> None:
        self.command("answer", call=call, code=code)

    def ringing(self, call: int | None = None) -> None:
        self.command("ringing", call=call)

    def reject(self, call: int | None = None, code: int = 486) -> None:
        self.command("reject", call=call, code=code)

    def hangup(self, call: int | None = None, code: int | None = None) -> None:
        params: dict[str, Any] = {"call": call}
        if code is not None:
            params["code"] = code
        self.command("hangup", **params)

    def reinvite(self, call: int | None = None, method: str = "invite") -> None:
        """Send a re-INVITE (or UPDATE) with a new offer: a session refresh."""
        self.command("reinvite", call=call, method=method)

    def xfer(self, uri: str, call: int | None = None) -> None:
        """Blind transfer of ``call``'s far end to ``uri`` (REFER)."""
        self.command("xfer", call=call, uri=uri)

    def xfer_replaces(self, call: int, dest: int) -> None:
        """Attended transfer: connect ``call``'s far end with ``dest``'s far end."""
        self.command("xfer_replaces", call=call, dest=dest)

    def unhold(self, call: int | None = None) -> None:
        self.command("reinvite", call=call)

    def conference(self, call: int, other: int) -> None:
        """Mix two of this phone's calls (a three-way conference made by the phone)."""
        self.command("conference", call=call, other=other)

    def hold(self, call: int | None = None) -> None:
        self.command("hold", call=call)

    def play(
        self, path: str | os.PathLike[str], call: int | None = None, loop: bool = True
    ) -> None:
        """Play a WAV into the call (deferred until media is active)."""
        self.command("play", call=call, path=str(path), loop=loop)

    def stop_play(self, call: int | None = None) -> None:
        self.command("stop_play", call=call)

    def record(self, path: str | os.PathLike[str], call: int | None = None) -> None:
        """Record what this phone hears (WAV at the bridge rate, 16 kHz by default)."""
        self.command("record", call=call, path=str(path))

    def stop_record(self, call: int | None = None) -> None:
        """Stop and destroy the recorder, which finalises the WAV header."""
        self.command("stop_record", call=call)

    def send_dtmf(self, digits: str, call: int | None = None, method: str = "rfc4733") -> None:
        """``method``: "rfc4733" (RTP events) or "info" (SIP INFO, paced by the phone)."""
        self.command("send_dtmf", call=call, digits=digits, method=method)

    def set_codecs(self, codecs: list[str]) -> list[str]:
        """Enable only these codecs, in this priority order (e.g. ["PCMU"] or ["PCMA"])."""
        return list(self.command("codecs", codecs=codecs)["enabled"])

    def set_auto_answer(self, code: int | None = 200) -> None:
        self.command("auto_answer", code=code)

    def get_info(self, call: int | None = None) -> dict[str, Any]:
        return dict(self.command("get_info", call=call))

    def calls(self) -> list[dict[str, Any]]:
        return list(self.command("calls"))

    # ---- waiting helpers ----
    def wait_call_state(self, state: str, call: int | None = None, timeout: float = 10.0) -> Event:
        fields: dict[str, Any] = {"event": "call_state", "state": state}
        if call is not None:
            fields["call"] = call
        return self.wait_event(timeout=timeout, **fields)

    def wait_incoming(self, timeout: float = 10.0) -> Event:
        return self.wait_event(event="incoming_call", timeout=timeout)

    def wait_media_active(self, call: int | None = None, timeout: float = 10.0) -> Event:
        def active(ev: Event) -> bool:
            return "ACTIVE" in ev.get("status", []) and (call is None or ev.get("call") == call)

        return self.wait_event(active, timeout=timeout, event="media_state")

    def wait_disconnected(self, call: int | None = None, timeout: float = 10.0) -> Event:
        """Returns the DISCONNECTED event; its ``code`` is the call's final SIP status."""
        return self.wait_call_state("DISCONNECTED", call=call, timeout=timeout)

    def wait_dtmf(self, count: int, call: int | None = None, timeout: float = 10.0) -> str:
        """Wait until ``count`` DTMF digits arrived (in total, on ``call`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [
                e["digit"]
                for e in self.events(event="dtmf")
                if call is None or e.get("call") == call
            ]
            if len(got) >= count:
                return "".join(got)
            if time.monotonic() > deadline:
                raise self._fail(f"only DTMF {''.join(got)!r} within {timeout}s")
            if self._eof:
                raise self._fail("exited while waiting for DTMF")
            time.sleep(0.05)

    def dtmf_received(self, call: int | None = None) -> str:
        return "".join(
            e["digit"] for e in self.events(event="dtmf") if call is None or e.get("call") == call
        )

    @property
    def uri(self) -> str:
        """Direct (registrar-less) URI of this phone."""
        return f"sip:{self.user}@127.0.0.1:{self.port}"

    # ---- lifetime ----
    def request_quit(self) -> None:
        """Ask the child to quit without waiting (pjsua's shutdown takes ~1 s: request
        several phones' quits first, then ``close()`` each)."""
        if self._quit_sent or self.proc.poll() is not None:
            return
        self._quit_sent = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"id":0,"cmd":"quit"}\n')
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def close(self, timeout: float = 5.0) -> None:
        """Quit the child (clean libDestroy), kill it if it lingers, join the reader."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            self.request_quit()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # The child is gone, so its stdout hits EOF and the reader ends by itself.
        self._reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._log.close()

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self.proc.poll() is None:
            self.proc.kill()

"""Run SIPp 3.6 scenarios with hard bounds and read back what happened.

Theory of operation
-------------------
SIPp's own ``-timeout`` does not end a run whose calls are stuck (PEERS.md), so every run
gets ``-m`` (a call count), ``-recv_timeout`` (a stuck call fails instead of waiting), and
the coreutils ``timeout`` wrapper (the process dies no matter what). Statistics go to
``-trace_stat`` (``-stf`` names the CSV), errors to ``-trace_err``; the run happens in a
scratch directory so that ``play_pcap_audio="tone.pcap"`` in our scenarios finds the pcap
written there. Counts come from the last row of the stat CSV (cumulative ``(C)`` columns),
with the final screen as a fallback.

Exit codes (SIPp docs): 0 all calls succeeded, 1 at least one failed, 97 stopped by an
internal command, 99 normal exit without calls processed, 255/-1 fatal; 124 is ``timeout``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.pcap import write_g711_tone_pcap

SCENARIOS = Path(__file__).with_name("scenarios")


def scenario(name: str) -> Path:
    """Path of a bundled scenario: ``scenario("uac_pcap")``."""
    path = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.exists():
        raise FileNotFoundError(path)
    return path


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    stats: dict[str, str]  # last row of the stat CSV, by column name
    stdout: str
    stderr: str
    errors: str  # content of the -trace_err file
    workdir: Path
    timed_out: bool = False
    messages: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    def stat(self, column: str, default: int = 0) -> int:
        try:
            return int(float(self.stats[column]))
        except (KeyError, ValueError):
            return default

    def summary(self) -> str:
        tail = "\n".join(self.errors.splitlines()[-20:])
        return (
            f"sipp rc={self.returncode} ok={self.successful} failed={self.failed} "
            f"timed_out={self.timed_out} workdir={self.workdir}\n"
            f"--- stderr ---\n{self.stderr[-2000:]}\n--- errors ---\n{tail}"
        )


class SippProcess:
    """One SIPp run, started in the background (e.g. a UAS waiting for calls).

    ``args`` are SIPp arguments *after* the target, e.g. ``["-sf", path, "-m", "10"]``; the
    wrapper adds ``-trace_stat``/``-trace_err``, ``-nostdin``, ``-recv_timeout`` and ``-m``
    if missing, and the ``timeout`` wrapper."""

    def __init__(
        self,
        args: list[str],
        *,
        workdir: str | os.PathLike[str],
        timeout: float = 60.0,
        target: str | None = None,
        recv_timeout: str = "10s",
        max_calls: int = 1,
        name: str = "sipp",
        sipp: str = "sipp",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.timeout = timeout
        self.stat_file = self.workdir / f"{name}_stat.csv"
        self.err_file = self.workdir / f"{name}_errors.log"
        self.msg_file = self.workdir / f"{name}_messages.log"
        self.screen_file = self.workdir / f"{name}_screen.log"
        cmd = ["timeout", "-k", "3", f"{timeout:g}", sipp]
        if target:
            cmd.append(target)
        cmd += list(args)
        if "-m" not in args:
            cmd += ["-m", str(max_calls)]
        if "-recv_timeout" not in args:
            cmd += ["-recv_timeout", recv_timeout]
        cmd += [
            "-nostdin",
            "-trace_stat", "-stf", str(self.stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(self.err_file),
            "-trace_screen", "-screen_file", str(self.screen_file),
        ]  # fmt: skip
        self.cmd = cmd
        self._stdout_path = self.workdir / f"{name}_stdout.log"
        self._stderr_path = self.workdir / f"{name}_stderr.log"
        self._out = open(self._stdout_path, "wb")  # noqa: SIM115
        self._err = open(self._stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (at most ``timeout``, default the run's own bound + 5 s)."""
        timed_out = False
        try:
            rc = self.proc.wait(timeout if timeout is not None else self.timeout + 5)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait(5)
            timed_out = True
        if rc in (124, 137):
            timed_out = True
        return self._result(rc, timed_out)

    def stop(self) -> SippResult:
        """End a run that waits for more calls (e.g. a UAS): SIGUSR1 makes SIPp quit
        gracefully ("stop calls, dump stats"), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            # timeout(1) forwards the signal it gets; send ours to SIPp itself.
            for pid in _children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        rc = self.proc.wait(5)
        return self._result(rc, False)

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in _children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def _result(self, rc: int, timed_out: bool) -> SippResult:
        for f in (self._out, self._err):
            if not f.closed:
                f.close()
        stats = _last_stat_row(self.stat_file)
        ok = int(float(stats.get("SuccessfulCall(C)", "0") or 0))
        failed = int(float(stats.get("FailedCall(C)", "0") or 0))
        stdout = _read(self._stdout_path)
        if not stats:
            ok, failed = _counts_from_screen(_read(self.screen_file) + stdout)
        return SippResult(
            returncode=rc,
            successful=ok,
            failed=failed,
            stats=stats,
            stdout=stdout,
            stderr=_read(self._stderr_path),
            errors=_read(self.err_file),
            workdir=self.workdir,
            timed_out=timed_out,
        )

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for f in (self._out, self._err):
            if not f.closed:
                f.close()


def run_sipp(
    args: list[str],
    timeout: float = 60.0,
    *,
    workdir: str | os.PathLike[str],
    target: str | None = None,
    recv_timeout: str = "10s",
    max_calls: int = 1,
    name: str = "sipp",
) -> SippResult:
    """Run SIPp to completion (bounded by ``timeout`` seconds) and return its counts."""
    with SippProcess(
        args,
        workdir=workdir,
        timeout=timeout,
        target=target,
        recv_timeout=recv_timeout,
        max_calls=max_calls,
        name=name,
    ) as p:
        return p.wait()


def prepare_tone_pcap(
    workdir: str | os.PathLike[str], freq_hz: float = 1000.0, seconds: float = 3.0
) -> Path:
    """Write ``tone.pcap`` (PCMU RTP, loopback addresses) where our scenarios look for it."""
    return write_g711_tone_pcap(Path(workdir) / "tone.pcap", freq_hz, seconds)


def write_auth_injection(
    path: str | os.PathLike[str], users: list[tuple[str, str]], *, mode: str = "SEQUENTIAL"
) -> Path:
    """Injection CSV for register_auth*.xml: ``user;[authentication username=u password=p]``.

    SIPp cannot nest ``[field0]`` inside ``[authentication ...]``; it does expand a whole
    injected ``[authentication ...]`` keyword (PEERS.md)."""
    lines = [mode]
    for user, password in users:
        if ";" in user or ";" in password or " " in password or "]" in password:
            raise ValueError(f"unsafe characters for a SIPp CSV field: {user!r}/{password!r}")
        lines.append(f"{user};[authentication username={user} password={password}]")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (SIPp under ``timeout``), from /proc."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_stat_row(path: Path) -> dict[str, str]:
    # Stat CSV is ';'-separated with a header row; the last row carries cumulative counters.
    for _ in range(20):  # SIPp may still be flushing right after exit
        text = _read(path)
        rows = list(csv.reader(text.splitlines(), delimiter=";"))
        if len(rows) >= 2:
            header, last = rows[0], rows[-1]
            return {h.strip(): v.strip() for h, v in zip(header, last, strict=False)}
        if not path.exists():
            return {}
        time.sleep(0.05)
    return {}


_SCREEN_RE = {
    "ok": re.compile(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)"),
    "failed": re.compile(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)"),
}


def _counts_from_screen(text: str) -> tuple[int, int]:
    ok = _SCREEN_RE["ok"].findall(text)
    failed = _SCREEN_RE["failed"].findall(text)
    return (int(ok[-1]) if ok else 0, int(failed[-1]) if failed else 0)

"""Shared plumbing for the benchmarks in ``bench/`` (not a benchmark itself: ``make bench``
skips files starting with ``_``).

Theory of operation
-------------------
Every benchmark is self-contained: it picks free loopback ports, writes configs into a
temporary folder, starts the servers it measures (Switchboard as ``python -m cli serve``,
Kamailio in the foreground with ``-DD -E``), drives them with SIPp at rising rates and stops
everything it started by PID, whatever happens. A *step* is one SIPp run at a fixed rate for
a few seconds; a step is *clean* when every call succeeded, none failed or timed out, and
SIPp really achieved (≥ 90 %) the rate it was asked for, with retransmissions (an answer
slower than 500 ms) for at most 1 % of the calls — an overloaded server slows its
answers, SIPp's concurrency cap (``-l``) then throttles the offered rate, and a step that
"passes" at half its target rate would overstate the peak.

The rate search climbs geometrically until the first dirty step, then bisects between the
last clean and the first dirty rate a couple of times. It reports the highest clean rate.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.peers.sipp import SippProcess, SippResult  # noqa: E402
from tests.peers.switchboard import Switchboard  # noqa: E402

BENCH = Path(__file__).resolve().parent

__all__ = [
    "REPO_ROOT",
    "Kamailio",
    "RateSearch",
    "SippProcess",
    "SippResult",
    "Step",
    "Switchboard",
    "free_udp_port",
    "percentile",
    "print_table",
    "require",
    "uvloop_installed",
]

_handed_out: set[int] = set()


class SetupError(RuntimeError):
    """Something the benchmark needs is missing or did not start (exit code 2)."""


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SetupError(
            f"missing tools: {', '.join(missing)} (Debian: apt-get install sip-tester kamailio)"
        )


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def free_udp_port(pair: bool = False) -> int:
    """A UDP+TCP port on 127.0.0.1 free a moment ago (and port+1 too when ``pair``)."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        wanted = (port, port + 1) if pair else (port,)
        if any(p in _handed_out for p in wanted) or port > 64000:
            continue
        try:
            for p in wanted:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s2:
                        s2.bind(("127.0.0.1", p))
        except OSError:
            continue
        _handed_out.update(wanted)
        return port
    raise SetupError("no free port on 127.0.0.1")


def free_port_range(size: int) -> tuple[int, int]:
    """An even-aligned block of ``size`` UDP ports on 127.0.0.1 that are all free now."""
    for start in range(20000, 60000 - size, size):
        if any(p in _handed_out for p in (start, start + size - 1)):
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(start, start + size, 16):  # sample: a busy block shows quickly
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _handed_out.update(range(start, start + size))
        return start, start + size - 1
    raise SetupError(f"no free block of {size} UDP ports")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "-+-".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    print(" | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False)))
    print(line)
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)))
    print(line)


# ---------------------------------------------------------------------------- processes


# Experiment only (``--no-store-writes``): binding writes become no-ops, to measure what the
# per-REGISTER database write costs. Never the default.
NO_STORE_WRITES = """
import app
async def _skip(self, *args, **kwargs):
    return None
app.StorePersistence.save_binding = _skip
app.StorePersistence.delete_binding = _skip
"""


class BenchSwitchboard(Switchboard):
    """:class:`Switchboard` that can run a few lines of Python before ``cli serve``."""

    prelude: str = ""

    def start(self, timeout: float = 20.0) -> Switchboard:
        if not self.prelude:
            return super().start(timeout)
        real_popen = subprocess.Popen
        prelude = self.prelude

        def popen(cmd: list[str], *args: object, **kwargs: object) -> object:
            # [python, -m, cli, serve, ...] -> [python, -c, prelude + run cli, serve, ...]
            code = (
                prelude
                + "\nimport runpy, sys\nsys.argv = ['cli', *sys.argv[1:]]\n"
                + "runpy.run_module('cli', run_name='__main__', alter_sys=True)\n"
            )
            return real_popen([cmd[0], "-c", code, *cmd[3:]], *args, **kwargs)  # type: ignore[call-overload]

        subprocess.Popen = popen  # type: ignore[assignment,misc]
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = real_popen  # type: ignore[misc]


def start_switchboard(
    workdir: Path,
    extensions: dict[str, dict[str, object]],
    *,
    rtp_range: tuple[int, int] | None = None,
    log_level: str | None = None,
    extra_yaml: str = "",
    prelude: str = "",
) -> Switchboard:
    """Start Switchboard on a free port with MD5-only digest (SIPp 3.6 speaks no SHA-256)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sb = BenchSwitchboard(
        workdir,
        free_udp_port(),
        extensions,
        rtp_range=rtp_range or free_port_range(200),
        auth={"algorithms": ["MD5"], "max_failures": 1000},
        extra_yaml=extra_yaml,
    )
    sb.prelude = prelude
    old = os.environ.get("SWITCHBOARD_LOG_LEVEL")
    if log_level:
        os.environ["SWITCHBOARD_LOG_LEVEL"] = log_level
    try:
        sb.start(timeout=30)
    except RuntimeError as exc:
        raise SetupError(str(exc)) from None
    finally:
        if log_level:
            if old is None:
                os.environ.pop("SWITCHBOARD_LOG_LEVEL", None)
            else:
                os.environ["SWITCHBOARD_LOG_LEVEL"] = old
    return sb


@contextlib.contextmanager
def running_switchboard(*args: object, **kwargs: object) -> Iterator[Switchboard]:
    sb = start_switchboard(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield sb
    finally:
        sb.stop()


class Kamailio:
    """Kamailio in the foreground (``-DD -E``), stopped by PID (PEERS.md)."""

    def __init__(self, cfg_text: str, workdir: Path, *, shm_mb: int = 1024) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg = workdir / "kamailio.cfg"
        self.cfg.write_text(cfg_text)
        self.log_path = workdir / "kamailio.log"
        (workdir / "run").mkdir(exist_ok=True)
        self.cmd = [
            "kamailio", "-DD", "-E", "-f", str(self.cfg), "-m", str(shm_mb), "-M", "16",
            "-Y", str(workdir / "run"),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        out = subprocess.run(
            ["kamailio", "-c", "-f", str(self.cfg)], capture_output=True, timeout=20, text=True
        )
        if out.returncode != 0:
            raise SetupError(f"kamailio config check failed:\n{out.stderr[-3000:]}")

    def start(self, port: int) -> Kamailio:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        # start_new_session: the whole Kamailio process group can be signalled by PID.
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        from tests.peers.switchboard import options_ping

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"kamailio exited:\n{self.log_text()[-3000:]}")
            if options_ping(port, timeout=0.3) is not None:
                return self
        self.stop()
        raise SetupError(f"kamailio did not answer OPTIONS:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


# ---------------------------------------------------------------------------- SIPp steps


@dataclass
class Step:
    rate: float  # asked for, calls/s
    calls: int  # asked for
    successful: int
    failed: int
    retransmissions: int
    elapsed: float  # seconds, from SIPp's stat CSV (start to last row)
    timed_out: bool
    note: str = ""
    rtts: list[tuple[str, float]] = field(default_factory=list)  # (rtd, ms), -trace_rtt

    def rtt(self, rtd: str) -> list[float]:
        return [ms for name, ms in self.rtts if name == rtd]

    @property
    def achieved(self) -> float:
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def clean(self) -> bool:
        return (
            not self.timed_out
            and self.failed == 0
            and self.successful == self.calls
            and self.achieved >= 0.9 * self.rate
            and self.retransmissions <= 0.01 * self.calls
        )

    def row(self) -> list[str]:
        return [
            f"{self.rate:g}",
            str(self.calls),
            str(self.successful),
            str(self.failed),
            str(self.retransmissions),
            f"{self.achieved:.0f}",
            "yes" if self.clean else "NO",
            self.note,
        ]


STEP_HEADER = ["target/s", "calls", "ok", "failed", "retrans", "achieved/s", "clean", "note"]


def stat_rows(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    if len(rows) < 2:
        return []
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, (v.strip() for v in r), strict=False)) for r in rows[1:]]


def _elapsed_seconds(value: str) -> float:
    # "00:00:05:123456" (h:m:s:us) in SIPp 3.6 stat CSVs.
    parts = value.split(":")
    try:
        if len(parts) == 4:
            h, m, s, us = (int(p) for p in parts)
            return h * 3600 + m * 60 + s + us / 1e6
        if len(parts) == 3:
            hours, minutes, seconds = parts
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        pass
    return 0.0


def read_rtts(path: Path) -> list[tuple[str, float]]:
    """(rtd name, ms) from a SIPp ``-trace_rtt`` file (``date;ms;rtd_no`` rows)."""
    out: list[tuple[str, float]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines[1:]:
        cols = line.split(";")
        if len(cols) >= 3:
            with contextlib.suppress(ValueError):
                out.append((cols[2].strip(), float(cols[1])))
    return out


def run_step(
    args: list[str],
    *,
    target: str,
    rate: float,
    seconds: float,
    workdir: Path,
    name: str,
    hold_seconds: float = 0.0,
    trace_rtt: bool = False,
) -> Step:
    """One SIPp client run at ``rate`` calls/s for ``seconds`` (``-m rate*seconds``)."""
    calls = max(1, int(rate * seconds))
    limit = max(50, int(rate * (hold_seconds + 1.5)))
    extra = ["-r", f"{rate:g}", "-rp", "1000", "-l", str(limit), "-m", str(calls)]
    if trace_rtt:
        extra += ["-trace_rtt", "-rtt_freq", "1"]
    wait = seconds + hold_seconds + 25
    workdir = workdir / name
    proc = SippProcess(
        args + extra,
        workdir=workdir,
        timeout=wait,
        target=target,
        recv_timeout="5s",
        max_calls=calls,
        name=name,
    )
    with proc:
        res = proc.wait()
    rows = stat_rows(proc.stat_file)
    retrans = 0
    elapsed = 0.0
    if rows:
        last = rows[-1]
        with contextlib.suppress(ValueError):
            retrans = int(float(last.get("Retransmissions(C)", "0") or 0))
        elapsed = _elapsed_seconds(last.get("ElapsedTime(C)", ""))
        # The last row is written when SIPp exits; the time of the last success is tighter.
        for r in rows:
            with contextlib.suppress(ValueError):
                if int(float(r.get("SuccessfulCall(C)", "0") or 0)) >= res.successful:
                    elapsed = min(elapsed, _elapsed_seconds(r.get("ElapsedTime(C)", "")))
                    break
    # SIPp exits when its last call ends: the last call started ``hold_seconds`` earlier.
    elapsed = max(0.001, elapsed - hold_seconds)
    step = Step(
        rate=rate,
        calls=calls,
        successful=res.successful,
        failed=res.failed,
        retransmissions=retrans,
        elapsed=elapsed,
        timed_out=res.timed_out,
    )
    if res.returncode not in (0, 1):
        step.note = f"sipp rc={res.returncode}"
    if trace_rtt:
        for f in workdir.glob("*_rtt.csv"):
            step.rtts += read_rtts(f)
    return step


@dataclass
class RateSearch:
    """Climb ×``factor`` from ``start`` until a dirty step, then bisect ``refine`` times."""

    start: float
    factor: float = 1.5
    refine: int = 2
    ceiling: float = 50_000
    budget_seconds: float = 70.0
    steps: list[Step] = field(default_factory=list)

    def run(self, step: Callable[[float], Step]) -> float:
        t0 = time.monotonic()
        good, bad = 0.0, None
        rate = self.start
        while rate <= self.ceiling and time.monotonic() - t0 < self.budget_seconds:
            s = step(rate)
            self.steps.append(s)
            print(f"  {s.rate:>8g}/s  " + "  ".join(s.row()[2:]), flush=True)
            if s.clean:
                good = rate
                rate = round(rate * self.factor, -1) if rate >= 100 else rate * self.factor
            else:
                bad = rate
                break
        for _ in range(self.refine):
            if bad is None or time.monotonic() - t0 >= self.budget_seconds:
                break
            mid = round((good + bad) / 2, -1) if good else round(bad / 2, -1)
            if mid <= good or mid >= bad:
                break
            s = step(mid)
            self.steps.append(s)
            print(f"  {s.rate:>8g}/s  " + "  ".join(s.row()[2:]), flush=True)
            if s.clean:
                good = mid
            else:
                bad = mid
        return good


def pause(seconds: float) -> None:
    """Let sockets drain and the server settle between steps."""
    time.sleep(seconds)


def settle(port: int, *, quick_ms: float = 20.0, limit: float = 20.0) -> float:
    """Wait until the server at ``port`` answers OPTIONS within ``quick_ms`` three times in a
    row (at most ``limit`` seconds): an overloaded step can leave a backlog (queued store
    writes, timers) that would otherwise be charged to the next step. Returns the wait."""
    from tests.peers.switchboard import options_ping

    t0 = time.monotonic()
    good = 0
    while time.monotonic() - t0 < limit and good < 3:
        t = time.monotonic()
        status = options_ping(port, timeout=1.0)
        good = good + 1 if status is not None and time.monotonic() - t < quick_ms / 1000 else 0
        time.sleep(0.1)
    return time.monotonic() - t0


class AuthCallSteps:
    """Steps of the authenticated UAC scenario (``bench/scenarios/uac_auth_rtp.xml``:
    INVITE, 407, INVITE with credentials, 200, RTP from a tone pcap, BYE) from ``caller``
    to a number, each in its own folder under ``workdir``; after each step the server at
    ``target`` is given time to settle (:func:`settle`), noted when it took over 2 s."""

    def __init__(
        self,
        workdir: Path,
        target: str,
        caller: tuple[str, str],
        *,
        seconds: float,
        hold: float,
        pcap: float,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.caller, self.password = caller
        self.seconds, self.hold, self.pcap = seconds, hold, pcap
        self.count = 0

    def to(self, dialled: str) -> Callable[[float], Step]:
        """The step function (rate -> :class:`Step`) for calls to ``dialled``."""
        return lambda rate: self.step(dialled, rate)

    def step(self, dialled: str, rate: float) -> Step:
        from tests.peers.sipp import prepare_tone_pcap

        self.count += 1
        name = f"uac_{self.count:02d}_{dialled}_{int(rate)}"
        (self.workdir / name).mkdir(parents=True, exist_ok=True)
        prepare_tone_pcap(self.workdir / name, seconds=self.pcap)
        scenario = BENCH / "scenarios" / "uac_auth_rtp.xml"
        s = run_step(
            ["-sf", str(scenario), "-s", dialled, "-au", self.caller, "-ap", self.password,
             "-key", "caller", self.caller,
             "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
             "-mp", str(free_udp_port(pair=True)), "-d", str(int(self.hold * 1000))],
            target=self.target, rate=rate, seconds=self.seconds, workdir=self.workdir,
            name=name, hold_seconds=self.hold, trace_rtt=True,
        )  # fmt: skip
        # Let the UAS finish its timewait and Switchboard close the legs.
        pause(1.5)
        waited = settle(int(self.target.rsplit(":", 1)[1]))
        if waited > 2:
            s.note = f"settled {waited:.0f} s after"
        return s

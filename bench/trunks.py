"""Calls through a trunk vs extension to extension, in the same run (issue 16).

Theory of operation
-------------------
One Switchboard with caller 1001, callee 2001 and a trunk ``carrier`` (IP-authenticated,
``host``/``port`` = a SIPp UAS playing the carrier, ``max_channels: 0``); the outbound rule
``_9.`` strips the 9 and sends the rest through ``carrier``. Two SIPp UASes answer and echo
RTP (``tests/peers/scenarios/uas.xml``): one registered as extension 2001, one at the
trunk's address. The same authenticated UAC scenario as ``bench/calls.py``
(``bench/scenarios/uac_auth_rtp.xml``: INVITE, 407, INVITE with credentials, 200, RTP from
``tone.pcap``, BYE) runs a paired rate search (:func:`paired_search`): dialling ``2001``
(extension to extension) and dialling ``95551234`` (through the trunk: the class-of-service
check, the outbound rule, the trunk's INVITE with P-Asserted-Identity), one step of each in
turn at the same rates. A step is clean with 0 failed calls (see
``bench/README.md``). The caller's outbound caps are off for the run (``0``) and its class
of service allows the number (local).

Goal: the trunk's peak ≥ 0.9 × the extension-to-extension peak.

The search climbs in coarse steps (×1.5, then two refinements) and a single failed call
makes a step unclean, so on a shared 2-core machine a peak can move by a step between runs
(a step that lost exactly one call is run once more). A steadier second measure is
printed beside it: Switchboard's own CPU time per completed call (``/proc/<pid>/stat`` user
+ system, media in the same process) at one fixed rate (``--cpu-rate``, default 40
calls/s) on each path, alternating ext/trunk/ext/trunk and keeping each path's lower
figure; the trunk's extra work is the policy check, the outbound rule, P-Asserted-Identity
and the trunk attempt's log line.

Exit status: 0 when the measurements ran (whatever the numbers), 2 on a setup error.

Usage: ``python bench/trunks.py [--quick] [--hold S] [--pcap S] [--start RATE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    STEP_HEADER,
    AuthCallSteps,
    SetupError,
    SippProcess,
    Step,
    free_port_range,
    free_udp_port,
    print_table,
    require,
    start_switchboard,
    uvloop_installed,
)
from tests.peers.sipp import run_sipp, scenario, write_auth_injection

CALLER, CALLER_PW = "1001", "pw-1001"
CALLEE, CALLEE_PW = "2001", "pw-2001"
OUTSIDE = "95551234"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter steps, smaller budget")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds each call lasts (-d)")
    ap.add_argument("--pcap", type=float, default=0.5, help="seconds of RTP the UAC plays")
    ap.add_argument("--start", type=float, default=50.0, help="first rate (calls/s)")
    ap.add_argument("--cpu-rate", type=float, default=40.0, help="rate of the CPU measure")
    args = ap.parse_args()
    args.pcap = min(args.pcap, args.hold)
    try:
        require("sipp")
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    seconds = 3.0 if args.quick else 5.0
    budget = 50.0 if args.quick else 100.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-trunks-"))
    t0 = time.monotonic()
    uases: list[SippProcess] = []
    sb = None
    results: dict[str, tuple[float, list[Step]]] = {}
    cpu: dict[str, float] = {}  # Switchboard CPU ms per completed call, by path
    try:
        ext_uas, trunk_uas = free_udp_port(), free_udp_port()
        extra = (
            "trunks:\n"
            f"  carrier: {{host: 127.0.0.1, port: {trunk_uas}, qualify: 0}}\n"
            "dialplan:\n"
            "  outbound:\n"
            '    - {pattern: "_9.", strip: 1, trunks: [carrier]}\n'
        )
        sb = start_switchboard(
            tmp / "switchboard",
            {
                CALLER: {
                    "name": "Caller",
                    "password": CALLER_PW,
                    "max_outbound_per_minute": 0,
                    "max_outbound_calls": 0,
                },
                CALLEE: {"name": "Callee", "password": CALLEE_PW},
            },
            rtp_range=free_port_range(8000),
            extra_yaml=extra,
        )
        target = sb.address
        inf = write_auth_injection(tmp / "callee.csv", [(CALLEE, CALLEE_PW)])
        reg = run_sipp(
            ["-sf", str(scenario("register_auth")), "-inf", str(inf), "-i", "127.0.0.1",
             "-p", str(ext_uas)],
            timeout=20, workdir=tmp / "register", target=target, max_calls=1, name="register",
            recv_timeout="5s",
        )  # fmt: skip
        if not reg.ok:
            raise SetupError(f"could not register the callee:\n{reg.summary()}")
        time.sleep(0.3)
        for name, port in (("uas_ext", ext_uas), ("uas_trunk", trunk_uas)):
            uas = SippProcess(
                ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(port),
                 "-mi", "127.0.0.1", "-mp", str(free_udp_port(pair=True)), "-rtp_echo",
                 "-m", "10000000"],
                workdir=tmp / name, timeout=3 * budget + 120, name=name, recv_timeout="10s",
            )  # fmt: skip
            uases.append(uas)
        time.sleep(0.5)
        for uas in uases:
            if uas.proc.poll() is not None:
                raise SetupError(f"SIPp UAS exited early:\n{uas.stop().summary()}")
        calls = AuthCallSteps(
            tmp / "uac",
            target,
            (CALLER, CALLER_PW),
            seconds=seconds,
            hold=args.hold,
            pcap=args.pcap,
        )

        assert sb.proc is not None
        pid = sb.proc.pid
        for label, dialled in (("extension", CALLEE), ("trunk", OUTSIDE)) * 2:
            before = _cpu_seconds(pid)
            s = calls.step(dialled, args.cpu_rate)
            used = _cpu_seconds(pid) - before
            if s.successful:
                ms = 1000.0 * used / s.successful
                cpu[label] = min(cpu.get(label, ms), ms)
        print(f"paired rate search ({seconds:g} s per step)", flush=True)
        results = paired_search(
            {"extension": calls.to(CALLEE), "trunk": calls.to(OUTSIDE)},
            start=args.start,
            budget=2 * budget,
        )
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    finally:
        for uas in uases:
            uas.stop()
        if sb is not None:
            sb.stop()
            if "Traceback" in sb.log_text():
                print("WARNING: Switchboard logged a traceback, see", sb.log_path)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    for label, (_, steps) in results.items():
        print_table(f"{label} steps", STEP_HEADER, [s.row() for s in steps])
    ext_peak = results.get("extension", (0.0, []))[0]
    trunk_peak = results.get("trunk", (0.0, []))[0]
    ratio = trunk_peak / ext_peak if ext_peak else float("nan")
    print_table(
        f"Calls/s with 0 failures, same run (uvloop installed: {uvloop_installed()}; "
        f"{time.monotonic() - t0:.0f} s)",
        ["extension -> extension", "extension -> trunk", "trunk / extension", "goal"],
        [[f"{ext_peak:g}", f"{trunk_peak:g}", f"{ratio:.2f}", ">= 0.90"]],
    )
    if "extension" in cpu and "trunk" in cpu:
        print_table(
            f"Switchboard CPU per completed call at {args.cpu_rate:g} calls/s (lower of two)",
            ["extension -> extension", "extension -> trunk", "extension / trunk"],
            [
                [
                    f"{cpu['extension']:.2f} ms",
                    f"{cpu['trunk']:.2f} ms",
                    f"{cpu['extension'] / cpu['trunk']:.2f}",
                ]
            ],
        )
    return 0


def paired_search(
    paths: dict[str, Callable[[float], Step]], *, start: float, budget: float
) -> dict[str, tuple[float, list[Step]]]:
    """Both paths climb the same rates ×1.5, one step of each in turn, so a busy moment of
    the shared machine falls on both alike; a path stops climbing at its first unclean step,
    then each bisects twice between its last clean and first unclean rate. A step that lost
    exactly one call (and nothing timed out) is run once more before it counts as unclean:
    one call lost to a scheduling hiccup on 2 cores says nothing about either path."""
    t0 = time.monotonic()
    good = dict.fromkeys(paths, 0.0)
    bad: dict[str, float | None] = dict.fromkeys(paths)
    steps: dict[str, list[Step]] = {name: [] for name in paths}

    def run(name: str, rate: float) -> bool:
        s = paths[name](rate)
        steps[name].append(s)
        print(f"  {name:>9} {s.rate:>8g}/s  " + "  ".join(s.row()[2:]), flush=True)
        if not s.clean and s.failed <= 1 and not s.timed_out and s.successful >= s.calls - 1:
            s = paths[name](rate)
            steps[name].append(s)
            print(f"  {name:>9} {s.rate:>8g}/s  " + "  ".join(s.row()[2:]), flush=True)
        return s.clean

    rate = start
    while any(b is None for b in bad.values()) and time.monotonic() - t0 < budget:
        for name in paths:
            if bad[name] is None:
                if run(name, rate):
                    good[name] = rate
                else:
                    bad[name] = rate
        rate = round(rate * 1.5, -1) if rate >= 100 else rate * 1.5
    for _ in range(2):
        for name in paths:
            b = bad[name]
            if b is None or time.monotonic() - t0 >= budget:
                continue
            g = good[name]
            mid = round((g + b) / 2, -1) if g else round(b / 2, -1)
            if mid <= g or mid >= b:
                continue
            if run(name, mid):
                good[name] = mid
            else:
                bad[name] = mid
    return {name: (good[name], steps[name]) for name in paths}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())

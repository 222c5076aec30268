"""Profile Switchboard under a steady load with py-spy (a helper, not a benchmark).

Usage: ``python bench/_profile.py register|calls [--rate R] [--seconds S] [--svg out.svg]``

Starts Switchboard, drives it with SIPp at a fixed rate (REGISTER+digest for 1,000 users, or
authenticated calls with echoed RTP as in bench/calls.py), attaches ``py-spy record`` to the
server for ``--seconds`` and prints the top functions by own time and by inclusive time
(from py-spy's collapsed "raw" output). Needs ``pip install py-spy`` and root or
ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    NO_STORE_WRITES,
    SippProcess,
    free_port_range,
    free_udp_port,
    start_switchboard,
)
from tests.peers.sipp import (
    prepare_tone_pcap,
    run_sipp,
    scenario,
    write_auth_injection,
)

BENCH = Path(__file__).resolve().parent


def summarize(raw: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = [f.split(" (")[0] + " " + f.split("(")[-1].split(":")[0].rsplit("/", 1)[-1]
                  for f in stack.split(";")]  # fmt: skip
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    print(f"\n{total} samples")
    print("\nTop by own time:")
    for f, c in own.most_common(top):
        print(f"  {100 * c / total:5.1f}%  {f}")
    print("\nTop by inclusive time:")
    for f, c in incl.most_common(top + 15):
        print(f"  {100 * c / total:5.1f}%  {f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["register", "calls"])
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--svg", default=None)
    ap.add_argument("--log-level", default=None)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-store-writes", action="store_true")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    load: SippProcess | None = None
    uas: SippProcess | None = None
    sb = None
    try:
        if args.what == "register":
            rate = args.rate or 400
            accounts = [(str(2000 + i), f"pw-{2000 + i}") for i in range(1000)]
            sb = start_switchboard(
                tmp / "sb",
                {u: {"password": p} for u, p in accounts},
                log_level=args.log_level,
                prelude=NO_STORE_WRITES if args.no_store_writes else "",
            )
            inf = write_auth_injection(tmp / "users.csv", accounts)
            calls = int(rate * (args.seconds + 4))
            load = SippProcess(
                ["-sf", str(scenario("register_auth")), "-inf", str(inf), "-i", "127.0.0.1",
                 "-p", str(free_udp_port()), "-r", f"{rate:g}", "-l", str(int(rate * 2)),
                 "-m", str(calls)],
                workdir=tmp / "load", timeout=args.seconds + 30, target=sb.address,
                name="load", recv_timeout="5s",
            )  # fmt: skip
        else:
            rate = args.rate or 120
            sb = start_switchboard(
                tmp / "sb",
                {"1001": {"password": "pw-1001"}, "2001": {"password": "pw-2001"}},
                rtp_range=free_port_range(8000),
                log_level=args.log_level,
            )
            uas_port = free_udp_port()
            inf = write_auth_injection(tmp / "callee.csv", [("2001", "pw-2001")])
            run_sipp(
                ["-sf", str(scenario("register_auth")), "-inf", str(inf), "-i", "127.0.0.1",
                 "-p", str(uas_port)],
                timeout=20, workdir=tmp / "reg", target=sb.address, name="reg",
            )  # fmt: skip
            uas = SippProcess(
                ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port),
                 "-mi", "127.0.0.1", "-mp", str(free_udp_port(pair=True)), "-rtp_echo",
                 "-m", "10000000"],
                workdir=tmp / "uas", timeout=args.seconds + 40, name="uas",
            )  # fmt: skip
            (tmp / "load").mkdir()
            prepare_tone_pcap(tmp / "load", seconds=0.5)
            calls = int(rate * (args.seconds + 4))
            time.sleep(0.5)
            load = SippProcess(
                ["-sf", str(BENCH / "scenarios" / "uac_auth_rtp.xml"), "-s", "2001",
                 "-au", "1001", "-ap", "pw-1001", "-key", "caller", "1001",
                 "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
                 "-mp", str(free_udp_port(pair=True)), "-d", "1000", "-r", f"{rate:g}",
                 "-l", str(int(rate * 3)), "-m", str(calls)],
                workdir=tmp / "load", timeout=args.seconds + 30, target=sb.address,
                name="load", recv_timeout="5s",
            )  # fmt: skip
        time.sleep(2)
        assert sb.proc is not None
        raw = tmp / "prof.txt"
        cmd = [pyspy, "record", "--pid", str(sb.proc.pid), "--duration", str(int(args.seconds)),
               "--rate", "200", "--nonblocking", "-f", "raw", "-o", str(raw)]  # fmt: skip
        subprocess.run(cmd, timeout=args.seconds + 30, capture_output=True)
        if args.svg:
            # Re-render the same samples as a flame graph is not supported by py-spy; record
            # a second, shorter run for the picture.
            subprocess.run(
                [pyspy, "record", "--pid", str(sb.proc.pid), "--duration", "5", "--rate",
                 "200", "--nonblocking", "-o", args.svg],
                timeout=40, capture_output=True,
            )  # fmt: skip
        res = load.wait()
        print(f"load: ok={res.successful} failed={res.failed} (rate {rate:g}/s)")
        summarize(raw, args.top)
    finally:
        if load is not None:
            load.kill()
        if uas is not None:
            uas.stop()
        if sb is not None:
            sb.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""REGISTER + digest throughput: Switchboard against Kamailio, in the same invocation.

Theory of operation
-------------------
SIPp plays ``tests/peers/scenarios/register_auth.xml`` for many users (default 1,000
extensions, an injection CSV walked sequentially): each registration is one REGISTER, a
401 challenge (RFC 3261 §22.4, MD5 with qop=auth, RFC 7616), the credentialed retry and the
200 (RFC 3261 §10.3) — two requests per registration. Rates rise geometrically in steps of a
few seconds until a step is not clean (a failed or timed-out registration, or the server so
slow that SIPp could not keep the asked rate), then the search bisects. The same search runs
against Kamailio (``bench/kamailio-register.cfg``: auth + ``pv_www_authenticate()`` against an
in-memory htable, usrloc in memory) with the same users, started in the foreground with
``-DD -E -m 1024`` and stopped by PID.

Output: every step, then a table with both peak registration rates (registrations/s; each is
two REGISTER requests) and Switchboard / Kamailio. Goal: ratio ≥ 0.5.

Exit status: 0 when the measurements ran (whatever the numbers), 2 on a setup error.

Usage: ``python bench/register.py [--quick] [--users N] [--only switchboard|kamailio]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    NO_STORE_WRITES,
    STEP_HEADER,
    Kamailio,
    RateSearch,
    SetupError,
    Step,
    free_udp_port,
    pause,
    print_table,
    require,
    run_step,
    settle,
    start_switchboard,
    uvloop_installed,
)
from tests.peers.sipp import scenario, write_auth_injection

BENCH = Path(__file__).resolve().parent
FIRST_USER = 2000


def users(n: int) -> list[tuple[str, str]]:
    return [(str(FIRST_USER + i), f"pw-{FIRST_USER + i}") for i in range(n)]


def search(
    name: str, target: str, inf: Path, workdir: Path, start: float, seconds: float,
    budget: float,
) -> tuple[float, list[Step]]:  # fmt: skip
    counter = [0]

    def step(rate: float) -> Step:
        counter[0] += 1
        s = run_step(
            ["-sf", str(scenario("register_auth")), "-inf", str(inf), "-i", "127.0.0.1",
             "-p", str(free_udp_port())],
            target=target, rate=rate, seconds=seconds, workdir=workdir,
            name=f"{name}_{counter[0]:02d}_{int(rate)}",
        )  # fmt: skip
        pause(0.5)
        waited = settle(int(target.rsplit(":", 1)[1]))
        if waited > 2:
            s.note = f"settled {waited:.0f} s after"
        return s

    print(f"\n{name}: REGISTER+digest rate search ({seconds:g} s per step)", flush=True)
    rs = RateSearch(start=start, factor=1.5, refine=2, budget_seconds=budget)
    peak = rs.run(step)
    return peak, rs.steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter steps, fewer refinements")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--only", choices=["switchboard", "kamailio"])
    ap.add_argument("--log-level", default=None, help="Switchboard log level (default: info)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument(
        "--no-store-writes",
        action="store_true",
        help="experiment: Switchboard skips binding writes to its database",
    )
    args = ap.parse_args()
    try:
        require("sipp", *(() if args.only == "switchboard" else ("kamailio",)))
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    seconds = 2.0 if args.quick else 4.0
    budget = 35.0 if args.quick else 70.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-register-"))
    accounts = users(args.users)
    inf = write_auth_injection(tmp / "users.csv", accounts)
    results: dict[str, tuple[float, list[Step]]] = {}
    t0 = time.monotonic()
    try:
        if args.only != "kamailio":
            sb = start_switchboard(
                tmp / "switchboard",
                {u: {"name": f"User {u}", "password": p} for u, p in accounts},
                log_level=args.log_level,
                prelude=NO_STORE_WRITES if args.no_store_writes else "",
            )
            try:
                results["Switchboard"] = search(
                    "switchboard", sb.address, inf, tmp / "sipp-sb", 250, seconds, budget
                )
            finally:
                sb.stop()
                if "Traceback" in sb.log_text():
                    print("WARNING: Switchboard logged a traceback, see", sb.log_path)
        if args.only != "switchboard":
            port = free_udp_port()
            kam = Kamailio((BENCH / "kamailio-register.cfg").read_text(), tmp / "kamailio")
            kam.cmd += ["-A", f"SIP_PORT={port}", "-A", f"USERS={args.users}",
                        "-A", f"FIRST_USER={FIRST_USER}"]  # fmt: skip
            kam.start(port)
            try:
                results["Kamailio"] = search(
                    "kamailio", f"127.0.0.1:{port}", inf, tmp / "sipp-kam", 1000, seconds,
                    budget,
                )  # fmt: skip
            finally:
                kam.stop()
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(kept {tmp})")

    for name, (_, steps) in results.items():
        print_table(f"{name} steps", STEP_HEADER, [s.row() for s in steps])
    rows = []
    for name, (peak, steps) in results.items():
        best = max((s for s in steps if s.clean), key=lambda s: s.rate, default=None)
        rows.append([
            name,
            f"{peak:g}",
            f"{2 * peak:g}",
            f"{best.achieved:.0f}" if best else "-",
        ])  # fmt: skip
    ratio = "-"
    if "Switchboard" in results and "Kamailio" in results and results["Kamailio"][0] > 0:
        ratio = f"{results['Switchboard'][0] / results['Kamailio'][0]:.2f}"
    print_table(
        f"REGISTER with digest, {args.users} users, 0 failures "
        f"(uvloop installed: {uvloop_installed()}; {time.monotonic() - t0:.0f} s)",
        ["server", "peak registrations/s", "REGISTER requests/s", "measured/s at peak"],
        rows,
    )
    print(f"Switchboard / Kamailio = {ratio}   (goal >= 0.5)")
    if args.no_store_writes:
        print("EXPERIMENT: Switchboard ran with binding writes to the store disabled.")
    print(f"Switchboard log level: {args.log_level or 'info (default)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

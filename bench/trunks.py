"""Calls through a trunk vs extension to extension, in the same run (issue 16).

Theory of operation
-------------------
One Switchboard with caller 1001, callee 2001 and a trunk ``carrier`` (IP-authenticated,
``host``/``port`` = a SIPp UAS playing the carrier, ``max_channels: 0``); the outbound rule
``_9.`` strips the 9 and sends the rest through ``carrier``. Two SIPp UASes answer and echo
RTP (``tests/peers/scenarios/uas.xml``): one registered as extension 2001, one at the
trunk's address. The same authenticated UAC scenario as ``bench/calls.py``
(``bench/scenarios/uac_auth_rtp.xml``: INVITE, 407, INVITE with credentials, 200, RTP from
``tone.pcap``, BYE) runs a rate search twice: dialling ``2001`` (extension to extension) and
dialling ``95551234`` (through the trunk: the class-of-service check, the outbound rule,
the trunk's INVITE with P-Asserted-Identity). A step is clean with 0 failed calls (see
``bench/README.md``). The caller's outbound caps are off for the run (``0``) and its class
of service allows the number (local).

Goal: the trunk's peak ≥ 0.9 × the extension-to-extension peak.

Exit status: 0 when the measurements ran (whatever the numbers), 2 on a setup error.

Usage: ``python bench/trunks.py [--quick] [--hold S] [--pcap S] [--start RATE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    STEP_HEADER,
    RateSearch,
    SetupError,
    SippProcess,
    Step,
    free_port_range,
    free_udp_port,
    pause,
    print_table,
    require,
    run_step,
    settle,
    start_switchboard,
    uvloop_installed,
)
from tests.peers.sipp import prepare_tone_pcap, run_sipp, scenario, write_auth_injection

BENCH = Path(__file__).resolve().parent
UAC_SCENARIO = BENCH / "scenarios" / "uac_auth_rtp.xml"
CALLER, CALLER_PW = "1001", "pw-1001"
CALLEE, CALLEE_PW = "2001", "pw-2001"
OUTSIDE = "95551234"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter steps, smaller budget")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds each call lasts (-d)")
    ap.add_argument("--pcap", type=float, default=0.5, help="seconds of RTP the UAC plays")
    ap.add_argument("--start", type=float, default=50.0, help="first rate (calls/s)")
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
        uac_dir = tmp / "uac"
        uac_dir.mkdir()
        counter = [0]

        def stepper(dialled: str) -> object:
            def step(rate: float) -> Step:
                counter[0] += 1
                name = f"uac_{counter[0]:02d}_{dialled}_{int(rate)}"
                (uac_dir / name).mkdir(parents=True, exist_ok=True)
                prepare_tone_pcap(uac_dir / name, seconds=args.pcap)
                s = run_step(
                    ["-sf", str(UAC_SCENARIO), "-s", dialled, "-au", CALLER, "-ap", CALLER_PW,
                     "-key", "caller", CALLER,
                     "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
                     "-mp", str(free_udp_port(pair=True)), "-d", str(int(args.hold * 1000))],
                    target=target, rate=rate, seconds=seconds, workdir=uac_dir, name=name,
                    hold_seconds=args.hold, trace_rtt=True,
                )  # fmt: skip
                pause(1.5)
                waited = settle(int(target.rsplit(":", 1)[1]))
                if waited > 2:
                    s.note = f"settled {waited:.0f} s after"
                return s

            return step

        for label, dialled in (("extension", CALLEE), ("trunk", OUTSIDE)):
            print(f"{label}: rate search ({seconds:g} s per step)", flush=True)
            rs = RateSearch(start=args.start, factor=1.5, refine=2, budget_seconds=budget)
            peak = rs.run(stepper(dialled))  # type: ignore[arg-type]
            results[label] = (peak, rs.steps)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

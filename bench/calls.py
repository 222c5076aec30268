"""Call setup throughput and latency: SIPp UAC → Switchboard (B2BUA, anchored RTP) → SIPp UAS.

Theory of operation
-------------------
Switchboard runs with two extensions: the caller (1001) and the callee (2001). The callee is
registered from the SIPp UAS's own port (a one-shot ``register_auth.xml`` run bound to that
port, so the binding's source address is the UAS), then a long-running SIPp UAS
(``tests/peers/scenarios/uas.xml``, ``-rtp_echo``) answers every call with 180 + 200 and
echoes the RTP it receives.

Each step runs ``bench/scenarios/uac_auth_rtp.xml`` at a fixed rate for a few seconds: INVITE,
407 challenge, ACK, INVITE with Proxy-Authorization (RFC 3261 §22.3), 100/180/200, ACK, then
the UAC plays ``tone.pcap`` (PCMU, 20 ms packets) for ``--pcap`` seconds while holding the
call ``--hold`` seconds, then BYE. The UAS echoes the RTP, so every packet crosses
Switchboard's relay twice (caller → callee leg, echo → caller leg). Rates climb ×1.5 until a
step is not clean (any failed call, > 1 % calls retransmitted, or SIPp could not hold the
asked rate), then the search bisects.

Latency comes from SIPp's ``-trace_rtt`` (one row per call per timer):
- *setup*: credentialed INVITE sent → 200 OK received at the UAC (rtd 2), which includes the
  B-leg INVITE to the UAS and its answer;
- *challenge*: first INVITE → 407 (rtd 1).
Percentiles are reported at the peak clean step (and every step in the step table).

Exit status: 0 when the measurements ran (whatever the numbers), 2 on a setup error.

Usage: ``python bench/calls.py [--quick] [--hold S] [--pcap S]``
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
    AuthCallSteps,
    RateSearch,
    SetupError,
    SippProcess,
    Step,
    free_port_range,
    free_udp_port,
    percentile,
    print_table,
    require,
    start_switchboard,
    uvloop_installed,
)
from tests.peers.sipp import (
    run_sipp,
    scenario,
    write_auth_injection,
)

CALLER, CALLER_PW = "1001", "pw-1001"
CALLEE, CALLEE_PW = "2001", "pw-2001"


def fmt_ms(values: list[float], q: float) -> str:
    v = percentile(values, q)
    return "-" if v != v else f"{v:.1f}"  # NaN check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter steps, fewer refinements")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds each call lasts (-d)")
    ap.add_argument("--pcap", type=float, default=0.5, help="seconds of RTP the UAC plays")
    ap.add_argument("--start", type=float, default=50.0, help="first rate (calls/s)")
    ap.add_argument("--log-level", default=None, help="Switchboard log level (default: info)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    if args.pcap > args.hold:
        args.pcap = args.hold
    try:
        require("sipp")
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    seconds = 3.0 if args.quick else 5.0
    budget = 60.0 if args.quick else 120.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    steps: list[Step] = []
    peak = 0.0
    t0 = time.monotonic()
    uas: SippProcess | None = None
    sb = None
    packets = round(args.pcap / 0.020)
    media = (
        f"PCMU 20 ms, {packets} packets ({args.pcap:g} s) caller→callee, echoed back by the "
        f"UAS (-rtp_echo): {2 * packets} RTP packets relayed per call; calls held {args.hold:g} s"
    )
    try:
        # Enough RTP ports for the concurrent calls of the fastest step: 2 legs x 2 ports.
        rtp = free_port_range(8000)
        sb = start_switchboard(
            tmp / "switchboard",
            {
                CALLER: {"name": "Caller", "password": CALLER_PW},
                CALLEE: {"name": "Callee", "password": CALLEE_PW},
            },
            rtp_range=rtp,
            log_level=args.log_level,
        )
        target = sb.address
        uas_port = free_udp_port()
        uas_media = free_udp_port(pair=True)
        # Register the callee from the UAS port: the binding remembers that source address.
        inf = write_auth_injection(tmp / "callee.csv", [(CALLEE, CALLEE_PW)])
        reg = run_sipp(
            ["-sf", str(scenario("register_auth")), "-inf", str(inf), "-i", "127.0.0.1",
             "-p", str(uas_port)],
            timeout=20, workdir=tmp / "register", target=target, max_calls=1, name="register",
            recv_timeout="5s",
        )  # fmt: skip
        if not reg.ok:
            raise SetupError(f"could not register the callee:\n{reg.summary()}")
        time.sleep(0.3)
        uas = SippProcess(
            ["-sf", str(scenario("uas")), "-i", "127.0.0.1", "-p", str(uas_port),
             "-mi", "127.0.0.1", "-mp", str(uas_media), "-rtp_echo", "-m", "10000000"],
            workdir=tmp / "uas", timeout=budget + 90, name="uas", recv_timeout="10s",
        )  # fmt: skip
        time.sleep(0.5)
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

        print(f"calls: rate search ({seconds:g} s per step; media: {media})", flush=True)
        rs = RateSearch(start=args.start, factor=1.5, refine=2, budget_seconds=budget)
        peak = rs.run(calls.to(CALLEE))
        steps = rs.steps
    except SetupError as exc:
        print(f"setup error: {exc}", file=sys.stderr)
        return 2
    finally:
        if uas is not None:
            uas.stop()
        if sb is not None:
            sb.stop()
            if "Traceback" in sb.log_text():
                print("WARNING: Switchboard logged a traceback, see", sb.log_path)
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(kept {tmp})")

    rows = []
    for s in steps:
        setup = s.rtt("2")
        chal = s.rtt("1")
        latency = [fmt_ms(setup, 50), fmt_ms(setup, 99), fmt_ms(chal, 50), fmt_ms(chal, 99)]
        rows.append([*s.row()[:-1], *latency, s.note])
    print_table(
        "Call steps (latency in ms)",
        [*STEP_HEADER[:-1], "setup p50", "setup p99", "407 p50", "407 p99", "note"],
        rows,
    )
    best = max((s for s in steps if s.clean), key=lambda s: s.rate, default=None)
    setup = best.rtt("2") if best else []
    print_table(
        f"Calls through Switchboard, 0 failures (uvloop installed: {uvloop_installed()}; "
        f"{time.monotonic() - t0:.0f} s)",
        ["peak calls/s", "measured/s", "setup p50 ms", "setup p99 ms", "calls at peak"],
        [[
            f"{peak:g}",
            f"{best.achieved:.0f}" if best else "-",
            fmt_ms(setup, 50),
            fmt_ms(setup, 99),
            str(best.successful) if best else "0",
        ]],
    )  # fmt: skip
    print(f"media per call: {media}")
    print("setup = credentialed INVITE -> 200 OK at the caller (B-leg INVITE and answer "
          "included). Goal: >= 300 calls/s.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

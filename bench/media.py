"""Media engine capacity: relayed and mixed calls on one core, with uvloop and plain asyncio.

Theory of operation
-------------------
Three processes per step, all on loopback:

* the **engine** (``--role engine``): the media side of a server, built by the server's own
  wiring (``app.media.build_media`` of a config with ``media: {workers: N}``) and driven only
  through ``media.MediaInterface`` as the B2BUA drives it: 2 legs per call (the second created
  ``near`` the first), each pair bridged. In *relay* mode the bridge is the
  fast path (PCMU both sides: header rewrite only). In *mixed* mode each bridge carries a
  whole-mix recording tap (a Python callback: with workers, every frame is shipped back to the
  main process), which forces decode → jitter buffer → mix → encode every 20 ms
  for both legs (the recorder's case). It reports its CPU time (``time.process_time``) over
  the measured window, the media clock's skipped ticks and packet counters.
* the **generator** (``--role generator``): one non-blocking UDP socket per phone (2 per
  call), a loop on an absolute 20 ms schedule sending one 172-octet PCMU packet per phone
  per tick, and ``epoll`` draining what the engine sends back. Relay: every payload carries
  the send instant (``time.monotonic``, system-wide on Linux), so the receiver gets the
  one-way latency of each packet; *added jitter* is p99 latency minus the minimum. Mixed:
  payloads are re-encoded, so jitter is the RFC 3550 §A.8 style deviation
  ``|Δarrival − Δtimestamp/8000|`` of consecutive packets of a stream, p99 over all.
  Loss: relay = 1 − received / sent; mixed = gaps in the engine's (continuous) sequence
  numbers plus packets the engine never got.
* the **orchestrator** (default role) wires them up and runs a ladder of call counts.

A step *passes* when loss < 0.1 %, added jitter p99 < 5 ms, and the engine did not skip
media-clock ticks. The machine has 2 cores shared by the engine and the generator, and the
generator (pure Python, one syscall per packet each way) costs about as much CPU as the
engine, so the largest *measurable* load is bounded by the generator. The engine's CPU per
call is therefore also reported, and ``capacity@80%`` extrapolates how many calls one core
running only the engine would carry at 80 % load.

``--workers 0,2`` (the default) runs every ladder with each setting: 0 is ``MediaEngine`` in
the engine process, N a ``media.workers.MediaWorkerPool`` of N worker processes (uvloop, one
``MediaEngine`` each over a slice of the ports; a call's two legs in one worker, calls spread
over the workers) with the engine process sending control messages and receiving the tap
frames. CPU is then the sum over the workers plus the main process (``worker_cpu_pct`` per
worker), so ``capacity@80%`` stays *per core*: what one core carries each way.
``--generators G`` splits the phones over G generator processes (whole calls each; jitter is
the worst generator's p99) so that the generator is not the first thing to saturate.

``--role tickprof`` times the media clock's tick in-process (no generator): µs per mixed
bridge of 2 (with a recording tap) and 3 PCMU parties per tick (decode, jitter buffer, mix,
encode, send to a sink socket) and how many such bridges fit in 20 % of a 20 ms tick.

Usage::

    python bench/media.py [--quick] [--seconds S] [--modes relay,mixed] [--loops uvloop,asyncio]
                          [--relay-calls 100,250,500,1000] [--mixed-calls 50,100,200,300]
                          [--workers 0,2] [--generators G]
    python bench/media.py --role tickprof [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

HOST = "127.0.0.1"
FRAME = 0.020
_HDR = struct.Struct("!BBHII")
_STAMP = struct.Struct("!d")
LOSS_LIMIT = 0.001
JITTER_LIMIT_MS = 5.0


# --- engine process -----------------------------------------------------------------------


def _quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


async def _media_main(mode: str, calls: int, workers: int, spread: bool = False) -> None:
    """The engine role through the server's own wiring: ``app.media.build_media`` from a
    config with ``media: {workers: N}`` (0: ``MediaEngine`` in this process; N: a
    ``MediaWorkerPool``), driven only through ``media.MediaInterface``, as the B2BUA does."""
    from app.media import build_media
    from config.schema import SwitchboardConfig
    from media import PCMU

    loop = asyncio.get_running_loop()
    width = 8 * calls + 100 * max(1, workers)  # links of --spread take 2 more legs a call
    base = random.randrange(20000, 60000 - width, 2)
    cfg = SwitchboardConfig.model_validate(
        {
            "rtp": {"host": HOST, "ports": [base, base + width - 1], "inactivity_timeout": 3600},
            "media": {"workers": workers},
        }
    )
    media = build_media(cfg)
    await media.start()
    legs = []
    for i in range(calls):  # as the B2BUA: the callee's leg near the caller's
        legs.append(await media.create_leg(f"c{i}-a"))
        # --spread: no hint, so the pool puts the second leg on the other worker and the
        # bridge runs through a link (what a call between two workers costs).
        near = None if spread else f"c{i}-a"
        legs.append(await media.create_leg(f"c{i}-b", near=near))
    print(json.dumps({"ports": [leg.local_port for leg in legs]}), flush=True)
    phones = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["phones"]
    for leg, port in zip(legs, phones, strict=True):
        media.set_remote(leg.leg_id, HOST, port, PCMU, 101)
    frames = [0]

    def record(pcm: Any, rate: int) -> None:  # the recorder's tap: whole mix, every 20 ms
        frames[0] += 1

    for i in range(calls):
        bridge_id = media.bridge(f"c{i}-a", f"c{i}-b")
        if mode == "mixed":
            media.add_tap(bridge_id, None, record)
    await media.stats()  # every command applied (one ordered stream per worker)
    print(json.dumps({"ready": True}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "start"
    before = await media.stats()
    main0, wall0 = time.process_time(), time.monotonic()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    after = await media.stats()
    main_cpu = time.process_time() - main0
    wall = time.monotonic() - wall0
    pairs = list(zip(before, after, strict=True))
    media_cpu = [b.cpu_seconds - a.cpu_seconds for a, b in pairs]
    # In process, the engine's CPU *is* this process's; with workers, add the main
    # process's share (control messages, tap frames shipped back).
    cpu = main_cpu if not workers else sum(media_cpu) + main_cpu
    print(
        json.dumps(
            {
                "cpu": cpu,
                "main_cpu": main_cpu,
                "worker_cpu": media_cpu if workers else [],
                "wall": wall,
                "tap_frames": frames[0],
                "skipped_ticks": sum(b.clock_skipped - a.clock_skipped for a, b in pairs),
                "packets_in": sum(b.packets_in - a.packets_in for a, b in pairs),
                "packets_out": sum(b.packets_out - a.packets_out for a, b in pairs),
            }
        ),
        flush=True,
    )
    await media.close()


def engine_role(
    mode: str, calls: int, loop_kind: str, workers: int = 0, spread: bool = False
) -> None:
    _quiet_logs()
    if loop_kind == "uvloop":
        import uvloop

        uvloop.install()
    # Media workers always run uvloop (MediaWorkerPool's choice); --loop is the main process's.
    asyncio.run(_media_main(mode, calls, workers, spread))


# --- in-process tick profile -----------------------------------------------------------------


async def _tick_profile(bridges: int, parties: int, ticks: int = 100) -> dict[str, float]:
    """Feed every leg one packet per tick directly and time the media clock's tick."""
    import numpy as np

    from media import PCMU, MediaEngine
    from media.codecs import PCMU as PCMU_INFO

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # overflow: kernel drops
    sink_port = sink.getsockname()[1]
    base = random.randrange(20000, 50000, 2)
    engine = MediaEngine(HOST, base, base + 2 * bridges * parties + 99)
    legs = []
    for b in range(bridges):
        engine.create_bridge(f"b{b}")
        for p in range(parties):
            leg = await engine.create_leg(f"l{b}-{p}")
            leg.set_remote(HOST, sink_port, PCMU, 101)
            engine.join(f"b{b}", leg.leg_id)
            legs.append(leg)
        if parties == 2:  # a two-party call is relayed unless something needs PCM
            engine.add_tap(f"b{b}", None, lambda pcm, rate: None)
    assert engine.clock is not None
    engine.clock.stop()  # ticks are driven by hand below
    t = np.arange(160) / 8000
    payload = PCMU_INFO.new_encoder().encode((5000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16))
    loop = asyncio.get_running_loop()
    addr = (HOST, 9)
    rx = tick = 0.0
    for k in range(ticks):
        packet = _HDR.pack(0x80, 0, k & 0xFFFF, k * 160, 1234) + payload
        t0 = time.perf_counter()
        for leg in legs:
            leg.datagram(packet, addr)
        t1 = time.perf_counter()
        engine._tick(loop.time())
        tick += time.perf_counter() - t1
        rx += t1 - t0
        await asyncio.sleep(FRAME)
    await engine.close()
    sink.close()
    per_bridge = tick / ticks / bridges
    return {
        "parties": parties,
        "rx_us_per_packet": round(rx / ticks / len(legs) * 1e6, 1),
        "tick_us_per_bridge": round(per_bridge * 1e6, 1),
        "bridges_at_20pct_tick": int(0.2 * FRAME / per_bridge),
    }


def tickprof_role(loop_kind: str) -> None:
    _quiet_logs()
    if loop_kind == "uvloop":
        import uvloop

        uvloop.install()
    for parties in (2, 3):
        print(json.dumps(asyncio.run(_tick_profile(40, parties))), flush=True)


# --- generator process --------------------------------------------------------------------


def generator_role(mode: str, seconds: float) -> None:
    engine_ports: list[int] = json.loads(sys.stdin.readline())["ports"]
    # Several generators split the phones; each gets whole calls (pairs of ports).
    n = len(engine_ports)
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.bind((HOST, 0))
        socks.append(s)
    print(json.dumps({"phones": [s.getsockname()[1] for s in socks]}), flush=True)
    sys.stdin.readline()  # "go"
    ep = select.epoll()
    by_fd = {}
    for i, s in enumerate(socks):
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = i
    dests = [(HOST, p) for p in engine_ports]
    bufs = [bytearray(12 + 160) for _ in range(n)]
    ssrcs = [random.randrange(1 << 32) for _ in range(n)]
    relay = mode == "relay"
    latencies = array("d")
    deviations = array("d")
    received = [0] * n
    first_seq: list[int | None] = [None] * n
    last_seq = [0] * n
    last_arrival = [0.0] * n
    last_ts = [0] * n
    sent = 0
    clock = time.monotonic

    def drain(fd: int) -> None:
        i = by_fd[fd]
        s = socks[i]
        recv = s.recv
        while True:
            try:
                data = recv(2048)
            except BlockingIOError:
                return
            now = clock()
            # Only PCMU RTP (PT 0): the engine's RTCP goes to phone port + 1, which may be
            # another phone's socket here.
            if len(data) < 20 or data[1] & 0x7F:
                continue
            received[i] += 1
            if relay:
                sent_at = _STAMP.unpack_from(data, 12)[0]
                # Not one of our stamps: silence the engine generated while a bridge through
                # a link (--spread) was still being set up, before relaying began.
                if 0.0 < now - sent_at < 10.0:
                    latencies.append(now - sent_at)
                continue
            _, _, seq, ts, _ = _HDR.unpack_from(data)
            if first_seq[i] is None:
                first_seq[i] = seq
            else:
                d_arr = now - last_arrival[i]
                d_ts = ((ts - last_ts[i]) & 0xFFFFFFFF) / 8000.0
                if d_ts < 1.0:
                    deviations.append(abs(d_arr - d_ts))
            last_seq[i] = seq
            last_arrival[i] = now
            last_ts[i] = ts

    # Real phones are not synchronised: spread the streams over the 20 ms frame in SLOTS
    # groups, so the engine sees a steady flow instead of one burst per tick.
    slots = 10
    groups = [range(g, n, slots) for g in range(slots)]
    ticks = int(seconds / FRAME)
    t0 = clock() + 0.05
    late_ticks = 0
    for k in range(ticks):
        seq = k & 0xFFFF
        ts = (k * 160) & 0xFFFFFFFF
        for g, group in enumerate(groups):
            deadline = t0 + k * FRAME + g * FRAME / slots
            while True:
                wait = deadline - clock()
                if wait <= 0:
                    break
                for fd, _ in ep.poll(wait):
                    drain(fd)
            if g == 0 and clock() - deadline > 0.005:
                late_ticks += 1
            for i in group:
                buf = bufs[i]
                _HDR.pack_into(buf, 0, 0x80, 0, seq, ts, ssrcs[i])
                _STAMP.pack_into(buf, 12, clock())
                try:
                    socks[i].sendto(buf, dests[i])
                    sent += 1
                except BlockingIOError:
                    pass
    end = clock() + 0.3
    while (wait := end - clock()) > 0:
        for fd, _ in ep.poll(wait):
            drain(fd)
    total = sum(received)
    result: dict[str, Any] = {"sent": sent, "received": total, "late_ticks": late_ticks}
    if relay:
        lat = sorted(latencies)
        if lat:
            result["latency_p50_ms"] = lat[len(lat) // 2] * 1000
            result["latency_p99_ms"] = lat[int(len(lat) * 0.99)] * 1000
            result["jitter_p99_ms"] = (lat[int(len(lat) * 0.99)] - lat[0]) * 1000
        result["loss"] = max(0.0, 1 - total / sent) if sent else 1.0
        result["latency_min_ms"] = lat[0] * 1000 if lat else None
    else:
        expected = 0
        for i in range(n):
            f = first_seq[i]
            if f is not None:
                expected += ((last_seq[i] - f) & 0xFFFF) + 1
        dev = sorted(deviations)
        result["jitter_p99_ms"] = dev[int(len(dev) * 0.99)] * 1000 if dev else None
        result["loss_out"] = max(0.0, 1 - total / expected) if expected else 1.0
        result["expected"] = expected
    print(json.dumps(result), flush=True)


# --- orchestrator ---------------------------------------------------------------------------


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )


def _send(proc: subprocess.Popen[str], obj: Any) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(obj) + "\n")
    proc.stdin.flush()


def _read(proc: subprocess.Popen[str], timeout: float = 60.0) -> Any:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("no answer from child process")
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child process exited (rc={proc.poll()})")
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # a log line of the child (workers share its stdout)
            print(f"child: {line.rstrip()}", file=sys.stderr, flush=True)


def run_step(
    mode: str,
    loop_kind: str,
    calls: int,
    seconds: float,
    workers: int = 0,
    generators: int = 1,
    spread: bool = False,
) -> dict[str, Any]:
    engine = _spawn(
        [
            *("--role", "engine", "--mode", mode, "--calls", str(calls)),
            *(["--spread"] if spread else []),
            *("--loop", loop_kind, "--workers", str(workers)),
        ]
    )
    gens: list[subprocess.Popen[str]] = []
    try:
        ports = _read(engine)["ports"]
        # Whole calls per generator (a call's two phones in one process).
        n_calls = len(ports) // 2
        shares = [range(g, n_calls, generators) for g in range(generators)]
        for _ in shares:
            gens.append(_spawn(["--role", "generator", "--mode", mode, "--seconds", str(seconds)]))
        phones = [0] * len(ports)
        for gen, share in zip(gens, shares, strict=True):
            _send(gen, {"ports": [ports[2 * c + j] for c in share for j in (0, 1)]})
        for gen, share in zip(gens, shares, strict=True):
            got = _read(gen)["phones"]
            for k, c in enumerate(share):
                phones[2 * c], phones[2 * c + 1] = got[2 * k], got[2 * k + 1]
        _send(engine, {"phones": phones})
        _read(engine)  # ready
        _send(engine, "start")
        for gen in gens:
            _send(gen, "go")
        results = [_read(gen, seconds + 60) for gen in gens]
        _send(engine, "stop")
        stats = _read(engine)
    finally:
        for proc in (*gens, engine):
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                proc.kill()
                proc.wait()
    result = _merge(mode, results)
    cpu_share = stats["cpu"] / stats["wall"] if stats["wall"] else 0.0
    loss = result.get("loss", 0.0) if mode == "relay" else result.get("loss_out", 0.0)
    if mode == "mixed":
        sent = result["sent"]
        loss_in = max(0.0, 1 - stats["packets_in"] / sent) if sent else 1.0
        loss = max(loss, loss_in)
    jitter = result.get("jitter_p99_ms")
    ok = (
        loss < LOSS_LIMIT
        and jitter is not None
        and jitter < JITTER_LIMIT_MS
        and stats["skipped_ticks"] == 0
    )
    per_call_cpu = cpu_share / calls
    extra: dict[str, Any] = {}
    if workers:
        wall = stats["wall"] or 1.0
        extra["worker_cpu_pct"] = [round(100 * c / wall, 1) for c in stats["worker_cpu"]]
    return {
        "mode": mode,
        "loop": loop_kind,
        "workers": workers,
        "spread": spread,
        "generators": generators,
        "calls": calls,
        **extra,
        "loss_pct": round(100 * loss, 3),
        "jitter_p99_ms": None if jitter is None else round(jitter, 2),
        "engine_cpu_pct": round(100 * cpu_share, 1),
        "us_per_packet": round(stats["cpu"] / max(1, stats["packets_in"]) * 1e6, 1),
        "capacity@80%": int(0.8 / per_call_cpu) if per_call_cpu else None,
        "skipped_ticks": stats["skipped_ticks"],
        "gen_late_ticks": result["late_ticks"],
        "pass": ok,
    }


def _merge(mode: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One generator's result, or several combined conservatively (worst jitter p99)."""
    if len(results) == 1:
        return results[0]
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    merged: dict[str, Any] = {
        "sent": sent,
        "received": received,
        "late_ticks": sum(r["late_ticks"] for r in results),
    }
    jitters: list[float | None] = [r.get("jitter_p99_ms") for r in results]
    known = [j for j in jitters if j is not None]
    merged["jitter_p99_ms"] = None if len(known) < len(jitters) else max(known)
    if mode == "relay":
        merged["loss"] = max(0.0, 1 - received / sent) if sent else 1.0
    else:
        expected = sum(r["expected"] for r in results)
        merged["loss_out"] = max(0.0, 1 - received / expected) if expected else 1.0
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--role",
        choices=["orchestrator", "engine", "generator", "tickprof"],
        default="orchestrator",
    )
    parser.add_argument("--mode", choices=["relay", "mixed"], default="relay")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--workers",
        default="0,2",
        help="media.workers settings to run, comma-separated (0 = MediaEngine in process)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="also run workers 0 (the in-process engine)"
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="put a call's two legs in different workers (bridged through a loopback link)",
    )
    parser.add_argument(
        "--generators", type=int, default=1, help="generator processes splitting the phones"
    )
    parser.add_argument("--quick", action="store_true", help="3 s steps, fewer rungs")
    parser.add_argument("--modes", default="relay,mixed")
    parser.add_argument("--loops", default="uvloop")
    parser.add_argument("--relay-calls", default="100,250,500,1000")
    parser.add_argument("--mixed-calls", default="50,100,200,300")
    args = parser.parse_args()
    if args.role == "engine":
        engine_role(args.mode, args.calls, args.loop, int(args.workers), args.spread)
        return 0
    if args.role == "generator":
        generator_role(args.mode, args.seconds)
        return 0
    if args.role == "tickprof":
        tickprof_role(args.loop)
        return 0
    seconds = 3.0 if args.quick else args.seconds
    ladders = {
        "relay": [int(x) for x in args.relay_calls.split(",")],
        "mixed": [int(x) for x in args.mixed_calls.split(",")],
    }
    if args.quick:
        ladders = {k: v[1::2] or v for k, v in ladders.items()}
    rows = []
    best: dict[tuple[str, str, int], int] = {}
    deadline = time.monotonic() + 170  # keep a run under 3 minutes
    worker_counts = [int(x) for x in args.workers.split(",")]
    if args.compare and 0 not in worker_counts:
        worker_counts.insert(0, 0)
    for mode in args.modes.split(","):
        for loop_kind in args.loops.split(","):
            for workers in worker_counts:
                for calls in ladders[mode]:
                    if time.monotonic() + seconds + 10 > deadline:
                        print("time budget reached, stopping", flush=True)
                        break
                    row = run_step(
                        mode,
                        loop_kind,
                        calls,
                        seconds,
                        workers,
                        args.generators,
                        spread=args.spread and workers > 1,
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if row["pass"]:
                        best[(mode, loop_kind, workers)] = calls
                    else:
                        break  # the next rung would fail too
    print()
    print(f"{'mode':6} {'loop':8} {'workers':>7} {'best calls':>10} {'capacity@80%/core':>18}")
    for (mode, loop_kind, workers), calls in sorted(best.items()):
        caps = [
            r["capacity@80%"]
            for r in rows
            if r["mode"] == mode and r["loop"] == loop_kind and r["workers"] == workers
        ]
        cap = max(c for c in caps if c is not None) if caps else None
        print(f"{mode:6} {loop_kind:8} {workers:>7} {calls:>10} {cap!s:>18}")
    print(f"(pid {os.getpid()}; pass = loss < 0.1 %, jitter p99 < 5 ms, no skipped ticks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

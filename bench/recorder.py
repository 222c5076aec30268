"""The recorder's cost: what recording N calls at once takes from the media clock, whether the
disk thread keeps up, and what encoding a finished recording costs per format.

Frames are fed exactly as the media clock feeds them (20 ms of interleaved stereo int16 per
recorded call per tick) into real :class:`recorder.writer.Recording` objects writing part
files in a temporary folder; the time spent inside ``feed`` is the cost on the clock. In the
same run it times one 20 ms tick of ``N`` mixed two-party bridges' worth of numpy work (the
mixer's decode-free core: sum, clip, copy) as the reference the recorder's cost is compared
with. Then each finished recording is encoded (FLAC, WAV, Opus) and timed.

    python bench/recorder.py [--quick] [--calls 50,200,500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from recorder.writer import DiskThread, Recording, encode_part, part_path  # noqa: E402

RATE = 8000
N = RATE // 50


def _frames(count: int) -> list[np.ndarray]:
    t = np.arange(count * N) / RATE
    left = (np.sin(2 * np.pi * 1000 * t) * 8000).astype(np.int16)
    right = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = []
    for i in range(count):
        f = np.empty(2 * N, dtype=np.int16)
        f[0::2] = left[i * N : (i + 1) * N]
        f[1::2] = right[i * N : (i + 1) * N]
        out.append(f)
    return out


def _mix_reference(calls: int, ticks: int) -> float:
    """µs per tick for ``calls`` two-party mixes (the bare numpy core of a mixed bridge)."""
    a = np.ones(N, dtype=np.int16)
    b = np.ones(N, dtype=np.int16)
    spent = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        for _ in range(calls):
            acc = a.astype(np.int32) + b
            np.clip(acc, -32768, 32767, out=acc)
            acc.astype(np.int16)
        spent.append(time.perf_counter() - t0)
    return statistics.median(spent) * 1e6


async def _run(calls: int, seconds: float, folder: Path) -> dict[str, float]:
    disk = DiskThread()
    disk.start()
    recordings = [Recording(disk, folder / f"c{calls}-{i}.flac", "flac") for i in range(calls)]
    ticks = int(seconds * 50)
    frames = _frames(50)
    feed_us: list[float] = []
    late = 0
    start = time.perf_counter()
    for tick in range(ticks):
        due = start + tick * 0.02
        now = time.perf_counter()
        if now < due:
            await asyncio.sleep(due - now)
        elif now - due > 0.005:
            late += 1
        t0 = time.perf_counter()
        frame = frames[tick % 50]
        for rec in recordings:
            rec.feed(frame, RATE)
        feed_us.append((time.perf_counter() - t0) * 1e6)
    t_close = time.perf_counter()
    for rec in recordings:
        await disk.close(rec)
    drain = time.perf_counter() - t_close
    await asyncio.to_thread(disk.stop)
    feed_us.sort()
    return {
        "feed_p50_us": feed_us[len(feed_us) // 2],
        "feed_p99_us": feed_us[int(len(feed_us) * 0.99)],
        "late_ticks": float(late),
        "drain_s": drain,
        "mix_ref_us": _mix_reference(calls, 50),
    }


def _encode_costs(folder: Path, seconds: float) -> dict[str, float]:
    """Seconds of CPU to encode ``seconds`` of stereo audio, per format."""
    out = {}
    rng = np.random.default_rng(1)
    raw = np.concatenate(_frames(int(seconds * 50)))
    # Speech is not a sine: noise at -20 dB keeps FLAC from compressing it to nothing.
    raw = np.clip(raw + rng.normal(0, 800, raw.shape), -32768, 32767).astype(np.int16)
    for fmt in ("flac", "wav", "ogg"):
        path = folder / f"enc.{fmt}"
        part = part_path(path)
        part.write_bytes(b"SBRAW1\0\0" + np.array([RATE, 2], dtype="<u4").tobytes() + raw.tobytes())
        t0 = time.process_time()
        done = encode_part(part, path, fmt)
        out[fmt] = time.process_time() - t0
        out[fmt + "_bytes_per_min"] = done.size / seconds * 60
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", default="50,200,500")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    seconds = args.seconds / 2 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="sb-bench-rec-") as tmp:
        folder = Path(tmp)
        print(
            f"{'calls':>6} {'feed p50 µs':>12} {'feed p99 µs':>12} {'µs/call':>8} "
            f"{'mix ref µs':>11} {'late ticks':>11} {'disk drain s':>13}"
        )
        for calls in [int(c) for c in args.calls.split(",")]:
            r = asyncio.run(_run(calls, seconds, folder))
            print(
                f"{calls:>6} {r['feed_p50_us']:>12.0f} {r['feed_p99_us']:>12.0f} "
                f"{r['feed_p50_us'] / calls:>8.2f} {r['mix_ref_us']:>11.0f} "
                f"{int(r['late_ticks']):>11} {r['drain_s']:>13.3f}"
            )
            for f in folder.glob("*.part"):
                f.unlink()
        enc_seconds = 30.0 if args.quick else 60.0
        costs = _encode_costs(folder, enc_seconds)
        print(f"\nencoding {enc_seconds:.0f} s of 8 kHz stereo (CPU seconds, size per minute):")
        for fmt in ("flac", "wav", "ogg"):
            print(
                f"  {fmt:<5} {costs[fmt]:6.3f} s  "
                f"({costs[fmt] / enc_seconds * 3600:.1f} s per hour of audio)  "
                f"{costs[fmt + '_bytes_per_min'] / 1e6:.2f} MB/min"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

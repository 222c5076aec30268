"""Mouth-to-ear latency of the browser phone path, on loopback, both directions.

The "browser" is an aiortc peer in this process speaking to ``/api/phone/ws`` exactly as
web/static/phone.js does (offer with its candidates gathered, then commands); its microphone
is a track that plays a 200 ms 1 kHz burst once a second. It dials extension 1001, whose
phone is a hosted SIP phone with a plain RTP port in this process too (no playout buffer),
which answers and plays bursts of its own back. So both ends' clocks are this process's.

* **browser → phone**: from the moment the burst's first 20 ms frame is handed to the
  browser's Opus encoder to the moment the phone's RTP port has decoded the first frame of
  it: Opus encode, DTLS-SRTP, ICE, aiortc's receive jitter buffer, resampling, the hosted
  phone's RTP, the media engine's leg and bridge, RTP to the phone.
* **phone → browser**: from the frame the phone sends to the frame the browser's aiortc
  receiver hands out (after its jitter buffer and Opus decode), the mirror path.

Not included, on both ends: the sound card's capture and playout buffers (a browser's is
typically 10-20 ms each way; a desk phone's playout buffer 20-60 ms). Goal (issue 13):
< 150 ms mouth-to-ear on loopback.

    python bench/browser_phone.py [--bursts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SetupError, percentile, print_table, start_switchboard
from media.pcm_port import PcmPort
from pbx.hosted_phone import CallMedia, HostedPhone

RATE = 48000
FRAME = RATE // 50
BURST_FRAMES = 10  # 200 ms
PERIOD_FRAMES = 50  # one burst a second
THRESHOLD = 1500.0  # mean |sample| of a frame that holds the burst (silence is ~0)
EXTENSIONS: dict[str, dict[str, object]] = {
    "1001": {"name": "Far end", "password": "pw-1001-bench"},
    "1002": {"name": "Bob", "password": "pw-1002-bench"},
}
CONFIG = "agents:\n  bob: {name: Bob, extensions: ['1002']}\n"


def _tone(samples: int, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(samples) / rate
    return (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)


class FarEnd:
    """Extension 1001: answers, records when each burst from the browser arrives, and plays
    bursts of its own."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.port = PcmPort()
        self.phone = HostedPhone(
            extension="1001", password="pw-1001-bench", server=server, listener=self
        )
        self.up = asyncio.Event()
        self.heard: list[float] = []  # onset times of bursts from the browser
        self.sent: list[float] = []  # onset times of our bursts

    def registered(self, ok: bool, reason: str) -> None:
        pass

    def incoming(self, call_id: str, caller: str, display: str, headers: dict[str, str]) -> None:
        self.phone.answer(call_id, self.port.port)

    def progress(self, call_id: str, status: int) -> None:
        pass

    def answered(self, call_id: str, media: CallMedia) -> None:
        self.port.configure((media.host, media.port), media.codec, media.payload_type, None)
        self.up.set()

    def ended(self, call_id: str, reason: str) -> None:
        pass

    async def listen(self) -> None:
        loud = False
        while True:
            pcm = await self.port.read(timeout=0.05)
            level = float(np.abs(pcm.astype(np.int32)).mean())
            if level > THRESHOLD and not loud:
                self.heard.append(time.perf_counter())
            loud = level > THRESHOLD / 3 if loud else level > THRESHOLD

    async def speak(self, bursts: int) -> None:
        rate = self.port.rate
        frame = rate // 50
        tone = _tone(frame, rate)
        silence = np.zeros(frame, dtype=np.int16)
        start = time.perf_counter()
        for n in range(bursts * PERIOD_FRAMES):
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.perf_counter()))
            k = n % PERIOD_FRAMES
            if k == 0:
                self.sent.append(time.perf_counter())
            self.port.send(tone if k < BURST_FRAMES else silence)


def browser_track(sent: list[float], bursts: int) -> Any:
    import av
    from aiortc import MediaStreamTrack

    tone = _tone(FRAME, RATE)
    silence = np.zeros(FRAME, dtype=np.int16)

    class Microphone(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start: float | None = None
            self.playing = False

        async def recv(self) -> av.AudioFrame:
            if self.start is None:
                self.start = time.perf_counter()
            await asyncio.sleep(max(0.0, self.start + self.n * 0.02 - time.perf_counter()))
            k = self.n % PERIOD_FRAMES
            pcm = silence
            if self.playing and self.n // PERIOD_FRAMES < bursts and k < BURST_FRAMES:
                pcm = tone
                if k == 0:
                    sent.append(time.perf_counter())
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self.n * FRAME
            frame.time_base = fractions.Fraction(1, RATE)
            self.n += 1
            return frame

    return Microphone()


async def run(api: str, ws_url: str, token: str, server: tuple[str, int], bursts: int) -> Any:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    far = FarEnd(server)
    await far.port.open()
    assert await far.phone.start(), "the far end did not register"
    sent_by_browser: list[float] = []
    heard_by_browser: list[float] = []
    mic = browser_track(sent_by_browser, bursts)
    pc = RTCPeerConnection()
    pc.addTrack(mic)
    receivers: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def ear() -> None:
            loud = False
            while True:
                frame = await track.recv()
                level = float(np.abs(frame.to_ndarray().astype(np.int32)).mean())
                if level > THRESHOLD and not loud:
                    heard_by_browser.append(time.perf_counter())
                loud = level > THRESHOLD / 3 if loud else level > THRESHOLD

        receivers.append(asyncio.ensure_future(ear()))

    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        up = asyncio.Event()
        registered = asyncio.Event()

        async def reader() -> None:
            async for text in ws:
                m = json.loads(text)
                if m["type"] == "ready":
                    await pc.setLocalDescription(await pc.createOffer())
                    await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
                elif m["type"] == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
                elif m["type"] == "registered" and m["ok"]:
                    registered.set()
                elif m["type"] == "up":
                    print(f"call up: {m['codec']} between the hosted phone and the engine")
                    up.set()
                elif m["type"] == "error":
                    print("phone error:", m["message"])

        reading = asyncio.ensure_future(reader())
        await asyncio.wait_for(registered.wait(), 10)
        await ws.send(json.dumps({"type": "dial", "number": "1001"}))
        await asyncio.wait_for(up.wait(), 10)
        await asyncio.wait_for(far.up.wait(), 10)
        listening = asyncio.ensure_future(far.listen())
        await asyncio.sleep(1.5)  # ICE, DTLS and the jitter buffers settle
        mic.playing = True
        mic.n = (mic.n // PERIOD_FRAMES + 1) * PERIOD_FRAMES - 1  # start on a burst soon
        mic.start = time.perf_counter() - mic.n * 0.02
        await far.speak(bursts)
        await asyncio.sleep(1.0)
        await ws.send(json.dumps({"type": "hangup"}))
        await asyncio.sleep(0.3)
        reading.cancel()
        listening.cancel()
    for r in receivers:
        r.cancel()
    await pc.close()
    await far.phone.close()
    far.port.close()
    return (
        _pair(sent_by_browser, far.heard),
        _pair(far.sent, heard_by_browser),
    )


def _pair(sent: list[float], heard: list[float]) -> list[float]:
    """Each burst's delay: the first onset heard after it was sent (within 0.9 s)."""
    out = []
    for s in sent:
        later = [h - s for h in heard if 0 <= h - s < 0.9]
        if later:
            out.append(min(later) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-phone-") as tmp:
        try:
            sb = start_switchboard(
                Path(tmp) / "sb", EXTENSIONS, extra_yaml=CONFIG, log_level="warning"
            )
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
        try:
            with httpx.Client(
                base_url=sb.api_url, headers={"Authorization": f"Bearer {sb.admin_token()}"}
            ) as c:
                body = {
                    "name": "bob",
                    "role": "agent",
                    "password": "bench-password",
                    "agent": "bob",
                }
                c.post("/api/users", json=body).raise_for_status()
                token = c.post("/api/tokens", json={"user": "bob"}).json()["token"]
            ws_url = f"ws://127.0.0.1:{sb.http_port}/api/phone/ws"
            up, down = asyncio.run(
                run(sb.api_url, ws_url, token, ("127.0.0.1", sb.sip_port), args.bursts)
            )
        finally:
            sb.stop()
    rows = []
    for name, values in (("browser → phone", up), ("phone → browser", down)):
        print(f"{name}: " + " ".join(f"{v:.0f}" for v in values) + " ms")
        if not values:
            rows.append([name, "0", "-", "-", "-", "< 150", "NO DATA"])
            continue
        p50 = statistics.median(values)
        rows.append(
            [
                name,
                str(len(values)),
                f"{min(values):.0f}",
                f"{p50:.0f}",
                f"{percentile(values, 99):.0f}",
                "< 150",
                "met" if percentile(values, 99) < 150 else "NOT MET",
            ]
        )
    print_table(
        "Browser phone mouth-to-ear on loopback (ms; sound-card buffers not included)",
        ["direction", "bursts", "min", "p50", "p99", "goal", "result"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

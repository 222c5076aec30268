"""The browser phone: WebRTC from the agent's browser into the PBX as an ordinary phone.

Theory of operation
-------------------
An agent without a desk phone clicks "Browser phone" on the agent panel. The page opens one
WebSocket, ``/api/phone/ws``, that carries everything of that phone: the SDP offer and
answer (the browser gathers its ICE candidates first, so no trickle is needed), the calls'
signalling (ringing, up, ended) and the agent's commands (answer, reject, hang up, dial,
keypad digits). The phone lives as long as that socket: a closed tab unregisters the phone
but never logs the agent out of the queues.

On the server, aiortc terminates the browser's media: ICE (RFC 8445), DTLS-SRTP (RFC 5764)
and Opus or G.711. Behind it is a :class:`PhoneLine`, built by the composition root
(``app/phone.py``): a SIP phone Switchboard hosts itself, registered as the agent's
extension on loopback, with a plain RTP port. To the PBX, queues, the recorder and
supervisors, the browser phone is therefore one more registered phone whose RTP comes from
loopback: it is an ordinary leg of the media engine.

Audio each way, in 20 ms frames:

* browser → caller: aiortc decodes the browser's track (48 kHz Opus, or 8 kHz G.711); an
  ``av.AudioResampler`` makes mono int16 at the line's rate; 20 ms slices go to
  ``PhoneLine.send`` (RTP to the engine's leg);
* caller → browser: :class:`LineTrack` is the track we send; its ``recv`` waits for the
  next frame the engine sent the line (silence when none came within 20 ms, so the stream
  keeps its pace) and aiortc encodes it for the browser.

Keypad digits come as ``{"type": "dtmf", "digit": "5"}`` messages and enter the call as
RFC 4733 events on the line's RTP stream, exactly what a desk phone would send.

Agents behind NAT: the browser and aiortc each need a way to reach the other. With the
server on a public address, host candidates are enough; else list STUN/TURN servers in
``browser_phone.ice_servers`` (docs/panel.md, "Browser phone"): both ends get the same list.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from web.api import websocket_principal
from web.auth import Principal
from web.phone_line import IceServer, PhoneLine, PhoneLines
from web.services import OperationError, Services

__all__ = ["IceServer", "LineTrack", "PhoneLine", "PhoneLines", "build_phone_router"]

log = structlog.get_logger("web.phone")

Int16Array = npt.NDArray[np.int16]
MAX_MESSAGE = 64 * 1024  # an SDP offer with every candidate is a few kB
DIGITS = frozenset("0123456789*#ABCD")
TRACK_RATE = 48000  # what we hand aiortc (Opus runs at 48 kHz; G.711 resamples down)
TRACK_FRAME = TRACK_RATE // 50
MAX_PHONES_PER_EXTENSION = 4  # browser tabs with a phone open, per extension
RECHECK_SECONDS = 15.0  # how often an open phone checks its user may still have it


class LineTrack:
    """The audio track aiortc sends to the browser: what the line hears (see module doc),
    always at ``TRACK_RATE`` (the line's rate follows the codec of each call, but aiortc's
    encoder is set up by the first frame it gets)."""

    @staticmethod
    def create(line: PhoneLine) -> Any:
        import av
        import soxr  # type: ignore[import-untyped]  # ships .pyi without py.typed
        from aiortc import MediaStreamTrack

        class _Track(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self._pts = 0
                self._rate = 0
                self._resampler: Any = None
                self._pending = np.zeros(0, dtype=np.int16)

            async def recv(self) -> av.AudioFrame:
                # Exactly 20 ms per frame: a resampler holds some samples back at first.
                while len(self._pending) < TRACK_FRAME:
                    pcm = await line.read()
                    rate = line.rate
                    if rate != TRACK_RATE:
                        if rate != self._rate:
                            self._resampler = soxr.ResampleStream(
                                rate, TRACK_RATE, 1, dtype="int16"
                            )
                            self._rate = rate
                        pcm = self._resampler.resample_chunk(pcm)
                    self._pending = np.concatenate((self._pending, pcm.astype(np.int16)))
                chunk, self._pending = self._pending[:TRACK_FRAME], self._pending[TRACK_FRAME:]
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk).reshape(1, -1), format="s16", layout="mono"
                )
                frame.sample_rate = TRACK_RATE
                frame.pts = self._pts
                frame.time_base = fractions.Fraction(1, TRACK_RATE)
                self._pts += TRACK_FRAME
                return frame

        return _Track()


async def _pump_microphone(track: Any, line: PhoneLine) -> None:
    """Browser audio → 20 ms mono slices at the line's rate → the line."""
    import av
    from aiortc.mediastreams import MediaStreamError

    rate = 0
    resampler: Any = None
    pending = np.zeros(0, dtype=np.int16)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if line.rate != rate:  # a new call, another codec
            rate = line.rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            pending = np.zeros(0, dtype=np.int16)
        frame_samples = rate // 50
        for out in resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            pending = np.concatenate((pending, samples)) if len(pending) else samples
            while len(pending) >= frame_samples:
                line.send(np.ascontiguousarray(pending[:frame_samples]))
                pending = pending[frame_samples:]


class BrowserPhone:
    """One browser phone session: its WebSocket, peer connection and line."""

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        lines: PhoneLines,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._ws = websocket
        self._principal = principal
        self._lines = lines
        self._still_allowed = still_allowed
        self._recheck = recheck_seconds
        self._line: PhoneLine | None = None
        self._pc: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(256)

    def push(self, event: dict[str, Any]) -> None:
        """Queue an event for the browser (dropped when the browser is far behind)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(event)

    async def run(self, extension: str) -> None:
        sender = asyncio.ensure_future(self._send_loop())
        try:
            try:
                self._line = await self._lines.open(extension, self.push)
            except OperationError as exc:
                await self._ws.send_text(json.dumps({"type": "error", "message": exc.message}))
                return
            self.push(
                {
                    "type": "ready",
                    "extension": extension,
                    "ice_servers": [i.as_json() for i in self._lines.ice_servers],
                }
            )
            registering = asyncio.ensure_future(self._line.start())
            registering.add_done_callback(self._registered)
            watcher = asyncio.ensure_future(self._watch())
            try:
                await self._receive_loop()
            finally:
                watcher.cancel()
        finally:
            await self._close()
            with contextlib.suppress(asyncio.QueueFull):  # full: the sender is stuck (cut below)
                self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, 1.0)

    async def _watch(self) -> None:
        """Now and then: is the user still who they were (logged in, not disabled, the
        extension still theirs)? Else the socket closes and the phone unregisters — a
        revoked agent must not keep taking customers' calls in an open tab."""
        if self._still_allowed is None:
            return
        while True:
            await asyncio.sleep(self._recheck)
            if not await self._still_allowed():
                log.info("browser_phone_revoked", user=self._principal.name)
                with contextlib.suppress(Exception):
                    await self._ws.close(code=4401, reason="credentials no longer valid")
                return

    def _registered(self, fut: asyncio.Future[bool]) -> None:
        ok = not fut.cancelled() and fut.exception() is None and fut.result()
        if not ok:
            self.push({"type": "registered", "ok": False, "reason": "registration failed"})

    async def _send_loop(self) -> None:
        while True:
            event = await self._outbox.get()
            if event is None:
                return
            try:
                await self._ws.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError):
                return

    async def _receive_loop(self) -> None:
        while True:
            try:
                text = await self._ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            if len(text) > MAX_MESSAGE:
                self.push({"type": "error", "message": "message too large"})
                continue
            try:
                msg = json.loads(text)
                kind = msg["type"]
            except (ValueError, KeyError, TypeError):
                self.push({"type": "error", "message": "not a phone message"})
                continue
            try:
                await self._handle(kind, msg)
            except Exception:
                log.exception("phone.command_failed", kind=kind, user=self._principal.name)
                self.push({"type": "error", "message": f"{kind} failed"})

    async def _handle(self, kind: str, msg: dict[str, Any]) -> None:
        line = self._line
        assert line is not None
        if kind == "offer":
            sdp = msg.get("sdp")
            if not isinstance(sdp, str):
                self.push({"type": "error", "message": "offer without sdp"})
                return
            answer = await self._negotiate(sdp)
            self.push({"type": "answer", "sdp": answer})
        elif kind == "answer_call":
            if not line.answer():
                self.push({"type": "error", "message": "no ringing call"})
        elif kind == "reject":
            line.reject()
        elif kind == "hangup":
            line.hangup()
        elif kind == "dial":
            number = str(msg.get("number", ""))
            if not number or len(number) > 32 or not all(c in DIGITS for c in number):
                self.push({"type": "error", "message": "dial: digits only"})
            elif not line.dial(number):
                self.push({"type": "error", "message": "a call is already in progress"})
        elif kind == "dtmf":
            digit = str(msg.get("digit", ""))
            if digit not in DIGITS or len(digit) != 1:
                self.push({"type": "error", "message": "dtmf: one of 0-9 * # A-D"})
            elif not line.send_dtmf(digit):
                self.push({"type": "error", "message": "no call to send digits to"})
        elif kind == "ping":
            self.push({"type": "pong"})
        else:
            self.push({"type": "error", "message": f"unknown message {kind!r}"})

    async def _negotiate(self, offer_sdp: str) -> str:
        """Answer the browser's offer (RFC 8829 JSEP: one audio stream, sendrecv)."""
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCPeerConnection,
            RTCSessionDescription,
        )

        line = self._line
        assert line is not None
        if self._pc is not None:
            await self._pc.close()
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=list(i.urls), username=i.username, credential=i.credential)
                for i in self._lines.ice_servers
            ]
        )
        pc = RTCPeerConnection(configuration=config)
        self._pc = pc

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                task = asyncio.ensure_future(_pump_microphone(track, line))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            self.push({"type": "media", "state": pc.connectionState})
            if pc.connectionState == "failed":
                line.hangup()

        pc.addTrack(LineTrack.create(line))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._pc is not None:
            with contextlib.suppress(Exception):
                await self._pc.close()
            self._pc = None
        if self._line is not None:
            with contextlib.suppress(Exception):
                await self._line.close()
            self._line = None


def build_phone_router(s: Services) -> APIRouter:
    router = APIRouter()
    open_phones: dict[str, int] = {}

    @router.websocket("/api/phone/ws")
    async def phone_ws(websocket: WebSocket) -> None:
        p = await websocket_principal(s, websocket)
        if p is None:
            return
        lines = s.phones
        own = sorted(s.ops.agent_scope(p.agent)[0]) if p.agent is not None else []
        wanted = websocket.query_params.get("extension")
        if lines is None:
            await websocket.close(code=4404, reason="the browser phone is switched off")
            return
        if not own:
            await websocket.close(code=4403, reason="only an agent's own extension has a phone")
            return
        if wanted is not None and wanted not in own:
            await websocket.close(code=4403, reason=f"extension {wanted} is not yours")
            return
        extension = wanted or own[0]
        if open_phones.get(extension, 0) >= MAX_PHONES_PER_EXTENSION:
            await websocket.close(code=4429, reason=f"too many browser phones for {extension}")
            return
        await websocket.accept()
        open_phones[extension] = open_phones.get(extension, 0) + 1

        async def still_allowed() -> bool:
            if not await s.auth.still_valid(p):
                return False
            return p.agent is not None and extension in s.ops.agent_scope(p.agent)[0]

        try:
            await BrowserPhone(websocket, p, lines, still_allowed).run(extension)
        finally:
            open_phones[extension] -= 1
            if not open_phones[extension]:
                del open_phones[extension]

    return router

"""The IVR's :class:`~ivr.engine.CallControl` on a call Switchboard answered.

Theory of operation
-------------------
The B2BUA answers the call and hands it to this adapter (a
:class:`pbx.b2bua.CallApplication`): the caller's digits arrive through :meth:`on_dtmf` into
one buffer, the hang-up through :meth:`on_hangup`. Prompts play on the caller's media leg
through the media engine; a prompt is interrupted here, by watching that buffer, so a digit is
consumed exactly once — either it interrupts the prompt (and :meth:`play` returns it) or it
waits in the buffer for the next :meth:`collect_digit` (type-ahead).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import structlog

from ivr.engine import CallerHungUp
from media import MediaEngine, Playlist, ToneSource
from pbx.b2bua import Call, CallApplication

__all__ = ["PbxCallControl", "PostCall", "application_factory"]

# A post-call application by flow name: given (the caller's new call, the call that ended).
PostCall = Callable[[str], Callable[[Call, Call], CallApplication]]

log = structlog.get_logger("ivr.pbx_call")


class PbxCallControl:
    """Runs an IVR flow's media actions on one answered call."""

    def __init__(
        self,
        call: Call,
        media: MediaEngine,
        *,
        did: str,
        tone_plan: str = "us",
        rate: int = 8000,
        post_call: PostCall | None = None,
    ) -> None:
        self.call = call
        self.media = media
        self.caller = call.caller
        self.did = did
        self.tone_plan = tone_plan
        self.rate = rate
        self._post_call = post_call
        # Digits not consumed yet, oldest first; ``_digit_arrived`` wakes whoever waits.
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._gone = asyncio.get_running_loop().create_future()

    # -- pbx.b2bua.CallApplication --------------------------------------------------------

    def on_dtmf(self, digit: str) -> None:
        self._digits.append(digit)
        self._digit_arrived.set()

    async def _next_digit(self) -> str:
        """The oldest unconsumed digit, waiting for one; a cancelled wait consumes none."""
        while not self._digits:
            self._digit_arrived.clear()
            await self._digit_arrived.wait()
        return self._digits.popleft()

    def on_hangup(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    # -- ivr.engine.CallControl -----------------------------------------------------------

    def _check(self) -> None:
        if self._gone.done() or self.call.ended:
            raise CallerHungUp()

    async def _until(self, *waits: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
        done, _ = await asyncio.wait([*waits, self._gone], return_when=asyncio.FIRST_COMPLETED)
        if self._gone in done:
            raise CallerHungUp()
        return done

    async def play(self, items: list[str | Path], interrupt_digits: str) -> str | None:
        self._check()
        # A digit typed ahead that may interrupt this prompt skips it altogether.
        if interrupt_digits and self._digits and self._digits[0] in interrupt_digits:
            return self._digits.popleft()
        source = Playlist([str(i) for i in items], self.rate)
        await asyncio.to_thread(source.prepare)
        self._check()
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(_event: object) -> None:
            if not finished.done():
                finished.set_result(None)

        player = self.media.play(self.call.a.leg_id, source, on_done=done)
        try:
            while True:
                getter = asyncio.ensure_future(self._next_digit())
                try:
                    ready = await self._until(finished, getter)
                except BaseException:
                    getter.cancel()
                    raise
                if getter in ready:
                    digit = getter.result()
                    if digit in interrupt_digits:
                        return digit
                    # Not an interrupting key: keep it for the next collect (type-ahead).
                    self._digits.appendleft(digit)
                    if finished.done():
                        return None
                    # Wait for the prompt to end; later digits are buffered normally.
                    await self._until(finished)
                    return None
                getter.cancel()
                return None
        finally:
            self.media.stop_play(player)

    async def collect_digit(self, timeout: float) -> str | None:
        self._check()
        getter = asyncio.ensure_future(self._next_digit())
        timer: asyncio.Future[None] = asyncio.ensure_future(asyncio.sleep(timeout))
        try:
            ready = await self._until(getter, timer)
        finally:
            timer.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result() if getter in ready else None

    async def record(self, path: Path, max_seconds: float, beep: bool) -> float:
        """Record what the caller says (voicemail), ended by ``#``, the time limit or the
        caller hanging up; the file is written off the event loop."""
        self._check()
        if beep:
            await self._play_source(ToneSource("beep", self.tone_plan, rate=self.rate))
        frames: list[np.ndarray[Any, Any]] = []
        bridge = f"rec-{self.call.a.leg_id}"
        self.media.create_bridge(bridge)
        self.media.join(bridge, self.call.a.leg_id)
        tap = self.media.add_tap(
            bridge, self.call.a.leg_id, lambda pcm, rate: frames.append(pcm.copy())
        )
        try:
            getter = asyncio.ensure_future(self._wait_for_digit("#"))
            timer: asyncio.Future[None] = asyncio.ensure_future(asyncio.sleep(max_seconds))
            with contextlib.suppress(CallerHungUp):
                await self._until(getter, timer)
            getter.cancel()
            timer.cancel()
        finally:
            self.media.remove_tap(tap)
            if self.call.a.leg_id in self.media:
                self.media.leave(bridge, self.call.a.leg_id)
            self.media.destroy_bridge(bridge)
        audio = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(soundfile.write, str(path), audio, self.rate, "PCM_16")
        return len(audio) / self.rate

    async def _wait_for_digit(self, wanted: str) -> None:
        while await self._next_digit() != wanted:
            pass

    async def _play_source(self, source: Any) -> None:
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(_event: object) -> None:
            if not finished.done():
                finished.set_result(None)

        player = self.media.play(self.call.a.leg_id, source, on_done=done)
        try:
            await self._until(finished)
        finally:
            self.media.stop_play(player)

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        self._check()
        if survey is not None:
            if self._post_call is None:
                log.warning("ivr_survey_unavailable", survey=survey)
            else:
                # When the callee hangs up, the caller is handed to the survey flow.
                self.call.after_callee = self._post_call(survey)
                self.call.after_callee_label = f"survey:{survey}"

        def failed(status: int) -> None:
            log.info("ivr_transfer_failed", to=destination, status=status)
            self.call.hang_up_caller("transfer_failed")

        if not self.call.connect_to(destination, failed):
            failed(480)

    async def hangup(self) -> None:
        self.call.hang_up_caller()


def application_factory(
    start_session: Callable[[PbxCallControl], object],
    media: MediaEngine,
    tone_plan: str,
    post_call: PostCall | None = None,
) -> Callable[[Call, Any], PbxCallControl]:
    """A :data:`pbx.server.ApplicationFactory` that runs ``start_session`` on each call."""

    def start(call: Call, decision: Any) -> PbxCallControl:
        control = PbxCallControl(
            call, media, did=decision.number, tone_plan=tone_plan, post_call=post_call
        )
        start_session(control)
        return control

    return start

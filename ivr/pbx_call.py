"""The IVR's :class:`~ivr.engine.IvrCall` on a call, through the call-control seam.

Theory of operation
-------------------
The SIP server answers the call and the seam (:class:`pbx.control.CallControl`) hands it to
the IVR host as ``CallArrived``; the host makes one :class:`PbxCallControl` per call and
forwards it that call's events: the caller's digits go into one buffer, the end of the call
and of each prompt wake whoever waits. A prompt is interrupted here, by watching that buffer,
so a digit is consumed exactly once — either it interrupts the prompt (and :meth:`play`
returns it) or it waits in the buffer for the next :meth:`collect_digit` (type-ahead).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from pathlib import Path
from typing import Any

import structlog

from ivr.engine import CallerHungUp
from pbx.control import CallControl
from recorder import Capture

__all__ = ["PbxCallControl"]

log = structlog.get_logger("ivr.pbx_call")


class PbxCallControl:
    """Runs an IVR flow's media actions on one answered call."""

    def __init__(
        self,
        control: CallControl,
        call_id: str,
        *,
        caller: str,
        did: str,
        rate: int = 8000,
    ) -> None:
        self.control = control
        self.call_id = call_id
        self.caller = caller
        self.did = did
        self.rate = rate
        # Digits not consumed yet, oldest first; ``_digit_arrived`` wakes whoever waits.
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._plays: dict[str, asyncio.Future[None]] = {}
        self.released = False  # the flow handed the call on (queue, extension): not ours

    # -- events of this call, from the IVR host ------------------------------------------------

    def on_dtmf(self, digit: str) -> None:
        self._digits.append(digit)
        self._digit_arrived.set()

    def on_hangup(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    def on_playback_finished(self, play_id: str) -> None:
        finished = self._plays.pop(play_id, None)
        if finished is not None and not finished.done():
            finished.set_result(None)

    def on_connect_failed(self, status: int) -> None:
        log.info("ivr_transfer_failed", call=self.call_id, status=status)
        self.control.hangup(self.call_id, "transfer_failed")

    # -- ivr.engine.IvrCall ---------------------------------------------------------------

    async def _next_digit(self) -> str:
        """The oldest unconsumed digit, waiting for one; a cancelled wait consumes none."""
        while not self._digits:
            self._digit_arrived.clear()
            await self._digit_arrived.wait()
        return self._digits.popleft()

    def _check(self) -> None:
        if self._gone.done():
            raise CallerHungUp()

    async def _until(self, *waits: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
        done, _ = await asyncio.wait([*waits, self._gone], return_when=asyncio.FIRST_COMPLETED)
        if self._gone in done:
            raise CallerHungUp()
        return done

    def _start(self, play_id: str | None) -> asyncio.Future[None]:
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if play_id is None:  # no media any more: the call is going
            finished.set_result(None)
        else:
            self._plays[play_id] = finished
        return finished

    async def play(self, items: list[str | Path], interrupt_digits: str) -> str | None:
        self._check()
        # A digit typed ahead that may interrupt this prompt skips it altogether.
        if interrupt_digits and self._digits and self._digits[0] in interrupt_digits:
            return self._digits.popleft()
        files = [str(i) for i in items]
        await self.control.preload(files)
        self._check()
        play_id = self.control.play(self.call_id, files)
        finished = self._start(play_id)
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
            self.control.stop_play(play_id)
            if play_id is not None:
                self._plays.pop(play_id, None)

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
            await self._play_tone("beep")
        capture = Capture(self.rate)
        tap = self.control.tap(self.call_id, capture.on_frame)
        try:
            getter = asyncio.ensure_future(self._wait_for_digit("#"))
            timer: asyncio.Future[None] = asyncio.ensure_future(asyncio.sleep(max_seconds))
            with contextlib.suppress(CallerHungUp):
                await self._until(getter, timer)
            getter.cancel()
            timer.cancel()
        finally:
            if tap is not None:
                self.control.stop_tap(tap)
        return await capture.write(path)

    async def _wait_for_digit(self, wanted: str) -> None:
        while await self._next_digit() != wanted:
            pass

    async def _play_tone(self, tone: str) -> None:
        play_id = self.control.play_tone(self.call_id, tone)
        finished = self._start(play_id)
        try:
            await self._until(finished)
        finally:
            self.control.stop_play(play_id)

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        self._check()
        if survey is not None:
            # When the callee hangs up, the caller is handed to the survey flow.
            self.control.continue_after_callee(self.call_id, "ivr", survey)
        # ``number:<digits>``: an outside number the flow's author wrote (the engine lets no
        # caller input or variable make one); anything else is an extension only.
        outside = destination.startswith("number:")
        target = destination.removeprefix("number:")
        if not self.control.connect_to(self.call_id, target, outside=outside):
            self.on_connect_failed(480)
            return
        self.released = True

    async def hangup(self) -> None:
        self.control.hangup(self.call_id)

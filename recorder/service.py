"""The call recorder: applies the recording policy to calls, through the call-control seam.

Theory of operation
-------------------
The recorder subscribes to the seam's events. When a party answers a call (``LegAnswered``
with role ``callee``: an agent took a queue call, a phone answered), it asks the policy
(:class:`RecordingSettings`) whether to record this segment: a queue's own ``record`` wins,
then an extension's, then ``recording.record`` by the call's direction, then the sampling
share. To record, it opens a stereo tap on the call (:meth:`CallControl.tap_call`: left what
the caller says, right what the caller hears) whose frames go to a :class:`Recording` (disk
thread, never the loop), and adds the recording's row in state ``recording`` (committed:
the row exists before anyone is told the call is recorded, so a crash leaves something to
repair). The row gets the call's numbers, direction, queue, agent and extension as the call
record will have them (re-read just after the answer, once the ACD has named the agent).

``CallEnded`` (or ``CallRetired``) ends the segment: the tap stops, the part file is encoded
in a thread, and the row is finished with duration, size and SHA-256. A transferred call
goes on in a new segment (docs/records.md): that segment is judged again when its party
answers, and becomes its own recording whose ``linked_id`` names the chain; a recording
started or stopped on demand carries that choice over to the chain's later segments.

On demand: the API (:class:`recorder.commands.RecorderCommands`) and two codes dialled
during the call by a Switchboard phone on it (``toggle_code`` starts or stops,
``pause_code`` pauses or resumes: the paused span is written as silence and listed in the
row).

At start, rows left in state ``recording`` by a crash are repaired: the part file is encoded
(what was on disk plays) and the row marked ``truncated``. A daily job deletes recordings
older than ``retention_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import soundfile
import structlog

from crm import Store
from crm.recordings import RecordingData, RecordingState
from pbx.control import CallControl, CallInfo
from pbx.events import CallEnded, CallEvent, CallRetired, DtmfReceived, LegAnswered
from recorder.commands import RecorderError
from recorder.writer import FORMATS, DiskThread, Encoded, Recording, encode_part, part_path

__all__ = ["Recorder", "RecordingSettings"]

log = structlog.get_logger("switchboard.recorder")

MODES = ("all", "none", "inbound", "outbound", "internal")
CODE_SECONDS = 3.0  # the digits of an in-call code must come within this time
CHAIN_MEMORY = 10_000  # chains whose on-demand choice is remembered
RETENTION_EVERY = 24 * 3600.0
RETENTION_FIRST = 60.0  # the first retention pass, seconds after start
FINISH_TIMEOUT = 30.0  # at shutdown, how long recordings may take to be finished
FINISH_ATTEMPTS = 4  # writes of a finished row (1, 2, 4 s apart) before the next start's repair


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """The recording policy (config ``recording:`` and ``record:`` per queue/extension)."""

    folder: Path
    record: str = "none"
    sample_percent: float = 100.0
    format: str = "flac"
    retention_days: int = 0
    announcement: str | None = None  # a file played to the caller when recording starts
    toggle_code: str = "*1"
    pause_code: str = "*3"
    queues: Mapping[str, bool] = field(default_factory=dict)
    extensions: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.record not in MODES:
            raise ValueError(f"recording.record must be one of {MODES}, not {self.record!r}")
        if self.format not in FORMATS:
            raise ValueError(f"recording.format must be one of {tuple(FORMATS)}")

    def wants(
        self, *, direction: str, queue: str | None, extensions: Sequence[str], draw: float
    ) -> str | None:
        """Why this segment is recorded ("policy", "queue", "extension"), or None.
        ``draw`` is a uniform random number in [0, 1) for the sample."""
        if queue is not None and queue in self.queues:
            picked, why = self.queues[queue], "queue"
        else:
            says = [self.extensions[e] for e in extensions if e in self.extensions]
            if says:
                picked, why = any(says), "extension"  # one phone asking to record wins
            else:
                picked = self.record == "all" or self.record == direction
                why = "policy"
        if not picked:
            return None
        if self.sample_percent < 100 and draw * 100 >= self.sample_percent:
            return None
        return why


@dataclass(slots=True)
class _Session:
    call_id: str
    recording: Recording
    tap: str
    data: RecordingData
    stored: asyncio.Task[RecordingData | None]
    digits: dict[str, tuple[str, float]] = field(default_factory=dict)  # leg -> (keys, at)


class Recorder:
    """Records calls as the policy says; implements :class:`RecorderCommands`."""

    def __init__(
        self,
        control: CallControl,
        store: Store,
        settings: RecordingSettings,
        *,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control = control
        self.store = store
        self.settings = settings
        self._draw = draw
        self._clock = clock
        self._disk = DiskThread()
        self._active: dict[str, _Session] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        # chain (its first record_id) -> (recorded?, why): the policy's decision at its first
        # answer, or the last on-demand start/stop
        self._chains: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self._digits: dict[tuple[str, str], tuple[str, float]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._retention: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.settings.folder

    async def open(self) -> None:
        """Repair what a crash left, then follow calls; the retention job runs daily."""
        self._disk.start()
        await self.repair()
        self._unsubscribe = self.control.subscribe(self.on_event)
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def close(self) -> None:
        """Finish every recording (calls still up keep going, unrecorded)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        for call_id in list(self._active):
            self._end(call_id)
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=FINISH_TIMEOUT)
        await asyncio.to_thread(self._disk.stop)

    def reconfigure(self, settings: RecordingSettings) -> None:
        """A reload: new calls follow the new policy; recordings in progress go on."""
        self.settings = replace(settings, folder=self.settings.folder)

    # -- events ----------------------------------------------------------------------------------

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, LegAnswered):
            if event.role == "callee":
                self._answered(event.call_id)
        elif isinstance(event, DtmfReceived):
            self._digit(event)
        elif isinstance(event, CallEnded | CallRetired):
            self._end(event.call_id)

    def _answered(self, call_id: str) -> None:
        if call_id in self._active:
            self._refresh_later(call_id)
            return
        # Judged once the answering code has finished: a continued segment (transfer,
        # intercept, callback) gets its notes (direction, queue) right after its answer.
        asyncio.get_running_loop().call_soon(self._decide, call_id)

    def _decide(self, call_id: str) -> None:
        """Record this segment? A chain is judged once, at its first answered segment: the
        later segments of a conversation (after a transfer) follow that decision, or the
        last start/stop made on demand, so a sampled or policy-picked conversation is
        recorded whole."""
        if call_id in self._active:
            return
        info = self.control.info(call_id)
        if info is None or info.ended:
            return
        chain = info.linked_id or call_id
        known = self._chains.get(chain)
        if known is not None:
            why: str | None = known[1] if known[0] else None
        else:
            extensions = [e for e in (info.local_caller_ext, info.local_callee_ext) if e]
            why = self.settings.wants(
                direction=info.direction,
                queue=info.queue,
                extensions=extensions,
                draw=self._draw(),
            )
            self._remember(chain, why is not None, why or "policy")
        if why is not None:
            try:
                self._begin(call_id, why)
            except RecorderError as err:
                log.warning("recording_not_started", call=call_id, reason=err.message)

    def _digit(self, event: DtmfReceived) -> None:
        """In-call codes from a Switchboard phone on the call (not from an outside caller)."""
        info = self.control.info(event.call_id)
        if info is None:
            return
        # Only a local phone: a trunk party's number is whatever it presented.
        ext = info.local_callee_ext if event.role == "callee" else info.local_caller_ext
        if not ext or not self.control.is_extension(ext):
            return
        key = (event.call_id, event.leg_id)
        now = self._clock()
        keys, at = self._digits.get(key, ("", now))
        keys = ((keys if now - at <= CODE_SECONDS else "") + event.digit)[-8:]
        self._digits[key] = (keys, now)
        try:
            if keys.endswith(self.settings.toggle_code):
                self._digits.pop(key, None)
                if event.call_id in self._active:
                    self._stop(event.call_id, by=ext)
                else:
                    self._start(event.call_id, by=ext)
            elif keys.endswith(self.settings.pause_code):
                self._digits.pop(key, None)
                session = self._active.get(event.call_id)
                if session is not None:
                    if session.recording.paused_at is None:
                        self._pause(session, by=ext)
                    else:
                        self._resume(session, by=ext)
        except RecorderError as err:
            log.info("recording_code_refused", call=event.call_id, reason=err.message)

    # -- recording a segment ---------------------------------------------------------------------

    def _begin(self, call_id: str, why: str, by: str | None = None) -> _Session:
        info = self.control.info(call_id)
        if info is None or info.ended:
            raise RecorderError(404, f"no live call {call_id}")
        started = datetime.now(UTC)
        recording_id = "rec-" + secrets.token_hex(12)
        fmt = self.settings.format
        relative = f"{started:%Y/%m/%d}/{recording_id}.{fmt}"
        recording = Recording(self._disk, self.folder / relative, fmt)
        tap = self.control.tap_call(call_id, recording.feed)
        if tap is None:
            raise RecorderError(409, f"call {call_id} has no media to record")
        data = RecordingData(
            recording_id=recording_id,
            call_id=call_id,
            started=started,
            path=relative,
            format=fmt,
            rate=8000,
            linked_id=info.linked_id,
            caller=info.caller,
            callee=info.callee_ext or info.callee,
            dialled=info.dialled,
            direction=info.direction,
            extension=_extension_of(
                info.local_callee_ext, info.local_caller_ext, self.control.is_extension
            ),
            agent=info.agent,
            queue=info.queue,
            reason=why,
        )
        stored = asyncio.get_running_loop().create_task(self.store.add_recording(data))
        session = _Session(call_id, recording, tap, data, stored)
        self._active[call_id] = session
        stored.add_done_callback(lambda task: self._row_added(session, task))
        log.info("recording_started", call=call_id, recording=recording_id, reason=why, by=by)
        if self.settings.announcement:
            self.control.play(call_id, [self.settings.announcement])
        self._refresh_later(call_id)
        return session

    def _row_added(self, session: _Session, task: asyncio.Task[RecordingData | None]) -> None:
        """A recording without its row could never be found, repaired or expired: if the
        row cannot be written, stop recording and remove what was written."""
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "recording_row_not_stored",
            recording=session.data.recording_id,
            error=repr(task.exception()),
        )
        if self._active.get(session.call_id) is session:
            del self._active[session.call_id]
            self.control.stop_tap(session.tap)
        session.recording.closed = True

        async def discard() -> None:
            await self._disk.close(session.recording)
            await asyncio.to_thread(_unlink, session.recording.path)

        task_ = asyncio.get_running_loop().create_task(discard())
        self._finishing.add(task_)
        task_.add_done_callback(self._finishing.discard)

    def _extension(self, info: CallInfo) -> str | None:
        return _extension_of(
            info.local_callee_ext, info.local_caller_ext, self.control.is_extension
        )

    def _refresh_later(self, call_id: str) -> None:
        """Read the call's notes again once the ACD has annotated the answer (agent id)."""
        asyncio.get_running_loop().call_soon(self._refresh, call_id)

    def _refresh(self, call_id: str) -> None:
        session = self._active.get(call_id)
        info = self.control.info(call_id)
        if session is None or info is None:
            return
        session.data = replace(
            session.data,
            callee=info.callee_ext or info.callee,
            direction=info.direction,
            dialled=info.dialled,
            agent=info.agent or session.data.agent,
            queue=info.queue or session.data.queue,
            extension=_extension_of(
                info.local_callee_ext, info.local_caller_ext, self.control.is_extension
            )
            or session.data.extension,
        )

    def _end(self, call_id: str) -> asyncio.Task[None] | None:
        session = self._active.pop(call_id, None)
        for key in [k for k in self._digits if k[0] == call_id]:
            del self._digits[key]
        if session is None:
            return None
        self._refresh(call_id)  # gone already on CallEnded; harmless
        self.control.stop_tap(session.tap)
        task = asyncio.get_running_loop().create_task(self._finish(session))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return task

    async def _finish(self, session: _Session) -> None:
        data = session.data
        recording = session.recording
        state, error = RecordingState.COMPLETE, None
        encoded = Encoded(0.0, 0, "")
        try:
            encoded = await recording.finish()
        except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
            state, error = RecordingState.FAILED, str(exc)
            if recording.error is None:  # a failed write said so already: one line
                log.error("recording_failed", recording=data.recording_id, error=error)
        customer_id = None
        outside = data.callee if data.direction == "outbound" else data.caller
        with contextlib.suppress(Exception):
            customer = await self.store.find_customer_by_number(outside)
            customer_id = customer.id if customer is not None else None
        try:
            await session.stored  # the row exists before it is finished
        except Exception:
            return  # _row_added removed the file and said so
        for attempt in range(FINISH_ATTEMPTS):
            try:
                await self._finish_row(session, state, error, encoded, customer_id)
                break
            except Exception:
                if attempt + 1 == FINISH_ATTEMPTS:  # the next start repairs the row
                    log.exception("recording_row_not_finished", recording=data.recording_id)
                    return
                await asyncio.sleep(2**attempt)
        log.info(
            "recording_saved",
            recording=data.recording_id,
            call=data.call_id,
            state=state.value,
            seconds=round(encoded.duration, 2),
            bytes=encoded.size,
        )

    async def _finish_row(
        self,
        session: _Session,
        state: RecordingState,
        error: str | None,
        encoded: Encoded,
        customer_id: int | None,
    ) -> None:
        data, recording = session.data, session.recording
        await self.store.finish_recording(
            data.recording_id,
            state=state,
            ended=datetime.now(UTC),
            duration=round(encoded.duration, 3),
            size=encoded.size,
            sha256=encoded.sha256 or None,
            pauses=tuple(recording.pauses),
            error=error,
            rate=encoded.rate if encoded.size else recording.rate,
            agent=data.agent,
            queue=data.queue,
            extension=data.extension,
            customer_id=customer_id,
            callee=data.callee,
            direction=data.direction,
        )

    # -- on demand (RecorderCommands) -------------------------------------------------------------

    def recording_of(self, call_id: str) -> str | None:
        session = self._active.get(call_id)
        return session.data.recording_id if session is not None else None

    def _chain(self, call_id: str) -> str:
        info = self.control.info(call_id)
        return (info.linked_id if info is not None else None) or call_id

    def _remember(self, chain: str, choice: bool, why: str = "on demand") -> None:
        self._chains[chain] = (choice, why)
        self._chains.move_to_end(chain)
        while len(self._chains) > CHAIN_MEMORY:
            self._chains.popitem(last=False)

    def _start(self, call_id: str, *, by: str | None) -> _Session:
        if call_id in self._active:
            raise RecorderError(409, f"call {call_id} is being recorded already")
        session = self._begin(call_id, "on demand", by=by)
        self._remember(self._chain(call_id), True)
        return session

    def _stop(self, call_id: str, *, by: str | None) -> tuple[_Session, asyncio.Task[None]]:
        session = self._session(call_id)
        self._remember(self._chain(call_id), False)
        log.info("recording_stopped", call=call_id, recording=session.data.recording_id, by=by)
        task = self._end(call_id)
        assert task is not None
        return session, task

    def _pause(self, session: _Session, *, by: str | None) -> None:
        if not session.recording.pause():
            raise RecorderError(409, "the recording is paused already")
        log.info("recording_paused", recording=session.data.recording_id, by=by)

    def _resume(self, session: _Session, *, by: str | None) -> None:
        if not session.recording.resume():
            raise RecorderError(409, "the recording is not paused")
        log.info("recording_resumed", recording=session.data.recording_id, by=by)

    def _session(self, call_id: str) -> _Session:
        session = self._active.get(call_id)
        if session is None:
            if self.control.info(call_id) is None:
                raise RecorderError(404, f"no live call {call_id}")
            raise RecorderError(409, f"call {call_id} is not being recorded")
        return session

    async def start(self, call_id: str, *, by: str | None = None) -> str:
        session = self._start(call_id, by=by)
        # committed before it is acknowledged; a cancelled request does not cancel the write
        await asyncio.shield(session.stored)
        return session.data.recording_id

    async def stop(self, call_id: str) -> str:
        session, finished = self._stop(call_id, by=None)
        await asyncio.shield(finished)  # the file is encoded and its row finished
        return session.data.recording_id

    async def pause(self, call_id: str) -> str:
        session = self._session(call_id)
        self._pause(session, by=None)
        return session.data.recording_id

    async def resume(self, call_id: str) -> str:
        session = self._session(call_id)
        self._resume(session, by=None)
        return session.data.recording_id

    # -- after a crash, and retention -----------------------------------------------------------

    async def repair(self) -> int:
        """Finish rows a crash left in state ``recording``; how many were repaired."""
        rows = await self.store.recordings_in_state(RecordingState.RECORDING)
        for row in rows:
            path = self.folder / row.path
            part = part_path(path)
            state, error = RecordingState.TRUNCATED, None
            encoded: Encoded | None = None
            try:
                if part.exists():
                    encoded = await asyncio.to_thread(encode_part, part, path, row.format)
                elif path.exists():  # encoded, but the row was not finished: it is whole
                    encoded = await asyncio.to_thread(_measure, path)
                    state = RecordingState.COMPLETE
                else:
                    state, error = RecordingState.FAILED, "no audio was on disk after a crash"
            except Exception as exc:  # one bad row must not keep Switchboard from starting
                state, error = RecordingState.FAILED, f"repair failed: {exc!r}"
            await self.store.finish_recording(
                row.recording_id,
                state=state,
                ended=row.started + timedelta(seconds=encoded.duration if encoded else 0.0),
                duration=round(encoded.duration, 3) if encoded else 0.0,
                size=encoded.size if encoded else 0,
                sha256=encoded.sha256 if encoded else None,
                pauses=row.pauses,
                error=error,
                rate=encoded.rate if encoded else None,
            )
            log.warning(
                "recording_repaired",
                recording=row.recording_id,
                state=state.value,
                seconds=round(encoded.duration, 2) if encoded else 0,
            )
        return len(rows)

    async def apply_retention(self, now: datetime | None = None) -> int:
        """Delete recordings (file and row) older than ``retention_days``; how many."""
        days = self.settings.retention_days
        if days <= 0:
            return 0
        before = (now or datetime.now(UTC)) - timedelta(days=days)
        deleted = 0
        while True:
            rows = await self.store.recordings_older_than(before, 500)
            if not rows:
                break
            for row in rows:
                path = self.folder / row.path
                try:
                    await asyncio.to_thread(_unlink, path)
                except OSError as exc:  # the row goes anyway: the next pass must move on
                    log.warning("recording_file_not_deleted", path=str(path), error=str(exc))
                await self.store.delete_recording(row.recording_id)
                deleted += 1
        if deleted:
            log.info("recordings_expired", count=deleted, before=before.isoformat())
        return deleted

    async def _retention_loop(self) -> None:
        await asyncio.sleep(RETENTION_FIRST)
        while True:
            try:
                await self.apply_retention()
            except Exception:
                log.exception("recording_retention_failed")
            await asyncio.sleep(RETENTION_EVERY)


def _extension_of(
    callee_ext: str | None, caller_ext: str | None, is_extension: Callable[[str], bool]
) -> str | None:
    """The Switchboard extension on the call: the one that answered, else the caller's."""
    for ext in (callee_ext, caller_ext):
        if ext and is_extension(ext):
            return ext
    return None


def _measure(path: Path) -> Encoded:
    from recorder.writer import _sha256

    info = soundfile.info(str(path))
    return Encoded(
        info.frames / info.samplerate, path.stat().st_size, _sha256(path), info.samplerate
    )


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    part_path(path).unlink(missing_ok=True)

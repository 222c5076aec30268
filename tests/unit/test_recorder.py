"""The recorder: files written off the clock, the policy, on-demand commands and codes, crash
repair and retention — against the fake call-control seam and a real store (SQLite)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from structlog.testing import capture_logs

from crm import Store
from crm.recordings import RecordingData, RecordingState
from pbx.events import CallEnded, DtmfReceived, LegAnswered
from recorder.commands import RecorderError
from recorder.service import Recorder, RecordingSettings
from recorder.writer import DiskThread, Recording, encode_part, part_path
from tests.unit.fake_control import FakeCallControl, as_control

RATE = 8000
N = 160  # samples per 20 ms frame


def tone(freq: float, frames: int, start: int = 0, rate: int = RATE) -> np.ndarray:
    t = (np.arange(frames * rate // 50) + start * rate // 50) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


def stereo_frames(
    left_hz: float, right_hz: float, frames: int, rate: int = RATE
) -> Iterator[np.ndarray]:
    n = rate // 50
    left, right = tone(left_hz, frames, rate=rate), tone(right_hz, frames, rate=rate)
    for i in range(frames):
        out = np.empty(2 * n, dtype=np.int16)
        out[0::2] = left[i * n : (i + 1) * n]
        out[1::2] = right[i * n : (i + 1) * n]
        yield out


def peak_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


# -- the writer ------------------------------------------------------------------------------


@pytest.fixture
async def disk() -> AsyncIterator[DiskThread]:
    thread = DiskThread()
    thread.start()
    yield thread
    await asyncio.to_thread(thread.stop)


@pytest.mark.parametrize("fmt", ["flac", "wav", "ogg"])
async def test_a_recording_is_stereo_caller_left_callee_right(
    disk: DiskThread, tmp_path: Path, fmt: str
) -> None:
    rec = Recording(disk, tmp_path / "2026" / f"r.{fmt}", fmt)
    for frame in stereo_frames(1000, 440, 100):
        rec.feed(frame, RATE)
    done = await rec.finish()
    path = tmp_path / "2026" / f"r.{fmt}"
    assert not part_path(path).exists()
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert rate == RATE and audio.shape[1] == 2
    assert abs(done.duration - 2.0) < 0.01 and abs(len(audio) / rate - 2.0) < 0.05
    assert done.size == path.stat().st_size
    assert done.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(peak_hz(audio[:, 0]) - 1000) < 20
    assert abs(peak_hz(audio[:, 1]) - 440) < 20
    if fmt != "ogg":  # lossless: sample for sample
        assert np.array_equal(audio[:, 0], tone(1000, 100))


async def test_a_paused_span_is_silent_in_both_channels(disk: DiskThread, tmp_path: Path) -> None:
    rec = Recording(disk, tmp_path / "p.flac", "flac")
    frames = list(stereo_frames(1000, 440, 150))
    for frame in frames[:50]:
        rec.feed(frame, RATE)
    assert rec.pause() and not rec.pause()
    for frame in frames[50:100]:
        rec.feed(frame, RATE)
    assert rec.resume() and not rec.resume()
    for frame in frames[100:]:
        rec.feed(frame, RATE)
    await rec.finish()
    audio, _ = soundfile.read(str(tmp_path / "p.flac"), dtype="int16")
    assert rec.pauses == [(1.0, 2.0)]
    assert not audio[RATE : 2 * RATE].any()
    assert audio[: RATE - 1].any() and audio[2 * RATE :].any()


async def test_a_wideband_frame_joins_at_the_file_rate(disk: DiskThread, tmp_path: Path) -> None:
    rec = Recording(disk, tmp_path / "w.wav", "wav")
    for frame in stereo_frames(1000, 440, 50):
        rec.feed(frame, RATE)
    for frame in stereo_frames(1000, 440, 50, rate=16000):
        rec.feed(frame, 16000)
    done = await rec.finish()
    audio, rate = soundfile.read(str(tmp_path / "w.wav"), dtype="int16")
    assert rate == RATE and abs(done.duration - 2.0) < 0.01
    assert abs(peak_hz(audio[RATE:, 0]) - 1000) < 20


async def test_a_part_cut_by_a_crash_still_encodes(disk: DiskThread, tmp_path: Path) -> None:
    path = tmp_path / "c.flac"
    rec = Recording(disk, path, "flac")
    for frame in stereo_frames(1000, 440, 60):
        rec.feed(frame, RATE)
    await disk.close(rec)  # on disk, as a kill -9 would find it (no finish)
    with part_path(path).open("ab") as f:
        f.write(b"\x01")  # half a sample: the crash came mid-write
    done = encode_part(part_path(path), path, "flac")
    assert abs(done.duration - 1.2) < 0.001
    audio, _ = soundfile.read(str(path), dtype="int16")
    assert np.array_equal(audio[:, 1], tone(440, 60))


async def test_an_unwritable_folder_fails_the_recording_not_the_call(
    disk: DiskThread, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")  # fails for root too
    rec = Recording(disk, blocked / "sub" / "x.flac", "flac")
    for frame in stereo_frames(1000, 440, 10):
        rec.feed(frame, RATE)  # never raises
    with pytest.raises(OSError, match=r"Not a directory|File exists"):
        await rec.finish()
    assert rec.error is not None
    rec.feed(next(stereo_frames(1000, 440, 1)), RATE)  # ignored, no error


class StalledFile:
    """A part file on a disk that stalls: each write waits for ``go`` (a hung NFS, say)."""

    def __init__(self, go: threading.Event) -> None:
        self.go = go
        self.written = 0

    def tell(self) -> int:
        return self.written

    def write(self, data: bytes) -> int:
        self.go.wait(timeout=30)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError("no descriptor")

    def close(self) -> None:
        pass


@pytest.fixture
def stalled_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    go = threading.Event()
    monkeypatch.setattr("recorder.writer._open_part", lambda part: StalledFile(go))
    yield go
    go.set()  # whatever the test did, the disk thread gets going again


async def test_a_stalled_disk_fails_the_recording_instead_of_queueing_without_limit(
    tmp_path: Path, stalled_disk: threading.Event
) -> None:
    frame_bytes = 2 * N * 2  # 20 ms of interleaved stereo int16 at 8 kHz: 640 bytes
    disk = DiskThread(max_bytes=50 * frame_bytes)
    disk.start()
    rec = Recording(disk, tmp_path / "s.flac", "flac")
    with capture_logs() as logs:
        started = time.monotonic()
        for frame in stereo_frames(1000, 440, 500):  # 10 s of audio against 1 s of budget
            rec.feed(frame, RATE)  # never blocks: the clock must go on
        fed_in = time.monotonic() - started
        assert disk.queued_bytes <= 50 * frame_bytes
        assert rec.error is not None and "the disk is too slow" in rec.error
        # The recording ends failed at once, though the disk still stalls.
        with pytest.raises(OSError, match="the disk is too slow"):
            await asyncio.wait_for(rec.finish(), 2)
    assert fed_in < 1.0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["recording_failed"]
    stalled_disk.set()
    await asyncio.to_thread(disk.stop)
    assert disk.queued_bytes == 0


async def test_a_stalled_disk_marks_the_row_failed_and_leaves_the_call_alone(
    store: Store, tmp_path: Path, stalled_disk: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("recorder.writer.MAX_QUEUED_BYTES", 100 * 2 * N * 2)  # 2 s of frames
    control = FakeCallControl(extensions=["1001", "1002"])
    rec = _recorder(control, store, tmp_path / "rec", record="all")
    await rec.open()
    try:
        call = await _answer(control, "1001", "1002")
        recording_id = rec.recording_of(call)
        assert recording_id is not None
        _feed(control, call, 500)
        _hang_up(control, call, "1001", "1002")
        row = await _settled(rec, store, recording_id)  # while the disk still stalls
        assert row.state == RecordingState.FAILED
        assert row.error is not None and "the disk is too slow" in row.error
        assert not [c for c in control.commands if c[0] == "hangup"]  # the call was left alone
    finally:
        stalled_disk.set()
        await rec.close()


# -- the policy ------------------------------------------------------------------------------


def test_policy_order_queue_then_extension_then_direction_then_sample(tmp_path: Path) -> None:
    s = RecordingSettings(
        tmp_path,
        record="inbound",
        sample_percent=50,
        queues={"sales": False, "support": True},
        extensions={"1001": True, "1002": False},
    )
    w = s.wants
    assert w(direction="inbound", queue=None, extensions=["1003"], draw=0.1) == "policy"
    assert w(direction="inbound", queue=None, extensions=[], draw=0.6) is None  # not sampled
    assert w(direction="internal", queue=None, extensions=["1003"], draw=0.1) is None
    assert w(direction="internal", queue=None, extensions=["1001"], draw=0.1) == "extension"
    assert w(direction="inbound", queue=None, extensions=["1002"], draw=0.1) is None
    assert w(direction="inbound", queue=None, extensions=["1002", "1001"], draw=0.1)
    assert w(direction="inbound", queue="sales", extensions=["1001"], draw=0.1) is None
    assert w(direction="internal", queue="support", extensions=["1002"], draw=0.1) == "queue"
    assert RecordingSettings(tmp_path, record="all").wants(
        direction="outbound", queue="x", extensions=[], draw=0.99
    )
    with pytest.raises(ValueError):
        RecordingSettings(tmp_path, record="some")


# -- the service on the fake seam --------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


def _recorder(control: FakeCallControl, store: Store, folder: Path, **settings: Any) -> Recorder:
    return Recorder(
        as_control(control), store, RecordingSettings(folder, **settings), draw=lambda: 0.0
    )


async def _answer(
    control: FakeCallControl, caller: str, callee: str, direction: str | None = None
) -> str:
    """A direct call answered; the recorder judges it once the answer is handled."""
    call_id = control.new_call(caller, callee)
    if direction is not None:
        control.annotate(call_id, direction=direction)
    call = control.calls_by_id[call_id]
    call.callee_ext, call.callee_leg = callee, f"{call_id}-b"
    control.publish(LegAnswered(call_id, call.caller_leg, caller, "caller"))
    control.publish(LegAnswered(call_id, call.callee_leg, callee, "callee"))
    await asyncio.sleep(0)
    return call_id


def _feed(control: FakeCallControl, call_id: str, frames: int) -> None:
    sinks = [sink for (cid, sink) in control.taps.values() if cid == call_id]
    assert len(sinks) == 1, sinks
    for frame in stereo_frames(1000, 440, frames):
        sinks[0](frame, RATE)


def _hang_up(control: FakeCallControl, call_id: str, caller: str, callee: str) -> None:
    control.calls_by_id.pop(call_id)
    control.publish(
        CallEnded(call_id, caller, callee, "caller", "normal_clearing", "ANSWERED", True)
    )


async def _settled(recorder: Recorder, store: Store, recording_id: str) -> RecordingData:
    for _ in range(200):
        row = await store.get_recording(recording_id)
        if row is not None and row.state != RecordingState.RECORDING:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"{recording_id} never finished")


async def test_policy_records_an_answered_call_and_finishes_its_row(
    store: Store, tmp_path: Path
) -> None:
    control = FakeCallControl(extensions=["1001", "1002"])
    rec = _recorder(
        control, store, tmp_path / "rec", record="all", announcement="/p/may-be-recorded.wav"
    )
    await rec.open()
    try:
        call = await _answer(control, "1001", "1002")
        recording_id = rec.recording_of(call)
        assert recording_id is not None
        # "This call may be recorded", to the caller, as recording starts.
        assert [c[:3] for c in control.commands if c[0] == "play"] == [
            ("play", call, ["/p/may-be-recorded.wav"])
        ]
        _feed(control, call, 150)
        _hang_up(control, call, "1001", "1002")
        row = await _settled(rec, store, recording_id)
        assert row.state == RecordingState.COMPLETE and row.call_id == call
        assert (row.caller, row.callee, row.extension, row.reason) == (
            "1001",
            "1002",
            "1002",
            "policy",
        )
        assert abs(row.duration - 3.0) < 0.01 and row.rate == RATE
        path = rec.folder / row.path
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.size == path.stat().st_size
        assert rec.recording_of(call) is None
    finally:
        await rec.close()


async def test_no_policy_no_recording_but_on_demand_works_and_carries_over(
    store: Store, tmp_path: Path
) -> None:
    control = FakeCallControl(extensions=["1001", "1002"])
    rec = _recorder(control, store, tmp_path / "rec")
    await rec.open()
    try:
        call = await _answer(control, "1001", "1002")
        assert rec.recording_of(call) is None and control.taps == {}
        with pytest.raises(RecorderError) as e:
            await rec.pause(call)
        assert e.value.status == 409
        with pytest.raises(RecorderError) as e:
            await rec.start("nope")
        assert e.value.status == 404
        recording_id = await rec.start(call, by="alice")
        assert await store.get_recording(recording_id) is not None  # committed already
        with pytest.raises(RecorderError):
            await rec.start(call)
        _feed(control, call, 50)
        assert await rec.pause(call) == recording_id
        _feed(control, call, 50)
        await rec.resume(call)
        _feed(control, call, 50)
        assert await rec.stop(call) == recording_id
        row = await store.get_recording(recording_id)
        assert row is not None and row.state == RecordingState.COMPLETE
        assert row.reason == "on demand" and row.pauses == ((1.0, 2.0),)
        # A later segment of the chain (a transfer) keeps the choice: not recorded.
        second = control.new_call("1001", "1003")
        control.calls_by_id[second].linked_id = call
        control.calls_by_id[second].callee_ext = "1003"
        control.publish(LegAnswered(second, "x", "1003", "callee"))
        await asyncio.sleep(0)
        assert rec.recording_of(second) is None
    finally:
        await rec.close()


async def test_codes_dialled_by_a_phone_on_the_call_start_pause_and_stop(
    store: Store, tmp_path: Path
) -> None:
    control = FakeCallControl(extensions=["1001", "1002"])
    rec = _recorder(control, store, tmp_path / "rec")
    await rec.open()
    try:
        call = await _answer(control, "1001", "1002")
        leg = control.calls_by_id[call].callee_leg or ""

        def press(keys: str) -> None:
            for key in keys:
                control.publish(DtmfReceived(call, leg, key, "callee"))

        press("5*")
        assert rec.recording_of(call) is None
        press("1")  # *1: start
        recording_id = rec.recording_of(call)
        assert recording_id is not None
        await asyncio.sleep(0.05)
        _feed(control, call, 25)
        press("*3")  # pause
        _feed(control, call, 25)
        press("*3")  # resume
        _feed(control, call, 25)
        press("*1")  # stop
        assert rec.recording_of(call) is None
        row = await _settled(rec, store, recording_id)
        assert row.pauses == ((0.5, 1.0),) and abs(row.duration - 1.5) < 0.01
    finally:
        await rec.close()


async def test_a_crash_leaves_a_row_the_next_start_repairs(
    store: Store, disk: DiskThread, tmp_path: Path
) -> None:
    """What a SIGKILL leaves: rows in state recording, one with its part file on disk, one
    whose file was encoded but not yet noted, one with nothing. The next start repairs."""
    folder = tmp_path / "rec"
    started = datetime(2026, 12, 6, 10, tzinfo=UTC)

    def row(name: str) -> RecordingData:
        return RecordingData(f"rec-{name}", f"c-{name}", started, f"{name}.flac", "flac", RATE)

    cut = Recording(disk, folder / "cut.flac", "flac")
    for frame in stereo_frames(1000, 440, 100):
        cut.feed(frame, RATE)
    await disk.close(cut)  # on disk as a kill -9 finds it: a part, never finished
    whole = Recording(disk, folder / "whole.flac", "flac")
    for frame in stereo_frames(1000, 440, 50):
        whole.feed(frame, RATE)
    await whole.finish()
    for name in ("cut", "whole", "lost"):
        await store.add_recording(row(name))
    rec = _recorder(FakeCallControl(), store, folder, record="all")
    await rec.open()
    try:
        got = {n: await store.get_recording(f"rec-{n}") for n in ("cut", "whole", "lost")}
        cut_row, whole_row, lost_row = got["cut"], got["whole"], got["lost"]
        assert cut_row is not None and cut_row.state == RecordingState.TRUNCATED
        audio, rate = soundfile.read(str(folder / cut_row.path), dtype="int16")
        assert rate == RATE and len(audio) == 100 * N and abs(cut_row.duration - 2.0) < 0.001
        assert cut_row.sha256 == hashlib.sha256((folder / "cut.flac").read_bytes()).hexdigest()
        assert not part_path(folder / "cut.flac").exists()
        assert whole_row is not None and whole_row.state == RecordingState.COMPLETE
        assert abs(whole_row.duration - 1.0) < 0.001
        assert lost_row is not None and lost_row.state == RecordingState.FAILED
        assert lost_row.error is not None and "crash" in lost_row.error
        assert await store.recordings_in_state(RecordingState.RECORDING) == []
    finally:
        await rec.close()


async def test_retention_deletes_old_files_and_rows(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    rec = _recorder(FakeCallControl(), store, folder, retention_days=30)
    now = datetime(2026, 12, 6, tzinfo=UTC)
    for i, age in enumerate((40, 31, 29)):
        path = folder / f"r{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        await store.add_recording(
            RecordingData(
                recording_id=f"rec-{i}",
                call_id=f"c{i}",
                started=now - timedelta(days=age),
                path=f"r{i}.flac",
                format="flac",
                rate=RATE,
                state=RecordingState.COMPLETE,
            )
        )
    assert await rec.apply_retention(now) == 2
    assert [p.name for p in folder.iterdir()] == ["r2.flac"]
    assert await store.get_recording("rec-0") is None
    assert await store.get_recording("rec-2") is not None


async def test_a_transferred_call_gives_one_linked_recording_per_segment(
    store: Store, tmp_path: Path
) -> None:
    control = FakeCallControl(extensions=["1001", "1002", "1003"])
    rec = _recorder(control, store, tmp_path / "rec", record="all")
    await rec.open()
    try:
        first = await _answer(control, "1001", "1002")
        first_id = rec.recording_of(first)
        _feed(control, first, 50)
        # 1002 transfers the caller to 1003: the segment ends, the call goes on linked.
        control.calls_by_id.pop(first)
        control.publish(CallEnded(first, "1001", "1002", "callee", "transferred", "ANSWERED", True))
        second = control.new_call("1001", "1003")
        control.calls_by_id[second].linked_id = first
        control.calls_by_id[second].callee_ext = "1003"
        control.publish(LegAnswered(second, f"{second}-b", "1003", "callee"))
        await asyncio.sleep(0)
        second_id = rec.recording_of(second)
        assert second_id is not None and second_id != first_id
        _feed(control, second, 25)
        _hang_up(control, second, "1001", "1003")
        assert first_id is not None
        one, two = await _settled(rec, store, first_id), await _settled(rec, store, second_id)
        assert (one.linked_id, two.linked_id) == (None, first)
        assert (one.callee, two.callee) == ("1002", "1003")
        assert abs(one.duration - 1.0) < 0.01 and abs(two.duration - 0.5) < 0.01
    finally:
        await rec.close()


async def test_a_conversation_is_judged_once_so_its_later_segments_follow(
    store: Store, tmp_path: Path
) -> None:
    """record: inbound, a 50 % sample: an inbound call picked by the draw is recorded after
    its transfer too (the continuation is an internal segment, drawn again it could be
    lost); one the draw left out stays out."""
    control = FakeCallControl(extensions=["1002", "1003"])
    draws = iter([0.1, 0.9])  # the first conversation is sampled, the second is not
    rec = Recorder(
        as_control(control),
        store,
        RecordingSettings(tmp_path / "rec", record="inbound", sample_percent=50),
        draw=lambda: next(draws),
    )
    await rec.open()
    try:
        for caller, sampled in (("5550001", True), ("5550002", False)):
            first = await _answer(control, caller, "1002", direction="inbound")
            assert (rec.recording_of(first) is not None) is sampled
            control.calls_by_id.pop(first)
            control.publish(
                CallEnded(first, caller, "1002", "callee", "transferred", "ANSWERED", True)
            )
            second = control.new_call(caller, "1003")
            control.calls_by_id[second].linked_id = first
            control.calls_by_id[second].callee_ext = "1003"
            control.publish(LegAnswered(second, f"{second}-b", "1003", "callee"))  # internal
            await asyncio.sleep(0)
            assert (rec.recording_of(second) is not None) is sampled
            _hang_up(control, second, caller, "1003")
    finally:
        await rec.close()


async def test_a_trunk_caller_presenting_an_extension_number_cannot_use_the_codes(
    store: Store, tmp_path: Path
) -> None:
    """An outside caller whose caller ID is "1001" (any carrier lets it through) is not the
    phone 1001: its *1 does nothing."""
    control = FakeCallControl(extensions=["1001", "1002"])
    rec = _recorder(control, store, tmp_path / "rec")
    await rec.open()
    try:
        call = await _answer(control, "1001", "1002")
        control.trunk_of[(call, "caller")] = "carrier"
        leg = control.calls_by_id[call].caller_leg
        for key in "*1":
            control.publish(DtmfReceived(call, leg, key, "caller"))
        assert rec.recording_of(call) is None
        del control.trunk_of[(call, "caller")]
        for key in "*1":
            control.publish(DtmfReceived(call, leg, key, "caller"))
        assert rec.recording_of(call) is not None  # the real phone 1001 may
    finally:
        await rec.close()

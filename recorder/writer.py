"""Recording files: raw stereo frames appended by one disk thread, encoded when a recording ends.

Theory of operation
-------------------
The media clock hands the recorder a 20 ms frame of interleaved stereo ``int16`` per call
being recorded. :meth:`Recording.feed` only puts it on a queue (no disk, no codec on the
clock); one :class:`DiskThread` for the whole process appends frames to each recording's
``<file>.part`` — a 16-byte header (the rate), then raw interleaved samples — flushed to the
kernel about once a second, so a SIGKILL loses at most the frames still in the queue and the
part file holds every sample before them. When the recording ends, the part is encoded into
the final file (FLAC, WAV or Opus in Ogg, via libsndfile) in a worker thread, in blocks (an
hour-long call does not sit in memory), its SHA-256 taken, and the part removed.

A part file left by a crash is encoded the same way at the next start (:func:`encode_part`)
and its row marked truncated. A write that fails (a full disk, a folder that is not
writable) stops that recording with one error line; the call does not notice.

The queue is bounded by bytes (:data:`MAX_QUEUED_BYTES`): if the disk stalls, a frame that
would go beyond the budget is not queued and its recording fails (one error line) instead
of memory growing without limit or the media clock waiting for the disk; the calls go on.

The file's rate is the first frame's; a later frame at another rate (a wideband party joined
the bridge) is resampled to it by linear interpolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import structlog

__all__ = [
    "DiskThread",
    "Encoded",
    "Recording",
    "encode_part",
    "part_path",
]

log = structlog.get_logger("switchboard.recorder")

FLUSH_EVERY = 50  # frames (about a second of audio): what a kill -9 can lose
# Frames queued for the disk thread and not yet written, in bytes: 30 s of audio for about
# 280 recordings at 8 kHz (32 kB/s each) or 45 at 48 kHz, before recordings start failing.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
SYNC_EVERY = 250  # frames (about 5 s): what a power loss can lose
ENCODE_BLOCK = 1 << 16  # stereo samples per block when encoding
FORMATS: dict[str, tuple[str, str]] = {  # our name -> libsndfile (format, subtype)
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "ogg": ("OGG", "OPUS"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# A part file: this magic, the rate and the channel count (little-endian uint32 each), then
# interleaved int16 samples.
PART_MAGIC = b"SBRAW1\0\0"
PART_HEADER = len(PART_MAGIC) + 8


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A finished file: seconds of audio, bytes, SHA-256, samples per second."""

    duration: float
    size: int
    sha256: str
    rate: int = 8000


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _header(rate: int) -> bytes:
    return PART_MAGIC + struct.pack("<II", rate, 2)


def encode_part(part: Path, path: Path, fmt: str) -> Encoded:
    """Encode the raw stereo part file into ``path`` (blocking: call it in a thread), fsync
    it, remove the part. A trailing half sample (a crash mid-write) is dropped; a part
    without its header (the crash came before the first frame) gives an empty file."""
    major, subtype = FORMATS[fmt]
    size = part.stat().st_size
    tmp = path.with_name(path.name + ".tmp")
    with part.open("rb") as raw:
        head = raw.read(PART_HEADER)
        if len(head) == PART_HEADER and head.startswith(PART_MAGIC):
            rate = struct.unpack("<II", head[len(PART_MAGIC) :])[0]
            usable = (size - PART_HEADER) // 4  # whole stereo samples
        else:
            rate, usable = 8000, 0
        if fmt == "ogg" and rate not in OPUS_RATES:
            rate = 8000
        _encode(raw, tmp, rate, usable, major, subtype)
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_folder(path.parent)  # the new name survives a power loss before the row says so
    part.unlink(missing_ok=True)
    return Encoded(usable / rate, path.stat().st_size, _sha256(path), rate)


def _encode(raw: Any, tmp: Path, rate: int, usable: int, major: str, subtype: str) -> None:
    with soundfile.SoundFile(
        str(tmp), "w", samplerate=rate, channels=2, format=major, subtype=subtype
    ) as out:
        left = usable
        while left > 0:
            take = min(left, ENCODE_BLOCK)
            block = np.frombuffer(raw.read(take * 4), dtype=np.int16).reshape(-1, 2)
            out.write(block)
            left -= take


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_folder(folder: Path) -> None:
    """``mkdir -p``, each new level made durable in its parent."""
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        at = at.parent
    folder.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):
        fsync_folder(made.parent)


def _resample(frame: np.ndarray[Any, Any], src: int, dst: int) -> np.ndarray[Any, Any]:
    """Interleaved stereo ``frame`` at ``src`` Hz as interleaved stereo at ``dst`` Hz."""
    pairs = frame.reshape(-1, 2).astype(np.float64)
    n_out = round(pairs.shape[0] * dst / src)
    positions = np.arange(n_out) * (src / dst)
    index = np.arange(pairs.shape[0])
    out = np.empty((n_out, 2), dtype=np.int16)
    for ch in (0, 1):
        out[:, ch] = np.interp(positions, index, pairs[:, ch]).round().astype(np.int16)
    return out.reshape(-1)


class Recording:
    """One file being recorded. ``feed`` runs on the media clock; the rest on the loop."""

    def __init__(self, disk: DiskThread, path: Path, fmt: str) -> None:
        self.disk = disk
        self.path = path
        self.part = part_path(path)
        self.format = fmt
        self.rate: int | None = None
        self.frames = 0  # frames handed to the disk (audio and silence)
        self.samples = 0  # stereo samples handed to the disk
        self.paused_at: float | None = None
        self.pauses: list[tuple[float, float]] = []
        self.error: str | None = None  # set by the disk thread when a write failed
        self.closed = False
        self._file: Any = None  # the part file; only the disk thread touches it
        self._written = 0  # frames written (disk thread)

    @property
    def seconds(self) -> float:
        return self.samples / self.rate if self.rate else 0.0

    def feed(self, pcm: np.ndarray[Any, Any], rate: int) -> None:
        """A tap frame: interleaved stereo ``int16`` at ``rate``. Never blocks."""
        if self.closed or self.error is not None:
            return
        if self.rate is None:
            self.rate = rate if self.format != "ogg" or rate in OPUS_RATES else 8000
        if rate != self.rate:
            pcm = _resample(pcm, rate, self.rate)
        if self.paused_at is not None:
            pcm = np.zeros_like(pcm)  # paused: the span is silent in both channels
        self.samples += pcm.shape[0] // 2
        self.frames += 1
        self.disk.put(self, pcm)

    def pause(self) -> bool:
        if self.paused_at is not None or self.closed:
            return False
        self.paused_at = self.seconds
        return True

    def resume(self) -> bool:
        if self.paused_at is None or self.closed:
            return False
        self.pauses.append((round(self.paused_at, 3), round(self.seconds, 3)))
        self.paused_at = None
        return True

    async def finish(self) -> Encoded:
        """Stop taking frames, let the disk thread close the part, encode it (in a thread).
        OSError when the recording failed or cannot be encoded."""
        if self.paused_at is not None:
            self.resume()
        self.closed = True
        if self.error is not None:  # failed already: do not wait for a disk that may stall
            self.disk.close_later(self)
            raise OSError(self.error)
        await self.disk.close(self)
        if self.error is not None:
            raise OSError(self.error)
        if self.rate is None:  # not one frame: an empty (but valid) file
            self.rate = 8000
        if not self.part.exists():
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self.part.write_bytes(_header(self.rate))
        return await asyncio.to_thread(encode_part, self.part, self.path, self.format)

    # -- the disk thread's side --------------------------------------------------------------

    def write(self, pcm: np.ndarray[Any, Any]) -> None:
        if self.error is not None:
            return
        try:
            if self._file is None:
                _make_folder(self.part.parent)
                self._file = _open_part(self.part)
                if self._file.tell() == 0:
                    self._file.write(_header(self.rate or 8000))
            self._file.write(pcm.tobytes())
            self._written += 1
            if self._written % FLUSH_EVERY == 0:
                self._file.flush()
                if self._written % SYNC_EVERY == 0:
                    os.fdatasync(self._file.fileno())
        except OSError as exc:
            self._fail(exc)

    def close_file(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            self._fail(exc)
        finally:
            with contextlib.suppress(OSError):
                f.close()

    def overflowed(self, queued: int, budget: int) -> None:
        """The disk thread is too far behind to take this recording's frame (feeder side:
        the part file is left to the disk thread, which closes it on ``close``)."""
        if self.error is not None:
            return
        self.error = (
            f"{self.part}: the disk is too slow: {queued} bytes of frames wait (at most {budget})"
        )
        log.error("recording_failed", path=str(self.part), error=self.error)

    def _fail(self, exc: OSError) -> None:
        self.error = f"{self.part}: {exc.strerror or exc}"
        log.error("recording_failed", path=str(self.part), error=self.error)
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def _open_part(part: Path) -> Any:
    return part.open("ab")


_Item = tuple[Recording, np.ndarray[Any, Any] | None, Callable[[], None] | None]


class DiskThread:
    """The one thread that appends recorded frames to part files. At most ``max_bytes``
    of frames wait for it (default :data:`MAX_QUEUED_BYTES`)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.max_bytes = MAX_QUEUED_BYTES if max_bytes is None else max_bytes
        self._queued = 0  # bytes of frames put and not yet written
        self._lock = threading.Lock()  # _queued: the feeders' threads and the disk thread

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder-disk", daemon=True)
            self._thread.start()

    def put(self, recording: Recording, pcm: np.ndarray[Any, Any]) -> None:
        """Queue a frame; never blocks. Beyond the budget the recording fails instead."""
        with self._lock:
            fits = self._queued + pcm.nbytes <= self.max_bytes
            if fits:
                self._queued += pcm.nbytes
            queued = self._queued
        if not fits:
            recording.overflowed(queued, self.max_bytes)
            return
        self._queue.put((recording, pcm, None))

    def close_later(self, recording: Recording) -> None:
        """Close the recording's part file once the frames before are handled; no wait."""
        self._queue.put((recording, None, None))

    async def close(self, recording: Recording) -> None:
        """Returns once every frame fed before is on disk and the part file is closed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def closed() -> None:
            loop.call_soon_threadsafe(settle)

        self._queue.put((recording, None, closed))
        if self._thread is None:
            self.start()
        await done

    def stop(self) -> None:
        """Finish what is queued, then end the thread (blocking)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            recording, pcm, closed = item
            if pcm is not None:
                try:
                    recording.write(pcm)
                finally:
                    with self._lock:
                        self._queued -= pcm.nbytes
            else:
                recording.close_file()
                if closed is not None:
                    closed()

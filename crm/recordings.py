"""Recordings in the store: the row the recorder writes for every recorded call segment.

Theory of operation: the recorder (``recorder/``) adds a row in state ``recording`` when it
starts writing a file (committed before the first frame is kept, so a crash leaves a row the
next start repairs), and finishes it with the file's duration, size and SHA-256 once the file
is complete. A row whose file was cut short by a crash becomes ``truncated`` at the next
start (what was on disk is kept and playable); one whose writer failed (a full disk, an
unwritable folder) becomes ``failed`` and says why. ``path`` is relative to the recording
folder (``recording.folder``), so the folder can move.

This module holds the frozen data classes callers get back (never ORM rows); the queries
live on :class:`crm.Store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["RecordingData", "RecordingState"]


class RecordingState(StrEnum):
    RECORDING = "recording"  # being written (or the process died while it was)
    COMPLETE = "complete"
    TRUNCATED = "truncated"  # cut short by a crash, repaired at the next start
    FAILED = "failed"  # the writer failed: ``error`` says why; the file may be partial


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class RecordingData:
    """One recording: the audio of one call segment (``call_id`` is the call record's
    ``record_id``; ``linked_id`` the chain's first ``record_id``, as in call_records).

    Stereo files: left channel what the caller said, right channel what the caller heard
    (the agent or callee, and prompts or music played to the caller). ``pauses`` are
    ``(start, end)`` offsets in seconds into the file where it was paused (silent)."""

    recording_id: str  # "rec-" + 24 hex digits
    call_id: str
    started: datetime
    path: str  # relative to recording.folder, e.g. "2026/12/06/rec-….flac"
    format: str  # flac | wav | ogg
    rate: int  # samples per second of the file
    channels: int = 2
    state: RecordingState = RecordingState.RECORDING
    linked_id: str | None = None
    caller: str = ""  # the caller's number or extension
    callee: str = ""  # who took the call (the extension that answered), or what was dialled
    dialled: str | None = None
    direction: str | None = None  # inbound | outbound | internal
    extension: str | None = None  # the Switchboard extension on the call (the agent's phone)
    agent: str | None = None  # ACD agent id, when a queue handed the call over
    queue: str | None = None
    customer_id: int | None = None  # crm customers.id matched by the caller's number
    reason: str = "policy"  # policy | on demand (API, feature code) | sample
    ended: datetime | None = None
    duration: float = 0.0  # seconds of audio in the file
    size: int = 0  # bytes of the finished file
    sha256: str | None = None
    pauses: tuple[tuple[float, float], ...] = ()
    error: str | None = None
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "started", _utc(self.started))
        if self.ended is not None:
            object.__setattr__(self, "ended", _utc(self.ended))
        object.__setattr__(self, "state", RecordingState(self.state))

    @property
    def paused_seconds(self) -> float:
        return sum(end - start for start, end in self.pauses)

"""What the control plane (web/, cli/ through the API) may ask of the recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

__all__ = ["RecorderCommands", "RecorderError"]


class RecorderError(Exception):
    """A recorder command refused: ``status`` is the HTTP status to answer with (404 no such
    live call, 409 not possible in the recording's state, 503 recording unavailable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RecorderCommands(Protocol):
    @property
    def folder(self) -> Path:
        """The recording folder: a row's ``path`` is relative to it."""
        ...

    async def start(self, call_id: str, *, by: str | None = None) -> str:
        """Record the live call ``call_id`` now (on demand); its recording_id."""
        ...

    async def stop(self, call_id: str) -> str:
        """Stop recording the call (the file is finished and kept); the recording_id."""
        ...

    async def pause(self, call_id: str) -> str:
        """Pause: silence is written until resume (the row lists the paused spans)."""
        ...

    async def resume(self, call_id: str) -> str: ...

    def recording_of(self, call_id: str) -> str | None:
        """The recording_id being written for a live call, None when it is not recorded."""
        ...

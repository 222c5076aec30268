"""What the browser phone needs of a hosted phone line (built by ``app/phone.py``, used by
``web/phone.py``; see the theory of operation there)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["IceServer", "Int16Array", "PhoneLine", "PhoneLines"]

Int16Array = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server (RTCIceServer): ``urls`` like ``stun:host:3478`` or
    ``turn:host:3478?transport=udp``; TURN needs the username and credential."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


class PhoneLine(Protocol):
    """One hosted phone of an extension: its SIP phone and RTP port (``app/phone.py``).

    Events go to the ``on_event`` given to :meth:`PhoneLines.open` as JSON-ready dicts:
    ``registered`` (ok, reason), ``incoming`` (call_id, caller, display, queue, ivr_keys),
    ``progress`` (call_id, status), ``up`` (call_id, codec), ``ended`` (call_id, reason).
    """

    @property
    def extension(self) -> str: ...

    @property
    def rate(self) -> int:
        """PCM rate of :meth:`send` and :meth:`read` frames."""
        ...

    async def start(self) -> bool:
        """Register; False when the registrar did not accept the phone."""
        ...

    async def close(self) -> None: ...

    def answer(self) -> bool: ...

    def reject(self) -> None: ...

    def hangup(self) -> None: ...

    def dial(self, number: str) -> bool: ...

    def send_dtmf(self, digit: str) -> bool: ...

    def send(self, pcm: Int16Array) -> None:
        """One 20 ms frame of what the browser's microphone said."""

    async def read(self) -> Int16Array:
        """The next 20 ms of what the phone hears (silence when nothing came)."""
        ...


class PhoneLines(Protocol):
    """Opens hosted phones (``app/phone.py``)."""

    @property
    def ice_servers(self) -> tuple[IceServer, ...]: ...

    async def open(self, extension: str, on_event: Callable[[dict[str, Any]], None]) -> PhoneLine:
        """A new, not yet registered phone of ``extension``; ``OperationError`` when the
        extension does not exist or the browser phone is switched off."""
        ...

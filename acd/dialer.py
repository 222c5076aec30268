"""Click-to-call: ring a phone first, then dial the number for it (the API's ``POST
/api/calls``, later the agent panel's dial pad).

Theory of operation: :meth:`ClickToCall.dial` originates a call to the extension through the
call-control seam, showing the number it is about to dial as the caller. When the phone
answers (``OriginateAnswered``), the number is dialled *for that extension* — its class of
service, outbound caps and caller ID apply, exactly as if the phone had dialled it — and the
phone hears ringback until the far end answers and is bridged. If the number cannot be
dialled or nobody answers (``ConnectFailed``), the phone's call is hung up with the cause.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import structlog

from pbx.control import CallControl
from pbx.events import CallEnded, CallEvent, ConnectFailed, OriginateAnswered, OriginateFailed

__all__ = ["ClickToCall"]

log = structlog.get_logger("acd.dialer")


@dataclass(slots=True)
class _Dial:
    extension: str
    number: str
    call_id: str | None = None  # the phone's call, once it answered


class ClickToCall:
    """Dials numbers for phones: see the module documentation."""

    def __init__(self, control: CallControl, ring_timeout: float = 30.0) -> None:
        self.control = control
        self.ring_timeout = ring_timeout
        self._dials: dict[str, _Dial] = {}  # by originate id
        self._by_call: dict[str, str] = {}  # the phone's call id -> originate id
        self._unsubscribe = control.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def dial(self, extension: str, number: str) -> str | None:
        """Ring ``extension``; once it answers, dial ``number`` for it. Returns the
        originate id, or None when the extension has no registered phone. ``LookupError``
        when ``extension`` is no extension (an outside number must never be the first
        party: that would bridge two outside numbers past every outbound cap)."""
        if not self.control.is_extension(extension):
            raise LookupError(extension)
        origin = f"c2c-{secrets.token_hex(6)}"
        self._dials[origin] = _Dial(extension, number)
        started = self.control.originate(
            origin,
            extension,
            caller_id=number,
            display=number,
            ring_timeout=self.ring_timeout,
            label=number,
            on_behalf_of=extension,
        )
        if started is None:
            self._dials.pop(origin, None)
            return None
        log.info("click_to_call", origin=origin, extension=extension, number=number)
        return origin

    def _on_event(self, event: CallEvent) -> None:
        match event:
            case OriginateAnswered(offer_id=origin, call_id=call_id) if origin in self._dials:
                dial = self._dials[origin]
                dial.call_id = call_id
                self._by_call[call_id] = origin
                if not self.control.connect_to(
                    call_id, dial.number, outside=True, on_behalf_of=dial.extension
                ):
                    log.info("click_to_call_refused", origin=origin, number=dial.number)
                    self.control.hangup(call_id, "unavailable")
            case OriginateFailed(offer_id=origin) if origin in self._dials:
                log.info("click_to_call_unanswered", origin=origin, status=event.status)
                del self._dials[origin]
            case ConnectFailed(call_id=call_id) if call_id in self._by_call:
                log.info("click_to_call_failed", call=call_id, status=event.status)
                self.control.hangup(call_id, "no_answer" if event.status == 408 else "user_busy")
            case CallEnded(call_id=call_id) if call_id in self._by_call:
                self._dials.pop(self._by_call.pop(call_id), None)
            case _:
                pass

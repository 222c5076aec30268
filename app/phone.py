"""Hosted phone lines for the browser phone: a ``pbx.hosted_phone.HostedPhone`` (SIP) joined
with a ``media.pcm_port.PcmPort`` (RTP), satisfying ``web.phone_line.PhoneLines``.

Composition only: the SIP phone registers the extension at our own UDP listener on loopback
with the extension's password from the running config, and the RTP port answers on
loopback; ``web/phone.py`` connects them to the browser (see its theory of operation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from config import SwitchboardConfig
from media.pcm_port import PcmPort
from pbx.hosted_phone import CallMedia, HostedPhone
from web.phone_line import IceServer
from web.services import OperationError

__all__ = ["HostedLine", "HostedLines", "sip_loopback_address"]

log = structlog.get_logger("app.phone")

Int16Array = npt.NDArray[np.int16]


def sip_loopback_address(cfg: SwitchboardConfig) -> tuple[str, int] | None:
    """Where a phone on this machine reaches our UDP listener (None without one)."""
    for listen in cfg.sip.listen:
        if listen.transport == "udp":
            host = listen.host
            if host in ("0.0.0.0", "", "::"):
                host = "127.0.0.1"
            return host, listen.port
    return None


class HostedLine:
    """One extension's hosted phone and RTP port, with at most one call at a time."""

    def __init__(
        self,
        extension: str,
        password: str,
        server: tuple[str, int],
        display: str,
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        self._extension = extension
        self._on_event = on_event
        self._port = PcmPort("127.0.0.1")
        self._phone = HostedPhone(
            extension=extension,
            password=password,
            server=server,
            listener=self,
            display=display,
        )
        self._call: str | None = None
        self._ringing: str | None = None

    @property
    def extension(self) -> str:
        return self._extension

    @property
    def rate(self) -> int:
        return self._port.rate

    async def start(self) -> bool:
        await self._port.open()
        return await self._phone.start()

    async def close(self) -> None:
        await self._phone.close()
        self._port.close()
        st = self._port.stats
        log.info(
            "browser_phone_closed",
            extension=self._extension,
            packets_in=st.packets_in,
            packets_out=st.packets_out,
            frames_silent=st.frames_silent,
            frames_dropped=st.frames_dropped,
            dtmf_sent=st.dtmf_sent,
        )

    # -- commands -------------------------------------------------------------------------------

    def answer(self) -> bool:
        if self._ringing is None:
            return False
        call_id, self._ringing = self._ringing, None
        return self._phone.answer(call_id, self._port.port) is not None

    def reject(self) -> None:
        if self._ringing is not None:
            self._phone.reject(self._ringing, 603)

    def hangup(self) -> None:
        for call_id in self._phone.call_ids():
            self._phone.hangup(call_id)

    def dial(self, number: str) -> bool:
        call_id = self._phone.dial(number, self._port.port)
        if call_id is None:
            return False
        self._call = call_id
        self._on_event({"type": "dialling", "call_id": call_id, "number": number})
        return True

    def send_dtmf(self, digit: str) -> bool:
        if self._call is None:
            return False
        # RFC 4733 on the RTP stream when the far end took telephone-event, else SIP INFO.
        return self._port.send_dtmf(digit) or self._phone.send_info_dtmf(self._call, digit)

    def send(self, pcm: Int16Array) -> None:
        if self._call is not None:
            self._port.send(pcm)

    async def read(self) -> Int16Array:
        # A little over one frame: the engine's packets come every 20 ms and must not race
        # the silence made up when none came (that would feed the browser faster than real
        # time); between calls the silence comes a bit slower than real time, unheard.
        return await self._port.read(timeout=0.03)

    # -- pbx.hosted_phone.HostedPhoneListener ---------------------------------------------------

    def registered(self, ok: bool, reason: str) -> None:
        self._on_event({"type": "registered", "ok": ok, "reason": reason})

    def incoming(self, call_id: str, caller: str, display: str, headers: dict[str, str]) -> None:
        self._ringing = call_id
        self._on_event(
            {
                "type": "incoming",
                "call_id": call_id,
                "caller": caller,
                "display": display,
                "ivr_keys": headers.get("x-switchboard-ivr-keys", ""),
            }
        )

    def progress(self, call_id: str, status: int) -> None:
        self._on_event({"type": "progress", "call_id": call_id, "status": status})

    def answered(self, call_id: str, media: CallMedia) -> None:
        self._call = call_id
        self._port.configure(
            (media.host, media.port), media.codec, media.payload_type, media.dtmf_pt
        )
        self._on_event(
            {
                "type": "up",
                "call_id": call_id,
                "codec": media.codec.name,
                "dtmf": media.dtmf_pt is not None,
            }
        )

    def ended(self, call_id: str, reason: str) -> None:
        if self._ringing == call_id:
            self._ringing = None
        if self._call == call_id:
            self._call = None
        self._on_event({"type": "ended", "call_id": call_id, "reason": reason})


class HostedLines:
    """``web.phone_line.PhoneLines`` over the running config (read at each ``open``)."""

    def __init__(self, config: Callable[[], SwitchboardConfig]) -> None:
        self._config = config

    @property
    def ice_servers(self) -> tuple[IceServer, ...]:
        return tuple(
            IceServer(tuple(i.urls), i.username, i.credential)
            for i in self._config().http.browser_phone.ice_servers
        )

    async def open(self, extension: str, on_event: Callable[[dict[str, Any]], None]) -> HostedLine:
        cfg = self._config()
        if not cfg.http.browser_phone.enabled:
            raise OperationError(404, "the browser phone is switched off")
        ext = cfg.extensions.get(extension)
        if ext is None:
            raise OperationError(404, f"no extension {extension}")
        server = sip_loopback_address(cfg)
        if server is None:
            raise OperationError(409, "the browser phone needs a UDP SIP listener")
        log.info("browser_phone_opened", extension=extension)
        return HostedLine(extension, ext.password, server, ext.name, on_event)

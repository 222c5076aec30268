"""Media control on live calls, with the server in this process so a test can reach its
media engine directly (what the ACD's supervision and the recorder will do through it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media import MediaEngine
from pbx.b2bua import Call, CallState
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec
from tests.peers.audio import tone_level_db
from tests.peers.phones import Phone
from tests.peers.switchboard import next_rtp_range

pytestmark = pytest.mark.peers

PASSWORDS = {"1001": "alice-pw", "1002": "bob-pw"}


class InProcessServer:
    """A SipServer on its own event loop in a background thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        lo, hi = next_rtp_range()
        self.server = SipServer(
            ServerSettings(
                listen=(ListenSpec("UDP", "127.0.0.1", port),),
                rtp_host="127.0.0.1",
                rtp_ports=(lo, hi),
            ),
            {ext: Extension(ext, ext, pw) for ext, pw in PASSWORDS.items()},
            media=MediaEngine("127.0.0.1", lo, hi),
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self.server.start())

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.run(wrapper(), timeout)

    def answered_call(self) -> Call:
        calls: list[Call] = self.call_soon(
            lambda: [c for c in self.server.b2bua.calls if c.state is CallState.ANSWERED]
        )
        assert len(calls) == 1, calls
        return calls[0]

    def close(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class SineSource:
    """A 20 ms frame source of a pure tone (a stand-in for a supervisor's voice)."""

    def __init__(self, freq: float, rate: int = 8000, amplitude: float = 8000) -> None:
        self.rate = rate
        self._freq = freq
        self._amp = amplitude
        self._n = 0
        self._stopped = False

    def read(self) -> np.ndarray | None:
        if self._stopped:
            return None
        t = (np.arange(self.rate // 50) + self._n) / self.rate
        self._n += self.rate // 50
        return (self._amp * np.sin(2 * np.pi * self._freq * t)).astype(np.int16)

    def stop(self) -> None:
        self._stopped = True


@pytest.fixture
def inproc(free_port: Callable[[], int]) -> Iterator[InProcessServer]:
    srv = InProcessServer(free_port())
    yield srv
    srv.close()


def test_whisper_injects_into_one_party_only(
    inproc: InProcessServer,
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
    tone_2k: Path,
) -> None:
    a = phone_factory("ext1001", user="1001")
    b = phone_factory("ext1002", user="1002")
    for p in (a, b):
        assert p.register(f"127.0.0.1:{inproc.port}", password=PASSWORDS[p.user])["code"] == 200
    a.call(f"sip:1002@127.0.0.1:{inproc.port}")
    b.answer(call=b.wait_incoming(timeout=10)["call"])
    a.wait_media_active(timeout=10)
    b.wait_media_active(timeout=10)
    a.play(tone_1k)
    b.play(tone_2k)
    call = inproc.answered_call()
    assert call.b is not None
    b_leg = call.b.leg_id
    inproc.call_soon(lambda: inproc.server.media.inject(b_leg, SineSource(500)))
    time.sleep(0.5)
    a.record(tmp_path / "a.wav")
    b.record(tmp_path / "b.wav")
    time.sleep(2.0)
    a.stop_record()
    b.stop_record()
    b_rec, a_rec = tmp_path / "b.wav", tmp_path / "a.wav"
    # B hears A (1 kHz) and the whisper (500 Hz); A hears B (2 kHz) and no whisper.
    assert tone_level_db(b_rec, 500) > -30 and tone_level_db(b_rec, 1000) > -30
    assert tone_level_db(a_rec, 2000) > -30
    assert tone_level_db(a_rec, 500) < tone_level_db(a_rec, 2000) - 30
    a.hangup()
    b.wait_disconnected(timeout=10)

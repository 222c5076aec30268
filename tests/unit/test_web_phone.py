"""web/phone.py: the browser phone's socket protocol against a fake hosted line (what it was
asked is recorded) — commands reach the line, bad input gets an error and the session goes
on, a refused line is reported, and the line is closed when the socket goes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from fastapi import WebSocketDisconnect

from web.auth import Principal
from web.phone import BrowserPhone
from web.phone_line import IceServer, Int16Array, PhoneLine
from web.services import OperationError


@dataclass
class FakeLine:
    on_event: Callable[[dict[str, Any]], None]
    asked: list[tuple[Any, ...]] = field(default_factory=list)
    ringing: bool = False
    in_call: bool = False
    closed: bool = False

    @property
    def extension(self) -> str:
        return "1002"

    @property
    def rate(self) -> int:
        return 16000

    async def start(self) -> bool:
        self.on_event({"type": "registered", "ok": True, "reason": "registered"})
        return True

    async def close(self) -> None:
        self.closed = True

    def answer(self) -> bool:
        self.asked.append(("answer",))
        return self.ringing

    def reject(self) -> None:
        self.asked.append(("reject",))

    def hangup(self) -> None:
        self.asked.append(("hangup",))

    def dial(self, number: str) -> bool:
        self.asked.append(("dial", number))
        return not self.in_call

    def send_dtmf(self, digit: str) -> bool:
        self.asked.append(("dtmf", digit))
        return self.in_call

    def send(self, pcm: Int16Array) -> None:
        pass

    async def read(self) -> Int16Array:
        await asyncio.sleep(0.02)
        return np.zeros(320, dtype=np.int16)


@dataclass
class FakeLines:
    refuse: bool = False
    lines: list[FakeLine] = field(default_factory=list)

    @property
    def ice_servers(self) -> tuple[IceServer, ...]:
        return (IceServer(("stun:stun.example.net:3478",)),)

    async def open(self, extension: str, on_event: Callable[[dict[str, Any]], None]) -> PhoneLine:
        if self.refuse:
            raise OperationError(404, "the browser phone is switched off")
        line = FakeLine(on_event)
        self.lines.append(line)
        return line


class FakeSocket:
    def __init__(self, messages: list[Any], leave: bool = True) -> None:
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        for m in messages:
            self.incoming.put_nowait(m if isinstance(m, str) else json.dumps(m))
        if leave:
            self.incoming.put_nowait(None)  # then the browser goes
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code
        self.incoming.put_nowait(None)

    async def receive_text(self) -> str:
        await asyncio.sleep(0.01)
        text = await self.incoming.get()
        if text is None:
            raise WebSocketDisconnect(1001)
        return text

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


BOB = Principal(name="bob", role="agent", agent="bob", via="session")


async def run(messages: list[Any], lines: FakeLines) -> FakeSocket:
    ws = FakeSocket(messages)
    await asyncio.wait_for(BrowserPhone(cast(Any, ws), BOB, lines).run("1002"), 5)
    return ws


async def test_commands_reach_the_line_and_bad_ones_are_answered_with_errors() -> None:
    lines = FakeLines()
    ws = await run(
        [
            {"type": "answer_call"},  # nothing rings
            {"type": "dial", "number": "9;rm"},
            {"type": "dial", "number": "5000"},
            {"type": "dtmf", "digit": "55"},
            {"type": "dtmf", "digit": "5"},  # no call yet
            {"type": "reject"},
            {"type": "hangup"},
            {"type": "shout"},
            "not json",
            {"type": "offer"},  # no sdp
            {"type": "ping"},
        ],
        lines,
    )
    (line,) = lines.lines
    assert line.asked == [
        ("answer",),
        ("dial", "5000"),
        ("dtmf", "5"),
        ("reject",),
        ("hangup",),
    ]
    assert ws.sent[0] == {
        "type": "ready",
        "extension": "1002",
        "ice_servers": [{"urls": ["stun:stun.example.net:3478"]}],
    }
    assert {"type": "registered", "ok": True, "reason": "registered"} in ws.sent
    errors = [m["message"] for m in ws.sent if m["type"] == "error"]
    assert errors == [
        "no ringing call",
        "dial: digits only",
        "dtmf: one of 0-9 * # A-D",
        "no call to send digits to",
        "unknown message 'shout'",
        "not a phone message",
        "offer without sdp",
    ]
    assert ws.sent[-1] == {"type": "pong"}
    assert line.closed  # the socket went: the phone is unregistered


async def test_a_user_no_longer_allowed_loses_the_phone() -> None:
    lines = FakeLines()
    ws = FakeSocket([], leave=False)
    answers = iter([True, False])

    async def still_allowed() -> bool:
        return next(answers)

    phone = BrowserPhone(cast(Any, ws), BOB, lines, still_allowed, recheck_seconds=0.05)
    await asyncio.wait_for(phone.run("1002"), 5)
    assert ws.closed_with == 4401
    assert lines.lines[0].closed  # unregistered


async def test_a_refused_line_is_reported() -> None:
    ws = await run([], FakeLines(refuse=True))
    assert ws.sent == [{"type": "error", "message": "the browser phone is switched off"}]

"""Helpers shared by the real-phone call tests: register a phone, place an answered call,
record what a phone hears."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard


def registered(
    phone_factory: Callable[..., Phone], sb: Switchboard, ext: str, **kwargs: Any
) -> Phone:
    """A PJSUA2 phone registered to ``sb`` as extension ``ext`` (asserts 200)."""
    phone = phone_factory(f"ext{ext}", user=ext, **kwargs)
    ev = phone.register(sb.address, password=sb.password(ext))
    assert ev is not None and ev["code"] == 200, ev
    return phone


def answer_call(caller: Phone, callee: Phone, sb: Switchboard, ext: str) -> tuple[int, int]:
    """``caller`` dials ``ext`` (``callee``'s extension) and ``callee`` answers; both see the
    call confirmed and media flowing. Returns the two phones' call ids."""
    cid = caller.call(sb.uri(ext))
    inc = callee.wait_incoming(timeout=10)
    callee.answer(call=inc["call"])
    caller.wait_call_state("CONFIRMED", call=cid, timeout=10)
    callee.wait_call_state("CONFIRMED", call=inc["call"], timeout=10)
    caller.wait_media_active(call=cid, timeout=10)
    callee.wait_media_active(call=inc["call"], timeout=10)
    return cid, int(inc["call"])


def hears(p: Phone, path: Path, call: int | None = None, seconds: float = 1.6) -> Path:
    """Record ``seconds`` of what ``p`` hears on ``call`` into ``path``."""
    p.record(path, call=call)
    time.sleep(seconds)
    p.stop_record(call=call)
    return path


def hears_own_tone_back(
    caller: Phone, cid: int, tone: Path, out: Path, *, confirmed: bool = False
) -> Path:
    """``caller``'s call ``cid`` reaches an echo (a SIPp UAS with ``-rtp_echo``, e.g. a
    carrier): once confirmed (waited for here unless the test already saw it), play
    ``tone``, record ``out`` for 2.5 s, then hang up and wait for the end. The caller
    hearing its own tone proves the far leg carried audio."""
    if not confirmed:
        caller.wait_call_state("CONFIRMED", call=cid, timeout=20)
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone, call=cid)
    hears(caller, out, call=cid, seconds=2.5)
    caller.hangup(cid)
    caller.wait_disconnected(call=cid, timeout=10)
    return out

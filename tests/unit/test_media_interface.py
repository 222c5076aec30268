"""The media interface: event hub semantics, and both implementations offer the same API."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator

import pytest

from media import PCMU, MediaEngine
from media.interface import (
    EventHub,
    LegClosed,
    LegInactive,
    MediaEvent,
    MediaInterface,
    PlaybackFinished,
)
from media.workers import MediaWorkerPool
from tests.unit.test_media_engine import make_phone, rtp

HOST = "127.0.0.1"


def test_every_subscriber_hears_an_event_and_a_failing_one_stays_subscribed() -> None:
    hub = EventHub()
    seen: list[tuple[str, MediaEvent]] = []
    calls = 0

    def broken(event: MediaEvent) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("subscriber bug")

    hub.subscribe(lambda e: seen.append(("first", e)))
    hub.subscribe(broken)
    unsubscribe = hub.subscribe(lambda e: seen.append(("third", e)))
    hub.publish(LegClosed("a"))
    hub.publish(LegInactive("b"))
    assert calls == 2  # raised the first time, still called the second
    assert seen == [
        ("first", LegClosed("a")),
        ("third", LegClosed("a")),
        ("first", LegInactive("b")),
        ("third", LegInactive("b")),
    ]
    unsubscribe()
    unsubscribe()  # idempotent
    hub.publish(LegClosed("c"))
    assert seen[-1] == ("first", LegClosed("c"))
    assert len(hub) == 2


def test_a_handler_may_unsubscribe_itself_while_being_called() -> None:
    hub = EventHub()
    got: list[MediaEvent] = []
    holder: list[object] = []

    def once(event: MediaEvent) -> None:
        got.append(event)
        unsubscribe = holder[0]
        assert callable(unsubscribe)
        unsubscribe()

    holder.append(hub.subscribe(once))
    hub.publish(LegClosed("x"))
    hub.publish(LegClosed("y"))
    assert got == [LegClosed("x")]


def test_events_are_frozen() -> None:
    event = LegClosed("a")
    with pytest.raises(AttributeError):
        event.leg_id = "b"  # type: ignore[misc]


def _protocol_members() -> list[str]:
    return [
        name
        for name, value in vars(MediaInterface).items()
        if callable(value) and (not name.startswith("_") or name in ("__contains__", "__len__"))
    ]


@pytest.mark.parametrize("impl", [MediaEngine, MediaWorkerPool])
def test_implementation_has_every_member_with_compatible_parameters(impl: type) -> None:
    for name in _protocol_members():
        assert hasattr(impl, name), f"{impl.__name__} lacks {name}"
        wanted = inspect.signature(getattr(MediaInterface, name))
        got = inspect.signature(getattr(impl, name))
        for param in wanted.parameters.values():
            assert param.name in got.parameters, f"{impl.__name__}.{name} lacks {param.name}"
            other = got.parameters[param.name]
            assert other.kind == param.kind, f"{impl.__name__}.{name}({param.name}) kind"
            if param.default is not inspect.Parameter.empty:
                assert other.default == param.default, f"{impl.__name__}.{name}({param.name})"
        extra = [
            p
            for p in got.parameters.values()
            if p.name not in wanted.parameters
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert not extra, f"{impl.__name__}.{name} requires more: {extra}"
        is_async = inspect.iscoroutinefunction(getattr(MediaInterface, name))
        assert inspect.iscoroutinefunction(getattr(impl, name)) == is_async, name


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    base = random.randrange(20000, 60000, 2)
    eng = MediaEngine(HOST, base, base + 199, inactivity_timeout=30.0)
    await eng.start()
    yield eng
    await eng.close()


async def test_engine_commands_by_id_and_events_to_all_subscribers(engine: MediaEngine) -> None:
    media: MediaInterface = engine
    first: list[MediaEvent] = []
    second: list[MediaEvent] = []
    media.subscribe(first.append)
    media.subscribe(second.append)
    a = await media.create_leg("a")
    b = await media.create_leg("b", near="a")
    pa, pb = await make_phone(), await make_phone()
    media.set_remote("a", *pa.addr, PCMU, None)
    media.set_remote("b", *pb.addr, PCMU, None)
    assert media.bridge_of("a") is None
    bridge_id = media.bridge("a", "b")
    assert media.bridge_of("a") == media.bridge_of("b") == bridge_id
    assert media.bridge_legs(bridge_id) == ("a", "b")
    pa.send(rtp(1, 160), a.local_port)
    got = await pb.recv()
    assert got.sequence_number >= 0
    stats = media.leg_stats("a")
    assert stats.packets_in == 1
    stats.packets_in = 99  # a snapshot: the engine's counter is not touched
    assert media.leg_stats("a").packets_in == 1
    media.start_tone("b", "ringback")
    tone = await pb.recv()
    assert tone.payload_type == 0
    media.stop_tone("b")
    media.unbridge("a")
    assert media.bridge_of("b") is None
    media.close_leg("a")
    media.close_leg("a")
    assert "a" not in media and "b" in media and len(media) == 1
    assert [e for e in first if isinstance(e, LegClosed)] == [LegClosed("a")]
    assert first == second
    assert b.local_port != a.local_port


async def test_engine_play_reports_to_on_done_and_subscribers(engine: MediaEngine) -> None:
    from media.tones import ToneSource

    events: list[MediaEvent] = []
    engine.subscribe(events.append)
    leg = await engine.create_leg("p")
    phone = await make_phone()
    engine.set_remote("p", *phone.addr, PCMU, None)
    done: asyncio.Future[PlaybackFinished] = asyncio.get_running_loop().create_future()
    player = engine.play("p", ToneSource("beep", "us", 8000), on_done=done.set_result)
    finished = await asyncio.wait_for(done, 3.0)
    assert finished == PlaybackFinished("p", player)
    assert finished in events
    assert leg.local_port > 0


@pytest.mark.parametrize(("workers", "expected"), [(0, 0), (2, 2), ("auto", None)])
def test_build_media_follows_the_config(workers: int | str, expected: int | None) -> None:
    import os

    from app.media import build_media, media_workers
    from config.schema import SwitchboardConfig

    cfg = SwitchboardConfig.model_validate(
        {
            "rtp": {"host": HOST, "ports": [30000, 30999], "inactivity_timeout": 7},
            "media": {"workers": workers, "tone_plan": "uk"},
        }
    )
    count = expected if expected is not None else (os.cpu_count() or 1)
    assert media_workers(cfg) == count
    media = build_media(cfg)  # not started: no process is spawned
    if count == 0:
        assert isinstance(media, MediaEngine)
        assert (media.port_min, media.port_max) == (30000, 30999)
        assert media.inactivity_timeout == 7.0 and media.tone_plan == "uk"
    else:
        assert isinstance(media, MediaWorkerPool)
        assert media.workers == count and (media.port_min, media.port_max) == (30000, 30999)


def test_media_workers_setting_is_validated() -> None:
    from pydantic import ValidationError

    from config.schema import MediaConfig

    assert MediaConfig().workers == 0
    for bad in (-1, "many", 1.5):
        with pytest.raises(ValidationError):
            MediaConfig.model_validate({"workers": bad})

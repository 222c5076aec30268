"""Recording rows in the store (SQLite and PostgreSQL): add, finish, get, the rows a crash
left, the paged search with an agent's and a supervisor's scope, and the retention queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm import (
    CallRecordData,
    Disposition,
    HangupSide,
    RecordingData,
    RecordingState,
    Store,
)

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)


def _m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


def _rec(n: int, minute: float, **extra: Any) -> RecordingData:
    rid = f"rec-{n:024x}"
    values: dict[str, Any] = {
        "recording_id": rid,
        "call_id": f"call{n}",
        "started": _m(minute),
        "path": f"2026/12/06/{rid}.flac",
        "format": "flac",
        "rate": 8000,
        "caller": "5551234",
        "callee": "1001",
    }
    values.update(extra)
    return RecordingData(**values)


RECORDINGS = [
    _rec(1, 0, agent="a1", extension="1001", queue="sales", customer_id=7),
    _rec(2, 1, caller="+15559999", callee="2000", dialled="800123", extension="2000"),
    _rec(3, 2, caller="1002", callee="1001", extension="1001"),  # a direct call at a1's desk
    _rec(4, 3, agent="a2", extension="1001", queue="support"),  # a colleague at a1's desk
    _rec(5, 4, caller="50%_x", callee="3000", state=RecordingState.COMPLETE),
]


@pytest.fixture
async def recordings(store: Store) -> Store:
    for r in RECORDINGS:
        await store.add_recording(r)
    return store


async def test_add_get_round_trip(store: Store) -> None:
    data = _rec(
        9,
        0,
        linked_id="call0",
        direction="inbound",
        reason="on demand",
        pauses=((1.5, 3.0),),
        channels=1,
    )
    added = await store.add_recording(data)
    assert added.id is not None
    assert added == data
    got = await store.get_recording(data.recording_id)
    assert got == data
    assert got is not None and got.pauses == ((1.5, 3.0),) and got.paused_seconds == 1.5
    assert got.started.tzinfo is not None
    assert await store.get_recording("rec-nope") is None
    with pytest.raises(ValueError, match="exists"):
        await store.add_recording(data)


async def test_finish_changes_only_given_values(store: Store) -> None:
    data = _rec(1, 0, agent="a1", extension="1001", callee="600")
    await store.add_recording(data)
    done = await store.finish_recording(
        data.recording_id,
        state=RecordingState.COMPLETE,
        ended=_m(2),
        duration=119.5,
        size=1_234_567,
        sha256="ab" * 32,
        pauses=[(10.0, 20.0), (30.0, 31.0)],
        queue="sales",
        customer_id=42,
    )
    assert done is not None
    assert done.state is RecordingState.COMPLETE
    assert (done.ended, done.duration, done.size, done.sha256) == (
        _m(2),
        119.5,
        1_234_567,
        "ab" * 32,
    )
    assert done.pauses == ((10.0, 20.0), (30.0, 31.0))
    assert (done.queue, done.customer_id) == ("sales", 42)
    # not given: kept
    assert (done.agent, done.extension, done.callee, done.error) == ("a1", "1001", "600", None)
    assert await store.get_recording(data.recording_id) == done
    failed = await store.finish_recording(
        data.recording_id,
        state="failed",
        ended=_m(3),
        duration=1.0,
        size=10,
        sha256=None,
        pauses=(),
        error="disk full",
        agent="a9",
    )
    assert failed is not None and failed.state is RecordingState.FAILED
    assert (failed.error, failed.agent, failed.sha256, failed.pauses) == (
        "disk full",
        "a9",
        None,
        (),
    )
    missing = await store.finish_recording(
        "rec-nope", state="complete", ended=_m(1), duration=0, size=0, sha256=None, pauses=()
    )
    assert missing is None


async def test_recordings_in_state(recordings: Store) -> None:
    live = await recordings.recordings_in_state(RecordingState.RECORDING)
    assert [r.call_id for r in live] == ["call1", "call2", "call3", "call4"]
    assert [r.call_id for r in await recordings.recordings_in_state("complete")] == ["call5"]
    assert await recordings.recordings_in_state("failed") == []


async def _ids(store: Store, **kw: Any) -> tuple[list[str], int]:
    items, total = await store.search_recordings(**kw)
    return [r.call_id for r in items], total


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, ["call5", "call4", "call3", "call2", "call1"]),
        ({"since": _m(1), "until": _m(3)}, ["call3", "call2"]),
        ({"agent": "a1"}, ["call1"]),
        ({"extension": "1001"}, ["call4", "call3", "call1"]),
        ({"queue": "support"}, ["call4"]),
        ({"customer_id": 7}, ["call1"]),
        ({"state": "complete"}, ["call5"]),
        ({"number": "9999"}, ["call2"]),  # caller
        ({"number": "800"}, ["call2"]),  # dialled
        ({"number": "1001"}, ["call4", "call3", "call1"]),  # callee
        ({"number": "%"}, ["call5"]),  # LIKE wildcards match themselves
        ({"number": "_"}, ["call5"]),
        # an agent user: own recordings and direct calls at their desk, not a colleague's
        ({"own_agent": "a1", "extensions": ["1001"]}, ["call3", "call1"]),
        ({"own_agent": "a2", "extensions": ["1001"]}, ["call4", "call3"]),
        ({"own_agent": "a3", "extensions": []}, []),
        ({"extensions": []}, []),
        # a supervisor's queues
        ({"queues": ["sales", "support"]}, ["call4", "call1"]),
        ({"queues": []}, []),
    ],
)
async def test_search(recordings: Store, kw: dict[str, Any], expected: list[str]) -> None:
    ids, total = await _ids(recordings, **kw)
    assert ids == expected
    assert total == len(expected)


async def test_search_pages(recordings: Store) -> None:
    assert await _ids(recordings, offset=1, limit=2) == (["call4", "call3"], 5)
    assert await _ids(recordings, offset=0, limit=0) == ([], 5)


async def test_search_by_disposition_of_the_call_record(recordings: Store) -> None:
    def cdr(record_id: str, disposition: Disposition) -> CallRecordData:
        answered = disposition is Disposition.ANSWERED
        return CallRecordData(
            call_id="sip-" + record_id,
            caller="5551234",
            callee="1001",
            start=_m(0),
            end=_m(5),
            answer=_m(1) if answered else None,
            hangup_cause="normal_clearing",
            disposition=disposition,
            hangup_side=HangupSide.CALLER,
            record_id=record_id,
        )

    await recordings.add_call_records(
        [cdr("call1", Disposition.ANSWERED), cdr("call2", Disposition.NO_ANSWER)]
    )
    await recordings.add_call_records([cdr("call1", Disposition.ANSWERED)])  # no duplicates
    assert await _ids(recordings, disposition="ANSWERED") == (["call1"], 1)
    assert await _ids(recordings, disposition="NO ANSWER") == (["call2"], 1)
    assert await _ids(recordings, disposition="BUSY") == ([], 0)
    with pytest.raises(ValueError):
        await _ids(recordings, disposition="MAYBE")


async def test_retention_queries(recordings: Store) -> None:
    for n in (1, 2, 3):
        await recordings.finish_recording(
            f"rec-{n:024x}",
            state="complete",
            ended=_m(n),
            duration=1,
            size=1,
            sha256=None,
            pauses=(),
        )
    # call4 is still being written: never offered for deletion
    old = await recordings.recordings_older_than(_m(3.5), limit=10)
    assert [r.call_id for r in old] == ["call1", "call2", "call3"]
    assert [r.call_id for r in await recordings.recordings_older_than(_m(10), 2)] == [
        "call1",
        "call2",
    ]
    assert await recordings.delete_recording(old[0].recording_id) is True
    assert await recordings.delete_recording(old[0].recording_id) is False
    assert await recordings.get_recording(old[0].recording_id) is None
    assert (await _ids(recordings))[1] == 4

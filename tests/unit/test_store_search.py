"""The store's paged searches and queue figures for the HTTP API (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crm import (
    AgentStateData,
    CallRecordData,
    Disposition,
    HangupSide,
    QueueDayStats,
    QueueEventData,
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


def _rec(
    call_id: str,
    minute: int,
    caller: str,
    callee: str,
    disposition: Disposition = Disposition.ANSWERED,
    **extra: str,
) -> CallRecordData:
    start = _m(minute)
    answered = disposition is Disposition.ANSWERED
    return CallRecordData(
        call_id=call_id,
        caller=caller,
        callee=callee,
        start=start,
        end=start + timedelta(seconds=30),
        answer=start + timedelta(seconds=5) if answered else None,
        hangup_cause="normal_clearing",
        disposition=disposition,
        hangup_side=HangupSide.CALLER,
        **extra,  # type: ignore[arg-type]
    )


RECORDS = [
    _rec("r1", 0, "1001", "5551234", agent="a1", queue="sales"),
    _rec("r2", 1, "+15559999", "2000", Disposition.NO_ANSWER, dialled="2000"),
    _rec("r3", 2, "1002", "1001"),
    _rec("r4", 3, "5550000", "3000", dialled="800123", agent="a2", queue="support"),
    _rec("r5", 4, "50%_x", "4000", Disposition.BUSY),
]


@pytest.fixture
async def records(store: Store) -> Store:
    await store.add_call_records(RECORDS)
    return store


async def _ids(store: Store, **kw: object) -> tuple[list[str], int]:
    items, total = await store.search_call_records(**kw)  # type: ignore[arg-type]
    return [r.call_id for r in items], total


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["r5", "r4", "r3", "r2", "r1"]),
        ({"number": "555"}, ["r4", "r2", "r1"]),  # caller, caller, callee
        ({"number": "8001"}, ["r4"]),  # dialled
        ({"number": "2000"}, ["r2"]),
        ({"number": "%"}, ["r5"]),  # a LIKE wildcard is a plain character
        ({"number": "_"}, ["r5"]),
        ({"number": "nothing"}, []),
        ({"agent": "a1"}, ["r1"]),
        ({"queue": "support"}, ["r4"]),
        ({"disposition": "NO ANSWER"}, ["r2"]),
        ({"disposition": Disposition.BUSY}, ["r5"]),
        ({"since": _m(1), "until": _m(3)}, ["r3", "r2"]),
        ({"since": _m(3)}, ["r5", "r4"]),
        ({"until": _m(1)}, ["r1"]),
        ({"number": "555", "since": _m(1)}, ["r4", "r2"]),
        # An agent user's own calls: their agent id, or their extensions as caller or callee
        # when no other agent handled the call (r1 at desk 1001 was a1's: hot-desking).
        ({"extensions": ["1001"]}, ["r3"]),
        ({"extensions": ["1001"], "own_agent": "a2"}, ["r4", "r3"]),
        ({"extensions": ["1001"], "own_agent": "a1"}, ["r3", "r1"]),
        ({"extensions": ["2000", "4000"]}, ["r5", "r2"]),
        ({"own_agent": "a1"}, ["r1"]),
        ({"extensions": []}, []),
        ({"extensions": [], "own_agent": "nobody"}, []),
        ({"extensions": ["1001"], "queue": "sales"}, []),
        ({"extensions": ["1001"], "own_agent": "a1", "queue": "sales"}, ["r1"]),
    ],
)
async def test_search_call_records_filters(
    records: Store, filters: dict[str, object], expected: list[str]
) -> None:
    assert await _ids(records, **filters) == (expected, len(expected))


async def test_search_call_records_paging(records: Store) -> None:
    assert await _ids(records, limit=2) == (["r5", "r4"], 5)
    assert await _ids(records, offset=2, limit=2) == (["r3", "r2"], 5)
    assert await _ids(records, offset=4, limit=2) == (["r1"], 5)
    assert await _ids(records, offset=5) == ([], 5)
    assert await _ids(records, limit=0) == ([], 5)
    assert await _ids(records, number="555", limit=1) == (["r4"], 3)
    with pytest.raises(ValueError):
        await records.search_call_records(limit=-1)


async def test_search_call_records_returns_whole_records(records: Store) -> None:
    [got], _ = await records.search_call_records(number="8001")
    assert got == RECORDS[3]
    assert got.id is not None


async def test_search_call_records_bad_disposition(records: Store) -> None:
    with pytest.raises(ValueError):
        await records.search_call_records(disposition="LOST")


# --- queue events -----------------------------------------------------------------------------


def _ev(
    minute: float, queue: str, event: str, *data: str, agent: str = "", call: str = "c"
) -> QueueEventData:
    return QueueEventData(_m(minute), call, queue, agent, event, tuple(data))


EVENTS = [
    _ev(0, "sales", "ENTERQUEUE", "", "1001", call="c1"),
    _ev(1, "support", "ENTERQUEUE", "", "1002", call="c2"),
    _ev(2, "sales", "CONNECT", "60", "c1", "3", agent="a1", call="c1"),
    _ev(3, "support", "ABANDON", "1", "1", "120", call="c2"),
    _ev(4, "sales", "COMPLETECALLER", "60", "120", "1", agent="a1", call="c1"),
    _ev(5, "billing", "ENTERQUEUE", "", "1003", call="c3"),
]


async def _events(store: Store, **kw: object) -> tuple[list[tuple[str, str]], int]:
    items, total = await store.search_queue_events(**kw)  # type: ignore[arg-type]
    return [(e.queue, e.event) for e in items], total


async def test_search_queue_events(store: Store) -> None:
    await store.add_acd_log(list(reversed(EVENTS)), [])  # insert order must not matter
    all_events, total = await store.search_queue_events()
    assert total == 6 and all_events == EVENTS  # oldest first, data split back
    assert await _events(store, queue="sales") == (
        [("sales", "ENTERQUEUE"), ("sales", "CONNECT"), ("sales", "COMPLETECALLER")],
        3,
    )
    assert await _events(store, agent="a1") == (
        [("sales", "CONNECT"), ("sales", "COMPLETECALLER")],
        2,
    )
    assert await _events(store, event="ENTERQUEUE", limit=1, offset=1) == (
        [("support", "ENTERQUEUE")],
        3,
    )
    assert await _events(store, since=_m(2), until=_m(4)) == (
        [("sales", "CONNECT"), ("support", "ABANDON")],
        2,
    )
    assert await _events(store, queues=["support", "billing"]) == (
        [("support", "ENTERQUEUE"), ("support", "ABANDON"), ("billing", "ENTERQUEUE")],
        3,
    )
    assert await _events(store, queues=["support"], queue="sales") == ([], 0)
    assert await _events(store, queues=[]) == ([], 0)


# --- agent states -----------------------------------------------------------------------------


async def test_agent_state_history(store: Store) -> None:
    states = [
        AgentStateData(_m(0), "a1", "LOGGED_OUT", "AVAILABLE", "login"),
        AgentStateData(_m(1), "a2", "LOGGED_OUT", "AVAILABLE", "login"),
        AgentStateData(_m(2), "a1", "AVAILABLE", "PAUSED", "pause", "lunch"),
        AgentStateData(_m(3), "a1", "PAUSED", "AVAILABLE", "unpause"),
        AgentStateData(_m(4), "a1", "AVAILABLE", "LOGGED_OUT", "logout"),
    ]
    await store.add_acd_log([], states)
    items, total = await store.agent_state_history("a1")
    assert total == 4
    assert items == [states[4], states[3], states[2], states[0]]
    assert items[2].reason == "lunch"
    assert await store.agent_state_history("a1", limit=2, offset=1) == (
        [states[3], states[2]],
        4,
    )
    assert await store.agent_state_history("a1", since=_m(2), until=_m(4)) == (
        [states[3], states[2]],
        2,
    )
    assert await store.agent_state_history("a2") == ([states[1]], 1)
    assert await store.agent_state_history("nobody") == ([], 0)


# --- queue figures ----------------------------------------------------------------------------

# A morning in three queues, as acd/engine.py logs it. CONNECT data = (hold, call, ring);
# ABANDON data = (position, original position, wait).
DAY = [
    _ev(-5, "sales", "ENTERQUEUE", "", "999"),  # yesterday: before `since`
    _ev(-5, "sales", "CONNECT", "1", "c0", "1", agent="a1"),
    *[_ev(1 + i / 10, "sales", "ENTERQUEUE", "", f"10{i}") for i in range(7)],
    _ev(2, "sales", "CONNECT", "5", "c", "2", agent="a1"),  # in SL
    _ev(2, "sales", "CONNECT", "20", "c", "2", agent="a2"),  # in SL: <= threshold
    _ev(2, "sales", "CONNECT", "45", "c", "2", agent="a1"),  # out of SL
    _ev(3, "sales", "ABANDON", "2", "3", "3"),  # short abandon (when short is 5)
    _ev(3, "sales", "ABANDON", "1", "4", "12"),  # abandoned within SL
    _ev(3, "sales", "ABANDON", "1", "5", "60"),  # abandoned after SL
    _ev(3, "sales", "EXITWITHTIMEOUT", "1", "6", "300"),  # offered, neither
    _ev(4, "sales", "COMPLETECALLER", "5", "100", "1", agent="a1"),
    _ev(4, "sales", "TRANSFER", "2000", "default", "20", "30", "2", agent="a2"),
    _ev(4, "sales", "CALLBACKCONNECT", "cb1", "1", agent="a2"),
    _ev(4, "sales", "CONNECT", "garbage", "c", "2", agent="a1"),  # not ours: skipped
    _ev(1, "support", "ENTERQUEUE", "", "201"),
    _ev(1, "support", "ENTERQUEUE", "", "202"),
    _ev(2, "support", "CONNECT", "25", "c", "1", agent="a3"),
    _ev(3, "support", "EXITWITHKEY", "0", "1", "1", "40"),
    _ev(600, "support", "ENTERQUEUE", "", "203"),  # after `until` in one test
]


@pytest.fixture
async def day(store: Store) -> Store:
    await store.add_acd_log(DAY, [])
    return store


async def test_queue_day_stats(day: Store) -> None:
    stats = await day.queue_day_stats(
        T0, {"sales": 20, "billing": 30}, short_abandon_seconds=5, until=_m(60)
    )
    assert stats == {
        "sales": QueueDayStats(
            queue="sales",
            offered=7,
            answered=3,
            abandoned=2,
            answered_in_sl=2,
            abandoned_in_sl=1,
            total_wait_answered=70.0,
            service_level=2 / 5,
            asa_seconds=70 / 3,
            # COMPLETECALLER talked 100 s, the TRANSFER 30 s: (100 + 30) / 2.
            completed=2,
            total_talk=130.0,
            aht_seconds=65.0,
        ),
        # Not in thresholds: the default 20 s, so a 25 s answer is out of SL.
        "support": QueueDayStats(
            queue="support",
            offered=2,
            answered=1,
            abandoned=0,
            answered_in_sl=0,
            abandoned_in_sl=0,
            total_wait_answered=25.0,
            service_level=0.0,
            asa_seconds=25.0,
        ),
        # Configured but quiet: there, with zeros and no ratios.
        "billing": QueueDayStats("billing", 0, 0, 0, 0, 0, 0.0, None, None),
    }


async def test_queue_day_stats_every_abandon_counts_without_short_threshold(day: Store) -> None:
    stats = await day.queue_day_stats(T0, {"support": 30})
    sales, support = stats["sales"], stats["support"]
    assert (sales.abandoned, sales.abandoned_in_sl) == (3, 2)
    assert sales.service_level == pytest.approx(2 / 6)
    assert sales.offered == 7
    # The ENTERQUEUE at 10:00 counts without `until`; a 30 s threshold puts 25 s in SL.
    assert (support.offered, support.answered_in_sl, support.service_level) == (3, 1, 1.0)
    assert set(stats) == {"sales", "support"}


async def test_queue_day_stats_since_excludes_earlier_events(day: Store) -> None:
    stats = await day.queue_day_stats(_m(-10), {})
    assert (stats["sales"].offered, stats["sales"].answered) == (8, 4)
    assert stats["sales"].total_wait_answered == 71.0
    assert await day.queue_day_stats(_m(700), {}) == {}

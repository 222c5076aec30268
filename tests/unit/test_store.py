"""Store round trips on SQLite (always) and PostgreSQL (when installed; see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from crm import (
    AgentStateData,
    BindingData,
    CallbackRequestData,
    CallRecordData,
    CustomerData,
    Disposition,
    HangupCause,
    HangupSide,
    QueueEventData,
    Store,
    SurveyResultData,
    VoicemailData,
    WrapUpData,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


def _answered(call_id: str = "abc@10.0.0.1", start: datetime = T0) -> CallRecordData:
    return CallRecordData(
        call_id=call_id,
        caller="1001",
        callee="1002",
        start=start,
        answer=start + timedelta(seconds=4.5),
        end=start + timedelta(seconds=64.5),
        hangup_cause=HangupCause.NORMAL_CLEARING,
        disposition=Disposition.ANSWERED,
        hangup_side=HangupSide.CALLEE,
        sip_status=200,
    )


def _binding(
    contact: str = "sip:1001@192.0.2.10:5060", expires: datetime | None = None, cseq: int = 1
) -> BindingData:
    return BindingData(
        aor="1001",
        contact_uri=contact,
        received="192.0.2.10:40000",
        transport="udp",
        call_id="reg-1",
        cseq=cseq,
        expires_at=expires or datetime.now(UTC) + timedelta(hours=1),
        user_agent="PJSUA2",
        instance_id="<urn:uuid:00000000-0000-0000-0000-000000000001>",
        path=None,
    )


def test_call_record_derives_duration_and_billable() -> None:
    rec = _answered()
    assert rec.duration == 64.5
    assert rec.billable_seconds == 60.0
    unanswered = CallRecordData(
        call_id="x",
        caller="1001",
        callee="1003",
        start=T0,
        end=T0 + timedelta(seconds=30),
        hangup_cause="no_answer",
        disposition=Disposition.NO_ANSWER,
        hangup_side=HangupSide.SYSTEM,
        sip_status=480,
    )
    assert unanswered.duration == 30.0
    assert unanswered.billable_seconds == 0.0


def test_call_record_rejects_naive_and_backwards_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        CallRecordData(
            call_id="x",
            caller="a",
            callee="b",
            start=datetime(2024, 1, 1),
            end=datetime(2024, 1, 1, 0, 1),
            hangup_cause="normal_clearing",
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
        )
    with pytest.raises(ValueError, match="ends before"):
        CallRecordData(
            call_id="x",
            caller="a",
            callee="b",
            start=T0,
            end=T0 - timedelta(seconds=1),
            hangup_cause="normal_clearing",
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
        )


async def test_call_record_round_trip(store: Store) -> None:
    rec = _answered()
    await store.add_call_record(rec)
    got = await store.get_call_record(rec.call_id)
    assert got is not None
    assert got == rec  # id is excluded from equality
    assert got.id is not None
    assert got.start.tzinfo is not None and got.start.utcoffset() == timedelta(0)
    assert got.disposition is Disposition.ANSWERED
    assert got.hangup_side is HangupSide.CALLEE
    assert (got.duration, got.billable_seconds, got.sip_status) == (64.5, 60.0, 200)
    assert await store.get_call_record("missing") is None


async def test_queue_call_record_round_trip_with_report_columns(store: Store) -> None:
    """A queue call: answered by the IVR at +1 s, by agent a2 at +41 s after 30 s in the
    queue; billable time counts from the agent's answer (docs/records.md)."""
    rec = CallRecordData(
        call_id="q@10.0.0.1",
        caller="1001",
        callee="1002",
        start=T0,
        system_answer=T0 + timedelta(seconds=1),
        answer=T0 + timedelta(seconds=41),
        end=T0 + timedelta(seconds=47),
        hangup_cause=HangupCause.NORMAL_CLEARING,
        disposition=Disposition.ANSWERED,
        hangup_side=HangupSide.CALLER,
        sip_status=200,
        record_id="r1",
        dialled="5000",
        direction="inbound",
        queue="support",
        agent="a2",
        wait_seconds=30.0,
        queue_call_id="r1",
        callback_id=7,
    )
    await store.add_call_record(rec)
    got = await store.get_call_record("q@10.0.0.1")
    assert got == rec
    assert got is not None and got.system_answer == T0 + timedelta(seconds=1)
    assert (got.duration, got.billable_seconds, got.wait_seconds) == (47.0, 6.0, 30.0)
    assert (got.dialled, got.direction, got.queue, got.agent) == (
        "5000",
        "inbound",
        "support",
        "a2",
    )
    assert (got.queue_call_id, got.callback_id) == ("r1", 7)
    # The report columns are optional: an older-style record reads back with them empty.
    await store.add_call_record(_answered())
    plain = await store.get_call_record("abc@10.0.0.1")
    assert plain is not None and (plain.direction, plain.queue, plain.agent) == (None, None, None)


def test_call_record_rejects_an_unknown_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        CallRecordData(
            call_id="x",
            caller="1001",
            callee="1002",
            start=T0,
            end=T0,
            hangup_cause="normal_clearing",
            disposition=Disposition.NO_ANSWER,
            hangup_side=HangupSide.CALLER,
            direction="sideways",
        )


async def test_call_record_times_are_normalised_to_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2024, 5, 1, 14, 0, 0, tzinfo=plus2)  # == T0
    rec = CallRecordData(
        call_id="tz",
        caller="1001",
        callee="1002",
        start=start,
        end=start + timedelta(seconds=10),
        hangup_cause=HangupCause.ORIGINATOR_CANCEL,
        disposition=Disposition.CANCELLED,
        hangup_side=HangupSide.CALLER,
        sip_status=487,
    )
    await store.add_call_record(rec)
    got = await store.get_call_record("tz")
    assert got is not None
    assert got.start == T0 and got.start.tzinfo == UTC
    assert got.answer is None and got.billable_seconds == 0.0
    assert got.disposition == "CANCELLED"


async def test_list_call_records_newest_first_with_limit(store: Store) -> None:
    for i in range(5):
        await store.add_call_record(_answered(f"c{i}", T0 + timedelta(minutes=i)))
    records = await store.list_call_records(limit=3)
    assert [r.call_id for r in records] == ["c4", "c3", "c2"]
    assert len(await store.list_call_records()) == 5


async def test_binding_round_trip_and_upsert(store: Store) -> None:
    b = _binding()
    await store.save_binding(b)
    assert await store.load_bindings() == [b]
    # Same (aor, contact): a refresh replaces the row instead of adding a second one.
    refreshed = BindingData(
        aor=b.aor,
        contact_uri=b.contact_uri,
        received="192.0.2.10:40002",
        transport="tcp",
        call_id="reg-1",
        cseq=2,
        expires_at=b.expires_at + timedelta(minutes=5),
    )
    await store.save_binding(refreshed)
    assert await store.load_bindings() == [refreshed]
    second = _binding("sip:1001@192.0.2.11:5060")
    await store.save_binding(second)
    assert [x.contact_uri for x in await store.load_bindings(aor="1001")] == [
        b.contact_uri,
        second.contact_uri,
    ]
    assert await store.load_bindings(aor="1002") == []


async def test_expired_bindings_are_not_loaded(store: Store) -> None:
    now = datetime.now(UTC)
    live = _binding("sip:1001@192.0.2.1", now + timedelta(minutes=10))
    dead = _binding("sip:1001@192.0.2.2", now - timedelta(seconds=1))
    await store.save_binding(live)
    await store.save_binding(dead)
    assert await store.load_bindings() == [live]
    # With an explicit clock both can be seen, and both expire later.
    assert len(await store.load_bindings(now=now - timedelta(minutes=1))) == 2
    assert await store.load_bindings(now=now + timedelta(hours=1)) == []
    assert await store.purge_expired_bindings(now=now) == 1
    assert len(await store.load_bindings(now=now - timedelta(minutes=1))) == 1


async def test_delete_binding_and_all_bindings(store: Store) -> None:
    a1, a2 = _binding("sip:1001@a"), _binding("sip:1001@b")
    other = BindingData(
        aor="1002",
        contact_uri="sip:1002@c",
        received="192.0.2.3:5060",
        transport="udp",
        call_id="r",
        cseq=1,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    for b in (a1, a2, other):
        await store.save_binding(b)
    await store.delete_binding("1001", "sip:1001@a")
    assert {b.contact_uri for b in await store.load_bindings()} == {"sip:1001@b", "sip:1002@c"}
    await store.delete_bindings("1001")
    assert await store.load_bindings() == [other]


async def test_bindings_survive_reopen(store_url: str) -> None:
    s = await Store.open(store_url)
    b = _binding()
    try:
        await s.save_binding(b)
        await s.add_call_record(_answered())
    finally:
        await s.close()
    s = await Store.open(store_url)  # opening an upgraded store again changes nothing
    try:
        assert await s.load_bindings() == [b]
        assert len(await s.list_call_records()) == 1
    finally:
        await s.close()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    # The parent folder is created on demand.
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'wal.db'}")
    try:
        async with s.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    finally:
        await s.close()


async def test_batched_binding_changes_and_call_records(store: Store) -> None:
    await store.save_binding(_binding(contact="sip:old@10.0.0.9"))
    await store.apply_binding_changes(
        [_binding(contact="sip:a@10.0.0.5"), _binding(contact="sip:b@10.0.0.6")],
        [("1001", "sip:old@10.0.0.9")],
    )
    # Upsert: the same rows again with a higher CSeq refresh in place.
    await store.apply_binding_changes([_binding(contact="sip:a@10.0.0.5", cseq=9)], [])
    rows = await store.load_bindings("1001")
    assert [(b.contact_uri, b.cseq) for b in rows] == [
        ("sip:a@10.0.0.5", 9),
        ("sip:b@10.0.0.6", 1),
    ]
    await store.add_call_records([_answered("one"), _answered("two")])
    assert {r.call_id for r in await store.list_call_records()} == {"one", "two"}


async def test_voicemail_round_trip_by_mailbox(store: Store) -> None:
    for box, n in (("1002", 1), ("1003", 2), ("1002", 3)):
        await store.add_voicemail(
            VoicemailData(
                record_id=f"rec{n}",
                mailbox=box,
                caller="1001",
                path=f"/var/vm/{n}.wav",
                sha256="ab" * 32,
                seconds=3.5,
                created_at=T0 + timedelta(seconds=n),
            )
        )
    got = await store.list_voicemails("1002")
    assert [v.record_id for v in got] == ["rec1", "rec3"]
    assert got[0].created_at == T0 + timedelta(seconds=1) and not got[0].heard
    assert len(await store.list_voicemails()) == 3


async def test_mailbox_messages_counts_heard_and_delete(store: Store) -> None:
    ids = []
    for box, n in (("1002", 1), ("1002", 2), ("1003", 3), ("1002", 4)):
        ids.append(
            await store.add_voicemail(
                VoicemailData(
                    record_id=f"rec{n}",
                    mailbox=box,
                    caller="1001",
                    path=f"/var/vm/{n}.wav",
                    sha256="ab" * 32,
                    seconds=2.0,
                    created_at=T0 + timedelta(seconds=n),
                )
            )
        )
    assert await store.voicemail_counts() == {"1002": (3, 0), "1003": (1, 0)}
    assert await store.mark_voicemail_heard(ids[0])
    assert not await store.mark_voicemail_heard(9999)
    # New first (oldest first), then the heard ones.
    assert [v.record_id for v in await store.mailbox_messages("1002")] == ["rec2", "rec4", "rec1"]
    assert await store.voicemail_counts("1002") == {"1002": (2, 1)}
    assert await store.voicemail_counts("1009") == {"1009": (0, 0)}
    gone = await store.delete_voicemail(ids[1])
    assert gone is not None and gone.record_id == "rec2" and gone.id == ids[1]
    assert await store.delete_voicemail(ids[1]) is None
    assert await store.get_voicemail(ids[1]) is None
    got = await store.get_voicemail(ids[0])
    assert got is not None and got.heard and got.created_at == T0 + timedelta(seconds=1)
    assert await store.voicemail_counts() == {"1002": (1, 1), "1003": (1, 0)}


async def test_survey_results_round_trip_and_validation(store: Store) -> None:
    await store.add_survey_result(
        SurveyResultData(
            record_id="r1",
            survey_record_id="r2",
            caller="1001",
            agent="1003",
            flow="survey",
            result="satisfied",
            digit="1",
            created_at=T0,
        )
    )
    (got,) = await store.list_survey_results("1003")
    assert (got.result, got.digit, got.record_id) == ("satisfied", "1", "r1")
    assert await store.list_survey_results("1004") == []
    with pytest.raises(ValueError, match="unknown survey result"):
        SurveyResultData("r", "s", "1", "2", "f", "great", T0)


async def test_wrap_ups_round_trip_by_agent_and_call(store: Store) -> None:
    first = await store.add_wrap_up(WrapUpData("r1", "bob", "2", "asked for a refund", T0))
    await store.add_wrap_up(WrapUpData(None, "bob", None, "", T0 + timedelta(seconds=5)))
    await store.add_wrap_up(WrapUpData("r3", "alice", "1", "总结", T0 + timedelta(seconds=1)))
    bobs = await store.list_wrap_ups("bob")
    assert [(w.id, w.record_id, w.code, w.notes) for w in bobs] == [
        (first, "r1", "2", "asked for a refund"),
        (bobs[1].id, None, None, ""),
    ]
    assert bobs[0].at == T0
    (alices,) = await store.list_wrap_ups(record_id="r3")
    assert (alices.agent, alices.notes) == ("alice", "总结")
    assert len(await store.list_wrap_ups()) == 3


async def test_callback_requests_are_not_duplicated_while_pending(store: Store) -> None:
    first, created = await store.add_callback_request(
        CallbackRequestData(number="5551234", caller="1001", created_at=T0, queue="support")
    )
    assert created
    again, created = await store.add_callback_request(
        CallbackRequestData(number="5551234", caller="1001", created_at=T0 + timedelta(minutes=1))
    )
    assert (again, created) == (first, False)  # same request: the first place in line is kept
    other, created = await store.add_callback_request(
        CallbackRequestData(number="5559999", caller="1002", created_at=T0 + timedelta(seconds=5))
    )
    assert created and other != first
    pending = await store.list_callback_requests("pending")
    assert [p.number for p in pending] == ["5551234", "5559999"]
    await store.finish_callback_request(first, "done", "connected", 1)
    # Once the first request is finished, the same number may ask again.
    _, created = await store.add_callback_request(
        CallbackRequestData(number="5551234", caller="1001", created_at=T0 + timedelta(hours=1))
    )
    assert created
    done = await store.list_callback_requests("done")
    assert [(d.number, d.outcome, d.attempts) for d in done] == [("5551234", "connected", 1)]
    with pytest.raises(ValueError):
        await store.finish_callback_request(first, "pending", "x", 0)


async def test_customer_found_by_caller_number_digits(store: Store) -> None:
    cid = await store.add_customer(
        CustomerData(name="Ada Lovelace", phone="+1 (555) 123-4567", grade="A", language="en")
    )
    found = await store.find_customer_by_number("15551234567")
    assert found is not None and found.id == cid and found.grade == "A"
    assert found.as_variables() == {
        "id": str(cid),
        "name": "Ada Lovelace",
        "phone": "+1 (555) 123-4567",
        "grade": "A",
        "language": "en",
    }
    # however typed (docs/crm.md): the national form finds the international one
    national = await store.find_customer_by_number("(555) 123-4567")
    assert national is not None and national.id == cid
    assert await store.find_customer_by_number("5551234568") is None
    assert await store.find_customer_by_number("anonymous") is None
    with pytest.raises(ValueError, match="grade"):
        CustomerData(name="x", phone="1", grade="F")


async def test_queue_events_agent_states_and_last_agents(store: Store) -> None:
    events = [
        QueueEventData(T0, "c1", "support", "", "ENTERQUEUE", ("", "5551234")),
        QueueEventData(
            T0 + timedelta(seconds=17), "c1", "support", "a1", "CONNECT", ("17", "c1", "2")
        ),
    ]
    states = [AgentStateData(T0, "a1", "AVAILABLE", "RINGING", "offer")]
    await store.add_acd_log(events, states)
    got = await store.list_queue_events()
    assert [e.queue_log_line() for e in got] == [
        f"{int(T0.timestamp())}|c1|support|NONE|ENTERQUEUE||5551234",
        f"{int(T0.timestamp()) + 17}|c1|support|a1|CONNECT|17|c1|2",
    ]
    assert (await store.list_agent_states("a1"))[0].new_state == "RINGING"
    await store.save_last_agents({"5551234": ("a1", T0)})
    await store.save_last_agents({"5551234": ("a2", T0 + timedelta(days=1))})
    assert await store.load_last_agents(T0) == {"5551234": ("a2", T0 + timedelta(days=1))}
    assert await store.load_last_agents(T0 + timedelta(days=2)) == {}


async def test_last_agent_states_name_each_agents_latest_row_and_login(store: Store) -> None:
    s = timedelta(seconds=1)
    await store.add_acd_log(
        [],
        [
            AgentStateData(T0, "a1", "LOGGED_OUT", "AVAILABLE", "login"),
            AgentStateData(T0 + 5 * s, "a1", "AVAILABLE", "NOT_READY", "pause", "lunch"),
            AgentStateData(T0 + 6 * s, "a2", "LOGGED_OUT", "AVAILABLE", "login"),
            AgentStateData(T0 + 7 * s, "a2", "AVAILABLE", "LOGGED_OUT", "logout"),
            AgentStateData(T0 + 9 * s, "a2", "LOGGED_OUT", "AVAILABLE", "login"),
            AgentStateData(T0 + 9 * s, "a2", "AVAILABLE", "RINGING", "offer"),  # same instant
        ],
    )
    last = await store.last_agent_states()
    assert {a: (row.new_state, row.reason, login) for a, (row, login) in last.items()} == {
        "a1": ("NOT_READY", "lunch", T0),
        "a2": ("RINGING", None, T0 + 9 * s),
    }


async def test_recent_talk_times_per_queue_oldest_first(store: Store) -> None:
    s = timedelta(seconds=1)
    await store.add_acd_log(
        [
            QueueEventData(T0, "c0", "support", "a1", "COMPLETEAGENT", ("5", "999", "1")),
            QueueEventData(T0 + s, "c1", "support", "a1", "COMPLETEAGENT", ("5", "60", "1")),
            QueueEventData(T0 + 2 * s, "c2", "sales", "a2", "COMPLETECALLER", ("3", "30", "2")),
            QueueEventData(T0 + 3 * s, "c3", "support", "a1", "COMPLETECALLER", ("2", "90", "1")),
            QueueEventData(T0 + 4 * s, "c4", "support", "a1", "CONNECT", ("2", "c4", "1")),
            QueueEventData(T0 + 5 * s, "c5", "support", "a1", "COMPLETEAGENT", ("x",)),
        ],
        [],
    )
    # Only completed calls since the given time; a row with no calltime field is skipped.
    assert await store.recent_talk_times(T0 + s) == {"support": [60.0, 90.0], "sales": [30.0]}
    assert await store.recent_talk_times(T0, per_queue=1) == {"support": [90.0], "sales": [30.0]}


async def test_a_database_from_before_new_columns_gets_them_and_keeps_its_rows(
    empty_store_url: str,
) -> None:
    """A database made before Alembic by a release older than 0.1.0 (call_records without
    the later nullable columns, other tables missing) is brought to revision 0001 when it
    is adopted: the missing tables are created and the missing nullable columns added."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from crm.migrate import current_revision, head_revision, upgrade

    store_url = empty_store_url
    engine = create_async_engine(store_url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    async with engine.begin() as conn:  # call_records as an older version created it
        await conn.execute(
            text(
                f"CREATE TABLE call_records (id {serial} PRIMARY KEY,"
                " call_id VARCHAR(255) NOT NULL, caller VARCHAR(255) NOT NULL,"
                " callee VARCHAR(255) NOT NULL,"
                ' start TIMESTAMP NOT NULL, answer TIMESTAMP, "end" TIMESTAMP NOT NULL,'
                " duration FLOAT NOT NULL, billable_seconds FLOAT NOT NULL,"
                " hangup_cause VARCHAR(64) NOT NULL, disposition VARCHAR(16) NOT NULL,"
                " hangup_side VARCHAR(16) NOT NULL, sip_status INTEGER)"
            )
        )
        await conn.execute(
            text(
                'INSERT INTO call_records (call_id, caller, callee, start, "end", duration,'
                " billable_seconds, hangup_cause, disposition, hangup_side) VALUES ('old',"
                " '1001', '1002', '2024-05-01 12:00:00', '2024-05-01 12:01:00', 60, 0,"
                " 'no_answer', 'NO ANSWER', 'caller')"
            )
        )
    await engine.dispose()
    if engine.dialect.name == "postgresql":  # SQLite: Store.open upgrades by itself
        assert "0001" not in await upgrade(store_url)  # adopted and stamped, not created
    store = await Store.open(store_url)
    assert await current_revision(store_url) == head_revision()
    try:
        new = replace(_answered("new"), queue="support", agent="a1", direction="inbound")
        await store.add_call_record(new)
        rows = await store.list_call_records()
        assert sorted((r.call_id, r.queue, r.agent) for r in rows) == [
            ("new", "support", "a1"),
            ("old", None, None),
        ]
    finally:
        await store.close()

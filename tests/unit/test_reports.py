"""Reports (crm/reports.py, docs/reports.md) on one seeded day, every figure computed by hand.

The day is Sunday 2026-10-25 in Europe/Berlin: summer time ends at 03:00 CEST (01:00 UTC),
so the local day runs 2026-10-24T22:00Z .. 2026-10-25T23:00Z, 25 hours. All seeded times are
UTC; after 01:00Z Berlin is UTC+1, so 09:57Z is 10:57 local.

The calls (record ids), what the queue log says, and what the agents did:

- rec-1  0301111 -> sales, queued 09:57:10, a1 answers 09:58:00 (hold 50), ends 10:02:00:
         talk 240 s, crossing the 10:00Z hour boundary (120 s each side). Surveyed: satisfied.
- rec-2  0302222 -> support, queued 10:10:05, a2 answers 10:10:40 (hold 35, SL 30: late),
         transferred at 10:15:00 (talk 260) to 2005; rec-2b continues it 10:15:10..10:20:00
         (talk 290, no agent). Surveyed: unsatisfied.
- rec-3  0303333 -> sales, queued 10:30:10, abandons 10:31:00 (waited 50).
- rec-4  0304444 -> sales, queued 10:40:10, abandons 10:40:13 (waited 3: a short abandon).
- rec-5  0305555 -> support, queued 11:00:05, asks for a callback 11:00:55 (waited 50).
- rec-6  the callback: a1 (2001) -> 0305555 via carrier, 11:20:00, answered 11:20:10,
         ends 11:25:10 (talk 300), CALLBACKCONNECT by a1 at 11:20:10.
- rec-7  0307777 hears the IVR 11:30:00..11:30:40 and hangs up (an IVR hang-up).
- rec-8  0301111 again (so rec-1 is not a first-contact resolution) -> sales, queued
         12:00:05, rings a1 who lets it ring (RINGNOANSWER 12:00:10), a2 answers 12:00:15
         (hold 10), ends 12:03:15 (talk 180). No survey.
- rec-9  0309999 -> support 12:30:05, times out 12:32:05 (waited 120), overflows to sales,
         abandons there 12:33:05 (waited 60 in sales).
- rec-10 2002 -> 0401000 via carrier 13:00:00, answered 13:00:20, ends 13:01:20 (talk 60).
- rec-11 2002 -> 0401001 via carrier 13:10:00, not answered (ends 13:10:30).
- rec-12 internal 2001 -> 2002 (ignored by every report).
- rec-13 0302222 again the next day, 2026-10-26T08:00Z: outside the range, but within
         first_contact_hours (24) of rec-2, so rec-2 is not resolved at first contact either.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm import (
    AgentStateData,
    CallRecordData,
    Disposition,
    HangupSide,
    QueueEventData,
    Store,
    SurveyResultData,
)
from crm.report_formats import to_csv, to_png, to_xlsx
from crm.reports import (
    REPORTS,
    ReportData,
    ReportQuery,
    ReportSettings,
    compute,
    fetch,
    intervals,
    run_report,
)

BERLIN = "Europe/Berlin"
SINCE = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 2026-10-25 00:00 CEST
UNTIL = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 2026-10-26 00:00 CET
SETTINGS = ReportSettings(
    timezone=BERLIN,
    short_abandon_seconds=5,
    first_contact_hours=24,
    service_levels={"sales": 20, "support": 30},
    agent_skills={"a1": frozenset({"english"}), "a2": frozenset({"german", "english"})},
)


def t(hms: str, day: int = 25, month: int = 10) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2026, month, day, h, m, s, tzinfo=UTC)


def rec(
    record_id: str,
    caller: str,
    callee: str,
    start: datetime,
    end: datetime,
    *,
    answer: datetime | None = None,
    disposition: Disposition = Disposition.ANSWERED,
    side: HangupSide = HangupSide.CALLEE,
    cause: str = "normal_clearing",
    **extra: Any,
) -> CallRecordData:
    return CallRecordData(
        call_id=f"sip-{record_id}",
        caller=caller,
        callee=callee,
        start=start,
        end=end,
        answer=answer,
        hangup_cause=cause,
        disposition=disposition,
        hangup_side=side,
        record_id=record_id,
        **extra,
    )


NO = Disposition.NO_ANSWER
CALLER = HangupSide.CALLER

RECORDS = [
    rec("rec-1", "0301111", "2001", t("09:57:00"), t("10:02:00"), answer=t("09:58:00"),
        direction="inbound", system_answer=t("09:57:00"), queue="sales", agent="a1",
        wait_seconds=50.0, queue_call_id="rec-1", dialled="5000"),
    rec("rec-1s", "0301111", "survey:csat", t("10:02:00"), t("10:02:20"),
        answer=t("10:02:00"), system_answer=t("10:02:00"), linked_id="rec-1",
        direction="inbound", side=CALLER),
    rec("rec-2", "0302222", "2002", t("10:10:00"), t("10:15:00"), answer=t("10:10:40"),
        direction="inbound", system_answer=t("10:10:00"), queue="support", agent="a2",
        wait_seconds=35.0, queue_call_id="rec-2", cause="transferred"),
    rec("rec-2b", "0302222", "2005", t("10:15:00"), t("10:20:00"), answer=t("10:15:10"),
        linked_id="rec-2", direction="internal", dialled="2005"),
    rec("rec-3", "0303333", "5000", t("10:30:00"), t("10:31:00"), disposition=NO, side=CALLER,
        direction="inbound", system_answer=t("10:30:00"), queue="sales", wait_seconds=50.0,
        queue_call_id="rec-3"),
    rec("rec-4", "0304444", "5000", t("10:40:00"), t("10:40:13"), disposition=NO, side=CALLER,
        direction="inbound", system_answer=t("10:40:00"), queue="sales", wait_seconds=3.0,
        queue_call_id="rec-4"),
    rec("rec-5", "0305555", "5000", t("11:00:00"), t("11:01:00"), disposition=NO,
        side=HangupSide.SYSTEM, cause="callback_requested", direction="inbound",
        system_answer=t("11:00:00"), queue="support", wait_seconds=50.0, queue_call_id="rec-5"),
    rec("rec-6", "2001", "0305555", t("11:20:00"), t("11:25:10"), answer=t("11:20:10"),
        direction="outbound", queue="support", agent="a1", queue_call_id="rec-5",
        callback_id=1, trunk="carrier", dialled="0305555"),
    rec("rec-7", "0307777", "5000", t("11:30:00"), t("11:30:40"), answer=t("11:30:00"),
        side=CALLER, direction="inbound", system_answer=t("11:30:00"), dialled="5000"),
    rec("rec-8", "0301111", "2002", t("12:00:00"), t("12:03:15"), answer=t("12:00:15"),
        side=CALLER, direction="inbound", system_answer=t("12:00:00"), queue="sales",
        agent="a2", wait_seconds=10.0, queue_call_id="rec-8"),
    rec("rec-9", "0309999", "5000", t("12:30:00"), t("12:33:05"), disposition=NO, side=CALLER,
        direction="inbound", system_answer=t("12:30:00"), queue="sales", wait_seconds=185.0,
        queue_call_id="rec-9"),
    rec("rec-10", "2002", "0401000", t("13:00:00"), t("13:01:20"), answer=t("13:00:20"),
        direction="outbound", trunk="carrier", dialled="0401000"),
    rec("rec-11", "2002", "0401001", t("13:10:00"), t("13:10:30"), disposition=NO, side=CALLER,
        cause="originator_cancel", direction="outbound", trunk="carrier", dialled="0401001"),
    rec("rec-12", "2001", "2002", t("13:20:00"), t("13:21:05"), answer=t("13:20:05"),
        direction="internal"),
    rec("rec-13", "0302222", "5000", t("08:00:00", day=26), t("08:01:00", day=26),
        answer=t("08:00:00", day=26), side=CALLER, direction="inbound",
        system_answer=t("08:00:00", day=26)),
]  # fmt: skip


def ev(at: str, call: str, queue: str, agent: str, event: str, *data: str) -> QueueEventData:
    return QueueEventData(t(at), call, queue, agent, event, tuple(data))


EVENTS = [
    ev("09:57:10", "rec-1", "sales", "", "ENTERQUEUE", "", "0301111"),
    ev("09:58:00", "rec-1", "sales", "a1", "CONNECT", "50", "rec-1", "10"),
    ev("10:02:00", "rec-1", "sales", "a1", "COMPLETEAGENT", "50", "240", "1"),
    ev("10:10:05", "rec-2", "support", "", "ENTERQUEUE", "", "0302222"),
    ev("10:10:40", "rec-2", "support", "a2", "CONNECT", "35", "rec-2", "5"),
    ev("10:15:00", "rec-2", "support", "a2", "TRANSFER", "2005", "default", "35", "260", "1"),
    ev("10:30:10", "rec-3", "sales", "", "ENTERQUEUE", "", "0303333"),
    ev("10:31:00", "rec-3", "sales", "", "ABANDON", "1", "1", "50"),
    ev("10:40:10", "rec-4", "sales", "", "ENTERQUEUE", "", "0304444"),
    ev("10:40:13", "rec-4", "sales", "", "ABANDON", "1", "1", "3"),
    ev("11:00:05", "rec-5", "support", "", "ENTERQUEUE", "", "0305555"),
    ev("11:00:55", "rec-5", "support", "", "CALLBACKREQUEST", "0305555", "1", "50"),
    ev("11:20:10", "rec-5", "support", "a1", "CALLBACKCONNECT", "0305555", "1"),
    ev("12:00:05", "rec-8", "sales", "", "ENTERQUEUE", "", "0301111"),
    ev("12:00:10", "rec-8", "sales", "a1", "RINGNOANSWER", "5000"),
    ev("12:00:15", "rec-8", "sales", "a2", "CONNECT", "10", "rec-8", "3"),
    ev("12:03:15", "rec-8", "sales", "a2", "COMPLETECALLER", "10", "180", "1"),
    ev("12:30:05", "rec-9", "support", "", "ENTERQUEUE", "", "0309999"),
    ev("12:32:05", "rec-9", "support", "", "EXITWITHTIMEOUT", "1", "1", "120"),
    ev("12:32:05", "rec-9", "sales", "", "ENTERQUEUE", "", "0309999"),
    ev("12:33:05", "rec-9", "sales", "", "ABANDON", "1", "1", "60"),
]


def st(
    at: datetime, agent: str, old: str, new: str, event: str, reason: str | None = None
) -> AgentStateData:
    return AgentStateData(at, agent, old, new, event, reason)


STATES = [
    # a2 was logged in before the range starts and logs out 30 minutes into it.
    st(t("21:30:00", day=24), "a2", "LOGGED_OUT", "AVAILABLE", "login"),
    st(t("22:30:00", day=24), "a2", "AVAILABLE", "LOGGED_OUT", "logout"),
    st(t("09:00:00"), "a1", "LOGGED_OUT", "AVAILABLE", "login"),
    st(t("09:57:50"), "a1", "AVAILABLE", "RINGING", "offer"),
    st(t("09:58:00"), "a1", "RINGING", "ON_CALL", "answer", "inbound"),
    st(t("10:00:00"), "a2", "LOGGED_OUT", "AVAILABLE", "login"),
    st(t("10:02:00"), "a1", "ON_CALL", "WRAP_UP", "call_end_wrap"),
    st(t("10:02:30"), "a1", "WRAP_UP", "AVAILABLE", "wrap_end"),
    st(t("10:10:35"), "a2", "AVAILABLE", "RINGING", "offer"),
    st(t("10:10:40"), "a2", "RINGING", "ON_CALL", "answer", "inbound"),
    st(t("10:15:00"), "a2", "ON_CALL", "AVAILABLE", "call_end"),
    st(t("10:30:00"), "a1", "AVAILABLE", "NOT_READY", "pause", "break"),
    st(t("10:45:00"), "a1", "NOT_READY", "AVAILABLE", "unpause"),
    st(t("11:20:00"), "a1", "AVAILABLE", "ON_CALL", "call_start", "outbound"),
    st(t("11:25:10"), "a1", "ON_CALL", "AVAILABLE", "call_end"),
    st(t("12:00:05"), "a1", "AVAILABLE", "RINGING", "offer"),
    st(t("12:00:10"), "a1", "RINGING", "AVAILABLE", "no_answer"),
    st(t("12:00:12"), "a2", "AVAILABLE", "RINGING", "offer"),
    st(t("12:00:15"), "a2", "RINGING", "ON_CALL", "answer", "inbound"),
    st(t("12:03:15"), "a2", "ON_CALL", "WRAP_UP", "call_end_wrap"),
    st(t("12:04:15"), "a2", "WRAP_UP", "AVAILABLE", "wrap_end"),
    st(t("12:10:00"), "a2", "AVAILABLE", "NOT_READY", "pause", "busy"),
    st(t("12:20:00"), "a2", "NOT_READY", "NOT_READY", "pause", "lunch"),
    st(t("12:50:00"), "a2", "NOT_READY", "AVAILABLE", "unpause"),
    st(t("13:00:00"), "a1", "AVAILABLE", "LOGGED_OUT", "logout"),
    st(t("13:00:00"), "a2", "AVAILABLE", "ON_CALL", "call_start", "outbound"),
    st(t("13:01:20"), "a2", "ON_CALL", "AVAILABLE", "call_end"),
    st(t("13:10:00"), "a2", "AVAILABLE", "ON_CALL", "call_start", "outbound"),
    st(t("13:10:30"), "a2", "ON_CALL", "AVAILABLE", "call_end"),
    st(t("14:00:00"), "a2", "AVAILABLE", "LOGGED_OUT", "logout"),
]


def sv(record_id: str, agent: str, result: str, at: datetime) -> SurveyResultData:
    return SurveyResultData(record_id, f"{record_id}s", "x", agent, "csat", result, at)


SURVEYS = [
    sv("rec-old", "a1", "no rating entered", t("09:10:00")),  # a call of an earlier day
    sv("rec-1", "a1", "satisfied", t("10:02:20")),
    sv("rec-2", "a2", "unsatisfied", t("10:20:00")),
]

DATA = ReportData(RECORDS, EVENTS, STATES, SURVEYS)


def query(period: str = "total", **kw: Any) -> ReportQuery:
    return ReportQuery.from_settings(SETTINGS, SINCE, UNTIL, period, **kw)


def run(name: str, period: str = "total", **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    report = compute(name, query(period, **kw), DATA)
    return report.rows, report.totals


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


approx = pytest.approx


# -- intervals -----------------------------------------------------------------------------


def test_autumn_dst_day_has_25_hours_and_the_repeated_hour_twice() -> None:
    days = intervals(query("day"))
    assert [(d.start, d.end, d.label) for d in days] == [(SINCE, UNTIL, "2026-10-25")]
    hours = intervals(query("hour"))
    assert len(hours) == 25
    labels = [h.label for h in hours]
    # 00:00Z is 02:00 CEST, 01:00Z is 02:00 CET: the hour 02 twice, told apart by the offset
    assert labels[2:4] == ["2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00"]
    assert labels[0] == "2026-10-25T00:00+02:00" and labels[-1] == "2026-10-25T23:00+01:00"
    assert len(intervals(query("15min"))) == 25 * 4


def test_spring_dst_day_has_23_hours_and_no_0200() -> None:
    since = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 2026-03-29 00:00 CET
    until = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 2026-03-30 00:00 CEST
    q = ReportQuery.from_settings(SETTINGS, since, until, "hour")
    labels = [h.label for h in intervals(q)]
    assert len(labels) == 23
    assert labels[1:3] == ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00"]
    q = ReportQuery.from_settings(SETTINGS, since, until, "day")
    assert [(d.start, d.end) for d in intervals(q)] == [(since, until)]


def test_spring_dst_split_of_logged_in_time_across_the_missing_hour() -> None:
    # An agent logged in 01:30 CET (00:30Z) .. 03:30 CEST (01:30Z): 3600 s of real time,
    # 1800 s in the interval "01:00+01:00" (00:00Z..01:00Z), 1800 s in "03:00+02:00".
    since = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    until = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    states = [
        st(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "a1", "LOGGED_OUT", "AVAILABLE", "login"),
        st(datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "a1", "AVAILABLE", "LOGGED_OUT", "logout"),
    ]
    q = ReportQuery.from_settings(SETTINGS, since, until, "hour")
    report = compute("talk", q, ReportData(states=states))
    rows = by(report.rows, "period")
    assert rows["2026-03-29T01:00+01:00"]["logged_in_seconds"] == 1800
    assert rows["2026-03-29T03:00+02:00"]["logged_in_seconds"] == 1800
    assert report.totals is not None and report.totals["logged_in_seconds"] == 3600
    # by day: the 23-hour day holds all of it
    q = ReportQuery.from_settings(SETTINGS, since, until, "day")
    assert compute("workload", q, ReportData(states=states)).rows[0]["logged_in_seconds"] == 3600


def test_week_and_month_periods_cut_at_local_midnight() -> None:
    # October 2026 in Berlin: 2026-09-30T22:00Z .. 2026-10-31T23:00Z = 31 days + 1 hour.
    since = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)
    until = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    q = ReportQuery.from_settings(SETTINGS, since, until, "month")
    months = intervals(q)
    assert [m.label for m in months] == ["2026-10", "2026-11"]
    assert months[0].end - months[0].start == timedelta(days=31, hours=1)
    q = ReportQuery.from_settings(SETTINGS, SINCE, UNTIL, "week")
    (week,) = intervals(q)  # Sunday 25th belongs to the week starting Monday 19th: clipped
    assert (week.start, week.end, week.label) == (SINCE, UNTIL, "2026-10-19")


def test_query_validation() -> None:
    with pytest.raises(ValueError, match="period"):
        query("fortnight")
    with pytest.raises(ValueError, match="after"):
        ReportQuery(since=UNTIL, until=SINCE)
    with pytest.raises(ValueError, match="aware"):
        ReportQuery(since=datetime(2026, 1, 1), until=UNTIL)
    with pytest.raises(ValueError, match="time zone"):
        ReportQuery(since=SINCE, until=UNTIL, timezone="Mars/Olympus")


# -- the reports, whole day --------------------------------------------------------------------


def test_traffic_total() -> None:
    rows, totals = run("traffic")
    assert rows == [totals]  # one interval, "total"
    assert totals == {
        "period": "total",
        # first rows, inbound: rec-1,2,3,4,5,7,8,9 (rec-13 is the next day)
        "inbound": 8,
        # ANSWERED: rec-1, rec-2, rec-7 (by the IVR), rec-8
        "answered": 4,
        # not answered and the caller hung up: rec-3, rec-4, rec-9 (rec-5 ended by the system)
        "caller_hangups": 3,
        "answer_rate": 0.5,  # 4 / 8
        "outbound": 3,  # rec-6, rec-10, rec-11
        "outbound_answered": 2,  # rec-6, rec-10
        # talk of person-answered segments: 240 + 260 + 290 (rec-2b, via linked_id) + 300
        # + 180 + 60 = 1330 (rec-7's IVR and rec-1s's survey are not talk; rec-12 internal)
        "talk_seconds": 1330.0,
    }


def test_traffic_per_hour_splits_talk_and_counts_calls_at_start() -> None:
    rows, totals = run("traffic", "hour")
    h = by(rows, "period")
    # rec-1 talks 09:58..10:02Z: 120 s in 10:00 CET (09Z) and 120 s in 11:00 CET (10Z)
    assert h["2026-10-25T10:00+01:00"]["talk_seconds"] == 120
    assert h["2026-10-25T10:00+01:00"]["inbound"] == 1  # rec-1, counted where it started
    # 11:00 CET: rec-1's other 120 + rec-2 260 + rec-2b 290 = 670; calls rec-2, rec-3, rec-4
    assert h["2026-10-25T11:00+01:00"]["talk_seconds"] == 670
    assert h["2026-10-25T11:00+01:00"]["inbound"] == 3
    assert h["2026-10-25T11:00+01:00"]["answer_rate"] == approx(1 / 3, abs=1e-4)
    assert h["2026-10-25T00:00+02:00"]["answer_rate"] is None  # nothing: no rate
    assert totals["talk_seconds"] == 1330 and totals["inbound"] == 8


def test_talk_and_utilisation() -> None:
    _, totals = run("talk")
    # answered conversations started in range: rec-1, rec-2, rec-6, rec-8, rec-10 = 5
    assert totals["answered_calls"] == 5
    assert totals["answered_talk_seconds"] == 1330
    assert totals["average_talk_seconds"] == 266  # 1330 / 5
    assert totals["talk_seconds"] == 1330
    # a1: 09:00..13:00 = 14400; a2: 22:00Z..22:30Z (1800, logged in before the range)
    # + 10:00..14:00 (14400) = 16200; together 30600
    assert totals["logged_in_seconds"] == 30600
    # on call a1 240 + 310, a2 260 + 180 + 80 + 30 = 1100; wrap-up a1 30 + a2 60 = 90;
    # not ready a1 900 + a2 600 + 1800 = 3300
    assert totals["on_call_seconds"] == 1100
    assert totals["wrap_up_seconds"] == 90
    assert totals["not_ready_seconds"] == 3300
    assert totals["utilisation"] == approx(1100 / 30600, abs=1e-4)
    assert totals["occupancy"] == approx(1190 / 27300, abs=1e-4)  # (1100+90)/(30600-3300)


def test_talk_per_hour_splits_the_logged_in_time_at_the_range_start() -> None:
    rows, _ = run("talk", "hour")
    h = by(rows, "period")
    assert h["2026-10-25T00:00+02:00"]["logged_in_seconds"] == 1800  # a2 until 22:30Z
    assert h["2026-10-25T01:00+02:00"]["logged_in_seconds"] == 0
    # 10:00 CET = 09Z: a1 all hour (3600), a2 not yet
    assert h["2026-10-25T10:00+01:00"]["logged_in_seconds"] == 3600
    assert h["2026-10-25T10:00+01:00"]["on_call_seconds"] == 120  # 09:58..10:00Z


def test_agent_traffic() -> None:
    rows, totals = run("agent_traffic")
    a = by(rows, "agent")
    assert a["a1"] == {
        "agent": "a1",
        "offered": 2,  # CONNECT rec-1 + RINGNOANSWER rec-8
        "answered": 1,
        "no_answer": 1,
        "answer_ratio": 0.5,
        "transferred": 0,
        "completed_by_agent": 1,
        "completed_by_caller": 0,
        "callbacks_connected": 1,
        "outbound": 1,  # rec-6
        "calls_talked": 2,  # rec-1, rec-6
        "talk_seconds": 540.0,  # 240 + 300
        "average_talk_seconds": 270.0,
    }
    assert a["a2"] == {
        "agent": "a2",
        "offered": 2,
        "answered": 2,
        "no_answer": 0,
        "answer_ratio": 1.0,
        "transferred": 1,
        "completed_by_agent": 0,
        "completed_by_caller": 1,
        "callbacks_connected": 0,
        "outbound": 0,  # rec-10/11 were placed from 2002 without an agent id
        "calls_talked": 2,  # rec-2, rec-8
        "talk_seconds": 440.0,  # 260 + 180
        "average_talk_seconds": 220.0,
    }
    assert totals["offered"] == 4 and totals["answered"] == 3
    assert totals["answer_ratio"] == 0.75 and totals["talk_seconds"] == 980
    assert totals["average_talk_seconds"] == 245  # 980 / 4


def test_workload() -> None:
    rows, totals = run("workload")
    a = by(rows, "agent")
    assert a["a1"] == {
        "agent": "a1",
        "logged_in_seconds": 14400.0,
        # 09:00-09:57:50 3470 + 10:02:30-10:30 1650 + 10:45-11:20 2100
        # + 11:25:10-12:00:05 2095 + 12:00:10-13:00 3590 = 12905
        "idle_seconds": 12905.0,
        "ringing_seconds": 15.0,  # 10 + 5
        "on_call_seconds": 550.0,  # 240 + 310
        "wrap_up_seconds": 30.0,
        "not_ready_seconds": 900.0,
        "not_ready_count": 1,
        "break_seconds": 900.0,  # reason break
        "answered": 1,
        "talk_seconds": 540.0,
    }
    assert a["a2"] == {
        "agent": "a2",
        "logged_in_seconds": 16200.0,
        # 1800 + 635 + 6312 + 345 + 600 + 520 + 2970 = 13182
        "idle_seconds": 13182.0,
        "ringing_seconds": 8.0,  # 5 + 3
        "on_call_seconds": 550.0,  # 260 + 180 + 80 + 30
        "wrap_up_seconds": 60.0,
        "not_ready_seconds": 2400.0,  # busy 600 + lunch 1800
        "not_ready_count": 1,  # the change of reason busy -> lunch is not a new pause
        "break_seconds": 1800.0,  # lunch
        "answered": 2,
        "talk_seconds": 440.0,
    }
    assert totals["logged_in_seconds"] == 30600 and totals["not_ready_count"] == 2


def test_satisfaction() -> None:
    rows, totals = run("satisfaction")
    a = by(rows, "agent")
    assert a["a1"]["satisfied"] == 1 and a["a1"]["no_rating_entered"] == 1
    assert a["a1"]["not_offered"] == 0  # rec-1 surveyed; rec-6 is outbound
    assert a["a1"]["rated"] == 1 and a["a1"]["csat"] == 1.0
    assert a["a2"]["unsatisfied"] == 1 and a["a2"]["not_offered"] == 1  # rec-8
    assert a["a2"]["rated"] == 1 and a["a2"]["csat"] == 0.0
    assert totals == {
        "agent": "total",
        "satisfied": 1,
        "neutral": 0,
        "unsatisfied": 1,
        "hung_up_without_rating": 0,
        "invalid_key": 0,
        "no_rating_entered": 1,
        "not_offered": 1,
        "rated": 2,
        "csat": 0.5,  # 1 / 2
    }


def test_work_log() -> None:
    rows, totals = run("work_log")
    assert totals is None
    assert len(rows) == 29  # a2: 17 changes in range, a1: 12 (a2's 21:30Z login is before)
    first = rows[0]
    assert first == {
        "time": "2026-10-25T00:30:00+02:00",
        "agent": "a2",
        "old_state": "AVAILABLE",
        "new_state": "LOGGED_OUT",
        "event": "logout",
        "reason": "",
        "seconds": 41400.0,  # 22:30Z .. 10:00Z
    }
    assert rows[-1]["time"] == "2026-10-25T15:00:00+01:00"
    assert rows[-1]["seconds"] == 32400  # a2's logout 14:00Z .. until 23:00Z
    times = [r["time"] for r in rows]
    assert times == sorted(times, key=lambda x: datetime.fromisoformat(x))


def test_agent_summary() -> None:
    rows, _ = run("agent_summary")
    a = by(rows, "agent")
    assert a["a1"] == {
        "agent": "a1",
        "logged_in_seconds": 14400.0,
        "not_ready_seconds": 900.0,
        "answered": 1,
        "outbound": 1,
        "calls_talked": 2,
        "talk_seconds": 540.0,
        "acw_seconds": 30.0,
        "aht_seconds": 285.0,  # (540 + 0 hold + 30) / 2
        "occupancy": approx(580 / 13500, abs=1e-4),  # (550 + 30) / (14400 - 900)
        "rated": 1,
        "csat": 1.0,
    }
    assert a["a2"]["aht_seconds"] == 250  # (440 + 60) / 2
    assert a["a2"]["occupancy"] == approx(610 / 13800, abs=1e-4)
    assert a["a2"]["csat"] == 0.0


def test_hourly() -> None:
    rows, totals = run("hourly")
    assert len(rows) == 24
    h = by(rows, "hour")
    # local hours (CET after 01:00Z): rec-1 10, rec-2/3/4 11, rec-5/7 12, rec-8/9 13
    assert (h["10:00"]["inbound"], h["10:00"]["answered"], h["10:00"]["talk_seconds"]) == (
        1,
        1,
        120,
    )
    assert h["11:00"]["inbound"] == 3 and h["11:00"]["caller_hangups"] == 2
    assert h["11:00"]["answered"] == 1 and h["11:00"]["answer_rate"] == approx(1 / 3, abs=1e-4)
    assert h["12:00"]["answer_rate"] == 0.5  # rec-7 (IVR) of rec-5, rec-7
    assert h["02:00"]["inbound"] == 0 and h["02:00"]["answer_rate"] is None
    assert h["11:00"]["talk_seconds"] == 670  # 120 + 260 + 290
    assert h["11:00"]["queued"] == 3 and h["11:00"]["abandoned"] == 1  # rec-4 is short
    assert h["12:00"]["outbound"] == 1 and h["12:00"]["talk_seconds"] == 300
    assert h["13:00"]["queued"] == 3  # rec-8, rec-9 support and rec-9 sales
    assert h["14:00"]["outbound"] == 2 and h["14:00"]["talk_seconds"] == 60
    assert totals["inbound"] == 8 and totals["talk_seconds"] == 1330
    assert totals["queued"] == 8 and totals["abandoned"] == 2


def test_queue_stats() -> None:
    rows, totals = run("queue_stats")
    q = by(rows, "queue")
    assert q["sales"] == {
        "period": "total",
        "queue": "sales",
        "queued": 5,  # rec-1, rec-3, rec-4, rec-8, rec-9 (overflowed in)
        "answered": 2,  # rec-1 (hold 50), rec-8 (hold 10)
        "answered_in_sl": 1,  # 10 <= 20; 50 > 20
        "abandoned": 2,  # rec-3 (50), rec-9 (60)
        "short_abandons": 1,  # rec-4 (3 <= 5)
        "timed_out": 0,
        "exited_by_key": 0,
        "exited_empty": 0,
        "callbacks": 0,
        "ended": 5,
        "total_wait_seconds": 173.0,  # 50 + 50 + 3 + 10 + 60
        "answered_wait_seconds": 60.0,
        "asa_seconds": 30.0,  # 60 / 2
        "average_wait_seconds": 34.6,  # 173 / 5
        "abandon_rate": 0.5,  # 2 / (5 - 1)
        "service_level": 0.25,  # 1 / (2 + 2)
    }
    assert q["support"] == {
        "period": "total",
        "queue": "support",
        "queued": 3,  # rec-2, rec-5, rec-9
        "answered": 1,
        "answered_in_sl": 0,  # 35 > 30
        "abandoned": 0,
        "short_abandons": 0,
        "timed_out": 1,
        "exited_by_key": 0,
        "exited_empty": 0,
        "callbacks": 1,
        "ended": 3,
        "total_wait_seconds": 205.0,  # 35 + 50 + 120
        "answered_wait_seconds": 35.0,
        "asa_seconds": 35.0,
        "average_wait_seconds": approx(68.3333, abs=1e-3),  # 205 / 3
        "abandon_rate": 0.0,  # 0 / 3
        "service_level": 0.0,  # 0 / 1
    }
    assert totals["queued"] == 8 and totals["queue"] == ""
    assert totals["asa_seconds"] == approx(95 / 3, abs=1e-3)
    assert totals["average_wait_seconds"] == 47.25  # 378 / 8
    assert totals["abandon_rate"] == approx(2 / 7, abs=1e-4)
    assert totals["service_level"] == 0.2  # 1 / (3 + 2)


def test_call_loss() -> None:
    _, totals = run("call_loss")
    assert totals == {
        "period": "total",
        "ivr_hangups": 1,  # rec-7
        "queue_hangups": 2,  # rec-3, rec-9 in sales
        "short_abandons": 1,  # rec-4
        "lost": 4,
        "overflows": 1,  # rec-9 timed out of support
        "agent_no_answer": 1,  # a1 let rec-8 ring
    }


def test_outbound() -> None:
    rows, totals = run("outbound")
    assert rows == [
        {
            "agent": "",
            "trunk": "carrier",
            "placed": 2,  # rec-10, rec-11
            "callbacks": 0,
            "answered": 1,
            "answer_rate": 0.5,
            "talk_seconds": 60.0,
            "average_talk_seconds": 60.0,
        },
        {
            "agent": "a1",
            "trunk": "carrier",
            "placed": 1,  # rec-6, the callback
            "callbacks": 1,
            "answered": 1,
            "answer_rate": 1.0,
            "talk_seconds": 300.0,
            "average_talk_seconds": 300.0,
        },
    ]
    assert totals["placed"] == 3 and totals["answer_rate"] == approx(2 / 3, abs=1e-4)
    assert totals["average_talk_seconds"] == 180  # 360 / 2


def test_kpis() -> None:
    rows, k = run("kpis")
    assert rows == [k]  # one interval, "total"
    assert k == {
        "period": "total",
        "queued": 8,
        "answered": 3,
        "answered_in_sl": 1,
        "abandoned": 2,
        "short_abandons": 1,
        "service_level": 0.2,  # 1 / (3 + 2)
        "asa_seconds": approx(95 / 3, abs=1e-3),  # (50 + 10 + 35) / 3
        "abandon_rate": approx(2 / 7, abs=1e-4),  # 2 / (8 - 1)
        "handled": 3,
        "talk_seconds": 680.0,
        "acw_seconds": 90.0,
        "aht_seconds": approx(770 / 3, abs=1e-3),
        "average_acw_seconds": 30.0,
        "logged_in_seconds": 30600.0,
        "not_ready_seconds": 3300.0,
        "on_call_seconds": 1100.0,
        "occupancy": approx(1190 / 27300, abs=1e-4),
        "fcr_contacts": 3,
        "fcr_resolved": 1,
        "fcr": approx(1 / 3, abs=1e-4),
        "satisfied": 1,
        "rated": 2,
        "csat": 0.5,
    }
    assert k["service_level"] == 0.2 and k["asa_seconds"] == approx(95 / 3, abs=1e-3)
    assert k["abandon_rate"] == approx(2 / 7, abs=1e-4) and k["short_abandons"] == 1
    # handled inbound agent segments: rec-1 240, rec-2 260, rec-8 180
    assert k["handled"] == 3 and k["talk_seconds"] == 680
    assert k["acw_seconds"] == 90
    assert k["aht_seconds"] == approx(770 / 3, abs=1e-3)  # (680 + 0 + 90) / 3
    assert k["average_acw_seconds"] == 30
    assert k["occupancy"] == approx(1190 / 27300, abs=1e-4)
    # contacts an agent took: rec-1 (0301111 again at 12:00: no), rec-2 (0302222 again the
    # next day within 24 h: no), rec-8 (nobody again: yes)
    assert (k["fcr_contacts"], k["fcr_resolved"]) == (3, 1)
    assert k["fcr"] == approx(1 / 3, abs=1e-4)
    assert (k["satisfied"], k["rated"], k["csat"]) == (1, 2, 0.5)


# -- filters -----------------------------------------------------------------------------------


def test_queue_filter() -> None:
    _, totals = run("traffic", queue="sales")
    # inbound roots in sales: rec-1, rec-3, rec-4, rec-8, rec-9; answered rec-1, rec-8
    assert (totals["inbound"], totals["answered"], totals["caller_hangups"]) == (5, 2, 3)
    assert totals["talk_seconds"] == 420  # 240 + 180
    rows, _ = run("queue_stats", queue="support")
    assert [r["queue"] for r in rows] == ["support"]
    _, totals = run("traffic", queue="support")
    # support: rec-2 (+ rec-2b through linked_id) and rec-5; rec-6 is the callback
    assert (totals["inbound"], totals["outbound"]) == (2, 1)
    assert totals["talk_seconds"] == 850  # 260 + 290 + 300


def test_agent_and_skill_filters() -> None:
    rows, _ = run("workload", agent="a1")
    assert [r["agent"] for r in rows] == ["a1"]
    rows, _ = run("agent_summary", skill="german")  # only a2 has it
    assert [r["agent"] for r in rows] == ["a2"]
    _, totals = run("traffic", agent="a2")
    # conversations a2 took part in: rec-2, rec-8
    assert (totals["inbound"], totals["answered"]) == (2, 2)
    assert totals["talk_seconds"] == 440  # rec-2b has no agent: not a2's talk


def test_trunk_filter() -> None:
    _, totals = run("outbound", trunk="carrier")
    assert totals["placed"] == 3
    _, totals = run("traffic", trunk="carrier")
    assert (totals["inbound"], totals["outbound"]) == (0, 3)
    rows, _ = run("queue_stats", trunk="other")
    assert rows == []


def test_open_states_end_at_now() -> None:
    # the range runs until 23:00Z but the clock says 13:30Z: a2 (logged in until 14:00)
    # is counted up to 13:30 only: 16200 - 1800 = 14400
    rows, _ = run("workload", agent="a2", now=t("13:30:00"))
    assert rows[0]["logged_in_seconds"] == 14400


# -- files -------------------------------------------------------------------------------------


def test_csv() -> None:
    report = compute("queue_stats", query(), DATA)
    lines = to_csv(report).decode().splitlines()
    assert lines[0].startswith("Period,Queue,Queued,Answered")
    assert lines[1].startswith("total,sales,5,2,1,2,1,")
    assert lines[-1].startswith("total,,8,3,1,2,1,")


def test_xlsx_has_the_numbers_and_a_chart() -> None:
    import openpyxl

    data = to_xlsx([compute("queue_stats", query(), DATA), compute("traffic", query(), DATA)])
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["queue_stats", "traffic"]
    sheet = book["queue_stats"]
    assert sheet["A1"].value == "Queue statistics"
    header = [c.value for c in sheet[3]]
    assert header[:4] == ["Period", "Queue", "Queued", "Answered"]
    sales = [c.value for c in sheet[4]]
    assert sales[:6] == ["total", "sales", 5, 2, 1, 2]
    assert sales[header.index("Service level")] == 0.25
    assert [c.value for c in sheet[6]][2] == 8  # totals row
    assert len(sheet._charts) == 1  # openpyxl keeps the charts it read here
    assert len(book["traffic"]._charts) == 1


def test_png_chart() -> None:
    data = to_png(compute("hourly", query(), DATA))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_every_report_computes_on_no_data_and_renders() -> None:
    for name in REPORTS:
        report = compute(name, query("hour"), ReportData())
        assert report.name == name
        assert to_csv(report)
        assert to_png(report).startswith(b"\x89PNG")


# -- through the store (SQLite and PostgreSQL) -------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        await s.add_call_records(RECORDS)
        await s.add_acd_log(EVENTS, STATES)
        for survey in SURVEYS:
            await s.add_survey_result(survey)
        yield s
    finally:
        await s.close()


async def test_reports_from_the_store(store: Store) -> None:
    q = query()
    data = await fetch(store, q)
    # the next day's rec-13 is read (first-contact resolution), the 21:30Z login too
    assert {r.record_id for r in data.records} == {r.record_id for r in RECORDS}
    assert len(data.states) == len(STATES)
    assert len(data.events) == len(EVENTS)
    for name in REPORTS:
        assert (await run_report(store, name, q)).as_json() == compute(name, q, DATA).as_json()
    kpis = await run_report(store, "kpis", q)
    assert kpis.totals is not None and kpis.totals["fcr_resolved"] == 1


async def test_store_reads_only_the_range(store: Store) -> None:
    since, until = t("10:00:00"), t("11:00:00")
    states = await store.agent_states_between(since, until)
    # each agent's last change before 10:00 (a2's logout the day before, a1 09:58 ON_CALL),
    # then the changes in range (a2's 10:00 login among them)
    assert states[:3] == [STATES[1], STATES[4], STATES[5]]
    assert all(s.time < until for s in states)
    records = await store.call_records_overlapping(since, until)
    # rec-1 started before 10:00 but was still talking
    assert [r.record_id for r in records][:1] == ["rec-1"]
    assert "rec-5" not in {r.record_id for r in records}
    events = await store.list_queue_events(since=since, until=until)
    assert all(since <= e.time < until for e in events)
    surveys = await store.survey_results_between(since, until)
    assert [s.record_id for s in surveys] == ["rec-1", "rec-2"]


# -- the API -----------------------------------------------------------------------------------


class FakeOps:
    """The one operation the report routes use (and the version the app is titled with)."""

    version = "test"

    def report_settings(self) -> ReportSettings:
        return SETTINGS


@pytest.fixture
async def api(tmp_path: Any) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """An ASGI client of the app on a seeded SQLite store, and a bearer token per role."""
    import httpx

    from config import HttpConfig
    from web.app import create_app
    from web.auth import Authenticator
    from web.services import Services

    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await s.add_call_records(RECORDS)
    await s.add_acd_log(EVENTS, STATES)
    for survey in SURVEYS:
        await s.add_survey_result(survey)
    tokens: dict[str, str] = {}
    for user, role, agent in (
        ("sue", "supervisor", None),
        ("quinn", "qa", None),
        ("amy", "agent", "a1"),
        ("nobody", "agent", None),
    ):
        await s.add_user(user, role, "password-123", agent)
        tokens[user] = (await s.create_token(user))[1]
    auth = Authenticator(s, "local-token", b"k" * 32, 60)
    none: Any = None
    services = Services(s, none, none, none, FakeOps(), none, auth, HttpConfig())  # type: ignore[arg-type]
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, tokens
    finally:
        await s.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


DAY = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}


async def test_api_lists_reports_by_role(api: tuple[Any, dict[str, str]]) -> None:
    client, tokens = api
    r = await client.get("/api/reports", headers=bearer(tokens["sue"]))
    assert r.status_code == 200
    assert [i["name"] for i in r.json()["items"]] == list(REPORTS)
    r = await client.get("/api/reports", headers=bearer(tokens["amy"]))
    assert [i["name"] for i in r.json()["items"]] == ["workload", "work_log", "agent_summary"]
    assert (await client.get("/api/reports")).status_code == 401


async def test_api_report_json_matches_the_computation(api: tuple[Any, dict[str, str]]) -> None:
    client, tokens = api
    r = await client.get("/api/reports/queue_stats", params=DAY, headers=bearer(tokens["quinn"]))
    assert r.status_code == 200
    body = r.json()
    assert body["totals"]["service_level"] == 0.2 and body["totals"]["queued"] == 8
    assert body["query"]["timezone"] == BERLIN and body["query"]["period"] == "total"
    assert [c["key"] for c in body["columns"]][:3] == ["period", "queue", "queued"]
    r = await client.get(
        "/api/reports/traffic",
        params={**DAY, "period": "hour", "queue": "sales"},
        headers=bearer(tokens["sue"]),
    )
    assert len(r.json()["rows"]) == 25 and r.json()["totals"]["inbound"] == 5


async def test_api_agent_gets_only_their_own_agent_reports(
    api: tuple[Any, dict[str, str]],
) -> None:
    client, tokens = api
    amy = bearer(tokens["amy"])
    r = await client.get("/api/reports/workload", params={**DAY, "agent": "a2"}, headers=amy)
    assert r.status_code == 200
    assert [row["agent"] for row in r.json()["rows"]] == ["a1"]  # forced to herself
    assert r.json()["query"]["agent"] == "a1"
    r = await client.get("/api/reports/queue_stats", params=DAY, headers=amy)
    assert r.status_code == 403
    r = await client.get("/api/reports/workload", params=DAY, headers=bearer(tokens["nobody"]))
    assert r.status_code == 403


async def test_api_report_errors(api: tuple[Any, dict[str, str]]) -> None:
    client, tokens = api
    sue = bearer(tokens["sue"])
    assert (await client.get("/api/reports/nope", headers=sue)).status_code == 404
    r = await client.get("/api/reports/traffic", params={**DAY, "period": "decade"}, headers=sue)
    assert r.status_code == 422
    r = await client.get(
        "/api/reports/traffic", params={"since": DAY["until"], "until": DAY["since"]}, headers=sue
    )
    assert r.status_code == 400 and "after" in r.json()["error"]
    r = await client.get(
        "/api/reports/traffic",
        params={"since": "2000-01-01T00:00Z", "until": "2026-01-01T00:00Z", "period": "15min"},
        headers=sue,
    )
    assert r.status_code == 400 and "intervals" in r.json()["error"]
    # years at once would stall the loop calls run on: at most 400 days (93 for an agent)
    decade = {"since": "2016-01-01T00:00Z", "until": "2026-01-01T00:00Z", "period": "total"}
    r = await client.get("/api/reports/traffic", params=decade, headers=sue)
    assert r.status_code == 400 and "at most 400 days" in r.json()["error"]
    half_year = {"since": "2026-01-01T00:00Z", "until": "2026-07-01T00:00Z"}
    r = await client.get("/api/reports/workload", params=half_year, headers=bearer(tokens["amy"]))
    assert r.status_code == 400 and "93 days for an agent" in r.json()["error"]
    # no range: today in the report zone
    r = await client.get("/api/reports/traffic", headers=sue)
    assert r.status_code == 200 and r.json()["rows"][0]["period"] == "total"


async def test_api_report_files(api: tuple[Any, dict[str, str]]) -> None:
    import openpyxl

    client, tokens = api
    sue = bearer(tokens["sue"])
    r = await client.get("/api/reports/queue_stats", params={**DAY, "format": "csv"}, headers=sue)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="queue_stats-20261025.csv"' in r.headers["content-disposition"]
    assert r.text.splitlines()[-1].startswith("total,,8,3,1,2,1,")
    r = await client.get("/api/reports/kpis", params={**DAY, "format": "xlsx"}, headers=sue)
    sheet = openpyxl.load_workbook(io.BytesIO(r.content))["kpis"]
    header = [c.value for c in sheet[3]]
    assert [c.value for c in sheet[4]][header.index("FCR")] == approx(1 / 3, abs=1e-4)
    assert len(sheet._charts) == 1
    r = await client.get("/api/reports/hourly", params={**DAY, "format": "png"}, headers=sue)
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n") and len(r.content) > 10_000


def test_report_settings_from_config() -> None:
    from app.settings import report_settings_from_config
    from config import SwitchboardConfig

    cfg = SwitchboardConfig.model_validate(
        {
            "extensions": {"2001": {"password": "secret-2001"}},
            "agents": {"a1": {"extensions": ["2001"], "skills": {"english": 80}}},
            "queues": {"sales": {"members": ["a1"], "service_level": 15}},
            "reports": {"timezone": BERLIN, "short_abandon_seconds": 3, "first_contact_hours": 48},
        }
    )
    settings = report_settings_from_config(cfg)
    assert settings == ReportSettings(
        timezone=BERLIN,
        short_abandon_seconds=3.0,
        first_contact_hours=48.0,
        service_levels={"sales": 15.0},
        agent_skills={"a1": frozenset({"english"})},
    )


# -- the CLI (FakeServer, as tests/unit/test_cli_client.py) -------------------------------------


@pytest.fixture
def cli_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    import httpx

    import cli.client
    from tests.unit.test_cli_client import FakeServer

    fake = FakeServer()
    monkeypatch.setattr(cli.client, "transport", httpx.MockTransport(fake))
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)
    (tmp_path / "switchboard.yaml").write_text("{}\n")
    (tmp_path / "admin.token").write_text("tok\n")
    return fake, tmp_path


def cli(folder: Any, *args: str) -> Any:
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, [*args, "--config", str(folder)])


def test_cli_report_list(cli_server: Any) -> None:
    fake, folder = cli_server
    items = [
        {"name": n, "title": s.title, "agent_scoped": s.agent_scoped} for n, s in REPORTS.items()
    ]
    fake.routes[("GET", "/api/reports")] = (
        200,
        {"items": items, "total": len(items), "page": 1, "per_page": 500},
    )
    result = cli(folder, "report", "list")
    assert result.exit_code == 0, result.output
    assert "queue_stats" in result.stdout and "Queue statistics" in result.stdout
    assert fake.last.headers["authorization"] == "Bearer tok"


def test_cli_report_show_prints_the_table(cli_server: Any) -> None:
    fake, folder = cli_server
    body = compute("queue_stats", query(), DATA).as_json()
    body["query"] = {"since": "2026-10-24T22:00:00+00:00", "until": "x", "timezone": BERLIN}
    fake.routes[("GET", "/api/reports/queue_stats")] = (200, body)
    result = cli(
        folder, "report", "show", "queue_stats", "--since", "2026-10-25", "--queue", "sales"
    )
    assert result.exit_code == 0, result.output
    assert fake.last.url.params["since"] == "2026-10-25"
    assert fake.last.url.params["queue"] == "sales"
    assert fake.last.url.params["period"] == "total"
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Queue statistics: 2026-10-24T22:00:00+00:00")
    sales = next(line for line in lines if " sales " in f" {line} ")
    # service level 25.0%, ASA 30 s
    assert "25.0%" in sales and " 30 " in f" {sales} "
    assert any(line.startswith("total") and "20.0%" in line for line in lines)
    result = cli(folder, "report", "show", "queue_stats", "--json")
    import json

    assert json.loads(result.stdout)["totals"]["queued"] == 8


def test_cli_report_export_writes_the_file(cli_server: Any) -> None:
    import httpx

    fake, folder = cli_server
    png = to_png(compute("hourly", query(), DATA))
    fake.routes[("GET", "/api/reports/hourly")] = httpx.Response(
        200, content=png, headers={"content-type": "image/png"}
    )
    out = folder / "hourly.png"
    result = cli(folder, "report", "export", "hourly", "--format", "png", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert fake.last.url.params["format"] == "png"
    assert out.read_bytes() == png
    fake.routes[("GET", "/api/reports/queue_stats")] = (403, {"error": "needs role qa"})
    result = cli(folder, "report", "export", "queue_stats", "-o", str(folder / "x.csv"))
    assert result.exit_code == 3 and "needs role qa" in result.stderr
    assert not (folder / "x.csv").exists()


async def test_api_all_reports_as_one_workbook(api: tuple[Any, dict[str, str]]) -> None:
    import openpyxl

    client, tokens = api
    r = await client.get(
        "/api/reports/all", params={**DAY, "format": "xlsx"}, headers=bearer(tokens["sue"])
    )
    assert r.status_code == 200
    assert 'filename="all-20261025.xlsx"' in r.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == list(REPORTS)
    assert [c.value for c in book["queue_stats"][6]][2] == 8  # the totals row's queued
    amy = bearer(tokens["amy"])
    r = await client.get("/api/reports/all", params={**DAY, "format": "xlsx"}, headers=amy)
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["workload", "work_log", "agent_summary"]
    assert [c.value for c in book["workload"][4]][:2] == ["a1", 14400]
    r = await client.get("/api/reports/all", params=DAY, headers=amy)
    assert r.status_code == 400

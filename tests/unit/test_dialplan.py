"""Dialplan routing tables: blacklist first, DID vs caller precedence, regions, defaults,
internal/outbound dialling with strip/prepend, time conditions."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pbx.dialplan import (
    Blacklist,
    BlacklistEntry,
    Destination,
    DestinationKind,
    Dialplan,
    DialRule,
    InboundRoute,
    RegionTable,
    RouteDecision,
    TimeConditionRoute,
)
from pbx.timecond import Holiday, TimeCondition, WeeklyRange

K = DestinationKind
OPEN = datetime(2025, 6, 2, 10, tzinfo=UTC)  # Monday 10:00 UTC
CLOSED = datetime(2025, 6, 7, 10, tzinfo=UTC)  # Saturday
HOLIDAY = datetime(2025, 12, 25, 10, tzinfo=UTC)  # a Thursday


def q(name: str) -> Destination:
    return Destination(K.QUEUE, name)


def plan() -> Dialplan:
    office = TimeCondition(
        "UTC",
        [WeeklyRange.parse("mon-fri", "09:00-18:00")],
        [Holiday.parse("12-25", name="Christmas")],
    )
    return Dialplan(
        blacklist=Blacklist(
            [
                BlacklistEntry(Destination(K.HANGUP, status=603), number="+15550000"),
                BlacklistEntry(Destination(K.PLAY_HANGUP, prompt="blocked"), prefix="+1900"),
                BlacklistEntry(Destination(K.HANGUP, status=403), prefix="+19001"),
            ]
        ),
        inbound=[
            InboundRoute(q("caller-only"), caller_prefix="+44"),
            InboundRoute(q("pattern"), did="_40XX"),
            InboundRoute(q("exact"), did="4000"),
            InboundRoute(q("exact+caller"), did="4000", caller_prefix="+4420"),
            InboundRoute(q("exact+longer-caller"), did="4000", caller_prefix="+44207"),
            InboundRoute(Destination(K.TIME_CONDITION, "office"), did="5000", name="main"),
            InboundRoute(q("longer-caller"), caller_prefix="+4420"),
        ],
        regions=RegionTable({"+86": "china", "+8610": "beijing", "+1": "na"}),
        time_conditions={
            "office": TimeConditionRoute(office, q("sales"), Destination(K.VOICEMAIL, "1001")),
            "nested": TimeConditionRoute(
                office, Destination(K.TIME_CONDITION, "office"), Destination(K.HANGUP, status=480)
            ),
        },
        internal=[
            DialRule("_1XXX", Destination(K.EXTENSION)),
            DialRule("_7XXX", Destination(K.VOICEMAIL), strip=1, prepend="1"),
            DialRule("1999", Destination(K.IVR, "staff")),
            DialRule("1001", Destination(K.TIME_CONDITION, "office")),
            DialRule("_*98.", Destination(K.VOICEMAIL), strip=3),
        ],
        outbound=[
            DialRule("_9NXXXXXX", Destination(K.OUTBOUND, "local"), strip=1),
            DialRule("_00.", Destination(K.OUTBOUND, "intl"), strip=2, prepend="+"),
            DialRule("re:^0[1-9]\\d{9}$", Destination(K.OUTBOUND, "national")),
        ],
        extensions=["1001", "1002", "2001"],
        conferences=["8000"],
    )


@pytest.mark.parametrize(
    ("did", "caller", "target", "trail"),
    [
        # Blacklist before anything, even before a matching DID route.
        ("4000", "+15550000", "", ("blacklist number=+15550000",)),
        ("4000", "+19001234", "", ("blacklist prefix=+19001",)),  # longest prefix
        ("4000", "+19009999", "", ("blacklist prefix=+1900",)),
        # DID routes: exact + longest caller > exact + caller > exact > pattern > caller-only.
        ("4000", "+442071234", "exact+longer-caller", ("inbound[4] did=4000 caller=+44207",)),
        ("4000", "+442081234", "exact+caller", ("inbound[3] did=4000 caller=+4420",)),
        ("4000", "+861234", "exact", ("inbound[2] did=4000",)),
        ("4001", "+442071234", "pattern", ("inbound[1] did=_40XX",)),
        # No DID route: the longest caller prefix.
        ("6000", "+442071234", "longer-caller", ("inbound[6] caller=+4420",)),
        ("6000", "+443000", "caller-only", ("inbound[0] caller=+44",)),
        # Region table, longest prefix, after routes.
        ("6000", "+8610555", "beijing", ("region prefix=+8610 queue=beijing",)),
        ("6000", "+8621555", "china", ("region prefix=+86 queue=china",)),
        ("6000", "+1555", "na", ("region prefix=+1 queue=na",)),
    ],
)
def test_route_inbound_precedence(
    did: str, caller: str, target: str, trail: tuple[str, ...]
) -> None:
    decision = plan().route_inbound(did, caller, OPEN)
    assert decision.trail == trail
    assert decision.destination.target == target
    assert decision.number == did


def test_blacklist_actions() -> None:
    p = plan()
    assert p.route_inbound("4000", "+15550000", OPEN).destination == Destination(
        K.HANGUP, status=603
    )
    assert p.route_inbound("4000", "+19009", OPEN).destination == Destination(
        K.PLAY_HANGUP, prompt="blocked"
    )
    # A prefix longer than the caller does not match.
    assert p.route_inbound("4000", "+1900", OPEN).destination.kind == K.PLAY_HANGUP
    assert p.route_inbound("4000", "+190", OPEN).destination.target == "exact"


def test_inbound_default_is_404_unless_configured() -> None:
    decision = plan().route_inbound("6000", "+3312", OPEN)
    assert decision == RouteDecision(
        Destination(K.HANGUP, status=404), "6000", ("inbound default",)
    )
    custom = Dialplan(default=Destination(K.IVR, "main"))
    assert custom.route_inbound("1", "2", OPEN).destination == Destination(K.IVR, "main")


def test_time_condition_open_closed_and_holiday() -> None:
    p = plan()
    opened = p.route_inbound("5000", "+3312", OPEN)
    assert opened.destination == q("sales")
    assert opened.trail == ("inbound[5] name=main did=5000", "time_condition office=open")
    closed = p.route_inbound("5000", "+3312", CLOSED)
    assert closed.destination == Destination(K.VOICEMAIL, "1001")
    assert closed.trail[-1] == "time_condition office=closed"
    holiday = p.route_inbound("5000", "+3312", HOLIDAY)
    assert holiday.destination == Destination(K.VOICEMAIL, "1001")
    assert holiday.trail[-1] == "time_condition office=closed holiday=Christmas"


def test_nested_time_conditions_and_loops() -> None:
    p = Dialplan(
        default=Destination(K.TIME_CONDITION, "nested"),
        time_conditions=plan().time_conditions,
    )
    assert p.route_inbound("1", "2", OPEN).trail == (
        "inbound default",
        "time_condition nested=open",
        "time_condition office=open",
    )
    always = TimeCondition("UTC")
    loop = Dialplan(
        default=Destination(K.TIME_CONDITION, "a"),
        time_conditions={
            "a": TimeConditionRoute(always, Destination(K.TIME_CONDITION, "b"), q("x")),
            "b": TimeConditionRoute(always, Destination(K.TIME_CONDITION, "a"), q("x")),
        },
    )
    decision = loop.route_inbound("1", "2", OPEN)
    assert decision.destination == Destination(K.HANGUP, status=500)
    assert decision.trail[-1] == "time_condition loop"


def test_unknown_time_condition_is_refused_at_build() -> None:
    with pytest.raises(ValueError, match="unknown time condition 'nope'"):
        Dialplan(default=Destination(K.TIME_CONDITION, "nope"))


@pytest.mark.parametrize(
    ("dialled", "kind", "target", "number", "trail"),
    [
        ("1002", K.EXTENSION, "1002", "1002", ("extension 1002",)),
        ("2001", K.EXTENSION, "2001", "2001", ("extension 2001",)),  # implicit exact rule
        ("1500", K.EXTENSION, "1500", "1500", ("internal[0] pattern=_1XXX",)),
        ("1999", K.IVR, "staff", "1999", ("internal[2] pattern=1999",)),  # exact beats _1XXX
        ("7002", K.VOICEMAIL, "1002", "1002", ("internal[1] pattern=_7XXX rewrite=1002",)),
        ("*981002", K.VOICEMAIL, "1002", "1002", ("internal[4] pattern=_*98. rewrite=1002",)),
        ("8000", K.CONFERENCE, "8000", "8000", ("conference 8000",)),
        (
            "92345678",
            K.OUTBOUND,
            "local",
            "2345678",
            ("outbound[0] pattern=_9NXXXXXX rewrite=2345678",),
        ),
        ("0044207", K.OUTBOUND, "intl", "+44207", ("outbound[1] pattern=_00. rewrite=+44207",)),
        (
            "01012345678",
            K.OUTBOUND,
            "national",
            "01012345678",
            ("outbound[2] pattern=re:^0[1-9]\\d{9}$",),
        ),
        ("555", K.HANGUP, "", "555", ("internal default",)),
        ("91345678", K.HANGUP, "", "91345678", ("internal default",)),  # N is 2-9
    ],
)
def test_route_internal(
    dialled: str, kind: DestinationKind, target: str, number: str, trail: tuple[str, ...]
) -> None:
    decision = plan().route_internal(dialled, "1002", OPEN)
    assert (decision.destination.kind, decision.destination.target) == (kind, target)
    assert decision.number == number
    assert decision.trail == trail


def test_explicit_rule_overrides_extension_number() -> None:
    p = plan()  # 1001 is an extension, but an explicit rule sends it through a time condition
    assert p.route_internal("1001", "1002", OPEN).destination == q("sales")
    closed = p.route_internal("1001", "1002", CLOSED)
    assert closed.destination == Destination(K.VOICEMAIL, "1001")
    assert closed.trail == ("internal[3] pattern=1001", "time_condition office=closed")


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="strip 4 removes more than the 3"):
        DialRule("_00.", Destination(K.OUTBOUND), strip=4)
    with pytest.raises(ValueError, match="is not a number"):
        DialRule("9XX", Destination(K.OUTBOUND))
    with pytest.raises(ValueError, match=re.escape("duplicate dial pattern '_9.'")):
        Dialplan(
            internal=[DialRule("_9.", Destination(K.EXTENSION))],
            outbound=[DialRule("_9.", Destination(K.OUTBOUND))],
        )
    with pytest.raises(ValueError, match="needs a did, a caller prefix"):
        InboundRoute(q("x"))
    with pytest.raises(ValueError, match="duplicate blacklist entry"):
        Blacklist([BlacklistEntry(q("x"), prefix="+1"), BlacklistEntry(q("y"), prefix="+1")])
    with pytest.raises(ValueError, match="exactly one of number and prefix"):
        Blacklist([BlacklistEntry(q("x"), number="1", prefix="+1")])


def test_decisions_are_frozen_and_deterministic() -> None:
    a = plan().route_inbound("4000", "+442071234", OPEN)
    b = plan().route_inbound("4000", "+442071234", OPEN)
    assert a == b
    with pytest.raises(AttributeError):
        a.number = "x"  # type: ignore[misc]

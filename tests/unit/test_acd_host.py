"""acd.host: the ACD carried out on calls through a fake call-control seam (no sockets).

The test plays the SIP side with :class:`FakeCallControl` — a caller reaching a queue, an
agent dialling ``*45``, a phone answering an offer — and checks the commands the host gives
(``commands``), the ACD's state (``host.acd``) and the queue log the host writes. The host's
clock (``time.time`` in :mod:`acd.host`) is a fake that only moves when a test advances it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import structlog

import acd
import acd.host
from acd import AgentConfig, AgentState, QueueConfig, Strategy, WrapUpMode
from acd.host import AcdHost, AcdSettings, OfferEnded, OfferMade
from crm import AgentStateData, CustomerData, QueueEventData, Store
from pbx.events import CallArrived, LegAnswered
from tests.unit.fake_control import FakeCallControl

ALICE, BOB = "1001", "1002"  # the agents' phones
SUPERVISOR = "1009"
COLLEAGUE = "1005"  # an extension that is nobody's agent
CUSTOMER = "5550100"
MUSIC = "/music/support-jazz.wav"
Logs = list[MutableMapping[str, Any]]  # structlog entries


class Clock:
    """Stands in for the ``time`` module in :mod:`acd.host`."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(acd.host, "time", fake)
    return fake


@pytest.fixture
def logs() -> Iterator[Logs]:
    """What the host logs. The event bus logs and swallows a subscriber's exception, so a
    test that passed while the host raised would prove nothing: errors fail the test."""
    with structlog.testing.capture_logs() as entries:
        yield entries
    errors = [e for e in entries if e["log_level"] in ("error", "critical")]
    assert not errors, errors


def queue_log(logs: Logs) -> list[tuple[str, str, str]]:
    """(event, call, agent) of every queue event the host logged, in order."""
    return [(e["kind"], e["call"], e["agent"]) for e in logs if e["event"] == "queue_event"]


def queue_line(logs: Logs, kind: str) -> list[str]:
    """The ``queue_log`` fields of the one event of ``kind``: time|call|queue|agent|event|data."""
    (line,) = [e["line"] for e in logs if e["event"] == "queue_event" and e["kind"] == kind]
    return str(line).split("|")


def settings(config_dir: Path, **queue: Any) -> AcdSettings:
    """Alice and Bob serve ``support``; a missed offer goes to the next agent at once."""
    return AcdSettings(
        agents=[AgentConfig("alice", extensions=(ALICE,)), AgentConfig("bob", extensions=(BOB,))],
        queues=[QueueConfig("support", retry_delay=0.0, **queue)],
        config_dir=config_dir,
        supervisors=frozenset({SUPERVISOR}),
        queue_music={"support": [MUSIC]},
    )


@pytest.fixture
def control() -> FakeCallControl:
    return FakeCallControl(extensions=[ALICE, BOB, SUPERVISOR, COLLEAGUE, CUSTOMER])


def make_host(
    control: FakeCallControl, config_dir: Path, store: Store | None = None, **queue: Any
) -> AcdHost:
    return AcdHost(cast(Any, control), store, settings(config_dir, **queue))


@pytest.fixture
def host(control: FakeCallControl, tmp_path: Path, clock: Clock, logs: list[Any]) -> AcdHost:
    return make_host(control, tmp_path)


@pytest.fixture
def host_factory(
    control: FakeCallControl, tmp_path: Path, clock: Clock, logs: list[Any]
) -> Callable[..., AcdHost]:
    """A host whose ``support`` queue has the given settings."""
    return lambda **queue: make_host(control, tmp_path, **queue)


async def settle() -> None:
    """Let what the seam and the host scheduled for the next loop turns run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for work off the loop (a store commit, a file written in a thread)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def log_in(control: FakeCallControl, phone: str) -> str:
    """The agent at ``phone`` dials *45 and hears the confirmation beep."""
    code_call = control.dial_code(phone, "*45")
    await until(lambda: ("answer_with_tone", code_call, "beep") in control.commands)
    await settle()  # the beep plays, the code's call ends
    return code_call


def state(host: AcdHost, agent: str) -> AgentState:
    return host.agent_states()[agent][0]


# --- a queue call from arrival to hang-up --------------------------------------------------------


async def test_caller_hears_queue_music_until_an_agent_logs_in_and_answers(
    control: FakeCallControl, host: AcdHost, clock: Clock, logs: Logs
) -> None:
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.commands == [("music_on_hold", call, [MUSIC])]
    assert host.acd.is_waiting(call)
    # The call's record names the queue, the queue log's id and when the wait began.
    joined = datetime.fromtimestamp(clock.now, UTC)
    assert control.notes[call] == {"queue": "support", "queued_at": joined, "queue_call_id": call}

    login = await log_in(control, ALICE)
    # The agent's phone rings with the caller; the confirmation beep's own short call does
    # not count as the agent being on a call (that would withdraw the offer again).
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]
    assert control.named("answer_with_tone") == [("answer_with_tone", login, "beep")]
    assert control.named("cancel_offer") == []
    assert state(host, "alice") is AgentState.RINGING

    clock.advance(12)
    control.answer_offer(call, "alice/1001")
    assert control.commands[-2:] == [
        ("stop_music_on_hold", call),
        ("accept_offer", call, "alice/1001", False),
    ]
    assert control.snapshot(call).callee_ext == ALICE
    assert state(host, "alice") is AgentState.ON_CALL
    assert not host.acd.is_waiting(call)
    # ...and the agent id (as in the queue log, not the extension); the wait stays.
    assert control.notes[call] == {
        "queue": "support",
        "queued_at": joined,
        "queue_call_id": call,
        "agent": "alice",
    }
    # time|call|queue|agent|CONNECT|hold seconds|call|ring seconds
    assert queue_line(logs, "CONNECT")[1:] == [
        call,
        "support",
        "alice",
        "CONNECT",
        "12",
        call,
        "12",
    ]

    clock.advance(60)
    control.end(call, side="caller")
    assert queue_log(logs) == [
        ("ENTERQUEUE", call, ""),
        ("AGENTLOGIN", "", "alice"),
        ("CONNECT", call, "alice"),
        ("COMPLETECALLER", call, "alice"),
    ]
    assert call not in host.acd.calls
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_agent_hanging_up_completes_the_call_as_agent(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    control.end(call, side="callee")
    assert queue_log(logs)[-1] == ("COMPLETEAGENT", call, "alice")


async def test_the_last_call_an_agent_answered_is_what_their_wrap_up_may_name(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    assert host.last_call("alice") is None
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert host.last_call("alice") is None  # ringing is not handling
    control.answer_offer(call, "alice/1001")
    control.end(call, side="callee")
    assert host.last_call("alice") == call
    assert host.last_call("bob") is None


async def test_a_refused_offer_is_missed_and_the_next_agent_rings(
    control: FakeCallControl, host: AcdHost, clock: Clock, logs: Logs
) -> None:
    await log_in(control, ALICE)
    clock.advance(1)
    await log_in(control, BOB)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]  # idle longest

    clock.advance(3)
    control.reject_offer(call, "alice/1001", 486)
    await settle()  # the retry timer (retry_delay 0) fires
    assert ("RINGNOANSWER", call, "alice") in queue_log(logs)
    assert queue_line(logs, "RINGNOANSWER")[-1] == "3000"  # rang for 3000 ms
    assert control.named("offer")[-1] == ("offer", call, "bob/1002", BOB)
    assert state(host, "alice") is AgentState.AVAILABLE
    assert state(host, "bob") is AgentState.RINGING
    assert host.acd.is_waiting(call)


async def test_ring_all_connects_the_first_agent_to_answer_and_frees_the_others(
    control: FakeCallControl, host_factory: Callable[..., AcdHost], logs: Logs
) -> None:
    host = host_factory(strategy=Strategy.RING_ALL)
    await log_in(control, ALICE)
    await log_in(control, BOB)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.snapshot(call).offers == ("alice/1001", "bob/1002")

    control.answer_offer(call, "bob/1002")
    assert control.named("accept_offer") == [("accept_offer", call, "bob/1002", False)]
    assert control.snapshot(call).offers == ()
    assert state(host, "bob") is AgentState.ON_CALL
    assert state(host, "alice") is AgentState.AVAILABLE
    assert queue_log(logs)[-1] == ("CONNECT", call, "bob")


async def test_an_agent_with_two_phones_misses_the_offer_only_when_both_refuse(
    control: FakeCallControl, tmp_path: Path, clock: Clock, logs: Logs
) -> None:
    desk, softphone = ALICE, "1011"
    control.extensions.add(softphone)
    host = AcdHost(
        cast(Any, control),
        None,
        AcdSettings(
            agents=[AgentConfig("alice", extensions=(desk, softphone))],
            queues=[QueueConfig("support")],
            config_dir=tmp_path,
        ),
    )
    await log_in(control, desk)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.snapshot(call).offers == ("alice/1001", "alice/1011")
    control.reject_offer(call, "alice/1001", 486)  # busy on the desk phone...
    assert state(host, "alice") is AgentState.RINGING  # ...the softphone still rings
    control.answer_offer(call, "alice/1011")
    assert control.named("accept_offer") == [("accept_offer", call, "alice/1011", False)]
    assert queue_log(logs)[-1] == ("CONNECT", call, "alice")


async def test_a_transferred_queue_call_is_logged_as_a_transfer(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    control.end(call, side="callee", cause="transferred")
    assert queue_log(logs)[-1] == ("TRANSFER", call, "alice")
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_a_queue_call_with_a_survey_hands_the_caller_back_after_the_agent(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600", survey="rate-us")
    control.answer_offer(call, "alice/1001")
    assert control.commands[-1] == ("continue_after_callee", call, "ivr", "rate-us")


async def test_a_caller_hanging_up_while_waiting_abandons(
    control: FakeCallControl, host: AcdHost, clock: Clock, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(7)
    control.end(call, side="caller")
    assert queue_log(logs)[-1] == ("ABANDON", call, "")
    # position|original position|seconds waited
    assert queue_line(logs, "ABANDON")[-3:] == ["1", "1", "7"]
    assert call not in host.acd.calls
    assert state(host, "alice") is AgentState.AVAILABLE  # the offer went with the caller
    assert control.named("accept_offer") == []


# --- agents' other calls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "callee", "kind"),
    [
        (COLLEAGUE, ALICE, "inbound"),  # somebody called Alice directly
        (ALICE, COLLEAGUE, "internal"),  # Alice called an extension
        (ALICE, "5550199", "outbound"),  # Alice called out
    ],
)
async def test_an_agents_own_call_makes_them_busy_until_their_leg_closes(
    control: FakeCallControl, host: AcdHost, caller: str, callee: str, kind: str
) -> None:
    await log_in(control, ALICE)
    own = control.place_call(caller, callee)  # LegAnswered for both parties
    assert host.agent_states()["alice"] == (AgentState.ON_CALL, kind)

    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.named("offer") == []  # Alice is busy: the caller waits

    control.end(own)  # LegClosed for both parties
    assert state(host, "alice") is AgentState.RINGING
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]


async def test_a_trunk_caller_presenting_an_agents_extension_does_not_make_them_busy(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    # A carrier's caller claims 1001 (Alice's extension); Switchboard answers it (an IVR).
    spoof = control.new_call(ALICE, "4100")
    control.publish(LegAnswered(spoof, f"{spoof}-a", ALICE, "caller", trunk="carrier"))
    assert state(host, "alice") is AgentState.AVAILABLE
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]


async def test_a_leg_closing_ends_only_the_call_it_belongs_to(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    first = control.place_call(COLLEAGUE, ALICE)
    second = control.place_call(ALICE, "5550199")  # a second line on the same phone
    control.end(first)
    assert state(host, "alice") is AgentState.ON_CALL  # still on the second call
    control.end(second)
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_an_agent_logging_in_during_a_call_is_busy_until_it_ends(
    control: FakeCallControl, host: AcdHost
) -> None:
    own = control.place_call(COLLEAGUE, ALICE)  # before *45: the ACD only counts legs
    await log_in(control, ALICE)
    assert state(host, "alice") is AgentState.ON_CALL
    control.end(own)
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_an_agent_whose_phone_is_not_registered_counts_as_missed(
    control: FakeCallControl, host: AcdHost, clock: Clock, logs: Logs
) -> None:
    await log_in(control, ALICE)
    clock.advance(1)
    await log_in(control, BOB)
    control.extensions.discard(ALICE)  # Alice's phone went away
    call = control.arrive("queue", "support", CUSTOMER, "600")
    await settle()
    assert ("RINGNOANSWER", call, "alice") in queue_log(logs)
    assert control.snapshot(call).offers == ("bob/1002",)


# --- feature codes ------------------------------------------------------------------------------


async def test_another_services_feature_code_is_left_alone(
    control: FakeCallControl, host: AcdHost
) -> None:
    """Codes are dialled to every subscriber; the ACD answers only its own (a voicemail or
    any later service's code from a non-agent is not refused with 403 Not An Agent)."""
    control.claim_feature_codes("voicemail", ["*97"])
    call = control.dial_code(COLLEAGUE, "*97", "")
    # Nobody in this test serves *97: the seam's own refusal, not the ACD's 403.
    assert control.commands == [("reject", call, 480, "Feature Unavailable")]


@pytest.mark.parametrize(
    ("phone", "code", "digits", "status", "reason"),
    [
        (COLLEAGUE, "*45", "", 403, "Not An Agent"),
        (BOB, "*52", ALICE, 403, "Not A Supervisor"),
        (SUPERVISOR, "*51", ALICE, 404, "No Call To Supervise"),  # Alice is on no call
        (ALICE, "*45", "7", 404, None),  # login takes no digits
    ],
)
async def test_feature_codes_that_cannot_be_carried_out_are_refused(
    control: FakeCallControl,
    host: AcdHost,
    phone: str,
    code: str,
    digits: str,
    status: int,
    reason: str | None,
) -> None:
    code_call = control.dial_code(phone, code, digits)
    assert control.commands == [("reject", code_call, status, reason)]
    assert all(s is AgentState.LOGGED_OUT for s, _ in host.agent_states().values())


async def test_pause_with_a_reason_digit_and_unpause(
    control: FakeCallControl, tmp_path: Path, clock: Clock, logs: list[Any]
) -> None:
    host = AcdHost(
        cast(Any, control),
        None,
        AcdSettings(
            agents=[AgentConfig("alice", extensions=(ALICE,))],
            queues=[QueueConfig("support")],
            config_dir=tmp_path,
            pause_reasons={"2": "lunch"},
        ),
    )
    await log_in(control, ALICE)
    pause = control.dial_code(ALICE, "*47", "2")
    await settle()
    assert ("answer_with_tone", pause, "beep") in control.commands
    assert host.agent_states()["alice"] == (AgentState.NOT_READY, "lunch")
    control.dial_code(ALICE, "*48")
    await settle()
    assert state(host, "alice") is AgentState.AVAILABLE


@pytest.mark.parametrize(
    ("mode", "code", "accepted"),
    [
        (WrapUpMode.OPTIONAL, "", True),
        (WrapUpMode.FORCED, "", False),  # a forced wrap-up ends only with a code
        (WrapUpMode.FORCED, "3", True),
        (WrapUpMode.TIMED, "3", False),  # a timed one only by its timer
    ],
)
async def test_star49_ends_wrap_up_as_the_queue_allows(
    control: FakeCallControl,
    host_factory: Callable[..., AcdHost],
    mode: WrapUpMode,
    code: str,
    accepted: bool,
) -> None:
    host = host_factory(wrap_up=60.0, wrap_up_mode=mode)
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    control.end(call)
    assert state(host, "alice") is AgentState.WRAP_UP

    done = control.dial_code(ALICE, "*49", code)
    await settle()
    if accepted:
        assert ("answer_with_tone", done, "beep") in control.commands
        assert state(host, "alice") is AgentState.AVAILABLE
    else:
        assert control.commands[-1] == ("reject", done, 403, "Wrap-Up Continues")
        assert state(host, "alice") is AgentState.WRAP_UP


async def test_a_supervisor_listens_and_switches_to_whisper_with_5(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")

    listen = control.dial_code(SUPERVISOR, "*51", ALICE)
    assert control.commands[-1] == ("answer", listen)
    await settle()  # CallAnswered: the supervisor's media is up
    assert control.named("supervise") == [("supervise", listen, call, "listen")]

    control.press(listen, "5")
    control.press(listen, "5")  # already whispering: nothing to do
    control.press(listen, "9")  # not a mode
    assert control.named("supervise") == [
        ("supervise", listen, call, "listen"),
        ("supervise", listen, call, "whisper"),
    ]

    supervised = [e for e in logs if e["event"] == "queue_event" and e["kind"] == "SUPERVISE"]
    assert [e["line"].split("|")[-2:] for e in supervised] == [
        [SUPERVISOR, "listen"],
        [SUPERVISOR, "whisper"],
    ]
    # The supervisor's own call is not the agent's: Alice stays on the queue call.
    assert host.acd.agents["alice"].on_call == call


async def test_supervision_of_a_call_that_ended_before_the_answer_hangs_up(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    listen = control.dial_code(SUPERVISOR, "*51", ALICE)
    control.end(call)
    await settle()
    assert control.named("supervise") == []
    assert ("hangup", listen, "nothing_to_supervise") in control.commands


async def test_a_supervisor_who_intercepts_takes_the_call_and_frees_the_agent(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    listen = control.dial_code(SUPERVISOR, "*51", ALICE)
    await settle()
    control.press(listen, "7")
    assert control.commands[-1] == ("supervise", listen, call, "intercept")
    assert queue_log(logs)[-1] == ("COMPLETEAGENT", call, "alice")  # Alice's part is done
    assert state(host, "alice") is AgentState.AVAILABLE
    assert control.snapshot(call).ended  # the agent's part of the call (and its record)
    went_on = control.intercepted[call]
    assert control.snapshot(went_on).callee_ext == SUPERVISOR
    assert control.snapshot(went_on).linked_id == call
    logged = queue_log(logs)
    control.end(went_on)  # the customer and the supervisor hang up later: not the ACD's call
    assert queue_log(logs) == logged
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_supervise_rings_the_supervisor_then_joins_the_agents_call_and_switches(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    """The API's one-click supervision: the same path as *52 + extension from the answer on."""
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")

    dialled = host.supervise("alice", SUPERVISOR, "whisper")
    assert dialled is not None
    origin, switched = dialled
    assert not switched
    assert control.commands[-1] == ("originate", origin, SUPERVISOR, ALICE)
    assert control.named("supervise") == []  # not before the supervisor's phone answers
    own = control.answer_originate(origin)
    assert control.named("supervise") == [("supervise", own, call, "whisper")]
    assert queue_line(logs, "SUPERVISE")[-2:] == [SUPERVISOR, "whisper"]

    # A second click from the same phone switches the mode of the ongoing supervision.
    assert host.supervise("alice", SUPERVISOR, "barge") == (own, True)
    assert control.named("supervise")[-1] == ("supervise", own, call, "barge")
    assert host.acd.agents["alice"].on_call == call


async def test_supervise_refuses_an_agent_on_no_call_and_forgets_an_unanswered_ring(
    control: FakeCallControl, host: AcdHost
) -> None:
    await log_in(control, ALICE)
    with pytest.raises(LookupError):
        host.supervise("alice", SUPERVISOR, "listen")
    with pytest.raises(KeyError):
        host.supervise("nobody", SUPERVISOR, "listen")
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    with pytest.raises(ValueError):
        host.supervise("alice", SUPERVISOR, "shout")
    with pytest.raises(ValueError):
        host.supervise("alice", "5550199", "listen")  # an outside number: never
    dialled = host.supervise("alice", SUPERVISOR, "listen")
    assert dialled is not None
    control.fail_originate(dialled[0])
    assert control.named("supervise") == []
    # The agent's call ended while the supervisor's phone rang: the answer is hung up.
    again = host.supervise("alice", SUPERVISOR, "listen")
    assert again is not None
    control.end(call)
    own = control.answer_originate(again[0])
    assert control.named("supervise") == []
    assert ("hangup", own, "nothing_to_supervise") in control.commands


async def test_wrap_up_codes_are_those_of_the_queue_being_wrapped_up(
    control: FakeCallControl, host_factory: Callable[..., AcdHost]
) -> None:
    host = host_factory(wrap_up=60.0, wrap_up_codes=["1", "2"], wrap_up_labels={"2": "Sale"})
    await log_in(control, ALICE)
    assert host.wrap_up_codes("alice") == []
    assert host.wrap_up_labels("alice") == {}
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    control.end(call)
    assert state(host, "alice") is AgentState.WRAP_UP
    assert host.wrap_up_codes("alice") == ["1", "2"]
    assert host.wrap_up_labels("alice") == {"2": "Sale"}


# --- leaving the queue --------------------------------------------------------------------------


async def test_the_exit_key_sends_the_caller_to_the_overflow_flow(
    control: FakeCallControl, host_factory: Callable[..., AcdHost], logs: Logs
) -> None:
    host = host_factory(exit_key="0", overflow="ivr:after-hours")
    control.serve("ivr")  # as the IVR host does
    arrivals: list[CallArrived] = []
    control.subscribe(lambda e: arrivals.append(e) if isinstance(e, CallArrived) else None)

    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.press(call, "0")
    assert control.commands[-2:] == [
        ("stop_music_on_hold", call),
        ("route", call, "ivr", "after-hours"),
    ]
    assert (arrivals[-1].kind, arrivals[-1].target) == ("ivr", "after-hours")
    assert queue_log(logs)[-1] == ("EXITWITHKEY", call, "")
    assert call not in host.acd.calls


async def test_a_full_queue_overflows_into_an_ivr_flow(
    control: FakeCallControl, host_factory: Callable[..., AcdHost], logs: Logs
) -> None:
    host = host_factory(join_empty=False, overflow="ivr:after-hours")
    control.serve("ivr")
    call = control.arrive("queue", "support", CUSTOMER, "600")  # nobody logged in
    assert control.named("route") == [("route", call, "ivr", "after-hours")]
    assert queue_log(logs) == [("JOINEMPTY", call, "")]
    assert call not in host.acd.calls


async def test_an_overflow_nobody_serves_says_goodbye_and_hangs_up(
    control: FakeCallControl, host_factory: Callable[..., AcdHost]
) -> None:
    host_factory(join_empty=False, overflow="ivr:after-hours")  # and no IVR host
    call = control.arrive("queue", "support", CUSTOMER, "600")
    (play,) = control.named("play")
    assert play[1] == call and Path(play[2][0]).stem == "goodbye"
    control.finish_play(play[3])
    assert control.commands[-1] == ("hangup", call, "queue_joinempty")


async def test_an_overflow_to_an_extension_that_does_not_answer_hangs_up(
    control: FakeCallControl, host_factory: Callable[..., AcdHost]
) -> None:
    host_factory(join_empty=False, overflow=f"extension:{COLLEAGUE}")
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.commands[-1] == ("connect_to", call, COLLEAGUE)
    assert control.connected_outside[call] is False  # an extension only, never outside
    control.fail_connect(call, 480)
    assert control.commands[-1] == ("hangup", call, "overflow_failed")


async def test_an_overflow_to_an_outside_number_asks_the_seam_to_dial_it(
    control: FakeCallControl, host_factory: Callable[..., AcdHost]
) -> None:
    """``number:`` overflow: the seam dials it through the trunks (issue 16); the fake knows
    the number as reachable, as a trunk route would make it."""
    control.extensions.add("95550199")
    host_factory(join_empty=False, overflow="number:95550199")
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.commands[-1] == ("connect_to", call, "95550199")
    assert control.connected_outside[call] is True  # the admin's number may leave
    control.fail_connect(call, 503)
    assert control.commands[-1] == ("hangup", call, "overflow_failed")


async def test_an_agent_lends_their_class_of_service_to_their_phone_while_logged_in(
    control: FakeCallControl, tmp_path: Path, clock: Clock, logs: Logs
) -> None:
    cfg = AcdSettings(
        agents=[
            AgentConfig("alice", extensions=(ALICE,), class_of_service="international"),
            AgentConfig("bob", extensions=(BOB,)),
        ],
        queues=[QueueConfig("support", retry_delay=0.0)],
        config_dir=tmp_path,
        supervisors=frozenset(),
        queue_music={},
    )
    AcdHost(cast(Any, control), None, cfg)
    await log_in(control, ALICE)
    await log_in(control, BOB)  # no class of its own: the extension's stays
    await settle()
    assert control.named("set_class_of_service") == [
        ("set_class_of_service", ALICE, "international")
    ]
    control.dial_code(ALICE, "*46")
    await until(lambda: len(control.named("set_class_of_service")) == 2)
    assert control.named("set_class_of_service")[-1] == ("set_class_of_service", ALICE, None)


async def test_a_reload_that_revokes_an_agents_class_takes_it_back_at_once(
    control: FakeCallControl, tmp_path: Path, clock: Clock, logs: Logs
) -> None:
    def cfg(cos: str | None) -> AcdSettings:
        return AcdSettings(
            agents=[AgentConfig("alice", extensions=(ALICE,), class_of_service=cos)],
            queues=[QueueConfig("support", retry_delay=0.0)],
            config_dir=tmp_path,
            supervisors=frozenset(),
            queue_music={},
        )

    host = AcdHost(cast(Any, control), None, cfg("international"))
    await log_in(control, ALICE)
    await settle()
    host.reconfigure(cfg(None))  # the admin removed alice's class while she is logged in
    await settle()
    assert control.named("set_class_of_service")[-1] == ("set_class_of_service", ALICE, None)
    host.reconfigure(cfg("local"))
    await settle()
    assert control.named("set_class_of_service")[-1] == ("set_class_of_service", ALICE, "local")


# --- callbacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("agent_first", [True, False])
async def test_a_callback_rings_one_party_then_offers_the_other(
    control: FakeCallControl,
    host_factory: Callable[..., AcdHost],
    logs: Logs,
    agent_first: bool,
) -> None:
    host = host_factory(callback_agent_first=agent_first)
    await log_in(control, ALICE)
    # An IVR ``callback`` node with a queue hands the request over; the caller hung up.
    assert host.add_callback("ivr7", CUSTOMER, "support", CUSTOMER)
    request = "cb-ivr7"
    first, second = (ALICE, CUSTOMER) if agent_first else (CUSTOMER, ALICE)

    ((_, origin, rung, caller_id),) = control.named("originate")
    assert (rung, caller_id) == (first, CUSTOMER if agent_first else ALICE)
    # The customer's number is dialled as the agent's call (their class of service and
    # caller ID at the trunk), whichever party rings first.
    assert control.dialled_for[(origin, first)] == ALICE
    leg_call = control.answer_originate(origin)
    assert control.commands[-2:] == [
        ("start_tone", leg_call, "ringback"),
        ("offer", leg_call, "callback", second),
    ]

    control.answer_offer(leg_call, "callback")
    assert control.named("accept_offer") == [("accept_offer", leg_call, "callback", agent_first)]
    # However it was dialled, the connected call is customer -> agent, like a queue call.
    (connected,) = [c for c in control.calls() if not c.ended and c.callee_ext == ALICE]
    assert connected.caller == CUSTOMER
    assert state(host, "alice") is AgentState.ON_CALL
    assert queue_log(logs)[-1] == ("CALLBACKCONNECT", request, "alice")
    # The record: an outbound call for the request's queue-log id, answered by alice.
    notes = control.notes[connected.call_id]
    assert (notes["direction"], notes["queue"], notes["agent"]) == ("outbound", "support", "alice")
    assert notes["queue_call_id"] == request

    control.end(connected.call_id, side="callee")
    assert queue_log(logs)[-1] == ("COMPLETEAGENT", request, "alice")
    assert state(host, "alice") is AgentState.AVAILABLE
    assert request not in host.acd.calls


async def test_a_callback_whose_first_party_does_not_answer_is_retried_later(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    host.add_callback("ivr7", CUSTOMER, "support", CUSTOMER)
    ((_, origin, _, _),) = control.named("originate")
    control.fail_originate(origin, 480)
    assert queue_log(logs)[-1] == ("CALLBACKRETRY", "cb-ivr7", "")
    assert "cb-ivr7" in host.acd.calls
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_a_callback_the_customer_refuses_releases_the_agent_for_a_retry(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    host.add_callback("ivr7", CUSTOMER, "support", CUSTOMER)
    ((_, origin, _, _),) = control.named("originate")
    agent_leg = control.answer_originate(origin)  # Alice hears ringback...
    # The attempt's own record names the request (its queue-log id) and the queue.
    assert control.notes[agent_leg] == {"queue": "support", "queue_call_id": "cb-ivr7"}
    control.reject_offer(agent_leg, "callback", 486)  # ...and the customer is busy
    assert ("hangup", agent_leg, "callback_failed") in control.commands
    assert queue_log(logs)[-1] == ("CALLBACKRETRY", "cb-ivr7", "")
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_an_agent_hanging_up_before_the_customer_answers_fails_the_attempt(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    host.add_callback("ivr7", CUSTOMER, "support", CUSTOMER)
    ((_, origin, _, _),) = control.named("originate")
    agent_leg = control.answer_originate(origin)
    control.end(agent_leg, side="caller")
    assert queue_log(logs)[-1] == ("CALLBACKRETRY", "cb-ivr7", "")
    assert "cb-ivr7" in host.acd.calls
    assert state(host, "alice") is AgentState.AVAILABLE


async def test_a_waiting_caller_asks_for_a_callback_and_is_called_back_after_hanging_up(
    control: FakeCallControl, host_factory: Callable[..., AcdHost], logs: Logs
) -> None:
    host_factory(callback_key="*")
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.press(call, "*")  # "press # to be called back on this number, or enter another"
    control.press(call, "#")
    assert queue_log(logs)[-1] == ("CALLBACKREQUEST", call, "")
    (confirm,) = control.named("play")[-1:]
    assert [Path(f).stem for f in confirm[2]] == ["callback-confirmed", "goodbye"]

    await log_in(control, ALICE)
    # The caller's phone is still hanging up: nobody is dialled yet.
    assert control.named("originate") == []
    control.finish_play(confirm[3])
    assert ("hangup", call, "callback_requested") in control.commands
    ((_, _, rung, _),) = control.named("originate")
    assert rung == ALICE


# --- the store ----------------------------------------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The ACD's log and restore on SQLite and PostgreSQL (tests/conftest.py)."""
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


async def test_queue_events_and_agent_states_are_written_to_the_store(
    control: FakeCallControl, tmp_path: Path, clock: Clock, store: Store, logs: list[Any]
) -> None:
    host = make_host(control, tmp_path, store)
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(5)
    control.answer_offer(call, "alice/1001")
    clock.advance(30)
    control.end(call, side="caller")
    await host.drain()

    events = await store.list_queue_events(queue="support")
    assert [(e.event, e.call_id, e.agent) for e in events] == [
        ("ENTERQUEUE", call, ""),
        ("CONNECT", call, "alice"),
        ("COMPLETECALLER", call, "alice"),
    ]
    assert events[1].data == ("5", call, "5")
    assert events[2].time.timestamp() == clock.now
    states = await store.list_agent_states("alice")
    assert [(s.old_state, s.new_state) for s in states] == [
        ("LOGGED_OUT", "AVAILABLE"),
        ("AVAILABLE", "RINGING"),
        ("RINGING", "ON_CALL"),
        ("ON_CALL", "AVAILABLE"),
    ]


async def test_a_gold_customer_is_served_before_an_earlier_caller(
    control: FakeCallControl, tmp_path: Path, clock: Clock, store: Store, logs: Logs
) -> None:
    await store.add_customer(CustomerData(name="Gold Inc", phone="555 0177", grade="A"))
    host = make_host(control, tmp_path, store, grade_priority={"A": 10})
    first = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(30)
    gold = control.arrive("queue", "support", "5550177", "600")
    await until(lambda: gold in host.acd.calls)  # the grade is looked up in the store
    assert host.acd.position(gold) == 1 and host.acd.position(first) == 2
    await log_in(control, ALICE)
    assert control.named("offer") == [("offer", gold, "alice/1001", ALICE)]


async def test_a_restart_estimates_waits_from_the_stored_talk_times(
    tmp_path: Path, clock: Clock, store: Store
) -> None:
    """Issue 15: after a restart the estimated wait uses the last week's completed calls of
    the queue (the queue log's calltime), not the built-in 180 s."""
    now = datetime.now(UTC)  # the host looks back a week from the wall clock
    await store.add_acd_log(
        [
            QueueEventData(
                now - timedelta(days=30),
                "old",
                "support",
                "alice",
                "COMPLETEAGENT",
                ("5", "900", "1"),
            ),  # older than a week: not used
            QueueEventData(
                now - timedelta(hours=2),
                "c1",
                "support",
                "alice",
                "COMPLETEAGENT",
                ("5", "50", "1"),
            ),
            QueueEventData(
                now - timedelta(hours=1),
                "c2",
                "support",
                "bob",
                "COMPLETECALLER",
                ("5", "100", "1"),
            ),
        ],
        [],
    )
    control = FakeCallControl(extensions=[ALICE, BOB, CUSTOMER])
    host = make_host(control, tmp_path, store)
    await host.start()
    assert host.acd.queues["support"].avg_talk == pytest.approx(0.8 * 50 + 0.2 * 100)


async def test_a_pause_or_logout_asked_for_during_a_call_survives_a_crash(
    tmp_path: Path, clock: Clock, store: Store, logs: Logs
) -> None:
    """Alice asks for a lunch pause during a call; Bob, paused for training, takes a call
    of his own; the server dies before either call ends. After the restart both are paused
    with their reasons. Then Alice, on a call again, asks to log out, and the server dies
    again: after that restart she is logged off (reason pending logout)."""
    before = FakeCallControl(extensions=[ALICE, BOB, CUSTOMER, COLLEAGUE])
    first = make_host(before, tmp_path, store)
    await log_in(before, ALICE)
    await log_in(before, BOB)
    first.pause("bob", "training")
    before.place_call(ALICE, COLLEAGUE)
    before.place_call(BOB, COLLEAGUE)
    first.pause("alice", "lunch")
    assert state(first, "alice") is AgentState.ON_CALL  # the request waits for the call
    await first.drain()  # what was committed before the crash

    clock.advance(30)
    second_control = FakeCallControl(extensions=[ALICE, BOB, CUSTOMER, COLLEAGUE])
    second = make_host(second_control, tmp_path, store)
    await second.start()
    assert second.agent_states()["alice"] == (AgentState.NOT_READY, "lunch")
    assert second.agent_states()["bob"] == (AgentState.NOT_READY, "training")

    second.unpause("alice")
    second_control.place_call(ALICE, COLLEAGUE)
    second.logout("alice")
    assert state(second, "alice") is AgentState.ON_CALL
    await second.drain()

    clock.advance(30)
    third = make_host(FakeCallControl(extensions=[ALICE, BOB, CUSTOMER]), tmp_path, store)
    await third.start()
    assert third.agent_states()["alice"][0] is AgentState.LOGGED_OUT
    assert third.agent_states()["bob"] == (AgentState.NOT_READY, "training")
    await third.drain()
    alice = await store.list_agent_states("alice")
    assert (alice[-1].new_state, alice[-1].event, alice[-1].reason) == (
        "LOGGED_OUT",
        "restore",
        "pending logout",
    )
    logoffs = [e.agent for e in await store.list_queue_events() if e.event == "AGENTLOGOFF"]
    assert logoffs == ["alice"]


async def test_a_restart_brings_agents_back_as_the_store_last_saw_them(
    tmp_path: Path, clock: Clock, store: Store, logs: Logs
) -> None:
    """Alice was logged in, Bob paused for lunch, and a removed agent was logged in when the
    server stopped. After the restart the next caller goes to Alice, Bob stays paused for
    lunch, and the removed agent is logged off with a reason in both logs."""
    before = FakeCallControl(extensions=[ALICE, BOB, CUSTOMER])
    first = make_host(before, tmp_path, store)
    await log_in(before, ALICE)
    await log_in(before, BOB)
    first.pause("bob", "lunch")
    await first.drain()
    t0 = datetime.fromtimestamp(clock.now, UTC)
    await store.add_acd_log(  # an agent removed from the config since
        [], [AgentStateData(t0, "gone", "LOGGED_OUT", "AVAILABLE", "login", None)]
    )

    clock.advance(60)
    control = FakeCallControl(extensions=[ALICE, BOB, CUSTOMER])
    host = make_host(control, tmp_path, store)  # the process after the restart
    await host.start()
    assert host.agent_states()["alice"] == (AgentState.AVAILABLE, None)
    assert host.agent_states()["bob"] == (AgentState.NOT_READY, "lunch")
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]
    await host.drain()
    assert [e for e in queue_log(logs) if e[0] == "AGENTLOGIN"] == [
        ("AGENTLOGIN", "", "alice"),
        ("AGENTLOGIN", "", "bob"),
    ]  # the first run's logins only: the restored sessions go on
    (logoff,) = [e for e in await store.list_queue_events() if e.event == "AGENTLOGOFF"]
    assert logoff.agent == "gone" and logoff.data == ("Local/gone", "60")
    gone = await store.list_agent_states("gone")
    assert [(s.new_state, s.event, s.reason) for s in gone][-1] == (
        "LOGGED_OUT",
        "restore",
        "removed_from_config",
    )
    restored = [s for s in await store.list_agent_states("bob") if s.event == "restore_paused"]
    assert [(s.new_state, s.reason) for s in restored] == [("NOT_READY", "lunch")]
    assert any(e["event"] == "agent_logged_off" and e["agent"] == "gone" for e in logs)


# --- snapshots (the API's queue and agent lists, metrics) ----------------------------------------


async def test_queue_snapshots_count_waiting_callers_and_members_by_state(
    control: FakeCallControl, host_factory: Callable[..., AcdHost], clock: Clock
) -> None:
    host = host_factory(strategy=Strategy.LINEAR, members=("alice", "bob"), service_level=30)
    start = clock.now
    (empty,) = host.queue_snapshots()
    assert empty == acd.QueueSnapshot(
        name="support",
        strategy="linear",
        waiting=0,
        longest_wait_seconds=0.0,
        agents={"LOGGED_OUT": 2},
        members=("alice", "bob"),
        service_level_seconds=30.0,
    )

    first = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(40)
    control.arrive("queue", "support", "5550101", "600")
    clock.advance(5)
    (snap,) = host.queue_snapshots()
    assert (snap.waiting, snap.longest_wait_seconds) == (2, 45.0)
    assert host.queue_snapshots(now=start + 100)[0].longest_wait_seconds == 100.0

    await log_in(control, ALICE)  # rings with the first caller at once
    (snap,) = host.queue_snapshots()
    assert snap.agents == {"RINGING": 1, "LOGGED_OUT": 1}
    assert snap.waiting == 2  # a caller being offered still waits

    control.answer_offer(first, "alice/1001")
    (snap,) = host.queue_snapshots()
    assert (snap.waiting, snap.longest_wait_seconds) == (1, 5.0)
    assert snap.agents == {"ON_CALL": 1, "LOGGED_OUT": 1}


async def test_agent_snapshots_say_state_reason_since_and_the_call_they_are_on(
    control: FakeCallControl, host: AcdHost, clock: Clock
) -> None:
    started = clock.now
    alice, bob = host.agent_snapshots()
    assert bob == acd.AgentSnapshot(
        id="bob",
        name="",
        extensions=(BOB,),
        state="LOGGED_OUT",
        reason=None,
        since=started,
        queues=("support",),
        current_call=None,
    )

    clock.advance(10)
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(3)
    control.answer_offer(call, "alice/1001")
    alice = host.agent_snapshots()[0]
    assert (alice.state, alice.reason, alice.since) == ("ON_CALL", "inbound", started + 13)
    assert alice.current_call == call

    control.end(call, side="callee")
    alice = host.agent_snapshots()[0]
    assert (alice.state, alice.current_call) == ("AVAILABLE", None)

    # A call of her own (not from a queue) is the call she is on, too.
    own = control.place_call(ALICE, COLLEAGUE)
    alice = host.agent_snapshots()[0]
    assert (alice.state, alice.reason, alice.current_call) == ("ON_CALL", "internal", own)
    control.end(own)
    assert host.agent_snapshots()[0].current_call is None

    host.pause("alice", "lunch")
    alice = host.agent_snapshots()[0]
    assert (alice.state, alice.reason, alice.since) == ("NOT_READY", "lunch", clock.now)


# --- offers told to the listeners (the web panel's offer card) -----------------------------------


def offer_items(items: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for item in items:
        if isinstance(item, OfferMade):
            out.append(("made", item.agent, item.call_id, item.queue, item.caller))
        elif isinstance(item, OfferEnded):
            out.append(("ended", item.agent, item.call_id, item.outcome))
    return out


async def test_listeners_hear_each_offer_made_and_how_it_ended(
    control: FakeCallControl, host: AcdHost, clock: Clock
) -> None:
    items: list[Any] = []
    host.subscribe(items.append)
    await log_in(control, ALICE)
    clock.advance(1)
    await log_in(control, BOB)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.calls_by_id[call].ivr_keys = "12"
    clock.advance(3)
    control.reject_offer(call, "alice/1001", 486)  # alice was offered first (idle longest)
    await settle()
    (made,) = [i for i in items if isinstance(i, OfferMade) and i.agent == "alice"]
    assert (made.waited_seconds, made.ivr_keys) == (0.0, "")
    (bob_made,) = [i for i in items if isinstance(i, OfferMade) and i.agent == "bob"]
    assert (bob_made.waited_seconds, bob_made.ivr_keys) == (3.0, "12")
    assert bob_made.time == datetime.fromtimestamp(clock.now, UTC)
    control.answer_offer(call, "bob/1002")
    assert offer_items(items) == [
        ("made", "alice", call, "support", CUSTOMER),
        ("ended", "alice", call, "rejected"),
        ("made", "bob", call, "support", CUSTOMER),
        ("ended", "bob", call, "answered"),
    ]


async def test_offers_withdrawn_by_the_acd_or_the_caller_end_for_the_listeners(
    control: FakeCallControl, host_factory: Callable[..., AcdHost]
) -> None:
    host = host_factory(strategy=Strategy.RING_ALL)
    items: list[Any] = []
    host.subscribe(items.append)
    await log_in(control, ALICE)
    await log_in(control, BOB)
    first = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(first, "bob/1002")
    assert offer_items(items) == [
        ("made", "alice", first, "support", CUSTOMER),
        ("made", "bob", first, "support", CUSTOMER),
        ("ended", "bob", first, "answered"),
        ("ended", "alice", first, "withdrawn"),  # bob answered first
    ]
    items.clear()
    second = control.arrive("queue", "support", "5550199", "600")
    control.end(second, side="caller")  # the caller hangs up while alice's phone rings
    assert offer_items(items) == [
        ("made", "alice", second, "support", "5550199"),
        ("ended", "alice", second, "withdrawn"),
    ]

"""ivr.host: the store behind IVR lookups and results (SQLite and PostgreSQL), and flows run
on calls through a fake call-control seam (no sockets): menus, transfers, queues, voicemail."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import soundfile
import structlog

from crm import CustomerData, Store
from ivr import Flow, IvrSession, parse_flow
from ivr.host import IvrHost
from ivr.mailbox import Mailbox
from pbx.dialplan import Dialplan
from pbx.events import CallArrived
from tests.unit.fake_control import FakeCallControl


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


class Caller:
    caller = "+15551234567"
    did = "4000"

    async def play(self, items: list[Any], interrupt_digits: str) -> str | None:
        return None

    async def collect_digit(self, timeout: float) -> str | None:
        return None

    async def record(self, path: Path, max_seconds: float, beep: bool) -> float:
        return 0.0

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        self.transferred = destination

    async def hangup(self) -> None:
        pass


FLOW = """name: main
start: who
nodes:
  who: {type: lookup, source: customer, next: vip}
  vip:
    type: branch
    conditions: [{variable: customer.grade, equals: A, next: gold}]
    default: other
  gold: {type: extension, extension: "${customer.name}"}
  other: {type: extension, extension: "nobody"}
"""


async def test_customer_lookup_reads_the_store(store: Store, tmp_path: Path) -> None:
    await store.add_customer(CustomerData(name="1009", phone="1 555 123 4567", grade="A"))
    host = IvrHost(cast(Any, FakeCallControl()), store, Dialplan(), {}, tmp_path)
    flow, problems = parse_flow(FLOW, base_dir=tmp_path)
    assert flow is not None, problems
    call = Caller()
    session = IvrSession(flow, call, customer_lookup=host.customer_lookup)
    outcome = await session.start()
    assert outcome.data["extension"] == "1009" and call.transferred == "1009"
    assert session.variables["customer.found"] == "true"
    call.caller = "999"
    outcome = await IvrSession(flow, call, customer_lookup=host.customer_lookup).start()
    assert outcome.data["extension"] == "nobody"


# --- flows on calls, through a fake call-control seam -------------------------------------------

CUSTOMER = "5550100"
Logs = list[MutableMapping[str, Any]]  # structlog entries
MENU = """\
name: main
start: welcome
nodes:
  welcome: {type: play, prompt: welcome, next: menu}
  menu:
    type: menu
    prompt: main-menu
    options: {1: sales, 2: support}
    timeout: 4
    retries: 0
  sales: {type: queue, queue: sales, priority: "3", skills: [en]}
  support: {type: extension, extension: "1002"}
"""
PROMPTS = (
    "welcome",
    "main-menu",
    "invalid",
    "timeout",
    "voicemail-after-beep",
    "goodbye",
    "survey",
    "thank-you",
    "enter-number",
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config folder whose ``prompts/en`` holds a short silent WAV per prompt."""
    folder = tmp_path / "prompts" / "en"
    folder.mkdir(parents=True)
    for name in PROMPTS:
        soundfile.write(str(folder / f"{name}.wav"), np.zeros(800, np.int16), 8000)
    return tmp_path


def prompt(config_dir: Path, name: str) -> str:
    return str(config_dir / "prompts" / "en" / f"{name}.wav")


@pytest.fixture
def logs() -> Iterator[Logs]:
    """What the host and the engine log; a logged error (a subscriber or a flow that raised)
    fails the test."""
    with structlog.testing.capture_logs() as entries:
        yield entries
    errors = [e for e in entries if e["log_level"] in ("error", "critical")]
    assert not errors, errors


@pytest.fixture
def control() -> FakeCallControl:
    return FakeCallControl(extensions=["1002"])


@pytest.fixture
def ivr(control: FakeCallControl, config_dir: Path, logs: list[Any]) -> IvrHost:
    flow, problems = parse_flow(MENU, "main.yaml", base_dir=config_dir)
    assert flow is not None, [str(p) for p in problems]
    return IvrHost(cast(Any, control), None, Dialplan(), {"main": flow}, config_dir)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the flow's task (and files written in threads) to get there."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def nth_play(control: FakeCallControl, n: int, name: str = "play") -> tuple[Any, ...]:
    """The ``n``-th prompt (``play``) or tone (``play_tone``) started, once it is."""
    await until(lambda: len(control.named(name)) >= n)
    return control.named(name)[n - 1]


def plays_on(control: FakeCallControl, call: str) -> list[tuple[Any, ...]]:
    return [c for c in control.named("play") if c[1] == call]


def finished(logs: Logs) -> Logs:
    return [e for e in logs if e["event"] == "ivr_finished"]


async def test_a_menu_key_connects_the_caller_to_an_extension(
    control: FakeCallControl, ivr: IvrHost, config_dir: Path, logs: Logs
) -> None:
    call = control.arrive("ivr", "main", CUSTOMER, "4000")
    welcome = await nth_play(control, 1)
    assert welcome[1:3] == (call, [prompt(config_dir, "welcome")])
    control.finish_play(welcome[3])

    menu = await nth_play(control, 2)
    assert menu[2] == [prompt(config_dir, "main-menu")]
    control.press(call, "2")  # interrupts the menu prompt
    await until(lambda: ("connect_to", call, "1002") in control.commands)
    assert ("stop_play", menu[3]) in control.commands
    await until(lambda: bool(finished(logs)))
    assert finished(logs)[0]["outcome"] == "extension" and finished(logs)[0]["keys"] == "2"
    assert control.named("hangup") == []  # the call is the extension's now


async def test_an_extension_that_does_not_answer_hangs_the_caller_up(
    control: FakeCallControl, ivr: IvrHost
) -> None:
    call = control.arrive("ivr", "main", CUSTOMER, "4000")
    control.press(call, "2")  # type-ahead during the welcome
    await until(lambda: ("connect_to", call, "1002") in control.commands)
    control.fail_connect(call, 480)
    assert control.commands[-1] == ("hangup", call, "transfer_failed")
    assert control.snapshot(call).ended


async def test_a_queue_node_hands_the_caller_to_the_queue_service(
    control: FakeCallControl, ivr: IvrHost
) -> None:
    control.serve("queue")  # as the ACD host does
    arrivals: list[CallArrived] = []
    control.subscribe(lambda e: arrivals.append(e) if isinstance(e, CallArrived) else None)
    call = control.arrive("ivr", "main", CUSTOMER, "4000")
    control.press(call, "1")
    await until(lambda: ("route", call, "queue", "sales") in control.commands)
    handed = arrivals[-1]
    assert (handed.kind, handed.target, handed.priority, handed.skills) == (
        "queue",
        "sales",
        3,
        ("en",),
    )
    assert ("caller", CUSTOMER) in handed.variables  # the flow's variables travel along
    assert control.named("hangup") == []  # the caller is the queue's now


async def test_a_queue_nobody_serves_hangs_up(control: FakeCallControl, ivr: IvrHost) -> None:
    call = control.arrive("ivr", "main", CUSTOMER, "4000")
    control.press(call, "1")
    await until(lambda: ("hangup", call, "queue_unavailable") in control.commands)


async def test_the_caller_hanging_up_during_a_prompt_ends_the_session(
    control: FakeCallControl, ivr: IvrHost, logs: Logs
) -> None:
    call = control.arrive("ivr", "main", CUSTOMER, "4000")
    await nth_play(control, 1)
    control.end(call, side="caller")
    after = len(control.commands)
    await until(lambda: bool(finished(logs)))
    control.press(call, "1")  # too late: nobody listens
    await asyncio.sleep(0.05)
    assert control.commands[after:] == []  # no next prompt, no hang-up
    (done,) = finished(logs)
    assert done["outcome"] == "hangup" and done["data"]["by"] == "caller"
    assert control.named("hangup") == []  # the caller hung up; nothing to hang up


async def test_an_unknown_flow_hangs_up(control: FakeCallControl, ivr: IvrHost) -> None:
    call = control.arrive("ivr", "removed-by-reload", CUSTOMER, "4000")
    assert control.commands == [("hangup", call, "ivr_flow_missing")]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield s
    finally:
        await s.close()


async def record_message(control: FakeCallControl, call: str, config_dir: Path) -> np.ndarray:
    """Greeting, beep, then one second of the caller speaking into the tap; returns it."""
    greeting = await nth_play(control, 1)
    assert greeting[1:3] == (call, [prompt(config_dir, "voicemail-after-beep")])
    control.finish_play(greeting[3])
    beep = await nth_play(control, 1, "play_tone")
    assert beep[2] == "beep"
    control.finish_play(beep[3])
    await until(lambda: bool(control.named("tap")))
    spoken = np.arange(50 * 160, dtype=np.int16) % 2000  # 50 frames of 20 ms
    for frame in spoken.reshape(50, 160):
        control.speak(call, frame)
    return spoken


async def assert_stored(store: Store, call: str, spoken: np.ndarray, folder: Path) -> None:
    (message,) = await store.list_voicemails("2000")
    path = Path(message.path)
    assert path.parent == folder
    assert message.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (message.record_id, message.caller, message.seconds) == (call, CUSTOMER, 1.0)
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 8000 and np.array_equal(audio, spoken)


async def test_a_voicemail_ended_with_pound_is_stored_with_its_checksum(
    control: FakeCallControl, config_dir: Path, sqlite_store: Store, logs: Logs
) -> None:
    ivr = IvrHost(cast(Any, control), sqlite_store, Dialplan(), {}, config_dir)
    call = control.arrive("voicemail", "2000", CUSTOMER, "2000")
    spoken = await record_message(control, call, config_dir)
    control.press(call, "#")
    ((_, _, tap),) = control.named("tap")
    await until(lambda: ("stop_tap", tap) in control.commands)
    goodbye = await nth_play(control, 2)
    assert goodbye[2] == [prompt(config_dir, "goodbye")]
    control.finish_play(goodbye[3])
    await until(lambda: control.snapshot(call).ended)
    assert control.named("hangup") == [("hangup", call, "normal_clearing")]
    await ivr.drain()
    await assert_stored(sqlite_store, call, spoken, config_dir / "voicemail")


async def test_a_caller_hanging_up_after_the_message_loses_nothing(
    control: FakeCallControl, config_dir: Path, sqlite_store: Store, logs: Logs
) -> None:
    ivr = IvrHost(cast(Any, control), sqlite_store, Dialplan(), {}, config_dir)
    call = control.arrive("voicemail", "2000", CUSTOMER, "2000")
    spoken = await record_message(control, call, config_dir)
    control.end(call, side="caller")
    await until(lambda: bool(finished(logs)))
    await ivr.drain()
    await assert_stored(sqlite_store, call, spoken, config_dir / "voicemail")
    assert control.named("hangup") == []


SURVEY = """\
name: rate
start: ask
nodes:
  ask: {type: survey}
"""
CALLBACK = """\
name: callme
start: number
nodes:
  number: {type: callback}
"""
CALLBACK_TO_QUEUE = """\
name: callme-support
start: number
nodes:
  number: {type: callback, queue: support}
"""


def flows(config_dir: Path, *texts: str) -> dict[str, Flow]:
    out = {}
    for text in texts:
        flow, problems = parse_flow(text, base_dir=config_dir)
        assert flow is not None, [str(p) for p in problems]
        out[flow.name] = flow
    return out


async def test_a_survey_rating_is_stored_for_the_rated_call_and_agent(
    control: FakeCallControl, config_dir: Path, sqlite_store: Store, logs: Logs
) -> None:
    ivr = IvrHost(
        cast(Any, control), sqlite_store, Dialplan(), flows(config_dir, SURVEY), config_dir
    )
    # The caller is handed back after the agent hung up (continue_after_callee).
    rated = (("rated_call", "c-queue-7"), ("agent", "1001"))
    call = control.arrive("ivr", "rate", CUSTOMER, "1001", variables=rated)
    await nth_play(control, 1)
    control.press(call, "1")
    thanks = await nth_play(control, 2)
    assert thanks[2] == [prompt(config_dir, "thank-you")]
    control.finish_play(thanks[3])
    await until(lambda: control.snapshot(call).ended)
    await ivr.drain()
    (result,) = await sqlite_store.list_survey_results()
    assert (result.record_id, result.survey_record_id, result.agent) == ("c-queue-7", call, "1001")
    assert (result.result, result.digit, result.flow) == ("satisfied", "1", "rate")


async def test_a_callback_for_a_queue_goes_to_the_acd_and_one_without_to_the_store(
    control: FakeCallControl, config_dir: Path, sqlite_store: Store, logs: Logs
) -> None:
    taken: list[tuple[str, str, str, str]] = []

    def acd_takes(call_id: str, caller: str, queue: str, number: str) -> bool:
        taken.append((call_id, caller, queue, number))
        return True

    ivr = IvrHost(
        cast(Any, control),
        sqlite_store,
        Dialplan(),
        flows(config_dir, CALLBACK, CALLBACK_TO_QUEUE),
        config_dir,
        callback_requests=acd_takes,
    )

    async def ask_for_a_callback(flow: str) -> str:
        call = control.arrive("ivr", flow, CUSTOMER, "4000")
        await until(lambda: len(plays_on(control, call)) == 1)  # "enter your number"
        control.press(call, "#")  # "#" alone: call me back on this number
        await until(lambda: len(plays_on(control, call)) == 2)  # "thank you"
        control.finish_play(plays_on(control, call)[-1][3])
        await until(lambda: ("hangup", call, "normal_clearing") in control.commands)
        return call

    for_queue = await ask_for_a_callback("callme-support")
    await ask_for_a_callback("callme")
    await ivr.drain()
    assert taken == [(for_queue, CUSTOMER, "support", CUSTOMER)]
    (stored,) = await sqlite_store.list_callback_requests()
    assert (stored.number, stored.queue, stored.status) == (CUSTOMER, None, "pending")


async def test_mailbox_owner_deletes_a_message_and_phones_are_told(
    control: FakeCallControl, config_dir: Path, sqlite_store: Store, logs: Logs
) -> None:
    """A message is left (the SIP side hears the new count), the owner's *97 call arrives
    for the mailbox, the owner enters the PIN, deletes the message from its envelope: row
    and file gone, count back to 0."""
    boxes = {"2000": Mailbox("2000", "4711")}
    ivr = IvrHost(cast(Any, control), sqlite_store, Dialplan(), {}, config_dir, mailboxes=boxes)
    assert control.serves("mailbox")
    call = control.arrive("voicemail", "2000", CUSTOMER, "2000")
    await record_message(control, call, config_dir)
    control.press(call, "#")
    goodbye = await nth_play(control, 2)
    control.finish_play(goodbye[3])
    await until(lambda: ("message_waiting", "2000", 1, 0) in control.commands)
    (message,) = await sqlite_store.list_voicemails("2000")

    owner = control.arrive("mailbox", "2000", "2000", "*97")  # the SIP core answered *97
    ask_pin = await nth_play(control, 3)
    assert ask_pin[1] == owner and Path(ask_pin[2][0]).stem == "vm-enter-pin"
    for digit in "4711#":
        control.press(owner, digit)
    counts = await nth_play(control, 4)
    assert [Path(p).stem for p in counts[2]] == [
        "vm-you-have",
        "1",
        "vm-new-messages",
        "vm-and",
        "0",
        "vm-saved-messages",
    ]
    control.finish_play(counts[3])
    envelope = await nth_play(control, 5)
    assert Path(envelope[2][0]).stem == "vm-message"
    control.press(owner, "7")  # delete, during the envelope
    for n in (6, 7):  # "deleted", then "no more messages, goodbye"
        played = await nth_play(control, n)
        control.finish_play(played[3])
    await until(lambda: control.snapshot(owner).ended)
    await ivr.drain()
    assert await sqlite_store.list_voicemails("2000") == []
    assert not Path(message.path).exists()
    assert ("message_waiting", "2000", 0, 0) in control.commands
    (ended,) = [e for e in logs if e["event"] == "mailbox_menu_ended"]
    assert (ended["reason"], ended["deleted"]) == ("goodbye", 1)


def test_a_mailbox_greeting_replaces_the_standard_prompt(tmp_path: Path) -> None:
    soundfile.write(str(tmp_path / "hi.wav"), np.zeros(800, np.int16), 8000)
    boxes = {
        "1": Mailbox("1", "1234", greeting=tmp_path / "hi.wav", max_seconds=30.0),
        "2": Mailbox("2", None, greeting=tmp_path / "missing.wav"),
        "3": Mailbox("3", None),
    }
    host = IvrHost(cast(Any, FakeCallControl()), None, Dialplan(), {}, tmp_path, mailboxes=boxes)
    flow = host._voicemail_flow("1")
    greeting, record = flow.nodes["greeting"], flow.nodes["record"]
    assert flow.start == "greeting" and greeting.file == str(tmp_path / "hi.wav")  # type: ignore[union-attr]
    assert record.prompt is None and record.max_seconds == 30.0  # type: ignore[union-attr]
    # A greeting file that is gone falls back to the standard prompt (with a warning).
    assert host._voicemail_flow("2") is host.voicemail_flow
    assert host._voicemail_flow("3") is host.voicemail_flow

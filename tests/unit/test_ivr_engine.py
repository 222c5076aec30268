"""ivr.engine: an IVR session driven by a scripted fake call (no audio, no clock, no network
except a local webhook server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ivr import (
    CallerHungUp,
    DigitPressed,
    Flow,
    IvrEvent,
    IvrFinished,
    IvrResult,
    IvrSession,
    Outcome,
    parse_flow,
)

HANGUP = "HANGUP"


class FakeCall:
    """A scripted caller.

    ``script`` is consumed in order: ``"2"`` is pressed while the IVR waits for a digit
    (``collect_digit`` returns it; prompts play through it); ``"^2"`` is pressed during the
    next prompt that digit may interrupt (barge-in); ``None`` is a ``collect_digit`` timeout;
    ``HANGUP`` makes the next call raise :class:`CallerHungUp`. An exhausted script hangs up.
    """

    def __init__(self, script: list[str | None], caller: str = "5551234", did: str = "800") -> None:
        self.script = list(script)
        self._caller = caller
        self._did = did
        self.played: list[str] = []  # "<lang>/<prompt>" per item
        self.timeouts: list[float] = []
        self.transfers: list[str] = []
        self.surveys: list[str | None] = []
        self.recorded: list[tuple[Path, float, bool]] = []
        self.hung_up = 0

    @property
    def caller(self) -> str:
        return self._caller

    @property
    def did(self) -> str:
        return self._did

    def _next(self) -> str | None:
        if not self.script or self.script[0] == HANGUP:
            raise CallerHungUp
        item = self.script.pop(0)
        assert item is None or not item.startswith("^"), f"barge-in {item} never heard a prompt"
        return item

    async def play(self, items: list[str | Path], interrupt_digits: str) -> str | None:
        if self.script and self.script[0] == HANGUP:
            raise CallerHungUp
        for item in items:
            path = Path(item)
            self.played.append(f"{path.parent.name}/{path.stem}")
            head = self.script[0] if self.script else None
            if head is not None and head.startswith("^") and head[1:] in interrupt_digits:
                self.script.pop(0)
                return head[1:]
        return None

    async def collect_digit(self, timeout: float) -> str | None:
        self.timeouts.append(timeout)
        return self._next()

    async def record(self, path: Path, max_seconds: float, beep: bool) -> float:
        self.recorded.append((path, max_seconds, beep))
        return 7.5

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        self.transfers.append(destination)
        self.surveys.append(survey)

    async def hangup(self) -> None:
        self.hung_up += 1


def flow(text: str, **kw: Any) -> Flow:
    result, problems = parse_flow(text, "test.yaml", **kw)
    assert result is not None, [str(p) for p in problems]
    return result


async def run(
    text: str, script: list[str | None], **kw: Any
) -> tuple[IvrSession, FakeCall, Outcome]:
    call = FakeCall(script, **{k: kw.pop(k) for k in ("caller", "did") if k in kw})
    session = IvrSession(flow(text), call, **kw)
    outcome = await session.start()
    return session, call, outcome


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
    retries: 2
    fallback: bye
  sales: {type: queue, queue: sales, priority: "${prio}", skills: [en, "${skill}"]}
  support: {type: extension, extension: 1002}
  bye: {type: hangup, prompt: goodbye}
"""


async def test_menu_valid_key_reaches_extension() -> None:
    session, call, outcome = await run(MENU, ["2"])
    assert call.played == ["en/welcome", "en/main-menu"]
    assert call.timeouts == [4.0]
    assert outcome == Outcome("extension", {"extension": "1002"})
    assert call.transfers == ["1002"]
    assert call.hung_up == 0  # the host takes the call on
    assert session.key_trail == "2"
    assert session.visited == ["welcome", "menu", "support"]


async def test_digit_during_welcome_is_type_ahead_for_the_menu() -> None:
    session, call, outcome = await run(MENU, ["^1"], variables={"prio": "7", "skill": "vip"})
    assert call.played == ["en/welcome"]  # the menu prompt is skipped
    assert outcome == Outcome("queue", {"queue": "sales", "priority": 7, "skills": ["en", "vip"]})
    assert session.key_trail == "1"


async def test_menu_invalid_keys_retry_then_fallback() -> None:
    session, call, outcome = await run(MENU, [None, "9", "*", "5"])
    # welcome; menu; (no key) timeout; menu (interrupted by 9)... every failure plays a prompt
    assert call.played == [
        "en/welcome",
        "en/main-menu",
        "en/timeout",
        "en/main-menu",
        "en/invalid",
        "en/main-menu",
        "en/invalid",
        "en/goodbye",
    ]
    assert session.key_trail == "9*"
    assert call.script == ["5"]  # not consumed: the flow moved on to the fallback
    assert outcome.kind == "hangup" and outcome.data["cause"] == "normal"
    assert call.hung_up == 1


async def test_menu_timeouts_then_fallback_without_fallback_hangs_up() -> None:
    text = MENU.replace("    fallback: bye\n", "").replace("retries: 2", "retries: 1")
    session, call, outcome = await run(text, [None, None, None])
    assert call.played == [
        "en/welcome",
        "en/main-menu",
        "en/timeout",
        "en/main-menu",
        "en/timeout",
    ]
    assert call.timeouts == [4.0, 4.0]
    assert outcome == Outcome("hangup", {"by": "ivr", "cause": "menu_failed", "node": "menu"})
    assert call.hung_up == 1
    assert session.key_trail == ""


async def test_caller_hangs_up_in_menu() -> None:
    _, call, outcome = await run(MENU, [None, HANGUP])
    assert outcome == Outcome("hangup", {"by": "caller", "cause": "caller_hung_up", "node": "menu"})
    assert call.hung_up == 0


COLLECT = """\
name: acct
start: ask
nodes:
  ask:
    type: collect
    prompt: enter-number
    variable: account
    min_digits: 4
    max_digits: 6
    pattern: '[1-9][0-9]*'
    first_digit_timeout: 6
    inter_digit_timeout: 2
    retries: 1
    next: check
    fallback: bye
  check:
    type: branch
    conditions:
      - {variable: account, prefix: "9", next: vip}
    default: bye
  vip: {type: queue, queue: vip}
  bye: {type: hangup}
"""


async def test_collect_with_pound_terminator() -> None:
    session, call, outcome = await run(COLLECT, ["9", "1", "2", "3", "#"])
    assert session.variables["account"] == "9123"
    assert call.timeouts == [6.0, 2.0, 2.0, 2.0, 2.0]
    assert outcome.kind == "queue" and outcome.data["queue"] == "vip"
    assert session.key_trail == "9123#"


async def test_collect_max_digits_ends_without_terminator() -> None:
    session, _, outcome = await run(COLLECT, ["9", "1", "2", "3", "4", "5", "6"])
    assert session.variables["account"] == "912345"
    assert outcome.kind == "queue"
    assert session.key_trail == "912345"


async def test_collect_inter_digit_timeout_then_too_short_then_regex() -> None:
    # "12" then silence: too short → invalid; "0123#" fails the regex → invalid; no retries left.
    session, call, outcome = await run(COLLECT, ["1", "2", None, "0", "1", "2", "3", "#"])
    assert "account" not in session.variables
    assert call.played == ["en/enter-number", "en/invalid", "en/enter-number", "en/invalid"]
    assert outcome.kind == "hangup" and outcome.data["node"] == "bye"
    assert session.key_trail == "120123#"


async def test_collect_first_digit_timeout_plays_timeout_prompt() -> None:
    session, call, outcome = await run(COLLECT, [None, "5", "5", "5", "5", "#"])
    assert call.played == ["en/enter-number", "en/timeout", "en/enter-number"]
    assert session.variables["account"] == "5555"
    assert outcome.kind == "hangup"  # branch default: not a 9xxx account
    assert call.timeouts[:2] == [6.0, 6.0]


BRANCH = """\
name: hours
start: check
nodes:
  check:
    type: branch
    conditions:
      - {variable: caller, one_of: ["666"], next: blocked}
      - {time: office_hours, next: open}
      - {variable: vip, next: open}
    default: closed
  open: {type: queue, queue: support}
  closed: {type: voicemail, mailbox: "support", next: thanks}
  thanks: {type: hangup, prompt: thank-you}
  blocked: {type: hangup, cause: blacklisted}
"""


def office_hours(now_holder: list[datetime]) -> Callable[[str, datetime], bool]:
    def check(name: str, now: datetime) -> bool:
        now_holder.append(now)
        return name == "office_hours" and now.weekday() < 5 and 9 <= now.hour < 17

    return check


@pytest.mark.parametrize(
    ("now", "kind"),
    [
        (datetime(2024, 3, 5, 10, 0, tzinfo=UTC), "queue"),  # Tuesday 10:00
        (datetime(2024, 3, 5, 20, 0, tzinfo=UTC), "voicemail"),  # Tuesday 20:00
        (datetime(2024, 3, 9, 10, 0, tzinfo=UTC), "voicemail"),  # Saturday
    ],
)
async def test_branch_on_time_condition_with_fixed_clock(
    now: datetime, kind: str, tmp_path: Path
) -> None:
    seen: list[datetime] = []
    _, call, outcome = await run(
        BRANCH,
        [],
        now_fn=lambda: now,
        time_condition=office_hours(seen),
        voicemail_dir=tmp_path,
    )
    assert seen == [now]
    assert outcome.kind == kind
    if kind == "voicemail":
        path, max_seconds, beep = call.recorded[0]
        assert path.parent == tmp_path and path.name.startswith("support-")
        assert (max_seconds, beep) == (120.0, True)
        assert outcome.data == {"mailbox": "support", "path": str(path), "seconds": 7.5}
        assert call.played == ["en/voicemail-after-beep", "en/thank-you"]
        assert call.hung_up == 1


async def test_branch_on_caller_and_variables() -> None:
    _, _, outcome = await run(BRANCH, [], caller="666", time_condition=lambda n, t: True)
    assert outcome.data["cause"] == "blacklisted"
    _, _, outcome = await run(
        BRANCH, [], variables={"vip": "yes"}, time_condition=lambda n, t: False
    )
    assert outcome.kind == "queue"


SURVEY = """\
name: survey
start: rate
nodes:
  rate: {type: survey, retries: 0, next: bye}
  bye: {type: hangup, prompt: goodbye}
"""


@pytest.mark.parametrize(
    ("script", "result", "digit"),
    [
        (["1"], "satisfied", "1"),
        (["^3"], "unsatisfied", "3"),
        (["7"], "invalid key", "7"),
        ([None], "no rating entered", None),
        ([HANGUP], "hung up without rating", None),
    ],
)
async def test_survey_outcomes(script: list[str | None], result: str, digit: str | None) -> None:
    session, call, outcome = await run(SURVEY, script)
    assert outcome == Outcome("survey_result", {"result": result, "digit": digit})
    assert session.key_trail == (digit or "")
    if result in ("satisfied", "unsatisfied"):
        assert call.played[-2:] == ["en/thank-you", "en/goodbye"]


@pytest.mark.parametrize("script", [["1"], [HANGUP]])
async def test_survey_result_is_reported_when_it_happens(script: list[str | None]) -> None:
    """The host stores a survey result from an IvrResult event, also when the caller hangs
    up during the survey (the flow never reaches a normal end then)."""
    events: list[object] = []
    await run(SURVEY, script, on_event=events.append)
    results = [e for e in events if isinstance(e, IvrResult)]
    assert len(results) == 1 and results[0].node == "rate"
    expected = "satisfied" if script == ["1"] else "hung up without rating"
    assert results[0].outcome.data["result"] == expected


async def test_extension_node_passes_its_survey_to_the_host() -> None:
    text = "name: m\nstart: x\nnodes:\n  x: {type: extension, extension: '1003', survey: rate}\n"
    _, call, outcome = await run(text, [])
    assert call.transfers == ["1003"] and call.surveys == ["rate"]
    assert outcome == Outcome("extension", {"extension": "1003", "survey": "rate"})


async def test_survey_retries_an_invalid_key() -> None:
    text = SURVEY.replace("retries: 0", "retries: 1")
    session, call, outcome = await run(text, ["8", "2"])
    assert outcome.data == {"result": "neutral", "digit": "2"}
    assert call.played[:3] == ["en/survey", "en/invalid", "en/survey"]
    assert session.key_trail == "82"


async def test_key_trail_events_and_language_switch() -> None:
    text = """\
name: lang
start: pick
nodes:
  pick:
    type: menu
    prompt: welcome
    options: {1: en, 2: zh}
    fallback: en
  zh: {type: language, language: zh, next: amount}
  en: {type: language, language: en, next: amount}
  amount: {type: say, kind: number, value: "${total}", next: date}
  date: {type: say, kind: date, value: "2024-03-05", language: en, next: menu}
  menu:
    type: menu
    prompt: main-menu
    options: {1: done}
  done: {type: hangup, prompt: goodbye}
"""
    events: list[IvrEvent] = []
    session, call, outcome = await run(
        text, ["2", "1"], variables={"total": "1234"}, on_event=events.append
    )
    assert call.played == [
        "en/welcome",
        "zh/1",
        "zh/qian",
        "zh/2",
        "zh/bai",
        "zh/3",
        "zh/shi",
        "zh/4",
        "en/month-3",
        "en/ord-5",
        "en/twenty",
        "en/twenty",
        "en/4",
        "zh/main-menu",
        "zh/goodbye",
    ]
    assert session.key_trail == "21"
    assert session.language == "zh"
    assert [e.digit for e in events if isinstance(e, DigitPressed)] == ["2", "1"]
    assert [e.node for e in events if isinstance(e, DigitPressed)] == ["pick", "menu"]
    finished = [e for e in events if isinstance(e, IvrFinished)]
    assert finished == [IvrFinished("lang", outcome, "21")]


async def test_set_and_callback_with_caller_id(tmp_path: Path) -> None:
    text = """\
name: cb
start: setq
nodes:
  setq: {type: set, variables: {q: "sales-${did}"}, next: cb}
  cb: {type: callback, queue: "${q}", next: bye}
  bye: {type: hangup}
"""
    _, call, outcome = await run(text, ["#"], did="800")
    assert outcome == Outcome("callback", {"number": "5551234", "queue": "sales-800"})
    assert call.played == ["en/enter-number", "en/thank-you"]
    _, _, outcome = await run(text, ["5", "5", "5", "0", "1", "#"])
    assert outcome.data["number"] == "55501"
    _, _, outcome = await run(text, ["5", "#", None, None])
    assert outcome.kind == "hangup" and outcome.data["cause"] == "callback_failed"


LOOKUP = """\
name: lookup
start: find
nodes:
  find:
    type: lookup
    source: customer
    timeout: 1
    next: greet
    not_found: anon
    fallback: broken
  greet:
    type: branch
    conditions:
      - {variable: customer.tier, equals: gold, next: gold}
    default: anon
  gold: {type: queue, queue: gold, priority: "${customer.priority}"}
  anon: {type: queue, queue: general}
  broken: {type: queue, queue: fallback}
"""


async def test_customer_lookup_found_not_found_and_failing() -> None:
    async def lookup(caller: str) -> Mapping[str, Any] | None:
        if caller == "111":
            return {"name": "Ada", "tier": "gold", "priority": 9}
        if caller == "222":
            raise RuntimeError("store down")
        return None

    session, _, outcome = await run(LOOKUP, [], caller="111", customer_lookup=lookup)
    assert outcome.data == {"queue": "gold", "priority": 9, "skills": []}
    assert session.variables["customer.name"] == "Ada"
    assert session.variables["customer.found"] == "true"
    session, _, outcome = await run(LOOKUP, [], caller="333", customer_lookup=lookup)
    assert outcome.data["queue"] == "general"
    assert session.variables["customer.found"] == "false"
    _, _, outcome = await run(LOOKUP, [], caller="222", customer_lookup=lookup)
    assert outcome.data["queue"] == "fallback"
    _, _, outcome = await run(LOOKUP, [], caller="111")  # no lookup configured: fallback
    assert outcome.data["queue"] == "fallback"


@pytest.fixture
async def webhook_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny HTTP server: /crm answers JSON, /slow never answers, /missing is a 404."""
    requests: list[dict[str, Any]] = []
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            body = await reader.readexactly(int(headers.get("Content-Length", "0")))
            requests.append({"method": method, "target": target, "body": body})
            if target.startswith("/slow"):
                await asyncio.sleep(30)
            if target.startswith("/missing"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                payload = json.dumps({"tier": "gold", "priority": 4, "name": "Lin"}).encode()
                chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        server.close()
        for task in handlers:  # handlers stuck in /slow
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def webhook_flow(url: str) -> str:
    return LOOKUP.replace("source: customer", f"source: webhook\n    url: {url}").replace(
        "timeout: 1", "timeout: 0.3"
    )


async def test_webhook_lookup_post_get_404_and_timeout(
    webhook_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, requests = webhook_server
    session, _, outcome = await run(webhook_flow(f"{base}/crm"), [], caller="111", did="800")
    assert outcome.data == {"queue": "gold", "priority": 4, "skills": []}
    assert session.variables["customer.name"] == "Lin"
    assert requests[0]["method"] == "POST"
    sent = json.loads(requests[0]["body"])
    assert (sent["caller"], sent["did"], sent["flow"]) == ("111", "800", "lookup")

    text = webhook_flow(f"{base}/crm").replace("    timeout:", "    method: GET\n    timeout:")
    _, _, outcome = await run(text, [], caller="111")
    assert outcome.data["queue"] == "gold"
    assert requests[1]["method"] == "GET" and "caller=111" in requests[1]["target"]

    _, _, outcome = await run(webhook_flow(f"{base}/missing"), [])
    assert outcome.data["queue"] == "general"  # 404: not found

    session, _, outcome = await run(webhook_flow(f"{base}/slow"), [])
    assert outcome.data["queue"] == "fallback"  # timeout
    assert session.variables["customer.found"] == "false"


async def test_webhook_unreachable_takes_fallback() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    _, _, outcome = await run(webhook_flow(f"http://127.0.0.1:{port}/x"), [])
    assert outcome.data["queue"] == "fallback"


async def test_running_session_keeps_its_flow_object() -> None:
    original = flow(MENU)
    call = FakeCall(["2"])
    session = IvrSession(original, call)
    flows = {"main": original}
    task = session.start()
    flows["main"] = flow(MENU.replace("extension: 1002", "extension: 2002"))  # a reload
    outcome = await task
    assert outcome.data == {"extension": "1002"}
    assert session.flow is original


async def test_loop_without_input_is_bounded() -> None:
    text = """\
name: spin
start: a
nodes:
  a: {type: set, variables: {x: "1"}, next: b}
  b: {type: branch, conditions: [{next: a}], default: a}
"""
    _, call, outcome = await run(text, [], max_steps=50)
    assert outcome.data["cause"] == "loop"
    assert call.hung_up == 1


async def test_play_file_and_tts(tmp_path: Path) -> None:
    import shutil

    from ivr import TtsCache
    from ivr.model import DEFAULT_PROMPTS_DIR

    shutil.copy(DEFAULT_PROMPTS_DIR / "en" / "welcome.wav", tmp_path / "hello.wav")
    text = """\
name: f
start: a
nodes:
  a: {type: play, file: hello.wav, next: b}
  b: {type: tts, text: "Your balance is ${bal}", next: c}
  c: {type: hangup}
"""
    fl = flow(text, base_dir=tmp_path, espeak_available=True)
    call = FakeCall([])

    class FakeTts(TtsCache):
        async def synthesize(self, text: str, voice: str) -> Path:
            self.asked = (text, voice)
            return tmp_path / "tts" / "x.wav"

    tts = FakeTts(tmp_path / "tts")
    session = IvrSession(fl, call, {"bal": "12"}, tts=tts)
    await session.start()
    assert call.played == ["tmp_path_name/hello".replace("tmp_path_name", tmp_path.name), "tts/x"]
    assert tts.asked == ("Your balance is 12", "en")


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng not installed")
async def test_tts_cache_runs_espeak_once(tmp_path: Path) -> None:
    from ivr import TtsCache

    tts = TtsCache(tmp_path)
    first = await tts.synthesize("hello", "en")
    stamp = first.stat().st_mtime_ns
    second = await tts.synthesize("hello", "en")
    assert first == second and first.stat().st_size > 1000
    assert second.stat().st_mtime_ns == stamp


DIAL_BY_NUMBER = """\
name: dial
start: ask
nodes:
  ask:
    type: collect
    prompt: enter-number
    variable: target
    min_digits: 3
    max_digits: 12
    next: go
  go: {type: transfer, destination: "number:${target}"}
"""


async def test_an_outside_number_is_only_dialled_where_the_flow_writes_it() -> None:
    """Toll fraud: ``number:`` (an outside number through the trunks) must be written in
    the flow; one built from the caller's digits is refused (an empty destination, which
    connects nowhere), as is an extension node given one."""
    literal = DIAL_BY_NUMBER.replace('"number:${target}"', '"number:90612345678"')
    _, call, _ = await run(literal, ["1", "2", "3", "#"])
    assert call.transfers == ["number:90612345678"]
    _, call, _ = await run(DIAL_BY_NUMBER, ["9", "0", "0", "4", "4", "#"])
    assert call.transfers == [""]
    as_extension = DIAL_BY_NUMBER.replace(
        'type: transfer, destination: "number:${target}"', 'type: extension, extension: "${target}"'
    )
    _, call, _ = await run(as_extension, ["9", "0", "0", "#"])
    assert call.transfers == ["900"]  # an extension only: pbx_call never dials it outside

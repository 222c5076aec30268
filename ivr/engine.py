"""Run an IVR flow on one call.

Theory of operation
-------------------
An :class:`IvrSession` walks the node graph of one :class:`~ivr.model.Flow`, starting at
``flow.start``. Each node's handler talks to the call only through the small
:class:`IvrCall` protocol the host implements (play prompts, wait for one digit, record,
transfer, hang up) and returns the name of the next node, or ``None`` when the flow ends.
The session never reads a clock for timeouts: it passes them to ``collect_digit(timeout)``,
so a test double can drive it with scripted digits and no waiting. Wall-clock time is only
used for branch time conditions (``now_fn``, injectable) and voicemail file names.

Digits:

- Every digit the caller presses while the flow runs is appended to the *key trail*
  (``session.key_trail``), including invalid and interrupting ones, in order.
- A digit that interrupts a ``play``/``say``/``tts`` node is kept as *type-ahead* and is the
  first input of the next menu/collect/survey node (so "press 2" works during the welcome).

Menus and collects follow the configuration exactly: one first attempt plus ``retries``
more; an invalid entry plays ``invalid_prompt``, silence plays ``timeout_prompt``, and after
the last failed attempt the flow goes to ``fallback`` (or hangs up if there is none).

Ending: routing nodes (``queue``, ``extension``, ``transfer``) end the session with an
:class:`~ivr.model.Outcome` and leave the call up for the host; every other end hangs the
call up. ``voicemail``, ``callback`` and ``survey`` record their outcome and may continue
(``next``) with, say, a thank-you. If the caller hangs up, ``IvrCall`` raises
:class:`CallerHungUp`; the outcome becomes ``hangup`` (by caller), or for a survey in
progress ``survey_result: hung up without rating``.

A session keeps the ``Flow`` object it was started with; reloading flows swaps the host's
dict of flows, never a running session's graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from ivr.model import (
    DTMF_KEYS,
    BranchNode,
    CallbackNode,
    CollectNode,
    Condition,
    ExtensionNode,
    Flow,
    HangupNode,
    LanguageNode,
    LookupNode,
    MenuNode,
    Outcome,
    PlayNode,
    QueueNode,
    SayNode,
    SetNode,
    SurveyNode,
    TransferNode,
    TtsNode,
    VoicemailNode,
)
from ivr.say import say
from ivr.webhook import http_json

__all__ = [
    "CallerHungUp",
    "CustomerLookup",
    "DigitPressed",
    "IvrCall",
    "IvrEvent",
    "IvrFinished",
    "IvrResult",
    "IvrSession",
    "NodeEntered",
    "PromptMissing",
    "TimeCondition",
    "TtsCache",
    "TtsError",
    "Webhook",
]

log = structlog.get_logger("ivr")

_TEMPLATE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
# Outcomes after which the host takes the call on, so the session must not hang it up.
_ROUTED = ("queue", "extension", "transfer")


class CallerHungUp(Exception):
    """Raised by :class:`IvrCall` methods when the caller has gone."""


class IvrCall(Protocol):
    """What an IVR session needs from a call; the host implements it on a B2BUA leg."""

    @property
    def caller(self) -> str:
        """The caller's number (user part of From / P-Asserted-Identity)."""
        ...

    @property
    def did(self) -> str:
        """The called number."""
        ...

    async def play(self, items: list[str | Path], interrupt_digits: str) -> str | None:
        """Play files back to back; return the digit that interrupted them, if any (only
        digits in ``interrupt_digits`` interrupt). Raise :class:`CallerHungUp` on hang-up."""
        ...

    async def collect_digit(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for one digit; None on timeout."""
        ...

    async def record(self, path: Path, max_seconds: float, beep: bool) -> float:
        """Record the caller into ``path`` (after a beep); return seconds recorded. Ends on
        ``#``, silence or ``max_seconds``; a hang-up after some audio still returns normally."""
        ...

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        """Connect the caller to ``destination`` (an extension or dialplan target). With
        ``survey`` (a flow name), a callee hanging up sends the caller to that flow."""
        ...

    async def hangup(self) -> None:
        """Hang the call up."""
        ...


@dataclass(frozen=True, slots=True)
class NodeEntered:
    """The session entered ``node``."""

    flow: str
    node: str
    type: str


@dataclass(frozen=True, slots=True)
class DigitPressed:
    """The caller pressed ``digit`` while the session was at ``node``."""

    flow: str
    node: str
    digit: str


@dataclass(frozen=True, slots=True)
class PromptMissing:
    """A prompt name did not resolve at run time (e.g. a say word missing from a set)."""

    flow: str
    node: str
    prompt: str
    language: str


@dataclass(frozen=True, slots=True)
class IvrFinished:
    """The session ended with ``outcome``."""

    flow: str
    outcome: Outcome
    key_trail: str


@dataclass(frozen=True, slots=True)
class IvrResult:
    """A node produced a result for the host to keep (``voicemail``, ``callback`` or
    ``survey_result``), at the moment it happened — the flow may go on afterwards."""

    flow: str
    node: str
    outcome: Outcome


IvrEvent = NodeEntered | DigitPressed | PromptMissing | IvrResult | IvrFinished
TimeCondition = Callable[[str, datetime], bool]
CustomerLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]
Webhook = Callable[[str, str, Mapping[str, Any], float], Awaitable[Mapping[str, Any] | None]]


class TtsError(Exception):
    """espeak-ng failed or is missing."""


class TtsCache:
    """Text to WAV with espeak-ng, cached on disk by (voice, text)."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        executable: str = "espeak-ng",
        timeout: float = 15.0,
    ) -> None:
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "switchboard-tts"
        self.executable = executable
        self.timeout = timeout

    async def synthesize(self, text: str, voice: str) -> Path:
        """The WAV file speaking ``text`` with ``voice``; generated on first use."""
        key = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:32]
        path = self.cache_dir / f"{key}.wav"
        if path.is_file():
            return path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f"{key}.{secrets.token_hex(4)}.tmp"
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                "-v",
                voice,
                "-w",
                str(tmp),
                "--stdin",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise TtsError(f"cannot run {self.executable}: {exc}") from None
        try:
            _, err = await asyncio.wait_for(proc.communicate(text.encode()), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TtsError(f"{self.executable} took longer than {self.timeout:g} s") from None
        if proc.returncode != 0 or not tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise TtsError(f"{self.executable} failed: {err.decode(errors='replace').strip()}")
        os.replace(tmp, path)  # atomic: a concurrent reader sees a whole file or none
        return path


def _with_survey(data: dict[str, Any], survey: str | None) -> dict[str, Any]:
    """Routing outcome data, naming the post-call survey flow when the node has one."""
    if survey is not None:
        data["survey"] = survey
    return data


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IvrSession:
    """One run of ``flow`` on ``call``.

    ``variables`` seed the flow's variables (``caller``, ``did`` and ``language`` are always
    set). ``now_fn`` gives the time for branch time conditions, evaluated by the host's
    ``time_condition(name, now)``. ``customer_lookup(caller)`` serves ``lookup`` nodes with
    ``source: customer``; ``webhook(url, method, payload, timeout)`` serves
    ``source: webhook`` (default: :func:`ivr.webhook.http_json`). ``voicemail_dir`` is where
    recordings are written. ``on_event`` receives :data:`IvrEvent` values.
    """

    def __init__(
        self,
        flow: Flow,
        call: IvrCall,
        variables: Mapping[str, str] | None = None,
        now_fn: Callable[[], datetime] | None = None,
        *,
        time_condition: TimeCondition | None = None,
        customer_lookup: CustomerLookup | None = None,
        webhook: Webhook = http_json,
        tts: TtsCache | None = None,
        voicemail_dir: Path | None = None,
        on_event: Callable[[IvrEvent], None] | None = None,
        max_steps: int = 1000,
    ) -> None:
        self.flow = flow
        self.call = call
        self.language: str = flow.language
        self.variables: dict[str, str] = {
            "caller": call.caller,
            "did": call.did,
            "language": flow.language,
            **(variables or {}),
        }
        self.outcome: Outcome | None = None
        self.current_node: str | None = None
        self.visited: list[str] = []
        self._keys: list[str] = []
        self._pending: str | None = None
        self._hung_up = False
        self._now = now_fn or _utc_now
        self._time_condition = time_condition
        self._customer_lookup = customer_lookup
        self._webhook = webhook
        self._tts = tts
        self._voicemail_dir = voicemail_dir or Path(tempfile.gettempdir()) / "switchboard-vm"
        self._on_event = on_event
        self._max_steps = max_steps
        self._task: asyncio.Task[Outcome] | None = None

    # --- public ------------------------------------------------------------------------------

    @property
    def key_trail(self) -> str:
        """Every digit pressed during the flow, in order (e.g. ``"2*91#"``)."""
        return "".join(self._keys)

    def start(self) -> asyncio.Task[Outcome]:
        """Run the flow as a task (once) and return it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"ivr-{self.flow.name}"
            )
        return self._task

    def cancel(self) -> None:
        """Stop the flow (e.g. the call ended elsewhere); the outcome becomes a hang-up."""
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> Outcome:
        """Run the flow to its end and return the outcome (also kept in ``outcome``)."""
        try:
            await self._walk()
        except CallerHungUp:
            self._hung_up = True
            if self.outcome is None:
                self.outcome = Outcome(
                    "hangup", {"by": "caller", "cause": "caller_hung_up", "node": self.current_node}
                )
        except asyncio.CancelledError:
            if self.outcome is None:
                self.outcome = Outcome(
                    "hangup", {"by": "ivr", "cause": "cancelled", "node": self.current_node}
                )
            self._finished()
            raise
        except Exception as exc:  # a bug must not leave the caller in silence
            log.exception("ivr.failed", flow=self.flow.name, node=self.current_node)
            self.outcome = Outcome("error", {"error": repr(exc), "node": self.current_node})
            await self._hangup_quietly()
        self._finished()
        assert self.outcome is not None
        return self.outcome

    # --- the walk ----------------------------------------------------------------------------

    async def _walk(self) -> None:
        name: str | None = self.flow.start
        steps = 0
        while name is not None:
            steps += 1
            if steps > self._max_steps:
                # A cycle without any caller input (set → branch → set ...) would spin forever.
                log.warning("ivr.loop_detected", flow=self.flow.name, node=name)
                self.outcome = Outcome("hangup", {"by": "ivr", "cause": "loop", "node": name})
                break
            node = self.flow.nodes[name]
            self.current_node = name
            self.visited.append(name)
            self._emit(NodeEntered(self.flow.name, name, node.type))
            handler = getattr(self, f"_node_{node.type}")
            name = await handler(node)
        if self.outcome is None:
            self.outcome = Outcome(
                "hangup", {"by": "ivr", "cause": "end_of_flow", "node": self.current_node}
            )
        if self.outcome.kind not in _ROUTED:
            await self._hangup()

    def _finished(self) -> None:
        assert self.outcome is not None
        log.info(
            "ivr.finished",
            flow=self.flow.name,
            outcome=self.outcome.kind,
            node=self.current_node,
            key_trail=self.key_trail,
        )
        self._emit(IvrFinished(self.flow.name, self.outcome, self.key_trail))

    # --- node handlers -------------------------------------------------------------------------

    async def _node_play(self, node: PlayNode) -> str | None:
        if node.file is not None:
            items: list[str | Path] = [self.flow.base_dir / node.file]
        else:
            items = self._prompts(node.prompt)
        await self._play(items, node.interruptible, keep=True)
        return node.next

    async def _node_say(self, node: SayNode) -> str | None:
        language = node.language or self.language
        value = self._expand(node.value)
        try:
            names = say(node.kind, value, language)
        except ValueError as exc:
            log.warning(
                "ivr.say_failed", flow=self.flow.name, node=self.current_node, error=str(exc)
            )
            return node.next
        items = self._prompts(names, language)
        await self._play(items, node.interruptible, keep=True)
        return node.next

    async def _node_tts(self, node: TtsNode) -> str | None:
        voice = node.voice or ("cmn" if self.language == "zh" else "en")
        tts = self._tts or TtsCache()
        try:
            path = await tts.synthesize(self._expand(node.text), voice)
        except TtsError as exc:
            log.warning(
                "ivr.tts_failed", flow=self.flow.name, node=self.current_node, error=str(exc)
            )
            return node.next
        await self._play([path], node.interruptible, keep=True)
        return node.next

    async def _node_menu(self, node: MenuNode) -> str | None:
        failures = 0
        while True:
            digit = await self._first_digit(node.prompt, node.timeout)
            if digit is not None and digit in node.options:
                return node.options[digit]
            failures += 1
            retry_prompt = node.invalid_prompt if digit is not None else node.timeout_prompt
            log.info(
                "ivr.menu_retry",
                flow=self.flow.name,
                node=self.current_node,
                reason="invalid" if digit is not None else "timeout",
                failures=failures,
            )
            last = failures > node.retries
            if retry_prompt is not None:
                await self._play(self._prompts(retry_prompt), True, keep=not last)
            if last:
                return await self._fallback(node.fallback, "menu_failed")

    async def _node_collect(self, node: CollectNode) -> str | None:
        pattern = re.compile(node.pattern) if node.pattern is not None else None
        failures = 0
        while True:
            digits, ended = await self._read_digits(
                node.prompt,
                node.max_digits,
                node.terminator,
                node.first_digit_timeout,
                node.inter_digit_timeout,
            )
            nothing = ended == "nothing"
            if nothing and node.min_digits == 0:
                ended = "timeout"  # no input is a valid empty entry
            valid = (
                ended != "nothing"
                and node.min_digits <= len(digits) <= node.max_digits
                and (pattern is None or pattern.fullmatch(digits) is not None)
            )
            if valid:
                self.variables[node.variable] = digits
                return node.next
            failures += 1
            last = failures > node.retries
            retry_prompt = node.timeout_prompt if nothing else node.invalid_prompt
            if retry_prompt is not None:
                await self._play(self._prompts(retry_prompt), True, keep=not last)
            if last:
                return await self._fallback(node.fallback, "collect_failed")

    async def _node_set(self, node: SetNode) -> str | None:
        for key, value in node.variables.items():
            self.variables[key] = self._expand(value)
        return node.next

    async def _node_branch(self, node: BranchNode) -> str | None:
        for condition in node.conditions:
            if self._holds(condition):
                return condition.next
        return node.default

    async def _node_lookup(self, node: LookupNode) -> str | None:
        try:
            if node.source == "customer":
                if self._customer_lookup is None:
                    raise LookupError("no customer lookup configured on this server")
                result = await asyncio.wait_for(
                    self._customer_lookup(self.variables["caller"]), node.timeout
                )
            else:
                assert node.url is not None
                payload: dict[str, Any] = {
                    "caller": self.variables["caller"],
                    "did": self.variables["did"],
                    "flow": self.flow.name,
                }
                if node.method == "POST":
                    payload["variables"] = dict(self.variables)
                # The webhook enforces the timeout; the outer bound covers injected ones.
                result = await asyncio.wait_for(
                    self._webhook(node.url, node.method, payload, node.timeout),
                    node.timeout + 1.0,
                )
        except Exception as exc:
            log.warning(
                "ivr.lookup_failed",
                flow=self.flow.name,
                node=self.current_node,
                source=node.source,
                error=str(exc) or type(exc).__name__,
            )
            self.variables[f"{node.into}.found"] = "false"
            return node.fallback or node.not_found or node.next
        if not result:
            self.variables[f"{node.into}.found"] = "false"
            return node.not_found or node.next
        for key, value in result.items():
            self.variables[f"{node.into}.{key}"] = _text(value)
        self.variables[f"{node.into}.found"] = "true"
        return node.next

    async def _node_queue(self, node: QueueNode) -> str | None:
        await self._play(self._prompts(node.prompt), False)
        raw_priority = self._expand(node.priority).strip()
        try:
            priority = int(raw_priority or 0)
        except ValueError:
            log.warning("ivr.bad_priority", flow=self.flow.name, value=raw_priority)
            priority = 0
        skills = [s for s in (self._expand(x).strip() for x in node.skills) if s]
        self.outcome = Outcome(
            "queue",
            _with_survey(
                {"queue": self._expand(node.queue), "priority": priority, "skills": skills},
                node.survey,
            ),
        )
        return None

    async def _node_extension(self, node: ExtensionNode) -> str | None:
        await self._play(self._prompts(node.prompt), False)
        extension = self._expand(node.extension).removeprefix("number:")
        await self.call.transfer(extension, node.survey)
        self.outcome = Outcome("extension", _with_survey({"extension": extension}, node.survey))
        return None

    async def _node_transfer(self, node: TransferNode) -> str | None:
        await self._play(self._prompts(node.prompt), False)
        destination = self._expand(node.destination)
        if destination.startswith("number:") and (
            "${" in node.destination or not node.destination.startswith("number:")
        ):
            # Toll fraud: only a number written in the flow dials outside, never one made
            # of the caller's digits or a variable's value.
            log.warning("ivr_outside_transfer_refused", destination=destination)
            destination = ""
        await self.call.transfer(destination, node.survey)
        self.outcome = Outcome("transfer", _with_survey({"destination": destination}, node.survey))
        return None

    async def _node_voicemail(self, node: VoicemailNode) -> str | None:
        mailbox = self._expand(node.mailbox) if node.mailbox is not None else self.variables["did"]
        await self._play(self._prompts(node.prompt), False)
        stamp = self._now().strftime("%Y%m%dT%H%M%S")
        safe_box = re.sub(r"[^\w.-]", "_", mailbox) or "mailbox"
        self._voicemail_dir.mkdir(parents=True, exist_ok=True)
        path = self._voicemail_dir / f"{safe_box}-{stamp}-{secrets.token_hex(4)}.wav"
        seconds = await self.call.record(path, node.max_seconds, node.beep)
        self._result(
            Outcome("voicemail", {"mailbox": mailbox, "path": str(path), "seconds": float(seconds)})
        )
        return node.next

    async def _node_callback(self, node: CallbackNode) -> str | None:
        failures = 0
        while True:
            digits, ended = await self._read_digits(
                node.prompt,
                node.max_digits,
                "#",
                node.first_digit_timeout,
                node.inter_digit_timeout,
            )
            if not digits and ended == "terminator" and node.use_caller_id:
                digits = self.variables["caller"]  # "#" alone: call me back on this number
            if ended != "nothing" and node.min_digits <= len(digits) and digits.isdigit():
                queue = self._expand(node.queue) if node.queue is not None else None
                self._result(Outcome("callback", {"number": digits, "queue": queue}))
                await self._play(self._prompts(node.confirm_prompt), False)
                return node.next
            failures += 1
            last = failures > node.retries
            retry_prompt = node.timeout_prompt if ended == "nothing" else node.invalid_prompt
            if retry_prompt is not None:
                await self._play(self._prompts(retry_prompt), True, keep=not last)
            if last:
                return await self._fallback(node.fallback, "callback_failed")

    async def _node_survey(self, node: SurveyNode) -> str | None:
        failures = 0
        digit: str | None = None
        try:
            while True:
                digit = await self._first_digit(node.prompt, node.timeout)
                if digit is not None and digit in node.options:
                    result: str = node.options[digit]
                    break
                failures += 1
                if failures > node.retries:
                    result = "invalid key" if digit is not None else "no rating entered"
                    break
                if digit is not None and node.invalid_prompt is not None:
                    await self._play(self._prompts(node.invalid_prompt), True, keep=True)
        except CallerHungUp:
            self._result(
                Outcome("survey_result", {"result": "hung up without rating", "digit": None})
            )
            raise
        self._result(Outcome("survey_result", {"result": result, "digit": digit}))
        if result in node.options.values():
            await self._play(self._prompts(node.thanks_prompt), False)
        return node.next

    async def _node_language(self, node: LanguageNode) -> str | None:
        self.language = node.language
        self.variables["language"] = node.language
        return node.next

    async def _node_hangup(self, node: HangupNode) -> str | None:
        await self._play(self._prompts(node.prompt), False)
        if self.outcome is None:
            self.outcome = Outcome(
                "hangup", {"by": "ivr", "cause": node.cause, "node": self.current_node}
            )
        return None

    # --- helpers -------------------------------------------------------------------------------

    def _result(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._emit(IvrResult(self.flow.name, self.current_node or "", outcome))

    def _emit(self, event: IvrEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("ivr.event_hook_failed", flow=self.flow.name)

    def _key(self, digit: str) -> None:
        self._keys.append(digit)
        self._emit(DigitPressed(self.flow.name, self.current_node or "", digit))

    def _prompts(
        self, refs: str | list[str] | None, language: str | None = None
    ) -> list[str | Path]:
        """Resolve prompt names in the session's language (then the flow's, then English)."""
        names = [refs] if isinstance(refs, str) else list(refs or [])
        language = language or self.language
        out: list[str | Path] = []
        for name in names:
            path = None
            for lang in dict.fromkeys((language, self.flow.language, "en")):
                path = self.flow.prompts.resolve(name, lang)
                if path is not None:
                    break
            if path is None:
                log.warning(
                    "ivr.prompt_missing", flow=self.flow.name, prompt=name, language=language
                )
                self._emit(PromptMissing(self.flow.name, self.current_node or "", name, language))
                continue
            out.append(path)
        return out

    async def _play(
        self, items: list[str | Path], interruptible: bool, keep: bool = False
    ) -> str | None:
        """Play ``items``; a digit that interrupts is recorded and, with ``keep``, kept as
        type-ahead for the next input node."""
        if not items:
            return None
        digit = await self.call.play(items, DTMF_KEYS if interruptible else "")
        if digit:
            self._key(digit)
            if keep:
                self._pending = digit
            return digit
        return None

    async def _get_digit(self, timeout: float) -> str | None:
        digit = await self.call.collect_digit(timeout)
        if digit:
            self._key(digit)
            return digit
        return None

    async def _first_digit(self, prompt: str | list[str] | None, timeout: float) -> str | None:
        """Type-ahead, else the prompt (interruptible), else wait ``timeout`` for a digit."""
        digit = self._pending
        self._pending = None
        if digit is None:
            digit = await self._play(self._prompts(prompt), True)
        if digit is None:
            digit = await self._get_digit(timeout)
        return digit

    async def _read_digits(
        self,
        prompt: str | list[str] | None,
        max_digits: int,
        terminator: str | None,
        first_timeout: float,
        inter_timeout: float,
    ) -> tuple[str, str]:
        """Read up to ``max_digits``. Returns (digits, how it ended): ``terminator``, ``max``,
        ``timeout`` (inter-digit) or ``nothing`` (no key before the first-digit timeout)."""
        digit = await self._first_digit(prompt, first_timeout)
        if digit is None:
            return "", "nothing"
        digits = ""
        while True:
            if terminator is not None and digit == terminator:
                return digits, "terminator"
            digits += digit
            if len(digits) >= max_digits:
                return digits, "max"
            next_digit = await self._get_digit(inter_timeout)
            if next_digit is None:
                return digits, "timeout"
            digit = next_digit

    async def _fallback(self, target: str | None, cause: str) -> str | None:
        if target is not None:
            return target
        self.outcome = Outcome("hangup", {"by": "ivr", "cause": cause, "node": self.current_node})
        return None

    def _expand(self, text: str) -> str:
        return _TEMPLATE.sub(lambda m: self.variables.get(m.group(1), ""), text)

    def _holds(self, c: Condition) -> bool:
        if c.time is not None:
            if self._time_condition is None:
                log.warning("ivr.no_time_conditions", flow=self.flow.name, condition=c.time)
                return False
            if not self._time_condition(c.time, self._now()):
                return False
        if c.variable is None:
            return True
        value = self.variables.get(c.variable, "")
        tests = (c.equals, c.not_equals, c.one_of, c.prefix, c.matches, c.empty)
        if all(t is None for t in tests):
            return value != ""
        return (
            (c.equals is None or value == c.equals)
            and (c.not_equals is None or value != c.not_equals)
            and (c.one_of is None or value in c.one_of)
            and (c.prefix is None or value.startswith(c.prefix))
            and (c.matches is None or re.fullmatch(c.matches, value) is not None)
            and (c.empty is None or (value == "") == c.empty)
        )

    async def _hangup(self) -> None:
        if not self._hung_up:
            self._hung_up = True
            await self.call.hangup()

    async def _hangup_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._hangup()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)

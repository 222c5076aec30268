"""The mailbox owner's menu: PIN, message counts, listen, save, delete.

Theory of operation
-------------------
A mailbox owner dials ``voicemail_own`` (their own mailbox) or ``voicemail_any`` (asks the
mailbox number first, unless it was dialled after the code); the SIP core answers those codes
and hands the call to the service serving ``mailbox`` (the IVR host). :class:`MailboxMenu`
then runs on the call through the same small :class:`~ivr.engine.IvrCall` interface as IVR
flows (play, collect a digit, hang up), so a test drives it with scripted digits and no
sockets, and the host runs it on a real call:

1. the PIN, ended by ``#`` (or the longest PIN length); :data:`MAX_PIN_ATTEMPTS` wrong
   entries → goodbye. An unknown mailbox or one without a PIN fails exactly like a wrong PIN
   (nobody learns which mailboxes exist);
2. "you have N new messages and M saved messages";
3. new messages (oldest first), then saved ones. Each: its envelope (number, time received,
   caller's number, spoken with :mod:`ivr.say`), the recording, then the options below. A
   message counts as heard (``heard``, i.e. saved) as soon as it has been played; a digit
   during the envelope or the recording skips to the options with that digit.

Keys after a message (:data:`KEYS`): ``1`` repeat, ``2`` save (and next), ``3`` next,
``7`` delete (store row and file; and next), ``*``/``#`` goodbye.

Messages live behind :class:`MessageStore`, implemented by the host on the store; the host
also tells the SIP side about changed counts (message-waiting indication).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import structlog

from ivr.engine import CallerHungUp, IvrCall
from ivr.model import PromptSets
from ivr.say import say_date, say_digits, say_number

__all__ = [
    "KEYS",
    "MAX_PIN_ATTEMPTS",
    "Mailbox",
    "MailboxMenu",
    "MenuEnded",
    "Message",
    "MessageStore",
    "say_time",
]

log = structlog.get_logger("ivr.mailbox")

MAX_PIN_ATTEMPTS = 3
MAX_MAILBOX_DIGITS = 12
FIRST_DIGIT_TIMEOUT = 6.0
INTER_DIGIT_TIMEOUT = 4.0
OPTION_TIMEOUT = 6.0
OPTION_PROMPTS = 3  # the options are offered this many times before goodbye

KEYS = {"1": "repeat", "2": "save", "3": "next", "7": "delete", "*": "exit", "#": "exit"}


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox (the extension of the same number): the owner's PIN (None: nobody can
    listen), the greeting callers hear, the longest message, the menu's language."""

    number: str
    pin: str | None
    greeting: Path | None = None
    max_seconds: float = 120.0
    language: str = "en"


@dataclass(frozen=True, slots=True)
class Message:
    """What the menu needs of a stored message."""

    id: int
    caller: str
    created_at: datetime
    path: Path
    heard: bool


class MessageStore(Protocol):
    """The messages of mailboxes (the host implements it on :class:`crm.Store`)."""

    async def messages(self, mailbox: str) -> list[Message]:
        """New (unheard) messages oldest first, then heard ones oldest first."""
        ...

    async def mark_heard(self, mailbox: str, message_id: int) -> None: ...

    async def delete(self, mailbox: str, message_id: int) -> None:
        """Remove the message: its row and its file."""
        ...


@dataclass(frozen=True, slots=True)
class MenuEnded:
    """How a menu session ended: ``goodbye``, ``no_messages``, ``wrong_pin``, ``no_mailbox``
    (nothing entered) or ``hung_up``; ``mailbox`` once the PIN was accepted."""

    reason: str
    mailbox: str | None
    heard: int = 0
    deleted: int = 0


def say_time(moment: datetime, language: str = "en") -> list[str]:
    """A time of day as prompt names: ``en`` 24-hour ("fourteen zero five", "nine o'clock"),
    ``zh`` 十四点五分."""
    hour, minute = moment.hour, moment.minute
    if language == "zh":
        out = [*say_number(hour, "zh"), "dian"]
        return out + ([*say_number(minute, "zh"), "fen"] if minute else [])
    out = say_number(hour, "en")
    if minute == 0:
        return [*out, "oclock"]
    return out + (["0"] if minute < 10 else []) + say_number(minute, "en")


class MailboxMenu:
    """One owner's session on one call. ``mailbox`` None: ask for the number first.
    ``now`` turns a stored UTC time into the local time spoken in the envelope."""

    def __init__(
        self,
        call: IvrCall,
        store: MessageStore,
        mailboxes: Mapping[str, Mailbox],
        prompts: PromptSets,
        *,
        mailbox: str | None,
        language: str = "en",
        local_time: Callable[[datetime], datetime] = lambda t: t.astimezone(),
    ) -> None:
        self.call = call
        self.store = store
        self.mailboxes = mailboxes
        self.prompts = prompts
        self.mailbox = mailbox
        self.language = language
        self._local = local_time
        self.heard = 0
        self.deleted = 0
        self._marked: set[int] = set()  # messages marked heard in this session

    async def run(self) -> MenuEnded:
        """Run to the end (the call is hung up unless the caller did)."""
        try:
            ended = await self._run()
        except CallerHungUp:
            return MenuEnded("hung_up", self.mailbox, self.heard, self.deleted)
        with contextlib.suppress(CallerHungUp):
            await self.call.hangup()
        return ended

    # -- the menu ------------------------------------------------------------------------------

    async def _run(self) -> MenuEnded:
        number = self.mailbox
        if number is None:
            number = await self._read("vm-enter-mailbox", MAX_MAILBOX_DIGITS)
            if not number:
                await self._say("goodbye")
                return MenuEnded("no_mailbox", None)
        box = self.mailboxes.get(number)
        if box is not None:
            self.language = box.language
        if not await self._check_pin(box):
            await self._say("vm-wrong-pin", "goodbye")
            log.info("mailbox_pin_refused", mailbox=number)
            return MenuEnded("wrong_pin", None)
        assert box is not None
        self.mailbox = box.number
        log.info("mailbox_opened", mailbox=box.number)
        messages = await self.store.messages(box.number)
        new = [m for m in messages if not m.heard]
        saved = [m for m in messages if m.heard]
        await self._say(*self._counts(len(new), len(saved)))
        if not messages:
            await self._say("goodbye")
            return MenuEnded("no_messages", box.number)
        for index, message in enumerate([*new, *saved], start=1):
            if not await self._message(box.number, index, message):
                await self._say("goodbye")
                return MenuEnded("goodbye", box.number, self.heard, self.deleted)
        await self._say("vm-no-more", "goodbye")
        return MenuEnded("goodbye", box.number, self.heard, self.deleted)

    async def _check_pin(self, box: Mailbox | None) -> bool:
        for attempt in range(MAX_PIN_ATTEMPTS):
            prompt = "vm-enter-pin" if attempt == 0 else ["vm-wrong-pin", "vm-enter-pin"]
            entered = await self._read(prompt, MAX_MAILBOX_DIGITS)
            if box is not None and box.pin is not None and entered == box.pin:
                return True
        return False

    def _counts(self, new: int, saved: int) -> list[str]:
        lang = self.language
        if new == 0 and saved == 0:
            return ["vm-no-messages"]
        return [
            "vm-you-have",
            *say_number(new, lang),
            "vm-new-messages",
            "vm-and",
            *say_number(saved, lang),
            "vm-saved-messages",
        ]

    async def _message(self, mailbox: str, index: int, message: Message) -> bool:
        """Play one message and act on the keys; False: the owner is done."""
        silent = 0  # option prompts in a row that got no key
        play = True
        while True:
            if play:
                play = False
                digit = await self._play_message(mailbox, index, message)
            else:
                digit = await self._option()
                silent = silent + 1 if digit is None else 0
            if digit is None:
                if silent >= OPTION_PROMPTS:
                    return False
                continue
            action = KEYS.get(digit)
            if action == "repeat":
                play = True
            elif action == "save":
                if not message.heard and message.id not in self._marked:
                    await self.store.mark_heard(mailbox, message.id)
                await self._say("vm-saved")
                return True
            elif action == "next":
                return True
            elif action == "delete":
                await self.store.delete(mailbox, message.id)
                self.deleted += 1
                await self._say("vm-deleted")
                return True
            elif action == "exit":
                return False
            else:
                await self._say("invalid")

    async def _play_message(self, mailbox: str, index: int, message: Message) -> str | None:
        lang = self.language
        local = self._local(message.created_at)
        envelope = [
            "vm-message",
            *say_number(index, lang),
            "vm-received",
            *say_date(local.date(), lang),
            *say_time(local, lang),
            "vm-from",
            *(say_digits(message.caller, lang) or ["vm-unknown-caller"]),
        ]
        digit = await self._play(self._files(envelope))
        if digit is not None:
            return digit
        digit = await self._play([message.path])
        if not message.heard and message.id not in self._marked:
            await self.store.mark_heard(mailbox, message.id)
            self._marked.add(message.id)
            self.heard += 1
        return digit

    async def _option(self) -> str | None:
        digit = await self._play(self._files(["vm-options"]))
        if digit is None:
            digit = await self.call.collect_digit(OPTION_TIMEOUT)
        return digit

    # -- prompts and digits --------------------------------------------------------------------

    def _files(self, names: list[str]) -> list[str | Path]:
        out: list[str | Path] = []
        for name in names:
            path = self.prompts.resolve(name, self.language) or self.prompts.resolve(name, "en")
            if path is None:
                log.warning("mailbox_prompt_missing", prompt=name, language=self.language)
                continue
            out.append(path)
        return out

    async def _play(self, items: list[str | Path]) -> str | None:
        if not items:
            return None
        return await self.call.play(items, "0123456789*#")

    async def _say(self, *names: str) -> None:
        files = self._files(list(names))
        if files:
            await self.call.play(files, "")

    async def _read(self, prompt: str | list[str], max_digits: int) -> str:
        """Digits ended by ``#``, ``max_digits`` or a pause; a digit pressed during the
        prompt is the first one."""
        names = [prompt] if isinstance(prompt, str) else prompt
        digit = await self._play(self._files(names))
        if digit is None:
            digit = await self.call.collect_digit(FIRST_DIGIT_TIMEOUT)
        digits = ""
        while digit is not None and digit != "#":
            digits += digit
            if len(digits) >= max_digits:
                break
            digit = await self.call.collect_digit(INTER_DIGIT_TIMEOUT)
        return digits

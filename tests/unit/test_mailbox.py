"""ivr.mailbox: the owner's mailbox menu, driven by a scripted caller (no audio, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr import PromptSets
from ivr.mailbox import Mailbox, MailboxMenu, Message, say_time
from tests.unit.test_ivr_engine import HANGUP, FakeCall

T0 = datetime(2024, 3, 5, 14, 5, tzinfo=UTC)
BOXES = {
    "1001": Mailbox("1001", "4711"),
    "1002": Mailbox("1002", None),  # voicemail not enabled: nobody can listen
    "1003": Mailbox("1003", "2222", language="zh"),
}


class FakeMessages:
    def __init__(self, messages: dict[str, list[Message]]) -> None:
        self.boxes = messages
        self.log: list[tuple[str, str, int]] = []

    async def messages(self, mailbox: str) -> list[Message]:
        box = self.boxes.get(mailbox, [])
        return [m for m in box if not m.heard] + [m for m in box if m.heard]

    async def mark_heard(self, mailbox: str, message_id: int) -> None:
        self.log.append(("heard", mailbox, message_id))
        self.boxes[mailbox] = [
            Message(m.id, m.caller, m.created_at, m.path, True) if m.id == message_id else m
            for m in self.boxes[mailbox]
        ]

    async def delete(self, mailbox: str, message_id: int) -> None:
        self.log.append(("delete", mailbox, message_id))
        self.boxes[mailbox] = [m for m in self.boxes[mailbox] if m.id != message_id]


def _msg(n: int, heard: bool = False, caller: str = "1002") -> Message:
    return Message(n, caller, T0 + timedelta(minutes=n), Path(f"/vm/m{n}.wav"), heard)


async def _run(
    script: list[str | None], messages: FakeMessages, mailbox: str | None = "1001"
) -> tuple[FakeCall, str, str | None]:
    call = FakeCall(script, caller="1001", did="*97")
    menu = MailboxMenu(
        call,
        messages,
        BOXES,
        PromptSets.default(),
        mailbox=mailbox,
        local_time=lambda t: t,  # speak UTC in tests
    )
    ended = await menu.run()
    return call, ended.reason, ended.mailbox


def _pin(pin: str) -> list[str | None]:
    return [*pin, "#"]


async def test_listen_new_then_saved_save_and_delete() -> None:
    store = FakeMessages({"1001": [_msg(1, heard=True), _msg(2)]})
    # PIN; message 1 (the new one, m2) plays through, then 7 deletes it; message 2 (saved
    # m1) is interrupted with 2 (save); then no more messages.
    call, reason, box = await _run([*_pin("4711"), None, "7", "^2"], store)
    assert (reason, box) == ("goodbye", "1001")
    assert store.log == [("heard", "1001", 2), ("delete", "1001", 2)]
    assert [m.id for m in store.boxes["1001"]] == [1]
    played = call.played
    # Counts: "you have one new message and one saved".
    i = played.index("en/vm-you-have")
    assert played[i : i + 6] == [
        "en/vm-you-have",
        "en/1",
        "en/vm-new-messages",
        "en/vm-and",
        "en/1",
        "en/vm-saved-messages",
    ]
    # The envelope: number, date, 24-hour time, the caller's digits; then the recording.
    j = played.index("en/vm-message")
    assert played[j : j + 14] == [
        "en/vm-message",
        "en/1",
        "en/vm-received",
        "en/month-3",
        "en/ord-5",
        "en/twenty",
        "en/twenty",
        "en/4",
        "en/14",
        "en/0",
        "en/7",  # 14:07 (T0 + 2 minutes)
        "en/vm-from",
        "en/1",
        "en/0",
    ]
    assert "vm/m2" in played and "en/vm-deleted" in played and "en/vm-saved" in played
    assert played[-2:] == ["en/vm-no-more", "en/goodbye"]
    assert call.hung_up == 1


async def test_repeat_next_and_exit() -> None:
    store = FakeMessages({"1001": [_msg(1), _msg(2)]})
    call, reason, _ = await _run([*_pin("4711"), None, "1", None, "3", None, "#"], store)
    assert reason == "goodbye"
    assert call.played.count("vm/m1") == 2 and call.played.count("vm/m2") == 1
    assert store.log == [("heard", "1001", 1), ("heard", "1001", 2)]


async def test_three_wrong_pins_say_goodbye() -> None:
    store = FakeMessages({"1001": [_msg(1)]})
    call, reason, box = await _run([*_pin("1"), *_pin("2"), *_pin("3")], store)
    assert (reason, box) == ("wrong_pin", None)
    assert call.played.count("en/vm-enter-pin") == 3
    assert call.played[-2:] == ["en/vm-wrong-pin", "en/goodbye"]
    assert "vm/m1" not in call.played and store.log == []


async def test_second_pin_attempt_opens() -> None:
    _call, reason, _ = await _run([*_pin("0000"), *_pin("4711")], FakeMessages({}))
    assert reason == "no_messages"


@pytest.mark.parametrize("mailbox", ["1002", "9999"])
async def test_mailbox_without_pin_or_unknown_fails_like_a_wrong_pin(mailbox: str) -> None:
    script = [*mailbox, "#", *_pin("4711"), *_pin(""), *_pin("")]
    _call, reason, _ = await _run(script, FakeMessages({}), mailbox=None)
    assert reason == "wrong_pin"


async def test_any_mailbox_asks_the_number_and_speaks_its_language() -> None:
    store = FakeMessages({"1003": [_msg(3, caller="")]})
    script: list[str | None] = ["1", "0", "0", "3", "#", *_pin("2222"), None, "#"]
    call, reason, box = await _run(script, store, mailbox=None)
    assert (reason, box) == ("goodbye", "1003")
    assert call.played[0] == "en/vm-enter-mailbox"
    assert "zh/vm-you-have" in call.played and "zh/vm-unknown-caller" in call.played
    assert "zh/dian" in call.played and "zh/fen" in call.played


async def test_hang_up_during_a_message_keeps_it_new() -> None:
    store = FakeMessages({"1001": [_msg(1)]})
    call, reason, _ = await _run([*_pin("4711"), HANGUP], store)
    assert reason == "hung_up" and store.log == [] and call.hung_up == 0


async def test_no_option_pressed_ends_after_three_offers() -> None:
    store = FakeMessages({"1001": [_msg(1)]})
    call, reason, _ = await _run([*_pin("4711"), None, None, None], store)
    assert reason == "goodbye" and call.played.count("en/vm-options") == 3


def test_say_time() -> None:
    assert say_time(datetime(2024, 1, 1, 9, 0)) == ["9", "oclock"]
    assert say_time(datetime(2024, 1, 1, 14, 35)) == ["14", "thirty", "5"]
    assert say_time(datetime(2024, 1, 1, 14, 35), "zh") == [
        "shi",
        "4",
        "dian",
        "3",
        "shi",
        "5",
        "fen",
    ]
    assert say_time(datetime(2024, 1, 1, 20, 0), "zh") == ["2", "shi", "dian"]

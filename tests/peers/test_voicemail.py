"""Voicemail with real PJSUA2 phones: an unanswered call rolls to the mailbox, the caller's
tone is recorded, the owner dials *97, enters the PIN by DTMF, hears the tone, deletes the
message, and the owner's subscribed phone sees Messages-Waiting go yes, then no."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.audio import describe, dominant_frequency
from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

NO_ANSWER_SECONDS = 3
EXTENSIONS = {
    "1001": {
        "name": "Alice",
        "password": "alice-pw",
        "voicemail": {"enabled": True, "pin": "4711", "no_answer_seconds": NO_ANSWER_SECONDS},
    },
    "1002": {"name": "Bob", "password": "bob-pw"},
}


def test_unanswered_call_to_mailbox_owner_listens_and_deletes_with_mwi(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_1k: Path,
) -> None:
    sb = server_factory(extensions=EXTENSIONS)
    owner = phone_factory("ext1001", user="1001")
    ev = owner.register(sb.address, password=sb.password("1001"), mwi=True)
    assert ev is not None and ev["code"] == 200, ev
    owner.wait_mwi(False, timeout=10)  # the NOTIFY right after the SUBSCRIBE: nothing new
    caller = registered(phone_factory, sb, "1002")
    for p in (owner, caller):
        p.set_codecs(["PCMU"])

    # 1002 calls 1001, whose phone rings and is not answered: after 3 s the mailbox answers.
    started = time.monotonic()
    cid = caller.call(sb.uri("1001"))
    ring = owner.wait_incoming(timeout=10)
    caller.wait_call_state("CONFIRMED", call=cid, timeout=NO_ANSWER_SECONDS + 10)
    rolled_after = time.monotonic() - started
    assert NO_ANSWER_SECONDS - 0.5 <= rolled_after <= NO_ANSWER_SECONDS + 3, rolled_after
    owner.wait_disconnected(call=ring["call"], timeout=10)  # the ringing phone is cancelled
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone_1k, call=cid)  # greeting, beep, then the tone is the message
    time.sleep(7.0)  # about 3 s of greeting and beep, then 4 s of message
    caller.hangup(call=cid)
    caller.wait_disconnected(call=cid, timeout=10)
    (row,) = wait_for(lambda: sb.query("SELECT * FROM voicemails"), 10, "the voicemail row")
    assert (row["mailbox"], row["caller"], row["heard"]) == ("1001", "1002", 0)
    assert row["seconds"] >= 2.0, row
    message_file = Path(row["path"])
    assert message_file.is_file()
    owner.wait_mwi(True, timeout=10)

    # The owner dials *97, enters the PIN, and hears the envelope and the message.
    own = owner.call(sb.uri("*97"))
    owner.wait_call_state("CONFIRMED", call=own, timeout=10)
    owner.wait_media_active(call=own, timeout=10)
    heard = tmp_path / "owner-hears.wav"
    owner.record(heard, call=own)
    time.sleep(1.0)
    owner.send_dtmf("4711#", call=own)
    wait_for(
        lambda: sb.query("SELECT heard FROM voicemails WHERE heard = 1"),
        40,
        "the message played to its end (heard)",
    )
    owner.stop_record(call=own)
    assert abs(dominant_frequency(heard) - 1000) < 20, describe(heard)
    owner.wait_mwi(False, timeout=10)  # heard: no new message any more (one saved)
    owner.send_dtmf("7", call=own)  # delete
    owner.wait_disconnected(call=own, timeout=30)  # "deleted", "no more messages", goodbye
    wait_for(lambda: not sb.query("SELECT * FROM voicemails"), 10, "the row deleted")
    assert not message_file.exists()
    # The menu logs its end after its hang-up completes, which can be after the phone
    # saw the BYE: wait for the line rather than read the log once.
    ended = wait_for(
        lambda: [e for e in sb.log_events() if e.get("event") == "mailbox_menu_ended"],
        10,
        "the mailbox_menu_ended log line",
    )
    assert ended and (ended[0]["reason"], ended[0]["deleted"]) == ("goodbye", 1), ended
    # Messages-Waiting stays "no" after the deletion; the last summary says 0 saved too.
    wait_for(
        lambda: any("Voice-Message: 0/0" in e.get("body", "") for e in owner.events(event="mwi")),
        10,
        "a 0/0 summary",
    )
    # The records (docs/records.md): the rolled call is one internal row answered by the
    # mailbox (billed from there, the ringing only in its duration); the menu call is a
    # feature-code call, internal too.
    rolled, menu = sb.wait_call_records(2)
    assert (rolled["caller"], rolled["callee"], rolled["dialled"]) == ("1002", "1001", "1001")
    assert (rolled["direction"], rolled["disposition"]) == ("internal", "ANSWERED")
    assert rolled["answer"] == rolled["system_answer"] is not None
    assert rolled["duration"] - rolled["billable_seconds"] >= NO_ANSWER_SECONDS - 0.5, rolled
    assert (menu["caller"], menu["callee"], menu["direction"]) == ("1001", "*97", "internal")
    assert menu["disposition"] == "ANSWERED"


def test_busy_call_rolls_to_the_mailbox_and_unsolicited_mwi_reaches_the_phone(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """A phone that never subscribes (``mwi: unsolicited``) learns about a message left after
    it rejected the call as busy (486)."""
    extensions = {
        "1001": {
            "name": "Alice",
            "password": "alice-pw",
            "voicemail": {"enabled": True, "pin": "4711", "mwi": "unsolicited"},
        },
        "1002": {"name": "Bob", "password": "bob-pw"},
    }
    sb = server_factory(extensions=extensions)
    owner = registered(phone_factory, sb, "1001")  # no SUBSCRIBE
    owner.wait_mwi(False, timeout=10)  # unsolicited NOTIFY on registration: nothing new
    caller = registered(phone_factory, sb, "1002")
    cid = caller.call(sb.uri("1001"))
    ring = owner.wait_incoming(timeout=10)
    owner.reject(call=ring["call"], code=486)
    caller.wait_call_state("CONFIRMED", call=cid, timeout=10)  # the mailbox answers
    caller.wait_media_active(call=cid, timeout=10)
    caller.play(tone_1k, call=cid)
    time.sleep(6.0)
    caller.hangup(call=cid)
    (row,) = wait_for(lambda: sb.query("SELECT * FROM voicemails"), 10, "the voicemail row")
    assert (row["mailbox"], row["caller"]) == ("1001", "1002")
    event = owner.wait_mwi(True, timeout=10)
    assert "Voice-Message: 1/0" in event["body"] and not event["subscription_state"]
    rolled = [e for e in sb.log_events() if e.get("event") == "call_to_voicemail"]
    assert rolled and rolled[0]["reason"] == "busy", rolled

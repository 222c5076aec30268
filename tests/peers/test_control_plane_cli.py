"""The ``switchboard`` CLI against a running Switchboard (its own process) with real PJSUA2
phones: each command runs as its own process, as a script would run it, and finds the
server and the local admin token from ``--config`` (README "Live commands")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.peers.calls import answer_call, registered
from tests.peers.phones import Phone
from tests.peers.switchboard import REPO_ROOT, Switchboard, wait_for

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller", "password": "pw-1001-secret"},
    "1002": {"name": "Bob", "password": "pw-1002-secret"},
    "1003": {"name": "Carol", "password": "pw-1003-secret"},
}
ACD = """agents:
  bob: {name: Bob, extensions: ["1002"]}
  carol: {name: Carol, extensions: ["1003"]}
queues:
  support: {members: [bob, carol], strategy: ring_all, ring_timeout: 15}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


def cli(
    sb: Switchboard, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``switchboard ARGS --config <the server's folder>`` in its own process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--config", str(sb.workdir)],
        cwd=REPO_ROOT,
        env=environ,
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
    )


def ok(sb: Switchboard, *args: str, **kwargs: Any) -> str:
    result = cli(sb, *args, **kwargs)
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    assert result.stderr == "" or args[:2] == ("token", "create"), result.stderr
    return result.stdout


def ok_json(sb: Switchboard, *args: str) -> Any:
    return json.loads(ok(sb, *args, "--json"))


def test_reg_and_call_commands_with_real_phones(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    """`reg list --json` shows the phones; `call list --json` the live call with its id;
    `call hangup ID` ends it: both PJSUA2 phones get a BYE without hanging up themselves;
    `cdr search` finds its record."""
    sb = server_factory(extensions=PEOPLE)
    alice = registered(phone_factory, sb, "1001")
    bob = registered(phone_factory, sb, "1002")

    regs = ok_json(sb, "reg", "list")
    assert sorted(r["aor"] for r in regs) == ["1001", "1002"]
    assert all(r["expires_in"] > 0 and r["contact"] for r in regs)
    assert [r["aor"] for r in ok_json(sb, "reg", "list", "--aor", "1002")] == ["1002"]
    table = ok(sb, "reg", "list").splitlines()
    assert table[0].split()[:2] == ["AOR", "CONTACT"] and len(table) == 3
    assert "2 registration(s)" in ok(sb, "status")
    extensions = {e["number"]: e["registered"] for e in ok_json(sb, "ext", "list")}
    assert extensions == {"1001": True, "1002": True, "1003": False}

    assert ok_json(sb, "call", "list") == []
    cid, bid = answer_call(alice, bob, sb, "1002")
    (call,) = ok_json(sb, "call", "list")
    assert call["id"] and (call["caller_ext"], call["callee_ext"]) == ("1001", "1002")
    assert ok_json(sb, "call", "show", call["id"])["id"] == call["id"]
    assert "1 call(s)" in ok(sb, "status")

    assert ok(sb, "call", "hangup", call["id"]) == f"call {call['id']} hung up\n"
    a_end = alice.wait_disconnected(call=cid, timeout=10)
    b_end = bob.wait_disconnected(call=bid, timeout=10)
    # Neither phone hung up: each was sent a BYE, which PJSUA2 reports as a normal end.
    assert a_end["code"] == 200 and b_end["code"] == 200, (a_end, b_end)
    assert ok_json(sb, "call", "list") == []

    gone = cli(sb, "call", "hangup", call["id"])
    assert (gone.returncode, gone.stdout) == (1, "")
    assert len(gone.stderr.splitlines()) == 1 and call["id"] in gone.stderr
    (record,) = wait_for(
        lambda: ok_json(sb, "cdr", "search", "--number", "1002"), 10, "the call record"
    )
    assert record["disposition"] == "ANSWERED" and record["caller"]
    assert ok_json(sb, "cdr", "search", "--disposition", "no-answer") == []
    assert ok_json(sb, "cdr", "search", "--since", "2099-01-01") == []


def test_call_originate_rings_the_extension_then_the_number(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    sb = server_factory(extensions=PEOPLE)
    alice = registered(phone_factory, sb, "1001")
    bob = registered(phone_factory, sb, "1002")
    out = ok(sb, "call", "originate", "--extension", "1001", "1002")
    assert out.startswith("ringing 1001, then dialling 1002 (originate id ")
    first = alice.wait_incoming(timeout=10)  # Alice's phone rings first
    alice.answer(call=first["call"])
    second = bob.wait_incoming(timeout=10)  # then the number is dialled for her
    bob.answer(call=second["call"])
    bob.wait_media_active(call=second["call"], timeout=10)
    (call,) = ok_json(sb, "call", "list")
    assert (call["caller_ext"], call["callee_ext"]) == ("1001", "1002")
    ok(sb, "call", "hangup", call["id"])
    bob.wait_disconnected(call=second["call"], timeout=10)
    # 1003 has no phone registered: refused, one line.
    refused = cli(sb, "call", "originate", "--extension", "1003", "1002")
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_agent_pause_changes_what_the_acd_offers(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    """Two agents in a ring-all queue: paused from the CLI, Bob is not offered the next
    caller while Carol is; unpaused, he is offered the one after. `watch --json` shows the
    state changes as they happen and Ctrl-C ends it with exit 0."""
    sb = server_factory(extensions=PEOPLE, extra_yaml=ACD)
    caller = registered(phone_factory, sb, "1001")
    bob = registered(phone_factory, sb, "1002")
    carol = registered(phone_factory, sb, "1003")

    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cli", "watch", "--json", "--config", str(sb.workdir)],
        cwd=REPO_ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal sends it: a suite started in the background by a
        # non-interactive shell has SIGINT ignored, and a child would inherit that.
        preexec_fn=_default_sigint,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or ()), daemon=True)
    reader.start()
    try:
        # The watcher is connected once it prints a change: Carol logs in and out until it
        # does (a fixed sleep raced the CLI's start-up on a loaded machine).
        deadline = time.monotonic() + 20
        while not lines and time.monotonic() < deadline:
            ok(sb, "agent", "login", "carol")
            ok(sb, "agent", "logout", "carol")
            time.sleep(0.5)
        assert lines, "watch printed nothing"
        assert ok(sb, "agent", "login", "bob") == "agent bob: AVAILABLE\n"
        assert ok(sb, "agent", "login", "carol") == "agent carol: AVAILABLE\n"
        assert ok(sb, "agent", "pause", "bob", "--reason", "lunch") == (
            "agent bob: NOT_READY (lunch)\n"
        )
        agents = {a["id"]: a for a in ok_json(sb, "agent", "list")}
        assert (agents["bob"]["state"], agents["bob"]["reason"]) == ("NOT_READY", "lunch")
        assert agents["carol"]["state"] == "AVAILABLE"
        assert ok_json(sb, "queue", "list")[0]["agents"] == {"AVAILABLE": 1, "NOT_READY": 1}

        first = caller.call(sb.uri("5000"))
        offered = carol.wait_incoming(timeout=15)
        time.sleep(1.5)  # ring_all: Bob would have rung at the same moment
        assert bob.events(event="incoming") == [], "a paused agent was offered a call"
        carol.answer(call=offered["call"])
        carol.wait_media_active(call=offered["call"], timeout=10)
        calls = ok_json(sb, "call", "list")
        assert any(c["callee_ext"] == "1003" for c in calls), calls
        caller.hangup(first)
        carol.wait_disconnected(call=offered["call"], timeout=10)
        wait_for(lambda: not ok_json(sb, "call", "list"), 10, "no live calls")

        assert ok(sb, "agent", "pause", "carol").startswith("agent carol: NOT_READY")
        assert ok(sb, "agent", "unpause", "bob") == "agent bob: AVAILABLE\n"
        second = caller.call(sb.uri("5000"))
        offered = bob.wait_incoming(timeout=15)
        bob.answer(call=offered["call"])
        bob.wait_media_active(call=offered["call"], timeout=10)
        caller.hangup(second)
        bob.wait_disconnected(call=offered["call"], timeout=10)

        stats = wait_for(
            lambda: (s := ok_json(sb, "queue", "stats", "support"))["answered"] >= 2 and s,
            10,
            "two answered queue calls",
        )
        assert stats["offered"] >= 2 and stats["name"] == "support"
        shown = ok_json(sb, "queue", "show", "support")
        assert sorted(shown["members"]) == ["bob", "carol"]
        agents_answering = [r["agent"] for r in ok_json(sb, "cdr", "search", "--queue", "support")]
        assert sorted(a for a in agents_answering if a) == ["bob", "carol"]
        assert ok(sb, "agent", "logout", "bob").startswith("agent bob: ")
    finally:
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=10)
        reader.join(timeout=10)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in lines]
    changes = [
        (e["agent"], e["new_state"], e.get("reason") or None)
        for e in events
        if e["type"] == "agent_state"
    ]
    assert ("bob", "NOT_READY", "lunch") in changes and ("bob", "AVAILABLE", None) in changes
    assert any(e["type"] == "call" for e in events)


def test_users_tokens_and_extensions_from_the_cli(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    """`user add ... --password` then that user logs in; a token made by `token create`
    works through SWITCHBOARD_TOKEN with its user's role (exit 3 beyond it) until revoked;
    `ext add` makes an extension a phone registers with; no server is exit 2."""
    sb = server_factory(extensions=PEOPLE, extra_yaml=ACD)

    assert ok(sb, "user", "add", "sue", "--role", "supervisor", "--password", "sue-pw-12345") == (
        "user sue added with role supervisor\n"
    )
    ok(sb, "user", "add", "bobby", "--role", "agent", "--agent", "bob", "--password", "bob-pw-123")
    again = cli(sb, "user", "add", "sue", "--role", "qa", "--password", "whatever-123")
    assert again.returncode == 1 and len(again.stderr.splitlines()) == 1
    users = {u["name"]: u for u in ok_json(sb, "user", "list")}
    assert users["sue"]["role"] == "supervisor"
    assert (users["bobby"]["role"], users["bobby"]["agent"]) == ("agent", "bob")

    def login(name: str, password: str) -> httpx.Response:
        return httpx.post(
            sb.api_url + "/api/login", json={"name": name, "password": password}, timeout=10
        )

    r = login("sue", "sue-pw-12345")
    assert r.status_code == 200 and r.json()["role"] == "supervisor", r.text
    assert login("bobby", "bob-pw-123").json()["agent"] == "bob"

    # (The hidden prompt without --password is covered in tests/unit/test_cli_client.py:
    # getpass reads the terminal, which a test process may not have.)
    ok(sb, "user", "passwd", "sue", "--password", "sue-new-pw-9")
    assert login("sue", "sue-pw-12345").status_code == 401
    assert login("sue", "sue-new-pw-9").status_code == 200
    ok(sb, "user", "role", "sue", "qa")
    assert login("sue", "sue-new-pw-9").json()["role"] == "qa"

    created = cli(sb, "token", "create", "--user", "bobby", "--name", "script")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("sbt_") and "\n" not in token
    as_bobby = {"SWITCHBOARD_TOKEN": token}
    agents = json.loads(ok(sb, "agent", "list", "--json", env=as_bobby))
    assert [a["id"] for a in agents] == ["bob"]  # an agent sees their own agent only
    assert ok(sb, "agent", "login", "bob", env=as_bobby) == "agent bob: AVAILABLE\n"
    refused = cli(sb, "agent", "login", "carol", env=as_bobby)
    assert (refused.returncode, len(refused.stderr.splitlines())) == (3, 1), refused.stderr
    assert cli(sb, "user", "list", env=as_bobby).returncode == 3
    (listed,) = [t for t in ok_json(sb, "token", "list") if t["user"] == "bobby"]
    assert ok(sb, "token", "revoke", str(listed["id"])) == f"token {listed['id']} revoked\n"
    revoked = cli(sb, "agent", "list", env=as_bobby)
    assert revoked.returncode == 3 and revoked.stderr.startswith("not authorised: ")

    added = ok(sb, "ext", "add", "1010", "--name", "New desk")
    password = added.rsplit(" ", 1)[1].strip()
    phone = phone_factory("ext1010", user="1010")
    registration = phone.register(sb.address, password=password)
    assert registration is not None and registration["code"] == 200, registration
    assert ok(sb, "ext", "passwd", "1010", "--password", "pw-1010-new") == (
        "extension 1010 password pw-1010-new\n"
    )
    assert {e["number"] for e in ok_json(sb, "ext", "list")} >= {"1001", "1010"}
    assert ok(sb, "ext", "remove", "1010") == "extension 1010 removed\n"
    assert "1010" not in {e["number"] for e in ok_json(sb, "ext", "list")}
    assert ok_json(sb, "trunk", "list") == []

    sb.stop()
    down = cli(sb, "status")
    assert down.returncode == 2
    assert down.stderr == (
        f"no running switchboard at {sb.api_url} (start it with switchboard serve)\n"
    )

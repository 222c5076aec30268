"""A phone calls a DID routed to an IVR menu, hears the welcome prompt and presses 2 to reach
the extension behind option 2 (real PJSUA2 phones, Switchboard as its own process)."""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.model import DEFAULT_PROMPTS_DIR
from tests.peers.audio import dominant_frequency
from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard, wait_for

pytestmark = pytest.mark.peers

DIALPLAN = """dialplan:
  inbound:
    - {did: "4000", destination: {kind: ivr, target: main}}
"""

MAIN_FLOW = """name: main
start: welcome
nodes:
  welcome:
    type: menu
    prompt: welcome
    options: {"1": sales, "2": support}
    timeout: 8
    retries: 1
  sales: {type: extension, extension: "1002"}
  support: {type: extension, extension: "1003"}
"""


def correlation_peak(recording: Path, prompt: Path) -> float:
    """Normalised cross-correlation peak of a prompt inside a recording (both resampled to
    8 kHz): close to 1 when the recording contains the prompt."""
    rec, rate = soundfile.read(str(recording), dtype="float64")
    if rec.ndim > 1:
        rec = rec.mean(axis=1)
    if rate != 8000:
        rec = rec[:: rate // 8000]
    ref, _ = soundfile.read(str(prompt), dtype="float64")
    ref = ref[: min(len(ref), 8000)]  # the first second of the prompt
    n = len(rec) + len(ref)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    window = np.convolve(rec**2, np.ones(len(ref)), mode="full")[len(ref) - 1 : len(rec) + 0]
    energy = np.sqrt(np.maximum(window, 1e-12) * np.sum(ref**2))
    return float(np.max(corr[: len(window)] / energy))


def test_did_to_menu_and_option_two(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
    tone_2k: Path,
) -> None:
    sb = server_factory(
        extra_yaml=DIALPLAN,
        setup=lambda d: (d / "ivr").mkdir() or (d / "ivr" / "main.yaml").write_text(MAIN_FLOW),
    )
    a, c = (phone_factory(f"ext{e}", user=e) for e in ("1001", "1003"))
    for p in (a, c):
        assert p.register(sb.address, password=sb.password(p.user))["code"] == 200
        p.set_codecs(["PCMU"])
    a.call(sb.uri("4000"))
    a.wait_call_state("CONFIRMED", timeout=10)  # Switchboard answers for the IVR
    a.wait_media_active(timeout=10)
    a.record(tmp_path / "welcome.wav")
    time.sleep(2.5)
    a.stop_record()
    prompts = DEFAULT_PROMPTS_DIR / "en"
    score = correlation_peak(tmp_path / "welcome.wav", prompts / "welcome.wav")
    # Other prompts of the same voice are the control: they must match far worse.
    others = max(
        correlation_peak(tmp_path / "welcome.wav", prompts / f"{name}.wav")
        for name in ("goodbye", "invalid", "main-menu")
    )
    assert score > 0.3 and score > 2.5 * others, (score, others)
    a.send_dtmf("2")
    inc = c.wait_incoming(timeout=10)  # option 2: extension 1003 rings
    assert inc["x_headers"].get("X-Switchboard-IVR-Keys") == "2"  # the key trail comes along
    c.answer(call=inc["call"])
    c.wait_media_active(timeout=10)
    c.play(tone_2k)
    time.sleep(0.8)
    a.record(tmp_path / "agent.wav")
    time.sleep(1.5)
    a.stop_record()
    assert abs(dominant_frequency(tmp_path / "agent.wav") - 2000) < 20
    a.hangup()
    c.wait_disconnected(timeout=10)
    finished = [e for e in sb.log_events() if e.get("event") == "ivr_finished"]
    assert finished and finished[0]["keys"] == "2" and finished[0]["outcome"] == "extension"
    (cdr,) = sb.wait_call_records(1)
    assert (cdr["caller"], cdr["callee"], cdr["disposition"]) == ("1001", "1003", "ANSWERED")
    assert cdr["ivr_keys"] == "2"  # the key trail travels with the call into its record


def test_blacklist_rejects_or_announces_before_any_route(
    server_factory: Callable[..., Switchboard], phone_factory: Callable[..., Phone]
) -> None:
    """Blacklisted callers never reach the IVR: one is refused with 603, the other hears an
    announcement and is hung up by Switchboard."""
    dialplan = (
        DIALPLAN
        + """  blacklist:
    - {number: "1001", action: reject}
    - {number: "1002", action: announce, prompt: goodbye}
"""
    )
    sb = server_factory(
        extra_yaml=dialplan,
        setup=lambda d: (d / "ivr").mkdir() or (d / "ivr" / "main.yaml").write_text(MAIN_FLOW),
    )
    a, b = (phone_factory(f"ext{e}", user=e) for e in ("1001", "1002"))
    for p in (a, b):
        assert p.register(sb.address, password=sb.password(p.user))["code"] == 200
    a.call(sb.uri("4000"))
    assert a.wait_disconnected(timeout=10)["code"] == 603
    b.call(sb.uri("4000"))
    b.wait_call_state("CONFIRMED", timeout=10)
    ev = b.wait_disconnected(timeout=15)  # the announcement played, then Switchboard hung up
    assert ev["code"] == 200
    assert not [e for e in sb.log_events() if e.get("event") == "ivr_finished"]
    causes = sorted(r["hangup_cause"] for r in sb.wait_call_records(2))
    assert causes == ["announcement", "dialplan_hangup"]


def _flows(**files: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / "ivr").mkdir()
        for name, text in files.items():
            (folder / "ivr" / f"{name}.yaml").write_text(text)

    return setup


def test_voicemail_left_and_stored_with_the_call_record(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tone_1k: Path,
) -> None:
    """DID 4001 goes to extension 1003's voicemail: the caller hears the greeting and the
    beep, speaks (a 1 kHz tone), presses # and is hung up after goodbye. The message is a WAV
    holding the tone, stored with its checksum and linked to the call record."""
    sb = server_factory(
        extra_yaml='dialplan:\n  inbound:\n    - {did: "4001", destination: '
        '{kind: voicemail, target: "1003"}}\n'
    )
    a = registered(phone_factory, sb, "1001")
    a.set_codecs(["PCMU"])
    cid = a.call(sb.uri("4001"))
    a.wait_call_state("CONFIRMED", call=cid, timeout=10)
    a.wait_media_active(call=cid, timeout=10)
    time.sleep(2.6)  # greeting (1.9 s) and beep
    a.play(tone_1k, call=cid)
    time.sleep(2.5)
    a.send_dtmf("#", call=cid)
    assert a.wait_disconnected(timeout=10)["code"] == 200  # goodbye, then Switchboard hangs up
    rows = wait_for(lambda: sb.query("SELECT * FROM voicemails"), 10, "voicemail row")
    (vm,) = rows
    assert (vm["mailbox"], vm["caller"]) == ("1003", "1001")
    path = Path(vm["path"])
    assert path.parent == sb.workdir / "voicemail" and path.is_file()
    assert vm["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert 1.5 < vm["seconds"] < 4.5, vm["seconds"]
    assert abs(dominant_frequency(path, skip_seconds=0.3) - 1000) < 20
    (cdr,) = sb.wait_call_records(1)
    assert cdr["record_id"] == vm["record_id"] and cdr["ivr_keys"] == "#"


SURVEY_MAIN = """name: main
start: agent
nodes:
  agent: {type: extension, extension: "1003", survey: rate}
"""

SURVEY_FLOW = """name: rate
start: ask
nodes:
  ask: {type: survey, timeout: 8, next: bye}
  bye: {type: hangup, prompt: goodbye}
"""


def test_survey_after_the_callee_hangs_up(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
) -> None:
    """The callee hangs up and the caller stays on the line for the survey: pressing 1 stores
    "satisfied" for that call and agent. A caller who hangs up during the survey is stored as
    "hung up without rating"."""
    sb = server_factory(extra_yaml=DIALPLAN, setup=_flows(main=SURVEY_MAIN, rate=SURVEY_FLOW))
    a, c = (registered(phone_factory, sb, e) for e in ("1001", "1003"))
    for p in (a, c):
        p.set_codecs(["PCMU"])

    def agent_call() -> int:
        cid = a.call(sb.uri("4000"))
        inc = c.wait_incoming(timeout=10)
        c.answer(call=inc["call"])
        a.wait_call_state("CONFIRMED", call=cid, timeout=10)
        c.wait_media_active(call=inc["call"], timeout=10)
        time.sleep(0.5)
        c.hangup(call=inc["call"])
        c.wait_disconnected(call=inc["call"], timeout=10)
        return cid

    cid = agent_call()
    # The caller is still connected, hearing the survey question (recording also keeps the
    # phone's audio clock running, without which PJSUA2 sends neither RTP nor DTMF).
    a.record(tmp_path / "survey.wav", call=cid)
    time.sleep(2.5)
    a.stop_record(call=cid)
    assert a.get_info(call=cid)["state"] == "CONFIRMED"
    prompts = DEFAULT_PROMPTS_DIR / "en"
    score = correlation_peak(tmp_path / "survey.wav", prompts / "survey.wav")
    others = max(
        correlation_peak(tmp_path / "survey.wav", prompts / f"{name}.wav")
        for name in ("goodbye", "welcome", "main-menu")
    )
    assert score > 0.3 and score > 2.5 * others, (score, others)
    a.record(tmp_path / "rest.wav", call=cid)
    a.send_dtmf("1", call=cid)
    assert a.wait_disconnected(call=cid, timeout=15)["code"] == 200  # thanks, goodbye
    first = wait_for(lambda: sb.query("SELECT * FROM survey_results"), 10, "survey result")
    assert [(r["result"], r["digit"], r["agent"], r["caller"]) for r in first] == [
        ("satisfied", "1", "1003", "1001")
    ]

    cid = agent_call()
    a.record(tmp_path / "survey2.wav", call=cid)
    time.sleep(1.0)
    a.hangup(call=cid)  # during the survey question
    rows = wait_for(
        lambda: (r := sb.query("SELECT * FROM survey_results ORDER BY id"))[1:] and r,
        10,
        "second survey result",
    )
    assert rows[1]["result"] == "hung up without rating" and rows[1]["digit"] is None

    records = {r["record_id"]: r for r in sb.wait_call_records(4)}
    for row in rows:
        rated, survey = records[row["record_id"]], records[row["survey_record_id"]]
        assert (rated["caller"], rated["callee"], rated["hangup_side"]) == (
            "1001",
            "1003",
            "callee",
        )
        assert survey["callee"] == "survey:rate" and survey["linked_id"] == rated["record_id"]
    assert records[rows[0]["survey_record_id"]]["ivr_keys"] == "1"


MENU_PATHS = """name: main
start: menu
nodes:
  menu:
    type: menu
    prompt: main-menu
    options: {"1": agent}
    timeout: 2
    retries: 1
    fallback: account
  account:
    type: collect
    prompt: enter-number
    variable: acct
    min_digits: 4
    max_digits: 8
    terminator: "#"
    first_digit_timeout: 6
    next: check
  check:
    type: branch
    conditions:
      - {variable: acct, equals: "1234", next: agent}
    default: bye
  agent: {type: extension, extension: "1003"}
  bye: {type: hangup, prompt: goodbye}
"""


def test_invalid_key_then_timeout_then_collect_with_hash(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
) -> None:
    """Real DTMF through the menu's failure paths: an invalid key (retry), then silence (the
    last attempt times out) leads to the fallback, a collect ended by #, and a branch on the
    collected value that reaches extension 1003."""
    sb = server_factory(extra_yaml=DIALPLAN, setup=_flows(main=MENU_PATHS), log_level="debug")
    a, c = (registered(phone_factory, sb, e) for e in ("1001", "1003"))
    cid = a.call(sb.uri("4000"))
    a.wait_call_state("CONFIRMED", call=cid, timeout=10)
    a.wait_media_active(call=cid, timeout=10)
    a.record(tmp_path / "menu.wav", call=cid)  # keeps the phone's audio clock (and DTMF) going
    time.sleep(0.5)
    a.send_dtmf("9", call=cid)  # invalid: "invalid" prompt, then the menu again
    # Then nothing: the retry times out and the fallback asks for the account number.
    wait_for(
        lambda: any(
            e.get("event") == "ivr_node" and e.get("node") == "account" for e in sb.log_events()
        ),
        20,
        "the collect node",
    )
    time.sleep(0.5)
    a.send_dtmf("1234#", call=cid)
    inc = c.wait_incoming(timeout=15)
    c.answer(call=inc["call"])
    c.wait_media_active(call=inc["call"], timeout=10)
    a.hangup(call=cid)
    c.wait_disconnected(timeout=10)
    (cdr,) = sb.wait_call_records(1)
    assert (cdr["callee"], cdr["ivr_keys"]) == ("1003", "91234#")


def test_broken_flow_reload_is_refused_and_calls_keep_working(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    tmp_path: Path,
) -> None:
    """While a caller is in the menu, an admin saves a flow with a typo and reloads: the
    reload is refused with file:line:column, the caller's menu still works, and so does the
    next call."""
    sb = server_factory(extra_yaml=DIALPLAN, setup=_flows(main=MAIN_FLOW))
    a, c = (registered(phone_factory, sb, e) for e in ("1001", "1003"))
    cid = a.call(sb.uri("4000"))
    a.wait_call_state("CONFIRMED", call=cid, timeout=10)
    a.wait_media_active(call=cid, timeout=10)
    a.record(tmp_path / "menu.wav", call=cid)
    flow_file = sb.workdir / "ivr" / "main.yaml"
    flow_file.write_text(
        MAIN_FLOW.replace("2: support", "2: suport").replace('"2": support', '"2": suport')
    )
    assert sb.proc is not None
    sb.proc.send_signal(signal.SIGHUP)
    refused = wait_for(
        lambda: [e for e in sb.log_events() if e.get("event") == "config_reload_refused"],
        10,
        "config_reload_refused",
    )
    assert refused[0]["problem"].startswith(f"{flow_file}:7:")
    assert "unknown node 'suport'" in refused[0]["problem"]
    for _ in range(2):  # the caller already in the menu, then a new caller
        a.send_dtmf("2", call=cid)
        inc = c.wait_incoming(timeout=10)
        c.answer(call=inc["call"])
        c.wait_media_active(call=inc["call"], timeout=10)
        a.hangup(call=cid)
        c.wait_disconnected(call=inc["call"], timeout=10)
        a.wait_disconnected(call=cid, timeout=10)
        cid = a.call(sb.uri("4000"))
        a.wait_call_state("CONFIRMED", call=cid, timeout=10)
        a.wait_media_active(call=cid, timeout=10)
        a.record(tmp_path / "menu2.wav", call=cid)
    a.hangup(call=cid)
    records = sb.wait_call_records(3)
    assert [r["callee"] for r in records[:2]] == ["1003", "1003"]

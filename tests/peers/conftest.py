"""Fixtures for real-peer tests: free loopback ports, tone WAVs, PJSUA2 phones.

Every phone made through ``phone_factory`` is closed (process quit or killed, reader thread
joined) at teardown, even when the test fails half-way.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.audio import make_tone_wav
from tests.peers.mutate import server_problems
from tests.peers.phones import Phone
from tests.peers.switchboard import MEDIA_WORKERS_ENV, Switchboard

_handed_out: set[int] = set()

# Tests that also run against media worker processes (``media: {workers: 2}``): the ones
# whose media path differs there (relay, transcoding, mixing, taps, tones, in-band DTMF,
# media timeouts). Signalling-only tests (busy, cancel, forwards, reload, restarts) run
# in-process only: a second pass would test the same SIP code again and cost minutes.
MEDIA_WORKER_TESTS = frozenset(
    {
        "test_call_audio_both_ways_dtmf_and_caller_hangs_up",
        "test_media_timeout_hangs_up",
        "test_session_refresh_keeps_media",
        "test_ringback_then_early_media",
        "test_hold_plays_music_and_unhold_restores_audio",
        "test_blind_transfer",
        "test_attended_transfer",
        "test_conference_room_three_parties",
        "test_g722_wideband_and_transcoding_to_pcmu",
        "test_inband_dtmf_all_sixteen_digits",
        "test_three_way_conference_from_a_phone",
        "test_callback_keeps_its_place_and_connects_agent_and_customer",
        "test_supervisor_listen_whisper_barge_and_intercept",
        "test_waiting_caller_hears_the_queue_music_then_the_agent",
        "test_ivr_queue_agent_call_is_recorded_in_stereo_and_found",  # the stereo tap
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ in MEDIA_WORKER_TESTS and "media_workers" in (
        metafunc.fixturenames
    ):
        metafunc.parametrize("media_workers", [0, 2], ids=["inproc", "workers2"], indirect=True)


@pytest.fixture(autouse=True)
def media_workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Media worker processes of every server the test starts (0: RTP in the server's own
    process). Servers read it from the environment, so tests that build ``Switchboard``
    themselves are covered too. Outside MEDIA_WORKER_TESTS the environment decides
    (``SWITCHBOARD_PEER_MEDIA_WORKERS=2 pytest tests/peers/test_ivr.py`` runs those on
    workers too)."""
    if not hasattr(request, "param"):
        return int(os.environ.get(MEDIA_WORKERS_ENV, "0"))
    workers: int = request.param
    if workers:
        monkeypatch.setenv(MEDIA_WORKERS_ENV, str(workers))
    else:
        monkeypatch.delenv(MEDIA_WORKERS_ENV, raising=False)
    return workers


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago and not handed out before in this
    session (the OS may give the same ephemeral port twice in a row). Also checks that
    port+1 is free on UDP (RTP/RTCP pairs) and both are free on TCP (baresip binds TCP on
    its SIP port and SIP port + 1)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port in _handed_out or port + 1 in _handed_out or port > 65000:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
                s2.bind(("127.0.0.1", port + 1))
            # SIPp and baresip also bind TCP on the port; baresip on port + 1 too.
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s3:
                    s3.bind(("127.0.0.1", p))
        except OSError:
            continue
        _handed_out.update((port, port + 1))
        return port
    raise RuntimeError("no free UDP port on 127.0.0.1")


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for each port you need: ``p = free_port()``."""
    return free_udp_port


@pytest.fixture(scope="session")
def tone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tones")


@pytest.fixture(scope="session")
def tone_wav(tone_dir: Path) -> Callable[..., Path]:
    """``tone_wav(1000)`` -> path of a 3 s 8 kHz mono 1 kHz tone WAV (cached per session)."""

    def make(freq_hz: float, seconds: float = 3.0, rate: int = 8000, channels: int = 1) -> Path:
        path = tone_dir / f"tone_{freq_hz:g}Hz_{seconds:g}s_{rate}_{channels}ch.wav"
        if not path.exists():
            make_tone_wav(path, freq_hz, seconds=seconds, rate=rate, channels=channels)
        return path

    return make


@pytest.fixture(scope="session")
def tone_1k(tone_wav: Callable[..., Path]) -> Path:
    return tone_wav(1000)


@pytest.fixture(scope="session")
def tone_2k(tone_wav: Callable[..., Path]) -> Path:
    return tone_wav(2000)


@pytest.fixture
def phone_factory(tmp_path: Path) -> Iterator[Callable[..., Phone]]:
    """``phone_factory("alice", auto_answer=200)`` -> a started ``Phone``; logs go to
    ``tmp_path/<name>.log``. All phones are closed at teardown."""
    phones: list[Phone] = []

    def make(name: str = "phone", **kwargs: Any) -> Phone:
        kwargs.setdefault("log_dir", tmp_path)
        p = Phone(name, **kwargs)
        phones.append(p)
        return p

    yield make
    for p in phones:  # shut down in parallel: each pjsua teardown takes about a second
        p.request_quit()
    for p in reversed(phones):
        p.close()


def require_binary(name: str) -> str:
    """Path of an executable, or skip the test (``make test`` installs the peers)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install sip-tester baresip-core)")
    return path


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``baresip_factory("bob", sip_port=p1, ctrl_port=p2, tone_hz=1500)`` -> a started
    ``Baresip`` in ``tmp_path/baresip-<user>``; skips when baresip is not installed."""
    require_binary("baresip")
    from tests.peers.baresip import Baresip

    started: list[Baresip] = []

    def make(user: str = "baresip", **kwargs: Any) -> Baresip:
        kwargs.setdefault("sip_port", free_udp_port())
        kwargs.setdefault("ctrl_port", free_udp_port())
        b = Baresip(tmp_path / f"baresip-{user}", user=user, **kwargs)
        started.append(b)
        return b

    yield make
    for b in reversed(started):
        b.close()


@pytest.fixture
def sipp_workdir(tmp_path: Path) -> Path:
    """Scratch directory for SIPp runs (stat CSVs, error logs, tone.pcap)."""
    require_binary("sipp")
    d = tmp_path / "sipp"
    d.mkdir()
    return d


@pytest.fixture
def server_factory(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Callable[..., Switchboard]]:
    """``server_factory(**Switchboard kwargs)`` -> a started Switchboard process in its own
    folder. At teardown every server is stopped and its log must show no crash: no traceback
    and no error-level event, whatever the test did."""
    servers: list[Switchboard] = []

    def make(**kwargs: Any) -> Switchboard:
        workdir = tmp_path / f"sb{len(servers)}"
        workdir.mkdir()
        sb = Switchboard(workdir, kwargs.pop("sip_port", None) or free_port(), **kwargs)
        servers.append(sb)
        return sb.start()

    yield make
    for sb in servers:
        sb.stop()
    for sb in servers:
        problems = server_problems(sb.log_events(), sb.log_text())
        assert not problems, "\n".join(problems[:5])


@pytest.fixture
def server(server_factory: Callable[..., Switchboard]) -> Switchboard:
    """A Switchboard with extensions 1001-1003 (see ``tests.peers.switchboard``)."""
    return server_factory()

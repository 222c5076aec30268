"""The recordings and reports pages in a real browser (Playwright driving Debian's chromium,
headless) against a running Switchboard: a recording is seeded (a real stereo WAV in the
server's recordings folder and its row added through the store API, as the recorder adds
it); a supervisor opens /recordings, the row's player plays it, seeks near the end, and the
browser's byte-range requests are answered 206 with the file's duration right; then
/reports shows a report's table and its PNG chart loads. Screenshots go to
tests/artifacts/."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import soundfile

from crm import RecordingData, RecordingState, Store
from tests.peers.browser import ARTIFACTS, chromium, login_page
from tests.peers.switchboard import Switchboard

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.peers

RATE = 8000
SECONDS = 240.0  # 7.7 MB of 16-bit stereo: more than the browser fetches before a seek
SEEK_TO = 230.0
CONFIG = """agents:
  bob: {name: Bob, extensions: ["1002"]}
queues:
  support: {members: [bob]}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(["--autoplay-policy=no-user-gesture-required"]) as b:
        yield b


def _seed_recording(sb: Switchboard) -> str:
    """A stereo WAV (a tone left, another right) and its row, as the recorder leaves them."""
    started = datetime.now(UTC) - timedelta(minutes=10)
    rid = "rec-" + "0" * 23 + "1"
    relative = f"{started:%Y/%m/%d}/{rid}.wav"
    path = sb.workdir / "recordings" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * SECONDS)) / RATE
    audio = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t)], axis=1) * 0.3
    soundfile.write(path, audio, RATE, subtype="PCM_16")
    data = path.read_bytes()
    row = RecordingData(
        recording_id=rid,
        call_id="call-seeded-1",
        started=started,
        ended=started + timedelta(seconds=SECONDS),
        path=relative,
        format="wav",
        rate=RATE,
        state=RecordingState.COMPLETE,
        caller="5550100",
        callee="1002",
        direction="inbound",
        extension="1002",
        agent="bob",
        queue="support",
        duration=SECONDS,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )

    async def add() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{sb.db_path}")
        try:
            await store.add_recording(row)
        finally:
            await store.close()

    # Playwright's sync API runs an event loop in this thread: the store gets its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, add()).result()
    return rid


def _login(browser: Any, sb: Switchboard, name: str, password: str) -> Any:
    return login_page(browser, sb, name, password, size=(1300, 900), live=False)


def test_a_recording_plays_and_seeks_in_the_page_and_a_report_shows_its_chart(
    server_factory: Callable[..., Switchboard], browser: Any
) -> None:
    expect = sync_api.expect
    sb = server_factory(extra_yaml=CONFIG)
    password = "sue-password-1"
    r = sb.api(
        "POST", "/api/users", json={"name": "sue", "role": "supervisor", "password": password}
    )
    assert r.status_code == 201, r.text
    rid = _seed_recording(sb)

    page = _login(browser, sb, "sue", password)
    audio_answers: list[tuple[str | None, int, str | None]] = []

    def on_response(response: Any) -> None:
        if response.url.split("?")[0].endswith(f"/api/recordings/{rid}/audio"):
            audio_answers.append(
                (
                    response.request.headers.get("range"),
                    response.status,
                    response.headers.get("content-range"),
                )
            )

    page.on("response", on_response)
    page.get_by_test_id("nav-recordings").click()
    page.wait_for_url(lambda url: "/recordings" in url)
    row = page.locator(f'tr[data-recording="{rid}"]')
    expect(row).to_contain_text("5550100")
    expect(row).to_contain_text("bob")
    player = row.get_by_test_id("rec-audio")
    assert player.get_attribute("preload") == "none"
    assert audio_answers == []  # nothing fetched before the user plays

    duration = player.evaluate(
        """async (a) => {
            await a.play();
            if (!(a.duration > 0)) {
                await new Promise((ok) => a.addEventListener("durationchange", ok, {once: true}));
            }
            return a.duration;
        }"""
    )
    assert duration == pytest.approx(SECONDS, abs=0.05)
    position = player.evaluate(
        """async (a, to) => {
            const seeked = new Promise((ok) => a.addEventListener("seeked", ok, {once: true}));
            a.currentTime = to;
            await seeked;
            await new Promise((ok) => setTimeout(ok, 800));
            return a.currentTime;
        }""",
        SEEK_TO,
    )
    assert SEEK_TO <= position < SECONDS
    assert not player.evaluate("(a) => a.paused || a.error !== null")
    page.screenshot(path=str(ARTIFACTS / "records-recordings.png"), full_page=True)

    ranged = [a for a in audio_answers if a[0] is not None and a[1] == 206]
    assert ranged, audio_answers
    size = (sb.workdir / "recordings").rglob(f"{rid}.wav").__next__().stat().st_size
    assert all(cr is not None and cr.endswith(f"/{size}") for _, _, cr in ranged)
    # The seek asked for bytes far into the file, not the start again.
    starts = [int(a[0].split("=")[1].split("-")[0]) for a in ranged if a[0] is not None]
    assert max(starts) > size // 2, audio_answers

    # The download link names the file.
    with page.expect_download() as download:
        row.get_by_test_id("rec-download").click()
    assert download.value.suggested_filename == f"{rid}.wav"

    # Reports: the traffic report by hour of today, its table and its PNG chart.
    page.get_by_test_id("nav-reports").click()
    page.wait_for_url(lambda url: "/reports" in url)
    page.get_by_test_id("rep-report").select_option("traffic")
    page.get_by_test_id("rep-period").select_option("hour")
    page.get_by_test_id("rep-run").click()
    page.wait_for_url(lambda url: "report=traffic" in url)
    expect(page.get_by_test_id("rep-table")).to_contain_text("Inbound calls")
    chart = page.get_by_test_id("rep-chart")
    expect(chart).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=rep-chart]');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=20_000,
    )
    assert chart.evaluate("(i) => i.naturalWidth") > 200
    page.screenshot(path=str(ARTIFACTS / "records-reports.png"), full_page=True)

"""Config reload: what it applies live, what it names as needing a restart (issue 15)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from app import build_server, reload_config, reload_config_async
from app.reload import ReloadReport, changed_keys, read_report, write_report
from config import load_config

BASE = """\
    sip:
      listen: [{transport: udp, host: 127.0.0.1, port: 5090}]
      user_agent: Before
      auth: {algorithms: [MD5], nonce_lifetime: 300, block_seconds: 300}
      registration: {min_expires: 60, max_expires: 3600, default_expires: 600}
    rtp: {host: 127.0.0.1, ports: [30000, 30099]}
    store: {url: "sqlite+aiosqlite:///sb.db"}
    extensions:
      "1001": {name: A, password: apw}
    """


def _write(folder: Path, text: str) -> Path:
    path = folder / "switchboard.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_changed_keys_descends_mappings_and_compares_lists_whole(tmp_path: Path) -> None:
    old = load_config(_write(tmp_path, BASE))
    new = load_config(
        _write(
            tmp_path,
            BASE.replace("ports: [30000, 30099]", "ports: [30100, 30199]")
            .replace("algorithms: [MD5]", "algorithms: [SHA-256, MD5]")
            .replace('"1001": {name: A, password: apw}', '"1001": {name: B, password: apw}'),
        )
    )
    assert changed_keys(old, new) == [
        "extensions.1001.name",
        "rtp.ports",
        "sip.auth.algorithms",
    ]
    report = ReloadReport.compare(old, old, new)
    assert report.applied == ["extensions.1001.name", "sip.auth.algorithms"]
    assert report.restart_needed == ["rtp.ports"]
    assert "needs a restart" in report.summary() and "rtp.ports" in report.summary()
    assert changed_keys(old, old) == []


async def test_reload_applies_auth_live_and_keeps_restart_keys_pending(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    running = await build_server(load_config(path), tmp_path)
    try:
        server = running.server
        assert server.auth.algorithms == ("MD5",)
        _write(
            tmp_path,
            BASE.replace("algorithms: [MD5], nonce_lifetime: 300, block_seconds: 300",
                         "algorithms: [SHA-256, MD5], nonce_lifetime: 120, block_seconds: 0")
            .replace("min_expires: 60", "min_expires: 120")
            .replace("port: 5090", "port: 5091")
            .replace("user_agent: Before", "user_agent: After"),
        )  # fmt: skip
        report = reload_config(running, path)
        assert report.ok
        assert report.applied == [
            "sip.auth.algorithms",
            "sip.auth.block_seconds",
            "sip.auth.nonce_lifetime",
            "sip.registration.min_expires",
        ]
        assert report.restart_needed == ["sip.listen", "sip.user_agent"]
        # Applied: the digest settings, the throttle (block_seconds 0: off), the registrar.
        auth = server.auth  # a new name: mypy keeps the 1-tuple narrowing of the assert above
        assert auth.algorithms == ("SHA-256", "MD5")
        assert auth.nonce_lifetime == 120
        assert server.throttle is None
        assert server.registrar.min_expires == 120
        # Not applied: the server keeps the socket and identity it started with.
        assert server.settings.listen[0].port == 5090
        assert server.stack.user_agent == "Before"

        # A second reload that changes nothing else still names the pending restart keys;
        # nothing new is applied.
        again = await reload_config_async(running, path)  # read in a thread, swapped here
        assert again.applied == [] and again.restart_needed == ["sip.listen", "sip.user_agent"]

        # Back to the started values: nothing pending any more.
        _write(tmp_path, BASE)
        back = reload_config(running, path)
        assert back.restart_needed == [] and "sip.auth.algorithms" in back.applied
        assert server.auth.algorithms == ("MD5",) and server.throttle is not None

        # A broken file is refused and reported with file:line:column.
        path.write_text("sip: [\n")
        refused = await reload_config_async(running, path)
        assert not refused.ok and refused.problems and str(path) in refused.problems[0]
        assert server.auth.algorithms == ("MD5",)
    finally:
        await running.store.close()


def test_report_round_trips_through_the_status_file(tmp_path: Path) -> None:
    assert read_report(tmp_path) is None
    report = ReloadReport(ok=True, applied=["queues.sales"], restart_needed=["rtp.ports"], at=5)
    write_report(tmp_path, report)
    assert read_report(tmp_path) == report
    (tmp_path / "reload-status.json").write_text("{not json")
    assert read_report(tmp_path) is None

"""The typer CLI: `config validate` exit codes and output, `serve` bootstrap and hand-off."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from cli.logging_setup import configure_logging
from cli.main import app
from config import SwitchboardConfig

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """`serve` reconfigures global logging onto CliRunner's (then closed) stderr: undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_validate_ok(tmp_path: Path) -> None:
    (tmp_path / "switchboard.yaml").write_text('extensions: {"1001": {password: pw}}\n')
    result = runner.invoke(app, ["config", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "OK"


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sip:\n  relm: x\n  listen: []\nrtp: {ports: [2, 4]}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert "OK" not in result.stdout
    assert result.stderr.splitlines() == [
        f"{path}:2:3: sip.relm: unknown key 'relm' (did you mean 'realm'?)",
        f"{path}:3:11: sip.listen: at least one listen socket is required",
        f"{path}:4:14: rtp.ports: RTP port range 2-4 is too small, need at least 4 ports",
    ]


def test_validate_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text("sip: {realm: x\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}:2:1: YAML syntax error:")


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read config" in result.stderr


def test_validate_defaults_to_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Like serve, reload and acd queue-log: no path means ./var.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "switchboard.yaml").write_text("sip: {relm: x}\n")
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "var/switchboard.yaml:1:7: sip.relm: unknown key 'relm' (did you mean 'realm'?)"
    ]


def test_validate_reports_schema_and_reference_problems_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(
        "extensions:\n"
        '  "1001": {password: x, ring_timeout: -1}\n'
        "dialplan:\n"
        "  inbound:\n"
        '    - {did: "4000", destination: {kind: extension, target: "1009"}}\n'
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2:39: extensions.1001.ring_timeout: Input should be greater than or equal to 1",
        f"{path}:5:60: dialplan.inbound[0].destination.target: unknown extension '1009'",
    ]


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["config"], ["config", "validate"], ["config", "reload"], ["acd", "queue-log"]],
)
def test_help_shows_no_type_on_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[SwitchboardConfig, Path]]:
    """Install a stand-in ``cli.app`` whose async ``run`` records its arguments."""
    import app as real_app

    calls: list[tuple[SwitchboardConfig, Path]] = []

    async def run(config: SwitchboardConfig, *, config_dir: Path, config_file: Path) -> None:
        assert config_file.parent == config_dir
        calls.append((config, config_dir))

    module: Any = types.ModuleType("app")
    module.run = run
    module.load_all = real_app.load_all  # the real checks: config, flows, dialplan references
    monkeypatch.setitem(sys.modules, "app", module)
    return calls


def test_serve_bootstraps_var_and_prints_passwords_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_server: list[Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["serve"])
    assert first.exit_code == 0, first.output
    cfg, config_dir = fake_server[0]
    assert config_dir == (tmp_path / "var").resolve()
    for number, ext in cfg.extensions.items():
        assert f"extension {number}  password {ext.password}" in first.stdout
    assert cfg.store.url.endswith(f"{tmp_path.resolve()}/var/switchboard.db")

    second = runner.invoke(app, ["serve"])
    assert second.exit_code == 0, second.output
    assert "password" not in second.stdout
    assert fake_server[1][0] == cfg  # same config reused


def test_serve_with_config_and_json_logs(
    tmp_path: Path, fake_server: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "switchboard.yaml").write_text("sip: {realm: acme}\n")
    result = runner.invoke(
        app, ["serve", "--config", str(tmp_path), "--log-json", "--log-level", "debug"]
    )
    assert result.exit_code == 0, result.output
    assert fake_server[0][0].sip.realm == "acme"
    assert fake_server[0][1] == tmp_path.resolve()
    assert not (tmp_path / "var").exists()


def test_serve_bad_config_exits_1(tmp_path: Path, fake_server: list[Any]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("sip: {port: 5060}\n")
    result = runner.invoke(app, ["serve", "-c", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1:7: sip.port: unknown key 'port'" in result.stderr
    assert fake_server == []


def test_json_logging_routes_stdlib_and_structlog(tmp_path: Path) -> None:
    out = (tmp_path / "log.jsonl").open("w+")
    try:
        configure_logging(json=True, level="info", stream=out)
        structlog.get_logger("t").info("call_started", call_id="abc", leg=1)
        logging.getLogger("plain").warning("stdlib %s", "message")
        structlog.get_logger("t").debug("hidden")
        out.seek(0)
        lines = [json.loads(line) for line in out.read().splitlines()]
    finally:
        out.close()
    assert [line["event"] for line in lines] == ["call_started", "stdlib message"]
    assert lines[0]["call_id"] == "abc" and lines[0]["level"] == "info"
    assert lines[1]["logger"] == "plain" and lines[1]["level"] == "warning"
    assert all("timestamp" in line for line in lines)


def test_unknown_log_level_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="chatty")


def test_validate_checks_dialplan_against_flows_and_prompts(tmp_path: Path) -> None:
    """A dialplan naming a flow or prompt that does not exist is an error at validate time,
    not a 480 when the first caller arrives."""
    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "main.yaml").write_text(
        "start: bye\nnodes:\n  bye: {type: hangup, prompt: goodbye}\n"
    )
    cfg = tmp_path / "switchboard.yaml"
    cfg.write_text(
        "dialplan:\n"
        "  inbound:\n"
        '    - {did: "4000", destination: {kind: ivr, target: main}}\n'
        '    - {did: "4001", destination: {kind: ivr, target: mian}}\n'
        '    - {did: "4002", destination: {kind: play_hangup, prompt: goodby}}\n'
    )
    result = runner.invoke(app, ["config", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{cfg}:4:54: dialplan.inbound[1].destination.target: unknown IVR flow 'mian'",
        f"{cfg}:5:62: dialplan.inbound[2].destination.prompt: unknown prompt 'goodby'",
    ]


def test_validate_reports_config_and_flow_problems_in_one_run(tmp_path: Path) -> None:
    """A config error does not hide the errors of the IVR flows: one run shows both."""
    (tmp_path / "ivr").mkdir()
    flow = tmp_path / "ivr" / "main.yaml"
    flow.write_text("start: bye\nnodes:\n  bye: {type: hangup, next: nowhere}\n")
    cfg = tmp_path / "switchboard.yaml"
    cfg.write_text('extensions:\n  "1001": {password: x, ring_timeout: -1}\n')
    result = runner.invoke(app, ["config", "validate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{cfg}:2:") and "ring_timeout" in line for line in lines)
    assert any(line.startswith(f"{flow}:") for line in lines), lines


def test_acd_queue_log_export(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime

    from crm import QueueEventData, Store

    cfg = tmp_path / "switchboard.yaml"
    cfg.write_text(f'store: {{url: "sqlite+aiosqlite:///{tmp_path}/sb.db"}}\n')
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def fill() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/sb.db")
        await store.add_acd_log(
            [
                QueueEventData(t0, "c1", "sales", "", "ENTERQUEUE", ("", "5551234")),
                QueueEventData(t0, "c2", "support", "", "ENTERQUEUE", ("", "5550000")),
                QueueEventData(t0, "c1", "sales", "a1", "CONNECT", ("4", "c1", "2")),
            ],
            [],
        )
        await store.close()

    asyncio.run(fill())
    result = runner.invoke(app, ["acd", "queue-log", str(tmp_path), "--queue", "sales"])
    assert result.exit_code == 0, result.output
    epoch = int(t0.timestamp())
    assert result.output.splitlines() == [
        f"{epoch}|c1|sales|NONE|ENTERQUEUE||5551234",
        f"{epoch}|c1|sales|a1|CONNECT|4|c1|2",
    ]
    later = runner.invoke(app, ["acd", "queue-log", str(tmp_path), "--since", "2026-01-03"])
    assert later.exit_code == 0 and later.output == ""


def test_serve_on_a_busy_port_prints_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))  # the "first switchboard" holds this port
        port = busy.getsockname()[1]
        cfg = tmp_path / "switchboard.yaml"
        cfg.write_text(
            f"sip: {{listen: [{{transport: udp, host: 127.0.0.1, port: {port}}}]}}\n"
            "rtp: {host: 127.0.0.1}\n"
            'store: {url: "sqlite+aiosqlite:///sb.db"}\n'
        )
        result = runner.invoke(app, ["serve", "-c", str(cfg)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    problem = [line for line in result.stderr.splitlines() if "sip.listen" in line]
    assert problem == [
        f"another process is using udp 127.0.0.1:{port}: stop it or change sip.listen in {cfg}"
    ]
    assert "Traceback" not in result.output


def test_voicemail_list_and_export(tmp_path: Path) -> None:
    import asyncio
    import hashlib
    import json
    from datetime import UTC, datetime

    from crm import Store, VoicemailData

    cfg = tmp_path / "switchboard.yaml"
    cfg.write_text(f'store: {{url: "sqlite+aiosqlite:///{tmp_path}/sb.db"}}\n')
    wav = tmp_path / "m.wav"
    wav.write_bytes(b"RIFF-not-really")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def fill() -> list[int]:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/sb.db")
        ids = [
            await store.add_voicemail(
                VoicemailData(
                    f"r{n}",
                    box,
                    "5551234",
                    str(wav),
                    hashlib.sha256(wav.read_bytes()).hexdigest(),
                    2.0,
                    t0,
                )
            )
            for n, box in enumerate(("1001", "1002"))
        ]
        await store.mark_voicemail_heard(ids[0])
        await store.close()
        return ids

    ids = asyncio.run(fill())
    listed = runner.invoke(app, ["voicemail", "list", "-c", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["id"], r["mailbox"], r["status"]) for r in rows] == [
        (ids[0], "1001", "saved"),
        (ids[1], "1002", "new"),
    ]
    one = runner.invoke(app, ["voicemail", "list", "-c", str(tmp_path), "--mailbox", "1002"])
    assert one.exit_code == 0 and len(one.output.splitlines()) == 1 and "new" in one.output
    out = tmp_path / "out.wav"
    exported = runner.invoke(
        app, ["voicemail", "export", str(ids[1]), "-o", str(out), "-c", str(tmp_path)]
    )
    assert exported.exit_code == 0, exported.output
    assert out.read_bytes() == wav.read_bytes()
    missing = runner.invoke(app, ["voicemail", "export", "999", "-o", str(out), "-c", str(cfg)])
    assert missing.exit_code == 1 and "no voicemail message 999" in missing.stderr

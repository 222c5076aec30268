"""The ``switchboard`` command line (typer).

``switchboard serve`` starts the server; ``switchboard config validate`` checks a config
without starting anything. The CLI never reimplements server logic: it loads config through
:mod:`config` and hands it to :func:`app.run`, imported lazily so the rest of the CLI
works without the SIP core.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer

from cli.commands import register as register_live_commands
from cli.db import db_app
from cli.logging_setup import configure_logging

if TYPE_CHECKING:
    from config import ConfigError

DEFAULT_VAR_DIR = Path("var")

# Plain (click) help: typer's rich help shows a "<bool>" type on every flag, --help included,
# and wraps option help into a narrow column.
app = typer.Typer(
    name="switchboard",
    help="Switchboard: a softswitch and call-center engine.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(
    help="Check configuration files.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")
acd_app = typer.Typer(
    help="Queues and agents: reports from the store.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(acd_app, name="acd")
voicemail_app = typer.Typer(
    help="Voicemail messages in the store: list and export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(voicemail_app, name="voicemail")
app.add_typer(db_app, name="db")


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"switchboard {version('switchboard')}")
        except PackageNotFoundError:
            typer.echo("switchboard (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Switchboard: a softswitch and call-center engine."""


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        typer.echo(str(problem), err=True)


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config folder (holding switchboard.yaml) or YAML file. Default: ./var/, "
            "created with random extension passwords on first start.",
        ),
    ] = None,
    log_json: Annotated[
        bool,
        typer.Option("--log-json", envvar="SWITCHBOARD_LOG_JSON", help="Log JSON lines."),
    ] = False,
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", envvar="SWITCHBOARD_LOG_LEVEL", case_sensitive=False),
    ] = LogLevel.info,
) -> None:
    """Run the server (SIP, media, store) until interrupted."""
    configure_logging(json=log_json, level=log_level.value)
    log = structlog.get_logger("switchboard.cli")

    # Imported here: the config schema imports pbx's dialplan helpers, and `--help` and the
    # live commands need none of that.
    from config import ConfigError, config_file_path, ensure_default_config

    if config is None:
        config_path, passwords = ensure_default_config(DEFAULT_VAR_DIR)
        if passwords is not None:
            _announce_passwords(config_path, passwords)
    else:
        config_path = config_file_path(config)
    config_dir = config_path.resolve().parent
    from app import load_all

    try:
        cfg, _ = load_all(config_path)
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    log.info("config_loaded", path=str(config_path), extensions=len(cfg.extensions))

    # Imported lazily: the SIP core is heavy and the other commands must not need it.
    from app import run
    from crm.migrate import StoreNeedsUpgrade

    try:
        _run_server(run, cfg, config_dir, config_path.resolve())
    except KeyboardInterrupt:
        log.info("server_interrupted")
    except StoreNeedsUpgrade as exc:  # a PostgreSQL store is only upgraded by `db upgrade`
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        # pbx.stack.ListenError names the SIP socket it could not open (cli does not import
        # pbx, hence the attribute): one line and what to do, not a traceback.
        if getattr(exc, "socket", None) is None:
            raise
        advice = "stop it or change" if exc.errno == errno.EADDRINUSE else "change"
        setting = getattr(exc, "setting", "sip.listen")
        typer.echo(f"{exc}: {advice} {setting} in {config_path}", err=True)
        raise typer.Exit(1) from None


def _run_server(run: Any, cfg: Any, config_dir: Path, config_file: Path) -> None:
    """Run ``run(cfg, config_dir=...)`` in uvloop when installed, else plain asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(cfg, config_dir=config_dir, config_file=config_file))
    else:
        uvloop.run(run(cfg, config_dir=config_dir, config_file=config_file))


def _announce_passwords(path: Path, passwords: dict[str, str]) -> None:
    typer.echo(f"Created {path} with these extensions (shown once; also stored in that file):")
    for number, password in passwords.items():
        typer.echo(f"  extension {number}  password {password}")


@config_app.command("validate")
def validate(
    path: Annotated[
        Path,
        typer.Argument(help="Config folder (holding switchboard.yaml) or YAML file."),
    ] = DEFAULT_VAR_DIR,
) -> None:
    """Check a config and its IVR flows; print every problem as file:line:column: message
    (exit 1) or OK."""
    from app import load_all
    from config import ConfigError

    try:
        load_all(path)
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    typer.echo("OK")


@config_app.command("reload")
def reload(
    path: Annotated[
        Path,
        typer.Argument(help="Config folder (holding switchboard.yaml) or YAML file."),
    ] = DEFAULT_VAR_DIR,
) -> None:
    """Check the config, then tell the running server to load it (SIGHUP) and print what it
    did: the keys it applied, and the keys that need a restart (those keep their old value
    until then: sockets, RTP ports, media workers, the store, realm and identity).

    A config with errors is not sent: every problem is printed as file:line:column and the
    running server keeps its current config. Exit codes: 0 reloaded (read the "needs a
    restart" line), 1 config refused, 2 no running server, 3 signal sent but no report from
    the server within 10 seconds (see its log).
    """
    import time

    from app import load_all
    from app.reload import read_report
    from config import ConfigError, config_file_path

    try:
        load_all(path)
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    folder = config_file_path(path).resolve().parent
    pid_file = folder / "switchboard.pid"
    sent = time.time()
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        typer.echo(f"no running switchboard for {folder} ({exc})", err=True)
        raise typer.Exit(2) from None
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        report = read_report(folder)
        if report is not None and report.pid == pid and report.at >= sent:
            if not report.ok:
                typer.echo(report.summary(), err=True)
                raise typer.Exit(1)
            typer.echo(report.summary())
            return
        time.sleep(0.05)
    typer.echo(f"reload sent to switchboard (pid {pid}); no report within 10 s", err=True)
    raise typer.Exit(3)


@acd_app.command("queue-log")
def queue_log(
    path: Annotated[
        Path,
        typer.Argument(help="Config folder (holding switchboard.yaml) or YAML file."),
    ] = DEFAULT_VAR_DIR,
    since: Annotated[
        str | None, typer.Option(help="Only events from this time on (ISO 8601, UTC if naive).")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue's events.")] = None,
) -> None:
    """Print the queue event log in Asterisk queue_log format (epoch|call|queue|agent|event|
    data...), so existing queue dashboards and report tools can read it."""
    from datetime import UTC, datetime

    from app import queue_log_lines
    from config import ConfigError

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            typer.echo(f"--since {since!r} is not an ISO 8601 time", err=True)
            raise typer.Exit(2) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    try:
        lines = asyncio.run(queue_log_lines(path, start, queue))
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    for line in lines:
        typer.echo(line)


ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", help="Config folder (holding switchboard.yaml) or YAML file."),
]


@voicemail_app.command("list")
def voicemail_list(
    config: ConfigPath = DEFAULT_VAR_DIR,
    mailbox: Annotated[str | None, typer.Option(help="Only this mailbox's messages.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """List voicemail messages, oldest first: id, mailbox, time (UTC), caller, seconds, and
    new (not heard yet) or saved."""
    import json

    from app import voicemail_messages
    from config import ConfigError

    try:
        messages = asyncio.run(voicemail_messages(config, mailbox))
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    rows: list[dict[str, Any]] = [
        {
            "id": m.id,
            "mailbox": m.mailbox,
            "created_at": m.created_at.isoformat(),
            "caller": m.caller,
            "seconds": round(m.seconds, 1),
            "status": "saved" if m.heard else "new",
            "path": m.path,
        }
        for m in messages
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>5}  {r['mailbox']:<8} {r['created_at'][:19]}  {r['caller']:<16} "
            f"{r['seconds']:>6}s  {r['status']}"
        )


@voicemail_app.command("export")
def voicemail_export(
    message_id: Annotated[int, typer.Argument(help="The message id (see voicemail list).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write.")],
    config: ConfigPath = DEFAULT_VAR_DIR,
) -> None:
    """Write one message's recording to a WAV file."""
    from app import export_voicemail
    from config import ConfigError

    try:
        message, intact = asyncio.run(export_voicemail(config, message_id, output))
    except ConfigError as err:
        _print_problems(err)
        raise typer.Exit(1) from None
    except (LookupError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not intact:
        typer.echo(f"warning: {message.path} no longer matches its stored SHA-256", err=True)
    typer.echo(f"message {message_id} ({message.seconds:.1f} s) written to {output}")


# The live commands over the running server's HTTP API (cli/commands.py).
register_live_commands(app)


if __name__ == "__main__":
    app()

"""``switchboard recording``: search recordings, fetch one's audio (checked against the
SHA-256 the server recorded), export a search as CSV or XLSX, and start, stop, pause or
resume the recording of a live call — each through the running server's HTTP API
(docs/api.md "Recordings"), with the exit codes of :mod:`cli.client`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import EXIT_REFUSED, ApiClient
from cli.commands import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    LimitOpt,
    _api,
    _col,
    _disposition,
    _listing,
    _seg,
    _sub,
    _text,
    _when,
)

recording_app = _sub("Call recordings: search, download, export; record a live call.")

SinceOpt = Annotated[
    str | None, typer.Option(help="Started at or after this time (ISO 8601, UTC if naive).")
]
UntilOpt = Annotated[str | None, typer.Option(help="Started before this time (ISO 8601).")]
AgentOpt = Annotated[str | None, typer.Option(help="Taken by this agent (agents: id).")]
ExtensionOpt = Annotated[str | None, typer.Option(help="At this extension.")]
NumberOpt = Annotated[
    str | None, typer.Option(help="Caller, callee or dialled number contains this.")
]
QueueOpt = Annotated[str | None, typer.Option(help="Through this queue.")]
CustomerOpt = Annotated[int | None, typer.Option(help="Of this customer (customer id).")]
DispositionOpt = Annotated[
    str | None,
    typer.Option(help="The call's outcome: ANSWERED, NO ANSWER, BUSY, FAILED or CANCELLED."),
]
StateOpt = Annotated[str | None, typer.Option(help="recording, complete, truncated or failed.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="The file to write.")]


def _filters(
    since: str | None,
    until: str | None,
    agent: str | None,
    extension: str | None,
    number: str | None,
    queue: str | None,
    customer: int | None,
    disposition: str | None,
    state: str | None,
) -> dict[str, Any]:
    return {
        "since": since,
        "until": until,
        "agent": agent,
        "extension": extension,
        "number": number,
        "queue": queue,
        "customer": customer,
        "disposition": _disposition(disposition),
        "state": state,
    }


def _seconds(value: Any) -> str:
    return "" if value is None else f"{float(value):.0f}s"


RECORDING_COLUMNS = [
    _col("STARTED", "started", _when),
    _col("LENGTH", "duration", _seconds),
    _col("STATE", "state"),
    _col("CALLER", "caller"),
    _col("CALLEE", "callee"),
    _col("EXTENSION", "extension"),
    _col("AGENT", "agent"),
    _col("QUEUE", "queue"),
    _col("ID", "id"),
]


@recording_app.command("search")
def recording_search(
    config: ConfigOpt = DEFAULT_CONFIG,
    since: SinceOpt = None,
    until: UntilOpt = None,
    agent: AgentOpt = None,
    extension: ExtensionOpt = None,
    number: NumberOpt = None,
    queue: QueueOpt = None,
    customer: CustomerOpt = None,
    disposition: DispositionOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Search recordings, newest first; each with the id `recording get` takes (--json
    prints every field)."""
    _listing(
        config,
        "/api/recordings",
        as_json,
        limit,
        RECORDING_COLUMNS,
        "no recordings",
        **_filters(since, until, agent, extension, number, queue, customer, disposition, state),
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """What :func:`fetch_audio` wrote: size, SHA-256, and the row's (None: none recorded)."""

    size: int
    sha256: str
    expected: str | None

    @property
    def verified(self) -> bool:
        return self.expected is not None and self.expected == self.sha256


def save(
    api: ApiClient,
    path: str,
    output: Path,
    params: dict[str, Any] | None = None,
    expected: str | None = None,
) -> Fetched:
    """Download ``path`` to ``output`` through ``output``.part, hashing it on the way. When
    ``expected`` is given and differs, the part file is removed and ``output`` is not
    touched; otherwise the part file becomes ``output``. A failed download leaves nothing."""
    part = output.with_name(output.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with part.open("wb") as f:

            def write(chunk: bytes) -> None:
                nonlocal size
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)

            api.download(path, write, params=params)
        fetched = Fetched(size, digest.hexdigest(), expected)
        if expected is not None and not fetched.verified:
            part.unlink(missing_ok=True)
        else:
            os.replace(part, output)
        return fetched
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def fetch_audio(api: ApiClient, recording_id: str, output: Path) -> Fetched:
    """Download a recording's audio to ``output``, checked against the row's SHA-256."""
    row = api.get(f"/api/recordings/{_seg(recording_id)}")
    expected = row.get("sha256") if isinstance(row, dict) else None
    return save(
        api,
        f"/api/recordings/{_seg(recording_id)}/audio",
        output,
        {"download": 1},
        expected if isinstance(expected, str) and expected else None,
    )


@recording_app.command("get")
def recording_get(
    recording_id: Annotated[
        str, typer.Argument(metavar="ID", help="The recording id (see recording search).")
    ],
    output: OutputOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Download a recording's audio to FILE and check it against the SHA-256 the server
    recorded (exit 1, FILE untouched, when they differ)."""
    try:
        with _api(config) as api:
            fetched = fetch_audio(api, recording_id, output)
    except OSError as exc:
        typer.echo(f"cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    if fetched.expected is not None and not fetched.verified:
        typer.echo(
            f"recording {recording_id}: SHA-256 {fetched.sha256} of the download is not "
            f"{fetched.expected} (the server's): {output} not written",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    check = "SHA-256 verified" if fetched.verified else "no SHA-256 recorded: not verified"
    typer.echo(f"recording {recording_id} saved to {output} ({fetched.size} bytes, {check})")


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"


ExportFormatOpt = Annotated[
    ExportFormat, typer.Option("--format", help="csv (UTF-8) or xlsx (Excel).")
]


@recording_app.command("export")
def recording_export(
    output: OutputOpt,
    fmt: ExportFormatOpt = ExportFormat.csv,
    config: ConfigOpt = DEFAULT_CONFIG,
    since: SinceOpt = None,
    until: UntilOpt = None,
    agent: AgentOpt = None,
    extension: ExtensionOpt = None,
    number: NumberOpt = None,
    queue: QueueOpt = None,
    customer: CustomerOpt = None,
    disposition: DispositionOpt = None,
    state: StateOpt = None,
) -> None:
    """Export every recording the search finds (at most 100,000) as one CSV or XLSX
    file."""
    params = {
        "format": fmt.value,
        **_filters(since, until, agent, extension, number, queue, customer, disposition, state),
    }
    try:
        with _api(config) as api:
            fetched = save(api, "/api/recordings/export", output, params)
    except OSError as exc:
        typer.echo(f"cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"recordings exported to {output} ({fmt.value}, {fetched.size} bytes)")


CallId = Annotated[str, typer.Argument(metavar="CALL_ID", help="The live call (see call list).")]


def _control(config: Path, call_id: str, action: str) -> None:
    with _api(config) as api:
        answer = api.post(f"/api/calls/{_seg(call_id)}/recording", {"action": action}) or {}
    typer.echo(
        f"call {call_id}: recording {_text(answer.get('recording_id'))} "
        f"{_text(answer.get('state'))}"
    )


@recording_app.command("start")
def recording_start(call_id: CallId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Start recording a live call now."""
    _control(config, call_id, "start")


@recording_app.command("stop")
def recording_stop(call_id: CallId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Stop recording a live call (the file is finished and kept)."""
    _control(config, call_id, "stop")


@recording_app.command("pause")
def recording_pause(call_id: CallId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Pause a call's recording: silence is recorded until resume (card numbers, say)."""
    _control(config, call_id, "pause")


@recording_app.command("resume")
def recording_resume(call_id: CallId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Resume a paused recording."""
    _control(config, call_id, "resume")

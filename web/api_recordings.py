"""The ``/api/recordings`` routes and the recording control of a live call (docs/api.md,
"Recordings").

Theory of operation: rows come from the store (:meth:`crm.Store.search_recordings`), files
from the recorder's folder (a row's ``path`` is relative to it), commands go to the recorder
(:class:`recorder.commands.RecorderCommands`). An agent user sees the recordings of the calls
they took and of the direct calls at their extensions that no other agent took (the same
scope as their call records); qa, supervisors and admins see every recording. The audio is
served by Starlette's ``FileResponse``, which answers ``Range`` requests itself (206 with
``Content-Range``, 416 beyond the end, ``multipart/byteranges`` for several ranges); the
route adds the content type of the format, the SHA-256 as ``ETag`` and, for a download, the
file name. An export is the whole search result (at most :data:`EXPORT_MAX_ROWS` rows) as CSV
or as an XLSX workbook, built in a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from crm import Disposition, RecordingData, RecordingState
from recorder.commands import RecorderError
from web.api import (
    ApiError,
    PageNo,
    PerPage,
    Who,
    audit_change,
    jsonable,
    live_call_of,
    page,
    principal_scope,
    utc,
)
from web.auth import Principal
from web.services import Services

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_MAX_ROWS",
    "RecordingFilters",
    "build_recordings_router",
    "recording_item",
    "recording_scope",
]

log = structlog.get_logger("web.recordings")

EXPORT_MAX_ROWS = 100_000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONTENT_TYPES = {"flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg"}

# The columns of an export, in order: (header, RecordingData attribute).
EXPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("recording_id", "recording_id"),
    ("started (UTC)", "started"),
    ("ended (UTC)", "ended"),
    ("duration_seconds", "duration"),
    ("paused_seconds", "paused_seconds"),
    ("state", "state"),
    ("caller", "caller"),
    ("callee", "callee"),
    ("dialled", "dialled"),
    ("direction", "direction"),
    ("extension", "extension"),
    ("agent", "agent"),
    ("queue", "queue"),
    ("customer_id", "customer_id"),
    ("reason", "reason"),
    ("call_id", "call_id"),
    ("linked_id", "linked_id"),
    ("format", "format"),
    ("size_bytes", "size"),
    ("sha256", "sha256"),
    ("error", "error"),
)
# XLSX column widths (characters) by attribute; 14 for the rest.
_WIDTHS = {
    "recording_id": 30,
    "started": 20,
    "ended": 20,
    "caller": 18,
    "callee": 18,
    "dialled": 14,
    "agent": 16,
    "queue": 16,
    "call_id": 30,
    "linked_id": 30,
    "sha256": 66,
    "error": 40,
}


class RecordingActionBody(BaseModel):
    action: Literal["start", "stop", "pause", "resume"]


# What the recording is after each action (the answer's "state").
_STATE_AFTER = {"start": "recording", "resume": "recording", "pause": "paused", "stop": "stopped"}


@dataclass(frozen=True, slots=True)
class RecordingFilters:
    """The search filters of ``GET /api/recordings`` (and its export and the page)."""

    since: datetime | None
    until: datetime | None
    agent: str | None
    extension: str | None
    number: str | None
    queue: str | None
    customer: int | None
    disposition: Disposition | None
    state: RecordingState | None

    def search_args(self) -> dict[str, Any]:
        return {
            "since": utc(self.since),
            "until": utc(self.until),
            "agent": self.agent,
            "extension": self.extension,
            "number": self.number,
            "queue": self.queue,
            "customer_id": self.customer,
            "disposition": self.disposition.value if self.disposition else None,
            "state": self.state,
        }


def _filters(
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    extension: str | None = None,
    number: Annotated[str | None, Query(max_length=64)] = None,
    queue: str | None = None,
    customer: int | None = None,
    disposition: Disposition | None = None,
    state: RecordingState | None = None,
) -> RecordingFilters:
    return RecordingFilters(
        since, until, agent, extension, number, queue, customer, disposition, state
    )


Filters = Annotated[RecordingFilters, Depends(_filters)]


def recording_item(r: RecordingData) -> dict[str, Any]:
    """A recording as the API shows it: ``id`` is the ``recording_id``."""
    out: dict[str, Any] = jsonable(r)
    out["id"] = r.recording_id
    out["paused_seconds"] = r.paused_seconds
    return out


def recording_scope(s: Services, p: Principal) -> dict[str, Any]:
    """The scope arguments of :meth:`crm.Store.search_recordings` for ``p``: none for qa and
    above; an agent's own calls and desk; ApiError 403 for an agent user without an agent."""
    if p.at_least("qa"):
        # TODO: supervisors see every queue's recordings: the API has no
        # supervisor -> queues mapping yet (pass ``queues=`` once it has).
        return {}
    if p.agent is None:
        raise ApiError(403, "needs role qa (you are agent without an agent id)")
    return {"extensions": sorted(principal_scope(s, p)[0]), "own_agent": p.agent}


def build_recordings_router(s: Services) -> APIRouter:
    """The routes of docs/api.md "Recordings"; the app must hold ``s`` as
    ``app.state.services``."""
    router = APIRouter()

    def visible(p: Principal, r: RecordingData) -> bool:
        """The scope of :meth:`crm.Store.search_recordings` for one row."""
        if p.at_least("qa"):
            return True
        if p.agent is None:
            return False
        if r.agent == p.agent:
            return True
        return r.extension in principal_scope(s, p)[0] and r.agent is None

    async def one(p: Principal, recording_id: str) -> RecordingData:
        found = await s.store.get_recording(recording_id)
        if found is None or not visible(p, found):
            raise ApiError(404, f"no recording {recording_id}")
        return found

    @router.get("/api/recordings", tags=["recordings"])
    async def recordings(
        p: Who, filters: Filters, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        rows, total = await s.store.search_recordings(
            **filters.search_args(),
            offset=(page_no - 1) * per_page,
            limit=per_page,
            **recording_scope(s, p),
        )
        return page([recording_item(r) for r in rows], total, page_no, per_page)

    # Before /api/recordings/{recording_id}, which would take "export" for an id.
    @router.get("/api/recordings/export", tags=["recordings"])
    async def export(
        p: Who,
        filters: Filters,
        fmt: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv",
    ) -> Response:
        scope = recording_scope(s, p)
        args = filters.search_args()
        _, total = await s.store.search_recordings(**args, limit=0, **scope)
        if total > EXPORT_MAX_ROWS:
            raise ApiError(
                413, f"{total} recordings match: narrow the search to {EXPORT_MAX_ROWS} at most"
            )
        rows, _ = await s.store.search_recordings(**args, limit=total, **scope)
        if fmt == "csv":
            body = await asyncio.to_thread(export_csv, rows)
            media_type = "text/csv; charset=utf-8"
        else:
            body = await asyncio.to_thread(export_xlsx, rows)
            media_type = XLSX_TYPE
        disposition = f'attachment; filename="recordings.{fmt}"'
        return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})

    @router.get("/api/recordings/{recording_id}", tags=["recordings"])
    async def recording(p: Who, recording_id: str) -> dict[str, Any]:
        return recording_item(await one(p, recording_id))

    @router.get("/api/recordings/{recording_id}/audio", tags=["recordings"])
    async def audio(p: Who, recording_id: str, download: bool = False) -> Response:
        r = await one(p, recording_id)
        if r.state is RecordingState.RECORDING:
            raise ApiError(409, f"recording {recording_id} is still being written")
        if s.recorder is None:
            raise ApiError(503, "recording is not enabled on this server (recording:)")
        found = await asyncio.to_thread(_file_of, s.recorder.folder, r.path)
        if found is None:
            raise ApiError(404, f"the file of recording {recording_id} is gone")
        path, stat = found
        headers = {"Cache-Control": "private, no-cache"}
        if r.sha256:
            headers["ETag"] = f'"{r.sha256}"'
        return FileResponse(
            path,
            headers=headers,
            media_type=CONTENT_TYPES.get(r.format, "application/octet-stream"),
            filename=f"{r.recording_id}.{r.format}" if download else None,
            stat_result=stat,
        )

    @router.post("/api/calls/{call_id}/recording", tags=["calls"])
    async def control(
        p: Who, call_id: str, body: RecordingActionBody, request: Request
    ) -> dict[str, Any]:
        live_call_of(s, p, call_id, read=False)
        if s.recorder is None:
            raise ApiError(503, "recording is not enabled on this server (recording:)")
        recorder = s.recorder
        try:
            if body.action == "start":
                recording_id = await recorder.start(call_id, by=p.name)
            elif body.action == "stop":
                recording_id = await recorder.stop(call_id)
            elif body.action == "pause":
                recording_id = await recorder.pause(call_id)
            else:
                recording_id = await recorder.resume(call_id)
        except RecorderError as exc:
            raise ApiError(exc.status, exc.message) from None
        await audit_change(
            s, request, p, f"recording.{body.action}", call_id, recording_id=recording_id
        )
        return {"recording_id": recording_id, "state": _STATE_AFTER[body.action]}

    return router


def _cell(value: Any) -> Any:
    if isinstance(value, RecordingState):
        return value.value
    return value


_PLAIN_NUMBER = re.compile(r"[+-]?[0-9 ]*")


def _csv_text(value: str) -> str:
    """A text cell a spreadsheet opening the CSV will not run as a formula: caller IDs come
    from outside. Text starting with ``=``, ``@``, a tab or CR, or with ``+``/``-`` but
    not a plain number ("+15551234" stays as it is), gets a leading ``'`` (OWASP's advice
    on CSV injection)."""
    if not value:
        return value
    risky = value[0] in "=@\t\r" or (value[0] in "+-" and not _PLAIN_NUMBER.fullmatch(value))
    return "'" + value if risky else value


def export_csv(rows: Sequence[RecordingData]) -> bytes:
    """The rows as CSV (UTF-8, a header row, times in ISO 8601 UTC)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([header for header, _ in EXPORT_COLUMNS])
    for r in rows:
        line: list[Any] = []
        for _, attr in EXPORT_COLUMNS:
            value = _cell(getattr(r, attr))
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, str):
                value = _csv_text(value)
            line.append(value)
        writer.writerow(line)
    return buffer.getvalue().encode()


def export_xlsx(rows: Sequence[RecordingData]) -> bytes:
    """The rows as one XLSX sheet: a bold header row, set column widths, times as Excel
    dates (UTC), text always as text (never a formula). Written row by row in
    ``constant_memory`` mode: 100,000 rows take tens of MB, not hundreds."""
    import xlsxwriter

    buffer = io.BytesIO()
    options = {"constant_memory": True, "remove_timezone": True, "nan_inf_to_errors": True}
    workbook = xlsxwriter.Workbook(buffer, options)
    sheet = workbook.add_worksheet("recordings")
    bold = workbook.add_format({"bold": True})
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for col, (header, attr) in enumerate(EXPORT_COLUMNS):
        sheet.write_string(0, col, header, bold)
        date = attr in ("started", "ended")
        sheet.set_column(col, col, _WIDTHS.get(attr, 14), when if date else None)
    sheet.freeze_panes(1, 0)
    for row_no, r in enumerate(rows, start=1):
        for col, (_, attr) in enumerate(EXPORT_COLUMNS):
            value = _cell(getattr(r, attr))
            if value is None:
                continue
            if isinstance(value, datetime):
                sheet.write_datetime(row_no, col, value, when)
            elif isinstance(value, (int, float)):
                sheet.write_number(row_no, col, value)
            else:
                sheet.write_string(row_no, col, str(value))
    workbook.close()
    return buffer.getvalue()


def _file_of(folder: Path, relative: str) -> tuple[Path, os.stat_result] | None:
    """The regular file ``folder / relative`` and its stat, or None when it is not there or
    lies outside ``folder`` (a row's path is never trusted to climb out)."""
    base = Path(os.path.realpath(folder))
    path = Path(os.path.realpath(base / relative))
    if not path.is_relative_to(base):
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return (path, stat) if S_ISREG(stat.st_mode) else None

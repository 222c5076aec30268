"""The recordings and reports pages: ``/recordings`` (search, play with seek, download) and
``/reports`` (a report's table and chart, exports).

Theory of operation: both pages are a GET form whose fields are the query parameters of
the JSON API they front (``GET /api/recordings``, ``GET /api/reports/{name}``); the page
reads the store with the very scope functions of that API (:func:`recording_scope`,
:func:`report_query`), so a page never shows what the API would refuse: an agent sees the
recordings of their own calls and runs only their own agent reports. What the browser
fetches by itself goes to the API with the session cookie: the audio (``<audio
preload="none">``; the API answers ``Range``, so seeking works), the downloads, the chart
PNG and the CSV/XLSX exports. Times typed in the forms are wall-clock times in the time
zone reports use (``reports.timezone``), and rows are shown in it.

:func:`build_records_router` is given the page kit of ``web.pages`` (``render`` and
``viewer``) and is included by it with one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm import RecordingData, RecordingState
from crm.reports import PERIODS, REPORTS, Column, Report, run_reports
from web.api import ApiError
from web.api_recordings import RecordingFilters, recording_scope
from web.api_reports import report_names, report_query
from web.auth import Principal
from web.i18n import CATALOGS, LANG_COOKIE, choose_language
from web.panel import format_seconds
from web.services import Services

__all__ = ["REC_PER_PAGE", "build_records_router"]

REC_PER_PAGE = 25  # rows of the recordings table per page
MAX_FIELD = 255  # longest text a filter field takes (the API's limit)
REC_TEXT_FILTERS = ("agent", "extension", "number", "queue")
REPORT_FILTERS = ("queue", "agent", "skill", "trunk")
STATES = tuple(s.value for s in RecordingState)


class Render(Protocol):
    def __call__(
        self,
        request: Request,
        template: str,
        p: Principal | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse: ...


Viewer = Callable[[Request], Awaitable[Principal | None]]


class _Refused(Exception):
    """A form field the page cannot use: ``key`` is the catalog key of the message."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _zone(s: Services) -> tzinfo:
    try:
        return ZoneInfo(s.ops.report_settings().timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_FIELD:
        raise _Refused("rec.too_long")
    return value or None


def _when(params: Mapping[str, str], name: str, zone: tzinfo) -> datetime | None:
    """A ``datetime-local`` (or ISO 8601) field as an aware UTC time; a time without a zone
    is wall-clock time in ``zone``."""
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused("rec.bad_time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _day(params: Mapping[str, str], name: str, zone: tzinfo) -> datetime | None:
    """A ``date`` field as the local midnight that starts it in ``zone``."""
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise _Refused("rep.bad_date") from None
    return datetime.combine(day, time(), zone)


def recording_filters(params: Mapping[str, str], zone: tzinfo) -> RecordingFilters:
    """The API's filters from the page's form (empty fields: no filter)."""
    customer_text = _text(params, "customer")
    try:
        customer = int(customer_text) if customer_text is not None else None
    except ValueError:
        raise _Refused("rec.bad_customer") from None
    if customer is not None and not 0 <= customer < 2**63:
        raise _Refused("rec.bad_customer")
    state_text = _text(params, "state")
    if state_text is not None and state_text not in STATES:
        raise _Refused("rec.bad_state")
    return RecordingFilters(
        since=_when(params, "since", zone),
        until=_when(params, "until", zone),
        agent=_text(params, "agent"),
        extension=_text(params, "extension"),
        number=_text(params, "number"),
        queue=_text(params, "queue"),
        customer=customer,
        disposition=None,
        state=RecordingState(state_text) if state_text is not None else None,
    )


def _api_query(values: Mapping[str, Any]) -> str:
    """A query string of the non-empty ``values`` (times as ISO 8601)."""
    pairs = []
    for key, value in values.items():
        if value is None or value == "":
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        pairs.append((key, str(value)))
    return urlencode(pairs)


def _page_no(params: Mapping[str, str]) -> int:
    try:
        return max(1, min(int(params.get("page", "1")), 1_000_000))
    except ValueError:
        return 1


def _cell(value: Any, unit: str, zone: tzinfo) -> str:
    """A report cell for the table: seconds as h:mm:ss, ratios as percent."""
    if value is None or value == "":
        return ""
    if unit == "seconds" and isinstance(value, (int, float)):
        return format_seconds(float(value))
    if unit == "ratio" and isinstance(value, (int, float)):
        return f"{value * 100:.1f} %"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def column_label(lang: str, column: Column) -> str:
    """A report column's heading: the report's own English label, or the catalog's word."""
    if lang == "en":
        return column.label
    return CATALOGS.get(lang, {}).get(f"rcol.{column.key}") or column.label


def report_title(lang: str, name: str) -> str:
    if lang == "en":
        return REPORTS[name].title
    return CATALOGS.get(lang, {}).get(f"rname.{name}") or REPORTS[name].title


def build_records_router(s: Services, render: Render, viewer: Viewer) -> APIRouter:
    """``GET /recordings`` and ``GET /reports`` (pages: not in the OpenAPI document)."""
    router = APIRouter(include_in_schema=False)

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    # -- recordings -------------------------------------------------------------------------

    def row(r: RecordingData, zone: tzinfo) -> dict[str, Any]:
        return {
            "id": r.recording_id,
            "started": r.started.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "duration": format_seconds(r.duration),
            "caller": r.caller,
            "callee": r.callee,
            "agent": r.agent or "",
            "queue": r.queue or "",
            "extension": r.extension or "",
            "customer": r.customer_id,
            "state": r.state.value,
            "format": r.format,
            "playable": r.state is not RecordingState.RECORDING and s.recorder is not None,
            "audio": f"/api/recordings/{r.recording_id}/audio",
            # For qa and up (web/pages_kbqa.py): a new evaluation of this call.
            "score": "/qa/new?"
            + urlencode(
                {"recording_id": r.recording_id, "call_id": r.call_id, "agent": r.agent or ""}
            ),
        }

    @router.get("/recordings")
    async def recordings_page(request: Request) -> Response:
        p = await viewer(request)
        if p is None:
            return to_login()
        params = request.query_params
        form = {k: params.get(k, "") for k in ("since", "until", "customer", "state")}
        form.update({k: params.get(k, "") for k in REC_TEXT_FILTERS})
        zone = _zone(s)
        common: dict[str, Any] = {
            "form": form,
            "states": STATES,
            "own_only": not p.at_least("qa"),
            "zone": str(zone),
            "recording_enabled": s.recorder is not None,
        }
        try:
            scope = recording_scope(s, p)
        except ApiError:
            return render(request, "message.html", p, 403, message="error.forbidden")
        try:
            filters = recording_filters(params, zone)
        except _Refused as refused:
            return render(
                request, "rec_recordings.html", p, 400, error=refused.key, rows=[], **common
            )
        page_no = _page_no(params)
        rows, total = await s.store.search_recordings(
            **filters.search_args(),
            offset=(page_no - 1) * REC_PER_PAGE,
            limit=REC_PER_PAGE,
            **scope,
        )
        api_args = filters.search_args()
        api_filters = {
            "since": api_args["since"],
            "until": api_args["until"],
            "agent": filters.agent,
            "extension": filters.extension,
            "number": filters.number,
            "queue": filters.queue,
            "customer": filters.customer,
            "state": filters.state.value if filters.state else None,
        }
        form_query = {k: v for k, v in form.items() if v}
        pages = max(1, -(-total // REC_PER_PAGE))
        return render(
            request,
            "rec_recordings.html",
            p,
            error=None,
            rows=[row(r, zone) for r in rows],
            total=total,
            page_no=page_no,
            pages=pages,
            prev_link=("?" + _api_query({**form_query, "page": page_no - 1}))
            if page_no > 1
            else None,
            next_link=("?" + _api_query({**form_query, "page": page_no + 1}))
            if page_no < pages
            else None,
            export_csv="/api/recordings/export?" + _api_query({**api_filters, "format": "csv"}),
            export_xlsx="/api/recordings/export?" + _api_query({**api_filters, "format": "xlsx"}),
            **common,
        )

    # -- reports ----------------------------------------------------------------------------

    def table(report: Report, lang: str, zone: tzinfo) -> dict[str, Any]:
        columns = report.columns
        return {
            "headings": [column_label(lang, c) for c in columns],
            "units": [c.unit for c in columns],
            "rows": [[_cell(r.get(c.key), c.unit, zone) for c in columns] for r in report.rows],
            "totals": (
                [_cell(report.totals.get(c.key), c.unit, zone) for c in columns]
                if report.totals is not None
                else None
            ),
            "notes": list(report.notes),
            "chart": report.chart is not None and bool(report.rows),
        }

    @router.get("/reports")
    async def reports_page(request: Request) -> Response:
        p = await viewer(request)
        if p is None:
            return to_login()
        names = report_names(p)
        if not names:
            return render(request, "message.html", p, 403, message="error.forbidden")
        params = request.query_params
        zone = _zone(s)
        chosen = params.get("report", "") or names[0]
        period = params.get("period", "") or "total"
        form = {
            "report": chosen,
            "period": period,
            "since": params.get("since", ""),
            "until": params.get("until", ""),
        }
        form.update({k: params.get(k, "") for k in REPORT_FILTERS})
        lang = choose_language(
            params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )
        common: dict[str, Any] = {
            "form": form,
            "reports": [(n, report_title(lang, n)) for n in names],
            "periods": PERIODS,
            "own_only": not p.at_least("qa"),
            "zone": str(zone),
            "result": None,
        }
        if chosen not in names:
            return render(request, "rec_reports.html", p, 400, error="rep.unknown", **common)
        try:
            since = _day(params, "since", zone)
            until_day = _day(params, "until", zone)
            until = until_day + timedelta(days=1) if until_day is not None else None
            if since is not None and until is None:
                until = since + timedelta(days=1)
            filters = {k: _text(params, k) for k in REPORT_FILTERS}
            q = report_query(
                s,
                p,
                [chosen],
                since,
                until,
                period if period in PERIODS else "",
                **filters,
            )
        except _Refused as refused:
            return render(request, "rec_reports.html", p, 400, error=refused.key, **common)
        except ApiError as exc:
            return render(
                request, "rec_reports.html", p, exc.status, error="rep.refused", detail=exc.message,
                **common,
            )  # fmt: skip
        (report,) = await run_reports(s.store, [chosen], q)
        api_args = {
            "since": q.since,
            "until": q.until,
            "period": q.period,
            "queue": q.queue,
            "agent": q.agent,
            "skill": q.skill,
            "trunk": q.trunk,
        }
        base = f"/api/reports/{chosen}?"
        common["result"] = {
            "title": report_title(lang, chosen),
            "since": q.since.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "until": q.until.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "chart_src": base + _api_query({**api_args, "format": "png"}),
            "csv": base + _api_query({**api_args, "format": "csv"}),
            "xlsx": base + _api_query({**api_args, "format": "xlsx"}),
            **table(report, lang, zone),
        }
        return render(request, "rec_reports.html", p, error=None, **common)

    return router

"""The ``/api/reports`` routes (docs/api.md, docs/reports.md): which reports exist, and one
report over a range as JSON, CSV, XLSX or a PNG chart.

Who may run them: qa and above, every report. An agent user only the agent-scoped reports
(agent summary, workload, work log), always about themself: the ``agent`` filter is forced
to their own agent id (whatever they asked for), and a user without an agent id gets 403.

The store is read on the loop; the figures and the files are computed in worker threads
(``crm.reports.run_report``, ``crm.report_formats.render_async``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from crm.report_formats import MEDIA_TYPES, render_async, to_xlsx
from crm.reports import PERIODS, REPORTS, ReportQuery, intervals, run_reports, today
from web.api import ApiError, PageNo, PerPage, Who, page_list, utc
from web.auth import Principal
from web.services import Services

__all__ = ["build_reports_router", "report_names", "report_query"]

# GET /api/reports/all?format=xlsx: every report the caller may run, a sheet each.
ALL = "all"
# The longest range one report may cover: the store is read on the event loop (the media
# clock's loop), so a request must not ask for years of rows.
MAX_RANGE_DAYS = 400
MAX_AGENT_RANGE_DAYS = 93

Filter = Annotated[str | None, Query(min_length=1, max_length=255)]


def _may_run(p: Principal, name: str) -> str | None:
    """The agent id the report is forced to for ``p`` (None: any); ApiError when ``p`` may
    not run report ``name``."""
    if p.at_least("qa"):
        return None
    if not REPORTS[name].agent_scoped:
        raise ApiError(403, f"needs role qa (an agent may run only their own {_own()} reports)")
    if p.agent is None:
        raise ApiError(403, "needs role qa (you are agent without an agent id)")
    return p.agent


def _own() -> str:
    return ", ".join(n for n, spec in REPORTS.items() if spec.agent_scoped)


def report_names(p: Principal) -> list[str]:
    """The reports ``p`` may run, in the catalogue's order."""
    return [
        n
        for n, spec in REPORTS.items()
        if p.at_least("qa") or (spec.agent_scoped and p.agent is not None)
    ]


def report_query(
    s: Services,
    p: Principal,
    names: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    period: str,
    *,
    queue: str | None = None,
    agent: str | None = None,
    skill: str | None = None,
    trunk: str | None = None,
) -> ReportQuery:
    """The query of reports ``names`` for ``p`` (the API's and the page's): an agent's
    ``agent`` filter forced to themself, the range defaulting to today, its length capped.
    ApiError (403 may not run, 400 bad range or period) when refused."""
    for n in names:
        forced = _may_run(p, n)
        if forced is not None:
            agent = forced
    settings = s.ops.report_settings()
    now = datetime.now(UTC)
    day_start, day_end = today(settings.timezone, now)
    start = utc(since) or day_start
    end = utc(until) or (day_end if since is None else now)
    try:
        q = ReportQuery.from_settings(
            settings,
            start,
            end,
            period,
            queue=queue,
            agent=agent,
            skill=skill,
            trunk=trunk,
            now=now,
        )
        intervals(q)  # refuses too many before anything is read
        longest = MAX_RANGE_DAYS if p.at_least("qa") else MAX_AGENT_RANGE_DAYS
        if q.until - q.since > timedelta(days=longest):
            raise ValueError(
                f"a report covers at most {longest} days"
                + ("" if p.at_least("qa") else " for an agent")
                + ": narrow since/until"
            )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return q


def build_reports_router(s: Services) -> APIRouter:
    """The report routes; the app must hold ``s`` as ``app.state.services``."""
    router = APIRouter()

    @router.get("/api/reports", tags=["reports"])
    async def list_reports(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        items = [
            {"name": n, "title": REPORTS[n].title, "agent_scoped": REPORTS[n].agent_scoped}
            for n in report_names(p)
        ]
        return page_list(items, page_no, per_page)

    @router.get("/api/reports/{name}", tags=["reports"])
    async def get_report(
        p: Who,
        name: str,
        since: datetime | None = None,
        until: datetime | None = None,
        period: Annotated[str, Query(pattern="^(" + "|".join(PERIODS) + ")$")] = "total",
        queue: Filter = None,
        agent: Filter = None,
        skill: Filter = None,
        trunk: Filter = None,
        format: Literal["json", "csv", "xlsx", "png"] = "json",
    ) -> Response:
        if name == ALL:
            if format != "xlsx":
                raise ApiError(400, "all reports at once only as format=xlsx (a sheet each)")
            names = [n for n in REPORTS if p.at_least("qa") or REPORTS[n].agent_scoped]
        elif name in REPORTS:
            names = [name]
        else:
            raise ApiError(404, f"no report {name!r} (GET /api/reports lists them)")
        q = report_query(
            s, p, names, since, until, period, queue=queue, agent=agent, skill=skill, trunk=trunk
        )
        reports = await run_reports(s.store, names, q)
        filename = f"{name}-{q.since.astimezone(q.zone):%Y%m%d}.{format}"
        if name == ALL:
            content = await asyncio.to_thread(to_xlsx, reports)
            return _attachment(content, format, filename)
        report = reports[0]
        if format == "json":
            body = report.as_json()
            body["query"] = {
                "since": q.since.isoformat(),
                "until": q.until.isoformat(),
                "period": q.period,
                "timezone": q.timezone,
                "queue": q.queue,
                "agent": q.agent,
                "skill": q.skill,
                "trunk": q.trunk,
                "short_abandon_seconds": q.short_abandon_seconds,
                "first_contact_hours": q.first_contact_hours,
            }
            return JSONResponse(body)
        return _attachment(await render_async(report, format), format, filename)

    return router


def _attachment(content: bytes, fmt: str, filename: str) -> Response:
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

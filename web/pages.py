"""The web panel's HTML pages: login, the agent panel and the supervisor wallboard.

Theory of operation: the pages are rendered on the server (Jinja2, autoescaped) and kept
live in the browser by ``static/panel.js``, which listens on the event stream
(``/api/events/ws``) and either patches the page from the event or has htmx fetch the
affected fragment again (a wallboard tile or agent row, the agent's figures of today).
Every change goes through the JSON API (``/api/...``) with the session's CSRF header; the
pages only read. A page needs a session (else it redirects to ``/login``) and a fitting
role: agents get ``/agent``; qa, supervisors and admins the wallboard. Nothing here logs an
agent out: closing the tab ends the event stream and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from acd import AgentSnapshot, QueueSnapshot
from crm import AgentStateData, CallRecordData
from web.auth import COOKIE, AuthError, Principal
from web.i18n import (
    CATALOGS,
    LANG_COOKIE,
    LANGUAGES,
    choose_language,
    reason_translator,
    translator,
)
from web.pages_crm import build_crm_pages_router
from web.pages_records import build_records_router
from web.panel import format_seconds, service_level_class, today_figures
from web.services import Services

__all__ = ["build_pages_router", "install_pages"]

HERE = Path(__file__).resolve().parent
PAGE_ROWS = 500  # rows per store page when a day's states or records are read
MAX_PAGES = 20  # at most this many pages of them (10,000 rows) for today's figures
LANG_MAX_AGE = 365 * 24 * 3600
COMMIT_WAIT = 1.0  # seconds a figure waits for the ACD's logs to be committed before reading
# What a page may load: only our own files; the WebSocket is same-origin ('self').
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def install_pages(app: FastAPI, services: Services) -> None:
    """Serve ``/static`` and the pages on ``app`` (the one line ``web.app`` calls)."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(build_pages_router(services))
    app.include_router(build_crm_pages_router(services))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_seconds
    env.filters["sl_class"] = service_level_class
    return env


def _midnight() -> datetime:
    """The start of today in the server's time zone (as ``/api/queues/{name}`` counts)."""
    return datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)


def build_pages_router(s: Services) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = _environment()

    async def viewer(request: Request) -> Principal | None:
        try:
            return await s.auth.principal(
                authorization=request.headers.get("authorization"),
                cookie=request.cookies.get(COOKIE),
                method="GET",
                csrf=None,
            )
        except AuthError:
            return None

    def language(request: Request) -> str:
        return choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )

    def render(
        request: Request,
        template: str,
        p: Principal | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        lang = language(request)
        t = translator(lang)
        body = env.get_template(template).render(
            t=t,
            reason=reason_translator(lang),
            lang=lang,
            other_lang=next(x for x in LANGUAGES if x != lang),
            catalog=CATALOGS[lang],
            user=p,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, lang, max_age=LANG_MAX_AGE, samesite="lax", path="/", httponly=True
            )
        return response

    async def committed() -> None:
        """Events reach the page before the ACD's writer commits them: a figure read from
        the store waits (briefly) for what is logged so far."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(s.acd.durable()), COMMIT_WAIT)

    def home_of(p: Principal) -> str:
        return "/agent" if p.agent is not None and not p.at_least("qa") else "/wallboard"

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    def agent_snapshot(agent_id: str) -> AgentSnapshot | None:
        return next((a for a in s.acd.agent_snapshots() if a.id == agent_id), None)

    # -- login and out ----------------------------------------------------------------------

    @router.get("/")
    async def home(request: Request) -> Response:
        p = await viewer(request)
        return to_login() if p is None else RedirectResponse(home_of(p), status_code=303)

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        p = await viewer(request)
        if p is not None:
            return RedirectResponse(home_of(p), status_code=303)
        return render(request, "login.html", None)

    @router.get("/logout")
    async def logout_page(request: Request) -> Response:
        # The page posts /api/logout with the CSRF header (a GET changes nothing).
        p = await viewer(request)
        if p is None:
            return to_login()
        return render(request, "logout.html", p)

    # -- agent panel ------------------------------------------------------------------------

    async def today(agent: AgentSnapshot) -> dict[str, Any]:
        await committed()
        since = _midnight()
        states: list[AgentStateData] = []
        records: list[CallRecordData] = []
        for page_no in range(MAX_PAGES):
            rows, total = await s.store.agent_state_history(
                agent.id, since=since, offset=page_no * PAGE_ROWS, limit=PAGE_ROWS
            )
            states.extend(rows)
            if len(states) >= total or not rows:
                break
        for page_no in range(MAX_PAGES):
            recs, total = await s.store.search_call_records(
                since=since, agent=agent.id, offset=page_no * PAGE_ROWS, limit=PAGE_ROWS
            )
            records.extend(recs)
            if len(records) >= total or not recs:
                break
        figures = today_figures(agent.id, states, records, since, datetime.now(UTC), agent.state)
        return {"figures": figures}

    @router.get("/agent")
    async def agent_page(request: Request) -> Response:
        p = await viewer(request)
        if p is None:
            return to_login()
        if p.agent is None:
            if p.at_least("qa"):
                return RedirectResponse("/wallboard", status_code=303)
            return render(request, "message.html", p, 403, message="agent.none")
        agent = agent_snapshot(p.agent)
        if agent is None:
            return render(request, "message.html", p, 404, message="agent.none")
        reasons = sorted(set(s.acd.pause_reasons.values()) | {"busy"})
        return render(
            request,
            "agent.html",
            p,
            agent=agent,
            reasons=reasons,
            recording=s.recorder is not None,
            phone=s.phones is not None and s.http.browser_phone.enabled,
            **(await today(agent)),
        )

    @router.get("/agent/today")
    async def agent_today(request: Request) -> Response:
        p = await viewer(request)
        if p is None or p.agent is None:
            return Response(status_code=401)
        agent = agent_snapshot(p.agent)
        if agent is None:
            return Response(status_code=404)
        return render(request, "_today.html", p, **(await today(agent)))

    # -- wallboard --------------------------------------------------------------------------

    async def queue_tiles(queues: Sequence[QueueSnapshot]) -> list[dict[str, Any]]:
        thresholds = s.ops.service_level_thresholds()
        await committed()
        day = await s.store.queue_day_stats(_midnight(), thresholds) if queues else {}
        tiles = []
        now_ms = time.time() * 1000
        for q in queues:
            stats = day.get(q.name)
            tiles.append(
                {
                    "name": q.name,
                    "waiting": q.waiting,
                    "longest": q.longest_wait_seconds,
                    "longest_since_ms": int(now_ms - q.longest_wait_seconds * 1000),
                    "agents": dict(q.agents),
                    "answered": stats.answered if stats else 0,
                    "abandoned": stats.abandoned if stats else 0,
                    "service_level": stats.service_level if stats else None,
                    "asa": stats.asa_seconds if stats else None,
                    "aht": stats.aht_seconds if stats else None,
                }
            )
        return tiles

    def agent_row(a: AgentSnapshot) -> dict[str, Any]:
        call = s.control.info(a.current_call) if a.current_call else None
        return {
            "id": a.id,
            "name": a.name,
            "state": a.state,
            "reason": a.reason,
            "since_ms": int(a.since * 1000) if a.since else 0,
            "queues": list(a.queues),
            "extensions": list(a.extensions),
            "call": call if call is not None and not call.ended else None,
        }

    def wallboard_viewer(p: Principal | None) -> Response | None:
        if p is None:
            return to_login()
        if not p.at_least("qa"):
            return RedirectResponse(home_of(p), status_code=303)
        return None

    @router.get("/wallboard")
    async def wallboard(request: Request) -> Response:
        p = await viewer(request)
        refused = wallboard_viewer(p)
        if refused is not None:
            return refused
        tiles = await queue_tiles(s.acd.queue_snapshots())
        rows = [agent_row(a) for a in s.acd.agent_snapshots()]
        return render(request, "wallboard.html", p, tiles=tiles, rows=rows)

    def fragment_guard(p: Principal | None) -> Response | None:
        if p is None:
            return Response(status_code=401)
        if not p.at_least("qa"):
            return Response(status_code=403)
        return None

    @router.get("/wallboard/queues/{name}")
    async def wallboard_queue(request: Request, name: str) -> Response:
        p = await viewer(request)
        refused = fragment_guard(p)
        if refused is not None:
            return refused
        found = next((q for q in s.acd.queue_snapshots() if q.name == name), None)
        if found is None:
            return Response(status_code=404)
        (tile,) = await queue_tiles([found])
        return render(request, "_queue_tile.html", p, q=tile)

    @router.get("/wallboard/agents/{agent_id}")
    async def wallboard_agent(request: Request, agent_id: str) -> Response:
        p = await viewer(request)
        refused = fragment_guard(p)
        if refused is not None:
            return refused
        found = agent_snapshot(agent_id)
        if found is None:
            return Response(status_code=404)
        return render(request, "_agent_row.html", p, a=agent_row(found))

    router.include_router(build_records_router(s, render, viewer))  # /recordings, /reports
    return router

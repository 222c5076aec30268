"""The CRM pages of the web panel: customers, tickets, the knowledge base and quality
assessment (docs/crm.md "Pages").

Theory of operation: as the other pages (web/pages.py), these are rendered on the server
(Jinja2, autoescaped) and only read. Every change — create a customer, add a follow-up,
claim one from the pool, move a ticket, mark a favourite — is a form that
``static/crm.js`` posts to the JSON API with the session's CSRF header, so a page can
never do what the API would refuse. What a page shows comes from the same services the API
calls (:class:`crm.CustomerService`, :class:`crm.tickets.TicketService`,
:class:`crm.kb.KnowledgeBase`, :class:`crm.qa.QualityService`) with the same
:class:`crm.Actor`: a record the user may not see is the same 404 page whether it exists
or not. Article bodies are markdown rendered with raw HTML switched off (it is shown as
text) and unsafe link schemes refused (markdown-it's ``validateLink``). The editors of
articles, categories and evaluations are web/pages_kbqa.py, included here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from crm import CrmError, CustomerQuery, CustomerService
from crm.customers import can_edit
from crm.kb import KnowledgeBase
from crm.numbers import raw_digits
from crm.qa import QualityService, card_to_json
from crm.ticket_store import TicketData, TicketQuery
from crm.tickets import PRIORITIES, TRANSITIONS, Operation, TicketService, TicketState
from web.api import principal_scope
from web.api_crm import SCREENPOP_CALLS, actor_of
from web.api_kb import qa_actor
from web.auth import COOKIE, AuthError, Principal
from web.i18n import CATALOGS, LANG_COOKIE, LANGUAGES, choose_language, translator
from web.pages_kbqa import build_kbqa_pages_router, id_number
from web.services import Services

__all__ = ["build_crm_pages_router", "render_markdown", "ticket_operations"]

HERE = Path(__file__).resolve().parent
PAGE_ROWS = 50
MIN_CALL_DIGITS = 4  # a customer's number shorter than this lists no calls
LANG_MAX_AGE = 365 * 24 * 3600
# As web/pages.py: only our own files; the WebSocket is same-origin ('self').
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# What a move asks for besides a note (the body of POST /api/tickets/{ref}/{action}).
OPERATION_FIELDS: dict[Operation, tuple[str, ...]] = {
    Operation.ASSIGN: ("user", "department"),
    Operation.TRANSFER: ("user", "department"),
    Operation.REVISIT: ("outcome",),
    Operation.CC: ("add",),
}
# Anyone who sees an open ticket may do these; the rest needs a handler.
_ANYONE = (Operation.URGE, Operation.COMMENT)

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str) -> Markup:
    """An article's markdown as HTML: raw HTML in it is escaped (shown as text), and links
    to ``javascript:``/``vbscript:``/``file:``/non-image ``data:`` are not made links."""
    return Markup(_MARKDOWN.render(text))  # html=False: markdown-it escapes raw HTML


def ticket_operations(state: str, may_handle: bool) -> list[Operation]:
    """The operations the ticket's state allows (the transition table) that the user may
    do: a handler all of them, others only urge and comment."""
    here = TicketState(state)
    return [op for op in Operation if (here, op) in TRANSITIONS and (may_handle or op in _ANYONE)]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["markdown"] = render_markdown
    env.filters["when"] = _when
    return env


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except CrmError as exc:
        raise _Refused(exc.status) from None


def build_crm_pages_router(s: Services) -> APIRouter:
    """The pages of docs/api.md "Web panel" under /customers, /tickets, /kb and /qa;
    the app holds ``s`` as ``app.state.services``."""
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

    def render(
        request: Request, template: str, p: Principal, status: int = 200, **context: Any
    ) -> HTMLResponse:
        lang = choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )
        body = env.get_template(template).render(
            t=translator(lang),
            lang=lang,
            other_lang=next(x for x in LANGUAGES if x != lang),
            catalog=CATALOGS[lang],
            user=p,
            path=request.url.path,
            request_query=lambda n: urlencode({**request.query_params, "page": n}),
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

    def refused(request: Request, p: Principal, status: int) -> HTMLResponse:
        message = {403: "error.forbidden", 404: "crm.not_found"}.get(status, "crm.failed")
        return render(request, "message.html", p, status, message=message)

    def customers() -> CustomerService:
        return CustomerService(s.store, s.ops.crm_settings())

    def tickets() -> TicketService:
        return TicketService(s.store, s.ops.ticket_settings())

    async def page(request: Request, build: Any) -> Response:
        """Run ``build(p)`` for a signed-in user; a refusal becomes its page."""
        p = await viewer(request)
        if p is None:
            return RedirectResponse("/login", status_code=303)
        try:
            out: Response = await build(p)
        except _Refused as exc:
            return refused(request, p, exc.status)
        except CrmError as exc:  # the KB and QA editors' pages (web/pages_kbqa.py)
            return refused(request, p, exc.status)
        return out

    # /kb/new, /kb/categories, /kb/{id}/edit, /qa/new: before /kb/{id} and /qa/{id}.
    router.include_router(build_kbqa_pages_router(s, render, page))

    # -- customers ---------------------------------------------------------------------------

    @router.get("/customers")
    async def customer_list(request: Request) -> Response:
        qp = request.query_params

        async def build(p: Principal) -> Response:
            pool = {"1": True, "0": False}.get(qp.get("pool", ""))
            grade = qp.get("grade") or None
            query = CustomerQuery(
                text=(qp.get("q") or None),
                number=(qp.get("number") or None),
                grade=grade if grade in ("A", "B", "C", "D", "E") else None,
                tag=(qp.get("tag") or None),
                owner=(qp.get("owner") or None),
                source=(qp.get("source") or None),
                pool=pool,
            )
            fields = list(s.ops.crm_settings().custom_fields)
            custom = {f: qp[f"field.{f}"][:255] for f in fields if qp.get(f"field.{f}")}
            query = dataclasses.replace(query, custom=custom)
            page_no = id_number(qp.get("page")) or 1
            with _refusals():
                rows, total = await customers().search(
                    actor_of(p), query, offset=(page_no - 1) * PAGE_ROWS, limit=PAGE_ROWS
                )
            return render(
                request,
                "crm_customers.html",
                p,
                rows=rows,
                total=total,
                page_no=page_no,
                pages=max(1, -(-total // PAGE_ROWS)),
                fields=fields,
                custom=custom,
                filters={
                    k: qp.get(k, "")
                    for k in ("q", "number", "grade", "tag", "owner", "source", "pool")
                },
            )

        return await page(request, build)

    @router.get("/customers/new")
    async def customer_new(request: Request) -> Response:
        async def build(p: Principal) -> Response:
            return render(
                request,
                "crm_customer.html",
                p,
                c=None,
                editable=True,
                fields=list(s.ops.crm_settings().custom_fields.values()),
                prefill=request.query_params.get("number", "")[:64],
                followups=[],
                appointments=[],
                open_tickets=[],
                calls=[],
            )

        return await page(request, build)

    async def customer_calls(p: Principal, digits: str) -> list[Any]:
        """The customer's last calls: records whose number holds the stored number's last
        nine digits (however it was typed: national or international); never for a number
        too short to tell customers apart, and for an agent only calls of theirs, as in
        ``GET /api/cdrs``."""
        if len(digits) < MIN_CALL_DIGITS:
            return []
        own: dict[str, Any] = {}
        if not p.at_least("qa"):
            if p.agent is None:
                return []
            own = {"extensions": sorted(principal_scope(s, p)[0]), "own_agent": p.agent}
        calls, _ = await s.store.search_call_records(
            number=digits[-9:], limit=SCREENPOP_CALLS, **own
        )
        return calls

    @router.get("/customers/{customer_id}")
    async def customer_card(request: Request, customer_id: str) -> Response:
        async def build(p: Principal) -> Response:
            cid = id_number(customer_id)
            if cid is None:
                raise _Refused(404)
            svc, who = customers(), actor_of(p)
            with _refusals():
                c = await svc.get(who, cid)
                followups = await svc.followups(who, cid)
                appointments = await svc.appointments(who, cid)
                open_tickets, _ = await tickets().search(
                    who, TicketQuery(customer_id=cid, open=True), limit=PAGE_ROWS
                )
            calls = await customer_calls(p, raw_digits(c.phone))
            return render(
                request,
                "crm_customer.html",
                p,
                c=c,
                editable=can_edit(who, c),
                fields=list(svc.settings.custom_fields.values()),
                prefill="",
                followups=followups,
                appointments=appointments,
                open_tickets=open_tickets,
                calls=calls,
            )

        return await page(request, build)

    # -- tickets -------------------------------------------------------------------------------

    @router.get("/tickets")
    async def ticket_list(request: Request) -> Response:
        qp = request.query_params

        async def build(p: Principal) -> Response:
            view = qp.get("view", "mine")
            state = qp.get("state") or None
            if state is not None and state not in {x.value for x in TicketState}:
                state = None
            if view == "mine":
                query = TicketQuery(assignee=p.name, open=True)
            else:
                view = "queue"
                query = TicketQuery(state=state, open=None if state else True)
            page_no = id_number(qp.get("page")) or 1
            svc = tickets()
            rows, total = await svc.search(
                actor_of(p), query, offset=(page_no - 1) * PAGE_ROWS, limit=PAGE_ROWS
            )
            counts = {}
            for st in TicketState:
                _, counts[st.value] = await svc.search(actor_of(p), TicketQuery(state=st), limit=0)
            return render(
                request,
                "crm_tickets.html",
                p,
                rows=rows,
                total=total,
                view=view,
                state=state or "",
                counts=counts,
                states=[x.value for x in TicketState],
                page_no=page_no,
                pages=max(1, -(-total // PAGE_ROWS)),
            )

        return await page(request, build)

    @router.get("/tickets/new")
    async def ticket_new(request: Request) -> Response:
        qp = request.query_params

        async def build(p: Principal) -> Response:
            svc = tickets()
            customer = None
            cid = id_number(qp.get("customer_id"))
            if cid is not None:
                with _refusals():
                    customer = await customers().get(actor_of(p), cid)
            record_id = (qp.get("call_id") or "")[:64] or None
            # The call's record is written when it ends: linked only once it exists.
            linked = record_id is not None and await svc.tickets.call_links(record_id) is not None
            return render(
                request,
                "crm_ticket_new.html",
                p,
                customer=customer,
                record_id=record_id if linked else None,
                call_id=record_id,
                types=dict(svc.settings.types),
                categories=dict(svc.settings.categories),
                priorities=PRIORITIES,
                departments=sorted(svc.settings.departments),
            )

        return await page(request, build)

    @router.get("/tickets/{ref}")
    async def ticket_view(request: Request, ref: str) -> Response:
        async def build(p: Principal) -> Response:
            svc, who = tickets(), actor_of(p)
            with _refusals():
                t: TicketData = await svc.resolve(who, ref[:32])
                assert t.id is not None
                events = await svc.history(who, t.id)
            customer = None
            if t.customer_id is not None:
                with contextlib.suppress(CrmError):
                    customer = await customers().get(who, t.customer_id)
            return render(
                request,
                "crm_ticket.html",
                p,
                tk=t,
                events=events,
                customer=customer,
                operations=[op.value for op in ticket_operations(t.state, svc.can_handle(who, t))],
                fields={op.value: f for op, f in OPERATION_FIELDS.items()},
                departments=sorted(svc.settings.departments),
            )

        return await page(request, build)

    # -- knowledge base ------------------------------------------------------------------------

    @router.get("/kb")
    async def kb_home(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()[:255]

        async def build(p: Principal) -> Response:
            kb, who = KnowledgeBase(s.store), actor_of(p)
            with _refusals():
                found = await kb.search(who, q, limit=50) if q else []
                hot = await kb.hot(who, now=datetime.now(UTC), days=7, limit=10)
                favourites = await kb.favourites(who)
                writes = bool(await kb.editable_categories(who))
            return render(
                request,
                "crm_kb.html",
                p,
                q=q,
                found=found,
                hot=hot,
                favourites=favourites,
                writes=writes,
                manages=kb.manages_categories(who),
            )

        return await page(request, build)

    @router.get("/kb/{article_id}")
    async def kb_article(request: Request, article_id: str) -> Response:
        async def build(p: Principal) -> Response:
            aid = id_number(article_id)
            if aid is None:
                raise _Refused(404)
            kb, who = KnowledgeBase(s.store), actor_of(p)
            with _refusals():
                article = await kb.read(who, aid, now=datetime.now(UTC))
                favourite = any(a.id == aid for a in await kb.favourites(who))
                editable = await kb.may_edit(who, article.category_id)
                history = await kb.history(who, aid, bodies=False)
            return render(
                request,
                "crm_article.html",
                p,
                a=article,
                favourite=favourite,
                editable=editable,
                history=history,
            )

        return await page(request, build)

    # -- quality assessment --------------------------------------------------------------------

    @router.get("/qa")
    async def qa_list(request: Request) -> Response:
        async def build(p: Principal) -> Response:
            qa, who = QualityService(s.store), qa_actor(p)
            with _refusals():
                found = await qa.evaluations(who, limit=200)
                evaluates = qa.may_evaluate(who)
                tasks = await qa.tasks(who) if evaluates else []
                cards = {c.id: c.name for c in await qa.scorecards(who)} if evaluates else {}
            return render(
                request, "crm_qa.html", p, rows=found, evaluates=evaluates, tasks=tasks, cards=cards
            )

        return await page(request, build)

    @router.get("/qa/{evaluation_id}")
    async def qa_view(request: Request, evaluation_id: str) -> Response:
        async def build(p: Principal) -> Response:
            eid = id_number(evaluation_id)
            if eid is None:
                raise _Refused(404)
            qa, who = QualityService(s.store), qa_actor(p)
            with _refusals():
                ev = await qa.evaluation(who, eid)
                card = await qa.scorecard(who, ev.scorecard_id)
            return render(
                request,
                "crm_evaluation.html",
                p,
                ev=ev,
                card=card,
                sections=card_to_json(card),
                editable=not ev.published and qa.may_change(who, ev),
            )

        return await page(request, build)

    return router

"""The editing half of the knowledge-base and quality-assessment pages: write and change
articles, manage categories, start an evaluation (docs/crm.md "Pages").

Theory of operation: as every CRM page (web/pages_crm.py), these only read and render;
what the forms change goes to the JSON API from ``static/kbqa.js`` with the session's CSRF
header (``POST``/``PATCH /api/kb/articles``, ``POST /api/kb/articles/{id}/images``,
``/api/kb/categories``, ``POST /api/qa/evaluations``). Whether a form is shown is asked of
the services the API calls (:meth:`crm.kb.KnowledgeBase.editable_categories`,
:meth:`~crm.kb.KnowledgeBase.may_edit`, :meth:`~crm.kb.KnowledgeBase.manages_categories`,
:meth:`crm.qa.QualityService.tasks`), never decided here; a refusal
(:class:`crm.CrmError`) becomes the same 403/404 page as elsewhere (the ``page`` wrapper of
web/pages_crm.py). The scoring form of a draft evaluation is on ``/qa/{id}`` itself.

:func:`build_kbqa_pages_router` is given the page kit of web/pages_crm.py (``render`` and
``page``) and included by it with one line, before its ``/kb/{id}`` and ``/qa/{id}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from crm import CrmError
from crm.kb import IMAGE_TYPES, Category, KnowledgeBase
from crm.qa import QualityService
from crm.users import ROLES
from web.api_crm import actor_of
from web.auth import Principal
from web.services import Services

__all__ = ["build_kbqa_pages_router", "category_paths", "id_number"]

Render = Callable[..., HTMLResponse]
Build = Callable[[Principal], Awaitable[Response]]
Page = Callable[[Request, Build], Awaitable[Response]]
MAX_PARAM = 64  # longest call id, recording id or agent id taken from the query


def category_paths(categories: list[Category]) -> dict[int, str]:
    """Each category's name with its ancestors' ("Billing / Refunds"), as far up as the
    given (readable) categories reach."""
    by_id = {c.id: c for c in categories}
    out: dict[int, str] = {}
    for c in categories:
        names = [c.name]
        seen = {c.id}
        parent = c.parent_id
        while parent is not None and parent in by_id and parent not in seen:
            seen.add(parent)
            names.append(by_id[parent].name)
            parent = by_id[parent].parent_id
        out[c.id] = " / ".join(reversed(names))
    return out


def id_number(value: str | None) -> int | None:
    """A row id (or page number) from a path or query string; None unless plain digits."""
    return int(value) if value and value.isdigit() and len(value) < 19 else None


def build_kbqa_pages_router(s: Services, render: Render, page: Page) -> APIRouter:
    """``/kb/new``, ``/kb/{id}/edit``, ``/kb/categories`` and ``/qa/new``."""
    router = APIRouter(include_in_schema=False)

    async def editor(request: Request, p: Principal, article: Any) -> Response:
        kb, who = KnowledgeBase(s.store), actor_of(p)
        editable = await kb.editable_categories(who)
        if not editable:
            raise CrmError(403, "you may not add articles to any category")
        names = category_paths(await kb.categories(who))
        wanted = id_number(request.query_params.get("category"))
        chosen = article.category_id if article is not None else wanted
        return render(
            request,
            "crm_kb_edit.html",
            p,
            a=article,
            categories=sorted(
                ((c.id, names.get(c.id, c.name)) for c in editable), key=lambda x: x[1]
            ),
            chosen=chosen,
            image_types=",".join(IMAGE_TYPES),
        )

    @router.get("/kb/new")
    async def kb_new(request: Request) -> Response:
        async def build(p: Principal) -> Response:
            return await editor(request, p, None)

        return await page(request, build)

    @router.get("/kb/categories")
    async def kb_categories(request: Request) -> Response:
        async def build(p: Principal) -> Response:
            kb, who = KnowledgeBase(s.store), actor_of(p)
            if not kb.manages_categories(who):
                raise CrmError(403, "only supervisors and admins manage categories")
            found = await kb.categories(who)
            names = category_paths(found)
            return render(
                request,
                "crm_kb_categories.html",
                p,
                categories=sorted(found, key=lambda c: names[c.id]),
                names=names,
                roles=ROLES,
            )

        return await page(request, build)

    @router.get("/kb/{article_id}/edit")
    async def kb_edit(request: Request, article_id: str) -> Response:
        async def build(p: Principal) -> Response:
            aid = id_number(article_id)
            if aid is None:
                raise CrmError(404, "no article")
            kb, who = KnowledgeBase(s.store), actor_of(p)
            article = await kb.get(who, aid)  # 404 when not readable
            if not await kb.may_edit(who, article.category_id):
                raise CrmError(403, f"you may not edit article {aid}")
            return await editor(request, p, article)

        return await page(request, build)

    @router.get("/qa/new")
    async def qa_new(request: Request) -> Response:
        qp = request.query_params

        async def build(p: Principal) -> Response:
            qa, who = QualityService(s.store), actor_of(p)
            tasks = await qa.tasks(who)  # agents: 403
            cards = await qa.scorecards(who)
            agents = sorted({a.id for a in s.acd.agent_snapshots()})
            return render(
                request,
                "crm_qa_new.html",
                p,
                tasks=tasks,
                cards=cards,
                agents=agents,
                prefill={
                    k: (qp.get(k) or "")[:MAX_PARAM]
                    for k in ("agent", "call_id", "recording_id", "task_id")
                },
            )

        return await page(request, build)

    return router

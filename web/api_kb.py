"""The knowledge-base and quality-assessment routes (docs/api.md "Knowledge base" and
"Quality assessment"; docs/crm.md).

Theory of operation: every route turns the caller into a :class:`crm.Actor` and calls
:class:`crm.kb.KnowledgeBase` or :class:`crm.qa.QualityService`, which hold the permission
rules; their refusals (:class:`crm.CrmError`) become ``{"error": ...}`` answers with their
status. For quality assessment an agent user is known by their ACD agent id (the name the
queue log, the agent state log and the survey use, and so the name evaluations are of);
users without one by their user name. An image is uploaded as the request body with its
``Content-Type`` and served back with it (``nosniff``; no SVG).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from crm import Actor
from crm.kb import MAX_BODY, MAX_IMAGE_BYTES, Article, Image, KnowledgeBase
from crm.qa import (
    EvaluationTask,
    QualityService,
    Scorecard,
    card_to_json,
    sections_from_json,
)
from web.api import ApiError, PageNo, PerPage, Who, audit_change, jsonable, page_list
from web.api_crm import actor_of, refusals
from web.auth import Principal
from web.services import Services

__all__ = ["build_kb_router"]

Name = Annotated[str, Field(min_length=1, max_length=255)]
Role = Annotated[str, Field(max_length=16)]
Keyword = Annotated[str, Field(max_length=64)]


class CategoryBody(BaseModel):
    name: Name
    parent_id: int | None = None
    read_roles: list[Role] | None = Field(default=None, max_length=8)
    edit_roles: list[Role] | None = Field(default=None, max_length=8)


class CategoryPatch(BaseModel):
    name: Name | None = None
    parent_id: int | None = None
    read_roles: list[Role] | None = Field(default=None, max_length=8)
    edit_roles: list[Role] | None = Field(default=None, max_length=8)


class ArticleBody(BaseModel):
    category_id: int
    title: Name
    body: Annotated[str, Field(max_length=MAX_BODY)] = ""
    keywords: list[Keyword] = Field(default_factory=list, max_length=50)


class ArticlePatch(BaseModel):
    category_id: int | None = None
    title: Name | None = None
    body: Annotated[str, Field(max_length=MAX_BODY)] | None = None
    keywords: list[Keyword] | None = Field(default=None, max_length=50)


class ScorecardBody(BaseModel):
    name: Name
    # [{"name": ..., "items": [{"key", "label", "max_points", "auto_fail", "computed",
    #   "target", "limit"}]}]
    sections: list[dict[str, Any]] = Field(min_length=1, max_length=50)


class TaskBody(BaseModel):
    name: Name
    scorecard_id: int
    evaluator: Annotated[str, Field(min_length=1, max_length=64)]
    agents: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=500
    )
    period_start: datetime
    period_end: datetime


class TaskPatch(BaseModel):
    name: Name | None = None
    evaluator: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    agents: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, min_length=1, max_length=500
    )
    period_start: datetime | None = None
    period_end: datetime | None = None


Scores = dict[Annotated[str, Field(max_length=64)], Annotated[float, Field(ge=0)]]


class EvaluationBody(BaseModel):
    agent: Annotated[str, Field(min_length=1, max_length=64)]
    task_id: int | None = None
    scorecard_id: int | None = None
    call_id: Annotated[str, Field(max_length=64)] | None = None
    recording_id: Annotated[str, Field(max_length=32)] | None = None
    scores: Scores = Field(default_factory=dict)
    failed: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list)
    comment: Annotated[str, Field(max_length=10_000)] = ""


class EvaluationPatch(BaseModel):
    scores: Scores | None = None
    failed: list[Annotated[str, Field(max_length=64)]] | None = None
    comment: Annotated[str, Field(max_length=10_000)] | None = None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def article_item(a: Article) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(a)
    return out


def image_item(i: Image) -> dict[str, Any]:
    return {
        "id": i.id,
        "article_id": i.article_id,
        "name": i.name,
        "content_type": i.content_type,
        "size": len(i.data),
        "uploaded_by": i.uploaded_by,
        "at": i.at.isoformat(),
        "url": f"/api/kb/images/{i.id}",
        "markdown": f"![{i.name}](/api/kb/images/{i.id})",
    }


def scorecard_item(c: Scorecard) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "sections": card_to_json(c),
        "created_by": c.created_by,
        "created_at": None if c.created_at is None else c.created_at.isoformat(),
    }


def qa_actor(p: Principal) -> Actor:
    """Agents are evaluated under their ACD agent id (module docstring)."""
    if p.role == "agent":
        # No linked agent: no evaluations are theirs (a user name is not an agent id, and a
        # user called like some agent must not see that agent's evaluations).
        return Actor(p.agent or "\x00no-agent", p.role)
    return actor_of(p)


def build_kb_router(s: Services) -> APIRouter:
    """The routes of docs/api.md "Knowledge base" and "Quality assessment"."""
    router = APIRouter()

    def kb() -> KnowledgeBase:
        return KnowledgeBase(s.store)

    def qa() -> QualityService:
        return QualityService(s.store)

    async def audit(request: Request, p: Principal, action: str, target: Any, **kw: Any) -> None:
        await audit_change(s, request, p, action, str(target), **kw)

    # -- categories ------------------------------------------------------------------------

    @router.get("/api/kb/categories", tags=["kb"])
    async def categories(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        with refusals():
            found = await kb().categories(actor_of(p))
        return page_list(jsonable(found), page_no, per_page)

    @router.post("/api/kb/categories", tags=["kb"], status_code=201)
    async def add_category(p: Who, body: CategoryBody, request: Request) -> dict[str, Any]:
        with refusals():
            made = await kb().add_category(
                actor_of(p),
                body.name,
                parent_id=body.parent_id,
                read_roles=body.read_roles,
                edit_roles=body.edit_roles,
            )
        await audit(request, p, "kb.category.create", made.id, name=made.name)
        out: dict[str, Any] = jsonable(made)
        return out

    @router.patch("/api/kb/categories/{category_id}", tags=["kb"])
    async def change_category(
        p: Who, category_id: int, body: CategoryPatch, request: Request
    ) -> dict[str, Any]:
        """The fields given change; a null ``read_roles`` / ``edit_roles`` inherits again."""
        changes = body.model_dump(exclude_unset=True)
        with refusals():
            saved = await kb().update_category(actor_of(p), category_id, changes)
        await audit(request, p, "kb.category.update", category_id, fields=sorted(changes))
        out: dict[str, Any] = jsonable(saved)
        return out

    @router.delete("/api/kb/categories/{category_id}", tags=["kb"])
    async def delete_category(p: Who, category_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await kb().delete_category(actor_of(p), category_id)
        await audit(request, p, "kb.category.delete", category_id)
        return {"deleted": category_id}

    # -- articles --------------------------------------------------------------------------

    @router.get("/api/kb/articles", tags=["kb"])
    async def articles(
        p: Who,
        category: int | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        with refusals():
            found = await kb().list_articles(actor_of(p), category, limit)
        return page_list([article_item(a) for a in found], page_no, per_page)

    @router.get("/api/kb/search", tags=["kb"])
    async def search(
        p: Who,
        q: Annotated[str, Query(min_length=1, max_length=255)],
        category: int | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        with refusals():
            found = await kb().search(actor_of(p), q, category_id=category, limit=limit)
        return page_list([article_item(a) for a in found], page_no, per_page)

    @router.get("/api/kb/hot", tags=["kb"])
    async def hot(
        p: Who,
        days: Annotated[float, Query(gt=0, le=366)] = 7,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        with refusals():
            found = await kb().hot(actor_of(p), now=datetime.now(UTC), days=days, limit=limit)
        return page_list([{**article_item(a), "reads": n} for a, n in found], page_no, per_page)

    @router.get("/api/kb/favourites", tags=["kb"])
    async def favourites(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        with refusals():
            found = await kb().favourites(actor_of(p))
        return page_list([article_item(a) for a in found], page_no, per_page)

    @router.post("/api/kb/articles", tags=["kb"], status_code=201)
    async def add_article(p: Who, body: ArticleBody, request: Request) -> dict[str, Any]:
        with refusals():
            made = await kb().add_article(
                actor_of(p),
                body.category_id,
                body.title,
                body.body,
                keywords=body.keywords,
                now=datetime.now(UTC),
            )
        await audit(request, p, "kb.article.create", made.id, title=made.title)
        return article_item(made)

    @router.get("/api/kb/articles/{article_id}", tags=["kb"])
    async def article(p: Who, article_id: int, count: bool = True) -> dict[str, Any]:
        """One article; ``count=false`` does not count it as a view (an editor's preview)."""
        with refusals():
            if count:
                found = await kb().read(actor_of(p), article_id, now=datetime.now(UTC))
            else:
                found = await kb().get(actor_of(p), article_id)
        return article_item(found)

    @router.patch("/api/kb/articles/{article_id}", tags=["kb"])
    async def edit_article(
        p: Who, article_id: int, body: ArticlePatch, request: Request
    ) -> dict[str, Any]:
        with refusals():
            saved = await kb().edit_article(
                actor_of(p),
                article_id,
                now=datetime.now(UTC),
                title=body.title,
                body=body.body,
                keywords=body.keywords,
                category_id=body.category_id,
            )
        changed = sorted(body.model_dump(exclude_unset=True))
        await audit(request, p, "kb.article.update", article_id, fields=changed)
        return article_item(saved)

    @router.delete("/api/kb/articles/{article_id}", tags=["kb"])
    async def delete_article(p: Who, article_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await kb().delete_article(actor_of(p), article_id)
        await audit(request, p, "kb.article.delete", article_id)
        return {"deleted": article_id}

    @router.get("/api/kb/articles/{article_id}/history", tags=["kb"])
    async def history(
        p: Who, article_id: int, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        with refusals():
            versions = await kb().history(actor_of(p), article_id)
        return page_list(jsonable(versions), page_no, per_page)

    @router.put("/api/kb/articles/{article_id}/favourite", tags=["kb"])
    async def favourite(p: Who, article_id: int) -> dict[str, Any]:
        with refusals():
            await kb().favourite(actor_of(p), article_id, now=datetime.now(UTC))
        return {"favourite": article_id}

    @router.delete("/api/kb/articles/{article_id}/favourite", tags=["kb"])
    async def unfavourite(p: Who, article_id: int) -> dict[str, Any]:
        if not await kb().unfavourite(actor_of(p), article_id):
            raise ApiError(404, f"article {article_id} is not a favourite")
        return {"favourite": None}

    @router.post("/api/kb/articles/{article_id}/images", tags=["kb"], status_code=201)
    async def add_image(
        p: Who,
        article_id: int,
        request: Request,
        name: Annotated[str, Query(min_length=1, max_length=255)] = "image",
    ) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > MAX_IMAGE_BYTES:
                raise ApiError(413, f"an image has at most {MAX_IMAGE_BYTES} bytes")
        with refusals():
            image = await kb().add_image(
                actor_of(p), article_id, name, content_type, bytes(data), now=datetime.now(UTC)
            )
        await audit(request, p, "kb.image.create", image.id, article=article_id, name=name)
        return image_item(image)

    @router.get("/api/kb/images/{image_id}", tags=["kb"])
    async def image(p: Who, image_id: int) -> Response:
        with refusals():
            found = await kb().image(actor_of(p), image_id)
        return Response(
            found.data,
            media_type=found.content_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
        )

    # -- quality assessment -------------------------------------------------------------------

    @router.get("/api/qa/scorecards", tags=["qa"])
    async def scorecards(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        with refusals():
            found = await qa().scorecards(qa_actor(p))
        return page_list([scorecard_item(c) for c in found], page_no, per_page)

    @router.post("/api/qa/scorecards", tags=["qa"], status_code=201)
    async def add_scorecard(p: Who, body: ScorecardBody, request: Request) -> dict[str, Any]:
        with refusals():
            card = Scorecard(body.name, sections_from_json(body.sections))
            made = await qa().add_scorecard(qa_actor(p), card, now=datetime.now(UTC))
        await audit(request, p, "qa.scorecard.create", made.id, name=made.name)
        return scorecard_item(made)

    @router.get("/api/qa/scorecards/{card_id}", tags=["qa"])
    async def scorecard(p: Who, card_id: int) -> dict[str, Any]:
        with refusals():
            return scorecard_item(await qa().scorecard(qa_actor(p), card_id))

    @router.delete("/api/qa/scorecards/{card_id}", tags=["qa"])
    async def delete_scorecard(p: Who, card_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await qa().delete_scorecard(qa_actor(p), card_id)
        await audit(request, p, "qa.scorecard.delete", card_id)
        return {"deleted": card_id}

    @router.get("/api/qa/tasks", tags=["qa"])
    async def tasks(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        with refusals():
            found = await qa().tasks(qa_actor(p))
        return page_list(jsonable(found), page_no, per_page)

    @router.post("/api/qa/tasks", tags=["qa"], status_code=201)
    async def add_task(p: Who, body: TaskBody, request: Request) -> dict[str, Any]:
        task = EvaluationTask(
            body.name,
            body.scorecard_id,
            body.evaluator,
            tuple(body.agents),
            _aware(body.period_start),
            _aware(body.period_end),
        )
        with refusals():
            made = await qa().add_task(qa_actor(p), task, now=datetime.now(UTC))
        await audit(request, p, "qa.task.create", made.id, name=made.name)
        out: dict[str, Any] = jsonable(made)
        return out

    @router.get("/api/qa/tasks/{task_id}", tags=["qa"])
    async def task(p: Who, task_id: int) -> dict[str, Any]:
        with refusals():
            out: dict[str, Any] = jsonable(await qa().task(qa_actor(p), task_id))
        return out

    @router.patch("/api/qa/tasks/{task_id}", tags=["qa"])
    async def change_task(
        p: Who, task_id: int, body: TaskPatch, request: Request
    ) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        for key in ("period_start", "period_end"):
            if changes.get(key) is not None:
                changes[key] = _aware(changes[key])
        with refusals():
            saved = await qa().update_task(qa_actor(p), task_id, changes)
        await audit(request, p, "qa.task.update", task_id, fields=sorted(changes))
        out: dict[str, Any] = jsonable(saved)
        return out

    @router.delete("/api/qa/tasks/{task_id}", tags=["qa"])
    async def delete_task(p: Who, task_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await qa().delete_task(qa_actor(p), task_id)
        await audit(request, p, "qa.task.delete", task_id)
        return {"deleted": task_id}

    @router.get("/api/qa/evaluations", tags=["qa"])
    async def evaluations(
        p: Who,
        agent: Annotated[str | None, Query(max_length=64)] = None,
        task: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        with refusals():
            found = await qa().evaluations(qa_actor(p), agent=agent, task_id=task, limit=limit)
        return page_list(jsonable(found), page_no, per_page)

    @router.post("/api/qa/evaluations", tags=["qa"], status_code=201)
    async def evaluate(p: Who, body: EvaluationBody, request: Request) -> dict[str, Any]:
        with refusals():
            made = await qa().evaluate(
                qa_actor(p),
                agent=body.agent,
                now=datetime.now(UTC),
                scorecard_id=body.scorecard_id,
                task_id=body.task_id,
                call_id=body.call_id,
                recording_id=body.recording_id,
                scores=body.scores,
                failed=body.failed,
                comment=body.comment,
            )
        await audit(request, p, "qa.evaluation.create", made.id, agent=made.agent)
        out: dict[str, Any] = jsonable(made)
        return out

    @router.get("/api/qa/evaluations/{evaluation_id}", tags=["qa"])
    async def evaluation(p: Who, evaluation_id: int) -> dict[str, Any]:
        with refusals():
            out: dict[str, Any] = jsonable(await qa().evaluation(qa_actor(p), evaluation_id))
        return out

    @router.patch("/api/qa/evaluations/{evaluation_id}", tags=["qa"])
    async def change_evaluation(
        p: Who, evaluation_id: int, body: EvaluationPatch, request: Request
    ) -> dict[str, Any]:
        with refusals():
            saved = await qa().update_evaluation(
                qa_actor(p),
                evaluation_id,
                now=datetime.now(UTC),
                scores=body.scores,
                failed=body.failed,
                comment=body.comment,
            )
        changed = sorted(body.model_dump(exclude_unset=True))
        await audit(request, p, "qa.evaluation.update", evaluation_id, fields=changed)
        out: dict[str, Any] = jsonable(saved)
        return out

    @router.post("/api/qa/evaluations/{evaluation_id}/publish", tags=["qa"])
    async def publish(p: Who, evaluation_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            saved = await qa().publish(qa_actor(p), evaluation_id, now=datetime.now(UTC))
        await audit(request, p, "qa.evaluation.publish", evaluation_id, agent=saved.agent)
        out: dict[str, Any] = jsonable(saved)
        return out

    @router.delete("/api/qa/evaluations/{evaluation_id}", tags=["qa"])
    async def delete_evaluation(p: Who, evaluation_id: int, request: Request) -> dict[str, Any]:
        with refusals():
            await qa().delete_evaluation(qa_actor(p), evaluation_id)
        await audit(request, p, "qa.evaluation.delete", evaluation_id)
        return {"deleted": evaluation_id}

    return router

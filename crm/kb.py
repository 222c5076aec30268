"""The knowledge base: a category tree with read and edit roles, markdown articles with
images, edit history, view counts, a hot list, favourites and ranked search.

Theory of operation: :class:`KnowledgeBase` is the service every front end calls (the API,
the CLI through the API); it checks permissions and talks to the store's engine
(:attr:`crm.Store.engine`) with SQLAlchemy Core on the tables of revision 0006.

Permissions. A category's ``read_roles`` and ``edit_roles`` are role names (crm.users.ROLES);
``None`` inherits the parent's, and a root category without them lets every role read and
supervisors edit (:data:`DEFAULT_READ`, :data:`DEFAULT_EDIT`). Admins read and edit
everything. Reading an article needs read rights on its category; adding, changing,
deleting it and its images needs edit rights (on both categories when it moves). Only
supervisors and admins manage categories. An article the actor may not read answers 404
(its existence does not leak), one they read but may not change 403
(:class:`crm.CrmError`).

Search. A query is split into terms on white space; an article matches when every term is
in its title, keywords or body. The candidates come from the backend's index:

- SQLite: the FTS5 table ``kb_search`` with the trigram tokenizer (case-insensitive
  substrings of any script: ``退款`` needs no word segmenter). Trigrams need three
  characters, so a shorter term (``退款`` is two) falls back to ``LIKE`` on the article.
- PostgreSQL: ``to_tsvector('simple', title || ' ' || keywords || ' ' || body)`` with a
  GIN index, queried as word prefixes (``refund`` finds ``refunds``). ``simple`` does not
  segment Chinese (a whole run of CJK text is one token), so a term with CJK characters is
  matched with ``ILIKE`` substrings instead (a scan of the article table: fine for the few
  thousand articles of a call-centre KB; pg_trgm would need an extension the store's user
  may not be allowed to create).

Candidates are then ranked in Python by :func:`rank`, identically on both backends: the
number of terms in the title first, then in the keywords, then how often the terms occur in
the body, then views, then the older article. So a title hit always beats a body hit. Of
more than :data:`CANDIDATES` matches, the database keeps those with the most title hits, then
the most read. The one difference left: SQLite matches substrings inside words (``fund`` finds
``refund``), PostgreSQL word prefixes for non-CJK terms.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    TextClause,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from crm.customers import Actor
from crm.migrate import SEARCH_OBJECTS
from crm.models import (
    KbArticleRow,
    KbArticleVersionRow,
    KbCategoryRow,
    KbFavouriteRow,
    KbImageRow,
    KbViewRow,
)
from crm.store import CrmError, Store
from crm.users import ROLES

__all__ = [
    "DEFAULT_EDIT",
    "DEFAULT_READ",
    "IMAGE_TYPES",
    "SEARCH_OBJECTS",
    "Article",
    "ArticleVersion",
    "Category",
    "Image",
    "KnowledgeBase",
    "effective_roles",
    "may",
    "rank",
    "split_terms",
]

DEFAULT_READ: tuple[str, ...] = ROLES
DEFAULT_EDIT: tuple[str, ...] = ("supervisor", "admin")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")  # no SVG: scripts
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_BODY = 200_000
MAX_TERMS = 10
CANDIDATES = 500
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_PG_VECTOR = "to_tsvector('simple', title || ' ' || keywords || ' ' || body)"

_CATEGORIES = cast(Table, KbCategoryRow.__table__)
_ARTICLES = cast(Table, KbArticleRow.__table__)
_VERSIONS = cast(Table, KbArticleVersionRow.__table__)
_VIEWS = cast(Table, KbViewRow.__table__)
_FAVOURITES = cast(Table, KbFavouriteRow.__table__)
_IMAGES = cast(Table, KbImageRow.__table__)


@dataclass(frozen=True, slots=True)
class Category:
    """A category; ``read_roles`` / ``edit_roles`` None: inherited."""

    id: int
    name: str
    parent_id: int | None = None
    read_roles: tuple[str, ...] | None = None
    edit_roles: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Article:
    id: int
    category_id: int
    title: str
    body: str  # markdown
    keywords: tuple[str, ...]
    author: str
    created_at: datetime
    updated_at: datetime
    version: int
    views: int


@dataclass(frozen=True, slots=True)
class ArticleVersion:
    """An article as one edit saved it."""

    article_id: int
    version: int
    title: str
    body: str
    keywords: tuple[str, ...]
    category_id: int
    editor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    article_id: int | None
    name: str
    content_type: str
    data: bytes
    uploaded_by: str
    at: datetime


def split_terms(query: str) -> list[str]:
    """The search terms of ``query``: white-space separated, case-folded, unique, at most
    :data:`MAX_TERMS`."""
    terms: list[str] = []
    for word in query.split():
        term = word.casefold()
        if term not in terms:
            terms.append(term)
    return terms[:MAX_TERMS]


def rank(article: Article, terms: Sequence[str]) -> tuple[int, int, int, int, int]:
    """The sort key of a search hit (smaller first): terms in the title, in the keywords,
    occurrences in the body, views, then the older article."""
    title = article.title.casefold()
    keywords = " ".join(article.keywords).casefold()
    body = article.body.casefold()
    return (
        -sum(t in title for t in terms),
        -sum(t in keywords for t in terms),
        -sum(body.count(t) for t in terms),
        -article.views,
        article.id,
    )


def _roles(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(r for r in value.split(",") if r)


def _check_roles(roles: Sequence[str] | None) -> str | None:
    if roles is None:
        return None
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise CrmError(400, f"unknown role {', '.join(unknown)} (roles: {', '.join(ROLES)})")
    return ",".join(r for r in ROLES if r in roles)


def _keywords(keywords: Sequence[str]) -> str:
    out: list[str] = []
    for k in keywords:
        for word in k.casefold().split():
            if word not in out:
                out.append(word)
    return " ".join(out)


def _category(r: Any) -> Category:
    return Category(r.id, r.name, r.parent_id, _roles(r.read_roles), _roles(r.edit_roles))


def _article(r: Any) -> Article:
    return Article(
        r.id,
        r.category_id,
        r.title,
        r.body,
        tuple(r.keywords.split()),
        r.author,
        r.created_at,
        r.updated_at,
        r.version,
        r.views,
    )


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def effective_roles(
    categories: Mapping[int, Category], category_id: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(read roles, edit roles) of a category: its own, else the nearest ancestor's, else
    the defaults."""
    read: tuple[str, ...] | None = None
    edit: tuple[str, ...] | None = None
    seen: set[int] = set()
    current: int | None = category_id
    while current is not None and current not in seen and (read is None or edit is None):
        seen.add(current)
        cat = categories.get(current)
        if cat is None:
            break
        read = cat.read_roles if read is None else read
        edit = cat.edit_roles if edit is None else edit
        current = cat.parent_id
    return (
        read if read is not None else DEFAULT_READ,
        edit if edit is not None else DEFAULT_EDIT,
    )


def may(actor: Actor, categories: Mapping[int, Category], category_id: int, *, edit: bool) -> bool:
    """Whether ``actor`` may read (``edit`` False) or change articles of a category."""
    if actor.role == "admin":
        return True
    read_roles, edit_roles = effective_roles(categories, category_id)
    return actor.role in (edit_roles if edit else read_roles)


def _descendants(categories: Mapping[int, Category], category_id: int) -> set[int]:
    """A category and every category below it."""
    found = {category_id}
    grew = True
    while grew:
        more = {c.id for c in categories.values() if c.parent_id in found} - found
        found |= more
        grew = bool(more)
    return found


class KnowledgeBase:
    """Knowledge-base operations with permission checks (module docstring)."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    # -- categories and permissions ---------------------------------------------------------

    async def _all_categories(self) -> dict[int, Category]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_CATEGORIES))).all()
        return {r.id: _category(r) for r in rows}

    async def categories(self, actor: Actor) -> list[Category]:
        """The categories the actor may read, by id."""
        cats = await self._all_categories()
        return [c for c in cats.values() if may(actor, cats, c.id, edit=False)]

    async def editable_categories(self, actor: Actor) -> list[Category]:
        """The categories the actor may add articles to (read and edit rights), by id."""
        cats = await self._all_categories()
        return [
            c
            for c in cats.values()
            if may(actor, cats, c.id, edit=False) and may(actor, cats, c.id, edit=True)
        ]

    async def may_edit(self, actor: Actor, category_id: int) -> bool:
        """Whether the actor may add, change and delete articles of a category."""
        cats = await self._all_categories()
        return category_id in cats and may(actor, cats, category_id, edit=True)

    @staticmethod
    def manages_categories(actor: Actor) -> bool:
        """Whether the actor may create, change and delete categories."""
        return actor.sees_all

    async def add_category(
        self,
        actor: Actor,
        name: str,
        *,
        parent_id: int | None = None,
        read_roles: Sequence[str] | None = None,
        edit_roles: Sequence[str] | None = None,
    ) -> Category:
        """A new category (supervisors and admins)."""
        if not self.manages_categories(actor):
            raise CrmError(403, "only supervisors and admins manage categories")
        if not name.strip():
            raise CrmError(400, "a category needs a name")
        if parent_id is not None and parent_id not in await self._all_categories():
            raise CrmError(404, f"no category {parent_id}")
        values: dict[str, Any] = {
            "name": name.strip(),
            "parent_id": parent_id,
            "read_roles": _check_roles(read_roles),
            "edit_roles": _check_roles(edit_roles),
        }
        async with self.engine.begin() as conn:
            new_id = (await conn.execute(insert(_CATEGORIES).values(values))).inserted_primary_key
        assert new_id is not None
        return Category(
            int(new_id[0]),
            values["name"] or "",
            parent_id,
            _roles(values["read_roles"]),
            _roles(values["edit_roles"]),
        )

    async def update_category(
        self, actor: Actor, category_id: int, changes: Mapping[str, Any]
    ) -> Category:
        """Change a category's ``name``, ``parent_id`` (not below itself), ``read_roles`` or
        ``edit_roles`` (None: inherit) — supervisors and admins."""
        if not self.manages_categories(actor):
            raise CrmError(403, "only supervisors and admins manage categories")
        unknown = sorted(set(changes) - {"name", "parent_id", "read_roles", "edit_roles"})
        if unknown:
            raise CrmError(400, f"cannot change {', '.join(unknown)}")
        cats = await self._all_categories()
        if category_id not in cats:
            raise CrmError(404, f"no category {category_id}")
        values: dict[str, Any] = {}
        if "name" in changes:
            name = str(changes["name"] or "").strip()
            if not name:
                raise CrmError(400, "a category needs a name")
            values["name"] = name
        if "parent_id" in changes:
            parent = changes["parent_id"]
            if parent is not None and parent not in cats:
                raise CrmError(404, f"no category {parent}")
            if parent is not None and parent in _descendants(cats, category_id):
                raise CrmError(400, "a category cannot move below itself")
            values["parent_id"] = parent
        for key in ("read_roles", "edit_roles"):
            if key in changes:
                values[key] = _check_roles(changes[key])
        if values:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(_CATEGORIES).where(_CATEGORIES.c.id == category_id).values(values)
                )
        return (await self._all_categories())[category_id]

    async def delete_category(self, actor: Actor, category_id: int) -> None:
        """Delete an empty category (no articles, no children)."""
        if not self.manages_categories(actor):
            raise CrmError(403, "only supervisors and admins manage categories")
        try:
            async with self.engine.begin() as conn:
                done = await conn.execute(
                    delete(_CATEGORIES).where(_CATEGORIES.c.id == category_id)
                )
        except IntegrityError:
            raise CrmError(409, f"category {category_id} has articles or sub-categories") from None
        if not done.rowcount:
            raise CrmError(404, f"no category {category_id}")

    # -- articles ------------------------------------------------------------------------------

    async def _article_row(self, article_id: int) -> Article | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(_ARTICLES).where(_ARTICLES.c.id == article_id))
            ).first()
        return None if row is None else _article(row)

    async def _readable(self, actor: Actor, article_id: int) -> tuple[Article, dict[int, Category]]:
        article = await self._article_row(article_id)
        cats = await self._all_categories()
        if article is None or not may(actor, cats, article.category_id, edit=False):
            raise CrmError(404, f"no article {article_id}")
        return article, cats

    async def _editable(self, actor: Actor, article_id: int) -> tuple[Article, dict[int, Category]]:
        article, cats = await self._readable(actor, article_id)
        if not may(actor, cats, article.category_id, edit=True):
            raise CrmError(403, f"you may not edit articles in category {article.category_id}")
        return article, cats

    @staticmethod
    def _check_text(title: str, body: str) -> None:
        if not title.strip() or len(title) > 255:
            raise CrmError(400, "a title has 1 to 255 characters")
        if len(body) > MAX_BODY:
            raise CrmError(400, f"the body is longer than {MAX_BODY} characters")

    async def add_article(
        self,
        actor: Actor,
        category_id: int,
        title: str,
        body: str,
        *,
        now: datetime,
        keywords: Sequence[str] = (),
    ) -> Article:
        """A new article (version 1) in a category the actor may edit."""
        cats = await self._all_categories()
        if category_id not in cats or not may(actor, cats, category_id, edit=False):
            raise CrmError(404, f"no category {category_id}")
        if not may(actor, cats, category_id, edit=True):
            raise CrmError(403, f"you may not add articles to category {category_id}")
        self._check_text(title, body)
        values: dict[str, Any] = {
            "category_id": category_id,
            "title": title.strip(),
            "body": body,
            "keywords": _keywords(keywords),
            "author": actor.name,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "views": 0,
        }
        async with self.engine.begin() as conn:
            key = (await conn.execute(insert(_ARTICLES).values(values))).inserted_primary_key
            assert key is not None
            article_id = int(key[0])
            await conn.execute(insert(_VERSIONS).values(self._version(article_id, values, actor)))
        found = await self._article_row(article_id)
        assert found is not None
        return found

    @staticmethod
    def _version(article_id: int, values: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
        return {
            "article_id": article_id,
            "version": values["version"],
            "title": values["title"],
            "body": values["body"],
            "keywords": values["keywords"],
            "category_id": values["category_id"],
            "editor": actor.name,
            "at": values["updated_at"],
        }

    async def edit_article(
        self,
        actor: Actor,
        article_id: int,
        *,
        now: datetime,
        title: str | None = None,
        body: str | None = None,
        keywords: Sequence[str] | None = None,
        category_id: int | None = None,
    ) -> Article:
        """Save a new version with the given changes (edit rights on the article's category
        and, when it moves, on the new one)."""
        current, cats = await self._editable(actor, article_id)
        moves = category_id is not None and category_id != current.category_id
        if moves and (category_id not in cats or not may(actor, cats, category_id, edit=True)):
            raise CrmError(403, f"you may not move articles to category {category_id}")
        values: dict[str, Any] = {
            "category_id": current.category_id if category_id is None else category_id,
            "title": current.title if title is None else title.strip(),
            "body": current.body if body is None else body,
            "keywords": " ".join(current.keywords) if keywords is None else _keywords(keywords),
            "updated_at": now,
            "version": current.version + 1,
        }
        self._check_text(values["title"], values["body"])
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(_ARTICLES)
                .where(_ARTICLES.c.id == article_id, _ARTICLES.c.version == current.version)
                .values(values)
            )
            if not done.rowcount:
                raise CrmError(409, f"article {article_id} was changed meanwhile: try again")
            await conn.execute(insert(_VERSIONS).values(self._version(article_id, values, actor)))
        found = await self._article_row(article_id)
        assert found is not None
        return found

    async def delete_article(self, actor: Actor, article_id: int) -> None:
        """Delete an article with its history, views, favourites and images."""
        await self._editable(actor, article_id)
        async with self.engine.begin() as conn:
            for table in (_VERSIONS, _VIEWS, _FAVOURITES, _IMAGES):
                await conn.execute(delete(table).where(table.c.article_id == article_id))
            await conn.execute(delete(_ARTICLES).where(_ARTICLES.c.id == article_id))

    async def read(self, actor: Actor, article_id: int, *, now: datetime) -> Article:
        """An article, counted as a view."""
        article, _ = await self._readable(actor, article_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_ARTICLES)
                .where(_ARTICLES.c.id == article_id)
                .values(views=_ARTICLES.c.views + 1)
            )
            await conn.execute(
                insert(_VIEWS).values(article_id=article_id, user=actor.name, at=now)
            )
        return dataclasses.replace(article, views=article.views + 1)

    async def get(self, actor: Actor, article_id: int) -> Article:
        """An article, not counted as a view."""
        return (await self._readable(actor, article_id))[0]

    async def history(
        self, actor: Actor, article_id: int, *, bodies: bool = True
    ) -> list[ArticleVersion]:
        """Every saved version, the first first; with ``bodies`` False their bodies are
        left out (read as "") — who changed what when, for a page's history table."""
        await self._readable(actor, article_id)
        columns = [c for c in _VERSIONS.c if bodies or c.name != "body"]
        stmt = (
            select(*columns)
            .where(_VERSIONS.c.article_id == article_id)
            .order_by(_VERSIONS.c.version)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            ArticleVersion(
                r.article_id,
                r.version,
                r.title,
                r.body if bodies else "",
                tuple(r.keywords.split()),
                r.category_id,
                r.editor,
                r.at,
            )
            for r in rows
        ]

    async def list_articles(
        self, actor: Actor, category_id: int | None = None, limit: int = 100
    ) -> list[Article]:
        """Readable articles (of one category), the latest changed first."""
        cats = await self._all_categories()
        readable = [c for c in cats if may(actor, cats, c, edit=False)]
        if category_id is not None:
            readable = [c for c in readable if c == category_id]
        stmt = (
            select(_ARTICLES)
            .where(_ARTICLES.c.category_id.in_(readable))
            .order_by(_ARTICLES.c.updated_at.desc(), _ARTICLES.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_article(r) for r in rows]

    # -- search ---------------------------------------------------------------------------------

    def _term_condition(self, dialect: str, term: str, n: int) -> ColumnElement[bool] | TextClause:
        columns = (_ARTICLES.c.title, _ARTICLES.c.keywords, _ARTICLES.c.body)
        substring = or_(*(c.ilike(_like(term), escape="\\") for c in columns))
        if dialect == "sqlite":
            if len(term) < 3:  # trigrams need three characters
                return substring
            fts = (
                text(f"SELECT rowid FROM kb_search WHERE kb_search MATCH :t{n}")
                .bindparams(**{f"t{n}": '"' + term.replace('"', '""') + '"'})
                .columns(_ARTICLES.c.id)
            )
            return _ARTICLES.c.id.in_(fts)
        if _CJK.search(term):
            return substring
        words = re.findall(r"\w+", term)
        if not words:
            return substring
        query = " & ".join(w + ":*" for w in words)
        return text(f"{_PG_VECTOR} @@ to_tsquery('simple', :t{n})").bindparams(**{f"t{n}": query})

    async def search(
        self, actor: Actor, query: str, *, category_id: int | None = None, limit: int = 20
    ) -> list[Article]:
        """Readable articles with every term of ``query``, best first (module docstring)."""
        terms = split_terms(query)
        if not terms:
            return []
        cats = await self._all_categories()
        readable = [c for c in cats if may(actor, cats, c, edit=False)]
        if category_id is not None:
            # A category includes its sub-categories.
            wanted = _descendants(cats, category_id)
            readable = [c for c in readable if c in wanted]
        dialect = self.engine.dialect.name
        stmt = select(_ARTICLES).where(_ARTICLES.c.category_id.in_(readable))
        for n, term in enumerate(terms):
            stmt = stmt.where(self._term_condition(dialect, term, n))
        # More than CANDIDATES matches: keep the title hits, then the most read.
        title_hits = sum(
            (case((_ARTICLES.c.title.ilike(_like(t), escape="\\"), 1), else_=0) for t in terms),
            literal(0),
        )
        stmt = stmt.order_by(title_hits.desc(), _ARTICLES.c.views.desc(), _ARTICLES.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.limit(CANDIDATES))).all()
        hits = [_article(r) for r in rows]
        hits.sort(key=lambda a: rank(a, terms))
        return hits[:limit]

    # -- hot list and favourites ---------------------------------------------------------------

    async def hot(
        self, actor: Actor, *, now: datetime, days: float = 7, limit: int = 10
    ) -> list[tuple[Article, int]]:
        """The most read readable articles of the last ``days`` days, with their reads."""
        cats = await self._all_categories()
        readable = [c for c in cats if may(actor, cats, c, edit=False)]
        reads = func.count(_VIEWS.c.id).label("reads")
        stmt = (
            select(_ARTICLES, reads)
            .join(_VIEWS, _VIEWS.c.article_id == _ARTICLES.c.id)
            .where(_VIEWS.c.at >= now - timedelta(days=days), _VIEWS.c.at <= now)
            .where(_ARTICLES.c.category_id.in_(readable))
            .group_by(*_ARTICLES.c)
            .order_by(reads.desc(), _ARTICLES.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(_article(r), int(r.reads)) for r in rows]

    async def favourite(self, actor: Actor, article_id: int, *, now: datetime) -> None:
        """Mark an article as the actor's favourite (again: no change)."""
        await self._readable(actor, article_id)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(_FAVOURITES).values(user=actor.name, article_id=article_id, at=now)
                )
        except IntegrityError:
            pass

    async def unfavourite(self, actor: Actor, article_id: int) -> bool:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                delete(_FAVOURITES).where(
                    _FAVOURITES.c.user == actor.name, _FAVOURITES.c.article_id == article_id
                )
            )
        return bool(done.rowcount)

    async def favourites(self, actor: Actor) -> list[Article]:
        """The actor's favourites they may still read, the latest marked first."""
        cats = await self._all_categories()
        readable = [c for c in cats if may(actor, cats, c, edit=False)]
        stmt = (
            select(_ARTICLES)
            .join(_FAVOURITES, _FAVOURITES.c.article_id == _ARTICLES.c.id)
            .where(_FAVOURITES.c.user == actor.name, _ARTICLES.c.category_id.in_(readable))
            .order_by(_FAVOURITES.c.at.desc(), _ARTICLES.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_article(r) for r in rows]

    # -- images --------------------------------------------------------------------------------

    async def add_image(
        self,
        actor: Actor,
        article_id: int,
        name: str,
        content_type: str,
        data: bytes,
        *,
        now: datetime,
    ) -> Image:
        """Store an image for an article (edit rights); markdown shows it as
        ``![name](/api/kb/images/{id})``."""
        await self._editable(actor, article_id)
        if content_type not in IMAGE_TYPES:
            raise CrmError(415, f"images are {', '.join(IMAGE_TYPES)}")
        if not data or len(data) > MAX_IMAGE_BYTES:
            raise CrmError(413, f"an image has 1 to {MAX_IMAGE_BYTES} bytes")
        values: dict[str, Any] = {
            "article_id": article_id,
            "name": name[:255] or "image",
            "content_type": content_type,
            "data": data,
            "uploaded_by": actor.name,
            "at": now,
        }
        async with self.engine.begin() as conn:
            key = (await conn.execute(insert(_IMAGES).values(values))).inserted_primary_key
        assert key is not None
        return Image(id=int(key[0]), **values)

    async def image(self, actor: Actor, image_id: int) -> Image:
        """An image of an article the actor may read."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_IMAGES).where(_IMAGES.c.id == image_id))).first()
        if row is None:
            raise CrmError(404, f"no image {image_id}")
        if row.article_id is not None:
            try:
                await self._readable(actor, row.article_id)
            except CrmError:
                raise CrmError(404, f"no image {image_id}") from None
        return Image(
            row.id,
            row.article_id,
            row.name,
            row.content_type,
            bytes(row.data),
            row.uploaded_by,
            row.at,
        )

"""The knowledge base on SQLite and PostgreSQL: search relevance on a fixed article set in
English and Chinese (the expected order written down), permissions per role and category,
edit history, favourites, the hot list and images."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from crm import Actor, CrmError, Store
from crm.kb import Article, Category, KnowledgeBase, may, rank, split_terms

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
ADMIN = Actor("root", "admin")
SUP = Actor("sue", "supervisor")
AGENT = Actor("ann", "agent")
QA = Actor("quinn", "qa")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


@dataclass
class Library:
    kb: KnowledgeBase
    ids: dict[str, int]


# The fixed article set: name -> (title, keywords, body).
ARTICLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "refund": ("Refund policy", ("billing",), "How refunds work. Money back within 30 days."),
    "billing": ("Billing questions", ("refund", "invoice"), "Invoices are sent monthly."),
    "shipping": (
        "Shipping times",
        (),
        "Orders ship in two days. A refund is possible for a late order: refund it at once, "
        "the refund is quick.",
    ),
    "password": ("Password reset", (), "Reset your password in the portal."),
    "tuikuan": ("退款流程", ("退款",), "客户申请退款后，三个工作日内处理。"),
    "fapiao": ("发票问题", (), "开具发票前请确认退款状态。退款完成后可以重新开票。"),
    "mima": ("密码重置", (), "在门户网站重置密码。"),
    "tuihuo": ("退货与退款政策", (), "七天无理由退货。"),
}

# query -> the articles it finds, best first.
RELEVANCE: list[tuple[str, list[str]]] = [
    # title hit, then keyword hit, then body hits
    ("refund", ["refund", "billing", "shipping"]),
    ("REFUND policy", ["refund"]),
    ("invoice", ["billing"]),
    ("password portal", ["password"]),
    ("nothing-like-this", []),
    # Chinese: two characters (LIKE / ILIKE), four (trigram on SQLite)
    ("退款", ["tuikuan", "tuihuo", "fapiao"]),
    ("退款流程", ["tuikuan"]),
    ("重置密码", ["mima"]),
    ("发票", ["fapiao"]),
    ("退款 发票", ["fapiao"]),
]


@pytest.fixture
async def library(store: Store) -> Library:
    kb = KnowledgeBase(store)
    general = await kb.add_category(SUP, "General")
    ids = {}
    for name, (title, keywords, body) in ARTICLES.items():
        article = await kb.add_article(SUP, general.id, title, body, keywords=keywords, now=T0)
        ids[name] = article.id
    return Library(kb, ids)


@pytest.mark.parametrize(("query", "expected"), RELEVANCE)
async def test_search_relevance(library: Library, query: str, expected: list[str]) -> None:
    found = await library.kb.search(AGENT, query)
    names = {v: k for k, v in library.ids.items()}
    assert [names[a.id] for a in found] == expected


def _article(title: str, keywords: tuple[str, ...], body: str, id: int = 1) -> Article:
    return Article(id, 1, title, body, keywords, "x", T0, T0, 1, 0)


def test_rank_title_beats_keywords_beats_body() -> None:
    terms = split_terms("Refund")
    title = _article("Refund", (), "", 3)
    keyword = _article("Other", ("refund",), "refund refund refund", 1)
    body = _article("Other", (), "refund " * 10, 2)
    assert sorted([body, keyword, title], key=lambda a: rank(a, terms)) == [title, keyword, body]


def test_split_terms() -> None:
    assert split_terms("  Refund  refund 退款 ") == ["refund", "退款"]
    assert split_terms("") == []


async def test_permissions_per_role_and_category(store: Store) -> None:
    kb = KnowledgeBase(store)
    public = await kb.add_category(SUP, "Public")
    internal = await kb.add_category(SUP, "Internal", read_roles=["supervisor"])
    escalations = await kb.add_category(SUP, "Escalations", parent_id=internal.id)
    desk = await kb.add_category(SUP, "Agents' desk", edit_roles=["agent", "supervisor"])
    with pytest.raises(CrmError) as err:
        await kb.add_category(AGENT, "Mine")
    assert err.value.status == 403
    with pytest.raises(CrmError) as err:
        await kb.add_category(SUP, "Bad", read_roles=["boss"])
    assert err.value.status == 400

    secret = await kb.add_article(SUP, escalations.id, "Escalation matrix", "call Bob", now=T0)
    # Children inherit: agents and qa do not see the article at all (404, not 403).
    for actor in (AGENT, QA):
        with pytest.raises(CrmError) as err:
            await kb.get(actor, secret.id)
        assert err.value.status == 404
        assert await kb.search(actor, "escalation") == []
        assert {c.name for c in await kb.categories(actor)} == {"Public", "Agents' desk"}
    assert [a.id for a in await kb.search(SUP, "escalation")] == [secret.id]
    assert (await kb.get(ADMIN, secret.id)).title == "Escalation matrix"
    with pytest.raises(CrmError) as err:
        await kb.add_article(AGENT, internal.id, "x", "y", now=T0)
    assert err.value.status == 404

    # Public: everyone reads, supervisors edit.
    with pytest.raises(CrmError) as err:
        await kb.add_article(AGENT, public.id, "Tip", "text", now=T0)
    assert err.value.status == 403
    tip = await kb.add_article(SUP, public.id, "Tip", "text", now=T0)
    assert (await kb.get(AGENT, tip.id)).title == "Tip"
    with pytest.raises(CrmError) as err:
        await kb.edit_article(AGENT, tip.id, body="changed", now=T0)
    assert err.value.status == 403
    with pytest.raises(CrmError) as err:
        await kb.delete_article(QA, tip.id)
    assert err.value.status == 403

    # Agents' desk: agents edit, qa only read; nobody moves an article where they may not edit.
    note = await kb.add_article(AGENT, desk.id, "Desk note", "text", now=T0)
    assert note.author == "ann"
    await kb.edit_article(AGENT, note.id, body="better", now=T0)
    with pytest.raises(CrmError) as err:
        await kb.edit_article(QA, note.id, body="worse", now=T0)
    assert err.value.status == 403
    with pytest.raises(CrmError) as err:
        await kb.edit_article(AGENT, note.id, category_id=public.id, now=T0)
    assert err.value.status == 403
    await kb.delete_article(AGENT, note.id)
    with pytest.raises(CrmError):
        await kb.get(AGENT, note.id)

    # A category with articles or children is not deleted.
    with pytest.raises(CrmError) as err:
        await kb.delete_category(SUP, internal.id)
    assert err.value.status == 409
    await kb.delete_category(SUP, desk.id)


async def test_every_version_is_kept(library: Library) -> None:
    kb, article_id = library.kb, library.ids["password"]
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    await kb.edit_article(SUP, article_id, body="Use the portal.", now=t1)
    edited = await kb.edit_article(ADMIN, article_id, title="Passwords", keywords=["Login"], now=t2)
    assert (edited.version, edited.title, edited.keywords) == (3, "Passwords", ("login",))
    history = await kb.history(AGENT, article_id)
    assert [(v.version, v.editor, v.at, v.title, v.body) for v in history] == [
        (1, "sue", T0, "Password reset", "Reset your password in the portal."),
        (2, "sue", t1, "Password reset", "Use the portal."),
        (3, "root", t2, "Passwords", "Use the portal."),
    ]
    # For a history table: the same versions without their bodies.
    light = await kb.history(AGENT, article_id, bodies=False)
    assert [(v.version, v.editor, v.title, v.body) for v in light] == [
        (v.version, v.editor, v.title, "") for v in history
    ]
    # The search index follows the edit.
    assert [a.id for a in await kb.search(AGENT, "login")] == [article_id]
    assert await kb.search(AGENT, "reset") == []


async def test_favourites_per_user(library: Library) -> None:
    kb, ids = library.kb, library.ids
    await kb.favourite(AGENT, ids["refund"], now=T0)
    await kb.favourite(AGENT, ids["mima"], now=T0 + timedelta(minutes=1))
    await kb.favourite(AGENT, ids["refund"], now=T0 + timedelta(minutes=2))  # no duplicate
    assert [a.id for a in await kb.favourites(AGENT)] == [ids["mima"], ids["refund"]]
    assert await kb.favourites(QA) == []
    assert await kb.unfavourite(AGENT, ids["mima"])
    assert not await kb.unfavourite(AGENT, ids["mima"])
    assert [a.id for a in await kb.favourites(AGENT)] == [ids["refund"]]


async def test_view_counts_and_hot_list(library: Library, store: Store) -> None:
    kb, ids = library.kb, library.ids
    now = T0 + timedelta(days=20)
    for _ in range(5):  # long ago: counted as views, not hot
        await kb.read(AGENT, ids["mima"], now=now - timedelta(days=10))
    for _ in range(3):
        await kb.read(AGENT, ids["refund"], now=now - timedelta(days=1))
    read = await kb.read(QA, ids["tuikuan"], now=now)
    assert read.views == 1
    assert (await kb.get(AGENT, ids["mima"])).views == 5
    hot = await kb.hot(AGENT, now=now, days=7)
    assert [(a.id, n) for a, n in hot] == [(ids["refund"], 3), (ids["tuikuan"], 1)]
    assert [(a.id, n) for a, n in await kb.hot(AGENT, now=now, days=30, limit=1)] == [
        (ids["mima"], 5)
    ]
    # A category the agent may not read disappears from their hot list.
    hidden = await kb.add_category(SUP, "Hidden", read_roles=["supervisor"])
    await kb.edit_article(SUP, ids["refund"], category_id=hidden.id, now=now)
    assert [a.id for a, _ in await kb.hot(AGENT, now=now, days=7)] == [ids["tuikuan"]]
    assert (await kb.hot(SUP, now=now, days=7))[0][0].id == ids["refund"]


async def test_images(library: Library) -> None:
    kb, article_id = library.kb, library.ids["refund"]
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    image = await kb.add_image(SUP, article_id, "chart.png", "image/png", png, now=T0)
    got = await kb.image(AGENT, image.id)
    assert (got.data, got.content_type, got.uploaded_by) == (png, "image/png", "sue")
    with pytest.raises(CrmError) as err:
        await kb.add_image(SUP, article_id, "x.svg", "image/svg+xml", b"<svg/>", now=T0)
    assert err.value.status == 415
    with pytest.raises(CrmError) as err:
        await kb.add_image(AGENT, article_id, "y.png", "image/png", png, now=T0)
    assert err.value.status == 403
    await kb.delete_article(SUP, article_id)
    with pytest.raises(CrmError) as err:
        await kb.image(AGENT, image.id)
    assert err.value.status == 404


# A tree: 1 Public (defaults) > 2 Desk (edit: agent, supervisor); 3 Internal (read:
# supervisor) > 4 Escalations (inherits) > 5 Open (read: agent, qa, supervisor).
TREE = {
    1: Category(1, "Public"),
    2: Category(2, "Desk", 1, edit_roles=("agent", "supervisor")),
    3: Category(3, "Internal", read_roles=("supervisor",)),
    4: Category(4, "Escalations", 3),
    5: Category(5, "Open", 4, read_roles=("agent", "qa", "supervisor")),
}
# (actor, category, may read, may edit)
RULES = [
    (AGENT, 1, True, False),
    (QA, 1, True, False),
    (SUP, 1, True, True),
    (AGENT, 2, True, True),
    (QA, 2, True, False),
    (AGENT, 3, False, False),
    (AGENT, 4, False, False),
    (SUP, 4, True, True),
    (AGENT, 5, True, False),
    (QA, 5, True, False),
    (SUP, 5, True, True),
    (ADMIN, 3, True, True),
]


@pytest.mark.parametrize(("actor", "category", "read", "edit"), RULES)
def test_permission_rules(actor: Actor, category: int, read: bool, edit: bool) -> None:
    assert (may(actor, TREE, category, edit=False), may(actor, TREE, category, edit=True)) == (
        read,
        edit,
    )


async def test_categories_change_and_search_within_one(store: Store) -> None:
    kb = KnowledgeBase(store)
    top = await kb.add_category(SUP, "Top")
    sub = await kb.add_category(SUP, "Sub", parent_id=top.id)
    other = await kb.add_category(SUP, "Other")
    in_sub = await kb.add_article(SUP, sub.id, "Refund in sub", "x", now=T0)
    await kb.add_article(SUP, other.id, "Refund elsewhere", "x", now=T0)
    found = await kb.search(AGENT, "refund", category_id=top.id)
    assert [a.id for a in found] == [in_sub.id]
    with pytest.raises(CrmError) as err:
        await kb.update_category(SUP, top.id, {"parent_id": sub.id})
    assert err.value.status == 400
    with pytest.raises(CrmError) as err:
        await kb.update_category(AGENT, top.id, {"name": "Mine"})
    assert err.value.status == 403
    hidden = await kb.update_category(SUP, top.id, {"name": "Top 2", "read_roles": ["qa"]})
    assert (hidden.name, hidden.read_roles) == ("Top 2", ("qa",))
    assert await kb.search(AGENT, "refund", category_id=top.id) == []
    assert [a.id for a in await kb.search(QA, "sub")] == [in_sub.id]
    back = await kb.update_category(SUP, top.id, {"read_roles": None})
    assert back.read_roles is None
    assert [a.id for a in await kb.search(AGENT, "refund in sub")] == [in_sub.id]


async def test_too_many_matches_keep_the_title_hits(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("crm.kb.CANDIDATES", 1)
    found = await library.kb.search(AGENT, "refund")
    assert [a.id for a in found] == [library.ids["refund"]]


async def test_revision_0006_downgrades_and_upgrades_again(empty_store_url: str) -> None:
    from alembic import command
    from sqlalchemy import Connection, inspect
    from sqlalchemy.ext.asyncio import create_async_engine

    from crm.migrate import alembic_config, upgrade

    def names(conn: Connection) -> set[str]:
        insp = inspect(conn)
        tables = set(insp.get_table_names())
        indexes = {i["name"] for t in tables for i in insp.get_indexes(t) if i["name"]}
        return tables | indexes

    await upgrade(empty_store_url)
    engine = create_async_engine(empty_store_url)
    try:
        async with engine.connect() as conn:
            index = "ix_kb_articles_search" if "postgresql" in empty_store_url else "kb_search"
            assert index in await conn.run_sync(names)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0005"))
        async with engine.connect() as conn:
            left = await conn.run_sync(names)
        assert not {n for n in left if n.startswith(("kb_", "qa_", "ix_kb_", "ix_qa_"))}
    finally:
        await engine.dispose()
    assert (await upgrade(empty_store_url))[:1] == ["0006"]  # and any later revisions

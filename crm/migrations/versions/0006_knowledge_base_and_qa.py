"""Knowledge base and quality assessment (issue 14, part C3): categories, articles with their
versions, views, favourites and images; QA scorecards, tasks and evaluations; the search
index of the articles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

The search index is backend-specific and not in ``crm.models`` (``crm.migrate.SEARCH_OBJECTS``
names it so that schema comparisons leave it out):

- SQLite: the FTS5 table ``kb_search`` (trigram tokenizer: substrings of any script, so
  Chinese needs no segmenter), its rowid the article id, kept in sync by triggers on
  ``kb_articles``;
- PostgreSQL: a GIN index on ``to_tsvector('simple', title || ' ' || keywords || ' ' ||
  body)``, the expression ``crm.kb`` queries with.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE kb_search USING fts5(title, keywords, body, tokenize='trigram')",
    "CREATE TRIGGER kb_search_ai AFTER INSERT ON kb_articles BEGIN"
    " INSERT INTO kb_search(rowid, title, keywords, body)"
    " VALUES (new.id, new.title, new.keywords, new.body); END",
    "CREATE TRIGGER kb_search_ad AFTER DELETE ON kb_articles BEGIN"
    " DELETE FROM kb_search WHERE rowid = old.id; END",
    "CREATE TRIGGER kb_search_au AFTER UPDATE OF title, keywords, body ON kb_articles BEGIN"
    " UPDATE kb_search SET title = new.title, keywords = new.keywords, body = new.body"
    " WHERE rowid = new.id; END",
]
PG_SEARCH = [
    "CREATE INDEX ix_kb_articles_search ON kb_articles USING gin"
    " (to_tsvector('simple', title || ' ' || keywords || ' ' || body))",
]


def _index(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, [column])


def upgrade() -> None:
    op.create_table(
        "kb_categories",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("read_roles", sa.String(length=255), nullable=True),
        sa.Column("edit_roles", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["parent_id"], ["kb_categories.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("kb_categories", "parent_id")
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["category_id"], ["kb_categories.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("kb_articles", "category_id")
    op.create_table(
        "kb_article_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("editor", sa.String(length=64), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "version"),
    )
    _index("kb_article_versions", "article_id")
    op.create_table(
        "kb_views",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("kb_views", "article_id", "at")
    op.create_table(
        "kb_favourites",
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user", "article_id"),
    )
    op.create_table(
        "kb_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("kb_images", "article_id")
    op.create_table(
        "qa_scorecards",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "qa_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("scorecard_id", sa.Integer(), nullable=False),
        sa.Column("evaluator", sa.String(length=64), nullable=False),
        sa.Column("agents", sa.JSON(), nullable=False),
        sa.Column("period_start", UtcDateTime(timezone=True), nullable=False),
        sa.Column("period_end", UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["scorecard_id"], ["qa_scorecards.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("qa_tasks", "scorecard_id", "evaluator")
    op.create_table(
        "qa_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("scorecard_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("evaluator", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("recording_id", sa.String(length=32), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("auto_failed", sa.Boolean(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["qa_tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["scorecard_id"], ["qa_scorecards.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index(
        "qa_evaluations", "task_id", "scorecard_id", "agent", "call_id", "recording_id", "published"
    )
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_SEARCH if dialect == "sqlite" else PG_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("kb_search_au", "kb_search_ad", "kb_search_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS kb_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_kb_articles_search")
    for table in (
        "qa_evaluations",
        "qa_tasks",
        "qa_scorecards",
        "kb_images",
        "kb_favourites",
        "kb_views",
        "kb_article_versions",
        "kb_articles",
        "kb_categories",
    ):
        op.drop_table(table)

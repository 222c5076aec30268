"""Recordings: one row per recorded call segment (issue 12).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

A new table only: an older store gains it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every indexed column, and whether its index is unique.
_INDEXES = (
    ("recording_id", True),
    ("call_id", False),
    ("linked_id", False),
    ("started", False),
    ("state", False),
    ("extension", False),
    ("agent", False),
    ("queue", False),
    ("customer_id", False),
)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("linked_id", sa.String(length=64), nullable=True),
        sa.Column("started", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended", UtcDateTime(timezone=True), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("rate", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("callee", sa.String(length=255), nullable=False),
        sa.Column("dialled", sa.String(length=255), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("extension", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=255), nullable=True),
        sa.Column("queue", sa.String(length=255), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("pauses", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        for column, unique in _INDEXES:
            batch_op.create_index(batch_op.f(f"ix_recordings_{column}"), [column], unique=unique)


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        for column, _unique in reversed(_INDEXES):
            batch_op.drop_index(batch_op.f(f"ix_recordings_{column}"))
    op.drop_table("recordings")
